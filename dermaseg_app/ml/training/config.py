"""The recipe of a run: ``TrainConfig`` (one for the CLI and the GUI), the fine-tuning recipe,
the hold-out rule, and how a resumed run's recipe is put together from its checkpoint."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dermaseg_app.ml.augment import AugmentConfig

DEFAULT_EPOCHS = 50
LR_SCHEDULES = ("constant", "cosine", "linear")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class TrainError(ValueError):
    """A training run that cannot start or continue; the message says why (and names the file)."""


@dataclass
class TrainConfig:
    """Everything a training or fine-tuning run needs; the defaults follow the paper."""

    data: list[str] = field(default_factory=list)      # training folders or .npz packs
    val: list[str] = field(default_factory=list)       # validation folders; empty: hold out val_fraction
    out: str | None = None                             # publish the best model here (.safetensors)
    run_dir: str | None = None                         # work folder (default: runs/<time> beside out)
    arch: str = "slsnet"                               # ml.registry name; a base model's when fine-tuning
    loss: str | None = None                            # None: the arch's paper loss (SLSNet: the GAN/supervised
                                                       # loss below); else a name in ml.losses_seeds.LOSSES
    model_config: dict[str, Any] = field(default_factory=dict)  # overrides of the arch's config
    input_size: int = 128
    epochs: int | None = None                          # None: not given (DEFAULT_EPOCHS for a new run,
                                                       # the checkpoint's when resuming)
    batch_size: int = 8
    lr: float = 2e-4
    lr_d: float | None = None                          # None: same as lr
    beta1: float = 0.5
    beta2: float = 0.999
    lr_schedule: str = "constant"                      # constant | cosine | linear (pix2pix decay, 2nd half)
    min_lr_factor: float = 0.0
    lambda_l1: float = 0.1
    alpha_jaccard: float = 0.5
    adversarial: bool = True                           # False: G alone, supervised
    warmup_epochs: float = 0.0                         # supervised epochs before the adversarial term
    bce_weight: float = 1.0                            # pixel BCE weight while supervised
    gan_bce_weight: float = 0.0                        # pixel BCE weight in the adversarial phase
    adv_weight: float = 1.0                            # weight of G's adversarial BCE (1 in the paper)
    ema_decay: float = 0.0                             # 0: off; else EMA of G, validated and saved
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0
    device: str | None = None
    num_threads: int | None = None
    val_fraction: float = 0.1
    max_steps_per_epoch: int | None = None
    checkpoint_every: int = 0                          # steps; 0: only at epoch ends and on cancel
    resume: str | None = None                          # a last.pt to continue
    workers: int = 2
    pack_dir: str | None = None
    amp: bool = False                                  # bf16 autocast on CUDA
    precision: str = "auto"                            # CPU autocast: auto (bf16 where the CPU has bf16
                                                       # units, AMX or AVX512-BF16; else fp32) | fp32 | bf16
    channels_last: bool = False                        # NHWC memory format for G, D and the batches
    device_data: bool = False                          # packs uploaded once; batches indexed and augmented
                                                       # on the device (ml.augment_torch) instead of cv2 on the CPU
    compile: bool = False                              # torch.compile G's and D's forward passes
    compile_mode: str = "default"                      # torch.compile mode: default | reduce-overhead | max-autotune...
    threshold: float = 0.5
    tta: bool = False                                  # the published model's test-time flips default
    # fine-tuning
    base_model: str | None = None
    input_size_from_base: bool = True                  # False: train the base model's weights at input_size
                                                       # (fully convolutional: e.g. 64 px weights at 128 px)
    replay: list[str] = field(default_factory=list)
    replay_share: float = 0.0
    freeze_encoder: bool = False
    base_val: list[str] = field(default_factory=list)  # base-domain validation (e.g. ISIC val): guards forgetting
    base_val_tolerance: float = 0.01                   # an epoch qualifies if base JSC >= base model's - this
    l2sp_weight: float = 0.0                           # L2-SP: weight * sum((w - w_base)^2) added to G's loss
    freeze_bn_stats: bool = False                      # keep batch norm's running statistics (eval-mode BN)
    # the model file written
    model_name: str = "slsnet"
    model_version: str = "0.1"
    command: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["augment"] = dataclasses.asdict(self.augment)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        aug = d.pop("augment", None)
        known = {f.name for f in dataclasses.fields(cls)}
        cfg = cls(**{k: v for k, v in d.items() if k in known})
        if isinstance(aug, dict):
            aug = {k: tuple(v) if isinstance(v, list) else v for k, v in aug.items()}
            cfg.augment = AugmentConfig(**aug)
        return cfg

    def copy(self, **changes: Any) -> TrainConfig:
        """A copy (``dataclasses.replace``) that shares no list or dict with this one."""
        fresh = {f.name: copy.copy(getattr(self, f.name)) for f in dataclasses.fields(self)
                 if isinstance(getattr(self, f.name), (list, dict))}
        return dataclasses.replace(self, **(fresh | changes))

    def check(self) -> None:
        if not self.data and not self.resume:
            raise TrainError("no training data given")
        if self.batch_size < 2:
            raise TrainError("batch size must be at least 2 (the discriminator sees half a batch of each kind)")
        if self.input_size <= 0 or self.input_size % 8:
            raise TrainError(f"input size must be a positive multiple of 8, got {self.input_size}")
        if self.epochs is not None and self.epochs < 1:
            raise TrainError("epochs must be at least 1")
        if self.lr_schedule not in LR_SCHEDULES:
            raise TrainError(f"unknown learning-rate schedule {self.lr_schedule!r} ({', '.join(LR_SCHEDULES)})")
        if not 0.0 <= self.ema_decay < 1.0:
            raise TrainError(f"EMA decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.replay_share < 1.0:
            raise TrainError(f"replay share must be in [0, 1), got {self.replay_share}")
        if self.base_val and not self.base_model:
            raise TrainError("base validation (--base-val) needs a base model to compare with")
        if not 0.0 <= self.base_val_tolerance <= 1.0:
            raise TrainError(f"base validation tolerance must be in [0, 1], got {self.base_val_tolerance}")
        if self.l2sp_weight < 0 or not math.isfinite(self.l2sp_weight):
            raise TrainError(f"L2-SP weight must be >= 0, got {self.l2sp_weight}")
        if self.l2sp_weight and not self.base_model:
            raise TrainError("L2-SP (--l2sp) needs a base model to stay near")
        if self.out is not None and not str(self.out).endswith(".safetensors"):
            raise TrainError(f"{self.out}: model files must end in .safetensors")
        from dermaseg_app.ml import registry
        from dermaseg_app.ml.cpu_speed import PRECISIONS
        from dermaseg_app.ml.losses_seeds import LOSSES

        if not self.base_model and self.arch not in registry.ARCHITECTURES:
            raise TrainError(f"unknown architecture {self.arch!r} ({', '.join(registry.ARCHITECTURES)})")
        if self.loss is not None and self.loss not in LOSSES:
            raise TrainError(f"unknown loss {self.loss!r} ({', '.join(LOSSES)})")

        if self.precision not in PRECISIONS:
            raise TrainError(f"unknown precision {self.precision!r} ({', '.join(PRECISIONS)})")
        if self.compile and self.compile_mode not in COMPILE_MODES:
            raise TrainError(f"unknown torch.compile mode {self.compile_mode!r} ({', '.join(COMPILE_MODES)})")


def finetune_config(
    base_model: str | Path,
    data: Sequence[str | Path],
    out: str | Path | None,
    replay: Sequence[str | Path] | None = None,
    replay_share: float = 0.5,
    epochs: int | None = 20,
    freeze_encoder: bool = False,
    **overrides: Any,
) -> TrainConfig:
    """The fine-tuning recipe measured on the CPU (docs/training-notes.md): supervised loss
    (no discriminator), Adam 2e-4 betas (0.9, 0.999) with cosine decay, EMA 0.99, the paper's
    augmentation, 10% of ``data`` held out for choosing the epoch, ``replay_share`` of every batch
    from ``replay`` (the base training data) when given; ``epochs`` None: the checkpoint's when
    resuming (``resume=...``), else 50; ``out`` None: publish nothing (a resumed run keeps the
    checkpoint's). ``overrides`` set any other field, e.g.
    ``base_val=[ISIC val folder]`` to publish only epochs whose base-domain JSC stays within
    ``base_val_tolerance`` of the base model's (the base model itself if none does), or
    ``l2sp_weight`` to pull the weights toward the base (docs/training-notes.md has both measured)."""
    from dermaseg_app.ml.weights import read_model_info

    info = read_model_info(base_model)
    cfg = TrainConfig(
        data=[str(p) for p in data], out=str(out) if out is not None else None, base_model=str(base_model),
        arch=info.arch, input_size=int(info.input_size), replay=[str(p) for p in (replay or [])],
        replay_share=replay_share if replay else 0.0, epochs=epochs, freeze_encoder=freeze_encoder,
        adversarial=False, lr=2e-4, beta1=0.9, lr_schedule="cosine", ema_decay=0.99,
        model_name=info.name, model_version=f"{info.version}+ft", threshold=float(info.threshold),
        tta=bool(info.tta),
    )
    for k, v in overrides.items():
        if not hasattr(cfg, k):
            raise TrainError(f"unknown training setting {k!r}")
        setattr(cfg, k, v)
    return cfg


def holdout_indices(n: int, fraction: float, seed: int) -> list[int]:
    """The samples (sorted indices into the training pack) that ``train`` holds out for validation
    when no validation folder is given: ``round(n * fraction)`` of them, at least one, chosen by
    ``seed``. Public so that a benchmark (and the window) can score the same images.

    This is a split by image. ``ml.splits.group_split`` is a different rule for a different job:
    it assigns whole groups (e.g. HAM10000's lesion ids) to one side when a dataset is written out
    as train/val folders, from its own permutation of the groups; the two never pick the same set."""
    order = np.random.default_rng([seed, 7]).permutation(n)
    return sorted(int(i) for i in order[: max(1, int(round(n * fraction)))])


def resumed_config(given: TrainConfig, saved_dict: dict[str, Any],
                   model_config: dict[str, Any] | None) -> TrainConfig:
    """The recipe of a resumed run: the checkpoint's (``saved_dict``), with what ``given`` may
    change: where it runs (device, threads, out, run folder), how long (``epochs``, when given:
    not None) and the speed settings (compile, precision, channels_last; the maths stays)."""
    saved = TrainConfig.from_dict(saved_dict)
    saved.resume = given.resume
    if given.epochs is not None:
        saved.epochs = given.epochs
    if given.device is not None:
        saved.device = given.device
    if given.num_threads is not None:
        saved.num_threads = given.num_threads
    if given.out:
        saved.out = given.out
    if given.run_dir:  # e.g. a committed copy of last.pt resumed on a fresh machine
        saved.run_dir = given.run_dir
    if (saved.base_model and not Path(saved.base_model).exists() and not saved.base_val
            and not saved.l2sp_weight and model_config):
        # The run's weights are all in the checkpoint: the model file it started from is only
        # needed to build the network, which the checkpoint's config does as well (a committed
        # checkpoint resumed on a machine that lacks that file).
        saved.model_config = dict(model_config)
        saved.input_size = int(saved.model_config.get("input_size", saved.input_size))
        saved.base_model = None
    if given.compile:  # compiling changes the speed, not the recipe
        saved.compile, saved.compile_mode = True, given.compile_mode
    # Speed settings (the maths stays: fp32 and bf16 differ only by rounding) may change too.
    if given.precision != TrainConfig.precision:
        saved.precision = given.precision
    if given.channels_last:
        saved.channels_last = True
    return saved


def run_config(given: TrainConfig, checkpoint: dict[str, Any] | None) -> TrainConfig:
    """The config a run uses: a copy of ``given`` (never changed) or, resuming, the checkpoint's
    recipe with ``given``'s changes; ``epochs`` resolved; checked."""
    if checkpoint is not None:
        cfg = resumed_config(given, checkpoint["config"], checkpoint.get("model_config"))
    else:
        cfg = given.copy()
    if cfg.epochs is None:
        cfg.epochs = DEFAULT_EPOCHS
    cfg.check()
    return cfg


def resolve_arch(cfg: TrainConfig) -> str | None:
    """Set ``cfg.arch`` from the base model (when there is one) and turn the adversarial loss off
    for an architecture without a discriminator; returns a notice when that overrode a GAN that
    ``cfg`` asked for beyond the default (a warm-up, D's learning rate, an adversarial weight or
    pixel BCE of the adversarial phase), else None."""
    from dermaseg_app.ml import registry

    if cfg.base_model and Path(cfg.base_model).exists():
        from dermaseg_app.ml.weights import read_model_info

        cfg.arch = read_model_info(cfg.base_model).arch
    if cfg.model_name == TrainConfig.model_name and cfg.arch != "slsnet":
        cfg.model_name = cfg.arch  # not "slsnet" in another network's file
    if registry.has_discriminator(cfg.arch) or not cfg.adversarial:
        return None
    cfg.adversarial = False
    asked = [name for name, value, default in (
        ("a supervised warm-up", cfg.warmup_epochs, 0.0), ("a discriminator learning rate", cfg.lr_d, None),
        ("an adversarial weight", cfg.adv_weight, 1.0), ("pixel BCE in the adversarial phase", cfg.gan_bce_weight, 0.0),
    ) if value != default]
    if not asked:
        return None
    loss = cfg.loss or registry.paper_loss(cfg.arch)
    return (f"{registry.title(cfg.arch)} has no discriminator: it trains supervised with the {loss} loss "
            f"({', '.join(asked)} ignored)")

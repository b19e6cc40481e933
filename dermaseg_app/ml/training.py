"""The training engine: SLSNet's conditional GAN, fine-tuning, checkpoints and progress events.

No Qt here: the CLI prints the events and the GUI draws them.

One step (the paper's schema, pix2pix style): G predicts the batch once; D is updated on a half
batch of real (image, mask) pairs (label 1) and the other half with G's masks (label 0), BCE;
then G is updated with ``adversarial BCE + lambda_l1 * L1 + alpha_jaccard * soft Jaccard``.
Stabilisers are settings: a supervised warm-up (no adversarial term, pixel BCE instead) for the
first ``warmup_epochs``, an exponential moving average of G's weights (validated and saved in
place of G), and a learning-rate schedule. ``adversarial=False`` trains G alone (supervised).

Every epoch ends with validation; the best epoch by mean validation JSC is saved in the run
folder as a model file (``ml.weights`` format) and published to ``out``; a resumable
checkpoint (``last.pt``: G, D, EMA, optimizers, epoch, step, RNG state, best so far, history;
loadable with ``torch.load(weights_only=True)``) is written at every epoch end, every
``checkpoint_every`` steps and when cancelled. Per-epoch metrics go to ``metrics.jsonl`` and
``metrics.csv`` in the run folder.

Fine-tuning is the same loop started from a model file (``base_model``), usually on a folder of
corrected masks, with a share of every batch replayed from the base training data.

Repeatability: the order of every epoch and the augmentation of every batch are drawn from
generators seeded by (seed, epoch[, step]); the torch generator (dropout) is checkpointed. Two
runs with the same seed, data and thread count on the same device give the same weights.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import json
import math
import os
import platform
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dermaseg_app.ml.augment import AugmentConfig
from dermaseg_app.ml.data import BatchItem, Pack, cached_pack, make_batch, plan_epoch

CHECKPOINT_FORMAT = 1
ENCODER_MODULES: tuple[str, ...] = ("multiscale", "down1", "down2", "stage1", "down3", "stage2")
LR_SCHEDULES = ("constant", "cosine", "linear")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
COMPILED_PREFIX = "_orig_mod."


class TrainError(ValueError):
    """A training run that cannot start or continue; the message says why (and names the file)."""


# ============================================================================ configuration

@dataclass
class TrainConfig:
    """Everything a training or fine-tuning run needs; the defaults follow the paper."""

    data: list[str] = field(default_factory=list)      # training folders or .npz packs
    val: list[str] = field(default_factory=list)       # validation folders; empty: hold out val_fraction
    out: str | None = None                             # publish the best model here (.safetensors)
    run_dir: str | None = None                         # work folder (default: runs/<time> beside out)
    arch: str = "slsnet"
    model_config: dict[str, Any] = field(default_factory=dict)  # overrides of the arch's config
    input_size: int = 128
    epochs: int = 50
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
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        d = dict(d)
        aug = d.pop("augment", None)
        known = {f.name for f in dataclasses.fields(cls)}
        cfg = cls(**{k: v for k, v in d.items() if k in known})
        if isinstance(aug, dict):
            aug = {k: tuple(v) if isinstance(v, list) else v for k, v in aug.items()}
            cfg.augment = AugmentConfig(**aug)
        return cfg

    def check(self) -> None:
        if not self.data and not self.resume:
            raise TrainError("no training data given")
        if self.batch_size < 2:
            raise TrainError("batch size must be at least 2 (the discriminator sees half a batch of each kind)")
        if self.input_size <= 0 or self.input_size % 8:
            raise TrainError(f"input size must be a positive multiple of 8, got {self.input_size}")
        if self.epochs < 1:
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
        from dermaseg_app.ml.cpu_speed import PRECISIONS

        if self.precision not in PRECISIONS:
            raise TrainError(f"unknown precision {self.precision!r} ({', '.join(PRECISIONS)})")
        if self.compile and self.compile_mode not in COMPILE_MODES:
            raise TrainError(f"unknown torch.compile mode {self.compile_mode!r} ({', '.join(COMPILE_MODES)})")


def finetune_config(
    base_model: str | Path,
    data: list[str | Path],
    out: str | Path,
    replay: list[str | Path] | None = None,
    replay_share: float = 0.5,
    epochs: int = 20,
    freeze_encoder: bool = False,
    **overrides: Any,
) -> TrainConfig:
    """The fine-tuning recipe measured on the CPU (docs/training-notes.md): supervised loss
    (no discriminator), Adam 2e-4 betas (0.9, 0.999) with cosine decay, EMA 0.99, the paper's
    augmentation, 10% of ``data`` held out for choosing the epoch, ``replay_share`` of every batch
    from ``replay`` (the base training data) when given. ``overrides`` set any other field, e.g.
    ``base_val=[ISIC val folder]`` to publish only epochs whose base-domain JSC stays within
    ``base_val_tolerance`` of the base model's (the base model itself if none does), or
    ``l2sp_weight`` to pull the weights toward the base (docs/training-notes.md has both measured)."""
    from dermaseg_app.ml.weights import read_model_info

    info = read_model_info(base_model)
    cfg = TrainConfig(
        data=[str(p) for p in data], out=str(out), base_model=str(base_model), arch=info.arch,
        input_size=int(info.input_size), replay=[str(p) for p in (replay or [])],
        replay_share=replay_share if replay else 0.0, epochs=epochs, freeze_encoder=freeze_encoder,
        adversarial=False, lr=2e-4, beta1=0.9, lr_schedule="cosine", ema_decay=0.99,
        model_name=info.name, model_version=f"{info.version}+ft", threshold=float(info.threshold),
    )
    for k, v in overrides.items():
        if not hasattr(cfg, k):
            raise TrainError(f"unknown training setting {k!r}")
        setattr(cfg, k, v)
    return cfg


def holdout_indices(n: int, fraction: float, seed: int) -> list[int]:
    """The samples (sorted indices into the training pack) that ``train`` holds out for validation
    when no validation folder is given: ``round(n * fraction)`` of them, at least one, chosen by
    ``seed``. Public so that a benchmark can score the same images."""
    order = np.random.default_rng([seed, 7]).permutation(n)
    return sorted(int(i) for i in order[: max(1, int(round(n * fraction)))])


# ============================================================================ events

@dataclass
class TrainStarted:
    run_dir: Path
    device: str
    notice: str | None
    n_train: int
    n_replay: int
    n_val: int
    steps_per_epoch: int
    epochs: int
    start_epoch: int          # 1-based epoch the run starts (or resumes) in
    start_step: int           # steps of that epoch already done (resume)
    parameters: int
    n_base_val: int = 0       # base-domain validation pairs (0: selection on the new data alone)
    base_scores: dict[str, float] | None = None  # the base model's {"val_jsc", "base_val_jsc"} before training


@dataclass
class StepProgress:
    epoch: int                # 1-based
    epochs: int
    step: int                 # 1-based within the epoch
    steps_per_epoch: int
    global_step: int
    losses: dict[str, float]
    lr: float
    images_per_second: float
    eta_seconds: float
    adversarial: bool


@dataclass
class EpochEnd:
    epoch: int
    epochs: int
    train_losses: dict[str, float]
    val: Any                  # core.metrics.Scores (mean over images) or None
    val_pooled: Any
    is_best: bool
    best_jsc: float | None
    best_epoch: int | None
    seconds: float
    eta_seconds: float
    base_val: Any = None      # core.metrics.Scores on the base-domain validation set, or None
    qualifies: bool = True    # False: base JSC fell more than the tolerance below the base model's
    images_per_second: float | None = None  # training images per second of the epoch's steps


@dataclass
class CheckpointSaved:
    path: Path
    kind: str                 # "best" (run folder model) | "published" (out) | "resume" (last.pt)
    epoch: int


@dataclass
class TrainFinished:
    best_jsc: float | None
    best_epoch: int | None
    model_path: Path | None   # the published model (out), else the run folder's best
    run_dir: Path
    seconds: float
    history: list[dict[str, Any]]
    fell_back_to_base: bool = False  # no epoch kept the base-domain JSC: the base model was published


@dataclass
class TrainCancelled:
    epoch: int
    step: int
    best_jsc: float | None
    best_epoch: int | None
    model_path: Path | None
    checkpoint_path: Path
    run_dir: Path


TrainEvent = Union[TrainStarted, StepProgress, EpochEnd, CheckpointSaved, TrainFinished, TrainCancelled]


# ============================================================================ losses

def soft_jaccard_loss(prob: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft IoU per image (sums over the pixels), averaged over the batch."""
    dims = tuple(range(1, prob.dim()))
    inter = (prob * target).sum(dims)
    union = prob.sum(dims) + target.sum(dims) - inter
    return (1.0 - (inter + eps) / (union + eps)).mean()


def _bce_logits(logits: torch.Tensor, value: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, value))


# ============================================================================ helpers

class EMA:
    """Exponential moving average of a module's parameters (buffers copied)."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(module).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        d = min(self.decay, (1.0 + step) / (10.0 + step))
        ema_p = list(self.module.parameters())
        src_p = [p.detach() for p in module.parameters()]
        torch._foreach_mul_(ema_p, d)
        torch._foreach_add_(ema_p, src_p, alpha=1.0 - d)
        # one multi-tensor copy instead of a kernel per buffer (SLSNet has 129: BN statistics)
        torch._foreach_copy_(list(self.module.buffers()), list(module.buffers()))


def lr_factor(schedule: str, progress: float, min_factor: float = 0.0) -> float:
    """The learning-rate multiplier at ``progress`` in [0, 1] of the run."""
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "cosine":
        f = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif schedule == "linear":  # pix2pix: constant for the first half, then linearly to 0
        f = 1.0 if progress < 0.5 else 1.0 - (progress - 0.5) / 0.5
    else:
        f = 1.0
    return min_factor + (1.0 - min_factor) * f


def encoder_modules(generator: nn.Module) -> list[nn.Module]:
    """SLSNet's encoder (multiscale block, downsamplers, FAM stages) of a generator."""
    missing = [n for n in ENCODER_MODULES if not hasattr(generator, n)]
    if missing:
        raise TrainError(f"cannot freeze the encoder: the generator has no {', '.join(missing)}")
    return [getattr(generator, n) for n in ENCODER_MODULES]


def freeze_encoder(generator: nn.Module) -> int:
    """Stop training the encoder (no gradients, batch-norm statistics fixed); returns its size."""
    n = 0
    for m in encoder_modules(generator):
        m.eval()
        for p in m.parameters():
            p.requires_grad_(False)
            n += p.numel()
    return n


def _set_train_mode(generator: nn.Module, frozen: bool, bn_stats_fixed: bool = False) -> None:
    generator.train()
    if frozen:
        for m in encoder_modules(generator):
            m.eval()
    if bn_stats_fixed:  # batch norm normalises with the base model's running statistics, never updates them
        for m in generator.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_torch_save(obj: Any, path: Path) -> None:
    from dermaseg_app.core.atomic import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def plain_state_dict(state: dict[str, Any]) -> dict[str, Any]:
    """A state dict without the ``_orig_mod.`` prefix that a ``torch.compile``-wrapped module's
    keys carry (the engine compiles the forward functions, so its own files never have it)."""
    return {(k[len(COMPILED_PREFIX):] if k.startswith(COMPILED_PREFIX) else k): v for k, v in state.items()}


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a resumable checkpoint (``torch.load(weights_only=True)``)."""
    path = Path(path)
    if not path.exists():
        raise TrainError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise TrainError(f"{path}: not a readable training checkpoint ({exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise TrainError(f"{path}: not a DermaSeg training checkpoint")
    return ckpt


def _load_packs(paths: list[str], size: int, cfg: TrainConfig, full_masks: bool) -> Pack | None:
    if not paths:
        return None
    packs = [cached_pack(p, size, full_masks=full_masks, cache_dir=cfg.pack_dir, workers=cfg.workers)
             for p in paths]
    for p, src in zip(packs, paths):
        if p.size != size:
            raise TrainError(f"{src}: pack is at {p.size} px but the run trains at {size} px")
    return packs[0] if len(packs) == 1 else Pack.concat(packs)


def _hardware() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    threads = torch.get_num_threads()
    from dermaseg_app.ml import cpu_speed, fast_attention

    kernel = "fused CPU attention kernel" if fast_attention.ready() else "SDPA attention"
    return (f"{cpu} ({os.cpu_count()} cores; {cpu_speed.describe()}){gpu}, torch {torch.__version__} with "
            f"{threads} thread{'s' if threads != 1 else ''}, {kernel}")


# ============================================================================ validation

@torch.no_grad()
def evaluate_pack(model: nn.Module, pack: Pack, device: torch.device, threshold: float = 0.5,
                  batch_size: int = 16) -> Any:
    """Score a model on a pack: per-image scores at the masks' original size when the pack has
    them (else at the pack size). Returns core.metrics.FolderSummary."""
    import cv2

    from dermaseg_app.core.metrics import score_with_confusion, summarize
    from dermaseg_app.ml.data import images_to_array

    was_training = model.training
    model.eval()
    items = []
    try:
        for start in range(0, len(pack), batch_size):
            x = torch.from_numpy(images_to_array(pack.images[start:start + batch_size])).to(device)
            prob = model(x)[:, 0].float().cpu().numpy()
            for j, p in enumerate(prob):
                i = start + j
                gt = pack.full_masks[i] if pack.full_masks is not None else pack.masks[i]
                if gt.shape != p.shape:
                    p = cv2.resize(p, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_LINEAR)
                items.append(score_with_confusion(p >= threshold, gt, with_hd95=False))
    finally:
        model.train(was_training)
    return summarize(items)


# ============================================================================ the loop

def _default_run_dir(cfg: TrainConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(cfg.out).resolve().parent / "runs" if cfg.out else Path.cwd() / "runs"
    name = Path(cfg.out).stem if cfg.out else cfg.model_name
    return base / f"{name}-{stamp}"


def _build_networks(cfg: TrainConfig) -> tuple[nn.Module, nn.Module, dict[str, Any], str]:
    from dermaseg_app.ml import registry

    if cfg.base_model:
        from dermaseg_app.ml.weights import load_model

        g, info = load_model(cfg.base_model, "cpu")
        arch, model_cfg = info.arch, dict(info.config)
        if not cfg.input_size_from_base:
            model_cfg["input_size"] = int(cfg.input_size)
        elif info.input_size != cfg.input_size:
            cfg.input_size = int(info.input_size)
        trained_on = info.trained_on
    else:
        arch = cfg.arch
        model_cfg = registry.default_config(arch)
        model_cfg.update(cfg.model_config)
        model_cfg["input_size"] = cfg.input_size
        g = registry.build_generator(arch, model_cfg)
        trained_on = ""
    d = registry.build_discriminator(arch, model_cfg)
    cfg.arch = arch
    return g, d, model_cfg, trained_on


def train(config: TrainConfig, cancel: threading.Event | None = None) -> Iterator[TrainEvent]:
    """Run (or resume) a training or fine-tuning run, yielding progress events.

    The generator function does the work as it is iterated; stop iterating or set ``cancel`` to
    stop (with ``cancel`` the best model so far is kept and a resumable checkpoint written).
    """
    ckpt: dict[str, Any] | None = None
    if config.resume:
        ckpt = load_checkpoint(config.resume)
        saved = TrainConfig.from_dict(ckpt["config"])
        # The resumed run keeps its recipe; only where it runs and how long may change.
        saved.resume = config.resume
        saved.epochs = config.epochs if config.epochs != TrainConfig.epochs else saved.epochs
        if config.device is not None:
            saved.device = config.device
        if config.num_threads is not None:
            saved.num_threads = config.num_threads
        if config.out:
            saved.out = config.out
        if config.run_dir:  # e.g. a committed copy of last.pt resumed on a fresh machine
            saved.run_dir = config.run_dir
        if (saved.base_model and not Path(saved.base_model).exists() and not saved.base_val
                and not saved.l2sp_weight and ckpt.get("model_config")):
            # The run's weights are all in the checkpoint: the model file it started from is only
            # needed to build the network, which the checkpoint's config does as well (a committed
            # checkpoint resumed on a machine that lacks that file).
            saved.model_config = dict(ckpt["model_config"])
            saved.input_size = int(saved.model_config.get("input_size", saved.input_size))
            saved.base_model = None
        if config.compile:  # compiling changes the speed, not the recipe
            saved.compile, saved.compile_mode = True, config.compile_mode
        # Speed settings (the maths stays: fp32 and bf16 differ only by rounding) may change too.
        if config.precision != TrainConfig.precision:
            saved.precision = config.precision
        if config.channels_last:
            saved.channels_last = True
        config = saved
    cfg = config
    cfg.check()

    from dermaseg_app.ml.device import choose_device

    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    device, notice = choose_device(cfg.device)
    speed_notes: list[str] = []
    cpu_autocast: torch.dtype | None = None
    if device.type == "cpu":
        from dermaseg_app.ml import cpu_speed, fast_attention

        if fast_attention.build() is None:
            speed_notes.append(f"{fast_attention.problem()}; position attention uses scaled_dot_product_attention")
        cpu_autocast = cpu_speed.autocast_dtype(cfg.precision)
    if speed_notes:
        notice = "; ".join(([notice] if notice else []) + speed_notes)
    if cfg.device_data and device.type == "mps":
        raise TrainError("--device-data runs on CUDA or the CPU, not MPS (its gamma and CLAHE tables use float64)")
    torch.manual_seed(cfg.seed)

    g, d, model_cfg, base_trained_on = _build_networks(cfg)
    # The base model as loaded, for the base-domain reference, the fallback and L2-SP.
    base_g = copy.deepcopy(g).eval() if cfg.base_model and (cfg.base_val or cfg.l2sp_weight) else None
    if ckpt is not None:
        g.load_state_dict(plain_state_dict(ckpt["generator"]))
        d.load_state_dict(plain_state_dict(ckpt["discriminator"]))
    frozen = bool(cfg.freeze_encoder)
    if frozen:
        freeze_encoder(g)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    g.to(device, memory_format=memory_format)
    d.to(device, memory_format=memory_format)
    l2sp_pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
    if cfg.l2sp_weight and base_g is not None:
        base_g.to(device)
        base_params = dict(base_g.named_parameters())
        l2sp_pairs = [(p, base_params[n].detach()) for n, p in g.named_parameters() if p.requires_grad]
    ema = EMA(g, cfg.ema_decay) if cfg.ema_decay > 0 else None
    if ema is not None and ckpt is not None and ckpt.get("ema") is not None:
        ema.module.load_state_dict(plain_state_dict(ckpt["ema"]))
    # The step calls these; compiled, they share G's and D's parameters (state dicts unchanged).
    g_logits, d_logits = g.forward_logits, d.forward_logits
    if cfg.compile:
        g_logits = torch.compile(g.forward_logits, mode=cfg.compile_mode, dynamic=False)
        d_logits = torch.compile(d.forward_logits, mode=cfg.compile_mode, dynamic=False)

    betas = (cfg.beta1, cfg.beta2)
    opt_g = torch.optim.Adam([p for p in g.parameters() if p.requires_grad], lr=cfg.lr, betas=betas)
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr_d or cfg.lr, betas=betas)
    if ckpt is not None:
        opt_g.load_state_dict(ckpt["opt_g"])
        opt_d.load_state_dict(ckpt["opt_d"])

    # ---- data
    size = cfg.input_size
    train_pack = _load_packs(cfg.data, size, cfg, full_masks=False)
    assert train_pack is not None
    val_pack = _load_packs(cfg.val, size, cfg, full_masks=True)
    if val_pack is None and cfg.val_fraction > 0 and len(train_pack) >= 4:
        held = holdout_indices(len(train_pack), cfg.val_fraction, cfg.seed)
        val_pack = train_pack.subset(held)
        train_pack = train_pack.subset(sorted(set(range(len(train_pack))) - set(held)))
    replay_pack = _load_packs(cfg.replay, size, cfg, full_masks=False)
    # Base-domain validation is scored at the pack size (cheap; it only has to rank epochs).
    base_pack = _load_packs(cfg.base_val, size, cfg, full_masks=False)
    sources = [train_pack] + ([replay_pack] if replay_pack is not None else [])
    n_replay = len(replay_pack) if replay_pack is not None else 0
    share = cfg.replay_share if n_replay else 0.0

    def epoch_batches(epoch: int) -> list[list[BatchItem]]:
        rng = np.random.default_rng([cfg.seed, 1, epoch])
        batches = plan_epoch(len(train_pack), cfg.batch_size, rng, n_replay, share)
        if cfg.max_steps_per_epoch:
            batches = batches[: cfg.max_steps_per_epoch]
        return batches

    steps_per_epoch = len(epoch_batches(0))
    total_steps = steps_per_epoch * cfg.epochs
    warmup_steps = int(round(cfg.warmup_epochs * steps_per_epoch))

    # ---- run folder
    run_dir = Path(cfg.run_dir) if cfg.run_dir else (
        Path(config.resume).resolve().parent if config.resume else _default_run_dir(cfg))
    cfg.run_dir = str(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    from dermaseg_app.core.atomic import atomic_write_text

    atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2, default=str))
    best_path = run_dir / "best.safetensors"
    last_path = run_dir / "last.pt"

    # ---- state
    base_scores: dict[str, float] | None = None
    start_epoch, start_step, global_step = 0, 0, 0
    best_jsc: float | None = None
    best_epoch: int | None = None
    history: list[dict[str, Any]] = []
    sums: dict[str, float] = {}
    if ckpt is not None:
        start_epoch, start_step = int(ckpt["epoch"]), int(ckpt["step"])
        global_step = int(ckpt["global_step"])
        best_jsc = ckpt.get("best_jsc")
        best_epoch = ckpt.get("best_epoch")
        history = list(ckpt.get("history", []))
        sums = dict(ckpt.get("sums", {}))
        base_scores = ckpt.get("base_scores")
        _set_rng_state(ckpt["rng"])
        if start_step >= steps_per_epoch:
            start_epoch, start_step, sums = start_epoch + 1, 0, {}
    elapsed_before = float(ckpt.get("seconds", 0.0)) if ckpt is not None else 0.0
    if base_pack is not None and base_scores is None:
        assert base_g is not None
        base_g.to(device)
        base_scores = {"base_val_jsc": round(float(evaluate_pack(base_g, base_pack, device, cfg.threshold).mean.jsc), 5)}
        if val_pack is not None:
            base_scores["val_jsc"] = round(float(evaluate_pack(base_g, val_pack, device, cfg.threshold).mean.jsc), 5)
    base_floor = (base_scores["base_val_jsc"] - cfg.base_val_tolerance) if base_scores is not None else None

    def eval_model() -> nn.Module:
        return ema.module if ema is not None else g

    def model_info(metrics: dict[str, float]) -> Any:
        from dermaseg_app.ml.weights import ModelInfo

        data_desc = ", ".join(Path(p).name if Path(p).suffix == ".npz" else str(p) for p in cfg.data)
        trained_on = data_desc if not cfg.base_model else (
            f"{base_trained_on}; fine-tuned on {data_desc}" + (f" with replay of {', '.join(cfg.replay)}"
                                                                if cfg.replay else ""))
        return ModelInfo(name=cfg.model_name, version=cfg.model_version, arch=cfg.arch,
                         config=dict(model_cfg), input_size=size, threshold=cfg.threshold,
                         trained_on=trained_on, metrics=metrics)

    def save_resume(epoch: int, step: int, elapsed: float) -> Path:
        state = {
            "format": CHECKPOINT_FORMAT,
            "config": json.loads(json.dumps(cfg.to_dict(), default=str)),
            "model_config": json.loads(json.dumps(model_cfg)),
            "generator": g.state_dict(),
            "discriminator": d.state_dict(),
            "ema": ema.module.state_dict() if ema is not None else None,
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
            "epoch": epoch,
            "step": step,
            "global_step": global_step,
            "best_jsc": best_jsc,
            "best_epoch": best_epoch,
            "history": history,
            "sums": sums,
            "base_scores": base_scores,
            "rng": _rng_state(),
            "seconds": elapsed,
        }
        _atomic_torch_save(state, last_path)
        return last_path

    n_params = sum(p.numel() for p in g.parameters())
    yield TrainStarted(run_dir=run_dir, device=str(device), notice=notice, n_train=len(train_pack),
                       n_replay=n_replay, n_val=len(val_pack) if val_pack is not None else 0,
                       steps_per_epoch=steps_per_epoch, epochs=cfg.epochs, start_epoch=start_epoch + 1,
                       start_step=start_step, parameters=n_params,
                       n_base_val=len(base_pack) if base_pack is not None else 0, base_scores=base_scores)

    t_start = time.perf_counter()
    step_time_avg: float | None = None
    val_seconds = 0.0
    use_amp = bool(cfg.amp and device.type == "cuda")
    amp_dtype = torch.bfloat16
    if cpu_autocast is not None:
        use_amp, amp_dtype = True, cpu_autocast
    pool = ThreadPoolExecutor(max_workers=1)

    def prepare(epoch: int, step: int, items: list[BatchItem]) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([cfg.seed, 2, epoch, step])
        x, y = make_batch(items, sources, rng, cfg.augment)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        if device.type == "cuda":
            xt, yt = xt.pin_memory(), yt.pin_memory()
        return xt, yt

    # Data kept on the device: every source uploaded once (uint8 images N x 3 x S x S, bool masks);
    # a batch is indexed there and augmented by ml.augment_torch with the decisions the CPU path
    # would draw from the same seed (the batches equal the CPU path's except where CLAHE ran).
    on_device: tuple[torch.Tensor, torch.Tensor, list[int]] | None = None
    if cfg.device_data:
        on_device = (
            torch.from_numpy(np.concatenate([s.images for s in sources])).to(device)
            .permute(0, 3, 1, 2).contiguous(),
            torch.from_numpy(np.concatenate([s.masks for s in sources])).to(device)[:, None].contiguous(),
            [0, len(train_pack)],
        )

    from dermaseg_app.ml.augment_torch import augment_batch, draw_params, to_unit_float

    # On CUDA, --compile also fuses the augmentation's ~300 small operations (compiled, it gives the
    # eager values bit for bit on the CPU; there it is slower, so it is only compiled for CUDA).
    augment_fn: Any = (torch.compile(augment_batch, dynamic=False)
                       if on_device is not None and cfg.compile and device.type == "cuda" else augment_batch)

    def prepare_on_device(epoch: int, step: int, items: list[BatchItem]) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal augment_fn
        assert on_device is not None
        images, masks, offsets = on_device
        idx = torch.tensor([offsets[it.source] + it.index for it in items], dtype=torch.long)
        idx = idx.to(device, non_blocking=True)
        xb, yb = images.index_select(0, idx), masks.index_select(0, idx)
        if not cfg.augment.enabled:
            return to_unit_float(xb), yb.float()
        params = draw_params(len(items), np.random.default_rng([cfg.seed, 2, epoch, step]), cfg.augment)
        try:
            return augment_fn(xb, yb, params, cfg.augment)
        except Exception as exc:  # noqa: BLE001 - a compiler failure must not stop training
            if augment_fn is augment_batch:
                raise
            warnings.warn(f"compiled augmentation failed, using it uncompiled: {exc}", RuntimeWarning)
            augment_fn = augment_batch
            return augment_batch(xb, yb, params, cfg.augment)

    try:
        for epoch in range(start_epoch, cfg.epochs):
            batches = epoch_batches(epoch)
            first = start_step if epoch == start_epoch else 0
            if first == 0:
                sums = {}
            t_epoch = time.perf_counter()
            epoch_images, epoch_step_seconds = 0, 0.0
            _set_train_mode(g, frozen, cfg.freeze_bn_stats)
            d.train()
            pending: Future | None = (pool.submit(prepare, epoch, first, batches[first])
                                      if first < len(batches) and on_device is None else None)
            for step in range(first, len(batches)):
                t_step = time.perf_counter()
                if cfg.compile:
                    torch.compiler.cudagraph_mark_step_begin()  # a new step for CUDA graphs' memory
                if on_device is not None:
                    x, y = prepare_on_device(epoch, step, batches[step])
                else:
                    assert pending is not None
                    x, y = pending.result()
                    pending = (pool.submit(prepare, epoch, step + 1, batches[step + 1])
                               if step + 1 < len(batches) else None)
                    x = x.to(device, non_blocking=True)
                    y = y.to(device, non_blocking=True)
                progress = global_step / max(1, total_steps)
                lr_f = lr_factor(cfg.lr_schedule, progress, cfg.min_lr_factor)
                for group in opt_g.param_groups:
                    group["lr"] = cfg.lr * lr_f
                for group in opt_d.param_groups:
                    group["lr"] = (cfg.lr_d or cfg.lr) * lr_f
                adversarial = cfg.adversarial and global_step >= warmup_steps
                parts: dict[str, torch.Tensor] = {}  # the step's losses, read back in one transfer
                if cfg.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp):
                    logits = g_logits(x)
                    prob = torch.sigmoid(logits.float())
                    if adversarial:
                        h = x.shape[0] // 2
                        d_real = d_logits(x[:h], y[:h])
                        d_fake = d_logits(x[h:], prob[h:].detach())
                        loss_d = 0.5 * (_bce_logits(d_real.float(), 1.0) + _bce_logits(d_fake.float(), 0.0))
                        opt_d.zero_grad(set_to_none=True)
                        loss_d.backward()
                        opt_d.step()
                        parts["d"] = loss_d.detach()
                    l1 = (prob - y).abs().mean()
                    jac = soft_jaccard_loss(prob, y)
                    loss_g = cfg.lambda_l1 * l1 + cfg.alpha_jaccard * jac
                    bce_w = cfg.gan_bce_weight if adversarial else cfg.bce_weight
                    if bce_w:
                        bce = F.binary_cross_entropy_with_logits(logits.float(), y)
                        loss_g = loss_g + bce_w * bce
                        parts["bce"] = bce.detach()
                    if adversarial:
                        for p in d.parameters():
                            p.requires_grad_(False)
                        adv = _bce_logits(d_logits(x, prob).float(), 1.0)
                        for p in d.parameters():
                            p.requires_grad_(True)
                        loss_g = loss_g + cfg.adv_weight * adv
                        parts["adv"] = adv.detach()
                    if l2sp_pairs:
                        l2sp = torch.stack([(p - p0).pow(2).sum() for p, p0 in l2sp_pairs]).sum()
                        loss_g = loss_g + cfg.l2sp_weight * l2sp
                        parts["l2sp"] = l2sp.detach()
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
                if ema is not None:
                    ema.update(g, global_step)
                parts["l1"] = l1.detach()
                parts["jaccard"] = jac.detach()
                parts["g"] = loss_g.detach()
                values = torch.stack([v.float() for v in parts.values()]).tolist()
                losses: dict[str, float] = dict(zip(parts, values))
                if not math.isfinite(losses["g"]):
                    raise TrainError(f"the generator loss became {losses['g']} at epoch {epoch + 1} step "
                                     f"{step + 1}; lower the learning rate or check the data")
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v
                sums["_n"] = sums.get("_n", 0.0) + 1.0
                global_step += 1

                dt = time.perf_counter() - t_step
                epoch_images += int(x.shape[0])
                epoch_step_seconds += dt
                step_time_avg = dt if step_time_avg is None else 0.9 * step_time_avg + 0.1 * dt
                steps_left = total_steps - global_step
                epochs_left = cfg.epochs - epoch - 1
                eta = steps_left * step_time_avg + (epochs_left + 1) * val_seconds
                yield StepProgress(epoch=epoch + 1, epochs=cfg.epochs, step=step + 1,
                                   steps_per_epoch=len(batches), global_step=global_step, losses=losses,
                                   lr=cfg.lr * lr_f, images_per_second=x.shape[0] / max(step_time_avg, 1e-9),
                                   eta_seconds=eta, adversarial=adversarial)

                done_steps = step + 1
                if cancel is not None and cancel.is_set():
                    path = save_resume(epoch, done_steps, elapsed_before + time.perf_counter() - t_start)
                    yield CheckpointSaved(path=path, kind="resume", epoch=epoch + 1)
                    published = Path(cfg.out) if cfg.out and best_jsc is not None else (
                        best_path if best_path.exists() else None)
                    yield TrainCancelled(epoch=epoch + 1, step=done_steps, best_jsc=best_jsc,
                                         best_epoch=best_epoch, model_path=published,
                                         checkpoint_path=path, run_dir=run_dir)
                    return
                if cfg.checkpoint_every and global_step % cfg.checkpoint_every == 0 and done_steps < len(batches):
                    path = save_resume(epoch, done_steps, elapsed_before + time.perf_counter() - t_start)
                    yield CheckpointSaved(path=path, kind="resume", epoch=epoch + 1)

            # ---- epoch end: validation, best model, log, checkpoint
            n = max(sums.get("_n", 1.0), 1.0)
            train_losses = {k: v / n for k, v in sums.items() if k != "_n"}
            t_val = time.perf_counter()
            summary = evaluate_pack(eval_model(), val_pack, device, cfg.threshold) if val_pack is not None else None
            base_summary = (evaluate_pack(eval_model(), base_pack, device, cfg.threshold)
                            if base_pack is not None else None)
            val_seconds = time.perf_counter() - t_val
            val_jsc = summary.mean.jsc if summary is not None else None
            # An epoch qualifies when it keeps the base domain (base JSC within the tolerance).
            qualifies = base_summary is None or (base_floor is not None and base_summary.mean.jsc >= base_floor)
            is_best = qualifies and val_jsc is not None and (best_jsc is None or val_jsc > best_jsc)
            if summary is None:
                is_best = qualifies  # nothing to select on: the latest qualifying model is the best we know
            record: dict[str, Any] = {"epoch": epoch + 1, "global_step": global_step,
                                      "seconds": round(elapsed_before + time.perf_counter() - t_start, 1),
                                      "lr": cfg.lr * lr_factor(cfg.lr_schedule, global_step / max(1, total_steps),
                                                               cfg.min_lr_factor)}
            epoch_ips = epoch_images / epoch_step_seconds if epoch_step_seconds > 0 else None
            if epoch_ips is not None:
                record["images_per_s"] = round(epoch_ips, 2)
            record.update({f"train_{k}": round(v, 5) for k, v in train_losses.items()})
            if summary is not None:
                for k, v in summary.mean.as_dict().items():
                    if k != "hd95" and v is not None:
                        record[f"val_{k}"] = round(float(v), 5)
                record["val_pooled_jsc"] = round(float(summary.pooled.jsc), 5)
                record["val_pooled_dsc"] = round(float(summary.pooled.dsc), 5)
            if base_summary is not None:
                record["base_val_jsc"] = round(float(base_summary.mean.jsc), 5)
                record["base_val_dsc"] = round(float(base_summary.mean.dsc), 5)
                record["qualifies"] = bool(qualifies)
            history.append(record)
            if is_best:
                best_jsc, best_epoch = val_jsc, epoch + 1
                metrics = {k[4:]: v for k, v in record.items() if k.startswith("val_")}
                metrics["epoch"] = epoch + 1
                if "base_val_jsc" in record:
                    metrics["base_val_jsc"] = record["base_val_jsc"]
                from dermaseg_app.ml.weights import save_model

                save_model(best_path, eval_model(), model_info(metrics))
                yield CheckpointSaved(path=best_path, kind="best", epoch=epoch + 1)
                if cfg.out:
                    Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
                    save_model(Path(cfg.out), eval_model(), model_info(metrics),
                               card=model_card(cfg, history, best_epoch, _hardware()))
                    yield CheckpointSaved(path=Path(cfg.out), kind="published", epoch=epoch + 1)
            _write_logs(run_dir, history)
            path = save_resume(epoch, len(batches), elapsed_before + time.perf_counter() - t_start)
            yield CheckpointSaved(path=path, kind="resume", epoch=epoch + 1)
            epoch_seconds = time.perf_counter() - t_epoch
            eta = (cfg.epochs - epoch - 1) * epoch_seconds
            yield EpochEnd(epoch=epoch + 1, epochs=cfg.epochs, train_losses=train_losses,
                           val=summary.mean if summary is not None else None,
                           val_pooled=summary.pooled if summary is not None else None,
                           is_best=is_best, best_jsc=best_jsc, best_epoch=best_epoch,
                           seconds=epoch_seconds, eta_seconds=eta,
                           base_val=base_summary.mean if base_summary is not None else None,
                           qualifies=qualifies, images_per_second=epoch_ips)
            sums = {}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

    fell_back = False
    if base_pack is not None and best_epoch is None and history and base_g is not None:
        # No epoch kept the base domain: publish the base model unchanged (epoch 0).
        from dermaseg_app.ml.weights import save_model

        fell_back = True
        best_epoch = 0
        best_jsc = base_scores.get("val_jsc") if base_scores else None
        metrics = dict(base_scores or {}) | {"epoch": 0}
        save_model(best_path, base_g, model_info(metrics))
        yield CheckpointSaved(path=best_path, kind="best", epoch=0)
        if cfg.out:
            Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
            save_model(Path(cfg.out), base_g, model_info(metrics),
                       card=model_card(cfg, history, best_epoch, _hardware(), base_scores))
            yield CheckpointSaved(path=Path(cfg.out), kind="published", epoch=0)
    elif cfg.out and best_jsc is not None:
        # Refresh the published card with the full curve.
        from dermaseg_app.core.atomic import atomic_write_text
        from dermaseg_app.ml.weights import card_path

        atomic_write_text(card_path(Path(cfg.out)), model_card(cfg, history, best_epoch, _hardware(), base_scores))
    model_path = (Path(cfg.out) if cfg.out and (best_jsc is not None or fell_back)
                  else (best_path if best_path.exists() else None))
    yield TrainFinished(best_jsc=best_jsc, best_epoch=best_epoch, model_path=model_path, run_dir=run_dir,
                        seconds=elapsed_before + time.perf_counter() - t_start, history=history,
                        fell_back_to_base=fell_back)


# ============================================================================ logs and card

LOG_FIELDS_FIRST = ("epoch", "global_step", "seconds", "lr")


def _write_logs(run_dir: Path, history: list[dict[str, Any]]) -> None:
    from dermaseg_app.core.atomic import atomic_write_text

    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    keys: list[str] = list(LOG_FIELDS_FIRST)
    for r in history:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    for r in history:
        writer.writerow(r)
    atomic_write_text(run_dir / "metrics.csv", buf.getvalue())


def model_card(cfg: TrainConfig, history: list[dict[str, Any]], best_epoch: int | None, hardware: str,
               base_scores: dict[str, float] | None = None) -> str:
    """A Markdown model card of a run: what it was trained on, how, and its validation curve."""
    best = next((r for r in history if r["epoch"] == best_epoch), None)
    lines = [f"# {cfg.model_name} {cfg.model_version}", ""]
    summary = (f"{cfg.arch} lesion segmentation model "
               + ("fine-tuned from " + Path(cfg.base_model).name + " " if cfg.base_model else "")
               + f"trained on {', '.join(cfg.data)} at {cfg.input_size}x{cfg.input_size}")
    if best and "val_jsc" in best:
        summary += (f"; best validation epoch {best_epoch}: JSC {best['val_jsc']:.3f}, "
                    f"DSC {best['val_dsc']:.3f}, ACC {best['val_acc']:.3f}.")
    lines += [summary, "", "## Recipe", ""]
    recipe = {
        "data": cfg.data, "validation": cfg.val or f"{cfg.val_fraction:.0%} of the training data held out",
        "replay": cfg.replay, "replay share": cfg.replay_share if cfg.replay else None,
        "base model": cfg.base_model,
        "epochs": cfg.epochs, "batch size": cfg.batch_size, "input size": cfg.input_size,
        "optimizer": f"Adam lr {cfg.lr} betas ({cfg.beta1}, {cfg.beta2}), schedule {cfg.lr_schedule}",
        "loss": (("" if cfg.adv_weight == 1 else f"{cfg.adv_weight} ")
                 + f"adversarial BCE + {cfg.lambda_l1} L1 + {cfg.alpha_jaccard} soft Jaccard"
                 + (f" (+ {cfg.gan_bce_weight} pixel BCE)" if cfg.gan_bce_weight else "")
                 if cfg.adversarial else
                 f"supervised: {cfg.bce_weight} pixel BCE + {cfg.lambda_l1} L1 + {cfg.alpha_jaccard} soft Jaccard"),
        "supervised warm-up epochs": cfg.warmup_epochs if cfg.adversarial else "all",
        "EMA decay": cfg.ema_decay or "off", "frozen encoder": cfg.freeze_encoder,
        "batch-norm statistics fixed": cfg.freeze_bn_stats or None,
        "augmentation": dataclasses.asdict(cfg.augment), "seed": cfg.seed,
        "max steps per epoch": cfg.max_steps_per_epoch, "hardware": hardware,
        "speed settings": (f"precision {cfg.precision}"
                           + (", channels_last" if cfg.channels_last else "")
                           + (f", torch.compile ({cfg.compile_mode})" if cfg.compile else "")
                           + (", CUDA bf16 autocast" if cfg.amp else "")),
        "base-domain validation (epoch selection)": (
            f"{', '.join(cfg.base_val)}: an epoch qualifies if its JSC there is at most "
            f"{cfg.base_val_tolerance} below the base model's ({base_scores['base_val_jsc']:.4f}); "
            "the best qualifying epoch by validation JSC is kept, the base model if none qualifies. "
            "Figures on this set are selection figures, not an independent test"
            if cfg.base_val and base_scores else None),
        "L2-SP weight (distance from the base weights)": cfg.l2sp_weight or None,
    }
    for k, v in recipe.items():
        if v not in (None, [], ""):
            lines.append(f"- {k}: {v}")
    if best_epoch == 0 and cfg.base_val:
        lines += ["", "No epoch kept the base-domain validation JSC within the tolerance: "
                  "this file is the base model unchanged."]
    if cfg.command:
        lines += ["", "Command:", "", "```", cfg.command, "```"]
    with_base = any("base_val_jsc" in r for r in history)
    lines += ["", "## Validation curve (mean over images, threshold "
              f"{cfg.threshold})", "", "| epoch | time (s) | train G loss | val JSC | val DSC | val ACC | val SEN | val SPE | thresholded JSC |"
              + (" base-domain val JSC |" if with_base else ""),
              "|---|---|---|---|---|---|---|---|---|" + ("---|" if with_base else "")]
    for r in history:
        def f(key: str) -> str:
            v = r.get(key)
            return f"{v:.4f}" if isinstance(v, (int, float)) else "-"
        lines.append(f"| {r['epoch']}{' (best)' if r['epoch'] == best_epoch else ''} | {r['seconds']:.0f} | "
                     f"{f('train_g')} | {f('val_jsc')} | {f('val_dsc')} | {f('val_acc')} | {f('val_sen')} | "
                     f"{f('val_spe')} | {f('val_jsc_th')} |"
                     + (f" {f('base_val_jsc')}{'' if r.get('qualifies', True) else ' (too low)'} |" if with_base else ""))
    lines.append("")
    return "\n".join(lines)


def describe_eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"

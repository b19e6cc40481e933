"""The training engine: SLSNet's conditional GAN, fine-tuning, checkpoints and progress events.

Every architecture of ``ml.registry`` trains here (``TrainConfig.arch``): one without a
discriminator (the seed networks, docs/seed-networks.md) has no D, no D optimizer and no
adversarial term (``adversarial`` is turned off) and trains supervised with its paper's loss
(``registry.paper_loss``) or ``TrainConfig.loss``; its checkpoints have no D and resume the same.

No Qt here: the CLI prints the events and the GUI draws them (``format_event`` gives the text).

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

The package, by module: ``config`` (TrainConfig, the fine-tuning recipe, the hold-out rule, a
resumed run's recipe), ``events``, ``losses`` (and the learning-rate schedule), ``networks``
(G and D built, frozen in part, EMA), ``step`` (one training step: the loop's and the
benchmarks'), ``batches`` (the run's packs, each epoch's plan, CPU prefetch or on-device
batches behind one interface), ``state`` (the run state that round-trips to ``last.pt``),
``selection`` (validation, the best epoch, publishing), ``report`` (logs, model card, event
text), ``run`` (a run set up: its own config copy, device, step, data, folder, state) and
``loop`` (``train``). Everything public is importable from here.
"""

from dermaseg_app.ml.training import selection
from dermaseg_app.ml.training.batches import Batches, CpuBatches, DeviceBatches, RunData, load_packs, make_batches
from dermaseg_app.ml.training.config import (
    COMPILE_MODES,
    DEFAULT_EPOCHS,
    LR_SCHEDULES,
    TrainConfig,
    TrainError,
    finetune_config,
    holdout_indices,
    resumed_config,
    run_config,
)
from dermaseg_app.ml.training.events import (
    CheckpointSaved,
    EpochEnd,
    StepProgress,
    TrainCancelled,
    TrainEvent,
    TrainFinished,
    TrainStarted,
)
from dermaseg_app.ml.training.loop import train
from dermaseg_app.ml.training.losses import bce_logits, check_finite, lr_factor, soft_jaccard_loss
from dermaseg_app.ml.training.networks import (
    COMPILED_PREFIX,
    EMA,
    ENCODER_MODULES,
    build_networks,
    encoder_modules,
    freeze_encoder,
    plain_state_dict,
    set_train_mode,
)
from dermaseg_app.ml.training.report import (
    LOG_FIELDS_FIRST,
    describe_eta,
    format_event,
    hardware,
    model_card,
    write_logs,
)
from dermaseg_app.ml.training.selection import Publisher, evaluate_pack
from dermaseg_app.ml.training.state import CHECKPOINT_FORMAT, RunState, atomic_torch_save, load_checkpoint
from dermaseg_app.ml.training.step import LossWeights, Step, make_step

# the single module's private names that tests and scripts used
_atomic_torch_save = atomic_torch_save
_bce_logits = bce_logits
_hardware = hardware
_write_logs = write_logs
_set_train_mode = set_train_mode

__all__ = [
    "Batches", "CHECKPOINT_FORMAT", "COMPILED_PREFIX", "COMPILE_MODES", "CheckpointSaved", "CpuBatches",
    "DEFAULT_EPOCHS", "DeviceBatches", "EMA", "ENCODER_MODULES", "EpochEnd", "LOG_FIELDS_FIRST", "LR_SCHEDULES",
    "LossWeights", "Publisher", "RunData", "RunState", "Step", "StepProgress", "TrainCancelled", "TrainConfig",
    "TrainError", "TrainEvent", "TrainFinished", "TrainStarted", "atomic_torch_save", "bce_logits",
    "build_networks", "check_finite", "describe_eta", "encoder_modules", "evaluate_pack", "finetune_config",
    "format_event", "freeze_encoder", "hardware", "holdout_indices", "load_checkpoint", "load_packs",
    "lr_factor", "make_batches", "make_step", "model_card", "plain_state_dict", "resumed_config", "run_config",
    "selection", "set_train_mode", "soft_jaccard_loss", "train", "write_logs",
]

"""The events ``train`` yields: what the CLI prints and the GUI draws (``report.format_event``
gives one line of text for each)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


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


TrainEvent = TrainStarted | StepProgress | EpochEnd | CheckpointSaved | TrainFinished | TrainCancelled

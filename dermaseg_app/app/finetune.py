"""Fine-tuning on the reviewer's corrections, as a background job for the Training tab (no Qt).

``training_cases(projects)`` gathers the saved corrections of the open folder's projects.

``finetune_job(job, request, cancel)`` is a generator a ``workers.Worker`` drives:

1. the output folder is checked first (a run must not fail after minutes for a folder it
   cannot write), and ``out`` must be new and outside the shipped ``models/`` folder;
2. the corrected cases are split: with 4 or more, 10% (at least one, chosen with a fixed seed by
   the training engine's own rule, ``ml.training.holdout_indices``) are held out to choose the
   epoch and to score the model before and after;
3. they are decoded into training packs (``ml.data.load_cases``) written atomically to
   ``<project>/training/corrections-<size>.npz`` (and ``corrections-val-<size>.npz``); a pair
   that cannot be decoded is left out and reported (:class:`Prepared.skipped`);
4. the base model is scored on the held-out corrections ("before") and, when the request names
   the folder's images with ground truth, on all of them;
5. ``ml.training.train(finetune_config(...), cancel)`` runs; its events are passed on as they
   come;
6. the new model is scored on the folder's images with ground truth ("after"). The job returns a
   :class:`FinetuneOutcome`.

``cancel`` is a ``threading.Event`` handed to the engine, which then stops after the current
step, keeps the best model so far and writes a resumable checkpoint. The torch thread count is
left as the app has it (``num_threads`` unset), as for prediction.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dermaseg_app.core.dataset import Case
from dermaseg_app.core.project import Project
from dermaseg_app.core.training_set import TrainingSet, training_set

MIN_CASES = 2            # fewer corrections than this cannot fill a batch
MIN_FOR_VALIDATION = 4   # from this many on, some are held out to choose the epoch
VAL_FRACTION = 0.1
SPLIT_SEED = 0


class FinetuneError(ValueError):
    """A fine-tuning run that cannot start; the message names the file and the reason."""


@dataclass
class FinetuneRequest:
    base_model: Path
    cases: list[Case]
    project_dir: Path
    out: Path
    epochs: int = 20
    replay: Path | None = None
    replay_share: float = 0.5
    base_val: Path | None = None       # "keep dermoscopy": base-domain validation folder
    device: str | None = None          # None: auto
    overrides: dict[str, Any] = field(default_factory=dict)  # any other TrainConfig field
    ground_truth: list[Case] = field(default_factory=list)  # the folder's images with ground truth


@dataclass
class FolderScore:
    """The mean JSC of a model on the folder's images with ground truth."""

    n: int                 # images scored
    n_trained: int         # of them, corrected images the model is fine-tuned on
    jsc: float
    full_size: bool        # scored at the masks' own size (else at the model's input size)


@dataclass
class Preparing:
    text: str


@dataclass
class Prepared:
    n_train: int
    n_val: int
    pack: Path
    val_pack: Path | None
    skipped: list[tuple[str, str]]     # (image name, reason) of pairs that could not be decoded
    before_jsc: float | None           # the base model on the held-out corrections
    run_dir: Path
    folder_before: FolderScore | None = None  # the base model on the folder's ground truth
    folder_skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class FinetuneOutcome:
    cancelled: bool
    model_path: Path | None
    card_path: Path | None
    before_jsc: float | None
    after_jsc: float | None
    best_epoch: int | None
    epochs_done: int
    fell_back_to_base: bool
    run_dir: Path
    checkpoint: Path | None
    seconds: float
    n_train: int
    n_val: int
    train_seconds: float | None = None       # the training itself (the log's "finished in")
    folder_before: FolderScore | None = None
    folder_after: FolderScore | None = None


def default_output(project_dir: Path, model_name: str, when: float | None = None) -> Path:
    """``<project dir>/models/<model name>-ft-<YYYYmmdd-HHMM>.safetensors``, never an existing file."""
    stamp = time.strftime("%Y%m%d-%H%M", time.localtime(when))
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in model_name) or "model"
    folder = Path(project_dir) / "models"
    path = folder / f"{safe}-ft-{stamp}.safetensors"
    n = 2
    while path.exists():
        path = folder / f"{safe}-ft-{stamp}-{n}.safetensors"
        n += 1
    return path


def check_output(out: Path, base_model: Path) -> None:
    """Refuse an output that would overwrite a model (shipped or any other) or cannot be written."""
    from dermaseg_app import paths

    out = Path(out)
    if out.suffix != ".safetensors":
        raise FinetuneError(f"{out}: model files must end in .safetensors")
    if out.exists():
        raise FinetuneError(f"{out}: a file of that name exists; fine-tuning never overwrites a model")
    try:
        shipped = paths.models_dir().resolve()
    except OSError:
        shipped = None
    if shipped is not None and out.parent.resolve() == shipped:
        raise FinetuneError(f"{out}: the shipped models folder is never written; choose another folder")
    if out.resolve() == Path(base_model).resolve():
        raise FinetuneError(f"{out}: that is the base model")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FinetuneError(f"{out.parent}: cannot create the folder for the new model "
                            f"({exc.strerror or exc})") from None
    from dermaseg_app.core.atomic import atomic_write_bytes

    probe = out.parent / f".dermaseg-write-test-{threading.get_ident()}"
    try:
        atomic_write_bytes(probe, b"")
    except OSError as exc:
        raise FinetuneError(f"{out.parent}: the new model cannot be written there "
                            f"({getattr(exc, 'reason', None) or exc.strerror or exc})") from None
    probe.unlink(missing_ok=True)


def split_cases(cases: list[Case], seed: int = SPLIT_SEED) -> tuple[list[Case], list[Case]]:
    """(train, validation): from 4 cases on, ``VAL_FRACTION`` (at least 1) held out by the training
    engine's rule (``ml.training.holdout_indices``) on the cases sorted by stem; none below."""
    cases = sorted(cases, key=lambda c: c.stem)
    if len(cases) < MIN_FOR_VALIDATION:
        return cases, []
    from dermaseg_app.ml.training import holdout_indices

    val = set(holdout_indices(len(cases), VAL_FRACTION, seed))
    return ([c for i, c in enumerate(cases) if i not in val], [c for i, c in enumerate(cases) if i in val])


def training_cases(projects: list[Project]) -> TrainingSet:
    """The saved corrections of ``projects`` to fine-tune on; with several projects, a name two
    folders share is made unique (``<folder>__<stem>``) so the training pack keeps them apart."""
    ts = training_set(projects)
    if len(projects) > 1:
        seen: dict[str, int] = {}
        for c in ts.cases:
            seen[c.stem] = seen.get(c.stem, 0) + 1
        ts.cases = [c if seen[c.stem] == 1 else
                    Case(c.image, c.ground_truth, f"{c.image.parent.name}__{c.stem}") for c in ts.cases]
    return ts


def finetune_job(job, request: FinetuneRequest, cancel: threading.Event) -> Iterator[Any]:
    """A ``workers.Worker`` generator: yields Preparing / Prepared and the engine's events;
    returns a :class:`FinetuneOutcome`. Errors (FinetuneError, TrainError, WeightsError,
    DataError, OSError) propagate to the worker's ``errored`` signal."""
    from dermaseg_app.ml.data import load_cases, save_pack
    from dermaseg_app.ml.weights import card_path, read_model_info

    t0 = time.perf_counter()
    info = read_model_info(request.base_model)
    size = int(info.input_size)
    if len(request.cases) < MIN_CASES:
        raise FinetuneError(f"fine-tuning needs at least {MIN_CASES} corrected images, "
                            f"{len(request.cases)} given")
    check_output(request.out, request.base_model)
    yield Preparing(f"Reading {len(request.cases)} corrected images at {size} px…")
    train_cases, val_cases = split_cases(request.cases)
    errors: list[tuple[Case, str]] = []
    train_pack = load_cases(train_cases, size, source="corrections", errors=errors)
    val_pack = load_cases(val_cases, size, full_masks=True, source="corrections (held out)",
                          errors=errors) if val_cases else None
    skipped = [(c.image.name, reason) for c, reason in errors]
    if val_pack is not None and len(val_pack) == 0:
        val_pack = None
    if len(train_pack) + (len(val_pack) if val_pack is not None else 0) < MIN_CASES:
        raise FinetuneError("too few corrections could be read: "
                            + "; ".join(f"{name}: {reason}" for name, reason in skipped))
    if len(train_pack) < MIN_CASES and val_pack is not None:  # give the held-out ones back
        bad = {c.stem for c, _ in errors}
        train_pack = load_cases([c for c in train_cases + val_cases if c.stem not in bad], size,
                                source="corrections")
        val_pack = None
    training_dir = Path(request.project_dir) / "training"
    try:
        training_dir.mkdir(parents=True, exist_ok=True)
        pack_path = save_pack(train_pack, training_dir / f"corrections-{size}.npz")
        val_path = (save_pack(val_pack, training_dir / f"corrections-val-{size}.npz")
                    if val_pack is not None else None)
    except OSError as exc:
        raise FinetuneError(f"{training_dir}: cannot write the training data "
                            f"({getattr(exc, 'reason', None) or exc.strerror or exc})") from None
    if cancel.is_set():
        return _outcome_before_start(request, t0, len(train_pack), len(val_pack or []), training_dir)

    from dermaseg_app.ml.training import TrainCancelled, TrainFinished, TrainStarted, finetune_config

    overrides = dict(request.overrides)
    overrides.setdefault("run_dir", str(training_dir / "runs" / request.out.stem))
    if val_path is not None:
        overrides["val"] = [str(val_path)]
    else:
        overrides["val_fraction"] = 0.0
    if request.base_val is not None:
        overrides["base_val"] = [str(request.base_val)]
    cfg = finetune_config(request.base_model, [pack_path], request.out,
                          replay=[request.replay] if request.replay is not None else None,
                          replay_share=request.replay_share, epochs=request.epochs,
                          device=request.device, command="DermaSeg window: Training tab", **overrides)
    before = None
    if val_pack is not None:
        yield Preparing("Scoring the model before fine-tuning…")
        before = _score(request.base_model, val_pack, cfg)
    gt_pack, gt_skipped, folder_before = None, [], None
    if request.ground_truth:
        yield Preparing(f"Scoring the model before fine-tuning on the folder's {len(request.ground_truth)} "
                        "images with ground truth…")
        gt_pack, gt_skipped = _ground_truth_pack(request.ground_truth, size)
        if gt_pack is not None:
            folder_before = _folder_score(request.base_model, gt_pack, cfg, request)
    yield Prepared(n_train=len(train_pack), n_val=len(val_pack or []), pack=pack_path, val_pack=val_path,
                   skipped=skipped, before_jsc=before, run_dir=Path(cfg.run_dir),
                   folder_before=folder_before, folder_skipped=gt_skipped)
    if cancel.is_set():
        return _outcome_before_start(request, t0, len(train_pack), len(val_pack or []), Path(cfg.run_dir))
    yield Preparing("Loading the base model" + (" and the replay images…" if request.replay else "…"))

    epochs_done = 0
    outcome: FinetuneOutcome | None = None
    for event in _train(cfg, cancel):
        if isinstance(event, TrainStarted):
            epochs_done = event.start_epoch - 1
        elif type(event).__name__ == "EpochEnd":
            epochs_done = event.epoch
        elif isinstance(event, (TrainFinished, TrainCancelled)):
            cancelled = isinstance(event, TrainCancelled)
            model = request.out if request.out.exists() else event.model_path
            outcome = FinetuneOutcome(
                cancelled=cancelled, model_path=model,
                card_path=card_path(model) if model is not None and card_path(model).exists() else None,
                before_jsc=before, after_jsc=event.best_jsc, best_epoch=event.best_epoch,
                epochs_done=epochs_done,
                fell_back_to_base=bool(getattr(event, "fell_back_to_base", False)),
                run_dir=event.run_dir, checkpoint=getattr(event, "checkpoint_path", None),
                seconds=time.perf_counter() - t0, n_train=len(train_pack), n_val=len(val_pack or []),
                train_seconds=getattr(event, "seconds", None), folder_before=folder_before)
        yield event
    assert outcome is not None, "the training engine ended without a finished or cancelled event"
    if gt_pack is not None and outcome.model_path is not None and Path(outcome.model_path).is_file():
        yield Preparing("Scoring the new model on the folder's images with ground truth…")
        outcome.folder_after = _folder_score(Path(outcome.model_path), gt_pack, cfg, request)
    outcome.seconds = time.perf_counter() - t0
    return outcome


FULL_SIZE_LIMIT = 200  # up to this many images are scored at their masks' own size (memory)


def _ground_truth_pack(cases: list[Case], size: int):
    """(pack of the folder's images with ground truth, or None; [(name, reason)] left out)."""
    from dermaseg_app.ml.data import load_cases

    errors: list[tuple[Case, str]] = []
    pack = load_cases(cases, size, full_masks=len(cases) <= FULL_SIZE_LIMIT, source="folder ground truth",
                      errors=errors)
    skipped = [(c.image.name, reason) for c, reason in errors]
    return (pack if len(pack) else None), skipped


def _folder_score(model_path: Path, pack, cfg, request: FinetuneRequest) -> FolderScore:
    trained = {c.image.resolve() for c in request.cases}
    n_trained = sum(c.image.resolve() in trained for c in request.ground_truth)
    return FolderScore(n=len(pack), n_trained=n_trained, jsc=_score(model_path, pack, cfg, own_threshold=True),
                       full_size=pack.full_masks is not None)


def _train(cfg, cancel: threading.Event):
    from dermaseg_app.ml.training import train

    return train(cfg, cancel=cancel)


def _score(model_path: Path, pack, cfg, own_threshold: bool = False) -> float:
    """Mean JSC of the model on ``pack`` at ``cfg.threshold``, or with ``own_threshold`` at the
    model's own (as the window cuts its masks)."""
    import torch

    from dermaseg_app.ml.training import evaluate_pack
    from dermaseg_app.ml.weights import load_model

    model, info = load_model(model_path, "cpu")
    threshold = info.threshold if own_threshold else cfg.threshold
    return float(evaluate_pack(model, pack, torch.device("cpu"), threshold).mean.jsc)


def _outcome_before_start(request: FinetuneRequest, t0: float, n_train: int, n_val: int,
                          run_dir: Path) -> FinetuneOutcome:
    return FinetuneOutcome(cancelled=True, model_path=None, card_path=None, before_jsc=None, after_jsc=None,
                           best_epoch=None, epochs_done=0, fell_back_to_base=False, run_dir=run_dir,
                           checkpoint=None, seconds=time.perf_counter() - t0, n_train=n_train, n_val=n_val)

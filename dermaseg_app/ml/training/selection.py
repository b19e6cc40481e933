"""Scoring, choosing and publishing: validation of a model on a pack, the base model's reference
scores, which epoch is the best (and which qualify: base-domain JSC within the tolerance), the
per-epoch record, and the model files written (the run folder's best, the published ``out``
with its card, the base model when no epoch kept the base domain)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dermaseg_app.ml.data import Pack
from dermaseg_app.ml.training.batches import RunData
from dermaseg_app.ml.training.config import TrainConfig
from dermaseg_app.ml.training.events import CheckpointSaved
from dermaseg_app.ml.training.losses import lr_factor
from dermaseg_app.ml.training.report import hardware, model_card
from dermaseg_app.ml.training.state import RunState


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


def base_reference(base_g: nn.Module | None, data: RunData, device: torch.device,
                   threshold: float) -> dict[str, float]:
    """The base model's JSC on the base-domain validation set (and on the validation set)."""
    assert base_g is not None and data.base_val is not None
    base_g.to(device)
    scores = {"base_val_jsc": round(float(evaluate_pack(base_g, data.base_val, device, threshold).mean.jsc), 5)}
    if data.val is not None:
        scores["val_jsc"] = round(float(evaluate_pack(base_g, data.val, device, threshold).mean.jsc), 5)
    return scores


@dataclass
class EpochScores:
    summary: Any              # core.metrics.FolderSummary on the validation set, or None
    base_summary: Any         # on the base-domain validation set, or None
    qualifies: bool           # the base-domain JSC stayed within the tolerance (True without that set)
    is_best: bool

    @property
    def val_jsc(self) -> float | None:
        return self.summary.mean.jsc if self.summary is not None else None


def score_epoch(model: nn.Module, data: RunData, device: torch.device, cfg: TrainConfig,
                state: RunState) -> EpochScores:
    """Validate the epoch's model and judge it against the best so far."""
    summary = evaluate_pack(model, data.val, device, cfg.threshold) if data.val is not None else None
    base_summary = (evaluate_pack(model, data.base_val, device, cfg.threshold)
                    if data.base_val is not None else None)
    base_floor = (state.base_scores["base_val_jsc"] - cfg.base_val_tolerance
                  if state.base_scores is not None else None)
    val_jsc = summary.mean.jsc if summary is not None else None
    # An epoch qualifies when it keeps the base domain (base JSC within the tolerance).
    qualifies = base_summary is None or (base_floor is not None and base_summary.mean.jsc >= base_floor)
    is_best = qualifies and val_jsc is not None and (state.best_jsc is None or val_jsc > state.best_jsc)
    if summary is None:
        is_best = qualifies  # nothing to select on: the latest qualifying model is the best we know
    return EpochScores(summary, base_summary, qualifies, is_best)


def epoch_record(epoch: int, state: RunState, cfg: TrainConfig, total_steps: int, elapsed: float,
                 train_losses: dict[str, float], scores: EpochScores, images_per_s: float | None) -> dict[str, Any]:
    """The history row (metrics.jsonl, the card's curve) of ``epoch`` (0-based)."""
    record: dict[str, Any] = {"epoch": epoch + 1, "global_step": state.global_step, "seconds": round(elapsed, 1),
                              "lr": cfg.lr * lr_factor(cfg.lr_schedule, state.global_step / max(1, total_steps),
                                                       cfg.min_lr_factor)}
    if images_per_s is not None:
        record["images_per_s"] = round(images_per_s, 2)
    record.update({f"train_{k}": round(v, 5) for k, v in train_losses.items()})
    summary, base_summary = scores.summary, scores.base_summary
    if summary is not None:
        for k, v in summary.mean.as_dict().items():
            if k != "hd95" and v is not None:
                record[f"val_{k}"] = round(float(v), 5)
        record["val_pooled_jsc"] = round(float(summary.pooled.jsc), 5)
        record["val_pooled_dsc"] = round(float(summary.pooled.dsc), 5)
    if base_summary is not None:
        record["base_val_jsc"] = round(float(base_summary.mean.jsc), 5)
        record["base_val_dsc"] = round(float(base_summary.mean.dsc), 5)
        record["qualifies"] = bool(scores.qualifies)
    return record


class Publisher:
    """Writes a run's model files: ``best.safetensors`` in the run folder and, with ``cfg.out``,
    the published model with its card."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, model_cfg: dict[str, Any], base_trained_on: str) -> None:
        self.cfg, self.model_cfg, self.base_trained_on = cfg, model_cfg, base_trained_on
        self.best_path = run_dir / "best.safetensors"

    def model_info(self, metrics: dict[str, float]) -> Any:
        from dermaseg_app.ml.weights import ModelInfo

        cfg = self.cfg
        data_desc = ", ".join(Path(p).name if Path(p).suffix == ".npz" else str(p) for p in cfg.data)
        trained_on = data_desc if not cfg.base_model else (
            f"{self.base_trained_on}; fine-tuned on {data_desc}" + (f" with replay of {', '.join(cfg.replay)}"
                                                                     if cfg.replay else ""))
        return ModelInfo(name=cfg.model_name, version=cfg.model_version, arch=cfg.arch,
                         config=dict(self.model_cfg), input_size=cfg.input_size, threshold=cfg.threshold,
                         trained_on=trained_on, metrics=metrics, tta=cfg.tta)

    def _write(self, model: nn.Module, metrics: dict[str, Any], epoch: int, card: Any) -> Iterator[CheckpointSaved]:
        from dermaseg_app.ml.weights import save_model

        save_model(self.best_path, model, self.model_info(metrics))
        yield CheckpointSaved(path=self.best_path, kind="best", epoch=epoch)
        if self.cfg.out:
            Path(self.cfg.out).parent.mkdir(parents=True, exist_ok=True)
            save_model(Path(self.cfg.out), model, self.model_info(metrics), card=card())
            yield CheckpointSaved(path=Path(self.cfg.out), kind="published", epoch=epoch)

    def publish_best(self, model: nn.Module, record: dict[str, Any], history: list[dict[str, Any]]
                     ) -> Iterator[CheckpointSaved]:
        """The new best epoch (``record``, the last of ``history``)."""
        epoch = record["epoch"]
        metrics = {k[4:]: v for k, v in record.items() if k.startswith("val_")}
        metrics["epoch"] = epoch
        if "base_val_jsc" in record:
            metrics["base_val_jsc"] = record["base_val_jsc"]
        yield from self._write(model, metrics, epoch, lambda: model_card(self.cfg, history, epoch, hardware()))

    def fall_back(self, base_g: nn.Module, state: RunState) -> Iterator[CheckpointSaved]:
        """No epoch kept the base domain: publish the base model unchanged (epoch 0)."""
        state.best_epoch = 0
        state.best_jsc = state.base_scores.get("val_jsc") if state.base_scores else None
        metrics = dict(state.base_scores or {}) | {"epoch": 0}
        yield from self._write(base_g, metrics, 0, lambda: model_card(self.cfg, state.history, 0, hardware(),
                                                                     state.base_scores))

    def refresh_card(self, state: RunState) -> None:
        """The published card with the full curve."""
        from dermaseg_app.core.atomic import atomic_write_text
        from dermaseg_app.ml.weights import card_path

        assert self.cfg.out is not None
        atomic_write_text(card_path(Path(self.cfg.out)),
                          model_card(self.cfg, state.history, state.best_epoch, hardware(), state.base_scores))

    def model_path(self, best_jsc: float | None, fell_back: bool = False) -> Path | None:
        """The model a run leaves: the published one, else the run folder's best, else none."""
        if self.cfg.out and (best_jsc is not None or fell_back):
            return Path(self.cfg.out)
        return self.best_path if self.best_path.exists() else None

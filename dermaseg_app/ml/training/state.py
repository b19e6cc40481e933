"""The run state that round-trips to the resumable checkpoint (``last.pt``).

``last.pt`` holds G, D, EMA, both optimizers (D and its optimizer None for an architecture
without a discriminator), the epoch and step, the global step, the torch
RNG, the best so far, the history, the partial epoch's loss sums and the base model's scores;
it loads with ``torch.load(weights_only=True)``. The format (``CHECKPOINT_FORMAT``) is the one
that the single-module engine wrote, so its checkpoints (e.g. models/resume/b.pt) resume.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dermaseg_app.ml.training.config import TrainConfig, TrainError
from dermaseg_app.ml.training.networks import plain_state_dict
from dermaseg_app.ml.training.step import Step

CHECKPOINT_FORMAT = 1


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_torch_save(obj: Any, path: Path) -> None:
    from dermaseg_app.core.atomic import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


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


def load_networks(ckpt: dict[str, Any], g: torch.nn.Module, d: torch.nn.Module | None) -> None:
    """G's and D's weights from a checkpoint (before they go to the device)."""
    g.load_state_dict(plain_state_dict(ckpt["generator"]))
    if d is not None:
        if ckpt.get("discriminator") is None:
            raise TrainError("the checkpoint has no discriminator, the run's architecture needs one")
        d.load_state_dict(plain_state_dict(ckpt["discriminator"]))


def load_training(ckpt: dict[str, Any], step: Step) -> None:
    """The EMA and both optimizers' states from a checkpoint."""
    if step.ema is not None and ckpt.get("ema") is not None:
        step.ema.module.load_state_dict(plain_state_dict(ckpt["ema"]))
    step.opt_g.load_state_dict(ckpt["opt_g"])
    if step.opt_d is not None:
        step.opt_d.load_state_dict(ckpt["opt_d"])


@dataclass
class RunState:
    """Where a run stands: ``epoch`` (0-based) and the ``step``s of it done, the global step, the
    best epoch so far, the per-epoch history, the epoch's loss sums, the base model's scores and
    the seconds of training before this session."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    best_jsc: float | None = None
    best_epoch: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    sums: dict[str, float] = field(default_factory=dict)
    base_scores: dict[str, float] | None = None
    seconds: float = 0.0
    world_size: int = 1  # the processes training the run (torchrun), recorded for a resume

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any], steps_per_epoch: int) -> RunState:
        """The state saved in ``ckpt``; sets the torch RNG as it was. A finished epoch resumes at
        the next one's start."""
        state = cls(epoch=int(ckpt["epoch"]), step=int(ckpt["step"]), global_step=int(ckpt["global_step"]),
                    best_jsc=ckpt.get("best_jsc"), best_epoch=ckpt.get("best_epoch"),
                    history=list(ckpt.get("history", [])), sums=dict(ckpt.get("sums", {})),
                    base_scores=ckpt.get("base_scores"), seconds=float(ckpt.get("seconds", 0.0)))
        _set_rng_state(ckpt["rng"])
        if state.step >= steps_per_epoch:
            state.epoch, state.step, state.sums = state.epoch + 1, 0, {}
        return state

    def checkpoint(self, cfg: TrainConfig, model_cfg: dict[str, Any], step: Step, epoch: int, done_steps: int,
                   elapsed: float) -> dict[str, Any]:
        """The checkpoint of the run at ``done_steps`` steps of ``epoch`` (0-based), ``elapsed``
        seconds of training in all."""
        return {
            "format": CHECKPOINT_FORMAT,
            "config": json.loads(json.dumps(cfg.to_dict(), default=str)),
            "model_config": json.loads(json.dumps(model_cfg)),
            "generator": step.g.state_dict(),
            "discriminator": step.d.state_dict() if step.d is not None else None,
            "ema": step.ema.module.state_dict() if step.ema is not None else None,
            "opt_g": step.opt_g.state_dict(),
            "opt_d": step.opt_d.state_dict() if step.opt_d is not None else None,
            "epoch": epoch,
            "step": done_steps,
            "global_step": self.global_step,
            "best_jsc": self.best_jsc,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "sums": self.sums,
            "base_scores": self.base_scores,
            "rng": _rng_state(),
            "seconds": elapsed,
            "world_size": self.world_size,
        }

    def save(self, path: Path, cfg: TrainConfig, model_cfg: dict[str, Any], step: Step, epoch: int,
             done_steps: int, elapsed: float) -> Path:
        atomic_torch_save(self.checkpoint(cfg, model_cfg, step, epoch, done_steps, elapsed), path)
        return path

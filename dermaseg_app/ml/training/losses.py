"""G's and D's loss terms and the learning-rate schedule."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dermaseg_app.ml.training.config import TrainError


def soft_jaccard_loss(prob: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft IoU per image (sums over the pixels), averaged over the batch."""
    dims = tuple(range(1, prob.dim()))
    inter = (prob * target).sum(dims)
    union = prob.sum(dims) + target.sum(dims) - inter
    return (1.0 - (inter + eps) / (union + eps)).mean()


def bce_logits(logits: torch.Tensor, value: float) -> torch.Tensor:
    """BCE of logits against a constant label (1: real, 0: generated)."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, value))


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


def check_finite(losses: dict[str, float], epoch: int, step: int) -> None:
    """Stop a run whose generator loss is no longer a number (``epoch``, ``step``: 0-based)."""
    if not math.isfinite(losses["g"]):
        raise TrainError(f"the generator loss became {losses['g']} at epoch {epoch + 1} step "
                         f"{step + 1}; lower the learning rate or check the data")

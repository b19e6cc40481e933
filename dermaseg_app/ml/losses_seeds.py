"""The seed papers' training losses, on the generator's logits (B, 1, H, W) and a target in [0, 1].

- ``soft_dice_loss`` (seed 002, the reduced Mobile DeepLab): ``1 - DI`` with the soft Dice
  ``DI = (2 sum(p y) + eps) / (sum(p) + sum(y) + eps)`` per image, averaged over the batch.
- ``nll_epe_loss`` (seed 003, SLSDeep, eq. 1-3): ``L_nll + alpha L_epe`` with alpha = 0.5; the NLL
  is the binary cross-entropy of the lesion probability; the end-point error (Baker et al., the
  optical-flow EPE the paper cites) is ``sqrt((M_x - G_x)^2 + (M_y - G_y)^2)`` between the first
  derivatives of the predicted probability map M and the ground truth G, averaged over the pixels.
  The paper does not say how the derivatives are taken: forward differences here (on the
  (H-1) x (W-1) pixels where both exist), which is what a mask's edge is.
- ``dice_focal_loss`` (seed 004, eq. 8-10): ``Dice + focal``; ``Dice = 1 - (1 + 2 sum(p y)) /
  (1 + sum(p) + sum(y))`` per image and ``focal = mean(-y (1-p)^g log p - p^g (1-y) log(1-p))``
  with g = 2, as the paper writes it (the second term's weight is p^g, the usual focal weight).

``PAPER_LOSSES`` maps each architecture to its paper's loss; ``loss_terms(name, logits, target)``
gives the loss and its parts (for a training engine to log), ``paper_loss(arch)`` the loss name.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = [
    "soft_dice_loss",
    "end_point_error",
    "nll_epe_loss",
    "focal_loss",
    "dice_focal_loss",
    "LOSSES",
    "PAPER_LOSSES",
    "paper_loss",
    "loss_terms",
]


def _per_image_sums(a: torch.Tensor) -> torch.Tensor:
    return a.flatten(1).sum(1)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice per image (sums over the pixels), averaged over the batch (seed 002)."""
    prob = torch.sigmoid(logits.float())
    target = target.float()
    inter = _per_image_sums(prob * target)
    total = _per_image_sums(prob) + _per_image_sums(target)
    return (1.0 - (2.0 * inter + eps) / (total + eps)).mean()


def _safe_sqrt(sq: torch.Tensor) -> torch.Tensor:
    """sqrt with a zero (not infinite) gradient at 0."""
    positive = sq > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, sq, torch.ones_like(sq))), torch.zeros_like(sq))


def end_point_error(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean of sqrt((M_x - G_x)^2 + (M_y - G_y)^2) over the pixels, forward differences."""
    prob, target = prob.float(), target.float()
    mx = prob[..., :-1, 1:] - prob[..., :-1, :-1]
    my = prob[..., 1:, :-1] - prob[..., :-1, :-1]
    gx = target[..., :-1, 1:] - target[..., :-1, :-1]
    gy = target[..., 1:, :-1] - target[..., :-1, :-1]
    return _safe_sqrt((mx - gx) ** 2 + (my - gy) ** 2).mean()


def nll_epe_terms(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.5) -> dict[str, torch.Tensor]:
    nll = F.binary_cross_entropy_with_logits(logits.float(), target.float())
    epe = end_point_error(torch.sigmoid(logits.float()), target)
    return {"loss": nll + alpha * epe, "nll": nll, "epe": epe}


def nll_epe_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """L_nll + alpha L_epe (seed 003, alpha = 0.5)."""
    return nll_epe_terms(logits, target, alpha)["loss"]


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """mean(-y (1-p)^g log p - p^g (1-y) log(1-p)), the logs from the logits (stable)."""
    logits, target = logits.float(), target.float()
    p = torch.sigmoid(logits)
    log_p = F.logsigmoid(logits)
    log_not_p = F.logsigmoid(-logits)
    return (-target * (1 - p) ** gamma * log_p - p**gamma * (1 - target) * log_not_p).mean()


def paper_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Seed 004's eq. 8: 1 - (1 + 2 sum(p y)) / (1 + sum(p) + sum(y)) per image, batch mean."""
    prob = torch.sigmoid(logits.float())
    target = target.float()
    inter = _per_image_sums(prob * target)
    return (1.0 - (1.0 + 2.0 * inter) / (1.0 + _per_image_sums(prob) + _per_image_sums(target))).mean()


def dice_focal_terms(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> dict[str, torch.Tensor]:
    dice = paper_dice_loss(logits, target)
    focal = focal_loss(logits, target, gamma)
    return {"loss": dice + focal, "dice": dice, "focal": focal}


def dice_focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Dice + focal (seed 004, gamma = 2)."""
    return dice_focal_terms(logits, target, gamma)["loss"]


def _soft_dice_terms(logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    loss = soft_dice_loss(logits, target)
    return {"loss": loss, "dice": loss}


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]] = {
    "soft_dice": _soft_dice_terms,
    "nll_epe": nll_epe_terms,
    "dice_focal": dice_focal_terms,
}

PAPER_LOSSES: dict[str, str] = {
    "mobile_deeplab": "soft_dice",
    "slsdeep": "nll_epe",
    "dual_attention_unet": "dice_focal",
}


def paper_loss(arch: str) -> str | None:
    """The name (a key of LOSSES) of ``arch``'s paper's loss; None for SLSNet (its GAN loss lives
    in the training engine)."""
    return PAPER_LOSSES.get(arch)


def loss_terms(name: str, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """{"loss": the value to minimise, and its parts} of loss ``name`` (a key of LOSSES)."""
    try:
        fn = LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(sorted(LOSSES))}") from None
    return fn(logits, target)

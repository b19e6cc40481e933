"""One training step, the engine's and the benchmarks' (benchmarks/bench_step.py, bench_training.py).

The paper's schema, pix2pix style: G predicts the batch once; D is updated on a half batch of
real (image, mask) pairs (label 1) and the other half with G's masks (label 0), BCE; then G is
updated with ``adv_weight * adversarial BCE + lambda_l1 * L1 + alpha_jaccard * soft Jaccard``
(+ pixel BCE while supervised or with ``gan_bce_weight``, + L2-SP toward the base weights). The
losses are read back in one transfer.

An architecture without a discriminator (the seed networks) has no D and no ``opt_d`` and trains
supervised with a named loss (``loss``: its paper's, ``ml.losses_seeds.loss_terms``), whose parts
are logged; a named loss given for SLSNet replaces L1 + soft Jaccard (+ BCE), the adversarial
term (when on) added to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dermaseg_app.ml.losses_seeds import loss_terms
from dermaseg_app.ml.training.config import TrainConfig
from dermaseg_app.ml.training.losses import bce_logits, soft_jaccard_loss
from dermaseg_app.ml.training.networks import EMA


@dataclass(frozen=True)
class LossWeights:
    lambda_l1: float = 0.1
    alpha_jaccard: float = 0.5
    bce_weight: float = 1.0          # pixel BCE while supervised
    gan_bce_weight: float = 0.0      # pixel BCE in the adversarial phase
    adv_weight: float = 1.0
    l2sp_weight: float = 0.0

    @classmethod
    def of(cls, cfg: TrainConfig) -> LossWeights:
        return cls(lambda_l1=cfg.lambda_l1, alpha_jaccard=cfg.alpha_jaccard, bce_weight=cfg.bce_weight,
                   gan_bce_weight=cfg.gan_bce_weight, adv_weight=cfg.adv_weight, l2sp_weight=cfg.l2sp_weight)


class Step:
    """G and D with their optimizers (and G's EMA): ``step(x, y, adversarial, global_step)``
    updates them on one batch and returns its losses as floats. ``d`` and ``opt_d`` None: G alone
    (never adversarial); ``loss``: a name in ``ml.losses_seeds.LOSSES`` for G's supervised loss
    (None: SLSNet's L1 + soft Jaccard + pixel BCE)."""

    def __init__(self, g: nn.Module, d: nn.Module | None, opt_g: torch.optim.Optimizer,
                 opt_d: torch.optim.Optimizer | None, weights: LossWeights, *, device_type: str = "cpu",
                 autocast: torch.dtype | None = None, channels_last: bool = False, compile_mode: str | None = None,
                 ema: EMA | None = None, l2sp_pairs: Sequence[tuple[torch.Tensor, torch.Tensor]] = (),
                 loss: str | None = None) -> None:
        self.g, self.d, self.opt_g, self.opt_d, self.weights = g, d, opt_g, opt_d, weights
        self.device_type, self.autocast, self.channels_last = device_type, autocast, channels_last
        self.ema, self.l2sp_pairs, self.loss = ema, list(l2sp_pairs), loss
        self.compiled = compile_mode is not None
        # The step calls these; compiled, they share G's and D's parameters (state dicts unchanged).
        self.g_logits: Any = g.forward_logits
        self.d_logits: Any = d.forward_logits if d is not None else None
        if compile_mode is not None:
            self.g_logits = torch.compile(self.g_logits, mode=compile_mode, dynamic=False)
            if d is not None:
                self.d_logits = torch.compile(self.d_logits, mode=compile_mode, dynamic=False)

    def begin(self) -> None:
        """Call before fetching a step's batch: a new step for CUDA graphs' memory when compiled."""
        if self.compiled:
            torch.compiler.cudagraph_mark_step_begin()

    def set_lr(self, lr_g: float, lr_d: float) -> None:
        for group in self.opt_g.param_groups:
            group["lr"] = lr_g
        if self.opt_d is not None:
            for group in self.opt_d.param_groups:
                group["lr"] = lr_d

    def eval_model(self) -> nn.Module:
        """What is validated and saved: G's EMA when there is one, else G."""
        return self.ema.module if self.ema is not None else self.g

    def __call__(self, x: torch.Tensor, y: torch.Tensor, adversarial: bool, global_step: int) -> dict[str, float]:
        w, d, d_logits, opt_d = self.weights, self.d, self.d_logits, self.opt_d
        if adversarial and (d is None or opt_d is None):
            raise ValueError("an adversarial step needs a discriminator (this architecture has none)")
        parts: dict[str, torch.Tensor] = {}  # the step's losses, read back in one transfer
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=self.device_type, dtype=self.autocast or torch.bfloat16,
                            enabled=self.autocast is not None):
            logits = self.g_logits(x)
            prob = torch.sigmoid(logits.float())
            if adversarial:
                assert d is not None and opt_d is not None
                h = x.shape[0] // 2
                d_real = d_logits(x[:h], y[:h])
                d_fake = d_logits(x[h:], prob[h:].detach())
                loss_d = 0.5 * (bce_logits(d_real.float(), 1.0) + bce_logits(d_fake.float(), 0.0))
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()
                parts["d"] = loss_d.detach()
            l1 = jac = None
            if self.loss is not None:  # a named loss (a seed paper's): its parts are logged
                terms = loss_terms(self.loss, logits, y)
                loss_g = terms.pop("loss")
                parts.update({k: v.detach() for k, v in terms.items()})
            else:
                l1 = (prob - y).abs().mean()
                jac = soft_jaccard_loss(prob, y)
                loss_g = w.lambda_l1 * l1 + w.alpha_jaccard * jac
                bce_w = w.gan_bce_weight if adversarial else w.bce_weight
                if bce_w:
                    bce = F.binary_cross_entropy_with_logits(logits.float(), y)
                    loss_g = loss_g + bce_w * bce
                    parts["bce"] = bce.detach()
            if adversarial:
                assert d is not None
                for p in d.parameters():
                    p.requires_grad_(False)
                adv = bce_logits(d_logits(x, prob).float(), 1.0)
                for p in d.parameters():
                    p.requires_grad_(True)
                loss_g = loss_g + w.adv_weight * adv
                parts["adv"] = adv.detach()
            if self.l2sp_pairs:
                l2sp = torch.stack([(p - p0).pow(2).sum() for p, p0 in self.l2sp_pairs]).sum()
                loss_g = loss_g + w.l2sp_weight * l2sp
                parts["l2sp"] = l2sp.detach()
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        if self.ema is not None:
            self.ema.update(self.g, global_step)
        if l1 is not None and jac is not None:
            parts["l1"] = l1.detach()
            parts["jaccard"] = jac.detach()
        parts["g"] = loss_g.detach()
        values = torch.stack([v.float() for v in parts.values()]).tolist()
        return dict(zip(parts, values, strict=True))


def make_step(cfg: TrainConfig, g: nn.Module, d: nn.Module | None, device_type: str = "cpu", *,
              autocast: torch.dtype | None = None, ema: EMA | None = None,
              l2sp_pairs: Sequence[tuple[torch.Tensor, torch.Tensor]] = (), **adam: Any) -> Step:
    """The engine's step for ``cfg`` on G and D (already on the device, encoder frozen if it is to
    be): Adam on G's trainable parameters (``lr``) and D's (``lr_d`` or ``lr``), betas
    (``beta1``, ``beta2``), ``adam`` passed on (e.g. ``fused=True``); the loss weights, channels_last
    and ``torch.compile`` from ``cfg``; ``autocast``: the autocast dtype, None for none. ``d`` None
    (an architecture without a discriminator): no ``opt_d``. G's loss: ``cfg.loss``, else
    ``cfg.arch``'s paper loss (``registry.paper_loss``; None for SLSNet: the engine's own)."""
    from dermaseg_app.ml import registry

    betas = (cfg.beta1, cfg.beta2)
    opt_g = torch.optim.Adam([p for p in g.parameters() if p.requires_grad], lr=cfg.lr, betas=betas, **adam)
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr_d or cfg.lr, betas=betas, **adam) if d is not None else None
    loss = cfg.loss or (registry.paper_loss(cfg.arch) if cfg.arch in registry.ARCHITECTURES else None)
    return Step(g, d, opt_g, opt_d, LossWeights.of(cfg), device_type=device_type, autocast=autocast,
                channels_last=cfg.channels_last, compile_mode=cfg.compile_mode if cfg.compile else None,
                ema=ema, l2sp_pairs=l2sp_pairs, loss=loss)

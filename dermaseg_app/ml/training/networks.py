"""G and D of a run: built (fresh or from a base model; D only for an architecture that has one),
frozen in part (the architecture's encoder, ``registry.encoder_module_names``), averaged (EMA)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from dermaseg_app.ml.training.config import TrainConfig, TrainError

ENCODER_MODULES: tuple[str, ...] = ("multiscale", "down1", "down2", "stage1", "down3", "stage2")  # SLSNet's
COMPILED_PREFIX = "_orig_mod."


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


def encoder_modules(generator: nn.Module, arch: str = "slsnet") -> list[nn.Module]:
    """The encoder of an ``arch`` generator (``registry.encoder_module_names``; SLSNet's: the
    multiscale block, downsamplers and FAM stages)."""
    from dermaseg_app.ml import registry

    names = ENCODER_MODULES if arch == "slsnet" else registry.encoder_module_names(arch)
    missing = [n for n in names if not hasattr(generator, n)]
    if missing:
        raise TrainError(f"cannot freeze the encoder: the generator has no {', '.join(missing)}")
    return [getattr(generator, n) for n in names]


def freeze_encoder(generator: nn.Module, arch: str = "slsnet") -> int:
    """Stop training the encoder (no gradients, batch-norm statistics fixed); returns its size."""
    n = 0
    for m in encoder_modules(generator, arch):
        m.eval()
        for p in m.parameters():
            p.requires_grad_(False)
            n += p.numel()
    return n


def set_train_mode(generator: nn.Module, frozen: bool, bn_stats_fixed: bool = False, arch: str = "slsnet") -> None:
    """G in training mode, but for a frozen encoder and (``bn_stats_fixed``) batch norm."""
    generator.train()
    if frozen:
        for m in encoder_modules(generator, arch):
            m.eval()
    if bn_stats_fixed:  # batch norm normalises with the base model's running statistics, never updates them
        for m in generator.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def plain_state_dict(state: dict[str, Any]) -> dict[str, Any]:
    """A state dict without the ``_orig_mod.`` prefix that a ``torch.compile``-wrapped module's
    keys carry (the engine compiles the forward functions, so its own files never have it)."""
    return {(k[len(COMPILED_PREFIX):] if k.startswith(COMPILED_PREFIX) else k): v for k, v in state.items()}


def build_networks(cfg: TrainConfig) -> tuple[nn.Module, nn.Module | None, dict[str, Any], str]:
    """G, D (None for an architecture without one), the architecture's config and what the base
    model was trained on ("" for a fresh G).
    Sets the run's ``cfg.arch`` (and ``cfg.input_size`` from a base model kept at its size):
    ``cfg`` is the run's own copy."""
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
    d = registry.build_discriminator(arch, model_cfg) if registry.has_discriminator(arch) else None
    cfg.arch = arch
    return g, d, model_cfg, trained_on

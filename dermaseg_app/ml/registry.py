"""Architecture registry: names -> builders of the generator and (SLSNet only) the discriminator.

``slsnet`` is the product's GAN-trained network; ``mobile_deeplab``, ``slsdeep`` and
``dual_attention_unet`` are the seed papers' segmenters (``ml.networks``, docs/seed-networks.md):
they have no discriminator (``has_discriminator``) and train supervised with their paper's loss
(``paper_loss``, ``ml.losses_seeds``). Every generator takes RGB in [0, 1] at a multiple of 8 and
has ``forward_logits`` (B, 1, H, W) and ``forward`` (its sigmoid).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from .networks import (
    DualAttentionUNet,
    DualAttentionUNetConfig,
    MobileDeepLab,
    MobileDeepLabConfig,
    SLSDeep,
    SLSDeepConfig,
)
from .slsnet import SLSNetConfig, SLSNetDiscriminator, SLSNetGenerator

__all__ = [
    "ARCHITECTURES",
    "DISCRIMINATORS",
    "TITLES",
    "ENCODER_MODULES",
    "build_generator",
    "build_discriminator",
    "default_config",
    "has_discriminator",
    "paper_loss",
    "encoder_module_names",
    "title",
]


def _build_slsnet(config: dict[str, Any] | None = None) -> nn.Module:
    return SLSNetGenerator(SLSNetConfig.from_dict(config))


def _build_slsnet_discriminator(config: dict[str, Any] | None = None) -> nn.Module:
    return SLSNetDiscriminator(SLSNetConfig.from_dict(config))


def _build_mobile_deeplab(config: dict[str, Any] | None = None) -> nn.Module:
    return MobileDeepLab(MobileDeepLabConfig.from_dict(config))


def _build_slsdeep(config: dict[str, Any] | None = None) -> nn.Module:
    return SLSDeep(SLSDeepConfig.from_dict(config))


def _build_dual_attention_unet(config: dict[str, Any] | None = None) -> nn.Module:
    return DualAttentionUNet(DualAttentionUNetConfig.from_dict(config))


ARCHITECTURES: dict[str, Callable[[dict[str, Any] | None], nn.Module]] = {
    "slsnet": _build_slsnet,
    "mobile_deeplab": _build_mobile_deeplab,
    "slsdeep": _build_slsdeep,
    "dual_attention_unet": _build_dual_attention_unet,
}
DISCRIMINATORS: dict[str, Callable[[dict[str, Any] | None], nn.Module]] = {
    "slsnet": _build_slsnet_discriminator,
}
_DEFAULT_CONFIGS: dict[str, Callable[[], dict[str, Any]]] = {
    "slsnet": lambda: SLSNetConfig().to_dict(),
    "mobile_deeplab": lambda: MobileDeepLabConfig().to_dict(),
    "slsdeep": lambda: SLSDeepConfig().to_dict(),
    "dual_attention_unet": lambda: DualAttentionUNetConfig().to_dict(),
}
TITLES: dict[str, str] = {
    "slsnet": "SLSNet",
    "mobile_deeplab": "reduced Mobile DeepLab (MobileNetV2 0.35)",
    "slsdeep": "SLSDeep",
    "dual_attention_unet": "multiscale dual-attention U-Net",
}
# The generator's encoder submodules (what ``--freeze-encoder`` freezes), by attribute name.
ENCODER_MODULES: dict[str, tuple[str, ...]] = {
    "slsnet": ("multiscale", "down1", "down2", "stage1", "down3", "stage2"),
    "mobile_deeplab": ("stem", "encoder_low", "encoder_high"),
    "slsdeep": ("stem", "layer1", "layer2", "layer3", "layer4"),
    "dual_attention_unet": ("encoder1", "encoder2", "encoder3"),
}


def _lookup(table: dict[str, Callable[..., Any]], arch: str, what: str) -> Callable[..., Any]:
    try:
        return table[arch]
    except KeyError:
        known = ", ".join(sorted(table)) or "(none)"
        raise ValueError(f"unknown {what} architecture {arch!r}; known: {known}") from None


def build_generator(arch: str, config: dict[str, Any] | None = None) -> nn.Module:
    """A freshly initialized generator of architecture ``arch`` with ``config`` (None: defaults)."""
    return _lookup(ARCHITECTURES, arch, "generator")(config)


def has_discriminator(arch: str) -> bool:
    """Whether ``arch`` trains adversarially (has a discriminator); ValueError for an unknown arch."""
    _lookup(ARCHITECTURES, arch, "generator")
    return arch in DISCRIMINATORS


def build_discriminator(arch: str, config: dict[str, Any] | None = None) -> nn.Module:
    """A freshly initialized discriminator of architecture ``arch`` (ValueError when ``arch`` has
    none: check ``has_discriminator`` first)."""
    if arch in ARCHITECTURES and arch not in DISCRIMINATORS:
        raise ValueError(f"architecture {arch!r} has no discriminator: it trains supervised "
                         f"(its loss: {paper_loss(arch)})")
    return _lookup(DISCRIMINATORS, arch, "discriminator")(config)


def default_config(arch: str) -> dict[str, Any]:
    """The default config dict of ``arch`` (JSON-ready)."""
    return _lookup(_DEFAULT_CONFIGS, arch, "generator")()


def paper_loss(arch: str) -> str | None:
    """The name of ``arch``'s paper's loss in ``ml.losses_seeds.LOSSES``; None for SLSNet (the
    engine's GAN loss)."""
    from .losses_seeds import paper_loss as lookup

    _lookup(ARCHITECTURES, arch, "generator")
    return lookup(arch)


def encoder_module_names(arch: str) -> tuple[str, ...]:
    """The attribute names of ``arch``'s encoder submodules."""
    _lookup(ARCHITECTURES, arch, "generator")
    return ENCODER_MODULES[arch]


def title(arch: str) -> str:
    """A name for people ("SLSNet", "SLSDeep", ...); the key itself when none is registered."""
    return TITLES.get(arch, arch)

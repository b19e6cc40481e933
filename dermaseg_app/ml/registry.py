"""Architecture registry: names -> builders of the generator and the discriminator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from .slsnet import SLSNetConfig, SLSNetDiscriminator, SLSNetGenerator

__all__ = [
    "ARCHITECTURES",
    "DISCRIMINATORS",
    "build_generator",
    "build_discriminator",
    "default_config",
]


def _build_slsnet(config: dict[str, Any] | None = None) -> nn.Module:
    return SLSNetGenerator(SLSNetConfig.from_dict(config))


def _build_slsnet_discriminator(config: dict[str, Any] | None = None) -> nn.Module:
    return SLSNetDiscriminator(SLSNetConfig.from_dict(config))


ARCHITECTURES: dict[str, Callable[[dict[str, Any] | None], nn.Module]] = {
    "slsnet": _build_slsnet,
}
DISCRIMINATORS: dict[str, Callable[[dict[str, Any] | None], nn.Module]] = {
    "slsnet": _build_slsnet_discriminator,
}
_DEFAULT_CONFIGS: dict[str, Callable[[], dict[str, Any]]] = {
    "slsnet": lambda: SLSNetConfig().to_dict(),
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


def build_discriminator(arch: str, config: dict[str, Any] | None = None) -> nn.Module:
    """A freshly initialized discriminator of architecture ``arch``."""
    return _lookup(DISCRIMINATORS, arch, "discriminator")(config)


def default_config(arch: str) -> dict[str, Any]:
    """The default config dict of ``arch`` (JSON-ready)."""
    return _lookup(_DEFAULT_CONFIGS, arch, "generator")()

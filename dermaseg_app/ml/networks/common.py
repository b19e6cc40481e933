"""What the seed networks share: the config dict round-trip and the input check."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import torch

__all__ = ["ConfigDict", "check_input"]

T = TypeVar("T", bound="ConfigDict")


class ConfigDict:
    """Mixin for a config dataclass: ``to_dict`` (JSON-ready, tuples as lists) and ``from_dict``
    (missing keys take the defaults, unknown keys are an error, lists become tuples)."""

    _NAME = "network"

    def _tuples(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, (list, tuple)):
                setattr(self, f.name, tuple(
                    tuple(int(x) for x in v) if isinstance(v, (list, tuple)) else v for v in value))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if isinstance(v, tuple):
                v = [list(x) if isinstance(x, tuple) else x for x in v]
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any] | None) -> T:
        if data is None:
            return cls()
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls._NAME} config keys: {', '.join(unknown)}")
        return cls(**data)


def check_input(x: torch.Tensor, name: str, in_channels: int, multiple: int = 8) -> None:
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(f"{name} expects a (B, {in_channels}, H, W) tensor, got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h % multiple or w % multiple:
        raise ValueError(f"{name} needs height and width divisible by {multiple}, got {h}x{w}")


def check_size(input_size: int, multiple: int = 8) -> None:
    if input_size <= 0 or input_size % multiple:
        raise ValueError(f"input_size must be a positive multiple of {multiple}, got {input_size}")


def check_dropout(name: str, p: float) -> None:
    if not 0.0 <= float(p) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {p}")

"""Serialisable edit operations and their registry.

:class:`EditOp` is a replayable description of one edit (``name`` + JSON-safe ``params``), which
the undo history (``core.history``) and the crash journal (``core.store``) record;
``EditOp.apply(mask)`` replays it bit-identically.

``OPS`` maps each operation's name to an :class:`Operation` (its "Undo ..." label and the
function that replays it). The modules that define operations register them where they are
defined (``@register("smooth", "smooth")``); importing ``dermaseg_app.core.edit`` imports them
all, so the registry is complete whichever module a caller imports first. The operations that
need no module of their own (``set_geometry``, ``clear``, ``reset``) are registered here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from shapely.geometry.base import BaseGeometry

from dermaseg_app.core.edit.base import BBox, check_mask, diff_bbox
from dermaseg_app.core.geometry import polygon_rings, rasterize_rings

Params = Mapping[str, Any]


@dataclass(frozen=True)
class EditResult:
    """A new mask and the box of pixels that may differ from the input (None: unchanged)."""

    mask: np.ndarray
    bbox: BBox | None
    op: EditOp | None = None

    @property
    def changed(self) -> bool:
        return self.bbox is not None


def result(old: np.ndarray, new: np.ndarray, region: BBox | None, op: EditOp | None) -> EditResult:
    """The EditResult of ``old`` -> ``new``, its box the changed pixels inside ``region``."""
    return EditResult(new, diff_bbox(old, new, region), op)


# (mask, params, reset_mask) -> result; mask is a checked 2-D bool array
Replay = Callable[[np.ndarray, Params, "np.ndarray | None"], EditResult]


@dataclass(frozen=True)
class Operation:
    """One registered operation: ``label`` for an "Undo <label>" menu entry, ``replay`` to apply
    its parameters to a mask."""

    name: str
    label: str
    replay: Replay


OPS: dict[str, Operation] = {}


def register(name: str, label: str) -> Callable[[Replay], Replay]:
    """Decorator: register ``fn(mask, params, reset_mask) -> EditResult`` as operation ``name``."""

    def add(fn: Replay) -> Replay:
        if name in OPS:
            raise ValueError(f"edit operation {name!r} is registered twice")
        OPS[name] = Operation(name, label, fn)
        return fn

    return add


def rounded(values: ArrayLike, nd: int = 3) -> list[list[float]]:
    """Points as JSON-safe ``[[x, y], ...]`` rounded to ``nd`` decimals."""
    return [[round(float(x), nd), round(float(y), nd)]
            for x, y in np.asarray(values, float).reshape(-1, 2)]


@dataclass(frozen=True)
class EditOp:
    """A replayable description of one edit: ``name`` and JSON-safe ``params``.

    Build with the constructors (``EditOp.brush(...)``, ``EditOp.smooth(2.0)``, ...), apply with
    ``op.apply(mask)``, store with ``op.to_json()`` / ``EditOp.from_json(d)``. "reset" (back to the
    model's prediction) needs the target mask: ``op.apply(mask, reset_mask=prediction)``.
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    # constructors --------------------------------------------------------------------------
    @classmethod
    def brush(cls, points: ArrayLike, radius: float, erase: bool = False) -> EditOp:
        return cls("erase" if erase else "brush", {"points": rounded(points), "radius": float(radius)})

    @classmethod
    def polygon(cls, points: ArrayLike, mode: str = "add") -> EditOp:
        return cls("polygon", {"points": rounded(points), "mode": mode})

    @classmethod
    def fill_holes(cls, max_area: int | None = None) -> EditOp:
        return cls("fill_holes", {"max_area": None if max_area is None else int(max_area)})

    @classmethod
    def remove_islands(cls, min_area: int) -> EditOp:
        return cls("remove_islands", {"min_area": int(min_area)})

    @classmethod
    def keep_largest(cls) -> EditOp:
        return cls("keep_largest", {})

    @classmethod
    def smooth(cls, sigma: float) -> EditOp:
        return cls("smooth", {"sigma": float(sigma)})

    @classmethod
    def simplify(cls, tolerance: float) -> EditOp:
        return cls("simplify", {"tolerance": float(tolerance)})

    @classmethod
    def grow(cls, pixels: float) -> EditOp:
        return cls("grow", {"pixels": float(pixels)})

    @classmethod
    def set_geometry(cls, geom: BaseGeometry | None, region: BBox) -> EditOp:
        rings = [rounded(r, 4) for r in polygon_rings(geom, closed=True)]
        return cls("set_geometry", {"bbox": region.to_list(), "rings": rings})

    @classmethod
    def clear(cls) -> EditOp:
        return cls("clear", {})

    @classmethod
    def reset(cls, source: str = "prediction") -> EditOp:
        return cls("reset", {"source": source})

    # use ----------------------------------------------------------------------------------
    @property
    def label(self) -> str:
        """Short text for an "Undo <label>" menu entry."""
        known = OPS.get(self.name)
        return known.label if known is not None else self.name.replace("_", " ")

    def apply(self, mask: np.ndarray, reset_mask: np.ndarray | None = None) -> EditResult:
        mask = check_mask(mask)
        known = OPS.get(self.name)
        if known is None:
            raise ValueError(f"unknown edit operation {self.name!r}")
        res = known.replay(mask, self.params, reset_mask)
        return EditResult(res.mask, res.bbox, self)

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "params": self.params}

    @classmethod
    def from_json(cls, data: object) -> EditOp:
        if not isinstance(data, dict) or not isinstance(data.get("op"), str):
            raise ValueError(f"not an edit operation: {data!r:.80}")
        params = data.get("params", {})
        if not isinstance(params, dict):
            raise ValueError(f"edit operation {data['op']!r} has bad parameters")
        return cls(data["op"], params)


# -- the operations without a module of their own ---------------------------------------------
@register("set_geometry", "contour edit")
def _replay_set_geometry(mask: np.ndarray, p: Params, _reset: np.ndarray | None) -> EditResult:
    region = BBox.from_list(p["bbox"]).clip(mask.shape)
    out = mask.copy()
    if not region.empty:
        out[region.slices] = rasterize_rings(p["rings"], region, "evenodd")
    return result(mask, out, region, None)


@register("clear", "clear")
def _replay_clear(mask: np.ndarray, _p: Params, _reset: np.ndarray | None) -> EditResult:
    return EditResult(np.zeros_like(mask), BBox.of_mask(mask), None)


@register("reset", "reset to prediction")
def _replay_reset(mask: np.ndarray, _p: Params, reset_mask: np.ndarray | None) -> EditResult:
    if reset_mask is None:
        raise ValueError("a reset needs the mask to reset to (reset_mask=)")
    target = check_mask(reset_mask)
    if target.shape != mask.shape:
        raise ValueError(f"reset mask is {target.shape}, the mask is {mask.shape}")
    return EditResult(target.copy(), diff_bbox(mask, target), None)

"""What every edit operation shares: the pixel box (:class:`BBox`) and the mask checks (the
result, :class:`EditResult`, lives with :class:`EditOp` in ``ops``: each names the other).

Conventions (the whole of ``core.edit``): a mask is a bool ``np.ndarray`` HxW at the image's full
resolution; points are ``(x, y)`` in pixel-edge image coordinates (``core.geometry``: pixel
``(row r, col c)`` covers ``[c, c+1] x [r, r+1]``, its centre is ``(c + 0.5, r + 0.5)``).
Operations never mutate their inputs: they return an EditResult with a new mask and the box of
the pixels that may have changed (``None`` when nothing changed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Point = tuple[float, float]


@dataclass(frozen=True)
class BBox:
    """A pixel rectangle: columns ``x0 <= c < x1``, rows ``y0 <= r < y1`` (end exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return max(0, self.x1 - self.x0)

    @property
    def height(self) -> int:
        return max(0, self.y1 - self.y0)

    @property
    def empty(self) -> bool:
        return self.width == 0 or self.height == 0

    @property
    def slices(self) -> tuple[slice, slice]:
        """``mask[bbox.slices]`` is the region."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    def union(self, other: BBox | None) -> BBox:
        if other is None or other.empty:
            return self
        if self.empty:
            return other
        return BBox(min(self.x0, other.x0), min(self.y0, other.y0),
                    max(self.x1, other.x1), max(self.y1, other.y1))

    def clip(self, shape: tuple[int, ...]) -> BBox:
        h, w = shape[:2]
        return BBox(min(max(self.x0, 0), w), min(max(self.y0, 0), h),
                    min(max(self.x1, 0), w), min(max(self.y1, 0), h))

    def pad(self, n: int) -> BBox:
        return BBox(self.x0 - n, self.y0 - n, self.x1 + n, self.y1 + n)

    def to_list(self) -> list[int]:
        return [self.x0, self.y0, self.x1, self.y1]

    @classmethod
    def from_list(cls, values: Sequence[int]) -> BBox:
        x0, y0, x1, y1 = (int(v) for v in values)
        return cls(x0, y0, x1, y1)

    @classmethod
    def full(cls, shape: tuple[int, ...]) -> BBox:
        return cls(0, 0, int(shape[1]), int(shape[0]))

    @classmethod
    def of_mask(cls, mask: np.ndarray, offset: tuple[int, int] = (0, 0)) -> BBox | None:
        """The bounding box of the True pixels (None when there are none); ``offset`` = (x, y)."""
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size == 0:
            return None
        cols = np.flatnonzero(mask.any(axis=0))
        ox, oy = offset
        return cls(int(cols[0]) + ox, int(rows[0]) + oy, int(cols[-1]) + 1 + ox, int(rows[-1]) + 1 + oy)

    @classmethod
    def of_points(cls, points: np.ndarray, margin: float, shape: tuple[int, ...]) -> BBox:
        """Pixels whose centres can lie within ``margin`` of the points' hull, clipped to ``shape``."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        x0 = math.ceil(pts[:, 0].min() - margin - 0.5)
        x1 = math.floor(pts[:, 0].max() + margin - 0.5) + 1
        y0 = math.ceil(pts[:, 1].min() - margin - 0.5)
        y1 = math.floor(pts[:, 1].max() + margin - 0.5) + 1
        return cls(x0, y0, x1, y1).clip(shape)


def diff_bbox(before: np.ndarray, after: np.ndarray, region: BBox | None = None) -> BBox | None:
    """The bounding box of the pixels that differ (looked for inside ``region`` when given)."""
    if region is None:
        region = BBox.full(before.shape)
    if region.empty:
        return None
    sl = region.slices
    return BBox.of_mask(before[sl] != after[sl], offset=(region.x0, region.y0))


def check_mask(mask: np.ndarray) -> np.ndarray:
    """``mask`` as a 2-D bool array (ValueError for anything else)."""
    if not isinstance(mask, np.ndarray) or mask.ndim != 2:
        raise ValueError(f"a mask is a 2-D array, got {getattr(mask, 'shape', type(mask))}")
    return mask if mask.dtype == bool else mask.astype(bool)

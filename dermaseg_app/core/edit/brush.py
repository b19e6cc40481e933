"""Brush and eraser: every pixel whose centre lies within ``radius`` of the stroke.

Interactive strokes: :class:`BrushStroke` paints segment by segment into a working copy while
the mouse moves (each ``add_point`` touches only the segment's bounding box) and gives the
whole stroke back as one EditOp, which ``core.history.History.begin_stroke`` makes one undo step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from dermaseg_app.core.edit.base import BBox, Point, check_mask, diff_bbox
from dermaseg_app.core.edit.ops import EditOp, EditResult, Params, register, result


def _capsule(a: np.ndarray, b: np.ndarray, radius: float, region: BBox) -> np.ndarray:
    """bool array of ``region``: pixel centres within ``radius`` of the segment a-b (exact)."""
    xs = np.arange(region.x0, region.x1, dtype=np.float64) + 0.5
    ys = np.arange(region.y0, region.y1, dtype=np.float64) + 0.5
    d = b - a
    dd = float(d @ d)
    px = (xs - a[0])[None, :]
    py = (ys - a[1])[:, None]
    if dd == 0.0:
        dist2 = px * px + py * py
    else:
        t = np.clip((px * d[0] + py * d[1]) / dd, 0.0, 1.0)
        ex = px - t * d[0]
        ey = py - t * d[1]
        dist2 = ex * ex + ey * ey
    hit: np.ndarray = dist2 <= radius * radius
    return hit


def paint_segment_inplace(mask: np.ndarray, a: Sequence[float] | np.ndarray,
                          b: Sequence[float] | np.ndarray, radius: float,
                          value: bool = True) -> BBox | None:
    """Paint the capsule a-b of ``radius`` into ``mask`` IN PLACE, touching only its bounding box.

    The building block of strokes (the interactive BrushStroke and the replay ``paint_stroke``
    use it alike, so both give identical pixels). Returns the box that was written (None when
    the capsule misses the image).
    """
    pa = np.asarray(a, dtype=np.float64)
    pb = np.asarray(b, dtype=np.float64)
    region = BBox.of_points(np.stack([pa, pb]), radius, mask.shape)
    if region.empty:
        return None
    hit = _capsule(pa, pb, float(radius), region)
    if not hit.any():
        return None
    view = mask[region.slices]
    if value:
        view |= hit
    else:
        view &= ~hit
    return region


def stroke_points(points: Iterable[Sequence[float]]) -> np.ndarray:
    """The points of a stroke or lasso as an (N, 2) float array (ValueError: none, or not finite)."""
    pts = np.asarray(list(points), dtype=np.float64).reshape(-1, 2)
    if pts.shape[0] == 0:
        raise ValueError("a stroke needs at least one point")
    if not np.all(np.isfinite(pts)):
        raise ValueError("stroke points must be finite numbers")
    return pts


def paint_stroke(mask: np.ndarray, points: Iterable[Sequence[float]], radius: float,
                 erase: bool = False) -> EditResult:
    """Brush (``erase=False``) or eraser (``erase=True``) along a stroke of points.

    Every pixel whose centre lies within ``radius`` of the polyline through ``points`` is set
    (brush) or cleared (eraser). A single point paints a disc.
    """
    mask = check_mask(mask)
    if radius <= 0:
        raise ValueError(f"the brush radius must be positive, got {radius}")
    pts = stroke_points(points)
    out = mask.copy()
    region: BBox | None = None
    pairs = [(pts[0], pts[0])] if len(pts) == 1 else zip(pts[:-1], pts[1:], strict=True)
    for a, b in pairs:
        written = paint_segment_inplace(out, a, b, radius, not erase)
        if written is not None:
            region = written if region is None else region.union(written)
    op = EditOp.brush(pts, radius, erase)
    if region is None:
        return EditResult(out, None, op)
    return result(mask, out, region, op)


class BrushStroke:
    """One interactive brush/eraser stroke: paint as the mouse moves, get one EditOp at the end.

    ``working`` is a private copy of the mask that ``add_point`` changes in place (only the new
    segment's box); ``base`` is the untouched mask the stroke started from. ``finish()`` returns
    the EditResult of the whole stroke (new mask = ``working``, bbox = the union of everything
    painted, tightened to the pixels that changed; None when nothing changed).
    """

    def __init__(self, mask: np.ndarray, radius: float, erase: bool = False) -> None:
        if radius <= 0:
            raise ValueError(f"the brush radius must be positive, got {radius}")
        self.base = check_mask(mask)
        self.working = self.base.copy()
        self.radius = float(radius)
        self.erase = bool(erase)
        self.points: list[Point] = []
        self.region: BBox | None = None

    def add_point(self, x: float, y: float) -> BBox | None:
        """Extend the stroke to (x, y); returns the box to repaint (None when nothing was drawn)."""
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError("stroke points must be finite numbers")
        p = (float(x), float(y))
        a = self.points[-1] if self.points else p
        self.points.append(p)
        written = paint_segment_inplace(self.working, a, p, self.radius, not self.erase)
        if written is not None:
            self.region = written if self.region is None else self.region.union(written)
        return written

    @property
    def op(self) -> EditOp:
        return EditOp.brush(self.points, self.radius, self.erase)

    def finish(self) -> EditResult:
        if not self.points:
            return EditResult(self.base, None, None)
        bbox = diff_bbox(self.base, self.working, self.region) if self.region is not None else None
        return EditResult(self.working, bbox, self.op)


@register("brush", "brush stroke")
def _replay_brush(mask: np.ndarray, p: Params, _reset: np.ndarray | None) -> EditResult:
    return paint_stroke(mask, p["points"], p["radius"], erase=False)


@register("erase", "eraser stroke")
def _replay_erase(mask: np.ndarray, p: Params, _reset: np.ndarray | None) -> EditResult:
    return paint_stroke(mask, p["points"], p["radius"], erase=True)

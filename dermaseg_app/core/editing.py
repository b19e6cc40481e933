"""Contour correction operations on masks and polygons (issue 5). No Qt, no torch.

Conventions
-----------
* A mask is a bool ``np.ndarray`` HxW at the image's full resolution.
* Points are ``(x, y)`` in *pixel-edge* image coordinates, the convention of
  ``core.geometry.mask_to_polygons``: pixel ``(row r, col c)`` covers the square
  ``[c, c+1] x [r, r+1]``, its centre is ``(c + 0.5, r + 0.5)``. A pixel belongs to a shape when its
  centre does (brush: centre within ``radius`` of the stroke; polygon: centre inside).
* Operations never mutate their inputs: they return an :class:`EditResult` with a new mask and the
  :class:`BBox` of the pixels that may have changed (``None`` when nothing changed), so a view
  repaints only that region and the undo history stores only that patch.
* Several components and holes are handled everywhere (polygon rasterisation uses the even-odd
  rule over all rings, so a hole with an island inside it is drawn right).

Every operation also has a serialisable description, :class:`EditOp` (``name`` + JSON ``params``),
which the undo history (core.history) and the crash journal (core.store) record;
``EditOp.apply(mask)`` replays it bit-identically.

Interactive strokes: :class:`BrushStroke` paints segment by segment into a working copy while
the mouse moves (each ``add_point`` touches only the segment's bounding box) and gives the
whole stroke back as one EditOp, which ``core.history.History.begin_stroke`` makes one undo step.

Polygon (vertex) editing on a canvas::

    geom = core.geometry.mask_to_polygons(history.mask)      # exact outline, optionally
    geom = simplify_geometry(geom, 1.0)                       # simplified for fewer handles
    ref, dist = nearest_vertex(geom, (x, y))                  # hit test (insert: nearest_edge)
    edit = move_vertex(geom, ref, (x2, y2), history.shape)    # on mouse release
    history.commit(apply_geometry(history.mask, edit.geometry, edit.bbox))  # one undo step
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

import cv2
import numpy as np
import shapely
import shapely.affinity
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

Point = tuple[float, float]


# ---------------------------------------------------------------------------------------------
# bounding boxes and results
# ---------------------------------------------------------------------------------------------
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

    def union(self, other: "BBox | None") -> "BBox":
        if other is None or other.empty:
            return self
        if self.empty:
            return other
        return BBox(min(self.x0, other.x0), min(self.y0, other.y0),
                    max(self.x1, other.x1), max(self.y1, other.y1))

    def clip(self, shape: tuple[int, ...]) -> "BBox":
        h, w = shape[:2]
        return BBox(min(max(self.x0, 0), w), min(max(self.y0, 0), h),
                    min(max(self.x1, 0), w), min(max(self.y1, 0), h))

    def pad(self, n: int) -> "BBox":
        return BBox(self.x0 - n, self.y0 - n, self.x1 + n, self.y1 + n)

    def to_list(self) -> list[int]:
        return [self.x0, self.y0, self.x1, self.y1]

    @classmethod
    def from_list(cls, values: Sequence[int]) -> "BBox":
        x0, y0, x1, y1 = (int(v) for v in values)
        return cls(x0, y0, x1, y1)

    @classmethod
    def full(cls, shape: tuple[int, ...]) -> "BBox":
        return cls(0, 0, int(shape[1]), int(shape[0]))

    @classmethod
    def of_mask(cls, mask: np.ndarray, offset: tuple[int, int] = (0, 0)) -> "BBox | None":
        """The bounding box of the True pixels (None when there are none); ``offset`` = (x, y)."""
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size == 0:
            return None
        cols = np.flatnonzero(mask.any(axis=0))
        ox, oy = offset
        return cls(int(cols[0]) + ox, int(rows[0]) + oy, int(cols[-1]) + 1 + ox, int(rows[-1]) + 1 + oy)

    @classmethod
    def of_points(cls, points: np.ndarray, margin: float, shape: tuple[int, ...]) -> "BBox":
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


@dataclass(frozen=True)
class EditResult:
    """A new mask and the box of pixels that may differ from the input (None: unchanged)."""

    mask: np.ndarray
    bbox: BBox | None
    op: "EditOp | None" = None

    @property
    def changed(self) -> bool:
        return self.bbox is not None


def _check_mask(mask: np.ndarray) -> np.ndarray:
    if not isinstance(mask, np.ndarray) or mask.ndim != 2:
        raise ValueError(f"a mask is a 2-D array, got {getattr(mask, 'shape', type(mask))}")
    return mask if mask.dtype == bool else mask.astype(bool)


def _result(old: np.ndarray, new: np.ndarray, region: BBox | None, op: "EditOp | None") -> EditResult:
    return EditResult(new, diff_bbox(old, new, region), op)


# ---------------------------------------------------------------------------------------------
# brush and eraser
# ---------------------------------------------------------------------------------------------
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
    return dist2 <= radius * radius


def paint_segment_inplace(mask: np.ndarray, a: Point, b: Point, radius: float,
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


def _stroke_points(points: Iterable[Sequence[float]]) -> np.ndarray:
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
    mask = _check_mask(mask)
    if radius <= 0:
        raise ValueError(f"the brush radius must be positive, got {radius}")
    pts = _stroke_points(points)
    out = mask.copy()
    region: BBox | None = None
    pairs = [(pts[0], pts[0])] if len(pts) == 1 else zip(pts[:-1], pts[1:])
    for a, b in pairs:
        written = paint_segment_inplace(out, a, b, radius, not erase)
        if written is not None:
            region = written if region is None else region.union(written)
    op = EditOp.brush(pts, radius, erase)
    if region is None:
        return EditResult(out, None, op)
    return _result(mask, out, region, op)


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
        self.base = _check_mask(mask)
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
    def op(self) -> "EditOp":
        return EditOp.brush(self.points, self.radius, self.erase)

    def finish(self) -> EditResult:
        if not self.points:
            return EditResult(self.base, None, None)
        bbox = diff_bbox(self.base, self.working, self.region) if self.region is not None else None
        return EditResult(self.working, bbox, self.op)


# ---------------------------------------------------------------------------------------------
# polygon rasterisation (exact, pixel centres, bounding box only)
# ---------------------------------------------------------------------------------------------
def _ring_array(ring: Any) -> np.ndarray:
    pts = np.asarray(ring, dtype=np.float64).reshape(-1, 2)
    if len(pts) > 1 and np.array_equal(pts[0], pts[-1]):
        pts = pts[:-1]
    return pts


def rasterize_rings(rings: Sequence[Any], region: BBox, rule: str = "evenodd") -> np.ndarray:
    """bool array of ``region``: pixels whose centre is inside the rings.

    ``rule`` is "evenodd" (a point is inside when a ray crosses an odd number of ring edges --
    exact for valid polygons with holes and islands in holes) or "nonzero" (winding number,
    what a hand-drawn, self-crossing lasso expects). Scanline crossing with the half-open rule, so
    pixel-edge polygons (integer vertices) rasterise back to exactly their pixels.
    """
    if rule not in ("evenodd", "nonzero"):
        raise ValueError(f"rule is 'evenodd' or 'nonzero', got {rule!r}")
    h, w = region.height, region.width
    acc = np.zeros((h, w + 1), dtype=np.int32)
    if h == 0 or w == 0:
        return np.zeros((h, w), dtype=bool)
    for ring in rings:
        p = _ring_array(ring)
        if len(p) < 3:
            continue
        q = np.roll(p, -1, axis=0)
        ya, yb = p[:, 1], q[:, 1]
        lo, hi = np.minimum(ya, yb), np.maximum(ya, yb)
        # rows r whose centre y = r + 0.5 satisfies lo <= y < hi
        r0 = np.clip(np.ceil(lo - 0.5).astype(np.int64), region.y0, region.y1)
        r1 = np.clip(np.ceil(hi - 0.5).astype(np.int64), region.y0, region.y1)
        n = np.maximum(r1 - r0, 0)
        total = int(n.sum())
        if total == 0:
            continue
        idx = np.repeat(np.arange(len(p)), n)
        starts = np.repeat(np.cumsum(n) - n, n)
        rows = r0[idx] + (np.arange(total) - starts)
        yc = rows + 0.5
        xa, xb = p[idx, 0], q[idx, 0]
        ya_i, yb_i = ya[idx], yb[idx]
        x = xa + (yc - ya_i) * (xb - xa) / (yb_i - ya_i)
        # first pixel whose centre is right of the crossing: c + 0.5 > x
        col = np.floor(x - 0.5).astype(np.int64) + 1 - region.x0
        col = np.clip(col, 0, w)
        if rule == "evenodd":
            np.add.at(acc, (rows - region.y0, col), 1)
        else:
            np.add.at(acc, (rows - region.y0, col), np.where(yb_i > ya_i, 1, -1).astype(np.int32))
    run = np.cumsum(acc[:, :w], axis=1)
    if rule == "evenodd":
        return (run & 1).astype(bool)
    return run != 0


def geometry_rings(geom: BaseGeometry | None) -> list[np.ndarray]:
    """All rings (exteriors and holes) of the polygons in ``geom``, as (N, 2) arrays."""
    rings: list[np.ndarray] = []
    for poly in polygons_of(geom):
        rings.append(np.asarray(poly.exterior.coords))
        rings.extend(np.asarray(r.coords) for r in poly.interiors)
    return rings


def polygons_of(geom: BaseGeometry | None) -> list[Polygon]:
    """The non-empty polygons in any geometry (Polygon, MultiPolygon, GeometryCollection)."""
    if geom is None or geom.is_empty:
        return []
    if isinstance(geom, Polygon):
        return [geom]
    if hasattr(geom, "geoms"):
        out: list[Polygon] = []
        for g in geom.geoms:
            out.extend(polygons_of(g))
        return out
    return []


def as_multipolygon(geom: BaseGeometry | None) -> MultiPolygon:
    """``geom`` made valid, as a MultiPolygon of its polygonal parts (empty when none)."""
    if geom is None or geom.is_empty:
        return MultiPolygon()
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    return MultiPolygon(polygons_of(geom))


def rasterize_geometry(geom: BaseGeometry | None, shape: tuple[int, ...],
                       region: BBox | None = None) -> np.ndarray:
    """Rasterise ``geom`` (pixel-edge coordinates) into a bool array of ``region`` (default: all)."""
    region = (region or BBox.full(shape)).clip(shape)
    return rasterize_rings(geometry_rings(geom), region, "evenodd")


def fill_polygon(mask: np.ndarray, points: Iterable[Sequence[float]], mode: str = "add") -> EditResult:
    """Lasso/polygon edit: ``mode`` "add" (union), "subtract" (difference) or "replace" (draw a
    new contour from scratch: the mask becomes the polygon alone). Self-crossing lassos use the
    non-zero winding rule."""
    mask = _check_mask(mask)
    if mode not in ("add", "subtract", "replace"):
        raise ValueError(f"polygon mode is 'add', 'subtract' or 'replace', got {mode!r}")
    pts = _stroke_points(points)
    op = EditOp.polygon(pts, mode)
    if len(pts) < 3:
        if mode == "replace":
            raise ValueError("a new contour needs at least 3 points")
        return EditResult(mask.copy(), None, op)
    region = BBox.of_points(pts, 0.0, mask.shape)
    inside = rasterize_rings([pts], region, "nonzero") if not region.empty else None
    if mode == "replace":
        out = np.zeros_like(mask)
        if inside is not None:
            out[region.slices] = inside
        return _result(mask, out, None, op)
    out = mask.copy()
    if inside is None:
        return EditResult(out, None, op)
    view = out[region.slices]
    if mode == "add":
        view |= inside
    else:
        view &= ~inside
    return _result(mask, out, region, op)


def apply_geometry(mask: np.ndarray, geom: BaseGeometry | None, region: BBox | None = None) -> EditResult:
    """Make the mask equal to ``geom`` rasterised, inside ``region`` (default: the whole mask).

    The commit step of polygon/vertex editing: edit the geometry (``move_vertex`` ...), then
    ``apply_geometry(mask, new_geom, changed_box)`` changes only that box.
    """
    mask = _check_mask(mask)
    region = (region or BBox.full(mask.shape)).clip(mask.shape)
    clipped = _clip_geometry(geom, region)
    out = mask.copy()
    if not region.empty:
        out[region.slices] = rasterize_rings(geometry_rings(clipped), region, "evenodd")
    return _result(mask, out, region, EditOp.set_geometry(clipped, region))


def _clip_geometry(geom: BaseGeometry | None, region: BBox) -> MultiPolygon:
    mp = as_multipolygon(geom)
    if mp.is_empty or region.empty:
        return MultiPolygon()
    x0, y0, x1, y1 = mp.bounds
    if region.x0 <= x0 and region.y0 <= y0 and x1 <= region.x1 and y1 <= region.y1:
        return mp
    # clip_by_rect is fast and keeps what lies inside the box; the even-odd rasteriser does not
    # need the result to be valid, only to give the same pixels inside the box
    return MultiPolygon(polygons_of(shapely.clip_by_rect(mp, region.x0, region.y0, region.x1, region.y1)))


# ---------------------------------------------------------------------------------------------
# whole-mask clean-up operations
# ---------------------------------------------------------------------------------------------
def fill_holes(mask: np.ndarray, max_area: int | None = None) -> EditResult:
    """Fill the holes (background not connected to the image border; 4-connected) of every
    component; only holes of at most ``max_area`` pixels when given."""
    mask = _check_mask(mask)
    op = EditOp.fill_holes(max_area)
    region = BBox.of_mask(mask)
    if region is None:
        return EditResult(mask.copy(), None, op)
    crop = mask[region.slices]
    bg = np.pad(~crop, 1, constant_values=True).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(bg, connectivity=4)
    outside = labels[0, 0]
    fill = np.zeros(n, dtype=bool)
    fill[1:] = True
    fill[outside] = False
    if max_area is not None:
        fill &= stats[:, cv2.CC_STAT_AREA] <= max_area
    out = mask.copy()
    out[region.slices] |= fill[labels[1:-1, 1:-1]]
    return _result(mask, out, region, op)


def remove_islands(mask: np.ndarray, min_area: int) -> EditResult:
    """Remove the components (8-connected) smaller than ``min_area`` pixels."""
    mask = _check_mask(mask)
    op = EditOp.remove_islands(min_area)
    region = BBox.of_mask(mask)
    if region is None:
        return EditResult(mask.copy(), None, op)
    crop = mask[region.slices].astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(crop, connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    keep[0] = False
    out = mask.copy()
    out[region.slices] = keep[labels]
    return _result(mask, out, region, op)


def keep_largest(mask: np.ndarray) -> EditResult:
    """Keep only the largest component (8-connected)."""
    mask = _check_mask(mask)
    region = BBox.of_mask(mask)
    op = EditOp("keep_largest", {})
    if region is None:
        return EditResult(mask.copy(), None, op)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask[region.slices].astype(np.uint8),
                                                           connectivity=8)
    keep = np.zeros(n, dtype=bool)
    if n > 1:
        keep[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))] = True
    out = mask.copy()
    out[region.slices] = keep[labels]
    return _result(mask, out, region, op)


def _kth_largest(values: np.ndarray, k: int) -> float:
    """The k-th largest value (k >= 1). Only the blurred border band (values strictly between
    nearly-0 and nearly-1) is partitioned when the answer lies there: much faster than all."""
    eps = 1e-4
    high = int(np.count_nonzero(values >= 1.0 - eps))
    if high < k:
        band = values[(values > eps) & (values < 1.0 - eps)]
        j = k - high  # the j-th largest inside the band
        if 0 < j <= band.size:
            return float(np.partition(band, band.size - j)[band.size - j])
    idx = values.size - k
    return float(np.partition(values, idx)[idx])


def smooth(mask: np.ndarray, sigma: float) -> EditResult:
    """Smooth the contour keeping the area: Gaussian blur (``sigma`` px), then the threshold that
    keeps exactly as many pixels as before (ties aside). Works on every component and hole."""
    mask = _check_mask(mask)
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    op = EditOp.smooth(sigma)
    area = int(mask.sum())
    if area == 0 or area == mask.size:
        return EditResult(mask.copy(), None, op)
    pad = int(math.ceil(3 * sigma)) + 1
    region = BBox.of_mask(mask).pad(pad).clip(mask.shape)
    crop = mask[region.slices].astype(np.float32)
    blurred = cv2.GaussianBlur(crop, (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REPLICATE)
    flat = blurred.ravel()
    thresh = _kth_largest(flat, area)
    new_crop = blurred >= thresh
    excess = int(new_crop.sum()) - area
    if excess > 0:  # ties at the threshold: drop the excess among the tied pixels
        tied = np.flatnonzero((blurred == thresh).ravel())
        new_crop.ravel()[tied[:excess]] = False
    out = mask.copy()
    out[region.slices] = new_crop
    return _result(mask, out, region, op)


def grow(mask: np.ndarray, pixels: float) -> EditResult:
    """Grow (``pixels`` > 0) or shrink (< 0) every component by a Euclidean distance in pixels
    (morphological dilation/erosion with a disc, via an exact distance transform). The image
    border is not treated as background when shrinking (a lesion cut by the frame stays cut)."""
    mask = _check_mask(mask)
    op = EditOp.grow(pixels)
    if pixels == 0:
        return EditResult(mask.copy(), None, op)
    bb = BBox.of_mask(mask)
    if bb is None:
        return EditResult(mask.copy(), None, op)
    pad = int(math.ceil(abs(pixels))) + 2
    region = bb.pad(pad).clip(mask.shape)
    crop = mask[region.slices]
    out = mask.copy()
    if pixels > 0:
        # distance from each pixel to the nearest mask pixel
        dist = cv2.distanceTransform((~crop).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        out[region.slices] = crop | (dist <= pixels)
    else:
        # distance from each mask pixel to the nearest background pixel (outside the crop counts
        # as background only where the crop is not at the image border)
        top, left = region.y0 > 0, region.x0 > 0
        bottom, right = region.y1 < mask.shape[0], region.x1 < mask.shape[1]
        padded = np.pad(crop, 1, mode="edge")
        # frame pixels inside the image are background (the crop already has a margin of bg)
        if top:
            padded[0, :] = False
        if bottom:
            padded[-1, :] = False
        if left:
            padded[:, 0] = False
        if right:
            padded[:, -1] = False
        dist = cv2.distanceTransform(padded.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        out[region.slices] = crop & (dist[1:-1, 1:-1] > -pixels)
    return _result(mask, out, region, op)


def simplify(mask: np.ndarray, tolerance: float) -> EditResult:
    """Douglas-Peucker simplification of the contour (``tolerance`` px, topology preserved)."""
    from dermaseg_app.core.geometry import mask_to_polygons

    mask = _check_mask(mask)
    if tolerance < 0:
        raise ValueError(f"tolerance must not be negative, got {tolerance}")
    op = EditOp.simplify(tolerance)
    bb = BBox.of_mask(mask)
    if bb is None:
        return EditResult(mask.copy(), None, op)
    geom = simplify_geometry(mask_to_polygons(mask), tolerance)
    region = bb.pad(int(math.ceil(tolerance)) + 1).clip(mask.shape)
    out = mask.copy()
    out[region.slices] = rasterize_geometry(geom, mask.shape, region)
    return _result(mask, out, region, op)


# ---------------------------------------------------------------------------------------------
# geometry (shapely) operations
# ---------------------------------------------------------------------------------------------
def simplify_geometry(geom: BaseGeometry | None, tolerance: float) -> MultiPolygon:
    """Douglas-Peucker (shapely, topology preserved) of every ring."""
    mp = as_multipolygon(geom)
    if mp.is_empty or tolerance <= 0:
        return mp
    return as_multipolygon(mp.simplify(tolerance, preserve_topology=True))


def buffer_geometry(geom: BaseGeometry | None, distance: float) -> MultiPolygon:
    """Grow (> 0) or shrink (< 0) the outline by ``distance`` pixels (round joins)."""
    mp = as_multipolygon(geom)
    if mp.is_empty or distance == 0:
        return mp
    return as_multipolygon(mp.buffer(distance, quad_segs=8))


def _smooth_ring(coords: np.ndarray, sigma: float) -> np.ndarray:
    pts = _ring_array(coords)
    n = len(pts)
    if n < 4:
        return pts
    # resample densely enough that the Gaussian acts on arc length, not on the vertex count
    seg = np.linalg.norm(np.diff(np.vstack([pts, pts[:1]]), axis=0), axis=1)
    perimeter = float(seg.sum())
    if perimeter == 0:
        return pts
    m = int(min(max(n, math.ceil(perimeter)), 20000))
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    s = np.linspace(0.0, perimeter, m, endpoint=False)
    closed = np.vstack([pts, pts[:1]])
    x = np.interp(s, cum, closed[:, 0])
    y = np.interp(s, cum, closed[:, 1])
    step = perimeter / m
    sig = sigma / step
    half = int(math.ceil(3 * sig))
    if half < 1:
        return np.stack([x, y], axis=1)
    half = min(half, m // 2)
    k = np.exp(-0.5 * (np.arange(-half, half + 1) / sig) ** 2)
    k /= k.sum()

    def circ(v: np.ndarray) -> np.ndarray:
        ext = np.concatenate([v[-half:], v, v[:half]])
        return np.convolve(ext, k, mode="valid")

    return np.stack([circ(x), circ(y)], axis=1)


def smooth_geometry(geom: BaseGeometry | None, sigma: float) -> MultiPolygon:
    """Gaussian-smooth every ring's coordinates along its arc length (``sigma`` px), then scale
    each polygon about its centroid so it keeps its area."""
    out = []
    for poly in polygons_of(as_multipolygon(geom)):
        ext = _smooth_ring(np.asarray(poly.exterior.coords), sigma)
        holes = [_smooth_ring(np.asarray(r.coords), sigma) for r in poly.interiors]
        new = Polygon(ext, [h for h in holes if len(h) >= 3])
        if not new.is_valid:
            new = shapely.make_valid(new)
        parts = polygons_of(new)
        if not parts:
            continue
        new_mp = MultiPolygon(parts)
        if new_mp.area > 0:
            f = math.sqrt(poly.area / new_mp.area)
            c = poly.centroid
            new_mp = shapely.affinity.scale(new_mp, f, f, origin=(c.x, c.y))
        out.extend(polygons_of(new_mp))
    return as_multipolygon(MultiPolygon(out)) if out else MultiPolygon()


# -- vertex operations (the canvas's polygon editing) -----------------------------------------
@dataclass(frozen=True)
class VertexRef:
    """A vertex of a MultiPolygon: polygon index, ring (0 = exterior, k = k-th hole), vertex index
    (in the ring without its closing repeat). For an edge, ``index`` is the edge's first vertex."""

    polygon: int
    ring: int
    index: int


def _rings_of(mp: MultiPolygon) -> list[list[np.ndarray]]:
    return [[_ring_array(p.exterior.coords)] + [_ring_array(r.coords) for r in p.interiors]
            for p in mp.geoms]


def _build(rings: list[list[np.ndarray]]) -> MultiPolygon:
    polys = []
    for poly_rings in rings:
        if not poly_rings or len(poly_rings[0]) < 3:
            continue
        holes = [r for r in poly_rings[1:] if len(r) >= 3]
        polys.append(Polygon(poly_rings[0], holes))
    return as_multipolygon(MultiPolygon(polys)) if polys else MultiPolygon()


def _get_ring(rings: list[list[np.ndarray]], ref: VertexRef) -> np.ndarray:
    try:
        ring = rings[ref.polygon][ref.ring]
    except IndexError:
        raise IndexError(f"no ring {ref.ring} in polygon {ref.polygon}") from None
    if not 0 <= ref.index < len(ring):
        raise IndexError(f"no vertex {ref.index} in ring {ref.ring} of polygon {ref.polygon}")
    return ring


def _bbox_of_points(points: Sequence[np.ndarray], shape: tuple[int, ...] | None) -> BBox:
    pts = np.vstack([np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in points])
    bb = BBox(math.floor(pts[:, 0].min()) - 1, math.floor(pts[:, 1].min()) - 1,
              math.ceil(pts[:, 0].max()) + 1, math.ceil(pts[:, 1].max()) + 1)
    return bb.clip(shape) if shape is not None else bb


def vertices(geom: BaseGeometry | None) -> list[tuple[VertexRef, Point]]:
    """Every vertex with its reference, for drawing handles."""
    out = []
    for pi, poly_rings in enumerate(_rings_of(as_multipolygon(geom))):
        for ri, ring in enumerate(poly_rings):
            out.extend((VertexRef(pi, ri, i), (x, y)) for i, (x, y) in enumerate(ring.tolist()))
    return out


def nearest_vertex(geom: BaseGeometry | None, point: Point) -> tuple[VertexRef, float] | None:
    """The vertex nearest to ``point`` and its distance (None for an empty geometry)."""
    best: tuple[VertexRef, float] | None = None
    p = np.asarray(point, dtype=np.float64)
    for pi, poly_rings in enumerate(_rings_of(as_multipolygon(geom))):
        for ri, ring in enumerate(poly_rings):
            d = np.hypot(ring[:, 0] - p[0], ring[:, 1] - p[1])
            i = int(np.argmin(d))
            if best is None or d[i] < best[1]:
                best = (VertexRef(pi, ri, i), float(d[i]))
    return best


def nearest_edge(geom: BaseGeometry | None, point: Point) -> tuple[VertexRef, float, Point] | None:
    """The edge nearest to ``point``: (ref of its first vertex, distance, nearest point on it)."""
    best: tuple[VertexRef, float, Point] | None = None
    p = np.asarray(point, dtype=np.float64)
    for pi, poly_rings in enumerate(_rings_of(as_multipolygon(geom))):
        for ri, ring in enumerate(poly_rings):
            a = ring
            b = np.roll(ring, -1, axis=0)
            d = b - a
            dd = (d * d).sum(axis=1)
            t = np.where(dd > 0, ((p - a) * d).sum(axis=1) / np.where(dd > 0, dd, 1), 0.0)
            t = np.clip(t, 0, 1)
            proj = a + t[:, None] * d
            dist = np.hypot(proj[:, 0] - p[0], proj[:, 1] - p[1])
            i = int(np.argmin(dist))
            if best is None or dist[i] < best[1]:
                best = (VertexRef(pi, ri, i), float(dist[i]), (float(proj[i, 0]), float(proj[i, 1])))
    return best


@dataclass(frozen=True)
class GeometryEdit:
    """A new geometry and the pixel box its change can affect (to pass to ``apply_geometry``)."""

    geometry: MultiPolygon
    bbox: BBox


def move_vertex(geom: BaseGeometry | None, ref: VertexRef, to: Point,
                shape: tuple[int, ...] | None = None) -> GeometryEdit:
    """Move one vertex to ``to``. The result is made valid (a self-crossing ring is split)."""
    rings = _rings_of(as_multipolygon(geom))
    ring = _get_ring(rings, ref).copy()
    n = len(ring)
    old = ring[[(ref.index - 1) % n, ref.index, (ref.index + 1) % n]]
    ring[ref.index] = to
    rings[ref.polygon][ref.ring] = ring
    return GeometryEdit(_build(rings), _bbox_of_points([old, np.asarray(to)], shape))


def insert_vertex(geom: BaseGeometry | None, edge: VertexRef, at: Point,
                  shape: tuple[int, ...] | None = None) -> GeometryEdit:
    """Insert a vertex at ``at`` on the edge starting at ``edge`` (between edge.index and the next)."""
    rings = _rings_of(as_multipolygon(geom))
    ring = _get_ring(rings, edge)
    n = len(ring)
    a, b = ring[edge.index], ring[(edge.index + 1) % n]
    rings[edge.polygon][edge.ring] = np.insert(ring, edge.index + 1, np.asarray(at, float), axis=0)
    return GeometryEdit(_build(rings), _bbox_of_points([a, b, np.asarray(at)], shape))


def delete_vertex(geom: BaseGeometry | None, ref: VertexRef,
                  shape: tuple[int, ...] | None = None) -> GeometryEdit:
    """Delete a vertex. A ring left with fewer than 3 vertices disappears (a hole is filled; an
    exterior removes its polygon)."""
    rings = _rings_of(as_multipolygon(geom))
    ring = _get_ring(rings, ref)
    n = len(ring)
    nbrs = ring[[(ref.index - 1) % n, ref.index, (ref.index + 1) % n]]
    new_ring = np.delete(ring, ref.index, axis=0)
    if len(new_ring) < 3:
        bb = _bbox_of_points([ring], shape)
        if ref.ring == 0:
            rings[ref.polygon] = []
        else:
            rings[ref.polygon][ref.ring] = new_ring  # dropped by _build
    else:
        bb = _bbox_of_points([nbrs], shape)
        rings[ref.polygon][ref.ring] = new_ring
    return GeometryEdit(_build(rings), bb)


# ---------------------------------------------------------------------------------------------
# serialisable operations
# ---------------------------------------------------------------------------------------------
def _r(values: np.ndarray | Sequence[Sequence[float]], nd: int = 3) -> list[list[float]]:
    return [[round(float(x), nd), round(float(y), nd)] for x, y in np.asarray(values, float).reshape(-1, 2)]


@dataclass(frozen=True)
class EditOp:
    """A replayable description of one edit: ``name`` and JSON-safe ``params``.

    Build with the constructors (``EditOp.brush(...)``, ``EditOp.smooth(2.0)``, ...), apply with
    ``op.apply(mask)``, store with ``op.to_json()`` / ``EditOp.from_json(d)``. "reset" (back to the
    model's prediction) needs the target mask: ``op.apply(mask, reset_mask=prediction)``.
    """

    name: str
    params: dict = field(default_factory=dict)

    # constructors --------------------------------------------------------------------------
    @classmethod
    def brush(cls, points: Any, radius: float, erase: bool = False) -> "EditOp":
        return cls("erase" if erase else "brush", {"points": _r(points), "radius": float(radius)})

    @classmethod
    def polygon(cls, points: Any, mode: str = "add") -> "EditOp":
        return cls("polygon", {"points": _r(points), "mode": mode})

    @classmethod
    def fill_holes(cls, max_area: int | None = None) -> "EditOp":
        return cls("fill_holes", {"max_area": None if max_area is None else int(max_area)})

    @classmethod
    def remove_islands(cls, min_area: int) -> "EditOp":
        return cls("remove_islands", {"min_area": int(min_area)})

    @classmethod
    def smooth(cls, sigma: float) -> "EditOp":
        return cls("smooth", {"sigma": float(sigma)})

    @classmethod
    def simplify(cls, tolerance: float) -> "EditOp":
        return cls("simplify", {"tolerance": float(tolerance)})

    @classmethod
    def grow(cls, pixels: float) -> "EditOp":
        return cls("grow", {"pixels": float(pixels)})

    @classmethod
    def set_geometry(cls, geom: BaseGeometry | None, region: BBox) -> "EditOp":
        rings = [_r(r, 4) for r in geometry_rings(geom)]
        return cls("set_geometry", {"bbox": region.to_list(), "rings": rings})

    @classmethod
    def clear(cls) -> "EditOp":
        return cls("clear", {})

    @classmethod
    def reset(cls, source: str = "prediction") -> "EditOp":
        return cls("reset", {"source": source})

    # use ----------------------------------------------------------------------------------
    @property
    def label(self) -> str:
        """Short text for an "Undo <label>" menu entry."""
        return _LABELS.get(self.name, self.name.replace("_", " "))

    def apply(self, mask: np.ndarray, reset_mask: np.ndarray | None = None) -> EditResult:
        mask = _check_mask(mask)
        p = self.params
        if self.name == "reset":
            if reset_mask is None:
                raise ValueError("a reset needs the mask to reset to (reset_mask=)")
            target = _check_mask(reset_mask)
            if target.shape != mask.shape:
                raise ValueError(f"reset mask is {target.shape}, the mask is {mask.shape}")
            return EditResult(target.copy(), diff_bbox(mask, target), self)
        if self.name == "set_geometry":
            region = BBox.from_list(p["bbox"]).clip(mask.shape)
            out = mask.copy()
            if not region.empty:
                out[region.slices] = rasterize_rings(p["rings"], region, "evenodd")
            return _result(mask, out, region, self)
        if self.name == "clear":
            return EditResult(np.zeros_like(mask), BBox.of_mask(mask), self)
        fn = _APPLY.get(self.name)
        if fn is None:
            raise ValueError(f"unknown edit operation {self.name!r}")
        res = fn(mask, p)
        return EditResult(res.mask, res.bbox, self)

    def to_json(self) -> dict:
        return {"op": self.name, "params": self.params}

    @classmethod
    def from_json(cls, data: dict) -> "EditOp":
        if not isinstance(data, dict) or not isinstance(data.get("op"), str):
            raise ValueError(f"not an edit operation: {data!r:.80}")
        params = data.get("params", {})
        if not isinstance(params, dict):
            raise ValueError(f"edit operation {data['op']!r} has bad parameters")
        return cls(data["op"], params)


_LABELS = {"brush": "brush stroke", "erase": "eraser stroke", "polygon": "polygon",
           "fill_holes": "fill holes", "remove_islands": "remove islands", "smooth": "smooth",
           "simplify": "simplify", "grow": "grow/shrink", "set_geometry": "contour edit",
           "clear": "clear", "reset": "reset to prediction", "keep_largest": "keep largest"}

_APPLY: dict[str, Callable[[np.ndarray, dict], EditResult]] = {
    "brush": lambda m, p: paint_stroke(m, p["points"], p["radius"], erase=False),
    "erase": lambda m, p: paint_stroke(m, p["points"], p["radius"], erase=True),
    "polygon": lambda m, p: fill_polygon(m, p["points"], p.get("mode", "add")),
    "fill_holes": lambda m, p: fill_holes(m, p.get("max_area")),
    "remove_islands": lambda m, p: remove_islands(m, p["min_area"]),
    "smooth": lambda m, p: smooth(m, p["sigma"]),
    "simplify": lambda m, p: simplify(m, p["tolerance"]),
    "grow": lambda m, p: grow(m, p["pixels"]),
    "keep_largest": lambda m, p: keep_largest(m),
}

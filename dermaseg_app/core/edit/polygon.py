"""Polygons onto masks: the lasso (add, subtract, replace) and the commit step of vertex editing.

Rasterisation is ``core.geometry.rasterize_rings`` (a pixel belongs to a polygon when its centre
does), on the polygon's bounding box only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import shapely
from shapely.geometry import MultiPolygon
from shapely.geometry.base import BaseGeometry

from dermaseg_app.core.edit.base import BBox, check_mask
from dermaseg_app.core.edit.brush import stroke_points
from dermaseg_app.core.edit.ops import EditOp, EditResult, Params, register, result
from dermaseg_app.core.geometry import as_multipolygon, polygon_rings, polygons_of, rasterize_rings

POLYGON_MODES = ("add", "subtract", "replace")


def rasterize_geometry(geom: BaseGeometry | None, shape: tuple[int, ...],
                       region: BBox | None = None) -> np.ndarray:
    """Rasterise ``geom`` (pixel-edge coordinates) into a bool array of ``region`` (default: all)."""
    region = (region or BBox.full(shape)).clip(shape)
    return rasterize_rings(polygon_rings(geom), region, "evenodd")


def fill_polygon(mask: np.ndarray, points: Iterable[Sequence[float]], mode: str = "add") -> EditResult:
    """Lasso/polygon edit: ``mode`` "add" (union), "subtract" (difference) or "replace" (draw a
    new contour from scratch: the mask becomes the polygon alone). Self-crossing lassos use the
    non-zero winding rule."""
    mask = check_mask(mask)
    if mode not in POLYGON_MODES:
        raise ValueError(f"polygon mode is 'add', 'subtract' or 'replace', got {mode!r}")
    pts = stroke_points(points)
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
        return result(mask, out, None, op)
    out = mask.copy()
    if inside is None:
        return EditResult(out, None, op)
    view = out[region.slices]
    if mode == "add":
        view |= inside
    else:
        view &= ~inside
    return result(mask, out, region, op)


def apply_geometry(mask: np.ndarray, geom: BaseGeometry | None, region: BBox | None = None) -> EditResult:
    """Make the mask equal to ``geom`` rasterised, inside ``region`` (default: the whole mask).

    The commit step of polygon/vertex editing: edit the geometry (``move_vertex`` ...), then
    ``apply_geometry(mask, new_geom, changed_box)`` changes only that box.
    """
    mask = check_mask(mask)
    region = (region or BBox.full(mask.shape)).clip(mask.shape)
    clipped = _clip_geometry(geom, region)
    out = mask.copy()
    if not region.empty:
        out[region.slices] = rasterize_rings(polygon_rings(clipped), region, "evenodd")
    return result(mask, out, region, EditOp.set_geometry(clipped, region))


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


@register("polygon", "polygon")
def _replay_polygon(mask: np.ndarray, p: Params, _reset: np.ndarray | None) -> EditResult:
    return fill_polygon(mask, p["points"], p.get("mode", "add"))

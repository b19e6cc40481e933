"""Operations on outlines (shapely geometry in pixel-edge coordinates): simplify, grow/shrink,
smooth. The mask operations of the same names (``core.edit.morphology``) and the canvas's polygon
editing use them."""

from __future__ import annotations

import math

import numpy as np
import shapely
import shapely.affinity
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from dermaseg_app.core.geometry import as_multipolygon, polygons_of, ring_coords


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
    pts = ring_coords(coords)
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
    out: list[Polygon] = []
    for poly in polygons_of(as_multipolygon(geom)):
        ext = _smooth_ring(np.asarray(poly.exterior.coords), sigma)
        holes = [_smooth_ring(np.asarray(r.coords), sigma) for r in poly.interiors]
        new: BaseGeometry = Polygon(ext, [h for h in holes if len(h) >= 3])
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

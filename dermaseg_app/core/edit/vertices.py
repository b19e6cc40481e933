"""Vertex editing of outlines (the canvas's polygon tool): hit tests, move, insert, delete.

On a canvas::

    geom = core.geometry.mask_to_polygons(history.mask)      # exact outline, optionally
    geom = simplify_geometry(geom, 1.0)                       # simplified for fewer handles
    ref, dist = nearest_vertex(geom, (x, y))                  # hit test (insert: nearest_edge)
    edit = move_vertex(geom, ref, (x2, y2), history.shape)    # on mouse release
    history.commit(apply_geometry(history.mask, edit.geometry, edit.bbox))  # one undo step
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from dermaseg_app.core.edit.base import BBox, Point
from dermaseg_app.core.geometry import as_multipolygon, ring_coords


@dataclass(frozen=True)
class VertexRef:
    """A vertex of a MultiPolygon: polygon index, ring (0 = exterior, k = k-th hole), vertex index
    (in the ring without its closing repeat). For an edge, ``index`` is the edge's first vertex."""

    polygon: int
    ring: int
    index: int


def _rings_of(mp: MultiPolygon) -> list[list[np.ndarray]]:
    return [[ring_coords(p.exterior.coords)] + [ring_coords(r.coords) for r in p.interiors]
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
    out: list[tuple[VertexRef, Point]] = []
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

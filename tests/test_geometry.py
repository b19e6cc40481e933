import time
from pathlib import Path

import numpy as np
import pytest
import shapely
from shapely.geometry import MultiPolygon, Point, Polygon, box

from dermaseg_app.core.geometry import (
    _Box,
    as_multipolygon,
    contours,
    mask_to_polygons,
    polygon_rings,
    polygons_of,
    polygons_to_mask,
    rasterize_rings,
    ring_coords,
)
from dermaseg_app.core.imageio import read_mask


def _roundtrip_exact(m: np.ndarray) -> MultiPolygon:
    g = mask_to_polygons(m)
    assert isinstance(g, MultiPolygon)
    assert g.is_valid
    assert g.area == pytest.approx(float(m.sum()))  # exact pixel outline
    np.testing.assert_array_equal(polygons_to_mask(g, m.shape), m)
    return g


def test_single_pixel_is_its_square() -> None:
    m = np.zeros((4, 5), bool)
    m[1, 3] = True
    g = _roundtrip_exact(m)
    assert len(g.geoms) == 1
    assert g.geoms[0].equals(box(3, 1, 4, 2))


def test_two_components_and_a_hole() -> None:
    m = np.zeros((20, 30), bool)
    m[2:12, 2:12] = True
    m[5:8, 5:9] = False  # hole of 3x4
    m[14:18, 20:28] = True
    g = _roundtrip_exact(m)
    assert len(g.geoms) == 2
    polys = sorted(g.geoms, key=lambda p: p.bounds)
    assert polys[0].equals(Polygon(box(2, 2, 12, 12).exterior, [box(5, 5, 9, 8).exterior]))
    assert polys[1].equals(box(20, 14, 28, 18))
    # all vertices on pixel corners, collinear vertices dropped: a square has 4
    assert len(polys[1].exterior.coords) == 5
    rings = contours(m)
    assert len(rings) == 3
    for r in rings:
        assert r.shape[1] == 2 and r.dtype == np.float64
        assert np.array_equal(r, np.round(r))


def test_island_in_hole_and_border_touching() -> None:
    m = np.zeros((15, 15), bool)
    m[0:15, 0:15] = True  # touches every image border
    m[3:12, 3:12] = False
    m[6:9, 6:9] = True  # island inside the hole
    g = _roundtrip_exact(m)
    assert len(g.geoms) == 2
    assert sorted(len(p.interiors) for p in g.geoms) == [0, 1]


def test_diagonal_touch_is_valid() -> None:
    m = np.zeros((6, 6), bool)
    m[1, 1] = m[2, 2] = m[3, 3] = True  # pixels touching only at corners
    m[3, 1] = True
    g = _roundtrip_exact(m)
    assert g.is_valid
    hole_pinch = np.ones((6, 6), bool)
    hole_pinch[2, 2] = hole_pinch[3, 3] = False  # two holes touching at a corner
    _roundtrip_exact(hole_pinch)


def test_random_masks_roundtrip_exactly() -> None:
    rng = np.random.default_rng(42)
    for _ in range(150):
        h, w = (int(v) for v in rng.integers(1, 14, 2))
        m = rng.random((h, w)) < rng.random()
        _roundtrip_exact(m)


def test_empty_and_full() -> None:
    empty = np.zeros((5, 7), bool)
    g = mask_to_polygons(empty)
    assert g.is_empty and isinstance(g, MultiPolygon)
    assert not polygons_to_mask(g, (5, 7)).any()
    assert contours(empty) == []
    full = np.ones((5, 7), bool)
    g = _roundtrip_exact(full)
    assert g.geoms[0].equals(box(0, 0, 7, 5))
    with pytest.raises(ValueError, match="2-D"):
        mask_to_polygons(np.zeros((2, 2, 3), bool))


def test_rasterise_float_geometry_uses_pixel_centres() -> None:
    shape = (40, 50)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    cx, cy = xx + 0.5, yy + 0.5
    geoms = [
        Point(20.3, 17.9).buffer(11.2),  # a disc
        Polygon([(-5.2, 3.3), (60.1, 10.7), (12.4, 55.5)]),  # clipped by the image
        Point(25, 20).buffer(15).difference(Point(27.7, 21.2).buffer(6.1)),  # ring with hole
        MultiPolygon([box(1.49, 1.51, 6.5, 9.2), box(30.2, 30.2, 45.9, 38.01)]),
    ]
    for geom in geoms:
        expected = shapely.contains_xy(geom, cx, cy)
        got = polygons_to_mask(geom, shape)
        assert got.shape == shape and got.dtype == np.bool_
        np.testing.assert_array_equal(got, expected)
    # fully outside, or nothing: empty mask
    assert not polygons_to_mask(box(100, 100, 120, 130), shape).any()
    assert not polygons_to_mask(Polygon(), shape).any()


def test_polygon_rings_drops_closing_point() -> None:
    rings = polygon_rings(box(0, 0, 2, 3))
    assert len(rings) == 1 and rings[0].shape == (4, 2)


def test_real_sample_masks_roundtrip(sample_gt_dir: Path) -> None:
    files = sorted(sample_gt_dir.glob("*_segmentation.png"))
    assert len(files) == 8
    for f in files:
        m = read_mask(f)
        back = polygons_to_mask(mask_to_polygons(m), m.shape)
        iou = np.logical_and(back, m).sum() / np.logical_or(back, m).sum()
        assert iou >= 0.99, f.name
        assert np.array_equal(back, m), f.name  # in fact exact


def test_speed_at_full_resolution(sample_gt_dir: Path) -> None:
    m = read_mask(sample_gt_dir / "ISIC_0000377_segmentation.png")
    assert m.shape == (2304, 3072)
    t0 = time.perf_counter()
    g = mask_to_polygons(m)
    t1 = time.perf_counter()
    polygons_to_mask(g, m.shape)
    t2 = time.perf_counter()
    # typically ~50 ms and ~15 ms; generous bounds for a loaded CI machine
    assert t1 - t0 < 2.0
    assert t2 - t1 < 1.0


# -- the one rasteriser: polygons_to_mask, the editing operations and the COCO check share it ------
def test_rasteriser_pixel_rule_on_ties() -> None:
    """A centre exactly on the outline is outside (vertices, left/right and top/bottom edges),
    as shapely.contains_xy; half-pixel coordinates hit every tie."""
    shape = (40, 50)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    rng = np.random.default_rng(7)
    notch = Polygon([(4.5, 42.5), (1.5, 24.0), (34.0, 48.0), (4.5, 35.5)])  # a vertex on a centre
    geoms = [box(0.5, 0.5, 3.5, 3.5), box(1.5, 2.0, 6.5, 9.0), notch]
    while len(geoms) < 300:
        g = Polygon(rng.integers(-6, 110, (int(rng.integers(3, 8)), 2)) * 0.5)
        if g.is_valid and not g.is_empty:
            geoms.append(g)
    for g in geoms:
        expected = shapely.contains_xy(g, xx + 0.5, yy + 0.5)
        np.testing.assert_array_equal(polygons_to_mask(g, shape), expected)
    assert polygons_to_mask(box(0.5, 0.5, 3.5, 3.5), shape).sum() == 4  # the 2x2 strictly inside


def test_editing_rasterises_like_polygons_to_mask() -> None:
    from dermaseg_app.core.edit import BBox, apply_geometry, fill_polygon, rasterize_geometry

    shape = (40, 50)
    rng = np.random.default_rng(11)
    for i in range(100):
        # half-pixel vertices inside the image (ties everywhere), or floats partly outside it
        pts = rng.integers(0, 81, (6, 2)) * 0.5 if i % 2 else rng.uniform(-5, 55, (6, 2))
        g = Polygon(pts).buffer(0)
        ref = polygons_to_mask(g, shape)
        np.testing.assert_array_equal(rasterize_geometry(g, shape), ref)
        np.testing.assert_array_equal(apply_geometry(np.zeros(shape, bool), g).mask, ref)
        region = BBox(3, 5, 41, 33)
        np.testing.assert_array_equal(rasterize_geometry(g, shape, region), ref[region.slices])
        if g.geom_type == "Polygon" and not g.interiors:  # a simple lasso: nonzero = even-odd
            ring = np.asarray(g.exterior.coords)
            np.testing.assert_array_equal(fill_polygon(np.zeros(shape, bool), ring, "replace").mask, ref)


def test_rasteriser_rules_and_overlapping_lasso() -> None:
    region = _Box(0, 0, 25, 25)
    # a square drawn twice over its left half: the edge x = 10.5 lies inside the other loop
    twice = [(2, 2), (20, 2), (20, 20), (2, 20), (2, 2), (10.5, 2), (10.5, 20), (2, 20)]
    nonzero = rasterize_rings([twice], region, "nonzero")
    assert nonzero[5, 10] and nonzero[5, 3] and nonzero[5, 19] and nonzero.sum() == 18 * 18
    evenodd = rasterize_rings([twice], region, "evenodd")
    assert not evenodd[5, 3] and evenodd[5, 15] and not evenodd[5, 10]  # x = 10.5: on the outline
    with pytest.raises(ValueError, match="rule"):
        rasterize_rings([twice], region, "winding")
    # non-finite vertices are ignored, degenerate rings give nothing
    assert not rasterize_rings([[(1, 1), (5, 5)]], region).any()
    ring = [(1.0, 1.0), (9.0, 1.0), (np.nan, 5.0), (9.0, 9.0), (1.0, 9.0)]
    assert rasterize_rings([ring], region)[5, 2]


def test_ring_helpers() -> None:
    g = MultiPolygon([box(0, 0, 4, 4).difference(box(1, 1, 2, 2)), box(6, 6, 8, 8)])
    assert [len(r) for r in polygon_rings(g)] == [4, 4, 4]
    assert [len(r) for r in polygon_rings(g, closed=True)] == [5, 5, 5]
    assert len(polygons_of(g)) == 2 and polygons_of(None) == [] and polygons_of(Point(1, 1)) == []
    bow = Polygon([(0, 0), (4, 4), (4, 0), (0, 4)])  # self-crossing: made valid
    assert as_multipolygon(bow).is_valid and as_multipolygon(bow).area == pytest.approx(8)
    assert ring_coords([[0, 0], [1, 0], [1, 1], [0, 0]]).shape == (3, 2)

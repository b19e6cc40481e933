"""Contour-correction operations (issue 5): core/edit/, on real sample masks."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import shapely
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry import Point as SPoint

from dermaseg_app.core import edit as E
from dermaseg_app.core.edit import BBox, EditOp, VertexRef
from dermaseg_app.core.edit.morphology import _kth_largest
from dermaseg_app.core.geometry import mask_to_polygons, polygons_to_mask

GT = Path(__file__).resolve().parents[1] / "resources" / "samples" / "ISIC-2017_Training_Part1_GroundTruth"
STEMS = ["ISIC_0000009", "ISIC_0000169", "ISIC_0000299", "ISIC_0000457"]


def load(stem: str, scale: float = 0.25) -> np.ndarray:
    m = cv2.imread(str(GT / f"{stem}_segmentation.png"), cv2.IMREAD_GRAYSCALE)
    if scale != 1:
        m = cv2.resize(m, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    return m > 127


@pytest.fixture(scope="module", params=STEMS)
def sample(request) -> np.ndarray:
    return load(request.param)


def holey() -> np.ndarray:
    """Two components, one with a hole holding an island, plus a speck."""
    m = np.zeros((80, 100), bool)
    m[10:60, 10:60] = True
    m[20:50, 20:50] = False      # hole
    m[30:40, 30:40] = True       # island in the hole
    m[65:75, 70:95] = True       # second component
    m[5, 90] = True              # one-pixel speck
    return m


def centre_rule(geom, shape) -> np.ndarray:
    """Reference rasteriser: pixel (r, c) is inside when its centre (c + .5, r + .5) is."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return shapely.contains_xy(geom, xx + 0.5, yy + 0.5)


def check_result(before: np.ndarray, res: E.EditResult) -> None:
    """The result's bbox covers every changed pixel, and the input was not mutated."""
    diff = before != res.mask
    if res.bbox is None:
        assert not diff.any()
        return
    inside = np.zeros_like(diff)
    inside[res.bbox.slices] = True
    assert not (diff & ~inside).any(), "changed pixels outside the reported bbox"


# -- brush / eraser --------------------------------------------------------------------------
def test_disc_area_and_centre_rule() -> None:
    z = np.zeros((101, 101), bool)
    res = E.paint_stroke(z, [(50.5, 50.5)], 20)
    assert abs(res.mask.sum() - np.pi * 400) / (np.pi * 400) < 0.01
    assert res.mask[50, 50] and res.mask[50, 70] and not res.mask[50, 71]
    assert res.bbox == BBox(30, 30, 71, 71)
    assert not z.any()  # input untouched


def test_brush_and_eraser_on_sample(sample: np.ndarray) -> None:
    before = sample.copy()
    h, w = sample.shape
    pts = [(w * 0.1, h * 0.1), (w * 0.5, h * 0.5), (w * 0.9, h * 0.2)]
    add = E.paint_stroke(sample, pts, 6)
    check_result(sample, add)
    assert np.array_equal(sample, before)
    assert add.mask.sum() > sample.sum() and (add.mask | sample).sum() == add.mask.sum()
    er = E.paint_stroke(add.mask, pts, 6, erase=True)
    check_result(add.mask, er)
    assert not (er.mask & ~sample).any()  # erasing the same stroke removes at least what it added
    assert er.mask.sum() < sample.sum() or not (sample & add.mask & ~er.mask).any()
    # the stroke touched only pixels near the polyline
    assert add.bbox.x0 >= int(w * 0.1 - 7) and add.bbox.x1 <= int(w * 0.9 + 8)


def test_brush_stroke_incremental_equals_replay(sample: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    h, w = sample.shape
    pts = np.cumsum(rng.normal(0, 6, (40, 2)), axis=0) + [w / 2, h / 2]
    stroke = E.BrushStroke(sample, 7.3, erase=False)
    boxes = [stroke.add_point(x, y) for x, y in pts]
    res = stroke.finish()
    check_result(sample, res)
    replay = EditOp.from_json(json.loads(json.dumps(res.op.to_json()))).apply(sample)
    assert np.array_equal(replay.mask, res.mask)
    assert all(b is None or (b.width <= 2 * 7.3 + 40 and b.height <= 2 * 7.3 + 40) for b in boxes)


def test_brush_outside_image_and_bad_input() -> None:
    z = np.zeros((20, 20), bool)
    assert E.paint_stroke(z, [(-50, -50), (-40, -60)], 3).bbox is None
    edge = E.paint_stroke(z, [(-2, 10), (5, 10)], 4)
    assert edge.mask[10, 0] and edge.bbox.x0 == 0
    with pytest.raises(ValueError):
        E.paint_stroke(z, [], 3)
    with pytest.raises(ValueError):
        E.paint_stroke(z, [(1, 1)], 0)
    with pytest.raises(ValueError):
        E.paint_stroke(z, [(np.nan, 1)], 2)


def test_brush_full_resolution() -> None:
    m = load("ISIC_0000377", 1.0)  # 3072 x 2304
    res = E.paint_stroke(m, [(100.0, 100.0), (900.0, 400.0)], 25)
    check_result(m, res)
    assert res.bbox.width <= 900 - 100 + 52 and res.bbox.height <= 300 + 52


# -- polygon / lasso -------------------------------------------------------------------------
def test_polygon_add_subtract_replace(sample: np.ndarray) -> None:
    h, w = sample.shape
    # (offsets keep pixel centres off the edges, where the boundary convention would decide)
    tri = [(w * 0.2 + 0.0131, h * 0.2 + 0.0173), (w * 0.8 + 0.0071, h * 0.3), (w * 0.4, h * 0.9 + 0.019)]
    exact = centre_rule(Polygon(tri), sample.shape)
    add = E.fill_polygon(sample, tri, "add")
    check_result(sample, add)
    assert np.array_equal(add.mask, sample | exact)
    sub = E.fill_polygon(sample, tri, "subtract")
    check_result(sample, sub)
    assert np.array_equal(sub.mask, sample & ~exact)
    rep = E.fill_polygon(sample, tri, "replace")
    assert np.array_equal(rep.mask, exact)
    check_result(sample, rep)


def test_rasterizer_matches_geometry_module_and_round_trips(sample: np.ndarray) -> None:
    geom = mask_to_polygons(sample)
    mine = E.rasterize_geometry(geom, sample.shape)
    assert np.array_equal(mine, sample)  # exact round trip of pixel-edge polygons
    rng = np.random.default_rng(3)
    h, w = sample.shape
    for _ in range(5):
        pts = rng.uniform(0, [w, h], (7, 2))
        poly = Polygon(pts).buffer(0)
        ours = E.rasterize_geometry(poly, sample.shape)
        assert np.array_equal(ours, centre_rule(poly, sample.shape))
        assert np.array_equal(ours, polygons_to_mask(poly, sample.shape))  # same rule as core.geometry


def test_self_crossing_lasso_nonzero() -> None:
    z = np.zeros((40, 40), bool)
    figure8 = [(5, 5), (35, 35), (35, 5), (5, 35)]  # bow tie
    res = E.fill_polygon(z, figure8, "add")
    assert res.mask[20, 8] and res.mask[20, 32] and not res.mask[5, 20]


def test_holes_with_island_rasterized() -> None:
    m = holey()
    geom = mask_to_polygons(m)
    assert np.array_equal(E.rasterize_geometry(geom, m.shape), m)
    res = E.apply_geometry(np.zeros_like(m), geom)
    assert np.array_equal(res.mask, m)


# -- clean-up ---------------------------------------------------------------------------------
def test_fill_holes_and_islands() -> None:
    m = holey()
    filled = E.fill_holes(m)
    check_result(m, filled)
    assert filled.mask[25, 25] and filled.mask[35, 35]
    assert filled.mask.sum() == m.sum() + (30 * 30 - 10 * 10)
    small_only = E.fill_holes(m, max_area=100)
    assert np.array_equal(small_only.mask, m)  # the hole is 800 px
    cleaned = E.remove_islands(m, 50)
    check_result(m, cleaned)
    assert not cleaned.mask[5, 90] and cleaned.mask[35, 35] and cleaned.mask[70, 80]
    assert E.remove_islands(m, 101).mask[35, 35] == False  # noqa: E712 - the 100 px island goes
    largest = E.keep_largest(m)
    assert largest.mask.sum() == 50 * 50 - 30 * 30


def test_fill_holes_on_sample(sample: np.ndarray) -> None:
    punched = E.paint_stroke(sample, [tuple(np.argwhere(sample).mean(axis=0)[::-1] + 0.5)], 4,
                             erase=True).mask
    assert punched.sum() < sample.sum()
    res = E.fill_holes(punched)
    check_result(punched, res)
    assert np.array_equal(res.mask, E.fill_holes(sample).mask)


def test_smooth_keeps_area(sample: np.ndarray) -> None:
    for sigma in (1.5, 4.0):
        res = E.smooth(sample, sigma)
        check_result(sample, res)
        assert abs(int(res.mask.sum()) - int(sample.sum())) / sample.sum() < 0.01
        # smoother: the outline gets shorter (or stays)
        assert mask_to_polygons(res.mask).length <= mask_to_polygons(sample).length * 1.001


def test_smooth_with_holes() -> None:
    m = holey()
    res = E.smooth(m, 2)
    assert abs(int(res.mask.sum()) - int(m.sum())) <= 2
    assert not res.mask[25, 25]  # the hole stays a hole


def test_smooth_geometry_keeps_area(sample: np.ndarray) -> None:
    geom = mask_to_polygons(sample)
    sm = E.smooth_geometry(geom, 3.0)
    assert sm.is_valid
    assert abs(sm.area - geom.area) / geom.area < 0.01
    assert sm.length < geom.length


def test_simplify(sample: np.ndarray) -> None:
    geom = mask_to_polygons(sample)
    simp = E.simplify_geometry(geom, 2.0)
    n_before = sum(len(p.exterior.coords) for p in geom.geoms)
    n_after = sum(len(p.exterior.coords) for p in simp.geoms)
    assert n_after < n_before
    res = E.simplify(sample, 2.0)
    check_result(sample, res)
    inter = (res.mask & sample).sum()
    assert inter / (res.mask | sample).sum() > 0.97
    assert np.array_equal(E.simplify(sample, 0).mask, sample)


def test_grow_shrink_monotonic(sample: np.ndarray) -> None:
    areas = {}
    for px in (-6, -3, 0, 3, 6):
        res = E.grow(sample, px)
        check_result(sample, res)
        areas[px] = int(res.mask.sum())
    assert areas[-6] < areas[-3] < areas[0] < areas[3] < areas[6]
    assert areas[0] == int(sample.sum())
    assert not (E.grow(sample, -3).mask & ~sample).any()
    assert not (sample & ~E.grow(sample, 3).mask).any()


def test_grow_is_a_disc() -> None:
    z = np.zeros((61, 61), bool)
    z[30, 30] = True
    g = E.grow(z, 10).mask
    assert abs(g.sum() - np.pi * 100) / (np.pi * 100) < 0.05
    assert g[30, 40] and not g[30, 41]
    s = E.grow(g, -5).mask
    assert s[30, 30] and s.sum() < g.sum()


def test_buffer_geometry_monotonic(sample: np.ndarray) -> None:
    geom = mask_to_polygons(sample)
    assert E.buffer_geometry(geom, -2).area < geom.area < E.buffer_geometry(geom, 2).area


def test_full_resolution_operations() -> None:
    m = load("ISIC_0000377", 1.0)
    sm = E.smooth(m, 3)
    assert abs(int(sm.mask.sum()) - int(m.sum())) / m.sum() < 0.01
    g = E.grow(m, 4)
    assert g.mask.sum() > m.sum()
    assert np.array_equal(E.rasterize_geometry(mask_to_polygons(m), m.shape), m)


# -- vertex operations ------------------------------------------------------------------------
def square_mp() -> MultiPolygon:
    return MultiPolygon([box(10, 10, 30, 30)])


def test_vertex_move_insert_delete() -> None:
    geom = square_mp()
    ref, d = E.nearest_vertex(geom, (29, 31))
    assert d < 2 and ref.polygon == 0 and ref.ring == 0
    moved = E.move_vertex(geom, ref, (40, 40), shape=(50, 50))
    assert moved.geometry.area > geom.area and moved.geometry.is_valid
    assert moved.bbox.x1 >= 41 and moved.bbox.x0 <= 10
    edge, dist, at = E.nearest_edge(geom, (20, 9))
    assert dist == pytest.approx(1.0) and at == (20.0, 10.0)
    ins = E.insert_vertex(geom, edge, (20, 5))
    assert len(E.vertices(ins.geometry)) == 5 and ins.geometry.area > geom.area
    dele = E.delete_vertex(ins.geometry, VertexRef(0, 0, edge.index + 1))
    assert dele.geometry.equals(geom)
    tri_gone = E.delete_vertex(MultiPolygon([Polygon([(0, 0), (5, 0), (0, 5)])]), VertexRef(0, 0, 0))
    assert tri_gone.geometry.is_empty
    with pytest.raises(IndexError):
        E.move_vertex(geom, VertexRef(3, 0, 0), (0, 0))


def test_vertex_edit_on_hole_and_commit(sample: np.ndarray) -> None:
    m = holey()
    geom = mask_to_polygons(m)
    # find a vertex on the hole ring (ring > 0)
    hole_refs = [(r, p) for r, p in E.vertices(geom) if r.ring > 0]
    assert hole_refs
    ref, (x, y) = hole_refs[0]
    edit = E.delete_vertex(geom, ref, shape=m.shape)
    res = E.apply_geometry(m, edit.geometry, edit.bbox)
    check_result(m, res)
    # only pixels inside the edit's box may change, and they do
    assert res.changed
    replay = EditOp.from_json(json.loads(json.dumps(res.op.to_json()))).apply(m)
    assert np.array_equal(replay.mask, res.mask)
    # a self-crossing move is made valid
    sq = square_mp()
    cross = E.move_vertex(sq, VertexRef(0, 0, 0), (35, 35))
    assert cross.geometry.is_valid


def test_vertex_move_on_sample(sample: np.ndarray) -> None:
    geom = mask_to_polygons(sample)
    ref, (x, y) = E.vertices(geom)[0]
    edit = E.move_vertex(geom, ref, (x + 5, y + 5), shape=sample.shape)
    res = E.apply_geometry(sample, edit.geometry, edit.bbox)
    check_result(sample, res)
    assert res.bbox is None or (res.bbox.width <= edit.bbox.width and res.bbox.height <= edit.bbox.height)
    full = centre_rule(edit.geometry, sample.shape)
    assert np.array_equal(res.mask, full)  # the local commit equals the full rasterisation


# -- ops as data --------------------------------------------------------------------------------
@pytest.mark.parametrize("op", [EditOp.fill_holes(), EditOp.fill_holes(10), EditOp.remove_islands(30),
                                EditOp.smooth(2.0), EditOp.simplify(1.5), EditOp.grow(-2),
                                EditOp.grow(3), EditOp.polygon([(5, 5), (60, 8), (30, 70)], "subtract"),
                                EditOp.brush([(5, 5), (50, 50)], 4), EditOp.clear(),
                                EditOp("keep_largest", {})])
def test_ops_round_trip_json(op: EditOp) -> None:
    m = holey()
    data = json.loads(json.dumps(op.to_json()))
    again = EditOp.from_json(data)
    assert again == op
    a, b = op.apply(m), again.apply(m)
    assert np.array_equal(a.mask, b.mask)
    check_result(m, a)
    assert isinstance(op.label, str) and op.label


def test_reset_and_unknown_ops() -> None:
    m = holey()
    with pytest.raises(ValueError, match="reset_mask"):
        EditOp.reset().apply(m)
    target = np.zeros_like(m)
    res = EditOp.reset().apply(m, reset_mask=target)
    assert not res.mask.any() and res.bbox == BBox.of_mask(m)
    with pytest.raises(ValueError, match="unknown"):
        EditOp("explode", {}).apply(m)
    with pytest.raises(ValueError):
        EditOp.from_json({"params": {}})


def test_bbox_helpers() -> None:
    b = BBox(2, 3, 10, 8)
    assert b.shape == (5, 8) and b.union(BBox(0, 0, 1, 1)) == BBox(0, 0, 10, 8)
    assert b.clip((5, 5)) == BBox(2, 3, 5, 5)
    assert BBox.from_list(b.to_list()) == b
    assert BBox.of_mask(np.zeros((3, 3), bool)) is None
    assert SPoint(0, 0).buffer(1).area > 3  # shapely sanity


def test_kth_largest_band_shortcut() -> None:
    rng = np.random.default_rng(0)
    v = rng.random(1000).astype(np.float32)
    v[:300] = 1.0
    v[300:600] = 0.0
    ref = np.sort(v)[::-1]
    for k in (1, 250, 300, 301, 500, 700, 1000):
        assert _kth_largest(v, k) == ref[k - 1]


# -- the ops registry and the old module name ---------------------------------------------------
def test_every_op_is_registered_with_a_label() -> None:
    from dermaseg_app.core.edit import OPS, register

    made = [EditOp.brush([(1, 1)], 2), EditOp.brush([(1, 1)], 2, erase=True), EditOp.polygon([(0, 0)] * 3),
            EditOp.fill_holes(), EditOp.remove_islands(3), EditOp.keep_largest(), EditOp.smooth(1.0),
            EditOp.simplify(1.0), EditOp.grow(1.0), EditOp.set_geometry(None, BBox(0, 0, 1, 1)),
            EditOp.clear(), EditOp.reset()]
    assert sorted(op.name for op in made) == sorted(OPS)
    assert all(OPS[op.name].label == op.label and op.label for op in made)
    assert EditOp.grow(1).label == "grow/shrink" and EditOp("no_such_op").label == "no such op"
    with pytest.raises(ValueError, match="twice"):
        register("smooth", "again")(lambda m, p, r: E.smooth(m, 1.0))


def test_old_module_name_reexports_the_package() -> None:
    from dermaseg_app.core import editing

    assert set(editing.__all__) == set(E.__all__)
    for name in E.__all__:
        assert getattr(editing, name) is getattr(E, name), name

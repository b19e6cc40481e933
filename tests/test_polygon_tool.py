"""The click-by-click polygon tool of the contour editor (canvas/edit_tools.py, canvas/polygon_tool.py).

Most tests drive ``EditTools`` on a bare ``ImageCanvas`` showing a 64 px image, with an edit target
that applies the closed polygon through ``core.history`` (as gui.editing.EditController does);
the last ones go through the review window (keys, tool bar, Edit menu, window shortcuts).
Expected masks are computed independently with shapely (a pixel is inside when its centre is).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui

from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QTransform, QWheelEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402
from shapely.geometry import Point, Polygon  # noqa: E402

from dermaseg_app.core.editing import EditOp  # noqa: E402
from dermaseg_app.core.history import History  # noqa: E402
from dermaseg_app.gui.canvas.edit_tools import EditTools, Tool  # noqa: E402
from dermaseg_app.gui.canvas.image_view import ImageCanvas  # noqa: E402
from dermaseg_app.gui.canvas.polygon_tool import CLOSE_HIT_PX  # noqa: E402

SIZE = 64
ZOOM = 4.0  # integer: viewport pixels map back to exact image coordinates
TRIANGLE = [(10.25, 8.0), (50.0, 13.5), (19.75, 56.25)]  # quarters: exact at ZOOM
SQUARE = [(30.0, 30.0), (60.0, 30.0), (60.0, 60.0), (30.0, 60.0)]


def centre_rule(points, shape=(SIZE, SIZE)) -> np.ndarray:
    """Pixels whose centre lies inside the polygon (independent of core.editing's rasteriser).
    The test polygons have no pixel centre on their outline (where the rules could differ)."""
    poly = Polygon(points)
    out = np.zeros(shape, bool)
    for r in range(shape[0]):
        for c in range(shape[1]):
            centre = Point(c + 0.5, r + 0.5)
            assert poly.boundary.distance(centre) > 1e-9, f"pixel centre {centre} on the outline"
            out[r, c] = poly.contains(centre)
    return out


def start_mask() -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), bool)
    mask[36:58, 4:44] = True  # overlaps both the triangle and the square
    return mask


class Target:
    """An EditTarget applying polygons through core.history, recording what it was given."""

    def __init__(self, mask: np.ndarray) -> None:
        self.history = History(mask)
        self.calls: list[tuple[list, str]] = []

        self.ready = True  # False: as the window before the image's prediction arrives

    def polygon(self, points, mode: str) -> bool:
        if not self.ready:
            return False
        self.calls.append((list(points), mode))
        self.history.apply(EditOp.polygon(points, mode))
        return True

    def outline(self):
        return None

    def stroke_begin(self, radius: float, erase: bool) -> bool:
        return False

    def stroke_to(self, x: float, y: float) -> None: ...
    def stroke_end(self) -> None: ...
    def stroke_cancel(self) -> None: ...
    def commit_geometry(self, edit) -> None: ...


@pytest.fixture
def rig(qtbot):
    canvas = ImageCanvas()
    qtbot.addWidget(canvas)
    canvas.resize(400, 400)
    rgb = np.full((SIZE, SIZE, 3), 120, np.uint8)
    canvas.set_image((SIZE, SIZE), rgb, rgb)
    canvas.show()
    qtbot.waitExposed(canvas)
    canvas.set_zoom(ZOOM)  # leaves the fit-to-window mode
    canvas.setTransform(QTransform.fromScale(ZOOM, ZOOM))  # exactly
    target = Target(start_mask())
    tools = EditTools(canvas, target)
    tools.set_tool(Tool.POLYGON_ADD)
    return SimpleNamespace(canvas=canvas, vp=canvas.viewport(), tools=tools, target=target,
                           history=target.history, before=start_mask())


def vpos(canvas, x: float, y: float) -> QPoint:
    return canvas.mapFromScene(QPointF(x, y))


def click(qtbot, rig, x: float, y: float, button=Qt.MouseButton.LeftButton) -> None:
    pos = vpos(rig.canvas, x, y)
    qtbot.mouseMove(rig.vp, pos)
    qtbot.mouseClick(rig.vp, button, Qt.KeyboardModifier.NoModifier, pos)


def key(qtbot, rig, k) -> None:
    qtbot.keyClick(rig.canvas, k)


def drawn(rig) -> bool:
    item = rig.tools.polygon_item
    return any(not it.path().isEmpty() for it in item.items)


# ---------------------------------------------------------------------------------------- masks
def test_clicked_triangle_adds_exactly_its_pixels(qtbot, rig) -> None:
    for x, y in TRIANGLE:
        click(qtbot, rig, x, y)
    assert rig.tools.polygon_points == TRIANGLE  # exact image coordinates (pixel edges)
    assert len(rig.history) == 0 and rig.tools.busy
    key(qtbot, rig, Qt.Key.Key_Return)
    assert rig.target.calls == [(TRIANGLE, "add")]
    assert np.array_equal(rig.history.mask, rig.before | centre_rule(TRIANGLE))
    assert len(rig.history) == 1 and not rig.tools.busy and not drawn(rig)


@pytest.mark.parametrize("tool, expected", [
    (Tool.POLYGON_ADD, lambda before, inside: before | inside),
    (Tool.POLYGON_SUBTRACT, lambda before, inside: before & ~inside),
    (Tool.POLYGON_NEW, lambda before, inside: inside),
])
def test_modes_add_subtract_replace(qtbot, rig, tool, expected) -> None:
    rig.tools.set_tool(tool)
    for x, y in SQUARE:
        click(qtbot, rig, x, y)
    key(qtbot, rig, Qt.Key.Key_Enter)
    want = expected(rig.before, centre_rule(SQUARE))
    assert np.array_equal(rig.history.mask, want)
    assert rig.history.mask[30:60, 30:60].all() != (tool == Tool.POLYGON_SUBTRACT)
    assert len(rig.history) == 1
    # the driver gives the same result on the same start
    other = Target(start_mask())
    tools = EditTools(rig.canvas, other)
    tools.polygon(SQUARE, tool)
    assert np.array_equal(other.history.mask, want) and len(other.history) == 1


def test_undo_redo_restore_exactly(qtbot, rig) -> None:
    rig.tools.polygon(TRIANGLE)
    after = rig.history.mask.copy()
    rig.tools.set_tool(Tool.POLYGON_SUBTRACT)
    rig.tools.polygon(SQUARE)
    after2 = rig.history.mask.copy()
    assert len(rig.history) == 2
    rig.history.undo()
    assert np.array_equal(rig.history.mask, after)
    rig.history.undo()
    assert np.array_equal(rig.history.mask, rig.before)
    rig.history.redo()
    assert np.array_equal(rig.history.mask, after)
    rig.history.redo()
    assert np.array_equal(rig.history.mask, after2)


# ---------------------------------------------------------------------------------------- gestures
def test_backspace_and_right_button_remove_the_last_vertex(qtbot, rig) -> None:
    for x, y in SQUARE:
        click(qtbot, rig, x, y)
    key(qtbot, rig, Qt.Key.Key_Backspace)
    assert rig.tools.polygon_points == SQUARE[:3]
    click(qtbot, rig, 40, 50, Qt.MouseButton.RightButton)
    assert rig.tools.polygon_points == SQUARE[:2]
    click(qtbot, rig, 33.25, 60.75)  # a new third vertex, then close
    key(qtbot, rig, Qt.Key.Key_Return)
    tri = [SQUARE[0], SQUARE[1], (33.25, 60.75)]
    assert np.array_equal(rig.history.mask, rig.before | centre_rule(tri)) and len(rig.history) == 1


def test_ctrl_z_while_drawing_removes_the_last_vertex(qtbot, rig) -> None:
    rig.tools.polygon(TRIANGLE)  # an earlier edit, not undone by Ctrl+Z while drawing
    for x, y in SQUARE:
        click(qtbot, rig, x, y)
    qtbot.keyClick(rig.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert rig.tools.polygon_points == SQUARE[:3] and len(rig.history) == 1


def test_polygon_kept_when_it_cannot_be_applied_yet(qtbot, rig) -> None:
    rig.target.ready = False
    for x, y in SQUARE:
        click(qtbot, rig, x, y)
    key(qtbot, rig, Qt.Key.Key_Return)
    assert rig.tools.polygon_points == SQUARE and drawn(rig) and len(rig.history) == 0
    rig.target.ready = True
    key(qtbot, rig, Qt.Key.Key_Return)
    assert rig.target.calls == [(SQUARE, "add")] and not rig.tools.busy


def test_polygon_partly_outside_the_image_is_clipped(qtbot, rig) -> None:
    outside = [(-12.0, -10.0), (30.0, -10.0), (30.0, 20.0), (-12.0, 20.0)]  # still on the screen
    rig.tools.set_tool(Tool.POLYGON_NEW)
    for x, y in outside:
        assert rig.vp.rect().contains(vpos(rig.canvas, x, y))
        click(qtbot, rig, x, y)
    key(qtbot, rig, Qt.Key.Key_Return)
    want = np.zeros((SIZE, SIZE), bool)
    want[:20, :30] = True
    assert np.array_equal(rig.history.mask, want)


def test_no_polygon_without_an_image(qtbot) -> None:
    canvas = ImageCanvas()
    qtbot.addWidget(canvas)
    canvas.resize(200, 200)
    canvas.show()
    target = Target(start_mask())
    tools = EditTools(canvas, target)
    tools.set_tool(Tool.POLYGON_ADD)
    for p in (QPoint(20, 20), QPoint(150, 30), QPoint(90, 160)):
        qtbot.mouseClick(canvas.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, p)
    assert tools.polygon_points == [] and not tools.busy


def test_escape_cancels_without_a_change_or_an_undo_step(qtbot, rig) -> None:
    for x, y in TRIANGLE:
        click(qtbot, rig, x, y)
    assert drawn(rig)
    key(qtbot, rig, Qt.Key.Key_Escape)
    assert rig.tools.polygon_points == [] and not drawn(rig) and not rig.tools.busy
    assert np.array_equal(rig.history.mask, rig.before) and len(rig.history) == 0
    assert rig.target.calls == []
    key(qtbot, rig, Qt.Key.Key_Return)  # nothing left to close
    assert len(rig.history) == 0


def test_click_near_the_first_vertex_closes(qtbot, rig) -> None:
    for x, y in TRIANGLE:
        click(qtbot, rig, x, y)
    near = (TRIANGLE[0][0] + 1.0, TRIANGLE[0][1] + 1.0)  # 4 * sqrt(2) = 5.7 screen px away
    assert np.hypot(1, 1) * ZOOM < CLOSE_HIT_PX
    qtbot.mouseMove(rig.vp, vpos(rig.canvas, *near))
    assert rig.tools.polygon_item.closing_highlighted  # the first vertex shows it would close
    click(qtbot, rig, *near)
    assert rig.target.calls == [(TRIANGLE, "add")]  # closed on the first vertex, not a 4th vertex
    assert np.array_equal(rig.history.mask, rig.before | centre_rule(TRIANGLE))
    # farther away it is a new vertex (and the first vertex is not highlighted)
    for x, y in SQUARE[:3]:
        click(qtbot, rig, x, y)
    far = (SQUARE[0][0] - 4.0, SQUARE[0][1])  # 16 screen px
    qtbot.mouseMove(rig.vp, vpos(rig.canvas, *far))
    assert not rig.tools.polygon_item.closing_highlighted
    click(qtbot, rig, *far)
    assert len(rig.tools.polygon_points) == 4 and len(rig.history) == 1


def test_double_click_closes_with_its_vertex(qtbot, rig) -> None:
    for x, y in SQUARE[:3]:
        click(qtbot, rig, x, y)
    # a real double click: press (adds the vertex), release, double-click event, release
    pos = vpos(rig.canvas, *SQUARE[3])
    qtbot.mouseClick(rig.vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)
    qtbot.mouseDClick(rig.vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)
    assert rig.target.calls == [(SQUARE, "add")]  # the double-clicked vertex counted once
    assert np.array_equal(rig.history.mask, rig.before | centre_rule(SQUARE))
    assert not drawn(rig)
    # qtbot's double click alone (no press before it) places its vertex too
    rig.tools.set_tool(Tool.POLYGON_SUBTRACT)
    for x, y in SQUARE[:3]:
        click(qtbot, rig, x, y)
    qtbot.mouseDClick(rig.vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)
    assert rig.target.calls[-1] == (SQUARE, "subtract") and len(rig.history) == 2
    # the mouse may move a little during a double click: still the one vertex of its first click
    for x, y in SQUARE[:3]:
        click(qtbot, rig, x, y)
    qtbot.mouseClick(rig.vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)
    qtbot.mouseDClick(rig.vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos + QPoint(3, -1))
    assert rig.target.calls[-1] == (SQUARE, "subtract") and len(rig.target.calls) == 3
    # a double click with no polygon in progress starts nothing
    qtbot.mouseDClick(rig.vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)
    assert not rig.tools.busy


def test_fewer_than_three_vertices_do_nothing(qtbot, rig) -> None:
    click(qtbot, rig, *TRIANGLE[0])
    click(qtbot, rig, *TRIANGLE[0])  # the same place again: no second vertex
    assert rig.tools.polygon_points == TRIANGLE[:1]
    click(qtbot, rig, *TRIANGLE[1])
    key(qtbot, rig, Qt.Key.Key_Return)
    qtbot.mouseDClick(rig.vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                      vpos(rig.canvas, *TRIANGLE[1]))
    click(qtbot, rig, *TRIANGLE[0])  # a click on the first vertex with 2: neither closes nor adds
    assert rig.tools.polygon_points == TRIANGLE[:2]  # still being drawn, nothing applied
    assert len(rig.history) == 0 and rig.target.calls == []
    for tool in (Tool.POLYGON_ADD, Tool.POLYGON_NEW):
        rig.tools.polygon(TRIANGLE[:2], tool)
        rig.tools.polygon([(10.0, 10.0), (20.0, 20.0), (30.0, 30.0)], tool)  # on one line: no area
    assert len(rig.history) == 0 and np.array_equal(rig.history.mask, rig.before) and not rig.tools.busy


def test_polygon_in_progress_is_drawn_and_removed(qtbot, rig) -> None:
    item = rig.tools.polygon_item
    scene_items = rig.canvas.scene().items()
    assert all(it in scene_items for it in item.items)
    assert not drawn(rig)
    click(qtbot, rig, *SQUARE[0])
    assert not item.first_item.path().isEmpty()  # the first vertex's handle
    click(qtbot, rig, *SQUARE[1])
    qtbot.mouseMove(rig.vp, vpos(rig.canvas, 45, 50))
    assert not item.edges_item.path().isEmpty() and not item.rubber_item.path().isEmpty()
    # the rubber band runs from the last vertex to the cursor and back to the first vertex
    rubber = item.rubber_item.path()
    assert [(rubber.elementAt(i).x, rubber.elementAt(i).y) for i in range(rubber.elementCount())] == [
        SQUARE[1], (45.0, 50.0), SQUARE[0]]
    assert not item.fill_item.path().isEmpty()  # the closed preview
    assert item.handles_item.path().boundingRect().contains(QPointF(*SQUARE[1]))
    click(qtbot, rig, *SQUARE[2])
    key(qtbot, rig, Qt.Key.Key_Return)
    assert not drawn(rig)
    click(qtbot, rig, *SQUARE[0])
    key(qtbot, rig, Qt.Key.Key_Escape)
    assert not drawn(rig)


def test_switching_tools_mid_polygon_cancels_it(qtbot, rig) -> None:
    for x, y in SQUARE[:3]:
        click(qtbot, rig, x, y)
    rig.tools.set_tool(Tool.BRUSH)
    assert not rig.tools.busy and not drawn(rig) and len(rig.history) == 0
    rig.tools.set_tool(Tool.POLYGON_NEW)
    click(qtbot, rig, *TRIANGLE[0])
    assert rig.tools.polygon_points == TRIANGLE[:1]  # a fresh polygon
    rig.tools.set_tool(Tool.POLYGON_SUBTRACT)  # another polygon mode cancels too
    assert rig.tools.polygon_points == [] and rig.target.calls == []
    assert np.array_equal(rig.history.mask, rig.before)


def test_zoom_and_pan_keep_the_polygon(qtbot, rig) -> None:
    canvas = rig.canvas
    for x, y in SQUARE[:2]:
        click(qtbot, rig, x, y)
    handle = rig.tools.polygon_item.first_item.path().boundingRect().width()
    # the wheel still zooms while drawing
    z0 = canvas.zoom
    wheel = QWheelEvent(QPointF(200, 200), QPointF(200, 200), QPoint(0, 0), QPoint(0, 480),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase,
                        False)
    QApplication.sendEvent(rig.vp, wheel)
    assert canvas.zoom > 2 * z0  # the image is now larger than the view: it can be panned
    assert rig.tools.polygon_points == SQUARE[:2]
    # the handles keep their size on screen: smaller in image units
    new_handle = rig.tools.polygon_item.first_item.path().boundingRect().width()
    assert new_handle == pytest.approx(handle * z0 / canvas.zoom, rel=1e-6)
    # pan with the middle button, then with Space + left drag: no vertex is added
    h = canvas.horizontalScrollBar()
    x0 = h.value()
    qtbot.mousePress(rig.vp, Qt.MouseButton.MiddleButton, pos=QPoint(200, 200))
    qtbot.mouseMove(rig.vp, QPoint(150, 200))
    qtbot.mouseRelease(rig.vp, Qt.MouseButton.MiddleButton, pos=QPoint(150, 200))
    assert h.value() == x0 + 50 and rig.tools.polygon_points == SQUARE[:2]
    qtbot.keyPress(canvas, Qt.Key.Key_Space)
    qtbot.mousePress(rig.vp, Qt.MouseButton.LeftButton, pos=QPoint(200, 200))
    qtbot.mouseMove(rig.vp, QPoint(230, 200))
    qtbot.mouseRelease(rig.vp, Qt.MouseButton.LeftButton, pos=QPoint(230, 200))
    qtbot.keyRelease(canvas, Qt.Key.Key_Space)
    assert h.value() == x0 + 20
    assert rig.tools.polygon_points == SQUARE[:2]
    canvas.fit()  # another zoom; not an integer one: the last vertices go where the screen puts them
    assert rig.tools.polygon_item.first_item.path().boundingRect().width() == pytest.approx(
        handle * z0 / canvas.zoom, rel=1e-6)
    for x, y in SQUARE[2:]:
        click(qtbot, rig, x, y)
    placed = rig.tools.polygon_points
    assert np.allclose(placed, SQUARE, atol=1.0 / canvas.zoom)
    key(qtbot, rig, Qt.Key.Key_Return)
    assert np.array_equal(rig.history.mask, rig.before | centre_rule(placed))


# ---------------------------------------------------------------------------------------- the window
@pytest.fixture
def tiny_folder(tmp_path):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((48, SIZE, 3)) * 255).astype(np.uint8)).save(images / "tiny.png")
    return images


def test_polygon_in_the_review_window(qtbot, random_model, tiny_folder) -> None:
    from dermaseg_app.core.editing import fill_polygon
    from dermaseg_app.gui.actions import shortcuts_html
    from dermaseg_app.gui.app import build_window

    w = build_window(SimpleNamespace(paths=[], model=str(random_model), device="cpu", masks=None))
    qtbot.addWidget(w)
    w.editing.ask_unsaved = lambda n: "discard"
    w.editing.show_error = lambda title, text: None
    w.resize(1100, 700)
    w.show()
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow, timeout=5000)
    with qtbot.waitSignal(w.view.drawn, timeout=30000, check_params_cb=lambda row, has_pred, compared: has_pred):
        assert w.open_paths([tiny_folder]) == 1
    ed, canvas = w.editing, w.canvas
    vp = canvas.viewport()
    cancel_prediction = next(a for a in w.actions() if a.text() == "Cancel Background Prediction")
    cancelled = []
    cancel_prediction.triggered.connect(lambda *_: cancelled.append(1))
    # the keys, the tool-bar button (showing the last polygon mode, the three in its menu), Edit menu
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_L, Qt.KeyboardModifier.ShiftModifier)
    assert ed.tools.tool == Tool.POLYGON_ADD and ed.actions["tool_polygon_add"].isChecked()
    assert ed.polygon_button.defaultAction() is ed.actions["tool_polygon_add"]
    qtbot.keyClick(canvas, Qt.Key.Key_D, Qt.KeyboardModifier.ShiftModifier)
    assert ed.tools.tool == Tool.POLYGON_NEW
    assert ed.polygon_button.defaultAction() is ed.actions["tool_polygon_new"]
    assert [a.text() for a in ed.polygon_button.menu().actions()] == ["Polygon add", "Polygon cut", "New polygon"]
    assert {"Polygon add", "Polygon cut", "New polygon"} <= {a.text() for a in ed.edit_menu.actions()}
    assert "(Shift+L)" in ed.actions["tool_polygon_add"].toolTip()
    sheet = shortcuts_html()
    assert "Shift+L" in sheet and "Backspace" in sheet

    def place(points):
        for x, y in points:
            pos = canvas.mapFromScene(QPointF(x, y))
            qtbot.mouseMove(vp, pos)
            qtbot.mouseClick(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)

    square = [(12.0, 10.0), (40.0, 10.0), (40.0, 30.0), (12.0, 30.0)]
    canvas.clearFocus()
    place(square[:3])
    assert canvas.hasFocus()  # a click on the image gives the canvas the keys
    assert len(ed.tools.polygon_points) == 3
    # Esc cancels the polygon, not the background prediction; without a polygon it is the window's again
    qtbot.keyClick(canvas, Qt.Key.Key_Escape)
    assert ed.tools.polygon_points == [] and cancelled == [] and ed.current_edit() is None
    qtbot.keyClick(canvas, Qt.Key.Key_Escape)
    assert cancelled == [1]
    # a new contour closed by a double click: one undo step, exactly fill_polygon's pixels
    before = w.session.current_images().prob >= int(np.ceil(w.controls.options().threshold * 255 - 1e-6))
    place(square[:3])
    pos = canvas.mapFromScene(QPointF(*square[3]))
    qtbot.mouseClick(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)
    placed = ed.tools.polygon_points
    assert len(placed) == 4 and np.allclose(placed, square, atol=1.0 / canvas.zoom)
    with qtbot.waitSignal(ed.metrics_updated, timeout=30000):
        qtbot.mouseDClick(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)
    edit = ed.current_edit()
    assert edit is not None and len(edit.history) == 1 and ed.tools.polygon_points == []
    drawn_new = fill_polygon(before, placed, "replace").mask
    assert np.array_equal(edit.mask, drawn_new) and edit.mask[20, 26] and edit.mask.sum() == 28 * 20
    assert w.session.table.index(0, 0).data().endswith("✎*")
    # undo / redo with the window's keys
    qtbot.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert np.array_equal(edit.mask, before)
    qtbot.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert np.array_equal(edit.mask, drawn_new)
    # add a triangle (closed with Enter), then cut a hole (Backspace first drops a stray vertex)
    qtbot.keyClick(canvas, Qt.Key.Key_L, Qt.KeyboardModifier.ShiftModifier)
    place([(44.0, 20.0), (60.0, 40.0), (30.0, 44.0)])
    placed = ed.tools.polygon_points
    with qtbot.waitSignal(ed.metrics_updated, timeout=30000):
        qtbot.keyClick(canvas, Qt.Key.Key_Return)
    added = fill_polygon(drawn_new, placed, "add").mask
    assert np.array_equal(edit.mask, added) and added.sum() > drawn_new.sum() and len(edit.history) == 2
    qtbot.keyClick(canvas, Qt.Key.Key_K, Qt.KeyboardModifier.ShiftModifier)
    assert ed.tools.tool == Tool.POLYGON_SUBTRACT
    hole = [(20.0, 14.0), (30.0, 14.0), (30.0, 24.0), (20.0, 24.0)]
    place(hole + [(50.0, 40.0)])
    qtbot.keyClick(canvas, Qt.Key.Key_Backspace)
    placed = ed.tools.polygon_points
    assert len(placed) == 4
    with qtbot.waitSignal(ed.metrics_updated, timeout=30000):
        qtbot.keyClick(canvas, Qt.Key.Key_Return)
    assert np.array_equal(edit.mask, fill_polygon(added, placed, "subtract").mask)
    assert not edit.mask[18, 24] and len(edit.history) == 3
    # choosing another tool mid-polygon drops it
    place(hole[:2])
    qtbot.keyClick(canvas, Qt.Key.Key_B)
    assert ed.tools.polygon_points == [] and len(edit.history) == 3
    w.close()
    assert w.session.stop_background(wait=True, timeout=10)
    w.session.wait_for_model(60)

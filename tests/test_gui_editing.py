"""Contour correction in the review window (issue 5), pytest-qt offscreen, on copies of samples."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui

from PySide6.QtCore import QPoint, Qt  # noqa: E402

from dermaseg_app.core.editing import EditOp  # noqa: E402
from dermaseg_app.core.imageio import read_mask  # noqa: E402
from dermaseg_app.gui.canvas.edit_tools import Tool  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GT = ROOT / "resources" / "samples" / "ISIC-2017_Training_Part1_GroundTruth"
SMALL = ["ISIC_0000169", "ISIC_0000299"]  # small samples (722-1028 px)
WAIT_MS = 30000


@pytest.fixture
def folder(sample_folder) -> Path:
    return sample_folder(SMALL)


def _window(qtbot, model: Path | None):
    from dermaseg_app.gui.app import build_window

    window = build_window(SimpleNamespace(paths=[], model=str(model) if model else None, device="cpu",
                                          masks=None))
    qtbot.addWidget(window)
    window.editing.ask_unsaved = lambda n: "discard"  # never a modal dialog in a test (teardown too)
    window.editing.show_error = lambda title, text: None
    window.resize(1280, 800)
    window.show()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    return window


def _close(window, answer: str = "discard") -> None:
    window.editing.ask_unsaved = lambda n: answer
    window.close()
    assert window.session.stop_background(wait=True, timeout=10)
    window.session.wait_for_model(60)


def _open(qtbot, window, folder: Path) -> None:
    with qtbot.waitSignal(window.view.drawn, timeout=WAIT_MS,
                          check_params_cb=lambda row, has_pred, compared: has_pred):
        assert window.open_paths([folder]) == len(SMALL)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _gt_hashes() -> dict[str, str]:
    return {s: _sha(GT / f"{s}_segmentation.png") for s in SMALL}


def _known_start(w) -> np.ndarray:
    """A random network's mask may be empty or everything: make it the image's top quarter (one
    undo step, "new contour") so brush and eraser strokes below change pixels."""
    ed = w.editing
    h, wd = w.session.current_images().rgb.shape[:2]
    ed.tools.set_tool(Tool.NEW_CONTOUR)
    ed.tools.lasso([(0, 0), (wd, 0), (wd, h / 4), (0, h / 4)])
    return ed.current_edit().mask.copy()


def _stroke(qtbot, w, points, erase=False):
    ed = w.editing
    ed.tools.set_tool(Tool.ERASER if erase else Tool.BRUSH)
    with qtbot.waitSignal(ed.metrics_updated, timeout=WAIT_MS):
        ed.tools.stroke(points)


def test_brush_stroke_is_one_undo_step_and_updates_metrics(qtbot, random_model, folder) -> None:
    w = _window(qtbot, random_model)
    _open(qtbot, w, folder)
    ed = w.editing
    images = w.session.current_images()
    h, wd = images.rgb.shape[:2]
    shown = w.controls.options().threshold
    before = (images.prob >= int(np.ceil(shown * 255 - 1e-6)))
    ed.tools.set_radius(20)
    # a random network's mask may be empty or everything: start from a known half
    ed.tools.set_tool(Tool.NEW_CONTOUR)
    ed.tools.lasso([(0, 0), (wd, 0), (wd, h / 4), (0, h / 4)])
    half = ed.current_edit().mask.copy()
    assert half[: h // 4].all() and not half[h // 4 + 1:].any()
    # a horizontal stroke through the middle: the capsule is painted in, nothing else changes
    y = h / 2
    _stroke(qtbot, w, [(wd * 0.2, y), (wd * 0.4, y), (wd * 0.6, y)])
    edit = ed.current_edit()
    mask = edit.mask
    yy, xx = np.mgrid[0:h, 0:wd] + 0.5
    dx = np.clip(xx, wd * 0.2, wd * 0.6) - xx
    capsule = (dx ** 2 + (yy - y) ** 2) <= 20 ** 2
    assert mask[capsule].all()
    assert np.array_equal(mask[~capsule], half[~capsule])
    assert len(edit.history) == 2 and edit.dirty  # the new contour, then the stroke: one step each
    # the canvas draws the corrected mask (our layer) instead of the prediction's overlay
    assert ed.layer.isVisible() and not w.canvas.overlay_item.isVisible()
    px = ed.layer.pixels()
    assert (px[capsule] != 0).all()
    # live metrics: the panel shows the corrected mask's scores and its agreement with the model
    from dermaseg_app.core.metrics import agreement, score

    s = score(mask, images.gt)
    assert w.metrics.values["jsc"].text() == f"{100 * s.jsc:.1f}%"
    assert f"DSC {100 * agreement(mask, edit.prediction):.1f}%" in w.metrics.note.text()
    # the case list marks the image
    assert w.session.table.index(0, 0).data().endswith("✎*")
    # eraser, then undo / redo with the keys
    _stroke(qtbot, w, [(wd * 0.3, y)], erase=True)
    assert not edit.mask[int(y), int(wd * 0.3)] and len(edit.history) == 3
    w.canvas.setFocus()
    qtbot.keyClick(w.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert np.array_equal(edit.mask, mask)
    qtbot.keyClick(w.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert np.array_equal(edit.mask, half)
    qtbot.keyClick(w.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert np.array_equal(edit.mask, before)
    assert w.session.table.index(0, 0).data() == w.session.entries[0].name  # back to the prediction
    qtbot.keyClick(w.canvas, Qt.Key.Key_Z,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert np.array_equal(edit.mask, half)
    _close(w)


def test_mouse_drag_paints_with_brush_and_bracket_keys_resize(qtbot, random_model, folder) -> None:
    w = _window(qtbot, random_model)
    _open(qtbot, w, folder)
    ed = w.editing
    qtbot.keyClick(w.canvas, Qt.Key.Key_B)
    assert ed.tools.tool == Tool.BRUSH
    r0 = ed.tools.radius
    qtbot.keyClick(w.canvas, Qt.Key.Key_BracketRight)
    assert ed.tools.radius > r0 and ed.toolbar.radius.value() == round(ed.tools.radius)
    qtbot.keyClick(w.canvas, Qt.Key.Key_E)
    assert ed.tools.tool == Tool.ERASER
    from PySide6.QtCore import QPointF
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    r1, zoom = ed.tools.radius, w.canvas.zoom
    wheel = QWheelEvent(QPointF(50, 50), QPointF(50, 50), QPoint(0, 0), QPoint(0, 120),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.ControlModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(w.canvas.viewport(), wheel)
    assert ed.tools.radius > r1 and w.canvas.zoom == zoom  # Ctrl + wheel sizes the brush, no zoom
    vp = w.canvas.viewport()
    centre = vp.rect().center()
    scene = w.canvas.mapToScene(centre)
    with qtbot.waitSignal(ed.metrics_updated, timeout=WAIT_MS):
        qtbot.mousePress(vp, Qt.MouseButton.LeftButton, pos=centre)
        qtbot.mouseMove(vp, centre + QPoint(30, 0))
        qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=centre + QPoint(30, 0))
    edit = ed.current_edit()
    assert edit is not None and len(edit.history) <= 1
    assert not edit.mask[int(scene.y()), int(scene.x())]  # erased under the cursor
    assert ed.tools.cursor_item.isVisible()  # the brush circle follows the cursor
    _close(w)


def test_edit_kept_across_images_and_saved_on_leaving(qtbot, random_model, folder) -> None:
    w = _window(qtbot, random_model)
    _open(qtbot, w, folder)
    ed = w.editing
    ed.panel.autosave.setChecked(False)
    images = w.session.current_images()
    h, wd = images.rgb.shape[:2]
    ed.tools.set_radius(15)
    _known_start(w)
    _stroke(qtbot, w, [(10, 10), (wd - 10, h - 10)])
    mask = ed.current_edit().mask.copy()
    with qtbot.waitSignal(w.view.drawn, timeout=WAIT_MS, check_params_cb=lambda r, p, c: r == 1 and p):
        w.case_list.select_row(1)
    assert ed.current_edit() is None and not ed.layer.isVisible()
    with qtbot.waitSignal(w.view.drawn, timeout=WAIT_MS, check_params_cb=lambda r, p, c: r == 0):
        w.case_list.select_row(0)
    edit = ed.current_edit()
    assert np.array_equal(edit.mask, mask) and edit.history.can_undo() and edit.dirty
    assert ed.layer.isVisible()
    # with autosave (the default) moving on saves the correction
    ed.panel.autosave.setChecked(True)
    with qtbot.waitSignal(ed.saved, timeout=5000):
        w.case_list.select_row(1)
    store = ed.book.store_for(w.session.entries[0].case.image)
    assert np.array_equal(store.load_correction(w.session.entries[0].case.image), mask)
    _close(w)


def test_ctrl_s_saves_full_resolution_png_and_never_touches_ground_truth(qtbot, random_model, folder) -> None:
    gt_folder = folder.parent / "ISIC-2017_Training_Part1_GroundTruth"
    before = {p.name: _sha(p) for p in gt_folder.iterdir()}
    w = _window(qtbot, random_model)
    _open(qtbot, w, folder)
    ed = w.editing
    images = w.session.current_images()
    h, wd = images.rgb.shape[:2]
    ed.tools.set_radius(30)
    _known_start(w)
    _stroke(qtbot, w, [(wd / 3, h / 3), (wd / 2, h / 2)])
    ed.actions["fill_holes"].trigger()
    mask = ed.current_edit().mask.copy()
    w.canvas.setFocus()
    with qtbot.waitSignal(ed.saved, timeout=5000):
        qtbot.keyClick(w.canvas, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    image = w.session.entries[0].case.image
    project_dir = folder / "dermaseg-project"
    png = project_dir / "corrections" / f"{image.stem}_segmentation.png"
    saved = read_mask(png)
    assert saved.shape == (h, wd) and np.array_equal(saved, mask)
    from PIL import Image

    assert set(np.unique(np.asarray(Image.open(png)))) <= {0, 255}
    assert (project_dir / "corrections" / f"{image.stem}.json").is_file()
    assert (project_dir / "revisions" / image.stem / "1_segmentation.png").is_file()
    assert (project_dir / "predictions" / f"{image.stem}_prediction.png").is_file()
    assert not (project_dir / "journal" / f"{image.stem}.jsonl").exists()  # cleared by the save
    assert not ed.current_edit().dirty
    assert w.session.table.index(0, 0).data().endswith("✎")
    from dermaseg_app.core.project import Project

    assert Project.open_existing(folder).record(image).edited
    assert {p.name: _sha(p) for p in gt_folder.iterdir()} == before
    _close(w)
    # reopening shows the saved correction
    w2 = _window(qtbot, random_model)
    _open(qtbot, w2, folder)
    edit = w2.editing.current_edit()
    assert edit is not None and np.array_equal(edit.mask, mask) and not edit.dirty
    assert w2.session.table.index(0, 0).data().endswith("✎")
    _close(w2)


def test_crash_journal_is_offered_for_recovery(qtbot, random_model, folder) -> None:
    w = _window(qtbot, random_model)
    _open(qtbot, w, folder)
    ed = w.editing
    images = w.session.current_images()
    h, wd = images.rgb.shape[:2]
    ed.tools.set_radius(25)
    _known_start(w)
    _stroke(qtbot, w, [(wd * 0.1, h * 0.5), (wd * 0.5, h * 0.6)])
    ed.apply(EditOp.grow(3))
    mask = ed.current_edit().mask.copy()
    image = w.session.entries[0].case.image
    journal = folder / "dermaseg-project" / "journal" / f"{image.stem}.jsonl"
    assert journal.is_file()
    # a crash: the window goes away without saving (the journal stays)
    ed.book.edits.clear()
    _close(w)
    w2 = _window(qtbot, random_model)
    _open(qtbot, w2, folder)
    from PySide6.QtWidgets import QMessageBox

    box = w2.editing.recovery_box  # the window asks (without blocking its event loop)
    assert box.isVisible() and image.name in box.text()
    box.button(QMessageBox.StandardButton.Yes).click()
    qtbot.waitUntil(lambda: w2.editing.book.get(w2.editing.image_of(0)) is not None, timeout=5000)
    edit = w2.editing.book.get(w2.editing.image_of(0))
    assert edit is not None and np.array_equal(edit.mask, mask) and edit.dirty
    assert w2.session.table.index(0, 0).data().endswith("✎*")
    assert w2.editing.layer.isVisible()
    _close(w2, answer="discard")
    assert not journal.exists()  # discarded on closing


def test_store_error_on_save_shows_message_and_keeps_edit(qtbot, random_model, folder, monkeypatch) -> None:
    from dermaseg_app.core.store import CorrectionStore, StoreError

    w = _window(qtbot, random_model)
    _open(qtbot, w, folder)
    ed = w.editing
    images = w.session.current_images()
    h, wd = images.rgb.shape[:2]
    _known_start(w)
    _stroke(qtbot, w, [(wd / 2, h / 2)])
    mask = ed.current_edit().mask.copy()

    def fail(self, image, mask, **kw):
        raise StoreError(self.correction_path(image), "No space left on device")

    monkeypatch.setattr(CorrectionStore, "save_correction", fail)
    errors = []
    ed.show_error = lambda title, text: errors.append(text)
    assert not ed.save_current()
    assert errors and "No space left on device" in errors[0] and "kept in memory" in errors[0]
    assert any("No space left on device" in m for m in w.notice.messages)
    edit = ed.current_edit()
    assert edit.dirty and np.array_equal(edit.mask, mask)
    monkeypatch.undo()
    assert ed.save_current() and not ed.current_edit().dirty
    _close(w)


def test_lasso_ops_reset_and_close_asks(qtbot, random_model, folder) -> None:
    w = _window(qtbot, random_model)
    _open(qtbot, w, folder)
    ed = w.editing
    images = w.session.current_images()
    h, wd = images.rgb.shape[:2]
    square = [(wd * 0.1, h * 0.1), (wd * 0.3, h * 0.1), (wd * 0.3, h * 0.3), (wd * 0.1, h * 0.3)]
    ed.tools.set_tool(Tool.NEW_CONTOUR)
    ed.tools.lasso(square)
    mask = ed.current_edit().mask
    ys, xs = np.nonzero(mask)
    assert xs.min() >= wd * 0.1 - 1 and xs.max() <= wd * 0.3 and ys.min() >= h * 0.1 - 1
    area = int(mask.sum())
    ed.tools.set_tool(Tool.LASSO_SUBTRACT)
    ed.tools.lasso([(wd * 0.2, h * 0.05), (wd * 0.35, h * 0.05), (wd * 0.35, h * 0.35), (wd * 0.2, h * 0.35)])
    assert ed.current_edit().mask.sum() < area
    ed.panel.pixels.setValue(4)
    before = int(ed.current_edit().mask.sum())
    ed.actions["grow"].trigger()
    assert ed.current_edit().mask.sum() > before
    ed.actions["reset"].trigger()
    pred = ed.current_edit().prediction
    assert np.array_equal(ed.current_edit().mask, pred)
    ed.actions["undo"].trigger()
    assert not np.array_equal(ed.current_edit().mask, pred)
    # closing with unsaved edits asks; cancel keeps the window
    asked = []
    ed.ask_unsaved = lambda n: asked.append(n) or "cancel"
    w.close()
    assert w.isVisible() and asked == [1]
    assert w.open_paths([folder]) == 0 and asked == [1, 1]  # opening a folder asks too
    assert ed.current_edit() is not None and ed.current_edit().dirty
    _close(w, answer="discard")


def test_export_dialog_writes_the_project(qtbot, random_model, folder, tmp_path) -> None:
    w = _window(qtbot, random_model)
    _open(qtbot, w, folder)
    ed = w.editing
    _known_start(w)
    assert ed.save_current()
    ed.open_export()
    dialog = ed.export_dialog
    dialog.out.setText(str(tmp_path / "out"))
    dialog.hd95.setChecked(False)
    with qtbot.waitSignal(dialog.finished_export, timeout=WAIT_MS) as blocker:
        dialog.start()
    summary = blocker.args[0]
    assert not isinstance(summary, Exception), summary
    assert summary.corrected == 1 and (tmp_path / "out" / "manifest.csv").is_file()
    assert "Exported" in dialog.message.text()
    dialog.close()
    _close(w)


def test_vertex_editing_moves_inserts_and_deletes(qtbot, random_model, folder) -> None:
    w = _window(qtbot, random_model)
    _open(qtbot, w, folder)
    ed = w.editing
    h, wd = w.session.current_images().rgb.shape[:2]
    ed.tools.set_tool(Tool.NEW_CONTOUR)
    ed.tools.lasso([(100, 100), (300, 100), (300, 300), (100, 300)])
    qtbot.keyClick(w.canvas, Qt.Key.Key_O)
    assert ed.tools.tool == Tool.VERTICES
    geom = ed.tools._geom
    from dermaseg_app.core.editing import nearest_edge, nearest_vertex, vertices

    assert len(vertices(geom)) == 4 and not ed.tools.handles_item.path().isEmpty()
    ref, dist = nearest_vertex(geom, (300, 300))
    assert dist < 1e-6
    steps = len(ed.current_edit().history)
    ed.tools.vertex_drag("move", ref, (400, 400))  # one corner pulled out
    mask = ed.current_edit().mask
    assert mask[350, 350] and len(ed.current_edit().history) == steps + 1
    # insert on the top edge and pull it up
    edge, _d, at = nearest_edge(ed.tools._geom, (200, 100))
    ed.tools.vertex_drag("insert", edge, (200, 40))
    assert ed.current_edit().mask[60, 200] and len(vertices(ed.tools._geom)) == 5
    # delete that vertex again (Shift+click through the mouse)
    vp = w.canvas.viewport()
    pos = w.canvas.mapFromScene(200, 40)
    qtbot.mouseClick(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier, pos)
    assert not ed.current_edit().mask[60, 200] and len(vertices(ed.tools._geom)) == 4
    ed.undo()
    assert ed.current_edit().mask[60, 200]
    _close(w)


def test_read_only_folder_saves_into_the_chosen_project_folder(qtbot, random_model, folder, tmp_path,
                                                               monkeypatch) -> None:
    from PySide6.QtWidgets import QFileDialog

    from dermaseg_app.core import project as project_mod

    real_open = project_mod.Project.open_for.__func__

    def open_for(cls, image_folder, project_dir=None):
        if project_dir is None:
            raise project_mod.ProjectNotWritable(Path(image_folder) / "dermaseg-project",
                                                 "the file system is read-only")
        return real_open(cls, image_folder, project_dir)

    monkeypatch.setattr(project_mod.Project, "open_for", classmethod(open_for))
    elsewhere = tmp_path / "my-project"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(elsewhere))
    w = _window(qtbot, random_model)
    _open(qtbot, w, folder)
    ed = w.editing
    mask = _known_start(w)
    assert ed.current_edit().store is None  # kept in memory only, and the panel says so
    assert "read-only" in ed.panel.state.text()
    assert ed.save_current()
    saved = read_mask(elsewhere / "corrections" / f"{SMALL[0]}_segmentation.png")
    assert np.array_equal(saved, mask)
    assert not (folder / "dermaseg-project").exists()
    _close(w)


def test_shortcut_sheet_lists_editing_keys_without_clashes(qtbot, random_model) -> None:
    from dermaseg_app.gui.actions import shortcuts_html
    from dermaseg_app.gui.shortcuts import EDIT_SHORTCUTS

    w = _window(qtbot, random_model)
    sheet = shortcuts_html()
    for s in EDIT_SHORTCUTS:
        assert s.keys[0] in sheet
    seen: dict[str, str] = {}
    for act in w.actions():
        for seq in act.shortcuts():
            key = seq.toString()
            assert key not in seen, f"{key} is used by {seen[key]!r} and {act.text()!r}"
            seen[key] = act.text()
    assert "Brush" in w.editing.actions["tool_brush"].toolTip() and "(B)" in w.editing.actions["tool_brush"].toolTip()
    _close(w)


def test_failing_journal_is_reported_and_the_edit_goes_on(qtbot, random_model, folder, monkeypatch) -> None:
    from dermaseg_app.core.store import CorrectionStore, StoreError

    def fail(self, image, entry):
        raise StoreError(self.journal_path(image), "Read-only file system")

    monkeypatch.setattr(CorrectionStore, "append_journal", fail)
    w = _window(qtbot, random_model)
    _open(qtbot, w, folder)
    ed = w.editing
    mask = _known_start(w)
    assert np.array_equal(ed.current_edit().mask, mask) and ed.current_edit().dirty
    assert "not journalled" in ed.panel.state.text() and "Read-only file system" in ed.panel.state.text()
    assert any("Read-only file system" in m for m in w.notice.messages)
    monkeypatch.undo()
    assert ed.save_current()
    assert ed.panel.state.text().startswith("Corrected and saved")
    _close(w)


def test_mask_layer_region_updates_match_a_full_recolour(qtbot) -> None:
    from dermaseg_app.core.editing import BrushStroke
    from dermaseg_app.gui.canvas.mask_layer import MaskLayer

    rng = np.random.default_rng(0)
    h, wd = 1700, 2100  # larger than the preview: both buffers are updated
    mask = np.zeros((h, wd), bool)
    gt = rng.random((h, wd)) > 0.5
    layer = MaskLayer()
    layer.set_mask(mask, gt, 0.5, compare=True)
    stroke = BrushStroke(mask, 37.0)
    for x, y in [(100, 100), (900, 400), (1500, 1600), (2099, 10)]:
        layer.set_live_mask(stroke.working)
        layer.update_region(stroke.add_point(x, y))
    fresh = MaskLayer()
    fresh.set_mask(stroke.working, gt, 0.5, compare=True)
    assert np.array_equal(layer.pixels(), fresh.pixels())
    assert np.array_equal(layer.pixels(preview=True), fresh.pixels(preview=True))
    assert layer.pixels(preview=True).shape[1] < wd

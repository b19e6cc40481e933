"""The Measurements panel, the folder's scale (Set Scale, ruler) and the follow-up dialog in the
review window (issue 15), pytest-qt offscreen, on copies of the bundled samples."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui

from PySide6.QtCore import QPoint, Qt  # noqa: E402

from dermaseg_app.app.measurements import format_area  # noqa: E402
from dermaseg_app.core.measure import measure  # noqa: E402
from dermaseg_app.gui.canvas.edit_tools import Tool  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
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
    window.editing.ask_unsaved = lambda n: "discard"
    window.editing.show_error = lambda title, text: None
    errors: list[str] = []
    window.measurements.show_error = lambda title, text: errors.append(text)
    window.measurement_errors = errors
    window.resize(1280, 860)
    window.show()
    return window


def _close(window) -> None:
    window.editing.ask_unsaved = lambda n: "discard"
    window.close()
    assert window.session.stop_background(wait=True, timeout=10)
    window.session.wait_for_model(60)


def _open(qtbot, window, paths: list[Path], n: int) -> None:
    with qtbot.waitSignal(window.view.drawn, timeout=WAIT_MS,
                          check_params_cb=lambda row, has_pred, compared: has_pred):
        assert window.open_paths(paths) == n


def _values(w) -> dict[str, str]:
    return {k: v.text() for k, v in w.measurements.panel.values.items()}


def _settled(qtbot, w) -> dict[str, str]:
    """The panel once the colour map has arrived (colours measured)."""
    qtbot.waitUntil(lambda: w.measurements.current is not None
                    and _values(w)["colours"] != "computing…", timeout=WAIT_MS)
    return _values(w)


def test_panel_shows_the_ground_truths_measurements_and_the_disclaimer(qtbot, random_model, folder) -> None:
    w = _window(qtbot, random_model)
    _open(qtbot, w, [folder], len(SMALL))
    ms = w.measurements
    values = _settled(qtbot, w)
    gt = w.session.current_images().gt
    assert values["source"] == "the ground truth"
    assert values["scale"] == "uncalibrated: pixels"
    assert values["area"] == format_area(float(gt.sum()), "px")
    m = measure(gt, w.session.current_images().rgb)
    assert values["max_diameter"] == f"{m.max_diameter:.1f} px"
    assert values["colours"] == ", ".join(m.colours) and values["colours"]
    assert ms.panel.disclaimer.text() == "Research aid, not a diagnosis."
    assert ms.panel.disclaimer.isVisible() and w.measurements_dock.isVisible()
    # the lines on the canvas: off by default, drawn when asked
    assert ms.line_paths() == {}
    ms.actions["show_lines"].trigger()
    paths = ms.line_paths()
    assert set(paths) == {"axes", "max", "min"}
    length = paths["max"].length()
    assert length == pytest.approx(m.max_diameter_px, rel=1e-6)
    # another image: measured at once
    w.case_list.step(1)
    qtbot.waitUntil(lambda: w.session.current_images() is not None
                    and _values(w)["area"] == format_area(float(w.session.current_images().gt.sum()), "px"),
                    timeout=WAIT_MS)
    _close(w)


def test_editing_updates_the_panel_after_the_throttle(qtbot, random_model, folder) -> None:
    w = _window(qtbot, random_model)
    _open(qtbot, w, [folder], len(SMALL))
    ed, ms = w.editing, w.measurements
    _settled(qtbot, w)
    h, wd = w.session.current_images().shape
    ed.tools.set_tool(Tool.NEW_CONTOUR)
    ed.tools.lasso([(0, 0), (wd, 0), (wd, h / 4), (0, h / 4)])
    quarter = ed.current_edit().mask
    qtbot.waitUntil(lambda: _values(w)["source"] == "the correction being edited"
                    and _values(w)["area"] == format_area(float(quarter.sum()), "px"), timeout=5000)
    before = ed.current_edit().mask.sum()
    # a brush stroke drawn with the mouse: the panel follows while the button is held (coalesced)
    ed.tools.set_tool(Tool.BRUSH)
    ed.tools.set_radius(20)
    vp = w.canvas.viewport()
    centre = vp.rect().center()
    qtbot.mousePress(vp, Qt.MouseButton.LeftButton, pos=centre)
    qtbot.mouseMove(vp, centre + QPoint(40, 0))
    qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=centre + QPoint(40, 0))
    assert ms._timer.isActive()  # not measured at once: at most every THROTTLE_MS
    after = ed.current_edit().mask
    assert after.sum() > before
    qtbot.waitUntil(lambda: _values(w)["area"] == format_area(float(after.sum()), "px"), timeout=5000)
    _close(w)


def test_ruler_sets_the_folders_scale_which_persists(qtbot, random_model, folder) -> None:
    w = _window(qtbot, random_model)
    _open(qtbot, w, [folder], len(SMALL))
    ms = w.measurements
    px_values = _settled(qtbot, w)
    asked = []
    ms.ask_length = lambda pixels: asked.append(pixels) or 5.0
    # the ruler with the mouse: a drag across the "scale bar", then its length in mm
    ms.actions["ruler"].trigger()
    vp = w.canvas.viewport()
    a, b = vp.rect().center() - QPoint(60, 0), vp.rect().center() + QPoint(60, 0)
    qtbot.mousePress(vp, Qt.MouseButton.LeftButton, pos=a)
    qtbot.mouseMove(vp, b)
    qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=b)
    pa, pb = w.canvas.mapToScene(a), w.canvas.mapToScene(b)
    pixels = abs(pb.x() - pa.x())
    assert asked == [pytest.approx(pixels)]
    assert not ms.actions["ruler"].isChecked()
    mm_per_px = 5.0 / pixels
    values = _values(w)
    assert values["scale"] == f"{mm_per_px:.4g} mm/px (ruler, set for the folder)"
    gt = w.session.current_images().gt
    assert values["area"] == format_area(float(gt.sum()) * mm_per_px ** 2, "mm")
    assert values["max_diameter"].endswith(" mm") and px_values["max_diameter"].endswith(" px")
    project = w.session.projects.project_for(w.session.entries[0].case.image)
    data = json.loads(project.path.read_text(encoding="utf-8"))
    assert data["calibration"]["source"] == "ruler"
    assert data["calibration"]["mm_per_px"] == pytest.approx(mm_per_px)
    # Set Scale… replaces it
    ms.ask_scale = lambda current: 0.02
    ms.open_set_scale()
    assert _values(w)["scale"] == "0.02 mm/px (set for the folder)"
    _close(w)
    # reopened: the folder's scale is still there
    w2 = _window(qtbot, random_model)
    _open(qtbot, w2, [folder], len(SMALL))
    qtbot.waitUntil(lambda: _values(w2)["scale"] == "0.02 mm/px (set for the folder)"
                    and _values(w2)["area"].endswith(" mm²"), timeout=5000)
    w2.measurements.ask_scale = lambda current: 0.0  # 0 removes it
    w2.measurements.open_set_scale()
    assert _values(w2)["scale"] == "uncalibrated: pixels"
    _close(w2)


def test_follow_up_dialog_shows_the_change(qtbot, random_model, folder) -> None:
    w = _window(qtbot, random_model)
    _open(qtbot, w, [folder], len(SMALL))
    ms = w.measurements
    _settled(qtbot, w)
    # one image selected: refused with a message
    assert ms.open_follow_up() is None and "two images" in w.measurement_errors[-1]
    w.case_list.table.selectAll()
    dialog = ms.open_follow_up()
    assert dialog is not None and dialog.isVisible()
    qtbot.addWidget(dialog)
    rows = [w.case_list.selected_rows()[0], w.case_list.selected_rows()[1]]
    gts = [w.session.images.get(r).gt if w.session.images.get(r) is not None else None for r in rows]
    from dermaseg_app.core.imageio import read_mask

    gts = [g if g is not None else read_mask(w.session.entries[r].case.ground_truth)
           for g, r in zip(gts, rows, strict=True)]
    a0, a1 = float(gts[0].sum()), float(gts[1].sum())
    assert dialog.cell(0, 0) == "Area"
    assert dialog.cell(0, 1) == format_area(a0, "px") and dialog.cell(0, 2) == format_area(a1, "px")
    assert dialog.cell(0, 3) == f"{100 * (a1 - a0) / a0:+.1f}%"
    assert "uncalibrated" in dialog.note.text()  # pixels: only at the same magnification
    # both calibrated (the same folder): the change in mm, no warning
    ms.ask_scale = lambda current: 0.02
    ms.open_set_scale()
    dialog2 = ms.open_follow_up()
    qtbot.addWidget(dialog2)
    assert dialog2.cell(0, 1).endswith("mm²") and dialog2.cell(0, 3) == f"{100 * (a1 - a0) / a0:+.1f}%"
    assert dialog2.result.comparable and not dialog2.note.isVisibleTo(dialog2)
    dialog.close()
    dialog2.close()
    _close(w)


def test_follow_up_refuses_when_only_one_image_is_calibrated(qtbot, random_model, folder, tmp_path) -> None:
    later = tmp_path / "later"
    later.mkdir()
    shutil.copy(next(folder.glob(f"{SMALL[1]}.*")), later / "later.jpg")  # no ground truth: its prediction
    w = _window(qtbot, random_model)
    _open(qtbot, w, [folder, later], len(SMALL) + 1)
    ms = w.measurements
    ms.ask_scale = lambda current: 0.02
    ms.open_set_scale()  # the first folder's scale only
    rows = {e.case.image.name: i for i, e in enumerate(w.session.entries)}
    qtbot.waitUntil(lambda: w.session.probs.get(rows["later.jpg"]) is not None, timeout=WAIT_MS)
    dialog = ms.open_follow_up([rows[f"{SMALL[0]}.jpg"], rows["later.jpg"]])
    assert dialog is not None
    qtbot.addWidget(dialog)
    assert not dialog.result.comparable
    assert all(dialog.cell(r, 3) == "—" for r in range(dialog.table.rowCount()))
    assert "Not comparable" in dialog.note.text() and "first image is calibrated" in dialog.note.text()
    assert dialog.cell(0, 1).endswith("mm²") and dialog.cell(0, 2).endswith("px²")
    info = dialog.findChild(type(dialog.note), "followup_info_1")
    assert "the model's prediction" in info.text() and "uncalibrated" in info.text()
    dialog.close()
    _close(w)


def test_export_passes_the_folders_scale(qtbot, folder, tmp_path) -> None:
    import csv
    import threading

    from dermaseg_app.core.project import Project
    from dermaseg_app.gui.export_dialog import run_export

    project = Project.open_for(folder)
    project.set_calibration(0.02, "ruler")
    from dermaseg_app.core.imageio import image_size
    from dermaseg_app.core.store import CorrectionStore

    image = min(folder.glob("*.jpg"))
    wd, h = image_size(image)
    mask = np.zeros((h, wd), bool)
    mask[h // 4: h // 2, wd // 4: wd // 2] = True
    CorrectionStore(project).save_correction(image, mask)
    job = SimpleNamespace(progress=lambda i, n: None, cancel_event=threading.Event(), cancelled=False)
    run_export(job, project, tmp_path / "out", False, False, False)
    with open(tmp_path / "out" / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all(r["unit"] == "mm" and r["calibration_source"] == "ruler" for r in rows if r["area"])
    measured = [r for r in rows if r["area"]]
    assert measured
    assert np.isclose(float(measured[0]["mm_per_px"]), 0.02)
    assert np.isclose(float(measured[0]["area"]), mask.sum() * 0.02 ** 2)
    project.close()

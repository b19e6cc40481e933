"""The review loop (issue 12): notes that are never lost, journals that only ask when there is
something to restore, a model switch that keeps the list's place, and the fast review keys.

pytest-qt, offscreen, on tiny generated 48x64 images (with ground truth) and a random 32 px model.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui

from PySide6.QtCore import QItemSelectionModel, Qt  # noqa: E402

from dermaseg_app.core.project import ReviewStatus  # noqa: E402
from dermaseg_app.gui.canvas.edit_tools import Tool  # noqa: E402
from dermaseg_app.gui.widgets.review_panel import NOTE_SAVE_DELAY_MS  # noqa: E402

WAIT_MS = 30000
N_IMAGES = 4


def tiny_folder(root: Path, n: int = N_IMAGES) -> Path:
    """``root/images/lesion_<i>.png`` (48x64 RGB, a dark disc on skin) with ``root/masks/`` ground
    truth; returns the images folder."""
    from PIL import Image

    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    yy, xx = np.mgrid[0:48, 0:64]
    for i in range(n):
        disc = (yy - 24) ** 2 + (xx - 20 - 6 * i) ** 2 <= (10 + i) ** 2
        rgb = np.full((48, 64, 3), (205, 160, 140), np.uint8)
        rgb[disc] = (90, 50, 40)
        Image.fromarray(rgb).save(images / f"lesion_{i}.png")
        Image.fromarray((disc * 255).astype(np.uint8)).save(masks / f"lesion_{i}.png")
    return images


@pytest.fixture
def folder(tmp_path) -> Path:
    return tiny_folder(tmp_path / "data")


@pytest.fixture(scope="module")
def second_model(tmp_path_factory) -> Path:
    """Another random 32 px SLSNet with its own name: a model to switch to."""
    import torch

    from dermaseg_app.ml.registry import build_generator
    from dermaseg_app.ml.weights import ModelInfo, save_model

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("model2") / "other.safetensors"
    net = build_generator("slsnet", {"input_size": 32})
    save_model(path, net, ModelInfo(name="other-test", version="0.0.2", arch="slsnet",
                                    config={"input_size": 32}, input_size=32, threshold=0.5))
    return path


def _window(qtbot, model: Path | None):
    from dermaseg_app.gui.app import build_window

    window = build_window(SimpleNamespace(paths=[], model=str(model) if model else None, device="cpu",
                                          masks=None))
    qtbot.addWidget(window)
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
        assert window.open_paths([folder]) == N_IMAGES


def _record(folder: Path, name: str) -> dict:
    path = folder / "dermaseg-project" / "project.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return data["images"].get(name, {})


# ---------------------------------------------------------------------------------------- 1. notes
def test_a_note_is_saved_after_the_pause_without_changing_image(qtbot, random_model, folder) -> None:
    w = _window(qtbot, random_model)
    _open(qtbot, w, folder)
    w.review.note.setFocus()
    qtbot.keyClicks(w.review.note, "atypical network")
    # the user stops typing and stays on the image: the timer's own timeout saves it
    qtbot.waitUntil(lambda: _record(folder, "lesion_0.png").get("note") == "atypical network",
                    timeout=NOTE_SAVE_DELAY_MS + 5000)
    assert w.review.saved_label.text() == "Note saved"
    assert not w.review.note_pending
    _close(w)


def test_a_note_is_saved_on_focus_change_image_change_and_close(qtbot, random_model, folder) -> None:
    w = _window(qtbot, random_model)
    _open(qtbot, w, folder)
    w.review.note.setFocus()
    qtbot.keyClicks(w.review.note, "focus")
    w.canvas.setFocus()  # clicking the image: the note field loses the focus
    qtbot.waitUntil(lambda: not w.review.note.hasFocus(), timeout=2000)
    assert _record(folder, "lesion_0.png").get("note") == "focus"
    # typed, then at once the next image (well within the pause)
    w.review.note.setFocus()
    qtbot.keyClicks(w.review.note, " and more")
    w.review.note.setFocus()  # (still in the field: only the image change can save it)
    w.case_list.select_row(1)
    assert _record(folder, "lesion_0.png").get("note") == "focus and more"
    assert w.session.entries[0].note == "focus and more" and w.session.entries[1].note == ""
    assert w.review.note.toPlainText() == ""
    assert w.review.saved_label.text() == ""  # the previous image's "Note saved" is not shown here
    # typed, then the window closes at once
    w.review.note.setFocus()
    qtbot.keyClicks(w.review.note, "last words")
    _close(w)
    assert _record(folder, "lesion_1.png").get("note") == "last words"


def test_a_note_typed_just_before_opening_another_folder_is_saved(qtbot, random_model, folder,
                                                                   tmp_path) -> None:
    other = tiny_folder(tmp_path / "other", n=2)
    w = _window(qtbot, random_model)
    _open(qtbot, w, folder)
    w.review.note.setFocus()
    qtbot.keyClicks(w.review.note, "before the switch")
    with qtbot.waitSignal(w.view.drawn, timeout=WAIT_MS, check_params_cb=lambda r, p, c: p):
        assert w.open_paths([other]) == 2  # e.g. File > Recent Folders, at once
    assert _record(folder, "lesion_0.png").get("note") == "before the switch"
    assert _record(other, "lesion_0.png").get("note") is None and w.review.note.toPlainText() == ""
    _close(w)


def test_status_saved_label_belongs_to_its_image(qtbot, random_model, folder) -> None:
    w = _window(qtbot, random_model)
    _open(qtbot, w, folder)
    w.canvas.setFocus()
    qtbot.keyClick(w, Qt.Key.Key_A)
    assert w.review.saved_label.text() == "Saved: accepted"
    w.case_list.select_row(2)
    assert w.review.saved_label.text() == ""
    _close(w)


# ------------------------------------------------------------------- 3. journals and a model switch
def _start_edit(w) -> np.ndarray:
    """A correction of the current image: the left half becomes lesion (one undo step)."""
    ed = w.editing
    h, wd = w.session.current_images().rgb.shape[:2]
    ed.tools.set_tool(Tool.NEW_CONTOUR)
    ed.tools.lasso([(0, 0), (wd / 2, 0), (wd / 2, h), (0, h)])
    return ed.current_edit().mask.copy()


def test_reset_to_prediction_leaves_no_journal_and_no_recovery_question(qtbot, random_model, folder) -> None:
    w = _window(qtbot, random_model)
    _open(qtbot, w, folder)
    ed = w.editing
    _start_edit(w)
    image = w.session.entries[0].case.image
    journal = folder / "dermaseg-project" / "journal" / f"{image.stem}.jsonl"
    assert journal.is_file() and ed.current_edit().dirty
    ed.actions["reset"].trigger()
    edit = ed.current_edit()
    assert not edit.dirty and np.array_equal(edit.mask, edit.prediction)
    assert not journal.exists()  # nothing unsaved: nothing to offer after a crash
    # editing again after the reset journals (and restores) correctly
    mask = _start_edit(w)
    assert journal.is_file()
    recovered = ed.book.store_for(image).recover(image.stem)
    assert np.array_equal(recovered, mask)
    ed.actions["reset"].trigger()
    asked = []
    ed.ask_unsaved = lambda n: asked.append(n) or "discard"
    w.close()  # Ctrl+Q: nothing unsaved, so nothing is asked and nothing is left behind
    assert asked == [] and not journal.exists()
    w.session.stop_background(wait=True, timeout=10)
    w.session.wait_for_model(60)
    w2 = _window(qtbot, random_model)
    questions = []
    w2.editing.ask_recovery = lambda names: questions.append(names) or True
    _open(qtbot, w2, folder)
    assert questions == [] and w2.editing.book.get(w2.editing.image_of(0)) is None
    _close(w2)


def test_a_journal_that_changes_nothing_is_removed_without_asking(qtbot, random_model, folder) -> None:
    w = _window(qtbot, random_model)
    _open(qtbot, w, folder)
    ed = w.editing
    _start_edit(w)
    image = w.session.entries[0].case.image
    store = ed.book.store_for(image)
    journal = store.journal_path(image)
    # a crash right after an undo left entries that replay back to the model's mask
    ed.actions["undo"].trigger()
    store.append_journal(image, {"op": "undo", "params": {}, "bbox": [0, 0, 1, 1],
                                 "bits": _bits_of(ed.current_edit().mask, (0, 0, 1, 1))})
    assert journal.is_file()
    ed.book.edits.clear()  # the crash: the window goes without tidying up
    _close(w)
    w2 = _window(qtbot, random_model)
    questions = []
    w2.editing.ask_recovery = lambda names: questions.append(names) or True
    _open(qtbot, w2, folder)
    assert questions == [] and not journal.exists()
    _close(w2)


def _bits_of(mask: np.ndarray, box: tuple[int, int, int, int]) -> str:
    from dermaseg_app.core.history import encode_patch

    x0, y0, x1, y1 = box
    return encode_patch(mask[y0:y1, x0:x1])


def test_a_model_switch_shows_the_new_models_mask_and_restores_nothing(
        qtbot, random_model, second_model, folder) -> None:
    w = _window(qtbot, random_model)
    _open(qtbot, w, folder)
    ed = w.editing
    _start_edit(w)
    ed.actions["reset"].trigger()  # back at the first model's mask, never saved
    old_prediction = ed.current_edit().prediction.copy()
    with qtbot.waitSignal(w.session.model_ready, timeout=WAIT_MS):
        w.use_model(second_model)
    assert ed.current_edit() is None  # the unchanged correction no longer hides the new mask
    qtbot.waitUntil(lambda: w.session.current_images() is not None
                    and w.session.current_images().prob is not None, timeout=WAIT_MS)
    image = w.session.entries[0].case.image
    # a correction started now starts from (and resets to) the new model's mask
    w.controls.threshold.setValue(50)
    from dermaseg_app.gui.canvas.overlay import threshold_u8

    new_mask = threshold_u8(w.session.current_images().prob, 0.5)
    _start_edit(w)
    assert np.array_equal(ed.current_edit().prediction, new_mask)
    assert np.array_equal(ed.book.store_for(image).load_prediction(image), new_mask)
    ed.actions["reset"].trigger()
    assert np.array_equal(ed.current_edit().mask, new_mask)
    assert not np.array_equal(new_mask, old_prediction)  # (else this test would prove nothing)
    asked = []
    ed.ask_unsaved = lambda n: asked.append(n) or "discard"
    w.close()
    assert asked == []
    w.session.stop_background(wait=True, timeout=10)
    w.session.wait_for_model(60)
    w2 = _window(qtbot, second_model)
    questions = []
    w2.editing.ask_recovery = lambda names: questions.append(names) or True
    _open(qtbot, w2, folder)
    assert questions == []
    _close(w2)


def test_a_real_unsaved_correction_is_still_offered_after_a_crash(qtbot, random_model, folder) -> None:
    w = _window(qtbot, random_model)
    _open(qtbot, w, folder)
    mask = _start_edit(w)
    w.editing.book.edits.clear()  # crash
    _close(w)
    w2 = _window(qtbot, random_model)
    questions = []
    w2.editing.ask_recovery = lambda names: questions.append(names) or True
    _open(qtbot, w2, folder)
    assert questions == [["lesion_0.png"]]
    edit = w2.editing.book.get(w2.editing.image_of(0))
    assert edit is not None and edit.dirty and np.array_equal(edit.mask, mask)
    asked = []
    w2.editing.ask_unsaved = lambda n: asked.append(n) or "discard"
    w2.close()
    assert asked == [1]  # the restored correction is unsaved: closing asks
    w2.session.stop_background(wait=True, timeout=10)
    w2.session.wait_for_model(60)


# ----------------------------------------------------------------- 4. the list keeps its place
def test_use_this_model_keeps_the_current_image_and_n_goes_on_from_it(
        qtbot, random_model, second_model, folder) -> None:
    w = _window(qtbot, random_model)
    _open(qtbot, w, folder)
    with qtbot.waitSignal(w.view.drawn, timeout=WAIT_MS, check_params_cb=lambda r, p, c: r == 2):
        w.case_list.select_row(2)
    with qtbot.waitSignal(w.session.model_ready, timeout=WAIT_MS):
        w.use_model(second_model)
    assert w.case_list.current_row() == 2 and w.session.current == 2
    assert w.case_list.table.selectionModel().isRowSelected(
        w.case_list.proxy.mapFromSource(w.session.table.index(2, 0)).row())
    w.canvas.setFocus()
    qtbot.keyClick(w, Qt.Key.Key_N)
    assert w.session.current == 3
    qtbot.waitUntil(lambda: all(e.predicted for e in w.session.entries), timeout=WAIT_MS)
    assert w.case_list.current_row() == 3
    _close(w)


# ------------------------------------------------------------------------------- 2. File > Export
def test_export_writes_every_image_not_excluded_with_the_current_model(
        qtbot, random_model, second_model, folder, tmp_path) -> None:
    import csv

    from dermaseg_app.core.imageio import read_mask
    from dermaseg_app.gui.canvas.overlay import threshold_u8

    w = _window(qtbot, random_model)
    _open(qtbot, w, folder)
    s = w.session
    s.set_status(0, ReviewStatus.ACCEPTED)  # accepted, no correction
    with qtbot.waitSignal(w.view.drawn, timeout=WAIT_MS, check_params_cb=lambda r, p, c: r == 1 and p):
        w.case_list.select_row(1)
    corrected = _start_edit(w)
    assert w.editing.save_current()
    s.set_status(2, ReviewStatus.EXCLUDED)
    # a fine-tuned model becomes active; nothing of it is predicted for row 3 before the export
    with qtbot.waitSignal(s.model_ready, timeout=WAIT_MS):
        w.use_model(second_model)
    s.cancel_predictions()
    w.editing.open_export()
    dialog = w.editing.export_dialog
    assert "other-test 0.0.2" in dialog.model_label.text()
    out = tmp_path / "export"
    dialog.out.setText(str(out))
    dialog.hd95.setChecked(False)
    with qtbot.waitSignal(dialog.finished_export, timeout=WAIT_MS) as blocker:
        dialog.start()
    summary = blocker.args[0]
    assert not isinstance(summary, Exception), summary
    assert (summary.images, summary.masks, summary.corrected, summary.from_model, summary.excluded) == (4, 3, 1, 2, 1)
    with open(out / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = {r["stem"]: r for r in csv.DictReader(fh)}
    assert [rows[f"lesion_{i}"]["mask_source"] for i in range(4)] == ["model", "correction", "", "model"]
    assert rows["lesion_0"]["model_name"] == "other-test" and rows["lesion_1"]["model_name"] == "random-test"
    assert np.array_equal(read_mask(out / "masks" / "lesion_1_segmentation.png"), corrected)
    assert not (out / "masks" / "lesion_2_segmentation.png").exists()
    for i in (0, 3):  # the new model's masks (from its cache, or predicted for the export)
        prob = s.cache.load_u8(s.entries[i].case.image)
        assert prob is not None
        assert np.array_equal(read_mask(out / "masks" / f"lesion_{i}_segmentation.png"),
                              threshold_u8(prob, s.threshold))
    assert "Exported 4 images" in dialog.message.text()
    dialog.close()
    _close(w)


# ------------------------------------------------------------------------ 9. speed of review
def test_accept_and_next_and_next_unreviewed_keys(qtbot, random_model, folder) -> None:
    w = _window(qtbot, random_model)
    _open(qtbot, w, folder)
    s = w.session
    w.canvas.setFocus()
    qtbot.keyClick(w, Qt.Key.Key_A, Qt.KeyboardModifier.ShiftModifier)  # accept and next
    assert s.entries[0].status == ReviewStatus.ACCEPTED and s.current == 1
    assert _record(folder, "lesion_0.png")["status"] == "accepted"
    s.set_status(2, ReviewStatus.REJECTED)
    qtbot.keyClick(w, Qt.Key.Key_N, Qt.KeyboardModifier.ShiftModifier)  # next unreviewed: skips 2
    assert s.current == 3
    qtbot.keyClick(w, Qt.Key.Key_N, Qt.KeyboardModifier.ShiftModifier)  # wraps to the top: 1
    assert s.current == 1
    # with the "Unreviewed" filter, accept-and-next goes to the image that followed
    w.case_list.filter.setCurrentIndex(w.case_list.filter.findData("unreviewed"))
    assert w.case_list.view_order() == [1, 3]
    w.case_list.select_row(1)
    qtbot.keyClick(w, Qt.Key.Key_A, Qt.KeyboardModifier.ShiftModifier)
    assert s.entries[1].status == ReviewStatus.ACCEPTED and s.current == 3
    assert w.case_list.view_order() == [3]
    qtbot.keyClick(w, Qt.Key.Key_A, Qt.KeyboardModifier.ShiftModifier)  # the last one
    assert s.entries[3].status == ReviewStatus.ACCEPTED
    assert "last image" in w.statusBar().currentMessage()
    w.case_list.filter.setCurrentIndex(0)
    qtbot.keyClick(w, Qt.Key.Key_N, Qt.KeyboardModifier.ShiftModifier)
    assert "Every image" in w.statusBar().currentMessage()
    _close(w)


def test_a_status_key_sets_every_selected_row(qtbot, random_model, folder) -> None:
    w = _window(qtbot, random_model)
    _open(qtbot, w, folder)
    s = w.session
    table = w.case_list.table
    w.case_list.select_row(1)
    flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
    for row in (2, 3):  # Ctrl+click in the list
        table.selectionModel().select(w.case_list.proxy.mapFromSource(s.table.index(row, 0)), flags)
    assert w.case_list.selected_rows() == [1, 2, 3] and s.current == 1
    w.canvas.setFocus()
    qtbot.keyClick(w, Qt.Key.Key_X)
    assert [e.status for e in s.entries] == [ReviewStatus.UNREVIEWED] + [ReviewStatus.EXCLUDED] * 3
    assert w.review.saved_label.text() == "Saved: excluded (3 images)"
    assert all(_record(folder, f"lesion_{i}.png")["status"] == "excluded" for i in (1, 2, 3))
    # a single current row outside the selection gets the key alone
    w.case_list.select_row(0)
    qtbot.keyClick(w, Qt.Key.Key_A)
    assert s.entries[0].status == ReviewStatus.ACCEPTED and s.entries[1].status == ReviewStatus.EXCLUDED
    _close(w)


def test_the_corrected_filter_lists_corrected_images(qtbot, random_model, folder) -> None:
    w = _window(qtbot, random_model)
    _open(qtbot, w, folder)
    with qtbot.waitSignal(w.view.drawn, timeout=WAIT_MS, check_params_cb=lambda r, p, c: r == 2 and p):
        w.case_list.select_row(2)
    _start_edit(w)  # unsaved
    w.case_list.filter.setCurrentIndex(w.case_list.filter.findData("corrected"))
    assert w.case_list.view_order() == [2] and w.case_list.count_label.text() == "1 / 4"
    assert w.editing.save_current()
    assert w.case_list.view_order() == [2]
    _close(w)


# ------------------------------------------------------------------- 10, 12. the window itself
def test_an_interim_model_is_said_plainly(qtbot, random_model, tmp_path) -> None:
    import torch

    from dermaseg_app.ml.registry import build_generator
    from dermaseg_app.ml.weights import ModelInfo, save_model

    interim = tmp_path / "interim.safetensors"
    save_model(interim, build_generator("slsnet", {"input_size": 32}),
               ModelInfo(name="slsnet_test", version="0.1-cpu-interim", arch="slsnet",
                         config={"input_size": 32}, input_size=32))
    torch.manual_seed(0)
    w = _window(qtbot, interim)
    w.session.start_model()
    qtbot.waitUntil(lambda: w.session.header is not None, timeout=5000)
    assert w.interim_label.isVisible() and "Interim model" in w.interim_label.text()
    with qtbot.waitSignal(w.session.model_ready, timeout=WAIT_MS):
        w.use_model(random_model)
    assert not w.interim_label.isVisible()
    _close(w)


def test_the_window_opens_sized_to_its_screen_with_the_canvas_first(qtbot, random_model) -> None:
    from PySide6.QtCore import QSettings

    from dermaseg_app.gui.window_size import dock_widths

    QSettings("DermaSeg", "DermaSeg").remove("main_window/geometry")
    w = _window(qtbot, random_model)
    area = w.screen().availableGeometry()
    for width in (960, 1280, 1920):  # 1920x1080 at 2x HiDPI is 960 logical pixels wide
        left, right = dock_widths(width)
        assert width - left - right >= width / 2
    assert w.editing.toolbar.actions().count(w.editing.actions["save"]) == 1  # Save without scrolling
    _close(w)
    w2 = _window_unsized(qtbot, random_model)
    assert w2.width() >= 0.9 * area.width() and w2.height() >= 0.9 * area.height()
    _close(w2)


def _window_unsized(qtbot, model: Path):
    from PySide6.QtCore import QSettings

    from dermaseg_app.gui.app import build_window

    QSettings("DermaSeg", "DermaSeg").remove("main_window/geometry")
    window = build_window(SimpleNamespace(paths=[], model=str(model), device="cpu", masks=None))
    qtbot.addWidget(window)
    window.show()
    return window


# ------------------------------------------------------------------------- 7. which threshold
def test_the_slider_threshold_is_labelled_against_the_lists(qtbot, random_model, folder) -> None:
    from dermaseg_app.gui.case_model import Column

    w = _window(qtbot, random_model)
    _open(qtbot, w, folder)
    s = w.session
    qtbot.waitUntil(lambda: all(e.predicted for e in s.entries), timeout=WAIT_MS)
    header = lambda col: s.table.headerData(col, Qt.Orientation.Horizontal)  # noqa: E731
    assert header(Column.JSC) == "JSC" and w.metrics.note.text() == "at threshold 0.45"
    with qtbot.waitSignal(s.current_scores, timeout=WAIT_MS):
        w.controls.threshold.setValue(70)
    qtbot.waitUntil(lambda: "slider" in w.metrics.note.text(), timeout=5000)
    assert w.metrics.note.text() == ("at threshold 0.70 (the slider); the list and the folder summary "
                                     "are at the model's 0.45")
    assert header(Column.JSC) == "JSC @0.45" and header(Column.DSC) == "DSC @0.45"
    w.refresh_summary()
    assert "at the model's threshold 0.45" in w.summary.means.text()
    w.controls.threshold.setValue(45)
    assert header(Column.JSC) == "JSC"
    _close(w)


# ------------------------------------------------------------- 11. colours; 8. state kept
def test_preferences_change_the_overlay_colours_and_are_remembered(qtbot, random_model, folder) -> None:
    from dermaseg_app.gui.canvas.legend import _Swatch
    from dermaseg_app.gui.canvas.mask_layer import mask_palette, premultiplied_palette
    from dermaseg_app.gui.canvas.overlay import COMPARISON_PALETTES, MASK_COLOURS
    from dermaseg_app.gui.preferences import PreferencesDialog

    safe = COMPARISON_PALETTES["colour_blind"]
    w = _window(qtbot, random_model)
    _open(qtbot, w, folder)
    w.controls.opacity.setValue(100)
    dialog = PreferencesDialog("standard", "blue", w)
    dialog.comparison.setCurrentIndex(dialog.comparison.findData("colour_blind"))
    dialog.mask.setCurrentIndex(dialog.mask.findData("magenta"))
    assert dialog.values() == ("colour_blind", "magenta")
    w.set_preferences(*dialog.values())
    palette = w.view._rendered.overlay_preview.palette  # the prediction's fill
    assert tuple(palette[1][:3]) == MASK_COLOURS["magenta"][1]
    assert w.canvas.contour_item.pen().color().getRgb()[:3] == MASK_COLOURS["magenta"][2]
    with qtbot.waitSignal(w.view.drawn, timeout=5000, check_params_cb=lambda r, p, compared: compared):
        qtbot.keyClick(w, Qt.Key.Key_G)
    palette = w.view._rendered.overlay_preview.palette  # index 1 FP, 2 FN, 3 TP
    assert [tuple(c[:3]) for c in palette[1:4]] == [safe.fp, safe.fn, safe.tp]
    swatches = [s.colour.getRgb()[:3] for s in w.canvas.legend.findChildren(_Swatch)]
    assert swatches == [safe.tp, safe.fp, safe.fn]  # the same legend entries, other colours
    assert [lab.text() for lab in w.canvas.legend.labels] == [
        "true positive", "false positive (model only)", "false negative (missed)"]
    assert np.array_equal(mask_palette(1.0, True), premultiplied_palette(
        [(0, 0, 0, 0), (*safe.fp, 255), (*safe.fn, 255), (*safe.tp, 255)]))  # the corrected mask too
    _close(w)
    w2 = _window(qtbot, random_model)  # remembered: the next window draws with them
    assert (w2.settings.comparison_colours, w2.settings.mask_colour) == ("colour_blind", "magenta")
    assert w2.canvas.contour_item.pen().color().getRgb()[:3] == MASK_COLOURS["magenta"][2]
    assert w2.controls.compare.isChecked()  # G as it was left
    w2.set_preferences("standard", "blue")
    _close(w2)


def test_the_sort_is_restored_and_the_current_row_stays_in_view(qtbot, random_model, tmp_path) -> None:
    from dermaseg_app.gui.case_model import Column

    big = tiny_folder(tmp_path / "big", n=40)
    w = _window(qtbot, random_model)
    with qtbot.waitSignal(w.view.drawn, timeout=WAIT_MS, check_params_cb=lambda r, p, c: p):
        assert w.open_paths([big]) == 40
    w.case_list.table.setFixedHeight(200)
    w.case_list.select_row(0)
    w.case_list.table.sortByColumn(Column.NAME, Qt.SortOrder.DescendingOrder)  # row 0 goes to the end
    qtbot.wait(50)
    table = w.case_list.table
    rect = table.visualRect(table.currentIndex())
    assert table.viewport().rect().intersects(rect)
    _close(w)
    w2 = _window(qtbot, random_model)
    header = w2.case_list.table.horizontalHeader()
    assert header.sortIndicatorSection() == Column.NAME
    assert header.sortIndicatorOrder() == Qt.SortOrder.DescendingOrder
    _close(w2)

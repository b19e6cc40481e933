"""The review window end to end (pytest-qt, offscreen) on copies of the real samples."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui

from PySide6.QtCore import Qt  # noqa: E402

from dermaseg_app import paths  # noqa: E402
from dermaseg_app.app.prediction import PredictionResult  # noqa: E402
from dermaseg_app.core.project import ReviewStatus  # noqa: E402
from dermaseg_app.gui.canvas.overlay import FN_COLOUR, FP_COLOUR, TP_COLOUR  # noqa: E402
from dermaseg_app.gui.canvas.qimage import qimage_to_rgb  # noqa: E402
from dermaseg_app.gui.case_model import Column  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "resources" / "samples" / "images"
SMALL = ["ISIC_0000169", "ISIC_0000299", "ISIC_0000457"]  # the smallest samples (722-1028 px)
WAIT_MS = 60000  # generous: CI and this shared 2-core machine can be slow to import torch


@pytest.fixture
def folder(sample_folder) -> Path:
    """An ISIC-layout folder with three real samples and their ground truth."""
    return sample_folder(SMALL)


def _window(qtbot, model: Path | None, keys: bool = True):
    """The window on ``model``; with ``keys``, active so that single-key shortcuts reach it."""
    from dermaseg_app.gui.app import build_window

    window = build_window(SimpleNamespace(paths=[], model=str(model) if model else None, device="cpu",
                                          masks=None))
    qtbot.addWidget(window)
    window.resize(1280, 800)
    window.show()
    if keys:
        window.activateWindow()
        qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    return window


def _close(window) -> None:
    window.close()
    assert window.session.stop_background(wait=True, timeout=10)
    # torch may still be importing on the loader thread; let it end before the next test/exit
    window.session.wait_for_model(60)


def _open_and_wait_prediction(qtbot, window, folder: Path) -> None:
    with qtbot.waitSignal(window.view.drawn, timeout=WAIT_MS,
                          check_params_cb=lambda row, has_pred, compared: has_pred):
        assert window.open_paths([folder]) == len(SMALL)


def test_opens_folder_predicts_first_image_and_scores(qtbot, random_model, folder) -> None:
    w = _window(qtbot, random_model)
    _open_and_wait_prediction(qtbot, w, folder)
    s = w.session
    assert s.current == 0 and s.current_images().prob is not None
    assert s.entries[0].case.ground_truth is not None
    qtbot.waitUntil(lambda: all(e.predicted for e in s.entries), timeout=WAIT_MS)
    entry = s.entries[0]
    assert entry.scores is not None and 0 <= entry.scores.jsc <= 1 and entry.uncertainty is not None
    assert w.session.table.index(0, Column.JSC).data() == f"{entry.scores.jsc:.3f}"
    assert "random-test 0.0.1" in w.model_label.text() and "CPU" in w.device_label.text()
    assert s.model.predictor.backend_label in w.device_label.text()  # the status bar names the backend
    assert w.controls.threshold.value() == 45  # the slider starts at the model's threshold
    assert w.metrics.note.text() == "at threshold 0.45"
    assert w.metrics.values["jsc"].text() == f"{100 * entry.scores.jsc:.1f}%"
    qtbot.waitUntil(lambda: w.summary.worst.count() == len(SMALL), timeout=5000)
    assert w.summary.plot is not None  # the pyqtgraph histogram
    _close(w)


def test_drop_folder_then_sort_by_metric_uncertainty_and_status(qtbot, random_model, folder) -> None:
    from PySide6.QtCore import QMimeData, QPointF, QUrl
    from PySide6.QtGui import QDropEvent

    w = _window(qtbot, random_model)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(folder))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    w.dropEvent(event)
    s = w.session
    assert len(s.entries) == len(SMALL)
    qtbot.waitUntil(lambda: all(e.predicted for e in s.entries), timeout=WAIT_MS)
    table = w.case_list.table
    table.sortByColumn(Column.JSC, Qt.SortOrder.AscendingOrder)
    jsc = [s.entries[r].scores.jsc for r in w.case_list.view_order()]
    assert jsc == sorted(jsc)
    table.sortByColumn(Column.UNCERTAINTY, Qt.SortOrder.AscendingOrder)  # most unsure first
    unsure = [s.entries[r].uncertainty for r in w.case_list.view_order()]
    assert unsure == sorted(unsure, reverse=True)
    s.set_status(2, ReviewStatus.REJECTED)
    s.set_status(0, ReviewStatus.ACCEPTED)
    table.sortByColumn(Column.STATUS, Qt.SortOrder.AscendingOrder)
    assert w.case_list.view_order() == [1, 0, 2]  # unreviewed, accepted, rejected
    # next/previous follow the sorted order
    w.case_list.select_row(1)
    qtbot.keyClick(w, Qt.Key.Key_N)
    assert s.current == 0
    qtbot.keyClick(w, Qt.Key.Key_PageDown)
    assert s.current == 2
    qtbot.keyClick(w, Qt.Key.Key_P)
    assert s.current == 0
    assert str(folder.resolve()) in w.settings.recent_folders  # File > Recent Folders
    _close(w)


def test_open_single_images_without_ground_truth(qtbot, random_model, tmp_path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copy(SAMPLES / "ISIC_0000169.jpg", loose / "lesion.jpg")
    w = _window(qtbot, random_model)
    with qtbot.waitSignal(w.view.drawn, timeout=WAIT_MS, check_params_cb=lambda r, p, c: p):
        assert w.open_paths([loose / "lesion.jpg"]) == 1
    assert w.session.entries[0].case.ground_truth is None
    assert not w.controls.compare.isEnabled()  # reviewed without comparison
    qtbot.keyClick(w, Qt.Key.Key_G)
    assert not w.canvas.legend.isVisible()
    qtbot.keyClick(w, Qt.Key.Key_A)
    assert (loose / "dermaseg-project" / "project.json").is_file()
    _close(w)


def test_comparison_colours_rendered_on_canvas(qtbot, random_model, folder) -> None:
    w = _window(qtbot, random_model)
    _open_and_wait_prediction(qtbot, w, folder)
    images = w.session.current_images()
    gt = images.gt
    # A known prediction: the ground truth shifted right, so TP, FP and FN regions all exist.
    shift = gt.shape[1] // 8
    pred = np.zeros_like(gt)
    pred[:, shift:] = gt[:, :-shift]
    images.prob = None
    w.session.probs.pop(0)
    w.session._prediction(PredictionResult(0, (pred * 255).astype(np.uint8), final=False))
    w.controls.opacity.setValue(100)
    with qtbot.waitSignal(w.view.drawn, timeout=5000, check_params_cb=lambda r, p, compared: compared):
        qtbot.keyClick(w, Qt.Key.Key_G)  # one key toggles the comparison
    assert w.canvas.legend.isVisible() and not w.canvas.heat_legend.isVisible()
    w.canvas.viewport().repaint()
    shot = qimage_to_rgb(w.canvas.viewport().grab().toImage())
    import cv2

    def interior(mask: np.ndarray) -> tuple[int, int]:
        eroded = cv2.erode(mask.astype(np.uint8), np.ones((25, 25), np.uint8))
        ys, xs = np.nonzero(eroded)
        i = len(ys) // 2
        return int(xs[i]), int(ys[i])

    for region, colour in ((pred & gt, TP_COLOUR), (pred & ~gt, FP_COLOUR), (~pred & gt, FN_COLOUR)):
        x, y = interior(region)
        vp = w.canvas.mapFromScene(x + 0.5, y + 0.5)
        got = shot[vp.y(), vp.x()].astype(int)
        assert np.abs(got - np.array(colour)).max() <= 40, (colour, got)
    # true negatives show the image itself
    x, y = interior(~pred & ~gt)
    vp = w.canvas.mapFromScene(x + 0.5, y + 0.5)
    expected = images.rgb[y, x].astype(int)
    assert np.abs(shot[vp.y(), vp.x()].astype(int) - expected).max() <= 40
    # the heat-map replaces the comparison colours, with its own colour scale
    qtbot.keyClick(w, Qt.Key.Key_H)
    assert w.canvas.heat_legend.isVisible() and not w.canvas.legend.isVisible()
    _close(w)


def test_threshold_moves_contour_without_new_prediction(qtbot, random_model, folder) -> None:
    w = _window(qtbot, random_model)
    _open_and_wait_prediction(qtbot, w, folder)
    qtbot.waitUntil(lambda: all(e.predicted for e in w.session.entries), timeout=WAIT_MS)  # job idle
    images = w.session.current_images()
    prob = np.tile(np.linspace(0, 255, images.rgb.shape[1]).astype(np.uint8), (images.rgb.shape[0], 1))
    images.set_prob(prob)
    w.view.redraw()
    before = w.canvas.contour_item.path().boundingRect()
    calls = []
    w.session.model.predictor.predict = lambda *a, **k: calls.append(1)  # must not be called
    w.controls.set_threshold(0.8)
    after = w.canvas.contour_item.path().boundingRect()
    assert after.left() > before.left() + 0.2 * images.rgb.shape[1], (before, after, images.rgb.shape)
    assert not calls
    _close(w)


def test_status_keys_and_note_persist_across_reopen(qtbot, random_model, folder, monkeypatch) -> None:
    w = _window(qtbot, random_model)
    w.open_paths([folder])
    qtbot.waitUntil(lambda: w.session.current == 0, timeout=5000)
    w.canvas.setFocus()
    qtbot.keyClick(w, Qt.Key.Key_A)
    assert w.session.entries[0].status == ReviewStatus.ACCEPTED
    qtbot.keyClick(w, Qt.Key.Key_N)  # next image
    assert w.session.current == 1
    qtbot.keyClick(w, Qt.Key.Key_C)
    w.review.note.setPlainText("border unclear at 3 o'clock")
    w.review.flush_note()
    qtbot.keyClick(w, Qt.Key.Key_N)
    qtbot.keyClick(w, Qt.Key.Key_X)
    data = json.loads((folder / "dermaseg-project" / "project.json").read_text())
    assert data["images"][f"{SMALL[0]}.jpg"]["status"] == "accepted"
    assert data["images"][f"{SMALL[1]}.jpg"]["note"] == "border unclear at 3 o'clock"
    assert w.session.table.index(2, Column.STATUS).data() == "excluded"
    _close(w)

    w2 = _window(qtbot, random_model)
    monkeypatch.chdir(folder.parent)
    w2.open_paths([Path(folder.name)])  # a relative path finds the same records
    statuses = [e.status for e in w2.session.entries]
    assert statuses == [ReviewStatus.ACCEPTED, ReviewStatus.NEEDS_CORRECTION, ReviewStatus.EXCLUDED]
    assert w2.session.entries[1].note == "border unclear at 3 o'clock"
    w2.case_list.select_row(1)
    assert w2.review.note.toPlainText() == "border unclear at 3 o'clock"
    assert w2.review.buttons[ReviewStatus.NEEDS_CORRECTION].isChecked()
    # filter by status
    w2.case_list.filter.setCurrentIndex(w2.case_list.filter.findData("accepted"))
    assert w2.case_list.view_order() == [0]
    _close(w2)


def test_typing_a_note_does_not_change_status(qtbot, random_model, folder) -> None:
    w = _window(qtbot, random_model)
    w.open_paths([folder])
    qtbot.waitUntil(lambda: w.session.current == 0, timeout=5000)
    w.review.note.setFocus()
    qtbot.keyClicks(w.review.note, "ACRXU")
    assert w.session.entries[0].status == ReviewStatus.UNREVIEWED
    assert w.review.note.toPlainText() == "ACRXU"
    _close(w)


def test_background_prediction_progresses_and_cancels(qtbot, random_model, tmp_path) -> None:
    import cv2

    many = tmp_path / "many"
    many.mkdir()
    rng = np.random.default_rng(1)
    for i in range(60):
        cv2.imwrite(str(many / f"img_{i:03d}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    w = _window(qtbot, random_model)
    seen = []
    w.session.progress.connect(lambda done, total: seen.append((done, total)))
    with qtbot.waitSignal(w.session.predictions_done, timeout=WAIT_MS) as done_signal:
        w.open_paths([many])
        qtbot.waitUntil(lambda: any(d >= 2 for d, _ in seen), timeout=WAIT_MS)
        assert w.progress.isVisible()
        w.progress.cancel.click()
    assert done_signal.args == [True]  # cancelled
    done = max(d for d, _ in seen)
    assert 2 <= done < 60 and seen[-1][1] == 60
    assert sum(e.predicted for e in w.session.entries) == done
    assert not w.progress.isVisible()
    # an image the cancel left out is predicted when the user opens it ...
    left = next(r for r, e in enumerate(w.session.entries) if not e.predicted)
    w.case_list.select_row(left)
    qtbot.waitUntil(lambda: w.session.entries[left].predicted, timeout=WAIT_MS)
    # ... and Resume predicts the rest
    with qtbot.waitSignal(w.session.predictions_done, timeout=WAIT_MS):
        assert w.session.resume_predictions() == 60 - done - 1
    assert all(e.predicted for e in w.session.entries)
    _close(w)


def test_closing_during_prediction_stops_cleanly(qtbot, random_model, tmp_path) -> None:
    import cv2

    many = tmp_path / "many"
    many.mkdir()
    rng = np.random.default_rng(2)
    for i in range(60):
        cv2.imwrite(str(many / f"img_{i:03d}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    w = _window(qtbot, random_model)
    seen = []
    w.session.progress.connect(lambda done, total: seen.append(done))
    w.open_paths([many])
    qtbot.waitUntil(lambda: any(d >= 1 for d in seen), timeout=WAIT_MS)
    w.close()  # closeEvent cancels and waits for the workers
    assert not w.session.busy()
    assert sum(e.predicted for e in w.session.entries) < 60
    w.session.wait_for_model(60)


def test_opening_another_folder_mid_prediction_keeps_results_apart(qtbot, random_model, folder, tmp_path) -> None:
    import time

    import cv2

    rng = np.random.default_rng(3)
    warm, other = tmp_path / "warm", tmp_path / "other"
    for d, n in ((warm, 1), (other, 4)):
        d.mkdir()
        for i in range(n):
            cv2.imwrite(str(d / f"o_{i}.png"), rng.integers(0, 255, (30 + i, 40, 3), dtype=np.uint8))
    w = _window(qtbot, random_model)
    s = w.session
    w.open_paths([warm])  # the network's first run is slow; get it over with
    qtbot.waitUntil(lambda: all(e.predicted for e in s.entries), timeout=WAIT_MS)
    w.open_paths([other])
    time.sleep(1.5)  # its results are now queued, not yet delivered
    assert s._predict_worker.is_done
    w.open_paths([folder])
    done, totals = [], []
    s.predictions_done.connect(done.append)
    s.progress.connect(lambda d, total: totals.append(total))
    qtbot.waitUntil(lambda: all(e.predicted for e in s.entries), timeout=WAIT_MS)
    qtbot.wait(300)
    assert done == [False] and set(totals) == {len(SMALL)}  # nothing from the first folder's job
    assert [e.name for e in s.entries] == [f"{stem}.jpg" for stem in SMALL]
    assert not any(e.error or e.prediction_error for e in s.entries)
    from dermaseg_app.core.imageio import read_image

    for row in range(len(SMALL)):
        assert s.probs.get(row).shape == read_image(s.entries[row].case.image).shape[:2]
    _close(w)


def test_reopen_uses_cache(qtbot, random_model, folder) -> None:
    w = _window(qtbot, random_model)
    _open_and_wait_prediction(qtbot, w, folder)
    qtbot.waitUntil(lambda: all(e.predicted for e in w.session.entries), timeout=WAIT_MS)
    assert any(e.seconds is not None for e in w.session.entries)
    _close(w)
    w2 = _window(qtbot, random_model)
    _open_and_wait_prediction(qtbot, w2, folder)
    qtbot.waitUntil(lambda: all(e.predicted for e in w2.session.entries), timeout=WAIT_MS)
    assert all(e.seconds is None for e in w2.session.entries)  # none ran the network
    _close(w2)


def test_corrupt_file_is_listed_with_reason(qtbot, random_model, folder) -> None:
    (folder / "ISIC_9999999.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    w = _window(qtbot, random_model)
    w.open_paths([folder])
    s = w.session
    row = next(i for i, e in enumerate(s.entries) if e.name == "ISIC_9999999.jpg")
    qtbot.waitUntil(lambda: bool(s.entries[row].error), timeout=WAIT_MS)
    assert s.table.index(row, Column.STATUS).data() == "unreadable"
    assert s.entries[row].error in s.table.index(row, Column.NAME).data(Qt.ItemDataRole.ToolTipRole)
    w.case_list.select_row(row)
    qtbot.waitUntil(lambda: w.canvas.message.isVisible() and "cannot be opened" in w.canvas.message.text(),
                    timeout=5000)
    w.case_list.filter.setCurrentIndex(w.case_list.filter.findData("unreadable"))
    assert w.case_list.view_order() == [row]
    w.case_list.filter.setCurrentIndex(0)
    # the others are still predicted
    qtbot.waitUntil(lambda: sum(e.predicted for e in s.entries) == len(SMALL), timeout=WAIT_MS)
    _close(w)


def test_missing_model_still_shows_images(qtbot, tmp_path, folder, random_model) -> None:
    w = _window(qtbot, tmp_path / "no-such-model.safetensors")
    with qtbot.waitSignal(w.view.drawn, timeout=WAIT_MS):
        w.open_paths([folder])
    assert w.session.current_images() is not None
    assert "no such model file" in w.notice.text.text()
    assert "no such model file" in w.canvas.message.text()
    assert w.model_label.text() == "Model: none"
    # File > Use Model File... : the masks follow
    with qtbot.waitSignal(w.view.drawn, timeout=WAIT_MS, check_params_cb=lambda r, p, c: p):
        w.use_model(random_model)
    qtbot.waitUntil(lambda: all(e.predicted for e in w.session.entries), timeout=WAIT_MS)
    assert "random-test" in w.model_label.text() and not w.canvas.message.isVisible()
    _close(w)


def test_worker_error_is_reported_and_finishes(qtbot) -> None:
    from dermaseg_app.gui.workers import Worker

    def boom(job):
        yield 1
        raise RuntimeError("disk on fire")

    worker = Worker(boom)
    got, errors, order = [], [], []
    worker.yielded.connect(got.append)
    worker.errored.connect(lambda exc: (errors.append(exc), order.append("errored")))
    worker.finished.connect(lambda: order.append("finished"))
    with qtbot.waitSignal(worker.finished, timeout=5000):
        worker.start()
    assert got == [1] and "disk on fire" in str(errors[0])
    assert order == ["errored", "finished"] and worker.is_done


def test_error_in_background_work_is_shown(qtbot, random_model, folder, monkeypatch) -> None:
    from dermaseg_app.gui import session as session_mod

    def broken(job, rows, paths):
        yield from ()
        raise OSError("the thumbnail reader crashed")

    monkeypatch.setattr(session_mod, "thumbnails", broken)
    w = _window(qtbot, random_model)
    w.open_paths([folder])
    qtbot.waitUntil(lambda: "the thumbnail reader crashed" in w.notice.text.text(), timeout=WAIT_MS)
    assert w.notice.isVisible() and "Reading the thumbnails failed" in w.notice.text.text()
    # the rest still works
    qtbot.waitUntil(lambda: all(e.predicted for e in w.session.entries), timeout=WAIT_MS)
    _close(w)


def test_read_only_project_asks_for_folder(qtbot, random_model, folder, tmp_path, monkeypatch) -> None:
    from dermaseg_app.core import project as project_mod

    real_open = project_mod.Project.open_for.__func__

    def open_for(cls, image_folder, project_dir=None):
        if project_dir is None:
            raise project_mod.ProjectNotWritable(Path(image_folder) / "dermaseg-project",
                                                 "the file system is read-only")
        return real_open(cls, image_folder, project_dir)

    monkeypatch.setattr(project_mod.Project, "open_for", classmethod(open_for))
    w = _window(qtbot, random_model)
    w.open_paths([folder])
    qtbot.waitUntil(lambda: w.session.current == 0, timeout=5000)
    assert w.review.problem.isVisible() and "read-only" in w.review.problem.text()
    assert w.review.choose_button.isVisible()
    qtbot.keyClick(w, Qt.Key.Key_R)  # kept in memory, reported as not saved
    assert "Not saved" in w.review.saved_label.text()
    elsewhere = tmp_path / "my-project"
    assert w.session.use_project_dir(0, elsewhere) == ""
    data = json.loads((elsewhere / "project.json").read_text())
    assert data["images"][f"{SMALL[0]}.jpg"]["status"] == "rejected"
    _close(w)


def test_screenshot_mode(random_model, folder, tmp_path) -> None:
    """``dermaseg PATH --screenshot FILE --compare`` through the real command (its own process:
    the mode ends the application's event loop)."""
    import os
    import subprocess
    import sys

    out = tmp_path / "shot.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CACHE_HOME=str(tmp_path / "c"),
               XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    done = subprocess.run([sys.executable, "-m", "dermaseg_app", str(folder), "--model", str(random_model),
                           "--device", "cpu", "--screenshot", str(out), "--compare"],
                          env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    from PySide6.QtGui import QImage

    img = QImage(str(out))
    assert img.width() == 1440 and img.height() == 900
    rgb = qimage_to_rgb(img)
    # the comparison is drawn: the legend's three colours and the overlay's yellow are on screen
    yellow = (rgb[..., 0] > 200) & (rgb[..., 1] > 200) & (rgb[..., 2] < 60)
    assert yellow.sum() > 50


@pytest.mark.slow
def test_bundled_model_on_a_sample(qtbot, folder) -> None:
    model = paths.default_model_path()
    if not model.exists():
        pytest.skip(f"the bundled model {model} is not installed (trained separately)")
    w = _window(qtbot, None, keys=False)
    _open_and_wait_prediction(qtbot, w, folder)
    qtbot.waitUntil(lambda: w.session.entries[0].scores is not None, timeout=WAIT_MS)
    assert w.session.entries[0].scores.jsc > 0.5  # a trained model finds these lesions
    _close(w)


def test_the_model_chosen_in_the_window_is_used_at_the_next_start(qtbot, random_model, folder,
                                                                   tmp_path) -> None:
    from dermaseg_app.app.settings import GuiSettings

    assert GuiSettings.load().remembered_model() is None  # a fresh machine: the bundled model
    chosen = tmp_path / "fine-tuned.safetensors"
    shutil.copy(random_model, chosen)
    w = _window(qtbot, None, keys=False)
    assert w.session.model_path is None  # paths.default_model_path()
    w.use_model(chosen)  # File > Use Model File… and the Training tab's "Use this model" call this
    assert GuiSettings.load().remembered_model() == chosen.resolve()
    _close(w)

    again = _window(qtbot, None, keys=False)  # the next start, no --model
    assert again.session.model_path == chosen.resolve()
    _close(again)
    explicit = _window(qtbot, random_model, keys=False)  # --model wins over the remembered one
    assert explicit.session.model_path == random_model
    _close(explicit)

    chosen.unlink()  # a remembered model that is gone: back to the bundled one
    gone = _window(qtbot, None, keys=False)
    assert gone.session.model_path is None
    use_bundled = next(a for a in gone.menuBar().actions()[0].menu().actions()
                       if a.text() == "Use the Bundled Model")
    use_bundled.trigger()
    assert GuiSettings.load().remembered_model() == paths.default_model_path().resolve()
    _close(gone)


def test_the_status_bar_follows_a_runtime_that_fails_mid_session(qtbot, random_model, folder) -> None:
    """A runtime (ONNX Runtime, OpenVINO) that fails while predicting hands over to torch
    (ml.predictor): the status bar then names torch and the window says why."""
    w = _window(qtbot, random_model)
    _open_and_wait_prediction(qtbot, w, folder)
    s = w.session
    qtbot.waitUntil(lambda: all(e.predicted for e in s.entries), timeout=WAIT_MS)
    predictor = s.model.predictor

    class Broken:
        name, label = "onnxruntime", "ONNX Runtime 0.0 (test)"

        def run(self, batch):
            raise RuntimeError("the runtime broke")

    predictor.runtime = Broken()
    s.device_label = f"CPU, {Broken.label}"  # as shown while the runtime ran
    w.device_label.setText(f"Device: {s.device_label}")
    notices: list[str] = []
    s.notice.connect(lambda text, error: notices.append(text))
    predictor.predict(np.zeros((40, 40, 3), np.uint8))  # a worker's call: the runtime fails, torch takes over
    s._follow_backend()  # what each prediction result arriving in the window runs
    assert "torch" in w.device_label.text()
    assert predictor.runtime is None and "ONNX Runtime" not in w.device_label.text()
    assert any("failed" in n and "torch runs the model" in n for n in notices)
    _close(w)

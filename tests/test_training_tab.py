"""The Training tab: fine-tuning on the saved corrections from the window (pytest-qt, offscreen).

A tiny project is built on the fly (48x48 images, corrections saved through CorrectionStore) and
fine-tuned for real with the random 32 px model on the CPU.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui

from PySide6.QtCore import Qt  # noqa: E402

from dermaseg_app.core.editing import EditOp  # noqa: E402
from dermaseg_app.core.imageio import write_image  # noqa: E402
from dermaseg_app.core.project import Project, ReviewStatus  # noqa: E402
from dermaseg_app.core.store import CorrectionStore  # noqa: E402

WAIT_MS = 60000


def _disc(shape=(48, 48), r=14, dx=0) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - 24) ** 2 + (xx - 24 - dx) ** 2 < r * r


def _project(tmp_path: Path, n_images: int, corrected: int) -> tuple[Path, Project]:
    folder = tmp_path / "clinic"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n_images):
        rgb = np.full((48, 48, 3), (205, 160, 140), np.uint8) + rng.integers(0, 20, (48, 48, 3)).astype(np.uint8)
        rgb[_disc(dx=i - 2)] = (90, 50, 40)
        write_image(folder / f"lesion{i}.png", rgb)
    project = Project.open_for(folder)
    store = CorrectionStore(project)
    for i in range(corrected):
        store.save_correction(folder / f"lesion{i}.png", _disc(dx=i - 2))
    return folder, project


def _window(qtbot, model: Path, folder: Path):
    from dermaseg_app.gui.app import build_window

    window = build_window(SimpleNamespace(paths=[], model=str(model), device="cpu", masks=None))
    qtbot.addWidget(window)
    window.editing.ask_unsaved = lambda n: "discard"
    window.editing.show_error = lambda title, text: None
    window.training.ask_stop = lambda: True
    window.training.overrides = {"workers": 1}
    window.resize(1280, 800)
    window.show()
    assert window.open_paths([folder]) > 0
    window.tabs.setCurrentIndex(1)
    window.training.refresh()
    return window


def _close(window) -> None:
    window.training.ask_stop = lambda: True
    window.close()
    assert window.training.wait(30)
    assert window.session.stop_background(wait=True, timeout=10)
    window.session.wait_for_model(60)


def _run(qtbot, tab, epochs: int = 2):
    tab.settings_form.epochs.setValue(epochs)
    assert tab.start_button.isEnabled(), tab.reason.text()
    with qtbot.waitSignal(tab.finished, timeout=WAIT_MS) as blocker:
        qtbot.mouseClick(tab.start_button, Qt.MouseButton.LeftButton)
    return blocker.args[0]


def test_one_click_finetune_writes_a_new_model_and_use_this_model_switches(
        qtbot, random_model, tmp_path, one_torch_thread) -> None:
    from dermaseg_app import paths

    shipped_before = sorted(p.name for p in paths.models_dir().iterdir())
    folder, project = _project(tmp_path, 5, 4)
    w = _window(qtbot, random_model, folder)
    tab = w.training
    assert "4" in tab.count.text() and tab.start_button.text() == "Fine-tune on 4 corrections"
    assert "random-test" in tab.base.text() and str(random_model) in tab.base.text()
    assert not w.editing.toolbar.isVisible()  # the Training tab hides the edit tool bar
    outcome = _run(qtbot, tab)
    assert outcome is not None and not outcome.cancelled, tab.status.text()
    model = outcome.model_path
    assert model.parent == project.project_dir / "models" and model.name.startswith("random-test-ft-")
    assert model.is_file() and model.with_suffix(".md").is_file() and outcome.card_path == model.with_suffix(".md")
    assert (project.project_dir / "training" / "corrections-32.npz").is_file()
    assert outcome.n_train == 3 and outcome.n_val == 1 and outcome.epochs_done == 2
    assert outcome.before_jsc is not None and outcome.after_jsc is not None
    # the plot and the log got the run
    assert len(tab.plot.loss_points) == 2 and [e for e, _ in tab.plot.val_points] == [1, 2]
    assert tab.plot.before == pytest.approx(outcome.before_jsc)
    assert tab.log.toPlainText().count("Epoch ") == 2
    text = tab.result.text.text()
    assert "before" in text and "after" in text and model.name in text.replace("<br>", " ")
    assert tab.bar.value() == tab.bar.maximum()
    assert sorted(p.name for p in paths.models_dir().iterdir()) == shipped_before  # shipped models untouched
    # "Use this model": the window switches to the new model and shows the Review tab
    assert tab.result.use.isEnabled()
    with qtbot.waitSignal(w.session.model_ready, timeout=WAIT_MS):
        qtbot.mouseClick(tab.result.use, Qt.MouseButton.LeftButton)
    assert w.session.model_path == model
    assert w.tabs.currentIndex() == 0 and w.editing.toolbar.isVisible()
    assert "+ft" in w.model_label.text()
    _close(w)


def _start_long_run(qtbot, model: Path, tmp_path: Path):
    """A window on 4 corrected images whose 50-epoch fine-tuning has just started: (window, tab, project)."""
    folder, project = _project(tmp_path, 4, 4)
    w = _window(qtbot, model, folder)
    tab = w.training
    tab.settings_form.epochs.setValue(50)
    with qtbot.waitSignal(tab.started, timeout=5000):
        qtbot.mouseClick(tab.start_button, Qt.MouseButton.LeftButton)
    return w, tab, project


def test_cancel_stops_the_run_and_keeps_the_best_model_so_far(qtbot, random_model, tmp_path,
                                                               one_torch_thread) -> None:
    w, tab, project = _start_long_run(qtbot, random_model, tmp_path)
    assert tab.running and not tab.start_button.isEnabled() and tab.cancel_button.isEnabled()
    assert not tab.settings_form.epochs.isEnabled()
    qtbot.waitUntil(lambda: len(tab.plot.val_points) >= 1, timeout=WAIT_MS)
    with qtbot.waitSignal(tab.finished, timeout=WAIT_MS) as blocker:
        qtbot.mouseClick(tab.cancel_button, Qt.MouseButton.LeftButton)
    outcome = blocker.args[0]
    assert outcome.cancelled and 1 <= outcome.epochs_done < 50
    assert outcome.model_path is not None and outcome.model_path.is_file()
    assert outcome.model_path.parent == project.project_dir / "models"
    assert "Cancelled" in tab.result.text.text() and "best model so far" in tab.result.text.text()
    assert tab.status.text() == "Cancelled."
    assert (outcome.run_dir / "last.pt").is_file()  # resumable
    assert tab.start_button.isEnabled() and not tab.cancel_button.isEnabled()
    assert tab.settings_form.epochs.isEnabled()
    _close(w)


def test_the_button_needs_two_corrections_and_counts_saves_and_statuses(qtbot, random_model, tmp_path) -> None:
    folder, project = _project(tmp_path, 3, 1)
    w = _window(qtbot, random_model, folder)
    tab = w.training
    assert not tab.start_button.isEnabled()
    assert "at least 2" in tab.reason.text() and "1 saved" in tab.reason.text()
    assert not tab.start()  # a click that cannot start says why and starts nothing
    assert tab.worker is None
    # save a correction in the Review tab: the count follows
    w.tabs.setCurrentIndex(0)
    w.case_list.select_row(1)
    qtbot.waitUntil(lambda: w.session.current_images() is not None
                    and w.session.current_images().prob is not None, timeout=WAIT_MS)
    w.editing.apply(EditOp.fill_holes())
    assert w.editing.current_edit() is not None
    with qtbot.waitSignal(tab.refreshed, timeout=5000):
        assert w.editing.save_current()
    assert tab.start_button.isEnabled() and tab.start_button.text() == "Fine-tune on 2 corrections"
    assert w.tabs.tabText(1) == "Training (2)"
    # excluding an image takes it out of the training set
    w.case_list.select_row(0)
    with qtbot.waitSignal(tab.refreshed, timeout=5000):
        w.set_status(ReviewStatus.EXCLUDED)
    assert tab.start_button.text() == "Fine-tune on 1 correction" and not tab.start_button.isEnabled()
    assert "excluded or rejected are left out" in tab.problems.text()
    with qtbot.waitSignal(tab.refreshed, timeout=5000):
        w.set_status(ReviewStatus.ACCEPTED)
    assert tab.start_button.text() == "Fine-tune on 2 corrections"
    _close(w)


def test_errors_are_shown_in_the_tab_and_the_notice_bar(qtbot, random_model, tmp_path) -> None:
    folder, project = _project(tmp_path, 4, 4)
    store = CorrectionStore(project)
    # a correction whose header is unreadable is listed as a problem and not counted
    store.correction_path(folder / "lesion3.png").write_bytes(b"garbage")
    w = _window(qtbot, random_model, folder)
    tab = w.training
    assert "Fine-tune on 3 corrections" == tab.start_button.text()
    assert "lesion3.png" in tab.problems.text() and tab.problems.isVisible()
    # an output folder that cannot be made: the run fails at once, and says so
    blocker_file = tmp_path / "not-a-folder"
    blocker_file.write_text("x")
    tab.output.setText(str(blocker_file / "new.safetensors"))
    with qtbot.waitSignal(tab.finished, timeout=WAIT_MS) as blocker:
        qtbot.mouseClick(tab.start_button, Qt.MouseButton.LeftButton)
    assert blocker.args[0] is None
    assert "cannot create the folder" in tab.status.text() and str(blocker_file) in tab.status.text()
    assert "Fine-tuning failed" in w.notice.messages[-1] and w.notice.isVisible()
    assert "failed" in tab.result.text.text() and not tab.result.use.isEnabled()
    # a correction damaged past its header: left out when decoded; too few left is an error
    for name in ("lesion1.png", "lesion2.png"):
        png = store.correction_path(folder / name).read_bytes()
        store.correction_path(folder / name).write_bytes(png[: len(png) // 2])
    tab.refresh()
    assert tab.start_button.isEnabled()  # headers are fine: found only when decoded
    with qtbot.waitSignal(tab.finished, timeout=WAIT_MS) as blocker:
        qtbot.mouseClick(tab.start_button, Qt.MouseButton.LeftButton)
    assert blocker.args[0] is None
    assert "too few corrections could be read" in tab.status.text()
    assert "lesion1_segmentation.png" in tab.status.text()
    assert "Fine-tuning failed" in w.notice.messages[-1]
    _close(w)


def _archive(root: Path, n: int = 4) -> Path:
    """A dermoscopy-like folder in the data layout: images/ + masks/."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(1)
    for i in range(n):
        rgb = np.full((40, 40, 3), (180, 140, 120), np.uint8) + rng.integers(0, 30, (40, 40, 3)).astype(np.uint8)
        m = np.zeros((40, 40), bool)
        m[8 + i:30, 10:28 + i] = True
        rgb[m] = (70, 40, 30)
        write_image(root / "images" / f"d{i}.png", rgb)
        write_image(root / "masks" / f"d{i}.png", m.astype(np.uint8) * 255)
    return root


def test_replay_and_keep_dermoscopy_run_and_are_remembered(qtbot, random_model, tmp_path, monkeypatch,
                                                           one_torch_thread) -> None:
    from dermaseg_app.app.settings import GuiSettings

    monkeypatch.setenv("DERMASEG_PACK_DIR", str(tmp_path / "packs"))
    folder, _project_ = _project(tmp_path, 3, 2)
    w = _window(qtbot, random_model, folder)
    tab = w.training
    form = tab.settings_form
    from dermaseg_app.paths import replay_dir

    assert form.replay_note.isVisible() and "bundled" in form.replay_note.text()
    assert form.values().replay == replay_dir()  # empty folder: the bundled dermoscopy set
    form.share.setValue(0.0)
    assert "forget" in form.replay_note.text() and form.values().replay is None
    form.share.setValue(0.5)
    form.replay.setText(str(tmp_path / "missing-archive"))
    assert not tab.start_button.isEnabled() and "does not exist" in tab.reason.text()
    archive = _archive(tmp_path / "archive")
    form.replay.setText(str(archive))
    assert not form.replay_note.isVisible()
    form.keep.setChecked(True)
    assert "dermoscopy folder" in tab.reason.text() and not tab.start_button.isEnabled()
    form.base_val.setText(str(archive))
    outcome = _run(qtbot, tab, epochs=1)
    assert outcome is not None and not outcome.cancelled, tab.status.text()
    log = tab.log.toPlainText()
    assert f"replaying {archive}" in log and "Base model on the dermoscopy folder" in log
    assert "dermoscopy JSC" in log and len(tab.plot.base_points) == 1
    assert outcome.model_path is not None and outcome.model_path.is_file()
    assert str(archive) in outcome.card_path.read_text(encoding="utf-8")  # the card names the replay data
    saved = GuiSettings.load()  # remembered for the next run
    assert saved.finetune_replay == str(archive) and saved.finetune_base_val == str(archive)
    assert saved.finetune_keep_dermoscopy
    _close(w)


def test_closing_the_window_while_training_asks_and_stops_the_run(qtbot, random_model, tmp_path,
                                                                  one_torch_thread) -> None:
    w, tab, _project_ = _start_long_run(qtbot, random_model, tmp_path)
    asked = []
    tab.ask_stop = lambda: asked.append(1) or False  # "no": the window stays open, training goes on
    assert not w.close()
    assert asked and tab.running and w.isVisible()
    tab.ask_stop = lambda: True
    with qtbot.waitSignal(tab.finished, timeout=WAIT_MS) as blocker:
        assert w.close()
    assert blocker.args[0] is None or blocker.args[0].cancelled
    assert not tab.running
    w.session.wait_for_model(60)


def test_the_folder_ground_truth_is_scored_before_and_after(qtbot, random_model, tmp_path,
                                                             one_torch_thread) -> None:
    """With ground truth in the folder, the tab scores the model on every image that has it (not
    only on the held-out corrections), before and after; the numbers are the models' own."""
    import torch

    from dermaseg_app.core.dataset import find_cases
    from dermaseg_app.ml.data import load_cases
    from dermaseg_app.ml.training import evaluate_pack
    from dermaseg_app.ml.weights import load_model

    images = tmp_path / "data" / "images"
    masks = tmp_path / "data" / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    rng = np.random.default_rng(1)
    for i in range(6):
        rgb = np.full((48, 48, 3), (205, 160, 140), np.uint8) + rng.integers(0, 20, (48, 48, 3)).astype(np.uint8)
        rgb[_disc(dx=i - 3)] = (90, 50, 40)
        write_image(images / f"lesion{i}.png", rgb)
        write_image(masks / f"lesion{i}.png", (_disc(dx=i - 3) * 255).astype(np.uint8))
    project = Project.open_for(images)
    store = CorrectionStore(project)
    for i in range(4):
        store.save_correction(images / f"lesion{i}.png", _disc(dx=i - 3))
    project.set_status(images / "lesion5.png", ReviewStatus.EXCLUDED)  # not scored
    w = _window(qtbot, random_model, images)
    tab = w.training
    outcome = _run(qtbot, tab)
    assert outcome is not None and not outcome.cancelled, tab.status.text()
    before, after = outcome.folder_before, outcome.folder_after
    assert before.n == 5 and before.n_trained == 4 and before.full_size and after.n == 5
    cases = [c for c in find_cases([images]) if c.image.name != "lesion5.png"]
    pack = load_cases(cases, 32, full_masks=True)
    for model_path, score in ((random_model, before), (outcome.model_path, after)):  # each at its threshold
        model, info = load_model(model_path, "cpu")
        assert score.jsc == pytest.approx(abs=1e-3, expected=float(evaluate_pack(model, pack, torch.device("cpu"),
                                                              info.threshold).mean.jsc))
    text = tab.result.text.text()
    assert "the folder's 5 images with ground truth (4 of them corrected and trained on)" in text
    assert f"{100 * before.jsc:.1f}%" in text and f"{100 * after.jsc:.1f}%" in text
    assert "folder's 5 images with ground truth" in tab.log.toPlainText()
    assert outcome.train_seconds is not None and outcome.train_seconds <= outcome.seconds
    assert "training, the rest reading and scoring" in text
    _close(w)

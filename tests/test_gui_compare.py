"""Issue 18 in the window: choosing the model, comparing it with a second one (its dashed outline,
the Disagree column), and the ensemble offered only when it scores higher (pytest-qt, offscreen)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui

from PySide6.QtCore import Qt  # noqa: E402

from dermaseg_app.app.ensemble import EnsembleHeader, EnsembleVerdict  # noqa: E402
from dermaseg_app.core.metrics import disagreement, threshold_u8  # noqa: E402
from dermaseg_app.gui.canvas.edit_tools import Tool  # noqa: E402
from dermaseg_app.gui.case_model import Column  # noqa: E402

WAIT_MS = 30000
N_IMAGES = 4


def tiny_folder(root: Path, n: int = N_IMAGES) -> Path:
    """``root/images/lesion_<i>.png`` (48x64, a dark disc on skin) with ``root/masks/`` ground truth."""
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
def deeplab_model(tmp_path_factory) -> Path:
    """An untrained reduced Mobile DeepLab at 32 px (the cheapest seed network): the compared model."""
    import torch

    from dermaseg_app.ml.registry import build_generator, default_config
    from dermaseg_app.ml.weights import ModelInfo, save_model

    torch.manual_seed(3)
    config = dict(default_config("mobile_deeplab"), input_size=32)
    info = ModelInfo(name="deeplab-test", version="0.0.3", arch="mobile_deeplab", config=config, input_size=32,
                     threshold=0.5)
    return save_model(tmp_path_factory.mktemp("deeplab") / "deeplab.safetensors",
                      build_generator("mobile_deeplab", config), info)


def _window(qtbot, model: Path):
    from dermaseg_app.gui.app import build_window

    window = build_window(SimpleNamespace(paths=[], model=str(model), device="cpu", masks=None))
    qtbot.addWidget(window)
    window.editing.show_error = lambda title, text: None
    window.resize(1280, 800)
    window.show()
    return window


def _close(window) -> None:
    window.editing.ask_unsaved = lambda n: "discard"
    window.close()
    assert window.session.stop_background(wait=True, timeout=10)
    window.session.wait_for_model(60)
    loader = window.session.second._loader
    if loader is not None:
        loader.wait(60)


def _open(qtbot, window, folder: Path) -> None:
    with qtbot.waitSignal(window.view.drawn, timeout=WAIT_MS, check_params_cb=lambda r, p, c: p):
        assert window.open_paths([folder]) == N_IMAGES
    qtbot.waitUntil(lambda: all(e.predicted for e in window.session.entries), timeout=WAIT_MS)


def _compare(qtbot, w, model: Path) -> None:
    assert w.model_menu.compare_with(model)
    s = w.session
    qtbot.waitUntil(lambda: all(e.disagreement is not None for e in s.entries), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: s.current_images() is not None and s.current_images().second_prob is not None,
                    timeout=WAIT_MS)


def test_the_second_models_contour_and_the_disagreement_column(qtbot, random_model, deeplab_model, folder) -> None:
    w = _window(qtbot, random_model)
    _open(qtbot, w, folder)
    s = w.session
    table = w.case_list.table
    assert table.isColumnHidden(Column.DISAGREEMENT) and not w.canvas.second_contour_item.isVisible()
    _compare(qtbot, w, deeplab_model)
    second = s.second
    # each row: |A xor B| / |A or B| of the two models' cached maps, each at its own threshold
    for entry in s.entries:
        a, b = s.cache.load_u8(entry.case.image), second.cache.load_u8(entry.case.image)
        assert entry.disagreement == pytest.approx(disagreement(threshold_u8(a, s.threshold),
                                                                threshold_u8(b, second.threshold)))
    assert not table.isColumnHidden(Column.DISAGREEMENT)
    assert s.table.headerData(Column.DISAGREEMENT, Qt.Orientation.Horizontal) == "Disagree"
    # sorted on the column: the highest disagreement first
    w.case_list.table.sortByColumn(Column.DISAGREEMENT, Qt.SortOrder.AscendingOrder)
    shown = [s.entries[r].disagreement for r in w.case_list.view_order()]
    assert shown == sorted(shown, reverse=True)
    # the second outline: dashed, in its own colour, named in the legend
    w.view.redraw()
    item = w.canvas.second_contour_item
    assert item.isVisible() and item.path().elementCount() > 0 or second.cache.load_u8(
        s.entries[s.current].case.image).max() < 128
    assert item.pen().style() == Qt.PenStyle.DashLine
    assert item.pen().color() != w.canvas.contour_item.pen().color()
    assert w.canvas.contour_legend.isVisible()
    assert "deeplab-test 0.0.3" in w.canvas.contour_legend.labels[1].text()
    assert "random-test" in w.canvas.contour_legend.labels[0].text()
    assert "Compared: deeplab-test 0.0.3" in w.model_menu.status_label.text()
    # J (the menu's toggle) hides it, and shows it again
    w.model_menu.second_action.trigger()
    assert not w.controls.second.isChecked() and not item.isVisible() and not w.canvas.contour_legend.isVisible()
    w.model_menu.second_action.trigger()
    assert item.isVisible()
    # stop comparing: the outline and the column go
    w.model_menu.stop_comparing()
    assert not item.isVisible() and table.isColumnHidden(Column.DISAGREEMENT)
    assert all(e.disagreement is None for e in s.entries)
    _close(w)


def test_switching_the_model_keeps_a_correction_and_reruns_the_predictions(
        qtbot, random_model, deeplab_model, folder) -> None:
    w = _window(qtbot, random_model)
    _open(qtbot, w, folder)
    ed = w.editing
    h, wd = w.session.current_images().rgb.shape[:2]
    ed.tools.set_tool(Tool.NEW_CONTOUR)
    ed.tools.lasso([(0, 0), (wd / 2, 0), (wd / 2, h), (0, h)])  # a real correction, not saved
    corrected = ed.current_edit().mask.copy()
    image = w.session.entries[0].case.image
    with qtbot.waitSignal(w.session.model_ready, timeout=WAIT_MS):
        w.model_menu.use_model(deeplab_model)  # Model > Open Model… / Recent Models
    assert "deeplab-test 0.0.3" in w.model_label.text()
    qtbot.waitUntil(lambda: all(e.predicted for e in w.session.entries), timeout=WAIT_MS)
    edit = ed.book.get(image)
    assert edit is not None and edit.dirty and np.array_equal(edit.mask, corrected)
    assert str(deeplab_model.resolve()) in w.settings.recent_models
    names = [a.text() for a in (w.model_menu.refresh_recent() or w.model_menu.recent.actions())]
    assert deeplab_model.name in names
    _close(w)


def test_the_ensemble_is_offered_only_when_it_scores_higher(qtbot, random_model, deeplab_model, folder) -> None:
    w = _window(qtbot, random_model)
    _open(qtbot, w, folder)
    s, menu = w.session, w.model_menu
    assert not menu.ensemble_action.isEnabled()  # nothing compared
    _compare(qtbot, w, deeplab_model)
    # measured on the folder's ground truth once both models have predicted it
    qtbot.waitUntil(lambda: s.second.verdict is not None, timeout=WAIT_MS)
    measured = s.second.verdict
    assert measured.n == N_IMAGES
    assert menu.ensemble_action.isEnabled() == measured.better
    # the rule, either way
    s.second._set_verdict(EnsembleVerdict(N_IMAGES, 0.7, 0.6, 0.7))  # a tie is not higher
    assert not menu.ensemble_action.isEnabled()
    assert "not offered" in menu.ensemble_action.toolTip()
    s.second._set_verdict(EnsembleVerdict(N_IMAGES, 0.5, 0.6, 0.65))
    assert menu.ensemble_action.isEnabled()
    # chosen: the primary model becomes the mean of the two maps, at the mean threshold
    maps_a = [s.cache.load_u8(e.case.image) for e in s.entries]
    maps_b = [s.second.cache.load_u8(e.case.image) for e in s.entries]
    with qtbot.waitSignal(s.model_ready, timeout=WAIT_MS):
        menu.ensemble_action.trigger()
    assert isinstance(s.header, EnsembleHeader) and s.ensemble_with == deeplab_model
    assert menu.ensemble_action.isChecked()
    assert s.threshold == pytest.approx((0.45 + 0.5) / 2)
    assert "Ensemble (random-test 0.0.1 + deeplab-test 0.0.3)" in w.model_label.text()
    qtbot.waitUntil(lambda: all(e.predicted for e in s.entries), timeout=WAIT_MS)
    for entry, a, b in zip(s.entries, maps_a, maps_b, strict=True):
        ens = s.cache.load_u8(entry.case.image).astype(np.float32)
        assert np.abs(ens - (a.astype(np.float32) + b) / 2).max() <= 1.0  # 8-bit maps: within a level
    # off again: back to the first model
    with qtbot.waitSignal(s.model_ready, timeout=WAIT_MS):
        menu.ensemble_action.trigger()
    assert s.ensemble_with is None and not isinstance(s.header, EnsembleHeader)
    _close(w)


def test_a_comparison_chosen_before_the_folder_opens(qtbot, random_model, deeplab_model, folder) -> None:
    """``dermaseg PATH --compare-with MODEL``: the second model is chosen first, then the folder opens."""
    w = _window(qtbot, random_model)
    assert w.model_menu.compare_with(deeplab_model)
    _open(qtbot, w, folder)
    s = w.session
    qtbot.waitUntil(lambda: s.second.loaded and all(e.disagreement is not None for e in s.entries),
                    timeout=WAIT_MS)
    assert "loading" not in w.model_menu.status_label.text()
    _close(w)

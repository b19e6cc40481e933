"""The overlay composition (pure NumPy) and the canvas's rendering of it."""

import numpy as np
import pytest

from dermaseg_app.gui.canvas.overlay import (
    COMPARISON_LEGEND,
    FN_COLOUR,
    FP_COLOUR,
    TP_COLOUR,
    comparison_overlay,
    heatmap_overlay,
    prediction_overlay,
)


def _masks():
    pred = np.zeros((8, 10), bool)
    gt = np.zeros((8, 10), bool)
    pred[1:5, 1:6] = True
    gt[3:7, 4:9] = True
    return pred, gt


def test_comparison_colours_at_known_pixels() -> None:
    pred, gt = _masks()
    rgba = comparison_overlay(pred, gt, opacity=0.5).rgba()
    assert rgba.shape == (8, 10, 4) and rgba.dtype == np.uint8
    a = round(0.5 * 255)
    assert tuple(rgba[3, 4]) == (*TP_COLOUR, a)  # both
    assert tuple(rgba[1, 1]) == (*FP_COLOUR, a)  # prediction only
    assert tuple(rgba[6, 8]) == (*FN_COLOUR, a)  # ground truth only
    assert rgba[0, 9, 3] == 0  # true negative: transparent, the image shows
    # every pixel is exactly one class
    classes = (pred & gt).sum() + (pred & ~gt).sum() + (~pred & gt).sum()
    assert (rgba[..., 3] > 0).sum() == classes


def test_legend_matches_overlay_colours() -> None:
    assert [e.colour for e in COMPARISON_LEGEND] == [TP_COLOUR, FP_COLOUR, FN_COLOUR]
    assert TP_COLOUR == (255, 255, 0) and FP_COLOUR == (255, 0, 0) and FN_COLOUR == (0, 255, 0)


def test_comparison_rejects_size_mismatch() -> None:
    with pytest.raises(ValueError):
        comparison_overlay(np.zeros((4, 4), bool), np.zeros((4, 5), bool), 0.5)


def test_prediction_fill_and_opacity() -> None:
    pred, _ = _masks()
    rgba = prediction_overlay(pred, opacity=1.0).rgba()
    assert (rgba[pred, 3] == 255).all() and (rgba[~pred, 3] == 0).all()
    assert (prediction_overlay(pred, 0.0).rgba()[..., 3] == 0).all()


def test_heatmap_transparent_where_certainly_skin() -> None:
    prob = np.array([[0, 5, 128, 255]], np.uint8)
    rgba = heatmap_overlay(prob, 1.0).rgba()
    assert rgba[0, 0, 3] == 0 and rgba[0, 1, 3] == 0
    assert 0 < rgba[0, 2, 3] < rgba[0, 3, 3]


def test_indexed_overlay_becomes_the_same_qimage_pixels(qapp) -> None:
    from dermaseg_app.gui.canvas.qimage import to_qimage

    pred, gt = _masks()
    overlay = comparison_overlay(pred, gt, opacity=0.6)
    image = to_qimage(overlay)
    expected = overlay.rgba()
    for y, x in ((3, 4), (1, 1), (6, 8), (0, 9)):
        c = image.pixelColor(x, y)
        assert (c.red(), c.green(), c.blue(), c.alpha()) == tuple(int(v) for v in expected[y, x])


def test_contours_to_path_closed_outlines(qapp) -> None:
    from PySide6.QtCore import QPointF

    from dermaseg_app.gui.canvas.image_view import contours_to_path

    square = np.array([[0, 0], [10, 0], [10, 5], [0, 5]], float)
    tri = np.array([[20, 20], [30, 25], [20, 30]], float)
    path = contours_to_path([square, tri])
    assert path.elementCount() == 9
    assert path.contains(QPointF(5, 2)) and path.contains(QPointF(22, 25)) and not path.contains(QPointF(15, 15))
    assert contours_to_path([]).isEmpty()


def test_large_image_outline_is_exact_when_zoomed_in() -> None:
    from dermaseg_app.gui.canvas.renderer import DisplayOptions, render
    from dermaseg_app.gui.case_images import CaseImages, downscale

    h, w = 2100, 2800  # > 4 MP: the live outline comes from the preview
    rgb = np.zeros((h, w, 3), np.uint8)
    prob = np.zeros((h, w), np.uint8)
    prob[500:1501, 701:1900] = 255
    images = CaseImages(rgb, downscale(rgb))
    images.set_prob(prob)
    rendered = render(images, DisplayOptions(threshold=0.5))
    assert rendered.contours_full is not None and rendered.contour_scale < 1
    approx = np.concatenate(rendered.contours)
    exact = np.concatenate(rendered.contours_full())
    # the exact outline lies on the mask's edge pixels (centres at +0.5)
    assert exact[:, 0].min() == 701.5 and exact[:, 0].max() == 1899.5
    assert exact[:, 1].min() == 500.5 and exact[:, 1].max() == 1500.5
    assert np.abs(approx[:, 0].min() - 701.5) < 3  # the preview outline is close

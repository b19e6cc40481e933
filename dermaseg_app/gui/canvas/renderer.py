"""What the canvas draws for one case under the current display options (NumPy only).

``render(images, options)`` returns the overlay at preview resolution, a function that makes it at
full resolution (called only when the user zooms in that far), and the contour at the threshold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np

from dermaseg_app.gui.canvas.overlay import (
    IndexedOverlay,
    comparison_overlay,
    heatmap_overlay,
    prediction_overlay,
    threshold_u8,
)
from dermaseg_app.gui.case_images import CaseImages


@dataclass(frozen=True)
class DisplayOptions:
    threshold: float = 0.5
    opacity: float = 0.45
    heatmap: bool = False
    compare: bool = False
    show_mask: bool = True
    second: bool = True  # the compared model's contour, when a second model is compared


@dataclass
class Rendered:
    overlay_preview: IndexedOverlay | None
    overlay_full: object  # Callable[[], IndexedOverlay] | None
    contours: list[np.ndarray]
    compared: bool  # the ground-truth colouring is drawn
    contours_full: Callable[[], list[np.ndarray]] | None = None  # exact outline, when ``contours``
    contour_scale: float = 1.0  # ... were traced at this fraction of full resolution
    second_contours: list[np.ndarray] | None = None  # the compared model's outline (None: not drawn)


def _overlay(prob: np.ndarray, gt: np.ndarray | None, options: DisplayOptions) -> IndexedOverlay:
    if options.heatmap:
        return heatmap_overlay(prob, options.opacity)
    mask = threshold_u8(prob, options.threshold)
    if options.compare and gt is not None:
        return comparison_overlay(mask, gt, options.opacity)
    return prediction_overlay(mask, options.opacity)


def mask_contours(mask: np.ndarray, scale: float = 1.0) -> list[np.ndarray]:
    """Outlines of a bool mask as (N, 2) float arrays of (x, y) pixel-edge coordinates, scaled."""
    found, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for c in found:
        if len(c) > 8:  # drop points within 0.6 px of the outline: the same line, far fewer points
            c = cv2.approxPolyDP(c, 0.6, True)
        pts = c.reshape(-1, 2).astype(np.float32)
        out.append((pts + 0.5) * np.float32(scale))
    return out


CONTOUR_FULL_RES_MAX_PIXELS = 4_000_000


def second_contours(images: CaseImages, options: DisplayOptions, threshold: float) -> list[np.ndarray] | None:
    """The compared model's outline at its own threshold (None when there is none to draw)."""
    if not options.second or images.second_prob is None or images.second_preview is None:
        return None
    h, w = images.second_prob.shape
    if h * w <= CONTOUR_FULL_RES_MAX_PIXELS:
        return mask_contours(threshold_u8(images.second_prob, threshold))
    pw = images.second_preview.shape[1]
    return mask_contours(threshold_u8(images.second_preview, threshold), w / pw)


def render(images: CaseImages, options: DisplayOptions, second_threshold: float = 0.5) -> Rendered:
    rendered = _render(images, options)
    rendered.second_contours = second_contours(images, options, second_threshold)
    return rendered


def _render(images: CaseImages, options: DisplayOptions) -> Rendered:
    if images.prob is None or images.prob_preview is None or not options.show_mask:
        return Rendered(None, None, [], False)
    compared = options.compare and images.gt is not None and not options.heatmap
    preview = _overlay(images.prob_preview, images.gt_preview, options)
    full = partial(_overlay, images.prob, images.gt, options)
    h, w = images.prob.shape
    full_contours = partial(_full_contours, images.prob, options.threshold)
    if h * w <= CONTOUR_FULL_RES_MAX_PIXELS:
        return Rendered(preview, full, full_contours(), compared)
    # large images: trace the preview mask (scaled to image coordinates) so the slider stays live;
    # the exact outline is traced when the view zooms in past the preview (``contours_full``)
    ph, pw = images.prob_preview.shape
    contours = mask_contours(threshold_u8(images.prob_preview, options.threshold), w / pw)
    return Rendered(preview, full, contours, compared, contours_full=full_contours, contour_scale=pw / w)


def _full_contours(prob: np.ndarray, threshold: float) -> list[np.ndarray]:
    return mask_contours(threshold_u8(prob, threshold))

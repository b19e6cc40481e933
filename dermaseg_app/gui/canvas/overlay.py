"""Overlay images composed in NumPy (no Qt): prediction fill, probability heat-map, and the
ground-truth comparison (TP yellow, FP red, FN green, TN transparent -- the convention of the
comparison figures in the skin-lesion segmentation literature).

Every function returns an ``IndexedOverlay`` (class index per pixel + RGBA palette, straight alpha;
``.rgba()`` gives the HxWx4 array) that the
canvas draws over the image. Keeping composition here makes it testable pixel by pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dermaseg_app.core.metrics import threshold_u8  # noqa: F401 - the overlays' threshold, re-exported

RGB = tuple[int, int, int]

TP_COLOUR: RGB = (255, 255, 0)  # yellow: lesion found
FP_COLOUR: RGB = (255, 0, 0)  # red: marked but not lesion
FN_COLOUR: RGB = (0, 255, 0)  # green: lesion missed
FILL_COLOUR: RGB = (0, 140, 255)  # the prediction alone
CONTOUR_COLOUR: RGB = (0, 229, 255)
SECOND_CONTOUR_COLOUR: RGB = (255, 150, 40)  # the compared model's outline, dashed


@dataclass(frozen=True)
class LegendEntry:
    label: str
    colour: RGB


@dataclass(frozen=True)
class ComparisonPalette:
    """The colours of the ground-truth comparison; the meaning (TP / FP / FN) never changes."""

    label: str
    tp: RGB
    fp: RGB
    fn: RGB

    def legend(self) -> tuple[LegendEntry, ...]:
        return (LegendEntry("true positive", self.tp),
                LegendEntry("false positive (model only)", self.fp),
                LegendEntry("false negative (missed)", self.fn))


# "colour_blind": Paul Tol's colour-blind-safe purple and orange, and white: told apart by
# lightness too, so with every common colour-vision deficiency; none of them the green, yellow or
# blue of the calibration stickers on dermoscopy images
COMPARISON_PALETTES: dict[str, ComparisonPalette] = {
    "standard": ComparisonPalette("Standard: true positive yellow, false positive red, false negative green",
                                  TP_COLOUR, FP_COLOUR, FN_COLOUR),
    "colour_blind": ComparisonPalette("Colour-blind safe: true positive purple, false positive orange, "
                                      "false negative white",
                                      (170, 51, 119), (238, 119, 51), (255, 255, 255)),
}
# the prediction's fill and its outline
MASK_COLOURS: dict[str, tuple[str, RGB, RGB]] = {
    "blue": ("Blue", FILL_COLOUR, CONTOUR_COLOUR),
    "magenta": ("Magenta", (215, 48, 200), (255, 110, 240)),
    "orange": ("Orange", (240, 120, 0), (255, 170, 60)),
    "white": ("White", (255, 255, 255), (255, 255, 255)),
    "black": ("Black", (0, 0, 0), (30, 30, 30)),
}


@dataclass(frozen=True)
class Colours:
    """The overlay colours the window draws with (chosen in Preferences)."""

    comparison: ComparisonPalette = COMPARISON_PALETTES["standard"]
    fill: RGB = FILL_COLOUR
    contour: RGB = CONTOUR_COLOUR


_colours = Colours()


def colours() -> Colours:
    return _colours


def set_colours(comparison: str = "standard", mask: str = "blue") -> Colours:
    """Draw with these colours from now on (unknown keys fall back to the standard ones)."""
    global _colours
    _, fill, contour = MASK_COLOURS.get(mask, MASK_COLOURS["blue"])
    _colours = Colours(COMPARISON_PALETTES.get(comparison, COMPARISON_PALETTES["standard"]), fill, contour)
    return _colours


COMPARISON_LEGEND: tuple[LegendEntry, ...] = COMPARISON_PALETTES["standard"].legend()


def _alpha(opacity: float) -> int:
    return int(round(255 * min(1.0, max(0.0, float(opacity)))))


@dataclass(frozen=True)
class IndexedOverlay:
    """An overlay as a class index per pixel and a palette of RGBA colours (straight alpha).

    Cheap to make (no per-pixel colour arrays) and drawn by Qt as an 8-bit indexed image;
    ``rgba()`` expands it to HxWx4 for tests and exports.
    """

    index: np.ndarray  # HxW uint8
    palette: np.ndarray  # (N, 4) uint8, N <= 256

    def rgba(self) -> np.ndarray:
        return self.palette[self.index]

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.index.shape[0]), int(self.index.shape[1])


def prediction_overlay(mask: np.ndarray, opacity: float, colour: RGB | None = None) -> IndexedOverlay:
    """The predicted mask as a semi-transparent fill (default: the chosen mask colour)."""
    mask = np.asarray(mask, dtype=bool)
    colour = _colours.fill if colour is None else colour
    palette = np.array([(0, 0, 0, 0), (*colour, _alpha(opacity))], np.uint8)
    return IndexedOverlay(mask.view(np.uint8), palette)


def comparison_overlay(pred: np.ndarray, gt: np.ndarray, opacity: float) -> IndexedOverlay:
    """TP yellow, FP red, FN green (or the chosen palette's colours) at ``opacity``; true negatives
    transparent (the image shows)."""
    pred = np.asarray(pred, dtype=bool)
    gt = np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    a = _alpha(opacity)
    c = _colours.comparison
    palette = np.array([(0, 0, 0, 0), (*c.fp, a), (*c.fn, a), (*c.tp, a)], np.uint8)
    index = pred.view(np.uint8) | (gt.view(np.uint8) << 1)  # 0 TN, 1 FP, 2 FN, 3 TP
    return IndexedOverlay(index, palette)


def heat_palette(opacity: float, floor: int) -> np.ndarray:
    """The heat-map's 256 RGBA colours (inferno; transparent below ``floor``)."""
    levels = np.arange(256, dtype=np.uint8)
    bgr = cv2.applyColorMap(levels.reshape(-1, 1), cv2.COLORMAP_INFERNO).reshape(256, 3)
    a = levels.astype(np.float32) * (_alpha(opacity) / 255.0)
    a = np.maximum(a, 0.35 * _alpha(opacity))
    a[:floor] = 0
    palette = np.empty((256, 4), np.uint8)
    palette[:, :3] = bgr[:, ::-1]
    palette[:, 3] = np.round(a).astype(np.uint8)
    return palette


def heatmap_overlay(prob_u8: np.ndarray, opacity: float, floor: int = 13) -> IndexedOverlay:
    """The probability map in the 'inferno' colour scale; probabilities below ``floor``/255 are
    transparent so the skin stays visible, the rest fade in with the probability."""
    return IndexedOverlay(np.asarray(prob_u8, dtype=np.uint8), heat_palette(opacity, floor))

"""Lesion measurements from a mask (and the image): size, ABCD-style features (issue 15). No Qt, no torch.

A research aid, not a diagnosis. Definitions, thresholds and references: docs/measurements.md.

Use::

    cal = calibration_from_file(image_path)          # EXIF/TIFF resolution when plausible, else px
    cmap = colour_map(rgb)                           # once per image (~20 ms per megapixel)
    m = measure(mask, cmap, cal)                     # per mask: a few ms on a 1000x1000 mask
    m.area, m.unit, m.max_diameter, m.asymmetry_axes, m.colours, m.to_dict()

``measure`` takes the mask (HxW, nonzero = lesion) and optionally the RGB image (or its
precomputed ``ColourMap``) and a ``Calibration``; geometry is computed in pixels and kept in
pixels (``*_px``); the properties without ``_px`` are in the calibration's unit (mm, or px
when uncalibrated: ``unit`` says which). ``Measurements.with_calibration`` re-scales without
measuring again (a calibration set in the window after the mask was measured).

Coordinates are the pixel-edge coordinates of core.geometry: pixel (row r, column c) is the
unit square [c, c+1] x [r, r+1].

Definitions (summary; the lesion is every mask pixel, all components, holes excluded):

* area: the number of mask pixels (= the area of core.geometry's exact outline polygons);
* perimeter: Crofton estimate over 4 directions (``skimage.measure.perimeter_crofton``, same
  numbers, evaluated here with OpenCV for speed), the total length of every outer and hole
  boundary; within ~0.1 % of the true length for a digitised ellipse, where the length of the
  pixel-staircase outline would be ~27 % long and an 8-connected chain ~5 % long;
* max / min diameter (Feret): over the convex hull (``cv2.convexHull``) of the pixel squares of
  every component; the maximum is the largest distance between two hull vertices, the minimum
  the smallest caliper width, which is attained with one caliper flush with a hull edge (the
  rotating-calipers theorem, Toussaint 1983), so it is the minimum over hull edges of the
  farthest hull vertex from that edge's line. A digitised shape measures up to ~1 px more than
  the continuous one (the pixel squares stick out by up to half a pixel on each side);
* equivalent diameter: sqrt(4 A / pi), the diameter of the disc of the same area;
* asymmetry: for each principal axis through the centroid (second-order image moments of the
  whole lesion; axis 1 the major axis), the share of the lesion that does not overlap its
  mirror image across that axis, area(L - mirror(L)) / area(L) in [0, 1] (= area(L xor mirror)
  / (2 area) because a reflection keeps the area; Stoecker, Li & Moss 1992). An axis is
  asymmetric when its share exceeds ``asymmetry_threshold`` (default 0.15, a choice of this
  tool, not a published cut-off);
* border irregularity: the compactness index P^2 / (4 pi A), 1 for a disc and larger for
  elongated or ragged borders (and for lesions in several parts);
* colours: each lesion pixel (sRGB, D65) in CIELAB is given the nearest of six dermoscopic
  reference colours (white, red, light brown, dark brown, blue-grey, black) when within
  ``COLOUR_MAX_DISTANCE`` (Delta E 1976), otherwise none; a colour is reported when it covers
  more than ``colour_min_share`` (default 5 %) of the lesion's pixels. The reference values are
  approximate and this tool's own, not a published table (see ``REFERENCE_COLOURS_RGB``); so
  are the distance cut-off and the share.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from dermaseg_app.core.calibration import UNCALIBRATED, Calibration, calibration_from_file, calibration_from_resolution

__all__ = [
    "ASYMMETRY_THRESHOLD",
    "COLOUR_MAX_DISTANCE",
    "COLOUR_MIN_SHARE",
    "COLOUR_NAMES",
    "MEASUREMENT_COLUMNS",
    "REFERENCE_COLOURS_RGB",
    "Calibration",
    "ColourMap",
    "Measurements",
    "calibration_from_file",
    "calibration_from_resolution",
    "colour_map",
    "follow_up",
    "measure",
]

# Choices of this tool, not published cut-offs (docs/measurements.md says what was looked for):
ASYMMETRY_THRESHOLD = 0.15  # share of the lesion outside its mirror image, per principal axis
COLOUR_MIN_SHARE = 0.05  # a colour is reported when it covers more than this share of the lesion
COLOUR_MAX_DISTANCE = 30.0  # Delta E 1976 in CIELAB to the nearest reference colour

# -- colours ----------------------------------------------------------------------------------

COLOUR_NAMES = ("white", "red", "light brown", "dark brown", "blue-grey", "black")
# Approximate sRGB appearances of the six colours of the ABCD rule (Stolz et al. 1994) in
# dermoscopy images, chosen for this tool (NOT a published table: none could be read; see
# docs/measurements.md, "Reference colours"). The table that public code attributes to Kasmi &
# Mokrani (IET Image Processing 10(6):448-455, 2016) was tried and not adopted: its "red"
# (118, 21, 17) is darker than its "dark brown" (135, 44, 5) and 14.5 Delta E from it, so the
# dark brown of pigmented naevi is counted as red (7 of the 8 bundled samples). Converted to
# CIELAB with the pixels' conversion (REFERENCE_COLOURS_LAB); the assignment rule (nearest
# reference within COLOUR_MAX_DISTANCE Delta E 1976, share > COLOUR_MIN_SHARE) is this tool's.
REFERENCE_COLOURS_RGB: dict[str, tuple[int, int, int]] = {
    "white": (235, 235, 235),
    "red": (200, 40, 40),
    "light brown": (195, 110, 50),
    "dark brown": (100, 50, 40),
    "blue-grey": (75, 125, 140),
    "black": (30, 30, 30),
}
_NONE = 255


def _rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 sRGB -> float32 CIELAB (D65), as skimage.color.rgb2lab (within ~0.2)."""
    arr = np.ascontiguousarray(rgb, dtype=np.float32).reshape(-1, 1, 3) / np.float32(255.0)
    return cv2.cvtColor(arr, cv2.COLOR_RGB2Lab).reshape(np.shape(rgb))


REFERENCE_COLOURS_LAB = _rgb_to_lab(np.array([REFERENCE_COLOURS_RGB[n] for n in COLOUR_NAMES], np.uint8))


def _nearest_colour(lab: np.ndarray, max_distance: float) -> np.ndarray:
    """(N, 3) CIELAB -> (N,) uint8 index of the nearest reference colour, 255 when it is farther
    than ``max_distance`` (Delta E 1976)."""
    d2 = ((lab[:, None, :] - REFERENCE_COLOURS_LAB[None, :, :]) ** 2).sum(axis=2)
    nearest = d2.argmin(axis=1).astype(np.uint8)
    nearest[d2[np.arange(len(nearest)), nearest] > max_distance ** 2] = _NONE
    return nearest


# RGB is looked up at 6 bits per channel (64^3 bins, each labelled by its centre's colour: at
# most ~2 Delta E from the exact answer), the table built once per distance cut-off (~50 ms)
_LUT_BITS = 6
_luts: dict[float, np.ndarray] = {}


def _colour_lut(max_distance: float) -> np.ndarray:
    lut = _luts.get(max_distance)
    if lut is None:
        n = 1 << _LUT_BITS
        centres = ((np.arange(n) << (8 - _LUT_BITS)) + (1 << (7 - _LUT_BITS))).astype(np.uint8)
        r, g, b = np.meshgrid(centres, centres, centres, indexing="ij")
        rgb = np.stack([r, g, b], axis=-1).reshape(-1, 3)
        lut = np.concatenate([_nearest_colour(_rgb_to_lab(rgb[i:i + 65536]).reshape(-1, 3), max_distance)
                              for i in range(0, len(rgb), 65536)])
        _luts[max_distance] = lut
    return lut


def _colour_labels(rgb_pixels: np.ndarray, max_distance: float) -> np.ndarray:
    """(..., 3) uint8 RGB -> (...) uint8 index into COLOUR_NAMES, 255 when none is close enough."""
    lut = _colour_lut(float(max_distance))
    shift = 8 - _LUT_BITS
    q = (rgb_pixels >> shift).astype(np.intp)
    return lut[(q[..., 0] << (2 * _LUT_BITS)) | (q[..., 1] << _LUT_BITS) | q[..., 2]]


@dataclass(frozen=True)
class ColourMap:
    """Every pixel's reference colour (index into COLOUR_NAMES, 255 for none), computed once per
    image so that measuring the mask again while editing only counts pixels."""

    labels: np.ndarray  # HxW uint8
    max_distance: float = COLOUR_MAX_DISTANCE

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.labels.shape[0]), int(self.labels.shape[1]))


def _as_rgb(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise ValueError(f"an image must be HxW or HxWx3 RGB, got shape {arr.shape}")
    arr = arr[:, :, :3]
    if arr.dtype != np.uint8:
        if arr.dtype.kind == "f":
            arr = np.clip(np.rint(arr * 255.0), 0, 255)
        arr = arr.astype(np.uint8)
    return arr


def colour_map(image: np.ndarray, max_distance: float = COLOUR_MAX_DISTANCE) -> ColourMap:
    """The ColourMap of an RGB image (HxWx3 uint8, or float in [0, 1])."""
    rgb = _as_rgb(image)
    labels = np.empty(rgb.shape[:2], np.uint8)
    step = max(1, (1 << 20) // max(1, rgb.shape[1]))  # bounded temporary memory for large images
    for i in range(0, rgb.shape[0], step):
        labels[i:i + step] = _colour_labels(rgb[i:i + step], max_distance)
    return ColourMap(labels, float(max_distance))


# -- geometry ---------------------------------------------------------------------------------

# skimage.measure.perimeter_crofton(directions=4): weight of each 2x2 configuration code
_CROFTON4 = np.array([
    0, np.pi / 4 * (1 + 1 / np.sqrt(2)), np.pi / (4 * np.sqrt(2)), np.pi / (2 * np.sqrt(2)),
    0, np.pi / 4 * (1 + 1 / np.sqrt(2)), 0, np.pi / (4 * np.sqrt(2)),
    np.pi / 4, np.pi / 2, np.pi / (4 * np.sqrt(2)), np.pi / (4 * np.sqrt(2)),
    np.pi / 4, np.pi / 2, 0, 0,
])
# skimage convolves with [[0,0,0],[0,1,4],[0,2,8]]; cv2.filter2D correlates: the flipped kernel
_CROFTON_KERNEL = np.array([[8, 2, 0], [4, 1, 0], [0, 0, 0]], np.float32)


def crofton_perimeter(mask01: np.ndarray) -> float:
    """skimage.measure.perimeter_crofton(mask, directions=4), the same sums, with OpenCV (a
    uint8 0/1 mask; ~4x faster, which the live panel needs)."""
    padded = cv2.copyMakeBorder(np.ascontiguousarray(mask01, np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    codes = cv2.filter2D(padded, cv2.CV_8U, _CROFTON_KERNEL, borderType=cv2.BORDER_CONSTANT)
    hist = cv2.calcHist([codes], [0], None, [16], [0, 16]).ravel().astype(np.float64)
    return float(_CROFTON4 @ hist)


def _feret(hull: np.ndarray) -> tuple[float, float, tuple, tuple]:
    """Max and min Feret diameters of a convex polygon (its vertices, (N, 2)), with their
    segments ((x0, y0), (x1, y1)). All vertex pairs and all edge-vertex pairs, in blocks of
    rows so that a hull of thousands of vertices stays within a few MB."""
    n = len(hull)
    if n < 2:
        p0 = tuple(hull[0])
        return 0.0, 0.0, (p0, p0), (p0, p0)
    block = max(1, 200_000 // n)
    best, bi, bj = -1.0, 0, 0
    for s in range(0, n, block):
        d2 = ((hull[s:s + block, None, :] - hull[None, :, :]) ** 2).sum(axis=2)
        k = int(d2.argmax())
        if d2.flat[k] > best:
            best, bi, bj = float(d2.flat[k]), s + k // n, k % n
    max_line = (tuple(map(float, hull[bi])), tuple(map(float, hull[bj])))
    if n < 3:
        return math.sqrt(best), 0.0, max_line, (tuple(hull[0]), tuple(hull[0]))
    edges = np.roll(hull, -1, axis=0) - hull
    lengths = np.hypot(edges[:, 0], edges[:, 1])
    ok = lengths > 0
    normals = np.stack([-edges[ok, 1], edges[ok, 0]], axis=1) / lengths[ok, None]
    starts = hull[ok]
    # for each edge, the farthest hull vertex from its line (the hull lies on one side)
    widths = np.empty(len(starts))
    far = np.empty(len(starts), np.intp)
    for s in range(0, len(starts), block):
        dist = np.abs(np.einsum("ekd,ed->ek", hull[None, :, :] - starts[s:s + block, None, :],
                                normals[s:s + block]))
        far[s:s + block] = dist.argmax(axis=1)
        widths[s:s + block] = dist[np.arange(len(dist)), far[s:s + block]]
    e = int(widths.argmin())
    p = hull[far[e]]
    foot = p - normals[e] * float(np.dot(p - starts[e], normals[e]))
    return math.sqrt(best), float(widths[e]), max_line, (tuple(map(float, p)), tuple(map(float, foot)))


_SQUARE = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], np.int32)


def _mirror_overlap(crop: np.ndarray, cx: float, cy: float, angle: float) -> int:
    """Pixels of ``crop`` (uint8 0/1) whose mirror image across the line through (cx, cy)
    (pixel-centre coordinates of the crop) at ``angle`` (radians) is also in the lesion."""
    c, s = math.cos(2 * angle), math.sin(2 * angle)
    # reflection across the line: p' = R (p - c) + c with R = [[cos 2t, sin 2t], [sin 2t, -cos 2t]]
    m = np.array([[c, s, cx - c * cx - s * cy], [s, -c, cy - s * cx + c * cy]], np.float64)
    h, w = crop.shape
    # the reflection is its own inverse, so dst(q) = crop(R q): the mirror image on the same grid
    mirrored = cv2.warpAffine(crop, m, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return int(cv2.countNonZero(cv2.bitwise_and(crop, mirrored)))


# -- measurements -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurements:
    """What ``measure`` found. Geometry in pixels (``*_px``); the properties without ``_px`` are
    in ``unit`` ("mm" when calibrated, else "px"; areas in unit squared).

    Drawing aids (pixel-edge coordinates): ``centroid``, ``axis_angles_deg`` (principal axes,
    degrees from the +x axis towards +y, i.e. clockwise on screen; major axis first),
    ``max_diameter_line`` and ``min_diameter_line`` (the two ends of each diameter).
    Undefined values (an empty mask; colours without an image) are None.
    """

    calibration: Calibration
    area_px: float
    perimeter_px: float
    max_diameter_px: float
    min_diameter_px: float
    equivalent_diameter_px: float
    components: int
    holes: int
    centroid: tuple[float, float] | None
    axis_angles_deg: tuple[float, float] | None
    asymmetry: tuple[float, float] | None
    asymmetry_axes: int | None
    asymmetry_threshold: float
    border_irregularity: float | None
    max_diameter_line: tuple[tuple[float, float], tuple[float, float]] | None
    min_diameter_line: tuple[tuple[float, float], tuple[float, float]] | None
    colours: tuple[str, ...] | None
    colour_shares: dict[str, float] | None
    colour_min_share: float
    image_shape: tuple[int, int] = (0, 0)
    seconds: float = field(default=0.0, compare=False)

    @property
    def empty(self) -> bool:
        return self.area_px == 0

    @property
    def unit(self) -> str:
        return self.calibration.unit

    @property
    def mm_per_px(self) -> float | None:
        return self.calibration.mm_per_px

    @property
    def area(self) -> float:
        return self.calibration.area(self.area_px)

    @property
    def perimeter(self) -> float:
        return self.calibration.length(self.perimeter_px)

    @property
    def max_diameter(self) -> float:
        return self.calibration.length(self.max_diameter_px)

    @property
    def min_diameter(self) -> float:
        return self.calibration.length(self.min_diameter_px)

    @property
    def equivalent_diameter(self) -> float:
        return self.calibration.length(self.equivalent_diameter_px)

    def with_calibration(self, calibration: Calibration | None) -> Measurements:
        """The same measurements in another calibration's unit (nothing is measured again)."""
        return replace(self, calibration=calibration or UNCALIBRATED)

    def to_dict(self) -> dict[str, Any]:
        """The issue's JSON fields (``area_mm2``, ``perimeter_mm``, ``max_diameter_mm``,
        ``min_diameter_mm``, ``asymmetry_axes``, ``asymmetry``, ``border_irregularity``,
        ``colours``) plus ``unit``, ``mm_per_px``, ``calibration_source``, ``calibration_note``,
        ``equivalent_diameter_mm``, ``components``, ``holes``, ``colour_shares`` and the
        thresholds. The ``*_mm`` / ``*_mm2`` keys always exist; uncalibrated (``unit`` "px",
        ``mm_per_px`` null) they hold pixels / square pixels."""
        r = _round
        return {
            "unit": self.unit,
            "mm_per_px": self.mm_per_px,
            "calibration_source": self.calibration.source,
            "calibration_note": self.calibration.note or None,
            "area_mm2": r(self.area),
            "perimeter_mm": r(self.perimeter),
            "max_diameter_mm": r(self.max_diameter),
            "min_diameter_mm": r(self.min_diameter),
            "equivalent_diameter_mm": r(self.equivalent_diameter),
            "asymmetry_axes": self.asymmetry_axes,
            "asymmetry": None if self.asymmetry is None else [r(a) for a in self.asymmetry],
            "asymmetry_threshold": self.asymmetry_threshold,
            "border_irregularity": r(self.border_irregularity),
            "colours": None if self.colours is None else list(self.colours),
            "colour_shares": None if self.colour_shares is None else {k: r(v) for k, v in self.colour_shares.items()},
            "colour_min_share": self.colour_min_share,
            "components": self.components,
            "holes": self.holes,
            "area_px": self.area_px,
        }

    def csv_fields(self) -> dict[str, Any]:
        """Cells for predict's CSV and the export manifest (``MEASUREMENT_COLUMNS``)."""
        f = _cell
        return {
            "unit": self.unit,
            "mm_per_px": "" if self.mm_per_px is None else f"{self.mm_per_px:.6g}",
            "calibration_source": self.calibration.source or "",
            "area": f(self.area), "perimeter": f(self.perimeter),
            "max_diameter": f(self.max_diameter), "min_diameter": f(self.min_diameter),
            "equivalent_diameter": f(self.equivalent_diameter),
            "asymmetry_axes": "" if self.asymmetry_axes is None else self.asymmetry_axes,
            "asymmetry_major": "" if self.asymmetry is None else f(self.asymmetry[0]),
            "asymmetry_minor": "" if self.asymmetry is None else f(self.asymmetry[1]),
            "border_irregularity": f(self.border_irregularity),
            "colours": "" if self.colours is None else ";".join(self.colours),
            "components": self.components,
        }


# appended to predict's CSV and the export manifest; area in unit^2, lengths in unit
MEASUREMENT_COLUMNS = (
    "unit", "mm_per_px", "calibration_source", "area", "perimeter", "max_diameter", "min_diameter",
    "equivalent_diameter", "asymmetry_axes", "asymmetry_major", "asymmetry_minor",
    "border_irregularity", "colours", "components",
)


def _round(value: float | None, digits: int = 6) -> float | None:
    if value is None:
        return None
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def _cell(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return f"{value:.6g}"


def measure(mask: np.ndarray, image: np.ndarray | ColourMap | None = None,
            calibration: Calibration | None = None, *,
            asymmetry_threshold: float = ASYMMETRY_THRESHOLD,
            colour_min_share: float = COLOUR_MIN_SHARE,
            colour_max_distance: float = COLOUR_MAX_DISTANCE) -> Measurements:
    """Measure the lesion in ``mask`` (HxW, nonzero = lesion); see the module docstring.

    ``image``: the RGB image (HxWx3, the mask's size) or its ``colour_map`` for the colours
    (None: no colours). ``calibration``: None for pixels. Raises ValueError for a mask that is
    not 2-D or an image of another size.
    """
    import time

    t0 = time.perf_counter()
    cal = calibration or UNCALIBRATED
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"a mask must be 2-D (HxW), got shape {m.shape}")
    shape = (int(m.shape[0]), int(m.shape[1]))
    if image is not None:
        image_shape = image.shape if isinstance(image, ColourMap) else np.shape(image)[:2]
        if tuple(image_shape[:2]) != shape:
            raise ValueError(f"the image ({image_shape[1]}x{image_shape[0]}) and the mask "
                             f"({shape[1]}x{shape[0]}) differ in size")
    m01 = m.view(np.uint8) if m.dtype == np.bool_ else (m != 0).view(np.uint8)
    m01 = np.ascontiguousarray(m01)
    c0, r0, bw, bh = cv2.boundingRect(m01)
    empty = Measurements(cal, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0, None, None, None, None,
                         float(asymmetry_threshold), None, None, None,
                         None if image is None else (), None if image is None else {},
                         float(colour_min_share), shape)
    if bw == 0 or bh == 0:
        return replace(empty, seconds=time.perf_counter() - t0)
    r1, c1 = r0 + bh, c0 + bw
    crop = np.ascontiguousarray(m01[r0:r1, c0:c1])

    area = float(cv2.countNonZero(crop))
    perimeter = crofton_perimeter(crop)

    # components (8-connected) and holes: outer and inner contours
    found, hierarchy = cv2.findContours(crop, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    parents = hierarchy[0][:, 3]
    outer = [c for c, p in zip(found, parents, strict=True) if p == -1]
    components, holes = len(outer), int((parents != -1).sum())
    # the hull of the pixel squares = the hull of the pixel centres' hull grown by the unit
    # square: the corners of the centre hull's vertices (contour points are pixel centres, and
    # CHAIN_APPROX_SIMPLE keeps the ends of straight runs, which is enough for a hull)
    centre_hull = cv2.convexHull(np.concatenate(outer)).reshape(-1, 2)
    corners = (centre_hull[:, None, :] + _SQUARE[None]).reshape(-1, 2) + np.array([c0, r0], np.int32)
    hull = cv2.convexHull(corners).reshape(-1, 2).astype(np.float64)
    max_d, min_d, max_line, min_line = _feret(hull)

    # principal axes (second-order central moments) and mirror overlap
    mo = cv2.moments(crop, binaryImage=True)
    cx, cy = mo["m10"] / mo["m00"], mo["m01"] / mo["m00"]  # pixel-centre coordinates of the crop
    theta = 0.5 * math.atan2(2 * mo["mu11"], mo["mu20"] - mo["mu02"])  # the major axis
    angles = (theta, theta + math.pi / 2)
    shares = tuple(max(0.0, 1.0 - _mirror_overlap(crop, cx, cy, a) / area) for a in angles)
    n_asym = sum(s > asymmetry_threshold for s in shares)

    colours = shares_by_colour = None
    if image is not None:
        if isinstance(image, ColourMap):
            labels = image.labels[r0:r1, c0:c1]
        else:
            labels = _colour_labels(_as_rgb(image)[r0:r1, c0:c1], colour_max_distance)
        counts = cv2.calcHist([np.ascontiguousarray(labels)], [0], crop, [256], [0, 256]).ravel()
        shares_by_colour = {name: float(counts[i]) / area for i, name in enumerate(COLOUR_NAMES)}
        colours = tuple(n for n in COLOUR_NAMES if shares_by_colour[n] > colour_min_share)

    def deg(a: float) -> float:
        return math.degrees(a) % 180.0

    return Measurements(
        calibration=cal, area_px=area, perimeter_px=perimeter, max_diameter_px=max_d,
        min_diameter_px=min_d, equivalent_diameter_px=math.sqrt(4.0 * area / math.pi),
        components=components, holes=holes,
        centroid=(cx + c0 + 0.5, cy + r0 + 0.5), axis_angles_deg=(deg(angles[0]), deg(angles[1])),
        asymmetry=(float(shares[0]), float(shares[1])), asymmetry_axes=int(n_asym),
        asymmetry_threshold=float(asymmetry_threshold),
        border_irregularity=perimeter ** 2 / (4.0 * math.pi * area),
        max_diameter_line=max_line, min_diameter_line=min_line,
        colours=colours, colour_shares=shares_by_colour, colour_min_share=float(colour_min_share),
        image_shape=shape, seconds=time.perf_counter() - t0,
    )


# -- follow-up --------------------------------------------------------------------------------

FOLLOW_UP_FIELDS = ("area", "perimeter", "max_diameter", "min_diameter", "equivalent_diameter")


def follow_up(before: Measurements, after: Measurements) -> dict[str, Any]:
    """Two measurements of the same lesion side by side, with the change in percent.

    ``{"unit", "comparable", "note", "fields": {name: {"before", "after", "change_percent"}}}``
    for ``FOLLOW_UP_FIELDS`` (area in unit squared). Changes are computed when both are
    calibrated (mm), or both uncalibrated (px: meaningful only at the same magnification, which
    ``note`` says); not when one is calibrated and the other is not (``comparable`` False,
    ``change_percent`` None). ``change_percent`` is also None where ``before`` is 0.
    """
    both_mm = before.calibration.calibrated and after.calibration.calibrated
    comparable = both_mm or (not before.calibration.calibrated and not after.calibration.calibrated)
    note = ""
    if not comparable:
        note = "one image is calibrated and the other is not: no change computed"
    elif not both_mm:
        note = "both uncalibrated: changes in pixels assume the same magnification"
    fields = {}
    for name in FOLLOW_UP_FIELDS:
        a, b = float(getattr(before, name)), float(getattr(after, name))
        change = None
        if comparable and a > 0:
            change = 100.0 * (b - a) / a
        fields[name] = {"before": a, "after": b, "change_percent": change}
    return {"unit": before.unit if before.unit == after.unit else None, "comparable": comparable,
            "note": note, "fields": fields}


def measure_file(image: str | os.PathLike[str], mask: np.ndarray,
                 calibration: Calibration | None = None) -> dict[str, Any]:
    """The CSV measurement columns (``Measurements.csv_fields``) of ``mask`` drawn on the file
    ``image``: the image is read again for its colours (measured without colours when it cannot
    be read or differs from the mask in size); ``calibration``, else the file's resolution."""
    from dermaseg_app.core.imageio import ImageReadError, read_image

    rgb: np.ndarray | None
    try:
        rgb = read_image(image)
    except ImageReadError:
        rgb = None
    if rgb is not None and rgb.shape[:2] != mask.shape:
        rgb = None
    return measure(mask, rgb, calibration or calibration_from_file(image)).csv_fields()

"""Whole-mask clean-up operations: fill holes, remove islands, keep the largest component,
smooth, grow/shrink, simplify. Each works on every component and hole, and only inside the
bounding box of the mask (plus the margin the operation needs)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from dermaseg_app.core.edit.base import BBox, check_mask
from dermaseg_app.core.edit.ops import EditOp, EditResult, Params, register, result
from dermaseg_app.core.edit.outline import simplify_geometry
from dermaseg_app.core.edit.polygon import rasterize_geometry
from dermaseg_app.core.geometry import mask_to_polygons


def fill_holes(mask: np.ndarray, max_area: int | None = None) -> EditResult:
    """Fill the holes (background not connected to the image border; 4-connected) of every
    component; only holes of at most ``max_area`` pixels when given."""
    mask = check_mask(mask)
    op = EditOp.fill_holes(max_area)
    region = BBox.of_mask(mask)
    if region is None:
        return EditResult(mask.copy(), None, op)
    crop = mask[region.slices]
    bg = np.pad(~crop, 1, constant_values=True).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(bg, connectivity=4)
    outside = labels[0, 0]
    fill = np.zeros(n, dtype=bool)
    fill[1:] = True
    fill[outside] = False
    if max_area is not None:
        fill &= stats[:, cv2.CC_STAT_AREA] <= max_area
    out = mask.copy()
    out[region.slices] |= fill[labels[1:-1, 1:-1]]
    return result(mask, out, region, op)


def remove_islands(mask: np.ndarray, min_area: int) -> EditResult:
    """Remove the components (8-connected) smaller than ``min_area`` pixels."""
    mask = check_mask(mask)
    op = EditOp.remove_islands(min_area)
    region = BBox.of_mask(mask)
    if region is None:
        return EditResult(mask.copy(), None, op)
    crop = mask[region.slices].astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(crop, connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    keep[0] = False
    out = mask.copy()
    out[region.slices] = keep[labels]
    return result(mask, out, region, op)


def keep_largest(mask: np.ndarray) -> EditResult:
    """Keep only the largest component (8-connected)."""
    mask = check_mask(mask)
    region = BBox.of_mask(mask)
    op = EditOp.keep_largest()
    if region is None:
        return EditResult(mask.copy(), None, op)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask[region.slices].astype(np.uint8),
                                                           connectivity=8)
    keep = np.zeros(n, dtype=bool)
    if n > 1:
        keep[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))] = True
    out = mask.copy()
    out[region.slices] = keep[labels]
    return result(mask, out, region, op)


def _kth_largest(values: np.ndarray, k: int) -> float:
    """The k-th largest value (k >= 1). Only the blurred border band (values strictly between
    nearly-0 and nearly-1) is partitioned when the answer lies there: much faster than all."""
    eps = 1e-4
    high = int(np.count_nonzero(values >= 1.0 - eps))
    if high < k:
        band = values[(values > eps) & (values < 1.0 - eps)]
        j = k - high  # the j-th largest inside the band
        if 0 < j <= band.size:
            return float(np.partition(band, band.size - j)[band.size - j])
    idx = values.size - k
    return float(np.partition(values, idx)[idx])


def smooth(mask: np.ndarray, sigma: float) -> EditResult:
    """Smooth the contour keeping the area: Gaussian blur (``sigma`` px), then the threshold that
    keeps exactly as many pixels as before (ties aside). Works on every component and hole."""
    mask = check_mask(mask)
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    op = EditOp.smooth(sigma)
    area = int(mask.sum())
    bb = BBox.of_mask(mask)
    if bb is None or area == mask.size:
        return EditResult(mask.copy(), None, op)
    pad = int(math.ceil(3 * sigma)) + 1
    region = bb.pad(pad).clip(mask.shape)
    crop = mask[region.slices].astype(np.float32)
    blurred = cv2.GaussianBlur(crop, (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REPLICATE)
    flat = blurred.ravel()
    thresh = _kth_largest(flat, area)
    new_crop = blurred >= thresh
    excess = int(new_crop.sum()) - area
    if excess > 0:  # ties at the threshold: drop the excess among the tied pixels
        tied = np.flatnonzero((blurred == thresh).ravel())
        new_crop.ravel()[tied[:excess]] = False
    out = mask.copy()
    out[region.slices] = new_crop
    return result(mask, out, region, op)


def grow(mask: np.ndarray, pixels: float) -> EditResult:
    """Grow (``pixels`` > 0) or shrink (< 0) every component by a Euclidean distance in pixels
    (morphological dilation/erosion with a disc, via an exact distance transform). The image
    border is not treated as background when shrinking (a lesion cut by the frame stays cut)."""
    mask = check_mask(mask)
    op = EditOp.grow(pixels)
    if pixels == 0:
        return EditResult(mask.copy(), None, op)
    bb = BBox.of_mask(mask)
    if bb is None:
        return EditResult(mask.copy(), None, op)
    pad = int(math.ceil(abs(pixels))) + 2
    region = bb.pad(pad).clip(mask.shape)
    crop = mask[region.slices]
    out = mask.copy()
    if pixels > 0:
        # distance from each pixel to the nearest mask pixel
        dist = cv2.distanceTransform((~crop).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        out[region.slices] = crop | (dist <= pixels)
    else:
        # distance from each mask pixel to the nearest background pixel (outside the crop counts
        # as background only where the crop is not at the image border)
        top, left = region.y0 > 0, region.x0 > 0
        bottom, right = region.y1 < mask.shape[0], region.x1 < mask.shape[1]
        padded = np.pad(crop, 1, mode="edge")
        # frame pixels inside the image are background (the crop already has a margin of bg)
        if top:
            padded[0, :] = False
        if bottom:
            padded[-1, :] = False
        if left:
            padded[:, 0] = False
        if right:
            padded[:, -1] = False
        dist = cv2.distanceTransform(padded.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        out[region.slices] = crop & (dist[1:-1, 1:-1] > -pixels)
    return result(mask, out, region, op)


def simplify(mask: np.ndarray, tolerance: float) -> EditResult:
    """Douglas-Peucker simplification of the contour (``tolerance`` px, topology preserved)."""
    mask = check_mask(mask)
    if tolerance < 0:
        raise ValueError(f"tolerance must not be negative, got {tolerance}")
    op = EditOp.simplify(tolerance)
    bb = BBox.of_mask(mask)
    if bb is None:
        return EditResult(mask.copy(), None, op)
    geom = simplify_geometry(mask_to_polygons(mask), tolerance)
    region = bb.pad(int(math.ceil(tolerance)) + 1).clip(mask.shape)
    out = mask.copy()
    out[region.slices] = rasterize_geometry(geom, mask.shape, region)
    return result(mask, out, region, op)


# -- replay -----------------------------------------------------------------------------------
@register("fill_holes", "fill holes")
def _replay_fill_holes(mask: np.ndarray, p: Params, _reset: np.ndarray | None) -> EditResult:
    return fill_holes(mask, p.get("max_area"))


@register("remove_islands", "remove islands")
def _replay_remove_islands(mask: np.ndarray, p: Params, _reset: np.ndarray | None) -> EditResult:
    return remove_islands(mask, p["min_area"])


@register("keep_largest", "keep largest")
def _replay_keep_largest(mask: np.ndarray, _p: Params, _reset: np.ndarray | None) -> EditResult:
    return keep_largest(mask)


@register("smooth", "smooth")
def _replay_smooth(mask: np.ndarray, p: Params, _reset: np.ndarray | None) -> EditResult:
    return smooth(mask, p["sigma"])


@register("simplify", "simplify")
def _replay_simplify(mask: np.ndarray, p: Params, _reset: np.ndarray | None) -> EditResult:
    return simplify(mask, p["tolerance"])


@register("grow", "grow/shrink")
def _replay_grow(mask: np.ndarray, p: Params, _reset: np.ndarray | None) -> EditResult:
    return grow(mask, p["pixels"])

"""The one image -> network-input transform, shared by prediction and training.

RGB scaled to [0, 1], squashed to a square ``size`` x ``size`` (as the paper does: the aspect
ratio is not kept; predictions are resized back to the original size). No mean/std
normalisation. Kept free of torch so data loaders can use it in worker processes.
"""

from __future__ import annotations

import cv2
import numpy as np


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB from grey (HxW or HxWx1), RGB, RGBA, 8 or 16 bit or float in [0, 1]."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {array.shape}")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    elif array.shape[2] == 4:
        array = array[:, :, :3]
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype == np.uint16:
        return np.ascontiguousarray((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        return np.ascontiguousarray(np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8))
    if array.dtype == bool:
        return np.ascontiguousarray(array.astype(np.uint8) * 255)
    raise ValueError(f"unsupported image data type {array.dtype}")


def resize_interpolation(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> int:
    """INTER_AREA when shrinking in both directions, else bilinear."""
    if dst_hw[0] <= src_hw[0] and dst_hw[1] <= src_hw[1]:
        return cv2.INTER_AREA
    return cv2.INTER_LINEAR


def resize_rgb(rgb: np.ndarray, size: int) -> np.ndarray:
    """The image squashed to size x size (HxWx3 uint8)."""
    rgb = as_rgb_uint8(rgb)
    h, w = rgb.shape[:2]
    if (h, w) == (size, size):
        return rgb
    return cv2.resize(rgb, (size, size), interpolation=resize_interpolation((h, w), (size, size)))


def to_chw_float(rgb_square: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 -> 3xHxW float32 in [0, 1]."""
    return np.ascontiguousarray(rgb_square.transpose(2, 0, 1), dtype=np.float32) * np.float32(1.0 / 255.0)


def preprocess(rgb: np.ndarray, size: int) -> np.ndarray:
    """Any image (see as_rgb_uint8) -> float32 array 3 x size x size with values in [0, 1]."""
    if size <= 0:
        raise ValueError(f"input size must be positive, got {size}")
    return to_chw_float(resize_rgb(rgb, size))


def resize_mask_like(mask: np.ndarray, size: int) -> np.ndarray:
    """A training mask (bool/0-255) squashed to size x size as float32 in [0, 1] (area average)."""
    m = np.asarray(mask)
    m = m.astype(np.float32) / (255.0 if m.dtype == np.uint8 and m.max(initial=0) > 1 else 1.0)
    h, w = m.shape[:2]
    if (h, w) != (size, size):
        m = cv2.resize(m, (size, size), interpolation=resize_interpolation((h, w), (size, size)))
    return np.clip(m, 0.0, 1.0)

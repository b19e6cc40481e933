"""Online augmentation for training pairs, as in the SLSNet paper.

Geometric operations (horizontal / vertical flips) move the image and its mask together;
photometric operations (gamma 0.5 / 1.0 / 1.5, CLAHE with a clip limit in [1, 2]) touch the
image only. Every function takes and returns HxWx3 uint8 RGB images and HxW bool (or uint8)
masks, and draws its randomness from the ``numpy.random.Generator`` it is given, so a seeded
run is repeatable and its state can be checkpointed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

GAMMAS: tuple[float, ...] = (0.5, 1.0, 1.5)


@dataclass(frozen=True)
class AugmentConfig:
    """What the online augmentation does; the defaults follow the paper."""

    hflip: bool = True
    vflip: bool = True
    gammas: tuple[float, ...] = GAMMAS
    clahe_probability: float = 0.5
    clahe_clip: tuple[float, float] = (1.0, 2.0)
    clahe_tiles: int = 8

    @property
    def enabled(self) -> bool:
        return (
            self.hflip
            or self.vflip
            or any(g != 1.0 for g in self.gammas)
            or self.clahe_probability > 0.0
        )


def hflip(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror left-right (image and mask together)."""
    return np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(mask[:, ::-1])


def vflip(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror top-bottom (image and mask together)."""
    return np.ascontiguousarray(image[::-1]), np.ascontiguousarray(mask[::-1])


_GAMMA_LUTS: dict[float, np.ndarray] = {}


def _gamma_lut(gamma: float) -> np.ndarray:
    lut = _GAMMA_LUTS.get(gamma)
    if lut is None:
        x = np.arange(256, dtype=np.float64) / 255.0
        lut = np.clip(np.round(255.0 * np.power(x, gamma)), 0, 255).astype(np.uint8)
        _GAMMA_LUTS[gamma] = lut
    return lut


def adjust_gamma(image: np.ndarray, gamma: float) -> np.ndarray:
    """out = 255 * (in / 255) ** gamma; gamma < 1 brightens, > 1 darkens. uint8 in, uint8 out."""
    if gamma <= 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    if image.dtype != np.uint8:
        raise TypeError(f"adjust_gamma expects a uint8 image, got {image.dtype}")
    if gamma == 1.0:
        return image.copy()
    return cv2.LUT(image, _gamma_lut(float(gamma)))


def apply_clahe(image: np.ndarray, clip_limit: float, tiles: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of the lightness (L of CIELAB)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise TypeError(f"apply_clahe expects an HxWx3 uint8 image, got {image.dtype} {image.shape}")
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    clahe = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(tiles, tiles))
    lab[:, :, 0] = clahe.apply(np.ascontiguousarray(lab[:, :, 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def augment_pair(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    config: AugmentConfig = AugmentConfig(),
) -> tuple[np.ndarray, np.ndarray]:
    """One random augmentation of a pair: flips (both), then gamma and CLAHE (image only)."""
    # Draw every random number in a fixed order, whatever is enabled, so runs stay repeatable.
    u = rng.random(4)
    gamma_index = int(rng.integers(len(config.gammas))) if config.gammas else -1
    clip = float(rng.uniform(config.clahe_clip[0], config.clahe_clip[1]))
    if config.hflip and u[0] < 0.5:
        image, mask = hflip(image, mask)
    if config.vflip and u[1] < 0.5:
        image, mask = vflip(image, mask)
    if gamma_index >= 0:
        gamma = config.gammas[gamma_index]
        if gamma != 1.0:
            image = adjust_gamma(image, gamma)
    if u[2] < config.clahe_probability:
        image = apply_clahe(image, clip, config.clahe_tiles)
    return image, mask

"""The pixels of one case, ready to draw: the image, its preview, the ground truth, the prediction.

Decoding a 3072x2304 image takes longer than the 150 ms a move to the next image may take, so the
window keeps these records in a small LRU (``lru.LRU``) and decodes the neighbours of the current
image in the background. No Qt here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dermaseg_app.core.dataset import Case
from dermaseg_app.core.imageio import read_image, read_mask
from dermaseg_app.core.prediction_cache import PredictionCache

PREVIEW_MAX_SIDE = 1600  # the display copy; full resolution is drawn when zoomed in past it


def downscale(arr: np.ndarray, max_side: int = PREVIEW_MAX_SIDE) -> np.ndarray:
    h, w = arr.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return arr
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(arr, size, interpolation=cv2.INTER_AREA)


def downscale_mask(mask: np.ndarray, max_side: int = PREVIEW_MAX_SIDE) -> np.ndarray:
    if max(mask.shape) <= max_side:
        return mask
    return downscale(mask.astype(np.uint8) * 255, max_side) >= 128


@dataclass
class CaseImages:
    rgb: np.ndarray  # HxWx3 uint8, full resolution
    preview: np.ndarray  # the display copy, at most PREVIEW_MAX_SIDE on its long side
    gt: np.ndarray | None = None  # HxW bool, or None when there is no usable ground truth
    gt_preview: np.ndarray | None = None
    gt_problem: str = ""  # why a ground-truth file is not used (unreadable, other size)
    prob: np.ndarray | None = None  # HxW uint8 probability * 255, when predicted
    prob_preview: np.ndarray | None = None
    extras: dict = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])

    def set_prob(self, prob_u8: np.ndarray) -> None:
        if prob_u8.shape != self.rgb.shape[:2]:
            raise ValueError(f"probability map {prob_u8.shape} does not match the image {self.rgb.shape[:2]}")
        self.prob = prob_u8
        self.prob_preview = downscale(prob_u8, max(self.preview.shape[:2]))


_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dermaseg-decode")
_JPEG = {".jpg", ".jpeg", ".jpe", ".jfif"}


def _fast_preview(path: Path) -> np.ndarray | None:
    """A JPEG decoded straight at 1/2, 1/4 or 1/8 scale (several times faster than decoding it
    whole and shrinking it), at least 0.6 * PREVIEW_MAX_SIDE on its long side; None when not a JPEG
    or when that is not smaller than the preview anyway."""
    if path.suffix.lower() not in _JPEG:
        return None
    try:
        from PIL import Image

        with Image.open(path) as im:
            long_side = max(im.size)
    except Exception:  # noqa: BLE001 - the full decode reports what is wrong
        return None
    for factor, flag in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                         (2, cv2.IMREAD_REDUCED_COLOR_2)):
        if long_side / factor >= PREVIEW_MAX_SIDE * 0.6:
            bgr = cv2.imread(str(path), flag)  # applies the EXIF orientation, like read_image
            return None if bgr is None else downscale(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return None


def _read_truth(case: Case) -> tuple[np.ndarray | None, str]:
    try:
        return read_mask(case.ground_truth), ""
    except Exception as exc:  # noqa: BLE001 - a bad mask must not hide the image
        return None, f"ground truth {case.ground_truth.name} cannot be read: {_reason(exc)}"


def load_case_images(case: Case, prob_u8: np.ndarray | None = None) -> CaseImages:
    """Decode a case's image and ground truth (raises ImageReadError for an unreadable image).

    The preview (a fast reduced JPEG decode) and the ground truth are read on a second thread
    while the full image decodes: a 3072x2304 case takes ~200 ms instead of ~360 ms.
    """
    fast = _POOL.submit(_fast_preview, case.image)
    truth = _POOL.submit(_read_truth, case) if case.ground_truth is not None else None
    rgb = read_image(case.image)
    preview = fast.result()
    if preview is None or abs(preview.shape[0] / preview.shape[1] - rgb.shape[0] / rgb.shape[1]) > 0.01:
        preview = downscale(rgb)  # not a JPEG, or its orientation differs: shrink the full image
    images = CaseImages(rgb=rgb, preview=preview)
    if truth is not None:
        gt, images.gt_problem = truth.result()
        if gt is not None:
            if gt.shape != rgb.shape[:2]:
                images.gt_problem = (
                    f"ground truth {case.ground_truth.name} is {gt.shape[1]}x{gt.shape[0]}, "
                    f"the image {rgb.shape[1]}x{rgb.shape[0]}: not compared"
                )
            else:
                images.gt = gt
                images.gt_preview = downscale_mask(gt, max(preview.shape[:2]))
    if prob_u8 is not None and prob_u8.shape == rgb.shape[:2]:
        images.set_prob(prob_u8)
    return images


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return reason if isinstance(reason, str) and reason else (str(exc) or type(exc).__name__)


def load_rows(job: Any, rows: Sequence[int], cases: Sequence[Case], probs: dict[int, np.ndarray],
              cache: PredictionCache | None) -> Iterator[tuple[int, CaseImages | None, str]]:
    """Background decoding (a ``workers.Worker`` generator): (row, images or None, error) per row.
    The probability map comes from ``probs`` (in memory) or the prediction cache when there."""
    for row in rows:
        if job.cancelled:
            return
        case = cases[row]
        try:
            prob = probs.get(row)
            if prob is None and cache is not None:
                prob = cache.load_u8(case.image)
            yield row, load_case_images(case, prob), ""
        except Exception as exc:  # noqa: BLE001 - shown on the canvas and in the list
            yield row, None, _reason(exc)

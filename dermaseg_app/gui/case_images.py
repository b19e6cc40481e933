"""The pixels of one case, ready to draw: the image, its preview, the ground truth, the prediction.

Decoding a 3072x2304 image takes longer than the 150 ms a move to the next image may take, so the
window keeps these records in a small LRU (``lru.LRU``) and decodes the neighbours of the current
image in the background. No Qt here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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


class CaseImages:
    """A case's pixels. ``rgb`` (full resolution) may still be decoding when the record is made
    (``load_case_images(..., wait_full=False)``): reading it then waits for the decode, and
    ``wait_full()`` raises the decode's error. Everything else (preview, ground truth, maps) is
    there from the start, which is all a fitted view needs."""

    def __init__(self, rgb: np.ndarray | None, preview: np.ndarray, *,
                 rgb_future: Future[np.ndarray] | None = None, shape: tuple[int, int] | None = None) -> None:
        if rgb is None and (rgb_future is None or shape is None):
            raise ValueError("CaseImages needs the image or its pending decode and its size")
        self._rgb = rgb
        self._rgb_future = rgb_future
        self.shape: tuple[int, int] = (int(rgb.shape[0]), int(rgb.shape[1])) if rgb is not None else shape
        self.preview = preview  # the display copy, at most PREVIEW_MAX_SIDE on its long side
        self.gt: np.ndarray | None = None  # HxW bool, or None when there is no usable ground truth
        self.gt_preview: np.ndarray | None = None
        self.gt_problem = ""  # why a ground-truth file is not used (unreadable, other size)
        self.prob: np.ndarray | None = None  # HxW uint8 probability * 255, when predicted
        self.prob_preview: np.ndarray | None = None
        self.second_prob: np.ndarray | None = None  # the compared (second) model's map, uint8
        self.second_preview: np.ndarray | None = None
        self.extras: dict = {}

    @property
    def rgb(self) -> np.ndarray:
        """HxWx3 uint8 at full resolution (waits for a decode still running)."""
        if self._rgb is None:
            self.wait_full()
        return self._rgb

    @property
    def full_ready(self) -> bool:
        return self._rgb is not None

    def wait_full(self) -> None:
        """Finish the full-resolution decode; raises its error (e.g. ImageReadError)."""
        if self._rgb is None:
            rgb = self._rgb_future.result()
            if rgb.shape[:2] != self.shape:
                raise ValueError(f"the image decodes at {rgb.shape[1]}x{rgb.shape[0]}, its header said "
                                 f"{self.shape[1]}x{self.shape[0]}")
            self._rgb, self._rgb_future = rgb, None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return int(self.shape[1]), int(self.shape[0])

    def set_prob(self, prob_u8: np.ndarray) -> None:
        if prob_u8.shape != self.shape:
            raise ValueError(f"probability map {prob_u8.shape} does not match the image {self.shape}")
        self.prob = prob_u8
        self.prob_preview = downscale(prob_u8, max(self.preview.shape[:2]))

    def set_second_prob(self, prob_u8: np.ndarray | None) -> None:
        """The compared model's map (None: no comparison)."""
        if prob_u8 is None:
            self.second_prob = self.second_preview = None
            return
        if prob_u8.shape != self.shape:
            raise ValueError(f"probability map {prob_u8.shape} does not match the image {self.shape}")
        self.second_prob = prob_u8
        self.second_preview = downscale(prob_u8, max(self.preview.shape[:2]))


_POOL = ThreadPoolExecutor(max_workers=3, thread_name_prefix="dermaseg-decode")
_JPEG = {".jpg", ".jpeg", ".jpe", ".jfif"}


def _upright_jpeg_size(path: Path) -> tuple[int, int] | None:
    """(height, width) of a JPEG stored upright (no EXIF rotation), from its header; else None."""
    if path.suffix.lower() not in _JPEG:
        return None
    try:
        from PIL import Image

        with Image.open(path) as im:
            if im.format != "JPEG" or im.getexif().get(0x0112, 1) not in (1, None):
                return None
            return int(im.size[1]), int(im.size[0])
    except Exception:  # noqa: BLE001 - the full decode reports what is wrong
        return None


def _fast_preview(path: Path, long_side: int) -> np.ndarray | None:
    """A JPEG decoded straight at 1/2, 1/4 or 1/8 scale (several times faster than decoding it
    whole and shrinking it), at least 0.6 * PREVIEW_MAX_SIDE on its long side; None when that
    would not be smaller than the preview anyway."""
    for factor, flag in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                         (2, cv2.IMREAD_REDUCED_COLOR_2)):
        if long_side / factor >= PREVIEW_MAX_SIDE * 0.6:
            bgr = cv2.imread(str(path), flag)
            return None if bgr is None else downscale(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return None


def _read_truth(case: Case) -> tuple[np.ndarray | None, str]:
    try:
        return read_mask(case.ground_truth), ""
    except Exception as exc:  # noqa: BLE001 - a bad mask must not hide the image
        return None, f"ground truth {case.ground_truth.name} cannot be read: {_reason(exc)}"


def load_case_images(case: Case, prob_u8: np.ndarray | None = None, wait_full: bool = True) -> CaseImages:
    """Decode a case's image and ground truth (raises ImageReadError for an unreadable image).

    For an upright JPEG larger than the preview, the preview is decoded straight at a reduced
    scale and the ground truth read while the full image decodes on another thread; with
    ``wait_full=False`` the record is returned before that decode ends (a 3072x2304 case is
    ready to draw in ~100 ms instead of ~360 ms). Other files are decoded whole, then shrunk.
    """
    truth = _POOL.submit(_read_truth, case) if case.ground_truth is not None else None
    shape = _upright_jpeg_size(case.image)
    preview = _fast_preview(case.image, max(shape)) if shape is not None else None
    if preview is not None and abs(preview.shape[0] / preview.shape[1] - shape[0] / shape[1]) < 0.01:
        full = _POOL.submit(read_image, case.image)
        images = CaseImages(None, preview, rgb_future=full, shape=shape)
        if wait_full:
            images.wait_full()
    else:
        rgb = read_image(case.image)
        images = CaseImages(rgb, downscale(rgb))
    h, w = images.shape
    if truth is not None:
        gt, images.gt_problem = truth.result()
        if gt is not None:
            if gt.shape != images.shape:
                images.gt_problem = (
                    f"ground truth {case.ground_truth.name} is {gt.shape[1]}x{gt.shape[0]}, "
                    f"the image {w}x{h}: not compared"
                )
            else:
                images.gt = gt
                images.gt_preview = downscale_mask(gt, max(images.preview.shape[:2]))
    if prob_u8 is not None and prob_u8.shape == images.shape:
        images.set_prob(prob_u8)
    return images


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return reason if isinstance(reason, str) and reason else (str(exc) or type(exc).__name__)


def load_rows(job: Any, rows: Sequence[int], cases: Sequence[Case], probs: dict[int, np.ndarray],
              cache: PredictionCache | None, second_probs: dict[int, np.ndarray] | None = None,
              second_cache: PredictionCache | None = None) -> Iterator[tuple[int, CaseImages | None, str]]:
    """Background decoding (a ``workers.Worker`` generator): (row, images, "") as soon as a row
    can be drawn, or (row, None, error) when it cannot be decoded (also when the full-resolution
    decode fails after the preview was shown). The probability map comes from ``probs`` (in
    memory) or the prediction cache when there; the compared model's likewise from
    ``second_probs`` or ``second_cache``."""
    for row in rows:
        if job.cancelled:
            return
        case = cases[row]
        try:
            prob = probs.get(row)
            if prob is None and cache is not None:
                prob = cache.load_u8(case.image)
            images = load_case_images(case, prob, wait_full=False)
            second = (second_probs or {}).get(row)
            if second is None and second_cache is not None:
                second = second_cache.load_u8(case.image)
            if second is not None and second.shape == images.shape:
                images.set_second_prob(second)
            yield row, images, ""  # drawable now (preview); the full image follows
            images.wait_full()
        except Exception as exc:  # noqa: BLE001 - shown on the canvas and in the list
            yield row, None, _reason(exc)

"""Small previews for the case list, read fast (JPEG draft mode), and the first check that an
image can be opened at all (no Qt here; the GUI turns the arrays into icons)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

THUMB_SIZE = 56


@dataclass
class Thumbnail:
    row: int
    rgb: np.ndarray | None  # at most THUMB_SIZE on its long side
    error: str = ""


def read_thumbnail(path: Path, size: int = THUMB_SIZE) -> np.ndarray:
    """A small RGB copy of an image; raises ImageReadError (from core.imageio) when unreadable."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            im.draft("RGB", (size * 2, size * 2))  # JPEG: decode at 1/2..1/8 scale, much faster
            im = ImageOps.exif_transpose(im)
            im = im.convert("RGB")
            im.thumbnail((size, size))
            return np.asarray(im, dtype=np.uint8).copy()
    except Exception:  # noqa: BLE001 - let the core reader say why, in its words
        import cv2

        from dermaseg_app.core.imageio import read_image

        rgb = read_image(path)  # raises ImageReadError with the reason
        scale = size / max(rgb.shape[:2])
        return cv2.resize(rgb, (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)


def thumbnails(job: Any, rows: Sequence[int], paths: Sequence[Path]) -> Iterator[Thumbnail]:
    for row in rows:
        if job.cancelled:
            return
        try:
            yield Thumbnail(row, read_thumbnail(paths[row]))
        except Exception as exc:  # noqa: BLE001 - listed with its reason
            reason = getattr(exc, "reason", None)
            yield Thumbnail(row, None, reason if isinstance(reason, str) and reason else str(exc))

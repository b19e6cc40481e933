"""Draw DermaSeg's application icon (resources/icons/dermaseg.png, .ico): a brown lesion on a
skin-coloured disc with its segmentation contour. Run once; the files are committed.

    .venv/bin/python installer/make_icon.py
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parents[1] / "resources" / "icons"


def draw(size: int = 512) -> np.ndarray:
    s = size / 512
    img = np.zeros((size, size, 4), np.uint8)
    centre = (size // 2, size // 2)
    cv2.circle(img, centre, int(236 * s), (196, 214, 240, 255), -1, cv2.LINE_AA)  # skin (BGR)
    t = np.linspace(0, 2 * np.pi, 240, endpoint=False)
    r = 150 * s * (1 + 0.12 * np.sin(3 * t) + 0.07 * np.cos(5 * t + 0.7))
    pts = np.stack([centre[0] + r * np.cos(t), centre[1] + 0.86 * r * np.sin(t)], 1)
    lesion = np.round(pts).astype(np.int32)
    cv2.fillPoly(img, [lesion], (52, 82, 128, 255), cv2.LINE_AA)  # light brown
    inner = np.round(centre + (pts - centre) * 0.55 + [18 * s, -10 * s]).astype(np.int32)
    cv2.fillPoly(img, [inner], (30, 44, 74, 255), cv2.LINE_AA)  # dark brown
    cv2.polylines(img, [lesion], True, (80, 220, 60, 255), max(2, int(16 * s)), cv2.LINE_AA)  # contour
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rgba = Image.fromarray(draw(512))
    rgba.save(OUT / "dermaseg.png", optimize=True)
    rgba.save(OUT / "dermaseg.ico", sizes=[(16, 16), (32, 32), (48, 48), (64, 64), (128, 128), (256, 256)])


if __name__ == "__main__":
    main()

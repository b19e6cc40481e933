"""NumPy arrays to Qt images (the only place that knows the memory layout)."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage, QPixmap

from dermaseg_app.gui.canvas.overlay import IndexedOverlay


def indexed_to_qimage(overlay: IndexedOverlay) -> QImage:
    """An indexed overlay -> an 8-bit indexed QImage with the palette as its colour table."""
    index = np.ascontiguousarray(overlay.index, dtype=np.uint8)
    h, w = index.shape
    image = QImage(index.data, w, h, w, QImage.Format.Format_Indexed8)
    table = [(int(a) << 24) | (int(r) << 16) | (int(g) << 8) | int(b) for r, g, b, a in overlay.palette]
    image.setColorTable(table)
    return image.copy()


def to_qimage(arr: np.ndarray | IndexedOverlay) -> QImage:
    """HxW (grey), HxWx3 (RGB) or HxWx4 (RGBA, straight alpha) uint8, or an IndexedOverlay ->
    a QImage owning its pixels."""
    if isinstance(arr, IndexedOverlay):
        return indexed_to_qimage(arr)
    a = np.ascontiguousarray(arr)
    if a.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {a.dtype}")
    h, w = a.shape[:2]
    if a.ndim == 2:
        fmt, channels = QImage.Format.Format_Grayscale8, 1
    elif a.shape[2] == 3:
        fmt, channels = QImage.Format.Format_RGB888, 3
    elif a.shape[2] == 4:
        fmt, channels = QImage.Format.Format_RGBA8888, 4
    else:
        raise ValueError(f"cannot show an array of shape {a.shape}")
    image = QImage(a.data, w, h, w * channels, fmt)
    return image.copy()  # detach from the NumPy buffer


def to_pixmap(arr: np.ndarray | IndexedOverlay) -> QPixmap:
    return QPixmap.fromImage(to_qimage(arr))


def qimage_to_rgb(image: QImage) -> np.ndarray:
    """A QImage -> HxWx3 uint8 RGB copy (tests and screenshots)."""
    img = image.convertToFormat(QImage.Format.Format_RGB888)
    h, w = img.height(), img.width()
    ptr = img.constBits()
    arr = np.frombuffer(ptr, np.uint8, count=img.bytesPerLine() * h).reshape(h, img.bytesPerLine())
    return arr[:, : w * 3].reshape(h, w, 3).copy()

"""The overlay of a mask being corrected, repainted box by box while the user edits (issue 5).

``MaskLayer`` is a graphics item drawn over the image in place of the canvas's own overlay while
an image has a correction. It keeps two premultiplied ARGB32 buffers -- one at full resolution,
one at the display preview's resolution (at most ``PREVIEW_MAX_SIDE`` on the long side, sampled
at the centre of each preview pixel) -- and ``update_region(bbox)`` recolours only the pixels of
the box an edit changed (``core.editing`` returns it), so a brush move on a 3072x2304 image
costs the few thousand pixels under the brush, not the whole image. Colours are those of
``canvas.overlay``: the plain fill, or TP yellow / FP red / FN green against the ground truth.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QRectF
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from dermaseg_app.core.editing import BBox
from dermaseg_app.gui.canvas.overlay import _alpha, colours
from dermaseg_app.gui.case_images import PREVIEW_MAX_SIDE


def premultiplied_palette(colours: list[tuple[int, int, int, int]]) -> np.ndarray:
    """RGBA colours (straight alpha) -> uint32 ARGB32_Premultiplied values (native byte order)."""
    out = np.zeros(len(colours), np.uint32)
    for i, (r, g, b, a) in enumerate(colours):
        f = a / 255.0
        out[i] = (a << 24) | (round(r * f) << 16) | (round(g * f) << 8) | round(b * f)
    return out


def mask_palette(opacity: float, compare: bool) -> np.ndarray:
    """Index 0..3 = mask | gt << 1 -> colour. Without comparison only the mask bit counts."""
    a = _alpha(opacity)
    c = colours()
    if compare:
        p = c.comparison
        return premultiplied_palette([(0, 0, 0, 0), (*p.fp, a), (*p.fn, a), (*p.tp, a)])
    return premultiplied_palette([(0, 0, 0, 0), (*c.fill, a), (0, 0, 0, 0), (*c.fill, a)])


SMOOTH_PREVIEW = False  # nearest sampling when zoomed out: ~2 ms less per repaint, the outline hides it


class MaskLayer(QGraphicsItem):
    def __init__(self, parent: QGraphicsItem | None = None) -> None:
        super().__init__(parent)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)
        self.setZValue(1.5)
        self.mask: np.ndarray | None = None
        self.gt: np.ndarray | None = None
        self.compare = False
        self._palette = mask_palette(0.45, False)
        self._w = self._h = 0
        self._scale = 1.0
        self._rows = self._cols = np.zeros(0, np.int64)  # full-resolution row/col of each preview pixel
        self._full: np.ndarray | None = None  # HxW uint32
        self._preview: np.ndarray | None = None
        self._full_image: QImage | None = None
        self._preview_image: QImage | None = None
        self.full_resolution_drawn = False

    # -------------------------------------------------------------- content
    def set_mask(self, mask: np.ndarray, gt: np.ndarray | None, opacity: float, compare: bool) -> None:
        """Show ``mask`` (the live array: later edits are picked up by ``update_region``)."""
        self.prepareGeometryChange()
        self.mask = mask
        self.gt = gt if gt is not None and gt.shape == mask.shape else None
        self.compare = bool(compare and self.gt is not None)
        self._palette = mask_palette(opacity, self.compare)
        h, w = mask.shape
        if (w, h) != (self._w, self._h):
            self._w, self._h = w, h
            self._scale = min(1.0, PREVIEW_MAX_SIDE / max(h, w))
            ph, pw = max(1, round(h * self._scale)), max(1, round(w * self._scale))
            self._rows = np.minimum(((np.arange(ph) + 0.5) * h / ph).astype(np.int64), h - 1)
            self._cols = np.minimum(((np.arange(pw) + 0.5) * w / pw).astype(np.int64), w - 1)
        self._full = np.empty((h, w), np.uint32)
        self._full[:] = self._palette[self._index(BBox.full(mask.shape))]
        if self._scale < 1.0:
            self._preview = np.ascontiguousarray(self._full[np.ix_(self._rows, self._cols)])
        else:
            self._preview = self._full
        self._full_image = _wrap(self._full)
        self._preview_image = self._full_image if self._preview is self._full else _wrap(self._preview)
        self.update()

    def set_live_mask(self, mask: np.ndarray) -> None:
        """The array the mask lives in changed (a stroke's working copy, an undo): same pixels
        except where ``update_region`` is told."""
        self.mask = mask

    def clear(self) -> None:
        self.prepareGeometryChange()
        self.mask = self.gt = None
        self._full = self._preview = None
        self._full_image = self._preview_image = None
        self._w = self._h = 0
        self.update()

    @property
    def has_content(self) -> bool:
        return self._full is not None

    def _index(self, box: BBox) -> np.ndarray:
        sl = box.slices
        idx = self.mask[sl].view(np.uint8)
        if self.gt is not None and self.compare:
            idx = idx | (self.gt[sl].view(np.uint8) << 1)
        return idx

    def update_region(self, box: BBox | None) -> None:
        """Recolour the pixels of ``box`` (full-resolution coordinates) from ``mask``."""
        if box is None or self._full is None or self.mask is None:
            return
        box = box.clip(self.mask.shape)
        if box.empty:
            return
        self._full[box.slices] = self._palette[self._index(box)]
        if self._preview is not self._full:
            r0, r1 = np.searchsorted(self._rows, [box.y0, box.y1])
            c0, c1 = np.searchsorted(self._cols, [box.x0, box.x1])
            if r1 > r0 and c1 > c0:
                self._preview[r0:r1, c0:c1] = self._full[np.ix_(self._rows[r0:r1], self._cols[c0:c1])]
        self.update(QRectF(box.x0 - 1, box.y0 - 1, box.width + 2, box.height + 2))

    def pixels(self, preview: bool = False) -> np.ndarray:
        """The ARGB32 values drawn (tests)."""
        return (self._preview if preview else self._full).copy()

    # -------------------------------------------------------------- painting
    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt API
        return QRectF(0, 0, self._w, self._h)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        if self._full_image is None or self._w == 0:
            return
        lod = QStyleOptionGraphicsItem.levelOfDetailFromTransform(painter.worldTransform())
        if lod > self._scale * 1.05 or self._preview_image is self._full_image:
            # full resolution, only the exposed part (a zoomed-in view shows a small piece)
            r = option.exposedRect.intersected(QRectF(0, 0, self._w, self._h))
            x0, y0 = max(0, math.floor(r.left())), max(0, math.floor(r.top()))
            x1, y1 = min(self._w, math.ceil(r.right())), min(self._h, math.ceil(r.bottom()))
            if x1 <= x0 or y1 <= y0:
                return
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, lod < 1.0)
            rect = QRectF(x0, y0, x1 - x0, y1 - y0)
            painter.drawImage(rect, self._full_image, rect)
            self.full_resolution_drawn = True
            return
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, SMOOTH_PREVIEW)
        img = self._preview_image
        painter.drawImage(QRectF(0, 0, self._w, self._h), img, QRectF(0, 0, img.width(), img.height()))


def _wrap(buf: np.ndarray) -> QImage:
    """A QImage over ``buf``'s memory (no copy: recolouring ``buf`` changes what is drawn; the
    layer keeps ``buf`` alive as long as the image)."""
    h, w = buf.shape
    return QImage(buf.data, w, h, w * 4, QImage.Format.Format_ARGB32_Premultiplied)

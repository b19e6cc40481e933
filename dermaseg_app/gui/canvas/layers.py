"""A graphics item that draws a large image at two levels of detail.

A 3072x2304 image drawn whole at every repaint is slow; a downscaled preview is enough until the
view zooms in further than the preview's resolution. ``LodImageItem`` draws the preview while one
preview pixel covers at most one screen pixel, and the full-resolution pixels (built lazily, on the
first zoom past that point) beyond it -- so the user always sees full resolution when zoomed in.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QPainter, QPixmap
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from dermaseg_app.gui.canvas.qimage import to_pixmap

FullSource = Callable[[], np.ndarray]


class LodImageItem(QGraphicsItem):
    def __init__(self, parent: QGraphicsItem | None = None) -> None:
        super().__init__(parent)
        self._w = 0
        self._h = 0
        self._preview: QPixmap | None = None
        self._full: QPixmap | None = None
        self._full_source: FullSource | None = None
        self.full_resolution_drawn = False

    def set_content(self, size: tuple[int, int], preview: np.ndarray | None,
                    full: np.ndarray | FullSource | None = None) -> None:
        """``size`` = (width, height) of the full image in scene units; ``preview`` any smaller (or
        equal) array of the same aspect; ``full`` the full-resolution array or a function making it."""
        self.prepareGeometryChange()
        self._w, self._h = int(size[0]), int(size[1])
        self._preview = to_pixmap(preview) if preview is not None else None
        self._full = None
        self._full_source = None
        if isinstance(full, np.ndarray):
            if preview is not None and full.shape[:2] == preview.shape[:2]:
                self._full = self._preview
            else:  # converted only when the user zooms in that far
                self._full_source = lambda arr=full: arr
        elif full is not None:
            self._full_source = full
        self.full_resolution_drawn = False
        self.update()

    def clear(self) -> None:
        self.set_content((self._w, self._h), None, None)

    @property
    def has_content(self) -> bool:
        return self._preview is not None

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt API
        return QRectF(0, 0, self._w, self._h)

    def _full_pixmap(self) -> QPixmap | None:
        if self._full is None and self._full_source is not None:
            source, self._full_source = self._full_source, None
            try:
                self._full = to_pixmap(source())
            except Exception:  # noqa: BLE001 - the full decode failed: the window reports it; keep the preview
                self._full = None
        return self._full

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem,
              widget: QWidget | None = None) -> None:
        if self._preview is None or self._w == 0:
            return
        lod = QStyleOptionGraphicsItem.levelOfDetailFromTransform(painter.worldTransform())
        preview_scale = self._preview.width() / self._w  # preview pixels per image pixel
        pixmap = self._preview
        if lod > preview_scale * 1.05:
            full = self._full_pixmap()
            if full is not None:
                pixmap = full
                self.full_resolution_drawn = True
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, lod < 1.0)
        source = QRectF(0, 0, pixmap.width(), pixmap.height())
        painter.drawPixmap(QRectF(0, 0, self._w, self._h), pixmap, source)


def item_flags_static(item: QGraphicsItem) -> None:
    item.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable, False)
    item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)

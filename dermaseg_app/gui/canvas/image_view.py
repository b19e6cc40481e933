"""The image canvas: the full-resolution image, an overlay, the contour, zoom and pan.

The view knows nothing about cases or models: it shows arrays it is given (see
``canvas.renderer``) and reports the zoom. Wheel zooms about the cursor, dragging pans,
``fit()`` fits the image to the window and ``zoom_100()`` shows one image pixel per screen pixel.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np
from PySide6.QtCore import QByteArray, QDataStream, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen, QPolygonF, QWheelEvent
from PySide6.QtWidgets import QFrame, QGraphicsPathItem, QGraphicsScene, QGraphicsView, QLabel, QWidget

from dermaseg_app.gui.canvas.layers import FullSource, LodImageItem
from dermaseg_app.gui.canvas.legend import ContourLegend, HeatLegend, LegendWidget
from dermaseg_app.gui.canvas.overlay import CONTOUR_COLOUR, SECOND_CONTOUR_COLOUR, heat_palette

MIN_ZOOM = 0.02
MAX_ZOOM = 32.0


def contours_to_path(contours: Sequence[np.ndarray]) -> QPainterPath:
    """Closed outlines -> one QPainterPath, built from a binary buffer (QDataStream's layout of a
    path: count, then (type, x, y) per element, then the current subpath start and the fill rule),
    as pyqtgraph's arrayToQPath does: ~50x faster than a QPointF per point."""
    parts = [np.asarray(c, np.float64) for c in contours if len(c) >= 2]
    n = sum(len(c) + 1 for c in parts)
    if n == 0:
        return QPainterPath()
    rec = np.empty(n, dtype=[("t", ">i4"), ("x", ">f8"), ("y", ">f8")])
    i = 0
    for c in parts:
        m = len(c)
        rec["t"][i] = 0  # MoveToElement
        rec["t"][i + 1:i + m + 1] = 1  # LineToElement
        rec["x"][i:i + m] = c[:, 0]
        rec["y"][i:i + m] = c[:, 1]
        rec["x"][i + m] = c[0, 0]  # back to the start: a closed outline
        rec["y"][i + m] = c[0, 1]
        i += m + 1
    buf = struct.pack(">i", n) + rec.tobytes() + struct.pack(">ii", 0, 0)
    path = QPainterPath()
    stream = QDataStream(QByteArray(buf))
    stream >> path
    if path.elementCount() != n:  # a Qt whose stream layout differs: the slow, sure way
        path = QPainterPath()
        for c in parts:
            path.addPolygon(QPolygonF([QPointF(float(x), float(y)) for x, y in c]))
            path.closeSubpath()
    return path


class ImageCanvas(QGraphicsView):
    zoom_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("canvas")
        self._scene = QGraphicsScene(self)
        self.setScene(self._scene)
        self.setBackgroundBrush(QColor(38, 38, 38))
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.FullViewportUpdate)
        self.image_item = LodImageItem()
        self.overlay_item = LodImageItem()
        self.overlay_item.setZValue(1)
        self.contour_item = QGraphicsPathItem()
        self.contour_item.setZValue(2)
        pen = QPen(QColor(*CONTOUR_COLOUR))
        pen.setWidthF(2.0)
        pen.setCosmetic(True)  # the same width on screen at every zoom
        self.contour_item.setPen(pen)
        self.second_contour_item = QGraphicsPathItem()  # the compared model's outline, dashed
        self.second_contour_item.setZValue(2.5)
        second_pen = QPen(QColor(*SECOND_CONTOUR_COLOUR))
        second_pen.setWidthF(2.0)
        second_pen.setCosmetic(True)
        second_pen.setStyle(Qt.PenStyle.DashLine)
        self.second_contour_item.setPen(second_pen)
        self.second_contour_item.hide()
        for item in (self.image_item, self.overlay_item, self.contour_item, self.second_contour_item):
            self._scene.addItem(item)
        self._fit_mode = True
        self._image_size = (0, 0)

        self.legend = LegendWidget(parent=self.viewport())
        self.legend.move(10, 10)
        self.legend.hide()
        self.heat_legend = HeatLegend(heat_palette(1.0, 0)[:, :3], parent=self.viewport())
        self.heat_legend.move(10, 10)
        self.heat_legend.hide()
        self.contour_legend = ContourLegend(parent=self.viewport())  # which outline is which model
        self.contour_legend.hide()
        self.message = QLabel(self.viewport())
        self.message.setObjectName("canvasMessage")
        self.message.setWordWrap(True)
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.hide()

    # -------------------------------------------------------------- content
    @property
    def image_size(self) -> tuple[int, int]:
        return self._image_size

    def set_image(self, size: tuple[int, int], preview: np.ndarray, full: np.ndarray | FullSource) -> None:
        new_size = size != self._image_size
        self._image_size = size
        self.image_item.set_content(size, preview, full)
        self._scene.setSceneRect(QRectF(0, 0, size[0], size[1]))
        if new_size or self._fit_mode:
            self.fit()

    def set_overlay(self, preview: np.ndarray | None, full: np.ndarray | FullSource | None = None) -> None:
        if preview is None:
            self.overlay_item.clear()
        else:
            self.overlay_item.set_content(self._image_size, preview, full)

    def set_contours(self, contours: Sequence[np.ndarray]) -> None:
        self.contour_item.setPath(contours_to_path(contours))

    def set_second_contours(self, contours: Sequence[np.ndarray] | None, labels: tuple[str, str] = ("", "")) -> None:
        """The compared model's outline (dashed) and the legend naming both models; None hides them."""
        if contours is None:
            self.second_contour_item.setPath(QPainterPath())
            self.second_contour_item.hide()
            self.contour_legend.hide()
            return
        self.second_contour_item.setPath(contours_to_path(contours))
        self.second_contour_item.show()
        self.contour_legend.set_entries(labels, self.contour_item.pen().color(),
                                        self.second_contour_item.pen().color())
        self._place_contour_legend()
        self.contour_legend.show()
        self.contour_legend.raise_()

    def _place_contour_legend(self) -> None:
        vp = self.viewport().rect()
        self.contour_legend.move(max(0, vp.width() - self.contour_legend.width() - 10), 10)

    def clear(self) -> None:
        self.image_item.clear()
        self.overlay_item.clear()
        self.contour_item.setPath(QPainterPath())
        self.set_second_contours(None)
        self._image_size = (0, 0)

    def apply_colours(self) -> None:
        """Take the overlay colours chosen in Preferences (``overlay.colours()``): the outline's
        pen and the comparison legend; the overlays follow at the next redraw."""
        from dermaseg_app.gui.canvas.overlay import colours

        c = colours()
        pen = self.contour_item.pen()
        pen.setColor(QColor(*c.contour))
        self.contour_item.setPen(pen)
        visible = self.legend.isVisible()
        self.legend.deleteLater()
        self.legend = LegendWidget(c.comparison.legend(), parent=self.viewport())
        self.legend.move(10, 10)
        self.legend.setVisible(visible)

    def show_legend(self, visible: bool, heat: bool = False) -> None:
        """The comparison legend (``visible``) or the heat-map's colour scale (``heat``)."""
        self.legend.setVisible(visible)
        self.heat_legend.setVisible(heat and not visible)
        for w in (self.legend, self.heat_legend):
            if w.isVisible():
                w.raise_()

    def show_message(self, text: str, error: bool = False) -> None:
        """A message over the canvas (loading, no model, unreadable image); "" hides it."""
        if not text:
            self.message.hide()
            return
        colour = "#ffd7d7" if error else "#f0f0f0"
        border = "#d04040" if error else "#707070"
        self.message.setStyleSheet(
            f"#canvasMessage {{ background: rgba(20,20,20,225); color: {colour}; border: 1px solid {border};"
            " border-radius: 6px; padding: 10px; }"
        )
        self.message.setText(text)
        self._place_message()
        self.message.show()
        self.message.raise_()

    def _place_message(self) -> None:
        vp = self.viewport().rect()
        width = min(560, max(200, vp.width() - 40))
        self.message.setFixedWidth(width)
        self.message.adjustSize()
        self.message.move((vp.width() - width) // 2, vp.height() - self.message.height() - 16)

    # -------------------------------------------------------------- zoom and pan
    @property
    def zoom(self) -> float:
        return float(self.transform().m11())

    def fit(self) -> None:
        self._fit_mode = True
        w, h = self._image_size
        if w and h:
            self.fitInView(QRectF(0, 0, w, h), Qt.AspectRatioMode.KeepAspectRatio)
        self.zoom_changed.emit(self.zoom)

    def zoom_100(self) -> None:
        self.set_zoom(1.0)

    def set_zoom(self, factor: float, anchor_center: bool = True) -> None:
        self._fit_mode = False
        factor = min(MAX_ZOOM, max(MIN_ZOOM, factor))
        old_anchor = self.transformationAnchor()
        if anchor_center:
            self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.scale(factor / self.zoom, factor / self.zoom)
        self.setTransformationAnchor(old_anchor)
        self.zoom_changed.emit(self.zoom)

    def zoom_by(self, step: float) -> None:
        self.set_zoom(self.zoom * step)

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 - Qt API
        delta = event.angleDelta().y()
        if not delta or not self._image_size[0]:
            return
        step = 1.0015 ** delta  # one notch (120) = x1.2
        target = min(MAX_ZOOM, max(MIN_ZOOM, self.zoom * step))
        self._fit_mode = False
        self.scale(target / self.zoom, target / self.zoom)
        self.zoom_changed.emit(self.zoom)
        event.accept()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        if self._fit_mode:
            self.fit()
        if self.message.isVisible():
            self._place_message()
        if self.contour_legend.isVisible():
            self._place_contour_legend()

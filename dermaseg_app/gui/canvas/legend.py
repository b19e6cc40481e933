"""The on-screen legend of the ground-truth comparison colours."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from dermaseg_app.gui.canvas.overlay import COMPARISON_LEGEND, LegendEntry


class _Swatch(QWidget):
    def __init__(self, colour: tuple[int, int, int], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.colour = QColor(*colour)
        self.setFixedSize(16, 16)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.fillRect(self.rect(), self.colour)
        p.setPen(QColor(0, 0, 0))
        p.drawRect(self.rect().adjusted(0, 0, -1, -1))


class LegendWidget(QWidget):
    """A small opaque panel: a colour swatch and a label per entry (readable on any image)."""

    def __init__(self, entries: Sequence[LegendEntry] = COMPARISON_LEGEND, parent: QWidget | None = None,
                 title: str = "Ground-truth comparison") -> None:
        super().__init__(parent)
        self.setObjectName("legend")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setStyleSheet(
            "#legend { background: rgba(20, 20, 20, 215); border-radius: 6px; }"
            "#legend QLabel { color: white; }"
        )
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.setSpacing(4)
        heading = QLabel(f"<b>{title}</b>")
        layout.addWidget(heading)
        self.labels: list[QLabel] = []
        for entry in entries:
            row = QHBoxLayout()
            row.setSpacing(8)
            row.addWidget(_Swatch(entry.colour))
            label = QLabel(entry.label)
            self.labels.append(label)
            row.addWidget(label)
            row.addStretch(1)
            layout.addLayout(row)
        self.adjustSize()


class HeatLegend(QWidget):
    """The probability colour scale of the heat-map, 0 to 1."""

    def __init__(self, palette_rgb, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("heatLegend")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setStyleSheet("#heatLegend { background: rgba(20, 20, 20, 215); border-radius: 6px; }"
                           "#heatLegend QLabel { color: white; }")
        self.colours = [QColor(int(r), int(g), int(b)) for r, g, b in palette_rgb]
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.addWidget(QLabel("<b>Lesion probability</b>"))
        self.bar = QWidget()
        self.bar.setFixedSize(200, 14)
        self.bar.paintEvent = self._paint_bar  # a plain strip; no subclass needed
        layout.addWidget(self.bar)
        ticks = QHBoxLayout()
        for text in ("0", "0.5", "1"):
            ticks.addWidget(QLabel(text))
            if text != "1":
                ticks.addStretch(1)
        layout.addLayout(ticks)
        self.adjustSize()

    def _paint_bar(self, event) -> None:
        p = QPainter(self.bar)
        w = self.bar.width()
        n = len(self.colours)
        for x in range(w):
            p.setPen(self.colours[min(n - 1, x * n // w)])
            p.drawLine(x, 0, x, self.bar.height())


class _LineSample(QWidget):
    """A short sample of an outline's pen: solid or dashed."""

    def __init__(self, dashed: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.colour = QColor(255, 255, 255)
        self.dashed = dashed
        self.setFixedSize(28, 12)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        pen = QPen(self.colour)
        pen.setWidthF(2.0)
        if self.dashed:
            pen.setStyle(Qt.PenStyle.DashLine)
        p.setPen(pen)
        p.drawLine(1, self.height() // 2, self.width() - 1, self.height() // 2)


class ContourLegend(QWidget):
    """Which outline is which model: the primary's solid line, the compared model's dashed one."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("contourLegend")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setStyleSheet("#contourLegend { background: rgba(20, 20, 20, 215); border-radius: 6px; }"
                           "#contourLegend QLabel { color: white; }")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.setSpacing(4)
        layout.addWidget(QLabel("<b>Models</b>"))
        self.samples = (_LineSample(False), _LineSample(True))
        self.labels = (QLabel(), QLabel())
        for sample, label in zip(self.samples, self.labels, strict=True):
            row = QHBoxLayout()
            row.setSpacing(8)
            row.addWidget(sample)
            row.addWidget(label)
            row.addStretch(1)
            layout.addLayout(row)

    def set_entries(self, labels: tuple[str, str], primary: QColor, second: QColor) -> None:
        for sample, label, text, colour in zip(self.samples, self.labels, labels, (primary, second), strict=True):
            sample.colour = QColor(colour)
            sample.update()
            label.setText(text)
        self.adjustSize()

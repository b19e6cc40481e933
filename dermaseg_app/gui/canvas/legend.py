"""The on-screen legend of the ground-truth comparison colours."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPainter
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

"""The follow-up dialog (issue 15): two images of the same lesion side by side, each with its
contour, what was measured and the scale, and a table of the areas and diameters with the change
in percent (app.measurements.follow_up_rows)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLayout,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from dermaseg_app.app.measurements import (
    DISCLAIMER,
    SOURCE_TEXT,
    FollowUp,
    asymmetry_text,
    calibration_text,
    colours_text,
)
from dermaseg_app.core.measure import Measurements
from dermaseg_app.gui.canvas.qimage import to_pixmap

THUMB_SIDE = 320


@dataclass
class FollowUpSide:
    name: str
    rgb: np.ndarray
    mask: np.ndarray
    source: str
    measurements: Measurements


def thumbnail_with_contour(rgb: np.ndarray, mask: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
    """The image scaled to ``side`` on its long side with the mask's outline drawn in yellow."""
    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST
    small = cv2.resize(np.ascontiguousarray(rgb), size, interpolation=interpolation)
    m = cv2.resize(mask.astype(np.uint8) * 255, size, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours((m >= 128).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    out = np.ascontiguousarray(small.copy())
    cv2.drawContours(out, contours, -1, (255, 230, 0), 2, lineType=cv2.LINE_AA)
    return out


class FollowUpDialog(QDialog):
    def __init__(self, before: FollowUpSide, after: FollowUpSide, result: FollowUp,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Follow-up comparison")
        self.setObjectName("followUpDialog")
        self.result = result
        grid = QHBoxLayout()
        for col, (side, title) in enumerate(((before, "Earlier"), (after, "Later"))):
            header = QLabel(f"<b>{title}:</b> {side.name}")
            header.setMaximumWidth(THUMB_SIDE)
            picture = QLabel()
            picture.setPixmap(to_pixmap(thumbnail_with_contour(side.rgb, side.mask)))
            picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
            picture.setFixedSize(THUMB_SIDE, THUMB_SIDE)
            picture.setStyleSheet("background: #262626;")
            m = side.measurements
            info = QLabel(f"Measured: {SOURCE_TEXT.get(side.source, side.source)}<br>"
                          f"Scale: {calibration_text(m.calibration)}<br>"
                          f"Asymmetry: {asymmetry_text(m)}<br>Colours: {colours_text(m)}")
            info.setObjectName(f"followup_info_{col}")
            column = QVBoxLayout()
            for wdg in (header, picture, info):
                column.addWidget(wdg)
            column.addStretch(1)
            grid.addLayout(column)
        self.table = QTableWidget(len(result.rows), 4)
        self.table.setObjectName("followup_table")
        self.table.setHorizontalHeaderLabels(["", "Earlier", "Later", "Change"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        for r, row in enumerate(result.rows):
            for c, text in enumerate(row):
                item = QTableWidgetItem(text)
                if c:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
        head = self.table.horizontalHeader()
        head.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        for c in (1, 2, 3):
            head.setSectionResizeMode(c, QHeaderView.ResizeMode.Stretch)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.resizeRowsToContents()
        height = self.table.horizontalHeader().height() + sum(
            self.table.rowHeight(r) for r in range(self.table.rowCount())) + 4
        self.table.setFixedHeight(height)
        self.note = QLabel(result.note)
        self.note.setObjectName("followup_note")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #c03030; font-weight: bold;" if not result.comparable else "color: #808080;")
        self.note.setVisible(bool(result.note))
        # a wrapped label's height depends on its width, which the dialog's minimum height does not
        # see: give it the height it needs at the two pictures' width (else it overlaps them)
        if result.note:
            self.note.setMinimumHeight(self.note.heightForWidth(2 * THUMB_SIDE + 6))
        disclaimer = QLabel(DISCLAIMER)
        disclaimer.setStyleSheet("color: #a06000; font-weight: bold;")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.setSizeConstraint(QLayout.SizeConstraint.SetMinimumSize)  # never squeezed over each other
        layout.addLayout(grid)
        layout.addWidget(self.table)
        layout.addWidget(self.note)
        layout.addWidget(disclaimer)
        layout.addWidget(buttons)

    def cell(self, row: int, col: int) -> str:
        item = self.table.item(row, col)
        return item.text() if item is not None else ""

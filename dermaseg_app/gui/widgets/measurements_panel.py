"""The Measurements panel (issue 15): the rows app.measurements formats, the calibration line,
colour swatches and the disclaimer. It shows what it is given; gui/measurements.py feeds it."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from dermaseg_app.app.measurements import DISCLAIMER, UNCALIBRATED_TEXT, Row, panel_rows


class MeasurementsPanel(QGroupBox):
    def __init__(self, actions: dict[str, QAction] | None = None, parent: QWidget | None = None) -> None:
        super().__init__("Measurements", parent)
        self.setObjectName("measurementsPanel")
        self.values: dict[str, QLabel] = {}
        self.names: dict[str, QLabel] = {}
        self.form = QFormLayout()
        self.form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.swatches = QWidget()
        self.swatch_row = QHBoxLayout(self.swatches)
        self.swatch_row.setContentsMargins(0, 0, 0, 0)
        self.swatch_row.setSpacing(3)
        self.disclaimer = QLabel(DISCLAIMER)
        self.disclaimer.setObjectName("measure_disclaimer")
        self.disclaimer.setStyleSheet("color: #a06000; font-weight: bold;")
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #808080;")
        self.note.hide()
        layout = QVBoxLayout(self)
        layout.addWidget(self.disclaimer)  # first: in view however short the panel is
        layout.addLayout(self.form)
        layout.addWidget(self.swatches)
        if actions:
            buttons = QHBoxLayout()
            for name in ("set_scale", "ruler", "show_lines"):
                if name in actions:
                    b = QToolButton()
                    b.setDefaultAction(actions[name])
                    b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
                    b.setObjectName(f"measure_button_{name}")
                    buttons.addWidget(b)
            buttons.addStretch(1)
            layout.addLayout(buttons)
        layout.addWidget(self.note)
        self.show_rows(panel_rows(None))

    def show_rows(self, rows: list[Row]) -> None:
        keys = [r.key for r in rows]
        if keys != list(self.values):  # the set of rows changed (e.g. "Parts"): rebuild the form
            while self.form.rowCount():
                self.form.removeRow(0)
            self.values, self.names = {}, {}
            for r in rows:
                value = QLabel()
                value.setObjectName(f"measure_{r.key}")
                value.setWordWrap(True)
                value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
                name = QLabel(r.label)
                self.values[r.key], self.names[r.key] = value, name
                self.form.addRow(name, value)
        for r in rows:
            self.values[r.key].setText(r.text)
            self.values[r.key].setToolTip(r.tooltip)
            self.names[r.key].setToolTip(r.tooltip)
        scale = self.values.get("scale")
        if scale is not None:  # no scale: said in the warning colour
            scale.setStyleSheet("color: #a06000;" if scale.text() == UNCALIBRATED_TEXT else "")

    @property
    def calibration(self) -> QLabel:
        """The scale line ("uncalibrated: pixels", or "0.025 mm/px (ruler, set for the folder)")."""
        return self.values["scale"]

    def show_swatches(self, colours: list[tuple[str, tuple[int, int, int]]]) -> None:
        while self.swatch_row.count():
            item = self.swatch_row.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        for name, (r, g, b) in colours:
            sw = QLabel()
            sw.setFixedSize(16, 16)
            sw.setToolTip(name)
            sw.setStyleSheet(f"background: rgb({r},{g},{b}); border: 1px solid #777;")
            self.swatch_row.addWidget(sw)
        self.swatch_row.addStretch(1)
        self.swatches.setVisible(bool(colours))

    def show_note(self, text: str) -> None:
        self.note.setText(text)
        self.note.setVisible(bool(text))

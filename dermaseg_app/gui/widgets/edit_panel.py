"""The correction tool bar (tools, brush radius, undo/redo) and panel (clean-up operations, reset,
save, state) (issue 5).

The buttons show the controller's QActions (``setDefaultAction``), so a button, its menu entry and
its key stay in step (enabled state, tooltip with the shortcut).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSpinBox,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)


def _button(action: QAction) -> QToolButton:
    b = QToolButton()
    b.setDefaultAction(action)
    b.setToolButtonStyle(b.toolButtonStyle().ToolButtonTextOnly)
    b.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
    b.setMinimumWidth(40)
    return b


class EditToolBar(QToolBar):
    """The correction tools above the canvas: tool choice, brush radius, undo, redo and save."""

    def __init__(self, actions: dict[str, QAction], parent: QWidget | None = None) -> None:
        super().__init__("Correction tools", parent)
        self.setObjectName("edit_toolbar")
        self.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        for name in ("tool_navigate", "tool_brush", "tool_eraser", "tool_lasso_add", "tool_lasso_subtract",
                     "tool_new_contour", "tool_vertices"):
            self.addAction(actions[name])
        self.addSeparator()
        self.addWidget(QLabel(" Radius "))
        self.radius = QSpinBox()
        self.radius.setRange(1, 500)
        self.radius.setSuffix(" px")
        self.radius.setToolTip("Brush and eraser radius in image pixels ([ and ], or Ctrl + wheel)")
        self.addWidget(self.radius)
        self.addSeparator()
        for name in ("undo", "redo"):
            self.addAction(actions[name])
        self.addSeparator()
        self.addAction(actions["save"])  # always in view, however short the side panel is


class EditPanel(QGroupBox):
    """Clean-up operations with their amounts, reset, save and the correction's state."""

    def __init__(self, actions: dict[str, QAction], parent: QWidget | None = None) -> None:
        super().__init__("Correct the contour", parent)
        self.actions = actions
        layout = QVBoxLayout(self)
        ops = QGridLayout()
        ops.setHorizontalSpacing(4)
        ops.addWidget(_button(actions["fill_holes"]), 0, 0)
        ops.addWidget(_button(actions["remove_islands"]), 1, 0)
        self.island_area = _spin(QSpinBox(), 1, 10_000_000, 500, " px²",
                                 "Islands smaller than this many pixels are removed")
        ops.addWidget(self.island_area, 1, 1)
        ops.addWidget(_button(actions["smooth"]), 2, 0)
        self.sigma = _spin(QDoubleSpinBox(), 0.5, 100.0, 4.0, " px",
                           "Smoothing strength (Gaussian sigma along the outline); the area is kept")
        ops.addWidget(self.sigma, 2, 1)
        ops.addWidget(_button(actions["simplify"]), 3, 0)
        self.tolerance = _spin(QDoubleSpinBox(), 0.1, 100.0, 2.0, " px",
                               "Largest distance the simplified outline may move")
        ops.addWidget(self.tolerance, 3, 1)
        grow = QHBoxLayout()
        grow.setSpacing(4)
        grow.addWidget(_button(actions["grow"]))
        grow.addWidget(_button(actions["shrink"]))
        ops.addLayout(grow, 4, 0)
        self.pixels = _spin(QSpinBox(), 1, 500, 5, " px", "Grow or shrink the lesion by this many pixels")
        ops.addWidget(self.pixels, 4, 1)
        ops.addWidget(_button(actions["reset"]), 0, 1)
        ops.setColumnStretch(0, 1)
        layout.addLayout(ops)
        save = _button(actions["save"])
        layout.addWidget(save)
        self.autosave = QCheckBox("Save when moving to another image")
        self.autosave.setChecked(True)
        self.autosave.setToolTip("Corrections are also journalled at every edit, so a crash loses nothing")
        layout.addWidget(self.autosave)
        self.state = QLabel("Not corrected")
        self.state.setObjectName("edit_state")
        self.state.setWordWrap(True)
        layout.addWidget(self.state)

    def show_state(self, text: str, warning: bool = False) -> None:
        self.state.setText(text)
        self.state.setStyleSheet("color: #d04040;" if warning else "")


def _spin(box, lo, hi, value, suffix: str, tip: str):
    box.setRange(lo, hi)
    box.setValue(value)
    box.setSuffix(suffix)
    box.setToolTip(tip)
    box.setMaximumWidth(110)
    return box

"""The correction panel: tools, brush radius, clean-up operations, undo/redo/reset/save (issue 5).

The buttons show the controller's QActions (``setDefaultAction``), so a button, its menu entry and
its key stay in step (enabled state, tooltip with the shortcut).
"""

from __future__ import annotations

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
    QToolButton,
    QVBoxLayout,
    QWidget,
)


def _button(action: QAction) -> QToolButton:
    b = QToolButton()
    b.setDefaultAction(action)
    b.setToolButtonStyle(b.toolButtonStyle().ToolButtonTextOnly)
    b.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
    return b


class EditPanel(QGroupBox):
    def __init__(self, actions: dict[str, QAction], parent: QWidget | None = None) -> None:
        super().__init__("Correct the contour", parent)
        self.actions = actions
        layout = QVBoxLayout(self)

        tools = QGridLayout()
        names = ["tool_navigate", "tool_brush", "tool_eraser", "tool_lasso_add", "tool_lasso_subtract",
                 "tool_new_contour", "tool_vertices"]
        self.tool_buttons = {}
        for i, name in enumerate(names):
            b = _button(actions[name])
            self.tool_buttons[name] = b
            tools.addWidget(b, i // 2, i % 2)
        layout.addLayout(tools)

        row = QHBoxLayout()
        row.addWidget(QLabel("Brush radius"))
        self.radius = QSpinBox()
        self.radius.setRange(1, 500)
        self.radius.setSuffix(" px")
        self.radius.setToolTip("Brush and eraser radius in image pixels ([ and ], or Ctrl + wheel)")
        row.addWidget(self.radius, 1)
        layout.addLayout(row)

        ops = QGridLayout()
        ops.addWidget(_button(actions["fill_holes"]), 0, 0, 1, 2)
        ops.addWidget(_button(actions["remove_islands"]), 1, 0)
        self.island_area = QSpinBox()
        self.island_area.setRange(1, 10_000_000)
        self.island_area.setValue(500)
        self.island_area.setSuffix(" px²")
        self.island_area.setToolTip("Islands smaller than this many pixels are removed")
        ops.addWidget(self.island_area, 1, 1)
        ops.addWidget(_button(actions["smooth"]), 2, 0)
        self.sigma = QDoubleSpinBox()
        self.sigma.setRange(0.5, 100.0)
        self.sigma.setValue(4.0)
        self.sigma.setSuffix(" px")
        self.sigma.setToolTip("Smoothing strength (Gaussian sigma along the outline); the area is kept")
        ops.addWidget(self.sigma, 2, 1)
        ops.addWidget(_button(actions["simplify"]), 3, 0)
        self.tolerance = QDoubleSpinBox()
        self.tolerance.setRange(0.1, 100.0)
        self.tolerance.setValue(2.0)
        self.tolerance.setSuffix(" px")
        self.tolerance.setToolTip("Largest distance the simplified outline may move")
        ops.addWidget(self.tolerance, 3, 1)
        grow = QHBoxLayout()
        grow.addWidget(_button(actions["grow"]))
        grow.addWidget(_button(actions["shrink"]))
        ops.addLayout(grow, 4, 0)
        self.pixels = QSpinBox()
        self.pixels.setRange(1, 500)
        self.pixels.setValue(5)
        self.pixels.setSuffix(" px")
        self.pixels.setToolTip("Grow or shrink the lesion by this many pixels")
        ops.addWidget(self.pixels, 4, 1)
        layout.addLayout(ops)

        hist = QHBoxLayout()
        for name in ("undo", "redo", "reset"):
            hist.addWidget(_button(actions[name]))
        layout.addLayout(hist)
        save = QHBoxLayout()
        save.addWidget(_button(actions["save"]))
        layout.addLayout(save)
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

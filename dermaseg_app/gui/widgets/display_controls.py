"""Display controls: mask opacity, threshold (moves the contour live), heat-map, comparison."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QFormLayout, QHBoxLayout, QLabel, QSlider, QWidget

from dermaseg_app.gui.canvas.renderer import DisplayOptions


def _slider(lo: int, hi: int, value: int) -> QSlider:
    s = QSlider(Qt.Orientation.Horizontal)
    s.setRange(lo, hi)
    s.setValue(value)
    return s


class DisplayControls(QWidget):
    options_changed = Signal(object)  # DisplayOptions
    threshold_released = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.opacity = _slider(0, 100, 45)
        self.opacity_label = QLabel()
        self.threshold = _slider(1, 99, 50)
        self.threshold.setToolTip("Moves the contour on the stored probability map (no new prediction)")
        self.threshold_label = QLabel()
        self.show_mask = QCheckBox("Mask (M)")
        self.show_mask.setChecked(True)
        self.heatmap = QCheckBox("Probability heat-map (H)")
        self.compare = QCheckBox("Compare with ground truth (G)")
        self.compare.setToolTip("True positives yellow, false positives red, false negatives green")
        self.second = QCheckBox("Compared model's contour (J)")
        self.second.setChecked(True)
        self.second.setToolTip("Model > Compare With Model… draws a second model's outline, dashed")
        self.second.setVisible(False)  # while a second model is compared

        form = QFormLayout(self)
        form.setContentsMargins(4, 4, 4, 4)
        form.addRow("Opacity", self._with_label(self.opacity, self.opacity_label))
        form.addRow("Threshold", self._with_label(self.threshold, self.threshold_label))
        form.addRow(self.show_mask)
        form.addRow(self.heatmap)
        form.addRow(self.compare)
        form.addRow(self.second)
        for s in (self.opacity, self.threshold):
            s.valueChanged.connect(self._changed)
        for c in (self.show_mask, self.heatmap, self.compare, self.second):
            c.toggled.connect(self._changed)
        self.threshold.sliderReleased.connect(lambda: self.threshold_released.emit(self.threshold.value() / 100))
        self._update_labels()

    @staticmethod
    def _with_label(slider: QSlider, label: QLabel) -> QWidget:
        w = QWidget()
        row = QHBoxLayout(w)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(slider, 1)
        label.setMinimumWidth(36)
        row.addWidget(label)
        return w

    def options(self) -> DisplayOptions:
        return DisplayOptions(
            threshold=self.threshold.value() / 100,
            opacity=self.opacity.value() / 100,
            heatmap=self.heatmap.isChecked(),
            compare=self.compare.isChecked() and self.compare.isEnabled(),
            show_mask=self.show_mask.isChecked(),
            second=self.second.isChecked(),
        )

    def set_second_available(self, available: bool) -> None:
        """Show the compared model's switch while a second model is compared."""
        self.second.setVisible(available)

    def set_threshold(self, value: float) -> None:
        self.threshold.setValue(int(round(value * 100)))

    def set_compare_available(self, available: bool, reason: str = "") -> None:
        """Enable the comparison for images with ground truth (no signal: the caller redraws)."""
        from dermaseg_app.gui.canvas.overlay import colours

        self.compare.setEnabled(available)
        self.compare.setToolTip(colours().comparison.label if available
                                else (reason or "This image has no ground truth"))

    def _update_labels(self) -> None:
        self.opacity_label.setText(f"{self.opacity.value()}%")
        self.threshold_label.setText(f"{self.threshold.value() / 100:.2f}")

    def _changed(self, *args) -> None:
        self._update_labels()
        self.options_changed.emit(self.options())

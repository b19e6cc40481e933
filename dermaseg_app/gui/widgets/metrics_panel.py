"""The metrics of the current image against its ground truth."""

from __future__ import annotations

from PySide6.QtWidgets import QFormLayout, QGroupBox, QLabel, QVBoxLayout, QWidget

ROWS = (
    ("acc", "Accuracy (ACC)"),
    ("dsc", "Dice (DSC)"),
    ("jsc", "Jaccard (JSC)"),
    ("sen", "Sensitivity (SEN)"),
    ("spe", "Specificity (SPE)"),
    ("jsc_th", "Thresholded JSC"),
    ("hd95", "Boundary distance (HD95)"),
)


class MetricsPanel(QGroupBox):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("This image", parent)
        self.values: dict[str, QLabel] = {}
        form = QFormLayout()
        for key, label in ROWS:
            value = QLabel("—")
            value.setObjectName(f"metric_{key}")
            self.values[key] = value
            form.addRow(label, value)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #808080;")
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.note)

    def show_scores(self, scores, threshold: float | None = None, note: str = "") -> None:
        for key, label in self.values.items():
            if scores is None:
                label.setText("—")
                continue
            value = getattr(scores, key)
            if key == "hd95":
                label.setText("—" if value is None else f"{value:.1f} px")
            else:
                label.setText(f"{100 * value:.1f}%")
        if scores is not None and threshold is not None and not note:
            note = f"at threshold {threshold:.2f}"
        self.note.setText(note)
        self.note.setVisible(bool(note))

    def show_pending(self, note: str) -> None:
        self.show_scores(None, note=note)

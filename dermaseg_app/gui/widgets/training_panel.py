"""The pieces of the Training tab: the settings form, the live plot, and the result box.

pyqtgraph is imported when the plot is built (the Training tab is built with the window, but
the plot widget is created on first use so the window appears without it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from dermaseg_app.paths import replay_dir

DEVICES = (("Automatic (GPU when there is one)", None), ("CPU", "cpu"), ("GPU (CUDA)", "cuda"))


@dataclass
class TrainingSettings:
    epochs: int = 20
    replay: Path | None = None
    replay_share: float = 0.5
    keep_dermoscopy: bool = False
    base_val: Path | None = None
    device: str | None = None


def _folder_row(edit: QLineEdit, title: str, parent: QWidget) -> QWidget:
    row = QWidget(parent)
    lay = QHBoxLayout(row)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(edit, 1)
    browse = QPushButton("Choose…")
    browse.setObjectName(f"browse_{edit.objectName()}")

    def choose() -> None:
        folder = QFileDialog.getExistingDirectory(parent, title, edit.text())
        if folder:
            edit.setText(folder)

    browse.clicked.connect(choose)
    lay.addWidget(browse)
    return row


class SettingsForm(QGroupBox):
    """Epochs, replay folder and share, the "keep dermoscopy" check, device."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Settings", parent)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 500)
        self.epochs.setValue(20)
        self.epochs.setToolTip("Passes over the corrected images (20: the measured recipe)")
        self.replay = QLineEdit()
        self.replay.setObjectName("replay")
        self.replay.setPlaceholderText("the 24 bundled dermoscopy images")
        self.replay.setToolTip(
            "A folder of dermoscopy images with masks (e.g. your archive, or ISIC 2017 train). A share "
            "of every batch is taken from it so that the model keeps what it knew. Empty: the 24 CC0 "
            "dermoscopy images bundled with DermaSeg. Replay share 0: no replay.")
        self.share = QDoubleSpinBox()
        self.share.setRange(0.0, 0.95)
        self.share.setSingleStep(0.05)
        self.share.setDecimals(2)
        self.share.setValue(0.5)
        self.share.setToolTip("Share of every batch taken from the replay folder (0.5 by default; "
                              "0.75 forgets less and learns the new images a little less; 0: no replay)")
        self.keep = QCheckBox("Keep dermoscopy")
        self.keep.setObjectName("keepDermoscopy")
        self.keep.setToolTip("Each epoch is also scored on this folder of dermoscopy images with masks "
                             "(e.g. ISIC 2017 val); an epoch that loses more than 0.01 JSC there is not "
                             "kept, and if none qualifies the base model is kept unchanged.")
        self.keep_note = QLabel("Keep only epochs that score within 0.01 JSC of the base model on this "
                                "dermoscopy folder (images with masks). Replay share 0.75 suits it best.")
        self.keep_note.setWordWrap(True)
        self.keep_note.setStyleSheet("color: #707070;")
        self.base_val = QLineEdit()
        self.base_val.setObjectName("base_val")
        self.base_val.setPlaceholderText("a dermoscopy validation folder (images + masks)")
        self.device = QComboBox()
        for text, value in DEVICES:
            self.device.addItem(text, value)
        self.replay_note = QLabel()
        self.replay_note.setWordWrap(True)
        self.replay_note.setObjectName("replayNote")

        col = QVBoxLayout(self)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Epochs", self.epochs)
        form.addRow("Replay folder", _folder_row(self.replay, "Dermoscopy images with masks to replay", self))
        form.addRow("Replay share", self.share)
        col.addLayout(form)
        col.addWidget(self.replay_note)
        col.addWidget(self.keep)
        col.addWidget(self.keep_note)
        col.addWidget(_folder_row(self.base_val, "Dermoscopy validation images with masks", self))
        device_form = QFormLayout()
        device_form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        device_form.addRow("Device", self.device)
        col.addLayout(device_form)
        for w in (self.replay, self.base_val):
            w.textChanged.connect(self._update)
            about = w.toolTip()
            w.textChanged.connect(lambda text, w=w, about=about: w.setToolTip(
                "\n\n".join(t for t in (text, about) if t)))
        self.keep.toggled.connect(self._update)
        self.epochs.valueChanged.connect(lambda _v: self.changed.emit())
        self.share.valueChanged.connect(lambda _v: self._update())
        self._update()

    def _update(self) -> None:
        own_folder = bool(self.replay.text().strip())
        self.base_val.setEnabled(self.keep.isChecked())
        if self.share.value() <= 0:
            self.replay_note.setText("No replay: the model learns only your corrections and may "
                                     "forget part of what it knew about dermoscopy images.")
            self.replay_note.setStyleSheet("color: #a06000;")
            self.replay_note.show()
        elif not own_folder:
            self.replay_note.setText("Replaying the 24 dermoscopy images bundled with DermaSeg. "
                                     "A larger archive of your own keeps dermoscopy better.")
            self.replay_note.setStyleSheet("color: #707070;")
            self.replay_note.show()
        else:
            self.replay_note.setText("")
            self.replay_note.hide()
        self.changed.emit()

    def values(self) -> TrainingSettings:
        replay_text = self.replay.text().strip()
        base_val = self.base_val.text().strip()
        replay: Path | None = Path(replay_text) if replay_text else replay_dir()
        if self.share.value() <= 0:
            replay = None
        return TrainingSettings(
            epochs=int(self.epochs.value()), replay=replay,
            replay_share=float(self.share.value()), keep_dermoscopy=self.keep.isChecked(),
            base_val=Path(base_val) if base_val and self.keep.isChecked() else None,
            device=self.device.currentData())

    def problem(self) -> str:
        """Why the settings cannot be used, or ""."""
        v = self.values()
        if v.replay is not None and not v.replay.exists():
            return f"The replay folder {v.replay} does not exist."
        if v.keep_dermoscopy and v.base_val is None:
            return "Choose the dermoscopy folder for \u201ckeep dermoscopy\u201d, or untick it."
        if v.base_val is not None and not v.base_val.exists():
            return f"The dermoscopy validation folder {v.base_val} does not exist."
        return ""

    def set_enabled(self, enabled: bool) -> None:
        for w in self.findChildren(QWidget):
            w.setEnabled(enabled)
        if enabled:
            self._update()


class TrainingPlot(QWidget):
    """Training loss per step (left) and validation JSC per epoch (right), drawn as they arrive."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loss_points: list[tuple[int, float]] = []
        self.val_points: list[tuple[int, float]] = []
        self.base_points: list[tuple[int, float]] = []
        self.before: float | None = None
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._built = False
        self.setMinimumHeight(170)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API; pyqtgraph asks for 640x480 per plot
        return QSize(520, 240)

    def ensure_built(self) -> None:
        if self._built:
            return
        import pyqtgraph as pg

        self.loss_plot = pg.PlotWidget(background="w")
        self.loss_plot.setObjectName("lossPlot")
        self.loss_plot.setTitle("Training loss per step", color="#303030", size="10pt")
        self.loss_plot.setLabel("bottom", "step")
        self.loss_plot.showGrid(x=True, y=True, alpha=0.2)
        self.loss_plot.addLegend(offset=(-5, 5), labelTextSize="8pt")
        self.loss_curve = self.loss_plot.plot([], [], pen=pg.mkPen((150, 180, 225), width=1),
                                              name="loss of each step")
        self.loss_smooth = self.loss_plot.plot([], [], pen=pg.mkPen((30, 80, 170), width=2),
                                               name="smoothed")
        self.val_plot = pg.PlotWidget(background="w")
        self.val_plot.setObjectName("valPlot")
        self.val_plot.setTitle("Validation JSC per epoch", color="#303030", size="10pt")
        self.val_plot.setLabel("bottom", "epoch")
        self.val_plot.setYRange(0, 1, padding=0.02)
        self.val_plot.showGrid(x=True, y=True, alpha=0.2)
        self.val_plot.addLegend(offset=(-5, -5), labelTextSize="8pt")
        self.val_curve = self.val_plot.plot([], [], pen=pg.mkPen((30, 150, 70), width=2), symbol="o",
                                            symbolSize=6, symbolBrush=(30, 150, 70))
        self.base_curve = self.val_plot.plot([], [], pen=pg.mkPen((200, 120, 30), width=2), symbol="s",
                                             symbolSize=5, symbolBrush=(200, 120, 30))
        self._legend_named: set[str] = set()
        self.before_line = pg.InfiniteLine(angle=0, pen=pg.mkPen((120, 120, 120), width=1,
                                                                style=Qt.PenStyle.DashLine))
        self.before_line.hide()
        self.val_plot.addItem(self.before_line)
        # a legend entry for the dashed line (InfiniteLine has none of its own)
        self.before_line_proxy = pg.PlotDataItem([], [], pen=pg.mkPen((120, 120, 120), width=1,
                                                                     style=Qt.PenStyle.DashLine))
        for p in (self.loss_plot, self.val_plot):
            p.setMouseEnabled(x=False, y=False)
            p.hideButtons()
            self._layout.addWidget(p)
        self._built = True

    def clear(self) -> None:
        self.loss_points.clear()
        self.val_points.clear()
        self.base_points.clear()
        self.before = None
        if self._built:
            self._redraw()

    def set_before(self, jsc: float | None) -> None:
        self.ensure_built()
        self.before = jsc
        if jsc is None:
            self.before_line.hide()
        else:
            self.before_line.setValue(jsc)
            self.before_line.show()

    def set_epochs(self, epochs: int, steps_per_epoch: int) -> None:
        """Fix the x axes to the whole run (whole-number ticks for the epochs)."""
        self.ensure_built()
        self.val_plot.setXRange(1, max(2, epochs), padding=0.04)
        self.val_plot.getAxis("bottom").setTickSpacing(max(1, epochs // 10), 1)
        self.loss_plot.setXRange(1, max(2, epochs * steps_per_epoch), padding=0.02)

    def add_loss(self, step: int, value: float) -> None:
        self.ensure_built()
        self.loss_points.append((step, value))
        self._draw_loss()

    def _draw_loss(self) -> None:
        steps = [s for s, _ in self.loss_points]
        values = [v for _, v in self.loss_points]
        self.loss_curve.setData(steps, values)
        smooth, avg = [], None
        for v in values:  # exponential moving average: the trend through the batch-to-batch noise
            avg = v if avg is None else 0.8 * avg + 0.2 * v
            smooth.append(avg)
        self.loss_smooth.setData(steps, smooth)

    def add_epoch(self, epoch: int, jsc: float | None, base_jsc: float | None = None) -> None:
        self.ensure_built()
        if jsc is not None:
            self.val_points.append((epoch, jsc))
        if base_jsc is not None:
            self.base_points.append((epoch, base_jsc))
        self._redraw()

    def _name(self, curve, name: str) -> None:
        if name not in self._legend_named:
            self.val_plot.plotItem.legend.addItem(curve, name)
            self._legend_named.add(name)

    def _redraw(self) -> None:
        self._draw_loss()
        if self.val_points:
            self._name(self.val_curve, "held-out corrections")
        if self.base_points:
            self._name(self.base_curve, "dermoscopy folder")
        if self.before is not None and self.val_points:
            self._name(self.before_line_proxy, "before (base model)")
        self.val_curve.setData([e for e, _ in self.val_points], [v for _, v in self.val_points])
        self.base_curve.setData([e for e, _ in self.base_points], [v for _, v in self.base_points])
        if not self.loss_points and not self.val_points:
            self.before_line.hide()


class ResultBox(QGroupBox):
    """Before/after scores, the new model's path and card, and "Use this model"."""

    use_model = Signal(object)  # Path

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Result", parent)
        self.text = QLabel("No fine-tuning run yet.")
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.card = QLabel()
        self.card.setWordWrap(True)
        self.card.setStyleSheet("color: #606060;")
        self.card.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.use = QPushButton("Use this model")
        self.use.setObjectName("useModel")
        self.use.setEnabled(False)
        self.use.setToolTip("Switch the review window to the new model; the images are predicted again")
        self.use.clicked.connect(lambda: self.use_model.emit(self.model_path))
        self.model_path: Path | None = None
        col = QVBoxLayout(self)
        col.addWidget(self.text)
        col.addWidget(self.card)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.use)
        col.addLayout(row)

    def show_result(self, html: str, model_path: Path | None, card: str = "") -> None:
        self.text.setText(html)
        self.card.setText(card)
        self.card.setVisible(bool(card))
        self.model_path = model_path
        self.use.setEnabled(model_path is not None)

    def reset(self, text: str = "No fine-tuning run yet.") -> None:
        self.show_result(text, None)

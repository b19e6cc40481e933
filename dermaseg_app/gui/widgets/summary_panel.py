"""The folder summary: mean scores, a histogram of per-image JSC, the worst images first.

pyqtgraph is imported when the histogram is first needed, so the window appears without it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QGroupBox, QLabel, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

WORST_SHOWN = 10


class SummaryPanel(QGroupBox):
    row_activated = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Folder summary", parent)
        self.means = QLabel("No images with ground truth predicted yet.")
        self.means.setWordWrap(True)
        self.means.setTextFormat(Qt.TextFormat.RichText)
        self.plot = None  # pyqtgraph PlotWidget, created on first use
        self._plot_holder = QVBoxLayout()
        self.worst = QListWidget()
        self.worst.setMinimumHeight(60)
        self.worst.itemActivated.connect(self._activated)
        self.worst.itemClicked.connect(self._activated)
        layout = QVBoxLayout(self)
        layout.addWidget(self.means)
        layout.addLayout(self._plot_holder)
        layout.addWidget(QLabel("Lowest JSC first:"))
        layout.addWidget(self.worst)
        self.jsc_values: list[float] = []

    def _ensure_plot(self):
        if self.plot is None:
            import pyqtgraph as pg

            self.plot = pg.PlotWidget(background="w")
            self.plot.setObjectName("jscHistogram")
            self.plot.setMinimumHeight(120)
            self.plot.setMaximumHeight(180)
            self.plot.setLabel("bottom", "JSC per image")
            self.plot.setLabel("left", "images")
            self.plot.setXRange(0, 1, padding=0.02)
            self.plot.setMouseEnabled(x=False, y=False)
            self.plot.hideButtons()
            self._bars = None
            self._plot_holder.addWidget(self.plot)
        return self.plot

    def update_summary(self, summary, per_image: Sequence[tuple[int, str, float]], total: int,
                       threshold: float, with_truth: int | None = None) -> None:
        """``summary``: core.metrics.FolderSummary or None; ``per_image``: (row, name, jsc);
        ``with_truth``: how many images have ground truth."""
        if summary is None:
            if with_truth == 0:
                self.means.setText(f"No ground truth found for these {total} images: they are reviewed "
                                   "without comparison.")
            else:
                self.means.setText(f"No images with ground truth predicted yet ({total} images).")
        else:
            m = summary.mean
            hd = "—" if m.hd95 is None else f"{m.hd95:.1f} px"
            self.means.setText(
                f"<b>{summary.n}</b> of {total} images compared (at the model's threshold {threshold:.2f}).<br>"
                f"Mean JSC <b>{100 * m.jsc:.1f}%</b> · DSC <b>{100 * m.dsc:.1f}%</b> · "
                f"ACC {100 * m.acc:.1f}%<br>SEN {100 * m.sen:.1f}% · SPE {100 * m.spe:.1f}% · "
                f"thresholded JSC {100 * m.jsc_th:.1f}% · HD95 {hd}"
            )
        self.jsc_values = [j for _, _, j in per_image]
        if per_image:
            self._draw_histogram(self.jsc_values)
        elif self.plot is not None and self._bars is not None:  # another folder: not the last one's bars
            self.plot.removeItem(self._bars)
            self._bars = None
        self.worst.clear()
        for row, name, jsc in sorted(per_image, key=lambda t: t[2])[:WORST_SHOWN]:
            item = QListWidgetItem(f"{100 * jsc:5.1f}%  {name}")
            item.setData(Qt.ItemDataRole.UserRole, row)
            self.worst.addItem(item)

    def _draw_histogram(self, values: Sequence[float]) -> None:
        import pyqtgraph as pg

        plot = self._ensure_plot()
        counts, edges = np.histogram(np.asarray(values, float), bins=20, range=(0.0, 1.0))
        if self._bars is not None:
            plot.removeItem(self._bars)
        self._bars = pg.BarGraphItem(x0=edges[:-1], x1=edges[1:], height=counts,
                                     brush=(70, 130, 200), pen=(40, 80, 140))
        plot.addItem(self._bars)
        plot.setYRange(0, max(1, int(counts.max())) * 1.1, padding=0)

    def _activated(self, item: QListWidgetItem) -> None:
        self.row_activated.emit(int(item.data(Qt.ItemDataRole.UserRole)))

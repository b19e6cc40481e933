"""File > Export...: the review project's masks, polygons, COCO file and CSV manifest (issue 5).

Runs ``core.export.export_project`` -- what ``dermaseg export PROJECT --out DIR`` runs -- on a
worker thread, with its progress and its errors shown in the dialog. Corrected masks are
exported where they were saved, the model's stored prediction elsewhere (see core.export).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QThreadPool, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from dermaseg_app.core.project import Project
from dermaseg_app.gui.workers import Worker, describe_error


def run_export(job, project: Project, out_dir: Path, coco_rle: bool, skip_excluded: bool,
               with_hd95: bool):
    from dermaseg_app.core.export import export_project

    def progress(i: int, n: int, _key: str) -> None:
        job.progress(i, n)

    return export_project(project, out_dir, coco_rle=coco_rle, skip_excluded=skip_excluded,
                          with_hd95=with_hd95, progress=progress)


class ExportDialog(QDialog):
    finished_export = Signal(object)  # ExportSummary, or the exception

    def __init__(self, projects: list[Project], current: Project, unsaved: int,
                 parent: QWidget | None = None, pool: QThreadPool | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export the review")
        self.projects = projects
        self.pool = pool
        self.worker: Worker | None = None
        self.summary = None

        self.project = QComboBox()
        for p in projects:
            self.project.addItem(str(p.image_folder), p)
        self.project.setCurrentIndex(projects.index(current))
        self.out = QLineEdit(str(current.project_dir / "export"))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out, 1)
        out_row.addWidget(browse)
        self.coco_rle = QCheckBox("COCO masks as RLE (instead of polygons)")
        self.skip_excluded = QCheckBox("Leave out images marked excluded")
        self.hd95 = QCheckBox("Boundary distance (HD95) in the manifest (slower)")
        self.hd95.setChecked(True)
        form = QFormLayout()
        form.addRow("Images of", self.project)
        form.addRow("Into folder", out_row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.message = QLabel(
            f"{unsaved} image(s) have unsaved corrections: save them first (Ctrl+S) to export them."
            if unsaved else "Corrected masks are exported where saved, the model's masks elsewhere.")
        self.message.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.export_button = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.export_button.clicked.connect(self.start)
        self.buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        for w in (self.coco_rle, self.skip_excluded, self.hd95, self.progress, self.message):
            layout.addWidget(w)
        layout.addWidget(self.buttons)
        self.resize(560, self.sizeHint().height())

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export into folder", self.out.text())
        if folder:
            self.out.setText(folder)

    def start(self) -> None:
        """Export in the background (the dialog stays responsive; Close cancels nothing half-written:
        every file is written atomically)."""
        if self.worker is not None and not self.worker.is_done:
            return
        text = self.out.text().strip()
        if not text:
            self._show("Choose a folder to export into.", error=True)
            return
        project: Project = self.project.currentData()
        self.export_button.setEnabled(False)
        self.progress.setRange(0, 0)
        self._show("Exporting…")
        worker = Worker(run_export, project, Path(text), self.coco_rle.isChecked(),
                        self.skip_excluded.isChecked(), self.hd95.isChecked())
        worker.progress.connect(self._progress)
        worker.result.connect(self._done)
        worker.errored.connect(self._error)
        self.worker = worker
        worker.start(self.pool)

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)

    def _done(self, summary) -> None:
        self.summary = summary
        self.export_button.setEnabled(True)
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        text = (f"Exported {summary.images} images ({summary.masks} masks, {summary.corrected} corrected, "
                f"{summary.with_ground_truth} with ground truth) into {summary.out_dir}.")
        if summary.errors:
            text += f"\n{len(summary.errors)} problem(s): " + "; ".join(summary.errors[:5])
        self._show(text, error=bool(summary.errors))
        self.finished_export.emit(summary)

    def _error(self, exc: BaseException) -> None:
        self.export_button.setEnabled(True)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self._show(f"Export failed: {describe_error(exc)}", error=True)
        self.finished_export.emit(exc)

    def _show(self, text: str, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setStyleSheet("color: #d04040;" if error else "")

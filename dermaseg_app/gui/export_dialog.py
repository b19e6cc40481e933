"""File > Export...: the review project's masks, polygons, COCO file and CSV manifest (issue 5).

Runs ``core.export.export_project`` -- what ``dermaseg export PROJECT --out DIR`` runs -- on a
worker thread, with its progress (the image being predicted) and its errors shown in the dialog,
and a Cancel button. Every image not marked excluded gets its saved correction, else the window's
current model's mask: its map from the prediction cache, predicted where it is missing (see
core.export); the manifest says which.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
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

ModelFactory = Callable[[threading.Event, Callable[[Path], None]], object]  # -> core.export.ModelMasks


def session_model(session) -> tuple[ModelFactory | None, str]:
    """(factory of the session's current model's ``ModelMasks``, or None; a line saying which
    model, or why there is none). The factory runs on the export's thread: the model may still be
    loading there (``ModelSlot.get`` waits for it, or for the cancel)."""
    from dermaseg_app.core.export import ModelMasks, cached_probability

    header, cache, slot = session.header, session.cache, session.model
    if header is None or cache is None or session.model_error:
        return None, (f"No model ({session.model_error or 'none loaded'}): images without a saved "
                      "correction get no mask.")
    threshold = session.threshold

    def factory(cancel: threading.Event, on_predict: Callable[[Path], None]) -> ModelMasks:
        return ModelMasks(header.name, header.version, threshold,
                          cached_probability(cache, lambda: slot.get(cancel), on_predict))

    return factory, (f"Images without a saved correction get the mask of {header.label} (threshold "
                     f"{threshold:g}); what is not predicted yet is predicted now.")


class _Where:
    """What the export's thread is doing, read by the dialog when progress arrives."""

    def __init__(self) -> None:
        self.text = ""


def run_export(job, project: Project, out_dir: Path, coco_rle: bool, skip_excluded: bool,
               with_hd95: bool, model_factory: ModelFactory | None = None, where: _Where | None = None):
    from dermaseg_app.core.export import export_project

    where = where or _Where()
    state = {"i": 0, "n": 0}

    def progress(i: int, n: int, key: str) -> None:
        state.update(i=i, n=n)
        where.text = f"{key}" if key else ""
        job.progress(i, n)

    def on_predict(image: Path) -> None:
        where.text = f"predicting {image.name}"
        job.progress(state["i"], state["n"])

    model = model_factory(job.cancel_event, on_predict) if model_factory is not None else None
    return export_project(project, out_dir, coco_rle=coco_rle, skip_excluded=skip_excluded,
                          with_hd95=with_hd95, model=model, progress=progress,
                          cancelled=lambda: job.cancelled)


class ExportDialog(QDialog):
    finished_export = Signal(object)  # ExportSummary, or the exception

    def __init__(self, projects: list[Project], current: Project, unsaved: int,
                 parent: QWidget | None = None, pool: QThreadPool | None = None,
                 model_factory: ModelFactory | None = None, model_text: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Export the review")
        self.projects = projects
        self.pool = pool
        self.model_factory = model_factory
        self.worker: Worker | None = None
        self.summary = None
        self._where = _Where()

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
        self.model_label = QLabel(model_text)
        self.model_label.setWordWrap(True)
        self.model_label.setStyleSheet("color: #707070;")
        self.message = QLabel(
            f"{unsaved} image(s) have unsaved corrections: save them first (Ctrl+S) to export them."
            if unsaved else "Saved corrections are exported where they exist, the model's masks "
                            "elsewhere; images marked excluded get no mask.")
        self.message.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.export_button = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.export_button.clicked.connect(self.start)
        self.cancel_button = self.buttons.addButton("Cancel Export", QDialogButtonBox.ButtonRole.ActionRole)
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        for w in (self.coco_rle, self.skip_excluded, self.hd95, self.model_label, self.progress, self.message):
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
                        self.skip_excluded.isChecked(), self.hd95.isChecked(), self.model_factory,
                        self._where)
        worker.progress.connect(self._progress)
        worker.result.connect(self._done)
        worker.errored.connect(self._error)
        self.worker = worker
        self.cancel_button.setEnabled(True)
        worker.start(self.pool)

    def cancel(self) -> None:
        if self.worker is not None and not self.worker.is_done:
            self.worker.cancel()
            self._show("Cancelling after the current image…")

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        where = self._where.text
        self._show(f"Exporting image {min(done + 1, total)} of {total}" + (f": {where}…" if where else "…"))

    def _done(self, summary) -> None:
        self.summary = summary
        self.export_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        text = (f"Exported {summary.images} images ({summary.masks} masks: {summary.corrected} corrected, "
                f"{summary.from_model} from the model; {summary.excluded} excluded; "
                f"{summary.with_ground_truth} with ground truth) into {summary.out_dir}.")
        if summary.errors:
            text += f"\n{len(summary.errors)} problem(s): " + "; ".join(summary.errors[:5])
        self._show(text, error=bool(summary.errors))
        self.finished_export.emit(summary)

    def _error(self, exc: BaseException) -> None:
        from dermaseg_app.core.export import ExportCancelled

        self.export_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        if isinstance(exc, ExportCancelled):
            self._show(f"Export cancelled: {exc}. The COCO file and the manifest were not written.")
        else:
            self._show(f"Export failed: {describe_error(exc)}", error=True)
        self.finished_export.emit(exc)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.cancel()  # closing the dialog stops the export after the current image
        super().closeEvent(event)

    def _show(self, text: str, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setStyleSheet("color: #d04040;" if error else "")

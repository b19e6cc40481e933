"""The main window: composes the case list, the canvas, the side panels, menus and status bar.

Behaviour lives in the pieces: ``session.ReviewSession`` (cases, model, background work),
``case_view.CaseView`` (drawing the current case), ``actions.build_menus`` (menus and keys).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from dermaseg_app.core.project import ReviewStatus
from dermaseg_app.gui.actions import build_menus
from dermaseg_app.gui.canvas.image_view import ImageCanvas
from dermaseg_app.gui.case_view import CaseView
from dermaseg_app.gui.editing import install_editing
from dermaseg_app.gui.session import ReviewSession
from dermaseg_app.gui.settings import GuiSettings
from dermaseg_app.gui.training_tab import install_training
from dermaseg_app.gui.widgets.case_list import CaseListWidget
from dermaseg_app.gui.widgets.display_controls import DisplayControls
from dermaseg_app.gui.widgets.metrics_panel import MetricsPanel
from dermaseg_app.gui.widgets.review_panel import ReviewPanel
from dermaseg_app.gui.widgets.status_widgets import InterimBadge, NoticeBar, ProgressWidget
from dermaseg_app.gui.window_size import LEFT_MIN_WIDTH, RIGHT_MIN_WIDTH, dock_widths, fit_to_screen
from dermaseg_app.gui.widgets.summary_panel import SummaryPanel


class MainWindow(QMainWindow):
    def __init__(self, session: ReviewSession, settings: GuiSettings | None = None) -> None:
        super().__init__()
        self.setWindowTitle("DermaSeg")
        self.setAcceptDrops(True)
        self.session = session
        self.settings = settings or GuiSettings.load()
        self.masks_dir: str | None = None

        self.canvas = ImageCanvas()
        self.notice = NoticeBar()
        central = QWidget()
        col = QVBoxLayout(central)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(0)
        col.addWidget(self.notice)
        col.addWidget(self.canvas, 1)
        self.setCentralWidget(central)

        self.case_list = CaseListWidget(session.table)
        self.summary = SummaryPanel()
        left = QSplitter(Qt.Orientation.Vertical)  # the folder: its images above, its summary below
        left.addWidget(self.case_list)
        left.addWidget(self.summary)
        left.setStretchFactor(0, 3)
        left.setStretchFactor(1, 2)
        left.setChildrenCollapsible(False)
        left_dock = self._dock("Images", left, Qt.DockWidgetArea.LeftDockWidgetArea, LEFT_MIN_WIDTH)
        self.controls = DisplayControls()
        self.review = ReviewPanel()
        self.metrics = MetricsPanel()
        side = QWidget()
        side_col = QVBoxLayout(side)
        for w in (self.controls, self.review, self.metrics):
            side_col.addWidget(w)
        side_col.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(side)
        scroll.setWidgetResizable(True)
        right_dock = self._dock("Review", scroll, Qt.DockWidgetArea.RightDockWidgetArea, RIGHT_MIN_WIDTH)
        self._docks = (left_dock, right_dock)

        self.device_label = QLabel("Device: loading…")
        self.zoom_label = QLabel("")
        self.model_label = QLabel("Model: loading…")
        self.timing_label = QLabel("")
        self.interim_label = InterimBadge()  # shown while the model is an interim one
        self.progress = ProgressWidget()
        bar = self.statusBar()
        bar.addPermanentWidget(self.progress)
        for label in (self.zoom_label, self.device_label, self.interim_label, self.model_label,
                      self.timing_label):
            bar.addPermanentWidget(label)

        self.view = CaseView(session, self.canvas, self.controls, self.metrics, self)
        self.menus = build_menus(self)
        self._connect()
        self.editing = install_editing(self)  # contour correction: panel, Edit menu, save, export
        self.training = install_training(self)  # Review / Training tabs: fine-tune on the corrections
        geometry = QSettings("DermaSeg", "DermaSeg").value("main_window/geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            fit_to_screen(self)
        self.size_docks()

    def size_docks(self) -> None:
        """The side panels take what they need of the window's width; the canvas gets the rest."""
        left, right = dock_widths(self.width())
        self.resizeDocks(list(self._docks), [left, right], Qt.Orientation.Horizontal)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        if event.oldSize().width() <= 0:  # the first real size (shown, or resized before showing)
            self.size_docks()

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea, width: int) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{title}")
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        widget.setMinimumWidth(width)
        self.addDockWidget(area, dock)
        return dock

    def _connect(self) -> None:
        s = self.session
        self.case_list.current_row_changed.connect(self._row_changed)
        s.cases_opened.connect(self._cases_opened)
        s.model_ready.connect(self._model_ready)
        s.model_failed.connect(self._model_failed)
        s.model_header_read.connect(self._model_header_read)
        s.progress.connect(self.progress.set_progress)
        s.predictions_done.connect(lambda cancelled: self.progress.finish())
        s.timing_changed.connect(lambda sec: self.timing_label.setText(f"{sec:.2f} s / image"))
        s.notice.connect(self._notice)
        s.summary_changed.connect(self.refresh_summary)
        s.entry_updated.connect(lambda row: self._row_changed(row) if row == s.current else None)
        self.progress.cancel_requested.connect(self._cancel)
        self.canvas.zoom_changed.connect(lambda z: self.zoom_label.setText(f"{100 * z:.0f}%"))
        self.review.status_chosen.connect(self.set_status)
        self.review.note_edited.connect(self._note)
        self.review.choose_project_folder.connect(self.choose_project_folder)
        self.summary.row_activated.connect(self.case_list.select_row)

    # ------------------------------------------------------------------ opening
    def open_paths(self, paths: list[Path], recursive: bool | None = None) -> int:
        if not self.editing.confirm_leave():  # unsaved corrections: save / discard / cancel
            return 0
        self.review.flush_note()  # a note typed just now belongs to this folder's image
        recursive = self.settings.include_subfolders if recursive is None else recursive
        n = self.session.open_paths(paths, recursive=recursive, masks_dir=self.masks_dir)
        if n:
            for p in paths:
                if p.is_dir():
                    self.settings.add_recent(p)
            self.settings.save()
            self.menus.refresh_recent()
            self.setWindowTitle(f"DermaSeg — {', '.join(p.name for p in paths)}")
        return n

    def _cases_opened(self) -> None:
        self.notice.clear()
        self.case_list.select_first()

    def _row_changed(self, row: int) -> None:
        self.review.flush_note()  # the note typed for the image being left is saved to it
        new_image = row != self.session.current
        self.session.set_current(row, self.case_list.view_order())
        self.view.show_row(row)
        if row < 0:
            self.review.show_record(None, "", enabled=False, new_image=True)
            return
        entry = self.session.entries[row]
        self.review.show_record(entry.status, entry.note, enabled=True, new_image=new_image)
        self.review.show_project_problem(self.session.projects.problem_for(entry.case.image))
        self.statusBar().showMessage(str(entry.case.image), 4000)

    # ------------------------------------------------------------------ review
    def set_status(self, status: ReviewStatus, rows: list[int] | None = None) -> None:
        """Give ``rows`` (default: the selected rows when the current one is among them, else
        the current row) ``status``, saved at once."""
        row = self.session.current
        if row < 0:
            return
        if rows is None:
            selected = self.case_list.selected_rows()
            rows = selected if row in selected else [row]
        problems = [p for p in (self.session.set_status(r, status) for r in rows) if p]
        self.review.show_record(self.session.entries[row].status, self.session.entries[row].note)
        many = f" ({len(rows)} images)" if len(rows) > 1 else ""
        self.review.show_saved(f"Not saved: {problems[0]}" if problems else f"Saved: {status.label}{many}")

    def _note(self, text: str) -> None:
        if self.session.current >= 0:
            problem = self.session.set_note(self.session.current, text)
            self.review.show_saved(f"Note not saved: {problem}" if problem else "Note saved")

    def choose_project_folder(self) -> None:
        row = self.session.current
        if row < 0:
            return
        folder = QFileDialog.getExistingDirectory(self, "Folder for the review project (status and notes)")
        if folder:
            problem = self.session.use_project_dir(row, Path(folder))
            self.review.show_project_problem(problem)
            self._row_changed(row)

    def use_model(self, path: Path) -> None:
        """Predict with ``path`` from now on; the choice is remembered for the next start."""
        self.settings.model = str(Path(path).resolve())
        self.settings.save()
        self.notice.clear()
        self.model_label.setText("Model: loading…")
        self.model_label.setToolTip("")
        self.device_label.setText("Device: loading…")
        self.session.use_model(path)

    # ------------------------------------------------------------------ status
    def _model_header_read(self, label: str) -> None:
        self.interim_label.setVisible(self.session.header is not None and self.session.header.interim)
        self.model_label.setText(f"Model: {label} (loading…)")
        self.controls.set_threshold(self.session.threshold)  # the model's own threshold

    def _model_ready(self, label: str, device: str) -> None:
        self.model_label.setText(f"Model: {label}")
        self.device_label.setText(f"Device: {device}")

    def _model_failed(self, reason: str) -> None:
        self.interim_label.hide()
        self.model_label.setText("Model: none")
        self.model_label.setToolTip(reason)
        self.device_label.setText("Device: —")
        self.statusBar().showMessage(reason)
        self._notice(reason, True)

    def _notice(self, text: str, error: bool) -> None:
        self.notice.show_notice(text, error)

    def refresh_summary(self) -> None:
        entries = self.session.entries
        self.summary.update_summary(self.session.summary(), self.session.per_image_jsc(), len(entries),
                                    self.session.threshold,
                                    sum(e.case.ground_truth is not None for e in entries))

    def _cancel(self) -> None:
        self.session.cancel_predictions()
        self.statusBar().showMessage("Background prediction cancelled", 4000)

    # ------------------------------------------------------------------ drag and drop, closing
    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt API
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt API
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            self.open_paths(paths)
            event.acceptProposedAction()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        if not self.editing.confirm_leave():  # unsaved corrections: save / discard / cancel
            event.ignore()
            return
        self.review.flush_note()
        QSettings("DermaSeg", "DermaSeg").setValue("main_window/geometry", self.saveGeometry())
        self.session.shutdown(timeout=5.0)
        super().closeEvent(event)

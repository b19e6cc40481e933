"""The main window, the GUI's one composition root: it builds the case list, the canvas, the side
panels, the menus and the status bar, hands each feature what it needs (the session, the canvas,
a notifier, a dialogs object...) and places the widgets and actions the features return.

Behaviour lives in the pieces: ``session.ReviewSession`` (cases, model, background work),
``case_view.CaseView`` (drawing the current case), ``actions.build_menus`` (menus and keys),
``editing.EditController`` (contour correction), ``measurements.MeasurementsController`` (the
Measurements panel, the folder's scale, follow-up), ``training_tab.TrainingTab`` (fine-tuning),
``model_menu.ModelMenu`` (choosing, comparing and combining models).
No feature module imports this one.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtWidgets import (
    QDockWidget,
    QLabel,
    QMainWindow,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from dermaseg_app.app.settings import GuiSettings
from dermaseg_app.core.project import ReviewStatus
from dermaseg_app.gui.actions import MenuContext, build_menus, remember_view_state
from dermaseg_app.gui.canvas.image_view import ImageCanvas
from dermaseg_app.gui.canvas.overlay import set_colours
from dermaseg_app.gui.case_view import CaseView
from dermaseg_app.gui.dialogs import Dialogs
from dermaseg_app.gui.editing import EditController, EditingContext
from dermaseg_app.gui.measurements import MeasurementsContext, MeasurementsController
from dermaseg_app.gui.model_menu import ModelMenu, ModelMenuContext
from dermaseg_app.gui.notifier import Notifier
from dermaseg_app.gui.preferences import open_preferences, set_preferences
from dermaseg_app.gui.session import ReviewSession
from dermaseg_app.gui.training_tab import TrainingContext, TrainingTab
from dermaseg_app.gui.widgets.case_list import CaseListWidget
from dermaseg_app.gui.widgets.display_controls import DisplayControls
from dermaseg_app.gui.widgets.metrics_panel import MetricsPanel
from dermaseg_app.gui.widgets.review_panel import ReviewPanel
from dermaseg_app.gui.widgets.status_widgets import InterimBadge, NoticeBar, ProgressWidget
from dermaseg_app.gui.widgets.summary_panel import SummaryPanel
from dermaseg_app.gui.window_size import LEFT_MIN_WIDTH, RIGHT_MIN_WIDTH, dock_widths, fit_to_screen

REVIEW_TAB, TRAINING_TAB = 0, 1


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
        self.notifier = Notifier(self.notice, self.statusBar())
        self.dialogs = Dialogs(self)

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
        self.training = TrainingTab(TrainingContext(  # fine-tune on the corrections
            session, self.settings, self.notifier, self.dialogs, self.use_model))
        side = QWidget()
        self._side_col = QVBoxLayout(side)
        for w in (self.controls, self.review, self.metrics):
            self._side_col.addWidget(w)
        self._side_col.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(side)
        scroll.setWidgetResizable(True)
        self.review_dock = self._dock("Review", scroll, Qt.DockWidgetArea.RightDockWidgetArea, RIGHT_MIN_WIDTH)
        self._docks = (left_dock, self.review_dock)

        self.tabs = QTabWidget()  # the canvas under "Review", the Training tab beside it
        self.tabs.setObjectName("mainTabs")
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.canvas, "Review")
        self.tabs.addTab(self.training, "Training")
        self.tabs.setTabToolTip(TRAINING_TAB, "Fine-tune the model on your saved corrections")
        central = QWidget()
        col = QVBoxLayout(central)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(0)
        col.addWidget(self.notice)
        col.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        self._hidden_for_training: list[QWidget] = []

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
        self.menu_context = MenuContext(
            self, self.settings, session, self.canvas, self.controls, self.case_list, self.notifier,
            self.open_paths, self.use_model, self.set_status, self.choose_project_folder, self.open_preferences)
        self.menus = build_menus(self.menu_context)
        set_colours(self.settings.comparison_colours, self.settings.mask_colour)
        self.canvas.apply_colours()
        self.view.redraw()
        remember_view_state(self.menu_context)
        self._connect()
        # contour correction: made after the window's own connections, so that it sees a row
        # change, an opened folder or a redraw after the window has handled it
        self.editing = EditController(EditingContext(
            session, self.canvas, self.view, self.controls, self.metrics, self.case_list, self.notifier,
            self.dialogs, self.choose_project_folder), self)
        self._side_col.insertWidget(self._side_col.indexOf(self.metrics) + 1, self.editing.panel)  # below the
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, self.editing.toolbar)  # metrics, in view while editing
        self.addActions(list(self.editing.actions.values()))  # their keys work while the menu bar is hidden
        self.menus.add_file_actions(self.editing.file_actions)
        self.menus.add_menu_before_view(self.editing.build_edit_menu(self.menuBar()))
        # lesion measurements (issue 15): their own dock below the review panel (always in view
        # while editing), the Measure menu
        self.measurements = MeasurementsController(MeasurementsContext(
            session, self.canvas, self.view, self.controls, self.editing, self.case_list, self.notifier,
            self.dialogs), self)
        self.measurements.panel.setTitle("")  # the dock's title names it
        measure_scroll = QScrollArea()
        measure_scroll.setWidget(self.measurements.panel)
        measure_scroll.setWidgetResizable(True)
        self.measurements_dock = self._dock("Measurements", measure_scroll, Qt.DockWidgetArea.RightDockWidgetArea,
                                            RIGHT_MIN_WIDTH)
        self.splitDockWidget(self.review_dock, self.measurements_dock, Qt.Orientation.Vertical)
        self.addActions(list(self.measurements.actions.values()))
        self.menus.add_menu_before_view(self.measurements.build_menu(self.menuBar()))
        # choosing the model, comparing it with a second one, their ensemble (issue 18)
        self.model_menu = ModelMenu(ModelMenuContext(
            self, self.settings, session, self.controls, self.case_list, self.notifier, self.use_model), self)
        self.menus.host.menuBar().insertMenu(self.menus.view.menuAction(), self.model_menu.menu)
        self.statusBar().addPermanentWidget(self.model_menu.status_label)
        self._connect_training()
        self.training.refresh()
        geometry = QSettings("DermaSeg", "DermaSeg").value("main_window/geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            fit_to_screen(self)
        self.size_docks()

    def size_docks(self) -> None:
        """The side panels take what they need of the window's width; the canvas gets the rest."""
        left, right = dock_widths(self.width())
        self.resizeDocks(list(self._docks), [left, right], Qt.Orientation.Horizontal)
        measure = getattr(self, "measurements_dock", None)
        if measure is not None:  # the measurements get what their rows need, the review panel the rest
            want = min(self.measurements.panel.sizeHint().height() + 40, self.height() // 2)
            self.resizeDocks([self.review_dock, measure], [max(1, self.height() - want), want],
                             Qt.Orientation.Vertical)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        if event.oldSize().width() <= 0:  # the first real size (shown, or resized before showing)
            self.size_docks()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        if not getattr(self, "_docks_sized_when_shown", False):  # the docks' layout is settled now
            self._docks_sized_when_shown = True
            QTimer.singleShot(0, self.size_docks)

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

    def _connect_training(self) -> None:
        s = self.session
        t = self.training
        self.tabs.currentChanged.connect(self._tab_changed)
        t.title_changed.connect(lambda text: self.tabs.setTabText(TRAINING_TAB, text))
        t.review_requested.connect(lambda: self.tabs.setCurrentIndex(REVIEW_TAB))
        s.cases_opened.connect(t.schedule_refresh)
        s.summary_changed.connect(t.statuses_maybe_changed)  # excluded / rejected images are left out
        s.model_header_read.connect(t.schedule_refresh)
        s.model_failed.connect(t.schedule_refresh)
        self.editing.saved.connect(t.schedule_refresh)

    def _tab_changed(self, index: int) -> None:
        """The Training tab hides the review side panel and the edit tool bar (they act on the
        canvas); the Review tab shows them again."""
        if index == TRAINING_TAB:
            self.training.shown()
            hide = [self.review_dock, self.measurements_dock, self.editing.toolbar]
            self._hidden_for_training = [wdg for wdg in hide if wdg.isVisible()]
            for wdg in self._hidden_for_training:
                wdg.hide()
        else:
            for wdg in self._hidden_for_training:
                wdg.show()
            self._hidden_for_training = []

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
        folder = self.dialogs.choose_folder("Folder for the review project (status and notes)")
        if folder is not None:
            problem = self.session.use_project_dir(row, folder)
            self.review.show_project_problem(problem)
            self._row_changed(row)

    def use_model(self, path: Path, ensemble_with: Path | None = None) -> None:
        """Predict with ``path`` from now on; the choice is remembered for the next start (with
        ``ensemble_with``: the ensemble of the two, for this session; ``path`` is remembered)."""
        self.settings.model = str(Path(path).resolve())
        self.settings.save()
        self.notice.clear()
        self.model_label.setText("Model: loading…")
        self.model_label.setToolTip("")
        self.device_label.setText("Device: loading…")
        self.session.use_model(path, ensemble_with)

    # ------------------------------------------------------------------ colours
    def apply_colours(self) -> None:
        """Draw with the settings' colours (overlays, outline, legend, corrected mask)."""
        set_colours(self.settings.comparison_colours, self.settings.mask_colour)
        self.canvas.apply_colours()
        self.editing.colours_changed()
        self.view.redraw()

    def set_preferences(self, comparison: str, mask: str) -> None:
        set_preferences(self.settings, comparison, mask)
        self.apply_colours()

    def open_preferences(self) -> None:
        if open_preferences(self, self.settings):
            self.apply_colours()

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
        if not self.training.confirm_close():  # fine-tuning: stop it and close?
            event.ignore()
            return
        if not self.editing.confirm_leave():  # unsaved corrections: save / discard / cancel
            event.ignore()
            return
        self.review.flush_note()
        QSettings("DermaSeg", "DermaSeg").setValue("main_window/geometry", self.saveGeometry())
        self.session.shutdown(timeout=5.0)
        super().closeEvent(event)

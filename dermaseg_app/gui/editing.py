"""Contour correction in the review window (issue 5): the glue between the canvas tools, the
per-image undo histories (``app.corrections.CorrectionBook``), the store and the panels.

``EditController(context)`` gets what it works with from the window (an :class:`EditingContext`:
the session, the canvas, the case view, the display controls, the metrics panel, the case list,
a notifier and a dialogs object) and offers its pieces for the window to place: ``toolbar``,
``panel`` (the window puts it below the metrics), ``actions`` (the window adds their keys),
``file_actions`` (File > Save Correction / Export...) and ``build_edit_menu(parent)``. While an image has a correction,
the controller draws its mask with ``canvas.mask_layer.MaskLayer`` instead of the thresholded
prediction (the heat-map, when chosen, stays, with the corrected outline over it), repaints only
the box each edit changed, and shows the metrics of the corrected mask against the ground truth
and its agreement (DSC) with the model's mask, computed in the background after every edit.

Saving: Ctrl+S saves through ``core.store.CorrectionStore`` (revision, latest PNG, sidecar; the
image is marked edited). By default a changed image is also saved when the user moves to another
image (the panel's "Save when moving to another image"); every edit is journalled at once
either way, so a crash loses nothing: opening the folder again offers to restore unsaved edits.
Closing the window or opening another folder with unsaved corrections asks save / discard / cancel.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu, QMessageBox, QToolButton, QWidget

from dermaseg_app.app.corrections import CorrectionBook, ImageEdit
from dermaseg_app.core.editing import BBox, EditOp, GeometryEdit, apply_geometry, simplify_geometry
from dermaseg_app.core.imageio import image_size
from dermaseg_app.core.metrics import threshold_u8
from dermaseg_app.core.store import StoreError
from dermaseg_app.gui import shortcuts
from dermaseg_app.gui.canvas.edit_tools import POLYGON_MODES, TOOL_LABELS, EditTools, Tool
from dermaseg_app.gui.canvas.image_view import ImageCanvas
from dermaseg_app.gui.canvas.mask_layer import MaskLayer
from dermaseg_app.gui.canvas.renderer import mask_contours
from dermaseg_app.gui.case_view import CaseView
from dermaseg_app.gui.dialogs import Dialogs
from dermaseg_app.gui.notifier import Notifier
from dermaseg_app.gui.session import ReviewSession
from dermaseg_app.gui.widgets.case_list import CaseListWidget
from dermaseg_app.gui.widgets.display_controls import DisplayControls
from dermaseg_app.gui.widgets.edit_panel import EditPanel, EditToolBar
from dermaseg_app.gui.widgets.metrics_panel import MetricsPanel
from dermaseg_app.gui.workers import Worker, describe_error

LIVE_CONTOUR_MS = 60  # the outline follows a stroke at most this often (traced on the preview)


def live_metrics(job, revision: int, mask: np.ndarray, gt: np.ndarray | None, prediction: np.ndarray):
    """Scores of the corrected mask against the ground truth, and its DSC with the prediction."""
    from dermaseg_app.core.metrics import agreement, score

    scores = score(mask, gt) if gt is not None and gt.shape == mask.shape else None
    return revision, scores, float(agreement(mask, prediction))


@dataclass
class EditingContext:
    """What contour correction works with; the window builds it."""

    session: ReviewSession
    canvas: ImageCanvas
    view: CaseView
    controls: DisplayControls
    metrics: MetricsPanel
    case_list: CaseListWidget
    notifier: Notifier
    dialogs: Dialogs
    choose_project_folder: Callable[[], None]  # the review panel's "Choose Project Folder…"


class EditController(QObject):
    changed = Signal(int)  # a row's correction changed (mask or saved state)
    metrics_updated = Signal(int)  # the live metrics of a row arrived
    saved = Signal(int)

    def __init__(self, context: EditingContext, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.session = context.session
        self.canvas = context.canvas
        self.notifier = context.notifier
        self.book = CorrectionBook(lambda image: self.session.projects.project_for(image))
        self._checked: set[Path] = set()  # images whose saved correction was looked for
        self._metrics: dict[Path, tuple[int, object, float]] = {}
        self._workers: set[Worker] = set()
        self._image: Path | None = None  # the image shown (to save it when moving on)
        self._rows: dict[Path, int] | None = None  # image -> row of the open folder
        self._stroke = None
        self._stroke_image: Path | None = None
        self._showing = False
        self._layer_key: tuple | None = None  # what the mask layer shows (skip recolouring it)
        self._contour_key: tuple | None = None
        self._contour_cache: list = []
        self.last_move_seconds = 0.0
        self.recovery_box: QMessageBox | None = None
        self.export_dialog = None
        # test hooks: replace to answer the dialogs programmatically
        self.ask_recovery: Callable[[list[str]], bool] | None = None  # None: a non-blocking question
        self.ask_unsaved: Callable[[int], str] = context.dialogs.ask_unsaved
        self.show_error: Callable[[str, str], None] = context.dialogs.warn

        self.layer = MaskLayer()
        self.layer.hide()
        self.canvas.scene().addItem(self.layer)
        self.tools = EditTools(self.canvas, self)
        self.actions = self._make_actions()
        self.file_actions = [self.actions["save"], self.actions["export"]]
        self.panel = EditPanel(self.actions)
        self.toolbar = EditToolBar(self.actions)
        self.polygon_button = self._polygon_button()
        self.toolbar.radius.setValue(int(self.tools.radius))
        self.toolbar.radius.valueChanged.connect(lambda v: self.tools.set_radius(float(v)))
        self.tools.radius_changed.connect(lambda r: self.toolbar.radius.setValue(int(round(r))))
        self.tools.tool_changed.connect(self._tool_changed)
        self._contour_timer = QTimer(self)
        self._contour_timer.setSingleShot(True)
        self._contour_timer.setInterval(LIVE_CONTOUR_MS)
        self._contour_timer.timeout.connect(self._live_contour)

        s = self.session
        context.case_list.current_row_changed.connect(self._row_changed)
        s.folder_changed.connect(self._folder_changed)
        s.cases_opened.connect(self._cases_opened)
        context.view.drawn.connect(self._after_draw)
        self.canvas.zoom_changed.connect(self._zoomed)
        # bound methods (not lambdas): Qt drops these connections when the window is deleted
        s.current_scores.connect(self._case_view_scored)
        s.model_switched.connect(self._model_switched)
        s.entry_scored.connect(self._case_view_scored)
        self._update_actions()

    # ------------------------------------------------------------------ actions and menus
    def _make_actions(self) -> dict[str, QAction]:
        acts: dict[str, QAction] = {}

        def make(name: str, text: str, slot, checkable: bool = False) -> QAction:
            act = QAction(text, self)
            act.setShortcuts([QKeySequence(k) for k in shortcuts.keys(name)])
            what = shortcuts.BY_NAME[name].text
            act.setToolTip(shortcuts.tip(what[:1].upper() + what[1:], name))  # (not capitalize(): "Shift+click")
            act.setCheckable(checkable)
            act.triggered.connect(slot)
            acts[name] = act
            return act

        for tool in Tool:
            make(f"tool_{tool.value}", TOOL_LABELS[tool], lambda _=False, t=tool: self.tools.set_tool(t),
                 checkable=True)
        acts["tool_navigate"].setChecked(True)
        make("radius_down", "Smaller Brush", lambda: self.tools.grow_radius(1 / 1.25))
        make("radius_up", "Larger Brush", lambda: self.tools.grow_radius(1.25))
        make("undo", "Undo", self.undo)
        make("redo", "Redo", self.redo)
        make("reset", "Reset to Prediction", self.reset_to_prediction)
        make("fill_holes", "Fill Holes", lambda: self.apply(EditOp.fill_holes()))
        make("remove_islands", "Remove Islands",
             lambda: self.apply(EditOp.remove_islands(self.panel.island_area.value())))
        make("smooth", "Smooth", lambda: self.apply(EditOp.smooth(self.panel.sigma.value())))
        make("simplify", "Simplify", lambda: self.apply(EditOp.simplify(self.panel.tolerance.value())))
        make("grow", "Grow", lambda: self.apply(EditOp.grow(self.panel.pixels.value())))
        make("shrink", "Shrink", lambda: self.apply(EditOp.grow(-self.panel.pixels.value())))
        make("save", "Save Correction", self.save_current)
        make("export", "Export…", self.open_export)
        return acts

    def _polygon_button(self) -> QToolButton:
        """One tool-bar button for the three polygon tools (before Vertices): it shows and picks the
        last one chosen, its arrow lists all three."""
        menu = QMenu(self.toolbar)
        for tool in POLYGON_MODES:
            menu.addAction(self.actions[f"tool_{tool.value}"])
        button = QToolButton(self.toolbar)
        button.setObjectName("polygon_tools")
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        button.setDefaultAction(self.actions["tool_polygon_add"])
        button.setMenu(menu)
        button.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        self.toolbar.insertWidget(self.actions["tool_vertices"], button)
        return button

    def build_edit_menu(self, parent: QWidget) -> QMenu:
        """The Edit menu (undo, the tools, the whole-mask operations), for the window's menu bar."""
        edit = QMenu("&Edit", parent)
        for name in ("undo", "redo", "reset"):
            edit.addAction(self.actions[name])
        edit.addSeparator()
        for tool in Tool:
            edit.addAction(self.actions[f"tool_{tool.value}"])
        edit.addAction(self.actions["radius_down"])
        edit.addAction(self.actions["radius_up"])
        edit.addSeparator()
        for name in ("fill_holes", "remove_islands", "smooth", "simplify", "grow", "shrink"):
            edit.addAction(self.actions[name])
        self.edit_menu = edit
        return edit

    def _tool_changed(self, value: str) -> None:
        for tool in Tool:
            self.actions[f"tool_{tool.value}"].setChecked(tool.value == value)
        if Tool(value) in POLYGON_MODES:
            self.polygon_button.setDefaultAction(self.actions[f"tool_{value}"])
            self.polygon_button.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        hint = (": click the vertices; Enter, a double click or the first vertex closes; Backspace removes "
                "the last; Esc cancels") if Tool(value) in POLYGON_MODES else ""
        self.notifier.status(f"Tool: {Tool(value).label}{hint}", 8000 if hint else 3000)

    def _update_actions(self) -> None:
        edit = self.current_edit()
        h = edit.history if edit is not None else None
        can_undo = h is not None and h.can_undo()  # (a History with no steps is falsy: len 0)
        can_redo = h is not None and h.can_redo()
        self.actions["undo"].setEnabled(can_undo)
        self.actions["redo"].setEnabled(can_redo)
        self.actions["undo"].setToolTip(f"Undo {h.undo_label()} (Ctrl+Z)" if can_undo else "Undo (Ctrl+Z)")
        self.actions["redo"].setToolTip(f"Redo {h.redo_label()} (Ctrl+Shift+Z)" if can_redo
                                        else "Redo (Ctrl+Shift+Z)")
        self.actions["reset"].setEnabled(edit is not None)
        self.actions["save"].setEnabled(edit is not None)
        if edit is None:
            self.panel.show_state("Not corrected: the model's mask is shown. Pick a tool to correct it.")
        elif edit.journal_errors:
            self.panel.show_state(f"Edits are not journalled: {edit.journal_errors[-1]}", warning=True)
        elif edit.dirty:
            self.panel.show_state("Corrected, not saved yet (journalled)")
        elif edit.on_disk:
            n = len(edit.store.revisions(edit.image)) if edit.store is not None else 0
            self.panel.show_state(f"Corrected and saved (revision {n})" if n else "Corrected and saved")
        else:
            self.panel.show_state("Not changed from the model's mask")

    # ------------------------------------------------------------------ images and rows
    def image_of(self, row: int) -> Path | None:
        """The image at ``row`` of the open folder (None for no row)."""
        entries = self.session.entries
        return entries[row].case.image if 0 <= row < len(entries) else None

    def row_of(self, image: Path) -> int:
        """The row of ``image`` in the open folder (-1 when it is not there)."""
        if self._rows is None:
            self._rows = {e.case.image: i for i, e in enumerate(self.session.entries)}
        return self._rows.get(image, -1)

    def _current_image(self) -> Path | None:
        return self.image_of(self.session.current)

    def _mark(self, image: Path, state: str | None) -> None:
        """Show ``image``'s correction state in the list ("saved", "unsaved", or none)."""
        row = self.row_of(image)
        if row < 0:
            return
        entry = self.session.entries[row]
        if state:
            entry.extras["edited"] = state
        else:
            entry.extras.pop("edited", None)
        self.session.table.entry_changed(row)

    # ------------------------------------------------------------------ folder and row changes
    def _folder_changed(self) -> None:
        """Another folder replaced the open one: its corrections (already saved or discarded by
        the window's question) and everything known about its images go."""
        self.tools.cancel()
        self._stroke = None
        self.book.clear()
        self._checked.clear()
        self._metrics.clear()
        self._rows = None
        self._image = None
        box, self.recovery_box = self.recovery_box, None
        if box is not None:
            box.close()  # the question was about the folder that is gone

    def _cases_opened(self) -> None:
        for row, entry in enumerate(self.session.entries):
            project = self.session.projects.project_for(entry.case.image)
            if project is not None and project.record(entry.case.image).edited:
                entry.extras["edited"] = "saved"
                self.session.table.entry_changed(row)
        self.offer_recovery()

    def offer_recovery(self) -> int:
        """Offer to restore the unsaved edits found in the folder's journals.

        With the ``ask_recovery`` hook set (tests, scripts) it is asked at once and the number of
        restored images is returned; by default a window-modal question is opened without
        blocking the event loop (the window keeps drawing; the screenshot mode is not held up)
        and the answer is applied when given (returns 0)."""
        pending = self.book.worth_restoring(self.book.pending([e.case.image for e in self.session.entries]),
                                            _shape_of)
        if not pending:
            return 0
        names = [self.session.entries[self.row_of(image)].name for image in pending]
        if self.ask_recovery is not None:
            return self._restore(pending, self.ask_recovery(names))
        shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        text = (f"Corrections that were never saved were found for {len(names)} image(s) of this folder "
                f"({shown}); the program may have closed unexpectedly.\n\nRestore them? "
                "(No discards them.)")
        asked: list[QMessageBox] = []

        def answered(yes: bool) -> None:
            if asked and asked[0] is self.recovery_box:  # (not withdrawn by another folder)
                self.recovery_box = None
                self._restore(pending, yes)

        self.recovery_box = self.context.dialogs.open_yes_no("Restore unsaved corrections?", text, answered)
        asked.append(self.recovery_box)
        return 0

    def _restore(self, pending: list[Path], yes: bool) -> int:
        if not yes:
            for problem in self.book.discard_journals(pending):
                self.notifier.notice(problem, True)
            return 0
        report = self.book.restore(pending, _shape_of)
        for image, exc in report.failed:
            self.notifier.notice(f"{image.name}: unsaved edits cannot be restored: {describe_error(exc)}", True)
        for problem in report.errors:
            self.notifier.notice(problem, True)
        self._checked.update(report.replayed)
        for image in report.restored:
            self._mark(image, "unsaved")
        if report.restored:
            self.notifier.status(f"Restored the unsaved corrections of {len(report.restored)} image(s)", 6000)
        if self.session.current >= 0 and self.session.current_images() is not None:
            self.context.view.redraw()
        return len(report.restored)

    def _row_changed(self, row: int) -> None:
        image = self.image_of(row)
        prev = self._image
        if prev != image:
            self.tools.cancel()
            if prev is not None and self.panel.autosave.isChecked():
                edit = self.book.get(prev)
                if edit is not None and edit.dirty:
                    self.save_image(prev, interactive=False)
        self._image = image
        if row >= 0 and self.session.current_images() is None:
            self._show(row)  # hide the previous image's correction until this one is drawn
        self._update_actions()

    def current_edit(self) -> ImageEdit | None:
        return self.book.get(self._current_image())

    # ------------------------------------------------------------------ display
    def _edit_for_display(self, row: int) -> ImageEdit | None:
        image = self.image_of(row)
        if image is None:
            return None
        edit = self.book.get(image)
        if edit is not None or image in self._checked:
            return edit
        self._checked.add(image)
        try:
            saved = self.book.saved_correction(image)
            if saved is None:
                return None
            images = self.session.images.get(row)
            pred = None
            if images is not None and images.prob is not None:
                pred = threshold_u8(images.prob, self.session.threshold)
            if images is not None and saved.shape != images.shape:
                raise StoreError(image, f"the saved correction is {saved.shape[1]}x{saved.shape[0]}, "
                                        f"the image {images.shape[1]}x{images.shape[0]}")
            edit = self.book.start(image, saved, pred, on_disk=True, **self._model_identity())
        except StoreError as exc:
            self.notifier.notice(f"The saved correction cannot be shown: {exc}", True)
            return None
        self._mark(image, "saved")
        return edit

    def _after_draw(self, row: int, has_prediction: bool, compared: bool) -> None:
        self._show(self.session.current)
        self._update_actions()

    def _show(self, row: int) -> None:
        """Draw ``row``'s correction over the image (or give the canvas its own overlay back)."""
        images = self.session.images.get(row) if row >= 0 else None
        edit = self._edit_for_display(row) if images is not None else None
        if edit is None or images is None:
            self.layer.hide()
            self.layer.clear()
            self.canvas.overlay_item.show()
            self._showing = False
            self.tools.refresh_outline()
            return
        self._showing = True
        opts = self.context.controls.options()
        compare = bool(opts.compare and images.gt is not None and not opts.heatmap)
        if not opts.show_mask:
            self.layer.hide()
            self.canvas.set_contours([])
        else:
            if opts.heatmap:
                self.layer.hide()
                self.canvas.overlay_item.show()
            else:
                key = (id(edit), edit.history.revision, opts.opacity, compare, id(images.gt))
                if key != self._layer_key or not self.layer.has_content or edit.history.stroke_in_progress:
                    self.layer.set_mask(edit.mask, images.gt, opts.opacity, compare)
                    self._layer_key = key
                self.layer.show()
                self.canvas.overlay_item.hide()
            self.canvas.set_contours(self._contours(edit))
        self.canvas.show_legend(compare and opts.show_mask, heat=opts.heatmap and images.prob is not None)
        self.tools.refresh_outline()
        self._reshow_metrics(start=True)

    def _zoomed(self, _zoom: float) -> None:
        # the case view may put the prediction's exact outline back when zooming in: ours wins
        edit = self.current_edit()
        if self._showing and edit is not None and self.context.controls.options().show_mask \
                and self._stroke is None:
            self.canvas.set_contours(self._contours(edit))

    def _contours(self, edit: ImageEdit) -> list:
        """The corrected mask's outline (traced once per change: redraws and zooms reuse it)."""
        key = (id(edit), edit.history.revision)
        if edit.history.stroke_in_progress:
            return mask_contours(edit.mask)
        if self._contour_key != key:
            self._contour_cache = mask_contours(edit.mask)
            self._contour_key = key
        return self._contour_cache

    def _live_contour(self) -> None:
        edit = self.current_edit()
        if edit is None or not self._showing:
            return
        mask = edit.mask
        rows, cols = self.layer._rows, self.layer._cols
        if len(rows) and len(rows) < mask.shape[0]:
            small = mask[np.ix_(rows, cols)]
            self.canvas.set_contours(mask_contours(small, mask.shape[1] / len(cols)))
        else:
            self.canvas.set_contours(mask_contours(mask))

    # ------------------------------------------------------------------ metrics
    def _case_view_scored(self, *_args) -> None:
        """The case view has just shown the prediction's scores: put the correction's back."""
        self._reshow_metrics()

    def _reshow_metrics(self, start: bool = False) -> None:
        image = self._current_image()
        edit = self.current_edit()
        if edit is None or not self._showing:
            return
        cached = self._metrics.get(image)
        if cached is not None and cached[0] == edit.history.revision:
            self._display_metrics(cached[1], cached[2])
        elif start:
            self._start_metrics(edit)

    def _start_metrics(self, edit: ImageEdit) -> None:
        row = self.row_of(edit.image)
        images = self.session.images.get(row) if row >= 0 else None
        if images is None:
            return
        mask = edit.history.mask.copy() if edit.history.stroke_in_progress else edit.history.mask
        worker = Worker(live_metrics, edit.history.revision, mask, images.gt, edit.prediction)
        worker.result.connect(lambda value, e=edit: self._metrics_ready(e, value))
        worker.errored.connect(lambda exc: self.notifier.notice(
            f"Scoring the correction failed: {describe_error(exc)}", True))
        self._workers.add(worker)
        worker.finished.connect(lambda wk=worker: self._workers.discard(wk))
        worker.start(self.session.pool)

    def _metrics_ready(self, edit: ImageEdit, value) -> None:
        revision, scores, dsc = value
        image = edit.image
        if self.book.get(image) is not edit or edit.history.revision != revision:
            return  # edited again since, or the folder is gone
        self._metrics[image] = (revision, scores, dsc)
        if image == self._current_image() and self._showing:
            self._display_metrics(scores, dsc)
        self.metrics_updated.emit(self.row_of(image))

    def _display_metrics(self, scores, dsc: float) -> None:
        note = f"Corrected mask. Agreement with the model's mask: DSC {100 * dsc:.1f}%"
        if scores is None:
            self.context.metrics.show_pending("No ground truth. " + note)
        else:
            self.context.metrics.show_scores(scores, note=note)

    def wait_for_metrics(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        return all(wk.wait(max(0.0, deadline - time.monotonic())) for wk in list(self._workers))

    # ------------------------------------------------------------------ editing (EditTarget)
    def _model_identity(self) -> dict:
        header = self.session.header
        return {"model_name": header.name if header else None,
                "model_version": header.version if header else None}

    def ensure_edit(self) -> ImageEdit | None:
        """The current image's correction, started from the mask on screen when there is none."""
        row = self.session.current
        if row < 0:
            return None
        images = self.session.images.get(row)
        if images is None:
            self.notifier.status("The image is still opening", 3000)
            return None
        edit = self._edit_for_display(row)
        if edit is not None:
            return edit
        entry = self.session.entries[row]
        if images.prob is None and not self.session.model_error and not entry.prediction_error:
            # the correction starts from the model's mask: wait for it (no model: from scratch)
            self.notifier.status("Wait for the prediction before correcting it", 4000)
            return None
        pred = None
        if images.prob is not None:
            pred = threshold_u8(images.prob, self.context.controls.options().threshold)
        mask = pred.copy() if pred is not None else np.zeros(images.shape, bool)
        image = entry.case.image
        try:
            edit = self.book.start(image, mask, pred, **self._model_identity())
        except StoreError as exc:
            edit = self.book.start_unjournalled(image, mask, pred)
            edit.journal_errors.append(str(exc))
            self.notifier.notice(f"Edits cannot be journalled: {exc}", True)
        if edit.store is None:
            problem = self.session.projects.problem_for(image)
            edit.journal_errors.append(problem or "no project folder: edits are kept in memory only")
        self._show(row)
        return edit

    def stroke_begin(self, radius: float, erase: bool) -> bool:
        edit = self.ensure_edit()
        if edit is None:
            return False
        if edit.history.stroke_in_progress:
            edit.history.cancel_stroke()
        self._stroke = edit.history.begin_stroke(radius, erase)
        self._stroke_image = edit.image
        self.layer.set_live_mask(edit.history.mask)
        return True

    def stroke_to(self, x: float, y: float) -> None:
        if self._stroke is None:
            return
        t0 = time.perf_counter()
        box = self._stroke.add_point(x, y)
        self.layer.update_region(box)
        if box is not None and not self._contour_timer.isActive():
            self._contour_timer.start()
        self.last_move_seconds = time.perf_counter() - t0

    def stroke_end(self) -> None:
        edit = self.book.get(self._stroke_image)
        self._stroke = None
        if edit is None or not edit.history.stroke_in_progress:
            return
        edit.history.end_stroke()
        self._after_change(edit, None)

    def stroke_cancel(self) -> None:
        edit = self.book.get(self._stroke_image)
        self._stroke = None
        if edit is None or not edit.history.stroke_in_progress:
            return
        box = edit.history.cancel_stroke()
        self._after_change(edit, box)

    def polygon(self, points: list[tuple[float, float]], mode: str) -> bool:
        """A lasso or polygon; False when the image has nothing to edit yet (the tools keep it)."""
        if self.ensure_edit() is None:  # (the status bar says why)
            return False
        self.apply(EditOp.polygon(points, mode))
        return True

    def outline(self):
        edit = self.current_edit()
        if edit is None:
            images = self.session.current_images()
            if images is None or images.prob is None:
                return None
            mask = threshold_u8(images.prob, self.context.controls.options().threshold)
        else:
            mask = edit.mask
        from dermaseg_app.core.geometry import mask_to_polygons

        return simplify_geometry(mask_to_polygons(mask), 1.0)

    def commit_geometry(self, edit_geom: GeometryEdit) -> None:
        edit = self.ensure_edit()
        if edit is None:
            return
        result = apply_geometry(edit.history.mask, edit_geom.geometry, edit_geom.bbox)
        edit.history.commit(result)
        self._after_change(edit, result.bbox)

    def apply(self, op: EditOp) -> None:
        """Apply an operation to the current image's mask as one undo step."""
        edit = self.ensure_edit()
        if edit is None:
            return
        try:
            result = edit.history.apply(op)
        except ValueError as exc:
            self.notifier.status(f"{op.label}: {exc}", 5000)
            return
        if result.bbox is None:
            self.notifier.status(f"{op.label.capitalize()}: nothing to change", 3000)
        self._after_change(edit, result.bbox)

    def undo(self) -> None:
        edit = self.current_edit()
        if edit is not None and edit.history.can_undo():
            self._after_change(edit, edit.history.undo())

    def redo(self) -> None:
        edit = self.current_edit()
        if edit is not None and edit.history.can_redo():
            self._after_change(edit, edit.history.redo())

    def reset_to_prediction(self) -> None:
        edit = self.current_edit()
        if edit is None:
            return
        result = edit.history.reset_to(edit.prediction)
        self._after_change(edit, result.bbox)

    def _after_change(self, edit: ImageEdit, box: BBox | None) -> None:
        if self.book.get(edit.image) is not edit:
            return
        self._contour_timer.stop()
        if edit.image == self._current_image() and self._showing:
            self.layer.set_live_mask(edit.history.mask)
            self.layer.update_region(box)
            if self._layer_key is not None and self._layer_key[0] == id(edit):  # now up to date
                self._layer_key = (id(edit), edit.history.revision, *self._layer_key[2:])
            if self.context.controls.options().show_mask:
                self.canvas.set_contours(self._contours(edit))
            self._start_metrics(edit)
            self.tools.refresh_outline()
        if not edit.dirty:
            self._settle(edit.image)  # back at the saved state or the model's mask: no journal to offer
        self._mark(edit.image, "unsaved" if edit.dirty else ("saved" if edit.on_disk else None))
        if edit.journal_errors and edit.store is not None:
            self.notifier.notice(f"Edits are not journalled: {edit.journal_errors[-1]}", True)
        self._update_actions()
        self.changed.emit(self.row_of(edit.image))

    # ------------------------------------------------------------------ saving
    def save_current(self) -> bool:
        image = self._current_image()
        if image is None:
            return False
        if self.book.get(image) is None:
            self.notifier.status("Nothing to save: this image is not corrected", 3000)
            return False
        return self.save_image(image, interactive=True)

    def save_image(self, image: Path, interactive: bool = True) -> bool:
        """Save ``image``'s correction; a failure is shown and the edit stays in memory."""
        edit = self.book.get(image)
        if edit is None:
            return False
        current = image == self._current_image()
        projects = self.session.projects
        if edit.store is None and projects.project_for(image) is None:
            problem = projects.problem_for(image) or "no project folder"
            if interactive and current:
                self.context.choose_project_folder()  # the same dialog as for the review status
            if self.session.projects.project_for(image) is None:
                self._failed(f"{image.name}: the correction is not saved: {problem}", interactive)
                return False
        try:
            info = self.book.save(image, **self._model_identity())
        except (StoreError, ValueError) as exc:
            self._failed(f"{image.name}: the correction is not saved. {exc}\n"
                         "It is kept in memory (and in the edit journal); try again or choose "
                         "another project folder.", interactive)
            if current:
                self._update_actions()
            return False
        self._mark(image, "saved")
        self.notifier.status(f"Saved the correction of {image.name} (revision {info.revisions[-1].n})", 5000)
        if current:
            self._update_actions()
        self.saved.emit(self.row_of(image))
        return True

    def _failed(self, message: str, interactive: bool) -> None:
        self.notifier.notice(message.replace("\n", " "), True)
        if interactive:
            self.show_error("Correction not saved", message)
        if self.session.current >= 0:
            self.panel.show_state(message.split("\n")[0], warning=True)

    def save_all(self) -> bool:
        ok = True
        for image in self.book.dirty_images():
            ok &= self.save_image(image, interactive=False)
        return ok

    def _settle(self, image: Path) -> None:
        try:
            self.book.settle(image)
        except StoreError as exc:
            self.notifier.notice(str(exc), True)

    def colours_changed(self) -> None:
        """Preferences changed the overlay colours: recolour the corrected mask at the next draw."""
        self._layer_key = None

    def _model_switched(self) -> None:
        """Another model: an image whose correction was never saved and still equals the old
        model's mask shows the new model's mask (its journal goes); real corrections stay."""
        self.tools.cancel()
        self._stroke = None
        for image in self.book.drop_unchanged():
            self._metrics.pop(image, None)
            self._mark(image, None)
        self._layer_key = None
        self._update_actions()

    def confirm_leave(self) -> bool:
        """Before closing or opening another folder: True when it is fine to go on."""
        self.tools.cancel()
        for problem in self.book.settle_clean():  # no journal left behind with nothing unsaved
            self.notifier.notice(problem, True)
        dirty = self.book.dirty_images()
        if not dirty:
            return True
        answer = self.ask_unsaved(len(dirty))
        if answer == "cancel":
            return False
        if answer == "save":
            if not self.save_all():
                self.show_error("Corrections not saved",
                                "Some corrections could not be saved (see the message above the image); "
                                "nothing was closed.")
                return False
            return True
        self.book.discard_unsaved()
        return True

    # ------------------------------------------------------------------ export
    def open_export(self) -> None:
        from dermaseg_app.gui.export_dialog import ExportDialog, session_model

        projects = list(self.session.projects.projects.values())
        if not projects:
            self.show_error("Export", "Open a folder first (and, for a read-only folder, choose a "
                                      "project folder): there is no review project to export.")
            return
        current = None
        image = self._current_image()
        if image is not None:
            current = self.session.projects.project_for(image)
        factory, model_text = session_model(self.session)
        dialog = ExportDialog(projects, current or projects[0], len(self.book.dirty_images()),
                              self.context.dialogs.parent, pool=self.session.pool, model_factory=factory,
                              model_text=model_text)
        self.export_dialog = dialog
        dialog.show()

    def shutdown(self) -> None:
        for wk in list(self._workers):
            wk.wait(5.0)


def _shape_of(image: Path) -> tuple[int, int]:
    """(height, width) of ``image``, read from its header."""
    w, h = image_size(image)
    return h, w

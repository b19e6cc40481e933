"""Contour correction in the review window (issue 5): the glue between the canvas tools, the
per-image undo histories (``edit_session.EditBook``), the store and the panels.

``install_editing(window)`` adds the tool bar, the correction panel (below the metrics), an Edit menu, File >
Save Correction / Export..., and returns the ``EditController``. While an image has a correction,
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
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu, QMessageBox, QToolButton

from dermaseg_app.core.editing import BBox, EditOp, GeometryEdit, apply_geometry, simplify_geometry
from dermaseg_app.core.imageio import ImageReadError, image_size
from dermaseg_app.core.store import StoreError
from dermaseg_app.gui import shortcuts
from dermaseg_app.gui.canvas.edit_tools import POLYGON_MODES, TOOL_LABELS, EditTools, Tool
from dermaseg_app.gui.canvas.mask_layer import MaskLayer
from dermaseg_app.gui.canvas.overlay import threshold_u8
from dermaseg_app.gui.canvas.renderer import mask_contours
from dermaseg_app.gui.edit_session import EditBook, ImageEdit
from dermaseg_app.gui.widgets.edit_panel import EditPanel, EditToolBar
from dermaseg_app.gui.workers import Worker, describe_error

if TYPE_CHECKING:
    from dermaseg_app.gui.main_window import MainWindow

LIVE_CONTOUR_MS = 60  # the outline follows a stroke at most this often (traced on the preview)


def live_metrics(job, row: int, revision: int, mask: np.ndarray, gt: np.ndarray | None,
                 prediction: np.ndarray):
    """Scores of the corrected mask against the ground truth, and its DSC with the prediction."""
    from dermaseg_app.core.metrics import agreement, score

    scores = score(mask, gt) if gt is not None and gt.shape == mask.shape else None
    return row, revision, scores, float(agreement(mask, prediction))


class EditController(QObject):
    changed = Signal(int)  # a row's correction changed (mask or saved state)
    metrics_updated = Signal(int)  # the live metrics of a row arrived
    saved = Signal(int)

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.w = window
        self.session = window.session
        self.canvas = window.canvas
        self.book = EditBook(lambda image: self.session.projects.project_for(image))
        self._entries_ref = None
        self._checked: set[int] = set()  # rows whose saved correction was looked for
        self._metrics: dict[int, tuple[int, object, float]] = {}
        self._workers: set[Worker] = set()
        self._row = -1
        self._stroke = None
        self._stroke_row = -1
        self._showing = False
        self._layer_key: tuple | None = None  # what the mask layer shows (skip recolouring it)
        self._contour_key: tuple | None = None
        self._contour_cache: list = []
        self.last_move_seconds = 0.0
        # test hooks: replace to answer the dialogs programmatically
        self.ask_recovery: Callable[[list[str]], bool] | None = None  # None: a non-blocking question
        self.ask_unsaved: Callable[[int], str] = self._ask_unsaved
        self.show_error: Callable[[str, str], None] = self._show_error

        self.layer = MaskLayer()
        self.layer.hide()
        self.canvas.scene().addItem(self.layer)
        self.tools = EditTools(self.canvas, self)
        self.actions = self._make_actions()
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
        window.case_list.current_row_changed.connect(self._row_changed)
        s.cases_opened.connect(self._cases_opened)
        window.view.drawn.connect(self._after_draw)
        self.canvas.zoom_changed.connect(self._zoomed)
        # bound methods (not lambdas): Qt drops these connections when the window is deleted
        s.current_scores.connect(self._case_view_scored)
        s.model_switched.connect(self._model_switched)
        s.entry_scored.connect(self._case_view_scored)
        self._update_actions()

    # ------------------------------------------------------------------ actions and menus
    def _make_actions(self) -> dict[str, QAction]:
        w = self.w
        acts: dict[str, QAction] = {}

        def make(name: str, text: str, slot, checkable: bool = False) -> QAction:
            act = QAction(text, w)
            act.setShortcuts([QKeySequence(k) for k in shortcuts.keys(name)])
            what = shortcuts.BY_NAME[name].text
            act.setToolTip(shortcuts.tip(what[:1].upper() + what[1:], name))  # (not capitalize(): "Shift+click")
            act.setCheckable(checkable)
            act.triggered.connect(slot)
            w.addAction(act)
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

    def install_menus(self) -> None:
        bar = self.w.menuBar()
        file_menu = _menu(bar, "&File")
        if file_menu is not None:
            quit_action = next((a for a in file_menu.actions() if a.text().replace("&", "") == "Quit"), None)
            file_menu.insertAction(quit_action, self.actions["save"])
            file_menu.insertAction(quit_action, self.actions["export"])
            file_menu.insertSeparator(quit_action)
        edit = QMenu("&Edit", bar)
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
        view_menu = _menu(bar, "&View")
        bar.insertMenu(view_menu.menuAction() if view_menu is not None else None, edit)
        self.edit_menu = edit

    def _tool_changed(self, value: str) -> None:
        for tool in Tool:
            self.actions[f"tool_{tool.value}"].setChecked(tool.value == value)
        if Tool(value) in POLYGON_MODES:
            self.polygon_button.setDefaultAction(self.actions[f"tool_{value}"])
            self.polygon_button.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        hint = (": click the vertices; Enter, a double click or the first vertex closes; Backspace removes "
                "the last; Esc cancels") if Tool(value) in POLYGON_MODES else ""
        self.w.statusBar().showMessage(f"Tool: {Tool(value).label}{hint}", 8000 if hint else 3000)

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

    # ------------------------------------------------------------------ folder and row changes
    def _sync_folder(self) -> None:
        if self._entries_ref is not self.session.entries:
            self.tools.cancel()
            self._stroke = None
            self._entries_ref = self.session.entries
            self.book.clear()
            self._checked.clear()
            self._metrics.clear()
            self._row = -1

    def _cases_opened(self) -> None:
        self._sync_folder()
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
        entries = self.session.entries
        pending = self._worth_restoring(self.book.pending([e.case.image for e in entries]))
        if not pending:
            return 0
        names = [entries[row].name for row, _ in pending]
        if self.ask_recovery is not None:
            return self._restore(pending, self.ask_recovery(names))
        shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        box = QMessageBox(
            QMessageBox.Icon.Question, "Restore unsaved corrections?",
            f"Corrections that were never saved were found for {len(names)} image(s) of this folder "
            f"({shown}); the program may have closed unexpectedly.\n\nRestore them? "
            "(No discards them.)",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self.w)
        box.setDefaultButton(QMessageBox.StandardButton.Yes)
        entries_ref = self.session.entries
        box.finished.connect(lambda result: self._restore(
            pending, result == QMessageBox.StandardButton.Yes) if entries_ref is self.session.entries else None)
        self.recovery_box = box
        box.open()
        return 0

    def _worth_restoring(self, pending: list[tuple[int, str]]) -> list[tuple[int, str]]:
        """The journals whose replay changes the mask; the others (edits undone, or reset to the
        model's mask) are removed without asking: there is nothing to restore in them."""
        entries = self.session.entries
        out = []
        for row, stem in pending:
            image = entries[row].case.image
            try:
                if self.book.journal_changes_mask(image, lambda im=image: image_size(im)[::-1]):
                    out.append((row, stem))
                else:
                    self.book.discard_journal(image)
            except (StoreError, ImageReadError, OSError, ValueError):
                out.append((row, stem))  # asked about; restoring it then says what is wrong
        return out

    def _restore(self, pending: list[tuple[int, str]], yes: bool) -> int:
        entries = self.session.entries
        if not yes:
            for row, _stem in pending:
                try:
                    self.book.discard_journal(entries[row].case.image)
                except StoreError as exc:
                    self.w.notice.show_notice(str(exc), True)
            return 0
        restored = 0
        for row, _stem in pending:
            image = entries[row].case.image
            try:
                w, h = image_size(image)
                self.book.recover(row, image, (h, w))
            except (StoreError, ImageReadError, OSError, ValueError) as exc:
                self.w.notice.show_notice(f"{image.name}: unsaved edits cannot be restored: "
                                          f"{describe_error(exc)}", True)
                continue
            self._checked.add(row)
            if not self.book.edits[row].dirty:  # replayed back to where it started: nothing unsaved
                self._settle(row)
                if not self.book.edits[row].on_disk:
                    del self.book.edits[row]
                continue
            entries[row].extras["edited"] = "unsaved"
            self.session.table.entry_changed(row)
            restored += 1
        if restored:
            self.w.statusBar().showMessage(f"Restored the unsaved corrections of {restored} image(s)", 6000)
        if self.session.current >= 0 and self.session.current_images() is not None:
            self.w.view.redraw()
        return restored

    def _row_changed(self, row: int) -> None:
        self._sync_folder()
        prev = self._row
        if prev != row:
            self.tools.cancel()
            if prev >= 0 and self.panel.autosave.isChecked():
                edit = self.book.get(prev)
                if edit is not None and edit.dirty:
                    self.save_row(prev, interactive=False)
        self._row = row
        if row >= 0 and self.session.current_images() is None:
            self._show(row)  # hide the previous image's correction until this one is drawn
        self._update_actions()

    def current_edit(self) -> ImageEdit | None:
        row = self.session.current
        return self.book.get(row) if row >= 0 and self._entries_ref is self.session.entries else None

    # ------------------------------------------------------------------ display
    def _edit_for_display(self, row: int) -> ImageEdit | None:
        edit = self.book.get(row)
        if edit is not None or row in self._checked or row < 0:
            return edit
        self._checked.add(row)
        image = self.session.entries[row].case.image
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
            edit = self.book.start(row, image, saved, pred, on_disk=True, **self._model_identity())
        except StoreError as exc:
            self.w.notice.show_notice(f"The saved correction cannot be shown: {exc}", True)
            return None
        self.session.entries[row].extras["edited"] = "saved"
        self.session.table.entry_changed(row)
        return edit

    def _after_draw(self, row: int, has_prediction: bool, compared: bool) -> None:
        self._sync_folder()
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
        opts = self.w.controls.options()
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
        if self._showing and edit is not None and self.w.controls.options().show_mask \
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
        row = self.session.current
        edit = self.current_edit()
        if edit is None or not self._showing:
            return
        cached = self._metrics.get(row)
        if cached is not None and cached[0] == edit.history.revision:
            self._display_metrics(cached[1], cached[2])
        elif start:
            self._start_metrics(row, edit)

    def _start_metrics(self, row: int, edit: ImageEdit) -> None:
        images = self.session.images.get(row)
        if images is None:
            return
        mask = edit.history.mask.copy() if edit.history.stroke_in_progress else edit.history.mask
        worker = Worker(live_metrics, row, edit.history.revision, mask, images.gt, edit.prediction)
        worker.result.connect(self._metrics_ready)
        worker.errored.connect(lambda exc: self.w.notice.show_notice(
            f"Scoring the correction failed: {describe_error(exc)}", True))
        self._workers.add(worker)
        worker.finished.connect(lambda wk=worker: self._workers.discard(wk))
        worker.start(self.session.pool)

    def _metrics_ready(self, value) -> None:
        row, revision, scores, dsc = value
        if self._entries_ref is not self.session.entries:
            return
        edit = self.book.get(row)
        if edit is None or edit.history.revision != revision:
            return
        self._metrics[row] = (revision, scores, dsc)
        if row == self.session.current and self._showing:
            self._display_metrics(scores, dsc)
        self.metrics_updated.emit(row)

    def _display_metrics(self, scores, dsc: float) -> None:
        note = f"Corrected mask. Agreement with the model's mask: DSC {100 * dsc:.1f}%"
        if scores is None:
            self.w.metrics.show_pending("No ground truth. " + note)
        else:
            self.w.metrics.show_scores(scores, note=note)

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
        self._sync_folder()
        row = self.session.current
        if row < 0:
            return None
        images = self.session.images.get(row)
        if images is None:
            self.w.statusBar().showMessage("The image is still opening", 3000)
            return None
        edit = self._edit_for_display(row)
        if edit is not None:
            return edit
        entry = self.session.entries[row]
        if images.prob is None and not self.session.model_error and not entry.prediction_error:
            # the correction starts from the model's mask: wait for it (no model: from scratch)
            self.w.statusBar().showMessage("Wait for the prediction before correcting it", 4000)
            return None
        pred = None
        if images.prob is not None:
            pred = threshold_u8(images.prob, self.w.controls.options().threshold)
        mask = pred.copy() if pred is not None else np.zeros(images.shape, bool)
        image = self.session.entries[row].case.image
        try:
            edit = self.book.start(row, image, mask, pred, **self._model_identity())
        except StoreError as exc:
            edit = self.book.start_unjournalled(row, image, mask, pred)
            edit.journal_errors.append(str(exc))
            self.w.notice.show_notice(f"Edits cannot be journalled: {exc}", True)
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
        self._stroke_row = self.session.current
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
        edit = self.book.get(self._stroke_row)
        self._stroke = None
        if edit is None or not edit.history.stroke_in_progress:
            return
        edit.history.end_stroke()
        self._after_change(self._stroke_row, None)

    def stroke_cancel(self) -> None:
        edit = self.book.get(self._stroke_row)
        self._stroke = None
        if edit is None or not edit.history.stroke_in_progress:
            return
        box = edit.history.cancel_stroke()
        self._after_change(self._stroke_row, box)

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
            mask = threshold_u8(images.prob, self.w.controls.options().threshold)
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
        self._after_change(self.session.current, result.bbox)

    def apply(self, op: EditOp) -> None:
        """Apply an operation to the current image's mask as one undo step."""
        edit = self.ensure_edit()
        if edit is None:
            return
        try:
            result = edit.history.apply(op)
        except ValueError as exc:
            self.w.statusBar().showMessage(f"{op.label}: {exc}", 5000)
            return
        if result.bbox is None:
            self.w.statusBar().showMessage(f"{op.label.capitalize()}: nothing to change", 3000)
        self._after_change(self.session.current, result.bbox)

    def undo(self) -> None:
        edit = self.current_edit()
        if edit is not None and edit.history.can_undo():
            self._after_change(self.session.current, edit.history.undo())

    def redo(self) -> None:
        edit = self.current_edit()
        if edit is not None and edit.history.can_redo():
            self._after_change(self.session.current, edit.history.redo())

    def reset_to_prediction(self) -> None:
        edit = self.current_edit()
        if edit is None:
            return
        result = edit.history.reset_to(edit.prediction)
        self._after_change(self.session.current, result.bbox)

    def _after_change(self, row: int, box: BBox | None) -> None:
        edit = self.book.get(row)
        if edit is None:
            return
        self._contour_timer.stop()
        if row == self.session.current and self._showing:
            self.layer.set_live_mask(edit.history.mask)
            self.layer.update_region(box)
            if self._layer_key is not None and self._layer_key[0] == id(edit):  # now up to date
                self._layer_key = (id(edit), edit.history.revision, *self._layer_key[2:])
            if self.w.controls.options().show_mask:
                self.canvas.set_contours(self._contours(edit))
            self._start_metrics(row, edit)
            self.tools.refresh_outline()
        if not edit.dirty:
            self._settle(row)  # back at the saved state or the model's mask: no journal to offer
        entry = self.session.entries[row]
        state = "unsaved" if edit.dirty else ("saved" if edit.on_disk else None)
        if state:
            entry.extras["edited"] = state
        else:
            entry.extras.pop("edited", None)
        self.session.table.entry_changed(row)
        if edit.journal_errors and edit.store is not None:
            self.w.notice.show_notice(f"Edits are not journalled: {edit.journal_errors[-1]}", True)
        self._update_actions()
        self.changed.emit(row)

    # ------------------------------------------------------------------ saving
    def save_current(self) -> bool:
        row = self.session.current
        if row < 0:
            return False
        if self.book.get(row) is None:
            self.w.statusBar().showMessage("Nothing to save: this image is not corrected", 3000)
            return False
        return self.save_row(row, interactive=True)

    def save_row(self, row: int, interactive: bool = True) -> bool:
        """Save ``row``'s correction; a failure is shown and the edit stays in memory."""
        edit = self.book.get(row)
        if edit is None:
            return False
        entry = self.session.entries[row]
        image = entry.case.image
        if edit.store is None and self.session.projects.project_for(image) is None:
            problem = self.session.projects.problem_for(image) or "no project folder"
            if interactive and row == self.session.current:
                self.w.choose_project_folder()  # the same dialog as for the review status
            if self.session.projects.project_for(image) is None:
                msg = f"{image.name}: the correction is not saved: {problem}"
                self._failed(msg, interactive)
                return False
        try:
            info = self.book.save(row, **self._model_identity())
        except (StoreError, ValueError) as exc:
            self._failed(f"{image.name}: the correction is not saved. {exc}\n"
                         "It is kept in memory (and in the edit journal); try again or choose "
                         "another project folder.", interactive)
            if row == self.session.current:
                self._update_actions()
            return False
        entry.extras["edited"] = "saved"
        self.session.table.entry_changed(row)
        self.w.statusBar().showMessage(
            f"Saved the correction of {image.name} (revision {info.revisions[-1].n})", 5000)
        if row == self.session.current:
            self._update_actions()
        self.saved.emit(row)
        return True

    def _failed(self, message: str, interactive: bool) -> None:
        self.w.notice.show_notice(message.replace("\n", " "), True)
        if interactive:
            self.show_error("Correction not saved", message)
        if self.session.current >= 0:
            self.panel.show_state(message.split("\n")[0], warning=True)

    def save_all(self) -> bool:
        ok = True
        for row in self.book.dirty_rows():
            ok &= self.save_row(row, interactive=False)
        return ok

    def _settle(self, row: int) -> None:
        try:
            self.book.settle(row)
        except StoreError as exc:
            self.w.notice.show_notice(str(exc), True)

    def colours_changed(self) -> None:
        """Preferences changed the overlay colours: recolour the corrected mask at the next draw."""
        self._layer_key = None

    def _model_switched(self) -> None:
        """Another model: an image whose correction was never saved and still equals the old
        model's mask shows the new model's mask (its journal goes); real corrections stay."""
        self.tools.cancel()
        self._stroke = None
        for row in self.book.drop_unchanged():
            self._metrics.pop(row, None)
            self.session.entries[row].extras.pop("edited", None)
            self.session.table.entry_changed(row)
        self._layer_key = None
        self._update_actions()

    def confirm_leave(self) -> bool:
        """Before closing or opening another folder: True when it is fine to go on."""
        self.tools.cancel()
        for row in list(self.book.edits):
            if not self.book.edits[row].dirty:
                self._settle(row)  # no journal left behind for a correction with nothing unsaved
        dirty = self.book.dirty_rows()
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
        for row in dirty:  # discard: forget them and their journals
            try:
                self.book.discard_journal(self.book.edits[row].image)
            except StoreError:
                pass
            self.book.edits.pop(row, None)
        return True

    # ------------------------------------------------------------------ dialogs
    def _ask_unsaved(self, n: int) -> str:
        box = QMessageBox(QMessageBox.Icon.Question, "Unsaved corrections",
                          f"{n} image(s) have corrections that are not saved.",
                          QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                          | QMessageBox.StandardButton.Cancel, self.w)
        box.setDefaultButton(QMessageBox.StandardButton.Save)
        answer = box.exec()
        return {QMessageBox.StandardButton.Save: "save",
                QMessageBox.StandardButton.Discard: "discard"}.get(QMessageBox.StandardButton(answer), "cancel")

    def _show_error(self, title: str, text: str) -> None:
        QMessageBox.warning(self.w, title, text)

    # ------------------------------------------------------------------ export
    def open_export(self) -> None:
        from dermaseg_app.gui.export_dialog import ExportDialog, session_model

        projects = list(self.session.projects.projects.values())
        if not projects:
            self.show_error("Export", "Open a folder first (and, for a read-only folder, choose a "
                                      "project folder): there is no review project to export.")
            return
        current = None
        if self.session.current >= 0:
            current = self.session.projects.project_for(self.session.entries[self.session.current].case.image)
        factory, model_text = session_model(self.session)
        dialog = ExportDialog(projects, current or projects[0], len(self.book.dirty_rows()), self.w,
                              pool=self.session.pool, model_factory=factory, model_text=model_text)
        self.export_dialog = dialog
        dialog.show()

    def shutdown(self) -> None:
        for wk in list(self._workers):
            wk.wait(5.0)


def _menu(bar, title: str) -> QMenu | None:
    for act in bar.actions():
        if act.menu() is not None and act.text() == title:
            return act.menu()
    return None


def install_editing(window: MainWindow) -> EditController:
    """Add contour correction to the review window (tool bar, panel below the metrics, menus, keys)."""
    controller = EditController(window)
    side = window.metrics.parentWidget()
    layout = side.layout() if side is not None else None
    if layout is not None:  # below the metrics, which stay in view while editing
        layout.insertWidget(layout.indexOf(window.metrics) + 1, controller.panel)
    window.addToolBar(Qt.ToolBarArea.TopToolBarArea, controller.toolbar)
    controller.install_menus()
    return controller


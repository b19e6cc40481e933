"""Lesion measurements in the review window (issue 15): the Measurements panel, the folder's
scale (Measure > Set Scale… and the ruler) and the follow-up comparison of two images.

``MeasurementsController(context)`` gets what it works with from the window (a
:class:`MeasurementsContext`) and offers its pieces for the window to place: ``panel`` (the
window puts it in the review side panel), ``actions`` and ``build_menu(parent)`` (the Measure
menu). The logic without Qt (which mask, which calibration, the rows' texts) is
app/measurements.py; the measuring itself core/measure.py.

Live updates: the panel measures the mask on screen -- the correction being edited, else the
ground truth, else the prediction -- at most every ``THROTTLE_MS`` while the mouse drags (a
stroke in progress) and when an edit, a new image or a threshold change arrives; a measurement
takes a few ms at 1000x1000 and ~40 ms at 3072x2304, on the GUI thread. The image's colour map
(~20 ms per megapixel) is computed once per image on a worker; the colours show when it arrives.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEvent, QObject, QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QColor, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsLineItem, QGraphicsPathItem, QInputDialog, QMenu, QWidget

from dermaseg_app.app.measurements import (
    FileCalibrations,
    choose_mask,
    colour_swatches,
    effective_calibration,
    folder_calibration,
    follow_up_rows,
    panel_rows,
    set_folder_calibration,
)
from dermaseg_app.core.errors import DermaSegError
from dermaseg_app.core.measure import Calibration, ColourMap, Measurements, colour_map, measure
from dermaseg_app.core.metrics import threshold_u8
from dermaseg_app.gui.canvas.image_view import ImageCanvas
from dermaseg_app.gui.case_view import CaseView
from dermaseg_app.gui.dialogs import Dialogs
from dermaseg_app.gui.editing import EditController
from dermaseg_app.gui.notifier import Notifier
from dermaseg_app.gui.session import ReviewSession
from dermaseg_app.gui.widgets.case_list import CaseListWidget
from dermaseg_app.gui.widgets.display_controls import DisplayControls
from dermaseg_app.gui.widgets.follow_up_dialog import FollowUpDialog, FollowUpSide
from dermaseg_app.gui.widgets.measurements_panel import MeasurementsPanel
from dermaseg_app.gui.workers import Worker, describe_error

THROTTLE_MS = 100  # at most ~10 measurements a second while a stroke is drawn
COLOUR_MAPS = 4  # colour maps kept (the current image and its neighbours)
MAX_COLOR, MIN_COLOR, AXIS_COLOR, RULER_COLOR = (0, 220, 255), (255, 80, 220), (255, 255, 255), (255, 200, 0)


def _colour_map_job(job, image: Path, images) -> tuple[Path, ColourMap]:
    return image, colour_map(images.rgb)


@dataclass
class MeasurementsContext:
    """What the measurements work with; the window builds it."""

    session: ReviewSession
    canvas: ImageCanvas
    view: CaseView
    controls: DisplayControls
    editing: EditController
    case_list: CaseListWidget
    notifier: Notifier
    dialogs: Dialogs


class MeasurementsController(QObject):
    measured = Signal()  # the panel shows a new measurement (or none)
    calibration_changed = Signal()

    def __init__(self, context: MeasurementsContext, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.session = context.session
        self.canvas = context.canvas
        self.notifier = context.notifier
        self.files = FileCalibrations()
        self.current: Measurements | None = None
        self.source: str | None = None
        self._maps: OrderedDict[Path, ColourMap] = OrderedDict()
        self._map_pending: set[Path] = set()
        self._workers: set[Worker] = set()
        self._ruler_start: QPointF | None = None
        self._key: tuple | None = None  # what self.current measured
        self.follow_up_dialog: FollowUpDialog | None = None
        # test hooks: replace to answer without a dialog
        self.ask_length: Callable[[float], float | None] = self._ask_length
        self.ask_scale: Callable[[float | None], float | None] = self._ask_scale
        self.show_error: Callable[[str, str], None] = context.dialogs.warn

        self.actions = self._make_actions()
        self.panel = MeasurementsPanel(self.actions)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(THROTTLE_MS)
        self._timer.timeout.connect(self.refresh)
        self._lines = self._line_items()
        self._ruler_item = QGraphicsLineItem()
        self._ruler_item.setPen(self._pen(RULER_COLOR, 2.0))
        self._ruler_item.setZValue(6)
        self._ruler_item.hide()
        self.canvas.scene().addItem(self._ruler_item)
        self.canvas.viewport().installEventFilter(self)  # after the edit tools': sees events first

        context.view.drawn.connect(self._drawn)
        context.editing.changed.connect(self._edited)
        context.case_list.current_row_changed.connect(self._row_changed)
        self.session.folder_changed.connect(self._folder_changed)
        self.refresh()

    # ------------------------------------------------------------------ actions
    def _make_actions(self) -> dict[str, QAction]:
        acts: dict[str, QAction] = {}

        def make(name: str, text: str, slot, tip: str, checkable: bool = False) -> QAction:
            act = QAction(text, self)
            act.setCheckable(checkable)
            act.setToolTip(tip)
            act.setStatusTip(tip)
            act.triggered.connect(slot)
            acts[name] = act
            return act

        make("set_scale", "Set Scale…", self.open_set_scale,
             "Millimetres per pixel for every image of this folder (kept in its review project)")
        make("ruler", "Ruler", self._ruler_toggled,
             "Drag a line across a known length (a scale bar), then enter its length in mm", checkable=True)
        make("clear_scale", "Clear the Folder's Scale", self.clear_scale,
             "Measure this folder in pixels again (or by the files' own resolution)")
        make("show_lines", "Show Axes", self._lines_toggled,
             "Draw the principal axes and the max / min diameters on the image", checkable=True)
        make("follow_up", "Compare Follow-up…", self.open_follow_up,
             "Select two images of the same lesion in the list (Ctrl+click), then compare them")
        return acts

    def build_menu(self, parent: QWidget) -> QMenu:
        menu = QMenu("&Measure", parent)
        for name in ("set_scale", "ruler", "clear_scale"):
            menu.addAction(self.actions[name])
        menu.addSeparator()
        menu.addAction(self.actions["show_lines"])
        menu.addSeparator()
        menu.addAction(self.actions["follow_up"])
        return menu

    # ------------------------------------------------------------------ live updates
    def schedule(self) -> None:
        """Measure again soon (coalesced: at most every THROTTLE_MS)."""
        if not self._timer.isActive():
            self._timer.start()

    def _drawn(self, *_args) -> None:
        self.schedule()

    def _edited(self, _row: int) -> None:
        self.schedule()

    def _row_changed(self, _row: int) -> None:
        self._timer.stop()
        self.refresh()

    def _folder_changed(self) -> None:
        self._maps.clear()
        self.current, self._key = None, None

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt API
        et = event.type()
        if self.actions["ruler"].isChecked():
            return self._ruler_event(et, event)
        if et == QEvent.Type.MouseMove and event.buttons() != Qt.MouseButton.NoButton:
            self.schedule()  # a stroke (or a drag) in progress: the panel follows at ~10 Hz
        elif et == QEvent.Type.MouseButtonRelease:
            self.schedule()
        return False

    def _current(self):
        row = self.session.current
        if row < 0 or row >= len(self.session.entries):
            return row, None, None
        return row, self.session.entries[row].case.image, self.session.current_images()

    def calibration_for(self, image: Path) -> Calibration:
        """The folder's scale, else the file's trusted resolution, else pixels."""
        project = self.session.projects.project_for(image)
        return effective_calibration(folder_calibration(project), self.files.get(image))

    def refresh(self) -> None:
        """Measure the current image's mask and show it."""
        self._timer.stop()
        _row, image, images = self._current()
        m, source, note, pending, cal = None, None, "", False, Calibration()
        if images is not None:
            edit = self.context.editing.book.get(image)
            correction = edit.history.mask if edit is not None else None
            threshold = self.context.controls.options().threshold
            pred = None
            if correction is None and images.gt is None and images.prob is not None:
                pred = threshold_u8(images.prob, threshold)
            mask, source = choose_mask(correction, images.gt, pred)
            cal = self.calibration_for(image)
            if mask is None:
                note = "Nothing to measure yet: no correction, ground truth or prediction."
            else:
                cmap = self._colour_map(image, images)
                if cmap is not None and cmap.shape != mask.shape:
                    cmap = None
                pending = cmap is None
                # the same mask, scale and colours as last time (a pan, a redraw): not measured again
                key = (image, source, id(images), id(edit), edit.history.revision if edit is not None else None,
                       threshold if source == "prediction" else None, cal, id(cmap))
                if (key == self._key and self.current is not None
                        and not (edit is not None and edit.history.stroke_in_progress)):
                    m = self.current
                else:
                    try:
                        m = measure(mask, cmap, cal)
                        self._key = key
                    except ValueError as exc:
                        note = f"Cannot measure: {exc}"
        elif image is not None:
            cal = self.calibration_for(image)
        self.current, self.source = m, source
        self.panel.show_rows(panel_rows(m, source, pending_colours=pending, calibration=cal))
        self.panel.show_swatches(colour_swatches(m))
        self.panel.show_note(note)
        self._draw_lines()
        self.measured.emit()

    def _colour_map(self, image: Path, images) -> ColourMap | None:
        cmap = self._maps.get(image)
        if cmap is not None:
            self._maps.move_to_end(image)
            return cmap
        if image not in self._map_pending:
            self._map_pending.add(image)
            worker = Worker(_colour_map_job, image, images)
            worker.result.connect(self._map_ready)
            worker.errored.connect(lambda exc, im=image: self._map_failed(im, exc))
            self._workers.add(worker)
            worker.finished.connect(lambda wk=worker: self._workers.discard(wk))
            worker.start(self.session.pool)
        return None

    def _map_ready(self, value) -> None:
        image, cmap = value
        self._map_pending.discard(image)
        self._maps[image] = cmap
        while len(self._maps) > COLOUR_MAPS:
            self._maps.popitem(last=False)
        if image == self._current()[1]:
            self.refresh()

    def _map_failed(self, image: Path, exc: BaseException) -> None:
        self._map_pending.discard(image)
        self.panel.show_note(f"Colours not measured: {describe_error(exc)}")

    def wait(self, timeout: float = 10.0) -> bool:
        """(Tests.) Wait for the colour maps being computed."""
        return all(wk.wait(timeout) for wk in list(self._workers))

    # ------------------------------------------------------------------ the lines on the canvas
    @staticmethod
    def _pen(rgb: tuple[int, int, int], width: float, dashed: bool = False) -> QPen:
        pen = QPen(QColor(*rgb))
        pen.setWidthF(width)
        pen.setCosmetic(True)
        if dashed:
            pen.setStyle(Qt.PenStyle.DashLine)
        return pen

    def _line_items(self) -> dict[str, QGraphicsPathItem]:
        items = {}
        for name, colour, dashed in (("axes", AXIS_COLOR, True), ("max", MAX_COLOR, False),
                                     ("min", MIN_COLOR, False)):
            item = QGraphicsPathItem()
            item.setPen(self._pen(colour, 2.0, dashed))
            item.setZValue(5)
            item.hide()
            self.canvas.scene().addItem(item)
            items[name] = item
        return items

    def _lines_toggled(self, _on: bool) -> None:
        self._draw_lines()

    def _draw_lines(self) -> None:
        m = self.current
        if not self.actions["show_lines"].isChecked() or m is None or m.empty:
            for item in self._lines.values():
                item.hide()
            return
        paths = {name: QPainterPath() for name in self._lines}
        for name, line in (("max", m.max_diameter_line), ("min", m.min_diameter_line)):
            if line is not None:
                paths[name].moveTo(*line[0])
                paths[name].lineTo(*line[1])
        if m.centroid is not None and m.axis_angles_deg is not None:
            cx, cy = m.centroid
            half = m.max_diameter_px / 2
            for angle in m.axis_angles_deg:
                dx, dy = half * math.cos(math.radians(angle)), half * math.sin(math.radians(angle))
                paths["axes"].moveTo(cx - dx, cy - dy)
                paths["axes"].lineTo(cx + dx, cy + dy)
        for name, item in self._lines.items():
            item.setPath(paths[name])
            item.show()

    def line_paths(self) -> dict[str, QPainterPath]:
        """(Tests.) What is drawn: name -> path, for the visible lines."""
        return {n: i.path() for n, i in self._lines.items() if i.isVisible()}

    # ------------------------------------------------------------------ the folder's scale
    def _project(self):
        _row, image, _images = self._current()
        if image is None:
            return None, None
        return image, self.session.projects.project_for(image)

    def set_folder_scale(self, cal: Calibration | None) -> bool:
        """Store ``cal`` (None: none) as the current folder's scale; False when it cannot be."""
        image, project = self._project()
        if image is None:
            self.notifier.status("Open an image first", 3000)
            return False
        if project is None:
            problem = self.session.projects.problem_for(image) or "this image has no review project"
            self.show_error("Scale not saved", f"The folder's scale cannot be kept: {problem}. "
                                               "Choose a project folder (Review > Choose Project Folder…).")
            return False
        try:
            set_folder_calibration(project, cal)
        except DermaSegError as exc:
            self.show_error("Scale not saved", str(exc))
            return False
        what = f"{cal.mm_per_px:.4g} mm/px" if cal is not None and cal.calibrated else "none (pixels)"
        self.notifier.status(f"Scale of {project.image_folder.name}: {what}", 6000)
        self.refresh()
        self.calibration_changed.emit()
        return True

    def clear_scale(self) -> None:
        self.set_folder_scale(None)

    def _ask_scale(self, current: float | None) -> float | None:
        value, ok = QInputDialog.getDouble(
            self.context.dialogs.parent, "Set scale",
            "Millimetres per pixel for every image of this folder\n(0 removes the folder's scale):",
            current if current is not None else 0.01, 0.0, 100.0, 6)
        return float(value) if ok else None

    def open_set_scale(self) -> None:
        image, project = self._project()
        if image is None:
            self.notifier.status("Open an image first", 3000)
            return
        folder = folder_calibration(project)
        value = self.ask_scale(folder.mm_per_px if folder is not None else None)
        if value is None:
            return
        self.set_folder_scale(Calibration(value, "user") if value > 0 else None)

    # ------------------------------------------------------------------ the ruler
    def _ruler_toggled(self, on: bool) -> None:
        self._ruler_start = None
        self._ruler_item.hide()
        if on:
            self.notifier.status("Ruler: drag a line across a known length (a scale bar); Esc cancels")

    def _ruler_event(self, et, event) -> bool:
        if et == QEvent.Type.MouseButtonPress and event.button() == Qt.MouseButton.LeftButton:
            self._ruler_start = self.canvas.mapToScene(event.position().toPoint())
            self._ruler_item.setLine(self._ruler_start.x(), self._ruler_start.y(),
                                     self._ruler_start.x(), self._ruler_start.y())
            self._ruler_item.show()
            return True
        if et == QEvent.Type.MouseMove and self._ruler_start is not None:
            p = self.canvas.mapToScene(event.position().toPoint())
            self._ruler_item.setLine(self._ruler_start.x(), self._ruler_start.y(), p.x(), p.y())
            return True
        if et == QEvent.Type.MouseButtonRelease and self._ruler_start is not None:
            p = self.canvas.mapToScene(event.position().toPoint())
            start, self._ruler_start = self._ruler_start, None
            self.ruler((start.x(), start.y()), (p.x(), p.y()))
            return True
        if et == QEvent.Type.KeyPress and event.key() == Qt.Key.Key_Escape:
            self.actions["ruler"].setChecked(False)
            self._ruler_toggled(False)
            return True
        return et in (QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonDblClick)

    def _ask_length(self, pixels: float) -> float | None:
        value, ok = QInputDialog.getDouble(
            self.context.dialogs.parent, "Ruler",
            f"The line is {pixels:.1f} pixels long.\nIts length in millimetres:", 1.0, 0.001, 1000.0, 3)
        return float(value) if ok else None

    def ruler(self, p0: tuple[float, float], p1: tuple[float, float]) -> bool:
        """A ruler from ``p0`` to ``p1`` (image pixels): asks its length in mm and sets the
        folder's scale. False when it was too short, cancelled or not saved."""
        self._ruler_item.setLine(p0[0], p0[1], p1[0], p1[1])
        self._ruler_item.show()
        try:
            pixels = math.dist(p0, p1)
            if pixels < 2:
                self.notifier.status("The ruler is too short: drag across the scale bar", 4000)
                return False
            mm = self.ask_length(pixels)
            if mm is None or mm <= 0:
                return False
            ok = self.set_folder_scale(Calibration.from_points(p0, p1, mm, "ruler"))
        finally:
            self._ruler_item.hide()
        if ok:
            self.actions["ruler"].setChecked(False)
        return ok

    # ------------------------------------------------------------------ follow-up
    def _side(self, row: int) -> FollowUpSide:
        from dermaseg_app.core.imageio import read_image, read_mask

        entry = self.session.entries[row]
        image = entry.case.image
        images = self.session.images.get(row)
        rgb = images.rgb if images is not None else read_image(image)
        edit = self.context.editing.book.get(image)
        correction = edit.history.mask if edit is not None else self.context.editing.book.saved_correction(image)
        gt = images.gt if images is not None else None
        if gt is None and images is None and entry.case.ground_truth is not None:
            try:
                gt = read_mask(entry.case.ground_truth)
            except DermaSegError:
                gt = None
        prob = images.prob if images is not None and images.prob is not None else self.session.probs.get(row)
        pred = threshold_u8(prob, self.session.threshold) if prob is not None else None
        mask, source = choose_mask(correction, gt, pred)
        if mask is None:
            raise ValueError(f"{image.name} has nothing to measure yet (no correction, ground truth "
                             "or prediction)")
        if mask.shape != rgb.shape[:2]:
            raise ValueError(f"{image.name}: the mask and the image differ in size")
        m = measure(mask, rgb, self.calibration_for(image))
        return FollowUpSide(image.name, rgb, np.asarray(mask, bool), source or "", m)

    def open_follow_up(self, rows: list[int] | None = None) -> FollowUpDialog | None:
        """Compare two images of the same lesion (the two selected rows, in the list's order)."""
        rows = self.context.case_list.selected_rows() if rows is None else list(rows)
        if len(rows) != 2:
            self.show_error("Compare follow-up",
                            "Select exactly two images of the same lesion in the list (Ctrl+click the "
                            f"second one), then choose Measure > Compare Follow-up… ({len(rows)} selected).")
            return None
        try:
            before, after = self._side(rows[0]), self._side(rows[1])
        except (ValueError, DermaSegError) as exc:
            self.show_error("Compare follow-up", str(exc))
            return None
        dialog = FollowUpDialog(before, after, follow_up_rows(before.measurements, after.measurements),
                                self.context.dialogs.parent)
        self.follow_up_dialog = dialog
        dialog.show()
        return dialog

    def shutdown(self) -> None:
        for wk in list(self._workers):
            wk.wait(5.0)

"""Shows the session's current case on the canvas and in the metrics panel.

Redraws when the case changes, when its pixels or prediction arrive, and when a display option
moves (the threshold re-cuts the stored probability map; nothing is predicted again). Emits
``drawn(row, has_prediction, compared)`` after each redraw (the screenshot mode waits for it).
"""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, QTimer, Signal

from dermaseg_app.gui.canvas.image_view import ImageCanvas
from dermaseg_app.gui.canvas.renderer import DisplayOptions, render
from dermaseg_app.gui.session import ReviewSession
from dermaseg_app.gui.widgets.display_controls import DisplayControls
from dermaseg_app.gui.widgets.metrics_panel import MetricsPanel


class CaseView(QObject):
    drawn = Signal(int, bool, bool)

    def __init__(self, session: ReviewSession, canvas: ImageCanvas, controls: DisplayControls,
                 metrics: MetricsPanel, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.canvas = canvas
        self.controls = controls
        self.metrics = metrics
        self.options: DisplayOptions = controls.options()
        self._shown_row = -1
        self._shown_images = None
        self._rendered = None
        self.last_draw_seconds = 0.0
        self._score_timer = QTimer(self)
        self._score_timer.setSingleShot(True)
        self._score_timer.setInterval(300)
        self._score_timer.timeout.connect(lambda: session.request_scores(self.options.threshold))
        session.images_ready.connect(self._images_ready)
        session.image_failed.connect(self._image_failed)
        session.current_scores.connect(self._scores_ready)
        session.entry_scored.connect(self._entry_scored)
        session.model_failed.connect(lambda _r: self.redraw())
        controls.options_changed.connect(self.set_options)
        canvas.zoom_changed.connect(self._zoomed)

    def show_row(self, row: int) -> None:
        """The user moved to ``row``: draw it now if decoded, else once it arrives."""
        if row < 0:
            self.canvas.clear()
            self.canvas.show_message("")
            self._shown_row = -1
            return
        if self.session.images.get(row) is None and not self.session.entries[row].error:
            self.canvas.show_message(f"Opening {self.session.entries[row].name}…")

    def _images_ready(self, row: int) -> None:
        if row == self.session.current:
            self.redraw()

    def _image_failed(self, row: int, reason: str) -> None:
        if row != self.session.current:
            return
        self.canvas.clear()
        self._shown_row = -1
        self.metrics.show_pending("")
        self.canvas.show_message(f"{self.session.entries[row].case.image.name} cannot be opened:\n{reason}",
                                 error=True)

    def set_options(self, options: DisplayOptions) -> None:
        threshold_moved = options.threshold != self.options.threshold
        self.options = options
        self.session.table.set_thresholds(self.session.threshold, options.threshold)
        self.redraw(image_changed=False)
        if threshold_moved:
            self._score_timer.start()

    def redraw(self, image_changed: bool = True) -> None:
        t0 = time.perf_counter()
        row = self.session.current
        images = self.session.current_images()
        if images is None:
            return
        entry = self.session.entries[row]
        if row != self._shown_row or images is not self._shown_images:
            self._rendered = None
            full = images.rgb if images.full_ready else (lambda im=images: im.rgb)  # may still decode
            self.canvas.set_image(images.size, images.preview, full)
            self._shown_row, self._shown_images = row, images
        has_gt = images.gt is not None
        self.controls.set_compare_available(
            has_gt, images.gt_problem or ("" if has_gt else "This image has no ground truth"))
        options = self.controls.options()
        self.options = options
        second = self.session.second
        rendered = render(images, options, second.threshold)
        self._rendered = rendered
        self.canvas.set_overlay(rendered.overlay_preview, rendered.overlay_full)
        self.canvas.set_contours(rendered.contours)
        empty = "" if rendered.second_contours else f"; no lesion at {second.threshold:.2f}"
        self.canvas.set_second_contours(rendered.second_contours if second.active else None,
                                        (self.session.model_label or "model", f"{second.label} (compared{empty})"))
        self._zoomed(self.canvas.zoom)
        self.canvas.show_legend(rendered.compared, heat=options.heatmap and images.prob is not None)
        self.canvas.show_message(self._message(images, entry))
        self._update_metrics(images, entry)
        self.last_draw_seconds = time.perf_counter() - t0
        self.drawn.emit(row, images.prob is not None, rendered.compared)

    def _zoomed(self, zoom: float) -> None:
        """Past the preview's resolution, replace an approximate outline by the exact one."""
        rendered = self._rendered
        if rendered is not None and rendered.contours_full is not None and zoom > rendered.contour_scale * 1.05:
            self.canvas.set_contours(rendered.contours_full())
            rendered.contours_full = None

    def _message(self, images, entry) -> str:
        if images.prob is not None:
            return images.gt_problem
        if self.session.model_error:
            return self.session.model_error
        if entry.prediction_error:
            return f"Prediction failed: {entry.prediction_error}"
        return "Predicting…" if self.session.model.ready else "Loading the model…"

    def _update_metrics(self, images, entry) -> None:
        if images.gt is None:
            self.metrics.show_pending(images.gt_problem or "No ground truth: reviewed without comparison.")
        elif images.prob is None:
            self.metrics.show_pending("No prediction: no model." if self.session.model_error
                                      else "Waiting for the prediction…")
        elif abs(self.options.threshold - self.session.threshold) < 1e-9 and entry.scores is not None:
            self.metrics.show_scores(entry.scores, self.options.threshold)
        elif abs(self.options.threshold - self.session.threshold) < 1e-9 and self.session.predicting():
            self.metrics.show_pending("Scoring…")  # the prediction job scores it next (entry_scored)
        else:
            self.metrics.show_pending(f"Scoring at threshold {self.options.threshold:.2f}…")
            self._score_timer.start()
        self.session.table.set_thresholds(self.session.threshold, self.options.threshold)

    def _entry_scored(self, row: int) -> None:
        images = self.session.current_images()
        if row == self.session.current and images is not None and images.prob is not None:
            self._update_metrics(images, self.session.entries[row])

    def _scores_ready(self, row: int, threshold: float, scores) -> None:
        if row == self.session.current and abs(threshold - self.options.threshold) < 1e-9:
            self.metrics.show_scores(scores, threshold, note=self._threshold_note(threshold))

    def _threshold_note(self, threshold: float) -> str:
        """Which threshold the panel's scores are at, and, when the slider moved, that the list and
        the folder summary stay at the model's."""
        model = self.session.threshold
        if abs(threshold - model) < 1e-9:
            return f"at threshold {threshold:.2f}"
        return (f"at threshold {threshold:.2f} (the slider); the list and the folder summary are at "
                f"the model's {model:.2f}")

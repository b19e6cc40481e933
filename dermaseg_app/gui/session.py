"""The review session behind the window: the open cases, the model, and the background work.

The window shows what this object holds and sends the user's commands here. All slow work runs on
a thread pool through ``workers.Worker``: loading the model (importing torch takes seconds), the
thumbnails, decoding the images next to the current one, predicting the folder nearest-first, and
scoring the current image at a new threshold. Results come back as signals on the GUI thread.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QThreadPool, QTimer, Signal

from dermaseg_app.app.prediction import FocusQueue, PredictionResult, predict_cases, score_at
from dermaseg_app.app.projects import ProjectBook
from dermaseg_app.core.dataset import find_cases
from dermaseg_app.core.prediction_cache import PredictionCache
from dermaseg_app.core.project import ProjectError, ReviewStatus
from dermaseg_app.gui.canvas.qimage import to_qimage
from dermaseg_app.gui.case_images import CaseImages, load_rows
from dermaseg_app.gui.case_model import CaseEntry, CaseTableModel
from dermaseg_app.gui.lru import LRU
from dermaseg_app.gui.model_slot import (
    ModelSlot,
    ModelUnavailable,
    load_ensemble_predictor,
    load_predictor,
    status_line,
)
from dermaseg_app.gui.second_model import SecondModel
from dermaseg_app.gui.thumbnails import Thumbnail, thumbnails
from dermaseg_app.gui.workers import Worker, describe_error
from dermaseg_app.ml.header import ModelHeader, ModelHeaderError, read_model_header

IMAGE_CACHE_SIZE = 6  # decoded cases kept (a 3072x2304 case holds ~40 MB)
PROB_CACHE_SIZE = 16  # 8-bit probability maps kept in memory (7 MB each at 3072x2304)
PREFETCH = (1, -1, 2)  # neighbours decoded ahead, in the view's order
CACHE_MAX_BYTES = 2 * 1024**3  # probability maps kept on disk per model (least recently used go)


class ReviewSession(QObject):
    cases_opened = Signal()
    entry_updated = Signal(int)
    images_ready = Signal(int)  # a decoded case (and maybe its prediction) is available
    image_failed = Signal(int, str)
    model_ready = Signal(str, str)  # model label, device description
    model_failed = Signal(str)
    model_header_read = Signal(str)  # the model's label, known before it is loaded
    progress = Signal(int, int)
    predictions_done = Signal(bool)  # True when cancelled
    summary_changed = Signal()
    current_scores = Signal(int, float, object)
    entry_scored = Signal(int)  # the current image's scores at the model's threshold arrived
    notice = Signal(str, bool)  # text, is_error
    timing_changed = Signal(float)
    model_switched = Signal()  # use_model: the old model's maps are gone, the new one is loading
    folder_changed = Signal()  # open_paths: other images replace the open ones (before the list shows them)

    def __init__(self, model_path: Path | None = None, device: str | None = None,
                 cache_root: Path | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.model_path = Path(model_path) if model_path else None
        self.ensemble_with: Path | None = None  # the primary model is the ensemble of model_path and this
        self.device = device
        self.cache_root = cache_root
        self.table = CaseTableModel(self)
        self.entries: list[CaseEntry] = []
        self.projects = ProjectBook()
        self.images: LRU[int, CaseImages] = LRU(IMAGE_CACHE_SIZE)
        self.probs: LRU[int, np.ndarray] = LRU(PROB_CACHE_SIZE)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(4)
        self.workers: set[Worker] = set()
        self.current = -1
        self.order: list[int] = []
        self.header: ModelHeader | None = None
        self.cache: PredictionCache | None = None
        self.model = ModelSlot()
        self.model_error = ""
        self.model_label = ""
        self.device_label = ""
        self.threshold = 0.5
        self.seconds: list[float] = []
        self._queue: FocusQueue | None = None
        self._predict_worker: Worker | None = None
        self._loader: Worker | None = None
        self._loading: list[int] = []
        self._model_worker: Worker | None = None
        self._closing = False
        self._generation = 0  # bumped by each open_paths
        self._summary_timer = QTimer(self)
        self._summary_timer.setSingleShot(True)
        self._summary_timer.setInterval(250)
        self._summary_timer.timeout.connect(self.summary_changed)
        self.second = SecondModel(self)  # the compared model (issue 18)
        self.predictions_done.connect(lambda _cancelled: self.second.primary_done())

    # ------------------------------------------------------------------ workers
    def _current_folder(self, slot):
        """``slot``, called only while the folder opened when it was connected is still open:
        results of work cancelled by opening another folder may still be queued, and row numbers
        would then point at the wrong images."""
        generation = self._generation

        def guarded(*args):
            if generation == self._generation:
                slot(*args)

        return guarded

    def _start(self, worker: Worker, what: str = "") -> Worker:
        """Run ``worker`` on the pool; with ``what``, a failure is shown in the window as
        "<what> failed: <reason>" (workers with their own error handling pass "")."""
        self.workers.add(worker)
        worker.finished.connect(lambda w=worker: self.workers.discard(w))
        if what:
            worker.errored.connect(self._current_folder(
                lambda exc: self.notice.emit(f"{what} failed: {describe_error(exc)}", True)))
        worker.start(self.pool)
        return worker

    def busy(self) -> bool:
        return any(not w.is_done for w in self.workers)

    # ------------------------------------------------------------------ the model
    def start_model(self) -> None:
        """Read the model's identity (cheap) and load it in the background (torch import)."""
        if self._model_worker is not None:
            return
        from dermaseg_app import paths

        path = self.model_path or paths.default_model_path()
        try:
            self.header = read_model_header(path)
        except ModelHeaderError as exc:
            if self.model_path is None and not path.exists():
                reason = (f"No model: the bundled model {path.name} is not installed ({path.parent}). "
                          "Images can be viewed and reviewed; pass --model FILE to predict.")
            else:
                reason = f"The model cannot be used: {exc}"
            self._model_unavailable(reason)
            return
        if self.ensemble_with is not None:
            from dermaseg_app.app.ensemble import EnsembleHeader

            try:
                self.header = EnsembleHeader(self.header, read_model_header(self.ensemble_with))
            except ModelHeaderError as exc:
                self._model_unavailable(f"The ensemble cannot be used: {exc}")
                return
        self.threshold = self.header.threshold
        self.model_label = self.header.label
        self.cache = PredictionCache(self.header.cache_key(), root=self.cache_root)
        if self.ensemble_with is not None:
            worker = Worker(load_ensemble_predictor, path, self.ensemble_with, self.device)
        else:
            worker = Worker(load_predictor, path, self.device)
        worker.result.connect(self._model_loaded)
        worker.errored.connect(lambda exc: self._model_unavailable(f"The model cannot be loaded: {exc}"))
        self.workers.add(worker)
        worker.finished.connect(lambda w=worker: self.workers.discard(w))
        self._model_worker = worker.start_daemon("dermaseg-model-loader")
        self.model_header_read.emit(self.header.label)

    def use_model(self, path: Path, ensemble_with: Path | None = None) -> None:
        """Switch to another model file (with ``ensemble_with``: to the ensemble of the two,
        app.ensemble): its maps replace the old model's, which are forgotten (the cache keeps
        both, keyed by model). Corrections are the editor's and stay (gui.editing)."""
        self.cancel_predictions()
        self._generation += 1  # drop what the old model's job still has queued
        self._predict_worker = None
        self._queue = None
        self.model_path = Path(path)
        self.ensemble_with = Path(ensemble_with) if ensemble_with is not None else None
        self.model = ModelSlot()
        self.model_error = ""
        self.header = None
        self.cache = None
        self._model_worker = None
        self.seconds.clear()
        self.probs.clear()
        for images in self.images.values():
            images.prob = images.prob_preview = None
        for entry in self.entries:
            entry.predicted, entry.scores, entry.confusion, entry.uncertainty = False, None, None, None
            entry.prediction_error = ""
        self.table.all_changed()  # not a reset: the list keeps its current image and selection
        self.model_switched.emit()
        self.start_model()
        self.second.primary_switched()
        self._start_predictions()
        if self.current >= 0:
            self.images_ready.emit(self.current)  # redrawn without the old model's mask
        self.summary_changed.emit()

    def _model_loaded(self, value) -> None:
        predictor, device_label = value
        self.model.set(predictor)
        self.model_label = predictor.info.label()
        self.device_label = device_label
        notice = getattr(predictor, "device_notice", None)
        if notice:
            self.notice.emit(notice, False)
        self.model_ready.emit(self.model_label, device_label)

    def _model_unavailable(self, reason: str) -> None:
        self.model_error = reason
        self.model.fail(reason)
        self.model_failed.emit(reason)

    # ------------------------------------------------------------------ opening
    def open_paths(self, paths: Sequence[Path | str], recursive: bool = True,
                   masks_dir: Path | str | None = None) -> int:
        """Open images and folders; returns the number of cases (0 with a notice when none)."""
        paths = [Path(p).absolute() for p in paths]  # project keys are relative to absolute folders
        try:
            cases = find_cases(paths, masks_dir=masks_dir, recursive=recursive)
        except (OSError, ValueError) as exc:
            self.notice.emit(f"Cannot open {', '.join(map(str, paths))}: {describe_error(exc)}", True)
            return 0
        if not cases:
            self.notice.emit(f"No images found in {', '.join(map(str, paths))}.", True)
            return 0
        self.stop_background(wait=False)
        self._generation += 1
        self._loader = None
        self._predict_worker = None
        self._queue = None
        self.images.clear()
        self.probs.clear()
        self.seconds.clear()
        self.projects = ProjectBook()
        for p in paths:
            folder = p if p.is_dir() else p.parent
            self.projects.add_root(folder)
        for case in cases:  # a loose image outside every opened folder gets its folder's project
            if self.projects.root_for(case.image) is None:
                self.projects.add_root(case.image.parent)
        for warning in self.projects.warnings:
            self.notice.emit(warning, False)
        self.entries = []
        for case in cases:
            status, note = self.projects.record(case.image)
            self.entries.append(CaseEntry(case=case, status=status, note=note))
        self.folder_changed.emit()
        self.table.set_entries(self.entries)
        self.current = -1
        self.order = list(range(len(cases)))
        self.start_model()
        self._start_thumbnails()
        self._start_predictions()  # before the window selects the first image (no on-demand job)
        self.second.folder_opened()
        self.cases_opened.emit()
        self.summary_changed.emit()
        return len(cases)

    def _start_thumbnails(self) -> None:
        worker = Worker(thumbnails, list(range(len(self.entries))), [e.case.image for e in self.entries])
        worker.yielded.connect(self._current_folder(self._thumbnail))
        self._start(worker, "Reading the thumbnails")

    def _thumbnail(self, thumb: Thumbnail) -> None:
        if thumb.row >= len(self.entries):
            return
        entry = self.entries[thumb.row]
        if thumb.rgb is not None:
            entry.thumbnail = to_qimage(thumb.rgb)
        elif thumb.error and not entry.error:
            entry.error = thumb.error
            self.image_failed.emit(thumb.row, thumb.error)
        self.table.entry_changed(thumb.row)

    # ------------------------------------------------------------------ predictions
    def _start_predictions(self, rows: Sequence[int] | None = None) -> None:
        """Predict ``rows`` (default: the whole folder) in the background, nearest the current first."""
        if self.cache is None or self.predicting() or self.model_error:
            return
        rows = list(self.order) if rows is None else list(rows)
        if not rows:
            return
        self._queue = FocusQueue(rows)
        cancel_holder: dict = {}

        def get_predictor():
            return self.model.get(cancel_holder.get("event"))

        worker = Worker(predict_cases, [e.case for e in self.entries], self._queue, self.cache,
                        get_predictor, self.threshold)
        cancel_holder["event"] = worker.cancel_event
        worker.yielded.connect(self._current_folder(self._prediction))
        worker.progress.connect(self._current_folder(self.progress.emit))
        worker.errored.connect(self._current_folder(self._prediction_error))
        worker.cancelled.connect(self._current_folder(lambda: self.predictions_done.emit(True)))
        worker.result.connect(self._current_folder(lambda _v: self.predictions_done.emit(False)))
        worker.result.connect(lambda _v: self._prune_cache())
        self._predict_worker = self._start(worker)
        if self.current >= 0:
            self._queue.set_focus(self.current, self.order)

    def resume_predictions(self) -> int:
        """Predict what a cancel left undone; returns how many images that is."""
        rows = [r for r in range(len(self.entries)) if not self.entries[r].predicted and not self.entries[r].error]
        if self.predicting() and self._queue is not None:
            self._queue.add(rows)  # a job is running (e.g. one image on demand): it takes them too
        else:
            self._start_predictions(rows)
        self.second.start_predictions()  # its cached maps come back at once
        return len(rows)

    def _prediction_error(self, exc: BaseException) -> None:
        if isinstance(exc, ModelUnavailable):
            if str(exc) != "cancelled":
                self.predictions_done.emit(True)
            return
        self.notice.emit(f"Background prediction stopped: {describe_error(exc)}", True)
        self.predictions_done.emit(True)

    def predicting(self) -> bool:
        return self._predict_worker is not None and not self._predict_worker.is_done

    def _prune_cache(self) -> None:
        if self.cache is not None:
            self._start(Worker(lambda job, cache: cache.prune(CACHE_MAX_BYTES), self.cache),
                        "Tidying the prediction cache")

    def cancel_predictions(self) -> None:
        if self._predict_worker is not None and not self._predict_worker.is_done:
            self._predict_worker.cancel()
        self.second.cancel()

    def _prediction(self, result: PredictionResult) -> None:
        if result.row >= len(self.entries):
            return
        entry = self.entries[result.row]
        if result.prob is not None:
            entry.prediction_error = ""
            entry.uncertainty = result.uncertainty
            if result.final:
                entry.predicted = True
                entry.scores = result.scores
                entry.confusion = result.confusion
                self._summary_timer.start()
            else:
                self._map_arrived(result.row, result.prob, result.seconds)
        elif result.error:
            if result.image_error:
                if not entry.error:
                    entry.error = result.error
                    self.image_failed.emit(result.row, result.error)
            else:
                entry.prediction_error = result.error
                self.notice.emit(f"{entry.case.image.name}: prediction failed: {result.error}", True)
        self.table.entry_changed(result.row)
        if result.final and result.row == self.current and entry.scores is not None:
            self.entry_scored.emit(result.row)
        self._follow_backend()

    def _follow_backend(self) -> None:
        """Say so when the backend changed during the predictions (a runtime failed: torch took over)."""
        predictor = self.model.predictor
        if predictor is None or not self.device_label:
            return
        line = status_line(predictor, self.device_label)
        if line != self.device_label:
            self.device_label = line
            notice = getattr(predictor, "device_notice", None)
            if notice:
                self.notice.emit(notice, False)
            self.model_ready.emit(self.model_label, line)

    def _map_arrived(self, row: int, prob: np.ndarray, seconds: float | None) -> None:
        entry = self.entries[row]
        entry.seconds = seconds
        self.probs.put(row, prob)
        if seconds is not None:
            self.seconds.append(seconds)
            self.timing_changed.emit(float(np.mean(self.seconds[-20:])))
        images = self.images.get(row)
        if images is not None and images.prob is None:
            try:
                images.set_prob(prob)
            except ValueError as exc:
                entry.prediction_error = str(exc)
            self.images_ready.emit(row)

    # ------------------------------------------------------------------ navigation
    def set_current(self, row: int, order: Sequence[int] | None = None) -> None:
        self.current = row
        if order is not None:
            self.order = list(order)
        if self._queue is not None and row >= 0:
            self._queue.set_focus(row, self.order)
        self.second.focus(row, self.order)
        if row >= 0:
            self._request_images(row)
            entry = self.entries[row]
            if not entry.predicted and not entry.error and not self.predicting():
                self._start_predictions([row])  # after a cancel: this image on demand

    def _neighbours(self, row: int) -> list[int]:
        try:
            pos = self.order.index(row)
        except ValueError:
            return []
        out = []
        for d in PREFETCH:
            if 0 <= pos + d < len(self.order):
                out.append(self.order[pos + d])
        return out

    def _request_images(self, row: int) -> None:
        wanted = [r for r in [row] + self._neighbours(row)
                  if r not in self.images and not self.entries[r].error]
        if row in self.images:
            self.images_ready.emit(row)
        elif self.entries[row].error:
            self.image_failed.emit(row, self.entries[row].error)
        if not wanted:
            return
        if self._loader is not None and not self._loader.is_done:
            if self._loading and self._loading[0] == wanted[0]:
                return  # already decoding it first
            self._loader.cancel()
        self._loading = list(wanted)
        probs = {r: p for r in wanted if (p := self.probs.get(r)) is not None}
        second_probs = {r: p for r in wanted if (p := self.second.probs.get(r)) is not None}
        worker = Worker(load_rows, wanted, [e.case for e in self.entries], probs, self.cache, second_probs,
                        self.second.cache)
        worker.yielded.connect(self._current_folder(self._images_loaded))
        self._loader = self._start(worker, "Opening the image")

    def _images_loaded(self, item) -> None:
        row, images, error = item
        if row >= len(self.entries):
            return
        if images is None:
            self.images.pop(row)  # its preview may have been shown before the full decode failed
            entry = self.entries[row]
            if not entry.error:
                entry.error = error
                self.table.entry_changed(row)
            self.image_failed.emit(row, error)
            return
        prob = self.probs.get(row)
        if images.prob is None and prob is not None:
            try:
                images.set_prob(prob)
            except ValueError:
                pass
        second = self.second.probs.get(row) if self.second.active else None
        if not self.second.active:
            images.set_second_prob(None)  # decoded for a comparison stopped since
        elif images.second_prob is None and second is not None:
            try:
                images.set_second_prob(second)
            except ValueError:
                pass
        self.images.put(row, images)
        if row == self.current:
            self.images_ready.emit(row)

    def current_images(self) -> CaseImages | None:
        return self.images.get(self.current) if self.current >= 0 else None

    # ------------------------------------------------------------------ scores
    def request_scores(self, threshold: float) -> None:
        """Score the current image at ``threshold`` in the background (``current_scores``)."""
        row = self.current
        images = self.current_images()
        if images is None or images.prob is None or images.gt is None:
            return
        worker = Worker(score_at, row, images.prob, images.gt, threshold)
        worker.result.connect(self._current_folder(lambda v: self.current_scores.emit(*v)))
        self._start(worker, "Scoring the image")

    def summary(self):
        from dermaseg_app.core.metrics import summarize

        items = [(e.confusion, e.scores) for e in self.entries
                 if e.scores is not None and e.confusion is not None and e.status != ReviewStatus.EXCLUDED]
        return summarize(items) if items else None

    def per_image_jsc(self) -> list[tuple[int, str, float]]:
        return [(i, e.name, e.scores.jsc) for i, e in enumerate(self.entries)
                if e.scores is not None and e.status != ReviewStatus.EXCLUDED]

    # ------------------------------------------------------------------ review
    def set_status(self, row: int, status: ReviewStatus) -> str:
        """Set and save a status; returns "" or the reason it could not be saved."""
        entry = self.entries[row]
        entry.status = status
        self.table.entry_changed(row)
        self._summary_timer.start()
        return self._save(entry, status=status)

    def set_note(self, row: int, text: str) -> str:
        entry = self.entries[row]
        if entry.note == text:
            return ""
        entry.note = text
        self.table.entry_changed(row)
        return self._save(entry, note=text)

    def _save(self, entry: CaseEntry, status: ReviewStatus | None = None, note: str | None = None) -> str:
        project = self.projects.project_for(entry.case.image)
        if project is None:
            return self.projects.problem_for(entry.case.image) or "no project for this image"
        try:
            if status is not None:
                project.set_status(entry.case.image, status)
            if note is not None:
                project.set_note(entry.case.image, note)
        except (ProjectError, OSError, ValueError) as exc:
            reason = describe_error(exc)
            self.notice.emit(f"Not saved: {reason}", True)
            return reason
        return ""

    def use_project_dir(self, row: int, folder: Path) -> str:
        """Save the project of ``row``'s folder in ``folder`` (after a read-only image folder)."""
        image = self.entries[row].case.image
        self.projects.use_project_dir(image, folder)
        problem = self.projects.problem_for(image)
        if problem:
            return problem
        root = self.projects.root_for(image)
        project = self.projects.project_for(image)
        for entry in self.entries:  # what was set while nothing could be saved, then the stored
            if self.projects.root_for(entry.case.image) != root or project is None:
                continue
            stored = project.record(entry.case.image)
            if entry.status != ReviewStatus.UNREVIEWED or entry.note:
                if stored.status == ReviewStatus.UNREVIEWED and not stored.note:
                    self._save(entry, status=entry.status, note=entry.note)
                    continue
            entry.status, entry.note = stored.status, stored.note
        self.table.all_changed()
        return ""

    # ------------------------------------------------------------------ closing
    def stop_background(self, wait: bool = True, timeout: float = 5.0) -> bool:
        """Cancel all background work; with ``wait``, block until it has stopped (True) or timed out."""
        for worker in list(self.workers):
            if worker is not self._model_worker:
                worker.cancel()
        if not wait:
            return True
        deadline = time.monotonic() + timeout
        ok = True
        for worker in list(self.workers):
            if worker is self._model_worker:
                continue
            ok &= worker.wait(max(0.0, deadline - time.monotonic()))
        return ok

    def model_loading(self) -> bool:
        """True while the model is still being loaded (torch importing); it cannot be interrupted."""
        return self._model_worker is not None and not self._model_worker.is_done

    def wait_for_model(self, timeout: float) -> bool:
        return self._model_worker is None or self._model_worker.wait(timeout)

    def shutdown(self, timeout: float = 5.0) -> bool:
        self._closing = True
        self.model.fail(self.model.error or "closing")
        ok = self.stop_background(wait=True, timeout=timeout)
        self.pool.waitForDone(int(max(0.0, timeout) * 1000))
        return ok

"""The compared (second) model of the review session (issue 18): its maps, predicted in the
background nearest the current image first and cached like the primary model's, the
disagreement of its mask with the primary model's per image, and the ensemble's verdict.

The session owns one ``SecondModel`` and tells it when a folder opens, the current image moves
or the primary model changes; the window reads ``label``, ``threshold`` and ``verdict`` and listens
to ``changed`` and ``verdict_changed``. The work itself is Qt-free (``app.prediction`` and
``app.ensemble``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal

from dermaseg_app.app.ensemble import EnsembleHeader, EnsembleVerdict, measure_on_caches
from dermaseg_app.app.prediction import FocusQueue, PredictionResult, disagreements, predict_second
from dermaseg_app.core.prediction_cache import PredictionCache
from dermaseg_app.gui.lru import LRU
from dermaseg_app.gui.model_slot import ModelSlot, ModelUnavailable, load_predictor
from dermaseg_app.gui.workers import Worker, describe_error
from dermaseg_app.ml.header import ModelHeader, ModelHeaderError, read_model_header

PROB_CACHE_SIZE = 16


class SecondModel(QObject):
    changed = Signal()  # chosen, loaded, failed or cleared: labels, the list's column, the menu
    verdict_changed = Signal(object)  # app.ensemble.EnsembleVerdict, or None when not measured

    def __init__(self, session) -> None:
        super().__init__(session)
        self.session = session
        self.path: Path | None = None
        self.header: ModelHeader | None = None
        self.cache: PredictionCache | None = None
        self.slot = ModelSlot()
        self.error = ""
        self.loaded = False
        self.probs: LRU[int, np.ndarray] = LRU(PROB_CACHE_SIZE)
        self.verdict: EnsembleVerdict | None = None
        self._queue: FocusQueue | None = None
        self._worker: Worker | None = None
        self._loader: Worker | None = None
        self._generation = 0  # bumped when the model or the folder changes: older results are dropped
        self._model_generation = 0  # bumped when the model changes: an older loader's result is dropped

    # ------------------------------------------------------------------ state
    @property
    def active(self) -> bool:
        return self.path is not None and self.header is not None

    @property
    def threshold(self) -> float:
        return self.header.threshold if self.header is not None else 0.5

    @property
    def label(self) -> str:
        return self.header.label if self.header is not None else ""

    def _guard(self, slot, model_only: bool = False):
        generation, model_generation = self._generation, self._model_generation

        def guarded(*args):
            if model_generation == self._model_generation and (model_only or generation == self._generation):
                slot(*args)

        return guarded

    # ------------------------------------------------------------------ choosing
    def use(self, path: Path) -> bool:
        """Compare with the model in ``path``; False (and a notice) when it cannot be read."""
        self.clear(emit=False)
        try:
            header = read_model_header(path)
        except ModelHeaderError as exc:
            self.session.notice.emit(f"The model to compare with cannot be used: {exc}", True)
            self.changed.emit()
            return False
        self.path, self.header = Path(path), header
        self.cache = PredictionCache(header.cache_key(), root=self.session.cache_root)
        worker = Worker(load_predictor, self.path, self.session.device)
        worker.result.connect(self._guard(self._loaded, model_only=True))
        worker.errored.connect(self._guard(lambda exc: self._failed(f"The model to compare with cannot be "
                                                                    f"loaded: {describe_error(exc)}"), model_only=True))
        self._loader = worker.start_daemon("dermaseg-second-model-loader")  # not cancellable (torch)
        self.changed.emit()
        self.start_predictions()
        return True

    def clear(self, emit: bool = True) -> None:
        """Stop comparing: the second contour and the disagreements go."""
        self.cancel()
        self._generation += 1
        self._model_generation += 1
        self.slot.fail("no longer compared")
        self.slot = ModelSlot()
        self.path = self.header = self.cache = None
        self.error, self.loaded = "", False
        self._set_verdict(None)
        self._forget_maps()
        if emit:
            self.changed.emit()

    def _forget_maps(self) -> None:
        self.probs.clear()
        for images in self.session.images.values():
            images.set_second_prob(None)
        for entry in self.session.entries:
            entry.disagreement = None
        self.session.table.all_changed()
        if self.session.current >= 0:
            self.session.images_ready.emit(self.session.current)

    def _loaded(self, value) -> None:
        predictor, _device = value
        self.slot.set(predictor)
        self.loaded = True
        self.changed.emit()

    def _failed(self, reason: str) -> None:
        self.error = reason
        self.slot.fail(reason)
        self.session.notice.emit(reason, True)
        self.changed.emit()

    # ------------------------------------------------------------------ the session's events
    def folder_opened(self) -> None:
        """Other images: their maps (from the cache or predicted) follow."""
        self.cancel()
        self._generation += 1
        self.probs.clear()
        self._set_verdict(None)
        self.start_predictions()

    def primary_switched(self) -> None:
        """The primary model changed: the disagreements are measured again once it has predicted."""
        for entry in self.session.entries:
            entry.disagreement = None
        if not isinstance(self.session.header, EnsembleHeader):
            self._set_verdict(None)
        self.session.table.all_changed()

    def primary_done(self) -> None:
        self._fill_disagreements()
        self._measure()

    def focus(self, row: int, order: Sequence[int]) -> None:
        if self._queue is not None and row >= 0:
            self._queue.set_focus(row, order)

    def cancel(self) -> None:
        if self._worker is not None and not self._worker.is_done:
            self._worker.cancel()

    def predicting(self) -> bool:
        return self._worker is not None and not self._worker.is_done

    # ------------------------------------------------------------------ predictions
    def start_predictions(self, rows: Sequence[int] | None = None) -> None:
        s = self.session
        if not self.active or self.cache is None or self.error or not s.entries or self.predicting():
            return
        rows = list(s.order) if rows is None else list(rows)
        self._queue = FocusQueue(rows)
        holder: dict = {}
        slot = self.slot

        def get_predictor():
            return slot.get(holder.get("event"))

        worker = Worker(predict_second, [e.case for e in s.entries], self._queue, self.cache, get_predictor,
                        self.threshold, lambda: (s.cache, s.threshold))
        holder["event"] = worker.cancel_event
        worker.yielded.connect(self._guard(self._result))
        worker.errored.connect(self._guard(self._job_failed))
        worker.result.connect(self._guard(lambda _v: self._job_done()))
        self._worker = s._start(worker)
        if s.current >= 0:
            self._queue.set_focus(s.current, s.order)

    def _job_failed(self, exc: BaseException) -> None:
        if isinstance(exc, ModelUnavailable):
            return  # the loader says why
        self.session.notice.emit(f"The compared model's predictions stopped: {describe_error(exc)}", True)

    def _job_done(self) -> None:
        self._fill_disagreements()
        self._measure()

    def _result(self, result: PredictionResult) -> None:
        s = self.session
        if result.row >= len(s.entries) or result.prob is None:
            return
        if not result.final:
            self.probs.put(result.row, result.prob)
            images = s.images.get(result.row)
            if images is not None and images.second_prob is None:
                try:
                    images.set_second_prob(result.prob)
                except ValueError:
                    return
                if result.row == s.current:
                    s.images_ready.emit(result.row)
            return
        if result.disagreement is not None:
            self._set_disagreement(result.row, result.disagreement)

    def _set_disagreement(self, row: int, value: float) -> None:
        if row < len(self.session.entries):
            self.session.entries[row].disagreement = value
            self.session.table.entry_changed(row)

    def _fill_disagreements(self) -> None:
        s = self.session
        if not self.active or self.cache is None or s.cache is None or s.predicting() or self.predicting():
            return
        rows = [r for r, e in enumerate(s.entries) if e.disagreement is None and not e.error]
        if not rows:
            return
        worker = Worker(disagreements, rows, [e.case for e in s.entries], s.cache, s.threshold, self.cache,
                        self.threshold)
        worker.yielded.connect(self._guard(lambda item: self._set_disagreement(*item)))
        s._start(worker, "Measuring the disagreement")

    # ------------------------------------------------------------------ the ensemble's verdict
    def _measure(self) -> None:
        """Score both models and their ensemble on the folder's ground truth, once both have
        predicted it (the ensemble as the primary model keeps the verdict measured before)."""
        s = self.session
        if (not self.active or self.cache is None or s.cache is None or s.predicting() or self.predicting()
                or isinstance(s.header, EnsembleHeader)):
            return
        cases = [e.case for e in s.entries if e.case.ground_truth is not None and not e.error]
        if not cases:
            self._set_verdict(None)
            return
        worker = Worker(measure_on_caches, cases, s.cache, self.cache, s.threshold, self.threshold)
        worker.result.connect(self._guard(self._set_verdict))
        s._start(worker, "Scoring the ensemble")

    def _set_verdict(self, verdict: EnsembleVerdict | None) -> None:
        self.verdict = verdict
        self.verdict_changed.emit(verdict)

"""Predict a folder in the background, the images nearest the current one first (no Qt here).

``predict_cases`` is a generator a ``workers.Worker`` drives. Each image's probability map comes
from the prediction cache when it is there, otherwise from the network (loaded by ``get_predictor``,
which may block until the model is ready) and is then cached. For each image it yields a
``PredictionResult`` with the map (8-bit), the scores against the ground truth at the model's
threshold, the border uncertainty, and the time the network took.

``FocusQueue`` holds the rows still to do; the GUI thread moves its focus as the user navigates.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dermaseg_app.core.dataset import Case
from dermaseg_app.core.metrics import border_uncertainty, threshold_u8
from dermaseg_app.core.prediction_cache import PredictionCache, quantize


@dataclass
class PredictionResult:
    row: int
    prob: np.ndarray | None  # HxW uint8 (probability * 255) at the image's size
    error: str = ""  # why there is no map (unreadable image, failed network)
    image_error: bool = False  # the image itself cannot be read
    seconds: float | None = None  # network time; None when the map came from the cache
    scores: Any = None  # core.metrics.Scores at the model's threshold, with ground truth
    confusion: Any = None
    uncertainty: float | None = None
    gt_problem: str = ""
    final: bool = True  # False: the map only, its scores follow in a second result
    disagreement: float | None = None  # predict_second: with the primary model's mask (core.metrics)


class FocusQueue:
    """Rows still to predict; ``take()`` returns the one nearest the focus in the view's order."""

    def __init__(self, rows: Sequence[int]) -> None:
        self._lock = threading.Lock()
        self._pending = set(rows)
        self._position: dict[int, int] = {r: i for i, r in enumerate(rows)}
        self._focus = rows[0] if rows else 0
        self.total = len(self._pending)

    def set_focus(self, row: int, order: Sequence[int] | None = None) -> None:
        with self._lock:
            self._focus = row
            if order is not None:
                self._position = {r: i for i, r in enumerate(order)}

    def take(self) -> int | None:
        with self._lock:
            if not self._pending:
                return None
            far = len(self._position) + 1
            centre = self._position.get(self._focus, 0)
            best = min(self._pending,
                       key=lambda r: (abs(self._position.get(r, far) - centre), self._position.get(r, far) < centre, r))
            self._pending.discard(best)
            return best

    def add(self, rows: Sequence[int]) -> int:
        """Queue more rows (a running job picks them up); returns how many were new."""
        with self._lock:
            new = set(rows) - self._pending
            self._pending |= new
            self.total += len(new)
            return len(new)

    def remaining(self) -> int:
        with self._lock:
            return len(self._pending)


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return reason if isinstance(reason, str) and reason else (str(exc) or type(exc).__name__)


def score_against_truth(prob_u8: np.ndarray, case: Case, threshold: float) -> tuple[Any, Any, str]:
    """(Scores, Confusion, problem) of the map cut at ``threshold`` against the case's ground truth."""
    if case.ground_truth is None:
        return None, None, ""
    from dermaseg_app.core.imageio import read_mask
    from dermaseg_app.core.metrics import score_with_confusion

    try:
        gt = read_mask(case.ground_truth)
    except Exception as exc:  # noqa: BLE001
        return None, None, f"ground truth {case.ground_truth.name} cannot be read: {_reason(exc)}"
    pred = threshold_u8(prob_u8, threshold)
    if gt.shape != pred.shape:
        return None, None, (f"ground truth {case.ground_truth.name} is {gt.shape[1]}x{gt.shape[0]}, "
                            f"the image {pred.shape[1]}x{pred.shape[0]}")
    conf, scores = score_with_confusion(pred, gt)
    return scores, conf, ""


def score_at(job: Any, row: int, prob: np.ndarray, gt: np.ndarray, threshold: float) -> tuple[int, float, Any]:
    """Score one map at another threshold (a ``workers.Worker`` function): (row, threshold, Scores)."""
    from dermaseg_app.core.metrics import score

    return row, threshold, score(threshold_u8(prob, threshold), gt)


def predict_cases(
    job: Any,
    cases: Sequence[Case],
    queue: FocusQueue,
    cache: PredictionCache,
    get_predictor: Callable[[], Any],
    threshold: float,
) -> Iterator[PredictionResult]:
    """Yield, per image, first the map as soon as it exists (``final`` False: the window draws it
    at once), then the finished result with the scores (``final`` True; progress counts these)."""
    done = 0
    job.progress(0, queue.total)
    while not job.cancelled:
        row = queue.take()
        if row is None:
            break
        case = cases[row]
        result = PredictionResult(row, None)
        try:
            prob = cache.load_u8(case.image)
            fresh = False
            if prob is None:
                from dermaseg_app.core.imageio import read_image

                try:
                    rgb = read_image(case.image)
                except Exception as exc:  # noqa: BLE001 - listed with its reason
                    result.error, result.image_error = _reason(exc), True
                    rgb = None
                if rgb is not None:
                    predictor = get_predictor()
                    if job.cancelled:
                        break
                    t0 = time.perf_counter()
                    prediction = predictor.predict(rgb)
                    result.seconds = time.perf_counter() - t0
                    prob = quantize(prediction.prob)
                    fresh = True
            if prob is not None:
                result.prob = prob
                result.uncertainty = border_uncertainty(prob, threshold)
                yield PredictionResult(row, prob, seconds=result.seconds, uncertainty=result.uncertainty,
                                       final=False)
                if fresh:
                    try:
                        cache.store(case.image, prob)
                    except (OSError, ValueError):
                        pass  # a full or read-only cache only costs speed next time
                result.scores, result.confusion, result.gt_problem = score_against_truth(prob, case, threshold)
        except Exception as exc:
            if getattr(exc, "fatal", False):
                raise
            result.error = _reason(exc)
        done += 1
        job.progress(done, queue.total)
        yield result
    return done


def map_disagreement(prob_a: np.ndarray, threshold_a: float, prob_b: np.ndarray, threshold_b: float) -> float | None:
    """``core.metrics.disagreement`` of two 8-bit maps, each cut at its model's threshold (None
    when their sizes differ)."""
    from dermaseg_app.core.metrics import disagreement

    if prob_a.shape != prob_b.shape:
        return None
    return disagreement(threshold_u8(prob_a, threshold_a), threshold_u8(prob_b, threshold_b))


def predict_second(job: Any, cases: Sequence[Case], queue: FocusQueue, cache: PredictionCache,
                   get_predictor: Callable[[], Any], threshold: float,
                   primary: Callable[[], tuple[PredictionCache | None, float]]) -> Iterator[PredictionResult]:
    """``predict_cases`` for a second (compared) model; each finished result also carries the
    disagreement with the primary model's mask (``primary()``: its cache and threshold now) when
    that map is cached already (else None: ``disagreements`` fills it in later)."""
    for result in predict_cases(job, cases, queue, cache, get_predictor, threshold):
        primary_cache, primary_threshold = primary()
        if result.final and result.prob is not None and primary_cache is not None:
            prob_a = primary_cache.load_u8(cases[result.row].image)
            if prob_a is not None:
                result.disagreement = map_disagreement(prob_a, primary_threshold, result.prob, threshold)
        yield result


def disagreements(job: Any, rows: Sequence[int], cases: Sequence[Case], cache_a: PredictionCache, threshold_a: float,
                  cache_b: PredictionCache, threshold_b: float) -> Iterator[tuple[int, float]]:
    """(row, disagreement) for each row whose two maps are both cached (a ``workers.Worker``
    generator; nothing is predicted)."""
    for row in rows:
        if job.cancelled:
            return
        a, b = cache_a.load_u8(cases[row].image), cache_b.load_u8(cases[row].image)
        if a is not None and b is not None:
            value = map_disagreement(a, threshold_a, b, threshold_b)
            if value is not None:
                yield row, value

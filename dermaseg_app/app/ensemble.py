"""Two models together (issue 18): their ensemble, and whether it is worth offering. No Qt.

The ensemble of models A and B is the **mean of their probability maps at the image's size** (each
model resizes its own output to the image, so models of different input sizes combine), cut at
the **mean of the two models' thresholds**. (The mean threshold keeps the ensemble's operating
point between the two the models were tuned at; cutting at 0.5 would favour whichever model was
tuned nearer 0.5.)

**The rule** (``EnsembleVerdict.better``): the ensemble is offered only when its mean JSC over the
images with ground truth is strictly higher than each model's own mean JSC (each model at its own
threshold), on at least one image. ``dermaseg evaluate DIR --model A --ensemble-with B`` prints the
three scores and the verdict; the window measures them on the open folder when it has ground
truth (``measure_on_caches``: the maps both models already drew, nothing predicted again).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dermaseg_app.core.dataset import Case
from dermaseg_app.core.metrics import Scores, confusion
from dermaseg_app.core.prediction_cache import ModelKey, PredictionCache
from dermaseg_app.ml.header import ModelHeader


def as_probability(prob: np.ndarray) -> np.ndarray:
    """A probability map as float32 in [0, 1] (8-bit maps, probability * 255, are scaled)."""
    arr = np.asarray(prob)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    return arr.astype(np.float32, copy=False)


def mean_probability(prob_a: np.ndarray, prob_b: np.ndarray) -> np.ndarray:
    """The ensemble's map: the mean of two maps of the same (image) size, float32."""
    a, b = as_probability(prob_a), as_probability(prob_b)
    if a.shape != b.shape:
        raise ValueError(f"the two models' maps differ in size: {a.shape} and {b.shape}")
    return (a + b) * np.float32(0.5)


def ensemble_threshold(threshold_a: float, threshold_b: float) -> float:
    return (float(threshold_a) + float(threshold_b)) / 2.0


class EnsemblePredictor:
    """Two loaded ``ml.predictor.Predictor`` as one: ``predict(rgb)`` runs both and returns the
    mean of their maps cut at the mean threshold (an ``ml.predictor.Prediction``)."""

    def __init__(self, a: Any, b: Any) -> None:
        self.a, self.b = a, b
        self.threshold = ensemble_threshold(a.threshold, b.threshold)
        self.device = a.device
        self.info = EnsembleInfo(a.info.label(), b.info.label())
        notices = [n for n in (getattr(a, "device_notice", None), getattr(b, "device_notice", None)) if n]
        self.device_notice = "; ".join(dict.fromkeys(notices)) or None

    @property
    def backend_label(self) -> str:
        return self.a.backend_label

    def predict(self, rgb: np.ndarray, threshold: float | None = None) -> Any:
        from dermaseg_app.ml.predictor import Prediction

        prob = mean_probability(self.a.predict(rgb).prob, self.b.predict(rgb).prob)
        t = self.threshold if threshold is None else float(threshold)
        return Prediction(prob, prob >= t, t)


@dataclass(frozen=True)
class EnsembleInfo:
    label_a: str
    label_b: str

    def label(self) -> str:
        return f"Ensemble ({self.label_a} + {self.label_b})"


@dataclass(frozen=True)
class EnsembleHeader:
    """The ensemble's identity, as ``ml.header.ModelHeader`` gives a model's (what the window
    shows, and the prediction cache's key: the two models' keys together)."""

    a: ModelHeader
    b: ModelHeader

    @property
    def path(self) -> Path:
        return self.a.path

    @property
    def name(self) -> str:
        return f"ensemble({self.a.name}+{self.b.name})"

    @property
    def version(self) -> str:
        return f"{self.a.version}+{self.b.version}"

    @property
    def threshold(self) -> float:
        return ensemble_threshold(self.a.threshold, self.b.threshold)

    @property
    def label(self) -> str:
        return f"Ensemble ({self.a.label} + {self.b.label})"

    @property
    def interim(self) -> bool:
        return self.a.interim or self.b.interim

    def cache_key(self) -> ModelKey:
        ka, kb = self.a.cache_key(), self.b.cache_key()
        return ModelKey(self.name, self.version, f"{ka.fingerprint}+{kb.fingerprint}")


@dataclass(frozen=True)
class EnsembleVerdict:
    """Mean JSC of model A, model B and their ensemble over ``n`` images with ground truth."""

    n: int
    jsc_a: float
    jsc_b: float
    jsc_ensemble: float

    @property
    def better(self) -> bool:
        """The rule: offered only when the ensemble beats both models (strictly), on >= 1 image."""
        return self.n > 0 and self.jsc_ensemble > max(self.jsc_a, self.jsc_b)

    def describe(self, label_a: str = "A", label_b: str = "B") -> str:
        if self.n == 0:
            return "no image with ground truth and both models' masks: the ensemble cannot be measured"
        verdict = "higher than both: offered" if self.better else "not higher than both: not offered"
        return (f"mean JSC on {self.n} image(s) with ground truth: {label_a} {100 * self.jsc_a:.1f}%, "
                f"{label_b} {100 * self.jsc_b:.1f}%, ensemble {100 * self.jsc_ensemble:.1f}% ({verdict})")


def _jsc(mask: np.ndarray, gt: np.ndarray) -> float:
    return Scores.from_confusion(confusion(mask, gt)).jsc


def image_jscs(prob_a: np.ndarray, prob_b: np.ndarray, gt: np.ndarray, threshold_a: float,
               threshold_b: float) -> tuple[float, float, float]:
    """(JSC of A, of B, of the ensemble) on one image, each at its threshold."""
    a, b = as_probability(prob_a), as_probability(prob_b)
    ens = mean_probability(a, b)
    t = ensemble_threshold(threshold_a, threshold_b)
    return _jsc(a >= threshold_a, gt), _jsc(b >= threshold_b, gt), _jsc(ens >= t, gt)


def verdict_from_scores(rows: Sequence[tuple[float, float, float]]) -> EnsembleVerdict:
    if not rows:
        return EnsembleVerdict(0, 0.0, 0.0, 0.0)
    arr = np.asarray(rows, dtype=np.float64)
    return EnsembleVerdict(len(rows), float(arr[:, 0].mean()), float(arr[:, 1].mean()), float(arr[:, 2].mean()))


def verdict(items: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], threshold_a: float,
            threshold_b: float) -> EnsembleVerdict:
    """The verdict over (map of A, map of B, ground truth) per image."""
    return verdict_from_scores([image_jscs(a, b, gt, threshold_a, threshold_b) for a, b, gt in items])


def measure_on_caches(job: Any, cases: Sequence[Case], cache_a: PredictionCache, cache_b: PredictionCache,
                      threshold_a: float, threshold_b: float) -> EnsembleVerdict:
    """The verdict on the cases with ground truth whose maps both caches hold (a
    ``workers.Worker`` function: the window's measurement; nothing is predicted)."""
    from dermaseg_app.core.imageio import read_mask

    rows = []
    for case in cases:
        if job is not None and job.cancelled:
            break
        if case.ground_truth is None:
            continue
        a, b = cache_a.load_u8(case.image), cache_b.load_u8(case.image)
        if a is None or b is None:
            continue
        try:
            gt = read_mask(case.ground_truth)
        except Exception:  # noqa: BLE001 - an unreadable mask is left out (the list says why)
            continue
        if gt.shape != a.shape or a.shape != b.shape:
            continue
        rows.append(image_jscs(a, b, gt, threshold_a, threshold_b))
    return verdict_from_scores(rows)


@dataclass(frozen=True)
class EnsembleRow:
    image: Path
    jsc_a: float
    jsc_b: float
    jsc_ensemble: float


def evaluate_ensemble(cases: Sequence[Case], predictor_a: Any, predictor_b: Any,
                      on_row: Callable[[EnsembleRow], None] | None = None,
                      on_skip: Callable[[Path, str], None] | None = None) -> EnsembleVerdict:
    """Predict each case with ground truth with both models and score A, B and the ensemble
    (``dermaseg evaluate --ensemble-with``); ``on_row`` sees each image's scores, ``on_skip`` each
    image left out and why."""
    from dermaseg_app.core.imageio import read_image, read_mask

    rows = []
    for case in cases:
        if case.ground_truth is None:
            continue
        try:
            rgb = read_image(case.image)
            gt = read_mask(case.ground_truth)
        except Exception as exc:  # noqa: BLE001 - reported, the others go on
            if on_skip is not None:
                on_skip(case.image, str(getattr(exc, "reason", "") or exc))
            continue
        if gt.shape != rgb.shape[:2]:
            if on_skip is not None:
                on_skip(case.image, f"mask {gt.shape[1]}x{gt.shape[0]} differs from the image "
                                    f"{rgb.shape[1]}x{rgb.shape[0]}")
            continue
        scores = image_jscs(predictor_a.predict(rgb).prob, predictor_b.predict(rgb).prob, gt,
                            predictor_a.threshold, predictor_b.threshold)
        rows.append(scores)
        if on_row is not None:
            on_row(EnsembleRow(case.image, *scores))
    return verdict_from_scores(rows)

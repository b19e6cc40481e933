"""The background prediction job and its nearest-first queue (no Qt needed)."""

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from dermaseg_app.app.prediction import FocusQueue, predict_cases
from dermaseg_app.core.dataset import Case
from dermaseg_app.core.prediction_cache import ModelKey, PredictionCache


class _Job:
    def __init__(self) -> None:
        self.cancel_event = threading.Event()
        self.reports: list[tuple[int, int]] = []

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def progress(self, done: int, total: int) -> None:
        self.reports.append((done, total))


def test_focus_queue_takes_nearest_first() -> None:
    q = FocusQueue(list(range(10)))
    q.set_focus(5)
    assert q.take() == 5
    assert {q.take(), q.take()} == {4, 6}
    q.set_focus(0)
    assert q.take() == 0
    # the view's order (e.g. sorted by a metric) decides what "near" means
    q.set_focus(9, order=[9, 1, 2, 8, 3, 4, 5, 6, 7, 0])
    assert [q.take(), q.take(), q.take()] == [9, 1, 2]
    assert q.remaining() == 3  # 8, 3, 7 are left
    assert sorted(iter(q.take, None)) == [3, 7, 8]
    assert q.take() is None


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    import torch

    from dermaseg_app.ml.predictor import Predictor
    from dermaseg_app.ml.registry import build_generator
    from dermaseg_app.ml.weights import ModelInfo, save_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("m") / "m.safetensors"
    save_model(path, build_generator("slsnet", {"input_size": 32}),
               ModelInfo(name="job-test", version="1", arch="slsnet", config={"input_size": 32}, input_size=32))
    return Predictor(path, "cpu")


def test_predict_cases_predicts_caches_scores_and_reports_bad_files(tmp_path: Path, predictor) -> None:
    rng = np.random.default_rng(0)
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
    gt = tmp_path / "a_mask.png"
    m = np.zeros((40, 50), np.uint8)
    m[10:30, 10:40] = 255
    cv2.imwrite(str(gt), m)
    bad = tmp_path / "b.jpg"
    bad.write_bytes(b"not an image")
    cases = [Case(img, gt, "a"), Case(bad, None, "b")]
    cache = PredictionCache(ModelKey("job-test", "1"), root=tmp_path / "cache")
    job = _Job()
    results = list(predict_cases(job, cases, FocusQueue([0, 1]), cache, lambda: predictor, 0.5))
    # the map comes first (drawn at once), its scores follow; an unreadable file gives one result
    assert [(r.row, r.final) for r in results] == [(0, False), (0, True), (1, True)]
    early, ok, broken = results
    assert early.prob is not None and early.scores is None and early.seconds is not None
    assert ok.prob is not None and ok.prob.shape == (40, 50) and ok.prob.dtype == np.uint8
    assert ok.seconds is not None and ok.scores is not None and ok.confusion is not None
    assert ok.uncertainty is not None and 0 <= ok.uncertainty <= 1
    assert broken.prob is None and broken.image_error and broken.error
    assert job.reports[-1] == (2, 2)
    assert cache.load_u8(img) is not None
    # again: from the cache, the network is not needed
    again = list(predict_cases(_Job(), cases[:1], FocusQueue([0]), cache,
                               lambda: (_ for _ in ()).throw(AssertionError("network used")), 0.5))
    assert again[-1].seconds is None and np.array_equal(again[-1].prob, ok.prob)
    assert again[-1].scores == ok.scores


def test_predict_cases_stops_when_cancelled(tmp_path: Path, predictor) -> None:
    rng = np.random.default_rng(1)
    cases = []
    for i in range(5):
        p = tmp_path / f"{i}.png"
        cv2.imwrite(str(p), rng.integers(0, 255, (20, 20, 3), dtype=np.uint8))
        cases.append(Case(p, None, str(i)))
    job = _Job()
    cache = PredictionCache(ModelKey("job-test", "1"), root=tmp_path / "cache")
    gen = predict_cases(job, cases, FocusQueue(list(range(5))), cache, lambda: predictor, 0.5)
    first = next(gen)
    job.cancel_event.set()
    rest = list(gen)
    assert first.prob is not None and len(rest) <= 1  # at most the first image's scores

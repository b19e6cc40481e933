"""Predictor: any image size in, a prediction at that size out; streaming files; device choice."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dermaseg_app import paths
from dermaseg_app.core.imageio import read_image
from dermaseg_app.ml.device import DeviceError, choose_device, device_description
from dermaseg_app.ml.predictor import Prediction, Predictor
from dermaseg_app.ml.preprocessing import preprocess
from dermaseg_app.ml.registry import build_generator, default_config
from dermaseg_app.ml.weights import ModelInfo, WeightsError, save_model

SIZE = 32
SMALL = {"encoder_channels": [24, 32, 64], "decoder_channels": [32, 16], "stage2_dilations": [2, 4]}


def write_random_model(folder: Path, size: int = SIZE, small: bool = True, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    config = dict(default_config("slsnet"), input_size=size, **(SMALL if small else {}))
    info = ModelInfo(name="random", version="0", arch="slsnet", config=config, input_size=size, threshold=0.5)
    return save_model(folder / f"random{size}.safetensors", build_generator("slsnet", config), info)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return write_random_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def predictor(model_path) -> Predictor:
    return Predictor(model_path, device="cpu")


@pytest.fixture(scope="module")
def sample(samples_dir) -> np.ndarray:
    return read_image(samples_dir / "ISIC_0000169.jpg")  # 722 x 542, the smallest


class CountingNetwork(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def test_prediction_has_the_original_size(predictor, sample):
    prediction = predictor.predict(sample)
    assert prediction.prob.shape == sample.shape[:2] == prediction.mask.shape
    assert prediction.prob.dtype == np.float32 and prediction.mask.dtype == bool
    assert 0.0 <= prediction.prob.min() and prediction.prob.max() <= 1.0
    assert np.array_equal(prediction.mask, prediction.prob >= 0.5)
    assert prediction.threshold == 0.5
    assert predictor.info.name == "random" and predictor.input_size == SIZE


def test_threshold_changes_without_running_the_network(predictor, sample, monkeypatch):
    counting = CountingNetwork(predictor.network)
    monkeypatch.setattr(predictor, "network", counting)
    prediction = predictor.predict(sample)
    assert counting.calls == 1
    for t in (0.2, float(np.median(prediction.prob)), 0.9):
        other = prediction.with_threshold(t)
        assert other.threshold == t
        assert other.prob is prediction.prob
        assert np.array_equal(other.mask, prediction.prob >= t)
    assert counting.calls == 1
    with pytest.raises(ValueError):
        prediction.with_threshold(1.5)


def test_threshold_argument_and_model_default(model_path, sample):
    low = Predictor(model_path, device="cpu", threshold=0.25).predict(sample)
    assert low.threshold == 0.25 and np.array_equal(low.mask, low.prob >= 0.25)
    with pytest.raises(ValueError):
        Predictor(model_path, device="cpu", threshold=0.0)


@pytest.mark.parametrize("shape", [(50, 130), (130, 50), (SIZE, SIZE), (7, 9), (300, 301)])
def test_non_square_and_small_images(predictor, shape):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    prediction = predictor.predict(image)
    assert prediction.prob.shape == shape == prediction.mask.shape


def test_image_at_input_size_is_the_raw_network_output(predictor):
    image = np.random.default_rng(2).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    with torch.inference_mode():
        direct = predictor.network(torch.from_numpy(preprocess(image, SIZE))[None])[0, 0].numpy()
    np.testing.assert_allclose(predictor.predict(image).prob, direct, atol=1e-6)


def test_inference_network_matches_the_loaded_model(predictor, model_path):
    from dermaseg_app.ml.weights import load_model

    plain, _ = load_model(model_path)
    for module in plain.modules():  # non-trivial BatchNorm statistics, so that folding matters
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    from dermaseg_app.ml.predictor import _inference_network

    fast = _inference_network(plain)
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), plain(x), atol=1e-5, rtol=1e-4)


def test_batch_matches_single_predictions(predictor, sample):
    images = [sample, sample[:200, :300], np.ascontiguousarray(sample[::-1])]
    batch = predictor.predict_batch(images)
    assert [p.prob.shape for p in batch] == [i.shape[:2] for i in images]
    for image, from_batch in zip(images, batch, strict=True):
        np.testing.assert_allclose(predictor.predict(image).prob, from_batch.prob, atol=1e-5)
    assert predictor.predict_batch([]) == []


def test_grey_and_rgba_files_through_core(predictor, sample, tmp_path):
    grey = cv2.cvtColor(sample, cv2.COLOR_RGB2GRAY)
    rgba = np.dstack([sample, np.full(sample.shape[:2], 255, np.uint8)])
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    cv2.imwrite(str(tmp_path / "rgba.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    cv2.imwrite(str(tmp_path / "grey16.png"), grey.astype(np.uint16) * 257)
    for name in ("grey.png", "rgba.png", "grey16.png"):
        prediction = predictor.predict(read_image(tmp_path / name))
        assert prediction.prob.shape == sample.shape[:2]
    # arrays straight in: HxW grey and HxWx4 RGBA give the same as their RGB forms
    np.testing.assert_allclose(predictor.predict(grey).prob,
                               predictor.predict(np.dstack([grey] * 3)).prob, atol=1e-6)
    np.testing.assert_allclose(predictor.predict(rgba).prob, predictor.predict(sample).prob, atol=1e-6)


def test_contours_follow_the_mask(predictor):
    prob = np.zeros((40, 60), np.float32)
    prob[10:30, 20:50] = 0.9
    prediction = Prediction(prob, prob >= 0.5, 0.5)
    outlines = prediction.contours()
    assert len(outlines) == 1
    xs, ys = outlines[0][:, 0], outlines[0][:, 1]
    assert 19 <= xs.min() <= 20.5 and 49.5 <= xs.max() <= 50.5
    assert 9 <= ys.min() <= 10.5 and 29.5 <= ys.max() <= 30.5
    assert Prediction(prob * 0, prob * 0 > 1, 0.5).contours() == []


def _files(samples_dir: Path, tmp_path: Path, n: int) -> list[Path]:
    source = samples_dir / "ISIC_0000169.jpg"
    out = []
    for i in range(n):
        target = tmp_path / f"img{i}.jpg"
        shutil.copyfile(source, target)
        out.append(target)
    return out


def test_predict_files_reports_a_corrupt_file_and_goes_on(predictor, samples_dir, tmp_path):
    good = _files(samples_dir, tmp_path, 2)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 10)
    missing = tmp_path / "missing.png"
    seen: list[tuple[int, int]] = []
    results = list(predictor.predict_files([good[0], corrupt, missing, good[1]], batch_size=2,
                                           progress=lambda done, total: seen.append((done, total))))
    assert [r.path for r in results] == [good[0], corrupt, missing, good[1]]
    assert [r.ok for r in results] == [True, False, False, True]
    assert results[1].error and results[1].prediction is None
    assert results[2].error and "exist" in results[2].error
    assert results[0].prediction.prob.shape == (542, 722)
    assert results[0].seconds > 0 and set(results[0].timings) == {"decode", "preprocess", "network", "postprocess"}
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_predict_files_matches_predict(predictor, samples_dir, tmp_path):
    files = _files(samples_dir, tmp_path, 1)
    png = tmp_path / "img.png"
    cv2.imwrite(str(png), cv2.imread(str(files[0])))
    (result,) = predictor.predict_files([png])  # a PNG is decoded whole: the very same input
    np.testing.assert_allclose(result.prediction.prob, predictor.predict(read_image(png)).prob, atol=1e-6)
    # a JPEG is decoded reduced for the network (tests/test_reduced_decode.py): nearly the same
    (result,) = predictor.predict_files(files)
    whole = predictor.predict(read_image(files[0]))
    assert result.prediction.shape == whole.shape
    assert np.abs(result.prediction.prob - whole.prob).max() < 0.05


def test_cancel_stops_early(predictor, samples_dir, tmp_path):
    files = _files(samples_dir, tmp_path, 1) * 30
    cancel = threading.Event()
    got = []
    started = time.perf_counter()
    for result in predictor.predict_files(files, cancel=cancel, batch_size=2, workers=1):
        got.append(result)
        cancel.set()
    assert 1 <= len(got) < 30
    assert time.perf_counter() - started < 20


def test_decoding_runs_ahead_only_a_bounded_window(predictor, samples_dir, tmp_path, monkeypatch):
    files = _files(samples_dir, tmp_path, 1) * 40
    started: list[Path] = []
    lock = threading.Lock()
    real_decode = predictor._decode

    def counting_decode(path):
        with lock:
            started.append(path)
        return real_decode(path)

    monkeypatch.setattr(predictor, "_decode", counting_decode)
    stream = predictor.predict_files(files, batch_size=1, workers=1)
    next(stream)
    time.sleep(0.3)  # give the pool every chance to run ahead
    assert len(started) <= 2 * 1 + 1 + 1  # the window, plus the one taken off it
    stream.close()


def test_missing_default_model_says_none_is_bundled(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "default_model_path", lambda: tmp_path / "slsnet_isic2017.safetensors")
    with pytest.raises(WeightsError, match="no trained model is bundled") as err:
        Predictor(device="cpu")
    assert "slsnet_isic2017.safetensors" in str(err.value)


def test_paper_sized_model_at_128(tmp_path, sample):
    path = write_random_model(tmp_path, size=128, small=False)
    predictor = Predictor(path, device="cpu")
    assert predictor.input_size == 128
    prediction = predictor.predict(sample)
    assert prediction.mask.shape == sample.shape[:2]


def test_device_fallback_notice(monkeypatch, model_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    device, notice = choose_device("cuda")
    assert device.type == "cpu" and "CUDA" in notice and "CPU" in notice
    assert choose_device(None) == (torch.device("cpu"), None)
    assert choose_device("cpu") == (torch.device("cpu"), None)
    predictor = Predictor(model_path, device="cuda:0")
    assert predictor.device.type == "cpu" and predictor.device_notice
    assert device_description(torch.device("cpu")).startswith("CPU (")
    with pytest.raises(DeviceError):
        choose_device("tpu")


def test_cuda_is_chosen_when_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert choose_device(None) == (torch.device("cuda", 0), None)
    assert choose_device("cuda") == (torch.device("cuda", 0), None)
    assert choose_device("cpu") == (torch.device("cpu"), None)
    device, notice = choose_device("cuda:3")
    assert device == torch.device("cuda", 0) and "3" in notice


def test_a_failing_batch_is_retried_one_image_at_a_time(predictor, samples_dir, tmp_path, monkeypatch):
    files = _files(samples_dir, tmp_path, 3)
    real = predictor._probabilities
    sizes = []

    def fails_on_batches(batch):
        sizes.append(len(batch))
        if len(batch) > 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(batch)

    monkeypatch.setattr(predictor, "_probabilities", fails_on_batches)
    results = list(predictor.predict_files(files, batch_size=3))
    assert all(r.ok for r in results) and sizes == [3, 1, 1, 1]

    def always_fails(batch):
        raise RuntimeError("broken kernel\nwith a long trace")

    monkeypatch.setattr(predictor, "_probabilities", always_fails)
    results = list(predictor.predict_files(files, batch_size=2))
    assert [r.error for r in results] == ["the network failed: broken kernel"] * 3


def test_flip_mean_is_the_mean_of_the_four_flips_flipped_back() -> None:
    from dermaseg_app.ml.predictor import flip_mean

    rng = np.random.default_rng(0)
    batch = rng.random((2, 3, 8, 8), dtype=np.float32)
    calls: list[int] = []

    def run(x: np.ndarray) -> np.ndarray:  # a position-dependent "network": not flip-invariant
        calls.append(x.shape[0])
        ramp = np.arange(64, dtype=np.float32).reshape(8, 8) / 64
        return x.mean(axis=1) * ramp

    got = flip_mean(batch, run)
    assert calls == [8]  # one run on the four flips stacked
    ramp = np.arange(64, dtype=np.float32).reshape(8, 8) / 64
    image = batch.mean(axis=1)
    expected = image * (ramp + ramp[:, ::-1] + ramp[::-1, :] + ramp[::-1, ::-1]) / 4
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got.dtype == np.float32 and got.shape == (2, 8, 8)


def test_tta_follows_the_model_file_unless_given(tmp_path) -> None:
    import dataclasses

    from dermaseg_app.ml import weights
    from dermaseg_app.ml.slsnet import SLSNetGenerator

    torch.manual_seed(0)
    g = SLSNetGenerator().eval()
    base = weights.ModelInfo(name="t", version="1", arch="slsnet", input_size=32)
    plain, flipped = tmp_path / "plain.safetensors", tmp_path / "tta.safetensors"
    weights.save_model(plain, g, base)
    weights.save_model(flipped, g, dataclasses.replace(base, tta=True))
    assert weights.read_model_info(flipped).tta is True and weights.read_model_info(plain).tta is False
    rgb = (np.random.default_rng(1).random((40, 56, 3)) * 255).astype(np.uint8)
    off = Predictor(plain, device="cpu", backend="torch")
    on = Predictor(flipped, device="cpu", backend="torch")
    assert (off.tta, on.tta) == (False, True)
    assert Predictor(flipped, device="cpu", backend="torch", tta=False).tta is False
    p_off, p_on = off.predict(rgb).prob, on.predict(rgb).prob
    x = rgb[:, ::-1].copy()
    mirrored = on.predict(x).prob[:, ::-1]
    np.testing.assert_allclose(p_on, mirrored, atol=1e-5)  # the flip mean is flip-equivariant
    assert not np.allclose(p_off, p_on, atol=1e-4)


def test_runtimes_get_small_batches(model_path) -> None:
    """An exported network holds a (B, N, N) attention matrix: the predictor feeds a runtime at
    most RUNTIME_MAX_BATCH images per call, flips included, and keeps the order."""
    from dermaseg_app.ml import predictor as pm

    p = Predictor(model_path, device="cpu", backend="torch", tta=True)
    sizes: list[int] = []

    class Fake:
        name = label = "fake"

        def run(self, batch: np.ndarray) -> np.ndarray:
            sizes.append(len(batch))
            return p._torch_probabilities(batch)

    rng = np.random.default_rng(0)
    images = [(rng.random((40, 48, 3)) * 255).astype(np.uint8) for _ in range(3)]
    expected = [r.prob for r in p.predict_batch(images)]
    p.runtime = Fake()
    got = [r.prob for r in p.predict_batch(images)]
    assert sizes and max(sizes) <= pm.RUNTIME_MAX_BATCH and sum(sizes) == 12
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)

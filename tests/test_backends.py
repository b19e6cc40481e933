"""The predictor's backends: torch, ONNX Runtime, OpenVINO; the automatic choice, the setting, the
cached export, and the fallback to torch when a runtime is missing or fails."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from dermaseg_app import cli
from dermaseg_app.core.imageio import read_image
from dermaseg_app.ml import backends, export_onnx
from dermaseg_app.ml.predictor import Predictor

pytest.importorskip("onnx")
HAS_ORT = importlib.util.find_spec("onnxruntime") is not None
HAS_OV = importlib.util.find_spec("openvino") is not None
needs_ort = pytest.mark.skipif(not HAS_ORT, reason="onnxruntime is not installed (pip install 'dermaseg[onnx]')")
needs_ov = pytest.mark.skipif(not HAS_OV, reason="openvino is not installed (pip install 'dermaseg[openvino]')")

# float32 in another runtime: the largest probability difference from torch accepted
F32_TOLERANCE = 1e-4

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    from test_export_onnx import tiny_model

    return tiny_model(tmp_path_factory.mktemp("backend-model"))


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    smooth = [np.clip(rng.normal(128, 60, (9, 11, 3)), 0, 255).astype(np.uint8) for _ in range(2)]
    import cv2

    # smooth random images at other sizes than the input, and one noise image
    return [cv2.resize(s, (70 + 13 * i, 50 + 7 * i), interpolation=cv2.INTER_CUBIC) for i, s in enumerate(smooth)] + [
        rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)]


@pytest.fixture(scope="module")
def torch_predictions(model_path, images):
    return [p.prob for p in Predictor(model_path, "cpu", backend="torch").predict_batch(images)]


@pytest.fixture
def hide(monkeypatch):
    """hide("openvino", ...): those packages look uninstalled to ml.backends."""
    real = importlib.util.find_spec

    def hide_(*names):
        monkeypatch.setattr(backends.importlib.util, "find_spec",
                            lambda name, *a, **k: None if name in names else real(name, *a, **k))

    return hide_


@pytest.mark.parametrize("name", [pytest.param("onnxruntime", marks=needs_ort),
                                  pytest.param("openvino", marks=needs_ov)])
def test_a_runtime_gives_torchs_probabilities(name, model_path, images, torch_predictions):
    predictor = Predictor(model_path, "cpu", backend=name)
    assert predictor.backend == name and predictor.device_notice is None
    assert predictor.backend_label.startswith({"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}[name])
    got = predictor.predict_batch(images)
    for prediction, want, image in zip(got, torch_predictions, images, strict=True):
        assert prediction.prob.shape == image.shape[:2]
        assert np.abs(prediction.prob - want).max() <= F32_TOLERANCE
        assert want.std() > 1e-3
    # one at a time (batch 1) too: the batch is dynamic
    assert np.abs(predictor.predict(images[0]).prob - torch_predictions[0]).max() <= F32_TOLERANCE


@pytest.fixture
def timed(monkeypatch):
    """timed(ms): the automatic choice's timing gives these figures, and records each call."""
    calls = []

    def set_(ms: dict[str, float]):
        def fake(runs, input_size, **kwargs):
            calls.append(sorted(runs))
            for run in runs.values():  # every candidate really runs
                assert run(np.zeros((1, 3, input_size, input_size), np.float32)).shape == (1, input_size, input_size)
            return {name: ms[name] / 1e3 for name in runs}

        monkeypatch.setattr(backends, "time_backends", fake)
        return calls

    return set_


@needs_ov
@needs_ort
@pytest.mark.parametrize("fastest", ["openvino", "onnxruntime", "torch"])
def test_auto_takes_the_fastest_timed_once_per_model_file(fastest, model_path, timed):
    ms = {"openvino": 10.0, "onnxruntime": 10.0, "torch": 10.0}
    ms[fastest] = 3.0
    calls = timed(ms)
    p = Predictor(model_path, "cpu", backend="auto")
    assert p.backend == fastest and p.device_notice is None
    assert calls == [["onnxruntime", "openvino", "torch"]]
    again = Predictor(model_path, "cpu", backend="auto")  # remembered: not timed again
    assert again.backend == fastest and len(calls) == 1


def test_auto_without_any_runtime_is_torch_without_timing_or_notice(model_path, hide, timed):
    calls = timed({})
    hide("openvino", "onnxruntime")
    p = Predictor(model_path, "cpu", backend="auto")
    assert p.backend == "torch" and p.device_notice is None and calls == []


def test_the_timing_alternates_the_backends_and_drops_a_much_slower_one():
    import time

    ran = {"a": 0, "b": 0, "slow": 0}

    def run(name, seconds):
        def f(x):
            ran[name] += 1
            time.sleep(seconds)
            return x[:, 0]
        return f

    seconds = backends.time_backends({"a": run("a", 0.002), "b": run("b", 0.004), "slow": run("slow", 0.06)}, 8,
                                     rounds=2, calls=3, warmup=1)
    # 1 warm-up + 2 rounds x (1 untimed + 3); the slow one only warmed up
    assert ran == {"a": 9, "b": 9, "slow": 1}
    assert seconds["a"] < seconds["b"] < seconds["slow"] and seconds["slow"] >= 0.06


def test_a_missing_runtime_asked_for_falls_back_to_torch_with_a_notice(model_path, hide):
    hide("onnxruntime")
    p = Predictor(model_path, "cpu", backend="onnxruntime")
    assert p.backend == "torch" and p.backend_label.startswith("torch ")
    assert "onnxruntime is not installed" in p.device_notice and "dermaseg[onnx]" in p.device_notice
    assert p.predict(np.zeros((20, 20, 3), np.uint8)).prob.shape == (20, 20)


@needs_ov
@needs_ort
def test_a_runtime_that_fails_to_load_is_skipped_with_a_notice(model_path, monkeypatch, timed):
    def broken(*args, **kwargs):
        raise RuntimeError("no CPU plugin\nsecond line")

    monkeypatch.setattr(backends, "OpenVinoBackend", broken)
    calls = timed({"onnxruntime": 1.0, "torch": 2.0})
    p = Predictor(model_path, "cpu", backend="auto")
    assert calls == [["onnxruntime", "torch"]]
    assert p.backend == "onnxruntime"
    assert "openvino could not be used (RuntimeError: no CPU plugin)" in p.device_notice
    assert "ONNX Runtime" in p.device_notice


def test_a_failed_export_falls_back_to_torch(model_path, monkeypatch):
    def cannot(*args, **kwargs):
        raise export_onnx.ExportError("exporting to ONNX needs the onnx package")

    monkeypatch.setattr(export_onnx, "cached_onnx", cannot)
    p = Predictor(model_path, "cpu", backend="openvino")
    assert p.backend == "torch" and "needs the onnx package" in p.device_notice


@needs_ort
def test_a_runtime_failing_while_predicting_hands_over_to_torch(model_path, images, torch_predictions, monkeypatch):
    p = Predictor(model_path, "cpu", backend="onnxruntime")

    def fails(batch):
        raise RuntimeError("session lost")

    monkeypatch.setattr(p.runtime, "run", fails)
    got = p.predict_batch(images)
    assert p.backend == "torch" and "session lost" in p.device_notice and "torch runs the model" in p.device_notice
    for prediction, want in zip(got, torch_predictions, strict=True):
        np.testing.assert_allclose(prediction.prob, want, atol=1e-6)


@needs_ort
def test_the_model_is_exported_once_per_model_file(model_path, monkeypatch, tmp_path):
    calls = []
    real = export_onnx.export_onnx
    monkeypatch.setattr(export_onnx, "export_onnx", lambda *a, **k: calls.append(a) or real(*a, **k))
    Predictor(model_path, "cpu", backend="onnxruntime")
    Predictor(model_path, "cpu", backend="onnxruntime")
    assert len(calls) == 1
    cached = list((tmp_path / "cache" / "dermaseg" / "onnx").glob("*.onnx"))  # the user's cache folder
    assert len(cached) == 1 and export_onnx.read_metadata(cached[0])["source_sha256"] == export_onnx.file_sha256(
        model_path)


def test_a_gpu_device_keeps_torch(model_path):
    runtime, notice = backends.open_backend("onnxruntime", "cuda", model_path, 32, 1)
    assert runtime is None and "CPU only" in notice
    assert backends.open_backend("auto", "cuda", model_path, 32, 1) == (None, None)
    with pytest.raises(ValueError):
        backends.open_backend("tensorrt", "cpu", model_path, 32, 1)


def test_the_setting_and_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("DERMASEG_BACKEND", raising=False)
    assert backends.configured_backend() == "auto"
    settings = tmp_path / "config" / "dermaseg" / "settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps({"schema_version": 1, "inference_backend": "onnxruntime"}))
    assert backends.configured_backend() == "onnxruntime"
    monkeypatch.setenv("DERMASEG_BACKEND", "openvino")  # the environment wins
    assert backends.configured_backend() == "openvino"
    monkeypatch.setenv("DERMASEG_BACKEND", "nonsense")
    assert backends.configured_backend() == "auto"
    monkeypatch.delenv("DERMASEG_BACKEND")
    settings.write_text(json.dumps({"inference_backend": 3}))
    assert backends.configured_backend() == "auto"


@needs_ort
def test_predict_backend_option(model_path, samples_dir, tmp_path, capsys):
    image = samples_dir / "ISIC_0000169.jpg"
    code = cli.main(["predict", str(image), "--out", str(tmp_path / "ort"), "--model", str(model_path),
                     "--backend", "onnxruntime"])
    assert code == 0 and "ONNX Runtime" in capsys.readouterr().out
    assert cli.main(["predict", str(image), "--out", str(tmp_path / "torch"), "--model", str(model_path),
                     "--backend", "torch"]) == 0
    assert "torch " in capsys.readouterr().out
    ort_mask = read_image(tmp_path / "ort" / "ISIC_0000169.png")
    torch_mask = read_image(tmp_path / "torch" / "ISIC_0000169.png")
    inter = np.logical_and(ort_mask > 0, torch_mask > 0).sum()
    union = np.logical_or(ort_mask > 0, torch_mask > 0).sum()
    assert union > 0 and inter / union >= 0.999
    with pytest.raises(SystemExit):
        cli.main(["predict", str(image), "--out", str(tmp_path / "x"), "--backend", "tensorrt"])


@needs_ort
def test_the_status_bar_names_the_backend(model_path, monkeypatch):
    from dermaseg_app.gui.model_slot import load_predictor

    monkeypatch.setenv("DERMASEG_BACKEND", "onnxruntime")
    predictor, label = load_predictor(None, model_path, "cpu")
    assert label.startswith("CPU") and label.endswith(predictor.backend_label) and "ONNX Runtime" in label


# ------------------------------------------------------------------ the shipped model, real images

@pytest.mark.slow
@pytest.mark.parametrize("name, tolerance", [pytest.param("onnxruntime", F32_TOLERANCE, marks=needs_ort),
                                             pytest.param("openvino", F32_TOLERANCE, marks=needs_ov)])
def test_masks_agree_with_torch_on_the_bundled_samples(name, tolerance, samples_dir):
    """JSC >= 0.99 per image between the runtime's mask and torch's, at the model's threshold; the
    probabilities (float32 in both) within 1e-4 (measured: about 5e-6)."""
    from dermaseg_app import paths

    model = paths.default_model_path()
    if not model.is_file():
        pytest.skip("no bundled model")
    files = sorted(samples_dir.glob("*.jpg"))
    assert len(files) >= 8
    reference = {r.path: r.prediction for r in Predictor(model, "cpu", backend="torch").predict_files(files)}
    runtime = Predictor(model, "cpu", backend=name)
    assert runtime.backend == name
    for result in runtime.predict_files(files):
        want = reference[result.path]
        got = result.prediction
        union = np.logical_or(got.mask, want.mask).sum()
        jsc = np.logical_and(got.mask, want.mask).sum() / union
        assert union > 0 and jsc >= 0.99, (result.path.name, jsc)
        assert np.abs(got.prob - want.prob).max() <= tolerance, result.path.name


@needs_ort
def test_the_window_does_not_wait_for_the_export_and_the_timing(model_path, timed):
    """backend_defer (the window): the first start runs torch at once and prepares the runtimes
    in a separate low-priority process; the next start uses the one that process timed fastest."""
    calls = timed({"openvino": 3.0, "onnxruntime": 3.0, "torch": 10.0})
    first = Predictor(model_path, "cpu", backend="auto", backend_defer=True)
    assert first.backend == "torch" and first.device_notice is None and calls == []
    assert backends._preparing, "no preparation process was started"
    assert backends._preparing[-1].wait(120) == 0
    second = Predictor(model_path, "cpu", backend="auto", backend_defer=True)
    assert calls == []  # remembered from the preparation process: not timed here
    assert second.backend in ("torch", *backends.installed_runtimes())
    backends._preparing.clear()

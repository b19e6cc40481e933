"""Where the network runs: torch (any device), or on the CPU ONNX Runtime or OpenVINO.

``Predictor`` asks ``open_backend`` for a runtime backend; None means torch. The choice:

- ``torch``: the torch network (CPU, CUDA or MPS).
- ``onnxruntime`` / ``openvino``: the model file exported to ONNX once (``ml.export_onnx``,
  cached in the user's cache folder by the file's SHA-256) and run by that runtime on the CPU,
  with as many threads as torch uses.
- ``auto`` (the default): on the CPU the fastest runtime installed, OpenVINO then ONNX Runtime
  (``benchmarks/bench_inference.py``: on the development machine's CPU, at the shipped model's
  64 px, OpenVINO takes about a third of ONNX Runtime's time and ONNX Runtime less than torch's),
  else torch; on a GPU torch.

The choice comes from the ``backend=`` argument (``dermaseg predict --backend``), else the
``DERMASEG_BACKEND`` environment variable, else ``inference_backend`` in ``settings.json`` in the
user's config folder (``{"schema_version": 1, "inference_backend": "onnxruntime"}``), else
``auto``. A runtime that is missing, cannot export or load the model, or fails its first run is
skipped with a notice (``auto`` skips a runtime that is simply not installed silently) and torch
is used; a runtime that fails later is dropped for torch the same way (``Predictor``).

Both runtimes compute in float32, as torch does: their probabilities differ from torch's by about
5e-6 and the masks agree (JSC 1.0 on the bundled samples, tests/test_backends.py). OpenVINO's own
default on CPUs with AMX or AVX512-BF16 is bfloat16, about 1.5-2x faster but up to 0.11 off in
probability (JSC 0.988 on one bundled sample): it is ``openvino-bf16``, chosen only explicitly.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import threading
from pathlib import Path

import numpy as np

# the names ml.export_onnx gives the graph's input and output (this module imports neither torch
# nor a runtime until a backend is opened: the command line's parsers read BACKENDS)
INPUT_NAME = "image"
OUTPUT_NAME = "probability"

log = logging.getLogger(__name__)

__all__ = ["AUTO_ORDER", "BACKENDS", "BackendError", "OnnxRuntimeBackend", "OpenVinoBackend", "RuntimeBackend",
           "configured_backend", "installed_runtimes", "open_backend"]

RUNTIMES = ("openvino", "onnxruntime", "openvino-bf16")
BACKENDS = ("auto", "torch", *RUNTIMES)
AUTO_ORDER = ("openvino", "onnxruntime")  # fastest first
_MODULES = {"openvino": "openvino", "openvino-bf16": "openvino", "onnxruntime": "onnxruntime"}
_EXTRAS = {"openvino": "openvino", "openvino-bf16": "openvino", "onnxruntime": "onnx"}


class BackendError(Exception):
    """A runtime could not be used; the message says why, in one line."""


def configured_backend() -> str:
    """The backend the settings ask for: DERMASEG_BACKEND, else settings.json's
    ``inference_backend``, else ``auto``. An unknown name is logged and ``auto`` used."""
    env = os.environ.get("DERMASEG_BACKEND", "").strip().lower()
    if env:
        if env in BACKENDS:
            return env
        log.warning("DERMASEG_BACKEND=%s is not one of %s; auto is used", env, ", ".join(BACKENDS))
        return "auto"
    from dermaseg_app.core.limits import settings_path

    path = settings_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return "auto"
    value = data.get("inference_backend") if isinstance(data, dict) else None
    if value is None:
        return "auto"
    if isinstance(value, str) and value.strip().lower() in BACKENDS:
        return value.strip().lower()
    log.warning("%s: inference_backend %r is not one of %s; auto is used", path, value, ", ".join(BACKENDS))
    return "auto"


def installed_runtimes() -> list[str]:
    """The runtimes whose Python package is importable, in the automatic choice's order."""
    return [name for name in AUTO_ORDER if importlib.util.find_spec(_MODULES[name]) is not None]


class RuntimeBackend:
    """An ONNX model run by a CPU runtime: ``run((B, 3, S, S) float32) -> (B, S, S) float32``."""

    name = ""
    label = ""

    def run(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class OnnxRuntimeBackend(RuntimeBackend):
    name = "onnxruntime"

    def __init__(self, onnx_path: str | Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":  # the window: no spinning threads
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.label = f"ONNX Runtime {ort.__version__}"

    def run(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)})[0]
        return np.asarray(out, dtype=np.float32).reshape(out.shape[0], out.shape[-2], out.shape[-1])


class OpenVinoBackend(RuntimeBackend):
    name = "openvino"

    def __init__(self, onnx_path: str | Path, threads: int, precision: str = "f32") -> None:
        import openvino as ov

        core = ov.Core()
        config: dict[str, object] = {"INFERENCE_NUM_THREADS": max(1, int(threads)), "PERFORMANCE_HINT": "LATENCY",
                                     "INFERENCE_PRECISION_HINT": precision}
        if precision != "f32":
            self.name = f"openvino-{precision}"
        self.compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU", config)
        used = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        self.precision = used.to_string() if hasattr(used, "to_string") else str(used)
        self.label = f"OpenVINO {ov.__version__.split('-')[0]} ({self.precision})"
        self._lock = threading.Lock()  # one infer request: one batch at a time

    def run(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        with self._lock:
            out = np.array(self.compiled(x)[0], dtype=np.float32)  # a copy: the request's buffer is reused
        return out.reshape(out.shape[0], out.shape[-2], out.shape[-1])


def _construct(name: str, onnx_path: Path, threads: int) -> RuntimeBackend:
    if name == "onnxruntime":
        return OnnxRuntimeBackend(onnx_path, threads)
    if name == "openvino":
        return OpenVinoBackend(onnx_path, threads)
    if name == "openvino-bf16":
        return OpenVinoBackend(onnx_path, threads, precision="bf16")
    raise BackendError(f"unknown backend {name!r}")


def _smoke_test(backend: RuntimeBackend, size: int) -> None:
    """One run on a real-looking batch: the right shape, finite probabilities."""
    x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
    out = backend.run(x)
    if out.shape != (1, size, size):
        raise BackendError(f"gives shape {out.shape}, not (1, {size}, {size})")
    if not np.isfinite(out).all() or out.min() < -1e-3 or out.max() > 1 + 1e-3:
        raise BackendError("gives values that are not probabilities")


def open_backend(requested: str | None, device_type: str, model_path: str | Path, input_size: int,
                 threads: int) -> tuple[RuntimeBackend | None, str | None]:
    """(the runtime backend to use, or None for torch; a notice for the user, or None)."""
    name = (requested or configured_backend()).strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {requested!r}: choose one of {', '.join(BACKENDS)}")
    if name == "torch":
        return None, None
    if device_type != "cpu":
        if name == "auto":
            return None, None
        return None, f"the {name} backend runs on the CPU only; torch runs the model on the {device_type.upper()}"
    candidates = list(AUTO_ORDER) if name == "auto" else [name]
    problems: list[str] = []
    onnx_path: Path | None = None
    for candidate in candidates:
        if importlib.util.find_spec(_MODULES[candidate]) is None:
            if name != "auto":
                problems.append(f"{candidate} is not installed (pip install 'dermaseg[{_EXTRAS[candidate]}]')")
            continue
        try:
            if onnx_path is None:
                from dermaseg_app.ml.export_onnx import cached_onnx

                onnx_path = cached_onnx(model_path)
            backend = _construct(candidate, onnx_path, threads)
            _smoke_test(backend, int(input_size))
        except Exception as exc:  # noqa: BLE001 - any failure of an optional runtime means: use another
            text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, BackendError) else str(exc)
            problems.append(f"{candidate} could not be used ({text.splitlines()[0] if text else type(exc).__name__})")
            if onnx_path is None:
                break  # no ONNX file: no runtime can run it
            continue
        notice = "; ".join(problems) + f"; {backend.label} runs the model" if problems else None
        return backend, notice
    if not problems:
        return None, None  # auto, no runtime installed: torch, as expected
    return None, "; ".join(problems) + "; torch runs the model"

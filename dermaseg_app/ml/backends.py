"""Where the network runs: torch (any device), or on the CPU ONNX Runtime or OpenVINO.

``Predictor`` asks ``open_backend`` for a runtime backend; None means torch. The choice:

- ``torch``: the torch network (CPU, CUDA or MPS).
- ``onnxruntime`` / ``openvino``: the model file exported to ONNX once (``ml.export_onnx``,
  cached in the user's cache folder by the file's SHA-256) and run by that runtime on the CPU,
  with as many threads as torch uses.
- ``auto`` (the default): on the CPU the fastest of torch and the runtimes installed, timed at
  batch 1 the first time a model file is used on a machine (about a second at 64 px; the choice
  is remembered beside the cached export): which wins depends on the CPU and the input size
  (``benchmarks/bench_inference.py``: at the shipped model's 64 px both runtimes take less than
  half of torch's time here, at 128 px torch with its fused attention kernel is as fast); on a
  GPU torch. Where no runtime is installed it is torch, without a notice.

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

import hashlib
import importlib.util
import json
import logging
import os
import statistics
import threading
import time
from collections.abc import Callable
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
AUTO_ORDER = ("openvino", "onnxruntime")  # the runtimes auto considers (timed against torch)
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
        try:  # OpenVINO's own cache of the compiled network: later loads take a fifth of the time
            core.set_property({"CACHE_DIR": str(Path(onnx_path).parent / "openvino")})
        except Exception:  # noqa: BLE001 - an older OpenVINO without it compiles every time
            pass
        config: dict[str, object] = {"INFERENCE_NUM_THREADS": max(1, int(threads)), "PERFORMANCE_HINT": "LATENCY",
                                     "INFERENCE_PRECISION_HINT": precision}
        if precision != "f32":
            self.name = f"openvino-{precision}"
        self.compiled = core.compile_model(str(onnx_path), "CPU", config)
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


def _open(name: str, onnx_path: Path, input_size: int, threads: int) -> RuntimeBackend:
    backend = _construct(name, onnx_path, threads)
    _smoke_test(backend, int(input_size))
    return backend


def _problem(name: str, exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, BackendError) else f"{type(exc).__name__}: {exc}"
    return f"{name} could not be used ({text.splitlines()[0] if text.strip() else type(exc).__name__})"


def time_backends(runs: dict[str, Callable[[np.ndarray], np.ndarray]], input_size: int, rounds: int = 3,
                  calls: int = 4, warmup: int = 2) -> dict[str, float]:
    """Batch-1 seconds per call of each ``run``: the median of a round's ``calls``, in the best of
    ``rounds`` rounds that alternate the backends (a change in the machine's load falls on all
    alike, and a load spike during one round does not decide). Each round starts with one call
    not timed: the first call after another backend's pays for waking its threads, which the
    predictor, running one backend, never does. (On the loaded 2-core dev box one timing by a
    round-robin median kept ONNX Runtime at 2 threads, 134 ms for torch in the timing while torch
    took 68 ms per call over 300 calls, ``Predictor()`` at 0.6x of torch.) A backend whose
    last warm-up call took more than 4 times the fastest one's is not timed further (its warm-up
    time is its figure)."""
    x = np.random.default_rng(0).random((1, 3, input_size, input_size), dtype=np.float32)
    first: dict[str, float] = {}
    for name, run in runs.items():
        for _ in range(warmup):
            t0 = time.perf_counter()
            run(x)
            first[name] = time.perf_counter() - t0
    best = min(first.values())
    timed = [name for name in runs if first[name] <= 4 * best]
    best_round: dict[str, float] = {}
    for r in range(rounds):
        for name in (timed if r % 2 == 0 else list(reversed(timed))):
            runs[name](x)  # after another backend's call: not timed
            times = []
            for _ in range(calls):
                t0 = time.perf_counter()
                runs[name](x)
                times.append(time.perf_counter() - t0)
            best_round[name] = min(best_round.get(name, float("inf")), float(statistics.median(times)))
    return {name: best_round.get(name, first[name]) for name in runs}


_TIMING = 2  # time_backends' method: a choice made by an earlier one is timed again


def _package_version(module: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return "?"


def _choice_file(onnx_path: Path, installed: list[str], threads: int, input_size: int) -> Path:
    """Where the automatic choice is remembered: per exported model, runtime versions, threads,
    torch build and CPU."""
    import platform

    import torch

    from dermaseg_app.ml import fast_attention

    key = json.dumps([_TIMING, [(n, _package_version(_MODULES[n])) for n in installed], threads, input_size,
                      torch.__version__, torch.backends.cpu.get_cpu_capability(), fast_attention.ready(),
                      platform.machine(), platform.processor(), os.cpu_count()])
    return onnx_path.with_name(f"{onnx_path.stem}-auto-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json")


def _auto(device_type: str, model_path: Path, input_size: int, threads: int,
          torch_run: Callable[[np.ndarray], np.ndarray] | None) -> tuple[RuntimeBackend | None, str | None]:
    """The fastest of torch and the runtimes installed, timed once per model file and machine
    (remembered beside the cached export; delete the ``-auto-*.json`` file there to time again)."""
    installed = installed_runtimes()
    if not installed:
        return None, None  # no runtime installed: torch, as expected, no notice
    from dermaseg_app.ml.export_onnx import cached_onnx

    try:
        onnx_path = cached_onnx(model_path)
    except Exception as exc:  # noqa: BLE001
        return None, _problem("exporting the model to ONNX", exc) + "; torch runs the model"
    record = _choice_file(onnx_path, installed, threads, input_size)
    try:
        remembered = json.loads(record.read_text(encoding="utf-8")).get("backend")
    except (OSError, ValueError, AttributeError):
        remembered = None
    problems: list[str] = []
    if remembered == "torch" and torch_run is not None:
        return None, None
    if remembered in installed:
        try:
            return _open(remembered, onnx_path, input_size, threads), None
        except Exception as exc:  # noqa: BLE001 - it worked before: time the others again
            problems.append(_problem(remembered, exc))
    opened: dict[str, RuntimeBackend] = {}
    for name in installed:
        if name == remembered:
            continue  # failed just above
        try:
            opened[name] = _open(name, onnx_path, input_size, threads)
        except Exception as exc:  # noqa: BLE001 - a runtime that fails is skipped
            problems.append(_problem(name, exc))
    chosen: str | None = None
    if opened:
        runs = {name: backend.run for name, backend in opened.items()}
        if torch_run is not None:
            runs["torch"] = torch_run
        try:
            seconds = time_backends(runs, int(input_size))
        except Exception as exc:  # noqa: BLE001 - a runtime failing while timed: the first that opened
            problems.append(_problem("timing the backends", exc))
            seconds = {}
        if seconds:
            chosen = min(seconds, key=seconds.get)
            log.info("backends timed at batch 1 (ms): %s; %s chosen",
                     {k: round(v * 1e3, 2) for k, v in seconds.items()}, chosen)
            if not problems:  # a choice made without a failing runtime is remembered
                try:
                    from dermaseg_app.core.atomic import atomic_write_text

                    atomic_write_text(record, json.dumps({"backend": chosen, "median_ms": {
                        k: round(v * 1e3, 3) for k, v in seconds.items()}}) + "\n")
                except OSError:
                    pass  # timed again next time
        else:
            chosen = next(iter(opened))
    runtime = opened.get(chosen) if chosen else None
    if not problems:
        return runtime, None
    return runtime, "; ".join(problems) + f"; {runtime.label if runtime else 'torch'} runs the model"


_preparing: list = []  # the preparation processes started by this process (tests wait on them)


def _prepare_in_background(model_path: Path, input_size: int, threads: int,
                           torch_run: Callable[[np.ndarray], np.ndarray] | None) -> None:
    """Export and time the runtimes for the next start, in a separate low-priority process (a
    thread would still be inside a runtime's native code when the window closes, and the process
    would then abort on exit). Nothing waits for it; if it fails, the next start tries again."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "dermaseg_app.ml.predictor", "--prepare", str(model_path),
           "--input-size", str(int(input_size)), "--threads", str(int(threads))]
    nice = (lambda: os.nice(15)) if hasattr(os, "nice") else None
    try:
        _preparing.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL, start_new_session=True,
                                           preexec_fn=nice))
    except OSError as exc:  # e.g. a frozen app without a Python to start: torch stays
        log.info("could not start preparing the CPU runtimes: %s", exc)


def _auto_is_prepared(model_path: Path, input_size: int, threads: int) -> bool:
    """Whether ``auto`` can decide without exporting or timing (both done at an earlier start)."""
    from dermaseg_app.ml.export_onnx import cached_onnx_path

    onnx_path = cached_onnx_path(model_path)
    return onnx_path.is_file() and _choice_file(onnx_path, installed_runtimes(), threads, input_size).is_file()


def open_backend(requested: str | None, device_type: str, model_path: str | Path, input_size: int,
                 threads: int, torch_run: Callable[[np.ndarray], np.ndarray] | None = None,
                 defer: bool = False) -> tuple[RuntimeBackend | None, str | None]:
    """(the runtime backend to use, or None for torch; a notice for the user, or None).

    ``torch_run``: the torch network's batch function, timed against the runtimes by ``auto``.
    ``defer`` (the window): where ``auto`` would first have to export the model and time the
    runtimes (seconds), torch runs the model now and that work is done in the background, at low
    priority, for the next start; the first mask is not held up by it."""
    name = (requested or configured_backend()).strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {requested!r}: choose one of {', '.join(BACKENDS)}")
    if name == "torch":
        return None, None
    if device_type != "cpu":
        if name == "auto":
            return None, None
        return None, f"the {name} backend runs on the CPU only; torch runs the model on the {device_type.upper()}"
    if name == "auto":
        if defer and installed_runtimes() and not _auto_is_prepared(Path(model_path), input_size, threads):
            _prepare_in_background(Path(model_path), input_size, threads, torch_run)
            return None, None
        return _auto(device_type, Path(model_path), input_size, threads, torch_run)
    if importlib.util.find_spec(_MODULES[name]) is None:
        return None, f"{name} is not installed (pip install 'dermaseg[{_EXTRAS[name]}]'); torch runs the model"
    from dermaseg_app.ml.export_onnx import cached_onnx

    try:
        return _open(name, cached_onnx(model_path), input_size, threads), None
    except Exception as exc:  # noqa: BLE001 - any failure of an optional runtime means: torch
        return None, _problem(name, exc) + "; torch runs the model"


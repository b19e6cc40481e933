"""The model, loaded once in the background (importing torch takes seconds), and handed to the
prediction job when ready. No Qt here."""

from __future__ import annotations

import threading
from pathlib import Path


class ModelUnavailable(Exception):
    fatal = True  # stops the prediction job; the window says why


class ModelSlot:
    """The predictor, loaded once in the background; ``get()`` blocks a worker until it is ready."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self.predictor = None
        self.error = ""

    def set(self, predictor) -> None:
        self.predictor = predictor
        self._ready.set()

    def fail(self, reason: str) -> None:
        self.error = reason
        self._ready.set()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def get(self, cancel: threading.Event | None = None):
        while not self._ready.wait(0.1):
            if cancel is not None and cancel.is_set():
                raise ModelUnavailable("cancelled")
        if self.predictor is None:
            raise ModelUnavailable(self.error or "the model could not be loaded")
        return self.predictor


def load_predictor(job, model_path: Path | None, device: str | None):
    """(Predictor, "device, backend" for the status bar); a ``workers.Worker`` function (imports
    torch; exports the model for ONNX Runtime / OpenVINO the first time, ml.backends)."""
    from dermaseg_app.ml.device import device_description
    from dermaseg_app.ml.predictor import Predictor

    # the first start with a new model does not wait for the ONNX export and the runtime timing:
    # torch draws the masks meanwhile, and the next start uses the fastest runtime (ml.backends)
    predictor = Predictor(model_path, device, backend_defer=True)
    return predictor, f"{device_description(predictor.device)}, {predictor.backend_label}"


def status_line(predictor, shown: str) -> str:
    """The status bar's "device, backend" for ``predictor`` now: ``shown`` with its backend part
    replaced when the backend changed since (a runtime that failed mid-session hands over to
    torch, ml.predictor), else ``shown``. A predictor without a backend (an ensemble) keeps it."""
    label = getattr(predictor, "backend_label", None)
    if not isinstance(label, str) or label in shown:
        return shown
    device = shown.split(", ", 1)[0]
    return f"{device}, {label}"


def load_ensemble_predictor(job, path_a: Path, path_b: Path, device: str | None):
    """(app.ensemble.EnsemblePredictor of the two models, its device line); a ``workers.Worker``
    function."""
    from dermaseg_app.app.ensemble import EnsemblePredictor

    a, device_label = load_predictor(job, path_a, device)
    b, _ = load_predictor(job, path_b, device)
    return EnsemblePredictor(a, b), device_label

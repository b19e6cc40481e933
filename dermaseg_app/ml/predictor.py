"""Run a trained model on images of any size.

``Predictor`` loads the weights and their configuration once, on the chosen device. An image is
squashed to the model's square input size (``preprocessing.preprocess``), run through the network,
and the probability map is resized back to the image's own size (bilinear) before thresholding,
so a ``Prediction`` always matches the image pixel for pixel.

``predict_files`` streams a list of files (a large JPEG decoded reduced for the network,
``Predictor._decode``; the prediction still at the image's own size): decoding and preprocessing
run in a small thread pool ahead of the network, through a bounded window of pending files, so
memory stays bounded however many files there are. A file that cannot be read gives a
``FileResult`` with an error and the stream goes on; setting ``cancel`` stops it promptly.

The network runs in torch or, on the CPU, in ONNX Runtime or OpenVINO (``ml.backends``: the
``backend`` argument, else the setting, else the fastest of torch and the runtimes installed,
timed once per model file and machine). ``backend_label``
names what runs it; when a runtime cannot be used, or fails while predicting, torch takes over and
``device_notice`` says why.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from dermaseg_app.ml.device import choose_device, device_description
from dermaseg_app.ml.preprocessing import as_rgb_uint8, preprocess
from dermaseg_app.ml.weights import ModelInfo, WeightsError, load_model

DEFAULT_BATCH_SIZE = 8
# a JPEG is decoded for the network at 1/2, 1/4 or 1/8 of its size where that keeps at least this
# many pixels per network input pixel a side: on the bundled full-resolution samples at 128 px the
# masks then agree with those of the whole decode at JSC >= 0.996 (docs: benchmarks/README.md)
REDUCED_DECODE_FACTOR = 4


def _check_threshold(threshold: float) -> float:
    t = float(threshold)
    if not 0.0 < t < 1.0:
        raise ValueError(f"threshold must be between 0 and 1 (exclusive), got {threshold}")
    return t


@dataclass
class Prediction:
    """A lesion probability map and its mask, both at the image's own size."""

    prob: np.ndarray  # float32 HxW in [0, 1]
    mask: np.ndarray  # bool HxW: prob >= threshold
    threshold: float

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.prob.shape[0]), int(self.prob.shape[1]))

    @property
    def lesion_fraction(self) -> float:
        """Share of the image's pixels in the mask."""
        return float(self.mask.mean()) if self.mask.size else 0.0

    def with_threshold(self, threshold: float) -> Prediction:
        """The same probabilities cut at another threshold (no network run)."""
        t = _check_threshold(threshold)
        return Prediction(self.prob, self.prob >= t, t)

    def contours(self) -> list[np.ndarray]:
        """The mask's outlines as (N, 2) float arrays of (x, y) points, for drawing."""
        from dermaseg_app.core.geometry import contours

        return contours(self.mask)


@dataclass
class FileResult:
    """One file of ``predict_files``: a prediction, or the reason there is none."""

    path: Path
    prediction: Prediction | None
    error: str | None
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)  # decode, preprocess, network, postprocess

    @property
    def ok(self) -> bool:
        return self.prediction is not None


@dataclass
class _Decoded:
    shape: tuple[int, int]
    chw: np.ndarray
    decode_s: float
    preprocess_s: float


def probability_to_size(prob_small: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A square probability map resized (bilinear) to ``shape`` (H, W), float32 in [0, 1]."""
    h, w = shape
    prob = np.asarray(prob_small, dtype=np.float32)
    if prob.shape != (h, w):
        prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(prob, 0.0, 1.0, out=prob)


# The exported network (ONNX Runtime, OpenVINO) computes SLSNet's position attention with the
# portable formula, which holds a (B, N, N) matrix: at 128 px N = 4096, 64 MB per image per
# attention. A batch of 8 took 2.7 GB and, with test-time flips (32 images), 9.4 GB
# (`dermaseg evaluate` on 40 images); so runtimes get at most this many images per call: peak
# 0.6 / 1.0 / 1.6 GB at 1 / 2 / 4 per call, the time per image the same within the noise (ONNX
# Runtime and OpenVINO, 1 thread). Torch's fused attention kernel needs no such matrix.
RUNTIME_MAX_BATCH = 2


def flip_mean(batch: np.ndarray, run: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Flip test-time augmentation: ``run`` (B, 3, s, s) -> (B, s, s) on the batch with its
    horizontal, vertical and double flips stacked (4B images, one call), each result flipped back,
    and the mean of the four."""
    n = batch.shape[0]
    stacked = np.concatenate([batch, batch[..., ::-1], batch[..., ::-1, :], batch[..., ::-1, ::-1]])
    probs = run(np.ascontiguousarray(stacked))
    mean = (probs[:n] + probs[n:2 * n, :, ::-1] + probs[2 * n:3 * n, ::-1, :] + probs[3 * n:, ::-1, ::-1]) / 4
    return np.ascontiguousarray(mean, dtype=np.float32)


def _inference_network(network: nn.Module) -> nn.Module:
    """The network's inference form: BatchNorm folded, dropout removed (ml.optimize), when
    that module is present and handles the network; otherwise the network itself."""
    try:
        from dermaseg_app.ml.optimize import fuse_for_inference
    except ImportError:
        return network
    try:
        return fuse_for_inference(network).eval()
    except Exception:  # noqa: BLE001 - an unknown architecture runs unfused
        return network


class Predictor:
    """A loaded model ready to segment images."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        device: str | torch.device | None = None,
        threshold: float | None = None,
        backend: str | None = None,
        backend_defer: bool = False,
        tta: bool | None = None,
    ) -> None:
        from dermaseg_app import paths

        if isinstance(device, torch.device):
            self.device, self.device_notice = device, None
        else:
            self.device, self.device_notice = choose_device(device)
        path = Path(model_path) if model_path is not None else paths.default_model_path()
        if model_path is None and not path.exists():
            raise WeightsError(
                path,
                "no model file: no trained model is bundled with this installation yet; "
                "train one (dermaseg train) or pass --model FILE",
            )
        # OpenCV (decoding, resizing) within the same thread budget as the network: with its own
        # default (every core) it competed with torch's threads, and with the decoding pool's
        cv2.setNumThreads(max(1, torch.get_num_threads()))
        network, info = load_model(path, device=self.device)
        self.network: nn.Module = _inference_network(network)
        self.info: ModelInfo = info
        self.input_size: int = int(info.input_size)
        self.threshold: float = _check_threshold(info.threshold if threshold is None else threshold)
        # Test-time augmentation: the mean of the probabilities of the image and its three flips
        # (horizontal, vertical, both), each flipped back; the model file's default unless given.
        self.tta: bool = bool(info.tta if tta is None else tta)
        from dermaseg_app.ml.backends import open_backend

        self._backend_lock = threading.Lock()
        self.runtime, backend_notice = open_backend(backend, self.device.type, path, self.input_size,
                                                    torch.get_num_threads(), torch_run=self._torch_probabilities,
                                                    defer=backend_defer)
        self._add_notice(backend_notice)

    def _add_notice(self, text: str | None) -> None:
        if text:
            self.device_notice = f"{self.device_notice}; {text}" if self.device_notice else text

    @property
    def backend(self) -> str:
        """What runs the network: ``torch``, ``onnxruntime``, ``openvino`` or ``openvino-bf16``."""
        runtime = self.runtime
        return runtime.name if runtime is not None else "torch"

    @property
    def backend_label(self) -> str:
        """The backend for people: "torch 2.13.0", "OpenVINO 2026.4.1 (f32)", ..."""
        runtime = self.runtime
        return runtime.label if runtime is not None else f"torch {torch.__version__.split('+')[0]}"

    @property
    def device_label(self) -> str:
        return device_description(self.device)

    # ------------------------------------------------------------ the network

    def _probabilities(self, batch: np.ndarray) -> np.ndarray:
        """(B, 3, s, s) float32 in [0, 1] -> (B, s, s) float32 probabilities; with ``tta`` the mean
        over the four flips (one network run on a batch four times as large)."""
        if not self.tta:
            return self._network_probabilities(batch)
        return flip_mean(batch, self._network_probabilities)

    def _network_probabilities(self, batch: np.ndarray) -> np.ndarray:
        runtime = self.runtime
        if runtime is not None:
            try:
                step = RUNTIME_MAX_BATCH
                if len(batch) <= step:
                    return runtime.run(batch)
                return np.concatenate([runtime.run(batch[i:i + step]) for i in range(0, len(batch), step)])
            except Exception as exc:  # noqa: BLE001 - an optional runtime failing: torch takes over
                with self._backend_lock:
                    if self.runtime is runtime:
                        self.runtime = None
                        text = f"{type(exc).__name__}: {exc}".splitlines()[0]
                        self._add_notice(f"{runtime.label} failed ({text}); torch runs the model from now on")
        return self._torch_probabilities(batch)

    def _torch_probabilities(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device)
            out = self.network(x)
            if isinstance(out, (tuple, list)):
                out = out[0]
            if getattr(self.network, "outputs_logits", False):
                out = torch.sigmoid(out)
            out = out.float().reshape(out.shape[0], out.shape[-2], out.shape[-1])
            return out.cpu().numpy()

    def _probabilities_or_errors(self, inputs: list[np.ndarray]) -> list[np.ndarray | str]:
        """Probabilities per input; when a batch fails (e.g. out of GPU memory) each input is run
        alone, and one that still fails gets the error text instead."""
        try:
            return list(self._probabilities(np.stack(inputs)))
        except (RuntimeError, MemoryError) as exc:
            if len(inputs) == 1:
                return [f"the network failed: {exc}".splitlines()[0]]
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return [outcome for x in inputs for outcome in self._probabilities_or_errors([x])]

    def _finish(self, prob_small: np.ndarray, shape: tuple[int, int], threshold: float) -> Prediction:
        prob = probability_to_size(prob_small, shape)
        return Prediction(prob, prob >= threshold, threshold)

    # ------------------------------------------------------------ in memory

    def predict(self, rgb: np.ndarray, threshold: float | None = None) -> Prediction:
        """Segment one image (HxW grey, HxWx3 RGB or HxWx4 RGBA; any size and aspect)."""
        return self.predict_batch([rgb], threshold=threshold)[0]

    def predict_batch(self, images: Sequence[np.ndarray], threshold: float | None = None) -> list[Prediction]:
        """Segment several images in one network run (they may differ in size)."""
        if not images:
            return []
        t = self.threshold if threshold is None else _check_threshold(threshold)
        rgbs = [as_rgb_uint8(image) for image in images]
        batch = np.stack([preprocess(rgb, self.input_size) for rgb in rgbs])
        probs = self._probabilities(batch)
        return [self._finish(p, rgb.shape[:2], t) for p, rgb in zip(probs, rgbs, strict=True)]

    # ------------------------------------------------------------ files, streamed

    def _decode(self, path: Path) -> _Decoded:
        """The network input of one file and the image's full (H, W): a large JPEG is decoded
        reduced (core.imageio.read_image_reduced) to at least ``REDUCED_DECODE_FACTOR`` times
        the input size a side, which the squash to the input size cannot tell from the whole."""
        from dermaseg_app.core.imageio import read_image_reduced

        t0 = time.perf_counter()
        rgb, shape = read_image_reduced(path, REDUCED_DECODE_FACTOR * self.input_size)
        t1 = time.perf_counter()
        chw = preprocess(rgb, self.input_size)
        t2 = time.perf_counter()
        return _Decoded(shape, chw, t1 - t0, t2 - t1)

    def predict_files(
        self,
        paths: Iterable[str | Path],
        cancel: threading.Event | None = None,
        progress: Callable[[int, int], None] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        workers: int | None = None,
        threshold: float | None = None,
    ) -> Iterator[FileResult]:
        """Predict every file in order, yielding one FileResult per file.

        At most ``2 * batch_size + workers`` files are decoded ahead of the network.
        ``progress(done, total)`` is called after each file; ``cancel`` stops the stream
        (files not yet yielded are skipped).
        """
        path_list = [Path(p) for p in paths]
        total = len(path_list)
        batch_size = max(1, int(batch_size))
        t = self.threshold if threshold is None else _check_threshold(threshold)
        if workers is None:
            workers = max(1, min(4, (os.cpu_count() or 2) - 1))
        window = 2 * batch_size + workers
        cancel = cancel or threading.Event()
        pending: deque[tuple[Path, Future[_Decoded]]] = deque()
        next_index = 0
        done = 0
        executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dermaseg-decode")

        def refill() -> None:
            nonlocal next_index
            while next_index < total and len(pending) < window and not cancel.is_set():
                path = path_list[next_index]
                pending.append((path, executor.submit(self._decode, path)))
                next_index += 1

        def wait(future: Future[_Decoded]) -> bool:
            while True:
                if cancel.is_set():
                    return False
                try:
                    future.result(timeout=0.05)
                    return True
                except FutureTimeout:
                    continue
                except Exception:  # noqa: BLE001 - the error is read from the future below
                    return True

        try:
            refill()
            while pending and not cancel.is_set():
                items: list[tuple[Path, _Decoded | None, str | None]] = []
                while pending and len(items) < batch_size:
                    path, future = pending[0]
                    if not wait(future):
                        return
                    pending.popleft()
                    refill()
                    exc = future.exception()
                    if exc is None:
                        items.append((path, future.result(), None))
                    else:
                        items.append((path, None, _describe_error(path, exc)))
                good = [d for _, d, _ in items if d is not None]
                probs: list[np.ndarray | str] = []
                network_share = 0.0
                if good:
                    t0 = time.perf_counter()
                    probs = self._probabilities_or_errors([d.chw for d in good])
                    network_share = (time.perf_counter() - t0) / len(good)
                k = 0
                for path, decoded, error in items:
                    if cancel.is_set():
                        return
                    prob_small = None
                    if decoded is not None:
                        outcome = probs[k]
                        k += 1
                        if isinstance(outcome, str):
                            error = outcome
                        else:
                            prob_small = outcome
                    if decoded is None or prob_small is None:
                        result = FileResult(path, None, error, 0.0)
                    else:
                        t0 = time.perf_counter()
                        prediction = self._finish(prob_small, decoded.shape, t)
                        post = time.perf_counter() - t0
                        timings = {
                            "decode": decoded.decode_s,
                            "preprocess": decoded.preprocess_s,
                            "network": network_share,
                            "postprocess": post,
                        }
                        result = FileResult(path, prediction, None, sum(timings.values()), timings)
                    done += 1
                    if progress is not None:
                        progress(done, total)
                    yield result
        finally:
            for _, future in pending:
                future.cancel()
            executor.shutdown(wait=False, cancel_futures=True)


def _describe_error(path: Path, exc: BaseException) -> str:
    """One line for a file that could not be predicted (the path is reported separately)."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason:
        return reason
    if isinstance(exc, MemoryError):
        return "image too large to hold in memory"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    text = str(exc)
    prefix = f"{path}: "
    if text.startswith(prefix):
        text = text[len(prefix):]
    return text or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """``python -m dermaseg_app.ml.predictor --prepare MODEL``: export the model, time torch
    against the installed runtimes and remember the fastest (what ``ml.backends``' ``auto`` then
    uses; the window starts it in the background, ``backends._prepare_in_background``)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m dermaseg_app.ml.predictor")
    ap.add_argument("--prepare", required=True, metavar="MODEL")
    ap.add_argument("--input-size", type=int)
    ap.add_argument("--threads", type=int)
    args = ap.parse_args(argv)
    import torch

    from dermaseg_app.ml.backends import _auto

    if args.threads:
        torch.set_num_threads(args.threads)
    predictor = Predictor(args.prepare, "cpu", backend="torch")
    runtime, notice = _auto("cpu", Path(args.prepare), args.input_size or predictor.input_size,
                            torch.get_num_threads(), predictor._torch_probabilities)
    print(f"{runtime.label if runtime else 'torch'}" + (f" ({notice})" if notice else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

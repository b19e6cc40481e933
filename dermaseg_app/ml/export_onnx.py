"""A model file as ONNX: fixed input size, dynamic batch, the model's name, version and threshold
in the file's metadata.

``export_onnx(model_path, out)`` loads the weights as the predictor does, folds BatchNorm and
removes dropout (``ml.optimize``), and writes an ONNX graph with one input ``image`` (float32,
``(batch, 3, S, S)``, RGB in [0, 1], S the model's input size; squash the image to S x S as
``ml.preprocessing.preprocess`` does) and one output ``probability`` (float32 ``(batch, 1, S, S)``,
the lesion probability; threshold it at the ``threshold`` metadata value). Only standard ONNX
operators are used, so any runtime loads it (ONNX Runtime, OpenVINO, X-AnyLabeling, 3D Slicer,
OpenVINO Model Server); the file is checked with ``onnx.checker`` before it is written.

Position attention (PAM) is written as the DANet formula, ``softmax(Q^T K)`` at the query width
C/8 then ``V att^T``: the torch predictor's paths (``ml.fast_attention``'s fused CPU kernel, or
``scaled_dot_product_attention`` with query and key padded to C) are not portable or do 8 times the
query-key work; all three give the same values. The graph is traced with the TorchScript-based
exporter (``torch.onnx.export(..., dynamo=False)``: seconds, no onnxscript needed) and, where that
exporter is missing (later torch versions), with the ``torch.export``-based one.

``cached_onnx(model_path)`` exports once per model file into the user's cache folder (keyed by
the file's SHA-256) for ``ml.backends``.

Needs the ``onnx`` package (``pip install 'dermaseg[onnx]'``).
"""

from __future__ import annotations

import copy
import hashlib
import io
import os
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dermaseg_app.ml.weights import ModelInfo, load_model

__all__ = ["EXPORT_FORMAT", "ExportError", "Exported", "OPSET", "cached_onnx", "export_onnx", "file_sha256",
           "onnx_cache_dir", "portable_network", "read_metadata"]

OPSET = 17
# Bump when the exported graph changes (operators, names, metadata): cached exports are redone.
EXPORT_FORMAT = 1
INPUT_NAME = "image"  # also in ml.backends
OUTPUT_NAME = "probability"
_STANDARD_DOMAINS = ("", "ai.onnx")
_cache_lock = threading.Lock()


class ExportError(Exception):
    """The model could not be exported (a missing package, an unsupported operator, a failed check)."""


@dataclass
class Exported:
    """What ``export_onnx`` wrote."""

    path: Path
    info: ModelInfo
    input_size: int
    opset: int
    exporter: str
    metadata: dict[str, str]


class _PortablePAM(nn.Module):
    """``PAM`` as plain matrix products: query and key from one 1x1 convolution at the query width
    C/8 (no padding), gamma folded into the value convolution; ``gamma V att^T + x``."""

    def __init__(self, pam: nn.Module) -> None:
        super().__init__()
        c = int(pam.channels)
        d = int(pam.query_conv.out_channels)
        gamma = pam.gamma.detach().reshape(())
        self.channels, self.inner = c, d
        self.qk = nn.Conv2d(c, 2 * d, kernel_size=1)
        self.v = nn.Conv2d(c, c, kernel_size=1)
        with torch.no_grad():
            self.qk.weight.copy_(torch.cat([pam.query_conv.weight, pam.key_conv.weight]))
            self.qk.bias.copy_(torch.cat([pam.query_conv.bias, pam.key_conv.bias]))
            self.v.weight.copy_(pam.value_conv.weight * gamma)
            self.v.bias.copy_(pam.value_conv.bias * gamma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n, d = h * w, self.inner
        qk = self.qk(x).reshape(b, 2 * d, n)
        q = qk[:, :d].transpose(1, 2)  # B x N x d
        k = qk[:, d:]  # B x d x N
        v = self.v(x).reshape(b, c, n)  # B x C x N, times gamma
        attention = torch.softmax(torch.bmm(q, k), dim=-1)  # B x N x N
        return torch.bmm(v, attention.transpose(1, 2)).reshape(b, c, h, w) + x


class _Probability(nn.Module):
    """The network with a ``(B, 1, S, S)`` probability output whatever it returns."""

    def __init__(self, network: nn.Module, size: int) -> None:
        super().__init__()
        self.network = network
        self.size = int(size)  # a constant: the output's shape is fixed in the graph
        self.outputs_logits = bool(getattr(network, "outputs_logits", False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.network(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        if self.outputs_logits:
            out = torch.sigmoid(out)
        return out.float().reshape(-1, 1, self.size, self.size)


def _swap_attention(module: nn.Module) -> None:
    from dermaseg_app.ml.blocks import PAM

    for name, child in list(module.named_children()):
        if isinstance(child, PAM):
            setattr(module, name, _PortablePAM(child))
        else:
            _swap_attention(child)


def portable_network(network: nn.Module, size: int) -> nn.Module:
    """The CPU float32 inference form of ``network`` made of standard operators only: BatchNorm
    folded, dropout removed, PAM as explicit matrix products; outputs probabilities (B, 1, H, W)."""
    from dermaseg_app.ml.optimize import fuse_for_inference

    portable = copy.deepcopy(network).float().cpu().eval()
    _swap_attention(portable)  # before folding, so that ml.optimize leaves the attention alone
    fused = fuse_for_inference(portable)
    return _Probability(fused, size).eval()


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise ExportError("exporting to ONNX needs the onnx package: pip install 'dermaseg[onnx]'") from None
    return onnx


def _trace(model: nn.Module, size: int, opset: int) -> tuple[bytes, str]:
    """The ONNX bytes of ``model`` at a fixed size with a dynamic batch, and the exporter used."""
    sample = torch.rand(2, 3, size, size)  # batch 2: the traced graph may not specialise on batch 1
    failures = []
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(model, (sample,), buffer, dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                              do_constant_folding=True)
        return buffer.getvalue(), "torchscript"
    except Exception as exc:  # noqa: BLE001 - try the other exporter before giving up
        failures.append(f"TorchScript exporter: {type(exc).__name__}: {exc}".splitlines()[0])
    try:
        batch = torch.export.Dim("batch", min=1, max=4096)
        with tempfile.TemporaryDirectory(prefix="dermaseg-onnx-") as tmp:
            target = Path(tmp) / "model.onnx"
            torch.onnx.export(model, (sample,), str(target), dynamo=True, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_shapes=({0: batch},), external_data=False, verbose=False)
            return target.read_bytes(), "dynamo"
    except Exception as exc:  # noqa: BLE001
        failures.append(f"torch.export exporter: {type(exc).__name__}: {exc}".splitlines()[0])
    raise ExportError("the network could not be exported to ONNX (" + "; ".join(failures) + ")")


def _metadata(info: ModelInfo, sha256: str) -> dict[str, str]:
    from dermaseg_app import __version__

    return {
        "model_name": info.name,
        "model_version": info.version,
        "threshold": repr(float(info.threshold)),
        "input_size": str(int(info.input_size)),
        "architecture": info.arch,
        "trained_on": info.trained_on,
        "input": f"{INPUT_NAME}: float32 (batch, 3, {info.input_size}, {info.input_size}), RGB in [0, 1], "
                 "the whole image resized to the input size (aspect not kept)",
        "output": f"{OUTPUT_NAME}: float32 (batch, 1, {info.input_size}, {info.input_size}), lesion probability; "
                  "mask = probability >= threshold",
        "source_sha256": sha256,
        "dermaseg_version": __version__,
        "dermaseg_export_format": str(EXPORT_FORMAT),
    }


def _declare_output_shape(proto, size: int) -> None:
    """The output's declared shape (batch, 1, S, S): the tracer leaves the fixed sizes unnamed."""
    (output,) = proto.graph.output
    batch = proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param or "batch"
    dims = output.type.tensor_type.shape.dim
    del dims[:]
    dims.add().dim_param = batch
    for value in (1, size, size):
        dims.add().dim_value = value


def export_onnx(model_path: str | Path, out: str | Path, opset: int = OPSET) -> Exported:
    """Export the model file to ``out`` (written atomically); ExportError when it cannot be."""
    onnx = _import_onnx()
    from onnx import checker

    model_path, out = Path(model_path), Path(out)
    network, info = load_model(model_path, device="cpu")
    size = int(info.input_size)
    model = portable_network(network, size)
    with torch.no_grad():
        data, exporter = _trace(model, size, opset)
    proto = onnx.load_from_string(data)
    foreign = sorted({f"{n.domain}::{n.op_type}" for n in proto.graph.node if n.domain not in _STANDARD_DOMAINS})
    if foreign:
        raise ExportError(f"the exported graph uses non-standard operators: {', '.join(foreign)}")
    _declare_output_shape(proto, size)
    metadata = _metadata(info, file_sha256(model_path))
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = f"{info.label()} lesion segmentation (DermaSeg {metadata['dermaseg_version']})"
    proto.producer_name = "dermaseg"
    proto.producer_version = metadata["dermaseg_version"]
    proto.model_version = EXPORT_FORMAT
    try:
        checker.check_model(proto, full_check=True)
    except Exception as exc:  # noqa: BLE001 - onnx raises its own ValidationError types
        raise ExportError(f"the exported graph fails onnx.checker: {exc}".splitlines()[0]) from None
    from dermaseg_app.core.atomic import atomic_write_bytes

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, proto.SerializeToString())
    return Exported(out, info, size, opset, exporter, metadata)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata_props of an ONNX file (needs the onnx package)."""
    onnx = _import_onnx()
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def onnx_cache_dir() -> Path:
    from dermaseg_app import paths

    return paths.user_cache_dir() / "onnx"


def cached_onnx_path(model_path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Where ``cached_onnx`` keeps (or will keep) this model file's export; nothing is exported."""
    folder = Path(cache_dir) if cache_dir is not None else onnx_cache_dir()
    key = hashlib.sha256(f"{file_sha256(Path(model_path))} {EXPORT_FORMAT} {OPSET} {torch.__version__}".encode())
    return folder / f"{key.hexdigest()[:24]}.onnx"


def cached_onnx(model_path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The model file exported to ONNX, from the cache when a model file with the same contents
    was exported before by this export format and torch version; exported (once) otherwise."""
    model_path = Path(model_path)
    folder = Path(cache_dir) if cache_dir is not None else onnx_cache_dir()
    target = cached_onnx_path(model_path, folder)
    with _cache_lock:
        if target.is_file() and target.stat().st_size > 0:
            return target
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExportError(f"cannot create the ONNX cache folder {folder}: {exc.strerror or exc}") from None
        try:
            export_onnx(model_path, target)
        except OSError as exc:
            raise ExportError(f"cannot write {target}: {exc.strerror or exc}") from None
    _prune(folder, keep=target)
    return target


def _prune(folder: Path, keep: Path, limit: int = 16) -> None:
    """Keep the cache to the ``limit`` most recently used exports (with what ml.backends keeps
    beside them: the automatic choice, OpenVINO's compiled networks)."""
    try:
        os.utime(keep)
        files = sorted(folder.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in files[limit:]:
            stale.unlink(missing_ok=True)
            for choice in folder.glob(f"{stale.stem}-auto-*.json"):
                choice.unlink(missing_ok=True)
        blobs = sorted((folder / "openvino").glob("*.blob"), key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in blobs[2 * limit:]:
            stale.unlink(missing_ok=True)
    except OSError:
        pass


def compare_with_torch(onnx_path: str | Path, model_path: str | Path, batch: int = 2, seed: int = 0,
                       threads: int | None = None) -> float:
    """The largest probability difference between ONNX Runtime on ``onnx_path`` and the torch
    predictor's network on ``model_path``, on ``batch`` random images (needs onnxruntime)."""
    import numpy as np

    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError("checking the export needs onnxruntime: pip install 'dermaseg[onnx]'") from None
    network, info = load_model(model_path, device="cpu")
    from dermaseg_app.ml.optimize import fuse_for_inference

    size = int(info.input_size)
    reference = _Probability(fuse_for_inference(network), size).eval()
    x = np.random.default_rng(seed).random((batch, 3, size, size), dtype=np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    with torch.inference_mode():
        want = reference(torch.from_numpy(x)).numpy()
    if got.shape != want.shape:
        raise ExportError(f"ONNX Runtime gives shape {got.shape}, torch {want.shape}")
    return float(np.abs(got - want).max())

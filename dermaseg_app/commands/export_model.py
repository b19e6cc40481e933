"""``dermaseg export-model MODEL --format onnx --out FILE``: the network for other tools.

Writes the model as ONNX (``ml.export_onnx``): one input ``image`` (float32, ``(batch, 3, S, S)``,
RGB in [0, 1], S the model's input size), one output ``probability`` (``(batch, 1, S, S)``), a
dynamic batch, and the model's name, version, threshold and input size in the file's
metadata_props; the graph is checked with ``onnx.checker``. When ONNX Runtime is installed the
file is also run on random images and compared with torch (``--no-verify`` skips it); a
difference above ``--tolerance`` is an error (exit 1). Needs ``pip install 'dermaseg[onnx]'``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from dermaseg_app.commands.argtypes import positive_float
from dermaseg_app.commands.predict import UserError, run_reporting_user_errors

FORMATS = ("onnx",)
DEFAULT_TOLERANCE = 1e-4


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export-model",
        help="write the model as ONNX for other tools (ONNX Runtime, OpenVINO, X-AnyLabeling, 3D Slicer)",
        description="Export a model file to ONNX: fixed input size, dynamic batch, the model's name, "
        "version and threshold as metadata; checked with onnx.checker.",
    )
    parser.add_argument("model", metavar="MODEL", help="model weights (.safetensors)")
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="output format (default onnx)")
    parser.add_argument("--out", required=True, metavar="FILE", help="the file to write (e.g. model.onnx)")
    parser.add_argument("--opset", type=int, metavar="N", help="ONNX opset (default 17)")
    parser.add_argument("--tolerance", type=positive_float, default=DEFAULT_TOLERANCE, metavar="P",
                        help=f"largest probability difference from torch accepted (default {DEFAULT_TOLERANCE:g})")
    parser.add_argument("--no-verify", action="store_true",
                        help="do not run the export with ONNX Runtime against torch")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_reporting_user_errors(_run, args)


def _run(args: argparse.Namespace) -> int:
    from dermaseg_app.ml.export_onnx import OPSET, ExportError, compare_with_torch, export_onnx
    from dermaseg_app.ml.weights import WeightsError

    model, out = Path(args.model), Path(args.out)
    if not model.is_file():
        raise UserError(f"no such model file: {model}", code=2)
    if out.exists() and out.is_dir():
        raise UserError(f"--out {out} is a folder; name the file to write", code=2)
    if out.resolve() == model.resolve():
        raise UserError("--out names the model file itself", code=2)
    started = time.perf_counter()
    try:
        exported = export_onnx(model, out, opset=args.opset or OPSET)
    except WeightsError as exc:
        raise UserError(f"cannot load the model: {exc}") from None
    except ExportError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    size = exported.input_size
    print(f"{out}: {exported.info.label()}, input image (batch, 3, {size}, {size}) RGB in [0, 1], "
          f"output probability (batch, 1, {size}, {size}), threshold {exported.info.threshold:g}; "
          f"opset {exported.opset}, {out.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - started:.1f} s")
    if args.no_verify:
        return 0
    try:
        difference = compare_with_torch(out, model)
    except ExportError as exc:
        print(f"not verified: {exc}")
        return 0
    import onnxruntime

    if difference > args.tolerance:
        raise UserError(f"ONNX Runtime {onnxruntime.__version__} differs from torch by {difference:.2e} in "
                        f"probability (more than {args.tolerance:g}); {out} was written but should not be used")
    print(f"verified with ONNX Runtime {onnxruntime.__version__}: largest probability difference from torch "
          f"{difference:.1e}")
    return 0

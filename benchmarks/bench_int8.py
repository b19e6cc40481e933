#!/usr/bin/env python
"""What int8 costs: post-training static quantization of the exported model, calibrated on
training images, scored on the ISIC 2017 validation set against float32, and timed at batch 1.

The model is exported as the predictor's backends export it (``ml.export_onnx``), quantized with
ONNX Runtime's ``quantize_static`` (QDQ format, int8 weights per channel, int8 activations, MinMax
calibration on ``--calibration`` training images preprocessed as the predictor does), and both
graphs are run on every validation image: the mask is the probability map resized back to the
image's size and cut at the model's threshold, as ``dermaseg evaluate`` does. Reported: the mean
JSC (and DSC) against the ground truth of float32 and int8, their difference in points, the
agreement (JSC) of the int8 masks with the float32 ones, and batch-1 latency of both in ONNX
Runtime and OpenVINO (which runs a QDQ graph in int8).

    python benchmarks/bench_int8.py --train /work/shared/data/isic2017/train \\
        --val /work/shared/data/isic2017/val [--calibration 200] [--threads 2] [--ops Conv ConvTranspose]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _latency(run, x, warmup: int = 20, calls: int = 150) -> float:
    for _ in range(warmup):
        run(x)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model file (default: the shipped model)")
    parser.add_argument("--train", required=True, help="training images folder (images/ inside is searched)")
    parser.add_argument("--val", required=True, help="validation folder with images/ and masks/")
    parser.add_argument("--calibration", type=int, default=200, help="training images to calibrate on")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ops", nargs="*", metavar="OP",
                        help="quantize only these operator types (e.g. Conv ConvTranspose); default: all")
    args = parser.parse_args(argv)

    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from dermaseg_app import paths
    from dermaseg_app.core.dataset import find_cases, find_images
    from dermaseg_app.core.imageio import read_image, read_mask
    from dermaseg_app.core.metrics import score
    from dermaseg_app.ml import backends
    from dermaseg_app.ml.export_onnx import INPUT_NAME, export_onnx
    from dermaseg_app.ml.predictor import probability_to_size
    from dermaseg_app.ml.preprocessing import preprocess
    from dermaseg_app.ml.weights import read_model_info

    torch.set_num_threads(args.threads)
    model = Path(args.model) if args.model else paths.default_model_path()
    info = read_model_info(model)
    size, threshold = int(info.input_size), float(info.threshold)
    rng = np.random.default_rng(0)
    train = sorted(find_images([Path(args.train)]))
    picked = [train[i] for i in sorted(rng.choice(len(train), min(args.calibration, len(train)), replace=False))]
    t0 = time.perf_counter()
    calibration = [preprocess(read_image(p), size)[None] for p in picked]
    print(f"model {info.label()} at {size} px, threshold {threshold:g}; {len(calibration)} calibration images "
          f"({time.perf_counter() - t0:.0f} s to read)")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calibration)

        def get_next(self):
            item = next(self.items, None)
            return None if item is None else {INPUT_NAME: item}

    with tempfile.TemporaryDirectory(prefix="dermaseg-int8-") as tmp:
        f32 = Path(tmp) / "f32.onnx"
        int8 = Path(tmp) / "int8.onnx"
        export_onnx(model, f32)
        t0 = time.perf_counter()
        quantize_static(str(f32), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=args.ops or None)
        ops = ", ".join(args.ops) if args.ops else "all operators"
        print(f"quantized ({ops}) in {time.perf_counter() - t0:.0f} s: "
              f"{f32.stat().st_size / 1e6:.1f} MB -> "
              f"{int8.stat().st_size / 1e6:.1f} MB")
        runs = {}
        for name, path in (("f32", f32), ("int8", int8)):
            runs[f"onnxruntime {name}"] = backends.OnnxRuntimeBackend(path, args.threads).run
            runs[f"openvino {name}"] = backends.OpenVinoBackend(path, args.threads).run
        cases = [c for c in find_cases([Path(args.val)]) if c.ground_truth]
        jsc = {"f32": [], "int8": []}
        dsc = {"f32": [], "int8": []}
        agree = []
        max_dp = 0.0
        for case in cases:
            rgb = read_image(case.image)
            gt = read_mask(case.ground_truth)
            x = preprocess(rgb, size)[None]
            masks = {}
            probs = {}
            for name in ("f32", "int8"):
                prob = probability_to_size(runs[f"onnxruntime {name}"](x)[0], rgb.shape[:2])
                probs[name] = prob
                masks[name] = prob >= threshold
                s = score(masks[name], gt, with_hd95=False)
                jsc[name].append(s.jsc)
                dsc[name].append(s.dsc)
            max_dp = max(max_dp, float(np.abs(probs["f32"] - probs["int8"]).max()))
            union = np.logical_or(masks["f32"], masks["int8"]).sum()
            agree.append(np.logical_and(masks["f32"], masks["int8"]).sum() / union if union else 1.0)
        x = rng.random((1, 3, size, size), dtype=np.float32)
        latency = {name: _latency(run, x) for name, run in runs.items()}
    mean = {k: 100 * float(np.mean(v)) for k, v in jsc.items()}
    print(f"ISIC 2017 validation, {len(cases)} images, mean over images (ONNX Runtime):")
    print(f"  JSC  f32 {mean['f32']:.2f}  int8 {mean['int8']:.2f}  difference {mean['int8'] - mean['f32']:+.2f} points")
    print(f"  DSC  f32 {100 * np.mean(dsc['f32']):.2f}  int8 {100 * np.mean(dsc['int8']):.2f}")
    print(f"  int8 masks against f32 masks: JSC mean {np.mean(agree):.4f}, min {np.min(agree):.4f}; "
          f"largest probability difference {max_dp:.3f}")
    print(f"batch-1 latency at {size} px, {args.threads} threads (median ms):")
    for name, ms in latency.items():
        print(f"  {name:<18} {ms:7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

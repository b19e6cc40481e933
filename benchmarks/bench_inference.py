#!/usr/bin/env python
"""CPU batch-1 latency of the predictor's network in each backend, side by side in one run.

Times, on the same weights and the same inputs, at the model's input size:

- ``torch``: the torch predictor's network (``Predictor(backend="torch")``: BatchNorm folded, the
  fused attention kernel when it is built, ``torch.inference_mode``);
- ``onnxruntime``: the model exported by ``ml.export_onnx``, run by ONNX Runtime (float32);
- ``openvino``: the same file in OpenVINO at float32 (the predictor's ``openvino`` backend);
- ``openvino-bf16``: OpenVINO at its default precision on a CPU with bfloat16 (AMX / AVX512-BF16);
- ``predictor``: ``Predictor()`` as the application makes it (backend ``auto``, ``ml.backends``:
  timed once per model file and machine), what it picked named in the report.

Each backend runs ``--runs`` timed calls after ``--warmup`` calls, in ``--rounds`` rounds that
alternate the backends, so that a change in the machine's load falls on all of them alike; the
report gives the median and the 10th / 90th percentile of every call's wall time, and each
backend's median relative to OpenVINO's default precision (the issue's target) and to torch.
The largest probability difference from torch on the timed input is reported alongside.

    python benchmarks/bench_inference.py                       # the shipped model, 2 threads
    python benchmarks/bench_inference.py --size 128            # random weights at 128 px
    python benchmarks/bench_inference.py --threads 1 --json out.json

``--size N`` builds the shipped architecture at N px with random weights (speed does not depend on
the weights' values) instead of loading the model file. Runtimes that are not installed are
listed as missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _model_file(args: argparse.Namespace, folder: Path) -> Path:
    from dermaseg_app import paths

    model = Path(args.model) if args.model else paths.default_model_path()
    if args.size is None:
        return model
    import torch

    from dermaseg_app.ml.registry import build_generator
    from dermaseg_app.ml.weights import ModelInfo, read_model_info, save_model

    info = read_model_info(model)
    config = dict(info.config, input_size=args.size)
    torch.manual_seed(0)
    net = build_generator(info.arch, config)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.5)  # attention switched on, as in a trained model
    random_info = ModelInfo(name=f"{info.name}-random{args.size}", version="bench", arch=info.arch,
                            config=config, input_size=args.size, threshold=info.threshold)
    return save_model(folder / f"random{args.size}.safetensors", net, random_info)


def _backends(model: Path, threads: int) -> tuple[dict[str, Callable[[Any], Any]], dict[str, str], Any, str]:
    """name -> run(batch); name -> label or why it is missing; the torch predictor; auto's pick."""
    from dermaseg_app.ml import backends
    from dermaseg_app.ml.export_onnx import cached_onnx
    from dermaseg_app.ml.predictor import Predictor

    reference = Predictor(model, "cpu", backend="torch")
    runs: dict[str, Callable[[Any], Any]] = {"torch": reference._probabilities}
    labels = {"torch": reference.backend_label}
    onnx_path = None
    for name in ("onnxruntime", "openvino", "openvino-bf16"):
        try:
            onnx_path = onnx_path or cached_onnx(model)
            runtime = backends._construct(name, onnx_path, threads)
        except Exception as exc:  # noqa: BLE001 - report it and go on with the others
            labels[name] = f"missing ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            continue
        runs[name] = runtime.run
        labels[name] = runtime.label
    auto = Predictor(model, "cpu", backend="auto")
    runs["predictor"] = auto._probabilities
    labels["predictor"] = f"Predictor(), backend auto: {auto.backend_label}"
    return runs, labels, reference, f"{auto.backend} ({auto.backend_label})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model file (default: the shipped model)")
    parser.add_argument("--size", type=int, help="random weights at this input size instead of the model file's")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for every backend (default 2)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--runs", type=int, default=60, help="timed calls per backend and round (default 60)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="dermaseg-bench-") as tmp:
        model = _model_file(args, Path(tmp))
        runs, labels, reference, auto = _backends(model, args.threads)
        size = reference.input_size
        x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
        want = reference._probabilities(x)
        difference = {name: float(np.abs(run(x) - want).max()) for name, run in runs.items()}
        for run in runs.values():
            for _ in range(args.warmup):
                run(x)
        times: dict[str, list[float]] = {name: [] for name in runs}
        for round_index in range(args.rounds):
            order = list(runs) if round_index % 2 == 0 else list(reversed(runs))
            for name in order:
                run = runs[name]
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    run(x)
                    times[name].append(time.perf_counter() - t0)

    medians = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    target = medians.get("openvino-bf16")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"model {reference.info.label()} at {size}x{size}, batch 1, {args.threads} thread(s), "
          f"{args.rounds} x {args.runs} calls each; {platform.processor() or platform.machine()}, "
          f"load average {load[0]:.1f}")
    print(f"{'backend':<15} {'median ms':>10} {'p10':>8} {'p90':>8} {'vs torch':>9} {'vs OV default':>13} "
          f"{'max |dp|':>9}  runtime")
    for name in ("torch", "onnxruntime", "openvino", "openvino-bf16", "predictor"):
        if name not in times:
            print(f"{name:<15} {'-':>10} {'':>8} {'':>8} {'':>9} {'':>13} {'':>9}  {labels.get(name, '')}")
            continue
        t = [v * 1e3 for v in times[name]]
        m = medians[name]
        vs_torch = f"{medians['torch'] / m:.2f}x"
        vs_target = f"{target / m:.2f}x" if target else "-"
        print(f"{name:<15} {m:>10.2f} {_percentile(t, 0.1):>8.2f} {_percentile(t, 0.9):>8.2f} {vs_torch:>9} "
              f"{vs_target:>13} {difference[name]:>9.1e}  {labels[name]}")
    print(f"auto picks: {auto}")
    if args.json:
        data = {"model": reference.info.label(), "size": size, "threads": args.threads, "rounds": args.rounds,
                "runs": args.runs, "load_average": list(load), "auto": auto, "labels": labels,
                "median_ms": medians, "max_prob_difference": difference,
                "p10_ms": {n: _percentile([v * 1e3 for v in t], 0.1) for n, t in times.items()},
                "p90_ms": {n: _percentile([v * 1e3 for v in t], 0.9) for n, t in times.items()}}
        Path(args.json).write_text(json.dumps(data, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

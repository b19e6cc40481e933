#!/usr/bin/env python
"""Benchmark the SLSNet network: size, cost and speed.

Reports the parameter counts (generator and discriminator), the multiply-accumulates at the
chosen input size (convolutions only, as the paper counts, and with the attention products), the
CPU batch-1 latency of the eager eval model and of the inference-optimized model
(``ml.optimize.fuse_for_inference``: BatchNorm folded, channels_last, ``torch.inference_mode``),
and on CUDA the batch-1 latency (eager and replayed from a captured CUDA graph) and the throughput
at a large batch under fp16 / bf16 autocast.

Examples::

    python benchmarks/bench_network.py                      # CPU, 2 threads, 128 px
    python benchmarks/bench_network.py --json out.json      # also write the results as JSON
    python benchmarks/bench_network.py --device cuda        # GPU path (batch-1 and throughput)
    python benchmarks/bench_network.py --compile            # also try torch.compile (slow warm-up)

Latencies are wall-clock: warm-up runs first, then the median and the best of ``--repeats`` runs.
On a shared machine the median moves with the load; the load average is recorded in the JSON,
and the single-thread CPU time per forward pass (``cpu_time_1thread_*``) is reported as a steadier
measure of the work. Under CPU contention OpenMP's spin-waiting makes 2 threads much slower than
1; ``OMP_WAIT_POLICY=PASSIVE`` (set before Python starts) avoids most of that.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dermaseg_app.ml.complexity import count_parameters, mac_breakdown  # noqa: E402
from dermaseg_app.ml.optimize import fuse_for_inference  # noqa: E402
from dermaseg_app.ml.registry import build_discriminator, build_generator  # noqa: E402

# Issue targets, for the pass/fail column of the report.
CPU_TARGET_MS = 150.0
CUDA_BATCH1_TARGET_MS = 2.0
CUDA_THROUGHPUT_TARGET = 8000.0


def _summary(times_s: list[float]) -> dict[str, float]:
    ms = sorted(t * 1e3 for t in times_s)
    return {
        "median_ms": round(statistics.median(ms), 3),
        "best_ms": round(ms[0], 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "worst_ms": round(ms[-1], 3),
        "runs": len(ms),
    }


def _time_cpu(fn: Callable[[], Any], warmup: int, repeats: int) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return _summary(times)


def _time_thread_cpu(fn: Callable[[], Any], warmup: int, repeats: int) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.thread_time()
        fn()
        times.append(time.thread_time() - t0)
    return _summary(times)


def _time_cuda(fn: Callable[[], Any], warmup: int, repeats: int) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return _summary(times)


def _trained_like(model: torch.nn.Module) -> torch.nn.Module:
    """Non-zero attention gammas and BN statistics, like a trained network (the cost of the
    forward pass does not depend on them: nothing is skipped for gamma = 0)."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            gamma = getattr(m, "gamma", None)
            if isinstance(gamma, torch.nn.Parameter):
                gamma.fill_(0.1)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=gen) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model


def bench_cpu(args: argparse.Namespace, results: dict[str, Any]) -> None:
    torch.set_num_threads(args.threads)
    size = args.size
    model = _trained_like(build_generator(args.arch, None)).eval()
    x = torch.rand(1, 3, size, size)
    out: dict[str, Any] = {"threads": torch.get_num_threads(), "batch": 1, "size": size}

    with torch.no_grad():
        out["eager_no_grad"] = _time_cpu(lambda: model(x), args.warmup, args.repeats)
    with torch.inference_mode():
        out["eager_inference_mode"] = _time_cpu(lambda: model(x), args.warmup, args.repeats)

    fused = fuse_for_inference(model, channels_last=True)
    with torch.inference_mode():
        ref = model(x)
        diff = (fused(x) - ref).abs().max().item()
        out["optimized"] = _time_cpu(lambda: fused(x), args.warmup, args.repeats)
    out["optimized"]["max_abs_diff_vs_eager"] = diff
    out["optimized"]["what"] = "fuse_for_inference(channels_last=True) + inference_mode"

    if args.compile:
        t0 = time.perf_counter()
        compiled = torch.compile(fuse_for_inference(model), dynamic=False)
        with torch.inference_mode():
            compiled(x)
            warm = time.perf_counter() - t0
            out["compiled"] = _time_cpu(lambda: compiled(x), args.warmup, args.repeats)
        out["compiled"]["warmup_s"] = round(warm, 1)

    # Work per forward pass on one thread, in CPU time of this thread: on a shared, loaded
    # machine this is far steadier than wall-clock time, and it is what an idle machine would
    # take on one core (two cores: roughly half of it, minus the parallel overhead).
    torch.set_num_threads(1)
    with torch.inference_mode():
        out["cpu_time_1thread_eager"] = _time_thread_cpu(lambda: model(x), 2, args.repeats)
        out["cpu_time_1thread_optimized"] = _time_thread_cpu(lambda: fused(x), 2, args.repeats)
    torch.set_num_threads(args.threads)

    best = min(
        v["median_ms"]
        for k, v in out.items()
        if isinstance(v, dict) and not k.startswith("cpu_time")
    )
    out["target_ms"] = CPU_TARGET_MS
    out["best_median_ms"] = best
    out["meets_target"] = best <= CPU_TARGET_MS
    results["cpu"] = out


def _capture_graph(
    fn: Callable[[torch.Tensor], torch.Tensor], static_x: torch.Tensor
) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn(static_x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_y = fn(static_x)
    return graph, static_y


def bench_cuda(args: argparse.Namespace, results: dict[str, Any]) -> None:
    if not torch.cuda.is_available():
        results["cuda"] = {"skipped": "CUDA is not available on this machine"}
        return
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    size = args.size
    model = _trained_like(build_generator(args.arch, None)).eval().to(dev)
    fused = fuse_for_inference(model).to(memory_format=torch.channels_last)
    out: dict[str, Any] = {
        "name": torch.cuda.get_device_name(dev),
        "size": size,
    }
    x1 = torch.rand(1, 3, size, size, device=dev)
    x1_cl = x1.contiguous(memory_format=torch.channels_last)

    with torch.inference_mode():
        out["batch1_eager_fp32"] = _time_cuda(lambda: model(x1), args.warmup, args.repeats)
        for name, dtype in (("fp32", None), ("fp16", torch.float16), ("bf16", torch.bfloat16)):

            def forward(t: torch.Tensor, dtype: torch.dtype | None = dtype) -> torch.Tensor:
                if dtype is None:
                    return fused(t)
                with torch.autocast("cuda", dtype=dtype, cache_enabled=False):
                    return fused(t)

            static_x = x1_cl.clone()
            graph, _ = _capture_graph(forward, static_x)
            out[f"batch1_cuda_graph_{name}"] = _time_cuda(graph.replay, args.warmup, args.repeats)

        batch = args.batch
        xb = torch.rand(batch, 3, size, size, device=dev).contiguous(
            memory_format=torch.channels_last
        )
        for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):

            def run_batch(dtype: torch.dtype = dtype) -> torch.Tensor:
                with torch.autocast("cuda", dtype=dtype):
                    return fused(xb)

            t = _time_cuda(run_batch, args.warmup, max(5, args.repeats // 3))
            t["batch"] = batch
            t["images_per_s"] = round(batch / (t["median_ms"] / 1e3), 1)
            out[f"throughput_{name}"] = t

    out["peak_memory_mib"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
    best1 = min(out[k]["median_ms"] for k in out if k.startswith("batch1_"))
    best_tp = max(out[k]["images_per_s"] for k in out if k.startswith("throughput_"))
    out["targets"] = {
        "batch1_ms": CUDA_BATCH1_TARGET_MS,
        "images_per_s": CUDA_THROUGHPUT_TARGET,
        "best_batch1_median_ms": best1,
        "best_images_per_s": best_tp,
        "batch1_met": best1 <= CUDA_BATCH1_TARGET_MS,
        "throughput_met": best_tp >= CUDA_THROUGHPUT_TARGET,
    }
    results["cuda"] = out


def _print_report(results: dict[str, Any]) -> None:
    m = results["model"]
    print(f"SLSNet ({results['arch']}), input {results['size']}x{results['size']}")
    print(f"  generator params     {m['generator_params']:,}")
    print(f"  discriminator params {m['discriminator_params']:,}")
    print(f"  MACs (convolutions)  {m['macs_conv'] / 1e9:.3f} G")
    print(f"  MACs (+ attention)   {m['macs_total'] / 1e9:.3f} G")
    for section in ("cpu", "cuda"):
        if section not in results:
            continue
        data = results[section]
        print(f"{section.upper()}:")
        if "skipped" in data:
            print(f"  skipped: {data['skipped']}")
            continue
        for key, val in data.items():
            if isinstance(val, dict) and "median_ms" in val:
                extra = f", {val['images_per_s']:,.0f} images/s" if "images_per_s" in val else ""
                print(
                    f"  {key:28s} median {val['median_ms']:9.3f} ms  best {val['best_ms']:9.3f} ms"
                    f"{extra}"
                )
            elif key in ("threads", "name", "meets_target", "best_median_ms", "targets"):
                print(f"  {key}: {val}")
    print(f"load average at the end: {results['loadavg']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--arch", default="slsnet")
    p.add_argument("--device", choices=["cpu", "cuda", "all"], default="cpu")
    p.add_argument("--size", type=int, default=128, help="input side in pixels (multiple of 8)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--batch", type=int, default=512, help="batch for the CUDA throughput test")
    p.add_argument("--compile", action="store_true", help="also time torch.compile on the CPU")
    p.add_argument("--json", type=Path, help="write the results to this JSON file")
    args = p.parse_args(argv)
    if args.size % 8:
        p.error("--size must be a multiple of 8")

    gen = build_generator(args.arch, None)
    macs = mac_breakdown(gen, args.size)
    results: dict[str, Any] = {
        "arch": args.arch,
        "size": args.size,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
        "model": {
            "generator_params": count_parameters(gen),
            "discriminator_params": count_parameters(build_discriminator(args.arch, None)),
            "macs_conv": macs.conv,
            "macs_attention": macs.attention,
            "macs_total": macs.total,
        },
    }
    if args.device in ("cpu", "all"):
        bench_cpu(args, results)
    if args.device in ("cuda", "all"):
        bench_cuda(args, results)
    results["loadavg"] = [round(v, 2) for v in os.getloadavg()]
    _print_report(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

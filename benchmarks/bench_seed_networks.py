#!/usr/bin/env python
"""Size, cost and CPU speed of every registered architecture (docs/seed-networks.md).

For each architecture's default configuration: parameters, MACs (convolutions; with the attention
products for SLSNet) at the paper's input size and at 128 px, and the CPU time of one batch-1
forward pass on one thread (eval mode, ``torch.inference_mode``, after warm-up runs; the median
wall time and the median process CPU time of ``--repeats`` runs).

    flock /tmp/dermaseg-pytest.lock nice -n 10 .venv/bin/python benchmarks/bench_seed_networks.py \
        --json runs/seed-networks.json

The wall time moves with the machine's load; the CPU time is the steadier measure of the work.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch


def _time(net: torch.nn.Module, size: int, repeats: int, warmup: int) -> tuple[float, float]:
    x = torch.rand(1, 3, size, size)
    with torch.inference_mode():
        for _ in range(warmup):
            net(x)
        wall, cpu = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            net(x)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return 1000 * statistics.median(wall), 1000 * statistics.median(cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", action="append", help="only these (default: all registered)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from dermaseg_app.ml import registry
    from dermaseg_app.ml.complexity import count_macs, count_parameters

    rows = []
    for arch in args.arch or list(registry.ARCHITECTURES):
        torch.manual_seed(0)
        config = registry.default_config(arch)
        net = registry.build_generator(arch, config).eval()
        paper = int(config["input_size"])
        row = {"arch": arch, "parameters": count_parameters(net), "input_size": paper}
        for size in sorted({paper, 128}):
            row[f"macs_{size}"] = count_macs(net, size)
            row[f"macs_attention_{size}"] = count_macs(net, size, include_attention=True)
            repeats = args.repeats if row[f"macs_{size}"] < 20e9 else max(2, args.repeats // 2)
            row[f"ms_{size}"], row[f"cpu_ms_{size}"] = _time(net, size, repeats, args.warmup)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    print("| network | parameters | input | MACs at input | MACs at 128 | CPU ms at input | CPU ms at 128 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        s = r["input_size"]
        print(f"| {r['arch']} | {r['parameters']:,} | {s} | {r[f'macs_{s}'] / 1e9:.3f} G | {r['macs_128'] / 1e9:.3f} G "
              f"| {r[f'cpu_ms_{s}']:.0f} | {r['cpu_ms_128']:.0f} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"load_average": os.getloadavg(), "torch": torch.__version__, "threads": 1, "rows": rows},
                      handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

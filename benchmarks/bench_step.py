#!/usr/bin/env python
"""The SLSNet training step on the CPU, today's code against an older commit, side by side.

One step is the engine's (ml.training.train) GAN step at the paper's batch of 8: G forward; D on
half a batch of real and half a batch of generated pairs and its update; G's loss (adversarial
BCE + 0.1 L1 + 0.5 soft Jaccard) and update. Random inputs, fixed seed; the first ``--warmup``
steps are not timed. The figure is **CPU time per step** (``time.process_time``: both threads
counted, so another job on the machine moves it far less than wall time) and wall time.

New code runs the engine's own step (``ml.training.make_step``, which also reads the losses back);
code older than it runs the step written out here (what its engine did per batch).

Side by side: ``--vs REV`` checks REV out into a temporary git worktree and runs the step
alternately in child processes, importing ``dermaseg_app`` from this checkout
("new") and from REV ("old"), A B A B ..., and prints the median of each and the ratio old/new
pair by pair::

    .venv/bin/python benchmarks/bench_step.py --vs 550a91f --sizes 128 64 --rounds 3

One setting in this process (what ``--vs`` runs in each child)::

    .venv/bin/python benchmarks/bench_step.py --sizes 128 --threads 2 [--precision auto|fp32|bf16]
        [--channels-last] [--compile] [--batch 8] [--mode gan|supervised] [--json FILE]

``--precision auto`` is what training uses (``ml.cpu_speed.autocast_dtype``): bfloat16 autocast
where the CPU has bf16 units (AMX or AVX512-BF16), float32 elsewhere. Code older than the fused
attention kernel ignores the settings it does not know (they did not exist: it runs float32).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_here(args: argparse.Namespace) -> list[dict]:
    sys.path.insert(0, str(Path(args.code).resolve() if args.code else ROOT))
    import torch
    import torch.nn.functional as F

    from dermaseg_app.ml import registry
    from dermaseg_app.ml.training import soft_jaccard_loss

    try:  # the engine's own step (ml.training.make_step); code older than it: the step written out below
        from dermaseg_app.ml.training import TrainConfig, make_step
    except ImportError:
        TrainConfig = make_step = None

    torch.set_num_threads(args.threads)
    try:  # today's code: the kernel and the precision choice; older code has neither
        from dermaseg_app.ml import cpu_speed, fast_attention
    except ImportError:
        cpu_speed = fast_attention = None
    fused = False
    if fast_attention is not None and not args.no_fused:
        fused = fast_attention.build() is not None
    dtype = None
    if cpu_speed is not None:
        dtype = cpu_speed.autocast_dtype(args.precision)
    rows = []
    for size in args.sizes:
        cfg = registry.default_config("slsnet") | {"input_size": size}
        torch.manual_seed(0)
        g = registry.build_generator("slsnet", cfg)
        d = registry.build_discriminator("slsnet", cfg)
        x = torch.rand(args.batch, 3, size, size)
        y = (torch.rand(args.batch, 1, size, size) > 0.5).float()
        if args.channels_last:
            g, d = g.to(memory_format=torch.channels_last), d.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        if make_step is not None:  # Adam 2e-4 betas (0.5, 0.999), the paper's loss weights: TrainConfig's defaults
            recipe = TrainConfig(adversarial=args.mode == "gan", channels_last=args.channels_last, compile=args.compile)
            engine_step = make_step(recipe, g, d, "cpu", autocast=dtype)

            def step() -> None:
                engine_step.begin()
                engine_step(x, y, adversarial=args.mode == "gan", global_step=0)
        else:  # the engine's step as the single-module engine did it (before ml.training.step)
            opt_g = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
            opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
            g_logits, d_logits = g.forward_logits, d.forward_logits
            if args.compile:
                g_logits = torch.compile(g_logits, dynamic=False)
                d_logits = torch.compile(d_logits, dynamic=False)

            def step() -> None:
                with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                    logits = g_logits(x)
                    prob = torch.sigmoid(logits.float())
                    loss = 0.1 * (prob - y).abs().mean() + 0.5 * soft_jaccard_loss(prob, y)
                    if args.mode == "gan":
                        h = args.batch // 2
                        dr = d_logits(x[:h], y[:h]).float()
                        df = d_logits(x[h:], prob[h:].detach()).float()
                        ld = 0.5 * (F.binary_cross_entropy_with_logits(dr, torch.ones_like(dr))
                                    + F.binary_cross_entropy_with_logits(df, torch.zeros_like(df)))
                        opt_d.zero_grad(set_to_none=True)
                        ld.backward()
                        opt_d.step()
                        for p in d.parameters():
                            p.requires_grad_(False)
                        a = d_logits(x, prob).float()
                        for p in d.parameters():
                            p.requires_grad_(True)
                        loss = loss + F.binary_cross_entropy_with_logits(a, torch.ones_like(a))
                    else:
                        loss = loss + F.binary_cross_entropy_with_logits(logits.float(), y)
                opt_g.zero_grad(set_to_none=True)
                loss.backward()
                opt_g.step()

        cpu, wall = [], []
        for i in range(args.warmup + args.steps):
            c0, w0 = time.process_time(), time.perf_counter()
            step()
            if i >= args.warmup:
                cpu.append(time.process_time() - c0)
                wall.append(time.perf_counter() - w0)
        rows.append({"size": size, "batch": args.batch, "mode": args.mode, "threads": args.threads,
                     "fused_attention": fused, "autocast": str(dtype).replace("torch.", "") if dtype else "fp32",
                     "channels_last": args.channels_last, "compile": args.compile,
                     "cpu_s": statistics.median(cpu), "wall_s": statistics.median(wall),
                     "cpu_steps": [round(v, 3) for v in cpu]})
    return rows


def side_by_side(args: argparse.Namespace, rest: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="dermaseg-old-") as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), args.vs],
                       check=True, capture_output=True)
        try:
            results: dict[str, list[list[dict]]] = {"old": [], "new": []}
            for r in range(args.rounds):
                for name, code in (("old", old), ("new", ROOT)):
                    out = Path(tmp) / f"{name}-{r}.json"
                    cmd = [sys.executable, __file__, "--code", str(code), "--json", str(out), *rest]
                    subprocess.run(cmd, check=True, env=os.environ | {"PYTHONDONTWRITEBYTECODE": "1"})
                    results[name].append(json.loads(out.read_text()))
                    row = results[name][-1]
                    print(f"round {r + 1} {name}: " + ", ".join(
                        f"{x['size']} px {x['cpu_s']:.3f} s CPU / {x['wall_s']:.3f} s wall" for x in row), flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], capture_output=True)
    summary = []
    print(f"\nGAN step, batch {args.batch}, {args.threads} threads; new = this checkout, old = {args.vs}")
    for i, size in enumerate(args.sizes):
        old_cpu = [res[i]["cpu_s"] for res in results["old"]]
        new_cpu = [res[i]["cpu_s"] for res in results["new"]]
        ratios = [o / n for o, n in zip(old_cpu, new_cpu, strict=True)]
        new_row = results["new"][0][i]
        line = {"size": size, "old_cpu_s": statistics.median(old_cpu), "new_cpu_s": statistics.median(new_cpu),
                "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
                "new_settings": {k: new_row[k] for k in ("fused_attention", "autocast", "channels_last", "compile")},
                "old_wall_s": statistics.median(res[i]["wall_s"] for res in results["old"]),
                "new_wall_s": statistics.median(res[i]["wall_s"] for res in results["new"])}
        summary.append(line)
        print(f"{size:4d} px: old {line['old_cpu_s']:.3f} s CPU/step, new {line['new_cpu_s']:.3f} s CPU/step: "
              f"{line['ratio_median']:.2f}x faster (pairs {line['ratio_min']:.2f}-{line['ratio_max']:.2f}); "
              f"wall {line['old_wall_s']:.3f} -> {line['new_wall_s']:.3f} s; new: {line['new_settings']}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--vs", metavar="REV", help="compare with this git revision, side by side")
    ap.add_argument("--rounds", type=int, default=3, help="with --vs: alternations of old and new")
    ap.add_argument("--code", help=argparse.SUPPRESS)
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 64])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--mode", choices=("gan", "supervised"), default="gan")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--compile", action="store_true", help="torch.compile G's and D's forward (inductor)")
    ap.add_argument("--no-fused", action="store_true", help="keep the SDPA attention (new code)")
    ap.add_argument("--json")
    args, _ = ap.parse_known_args()
    if args.vs:
        rest = [a for a in sys.argv[1:]]
        # drop --vs REV, --rounds N and --json FILE: the children get the rest
        for flag in ("--vs", "--rounds", "--json"):
            while flag in rest:
                i = rest.index(flag)
                del rest[i:i + 2]
        return side_by_side(args, rest)
    rows = run_here(args)
    for r in rows:
        print(f"{r['size']} px batch {r['batch']} {r['mode']}: {r['cpu_s']:.3f} s CPU/step, {r['wall_s']:.3f} s wall "
              f"(fused attention {r['fused_attention']}, {r['autocast']}, channels_last {r['channels_last']}, "
              f"compile {r['compile']}; CPU s per step {r['cpu_steps']})", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python
"""Benchmark one training step of SLSNet: seconds per step for the settings that decide a plan.

A step is what ``ml.training.train`` does per batch: G forward; for the GAN, D on a half batch
of real and a half batch of generated pairs and its update; G's loss (adversarial BCE, or pixel
BCE when supervised, + lambda L1 + alpha soft Jaccard) and update. Random inputs; the first
``--warmup`` steps are not timed. Prints one line per setting and the median.

    .venv/bin/python benchmarks/bench_training.py                       # CPU defaults below
    .venv/bin/python benchmarks/bench_training.py --sizes 64 128 --threads 1 2 --modes supervised gan frozen
    .venv/bin/python benchmarks/bench_training.py --device cuda --sizes 128 --batch 8 32 --amp

Fine-tuning benchmark (the clinical photographs: a new domain for a dermoscopy model)::

    .venv/bin/python benchmarks/bench_training.py finetune --base models/slsnet_isic2017.safetensors \
        [--n-finetune 50] [--epochs 20] [--freeze-encoder] [--replay-share 0.5] [--seed 0]

Weight-space interpolation of a finished fine-tuning run with its base (WiSE-FT)::

    .venv/bin/python benchmarks/bench_training.py interpolate --base models/slsnet_isic2017.safetensors \
        --work runs/finetune-bench/final [--alphas 0 0.25 0.5 0.75 1]

The finetune benchmark splits /work/shared/data/clinical/finetune with a fixed seed into a fine-tuning part (of which
the engine holds 10% out for epoch selection) and a held-out part, scores the base model on the
held-out part and on ISIC 2017 val, runs the fine-tuning (replaying ISIC 2017 train), scores
the result again and reports the wall and CPU time.

Modes: ``supervised`` (G alone), ``gan`` (the paper's step), ``frozen`` (supervised with the
encoder frozen, as ``dermaseg finetune --freeze-encoder``).
On a shared CPU, one thread per process is often faster than two (no oversubscription): measure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dermaseg_app.ml import registry  # noqa: E402
from dermaseg_app.ml.training import freeze_encoder, soft_jaccard_loss  # noqa: E402


def time_steps(size: int, batch: int, mode: str, steps: int, warmup: int, device: torch.device,
               amp: bool) -> list[float]:
    cfg = registry.default_config("slsnet") | {"input_size": size}
    torch.manual_seed(0)
    g = registry.build_generator("slsnet", cfg).to(device)
    d = registry.build_discriminator("slsnet", cfg).to(device)
    if mode == "frozen":
        freeze_encoder(g)
    opt_g = torch.optim.Adam([p for p in g.parameters() if p.requires_grad], 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
    x = torch.rand(batch, 3, size, size, device=device)
    y = (torch.rand(batch, 1, size, size, device=device) > 0.5).float()
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            logits = g.forward_logits(x)
            prob = torch.sigmoid(logits.float())
            loss = 0.1 * (prob - y).abs().mean() + 0.5 * soft_jaccard_loss(prob, y)
            if mode == "gan":
                h = batch // 2
                dr = d.forward_logits(x[:h], y[:h]).float()
                df = d.forward_logits(x[h:], prob[h:].detach()).float()
                ld = 0.5 * (F.binary_cross_entropy_with_logits(dr, torch.ones_like(dr))
                            + F.binary_cross_entropy_with_logits(df, torch.zeros_like(df)))
                opt_d.zero_grad()
                ld.backward()
                opt_d.step()
                a = d.forward_logits(x, prob).float()
                loss = loss + F.binary_cross_entropy_with_logits(a, torch.ones_like(a))
            else:
                loss = loss + F.binary_cross_entropy_with_logits(logits.float(), y)
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def split_clinical(source: Path, work: Path, n_finetune: int, seed: int) -> tuple[Path, Path, list[str]]:
    """Copy a fixed-seed split of ``source`` into work/finetune and work/heldout (images/ + masks/)."""
    import shutil

    import numpy as np

    from dermaseg_app.core.dataset import find_cases

    cases = sorted((c for c in find_cases([source]) if c.ground_truth is not None), key=lambda c: c.stem)
    order = np.random.default_rng(seed).permutation(len(cases))
    parts = {"finetune": [cases[i] for i in order[:n_finetune]], "heldout": [cases[i] for i in order[n_finetune:]]}
    for name, chosen in parts.items():
        for sub in ("images", "masks"):
            folder = work / name / sub
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
        for c in chosen:
            shutil.copy2(c.image, work / name / "images" / c.image.name)
            shutil.copy2(c.ground_truth, work / name / "masks" / f"{c.stem}.png")
    return work / "finetune", work / "heldout", [c.stem for c in parts["heldout"]]


def score_model(model: Path, folders: dict[str, Path], pack_dir: str | None) -> dict[str, dict[str, float]]:
    from dermaseg_app.ml.data import cached_pack
    from dermaseg_app.ml.training import evaluate_pack
    from dermaseg_app.ml.weights import load_model

    net, info = load_model(model, "cpu")
    out = {}
    for name, folder in folders.items():
        pack = cached_pack(folder, info.input_size, full_masks=True, cache_dir=pack_dir)
        s = evaluate_pack(net, pack, torch.device("cpu"), info.threshold)
        out[name] = {"jsc": round(s.mean.jsc, 4), "dsc": round(s.mean.dsc, 4), "acc": round(s.mean.acc, 4),
                     "jsc_th": round(s.mean.jsc_th, 4), "n": s.n}
    return out


def finetune_benchmark(args: argparse.Namespace) -> int:
    from dermaseg_app.ml.training import TrainConfig, TrainFinished, train

    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work)
    ft_dir, held_dir, held = split_clinical(Path(args.clinical), work, args.n_finetune, args.seed)
    folders = {"clinical_heldout": held_dir, "isic2017_val": Path(args.isic_val)}
    before = score_model(Path(args.base), folders, args.pack_dir)
    print(f"before: {before}", flush=True)
    out = work / "finetuned.safetensors"
    cfg = TrainConfig(
        data=[str(ft_dir)], val=[], val_fraction=0.1, out=str(out), run_dir=str(work / "run"),
        base_model=args.base, replay=[args.replay] if args.replay_share > 0 else [],
        replay_share=args.replay_share, freeze_encoder=args.freeze_encoder, adversarial=args.adversarial,
        warmup_epochs=args.warmup,
        epochs=args.epochs, lr=args.lr, beta1=0.9, lr_schedule="cosine", ema_decay=args.ema,
        seed=args.seed, num_threads=args.threads, pack_dir=args.pack_dir, model_version="ft-bench",
        base_val=list(args.base_val), base_val_tolerance=args.base_val_tolerance, l2sp_weight=args.l2sp,
        freeze_bn_stats=args.freeze_bn_stats,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    finished = None
    for event in train(cfg):
        if type(event).__name__ == "EpochEnd":
            print(f"  epoch {event.epoch}: G {event.train_losses.get('g', 0):.4f} "
                  f"val(10% of fine-tune part) JSC {event.val.jsc:.4f}"
                  + (f" base val JSC {event.base_val.jsc:.4f}{'' if event.qualifies else ' (too low)'}"
                     if event.base_val is not None else "")
                  + f"{' best' if event.is_best else ''} {event.seconds:.0f}s", flush=True)
        if type(event).__name__ == "TrainStarted" and event.base_scores:
            print(f"  base model before fine-tuning: {event.base_scores}", flush=True)
        if isinstance(event, TrainFinished):
            finished = event
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    after = score_model(out, folders, args.pack_dir)
    result = {
        "base": args.base, "n_finetune_part": args.n_finetune, "heldout": len(held), "seed": args.seed,
        "epochs": args.epochs, "freeze_encoder": args.freeze_encoder, "adversarial": args.adversarial, "replay_share": args.replay_share,
        "lr": args.lr, "base_val": args.base_val, "base_val_tolerance": args.base_val_tolerance,
        "l2sp": args.l2sp, "freeze_bn_stats": args.freeze_bn_stats, "fell_back_to_base": finished.fell_back_to_base if finished else None,
        "threads": torch.get_num_threads(), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
        "best_epoch": finished.best_epoch if finished else None, "before": before, "after": after,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def interpolation_benchmark(args: argparse.Namespace) -> int:
    """Weight-space interpolation between the base and a fine-tuned model (WiSE-FT,
    Wortsman et al. 2022): ``(1 - a) * base + a * fine-tuned`` for each ``a``, batch-norm
    statistics included, scored on the engine's held-out 10% of the fine-tuning part (what a
    selection rule may look at), the held-out clinical part and ISIC 2017 val."""
    import shutil

    from dermaseg_app.ml.data import _cases
    from dermaseg_app.ml.training import holdout_indices
    from dermaseg_app.ml.weights import load_model, save_model

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    ft_val = work / "finetune-val"
    cases = _cases(work / "finetune")
    for sub in ("images", "masks"):
        shutil.rmtree(ft_val / sub, ignore_errors=True)
        (ft_val / sub).mkdir(parents=True)
    for i in holdout_indices(len(cases), 0.1, args.seed):
        shutil.copy2(cases[i].image, ft_val / "images" / cases[i].image.name)
        shutil.copy2(cases[i].ground_truth, ft_val / "masks" / f"{cases[i].stem}.png")
    base, _ = load_model(args.base, "cpu")
    tuned, info = load_model(work / "finetuned.safetensors", "cpu")
    sb, sf = base.state_dict(), tuned.state_dict()
    folders = {"finetune_val": ft_val, "clinical_heldout": work / "heldout", "isic2017_val": Path(args.isic_val)}
    rows = []
    for a in args.alphas:
        mixed = {k: (sb[k].float() * (1 - a) + sf[k].float() * a).to(sb[k].dtype)
                 if sb[k].is_floating_point() else sf[k] for k in sb}
        base.load_state_dict(mixed)
        path = work / f"interpolated-{a:g}.safetensors"
        save_model(path, base, info)
        rows.append({"alpha": a, **score_model(path, folders, args.pack_dir)})
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "interpolate":
        ap = argparse.ArgumentParser(prog="bench_training.py interpolate",
                                     description=interpolation_benchmark.__doc__)
        ap.add_argument("interpolate")
        ap.add_argument("--base", required=True, help="the model the fine-tuning started from")
        ap.add_argument("--work", required=True,
                        help="a finished `finetune` benchmark's --work folder (finetuned.safetensors, finetune/, heldout/)")
        ap.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
        ap.add_argument("--isic-val", default="/work/shared/data/isic2017/val")
        ap.add_argument("--seed", type=int, default=0, help="the fine-tuning run's seed (its held-out 10%%)")
        ap.add_argument("--threads", type=int, default=1)
        ap.add_argument("--pack-dir")
        ap.add_argument("--json")
        return interpolation_benchmark(ap.parse_args())
    if len(sys.argv) > 1 and sys.argv[1] == "finetune":
        ap = argparse.ArgumentParser(prog="bench_training.py finetune")
        ap.add_argument("finetune")
        ap.add_argument("--base", required=True)
        ap.add_argument("--clinical", default="/work/shared/data/clinical/finetune")
        ap.add_argument("--isic-val", default="/work/shared/data/isic2017/val")
        ap.add_argument("--replay", default="/work/shared/data/isic2017/train")
        ap.add_argument("--replay-share", type=float, default=0.5)
        ap.add_argument("--n-finetune", type=int, default=50)
        ap.add_argument("--epochs", type=int, default=20)
        ap.add_argument("--lr", type=float, default=2e-4)
        ap.add_argument("--ema", type=float, default=0.99)
        ap.add_argument("--freeze-encoder", action="store_true")
        ap.add_argument("--adversarial", action="store_true", help="the paper's GAN loss (fresh D)")
        ap.add_argument("--warmup", type=float, default=0.0, help="supervised epochs before the GAN")
        ap.add_argument("--base-val", action="append", default=[],
                        help="base-domain validation folder for epoch selection (e.g. ISIC 2017 val; repeatable)")
        ap.add_argument("--base-val-tolerance", type=float, default=0.01)
        ap.add_argument("--l2sp", type=float, default=0.0, help="L2-SP weight (distance from the base weights)")
        ap.add_argument("--freeze-bn-stats", action="store_true", help="keep the base model's batch-norm statistics")
        ap.add_argument("--seed", type=int, default=0)
        ap.add_argument("--threads", type=int, default=1)
        ap.add_argument("--pack-dir")
        ap.add_argument("--work", default=str(ROOT / "runs" / "finetune-bench"))
        ap.add_argument("--json")
        return finetune_benchmark(ap.parse_args())
    return steps_benchmark()


def steps_benchmark() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--batch", type=int, nargs="+", default=[8])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--modes", nargs="+", default=["supervised", "gan", "frozen"],
                    choices=["supervised", "gan", "frozen"])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    device = torch.device(args.device)
    results = []
    threads = args.threads if device.type == "cpu" else [torch.get_num_threads()]
    for n in threads:
        torch.set_num_threads(n)
        for size in args.sizes:
            for batch in args.batch:
                for mode in args.modes:
                    ts = time_steps(size, batch, mode, args.steps, args.warmup, device, args.amp)
                    med = statistics.median(ts)
                    row = {"device": str(device), "threads": n, "size": size, "batch": batch, "mode": mode,
                           "median_s": round(med, 4), "images_per_s": round(batch / med, 2),
                           "steps_s": [round(v, 3) for v in ts]}
                    results.append(row)
                    print(f"{device} threads={n} size={size} batch={batch} {mode:10s} "
                          f"{med:.3f} s/step  {batch / med:.1f} img/s  ({', '.join(f'{v:.2f}' for v in ts)})",
                          flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

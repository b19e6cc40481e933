#!/usr/bin/env python
"""Benchmark one training step of SLSNet: seconds per step for the settings that decide a plan.

A step is what ``ml.training.train`` does per batch: G forward; for the GAN, D on a half batch
of real and a half batch of generated pairs and its update; G's loss (adversarial BCE, or pixel
BCE when supervised, + lambda L1 + alpha soft Jaccard) and update. Random inputs; the first
``--warmup`` steps are not timed. Prints one line per setting and the median.

    .venv/bin/python benchmarks/bench_training.py                       # CPU defaults below
    .venv/bin/python benchmarks/bench_training.py --sizes 64 128 --threads 1 2 --modes supervised gan frozen
    .venv/bin/python benchmarks/bench_training.py --device cuda --sizes 128 --batch 8 32 --amp
    .venv/bin/python benchmarks/bench_training.py --device cuda --sizes 128 --batch 8 --modes gan \
        --device-data --compile [reduce-overhead] --amp

``--device-data`` puts the batch preparation in the timed step the engine's way with
``TrainConfig.device_data``: a uint8 pack on the device, the batch indexed there and augmented by
``ml.augment_torch``; ``--cpu-data`` the default engine path instead (OpenCV augmentation one
batch ahead in a thread, pinned copy to the device); without either the step reuses one random
batch. ``--compile [MODE]`` compiles G's and D's forward functions as the engine does (the first
steps compile: give ``--warmup`` a few steps).

The data path alone, per batch (OpenCV in ml.data.make_batch against ml.augment_torch)::

    .venv/bin/python benchmarks/bench_training.py augment [--device cuda] [--size 128] [--batch 8] [--compile]

The whole engine (ml.training.train: data path, step, EMA, loss read-back) on a pack, images/s
from its progress events::

    .venv/bin/python benchmarks/bench_training.py engine --data PACK.npz --device cuda --steps 200 \
        [--device-data] [--compile [MODE]] [--amp] [--supervised]

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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dermaseg_app.ml import registry  # noqa: E402
from dermaseg_app.ml.training import TrainConfig, freeze_encoder, make_step  # noqa: E402


class BatchSource:
    """Where a timed step gets its batch: ``fixed`` (one random batch reused), ``cpu`` (the
    engine's default path, ml.training.CpuBatches: ml.data.make_batch with OpenCV augmentation one
    batch ahead in a thread, pinned, copied to the device) or ``device`` (ml.training.DeviceBatches,
    TrainConfig.device_data: a uint8 pack on the device, indexed and augmented there by
    ml.augment_torch, uncompiled). Random images, 256 of them; ``steps`` batches in all."""

    def __init__(self, kind: str, size: int, batch: int, device: torch.device, steps: int, n: int = 256) -> None:
        import numpy as np

        from dermaseg_app.ml.data import BatchItem, Pack
        from dermaseg_app.ml.training import CpuBatches, DeviceBatches

        self.kind, self.step = kind, 0
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        masks = rng.random((n, size, size)) > 0.5
        pack = Pack(images=images, masks=masks, stems=[str(i) for i in range(n)], size=size)
        self.x = torch.from_numpy(images[:batch]).permute(0, 3, 1, 2).float().div(255).to(device)
        self.y = torch.from_numpy(masks[:batch, None]).float().to(device)
        self.batches = None
        if kind in ("cpu", "device"):
            cfg = TrainConfig(seed=0, batch_size=batch, device_data=kind == "device")
            self.batches = (DeviceBatches if kind == "device" else CpuBatches)(cfg, [pack], device)
            plan = [[BatchItem(0, (step * batch + j) % n) for j in range(batch)] for step in range(steps)]
            self.batches.start(0, plan, 0)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        step, self.step = self.step, self.step + 1
        if self.batches is None:
            return self.x, self.y
        return self.batches.get(step)

    def close(self) -> None:
        if self.batches is not None:
            self.batches.close()


def time_steps(size: int, batch: int, mode: str, steps: int, warmup: int, device: torch.device,
               amp: bool, data: str = "fixed", compile_mode: str | None = None,
               fused_adam: bool = False) -> list[float]:
    """Seconds of each timed step of the engine's own step (ml.training.make_step: Adam 2e-4
    betas (0.5, 0.999), 0.1 L1 + 0.5 soft Jaccard + adversarial or pixel BCE, losses read back)."""
    cfg = registry.default_config("slsnet") | {"input_size": size}
    torch.manual_seed(0)
    g = registry.build_generator("slsnet", cfg).to(device)
    d = registry.build_discriminator("slsnet", cfg).to(device)
    if mode == "frozen":
        freeze_encoder(g)
    recipe = TrainConfig(adversarial=mode == "gan", compile=bool(compile_mode), compile_mode=compile_mode or "default")
    fused = {"fused": True} if fused_adam else {}  # the engine uses torch's default (foreach on CUDA)
    step = make_step(recipe, g, d, device.type, autocast=torch.bfloat16 if amp and device.type == "cuda" else None,
                     **fused)
    source = BatchSource(data, size, batch, device, warmup + steps)
    times = []
    try:
        for i in range(warmup + steps):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            step.begin()
            x, y = source.next()
            step(x, y, adversarial=mode == "gan", global_step=i)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    finally:
        source.close()
    return times


def augment_benchmark(args: argparse.Namespace) -> int:
    """Seconds per batch of the two data paths on the bundled sample images (resized to
    ``--size``): OpenCV (ml.data.make_batch: per image flips, gamma LUT, CLAHE via Lab, then the
    float conversion) against ml.augment_torch (index a uint8 pack on the device, draw, augment)."""
    import numpy as np

    from dermaseg_app.core.imageio import read_image
    from dermaseg_app.ml.augment import AugmentConfig
    from dermaseg_app.ml.augment_torch import augment_batch, draw_params
    from dermaseg_app.ml.data import BatchItem, Pack, make_batch
    from dermaseg_app.ml.preprocessing import resize_rgb

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    paths = sorted((ROOT / "resources" / "samples" / "images").glob("*.jpg"))
    images = np.stack([resize_rgb(read_image(p), args.size) for p in paths])
    masks = np.zeros(images.shape[:3], bool)
    masks[:, args.size // 4: args.size // 2] = True
    pack = Pack(images=images, masks=masks, stems=[p.stem for p in paths], size=args.size)
    dev_images = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).contiguous()
    dev_masks = torch.from_numpy(masks).to(device)[:, None].contiguous()
    augment_fn = torch.compile(augment_batch, dynamic=False, mode=args.compile) if args.compile else augment_batch
    rows = []
    for label, cfg in (("paper (CLAHE p=0.5)", AugmentConfig()), ("CLAHE always", AugmentConfig(clahe_probability=1.0)),
                       ("flips + gamma", AugmentConfig(clahe_probability=0.0))):
        for path in ("opencv", "torch"):
            times = []
            for i in range(args.warmup + args.repeats):
                items = [BatchItem(0, (i * args.batch + j) % len(pack)) for j in range(args.batch)]
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                rng = np.random.default_rng([0, 2, i])
                if path == "opencv":
                    x, _ = make_batch(items, [pack], rng, cfg)
                else:
                    idx = torch.tensor([it.index for it in items]).to(device, non_blocking=True)
                    x, _ = augment_fn(dev_images.index_select(0, idx), dev_masks.index_select(0, idx),
                                      draw_params(len(items), rng, cfg), cfg)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if i >= args.warmup:
                    times.append(time.perf_counter() - t0)
            med = statistics.median(times)
            rows.append({"augment": label, "path": path, "device": str(device) if path == "torch" else "cpu",
                         "compiled": bool(args.compile) and path == "torch",
                         "size": args.size, "batch": args.batch, "threads": args.threads,
                         "median_ms": round(1000 * med, 3), "images_per_s": round(args.batch / med, 1)})
            print(f"{label:20s} {path:6s} on {rows[-1]['device']:6s} {1000 * med:8.2f} ms/batch of {args.batch} "
                  f"at {args.size} px  {args.batch / med:9.1f} img/s", flush=True)
    if device.type != "cpu":  # the same decisions on the CPU: how far the device's numbers are
        cfg = AugmentConfig(clahe_probability=1.0)
        params = draw_params(len(pack), np.random.default_rng(0), cfg)
        on_dev, _ = augment_fn(dev_images, dev_masks, params, cfg)
        on_cpu, _ = augment_batch(dev_images.cpu(), dev_masks.cpu(), params, cfg)
        diff = (on_dev.cpu() - on_cpu).abs() * 255
        print(f"CLAHE on {device} vs the CPU, same decisions: mean |diff| {float(diff.mean()):.4f}, "
              f"max {float(diff.max()):.2f} 8-bit levels, {float((diff > 0.5).double().mean()):.2%} of values differ")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


def engine_benchmark(args: argparse.Namespace) -> int:
    """images/s of ml.training.train itself (data path, step, EMA, loss read-back) for ``--steps``
    steps on a pack or folder, without validation; the first ``--warmup`` steps are left out."""
    import tempfile

    from dermaseg_app.ml.training import StepProgress, TrainConfig, train

    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(
            data=[args.data], val=[], val_fraction=0.0, run_dir=tmp, input_size=args.size, epochs=10_000,
            batch_size=args.batch, adversarial=not args.supervised,
            ema_decay=args.ema, device=args.device, num_threads=args.threads, amp=args.amp,
            device_data=args.device_data, compile=args.compile is not None,
            compile_mode=args.compile or "default", pack_dir=args.pack_dir, seed=0,
        )
        t0 = time.perf_counter()
        rates: list[float] = []
        events = train(cfg)
        for e in events:  # as many epochs as it takes; epoch ends (checkpoints) fall between steps
            if isinstance(e, StepProgress):
                rates.append(e.images_per_second)
                if len(rates) >= args.steps + args.warmup:
                    break
        events.close()
        wall = time.perf_counter() - t0
    timed = rates[args.warmup:]
    result = {"device": args.device, "size": args.size, "batch": args.batch, "gan": not args.supervised,
              "device_data": args.device_data, "compile": args.compile, "amp": args.amp, "steps": len(timed),
              "median_images_per_s": round(statistics.median(timed), 1) if timed else None,
              "mean_images_per_s": round(len(timed) / sum(1 / r for r in timed), 1) if timed else None,
              "wall_s_with_setup_and_warmup": round(wall, 1)}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def copy_cases(cases, folder: Path) -> Path:
    """Replace ``folder`` with copies of ``cases`` as images/ + masks/<stem>.png."""
    import shutil

    for sub in ("images", "masks"):
        shutil.rmtree(folder / sub, ignore_errors=True)
        (folder / sub).mkdir(parents=True)
    for c in cases:
        shutil.copy2(c.image, folder / "images" / c.image.name)
        shutil.copy2(c.ground_truth, folder / "masks" / f"{c.stem}.png")
    return folder


def split_clinical(source: Path, work: Path, n_finetune: int, seed: int) -> tuple[Path, Path, list[str]]:
    """Copy a fixed-seed split of ``source`` into work/finetune and work/heldout (images/ + masks/)."""
    import numpy as np

    from dermaseg_app.core.dataset import find_cases

    cases = sorted((c for c in find_cases([source]) if c.ground_truth is not None), key=lambda c: c.stem)
    order = np.random.default_rng(seed).permutation(len(cases))
    heldout = [cases[i] for i in order[n_finetune:]]
    copy_cases([cases[i] for i in order[:n_finetune]], work / "finetune")
    copy_cases(heldout, work / "heldout")
    return work / "finetune", work / "heldout", [c.stem for c in heldout]


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
        "epochs": args.epochs, "freeze_encoder": args.freeze_encoder, "adversarial": args.adversarial,
        "replay_share": args.replay_share,
        "lr": args.lr, "base_val": args.base_val, "base_val_tolerance": args.base_val_tolerance,
        "l2sp": args.l2sp, "freeze_bn_stats": args.freeze_bn_stats,
        "fell_back_to_base": finished.fell_back_to_base if finished else None,
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
    from dermaseg_app.ml.data import _cases
    from dermaseg_app.ml.training import holdout_indices
    from dermaseg_app.ml.weights import load_model, save_model

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    cases = _cases(work / "finetune")
    ft_val = copy_cases([cases[i] for i in holdout_indices(len(cases), 0.1, args.seed)], work / "finetune-val")
    base, _ = load_model(args.base, "cpu")
    tuned, info = load_model(work / "finetuned.safetensors", "cpu")
    # copies: load_state_dict below writes into the tensors that base.state_dict() returns
    sb = {k: v.clone() for k, v in base.state_dict().items()}
    sf = tuned.state_dict()
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
                        help="a finished `finetune` benchmark's --work folder "
                             "(finetuned.safetensors, finetune/, heldout/)")
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
    if len(sys.argv) > 1 and sys.argv[1] == "augment":
        ap = argparse.ArgumentParser(prog="bench_training.py augment", description=augment_benchmark.__doc__)
        ap.add_argument("augment")
        ap.add_argument("--device", default="cpu", help="where the torch path runs (default cpu)")
        ap.add_argument("--size", type=int, default=128)
        ap.add_argument("--batch", type=int, default=8)
        ap.add_argument("--repeats", type=int, default=30)
        ap.add_argument("--warmup", type=int, default=3)
        ap.add_argument("--threads", type=int, default=1)
        ap.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                        help="torch.compile the torch path (as the engine does on CUDA with --compile)")
        ap.add_argument("--json")
        return augment_benchmark(ap.parse_args())
    if len(sys.argv) > 1 and sys.argv[1] == "engine":
        ap = argparse.ArgumentParser(prog="bench_training.py engine", description=engine_benchmark.__doc__)
        ap.add_argument("engine")
        ap.add_argument("--data", required=True, help="training pack (.npz) or folder")
        ap.add_argument("--size", type=int, default=128)
        ap.add_argument("--batch", type=int, default=8)
        ap.add_argument("--steps", type=int, default=100)
        ap.add_argument("--warmup", type=int, default=10)
        ap.add_argument("--device", default=None)
        ap.add_argument("--threads", type=int, default=None)
        ap.add_argument("--supervised", action="store_true", help="G alone (default: the GAN step)")
        ap.add_argument("--ema", type=float, default=0.999)
        ap.add_argument("--amp", action="store_true")
        ap.add_argument("--device-data", action="store_true")
        ap.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE")
        ap.add_argument("--pack-dir")
        ap.add_argument("--json")
        return engine_benchmark(ap.parse_args())
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
    data = ap.add_mutually_exclusive_group()
    data.add_argument("--device-data", action="store_true",
                      help="each step indexes and augments its batch on the device (ml.augment_torch)")
    data.add_argument("--cpu-data", action="store_true",
                      help="each step takes an OpenCV-augmented batch prepared one ahead in a thread")
    ap.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                    help="torch.compile G's and D's forward (default, reduce-overhead, max-autotune, ...)")
    ap.add_argument("--fused-adam", action="store_true",
                    help="torch.optim.Adam(fused=True) (not what the engine uses: measure whether it should)")
    ap.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = bool(args.cudnn_benchmark)
    data_kind = "device" if args.device_data else "cpu" if args.cpu_data else "fixed"
    device = torch.device(args.device)
    results = []
    threads = args.threads if device.type == "cpu" else [torch.get_num_threads()]
    for n in threads:
        torch.set_num_threads(n)
        for size in args.sizes:
            for batch in args.batch:
                for mode in args.modes:
                    ts = time_steps(size, batch, mode, args.steps, args.warmup, device, args.amp,
                                    data_kind, args.compile, args.fused_adam)
                    med = statistics.median(ts)
                    row = {"device": str(device), "threads": n, "size": size, "batch": batch, "mode": mode,
                           "data": data_kind, "compile": args.compile, "amp": args.amp,
                           "fused_adam": args.fused_adam, "cudnn_benchmark": args.cudnn_benchmark,
                           "median_s": round(med, 4), "images_per_s": round(batch / med, 2),
                           "steps_s": [round(v, 3) for v in ts]}
                    results.append(row)
                    print(f"{device} threads={n} size={size} batch={batch} {mode:10s} data={data_kind} "
                          f"compile={args.compile or 'no'} amp={args.amp} "
                          f"{med:.3f} s/step  {batch / med:.1f} img/s  ({', '.join(f'{v:.2f}' for v in ts)})",
                          flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

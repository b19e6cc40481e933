#!/usr/bin/env python
"""``dermaseg predict`` per stage, today's code against an older commit, side by side in one run.

Per image, each stage on the calling thread (so each is timed alone), with the code's own functions:

- ``decode``: the file to the array the network input is made from (``Predictor._decode``'s decode
  part: ``read_image``, or in newer code a reduced JPEG decode);
- ``resize``: that array squashed to the input size, scaled to [0, 1] (``_decode``'s preprocess);
- ``network``: one image per run through the predictor's backend (``Predictor._probabilities``);
- ``resize_back``: the probability map resized to the image's size and thresholded (``_finish``);
- ``contours``: the mask's outlines as the window draws them (``Prediction.contours``);
- ``measure``: predictions.csv's measurement columns (``core.measure.measure_file``: reads the image
  again for its colours, as ``dermaseg predict`` does without ``--no-measurements``);
- ``encode``: the mask as a 0/255 PNG, written atomically (``core.imageio.write_mask_png``);

then ``stream``: what ``dermaseg predict`` does per image end to end (``Predictor.predict_files``
decoding ahead in its thread pool, batches of 8, each mask written and measured), wall time per image.

``--vs REV`` checks REV out into a temporary git worktree and runs the stages alternately in child
processes importing ``dermaseg_app`` from REV ("old") and from this checkout ("new"), the order
swapped every round; per stage it prints the mean ms per image over the images, min / median / max
over the rounds, for all images and for the largest ones, and old / new. The masks of the two are
compared (JSC per image; the largest difference of the network's probabilities, which bounds that
of the full-size maps since bilinear resizing only averages)::

    nice -n 10 .venv/bin/python benchmarks/bench_predict_stages.py --vs 9da9742 --threads 1 --rounds 3

One side only (what each child of ``--vs`` runs)::

    .venv/bin/python benchmarks/bench_predict_stages.py --threads 1 [--images DIR] [--model FILE]
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
DEFAULT_IMAGES = Path("/work/shared/data/samples_fullres/images")
STAGES = ("decode", "resize", "network", "resize_back", "contours", "measure", "encode")


def run_here(args: argparse.Namespace) -> dict:
    """The stages timed in this process, with the code at ``args.code``."""
    sys.path.insert(0, str(Path(args.code).resolve() if args.code else ROOT))
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from dermaseg_app.core.dataset import find_images
    from dermaseg_app.core.imageio import write_mask_png
    from dermaseg_app.core.measure import measure_file
    from dermaseg_app.ml.predictor import Predictor

    images = find_images([Path(args.images)])
    predictor = Predictor(args.model, "cpu", backend=args.backend)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="dermaseg-stages-"))
    out.mkdir(parents=True, exist_ok=True)
    t = predictor.threshold
    per_image: dict[str, dict[str, list[float]]] = {p.name: {s: [] for s in STAGES} for p in images}
    shapes: dict[str, list[int]] = {}
    probs: dict[str, np.ndarray] = {}
    for rep in range(1 + args.passes):  # the first pass warms up
        for path in images:
            d = predictor._decode(path)
            t0 = time.perf_counter()
            prob_small = predictor._probabilities(d.chw[None])[0]
            t1 = time.perf_counter()
            prediction = predictor._finish(prob_small, d.shape, t)
            t2 = time.perf_counter()
            prediction.contours()
            t3 = time.perf_counter()
            measure_file(path, prediction.mask)
            t4 = time.perf_counter()
            write_mask_png(out / f"{path.stem}.png", prediction.mask)
            t5 = time.perf_counter()
            if rep == 0:
                shapes[path.name] = list(d.shape)
                probs[path.stem] = prob_small
                continue
            row = per_image[path.name]
            for stage, dt in zip(STAGES, (d.decode_s, d.preprocess_s, t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4),
                                 strict=True):
                row[stage].append(dt * 1e3)
    np.savez(out / "prob_small.npz", **probs)

    stream_out = out / "stream"
    stream_out.mkdir(exist_ok=True)
    started = time.perf_counter()
    n = 0
    for result in predictor.predict_files(images, batch_size=8):
        if result.prediction is not None:
            write_mask_png(stream_out / f"{result.path.stem}.png", result.prediction.mask)
            measure_file(result.path, result.prediction.mask)
            n += 1
    stream_ms = (time.perf_counter() - started) * 1e3 / max(1, n)
    try:
        import cv2

        cv2_threads = cv2.getNumThreads()
    except ImportError:
        cv2_threads = -1
    return {"backend": predictor.backend_label, "threads": args.threads, "cv2_threads": cv2_threads,
            "shapes": shapes, "ms": {name: {s: statistics.median(v) for s, v in row.items()}
                                     for name, row in per_image.items()},
            "stream_ms": stream_ms, "out": str(out)}


def _stage_means(result: dict, names: list[str]) -> dict[str, float]:
    means = {s: statistics.fmean(result["ms"][n][s] for n in names) for s in STAGES}
    means["total"] = sum(means.values())
    return means


def _compare_masks(old_dir: Path, new_dir: Path, names: list[str]) -> tuple[float, str, float, float]:
    """(min JSC, its image, mean JSC, largest |p_old - p_new| of the network's maps)."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from dermaseg_app.core.imageio import read_mask

    jscs = {}
    for name in names:
        stem = Path(name).stem
        a, b = read_mask(old_dir / f"{stem}.png"), read_mask(new_dir / f"{stem}.png")
        union = int((a | b).sum())
        jscs[stem] = 1.0 if union == 0 else int((a & b).sum()) / union
    pa, pb = np.load(old_dir / "prob_small.npz"), np.load(new_dir / "prob_small.npz")
    dp = max(float(np.abs(pa[Path(n).stem] - pb[Path(n).stem]).max()) for n in names)
    worst = min(jscs, key=jscs.get)
    return jscs[worst], worst, statistics.fmean(jscs.values()), dp


def side_by_side(args: argparse.Namespace, rest: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="dermaseg-stages-") as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), args.vs],
                       check=True, capture_output=True)
        env = os.environ | {"PYTHONDONTWRITEBYTECODE": "1", "OMP_WAIT_POLICY": "PASSIVE"}
        try:
            results: dict[str, list[dict]] = {"old": [], "new": []}
            for r in range(args.rounds):
                order = (("old", old), ("new", ROOT)) if r % 2 == 0 else (("new", ROOT), ("old", old))
                for name, code in order:
                    js = Path(tmp) / f"{name}-{r}.json"
                    cmd = [sys.executable, __file__, "--code", str(code), "--json", str(js),
                           "--out", str(Path(tmp) / f"{name}-{r}"), *rest]
                    subprocess.run(cmd, check=True, env=env)
                    results[name].append(json.loads(js.read_text()))
                    res = results[name][-1]
                    means = _stage_means(res, list(res["ms"]))
                    print(f"round {r + 1} {name}: total {means['total']:.1f} ms/image, stream {res['stream_ms']:.1f} "
                          f"ms/image ({res['backend']}, cv2 threads {res['cv2_threads']})", flush=True)
            names = list(results["new"][0]["ms"])
            shapes = results["new"][0]["shapes"]
            largest = max(h * w for h, w in shapes.values())
            big = [n for n in names if shapes[n][0] * shapes[n][1] == largest]
            jsc_min, jsc_worst, jsc_mean, dp = _compare_masks(Path(results["old"][0]["out"]),
                                                              Path(results["new"][0]["out"]), names)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], capture_output=True)

    pixels = [h * w / 1e6 for h, w in shapes.values()]
    summary: dict = {"vs": args.vs, "threads": args.threads, "rounds": args.rounds, "images": len(names),
                     "backend": {k: v[0]["backend"] for k, v in results.items()},
                     "cv2_threads": {k: v[0]["cv2_threads"] for k, v in results.items()},
                     "masks": {"jsc_min": jsc_min, "jsc_min_image": jsc_worst, "jsc_mean": jsc_mean,
                               "max_prob_difference": dp}}
    load = os.getloadavg()
    print(f"\n{len(names)} images ({min(pixels):.2f}-{max(pixels):.2f} MP; largest {len(big)} x "
          f"{shapes[big[0]][1]}x{shapes[big[0]][0]}), {args.threads} thread(s), {args.rounds} rounds; "
          f"old = {args.vs}, new = this checkout; load average {load[0]:.1f}")
    print(f"backend old: {summary['backend']['old']}, new: {summary['backend']['new']}; "
          f"cv2 threads old {summary['cv2_threads']['old']}, new {summary['cv2_threads']['new']}")
    for label, subset in (("all images", names), (f"largest ({shapes[big[0]][1]}x{shapes[big[0]][0]})", big)):
        print(f"\nms per image, {label}: mean over the images, min / median / max over the rounds")
        print(f"{'stage':<12} {'old min/med/max':>22} {'new min/med/max':>22} {'old/new':>8}")
        rows = {}
        for stage in (*STAGES, "total"):
            o = [_stage_means(res, subset)[stage] for res in results["old"]]
            n = [_stage_means(res, subset)[stage] for res in results["new"]]
            rows[stage] = {"old": [min(o), statistics.median(o), max(o)], "new": [min(n), statistics.median(n), max(n)]}
            ratio = statistics.median(o) / statistics.median(n) if statistics.median(n) > 0 else float("inf")
            print(f"{stage:<12} {min(o):6.1f} {statistics.median(o):6.1f} {max(o):7.1f}  "
                  f"{min(n):6.1f} {statistics.median(n):6.1f} {max(n):7.1f}  {ratio:7.2f}x")
        summary[label] = rows
    o = [res["stream_ms"] for res in results["old"]]
    n = [res["stream_ms"] for res in results["new"]]
    summary["stream_ms"] = {"old": o, "new": n}
    print(f"\nstream (predict_files, batch 8, masks written and measured), ms per image: "
          f"old {min(o):.1f} / {statistics.median(o):.1f} / {max(o):.1f}, new {min(n):.1f} / "
          f"{statistics.median(n):.1f} / {max(n):.1f}: {statistics.median(o) / statistics.median(n):.2f}x")
    print(f"masks old vs new: JSC min {jsc_min:.4f} ({jsc_worst}), mean {jsc_mean:.4f}; "
          f"largest network probability difference {dp:.3g}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--vs", metavar="REV", help="compare with this git revision, side by side")
    ap.add_argument("--rounds", type=int, default=3, help="with --vs: alternations of old and new")
    ap.add_argument("--code", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--images", default=str(DEFAULT_IMAGES if DEFAULT_IMAGES.is_dir() else ROOT / "resources/samples"))
    ap.add_argument("--model", default=str(ROOT / "models" / "slsnet_isic2017.safetensors"))
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--passes", type=int, default=1, help="timed passes over the images after the warm-up one")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.vs:
        rest = list(sys.argv[1:])
        for flag in ("--vs", "--rounds", "--json"):  # the children get the rest
            while flag in rest:
                i = rest.index(flag)
                del rest[i:i + 2]
        return side_by_side(args, rest)
    result = run_here(args)
    means = _stage_means(result, list(result["ms"]))
    print(f"{result['backend']}, {args.threads} thread(s), cv2 threads {result['cv2_threads']}: " + ", ".join(
        f"{s} {v:.1f}" for s, v in means.items()) + f" ms/image; stream {result['stream_ms']:.1f} ms/image", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

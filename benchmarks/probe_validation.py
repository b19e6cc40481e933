#!/usr/bin/env python
"""Validation probes behind the shipped models' settings (docs/training-notes.md, session 5).

    python benchmarks/probe_validation.py flips MODEL [--val DIR]      # mean JSC without / with flips
    python benchmarks/probe_validation.py threshold MODEL [--val DIR]  # seed 002's rule: 50 thresholds in [0.5, 1)

``flips``: the network's output for the image and its flips (horizontal; horizontal, vertical and
both), flipped back and averaged before resizing to the mask, mean JSC and thresholded JSC (0 below
0.65) over the folder. ``threshold``: the mean JSC of the model's own prediction (its flips
setting) at each threshold. Validation folders only: never tune on held-out sets.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

VAL = "/work/shared/data/isic2017/val"
FLIPS = {
    "id": lambda a: a,
    "h": lambda a: a[..., ::-1],
    "v": lambda a: a[..., ::-1, :],
    "hv": lambda a: a[..., ::-1, ::-1],
}
SETS = {"none": ["id"], "h": ["id", "h"], "hv4": ["id", "h", "v", "hv"]}


def pairs(root: Path) -> list[tuple[Path, Path]]:
    return [(img, root / "masks" / f"{img.stem}.png") for img in sorted((root / "images").glob("*.jpg"))]


def jaccard(mask: np.ndarray, gt: np.ndarray) -> float:
    union = int((mask | gt).sum())
    return float((mask & gt).sum()) / union if union else 1.0


def probe_flips(predictor, root: Path) -> dict[str, object]:
    from dermaseg_app.core.imageio import read_image, read_mask
    from dermaseg_app.ml.predictor import probability_to_size
    from dermaseg_app.ml.preprocessing import preprocess

    scores: dict[str, list[float]] = {k: [] for k in SETS}
    for image, mask in pairs(root):
        rgb, gt = read_image(image), read_mask(mask) > 0
        x = preprocess(rgb, predictor.input_size)
        batch = np.stack([np.ascontiguousarray(f(x)) for f in FLIPS.values()])
        probs = predictor._network_probabilities(batch)
        back = {name: FLIPS[name](probs[i]) for i, name in enumerate(FLIPS)}
        for key, names in SETS.items():
            mean = np.ascontiguousarray(np.mean([back[n] for n in names], axis=0))
            scores[key].append(jaccard(probability_to_size(mean, rgb.shape[:2]) >= predictor.threshold, gt))
    return {"jsc": {k: float(np.mean(v)) for k, v in scores.items()},
            "jsc_th": {k: float(np.mean([j if j >= 0.65 else 0.0 for j in v])) for k, v in scores.items()}}


def probe_threshold(predictor, root: Path) -> dict[str, object]:
    from dermaseg_app.core.imageio import read_image, read_mask

    thresholds = np.linspace(0.5, 1.0, 50, endpoint=False)
    total = np.zeros(len(thresholds))
    items = pairs(root)
    for image, mask in items:
        prob, gt = predictor.predict(read_image(image)).prob, read_mask(mask) > 0
        total += [jaccard(prob >= t, gt) for t in thresholds]
    mean = total / max(1, len(items))
    best = int(np.argmax(mean))
    return {"tta": predictor.tta, "best_threshold": float(thresholds[best]), "best_jsc": float(mean[best]),
            "jsc": {f"{t:.2f}": round(float(j), 4) for t, j in zip(thresholds, mean, strict=True)}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("probe", choices=("flips", "threshold"))
    parser.add_argument("model")
    parser.add_argument("--val", default=VAL, help=f"a validation folder of images/ + masks/ (default {VAL})")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    from dermaseg_app.ml.predictor import Predictor

    torch.set_num_threads(args.threads)
    predictor = Predictor(args.model, device="cpu", backend="torch")
    probe = probe_flips if args.probe == "flips" else probe_threshold
    print(json.dumps(probe(predictor, Path(args.val)), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

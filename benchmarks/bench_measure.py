"""Benchmark: core.measure on a 1000x1000 mask, as a live Measurements panel would call it (issue 15).

    .venv/bin/python benchmarks/bench_measure.py [--repeat 50]

Cases: a large lesion (an ellipse with semi-axes 450 x 300 px at 30 degrees, 42 % of the image)
and a real one (the ground truth of the bundled ISIC_0000377, 3072x2304, scaled to 1000 px wide).
For each: ``measure(mask)`` (geometry only), ``measure(mask, colour_map)`` (the panel's call:
the image's ColourMap computed once per image) and ``measure(mask, rgb)`` (one-off, colours
looked up for the lesion's pixels), plus ``colour_map(rgb)`` itself. Median milliseconds.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's package, also when run as a script from elsewhere

from dermaseg_app.core.imageio import read_image, read_mask  # noqa: E402 - after the sys.path line
from dermaseg_app.core.measure import colour_map, measure  # noqa: E402


def median_ms(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def report(name: str, mask: np.ndarray, image: np.ndarray, repeat: int) -> None:
    cmap = colour_map(image)
    print(f"{name}: lesion {mask.mean():.0%} of the image")
    print(f"  measure(mask)             {median_ms(lambda: measure(mask), repeat):6.2f} ms")
    print(f"  measure(mask, colour_map) {median_ms(lambda: measure(mask, cmap), repeat):6.2f} ms")
    print(f"  measure(mask, rgb)        {median_ms(lambda: measure(mask, image), repeat):6.2f} ms")
    print(f"  colour_map(rgb)           {median_ms(lambda: colour_map(image), max(3, repeat // 10)):6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    y, x = np.mgrid[0:1000, 0:1000] + 0.5
    t = math.radians(30)
    u = (x - 500) * math.cos(t) + (y - 500) * math.sin(t)
    v = -(x - 500) * math.sin(t) + (y - 500) * math.cos(t)
    ellipse = (u / 450) ** 2 + (v / 300) ** 2 <= 1
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (1000, 1000, 3), dtype=np.uint8)
    samples = ROOT / "resources" / "samples"
    gt = read_mask(samples / "ISIC-2017_Training_Part1_GroundTruth" / "ISIC_0000377_segmentation.png")
    rgb = read_image(samples / "images" / "ISIC_0000377.jpg")
    h = round(gt.shape[0] * 1000 / gt.shape[1])
    real = cv2.resize(gt.view(np.uint8), (1000, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    real_rgb = cv2.resize(rgb, (1000, h), interpolation=cv2.INTER_AREA)
    for name, mask, image in (("ellipse 1000x1000", ellipse, noise), (f"ISIC_0000377 1000x{h}", real, real_rgb)):
        report(name, mask, image, args.repeat)

if __name__ == "__main__":
    main()

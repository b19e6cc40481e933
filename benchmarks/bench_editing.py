"""Benchmark: brush strokes and undo on a full-resolution 3072x2304 mask (issue 5).

Targets: <= 16 ms per mouse move (update the mask and produce the changed box plus the patch an
overlay repaints), <= 50 ms to end a stroke and to undo it.

    .venv/bin/python benchmarks/bench_editing.py [--radius 10 40 120] [--step 12] [--moves 200]

Measures, per brush radius:
* move      : ``stroke.add_point`` (capsule rasterised into the segment's box only) + taking the
              repaint patch ``mask[box]`` as 0/255 uint8 (what an overlay uploads);
* begin     : ``history.begin_stroke`` (one copy of the mask per stroke, at mouse press);
* end       : ``history.end_stroke`` (tight diff box, bit-packed before/after patches);
* journal   : the same end with the crash journal (append + flush + fsync) of core.store;
* undo/redo : ``history.undo`` / ``history.redo`` (new mask array + unpacked patch).
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
sys.path.insert(0, str(ROOT))

from dermaseg_app.core.history import History  # noqa: E402
from dermaseg_app.core.imageio import read_mask  # noqa: E402

GT = ROOT / "resources" / "samples" / "ISIC-2017_Training_Part1_GroundTruth" / "ISIC_0000377_segmentation.png"


def stroke_points(n: int, step: float, w: int, h: int, seed: int = 0) -> np.ndarray:
    """A wandering mouse path across the lesion border, ``step`` image pixels per move."""
    rng = np.random.default_rng(seed)
    angle = np.cumsum(rng.normal(0, 0.25, n))
    d = np.stack([np.cos(angle), np.sin(angle)], axis=1) * step
    pts = np.cumsum(d, axis=0) + [w * 0.35, h * 0.45]
    return np.clip(pts, 0, [w - 1, h - 1])


def ms(values: list[float]) -> str:
    v = sorted(values)
    p95 = v[min(len(v) - 1, int(round(0.95 * (len(v) - 1))))]
    return f"median {statistics.median(v) * 1e3:6.2f} ms  p95 {p95 * 1e3:6.2f} ms  max {v[-1] * 1e3:6.2f} ms"


def run(radius: float, step: float, moves: int, strokes: int) -> dict[str, list[float]]:
    mask = read_mask(GT)
    assert mask.shape == (2304, 3072), mask.shape
    h, w = mask.shape
    times: dict[str, list[float]] = {k: [] for k in ("move", "begin", "end", "journal", "undo", "redo")}
    history = History(mask)
    with tempfile.TemporaryDirectory() as tmp:
        from dermaseg_app.core.project import Project
        from dermaseg_app.core.store import CorrectionStore

        folder = Path(tmp) / "images"
        folder.mkdir()
        store = CorrectionStore(Project.open_for(folder))
        journalled = store.history(folder / "bench.jpg", mask)
        for s in range(strokes):
            pts = stroke_points(moves, step, w, h, seed=s)
            for hist, key in ((history, "end"), (journalled, "journal")):
                t0 = time.perf_counter()
                stroke = hist.begin_stroke(radius, erase=bool(s % 2))
                if key == "end":
                    times["begin"].append(time.perf_counter() - t0)
                for x, y in pts:
                    t0 = time.perf_counter()
                    box = stroke.add_point(float(x), float(y))
                    if box is not None:
                        patch = hist.mask[box.slices].view(np.uint8) * np.uint8(255)  # overlay upload
                        del patch
                    if key == "end":
                        times["move"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                hist.end_stroke()
                times[key].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            history.undo()
            times["undo"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            history.redo()
            times["redo"].append(time.perf_counter() - t0)
    return times


def one_shot() -> None:
    """Whole-mask operations (menu commands), once each, on the full-resolution mask."""
    from dermaseg_app.core import editing as E
    from dermaseg_app.core.geometry import mask_to_polygons

    mask = read_mask(GT)
    geom = mask_to_polygons(mask)
    ref, (x, y) = E.vertices(geom)[len(E.vertices(geom)) // 3]
    cases = {
        "fill_holes": lambda: E.fill_holes(mask),
        "remove_islands(500)": lambda: E.remove_islands(mask, 500),
        "smooth(sigma 3)": lambda: E.smooth(mask, 3.0),
        "simplify(1.5)": lambda: E.simplify(mask, 1.5),
        "grow(+5)": lambda: E.grow(mask, 5),
        "grow(-5)": lambda: E.grow(mask, -5),
        "lasso add (200 pts)": lambda: E.fill_polygon(
            mask, stroke_points(200, 8, 3072, 2304, seed=3), "add"),
        "vertex move + commit": lambda: E.apply_geometry(
            mask, *(lambda e: (e.geometry, e.bbox))(E.move_vertex(geom, ref, (x + 7, y + 7), mask.shape))),
        "mask_to_polygons": lambda: mask_to_polygons(mask),
        "vertices (handles)": lambda: E.vertices(geom),
    }
    print("one-shot operations on the 3072x2304 mask (best of 3)")
    for name, fn in cases.items():
        best = min(_timed(fn) for _ in range(3))
        print(f"  {name:22s} {best * 1e3:7.1f} ms")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--radius", type=float, nargs="+", default=[10.0, 40.0, 120.0])
    parser.add_argument("--step", type=float, default=12.0, help="image pixels per mouse move")
    parser.add_argument("--moves", type=int, default=200, help="mouse moves per stroke")
    parser.add_argument("--strokes", type=int, default=6)
    args = parser.parse_args()
    print(f"mask 3072x2304, {args.strokes} strokes x {args.moves} moves, {args.step:g} px per move")
    ok = True
    for r in args.radius:
        t = run(r, args.step, args.moves, args.strokes)
        print(f"radius {r:g} px")
        for key in ("move", "begin", "end", "journal", "undo", "redo"):
            print(f"  {key:8s} {ms(t[key])}")
        moves = sorted(t["move"])
        ok &= moves[int(0.95 * (len(moves) - 1))] <= 0.016  # p95 of mouse moves
        ok &= statistics.median(t["undo"]) <= 0.050 and statistics.median(t["end"]) <= 0.050
    one_shot()
    print("targets (p95 move <= 16 ms, median end/undo <= 50 ms):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

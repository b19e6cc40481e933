#!/usr/bin/env python
"""Benchmark the review window (issue 4 targets, on the 2-core CPU machine).

1. Start-up: from launching ``dermaseg FOLDER`` (a new process, Python and Qt start included) to
   the first image drawn with its mask -- with an empty prediction cache (torch is imported and
   the network runs) and with a warm cache (reopening the folder). Target: <= 3 s.
2. Moving to an already predicted image: from selecting the next image to its image, mask and
   contour drawn and painted, stepping through the folder with a short pause between steps (the
   neighbours are decoded in the background meanwhile); and jumping to a far image that was not
   prefetched. Target: <= 150 ms.

Examples::

    python benchmarks/bench_gui.py                            # bundled samples, bundled model
    python benchmarks/bench_gui.py --model M.safetensors      # another model
    python benchmarks/bench_gui.py --folder DIR --json out.json

The samples include a 3072x2304 image (ISIC_0000377). Wall-clock times on a shared machine move
with its load; the load average is printed and stored in the JSON.
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
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def startup_seconds(folder: Path, model: Path | None, cache_home: Path, config_home: Path,
                    timeout: float = 180.0) -> float | None:
    """Seconds from process launch to 'first image drawn with its prediction'."""
    env = dict(os.environ, XDG_CACHE_HOME=str(cache_home), XDG_CONFIG_HOME=str(config_home),
               DERMASEG_TIMING="1", QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    shot = cache_home / "startup.png"
    cmd = [sys.executable, "-m", "dermaseg_app", str(folder), "--screenshot", str(shot)]
    if model is not None:
        cmd += ["--model", str(model)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            cwd=str(ROOT))
    found = None
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("drawn ") and "prediction=True" in line:
            found = time.perf_counter() - t0
            break
        if time.perf_counter() - t0 > timeout:
            break
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
    return found


def navigation(folder: Path, model: Path | None, pause_s: float) -> dict:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qt_wait import spin, wait_until

    from dermaseg_app.gui.app import build_window, make_app

    app = make_app()
    window = build_window(SimpleNamespace(paths=[], model=str(model) if model else None, device=None,
                                          masks=None))
    window.resize(1440, 900)
    window.show()
    app.processEvents()
    window.session.start_model()

    window.open_paths([folder])
    s = window.session
    if not wait_until(lambda: s.entries and all(e.predicted or e.error for e in s.entries)):
        raise SystemExit("the folder was not predicted in time")
    drawn: list[tuple[int, float]] = []
    window.view.drawn.connect(lambda row, has_pred, compared: drawn.append((row, time.perf_counter())))

    def go(row: int) -> float:
        drawn.clear()
        t0 = time.perf_counter()
        window.case_list.select_row(row)
        wait_until(lambda: any(r == row for r, _ in drawn), timeout=30)
        window.canvas.viewport().repaint()  # include painting the new image
        return time.perf_counter() - t0

    order = window.case_list.view_order()
    window.case_list.select_row(order[0])
    spin(pause_s)
    steps = []
    for row in order[1:]:
        steps.append((s.entries[row].name, go(row)))
        spin(pause_s)
    # jumps to images not decoded yet: dropped from the LRU first, so each is read from disk
    # (the largest image included: the worst case)
    jumps = []
    from PIL import Image

    def pixels(row: int) -> int:
        with Image.open(s.entries[row].case.image) as im:
            return im.size[0] * im.size[1]

    largest = max(order, key=pixels)
    for row in [order[0], largest]:
        s.images.pop(row)
        jumps.append((s.entries[row].name, go(row)))
        spin(pause_s)
    # threshold slider: one step re-cuts the stored map and redraws
    slider = []
    for value in (40, 45, 55, 60):
        t0 = time.perf_counter()
        window.controls.threshold.setValue(value)
        window.canvas.viewport().repaint()
        slider.append(time.perf_counter() - t0)
    window.close()
    return {
        "step_next_s": {name: round(t, 4) for name, t in steps},
        "step_next_median_s": round(statistics.median(t for _, t in steps), 4),
        "step_next_max_s": round(max(t for _, t in steps), 4),
        "jump_not_prefetched_s": {name: round(t, 4) for name, t in jumps},
        "threshold_step_median_s": round(statistics.median(slider), 4),
        "pause_between_steps_s": pause_s,
    }


def main() -> int:
    from dermaseg_app import paths

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=paths.samples_dir())
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled model")
    parser.add_argument("--pause", type=float, default=0.6, help="seconds between navigation steps")
    parser.add_argument("--repeats", type=int, default=2, help="start-up runs of each kind")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    model = args.model
    if model is None and not paths.default_model_path().exists():
        raise SystemExit(f"no bundled model at {paths.default_model_path()}; pass --model FILE")

    results: dict = {"folder": str(args.folder), "model": str(model or paths.default_model_path()),
                     "cpu_count": os.cpu_count(), "load_average_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.folder.resolve() == paths.samples_dir().resolve():
            # opening a folder creates its review project inside it: work on a copy of the samples
            import shutil

            shutil.copytree(args.folder.parent, tmp / "samples")
            args.folder = tmp / "samples" / args.folder.name
        cold, warm = [], []
        for i in range(args.repeats):
            cache = tmp / f"cache{i}"
            cold.append(startup_seconds(args.folder, model, cache, tmp / "config"))
            warm.append(startup_seconds(args.folder, model, cache, tmp / "config"))
        results["startup_empty_cache_s"] = cold
        results["startup_warm_cache_s"] = warm
        print(f"start-up to first image with mask, empty cache: {cold} s (target 3 s)")
        print(f"start-up to first image with mask, warm cache:  {warm} s (target 3 s)")
        os.environ["XDG_CACHE_HOME"] = str(tmp / "nav-cache")
        os.environ["XDG_CONFIG_HOME"] = str(tmp / "config")
        nav = navigation(args.folder, model, args.pause)
    results.update(nav)
    results["load_average_after"] = os.getloadavg()
    print(f"next image (prefetched): median {nav['step_next_median_s'] * 1000:.0f} ms, "
          f"max {nav['step_next_max_s'] * 1000:.0f} ms (target 150 ms)")
    for name, t in nav["step_next_s"].items():
        print(f"  {name}: {t * 1000:.0f} ms")
    print("jump to an image not decoded yet: "
          + ", ".join(f"{n} {t * 1000:.0f} ms" for n, t in nav["jump_not_prefetched_s"].items()))
    print(f"threshold slider step: median {nav['threshold_step_median_s'] * 1000:.0f} ms")
    print(f"load average before/after: {results['load_average_before']} / {results['load_average_after']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

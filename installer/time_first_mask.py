"""Time from launch to the first mask drawn: the frozen app against the virtual environment's
``dermaseg``, alternating, each run a fresh process with ``--screenshot`` (the window exits once
the first image and its mask are drawn, so the process's wall time is launch -> first mask plus
the exit). Used by installer/check_frozen.sh.

    python installer/time_first_mask.py --frozen dist/DermaSeg/DermaSeg --venv .venv/bin/dermaseg --runs 3
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


def one_run(cmd: list[str], shot: Path) -> float:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    start = time.perf_counter()
    subprocess.run([*cmd, "--screenshot", str(shot)], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    elapsed = time.perf_counter() - start
    if not shot.is_file():
        raise RuntimeError(f"{cmd[0]} wrote no screenshot")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frozen", required=True)
    parser.add_argument("--venv", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    samples = Path(__file__).resolve().parents[1] / "resources" / "samples" / "images"
    times: dict[str, list[float]] = {"frozen": [], "venv": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs + 1):  # the first pair warms the disk cache and is not counted
            for name, cmd in (("frozen", [args.frozen]), ("venv", [args.venv, str(samples)])):
                t = one_run(cmd, Path(tmp) / f"{name}-{i}.png")
                if i > 0:
                    times[name].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"launch to first mask (median of {args.runs}, alternating): frozen {med['frozen']:.2f} s "
          f"(min {min(times['frozen']):.2f}, max {max(times['frozen']):.2f}), venv {med['venv']:.2f} s "
          f"(min {min(times['venv']):.2f}, max {max(times['venv']):.2f}); ratio {med['frozen'] / med['venv']:.2f}")
    if args.out:
        (args.out / "first-mask-times.json").write_text(json.dumps({"seconds": times, "median": med}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

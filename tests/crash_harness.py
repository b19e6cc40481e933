"""SIGKILL at random moments of editing and saving (issue 11): the harness behind
tests/test_crash_safety.py, also runnable on its own to measure a checkout::

    python tests/crash_harness.py --trials 300 [--seed 1]

A child process (forked from a forkserver that has the store imported, so a trial costs
milliseconds, not an interpreter start) opens a project of one 48x48 image, stores the model's
mask, and runs a seeded sequence of brush strokes, non-idempotent operations (grow, smooth),
undo/redo and saves, writing "<i>" to a progress file before operation i. The parent kills it
with SIGKILL after a random delay, then opens the project as the window does and checks:

* every PNG and JSON file in the project is complete (decodes / parses);
* no temp file survives the open;
* the recovered mask (the journal replayed as the window offers it, else the saved correction,
  else the stored prediction) equals the mask before or after the operation in progress;
* the ground truth is byte-identical.

``run_trials`` returns a list of failure descriptions (empty when every trial passed).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZE = 48
IMAGE_NAME = "case_0001.png"


# ---------------------------------------------------------------------------------------- ops
def make_ops(seed: int, n: int = 14) -> list[tuple]:
    rng = random.Random(seed)
    ops: list[tuple] = []
    for _ in range(n):
        r = rng.random()
        if r < 0.35:
            points = [(rng.randrange(SIZE), rng.randrange(SIZE)) for _ in range(rng.randint(1, 4))]
            ops.append(("brush", points, rng.choice([2.0, 3.0, 5.0]), rng.random() < 0.3))
        elif r < 0.5:
            ops.append(("grow", rng.choice([1.0, -1.0, 2.0])))
        elif r < 0.6:
            ops.append(("smooth", 1.5))
        elif r < 0.7:
            ops.append(("undo",))
        elif r < 0.75:
            ops.append(("redo",))
        else:
            ops.append(("save",))
    return ops


def initial_mask() -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return (yy - 20) ** 2 + (xx - 26) ** 2 <= 12 ** 2


def apply_op(history, op: tuple, save=None) -> None:
    from dermaseg_app.core.editing import EditOp

    kind = op[0]
    if kind == "brush":
        _, points, radius, erase = op
        stroke = history.begin_stroke(radius, erase=erase)
        for x, y in points:
            stroke.add_point(x, y)
        history.end_stroke()
    elif kind == "grow":
        history.apply(EditOp.grow(op[1]))
    elif kind == "smooth":
        history.apply(EditOp.smooth(op[1]))
    elif kind == "undo":
        history.undo()
    elif kind == "redo":
        history.redo()
    elif kind == "save" and save is not None:
        save(history.mask)


def expected_states(ops: list[tuple]) -> list[np.ndarray]:
    """states[i]: the mask before operation i (states[-1]: after the last)."""
    from dermaseg_app.core.history import History

    history = History(initial_mask())
    states = [history.mask.copy()]
    for op in ops:
        apply_op(history, op)
        states.append(history.mask.copy())
    return states


# ---------------------------------------------------------------------------------- folders
def make_folder(root: Path) -> Path:
    """``root/data/images/case_0001.png`` with its ground truth in ``root/data/masks``; returns
    the images folder."""
    import cv2

    images = root / "data" / "images"
    masks = root / "data" / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    cv2.imwrite(str(images / IMAGE_NAME), rgb)
    gt = np.zeros((SIZE, SIZE), np.uint8)
    gt[10:30, 12:40] = 255
    cv2.imwrite(str(masks / IMAGE_NAME), gt)
    return images


# ------------------------------------------------------------------------------------ child
def _wait_ready(progress: Path, proc, timeout_s: float = 30.0) -> float:
    """Wait until the child has written "ready" (or ended); the time it was seen."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline and proc.is_alive():
        try:
            if b"ready" in progress.read_bytes():
                break
        except FileNotFoundError:
            pass
        time.sleep(0.0005)
    return time.perf_counter()


def child(images: str, seed: int, progress: str) -> None:
    from dermaseg_app.core.project import Project
    from dermaseg_app.core.store import CorrectionStore

    fd = os.open(progress, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    image = Path(images) / IMAGE_NAME
    project = Project.open_for(images)
    store = CorrectionStore(project)
    store.save_prediction(image, initial_mask(), "m", "1")
    history = store.history(image, initial_mask())
    os.write(fd, b"ready\n")
    for i, op in enumerate(make_ops(seed)):
        os.write(fd, f"{i}\n".encode())
        apply_op(history, op, save=lambda mask: store.save_correction(image, mask))
    os.write(fd, b"done\n")
    os.close(fd)


# ----------------------------------------------------------------------------------- checks
def _recovered(images: Path) -> tuple[np.ndarray, list[str]]:
    """The mask the window would show after reopening, and the problems found on disk."""
    import json

    from dermaseg_app.core.imageio import ImageReadError, read_mask
    from dermaseg_app.core.project import Project
    from dermaseg_app.core.store import CorrectionStore

    problems: list[str] = []
    project = Project.open_for(images)
    try:
        store = CorrectionStore(project)
        for path in sorted(project.project_dir.rglob("*")):
            if path.name.startswith(".dermaseg-tmp-"):
                problems.append(f"temp file survived the open: {path.name}")
            elif path.suffix == ".png" and path.is_file():
                try:
                    if read_mask(path).shape != (SIZE, SIZE):
                        problems.append(f"{path.name}: wrong shape")
                except ImageReadError as exc:
                    problems.append(f"incomplete file {path.relative_to(project.project_dir)}: {exc.reason}")
            elif path.suffix == ".json" and path.is_file():
                try:
                    json.loads(path.read_text(encoding="utf-8"))
                except ValueError as exc:
                    problems.append(f"incomplete file {path.relative_to(project.project_dir)}: {exc}")
        image = images / IMAGE_NAME
        stem = store.stem(image)
        if stem in store.pending_recovery():  # the window offers to restore; the user accepts
            base = store.base_mask(image)
            mask = store.recover(stem, base_mask=None if base is not None else initial_mask())
        else:
            mask = store.base_mask(image)
            if mask is None:
                mask = initial_mask()
        return mask, problems
    finally:
        close = getattr(project, "close", None)
        if close is not None:
            close()


def run_trials(trials: int, seed: int = 0, workdir: Path | None = None,
               max_delay_s: float | None = None) -> tuple[list[str], dict]:
    """Run ``trials`` kills; (failures, figures)."""
    import cv2  # noqa: F401 - loaded before the forkserver starts

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["crash_harness", "dermaseg_app.core.store", "dermaseg_app.core.editing"])
    root = Path(tempfile.mkdtemp(prefix="dermaseg-crash-", dir=workdir))
    template = make_folder(root / "template")
    gt_bytes = (template.parent / "masks" / IMAGE_NAME).read_bytes()
    rng = random.Random(seed)
    failures: list[str] = []
    figures = {"trials": 0, "finished": 0, "killed_before_start": 0, "killed_in_ops": 0}
    started = time.perf_counter()
    try:
        # how long a whole run takes here, so the kills spread over all of it
        # (the first run also starts the forkserver: not timed)
        # (timed from the child's "ready": on a loaded machine the start alone can take longer
        # than the operations, and kills timed from the start would then mostly miss them)
        durations = []
        for k in range(2 if max_delay_s is None else 1):
            probe = root / f"probe{k}"
            shutil.copytree(template.parent, probe / "data")
            proc = ctx.Process(target=child, args=(str(probe / "data" / "images"), 12345 + k,
                                                   str(probe / "progress")))
            proc.start()
            t0 = _wait_ready(probe / "progress", proc)
            proc.join(60)
            durations.append(time.perf_counter() - t0)
            shutil.rmtree(probe, ignore_errors=True)
        if max_delay_s is None:
            max_delay_s = durations[-1] * 1.1
        figures["max_delay_s"] = round(max_delay_s, 3)
        for trial in range(trials):
            run_seed = rng.randrange(1 << 30)
            folder = root / f"t{trial}"
            shutil.copytree(template.parent, folder / "data")
            images = folder / "data" / "images"
            progress = folder / "progress"
            proc = ctx.Process(target=child, args=(str(images), run_seed, str(progress)))
            proc.start()
            if rng.random() < 0.1:  # some kills while the child is still opening the project
                time.sleep(rng.uniform(0.0, 0.005))
            else:
                _wait_ready(progress, proc)
                time.sleep(rng.uniform(0.0, max_delay_s))
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.join(30)
            figures["trials"] += 1
            lines = progress.read_text().split() if progress.exists() else []
            ops = make_ops(run_seed)
            states = expected_states(ops)
            if "done" in lines:
                figures["finished"] += 1
                allowed = [states[-1]]
                where = "after the last operation"
            else:
                started_ops = [int(x) for x in lines if x.isdigit()]
                if not started_ops:
                    figures["killed_before_start"] += 1
                    allowed = [states[0]]
                    where = "before the first operation"
                else:
                    figures["killed_in_ops"] += 1
                    i = started_ops[-1]
                    allowed = [states[i], states[i + 1]]
                    where = f"during operation {i} {ops[i][0]}"
            mask, problems = _recovered(images)
            if not any(np.array_equal(mask, a) for a in allowed):
                diff = min(int(np.count_nonzero(mask != a)) for a in allowed)
                problems.append(f"recovered mask differs from the state at the kill ({where}) by {diff} px")
            if (folder / "data" / "masks" / IMAGE_NAME).read_bytes() != gt_bytes:
                problems.append("ground truth changed")
            failures.extend(f"trial {trial} (seed {run_seed}, killed {where}): {p}" for p in problems)
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    figures["seconds"] = round(time.perf_counter() - started, 1)
    return failures, figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    failures, figures = run_trials(args.trials, args.seed)
    for line in failures[:20]:
        print(line)
    kinds: dict[str, set[str]] = {}
    for f in failures:
        trial, _, problem = f.partition("): ")
        kind = problem.split(":")[0].split(" (")[0]
        kinds.setdefault(kind, set()).add(trial)
    for kind, trials in sorted(kinds.items()):
        print(f"{len(trials)} trial(s): {kind}")
    failed_trials = len({f.split(" (")[0] for f in failures})
    print(f"{figures}; {failed_trials} of {figures['trials']} trials failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import crash_harness  # the child must be importable by name in the forkserver

    sys.exit(crash_harness.main())

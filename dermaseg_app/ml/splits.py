"""Train/validation splits that keep groups together (e.g. HAM10000 by lesion id).

HAM10000 holds several images of one lesion; a random split by image puts the same lesion in
training and in validation, and the validation score then measures memory, not segmentation.
``group_split`` assigns whole groups to one side; ``write_split`` writes the two sides as folders
of ``images/`` + ``masks/`` holding symbolic links (copies where links are not allowed), so every
tool that reads a folder (``dermaseg train``, ``evaluate``, the pack cache) reads a split.

    python -m dermaseg_app.ml.splits /work/shared/data/ham10000 --out runs/ham10000-split \
        --groups HAM10000_metadata.csv --group-column lesion_id --image-column image_id --val 0.1

No Qt, no torch.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dermaseg_app.core.atomic import atomic_write_text
from dermaseg_app.core.dataset import Case, find_cases


class SplitError(ValueError):
    """A split that cannot be made (missing metadata, unknown column, nothing to split)."""


@dataclass
class Split:
    train: list[str]
    val: list[str]
    train_groups: int
    val_groups: int


def group_split(stems: Sequence[str], groups: Mapping[str, str], val_fraction: float,
                seed: int = 0) -> Split:
    """Split ``stems`` so that no group has images on both sides.

    ``groups`` maps a stem to its group; a stem missing from it is a group of its own. Groups are
    shuffled with ``seed`` and taken into validation until it holds ``val_fraction`` of the images
    (rounded to the nearest group boundary). Deterministic for a given (stems, groups, seed):
    the input order of ``stems`` does not matter.
    """
    if not 0.0 < val_fraction < 1.0:
        raise SplitError(f"the validation fraction must be between 0 and 1, not {val_fraction}")
    if len(stems) < 2:
        raise SplitError("at least two images are needed for a split")
    by_group: dict[str, list[str]] = {}
    for stem in sorted(set(stems)):
        by_group.setdefault(groups.get(stem, f"\0{stem}"), []).append(stem)
    names = sorted(by_group)
    order = np.random.default_rng(seed).permutation(len(names))
    target = val_fraction * len(stems)
    val: list[str] = []
    val_groups = 0
    for i in order:
        members = by_group[names[i]]
        if len(val) + len(members) - target > len(members) / 2:
            continue  # this group would overshoot the target by more than half its size
        val.extend(members)
        val_groups += 1
        if len(val) >= target:
            break
    if not val or len(val) == len(set(stems)):
        raise SplitError("the groups are too large for this validation fraction")
    val_set = set(val)
    train = [s for s in sorted(set(stems)) if s not in val_set]
    return Split(train=train, val=sorted(val), train_groups=len(by_group) - val_groups,
                 val_groups=val_groups)


def read_groups(csv_path: Path | str, group_column: str, image_column: str) -> dict[str, str]:
    """``{image stem: group}`` from a metadata CSV (e.g. HAM10000_metadata.csv)."""
    path = Path(csv_path)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            for col in (group_column, image_column):
                if col not in fields:
                    raise SplitError(f"{path}: no column {col!r} (columns: {', '.join(fields)})")
            return {Path(row[image_column]).stem: row[group_column] for row in reader}
    except OSError as exc:
        raise SplitError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    try:
        os.symlink(src.resolve(), dst)
    except OSError:
        shutil.copy2(src, dst)


def write_split(cases: Sequence[Case], split: Split, out: Path | str,
                info: Mapping[str, object] | None = None) -> Path:
    """Write ``out/train`` and ``out/val`` (``images/`` + ``masks/<stem>.png`` links) and
    ``out/split.json`` (the stems of each side and ``info``). Cases without a mask are skipped."""
    out = Path(out)
    by_stem = {c.stem: c for c in cases if c.ground_truth is not None}
    for side, stems in (("train", split.train), ("val", split.val)):
        images = out / side / "images"
        masks = out / side / "masks"
        if (out / side).exists():
            shutil.rmtree(out / side)
        images.mkdir(parents=True)
        masks.mkdir(parents=True)
        for stem in stems:
            case = by_stem[stem]
            _link_or_copy(case.image, images / case.image.name)
            _link_or_copy(case.ground_truth, masks / f"{stem}.png")
    record = {"train": split.train, "val": split.val, "train_groups": split.train_groups,
              "val_groups": split.val_groups, **(info or {})}
    atomic_write_text(out / "split.json", json.dumps(record, indent=1) + "\n")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dermaseg_app.ml.splits",
        description="Split a folder of images/ + masks/ into train/ and val/ keeping groups "
                    "(e.g. HAM10000 lesion ids) on one side.")
    parser.add_argument("data", help="folder of images with masks")
    parser.add_argument("--out", required=True, help="folder to write train/, val/ and split.json")
    parser.add_argument("--groups", help="metadata CSV (relative to DATA or absolute); "
                                         "without it every image is its own group")
    parser.add_argument("--group-column", default="lesion_id")
    parser.add_argument("--image-column", default="image_id")
    parser.add_argument("--val", type=float, default=0.1, help="validation fraction (default 0.1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = Path(args.data)
    try:
        cases = [c for c in find_cases([data]) if c.ground_truth is not None]
        if not cases:
            raise SplitError(f"{data}: no images with masks")
        groups: dict[str, str] = {}
        if args.groups:
            csv_path = Path(args.groups)
            groups = read_groups(csv_path if csv_path.is_absolute() else data / csv_path,
                                 args.group_column, args.image_column)
        split = group_split([c.stem for c in cases], groups, args.val, args.seed)
        write_split(cases, split, args.out, {"source": str(data.resolve()), "seed": args.seed,
                                             "val_fraction": args.val,
                                             "group_column": args.group_column if args.groups else None})
    except (SplitError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{len(split.train)} train images ({split.train_groups} groups), {len(split.val)} val images "
          f"({split.val_groups} groups) -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

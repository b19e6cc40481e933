"""``dermaseg export PROJECT --out DIR``: masks, polygons, COCO and a CSV manifest of a review.

PROJECT is an image folder (its project is ``<folder>/dermaseg-project``) or a project folder.
Each image gets its saved correction, else the model's stored prediction (core.export).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export corrected masks, polygons, COCO and a CSV manifest of a review project",
        description="Write masks (PNG), polygons (GeoJSON-style JSON), one COCO file and a CSV "
        "manifest (status, note, corrected, agreement with the model, metrics against ground "
        "truth) for the images of a review project. Corrected masks are used where they exist, "
        "else the model's stored prediction.",
    )
    parser.add_argument("project", metavar="PROJECT",
                        help="an image folder, or its dermaseg-project folder")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    parser.add_argument("--coco-rle", action="store_true",
                        help="COCO segmentations as RLE for every mask (default: polygons, RLE only "
                        "where polygons would lose pixels, e.g. holes)")
    parser.add_argument("--masks", metavar="DIR",
                        help="folder of ground-truth masks, when not found automatically")
    parser.add_argument("--skip-excluded", action="store_true",
                        help="leave out images whose review status is 'excluded'")
    parser.add_argument("--no-hd95", action="store_true", help="skip HD95 (faster on large images)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dermaseg_app.core.export import export_project
    from dermaseg_app.core.project import Project, ProjectError
    from dermaseg_app.core.store import StoreError

    path = Path(args.project)
    if not path.is_dir():
        print(f"dermaseg: error: {path}: no such folder", file=sys.stderr)
        return 2
    try:
        project = Project.open_existing(path)
        for warning in project.warnings:
            print(f"dermaseg: warning: {warning}", file=sys.stderr)
        summary = export_project(project, Path(args.out), coco_rle=args.coco_rle,
                                 masks_dir=args.masks, skip_excluded=args.skip_excluded,
                                 with_hd95=not args.no_hd95)
    except (ProjectError, StoreError, OSError, ValueError) as exc:
        print(f"dermaseg: error: {exc}", file=sys.stderr)
        return 1
    for err in summary.errors:
        print(f"dermaseg: warning: {err}", file=sys.stderr)
    print(f"Exported {summary.images} images ({summary.masks} masks, {summary.corrected} corrected, "
          f"{summary.with_ground_truth} scored against ground truth) to {summary.out_dir}")
    print(f"  COCO: {summary.coco_path}  manifest: {summary.manifest_path}")
    return 0

"""``dermaseg export PROJECT --out DIR``: masks, polygons, COCO and a CSV manifest of a review.

PROJECT is an image folder (its project is ``<folder>/dermaseg-project``) or a project folder.
Each image not marked excluded gets its saved correction, else the current model's mask: the
model named by ``--model``, else the one the review window uses (chosen there with Use Model
File... or the Training tab's Use this model), else the bundled one. Its probability maps come from
the window's prediction cache and what is missing is predicted (one line per image on stderr).
The manifest says which images got which (core.export).
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
        "truth) for the images of a review project. Every image not marked excluded gets its "
        "saved correction, else the current model's mask (predicted where it is not cached); "
        "the manifest's mask_source column says which.",
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
    parser.add_argument("--model", metavar="FILE",
                        help="the model whose masks the images without a correction get (default: the "
                        "model the review window uses, else the bundled model)")
    parser.add_argument("--device", metavar="DEVICE", help="cpu, cuda or cuda:N (default: CUDA when present)")
    parser.add_argument("--corrections-only", action="store_true",
                        help="write only the saved corrections (no model, nothing predicted)")
    from dermaseg_app.commands.argtypes import positive_float

    parser.add_argument("--mm-per-px", type=positive_float, metavar="MM",
                        help="millimetres per pixel for the manifest's measurement columns (default: "
                        "each file's TIFF/EXIF resolution when plausible, else pixels; the unit "
                        "column says which)")
    parser.set_defaults(func=run)


def current_model_path(explicit: str | None) -> Path:
    """--model, else the model the review window uses (if its file exists), else the bundled one."""
    from dermaseg_app import paths
    from dermaseg_app.app.settings import GuiSettings  # (plain JSON, no Qt)

    if explicit:
        return Path(explicit)
    return GuiSettings.load().remembered_model() or paths.default_model_path()


def model_masks(args: argparse.Namespace):
    """The current model's ``ModelMasks`` (the predictor is loaded only when a map is missing from
    the cache); UserError when the model file cannot be used."""
    from dermaseg_app.commands.predict import UserError, load_predictor
    from dermaseg_app.core.export import ModelMasks, cached_probability
    from dermaseg_app.core.prediction_cache import PredictionCache
    from dermaseg_app.ml.header import ModelHeaderError, read_model_header  # (no Qt)

    path = current_model_path(args.model)
    try:
        header = read_model_header(path)
    except ModelHeaderError as exc:
        raise UserError(f"cannot use the model: {exc} (--corrections-only exports without one)") from None
    loaded: list = []
    counter = {"n": 0}

    def get_predictor():
        if not loaded:
            ns = argparse.Namespace(model=str(path), device=args.device, threshold=None)
            loaded.append(load_predictor(ns))
        return loaded[0]

    def on_predict(image: Path) -> None:
        counter["n"] += 1
        print(f"dermaseg: predicting {image.name} (not in the cache; {counter['n']} so far)",
              file=sys.stderr, flush=True)

    cache = PredictionCache(header.cache_key())
    print(f"Model masks from {header.label} ({path}), threshold {header.threshold:g}", flush=True)
    return ModelMasks(header.name, header.version, header.threshold,
                      cached_probability(cache, get_predictor, on_predict))


def run(args: argparse.Namespace) -> int:
    from dermaseg_app.commands.predict import UserError
    from dermaseg_app.core.export import export_project
    from dermaseg_app.core.measure import Calibration
    from dermaseg_app.core.project import Project, ProjectError
    from dermaseg_app.core.store import StoreError

    path = Path(args.project)
    if not path.is_dir():
        print(f"dermaseg: error: {path}: no such folder", file=sys.stderr)
        return 2
    try:
        project = Project.open_existing(path, read_only=True)  # export only reads the project
        for warning in project.warnings:
            print(f"dermaseg: warning: {warning}", file=sys.stderr)
        model = None if args.corrections_only else model_masks(args)
        summary = export_project(project, Path(args.out), coco_rle=args.coco_rle,
                                 masks_dir=args.masks, skip_excluded=args.skip_excluded,
                                 with_hd95=not args.no_hd95, model=model,
                                 calibration=Calibration(args.mm_per_px, "cli") if args.mm_per_px else None)
    except UserError as exc:
        print(f"dermaseg: error: {exc}", file=sys.stderr)
        return exc.code
    except (ProjectError, StoreError, OSError, ValueError) as exc:
        print(f"dermaseg: error: {exc}", file=sys.stderr)
        return 1
    for err in summary.errors:
        print(f"dermaseg: warning: {err}", file=sys.stderr)
    print(f"Exported {summary.images} images ({summary.masks} masks: {summary.corrected} corrected, "
          f"{summary.from_model} from the model; {summary.excluded} excluded; "
          f"{summary.with_ground_truth} scored against ground truth) to {summary.out_dir}")
    print(f"  COCO: {summary.coco_path}  manifest: {summary.manifest_path}")
    if summary.unreadable_corrections:
        print(f"dermaseg: error: {len(summary.unreadable_corrections)} saved correction(s) cannot be "
              f"read and were not exported (see the warnings above and the manifest's error column)",
              file=sys.stderr)
        return 1
    return 0

"""``dermaseg measure PATH... [--masks DIR] [--mm-per-px MM] [--json FILE]``: lesion measurements.

For each image: its paired mask when there is one (``--masks DIR``, else found beside the image
by the dataset rules of core.dataset: ISIC ``*_segmentation``, ``images/`` + ``masks/``, PH2),
otherwise the model's prediction (``--model`` etc. as for ``dermaseg predict``; the model is
loaded only when an image has no mask). Measured with core.measure: area, perimeter, largest and
smallest (Feret) diameter, equivalent diameter, asymmetry about the two principal axes, border
irregularity (compactness) and the dermoscopic colours; definitions in docs/measurements.md.

Calibration, per image: ``--mm-per-px``, else the file's TIFF/EXIF resolution when it is
trusted (core.measure.calibration_from_resolution), else none: values in pixels.

``--json FILE``::

    {"images": [{"image", "mask_source" ("mask" | "prediction"), "mask" (path or null),
                 "unit" ("mm" | "px"), "mm_per_px" (null when uncalibrated), "calibration_source",
                 "area_mm2", "perimeter_mm", "max_diameter_mm", "min_diameter_mm",
                 "equivalent_diameter_mm", "asymmetry_axes", "asymmetry": [major, minor],
                 "asymmetry_threshold", "border_irregularity", "colours": [names],
                 "colour_shares", "colour_min_share", "components", "holes", "area_px", ...}],
     "errors": [{"path", "reason"}], "note": "..."}

The ``*_mm`` / ``*_mm2`` keys are always there so that a reader finds the same fields in every
entry; when ``unit`` is "px" they hold pixels and square pixels. Always read ``unit``.
A research aid, not a diagnosis.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dermaseg_app.commands.argtypes import positive_float, share
from dermaseg_app.commands.predict import (
    UserError,
    add_model_arguments,
    apply_input_limits,
    fail,
    find_input_cases,
    load_predictor,
    run_reporting_user_errors,
    write_json_report,
)

NOTE = "A research aid, not a diagnosis: measurements from a mask, not a clinical assessment."


def register(subparsers: Any) -> None:
    from dermaseg_app.core.measure import ASYMMETRY_THRESHOLD, COLOUR_MIN_SHARE

    parser = subparsers.add_parser(
        "measure",
        help="measure lesions: size in mm, diameters, asymmetry, border, colours",
        description="Measure the lesion of each image from its paired mask, else the model's "
        "prediction: area, perimeter, max/min (Feret) diameter, equivalent diameter, asymmetry "
        "about the principal axes, border irregularity (P^2/(4 pi A)) and the dermoscopic "
        "colours. In millimetres with --mm-per-px or a trusted TIFF/EXIF resolution, else in "
        "pixels (the JSON's unit field says which; its *_mm keys then hold pixels). "
        "A research aid, not a diagnosis.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="images or folders (searched recursively)")
    parser.add_argument("--masks", metavar="DIR", help="folder of masks (<stem>.png, <stem>_segmentation.png, ...), "
                        "when not found automatically")
    parser.add_argument("--mm-per-px", type=positive_float, metavar="MM",
                        help="millimetres per pixel for every image (default: the file's TIFF/EXIF "
                        "resolution when plausible, else pixels)")
    parser.add_argument("--json", metavar="FILE", help="also write the measurements as JSON")
    parser.add_argument("--asymmetry-threshold", type=share, default=ASYMMETRY_THRESHOLD, metavar="S",
                        help=f"an axis is asymmetric when more than this share of the lesion does not "
                        f"overlap its mirror image (default {ASYMMETRY_THRESHOLD:g})")
    parser.add_argument("--colour-share", type=share, default=COLOUR_MIN_SHARE, metavar="S",
                        help=f"a colour counts when it covers more than this share of the lesion "
                        f"(default {COLOUR_MIN_SHARE:g})")
    add_model_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_reporting_user_errors(_run, args)


def _fmt(value: float | None, width: int = 8) -> str:
    if value is None:
        return f"{'-':>{width}}"
    return f"{value:>{width}.4g}"


def _table_row(name: str, width: int, source: str, m: Any) -> str:
    asym = "-" if m.asymmetry is None else f"{m.asymmetry_axes} ({m.asymmetry[0]:.2f}/{m.asymmetry[1]:.2f})"
    colours = "-" if m.colours is None else (", ".join(m.colours) or "none")
    return (f"{name:<{width}} {source:<10} {m.unit:<4} {_fmt(m.area, 10)} {_fmt(m.perimeter)} "
            f"{_fmt(m.max_diameter)} {_fmt(m.min_diameter)} {asym:<16} {_fmt(m.border_irregularity, 6)}  {colours}")


def _check_json_target(path: Path) -> None:
    if path.is_dir():
        raise UserError(f"cannot write {path}: it is a folder", code=2)
    if not path.parent.is_dir():
        raise UserError(f"cannot write {path}: the folder {path.parent} does not exist", code=2)


def _run(args: argparse.Namespace) -> int:
    from dermaseg_app.core.imageio import ImageReadError, read_image, read_mask
    from dermaseg_app.core.measure import Calibration, calibration_from_file, measure

    json_path = Path(args.json) if args.json else None
    if json_path is not None:
        _check_json_target(json_path)
    apply_input_limits(args)
    cases = find_input_cases(args.paths, args.masks)
    cli_cal = Calibration(args.mm_per_px, "cli") if args.mm_per_px else None
    width = max(12, max(len(c.image.name) for c in cases))
    entries: dict[int, dict[str, Any]] = {}
    errors: list[dict[str, str]] = []
    printed_header = False

    def skip(path: Path, reason: str) -> None:
        errors.append({"path": str(path), "reason": reason})
        print(f"dermaseg: skipped {path}: {reason}", file=sys.stderr)

    def record(index: int, image: Path, source: str, mask_path: Path | None, mask: Any) -> None:
        nonlocal printed_header
        try:
            rgb = read_image(image)
        except ImageReadError as exc:
            skip(image, str(exc))
            return
        if rgb.shape[:2] != mask.shape:
            skip(image, f"mask {mask.shape[1]}x{mask.shape[0]} differs from the image "
                        f"{rgb.shape[1]}x{rgb.shape[0]} ({mask_path}); masks are not resized")
            return
        cal = cli_cal or calibration_from_file(image)
        m = measure(mask, rgb, cal, asymmetry_threshold=args.asymmetry_threshold,
                    colour_min_share=args.colour_share)
        entry = {"image": str(image), "mask_source": source, "mask": str(mask_path) if mask_path else None}
        entry.update(m.to_dict())
        entries[index] = entry
        if not printed_header:
            print(f"{'image':<{width}} {'source':<10} {'unit':<4} {'area':>10} {'perimeter':>8} "
                  f"{'max diam':>8} {'min diam':>8} {'asym. axes':<16} {'border':>6}  colours")
            printed_header = True
        print(_table_row(image.name, width, source, m), flush=True)

    paired = [(i, c) for i, c in enumerate(cases) if c.ground_truth is not None]
    unpaired = [(i, c) for i, c in enumerate(cases) if c.ground_truth is None]
    print(f"{len(cases)} image(s): {len(paired)} with a mask, {len(unpaired)} measured on the model's "
          f"prediction; {cli_cal.describe() if cli_cal else 'calibration from each file, else pixels'}")
    try:
        for index, case in paired:
            try:
                mask = read_mask(case.ground_truth)
            except ImageReadError as exc:
                skip(case.image, f"mask {case.ground_truth}: {exc}")
                continue
            record(index, case.image, "mask", case.ground_truth, mask)
        if unpaired:
            predictor = load_predictor(args)
            print(f"model {predictor.info.label()} ({predictor.info.path}); {predictor.device_label}; "
                  f"threshold {predictor.threshold:g}", flush=True)
            index_of = {case.image: index for index, case in unpaired}
            results = predictor.predict_files([c.image for _, c in unpaired], batch_size=args.batch_size)
            try:
                for result in results:
                    if result.prediction is None:
                        skip(result.path, result.error or "cannot be read")
                        continue
                    record(index_of[result.path], result.path, "prediction", None, result.prediction.mask)
            finally:
                results.close()
    except KeyboardInterrupt:
        fail("interrupted")
        return 130

    uncalibrated = sum(1 for e in entries.values() if e["unit"] == "px")
    print(f"{len(entries)} image(s) measured, {len(errors)} skipped"
          + (f"; {uncalibrated} uncalibrated (values in pixels: use --mm-per-px)" if uncalibrated else ""))
    print(NOTE)
    if json_path is not None:
        report = {"images": [entries[i] for i in sorted(entries)], "errors": errors, "note": NOTE}
        if not write_json_report(json_path, report, "measurements"):
            return 1
    if not entries:
        fail("no image could be measured")
        return 1
    return 0

"""``dermaseg evaluate PATH...``: score the model against ground truth.

Prints per image JSC, DSC, ACC, SEN, SPE and HD95, then the mean over images and the pooled
figures (from the summed TP/FP/FN/TN). ``--json FILE`` writes::

    {"model": {"name", "version", "path"}, "images": N,
     "mean": {"acc", "dsc", "jsc", "sen", "spe", "jsc_th"}, "pooled": {...},
     "per_image": [{"image", "ground_truth", "acc", "dsc", "jsc", "sen", "spe", "jsc_th", "hd95"}],
     "errors": [{"path", "reason"}]}

All metrics are fractions in [0, 1] (HD95 in pixels, null when undefined). Images without ground
truth, or whose mask differs in size from the image (never stretched), are listed in ``errors``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

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

SUMMARY_KEYS = ("acc", "dsc", "jsc", "sen", "spe", "jsc_th")
PER_IMAGE_KEYS = ("acc", "dsc", "jsc", "sen", "spe", "jsc_th", "hd95")
TABLE_COLUMNS = (("JSC", "jsc"), ("DSC", "dsc"), ("ACC", "acc"), ("SEN", "sen"), ("SPE", "spe"))


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score the model's masks against ground truth",
        description="Predict each image that has a ground-truth mask and print JSC, DSC, ACC, SEN, SPE, "
        "HD95 per image, their mean and the pooled figures.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="images or folders (searched recursively)")
    parser.add_argument("--masks", metavar="DIR", help="folder of ground-truth masks, when not found automatically")
    add_model_arguments(parser)
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--ensemble-with", metavar="FILE",
                        help="a second model: print the mean JSC of --model, of this one and of their ensemble "
                        "(the mean of the two probability maps, cut at the mean of the two thresholds), and "
                        "whether the ensemble scores higher than both")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_reporting_user_errors(_run, args)


def _number(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def scores_dict(scores: Any, keys: tuple[str, ...]) -> dict[str, float | None]:
    return {key: _number(getattr(scores, key)) for key in keys}


def _fmt(value: float | None, percent: bool = True) -> str:
    if value is None:
        return "-"
    return f"{100 * value:6.2f}" if percent else f"{value:6.1f}"


def _check_json_target(path: Path) -> None:
    parent = path.parent
    if path.is_dir():
        raise UserError(f"cannot write {path}: it is a folder", code=2)
    if not parent.is_dir():
        raise UserError(f"cannot write {path}: the folder {parent} does not exist", code=2)


def _run(args: argparse.Namespace) -> int:
    from dermaseg_app.core.imageio import ImageReadError, read_mask
    from dermaseg_app.core.metrics import score_with_confusion, summarize

    json_path = Path(args.json) if args.json else None
    if json_path is not None:
        _check_json_target(json_path)
    apply_input_limits(args)
    cases = find_input_cases(args.paths, args.masks)
    errors: list[dict[str, str]] = []
    with_gt = []
    for case in cases:
        if case.ground_truth is None:
            errors.append({"path": str(case.image), "reason": "no ground truth found"})
        else:
            with_gt.append(case)
    for error in errors:
        print(f"dermaseg: skipped {error['path']}: {error['reason']}", file=sys.stderr)
    if not with_gt:
        raise UserError(f"none of the {len(cases)} image(s) has a ground-truth mask (use --masks DIR)")
    if getattr(args, "ensemble_with", None):
        return _run_ensemble(args, with_gt, json_path)

    predictor = load_predictor(args)
    print(f"model {predictor.info.label()} ({predictor.info.path}); {predictor.device_label}; "
          f"threshold {predictor.threshold:g}")
    width = max(12, max(len(c.image.name) for c in with_gt))
    header = f"{'image':<{width}} " + " ".join(f"{name:>6}" for name, _ in TABLE_COLUMNS) + f" {'HD95':>6}"
    print("JSC, DSC, ACC, SEN, SPE in %; HD95 (95th percentile boundary distance) in pixels")
    print(header)

    gt_of = {case.image: case.ground_truth for case in with_gt}
    per_image: list[dict[str, Any]] = []
    pairs = []
    results = predictor.predict_files([c.image for c in with_gt], batch_size=args.batch_size)
    try:
        for result in results:
            gt_path = gt_of[result.path]
            if result.prediction is None:
                errors.append({"path": str(result.path), "reason": result.error or "cannot be read"})
                print(f"dermaseg: skipped {result.path}: {result.error}", file=sys.stderr)
                continue
            try:
                gt = read_mask(gt_path)
            except ImageReadError as exc:
                reason = f"ground truth {gt_path}: {exc.reason if hasattr(exc, 'reason') else exc}"
                errors.append({"path": str(result.path), "reason": reason})
                print(f"dermaseg: skipped {result.path}: {reason}", file=sys.stderr)
                continue
            pred = result.prediction.mask
            if gt.shape != pred.shape:
                reason = (f"mask {gt.shape[1]}x{gt.shape[0]} differs from image "
                          f"{pred.shape[1]}x{pred.shape[0]} ({gt_path})")
                errors.append({"path": str(result.path), "reason": reason})
                print(f"dermaseg: skipped {result.path}: {reason}", file=sys.stderr)
                continue
            conf, scores = score_with_confusion(pred, gt)
            pairs.append((conf, scores))
            entry = {"image": str(result.path), "ground_truth": str(gt_path)}
            entry.update(scores_dict(scores, PER_IMAGE_KEYS))
            per_image.append(entry)
            cells = " ".join(_fmt(entry[key]) for _, key in TABLE_COLUMNS)
            print(f"{result.path.name:<{width}} {cells} {_fmt(entry['hd95'], percent=False)}", flush=True)
    except KeyboardInterrupt:
        fail("interrupted")
        return 130
    finally:
        results.close()

    summary = summarize(pairs) if pairs else None
    if summary is not None:
        rule = "-" * len(header)
        print(rule)
        for label, scores in (("mean", summary.mean), ("pooled", summary.pooled)):
            cells = " ".join(_fmt(_number(getattr(scores, key))) for _, key in TABLE_COLUMNS)
            print(f"{label:<{width}} {cells} {_fmt(_number(scores.hd95), percent=False)}")
        print(f"thresholded JSC (mean, 0 below 0.65): {100 * summary.mean.jsc_th:.2f}")
        print(f"{len(per_image)} image(s) scored, {len(errors)} skipped")
    if json_path is not None:
        report = {
            "model": {"name": predictor.info.name, "version": predictor.info.version,
                      "path": str(predictor.info.path)},
            "images": len(per_image),
            "mean": scores_dict(summary.mean, SUMMARY_KEYS) if summary else None,
            "pooled": scores_dict(summary.pooled, SUMMARY_KEYS) if summary else None,
            "per_image": per_image,
            "errors": errors,
        }
        if not write_json_report(json_path, report):
            return 1
    if not per_image:
        fail("no image could be scored")
        return 1
    return 0


def _run_ensemble(args: argparse.Namespace, cases: list[Any], json_path: Path | None) -> int:
    """``--ensemble-with B``: JSC of A, of B and of their ensemble per image and on average."""
    from dermaseg_app.app.ensemble import EnsembleRow, ensemble_threshold, evaluate_ensemble

    predictor_a = load_predictor(args)
    predictor_b = load_predictor(argparse.Namespace(**{**vars(args), "model": args.ensemble_with,
                                                       "threshold": None}))
    t_ens = ensemble_threshold(predictor_a.threshold, predictor_b.threshold)
    print(f"A: {predictor_a.info.label()} ({predictor_a.info.path}), threshold {predictor_a.threshold:g}")
    print(f"B: {predictor_b.info.label()} ({predictor_b.info.path}), threshold {predictor_b.threshold:g}")
    print(f"ensemble: the mean of the two probability maps at the image's size, threshold {t_ens:g}")
    width = max(12, max(len(c.image.name) for c in cases))
    print("JSC in %")
    print(f"{'image':<{width}} {'A':>6} {'B':>6} {'ens':>6}")
    per_image: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []

    def row(r: EnsembleRow) -> None:
        per_image.append({"image": str(r.image), "jsc_a": r.jsc_a, "jsc_b": r.jsc_b, "jsc_ensemble": r.jsc_ensemble})
        print(f"{r.image.name:<{width}} {_fmt(r.jsc_a)} {_fmt(r.jsc_b)} {_fmt(r.jsc_ensemble)}", flush=True)

    def skip(path: Path, reason: str) -> None:
        errors.append({"path": str(path), "reason": reason})
        print(f"dermaseg: skipped {path}: {reason}", file=sys.stderr)

    try:
        result = evaluate_ensemble(cases, predictor_a, predictor_b, on_row=row, on_skip=skip)
    except KeyboardInterrupt:
        fail("interrupted")
        return 130
    print("-" * (width + 21))
    print(f"{'mean':<{width}} {_fmt(result.jsc_a)} {_fmt(result.jsc_b)} {_fmt(result.jsc_ensemble)}")
    print(result.describe(predictor_a.info.label(), predictor_b.info.label()))
    if json_path is not None:
        report = {"model": str(predictor_a.info.path), "ensemble_with": str(predictor_b.info.path),
                  "threshold_a": predictor_a.threshold, "threshold_b": predictor_b.threshold,
                  "threshold_ensemble": t_ens, "images": result.n,
                  "mean": {"jsc_a": result.jsc_a, "jsc_b": result.jsc_b, "jsc_ensemble": result.jsc_ensemble},
                  "ensemble_better": result.better, "per_image": per_image, "errors": errors}
        if not write_json_report(json_path, report):
            return 1
    if result.n == 0:
        fail("no image could be scored")
        return 1
    return 0

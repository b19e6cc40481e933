"""``dermaseg predict PATH... --out DIR``: a 0/255 PNG mask per image, and predictions.csv.

For each image ``<stem>.png`` (the mask, the image's own size) is written to DIR, with
``--save-prob`` also ``<stem>_prob.png`` (16-bit probability map, 0..65535), and at the end
``predictions.csv`` (image, mask, width, height, lesion fraction, seconds, error, then the lesion
measurements of core.measure: unit, mm_per_px, calibration_source, area, perimeter, max_diameter,
min_diameter, equivalent_diameter, asymmetry_axes, asymmetry_major, asymmetry_minor,
border_irregularity, colours, components; lengths in ``unit`` (mm with ``--mm-per-px`` or a
trusted TIFF/EXIF resolution, else px), the area in unit squared). Every file is
written atomically. An output folder that cannot be written fails before any work; an image that
cannot be read is reported with its path and reason and the run goes on. The exit status is 0 when
at least one image was processed, 1 when none could be, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dermaseg_app.commands.argtypes import positive_float, positive_int, threshold
from dermaseg_app.core.measure import MEASUREMENT_COLUMNS, measure_file

CSV_NAME = "predictions.csv"
# the measurement columns come after the original ones (their order kept)
CSV_COLUMNS = ("image", "mask", "width", "height", "lesion_fraction", "seconds", "error", *MEASUREMENT_COLUMNS)


class UserError(Exception):
    """A problem the user can fix; printed as one line. ``code``: 2 bad arguments, 1 failure."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str) -> None:
    print(f"dermaseg: error: {message}", file=sys.stderr)


def write_json_report(path: Path, report: Any, what: str = "results") -> bool:
    """Write ``report`` as indented JSON to ``path`` atomically and say so; False (after the
    error line) when it cannot be written."""
    from dermaseg_app.core.atomic import atomic_write_text

    try:
        atomic_write_text(path, json.dumps(report, indent=2) + "\n")
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}")
        return False
    print(f"{what} written to {path}")
    return True


def run_reporting_user_errors(body: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command's body; a UserError prints as one line and becomes the exit code."""
    try:
        return body(args)
    except UserError as exc:
        fail(str(exc))
        return exc.code


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --device, --threshold: shared by predict and evaluate."""
    parser.add_argument("--model", metavar="FILE", help="model weights (.safetensors; default: the bundled model)")
    parser.add_argument("--device", metavar="DEVICE", help="cpu, cuda, cuda:N or mps (default: CUDA when present)")
    parser.add_argument("--threshold", type=threshold, metavar="T",
                        help="probability threshold between 0 and 1 (default: the model's, usually 0.5)")
    parser.add_argument("--batch-size", type=positive_int, default=8, metavar="N",
                        help="images per network run (default 8)")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="test-time flips: the mean of the image's and its three flips' probabilities "
                        "(four times the network's work; default: the model file's setting)")
    parser.add_argument("--max-megapixels", type=positive_float, metavar="MP",
                        help="refuse images larger than this, before decoding (default 200, or the "
                        "max_image_pixels setting)")


def apply_input_limits(args: argparse.Namespace) -> None:
    """--max-megapixels for this run (core.limits)."""
    value = getattr(args, "max_megapixels", None)
    if value is not None:
        from dermaseg_app.core.limits import set_limits

        set_limits(max_image_pixels=max(1, int(value * 1e6)))


def load_predictor(args: argparse.Namespace) -> Any:
    """The Predictor the arguments ask for; UserError for a bad device or model file."""
    from dermaseg_app.ml.device import DeviceError, choose_device
    from dermaseg_app.ml.predictor import Predictor
    from dermaseg_app.ml.weights import WeightsError

    try:
        device, notice = choose_device(args.device)
    except DeviceError as exc:
        raise UserError(str(exc), code=2) from None
    if notice:
        print(f"dermaseg: {notice}", file=sys.stderr)
    try:
        predictor = Predictor(model_path=args.model, device=device, threshold=args.threshold,
                              backend=getattr(args, "backend", None), tta=getattr(args, "tta", None))
    except WeightsError as exc:
        raise UserError(f"cannot load the model: {exc}") from None
    if predictor.device_notice:  # the device is chosen above: this is the backend's (ml.backends)
        print(f"dermaseg: {predictor.device_notice}", file=sys.stderr)
    return predictor


def find_input_cases(raw_paths: list[str], masks_dir: str | None = None) -> list[Any]:
    """Cases (image + ground truth) named or inside the folders named; UserError for missing
    paths or no images."""
    from dermaseg_app.core.dataset import find_cases

    paths = [Path(p) for p in raw_paths]
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise UserError(f"no such file or folder: {missing[0]}", code=2)
    if masks_dir is not None and not Path(masks_dir).is_dir():
        raise UserError(f"no such masks folder: {masks_dir}", code=2)
    try:
        cases = find_cases(paths, masks_dir=masks_dir)
    except OSError as exc:
        raise UserError(f"cannot list {exc.filename or paths[0]}: {exc.strerror or exc}") from None
    if not cases:
        raise UserError(f"no images found in {', '.join(str(p) for p in paths)}")
    return cases


def prepare_output_dir(out: Path) -> Path:
    """Create ``out`` if needed and prove it writable; UserError (before any work) otherwise."""
    for parent in [out, *out.parents]:
        if parent.exists():
            if not parent.is_dir():
                what = "the output folder" if parent == out else f"a parent of the output folder ({out})"
                raise UserError(f"cannot write to {out}: {parent} is a file, not a folder ({what})")
            break
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the output folder {out}: {exc.strerror or exc}") from None
    try:
        with tempfile.NamedTemporaryFile(dir=out, prefix=".dermaseg-write-test-", delete=True) as handle:
            handle.write(b"ok")
            handle.flush()
    except OSError as exc:
        raise UserError(f"cannot write to the output folder {out}: {exc.strerror or exc}") from None
    return out


def _holds_any(folder: Path, files: list[Path]) -> bool:
    # os.path.realpath, not Path.resolve: a symbolic-link loop among the inputs must not raise
    root = Path(os.path.realpath(folder))
    for f in files:
        real = Path(os.path.realpath(f))
        if root == real.parent or root in real.parents:
            return True
    return False


def _key(path: Path) -> str:
    return os.path.normcase(os.path.realpath(path))


@dataclass
class OutputNames:
    """Unique output names per input stem, never the path of any input image or ground truth.

    ``protected``: real paths (see ``_key``) of every input image and ground-truth mask.
    """

    out: Path
    protected: set[str]
    used: set[str] = field(default_factory=set)

    def _free(self, candidate: str) -> bool:
        if candidate.lower() in self.used:
            return False
        names = (f"{candidate}.png", f"{candidate}_prob.png")
        return not any(_key(self.out / name) in self.protected for name in names)

    def for_image(self, image: Path) -> tuple[Path, Path]:
        stem = image.stem
        candidate, n = stem, 1
        while not self._free(candidate):
            n += 1
            candidate = f"{stem}_{n}"
        self.used.add(candidate.lower())
        return self.out / f"{candidate}.png", self.out / f"{candidate}_prob.png"


def encode_probability_png(prob: np.ndarray) -> bytes:
    """A float probability map as a 16-bit greyscale PNG (0..65535)."""
    import cv2

    values = np.clip(np.rint(np.asarray(prob, dtype=np.float64) * 65535.0), 0, 65535).astype(np.uint16)
    ok, buffer = cv2.imencode(".png", values)
    if not ok:
        raise OSError("PNG encoding failed")
    return buffer.tobytes()


def csv_text(rows: list[dict[str, Any]]) -> str:
    """predictions.csv's text; csv_safe is idempotent, so rows read back from a CSV may pass again."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    from dermaseg_app.core.export import csv_safe

    for row in rows:
        writer.writerow({k: csv_safe(v) for k, v in row.items()})
    return buffer.getvalue()


# -- torchrun: each rank's CSV part, the merge, and what a later --skip-existing run reuses --------

PART_PREFIX = "predictions.part-"


def part_path(out: Path, rank: int, size: int) -> Path:
    return out / f"{PART_PREFIX}{rank}-of-{size}.csv"


def part_files(out: Path) -> list[Path]:
    """Every rank's CSV part in ``out``, oldest first (a later one wins in a merge)."""
    try:
        found = [p for p in out.iterdir() if p.name.startswith(PART_PREFIX) and p.suffix == ".csv"]
    except OSError:
        return []
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name))


class PartWriter:
    """A rank's CSV part, one flushed line per image: what a rank that dies had done survives
    (a torn last line is dropped when read)."""

    def __init__(self, path: Path) -> None:
        from dermaseg_app.core.export import csv_safe

        self._safe = csv_safe
        self._handle = open(path, "w", newline="", encoding="utf-8")  # closed in close()
        self._writer = csv.DictWriter(self._handle, fieldnames=CSV_COLUMNS, lineterminator="\n",
                                      extrasaction="ignore")
        self._writer.writeheader()
        self._handle.flush()

    def write(self, row: dict[str, Any]) -> None:
        self._writer.writerow({k: self._safe(v) for k, v in row.items()})
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def _read_rows(path: Path) -> list[dict[str, Any]]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or "image" not in reader.fieldnames:
                return []
            # a torn line (a rank killed mid-write) has too few cells: None where they lack
            return [row for row in reader if row.get("image") and None not in row.values()
                    and None not in row]
    except (OSError, csv.Error, UnicodeDecodeError):
        return []


def read_previous_rows(out: Path) -> dict[str, dict[str, Any]]:
    """Image -> its latest row in predictions.csv and the rank parts of ``out``."""
    rows: dict[str, dict[str, Any]] = {}
    for source in [out / CSV_NAME, *part_files(out)]:
        for row in _read_rows(source):
            rows[row["image"]] = row
    return rows


def _merge_and_report(out: Path, images: list[Path], world_size: int | None) -> int:
    """One predictions.csv in the single-process order from the parts (and an earlier CSV), each
    image once; the images without a row are named, and --skip-existing does only those."""
    from dermaseg_app.core.atomic import atomic_write_text

    found = read_previous_rows(out)
    rows = [found[str(image)] for image in images if str(image) in found]
    missing = [image for image in images if str(image) not in found]
    try:
        atomic_write_text(out / CSV_NAME, csv_text(rows))
    except OSError as exc:
        fail(f"cannot write {out / CSV_NAME}: {exc.strerror or exc}")
        return 1
    ranks = f" from {world_size} rank(s)" if world_size else ""
    print(f"{out / CSV_NAME}: {len(rows)} of {len(images)} image(s){ranks}")
    if missing:
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        shown = ", ".join(str(p) for p in missing[:10]) + more
        fail(f"{len(missing)} image(s) have no result (a rank stopped before them?): {shown}; "
             "run the same command again with --skip-existing to do only those")
        return 1
    for part in part_files(out):
        try:
            part.unlink()
        except OSError:
            pass
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="write a lesion mask (0/255 PNG) for each image",
        description="Segment images with SLSNet and write <stem>.png masks (0/255, the image's size) "
        "and predictions.csv to the output folder.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="images or folders (searched recursively)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the masks and predictions.csv")
    add_model_arguments(parser)
    parser.add_argument("--save-prob", action="store_true",
                        help="also write <stem>_prob.png, the probability map as a 16-bit PNG")
    parser.add_argument("--mm-per-px", type=positive_float, metavar="MM",
                        help="millimetres per pixel for the measurement columns (default: the file's "
                        "TIFF/EXIF resolution when plausible, else pixels; the unit column says which)")
    parser.add_argument("--no-measurements", action="store_true",
                        help="leave the measurement columns empty (saves reading each image again)")
    from dermaseg_app.ml.backends import BACKENDS

    parser.add_argument("--backend", choices=BACKENDS, metavar="NAME",
                        help="what runs the network: auto (default: on the CPU the fastest of torch, OpenVINO and "
                        "ONNX Runtime as installed, timed once per model file), torch, onnxruntime, openvino, "
                        "openvino-bf16 (faster "
                        "on CPUs with bfloat16, probabilities up to ~0.1 off); "
                        "the default can be set as inference_backend in settings.json or DERMASEG_BACKEND")
    parser.add_argument("--skip-existing", action="store_true",
                        help="leave out the images whose mask (and --save-prob map) is already in DIR with "
                        "a row in its predictions.csv or a rank's part (after an interrupted or failed run)")
    parser.add_argument("--merge", action="store_true",
                        help="predict nothing: merge the rank parts left in DIR by a torchrun run into "
                        "predictions.csv and name the images still missing")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_reporting_user_errors(_run, args)


def _run(args: argparse.Namespace) -> int:
    from dermaseg_app.ml.distributed import init_process_group, shut_down, world_from_env

    apply_input_limits(args)
    world = world_from_env()
    cases = find_input_cases(args.paths)
    images = [case.image for case in cases]  # the single-process order: every rank sees the same
    protected = {_key(c.image) for c in cases} | {_key(c.ground_truth) for c in cases if c.ground_truth}
    out = prepare_output_dir(Path(args.out))
    # every image's output names up front, in the single-process order: a rank's names are the
    # ones one process would give, and a later --skip-existing run finds them again
    names = OutputNames(out, protected)
    planned = {str(image): names.for_image(image) for image in images}
    if getattr(args, "merge", False):
        if world.distributed and not world.is_main:
            return 0
        return _merge_and_report(out, images, world_size=None)

    if world.distributed:
        # gloo for the barriers, also when the network runs on a GPU; the last barrier waits for
        # the slowest rank's share (hours for an archive), hence the long timeout
        init_process_group(world, timeout_s=7 * 24 * 3600.0)
    try:
        return _predict(args, world, images, planned, out)
    finally:
        shut_down(world)


def _reusable_rows(args: argparse.Namespace, mine: list[Path], planned: dict[str, tuple[Path, Path]],
                   out: Path) -> dict[str, dict[str, Any]]:
    """--skip-existing: the previous run's rows of these images whose mask (and probability map,
    with --save-prob) is still where this run would write it, by image path; {} without the option."""
    previous = read_previous_rows(out) if getattr(args, "skip_existing", False) else {}
    reused: dict[str, dict[str, Any]] = {}
    for image in mine:
        row = previous.get(str(image))
        mask_path, prob_path = planned[str(image)]
        if (row is not None and not row.get("error") and row.get("mask") == str(mask_path)
                and mask_path.is_file() and (not args.save_prob or prob_path.is_file())):
            reused[str(image)] = row
    return reused


def _predict(args: argparse.Namespace, world: Any, images: list[Path], planned: dict[str, tuple[Path, Path]],
             out: Path) -> int:
    """One process's predictions (all images, or under torchrun this rank's share)."""
    from dermaseg_app.core.atomic import atomic_write_bytes, atomic_write_text
    from dermaseg_app.core.dataset import mark_output_folder
    from dermaseg_app.core.imageio import write_mask_png
    from dermaseg_app.core.measure import Calibration
    from dermaseg_app.ml.distributed import barrier, rank_device, shard

    mine = shard(images, world)
    reused = _reusable_rows(args, mine, planned, out)
    todo = [image for image in mine if str(image) not in reused]
    if world.distributed:
        args.device = rank_device(args.device, world)
    predictor = load_predictor(args)
    if world.is_main and not _holds_any(out, images):  # a later folder search never takes our masks as images
        try:
            mark_output_folder(out)
        except OSError:
            pass
    if world.is_main:
        print(f"{len(images)} image(s); model {predictor.info.label()} ({predictor.info.path}); "
              f"{predictor.device_label}, {predictor.backend_label}; threshold {predictor.threshold:g}")
    if world.distributed:
        print(f"{world.label()}: {len(mine)} images", flush=True)
    if reused:
        print(f"{len(reused)} image(s) already done (--skip-existing); {len(todo)} to do", flush=True)
    part = None
    if world.distributed:
        barrier(world)  # every rank has read the previous parts before any is rewritten
        part = PartWriter(part_path(out, world.rank, world.size))
        for image in mine:
            if str(image) in reused:
                part.write(reused[str(image)])

    mm_per_px = getattr(args, "mm_per_px", None)
    cli_cal = Calibration(mm_per_px, "cli") if mm_per_px else None
    with_measurements = not getattr(args, "no_measurements", False)
    new_rows: dict[str, dict[str, Any]] = {}
    written = 0
    started = time.perf_counter()
    cancel = threading.Event()
    interactive = sys.stdout.isatty()
    interrupted = False
    results = predictor.predict_files(todo, cancel=cancel, batch_size=args.batch_size)
    try:
        for index, result in enumerate(results, start=1):
            row: dict[str, Any] = {"image": str(result.path), "mask": "", "width": "", "height": "",
                                   "lesion_fraction": "", "seconds": f"{result.seconds:.4f}", "error": ""}
            error = result.error
            if result.prediction is not None:
                prediction = result.prediction
                h, w = prediction.shape
                row.update(width=w, height=h, lesion_fraction=f"{prediction.lesion_fraction:.6f}")
                mask_path, prob_path = planned[str(result.path)]
                try:
                    t0 = time.perf_counter()
                    write_mask_png(mask_path, prediction.mask)
                    if args.save_prob:
                        atomic_write_bytes(prob_path, encode_probability_png(prediction.prob))
                    row["seconds"] = f"{result.seconds + time.perf_counter() - t0:.4f}"
                    row["mask"] = str(mask_path)
                    written += 1
                except OSError as exc:
                    error = f"cannot write {mask_path}: {exc.strerror or exc}"
                if with_measurements:
                    row.update(measure_file(result.path, prediction.mask, cli_cal))
            if error:
                row["error"] = error
                if interactive:
                    print(file=sys.stdout)
                print(f"dermaseg: skipped {result.path}: {error}", file=sys.stderr)
            new_rows[str(result.path)] = row
            if part is not None:
                part.write(row)
            line = f"[{index}/{len(todo)}] {result.path.name}"
            if world.distributed:
                line = f"rank {world.rank}: {line}"
            if interactive:
                print(f"\r{line:<70}", end="", flush=True)
            else:
                print(line, flush=True)
    except KeyboardInterrupt:
        cancel.set()
        interrupted = True
    finally:
        results.close()
        if part is not None:
            part.close()
    if interactive:
        print()
    elapsed = time.perf_counter() - started
    per_image = elapsed / max(1, len(new_rows))
    done = written + len(reused)
    if not world.distributed:  # one process writes predictions.csv itself, also when interrupted
        rows = [reused.get(str(image)) or new_rows[str(image)] for image in images
                if str(image) in reused or str(image) in new_rows]
        try:
            atomic_write_text(out / CSV_NAME, csv_text(rows))
        except OSError as exc:
            fail(f"cannot write {out / CSV_NAME}: {exc.strerror or exc}")
            return 1
    print(f"{written} mask(s) written to {out} ({per_image:.3f} s per image; {len(new_rows) - written} skipped)")
    if interrupted:
        fail(f"interrupted after {len(new_rows)} of {len(todo)} image(s)")
        return 130
    if world.distributed:
        barrier(world)  # every part is complete
        if world.is_main:
            code = _merge_and_report(out, images, world_size=world.size)
            if code:
                return code
        return 0 if done or not mine else 1
    return 0 if done else 1

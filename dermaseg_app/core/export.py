"""Export a review project: masks, polygons, COCO and a CSV manifest (issue 5). No Qt, no torch.

``export_project(project, out_dir)`` writes, for every image of the project's image folder::

    <out>/masks/<stem>_segmentation.png   0/255 PNG at full resolution (ISIC naming)
    <out>/polygons/<stem>.json            GeoJSON-style FeatureCollection, pixel-edge coordinates
                                          (pixel (r, c) is the square [c, c+1] x [r, r+1])
    <out>/coco.json                       one COCO file for the folder: images, annotations
                                          (polygons; RLE where polygons would be lossy, or always
                                          with coco_rle=True), bbox, area, category "lesion"
    <out>/manifest.csv                    image, status, note, corrected, mask source, model,
                                          agreement with the prediction, metrics against ground
                                          truth where it exists, then the lesion measurements of
                                          core.measure (unit, mm_per_px, area, perimeter,
                                          diameters, asymmetry, border irregularity, colours)

Every image not marked excluded gets a mask: its saved correction when there is one, else the
current model's mask (``ModelMasks``: the probability map from the prediction cache, predicted
when it is missing, cut at the model's threshold). The manifest's ``mask_source`` says which
(``correction`` / ``model``); ``model_name`` and ``model_version`` name the model the mask came
from (for a correction, the model it was started from). Excluded images get no mask (they are
listed with their status, or left out with ``skip_excluded``); without a model, images without a
correction are listed without a mask and say why. Every file is
written atomically; the output folder is marked as DermaSeg output (core.dataset) so it is never
read back as input images, and it may not be a ground-truth folder.

COCO RLE here is the uncompressed form ``{"size": [h, w], "counts": [...]}`` (column-major
runs starting with background), which pycocotools reads with ``frPyObjects``; COCO polygons
cannot hold holes, so a mask with holes (or any mask whose outline polygons do not rasterise
back to exactly the same pixels) gets RLE.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from shapely.geometry import mapping
from shapely.geometry.polygon import orient

from dermaseg_app import __version__
from dermaseg_app.core.atomic import atomic_write_text
from dermaseg_app.core.dataset import OUTPUT_MARKER, find_ground_truth, find_images, mark_output_folder
from dermaseg_app.core.edit import BBox
from dermaseg_app.core.geometry import mask_to_polygons, polygons_of, rasterize_rings
from dermaseg_app.core.imageio import ImageReadError, read_mask, write_mask_png
from dermaseg_app.core.measure import MEASUREMENT_COLUMNS, Calibration, measure_file
from dermaseg_app.core.metrics import MaskSizeMismatch, agreement, score
from dermaseg_app.core.project import Project, ReviewStatus
from dermaseg_app.core.store import CorrectionStore, GroundTruthProtected, StoreError, check_not_ground_truth

if TYPE_CHECKING:
    from dermaseg_app.core.prediction_cache import PredictionCache

MANIFEST_COLUMNS = (
    "image", "stem", "status", "note", "updated", "corrected", "mask_source", "mask_file",
    "polygons_file", "model_name", "model_version", "threshold", "agreement_with_prediction",
    "lesion_pixels",
    "ground_truth", "dsc", "jsc", "acc", "sen", "spe", "hd95", "error",
    *MEASUREMENT_COLUMNS,  # appended (issue 15): the columns above keep their order
)
CATEGORY = {"id": 1, "name": "lesion", "supercategory": "skin"}


class ExportCancelled(Exception):
    """The export was cancelled between two images (the files written so far stay; the COCO
    file and the manifest are not written)."""


@dataclass
class ModelMasks:
    """The current model's masks for the images without a saved correction.

    ``probability(image)`` returns the image's probability map at its full size (uint8
    probability * 255, or float in [0, 1]); it may predict (slow) and may raise.
    """

    name: str
    version: str
    threshold: float
    probability: Callable[[Path], np.ndarray]

    def mask(self, image: Path) -> np.ndarray:
        return mask_at(self.probability(image), self.threshold)


def mask_at(prob: np.ndarray, threshold: float) -> np.ndarray:
    """prob >= threshold, on an 8-bit map (probability * 255) as on a float one."""
    prob = np.asarray(prob)
    if prob.dtype == np.uint8:
        return prob >= int(np.ceil(float(threshold) * 255.0 - 1e-6))
    return prob >= float(threshold)


class _Prediction(Protocol):
    prob: np.ndarray


class _Predictor(Protocol):
    def predict(self, rgb: np.ndarray) -> _Prediction: ...


def cached_probability(cache: PredictionCache | None, get_predictor: Callable[[], _Predictor],
                       on_predict: Callable[[Path], None] | None = None) -> Callable[[Path], np.ndarray]:
    """``probability(image)`` for ``ModelMasks``: the map from ``cache`` (a
    ``core.prediction_cache.PredictionCache`` of the model, or None), else predicted with
    ``get_predictor()`` (called only when a map is missing; an ``ml.predictor.Predictor``) and
    cached. ``on_predict(image)`` is called before each prediction (progress)."""
    from dermaseg_app.core.imageio import read_image
    from dermaseg_app.core.prediction_cache import quantize

    def probability(image: Path) -> np.ndarray:
        prob = cache.load_u8(image) if cache is not None else None
        if prob is not None:
            return prob
        if on_predict is not None:
            on_predict(image)
        rgb = read_image(image)
        prob = quantize(get_predictor().predict(rgb).prob)
        if cache is not None:
            try:
                cache.store(image, prob)
            except (OSError, ValueError):
                pass  # a full or read-only cache only costs time next time
        return prob

    return probability


@dataclass
class ExportSummary:
    """What an export wrote."""

    out_dir: Path
    images: int = 0
    masks: int = 0
    corrected: int = 0
    from_model: int = 0  # masks of the current model (no saved correction)
    excluded: int = 0  # images marked excluded: no mask
    with_ground_truth: int = 0
    rle_annotations: int = 0
    errors: list[str] = field(default_factory=list)
    unreadable_corrections: list[str] = field(default_factory=list)  # keys: stored but unreadable

    @property
    def coco_path(self) -> Path:
        return self.out_dir / "coco.json"

    @property
    def manifest_path(self) -> Path:
        return self.out_dir / "manifest.csv"


# -- encodings ---------------------------------------------------------------------------------
def rle_encode(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE: column-major runs, the first run counts background pixels."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    h, w = mask.shape
    if flat.size == 0:
        return {"size": [h, w], "counts": []}
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0] + runs
    return {"size": [int(h), int(w)], "counts": [int(r) for r in runs]}


def rle_decode(rle: dict) -> np.ndarray:
    """Inverse of rle_encode."""
    h, w = rle["size"]
    counts = rle["counts"]
    if isinstance(counts, str):
        raise ValueError("compressed COCO RLE strings are not supported; expected a list of counts")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    if flat.size != h * w:
        raise ValueError(f"RLE counts sum to {flat.size}, expected {h * w}")
    return flat.reshape((h, w), order="F")


def coco_polygons(mask: np.ndarray) -> tuple[list[list[float]], bool]:
    """COCO polygon segmentation (exterior rings as flat [x1, y1, x2, y2, ...] lists) and whether
    it is exact: False when the mask has holes or the polygons do not rasterise back to it."""
    geom = mask_to_polygons(mask)
    polys = polygons_of(geom)
    segs = []
    exact = True
    rings = []
    for p in polys:
        if len(p.interiors):
            exact = False
        ext = np.asarray(p.exterior.coords)[:-1]
        rings.append(ext)
        segs.append([round(float(v), 3) for v in ext.ravel()])
    if exact and mask.any():
        exact = bool(np.array_equal(rasterize_rings(rings, BBox.full(mask.shape), "nonzero"), mask))
    return segs, exact


def feature_collection(mask: np.ndarray, properties: dict) -> dict:
    """GeoJSON-style FeatureCollection: one Polygon feature per component (holes included)."""
    features = []
    for i, p in enumerate(polygons_of(mask_to_polygons(mask))):
        features.append({
            "type": "Feature",
            "id": i + 1,
            "geometry": mapping(orient(p, sign=1.0)),  # RFC 7946: exteriors counter-clockwise
            "properties": {"label": "lesion", "area": float(p.area)},
        })
    # mapping() gives tuples; JSON wants lists, done by json.dumps
    return {"type": "FeatureCollection", "properties": properties, "features": features}


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: object) -> object:
    """A CSV cell that a spreadsheet never runs as a formula: text starting with ``= + - @`` (or
    a tab / carriage return) gets a leading apostrophe (OWASP "CSV injection"); numbers stay."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def _bbox_xywh(mask: np.ndarray) -> list[int]:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return [0, 0, 0, 0]
    cols = np.flatnonzero(mask.any(axis=0))
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return f"{v:.6f}"


def _open_output(out: Path) -> Path:
    """``out`` made ready for an export (masks/, polygons/, the DermaSeg marker); refused when it
    holds a masks folder DermaSeg did not write (it may be ground truth)."""
    check_not_ground_truth(out / "x")
    if (out / "masks").is_dir() and not (out / OUTPUT_MARKER).exists():
        raise GroundTruthProtected(out / "masks", "exists and was not written by DermaSeg (it may be "
                                   "ground truth); choose an empty or new output folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    (out / "polygons").mkdir(exist_ok=True)
    mark_output_folder(out)
    return out


def _project_images(project: Project) -> list[Path]:
    """The folder's images, and the recorded ones find_images might not list (e.g. renamed rules)."""
    images = find_images([project.image_folder])
    known = {project.key(p) for p in images}
    for key in project.records():
        path = project.image_path(key)
        if key not in known and path.is_file():
            images.append(path)
            known.add(key)
    return images


def _coco_annotation(mask: np.ndarray, annotation_id: int, image_id: int, coco_rle: bool) -> dict:
    """The COCO annotation of a non-empty mask: polygons, or RLE when asked or when the polygons
    would not be exact."""
    segs, exact = coco_polygons(mask)
    use_rle = coco_rle or not exact
    return {"id": annotation_id, "image_id": image_id, "category_id": CATEGORY["id"],
            "segmentation": rle_encode(mask) if use_rle else segs,
            "area": int(mask.sum()), "bbox": _bbox_xywh(mask), "iscrowd": 0}


def _score_row(row: dict, mask: np.ndarray, gt_path: Path, with_hd95: bool) -> str | None:
    """The manifest row's metrics against the ground truth at ``gt_path``; the problem, or None."""
    try:
        gt = read_mask(gt_path)
        s = score(mask, gt, with_hd95=with_hd95)
    except (ImageReadError, MaskSizeMismatch) as exc:
        return str(exc)
    row.update(dsc=_fmt(s.dsc), jsc=_fmt(s.jsc), acc=_fmt(s.acc), sen=_fmt(s.sen), spe=_fmt(s.spe),
               hd95=_fmt(s.hd95))
    return None


def _write_coco(path: Path, project: Project, images: list[dict], annotations: list[dict]) -> None:
    coco = {
        "info": {"description": f"DermaSeg export of {project.image_folder}",
                 "version": __version__, "coordinates": "pixel-edge"},
        "images": images,
        "annotations": annotations,
        "categories": [CATEGORY],
    }
    atomic_write_text(path, json.dumps(coco) + "\n")


def _write_manifest(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(MANIFEST_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: csv_safe(v) for k, v in row.items()} for row in rows)
    atomic_write_text(path, buf.getvalue())


# -- the export ------------------------------------------------------------------------------
@dataclass
class _Chosen:
    """The mask an image is exported with, where it came from, and what was stored."""

    mask: np.ndarray | None = None
    source: str = ""  # "correction", "model" or "" (no mask)
    model_name: str | None = None
    model_version: str | None = None
    threshold: float | None = None  # the model's, for a mask the model made now
    correction: np.ndarray | None = None
    prediction: np.ndarray | None = None
    unreadable: bool = False  # a stored correction that cannot be read


def _choose_mask(store: CorrectionStore, image: Path, key: str, model: ModelMasks | None, excluded: bool,
                 summary: ExportSummary, errors: list[str]) -> _Chosen:
    """The saved correction, else the model's mask (none for an excluded image, and never the
    model's in place of a correction that cannot be read); problems go to ``errors``, the counts
    to ``summary``."""
    chosen = _Chosen()
    try:
        chosen.correction = store.load_correction(image)
    except StoreError as exc:  # something is stored as the correction but cannot be read:
        chosen.unreadable = True  # never replaced by the model's mask without a word
        errors.append(str(exc))
    try:
        chosen.prediction = store.load_prediction(image)
    except StoreError as exc:
        errors.append(str(exc))
    if excluded:
        summary.excluded += 1
    elif chosen.unreadable:
        summary.unreadable_corrections.append(key)
    elif chosen.correction is not None:
        chosen.mask, chosen.source = chosen.correction, "correction"
        pinfo = store.prediction_info(image)
        cinfo = store.info(image)
        chosen.model_name = (cinfo.model_name if cinfo else None) or (pinfo.model_name if pinfo else None)
        chosen.model_version = (cinfo.model_version if cinfo else None) or (pinfo.model_version if pinfo else None)
        summary.corrected += 1
    elif model is None:
        errors.append("no saved correction and no model to predict the mask")
    else:
        try:
            chosen.mask = model.mask(image)
        except Exception as exc:  # noqa: BLE001 - one image's failure must not stop the export
            errors.append(f"the model's mask cannot be made: {getattr(exc, 'reason', None) or exc}")
        else:
            chosen.source, chosen.model_name, chosen.model_version = "model", model.name, model.version
            chosen.threshold = model.threshold
            summary.from_model += 1
    return chosen


def export_project(project: Project, out_dir: Path | str, *, coco_rle: bool = False,
                   masks_dir: Path | str | None = None, skip_excluded: bool = False,
                   with_hd95: bool = True, model: ModelMasks | None = None,
                   progress: Callable[[int, int, str], None] | None = None,
                   cancelled: Callable[[], bool] | None = None,
                   calibration: Calibration | None = None,
                   with_measurements: bool = True) -> ExportSummary:
    """Export every image of ``project`` into ``out_dir`` (see the module docstring).

    ``model``: the current model's masks for the images without a saved correction (None: those
    get no mask). ``masks_dir``: where the ground truth is, when not found automatically.
    ``skip_excluded``: leave images whose status is "excluded" out of the manifest too.
    ``progress(i, n, image_key)`` is called per image; ``cancelled()`` is asked before each image
    (True: ExportCancelled). ``calibration``: millimetres per pixel for the measurement columns
    (e.g. the folder's, set in the window); None: each image file's TIFF/EXIF resolution when it
    is trusted, else pixels. ``with_measurements=False`` leaves those columns empty. Problems with
    single images (unreadable mask, a failed prediction, size mismatch with the ground truth) are
    recorded in the manifest's ``error`` column and in ``summary.errors``; write failures raise.
    """
    out = _open_output(Path(out_dir))
    store = CorrectionStore(project)
    summary = ExportSummary(out)
    images = _project_images(project)
    stems = project.planned_stems(images)  # unique even for images the project has no stem for yet
    coco_images: list[dict] = []
    annotations: list[dict] = []
    rows: list[dict] = []
    n = len(images)
    for i, image in enumerate(images):
        if cancelled is not None and cancelled():
            raise ExportCancelled(f"export cancelled after {i} of {n} images")
        key = project.key(image)
        if progress is not None:
            progress(i, n, key)
        record = project.record(image)
        excluded = record.status is ReviewStatus.EXCLUDED
        if excluded and skip_excluded:
            continue
        stem = stems[key]
        row: dict = {c: "" for c in MANIFEST_COLUMNS}
        row.update(image=key, stem=stem, status=record.status.value, note=record.note,
                   updated=record.updated or "")
        summary.images += 1
        errors: list[str] = []
        chosen = _choose_mask(store, image, key, model, excluded, summary, errors)
        mask, source, correction, prediction = chosen.mask, chosen.source, chosen.correction, chosen.prediction
        row.update(corrected="yes" if correction is not None else ("unreadable" if chosen.unreadable else "no"),
                   mask_source=source,
                   model_name=chosen.model_name or "", model_version=chosen.model_version or "",
                   threshold="" if chosen.threshold is None else f"{chosen.threshold:g}")
        gt_path = find_ground_truth(image, masks_dir)
        if mask is not None:
            summary.masks += 1
            mask_name = f"masks/{stem}_segmentation.png"
            poly_name = f"polygons/{stem}.json"
            # never over the image's own ground truth (folder names were checked above)
            check_not_ground_truth(out / mask_name, [gt_path] if gt_path else [], roots=[out / "masks"])
            write_mask_png(out / mask_name, mask)
            props = {"image": key, "stem": stem, "width": int(mask.shape[1]),
                     "height": int(mask.shape[0]), "source": source, "status": record.status.value,
                     "coordinates": "pixel-edge (pixel (r, c) covers [c, c+1] x [r, r+1])"}
            atomic_write_text(out / poly_name, json.dumps(feature_collection(mask, props)) + "\n")
            row.update(mask_file=mask_name, polygons_file=poly_name, lesion_pixels=int(mask.sum()))
            if with_measurements:
                row.update(measure_file(image, mask, calibration))
            if source == "correction" and prediction is not None and prediction.shape == mask.shape:
                # with the model's mask the correction started from
                row["agreement_with_prediction"] = _fmt(agreement(mask, prediction))
            image_id = len(coco_images) + 1
            coco_images.append({"id": image_id, "file_name": key, "width": int(mask.shape[1]),
                                "height": int(mask.shape[0])})
            if mask.any():
                annotation = _coco_annotation(mask, len(annotations) + 1, image_id, coco_rle)
                annotations.append(annotation)
                summary.rle_annotations += int(isinstance(annotation["segmentation"], dict))
            if gt_path is not None:
                row["ground_truth"] = str(gt_path)
                problem = _score_row(row, mask, gt_path, with_hd95)
                if problem is None:
                    summary.with_ground_truth += 1
                else:
                    errors.append(problem)
        if errors:
            row["error"] = "; ".join(errors)
            summary.errors.extend(f"{key}: {e}" for e in errors)
        rows.append(row)

    _write_coco(summary.coco_path, project, coco_images, annotations)
    _write_manifest(summary.manifest_path, rows)
    if progress is not None:
        progress(n, n, "")
    return summary

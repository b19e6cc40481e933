"""Export of a review project (issue 5): core/export.py and ``dermaseg export``."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import shape as geojson_shape

from dermaseg_app.cli import main
from dermaseg_app.core import editing as E
from dermaseg_app.core.dataset import find_images
from dermaseg_app.core.export import ModelMasks, coco_polygons, export_project, rle_decode, rle_encode
from dermaseg_app.core.imageio import read_mask
from dermaseg_app.core.project import Project, ReviewStatus
from dermaseg_app.core.store import CorrectionStore, GroundTruthProtected

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "resources" / "samples"
GT_NAME = "ISIC-2017_Training_Part1_GroundTruth"
STEMS = ["ISIC_0000009", "ISIC_0000169", "ISIC_0000299", "ISIC_0000457"]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)


@pytest.fixture()
def reviewed(tmp_path: Path) -> tuple[Project, dict[str, np.ndarray]]:
    """A reviewed folder: 0009 corrected (with a hole), 0169 prediction only, 0299 nothing,
    0457 corrected twice; ground truth for all but 0457."""
    images = tmp_path / "data" / "images"
    gtdir = tmp_path / "data" / GT_NAME
    images.mkdir(parents=True)
    gtdir.mkdir()
    for stem in STEMS:
        shutil.copy2(SAMPLES / "images" / f"{stem}.jpg", images)
        if stem != "ISIC_0000457":
            shutil.copy2(SAMPLES / GT_NAME / f"{stem}_segmentation.png", gtdir)
    project = Project.open_for(images)
    store = CorrectionStore(project)
    expected: dict[str, np.ndarray] = {}
    for stem in ("ISIC_0000009", "ISIC_0000169", "ISIC_0000457"):
        image = images / f"{stem}.jpg"
        gt = read_mask(SAMPLES / GT_NAME / f"{stem}_segmentation.png")
        pred = E.grow(gt, 4).mask
        store.save_prediction(image, pred, "slsnet_isic2017", "1.2")
        expected[stem] = pred
        if stem == "ISIC_0000169":
            continue
        h = store.history(image, pred)
        cy, cx = np.argwhere(gt).mean(axis=0)
        s = h.begin_stroke(12, erase=True)  # punch a hole in the middle
        s.add_point(cx, cy)
        s.add_point(cx + 10, cy + 5)
        h.end_stroke()
        if stem == "ISIC_0000457":
            store.save_correction(image, h.mask)
            h.apply(E.EditOp.grow(-3))
            h.apply(E.EditOp.fill_holes())
        store.save_correction(image, h.mask)
        expected[stem] = h.mask.copy()
    project.set_status(images / "ISIC_0000009.jpg", ReviewStatus.NEEDS_CORRECTION)
    project.set_note(images / "ISIC_0000009.jpg", 'border "unclear", check, again')
    project.set_status(images / "ISIC_0000169.jpg", ReviewStatus.ACCEPTED)
    project.set_status(images / "ISIC_0000299.jpg", ReviewStatus.EXCLUDED)
    return project, expected


def _model(expected: dict[str, np.ndarray]) -> ModelMasks:
    """A stand-in for the current model: its mask of an image is the one in ``expected``."""
    return ModelMasks("slsnet_isic2017", "1.2", 0.5,
                      lambda image: expected[Path(image).stem].astype(np.uint8) * 255)


def test_export_files_parse_and_match(reviewed, tmp_path: Path) -> None:
    project, expected = reviewed
    out = tmp_path / "export"
    summary = export_project(project, out, model=_model(expected))
    assert summary.images == 4 and summary.masks == 3 and summary.corrected == 2
    assert summary.from_model == 1 and summary.excluded == 1
    assert summary.errors == []
    # masks: pixel-identical to the saved masks
    for stem, mask in expected.items():
        assert np.array_equal(read_mask(out / "masks" / f"{stem}_segmentation.png"), mask)
    assert not (out / "masks" / "ISIC_0000299_segmentation.png").exists()
    # polygons: FeatureCollections whose rasterisation gives the mask back
    for stem, mask in expected.items():
        fc = json.loads((out / "polygons" / f"{stem}.json").read_text())
        assert fc["type"] == "FeatureCollection" and fc["features"]
        assert fc["properties"]["width"] == mask.shape[1]
        geoms = [geojson_shape(f["geometry"]) for f in fc["features"]]
        raster = np.zeros_like(mask)
        for g in geoms:
            raster |= E.rasterize_geometry(g, mask.shape)
        assert np.array_equal(raster, mask)
    # COCO
    coco = json.loads((out / "coco.json").read_text())
    assert coco["categories"] == [{"id": 1, "name": "lesion", "supercategory": "skin"}]
    by_name = {im["file_name"]: im for im in coco["images"]}
    assert set(by_name) == {f"{s}.jpg" for s in expected}
    for ann in coco["annotations"]:
        im = next(i for i in coco["images"] if i["id"] == ann["image_id"])
        stem = Path(im["file_name"]).stem
        mask = expected[stem]
        assert (im["height"], im["width"]) == mask.shape
        assert ann["area"] == int(mask.sum()) and ann["category_id"] == 1
        x, y, w, h = ann["bbox"]
        rows, cols = np.nonzero(mask)
        assert (x, y, x + w, y + h) == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
        seg = ann["segmentation"]
        if isinstance(seg, dict):
            assert np.array_equal(rle_decode(seg), mask)  # RLE is exact
        else:
            rings = [np.asarray(p, float).reshape(-1, 2) for p in seg]
            got = E.rasterize_rings(rings, E.BBox.full(mask.shape), "nonzero")
            assert iou(got, mask) >= 0.99
    seg_of = {Path(by_id["file_name"]).stem: a["segmentation"] for a in coco["annotations"]
              for by_id in coco["images"] if by_id["id"] == a["image_id"]}
    assert isinstance(seg_of["ISIC_0000009"], dict)   # has a hole: polygons would be lossy -> RLE
    assert isinstance(seg_of["ISIC_0000169"], list)   # plain outline: polygons
    # manifest
    with open(out / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = {r["stem"]: r for r in csv.DictReader(fh)}
    assert set(rows) == set(STEMS)
    r9 = rows["ISIC_0000009"]
    assert r9["status"] == "needs_correction" and r9["note"] == 'border "unclear", check, again'
    assert r9["corrected"] == "yes" and r9["mask_source"] == "correction"
    assert r9["model_name"] == "slsnet_isic2017" and r9["model_version"] == "1.2"
    assert 0.9 < float(r9["agreement_with_prediction"]) < 1.0
    assert 0.5 < float(r9["dsc"]) <= 1 and r9["hd95"] != ""
    r169 = rows["ISIC_0000169"]
    assert r169["corrected"] == "no" and r169["mask_source"] == "model" and r169["threshold"] == "0.5"
    assert r169["agreement_with_prediction"] == "" and r169["status"] == "accepted"
    assert rows["ISIC_0000299"]["mask_source"] == "" and rows["ISIC_0000299"]["status"] == "excluded"
    assert rows["ISIC_0000457"]["ground_truth"] == "" and rows["ISIC_0000457"]["dsc"] == ""
    # the output is never taken for input images
    assert find_images([out]) == []


def test_export_rle_everywhere_and_skip_excluded(reviewed, tmp_path: Path) -> None:
    project, expected = reviewed
    out = tmp_path / "rle"
    summary = export_project(project, out, coco_rle=True, skip_excluded=True, with_hd95=False,
                             model=_model(expected))
    assert summary.images == 3 and summary.rle_annotations == 3
    coco = json.loads((out / "coco.json").read_text())
    for ann in coco["annotations"]:
        im = next(i for i in coco["images"] if i["id"] == ann["image_id"])
        assert np.array_equal(rle_decode(ann["segmentation"]), expected[Path(im["file_name"]).stem])
    with open(out / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert "ISIC_0000299" not in {r["stem"] for r in rows}
    assert all(r["hd95"] == "" for r in rows)


def test_cli_export_from_image_folder_and_project_folder(reviewed, tmp_path: Path, capsys,
                                                         random_model) -> None:
    project, expected = reviewed
    out1, out2 = tmp_path / "o1", tmp_path / "o2"
    assert main(["export", str(project.image_folder), "--out", str(out1), "--model", str(random_model)]) == 0
    assert "Exported 4 images" in capsys.readouterr().out
    assert main(["export", str(project.project_dir), "--out", str(out2), "--no-hd95",
                 "--model", str(random_model)]) == 0
    for stem in expected:
        a = (out1 / "masks" / f"{stem}_segmentation.png").read_bytes()
        assert a == (out2 / "masks" / f"{stem}_segmentation.png").read_bytes()
    assert main(["export", str(tmp_path / "missing"), "--out", str(out1)]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_export_refuses_ground_truth_folder(reviewed, tmp_path: Path) -> None:
    project, _ = reviewed
    with pytest.raises(GroundTruthProtected):
        export_project(project, project.image_folder.parent / GT_NAME / "export")


def test_export_refuses_foreign_masks_folder_but_reexports(reviewed, tmp_path: Path) -> None:
    project, _ = reviewed
    out = tmp_path / "dataset_root"
    (out / "masks").mkdir(parents=True)
    (out / "masks" / "ISIC_0000009_segmentation.png").write_bytes(b"somebody's ground truth")
    with pytest.raises(GroundTruthProtected, match="not written by DermaSeg"):
        export_project(project, out)
    assert (out / "masks" / "ISIC_0000009_segmentation.png").read_bytes() == b"somebody's ground truth"
    again = tmp_path / "fresh"
    export_project(project, again, with_hd95=False)
    export_project(project, again, with_hd95=False)  # its own earlier export is fine


def test_rle_round_trip_and_polygons() -> None:
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (5, 7), (40, 30)]:
        m = rng.random(shape) > 0.6
        rle = rle_encode(m)
        assert sum(rle["counts"]) == m.size
        assert np.array_equal(rle_decode(json.loads(json.dumps(rle))), m)
    full = np.ones((3, 3), bool)
    assert rle_encode(full)["counts"] == [0, 9]
    ring = np.zeros((20, 20), bool)
    ring[2:18, 2:18] = True
    ring[6:12, 6:12] = False
    segs, exact = coco_polygons(ring)
    assert not exact and len(segs) == 1
    ring[6:12, 6:12] = True
    segs, exact = coco_polygons(ring)
    assert exact and len(segs) == 1 and len(segs[0]) == 8  # a square: 4 corners
    assert sorted(zip(segs[0][0::2], segs[0][1::2], strict=True)) == [(2, 2), (2, 18), (18, 2), (18, 18)]

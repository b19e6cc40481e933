"""Export under the audit's findings (issue 11 items 3, 6, 11): unique masks for colliding names,
a read-only or busy project with a writable --out, an unreadable correction, CSV formula
injection and GeoJSON ring orientation."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
from shapely.geometry import shape

from dermaseg_app import cli
from dermaseg_app.core import project as project_mod
from dermaseg_app.core.export import csv_safe, export_project
from dermaseg_app.core.project import Project, ProjectNotWritable, ReviewStatus
from dermaseg_app.core.store import CorrectionStore

SIZE = 40


def _image(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), rgb)
    return path


def _ring(r_out: int = 14, r_in: int = 0) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    d = (yy - 20) ** 2 + (xx - 20) ** 2
    return (d <= r_out * r_out) & (d > r_in * r_in)


def _export(folder: Path, out: Path, capsys) -> tuple[int, str]:
    code = cli.main(["export", str(folder), "--out", str(out), "--corrections-only"])
    return code, capsys.readouterr().err


def test_colliding_names_export_distinct_masks(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "set"
    names = ["x.jpg", "x.png", "a/b.png", "a__b.png"]
    for i, name in enumerate(names):
        _image(folder / name, seed=i)
    project = Project.open_for(folder)
    store = CorrectionStore(project)
    for i, name in enumerate(names):
        store.save_correction(folder / name, _ring(6 + 2 * i))
    project.close()
    out = tmp_path / "out"
    code, err = _export(folder, out, capsys)
    assert code == 0, err
    coco = json.loads((out / "coco.json").read_text())
    assert sorted(im["file_name"] for im in coco["images"]) == sorted(names)
    rows = list(csv.DictReader(open(out / "manifest.csv", encoding="utf-8")))
    files = {r["image"]: r["mask_file"] for r in rows}
    assert len(set(files.values())) == 4                     # 4 images, 4 mask files
    for i, name in enumerate(names):
        got = cv2.imread(str(out / files[name]), cv2.IMREAD_GRAYSCALE) > 127
        assert np.array_equal(got, _ring(6 + 2 * i)), name


def test_read_only_or_busy_project_exports_to_a_writable_out(tmp_path: Path, capsys, monkeypatch) -> None:
    folder = tmp_path / "set"
    _image(folder / "ISIC_0000001.jpg")
    project = Project.open_for(folder)
    CorrectionStore(project).save_correction(folder / "ISIC_0000001.jpg", _ring())
    project.close()
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))

    def read_only_medium(folder):
        raise ProjectNotWritable(folder, "the file system is read-only")

    monkeypatch.setattr(project_mod, "check_writable", read_only_medium)
    code, err = _export(folder, tmp_path / "out", capsys)
    assert code == 0, err
    assert (tmp_path / "out" / "masks" / "ISIC_0000001_segmentation.png").is_file()
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before  # nothing written there


def test_an_unreadable_correction_fails_the_export(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "set"
    _image(folder / "a.png")
    _image(folder / "b.png", seed=1)
    project = Project.open_for(folder)
    store = CorrectionStore(project)
    store.save_correction(folder / "a.png", _ring())
    store.save_correction(folder / "b.png", _ring(9))
    path = store.correction_path(folder / "a.png")
    path.unlink()
    path.mkdir()
    project.close()
    out = tmp_path / "out"
    code, err = _export(folder, out, capsys)
    assert code == 1
    assert str(path) in err and "folder" in err
    rows = {r["image"]: r for r in csv.DictReader(open(out / "manifest.csv", encoding="utf-8"))}
    assert rows["a.png"]["corrected"] == "unreadable" and rows["a.png"]["mask_file"] == ""
    assert rows["b.png"]["corrected"] == "yes"


def test_notes_cannot_inject_formulas_and_rings_are_counter_clockwise(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    _image(folder / "a.png")
    project = Project.open_for(folder)
    store = CorrectionStore(project)
    store.save_correction(folder / "a.png", _ring(14, 5))  # a lesion with a hole
    note = '=HYPERLINK("http://evil.example","click")'
    project.set_note(folder / "a.png", note)
    project.set_status(folder / "a.png", ReviewStatus.ACCEPTED)
    summary = export_project(project, tmp_path / "out")
    row = next(csv.DictReader(open(summary.manifest_path, encoding="utf-8")))
    assert row["note"] == "'" + note
    assert csv_safe("-0.25") == "-0.25" and csv_safe("+cmd") == "'+cmd" and csv_safe("@x") == "'@x"
    assert csv_safe("normal text") == "normal text" and csv_safe(3) == 3
    poly = json.loads((tmp_path / "out" / "polygons" / "a.json").read_text())
    geom = poly["features"][0]["geometry"]
    exterior, *holes = geom["coordinates"]

    def signed_area(ring) -> float:
        pts = np.asarray(ring)
        return 0.5 * float(np.sum(pts[:-1, 0] * pts[1:, 1] - pts[1:, 0] * pts[:-1, 1]))

    assert signed_area(exterior) > 0                     # counter-clockwise (RFC 7946)
    assert holes and all(signed_area(h) < 0 for h in holes)  # holes clockwise
    assert shape(geom).is_valid
    project.close()

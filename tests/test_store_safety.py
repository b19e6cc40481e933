"""The store and the project file under damage, collisions and old layouts (issue 11 items 3-6,
issue 12 item 6)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from dermaseg_app.core.editing import EditOp
from dermaseg_app.core.project import PROJECT_DIRNAME, Project, ProjectReadOnly, ReviewStatus
from dermaseg_app.core.store import CorrectionStore, StoreError

SIZE = 32


def _image(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), rgb)
    return path


def _disc(cx: int = 16, cy: int = 16, r: int = 8) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    _image(root / "images" / "ISIC_0000000.jpg")
    return root


# ------------------------------------------------------------------ 12.6: ISIC naming
def test_corrections_use_isic_naming_in_sub_folders(folder: Path) -> None:
    project = Project.open_for(folder)  # the data folder: the image key is images/ISIC_0000000.jpg
    store = CorrectionStore(project)
    image = folder / "images" / "ISIC_0000000.jpg"
    store.save_prediction(image, _disc())
    store.save_correction(image, _disc(r=6))
    corrections = project.project_dir / "corrections"
    assert (corrections / "ISIC_0000000_segmentation.png").is_file()
    assert (corrections / "ISIC_0000000.json").is_file()
    assert (project.project_dir / "predictions" / "ISIC_0000000_prediction.png").is_file()
    assert (project.project_dir / "revisions" / "ISIC_0000000" / "1_segmentation.png").is_file()
    assert not list(corrections.glob("images__*"))
    assert project.key_for_stem("ISIC_0000000") == "images/ISIC_0000000.jpg"
    data = json.loads(project.path.read_text(encoding="utf-8"))
    assert data["stems"] == {"images/ISIC_0000000.jpg": "ISIC_0000000"}


# ------------------------------------------------------------------ 3: collisions
def test_colliding_names_get_unique_reversible_stems(tmp_path: Path) -> None:
    root = tmp_path / "set"
    names = ["x.jpg", "x.png", "a/b.png", "a__b.png", "b.png", "X.bmp"]
    for i, name in enumerate(names):
        _image(root / name, seed=i)
    project = Project.open_for(root)
    store = CorrectionStore(project)
    masks = {}
    for i, name in enumerate(names):
        masks[name] = _disc(cx=6 + 4 * i, r=3 + i)
        store.save_correction(root / name, masks[name])
    stems = {name: project.stem_for(root / name) for name in names}
    assert len({s.lower() for s in stems.values()}) == len(names), stems
    for name in names:
        assert project.key_for_stem(stems[name]) == name          # reversible
        assert np.array_equal(store.load_correction(root / name), masks[name])  # none overwritten
        assert store.info(root / name).image == name
    # stable: reopening gives the same stems
    project.close()
    again = Project.open_for(root)
    assert {name: again.stem_for(root / name) for name in names} == stems


def test_very_long_names_are_shortened_not_an_error(tmp_path: Path) -> None:
    root = tmp_path / "set"
    deep = root / ("d" * 120) / ("e" * 120) / (("f" * 200) + ".png")
    _image(deep)
    twin = deep.with_name(("f" * 200) + ".jpg")
    _image(twin, seed=1)
    project = Project.open_for(root)
    store = CorrectionStore(project)
    store.save_correction(deep, _disc())
    store.save_correction(twin, _disc(r=5))
    a, b = project.stem_for(deep), project.stem_for(twin)
    assert a != b and max(len(a.encode()), len(b.encode())) <= 150
    assert np.array_equal(store.load_correction(deep), _disc())
    assert np.array_equal(store.load_correction(twin), _disc(r=5))


# ------------------------------------------------------------------ migration of schema 1
def _legacy_project(folder: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A project as DermaSeg wrote it before stems were recorded (schema 1, sub__stem names)."""
    from dermaseg_app.core.imageio import write_mask_png

    pdir = folder / PROJECT_DIRNAME
    old = "images__ISIC_0000000"
    saved, pred = _disc(r=7), _disc(r=9)
    for d in ("corrections", "predictions", "journal", f"revisions/{old}"):
        (pdir / d).mkdir(parents=True)
    write_mask_png(pdir / "corrections" / f"{old}_segmentation.png", saved)
    write_mask_png(pdir / "revisions" / old / "1_segmentation.png", saved)
    write_mask_png(pdir / "predictions" / f"{old}_prediction.png", pred)
    (pdir / "predictions" / f"{old}_prediction.json").write_text(json.dumps(
        {"model_name": "m", "model_version": "1", "saved": "2026-01-01T00:00:00Z",
         "shape": [SIZE, SIZE], "area": int(pred.sum())}))
    (pdir / "corrections" / f"{old}.json").write_text(json.dumps({
        "stem": old, "image": "images/ISIC_0000000.jpg", "saved": "2026-01-01T00:00:00Z",
        "model_name": "m", "model_version": "1", "shape": [SIZE, SIZE], "area": int(saved.sum()),
        "changed_pixels": 3, "dsc_vs_prediction": 0.9, "schema_version": 1,
        "revisions": [{"n": 1, "file": f"revisions/{old}/1_segmentation.png",
                       "saved": "2026-01-01T00:00:00Z", "area": int(saved.sum()),
                       "changed_pixels": 3, "dsc_vs_prediction": 0.9}]}))
    with open(pdir / "journal" / f"{old}.jsonl", "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"journal": 1, "image": "images/ISIC_0000000.jpg", "started": "x"}) + "\n")
        fh.write(json.dumps(EditOp.grow(1).to_json()) + "\n")
    (pdir / "project.json").write_text(json.dumps({
        "schema_version": 1, "image_folder": str(folder),
        "images": {"images/ISIC_0000000.jpg": {"status": "accepted", "note": "old note",
                                               "updated": "2026-01-01T00:00:00Z", "edited": True}}}))
    return pdir, saved, pred


def test_schema_1_project_is_migrated_to_isic_names(folder: Path) -> None:
    pdir, saved, pred = _legacy_project(folder)
    image = folder / "images" / "ISIC_0000000.jpg"
    project = Project.open_for(folder)
    assert project.record(image).status is ReviewStatus.ACCEPTED
    assert project.record(image).note == "old note"
    assert project.stem_for(image) == "ISIC_0000000"
    store = CorrectionStore(project)
    assert np.array_equal(store.load_correction(image), saved)
    assert np.array_equal(store.load_prediction(image), pred)
    assert [p.name for p in store.revisions(image)] == ["1_segmentation.png"]
    info = store.info(image)
    assert info.stem == "ISIC_0000000" and info.revisions[0].file == "revisions/ISIC_0000000/1_segmentation.png"
    assert store.pending_recovery() == ["ISIC_0000000"]          # the old journal still recovers
    assert np.array_equal(store.recover("ISIC_0000000"), EditOp.grow(1).apply(saved).mask)
    assert not list(pdir.rglob("images__*"))
    data = json.loads((pdir / "project.json").read_text())
    assert data["schema_version"] == 2 and "renames" not in data
    store.save_correction(image, _disc(r=4))                      # and it goes on: revision 2
    assert [p.name for p in store.revisions(image)] == ["1_segmentation.png", "2_segmentation.png"]


def test_schema_1_project_read_only_keeps_old_names(folder: Path) -> None:
    pdir, saved, _ = _legacy_project(folder)
    image = folder / "images" / "ISIC_0000000.jpg"
    project = Project.open_for(folder, pdir, read_only=True)
    store = CorrectionStore(project)
    assert np.array_equal(store.load_correction(image), saved)
    assert (pdir / "corrections" / "images__ISIC_0000000_segmentation.png").is_file()
    assert json.loads((pdir / "project.json").read_text())["schema_version"] == 1


def test_a_migration_cut_short_is_finished_at_the_next_open(folder: Path) -> None:
    pdir, saved, _ = _legacy_project(folder)
    old, new = "images__ISIC_0000000", "ISIC_0000000"
    # the plan was recorded and one file moved, then the process died
    (pdir / "project.json").write_text(json.dumps({
        "schema_version": 2, "image_folder": str(folder), "images": {},
        "stems": {"images/ISIC_0000000.jpg": new}, "renames": [[old, new]]}))
    os.rename(pdir / "corrections" / f"{old}_segmentation.png", pdir / "corrections" / f"{new}_segmentation.png")
    project = Project.open_for(folder)
    store = CorrectionStore(project)
    image = folder / "images" / "ISIC_0000000.jpg"
    assert np.array_equal(store.load_correction(image), saved)
    assert store.info(image) is not None and store.revisions(image)
    assert not list(pdir.rglob("images__*"))
    assert "renames" not in json.loads((pdir / "project.json").read_text())


# ------------------------------------------------------------------ 4: the journal
def test_a_failed_journal_append_is_truncated_back(folder: Path, monkeypatch) -> None:
    project = Project.open_for(folder / "images")
    store = CorrectionStore(project)
    image = folder / "images" / "ISIC_0000000.jpg"
    store.save_prediction(image, _disc())
    history = store.history(image, _disc())
    history.apply(EditOp.grow(1))
    path = store.journal_path(image)
    size = path.stat().st_size
    real_write = os.write

    def disk_full(fd, data):  # half the line reaches the disk, then ENOSPC
        if os.fstat(fd).st_ino == path.stat().st_ino:
            real_write(fd, bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", disk_full)
    with pytest.raises(StoreError, match="disk is full|No space"):
        history.apply(EditOp.grow(1))
    monkeypatch.undo()
    assert path.stat().st_size == size          # no partial line left
    history.apply(EditOp.smooth(1.0))           # space is free again: journalled and recovered
    expected = EditOp.smooth(1.0).apply(EditOp.grow(1).apply(EditOp.grow(1).apply(_disc()).mask).mask).mask
    assert np.array_equal(history.mask, expected)
    got = store.recover(store.stem(image))
    # the failed edit is in memory only; the journal holds the two others, whole
    assert np.array_equal(got, EditOp.smooth(1.0).apply(EditOp.grow(1).apply(_disc()).mask).mask)


def test_a_damaged_line_is_skipped_not_the_end_of_recovery(folder: Path) -> None:
    project = Project.open_for(folder / "images")
    store = CorrectionStore(project)
    image = folder / "images" / "ISIC_0000000.jpg"
    store.save_prediction(image, _disc())
    history = store.history(image, _disc())
    history.apply(EditOp.grow(1))
    with open(store.journal_path(image), "a", encoding="utf-8") as fh:
        fh.write('{"op": "grow", "par')           # a crash cut this line
    history.apply(EditOp.grow(2))                 # the next append starts a fresh line
    got = store.recover(store.stem(image))
    assert np.array_equal(got, history.mask)


# ------------------------------------------------------------------ 5: damaged project files
def _write_project(folder: Path, data) -> Path:
    pdir = folder / PROJECT_DIRNAME
    pdir.mkdir(exist_ok=True)
    text = data if isinstance(data, str) else json.dumps(data)
    (pdir / "project.json").write_text(text, encoding="utf-8")
    return pdir


def test_one_bad_record_keeps_every_good_one(folder: Path) -> None:
    pdir = _write_project(folder, {"schema_version": 2, "images": {
        "a.jpg": {"status": "accepted", "note": "keep me"},
        "b.jpg": [1, 2],
        "c.jpg": {"status": {"deep": 1}},
        "d.jpg": {"status": "rejected", "note": {"x": 1}},
        "e.jpg": {"status": "excluded", "edited": "no"},
        "f.jpg": {"status": "accepted", "edited": "yes"}}})
    project = Project.open_for(folder)
    assert project.record("a.jpg").note == "keep me"
    assert project.record("e.jpg").status is ReviewStatus.EXCLUDED
    assert project.record("e.jpg").edited is False      # "no" is not true
    assert project.record("f.jpg").edited is True
    assert set(project.records()) == {"a.jpg", "e.jpg", "f.jpg"}
    assert len(project.warnings) == 1 and "3 damaged entries skipped" in project.warnings[0]
    assert len(list(pdir.glob("project.json.damaged-*"))) == 1   # the original is kept aside
    project.set_status("b.jpg", ReviewStatus.ACCEPTED)          # and the project works
    assert Project.open_for(folder).record("a.jpg").note == "keep me"


def test_deep_nesting_is_a_warning_not_a_traceback(folder: Path) -> None:
    deep = "[" * 200000 + "]" * 200000
    _write_project(folder, '{"schema_version": 2, "images": {"a.jpg": ' + deep + "}}")
    project = Project.open_for(folder)
    assert project.warnings and "damaged" in project.warnings[0]
    project.set_note("a.jpg", "works")


def test_newer_schema_opens_read_only_and_is_left_alone(folder: Path) -> None:
    text = json.dumps({"schema_version": 99, "images": {"a.jpg": {"status": "accepted", "note": "n"}}})
    pdir = _write_project(folder, text)
    project = Project.open_for(folder)
    assert project.read_only and "newer" in project.warnings[0]
    assert project.record("a.jpg").note == "n"
    with pytest.raises(ProjectReadOnly, match="newer"):
        project.set_note("a.jpg", "x")
    with pytest.raises(StoreError, match="read-only"):
        CorrectionStore(project).save_correction(folder / "images" / "ISIC_0000000.jpg", _disc())
    assert (pdir / "project.json").read_text() == text
    assert not list(pdir.glob("project.json.*"))


@pytest.mark.parametrize("sidecar", [
    "[1]", '{"revisions": "many"}', '{"revisions": [{"n": "one"}]}', '{"shape": {"h": 1}}',
    "[" * 100000 + "]" * 100000, '{"stem": 5, "image": [], "saved": 1, "shape": [32, 32], "area": 1}'])
def test_a_damaged_sidecar_does_not_stop_saving(folder: Path, sidecar: str) -> None:
    project = Project.open_for(folder / "images")
    store = CorrectionStore(project)
    image = folder / "images" / "ISIC_0000000.jpg"
    store.save_correction(image, _disc())
    store.sidecar_path(image).write_text(sidecar)
    assert store.info(image) is None
    info = store.save_correction(image, _disc(r=5))
    assert info.revisions[-1].n == 2
    assert np.array_equal(store.load_correction(image), _disc(r=5))


# ------------------------------------------------------------------ 6: not a file
def test_a_folder_in_place_of_the_correction_is_an_error(folder: Path) -> None:
    project = Project.open_for(folder / "images")
    store = CorrectionStore(project)
    image = folder / "images" / "ISIC_0000000.jpg"
    store.save_prediction(image, _disc())
    store.save_correction(image, _disc(r=5))
    path = store.correction_path(image)
    path.unlink()
    path.mkdir()
    assert store.has_correction(image)
    with pytest.raises(StoreError, match="is a folder"):
        store.load_correction(image)
    with pytest.raises(StoreError, match="is a folder"):
        store.base_mask(image)          # never silently the prediction

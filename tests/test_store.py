"""Corrections, revisions, the journal and crash recovery (issue 5): core/store.py."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from dermaseg_app.core import editing as E
from dermaseg_app.core.atomic import TEMP_PREFIX
from dermaseg_app.core.editing import EditOp
from dermaseg_app.core.imageio import read_mask
from dermaseg_app.core.project import Project
from dermaseg_app.core.store import (
    CorrectionStore,
    GroundTruthProtected,
    StoreError,
    check_not_ground_truth,
    pending_recovery,
    recover,
)

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "resources" / "samples"
GT_NAME = "ISIC-2017_Training_Part1_GroundTruth"
STEMS = ["ISIC_0000009", "ISIC_0000169", "ISIC_0000377"]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    """ISIC layout: <root>/images/*.jpg and <root>/ISIC-2017_..._GroundTruth/*_segmentation.png."""
    (tmp_path / "images").mkdir()
    (tmp_path / GT_NAME).mkdir()
    for stem in STEMS:
        shutil.copy2(SAMPLES / "images" / f"{stem}.jpg", tmp_path / "images")
        shutil.copy2(SAMPLES / GT_NAME / f"{stem}_segmentation.png", tmp_path / GT_NAME)
    return tmp_path


def gt_of(dataset: Path, stem: str) -> Path:
    return dataset / GT_NAME / f"{stem}_segmentation.png"


def fake_prediction(dataset: Path, stem: str) -> np.ndarray:
    """A plausible model mask: the ground truth grown by 5 px, with a bite out of it."""
    gt = read_mask(gt_of(dataset, stem))
    pred = E.grow(gt, 5).mask
    h, w = pred.shape
    return E.paint_stroke(pred, [(w * 0.45, h * 0.45)], min(h, w) * 0.05, erase=True).mask


def open_store(dataset: Path) -> tuple[Project, CorrectionStore]:
    project = Project.open_for(dataset / "images")
    return project, CorrectionStore(project)


def stroke(history, pts, radius, erase=False) -> None:
    s = history.begin_stroke(radius, erase)
    for x, y in pts:
        s.add_point(x, y)
    history.end_stroke()


def test_save_and_reload_full_resolution_pixel_identical(dataset: Path) -> None:
    stem = "ISIC_0000377"  # 3072 x 2304
    image = dataset / "images" / f"{stem}.jpg"
    project, store = open_store(dataset)
    pred = fake_prediction(dataset, stem)
    store.save_prediction(image, pred, "slsnet_isic2017", "1.0")
    h = store.history(image, pred)
    stroke(h, [(1000, 800), (1400, 900), (1600, 1300)], 30)
    stroke(h, [(1500, 1000), (1700, 1100)], 20, erase=True)
    info = store.save_correction(image, h.mask)
    assert store.correction_path(image) == project.project_dir / "corrections" / f"{stem}_segmentation.png"
    reloaded = store.load_correction(image)
    assert reloaded.shape == (2304, 3072) and np.array_equal(reloaded, h.mask)
    raw = np.asarray(__import__("cv2").imread(str(store.correction_path(image)), 0))
    assert set(np.unique(raw)) <= {0, 255}
    assert np.array_equal(store.load_prediction(image), pred)
    # sidecar
    side = json.loads(store.sidecar_path(image).read_text())
    assert side["model_name"] == "slsnet_isic2017" and side["model_version"] == "1.0"
    assert side["changed_pixels"] == int(np.count_nonzero(pred != h.mask)) > 0
    assert 0.9 < side["dsc_vs_prediction"] < 1.0
    assert side["shape"] == [2304, 3072] and len(side["revisions"]) == 1
    assert info.revisions[0].file == f"revisions/{stem}/1_segmentation.png"
    assert project.record(image).edited is True
    assert Project.open_for(dataset / "images").record(image).edited is True


def test_revisions_kept_and_never_overwritten(dataset: Path) -> None:
    stem = "ISIC_0000169"
    image = dataset / "images" / f"{stem}.jpg"
    project, store = open_store(dataset)
    pred = fake_prediction(dataset, stem)
    store.save_prediction(image, pred, "m", "1")
    store.save_prediction(image, np.zeros_like(pred), "m", "2")  # kept as it is by default
    assert np.array_equal(store.load_prediction(image), pred)
    masks = []
    h = store.history(image, pred)
    for i in range(3):
        stroke(h, [(50 + 40 * i, 50), (80 + 40 * i, 90)], 6)
        masks.append(h.mask.copy())
        store.save_correction(image, h.mask)
    revs = store.revisions(image)
    assert [p.name for p in revs] == ["1_segmentation.png", "2_segmentation.png", "3_segmentation.png"]
    for p, m in zip(revs, masks, strict=True):
        assert np.array_equal(read_mask(p), m)
    info = store.info(image)
    assert [r.n for r in info.revisions] == [1, 2, 3]
    assert info.changed_pixels == int(np.count_nonzero(masks[-1] != pred))
    # a revision file that exists already (e.g. orphaned by a crash) is skipped, not overwritten
    orphan = store.revision_dir(image) / "4_segmentation.png"
    orphan.write_bytes(b"orphan")
    store.save_correction(image, masks[0])
    assert orphan.read_bytes() == b"orphan"
    assert store.info(image).revisions[-1].n == 5


def test_crash_between_journal_and_save_then_recovery(dataset: Path) -> None:
    stem = "ISIC_0000009"
    image = dataset / "images" / f"{stem}.jpg"
    project, store = open_store(dataset)
    pred = fake_prediction(dataset, stem)
    store.save_prediction(image, pred, "m", "1")
    h = store.history(image, pred)
    stroke(h, [(100, 100), (300, 200), (500, 150)], 12)
    h.apply(EditOp.fill_holes())
    h.apply(EditOp.smooth(2.0))
    stroke(h, [(400, 400), (420, 480)], 9, erase=True)
    h.undo()
    h.redo()
    expected = h.mask.copy()
    assert store.journal_path(image).is_file()
    del h, store, project  # the crash: nothing saved

    project2 = Project.open_for(dataset / "images")
    assert pending_recovery(project2) == [stem]
    store2 = CorrectionStore(project2)
    assert store2.journal_image(stem) == f"{stem}.jpg"
    got = recover(project2, stem)
    assert np.array_equal(got, expected)
    assert np.array_equal(store2.recover(stem, pred), expected)
    # saving the recovered mask clears the journal
    store2.save_correction(image, got)
    assert store2.pending_recovery() == []
    assert not store2.journal_path(image).exists()


def test_recovery_onto_last_saved_correction_and_torn_last_line(dataset: Path) -> None:
    stem = "ISIC_0000169"
    image = dataset / "images" / f"{stem}.jpg"
    project, store = open_store(dataset)
    pred = fake_prediction(dataset, stem)
    store.save_prediction(image, pred)
    h = store.history(image, pred)
    stroke(h, [(20, 20), (200, 100)], 8)
    store.save_correction(image, h.mask)
    stroke(h, [(300, 300), (350, 320)], 10, erase=True)
    h.apply(EditOp.grow(2))
    expected = h.mask.copy()
    with open(store.journal_path(image), "a", encoding="utf-8") as fh:
        fh.write('{"op": "brush", "params": {"points": [[1, 2], [3')  # crash mid-write
    assert store.pending_recovery() == [stem]
    assert np.array_equal(store.recover(stem), expected)


def test_ground_truth_never_written(dataset: Path) -> None:
    hashes = {s: sha(gt_of(dataset, s)) for s in STEMS}
    project, store = open_store(dataset)
    rng = np.random.default_rng(7)
    for stem in ("ISIC_0000009", "ISIC_0000169"):
        image = dataset / "images" / f"{stem}.jpg"
        gt = read_mask(gt_of(dataset, stem))
        store.save_prediction(image, gt)  # even a prediction equal to the ground truth
        h = store.history(image, gt)
        H, W = gt.shape
        for i in range(25):
            pts = rng.uniform(0, [W, H], (5, 2))
            stroke(h, pts, float(rng.uniform(3, 20)), erase=bool(i % 2))
            if i % 5 == 0:
                h.apply(EditOp.smooth(1.5))
            if i % 3 == 0:
                h.undo()
            if i % 4 == 0:
                store.save_correction(image, h.mask)
        h.reset_to(gt)
        store.save_correction(image, h.mask)
    assert {s: sha(gt_of(dataset, s)) for s in STEMS} == hashes


def test_writes_aimed_at_ground_truth_are_refused(dataset: Path) -> None:
    stem = "ISIC_0000009"
    image = dataset / "images" / f"{stem}.jpg"
    gt = gt_of(dataset, stem)
    before = sha(gt)
    # a project folder inside the ground-truth folder
    with pytest.raises(GroundTruthProtected, match="ground-truth folder"):
        CorrectionStore(Project.open_for(dataset / "images", project_dir=dataset / GT_NAME / "proj"))
    with pytest.raises(GroundTruthProtected):
        check_not_ground_truth(dataset / "masks" / "x.png")
    with pytest.raises(GroundTruthProtected, match="ground-truth folder"):
        check_not_ground_truth(gt)
    with pytest.raises(GroundTruthProtected, match="overwrite the image's ground truth"):
        check_not_ground_truth(gt, protected=[gt], roots=[gt.parent])
    elsewhere_link = dataset / "link.png"
    os.link(gt, elsewhere_link)  # a hard link to the ground truth
    with pytest.raises(GroundTruthProtected, match="overwrite the image's ground truth"):
        check_not_ground_truth(elsewhere_link, protected=[gt], roots=[dataset])
    # the correction file made a link to the ground truth
    project, store = open_store(dataset)
    store.correction_path(image).symlink_to(gt)
    with pytest.raises(GroundTruthProtected):
        store.save_correction(image, np.zeros(read_mask(gt).shape, bool))
    # an explicitly protected file elsewhere (e.g. --masks)
    other = dataset / "elsewhere_gt.png"
    other.write_bytes(b"x")
    store.protect(other)
    with pytest.raises(GroundTruthProtected):
        store._guard(other, None)
    assert sha(gt) == before


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only")])
def test_failing_write_keeps_previous_file_edit_and_journal(dataset: Path, monkeypatch, code: int,
                                                            words: str) -> None:
    stem = "ISIC_0000169"
    image = dataset / "images" / f"{stem}.jpg"
    project, store = open_store(dataset)
    pred = fake_prediction(dataset, stem)
    store.save_prediction(image, pred)
    h = store.history(image, pred)
    stroke(h, [(30, 30), (90, 60)], 7)
    store.save_correction(image, h.mask)
    saved_bytes = store.correction_path(image).read_bytes()
    side_bytes = store.sidecar_path(image).read_bytes()
    stroke(h, [(200, 200), (260, 240)], 9)
    edited = h.mask.copy()

    def no_space(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(StoreError) as info:
        store.save_correction(image, h.mask)
    msg = str(info.value)
    assert words in msg and "previous file is unchanged" in msg
    monkeypatch.undo()
    assert store.correction_path(image).read_bytes() == saved_bytes
    assert store.sidecar_path(image).read_bytes() == side_bytes
    assert np.array_equal(h.mask, edited)                    # still in memory
    assert np.array_equal(store.recover(stem), edited)       # and in the journal
    leftovers = [p for p in project.project_dir.rglob("*") if p.name.startswith(TEMP_PREFIX)]
    assert leftovers == []
    store.save_correction(image, h.mask)                     # disk freed: the save works
    assert np.array_equal(store.load_correction(image), edited)
    assert store.pending_recovery() == []


def test_failing_journal_write_is_a_clear_error(dataset: Path, monkeypatch) -> None:
    image = dataset / "images" / "ISIC_0000169.jpg"
    project, store = open_store(dataset)
    pred = fake_prediction(dataset, "ISIC_0000169")
    h = store.history(image, pred)
    real_fsync = os.fsync

    def bad_fsync(fd):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(os, "fsync", bad_fsync)
    s = h.begin_stroke(5)
    s.add_point(10, 10)
    with pytest.raises(StoreError, match="journal"):
        h.end_stroke()
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert h.can_undo() and h.mask[9, 9]  # the edit is kept in memory


def test_stale_temp_files_cleaned_on_open(dataset: Path) -> None:
    project, store = open_store(dataset)
    stale = store.corrections_dir / f"{TEMP_PREFIX}abc-ISIC_0000009_segmentation.png"
    stale.write_bytes(b"half a png")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = store.journal_dir / f"{TEMP_PREFIX}xyz-new.jsonl"
    fresh.write_bytes(b"in progress")
    CorrectionStore(Project.open_for(dataset / "images"))
    assert not stale.exists() and fresh.exists()


def test_no_journal_nothing_pending_and_no_base(dataset: Path) -> None:
    project, store = open_store(dataset)
    assert store.pending_recovery() == []
    assert store.load_correction("ISIC_0000009.jpg") is None and store.info("ISIC_0000009.jpg") is None
    store.append_journal("ISIC_0000009.jpg", EditOp.grow(1).to_json())
    assert store.pending_recovery() == ["ISIC_0000009"]
    with pytest.raises(StoreError, match="no saved correction or prediction"):
        store.recover("ISIC_0000009")
    gt = read_mask(gt_of(dataset, "ISIC_0000009"))
    assert np.array_equal(store.recover("ISIC_0000009", gt), E.grow(gt, 1).mask)


def test_mask_of_the_wrong_size_is_refused(dataset: Path) -> None:
    project, store = open_store(dataset)
    with pytest.raises(StoreError, match="full resolution"):
        store.save_correction(dataset / "images" / "ISIC_0000009.jpg", np.zeros((10, 10), bool))
    with pytest.raises(StoreError, match="full resolution"):
        store.save_prediction(dataset / "images" / "ISIC_0000009.jpg", np.zeros((10, 10), bool))
    assert not store.correction_path("ISIC_0000009.jpg").exists()


def test_recovery_after_a_real_process_crash(dataset: Path) -> None:
    """A child process edits, journals, and dies with os._exit (no save, no cleanup)."""
    import subprocess
    import sys
    import textwrap

    stem = "ISIC_0000169"
    image = dataset / "images" / f"{stem}.jpg"
    expected_file = dataset / "expected.npy"
    code = textwrap.dedent(f"""
        import os, numpy as np
        from dermaseg_app.core import editing as E
        from dermaseg_app.core.imageio import read_mask
        from dermaseg_app.core.project import Project
        from dermaseg_app.core.store import CorrectionStore
        store = CorrectionStore(Project.open_for({str(dataset / "images")!r}))
        pred = E.grow(read_mask({str(gt_of(dataset, stem))!r}), 3).mask
        store.save_prediction({str(image)!r}, pred, "m", "1")
        h = store.history({str(image)!r}, pred)
        s = h.begin_stroke(9)
        for x, y in [(100, 100), (150, 130), (210, 200)]:
            s.add_point(x, y)
        h.end_stroke()
        h.apply(E.EditOp.smooth(2.0))
        np.save({str(expected_file)!r}, h.mask)
        s = h.begin_stroke(30)           # the stroke in progress when the power goes
        s.add_point(300, 300)
        os._exit(1)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    project = Project.open_for(dataset / "images")
    assert pending_recovery(project) == [stem]
    assert np.array_equal(recover(project, stem), np.load(expected_file))

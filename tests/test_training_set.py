"""core.training_set: a project's corrected images as training cases, with problems per image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dermaseg_app.core.imageio import write_image
from dermaseg_app.core.project import Project, ReviewStatus
from dermaseg_app.core.store import CorrectionStore
from dermaseg_app.core.training_set import check_cases, corrected_cases, training_set


def _image(path: Path, size: tuple[int, int] = (48, 48), seed: int = 0) -> Path:
    rgb = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, rgb)
    return path


def _disc(shape: tuple[int, int]) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - shape[0] / 2) ** 2 + (xx - shape[1] / 2) ** 2 < (min(shape) / 3) ** 2


@pytest.fixture
def project(tmp_path) -> Project:
    folder = tmp_path / "images"
    for i, name in enumerate(["a.jpg", "b.png", "c.jpg", "d.jpg", "sub/e.jpg"]):
        _image(folder / name, seed=i)
    return Project.open_for(folder)


def test_corrected_cases_are_the_saved_corrections_not_ground_truth(project):
    folder = project.image_folder
    gt_dir = folder / "masks"  # a dataset ground truth beside the images must not be used
    gt_dir.mkdir()
    store = CorrectionStore(project)
    for name in ["b.png", "a.jpg", "sub/e.jpg"]:
        store.save_correction(folder / name, _disc((48, 48)))
    cases = corrected_cases(project)
    assert [c.stem for c in cases] == ["a", "b", "e"]
    assert [c.image for c in cases] == [folder / "a.jpg", folder / "b.png", folder / "sub" / "e.jpg"]
    for c in cases:
        assert c.ground_truth == store.correction_path(c.image)
        assert c.ground_truth.parent == project.project_dir / "corrections"


def test_excluded_and_rejected_images_are_left_out(project):
    folder = project.image_folder
    store = CorrectionStore(project)
    for name in ["a.jpg", "b.png", "c.jpg", "d.jpg"]:
        store.save_correction(folder / name, _disc((48, 48)))
    project.set_status(folder / "b.png", ReviewStatus.EXCLUDED)
    project.set_status(folder / "c.jpg", ReviewStatus.REJECTED)
    project.set_status(folder / "d.jpg", ReviewStatus.NEEDS_CORRECTION)
    assert [c.stem for c in corrected_cases(project)] == ["a", "d"]
    ts = training_set(project)
    assert [c.stem for c in ts.cases] == ["a", "d"]
    assert sorted(c.stem for c in ts.left_out) == ["b", "c"]
    assert ts.problems == []


def test_no_corrections_is_an_empty_set(project):
    assert corrected_cases(project) == []
    ts = training_set([project])
    assert len(ts) == 0 and ts.problems == [] and ts.left_out == []


def test_problems_are_reported_per_image_without_raising(project):
    folder = project.image_folder
    store = CorrectionStore(project)
    for name in ["a.jpg", "b.png", "c.jpg", "d.jpg"]:
        store.save_correction(folder / name, _disc((48, 48)))
    (folder / "b.png").unlink()                                   # the image is gone
    store.correction_path(folder / "c.jpg").write_bytes(b"not a png at all")  # unreadable correction
    _image(folder / "d.jpg", size=(40, 56), seed=9)               # the image was replaced: size mismatch
    ts = training_set(project)
    assert [c.stem for c in ts.cases] == ["a"]
    by_stem = {p.stem: p for p in ts.problems}
    assert set(by_stem) == {"b", "c", "d"}
    assert "missing" in by_stem["b"].reason and "b.png" in by_stem["b"].reason
    assert "c_segmentation.png" in by_stem["c"].reason
    assert "56x40" in by_stem["d"].reason and "correction" in by_stem["d"].reason
    assert str(by_stem["d"]).startswith("d.jpg: ")


def test_image_found_from_the_project_record_when_the_sidecar_is_damaged(project):
    folder = project.image_folder
    store = CorrectionStore(project)
    store.save_correction(folder / "sub" / "e.jpg", _disc((48, 48)))
    store.sidecar_path(folder / "sub" / "e.jpg").write_text("{ damaged", encoding="utf-8")
    cases = corrected_cases(project)
    assert [c.image for c in cases] == [folder / "sub" / "e.jpg"]


def test_a_correction_of_no_known_image_is_a_problem(project):
    stray = project.project_dir / "corrections" / "ghost_segmentation.png"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"x")
    ts = training_set(project)
    assert ts.cases == []
    assert [p.stem for p in ts.problems] == ["ghost"]
    assert ts.problems[0].image is None and "no known image" in ts.problems[0].reason


def test_check_cases_keeps_order(project):
    folder = project.image_folder
    store = CorrectionStore(project)
    for name in ["d.jpg", "a.jpg"]:
        store.save_correction(folder / name, _disc((48, 48)))
    cases = corrected_cases(project)
    usable, problems = check_cases(reversed(cases))
    assert [c.stem for c in usable] == ["d", "a"] and problems == []

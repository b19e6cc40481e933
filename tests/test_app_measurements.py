"""The Measurements panel's logic without Qt (app/measurements.py) and the folder's scale in the
review project (core/project.py), issue 15."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from dermaseg_app.app.measurements import (
    CORRECTION,
    DISCLAIMER,
    GROUND_TRUTH,
    PREDICTION,
    UNCALIBRATED_TEXT,
    FileCalibrations,
    calibration_text,
    choose_mask,
    colour_swatches,
    effective_calibration,
    folder_calibration,
    follow_up_rows,
    format_area,
    format_change,
    format_length,
    format_number,
    panel_rows,
    set_folder_calibration,
)
from dermaseg_app.core.measure import REFERENCE_COLOURS_RGB, Calibration, measure
from dermaseg_app.core.project import Project


def _disc(n: int = 64, r: float = 20.0) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:n] + 0.5
    return (xx - n / 2) ** 2 + (yy - n / 2) ** 2 <= r ** 2


def test_the_mask_measured_is_the_correction_else_the_truth_else_the_prediction() -> None:
    a, b, c = (np.zeros((4, 4), bool) for _ in range(3))
    assert choose_mask(a, b, c)[1] == CORRECTION and choose_mask(a, b, c)[0] is a
    assert choose_mask(None, b, c) == (b, GROUND_TRUTH)
    assert choose_mask(None, None, c) == (c, PREDICTION)
    assert choose_mask(None, None, None) == (None, None)


def test_the_folders_scale_wins_over_the_files_resolution() -> None:
    folder, file = Calibration(0.02, "ruler"), Calibration(0.01, "tiff")
    assert effective_calibration(folder, file) is folder
    assert effective_calibration(None, file) is file
    assert effective_calibration(Calibration(), file) is file
    noted = Calibration(note="no resolution in the file")
    assert effective_calibration(None, noted) is noted
    assert not effective_calibration(None, None).calibrated


def test_file_resolution_is_read_from_a_tiff_and_cached(tmp_path) -> None:
    path = tmp_path / "scan.tif"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path, dpi=(2540, 2540))  # 0.01 mm/px
    files = FileCalibrations()
    cal = files.get(path)
    assert cal.calibrated and cal.source == "tiff" and cal.mm_per_px == pytest.approx(0.01)
    assert files.get(path) is cal
    plain = tmp_path / "photo.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(plain)
    assert not files.get(plain).calibrated


def test_rows_say_pixels_when_uncalibrated_and_mm_when_calibrated() -> None:
    mask = _disc()
    rows = {r.key: r for r in panel_rows(measure(mask), GROUND_TRUTH)}
    assert rows["scale"].text == UNCALIBRATED_TEXT == "uncalibrated: pixels"
    assert rows["area"].text.endswith(" px²") and rows["max_diameter"].text.endswith(" px")
    assert rows["source"].text == "the ground truth"
    assert rows["colours"].text == "—"  # measured without the image
    m = measure(mask, np.full((64, 64, 3), 30, np.uint8), Calibration(0.05, "ruler"))
    rows = {r.key: r for r in panel_rows(m, CORRECTION)}
    assert rows["scale"].text == "0.05 mm/px (ruler, set for the folder)"
    assert rows["area"].text == format_area(m.area, "mm") and rows["area"].text.endswith(" mm²")
    assert rows["max_diameter"].text.endswith(" mm")
    assert rows["source"].text == "the correction being edited"
    assert rows["colours"].text == "black"
    assert colour_swatches(m) == [("black", REFERENCE_COLOURS_RGB["black"])]
    assert rows["asymmetry"].text.startswith("0 of 2 axes")
    assert DISCLAIMER == "Research aid, not a diagnosis."


def test_rows_without_a_measurement_and_pending_colours() -> None:
    rows = {r.key: r.text for r in panel_rows(None)}
    assert rows["area"] == "—" and rows["source"] == "no mask" and rows["scale"] == UNCALIBRATED_TEXT
    rows = {r.key: r.text for r in panel_rows(measure(_disc()), PREDICTION, pending_colours=True)}
    assert rows["colours"] == "computing…"
    two = _disc()
    two[:, :2] = True
    rows = {r.key: r.text for r in panel_rows(measure(two), PREDICTION)}
    assert rows["components"] == "2 separate parts"


def test_number_formatting() -> None:
    assert format_number(None) == "—" and format_number(float("nan")) == "—"
    assert format_number(0) == "0"
    assert format_number(109613.0) == "109\u2009613"
    assert format_number(469.04) == "469.0"
    assert format_number(11.733) == "11.73"
    assert format_number(0.0123) == "0.012"
    assert format_number(0.00012) == "1.20e-04"
    assert format_length(2.5, "mm") == "2.500 mm" and format_length(None, "mm") == "—"
    assert format_change(12.345) == "+12.3%" and format_change(-5) == "-5.0%" and format_change(None) == "—"
    assert calibration_text(Calibration(0.0125, "user")) == "0.0125 mm/px (set for the folder)"
    assert calibration_text(Calibration(0.01, "exif")) == "0.01 mm/px (the file's EXIF resolution)"


def test_follow_up_rows_give_the_change_in_percent() -> None:
    cal = Calibration(0.1, "user")
    before, after = measure(_disc(r=10), None, cal), measure(_disc(r=20), None, cal)
    fu = follow_up_rows(before, after)
    assert fu.comparable and fu.note == ""
    area = fu.rows[0]
    assert area[0] == "Area" and area[1].endswith("mm²")
    change = 100 * (after.area - before.area) / before.area
    assert area[3] == f"{change:+.1f}%" and change > 250


def test_follow_up_refuses_when_only_one_is_calibrated() -> None:
    fu = follow_up_rows(measure(_disc(), None, Calibration(0.1, "user")), measure(_disc()))
    assert not fu.comparable
    assert all(row[3] == "—" for row in fu.rows)
    assert "first image is calibrated" in fu.note and "no change is computed" in fu.note
    fu = follow_up_rows(measure(_disc()), measure(_disc()))
    assert fu.comparable and "uncalibrated" in fu.note and fu.rows[0][3] == "+0.0%"


def test_folder_scale_persists_in_the_project(tmp_path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    project = Project.open_for(folder)
    assert folder_calibration(project) is None and folder_calibration(None) is None
    set_folder_calibration(project, Calibration.from_points((0, 0), (100, 0), 2.5))
    data = json.loads(project.path.read_text(encoding="utf-8"))
    assert data["calibration"]["mm_per_px"] == pytest.approx(0.025)
    assert data["calibration"]["source"] == "ruler"
    project.close()
    again = Project.open_for(folder)
    cal = folder_calibration(again)
    assert cal == Calibration(0.025, "ruler")
    set_folder_calibration(again, None)
    assert "calibration" not in json.loads(again.path.read_text(encoding="utf-8"))
    assert folder_calibration(again) is None
    again.close()


def test_old_projects_open_uncalibrated_and_a_bad_scale_is_reported(tmp_path) -> None:
    folder = tmp_path / "images"
    (folder / "dermaseg-project").mkdir(parents=True)
    pfile = folder / "dermaseg-project" / "project.json"
    pfile.write_text(json.dumps({"schema_version": 2, "images": {}, "stems": {}}), encoding="utf-8")
    project = Project.open_for(folder)
    assert project.calibration is None and project.warnings == []
    project.close()
    pfile.write_text(json.dumps({"schema_version": 2, "images": {}, "stems": {},
                                 "calibration": {"mm_per_px": -1}}), encoding="utf-8")
    project = Project.open_for(folder)
    assert project.calibration is None
    assert any("calibration" in w for w in project.warnings)
    project.close()

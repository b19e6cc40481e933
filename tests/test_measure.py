"""core.measure and ``dermaseg measure`` (issue 15): synthetic lesions with known answers,
rotation invariance, real masks, components and holes, calibration rules."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from dermaseg_app.core.measure import (
    ASYMMETRY_THRESHOLD,
    COLOUR_NAMES,
    MEASUREMENT_COLUMNS,
    REFERENCE_COLOURS_RGB,
    Calibration,
    calibration_from_file,
    calibration_from_resolution,
    colour_map,
    crofton_perimeter,
    follow_up,
    measure,
)

SKIN = (225, 175, 155)


def ellipse(shape, cx, cy, a, b, degrees=0.0):
    """Pixels whose centre lies in the ellipse (pixel-edge coordinates, semi-axes a, b)."""
    y, x = np.mgrid[0:shape[0], 0:shape[1]] + 0.5
    t = math.radians(degrees)
    dx, dy = x - cx, y - cy
    u = dx * math.cos(t) + dy * math.sin(t)
    v = -dx * math.sin(t) + dy * math.cos(t)
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def two_lobes(shape=(200, 200), degrees=0.0):
    """A big disc with a small one stuck to its side: lopsided along the line of centres."""
    c = np.array([shape[1] / 2, shape[0] / 2])
    d = np.array([math.cos(math.radians(degrees)), math.sin(math.radians(degrees))])
    big = ellipse(shape, *(c - 15 * d), 50, 50)
    small = ellipse(shape, *(c + 45 * d), 25, 25)
    return big | small


def ramanujan(a, b):
    h = ((a - b) / (a + b)) ** 2
    return math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))


# -- known answers ----------------------------------------------------------------------------

@pytest.mark.parametrize("degrees", [0, 20, 45, 73])
def test_ellipse_known_answers(degrees):
    a, b = 80.0, 45.0
    m = measure(ellipse((220, 220), 110, 110, a, b, degrees))
    assert m.area_px == pytest.approx(math.pi * a * b, rel=0.005)
    assert m.perimeter_px == pytest.approx(ramanujan(a, b), rel=0.01)
    # the pixel squares stick out by at most half a pixel's diagonal on each side
    assert 2 * a - 1 <= m.max_diameter_px <= 2 * a + 1.5
    assert 2 * b - 1 <= m.min_diameter_px <= 2 * b + 1.5
    assert m.equivalent_diameter_px == pytest.approx(2 * math.sqrt(a * b), rel=0.005)
    assert m.asymmetry_axes == 0 and max(m.asymmetry) < 0.02
    assert m.border_irregularity == pytest.approx(ramanujan(a, b) ** 2 / (4 * math.pi * math.pi * a * b), rel=0.02)
    assert m.axis_angles_deg[0] == pytest.approx(degrees % 180, abs=0.5)
    assert m.components == 1 and m.holes == 0 and m.unit == "px"
    assert m.centroid == pytest.approx((110, 110), abs=0.05)


def test_disc_is_compact_and_symmetric():
    m = measure(ellipse((130, 130), 65, 65, 60, 60))
    assert m.border_irregularity == pytest.approx(1.0, abs=0.01)
    assert m.asymmetry_axes == 0
    assert m.max_diameter_px == pytest.approx(120, abs=1.5) and m.min_diameter_px == pytest.approx(120, abs=1.5)


def test_lopsided_two_lobe_shape_has_an_asymmetric_axis():
    m = measure(two_lobes())
    assert m.asymmetry_axes >= 1
    assert max(m.asymmetry) > ASYMMETRY_THRESHOLD
    # mirrored across the major axis (the line through both centres) it is symmetric
    assert m.asymmetry[0] < 0.02 and m.asymmetry[1] > ASYMMETRY_THRESHOLD
    assert measure(two_lobes(), asymmetry_threshold=0.9).asymmetry_axes == 0


def lesion_image(mask, fill):
    img = np.empty(mask.shape + (3,), np.uint8)
    img[:] = SKIN
    fill(img)
    return img


def test_one_colour_lesion():
    mask = ellipse((120, 120), 60, 60, 40, 40)
    img = lesion_image(mask, lambda im: im.__setitem__(mask, REFERENCE_COLOURS_RGB["dark brown"]))
    rng = np.random.default_rng(0)
    img = np.clip(img.astype(int) + rng.integers(-6, 7, img.shape), 0, 255).astype(np.uint8)
    m = measure(mask, img)
    assert m.colours == ("dark brown",)
    assert m.colour_shares["dark brown"] > 0.95
    assert measure(mask, colour_map(img)).colours == ("dark brown",)  # the live panel's way


def test_two_colour_lesion():
    mask = ellipse((120, 120), 60, 60, 40, 40)
    left = mask.copy()
    left[:, 60:] = False

    def fill(im):
        im[mask] = REFERENCE_COLOURS_RGB["light brown"]
        im[left] = REFERENCE_COLOURS_RGB["black"]

    img = lesion_image(mask, fill)
    m = measure(mask, img)
    assert set(m.colours) == {"black", "light brown"}
    assert m.colours == tuple(n for n in COLOUR_NAMES if n in m.colours)  # in the reference order
    assert m.colour_shares["black"] == pytest.approx(0.5, abs=0.03)
    # a colour under the share is not reported
    assert measure(mask, img, colour_min_share=0.6).colours == ()
    assert measure(mask).colours is None  # no image, no colours


def test_every_reference_colour_is_recognised():
    mask = np.ones((4, 4), bool)
    for name, rgb in REFERENCE_COLOURS_RGB.items():
        img = np.empty((4, 4, 3), np.uint8)
        img[:] = rgb
        assert measure(mask, img).colours == (name,)


@pytest.mark.parametrize("name", COLOUR_NAMES)
def test_each_reference_colour_painted_as_a_lesion_is_itself(name):
    """A lesion painted in one reference colour (with +-4 of noise) on skin is that colour only,
    measured from the image and from its ColourMap (the table lookup)."""
    mask = ellipse((120, 120), 60, 60, 40, 30, 20)
    img = lesion_image(mask, lambda im: im.__setitem__(mask, REFERENCE_COLOURS_RGB[name]))
    rng = np.random.default_rng(3)
    img = np.clip(img.astype(int) + rng.integers(-4, 5, img.shape), 0, 255).astype(np.uint8)
    for m in (measure(mask, img), measure(mask, colour_map(img))):
        assert m.colours == (name,)
        assert m.colour_shares[name] > 0.9


def test_reference_colours_are_the_documented_table_in_cielab():
    """The documented RGB table (docs/measurements.md) and its CIELAB values as
    skimage.color.rgb2lab gives them (sRGB, D65) within 0.5."""
    from skimage.color import rgb2lab

    from dermaseg_app.core.measure import REFERENCE_COLOURS_LAB

    assert REFERENCE_COLOURS_RGB == {
        "white": (235, 235, 235), "red": (200, 40, 40), "light brown": (195, 110, 50),
        "dark brown": (100, 50, 40), "blue-grey": (75, 125, 140), "black": (30, 30, 30)}
    rgb = np.array([[REFERENCE_COLOURS_RGB[n] for n in COLOUR_NAMES]], np.uint8)
    assert np.abs(REFERENCE_COLOURS_LAB - rgb2lab(rgb)[0]).max() < 0.5
    documented = {"white": (93.1, 0.0, 0.0), "red": (44.2, 60.9, 40.8),
                  "light brown": (55.1, 29.0, 46.6), "dark brown": (27.1, 21.4, 16.5),
                  "blue-grey": (49.6, -12.6, -13.4), "black": (11.3, 0.0, 0.0)}  # the docs' table
    for i, n in enumerate(COLOUR_NAMES):
        assert np.allclose(rgb2lab(rgb)[0][i], documented[n], atol=0.06)


def test_lab_conversion_matches_scikit_image():
    from skimage.color import rgb2lab

    from dermaseg_app.core.measure import _rgb_to_lab

    rgb = np.random.default_rng(1).integers(0, 256, (500, 3)).astype(np.uint8)
    assert np.abs(_rgb_to_lab(rgb) - rgb2lab(rgb[None])[0]).max() < 0.5


# -- invariance and real masks ----------------------------------------------------------------

def _agree(a, b, rel=0.01, asym=0.01):
    assert a.area_px == pytest.approx(b.area_px, rel=rel)
    assert a.perimeter_px == pytest.approx(b.perimeter_px, rel=rel)
    assert a.max_diameter_px == pytest.approx(b.max_diameter_px, rel=rel)
    assert a.min_diameter_px == pytest.approx(b.min_diameter_px, rel=rel)
    assert a.border_irregularity == pytest.approx(b.border_irregularity, rel=rel)
    assert a.asymmetry_axes == b.asymmetry_axes
    assert np.allclose(a.asymmetry, b.asymmetry, atol=asym)


@pytest.mark.parametrize("degrees", [15, 30, 60, 90, 135])
def test_rotation_invariance(degrees):
    """The same shapes drawn at other angles: within 2 % (a rotated digitisation is another set
    of pixels) and 0.03 in the asymmetry shares."""
    _agree(measure(two_lobes((240, 240), degrees)), measure(two_lobes((240, 240), 0)), rel=0.02, asym=0.03)
    _agree(measure(ellipse((220, 220), 110, 110, 80, 45, degrees)),
           measure(ellipse((220, 220), 110, 110, 80, 45, 0)), rel=0.02, asym=0.03)


@pytest.mark.parametrize("stem", ["ISIC_0000169", "ISIC_0000009"])
def test_real_mask_and_its_90_degree_rotation_agree_within_1_percent(stem, sample_gt_dir, samples_dir):
    from dermaseg_app.core.imageio import read_image, read_mask

    mask = read_mask(sample_gt_dir / f"{stem}_segmentation.png")
    rgb = read_image(samples_dir / f"{stem}.jpg")
    m = measure(mask, rgb)
    r = measure(np.rot90(mask), np.rot90(rgb))
    _agree(m, r)
    assert m.colours == r.colours
    assert m.area_px == int(mask.sum()) and m.components >= 1


def test_crofton_perimeter_is_scikit_images():
    from skimage.measure import perimeter_crofton

    mask = two_lobes() ^ ellipse((200, 200), 80, 100, 10, 6)
    assert crofton_perimeter(mask.view(np.uint8)) == pytest.approx(perimeter_crofton(mask, 4), rel=1e-12)


# -- components, holes, empty ------------------------------------------------------------------

def test_several_components_and_holes():
    a = ellipse((100, 200), 40, 50, 20, 20)
    b = ellipse((100, 200), 160, 50, 20, 20)
    m = measure(a | b)
    one = measure(a)
    assert m.components == 2 and m.holes == 0
    assert m.area_px == 2 * one.area_px
    assert m.perimeter_px == pytest.approx(2 * one.perimeter_px)
    assert m.max_diameter_px == pytest.approx(160, abs=1.5)  # over the union: outer ends of both discs
    assert m.min_diameter_px == pytest.approx(40, abs=1.5)
    ring = ellipse((100, 100), 50, 50, 40, 40) & ~ellipse((100, 100), 50, 50, 15, 15)
    r = measure(ring)
    assert r.components == 1 and r.holes == 1
    assert r.area_px == pytest.approx(math.pi * (40 ** 2 - 15 ** 2), rel=0.01)  # the hole is not lesion
    assert r.perimeter_px == pytest.approx(2 * math.pi * (40 + 15), rel=0.02)  # both borders
    assert r.max_diameter_px == pytest.approx(80, abs=1.5)
    assert r.asymmetry_axes == 0


def test_empty_and_tiny_masks():
    m = measure(np.zeros((10, 10), bool), np.zeros((10, 10, 3), np.uint8))
    assert m.empty and m.area == 0 and m.asymmetry is None and m.colours == ()
    d = m.to_dict()
    assert d["area_mm2"] == 0 and d["asymmetry"] is None and d["unit"] == "px"
    one = np.zeros((5, 5), np.uint8)
    one[2, 3] = 255
    p = measure(one)
    assert p.area_px == 1 and p.max_diameter_px == pytest.approx(math.sqrt(2)) and p.min_diameter_px == pytest.approx(1)
    assert p.centroid == (3.5, 2.5)
    with pytest.raises(ValueError):
        measure(np.zeros((4, 4, 3)))
    with pytest.raises(ValueError):
        measure(np.zeros((4, 4)), np.zeros((5, 4, 3), np.uint8))


# -- calibration --------------------------------------------------------------------------------

def test_ruler_calibration_and_units():
    cal = Calibration.from_length(200, 5.0)  # a 5 mm scale bar 200 px long
    assert cal.mm_per_px == pytest.approx(0.025) and cal.source == "ruler" and cal.unit == "mm"
    assert Calibration.from_points((10, 10), (130, 170), 10.0).mm_per_px == pytest.approx(10 / 200)
    with pytest.raises(ValueError):
        Calibration.from_length(0, 5)
    with pytest.raises(ValueError):
        Calibration(-1.0)
    mask = ellipse((220, 220), 110, 110, 80, 45)
    px = measure(mask)
    mm = measure(mask, calibration=cal)
    assert mm.unit == "mm" and mm.area == pytest.approx(px.area_px * 0.025 ** 2)
    assert mm.max_diameter == pytest.approx(px.max_diameter_px * 0.025)
    assert mm.perimeter == pytest.approx(px.perimeter_px * 0.025)
    assert mm.asymmetry == px.asymmetry and mm.border_irregularity == px.border_irregularity
    assert px.with_calibration(cal).to_dict() == mm.to_dict()
    d = mm.to_dict()
    assert d["unit"] == "mm" and d["mm_per_px"] == 0.025 and d["calibration_source"] == "ruler"
    assert d["max_diameter_mm"] == pytest.approx(160 * 0.025, abs=0.04)


def test_uncalibrated_reports_pixels_and_says_so():
    d = measure(ellipse((50, 50), 25, 25, 10, 10)).to_dict()
    for key in ("area_mm2", "perimeter_mm", "max_diameter_mm", "min_diameter_mm", "asymmetry_axes",
                "asymmetry", "border_irregularity", "colours"):
        assert key in d
    assert d["unit"] == "px" and d["mm_per_px"] is None and d["area_mm2"] == d["area_px"]
    cells = measure(ellipse((50, 50), 25, 25, 10, 10)).csv_fields()
    assert tuple(cells) == MEASUREMENT_COLUMNS and cells["unit"] == "px" and cells["mm_per_px"] == ""


@pytest.mark.parametrize("x, y, unit, ok", [
    (2000, 2000, 2, True),        # 0.0127 mm/px: a dermoscope
    (800.5, 800.5, 3, True),      # per cm: 0.0125 mm/px
    (72, 72, 2, False),           # the usual JPEG default
    (96, 96, 2, False),
    (300, 300, 2, False),         # a software/print default, even though plausible
    (118.11, 118.11, 3, False),   # 300 dpi written per cm
    (2000, 2000, 1, False),       # no absolute unit
    (2000, 2000, None, False),    # unit missing
    (2000, 1000, 2, False),       # not square pixels
    (50, 50, 2, False),           # 0.5 mm/px: implausible
    (0, 0, 2, False),
])
def test_resolution_rule(x, y, unit, ok):
    cal = calibration_from_resolution(x, y, unit, "exif")
    assert cal.calibrated is ok
    if ok:
        assert cal.source == "exif"
    else:
        assert cal.note and cal.unit == "px"


def test_calibration_from_file(tmp_path, samples_dir):
    from PIL import Image

    rgb = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
    exif = Image.Exif()
    exif[282], exif[283], exif[296] = 2000.0, 2000.0, 2
    rgb.save(tmp_path / "scope.jpg", exif=exif)
    cal = calibration_from_file(tmp_path / "scope.jpg")
    assert cal.source == "exif" and cal.mm_per_px == pytest.approx(25.4 / 2000)
    rgb.save(tmp_path / "scope.tif", dpi=(1500, 1500))
    tif = calibration_from_file(tmp_path / "scope.tif")
    assert tif.source == "tiff" and tif.mm_per_px == pytest.approx(25.4 / 1500, rel=1e-3)
    rgb.save(tmp_path / "plain.jpg", dpi=(72, 72))  # JFIF density only: never used
    assert not calibration_from_file(tmp_path / "plain.jpg").calibrated
    default = calibration_from_file(samples_dir / "ISIC_0000096.jpg")  # EXIF 300 dpi
    assert not default.calibrated and "default" in default.note
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    assert not calibration_from_file(tmp_path / "bad.jpg").calibrated


def test_measure_is_fast_enough_for_a_live_panel():
    """A 1000x1000 mask with a large lesion: a few ms (generous bound for a busy CI machine)."""
    import time

    mask = ellipse((1000, 1000), 500, 500, 450, 300, 30)
    cmap = colour_map(np.full((1000, 1000, 3), 128, np.uint8))
    measure(mask, cmap)
    t0 = time.perf_counter()
    for _ in range(5):
        measure(mask, cmap)
    assert (time.perf_counter() - t0) / 5 < 0.25


# -- dermaseg measure ----------------------------------------------------------------------------

def test_measure_command_on_a_sample_with_its_mask(sample_folder, tmp_path, capsys):
    from dermaseg_app import cli

    images = sample_folder(["ISIC_0000169"])
    out = tmp_path / "m.json"
    assert cli.main(["measure", str(images), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ISIC_0000169.jpg" in text and "not a diagnosis" in text and "uncalibrated" in text
    report = json.loads(out.read_text())
    (entry,) = report["images"]
    assert entry["mask_source"] == "mask" and entry["mask"].endswith("ISIC_0000169_segmentation.png")
    assert entry["unit"] == "px" and entry["mm_per_px"] is None
    for key in ("image", "area_mm2", "perimeter_mm", "max_diameter_mm", "min_diameter_mm",
                "asymmetry_axes", "asymmetry", "border_irregularity", "colours"):
        assert key in entry
    assert len(entry["asymmetry"]) == 2 and entry["asymmetry_axes"] in (0, 1, 2)
    assert isinstance(entry["colours"], list) and set(entry["colours"]) <= set(COLOUR_NAMES)
    px_area = entry["area_mm2"]

    assert cli.main(["measure", str(images / "ISIC_0000169.jpg"), "--mm-per-px", "0.02",
                     "--json", str(out)]) == 0
    (mm,) = json.loads(out.read_text())["images"]
    assert mm["unit"] == "mm" and mm["calibration_source"] == "cli"
    assert mm["area_mm2"] == pytest.approx(px_area * 0.0004, rel=1e-6)
    assert mm["max_diameter_mm"] == pytest.approx(entry["max_diameter_mm"] * 0.02, rel=1e-6)


def test_measure_command_uses_the_prediction_without_a_mask(random_model, samples_dir, tmp_path, capsys):
    import shutil

    from dermaseg_app import cli

    shutil.copy(samples_dir / "ISIC_0000169.jpg", tmp_path / "lesion.jpg")
    out = tmp_path / "m.json"
    code = cli.main(["measure", str(tmp_path / "lesion.jpg"), "--model", str(random_model),
                     "--device", "cpu", "--json", str(out)])
    assert code in (0, 1)  # a random model may predict nothing; the entry is there either way
    (entry,) = json.loads(out.read_text())["images"]
    assert entry["mask_source"] == "prediction" and entry["mask"] is None


def test_measure_command_bad_arguments(tmp_path, capsys):
    from dermaseg_app import cli

    assert cli.main(["measure", str(tmp_path / "nope")]) == 2
    with pytest.raises(SystemExit):
        cli.main(["measure", str(tmp_path), "--mm-per-px", "-1"])


# -- predict's CSV and the export manifest ------------------------------------------------------

def test_predict_csv_has_the_measurement_columns_after_the_old_ones(random_model, sample_folder, tmp_path, capsys):
    import csv

    from dermaseg_app import cli
    from dermaseg_app.commands.predict import CSV_COLUMNS

    old = ("image", "mask", "width", "height", "lesion_fraction", "seconds", "error")
    assert CSV_COLUMNS == old + MEASUREMENT_COLUMNS
    images = sample_folder(["ISIC_0000169"])
    out = tmp_path / "out"
    assert cli.main(["predict", str(images), "--out", str(out), "--model", str(random_model),
                     "--device", "cpu", "--mm-per-px", "0.01"]) == 0
    with open(out / "predictions.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        (row,) = list(reader)
    assert tuple(reader.fieldnames) == CSV_COLUMNS
    assert row["unit"] == "mm" and row["mm_per_px"] == "0.01" and row["calibration_source"] == "cli"
    from dermaseg_app.core.imageio import read_mask

    pixels = int(read_mask(row["mask"]).sum())
    if pixels:
        assert float(row["area"]) == pytest.approx(pixels * 1e-4, rel=1e-4)
        assert row["asymmetry_axes"] in ("0", "1", "2") and float(row["border_irregularity"]) > 0


def test_export_manifest_has_measurements_and_the_formula_guard(sample_folder, tmp_path):
    import csv

    from dermaseg_app.core.export import MANIFEST_COLUMNS, csv_safe, export_project
    from dermaseg_app.core.imageio import read_mask
    from dermaseg_app.core.project import Project
    from dermaseg_app.core.store import CorrectionStore

    assert MANIFEST_COLUMNS[-len(MEASUREMENT_COLUMNS):] == MEASUREMENT_COLUMNS
    assert MANIFEST_COLUMNS.index("error") == len(MANIFEST_COLUMNS) - len(MEASUREMENT_COLUMNS) - 1
    images = sample_folder(["ISIC_0000169"])
    image = images / "ISIC_0000169.jpg"
    project = Project.open_for(images)
    gt = read_mask(images.parent / "ISIC-2017_Training_Part1_GroundTruth" / "ISIC_0000169_segmentation.png")
    CorrectionStore(project).save_correction(image, gt)
    project.set_note(image, "=HYPERLINK(\"x\")")
    out = tmp_path / "export"
    export_project(project, out, calibration=Calibration(0.02, "user"))
    with open(out / "manifest.csv", newline="", encoding="utf-8") as fh:
        (row,) = list(csv.DictReader(fh))
    expected = measure(gt, calibration=Calibration(0.02, "user"))
    assert row["unit"] == "mm" and row["calibration_source"] == "user"
    assert float(row["area"]) == pytest.approx(expected.area, rel=1e-5)
    assert float(row["max_diameter"]) == pytest.approx(expected.max_diameter, rel=1e-5)
    assert row["asymmetry_axes"] == str(expected.asymmetry_axes)
    assert row["colours"] and set(row["colours"].split(";")) <= set(COLOUR_NAMES)
    assert row["note"].startswith("'=")  # the guard still applies
    assert csv_safe("-light") == "'-light"
    export_project(project, tmp_path / "export2")  # uncalibrated: each file's resolution, else px
    with open(tmp_path / "export2" / "manifest.csv", newline="", encoding="utf-8") as fh:
        (row2,) = list(csv.DictReader(fh))
    assert row2["unit"] == "px" and float(row2["area"]) == expected.area_px


def test_follow_up_change_in_percent():
    cal = Calibration(0.01, "user")
    before = measure(ellipse((220, 220), 110, 110, 50, 40), calibration=cal)
    after = measure(ellipse((220, 220), 110, 110, 60, 40), calibration=cal)
    f = follow_up(before, after)
    assert f["comparable"] and f["unit"] == "mm" and not f["note"]
    assert f["fields"]["area"]["change_percent"] == pytest.approx(20, abs=1)
    assert f["fields"]["max_diameter"]["change_percent"] == pytest.approx(20, abs=2)
    mixed = follow_up(before, after.with_calibration(None))
    assert not mixed["comparable"] and mixed["fields"]["area"]["change_percent"] is None
    px = follow_up(before.with_calibration(None), after.with_calibration(None))
    assert px["comparable"] and "pixels" in px["note"]


def test_measure_command_with_a_masks_folder_and_a_mismatched_mask(samples_dir, sample_gt_dir, tmp_path, capsys):
    import shutil

    from dermaseg_app import cli

    (tmp_path / "imgs").mkdir()
    (tmp_path / "my-masks").mkdir()
    shutil.copy(samples_dir / "ISIC_0000169.jpg", tmp_path / "imgs" / "a.jpg")
    shutil.copy(samples_dir / "ISIC_0000299.jpg", tmp_path / "imgs" / "b.jpg")
    shutil.copy(sample_gt_dir / "ISIC_0000169_segmentation.png", tmp_path / "my-masks" / "a.png")
    cv2.imwrite(str(tmp_path / "my-masks" / "b.png"), np.full((10, 10), 255, np.uint8))
    out = tmp_path / "m.json"
    code = cli.main(["measure", str(tmp_path / "imgs"), "--masks", str(tmp_path / "my-masks"), "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert [e["image"].endswith("a.jpg") for e in report["images"]] == [True]
    assert report["images"][0]["mask"].endswith("a.png")
    (error,) = report["errors"]
    assert error["path"].endswith("b.jpg") and "differs" in error["reason"]
    assert "skipped" in capsys.readouterr().err

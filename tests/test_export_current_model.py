"""``dermaseg export`` (issue 12): every image not excluded gets its saved correction, else the
current model's mask (predicted when it is not cached), and the manifest says which."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from dermaseg_app.cli import main
from dermaseg_app.core.export import ExportCancelled, ModelMasks, export_project
from dermaseg_app.core.imageio import read_mask
from dermaseg_app.core.project import Project, ReviewStatus
from dermaseg_app.core.store import CorrectionStore


def _tiny_folder(root: Path, n: int = 4) -> Path:
    """``root/images/lesion_<i>.png`` (40x56 RGB) with ``root/masks/`` ground truth."""
    from PIL import Image

    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    yy, xx = np.mgrid[0:40, 0:56]
    for i in range(n):
        disc = (yy - 20) ** 2 + (xx - 18 - 5 * i) ** 2 <= (8 + i) ** 2
        rgb = np.full((40, 56, 3), (200, 158, 140), np.uint8)
        rgb[disc] = (85, 50, 40)
        Image.fromarray(rgb).save(images / f"lesion_{i}.png")
        Image.fromarray((disc * 255).astype(np.uint8)).save(masks / f"lesion_{i}.png")
    return images


@pytest.fixture
def reviewed(tmp_path):
    """lesion_0 accepted (no correction), lesion_1 corrected, lesion_2 excluded (with a
    correction, which is not exported), lesion_3 unreviewed; an old model's stored prediction
    for lesion_0 that must not be exported."""
    images = _tiny_folder(tmp_path / "data")
    project = Project.open_for(images)
    store = CorrectionStore(project)
    project.set_status(images / "lesion_0.png", ReviewStatus.ACCEPTED)
    old = np.zeros((40, 56), bool)
    old[:5, :5] = True
    store.save_prediction(images / "lesion_0.png", old, "old-model", "0.1")
    corrected = np.zeros((40, 56), bool)
    corrected[10:30, 10:40] = True
    store.save_correction(images / "lesion_1.png", corrected, model_name="old-model", model_version="0.1")
    project.set_status(images / "lesion_1.png", ReviewStatus.NEEDS_CORRECTION)
    store.save_correction(images / "lesion_2.png", corrected)
    project.set_status(images / "lesion_2.png", ReviewStatus.EXCLUDED)
    return project, corrected


def _manifest(out: Path) -> dict[str, dict]:
    with open(out / "manifest.csv", newline="", encoding="utf-8") as fh:
        return {r["stem"]: r for r in csv.DictReader(fh)}


def test_cli_export_writes_corrections_and_the_current_models_masks(reviewed, random_model, tmp_path,
                                                                    capsys) -> None:
    from dermaseg_app.ml.predictor import Predictor

    project, corrected = reviewed
    out = tmp_path / "out"
    assert main(["export", str(project.image_folder), "--out", str(out), "--model", str(random_model),
                 "--device", "cpu", "--no-hd95"]) == 0
    captured = capsys.readouterr()
    assert "random-test 0.0.1" in captured.out
    assert "4 images (3 masks: 1 corrected, 2 from the model; 1 excluded" in captured.out
    assert captured.err.count("predicting") == 2  # lesion_0 and lesion_3: not in the cache
    rows = _manifest(out)
    assert {k: r["mask_source"] for k, r in rows.items()} == {
        "lesion_0": "model", "lesion_1": "correction", "lesion_2": "", "lesion_3": "model"}
    assert rows["lesion_0"]["model_name"] == "random-test" and rows["lesion_0"]["model_version"] == "0.0.1"
    assert rows["lesion_0"]["threshold"] == "0.45"
    assert rows["lesion_1"]["model_name"] == "old-model"  # the model the correction started from
    assert rows["lesion_2"]["status"] == "excluded" and rows["lesion_2"]["mask_file"] == ""
    assert rows["lesion_0"]["dsc"] != ""  # scored against the ground truth
    assert np.array_equal(read_mask(out / "masks" / "lesion_1_segmentation.png"), corrected)
    assert not (out / "masks" / "lesion_2_segmentation.png").exists()
    predictor = Predictor(random_model, "cpu")
    from dermaseg_app.core.imageio import read_image

    for stem in ("lesion_0", "lesion_3"):
        want = predictor.predict(read_image(project.image_folder / f"{stem}.png")).prob
        got = read_mask(out / "masks" / f"{stem}_segmentation.png")
        expected = np.rint(want * 255) >= np.ceil(0.45 * 255 - 1e-6)  # the 8-bit map, cut at 0.45
        assert np.array_equal(got, expected)
    # a second export finds the maps in the cache: nothing is predicted again
    assert main(["export", str(project.image_folder), "--out", str(tmp_path / "again"),
                 "--model", str(random_model), "--no-hd95"]) == 0
    assert "predicting" not in capsys.readouterr().err
    # --corrections-only: no model at all
    assert main(["export", str(project.image_folder), "--out", str(tmp_path / "only"),
                 "--corrections-only"]) == 0
    rows = _manifest(tmp_path / "only")
    assert rows["lesion_0"]["mask_source"] == "" and "no model" in rows["lesion_0"]["error"]
    assert sorted(p.name for p in (tmp_path / "only" / "masks").iterdir()) == ["lesion_1_segmentation.png"]


def test_cli_export_with_a_broken_model_says_so(reviewed, tmp_path, capsys) -> None:
    project, _ = reviewed
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model")
    assert main(["export", str(project.image_folder), "--out", str(tmp_path / "o"), "--model", str(bad)]) == 1
    assert "cannot use the model" in capsys.readouterr().err


def test_a_failing_prediction_is_listed_and_cancel_stops(reviewed, tmp_path) -> None:
    project, _ = reviewed

    def probability(image: Path) -> np.ndarray:
        if image.stem == "lesion_3":
            raise RuntimeError("CUDA out of memory")
        return np.full((40, 56), 200, np.uint8)

    summary = export_project(project, tmp_path / "o", model=ModelMasks("m", "1", 0.5, probability),
                             with_hd95=False)
    rows = _manifest(tmp_path / "o")
    assert rows["lesion_0"]["mask_source"] == "model" and rows["lesion_3"]["mask_source"] == ""
    assert "CUDA out of memory" in rows["lesion_3"]["error"] and summary.from_model == 1
    seen = []
    with pytest.raises(ExportCancelled):
        export_project(project, tmp_path / "c", model=ModelMasks("m", "1", 0.5, probability),
                       progress=lambda i, n, key: seen.append(key), cancelled=lambda: len(seen) >= 2)
    assert len(seen) == 2 and not (tmp_path / "c" / "manifest.csv").exists()


def test_cli_export_uses_the_model_the_window_uses_by_default(random_model, tmp_path) -> None:
    from dermaseg_app import paths
    from dermaseg_app.app.settings import GuiSettings
    from dermaseg_app.commands.export import current_model_path

    assert current_model_path(None) == paths.default_model_path()
    settings = GuiSettings.load()
    settings.model = str(random_model)  # chosen in the window (Use this model / Use Model File…)
    settings.save()
    assert current_model_path(None) == random_model
    assert current_model_path(str(tmp_path / "x.safetensors")) == tmp_path / "x.safetensors"
    random_model_missing = tmp_path / "gone.safetensors"
    settings.model = str(random_model_missing)
    settings.save()
    assert current_model_path(None) == paths.default_model_path()  # a file that is gone: the bundled one

"""`dermaseg predict / evaluate / info` end to end, with random weights saved to tmp_path."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dermaseg_app import cli, paths
from dermaseg_app.ml.registry import build_generator, default_config
from dermaseg_app.ml.weights import ModelInfo, save_model

SIZE = 32
SMALL = {"encoder_channels": [24, 32, 64], "decoder_channels": [32, 16], "stage2_dilations": [2, 4]}
STEMS = ("ISIC_0000169", "ISIC_0000299", "ISIC_0000009")  # the three smallest samples


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = dict(default_config("slsnet"), input_size=SIZE, **SMALL)
    info = ModelInfo(name="random-test", version="9.9", arch="slsnet", config=config, input_size=SIZE,
                     threshold=0.5, trained_on="nothing (random init)")
    card = "# Random test model\n\nRandomly initialised weights for the tests.\n"
    return save_model(tmp_path_factory.mktemp("model") / "rand.safetensors",
                      build_generator("slsnet", config), info, card=card)


@pytest.fixture
def dataset(tmp_path, samples_dir, sample_gt_dir) -> Path:
    """images/ + masks/ copies of three real samples (the layout of the shared data)."""
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for stem in STEMS:
        shutil.copyfile(samples_dir / f"{stem}.jpg", root / "images" / f"{stem}.jpg")
        shutil.copyfile(sample_gt_dir / f"{stem}_segmentation.png", root / "masks" / f"{stem}.png")
    return root


def image_size(path: Path) -> tuple[int, int]:
    h, w = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape[:2]
    return h, w


def test_predict_writes_masks_of_the_image_size_and_a_csv(model, dataset, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["predict", str(dataset / "images"), "--out", str(out), "--model", str(model),
                     "--save-prob", "--device", "cpu"])
    assert code == 0
    text = capsys.readouterr().out
    assert f"3 mask(s) written to {out}" in text and "s per image" in text
    for stem in STEMS:
        mask = cv2.imread(str(out / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert mask.ndim == 2 and mask.dtype == np.uint8
        assert mask.shape == image_size(dataset / "images" / f"{stem}.jpg")
        assert set(np.unique(mask)) <= {0, 255}
        prob = cv2.imread(str(out / f"{stem}_prob.png"), cv2.IMREAD_UNCHANGED)
        assert prob.dtype == np.uint16 and prob.shape == mask.shape
        assert np.array_equal(prob >= 32768, mask == 255) or np.mean((prob >= 32768) != (mask == 255)) < 1e-3
    with open(out / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [Path(r["image"]).stem for r in rows] == sorted(STEMS, key=lambda s: int(s.split("_")[1]))
    for row in rows:
        assert row["error"] == ""
        assert (int(row["height"]), int(row["width"])) == image_size(Path(row["image"]))
        assert 0.0 <= float(row["lesion_fraction"]) <= 1.0 and float(row["seconds"]) > 0
        assert Path(row["mask"]).is_file()
    # nothing half-written: no temp files left behind
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != ".dermaseg-output"]


def test_predict_skips_a_corrupt_file_and_goes_on(model, dataset, tmp_path, capsys):
    bad = dataset / "images" / "broken.jpg"
    bad.write_bytes(b"not an image at all")
    out = tmp_path / "out"
    code = cli.main(["predict", str(dataset / "images"), "--out", str(out), "--model", str(model)])
    assert code == 0
    captured = capsys.readouterr()
    assert str(bad) in captured.err and "Traceback" not in captured.err
    assert "3 mask(s) written" in captured.out
    rows = list(csv.DictReader(open(out / "predictions.csv", newline="")))
    errors = {Path(r["image"]).name: r["error"] for r in rows}
    assert errors["broken.jpg"] and not (out / "broken.png").exists()
    assert sum(1 for e in errors.values() if not e) == 3


def test_predict_fails_when_nothing_can_be_processed(model, tmp_path, capsys):
    bad = tmp_path / "in" / "broken.png"
    bad.parent.mkdir()
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert cli.main(["predict", str(bad), "--out", str(tmp_path / "out"), "--model", str(model)]) == 1
    assert str(bad) in capsys.readouterr().err


def test_unwritable_output_fails_before_any_work(model, dataset, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("in the way")
    loaded = []
    import dermaseg_app.commands.predict as predict_cmd

    monkeypatch.setattr(predict_cmd, "load_predictor", lambda args: loaded.append(args))
    for out in (blocker, blocker / "sub" / "dir"):
        code = cli.main(["predict", str(dataset / "images"), "--out", str(out), "--model", str(model)])
        assert code == 1
        err = capsys.readouterr().err
        assert str(blocker) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert loaded == []  # failed before the model was even loaded
    assert blocker.read_text() == "in the way"


def test_predict_never_overwrites_inputs_or_ground_truth(model, dataset, capsys):
    masks = dataset / "masks"
    before = {p.name: p.read_bytes() for p in masks.iterdir()}
    # masks/ as both input (a png image named like a mask) and output
    image_png = masks / "extra.png"
    cv2.imwrite(str(image_png), np.full((40, 50, 3), 120, np.uint8))
    before["extra.png"] = image_png.read_bytes()
    code = cli.main(["predict", str(dataset / "images"), str(image_png), "--out", str(masks), "--model", str(model)])
    assert code == 0
    for name, data in before.items():
        assert (masks / name).read_bytes() == data
    written = sorted(p.name for p in masks.glob("*_2.png"))
    assert "extra_2.png" in written and len(written) == 4


def test_empty_folder_and_missing_path(model, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = cli.main(["predict", str(empty), "--out", str(tmp_path / "out"), "--model", str(model)])
    assert code != 0
    err = capsys.readouterr().err
    assert f"no images found in {empty}" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    assert cli.main(["predict", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--model", str(model)]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_bad_arguments_exit_2(model, dataset, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["predict", str(dataset), "--out", str(tmp_path / "o"), "--threshold", "1.5"])
    assert exc.value.code == 2
    assert cli.main(["predict", str(dataset), "--out", str(tmp_path / "o"), "--model", str(model),
                     "--device", "tpu"]) == 2
    assert "unknown device" in capsys.readouterr().err


def test_missing_or_broken_model_is_one_clear_line(dataset, tmp_path, capsys):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 100)
    for model in (tmp_path / "absent.safetensors", broken):
        code = cli.main(["predict", str(dataset / "images"), "--out", str(tmp_path / "o"), "--model", str(model)])
        assert code == 1
        err = capsys.readouterr().err.strip()
        assert str(model) in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_cuda_request_without_cuda_prints_a_notice(model, dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    image = dataset / "images" / f"{STEMS[0]}.jpg"
    assert cli.main(["predict", str(image), "--out", str(tmp_path / "o"), "--model", str(model),
                     "--device", "cuda"]) == 0
    assert "CUDA was requested" in capsys.readouterr().err


def test_evaluate_json_schema(model, dataset, tmp_path, capsys):
    lonely = dataset / "images" / "no_truth.jpg"
    shutil.copyfile(dataset / "images" / f"{STEMS[0]}.jpg", lonely)
    report_path = tmp_path / "report.json"
    code = cli.main(["evaluate", str(dataset / "images"), "--model", str(model), "--json", str(report_path)])
    assert code == 0
    text = capsys.readouterr().out
    for heading in ("JSC", "DSC", "ACC", "SEN", "SPE", "HD95", "mean", "pooled"):
        assert heading in text
    report = json.loads(report_path.read_text())
    assert set(report) == {"model", "images", "mean", "pooled", "per_image", "errors"}
    assert report["model"]["name"] == "random-test" and report["model"]["version"] == "9.9"
    assert report["model"]["path"] == str(model)
    assert report["images"] == 3 == len(report["per_image"])
    for key in ("mean", "pooled"):
        assert set(report[key]) == {"acc", "dsc", "jsc", "sen", "spe", "jsc_th"}
        assert all(0.0 <= v <= 1.0 for v in report[key].values())
    for entry in report["per_image"]:
        assert {"image", "jsc", "dsc", "acc", "sen", "spe", "jsc_th", "hd95"} <= set(entry)
        assert all(0.0 <= entry[k] <= 1.0 for k in ("jsc", "dsc", "acc", "sen", "spe", "jsc_th"))
    assert report["errors"] == [{"path": str(lonely), "reason": "no ground truth found"}]
    # mean of the per-image scores
    mean_jsc = np.mean([e["jsc"] for e in report["per_image"]])
    assert report["mean"]["jsc"] == pytest.approx(mean_jsc)


def test_evaluate_reports_a_mask_of_another_size(model, dataset, tmp_path, capsys):
    stem = STEMS[0]
    gt = dataset / "masks" / f"{stem}.png"
    h, w = image_size(dataset / "images" / f"{stem}.jpg")
    small = np.zeros((80, 100), np.uint8)
    small[20:60, 30:70] = 255
    cv2.imwrite(str(gt), small)
    report_path = tmp_path / "r.json"
    assert cli.main(["evaluate", str(dataset / "images"), "--model", str(model), "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["images"] == 2
    (error,) = report["errors"]
    assert error["path"].endswith(f"{stem}.jpg")
    assert f"mask 100x80 differs from image {w}x{h}" in error["reason"]
    assert cv2.imread(str(gt), cv2.IMREAD_UNCHANGED).shape == (80, 100)  # never stretched or rewritten


def test_evaluate_with_explicit_masks_folder(model, dataset, tmp_path, capsys):
    masks = tmp_path / "elsewhere"
    shutil.move(str(dataset / "masks"), masks)
    code = cli.main(["evaluate", str(dataset / "images"), "--model", str(model)])
    assert code == 1
    assert "ground-truth" in capsys.readouterr().err
    code = cli.main(["evaluate", str(dataset / "images"), "--masks", str(masks), "--model", str(model)])
    assert code == 0
    assert "3 image(s) scored" in capsys.readouterr().out


def test_info_with_weights(model, capsys):
    assert cli.main(["info", "--model", str(model)]) == 0
    out = capsys.readouterr().out
    n_params = sum(p.numel() for p in build_generator("slsnet", dict(default_config("slsnet"), **SMALL)).parameters())
    assert f"{n_params:,}" in out
    assert "random-test" in out and "9.9" in out
    assert "Randomly initialised weights for the tests." in out
    assert "MACs at 32x32" in out and "attention" in out


def test_info_without_weights_still_describes_the_network(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(paths, "default_model_path", lambda: tmp_path / "slsnet_isic2017.safetensors")
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    n_params = sum(p.numel() for p in build_generator("slsnet", default_config("slsnet")).parameters())
    assert f"parameters: {n_params:,}" in out
    assert "MACs at 128x128" in out
    assert f"no weights file found at {tmp_path / 'slsnet_isic2017.safetensors'}" in out

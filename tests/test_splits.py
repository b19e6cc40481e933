"""Group-keeping train/validation splits (HAM10000 by lesion id)."""

import json

import cv2
import numpy as np
import pytest

from dermaseg_app.core.dataset import find_cases
from dermaseg_app.ml.splits import SplitError, group_split, main, read_groups


def test_no_group_on_both_sides_and_fraction_close():
    stems = [f"img{i:03d}" for i in range(200)]
    rng = np.random.default_rng(1)
    groups = {s: f"lesion{int(rng.integers(0, 70))}" for s in stems}
    split = group_split(stems, groups, 0.2, seed=3)
    train_groups = {groups[s] for s in split.train}
    val_groups = {groups[s] for s in split.val}
    assert not train_groups & val_groups
    assert sorted(split.train + split.val) == stems
    assert abs(len(split.val) - 40) <= 6  # within half of the largest group
    assert split.val_groups == len(val_groups) and split.train_groups == len(train_groups)


def test_deterministic_and_order_free():
    stems = [f"s{i}" for i in range(50)]
    groups = {s: str(i // 3) for i, s in enumerate(stems)}
    a = group_split(stems, groups, 0.1, seed=0)
    b = group_split(list(reversed(stems)), groups, 0.1, seed=0)
    c = group_split(stems, groups, 0.1, seed=1)
    assert a == b
    assert a.val != c.val


def test_stems_without_group_are_their_own_group():
    split = group_split([f"x{i}" for i in range(10)], {}, 0.3, seed=0)
    assert len(split.val) == 3 and len(split.train) == 7


def test_bad_fraction_and_too_few_images():
    with pytest.raises(SplitError):
        group_split(["a", "b"], {}, 1.0)
    with pytest.raises(SplitError):
        group_split(["a"], {}, 0.5)
    with pytest.raises(SplitError, match="too large"):
        group_split(["a", "b", "c"], {"a": "g", "b": "g", "c": "g"}, 0.3)


def test_read_groups_names_a_missing_column(tmp_path):
    csv_path = tmp_path / "meta.csv"
    csv_path.write_text("lesion_id,image_id\nL1,ISIC_1\nL1,ISIC_2\n")
    assert read_groups(csv_path, "lesion_id", "image_id") == {"ISIC_1": "L1", "ISIC_2": "L1"}
    with pytest.raises(SplitError, match="no column 'lesion'"):
        read_groups(csv_path, "lesion", "image_id")
    with pytest.raises(SplitError, match="cannot read"):
        read_groups(tmp_path / "missing.csv", "lesion_id", "image_id")


def test_command_writes_readable_split_folders(tmp_path, capsys):
    data = tmp_path / "ham"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    rows = ["lesion_id,image_id"]
    for i in range(12):
        img = np.full((16, 16, 3), 10 * i, np.uint8)
        cv2.imwrite(str(data / "images" / f"ISIC_{i:02d}.jpg"), img)
        cv2.imwrite(str(data / "masks" / f"ISIC_{i:02d}.png"), np.full((16, 16), 255, np.uint8))
        rows.append(f"L{i // 2},ISIC_{i:02d}")
    (data / "meta.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "split"
    assert main([str(data), "--out", str(out), "--groups", "meta.csv", "--val", "0.25"]) == 0
    assert "train images" in capsys.readouterr().out
    record = json.loads((out / "split.json").read_text())
    assert len(record["val"]) == 4 and len(record["train"]) == 8
    lesions = lambda stems: {int(s[5:]) // 2 for s in stems}  # noqa: E731
    assert not lesions(record["train"]) & lesions(record["val"])
    for side in ("train", "val"):
        cases = find_cases([out / side])
        assert sorted(c.stem for c in cases) == sorted(record[side])
        assert all(c.ground_truth is not None for c in cases)
    # running again replaces the folders instead of mixing two splits
    assert main([str(data), "--out", str(out), "--groups", "meta.csv", "--val", "0.25", "--seed", "5"]) == 0
    assert len(list((out / "val" / "images").iterdir())) == len(json.loads((out / "split.json").read_text())["val"])


def test_command_reports_errors(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty), "--out", str(tmp_path / "o")]) == 1
    assert "no images with masks" in capsys.readouterr().err

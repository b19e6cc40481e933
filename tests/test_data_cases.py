"""ml.data.load_cases: a training pack from explicit (image, mask) pairs (the Training tab's
corrections), the same decoding as load_folder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dermaseg_app.core.dataset import Case
from dermaseg_app.core.imageio import ImageReadError
from dermaseg_app.ml.data import DataError, load_cases, load_folder, load_pack, save_pack


def _pairs(root: Path, n: int, size: tuple[int, int] = (40, 48)) -> list[Case]:
    """images/<stem>.png + elsewhere/<stem>_fix.png (names no pairing rule would find)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "fixes").mkdir()
    h, w = size
    cases = []
    for i in range(n):
        img = (np.array([200, 150, 130]) + rng.integers(-15, 15, (h, w, 3))).clip(0, 255).astype(np.uint8)
        m = np.zeros((h, w), np.uint8)
        cv2.circle(m, (w // 2 + i, h // 2), min(h, w) // 4, 255, -1)
        img[m > 0] = (90, 50, 40)
        image, mask = root / "images" / f"c{i}.png", root / "fixes" / f"c{i}_fix.png"
        cv2.imwrite(str(image), img[:, :, ::-1])
        cv2.imwrite(str(mask), m)
        cases.append(Case(image=image, ground_truth=mask, stem=f"c{i}"))
    return cases


def test_load_cases_decodes_the_given_pairs_in_order(tmp_path):
    cases = _pairs(tmp_path, 3)
    pack = load_cases(list(reversed(cases)), 32, full_masks=True, source="corrections")
    assert pack.stems == ["c2", "c1", "c0"] and pack.size == 32 and pack.source == "corrections"
    assert pack.images.shape == (3, 32, 32, 3) and pack.masks.shape == (3, 32, 32)
    assert pack.full_masks is not None and pack.full_masks[0].shape == (40, 48)
    dark = pack.images[..., 0] < 140
    assert (dark == pack.masks).mean() > 0.95


def test_load_folder_gives_the_same_pack_as_load_cases(tmp_path):
    cases = _pairs(tmp_path, 2)
    (tmp_path / "masks").mkdir()
    for c in cases:  # the folder layout of the same pairs
        (tmp_path / "masks" / f"{c.stem}.png").write_bytes(c.ground_truth.read_bytes())
    a = load_folder(tmp_path, 32)
    b = load_cases(cases, 32)
    assert a.stems == b.stems
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)


def test_a_bad_pair_raises_naming_the_file_or_is_collected(tmp_path):
    cases = _pairs(tmp_path, 3)
    png = cases[1].ground_truth.read_bytes()
    cases[1].ground_truth.write_bytes(png[: len(png) // 2])  # header intact, data cut off
    cv2.imwrite(str(cases[2].ground_truth), np.zeros((10, 10), np.uint8))  # wrong size
    with pytest.raises((DataError, ImageReadError)) as err:
        load_cases(cases, 32)
    assert "c1_fix.png" in str(err.value) or "c2_fix.png" in str(err.value)
    errors: list = []
    pack = load_cases(cases, 32, full_masks=True, errors=errors)
    assert pack.stems == ["c0"] and len(pack.full_masks) == 1
    assert [c.stem for c, _ in errors] == ["c1", "c2"]
    assert "c1_fix.png" in errors[0][1] and "10x10" in errors[1][1]


def test_a_case_without_a_mask_is_refused(tmp_path):
    case = _pairs(tmp_path, 1)[0]
    with pytest.raises(DataError, match="no mask"):
        load_cases([Case(case.image, None, case.stem)], 32)


def test_the_pack_round_trips_through_an_atomic_file(tmp_path):
    pack = load_cases(_pairs(tmp_path, 2), 32, full_masks=True)
    out = save_pack(pack, tmp_path / "training" / "corrections-32.npz")
    back = load_pack(out)
    assert back.stems == pack.stems and np.array_equal(back.masks, pack.masks)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".dermaseg-tmp-")]

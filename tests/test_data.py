"""Augmentation and the training-data pipeline (ml/augment.py, ml/data.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dermaseg_app.ml.augment import AugmentConfig, adjust_gamma, apply_clahe, augment_pair, hflip, vflip
from dermaseg_app.ml.data import (
    DataError,
    Pack,
    cached_pack,
    load_folder,
    load_pack,
    make_batch,
    plan_epoch,
    save_pack,
)


def _pair(h: int = 24, w: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    img = rng.integers(60, 200, (h, w, 3)).astype(np.uint8)
    mask = np.zeros((h, w), bool)
    mask[2:9, 3:7] = True  # off-centre, so every flip moves it
    img[mask] = (10, 20, 30)
    return img, mask


def write_folder(root: Path, n: int, size: tuple[int, int] = (40, 48), seed: int = 0) -> Path:
    """images/<stem>.png + masks/<stem>.png with a dark disc lesion on skin-coloured noise."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    h, w = size
    for i in range(n):
        img = (np.array([200, 150, 130]) + rng.integers(-15, 15, (h, w, 3))).clip(0, 255).astype(np.uint8)
        m = np.zeros((h, w), np.uint8)
        cv2.circle(m, (int(rng.integers(w // 3, 2 * w // 3)), int(rng.integers(h // 3, 2 * h // 3))),
                   int(rng.integers(min(h, w) // 6, min(h, w) // 3)), 255, -1)
        img[m > 0] = (90, 50, 40)
        cv2.imwrite(str(root / "images" / f"case{i:02d}.png"), img[:, :, ::-1])
        cv2.imwrite(str(root / "masks" / f"case{i:02d}.png"), m)
    return root


# ------------------------------------------------------------------ augmentation

def test_flips_move_image_and_mask_together_and_are_involutions() -> None:
    img, mask = _pair()
    for flip in (hflip, vflip):
        fi, fm = flip(img, mask)
        assert fi.shape == img.shape and fi.dtype == np.uint8 and fm.dtype == mask.dtype
        assert not np.array_equal(fm, mask)
        # the lesion colour is still exactly where the mask is
        assert np.all(fi[fm] == (10, 20, 30))
        back_i, back_m = flip(fi, fm)
        assert np.array_equal(back_i, img) and np.array_equal(back_m, mask)
    assert np.array_equal(hflip(img, mask)[1], mask[:, ::-1])
    assert np.array_equal(vflip(img, mask)[1], mask[::-1])


def test_gamma_keeps_dtype_and_shape_and_changes_brightness() -> None:
    img, _ = _pair()
    bright, dark, same = adjust_gamma(img, 0.5), adjust_gamma(img, 1.5), adjust_gamma(img, 1.0)
    for out in (bright, dark, same):
        assert out.dtype == np.uint8 and out.shape == img.shape
    assert np.array_equal(same, img)
    assert bright.mean() > img.mean() > dark.mean()
    assert adjust_gamma(np.array([[[0, 255, 64]]], np.uint8), 0.5)[0, 0].tolist() == [0, 255, 128]
    with pytest.raises(ValueError):
        adjust_gamma(img, 0.0)


def test_clahe_keeps_dtype_and_shape_and_raises_contrast() -> None:
    flat = np.full((32, 32, 3), 120, np.uint8)
    flat[:, 16:] = 130  # a low-contrast edge
    out = apply_clahe(flat, 2.0)
    assert out.dtype == np.uint8 and out.shape == flat.shape
    assert out[:, 16:].mean() - out[:, :16].mean() > 10  # the edge got stronger
    with pytest.raises(TypeError):
        apply_clahe(flat.astype(np.float32), 1.0)


def test_photometric_augmentation_leaves_the_mask_untouched() -> None:
    img, mask = _pair()
    cfg = AugmentConfig(hflip=False, vflip=False, gammas=(0.5, 1.5), clahe_probability=1.0)
    for seed in range(5):
        out_i, out_m = augment_pair(img, mask, np.random.default_rng(seed), cfg)
        assert out_m is mask or np.array_equal(out_m, mask)
        assert out_i.dtype == np.uint8 and out_i.shape == img.shape
        assert not np.array_equal(out_i, img)


def test_augment_pair_is_repeatable_and_geometry_consistent() -> None:
    img, mask = _pair()
    cfg = AugmentConfig(gammas=(1.0,), clahe_probability=0.0)  # flips only
    seen = set()
    for seed in range(12):
        a = augment_pair(img, mask, np.random.default_rng(seed), cfg)
        b = augment_pair(img, mask, np.random.default_rng(seed), cfg)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
        assert np.all(a[0][a[1]] == (10, 20, 30)) and a[1].sum() == mask.sum()
        seen.add(a[1].tobytes())
    assert len(seen) == 4  # identity, h, v and both flips all occur


# ------------------------------------------------------------------ packs

def test_load_folder_resizes_pairs(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d", 5)
    pack = load_folder(root, 32, full_masks=True)
    assert len(pack) == 5 and pack.size == 32
    assert pack.images.shape == (5, 32, 32, 3) and pack.images.dtype == np.uint8
    assert pack.masks.shape == (5, 32, 32) and pack.masks.dtype == bool
    assert pack.full_masks is not None and pack.full_masks[0].shape == (40, 48)
    # the resized mask covers the dark pixels of the resized image
    dark = pack.images[..., 0] < 140
    assert (dark == pack.masks).mean() > 0.95
    assert pack.stems == [f"case{i:02d}" for i in range(5)]


def test_pack_file_round_trip_raw_and_jpeg(tmp_path: Path) -> None:
    pack = load_folder(write_folder(tmp_path / "d", 4), 32, full_masks=True)
    raw = load_pack(save_pack(pack, tmp_path / "raw.npz"))
    assert np.array_equal(raw.images, pack.images) and np.array_equal(raw.masks, pack.masks)
    assert raw.stems == pack.stems
    assert all(np.array_equal(a, b) for a, b in zip(raw.full_masks, pack.full_masks, strict=True))
    jpg = load_pack(save_pack(pack, tmp_path / "jpg.npz", encoding="jpeg"))
    assert np.array_equal(jpg.masks, pack.masks)
    assert np.abs(jpg.images.astype(int) - pack.images.astype(int)).mean() < 4


def test_cached_pack_reuses_and_rebuilds_on_change(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d", 3)
    cache = tmp_path / "cache"
    first = cached_pack(root, 32, cache_dir=cache)
    files = list(cache.glob("*.npz"))
    assert len(files) == 1
    again = cached_pack(root, 32, cache_dir=cache)
    assert np.array_equal(first.images, again.images)
    assert list(cache.glob("*.npz")) == files
    write_folder(tmp_path / "d2", 4, seed=5)
    (root / "images" / "case03.png").write_bytes((tmp_path / "d2" / "images" / "case03.png").read_bytes())
    (root / "masks" / "case03.png").write_bytes((tmp_path / "d2" / "masks" / "case03.png").read_bytes())
    grown = cached_pack(root, 32, cache_dir=cache)
    assert len(grown) == 4 and len(list(cache.glob("*.npz"))) == 2
    assert len(cached_pack(files[0], 32)) == 3  # a pack file is loaded as it is


def test_folder_without_masks_is_a_clear_error(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d", 2)
    for m in (root / "masks").iterdir():
        m.unlink()
    with pytest.raises(DataError, match="no image with a ground-truth mask"):
        load_folder(root, 32)
    with pytest.raises(DataError, match="no such"):
        load_folder(tmp_path / "missing", 32)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a pack")
    with pytest.raises(DataError, match="bad.npz"):
        load_pack(bad)


# ------------------------------------------------------------------ batches

def test_plan_epoch_without_replay_covers_every_sample_once() -> None:
    batches = plan_epoch(21, 8, np.random.default_rng(0))
    seen = [it.index for b in batches for it in b]
    assert sorted(seen) == list(range(21)) and all(it.source == 0 for b in batches for it in b)
    assert [len(b) for b in batches] == [8, 8, 5]
    assert len(plan_epoch(17, 8, np.random.default_rng(0))) == 2  # a last batch of one is dropped


def test_plan_epoch_mixes_replay_in_the_given_share() -> None:
    batches = plan_epoch(50, 8, np.random.default_rng(1), n_replay=300, replay_share=0.5)
    assert len(batches) == 13  # 50 new samples, 4 per batch
    for b in batches:
        assert sum(it.source == 1 for it in b) == 4
    new = [it.index for b in batches for it in b if it.source == 0]
    assert sorted(new) == list(range(50))
    replayed = [it.index for b in batches for it in b if it.source == 1]
    assert len(set(replayed)) == len(replayed)  # no repeats while the source lasts
    quarter = plan_epoch(50, 8, np.random.default_rng(1), n_replay=300, replay_share=0.25)
    assert all(sum(it.source == 1 for it in b) == 2 for b in quarter)


def test_make_batch_shapes_and_ranges() -> None:
    img, mask = _pair(32, 32)
    pack = Pack(images=np.stack([img, img]), masks=np.stack([mask, mask]), stems=["a", "b"], size=32)
    items = plan_epoch(2, 2, np.random.default_rng(0))[0]
    x, y = make_batch(items, [pack], np.random.default_rng(0))
    assert x.shape == (2, 3, 32, 32) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert y.shape == (2, 1, 32, 32) and set(np.unique(y)) <= {0.0, 1.0}
    x0, y0 = make_batch(items, [pack], None)
    assert np.allclose(x0[0], img.transpose(2, 0, 1) / 255.0) and y0[0, 0].sum() == mask.sum()

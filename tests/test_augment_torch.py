"""The batched torch augmentation (ml/augment_torch.py) against the OpenCV path (ml/augment.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import SAMPLES

from dermaseg_app.ml import augment_torch as at
from dermaseg_app.ml.augment import AugmentConfig, adjust_gamma, apply_clahe
from dermaseg_app.ml.data import BatchItem, Pack, make_batch

NO_AUG = AugmentConfig(hflip=False, vflip=False, gammas=(1.0,), clahe_probability=0.0)
NO_CLAHE = AugmentConfig(clahe_probability=0.0)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batch(n: int = 4, size: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n x size x size x 3 uint8 images with an off-centre lesion of a known colour, bool masks."""
    rng = np.random.default_rng(seed)
    imgs = rng.integers(60, 200, (n, size, size, 3)).astype(np.uint8)
    masks = np.zeros((n, size, size), bool)
    masks[:, 2:9, 3:7] = True
    imgs[masks] = (10, 20, 30)
    return imgs, masks


def _t(imgs: np.ndarray, masks: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(masks)[:, None]


@pytest.fixture(scope="module")
def samples_128() -> list[np.ndarray]:
    from dermaseg_app.core.imageio import read_image
    from dermaseg_app.ml.preprocessing import resize_rgb

    paths = sorted(Path(SAMPLES).glob("*.jpg"))
    assert len(paths) >= 4
    return [resize_rgb(read_image(p), 128) for p in paths]


def _params(n: int, **kw: object) -> at.AugmentParams:
    p = at.AugmentParams.identity(n)
    for k, v in kw.items():
        setattr(p, k, torch.as_tensor(v))
    return p


def test_flips_move_image_and_mask_together() -> None:
    imgs, masks = _batch(4)
    x, y = _t(imgs, masks)
    p = _params(4, hflip=[True, False, True, False], vflip=[False, True, True, False])
    ox, oy = at.augment_batch(x, y, p, AugmentConfig(gammas=(1.0,), clahe_probability=0.0))
    assert ox.dtype == torch.float32 and oy.dtype == torch.float32 and oy.shape == (4, 1, 24, 24)
    lesion = torch.tensor([10, 20, 30], dtype=torch.float32)[:, None] * np.float32(1 / 255)
    for j in range(4):
        m = oy[j, 0].bool()
        assert int(m.sum()) == int(masks[j].sum())
        assert torch.equal(ox[j][:, m], lesion.expand(3, int(m.sum())))  # lesion colour where the mask is
    ref_x = x.float() / 255
    assert torch.equal(oy[0], y[0].float().flip(-1)) and torch.equal(oy[1], y[1].float().flip(-2))
    assert torch.equal(oy[2], y[2].float().flip(-1).flip(-2)) and torch.equal(oy[3], y[3].float())
    assert torch.allclose(ox[0], ref_x[0].flip(-1)) and torch.allclose(ox[3], ref_x[3])


def test_gamma_is_x_to_the_gamma_and_quantized_it_is_opencvs_lut() -> None:
    imgs, masks = _batch(3)
    x, y = _t(imgs, masks)
    cfg = AugmentConfig(hflip=False, vflip=False, clahe_probability=0.0)
    p = _params(3, gamma=torch.tensor([0.5, 1.0, 1.5], dtype=torch.float64))
    xf = x.double() / 255
    ox, oy = at.augment_batch(xf, y, p, cfg, quantize=False)
    assert ox.dtype == torch.float64
    for j, g in enumerate((0.5, 1.0, 1.5)):
        assert torch.allclose(ox[j], xf[j] ** g, rtol=0, atol=1e-12)
    assert torch.equal(oy, y.double())  # photometric: the mask is untouched
    q, _ = at.augment_batch(x, y, p, cfg)  # uint8 in, quantised: exactly the uint8 OpenCV LUT
    for j, g in enumerate((0.5, 1.0, 1.5)):
        ref = adjust_gamma(imgs[j], g).transpose(2, 0, 1).astype(np.float32) * np.float32(1 / 255)
        assert np.array_equal(q[j].numpy(), ref)


def test_clahe_levels_equal_opencv_on_the_same_l_channel(samples_128: list[np.ndarray]) -> None:
    """Given OpenCV's own 8-bit L, the torch CLAHE (histograms, clipping, redistribution, LUTs,
    bilinear interpolation) gives exactly cv2.createCLAHE's levels, also when the tiles do not
    divide the image (reflect padding)."""
    l8 = np.stack([cv2.cvtColor(s, cv2.COLOR_RGB2LAB)[:, :, 0] for s in samples_128[:4]])
    for shape in ((128, 128), (50, 37)):
        levels = l8 if shape == (128, 128) else np.stack([cv2.resize(v, shape[::-1]) for v in l8])
        for clip, tiles in ((1.0, 8), (1.7, 8), (2.0, 8), (6.5, 4)):
            ours = at.clahe_levels(torch.from_numpy(levels.astype(np.int64)),
                                   torch.full((len(levels),), clip, dtype=torch.float64), tiles)
            ref = np.stack([cv2.createCLAHE(clip, (tiles, tiles)).apply(np.ascontiguousarray(v)) for v in levels])
            assert np.array_equal(ours.numpy(), ref), (shape, clip, tiles)


def test_clahe_rgb_is_close_to_opencv_on_real_samples(samples_128: list[np.ndarray]) -> None:
    """The whole CLAHE (float sRGB -> Lab, CLAHE on L, back) against ml.augment.apply_clahe.

    OpenCV's 8-bit RGB -> Lab is fixed point: its L level differs by one from the float formula on
    about 13 % of these pixels, and CLAHE at a clip limit of 1 count per bin reacts to that.
    Measured on the 8 bundled samples at 128 px, clips 1.0-1.99: mean |L difference| 0.59 (per
    image 0.45-0.76) 8-bit levels, mean |RGB difference| 0.58-0.94. Asserted: < 1.0 per image.
    """
    x = torch.from_numpy(np.stack(samples_128)).permute(0, 3, 1, 2).float() / 255
    for clip in (1.0, 1.6):
        out = at.clahe_rgb(x, torch.full((len(samples_128),), clip, dtype=torch.float64), 8)
        ours = np.round(out.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
        ref = np.stack([apply_clahe(s, clip, 8) for s in samples_128])
        ours_l = np.stack([cv2.cvtColor(o, cv2.COLOR_RGB2LAB)[:, :, 0] for o in ours]).astype(float)
        ref_l = np.stack([cv2.cvtColor(r, cv2.COLOR_RGB2LAB)[:, :, 0] for r in ref]).astype(float)
        per_image = np.abs(ours_l - ref_l).mean(axis=(1, 2))
        assert per_image.max() < 1.0, per_image
        assert np.abs(ours.astype(float) - ref).mean() < 1.2
        # and it is an equalisation: the contrast of L went up as OpenCV's did
        base_l = np.stack([cv2.cvtColor(s, cv2.COLOR_RGB2LAB)[:, :, 0] for s in samples_128]).astype(float)
        assert ours_l.std() > base_l.std()


def test_lab_round_trip() -> None:
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(at.lab_to_rgb(at.rgb_to_lab(x)), x, atol=5e-5)  # 6-digit matrices: ~1e-5
    lab = at.rgb_to_lab(torch.tensor([[[[1.0]], [[1.0]], [[1.0]]]], dtype=torch.float64))
    assert lab[0, 0].item() == pytest.approx(100.0, abs=1e-3) and abs(lab[0, 1].item()) < 1e-2


def test_no_op_settings_give_back_the_input() -> None:
    imgs, masks = _batch(2)
    x, y = _t(imgs, masks)
    for params, cfg in ((at.AugmentParams.identity(2), AugmentConfig()),
                        (at.draw_params(2, np.random.default_rng(0), NO_AUG), NO_AUG)):
        ox, oy = at.augment_batch(x, y, params, cfg)
        assert np.array_equal(ox.numpy(), imgs.transpose(0, 3, 1, 2).astype(np.float32) * np.float32(1 / 255))
        assert torch.equal(oy, y.float())
        xf = torch.rand(2, 3, 24, 24, dtype=torch.float64)
        fx, _ = at.augment_batch(xf, y, params, cfg, quantize=False)
        assert torch.equal(fx, xf)


def test_numpy_draws_are_the_cpu_paths_decisions(samples_128: list[np.ndarray]) -> None:
    """Seeded alike, the torch path makes augment_pair's decisions: without CLAHE the batch is
    bit-identical to ml.data.make_batch's, with CLAHE it differs only where CLAHE ran (and there
    by about a level on real images)."""
    imgs = np.stack(samples_128[:8])
    masks = np.zeros(imgs.shape[:3], bool)
    masks[:, 10:50, 20:40] = True
    pack = Pack(images=imgs, masks=masks, stems=[f"s{i}" for i in range(8)], size=128)
    items = [BatchItem(0, i) for i in (5, 1, 7, 0, 2, 2, 6, 3)]
    idx = torch.tensor([it.index for it in items])
    x, y = _t(imgs, masks)
    for seed in range(3):
        ref_x, ref_y = make_batch(items, [pack], np.random.default_rng([seed, 2]), NO_CLAHE)
        ox, oy = at.augment(x[idx], y[idx], np.random.default_rng([seed, 2]), NO_CLAHE)
        assert np.array_equal(ox.numpy(), ref_x) and np.array_equal(oy.numpy(), ref_y)
    cfg = AugmentConfig()
    ref_x, ref_y = make_batch(items, [pack], np.random.default_rng(11), cfg)
    p = at.draw_params(8, np.random.default_rng(11), cfg)
    assert 0 < int(p.clahe.sum()) < 8
    ox, oy = at.augment_batch(x[idx], y[idx], p, cfg)
    assert np.array_equal(oy.numpy(), ref_y)
    for j in range(8):
        if p.clahe[j]:
            assert np.abs(ox[j].numpy() - ref_x[j]).mean() * 255 < 1.5
        else:
            assert np.array_equal(ox[j].numpy(), ref_x[j])


def test_repeatable_with_the_same_seed_and_the_distribution() -> None:
    imgs, masks = _batch(8, size=32)
    x, y = _t(imgs, masks)
    a = at.augment(x, y, torch.Generator().manual_seed(5))
    b = at.augment(x, y, torch.Generator().manual_seed(5))
    c = at.augment(x, y, torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    for rng in (torch.Generator().manual_seed(0), np.random.default_rng(0)):
        p = at.draw_params(4000, rng, AugmentConfig())
        for flags in (p.hflip, p.vflip, p.clahe):
            assert 0.46 < flags.double().mean().item() < 0.54
        for g in (0.5, 1.0, 1.5):
            assert 0.3 < (p.gamma == g).double().mean().item() < 0.37
        assert 1.0 <= p.clip.min().item() and p.clip.max().item() < 2.0
    p = at.draw_params(100, torch.Generator().manual_seed(0), NO_AUG)
    assert not p.hflip.any() and not p.vflip.any() and not p.clahe.any() and (p.gamma == 1.0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [1, 8])
def test_dtypes_batch_sizes_and_device(dtype: torch.dtype, batch: int) -> None:
    imgs, masks = _batch(batch, size=32, seed=batch)
    x, y = _t(imgs, masks)
    xf = x.to(dtype) / 255
    p = at.draw_params(batch, torch.Generator().manual_seed(1), AugmentConfig(clahe_probability=1.0))
    ox, oy = at.augment_batch(xf, y, p, AugmentConfig(clahe_probability=1.0))
    assert ox.dtype == dtype and oy.dtype == dtype and ox.device == xf.device and oy.device == xf.device
    assert ox.shape == (batch, 3, 32, 32) and oy.shape == (batch, 1, 32, 32)
    assert float(ox.min()) >= 0.0 and float(ox.max()) <= 1.0 and torch.isfinite(ox).all()
    assert float((ox * 255 - torch.round(ox * 255)).abs().max()) < 1e-4  # quantised to 8-bit levels
    # uint8 in, float32 out; the same decisions give the same images whatever the input dtype
    o8, _ = at.augment_batch(x, y, p, AugmentConfig(clahe_probability=1.0))
    assert o8.dtype == torch.float32 and torch.allclose(o8.double(), ox.double(), atol=1.01 / 255)


def test_bad_shapes_are_clear_errors() -> None:
    imgs, masks = _batch(2)
    x, y = _t(imgs, masks)
    with pytest.raises(ValueError, match="images must be"):
        at.augment_batch(x[:, :2], y, at.AugmentParams.identity(2))
    with pytest.raises(ValueError, match="masks must be"):
        at.augment_batch(x, y[:1], at.AugmentParams.identity(2))
    with pytest.raises(ValueError, match="parameters for a batch"):
        at.augment_batch(x, y, at.AugmentParams.identity(3))
    with pytest.raises(TypeError, match="generator"):
        at.draw_params(2, 0)  # type: ignore[arg-type]


def test_everything_stays_on_the_inputs_device() -> None:
    """On the "meta" device (shapes only) any tensor the code made on the CPU and mixed with the
    batch would raise: the whole path, CLAHE included, runs where its input is."""
    x = torch.empty(8, 3, 128, 128, dtype=torch.uint8, device="meta")
    y = torch.empty(8, 1, 128, 128, dtype=torch.bool, device="meta")
    cfg = AugmentConfig(clahe_probability=1.0)
    for images, quantize in ((x, True), (x.float(), False)):
        ox, oy = at.augment_batch(images, y, at.draw_params(8, np.random.default_rng(0), cfg), cfg, quantize)
        assert ox.device.type == "meta" and oy.device.type == "meta" and ox.shape == (8, 3, 128, 128)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run by the GPU session)")
def test_cuda_gives_the_cpus_augmentation(samples_128: list[np.ndarray]) -> None:
    """The same decisions on CUDA and on the CPU: flips, gamma and masks identical, CLAHE within a
    level (GPU transcendental functions may round a few values the other way)."""
    x = torch.from_numpy(np.stack(samples_128)).permute(0, 3, 1, 2).contiguous()
    y = torch.zeros(len(samples_128), 1, 128, 128, dtype=torch.bool)
    y[:, :, 10:50, 20:40] = True
    for cfg in (NO_CLAHE, AugmentConfig(clahe_probability=1.0)):
        p = at.draw_params(len(samples_128), np.random.default_rng(4), cfg)
        cx, cy = at.augment_batch(x, y, p, cfg)
        gx, gy = at.augment_batch(x.cuda(), y.cuda(), p, cfg)
        assert gx.device.type == "cuda" and torch.equal(gy.cpu(), cy)
        diff = (gx.cpu() - cx).abs() * 255
        if cfg.clahe_probability == 0:
            assert torch.equal(gx.cpu(), cx)
        else:
            assert float(diff.mean()) < 0.05 and float(diff.max()) <= 1.01

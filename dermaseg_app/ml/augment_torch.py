"""The paper's online augmentation on batched torch tensors, on any device (the GPU data path).

The same operations and distribution as :mod:`dermaseg_app.ml.augment` (the OpenCV path that
prepares batches on the CPU): horizontal / vertical flips of the image and its mask together,
gamma from ``AugmentConfig.gammas`` and CLAHE on the lightness (L of CIELAB) with a clip limit
drawn in ``AugmentConfig.clahe_clip`` with probability ``clahe_probability`` (image only).
Everything is vectorised over the batch (no Python loop per image or per tile) and stays on the
input's device, so a training step can build and augment its batch where the network runs.

Randomness: :func:`draw_params` draws one :class:`AugmentParams` per batch, either from a
``numpy.random.Generator`` -- in exactly the order :func:`ml.augment.augment_pair` draws them,
sample after sample, so a numpy generator seeded as the CPU path seeds it makes the *same*
decisions -- or from a ``torch.Generator`` (vectorised draws). :func:`augment_batch` applies
them; :func:`augment` does both.

CLAHE follows OpenCV's ``createCLAHE(clip, (t, t)).apply`` on the 8-bit L channel: histograms
of 256 bins per tile (the image padded bottom/right by reflection when the tiles do not divide
it), the clip limit ``max(int(clip * tile_pixels / 256), 1)``, the excess spread evenly with
the remainder on every ``256 // remainder``-th bin, the LUT ``round(cdf * 255 / tile_pixels)``,
and bilinear interpolation between the four nearest tiles' LUTs. RGB <-> Lab use the float
sRGB / D65 formulas (OpenCV's 8-bit conversion uses fixed-point tables: the L channel differs
by at most a level here and there, see tests/test_augment_torch.py for the measured gap).

Output: float images in [0, 1] (as ``ml.preprocessing`` gives them) and float masks (0/1).
With ``quantize=True`` (the default) every photometric step is rounded to 8-bit levels as the
uint8 OpenCV path is, so flips and gamma give exactly the CPU path's values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dermaseg_app.ml.augment import AugmentConfig

HIST_BINS = 256

# sRGB (D65) <-> XYZ, the constants OpenCV uses.
_RGB2XYZ = ((0.412453, 0.357580, 0.180423),
            (0.212671, 0.715160, 0.072169),
            (0.019334, 0.119193, 0.950227))
_XYZ2RGB = ((3.240479, -1.53715, -0.498535),
            (-0.969256, 1.875991, 0.041556),
            (0.055648, -0.204043, 1.057311))
_WHITE = (0.950456, 1.0, 1.088754)
_LAB_T = 0.008856
_LAB_K = 903.3


@dataclass
class AugmentParams:
    """One batch's random decisions, one entry per sample (tensors on the CPU or any device)."""

    hflip: torch.Tensor      # (B,) bool
    vflip: torch.Tensor      # (B,) bool
    gamma: torch.Tensor      # (B,) float64
    clahe: torch.Tensor      # (B,) bool
    clip: torch.Tensor       # (B,) float64, the CLAHE clip limit (used where clahe is True)

    def __len__(self) -> int:
        return int(self.hflip.shape[0])

    def to(self, device: torch.device | str) -> AugmentParams:
        return AugmentParams(*(t.to(device, non_blocking=True) for t in
                               (self.hflip, self.vflip, self.gamma, self.clahe, self.clip)))

    @staticmethod
    def identity(n: int) -> AugmentParams:
        """Parameters that change nothing."""
        no = torch.zeros(n, dtype=torch.bool)
        return AugmentParams(no, no.clone(), torch.ones(n, dtype=torch.float64), no.clone(),
                             torch.ones(n, dtype=torch.float64))


def draw_params(n: int, rng: np.random.Generator | torch.Generator,
                config: AugmentConfig = AugmentConfig()) -> AugmentParams:
    """Draw the augmentation of ``n`` samples.

    A numpy generator is consumed exactly as ``ml.augment.augment_pair`` consumes it for ``n``
    samples in a row (four uniforms, a gamma index when there are gammas, a clip limit), so the
    decisions equal the CPU path's for the same seed. A torch generator draws the same
    distribution vectorised. Disabled operations come out as no-ops.
    """
    gammas = tuple(float(g) for g in config.gammas)
    if isinstance(rng, np.random.Generator):
        u = np.empty((n, 4))
        gi = np.full(n, -1, np.int64)
        clip = np.empty(n)
        for j in range(n):
            u[j] = rng.random(4)
            if gammas:
                gi[j] = int(rng.integers(len(gammas)))
            clip[j] = float(rng.uniform(config.clahe_clip[0], config.clahe_clip[1]))
        ut = torch.from_numpy(u)
        git = torch.from_numpy(gi)
        clipt = torch.from_numpy(clip)
    elif isinstance(rng, torch.Generator):
        ut = torch.rand((n, 4), generator=rng, dtype=torch.float64, device=rng.device)
        git = (torch.randint(len(gammas), (n,), generator=rng, device=rng.device) if gammas
               else torch.full((n,), -1, dtype=torch.int64, device=rng.device))
        lo, hi = config.clahe_clip
        clipt = lo + (hi - lo) * torch.rand(n, generator=rng, dtype=torch.float64, device=rng.device)
    else:
        raise TypeError(f"draw_params needs a numpy or torch generator, got {type(rng).__name__}")
    table = torch.tensor(gammas or (1.0,), dtype=torch.float64, device=ut.device)
    gamma = torch.where(git >= 0, table[git.clamp(min=0)], torch.ones_like(table[:1]).expand(n))
    return AugmentParams(
        hflip=(ut[:, 0] < 0.5) & bool(config.hflip),
        vflip=(ut[:, 1] < 0.5) & bool(config.vflip),
        gamma=gamma,
        clahe=ut[:, 2] < config.clahe_probability,
        clip=clipt,
    )


# ============================================================================ colour

def _srgb_to_linear(c: torch.Tensor) -> torch.Tensor:
    return torch.where(c <= 0.04045, c / 12.92, ((c.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(c: torch.Tensor) -> torch.Tensor:
    c = c.clamp(0.0, 1.0)
    return torch.where(c <= 0.0031308, 12.92 * c, 1.055 * c.clamp(min=0.0031308) ** (1.0 / 2.4) - 0.055)


def _mix(m: tuple[tuple[float, ...], ...], c: torch.Tensor) -> torch.Tensor:
    """Apply a 3x3 colour matrix to (B, 3, H, W)."""
    r, g, b = c[:, 0], c[:, 1], c[:, 2]
    return torch.stack([m[i][0] * r + m[i][1] * g + m[i][2] * b for i in range(3)], dim=1)


def _f(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t > _LAB_T, t.clamp(min=_LAB_T) ** (1.0 / 3.0), 7.787 * t + 16.0 / 116.0)


def _f_inv(f: torch.Tensor) -> torch.Tensor:
    return torch.where(f > 0.206893, f * f * f, (f - 16.0 / 116.0) / 7.787)


def _levels_to_linear(levels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """8-bit levels (integer-valued tensor) -> linear RGB through a 256-entry table (the float
    formula evaluated in float64 once per level instead of a power per pixel)."""
    table = _srgb_to_linear(torch.arange(256, dtype=torch.float64, device=levels.device) / 255.0).to(dtype)
    return table[levels.long()]


def rgb_to_lab(rgb: torch.Tensor, levels: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 3, H, W) sRGB in [0, 1] -> CIELAB (L in [0, 100], a, b), D65, float formulas.
    ``levels``: the same image as 8-bit levels when it is on them (a faster path, same result)."""
    linear = _srgb_to_linear(rgb) if levels is None else _levels_to_linear(levels, rgb.dtype)
    xyz = _mix(_RGB2XYZ, linear)
    fx = _f(xyz[:, 0] / _WHITE[0])
    fy = _f(xyz[:, 1])
    fz = _f(xyz[:, 2] / _WHITE[2])
    y = xyz[:, 1]
    L = torch.where(y > _LAB_T, 116.0 * fy - 16.0, _LAB_K * y)
    return torch.stack([L, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIELAB (B, 3, H, W) -> sRGB in [0, 1] (clipped), the inverse of :func:`rgb_to_lab`."""
    L, a, b = lab[:, 0], lab[:, 1], lab[:, 2]
    low = L <= _LAB_T * _LAB_K
    fl = (L + 16.0) / 116.0
    y = torch.where(low, L / _LAB_K, fl * fl * fl)
    fy = torch.where(low, 7.787 * y + 16.0 / 116.0, (L + 16.0) / 116.0)
    x = _f_inv(a / 500.0 + fy) * _WHITE[0]
    z = _f_inv(fy - b / 200.0) * _WHITE[2]
    return _linear_to_srgb(_mix(_XYZ2RGB, torch.stack([x, y, z], dim=1)))


# ============================================================================ CLAHE

def clahe_lut(levels: torch.Tensor, clip: torch.Tensor, tiles: int) -> torch.Tensor:
    """Per-tile CLAHE look-up tables of 8-bit levels.

    ``levels``: (B, H, W) integer levels 0..255 (any integer or float dtype holding integers);
    ``clip``: (B,) clip limits (OpenCV's ``clipLimit``). Returns (B, tiles, tiles, 256) float
    LUTs (values 0..255) as OpenCV's ``CLAHE_CalcLut_Body`` computes them.
    """
    bsz, h, w = levels.shape
    lv = levels.long()
    pad_h = (tiles - h % tiles) if h % tiles else 0
    pad_w = (tiles - w % tiles) if w % tiles else 0
    if pad_h or pad_w:  # OpenCV pads bottom/right with BORDER_REFLECT_101 (torch's "reflect")
        lv = torch.nn.functional.pad(lv[:, None].float(), (0, pad_w, 0, pad_h), mode="reflect")[:, 0].long()
    th, tw = (h + pad_h) // tiles, (w + pad_w) // tiles
    tile_total = th * tw
    # bins: (b, ty, tx, level) flattened; pixels grouped by tile
    ty = torch.arange(h + pad_h, device=lv.device) // th
    tx = torch.arange(w + pad_w, device=lv.device) // tw
    tile_index = (ty[:, None] * tiles + tx[None, :])                         # (H', W')
    flat = ((torch.arange(bsz, device=lv.device)[:, None, None] * (tiles * tiles) + tile_index) * HIST_BINS
            + lv).reshape(-1)
    hist = torch.zeros(bsz * tiles * tiles * HIST_BINS, dtype=torch.float32, device=lv.device)
    hist.scatter_add_(0, flat, torch.ones_like(flat, dtype=torch.float32))
    hist = hist.view(bsz, tiles, tiles, HIST_BINS)
    # clip limit in counts, as OpenCV: max(int(clip * tile_total / 256), 1)
    limit = torch.floor(clip.to(torch.float64, copy=False).to(lv.device) * tile_total / HIST_BINS)
    limit = limit.clamp(min=1).to(torch.float32)[:, None, None, None]
    excess = (hist - limit).clamp(min=0).sum(-1, keepdim=True)
    hist = torch.minimum(hist, limit)
    batch = torch.div(excess, HIST_BINS, rounding_mode="floor")
    residual = excess - batch * HIST_BINS
    hist = hist + batch
    step = torch.div(HIST_BINS, residual.clamp(min=1), rounding_mode="floor").clamp(min=1)
    i = torch.arange(HIST_BINS, device=lv.device, dtype=torch.float32)
    extra = (torch.remainder(i, step) == 0) & (torch.div(i, step, rounding_mode="floor") < residual)
    hist = hist + extra.to(hist.dtype)
    scale = np.float32((HIST_BINS - 1) / tile_total)
    return torch.round(torch.cumsum(hist, dim=-1) * float(scale)).clamp(0, 255)


def _interp_axis(n: int, tile: int, tiles: int, device: torch.device, dtype: torch.dtype
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tile indices (lower, upper) and the upper weight along one axis, as OpenCV computes them."""
    pos = torch.arange(n, device=device, dtype=torch.float32) * np.float32(1.0 / tile) - 0.5
    lo = torch.floor(pos)
    frac = (pos - lo).to(dtype)
    lo = lo.long()
    return lo.clamp(min=0), (lo + 1).clamp(max=tiles - 1), frac


def clahe_levels(levels: torch.Tensor, clip: torch.Tensor, tiles: int = 8) -> torch.Tensor:
    """CLAHE of (B, H, W) 8-bit levels (integers in 0..255 of any dtype) -> float levels 0..255
    (rounded, as OpenCV's 8-bit output)."""
    bsz, h, w = levels.shape
    lut = clahe_lut(levels, clip, tiles)                                       # (B, T, T, 256)
    th = (h + ((tiles - h % tiles) if h % tiles else 0)) // tiles
    tw = (w + ((tiles - w % tiles) if w % tiles else 0)) // tiles
    y1, y2, ya = _interp_axis(h, th, tiles, levels.device, torch.float32)
    x1, x2, xa = _interp_axis(w, tw, tiles, levels.device, torch.float32)
    lv = levels.long()
    base = torch.arange(bsz, device=levels.device)[:, None, None] * (tiles * tiles)
    flat_lut = lut.reshape(-1)

    def pick(ty: torch.Tensor, tx: torch.Tensor) -> torch.Tensor:
        idx = ((base + ty[None, :, None] * tiles + tx[None, None, :]) * HIST_BINS) + lv
        return flat_lut[idx]

    xa_, xa1 = xa[None, None, :], 1.0 - xa[None, None, :]
    ya_, ya1 = ya[None, :, None], 1.0 - ya[None, :, None]
    res = (pick(y1, x1) * xa1 + pick(y1, x2) * xa_) * ya1 + (pick(y2, x1) * xa1 + pick(y2, x2) * xa_) * ya_
    return torch.round(res).clamp(0, 255)


def clahe_rgb(images: torch.Tensor, clip: torch.Tensor, tiles: int = 8, quantize: bool = True) -> torch.Tensor:
    """CLAHE on the L channel of CIELAB of (B, 3, H, W) float RGB in [0, 1]; a and b kept.

    L is taken to 8-bit levels (L * 255 / 100, rounded) for the histograms, as OpenCV's 8-bit
    Lab does; with ``quantize`` the input is taken to be on 8-bit levels (as the uint8 path's
    images are) and the result is rounded to 8-bit RGB levels.
    """
    lab = rgb_to_lab(images, torch.round(images * 255.0).clamp(0, 255) if quantize else None)
    levels = torch.round(lab[:, 0] * (255.0 / 100.0)).clamp(0, 255)
    new_l = clahe_levels(levels, clip, tiles) * (100.0 / 255.0)
    out = lab_to_rgb(torch.cat([new_l[:, None].to(lab.dtype), lab[:, 1:]], dim=1))
    return _quantize(out, images.dtype) if quantize else out


# ============================================================================ the batch

def _quantize(x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Round [0, 1] values to 8-bit levels, as ``level * dtype(1 / 255)`` (ml.data.make_batch's
    product, so that the values are bit-identical to the uint8 path's)."""
    dtype = dtype or x.dtype
    # a Python scalar is multiplied in the tensor's precision (float32(1 / 255) for float32), and
    # unlike a new 0-d tensor it needs no host-to-device copy
    return torch.round(x * 255.0).to(dtype) * (1.0 / 255.0)


def _per_sample(flags: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return flags.to(like.device).view(-1, *([1] * (like.dim() - 1)))


def to_unit_float(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (0..255) or float ([0, 1]) images -> float ``dtype`` in [0, 1]; uint8 is scaled by
    ``dtype(1 / 255)``, the same product as ``ml.data.make_batch``."""
    if images.dtype == torch.uint8:
        return images.to(dtype) * (1.0 / 255.0)
    if not images.is_floating_point():
        raise TypeError(f"images must be uint8 or float, got {images.dtype}")
    return images.to(dtype)


def augment_batch(
    images: torch.Tensor,
    masks: torch.Tensor,
    params: AugmentParams,
    config: AugmentConfig = AugmentConfig(),
    quantize: bool = True,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply ``params`` to a batch: flips (image and mask), then gamma and CLAHE (image only).

    ``images``: (B, 3, H, W) uint8 (0..255) or float in [0, 1]; ``masks``: (B, 1, H, W) (bool,
    uint8 0/1 or 0/255: non-zero is lesion, or float). Returns float images in [0, 1] (``dtype``; default float32,
    or the input's float dtype) and float masks of the same dtype, on the input's device.
    ``quantize`` rounds each photometric result to 8-bit levels, as the uint8 OpenCV path does.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    if masks.dim() != 4 or masks.shape[1] != 1 or masks.shape[0] != images.shape[0] \
            or masks.shape[2:] != images.shape[2:]:
        raise ValueError(f"masks must be (B, 1, H, W) matching the images {tuple(images.shape)}, "
                         f"got {tuple(masks.shape)}")
    if len(params) != images.shape[0]:
        raise ValueError(f"{len(params)} augmentation parameters for a batch of {images.shape[0]}")
    if dtype is None:
        dtype = images.dtype if images.is_floating_point() else torch.float32
    x = to_unit_float(images, dtype)
    if masks.dtype == torch.bool:
        y = masks.to(dtype)
    elif masks.dtype == torch.uint8:
        y = (masks > 0).to(dtype)
    else:
        y = masks.to(dtype)
    p = params.to(x.device)
    if config.hflip:
        x = torch.where(_per_sample(p.hflip, x), x.flip(-1), x)
        y = torch.where(_per_sample(p.hflip, y), y.flip(-1), y)
    if config.vflip:
        x = torch.where(_per_sample(p.vflip, x), x.flip(-2), x)
        y = torch.where(_per_sample(p.vflip, y), y.flip(-2), y)
    if any(float(g) != 1.0 for g in config.gammas):
        g = _per_sample(p.gamma, x)
        if quantize:  # exactly OpenCV's LUT: round(255 * (v / 255) ** gamma), computed in float64
            levels = torch.round(x.clamp(0, 1) * 255.0).long().view(x.shape[0], -1)
            steps = torch.arange(256, dtype=torch.float64, device=x.device) / 255.0
            luts = torch.round(255.0 * steps[None, :] ** p.gamma[:, None])          # (B, 256)
            gx = _quantize(luts.gather(1, levels).view_as(x) * (1.0 / 255.0), dtype)
        else:
            gx = x.clamp(0, 1) ** g.to(dtype)
        x = torch.where(g != 1.0, gx, x)
    if config.clahe_probability > 0.0:
        cx = clahe_rgb(x, p.clip, config.clahe_tiles, quantize=quantize).to(dtype)
        x = torch.where(_per_sample(p.clahe, x), cx, x)
    return x, y


def augment(
    images: torch.Tensor,
    masks: torch.Tensor,
    rng: np.random.Generator | torch.Generator,
    config: AugmentConfig = AugmentConfig(),
    quantize: bool = True,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw (:func:`draw_params`) and apply (:func:`augment_batch`) one random augmentation."""
    return augment_batch(images, masks, draw_params(images.shape[0], rng, config), config, quantize, dtype)

"""Training data: (image, mask) pairs decoded once into memory at the training size.

A folder in the data layout (``images/<stem>.jpg`` + ``masks/<stem>.png``, or anything
``core.dataset.find_cases`` understands) becomes a :class:`Pack`: every image resized to
``size x size`` (uint8 RGB, the aspect ratio squashed as the paper does) and its mask at the
same size (bool). ISIC 2017 train at 128 px is 2000 x 128 x 128 x 3 = 98 MB in memory.

Packs can be written to an ``.npz`` file and loaded back (a later GPU session carries such a
file instead of 2000 JPEGs), and :func:`cached_pack` keeps them in a cache folder keyed by the
folder's content (``.pack/`` of a source checkout, which git ignores, else the user cache).
``encoding="jpeg"`` stores the resized images as JPEG (quality 95) for a compact pack
(ISIC 2017 train at 128 px: about a fifth of the raw size).

Command line::

    python -m dermaseg_app.ml.data DIR [--size 128] [--out FILE.npz] [--jpeg] [--full-masks]

Batches: :func:`plan_epoch` orders the samples of an epoch (optionally mixing a replay source
in a fixed share of every batch) and :func:`make_batch` augments and stacks them.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from dermaseg_app.core.errors import DermaSegError
from dermaseg_app.ml.augment import AugmentConfig, augment_pair

PACK_FORMAT = 1


class DataError(DermaSegError, ValueError):
    """A training folder or pack cannot be used; the message names the path and the reason."""


@dataclass
class Pack:
    """Pairs at the training size, in memory.

    ``images``: N x S x S x 3 uint8 RGB; ``masks``: N x S x S bool; ``stems``: the cases'
    names; ``full_masks``: optionally each ground truth at its own size (for validation
    at the original resolution); ``source``: where the pairs came from.
    """

    images: np.ndarray
    masks: np.ndarray
    stems: list[str]
    size: int
    source: str = ""
    full_masks: list[np.ndarray] | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.stems)
        if self.images.shape != (n, self.size, self.size, 3) or self.images.dtype != np.uint8:
            raise ValueError(f"pack images must be ({n}, {self.size}, {self.size}, 3) uint8, "
                             f"got {self.images.shape} {self.images.dtype}")
        if self.masks.shape != (n, self.size, self.size):
            raise ValueError(f"pack masks must be ({n}, {self.size}, {self.size}), got {self.masks.shape}")
        if self.masks.dtype != np.bool_:
            self.masks = self.masks.astype(bool)
        if self.full_masks is not None and len(self.full_masks) != n:
            raise ValueError("full_masks must hold one mask per pair")

    def __len__(self) -> int:
        return len(self.stems)

    @property
    def nbytes(self) -> int:
        return int(self.images.nbytes + self.masks.nbytes)

    def subset(self, indices: Sequence[int]) -> Pack:
        idx = np.asarray(list(indices), dtype=np.int64)
        return Pack(
            images=self.images[idx],
            masks=self.masks[idx],
            stems=[self.stems[i] for i in idx],
            size=self.size,
            source=self.source,
            full_masks=None if self.full_masks is None else [self.full_masks[i] for i in idx],
            meta=dict(self.meta),
        )

    @staticmethod
    def concat(packs: Sequence[Pack]) -> Pack:
        if not packs:
            raise ValueError("nothing to concatenate")
        size = packs[0].size
        if any(p.size != size for p in packs):
            raise ValueError("packs of different sizes cannot be joined")
        full = None
        if all(p.full_masks is not None for p in packs):
            full = [m for p in packs for m in p.full_masks]  # type: ignore[union-attr]
        return Pack(
            images=np.concatenate([p.images for p in packs]),
            masks=np.concatenate([p.masks for p in packs]),
            stems=[s for p in packs for s in p.stems],
            size=size,
            source=" + ".join(p.source for p in packs),
            full_masks=full,
        )


# ----------------------------------------------------------------------------- resizing

def resize_image(rgb: np.ndarray, size: int) -> np.ndarray:
    """Squash an RGB image to size x size exactly as prediction does (ml.preprocessing)."""
    from dermaseg_app.ml.preprocessing import resize_rgb

    return resize_rgb(rgb, size)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Squash a mask to size x size: the lesion's area fraction of each pixel >= 0.5."""
    if mask.shape[:2] == (size, size):
        return mask.astype(bool)
    from dermaseg_app.ml.preprocessing import resize_mask_like

    return resize_mask_like(mask.astype(bool), size) >= 0.5


# ----------------------------------------------------------------------------- loading

def _cases(data: Path | str, masks_dir: Path | str | None = None) -> list:
    from dermaseg_app.core.dataset import find_cases

    path = Path(data)
    if not path.exists():
        raise DataError(path, "no such file or folder")
    cases = find_cases([path], masks_dir=Path(masks_dir) if masks_dir else None)
    with_gt = [c for c in cases if c.ground_truth is not None]
    if not with_gt:
        raise DataError(path, f"no image with a ground-truth mask found ({len(cases)} images without masks); "
                              "expected images/<stem>.jpg and masks/<stem>.png")
    return with_gt


def _load_case(case, size: int, keep_full: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    from dermaseg_app.core.imageio import read_image, read_mask

    rgb = read_image(case.image)
    mask = read_mask(case.ground_truth)
    if mask.shape[:2] != rgb.shape[:2]:
        raise DataError(case.ground_truth, f"mask is {mask.shape[1]}x{mask.shape[0]} but its image "
                                           f"{case.image.name} is {rgb.shape[1]}x{rgb.shape[0]}")
    return resize_image(rgb, size), resize_mask(mask, size), (mask.astype(bool) if keep_full else None)


def load_cases(
    cases: Sequence,
    size: int = 128,
    full_masks: bool = False,
    workers: int = 2,
    source: str = "",
    errors: list[tuple[object, str]] | None = None,
) -> Pack:
    """Decode explicit (image, mask) pairs into a :class:`Pack` at ``size``.

    ``cases`` are ``core.dataset.Case`` records (``ground_truth`` is the mask used, e.g. a
    reviewer's saved correction). Decoding runs in ``workers`` threads (OpenCV releases the GIL).
    A pair that cannot be used (unreadable file, size mismatch) raises :class:`DataError` naming
    the file, unless ``errors`` is a list: then the pair is left out and ``(case, reason)`` is
    appended to it.
    """
    cases = list(cases)
    for c in cases:
        if c.ground_truth is None:
            raise DataError(c.image, "has no mask to train on")
    n = len(cases)
    images = np.empty((n, size, size, 3), np.uint8)
    masks = np.empty((n, size, size), bool)
    full: list[np.ndarray] | None = [None] * n if full_masks else None  # type: ignore[list-item]
    failed: dict[int, str] = {}

    def work(i: int) -> None:
        from dermaseg_app.core.imageio import ImageReadError

        try:
            img, m, fm = _load_case(cases[i], size, full_masks)
        except (DataError, ImageReadError) as exc:
            if errors is None:
                raise
            failed[i] = str(exc)
            return
        images[i] = img
        masks[i] = m
        if full is not None:
            full[i] = fm

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(work, range(n)))
    keep = [i for i in range(n) if i not in failed]
    if errors is not None:
        errors.extend((cases[i], failed[i]) for i in sorted(failed))
    if failed:
        images, masks = images[keep], masks[keep]
        full = None if full is None else [full[i] for i in keep]
    return Pack(images=images, masks=masks, stems=[cases[i].stem for i in keep], size=size,
                source=source, full_masks=full)


def load_folder(
    data: Path | str,
    size: int = 128,
    masks_dir: Path | str | None = None,
    full_masks: bool = False,
    workers: int = 2,
    stems: Sequence[str] | None = None,
) -> Pack:
    """Decode every (image, mask) pair of a folder into a :class:`Pack` at ``size``.

    ``stems`` keeps only those cases (in that order). Decoding: :func:`load_cases`.
    """
    cases = _cases(data, masks_dir)
    if stems is not None:
        by_stem = {c.stem: c for c in cases}
        missing = [s for s in stems if s not in by_stem]
        if missing:
            raise DataError(data, f"no image with a mask for {', '.join(missing[:5])}")
        cases = [by_stem[s] for s in stems]
    return load_cases(cases, size, full_masks=full_masks, workers=workers, source=str(Path(data).resolve()))


# ----------------------------------------------------------------------------- pack files

def _pack_bits(masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    shapes = np.array([m.shape for m in masks], dtype=np.int64).reshape(-1, 2)
    flat = np.concatenate([m.reshape(-1) for m in masks]) if len(masks) else np.zeros(0, bool)
    return np.packbits(flat), shapes


def _unpack_bits(bits: np.ndarray, shapes: np.ndarray) -> list[np.ndarray]:
    total = int(np.sum(shapes[:, 0] * shapes[:, 1]))
    flat = np.unpackbits(bits, count=total).astype(bool)
    out, pos = [], 0
    for h, w in shapes:
        out.append(flat[pos:pos + h * w].reshape(int(h), int(w)))
        pos += int(h * w)
    return out


def save_pack(pack: Pack, path: Path | str, encoding: str = "raw", jpeg_quality: int = 95) -> Path:
    """Write a pack to ``path`` (.npz, written atomically). ``encoding``: "raw" or "jpeg"."""
    from dermaseg_app.core.atomic import atomic_write_bytes

    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    if encoding == "raw":
        arrays["images"] = pack.images
    elif encoding == "jpeg":
        blobs = []
        for img in pack.images:
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
            if not ok:
                raise DataError(path, "JPEG encoding failed")
            blobs.append(buf.reshape(-1))
        arrays["jpeg_offsets"] = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
        arrays["jpeg_bytes"] = np.concatenate(blobs) if blobs else np.zeros(0, np.uint8)
    else:
        raise ValueError(f"unknown pack encoding {encoding!r} (raw or jpeg)")
    arrays["mask_bits"], _ = _pack_bits(list(pack.masks))
    if pack.full_masks is not None:
        arrays["full_mask_bits"], arrays["full_mask_shapes"] = _pack_bits(pack.full_masks)
    arrays["stems"] = np.array(pack.stems, dtype=np.str_)
    meta = {"format": PACK_FORMAT, "size": pack.size, "n": len(pack), "source": pack.source,
            "encoding": encoding, **{k: v for k, v in pack.meta.items() if k not in ("format", "size", "n")}}
    arrays["meta"] = np.array(json.dumps(meta))
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_pack(path: Path | str) -> Pack:
    """Read a pack written by :func:`save_pack`."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != PACK_FORMAT:
                raise DataError(path, f"pack format {meta.get('format')} is not {PACK_FORMAT}")
            size, n = int(meta["size"]), int(meta["n"])
            if meta.get("encoding", "raw") == "jpeg":
                offsets, blob = z["jpeg_offsets"], z["jpeg_bytes"]
                images = np.empty((n, size, size, 3), np.uint8)
                for i in range(n):
                    bgr = cv2.imdecode(blob[offsets[i]:offsets[i + 1]], cv2.IMREAD_COLOR)
                    images[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            else:
                images = z["images"]
            masks = np.unpackbits(z["mask_bits"], count=n * size * size).astype(bool).reshape(n, size, size)
            full = None
            if "full_mask_bits" in z.files:
                full = _unpack_bits(z["full_mask_bits"], z["full_mask_shapes"])
            stems = [str(s) for s in z["stems"]]
    except DataError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(path, f"not a readable training pack ({exc})") from exc
    return Pack(images=images, masks=masks, stems=stems, size=size, source=meta.get("source", ""),
                full_masks=full, meta=meta)


def default_cache_dir() -> Path:
    """``$DERMASEG_PACK_DIR``, else ``.pack/`` of a source checkout, else the user cache."""
    env = os.environ.get("DERMASEG_PACK_DIR")
    if env:
        return Path(env)
    from dermaseg_app.paths import PACKAGE_DIR, user_cache_dir

    root = PACKAGE_DIR.parent
    if (root / ".git").exists():
        return root / ".pack"
    return user_cache_dir() / "packs"


def folder_fingerprint(data: Path | str, size: int, masks_dir: Path | str | None = None,
                       full_masks: bool = False) -> str:
    """A key that changes when the folder's pairs (names, sizes, times) or the size change."""
    h = hashlib.sha1()
    h.update(f"{PACK_FORMAT}|{Path(data).resolve()}|{size}|{full_masks}|{masks_dir}".encode())
    for c in _cases(data, masks_dir):
        for p in (c.image, c.ground_truth):
            st = p.stat()
            h.update(f"|{p.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def cached_pack(
    data: Path | str,
    size: int = 128,
    masks_dir: Path | str | None = None,
    full_masks: bool = False,
    cache_dir: Path | str | None = None,
    workers: int = 2,
) -> Pack:
    """Load a folder through the pack cache: decode once, reuse while the folder is unchanged.

    ``data`` may also be a pack file (``.npz``), loaded as it is.
    """
    data = Path(data)
    if data.is_file() and data.suffix == ".npz":
        return load_pack(data)
    key = folder_fingerprint(data, size, masks_dir, full_masks)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    file = cache / f"{data.resolve().name}-{size}-{key}.npz"
    if file.exists():
        try:
            return load_pack(file)
        except DataError:
            pass  # a stale or damaged cache entry is rebuilt below
    pack = load_folder(data, size, masks_dir=masks_dir, full_masks=full_masks, workers=workers)
    try:
        save_pack(pack, file)
    except OSError:
        pass  # a read-only cache only costs the next run a decode
    return pack


# ----------------------------------------------------------------------------- batches

@dataclass(frozen=True)
class BatchItem:
    """One sample of a batch: which source (0 = primary, 1 = replay) and its index there."""

    source: int
    index: int


def plan_epoch(
    n_primary: int,
    batch_size: int,
    rng: np.random.Generator,
    n_replay: int = 0,
    replay_share: float = 0.0,
    drop_last_below: int = 2,
) -> list[list[BatchItem]]:
    """The batches of one epoch.

    Without replay: a random permutation of the primary samples cut into batches (a last
    batch smaller than ``drop_last_below`` is dropped: batch norm and the half-batch split of
    the discriminator need at least two). With replay, every batch holds
    ``round(batch_size * replay_share)`` replay samples (at least one primary sample stays)
    and the epoch ends when every primary sample was seen once; replay samples are drawn
    without repetition until their source is used up, then reshuffled.
    """
    if n_primary <= 0:
        raise ValueError("no training samples")
    if batch_size < 1:
        raise ValueError("batch size must be at least 1")
    k_rep = 0
    if n_replay > 0 and replay_share > 0:
        k_rep = min(batch_size - 1, int(round(batch_size * replay_share)))
    k_new = batch_size - k_rep
    order = rng.permutation(n_primary)
    batches: list[list[BatchItem]] = []
    rep_order: list[int] = []
    for start in range(0, n_primary, k_new):
        chunk = order[start:start + k_new]
        items = [BatchItem(0, int(i)) for i in chunk]
        for _ in range(k_rep):
            if not rep_order:
                rep_order = list(rng.permutation(n_replay))
            items.append(BatchItem(1, int(rep_order.pop())))
        if len(items) < min(drop_last_below, batch_size):
            continue
        batches.append(items)
    if not batches:  # tiny data: one batch with what there is
        batches.append([BatchItem(0, int(i)) for i in order])
    return batches


def make_batch(
    items: Sequence[BatchItem],
    sources: Sequence[Pack],
    rng: np.random.Generator | None,
    augment: AugmentConfig | None = AugmentConfig(),
) -> tuple[np.ndarray, np.ndarray]:
    """Stack (and augment, when ``rng`` and ``augment`` are given) a batch.

    Returns images B x 3 x S x S float32 in [0, 1] and masks B x 1 x S x S float32 (0/1).
    """
    size = sources[0].size
    x = np.empty((len(items), 3, size, size), np.float32)
    y = np.empty((len(items), 1, size, size), np.float32)
    for j, it in enumerate(items):
        pack = sources[it.source]
        img, m = pack.images[it.index], pack.masks[it.index]
        if rng is not None and augment is not None and augment.enabled:
            img, m = augment_pair(img, m, rng, augment)
        x[j] = img.transpose(2, 0, 1) * np.float32(1.0 / 255.0)
        y[j, 0] = m
    return x, y


def images_to_array(images: np.ndarray) -> np.ndarray:
    """N x S x S x 3 uint8 -> N x 3 x S x S float32 in [0, 1] (what the network is fed)."""
    return images.transpose(0, 3, 1, 2).astype(np.float32) * np.float32(1.0 / 255.0)


# ----------------------------------------------------------------------------- command line

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dermaseg_app.ml.data",
        description="Decode a training folder (images/ + masks/) once into a pack file (.npz).")
    parser.add_argument("data", help="folder of images with masks")
    parser.add_argument("--size", type=int, default=128, help="training size in pixels (default 128)")
    parser.add_argument("--out", help="pack file to write (default: the pack cache, "
                                      f"{default_cache_dir()})")
    parser.add_argument("--jpeg", action="store_true", help="store images as JPEG q95 (compact)")
    parser.add_argument("--full-masks", action="store_true",
                        help="also keep each mask at its original size (for validation sets)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        if args.out:
            pack = load_folder(args.data, args.size, full_masks=args.full_masks, workers=args.workers)
            out = save_pack(pack, args.out, encoding="jpeg" if args.jpeg else "raw")
        else:
            pack = cached_pack(args.data, args.size, full_masks=args.full_masks, workers=args.workers)
            out = default_cache_dir()
    except (DataError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{len(pack)} pairs at {pack.size}px ({pack.nbytes / 1e6:.1f} MB in memory) -> {out} "
          f"in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

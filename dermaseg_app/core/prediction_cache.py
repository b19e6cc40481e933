"""Probability maps cached on disk per image file and model version, so reopening a folder is instant.

No Qt, no torch. A map is stored as an 8-bit grey PNG (probability * 255, rounded) in
``paths.user_cache_dir()/predictions/<model>/<key>.png``. The key is a hash of the image's resolved
path, size and modification time and of the model's name, version and (optionally) a fingerprint
of the weights file, so an edited image or a retrained model never gets a stale map. Writes are
atomic (``core.atomic``); a damaged or unreadable cache file is treated as a miss and removed.

The 8-bit quantisation changes a probability by at most 1/510, far below what moves a contour.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dermaseg_app.core.atomic import atomic_write_bytes

CACHE_FORMAT = 1  # bump when the file layout changes: old entries are simply never found


@dataclass(frozen=True)
class ModelKey:
    """What identifies the model that produced a map."""

    name: str
    version: str
    fingerprint: str = ""  # e.g. the weights file's size and mtime; "" to key on name+version only

    @property
    def slug(self) -> str:
        text = f"{self.name}-{self.version}"
        return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "model"


def quantize(prob: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] (float) -> uint8 0..255; uint8 input is returned unchanged."""
    arr = np.asarray(prob)
    if arr.dtype == np.uint8:
        return arr
    return np.clip(np.rint(arr.astype(np.float32, copy=False) * 255.0), 0, 255).astype(np.uint8)


def dequantize(prob_u8: np.ndarray) -> np.ndarray:
    """uint8 0..255 -> float32 probabilities in [0, 1]."""
    return np.asarray(prob_u8, dtype=np.float32) / np.float32(255.0)


def default_cache_root() -> Path:
    from dermaseg_app import paths

    return paths.user_cache_dir() / "predictions"


class PredictionCache:
    """Read and write cached probability maps for one model."""

    def __init__(self, model: ModelKey, root: Path | str | None = None) -> None:
        self.model = model
        self.root = Path(root) if root is not None else default_cache_root()
        self.folder = self.root / model.slug

    def key(self, image: Path | str) -> str:
        """The cache key of an image file (raises OSError when the file cannot be stat'ed)."""
        path = Path(image).resolve()
        st = path.stat()
        text = "\n".join(
            [
                str(CACHE_FORMAT),
                str(path),
                str(st.st_size),
                str(st.st_mtime_ns),
                self.model.name,
                self.model.version,
                self.model.fingerprint,
            ]
        )
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def path_for(self, image: Path | str) -> Path:
        return self.folder / f"{self.key(image)}.png"

    def load_u8(self, image: Path | str) -> np.ndarray | None:
        """The cached map as uint8 HxW, or None when there is none (or it is unreadable)."""
        try:
            entry = self.path_for(image)
        except OSError:
            return None
        if not entry.is_file():
            return None
        data = np.fromfile(str(entry), dtype=np.uint8) if entry.stat().st_size else None
        prob = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data is not None else None
        if prob is None or prob.ndim != 2 or prob.dtype != np.uint8:
            _remove_quietly(entry)  # damaged: forget it, the map is predicted again
            return None
        return prob

    def load(self, image: Path | str) -> np.ndarray | None:
        """The cached map as float32 HxW in [0, 1], or None."""
        prob = self.load_u8(image)
        return None if prob is None else dequantize(prob)

    def store(self, image: Path | str, prob: np.ndarray) -> Path:
        """Cache ``prob`` (float in [0, 1] or uint8) for ``image``; returns the cache file."""
        arr = quantize(prob)
        if arr.ndim != 2 or arr.size == 0:
            raise ValueError(f"a probability map must be a non-empty HxW array, got shape {arr.shape}")
        entry = self.path_for(image)
        ok, encoded = cv2.imencode(".png", np.ascontiguousarray(arr), [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise ValueError(f"cannot encode the probability map of {image} as PNG")
        entry.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(entry, encoded.tobytes())
        return entry

    def contains(self, image: Path | str) -> bool:
        try:
            return self.path_for(image).is_file()
        except OSError:
            return False

    def size_bytes(self) -> int:
        if not self.folder.is_dir():
            return 0
        return sum(p.stat().st_size for p in self.folder.glob("*.png") if p.is_file())

    def prune(self, max_bytes: int) -> int:
        """Remove the least recently used entries of this model until at most ``max_bytes`` remain.

        Returns the number of files removed.
        """
        if not self.folder.is_dir():
            return 0
        entries = []
        for p in self.folder.glob("*.png"):
            try:
                st = p.stat()
            except OSError:
                continue
            entries.append((max(st.st_atime, st.st_mtime), st.st_size, p))
        total = sum(size for _, size, _ in entries)
        removed = 0
        for _, size, p in sorted(entries):
            if total <= max_bytes:
                break
            if _remove_quietly(p):
                total -= size
                removed += 1
        return removed

    def clear(self) -> int:
        return self.prune(0)


def _remove_quietly(path: Path) -> bool:
    try:
        os.remove(path)
        return True
    except OSError:
        return False

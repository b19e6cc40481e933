"""The one reader of a model file's header (safetensors: an 8-byte little-endian length, then JSON),
without torch.

Importing torch takes seconds; the window and the prediction cache only need the model's identity,
so a folder whose maps are cached shows its masks before torch is even loaded.
``read_metadata`` returns the header's metadata (the strings ``ml.weights`` wrote: ``format``,
``info``, ``config``...) after checking that the header is bounded and that the file is as long as
the header says; ``ml.weights.read_model_info`` builds its strict ``ModelInfo`` from it, and
``read_model_header`` the lenient :class:`ModelHeader` the window shows (name, version, threshold).
Full validation of the tensors happens when ``ml.weights.load_model`` reads the file.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from dermaseg_app.core.errors import DermaSegError
from dermaseg_app.core.prediction_cache import ModelKey

MAX_HEADER_BYTES = 16 * 1024 * 1024


class ModelHeaderError(DermaSegError):
    """A model file whose header cannot be read; ``str()`` names the file and the reason."""


@dataclass(frozen=True)
class ModelHeader:
    path: Path
    name: str
    version: str
    threshold: float

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}".strip()

    @property
    def interim(self) -> bool:
        """An interim model (not the final one): "interim" in its name or version (as the bundled
        ``0.1-cpu-interim``, and the models fine-tuned from it), or its model card's first
        paragraph says so."""
        if "interim" in f"{self.name} {self.version}".lower():
            return True
        return card_says_interim(self.path.with_suffix(".md"))

    def cache_key(self) -> ModelKey:
        st = self.path.stat()
        return ModelKey(self.name, self.version, f"{st.st_size}-{st.st_mtime_ns}")


def read_metadata(path: Path | str) -> dict[str, str] | None:
    """The ``__metadata__`` of a safetensors file's header (None when it has none); raises
    ModelHeaderError for a missing, empty, truncated or damaged file."""
    path = Path(path)
    if not path.exists():
        raise ModelHeaderError(path, "no such model file")
    if path.is_dir():
        raise ModelHeaderError(path, "is a folder, not a model file")
    try:
        size = path.stat().st_size
        if size < 8:
            raise ModelHeaderError(path, f"file is empty or truncated ({size} bytes)")
        if not path.is_file():
            raise ModelHeaderError(path, "is not a regular file")
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n <= 0 or n > MAX_HEADER_BYTES or 8 + n > size:
                raise ModelHeaderError(path, "not a readable safetensors file (bad header length)")
            raw = fh.read(n)
    except OSError as exc:
        raise ModelHeaderError(path, f"cannot be read ({exc.strerror or exc})") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ModelHeaderError(path, "not a readable safetensors file (damaged header)") from None
    if not isinstance(header, dict):
        raise ModelHeaderError(path, "not a readable safetensors file (damaged header)")
    end = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise ModelHeaderError(path, f"not a readable safetensors file (damaged entry {str(key)[:60]!r})")
        end = max(end, offsets[1])
    if 8 + n + end != size:
        raise ModelHeaderError(path, f"not a readable safetensors file, truncated or corrupt (the header "
                                     f"describes {8 + n + end} bytes, the file has {size})")
    meta = header.get("__metadata__")
    if meta is None:
        return None
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ModelHeaderError(path, "not a readable safetensors file (damaged metadata)")
    return {str(k): v for k, v in meta.items()}


def read_model_header(path: Path | str) -> ModelHeader:
    """The model's name, version and threshold (a threshold outside (0, 1) reads as 0.5)."""
    path = Path(path)
    meta = read_metadata(path)
    try:
        info = json.loads(meta["info"]) if isinstance(meta, dict) else None
    except (KeyError, TypeError, json.JSONDecodeError, RecursionError):
        info = None
    if not isinstance(info, dict) or "name" not in info or "version" not in info:
        raise ModelHeaderError(path, "not a DermaSeg model file (no model information in the header)")
    try:
        threshold = float(info.get("threshold", 0.5))
    except (TypeError, ValueError):
        threshold = 0.5
    if not 0.0 < threshold < 1.0:
        threshold = 0.5
    return ModelHeader(path, str(info["name"]), str(info["version"]), threshold)


def card_says_interim(card: Path) -> bool:
    """True when the model card's title or first paragraph calls the model interim."""
    try:
        with open(card, encoding="utf-8", errors="replace") as fh:
            head = fh.read(4000)
    except OSError:
        return False
    title, paragraph = "", []
    for line in head.splitlines():
        text = line.strip()
        if text.startswith("#"):
            if paragraph:
                break
            title = title or text
        elif text:
            paragraph.append(text)
        elif paragraph:
            break
    return "interim" in f"{title} {' '.join(paragraph)[:300]}".lower()

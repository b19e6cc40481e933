"""Read a model file's name, version and threshold from its safetensors header, without torch.

Importing torch takes seconds; the prediction cache only needs the model's identity, so a folder
whose maps are cached shows its masks before torch is even loaded. The header layout is
safetensors' (8-byte little-endian length, then JSON) and the metadata is ``ml.weights``' format
(an ``info`` JSON string with ``name``, ``version``, ``threshold``). Full validation still happens
when ``ml.weights.load_model`` reads the file.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from dermaseg_app.core.prediction_cache import ModelKey

MAX_HEADER_BYTES = 16 * 1024 * 1024


class ModelHeaderError(Exception):
    def __init__(self, path: Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


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


def read_model_header(path: Path | str) -> ModelHeader:
    path = Path(path)
    if not path.exists():
        raise ModelHeaderError(path, "no such model file")
    if path.is_dir():
        raise ModelHeaderError(path, "is a folder, not a model file")
    try:
        with open(path, "rb") as fh:
            raw = fh.read(8)
            if len(raw) < 8:
                raise ModelHeaderError(path, "file is empty or truncated")
            (n,) = struct.unpack("<Q", raw)
            if n <= 0 or n > MAX_HEADER_BYTES:
                raise ModelHeaderError(path, "not a safetensors model file (bad header length)")
            header = json.loads(fh.read(n).decode("utf-8"))
    except OSError as exc:
        raise ModelHeaderError(path, f"cannot be read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelHeaderError(path, "not a safetensors model file (damaged header)") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    try:
        info = json.loads(meta["info"]) if isinstance(meta, dict) else None
    except (KeyError, TypeError, json.JSONDecodeError):
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

"""Limits on what input is read: the largest image (in pixels) and the largest file (in bytes).

An image over the pixel limit is refused from its header, before any pixel is decoded, with a
message naming the file, its size and the limit (a 30000x30000 PNG would otherwise need 6 GB).
The default, 200 megapixels, accepts the largest real dermoscopy and clinical photographs (a
6000x4000 camera is 24 MP; the largest phone sensors are 200 MP). Files larger than 2 GiB, or
that are not regular files (a FIFO, a device), are not read at all.

The limits are settings: ``max_image_pixels`` / ``max_file_bytes`` in ``settings.json`` in the
user's config folder (``{"schema_version": 1, "max_image_pixels": 300000000}``), the environment
variables ``DERMASEG_MAX_IMAGE_PIXELS`` / ``DERMASEG_MAX_FILE_BYTES`` (which win), or
:func:`set_limits` (the command line's ``--max-megapixels``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_MAX_FILE_BYTES", "DEFAULT_MAX_IMAGE_PIXELS", "Limits", "limits", "set_limits",
           "settings_path"]

DEFAULT_MAX_IMAGE_PIXELS = 200_000_000
DEFAULT_MAX_FILE_BYTES = 2 * 1024**3
SETTINGS_SCHEMA = 1


@dataclass(frozen=True)
class Limits:
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES


_current: Limits | None = None


def settings_path() -> Path:
    from dermaseg_app import paths

    return paths.user_config_dir() / "settings.json"


def _positive(value: object, where: str) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        log.warning("%s: not a number (%r); the default is used", where, value)
        return None
    try:
        number = int(float(value))
    except (ValueError, OverflowError):
        log.warning("%s: not a number (%r); the default is used", where, value)
        return None
    if number < 1:
        log.warning("%s: must be at least 1 (%r); the default is used", where, value)
        return None
    return number


def _load() -> Limits:
    found = Limits()
    path = settings_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        data = {}
    except (OSError, ValueError, RecursionError) as exc:
        log.warning("%s: unreadable settings (%s); the default limits are used", path, exc)
        data = {}
    if isinstance(data, dict):
        for name in ("max_image_pixels", "max_file_bytes"):
            if name in data:
                value = _positive(data[name], f"{path}: {name}")
                if value is not None:
                    found = replace(found, **{name: value})
    for name, env in (("max_image_pixels", "DERMASEG_MAX_IMAGE_PIXELS"),
                      ("max_file_bytes", "DERMASEG_MAX_FILE_BYTES")):
        if os.environ.get(env):
            value = _positive(os.environ[env], env)
            if value is not None:
                found = replace(found, **{name: value})
    return found


def limits() -> Limits:
    """The limits in force (read from the settings once)."""
    global _current
    if _current is None:
        _current = _load()
    return _current


def set_limits(max_image_pixels: int | None = None, max_file_bytes: int | None = None) -> Limits:
    """Change the limits for this process (None keeps a value); returns the new limits."""
    global _current
    new = limits()
    if max_image_pixels is not None:
        if max_image_pixels < 1:
            raise ValueError("the pixel limit must be at least 1")
        new = replace(new, max_image_pixels=int(max_image_pixels))
    if max_file_bytes is not None:
        if max_file_bytes < 1:
            raise ValueError("the file size limit must be at least 1")
        new = replace(new, max_file_bytes=int(max_file_bytes))
    _current = new
    return new


def reset_limits() -> None:
    """Forget set_limits and read the settings again at the next use (for tests)."""
    global _current
    _current = None

"""Where the shipped resources, models and the user's folders are.

Works from a source checkout, an installed package (resources are looked up next to the
package first, then next to the repository root) and a frozen app (``sys._MEIPASS``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def _base_dirs() -> list[Path]:
    bases: list[Path] = []
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        bases.append(Path(frozen))
    env = os.environ.get("DERMASEG_HOME")
    if env:
        bases.append(Path(env))
    bases.append(PACKAGE_DIR.parent)
    return bases


def _find(name: str) -> Path:
    for base in _base_dirs():
        candidate = base / name
        if candidate.exists():
            return candidate
    return _base_dirs()[-1] / name


def resources_dir() -> Path:
    return _find("resources")


def models_dir() -> Path:
    return _find("models")


def samples_dir() -> Path:
    """The bundled CC0 sample images (ISIC layout: images/ + a *GroundTruth folder)."""
    return resources_dir() / "samples" / "images"


DEFAULT_MODEL_NAME = "slsnet_isic2017"


def replay_dir() -> Path | None:
    """The bundled replay set: 24 CC0 dermoscopy images with masks (``resources/replay``), replayed
    while fine-tuning when the user names no dermoscopy folder of their own; None when it is not
    installed."""
    folder = resources_dir() / "replay"
    return folder if (folder / "images").is_dir() else None


def default_model_path() -> Path:
    """The shipped default model (weights file; its config and card sit beside it)."""
    return models_dir() / f"{DEFAULT_MODEL_NAME}.safetensors"


def user_config_dir() -> Path:
    if sys.platform == "win32":
        root = Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming"))
    elif sys.platform == "darwin":
        root = Path.home() / "Library" / "Application Support"
    else:
        root = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return root / "dermaseg"


def user_data_dir() -> Path:
    """The user's own DermaSeg data (for instance the review project of the bundled samples)."""
    if sys.platform == "win32":
        root = Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming"))
    elif sys.platform == "darwin":
        root = Path.home() / "Library" / "Application Support"
    else:
        root = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return root / "dermaseg"


def is_bundled(path: Path) -> bool:
    """Whether ``path`` lies inside the application's own resources (never written to)."""
    try:
        return Path(path).resolve().is_relative_to(resources_dir().resolve())
    except OSError:
        return False


def bundled_project_dir(folder: Path) -> Path:
    """Where the review project of a bundled folder lives: in the user's data, not the install."""
    rel = Path(folder).resolve().relative_to(resources_dir().resolve())
    return user_data_dir() / "projects" / "__".join(rel.parts)


def user_cache_dir() -> Path:
    if sys.platform == "win32":
        root = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        root = Path.home() / "Library" / "Caches"
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return root / "dermaseg"

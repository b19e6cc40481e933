"""The window's settings file (recent folders, the Training tab's folders, the overlay colours, the
list's sort and the comparison switch), readable JSON with a
schema version, in ``paths.user_config_dir()/gui.json``; written atomically. Window geometry lives in QSettings."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from dermaseg_app.core.atomic import atomic_write_text

SCHEMA_VERSION = 1
MAX_RECENT = 10


def settings_path() -> Path:
    from dermaseg_app import paths

    return paths.user_config_dir() / "gui.json"


@dataclass
class GuiSettings:
    recent_folders: list[str] = field(default_factory=list)
    include_subfolders: bool = True
    finetune_replay: str = ""          # Training tab: dermoscopy images+masks replayed while fine-tuning
    finetune_base_val: str = ""        # Training tab: the "keep dermoscopy" validation folder
    finetune_keep_dermoscopy: bool = False
    model: str = ""                    # the model last chosen in the window (Use Model File…, Use this model)
    comparison_colours: str = "standard"  # Preferences: overlay.COMPARISON_PALETTES key
    mask_colour: str = "blue"          # Preferences: overlay.MASK_COLOURS key
    sort_column: int = 0               # the case list's sort, restored at the next start
    sort_descending: bool = False
    compare: bool = False              # the ground-truth comparison (G), restored at the next start
    recent_models: list[str] = field(default_factory=list)  # Model > Recent Models (opened or compared)

    @classmethod
    def load(cls, path: Path | None = None) -> GuiSettings:
        path = path or settings_path()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(data, dict):
            return cls()
        recent = [str(p) for p in data.get("recent_folders", []) if isinstance(p, str)]

        def text(key: str) -> str:
            value = data.get(key, "")
            return value if isinstance(value, str) else ""

        return cls(recent_folders=recent[:MAX_RECENT], include_subfolders=bool(data.get("include_subfolders", True)),
                   finetune_replay=text("finetune_replay"), finetune_base_val=text("finetune_base_val"),
                   finetune_keep_dermoscopy=bool(data.get("finetune_keep_dermoscopy", False)),
                   model=text("model"), comparison_colours=text("comparison_colours") or "standard",
                   mask_colour=text("mask_colour") or "blue",
                   sort_column=_int(data.get("sort_column"), 0),
                   sort_descending=bool(data.get("sort_descending", False)),
                   compare=bool(data.get("compare", False)),
                   recent_models=[str(p) for p in data.get("recent_models", []) if isinstance(p, str)][:MAX_RECENT])

    def save(self, path: Path | None = None) -> None:
        path = path or settings_path()
        data = {"schema_version": SCHEMA_VERSION, "recent_folders": self.recent_folders,
                "include_subfolders": self.include_subfolders, "finetune_replay": self.finetune_replay,
                "finetune_base_val": self.finetune_base_val,
                "finetune_keep_dermoscopy": self.finetune_keep_dermoscopy, "model": self.model,
                "comparison_colours": self.comparison_colours, "mask_colour": self.mask_colour,
                "sort_column": self.sort_column, "sort_descending": self.sort_descending,
                "compare": self.compare, "recent_models": self.recent_models}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(data, indent=1) + "\n")
        except OSError:
            pass  # settings are a convenience; never stop the user's work for them

    def remembered_model(self) -> Path | None:
        """The model last chosen in the window, if its file still exists."""
        path = Path(self.model) if self.model else None
        return path if path is not None and path.is_file() else None

    def add_recent_model(self, model: Path) -> None:
        text = str(Path(model).resolve())
        self.recent_models = [text] + [p for p in self.recent_models if p != text]
        del self.recent_models[MAX_RECENT:]

    def add_recent(self, folder: Path) -> None:
        text = str(Path(folder).resolve())
        self.recent_folders = [text] + [p for p in self.recent_folders if p != text]
        del self.recent_folders[MAX_RECENT:]


def _int(value, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default

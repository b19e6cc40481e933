"""The window's settings file (``app.settings``): readable JSON with a schema version, never a
reason to fail."""

from __future__ import annotations

import json
from pathlib import Path

from dermaseg_app.app.settings import MAX_RECENT, SCHEMA_VERSION, GuiSettings


def test_settings_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "gui.json"
    s = GuiSettings(mask_colour="green", sort_column=3, sort_descending=True, compare=True)
    for i in range(MAX_RECENT + 2):
        s.add_recent(tmp_path / f"f{i}")
    s.save(path)
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    back = GuiSettings.load(path)
    assert back == s and len(back.recent_folders) == MAX_RECENT
    assert back.recent_folders[0] == str((tmp_path / f"f{MAX_RECENT + 1}").resolve())


def test_a_damaged_settings_file_gives_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "gui.json"
    path.write_text("{not json")
    assert GuiSettings.load(path) == GuiSettings()
    path.write_text(json.dumps({"sort_column": "x", "mask_colour": 3, "recent_folders": [1, "a"]}))
    s = GuiSettings.load(path)
    assert s.sort_column == 0 and s.mask_colour == "blue" and s.recent_folders == ["a"]

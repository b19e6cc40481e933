"""The desktop app's packaging (installer/dermaseg.spec, installer/bundle.py) carries what the
app needs, and the frozen app's start-up helpers (dermaseg_app/frozen.py, the entry point) behave.
The build itself takes minutes: installer/check_frozen.sh builds and runs it."""

from __future__ import annotations

import configparser
import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dermaseg_app import frozen, paths

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "installer"))
import bundle  # noqa: E402


def _covered(path: Path) -> bool:
    rel = path.resolve().relative_to(ROOT)
    return any(rel == Path(src) or Path(src) in rel.parents for src, _ in bundle.DATA)


def test_every_bundled_source_exists():
    missing = [str(p) for p in bundle.data_paths() if not p.exists()]
    assert not missing, f"bundle.DATA names files that are not in the repository: {missing}"


def test_the_app_finds_its_resources_where_the_bundle_puts_them():
    # each destination keeps the repository's relative layout, which paths.py looks up
    for src, dest in bundle.DATA:
        src_path = Path(src)
        expected = str(src_path if (ROOT / src_path).is_dir() else src_path.parent)
        assert dest.replace("\\", "/") == expected.replace("\\", "/"), (src, dest)


def test_what_the_app_loads_at_run_time_travels():
    needed = [paths.default_model_path(), paths.samples_dir(), paths.replay_dir(),
              ROOT / "resources" / "icons" / "dermaseg.png",
              ROOT / "dermaseg_app" / "ml" / "csrc" / "pam_attention.cpp"]
    needed += sorted((ROOT / "resources" / "samples").rglob("*.*"))
    needed += sorted((ROOT / "resources" / "replay").rglob("*.*"))
    card = paths.default_model_path().with_suffix(".md")
    if card.exists():
        needed.append(card)
    not_carried = [str(p) for p in needed if p is None or not _covered(Path(p))]
    assert not not_carried, f"the frozen app would lack: {not_carried}"


def test_training_state_tests_and_runs_do_not_travel():
    for src, _ in bundle.DATA:
        for excluded in bundle.NOT_SHIPPED:
            assert not (Path(src) == Path(excluded) or Path(excluded) in Path(src).parents), src


def test_the_spec_reads_the_bundle_list_and_the_entry_point():
    spec = (ROOT / "installer" / "dermaseg.spec").read_text()
    assert "bundle.DATA" in spec and "bundle.EXCLUDES" in spec
    assert "dermaseg_entry.py" in spec
    assert (ROOT / "installer" / "dermaseg_entry.py").is_file()
    assert "SUBCOMMANDS.values()" in spec  # every subcommand's module is a hidden import
    from dermaseg_app.cli import SUBCOMMANDS

    for module in SUBCOMMANDS.values():
        assert (ROOT / "dermaseg_app" / "commands" / f"{module}.py").is_file(), module


def test_desktop_file():
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(ROOT / "resources" / "dermaseg.desktop")
    entry = parser["Desktop Entry"]
    assert entry["Type"] == "Application" and entry["Name"] == "DermaSeg"
    assert entry["Exec"].split()[0] == "DermaSeg" and entry["Icon"] == "dermaseg"
    assert "image/jpeg" in entry["MimeType"]


def test_double_click_opens_the_samples():
    assert frozen.default_paths([]) == [str(paths.samples_dir())]
    assert frozen.default_paths(["--screenshot", "x.png"]) == [str(paths.samples_dir()), "--screenshot", "x.png"]
    assert frozen.default_paths(["--model", "m.safetensors", "imgs"]) == ["--model", "m.safetensors", "imgs"]


def test_no_display_is_reported(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert "needs a display" in frozen.check_qt_platform()
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert frozen.check_qt_platform() is None


def test_a_missing_system_library_is_named_with_its_package(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("DISPLAY", ":99")

    def refuse(path, mode=0):
        raise OSError("libxcb-cursor.so.0: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(ctypes, "CDLL", refuse)
    plugin = tmp_path / "libqxcb.so"
    plugin.write_bytes(b"")
    message = frozen.check_qt_platform(plugin)
    assert "libxcb-cursor.so.0" in message and "apt-get install libxcb-cursor0" in message


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Qt's xcb plugin is Linux only")
def test_the_real_xcb_plugin_loads_or_names_a_known_library():
    plugin = frozen.xcb_plugin_path()
    if plugin is None:
        pytest.skip("PySide6 without its xcb plugin")
    lib = frozen.missing_library(plugin)
    assert lib is None or lib in frozen.QT_SYSTEM_LIBS, lib


def test_report_writes_the_users_log(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(frozen, "startup_log", lambda: tmp_path / "startup-problem.txt")
    monkeypatch.setattr(frozen.shutil, "which", lambda tool: None)
    frozen.report_startup_problem("the system library libfoo.so.1 is missing")
    assert "libfoo.so.1" in capsys.readouterr().err
    assert "libfoo.so.1" in (tmp_path / "startup-problem.txt").read_text()


def test_entry_point_runs_only_the_apps_own_modules():
    entry = ROOT / "installer" / "dermaseg_entry.py"
    refused = subprocess.run([sys.executable, str(entry), "-m", "os"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "only the app's own modules" in refused.stderr
    ran = subprocess.run([sys.executable, str(entry), "-m", "dermaseg_app.ml.fast_attention", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0 and "--isa" in ran.stdout


def test_what_the_app_imports_is_not_excluded_from_the_bundle():
    """The spec's EXCLUDES leave modules out of the frozen app; importing the window, pyqtgraph's
    plots, the model and the commands with those modules blocked must still work (a wrong
    exclusion shows here, not as a frozen app that cannot draw its histogram)."""
    code = f"""
import importlib, sys
for name in {bundle.EXCLUDES!r}:
    sys.modules[name] = None  # as in the frozen app: not found (find_spec None, import fails)
import pyqtgraph, pyqtgraph.graphicsItems.PlotCurveItem
import dermaseg_app.gui.main_window, dermaseg_app.gui.app
from dermaseg_app.cli import SUBCOMMANDS
for module in SUBCOMMANDS.values():
    importlib.import_module(f"dermaseg_app.commands.{{module}}")
from dermaseg_app.ml import predictor, weights, training, export_onnx
from dermaseg_app import paths
weights.load_model(paths.default_model_path())
import torch._dynamo, sympy
print("ok")
"""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]


def test_the_frozen_apps_xcb_plugin_is_found_under_meipass(monkeypatch, tmp_path):
    plugin = tmp_path / "PySide6" / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    plugin.parent.mkdir(parents=True)
    plugin.write_bytes(b"")
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert frozen.xcb_plugin_path() == plugin


def test_a_missing_library_is_read_through_pyinstallers_wrapper(monkeypatch, tmp_path):
    """The frozen app's ctypes raises its own OSError with the loader's as the cause."""
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("DISPLAY", ":99")

    def refuse(path, mode=0):
        try:
            raise OSError("/lib/x86_64-linux-gnu/libxcb-cursor.so.0: file too short")
        except OSError as base:
            raise OSError(f"Failed to load dynlib/dll {path!r}. Most likely this dynlib/dll was not found") from base

    monkeypatch.setattr(ctypes, "CDLL", refuse)
    plugin = tmp_path / "libqxcb.so"
    plugin.write_bytes(b"")
    assert "apt-get install libxcb-cursor0" in frozen.check_qt_platform(plugin)

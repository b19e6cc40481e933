"""The desktop app's packaging (installer/dermaseg.spec, installer/bundle.py) carries what the
app needs, and the frozen app's start-up helpers (dermaseg_app/frozen.py, the entry point) behave.
The build itself takes minutes: installer/check_frozen.sh builds and runs it."""

from __future__ import annotations

import configparser
import ctypes
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dermaseg_app import frozen, paths

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "installer"))
import bundle  # noqa: E402
import elf_trim  # noqa: E402


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


# Run first in the subprocesses below: the frozen app as bundle.py makes it. The EXCLUDES are not
# found (find_spec None, import fails), and torch's .py sources cannot be read except those of
# bundle.TORCH_SOURCES_KEPT (the app carries torch compiled only).
_AS_FROZEN = f"""
import inspect, linecache, os, sys
for name in {bundle.EXCLUDES!r}:
    sys.modules[name] = None
import torch
_torch = os.path.dirname(torch.__file__)
_kept = {{os.path.join(os.path.dirname(_torch), m.replace(".", os.sep) + ".py") for m in {bundle.TORCH_SOURCES_KEPT!r}}}
def _hidden(path):
    path = os.path.abspath(path)
    return path.startswith(_torch + os.sep) and path not in _kept
_findsource, _getlines = inspect.findsource, linecache.getlines
def findsource(obj):
    path = inspect.getsourcefile(obj) or inspect.getfile(obj)
    if path and _hidden(path):
        raise OSError("could not get source code")
    return _findsource(obj)
inspect.findsource = findsource
linecache.getlines = lambda path, g=None: [] if path and _hidden(path) else _getlines(path, g)
"""


def _run_as_frozen(code: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    return subprocess.run([sys.executable, "-c", _AS_FROZEN + code], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=str(ROOT))


def test_what_the_app_imports_is_not_excluded_from_the_bundle(tmp_path):
    """The spec's EXCLUDES leave modules out of the frozen app and torch travels without its
    sources; importing the window, pyqtgraph's plots, the model and the commands that way must
    still work, the model predict, and the image formats the app reads decode (a wrong
    exclusion shows here, not as a frozen app that cannot draw its histogram)."""
    code = f"""
import importlib
import numpy as np
import pyqtgraph, pyqtgraph.graphicsItems.PlotCurveItem
import dermaseg_app.gui.main_window, dermaseg_app.gui.app
from dermaseg_app.cli import SUBCOMMANDS
for module in SUBCOMMANDS.values():
    importlib.import_module(f"dermaseg_app.commands.{{module}}")
from dermaseg_app.ml import predictor, weights, training, export_onnx
from dermaseg_app import paths
from dermaseg_app.core import imageio
model, info = weights.load_model(paths.default_model_path())
with torch.no_grad():
    model(torch.zeros(1, 3, info.input_size, info.input_size))
import torch._dynamo, sympy  # what torch.optim's first step imports
from PIL import Image
rgb = (np.arange(48 * 64 * 3) % 251).astype(np.uint8).reshape(48, 64, 3)
for ext in ("jpg", "png", "bmp", "tif"):
    Image.fromarray(rgb).save({str(tmp_path)!r} + "/x." + ext)
    assert imageio.read_image({str(tmp_path)!r} + "/x." + ext).shape == (48, 64, 3), ext
print("ok")
"""
    result = _run_as_frozen(code)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]
    assert "Unable to retrieve source" not in result.stderr, result.stderr[-3000:]  # a source torch reads is kept


@pytest.mark.slow
def test_a_fine_tune_step_runs_as_in_the_frozen_app(tmp_path):
    """The Training tab fine-tunes inside the app: one step of ``dermaseg finetune`` (torch.optim,
    which imports torch._dynamo; the loss, EMA, validation, publishing) with the exclusions
    blocked and torch's sources hidden."""
    out = tmp_path / "ft.safetensors"
    code = f"""
from dermaseg_app.cli import main
rc = main(["finetune", "--base", {str(paths.default_model_path())!r}, "--data", {str(paths.replay_dir())!r},
           "--out", {str(out)!r}, "--epochs", "1", "--max-steps-per-epoch", "1", "--batch-size", "2",
           "--replay-share", "0", "--threads", "1", "--quiet"])
print("rc", rc)
"""
    result = _run_as_frozen(code, timeout=600)
    assert result.returncode == 0 and "rc 0" in result.stdout, result.stderr[-3000:]
    assert out.is_file()


def _declares_torchscript_overloads(text: str) -> bool:
    """Whether a torch module declares TorchScript overloads (@torch.jit._overload, _overload_method),
    which read the declarations' source when the module is imported."""
    if re.search(r"^\s*@torch\.(?:_jit_internal|jit)\._overload(?:_method)?\s*$", text, re.M):
        return True
    imported = re.search(r"from torch\._jit_internal import \(?[^)]*?\b_overload(?: as (\w+))?\b", text)
    return bool(imported) and bool(re.search(rf"^\s*@{imported.group(1) or '_overload'}\s*$", text, re.M))


def test_every_torch_module_that_reads_its_own_source_keeps_it():
    """torch's config modules read their source at import (torch.utils._config_module), and so
    do TorchScript's @_overload declarations (torch.nn.functional); a torch upgrade that adds one
    must add it to bundle.TORCH_SOURCES_KEPT."""
    import torch

    base = Path(torch.__file__).parent
    readers = set()
    for py in base.rglob("*.py"):
        rel = py.relative_to(base.parent).with_suffix("")
        if "testing" in rel.parts or "test" in rel.parts:
            continue
        text = py.read_text(errors="replace")
        if "install_config_module(sys.modules[__name__])" in text:
            readers.add(".".join(rel.parts))
        elif _declares_torchscript_overloads(text) and rel.parts[-1] != "_jit_internal":
            readers.add(".".join(rel.parts))
    missing = readers - set(bundle.TORCH_SOURCES_KEPT)
    assert not missing, f"add to bundle.TORCH_SOURCES_KEPT: {sorted(missing)}"
    spec = (ROOT / "installer" / "dermaseg.spec").read_text()
    assert "TORCH_SOURCES_KEPT" in spec and "module_collection_mode" in spec


def _segments(data: bytes) -> tuple[bytes, list[bytes]]:
    """The program header table and the bytes of every segment: what the loader reads."""
    import struct

    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    table = data[phoff:phoff + phentsize * phnum]
    segs = []
    for i in range(phnum):
        _, _, off, _, _, filesz, _, _ = struct.unpack_from("<IIQQQQQQ", table, i * phentsize)
        segs.append(data[off:off + filesz] if off else data[64:filesz])  # the ELF header's section fields change
    return table, segs


def _an_extension_with_symbols() -> Path | None:
    """One of this Python's own extension modules that carries a static symbol table."""
    import _json  # a shared library in lib-dynload on most Linux Pythons (builtin on some)

    folder = Path(getattr(_json, "__file__", "") or ".").parent
    for so in sorted(folder.glob("_decimal*.so")) + sorted(folder.glob("_json*.so")):
        if elf_trim.trimmed(so.read_bytes()) is not None:
            return so
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF only")
def test_elf_trim_keeps_what_the_loader_maps_and_the_module_loads(tmp_path):
    so = _an_extension_with_symbols()
    if so is None:
        pytest.skip("this Python's extension modules carry no static symbol table")
    data = so.read_bytes()
    out = tmp_path / so.name
    saved = elf_trim.trim_copy(so, out)
    new = out.read_bytes()
    assert saved == len(data) - len(new) > 0
    assert _segments(new) == _segments(data)
    assert elf_trim.trimmed(new) is None  # nothing left to drop
    name = so.name.split(".")[0]
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import {name}; print({name}.__file__)"
    ran = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0 and str(tmp_path) in ran.stdout, ran.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF only")
def test_elf_trim_leaves_alone_what_it_cannot_trim_safely(tmp_path):
    import struct

    assert elf_trim.trimmed(b"not an ELF file") is None
    so = _an_extension_with_symbols()
    if so is not None:  # the symbol table moved among the mapped bytes: refused
        data = bytearray(so.read_bytes())
        shoff, = struct.unpack_from("<Q", data, 0x28)
        _, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
        for i in range(shnum):
            if struct.unpack_from("<I", data, shoff + i * 64 + 4)[0] == 2:  # SHT_SYMTAB
                struct.pack_into("<Q", data, shoff + i * 64 + 24, 64)
        assert elf_trim.trimmed(bytes(data)) is None
    import numpy

    libs = Path(numpy.__file__).parent.parent / "numpy.libs"
    for blas in sorted(libs.glob("*openblas*.so*")):  # auditwheel-patched: elf_trim refuses it, as the bundle skips it
        assert elf_trim.trimmed(blas.read_bytes()) is None, blas
    assert any("numpy.libs/".startswith(p) for p in bundle.NOT_TRIMMED)


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

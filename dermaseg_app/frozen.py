"""What the frozen app (PyInstaller, installer/dermaseg.spec) does before the window starts.

No Qt is imported here at module level: the check must run before Qt can abort the process.

- ``check_qt_platform()``: on Linux with an X11 display, loads Qt's xcb platform plugin the way
  Qt will and, where a system library is missing, returns a sentence naming it and the package
  that holds it. Qt's own report of that case ("could not load the Qt platform plugin xcb") names
  the wrong cause and, started from a desktop, is never seen.
- ``report_startup_problem()``: says so on the terminal, in a desktop dialog (zenity, kdialog or
  xmessage, whichever exists) when there is no terminal, and in a log file in the user's folder.
- ``default_paths()``: a double-click opens the bundled samples.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from dermaseg_app import paths

# soname -> Debian/Ubuntu package: what Qt's xcb platform plugin (PySide6 6.x) loads from the
# system (the same list as installer/qt_libs.sh, which the source install uses).
QT_SYSTEM_LIBS: dict[str, str] = {
    "libGL.so.1": "libgl1", "libEGL.so.1": "libegl1", "libfontconfig.so.1": "libfontconfig1",
    "libdbus-1.so.3": "libdbus-1-3", "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0", "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1", "libxcb.so.1": "libxcb1", "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4", "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1", "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0", "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0", "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1", "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0", "libxcb-xkb.so.1": "libxcb-xkb1",
}

# the loader's words for a library that is not there, or is there but unusable (truncated, for
# another architecture): both mean "install (or reinstall) its package"
_MISSING = re.compile(r"(?:^|/|\s)([\w.+-]+\.so[\w.]*): (?:cannot open shared object file|file too short|"
                      r"invalid ELF header|wrong ELF class)")


def _platform_in_use() -> str:
    """The Qt platform the window will use: QT_QPA_PLATFORM, else what Qt picks on Linux."""
    chosen = os.environ.get("QT_QPA_PLATFORM", "").split(":")[0].split(";")[0].strip()
    if chosen:
        return chosen
    if os.environ.get("WAYLAND_DISPLAY"):
        return "wayland"
    return "xcb"


def xcb_plugin_path() -> Path | None:
    """Qt's xcb platform plugin as PySide6 ships it (in the frozen app and in a venv)."""
    import importlib.util

    folders: list[Path] = []
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:  # PyInstaller keeps PySide6's Qt folder under _internal/PySide6
        folders.append(Path(frozen) / "PySide6")
    spec = importlib.util.find_spec("PySide6")
    if spec is not None and spec.submodule_search_locations:
        folders += [Path(f) for f in spec.submodule_search_locations]
    for folder in folders:
        candidate = folder / "Qt" / "plugins" / "platforms" / "libqxcb.so"
        if candidate.is_file():
            return candidate
    return None


def missing_library(plugin: Path) -> str | None:
    """The soname the dynamic loader cannot find when it loads ``plugin``, or None when it loads
    (Qt's own libraries are found through the plugin's run path, next to it in PySide6)."""
    try:
        ctypes.CDLL(str(plugin), mode=getattr(os, "RTLD_LAZY", 1))
    except OSError as exc:
        # PyInstaller's ctypes wrapper replaces the loader's words with its own ("Failed to load
        # dynlib/dll ..."), keeping them as the cause: read the whole chain
        chain: list[BaseException] = []
        error: BaseException | None = exc
        while error is not None and error not in chain:
            chain.append(error)
            error = error.__cause__ or error.__context__
        for error in chain:
            match = _MISSING.search(str(error))
            if match:
                return match.group(1)
        return None
    return None


def check_qt_platform(plugin: Path | None = None) -> str | None:
    """None when the window can start; else what is wrong, in words a user can act on."""
    if not sys.platform.startswith("linux"):
        return None
    platform = _platform_in_use()
    if platform == "xcb" and not os.environ.get("DISPLAY"):
        return ("DermaSeg needs a display: neither DISPLAY nor WAYLAND_DISPLAY is set. Start it from a "
                "desktop session (or `ssh -X`); `DermaSeg --screenshot FILE` with QT_QPA_PLATFORM=offscreen "
                "works without one, and the command line (DermaSeg predict ...) needs none.")
    if platform != "xcb":
        return None
    plugin = plugin or xcb_plugin_path()
    if plugin is None:
        return None
    lib = missing_library(plugin)
    if lib is None:
        return None
    package = QT_SYSTEM_LIBS.get(lib)
    hint = f"sudo apt-get install {package}" if package else f"install the package that provides {lib}"
    return (f"DermaSeg's window cannot start: the system library {lib} is missing or damaged "
            f"(Qt's X11 platform needs it). Install it ({hint}) and start DermaSeg again. "
            "The command line (DermaSeg predict ...) works without it.")


def startup_log() -> Path:
    return paths.user_data_dir() / "startup-problem.txt"


def report_startup_problem(message: str) -> None:
    """Say ``message`` on the terminal, in a desktop dialog when there is no terminal, and in the
    user's data folder (the log names where)."""
    print(f"DermaSeg: {message}", file=sys.stderr)
    try:
        log = startup_log()
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(message + "\n", encoding="utf-8")
    except OSError:
        pass
    if sys.stderr is not None and sys.stderr.isatty():
        return
    for tool, args in (("zenity", ["--error", "--title=DermaSeg", f"--text={message}"]),
                       ("kdialog", ["--title", "DermaSeg", "--error", message]),
                       ("xmessage", ["-center", f"DermaSeg: {message}"]),
                       ("notify-send", ["DermaSeg", message])):
        exe = shutil.which(tool)
        if exe:
            try:
                subprocess.run([exe, *args], timeout=600, check=False)
            except (OSError, subprocess.SubprocessError):
                continue
            return


def main() -> int:
    """``DermaSeg -m dermaseg_app.frozen`` (or ``python -m dermaseg_app.frozen``): say whether the
    window can start here, and why not."""
    problem = check_qt_platform()
    print(problem or f"the window can start here (Qt platform {_platform_in_use()}, plugin {xcb_plugin_path()})")
    return 1 if problem else 0


def default_paths(argv: list[str]) -> list[str]:
    """The window's arguments with the bundled samples added when no image or folder is named
    (a double-click opens the samples with the bundled model)."""
    options_with_value = {"--model", "--device", "--masks", "--screenshot"}
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in options_with_value:
            skip = True
            continue
        if not arg.startswith("-"):
            return argv
    return [str(paths.samples_dir()), *argv]


if __name__ == "__main__":
    sys.exit(main())

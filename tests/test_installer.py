"""The installer's system-library check (issue 12, item 5), run against a fake ``ldconfig``, and
start.sh's message without a display."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QT_LIBS = ROOT / "installer" / "qt_libs.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _sonames() -> list[str]:
    out = subprocess.run(["bash", "-c", f'source "{QT_LIBS}"; printf "%s\\n" "${{DERMASEG_QT_LIBS[@]}}"'],
                         capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines()]


def _fake_ldconfig(folder: Path, present: list[str], padding: int = 20000) -> Path:
    """An ``ldconfig`` printing a cache listing with ``present`` first, then ``padding`` other
    libraries (a long listing: a reader that stops early makes the writer die of SIGPIPE)."""
    folder.mkdir(parents=True, exist_ok=True)
    listing = folder / "listing.txt"
    lines = [f"{len(present) + padding} libs found in cache `/etc/ld.so.cache'"]
    lines += [f"\t{lib} (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/{lib}" for lib in present]
    lines += [f"\tlibpadding{i}.so.1 (libc6,x86-64) => /usr/lib/libpadding{i}.so.1" for i in range(padding)]
    listing.write_text("\n".join(lines) + "\n")
    tool = folder / "ldconfig"
    tool.write_text(f'#!/bin/sh\n[ "$1" = "-p" ] || exit 2\ncat "{listing}"\n')
    tool.chmod(0o755)
    return tool


def _missing(fake: Path) -> tuple[list[str], str]:
    script = (f'set -euo pipefail; source "{QT_LIBS}"; dermaseg_missing_qt_libs; '
              'echo "packages: $(dermaseg_missing_qt_packages)"')
    env = dict(os.environ, PATH=f"{fake.parent}:{os.environ['PATH']}")
    env.pop("DERMASEG_LDCONFIG", None)
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, check=True).stdout
    lines = out.splitlines()
    return [line.split()[0] for line in lines[:-1]], lines[-1]


def test_every_present_library_is_found_in_a_long_listing_under_pipefail(tmp_path) -> None:
    libs = _sonames()
    assert {"libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxcb-cursor.so.0", "libxkbcommon-x11.so.0"} <= set(libs)
    for _ in range(3):  # the old `ldconfig -p | grep -q` failed now and then, never every time
        missing, packages = _missing(_fake_ldconfig(tmp_path / "bin", libs))
        assert missing == [] and packages == "packages: "


def test_missing_libraries_are_named_with_their_packages(tmp_path) -> None:
    libs = [lib for lib in _sonames() if lib not in ("libxcb-icccm.so.4", "libxcb-keysyms.so.1")]
    missing, packages = _missing(_fake_ldconfig(tmp_path / "bin", libs))
    assert missing == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert packages == "packages: libxcb-icccm4 libxcb-keysyms1"
    # a library whose name another contains is not taken for it
    libs = [lib for lib in _sonames() if lib != "libxcb.so.1"] + ["libxcb.so.1.1.0"]
    missing, _ = _missing(_fake_ldconfig(tmp_path / "bin2", libs))
    assert missing == ["libxcb.so.1"]


def _bootstrap_env(tmp_path: Path, present: list[str]) -> tuple[dict, Path, Path]:
    """A venv that looks installed (its stamp matches), a fake ldconfig, apt-get and id (root)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("#!/bin/sh\nexit 0\n")
    (venv / "bin" / "python").chmod(0o755)
    stamp = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()
                           + (ROOT / "installer" / "bootstrap.sh").read_bytes()).hexdigest()
    (venv / ".dermaseg-stamp").write_text(stamp + "\n")
    fake = _fake_ldconfig(tmp_path / "bin", present)
    calls = tmp_path / "apt-calls.txt"
    apt = fake.parent / "apt-get"
    # records its calls; the install fails (no network)
    apt.write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\n[ "$1" = update ]\n')
    apt.chmod(0o755)
    ident = fake.parent / "id"
    ident.write_text("#!/bin/sh\necho 0\n")
    ident.chmod(0o755)
    env = dict(os.environ, PATH=f"{fake.parent}:{os.environ['PATH']}", DERMASEG_VENV=str(venv))
    env.pop("DERMASEG_LDCONFIG", None)
    return env, calls, venv


def test_bootstrap_runs_apt_get_only_for_missing_libraries_and_not_again_after_a_failure(tmp_path) -> None:
    env, calls, _venv = _bootstrap_env(tmp_path / "a", _sonames())
    run = subprocess.run(["bash", str(ROOT / "installer" / "bootstrap.sh")], capture_output=True,
                         text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert not calls.exists() and run.stderr == ""  # everything present: quiet, no apt-get
    present = [lib for lib in _sonames() if lib != "libxcb-cursor.so.0"]
    env, calls, _venv = _bootstrap_env(tmp_path / "b", present)
    run = subprocess.run(["bash", str(ROOT / "installer" / "bootstrap.sh")], capture_output=True,
                         text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert "install -y -q libxcb-cursor0 fonts-dejavu-core" in calls.read_text()
    assert "missing: libxcb-cursor.so.0" in run.stderr and "sudo apt-get install libxcb-cursor0" in run.stderr
    n_calls = len(calls.read_text().splitlines())
    run = subprocess.run(["bash", str(ROOT / "installer" / "bootstrap.sh")], capture_output=True,
                         text=True, env=env)
    assert len(calls.read_text().splitlines()) == n_calls  # not retried at every launch
    assert "sudo apt-get install libxcb-cursor0" in run.stderr


def test_start_without_a_display_says_so(tmp_path) -> None:
    env, _calls, _venv = _bootstrap_env(tmp_path, _sonames())
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        env.pop(var, None)
    run = subprocess.run(["bash", str(ROOT / "installer" / "start.sh")], capture_output=True, text=True, env=env)
    assert run.returncode == 1
    assert "no display" in run.stderr and "xvfb-run" in run.stderr


def test_start_with_a_display_names_the_missing_xcb_libraries(tmp_path) -> None:
    env, _calls, _venv = _bootstrap_env(tmp_path, [lib for lib in _sonames() if lib != "libxcb-icccm.so.4"])
    env["DISPLAY"] = ":99"
    env.pop("WAYLAND_DISPLAY", None)
    env.pop("QT_QPA_PLATFORM", None)
    run = subprocess.run(["bash", str(ROOT / "installer" / "start.sh")], capture_output=True, text=True, env=env)
    assert run.returncode == 1
    assert "xcb) platform cannot start: missing libxcb-icccm.so.4" in run.stderr

import errno
import os
import time
from pathlib import Path

import pytest

from dermaseg_app.core import atomic
from dermaseg_app.core.atomic import (
    TEMP_PREFIX,
    AtomicWriteError,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    cleanup_stale_temp_files,
)


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_write_creates_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"first")
    assert target.read_bytes() == b"first"
    atomic_write_bytes(target, b"second version")
    assert target.read_bytes() == b"second version"
    atomic_write_text(tmp_path / "t.txt", "h\u00e9llo\n")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "h\u00e9llo\n"
    assert _leftovers(tmp_path) == []


def test_new_file_gets_normal_permissions(tmp_path: Path) -> None:
    if os.name == "nt":
        pytest.skip("POSIX permissions")
    target = tmp_path / "p.txt"
    atomic_write_text(target, "x")
    # mkstemp makes 0600 files; the final file must follow the umask like a normal open().
    umask = atomic._current_umask()
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    os.chmod(target, 0o640)
    atomic_write_text(target, "y")
    assert target.stat().st_mode & 0o777 == 0o640


def test_failed_replace_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "keep.txt"
    target.write_text("old")

    def boom(src: object, dst: object) -> None:
        raise OSError(errno.EIO, "simulated I/O error")

    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(AtomicWriteError) as info:
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []
    assert str(target) in str(info.value)


def test_failed_write_disk_full_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "full.bin"
    target.write_bytes(b"old")

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "write", full)
    with pytest.raises(AtomicWriteError) as info:
        atomic_write_bytes(target, b"new data")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []
    msg = str(info.value)
    assert "disk is full" in msg and str(target) in msg
    assert info.value.errno == errno.ENOSPC
    assert isinstance(info.value, OSError)


@pytest.mark.parametrize(
    "code, words",
    [(errno.EACCES, "permission denied"), (errno.EROFS, "read-only")],
)
def test_error_mapping_on_temp_creation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, words: str
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    with pytest.raises(AtomicWriteError) as info:
        atomic_write_text(tmp_path / "x.txt", "x")
    assert words in str(info.value)
    assert str(tmp_path / "x.txt") in str(info.value)


def _writes_blocked_by_chmod(folder: Path) -> bool:
    probe = folder / "probe"
    try:
        probe.write_text("x")
    except OSError:
        return True
    probe.unlink()
    return False


def test_read_only_folder_real(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    os.chmod(folder, 0o555)
    try:
        if not _writes_blocked_by_chmod(folder):
            pytest.skip("running with privileges that ignore folder permissions (e.g. root)")
        with pytest.raises(AtomicWriteError) as info:
            atomic_write_text(folder / "a.txt", "x")
        assert "permission denied" in str(info.value) or "read-only" in str(info.value)
        assert str(folder / "a.txt") in str(info.value)
    finally:
        os.chmod(folder, 0o755)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(AtomicWriteError, match="does not exist"):
        atomic_write_text(tmp_path / "nope" / "a.txt", "x")


def test_atomic_path_success_and_failure(tmp_path: Path) -> None:
    target = tmp_path / "img.png"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(TEMP_PREFIX)
        assert tmp.suffix == ".png"
        tmp.write_bytes(b"png bytes")
    assert target.read_bytes() == b"png bytes"

    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("encoder crashed")
    assert target.read_bytes() == b"png bytes"
    assert _leftovers(tmp_path) == []

    with pytest.raises(AtomicWriteError, match="produced no data"):
        with atomic_path(target):
            pass  # writer wrote nothing
    assert target.read_bytes() == b"png bytes"
    assert _leftovers(tmp_path) == []


def test_cleanup_stale_temp_files(tmp_path: Path) -> None:
    old = tmp_path / f"{TEMP_PREFIX}abc-mask.png"
    fresh = tmp_path / f"{TEMP_PREFIX}def-mask.png"
    other = tmp_path / "mask.png"
    for p in (old, fresh, other):
        p.write_bytes(b"x")
    past = time.time() - 3600
    os.utime(old, (past, past))
    assert cleanup_stale_temp_files(tmp_path) == [old]
    assert not old.exists() and fresh.exists() and other.exists()
    assert cleanup_stale_temp_files(tmp_path, min_age_s=0) == [fresh]
    assert other.exists()
    assert cleanup_stale_temp_files(tmp_path / "missing") == []

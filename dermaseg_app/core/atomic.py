"""Atomic file writes: a file is either the old version or the complete new one, never half.

Every write in DermaSeg goes through this module. The recipe:

1. create a temp file in the *same folder* as the target (so ``os.replace`` is a rename on one
   file system), named ``.dermaseg-tmp-<random>-<target name>`` (hidden, recognisable, and it keeps
   the target's extension so encoders that pick a format by extension still work);
2. write, flush, ``fsync`` the file;
3. ``os.replace`` it over the target (atomic on POSIX and on Windows/NTFS);
4. ``fsync`` the folder where the platform supports it, so the rename itself survives a crash.

On any failure the temp file is removed and the previous target is left untouched. Errors from
the operating system are re-raised as :class:`AtomicWriteError` (an ``OSError``) whose message
names the target and explains the cause in plain words (disk full, read-only, permission denied).

A crash between steps 1 and 3 can leave a temp file behind; :func:`cleanup_stale_temp_files`
removes such leftovers (callers run it on folders they write to, e.g. at start-up).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from dermaseg_app.core.errors import DermaSegError

__all__ = [
    "TEMP_PREFIX",
    "AtomicWriteError",
    "atomic_create_bytes",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "cleanup_stale_temp_files",
    "is_temp_file",
]

TEMP_PREFIX = ".dermaseg-tmp-"

_REASONS: dict[int, str] = {
    errno.ENOSPC: "the disk is full (no space left on device)",
    errno.EACCES: (
        "permission denied: the folder or file is not writable (or the file is open elsewhere)"
    ),
    errno.EPERM: "operation not permitted: the folder or file is protected",
    errno.EROFS: "the file system is read-only",
    errno.ENOENT: "the folder does not exist",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EISDIR: "the target is a folder",
    errno.ENAMETOOLONG: "the file name is too long",
}
if hasattr(errno, "EDQUOT"):
    _REASONS[errno.EDQUOT] = "the disk quota is exceeded"


class AtomicWriteError(DermaSegError, OSError):
    """A write failed; the previous file (if any) is unchanged.

    A :class:`~dermaseg_app.core.errors.DermaSegError` (``.path`` the target, ``.reason`` a
    plain-words explanation) and an ``OSError`` (``.errno`` the OS error code, or None).
    ``str(err)`` reads ``cannot write <path>: <reason>``.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str, code: int | None = None) -> None:
        OSError.__init__(self, code, reason, str(path))  # errno, strerror, filename
        self.path = Path(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.reason}"

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        return (type(self), (self.path, self.reason, self.errno))


def _reason_for(err: OSError) -> str:
    base = _REASONS.get(err.errno or -1)
    detail = err.strerror or str(err)
    return base if base else detail


def _wrap(err: OSError, path: Path) -> AtomicWriteError:
    if isinstance(err, AtomicWriteError):
        return err
    return AtomicWriteError(path, _reason_for(err), err.errno)


def is_temp_file(path: str | os.PathLike[str]) -> bool:
    """True for a temp file made by this module (hidden name starting with TEMP_PREFIX)."""
    return Path(path).name.startswith(TEMP_PREFIX)


def _temp_suffix(target: Path) -> str:
    name = target.name
    # Keep the whole name when short (readable leftovers), else just the extension.
    return "-" + name if len(name) <= 120 else target.suffix


def _current_umask() -> int:
    """The process umask without changing it (Linux: /proc; elsewhere the usual 022)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _final_mode(target: Path) -> int:
    """Permissions for the new file: those of the file it replaces, else 0666 & ~umask."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_current_umask()


def _fsync_dir(folder: Path) -> None:
    """fsync a folder so a rename in it is durable; silently skipped where unsupported."""
    if os.name == "nt":  # directories cannot be opened for fsync on Windows
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _make_temp(target: Path) -> tuple[int, Path]:
    folder = target.parent
    if not folder.is_dir():
        raise AtomicWriteError(target, f"the folder {folder} does not exist", errno.ENOENT)
    if target.is_dir():
        raise AtomicWriteError(target, "the target is a folder", errno.EISDIR)
    try:
        fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=_temp_suffix(target), dir=folder)
    except OSError as err:
        raise _wrap(err, target) from err
    return fd, Path(name)


def _commit(tmp: Path, target: Path) -> None:
    """chmod, os.replace and fsync the folder. The temp file must already be fsynced."""
    with contextlib.suppress(OSError):
        os.chmod(tmp, _final_mode(target))
    os.replace(tmp, target)
    _fsync_dir(target.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring).

    Raises AtomicWriteError (an OSError) naming the path and the cause; on failure the previous
    file is unchanged and no temp file is left behind.
    """
    target = Path(path)
    fd, tmp = _make_temp(target)
    with _removed_on_failure(tmp, target):
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        _commit(tmp, target)


def atomic_create_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Create ``path`` holding ``data``, atomically and exclusively: never over an existing file.

    The data is written and fsynced in a temp file that is then hard-linked to the target, which
    fails when the target exists (two writers choosing the same name: one wins, the other gets
    FileExistsError and picks another name). Where the file system has no hard links the target
    is created with ``O_EXCL`` and written in place (still exclusive; a crash may then leave it
    incomplete, which readers report as corrupt). Raises FileExistsError, or AtomicWriteError for
    other failures; no temp file is left behind.
    """
    target = Path(path)
    fd, tmp = _make_temp(target)
    with _removed_on_failure(tmp, target):
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.chmod(tmp, 0o666 & ~_current_umask())
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise
        except OSError as err:
            if err.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK,
                                 getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)):
                raise
            _create_exclusive_in_place(target, data)
        _unlink_quietly(tmp)
        _fsync_dir(target.parent)


def _create_exclusive_in_place(target: Path, data: bytes) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _removed_on_failure(tmp: Path, target: Path) -> Iterator[None]:
    """On any failure inside the block: remove the temp file; an OSError becomes an
    AtomicWriteError naming ``target``."""
    try:
        yield
    except BaseException as err:
        _unlink_quietly(tmp)
        if isinstance(err, OSError) and not isinstance(err, FileExistsError):
            raise _wrap(err, target) from err
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` atomically, encoded as ``encoding`` (UTF-8 by default), newlines unchanged."""
    atomic_write_bytes(path, text.encode(encoding))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside ``path`` for writers that insist on a file name.

    The temp path has the target's extension, so ``cv2.imwrite`` / ``PIL.Image.save`` /
    ``safetensors.save_file`` pick the right format. When the block ends normally the temp file
    is fsynced and moved over ``path``; if the block raises, or the writer produced no file, the
    temp file is removed and ``path`` is unchanged::

        with atomic_path(out) as tmp:
            Image.fromarray(rgb).save(tmp)
    """
    target = Path(path)
    fd, tmp = _make_temp(target)
    os.close(fd)
    with _removed_on_failure(tmp, target):
        yield tmp
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise AtomicWriteError(target, "the writer produced no data")
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _commit(tmp, target)


def cleanup_stale_temp_files(folder: str | os.PathLike[str], min_age_s: float = 60.0) -> list[Path]:
    """Remove temp files left in ``folder`` (not recursive) by a crash during a write.

    Only files named with TEMP_PREFIX and last modified at least ``min_age_s`` seconds ago are
    removed, so a write in progress in another process is not disturbed (pass 0 to remove all).
    Returns the removed paths; files that cannot be removed are skipped. A missing folder
    returns an empty list.
    """
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(TEMP_PREFIX):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if now - entry.stat(follow_symlinks=False).st_mtime < min_age_s:
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return sorted(removed)

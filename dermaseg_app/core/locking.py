"""An OS lock per project folder, so two processes never write one project at once (issue 11).

``acquire(folder)`` takes an exclusive, non-blocking lock on ``<folder>/project.lock``
(``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows) and returns a :class:`LockHandle`, or
None when another process holds it; :func:`holder` then says who (the process id and host the
holder wrote into the file). The operating system drops the lock when its process ends, however
it ends (a crash or SIGKILL included), so a stale lock never blocks a project.

Within one process the lock is shared: the window and its store, or a test that opens a project
twice, get handles to the same lock, which is released when the last handle is released. (The
writers of one process already merge their records; it is other processes that could not see
each other's writes.)
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LOCK_FILENAME", "LockHandle", "acquire", "holder"]

LOCK_FILENAME = "project.lock"

_mutex = threading.Lock()
_held: dict[str, _Held] = {}


@dataclass
class _Held:
    fd: int
    count: int


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):
        return False
    return True


def _unlock(fd: int) -> None:
    try:
        if sys.platform == "win32":
            import msvcrt

            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError:
        pass


class LockHandle:
    """One holder's share of a project lock; ``release()`` (idempotent) gives it back."""

    def __init__(self, key: str, path: Path, first: bool) -> None:
        self._key = key
        self.path = path
        self.first = first  # this handle took the lock (no other holder in this process)
        self._released = False

    def release(self) -> None:
        with _mutex:
            if self._released:
                return
            self._released = True
            held = _held.get(self._key)
            if held is None:
                return
            held.count -= 1
            if held.count <= 0:
                del _held[self._key]
                _unlock(held.fd)
                os.close(held.fd)

    @property
    def released(self) -> bool:
        return self._released


def acquire(folder: str | os.PathLike[str]) -> LockHandle | None:
    """Lock ``folder`` (which must exist) for this process; None when another process holds it.

    Raises OSError when the lock file cannot be created (a read-only folder).
    """
    path = Path(folder) / LOCK_FILENAME
    key = os.path.normcase(os.path.realpath(folder))
    with _mutex:
        held = _held.get(key)
        if held is not None:
            held.count += 1
            return LockHandle(key, path, first=False)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
        if not _try_lock(fd):
            os.close(fd)
            return None
        try:  # who holds it, for the message another process shows
            text = f"{os.getpid()} {socket.gethostname()}\n".encode()
            if sys.platform == "win32":  # byte 0 is locked; keep the note after it
                os.lseek(fd, 1, os.SEEK_SET)
            else:
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, text)
        except OSError:
            pass
        _held[key] = _Held(fd, 1)
        return LockHandle(key, path, first=True)


def holder(folder: str | os.PathLike[str]) -> str:
    """Who holds the lock of ``folder``, in words ("process 1234 on host"), or "" if unknown."""
    try:
        raw = (Path(folder) / LOCK_FILENAME).read_bytes()
    except OSError:
        return ""
    parts = raw.decode("utf-8", "replace").strip("\x00 \r\n").split()
    if len(parts) >= 2 and parts[0].isdigit():
        return f"process {parts[0]} on {parts[1]}"
    return ""

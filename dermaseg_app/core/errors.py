"""The root of DermaSeg's user-facing errors: something at a path cannot be used, and why.

Every error a user can cause (an unreadable image, a damaged project file, a model file that does
not fit its architecture, a correction that cannot be saved) is a :class:`DermaSegError` with
``.path`` (the file or folder concerned) and ``.reason`` (plain words), so the window and the
command line report all of them the same way: one line naming the path and the reason, never a
traceback. Subclasses keep their own wording of ``str()``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DermaSegError"]


class DermaSegError(Exception):
    """``path`` cannot be used because of ``reason``; ``str()`` reads ``<path>: <reason>``."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:  # picklable across processes
        return (type(self), (self.path, self.reason))

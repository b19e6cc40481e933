"""Waiting on a running Qt event loop, for the window benchmarks (import after QApplication exists)."""

from __future__ import annotations

import time
from collections.abc import Callable


def spin(seconds: float) -> None:
    """Run the event loop for ``seconds``."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def wait_until(cond: Callable[[], object], timeout: float = 300.0) -> bool:
    """Spin the event loop until ``cond()`` is true; False when ``timeout`` seconds pass first."""
    end = time.perf_counter() + timeout
    while not cond():
        if time.perf_counter() > end:
            return False
        spin(0.02)
    return True

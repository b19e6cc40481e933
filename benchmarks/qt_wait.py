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


def open_for_editing(folder, model):
    """The window at 1440x900 on ``folder`` with ``model`` (a path or None), once its first image
    and mask are shown, autosave off: the start of the editing benchmarks. Returns (app, window)."""
    from types import SimpleNamespace

    from dermaseg_app.gui.app import build_window, make_app

    app = make_app()
    window = build_window(SimpleNamespace(paths=[], model=str(model) if model else None,
                                          device=None, masks=None))
    window.resize(1440, 900)
    window.show()
    app.processEvents()
    window.open_paths([folder])
    s = window.session
    if not wait_until(lambda: s.current_images() is not None and (s.current_images().prob is not None
                                                                   or bool(s.model_error))):
        raise SystemExit("the image was not opened/predicted in time")
    spin(0.3)
    window.editing.panel.autosave.setChecked(False)
    return app, window

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


def bench_folder(image, prefix: str, ground_truth: bool = True):
    """A temporary folder holding a copy of ``image`` (and, with ``ground_truth``, its ISIC mask in a
    sibling GroundTruth folder), with the user's cache, config and data folders pointed inside the
    temporary folder so a benchmark never touches the real ones. Returns the image folder."""
    import os
    import shutil
    import tempfile
    from pathlib import Path

    image = Path(image)
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    for var, sub in (("XDG_CACHE_HOME", "cache"), ("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data")):
        os.environ[var] = str(tmp / sub)
    folder = tmp / "images"
    folder.mkdir()
    shutil.copy(image, folder)
    gt_dir = image.parent.parent / "ISIC-2017_Training_Part1_GroundTruth"
    gt = gt_dir / f"{image.stem}_segmentation.png"
    if ground_truth and gt.is_file():
        (tmp / gt_dir.name).mkdir()
        shutil.copy(gt, tmp / gt_dir.name)
    return folder


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

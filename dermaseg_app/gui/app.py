"""Start the review window: ``run_app(args)`` (called by ``dermaseg [PATH...]``).

``args``: ``paths`` (images or folders), ``model``, ``device``, ``masks``, ``screenshot`` (a PNG to
save once the first image and its prediction -- and with ``compare`` the ground-truth colouring --
are drawn, then exit), ``compare`` and ``compare_with`` (a second model to compare with). torch is
imported in the background after the window shows.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QApplication

from dermaseg_app import __version__

SCREENSHOT_TIMEOUT_S = 180.0
SCREENSHOT_SIZE = (1440, 900)
EMPTY_HINT = ("Open images (Ctrl+O) or a folder (Ctrl+Shift+O), or drop them here.\n"
              "Help > Open the Bundled Samples shows DermaSeg on a few dermoscopic images.")
SETTLE_S = 10.0  # at most this long for the metrics and the folder summary after the mask is drawn


def _arg(args: Any, name: str, default: Any = None) -> Any:
    return getattr(args, name, default)


class ScreenshotTaker(QObject):
    """Saves the window once the first image is drawn with its prediction, then quits."""

    def __init__(self, window, path: Path, compare: bool, timeout_s: float = SCREENSHOT_TIMEOUT_S) -> None:
        super().__init__(window)
        self.window = window
        self.path = path
        self.compare = compare
        self.exit_code: int | None = None
        self.reason = ""
        self._saving = False
        window.view.drawn.connect(self._drawn)
        window.session.model_failed.connect(self._model_failed)
        window.session.image_failed.connect(self._image_failed)
        window.session.cases_opened.connect(self._maybe_compare)
        QTimer.singleShot(int(timeout_s * 1000), lambda: self._save(1, "timed out waiting for the prediction"))

    def _maybe_compare(self) -> None:
        if self.compare:
            self.window.controls.compare.setChecked(True)

    def _drawn(self, row: int, has_prediction: bool, compared: bool) -> None:
        images = self.window.session.current_images()
        wants_compare = self.compare and images is not None and images.gt is not None
        if has_prediction and (compared or not wants_compare):
            self._settle(time.monotonic() + SETTLE_S)

    def _settle(self, deadline: float) -> None:
        """Give the metrics panel and the folder summary a moment to fill in, then save."""
        images = self.window.session.current_images()
        needs_scores = images is not None and images.gt is not None
        scored = self.window.metrics.values["jsc"].text() != "—"
        summarized = self.window.summary.worst.count() > 0 and not self.window.session.predicting()
        second = self.window.session.second  # --compare-with: its contour and disagreement too
        if second.active and not second.error and images is not None:
            entry = self.window.session.entries[self.window.session.current]
            summarized = summarized and images.second_prob is not None and entry.disagreement is not None
        if (not needs_scores or (scored and summarized)) or time.monotonic() > deadline:
            self._save(0, "")
        else:
            QTimer.singleShot(100, lambda: self._settle(deadline))

    def _model_failed(self, reason: str) -> None:
        # Still show the image with the message; save once it is drawn.
        self.reason = reason
        if self.window.session.current_images() is not None:
            QTimer.singleShot(200, lambda: self._save(1, reason))
        else:
            self.window.view.drawn.connect(lambda *a: self._save(1, reason))

    def _image_failed(self, row: int, reason: str) -> None:
        if row == self.window.session.current:
            QTimer.singleShot(200, lambda: self._save(1, reason))

    def _save(self, code: int, reason: str) -> None:
        if self._saving:
            return
        self._saving = True
        # let the last paint land before grabbing
        QTimer.singleShot(150, lambda: self._grab(code, reason))

    def _grab(self, code: int, reason: str) -> None:
        self.window.refresh_summary()  # not the throttled one: every result so far
        self.path.parent.mkdir(parents=True, exist_ok=True)
        pixmap = self.window.grab()
        if not pixmap.save(str(self.path), "PNG"):
            code, reason = 1, f"cannot write {self.path}"
        self.exit_code = code
        self.reason = reason
        if reason:
            print(f"dermaseg: screenshot {self.path}: {reason}", file=sys.stderr)
        self.window.close()
        QApplication.instance().exit(code)


def make_app() -> QApplication:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("DermaSeg")
    app.setOrganizationName("DermaSeg")
    app.setApplicationVersion(__version__)
    return app


def build_window(args: Any):
    """The session and its window for ``args`` (no event loop): used by run_app and the tests."""
    from dermaseg_app.app.settings import GuiSettings
    from dermaseg_app.gui.main_window import MainWindow
    from dermaseg_app.gui.session import ReviewSession

    settings = GuiSettings.load()
    # --model wins; else the model last chosen in the window (a fine-tuned one); else the bundled one
    model = _arg(args, "model") or settings.remembered_model()
    session = ReviewSession(model_path=model, device=_arg(args, "device"))
    window = MainWindow(session, settings)
    window.masks_dir = _arg(args, "masks")
    return window


def quiet_cpu_threads() -> None:
    """Let torch's CPU threads sleep while they wait instead of spinning (set before torch loads).

    The window shares the CPU with the network: spinning OpenMP threads steal it from the GUI
    thread, and on a busy 2-core machine a forward pass went from ~0.33 s to 0.6-3 s with them.
    An explicit OMP_WAIT_POLICY in the environment wins."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _start_importing_torch() -> None:
    """Begin importing torch (about 2 s) on a daemon thread before Qt and the window are built,
    so that the import overlaps with them; the model loader later finds it in sys.modules (the
    import lock makes a concurrent import wait rather than run twice)."""
    import importlib
    import threading

    def _import() -> None:
        try:
            importlib.import_module("torch")
        except Exception:  # noqa: BLE001 - a missing or broken torch fails in any way; the model loader reports it
            pass

    threading.Thread(target=_import, name="dermaseg-import-torch", daemon=True).start()


def run_app(args: Any) -> int:
    t0 = time.perf_counter()
    quiet_cpu_threads()
    _start_importing_torch()
    app = make_app()
    window = build_window(args)
    if _arg(args, "compare_with"):
        window.model_menu.compare_with(Path(_arg(args, "compare_with")))
    paths = [Path(p) for p in (_arg(args, "paths") or [])]
    missing = [p for p in paths if not p.exists()]
    shooter = None
    screenshot = _arg(args, "screenshot")
    if screenshot:
        shooter = ScreenshotTaker(window, Path(screenshot), bool(_arg(args, "compare")))
    window.show()
    if screenshot:
        window.resize(*SCREENSHOT_SIZE)  # the same picture on any screen (offscreen: 800x800)
        window.size_docks()
    window.session.start_model()  # torch loads in the background while the window paints
    if missing:
        window.notice.show_notice("Not found: " + ", ".join(str(p) for p in missing), True)
    found = [p for p in paths if p.exists()]
    if found:
        QTimer.singleShot(0, lambda: window.open_paths(found))
    elif screenshot:
        QTimer.singleShot(300, lambda: shooter._save(1, "nothing to open"))
    else:
        window.canvas.show_message(EMPTY_HINT)
    if os.environ.get("DERMASEG_TIMING"):  # benchmarks: when each step lands (s since run_app)
        def stamp(text: str) -> None:
            print(f"{text} t={time.perf_counter() - t0:.2f}s", flush=True)

        stamp("window shown")
        window.session.model_ready.connect(lambda label, device: stamp(f"model ready ({device})"))
        window.view.drawn.connect(lambda r, p, c: stamp(f"drawn row={r} prediction={p}"))
    app.aboutToQuit.connect(lambda: window.session.shutdown(timeout=5.0))
    code = app.exec()
    code = shooter.exit_code if shooter is not None and shooter.exit_code is not None else code
    if window.session.model_loading() and not _arg(args, "in_process", False):
        # Closed while torch was still importing on its thread: that cannot be interrupted, and
        # letting the interpreter tear down around it aborts. Everything is saved (each review
        # change is written at once), so leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code

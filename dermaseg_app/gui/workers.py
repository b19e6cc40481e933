"""Background work for the window, never on the GUI thread (after superqt's thread workers).

``Worker(fn, *args, **kwargs)`` runs ``fn(job, *args, **kwargs)`` on a ``QThreadPool``. ``job`` is a
:class:`Job`: ``job.cancelled`` says whether to stop, ``job.progress(done, total)`` reports progress.
When ``fn`` is a generator function, each value it yields is emitted through ``yielded`` and the
cancel flag is checked between values.

Signals (all delivered on the GUI thread): ``started``, ``progress(done, total)``,
``yielded(value)``, ``result(value)`` (the return value, not after a cancel), ``errored(exception)``,
``cancelled``, and always ``finished`` last -- a worker that raises still finishes.
"""

from __future__ import annotations

import inspect
import threading
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal


class WorkerSignals(QObject):
    started = Signal()
    progress = Signal(int, int)
    yielded = Signal(object)
    result = Signal(object)
    errored = Signal(object)
    cancelled = Signal()
    finished = Signal()


class Job:
    """What a worker function sees of its worker: the cancel flag and a progress callback."""

    def __init__(self, signals: WorkerSignals, cancel_event: threading.Event) -> None:
        self._signals = signals
        self._cancel = cancel_event

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def cancel_event(self) -> threading.Event:
        return self._cancel

    def progress(self, done: int, total: int) -> None:
        self._signals.progress.emit(int(done), int(total))


class Worker(QRunnable):
    """One piece of background work with start/progress/yield/result/error/cancel/finish signals."""

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.setAutoDelete(False)  # the owner keeps it until ``finished``
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.signals = WorkerSignals()
        self._cancel = threading.Event()
        self._done = threading.Event()
        self.error: BaseException | None = None
        self.error_text: str = ""

    # conveniences so callers can write worker.finished.connect(...)
    def __getattr__(self, name: str) -> Any:
        signals = self.__dict__.get("signals")
        if signals is not None and name in (
            "started", "progress", "yielded", "result", "errored", "cancelled", "finished"
        ):
            return getattr(signals, name)
        raise AttributeError(name)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def cancel_event(self) -> threading.Event:
        return self._cancel

    @property
    def is_done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the work has ended (True) or ``timeout`` seconds passed (False)."""
        return self._done.wait(timeout)

    def start(self, pool: QThreadPool | None = None) -> Worker:
        (pool or QThreadPool.globalInstance()).start(self)
        return self

    def start_daemon(self, name: str = "dermaseg-worker") -> Worker:
        """Run on a daemon Python thread instead of the pool: for work that cannot be interrupted
        (importing torch), so quitting the application never waits for it."""
        threading.Thread(target=self.run, name=name, daemon=True).start()
        return self

    def run(self) -> None:  # runs on a pool thread
        signals = self.signals
        job = Job(signals, self._cancel)
        try:
            signals.started.emit()
            if inspect.isgeneratorfunction(self.fn):
                gen = self.fn(job, *self.args, **self.kwargs)
                value = None
                try:
                    while True:
                        if self._cancel.is_set():
                            gen.close()
                            break
                        signals.yielded.emit(next(gen))
                except StopIteration as stop:
                    value = stop.value
            else:
                value = self.fn(job, *self.args, **self.kwargs)
            if self._cancel.is_set():
                signals.cancelled.emit()
            else:
                signals.result.emit(value)
        except BaseException as exc:  # noqa: BLE001 - reported to the window, never lost
            self.error = exc
            self.error_text = "".join(traceback.format_exception(exc))
            try:
                signals.errored.emit(exc)
            except RuntimeError:  # the receiver is gone (window closed)
                pass
        finally:
            self._done.set()
            try:
                signals.finished.emit()
            except RuntimeError:
                pass


def describe_error(exc: BaseException) -> str:
    """One line for the window: the exception's own message (it names the file), or its type."""
    text = str(exc).strip()
    return text if text else type(exc).__name__

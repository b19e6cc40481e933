"""How a feature tells the user something: the notice banner above the canvas (what must be seen)
and the status bar (a passing message). The window builds one and hands it to its features."""

from __future__ import annotations

from PySide6.QtWidgets import QStatusBar

from dermaseg_app.gui.widgets.status_widgets import NoticeBar


class Notifier:
    def __init__(self, bar: NoticeBar, status_bar: QStatusBar) -> None:
        self.bar = bar
        self.status_bar = status_bar

    def notice(self, text: str, error: bool = True) -> None:
        """A banner the user must see (an error, or a notice with ``error`` False)."""
        self.bar.show_notice(text, error)

    def clear_notice(self) -> None:
        self.bar.clear()

    def status(self, text: str, ms: int = 0) -> None:
        """A passing message in the status bar (``ms`` 0: until the next one)."""
        self.status_bar.showMessage(text, ms)

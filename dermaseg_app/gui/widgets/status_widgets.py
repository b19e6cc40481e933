"""Status-bar pieces: background progress with a cancel button, and a notice banner."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QToolButton, QWidget


class ProgressWidget(QWidget):
    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel()
        self.bar = QProgressBar()
        self.bar.setMaximumWidth(180)
        self.bar.setTextVisible(True)
        self.cancel = QPushButton("Cancel")
        self.cancel.setToolTip("Stop predicting the rest of the folder")
        self.cancel.clicked.connect(self.cancel_requested)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.label)
        row.addWidget(self.bar)
        row.addWidget(self.cancel)
        self.hide()

    def set_progress(self, done: int, total: int, text: str = "Predicting") -> None:
        self.bar.setRange(0, max(1, total))
        self.bar.setValue(done)
        self.bar.setFormat(f"{done} / {total}")
        self.label.setText(text)
        self.setVisible(done < total)

    def finish(self) -> None:
        self.hide()


class NoticeBar(QWidget):
    """A banner above the canvas for errors and notices a user must see (closable)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("noticeBar")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setObjectName("noticeText")
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.clicked.connect(self.hide)
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 4, 4, 4)
        row.addWidget(self.text, 1)
        row.addWidget(close)
        self.messages: list[str] = []
        self.hide()

    def show_notice(self, text: str, error: bool = True) -> None:
        self.messages.append(text)
        shown = self.messages[-3:]
        colour, border = ("#fbe3e3", "#c04040") if error else ("#fff6d6", "#c0a030")
        self.setStyleSheet(f"#noticeBar {{ background: {colour}; border: 1px solid {border}; }}"
                           "#noticeText { color: #202020; }")
        self.text.setText("\n".join(shown))
        self.show()

    def clear(self) -> None:
        self.messages.clear()
        self.hide()


INTERIM_TEXT = "⚠ Interim model: not the final one — check every mask"
INTERIM_TIP = ("This model is an interim one (its version or model card says so): it was trained with "
               "a reduced budget and segments less well than the final model will. Its masks are a "
               "starting point for your review, not a result.")


class InterimBadge(QLabel):
    """An amber status-bar badge, shown while the model is an interim one."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(INTERIM_TEXT, parent)
        self.setObjectName("interimModel")
        self.setStyleSheet("#interimModel { background: #ffe08a; color: #202020; "
                           "border: 1px solid #c0a030; padding: 0 6px; }")
        self.setToolTip(INTERIM_TIP)
        self.hide()

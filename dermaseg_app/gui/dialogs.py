"""The questions and warnings features put to the user, as one object the window hands them
(tests replace a feature's hooks, which default to these, to answer without a dialog)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

UNSAVED_ANSWERS = {QMessageBox.StandardButton.Save: "save", QMessageBox.StandardButton.Discard: "discard"}


class Dialogs:
    """Dialogs over ``parent`` (the window)."""

    def __init__(self, parent: QWidget) -> None:
        self.parent = parent

    def ask_unsaved(self, n: int) -> str:
        """Save / discard / cancel for ``n`` images with unsaved corrections: "save", "discard" or
        "cancel"."""
        box = QMessageBox(QMessageBox.Icon.Question, "Unsaved corrections",
                          f"{n} image(s) have corrections that are not saved.",
                          QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                          | QMessageBox.StandardButton.Cancel, self.parent)
        box.setDefaultButton(QMessageBox.StandardButton.Save)
        answer = box.exec()
        return UNSAVED_ANSWERS.get(QMessageBox.StandardButton(answer), "cancel")

    def warn(self, title: str, text: str) -> None:
        QMessageBox.warning(self.parent, title, text)

    def ask_yes_no(self, title: str, text: str) -> bool:
        """A blocking yes / no question."""
        return QMessageBox.question(self.parent, title, text) == QMessageBox.StandardButton.Yes

    def open_yes_no(self, title: str, text: str, answered: Callable[[bool], None]) -> QMessageBox:
        """A window-modal yes / no question that does not block the event loop (the window keeps
        drawing); ``answered(yes)`` is called when it is answered. Returns the box (Yes is default)."""
        box = QMessageBox(QMessageBox.Icon.Question, title, text,
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self.parent)
        box.setDefaultButton(QMessageBox.StandardButton.Yes)
        box.finished.connect(lambda result: answered(result == QMessageBox.StandardButton.Yes))
        box.open()
        return box

    def choose_folder(self, title: str) -> Path | None:
        folder = QFileDialog.getExistingDirectory(self.parent, title)
        return Path(folder) if folder else None

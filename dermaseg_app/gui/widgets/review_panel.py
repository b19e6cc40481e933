"""Review: the image's status (single keys A, C, R, X, U) and a free-text note, saved at once.

A typed note is sent (``note_edited``) 0.6 s after the last keystroke, when the note field loses
the focus, and whenever ``flush_note`` is called (the window calls it before another image is shown
and when it closes). ``_note_pending`` says whether typed text has not been sent yet.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QTimer, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QGridLayout,
    QGroupBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from dermaseg_app.core.project import ReviewStatus

STATUS_KEYS: dict[ReviewStatus, str] = {
    ReviewStatus.ACCEPTED: "A",
    ReviewStatus.NEEDS_CORRECTION: "C",
    ReviewStatus.REJECTED: "R",
    ReviewStatus.EXCLUDED: "X",
    ReviewStatus.UNREVIEWED: "U",
}
NOTE_SAVE_DELAY_MS = 600


class ReviewPanel(QGroupBox):
    status_chosen = Signal(object)  # ReviewStatus
    note_edited = Signal(str)
    choose_project_folder = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Review", parent)
        self.buttons: dict[ReviewStatus, QPushButton] = {}
        group = QButtonGroup(self)
        group.setExclusive(True)
        grid = QGridLayout()
        for i, (status, key) in enumerate(STATUS_KEYS.items()):
            b = QPushButton(f"{status.label.capitalize()} ({key})")
            b.setCheckable(True)
            b.setToolTip(f"Mark this image as {status.label} (key {key})")
            b.clicked.connect(lambda _=False, s=status: self.status_chosen.emit(s))
            group.addButton(b)
            self.buttons[status] = b
            grid.addWidget(b, i // 2, i % 2)
        self.note = QPlainTextEdit()
        self.note.setPlaceholderText("Note on this image (saved automatically)")
        self.note.setMaximumHeight(80)
        self._note_timer = QTimer(self)
        self._note_timer.setSingleShot(True)
        self._note_timer.setInterval(NOTE_SAVE_DELAY_MS)
        self._note_timer.timeout.connect(self.flush_note)
        self.note.textChanged.connect(self._note_typed)
        self.note.installEventFilter(self)  # focus out: send the note at once
        self._note_pending = False
        self._loading = False
        self.problem = QLabel()
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet("color: #b03030;")
        self.problem.hide()
        self.choose_button = QPushButton("Choose a project folder…")
        self.choose_button.clicked.connect(self.choose_project_folder)
        self.choose_button.hide()
        self.saved_label = QLabel()
        self.saved_label.setStyleSheet("color: #808080;")
        layout = QVBoxLayout(self)
        layout.addLayout(grid)
        layout.addWidget(self.note)
        layout.addWidget(self.saved_label)
        layout.addWidget(self.problem)
        layout.addWidget(self.choose_button)

    def show_record(self, status: ReviewStatus | None, note: str, enabled: bool = True,
                    new_image: bool = False) -> None:
        """Show an image's status and note; ``new_image``: another image than before (the "Saved"
        line, which belonged to the previous one, is cleared)."""
        self.flush_note()
        if new_image:
            self.saved_label.clear()
        self._loading = True
        for s, b in self.buttons.items():
            b.setChecked(s == status)
            b.setEnabled(enabled)
        self.note.setPlainText(note)
        self.note.setEnabled(enabled)
        self._loading = False

    def show_project_problem(self, text: str) -> None:
        self.problem.setText(text)
        self.problem.setVisible(bool(text))
        self.choose_button.setVisible(bool(text))

    def show_saved(self, text: str) -> None:
        self.saved_label.setText(text)

    def _note_typed(self) -> None:
        if not self._loading:
            self._note_pending = True
            self._note_timer.start()

    @property
    def note_pending(self) -> bool:
        return self._note_pending

    def flush_note(self) -> None:
        """Send the typed note now if it has not been sent (from the timer too: inside its own
        timeout the timer is no longer active, so the pending flag, not the timer, decides)."""
        self._note_timer.stop()
        if self._note_pending:
            self._note_pending = False
            self.note_edited.emit(self.note.toPlainText())

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        if obj is self.note and event.type() == QEvent.Type.FocusOut:
            self.flush_note()
        return super().eventFilter(obj, event)

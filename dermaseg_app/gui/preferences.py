"""Edit > Preferences…: the overlay colours, remembered in the settings file.

The ground-truth comparison can use a colour-blind-safe palette (its colours differ, the meaning
and the legend's entries do not), and the prediction's mask a colour that does not clash with the
calibration stickers of dermoscopy images. ``open_preferences(parent, settings)`` asks and saves;
the window then draws with the settings' colours (``MainWindow.apply_colours``).
"""

from __future__ import annotations

from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QVBoxLayout, QWidget

from dermaseg_app.app.settings import GuiSettings
from dermaseg_app.gui.canvas.overlay import COMPARISON_PALETTES, MASK_COLOURS


def _swatches(*rgbs: tuple[int, int, int]) -> QIcon:
    pixmap = QPixmap(18 * len(rgbs), 14)
    pixmap.fill(QColor(60, 60, 60))
    from PySide6.QtGui import QPainter

    p = QPainter(pixmap)
    for i, rgb in enumerate(rgbs):
        p.fillRect(18 * i + 1, 1, 16, 12, QColor(*rgb))
    p.end()
    return QIcon(pixmap)


class PreferencesDialog(QDialog):
    def __init__(self, comparison: str, mask: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Preferences")
        self.comparison = QComboBox()
        for key, palette in COMPARISON_PALETTES.items():
            self.comparison.addItem(_swatches(palette.tp, palette.fp, palette.fn), palette.label, key)
        self.comparison.setCurrentIndex(max(0, self.comparison.findData(comparison)))
        self.mask = QComboBox()
        for key, (label, fill, _contour) in MASK_COLOURS.items():
            self.mask.addItem(_swatches(fill), label, key)
        self.mask.setCurrentIndex(max(0, self.mask.findData(mask)))
        form = QFormLayout()
        form.addRow("Ground-truth comparison", self.comparison)
        form.addRow("Mask colour", self.mask)
        hint = QLabel("The comparison keeps its meaning (true positive, false positive, false negative) "
                      "and its legend; choose colours that stand out from the calibration stickers on "
                      "your dermoscope's images.")
        hint.setWordWrap(True)
        hint.setStyleSheet("color: #707070;")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(hint)
        layout.addWidget(buttons)

    def values(self) -> tuple[str, str]:
        return str(self.comparison.currentData()), str(self.mask.currentData())


def set_preferences(settings: GuiSettings, comparison: str, mask: str) -> None:
    """Keep the chosen colours (``overlay.COMPARISON_PALETTES`` / ``MASK_COLOURS`` keys) in the settings file."""
    settings.comparison_colours = comparison
    settings.mask_colour = mask
    settings.save()


def open_preferences(parent: QWidget, settings: GuiSettings) -> bool:
    """Ask for the colours; True when they were chosen (and saved)."""
    dialog = PreferencesDialog(settings.comparison_colours, settings.mask_colour, parent)
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return False
    set_preferences(settings, *dialog.values())
    return True

"""The main window's size: fitted to its screen, with the canvas first (issue 12).

``fit_to_screen`` sizes a window that has no remembered geometry to its screen's free area;
``dock_widths`` says how wide the case list and the side panel are for a window width, so that the
canvas keeps at least half of it (also at 2x HiDPI, where 1920x1080 is 960x540 logical pixels).
"""

from __future__ import annotations

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QMainWindow

LEFT_MIN_WIDTH, RIGHT_MIN_WIDTH = 180, 280  # logical pixels: the canvas keeps the rest at 2x HiDPI


def dock_widths(window_width: int) -> tuple[int, int]:
    """(list, side panel) widths for a window ``window_width`` logical pixels wide: the list grows
    from its minimum at 2x HiDPI (960) to all its columns at 1920, the side panel is about a fifth;
    the canvas gets at least half."""
    left = max(LEFT_MIN_WIDTH, min(450, int(0.35 * window_width) - 140))
    right = max(RIGHT_MIN_WIDTH, min(340, int(0.2 * window_width)))
    return left, right


def fit_to_screen(window: QMainWindow) -> None:
    """Size a window with no remembered geometry to its screen's free area (less a small margin),
    centred."""
    screen = window.screen() or QGuiApplication.primaryScreen()
    if screen is None:
        window.resize(1400, 860)
        return
    area = screen.availableGeometry()
    w, h = int(area.width() * 0.96), int(area.height() * 0.94)
    window.resize(w, h)
    window.move(area.x() + (area.width() - w) // 2, area.y() + (area.height() - h) // 2)

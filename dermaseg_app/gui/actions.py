"""The window's menus and keyboard shortcuts.

Review keys are single letters (A accept, C needs correction, R reject, X exclude, U unreviewed);
navigation uses N / P, Page Down / Page Up and the arrow keys in the list, so they never clash.
Text fields (the note) take their letters first: typing a note never changes a status.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMenu, QMessageBox

from dermaseg_app.core.imageio import IMAGE_EXTENSIONS
from dermaseg_app.gui.widgets.review_panel import STATUS_KEYS

if TYPE_CHECKING:
    from dermaseg_app.gui.main_window import MainWindow

SHORTCUTS_HELP = """<table>
<tr><td><b>N</b>, Page Down</td><td>next image</td></tr>
<tr><td><b>P</b>, Page Up</td><td>previous image</td></tr>
<tr><td><b>A</b> / <b>C</b> / <b>R</b> / <b>X</b> / <b>U</b></td>
<td>accepted / needs correction / rejected / excluded / unreviewed (all selected rows:
Shift/Ctrl+click in the list)</td></tr>
<tr><td><b>Shift+A</b></td><td>accept and go to the next image</td></tr>
<tr><td><b>Shift+N</b></td><td>next unreviewed image</td></tr>
<tr><td><b>G</b></td><td>ground-truth comparison on/off</td></tr>
<tr><td><b>H</b></td><td>probability heat-map on/off</td></tr>
<tr><td><b>M</b></td><td>mask on/off</td></tr>
<tr><td><b>F</b></td><td>fit the image to the window</td></tr>
<tr><td><b>1</b></td><td>100% (one image pixel per screen pixel)</td></tr>
<tr><td><b>+</b> / <b>-</b>, mouse wheel</td><td>zoom; drag to pan</td></tr>
</table>"""


@dataclass
class Menus:
    window: MainWindow
    recent: QMenu

    def refresh_recent(self) -> None:
        self.recent.clear()
        folders = self.window.settings.recent_folders
        for folder in folders:
            act = self.recent.addAction(folder)
            act.triggered.connect(lambda _=False, f=folder: self.window.open_paths([Path(f)]))
        self.recent.setEnabled(bool(folders))


def _action(window: MainWindow, menu: QMenu, text: str, slot, keys: tuple[str, ...] = (),
            checkable: bool = False) -> QAction:
    act = QAction(text, window)
    if keys:
        act.setShortcuts([QKeySequence(k) for k in keys])
    act.setCheckable(checkable)
    act.triggered.connect(slot)
    menu.addAction(act)
    window.addAction(act)  # shortcuts work while the menu bar is hidden too
    return act


def shortcuts_html() -> str:
    """The whole shortcut sheet: reviewing, then correcting the contour (gui.shortcuts)."""
    from dermaseg_app.gui.shortcuts import editing_html

    return "<p><b>Reviewing</b></p>" + SHORTCUTS_HELP + editing_html()


def build_menus(w: MainWindow) -> Menus:
    bar = w.menuBar()
    file = bar.addMenu("&File")
    _action(w, file, "Open &Images…", lambda: _open_images(w), ("Ctrl+O",))
    _action(w, file, "Open &Folder…", lambda: _open_folder(w), ("Ctrl+Shift+O",))
    sub = _action(w, file, "Include Subfolders", lambda on: _set_recursive(w, on), checkable=True)
    sub.setChecked(w.settings.include_subfolders)
    recent = file.addMenu("&Recent Folders")
    file.addSeparator()
    _action(w, file, "Use Model File…", lambda: _choose_model(w))
    _action(w, file, "Use the Bundled Model", lambda: _use_bundled_model(w))
    file.addSeparator()
    _action(w, file, "&Quit", w.close, ("Ctrl+Q",))

    view = bar.addMenu("&View")
    _action(w, view, "&Fit to Window", w.canvas.fit, ("F",))
    _action(w, view, "&100%", w.canvas.zoom_100, ("1",))
    _action(w, view, "Zoom &In", lambda: w.canvas.zoom_by(1.25), ("+", "="))
    _action(w, view, "Zoom &Out", lambda: w.canvas.zoom_by(0.8), ("-",))
    view.addSeparator()
    _action(w, view, "Ground-Truth &Comparison", w.controls.compare.toggle, ("G",))
    _action(w, view, "Probability &Heat-map", w.controls.heatmap.toggle, ("H",))
    _action(w, view, "&Mask", w.controls.show_mask.toggle, ("M",))
    view.addSeparator()
    _action(w, view, "&Preferences… (colours)", lambda: _preferences(w))

    go = bar.addMenu("&Go")
    _action(w, go, "&Next Image", lambda: w.case_list.step(1), ("N", "PgDown"))
    _action(w, go, "&Previous Image", lambda: w.case_list.step(-1), ("P", "PgUp"))
    _action(w, go, "Next &Unreviewed Image", lambda: next_unreviewed(w), ("Shift+N",))

    review = bar.addMenu("&Review")
    for status, key in STATUS_KEYS.items():
        _action(w, review, status.label.capitalize(), lambda _=False, s=status: w.set_status(s), (key,))
    _action(w, review, "Accept and &Next", lambda: accept_and_next(w), ("Shift+A",))
    review.addSeparator()
    _action(w, review, "Choose Project Folder…", w.choose_project_folder)
    _action(w, review, "Cancel Background Prediction", w.session.cancel_predictions, ("Esc",))
    _action(w, review, "Resume Background Prediction", w.session.resume_predictions)

    help_menu = bar.addMenu("&Help")
    _action(w, help_menu, "Open the Bundled &Samples", lambda: _open_samples(w))
    _action(w, help_menu, "&Keyboard Shortcuts",
            lambda: QMessageBox.information(w, "Keyboard shortcuts", shortcuts_html()))
    menus = Menus(w, recent)
    menus.refresh_recent()
    from dermaseg_app.gui.preferences import apply_colours

    apply_colours(w)
    remember_view_state(w)
    return menus


def remember_view_state(w: MainWindow) -> None:
    """The list's sort and the comparison switch (G) as at the last start, and kept from now on."""
    from PySide6.QtCore import Qt

    s = w.settings
    table = w.case_list.table
    column = s.sort_column if 0 <= s.sort_column < w.session.table.columnCount() else 0
    table.sortByColumn(column, Qt.SortOrder.DescendingOrder if s.sort_descending else Qt.SortOrder.AscendingOrder)
    w.controls.compare.setChecked(s.compare)

    def sorted_by(col: int, order: Qt.SortOrder) -> None:
        s.sort_column, s.sort_descending = int(col), order == Qt.SortOrder.DescendingOrder
        s.save()

    def compare_toggled(on: bool) -> None:
        s.compare = bool(on)
        s.save()

    table.horizontalHeader().sortIndicatorChanged.connect(sorted_by)
    w.controls.compare.toggled.connect(compare_toggled)


def _preferences(w: MainWindow) -> None:
    from dermaseg_app.gui.preferences import open_preferences

    open_preferences(w)


def accept_and_next(w: MainWindow) -> None:
    """Mark the current image accepted and show the next one in the list's order (the one that
    followed it, even when a status filter now hides the accepted image)."""
    from dermaseg_app.core.project import ReviewStatus

    row = w.session.current
    if row < 0:
        return
    following = w.case_list.next_after(row, lambda r: True, wrap=False)
    w.set_status(ReviewStatus.ACCEPTED, [row])
    if following >= 0:
        w.case_list.select_row(following)
    else:
        w.statusBar().showMessage("Accepted; that was the last image of the list", 4000)


def next_unreviewed(w: MainWindow) -> None:
    """Show the next unreviewed image after the current one in the list's order (wrapping)."""
    from dermaseg_app.core.project import ReviewStatus

    entries = w.session.entries
    target = w.case_list.next_after(
        w.session.current, lambda r: entries[r].status == ReviewStatus.UNREVIEWED and not entries[r].error)
    if target >= 0:
        w.case_list.select_row(target)
    else:
        w.statusBar().showMessage("Every image of the list is reviewed", 4000)


def _open_images(w: MainWindow) -> None:
    pattern = " ".join(f"*{ext}" for ext in sorted(IMAGE_EXTENSIONS))
    files, _ = QFileDialog.getOpenFileNames(w, "Open images", "", f"Images ({pattern});;All files (*)")
    if files:
        w.open_paths([Path(f) for f in files])


def _open_folder(w: MainWindow) -> None:
    folder = QFileDialog.getExistingDirectory(w, "Open a folder of images")
    if folder:
        w.open_paths([Path(folder)])


def _set_recursive(w: MainWindow, on: bool) -> None:
    w.settings.include_subfolders = bool(on)
    w.settings.save()


def _open_samples(w: MainWindow) -> None:
    from dermaseg_app import paths

    w.open_paths([paths.samples_dir()])


def _use_bundled_model(w: MainWindow) -> None:
    from dermaseg_app import paths

    w.use_model(paths.default_model_path())


def _choose_model(w: MainWindow) -> None:
    path, _ = QFileDialog.getOpenFileName(w, "Model weights", "", "DermaSeg models (*.safetensors)")
    if path:
        w.use_model(Path(path))

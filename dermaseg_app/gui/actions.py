"""The window's menus and keyboard shortcuts.

Review keys are single letters (A accept, C needs correction, R reject, X exclude, U unreviewed);
navigation uses N / P, Page Down / Page Up and the arrow keys in the list, so they never clash.
Text fields (the note) take their letters first: typing a note never changes a status.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMenu, QMessageBox

from dermaseg_app.app.settings import GuiSettings
from dermaseg_app.core.imageio import IMAGE_EXTENSIONS
from dermaseg_app.core.project import ReviewStatus
from dermaseg_app.gui.canvas.image_view import ImageCanvas
from dermaseg_app.gui.notifier import Notifier
from dermaseg_app.gui.session import ReviewSession
from dermaseg_app.gui.widgets.case_list import CaseListWidget
from dermaseg_app.gui.widgets.display_controls import DisplayControls
from dermaseg_app.gui.widgets.review_panel import STATUS_KEYS

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
class MenuContext:
    """What the menus act on; the window builds it."""

    host: QMainWindow  # the menu bar's window (its actions' keys work while the menu bar is hidden)
    settings: GuiSettings
    session: ReviewSession
    canvas: ImageCanvas
    controls: DisplayControls
    case_list: CaseListWidget
    notifier: Notifier
    open_paths: Callable[[list[Path]], int]
    use_model: Callable[[Path], None]
    set_status: Callable[..., None]  # (status, rows=None)
    choose_project_folder: Callable[[], None]
    open_preferences: Callable[[], None]


@dataclass
class Menus:
    context: MenuContext
    file: QMenu
    view: QMenu
    recent: QMenu
    quit: QAction

    def refresh_recent(self) -> None:
        self.recent.clear()
        folders = self.context.settings.recent_folders
        for folder in folders:
            act = self.recent.addAction(folder)
            act.triggered.connect(lambda _=False, f=folder: self.context.open_paths([Path(f)]))
        self.recent.setEnabled(bool(folders))

    def add_file_actions(self, actions: list[QAction]) -> None:
        """A feature's File actions, above Quit (after a separator)."""
        for act in actions:
            self.file.insertAction(self.quit, act)
        self.file.insertSeparator(self.quit)

    def add_menu_before_view(self, menu: QMenu) -> None:
        self.host.menuBar().insertMenu(self.view.menuAction(), menu)

    @property
    def host(self) -> QMainWindow:
        return self.context.host


def _action(host: QMainWindow, menu: QMenu, text: str, slot, keys: tuple[str, ...] = (),
            checkable: bool = False) -> QAction:
    act = QAction(text, host)
    if keys:
        act.setShortcuts([QKeySequence(k) for k in keys])
    act.setCheckable(checkable)
    act.triggered.connect(slot)
    menu.addAction(act)
    host.addAction(act)  # shortcuts work while the menu bar is hidden too
    return act


def shortcuts_html() -> str:
    """The whole shortcut sheet: reviewing, then correcting the contour (gui.shortcuts)."""
    from dermaseg_app.gui.shortcuts import editing_html

    return "<p><b>Reviewing</b></p>" + SHORTCUTS_HELP + editing_html()


def build_menus(c: MenuContext) -> Menus:
    """File, View, Go, Review and Help; features add theirs through the returned ``Menus``."""
    h = c.host
    bar = h.menuBar()
    file = bar.addMenu("&File")
    _action(h, file, "Open &Images…", lambda: _open_images(c), ("Ctrl+O",))
    _action(h, file, "Open &Folder…", lambda: _open_folder(c), ("Ctrl+Shift+O",))
    sub = _action(h, file, "Include Subfolders", lambda on: _set_recursive(c, on), checkable=True)
    sub.setChecked(c.settings.include_subfolders)
    recent = file.addMenu("&Recent Folders")
    file.addSeparator()
    _action(h, file, "Use Model File…", lambda: _choose_model(c))
    _action(h, file, "Use the Bundled Model", lambda: _use_bundled_model(c))
    file.addSeparator()
    quit_action = _action(h, file, "&Quit", h.close, ("Ctrl+Q",))

    view = bar.addMenu("&View")
    _action(h, view, "&Fit to Window", c.canvas.fit, ("F",))
    _action(h, view, "&100%", c.canvas.zoom_100, ("1",))
    _action(h, view, "Zoom &In", lambda: c.canvas.zoom_by(1.25), ("+", "="))
    _action(h, view, "Zoom &Out", lambda: c.canvas.zoom_by(0.8), ("-",))
    view.addSeparator()
    _action(h, view, "Ground-Truth &Comparison", c.controls.compare.toggle, ("G",))
    _action(h, view, "Probability &Heat-map", c.controls.heatmap.toggle, ("H",))
    _action(h, view, "&Mask", c.controls.show_mask.toggle, ("M",))
    view.addSeparator()
    _action(h, view, "&Preferences… (colours)", c.open_preferences)

    go = bar.addMenu("&Go")
    _action(h, go, "&Next Image", lambda: c.case_list.step(1), ("N", "PgDown"))
    _action(h, go, "&Previous Image", lambda: c.case_list.step(-1), ("P", "PgUp"))
    _action(h, go, "Next &Unreviewed Image", lambda: next_unreviewed(c), ("Shift+N",))

    review = bar.addMenu("&Review")
    for status, key in STATUS_KEYS.items():
        _action(h, review, status.label.capitalize(), lambda _=False, s=status: c.set_status(s), (key,))
    _action(h, review, "Accept and &Next", lambda: accept_and_next(c), ("Shift+A",))
    review.addSeparator()
    _action(h, review, "Choose Project Folder…", c.choose_project_folder)
    _action(h, review, "Cancel Background Prediction", c.session.cancel_predictions, ("Esc",))
    _action(h, review, "Resume Background Prediction", c.session.resume_predictions)

    help_menu = bar.addMenu("&Help")
    _action(h, help_menu, "Open the Bundled &Samples", lambda: _open_samples(c))
    _action(h, help_menu, "&Keyboard Shortcuts",
            lambda: QMessageBox.information(h, "Keyboard shortcuts", shortcuts_html()))
    menus = Menus(c, file, view, recent, quit_action)
    menus.refresh_recent()
    return menus


def remember_view_state(c: MenuContext) -> None:
    """The list's sort and the comparison switch (G) as at the last start, and kept from now on."""
    s = c.settings
    table = c.case_list.table
    column = s.sort_column if 0 <= s.sort_column < c.session.table.columnCount() else 0
    table.sortByColumn(column, Qt.SortOrder.DescendingOrder if s.sort_descending else Qt.SortOrder.AscendingOrder)
    c.controls.compare.setChecked(s.compare)

    def sorted_by(col: int, order: Qt.SortOrder) -> None:
        s.sort_column, s.sort_descending = int(col), order == Qt.SortOrder.DescendingOrder
        s.save()

    def compare_toggled(on: bool) -> None:
        s.compare = bool(on)
        s.save()

    table.horizontalHeader().sortIndicatorChanged.connect(sorted_by)
    c.controls.compare.toggled.connect(compare_toggled)


def accept_and_next(c: MenuContext) -> None:
    """Mark the current image accepted and show the next one in the list's order (the one that
    followed it, even when a status filter now hides the accepted image)."""
    row = c.session.current
    if row < 0:
        return
    following = c.case_list.next_after(row, lambda r: True, wrap=False)
    c.set_status(ReviewStatus.ACCEPTED, [row])
    if following >= 0:
        c.case_list.select_row(following)
    else:
        c.notifier.status("Accepted; that was the last image of the list", 4000)


def next_unreviewed(c: MenuContext) -> None:
    """Show the next unreviewed image after the current one in the list's order (wrapping)."""
    entries = c.session.entries
    target = c.case_list.next_after(
        c.session.current, lambda r: entries[r].status == ReviewStatus.UNREVIEWED and not entries[r].error)
    if target >= 0:
        c.case_list.select_row(target)
    else:
        c.notifier.status("Every image of the list is reviewed", 4000)


def _open_images(c: MenuContext) -> None:
    pattern = " ".join(f"*{ext}" for ext in sorted(IMAGE_EXTENSIONS))
    files, _ = QFileDialog.getOpenFileNames(c.host, "Open images", "", f"Images ({pattern});;All files (*)")
    if files:
        c.open_paths([Path(f) for f in files])


def _open_folder(c: MenuContext) -> None:
    folder = QFileDialog.getExistingDirectory(c.host, "Open a folder of images")
    if folder:
        c.open_paths([Path(folder)])


def _set_recursive(c: MenuContext, on: bool) -> None:
    c.settings.include_subfolders = bool(on)
    c.settings.save()


def _open_samples(c: MenuContext) -> None:
    from dermaseg_app import paths

    c.open_paths([paths.samples_dir()])


def _use_bundled_model(c: MenuContext) -> None:
    from dermaseg_app import paths

    c.use_model(paths.default_model_path())


def _choose_model(c: MenuContext) -> None:
    path, _ = QFileDialog.getOpenFileName(c.host, "Model weights", "", "DermaSeg models (*.safetensors)")
    if path:
        c.use_model(Path(path))

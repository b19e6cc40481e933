"""The case list: thumbnail, name, status, JSC, DSC, uncertainty; sortable; filter by status."""

from __future__ import annotations

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QSize, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from dermaseg_app.core.project import ReviewStatus
from dermaseg_app.gui.case_model import (
    CORRECTED_FILTER,
    ROW_ROLE,
    UNREADABLE_FILTER,
    CaseFilterProxy,
    CaseTableModel,
    Column,
)
from dermaseg_app.gui.thumbnails import THUMB_SIZE


class CaseListWidget(QWidget):
    current_row_changed = Signal(int)  # a row of the source model, -1 for none

    def __init__(self, model: CaseTableModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.proxy = CaseFilterProxy(self)
        self.proxy.setSourceModel(model)

        self.filter = QComboBox()
        self.filter.addItem("All images", None)
        for status in ReviewStatus:
            self.filter.addItem(status.label.capitalize(), status.value)
        self.filter.addItem("Corrected", CORRECTED_FILTER)
        self.filter.addItem("Unreadable", UNREADABLE_FILTER)
        self.filter.currentIndexChanged.connect(self._filter_changed)
        self.count_label = QLabel()

        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        # several rows (Shift/Ctrl+click, Shift+arrows) get a status key at once; the current
        # row is the image shown
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(Column.NAME, Qt.SortOrder.AscendingOrder)
        self.table.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.table.verticalHeader().setDefaultSectionSize(THUMB_SIZE + 6)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(Column.NAME, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(Column.STATUS, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(40)
        for col in (Column.JSC, Column.DSC, Column.UNCERTAINTY, Column.DISAGREEMENT):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setColumnHidden(Column.DISAGREEMENT, True)  # shown while a second model is compared
        self.table.selectionModel().currentRowChanged.connect(self._current_changed)
        # after a sort the current image may have moved far away: keep it in view
        header.sortIndicatorChanged.connect(lambda *_: QTimer.singleShot(0, self._scroll_to_current))
        self.proxy.rowsInserted.connect(self._update_count)
        self.proxy.modelReset.connect(self._update_count)
        self.proxy.layoutChanged.connect(self._update_count)

        top = QHBoxLayout()
        top.addWidget(QLabel("Show:"))
        top.addWidget(self.filter, 1)
        top.addWidget(self.count_label)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)

    # -------------------------------------------------------------- navigation
    def current_row(self) -> int:
        index = self.table.currentIndex()
        return int(index.data(ROW_ROLE)) if index.isValid() else -1

    def view_order(self) -> list[int]:
        """Source rows in the order they are shown (visible rows only)."""
        return [int(self.proxy.index(i, 0).data(ROW_ROLE)) for i in range(self.proxy.rowCount())]

    def select_row(self, row: int) -> bool:
        source = self.model.index(row, 0)
        index = self.proxy.mapFromSource(source)
        if not index.isValid():
            return False
        self.table.selectionModel().setCurrentIndex(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
        )
        self.table.scrollTo(index)
        return True

    def selected_rows(self) -> list[int]:
        """Source rows of the selected (highlighted) rows, in the list's order."""
        rows = self.table.selectionModel().selectedRows()
        return [int(i.data(ROW_ROLE)) for i in sorted(rows, key=lambda i: i.row())]

    def next_after(self, row: int, wanted, wrap: bool = True) -> int:
        """The first source row after ``row`` in the list's order for which ``wanted(row)`` is true
        (from the top again with ``wrap``); -1 when none."""
        order = self.view_order()
        start = order.index(row) + 1 if row in order else 0
        candidates = order[start:] + (order[:start] if wrap else [])
        return next((r for r in candidates if r != row and wanted(r)), -1)

    def step(self, delta: int) -> None:
        n = self.proxy.rowCount()
        if n == 0:
            return
        current = self.table.currentIndex()
        pos = current.row() + delta if current.isValid() else 0
        pos = max(0, min(n - 1, pos))
        self.select_row(int(self.proxy.index(pos, 0).data(ROW_ROLE)))

    def select_first(self) -> None:
        if self.proxy.rowCount():
            self.select_row(int(self.proxy.index(0, 0).data(ROW_ROLE)))

    def _scroll_to_current(self) -> None:
        index = self.table.currentIndex()
        if index.isValid():
            self.table.scrollTo(index, QAbstractItemView.ScrollHint.PositionAtCenter)

    def show_disagreement(self, shown: bool) -> None:
        """The Disagreement column, while a second model is compared: beside the status, so that
        it is in view in a narrow list."""
        header = self.table.horizontalHeader()
        if shown and header.visualIndex(Column.DISAGREEMENT) != Column.JSC:
            header.moveSection(header.visualIndex(Column.DISAGREEMENT), Column.JSC)
        self.table.setColumnHidden(Column.DISAGREEMENT, not shown)

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self.current_row_changed.emit(int(current.data(ROW_ROLE)) if current.isValid() else -1)

    def _filter_changed(self) -> None:
        row = self.current_row()
        self.proxy.set_status_filter(self.filter.currentData())
        if row >= 0 and not self.select_row(row):
            self.select_first()
        self._update_count()

    def _update_count(self, *args) -> None:
        self.count_label.setText(f"{self.proxy.rowCount()} / {self.model.rowCount()}")

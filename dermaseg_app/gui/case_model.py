"""The cases of the opened folder as a Qt table model, with sorting and a status filter.

``CaseEntry`` is the record the window keeps per image (no pixels); ``CaseTableModel`` shows the
entries; ``CaseFilterProxy`` sorts (name, status, JSC, DSC, uncertainty, disagreement) and filters by status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QColor, QIcon, QImage, QPixmap

from dermaseg_app.core.dataset import Case
from dermaseg_app.core.metrics import Scores
from dermaseg_app.core.project import ReviewStatus

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
ROW_ROLE = Qt.ItemDataRole.UserRole + 2

STATUS_COLOURS: dict[ReviewStatus, QColor] = {
    ReviewStatus.UNREVIEWED: QColor(140, 140, 140),
    ReviewStatus.ACCEPTED: QColor(40, 160, 60),
    ReviewStatus.NEEDS_CORRECTION: QColor(220, 150, 0),
    ReviewStatus.REJECTED: QColor(200, 40, 40),
    ReviewStatus.EXCLUDED: QColor(90, 90, 160),
}
STATUS_ORDER = {s: i for i, s in enumerate(ReviewStatus)}
# the invalid index, Qt's default `parent` (a table's rows have no parent); never modified
_NO_PARENT = QModelIndex()
UNREADABLE_FILTER = "unreadable"
CORRECTED_FILTER = "corrected"  # images with a correction (saved or not)
EDITED_MARKS = {"saved": " ✎", "unsaved": " ✎*"}  # extras["edited"]: the mask was corrected (gui.editing)


class Column(IntEnum):
    NAME = 0
    STATUS = 1
    JSC = 2
    DSC = 3
    UNCERTAINTY = 4
    DISAGREEMENT = 5


HEADERS = {
    Column.NAME: "Image",
    Column.STATUS: "Status",
    Column.JSC: "JSC",
    Column.DSC: "DSC",
    Column.UNCERTAINTY: "Unsure",
    Column.DISAGREEMENT: "Disagree",
}
HEADER_TIPS = {
    Column.JSC: "Jaccard index against the ground truth, at the model's threshold",
    Column.DSC: "Dice coefficient against the ground truth, at the model's threshold",
    Column.UNCERTAINTY: "Share of pixels along the predicted border with probability between 0.3 and 0.7",
    Column.DISAGREEMENT: ("Disagreement with the compared model: the share of lesion pixels (of either model) "
                          "where the two masks differ, each model at its own threshold; click to sort, "
                          "highest first"),
}


@dataclass
class CaseEntry:
    case: Case
    status: ReviewStatus = ReviewStatus.UNREVIEWED
    note: str = ""
    error: str = ""  # why the image cannot be shown; "" when fine
    predicted: bool = False
    prediction_error: str = ""
    scores: Scores | None = None  # against the ground truth at the model's threshold
    confusion: Any = None
    uncertainty: float | None = None
    disagreement: float | None = None  # share of lesion pixels where the compared model's mask differs
    seconds: float | None = None  # prediction time of this image (None when from the cache)
    thumbnail: QImage | None = None
    extras: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.case.image.name


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


class CaseTableModel(QAbstractTableModel):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.entries: list[CaseEntry] = []
        self._icons: dict[int, QIcon] = {}
        self.model_threshold: float | None = None  # the threshold the JSC and DSC columns are at
        self.shown_threshold: float | None = None  # the display's (the slider's)

    def set_thresholds(self, model: float | None, shown: float | None) -> None:
        """The list's scores are at the model's threshold; when the slider shows another one, the
        JSC and DSC headers say which threshold theirs is."""
        if (model, shown) != (self.model_threshold, self.shown_threshold):
            self.model_threshold, self.shown_threshold = model, shown
            self.headerDataChanged.emit(Qt.Orientation.Horizontal, Column.JSC, Column.DSC)

    def set_entries(self, entries: list[CaseEntry]) -> None:
        self.beginResetModel()
        self.entries = entries
        self._icons.clear()
        self.endResetModel()

    def all_changed(self) -> None:
        """Every row's values changed (e.g. another model): repainted in place, so the list keeps
        its selection, current row, sort and scroll position (a reset would lose them)."""
        if self.entries:
            self._icons.clear()
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.entries) - 1, len(Column) - 1))

    def entry_changed(self, row: int) -> None:
        self._icons.pop(row, None)
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(Column) - 1))

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = _NO_PARENT) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self.entries)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = _NO_PARENT) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(Column)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):  # noqa: N802
        if orientation != Qt.Orientation.Horizontal:
            return None
        col = Column(section)
        differs = (self.model_threshold is not None and self.shown_threshold is not None
                   and abs(self.model_threshold - self.shown_threshold) > 1e-9)
        if role == Qt.ItemDataRole.DisplayRole:
            if differs and col in (Column.JSC, Column.DSC):
                return f"{HEADERS[col]} @{self.model_threshold:.2f}"
            return HEADERS[col]
        if role == Qt.ItemDataRole.ToolTipRole:
            tip = HEADER_TIPS.get(col)
            if tip and self.model_threshold is not None and col in (Column.JSC, Column.DSC):
                tip += f" ({self.model_threshold:.2f}; the threshold slider changes only the image's panel)"
            return tip
        return None

    def _icon(self, row: int, entry: CaseEntry) -> QIcon | None:
        if entry.error:
            from PySide6.QtWidgets import QApplication, QStyle

            return QApplication.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning)
        if entry.thumbnail is None:
            return None
        icon = self._icons.get(row)
        if icon is None:
            icon = QIcon(QPixmap.fromImage(entry.thumbnail))
            self._icons[row] = icon
        return icon

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row, col = index.row(), Column(index.column())
        e = self.entries[row]
        if role == ROW_ROLE:
            return row
        if role == Qt.ItemDataRole.DisplayRole:
            if col == Column.NAME:
                return e.name + EDITED_MARKS.get(e.extras.get("edited"), "")
            if col == Column.STATUS:
                return "unreadable" if e.error else e.status.label
            no_truth = "—" if e.case.ground_truth is None and not e.error else ""
            if col == Column.JSC:
                return _fmt(e.scores.jsc) if e.scores else no_truth
            if col == Column.DSC:
                return _fmt(e.scores.dsc) if e.scores else no_truth
            if col == Column.UNCERTAINTY:
                return "" if e.uncertainty is None else f"{100 * e.uncertainty:.0f}%"
            if col == Column.DISAGREEMENT:
                return "" if e.disagreement is None else f"{100 * e.disagreement:.0f}%"
        if role == SORT_ROLE:
            missing = float("inf")
            if col == Column.NAME:
                return e.name.lower()
            if col == Column.STATUS:
                return -1 if e.error else STATUS_ORDER[e.status]
            if col == Column.JSC:
                return e.scores.jsc if e.scores else missing
            if col == Column.DSC:
                return e.scores.dsc if e.scores else missing
            if col == Column.UNCERTAINTY:
                return -e.uncertainty if e.uncertainty is not None else missing  # most unsure first
            if col == Column.DISAGREEMENT:
                return -e.disagreement if e.disagreement is not None else missing  # most disputed first
        if role == Qt.ItemDataRole.DecorationRole and col == Column.NAME:
            return self._icon(row, e)
        if role == Qt.ItemDataRole.ForegroundRole:
            if e.error:
                return QColor(200, 40, 40)
            if col == Column.STATUS:
                return STATUS_COLOURS[e.status]
        if role == Qt.ItemDataRole.ToolTipRole:
            if e.error:
                return f"{e.case.image}\ncannot be opened: {e.error}"
            tip = str(e.case.image)
            if e.case.ground_truth is None:
                tip += "\nno ground truth: reviewed without comparison"
            if e.prediction_error:
                tip += f"\nprediction failed: {e.prediction_error}"
            if e.extras.get("edited"):
                tip += "\ncorrected" + (", not saved yet" if e.extras["edited"] == "unsaved" else " (saved)")
            if e.note:
                tip += f"\nnote: {e.note}"
            return tip
        return None


class CaseFilterProxy(QSortFilterProxyModel):
    """Sorts by SORT_ROLE; shows all cases, one status, the corrected or the unreadable ones."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(True)
        self._status: str | None = None

    def set_status_filter(self, status: str | None) -> None:
        if hasattr(self, "beginFilterChange"):  # Qt >= 6.9
            self.beginFilterChange()
            self._status = status
            self.endFilterChange()
        else:
            self._status = status
            self.invalidateFilter()

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex | QPersistentModelIndex) -> bool:  # noqa: N802
        if self._status is None:
            return True
        model = self.sourceModel()
        entry: CaseEntry = model.entries[source_row]
        if self._status == UNREADABLE_FILTER:
            return bool(entry.error)
        if self._status == CORRECTED_FILTER:
            return bool(entry.extras.get("edited"))
        return not entry.error and entry.status.value == self._status

"""The Model menu (issue 18): choose the model, compare it with a second one, use their ensemble.

- **Open Model…** and **Recent Models** (the models opened or compared before, and those shipped in
  ``models/``) switch the primary model: the window predicts again in the background (Cancel /
  Esc stops it) and corrections stay (``gui.editing`` keeps every real correction).
- **Compare With Model…** draws a second model's outline, dashed, over the first's; the list's
  *Disagree* column is the share of lesion pixels where the two masks differ (``core.metrics``).
- **Ensemble (mean of probabilities)** is enabled only when, on the open folder's ground truth,
  the ensemble's mean JSC is higher than both models' (``app.ensemble``; measured once both
  have predicted the folder).

The window builds it with a ``ModelMenuContext`` and places ``menu`` and ``status_label``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog, QLabel, QMainWindow, QMenu

from dermaseg_app.app.settings import GuiSettings
from dermaseg_app.gui.notifier import Notifier
from dermaseg_app.gui.session import ReviewSession
from dermaseg_app.gui.widgets.case_list import CaseListWidget
from dermaseg_app.gui.widgets.display_controls import DisplayControls

MODEL_FILTER = "DermaSeg models (*.safetensors)"
NO_VERDICT = ("Needs a second model (Model > Compare With Model…) and a folder with ground truth, both models' "
              "masks predicted: the ensemble is offered only when it scores higher than both there "
              "(or measure it with: dermaseg evaluate DIR --model A --ensemble-with B)")


@dataclass
class ModelMenuContext:
    host: QMainWindow
    settings: GuiSettings
    session: ReviewSession
    controls: DisplayControls
    case_list: CaseListWidget
    notifier: Notifier
    use_model: Callable[..., None]  # (path, ensemble_with=None): the window's switch


def bundled_models() -> list[Path]:
    from dermaseg_app import paths

    folder = paths.default_model_path().parent
    try:
        return sorted(folder.glob("*.safetensors"))
    except OSError:
        return []


class ModelMenu(QObject):
    def __init__(self, context: ModelMenuContext, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.context = c = context
        self.session = c.session
        self.second = c.session.second
        self.choose_file: Callable[[str], Path | None] = self._ask_file  # test hook
        self.menu = QMenu("&Model", c.host)
        self.menu.setToolTipsVisible(True)
        self.open_action = self._action("&Open Model…", self.open_model)
        self.recent = self.menu.addMenu("&Recent Models")
        self.recent.aboutToShow.connect(self.refresh_recent)
        self.menu.addSeparator()
        self.compare_action = self._action("&Compare With Model…", self.choose_comparison)
        self.stop_action = self._action("&Stop Comparing", self.stop_comparing)
        self.second_action = self._action("Compared Model's Contour", self._second_toggled, ("J",), True)
        self.second_action.setChecked(c.controls.second.isChecked())
        c.controls.second.toggled.connect(self.second_action.setChecked)
        self.menu.addSeparator()
        self.ensemble_action = self._action("&Ensemble (mean of probabilities)",
                                            lambda: self.set_ensemble(self.ensemble_action.isChecked()),
                                            checkable=True)
        self.status_label = QLabel("")  # the compared model, in the status bar
        self.second.changed.connect(self.refresh)
        self.second.verdict_changed.connect(self._verdict)
        self.session.model_header_read.connect(lambda _label: self.refresh())
        self.refresh_recent()
        self.refresh()

    def _action(self, text: str, slot, keys: tuple[str, ...] = (), checkable: bool = False) -> QAction:
        act = QAction(text, self.context.host)
        act.setShortcuts([QKeySequence(k) for k in keys])
        act.setCheckable(checkable)
        act.triggered.connect(slot)
        self.menu.addAction(act)
        self.context.host.addAction(act)  # the key works while the menu bar is hidden
        return act

    def _second_toggled(self) -> None:
        self.context.controls.second.setChecked(self.second_action.isChecked())

    def _ask_file(self, title: str) -> Path | None:
        path, _ = QFileDialog.getOpenFileName(self.context.host, title, "", MODEL_FILTER)
        return Path(path) if path else None

    # ------------------------------------------------------------------ the primary model
    def open_model(self) -> None:
        path = self.choose_file("Open a model")
        if path is not None:
            self.use_model(path)

    def use_model(self, path: Path) -> None:
        self.context.settings.add_recent_model(path)
        self.context.use_model(path)  # saves the settings
        self.refresh()

    def refresh_recent(self) -> None:
        self.recent.clear()
        seen: set[str] = set()
        models = [Path(p) for p in self.context.settings.recent_models] + bundled_models()
        for path in models:
            key = str(path.resolve())
            if key in seen or not path.is_file():
                continue
            seen.add(key)
            act = self.recent.addAction(path.name)
            act.setToolTip(str(path))
            act.triggered.connect(lambda _=False, p=path: self.use_model(p))
        self.recent.setEnabled(bool(seen))

    # ------------------------------------------------------------------ the compared model
    def choose_comparison(self) -> None:
        path = self.choose_file("Compare with a model")
        if path is not None:
            self.compare_with(path)

    def compare_with(self, path: Path) -> bool:
        if self.session.ensemble_with is not None:  # the ensemble was of the old pair
            self.context.use_model(self.session.model_path)
        self.context.settings.add_recent_model(path)
        self.context.settings.save()
        ok = self.second.use(path)
        if ok:
            self.context.notifier.status(f"Comparing with {self.second.label}", 5000)
        return ok

    def stop_comparing(self) -> None:
        if self.session.ensemble_with is not None:
            self.context.use_model(self.session.model_path)
        self.second.clear()

    # ------------------------------------------------------------------ the ensemble
    def set_ensemble(self, on: bool) -> None:
        s = self.session
        if on and self.second.active and s.model_path is not None:
            self.context.use_model(s.model_path, ensemble_with=self.second.path)
        elif not on and s.ensemble_with is not None:
            self.context.use_model(s.model_path)
        self.refresh()

    def _verdict(self, verdict) -> None:
        if verdict is not None and verdict.n:
            self.context.notifier.status(verdict.describe(self._primary_label(), self.second.label), 10000)
        self.refresh()

    def _primary_label(self) -> str:
        header = self.session.header
        a = getattr(header, "a", header)  # the ensemble's first model, else the model
        return a.label if a is not None else "the model"

    def refresh(self) -> None:
        c, s, second = self.context, self.session, self.second
        active = second.active
        c.case_list.show_disagreement(active)
        c.controls.set_second_available(active)
        self.stop_action.setEnabled(active)
        self.second_action.setEnabled(active)
        ensemble_on = s.ensemble_with is not None
        verdict = second.verdict
        self.ensemble_action.setChecked(ensemble_on)
        self.ensemble_action.setEnabled(ensemble_on or (active and verdict is not None and verdict.better))
        tip = verdict.describe(self._primary_label(), second.label) if verdict is not None else NO_VERDICT
        self.ensemble_action.setToolTip(tip)
        self.ensemble_action.setStatusTip(tip)
        if not active:
            self.status_label.setText("")
            self.status_label.hide()
        else:
            state = " (failed)" if second.error else "" if second.loaded else " (loading…)"
            self.status_label.setText(f"Compared: {second.label}{state}")
            self.status_label.setToolTip(second.error or str(second.path))
            self.status_label.show()

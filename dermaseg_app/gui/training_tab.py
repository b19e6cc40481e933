"""The Training tab: fine-tune the model on the reviewer's saved corrections with one click.

The window puts the canvas under a "Review" tab and a :class:`TrainingTab` beside it
("Training"); the tab gets what it works with as a :class:`TrainingContext` (the session, the
settings, a notifier, a dialogs object and the window's "use this model") and says what the window
should do with signals (``title_changed``: its tab's title; ``review_requested``: show the Review
tab). The tab shows how many corrected images the open folder's project holds
(and which have problems), the base model and where the new one is written, the settings, and
one button; the run goes on a worker thread (``app.finetune.finetune_job`` driving
``ml.training.train``) with a progress bar, a live plot, a log, and at the end the before/after
validation JSC, the new model's path and card, and "Use this model".

It refreshes (the tab's title shows the count too) when a folder is opened
(``session.cases_opened``), a correction is saved (the window connects the editing's ``saved``), a corrected image's
review status changes (checked on ``session.summary_changed``), the model changes
(``session.model_header_read`` / ``model_failed``) and when the tab is shown. While it trains, the folder's
background prediction is paused (it would compete for the same cores) and resumed afterwards;
the torch thread count is the app's (not set here). Errors are shown in the tab and in the
window's notice bar. Closing the window while it trains asks first (``confirm_close``, with the
``ask_stop`` hook), then cancels: the engine keeps the best model so far.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QThreadPool, QTimer, Signal
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from dermaseg_app.app.finetune import (
    MIN_CASES,
    FinetuneOutcome,
    FinetuneRequest,
    default_output,
    finetune_job,
    training_cases,
)
from dermaseg_app.app.settings import GuiSettings
from dermaseg_app.core.dataset import Case
from dermaseg_app.core.project import Project
from dermaseg_app.core.training_set import TrainingSet
from dermaseg_app.gui.dialogs import Dialogs
from dermaseg_app.gui.notifier import Notifier
from dermaseg_app.gui.session import ReviewSession
from dermaseg_app.gui.widgets.training_panel import ResultBox, SettingsForm, TrainingPlot
from dermaseg_app.gui.workers import Worker, describe_error

PROBLEMS_SHOWN = 6


@dataclass
class TrainingContext:
    """What the Training tab works with; the window builds it."""

    session: ReviewSession
    settings: GuiSettings
    notifier: Notifier
    dialogs: Dialogs
    use_model: Callable[[Path], None]  # predict with this model from now on (remembered)


def _eta(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"



def _replay_name(folder: Path) -> str:
    from dermaseg_app.paths import replay_dir

    return "the 24 bundled dermoscopy images" if folder == replay_dir() else str(folder)

def _folder_lines(o: FinetuneOutcome) -> list[str]:
    """The before/after score on the folder's images with ground truth, said plainly."""
    before, after = o.folder_before, o.folder_after
    if before is None:
        return []
    where = f"the folder's {before.n} image{'s' if before.n != 1 else ''} with ground truth"
    if before.n_trained:
        where += f" ({before.n_trained} of them corrected and trained on)"
    if not before.full_size:
        where += ", scored at the model's input size"
    if after is None:
        return [f"Mean JSC on {where}: before <b>{_pct(before.jsc)}</b> (the new model was not scored)."]
    change = 100 * (after.jsc - before.jsc)
    lines = [f"Mean JSC on {where}: before <b>{_pct(before.jsc)}</b> → after <b>{_pct(after.jsc)}</b> "
             f"({change:+.1f} points)"]
    if after.jsc < before.jsc:
        lines.append("<span style='color:#b03030'>On the folder's ground truth the new model scores lower "
                     "than the model it started from.</span>")
    return lines


class TrainingTab(QWidget):
    """The Training tab's page and its controller."""

    started = Signal()
    finished = Signal(object)  # FinetuneOutcome, or None when the run failed
    refreshed = Signal()
    title_changed = Signal(str)  # the tab's title ("Training (n)")
    review_requested = Signal()  # "Use this model": show the Review tab

    def __init__(self, context: TrainingContext) -> None:
        super().__init__()
        self.context = context
        self.session = context.session
        self.notifier = context.notifier
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self.worker: Worker | None = None
        self.outcome: FinetuneOutcome | None = None
        self.error = ""
        self.corrections: TrainingSet = TrainingSet()
        self.project: Project | None = None
        self.overrides: dict[str, Any] = {}  # extra TrainConfig fields (tests: tiny batches)
        self._cancel: threading.Event | None = None
        self._paused_predictions = False
        self._watched: tuple[list, list[int]] = ([], [])
        self._seen_statuses: list[object] = []
        # test hook: answer "stop the fine-tuning and close?" without a dialog
        self.ask_stop: Callable[[], bool] = self._ask_stop
        self._build()
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(150)
        self._refresh_timer.timeout.connect(self.refresh)
        self._load_settings()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        intro = QLabel("<b>Fine-tune the model on your corrections.</b> The images whose corrected mask "
                       "you saved (File › Save Correction) teach the model your contours; images marked "
                       "excluded or rejected are left out. The current model is never changed: a new "
                       "model file is written in the project folder.")
        intro.setWordWrap(True)

        self.count = QLabel()
        self.count.setObjectName("correctionCount")
        self.count.setWordWrap(True)
        self.count.setTextFormat(Qt.TextFormat.RichText)
        self.problems = QLabel()
        self.problems.setObjectName("correctionProblems")
        self.problems.setWordWrap(True)
        self.problems.setStyleSheet("color: #b03030;")
        data_box = QGroupBox("Corrected images")
        data_col = QVBoxLayout(data_box)
        data_col.addWidget(self.count)
        data_col.addWidget(self.problems)

        self.base = QLabel()
        self.base.setObjectName("baseModel")
        self.base.setWordWrap(True)
        self.base.setTextFormat(Qt.TextFormat.RichText)
        self.output = QLineEdit()
        self.output.setObjectName("outputPath")
        self.output.setToolTip("Where the new model is written (with its model card beside it). Leave empty for "
                               "a new file in the project's models folder; an existing file is never replaced.")
        model_box = QGroupBox("Model")
        model_col = QVBoxLayout(model_box)
        model_col.addWidget(self.base)
        model_col.addWidget(QLabel("New model file:"))
        model_col.addWidget(self.output)

        self.settings_form = SettingsForm()
        self.settings_form.changed.connect(self._update_button)

        self.start_button = QPushButton("Fine-tune")
        self.start_button.setObjectName("startFinetune")
        self.start_button.setMinimumHeight(44)
        font = self.start_button.font()
        font.setPointSizeF(font.pointSizeF() * 1.2)
        font.setBold(True)
        self.start_button.setFont(font)
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancelFinetune")
        self.cancel_button.setMinimumHeight(44)
        self.cancel_button.setEnabled(False)
        self.cancel_button.setToolTip("Stop after the current step; the best model so far is kept")
        self.cancel_button.clicked.connect(self.cancel)
        self.reason = QLabel()
        self.reason.setObjectName("startReason")
        self.reason.setWordWrap(True)
        self.reason.setStyleSheet("color: #707070;")
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button, 3)
        buttons.addWidget(self.cancel_button, 1)

        left = QWidget()
        left_col = QVBoxLayout(left)
        left_col.setContentsMargins(0, 0, 0, 0)
        for wdg in (intro, data_box, model_box, self.settings_form):
            left_col.addWidget(wdg)
        left_col.addLayout(buttons)
        left_col.addWidget(self.reason)
        left_col.addStretch(1)
        left.setMinimumWidth(380)
        left.setMaximumWidth(520)

        self.bar = QProgressBar()
        self.bar.setObjectName("trainingProgress")
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.bar.setFormat("%p%")
        self.status = QLabel("Not started.")
        self.status.setObjectName("trainingStatus")
        self.status.setWordWrap(True)
        self.plot = TrainingPlot()
        self.log = QPlainTextEdit()
        self.log.setObjectName("trainingLog")
        self.log.setReadOnly(True)
        self.log.setMinimumHeight(80)
        self.log.setMaximumHeight(110)
        self.log.setPlaceholderText("One line per epoch appears here.")
        progress_box = QGroupBox("Progress")
        progress_col = QVBoxLayout(progress_box)
        progress_col.addWidget(self.bar)
        progress_col.addWidget(self.status)
        progress_col.addWidget(self.plot, 1)
        progress_col.addWidget(self.log)
        self.result = ResultBox()
        self.result.use_model.connect(self.use_new_model)

        right = QWidget()
        right_col = QVBoxLayout(right)
        right_col.setContentsMargins(0, 0, 0, 0)
        right_col.addWidget(progress_box, 1)
        right_col.addWidget(self.result)

        page = QWidget()
        row = QHBoxLayout(page)
        row.addWidget(left, 2)
        row.addWidget(right, 3)
        self.scroll = QScrollArea()
        self.scroll.setObjectName("trainingTab")
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(page)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.scroll)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def _load_settings(self) -> None:
        s = self.context.settings
        self.settings_form.replay.setText(s.finetune_replay)
        self.settings_form.base_val.setText(s.finetune_base_val)
        self.settings_form.keep.setChecked(s.finetune_keep_dermoscopy)

    def _save_settings(self) -> None:
        s = self.context.settings
        form = self.settings_form
        s.finetune_replay = form.replay.text().strip()
        s.finetune_base_val = form.base_val.text().strip()
        s.finetune_keep_dermoscopy = form.keep.isChecked()
        s.save()

    # ------------------------------------------------------------------ state
    @property
    def running(self) -> bool:
        return self.worker is not None and not self.worker.is_done

    def schedule_refresh(self, *_args) -> None:
        self._refresh_timer.start()

    def _watch_statuses(self) -> None:
        """Remember the rows of the corrected images and their statuses (paths resolved once here)."""
        images = {c.image.resolve() for c in self.corrections.cases + self.corrections.left_out}
        entries = self.session.entries
        self._watched = (entries, [i for i, e in enumerate(entries) if e.case.image.resolve() in images])
        self._seen_statuses = self._statuses()

    def _statuses(self) -> list[object]:
        entries, rows = self._watched
        if entries is not self.session.entries:
            return []
        return [entries[i].status for i in rows]

    def statuses_maybe_changed(self) -> None:
        """The folder's summary changed (a prediction arrived, or a status was set): refresh only
        when a corrected image's review status changed (cheap: the statuses are in memory)."""
        if self._statuses() != self._seen_statuses:
            self.schedule_refresh()

    def _primary_project(self) -> Project | None:
        projects = self.session.projects
        if self.session.current >= 0 and self.session.current < len(self.session.entries):
            project = projects.project_for(self.session.entries[self.session.current].case.image)
            if project is not None:
                return project
        return next(iter(projects.projects.values()), None)

    def _model(self) -> tuple[Path | None, str, str]:
        """(path, label, why it cannot be used or "")."""
        header = self.session.header
        if header is not None:
            return header.path, header.label, self.session.model_error
        from dermaseg_app import paths

        path = self.session.model_path or paths.default_model_path()
        return path, path.name, self.session.model_error or "the model is not read yet"

    def refresh(self) -> None:
        """Count the corrected images of the open folder's project(s) and update the tab."""
        self._refresh_timer.stop()
        projects = list(self.session.projects.projects.values())
        ts = training_cases(projects)  # (images of two folders may share a name: kept apart)
        self.corrections = ts
        self.project = self._primary_project()
        n = len(ts.cases)
        if self.project is None:
            where = "No folder is open (or its project folder cannot be written)."
            self.count.setText(where)
        else:
            more = f" in {len(projects)} folders" if len(projects) > 1 else ""
            self.count.setText(f"<b>{n}</b> corrected image{'s' if n != 1 else ''} to train on{more} "
                               f"<br><span style='color:#707070'>Project: {html.escape(str(self.project.project_dir))}"
                               "</span>")
        lines = [f"⚠ {html.escape(str(p))}" for p in ts.problems[:PROBLEMS_SHOWN]]
        if len(ts.problems) > PROBLEMS_SHOWN:
            lines.append(f"and {len(ts.problems) - PROBLEMS_SHOWN} more with problems")
        if ts.left_out:
            lines.append(f"<span style='color:#707070'>{len(ts.left_out)} corrected image(s) marked excluded "
                         "or rejected are left out.</span>")
        self.problems.setText("<br>".join(lines))
        self.problems.setVisible(bool(lines))
        path, label, problem = self._model()
        if path is None:
            self.base.setText("No model.")
        else:
            state = f"<br><span style='color:#b03030'>{html.escape(problem)}</span>" if problem else ""
            header = self.session.header
            if header is not None and header.interim:
                state += ("<br><span style='color:#a06000'>An interim model (not the final one): the "
                          "fine-tuned model inherits its limits.</span>")
            self.base.setText(f"Base model: <b>{html.escape(label)}</b><br>"
                              f"<span style='color:#707070'>{html.escape(str(Path(path).absolute()))}</span>{state}")
        if self.project is not None and self.session.header is not None:
            default = str(default_output(self.project.project_dir, self.session.header.name))
            self.output.setPlaceholderText(default)
            self.output.setToolTip(f"Leave empty for {default} (a new file, never an existing model)")
        else:
            self.output.setPlaceholderText("<project folder>/models/<model>-ft-<date>.safetensors")
        self._watch_statuses()
        self.title_changed.emit(f"Training ({n})" if n else "Training")
        self._update_button()
        self.refreshed.emit()

    def _start_problem(self) -> str:
        n = len(self.corrections.cases)
        if self.running:
            return "Fine-tuning is running."
        if self.project is None:
            return "Open a folder of images and save corrections first."
        path, _label, problem = self._model()
        if problem or path is None:
            return f"No model to start from: {problem or 'none'}"
        if n < MIN_CASES:
            return (f"Correct at least {MIN_CASES} images and save them (File › Save Correction); "
                    f"{n} saved so far.")
        return self.settings_form.problem()

    def _update_button(self) -> None:
        n = len(self.corrections.cases)
        self.start_button.setText(f"Fine-tune on {n} correction{'s' if n != 1 else ''}")
        if self.running:
            self.start_button.setEnabled(False)
            return
        problem = self._start_problem()
        self.start_button.setEnabled(not problem)
        self.start_button.setToolTip(problem)
        if problem:
            self.reason.setText(problem)
        elif not self.error:
            self.reason.setText("")

    # ------------------------------------------------------------------ running
    def start(self) -> bool:
        """Start fine-tuning on the corrected images (the button); False when it cannot start."""
        self.refresh()
        problem = self._start_problem()
        if problem:
            self.reason.setText(problem)
            return False
        assert self.project is not None
        path, _label, _problem = self._model()
        assert path is not None
        self._save_settings()
        v = self.settings_form.values()
        text = self.output.text().strip()
        header = self.session.header
        out = Path(text) if text else default_output(self.project.project_dir, header.name if header else "model")
        request = FinetuneRequest(base_model=Path(path), cases=list(self.corrections.cases),
                                  project_dir=self.project.project_dir, out=out, epochs=v.epochs,
                                  replay=v.replay, replay_share=v.replay_share, base_val=v.base_val,
                                  device=v.device, overrides=dict(self.overrides),
                                  ground_truth=self._ground_truth_cases())
        self.outcome = None
        self.error = ""
        self._cancel = threading.Event()
        self.plot.clear()
        self.log.clear()
        self.bar.setRange(0, 0)  # busy until the first step
        self.status.setText("Preparing…")
        self.status.setStyleSheet("")
        self.result.reset("Running…")
        self.reason.setText(f"Writing the new model to {out}")
        if self.session.predicting():  # the folder's prediction would compete for the same cores
            self.session.cancel_predictions()
            self._paused_predictions = True
            self._log("Background prediction of the folder paused while fine-tuning.")
        worker = Worker(finetune_job, request, self._cancel)
        worker.yielded.connect(self._event)
        worker.result.connect(self._done)
        worker.errored.connect(self._failed)
        worker.finished.connect(self._ended)
        self.worker = worker
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.settings_form.set_enabled(False)
        self.output.setEnabled(False)
        self._log(f"Fine-tuning {path.name} on {len(request.cases)} corrected images, {v.epochs} epochs"
                  + (f", replaying {_replay_name(v.replay)} ({v.replay_share:.0%} of every batch)"
                     if v.replay else ", no replay"))
        worker.start(self.pool)
        self.started.emit()
        return True

    def _ground_truth_cases(self) -> list[Case]:
        """The open folder's images with ground truth (not excluded, readable): the model is scored
        on all of them before and after fine-tuning."""
        from dermaseg_app.core.project import ReviewStatus

        return [e.case for e in self.session.entries
                if e.case.ground_truth is not None and not e.error and e.status != ReviewStatus.EXCLUDED]

    def cancel(self) -> None:
        if self._cancel is not None and self.running:
            self._cancel.set()
            self.cancel_button.setEnabled(False)
            self.status.setText("Cancelling after the current step…")

    def wait(self, timeout: float = 60.0) -> bool:
        return self.worker is None or self.worker.wait(timeout)

    def _log(self, text: str) -> None:
        self.log.appendPlainText(text)

    def _event(self, ev: object) -> None:
        # the engine's one event formatter (the window's wording); imported here, when training
        # runs: the window does not load the training code before
        from dermaseg_app.ml.training.report import format_event

        kind = type(ev).__name__
        if kind == "Preparing":
            self.status.setText(ev.text)
        elif kind == "Prepared":
            held = (f"{ev.n_val} held out to choose the epoch" if ev.n_val else
                    "none held out (fewer than 4): the last epoch is kept")
            self._log(f"{ev.n_train} images to train on, {held}.")
            for name, reason in ev.skipped:
                self._log(f"Left out {name}: {reason}")
            if ev.skipped:
                self.notifier.notice(
                    f"Fine-tuning leaves out {len(ev.skipped)} corrected image(s) that cannot be read: "
                    + "; ".join(f"{n}: {r}" for n, r in ev.skipped[:3]), True)
            if ev.before_jsc is not None:
                self._log(f"Before fine-tuning: validation JSC {_pct(ev.before_jsc)}")
            if ev.folder_before is not None:
                self._log(f"Before fine-tuning: mean JSC {_pct(ev.folder_before.jsc)} on the folder's "
                          f"{ev.folder_before.n} images with ground truth")
            for name, reason in ev.folder_skipped:
                self._log(f"Not scored against its ground truth: {name}: {reason}")
            self.plot.set_before(ev.before_jsc)
        elif kind == "TrainStarted":
            self.bar.setRange(0, max(1, ev.steps_per_epoch * ev.epochs))
            self.bar.setValue(ev.steps_per_epoch * (ev.start_epoch - 1) + ev.start_step)
            self.plot.set_epochs(ev.epochs, ev.steps_per_epoch)
            self.status.setText(f"Training on {ev.device}…")
            self._log(format_event(ev, audience="window"))
            if ev.notice:
                self.notifier.notice(ev.notice, False)
        elif kind == "StepProgress":
            self.bar.setValue(ev.global_step)
            self.status.setText(format_event(ev, audience="window"))
            if "g" in ev.losses:
                self.plot.add_loss(ev.global_step, float(ev.losses["g"]))
        elif kind == "EpochEnd":
            jsc = ev.val.jsc if ev.val is not None else None
            base = ev.base_val.jsc if ev.base_val is not None else None
            self.plot.add_epoch(ev.epoch, jsc, base)
            self._log(format_event(ev, audience="window"))
        elif kind in ("TrainCancelled", "TrainFinished"):
            self._log(format_event(ev, audience="window"))

    def _done(self, outcome: FinetuneOutcome) -> None:
        self.outcome = outcome
        o = outcome
        lines = []
        if o.cancelled:
            if o.model_path is not None:
                lines.append(f"<b>Cancelled</b> after {o.epochs_done} epoch(s). The best model so far "
                             f"(epoch {o.best_epoch}) is kept.")
            else:
                lines.append("<b>Cancelled</b> before the first epoch ended: no model was written.")
        elif o.fell_back_to_base:
            lines.append("<b>Done.</b> No epoch kept the dermoscopy score within 0.01 JSC of the base model, "
                         "so the new file is the base model unchanged.")
        else:
            training = (f" ({_eta(o.train_seconds)} training, the rest reading and scoring the images)"
                        if o.train_seconds is not None else "")
            lines.append(f"<b>Done</b> in {_eta(o.seconds)}{training}: {o.epochs_done} "
                         f"epoch{'s' if o.epochs_done != 1 else ''} on {o.n_train} corrected images.")
        lines.extend(_folder_lines(o))
        if o.n_val and (o.before_jsc is not None or o.after_jsc is not None):
            change = ""
            if o.before_jsc is not None and o.after_jsc is not None:
                change = f" ({100 * (o.after_jsc - o.before_jsc):+.1f} points)"
            lines.append(f"Validation JSC on {o.n_val} held-out correction(s): before <b>{_pct(o.before_jsc)}</b>"
                         f" → after <b>{_pct(o.after_jsc)}</b>{change}"
                         + (f", epoch {o.best_epoch}" if o.best_epoch else "")
                         + (" <span style='color:#707070'>(few images: a rough guide, not a test)</span>"
                            if o.n_val < 5 else ""))
            if o.before_jsc is not None and o.after_jsc is not None and o.after_jsc < o.before_jsc:
                lines.append("<span style='color:#b03030'>The new model scores lower than the base model on the "
                             "held-out corrections: keep the current model, or correct more images and "
                             "try again.</span>")
        elif not o.n_val:
            lines.append("No corrections were held out for validation (fewer than 4), so there is no "
                         "before/after score: check the new model on your images before relying on it.")
        card = ""
        if o.model_path is not None:
            lines.append(f"New model: <code>{html.escape(str(o.model_path))}</code>")
            if o.card_path is not None:
                lines.append(f"Model card: <code>{html.escape(str(o.card_path))}</code>")
                try:
                    from dermaseg_app.ml.weights import read_card_summary

                    card = read_card_summary(o.model_path, max_chars=400)
                except Exception:  # noqa: BLE001 - the card is a description, never a reason to fail
                    card = ""
        self.result.show_result("<br>".join(lines), o.model_path, card)
        self.status.setText("Cancelled." if o.cancelled else "Finished.")
        if not o.cancelled:
            self.bar.setValue(self.bar.maximum())
        self.notifier.status(
            f"Fine-tuning {'cancelled' if o.cancelled else 'finished'}"
            + (f": {o.model_path.name}" if o.model_path is not None else ""), 8000)

    def _failed(self, exc: BaseException) -> None:
        self.error = describe_error(exc)
        self.status.setText(f"Fine-tuning failed: {self.error}")
        self.status.setStyleSheet("color: #b03030;")
        self._log(f"Error: {self.error}")
        self.result.reset(f"<span style='color:#b03030'>Fine-tuning failed: {html.escape(self.error)}</span>")
        self.notifier.notice(f"Fine-tuning failed: {self.error}", True)

    def _ended(self) -> None:
        if self.bar.maximum() == 0:
            self.bar.setRange(0, 1)
        self.cancel_button.setEnabled(False)
        self.settings_form.set_enabled(True)
        self.output.setEnabled(True)
        self.output.clear()  # the next run gets a new default name
        if self._paused_predictions:
            self._paused_predictions = False
            self.session.resume_predictions()
        self.refresh()
        if self.error:
            self.reason.setText(f"The last run failed: {self.error}")
        self.finished.emit(self.outcome)

    def use_new_model(self, path: Path | None) -> None:
        """Switch to the new model and ask for the Review tab (the images are predicted again)."""
        if path is None:
            return
        self.context.use_model(Path(path))
        self.review_requested.emit()
        self.refresh()

    # ------------------------------------------------------------------ showing and closing
    def shown(self) -> None:
        """The tab came to the front: count again; the empty axes say what will be drawn."""
        self.refresh()
        self.plot.ensure_built()

    def _ask_stop(self) -> bool:
        return self.context.dialogs.ask_yes_no(
            "Fine-tuning is running",
            "Fine-tuning is still running. Stop it and close? The best model so far is kept.")

    def confirm_close(self) -> bool:
        """Before the window closes: False to keep it open; while training, asks (``ask_stop``)
        and then cancels and waits (the engine keeps the best model so far)."""
        if not self.running:
            return True
        if not self.ask_stop():
            return False
        self.cancel()
        self.wait(60.0)
        return True

    def shutdown(self, timeout: float = 60.0) -> bool:
        self.cancel()
        return self.wait(timeout)

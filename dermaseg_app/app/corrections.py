"""The corrections of the open folder: one undo history per image, kept while moving between
images, with its saved state, the model's mask it started from, and its store (issues 5, 13). No Qt.

``CorrectionBook`` is keyed by the image's path (never by a list row: the list may be sorted,
filtered or replaced by another folder's). An image gets an ``ImageEdit`` the first time it is
edited (starting from the mask on screen: the prediction at the current threshold, or no lesion
when there is no prediction), when its saved correction is shown again, or when a crash journal is
restored. Every change is journalled at once through ``CorrectionStore.history`` (the history's
journal), so a crash loses at most the stroke in progress; ``save`` writes the correction
(revision, latest PNG, sidecar) through the store and clears the journal.

The policy around them lives here too: what to offer to restore after a crash
(``worth_restoring`` / ``restore`` / ``discard_journals``), what leaving the folder means
(``settle_clean``, ``dirty_images``, ``discard_unsaved``). The window asks the questions and
shows the answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dermaseg_app.core.history import History
from dermaseg_app.core.imageio import ImageReadError
from dermaseg_app.core.project import Project
from dermaseg_app.core.store import CorrectionInfo, CorrectionStore, StoreError

RECOVERY_ERRORS = (StoreError, ImageReadError, OSError, ValueError)


@dataclass
class ImageEdit:
    """The correction of one image in memory."""

    image: Path
    history: History
    prediction: np.ndarray  # the model's mask the correction is compared with (and reset to)
    store: CorrectionStore | None
    saved_mask: np.ndarray | None = None  # the mask as last saved (None: never saved this session)
    saved_revision: int = -1
    on_disk: bool = False  # a saved correction exists
    journal_errors: list[str] = field(default_factory=list)

    @property
    def mask(self) -> np.ndarray:
        return self.history.mask

    @property
    def dirty(self) -> bool:
        """Changed since the last save (or, never saved, different from the prediction)."""
        if self.history.stroke_in_progress:
            return True
        if self.history.revision == self.saved_revision:
            return False
        reference = self.saved_mask if self.saved_mask is not None else (
            None if self.on_disk else self.prediction)
        return reference is None or not np.array_equal(reference, self.history.mask)


@dataclass
class RestoreReport:
    """What ``CorrectionBook.restore`` did."""

    replayed: list[Path] = field(default_factory=list)   # journals replayed (restored or back at start)
    restored: list[Path] = field(default_factory=list)   # of them, images with unsaved edits now
    failed: list[tuple[Path, Exception]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)      # journals that could not be tidied


class CorrectionBook:
    """The corrections of the open folder, by image."""

    def __init__(self, project_for: Callable[[Path], Project | None]) -> None:
        self.project_for = project_for
        self.edits: dict[Path, ImageEdit] = {}
        self._stores: dict[Path, CorrectionStore] = {}

    def clear(self) -> None:
        self.edits.clear()
        self._stores.clear()

    def store_for(self, image: Path) -> CorrectionStore | None:
        """The store of ``image``'s project (None without a project); raises StoreError when its
        folders cannot be made."""
        project = self.project_for(image)
        if project is None:
            return None
        store = self._stores.get(project.project_dir)
        if store is None or store.project is not project:
            store = CorrectionStore(project)
            self._stores[project.project_dir] = store
        return store

    def get(self, image: Path | None) -> ImageEdit | None:
        return self.edits.get(image) if image is not None else None

    def dirty_images(self) -> list[Path]:
        return [image for image, e in self.edits.items() if e.dirty]

    # ------------------------------------------------------------------ starting
    def saved_correction(self, image: Path) -> np.ndarray | None:
        """The image's saved correction (None when there is none); raises StoreError."""
        store = self.store_for(image)
        if store is None or not store.has_correction(image):
            return None
        return store.load_correction(image)

    def start(self, image: Path, mask: np.ndarray, prediction: np.ndarray | None,
              *, on_disk: bool = False, model_name: str | None = None,
              model_version: str | None = None, dirty: bool = False) -> ImageEdit:
        """Begin keeping the correction of ``image``, starting at ``mask``.

        ``prediction`` (the model's mask, None without a model) is stored in the project first, so
        a crash journal can be replayed onto it. ``on_disk``: ``mask`` is the saved correction.
        ``dirty``: ``mask`` is not saved (a restored journal). Raises StoreError when the
        prediction cannot be stored (the edit can still go on without a journal: ``start_unjournalled``).
        """
        store = self.store_for(image)
        mask = np.asarray(mask, dtype=bool)
        pred = np.asarray(prediction, dtype=bool) if prediction is not None else None
        if store is not None:
            if pred is not None:
                # a fresh correction starts from the current model's mask: it replaces a stored
                # one left by an earlier, abandoned edit (maybe of another model), unless a journal
                # still waits to be replayed onto it
                fresh = not on_disk and not dirty and not store.journal_entries(store.stem(image))
                store.save_prediction(image, pred, model_name, model_version, overwrite=fresh)
            stored = store.load_prediction(image)
            if stored is not None and stored.shape == mask.shape:
                pred = stored  # the correction started from this one (maybe at another threshold)
        if pred is None:
            pred = np.zeros_like(mask)
        history = store.history(image, mask) if store is not None else History(mask)
        edit = ImageEdit(image, history, pred, store, on_disk=on_disk)
        if store is not None:
            history.journal = _safe_sink(history.journal, edit.journal_errors)
        if not dirty:
            edit.saved_revision = history.revision
            edit.saved_mask = history.mask if on_disk else None
        self.edits[image] = edit
        return edit

    def start_unjournalled(self, image: Path, mask: np.ndarray, prediction: np.ndarray | None) -> ImageEdit:
        mask = np.asarray(mask, dtype=bool)
        pred = np.asarray(prediction, dtype=bool) if prediction is not None else np.zeros_like(mask)
        edit = ImageEdit(image, History(mask), pred, None)
        edit.saved_revision = edit.history.revision
        self.edits[image] = edit
        return edit

    # ------------------------------------------------------------------ saving
    def save(self, image: Path, model_name: str | None = None,
             model_version: str | None = None) -> CorrectionInfo:
        """Save ``image``'s correction; raises StoreError (the edit stays in memory and journal)."""
        edit = self.edits[image]
        if edit.history.stroke_in_progress:
            edit.history.end_stroke()
        store = edit.store if edit.store is not None else self.store_for(edit.image)
        if store is None:
            raise StoreError(edit.image.parent, "no project folder to save the correction in "
                                                "(the image folder is read-only: choose a project folder)")
        if edit.store is None:  # a project became available (chosen after a read-only folder)
            edit.store = store
            edit.journal_errors.clear()
            if np.any(edit.prediction):
                store.save_prediction(edit.image, edit.prediction)
            edit.history.journal = _safe_sink(
                lambda entry, e=edit: store.append_journal(e.image, entry), edit.journal_errors)
        mask = edit.history.mask
        info = store.save_correction(edit.image, mask, model_name=model_name, model_version=model_version)
        edit.saved_mask = mask
        edit.saved_revision = edit.history.revision
        edit.on_disk = True
        edit.journal_errors.clear()  # what the journal missed is in the saved file now
        return info

    # ------------------------------------------------------------------ recovery
    def pending(self, images: list[Path]) -> list[Path]:
        """The images with an unsaved crash journal (one per journal: two paths of one image count once)."""
        out = []
        seen: set[tuple[Path, str]] = set()
        for image in images:
            try:
                store = self.store_for(image)
            except StoreError:  # the project's folders cannot be made: nothing was journalled there
                continue
            if store is None:
                continue
            stem = store.stem(image)
            if (store.project.project_dir, stem) in seen:
                continue
            try:
                if store.journal_entries(stem):
                    out.append(image)
                    seen.add((store.project.project_dir, stem))
            except StoreError:
                continue
        return out

    def recover(self, image: Path, shape: tuple[int, int]) -> ImageEdit:
        """Replay ``image``'s journal and keep the result as an unsaved edit (raises StoreError)."""
        store = self.store_for(image)
        if store is None:
            raise StoreError(image, "no project folder")
        stem = store.stem(image)
        base = store.base_mask(image)
        mask = store.recover(stem, base_mask=None if base is not None else np.zeros(shape, bool))
        pred = store.load_prediction(image)
        edit = self.start(image, mask, None if pred is None else pred,
                          on_disk=store.has_correction(image), dirty=True)
        edit.saved_mask = None
        if edit.on_disk:
            edit.saved_mask = store.load_correction(image)
        return edit

    def journal_changes_mask(self, image: Path, shape: Callable[[], tuple[int, int]]) -> bool:
        """Whether replaying ``image``'s journal gives another mask than the one it starts from (the
        saved correction, else the stored prediction, else no lesion of ``shape()``): a journal
        whose edits were undone or reset to the prediction holds nothing to restore. Raises
        StoreError."""
        store = self.store_for(image)
        if store is None:
            return False
        stem = store.stem(image)
        reference = store.base_mask(image)
        if reference is None:
            reference = np.zeros(shape(), bool)
        try:
            mask = store.recover(stem)  # onto what the journal started from (the store knows)
        except StoreError:  # nothing saved or predicted: the edits started from no lesion
            mask = store.recover(stem, base_mask=reference)
        return not np.array_equal(mask, reference)

    def worth_restoring(self, pending: list[Path], shape_of: Callable[[Path], tuple[int, int]]) -> list[Path]:
        """The journals of ``pending`` whose replay changes the mask; the others (edits undone, or
        reset to the model's mask) are removed without asking: there is nothing to restore in
        them. A journal that cannot be checked is kept (restoring it then says what is wrong).
        ``shape_of(image)`` is the image's (height, width)."""
        out = []
        for image in pending:
            try:
                if self.journal_changes_mask(image, lambda im=image: shape_of(im)):
                    out.append(image)
                else:
                    self.discard_journal(image)
            except RECOVERY_ERRORS:
                out.append(image)
        return out

    def restore(self, images: list[Path], shape_of: Callable[[Path], tuple[int, int]]) -> RestoreReport:
        """Replay the journals of ``images`` into unsaved edits; one that comes back to where it
        started is settled (and forgotten unless a saved correction exists)."""
        report = RestoreReport()
        for image in images:
            try:
                self.recover(image, shape_of(image))
            except RECOVERY_ERRORS as exc:
                report.failed.append((image, exc))
                continue
            report.replayed.append(image)
            if not self.edits[image].dirty:  # replayed back to where it started: nothing unsaved
                report.errors.extend(self._settle_quietly(image))
                if not self.edits[image].on_disk:
                    del self.edits[image]
                continue
            report.restored.append(image)
        return report

    def discard_journals(self, images: list[Path]) -> list[str]:
        """Remove the journals of ``images`` (the user chose not to restore them); returns the errors."""
        errors = []
        for image in images:
            try:
                self.discard_journal(image)
            except StoreError as exc:
                errors.append(str(exc))
        return errors

    # ------------------------------------------------------------------ leaving
    def settle(self, image: Path) -> None:
        """Forget the journal of a correction that is back at its saved state (or, never saved, at
        the model's mask): there is nothing to restore after a crash, and the next edits are
        journalled onto that same mask. Raises StoreError."""
        edit = self.edits.get(image)
        if edit is not None and edit.store is not None and not edit.dirty:
            if edit.store.journal_path(edit.image).exists():
                edit.store.clear_journal(edit.store.stem(edit.image))

    def _settle_quietly(self, image: Path) -> list[str]:
        try:
            self.settle(image)
        except StoreError as exc:
            return [str(exc)]
        return []

    def settle_clean(self) -> list[str]:
        """Settle every correction with nothing unsaved (before leaving the folder: no journal is
        left behind for them); returns the errors."""
        errors: list[str] = []
        for image in list(self.edits):
            if not self.edits[image].dirty:
                errors.extend(self._settle_quietly(image))
        return errors

    def discard_unsaved(self) -> None:
        """Forget the corrections with unsaved changes and their journals (the user chose discard)."""
        for image in self.dirty_images():
            try:
                self.discard_journal(image)
            except StoreError:
                pass
            self.edits.pop(image, None)

    def drop_unchanged(self) -> list[Path]:
        """Forget the corrections that were never saved and equal the model's mask they started
        from (after a model switch they would hide the new model's mask); returns their images."""
        images = [image for image, e in self.edits.items() if not e.dirty and not e.on_disk]
        for image in images:
            self.settle(image)
            del self.edits[image]
        return images

    def discard_journal(self, image: Path) -> None:
        store = self.store_for(image)
        if store is not None:
            store.clear_journal(store.stem(image))


def _safe_sink(sink, errors: list[str]):
    """A journal sink that never breaks an edit: a failing write is recorded for the window."""
    if sink is None:
        return None

    def write(entry: dict) -> None:
        try:
            sink(entry)
        except StoreError as exc:
            errors.append(str(exc))

    return write


"""The corrections of the open folder: one undo history per image, kept while moving between
images, with its saved state, the model's mask it started from, and its store (issue 5). No widgets.

``EditBook`` is keyed by the session's row. An image gets an ``ImageEdit`` the first time it is
edited (starting from the mask on screen: the prediction at the current threshold, or no lesion
when there is no prediction), when its saved correction is shown again, or when a crash journal is
restored. Every change is journalled at once through ``CorrectionStore.history`` (the history's
journal), so a crash loses at most the stroke in progress; ``save`` writes the correction
(revision, latest PNG, sidecar) through the store and clears the journal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dermaseg_app.core.history import History
from dermaseg_app.core.project import Project
from dermaseg_app.core.store import CorrectionInfo, CorrectionStore, StoreError


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


class EditBook:
    """Per-row corrections of the open folder."""

    def __init__(self, project_for: Callable[[Path], Project | None]) -> None:
        self.project_for = project_for
        self.edits: dict[int, ImageEdit] = {}
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

    def get(self, row: int) -> ImageEdit | None:
        return self.edits.get(row)

    def dirty_rows(self) -> list[int]:
        return [row for row, e in self.edits.items() if e.dirty]

    # ------------------------------------------------------------------ starting
    def saved_correction(self, image: Path) -> np.ndarray | None:
        """The image's saved correction (None when there is none); raises StoreError."""
        store = self.store_for(image)
        if store is None or not store.has_correction(image):
            return None
        return store.load_correction(image)

    def start(self, row: int, image: Path, mask: np.ndarray, prediction: np.ndarray | None,
              *, on_disk: bool = False, model_name: str | None = None,
              model_version: str | None = None, dirty: bool = False) -> ImageEdit:
        """Begin keeping the correction of ``row``, starting at ``mask``.

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
        self.edits[row] = edit
        return edit

    def start_unjournalled(self, row: int, image: Path, mask: np.ndarray,
                           prediction: np.ndarray | None) -> ImageEdit:
        mask = np.asarray(mask, dtype=bool)
        pred = np.asarray(prediction, dtype=bool) if prediction is not None else np.zeros_like(mask)
        edit = ImageEdit(image, History(mask), pred, None)
        edit.saved_revision = edit.history.revision
        self.edits[row] = edit
        return edit

    # ------------------------------------------------------------------ saving
    def save(self, row: int, model_name: str | None = None,
             model_version: str | None = None) -> CorrectionInfo:
        """Save ``row``'s correction; raises StoreError (the edit stays in memory and journal)."""
        edit = self.edits[row]
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
    def pending(self, images: list[Path]) -> list[tuple[int, str]]:
        """(row, stem) of the images with an unsaved crash journal."""
        out = []
        seen: set[tuple[Path, str]] = set()
        for row, image in enumerate(images):
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
                    out.append((row, stem))
                    seen.add((store.project.project_dir, stem))
            except StoreError:
                continue
        return out

    def recover(self, row: int, image: Path, shape: tuple[int, int]) -> ImageEdit:
        """Replay ``row``'s journal and keep the result as an unsaved edit (raises StoreError)."""
        store = self.store_for(image)
        if store is None:
            raise StoreError(image, "no project folder")
        stem = store.stem(image)
        base = store.base_mask(image)
        mask = store.recover(stem, base_mask=None if base is not None else np.zeros(shape, bool))
        pred = store.load_prediction(image)
        edit = self.start(row, image, mask, None if pred is None else pred,
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

    def settle(self, row: int) -> None:
        """Forget the journal of a correction that is back at its saved state (or, never saved, at
        the model's mask): there is nothing to restore after a crash, and the next edits are
        journalled onto that same mask. Raises StoreError."""
        edit = self.edits.get(row)
        if edit is not None and edit.store is not None and not edit.dirty:
            if edit.store.journal_path(edit.image).exists():
                edit.store.clear_journal(edit.store.stem(edit.image))

    def drop_unchanged(self) -> list[int]:
        """Forget the corrections that were never saved and equal the model's mask they started
        from (after a model switch they would hide the new model's mask); returns their rows."""
        rows = [row for row, e in self.edits.items() if not e.dirty and not e.on_disk]
        for row in rows:
            self.settle(row)
            del self.edits[row]
        return rows

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


"""The corrections book of the open folder (``app.corrections``), without a window: keyed by image,
saved through the store, journalled, restored after a crash, settled and discarded when leaving."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dermaseg_app.app.corrections import CorrectionBook
from dermaseg_app.app.projects import ProjectBook
from dermaseg_app.core.editing import EditOp

H, W = 40, 60


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(folder / name), np.full((H, W, 3), 128, np.uint8))
    return folder


def _book(folder: Path) -> CorrectionBook:
    projects = ProjectBook()
    projects.add_root(folder)
    return CorrectionBook(projects.project_for)


def _prediction() -> np.ndarray:
    pred = np.zeros((H, W), bool)
    pred[10:30, 15:45] = True
    return pred


def _shape(_image: Path) -> tuple[int, int]:
    return H, W


def test_edits_are_kept_by_image_and_saved_to_the_project(folder: Path) -> None:
    book = _book(folder)
    a, b = folder / "a.png", folder / "b.png"
    pred = _prediction()
    edit = book.start(a, pred.copy(), pred, model_name="m", model_version="1")
    assert book.get(a) is edit and book.get(b) is None and book.get(None) is None
    assert not edit.dirty  # the model's mask, unchanged
    edit.history.apply(EditOp.grow(2))
    assert edit.dirty and book.dirty_images() == [a]
    info = book.save(a, model_name="m", model_version="1")
    assert info.revisions and not edit.dirty and edit.on_disk
    assert np.array_equal(book.saved_correction(a), edit.mask)
    assert book.saved_correction(b) is None
    assert not book.store_for(a).journal_path(a).exists()  # saving clears the journal


def test_a_crash_journal_is_offered_restored_and_kept_unsaved(folder: Path) -> None:
    a = folder / "a.png"
    pred = _prediction()
    book = _book(folder)
    edit = book.start(a, pred.copy(), pred)
    edit.history.apply(EditOp.grow(3))
    mask = edit.mask.copy()
    # the crash: a new book (a new window) finds the journal
    book = _book(folder)
    images = sorted(folder.glob("*.png"))
    pending = book.pending(images)
    assert pending == [a]
    assert book.worth_restoring(pending, _shape) == [a]
    report = book.restore(pending, _shape)
    assert report.restored == [a] and report.replayed == [a] and not report.failed
    restored = book.get(a)
    assert restored.dirty and np.array_equal(restored.mask, mask)
    assert np.array_equal(restored.prediction, pred)


def test_a_journal_that_changes_nothing_is_removed_without_asking(folder: Path) -> None:
    a = folder / "a.png"
    pred = _prediction()
    book = _book(folder)
    edit = book.start(a, pred.copy(), pred)
    edit.history.apply(EditOp.grow(3))
    edit.history.undo()  # back at the model's mask, with entries in the journal
    journal = book.store_for(a).journal_path(a)
    assert journal.is_file()
    book = _book(folder)
    assert book.worth_restoring(book.pending([a]), _shape) == []
    assert not journal.exists()


def test_declining_the_restore_discards_the_journals(folder: Path) -> None:
    a = folder / "a.png"
    pred = _prediction()
    book = _book(folder)
    book.start(a, pred.copy(), pred).history.apply(EditOp.grow(3))
    book = _book(folder)
    pending = book.pending([a])
    assert book.discard_journals(pending) == []
    assert book.pending([a]) == [] and book.get(a) is None


def test_leaving_settles_the_clean_and_discards_the_unsaved(folder: Path) -> None:
    a, b = folder / "a.png", folder / "b.png"
    pred = _prediction()
    book = _book(folder)
    clean = book.start(a, pred.copy(), pred)
    clean.history.apply(EditOp.grow(2))
    clean.history.undo()
    dirty = book.start(b, pred.copy(), pred)
    dirty.history.apply(EditOp.grow(2))
    assert book.settle_clean() == []
    assert not book.store_for(a).journal_path(a).exists()  # nothing unsaved: no journal left
    assert book.store_for(b).journal_path(b).exists()
    assert book.dirty_images() == [b]
    book.discard_unsaved()
    assert book.get(b) is None and book.pending([a, b]) == []
    assert book.get(a) is clean


def test_a_model_switch_drops_only_the_unchanged_corrections(folder: Path) -> None:
    a, b, c = (folder / n for n in ("a.png", "b.png", "c.png"))
    pred = _prediction()
    book = _book(folder)
    book.start(a, pred.copy(), pred)
    book.start(b, pred.copy(), pred).history.apply(EditOp.grow(2))
    book.start(c, pred.copy(), pred).history.apply(EditOp.grow(2))
    book.save(c)
    assert book.drop_unchanged() == [a]
    assert book.get(a) is None and book.get(b) is not None and book.get(c) is not None


def test_without_a_project_the_edit_stays_in_memory(tmp_path: Path) -> None:
    book = CorrectionBook(lambda image: None)
    image = tmp_path / "x.png"
    pred = _prediction()
    edit = book.start(image, pred.copy(), pred)
    assert edit.store is None
    edit.history.apply(EditOp.grow(2))
    from dermaseg_app.core.store import StoreError

    with pytest.raises(StoreError, match="no project folder"):
        book.save(image)
    assert book.get(image).dirty


def test_a_restore_that_fails_is_reported_not_raised(folder: Path) -> None:
    a = folder / "a.png"
    pred = _prediction()
    book = _book(folder)
    book.start(a, pred.copy(), pred).history.apply(EditOp.grow(3))
    book = _book(folder)

    def unreadable(_image: Path) -> tuple[int, int]:
        raise OSError("the disk went away")

    report = book.restore([a], unreadable)
    assert report.restored == [] and [image for image, _ in report.failed] == [a]

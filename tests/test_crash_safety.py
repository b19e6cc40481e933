"""No correction lost (issue 11): a child killed with SIGKILL at random moments of editing and
saving, and two processes saving in one project at once."""

from __future__ import annotations

import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import crash_harness

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and fork are POSIX")


def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    started = time.perf_counter()
    failures, figures = crash_harness.run_trials(120, seed=11, workdir=tmp_path)
    assert figures["trials"] == 120
    # the kills really fell inside the edits and saves, not only before or after them
    assert figures["killed_in_ops"] >= 30, figures
    assert failures == [], "\n".join(failures[:20])
    assert time.perf_counter() - started < 120


class _Killed(BaseException):
    """Stands for SIGKILL at one point of a save (nothing after it runs)."""


def _edit_then_die_saving(tmp_path: Path, monkeypatch, where: str):
    """Edit (grow twice: not idempotent), save, and die at ``where`` inside the save."""
    from dermaseg_app.core import store as store_mod
    from dermaseg_app.core.editing import EditOp
    from dermaseg_app.core.project import Project

    images = crash_harness.make_folder(tmp_path)
    image = images / crash_harness.IMAGE_NAME
    project = Project.open_for(images)
    store = store_mod.CorrectionStore(project)
    store.save_prediction(image, crash_harness.initial_mask())
    history = store.history(image, crash_harness.initial_mask())
    history.apply(EditOp.grow(2))
    store.save_correction(image, history.mask)      # revision 1
    history.apply(EditOp.grow(2))                   # journalled on revision 1
    expected = history.mask.copy()
    calls = {"n": 0}
    if where == "before clearing the journal":
        monkeypatch.setattr(store, "clear_journal", lambda stem: (_ for _ in ()).throw(_Killed()))
    else:  # between the correction PNG and the sidecar
        real = store._write_json

        def die_on_sidecar(path, data, img):
            if path.name.endswith(".json") and path.parent == store.corrections_dir:
                raise _Killed()
            return real(path, data, img)

        monkeypatch.setattr(store, "_write_json", die_on_sidecar)
    with pytest.raises(_Killed):
        store.save_correction(image, history.mask)
    project.close()
    monkeypatch.undo()
    again = Project.open_for(images)
    return again, store_mod.CorrectionStore(again), image, expected, calls


@pytest.mark.parametrize("where", ["before clearing the journal", "between the mask and the sidecar"])
def test_a_journal_is_never_replayed_twice(tmp_path: Path, monkeypatch, where: str) -> None:
    project, store, image, expected, _ = _edit_then_die_saving(tmp_path, monkeypatch, where)
    stem = store.stem(image)
    pending = store.pending_recovery()
    if where == "before clearing the journal":
        assert pending == []                         # saved: the stale journal is discarded
        assert not store.journal_path(image).exists()
        assert np.array_equal(store.base_mask(image), expected)
    else:
        assert pending == [stem]                     # not committed: the journal is replayed
        assert np.array_equal(store.recover(stem), expected)   # onto revision 1, not the PNG
    project.close()


# ------------------------------------------------------------------------- two processes
def _saver(images: str, image_name: str, saves: int, notes: int, out: str) -> None:
    from dermaseg_app.core.project import Project, ProjectError
    from dermaseg_app.core.store import CorrectionStore, StoreError

    project = Project.open_for(images)
    store = CorrectionStore(project)
    image = Path(images) / image_name
    mask = crash_harness.initial_mask()
    saved = refused = 0
    notes_ok = notes_refused = 0
    reasons: set[str] = set()
    for i in range(max(saves, notes)):
        if i < saves:
            try:
                store.save_correction(image, np.roll(mask, i, axis=1))
                saved += 1
            except StoreError as exc:
                refused += 1
                reasons.add(exc.reason[:120])
        if i < notes:
            try:
                project.set_note(image, f"note {i} of {out}")
                notes_ok += 1
            except ProjectError as exc:
                refused += 0
                notes_refused += 1
                reasons.add(exc.reason[:120])
    Path(out).write_text(f"{saved} {refused} {notes_ok} {notes_refused} {project.read_only}\n"
                         + "\n".join(sorted(reasons)))


def test_two_processes_saving_in_one_project(tmp_path: Path) -> None:
    images = crash_harness.make_folder(tmp_path)
    ctx = multiprocessing.get_context("forkserver")
    outs = [tmp_path / "a.txt", tmp_path / "b.txt"]
    procs = [ctx.Process(target=_saver, args=(str(images), crash_harness.IMAGE_NAME, 40, 60, str(o)))
             for o in outs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    results = []
    for o in outs:
        head, *reasons = o.read_text().splitlines()
        saved, refused, notes_ok, notes_refused, read_only = head.split()
        results.append((int(saved), int(refused), int(notes_ok), int(notes_refused), read_only == "True",
                        reasons))
    # every save either happened or was refused with a reason: none silently lost
    for saved, refused, notes_ok, notes_refused, _, reasons in results:
        assert saved + refused == 40 and notes_ok + notes_refused == 60
        if refused or notes_refused:
            assert any("read-only" in r and "another DermaSeg" in r for r in reasons), reasons
    total_saved = sum(r[0] for r in results)
    total_notes = sum(r[2] for r in results)

    from dermaseg_app.core.project import Project
    from dermaseg_app.core.store import CorrectionStore

    project = Project.open_for(images)
    store = CorrectionStore(project)
    image = images / crash_harness.IMAGE_NAME
    revisions = store.revisions(image)
    info = store.info(image)
    assert len(revisions) == total_saved          # no revision file lost or overwritten
    assert len(info.revisions) == total_saved     # and every one is in the sidecar
    assert [r.n for r in info.revisions] == sorted({r.n for r in info.revisions})
    assert total_notes >= 60
    # the last note written by a process that could write is the one kept
    note = project.record(image).note
    assert note.startswith("note 59 of ")
    project.close()


def test_second_opener_is_read_only_and_says_so(tmp_path: Path) -> None:
    images = crash_harness.make_folder(tmp_path)
    ctx = multiprocessing.get_context("forkserver")
    ready, done = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(images), ready, done))
    holder.start()
    try:
        assert ready.wait(60)
        from dermaseg_app.core.project import Project, ProjectReadOnly
        from dermaseg_app.core.store import CorrectionStore, StoreError

        project = Project.open_for(images)
        assert project.read_only
        assert any("read-only" in w and f"process {holder.pid}" in w for w in project.warnings)
        with pytest.raises(ProjectReadOnly, match="another DermaSeg"):
            project.set_status(crash_harness.IMAGE_NAME, "accepted")
        store = CorrectionStore(project)
        with pytest.raises(StoreError, match="read-only"):
            store.save_correction(images / crash_harness.IMAGE_NAME, crash_harness.initial_mask())
        assert project.record(crash_harness.IMAGE_NAME).note == "held"  # reading works
    finally:
        done.set()
        holder.join(30)
    # the holder is gone (its lock with it, however it ended): the project is writable again
    again = Project.open_for(images)
    assert not again.read_only
    again.set_status(crash_harness.IMAGE_NAME, "accepted")
    again.close()


def _hold(images: str, ready, done) -> None:
    from dermaseg_app.core.project import Project

    project = Project.open_for(images)
    project.set_note(crash_harness.IMAGE_NAME, "held")
    ready.set()
    done.wait(60)

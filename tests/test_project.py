"""Review-status project store (issue 4): core/project.py."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

import pytest

from dermaseg_app.core import project as project_mod
from dermaseg_app.core.project import (
    PROJECT_DIRNAME,
    ImageRecord,
    Project,
    ProjectError,
    ProjectNotWritable,
    ReviewStatus,
)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    for name in ("a.jpg", "b.png", "sub/c.jpg"):
        (images / name).write_bytes(b"not really an image")
    return images


def test_status_values() -> None:
    assert [s.value for s in ReviewStatus] == [
        "unreviewed", "accepted", "needs_correction", "rejected", "excluded"]
    assert ReviewStatus("accepted") is ReviewStatus.ACCEPTED
    assert ReviewStatus.NEEDS_CORRECTION == "needs_correction"  # a str enum
    assert ReviewStatus.NEEDS_CORRECTION.label == "needs correction"


def test_default_location_and_default_record(folder: Path) -> None:
    project = Project.open_for(folder)
    assert project.project_dir == (folder / PROJECT_DIRNAME).resolve()
    assert project.project_dir.is_dir()
    rec = project.record(folder / "a.jpg")
    assert rec == ImageRecord(ReviewStatus.UNREVIEWED, "", None, False)
    assert not project.path.exists()  # nothing written until something changes


def test_set_and_reopen_restores(folder: Path) -> None:
    project = Project.open_for(folder)
    project.set_status(folder / "a.jpg", ReviewStatus.ACCEPTED)
    project.set_note(folder / "sub" / "c.jpg", "border unclear – check\nsecond line")
    project.set_status(folder / "sub" / "c.jpg", "needs_correction")
    project.set_edited(folder / "sub" / "c.jpg")
    # saved at once: a fresh open sees everything
    again = Project.open_for(folder)
    assert again.record(folder / "a.jpg").status is ReviewStatus.ACCEPTED
    c = again.record(folder / "sub" / "c.jpg")
    assert c.status is ReviewStatus.NEEDS_CORRECTION
    assert c.note == "border unclear – check\nsecond line"
    assert c.edited is True
    assert c.updated and c.updated.endswith("Z")
    assert again.record(folder / "b.png").status is ReviewStatus.UNREVIEWED
    counts = again.counts()
    assert counts[ReviewStatus.ACCEPTED] == 1 and counts[ReviewStatus.NEEDS_CORRECTION] == 1


def test_json_schema_relative_posix_keys(folder: Path) -> None:
    project = Project.open_for(folder)
    project.set_status(folder / "sub" / "c.jpg", ReviewStatus.REJECTED)
    project.set_status("b.png", ReviewStatus.EXCLUDED)  # relative to the image folder
    data = json.loads(project.path.read_text(encoding="utf-8"))
    assert data["schema_version"] == 2
    assert set(data["images"]) == {"sub/c.jpg", "b.png"}
    assert data["images"]["sub/c.jpg"]["status"] == "rejected"
    assert data["images"]["b.png"]["status"] == "excluded"
    assert Path(data["image_folder"]) == folder.resolve()


def test_keys_and_stems(folder: Path) -> None:
    project = Project.open_for(folder)
    assert project.key(folder / "sub" / "c.jpg") == "sub/c.jpg"
    assert project.stem_for(folder / "a.jpg") == "a"
    assert project.stem_for(folder / "sub" / "c.jpg") == "c"  # ISIC naming in sub-folders too
    assert project.image_path("sub/c.jpg") == folder.resolve() / "sub" / "c.jpg"
    with pytest.raises(ValueError, match="not inside"):
        project.key(folder.parent / "elsewhere.jpg")


def test_invalid_status_rejected(folder: Path) -> None:
    project = Project.open_for(folder)
    with pytest.raises(ValueError):
        project.set_status(folder / "a.jpg", "maybe")
    assert not project.path.exists()


def test_corrupt_project_json_kept_aside(folder: Path, caplog) -> None:
    project = Project.open_for(folder)
    project.set_status(folder / "a.jpg", ReviewStatus.ACCEPTED)
    project.path.write_text('{"schema_version": 1, "images": {"a.jpg": {"stat', encoding="utf-8")
    damaged = project.path.read_bytes()
    with caplog.at_level("WARNING"):
        again = Project.open_for(folder)
    assert again.warnings and "damaged" in again.warnings[0]
    assert "project.json.corrupt-" in again.warnings[0]
    assert any("damaged" in r.message for r in caplog.records)
    kept = list(again.project_dir.glob("project.json.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == damaged
    assert not again.path.exists()
    assert again.record(folder / "a.jpg").status is ReviewStatus.UNREVIEWED
    again.set_status(folder / "b.png", ReviewStatus.ACCEPTED)  # usable afterwards
    assert Project.open_for(folder).record("b.png").status is ReviewStatus.ACCEPTED
    assert kept[0].read_bytes() == damaged  # still there


@pytest.mark.parametrize("content", ['[1, 2]', '{"images": [1]}', '{"schema_version": "2"}',
                                     "[" * 100000 + "]" * 100000, "\udcff"])
def test_other_corruptions(folder: Path, content: str) -> None:
    pdir = folder / PROJECT_DIRNAME
    pdir.mkdir()
    if content == "\udcff":
        (pdir / "project.json").write_bytes(b"\xff\xfe\x00garbage")
    else:
        (pdir / "project.json").write_text(content, encoding="utf-8")
    project = Project.open_for(folder)
    assert len(project.warnings) == 1
    assert len(list(pdir.glob("project.json.corrupt-*"))) == 1


def test_unknown_status_value_reads_as_unreviewed(folder: Path) -> None:
    pdir = folder / PROJECT_DIRNAME
    pdir.mkdir()
    (pdir / "project.json").write_text(
        json.dumps({"schema_version": 1, "images": {"a.jpg": {"status": "weird", "note": "n"}}}),
        encoding="utf-8")
    project = Project.open_for(folder)
    assert project.warnings == []
    assert project.record("a.jpg") == ImageRecord(ReviewStatus.UNREVIEWED, "n", None, False)


def _refuse_writes_under(monkeypatch, root: Path) -> None:
    """Simulate a read-only medium (root ignores permission bits, so chmod proves nothing)."""
    root = root.resolve()
    real_mkstemp = tempfile.mkstemp
    real_mkdir = Path.mkdir

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve().is_relative_to(root):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_mkstemp(*args, dir=dir, **kwargs)

    def mkdir(self, *args, **kwargs):
        if Path(os.path.abspath(self)).is_relative_to(root) and not self.exists():
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(Path, "mkdir", mkdir)


def test_read_only_image_folder_raises_then_other_folder_works(folder: Path, tmp_path: Path,
                                                               monkeypatch) -> None:
    _refuse_writes_under(monkeypatch, folder)
    with pytest.raises(ProjectNotWritable) as info:
        Project.open_for(folder)
    assert PROJECT_DIRNAME in str(info.value) and "choose another folder" in str(info.value)
    # the GUI then asks for another folder
    elsewhere = tmp_path / "my-projects" / "derma"
    project = Project.open_for(folder, project_dir=elsewhere)
    project.set_status(folder / "a.jpg", ReviewStatus.ACCEPTED)
    assert (elsewhere / "project.json").is_file()
    assert Project.open_for(folder, elsewhere).record(folder / "a.jpg").status is ReviewStatus.ACCEPTED
    # and the project folder alone is enough to find the images again
    assert Project.open_existing(elsewhere).image_folder == folder.resolve()


def test_existing_but_unwritable_project_dir(folder: Path, monkeypatch) -> None:
    (folder / PROJECT_DIRNAME).mkdir()
    _refuse_writes_under(monkeypatch, folder)
    with pytest.raises(ProjectNotWritable, match="not writable"):
        Project.open_for(folder)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root ignores permission bits")
def test_real_read_only_folder(folder: Path) -> None:  # pragma: no cover - depends on the user
    os.chmod(folder, 0o555)
    try:
        with pytest.raises(ProjectNotWritable):
            Project.open_for(folder)
    finally:
        os.chmod(folder, 0o755)


def test_failed_save_keeps_previous_file(folder: Path, monkeypatch) -> None:
    project = Project.open_for(folder)
    project.set_status(folder / "a.jpg", ReviewStatus.ACCEPTED)
    before = project.path.read_bytes()

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(ProjectNotWritable, match="unchanged"):
        project.set_status(folder / "b.png", ReviewStatus.REJECTED)
    monkeypatch.undo()
    assert project.path.read_bytes() == before
    # no temp files left behind by the failed write
    assert sorted(p.name for p in project.project_dir.iterdir()) == ["project.json", "project.lock"]
    # the change is still in memory and is written by the next successful save
    assert project.record(folder / "b.png").status is ReviewStatus.REJECTED
    project.save()
    assert Project.open_for(folder).record("b.png").status is ReviewStatus.REJECTED


def test_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="not a folder"):
        Project.open_for(tmp_path / "missing")


def test_open_existing_from_image_folder_or_project_folder(folder: Path) -> None:
    Project.open_for(folder).set_note("a.jpg", "hello")
    assert Project.open_existing(folder).record("a.jpg").note == "hello"
    assert Project.open_existing(folder / PROJECT_DIRNAME).record("a.jpg").note == "hello"


def test_module_does_not_import_qt_or_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, dermaseg_app.core.project; "
            "bad = [m for m in ('PySide6', 'pyqtgraph', 'torch') if m in sys.modules]; "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    assert project_mod.SCHEMA_VERSION == 2


def test_two_windows_do_not_overwrite_each_other(folder: Path) -> None:
    one = Project.open_for(folder)
    two = Project.open_for(folder)
    one.set_status(folder / "a.jpg", ReviewStatus.ACCEPTED)
    two.set_note(folder / "b.png", "from the second window")
    one.set_status(folder / "sub" / "c.jpg", ReviewStatus.REJECTED)
    fresh = Project.open_for(folder)
    assert fresh.record("a.jpg").status is ReviewStatus.ACCEPTED
    assert fresh.record("b.png").note == "from the second window"
    assert fresh.record("sub/c.jpg").status is ReviewStatus.REJECTED
    assert one.record("b.png").note == "from the second window"  # merged on its next save

"""The review project of one image folder: status, note, "edited" flag and file stem per image.

A project lives in ``<image folder>/dermaseg-project/`` by default, or in a folder the user picks
when the image folder is read-only (``Project.open_for(image_folder, project_dir=...)``).
Its ``project.json`` is rewritten atomically (core.atomic) on every change, so a crash never
leaves a half-written file.

project.json::

    {"schema_version": 2,
     "image_folder": "/abs/path/of/the/images",
     "images": {"sub/ISIC_0000009.jpg": {"status": "accepted", "note": "...",
                                        "updated": "2026-11-22T11:30:00Z", "edited": false}},
     "stems": {"sub/ISIC_0000009.jpg": "ISIC_0000009"}}

Keys are image paths relative to the image folder with POSIX separators, so a project moves with
its folder and reads the same on Windows and Linux.

**Stems.** The files of an image's corrections, predictions and journal (core.store) are named
after its *stem*: the image's own file stem, ISIC style (``corrections/ISIC_0000009_
segmentation.png``), whatever sub-folder it is in. Where two images would share one
(``x.jpg`` and ``x.png``, ``a/b.png`` and ``b.png``; compared case-insensitively) the later one
gets another (``x_png``, ``a__b``, then ``x-2`` ...). A stem is given to an image the first time
something is stored for it and recorded in ``stems`` before any file is written, so stems are
unique and map back to their image (``key_for_stem``); very long names are shortened with a hash.
Projects of schema 1 named files ``<sub-folders>__<stem>``; opening one for writing renames its
files to the new stems (recording the renames first, so a crash in between is finished at the
next open) and upgrades it to schema 2. Read-only, a schema-1 project is read with its old names.

**One writer.** A writable project holds an OS lock (core.locking) on ``project.lock``: a second
process (another window, ``dermaseg export``) opens it read-only, says so in ``warnings``, and
its setters raise :class:`ProjectReadOnly`. Holding the lock, opening removes the temp files a
crash left in the project's folders.

**Damage.** A ``project.json`` that is not JSON is moved aside as ``project.json.corrupt-<UTC
time>`` (never deleted) and the project starts empty; a record that cannot be read is skipped
(the file is copied aside first) and every good record kept; a file of a newer schema opens
read-only. All of it is reported in ``Project.warnings``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from dermaseg_app.core import locking
from dermaseg_app.core.atomic import TEMP_PREFIX, atomic_write_text, cleanup_stale_temp_files
from dermaseg_app.core.errors import DermaSegError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
PROJECT_DIRNAME = "dermaseg-project"
PROJECT_FILENAME = "project.json"
MAX_PROJECT_BYTES = 256 * 1024 * 1024
MAX_STEM_BYTES = 150  # leaves room for "_segmentation.png", "_prediction.json" and temp names

# The folders core.store keeps per-stem files in, and the names it gives them: (folder, suffix);
# a suffix of "/" is a folder named after the stem.
STORE_FILES: tuple[tuple[str, str], ...] = (
    ("corrections", "_segmentation.png"), ("corrections", ".json"),
    ("predictions", "_prediction.png"), ("predictions", "_prediction.json"),
    ("revisions", "/"), ("journal", ".jsonl"),
)
STORE_DIRS: tuple[str, ...] = ("corrections", "revisions", "predictions", "journal")


class ReviewStatus(str, Enum):
    """The reviewer's verdict on one image's segmentation."""

    UNREVIEWED = "unreviewed"
    ACCEPTED = "accepted"
    NEEDS_CORRECTION = "needs_correction"
    REJECTED = "rejected"
    EXCLUDED = "excluded"

    @property
    def label(self) -> str:
        """Human-readable label for menus and the manifest ("needs correction")."""
        return self.value.replace("_", " ")


_TRUE_WORDS = frozenset({"true", "yes", "1"})


@dataclass(frozen=True)
class ImageRecord:
    """What the reviewer recorded for one image. ``updated`` is an ISO-8601 UTC time or None."""

    status: ReviewStatus = ReviewStatus.UNREVIEWED
    note: str = ""
    updated: str | None = None
    edited: bool = False

    def to_json(self) -> dict:
        return {"status": self.status.value, "note": self.note, "updated": self.updated,
                "edited": self.edited}

    @classmethod
    def from_json(cls, data: object) -> ImageRecord:
        """The record stored as ``data``; raises ValueError when a field has the wrong type."""
        if not isinstance(data, dict):
            raise ValueError(f"a record is an object, not {type(data).__name__}")
        status_text = data.get("status", ReviewStatus.UNREVIEWED.value)
        if not isinstance(status_text, str):
            raise ValueError(f"the status is {type(status_text).__name__}, not text")
        try:
            status = ReviewStatus(status_text)
        except ValueError:
            status = ReviewStatus.UNREVIEWED
        note = data.get("note", "")
        if note is None:
            note = ""
        if not isinstance(note, str):
            raise ValueError(f"the note is {type(note).__name__}, not text")
        updated = data.get("updated")
        edited = data.get("edited", False)
        if isinstance(edited, str):
            edited = edited.strip().lower() in _TRUE_WORDS
        elif not isinstance(edited, bool):
            edited = isinstance(edited, int) and edited == 1
        return cls(status=status, note=note, updated=updated if isinstance(updated, str) else None,
                   edited=edited)


class ProjectError(DermaSegError):
    """A project folder cannot be used; the message names the folder and the reason."""


class ProjectNotWritable(ProjectError):
    """The project folder cannot be created or written (read-only medium, no permission, ...).

    The GUI answers by asking the user for another folder and calling
    ``Project.open_for(image_folder, project_dir=<chosen folder>)``.
    """


class ProjectReadOnly(ProjectError):
    """The project is open read-only (another process holds it, or it is of a newer schema):
    nothing is saved. ``reason`` says why."""


def utc_now() -> str:
    """The current time as ISO-8601 UTC with seconds, e.g. ``2026-11-22T11:30:00Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _timestamp_for_filename() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def check_writable(folder: Path) -> None:
    """Create ``folder`` if needed and prove it is writable by creating and deleting a temp file.

    Permission bits are not trusted (root ignores them; network drives lie): only an actual write
    counts. Raises ProjectNotWritable naming the folder and the reason.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProjectNotWritable(folder, f"cannot create the project folder ({exc.strerror or exc}); "
                                         "choose another folder for the project") from exc
    if not folder.is_dir():
        raise ProjectNotWritable(folder, "exists but is not a folder; choose another folder for the project")
    try:
        fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix="-write-test", dir=folder)
        try:
            os.write(fd, b"ok")
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as exc:
        raise ProjectNotWritable(folder, f"the folder is not writable ({exc.strerror or exc}); "
                                         "choose another folder for the project") from exc


def _reason(exc: OSError) -> str:
    return getattr(exc, "reason", None) or exc.strerror or str(exc)


def is_project_dir(path: Path) -> bool:
    """True when ``path`` looks like a project folder (named dermaseg-project or has project.json)."""
    path = Path(path)
    return path.name == PROJECT_DIRNAME or (path / PROJECT_FILENAME).is_file()


def legacy_stem(key: str) -> str:
    """The stem schema-1 projects gave an image: sub-folders and file stem joined by ``__``."""
    rel = Path(*key.split("/"))
    return "__".join(list(rel.parent.parts) + [rel.stem])


def _shorten(stem: str, key: str) -> str:
    """``stem`` cut to MAX_STEM_BYTES (UTF-8) with a hash of the key, when longer."""
    if len(stem.encode("utf-8")) <= MAX_STEM_BYTES:
        return stem
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:10]
    cut = stem.encode("utf-8")[: MAX_STEM_BYTES - len(digest) - 1].decode("utf-8", "ignore")
    return f"{cut}~{digest}"


def stem_candidates(key: str) -> list[str]:
    """The stems an image may get, best first (see the module docstring)."""
    rel = Path(*key.split("/"))
    stem = rel.stem or rel.name
    out = [stem]
    if rel.parent.parts:
        out.append("__".join(list(rel.parent.parts) + [stem]))
    ext = rel.suffix.lstrip(".")
    if ext:
        out.append(f"{stem}_{ext}")
    return [_shorten(c, key) for c in out]


class _Parsed:
    """What project.json holds, read leniently: good records kept, problems listed."""

    def __init__(self) -> None:
        self.version = SCHEMA_VERSION
        self.records: dict[str, ImageRecord] = {}
        self.stems: dict[str, str] = {}
        self.renames: list[tuple[str, str]] = []
        self.problems: list[str] = []


def _parse_project(text: str) -> _Parsed:
    """Parse project.json; ValueError when it is not a JSON object of the expected shape."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply to be a project file") from None
    if not isinstance(data, dict):
        raise ValueError("the top level is not an object")
    out = _Parsed()
    version = data.get("schema_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"unsupported schema_version {version!r}")
    out.version = version
    images = data.get("images", {})
    if not isinstance(images, dict):
        raise ValueError("'images' is not an object")
    for key, value in images.items():
        try:
            out.records[str(key)] = ImageRecord.from_json(value)
        except (ValueError, TypeError, RecursionError) as exc:
            out.problems.append(f"the record of {str(key)[:200]!r} cannot be read ({exc})")
    stems = data.get("stems", {}) if version >= 2 else {}
    if not isinstance(stems, dict):
        out.problems.append("'stems' is not an object")
        stems = {}
    seen: set[str] = set()
    for key, stem in stems.items():
        if (not isinstance(stem, str) or not stem or "/" in stem or "\\" in stem
                or stem in (".", "..") or len(stem.encode("utf-8")) > MAX_STEM_BYTES + 20
                or stem.lower() in seen):
            out.problems.append(f"the stem of {str(key)[:200]!r} is not usable ({str(stem)[:80]!r})")
            continue
        seen.add(stem.lower())
        out.stems[str(key)] = stem
    renames = data.get("renames", []) if version >= 2 else []
    if isinstance(renames, list):
        for item in renames:
            if (isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) and x for x in item)
                    and not any("/" in x or "\\" in x or x in (".", "..") for x in item)):
                out.renames.append((item[0], item[1]))
    return out


class Project:
    """Review records of one image folder, persisted in ``<project_dir>/project.json``.

    Open with ``Project.open_for``. Every setter saves at once (atomic write); a failing save
    raises ProjectNotWritable and leaves the previous project.json intact (the in-memory change is
    kept, so a later successful save writes it). A read-only project raises ProjectReadOnly.
    """

    def __init__(self, image_folder: Path, project_dir: Path) -> None:
        self.image_folder: Path = Path(os.path.realpath(image_folder))
        self.project_dir: Path = Path(os.path.realpath(project_dir))
        self.warnings: list[str] = []
        self.read_only: bool = False
        self.read_only_reason: str = ""
        self._records: dict[str, ImageRecord] = {}
        self._stems: dict[str, str] = {}        # key -> stem
        self._owners: dict[str, str] = {}       # stem.lower() -> key
        self._legacy_names = False              # schema 1 read as it is: legacy_stem()
        self._pending_renames: list[tuple[str, str]] = []  # (old stem, new stem) to move
        self._stamp: tuple[int, int] | None = None  # project.json as last read or written
        self._lock: locking.LockHandle | None = None
        self._finalizer: weakref.finalize[[], Project] | None = None

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open_for(cls, image_folder: Path | str, project_dir: Path | str | None = None,
                 read_only: bool = False) -> Project:
        """Open (or create) the project of ``image_folder``.

        ``project_dir`` defaults to ``<image_folder>/dermaseg-project``. Raises ProjectNotWritable
        when that folder cannot be created or written, ProjectError when ``image_folder`` is not a
        folder. ``read_only``: only read (nothing is created, locked or saved; for ``dermaseg
        export``). A project another process holds opens read-only, with a warning.
        """
        image_folder = Path(image_folder)
        if not image_folder.is_dir():
            raise ProjectError(image_folder, "is not a folder of images")
        pdir = Path(project_dir) if project_dir is not None else image_folder / PROJECT_DIRNAME
        project = cls(image_folder, pdir)
        if read_only:
            project._set_read_only("opened read-only")
            project._load()
            return project
        check_writable(pdir)
        try:
            lock = locking.acquire(pdir)
        except OSError as exc:
            raise ProjectNotWritable(pdir, f"cannot create the project lock ({_reason(exc)})") from exc
        if lock is None:
            who = locking.holder(pdir)
            project._set_read_only(
                f"it is open in another DermaSeg window or command ({who or 'another process'}); "
                "it is shown read-only and changes here are not saved")
            project.warnings.append(f"{pdir}: {project.read_only_reason}")
            project._load()
            return project
        project._lock = lock
        project._finalizer = weakref.finalize(project, lock.release)
        if lock.first:
            # We alone write here now: what a crash left half-written is garbage.
            for folder in (pdir, *(pdir / d for d in STORE_DIRS)):
                cleanup_stale_temp_files(folder, min_age_s=0)
            revisions = pdir / "revisions"
            if revisions.is_dir():
                for sub in revisions.iterdir():
                    if sub.is_dir() and not sub.is_symlink():
                        cleanup_stale_temp_files(sub, min_age_s=0)
        else:
            cleanup_stale_temp_files(pdir)
        project._load()
        if not project.read_only:
            project._finish_migration()
        return project

    @classmethod
    def open_existing(cls, path: Path | str, read_only: bool = False) -> Project:
        """Open a project from either its image folder or its project folder (for ``dermaseg export``).

        A project folder given directly reads the image folder from project.json (falls back to
        the parent folder).
        """
        path = Path(path)
        if is_project_dir(path):
            image_folder = path.parent
            pfile = path / PROJECT_FILENAME
            if pfile.is_file():
                try:
                    data = json.loads(pfile.read_text(encoding="utf-8"))
                    stored = data.get("image_folder") if isinstance(data, dict) else None
                    if isinstance(stored, str) and Path(stored).is_dir():
                        image_folder = Path(stored)
                except (OSError, ValueError, RecursionError):
                    pass
            return cls.open_for(image_folder, path, read_only=read_only)
        return cls.open_for(path, read_only=read_only)

    def close(self) -> None:
        """Give the project lock back (the project becomes read-only in this object)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
            if not self.read_only:
                self._set_read_only("closed")

    def _set_read_only(self, reason: str) -> None:
        self.read_only = True
        self.read_only_reason = reason

    def check_writable(self) -> None:
        """Raise ProjectReadOnly when nothing may be written to this project."""
        if self.read_only:
            raise ProjectReadOnly(self.project_dir, f"the project is read-only: {self.read_only_reason}")

    @property
    def path(self) -> Path:
        """The project.json file."""
        return self.project_dir / PROJECT_FILENAME

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def _read_text(self) -> str:
        with open(self.path, "rb") as fh:
            data = fh.read(MAX_PROJECT_BYTES + 1)
        if len(data) > MAX_PROJECT_BYTES:
            raise ValueError(f"larger than {MAX_PROJECT_BYTES // (1024 * 1024)} MB")
        return data.decode("utf-8")

    def _load(self) -> None:
        path = self.path
        if not path.exists():
            return
        try:
            stamp = self._file_stamp()
            parsed = _parse_project(self._read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            if self.read_only:
                self._warn(f"{path}: the project file is damaged ({exc}); it is left as it is and "
                           "the project is shown empty")
                return
            aside = path.with_name(f"{PROJECT_FILENAME}.corrupt-{_timestamp_for_filename()}")
            try:
                os.replace(path, aside)
                where = f"it was kept as {aside.name}"
            except OSError as move_exc:
                where = f"it could not be moved aside ({move_exc}); it is left as it is"
            self._warn(f"{path}: the project file is damaged ({exc}); {where}, and the project "
                       "starts empty")
            return
        except OSError as exc:
            raise ProjectError(path, f"cannot read the project file ({exc.strerror or exc})") from exc
        if parsed.version > SCHEMA_VERSION:
            self._set_read_only(f"its schema version {parsed.version} is newer than this DermaSeg "
                                f"reads ({SCHEMA_VERSION}); update DermaSeg to change it")
            self._warn(f"{path}: {self.read_only_reason}; it is shown read-only")
        if parsed.problems:
            where = ""
            if not self.read_only:
                aside = path.with_name(f"{PROJECT_FILENAME}.damaged-{_timestamp_for_filename()}")
                try:
                    shutil.copyfile(path, aside)
                    where = f"; the file as it was is kept as {aside.name}"
                except OSError as exc:
                    where = f"; it could not be copied aside ({exc})"
            shown = "; ".join(parsed.problems[:5]) + (" ..." if len(parsed.problems) > 5 else "")
            self._warn(f"{path}: {len(parsed.problems)} damaged entr{'y' if len(parsed.problems) == 1 else 'ies'} "
                       f"skipped ({shown}); the {len(parsed.records)} good record(s) are kept{where}")
        self._records = parsed.records
        self._set_stems(parsed.stems)
        self._pending_renames = parsed.renames
        self._legacy_names = parsed.version < 2
        self._stamp = stamp

    def _warn(self, message: str) -> None:
        log.warning(message)
        self.warnings.append(message)

    def _set_stems(self, stems: dict[str, str]) -> None:
        self._stems = dict(stems)
        self._owners = {stem.lower(): key for key, stem in self._stems.items()}

    def _merge_from_disk(self) -> None:
        """Another writer in this process saved project.json since we read it: take its records
        (ours win only for the image being changed) and its stems, so neither overwrites the
        other's work."""
        stamp = self._file_stamp()
        if stamp is None or stamp == self._stamp:
            return
        try:
            disk = _parse_project(self._read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            return  # unreadable now: keep ours; the next save replaces it atomically
        for key, rec in disk.records.items():
            mine = self._records.get(key)
            if mine is None or (rec.updated or "") > (mine.updated or ""):
                self._records[key] = rec
        for key, stem in disk.stems.items():
            if key not in self._stems and stem.lower() not in self._owners:
                self._stems[key] = stem
                self._owners[stem.lower()] = key
        self._stamp = stamp

    # -- migration of schema-1 names ---------------------------------------------------------
    def _finish_migration(self) -> None:
        """Upgrade a schema-1 project to schema 2 (new stems, files renamed), or finish the
        renames a crash interrupted. Only with the lock held."""
        if self._legacy_names:
            self._plan_migration()
        if not self._pending_renames:
            return
        for old, new in self._pending_renames:
            self._rename_stem_files(old, new)
        self._pending_renames = []
        self.save()

    def _plan_migration(self) -> None:
        on_disk = self._stems_on_disk()
        owners: dict[str, str] = {}  # legacy stem -> key
        for stem in sorted(on_disk):
            key = self._key_from_store_files(stem)
            if key is not None:
                owners[stem] = key
        unresolved = on_disk - set(owners)
        if unresolved:
            from dermaseg_app.core.dataset import find_images

            candidates: dict[str, list[str]] = {}
            keys = set(self._records)
            try:
                for image in find_images([self.image_folder]):
                    try:
                        keys.add(self.key(image))
                    except ValueError:
                        continue
            except OSError:
                pass
            for key in keys:
                candidates.setdefault(legacy_stem(key), []).append(key)
            for stem in sorted(unresolved):
                found = sorted(candidates.get(stem, []), key=lambda k: (k not in self._records, k))
                if found:
                    owners[stem] = found[0]
        # New stems: never one of the legacy names still on disk (those files move last).
        self._legacy_names = False
        reserved = {s.lower() for s in on_disk}
        renames: list[tuple[str, str]] = []
        for old, key in sorted(owners.items(), key=lambda item: item[1]):
            if key in self._stems:
                continue
            new = self._propose_stem(key, reserved - {old.lower()})
            self._stems[key] = new
            self._owners[new.lower()] = key
            if new != old:
                renames.append((old, new))
        self._pending_renames = renames
        self.save()  # the plan is recorded before any file moves
        if unresolved - set(owners):
            self._warn(f"{self.project_dir}: stored files of "
                       f"{', '.join(sorted(unresolved - set(owners))[:5])} belong to no image of "
                       f"{self.image_folder}; they are left as they are")

    def _stems_on_disk(self) -> set[str]:
        found: set[str] = set()
        for folder, suffix in STORE_FILES:
            d = self.project_dir / folder
            try:
                entries = list(os.scandir(d))
            except OSError:
                continue
            for entry in entries:
                name = entry.name
                if name.startswith("."):
                    continue
                if suffix == "/":
                    if entry.is_dir(follow_symlinks=False):
                        found.add(name)
                elif name.endswith(suffix) and len(name) > len(suffix):
                    stem = name[: -len(suffix)]
                    if folder == "corrections" and suffix == ".json" and stem.endswith("_segmentation"):
                        continue
                    found.add(stem)
        return found

    def _key_from_store_files(self, stem: str) -> str | None:
        """The image key a stem's sidecar or journal header names, if any."""
        sources = (self.project_dir / "corrections" / f"{stem}.json",
                   self.project_dir / "journal" / f"{stem}.jsonl")
        for path in sources:
            try:
                with open(path, encoding="utf-8") as fh:
                    line = fh.read(1 << 20) if path.suffix == ".json" else fh.readline(1 << 16)
                data = json.loads(line)
            except (OSError, ValueError, RecursionError):
                continue
            key = data.get("image") if isinstance(data, dict) else None
            if isinstance(key, str) and key and not key.startswith("/") and ".." not in key.split("/"):
                return key
        return None

    def _rename_stem_files(self, old: str, new: str) -> None:
        """Move a stem's files to the new stem: each only when it is still at the old name and
        nothing is at the new one (so running it again after a crash finishes the job)."""
        for folder, suffix in STORE_FILES:
            d = self.project_dir / folder
            src = d / (old if suffix == "/" else f"{old}{suffix}")
            dst = d / (new if suffix == "/" else f"{new}{suffix}")
            if os.path.lexists(src) and not os.path.lexists(dst):
                try:
                    os.rename(src, dst)
                except OSError as exc:
                    self._warn(f"{src}: cannot rename it to {dst.name} ({_reason(exc)})")
        sidecar = self.project_dir / "corrections" / f"{new}.json"
        try:
            data = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return
        if not isinstance(data, dict) or data.get("stem") == new:
            return
        data["stem"] = new
        revisions = data.get("revisions")
        if isinstance(revisions, list):
            for rev in revisions:
                if isinstance(rev, dict) and isinstance(rev.get("file"), str):
                    rev["file"] = f"revisions/{new}/{rev['file'].rsplit('/', 1)[-1]}"
        try:
            atomic_write_text(sidecar, json.dumps(data, indent=1) + "\n")
        except OSError as exc:
            self._warn(f"{sidecar}: cannot update it to the new name ({_reason(exc)})")

    # -- keys ----------------------------------------------------------------------------------
    def key(self, image_path: Path | str) -> str:
        """The project key of an image: its path relative to the image folder, POSIX separators.

        A relative path is taken as relative to the image folder. Raises ValueError for an image
        outside the image folder.
        """
        p = Path(image_path)
        if not p.is_absolute():
            p = self.image_folder / p
        p = Path(os.path.abspath(p))
        try:
            rel = p.relative_to(self.image_folder)
        except ValueError:
            try:
                rel = Path(os.path.realpath(p)).relative_to(self.image_folder)
            except ValueError:
                raise ValueError(f"{image_path}: the image is not inside the project's image folder "
                                 f"{self.image_folder}") from None
        if not rel.parts or ".." in rel.parts:
            raise ValueError(f"{image_path}: not an image inside the project's image folder "
                             f"{self.image_folder}")
        return rel.as_posix()

    def stem_for(self, image_path: Path | str) -> str:
        """The file stem of this image's corrections, predictions and journal (see the module
        docstring). For an image that has none yet, the stem it would get (``assign_stem``
        records it)."""
        key = self.key(image_path)
        stem = self._stems.get(key)
        if stem is not None:
            return stem
        if self._legacy_names:
            return legacy_stem(key)
        return self._propose_stem(key)

    def assign_stem(self, image_path: Path | str) -> str:
        """The image's stem, recorded in project.json first if it was not yet (call before
        writing files named after it). Raises ProjectReadOnly / ProjectNotWritable."""
        key = self.key(image_path)
        stem = self._stems.get(key)
        if stem is not None:
            return stem
        if self._legacy_names:
            return legacy_stem(key)
        self.check_writable()
        self._merge_from_disk()
        stem = self._stems.get(key)
        if stem is not None:
            return stem
        stem = self._propose_stem(key)
        self._stems[key] = stem
        self._owners[stem.lower()] = key
        self.save()
        return stem

    def key_for_stem(self, stem: str) -> str | None:
        """The image key a stem belongs to (None when no image has it)."""
        key = self._owners.get(stem.lower())
        if key is not None:
            return key
        if self._legacy_names:
            for k in self._records:
                if legacy_stem(k) == stem:
                    return k
        return None

    def planned_stems(self, images: Iterable[Path | str]) -> dict[str, str]:
        """key -> stem for ``images``: the recorded stems, and for the others the stems they would
        be given in this order -- unique among themselves too, without recording anything (for a
        read-only export)."""
        owners = dict(self._owners)
        stems = dict(self._stems)
        out: dict[str, str] = {}
        for image in images:
            key = self.key(image)
            if key not in stems:
                if self._legacy_names:
                    stems[key] = legacy_stem(key)
                else:
                    saved = self._owners
                    self._owners = owners
                    try:
                        stems[key] = self._propose_stem(key)
                    finally:
                        self._owners = saved
                owners[stems[key].lower()] = key
            out[key] = stems[key]
        return out

    def stems(self) -> dict[str, str]:
        """Recorded stems by key (a copy)."""
        return dict(self._stems)

    def _propose_stem(self, key: str, reserved: AbstractSet[str] = frozenset()) -> str:
        def free(stem: str) -> bool:
            low = stem.lower()
            owner = self._owners.get(low)
            return (owner is None or owner == key) and low not in reserved

        candidates = stem_candidates(key)
        for stem in candidates:
            if free(stem):
                return stem
        n = 2
        while True:
            stem = _shorten(f"{candidates[0]}-{n}", key + f"-{n}")
            if free(stem):
                return stem
            n += 1

    def image_path(self, key: str) -> Path:
        """The absolute image path of a project key."""
        return self.image_folder / Path(*key.split("/"))

    # -- records -------------------------------------------------------------------------------
    def record(self, image_path: Path | str) -> ImageRecord:
        """The record of an image (a default, unreviewed record when none is stored)."""
        return self._records.get(self.key(image_path), ImageRecord())

    def records(self) -> dict[str, ImageRecord]:
        """All stored records by key (a copy)."""
        return dict(self._records)

    def counts(self) -> dict[ReviewStatus, int]:
        """How many stored records have each status (images without a record are not counted)."""
        out = {s: 0 for s in ReviewStatus}
        for rec in self._records.values():
            out[rec.status] += 1
        return out

    def set_status(self, image_path: Path | str, status: ReviewStatus | str) -> ImageRecord:
        """Set the review status and save at once. Returns the new record."""
        return self._update(image_path, status=ReviewStatus(status))

    def set_note(self, image_path: Path | str, text: str) -> ImageRecord:
        """Set the free-text note and save at once. Returns the new record."""
        if not isinstance(text, str):
            raise TypeError("a note is text")
        return self._update(image_path, note=text)

    def set_edited(self, image_path: Path | str, edited: bool = True) -> ImageRecord:
        """Mark whether the image has a saved correction, and save at once."""
        return self._update(image_path, edited=bool(edited))

    def _update(self, image_path: Path | str, **changes: Any) -> ImageRecord:
        key = self.key(image_path)
        self.check_writable()
        self._merge_from_disk()
        new = replace(self._records.get(key, ImageRecord()), updated=utc_now(), **changes)
        self._records[key] = new
        self.save()
        return new

    def to_json(self) -> dict:
        data = {
            "schema_version": SCHEMA_VERSION,
            "image_folder": str(self.image_folder),
            "images": {k: self._records[k].to_json() for k in sorted(self._records)},
            "stems": {k: self._stems[k] for k in sorted(self._stems)},
        }
        if self._pending_renames:
            data["renames"] = [list(r) for r in self._pending_renames]
        return data

    def save(self) -> None:
        """Write project.json atomically. Raises ProjectReadOnly or ProjectNotWritable; the old
        file stays intact."""
        self.check_writable()
        if self._legacy_names:  # never write schema 2 over files still named the schema-1 way
            raise ProjectReadOnly(self.project_dir, "the project's files still have schema-1 names")
        text = json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n"
        try:
            atomic_write_text(self.path, text)
        except OSError as exc:
            raise ProjectNotWritable(self.path, f"cannot save the project ({_reason(exc)}); "
                                                "the previous project file is unchanged") from exc
        self._stamp = self._file_stamp()

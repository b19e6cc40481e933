"""The review project of one image folder: status, note and "edited" flag per image.

A project lives in ``<image folder>/dermaseg-project/`` by default, or in a folder the user picks
when the image folder is read-only (``Project.open_for(image_folder, project_dir=...)``).
Its ``project.json`` is rewritten atomically (core.atomic) on every change, so a crash never
leaves a half-written file; a corrupt ``project.json`` is moved aside as
``project.json.corrupt-<UTC time>`` (never deleted) and reported in ``Project.warnings``.

project.json::

    {"schema_version": 1,
     "image_folder": "/abs/path/of/the/images",
     "images": {"sub/ISIC_0000009.jpg": {"status": "accepted", "note": "...",
                                        "updated": "2026-11-22T11:30:00Z", "edited": false}}}

Keys are image paths relative to the image folder with POSIX separators, so a project moves with
its folder and reads the same on Windows and Linux.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path

from dermaseg_app.core.atomic import TEMP_PREFIX, atomic_write_text, cleanup_stale_temp_files

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
PROJECT_DIRNAME = "dermaseg-project"
PROJECT_FILENAME = "project.json"


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
    def from_json(cls, data: dict) -> "ImageRecord":
        try:
            status = ReviewStatus(data.get("status", ReviewStatus.UNREVIEWED.value))
        except ValueError:
            status = ReviewStatus.UNREVIEWED
        note = data.get("note", "")
        updated = data.get("updated")
        return cls(status=status, note=note if isinstance(note, str) else str(note),
                   updated=updated if isinstance(updated, str) else None,
                   edited=bool(data.get("edited", False)))


class ProjectError(Exception):
    """A project folder cannot be used; the message names the folder and the reason."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ProjectNotWritable(ProjectError):
    """The project folder cannot be created or written (read-only medium, no permission, ...).

    The GUI answers by asking the user for another folder and calling
    ``Project.open_for(image_folder, project_dir=<chosen folder>)``.
    """


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


class Project:
    """Review records of one image folder, persisted in ``<project_dir>/project.json``.

    Open with ``Project.open_for``. Every setter saves at once (atomic write); a failing save
    raises ProjectNotWritable and leaves the previous project.json intact (the in-memory change is
    kept, so a later successful save writes it).
    """

    def __init__(self, image_folder: Path, project_dir: Path) -> None:
        self.image_folder: Path = Path(image_folder).resolve()
        self.project_dir: Path = Path(project_dir).resolve()
        self.warnings: list[str] = []
        self._records: dict[str, ImageRecord] = {}
        self._stamp: tuple[int, int] | None = None  # project.json as last read or written

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open_for(cls, image_folder: Path | str, project_dir: Path | str | None = None) -> "Project":
        """Open (or create) the project of ``image_folder``.

        ``project_dir`` defaults to ``<image_folder>/dermaseg-project``. Raises ProjectNotWritable
        when that folder cannot be created or written, ProjectError when ``image_folder`` is not a
        folder. A corrupt project.json is moved aside and reported in ``warnings``.
        """
        image_folder = Path(image_folder)
        if not image_folder.is_dir():
            raise ProjectError(image_folder, "is not a folder of images")
        pdir = Path(project_dir) if project_dir is not None else image_folder / PROJECT_DIRNAME
        check_writable(pdir)
        cleanup_stale_temp_files(pdir)  # leftovers of a crash during a write
        project = cls(image_folder, pdir)
        project._load()
        return project

    @classmethod
    def open_existing(cls, path: Path | str) -> "Project":
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
                    stored = json.loads(pfile.read_text(encoding="utf-8")).get("image_folder")
                    if isinstance(stored, str) and Path(stored).is_dir():
                        image_folder = Path(stored)
                except (OSError, ValueError, AttributeError):
                    pass
            return cls.open_for(image_folder, path)
        return cls.open_for(path)

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

    def _parse(self, text: str) -> dict[str, ImageRecord]:
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("images", {}), dict):
            raise ValueError("the top level is not an object with an 'images' object")
        version = data.get("schema_version", SCHEMA_VERSION)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ValueError(f"unsupported schema_version {version!r} (this version reads "
                             f"{SCHEMA_VERSION})")
        records = {}
        for key, value in data.get("images", {}).items():
            if not isinstance(value, dict):
                raise ValueError(f"the record of {key!r} is not an object")
            records[str(key)] = ImageRecord.from_json(value)
        return records

    def _load(self) -> None:
        path = self.path
        if not path.exists():
            return
        try:
            stamp = self._file_stamp()
            records = self._parse(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            aside = path.with_name(f"{PROJECT_FILENAME}.corrupt-{_timestamp_for_filename()}")
            try:
                os.replace(path, aside)
                where = f"it was kept as {aside.name}"
            except OSError as move_exc:
                where = f"it could not be moved aside ({move_exc}); it is left as it is"
            message = (f"{path}: the project file is damaged ({exc}); {where}, and the project "
                       "starts empty")
            log.warning(message)
            self.warnings.append(message)
            return
        except OSError as exc:
            raise ProjectError(path, f"cannot read the project file ({exc.strerror or exc})") from exc
        self._records = records
        self._stamp = stamp

    def _merge_from_disk(self) -> None:
        """Another window or process saved project.json since we read it: take its records
        (ours win only for the image being changed), so neither overwrites the other's work."""
        stamp = self._file_stamp()
        if stamp is None or stamp == self._stamp:
            return
        try:
            disk = self._parse(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            return  # unreadable now: keep ours; the next save replaces it atomically
        for key, rec in disk.items():
            mine = self._records.get(key)
            if mine is None or (rec.updated or "") > (mine.updated or ""):
                self._records[key] = rec
        self._stamp = stamp

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
                rel = p.resolve().relative_to(self.image_folder)
            except ValueError:
                raise ValueError(f"{image_path}: the image is not inside the project's image folder "
                                 f"{self.image_folder}") from None
        return rel.as_posix()

    def stem_for(self, image_path: Path | str) -> str:
        """The file stem used for this image's corrections, predictions and journal.

        The image's file stem for images directly in the folder (ISIC naming:
        ``corrections/<stem>_segmentation.png``); for images in sub-folders the sub-folders are
        prefixed with ``__`` so two images with the same name never share files.
        """
        rel = Path(self.key(image_path))
        parts = list(rel.parent.parts) + [rel.stem]
        return "__".join(parts)

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

    def _update(self, image_path: Path | str, **changes) -> ImageRecord:
        key = self.key(image_path)
        self._merge_from_disk()
        new = replace(self._records.get(key, ImageRecord()), updated=utc_now(), **changes)
        self._records[key] = new
        self.save()
        return new

    def to_json(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "image_folder": str(self.image_folder),
            "images": {k: self._records[k].to_json() for k in sorted(self._records)},
        }

    def save(self) -> None:
        """Write project.json atomically. Raises ProjectNotWritable; the old file stays intact."""
        text = json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n"
        try:
            atomic_write_text(self.path, text)
        except OSError as exc:
            raise ProjectNotWritable(self.path, f"cannot save the project ({_reason(exc)}); "
                                                "the previous project file is unchanged") from exc
        self._stamp = self._file_stamp()

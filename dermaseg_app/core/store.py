"""Corrected masks, their revisions, the model's original prediction and the crash journal (issue 5).

Layout inside a project folder (core.project)::

    corrections/<stem>_segmentation.png   the latest corrected mask, 0/255 PNG, full resolution
    corrections/<stem>.json               sidecar: when, model name+version, changed pixels,
                                          DSC vs the prediction, the revision list
    revisions/<stem>/<n>_segmentation.png every saved revision (n = 1, 2, ...), never overwritten
    predictions/<stem>_prediction.png     the model's mask the correction started from
    predictions/<stem>_prediction.json    which model made it, and when
    journal/<stem>.jsonl                  every edit since the last save, one JSON line each,
                                          flushed and fsynced at once

``<stem>`` is the image's stem in the project (``Project.stem_for``): ISIC naming, unique and
recorded in project.json before a file is named after it.

Every file write is atomic (core.atomic), and a revision file is created exclusively (a revision
number is never taken twice). The journal is appended and fsynced per line, so a crash loses at
most the brush stroke in progress: ``pending_recovery(project)`` lists the images with an unsaved
journal and ``store.recover(stem)`` replays it onto the saved revision it was started from (or the
prediction). The journal's first line names that revision (``base_revision``); a journal older
than the image's saved revision (a crash after the save was complete but before the journal was
cleared) is stale and discarded, so no edit is ever applied twice. A failing append is truncated
back, and a damaged line is skipped. A failing write raises :class:`StoreError` naming the file
and the cause; the previous file is intact and the edit stays in memory and in the journal.

The commit point of a save is the sidecar: a crash before it leaves the previous correction in
force (a revision file written before it is orphaned and never reused).

Ground truth is never written: every target path is checked against the image's ground truth
(core.dataset.find_ground_truth) and against ground-truth folders (``*GroundTruth``, ``masks``,
``ground_truth``, ``gt``), and :class:`GroundTruthProtected` is raised.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from dermaseg_app.core.atomic import atomic_create_bytes, atomic_write_text, cleanup_stale_temp_files
from dermaseg_app.core.dataset import find_ground_truth, is_mask_folder_name
from dermaseg_app.core.errors import DermaSegError
from dermaseg_app.core.history import History, replay_entry
from dermaseg_app.core.imageio import ImageReadError, encode_mask_png, image_size, read_mask, write_mask_png
from dermaseg_app.core.metrics import agreement
from dermaseg_app.core.project import Project, ProjectError, utc_now

log = logging.getLogger(__name__)

SIDECAR_VERSION = 1
JOURNAL_VERSION = 2
MAX_SIDECAR_BYTES = 16 * 1024 * 1024
MAX_JOURNAL_LINE = 64 * 1024 * 1024
GROUND_TRUTH_DIR_NAMES = frozenset({"gt", "ground_truth", "ground-truth"})


class StoreError(DermaSegError):
    """Saving or reading a correction failed; the message names the file and the reason."""


class GroundTruthProtected(StoreError):
    """A write was aimed at ground truth (the image's ground-truth file or a ground-truth folder)."""


def is_ground_truth_folder_name(name: str) -> bool:
    """True for folder names that hold ground truth: ``*GroundTruth`` (ISIC), ``masks``, PH2's
    ``*_lesion``, ``gt`` ... (core.dataset.is_mask_folder_name plus a few common names)."""
    return is_mask_folder_name(name) or name.lower() in GROUND_TRUTH_DIR_NAMES


def check_not_ground_truth(path: Path | str, protected: Iterable[Path | str] = (),
                           roots: Iterable[Path | str] = ()) -> None:
    """Raise GroundTruthProtected when ``path`` is a protected file or lies in a ground-truth folder.

    Folder names are checked below the first of ``roots`` that holds the path (the store passes
    the dataset folder, i.e. the image folder's parent, and the project folder's parent), so a
    ground-truth-like name far above the data (a home folder called "gt") does not block
    everything; without a matching root the nearest four folders are checked. Symbolic links are
    resolved, and an existing target that is the same file as a protected one (a hard link) is
    refused as well.
    """
    p = Path(os.path.abspath(path))
    resolved = Path(os.path.realpath(p))
    for candidate in (p, resolved):
        folders = list(candidate.parents)
        limit = None
        for root in roots:
            r = Path(os.path.abspath(root))
            if candidate.is_relative_to(r):
                limit = len(candidate.relative_to(r).parts) - 1
                break
        for folder in folders[:4 if limit is None else limit]:
            if is_ground_truth_folder_name(folder.name):
                raise GroundTruthProtected(p, f"refusing to write inside the ground-truth folder {folder}")
    for gt in protected:
        g = Path(gt)
        if Path(os.path.abspath(g)) == p or Path(os.path.realpath(g)) == resolved:
            raise GroundTruthProtected(p, "refusing to overwrite the image's ground truth")
        try:
            if resolved.exists() and g.exists() and os.path.samefile(resolved, g):
                raise GroundTruthProtected(p, "refusing to overwrite the image's ground truth")
        except OSError:
            pass


@dataclass(frozen=True)
class Revision:
    """One saved correction."""

    n: int
    file: str            # relative to the project folder, POSIX separators
    saved: str           # ISO-8601 UTC
    area: int            # lesion pixels
    changed_pixels: int | None   # pixels that differ from the prediction (None: no prediction)
    dsc_vs_prediction: float | None


@dataclass
class CorrectionInfo:
    """The sidecar ``corrections/<stem>.json``."""

    stem: str
    image: str                       # project key of the image
    saved: str
    model_name: str | None
    model_version: str | None
    shape: list[int]                 # [height, width]
    area: int
    changed_pixels: int | None
    dsc_vs_prediction: float | None
    revisions: list[Revision] = field(default_factory=list)
    schema_version: int = SIDECAR_VERSION

    def to_json(self) -> dict:
        data = asdict(self)
        data["revisions"] = [asdict(r) for r in self.revisions]
        return data

    @classmethod
    def from_json(cls, data: object) -> CorrectionInfo:
        """The sidecar stored as ``data``; ValueError when a field is missing or of the wrong type."""
        if not isinstance(data, dict):
            raise ValueError("the sidecar is not a JSON object")
        revisions = data.get("revisions", [])
        if not isinstance(revisions, list):
            raise ValueError("'revisions' is not a list")
        revs = [_revision_from_json(r) for r in revisions]
        shape = data.get("shape")
        if not (isinstance(shape, list) and len(shape) == 2 and all(_is_int(v) and v >= 0 for v in shape)):
            raise ValueError(f"'shape' is not [height, width] ({str(shape)[:60]})")
        version = data.get("schema_version", 1)
        if not _is_int(version):
            raise ValueError("'schema_version' is not a whole number")
        return cls(stem=_text(data, "stem"), image=_text(data, "image"), saved=_text(data, "saved"),
                   model_name=_optional_text(data, "model_name"),
                   model_version=_optional_text(data, "model_version"),
                   shape=[int(v) for v in shape], area=_count(data, "area"),
                   changed_pixels=_optional_count(data, "changed_pixels"),
                   dsc_vs_prediction=_fraction(data, "dsc_vs_prediction"),
                   revisions=revs, schema_version=int(version))


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _optional_text(data: dict[str, Any], key: str) -> str | None:
    return None if data.get(key) is None else _text(data, key)


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key!r} is not text")
    return value


def _optional_count(data: dict[str, Any], key: str) -> int | None:
    return None if data.get(key) is None else _count(data, key)


def _count(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if not _is_int(value) or value < 0:
        raise ValueError(f"{key!r} is not a pixel count")
    return int(value)


def _fraction(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key!r} is not a number")
    return float(value)


def _revision_from_json(data: object) -> Revision:
    if not isinstance(data, dict):
        raise ValueError("a revision is not an object")
    n = data.get("n")
    if not _is_int(n) or n < 1:
        raise ValueError("a revision number is not a whole number of at least 1")
    return Revision(n=int(n), file=_text(data, "file"), saved=_text(data, "saved"),
                    area=_count(data, "area"), changed_pixels=_optional_count(data, "changed_pixels"),
                    dsc_vs_prediction=_fraction(data, "dsc_vs_prediction"))


def _read_json(path: Path, limit: int = MAX_SIDECAR_BYTES) -> object:
    """JSON from ``path``: FileNotFoundError when missing; ValueError for a file that is not JSON,
    too large, nested too deeply, or not a regular file; OSError when it cannot be read."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise ValueError("it is not a regular file")
    if st.st_size > limit:
        raise ValueError(f"it is larger than {limit} bytes")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc.reason})") from None


@dataclass(frozen=True)
class PredictionInfo:
    """Which model made the stored prediction."""

    model_name: str | None
    model_version: str | None
    saved: str
    shape: list[int]
    area: int


class CorrectionStore:
    """Corrections, revisions, predictions and journals of one project.

    Public methods take the image (a path, absolute or relative to the image folder) except the
    recovery functions, which work on stems (``project.stem_for(image)``) found in the journal
    folder. Opening cleans temp files left by a crash in the store's folders.
    """

    def __init__(self, project: Project) -> None:
        self.project = project
        root = project.project_dir
        self.corrections_dir = root / "corrections"
        self.revisions_dir = root / "revisions"
        self.predictions_dir = root / "predictions"
        self.journal_dir = root / "journal"
        self._protected_extra: list[Path] = []
        if project.read_only:  # nothing is created or cleaned; reading works, writing says why
            return
        for d in (self.corrections_dir, self.revisions_dir, self.predictions_dir, self.journal_dir):
            check_not_ground_truth(d / "x", roots=self._roots())
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(d, f"cannot create the folder ({exc.strerror or exc})") from exc
            cleanup_stale_temp_files(d)
        for sub in self.revisions_dir.iterdir():
            if sub.is_dir() and not sub.is_symlink():
                cleanup_stale_temp_files(sub)

    @property
    def read_only(self) -> bool:
        return self.project.read_only

    def _check_writable(self) -> None:
        if self.project.read_only:
            raise StoreError(self.project.project_dir,
                             f"the project is read-only ({self.project.read_only_reason}); nothing is saved")

    def _assign(self, image: Path | str) -> str:
        """The image's stem, recorded in the project before files are named after it."""
        self._check_writable()
        try:
            return self.project.assign_stem(image)
        except ProjectError as exc:
            raise StoreError(exc.path, f"cannot record the image's file name in the project ({exc.reason})") from exc

    # -- names ----------------------------------------------------------------------------------
    def stem(self, image: Path | str) -> str:
        return self.project.stem_for(image)

    def correction_path(self, image: Path | str) -> Path:
        return self.corrections_dir / f"{self.stem(image)}_segmentation.png"

    def sidecar_path(self, image: Path | str) -> Path:
        return self.corrections_dir / f"{self.stem(image)}.json"

    def prediction_path(self, image: Path | str) -> Path:
        return self.predictions_dir / f"{self.stem(image)}_prediction.png"

    def prediction_info_path(self, image: Path | str) -> Path:
        return self.predictions_dir / f"{self.stem(image)}_prediction.json"

    def revision_dir(self, image: Path | str) -> Path:
        return self.revisions_dir / self.stem(image)

    def journal_path_for_stem(self, stem: str) -> Path:
        return self.journal_dir / f"{stem}.jsonl"

    def journal_path(self, image: Path | str) -> Path:
        return self.journal_path_for_stem(self.stem(image))

    # -- ground-truth guard ---------------------------------------------------------------------
    def protect(self, path: Path | str) -> None:
        """Add a file that must never be written (e.g. a ground truth given with --masks)."""
        self._protected_extra.append(Path(path))

    def _protected_for(self, image: Path | str | None) -> list[Path]:
        protected = list(self._protected_extra)
        if image is not None:
            gt = find_ground_truth(self.project.image_path(self.project.key(image)))
            if gt is not None:
                protected.append(Path(gt))
        return protected

    def _roots(self) -> list[Path]:
        return [self.project.image_folder.parent, self.project.project_dir.parent]

    def _guard(self, target: Path, image: Path | str | None) -> None:
        check_not_ground_truth(target, self._protected_for(image), self._roots())

    # -- writing helpers --------------------------------------------------------------------------
    def _write_mask(self, path: Path, mask: np.ndarray, image: Path | str | None) -> None:
        self._check_writable()
        self._guard(path, image)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_mask_png(path, mask)
        except OSError as exc:
            raise StoreError(path, f"cannot save the mask ({_reason(exc)}); the previous file is "
                                   "unchanged and the edit is kept in memory and in the journal") from exc

    def _write_json(self, path: Path, data: dict, image: Path | str | None) -> None:
        self._check_writable()
        self._guard(path, image)
        try:
            atomic_write_text(path, json.dumps(data, indent=1) + "\n")
        except OSError as exc:
            raise StoreError(path, f"cannot save ({_reason(exc)}); the previous file is unchanged") from exc

    def _read_mask(self, path: Path) -> np.ndarray | None:
        """The stored mask at ``path``; None when there is none; StoreError when something is
        there that cannot be read (also a folder or other non-file in its place)."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if os.path.lexists(path):
                raise StoreError(path, "it is a broken symbolic link, not a stored mask") from None
            return None
        except OSError as exc:
            raise StoreError(path, f"cannot read the stored mask ({_reason(exc)})") from exc
        if not stat.S_ISREG(st.st_mode):
            what = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise StoreError(path, f"the stored mask is {what}; move it away to use the file")
        try:
            return read_mask(path)
        except ImageReadError as exc:
            raise StoreError(path, f"cannot read the stored mask ({exc.reason})") from exc

    # -- predictions ----------------------------------------------------------------------------
    def save_prediction(self, image: Path | str, mask: np.ndarray, model_name: str | None = None,
                        model_version: str | None = None, overwrite: bool = False) -> Path:
        """Keep the model's mask the correction starts from (kept as it is unless ``overwrite``)."""
        self._check_writable()
        path = self.prediction_path(image)
        if os.path.lexists(path) and not overwrite:
            return path
        self._assign(image)
        path = self.prediction_path(image)
        mask = np.asarray(mask, dtype=bool)
        self._check_size(image, mask)
        self._write_mask(path, mask, image)
        info = PredictionInfo(model_name, model_version, utc_now(), list(mask.shape), int(mask.sum()))
        self._write_json(self.prediction_info_path(image), asdict(info), image)
        return path

    def load_prediction(self, image: Path | str) -> np.ndarray | None:
        return self._read_mask(self.prediction_path(image))

    def prediction_info(self, image: Path | str) -> PredictionInfo | None:
        path = self.prediction_info_path(image)
        try:
            data = _read_json(path)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            info = PredictionInfo(model_name=_optional_text(data, "model_name"),
                                  model_version=_optional_text(data, "model_version"),
                                  saved=_text(data, "saved"), shape=list(data.get("shape") or []),
                                  area=_count(data, "area"))
            return info
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            log.warning("%s: unreadable prediction info (%s)", path, exc)
            return None

    # -- corrections ----------------------------------------------------------------------------
    def has_correction(self, image: Path | str) -> bool:
        """True when something is stored as the image's correction (load_correction says
        whether it can be read)."""
        return os.path.lexists(self.correction_path(image))

    def load_correction(self, image: Path | str) -> np.ndarray | None:
        return self._read_mask(self.correction_path(image))

    def base_mask(self, image: Path | str) -> np.ndarray | None:
        """The last saved correction, else the stored prediction, else None."""
        m = self.load_correction(image)
        return m if m is not None else self.load_prediction(image)

    def info(self, image: Path | str) -> CorrectionInfo | None:
        """The sidecar of the image's correction (None when never saved or unreadable)."""
        return self._info_at(self.sidecar_path(image))

    def _info_at(self, path: Path) -> CorrectionInfo | None:
        try:
            return CorrectionInfo.from_json(_read_json(path))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            log.warning("%s: unreadable correction sidecar (%s)", path, exc)
            return None

    def revisions(self, image: Path | str) -> list[Path]:
        """Saved revision files, oldest first."""
        return self._revision_files(self.revision_dir(image))

    def _revision_files(self, d: Path) -> list[Path]:
        if not d.is_dir():
            return []
        found = []
        for p in d.iterdir():
            m = re.fullmatch(r"(\d+)_segmentation\.png", p.name)
            if m:
                found.append((int(m.group(1)), p))
        return [p for _, p in sorted(found)]

    def save_correction(self, image: Path | str, mask: np.ndarray, *, model_name: str | None = None,
                        model_version: str | None = None) -> CorrectionInfo:
        """Save a corrected mask: a new revision, the latest correction, the sidecar; then clear the
        journal and mark the image edited in the project. Raises StoreError (nothing lost)."""
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim != 2:
            raise ValueError(f"a mask is 2-D, got shape {mask.shape}")
        stem = self._assign(image)
        key = self.project.key(image)
        self._check_size(image, mask)
        pred = self.load_prediction(image)
        pinfo = self.prediction_info(image)
        if pred is not None and pred.shape != mask.shape:
            raise StoreError(self.prediction_path(image),
                             f"the stored prediction is {pred.shape}, the corrected mask {mask.shape}")
        changed = int(np.count_nonzero(pred != mask)) if pred is not None else None
        dsc = float(agreement(mask, pred)) if pred is not None else None
        old = self.info(image)
        revs = self.revisions(image)
        n = max([int(p.name.split("_")[0]) for p in revs] + [r.n for r in (old.revisions if old else [])]
                + [0]) + 1
        now = utc_now()
        rev_path = self._create_revision(image, n, mask)
        n = int(rev_path.name.split("_")[0])
        self._write_mask(self.correction_path(image), mask, image)
        revision = Revision(n, rev_path.relative_to(self.project.project_dir).as_posix(), now,
                            int(mask.sum()), changed, dsc)
        info = CorrectionInfo(
            stem=stem, image=key, saved=now,
            model_name=model_name if model_name is not None else (pinfo.model_name if pinfo else None),
            model_version=model_version if model_version is not None else (
                pinfo.model_version if pinfo else None),
            shape=list(mask.shape), area=int(mask.sum()), changed_pixels=changed,
            dsc_vs_prediction=dsc, revisions=(old.revisions if old else []) + [revision])
        self._write_json(self.sidecar_path(image), info.to_json(), image)
        self.clear_journal(stem)
        try:
            self.project.set_edited(image, True)
        except ProjectError as exc:
            raise StoreError(self.project.path, f"cannot update the project ({exc})") from exc
        return info

    def _create_revision(self, image: Path | str, n: int, mask: np.ndarray) -> Path:
        """Write revision ``n`` (or the next free number) exclusively: never over a revision,
        also not over one another writer created a moment ago."""
        folder = self.revision_dir(image)
        data = encode_mask_png(mask)
        for _ in range(10000):
            path = folder / f"{n}_segmentation.png"
            self._guard(path, image)
            try:
                folder.mkdir(parents=True, exist_ok=True)
                atomic_create_bytes(path, data)
                return path
            except FileExistsError:
                n += 1
            except OSError as exc:
                raise StoreError(path, f"cannot save the revision ({_reason(exc)}); the previous "
                                       "correction is unchanged and the edit is kept in memory and "
                                       "in the journal") from exc
        raise StoreError(folder, "no free revision number")

    def _saved_revision(self, stem: str) -> tuple[int, Path | None]:
        """(number, file) of the image's saved revision: the sidecar's last (the commit point of
        a save), else -- with no readable sidecar -- the highest revision file; (0, None) if none."""
        sidecar = self.corrections_dir / f"{stem}.json"
        folder = self.revisions_dir / stem
        if not os.path.lexists(sidecar):
            return 0, None  # never saved (revision files without a sidecar were never committed)
        info = self._info_at(sidecar)
        if info is not None and info.revisions:
            n = info.revisions[-1].n
            path = folder / f"{n}_segmentation.png"
            return n, path if os.path.lexists(path) else None
        files = self._revision_files(folder)
        if files:
            return int(files[-1].name.split("_")[0]), files[-1]
        return 0, None

    def _check_size(self, image: Path | str, mask: np.ndarray) -> None:
        """A mask must have the image's size (read from the header; skipped when unreadable)."""
        path = self.project.image_path(self.project.key(image))
        if not path.is_file():
            return
        try:
            w, h = image_size(path)
        except ImageReadError:
            return
        if (h, w) != mask.shape:
            raise StoreError(path, f"the image is {w}x{h} but the mask is {mask.shape[1]}x{mask.shape[0]}; "
                                   "masks are saved at the image's full resolution")

    # -- journal ----------------------------------------------------------------------------------
    def append_journal(self, image: Path | str, entry: dict) -> None:
        """Append one edit to the image's journal at once (flush + fsync). A failed append is
        truncated back, so the journal stays whole for the edits written after it."""
        stem = self._assign(image)
        path = self.journal_path_for_stem(stem)
        self._guard(path, None)
        line = json.dumps(dict(entry, t=utc_now()), separators=(",", ":")) + "\n"
        fd = None
        size = 0
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(0, "the journal is not a regular file")
            size = st.st_size
            text = line
            if size == 0:
                base, _ = self._saved_revision(stem)
                header = {"journal": JOURNAL_VERSION, "image": self.project.key(image),
                          "started": utc_now(), "base_revision": base}
                text = json.dumps(header) + "\n" + line
            elif not self._ends_with_newline(path, size):
                text = "\n" + line  # a crash cut the last line: start a fresh one
            data = text.encode("utf-8")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as exc:
            if fd is not None:
                try:
                    os.ftruncate(fd, size)
                except OSError:
                    pass
            raise StoreError(path, f"cannot write the edit journal ({_reason(exc)}); the edit is "
                                   "kept in memory -- save as soon as possible") from exc
        finally:
            if fd is not None:
                os.close(fd)

    @staticmethod
    def _ends_with_newline(path: Path, size: int) -> bool:
        try:
            with open(path, "rb") as fh:
                fh.seek(size - 1)
                return fh.read(1) == b"\n"
        except OSError:
            return True

    def _journal_lines(self, stem: str) -> tuple[dict | None, list[dict]]:
        """(header or None, entries) of a journal; damaged lines are skipped with a warning."""
        path = self.journal_path_for_stem(stem)
        try:
            st = os.stat(path)
            if not stat.S_ISREG(st.st_mode):
                raise StoreError(path, "the journal is not a regular file")
            with open(path, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            return None, []
        except OSError as exc:
            raise StoreError(path, f"cannot read the journal ({_reason(exc)})") from exc
        lines = raw.split(b"\n")
        header: dict | None = None
        out: list[dict] = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                if len(line) > MAX_JOURNAL_LINE:
                    raise ValueError("too long")
                entry = json.loads(line.decode("utf-8"))
            except (ValueError, UnicodeDecodeError, RecursionError):
                if i < len(lines) - 1 and lines[i + 1:] != [b""]:
                    log.warning("%s: damaged line %d skipped", path, i + 1)
                continue
            if not isinstance(entry, dict):
                continue
            if "journal" in entry:
                if header is None and not out:
                    header = entry
                continue
            out.append(entry)
        return header, out

    def journal_is_stale(self, stem: str) -> bool:
        """True when the journal was started before the image's saved revision: a save finished
        after it (only the clearing was cut short), so its edits are in the saved file already."""
        header, _ = self._journal_lines(stem)
        base = header.get("base_revision") if header else None
        if not _is_int(base):
            return False  # a journal of schema 1: its base is not known
        saved, _ = self._saved_revision(stem)
        return base < saved

    def journal_entries(self, stem: str) -> list[dict]:
        """The edits recorded for ``stem`` that are not saved yet (without the header). A stale
        journal (see ``journal_is_stale``) has none and is removed; a damaged line is skipped."""
        _, entries = self._journal_lines(stem)
        if entries and self.journal_is_stale(stem):
            if not self.project.read_only:
                try:
                    self.clear_journal(stem)
                except StoreError as exc:
                    log.warning("%s", exc)
            return []
        return entries

    def journal_image(self, stem: str) -> str | None:
        """The project key of the image a journal belongs to (from its header)."""
        try:
            header, _ = self._journal_lines(stem)
        except StoreError:
            return None
        key = header.get("image") if header else None
        return key if isinstance(key, str) else None

    def clear_journal(self, stem: str) -> None:
        path = self.journal_path_for_stem(stem)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(path, f"cannot clear the journal ({_reason(exc)})") from exc

    def pending_recovery(self) -> list[str]:
        """Stems with unsaved edits in their journal (sorted)."""
        stems = []
        for p in sorted(self.journal_dir.glob("*.jsonl")):
            if p.name.startswith("."):
                continue
            try:
                if self.journal_entries(p.stem):
                    stems.append(p.stem)
            except StoreError as exc:
                log.warning("%s", exc)
        return stems

    def recover(self, stem: str, base_mask: np.ndarray | None = None) -> np.ndarray:
        """Replay the journal of ``stem`` onto ``base_mask`` (default: the saved revision the
        journal was started from, else the stored prediction) and return the recovered mask. A
        stale journal is not replayed (the saved correction is returned). The journal is kept
        until the recovered mask is saved (or ``clear_journal``)."""
        correction = self.corrections_dir / f"{stem}_segmentation.png"
        prediction = self.predictions_dir / f"{stem}_prediction.png"
        pred = self._read_mask(prediction)
        entries = self.journal_entries(stem)
        if base_mask is None:
            header, _ = self._journal_lines(stem)
            if header is not None and _is_int(header.get("base_revision")):
                # The saved revision the journal started from, never the latest PNG: a crash
                # between writing the PNG and the sidecar leaves the PNG one save ahead.
                saved, revision = self._saved_revision(stem)
                if saved == 0:
                    base_mask = pred
                    if base_mask is None:  # no model: the edits started from an empty mask
                        unsaved = self._read_mask(correction)
                        base_mask = np.zeros_like(unsaved) if unsaved is not None else None
                else:
                    base_mask = self._read_mask(revision) if revision is not None else None
                    if base_mask is None:
                        base_mask = self._read_mask(correction)
            else:  # a journal of schema 1
                base_mask = self._read_mask(correction)
                if base_mask is None:
                    base_mask = pred
        if base_mask is None:
            raise StoreError(self.journal_path_for_stem(stem),
                             "no saved correction or prediction to replay the journal onto")
        mask = np.asarray(base_mask, dtype=bool).copy()
        for entry in entries:
            try:
                mask = replay_entry(mask, entry, reset_mask=pred)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                log.warning("%s: cannot replay %r (%s); recovery stops there",
                            self.journal_path_for_stem(stem), entry.get("op"), exc)
                break
        return mask

    def history(self, image: Path | str, mask: np.ndarray, **kwargs: Any) -> History:
        """An undo History for ``image`` starting at ``mask``, journalling every change here."""
        return History(mask, journal=lambda entry: self.append_journal(image, entry), **kwargs)


def _reason(exc: OSError) -> str:
    return getattr(exc, "reason", None) or exc.strerror or str(exc)


def pending_recovery(project: Project) -> list[str]:
    """Stems of the project's images with unsaved edits in their journal."""
    return CorrectionStore(project).pending_recovery()


def recover(project: Project, stem: str, base_mask: np.ndarray | None = None) -> np.ndarray:
    """Replay the journal of ``stem`` (see CorrectionStore.recover)."""
    return CorrectionStore(project).recover(stem, base_mask)

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

Every file write is atomic (core.atomic); the journal is appended and fsynced per line, so a
crash loses at most the brush stroke in progress: ``pending_recovery(project)`` lists the images
with an unsaved journal and ``store.recover(stem)`` replays it onto the last saved mask (or the
prediction). A failing write raises :class:`StoreError` naming the file and the cause; the
previous file is intact and the edit stays in memory and in the journal.

Ground truth is never written: every target path is checked against the image's ground truth
(core.dataset.find_ground_truth) and against ground-truth folders (``*GroundTruth``, ``masks``,
``ground_truth``, ``gt``), and :class:`GroundTruthProtected` is raised.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dermaseg_app.core.atomic import atomic_write_text, cleanup_stale_temp_files
from dermaseg_app.core.dataset import find_ground_truth, is_mask_folder_name
from dermaseg_app.core.history import History, replay_entry
from dermaseg_app.core.imageio import ImageReadError, image_size, read_mask, write_mask_png
from dermaseg_app.core.metrics import agreement
from dermaseg_app.core.project import Project, ProjectError, utc_now

log = logging.getLogger(__name__)

SIDECAR_VERSION = 1
GROUND_TRUTH_DIR_NAMES = frozenset({"gt", "ground_truth", "ground-truth"})


class StoreError(Exception):
    """Saving or reading a correction failed; the message names the file and the reason."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


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
    resolved = p.resolve()
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
        if Path(os.path.abspath(g)) == p or g.resolve() == resolved:
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
    def from_json(cls, data: dict) -> "CorrectionInfo":
        revs = [Revision(**r) for r in data.get("revisions", [])]
        fields = {k: data.get(k) for k in ("stem", "image", "saved", "model_name", "model_version",
                                           "shape", "area", "changed_pixels", "dsc_vs_prediction")}
        return cls(**fields, revisions=revs, schema_version=int(data.get("schema_version", 1)))


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
        for d in (self.corrections_dir, self.revisions_dir, self.predictions_dir, self.journal_dir):
            check_not_ground_truth(d / "x", roots=self._roots())
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(d, f"cannot create the folder ({exc.strerror or exc})") from exc
            cleanup_stale_temp_files(d)
        for sub in self.revisions_dir.iterdir():
            if sub.is_dir():
                cleanup_stale_temp_files(sub)

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
        self._guard(path, image)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_mask_png(path, mask)
        except OSError as exc:
            raise StoreError(path, f"cannot save the mask ({_reason(exc)}); the previous file is "
                                   "unchanged and the edit is kept in memory and in the journal") from exc

    def _write_json(self, path: Path, data: dict, image: Path | str | None) -> None:
        self._guard(path, image)
        try:
            atomic_write_text(path, json.dumps(data, indent=1) + "\n")
        except OSError as exc:
            raise StoreError(path, f"cannot save ({_reason(exc)}); the previous file is unchanged") from exc

    def _read_mask(self, path: Path) -> np.ndarray | None:
        if not path.is_file():
            return None
        try:
            return read_mask(path)
        except ImageReadError as exc:
            raise StoreError(path, f"cannot read the stored mask ({exc.reason})") from exc

    # -- predictions ----------------------------------------------------------------------------
    def save_prediction(self, image: Path | str, mask: np.ndarray, model_name: str | None = None,
                        model_version: str | None = None, overwrite: bool = False) -> Path:
        """Keep the model's mask the correction starts from (kept as it is unless ``overwrite``)."""
        path = self.prediction_path(image)
        if path.exists() and not overwrite:
            return path
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
            return PredictionInfo(**json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            log.warning("%s: unreadable prediction info (%s)", path, exc)
            return None

    # -- corrections ----------------------------------------------------------------------------
    def has_correction(self, image: Path | str) -> bool:
        return self.correction_path(image).is_file()

    def load_correction(self, image: Path | str) -> np.ndarray | None:
        return self._read_mask(self.correction_path(image))

    def base_mask(self, image: Path | str) -> np.ndarray | None:
        """The last saved correction, else the stored prediction, else None."""
        m = self.load_correction(image)
        return m if m is not None else self.load_prediction(image)

    def info(self, image: Path | str) -> CorrectionInfo | None:
        """The sidecar of the image's correction (None when never saved or unreadable)."""
        path = self.sidecar_path(image)
        try:
            return CorrectionInfo.from_json(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            log.warning("%s: unreadable correction sidecar (%s)", path, exc)
            return None

    def revisions(self, image: Path | str) -> list[Path]:
        """Saved revision files, oldest first."""
        d = self.revision_dir(image)
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
        stem = self.stem(image)
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
        rev_path = self.revision_dir(image) / f"{n}_segmentation.png"
        while rev_path.exists():  # never overwrite a revision
            n += 1
            rev_path = self.revision_dir(image) / f"{n}_segmentation.png"
        now = utc_now()
        self._write_mask(rev_path, mask, image)
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
        """Append one edit to the image's journal at once (flush + fsync)."""
        stem = self.stem(image)
        path = self.journal_path_for_stem(stem)
        self._guard(path, None)
        try:
            new = not path.exists() or path.stat().st_size == 0
            with open(path, "a", encoding="utf-8") as fh:
                if new:
                    header = {"journal": 1, "image": self.project.key(image), "started": utc_now()}
                    fh.write(json.dumps(header) + "\n")
                fh.write(json.dumps(dict(entry, t=utc_now()), separators=(",", ":")) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise StoreError(path, f"cannot write the edit journal ({_reason(exc)}); the edit is "
                                   "kept in memory -- save as soon as possible") from exc

    def journal_entries(self, stem: str) -> list[dict]:
        """The edits recorded for ``stem`` (without the header). A damaged last line (crash during
        the write) is skipped; a damaged line in the middle stops the replay there, with a warning."""
        path = self.journal_path_for_stem(stem)
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreError(path, f"cannot read the journal ({_reason(exc)})") from exc
        out = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                if i < len(lines) - 1:
                    log.warning("%s: damaged line %d; the edits after it are not recovered", path, i + 1)
                break
            if not isinstance(entry, dict) or "journal" in entry:
                continue
            out.append(entry)
        return out

    def journal_image(self, stem: str) -> str | None:
        """The project key of the image a journal belongs to (from its header)."""
        path = self.journal_path_for_stem(stem)
        try:
            with open(path, encoding="utf-8") as fh:
                header = json.loads(fh.readline())
            return header.get("image") if isinstance(header, dict) else None
        except (OSError, ValueError):
            return None

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
            if self.journal_entries(p.stem):
                stems.append(p.stem)
        return stems

    def recover(self, stem: str, base_mask: np.ndarray | None = None) -> np.ndarray:
        """Replay the journal of ``stem`` onto ``base_mask`` (default: the last saved correction,
        else the stored prediction) and return the recovered mask. The journal is kept until the
        recovered mask is saved (or ``clear_journal``)."""
        correction = self.corrections_dir / f"{stem}_segmentation.png"
        prediction = self.predictions_dir / f"{stem}_prediction.png"
        pred = self._read_mask(prediction)
        if base_mask is None:
            base_mask = self._read_mask(correction)
            if base_mask is None:
                base_mask = pred
        if base_mask is None:
            raise StoreError(self.journal_path_for_stem(stem),
                             "no saved correction or prediction to replay the journal onto")
        mask = np.asarray(base_mask, dtype=bool).copy()
        for entry in self.journal_entries(stem):
            try:
                mask = replay_entry(mask, entry, reset_mask=pred)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("%s: cannot replay %r (%s); recovery stops there",
                            self.journal_path_for_stem(stem), entry.get("op"), exc)
                break
        return mask

    def history(self, image: Path | str, mask: np.ndarray, **kwargs) -> History:
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

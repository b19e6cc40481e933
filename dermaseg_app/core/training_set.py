"""The training set of a review project: its images with a saved correction (no Qt, no torch).

The Training tab fine-tunes the model on what the reviewer corrected. A *corrected case* is a
``core.dataset.Case`` whose ``ground_truth`` is the latest saved correction
(``corrections/<stem>_segmentation.png`` of ``core.store.CorrectionStore``), never the
dataset's own ground truth. Images marked ``excluded`` or ``rejected`` are left out.

Which image a correction belongs to comes from its sidecar (``corrections/<stem>.json``, the
image's project key) or, when the sidecar is unreadable, from the project's records
(``project.stem_for(key) == stem``). :func:`check_cases` reports problems per image (missing
image, unreadable file, size mismatch) without raising for the whole set, so one bad file never
blocks fine-tuning on the others.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dermaseg_app.core.dataset import Case, check_pair
from dermaseg_app.core.project import Project, ReviewStatus

__all__ = [
    "LEFT_OUT_STATUSES",
    "CaseProblem",
    "TrainingSet",
    "check_cases",
    "corrected_cases",
    "training_set",
]

CORRECTION_SUFFIX = "_segmentation.png"
LEFT_OUT_STATUSES = frozenset({ReviewStatus.EXCLUDED, ReviewStatus.REJECTED})


@dataclass(frozen=True)
class CaseProblem:
    """Why one corrected image cannot be trained on. ``image`` may not exist (that is the problem)."""

    stem: str
    image: Path | None
    reason: str

    @property
    def name(self) -> str:
        return self.image.name if self.image is not None else self.stem

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


@dataclass
class TrainingSet:
    """The usable corrected cases of one or more projects, and what was left out and why."""

    cases: list[Case] = field(default_factory=list)
    problems: list[CaseProblem] = field(default_factory=list)
    left_out: list[Case] = field(default_factory=list)  # corrected but excluded / rejected

    def __len__(self) -> int:
        return len(self.cases)


def _image_key_for(project: Project, stem: str, sidecar: Path, keys_by_stem: dict[str, str]) -> str | None:
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
        key = data.get("image") if isinstance(data, dict) else None
        if isinstance(key, str) and key:
            return key
    except (OSError, ValueError):
        pass
    return keys_by_stem.get(stem)


def _corrections(project: Project) -> list[tuple[str, Path]]:
    folder = project.project_dir / "corrections"
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        if p.name.endswith(CORRECTION_SUFFIX) and not p.name.startswith(".") and p.is_file():
            found.append((p.name[: -len(CORRECTION_SUFFIX)], p))
    return sorted(found)


def _scan(project: Project) -> tuple[list[Case], list[Case], list[CaseProblem]]:
    """(kept, left out by status, correction files whose image is unknown)."""
    keys_by_stem: dict[str, str] = {}
    for key in project.records():
        try:
            keys_by_stem.setdefault(project.stem_for(key), key)
        except ValueError:
            continue
    kept: list[Case] = []
    left_out: list[Case] = []
    unknown: list[CaseProblem] = []
    for stem, mask in _corrections(project):
        image_key = _image_key_for(project, stem, mask.with_name(f"{stem}.json"), keys_by_stem)
        if image_key is None:
            unknown.append(CaseProblem(stem, None, f"the correction {mask} belongs to no known image "
                                                   "(its sidecar and the project record are missing)"))
            continue
        image = project.image_path(image_key)
        case = Case(image=image, ground_truth=mask, stem=stem)
        if project.record(image_key).status in LEFT_OUT_STATUSES:
            left_out.append(case)
        else:
            kept.append(case)
    return kept, left_out, unknown


def corrected_cases(project: Project) -> list[Case]:
    """The project's images with a saved correction, as cases whose ``ground_truth`` is the
    correction; images whose review status is ``excluded`` or ``rejected`` are left out.
    Sorted by stem. The files are not checked here (see :func:`check_cases`)."""
    return _scan(project)[0]


def check_cases(cases: Iterable[Case]) -> tuple[list[Case], list[CaseProblem]]:
    """Split cases into (usable, problems): a missing image or correction, a file that cannot be
    read, or a correction whose size differs from its image's. Reads file headers only; a file
    damaged past its header is found when the training pack is decoded (``ml.data.load_cases``)."""
    usable: list[Case] = []
    problems: list[CaseProblem] = []
    for case in cases:
        if not case.image.is_file():
            problems.append(CaseProblem(case.stem, case.image, f"the image {case.image} is missing"))
            continue
        if case.ground_truth is None or not case.ground_truth.is_file():
            problems.append(CaseProblem(case.stem, case.image, "the saved correction is missing"))
            continue
        reason = check_pair(case)
        if reason is not None:
            reason = reason.replace("ground truth", "correction")
            problems.append(CaseProblem(case.stem, case.image, reason))
            continue
        usable.append(case)
    return usable, problems


def training_set(projects: Project | Iterable[Project]) -> TrainingSet:
    """The corrected cases of ``projects``, checked: what can be trained on, the problems per
    image, and what the review status leaves out. Never raises for one bad file."""
    if isinstance(projects, Project):
        projects = [projects]
    out = TrainingSet()
    for project in projects:
        kept, left_out, unknown = _scan(project)
        usable, problems = check_cases(kept)
        out.cases.extend(usable)
        out.problems.extend(unknown + problems)
        out.left_out.extend(left_out)
    return out

"""Finding images in files and folders, and pairing each with its ground-truth mask.

``find_images`` walks the given files and folders and returns the images, skipping what is not
an input image:

* files named ``*_segmentation.<ext>`` (ISIC masks) and files that are not images;
* hidden files and folders (names starting with ``.``; this includes our temp files);
* mask folders: ``masks``/``mask``, any folder whose name contains ``GroundTruth`` (ISIC), PH2's
  ``*_lesion`` and ``*_roi`` folders;
* DermaSeg's own output: folders named ``dermaseg-project`` (see DESIGN.md), ``dermaseg-output``
  / ``dermaseg_output``, and any folder holding a ``.dermaseg-output`` marker file (writers of
  mask folders can call :func:`mark_output_folder`).

Folder rules apply below the folders given; a file named explicitly is always taken (reading it
then reports any problem). Results are in natural order per argument (``img2`` before
``img10``), the arguments' order kept, duplicates removed.

``find_ground_truth`` tries, in this order (names compared case-insensitively; a mask may have
any image extension, ``.png`` preferred):

1. an explicit ``masks_dir``: ``<stem>.*``, ``<stem>_segmentation.*``, ``<stem>_mask.*``,
   ``<stem>_lesion.*``. When ``masks_dir`` is given it is the only place looked in: the user
   said where the masks are, and masks from elsewhere must not be mixed in silently;
2. ``X/images/<sub>/<stem>.jpg`` -> ``X/masks/<sub>/<stem>.png`` (also ``_segmentation`` /
   ``_mask`` names), the layout of the data in /work/shared/data;
3. ISIC: ``<stem>_segmentation.*`` beside the image, or in a sibling folder of the image's
   folder whose name contains ``GroundTruth`` (e.g. ``ISIC-2017_Training_Part1_GroundTruth``);
4. PH2: ``IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp`` ->
   ``IMDxxx/IMDxxx_lesion/IMDxxx_lesion.bmp``.

Ground truth is only located here, never written.
"""

from __future__ import annotations

import errno
import functools
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dermaseg_app.core.imageio import IMAGE_EXTENSIONS, ImageReadError, image_size

__all__ = [
    "OUTPUT_MARKER",
    "Case",
    "check_pair",
    "find_cases",
    "find_ground_truth",
    "find_images",
    "is_mask_folder_name",
    "mark_output_folder",
]

OUTPUT_MARKER = ".dermaseg-output"
OUTPUT_FOLDER_NAMES = frozenset({"dermaseg-project", "dermaseg-output", "dermaseg_output"})
_MASK_FOLDER_NAMES = frozenset({"masks", "mask"})
# mask extensions in order of preference
_MASK_EXTS = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg", ".jpe")


@dataclass(frozen=True)
class Case:
    """One image and, when found, its ground-truth mask. ``stem`` is the image's name without
    extension (the key used for output names)."""

    image: Path
    ground_truth: Path | None
    stem: str


# --------------------------------------------------------------------------------------------
# folder listings (cached per call, so pairing 10 000 images does not list folders 10 000 times)


@dataclass
class _Listing:
    # lower-case name -> full path; strings, not Path objects (pathlib is slow at 10 000s)
    files: dict[str, str] = field(default_factory=dict)
    dirs: dict[str, str] = field(default_factory=dict)


_Cache = dict[str, _Listing]


def _listing(folder: str, cache: _Cache) -> _Listing:
    hit = cache.get(folder)
    if hit is not None:
        return hit
    out = _Listing()
    try:
        with os.scandir(folder) as it:
            for entry in it:
                try:
                    if entry.is_dir():
                        out.dirs.setdefault(entry.name.lower(), entry.path)
                    elif entry.is_file():
                        out.files.setdefault(entry.name.lower(), entry.path)
                except OSError:
                    continue
    except OSError:
        pass
    cache[folder] = out
    return out


def _natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part)
        for part in re.split(r"(\d+)", text.lower())
        if part
    )


# --------------------------------------------------------------------------------------------
# finding images


def is_mask_folder_name(name: str) -> bool:
    """True for folder names that hold masks rather than input images."""
    low = name.lower()
    squashed = low.replace("_", "").replace("-", "").replace(" ", "")
    return (
        low in _MASK_FOLDER_NAMES
        or "groundtruth" in squashed
        or low.endswith("_lesion")
        or low.endswith("_roi")
    )


def _is_mask_file_name(name: str) -> bool:
    return os.path.splitext(name)[0].lower().endswith("_segmentation")


def _skip_folder(name: str, path: Path) -> bool:
    return (
        name.startswith(".")
        or name.lower() in OUTPUT_FOLDER_NAMES
        or is_mask_folder_name(name)
        or (path / OUTPUT_MARKER).exists()
    )


def _wanted_file(name: str) -> bool:
    return (
        not name.startswith(".")
        and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
        and not _is_mask_file_name(name)
    )


def mark_output_folder(folder: str | os.PathLike[str]) -> None:
    """Mark ``folder`` as DermaSeg output so find_images never takes its files as inputs."""
    from dermaseg_app.core.atomic import atomic_write_text

    marker = Path(folder) / OUTPUT_MARKER
    if not marker.exists():
        atomic_write_text(marker, "Written by DermaSeg: masks and reports, not input images.\n")


def _walk(root: Path, recursive: bool) -> list[Path]:
    found: list[tuple[str, str]] = []  # (path relative to root, full path) as strings: fast
    if not recursive:
        try:
            with os.scandir(root) as it:
                for entry in it:
                    if _wanted_file(entry.name) and entry.is_file():
                        found.append((entry.name, entry.path))
        except OSError:
            return []
    else:
        top = os.fspath(root)
        for dirpath, dirnames, filenames in os.walk(top):
            here = Path(dirpath)
            dirnames[:] = [d for d in dirnames if not _skip_folder(d, here / d)]
            rel = os.path.relpath(dirpath, top)
            for f in filenames:
                if _wanted_file(f):
                    found.append((f if rel == "." else f"{rel}/{f}", os.path.join(dirpath, f)))
    found.sort(key=lambda item: _natural_key(item[0].replace(os.sep, "/")))
    return [Path(full) for _, full in found]


def find_images(
    paths: Iterable[str | os.PathLike[str]], recursive: bool = True
) -> list[Path]:
    """Images named in ``paths`` or found in the folders named (rules in the module doc).

    Raises FileNotFoundError for a path that does not exist. A folder without images adds
    nothing: callers report "no images found in X" when the result is empty.
    """
    seen: set[str] = set()
    result: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            items = _walk(p, recursive)
        elif p.exists():
            items = [p]
        else:
            raise FileNotFoundError(errno.ENOENT, "no such file or folder", str(p))
        for item in items:
            key = os.path.normcase(os.path.abspath(item))
            if key not in seen:
                seen.add(key)
                result.append(item)
    return result


# --------------------------------------------------------------------------------------------
# pairing


def _same(a: str, b: str) -> bool:
    if a == b:
        return True
    if os.path.basename(a).lower() != os.path.basename(b).lower():
        return False
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def _lookup(
    folder: str, stem: str, suffixes: Sequence[str], image: str, cache: _Cache
) -> str | None:
    files = _listing(folder, cache).files
    if not files:
        return None
    for suffix in suffixes:
        base = f"{stem}{suffix}".lower()
        for ext in _MASK_EXTS:
            hit = files.get(base + ext)
            if hit is not None and not _same(hit, image):
                return hit
    return None


# Each rule gets (image path, its folder, its stem) as strings.


@functools.lru_cache(maxsize=4096)
def _split_at_images(here: str) -> tuple[str, tuple[str, ...]] | None:
    """For a folder inside an ``images`` folder: (the folder holding ``images``, the subfolders
    below ``images``); None otherwise. Pure string work, cached per folder."""
    folders = Path(here).parts
    for i in range(len(folders) - 1, -1, -1):
        if folders[i].lower() == "images":
            return (os.path.join(*folders[:i]) if i else "."), tuple(folders[i + 1 :])
    return None


def _images_masks_layout(image: str, here: str, stem: str, cache: _Cache) -> str | None:
    """X/images/<sub>/<stem>.* -> X/masks/<sub>/<stem>.png (nearest 'images' ancestor)."""
    split = _split_at_images(here)
    if split is None:
        return None
    parent, sub = split
    masks = _listing(parent, cache).dirs.get("masks")
    if masks is None:
        return None
    folder = os.path.join(masks, *sub)
    return _lookup(folder, stem, ("", "_segmentation", "_mask"), image, cache)


def _isic_layout(image: str, here: str, stem: str, cache: _Cache) -> str | None:
    hit = _lookup(here, stem, ("_segmentation",), image, cache)
    if hit is not None:
        return hit
    siblings = _listing(os.path.dirname(here) or ".", cache).dirs
    for name in sorted(siblings):
        if "groundtruth" in name.replace("_", "").replace("-", "") and not _same(
            siblings[name], here
        ):
            hit = _lookup(siblings[name], stem, ("_segmentation",), image, cache)
            if hit is not None:
                return hit
    return None


def _ph2_layout(image: str, here: str, stem: str, cache: _Cache) -> str | None:
    if not os.path.basename(here).lower().endswith("_dermoscopic_image"):
        return None
    up = os.path.dirname(here) or "."
    lesion_dir = _listing(up, cache).dirs.get(f"{stem}_lesion".lower())
    if lesion_dir is None:
        return None
    return _lookup(lesion_dir, stem, ("_lesion",), image, cache)


def find_ground_truth(
    image: str | os.PathLike[str],
    masks_dir: str | os.PathLike[str] | None = None,
    _cache: _Cache | None = None,
) -> Path | None:
    """The ground-truth mask of ``image`` by the rules in the module doc, or None."""
    img = Path(image)
    cache: _Cache = {} if _cache is None else _cache
    image_s = os.fspath(img)
    here = os.path.dirname(image_s) or "."
    if masks_dir is not None:
        hit = _lookup(
            os.fspath(masks_dir), img.stem, ("", "_segmentation", "_mask", "_lesion"), image_s,
            cache,
        )
        return Path(hit) if hit is not None else None
    for rule in (_images_masks_layout, _isic_layout, _ph2_layout):
        hit = rule(image_s, here, img.stem, cache)
        if hit is not None:
            return Path(hit)
    return None


def find_cases(
    paths: Iterable[str | os.PathLike[str]],
    masks_dir: str | os.PathLike[str] | None = None,
    recursive: bool = True,
) -> list[Case]:
    """find_images + find_ground_truth for each. Raises FileNotFoundError for a missing path
    or a ``masks_dir`` that is not a folder."""
    if masks_dir is not None and not Path(masks_dir).is_dir():
        raise FileNotFoundError(errno.ENOENT, "the masks folder does not exist", str(masks_dir))
    cache: _Cache = {}
    return [
        Case(image=img, ground_truth=find_ground_truth(img, masks_dir, cache), stem=img.stem)
        for img in find_images(paths, recursive=recursive)
    ]


def check_pair(case: Case) -> str | None:
    """A message when the ground truth cannot be used with its image, else None.

    Reports a mask whose size differs from the image's (metrics would raise MaskSizeMismatch;
    masks are never resized silently) or a file that cannot be read. Reads headers only.
    """
    if case.ground_truth is None:
        return None
    try:
        iw, ih = image_size(case.image)
    except ImageReadError as err:
        return str(err)
    try:
        mw, mh = image_size(case.ground_truth)
    except ImageReadError as err:
        return f"ground truth unusable: {err}"
    if (iw, ih) != (mw, mh):
        return (
            f"ground truth {case.ground_truth} is {mw}x{mh} but image {case.image} is "
            f"{iw}x{ih}: sizes must match (masks are not resized)"
        )
    return None

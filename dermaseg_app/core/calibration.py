"""Millimetres per pixel for lesion measurements (core.measure): set by the user for a folder, on
the command line, with the ruler, or read from an image file's TIFF / EXIF resolution when it is
plausible (docs/measurements.md, "Calibration"). No Qt, no torch."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CALIBRATION_SOURCES",
    "DEFAULT_DPI",
    "PLAUSIBLE_MM_PER_PX",
    "UNCALIBRATED",
    "Calibration",
    "calibration_from_file",
    "calibration_from_resolution",
]

CALIBRATION_SOURCES = ("user", "cli", "exif", "tiff", "ruler")

# A file's resolution is trusted only between these (mm per pixel): a dermoscope images ~10-25 mm
# over 500-6000 px (0.002-0.05 mm/px), a macro photograph up to ~150 mm over 1000 px.
PLAUSIBLE_MM_PER_PX = (0.001, 0.2)
# Resolutions that cameras, scanners and image software write by default: not a physical scale.
DEFAULT_DPI = (72, 96, 100, 120, 144, 150, 180, 200, 240, 254, 300, 350, 360, 400, 480, 500, 600,
               720, 800, 1000, 1200, 2400, 4800)
_INCH, _CM = 2, 3  # TIFF/EXIF ResolutionUnit


@dataclass(frozen=True)
class Calibration:
    """Millimetres per pixel, or None (uncalibrated: measurements stay in pixels).

    ``source``: where it came from, one of "user" (set for a folder in the window), "cli"
    (``--mm-per-px``), "exif", "tiff" (the file's resolution tags), "ruler" (a known length
    measured in the image), or None. ``note``: why a file's resolution was not used, when it
    was not.
    """

    mm_per_px: float | None = None
    source: str | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.mm_per_px is not None:
            value = float(self.mm_per_px)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"mm per pixel must be a positive number, got {self.mm_per_px!r}")
            object.__setattr__(self, "mm_per_px", value)
        if self.source is not None and self.source not in CALIBRATION_SOURCES:
            raise ValueError(f"unknown calibration source {self.source!r} (one of {', '.join(CALIBRATION_SOURCES)})")

    @classmethod
    def from_length(cls, pixels: float, mm: float, source: str = "ruler") -> Calibration:
        """A known length: ``pixels`` long in the image is ``mm`` millimetres (a scale bar)."""
        pixels, mm = float(pixels), float(mm)
        if not (math.isfinite(pixels) and pixels > 0):
            raise ValueError(f"the measured length must be positive, got {pixels!r} px")
        if not (math.isfinite(mm) and mm > 0):
            raise ValueError(f"the known length must be positive, got {mm!r} mm")
        return cls(mm / pixels, source)

    @classmethod
    def from_points(cls, p0: tuple[float, float], p1: tuple[float, float], mm: float,
                    source: str = "ruler") -> Calibration:
        """A ruler from ``p0`` to ``p1`` (x, y in pixels) that is ``mm`` long."""
        return cls.from_length(math.dist(p0, p1), mm, source)

    @property
    def calibrated(self) -> bool:
        return self.mm_per_px is not None

    @property
    def unit(self) -> str:
        """"mm" when calibrated, else "px" (areas are in unit squared)."""
        return "mm" if self.calibrated else "px"

    def length(self, px: float) -> float:
        return px * self.mm_per_px if self.mm_per_px is not None else px

    def area(self, px2: float) -> float:
        return px2 * self.mm_per_px ** 2 if self.mm_per_px is not None else px2

    def describe(self) -> str:
        if not self.calibrated:
            return "uncalibrated (pixels)" + (f": {self.note}" if self.note else "")
        return f"{self.mm_per_px:.6g} mm/px ({self.source or 'given'})"


UNCALIBRATED = Calibration()


def calibration_from_resolution(x_res: Any, y_res: Any, unit: Any, source: str = "exif") -> Calibration:
    """The TIFF/EXIF resolution rule: a Calibration from XResolution, YResolution and
    ResolutionUnit, or an uncalibrated one whose ``note`` says why not.

    Trusted only when: the unit is given and is inch (2) or centimetre (3) (1 = no absolute
    unit; a missing unit is not taken as the TIFF default, inch); X and Y are positive and agree
    within 1 % (square pixels); the value is not one of the resolutions software writes by
    default (``DEFAULT_DPI``, e.g. 72, 96, 300 dpi, also when given per cm); and it gives
    ``PLAUSIBLE_MM_PER_PX`` (0.001-0.2 mm per pixel, i.e. 127-25 400 dpi).
    """
    try:
        unit_code = None if unit is None else int(unit)
    except (TypeError, ValueError):
        unit_code = None
    if unit_code not in (_INCH, _CM):
        why = "no resolution unit" if unit_code is None else (
            "resolution without an absolute unit" if unit_code == 1 else f"unknown resolution unit {unit!r}")
        return Calibration(note=f"{source} {why}")
    try:
        x, y = float(x_res), float(y_res)
    except (TypeError, ValueError, ZeroDivisionError):
        return Calibration(note=f"{source} resolution unreadable")
    if not (math.isfinite(x) and math.isfinite(y) and x > 0 and y > 0):
        return Calibration(note=f"{source} resolution not positive")
    if abs(x - y) > 0.01 * max(x, y):
        return Calibration(note=f"{source} resolution differs in x and y ({x:g} vs {y:g})")
    per_inch = x * (2.54 if unit_code == _CM else 1.0)
    shown = f"{x:g} px/{'cm' if unit_code == _CM else 'inch'}"
    if any(abs(per_inch - d) <= 0.005 * d for d in DEFAULT_DPI):
        return Calibration(note=f"{source} resolution {shown} is a software default, not a physical scale")
    mm_per_px = 25.4 / per_inch
    lo, hi = PLAUSIBLE_MM_PER_PX
    if not lo <= mm_per_px <= hi:
        return Calibration(note=f"{source} resolution {shown} ({mm_per_px:.4g} mm/px) is implausible "
                           f"for a dermoscope or macro photograph")
    return Calibration(mm_per_px, source)


def calibration_from_file(path: str | os.PathLike[str]) -> Calibration:
    """The resolution stored in an image file (TIFF tags, or the EXIF of a JPEG/PNG/WebP), by the
    rule of ``calibration_from_resolution``; uncalibrated (with a note) when there is none or it
    is not trusted. A JPEG's JFIF density is never used (it is nearly always 72 or 96 dpi, or
    whatever the last program wrote). Never raises for a bad or unreadable file."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            if im.format == "TIFF":
                tags, source = im.tag_v2, "tiff"
            else:
                tags, source = im.getexif(), "exif"
            x, y, unit = tags.get(282), tags.get(283), tags.get(296)
    except Exception as exc:  # noqa: BLE001 - a broken header means no calibration, not a failure
        return Calibration(note=f"resolution not readable: {exc}")
    if x is None and y is None:
        return Calibration(note="no resolution in the file")
    return calibration_from_resolution(x, y, unit, source)

"""The Measurements panel's and the follow-up dialog's logic, without Qt (issue 15).

* which mask is measured: the correction being edited, else the ground truth, else the
  prediction (``choose_mask``); the panel says which;
* the calibration: the folder's (set in the window, stored in its review project) wins over the
  image file's trusted TIFF/EXIF resolution (``effective_calibration``); without either, pixels,
  and the unit says so;
* the panel's rows as text (``panel_rows``), the follow-up table (``follow_up_rows``).

A research aid, not a diagnosis (``DISCLAIMER``); definitions in docs/measurements.md.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dermaseg_app.core.measure import (
    REFERENCE_COLOURS_RGB,
    Calibration,
    Measurements,
    calibration_from_file,
    follow_up,
)
from dermaseg_app.core.project import Project

DISCLAIMER = "Research aid, not a diagnosis."
UNCALIBRATED_TEXT = "uncalibrated: pixels"

CORRECTION, GROUND_TRUTH, PREDICTION = "correction", "ground truth", "prediction"
SOURCE_TEXT = {
    CORRECTION: "the correction being edited",
    GROUND_TRUTH: "the ground truth",
    PREDICTION: "the model's prediction",
}
SOURCE_DESCRIPTIONS = {"user": "set for the folder", "ruler": "ruler, set for the folder",
                       "cli": "given", "exif": "the file's EXIF resolution",
                       "tiff": "the file's TIFF resolution"}


# -- which mask ------------------------------------------------------------------------------
def choose_mask(correction: np.ndarray | None, ground_truth: np.ndarray | None,
                prediction: np.ndarray | None) -> tuple[np.ndarray | None, str | None]:
    """(mask, source) for the first of correction, ground truth, prediction that is there;
    (None, None) when there is none."""
    for mask, source in ((correction, CORRECTION), (ground_truth, GROUND_TRUTH), (prediction, PREDICTION)):
        if mask is not None:
            return mask, source
    return None, None


# -- calibration -----------------------------------------------------------------------------
def folder_calibration(project: Project | None) -> Calibration | None:
    """The scale stored in the folder's review project, or None."""
    stored = project.calibration if project is not None else None
    if stored is None:
        return None
    mm, source = stored
    try:
        return Calibration(mm, source if source in SOURCE_DESCRIPTIONS else "user")
    except ValueError:
        return None


def set_folder_calibration(project: Project, calibration: Calibration | None) -> None:
    """Store ``calibration`` (None or uncalibrated: remove it) as the folder's scale; raises
    core.project's ProjectError when the project cannot be written."""
    if calibration is None or not calibration.calibrated:
        project.set_calibration(None)
    else:
        project.set_calibration(calibration.mm_per_px, calibration.source or "user")


def effective_calibration(folder: Calibration | None, file: Calibration | None) -> Calibration:
    """The precedence: the user's folder calibration, else the file's trusted resolution, else
    uncalibrated (keeping the file's note on why its resolution was not used)."""
    if folder is not None and folder.calibrated:
        return folder
    if file is not None:
        return file
    return Calibration()


class FileCalibrations:
    """``calibration_from_file`` per image, read once (the header only) and kept while the file
    is unchanged (its modification time and size)."""

    def __init__(self, capacity: int = 256) -> None:
        self._cache: OrderedDict[Path, tuple[tuple[int, int], Calibration]] = OrderedDict()
        self.capacity = capacity

    def get(self, image: Path) -> Calibration:
        try:
            st = os.stat(image)
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            return calibration_from_file(image)
        hit = self._cache.get(image)
        if hit is not None and hit[0] == stamp:
            self._cache.move_to_end(image)
            return hit[1]
        cal = calibration_from_file(image)
        self._cache[image] = (stamp, cal)
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return cal


def calibration_text(cal: Calibration) -> str:
    """The panel's calibration line: "uncalibrated: pixels" or "0.0125 mm/px (ruler, set for
    the folder)"."""
    if not cal.calibrated:
        return UNCALIBRATED_TEXT
    return f"{cal.mm_per_px:.4g} mm/px ({SOURCE_DESCRIPTIONS.get(cal.source or '', 'given')})"


def calibration_tooltip(cal: Calibration) -> str:
    if cal.calibrated:
        return ("Lengths in millimetres. The folder's scale (Measure > Set Scale… or the ruler) "
                "wins over the image file's resolution.")
    why = f" ({cal.note})" if cal.note else ""
    return ("No scale: lengths in pixels, areas in square pixels" + why +
            ". Set one with Measure > Set Scale… or measure a scale bar with the ruler.")


# -- formatting ------------------------------------------------------------------------------
def format_number(value: float | None) -> str:
    """Four significant digits, without an exponent for the usual sizes; "—" for undefined."""
    if value is None or not math.isfinite(value):
        return "—"
    a = abs(value)
    if a == 0:
        return "0"
    if a >= 1000:
        return f"{value:,.0f}".replace(",", "\u2009")  # thin space between thousands
    if a >= 100:
        return f"{value:.1f}"
    if a >= 10:
        return f"{value:.2f}"
    if a >= 0.01:
        return f"{value:.3f}"
    return f"{value:.2e}"


def format_length(value: float | None, unit: str) -> str:
    text = format_number(value)
    return text if text == "—" else f"{text} {unit}"


def format_area(value: float | None, unit: str) -> str:
    text = format_number(value)
    return text if text == "—" else f"{text} {unit}²"


def format_change(percent: float | None) -> str:
    if percent is None or not math.isfinite(percent):
        return "—"
    return f"{percent:+.1f}%"


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    text: str
    tooltip: str = ""


def asymmetry_text(m: Measurements) -> str:
    if m.asymmetry is None or m.asymmetry_axes is None:
        return "—"
    major, minor = m.asymmetry
    return f"{m.asymmetry_axes} of 2 axes ({100 * major:.1f}% / {100 * minor:.1f}%)"


def colours_text(m: Measurements) -> str:
    if m.colours is None:
        return "—"
    if not m.colours:
        return "none"
    return ", ".join(m.colours)


def panel_rows(m: Measurements | None, source: str | None = None, pending_colours: bool = False,
               calibration: Calibration | None = None) -> list[Row]:
    """The panel's rows for ``m`` (None: every value "—"). ``pending_colours``: the colour map is
    still being computed. ``calibration``: the scale shown (default: ``m``'s, else none)."""
    u = m.unit if m is not None else "px"
    cal = calibration or (m.calibration if m is not None else Calibration())

    def val(fn) -> str:
        return "—" if m is None or m.empty else fn(m)

    thr = f"{100 * m.asymmetry_threshold:.0f}%" if m is not None else "15%"
    rows = [
        Row("source", "Measured", SOURCE_TEXT.get(source or "", "no mask") if m is not None else "no mask",
            "The correction being edited, else the ground truth, else the model's prediction"),
        Row("scale", "Scale", calibration_text(cal), calibration_tooltip(cal)),
        Row("area", "Area", val(lambda x: format_area(x.area, u))),
        Row("perimeter", "Perimeter", val(lambda x: format_length(x.perimeter, u)),
            "Crofton estimate of the border length (outer and hole borders)"),
        Row("max_diameter", "Max diameter", val(lambda x: format_length(x.max_diameter, u)),
            "Largest caliper (Feret) diameter"),
        Row("min_diameter", "Min diameter", val(lambda x: format_length(x.min_diameter, u)),
            "Smallest caliper (Feret) width"),
        Row("equivalent_diameter", "Equiv. diameter", val(lambda x: format_length(x.equivalent_diameter, u)),
            "Diameter of the disc of the same area"),
        Row("asymmetry", "Asymmetry", val(asymmetry_text),
            f"Axes whose mirror mismatch exceeds {thr} (a choice of this tool, not a published "
            "cut-off); the shares are for the major / minor principal axis"),
        Row("border", "Border irregularity", val(lambda x: format_number(x.border_irregularity)),
            "Compactness P² / (4πA): 1 for a disc, larger for ragged or elongated borders"),
        Row("colours", "Colours", "computing…" if pending_colours and m is not None and not m.empty
            else val(colours_text),
            "Dermoscopic reference colours covering more than 5% of the lesion (approximate "
            "reference values of this tool, not a published table; see docs/measurements.md)"),
    ]
    if m is not None and not m.empty and m.components > 1:
        rows.insert(2, Row("components", "Parts", f"{m.components} separate parts"))
    return rows


def colour_swatches(m: Measurements | None) -> list[tuple[str, tuple[int, int, int]]]:
    """(name, RGB) of the colours found, for the panel's swatches."""
    if m is None or not m.colours:
        return []
    return [(name, REFERENCE_COLOURS_RGB[name]) for name in m.colours]


# -- follow-up -------------------------------------------------------------------------------
FOLLOW_UP_LABELS = {"area": "Area", "perimeter": "Perimeter", "max_diameter": "Max diameter",
                    "min_diameter": "Min diameter", "equivalent_diameter": "Equiv. diameter"}


@dataclass(frozen=True)
class FollowUp:
    rows: list[tuple[str, str, str, str]]  # (label, before, after, change)
    comparable: bool
    note: str


def follow_up_rows(before: Measurements, after: Measurements) -> FollowUp:
    """The follow-up table: each quantity before, after and the change in percent (only when
    both are calibrated, or both uncalibrated; ``note`` says why not or what it assumes)."""
    result = follow_up(before, after)
    rows = []
    for name, f in result["fields"].items():
        fmt_b = format_area if name == "area" else format_length
        rows.append((FOLLOW_UP_LABELS.get(name, name), fmt_b(f["before"], before.unit),
                     fmt_b(f["after"], after.unit), format_change(f["change_percent"])))
    note = result["note"]
    if not result["comparable"]:
        which = "first" if before.calibration.calibrated else "second"
        other = "second" if which == "first" else "first"
        note = (f"Not comparable: the {which} image is calibrated (mm) and the {other} is not "
                "(pixels), so no change is computed. Set the scale of both folders (Measure > "
                "Set Scale… or the ruler).")
    elif not before.calibration.calibrated:
        note = ("Both images are uncalibrated: the changes compare pixels and hold only if both "
                "were taken at the same magnification.")
    return FollowUp(rows, bool(result["comparable"]), note)

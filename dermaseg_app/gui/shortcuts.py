"""Keyboard shortcuts of the correction tools, Edit menu and File menu additions (issue 5).

One table, used for the actions' keys, their tooltips and the Help > Keyboard Shortcuts sheet.
The review window already uses A/C/R/X/U (status), G/H/M (display), F/1/+/- (zoom), N/P and
Page Up/Down (navigation), Esc (cancel background prediction), Ctrl+O / Ctrl+Shift+O / Ctrl+Q;
none of the keys below clash with them. The polygon tools are the lasso's keys with Shift (P is
Previous Image); while a polygon is drawn the canvas takes Backspace, Enter and Esc.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape


@dataclass(frozen=True)
class Shortcut:
    name: str  # the action's id
    keys: tuple[str, ...]  # QKeySequence strings; the first is shown
    text: str  # what it does


EDIT_SHORTCUTS: tuple[Shortcut, ...] = (
    Shortcut("tool_navigate", ("V",), "pan/zoom tool (drag pans)"),
    Shortcut("tool_brush", ("B",), "brush: paint to add to the lesion"),
    Shortcut("tool_eraser", ("E",), "eraser: paint to remove from the lesion"),
    Shortcut("tool_lasso_add", ("L",), "lasso add: draw an outline to add"),
    Shortcut("tool_lasso_subtract", ("K",), "lasso subtract: draw an outline to cut away"),
    Shortcut("tool_new_contour", ("D",), "new contour: draw the lesion from scratch"),
    Shortcut("tool_polygon_add", ("Shift+L",),
             "polygon add: click the vertices one by one; Enter, a double click or a click on the "
             "first vertex closes it"),
    Shortcut("tool_polygon_subtract", ("Shift+K",), "polygon subtract: click an outline to cut away"),
    Shortcut("tool_polygon_new", ("Shift+D",), "new polygon: click the lesion's outline from scratch"),
    Shortcut("tool_vertices", ("O",),
             "edit vertices: drag a vertex, click an edge to insert, Shift+click to delete"),
    Shortcut("radius_down", ("[",), "smaller brush (also Ctrl + wheel)"),
    Shortcut("radius_up", ("]",), "larger brush (also Ctrl + wheel)"),
    Shortcut("undo", ("Ctrl+Z",), "undo the last edit of this image"),
    Shortcut("redo", ("Ctrl+Shift+Z", "Ctrl+Y"), "redo"),
    Shortcut("reset", ("Ctrl+Shift+R",), "reset to the model's prediction (undoable)"),
    Shortcut("fill_holes", ("Shift+F",), "fill holes"),
    Shortcut("remove_islands", ("Shift+I",), "remove small islands"),
    Shortcut("smooth", ("Shift+S",), "smooth the outline (keeps the area)"),
    Shortcut("simplify", ("Shift+Y",), "simplify the outline"),
    Shortcut("grow", ("Shift+G",), "grow by N pixels"),
    Shortcut("shrink", ("Shift+R",), "shrink by N pixels"),
    Shortcut("save", ("Ctrl+S",), "save the correction"),
    Shortcut("export", ("Ctrl+E",), "export the project (masks, polygons, COCO, manifest)"),
)

# keys of the polygon being drawn (handled by the canvas, not window-wide actions)
POLYGON_KEYS_HELP: tuple[tuple[str, str], ...] = (
    ("Backspace, Ctrl+Z", "polygon being drawn: remove the last vertex"),
    ("Enter / double click", "polygon: close it (or click its first vertex); one undo step"),
    ("Esc", "polygon: cancel it"),
)

BY_NAME = {s.name: s for s in EDIT_SHORTCUTS}


def keys(name: str) -> tuple[str, ...]:
    return BY_NAME[name].keys


def tip(text: str, name: str) -> str:
    """``text`` with its shortcut, for a tooltip: "Brush (B)"."""
    k = BY_NAME[name].keys
    return f"{text} ({k[0]})" if k else text


def editing_html() -> str:
    """The correction tools' rows for the shortcut sheet (an HTML table)."""
    rows = [f"<tr><td><b>{escape(' / '.join(s.keys))}</b></td><td>{escape(s.text)}</td></tr>"
            for s in EDIT_SHORTCUTS]
    rows += [f"<tr><td><b>{escape(k)}</b></td><td>{escape(t)}</td></tr>" for k, t in POLYGON_KEYS_HELP]
    rows.append("<tr><td><b>middle button</b>, Space + drag</td><td>pan while a correction tool is chosen</td></tr>")
    rows.append("<tr><td><b>right button</b></td><td>cancel the stroke/outline in progress "
                "(polygon: remove the last vertex)</td></tr>")
    return "<p><b>Correcting the contour</b></p><table>" + "".join(rows) + "</table>"

"""The click-by-click polygon (as in labelme) of the contour editor: its vertices and its drawing.

``PolygonInProgress`` keeps the vertices placed so far, in image (scene) coordinates with pixel
edges at integers (the project's convention), and draws them over the image:

* the placed edges as a solid line and the rubber band (last vertex -> cursor -> first vertex) as
  a dashed one, both bright over a dark halo so they show on dark and light skin alike;
* the closed polygon's preview: lightened (add / new contour) or darkened (subtract), neutral
  tints that cannot be mistaken for the mask's blue or the comparison's yellow / red / green;
* a handle on every vertex, a fixed number of screen pixels across at any zoom; the first vertex
  is larger and turns green when the cursor is near enough for a click to close the polygon.

It knows nothing about masks or mouse events: ``canvas.edit_tools.EditTools`` turns clicks and keys
into ``click`` / ``double_click`` / ``pop`` / ``close`` / ``cancel`` and applies the closed polygon
through the edit target (``core.editing.fill_polygon`` via ``core.history``: one undo step).
Vertices are kept in image coordinates, so zooming or panning while drawing keeps the polygon;
only the handle sizes follow the zoom (``redraw``).
"""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QBrush, QColor, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import QGraphicsPathItem, QGraphicsView

Point = tuple[float, float]

CLOSE_HIT_PX = 9.0  # screen pixels: a click this near the first vertex closes the polygon
SAME_POINT_PX = 2.0  # screen pixels: a click this near the last vertex adds no vertex
HANDLE_PX = 3.5  # handle radius on screen
FIRST_HANDLE_PX = 5.0
LINE = QColor(255, 255, 255)
HALO = QColor(0, 0, 0, 200)
HANDLE_FILL = QColor(255, 255, 255)
FIRST_FILL = QColor(255, 214, 0)
CLOSE_FILL = QColor(40, 230, 90)  # the first vertex when a click there closes the polygon
PREVIEW_FILL = {"add": QColor(255, 255, 255, 70), "replace": QColor(255, 255, 255, 70),
                "subtract": QColor(0, 0, 0, 90)}
MIN_VERTICES = 3


def _pen(colour: QColor, width: float, dashed: bool = False) -> QPen:
    pen = QPen(colour)
    pen.setCosmetic(True)  # the same width on screen at every zoom
    pen.setWidthF(width)
    pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    if dashed:
        pen.setStyle(Qt.PenStyle.CustomDashLine)
        pen.setDashPattern([4.0, 3.0])  # in pen widths
    return pen


class PolygonInProgress:
    """The vertices placed so far and the items that draw them (added to ``canvas``'s scene)."""

    def __init__(self, canvas: QGraphicsView, z: float = 11.0) -> None:
        self.canvas = canvas
        self.points: list[Point] = []
        self.cursor: Point | None = None
        self.mode = "add"
        self.closing_highlighted = False  # the first vertex shows "a click here closes the polygon"
        self.fill_item = QGraphicsPathItem()
        self.fill_item.setPen(QPen(Qt.PenStyle.NoPen))
        self.halo_item = QGraphicsPathItem()  # every edge, dark and wide, under the bright lines
        self.halo_item.setPen(_pen(HALO, 4.0))
        self.edges_item = QGraphicsPathItem()  # the placed edges
        self.edges_item.setPen(_pen(LINE, 1.6))
        self.rubber_item = QGraphicsPathItem()  # last vertex -> cursor -> first vertex
        self.rubber_item.setPen(_pen(LINE, 1.6, dashed=True))
        self.handles_item = QGraphicsPathItem()
        self.handles_item.setPen(_pen(QColor(20, 20, 20), 1.2))
        self.handles_item.setBrush(QBrush(HANDLE_FILL))
        self.first_item = QGraphicsPathItem()
        self.first_item.setPen(_pen(QColor(20, 20, 20), 1.5))
        self.first_item.setBrush(QBrush(FIRST_FILL))
        self.items = (self.fill_item, self.halo_item, self.edges_item, self.rubber_item,
                      self.handles_item, self.first_item)
        for i, item in enumerate(self.items):
            item.setZValue(z + 0.1 * i)
            item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
            canvas.scene().addItem(item)

    # ------------------------------------------------------------------ state
    @property
    def active(self) -> bool:
        return bool(self.points)

    def _zoom(self) -> float:
        return abs(float(self.canvas.transform().m11())) or 1.0

    def _screen_distance(self, a: Point, b: Point) -> float:
        return math.hypot(a[0] - b[0], a[1] - b[1]) * self._zoom()

    def can_close_at(self, x: float, y: float) -> bool:
        """A click at (x, y) would close the polygon: on its first vertex, with 3 or more."""
        return len(self.points) >= MIN_VERTICES and self._screen_distance((x, y), self.points[0]) <= CLOSE_HIT_PX

    def add_vertex(self, x: float, y: float) -> None:
        self.points.append((float(x), float(y)))
        self.cursor = (float(x), float(y))
        self.redraw()

    def click(self, x: float, y: float) -> list[Point] | None:
        """A left click: closes the polygon on its first vertex (returns the vertices), else adds
        a vertex (none when the click is on the last vertex: a click that did not move)."""
        if self.can_close_at(x, y):
            return self.close()
        if self.points and (self._screen_distance((x, y), self.points[-1]) <= SAME_POINT_PX
                            or self._screen_distance((x, y), self.points[0]) <= CLOSE_HIT_PX):
            self.hover(x, y)  # a repeated click, or closing too early (fewer than 3 vertices)
            return None
        self.add_vertex(x, y)
        return None

    def double_click(self, x: float, y: float, slack_px: float = SAME_POINT_PX) -> list[Point] | None:
        """A double click places its vertex and closes. Its first click has usually placed the
        vertex already: within ``slack_px`` (the distance the mouse may move during a double
        click) of the last vertex no other one is added."""
        if not self.points:
            return None
        if self._screen_distance((x, y), self.points[-1]) <= max(slack_px, SAME_POINT_PX):
            return self.close()
        closed = self.click(x, y)
        return closed if closed is not None else self.close()

    def hover(self, x: float, y: float) -> None:
        self.cursor = (float(x), float(y))
        if self.points:
            self.redraw()

    def pop(self) -> bool:
        """Remove the last vertex (Backspace); False when there was none."""
        if not self.points:
            return False
        self.points.pop()
        self.redraw()
        return True

    def close(self) -> list[Point] | None:
        """The vertices of the closed polygon, and a fresh start; None (nothing changes, the
        drawing goes on) with fewer than three vertices or no area (all on one line)."""
        if len(self.points) < MIN_VERTICES or _area(self.points) < 1e-9:
            return None
        points = self.points
        self.cancel()
        return points

    def cancel(self) -> None:
        self.points = []
        self.redraw()

    def restore(self, points: list[Point]) -> None:
        """Back to drawing ``points`` (a closed polygon the target could not apply yet)."""
        self.points = list(points)
        self.redraw()

    # ------------------------------------------------------------------ drawing
    def redraw(self) -> None:
        """Draw the polygon (also after a zoom: the handles keep their size on screen)."""
        pts = self.points
        self.closing_highlighted = False
        if not pts:
            for item in self.items:
                item.setPath(QPainterPath())
            return
        cursor = self.cursor if self.cursor is not None else pts[-1]
        closing = self.closing_highlighted = self.can_close_at(*cursor)
        if closing:
            cursor = pts[0]  # the rubber band snaps to the first vertex
        placed = QPainterPath()
        placed.addPolygon(QPolygonF([QPointF(x, y) for x, y in pts]))
        rubber = QPainterPath()
        rubber.moveTo(*pts[-1])
        rubber.lineTo(*cursor)
        if len(pts) >= 2 and not closing:
            rubber.lineTo(*pts[0])
        outline = QPainterPath(placed)
        outline.addPath(rubber)
        self.halo_item.setPath(outline)
        self.edges_item.setPath(placed)
        self.rubber_item.setPath(rubber)
        fill = QPainterPath()
        ring = pts if closing else pts + [cursor]
        if len(ring) >= MIN_VERTICES:
            fill.addPolygon(QPolygonF([QPointF(x, y) for x, y in ring]))
            fill.closeSubpath()
        fill.setFillRule(Qt.FillRule.WindingFill)  # as core.editing.fill_polygon (non-zero)
        self.fill_item.setPath(fill)
        self.fill_item.setBrush(QBrush(PREVIEW_FILL.get(self.mode, PREVIEW_FILL["add"])))
        zoom = self._zoom()
        r = HANDLE_PX / zoom
        handles = QPainterPath()
        for x, y in pts[1:]:
            handles.addEllipse(QPointF(x, y), r, r)
        self.handles_item.setPath(handles)
        first = QPainterPath()
        rf = (FIRST_HANDLE_PX * (1.5 if closing else 1.0)) / zoom
        first.addEllipse(QPointF(*pts[0]), rf, rf)
        self.first_item.setPath(first)
        self.first_item.setBrush(QBrush(CLOSE_FILL if closing else FIRST_FILL))


def _area(points: list[Point]) -> float:
    """The polygon's area (shoelace formula, absolute)."""
    x = [p[0] for p in points]
    y = [p[1] for p in points]
    n = len(points)
    return abs(sum(x[i] * y[(i + 1) % n] - x[(i + 1) % n] * y[i] for i in range(n))) / 2

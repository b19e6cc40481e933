"""Mouse gestures on the canvas -> mask edits (issue 5): brush, eraser, lasso, polygon, vertices.

``EditTools`` filters the canvas viewport's mouse and wheel events while an editing tool is
chosen (with ``Tool.NAVIGATE`` the canvas pans and zooms as before):

* brush / eraser: press-drag-release is one stroke (one undo step); the radius, in image pixels,
  is drawn as a circle under the cursor; ``[`` / ``]`` or Ctrl + wheel change it;
* lasso add / lasso subtract / new contour: press-drag-release draws a closed freehand outline;
* polygon add / polygon subtract / new polygon: click vertices one by one (as in labelme); the
  rubber band follows the cursor and the closed polygon is previewed; Backspace (or the right
  button, or Ctrl+Z) removes the last vertex, Enter, a double click or a click on the first vertex closes it
  (one undo step), Escape cancels it (``canvas.polygon_tool``);
* vertices: the outline's vertices (simplified by 1 px) as handles; drag one to move it, click
  an edge to insert one there (and drag it), Shift+click or right-click a vertex to delete it.

The middle button, or the left one with Space held, pans in every tool; the plain wheel still
zooms (a polygon in progress stays where it is on the image). The tools only translate
gestures: the ``EditTarget`` (gui.editing.EditController) changes the mask through core.history.
"""

from __future__ import annotations

from enum import Enum
from typing import Protocol

import numpy as np
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QGuiApplication, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import QGraphicsEllipseItem, QGraphicsPathItem, QGraphicsView

from dermaseg_app.core.editing import (
    GeometryEdit,
    delete_vertex,
    insert_vertex,
    move_vertex,
    nearest_edge,
    nearest_vertex,
    vertices,
)
from dermaseg_app.gui.canvas.polygon_tool import PolygonInProgress

MIN_RADIUS = 1.0
MAX_RADIUS = 500.0
VERTEX_HIT_PX = 9.0  # screen pixels
EDGE_HIT_PX = 6.0


class Tool(str, Enum):
    NAVIGATE = "navigate"
    BRUSH = "brush"
    ERASER = "eraser"
    LASSO_ADD = "lasso_add"
    LASSO_SUBTRACT = "lasso_subtract"
    NEW_CONTOUR = "new_contour"
    POLYGON_ADD = "polygon_add"
    POLYGON_SUBTRACT = "polygon_subtract"
    POLYGON_NEW = "polygon_new"
    VERTICES = "vertices"

    @property
    def label(self) -> str:
        return TOOL_LABELS[self]


TOOL_LABELS = {
    Tool.NAVIGATE: "Pan/zoom",
    Tool.BRUSH: "Brush",
    Tool.ERASER: "Eraser",
    Tool.LASSO_ADD: "Lasso add",
    Tool.LASSO_SUBTRACT: "Lasso cut",
    Tool.NEW_CONTOUR: "New contour",
    Tool.POLYGON_ADD: "Polygon add",
    Tool.POLYGON_SUBTRACT: "Polygon cut",
    Tool.POLYGON_NEW: "New polygon",
    Tool.VERTICES: "Vertices",
}
LASSO_MODES = {Tool.LASSO_ADD: "add", Tool.LASSO_SUBTRACT: "subtract", Tool.NEW_CONTOUR: "replace"}
POLYGON_MODES = {Tool.POLYGON_ADD: "add", Tool.POLYGON_SUBTRACT: "subtract", Tool.POLYGON_NEW: "replace"}
POLYGON_KEYS = {  # while a polygon is being drawn (the canvas has the keyboard focus)
    Qt.Key.Key_Backspace: "pop", Qt.Key.Key_Delete: "pop",
    Qt.Key.Key_Return: "close", Qt.Key.Key_Enter: "close", Qt.Key.Key_Escape: "cancel",
}
POLYGON_CTRL_KEYS = {Qt.Key.Key_Z: "pop"}  # Ctrl+Z removes the last vertex, as in labelme


class EditTarget(Protocol):
    def stroke_begin(self, radius: float, erase: bool) -> bool: ...
    def stroke_to(self, x: float, y: float) -> None: ...
    def stroke_end(self) -> None: ...
    def stroke_cancel(self) -> None: ...
    def polygon(self, points: list[tuple[float, float]], mode: str) -> bool | None: ...  # False: not applied
    def outline(self): ...  # the current mask's outline as a MultiPolygon, or None
    def commit_geometry(self, edit: GeometryEdit) -> None: ...


class EditTools(QObject):
    tool_changed = Signal(str)
    radius_changed = Signal(float)

    def __init__(self, canvas: QGraphicsView, target: EditTarget, radius: float = 15.0) -> None:
        super().__init__(canvas)
        self.canvas = canvas
        self.target = target
        self.tool = Tool.NAVIGATE
        self.radius = float(radius)
        self._stroking = False
        self._lasso: list[tuple[float, float]] = []
        self._pan_from: QPointF | None = None
        self._pan_button = Qt.MouseButton.MiddleButton
        self._space_held = False
        self._geom = None  # vertex mode: the outline being edited
        self._kept = None  # the outline a vertex edit just made (kept instead of re-traced)
        self._drag = None  # vertex mode: (kind, ref, start point)
        scene = canvas.scene()
        self.cursor_item = QGraphicsEllipseItem()
        pen = QPen(QColor(255, 255, 255, 230))
        pen.setCosmetic(True)
        pen.setWidthF(1.5)
        self.cursor_item.setPen(pen)
        self.cursor_item.setZValue(10)
        self.cursor_item.hide()
        self.lasso_item = QGraphicsPathItem()
        lpen = QPen(QColor(255, 255, 255))
        lpen.setCosmetic(True)
        lpen.setWidthF(1.5)
        lpen.setStyle(Qt.PenStyle.DashLine)
        self.lasso_item.setPen(lpen)
        self.lasso_item.setZValue(10)
        self.handles_item = QGraphicsPathItem()
        hpen = QPen(QColor(20, 20, 20))
        hpen.setCosmetic(True)
        self.handles_item.setPen(hpen)
        self.handles_item.setBrush(QBrush(QColor(255, 255, 255)))
        self.handles_item.setZValue(9)
        for item in (self.cursor_item, self.lasso_item, self.handles_item):
            scene.addItem(item)
        self.polygon_item = PolygonInProgress(canvas)
        canvas.viewport().setMouseTracking(True)
        canvas.viewport().installEventFilter(self)
        canvas.installEventFilter(self)  # keys (the canvas has the focus; the viewport has the mouse)
        if hasattr(canvas, "zoom_changed"):
            canvas.zoom_changed.connect(self._zoomed)

    # ------------------------------------------------------------------ state
    def set_tool(self, tool: Tool | str) -> None:
        tool = Tool(tool)
        self.cancel()
        self.tool = tool
        self.polygon_item.mode = POLYGON_MODES.get(tool, "add")
        self.canvas.setDragMode(QGraphicsView.DragMode.ScrollHandDrag if tool == Tool.NAVIGATE
                                else QGraphicsView.DragMode.NoDrag)
        self.canvas.viewport().setCursor(Qt.CursorShape.OpenHandCursor if tool == Tool.NAVIGATE
                                         else Qt.CursorShape.CrossCursor)
        self.cursor_item.setVisible(False)
        self._update_cursor_size()
        self.refresh_outline()
        self.tool_changed.emit(tool.value)

    def set_radius(self, radius: float) -> None:
        radius = float(min(MAX_RADIUS, max(MIN_RADIUS, radius)))
        if radius == self.radius:
            return
        self.radius = radius
        self._update_cursor_size()
        self.radius_changed.emit(radius)

    def grow_radius(self, factor: float) -> None:
        r = self.radius * factor
        if abs(r - self.radius) < 1.0:  # small brushes still change by a pixel a step
            r = self.radius + (1.0 if factor > 1 else -1.0)
        self.set_radius(round(r))

    @property
    def busy(self) -> bool:
        return self._stroking or bool(self._lasso) or self._drag is not None or self.polygon_item.active

    def cancel(self) -> None:
        """Abandon a gesture in progress (moving to another image, switching tools)."""
        if self._stroking:
            self._stroking = False
            self.target.stroke_cancel()
        self._lasso = []
        self.lasso_item.setPath(QPainterPath())
        self._drag = None
        self.polygon_item.cancel()

    # ------------------------------------------------------------------ the gestures as calls
    def stroke(self, points: list[tuple[float, float]], erase: bool | None = None) -> None:
        """A whole brush stroke through image points (tests, scripts): one undo step."""
        if erase is None:
            erase = self.tool == Tool.ERASER
        if not points or not self.target.stroke_begin(self.radius, erase):
            return
        for x, y in points:
            self.target.stroke_to(x, y)
        self.target.stroke_end()

    def lasso(self, points: list[tuple[float, float]], tool: Tool | None = None) -> None:
        mode = LASSO_MODES[Tool(tool) if tool is not None else self.tool]
        if len(points) >= 3:
            self.target.polygon(points, mode)

    def polygon(self, points: list[tuple[float, float]], tool: Tool | None = None) -> None:
        """Place the polygon's vertices one by one and close it, as clicks and Enter would (tests,
        scripts): one undo step; fewer than 3 vertices (or no area) change nothing."""
        tool = Tool(tool) if tool is not None else self.tool
        self.polygon_item.cancel()
        for x, y in points:
            self.polygon_item.add_vertex(x, y)
        closed = self.polygon_item.close()
        if closed is None:
            self.polygon_item.cancel()  # not left half-drawn
        self._apply_polygon(closed, POLYGON_MODES[tool])

    @property
    def polygon_points(self) -> list[tuple[float, float]]:
        """The vertices of the polygon being drawn (empty when none)."""
        return list(self.polygon_item.points)

    # ------------------------------------------------------------------ events
    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt API
        et = event.type()
        if obj is self.canvas:  # the view itself: keys only (mouse events it gets are the viewport's)
            return self._key_event(et, event)
        if et == QEvent.Type.Leave:
            self.cursor_item.hide()
            return False
        if et == QEvent.Type.Wheel and self.tool in (Tool.BRUSH, Tool.ERASER) and \
                event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            delta = event.angleDelta().y()
            if delta:
                self.grow_radius(1.15 if delta > 0 else 1 / 1.15)
            return True
        if et not in (QEvent.Type.MouseButtonPress, QEvent.Type.MouseMove, QEvent.Type.MouseButtonRelease,
                      QEvent.Type.MouseButtonDblClick):
            return False
        pos = event.position()
        # the middle button (or the left one with Space held) pans in every tool
        if et in (QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonDblClick) and self._pan_from is None and (
                event.button() == Qt.MouseButton.MiddleButton or (
                event.button() == Qt.MouseButton.LeftButton and self._space_held and self.tool != Tool.NAVIGATE)):
            self._pan_from = pos
            self._pan_button = event.button()
            return True
        if self._pan_from is not None:
            if et == QEvent.Type.MouseMove:
                d = pos - self._pan_from
                self._pan_from = pos
                h, v = self.canvas.horizontalScrollBar(), self.canvas.verticalScrollBar()
                h.setValue(h.value() - round(d.x()))
                v.setValue(v.value() - round(d.y()))
                return True
            if et == QEvent.Type.MouseButtonRelease and event.button() == self._pan_button:
                self._pan_from = None
                return True
        if self.tool == Tool.NAVIGATE:
            return False
        scene = self.canvas.mapToScene(pos.toPoint())
        x, y = float(scene.x()), float(scene.y())
        if self.tool in (Tool.BRUSH, Tool.ERASER):
            return self._brush_event(et, event, x, y)
        if self.tool in LASSO_MODES:
            return self._lasso_event(et, event, x, y)
        if self.tool in POLYGON_MODES:
            return self._polygon_event(et, event, x, y)
        if self.tool == Tool.VERTICES:
            return self._vertex_event(et, event, x, y)
        return False

    def _brush_event(self, et, event, x: float, y: float) -> bool:
        self._place_cursor(x, y)
        if et in (QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonDblClick):
            if event.button() == Qt.MouseButton.LeftButton and not self._stroking:
                if self.target.stroke_begin(self.radius, self.tool == Tool.ERASER):
                    self._stroking = True
                    self.target.stroke_to(x, y)
            elif event.button() == Qt.MouseButton.RightButton and self._stroking:
                self._stroking = False
                self.target.stroke_cancel()
            return True
        if et == QEvent.Type.MouseMove:
            if self._stroking:
                self.target.stroke_to(x, y)
            return True
        if et == QEvent.Type.MouseButtonRelease and event.button() == Qt.MouseButton.LeftButton:
            if self._stroking:
                self._stroking = False
                self.target.stroke_end()
            return True
        return True

    def _lasso_event(self, et, event, x: float, y: float) -> bool:
        if et == QEvent.Type.MouseButtonPress and event.button() == Qt.MouseButton.LeftButton:
            self._lasso = [(x, y)]
        elif et == QEvent.Type.MouseButtonPress and event.button() == Qt.MouseButton.RightButton:
            self._lasso = []
        elif et == QEvent.Type.MouseMove and self._lasso:
            last = self._lasso[-1]
            if abs(x - last[0]) + abs(y - last[1]) >= 0.5 / max(self._zoom(), 1e-6):
                self._lasso.append((x, y))
        elif et == QEvent.Type.MouseButtonRelease and event.button() == Qt.MouseButton.LeftButton and self._lasso:
            points, self._lasso = self._lasso + [(x, y)], []
            self.lasso_item.setPath(QPainterPath())
            self.lasso(points)
            return True
        path = QPainterPath()
        if self._lasso:
            path.addPolygon(QPolygonF([QPointF(px, py) for px, py in self._lasso]))
            path.closeSubpath()
        self.lasso_item.setPath(path)
        return True

    # ------------------------------------------------------------------ polygon and keys
    def _polygon_event(self, et, event, x: float, y: float) -> bool:
        poly = self.polygon_item
        if self._shape() is None:  # no image shown: nothing to draw on
            return True
        if et == QEvent.Type.MouseMove:
            poly.hover(x, y)
        elif event.button() == Qt.MouseButton.LeftButton and et == QEvent.Type.MouseButtonPress:
            self._apply_polygon(poly.click(x, y))  # a vertex, or closed on the first vertex
        elif event.button() == Qt.MouseButton.LeftButton and et == QEvent.Type.MouseButtonDblClick:
            slack = QGuiApplication.styleHints().mouseDoubleClickDistance()
            self._apply_polygon(poly.double_click(x, y, slack))
        elif event.button() == Qt.MouseButton.RightButton and et != QEvent.Type.MouseButtonRelease:
            poly.pop()
        return True

    def _close_polygon(self) -> None:
        self._apply_polygon(self.polygon_item.close())

    def _apply_polygon(self, points: list[tuple[float, float]] | None, mode: str | None = None) -> None:
        if points is not None and self.target.polygon(points, mode or POLYGON_MODES[self.tool]) is False:
            self.polygon_item.restore(points)  # not applied (no image or prediction yet): kept to retry

    def _key_event(self, et, event) -> bool:
        """Keys on the canvas: Space held pans with the left button; Backspace (Ctrl+Z) / Enter /
        Escape edit the polygon in progress (taking them from the window's shortcuts meanwhile)."""
        if et == QEvent.Type.FocusOut:
            self._space_held = False
            return False
        if et not in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease, QEvent.Type.ShortcutOverride):
            return False
        key = event.key()
        if key == Qt.Key.Key_Space and self.tool != Tool.NAVIGATE and et != QEvent.Type.ShortcutOverride:
            if not event.isAutoRepeat():
                self._space_held = et == QEvent.Type.KeyPress
                self.canvas.viewport().setCursor(Qt.CursorShape.OpenHandCursor if self._space_held
                                                 else Qt.CursorShape.CrossCursor)
            return True
        mods = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        if mods == Qt.KeyboardModifier.NoModifier:
            action = POLYGON_KEYS.get(key)
        else:
            action = POLYGON_CTRL_KEYS.get(key) if mods == Qt.KeyboardModifier.ControlModifier else None
        if action is None or not self.polygon_item.active:
            return False
        if et == QEvent.Type.ShortcutOverride:
            event.accept()  # the key comes to the canvas instead of triggering a window shortcut (Esc)
            return True
        if et == QEvent.Type.KeyPress:
            if action == "pop":
                self.polygon_item.pop()
            elif action == "close":
                self._close_polygon()
            else:
                self.polygon_item.cancel()
        return True

    def _zoomed(self, _zoom: float) -> None:
        self._draw_handles()
        self.polygon_item.redraw()

    # ------------------------------------------------------------------ vertex editing
    def refresh_outline(self) -> None:
        """Re-read the outline after the mask changed (vertex mode only). After a vertex edit the
        edited outline itself is kept (tracing the new mask again would turn every slanted edge
        into a staircase of vertices)."""
        kept, self._kept = self._kept, None
        if self.tool != Tool.VERTICES:
            self._geom = None
        else:
            self._geom = kept if kept is not None else self.target.outline()
        self._draw_handles()

    def _commit(self, edit: GeometryEdit) -> None:
        self._kept = edit.geometry
        self.target.commit_geometry(edit)
        if self._kept is not None:  # the target did not refresh (nothing changed)
            self.refresh_outline()

    def _zoom(self) -> float:
        return float(self.canvas.transform().m11()) or 1.0

    def _draw_handles(self, moving: tuple | None = None) -> None:
        path = QPainterPath()
        if self._geom is not None and self.tool == Tool.VERTICES:
            r = 3.5 / self._zoom()
            for _ref, (vx, vy) in vertices(self._geom):
                path.addEllipse(QPointF(vx, vy), r, r)
            if moving is not None:
                (ax, ay), (mx, my), (bx, by) = moving
                path.moveTo(ax, ay)
                path.lineTo(mx, my)
                path.lineTo(bx, by)
                path.addEllipse(QPointF(mx, my), r * 1.4, r * 1.4)
        self.handles_item.setPath(path)

    def _vertex_event(self, et, event, x: float, y: float) -> bool:
        if self._geom is None:
            self.refresh_outline()
        geom = self._geom
        if geom is None:
            return True
        zoom = self._zoom()
        if et == QEvent.Type.MouseButtonPress:
            hit = nearest_vertex(geom, (x, y))
            near = hit is not None and hit[1] * zoom <= VERTEX_HIT_PX
            delete = event.button() == Qt.MouseButton.RightButton or (
                event.button() == Qt.MouseButton.LeftButton
                and event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
            if near and delete:
                self._commit(delete_vertex(geom, hit[0], self._shape()))
            elif near and event.button() == Qt.MouseButton.LeftButton:
                self._drag = ("move", hit[0])
            elif event.button() == Qt.MouseButton.LeftButton:
                edge = nearest_edge(geom, (x, y))
                if edge is not None and edge[1] * zoom <= EDGE_HIT_PX:
                    self._drag = ("insert", edge[0])
            return True
        if et == QEvent.Type.MouseMove and self._drag is not None:
            self._draw_handles(self._rubber(self._drag, (x, y)))
            return True
        if et == QEvent.Type.MouseButtonRelease and self._drag is not None:
            kind, ref = self._drag
            self._drag = None
            self.vertex_drag(kind, ref, (x, y))
            return True
        return True

    def vertex_drag(self, kind: str, ref, to: tuple[float, float]) -> None:
        """Finish a vertex move ("move") or an insertion on an edge ("insert") at ``to``."""
        geom = self._geom
        if geom is None:
            return
        if kind == "move":
            edit = move_vertex(geom, ref, to, self._shape())
        else:
            edit = insert_vertex(geom, ref, to, self._shape())
        self._commit(edit)

    def _rubber(self, drag, to):
        kind, ref = drag
        ring = _ring(self._geom, ref)
        if ring is None:
            return None
        n = len(ring)
        if kind == "move":
            return tuple(ring[(ref.index - 1) % n]), to, tuple(ring[(ref.index + 1) % n])
        return tuple(ring[ref.index]), to, tuple(ring[(ref.index + 1) % n])

    def _shape(self) -> tuple[int, int] | None:
        size = getattr(self.canvas, "image_size", None)
        return (size[1], size[0]) if size and size[0] else None

    # ------------------------------------------------------------------ brush cursor
    def _place_cursor(self, x: float, y: float) -> None:
        r = self.radius
        self.cursor_item.setRect(QRectF(x - r, y - r, 2 * r, 2 * r))
        self.cursor_item.setVisible(True)

    def _update_cursor_size(self) -> None:
        if self.cursor_item.isVisible():
            c = self.cursor_item.rect().center()
            self._place_cursor(c.x(), c.y())


def _ring(geom, ref) -> np.ndarray | None:
    try:
        poly = geom.geoms[ref.polygon]
        ring = poly.exterior if ref.ring == 0 else poly.interiors[ref.ring - 1]
        pts = np.asarray(ring.coords)[:-1]
        return pts if len(pts) else None
    except (IndexError, AttributeError):
        return None

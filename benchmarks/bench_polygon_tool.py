#!/usr/bin/env python
"""Benchmark (and look at) the click-by-click polygon tool in the review window.

Opens a copy of one sample (default: the 3072x2304 ISIC_0000377) in the window, chooses
"New polygon" with its key (Shift+D; it always changes the mask), clicks N vertices along a
circle with real mouse events, moving the cursor between clicks, and closes the polygon with
Enter. It measures

* ``click``: a vertex placed (event handled, polygon redrawn) plus the synchronous repaint;
* ``move``: a mouse move (rubber band and preview redrawn) plus the repaint, with the polygon's
  vertex count growing to N;
* ``close``: Enter handled (fill_polygon on the full-resolution mask, one undo step, overlay and
  outline updated) plus the repaint;

at the fit-to-window zoom and at 100%. ``--shots DIR`` saves window grabs: the polygon in
progress, the cursor near the first vertex (highlighted), zoomed in, and after closing.

    python benchmarks/bench_polygon_tool.py [--image PATH] [--model M] [--vertices 100] [--shots DIR]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--image", type=Path, default=ROOT / "resources/samples/images/ISIC_0000377.jpg")
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--vertices", type=int, default=100)
    ap.add_argument("--shots", type=Path, default=None)
    args = ap.parse_args()

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qt_wait import bench_folder, open_for_editing

    folder = bench_folder(args.image, "dermaseg-bench-polygon-", ground_truth=False)

    from PySide6.QtCore import QEvent, QPointF, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    from dermaseg_app.gui.canvas.edit_tools import Tool

    app, window = open_for_editing(folder, args.model)
    s = window.session
    ed = window.editing
    canvas = window.canvas
    vp = canvas.viewport()
    h, w = s.current_images().rgb.shape[:2]
    canvas.setFocus()
    key(canvas, Qt.Key.Key_D, Qt.KeyboardModifier.ShiftModifier)
    if ed.tools.tool != Tool.POLYGON_NEW:
        raise SystemExit(f"Shift+D chose {ed.tools.tool}, not the new polygon tool")

    def mouse(kind, pos: QPointF, button=Qt.MouseButton.LeftButton) -> None:
        buttons = button if kind == QEvent.Type.MouseButtonPress else Qt.MouseButton.NoButton
        if kind == QEvent.Type.MouseMove:
            button = Qt.MouseButton.NoButton
        ev = QMouseEvent(kind, pos, QPointF(vp.mapToGlobal(pos.toPoint())), button, buttons,
                         Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(vp, ev)

    handled: list[float] = []  # the event alone, without the repaint

    def timed(fn) -> float:
        t0 = time.perf_counter()
        fn()
        handled.append(1000 * (time.perf_counter() - t0))
        vp.repaint()
        return 1000 * (time.perf_counter() - t0)

    def draw(label: str, shots: bool) -> dict:
        centre = QPointF(vp.width() / 2, vp.height() / 2)
        radius = min(vp.width(), vp.height()) * 0.3
        n = args.vertices
        ring = [centre + QPointF(radius * math.cos(2 * math.pi * i / n), radius * math.sin(2 * math.pi * i / n))
                for i in range(n)]
        clicks, moves = [], []
        handled.clear()
        for i, p in enumerate(ring):
            nxt = ring[(i + 1) % n]
            clicks.append(timed(lambda p=p: (mouse(QEvent.Type.MouseButtonPress, p),
                                             mouse(QEvent.Type.MouseButtonRelease, p))))
            for t in (0.33, 0.66):  # the cursor on its way to the next vertex
                q = p + (nxt - p) * t + QPointF(0, 12)
                moves.append(timed(lambda q=q: mouse(QEvent.Type.MouseMove, q)))
            app.processEvents()
        move_handled = handled[2::3] + handled[1::3]
        if len(ed.tools.polygon_points) != n:
            raise SystemExit(f"{len(ed.tools.polygon_points)} vertices placed, {n} clicked")
        if shots:
            mouse(QEvent.Type.MouseMove, centre + QPointF(radius * 0.2, radius * 0.5))
            app.processEvents()
            window.grab().save(str(args.shots / "polygon_1_in_progress.png"))
            mouse(QEvent.Type.MouseMove, ring[0] + QPointF(3, 3))
            app.processEvents()
            window.grab().save(str(args.shots / "polygon_2_near_first_vertex.png"))
        edit = ed.current_edit()
        steps = len(edit.history) if edit is not None else 0
        close = timed(lambda: key(canvas, Qt.Key.Key_Return))
        ed.wait_for_metrics(30)
        app.processEvents()
        if len(ed.current_edit().history) != steps + 1:
            raise SystemExit("closing the polygon did not make one undo step")
        if shots:
            window.grab().save(str(args.shots / "polygon_3_closed.png"))
        ed.undo()
        app.processEvents()
        return {"view": label, "vertices": n,
                "click_ms_median": statistics.median(clicks), "click_ms_p95": _p95(clicks),
                "move_ms_median": statistics.median(moves), "move_ms_p95": _p95(moves),
                "move_ms_max": max(moves), "move_handler_ms_median": statistics.median(move_handled),
                "close_ms": close}

    if args.shots:
        args.shots.mkdir(parents=True, exist_ok=True)
    # the image's first edit starts its correction (the model's mask saved beside it, the journal
    # opened): timed on its own, so that "close" is the polygon's own cost
    t0 = time.perf_counter()
    if ed.ensure_edit() is None:
        raise SystemExit("the correction could not be started")
    start_ms = 1000 * (time.perf_counter() - t0)
    results = []
    canvas.fit()
    app.processEvents()
    results.append(draw("fit", shots=args.shots is not None))
    canvas.zoom_100()
    app.processEvents()
    results.append(draw("100%", shots=False))
    if args.shots:
        canvas.set_zoom(2.0)
        key(canvas, Qt.Key.Key_L, Qt.KeyboardModifier.ShiftModifier)
        c = QPointF(vp.width() / 2, vp.height() / 2)
        for d in (QPointF(-150, -60), QPointF(120, -90), QPointF(160, 110)):
            mouse(QEvent.Type.MouseButtonPress, c + d)
            mouse(QEvent.Type.MouseButtonRelease, c + d)
        mouse(QEvent.Type.MouseMove, c + QPointF(-80, 140))
        app.processEvents()
        window.grab().save(str(args.shots / "polygon_4_zoomed_200.png"))
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    for r in results:
        print(f"{r['view']:>5}, {r['vertices']} vertices: click {r['click_ms_median']:.2f} ms "
              f"(p95 {r['click_ms_p95']:.2f}), move {r['move_ms_median']:.2f} ms (p95 {r['move_ms_p95']:.2f}, "
              f"max {r['move_ms_max']:.2f}; handler alone {r['move_handler_ms_median']:.2f}), "
              f"close {r['close_ms']:.1f} ms  (each with the repaint)")
    print(f"image {w}x{h}; starting the image's correction (first edit) {start_ms:.0f} ms; "
          f"load average {load}")
    window.editing.ask_unsaved = lambda n: "discard"
    window.close()
    window.session.stop_background(wait=True, timeout=10)
    shutil.rmtree(folder.parent, ignore_errors=True)
    return 0


def key(widget, k, modifiers=None) -> None:
    """A key press and release, delivered as the window gets them (window shortcuts included)."""
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    QTest.keyClick(widget, k, modifiers if modifiers is not None else Qt.KeyboardModifier.NoModifier)


def _p95(values: list[float]) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(0.95 * (len(v) - 1))))]


if __name__ == "__main__":
    raise SystemExit(main())

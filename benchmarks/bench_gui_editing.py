#!/usr/bin/env python
"""Benchmark contour correction in the review window (issue 5 target: <= 16 ms per mouse move on a
3072x2304 image).

Opens a copy of one sample (default: the 3072x2304 ISIC_0000377) in the window, chooses the
brush, and sends real mouse events to the canvas viewport: press, N moves along a circle, release.
For every move it measures

* ``handler``: the mouse-move event handled (stroke segment painted into the mask, the overlay
  recoloured in the changed box) -- ``QApplication.sendEvent`` time;
* ``paint``: the viewport repainted synchronously afterwards (``viewport().repaint()``), i.e. what
  the user waits for before the next frame;

at the fit-to-window zoom and at 100% (full-resolution overlay drawn). Stroke end (one undo step,
outline re-traced, journal line fsynced) is timed too. ``--shot PNG`` saves a grab of the window
after the strokes (to look at the result).

    python benchmarks/bench_gui_editing.py [--image PATH] [--model M] [--moves 200] [--shot out.png]
"""

from __future__ import annotations

import argparse
import json
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
    ap.add_argument("--moves", type=int, default=200)
    ap.add_argument("--radius", type=float, default=40.0)
    ap.add_argument("--shot", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qt_wait import bench_folder, open_for_editing, spin

    folder = bench_folder(args.image, "dermaseg-bench-edit-")

    from PySide6.QtCore import QEvent, QPointF, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    from dermaseg_app.gui.canvas.edit_tools import Tool

    app, window = open_for_editing(folder, args.model)
    s = window.session
    ed = window.editing
    ed.tools.set_tool(Tool.BRUSH)
    ed.tools.set_radius(args.radius)
    vp = window.canvas.viewport()
    h, w = s.current_images().rgb.shape[:2]

    def mouse(kind, pos, buttons):
        button = Qt.MouseButton.LeftButton if kind != QEvent.Type.MouseMove else Qt.MouseButton.NoButton
        ev = QMouseEvent(kind, QPointF(pos), QPointF(vp.mapToGlobal(pos.toPoint())), button, buttons,
                         Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(vp, ev)

    def stroke(label: str, erase: bool) -> dict:
        ed.tools.set_tool(Tool.ERASER if erase else Tool.BRUSH)
        centre = QPointF(vp.width() / 2, vp.height() / 2)
        radius_px = min(vp.width(), vp.height()) * 0.25
        points = [centre + QPointF(radius_px * math.cos(2 * math.pi * i / args.moves),
                                   radius_px * math.sin(2 * math.pi * i / args.moves))
                  for i in range(args.moves)]
        mouse(QEvent.Type.MouseButtonPress, points[0], Qt.MouseButton.LeftButton)
        handler, paint = [], []
        for p in points[1:]:
            t0 = time.perf_counter()
            mouse(QEvent.Type.MouseMove, p, Qt.MouseButton.LeftButton)
            t1 = time.perf_counter()
            vp.repaint()
            t2 = time.perf_counter()
            handler.append(1000 * (t1 - t0))
            paint.append(1000 * (t2 - t1))
            app.processEvents()  # the live-outline timer
        t0 = time.perf_counter()
        mouse(QEvent.Type.MouseButtonRelease, points[-1], Qt.MouseButton.NoButton)
        vp.repaint()
        end_ms = 1000 * (time.perf_counter() - t0)
        ed.wait_for_metrics(30)
        app.processEvents()
        total = [a + b for a, b in zip(handler, paint, strict=True)]
        return {"view": label, "erase": erase, "moves": len(handler),
                "handler_ms_median": statistics.median(handler), "handler_ms_p95": _p95(handler),
                "paint_ms_median": statistics.median(paint), "paint_ms_p95": _p95(paint),
                "move_total_ms_median": statistics.median(total), "move_total_ms_p95": _p95(total),
                "move_total_ms_max": max(total), "stroke_end_ms": end_ms}

    results = []
    window.canvas.fit()
    app.processEvents()
    results.append(stroke("fit", erase=False))
    results.append(stroke("fit", erase=True))
    window.canvas.zoom_100()
    app.processEvents()
    results.append(stroke("100%", erase=False))
    window.canvas.fit()
    app.processEvents()
    spin(0.2)
    if args.shot:
        window.grab().save(str(args.shot))
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    out = {"image": str(args.image.name), "size": [w, h], "radius": args.radius, "load_avg": load,
           "results": results}
    for r in results:
        print(f"{r['view']:>5} {'eraser' if r['erase'] else 'brush '}: per move handler "
              f"{r['handler_ms_median']:.2f} ms (p95 {r['handler_ms_p95']:.2f}), repaint "
              f"{r['paint_ms_median']:.2f} ms (p95 {r['paint_ms_p95']:.2f}), total median "
              f"{r['move_total_ms_median']:.2f} ms p95 {r['move_total_ms_p95']:.2f} max "
              f"{r['move_total_ms_max']:.2f}; stroke end {r['stroke_end_ms']:.1f} ms")
    print(f"image {w}x{h}, brush radius {args.radius:g} px, load average {load}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    window.editing.ask_unsaved = lambda n: "discard"
    window.close()
    window.session.stop_background(wait=True, timeout=10)
    shutil.rmtree(folder.parent, ignore_errors=True)
    return 0


def _p95(values: list[float]) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(0.95 * (len(v) - 1))))]


if __name__ == "__main__":
    raise SystemExit(main())

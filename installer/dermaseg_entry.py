"""The frozen app's entry point (PyInstaller runs this file as ``DermaSeg``).

``DermaSeg``                 the review window on the bundled samples
``DermaSeg PATH...``         the window on those images or folders
``DermaSeg SUBCOMMAND ...``  the command line (predict, evaluate, info, ...), as ``dermaseg``
``DermaSeg -m MODULE ...``   a module of the app as a script: the app starts its own helper
                             processes this way (``sys.executable -m dermaseg_app.ml.predictor``),
                             and a frozen app has no Python to start them with.

A missing system library of Qt's X11 platform is reported in words (on the terminal and, when
the app was started from a desktop, in a dialog of the desktop's own, or a log file), not as
Qt's abort.
"""

from __future__ import annotations

import multiprocessing
import os
import runpy
import sys


def _run_module(argv: list[str]) -> int:
    name = argv[0]
    if not name.startswith("dermaseg_app."):
        print(f"DermaSeg: -m runs only the app's own modules, not {name!r}", file=sys.stderr)
        return 2
    sys.argv = [sys.executable, *argv[1:]]
    try:
        runpy.run_module(name, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


def main() -> int:
    multiprocessing.freeze_support()
    argv = sys.argv[1:]
    if len(argv) >= 2 and argv[0] == "-m":
        return _run_module(argv[1:])
    from dermaseg_app.cli import SUBCOMMANDS
    from dermaseg_app.cli import main as cli_main

    wants_window = not argv or argv[0] not in (*SUBCOMMANDS, "-h", "--help", "--version")
    if wants_window:
        from dermaseg_app.frozen import check_qt_platform, default_paths

        problem = check_qt_platform()
        if problem is not None:
            from dermaseg_app.frozen import report_startup_problem

            report_startup_problem(problem)
            return 1
        argv = default_paths(argv)
    return int(cli_main(argv) or 0)


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.exit(main())

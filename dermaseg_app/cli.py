"""The ``dermaseg`` command.

``dermaseg``                      opens the review window
``dermaseg PATH... [options]``    opens images or folders in the review window
``dermaseg SUBCOMMAND ...``       runs a command-line tool (predict, evaluate, info, train, ...)

Each subcommand lives in ``dermaseg_app.commands.<name>`` and exposes ``register(subparsers)``;
it is imported only when needed, so ``dermaseg info`` never imports Qt and the GUI never
imports the training code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from dermaseg_app import __version__

# name -> module under dermaseg_app.commands; the module's register() adds the parser.
SUBCOMMANDS: dict[str, str] = {
    "predict": "predict",
    "evaluate": "evaluate",
    "info": "info",
    "train": "train",
    "finetune": "finetune",
    "export": "export",
    "export-model": "export_model",
    "measure": "measure",
}


def _available_subcommands() -> dict[str, str]:
    found = {}
    for name, module in SUBCOMMANDS.items():
        spec = importlib.util.find_spec(f"dermaseg_app.commands.{module}")
        if spec is not None:
            found[name] = module
    return found


def _subcommand_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dermaseg",
        description="DermaSeg: skin-lesion segmentation with SLSNet. "
        "Run without a subcommand to open the review window.",
    )
    parser.add_argument("--version", action="version", version=f"dermaseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _available_subcommands().values():
        mod = importlib.import_module(f"dermaseg_app.commands.{module}")
        mod.register(sub)
    return parser


def _gui_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dermaseg",
        description="Open images or folders in the DermaSeg review window. "
        f"Subcommands: {', '.join(_available_subcommands())} (dermaseg COMMAND --help).",
    )
    parser.add_argument("paths", nargs="*", help="images or folders to open")
    parser.add_argument("--model", help="model weights file (default: the bundled model)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when present)")
    parser.add_argument("--masks", help="folder of ground-truth masks, when not found automatically")
    parser.add_argument("--screenshot", metavar="FILE",
                        help="save a PNG of the window once the first image and its mask are drawn, then exit")
    parser.add_argument("--compare", action="store_true",
                        help="with --screenshot: show the ground-truth comparison")
    parser.add_argument("--compare-with", metavar="MODEL",
                        help="draw a second model's contour over the first's (Model > Compare With Model…)")
    parser.add_argument("--version", action="version", version=f"dermaseg {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and (args_list[0] in SUBCOMMANDS or args_list[0] in ("-h", "--help", "--version")):
        if args_list[0] in ("-h", "--help"):
            _gui_parser().print_help()
            print()
            _subcommand_parser().print_help()
            return 0
        if args_list[0] in ("predict", "evaluate", "export", "measure"):
            # torch's CPU threads sleep while they wait instead of spinning (set before torch
            # loads): on a shared or busy CPU a spinning thread made one image take seconds
            import os

            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        parser = _subcommand_parser()
        args = parser.parse_args(args_list)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)

    args = _gui_parser().parse_args(args_list)
    try:
        from dermaseg_app.gui.app import run_app
    except ImportError as exc:  # the GUI is not built yet or Qt is missing
        print(f"dermaseg: the review window cannot start: {exc}", file=sys.stderr)
        print("Use 'dermaseg predict PATH --out DIR' for masks without the window.", file=sys.stderr)
        return 2
    return int(run_app(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())

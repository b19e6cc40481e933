"""``dermaseg finetune --base MODEL --data DIR --out MODEL``: adapt a model to corrected masks.

The training loop of ``dermaseg train`` started from a model file, on a folder of images with
corrected masks (anything ``core.dataset.find_cases`` finds: ``images/`` + ``masks/``, ISIC
``*_segmentation.png`` ...). ``--replay DIR`` mixes in a share (``--replay-share``, default 0.5)
of every batch from the base training data so the model learns the new images without
forgetting dermoscopy; without ``--replay`` the 24 bundled CC0 dermoscopy images
(``resources/replay``) are replayed, and ``--replay-share 0`` replays nothing. Defaults are
chosen for a CPU: supervised loss (no discriminator), cosine learning-rate decay from 2e-4, EMA
of the weights.

The model's input size and architecture come from --base; the best epoch by validation JSC
(``--val``, default: 10% of --data held out) is published to --out.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dermaseg_app.commands.argtypes import non_negative_float, positive_int, share
from dermaseg_app.commands.train import add_common_arguments


def replay_folders(given: list[str], replay_share: float, resuming: str | None) -> list[str]:
    """The folders to replay: those given, else the bundled set (``paths.replay_dir()``) when it
    is installed; none when the share is 0 (or when resuming: the checkpoint's config decides)."""
    if replay_share <= 0:
        return []
    if given or resuming:
        return list(given)
    from dermaseg_app.paths import replay_dir

    bundled = replay_dir()
    return [str(bundled)] if bundled is not None else []


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "finetune", help="fine-tune a model on images with corrected masks",
        description="Fine-tune a model file on a folder of images with corrected masks, replaying a share "
                    "of the base training data; publishes the best model by validation JSC to --out.")
    parser.add_argument("--base", required=True, metavar="MODEL", help="the model to start from (.safetensors)")
    parser.add_argument("--data", action="append", required=True, metavar="DIR",
                        help="folder of images with corrected masks (repeatable)")
    parser.add_argument("--replay", action="append", default=[], metavar="DIR",
                        help="base training data to replay (folder or pack; repeatable; default: the 24 "
                             "dermoscopy images bundled in resources/replay)")
    parser.add_argument("--replay-share", type=share, default=0.5, metavar="F",
                        help="share of every batch drawn from --replay (default 0.5; 0: no replay)")
    parser.add_argument("--epochs", type=positive_int, default=None, metavar="N",
                        help="default 20 (when resuming: the checkpoint's)")
    parser.add_argument("--freeze-encoder", action="store_true",
                        help="train only the bridge and the decoder (faster; keeps the encoder's features)")
    parser.add_argument("--adversarial", action="store_true",
                        help="keep the GAN loss (a fresh discriminator) instead of the supervised loss")
    parser.add_argument("--base-val", action="append", default=[], metavar="DIR",
                        help="validation data of the base domain (e.g. ISIC 2017 val; repeatable): each epoch is "
                             "also scored there and only epochs within --base-val-tolerance of the base model's "
                             "JSC may be published (the base model itself if none is)")
    parser.add_argument("--base-val-tolerance", type=share, default=0.01, metavar="F",
                        help="how far (JSC) an epoch may fall below the base model on --base-val (default 0.01)")
    parser.add_argument("--l2sp", type=non_negative_float, default=0.0, metavar="W",
                        help="L2-SP: add W * sum((w - w_base)^2) to the loss to stay near the base weights "
                             "(default 0: off)")
    parser.add_argument("--freeze-bn-stats", action="store_true",
                        help="keep the base model's batch-norm running statistics (normalise as the base did)")
    parser.add_argument("--resume", metavar="CKPT", help="continue a fine-tuning run from its last.pt")
    add_common_arguments(parser, "finetune")
    parser.set_defaults(func=run_finetune)


def config_from_args(args: argparse.Namespace) -> Any:
    """The TrainConfig of ``dermaseg finetune``'s arguments: ``ml.training.finetune_config`` (the
    recipe the window uses too) with the options given."""
    from dermaseg_app.commands.train import common_settings
    from dermaseg_app.ml.training import finetune_config

    replay = replay_folders(args.replay, args.replay_share, args.resume)
    settings = common_settings(args) | {
        "base_val": list(args.base_val), "base_val_tolerance": args.base_val_tolerance, "l2sp_weight": args.l2sp,
        "freeze_bn_stats": bool(args.freeze_bn_stats), "adversarial": bool(args.adversarial), "resume": args.resume,
    }
    out = settings.pop("out")
    epochs = args.epochs if args.epochs is not None or args.resume else 20  # resuming: the checkpoint's
    return finetune_config(args.base, list(args.data), out, replay=replay, replay_share=args.replay_share,
                           epochs=epochs, freeze_encoder=args.freeze_encoder, **settings)


def run_finetune(args: argparse.Namespace) -> int:
    from dermaseg_app.commands.train import run_config
    from dermaseg_app.ml.training import TrainError
    from dermaseg_app.ml.weights import WeightsError, read_model_info

    if not args.out and not args.resume:
        print("dermaseg: error: finetune needs --out MODEL (or --resume CKPT)", file=sys.stderr)
        return 2
    try:
        info = read_model_info(args.base)
    except WeightsError as exc:
        print(f"dermaseg: error: {exc}", file=sys.stderr)
        return 2
    from dermaseg_app.ml import registry

    if args.adversarial and info.arch in registry.ARCHITECTURES and not registry.has_discriminator(info.arch):
        print(f"note: {registry.title(info.arch)} has no discriminator: --adversarial ignored, it fine-tunes "
              f"supervised with the {args.loss or registry.paper_loss(info.arch)} loss", file=sys.stderr)
        args.adversarial = False
    cfg = config_from_args(args)
    replay = cfg.replay
    if not replay and not args.resume:
        print("note: no replay: the model learns only --data and may forget what it knew about dermoscopy",
              file=sys.stderr)
    elif not args.replay and not args.resume:
        print(f"note: replaying the bundled dermoscopy images ({replay[0]}); "
              "--replay DIR replays your own, --replay-share 0 none", file=sys.stderr)
    try:
        cfg.check()
    except TrainError as exc:
        print(f"dermaseg: error: {exc}", file=sys.stderr)
        return 2
    return run_config(cfg, quiet=args.quiet)

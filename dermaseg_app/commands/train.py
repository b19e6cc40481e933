"""``dermaseg train --data DIR --out MODEL``: train SLSNet (the paper's conditional GAN), or with
``--arch NAME`` a seed network (docs/seed-networks.md: supervised, its paper's loss or ``--loss``).

Prints one progress line (epoch, step, losses, last validation JSC, time left) that is
rewritten in place on a terminal, and a summary line per epoch. The run folder (``--run-dir``,
default ``runs/<name>-<time>`` beside ``--out``) holds ``best.safetensors``, the resumable
``last.pt``, ``metrics.jsonl``/``metrics.csv`` and ``config.json``; the best model by validation
JSC is published to ``--out`` whenever it improves. Ctrl+C stops cleanly: the best model so far
stays and ``--resume RUN/last.pt`` continues.

Exit status: 0 done, 1 failure, 2 bad arguments, 130 interrupted (checkpoint kept).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import threading
import time
from typing import Any

from dermaseg_app.commands.argtypes import non_negative_float, positive_int, share

EXIT_INTERRUPTED = 130


# The shared options' defaults differ by command: train follows the paper, finetune the measured
# fine-tuning recipe (ml.training.finetune_config). The recipe options parse to None when not given,
# so each command's recipe supplies its own defaults; the help texts name them.
RECIPE_DEFAULTS = {
    "train": {"lr": "2e-4", "beta1": "0.5, as the paper", "lr_schedule": "constant", "ema": "off"},
    "finetune": {"lr": "2e-4", "beta1": "0.9 for the supervised fine-tuning loss", "lr_schedule": "cosine",
                 "ema": "0.99; 0 turns it off"},
}


def add_common_arguments(parser: argparse.ArgumentParser, command: str = "train") -> None:
    """Options shared by ``train`` and ``finetune`` (``command`` names the defaults in the help)."""
    dflt = RECIPE_DEFAULTS[command]
    parser.add_argument("--val", action="append", default=[], metavar="DIR",
                        help="validation folder (repeatable; default: hold out 10%% of --data)")
    parser.add_argument("--out", metavar="MODEL",
                        help="where the best model is published (.safetensors; a model card .md goes beside it); "
                             "required unless resuming")
    parser.add_argument("--run-dir", metavar="DIR", help="work folder for checkpoints and logs")
    parser.add_argument("--device", metavar="DEVICE", help="cpu, cuda, cuda:N or mps (default: CUDA when present)")
    parser.add_argument("--threads", type=positive_int, metavar="N", help="CPU threads for torch")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--batch-size", type=positive_int, default=8, metavar="B", help="default 8")
    parser.add_argument("--lr", type=float, default=None, help=f"Adam learning rate (default {dflt['lr']})")
    parser.add_argument("--beta1", type=float, default=None, help=f"Adam beta1 (default {dflt['beta1']})")
    parser.add_argument("--lr-schedule", choices=("constant", "cosine", "linear"), default=None,
                        help=f"learning-rate schedule over the run (default {dflt['lr_schedule']})")
    parser.add_argument("--lambda-l1", type=non_negative_float, default=0.1, metavar="L",
                        help="weight of the L1 term of G's loss (default 0.1)")
    parser.add_argument("--alpha-jaccard", type=non_negative_float, default=0.5, metavar="A",
                        help="weight of the soft Jaccard term of G's loss (default 0.5)")
    parser.add_argument("--ema", type=float, default=None, metavar="DECAY",
                        help="keep an exponential moving average of G's weights (e.g. 0.999) and validate/save it "
                             f"(default {dflt['ema']})")
    parser.add_argument("--max-steps-per-epoch", type=positive_int, metavar="N",
                        help="cap the steps of each epoch (quick runs)")
    parser.add_argument("--checkpoint-every", type=int, default=0, metavar="STEPS",
                        help="also write the resumable checkpoint every STEPS steps")
    parser.add_argument("--no-augment", action="store_true", help="no flips, gamma or CLAHE")
    parser.add_argument("--pack-dir", metavar="DIR", help="cache folder of decoded training packs")
    parser.add_argument("--device-data", action="store_true",
                        help="keep the training data on the device (GPU): batches are indexed and augmented "
                             "there instead of with OpenCV on the CPU")
    parser.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                        choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
                        help="torch.compile the generator and discriminator (MODE: default, reduce-overhead = "
                             "CUDA graphs, max-autotune, max-autotune-no-cudagraphs)")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="CPU precision: auto = bf16 autocast where the CPU has bf16 units (AMX, AVX512-BF16) "
                             "and it measured faster, else fp32 (default auto)")
    parser.add_argument("--channels-last", action="store_true",
                        help="NHWC memory format for the networks and batches (measure: often faster on the CPU)")
    parser.add_argument("--loss", metavar="NAME",
                        help="G's loss, a seed paper's: soft_dice, nll_epe or dice_focal (default: the "
                             "architecture's own; SLSNet's L1 + soft Jaccard, with the adversarial term)")
    parser.add_argument("--name", help="model name stored in the file")
    parser.add_argument("--version", dest="model_version", help="model version stored in the file")
    parser.add_argument("--quiet", action="store_true", help="print only the epoch lines")


def common_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields the shared options set; the recipe options (learning rate, beta1,
    schedule, EMA, name, version) only where given, so that the command's recipe keeps its own."""
    from dermaseg_app.ml.augment import AugmentConfig

    settings: dict[str, Any] = {
        "val": list(args.val or []), "out": args.out, "run_dir": args.run_dir, "batch_size": args.batch_size,
        "lambda_l1": args.lambda_l1, "alpha_jaccard": args.alpha_jaccard, "seed": args.seed,
        "device": args.device, "num_threads": args.threads, "max_steps_per_epoch": args.max_steps_per_epoch,
        "checkpoint_every": args.checkpoint_every, "pack_dir": args.pack_dir,
        "device_data": bool(args.device_data), "compile": args.compile is not None,
        "compile_mode": args.compile or "default", "amp": bool(args.amp), "precision": args.precision,
        "channels_last": bool(args.channels_last), "loss": args.loss,
        "command": "dermaseg " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    }
    if args.no_augment:
        settings["augment"] = AugmentConfig(hflip=False, vflip=False, gammas=(1.0,), clahe_probability=0.0)
    given = {"lr": args.lr, "beta1": args.beta1, "lr_schedule": args.lr_schedule, "ema_decay": args.ema,
             "model_name": args.name, "model_version": args.model_version}
    settings.update({k: v for k, v in given.items() if v is not None})
    return settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train", help="train SLSNet (or --arch: a seed network) on images with masks",
        description="Train SLSNet (conditional GAN: adversarial BCE + lambda L1 + alpha soft Jaccard), or with "
                    "--arch a seed network (supervised, its paper's loss), on folders of images/<stem>.jpg + "
                    "masks/<stem>.png; publishes the best model by validation JSC to --out.")
    parser.add_argument("--data", action="append", metavar="DIR",
                        help="training folder or pack (.npz) (repeatable; required unless resuming)")
    parser.add_argument("--epochs", type=positive_int, default=None, metavar="N",
                        help="default 50 (when resuming: the checkpoint's)")
    parser.add_argument("--arch", default=None, metavar="NAME",
                        help="the network: slsnet (default; the conditional GAN), mobile_deeplab, slsdeep or "
                             "dual_attention_unet (no discriminator: supervised with the paper's loss; "
                             "docs/seed-networks.md); with --init or --resume: the model's")
    parser.add_argument("--input-size", type=positive_int, default=128, metavar="PX",
                        help="network input size, a multiple of 8 (default 128, as the paper)")
    parser.add_argument("--resume", metavar="CKPT", help="continue a run from its last.pt")
    parser.add_argument("--warmup", type=non_negative_float, default=0.0, metavar="EPOCHS",
                        help="supervised epochs (pixel BCE, no adversarial term) before the GAN (default 0)")
    parser.add_argument("--supervised", action="store_true",
                        help="train G alone with pixel BCE + L1 + soft Jaccard (no discriminator)")
    parser.add_argument("--lr-d", type=float, help="discriminator learning rate (default: --lr)")
    parser.add_argument("--init", metavar="MODEL",
                        help="start the generator from this model file's weights (a fresh discriminator), trained "
                             "at --input-size: e.g. a 64 px model continued at 128 px")
    parser.add_argument("--mix", action="append", default=[], metavar="DIR",
                        help="a second training source mixed into every batch (repeatable), e.g. the HAM10000 "
                             "training split for a balanced mixture with ISIC 2017; an epoch ends when every "
                             "--data pair was seen once")
    parser.add_argument("--mix-share", type=share, default=0.5, metavar="F",
                        help="share of every batch drawn from --mix (default 0.5: half and half)")
    parser.add_argument("--adv-weight", type=non_negative_float, default=1.0, metavar="W",
                        help="weight of G's adversarial term (default 1, as the paper)")
    parser.add_argument("--gan-bce", type=non_negative_float, default=0.0, metavar="W",
                        help="pixel BCE weight kept in G's loss during the adversarial phase (default 0, as the paper)")
    add_common_arguments(parser)
    parser.set_defaults(func=run_train)


def config_from_args(args: argparse.Namespace) -> Any:
    """The TrainConfig of ``dermaseg train``'s arguments."""
    from dermaseg_app.ml.training import TrainConfig

    settings: dict[str, Any] = {
        "data": list(args.data or []), "epochs": args.epochs, "input_size": args.input_size,
        "warmup_epochs": args.warmup, "adversarial": not args.supervised, "lr_d": args.lr_d,
        "resume": args.resume, "replay": list(args.mix), "replay_share": args.mix_share if args.mix else 0.0,
        "gan_bce_weight": args.gan_bce, "adv_weight": args.adv_weight,
    }
    if args.arch:
        settings["arch"] = args.arch
    if args.init:
        settings.update(base_model=args.init, input_size_from_base=False)
    return TrainConfig(**(settings | common_settings(args)))


class ProgressPrinter:
    """Turns training events into terminal lines."""

    def __init__(self, quiet: bool = False, stream: Any = None, second_source: str = "replay") -> None:
        self.second_source = second_source  # what the second data source is called: replay (finetune), mixed in (train)
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.last_val: float | None = None
        self.last_print = 0.0
        self.open_line = False

    def _line(self, text: str, transient: bool) -> None:
        if self.tty and transient:
            self.stream.write("\r" + text[:160].ljust(120))
            self.open_line = True
        else:
            if self.open_line:
                self.stream.write("\n")
                self.open_line = False
            self.stream.write(text + "\n")
        self.stream.flush()

    def __call__(self, event: Any) -> None:
        from dermaseg_app.ml import training as t

        if isinstance(event, t.StepProgress):
            if self.quiet:
                return
            now = time.monotonic()
            if not self.tty and now - self.last_print < 30 and event.step != event.steps_per_epoch:
                return
            self.last_print = now
        elif isinstance(event, t.EpochEnd) and event.val is not None:
            self.last_val = event.val.jsc
        text = t.format_event(event, last_val=self.last_val, second_source=self.second_source)
        if text:
            self._line(text, transient=isinstance(event, t.StepProgress))


def run_config(cfg: Any, quiet: bool = False, second_source: str = "replay") -> int:
    """Run a TrainConfig with a progress printer; Ctrl+C cancels after the current step
    (the best model stays, a resumable checkpoint is written); a second Ctrl+C aborts."""
    import signal

    from dermaseg_app.ml import training as t
    from dermaseg_app.ml.distributed import shut_down, world_from_env

    world = world_from_env()  # under torchrun rank 0 prints the progress, the others only errors
    cancel = threading.Event()
    printer = ProgressPrinter(quiet=quiet, second_source=second_source)
    previous = None

    def on_sigint(signum: int, frame: Any) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        print("\ninterrupted: stopping after this step (Ctrl+C again to abort)", file=sys.stderr)

    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, on_sigint)
    cancelled = False
    try:
        for event in t.train(cfg, cancel):
            if world.is_main:
                printer(event)
            if isinstance(event, t.TrainCancelled):
                cancelled = True
    except (t.TrainError, ValueError, OSError) as exc:
        print(f"\ndermaseg: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndermaseg: aborted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        shut_down(world)
    return EXIT_INTERRUPTED if cancelled else 0


def run_train(args: argparse.Namespace) -> int:
    from dermaseg_app.ml.training import TrainError

    if not args.resume and (not args.data or not args.out):
        print("dermaseg: error: train needs --data DIR and --out MODEL (or --resume CKPT)", file=sys.stderr)
        return 2
    cfg = config_from_args(args)  # epochs None unless given: 50, or the checkpoint's when resuming
    try:
        cfg.check()
    except TrainError as exc:
        print(f"dermaseg: error: {exc}", file=sys.stderr)
        return 2
    return run_config(cfg, quiet=args.quiet, second_source="mixed in")

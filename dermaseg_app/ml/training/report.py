"""What a run reports: the per-epoch logs (``metrics.jsonl``, ``metrics.csv``), the model card,
the machine it ran on, and one line of text per event (``format_event``) for the CLI and the GUI."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import platform
from pathlib import Path
from typing import Any

import torch

from dermaseg_app.ml.training import events as ev
from dermaseg_app.ml.training.config import TrainConfig


def hardware() -> str:
    """The machine a run trains on, for the model card."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    threads = torch.get_num_threads()
    from dermaseg_app.ml import cpu_speed, fast_attention

    kernel = "fused CPU attention kernel" if fast_attention.ready() else "SDPA attention"
    return (f"{cpu} ({os.cpu_count()} cores; {cpu_speed.describe()}){gpu}, torch {torch.__version__} with "
            f"{threads} thread{'s' if threads != 1 else ''}, {kernel}")


LOG_FIELDS_FIRST = ("epoch", "global_step", "seconds", "lr")


def write_logs(run_dir: Path, history: list[dict[str, Any]]) -> None:
    from dermaseg_app.core.atomic import atomic_write_text

    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    keys: list[str] = list(LOG_FIELDS_FIRST)
    for r in history:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    for r in history:
        writer.writerow(r)
    atomic_write_text(run_dir / "metrics.csv", buf.getvalue())


def _figure(row: dict[str, Any], key: str) -> str:
    """One figure of a history row for the model card's table ("-" when the row has none)."""
    v = row.get(key)
    return f"{v:.4f}" if isinstance(v, (int, float)) else "-"


def _loss_text(cfg: TrainConfig) -> str:
    """G's loss as the model card states it."""
    from dermaseg_app.ml import registry

    known = cfg.arch in registry.ARCHITECTURES
    named = cfg.loss or (registry.paper_loss(cfg.arch) if known else None)
    adversarial = ""
    if cfg.adversarial:
        adversarial = ("" if cfg.adv_weight == 1 else f"{cfg.adv_weight} ") + "adversarial BCE + "
    if named is not None:
        whose = "" if cfg.loss else f", the {registry.title(cfg.arch)} paper's"
        return (adversarial or "supervised: ") + f"{named} ({_LOSS_TEXTS.get(named, named)}{whose})"
    if cfg.adversarial:
        return (adversarial + f"{cfg.lambda_l1} L1 + {cfg.alpha_jaccard} soft Jaccard"
                + (f" (+ {cfg.gan_bce_weight} pixel BCE)" if cfg.gan_bce_weight else ""))
    return f"supervised: {cfg.bce_weight} pixel BCE + {cfg.lambda_l1} L1 + {cfg.alpha_jaccard} soft Jaccard"


_LOSS_TEXTS = {
    "soft_dice": "1 - soft Dice",
    "nll_epe": "pixel NLL + 0.5 end-point error of the edges",
    "dice_focal": "Dice + focal, gamma 2",
}


def model_card(cfg: TrainConfig, history: list[dict[str, Any]], best_epoch: int | None, hardware: str,
               base_scores: dict[str, float] | None = None) -> str:
    """A Markdown model card of a run: what it was trained on, how, and its validation curve."""
    from dermaseg_app.ml import registry

    with_gan = cfg.arch not in registry.ARCHITECTURES or registry.has_discriminator(cfg.arch)
    best = next((r for r in history if r["epoch"] == best_epoch), None)
    lines = [f"# {cfg.model_name} {cfg.model_version}", ""]
    summary = (f"{cfg.arch} lesion segmentation model "
               + ("fine-tuned from " + Path(cfg.base_model).name + " " if cfg.base_model else "")
               + f"trained on {', '.join(cfg.data)} at {cfg.input_size}x{cfg.input_size}")
    if best and "val_jsc" in best:
        summary += (f"; best validation epoch {best_epoch}: JSC {best['val_jsc']:.3f}, "
                    f"DSC {best['val_dsc']:.3f}, ACC {best['val_acc']:.3f}.")
    lines += [summary, "", "## Recipe", ""]
    recipe = {
        "data": cfg.data, "validation": cfg.val or f"{cfg.val_fraction:.0%} of the training data held out",
        "replay": cfg.replay, "replay share": cfg.replay_share if cfg.replay else None,
        "base model": cfg.base_model,
        "epochs": cfg.epochs, "batch size": cfg.batch_size, "input size": cfg.input_size,
        "optimizer": f"Adam lr {cfg.lr} betas ({cfg.beta1}, {cfg.beta2}), schedule {cfg.lr_schedule}",
        "loss": _loss_text(cfg),
        "supervised warm-up epochs": (cfg.warmup_epochs if cfg.adversarial else "all") if with_gan else None,
        "EMA decay": cfg.ema_decay or "off", "frozen encoder": cfg.freeze_encoder,
        "batch-norm statistics fixed": cfg.freeze_bn_stats or None,
        "augmentation": dataclasses.asdict(cfg.augment), "seed": cfg.seed,
        "max steps per epoch": cfg.max_steps_per_epoch, "hardware": hardware,
        "speed settings": (f"precision {cfg.precision}"
                           + (", channels_last" if cfg.channels_last else "")
                           + (f", torch.compile ({cfg.compile_mode})" if cfg.compile else "")
                           + (", CUDA bf16 autocast" if cfg.amp else "")),
        "base-domain validation (epoch selection)": (
            f"{', '.join(cfg.base_val)}: an epoch qualifies if its JSC there is at most "
            f"{cfg.base_val_tolerance} below the base model's ({base_scores['base_val_jsc']:.4f}); "
            "the best qualifying epoch by validation JSC is kept, the base model if none qualifies. "
            "Figures on this set are selection figures, not an independent test"
            if cfg.base_val and base_scores else None),
        "L2-SP weight (distance from the base weights)": cfg.l2sp_weight or None,
    }
    for k, v in recipe.items():
        if v not in (None, [], ""):
            lines.append(f"- {k}: {v}")
    if best_epoch == 0 and cfg.base_val:
        lines += ["", "No epoch kept the base-domain validation JSC within the tolerance: "
                  "this file is the base model unchanged."]
    if cfg.command:
        lines += ["", "Command:", "", "```", cfg.command, "```"]
    with_base = any("base_val_jsc" in r for r in history)
    lines += ["", f"## Validation curve (mean over images, threshold {cfg.threshold})", "",
              "| epoch | time (s) | train G loss | val JSC | val DSC | val ACC | val SEN | val SPE | thresholded JSC |"
              + (" base-domain val JSC |" if with_base else ""),
              "|---|---|---|---|---|---|---|---|---|" + ("---|" if with_base else "")]
    for r in history:
        best = " (best)" if r["epoch"] == best_epoch else ""
        cells = " | ".join(_figure(r, k) for k in ("train_g", "val_jsc", "val_dsc", "val_acc", "val_sen", "val_spe",
                                                    "val_jsc_th"))
        line = f"| {r['epoch']}{best} | {r['seconds']:.0f} | {cells} |"
        if with_base:
            line += f" {_figure(r, 'base_val_jsc')}{'' if r.get('qualifies', True) else ' (too low)'} |"
        lines.append(line)
    lines.append("")
    return "\n".join(lines)


def describe_eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _started(e: ev.TrainStarted, second_source: str) -> str:
    resumed = f", resuming at epoch {e.start_epoch} step {e.start_step}" if e.start_step or e.start_epoch > 1 else ""
    lines = [f"note: {e.notice}"] if e.notice else []
    lines.append(f"training on {e.device}: {e.n_train} pairs"
                 + (f" + {e.n_replay} {second_source}" if e.n_replay else "")
                 + f", {e.n_val} for validation, {e.steps_per_epoch} steps/epoch x {e.epochs} epochs"
                 + f", {e.parameters / 1e6:.2f} M parameters{resumed}; run folder {e.run_dir}")
    if e.base_scores:
        lines.append(f"base model: base-domain val JSC {e.base_scores['base_val_jsc']:.4f} ({e.n_base_val} pairs)"
                     + (f", val JSC {e.base_scores['val_jsc']:.4f}" if "val_jsc" in e.base_scores else ""))
    return "\n".join(lines)


# the losses a step line shows (SLSNet's G, D, Jaccard, BCE; the seed losses' parts)
STEP_LOSSES = ("g", "d", "jaccard", "bce", "dice", "nll", "epe", "focal")


def _step(e: ev.StepProgress, last_val: float | None) -> str:
    width = 20
    filled = int(width * e.step / max(1, e.steps_per_epoch))
    bar = "#" * filled + "-" * (width - filled)
    losses = " ".join(f"{k} {v:.3f}" for k, v in e.losses.items() if k in STEP_LOSSES)
    val = f" | val JSC {last_val:.3f}" if last_val is not None else ""
    return (f"epoch {e.epoch}/{e.epochs} [{bar}] {e.step}/{e.steps_per_epoch} "
            f"{losses}{val} | {e.images_per_second:.1f} img/s | left {describe_eta(e.eta_seconds)}")


def _epoch_end(e: ev.EpochEnd) -> str:
    if e.val is not None:
        v = e.val
        val = (f"val JSC {v.jsc:.4f} DSC {v.dsc:.4f} ACC {v.acc:.4f} SEN {v.sen:.4f} SPE {v.spe:.4f}"
               + (f", base val JSC {e.base_val.jsc:.4f}{'' if e.qualifies else ' (too low)'}"
                  if e.base_val is not None else "")
               + f"{' (best)' if e.is_best else ''}")
    else:
        val = "no validation set"
    g = e.train_losses.get("g", float("nan"))
    speed = f", {e.images_per_second:.1f} img/s" if e.images_per_second else ""
    return (f"epoch {e.epoch}/{e.epochs} done in {e.seconds:.0f}s{speed}: G loss {g:.4f}, {val}; "
            f"left {describe_eta(e.eta_seconds)}")


def _finished(e: ev.TrainFinished) -> str:
    best = f"best val JSC {e.best_jsc:.4f} at epoch {e.best_epoch}" if e.best_jsc is not None else "no validation"
    if e.fell_back_to_base:
        best = "no epoch kept the base-domain validation JSC: published the base model unchanged"
    return f"finished in {describe_eta(e.seconds)}: {best}; model {e.model_path}"


def _cancelled(e: ev.TrainCancelled) -> str:
    best = f"best val JSC {e.best_jsc:.4f} (epoch {e.best_epoch})" if e.best_jsc is not None else "no epoch finished"
    return (f"stopped at epoch {e.epoch} step {e.step}: {best}; model {e.model_path}; "
            f"continue with --resume {e.checkpoint_path}")


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _for_window(event: Any) -> str:
    """The Training tab's wording: percentages, no loss names, the dermoscopy folder by its role."""
    if isinstance(event, ev.TrainStarted):
        steps = event.steps_per_epoch
        lines = [f"Device: {event.device}; {steps} step{'s' if steps != 1 else ''} per epoch; "
                 f"run folder {event.run_dir}"]
        if event.notice:
            lines.append(event.notice)
        if event.base_scores and "base_val_jsc" in event.base_scores:
            lines.append(f"Base model on the dermoscopy folder: JSC {_pct(event.base_scores['base_val_jsc'])}")
        return "\n".join(lines)
    if isinstance(event, ev.StepProgress):
        return (f"Epoch {event.epoch} of {event.epochs} · step {event.step} of {event.steps_per_epoch} · "
                f"about {_clock(event.eta_seconds)} left")
    if isinstance(event, ev.EpochEnd):
        parts = [f"Epoch {event.epoch}/{event.epochs}", f"loss {event.train_losses.get('g', float('nan')):.4f}"]
        if event.val is not None:
            parts.append(f"val JSC {_pct(event.val.jsc)}" + (" (best)" if event.is_best else ""))
        if event.base_val is not None:
            parts.append(f"dermoscopy JSC {_pct(event.base_val.jsc)}"
                         + ("" if event.qualifies else " (too low: not kept)"))
        parts.append(f"{event.seconds:.0f} s")
        return " · ".join(parts)
    if isinstance(event, ev.TrainCancelled):
        return f"Cancelled in epoch {event.epoch}, step {event.step}; checkpoint {event.checkpoint_path}"
    if isinstance(event, ev.TrainFinished):
        return f"Training finished in {_clock(event.seconds)} (the training steps and epochs)."
    return ""


def format_event(event: Any, *, last_val: float | None = None, second_source: str = "replay",
                 audience: str = "cli") -> str:
    """A training event as text: for ``audience="cli"`` as ``dermaseg train``/``finetune`` print
    it (one line, or for ``TrainStarted`` up to three: a notice, the run, the base model's
    scores); for ``audience="window"`` in the Training tab's words (StepProgress: its status line).
    "" for the events that say nothing worth a line (checkpoints other than a published model).
    ``last_val``: the last epoch's validation JSC, shown on CLI step lines; ``second_source``:
    what the second data source is called (replay in fine-tuning, mixed in for ``train --mix``)."""
    if audience == "window":
        return _for_window(event)
    if audience != "cli":
        raise ValueError(f"unknown audience {audience!r} (cli or window)")
    if isinstance(event, ev.TrainStarted):
        return _started(event, second_source)
    if isinstance(event, ev.StepProgress):
        return _step(event, last_val)
    if isinstance(event, ev.EpochEnd):
        return _epoch_end(event)
    if isinstance(event, ev.CheckpointSaved):
        return f"best model so far (epoch {event.epoch}) -> {event.path}" if event.kind == "published" else ""
    if isinstance(event, ev.TrainFinished):
        return _finished(event)
    if isinstance(event, ev.TrainCancelled):
        return _cancelled(event)
    return ""

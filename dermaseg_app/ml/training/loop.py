"""The loop: ``train(config, cancel)`` steps through a run's epochs (set up by ``run.set_up``) and
yields events."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Iterator

from dermaseg_app.ml.distributed import barrier
from dermaseg_app.ml.training.batches import make_batches
from dermaseg_app.ml.training.config import TrainConfig
from dermaseg_app.ml.training.distributed import any_rank, shard_plan
from dermaseg_app.ml.training.events import (
    EpochEnd,
    StepProgress,
    TrainCancelled,
    TrainEvent,
    TrainFinished,
    TrainStarted,
)
from dermaseg_app.ml.training.losses import check_finite, lr_factor
from dermaseg_app.ml.training.networks import set_train_mode
from dermaseg_app.ml.training.report import write_logs
from dermaseg_app.ml.training.run import Run, set_up
from dermaseg_app.ml.training.selection import epoch_record, score_epoch


def train(config: TrainConfig, cancel: threading.Event | None = None) -> Iterator[TrainEvent]:
    """Run (or resume) a training or fine-tuning run, yielding progress events.

    The generator function does the work as it is iterated; stop iterating or set ``cancel`` to
    stop (with ``cancel`` the best model so far is kept and a resumable checkpoint written).
    ``config`` is not changed (the run works on a copy).
    """
    run = set_up(config)
    cfg, state, step, data = run.cfg, run.state, run.step, run.data
    epochs = int(cfg.epochs or 0)
    start_epoch, start_step = state.epoch, state.step
    yield TrainStarted(run_dir=run.run_dir, device=str(run.device), notice=run.notice, n_train=len(data.train),
                       n_replay=data.n_replay, n_val=len(data.val) if data.val is not None else 0,
                       steps_per_epoch=run.steps_per_epoch, epochs=epochs, start_epoch=start_epoch + 1,
                       start_step=start_step, parameters=sum(p.numel() for p in step.g.parameters()),
                       n_base_val=len(data.base_val) if data.base_val is not None else 0,
                       base_scores=state.base_scores)
    run.t_start = time.perf_counter()
    warmup_steps = int(round(cfg.warmup_epochs * run.steps_per_epoch))
    step_time_avg: float | None = None
    val_seconds = 0.0
    world = run.world
    batches = make_batches(cfg, data, run.device, world)
    try:
        for epoch in range(start_epoch, epochs):
            plan = shard_plan(data.epoch_plan(epoch), world)  # this rank's share (all of it alone)
            first = start_step if epoch == start_epoch else 0
            if first == 0:
                state.sums = {}
            t_epoch = time.perf_counter()
            epoch_images, epoch_step_seconds = 0, 0.0
            set_train_mode(step.g, bool(cfg.freeze_encoder), cfg.freeze_bn_stats, cfg.arch)
            if step.d is not None:
                step.d.train()
            batches.start(epoch, plan, first)
            for i in range(first, len(plan)):
                t_step = time.perf_counter()
                step.begin()
                x, y = batches.get(i)
                lr_f = lr_factor(cfg.lr_schedule, state.global_step / max(1, run.total_steps), cfg.min_lr_factor)
                step.set_lr(cfg.lr * lr_f, (cfg.lr_d or cfg.lr) * lr_f)
                adversarial = cfg.adversarial and state.global_step >= warmup_steps
                losses = step(x, y, adversarial, state.global_step)
                check_finite(losses, epoch, i)
                for k, v in losses.items():
                    state.sums[k] = state.sums.get(k, 0.0) + v
                state.sums["_n"] = state.sums.get("_n", 0.0) + 1.0
                state.global_step += 1

                dt = time.perf_counter() - t_step
                epoch_images += int(x.shape[0])
                epoch_step_seconds += dt
                step_time_avg = dt if step_time_avg is None else 0.9 * step_time_avg + 0.1 * dt
                eta = (run.total_steps - state.global_step) * step_time_avg + (epochs - epoch) * val_seconds
                yield StepProgress(epoch=epoch + 1, epochs=epochs, step=i + 1, steps_per_epoch=len(plan),
                                   global_step=state.global_step, losses=losses, lr=cfg.lr * lr_f,
                                   images_per_second=x.shape[0] / max(step_time_avg, 1e-9),
                                   eta_seconds=eta, adversarial=adversarial)
                if any_rank(cancel is not None and cancel.is_set(), world, run.device):
                    yield from _cancelled(run, epoch, i + 1)
                    return
                if (cfg.checkpoint_every and state.global_step % cfg.checkpoint_every == 0 and i + 1 < len(plan)
                        and world.is_main):
                    yield run.save(epoch, i + 1)
            ips = epoch_images / epoch_step_seconds if epoch_step_seconds > 0 else None
            if world.is_main:  # validation, the best model, logs and the checkpoint: rank 0's
                val_seconds = yield from _end_epoch(run, epoch, len(plan), t_epoch, ips)
            else:
                state.sums = {}
            barrier(world)
    finally:
        batches.close()
    yield from _finished(run)


def _end_epoch(run: Run, epoch: int, n_steps: int, t_epoch: float, images_per_s: float | None
               ) -> Generator[TrainEvent, None, float]:
    """Validation, the best model, the logs and the checkpoint of an epoch; returns the seconds
    validation took."""
    cfg, state = run.cfg, run.state
    n = max(state.sums.get("_n", 1.0), 1.0)
    train_losses = {k: v / n for k, v in state.sums.items() if k != "_n"}
    t_val = time.perf_counter()
    scores = score_epoch(run.step.eval_model(), run.data, run.device, cfg, state)
    val_seconds = time.perf_counter() - t_val
    record = epoch_record(epoch, state, cfg, run.total_steps, run.elapsed(), train_losses, scores, images_per_s)
    state.history.append(record)
    if scores.is_best:
        state.best_jsc, state.best_epoch = scores.val_jsc, epoch + 1
        yield from run.publisher.publish_best(run.step.eval_model(), record, state.history)
    write_logs(run.run_dir, state.history)
    yield run.save(epoch, n_steps)
    epoch_seconds = time.perf_counter() - t_epoch
    summary, base_summary = scores.summary, scores.base_summary
    yield EpochEnd(epoch=epoch + 1, epochs=int(cfg.epochs or 0), train_losses=train_losses,
                   val=summary.mean if summary is not None else None,
                   val_pooled=summary.pooled if summary is not None else None,
                   is_best=scores.is_best, best_jsc=state.best_jsc, best_epoch=state.best_epoch,
                   seconds=epoch_seconds, eta_seconds=(int(cfg.epochs or 0) - epoch - 1) * epoch_seconds,
                   base_val=base_summary.mean if base_summary is not None else None,
                   qualifies=scores.qualifies, images_per_second=images_per_s)
    state.sums = {}
    return val_seconds


def _cancelled(run: Run, epoch: int, done_steps: int) -> Iterator[TrainEvent]:
    path = run.run_dir / "last.pt"
    if run.world.is_main:
        saved = run.save(epoch, done_steps)
        path = saved.path
        yield saved
    barrier(run.world)
    state = run.state
    yield TrainCancelled(epoch=epoch + 1, step=done_steps, best_jsc=state.best_jsc, best_epoch=state.best_epoch,
                         model_path=run.publisher.model_path(state.best_jsc), checkpoint_path=path,
                         run_dir=run.run_dir)


def _finished(run: Run) -> Iterator[TrainEvent]:
    cfg, state = run.cfg, run.state
    fell_back = bool(run.data.base_val is not None and state.best_epoch is None and state.history
                     and run.base_g is not None)
    if not run.world.is_main:
        pass  # rank 0 publishes
    elif fell_back:
        assert run.base_g is not None
        yield from run.publisher.fall_back(run.base_g, state)
    elif cfg.out and state.best_jsc is not None:
        run.publisher.refresh_card(state)  # the published card with the full curve
    yield TrainFinished(best_jsc=state.best_jsc, best_epoch=state.best_epoch,
                        model_path=run.publisher.model_path(state.best_jsc, fell_back), run_dir=run.run_dir,
                        seconds=run.elapsed(), history=state.history, fell_back_to_base=fell_back)

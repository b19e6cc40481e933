"""A run set up: its own config, device, step, data, run folder and state (``set_up``), what the
loop (``loop.train``) works with."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dermaseg_app.ml.distributed import SINGLE, World, init_process_group, rank_device, world_from_env
from dermaseg_app.ml.training.batches import DeviceBatches, RunData
from dermaseg_app.ml.training.config import TrainConfig, resolve_arch, run_config
from dermaseg_app.ml.training.distributed import broadcast_text, rescale_resume, shard_plan, wrap_step
from dermaseg_app.ml.training.events import CheckpointSaved
from dermaseg_app.ml.training.networks import EMA, build_networks, freeze_encoder
from dermaseg_app.ml.training.selection import Publisher, base_reference
from dermaseg_app.ml.training.state import RunState, load_checkpoint, load_networks, load_training
from dermaseg_app.ml.training.step import Step, make_step


@dataclass
class Run:
    """A run set up: its config (the run's own), device, step, data, folder and state."""

    cfg: TrainConfig
    device: torch.device
    notice: str | None
    step: Step
    model_cfg: dict[str, Any]
    base_g: nn.Module | None
    data: RunData
    run_dir: Path
    state: RunState
    publisher: Publisher
    steps_per_epoch: int
    t_start: float = field(default_factory=time.perf_counter)
    world: World = SINGLE  # under torchrun: this process's rank (ml.training.distributed)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * int(self.cfg.epochs or 0)

    def elapsed(self) -> float:
        """Seconds of training in all (earlier sessions of a resumed run included)."""
        return self.state.seconds + time.perf_counter() - self.t_start

    def save(self, epoch: int, done_steps: int) -> CheckpointSaved:
        path = self.state.save(self.run_dir / "last.pt", self.cfg, self.model_cfg, self.step, epoch, done_steps,
                               self.elapsed())
        return CheckpointSaved(path=path, kind="resume", epoch=epoch + 1)


def _default_run_dir(cfg: TrainConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(cfg.out).resolve().parent / "runs" if cfg.out else Path.cwd() / "runs"
    name = Path(cfg.out).stem if cfg.out else cfg.model_name
    return base / f"{name}-{stamp}"


def _device(cfg: TrainConfig, world: World = SINGLE) -> tuple[torch.device, str | None, torch.dtype | None]:
    """The device (under torchrun a CUDA request is the rank's own GPU), a notice about it (or the
    speed paths missing), and the autocast dtype. On an AMX CPU, compile and bf16 autocast are not
    combined (``cpu_speed.compiled_autocast``): ``cfg.compile`` (the run's own copy) may be turned off."""
    from dermaseg_app.ml.device import choose_device

    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    device, notice = choose_device(rank_device(cfg.device, world))
    speed_notes: list[str] = []
    cpu_autocast: torch.dtype | None = None
    if device.type == "cpu":
        from dermaseg_app.ml import cpu_speed, fast_attention

        if fast_attention.build() is None:
            speed_notes.append(f"{fast_attention.problem()}; position attention uses scaled_dot_product_attention")
        cpu_autocast, cfg.compile, compile_notice = cpu_speed.compiled_autocast(cfg.precision, cfg.compile)
        if compile_notice:
            speed_notes.append(compile_notice)
    if speed_notes:
        notice = "; ".join(([notice] if notice else []) + speed_notes)
    if cfg.device_data:
        DeviceBatches.check(device)
    if cpu_autocast is not None:
        return device, notice, cpu_autocast
    return device, notice, torch.bfloat16 if cfg.amp and device.type == "cuda" else None


def _networks(cfg: TrainConfig, ckpt: dict[str, Any] | None, device: torch.device, autocast: torch.dtype | None
              ) -> tuple[Step, dict[str, Any], str, nn.Module | None]:
    """The step (G, D, optimizers, EMA; from the checkpoint when resuming), the architecture's
    config, what the base model was trained on, and the base model as loaded (for the base-domain
    reference, the fallback and L2-SP; None when not needed)."""
    torch.manual_seed(cfg.seed)
    g, d, model_cfg, base_trained_on = build_networks(cfg)
    base_g = copy.deepcopy(g).eval() if cfg.base_model and (cfg.base_val or cfg.l2sp_weight) else None
    if ckpt is not None:
        load_networks(ckpt, g, d)
    if cfg.freeze_encoder:
        freeze_encoder(g, cfg.arch)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    g.to(device, memory_format=memory_format)
    if d is not None:
        d.to(device, memory_format=memory_format)
    l2sp_pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
    if cfg.l2sp_weight and base_g is not None:
        base_g.to(device)
        base_params = dict(base_g.named_parameters())
        l2sp_pairs = [(p, base_params[n].detach()) for n, p in g.named_parameters() if p.requires_grad]
    ema = EMA(g, cfg.ema_decay) if cfg.ema_decay > 0 else None
    step = make_step(cfg, g, d, device.type, autocast=autocast, ema=ema, l2sp_pairs=l2sp_pairs)
    if ckpt is not None:
        load_training(ckpt, step)
    return step, model_cfg, base_trained_on, base_g


def set_up(config: TrainConfig) -> Run:
    """Everything before the first step: the run's config (a copy; from the checkpoint when
    resuming), device, networks, optimizers, data, run folder (config.json) and state."""
    world = world_from_env()
    ckpt = load_checkpoint(config.resume) if config.resume else None
    cfg = run_config(config, ckpt)  # the run's own copy: the caller's config is never changed
    arch_notice = resolve_arch(cfg)  # the base model's arch; no GAN for an arch without a discriminator
    device, notice, autocast = _device(cfg, world)
    if arch_notice:
        notice = "; ".join(([notice] if notice else []) + [arch_notice])
    if world.distributed:
        init_process_group(world, device, timeout_s=4 * 3600.0)  # the others wait while rank 0 validates
        backend = "nccl" if device.type == "cuda" else "gloo"
        notice = "; ".join(([notice] if notice else []) + [f"world size {world.size} ({backend}, {world.label()})"])
    step, model_cfg, base_trained_on, base_g = _networks(cfg, ckpt, device, autocast)
    wrap_step(step, world, device, cfg.compile_mode if cfg.compile else None)
    data = RunData.load(cfg)
    plan_batches = len(data.epoch_plan(0))
    steps_per_epoch = len(shard_plan(data.epoch_plan(0), world))
    run_dir = Path(cfg.run_dir) if cfg.run_dir else (
        Path(cfg.resume).resolve().parent if cfg.resume else _default_run_dir(cfg))
    run_dir = Path(broadcast_text(str(run_dir), world))  # one run folder, rank 0's
    cfg.run_dir = str(run_dir)
    if world.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        from dermaseg_app.core.atomic import atomic_write_text

        atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2, default=str))
    if ckpt is not None:
        rescale_resume(ckpt, world, plan_batches)
    state = RunState.from_checkpoint(ckpt, steps_per_epoch) if ckpt is not None else RunState()
    state.world_size = world.size
    if data.base_val is not None and state.base_scores is None:
        state.base_scores = base_reference(base_g, data, device, cfg.threshold)
    return Run(cfg, device, notice, step, model_cfg, base_g, data, run_dir, state,
                Publisher(cfg, run_dir, model_cfg, base_trained_on), steps_per_epoch, world=world)

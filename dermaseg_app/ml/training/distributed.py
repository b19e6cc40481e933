"""The engine under torchrun: DistributedDataParallel for one model over several processes.

- Each epoch's seeded plan (``RunData.epoch_plan``, a list of batches) is split like
  DistributedSampler with ``drop_last=False``: padded by wrapping around to a multiple of the
  world size, rank ``r`` takes batches ``r, r + N, r + 2N, ...``; every rank runs the same number
  of steps, an epoch is ``ceil(batches / N)`` steps, and a step trains on N batches at once (a
  few batches at the epoch's end twice). The learning rate is unchanged (not scaled with N).
- G runs wrapped in DistributedDataParallel (its gradients averaged during the backward pass);
  D's gradients are averaged by an all-reduce as each is accumulated (D runs three times a step,
  the third with its parameters frozen, which DDP's one-forward-one-backward contract does not
  fit). The EMA, the checkpoint and the published model use the plain modules.
- Validation, checkpoints, logs and publishing happen on rank 0 only; the others wait at a barrier.
- A checkpoint records the world size; a resume at another size continues mid-epoch at the
  step covering the same share of the epoch (a partial step redone).
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import torch
from torch import nn

from dermaseg_app.ml.distributed import SINGLE, World

T = TypeVar("T")


def shard_plan(plan: list[T], world: World) -> list[T]:
    """This rank's batches of an epoch's plan (DistributedSampler semantics, padded)."""
    if not world.distributed or not plan:
        return plan
    per_rank = math.ceil(len(plan) / world.size)
    padded = [plan[i % len(plan)] for i in range(per_rank * world.size)]
    return padded[world.rank::world.size]


def seed_step(step: int, world: World) -> int:
    """The batch's index in the epoch's whole (padded) plan: the augmentation's seed, so that the
    ranks draw different augmentations and one process draws the ones it always did."""
    return step * world.size + world.rank


class _Logits(nn.Module):
    """``forward`` = the network's ``forward_logits``, what DDP wraps (the same parameters)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, *args: Any) -> torch.Tensor:
        return self.net.forward_logits(*args)


def _average_grad(world_size: int) -> Any:
    import torch.distributed as dist

    def hook(param: torch.Tensor) -> None:
        if param.grad is not None:
            dist.all_reduce(param.grad)
            param.grad.div_(world_size)

    return hook


def wrap_step(step: Any, world: World, device: torch.device, compile_mode: str | None = None) -> None:
    """Make ``step`` (ml.training.step.Step) train one model over the world: G through DDP, D's
    gradients averaged, D's parameters made equal to rank 0's. Nothing for a world of one."""
    if not world.distributed:
        return
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else 0] if device.type == "cuda" else None
    ddp = DistributedDataParallel(_Logits(step.g), device_ids=ids)  # broadcasts G from rank 0
    step.g_logits = torch.compile(ddp, mode=compile_mode, dynamic=False) if compile_mode else ddp
    if step.d is not None:  # the seed networks have no discriminator
        for tensor in [*step.d.parameters(), *step.d.buffers()]:
            dist.broadcast(tensor.data, src=0)
        for p in step.d.parameters():
            p.register_post_accumulate_grad_hook(_average_grad(world.size))
    step.ddp = ddp


def any_rank(flag: bool, world: World, device: torch.device) -> bool:
    """True on every rank when ``flag`` is on any (e.g. a Ctrl+C seen by one)."""
    if not world.distributed:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


def broadcast_text(text: str, world: World) -> str:
    """Rank 0's ``text`` on every rank (e.g. the run folder, named by the time)."""
    if not world.distributed:
        return text
    import torch.distributed as dist

    box = [text]
    dist.broadcast_object_list(box, src=0)
    return str(box[0])


def rescale_resume(ckpt: dict[str, Any], world: World, plan_batches: int) -> None:
    """A checkpoint of another world size, made to resume at this one: the steps done in the epoch
    and the global step counted in this size's steps (the epoch's share done kept, rounded down).
    ``plan_batches``: the batches of an epoch's whole plan."""
    old = int(ckpt.get("world_size", 1) or 1)
    if old == world.size:
        return
    steps_per_epoch = math.ceil(plan_batches / world.size)
    old_steps_per_epoch = math.ceil(plan_batches / old)
    done = int(ckpt["step"])
    if done >= old_steps_per_epoch:
        ckpt["epoch"], ckpt["step"], ckpt["sums"] = int(ckpt["epoch"]) + 1, 0, {}
    else:
        ckpt["step"] = min(steps_per_epoch, done * old // world.size)
    ckpt["global_step"] = int(ckpt["epoch"]) * steps_per_epoch + int(ckpt["step"])
    ckpt["world_size"] = world.size


__all__ = ["SINGLE", "World", "any_rank", "broadcast_text", "rescale_resume", "seed_step", "shard_plan",
           "wrap_step"]

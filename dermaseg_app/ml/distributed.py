"""torchrun's world for prediction and training: rank, size and local rank from the environment,
and the process group (gloo on the CPU, NCCL on GPUs).

torchrun (``python -m torch.distributed.run``, elastic) starts one process per rank and sets
``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and the rendezvous (``MASTER_ADDR``/``MASTER_PORT``);
a process started any other way is a world of one and never touches torch.distributed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the ranks: ``rank`` of ``size`` (``local_rank`` on its node)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def label(self) -> str:
        return f"rank {self.rank} of {self.size}"


SINGLE = World()


def world_from_env(environ: Mapping[str, str] | None = None) -> World:
    """The world torchrun describes in the environment; a world of one without it."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env or "RANK" not in env:
        return SINGLE
    try:
        size = int(env["WORLD_SIZE"])
        rank = int(env["RANK"])
        local = int(env.get("LOCAL_RANK", rank))
    except ValueError:
        return SINGLE
    if size < 1 or not 0 <= rank < size:
        return SINGLE
    return World(rank=rank, size=size, local_rank=local)


def shard(items: Sequence[T], world: World) -> list[T]:
    """This rank's share of ``items``: item ``i`` goes to rank ``i % size`` (deterministic)."""
    return [item for i, item in enumerate(items) if i % world.size == world.rank]


def rank_device(requested: str | None, world: World) -> str | None:
    """The device a rank uses: under torchrun a plain or absent CUDA request becomes the rank's
    own GPU (``cuda:LOCAL_RANK``); anything else as requested."""
    if not world.distributed:
        return requested
    name = (requested or "auto").strip().lower()
    if name in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():
            return f"cuda:{world.local_rank % max(1, torch.cuda.device_count())}"
    return requested


def init_process_group(world: World, device: Any = None, timeout_s: float = 1800.0) -> None:
    """Join the process group (once): NCCL when ``device`` is a CUDA device, else gloo."""
    if not world.distributed:
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    backend = "gloo"
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.set_device(torch.device(device))
        backend = "nccl"
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))


def barrier(world: World) -> None:
    if not world.distributed:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()


def shut_down(world: World) -> None:
    if not world.distributed:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()

"""A run's data and its batches: the packs (training, validation, replay, base-domain
validation), each epoch's plan, and the two ways a batch reaches the device behind one interface
(``Batches``): prepared on the CPU one batch ahead in a thread (``CpuBatches``: OpenCV
augmentation, pinned, copied) or indexed and augmented on the device (``DeviceBatches``,
``TrainConfig.device_data``: every source uploaded once, ml.augment_torch).

The order of every epoch and the augmentation of every batch come from generators seeded by
(seed, epoch[, step]), so a batch does not depend on how it was prepared or whether the run was
resumed in between.
"""

from __future__ import annotations

import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dermaseg_app.ml.data import BatchItem, Pack, cached_pack, make_batch, plan_epoch
from dermaseg_app.ml.distributed import SINGLE, World
from dermaseg_app.ml.training.config import TrainConfig, TrainError, holdout_indices
from dermaseg_app.ml.training.distributed import seed_step


def load_packs(paths: list[str], size: int, cfg: TrainConfig, full_masks: bool) -> Pack | None:
    if not paths:
        return None
    packs = [cached_pack(p, size, full_masks=full_masks, cache_dir=cfg.pack_dir, workers=cfg.workers)
             for p in paths]
    for p, src in zip(packs, paths, strict=True):
        if p.size != size:
            raise TrainError(f"{src}: pack is at {p.size} px but the run trains at {size} px")
    return packs[0] if len(packs) == 1 else Pack.concat(packs)


@dataclass
class RunData:
    """The packs of a run and the plan of its epochs."""

    cfg: TrainConfig
    train: Pack
    val: Pack | None
    replay: Pack | None
    base_val: Pack | None     # base-domain validation, scored at the pack size (it only ranks epochs)

    @classmethod
    def load(cls, cfg: TrainConfig) -> RunData:
        size = cfg.input_size
        train_pack = load_packs(cfg.data, size, cfg, full_masks=False)
        assert train_pack is not None
        val_pack = load_packs(cfg.val, size, cfg, full_masks=True)
        if val_pack is None and cfg.val_fraction > 0 and len(train_pack) >= 4:
            held = holdout_indices(len(train_pack), cfg.val_fraction, cfg.seed)
            val_pack = train_pack.subset(held)
            train_pack = train_pack.subset(sorted(set(range(len(train_pack))) - set(held)))
        replay_pack = load_packs(cfg.replay, size, cfg, full_masks=False)
        base_pack = load_packs(cfg.base_val, size, cfg, full_masks=False)
        return cls(cfg, train_pack, val_pack, replay_pack, base_pack)

    @property
    def sources(self) -> list[Pack]:
        return [self.train] + ([self.replay] if self.replay is not None else [])

    @property
    def n_replay(self) -> int:
        return len(self.replay) if self.replay is not None else 0

    def epoch_plan(self, epoch: int) -> list[list[BatchItem]]:
        """The batches of ``epoch`` (0-based): every training pair once, ``replay_share`` of each
        batch from the replay source, at most ``max_steps_per_epoch``."""
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, 1, epoch])
        share = cfg.replay_share if self.n_replay else 0.0
        batches = plan_epoch(len(self.train), cfg.batch_size, rng, self.n_replay, share)
        if cfg.max_steps_per_epoch:
            batches = batches[: cfg.max_steps_per_epoch]
        return batches


class Batches:
    """Where a step gets its batch: ``start(epoch, plan, first)`` at an epoch's start (its plan,
    the first step to run), then ``get(step)`` for each step in order, returning (x, y) on the
    device; ``close()`` at the end."""

    def __init__(self, cfg: TrainConfig, sources: list[Pack], device: torch.device) -> None:
        self.cfg, self.sources, self.device = cfg, sources, device
        self.epoch = 0
        self.plan: list[list[BatchItem]] = []
        self.world = SINGLE  # under torchrun the plan is this rank's share (ml.training.distributed)

    def start(self, epoch: int, plan: list[list[BatchItem]], first: int) -> None:
        self.epoch, self.plan = epoch, plan

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def _rng(self, step: int) -> np.random.Generator:
        return np.random.default_rng([self.cfg.seed, 2, self.epoch, seed_step(step, self.world)])


class CpuBatches(Batches):
    """ml.data.make_batch (OpenCV augmentation) one batch ahead in a thread, pinned on CUDA."""

    def __init__(self, cfg: TrainConfig, sources: list[Pack], device: torch.device) -> None:
        super().__init__(cfg, sources, device)
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.pending: Future | None = None

    def _prepare(self, epoch: int, step: int, items: list[BatchItem]) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.cfg.seed, 2, epoch, seed_step(step, self.world)])
        x, y = make_batch(items, self.sources, rng, self.cfg.augment)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        if self.device.type == "cuda":
            xt, yt = xt.pin_memory(), yt.pin_memory()
        return xt, yt

    def _submit(self, step: int) -> Future | None:
        if step >= len(self.plan):
            return None
        return self.pool.submit(self._prepare, self.epoch, step, self.plan[step])

    def start(self, epoch: int, plan: list[list[BatchItem]], first: int) -> None:
        super().start(epoch, plan, first)
        self.pending = self._submit(first)

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.pending is not None
        x, y = self.pending.result()
        self.pending = self._submit(step + 1)
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class DeviceBatches(Batches):
    """Every source uploaded once (uint8 images N x 3 x S x S, bool masks); a batch is indexed
    there and augmented by ml.augment_torch with the decisions the CPU path would draw from the
    same seed (the batches equal the CPU path's except where CLAHE ran)."""

    def __init__(self, cfg: TrainConfig, sources: list[Pack], device: torch.device) -> None:
        super().__init__(cfg, sources, device)
        self.check(device)
        from dermaseg_app.ml.augment_torch import augment_batch

        self.images = (torch.from_numpy(np.concatenate([s.images for s in sources])).to(device)
                       .permute(0, 3, 1, 2).contiguous())
        self.masks = torch.from_numpy(np.concatenate([s.masks for s in sources])).to(device)[:, None].contiguous()
        self.offsets = [0, len(sources[0])]
        # On CUDA, --compile also fuses the augmentation's ~300 small operations (compiled, it gives
        # the eager values bit for bit on the CPU; there it is slower, so it is only compiled for CUDA).
        self.augment: Any = (torch.compile(augment_batch, dynamic=False)
                             if cfg.compile and device.type == "cuda" else augment_batch)

    @staticmethod
    def check(device: torch.device) -> None:
        """Refuse a device the path cannot run on (before the run loads anything)."""
        if device.type == "mps":
            raise TrainError("--device-data runs on CUDA or the CPU, not MPS (its gamma and CLAHE tables use float64)")

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        from dermaseg_app.ml.augment_torch import augment_batch, draw_params, to_unit_float

        items, aug = self.plan[step], self.cfg.augment
        idx = torch.tensor([self.offsets[it.source] + it.index for it in items], dtype=torch.long)
        idx = idx.to(self.device, non_blocking=True)
        xb, yb = self.images.index_select(0, idx), self.masks.index_select(0, idx)
        if not aug.enabled:
            return to_unit_float(xb), yb.float()
        params = draw_params(len(items), self._rng(step), aug)
        try:
            return self.augment(xb, yb, params, aug)
        except Exception as exc:
            if self.augment is augment_batch:
                raise
            warnings.warn(f"compiled augmentation failed, using it uncompiled: {exc}", RuntimeWarning, stacklevel=2)
            self.augment = augment_batch
            return augment_batch(xb, yb, params, aug)


def make_batches(cfg: TrainConfig, data: RunData, device: torch.device, world: World = SINGLE) -> Batches:
    """The batch path of ``cfg``: on the device with ``device_data``, else prepared on the CPU."""
    batches = (DeviceBatches if cfg.device_data else CpuBatches)(cfg, data.sources, device)
    batches.world = world
    return batches

"""Run under torchrun by tests/test_distributed.py: a tiny SLSNet's G and D trained a few steps,
each rank on its own data; every rank saves its parameters to OUT/rank<R>.pt.

``python -m torch.distributed.run --nproc_per_node=2 tests/ddp_worker.py OUT [--no-ddp]``
(``--no-ddp``: the control, the step not wrapped: the ranks' weights then differ).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from dermaseg_app.ml.distributed import init_process_group, shut_down, world_from_env
from dermaseg_app.ml.training import TrainConfig
from dermaseg_app.ml.training.distributed import wrap_step
from dermaseg_app.ml.training.networks import build_networks
from dermaseg_app.ml.training.step import make_step

TINY = {"multiscale_channels": 4, "encoder_channels": [8, 12, 16], "stage1_dilations": [1],
        "stage2_dilations": [2], "bridge_channels": 4, "decoder_channels": [12, 4],
        "decoder1_dilations": [1], "decoder2_dilations": [1], "discriminator_channels": [8, 8, 8]}


def main() -> int:
    out = Path(sys.argv[1])
    world = world_from_env()
    torch.set_num_threads(1)
    init_process_group(world, torch.device("cpu"))
    cfg = TrainConfig(data=["unused"], model_config=dict(TINY), input_size=32, lr=3e-3, seed=3)
    torch.manual_seed(cfg.seed)
    g, d, _, _ = build_networks(cfg)
    step = make_step(cfg, g, d, "cpu")
    if "--no-ddp" not in sys.argv:
        wrap_step(step, world, torch.device("cpu"))
    data = torch.Generator().manual_seed(100 + world.rank)  # each rank its own batches
    for i in range(3):
        x = torch.rand(4, 3, 32, 32, generator=data)
        y = (torch.rand(4, 1, 32, 32, generator=data) > 0.5).float()
        step(x, y, adversarial=i > 0, global_step=i)
    # the parameters (the BatchNorm running statistics are each rank's own until DDP broadcasts
    # rank 0's at the next forward)
    torch.save({"g": {k: p.detach() for k, p in g.named_parameters()},
                "d": {k: p.detach() for k, p in d.named_parameters()}}, out / f"rank{world.rank}.pt")
    shut_down(world)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Model size and cost: parameter count, multiply-accumulates, a readable stage table."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from .blocks import CAM, PAM

__all__ = [
    "count_parameters",
    "count_macs",
    "MacCount",
    "mac_breakdown",
    "StageInfo",
    "stage_table",
    "describe",
]


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


@dataclass
class MacCount:
    """Multiply-accumulates of one forward pass, split by kind."""

    conv: int
    attention: int

    @property
    def total(self) -> int:
        return self.conv + self.attention


def _conv_macs(m: nn.Conv2d, out: torch.Tensor) -> int:
    kh, kw = m.kernel_size
    return out.numel() * (m.in_channels // m.groups) * kh * kw


def _deconv_macs(m: nn.ConvTranspose2d, inp: torch.Tensor) -> int:
    # every input element is multiplied into a kh x kw x (out / groups) patch
    kh, kw = m.kernel_size
    return inp.numel() * (m.out_channels // m.groups) * kh * kw


def _pam_macs(m: PAM, inp: torch.Tensor) -> int:
    b, c, h, w = inp.shape
    n = h * w
    inner = m.query_conv.out_channels
    return b * (n * n * inner + n * n * c)  # Q^T K and V attention^T


def _cam_macs(inp: torch.Tensor) -> int:
    b, c, h, w = inp.shape
    return b * 2 * c * c * h * w  # A A^T and attention A


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _example_input(model: nn.Module, size: int | tuple[int, int], batch: int = 1) -> torch.Tensor:
    h, w = (size, size) if isinstance(size, int) else size
    channels = 3
    cfg = getattr(model, "config", None)
    if cfg is not None:
        channels = int(getattr(cfg, "in_channels", 3))
    if hasattr(model, "in_channels") and isinstance(model.in_channels, int):
        channels = model.in_channels
    try:
        p = next(model.parameters())
        device, dtype = p.device, p.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    return torch.zeros(batch, channels, h, w, device=device, dtype=dtype)


def mac_breakdown(model: nn.Module, size: int | tuple[int, int] = 128) -> MacCount:
    """Convolution and attention MACs of one forward pass on a batch-1 ``size`` input.

    ``conv``: every convolution (grouped and depthwise ones at ``in / groups`` per output,
    dilated ones like plain ones), transposed convolution and linear layer; ``attention``: the
    matrix products of PAM and CAM. Pooling, interpolation, the element-wise products of the
    seed networks' gating attentions (ml.networks) and the activations are not MACs."""
    counts = {"conv": 0, "attention": 0}
    handles = []

    def conv_hook(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if isinstance(m, nn.ConvTranspose2d):
            counts["conv"] += _deconv_macs(m, inputs[0])
        elif isinstance(m, nn.Linear):
            counts["conv"] += out.numel() * m.in_features
        else:
            counts["conv"] += _conv_macs(m, out)  # type: ignore[arg-type]

    def pam_hook(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        counts["attention"] += _pam_macs(m, inputs[0])  # type: ignore[arg-type]

    def cam_hook(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        counts["attention"] += _cam_macs(inputs[0])

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, PAM):
            handles.append(m.register_forward_hook(pam_hook))
        elif isinstance(m, CAM):
            handles.append(m.register_forward_hook(cam_hook))
    try:
        with _eval_mode(model), torch.no_grad():
            model(_example_input(model, size))
    finally:
        for h in handles:
            h.remove()
    return MacCount(conv=counts["conv"], attention=counts["attention"])


def count_macs(
    model: nn.Module, size: int | tuple[int, int] = 128, include_attention: bool = False
) -> int:
    """Multiply-accumulates of one batch-1 forward pass at ``size``.

    Convolutions and transposed convolutions only by default (as the paper counts: about 0.894 G
    for SLSNet at 128x128); with ``include_attention`` also the matrix products of PAM and CAM.
    """
    macs = mac_breakdown(model, size)
    return macs.total if include_attention else macs.conv


@dataclass
class StageInfo:
    """One top-level stage of a model: its name, type, output shape and parameters."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int


def stage_table(model: nn.Module, size: int | tuple[int, int] = 128) -> list[StageInfo]:
    """Top-level children (the members of a top-level ModuleList or ModuleDict, which is never
    called itself) in execution order with their batch-1 output shapes at ``size``; a child
    that runs twice has two rows."""
    rows: list[StageInfo] = []
    handles = []
    stages: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        if isinstance(child, (nn.ModuleList, nn.ModuleDict)):  # not called itself: its members are
            stages.extend((f"{name}.{k}", m) for k, m in child.named_children())
        else:
            stages.append((name, child))
    for name, child in stages:

        def hook(
            m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor, name: str = name
        ) -> None:
            shape = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else ()
            rows.append(StageInfo(name, type(m).__name__, shape, count_parameters(m)))

        handles.append(child.register_forward_hook(hook))
    try:
        with _eval_mode(model), torch.no_grad():
            model(_example_input(model, size))
    finally:
        for h in handles:
            h.remove()
    return rows


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3f} {unit}"
    return str(int(n))


def describe(model: nn.Module, size: int | tuple[int, int] = 128) -> str:
    """A readable table of the stages (name, type, output shape, params) and the totals."""
    rows = stage_table(model, size)
    macs = mac_breakdown(model, size)
    header = ("stage", "type", "output (C x H x W)", "params")
    lines = [header] + [
        (r.name, r.kind, " x ".join(str(d) for d in r.output_shape), f"{r.params:,}") for r in rows
    ]
    widths = [max(len(row[i]) for row in lines) for i in range(4)]
    out = []
    for i, row in enumerate(lines):
        out.append(
            "  ".join(
                cell.rjust(widths[j]) if j == 3 else cell.ljust(widths[j])
                for j, cell in enumerate(row)
            ).rstrip()
        )
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    h, w = (size, size) if isinstance(size, int) else size
    out.append("")
    out.append(f"parameters: {count_parameters(model):,}")
    out.append(
        f"MACs at {h}x{w}: {_human(macs.conv)} (convolutions), "
        f"{_human(macs.total)} (with attention products)"
    )
    return "\n".join(out)

"""What this CPU is fast at, for choosing the training step's precision at run time.

Development and user machines differ (an Intel Xeon with AMX one day, an AMD EPYC with
AVX512-BF16 or only AVX2 the next), so nothing is fixed at install time: ``bf16_units()`` reads
the CPU's feature flags, and ``autocast_dtype("auto")`` gives bfloat16 where the CPU has native
bf16 arithmetic (AMX tiles or AVX512-BF16 dot products) and float32 elsewhere (on other CPUs
oneDNN emulates bf16, which is slower than float32).
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

import torch

__all__ = ["cpu_flags", "bf16_units", "autocast_dtype", "compiled_autocast", "describe", "PRECISIONS"]

PRECISIONS = ("auto", "fp32", "bf16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux: /proc/cpuinfo); empty where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def bf16_units() -> str | None:
    """``"AMX"``, ``"AVX512-BF16"`` or None: the CPU's native bfloat16 arithmetic."""
    flags = cpu_flags()
    if "amx_bf16" in flags and "amx_tile" in flags:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX512-BF16"
    if not flags and platform.machine().lower() in ("arm64", "aarch64"):
        return None
    return None


def autocast_dtype(precision: str = "auto") -> torch.dtype | None:
    """The CPU autocast dtype for ``precision``: ``"fp32"`` None (no autocast), ``"bf16"``
    bfloat16, ``"auto"`` bfloat16 where ``bf16_units()`` finds native units, else None."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} ({', '.join(PRECISIONS)})")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if bf16_units() else None


COMPILE_BF16_AMX = (
    "torch.compile with bf16 autocast gives non-finite gradients on this CPU's AMX units (seen with "
    "torch 2.13; docs/training-notes.md, \"torch.compile + bf16\")"
)


def compiled_autocast(precision: str, compile_requested: bool) -> tuple[torch.dtype | None, bool, str | None]:
    """The autocast dtype and whether to compile, for ``precision`` and a ``torch.compile``
    request, with a notice when the combination was changed.

    On an AMX CPU a compiled step under bf16 autocast produced nan gradients at the first backward
    (float32 compiled and bf16 eager were finite), so the two are not combined there: ``auto`` and
    ``bf16`` run bf16 eagerly (measured faster there than float32 compiled: 1.54 against 1.78 s of
    CPU per 128 px step, docs/training-notes.md); ``fp32`` compiles as asked."""
    dtype = autocast_dtype(precision)
    if not compile_requested or dtype is None or bf16_units() != "AMX":
        return dtype, compile_requested, None
    return dtype, False, f"{COMPILE_BF16_AMX}: --compile ignored, bf16 runs eagerly (--precision fp32 compiles)"


def describe() -> str:
    """One line for logs and model cards: the instruction set and the bf16 units."""
    units = bf16_units()
    return f"{torch.backends.cpu.get_cpu_capability()}" + (f", bf16 units: {units}" if units else ", no bf16 units")

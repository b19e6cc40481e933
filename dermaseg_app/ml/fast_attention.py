"""Position attention on the CPU with the query-key work at the query width (C/8), fused.

``scaled_dot_product_attention``'s fused CPU kernel needs one head size for q, k and v, so PAM
used to zero-pad its C/8-wide query and key to the value width C: 8 times the work on the q-k
half, and the flash kernel's backward on the CPU is slow besides. ``csrc/pam_attention.cpp`` does
softmax(Q K^T) V (scale 1, one head) a block of 8 query rows at a time with the block's scores in
a thread-local buffer: nothing N x N reaches memory, the q-k products run at width C/8, and the
backward recomputes the block's scores from the saved log-sum-exp as flash attention does.

The kernel is compiled on first use with the C++ compiler torch's extension builder finds
(``g++``), for the CPU's instruction set (``torch.backends.cpu.get_cpu_capability()``: AVX512,
AVX2 or the baseline), into the user's cache folder (``DERMASEG_KERNEL_CACHE`` names another);
about a minute once per machine and torch
version (the quick start's installer builds it: ``python -m dermaseg_app.ml.fast_attention``;
training builds it when missing). Inference never waits for a compiler: PAM uses the kernel when a
build is there (``ready()``). Where no compiler is found or the build fails, ``problem()`` says
why and PAM keeps the padded ``scaled_dot_product_attention`` path, which gives the same values.
Set ``DERMASEG_FAST_ATTENTION=0`` to turn it off. A frozen app (installer/dermaseg.spec) carries
builds made at packaging time for AVX512 and AVX2 in its ``kernels/`` folder and loads the one for
this CPU from there, so a clinic PC needs no compiler (``python -m dermaseg_app.ml.fast_attention
--isa AVX2 --out DIR`` makes one for another instruction set).

Arithmetic is float32 throughout (inputs in bfloat16, e.g. under autocast, are computed in
float32 and the result is cast back).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import torch

__all__ = ["build", "ready", "problem", "pam_attention", "enabled", "main"]

_SOURCE = Path(__file__).with_name("csrc") / "pam_attention.cpp"
_FLAGS = {
    "AVX512": ["-mavx2", "-mfma", "-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl"],
    "AVX2": ["-mavx2", "-mfma"],
}
_CFLAGS = ["-O3", "-fopenmp", "-fno-trapping-math", "-fno-math-errno"]
_lock = threading.Lock()
_state: dict[str, Any] = {}


def enabled() -> bool:
    """False when ``DERMASEG_FAST_ATTENTION=0`` (or ``off``/``no``/``false``) is set."""
    return os.environ.get("DERMASEG_FAST_ATTENTION", "1").strip().lower() not in ("0", "off", "no", "false")


def _spec(capability: str | None = None) -> tuple[str, Path, list[str]]:
    """(module name, build folder, compiler flags) for this CPU (or ``capability``: AVX512, AVX2,
    DEFAULT), source and torch version."""
    capability = capability or torch.backends.cpu.get_cpu_capability()
    flags = _FLAGS.get(capability.split("_")[0], [])
    key = hashlib.sha256((_SOURCE.read_text() + " ".join(_CFLAGS + flags) + torch.__version__).encode())
    name = f"dermaseg_pam_{capability.lower()}_{key.hexdigest()[:12]}"
    folder = os.environ.get("DERMASEG_KERNEL_CACHE")
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        folder = str(Path(base) / "dermaseg" / "kernels")
    return name, Path(folder) / name, flags


def _bundled_dirs() -> list[Path]:
    """Where a frozen app keeps the builds made when it was packaged."""
    frozen = getattr(sys, "_MEIPASS", None)
    return [Path(frozen) / "kernels"] if frozen else []


def _import_built(name: str, folder: Path) -> Any | None:
    """The module from a finished build in ``folder`` (no compiler run), else from a build the
    frozen app carries, or None."""
    import importlib.machinery
    import importlib.util

    candidates = [folder / f"{name}.so", *(base / name / f"{name}.so" for base in _bundled_dirs())]
    so = next((c for c in candidates if c.is_file()), None)
    if so is None:
        return None
    loader = importlib.machinery.ExtensionFileLoader(name, str(so))
    spec = importlib.util.spec_from_file_location(name, str(so), loader=loader)
    if spec is None:
        return None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _set(module: Any | None, why: str | None) -> Any | None:
    _state["module"], _state["problem"] = module, why
    return module


def build() -> Any | None:
    """The kernel, compiled now if no finished build is cached (about a minute, once per machine
    and torch version); None where it cannot be had (``problem()`` says why)."""
    with _lock:
        if _state.get("module") is not None or "built" in _state:
            return _state.get("module")
        _state["built"] = True
        if not enabled():
            return _set(None, "turned off by DERMASEG_FAST_ATTENTION")
        name, folder, flags = _spec()
        try:
            module = _import_built(name, folder)
            if module is None:
                from torch.utils import cpp_extension

                folder.mkdir(parents=True, exist_ok=True)
                module = cpp_extension.load(name=name, sources=[str(_SOURCE)], build_directory=str(folder),
                                            extra_cflags=_CFLAGS + flags, extra_ldflags=["-fopenmp"],
                                            verbose=False)
        except Exception as exc:  # noqa: BLE001 - any build failure means: use the SDPA path
            why = f"the fused attention kernel could not be built ({type(exc).__name__}: {exc})"
            warnings.warn(f"{why}; PAM uses scaled_dot_product_attention", RuntimeWarning, stacklevel=2)
            return _set(None, why)
        return _set(module, None)


def ready() -> bool:
    """Whether PAM can use the kernel now: built already (in this process or cached on disk),
    enabled, and not inside TorchScript tracing or an ONNX export (those see the portable SDPA
    path; ``torch.compile`` traces the kernel as an operator). Never starts a compiler: a window's
    first prediction is not held up by it."""
    if torch.jit.is_scripting() or torch.jit.is_tracing():
        return False
    if torch.onnx.is_in_onnx_export():
        return False
    module = _state.get("module")
    if module is not None:
        return True
    if "tried" in _state or "built" in _state:
        return False
    with _lock:
        if _state.get("module") is None and "tried" not in _state:
            _state["tried"] = True
            if enabled():
                name, folder, _ = _spec()
                try:
                    _state["module"] = _import_built(name, folder)
                except Exception as exc:  # noqa: BLE001 - a stale or foreign build: rebuild later
                    _state["problem"] = f"the cached kernel in {folder} could not be loaded ({exc})"
    return _state.get("module") is not None


def problem() -> str | None:
    """Why the kernel is not in use (None when it is, or when nobody has asked for it yet)."""
    return _state.get("problem")


def build_for(capability: str, out: Path) -> Path:
    """Compile the kernel for ``capability`` (AVX512, AVX2 or DEFAULT) into ``out/<name>/`` and
    return the shared library (packaging a frozen app for CPUs other than this one)."""
    from torch.utils import cpp_extension

    name, _, flags = _spec(capability)
    folder = Path(out) / name
    folder.mkdir(parents=True, exist_ok=True)
    cpp_extension.load(name=name, sources=[str(_SOURCE)], build_directory=str(folder),
                       extra_cflags=_CFLAGS + flags, extra_ldflags=["-fopenmp"], verbose=False)
    return folder / f"{name}.so"


def main(argv: list[str] | None = None) -> int:
    """``python -m dermaseg_app.ml.fast_attention``: build the kernel (the installer runs it);
    with ``--isa ISA --out DIR``: build it for that instruction set into DIR (packaging)."""
    parser = argparse.ArgumentParser(prog="python -m dermaseg_app.ml.fast_attention")
    parser.add_argument("--isa", action="append", choices=["AVX512", "AVX2", "DEFAULT"],
                        help="build for this instruction set (repeatable) into --out")
    parser.add_argument("--out", type=Path, help="with --isa: the folder to build into")
    args = parser.parse_args(argv)
    if args.isa:
        if args.out is None:
            parser.error("--isa needs --out")
        for isa in args.isa:
            print(f"dermaseg: fused attention kernel for {isa}: {build_for(isa, args.out)}")
        return 0
    module = build()
    if module is None:
        print(f"dermaseg: {problem()}; training and prediction use scaled_dot_product_attention instead")
        return 1
    print(f"dermaseg: fused attention kernel ready ({torch.backends.cpu.get_cpu_capability()}): {module.__file__}")
    return 0


# The kernel as torch operators: autograd knows their derivative, and torch.compile traces
# through them (no graph break) treating each as one opaque call. float32 tensors only; the
# Python wrapper ``pam_attention`` casts.

@torch.library.custom_op("dermaseg::pam_attention", mutates_args=())
def _pam_forward(q: torch.Tensor, kt: torch.Tensor, vt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    module = _state.get("module")
    if module is None:
        raise RuntimeError("dermaseg::pam_attention: the kernel is not built (fast_attention.build())")
    out, lse = module.forward(q.contiguous(), kt.contiguous(), vt.transpose(1, 2).contiguous())
    return out, lse


@_pam_forward.register_fake
def _(q: torch.Tensor, kt: torch.Tensor, vt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    b, n, _ = q.shape
    return q.new_empty(b, n, vt.shape[1]), q.new_empty(b, n)


@torch.library.custom_op("dermaseg::pam_attention_backward", mutates_args=())
def _pam_backward(q: torch.Tensor, kt: torch.Tensor, vt: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
                  grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    grad = grad.contiguous()
    delta = (grad * out).sum(-1)
    dq, dkt, dv = _state["module"].backward(q.contiguous(), kt.contiguous(), vt.transpose(1, 2).contiguous(),
                                            vt.contiguous(), lse, grad, delta)
    return dq.contiguous(), dkt.contiguous(), dv.transpose(1, 2).contiguous()


@_pam_backward.register_fake
def _(q: torch.Tensor, kt: torch.Tensor, vt: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
      grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (q.new_empty(q.shape), kt.new_empty(kt.shape), vt.new_empty(vt.shape))  # contiguous, as the kernel's


def _setup_context(ctx: Any, inputs: tuple[torch.Tensor, ...], output: tuple[torch.Tensor, torch.Tensor]) -> None:
    q, kt, vt = inputs
    out, lse = output
    ctx.save_for_backward(q, kt, vt, out, lse)
    ctx.mark_non_differentiable(lse)


def _backward(ctx: Any, grad_out: torch.Tensor, grad_lse: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    q, kt, vt, out, lse = ctx.saved_tensors
    return torch.ops.dermaseg.pam_attention_backward(q, kt, vt, out, lse, grad_out)


_pam_forward.register_autograd(_backward, setup_context=_setup_context)


def pam_attention(q: torch.Tensor, kt: torch.Tensor, vt: torch.Tensor) -> torch.Tensor:
    """softmax(q @ kt) @ vt^T, fused: q (B, N, d), kt (B, d, M), vt (B, C, M) -> (B, N, C).

    Needs ``ready()`` (or ``build()``); CPU tensors only. Computed in float32 and returned in
    ``vt``'s dtype (bfloat16 under autocast)."""
    out, _ = torch.ops.dermaseg.pam_attention(q.float(), kt.float(), vt.float())
    return out.to(vt.dtype)


if __name__ == "__main__":
    raise SystemExit(main())

"""Which torch device runs the network: CUDA when present, else the CPU.

An explicit choice is honoured when it can be; asking for a GPU that is not there falls back to
the CPU with a notice (a sentence the CLI prints and the GUI shows), never an error.
"""

from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


class DeviceError(ValueError):
    """A device name that is not one of DEVICE_CHOICES."""


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def choose_device(requested: str | None = None) -> tuple[torch.device, str | None]:
    """Return (device, notice). ``notice`` is None unless the request could not be honoured.

    ``requested``: None or "auto" (CUDA when present, else CPU), "cpu", "cuda", "cuda:N", "mps".
    Raises DeviceError for a name that is none of these.
    """
    name = (requested or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", 0), None
        return torch.device("cpu"), None
    if name == "cpu":
        return torch.device("cpu"), None
    if name == "cuda" or name.startswith("cuda:"):
        index = 0
        if name.startswith("cuda:"):
            try:
                index = int(name.split(":", 1)[1])
            except ValueError:
                raise DeviceError(f"unknown device {requested!r}: expected cpu, cuda or cuda:N") from None
            if index < 0:
                raise DeviceError(f"unknown device {requested!r}: the GPU index must be 0 or more")
        if not torch.cuda.is_available():
            return torch.device("cpu"), f"CUDA was requested ({name}) but is not available; using the CPU."
        count = torch.cuda.device_count()
        if index >= count:
            return (
                torch.device("cuda", 0),
                f"GPU {index} was requested but only {count} GPU(s) are present; using cuda:0.",
            )
        return torch.device("cuda", index), None
    if name == "mps":
        if _mps_available():
            return torch.device("mps"), None
        return torch.device("cpu"), "Apple MPS was requested but is not available; using the CPU."
    raise DeviceError(f"unknown device {requested!r}: expected cpu, cuda, cuda:N or mps")


def device_description(device: torch.device | str) -> str:
    """A short human description: the GPU's name, or "CPU (N threads)"."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else 0
        try:
            return f"GPU {index}: {torch.cuda.get_device_name(index)}"
        except Exception:  # noqa: BLE001 - a description must never fail
            return f"GPU {index}"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return f"CPU ({torch.get_num_threads()} threads)"

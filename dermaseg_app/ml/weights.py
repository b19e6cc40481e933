"""Model files: weights with their configuration and model card.

Format: one ``.safetensors`` file (plain tensors; loading it cannot run code) whose metadata holds
the architecture name, its configuration and a ``ModelInfo`` record as JSON. A model card
``<stem>.md`` may sit beside it; its first paragraph becomes ``ModelInfo.card_summary``.

Every problem with a model file (missing, truncated, corrupt, written for another architecture,
tensors of the wrong shape, missing or extra tensors) raises ``WeightsError`` whose message names
the file and the reason.

A model file is not trusted before it is checked (issue 11): the header's JSON is bounded in size
and nesting, every ModelInfo field has its type checked, the input size is bounded, and the
network the configuration describes is first built on PyTorch's ``meta`` device (no memory) so
its size and its tensors' names and shapes are compared with the file's header before anything
real is allocated or read.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dermaseg_app.core.errors import DermaSegError

FORMAT_NAME = "dermaseg.model"
FORMAT_VERSION = 1
CARD_SUFFIX = ".md"
MAX_INPUT_SIZE = 512           # the network runs at this square size (the paper: 256; shipped: 128)
MAX_METADATA_CHARS = 1_000_000  # per header entry (the shipped model's info is ~2 kB)
MAX_JSON_DEPTH = 16
MAX_PARAMETERS = 200_000_000    # the shipped network has 2.4 M


class WeightsError(DermaSegError):
    """A model file that cannot be used; ``str()`` names the file and the reason."""


@dataclass
class ModelInfo:
    """What a model file says about itself."""

    name: str
    version: str
    arch: str
    config: dict[str, Any] = field(default_factory=dict)
    input_size: int = 128
    threshold: float = 0.5
    trained_on: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    tta: bool = False  # the predictor averages the four flips (test-time augmentation) by default
    card_summary: str = ""
    path: Path | None = None

    def label(self) -> str:
        """"name version" for titles and reports."""
        return f"{self.name} {self.version}".strip()

    def to_json_dict(self) -> dict[str, Any]:
        """The fields stored in the file (not the path or the card, which live outside it)."""
        data = dataclasses.asdict(self)
        data.pop("path")
        data.pop("card_summary")
        return data


# ---------------------------------------------------------------- model card


def card_path(weights_path: str | Path) -> Path:
    """The model card beside a weights file: ``<stem>.md``."""
    p = Path(weights_path)
    return p.with_suffix(CARD_SUFFIX)


def read_card_summary(weights_path: str | Path, max_chars: int = 800) -> str:
    """The card's first paragraph (headings skipped), joined into one line; "" when no card."""
    path = card_path(weights_path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    paragraphs: list[str] = []
    current: list[str] = []
    in_front_matter = False
    for index, raw in enumerate(text.splitlines()):
        line = raw.strip()
        if index == 0 and line == "---":
            in_front_matter = True
            continue
        if in_front_matter:
            if line == "---":
                in_front_matter = False
            continue
        if not line or line.startswith("#"):
            if current:
                paragraphs.append(" ".join(current))
                current = []
            continue
        current.append(line)
    if current:
        paragraphs.append(" ".join(current))
    summary = ""
    for paragraph in paragraphs:  # the first paragraph, plus the next while it stays short
        summary = f"{summary} {paragraph}".strip() if summary else paragraph
        if len(summary) >= 200:
            break
    if len(summary) > max_chars:
        summary = summary[: max_chars - 1].rstrip() + "\u2026"
    return summary


# ---------------------------------------------------------------- saving


def _tensors_for_file(module: nn.Module) -> dict[str, torch.Tensor]:
    # Clones: safetensors refuses tensors that share memory, and the file must not depend on views.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    from dermaseg_app.core.atomic import atomic_write_bytes

    atomic_write_bytes(path, data)


def save_model(path: str | Path, generator: nn.Module, info: ModelInfo, card: str | None = None) -> Path:
    """Write ``generator``'s weights and ``info`` to ``path`` (.safetensors), atomically.

    ``card``: optional Markdown written (atomically) to ``<stem>.md`` beside the weights.
    Returns the path written.
    """
    from safetensors.torch import save as save_bytes

    path = Path(path)
    if path.suffix != ".safetensors":
        raise WeightsError(path, "model files must end in .safetensors")
    _check_info(path, info)
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "arch": info.arch,
        "config": json.dumps(info.config, sort_keys=True),
        "info": json.dumps(info.to_json_dict(), sort_keys=True),
    }
    data = save_bytes(_tensors_for_file(generator), metadata=metadata)
    _atomic_write_bytes(path, data)
    if card is not None:
        from dermaseg_app.core.atomic import atomic_write_text

        atomic_write_text(card_path(path), card)
    return path


# ---------------------------------------------------------------- loading


def _check_info(path: Path, info: ModelInfo) -> None:
    if not isinstance(info.input_size, int) or isinstance(info.input_size, bool) or info.input_size < 8:
        raise WeightsError(path, f"input size {info.input_size!r} is not a whole number of at least 8")
    if info.input_size % 8:
        raise WeightsError(path, f"input size {info.input_size} is not divisible by 8")
    if info.input_size > MAX_INPUT_SIZE:
        raise WeightsError(path, f"input size {info.input_size} is larger than DermaSeg runs a network "
                                 f"at ({MAX_INPUT_SIZE})")
    t = info.threshold
    if not isinstance(t, (int, float)) or not math.isfinite(float(t)) or not 0.0 < float(t) < 1.0:
        raise WeightsError(path, f"threshold {t!r} is not between 0 and 1")
    if not info.arch:
        raise WeightsError(path, "no architecture name")


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value, stopping once past ``limit``."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def _json_entry(path: Path, metadata: dict[str, str], key: str, default: str | None = None) -> Any:
    text = metadata.get(key, default)
    if text is None:
        raise WeightsError(path, f"damaged model information in the header (no {key!r})")
    if len(text) > MAX_METADATA_CHARS:
        raise WeightsError(path, f"the header's {key!r} is {len(text):,} characters, more than a model "
                                 f"file holds ({MAX_METADATA_CHARS:,})")
    try:
        value = json.loads(text)
    except RecursionError:
        raise WeightsError(path, f"the header's {key!r} is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise WeightsError(path, f"damaged model information in the header ({exc})") from None
    if _depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise WeightsError(path, f"the header's {key!r} is nested more than {MAX_JSON_DEPTH} levels deep")
    return value


def _check_types(path: Path, info: ModelInfo) -> None:
    for name in ("name", "version", "arch"):
        value = getattr(info, name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            setattr(info, name, str(value))  # e.g. "version": 2
    for name in ("name", "version", "arch", "trained_on"):
        if not isinstance(getattr(info, name), str):
            raise WeightsError(path, f"the model information's {name!r} is not text")
    if not isinstance(info.config, dict):
        raise WeightsError(path, "the model information's 'config' is not an object")
    if not isinstance(info.metrics, dict):
        raise WeightsError(path, f"the model information's 'metrics' is {type(info.metrics).__name__}, "
                                 "not an object of numbers")
    for key, value in info.metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise WeightsError(path, f"the stored metric {str(key)[:60]!r} is not a finite number")
    if isinstance(info.threshold, bool) or not isinstance(info.threshold, (int, float)):
        raise WeightsError(path, f"threshold {info.threshold!r} is not a number")
    if not isinstance(info.tta, bool):
        raise WeightsError(path, f"tta {info.tta!r} is not true or false")


def _info_from_metadata(path: Path, metadata: dict[str, str] | None) -> ModelInfo:
    if not metadata or metadata.get("format") != FORMAT_NAME:
        raise WeightsError(path, "not a DermaSeg model file (no DermaSeg metadata in the safetensors header)")
    try:
        version = int(metadata.get("format_version", "0"))
    except ValueError:
        version = 0
    if version < 1 or version > FORMAT_VERSION:
        raise WeightsError(
            path, f"model file format version {metadata.get('format_version')!r} is not supported by this DermaSeg"
        )
    stored = _json_entry(path, metadata, "info")
    config = _json_entry(path, metadata, "config", "{}")
    if not isinstance(stored, dict) or not isinstance(config, dict):
        raise WeightsError(path, "damaged model information in the header (not a JSON object)")
    known = {f.name for f in dataclasses.fields(ModelInfo)} - {"path", "card_summary"}
    kwargs = {k: v for k, v in stored.items() if k in known}
    kwargs["config"] = config
    kwargs.setdefault("arch", metadata.get("arch", ""))
    for required in ("name", "version", "arch"):
        if required not in kwargs:
            raise WeightsError(path, f"the model information has no {required!r}")
    try:
        info = ModelInfo(**kwargs)
    except TypeError as exc:
        raise WeightsError(path, f"damaged model information ({exc})") from None
    _check_types(path, info)
    if isinstance(info.threshold, int) and not isinstance(info.threshold, bool):
        info.threshold = float(info.threshold)
    _check_info(path, info)
    config_size = info.config.get("input_size")
    if config_size is not None and config_size != info.input_size:
        raise WeightsError(
            path, f"input size {info.input_size} disagrees with the configuration's input_size {config_size}"
        )
    info.path = path
    info.card_summary = read_card_summary(path)
    return info


def read_model_info(path: str | Path) -> ModelInfo:
    """The ModelInfo of a model file, reading only its header (cheap)."""
    from dermaseg_app.ml.header import ModelHeaderError, read_metadata

    path = Path(path)
    try:
        metadata = read_metadata(path)  # the one header reader (torch-free, shared with the window)
    except ModelHeaderError as exc:
        raise WeightsError(exc.path, exc.reason) from None
    return _info_from_metadata(path, metadata)


def _read_file(path: Path, tensors: bool,
               check: Any = None) -> tuple[dict[str, str] | None, dict[str, torch.Tensor]]:
    """(metadata, tensors) of a safetensors file. ``check(metadata, shapes)`` runs on the header
    (tensor name -> (dtype, shape)) before any tensor is read, and may raise WeightsError."""
    from safetensors import safe_open

    if not path.exists():
        raise WeightsError(path, "no such model file")
    if path.is_dir():
        raise WeightsError(path, "is a folder, not a model file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise WeightsError(path, f"cannot be read ({exc.strerror or exc})") from None
    if size < 8:
        raise WeightsError(path, f"file is empty or truncated ({size} bytes)")
    if not path.is_file():
        raise WeightsError(path, "is not a regular file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata()
            if check is not None:
                shapes = {}
                for k in handle.keys():
                    piece = handle.get_slice(k)
                    shapes[k] = (str(piece.get_dtype()), tuple(int(d) for d in piece.get_shape()))
                check(metadata, shapes)
            loaded = {k: handle.get_tensor(k) for k in handle.keys()} if tensors else {}
    except WeightsError:
        raise
    except PermissionError as exc:
        raise WeightsError(path, f"cannot be read ({exc.strerror or exc})") from None
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise WeightsError(path, f"not a readable safetensors file, truncated or corrupt ({exc})") from None
    return metadata, loaded


def _load_state(path: Path, module: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing tensor(s), e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensor(s), e.g. {', '.join(unexpected[:3])}")
        raise WeightsError(path, "weights do not fit the architecture: " + "; ".join(parts))
    for key, want in expected.items():
        got = tensors[key]
        if tuple(got.shape) != tuple(want.shape):
            raise WeightsError(
                path,
                f"tensor {key} has shape {tuple(got.shape)}, the architecture needs {tuple(want.shape)}",
            )
        if got.is_floating_point() != want.is_floating_point():
            raise WeightsError(path, f"tensor {key} has type {got.dtype}, the architecture needs {want.dtype}")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise WeightsError(path, f"tensor {key} holds NaN or infinite values")
    module.load_state_dict(tensors, strict=True)


def _build(path: Path, info: ModelInfo, meta: bool) -> nn.Module:
    from dermaseg_app.ml import registry

    if info.arch not in registry.ARCHITECTURES:
        known = ", ".join(sorted(registry.ARCHITECTURES)) or "none"
        raise WeightsError(path, f"unknown architecture {info.arch!r} (this DermaSeg knows: {known})")
    try:
        if meta:
            with torch.device("meta"):
                return registry.build_generator(info.arch, dict(info.config))
        return registry.build_generator(info.arch, dict(info.config))
    except WeightsError:
        raise
    except Exception as exc:  # noqa: BLE001 - a bad config must name the file
        raise WeightsError(path, f"the stored configuration does not build a {info.arch} network ({exc})") from None


def shape_of_network(path: Path, info: ModelInfo) -> nn.Module:
    """The network a ModelInfo describes, built on the ``meta`` device: its structure, names,
    shapes and size without any memory (WeightsError for a bad or oversized configuration)."""
    network = _build(path, info, meta=True)
    count = sum(t.numel() for t in network.state_dict().values())
    if count > MAX_PARAMETERS:
        raise WeightsError(path, f"the configuration describes a network of {count:,} parameters "
                                 f"({count * 4 / 1024**3:.1f} GiB), more than DermaSeg loads "
                                 f"({MAX_PARAMETERS:,})")
    return network


def build_from_info(path: Path, info: ModelInfo) -> nn.Module:
    """The untrained network a ModelInfo describes (WeightsError for an unknown architecture or a
    configuration too large to build)."""
    shape_of_network(path, info)
    return _build(path, info, meta=False)


def _check_header(path: Path, metadata: dict[str, str] | None,
                  shapes: dict[str, tuple[str, tuple[int, ...]]]) -> ModelInfo:
    """The file's ModelInfo, after comparing its tensors' names and shapes with the network its
    configuration describes (built on the meta device)."""
    info = _info_from_metadata(path, metadata)
    expected = shape_of_network(path, info).state_dict()
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing tensor(s), e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensor(s), e.g. {', '.join(unexpected[:3])}")
        raise WeightsError(path, "weights do not fit the architecture: " + "; ".join(parts))
    for key, want in expected.items():
        got = shapes[key][1]
        if tuple(got) != tuple(want.shape):
            raise WeightsError(path, f"tensor {key} has shape {tuple(got)}, the architecture needs "
                                     f"{tuple(want.shape)}")
    return info


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, ModelInfo]:
    """Read a model file: (network in eval mode on ``device``, its ModelInfo). The header is
    checked against the architecture before any tensor is read or the network is built."""
    path = Path(path)
    checked: list[ModelInfo] = []
    metadata, tensors = _read_file(path, tensors=True,
                                   check=lambda meta, shapes: checked.append(_check_header(path, meta, shapes)))
    info = checked[0] if checked else _info_from_metadata(path, metadata)
    network = build_from_info(path, info)
    _load_state(path, network, tensors)
    network.eval()
    return network.to(device), info

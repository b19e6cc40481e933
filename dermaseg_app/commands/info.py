"""``dermaseg info [--model FILE]``: the network's architecture, size and cost, and the weights.

Prints the stage table, the parameter count and the multiply-accumulates at the model's input
size (convolutions only, as the SLSNet paper counts, and with the attention products), then the
weights file's name, version, training data, stored metrics and model-card summary. The file is
loaded as the predictor loads it (every tensor checked: shape, type, finite values), and a file
that fails exits 1 with the reason. Without a
weights file it still describes the default architecture and says where no file was found;
``--arch NAME`` (slsnet, mobile_deeplab, slsdeep, dual_attention_unet: ml.registry) describes
that architecture's default configuration without a weights file.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import Any

from dermaseg_app.commands.predict import fail


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "info",
        help="show the network architecture, its size and the model weights",
        description="Describe the network (stages, parameters, MACs) and the model weights file; "
                    "--arch describes a registered architecture without weights.",
    )
    parser.add_argument("--model", metavar="FILE", help="model weights (.safetensors; default: the bundled model)")
    parser.add_argument("--arch", metavar="NAME",
                        help="describe this architecture's default configuration, without weights "
                             "(slsnet, mobile_deeplab, slsdeep, dual_attention_unet)")
    parser.add_argument("--size", metavar="PX", type=int,
                        help="with --arch: the input size to count the MACs at (default: the architecture's)")
    parser.add_argument("--device", metavar="DEVICE", help="also report the device that would run the model")
    parser.set_defaults(func=run)


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3f} {unit}"
    return str(int(n))


def _describe_network(network: Any, size: int) -> str:
    from dermaseg_app.ml.complexity import count_macs, count_parameters, describe

    try:
        return describe(network, size)
    except Exception as exc:  # noqa: BLE001 - fall back to the plain figures
        conv = count_macs(network, size)
        total = count_macs(network, size, include_attention=True)
        return (f"(stage table unavailable: {exc})\nparameters: {count_parameters(network):,}\n"
                f"MACs at {size}x{size}: {_human(conv)} (convolutions), {_human(total)} (with attention products)")


def _run_arch(args: argparse.Namespace) -> int:
    from dermaseg_app.ml.registry import ARCHITECTURES, build_generator, default_config, has_discriminator, title

    if args.model:
        fail("--arch describes an architecture without weights; give --arch or --model, not both")
        return 2
    if args.arch not in ARCHITECTURES:
        fail(f"unknown architecture {args.arch!r}; known: {', '.join(sorted(ARCHITECTURES))}")
        return 2
    config = default_config(args.arch)
    size = int(args.size or config.get("input_size", 128))
    if size < 8 or size % 8 or size > 2048:
        fail(f"--size must be a multiple of 8 between 8 and 2048, got {size}")
        return 2
    network = build_generator(args.arch, config)
    print(f"architecture: {args.arch}, {title(args.arch)} (default configuration, input "
          f"{int(config.get('input_size', 128))}px; counted at {size}x{size})")
    print("training: " + ("conditional GAN (has a discriminator)" if has_discriminator(args.arch)
                          else "supervised, no discriminator"))
    print()
    print(_describe_network(network, size))
    return 0


def run(args: argparse.Namespace) -> int:
    from dermaseg_app import paths
    from dermaseg_app.ml.registry import build_generator, default_config, title
    from dermaseg_app.ml.weights import WeightsError, load_model

    if getattr(args, "arch", None):
        return _run_arch(args)

    path = Path(args.model) if args.model else paths.default_model_path()
    info = None
    problem: str | None = None
    status = 0
    if not path.exists():
        problem = f"no weights file found at {path}" + (
            "" if args.model else " (no trained model is bundled with this installation yet)"
        )
        if args.model:
            status = 1
    else:
        try:
            # Everything info reports is verified: the header against the architecture (before
            # anything is allocated), then every tensor (shape, type, finite values) as the
            # predictor loads it. The input size is bounded (ml.weights.MAX_INPUT_SIZE), so the
            # stage table's forward pass stays small.
            network, info = load_model(path, "cpu")
        except WeightsError as exc:
            problem = f"cannot use the weights file: {exc}"
            info = None
            status = 1
    if info is None:
        network = build_generator("slsnet", default_config("slsnet"))
    if info is None:
        config = default_config("slsnet")
        size = int(config.get("input_size", 128))
        print(f"architecture: slsnet (default configuration, input {size}x{size})")
    else:
        size = int(info.input_size)
        print(f"architecture: {info.arch}, {title(info.arch)} (input {size}x{size})")
    print()
    print(_describe_network(network, size))
    print()
    if info is None:
        print(f"weights: {problem}")
    else:
        print(f"weights: {info.path}")
        print(f"  name: {info.name}")
        print(f"  version: {info.version}")
        if info.trained_on:
            print(f"  trained on: {info.trained_on}")
        print(f"  threshold: {info.threshold:g}")
        print(f"  test-time flips: {'on (the mean of 4 flips)' if info.tta else 'off'} by default")
        if info.metrics:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(info.metrics.items()))
            print(f"  metrics: {shown}")
        if info.card_summary:
            print("  model card:")
            print(textwrap.fill(info.card_summary, width=96, initial_indent="    ", subsequent_indent="    "))
        else:
            print("  model card: none beside the weights")
    from dermaseg_app.ml.device import DeviceError, choose_device, device_description

    try:
        device, notice = choose_device(args.device)
    except DeviceError as exc:
        fail(str(exc))
        return 2
    print(f"device: {device_description(device)}" + (f" ({notice})" if notice else ""))
    if status:
        fail(problem or "the weights file cannot be used")
    return status

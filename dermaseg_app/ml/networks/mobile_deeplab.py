"""The reduced Mobile DeepLab of seed 002: DeepLabv3+ on a MobileNetV2 encoder of width 0.35.

The paper (Table 2, "MobileNetV2, alpha=0.35, 1 - DI, no pre-training, 0.4 M") gives the encoder,
its width multiplier, the loss and the size; it does not list the head. Its three DeepLab sizes
(Xception OS 16: 41 M, MobileNetV2 alpha 1.0: 2 M, alpha 0.35: 0.4 M) are those of the common
Keras DeepLabv3+ build, in which the MobileNetV2 variant keeps DeepLab's own MobileNetV2 head: a
two-branch ASPP (image pooling and a 1x1 convolution, 256 channels each), a 1x1 projection to
256, dropout 0.1, a 1x1 classifier and a bilinear upsampling to the input size; no atrous
branches and no decoder. That is the default here (0.42 M parameters); ``aspp_rates`` adds atrous
separable branches and ``decoder`` the DeepLabv3+ decoder (low-level features at 1/4 projected to
48 channels, two 3x3 separable convolutions of 256), which together make the full v3+ head.

Channel widths follow MobileNetV2's rounding (``make_divisible(int(c * alpha), 8)``, the stem
``make_divisible(32 * alpha, 8)``); the last 1x1 convolution to 1280 channels and the classifier
of the ImageNet network are not part of the encoder. The paper standardises the input: here
per-image standardisation (TensorFlow's ``per_image_standardization``) inside the network, so the
network takes RGB in [0, 1] like every DermaSeg generator. The paper's output is one sigmoid map.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import ConfigDict, check_dropout, check_input, check_size

__all__ = ["MobileDeepLabConfig", "MobileDeepLab", "InvertedResidual", "make_divisible"]

# MobileNetV2 (Sandler et al. 2018, Table 2): expansion t, channels c, repeats n, stride s.
MOBILENET_V2_BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """MobileNet's channel rounding: to the nearest multiple of ``divisor``, never 10% below."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@dataclass
class MobileDeepLabConfig(ConfigDict):
    """Every width and rate of the reduced Mobile DeepLab; defaults: the paper's selected model."""

    _NAME = "Mobile DeepLab"

    in_channels: int = 3
    input_size: int = 512  # the paper resizes to 512 x 512
    alpha: float = 0.35
    output_stride: int = 16  # 8 or 16; the paper found 16 better (Xception); DeepLab's MobileNetV2 default
    aspp_channels: int = 256
    aspp_rates: tuple[int, ...] = ()  # atrous separable ASPP branches (full v3+: 6, 12, 18 at OS 16)
    decoder: bool = False  # the DeepLabv3+ decoder on the 1/4 features
    decoder_low_channels: int = 48
    decoder_channels: int = 256
    dropout: float = 0.1
    standardize: bool = True  # per-image standardisation of the input, inside the network

    def __post_init__(self) -> None:
        self._tuples()
        check_size(self.input_size)
        if self.output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {self.output_stride}")
        if not 0.0 < float(self.alpha) <= 4.0:
            raise ValueError(f"alpha must be in (0, 4], got {self.alpha}")
        if any(r < 1 for r in self.aspp_rates):
            raise ValueError(f"aspp_rates must be positive, got {self.aspp_rates}")
        check_dropout("dropout", self.dropout)


def _conv_bn(cin: int, cout: int, k: int = 1, stride: int = 1, dilation: int = 1, groups: int = 1,
             act: type[nn.Module] | None = nn.ReLU6) -> nn.Sequential:
    pad = dilation * (k - 1) // 2
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride=stride, padding=pad, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=1e-3),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class PooledBatchNorm(nn.BatchNorm2d):
    """BatchNorm of the image-pooling branch: its input is 1x1, so a training batch of one image
    has one value per channel, where PyTorch's BatchNorm raises (TensorFlow's gives beta); such a
    batch is normalised with the running statistics, which it leaves unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expansion (unless t = 1), 3x3 depthwise (stride, dilation), linear
    1x1 projection; the input added when stride is 1 and the widths agree."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int, dilation: int = 1) -> None:
        super().__init__()
        hidden = cin * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(_conv_bn(cin, hidden, 1))
        layers.append(_conv_bn(hidden, hidden, 3, stride=stride, dilation=dilation, groups=hidden))
        layers.append(_conv_bn(hidden, cout, 1, act=None))
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.residual else out


class _SeparableConvBN(nn.Sequential):
    """Depthwise 3x3 (dilated) + BN + ReLU, pointwise 1x1 + BN + ReLU (DeepLabv3+'s)."""

    def __init__(self, cin: int, cout: int, dilation: int = 1) -> None:
        super().__init__(
            _conv_bn(cin, cin, 3, dilation=dilation, groups=cin, act=nn.ReLU),
            _conv_bn(cin, cout, 1, act=nn.ReLU),
        )


def per_image_standardization(x: torch.Tensor) -> torch.Tensor:
    """(x - mean) / max(std, 1 / sqrt(N)) per image, as TensorFlow's ``per_image_standardization``."""
    n = x[0].numel()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.std(dim=(1, 2, 3), keepdim=True, unbiased=False)
    return (x - mean) / std.clamp_min(1.0 / n**0.5)


class MobileDeepLab(nn.Module):
    """DeepLab on MobileNetV2 (width ``alpha``); ``forward`` gives the lesion probability map."""

    def __init__(self, config: MobileDeepLabConfig | None = None) -> None:
        super().__init__()
        cfg = config if config is not None else MobileDeepLabConfig()
        self.config = cfg
        a = float(cfg.alpha)
        stem = make_divisible(32 * a, 8)
        self.stem = _conv_bn(cfg.in_channels, stem, 3, stride=2)
        blocks: list[nn.Module] = []
        cin, current_stride, dilation = stem, 2, 1
        self.low_level_index = -1  # the last block at 1/4 (the v3+ decoder's low-level features)
        for t, c, n, s in MOBILENET_V2_BLOCKS:
            cout = make_divisible(int(c * a), 8)
            for i in range(n):
                stride = s if i == 0 else 1
                previous_dilation = dilation
                if stride > 1 and current_stride >= cfg.output_stride:
                    dilation *= stride
                    stride = 1
                current_stride *= stride
                blocks.append(InvertedResidual(cin, cout, stride, t, previous_dilation if i == 0 else dilation))
                cin = cout
                if current_stride == 4:
                    self.low_level_index = len(blocks) - 1
        # split where the v3+ decoder takes its low-level features (the last block at 1/4)
        self.encoder_low = nn.Sequential(*blocks[: self.low_level_index + 1])
        self.encoder_high = nn.Sequential(*blocks[self.low_level_index + 1:])
        self.low_level_channels = blocks[self.low_level_index].conv[-1][0].out_channels
        c = cfg.aspp_channels
        self.image_pooling = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, c, 1, bias=False), PooledBatchNorm(c, eps=1e-3), nn.ReLU())
        self.aspp0 = _conv_bn(cin, c, 1, act=nn.ReLU)
        self.aspp_atrous = nn.ModuleList(_SeparableConvBN(cin, c, r) for r in cfg.aspp_rates)
        self.project = nn.Sequential(
            _conv_bn(c * (2 + len(cfg.aspp_rates)), c, 1, act=nn.ReLU),
            nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity(),
        )
        head = c
        if cfg.decoder:
            self.low_project = _conv_bn(self.low_level_channels, cfg.decoder_low_channels, 1, act=nn.ReLU)
            self.decoder_convs = nn.Sequential(
                _SeparableConvBN(c + cfg.decoder_low_channels, cfg.decoder_channels),
                _SeparableConvBN(cfg.decoder_channels, cfg.decoder_channels),
            )
            head = cfg.decoder_channels
        self.classifier = nn.Conv2d(head, 1, 1)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid scores (B, 1, H, W) at the input size."""
        check_input(x, "MobileDeepLab", self.config.in_channels)
        size = x.shape[-2:]
        if self.config.standardize:
            x = per_image_standardization(x)
        low = self.encoder_low(self.stem(x))
        x = self.encoder_high(low)
        pooled = self.image_pooling(x).expand(-1, -1, x.shape[-2], x.shape[-1])
        branches = [pooled, self.aspp0(x)] + [b(x) for b in self.aspp_atrous]
        x = self.project(torch.cat(branches, dim=1))
        if self.config.decoder:
            x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
            x = self.decoder_convs(torch.cat([x, self.low_project(low)], dim=1))
        x = self.classifier(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.forward_logits(x))

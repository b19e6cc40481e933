"""SLSDeep of seed 003 (Sarker et al., MICCAI 2018): a dilated ResNet-50 encoder at 1/8 and a
pyramid-pooling decoder.

What the paper gives: a 3x3 convolution (BN, ReLU) and a 3x3 max-pool of stride 2 to 64 maps; four
dilated residual layers of 256, 512, 1024 and 2048 maps (ResNet-50's bottleneck layers, stride 1,
2, 1, 1: the encoder ends at 1/8, 48 x 48 for the paper's 384 x 384 input); a pyramid pooling
module at 1x1, 2x2, 3x3 and 6x6 with a 1x1 convolution to 1024 maps per level, upsampled
bilinearly and concatenated with the encoder output (the one skip connection: 4 x 1024 + 2048 =
6144 maps); two 3x3 convolutions with BN and ReLU and two upsamplings; dropout 0.5 before the
second upsampling; a softmax. The paper gives no parameter count.

What it leaves open (the details are in supplementary material that is not available), chosen
here: the stem convolution has stride 2 (otherwise the encoder cannot end at 1/8 with layer 2 the
only other stride); ResNet-50's layer depths (3, 4, 6, 3) and, as torchvision dilates a ResNet,
the first block of a dilated layer keeps the previous dilation (layer 3: 1 then 2, layer 4: 2 then
4); the pyramid levels have BN and ReLU after their 1x1 convolution (as in PSPNet); the decoder is
conv 3x3 6144 -> 512, upsampling x2, conv 3x3 512 -> 256, dropout 0.5, a 1x1 classifier, upsampling
x4 (bilinear: a 1x1 classifier commutes with bilinear upsampling, so classifying at 1/4 equals
classifying after it, at a sixteenth of the cost). The two-class softmax is one logit here (the
softmax of (z0, z1) is the sigmoid of z1 - z0; one filter fewer). The paper's encoder is
ImageNet-pretrained: the input is normalised with ImageNet's mean and standard deviation inside
the network; no pretrained weights ship with DermaSeg, so it starts from random initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import ConfigDict, check_dropout, check_input, check_size

__all__ = ["SLSDeepConfig", "SLSDeep", "Bottleneck", "PyramidPooling"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class SLSDeepConfig(ConfigDict):
    """Every width and depth of SLSDeep; defaults: the paper's reading (ResNet-50, 384 px)."""

    _NAME = "SLSDeep"

    in_channels: int = 3
    input_size: int = 384
    stem_channels: int = 64
    layers: tuple[int, int, int, int] = (3, 4, 6, 3)  # ResNet-50
    base_width: int = 64  # bottleneck widths 64, 128, 256, 512; outputs x4: 256 ... 2048
    dilations: tuple[int, int, int, int] = (1, 1, 2, 4)  # strides 1, 2, 1, 1: the encoder at 1/8
    pyramid_bins: tuple[int, ...] = (1, 2, 3, 6)
    pyramid_channels: int = 1024
    decoder_channels: tuple[int, int] = (512, 256)
    dropout: float = 0.5
    imagenet_normalize: bool = True

    def __post_init__(self) -> None:
        self._tuples()
        check_size(self.input_size)
        if len(self.layers) != 4 or len(self.dilations) != 4 or any(n < 1 for n in self.layers):
            raise ValueError(f"layers and dilations need four positive entries, got {self.layers}, {self.dilations}")
        if len(self.decoder_channels) != 2:
            raise ValueError(f"decoder_channels needs 2 widths, got {self.decoder_channels}")
        if not self.pyramid_bins or any(b < 1 for b in self.pyramid_bins):
            raise ValueError(f"pyramid_bins must be positive, got {self.pyramid_bins}")
        check_dropout("dropout", self.dropout)


def _conv_bn_relu(cin: int, cout: int, k: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (k - 1) // 2
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Bottleneck(nn.Module):
    """ResNet bottleneck (v1.5: the stride on the 3x3): 1x1, 3x3 (stride, dilation), 1x1 x4, BN
    after each, the input (projected when the shape changes) added, ReLU."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


def _layer(cin: int, width: int, blocks: int, stride: int, dilation: int, previous_dilation: int) -> nn.Sequential:
    layers = [Bottleneck(cin, width, stride, previous_dilation)]
    layers += [Bottleneck(width * Bottleneck.expansion, width, 1, dilation) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class PyramidPooling(nn.Module):
    """PSPNet's pyramid: adaptive average pools to b x b, 1x1 conv + BN + ReLU each, bilinearly
    upsampled and concatenated after the input."""

    def __init__(self, channels: int, bins: tuple[int, ...], inner: int) -> None:
        super().__init__()
        self.bins = tuple(bins)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), _conv_bn_relu(channels, inner, 1)) for b in self.bins)
        self.out_channels = channels + inner * len(self.bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        outs = [x] + [F.interpolate(stage(x), size=size, mode="bilinear", align_corners=False)
                      for stage in self.stages]
        return torch.cat(outs, dim=1)


class SLSDeep(nn.Module):
    """Dilated ResNet-50 + pyramid pooling; ``forward`` gives the lesion probability map."""

    def __init__(self, config: SLSDeepConfig | None = None) -> None:
        super().__init__()
        cfg = config if config is not None else SLSDeepConfig()
        self.config = cfg
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN[: cfg.in_channels]).reshape(1, -1, 1, 1)
                             if cfg.in_channels == 3 else torch.full((1, cfg.in_channels, 1, 1), 0.5),
                             persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).reshape(1, -1, 1, 1)
                             if cfg.in_channels == 3 else torch.full((1, cfg.in_channels, 1, 1), 0.25),
                             persistent=False)
        self.stem = nn.Sequential(_conv_bn_relu(cfg.in_channels, cfg.stem_channels, 3, stride=2),
                                  nn.MaxPool2d(3, stride=2, padding=1))
        strides = (1, 2, 1, 1)
        cin, previous = cfg.stem_channels, 1
        layers = []
        for i, (n, d) in enumerate(zip(cfg.layers, cfg.dilations, strict=True)):
            width = cfg.base_width * 2**i
            stride = strides[i]
            layers.append(_layer(cin, width, n, stride, d, previous))
            cin, previous = width * Bottleneck.expansion, d
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.pyramid = PyramidPooling(cin, cfg.pyramid_bins, cfg.pyramid_channels)
        d1, d2 = cfg.decoder_channels
        self.decoder1 = _conv_bn_relu(self.pyramid.out_channels, d1, 3)
        self.decoder2 = _conv_bn_relu(d1, d2, 3)
        self.dropout = nn.Dropout2d(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(d2, 1, 1)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid scores (B, 1, H, W) at the input size."""
        check_input(x, "SLSDeep", self.config.in_channels)
        size = x.shape[-2:]
        if self.config.imagenet_normalize:
            x = (x - self.mean) / self.std
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.decoder1(self.pyramid(x))
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = self.classifier(self.dropout(self.decoder2(x)))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.forward_logits(x))

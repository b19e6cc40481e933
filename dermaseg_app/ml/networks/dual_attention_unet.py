"""The residual multi-scale dual-attention U-Net of seed 004.

What the paper gives: a 4-level U-Net of encoder, bridge and decoder; three residual multi-scale
modules (RMSM) in the encoder, a stride of 2 on a module's last convolution to downsample, one
RMSM as the bridge, three in the decoder, each after a bilinear upsampling followed by a
convolution and the concatenation of the encoder's module at that level; the encoder's features
refined by DF-RAM before the concatenation and each decoder module's output by EF-RAM; a 1x1
convolution and a sigmoid at the end; 224 x 224 inputs; reduce ratio r = 16; loss Dice + focal
(gamma 2). Equation 1 (RMSM): ``In (+) Conv1x1(BN(Conv1x1 In) (+) BN(Conv3x3 In) (+) BN(Conv5x5 In))``,
no BN on the bottleneck. Equations 2-4 (DF-RAM): channel attention ``sigmoid(MLP(GAP(D)))`` from the
decoder feature, spatial attention ``sigmoid(sum_k Conv_kxk([S_r, Up(D_r)]))`` for k = 3, 5, 7, 9
from both squeezed by 1x1 convolutions to C/r, and ``S * CHA * SPA``. Equations 5-7 (EF-RAM): the same
on one feature map S.

What it leaves open, chosen here: the widths (none given) double from 32: encoder 32, 64, 128 at
1, 1/2, 1/4 and the bridge 256 at 1/8 (the "4 levels"; as in the Deep ResUNet the layout follows,
the first encoder module keeps the resolution and the next two and the bridge have the stride);
each multi-scale branch has the module's output width and a ReLU after its BN; the residual is an
addition, through a 1x1 convolution (with the stride) when the width or size changes, and a ReLU
after it; the upsampling's convolution is 3x3 + BN + ReLU to the skip's width; the MLPs are
C -> max(1, C/r) -> C_out with a ReLU; the paper's text says max pooling for DF-RAM's channel
attention where its equation says global average pooling: average pooling here; the spatial
attention convolutions have one output each (their sum is the map), with biases.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import ConfigDict, check_input, check_size

__all__ = ["DualAttentionUNetConfig", "DualAttentionUNet", "RMSM", "DFRAM", "EFRAM"]


@dataclass
class DualAttentionUNetConfig(ConfigDict):
    """Every width of the dual-attention U-Net; defaults: the paper's reading at 224 px."""

    _NAME = "dual-attention U-Net"

    in_channels: int = 3
    input_size: int = 224
    widths: tuple[int, int, int, int] = (32, 64, 128, 256)  # encoder 1-3, bridge
    reduction: int = 16
    spatial_kernels: tuple[int, ...] = (3, 5, 7, 9)
    dual_attention: bool = True  # False: the ablation's plain "RMSM UNet"

    def __post_init__(self) -> None:
        self._tuples()
        check_size(self.input_size)
        if len(self.widths) != 4 or any(w < 1 for w in self.widths):
            raise ValueError(f"widths needs 4 positive widths, got {self.widths}")
        if self.reduction < 1 or any(k < 1 or k % 2 == 0 for k in self.spatial_kernels):
            raise ValueError("reduction must be positive and spatial_kernels odd")


class RMSM(nn.Module):
    """Residual multi-scale module: 1x1, 3x3 and 5x5 branches (BN, ReLU) concatenated, a 1x1
    bottleneck (no BN; the stride when downsampling) added to the (projected) input, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout),
                          nn.ReLU(inplace=True))
            for k in (1, 3, 5))
        self.bottleneck = nn.Conv2d(3 * cout, cout, 1, stride=stride)
        self.shortcut: nn.Module = (nn.Conv2d(cin, cout, 1, stride=stride) if cin != cout or stride != 1
                                    else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        multi = torch.cat([b(x) for b in self.branches], dim=1)
        return F.relu(self.shortcut(x) + self.bottleneck(multi))


def _mlp(cin: int, cout: int, reduction: int) -> nn.Sequential:
    hidden = max(1, cin // reduction)
    return nn.Sequential(nn.Conv2d(cin, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, cout, 1))


class _SpatialSum(nn.Module):
    """sigmoid(sum over k of Conv_kxk(x)), each convolution to one map."""

    def __init__(self, cin: int, kernels: tuple[int, ...]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(cin, 1, k, padding=k // 2) for k in kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = self.convs[0](x)
        for conv in self.convs[1:]:
            total = total + conv(x)
        return torch.sigmoid(total)


class DFRAM(nn.Module):
    """Decoder-feature refinement attention: the skip S weighted by a channel attention from the
    decoder feature D and a spatial attention from both (equations 2-4)."""

    def __init__(self, skip_channels: int, decoder_channels: int, reduction: int = 16,
                 kernels: tuple[int, ...] = (3, 5, 7, 9)) -> None:
        super().__init__()
        self.channel_mlp = _mlp(decoder_channels, skip_channels, reduction)
        rs, rd = max(1, skip_channels // reduction), max(1, decoder_channels // reduction)
        self.squeeze_skip = nn.Conv2d(skip_channels, rs, 1)
        self.squeeze_decoder = nn.Conv2d(decoder_channels, rd, 1)
        self.spatial = _SpatialSum(rs + rd, kernels)

    def forward(self, skip: torch.Tensor, decoder: torch.Tensor) -> torch.Tensor:
        cha = torch.sigmoid(self.channel_mlp(F.adaptive_avg_pool2d(decoder, 1)))
        d = F.interpolate(self.squeeze_decoder(decoder), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        spa = self.spatial(torch.cat([self.squeeze_skip(skip), d], dim=1))
        return skip * cha * spa


class EFRAM(nn.Module):
    """Encoder-feature refinement attention on the upsampled path: S * SPA(S) * CHA(S) (eq. 5-7)."""

    def __init__(self, channels: int, reduction: int = 16, kernels: tuple[int, ...] = (3, 5, 7, 9)) -> None:
        super().__init__()
        self.channel_mlp = _mlp(channels, channels, reduction)
        r = max(1, channels // reduction)
        self.squeeze = nn.Conv2d(channels, r, 1)
        self.spatial = _SpatialSum(r, kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cha = torch.sigmoid(self.channel_mlp(F.adaptive_avg_pool2d(x, 1)))
        return x * cha * self.spatial(self.squeeze(x))


class _UpConv(nn.Sequential):
    """Bilinear x2, then 3x3 convolution + BN + ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                         nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DualAttentionUNet(nn.Module):
    """RMSM encoder (3), bridge, RMSM decoder (3) with DF-RAM and EF-RAM; ``forward`` gives the
    lesion probability map (B, 1, H, W); H and W divisible by 8."""

    def __init__(self, config: DualAttentionUNetConfig | None = None) -> None:
        super().__init__()
        cfg = config if config is not None else DualAttentionUNetConfig()
        self.config = cfg
        w1, w2, w3, w4 = cfg.widths
        r, ks = cfg.reduction, cfg.spatial_kernels
        self.encoder1 = RMSM(cfg.in_channels, w1, stride=1)
        self.encoder2 = RMSM(w1, w2, stride=2)
        self.encoder3 = RMSM(w2, w3, stride=2)
        self.bridge = RMSM(w3, w4, stride=2)
        skips, below = (w3, w2, w1), (w4, w3, w2)
        self.ups = nn.ModuleList(_UpConv(d, s) for s, d in zip(skips, below, strict=True))
        self.decoders = nn.ModuleList(RMSM(2 * s, s) for s in skips)
        if cfg.dual_attention:
            self.dframs = nn.ModuleList(DFRAM(s, d, r, ks) for s, d in zip(skips, below, strict=True))
            self.eframs = nn.ModuleList(EFRAM(s, r, ks) for s in skips)
        self.output = nn.Conv2d(w1, 1, 1)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid scores (B, 1, H, W)."""
        check_input(x, "DualAttentionUNet", self.config.in_channels)
        e1 = self.encoder1(x)
        e2 = self.encoder2(e1)
        e3 = self.encoder3(e2)
        d = self.bridge(e3)
        for i, skip in enumerate((e3, e2, e1)):
            if self.config.dual_attention:
                skip = self.dframs[i](skip, d)
            d = self.decoders[i](torch.cat([self.ups[i](d), skip], dim=1))
            if self.config.dual_attention:
                d = self.eframs[i](d)
        return self.output(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.forward_logits(x))

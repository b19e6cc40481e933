"""SLSNet generator and discriminator (docs: shared/docs/slsnet-architecture.md)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import CAM, FAM, PAM, Bridge, Down, MultiscaleBlock, Up

__all__ = ["SLSNetConfig", "SLSNetGenerator", "SLSNetDiscriminator"]


@dataclass
class SLSNetConfig:
    """Every width, dilation and dropout rate of SLSNet; defaults follow the paper's reading."""

    in_channels: int = 3
    input_size: int = 128
    multiscale_channels: int = 16
    multiscale_scales: tuple[int, ...] = (1, 2, 4, 8)
    encoder_channels: tuple[int, int, int] = (32, 64, 128)
    stage1_dilations: tuple[int, ...] = (1, 1, 1, 1)
    stage1_dropout: float = 0.03
    stage2_dilations: tuple[int, ...] = (2, 4, 8, 16, 2, 4, 8, 16)
    stage2_dropout: float = 0.3
    bridge_channels: int = 32
    bridge_dilation: int = 1
    bridge_dropout: float = 0.1
    decoder_channels: tuple[int, int] = (64, 16)
    decoder1_dilations: tuple[int, ...] = (1, 1)
    decoder2_dilations: tuple[int, ...] = (1, 1)
    decoder_dropout: float = 0.0
    pam_reduction: int = 8
    discriminator_channels: tuple[int, int, int] = (64, 128, 256)
    discriminator_slope: float = 0.2

    _TUPLE_FIELDS = (
        "multiscale_scales",
        "encoder_channels",
        "stage1_dilations",
        "stage2_dilations",
        "decoder_channels",
        "decoder1_dilations",
        "decoder2_dilations",
        "discriminator_channels",
    )

    def __post_init__(self) -> None:
        for name in self._TUPLE_FIELDS:
            setattr(self, name, tuple(int(v) for v in getattr(self, name)))
        if len(self.encoder_channels) != 3:
            raise ValueError(f"encoder_channels needs 3 widths, got {self.encoder_channels}")
        if len(self.decoder_channels) != 2:
            raise ValueError(f"decoder_channels needs 2 widths, got {self.decoder_channels}")
        if len(self.discriminator_channels) != 3:
            raise ValueError(
                f"discriminator_channels needs 3 widths, got {self.discriminator_channels}"
            )
        if self.input_size <= 0 or self.input_size % 8:
            raise ValueError(f"input_size must be a positive multiple of 8, got {self.input_size}")
        for name in ("stage1_dropout", "stage2_dropout", "bridge_dropout", "decoder_dropout"):
            p = float(getattr(self, name))
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SLSNetConfig:
        """Build from a dict such as ``to_dict()`` gives; missing keys take the defaults."""
        if data is None:
            return cls()
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown SLSNet config keys: {', '.join(unknown)}")
        return cls(**data)


def _check_size(x: torch.Tensor, name: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{name} expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h % 8 or w % 8:
        raise ValueError(f"{name} needs height and width divisible by 8, got {h}x{w}")


class SLSNetGenerator(nn.Module):
    """Encoder-decoder generator; ``forward`` gives the lesion probability map (B, 1, H, W)."""

    def __init__(self, config: SLSNetConfig | None = None) -> None:
        super().__init__()
        cfg = config if config is not None else SLSNetConfig()
        self.config = cfg
        c1, c2, c3 = cfg.encoder_channels
        d1, d2 = cfg.decoder_channels
        r = cfg.pam_reduction
        self.multiscale = MultiscaleBlock(
            cfg.in_channels, cfg.multiscale_channels, cfg.multiscale_scales
        )
        self.down1 = Down(cfg.multiscale_channels, c1, r)
        self.down2 = Down(c1, c2, r)
        self.stage1 = nn.Sequential(*(FAM(c2, d, cfg.stage1_dropout) for d in cfg.stage1_dilations))
        self.down3 = Down(c2, c3, r)
        self.stage2 = nn.Sequential(*(FAM(c3, d, cfg.stage2_dropout) for d in cfg.stage2_dilations))
        self.bridge = Bridge(c3, cfg.bridge_channels, cfg.bridge_dilation, cfg.bridge_dropout, r)
        self.up1 = Up(c3, d1, r)
        self.decoder1 = nn.Sequential(
            *(FAM(d1, d, cfg.decoder_dropout) for d in cfg.decoder1_dilations)
        )
        self.up2 = Up(d1, d2, r)
        self.decoder2 = nn.Sequential(
            *(FAM(d2, d, cfg.decoder_dropout) for d in cfg.decoder2_dilations)
        )
        self.output = nn.ConvTranspose2d(d2, 1, kernel_size=2, stride=2)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid scores (B, 1, H, W); use with ``binary_cross_entropy_with_logits``."""
        _check_size(x, "SLSNetGenerator")
        x = self.multiscale(x)
        x = self.down1(x)
        x = self.down2(x)
        x = self.stage1(x)
        x = self.down3(x)
        x = self.stage2(x)
        x = self.bridge(x)
        x = self.up1(x)
        x = self.decoder1(x)
        x = self.up2(x)
        x = self.decoder2(x)
        return self.output(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.forward_logits(x))


class SLSNetDiscriminator(nn.Module):
    """Patch discriminator on the image and a mask concatenated (in_channels + 1 channels).

    Three 4x4 stride-2 convs with LeakyReLU(0.2): the second with BN then PAM, the third with BN
    then CAM; a final 4x4 stride-1 conv to one channel. ``forward`` gives sigmoid patch scores
    (about 15x15 at 128 px), ``forward_logits`` the scores before the sigmoid.
    """

    def __init__(self, config: SLSNetConfig | None = None) -> None:
        super().__init__()
        cfg = config if config is not None else SLSNetConfig()
        self.config = cfg
        c1, c2, c3 = cfg.discriminator_channels
        self.in_channels = cfg.in_channels + 1
        self.slope = cfg.discriminator_slope
        self.conv1 = nn.Conv2d(self.in_channels, c1, 4, stride=2, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 4, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(c2)
        self.pam = PAM(c2, cfg.pam_reduction)
        self.conv3 = nn.Conv2d(c2, c3, 4, stride=2, padding=1)
        self.bn3 = nn.BatchNorm2d(c3)
        self.cam = CAM()
        self.final = nn.Conv2d(c3, 1, 4, stride=1, padding=1)

    def forward_logits(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` is the 4-channel pair, or the image when ``mask`` is given separately."""
        if mask is not None:
            x = torch.cat([x, mask], dim=1)
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"SLSNetDiscriminator expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        s = self.slope
        x = F.leaky_relu(self.conv1(x), s)
        x = self.pam(F.leaky_relu(self.bn2(self.conv2(x)), s))
        x = self.cam(F.leaky_relu(self.bn3(self.conv3(x)), s))
        return self.final(x)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.forward_logits(x, mask))


"""Building blocks of SLSNet (see docs/slsnet-architecture.md in the shared docs).

Every block is a small ``nn.Module``. The attention modules follow DANet (Fu et al., CVPR 2019),
the factorized block and the downsampler follow ERFNet (Romera et al., 2018).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import fast_attention

__all__ = [
    "CAM",
    "PAM",
    "FactorizedBlock",
    "FAM",
    "Downsampler",
    "Down",
    "Upsampler",
    "Up",
    "MultiscaleBlock",
    "Bridge",
    "ConvBNReLU",
]


class CAM(nn.Module):
    """DANet channel attention: no convolutions, a learned scalar ``gamma`` starting at 0.

    ``energy = A A^T`` (C x C); DANet's softmax input is ``rowmax(energy) - energy``;
    ``out = gamma * (attention A) + A``. A fresh module is the identity.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The attended features ``attention @ A`` reshaped to ``x``'s shape (without gamma)."""
        b, c, h, w = x.shape
        # The energy sums N = H*W products: in float16 it overflows (inf - inf = NaN) for
        # ordinary activations, so CAM always runs in float32, also under autocast.
        with torch.autocast(device_type=x.device.type, enabled=False):
            a = x.reshape(b, c, h * w).float()
            energy = torch.bmm(a, a.transpose(1, 2))
            energy_new = energy.amax(dim=-1, keepdim=True) - energy
            attn = torch.softmax(energy_new, dim=-1)
            out = torch.bmm(attn, a).reshape(b, c, h, w)
        return out.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gamma.to(x.dtype) * self.attention(x) + x


class PAM(nn.Module):
    """DANet position attention computed with ``scaled_dot_product_attention`` (scale 1).

    Query and key are 1x1 convolutions to ``max(1, C // reduction)`` channels, value a 1x1
    convolution to C channels. ``energy = Q^T K`` (N x N, N = H*W), softmax over the last axis,
    ``out = gamma * (V attention^T) + A``. On the CPU, when ``ml.fast_attention``'s kernel is built,
    it computes this with the q-k products at C/8 and nothing N x N in memory; elsewhere it is SDPA
    with scale 1 (query and key zero-padded to the value width, which changes no dot product,
    because the fused SDPA kernels need one head size). Both give the same values.
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        inner = max(1, channels // reduction)
        self.channels = channels
        self.query_conv = nn.Conv2d(channels, inner, kernel_size=1)
        self.key_conv = nn.Conv2d(channels, inner, kernel_size=1)
        self.value_conv = nn.Conv2d(channels, channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    @staticmethod
    def _tokens(t: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) -> (B, 1, N, C), contiguous (the fused kernels need a unit last stride);
        # no copy when t is channels_last.
        b, c, h, w = t.shape
        return t.permute(0, 2, 3, 1).reshape(b, 1, h * w, c).contiguous()

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The attended features ``V attention^T`` reshaped to ``x``'s shape (without gamma)."""
        if x.device.type == "cpu" and fast_attention.ready():
            return self.attention_fused(x)
        return self.attention_sdpa(x)

    def attention_fused(self, x: torch.Tensor) -> torch.Tensor:
        """The CPU kernel of ``ml.fast_attention``: the q-k products at the query width C/8."""
        b, c, h, w = x.shape
        n = h * w
        q = self.query_conv(x).reshape(b, -1, n).transpose(1, 2)  # B x N x C'
        kt = self.key_conv(x).reshape(b, -1, n)  # B x C' x N
        vt = self.value_conv(x).reshape(b, c, n)  # B x C x N
        out = fast_attention.pam_attention(q, kt, vt)  # B x N x C
        return out.reshape(b, h, w, c).permute(0, 3, 1, 2)

    def attention_sdpa(self, x: torch.Tensor) -> torch.Tensor:
        """``scaled_dot_product_attention`` with q and k zero-padded to C (any device)."""
        b, c, h, w = x.shape
        q = self._tokens(self.query_conv(x))
        k = self._tokens(self.key_conv(x))
        v = self._tokens(self.value_conv(x))
        inner = q.shape[-1]
        if inner < c:
            # Zero-padding query and key to the value width leaves every dot product unchanged
            # and lets the fused (flash) kernels run: they need one head size for q, k and v.
            # Without it the CPU falls back to the math path, which builds the N x N matrix.
            q = F.pad(q, (0, c - inner))
            k = F.pad(k, (0, c - inner))
        out = F.scaled_dot_product_attention(q, k, v, scale=1.0)  # (B, 1, N, C)
        return out.reshape(b, h, w, c).permute(0, 3, 1, 2)

    def attention_explicit(self, x: torch.Tensor) -> torch.Tensor:
        """The DANet formula with the N x N matrix materialized (reference for tests)."""
        b, c, h, w = x.shape
        n = h * w
        q = self.query_conv(x).reshape(b, -1, n).permute(0, 2, 1)  # B x N x C'
        k = self.key_conv(x).reshape(b, -1, n)  # B x C' x N
        energy = torch.bmm(q, k)  # B x N x N
        attn = torch.softmax(energy, dim=-1)
        v = self.value_conv(x).reshape(b, c, n)  # B x C x N
        return torch.bmm(v, attn.permute(0, 2, 1)).reshape(b, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gamma.to(x.dtype) * self.attention(x) + x


class FactorizedBlock(nn.Module):
    """ERFNet non-bottleneck-1D: 3x1, ReLU, 1x3, BN, ReLU, 3x1 (d), ReLU, 1x3 (d), BN, dropout,
    then ``ReLU(out + input)``."""

    def __init__(self, channels: int, dilation: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        d = int(dilation)
        self.conv3x1_1 = nn.Conv2d(channels, channels, (3, 1), padding=(1, 0))
        self.conv1x3_1 = nn.Conv2d(channels, channels, (1, 3), padding=(0, 1))
        self.bn1 = nn.BatchNorm2d(channels, eps=1e-3)
        self.conv3x1_2 = nn.Conv2d(channels, channels, (3, 1), padding=(d, 0), dilation=(d, 1))
        self.conv1x3_2 = nn.Conv2d(channels, channels, (1, 3), padding=(0, d), dilation=(1, d))
        self.bn2 = nn.BatchNorm2d(channels, eps=1e-3)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv3x1_1(x))
        out = F.relu(self.bn1(self.conv1x3_1(out)))
        out = F.relu(self.conv3x1_2(out))
        out = self.dropout(self.bn2(self.conv1x3_2(out)))
        return F.relu(out + x)


class FAM(nn.Module):
    """Factorized-attention module: a factorized block followed by CAM."""

    def __init__(self, channels: int, dilation: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.factorized = FactorizedBlock(channels, dilation, dropout)
        self.cam = CAM()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cam(self.factorized(x))


class Downsampler(nn.Module):
    """ERFNet downsampler: 3x3 stride-2 conv to ``out - in`` channels concatenated with a 2x2
    max-pool of the input, then BN and ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if out_channels <= in_channels:
            raise ValueError(
                f"Downsampler needs out_channels > in_channels, got {in_channels}->{out_channels}"
            )
        self.conv = nn.Conv2d(in_channels, out_channels - in_channels, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([self.conv(x), self.pool(x)], dim=1)
        return F.relu(self.bn(out))


class Down(nn.Module):
    """Downsampler followed by PAM."""

    def __init__(self, in_channels: int, out_channels: int, pam_reduction: int = 8) -> None:
        super().__init__()
        self.down = Downsampler(in_channels, out_channels)
        self.pam = PAM(out_channels, pam_reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pam(self.down(x))


class Upsampler(nn.Module):
    """3x3 stride-2 transposed conv (padding 1, output padding 1), BN, ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(
            in_channels, out_channels, 3, stride=2, padding=1, output_padding=1
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class Up(nn.Module):
    """Upsampler followed by PAM."""

    def __init__(self, in_channels: int, out_channels: int, pam_reduction: int = 8) -> None:
        super().__init__()
        self.up = Upsampler(in_channels, out_channels)
        self.pam = PAM(out_channels, pam_reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pam(self.up(x))


class MultiscaleBlock(nn.Module):
    """The input and its bilinear 1/2, 1/4, 1/8 resizes, each through a 3x3 conv and a CAM; the
    small ones bilinearly upsampled back to full size; the four averaged."""

    def __init__(
        self, in_channels: int = 3, out_channels: int = 16, scales: Sequence[int] = (1, 2, 4, 8)
    ) -> None:
        super().__init__()
        if not scales or any(int(s) < 1 for s in scales):
            raise ValueError(f"MultiscaleBlock scales must be positive integers, got {scales}")
        self.scales = tuple(int(s) for s in scales)
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels, out_channels, 3, padding=1) for _ in self.scales
        )
        self.cams = nn.ModuleList(CAM() for _ in self.scales)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        total: torch.Tensor | None = None
        for scale, conv, cam in zip(self.scales, self.convs, self.cams, strict=True):
            if scale == 1:
                xs = x
            else:
                size = (max(1, h // scale), max(1, w // scale))
                xs = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            y = cam(conv(xs))
            if scale != 1:
                y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
            total = y if total is None else total + y
        assert total is not None
        return total / len(self.scales)


class ConvBNReLU(nn.Module):
    """A convolution (bias) followed by BN and ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class Bridge(nn.Module):
    """Factorized block, then two branches (3x3 conv+BN+ReLU -> PAM or CAM -> 3x3 conv+BN+ReLU),
    summed, dropout, and a 1x1 conv back to the input width."""

    def __init__(
        self,
        channels: int = 128,
        inner: int = 32,
        dilation: int = 1,
        dropout: float = 0.1,
        pam_reduction: int = 8,
    ) -> None:
        super().__init__()
        self.factorized = FactorizedBlock(channels, dilation, 0.0)
        self.pam_in = ConvBNReLU(channels, inner)
        self.pam = PAM(inner, pam_reduction)
        self.pam_out = ConvBNReLU(inner, inner)
        self.cam_in = ConvBNReLU(channels, inner)
        self.cam = CAM()
        self.cam_out = ConvBNReLU(inner, inner)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.project = nn.Conv2d(inner, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.factorized(x)
        p = self.pam_out(self.pam(self.pam_in(x)))
        c = self.cam_out(self.cam(self.cam_in(x)))
        return self.project(self.dropout(p + c))

"""Inference-only rewrites of a trained network: numerically equivalent, faster on the CPU.

``fuse_for_inference(model)`` returns a copy in eval mode with every BatchNorm folded into the
convolution (or transposed convolution) before it, dropout removed, and optionally the weights and
activations in ``channels_last`` layout. The original model is left untouched.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from . import fast_attention
from .blocks import PAM, ConvBNReLU, Downsampler, FactorizedBlock, Upsampler
from .networks.slsdeep import Bottleneck
from .slsnet import SLSNetDiscriminator

__all__ = [
    "fold_conv_bn",
    "fold_deconv_bn",
    "FusedDownsampler",
    "FusedPAM",
    "fuse_for_inference",
    "ChannelsLast",
]


def _bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("BatchNorm without running statistics cannot be folded")
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale, shift


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new convolution equal to ``bn(conv(x))`` in eval mode."""
    scale, shift = _bn_scale_shift(bn)
    fused = copy.deepcopy(conv)
    fused.weight.mul_(scale.reshape(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
    fused.bias = nn.Parameter(bias * scale + shift)
    return fused


@torch.no_grad()
def fold_deconv_bn(deconv: nn.ConvTranspose2d, bn: nn.BatchNorm2d) -> nn.ConvTranspose2d:
    """A new transposed convolution equal to ``bn(deconv(x))`` in eval mode (groups = 1)."""
    if deconv.groups != 1:
        raise ValueError("folding BatchNorm into a grouped transposed convolution is not supported")
    scale, shift = _bn_scale_shift(bn)
    fused = copy.deepcopy(deconv)
    fused.weight.mul_(scale.reshape(1, -1, 1, 1))  # weight: (in, out, kh, kw)
    bias = deconv.bias if deconv.bias is not None else torch.zeros_like(shift)
    fused.bias = nn.Parameter(bias * scale + shift)
    return fused


class FusedDownsampler(nn.Module):
    """Inference form of ``Downsampler``: BN folded into the conv; the max-pool channels keep a
    per-channel affine (BN of the pooled half)."""

    def __init__(self, source: Downsampler) -> None:
        super().__init__()
        conv_out = source.conv.out_channels
        scale, shift = _bn_scale_shift(source.bn)
        bn_conv = nn.BatchNorm2d(
            conv_out,
            eps=source.bn.eps,
            device=source.bn.running_mean.device,
            dtype=source.bn.running_mean.dtype,
        )
        bn_conv.eval()
        with torch.no_grad():
            bn_conv.running_mean.copy_(source.bn.running_mean[:conv_out])
            bn_conv.running_var.copy_(source.bn.running_var[:conv_out])
            bn_conv.weight.copy_(source.bn.weight[:conv_out])
            bn_conv.bias.copy_(source.bn.bias[:conv_out])
        self.conv = fold_conv_bn(source.conv, bn_conv)
        self.pool = source.pool
        self.register_buffer("pool_scale", scale[conv_out:].detach().clone().reshape(1, -1, 1, 1))
        self.register_buffer("pool_shift", shift[conv_out:].detach().clone().reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.addcmul(self.pool_shift, self.pool(x), self.pool_scale)
        return F.relu(torch.cat([self.conv(x), pooled], dim=1))


class FusedPAM(nn.Module):
    """Inference form of ``PAM``: one 1x1 convolution gives query and key zero-padded to the value
    width (so no padding copies are needed for the fused SDPA kernel) and the value already
    multiplied by gamma (``gamma * (V att^T) = (gamma V) att^T``)."""

    def __init__(self, source: PAM) -> None:
        super().__init__()
        c = source.channels
        inner = source.query_conv.out_channels
        gamma = source.gamma.detach().reshape(())
        self.channels = c
        self.inner = inner
        ref = source.value_conv.weight
        self.qkv = nn.Conv2d(c, 3 * c, kernel_size=1, device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            w = torch.zeros(3 * c, c, 1, 1, dtype=ref.dtype, device=ref.device)
            b = torch.zeros(3 * c, dtype=ref.dtype, device=ref.device)
            w[:inner] = source.query_conv.weight
            b[:inner] = source.query_conv.bias
            w[c : c + inner] = source.key_conv.weight
            b[c : c + inner] = source.key_conv.bias
            w[2 * c :] = source.value_conv.weight * gamma
            b[2 * c :] = source.value_conv.bias * gamma
            self.qkv.weight.copy_(w)
            self.qkv.bias.copy_(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if x.device.type == "cpu" and fast_attention.ready():
            # the fused CPU kernel: the q-k products at the query width (C/8), not padded to C
            n, d = h * w, self.inner
            qkv = self.qkv(x).reshape(b, 3 * c, n)
            q = qkv[:, :d].transpose(1, 2)
            out = fast_attention.pam_attention(q, qkv[:, c:c + d], qkv[:, 2 * c:])
            return out.reshape(b, h, w, c).permute(0, 3, 1, 2) + x
        qkv = self.qkv(x).permute(0, 2, 3, 1).reshape(b, 1, h * w, 3 * c)
        if not qkv.is_contiguous():
            qkv = qkv.contiguous()
        q, k, v = qkv.split(c, dim=-1)  # unit last stride: the fused kernels accept them
        out = F.scaled_dot_product_attention(q, k, v, scale=1.0)
        return out.reshape(b, h, w, c).permute(0, 3, 1, 2) + x


def _fold_sequential(seq: nn.Sequential) -> None:
    """Fold each BatchNorm that directly follows a convolution inside an ``nn.Sequential`` (the
    seed networks' conv-BN-activation layers, ml.networks)."""
    for i in range(len(seq) - 1):
        conv, bn = seq[i], seq[i + 1]
        if (type(conv) is nn.Conv2d and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats
                and bn.num_features == conv.out_channels):
            seq[i] = fold_conv_bn(conv, bn)
            seq[i + 1] = nn.Identity()


def _fold_in_place(model: nn.Module) -> None:
    if isinstance(model, nn.Sequential):
        _fold_sequential(model)
    for name, child in list(model.named_children()):
        if isinstance(child, PAM):
            setattr(model, name, FusedPAM(child))
            continue
        if isinstance(child, Downsampler):
            setattr(model, name, FusedDownsampler(child))
            continue
        if isinstance(child, FactorizedBlock):
            child.conv1x3_1 = fold_conv_bn(child.conv1x3_1, child.bn1)
            child.bn1 = nn.Identity()
            child.conv1x3_2 = fold_conv_bn(child.conv1x3_2, child.bn2)
            child.bn2 = nn.Identity()
            child.dropout = nn.Identity()
            continue
        if isinstance(child, Bottleneck):
            for k in ("1", "2", "3"):
                setattr(child, f"conv{k}", fold_conv_bn(getattr(child, f"conv{k}"), getattr(child, f"bn{k}")))
                setattr(child, f"bn{k}", nn.Identity())
            if child.downsample is not None:
                _fold_in_place(child.downsample)
            continue
        if isinstance(child, Upsampler):
            child.conv = fold_deconv_bn(child.conv, child.bn)
            child.bn = nn.Identity()
            continue
        if isinstance(child, ConvBNReLU):
            child.conv = fold_conv_bn(child.conv, child.bn)
            child.bn = nn.Identity()
            continue
        if isinstance(child, (nn.Dropout, nn.Dropout2d)):
            setattr(model, name, nn.Identity())
            continue
        _fold_in_place(child)
    if isinstance(model, SLSNetDiscriminator):
        model.conv2 = fold_conv_bn(model.conv2, model.bn2)
        model.bn2 = nn.Identity()
        model.conv3 = fold_conv_bn(model.conv3, model.bn3)
        model.bn3 = nn.Identity()


class ChannelsLast(nn.Module):
    """Wraps a model so its input is converted to ``channels_last`` and its output back."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x.contiguous(memory_format=torch.channels_last))
        return y.contiguous()

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model.forward_logits(x.contiguous(memory_format=torch.channels_last))
        return y.contiguous()


@torch.no_grad()
def fuse_for_inference(model: nn.Module, channels_last: bool = False) -> nn.Module:
    """An eval-mode copy of ``model`` with BatchNorm folded and dropout removed.

    Outputs equal those of ``model.eval()`` up to float rounding. With ``channels_last`` the
    weights are stored NHWC and the result is wrapped in :class:`ChannelsLast`. Parameters of the
    copy have ``requires_grad`` off: the result is for inference only (do not train it).
    """
    fused = copy.deepcopy(model).eval()
    _fold_in_place(fused)
    for p in fused.parameters():
        p.requires_grad_(False)
    if hasattr(model, "config"):
        fused.config = model.config  # type: ignore[assignment]
    if channels_last:
        fused = fused.to(memory_format=torch.channels_last)
        wrapped = ChannelsLast(fused)
        if hasattr(model, "config"):
            wrapped.config = model.config  # type: ignore[assignment]
        return wrapped.eval()
    return fused

"""Unit tests of the SLSNet building blocks (tiny inputs)."""

from __future__ import annotations

import pytest
import torch

from dermaseg_app.ml.blocks import (
    CAM,
    FAM,
    PAM,
    Bridge,
    Down,
    Downsampler,
    FactorizedBlock,
    MultiscaleBlock,
    Up,
    Upsampler,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_cam_is_identity_while_gamma_zero_and_changes_output_otherwise() -> None:
    cam = CAM()
    x = torch.randn(2, 8, 6, 5)
    assert cam.gamma.item() == 0.0
    assert torch.equal(cam(x), x)
    with torch.no_grad():
        cam.gamma.fill_(0.5)
    assert not torch.allclose(cam(x), x)


def test_cam_matches_danet_formula() -> None:
    cam = CAM()
    with torch.no_grad():
        cam.gamma.fill_(0.7)
    x = torch.randn(2, 4, 3, 3)
    a = x.reshape(2, 4, 9)
    energy = a @ a.transpose(1, 2)
    energy_new = energy.max(-1, keepdim=True)[0].expand_as(energy) - energy
    attn = torch.softmax(energy_new, -1)
    expected = 0.7 * (attn @ a).reshape_as(x) + x
    torch.testing.assert_close(cam(x), expected)


def test_pam_is_identity_while_gamma_zero_and_changes_output_otherwise() -> None:
    pam = PAM(16)
    x = torch.randn(2, 16, 8, 8)
    assert pam.gamma.item() == 0.0
    assert torch.equal(pam(x), x)
    with torch.no_grad():
        pam.gamma.fill_(1.0)
    assert not torch.allclose(pam(x), x)


@pytest.mark.parametrize("channels,size", [(16, (8, 8)), (32, (6, 10)), (4, (5, 7))])
def test_pam_sdpa_equals_explicit_danet_formula(channels: int, size: tuple[int, int]) -> None:
    pam = PAM(channels)
    # larger weights make the softmax far from uniform, so a wrong axis would show
    with torch.no_grad():
        pam.query_conv.weight.mul_(4)
        pam.key_conv.weight.mul_(4)
    x = torch.randn(2, channels, *size)
    torch.testing.assert_close(pam.attention(x), pam.attention_explicit(x), atol=1e-5, rtol=1e-4)
    # channels_last input gives the same numbers
    xc = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(pam.attention(xc), pam.attention_explicit(x), atol=1e-5, rtol=1e-4)


def test_pam_runs_on_the_fused_flash_kernel() -> None:
    """No N x N matrix: PAM must work with only the flash SDPA backend enabled."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    pam = PAM(32)
    with torch.no_grad():
        pam.gamma.fill_(1.0)
    x = torch.randn(1, 32, 8, 8)
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]), torch.no_grad():
        y = pam(x)
    torch.testing.assert_close(y, pam.attention_explicit(x) + x, atol=1e-5, rtol=1e-4)


def test_pam_query_width_is_at_least_one() -> None:
    assert PAM(4).query_conv.out_channels == 1
    assert PAM(64).query_conv.out_channels == 8


@pytest.mark.parametrize("size", [32, 64, 128])
def test_block_shapes(size: int) -> None:
    x16 = torch.randn(1, 16, size // 2, size // 2)
    assert FactorizedBlock(16, dilation=2, dropout=0.1)(x16).shape == x16.shape
    assert FAM(16, dilation=4)(x16).shape == x16.shape
    assert Downsampler(16, 32)(x16).shape == (1, 32, size // 4, size // 4)
    assert Down(16, 32)(x16).shape == (1, 32, size // 4, size // 4)
    assert Upsampler(16, 8)(x16).shape == (1, 8, size, size)
    assert Up(16, 8)(x16).shape == (1, 8, size, size)
    img = torch.randn(1, 3, size, size)
    assert MultiscaleBlock(3, 16)(img).shape == (1, 16, size, size)
    x128 = torch.randn(1, 128, size // 8, size // 8)
    assert Bridge(128, 32)(x128).shape == x128.shape


def test_multiscale_non_square() -> None:
    assert MultiscaleBlock(3, 16)(torch.randn(2, 3, 48, 64)).shape == (2, 16, 48, 64)


def test_downsampler_rejects_shrinking_width() -> None:
    with pytest.raises(ValueError, match="out_channels > in_channels"):
        Downsampler(32, 16)


def test_factorized_block_output_is_nonnegative_and_residual() -> None:
    block = FactorizedBlock(8).eval()
    x = torch.randn(1, 8, 10, 10)
    y = block(x)
    assert (y >= 0).all()
    # with all convs zeroed, the block is ReLU(BN(bias 0) + x) = ReLU(x + bn bias)
    with torch.no_grad():
        for p in block.parameters():
            p.zero_()
    torch.testing.assert_close(block(x), torch.relu(x))


def test_cam_stays_finite_under_float16_autocast() -> None:
    """A A^T over 64x64 positions overflows float16; CAM must compute it in float32."""
    cam = CAM()
    with torch.no_grad():
        cam.gamma.fill_(0.5)
    x = torch.rand(1, 8, 64, 64) * 8  # ordinary post-ReLU magnitudes
    assert (x.reshape(8, -1) ** 2).sum(-1).max() > 65504  # the energy exceeds float16's range
    ref = cam(x)
    with torch.autocast("cpu", dtype=torch.float16):
        y = cam(x.half())
    assert y.dtype == torch.float16
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y.float(), ref, atol=0.05, rtol=0.01)


def test_pam_under_bfloat16_autocast_is_close() -> None:
    pam = PAM(16)
    with torch.no_grad():
        pam.gamma.fill_(1.0)
    x = torch.randn(1, 16, 8, 8)
    ref = pam(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = pam(x)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y.float(), ref, atol=0.1, rtol=0.05)

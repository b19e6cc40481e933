"""The fused CPU position attention (ml/fast_attention.py, ml/csrc/pam_attention.cpp) against
the DANet formula: values and gradients, float32 (exact up to rounding) and under bf16 autocast."""

from __future__ import annotations

import shutil

import pytest
import torch

from dermaseg_app.ml import fast_attention
from dermaseg_app.ml.blocks import PAM

pytestmark = pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                                reason="no C++ compiler: the kernel cannot be built here")


@pytest.fixture(scope="module")
def kernel() -> object:
    module = fast_attention.build()
    assert module is not None, fast_attention.problem()
    assert fast_attention.ready()
    return module


def reference(q: torch.Tensor, kt: torch.Tensor, vt: torch.Tensor) -> torch.Tensor:
    return torch.softmax(q @ kt, dim=-1) @ vt.transpose(1, 2)


@pytest.mark.parametrize("b,n,m,d,c,scale", [
    (2, 64, 64, 4, 32, 1.0),     # SLSNet's first PAM, small
    (3, 37, 53, 2, 16, 1.0),     # rows and keys not multiples of the blocks (8 rows, 16 keys)
    (1, 20, 300, 16, 128, 1.0),  # wide values (the discriminator's PAM)
    (2, 9, 17, 1, 3, 1.0),       # one query channel, odd widths (the tails of every loop)
    (2, 24, 40, 4, 24, 6.0),     # large scores: the softmax is nearly one-hot, exp underflows
])
def test_values_and_gradients_match_the_formula(kernel: object, b: int, n: int, m: int, d: int, c: int,
                                                scale: float) -> None:
    g = torch.Generator().manual_seed(n * 1000 + m)
    q64 = (torch.randn(b, n, d, generator=g, dtype=torch.float64) * scale).requires_grad_()
    kt64 = (torch.randn(b, d, m, generator=g, dtype=torch.float64) * scale).requires_grad_()
    vt64 = torch.randn(b, c, m, generator=g, dtype=torch.float64).requires_grad_()
    out64 = reference(q64, kt64, vt64)
    grad = torch.randn(out64.shape, generator=g, dtype=torch.float64)
    out64.backward(grad)

    q, kt, vt = (t.detach().float().requires_grad_() for t in (q64, kt64, vt64))
    out = fast_attention.pam_attention(q, kt, vt)
    out.backward(grad.float())
    torch.testing.assert_close(out.double(), out64, atol=2e-5, rtol=1e-4)
    for name, mine, ref in (("q", q, q64), ("k", kt, kt64), ("v", vt, vt64)):
        err = (mine.grad.double() - ref.grad).abs().max().item()
        assert err <= 1e-4 * max(1.0, ref.grad.abs().max().item()), f"d{name} differs by {err}"


def test_gradcheck_in_double_precision_inputs_cast(kernel: object) -> None:
    """The backward is the derivative of the forward (finite differences in float32 terms)."""
    torch.manual_seed(0)
    q = torch.randn(1, 10, 2, requires_grad=True)
    kt = torch.randn(1, 2, 12, requires_grad=True)
    vt = torch.randn(1, 5, 12, requires_grad=True)
    eps = 1e-2
    out = fast_attention.pam_attention(q, kt, vt)
    w = torch.randn(out.shape)
    (out * w).sum().backward()
    for t in (q, kt, vt):
        flat = t.detach().clone().view(-1)
        for idx in (0, flat.numel() // 2, flat.numel() - 1):
            plus, minus = [t.detach().clone() for _ in range(2)]
            plus.view(-1)[idx] += eps
            minus.view(-1)[idx] -= eps
            args = [plus if s is t else s.detach() for s in (q, kt, vt)]
            f_plus = (fast_attention.pam_attention(*args) * w).sum()
            args = [minus if s is t else s.detach() for s in (q, kt, vt)]
            f_minus = (fast_attention.pam_attention(*args) * w).sum()
            numeric = (f_plus - f_minus).item() / (2 * eps)
            assert t.grad.view(-1)[idx].item() == pytest.approx(numeric, rel=2e-2, abs=2e-3)


@pytest.mark.parametrize("channels,size", [(32, (8, 8)), (16, (6, 10)), (128, (4, 4))])
def test_pam_fused_path_equals_sdpa_and_explicit(kernel: object, channels: int, size: tuple[int, int]) -> None:
    torch.manual_seed(channels)
    pam = PAM(channels)
    with torch.no_grad():
        pam.gamma.fill_(0.7)
        pam.query_conv.weight.mul_(4)
        pam.key_conv.weight.mul_(4)
    x = torch.randn(3, channels, *size, requires_grad=True)
    fused = pam.attention_fused(x)
    torch.testing.assert_close(fused, pam.attention_explicit(x), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(fused, pam.attention_sdpa(x), atol=1e-5, rtol=1e-4)
    assert torch.equal(pam.attention(x), fused)  # the CPU path once the kernel is there

    grads = {}
    for name, fn in (("fused", pam.attention_fused), ("sdpa", pam.attention_sdpa)):
        pam.zero_grad()
        x.grad = None
        (fn(x) * torch.linspace(-1, 1, x.numel()).reshape(x.shape)).sum().backward()
        grads[name] = [x.grad.clone()] + [p.grad.clone() for p in (pam.query_conv.weight, pam.key_conv.weight,
                                                                     pam.value_conv.weight)]
    for a, b in zip(grads["fused"], grads["sdpa"], strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


def test_pam_channels_last_input(kernel: object) -> None:
    pam = PAM(32)
    x = torch.randn(2, 32, 8, 8)
    xc = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(pam.attention_fused(xc), pam.attention_explicit(x), atol=1e-5, rtol=1e-4)


def test_bfloat16_autocast_within_tolerance(kernel: object) -> None:
    """Under CPU bf16 autocast the 1x1 convolutions run in bf16 and the kernel in float32: the
    output stays within 2% of the float32 module (relative to the output's scale)."""
    torch.manual_seed(1)
    pam = PAM(32)
    with torch.no_grad():
        pam.gamma.fill_(1.0)
    x = torch.randn(2, 32, 16, 16)
    ref = pam(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = pam(x)
    assert torch.isfinite(y).all()
    err = (y.float() - ref).abs().max().item()
    assert err <= 0.02 * ref.abs().max().item()


def test_disabled_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DERMASEG_FAST_ATTENTION", "0")
    assert not fast_attention.enabled()
    monkeypatch.setenv("DERMASEG_FAST_ATTENTION", "1")
    assert fast_attention.enabled()


def test_inference_under_tracing_uses_sdpa(kernel: object) -> None:
    """TorchScript tracing (and ONNX export, which traces) sees the portable SDPA path."""
    pam = PAM(16).eval()
    x = torch.randn(1, 16, 8, 8)
    traced = torch.jit.trace(pam, x)
    assert "scaled_dot_product_attention" in str(traced.graph)
    torch.testing.assert_close(traced(x), pam(x), atol=1e-5, rtol=1e-4)

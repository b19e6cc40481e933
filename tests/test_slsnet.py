"""Tests of the SLSNet generator, discriminator, config and registry (tiny inputs)."""

from __future__ import annotations

import json

import pytest
import torch

from dermaseg_app.ml.registry import (
    ARCHITECTURES,
    build_discriminator,
    build_generator,
    default_config,
)
from dermaseg_app.ml.slsnet import SLSNetConfig, SLSNetDiscriminator, SLSNetGenerator


def _nparams(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(scope="module")
def generator() -> SLSNetGenerator:
    torch.manual_seed(0)
    return SLSNetGenerator().eval()


def test_generator_parameter_count_matches_paper(generator: SLSNetGenerator) -> None:
    n = _nparams(generator)
    assert abs(n - 2_350_000) / 2_350_000 < 0.02, n
    assert abs(n - 2_347_744) < 1000, n  # the scratch build of the architecture doc


def test_discriminator_parameter_count() -> None:
    n = _nparams(SLSNetDiscriminator())
    assert abs(n - 690_000) / 690_000 < 0.02, n


@pytest.mark.parametrize("size", [(32, 32), (64, 64), (128, 128), (48, 64)])
def test_generator_output_is_probability_map(
    generator: SLSNetGenerator, size: tuple[int, int]
) -> None:
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        y = generator(x)
        logits = generator.forward_logits(x)
    assert y.shape == (2, 1, *size)
    assert y.dtype == torch.float32
    assert (y >= 0).all() and (y <= 1).all()
    torch.testing.assert_close(torch.sigmoid(logits), y)


def test_generator_rejects_size_not_divisible_by_8(generator: SLSNetGenerator) -> None:
    with pytest.raises(ValueError, match="divisible by 8"):
        generator(torch.rand(1, 3, 36, 32))


def test_generator_trains_one_step() -> None:
    torch.manual_seed(0)
    g = SLSNetGenerator()
    opt = torch.optim.Adam(g.parameters(), lr=1e-3)
    x = torch.rand(2, 3, 32, 32)
    target = (torch.rand(2, 1, 32, 32) > 0.5).float()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(g.forward_logits(x), target)
    loss.backward()
    # gradients reach the attention gammas and the first convolutions
    assert g.down1.pam.gamma.grad is not None
    assert g.multiscale.convs[0].weight.grad.abs().sum() > 0
    opt.step()


def test_discriminator_patch_map() -> None:
    d = SLSNetDiscriminator().eval()
    with torch.no_grad():
        y = d(torch.rand(2, 4, 128, 128))
        y64 = d(torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64))
    assert y.shape == (2, 1, 15, 15)
    assert (y >= 0).all() and (y <= 1).all()
    assert y64.shape == (1, 1, 7, 7)
    with pytest.raises(ValueError, match="expects"):
        d(torch.rand(1, 3, 64, 64))


def test_config_round_trip_through_json() -> None:
    cfg = SLSNetConfig(stage2_dilations=(1, 2, 4, 8), stage2_dropout=0.2, input_size=64)
    data = json.loads(json.dumps(cfg.to_dict()))
    back = SLSNetConfig.from_dict(data)
    assert back == cfg
    assert back.stage2_dilations == (1, 2, 4, 8)
    assert SLSNetConfig().input_size == 128
    assert SLSNetConfig.from_dict(None) == SLSNetConfig()


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="unknown SLSNet config keys: bogus"):
        SLSNetConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="multiple of 8"):
        SLSNetConfig(input_size=100)
    with pytest.raises(ValueError, match="stage2_dropout"):
        SLSNetConfig(stage2_dropout=1.5)


def test_config_changes_the_network() -> None:
    g = SLSNetGenerator(SLSNetConfig(stage2_dilations=(2, 4)))
    assert len(g.stage2) == 2
    assert _nparams(g) < 2_000_000


def test_registry_builds_and_rejects_unknown() -> None:
    assert "slsnet" in ARCHITECTURES
    g = build_generator("slsnet", None)
    assert isinstance(g, SLSNetGenerator)
    g2 = build_generator("slsnet", {"stage1_dropout": 0.0})
    assert g2.config.stage1_dropout == 0.0
    assert isinstance(build_discriminator("slsnet", default_config("slsnet")), SLSNetDiscriminator)
    with pytest.raises(ValueError, match=r"unknown generator architecture 'unet'; known: .*slsnet"):
        build_generator("unet", None)
    with pytest.raises(ValueError, match="known: slsnet"):
        build_discriminator("nope", None)


def test_mac_counts_match_the_paper(generator: SLSNetGenerator) -> None:
    from dermaseg_app.ml.complexity import count_macs, mac_breakdown

    conv = count_macs(generator, 128)
    assert abs(conv - 0.894e9) / 0.894e9 < 0.01, conv
    total = count_macs(generator, 128, include_attention=True)
    assert 2.0e9 < total < 2.2e9, total
    # convolution MACs scale with the pixel count; attention products faster (N^2)
    small = mac_breakdown(generator, 64)
    assert small.conv * 4 == conv
    assert small.attention * 4 < total - conv
    assert generator.training is False


def test_count_parameters_and_describe(generator: SLSNetGenerator) -> None:
    from dermaseg_app.ml.complexity import count_parameters, describe, stage_table

    assert count_parameters(generator) == _nparams(generator)
    rows = stage_table(generator, 64)
    assert [r.name for r in rows][:3] == ["multiscale", "down1", "down2"]
    assert rows[-1].output_shape == (1, 64, 64)
    assert sum(r.params for r in rows) == count_parameters(generator)
    text = describe(generator, 64)
    assert "bridge" in text and "2,347,872" in text and "MACs at 64x64" in text


def test_count_macs_keeps_training_mode() -> None:
    from dermaseg_app.ml.complexity import count_macs

    d = SLSNetDiscriminator().train()
    assert count_macs(d, 64) > 0
    assert d.training is True


def _randomize_inference_state(model: torch.nn.Module) -> None:
    """Non-trivial BN statistics and attention gammas, as after training."""
    torch.manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "gamma") and isinstance(m.gamma, torch.nn.Parameter):
                m.gamma.uniform_(0.1, 0.5)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_inference_model_equals_eval_model(channels_last: bool) -> None:
    from dermaseg_app.ml.optimize import fuse_for_inference

    torch.manual_seed(0)
    g = SLSNetGenerator()
    _randomize_inference_state(g)
    g.eval()
    fused = fuse_for_inference(g, channels_last=channels_last)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert g.training is False and any(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules())
    x = torch.rand(2, 3, 48, 64)
    with torch.no_grad():
        ref_logits = g.forward_logits(x)
        torch.testing.assert_close(fused.forward_logits(x), ref_logits, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(fused(x), g(x), atol=1e-4, rtol=1e-4)
    assert fused.config == g.config
    # the fused PAM feeds the flash SDPA kernel directly (no N x N matrix)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]), torch.no_grad():
        torch.testing.assert_close(fused(x[:1]), g(x[:1]), atol=1e-4, rtol=1e-4)


def test_fused_discriminator_equals_eval_model() -> None:
    from dermaseg_app.ml.optimize import fuse_for_inference

    d = SLSNetDiscriminator()
    _randomize_inference_state(d)
    d.eval()
    fused = fuse_for_inference(d)
    x = torch.rand(1, 4, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fused.forward_logits(x), d.forward_logits(x), atol=1e-4, rtol=1e-4)


def test_fuse_keeps_every_tensor_on_the_model_device() -> None:
    """Built on the meta device, any tensor created on the CPU by the fusion would show (this
    stands in for CUDA, which the test machine lacks)."""
    from dermaseg_app.ml.optimize import fuse_for_inference

    for cls in (SLSNetGenerator, SLSNetDiscriminator):
        with torch.device("meta"):
            model = cls().eval()
        fused = fuse_for_inference(model, channels_last=True)
        tensors = list(fused.parameters()) + list(fused.buffers())
        assert {t.device.type for t in tensors} == {"meta"}

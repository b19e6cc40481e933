"""The seed papers' segmenters (ml.networks), their losses (ml.losses_seeds) and how the registry,
the weights files, the predictor, ``dermaseg info`` and the MAC counter handle them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dermaseg_app.ml import registry
from dermaseg_app.ml.complexity import count_macs, count_parameters, stage_table
from dermaseg_app.ml.losses_seeds import (
    LOSSES,
    dice_focal_loss,
    end_point_error,
    focal_loss,
    loss_terms,
    nll_epe_loss,
    paper_loss,
    soft_dice_loss,
)
from dermaseg_app.ml.networks import (
    DualAttentionUNet,
    DualAttentionUNetConfig,
    MobileDeepLab,
    MobileDeepLabConfig,
    SLSDeep,
)

SEEDS = ("mobile_deeplab", "slsdeep", "dual_attention_unet")
# Small configurations for the tests that train, save and predict (the full SLSDeep has 61 M
# parameters); forward shapes and parameter counts are checked on the defaults.
SMALL: dict[str, dict] = {
    "mobile_deeplab": {},
    "slsdeep": {"layers": [1, 1, 1, 1], "base_width": 8, "stem_channels": 16, "pyramid_channels": 16,
                "decoder_channels": [32, 16], "dropout": 0.0},  # no dropout: 16 maps are too few to drop half
    "dual_attention_unet": {"widths": [8, 16, 32, 64]},
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    yield


def _small(arch: str, size: int = 32) -> torch.nn.Module:
    torch.manual_seed(0)
    return registry.build_generator(arch, {**SMALL[arch], "input_size": size})


# ------------------------------------------------------------------ forward


@pytest.mark.parametrize("arch", SEEDS)
@pytest.mark.parametrize("size", [32, 64])
def test_forward_at_32_and_64_px(arch, size):
    torch.manual_seed(0)
    net = registry.build_generator(arch).eval()
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        prob = net(x)
        logits = net.forward_logits(x)
    assert prob.shape == (2, 1, size, size)
    assert torch.isfinite(prob).all() and prob.min() >= 0 and prob.max() <= 1
    torch.testing.assert_close(prob, torch.sigmoid(logits))
    assert not getattr(net, "outputs_logits", False)  # forward is the probability (predictor contract)


@pytest.mark.parametrize("arch", SEEDS)
def test_non_square_input_and_bad_inputs(arch):
    net = _small(arch).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 3, 32, 48)).shape == (1, 1, 32, 48)
    with pytest.raises(ValueError, match="divisible by 8"):
        net(torch.rand(1, 3, 36, 36))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.rand(1, 1, 32, 32))


# ------------------------------------------------------------------ sizes


def test_mobile_deeplab_parameter_count_matches_the_paper():
    # Seed 002, Table 2 and abstract: "0.4 M" parameters (rounded to one digit, as every count
    # of that table), conclusion: "less than half a million". The same head with alpha = 1.0
    # gives Table 2's "2 M".
    n = count_parameters(MobileDeepLab())
    assert n == 440_417
    assert 350_000 <= n < 450_000 and n < 500_000
    n1 = count_parameters(MobileDeepLab(MobileDeepLabConfig(alpha=1.0)))
    assert 1_500_000 <= n1 < 2_500_000
    # the full DeepLabv3+ head (atrous ASPP and decoder) would contradict "less than half a million"
    full = count_parameters(MobileDeepLab(MobileDeepLabConfig(aspp_rates=(6, 12, 18), decoder=True)))
    assert full > 500_000


def test_mobile_deeplab_widths_follow_mobilenet_rounding():
    net = MobileDeepLab()
    assert net.stem[0].out_channels == 16  # make_divisible(32 * 0.35) = 16
    outs = [b.conv[-1][0].out_channels for b in list(net.encoder_low) + list(net.encoder_high)]
    assert outs == [8, 8, 8, 16, 16, 16, 24, 24, 24, 24, 32, 32, 32, 56, 56, 56, 112]
    depthwise = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == 17 and all(m.groups == m.in_channels for m in depthwise)
    # output stride 16: the last stages dilated instead of strided
    assert max(m.dilation[0] for m in depthwise) == 2
    os8 = MobileDeepLab(MobileDeepLabConfig(output_stride=8))
    assert max(m.dilation[0] for m in os8.modules() if isinstance(m, torch.nn.Conv2d)) == 4


def test_slsdeep_parameter_count():
    # Seed 003 gives no count; its layout (ResNet-50 at 1/8, a 1024-map pyramid per level, 6144
    # maps into the decoder) fixes most of it: ResNet-50's trunk is 23.5 M, the pyramid 8.4 M,
    # the first decoder convolution (6144 -> 512, 3x3) 28.3 M.
    net = SLSDeep()
    assert count_parameters(net) == 61_390_145
    assert net.pyramid.out_channels == 6144
    trunk = sum(count_parameters(m) for m in (net.stem, net.layer1, net.layer2, net.layer3, net.layer4))
    assert abs(trunk - 23_500_000) < 0.01 * 23_500_000  # ResNet-50 without its classifier: 23.51 M


def test_slsdeep_encoder_ends_at_one_eighth():
    net = SLSDeep().eval()
    rows = {r.name: r.output_shape for r in stage_table(net, 64)}
    assert rows["layer1"] == (256, 16, 16)
    assert rows["layer2"] == (512, 8, 8)
    assert rows["layer4"] == (2048, 8, 8)
    assert rows["pyramid"] == (6144, 8, 8)


def test_dual_attention_unet_parameter_count():
    # Seed 004 gives neither widths nor a count; widths 32, 64, 128, 256 (docs/seed-networks.md).
    net = DualAttentionUNet()
    assert count_parameters(net) == 3_847_419
    plain = DualAttentionUNet(DualAttentionUNetConfig(dual_attention=False))
    assert count_parameters(plain) < count_parameters(net)


@pytest.mark.parametrize("arch", SEEDS)
def test_macs_count_every_convolution(arch):
    net = _small(arch)
    macs = count_macs(net, 32)
    assert macs > 0
    assert count_macs(net, 64) == pytest.approx(4 * macs, rel=0.05)  # convolutions scale with area
    assert count_macs(net, 32, include_attention=True) == macs  # no PAM/CAM products


def test_depthwise_convolution_macs():
    from dermaseg_app.ml.complexity import mac_breakdown

    conv = torch.nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)
    conv.config = None
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1), conv, torch.nn.Flatten(), torch.nn.LazyLinear(4))
    model(torch.zeros(1, 3, 4, 4))
    counts = mac_breakdown(model, 4)
    assert counts.conv == 16 * 8 * 3 + 16 * 8 * 9 + 4 * 128


# ------------------------------------------------------------------ registry


def test_registry_knows_every_network_and_which_have_discriminators():
    assert set(SEEDS) | {"slsnet"} == set(registry.ARCHITECTURES)
    assert registry.has_discriminator("slsnet")
    for arch in SEEDS:
        assert not registry.has_discriminator(arch)
        with pytest.raises(ValueError, match="no discriminator"):
            registry.build_discriminator(arch)
        cfg = registry.default_config(arch)
        assert registry.build_generator(arch, cfg) is not None
        assert type(registry.build_generator(arch, cfg).config).from_dict(cfg).to_dict() == cfg
        assert paper_loss(arch) in LOSSES and registry.paper_loss(arch) == paper_loss(arch)
        net = registry.build_generator(arch, cfg)
        assert all(hasattr(net, n) for n in registry.encoder_module_names(arch))
    assert registry.paper_loss("slsnet") is None
    with pytest.raises(ValueError, match="unknown"):
        registry.has_discriminator("nope")
    with pytest.raises(ValueError, match="unknown .* config keys"):
        registry.build_generator("slsdeep", {"bogus": 1})


def test_default_input_sizes_are_the_papers():
    assert registry.default_config("mobile_deeplab")["input_size"] == 512
    assert registry.default_config("slsdeep")["input_size"] == 384
    assert registry.default_config("dual_attention_unet")["input_size"] == 224


# ------------------------------------------------------------------ losses


def _two_by_two():
    logits = torch.zeros(1, 1, 2, 2)  # p = 0.5 everywhere
    target = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
    return logits, target


def test_soft_dice_known_value():
    logits, target = _two_by_two()
    # 2 * sum(p y) = 2, sum p + sum y = 4: 1 - (2 + 1) / (4 + 1)
    assert soft_dice_loss(logits, target).item() == pytest.approx(0.4)
    assert soft_dice_loss(torch.full((1, 1, 2, 2), 30.0), torch.ones(1, 1, 2, 2)).item() == pytest.approx(0, abs=1e-6)


def test_end_point_error_known_value_and_gradient_at_zero():
    logits, target = _two_by_two()
    # one pixel where both forward differences exist: M_x = M_y = 0, G_x = 1, G_y = 0
    assert end_point_error(torch.sigmoid(logits), target).item() == pytest.approx(1.0)
    diag = torch.tensor([[[[0.0, 0.0], [0.0, 1.0]]]])
    m = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]])  # M_x = M_y = 1, G = 0: sqrt(2)
    assert end_point_error(m, diag).item() == pytest.approx(math.sqrt(2))
    p = target.clone().requires_grad_(True)
    epe = end_point_error(p, target)
    epe.backward()
    assert epe.item() == 0 and torch.isfinite(p.grad).all()


def test_nll_epe_known_value():
    logits, target = _two_by_two()
    assert nll_epe_loss(logits, target).item() == pytest.approx(math.log(2) + 0.5 * 1.0)
    terms = loss_terms("nll_epe", logits, target)
    assert set(terms) == {"loss", "nll", "epe"}


def test_focal_and_dice_focal_known_values():
    logits, target = _two_by_two()
    # p = 0.5: each pixel -(0.5^2) log 0.5
    assert focal_loss(logits, target).item() == pytest.approx(0.25 * math.log(2))
    assert dice_focal_loss(logits, target).item() == pytest.approx(0.4 + 0.25 * math.log(2))
    # a confident right answer costs almost nothing, a confident wrong one a lot
    sure = torch.where(target > 0, 20.0, -20.0)
    assert focal_loss(sure, target).item() < 1e-6
    assert focal_loss(-sure, target).item() > 10
    # stable at saturated logits
    assert torch.isfinite(dice_focal_loss(torch.full((1, 1, 2, 2), 200.0), target))


def test_unknown_loss():
    with pytest.raises(ValueError, match="unknown loss"):
        loss_terms("l7", *_two_by_two())


# ------------------------------------------------------------------ training


def _disk_batch(n: int = 4, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks, images = [], []
    for i in range(n):
        cy, cx, r = 10 + 3 * i, 14 + 2 * i, 6 + i
        m = (((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r).float()
        img = 0.75 - 0.45 * m[None].repeat(3, 1, 1) + 0.05 * torch.rand(3, size, size, generator=g)
        masks.append(m[None])
        images.append(img)
    return torch.stack(images), torch.stack(masks)


@pytest.mark.parametrize("arch", SEEDS)
def test_a_few_training_steps_with_the_papers_loss_reduce_it(arch):
    net = _small(arch)
    net.train()
    x, y = _disk_batch()
    name = registry.paper_loss(arch)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = loss_terms(name, net.forward_logits(x), y)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3]), losses


# ------------------------------------------------------------------ weights, predictor, info


def _save(arch: str, folder, size: int = 32):
    from dermaseg_app.ml.weights import ModelInfo, save_model

    net = _small(arch, size)
    config = {**registry.default_config(arch), **SMALL[arch], "input_size": size}
    info = ModelInfo(name=f"random-{arch}", version="0", arch=arch, config=config, input_size=size, threshold=0.5)
    return net, save_model(folder / f"{arch}.safetensors", net, info)


@pytest.mark.parametrize("arch", SEEDS)
def test_save_and_load_through_the_registry(arch, tmp_path):
    from dermaseg_app.ml.weights import load_model, read_model_info

    net, path = _save(arch, tmp_path)
    assert read_model_info(path).arch == arch
    loaded, info = load_model(path)
    assert info.arch == arch and type(loaded) is type(net)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net.eval()(x))


@pytest.mark.parametrize("arch", SEEDS)
def test_the_predictor_runs_each_architecture(arch, tmp_path):
    from dermaseg_app.ml.predictor import Predictor

    net, path = _save(arch, tmp_path)
    predictor = Predictor(path, device="cpu", backend="torch")
    rgb = (np.random.default_rng(0).random((45, 61, 3)) * 255).astype(np.uint8)
    prediction = predictor.predict(rgb)
    assert prediction.shape == (45, 61)
    assert 0 <= prediction.prob.min() and prediction.prob.max() <= 1
    # the predictor's inference form computes what the network does
    from dermaseg_app.ml.preprocessing import preprocess

    x = torch.from_numpy(preprocess(rgb, 32))[None]
    with torch.no_grad():
        expected = net.eval()(x)[0, 0].numpy()
    np.testing.assert_allclose(predictor._torch_probabilities(x.numpy())[0], expected, atol=1e-5)


@pytest.mark.parametrize("arch", SEEDS)
def test_info_shows_size_and_cost(arch, tmp_path, capsys):
    from dermaseg_app import cli

    net, path = _save(arch, tmp_path)
    assert cli.main(["info", "--model", str(path), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"architecture: {arch}" in out
    assert f"parameters: {count_parameters(net):,}" in out
    assert "MACs at 32x32" in out


def test_info_describes_an_architecture_without_weights(capsys):
    from dermaseg_app import cli

    assert cli.main(["info", "--arch", "mobile_deeplab", "--size", "64"]) == 0
    out = capsys.readouterr().out
    assert "parameters: 440,417" in out and "MACs at 64x64" in out and "no discriminator" in out
    assert cli.main(["info", "--arch", "nope"]) == 2


@pytest.mark.gui
def test_the_window_loads_and_runs_a_seed_network(qtbot, tmp_path, sample_folder):
    """The window opens a Mobile DeepLab model file like an SLSNet one and draws its prediction."""
    pytest.importorskip("pytestqt")
    from types import SimpleNamespace

    from dermaseg_app.gui.app import build_window

    _, path = _save("mobile_deeplab", tmp_path)
    folder = sample_folder(["ISIC_0000169"])
    window = build_window(SimpleNamespace(paths=[], model=str(path), device="cpu", masks=None))
    qtbot.addWidget(window)
    window.show()
    try:
        with qtbot.waitSignal(window.view.drawn, timeout=60000,
                              check_params_cb=lambda row, has_pred, compared: has_pred):
            assert window.open_paths([folder]) == 1
        assert window.session.current_images().prob is not None
        assert "random-mobile_deeplab" in window.model_label.text()
    finally:
        window.close()
        window.session.stop_background(wait=True, timeout=10)
        window.session.wait_for_model(60)


@pytest.mark.parametrize("arch", SEEDS)
def test_inference_fusion_folds_every_batchnorm(arch):
    from dermaseg_app.ml.optimize import fuse_for_inference

    net = _small(arch)
    for m in net.modules():  # trained-looking statistics, so that folding changes the weights
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    net.eval()
    fused = fuse_for_inference(net)
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.Dropout, torch.nn.Dropout2d)) for m in fused.modules())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), net(x), atol=1e-5, rtol=1e-4)


def test_mobile_deeplab_trains_on_a_batch_of_one():
    net = _small("mobile_deeplab").train()
    loss = loss_terms("soft_dice", net.forward_logits(torch.rand(1, 3, 32, 32)), torch.ones(1, 1, 32, 32))["loss"]
    loss.backward()
    assert torch.isfinite(loss)


@pytest.mark.parametrize("arch", SEEDS)
def test_predict_command_runs_each_architecture(arch, tmp_path, sample_folder):
    from dermaseg_app import cli
    from dermaseg_app.core.imageio import read_image

    _, path = _save(arch, tmp_path)
    images = sample_folder(["ISIC_0000169"])
    out = tmp_path / "masks"
    assert cli.main(["predict", str(images), "--out", str(out), "--model", str(path), "--backend", "torch"]) == 0
    mask = out / "ISIC_0000169.png"
    assert mask.is_file() and read_image(mask).shape[:2] == read_image(images / "ISIC_0000169.jpg").shape[:2]

"""The engine trains every architecture (issue 18): the seed networks without a discriminator,
supervised with their paper's loss, at 32 px on the bundled replay set or the tiny synthetic one;
published models load with their architecture, runs resume exactly, fine-tuning works."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from test_training import NO_AUG, TINY, data  # noqa: F401 - the module's data fixture

from dermaseg_app.ml import registry
from dermaseg_app.ml import training as t
from dermaseg_app.ml.training import TrainConfig, load_checkpoint, train

ROOT = Path(__file__).resolve().parents[1]
REPLAY = ROOT / "resources" / "replay"

# Small enough for a test (SLSDeep's paper reading has 61 M parameters); the paper's shapes otherwise.
SMALL: dict[str, dict[str, object]] = {
    "mobile_deeplab": {},  # 0.44 M parameters as it is
    "slsdeep": {"stem_channels": 8, "layers": [1, 1, 1, 1], "base_width": 4, "pyramid_bins": [1, 2],
                "pyramid_channels": 16, "decoder_channels": [16, 8]},
    "dual_attention_unet": {"widths": [8, 8, 16, 16], "reduction": 4},
    "slsnet": dict(TINY),
}
PARTS = {"mobile_deeplab": {"dice"}, "slsdeep": {"nll", "epe"}, "dual_attention_unet": {"dice", "focal"}}
SEEDS = sorted(PARTS)


def config(arch: str, folders: dict[str, Path], tmp: Path, **kw: object) -> TrainConfig:
    cfg = TrainConfig(
        data=[str(folders["train"])], val=[str(folders["val"])], run_dir=str(tmp / "run"), arch=arch,
        model_config=dict(SMALL[arch]), input_size=32, epochs=1, batch_size=2, max_steps_per_epoch=2,
        num_threads=1, pack_dir=str(folders["pack"]), seed=5, augment=NO_AUG, lr=1e-3,
    )
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def of(events: list[object], kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


@pytest.mark.parametrize("arch", SEEDS)
def test_each_seed_network_trains_publishes_and_loads(arch: str, data: dict[str, Path],  # noqa: F811
                                                      tmp_path: Path) -> None:
    out = tmp_path / f"{arch}.safetensors"
    cfg = config(arch, data, tmp_path, out=str(out), warmup_epochs=0.0)
    events = list(train(cfg))
    assert cfg.adversarial is True and cfg.model_name == "slsnet"  # the caller's config is not changed
    steps = of(events, t.StepProgress)
    assert len(steps) == 2 and not any(s.adversarial for s in steps)
    for s in steps:
        assert PARTS[arch] | {"g"} <= set(s.losses) and "d" not in s.losses and "adv" not in s.losses
        assert all(math.isfinite(v) for v in s.losses.values())
    assert "dice" in t.format_event(steps[0]) or "nll" in t.format_event(steps[0])

    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["discriminator"] is None and ckpt["opt_d"] is None
    assert ckpt["config"]["arch"] == arch and ckpt["config"]["adversarial"] is False
    torch.manual_seed(cfg.seed)  # the engine's initialisation: the weights moved from it
    model_cfg = registry.default_config(arch) | SMALL[arch] | {"input_size": 32}
    fresh = registry.build_generator(arch, model_cfg).state_dict()
    trained = ckpt["generator"]
    assert any(not torch.equal(fresh[k], trained[k]) for k in fresh if fresh[k].is_floating_point())

    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {f"train_{p}" for p in PARTS[arch]} <= set(history[0]) and "train_d" not in history[0]

    from dermaseg_app.ml.predictor import Predictor
    from dermaseg_app.ml.weights import card_path, load_model

    net, info = load_model(out, "cpu")
    assert info.arch == arch and info.name == arch and type(net) is type(registry.build_generator(arch, model_cfg))
    predictor = Predictor(out, "cpu", backend="torch")
    assert predictor.info.arch == arch
    prediction = predictor.predict(np.full((40, 48, 3), 128, np.uint8))
    assert prediction.shape == (40, 48)
    card = card_path(out).read_text()
    assert arch in card and "supervised" in card
    for word in ("GAN", "adversarial", "discriminator", "warm-up"):
        assert word not in card, f"the card of {arch} mentions {word!r}"


def test_a_seed_network_resumes_exactly(data: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    """Cancelled mid-epoch (a checkpoint without D) and resumed: the same weights, EMA and Adam
    state as the run that went straight through."""
    kw = dict(epochs=2, max_steps_per_epoch=3, ema_decay=0.9, lr_schedule="cosine")
    arch = "dual_attention_unet"
    straight = list(train(config(arch, data, tmp_path / "straight", **kw)))
    assert of(straight, t.TrainFinished)

    cancel = threading.Event()
    first: list[object] = []
    for event in train(config(arch, data, tmp_path / "cut", **kw), cancel):
        first.append(event)
        if isinstance(event, t.StepProgress) and event.global_step == 4:  # mid-epoch 2
            cancel.set()
    assert of(first, t.TrainCancelled)
    last = tmp_path / "cut" / "run" / "last.pt"
    assert load_checkpoint(last)["global_step"] == 4
    resumed = list(train(TrainConfig(resume=str(last))))
    assert of(resumed, t.TrainStarted)[0].start_step == 1 and of(resumed, t.TrainFinished)

    a, b = load_checkpoint(tmp_path / "straight" / "run" / "last.pt"), load_checkpoint(last)
    assert a["discriminator"] is None and b["discriminator"] is None and b["opt_d"] is None
    for key in ("generator", "ema"):
        assert a[key].keys() == b[key].keys()
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs"
    for pid, state in a["opt_g"]["state"].items():
        for name, value in state.items():
            other = b["opt_g"]["state"][pid][name]
            assert torch.equal(value, other) if torch.is_tensor(value) else value == other
    assert a["global_step"] == b["global_step"] == 6
    assert [r["val_jsc"] for r in a["history"]] == [r["val_jsc"] for r in b["history"]]


def test_a_gan_asked_of_a_network_without_discriminator_is_turned_off_with_a_notice(
        data: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    cfg = config("mobile_deeplab", data, tmp_path, warmup_epochs=1.0, adv_weight=2.0, max_steps_per_epoch=1)
    events = list(train(cfg))
    started = of(events, t.TrainStarted)[0]
    assert started.notice and "no discriminator" in started.notice and "soft_dice" in started.notice
    assert not any(s.adversarial for s in of(events, t.StepProgress))
    assert "no discriminator" in t.format_event(started)


def test_a_named_loss_replaces_the_paper_loss(data: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    events = list(train(config("mobile_deeplab", data, tmp_path, loss="dice_focal", max_steps_per_epoch=1)))
    assert {"dice", "focal", "g"} <= set(of(events, t.StepProgress)[0].losses)
    # SLSNet with a named loss: it replaces L1 + soft Jaccard, the adversarial term stays
    cfg = config("slsnet", data, tmp_path / "sls", loss="nll_epe", max_steps_per_epoch=1)
    losses = of(list(train(cfg)), t.StepProgress)[0].losses
    assert {"nll", "epe", "adv", "d", "g"} <= set(losses) and "l1" not in losses and "jaccard" not in losses
    with pytest.raises(t.TrainError, match="unknown loss"):
        config("slsdeep", data, tmp_path, loss="nope").check()
    with pytest.raises(t.TrainError, match="unknown architecture"):
        TrainConfig(data=[str(data["train"])], arch="nope").check()


@pytest.mark.parametrize("arch", SEEDS)
def test_freeze_encoder_uses_the_architectures_encoder(arch: str) -> None:
    g = registry.build_generator(arch, registry.default_config(arch) | SMALL[arch] | {"input_size": 32})
    n = t.freeze_encoder(g, arch)
    frozen = {id(p) for name in registry.encoder_module_names(arch) for p in getattr(g, name).parameters()}
    assert n == sum(p.numel() for p in g.parameters() if id(p) in frozen) > 0
    assert all(not p.requires_grad for p in g.parameters() if id(p) in frozen)
    assert any(p.requires_grad for p in g.parameters())
    t.set_train_mode(g, True, arch=arch)
    assert all(not getattr(g, name).training for name in registry.encoder_module_names(arch))


def test_train_and_finetune_commands_with_a_seed_network(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``dermaseg train --arch`` on the bundled replay set at 32 px, then ``dermaseg finetune``
    from the model it published (the arch from the model; the encoder frozen; --adversarial
    turned off with a note)."""
    from dermaseg_app.cli import main

    out = tmp_path / "md.safetensors"
    common = ["--input-size", "32", "--epochs", "1", "--max-steps-per-epoch", "2", "--batch-size", "2",
              "--threads", "1", "--pack-dir", str(tmp_path / "packs"), "--no-augment"]
    code = main(["train", "--arch", "mobile_deeplab", "--data", str(REPLAY), "--out", str(out),
                 "--run-dir", str(tmp_path / "run"), *common])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "dice" in text and "epoch 1/1 done" in text
    from dermaseg_app.ml.weights import load_model, read_model_info

    assert read_model_info(out).arch == "mobile_deeplab"
    code = main(["train", "--resume", str(tmp_path / "run" / "last.pt"), "--epochs", "2"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "resuming at epoch 2 step 0" in text and "epoch 2/2 done" in text

    ft = tmp_path / "ft.safetensors"
    code = main(["finetune", "--base", str(out), "--data", str(REPLAY), "--out", str(ft), "--replay-share", "0",
                 "--freeze-encoder", "--adversarial", "--run-dir", str(tmp_path / "ft_run"),
                 "--epochs", "1", "--max-steps-per-epoch", "2", "--batch-size", "2", "--threads", "1",
                 "--pack-dir", str(tmp_path / "packs")])
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    assert "no discriminator" in captured.err
    base, _ = load_model(out, "cpu")
    tuned, info = load_model(ft, "cpu")
    assert info.arch == "mobile_deeplab" and info.version.endswith("+ft")
    b, f = base.state_dict(), tuned.state_dict()
    encoder = tuple(f"{n}." for n in registry.encoder_module_names("mobile_deeplab"))
    assert all(torch.equal(b[k], f[k]) for k in b if k.startswith(encoder))  # frozen (BN statistics too)
    assert any(not torch.equal(b[k], f[k]) for k in b if not k.startswith(encoder) and b[k].is_floating_point())
    ckpt = load_checkpoint(tmp_path / "ft_run" / "last.pt")
    assert ckpt["discriminator"] is None and ckpt["config"]["arch"] == "mobile_deeplab"

"""The training engine (ml/training/) and the train / finetune commands, on a tiny network.

Everything here runs a ~16 k-parameter SLSNet at 32 px on 12-24 synthetic pairs, one CPU thread.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from test_data import write_folder

from dermaseg_app.ml import training as t
from dermaseg_app.ml.augment import AugmentConfig
from dermaseg_app.ml.training import TrainConfig, load_checkpoint, train

TINY = {
    "multiscale_channels": 4,
    "encoder_channels": [8, 12, 16],
    "stage1_dilations": [1],
    "stage2_dilations": [2],
    "bridge_channels": 4,
    "decoder_channels": [12, 4],
    "decoder1_dilations": [1],
    "decoder2_dilations": [1],
    "discriminator_channels": [8, 8, 8],
}
NO_AUG = AugmentConfig(hflip=False, vflip=False, gammas=(1.0,), clahe_probability=0.0)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train_data")
    return {
        "train": write_folder(root / "train", 16, seed=0),
        "val": write_folder(root / "val", 6, seed=1),
        "new": write_folder(root / "new", 8, size=(48, 40), seed=2),
        "pack": root / "pack",
    }


def tiny_config(folders: dict[str, Path], tmp: Path, **kw: object) -> TrainConfig:
    cfg = TrainConfig(
        data=[str(folders["train"])], val=[str(folders["val"])], run_dir=str(tmp / "run"),
        model_config=dict(TINY), input_size=32, epochs=2, batch_size=4, lr=3e-3,
        max_steps_per_epoch=3, num_threads=1, pack_dir=str(folders["pack"]), seed=3,
    )
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def run(cfg: TrainConfig, cancel: threading.Event | None = None) -> list[object]:
    return list(train(cfg, cancel))


def of(events: list[object], kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


def test_losses_fall_on_a_fixed_tiny_set(data: dict[str, Path], tmp_path: Path) -> None:
    cfg = tiny_config(data, tmp_path, adversarial=False, augment=NO_AUG, epochs=6, lr=1e-2,
                      max_steps_per_epoch=None, val=[], val_fraction=0.0)
    events = run(cfg)
    losses = [e.losses["g"] for e in of(events, t.StepProgress)]
    assert len(losses) == 24
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4])
    ends = of(events, t.EpochEnd)
    assert ends[-1].train_losses["g"] < ends[0].train_losses["g"]
    assert all(e.val is None for e in ends)


def test_gan_run_keeps_the_best_checkpoint_and_it_loads(data: dict[str, Path], tmp_path: Path) -> None:
    from dermaseg_app.ml.weights import load_model

    out = tmp_path / "models" / "m.safetensors"
    cfg = tiny_config(data, tmp_path, epochs=3, warmup_epochs=1, ema_decay=0.9, out=str(out))
    events = run(cfg)
    steps = of(events, t.StepProgress)
    assert not steps[0].adversarial and steps[-1].adversarial  # warm-up, then the GAN
    assert "d" in steps[-1].losses and "adv" in steps[-1].losses
    ends = of(events, t.EpochEnd)
    assert len(ends) == 3 and all(e.val is not None for e in ends)
    best = max(ends, key=lambda e: e.val.jsc)
    finished = of(events, t.TrainFinished)[0]
    assert finished.best_epoch == best.epoch and finished.best_jsc == pytest.approx(best.val.jsc)
    assert finished.model_path == out and out.exists() and out.with_suffix(".md").exists()
    net, info = load_model(out)
    assert info.metrics["epoch"] == best.epoch and info.input_size == 32 and info.arch == "slsnet"
    assert info.metrics["jsc"] == pytest.approx(best.val.jsc, abs=1e-4)
    # the saved network is the validated one (the EMA): it reproduces the best validation JSC
    from dermaseg_app.ml.data import cached_pack

    val = cached_pack(data["val"], 32, full_masks=True, cache_dir=data["pack"])
    assert t.evaluate_pack(net, val, torch.device("cpu")).mean.jsc == pytest.approx(best.val.jsc, abs=1e-4)
    run_dir = tmp_path / "run"
    assert (run_dir / "best.safetensors").exists()
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3 and "val_jsc" in lines[0]
    assert (run_dir / "metrics.csv").read_text().startswith("epoch,global_step")


def _state(path: Path) -> dict:
    return load_checkpoint(path)


def test_resume_after_cancel_matches_an_uninterrupted_run(data: dict[str, Path], tmp_path: Path) -> None:
    kw = dict(epochs=2, warmup_epochs=0.5, ema_decay=0.9)
    straight = run(tiny_config(data, tmp_path / "a", **kw))
    assert of(straight, t.TrainFinished)

    cancel = threading.Event()
    cfg = tiny_config(data, tmp_path / "b", **kw)
    events = []
    for e in train(cfg, cancel):
        events.append(e)
        if isinstance(e, t.StepProgress) and e.global_step == 5:  # epoch 2, step 2
            cancel.set()
    stopped = of(events, t.TrainCancelled)
    assert stopped and stopped[0].epoch == 2 and stopped[0].step == 2
    assert stopped[0].best_epoch == 1 and stopped[0].model_path is not None and stopped[0].model_path.exists()
    ckpt = _state(stopped[0].checkpoint_path)  # loads with weights_only=True
    assert ckpt["epoch"] == 1 and ckpt["step"] == 2 and ckpt["global_step"] == 5

    resumed = run(TrainConfig(resume=str(stopped[0].checkpoint_path), epochs=2))
    started = of(resumed, t.TrainStarted)[0]
    assert (started.start_epoch, started.start_step) == (2, 2)
    assert [e.global_step for e in of(resumed, t.StepProgress)] == [6]
    a = _state(tmp_path / "a" / "run" / "last.pt")
    b = _state(tmp_path / "b" / "run" / "last.pt")
    for key in ("generator", "discriminator", "ema"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs after resume"
    assert a["history"][-1]["val_jsc"] == b["history"][-1]["val_jsc"]
    assert a["history"][-1]["train_g"] == pytest.approx(b["history"][-1]["train_g"], rel=1e-6)


def test_cancel_before_any_epoch_keeps_a_resumable_checkpoint(data: dict[str, Path], tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    events = run(tiny_config(data, tmp_path, adversarial=False), cancel)
    assert len(of(events, t.StepProgress)) == 1
    stopped = of(events, t.TrainCancelled)[0]
    assert stopped.best_jsc is None and stopped.model_path is None
    assert not of(events, t.EpochEnd) and not of(events, t.TrainFinished)
    assert _state(stopped.checkpoint_path)["global_step"] == 1


def test_same_seed_same_weights_other_seed_differs(data: dict[str, Path], tmp_path: Path) -> None:
    kw = dict(epochs=1, max_steps_per_epoch=2, warmup_epochs=0.0)
    run(tiny_config(data, tmp_path / "a", **kw))
    run(tiny_config(data, tmp_path / "b", **kw))
    run(tiny_config(data, tmp_path / "c", seed=4, **kw))
    a, b, c = (_state(tmp_path / x / "run" / "last.pt")["generator"] for x in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_finetune_with_replay_and_frozen_encoder(data: dict[str, Path], tmp_path: Path) -> None:
    from dermaseg_app.ml.weights import load_model

    base = _tiny_base(tmp_path)
    out = tmp_path / "ft.safetensors"
    cfg = t.finetune_config(base, [data["new"]], out, replay=[data["train"]], replay_share=0.5,
                            freeze_encoder=True, epochs=2, batch_size=4, val_fraction=0.25,
                            run_dir=str(tmp_path / "run"), num_threads=1, pack_dir=str(data["pack"]))
    assert cfg.input_size == 32 and not cfg.adversarial and cfg.model_version == "1+ft"
    with pytest.raises(t.TrainError, match="unknown training setting"):
        t.finetune_config(base, [data["new"]], out, epochz=3)
    events = run(cfg)
    started = of(events, t.TrainStarted)[0]
    assert (started.n_train, started.n_replay, started.n_val) == (6, 16, 2)
    assert started.steps_per_epoch == 3  # 6 new pairs, 2 per batch of 4 (the other 2 replayed)
    tuned, info = load_model(out)
    assert info.version == "1+ft" and "fine-tuned on" in info.trained_on
    before, _ = load_model(base)
    sb, sa = before.state_dict(), tuned.state_dict()
    enc = [k for k in sb if k.split(".")[0] in t.ENCODER_MODULES]
    dec = [k for k in sb if k.split(".")[0] not in t.ENCODER_MODULES and sb[k].is_floating_point()]
    assert enc and all(torch.equal(sb[k], sa[k]) for k in enc)  # frozen, BN statistics included
    assert any(not torch.equal(sb[k], sa[k]) for k in dec)


def test_bad_settings_are_clear_errors(data: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(t.TrainError, match="batch size"):
        run(tiny_config(data, tmp_path, batch_size=1))
    with pytest.raises(t.TrainError, match="schedule"):
        run(tiny_config(data, tmp_path, lr_schedule="steps"))
    with pytest.raises(t.TrainError, match="no such checkpoint"):
        run(TrainConfig(resume=str(tmp_path / "nope.pt")))
    assert t.lr_factor("cosine", 0.0) == 1.0 and t.lr_factor("cosine", 1.0) == 0.0
    assert t.lr_factor("linear", 0.25) == 1.0 and t.lr_factor("linear", 0.75) == pytest.approx(0.5)


def test_train_command_runs_and_publishes(data: dict[str, Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from dermaseg_app.cli import main

    out = tmp_path / "cli.safetensors"
    code = main(["train", "--data", str(data["train"]), "--val", str(data["val"]), "--out", str(out),
                 "--run-dir", str(tmp_path / "run"), "--input-size", "32", "--epochs", "1",
                 "--max-steps-per-epoch", "2", "--supervised", "--threads", "1",
                 "--pack-dir", str(data["pack"]), "--batch-size", "4"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert out.exists() and "epoch 1/1" in text and "val JSC" in text and "left" in text
    code = main(["train", "--resume", str(tmp_path / "run" / "last.pt"), "--epochs", "2"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "resuming at epoch 2 step 0" in text and "epoch 2/2 done" in text
    assert main(["train", "--data", str(data["train"])]) == 2  # no --out
    code = main(["finetune", "--base", str(out), "--data", str(data["new"]), "--replay", str(data["train"]),
                 "--out", str(tmp_path / "ft.safetensors"), "--run-dir", str(tmp_path / "ftrun"),
                 "--epochs", "1", "--threads", "1", "--pack-dir", str(data["pack"]), "--batch-size", "4"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert (tmp_path / "ft.safetensors").exists() and "+ 16 replay" in text


def _tiny_base(tmp_path: Path) -> Path:
    from dermaseg_app.ml import registry
    from dermaseg_app.ml.weights import ModelInfo, save_model

    base = tmp_path / "base.safetensors"
    cfg_dict = registry.default_config("slsnet") | TINY | {"input_size": 32}
    torch.manual_seed(0)
    save_model(base, registry.build_generator("slsnet", cfg_dict),
               ModelInfo(name="base", version="1", arch="slsnet", config=cfg_dict, input_size=32,
                         trained_on="synthetic"))
    return base


def _lower_base_val_jsc(monkeypatch: pytest.MonkeyPatch, n_base_val: int, worse_calls: set[int]) -> None:
    """Make the base-domain scores of the given evaluation calls (0: the base model) 0.5 lower."""
    import dataclasses

    real = t.evaluate_pack
    calls = [0]

    def fake(model, pack, device, threshold=0.5, batch_size=16):  # type: ignore[no-untyped-def]
        s = real(model, pack, device, threshold, batch_size)
        if len(pack) == n_base_val:
            if calls[0] in worse_calls:
                s = dataclasses.replace(s, mean=dataclasses.replace(s.mean, jsc=s.mean.jsc - 0.5))
            calls[0] += 1
        return s

    monkeypatch.setattr(t.selection, "evaluate_pack", fake)  # where the engine looks it up


def test_base_validation_vetoes_epochs_that_forget(data: dict[str, Path], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    base = _tiny_base(tmp_path)
    out = tmp_path / "ft.safetensors"
    cfg = t.finetune_config(base, [data["new"]], out, epochs=3, batch_size=4, val_fraction=0.25,
                            base_val=[str(data["val"])], base_val_tolerance=0.01, lr=3e-3,
                            run_dir=str(tmp_path / "run"), num_threads=1, pack_dir=str(data["pack"]))
    _lower_base_val_jsc(monkeypatch, 6, worse_calls={2})  # epoch 2 "forgets"
    events = run(cfg)
    started = of(events, t.TrainStarted)[0]
    assert started.n_base_val == 6 and set(started.base_scores) == {"base_val_jsc", "val_jsc"}
    ends = of(events, t.EpochEnd)
    assert [e.qualifies for e in ends] == [True, False, True]
    assert ends[1].base_val is not None and not ends[1].is_best
    assert all(e.base_val.jsc >= started.base_scores["base_val_jsc"] - 0.01 for e in ends if e.qualifies)
    finished = of(events, t.TrainFinished)[0]
    assert not finished.fell_back_to_base and finished.best_epoch in (1, 3)
    history = finished.history
    assert [r["qualifies"] for r in history] == [True, False, True] and "base_val_jsc" in history[0]
    card = out.with_suffix(".md").read_text(encoding="utf-8")
    assert "base-domain validation" in card and "not an independent test" in card


def test_base_validation_falls_back_to_the_base_model(data: dict[str, Path], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from dermaseg_app.ml.weights import load_model

    base = _tiny_base(tmp_path)
    out = tmp_path / "ft.safetensors"
    cfg = t.finetune_config(base, [data["new"]], out, epochs=2, batch_size=4, val_fraction=0.25,
                            base_val=[str(data["val"])], lr=3e-3, max_steps_per_epoch=2,
                            run_dir=str(tmp_path / "run"), num_threads=1, pack_dir=str(data["pack"]))
    _lower_base_val_jsc(monkeypatch, 6, worse_calls={1, 2})  # every epoch "forgets"
    events = run(cfg)
    assert not any(e.is_best for e in of(events, t.EpochEnd))
    finished = of(events, t.TrainFinished)[0]
    assert finished.fell_back_to_base and finished.best_epoch == 0 and finished.model_path == out
    tuned, info = load_model(out)
    before, _ = load_model(base)
    sb, sa = before.state_dict(), tuned.state_dict()
    assert all(torch.equal(sb[k], sa[k]) for k in sb)
    assert info.metrics["epoch"] == 0 and "base_val_jsc" in info.metrics
    assert "base model unchanged" in out.with_suffix(".md").read_text(encoding="utf-8")


def test_l2sp_keeps_the_weights_nearer_the_base(data: dict[str, Path], tmp_path: Path) -> None:
    from dermaseg_app.ml.weights import load_model

    base = _tiny_base(tmp_path)
    before, _ = load_model(base)
    sb = before.state_dict()
    dist = {}
    for w in (0.0, 50.0):
        out = tmp_path / f"ft{w}.safetensors"
        cfg = t.finetune_config(base, [data["new"]], out, epochs=2, batch_size=4, val_fraction=0.0,
                                l2sp_weight=w, lr=1e-2, ema_decay=0.0, augment=NO_AUG,
                                run_dir=str(tmp_path / f"run{w}"), num_threads=1, pack_dir=str(data["pack"]))
        events = run(cfg)
        assert ("l2sp" in of(events, t.StepProgress)[0].losses) == bool(w)
        tuned, _ = load_model(out)
        sa = tuned.state_dict()
        dist[w] = sum(float((sa[k] - sb[k]).pow(2).sum()) for k in sb
                      if sb[k].is_floating_point() and "running" not in k)
    assert 0 < dist[50.0] < 0.5 * dist[0.0]


def test_base_validation_and_l2sp_settings_are_checked(data: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(t.TrainError, match="needs a base model"):
        run(tiny_config(data, tmp_path, base_val=[str(data["val"])]))
    with pytest.raises(t.TrainError, match="L2-SP"):
        run(tiny_config(data, tmp_path, l2sp_weight=-1.0))
    with pytest.raises(t.TrainError, match="tolerance"):
        run(tiny_config(data, tmp_path, base_model=str(_tiny_base(tmp_path)), base_val=[str(data["val"])],
                        base_val_tolerance=2.0))


def test_finetune_command_with_base_validation(data: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from dermaseg_app.cli import main

    base = _tiny_base(tmp_path)
    code = main(["finetune", "--base", str(base), "--data", str(data["new"]), "--base-val", str(data["val"]),
                 "--base-val-tolerance", "0.5", "--l2sp", "0.1", "--out", str(tmp_path / "ft.safetensors"),
                 "--run-dir", str(tmp_path / "ftrun"), "--epochs", "1", "--threads", "1",
                 "--pack-dir", str(data["pack"]), "--batch-size", "4"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "base model: base-domain val JSC" in text and "base val JSC" in text
    with pytest.raises(SystemExit) as exit_info:
        main(["finetune", "--base", str(base), "--data", str(data["new"]), "--l2sp", "-1",
              "--out", str(tmp_path / "x.safetensors")])
    assert exit_info.value.code == 2 and "--l2sp: must be 0 or more" in capsys.readouterr().err


def test_freeze_bn_stats_keeps_the_base_running_statistics(data: dict[str, Path], tmp_path: Path) -> None:
    from dermaseg_app.ml.weights import load_model

    base = _tiny_base(tmp_path)
    out = tmp_path / "ft.safetensors"
    cfg = t.finetune_config(base, [data["new"]], out, epochs=1, batch_size=4, val_fraction=0.0,
                            freeze_bn_stats=True, lr=1e-2, run_dir=str(tmp_path / "run"), num_threads=1,
                            pack_dir=str(data["pack"]))
    run(cfg)
    sb, sa = load_model(base)[0].state_dict(), load_model(out)[0].state_dict()
    stats = [k for k in sb if k.endswith(("running_mean", "running_var"))]
    weights = [k for k in sb if k.endswith("weight")]
    assert stats and all(torch.equal(sb[k], sa[k]) for k in stats)
    assert any(not torch.equal(sb[k], sa[k]) for k in weights)


def test_finetune_replays_the_bundled_dermoscopy_set_by_default(tmp_path: Path) -> None:
    from dermaseg_app.commands.finetune import replay_folders
    from dermaseg_app.core.dataset import find_cases
    from dermaseg_app.core.imageio import read_image, read_mask
    from dermaseg_app.paths import replay_dir

    bundled = replay_dir()
    assert replay_folders([], 0.5, None) == [str(bundled)]
    assert replay_folders([str(tmp_path)], 0.5, None) == [str(tmp_path)]
    assert replay_folders([], 0.0, None) == [] and replay_folders([str(tmp_path)], 0.0, None) == []
    assert replay_folders([], 0.5, "run/last.pt") == []  # resuming: the checkpoint's config decides
    cases = find_cases([bundled])
    assert len(cases) == 24 and all(c.ground_truth is not None for c in cases)
    for case in cases[:3]:
        rgb, mask = read_image(case.image), read_mask(case.ground_truth)
        assert rgb.shape[:2] == mask.shape and max(rgb.shape[:2]) == 384 and 0 < mask.mean() < 1

"""The training package's seams (issue 13): the caller's config is left alone, a resumed run takes
--epochs whenever it is given, `dermaseg finetune` is `finetune_config`, one event formatter, and a
checkpoint written by the single-module engine (models/resume/c.pt) still loads."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest
import torch
from test_training import _tiny_base, data, tiny_config  # noqa: F401 - the module's data fixture

from dermaseg_app.ml import training as t
from dermaseg_app.ml.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
COMMITTED_CHECKPOINTS = sorted((ROOT / "models" / "resume").glob("*.pt"))
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")


def test_train_does_not_change_the_callers_config(data: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    base = _tiny_base(tmp_path)  # a 32 px model: the run takes its input size and architecture
    cfg = t.finetune_config(base, [data["new"]], tmp_path / "ft.safetensors", epochs=1, batch_size=4,
                            max_steps_per_epoch=1, num_threads=1, pack_dir=str(data["pack"]))
    cfg.input_size, cfg.arch = 64, "not-the-base-arch"
    before = cfg.to_dict()
    events = list(train(cfg))
    assert any(isinstance(e, t.TrainFinished) for e in events)
    assert cfg.to_dict() == before and cfg.run_dir is None  # the run folder was chosen on the run's copy
    saved = t.load_checkpoint(events[-1].run_dir / "last.pt")["config"]
    assert saved["input_size"] == 32 and saved["arch"] == "slsnet" and saved["run_dir"]

    new = TrainConfig()
    assert new.epochs is None  # not given: the default for a new run
    copied = new.copy(epochs=3)
    assert copied.epochs == 3 and copied.data is not new.data and copied.augment == new.augment


def _first_event(cfg: TrainConfig) -> t.TrainStarted:
    events = train(cfg)
    started = next(events)
    events.close()
    assert isinstance(started, t.TrainStarted)
    return started


def test_resume_takes_epochs_whenever_given(data: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    list(train(tiny_config(data, tmp_path, epochs=1, max_steps_per_epoch=1)))
    last = str(tmp_path / "run" / "last.pt")
    assert _first_event(TrainConfig(resume=last)).epochs == 1  # not given: the checkpoint's
    assert _first_event(TrainConfig(resume=last, epochs=3)).epochs == 3
    # the default itself, given: was taken for "not given" (the checkpoint's 1)
    assert _first_event(TrainConfig(resume=last, epochs=t.DEFAULT_EPOCHS)).epochs == t.DEFAULT_EPOCHS
    assert _first_event(tiny_config(data, tmp_path / "new", epochs=None)).epochs == t.DEFAULT_EPOCHS

    saved = TrainConfig(epochs=7, lr=1e-3).to_dict()
    assert t.resumed_config(TrainConfig(resume=last), saved, None).epochs == 7
    assert t.resumed_config(TrainConfig(resume=last, epochs=50, lr=5.0), saved, None).epochs == 50
    assert t.resumed_config(TrainConfig(resume=last, epochs=50, lr=5.0), saved, None).lr == 1e-3  # the recipe stays


def _finetune_parser() -> argparse.ArgumentParser:
    from dermaseg_app.commands import finetune

    parser = argparse.ArgumentParser()
    finetune.register(parser.add_subparsers())
    return parser


@pytest.mark.parametrize("extra, overrides", [
    ([], {}),
    (["--lr", "1e-3", "--beta1", "0.5", "--ema", "0", "--lr-schedule", "linear", "--epochs", "5"],
     {"lr": 1e-3, "beta1": 0.5, "ema_decay": 0.0, "lr_schedule": "linear", "epochs": 5}),
    (["--freeze-encoder", "--adversarial", "--l2sp", "0.2", "--freeze-bn-stats", "--name", "mine", "--version", "9",
      "--batch-size", "4", "--seed", "5", "--threads", "1", "--max-steps-per-epoch", "2", "--precision", "fp32",
      "--compile", "--channels-last", "--checkpoint-every", "3", "--val", "V"],
     {"freeze_encoder": True, "adversarial": True, "l2sp_weight": 0.2, "freeze_bn_stats": True, "model_name": "mine",
      "model_version": "9", "batch_size": 4, "seed": 5, "num_threads": 1, "max_steps_per_epoch": 2,
      "precision": "fp32", "compile": True, "channels_last": True, "checkpoint_every": 3, "val": ["V"]}),
])
def test_finetune_command_is_finetune_config(tmp_path: Path, extra: list[str], overrides: dict) -> None:
    from dermaseg_app.commands import finetune

    base = _tiny_base(tmp_path)
    out = tmp_path / "ft.safetensors"
    args = _finetune_parser().parse_args(["finetune", "--base", str(base), "--data", "D", "--out", str(out),
                                          "--replay", "R", "--replay-share", "0.25", *extra])
    cfg = finetune.config_from_args(args)
    kw = dict(overrides)
    freeze = kw.pop("freeze_encoder", False)
    epochs = kw.pop("epochs", 20)
    expected = t.finetune_config(base, ["D"], out, replay=["R"], replay_share=0.25, epochs=epochs,
                                 freeze_encoder=freeze, command=cfg.command, **kw)
    assert cfg == expected
    assert cfg.lr_schedule == kw.get("lr_schedule", "cosine") and cfg.model_version == kw.get("model_version", "1+ft")


def test_finetune_command_resuming_leaves_epochs_to_the_checkpoint(tmp_path: Path) -> None:
    from dermaseg_app.commands import finetune

    base = _tiny_base(tmp_path)
    args = _finetune_parser().parse_args(["finetune", "--base", str(base), "--data", "D", "--resume", "r/last.pt"])
    cfg = finetune.config_from_args(args)
    assert cfg.epochs is None and cfg.out is None and cfg.resume == "r/last.pt" and cfg.replay == []


def test_train_command_keeps_the_papers_recipe() -> None:
    from dermaseg_app.commands import train as train_cmd

    parser = argparse.ArgumentParser()
    train_cmd.register(parser.add_subparsers())
    cfg = train_cmd.config_from_args(parser.parse_args(["train", "--data", "d", "--out", "m.safetensors"]))
    assert cfg == TrainConfig(data=["d"], out="m.safetensors", command=cfg.command)
    cfg = train_cmd.config_from_args(parser.parse_args(["train", "--resume", "r/last.pt", "--epochs", "50"]))
    assert cfg.epochs == 50 and cfg.resume == "r/last.pt"


def test_format_event_lines() -> None:
    from dermaseg_app.core.metrics import Scores  # noqa: F401 - the type EpochEnd.val holds

    started = t.TrainStarted(run_dir=Path("runs/x"), device="cpu", notice="a note", n_train=10, n_replay=4, n_val=2,
                             steps_per_epoch=3, epochs=5, start_epoch=2, start_step=1, parameters=1_500_000)
    assert t.format_event(started, second_source="mixed in") == (
        "note: a note\ntraining on cpu: 10 pairs + 4 mixed in, 2 for validation, 3 steps/epoch x 5 epochs, "
        "1.50 M parameters, resuming at epoch 2 step 1; run folder runs/x")
    step = t.StepProgress(epoch=1, epochs=5, step=3, steps_per_epoch=6, global_step=3,
                          losses={"g": 0.5, "l1": 0.1, "d": 0.25}, lr=1e-3, images_per_second=12.0,
                          eta_seconds=75, adversarial=True)
    assert t.format_event(step, last_val=0.75) == (
        "epoch 1/5 [##########----------] 3/6 g 0.500 d 0.250 | val JSC 0.750 | 12.0 img/s | left 1:15")
    assert t.format_event(t.CheckpointSaved(path=Path("m"), kind="resume", epoch=1)) == ""
    assert t.format_event(t.CheckpointSaved(path=Path("m"), kind="published", epoch=1)) == \
        "best model so far (epoch 1) -> m"
    done = t.TrainFinished(best_jsc=None, best_epoch=None, model_path=None, run_dir=Path("r"), seconds=3725,
                           history=[])
    assert t.format_event(done) == "finished in 1:02:05: no validation; model None"


@pytest.mark.skipif(not COMMITTED_CHECKPOINTS, reason="no models/resume/*.pt in this checkout")
@pytest.mark.parametrize("committed", COMMITTED_CHECKPOINTS, ids=lambda p: p.name)
def test_a_committed_resume_state_resumes(committed: Path) -> None:
    """A committed resume state (models/resume/*.pt: the long run's last.pt; until session 5 c.pt,
    written by the engine before it became a package, passed this too) loads into the run state,
    the networks, the EMA and the optimizers, and writes back the same state (read only)."""
    ckpt = t.load_checkpoint(committed)
    cfg = t.run_config(TrainConfig(resume=str(committed), run_dir="elsewhere"), ckpt)
    assert cfg.epochs == ckpt["config"]["epochs"] and cfg.run_dir == "elsewhere"
    if not Path(ckpt["config"]["base_model"] or "").exists():  # built from the checkpoint's config
        assert cfg.base_model is None and cfg.model_config == ckpt["model_config"]
    g, d, model_cfg, _ = t.build_networks(cfg)
    t.state.load_networks(ckpt, g, d)
    step = t.make_step(cfg, g, d, ema=t.EMA(g, cfg.ema_decay) if cfg.ema_decay > 0 else None)
    t.state.load_training(ckpt, step)
    rng = torch.get_rng_state()
    try:
        history = ckpt["history"]
        steps_per_epoch = history[-1]["global_step"] - (history[-2]["global_step"] if len(history) > 1 else 0)
        state = t.RunState.from_checkpoint(ckpt, steps_per_epoch)
        assert torch.equal(torch.get_rng_state(), ckpt["rng"]["torch"])
        again = state.checkpoint(cfg, model_cfg, step, int(ckpt["epoch"]), int(ckpt["step"]), ckpt["seconds"])
    finally:
        torch.set_rng_state(rng)
    done = int(ckpt["step"]) >= steps_per_epoch
    resumes_at = (int(ckpt["epoch"]) + 1, 0) if done else (int(ckpt["epoch"]), int(ckpt["step"]))
    assert (state.epoch, state.step) == resumes_at
    assert state.global_step == ckpt["global_step"] and state.best_epoch == ckpt["best_epoch"]
    assert state.history == ckpt["history"] and state.best_jsc == ckpt["best_jsc"]
    for key in ("generator", "discriminator", "ema"):
        assert again[key].keys() == ckpt[key].keys()
        assert all(torch.equal(v, ckpt[key][k]) for k, v in again[key].items()), key
    for key in ("opt_g", "opt_d"):
        for pid, st in ckpt[key]["state"].items():
            back = again[key]["state"][pid]
            assert all(torch.equal(v, back[n]) if torch.is_tensor(v) else v == back[n] for n, v in st.items())
    assert again["model_config"] == ckpt["model_config"] and again["format"] == ckpt["format"]
    assert dataclasses.asdict(t.TrainConfig.from_dict(again["config"]))["input_size"] == ckpt["config"]["input_size"]


def test_format_event_speaks_the_windows_words_too():
    from dermaseg_app.ml.training import events as ev
    from dermaseg_app.ml.training.report import format_event

    done = ev.TrainFinished(best_jsc=0.8, best_epoch=2, model_path=None, run_dir=Path("run"), seconds=75.0,
                            history=[])
    assert format_event(done, audience="window") == "Training finished in 1:15 (the training steps and epochs)."
    with pytest.raises(ValueError):
        format_event(done, audience="fax")

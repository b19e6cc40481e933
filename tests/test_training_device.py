"""The training engine's device-side data path (TrainConfig.device_data) and its compile option.

Same tiny network and data as tests/test_training.py, on the CPU: the path is plain torch, so
what is checked here is what a GPU run relies on (equality with the default path, resume).
torch.compile's code generation (inductor) is not exercised here: on this CPU it needs about 260 s
for the first steps of the tiny 32 px GAN (docs/training-notes.md); the --compile plumbing is tested
with dynamo's "eager" backend, and benchmarks/bench_training.py --compile measures the real thing.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from test_data import write_folder
from test_training import of, run, tiny_config

from dermaseg_app.ml import training as t
from dermaseg_app.ml.augment import AugmentConfig
from dermaseg_app.ml.training import TrainConfig, load_checkpoint, train

NO_CLAHE = AugmentConfig(clahe_probability=0.0)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train_data")
    return {"train": write_folder(root / "train", 16, seed=0), "val": write_folder(root / "val", 6, seed=1),
            "pack": root / "pack"}


def _files(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.iterdir())


def _same_weights(a: Path, b: Path) -> bool:
    sa, sb = load_checkpoint(a), load_checkpoint(b)
    return all(torch.equal(v, sb[key][name]) for key in ("generator", "discriminator", "ema")
               for name, v in sa[key].items())


def test_device_data_equals_the_default_path_where_the_augmentation_is_exact(
        data: dict[str, Path], tmp_path: Path) -> None:
    """Flips and gamma are bit-identical on both paths, so a GAN run with warm-up, EMA and a replay
    share gives the same events, checkpoints, files and weights whether its batches are made with
    OpenCV in a thread or indexed and augmented on the device."""
    kw = dict(epochs=2, warmup_epochs=0.5, ema_decay=0.9, augment=NO_CLAHE, out=None,
              replay=[str(data["val"])], replay_share=0.5)
    runs = {}
    for name, on_device in (("cpu", False), ("device", True)):
        cfg = tiny_config(data, tmp_path / name, device_data=on_device, **kw)
        cfg.out = str(tmp_path / name / "m.safetensors")
        runs[name] = run(cfg)
    a, b = runs["cpu"], runs["device"]
    assert [type(e).__name__ for e in a] == [type(e).__name__ for e in b]
    assert of(b, t.TrainStarted)[0].n_replay == 6
    assert ([(e.kind, e.epoch) for e in of(a, t.CheckpointSaved)]
            == [(e.kind, e.epoch) for e in of(b, t.CheckpointSaved)])
    assert [e.losses for e in of(a, t.StepProgress)] == [e.losses for e in of(b, t.StepProgress)]
    assert [e.val.jsc for e in of(a, t.EpochEnd)] == [e.val.jsc for e in of(b, t.EpochEnd)]
    assert of(b, t.StepProgress)[-1].adversarial and "d" in of(b, t.StepProgress)[-1].losses
    assert _files(tmp_path / "cpu" / "run") == _files(tmp_path / "device" / "run")
    assert _same_weights(tmp_path / "cpu" / "run" / "last.pt", tmp_path / "device" / "run" / "last.pt")
    saved = json.loads((tmp_path / "device" / "run" / "config.json").read_text())
    assert saved["device_data"] is True and saved["compile"] is False


def test_device_data_with_clahe_trains_and_resumes_bit_identically(data: dict[str, Path], tmp_path: Path) -> None:
    """The full augmentation (CLAHE included) on the device: the loss falls, and a run cancelled
    and resumed ends with exactly the weights of an uninterrupted one."""
    kw = dict(epochs=2, warmup_epochs=0.5, ema_decay=0.9, device_data=True,
              augment=AugmentConfig(clahe_probability=1.0))
    straight = run(tiny_config(data, tmp_path / "a", **kw))
    assert of(straight, t.TrainFinished)
    cancel = threading.Event()
    events = []
    for e in train(tiny_config(data, tmp_path / "b", **kw), cancel):
        events.append(e)
        if isinstance(e, t.StepProgress) and e.global_step == 5:  # epoch 2, step 2
            cancel.set()
    stopped = of(events, t.TrainCancelled)[0]
    resumed = run(TrainConfig(resume=str(stopped.checkpoint_path), epochs=2))
    assert [e.global_step for e in of(resumed, t.StepProgress)] == [6]
    assert _same_weights(tmp_path / "a" / "run" / "last.pt", tmp_path / "b" / "run" / "last.pt")
    a = load_checkpoint(tmp_path / "a" / "run" / "last.pt")
    b = load_checkpoint(tmp_path / "b" / "run" / "last.pt")
    assert a["config"]["device_data"] and b["config"]["device_data"]
    assert a["history"][-1]["train_g"] == pytest.approx(b["history"][-1]["train_g"], rel=1e-6)


def test_device_data_losses_fall(data: dict[str, Path], tmp_path: Path) -> None:
    cfg = tiny_config(data, tmp_path, adversarial=False, epochs=6, lr=1e-2, max_steps_per_epoch=None, val=[],
                      val_fraction=0.0, device_data=True, augment=AugmentConfig(gammas=(1.0,)))
    losses = [e.losses["g"] for e in of(run(cfg), t.StepProgress)]
    assert len(losses) == 24
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4])


def test_new_settings_round_trip_and_are_checked(data: dict[str, Path], tmp_path: Path) -> None:
    cfg = TrainConfig(data=["x"], device_data=True, compile=True, compile_mode="reduce-overhead", amp=True)
    back = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg
    assert TrainConfig.from_dict({"data": ["x"]}).device_data is False  # old config files: today's path
    with pytest.raises(t.TrainError, match="compile mode"):
        run(tiny_config(data, tmp_path, compile=True, compile_mode="fastest"))


def test_compiled_state_dict_prefixes_are_stripped() -> None:
    from test_training import TINY

    from dermaseg_app.ml import registry

    g = registry.build_generator("slsnet", registry.default_config("slsnet") | TINY | {"input_size": 32})
    wrapped = {t.COMPILED_PREFIX + k: v for k, v in g.state_dict().items()}  # what torch.compile(g) saves
    fresh = registry.build_generator("slsnet", registry.default_config("slsnet") | TINY | {"input_size": 32})
    fresh.load_state_dict(t.plain_state_dict(wrapped))  # strict
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in g.state_dict().items())


def test_cli_options_reach_the_config() -> None:
    import argparse

    from dermaseg_app.commands import train as train_cmd

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    train_cmd.register(sub)
    args = parser.parse_args(["train", "--data", "d", "--out", "m.safetensors", "--device-data",
                              "--compile", "--amp"])
    cfg = train_cmd.config_from_args(args)
    assert cfg.device_data and cfg.compile and cfg.compile_mode == "default" and cfg.amp
    args = parser.parse_args(["train", "--data", "d", "--out", "m.safetensors", "--compile", "reduce-overhead"])
    cfg = train_cmd.config_from_args(args)
    assert cfg.compile and cfg.compile_mode == "reduce-overhead" and not cfg.device_data and not cfg.amp
    cfg = train_cmd.config_from_args(parser.parse_args(["train", "--data", "d", "--out", "m.safetensors"]))
    assert not cfg.device_data and not cfg.compile and not cfg.amp


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compiled_run_through_dynamo_keeps_plain_checkpoints(data: dict[str, Path], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """--compile's plumbing (compiled forward functions, the CUDA-graph step marker, checkpoints)
    with dynamo tracing the step but its "eager" backend: inductor's code generation takes minutes
    on this CPU (docs/training-notes.md), the tracing a few seconds."""
    from test_training import TINY

    from dermaseg_app.ml import registry
    from dermaseg_app.ml.weights import load_model

    real_compile = torch.compile
    calls = []

    def eager_compile(fn, **kw):  # type: ignore[no-untyped-def]
        calls.append(kw)
        return real_compile(fn, backend="eager", dynamic=kw.get("dynamic"))

    monkeypatch.setattr(torch, "compile", eager_compile)
    torch._dynamo.reset()
    out = tmp_path / "m.safetensors"
    # float32: on an AMX CPU the engine does not compile under bf16 autocast (cpu_speed.compiled_autocast)
    events = run(tiny_config(data, tmp_path, epochs=1, warmup_epochs=0.0, compile=True, device_data=True,
                             precision="fp32", out=str(out)))
    torch._dynamo.reset()
    assert len(calls) == 2 and all(kw == {"mode": "default", "dynamic": False} for kw in calls)  # G and D
    steps = of(events, t.StepProgress)
    assert len(steps) == 3 and steps[-1].adversarial and all(np.isfinite(s.losses["g"]) for s in steps)
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert not any(k.startswith(t.COMPILED_PREFIX) for k in ckpt["generator"])
    cfg = registry.default_config("slsnet") | TINY | {"input_size": 32}
    registry.build_generator("slsnet", cfg).load_state_dict(ckpt["generator"])  # strict
    registry.build_discriminator("slsnet", cfg).load_state_dict(ckpt["discriminator"])
    net, info = load_model(out)
    assert info.input_size == 32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run by the GPU session)")
@pytest.mark.parametrize("compile_mode", [None, "default", "reduce-overhead"])
def test_device_data_trains_on_cuda(data: dict[str, Path], tmp_path: Path, compile_mode: str | None) -> None:
    """The GPU session's first check: the device path (and --compile, CUDA graphs included) runs a
    GAN with warm-up, EMA and AMP on CUDA and writes loadable, plain checkpoints."""
    from dermaseg_app.ml.weights import load_model

    torch._dynamo.reset()
    out = tmp_path / "m.safetensors"
    events = run(tiny_config(data, tmp_path, epochs=2, warmup_epochs=0.5, ema_decay=0.9, device="cuda",
                             device_data=True, amp=True, compile=compile_mode is not None,
                             compile_mode=compile_mode or "default", out=str(out)))
    torch._dynamo.reset()
    steps = of(events, t.StepProgress)
    assert of(events, t.TrainFinished) and steps[-1].adversarial
    assert all(np.isfinite(v) for s in steps for v in s.losses.values())
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert not any(k.startswith(t.COMPILED_PREFIX) for k in ckpt["generator"])
    assert load_model(out)[1].input_size == 32

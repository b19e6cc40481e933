"""A training run killed with SIGKILL and resumed from its checkpoint ends with exactly the
weights of an uninterrupted run; the resume-state file round-trips (issue 9)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
from test_training import data, tiny_config  # noqa: F401 - the module's data fixture

from dermaseg_app.ml import training as t
from dermaseg_app.ml.training import TrainConfig, load_checkpoint, train

ROOT = Path(__file__).resolve().parents[1]

# The child trains, pausing after each step so that the parent can kill it part-way (the pause
# changes nothing the run computes).
CHILD = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, {root!r})
    from dermaseg_app.ml.training import TrainConfig, train, StepProgress
    cfg = TrainConfig.from_dict(json.loads(open(sys.argv[1]).read()))
    for event in train(cfg):
        if isinstance(event, StepProgress):
            print("step", event.global_step, flush=True)
            time.sleep(0.3)
""")


def _weights(path: Path) -> dict:
    return load_checkpoint(path)


def _assert_same_state(a: dict, b: dict) -> None:
    for key in ("generator", "discriminator", "ema"):
        if a[key] is None or b[key] is None:
            assert a[key] is None and b[key] is None, f"{key}: one run has it, the other not"
            continue
        assert a[key].keys() == b[key].keys()
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs"
    for key in ("opt_g", "opt_d"):
        for pid, state in a[key]["state"].items():
            for name, value in state.items():
                other = b[key]["state"][pid][name]
                assert torch.equal(value, other) if torch.is_tensor(value) else value == other
    assert a["global_step"] == b["global_step"]
    assert [r["val_jsc"] for r in a["history"]] == [r["val_jsc"] for r in b["history"]]


def test_sigkill_then_resume_gives_the_uninterrupted_result(data: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    kw = dict(epochs=3, max_steps_per_epoch=3, warmup_epochs=1.0, ema_decay=0.9, checkpoint_every=1)
    straight = list(train(tiny_config(data, tmp_path / "straight", **kw)))
    assert any(isinstance(e, t.TrainFinished) for e in straight)

    cfg = tiny_config(data, tmp_path / "killed", **kw)
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(cfg.to_dict(), default=str))
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(ROOT)))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen([sys.executable, str(script), str(cfg_file)], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env=env)
    killed_after = None
    try:
        assert child.stdout is not None
        deadline = time.monotonic() + 120
        for line in child.stdout:
            if line.startswith("step") and int(line.split()[1]) == 5:  # mid-epoch 2
                time.sleep(0.1)  # inside the pause or the next step: anywhere is fine
                child.send_signal(signal.SIGKILL)
                killed_after = 5
                break
            assert time.monotonic() < deadline, "the child did not get to step 5"
    finally:
        child.wait(timeout=60)
    assert killed_after is not None and child.returncode == -signal.SIGKILL
    last = tmp_path / "killed" / "run" / "last.pt"
    ckpt = load_checkpoint(last)  # a complete file: atomic writes
    assert 4 <= ckpt["global_step"] <= 6 and ckpt["global_step"] < 9

    resumed = list(train(TrainConfig(resume=str(last))))
    started = [e for e in resumed if isinstance(e, t.TrainStarted)][0]
    assert (started.start_epoch - 1) * 3 + started.start_step == ckpt["global_step"]
    assert any(isinstance(e, t.TrainFinished) for e in resumed)
    _assert_same_state(_weights(tmp_path / "straight" / "run" / "last.pt"), _weights(last))
    assert not list((tmp_path / "killed" / "run").glob("*.tmp*")), "a temporary file survived"


def test_resume_state_file_round_trip(data: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    list(train(tiny_config(data, tmp_path, epochs=1, max_steps_per_epoch=2, ema_decay=0.9)))
    path = tmp_path / "run" / "last.pt"
    first = load_checkpoint(path)
    copy = tmp_path / "copy.pt"
    t._atomic_torch_save(first, copy)
    second = load_checkpoint(copy)
    _assert_same_state(first, second)
    assert first["config"] == second["config"] and first["rng"].keys() == second["rng"].keys()
    for name, value in first["rng"].items():
        assert torch.equal(value, second["rng"][name]) if torch.is_tensor(value) else value == second["rng"][name]
    # the copy resumes like the original: one more epoch from either gives the same weights
    a = list(train(TrainConfig(resume=str(path), epochs=2, run_dir=str(tmp_path / "ra"))))
    b = list(train(TrainConfig(resume=str(copy), epochs=2, run_dir=str(tmp_path / "rb"))))
    assert any(isinstance(e, t.TrainFinished) for e in a) and any(isinstance(e, t.TrainFinished) for e in b)
    _assert_same_state(load_checkpoint(tmp_path / "ra" / "last.pt"), load_checkpoint(tmp_path / "rb" / "last.pt"))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_precision_and_channels_last_run_and_resume(data: dict[str, Path], tmp_path: Path,  # noqa: F811
                                                    precision: str) -> None:
    """The speed settings train (losses finite, a model published) and a resumed run keeps them."""
    cfg = tiny_config(data, tmp_path, epochs=1, max_steps_per_epoch=2, precision=precision, channels_last=True,
                      out=str(tmp_path / "m.safetensors"))
    events = list(train(cfg))
    assert any(isinstance(e, t.TrainFinished) for e in events)
    losses = [e.losses["g"] for e in events if isinstance(e, t.StepProgress)]
    assert losses and all(torch.isfinite(torch.tensor(v)) for v in losses)
    saved = load_checkpoint(tmp_path / "run" / "last.pt")["config"]
    assert saved["precision"] == precision and saved["channels_last"] is True
    epoch = [e for e in events if isinstance(e, t.EpochEnd)][0]
    assert epoch.images_per_second and epoch.images_per_second > 0


def test_init_from_a_model_at_another_input_size(data: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    """`dermaseg train --init MODEL --input-size S`: G starts from the model's weights, at size S."""
    from dermaseg_app.ml.weights import load_model, read_model_info

    small = tmp_path / "small.safetensors"
    list(train(tiny_config(data, tmp_path / "a", epochs=1, max_steps_per_epoch=2, out=str(small))))
    assert read_model_info(small).input_size == 32
    base, _ = load_model(small, "cpu")
    cfg = tiny_config(data, tmp_path / "b", epochs=1, max_steps_per_epoch=1, input_size=48, lr=0.0,
                      base_model=str(small), input_size_from_base=False, out=str(tmp_path / "big.safetensors"))
    events = list(train(cfg))
    assert any(isinstance(e, t.TrainFinished) for e in events)
    info = read_model_info(tmp_path / "big.safetensors")
    assert info.input_size == 48 and info.config["input_size"] == 48
    big, _ = load_model(tmp_path / "big.safetensors", "cpu")
    # lr 0: the weights are the base model's (batch-norm statistics move with the batches)
    for (name, a), (_, b) in zip(base.named_parameters(), big.named_parameters(), strict=True):
        assert torch.equal(a, b), name


def test_finetune_keeps_the_base_models_threshold(data: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    from dermaseg_app.ml.weights import read_model_info

    base = tmp_path / "base.safetensors"
    list(train(tiny_config(data, tmp_path / "a", epochs=1, max_steps_per_epoch=1, threshold=0.45, tta=True,
                           out=str(base))))
    assert read_model_info(base).threshold == pytest.approx(0.45)
    assert read_model_info(base).tta is True  # the published model carries the run's flips default
    cfg = t.finetune_config(base, [data["new"]], tmp_path / "ft.safetensors")
    assert cfg.threshold == pytest.approx(0.45) and cfg.tta is True


def test_adversarial_weight_scales_the_adversarial_term(data: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    """With the adversarial weight 0 and the pixel BCE kept, G learns exactly as supervised."""
    kw = dict(epochs=1, max_steps_per_epoch=3, warmup_epochs=0.0)
    list(train(tiny_config(data, tmp_path / "sup", adversarial=False, **kw)))
    list(train(tiny_config(data, tmp_path / "gan0", adversarial=True, adv_weight=0.0, gan_bce_weight=1.0, **kw)))
    list(train(tiny_config(data, tmp_path / "gan1", adversarial=True, adv_weight=1.0, gan_bce_weight=1.0, **kw)))
    sup, gan0, gan1 = (load_checkpoint(tmp_path / x / "run" / "last.pt")["generator"] for x in ("sup", "gan0", "gan1"))
    assert all(torch.equal(sup[k], gan0[k]) for k in sup)
    assert not all(torch.equal(sup[k], gan1[k]) for k in sup)


def test_a_run_started_from_a_model_file_resumes_without_it(data: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    """A committed checkpoint of an --init run resumes on a machine without the init model file."""
    base = tmp_path / "base.safetensors"
    list(train(tiny_config(data, tmp_path / "a", epochs=1, max_steps_per_epoch=2, out=str(base))))
    kw = dict(epochs=2, max_steps_per_epoch=2, input_size=48, base_model=str(base), input_size_from_base=False)
    list(train(tiny_config(data, tmp_path / "straight", **kw)))
    cancel = threading.Event()
    for e in train(tiny_config(data, tmp_path / "cut", **kw), cancel):
        if isinstance(e, t.StepProgress) and e.global_step == 3:
            cancel.set()
    base.unlink()
    events = list(train(TrainConfig(resume=str(tmp_path / "cut" / "run" / "last.pt"))))
    assert any(isinstance(e, t.TrainFinished) for e in events)
    _assert_same_state(load_checkpoint(tmp_path / "straight" / "run" / "last.pt"),
                       load_checkpoint(tmp_path / "cut" / "run" / "last.pt"))

"""torchrun on the CPU (gloo, 2 processes): sharded prediction writes what one process writes;
DDP training averages the gradients. Each torchrun is a subprocess (python -m torch.distributed.run)."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dermaseg_app.ml.distributed import World, shard, world_from_env
from dermaseg_app.ml.registry import build_generator, default_config
from dermaseg_app.ml.weights import ModelInfo, save_model

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32
SMALL = {"encoder_channels": [24, 32, 64], "decoder_channels": [32, 16], "stage2_dilations": [2, 4]}
STEMS = ("ISIC_0000169", "ISIC_0000299", "ISIC_0000009")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["OMP_NUM_THREADS"] = "1"
    env["QT_QPA_PLATFORM"] = "offscreen"
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def torchrun(*args: str, nproc: int = 2, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--standalone",
               "-m", "dermaseg_app", *args]
    return subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)


def single(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "dermaseg_app", *args]
    return subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)


def test_world_comes_from_torchruns_environment():
    assert world_from_env({}) == World()
    assert not world_from_env({}).distributed
    world = world_from_env({"WORLD_SIZE": "3", "RANK": "2", "LOCAL_RANK": "0"})
    assert (world.rank, world.size, world.local_rank, world.distributed) == (2, 3, 0, True)
    assert world_from_env({"WORLD_SIZE": "2", "RANK": "5"}) == World()  # nonsense: a world of one
    items = list(range(7))
    parts = [shard(items, World(rank=r, size=3)) for r in range(3)]
    assert parts == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(sum(parts, [])) == items


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = dict(default_config("slsnet"), input_size=SIZE, **SMALL)
    info = ModelInfo(name="random-test", version="9.9", arch="slsnet", config=config, input_size=SIZE,
                     threshold=0.5, trained_on="nothing (random init)")
    return save_model(tmp_path_factory.mktemp("model") / "rand.safetensors", build_generator("slsnet", config), info)


@pytest.fixture
def images(tmp_path, samples_dir) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for i, stem in enumerate(STEMS * 2):  # 6 images (two of each), an odd share per rank
        shutil.copyfile(samples_dir / f"{stem}.jpg", folder / f"case{i}_{stem}.jpg")
    # a duplicate stem in another folder: its planned name (_2) must be the one a single run gives
    (tmp_path / "more").mkdir()
    shutil.copyfile(samples_dir / f"{STEMS[0]}.jpg", tmp_path / "more" / f"case0_{STEMS[0]}.jpg")
    return tmp_path


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        rows = [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]
    return [dict(row, mask=Path(row["mask"]).name) for row in rows]


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def test_sharded_prediction_writes_what_one_process_writes(model, images, tmp_path):
    inputs = [str(images / "images"), str(images / "more")]
    one, two = tmp_path / "one", tmp_path / "two"
    common = ["--model", str(model), "--device", "cpu", "--save-prob", "--backend", "torch"]
    done = single("predict", *inputs, "--out", str(one), *common)
    assert done.returncode == 0, done.stderr
    run = torchrun("predict", *inputs, "--out", str(two), *common)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "rank 0 of 2: 4 images" in run.stdout
    assert "rank 1 of 2: 3 images" in run.stdout
    masks = _outputs(one)
    assert len(masks) == 14 and "case0_ISIC_0000169_2.png" in masks
    assert _outputs(two) == masks  # byte-identical masks and probability maps
    assert _rows(two / "predictions.csv") == _rows(one / "predictions.csv")  # one CSV, same order, no duplicates
    assert not list(two.glob("predictions.part-*"))  # the parts are merged away

    # a rank that died: its images have neither a mask nor a row; --merge names them and
    # --skip-existing does only those
    rows = _rows(two / "predictions.csv")
    lost = [rows[1]["image"], rows[3]["image"]]
    kept = [r for r in rows if r["image"] not in lost]
    for row in rows:
        if row["image"] in lost:
            (two / row["mask"]).unlink()
    with open(two / "predictions.part-0-of-2.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) + ["seconds"])
        writer.writeheader()
        writer.writerows(dict(r, seconds="0.1", mask=str(two / r["mask"])) for r in kept)
        handle.write(lost[0] + ",tor")  # a torn last line
    (two / "predictions.csv").unlink()
    merged = single("predict", *inputs, "--out", str(two), *common, "--merge")
    assert merged.returncode == 1
    assert "2 image(s) have no result" in merged.stderr and lost[0] in merged.stderr
    assert "--skip-existing" in merged.stderr
    again = torchrun("predict", *inputs, "--out", str(two), *common, "--skip-existing")
    assert again.returncode == 0, again.stdout + again.stderr
    # images 1 and 3 of the order are rank 1's: rank 0 has nothing to do
    assert "4 image(s) already done (--skip-existing); 0 to do" in again.stdout
    assert "1 image(s) already done (--skip-existing); 2 to do" in again.stdout
    assert "rank 1: [2/2]" in again.stdout and "rank 0: [1/" not in again.stdout
    assert _outputs(two) == masks
    assert _rows(two / "predictions.csv") == _rows(one / "predictions.csv")


# -- training -----------------------------------------------------------------------------------


def _worker(out: Path, *extra: str) -> list[dict[str, dict[str, torch.Tensor]]]:
    out.mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
               str(ROOT / "tests" / "ddp_worker.py"), str(out), *extra]
    done = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    assert a.keys() == b.keys() and a
    return all(torch.equal(a[k], b[k]) for k in a)


def test_ddp_averages_the_gradients_of_g_and_d(tmp_path):
    # two ranks on different data end a few (adversarial) steps with the same G and D ...
    zero, one = _worker(tmp_path / "ddp")
    assert _same(zero["g"], one["g"]) and _same(zero["d"], one["d"])
    # ... which without the averaging they do not
    zero, one = _worker(tmp_path / "alone", "--no-ddp")
    assert not _same(zero["g"], one["g"]) and not _same(zero["d"], one["d"])


def test_shard_plan_is_distributed_sampler_like():
    from dermaseg_app.ml.training.distributed import rescale_resume, seed_step, shard_plan

    plan = list(range(7))
    assert shard_plan(plan, World()) == plan
    parts = [shard_plan(plan, World(rank=r, size=3)) for r in range(3)]
    assert parts == [[0, 3, 6], [1, 4, 0], [2, 5, 1]]  # padded by wrapping: equal steps per rank
    assert [seed_step(s, World(rank=1, size=3)) for s in range(3)] == [1, 4, 7]
    assert [seed_step(s, World()) for s in range(3)] == [0, 1, 2]
    # a checkpoint of 2 ranks, 2 of 4 steps of epoch 1 done, resumed by 1 rank: 4 of its 7 steps
    ckpt = {"epoch": 1, "step": 2, "global_step": 6, "world_size": 2, "sums": {"g": 1.0}}
    rescale_resume(ckpt, World(), 7)
    assert (ckpt["epoch"], ckpt["step"], ckpt["global_step"]) == (1, 4, 11)
    ckpt = {"epoch": 0, "step": 7, "global_step": 7, "sums": {}}  # 1 rank, epoch done: 2 ranks next epoch
    rescale_resume(ckpt, World(rank=0, size=2), 7)
    assert (ckpt["epoch"], ckpt["step"], ckpt["global_step"]) == (1, 0, 4)


def test_torchrun_trains_one_model_and_resumes_at_another_world_size(tmp_path):
    from test_data import write_folder

    from dermaseg_app.ml.training import load_checkpoint

    train_dir, val_dir = write_folder(tmp_path / "train", 12, seed=0), write_folder(tmp_path / "val", 4, seed=1)
    out, run_dir = tmp_path / "ddp.safetensors", tmp_path / "run"
    common = ["--input-size", "32", "--threads", "1", "--pack-dir", str(tmp_path / "pack"), "--batch-size", "2"]
    done = torchrun("train", "--data", str(train_dir), "--val", str(val_dir), "--out", str(out),
                    "--run-dir", str(run_dir), "--epochs", "1", "--supervised", *common)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "world size 2" in done.stdout and "epoch 1/1" in done.stdout
    assert done.stdout.count("epoch 1/1 done") == 1  # rank 0 reports, once
    assert out.exists()
    ckpt = load_checkpoint(run_dir / "last.pt")
    assert ckpt["world_size"] == 2 and ckpt["step"] == 3  # 6 batches of 2, 3 steps per rank
    again = single("train", "--resume", str(run_dir / "last.pt"), "--epochs", "2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "world size" not in again.stdout and "epoch 2/2 done" in again.stdout
    ckpt = load_checkpoint(run_dir / "last.pt")
    assert ckpt["world_size"] == 1 and ckpt["step"] == 6 and ckpt["global_step"] == 12
    # finetune, the same engine
    new_dir = write_folder(tmp_path / "new", 6, size=(48, 40), seed=2)
    tuned = torchrun("finetune", "--base", str(out), "--data", str(new_dir), "--replay", str(train_dir),
                     "--out", str(tmp_path / "ft.safetensors"), "--run-dir", str(tmp_path / "ftrun"),
                     "--epochs", "1", "--max-steps-per-epoch", "2", *common[2:])  # at the base's size
    assert tuned.returncode == 0, tuned.stdout + tuned.stderr
    assert "world size 2" in tuned.stdout and (tmp_path / "ft.safetensors").exists()
    assert load_checkpoint(tmp_path / "ftrun" / "last.pt")["step"] == 1  # 2 batches, 1 step per rank


def test_one_process_interrupted_keeps_its_csv_and_skip_existing_finishes(model, images, tmp_path, monkeypatch,
                                                                          capsys):
    from dermaseg_app import cli
    from dermaseg_app.core import imageio

    out = tmp_path / "out"
    args = ["predict", str(images / "images"), "--out", str(out), "--model", str(model), "--device", "cpu",
            "--backend", "torch", "--no-measurements"]
    real, calls = imageio.write_mask_png, []

    def write_then_interrupt(path, mask):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real(path, mask)

    monkeypatch.setattr(imageio, "write_mask_png", write_then_interrupt)
    assert cli.main(args) == 130
    assert len(_rows(out / "predictions.csv")) == 2  # the CSV of what was done, as before
    monkeypatch.setattr(imageio, "write_mask_png", real)
    capsys.readouterr()
    assert cli.main([*args, "--skip-existing"]) == 0
    assert "2 image(s) already done (--skip-existing); 4 to do" in capsys.readouterr().out
    assert [r["image"] for r in _rows(out / "predictions.csv")] == sorted(
        str(p) for p in (images / "images").glob("*.jpg"))

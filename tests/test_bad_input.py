"""A corpus of bad and odd input (issue 11 items 7-10): images through ``dermaseg predict`` and
``evaluate``, model files through ``info`` and ``predict``. No traceback, no hang, memory bounded,
each problem reported with its path and its reason."""

from __future__ import annotations

import csv
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from dermaseg_app import cli
from dermaseg_app.ml.registry import build_generator, default_config
from dermaseg_app.ml.weights import FORMAT_NAME, ModelInfo, save_model

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and symlinks are POSIX here")]

SIZE = 32
SMALL = {"encoder_channels": [24, 32, 64], "decoder_channels": [32, 16], "stage2_dilations": [2, 4]}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = dict(default_config("slsnet"), input_size=SIZE, **SMALL)
    info = ModelInfo(name="random-test", version="1", arch="slsnet", config=config, input_size=SIZE)
    return save_model(tmp_path_factory.mktemp("model") / "rand.safetensors",
                      build_generator("slsnet", config), info)


# ------------------------------------------------------------------------- the image corpus
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bomb(path: Path, side: int = 30000) -> None:
    """A 1-bit 30000x30000 PNG of ~100 kB that decodes to 900 M pixels."""
    row = b"\x00" + bytes((side + 7) // 8)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b""))


def _mask(path: Path, w: int, h: int) -> None:
    m = np.zeros((h, w), np.uint8)
    m[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 255
    assert cv2.imwrite(str(path), m)


def build_corpus(root: Path) -> tuple[Path, dict[str, str], dict[str, tuple[int, int]]]:
    """images/ (+ masks/ for the good ones). Returns (images folder, bad name -> expected reason
    words, good name -> (width, height) as displayed)."""
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
    bad: dict[str, str] = {}
    good: dict[str, tuple[int, int]] = {}

    ok, jpeg = cv2.imencode(".jpg", rgb)
    (images / "truncated.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) // 2])
    bad["truncated.jpg"] = "truncated"
    (images / "zero.png").write_bytes(b"")
    bad["zero.png"] = "empty"
    (images / "random.jpg").write_bytes(rng.integers(0, 255, 5000, dtype=np.uint8).tobytes())
    bad["random.jpg"] = "not an image"
    (images / "text.png").write_text("this is a note, not a picture\n")
    bad["text.png"] = "not an image"
    os.mkfifo(images / "pipe.jpg")
    bad["pipe.jpg"] = "FIFO"
    os.symlink("loop.jpg", images / "loop.jpg")
    bad["loop.jpg"] = "symbolic link loop"
    os.symlink("gone.png", images / "broken.png")
    bad["broken.png"] = "broken symbolic link"
    os.symlink("..", images / "cycle")  # a folder loop: never walked into
    (images / "folder.jpg").mkdir()     # a folder named like an image: walked, holds nothing
    _bomb(images / "bomb.png")
    bad["bomb.png"] = "over the limit"

    grey16 = (rng.integers(0, 65535, (SIZE, SIZE), dtype=np.uint16))
    cv2.imwrite(str(images / "sixteen.png"), grey16)
    good["sixteen.png"] = (SIZE, SIZE)
    Image.fromarray(rgb).convert("CMYK").save(images / "cmyk.jpg")
    good["cmyk.jpg"] = (48, 40)
    Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE).save(images / "palette.png")
    good["palette.png"] = (48, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: 48x40 shows as 40x48
    Image.fromarray(rgb).save(images / "rotated.jpg", exif=exif.tobytes())
    good["rotated.jpg"] = (40, 48)
    cv2.imwrite(str(images / "one.png"), rgb[:1, :1])
    good["one.png"] = (1, 1)
    name = "läsion_ü_日本.png"
    Image.fromarray(rgb).save(images / name)
    good[name] = (48, 40)
    for n, (w, h) in good.items():
        _mask(masks / (Path(n).stem + ".png"), w, h)
    for n in bad:  # ground truth for the bad ones too, so evaluate has to read them
        if not n.endswith(".png") or n in ("broken.png",):
            continue
        _mask(masks / (Path(n).stem + "_mask.png"), 8, 8)
    return images, bad, good


# The command runs under a wrapper that prints its own peak memory at exit: RUSAGE_CHILDREN of
# the test process would be the largest of every child the whole test session has reaped, and on
# Linux even the child's RUSAGE_SELF carries the test process's peak over from before its exec;
# /proc/self/status's VmHWM is the peak of the command's own address space.
_WITH_PEAK = ("import atexit, resource, runpy, sys\n"
              "def peak_kb():\n"
              "    try:\n"
              "        for line in open('/proc/self/status'):\n"
              "            if line.startswith('VmHWM:'):\n"
              "                return int(line.split()[1])\n"
              "    except OSError:\n"
              "        pass\n"
              "    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
              "atexit.register(lambda: sys.stderr.write('\\nPEAK_RSS_KB %d\\n' % peak_kb()))\n"
              "sys.argv = ['dermaseg', *sys.argv[1:]]\n"
              "runpy.run_module('dermaseg_app', run_name='__main__', alter_sys=True)\n")


def _run(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", DERMASEG_MAX_IMAGE_PIXELS="50000000")
    return subprocess.run([sys.executable, "-c", _WITH_PEAK, *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def _peak_rss_mb(result: subprocess.CompletedProcess) -> float:
    """The command's own peak resident memory, as its wrapper printed it."""
    kb = [int(line.split()[1]) for line in result.stderr.splitlines() if line.startswith("PEAK_RSS_KB ")]
    assert kb, result.stderr[-2000:]
    return kb[-1] / 1024


def test_bad_images_through_predict_and_evaluate(model: Path, tmp_path: Path) -> None:
    images, bad, good = build_corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    result = _run(["predict", str(images), "--out", str(out), "--model", str(model), "--device", "cpu"])
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
    rows = {Path(r["image"]).name: r for r in csv.DictReader(open(out / "predictions.csv", encoding="utf-8"))}
    for n, words in bad.items():
        assert n in rows, (n, sorted(rows))
        assert words in rows[n]["error"], (n, rows[n]["error"])
        assert rows[n]["mask"] == ""
        line = next((ln for ln in result.stderr.splitlines() if str(images / n) in ln), "")
        assert words in line, (n, result.stderr)                  # path and reason, one line
    for n, (w, h) in good.items():
        assert rows[n]["error"] == "", (n, rows[n]["error"])
        mask = cv2.imdecode(np.fromfile(rows[n]["mask"], np.uint8), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (h, w), n
    assert "folder.jpg" not in rows and not any("cycle" in k for k in rows)
    # the bomb was refused from its header: the run stayed far from its 900 M pixels (> 1 GB)
    assert _peak_rss_mb(result) < 1500

    report = tmp_path / "report.json"
    result = _run(["evaluate", str(images), "--model", str(model), "--device", "cpu", "--json", str(report)])
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
    data = json.loads(report.read_text(encoding="utf-8"))
    scored = {Path(e["image"]).name for e in data["per_image"]}
    assert scored == set(good)
    reasons = {Path(e["path"]).name: e["reason"] for e in data["errors"]}
    for n, words in bad.items():
        if n in ("broken.png",):
            continue
        if n in reasons:  # an image with ground truth: it was read and refused with the reason
            assert words in reasons[n] or "no ground truth" in reasons[n], (n, reasons[n])
    assert words_present(reasons, "bomb.png", "over the limit")
    assert _peak_rss_mb(result) < 1500


def words_present(reasons: dict[str, str], name: str, words: str) -> bool:
    return name in reasons and words in reasons[name]


# ------------------------------------------------------------------------- odd model files
def _state(config: dict) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    net = build_generator("slsnet", config)
    return {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}


def _model_file(path: Path, tensors: dict, info: dict | str, config: dict | str) -> Path:
    from safetensors.torch import save_file

    meta = {"format": FORMAT_NAME, "format_version": "1", "arch": "slsnet",
            "info": info if isinstance(info, str) else json.dumps(info),
            "config": config if isinstance(config, str) else json.dumps(config)}
    save_file(tensors, str(path), metadata=meta)
    return path


def build_model_corpus(folder: Path, good: Path) -> dict[str, str]:
    """name -> words of the expected reason."""
    folder.mkdir()
    config = dict(default_config("slsnet"), input_size=SIZE, **SMALL)
    base = {"name": "odd", "version": "1", "arch": "slsnet", "input_size": SIZE, "threshold": 0.5}
    state = _state(config)
    cases: dict[str, str] = {}
    (folder / "text.safetensors").write_text("not a model at all, just some words here\n")
    cases["text.safetensors"] = "not a readable safetensors file"
    (folder / "zero.safetensors").write_bytes(b"")
    cases["zero.safetensors"] = "empty or truncated"
    data = good.read_bytes()
    (folder / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    cases["truncated.safetensors"] = "truncated or corrupt"
    deep = '{"name": "odd", "version": "1", "arch": "slsnet", "x": ' + "[" * 100000 + "]" * 100000 + "}"
    _model_file(folder / "deep.safetensors", state, deep, config)
    cases["deep.safetensors"] = "nested"
    _model_file(folder / "huge_input.safetensors", state, dict(base, input_size=65536),
                dict(config, input_size=65536))
    cases["huge_input.safetensors"] = "input size 65536"
    big = dict(config, encoder_channels=[4096, 8192, 16384])
    _model_file(folder / "huge_net.safetensors", {"w": torch.zeros(4)}, base, big)
    cases["huge_net.safetensors"] = "parameters"
    _model_file(folder / "metrics.safetensors", state, dict(base, metrics="jsc 0.8"), config)
    cases["metrics.safetensors"] = "'metrics'"
    first = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    nan = dict(state)
    nan[first] = torch.full_like(state[first], float("nan"))
    _model_file(folder / "nan.safetensors", nan, base, config)
    cases["nan.safetensors"] = "NaN or infinite"
    inf = dict(state)
    inf[first] = torch.full_like(state[first], float("inf"))
    _model_file(folder / "inf.safetensors", inf, base, config)
    cases["inf.safetensors"] = "NaN or infinite"
    wrong = dict(state)
    wrong[first] = torch.zeros(3, 3)
    _model_file(folder / "shape.safetensors", wrong, base, config)
    cases["shape.safetensors"] = "has shape (3, 3)"
    missing = dict(state)
    del missing[first]
    _model_file(folder / "missing.safetensors", missing, base, config)
    cases["missing.safetensors"] = "missing tensor"
    from safetensors.torch import save_file

    save_file(state, str(folder / "foreign.safetensors"))
    cases["foreign.safetensors"] = "not a DermaSeg model file"
    (folder / "folder.safetensors").mkdir()
    cases["folder.safetensors"] = "folder"
    return cases


def test_odd_model_files_through_info_and_predict(model: Path, tmp_path: Path, capsys) -> None:
    cases = build_model_corpus(tmp_path / "models", model)
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.zeros((SIZE, SIZE, 3), np.uint8))
    for name, words in cases.items():
        path = tmp_path / "models" / name
        code = cli.main(["info", "--model", str(path), "--device", "cpu"])
        err = capsys.readouterr().err
        assert code == 1, (name, err)
        assert str(path) in err and words in err, (name, err)
        code = cli.main(["predict", str(image), "--out", str(tmp_path / "o"), "--model", str(path),
                         "--device", "cpu"])
        err = capsys.readouterr().err
        assert code == 1, (name, err)
        assert str(path) in err and words in err, (name, err)
    assert cli.main(["info", "--model", str(model), "--device", "cpu"]) == 0  # a good one still passes

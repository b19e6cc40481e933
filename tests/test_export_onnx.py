"""dermaseg export-model: ONNX with a fixed input size, a dynamic batch and the model's metadata,
checked with onnx.checker and run with ONNX Runtime against torch."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dermaseg_app.cli import main
from dermaseg_app.ml.registry import build_generator, default_config
from dermaseg_app.ml.weights import ModelInfo, load_model, save_model

onnx = pytest.importorskip("onnx")

SIZE = 32
SMALL = {"encoder_channels": [24, 32, 64], "decoder_channels": [32, 16], "stage2_dilations": [2, 4]}
# float32 through a different runtime: the largest probability difference accepted
TOLERANCE = 1e-4

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_model(folder: Path, size: int = SIZE, seed: int = 0) -> Path:
    """A random SLSNet whose attention matters (gamma set, it is 0 when freshly built) and whose
    BatchNorm statistics are not the identity, so folding and attention are both exercised."""
    torch.manual_seed(seed)
    config = dict(default_config("slsnet"), input_size=size, **SMALL)
    net = build_generator("slsnet", config)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.7)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    info = ModelInfo(name="tiny-onnx", version="1.2.3", arch="slsnet", config=config, input_size=size,
                     threshold=0.42)
    return save_model(folder / "tiny.safetensors", net, info)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("onnx-model"))


@pytest.fixture(scope="module")
def exported(model_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx-out") / "tiny.onnx"
    assert main(["export-model", str(model_path), "--format", "onnx", "--out", str(out), "--no-verify"]) == 0
    return out


def test_the_file_passes_the_checker_and_carries_the_models_metadata(exported):
    proto = onnx.load(str(exported))
    onnx.checker.check_model(proto, full_check=True)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["model_name"] == "tiny-onnx" and meta["model_version"] == "1.2.3"
    assert float(meta["threshold"]) == pytest.approx(0.42) and meta["input_size"] == str(SIZE)
    assert len(meta["source_sha256"]) == 64


def test_fixed_input_size_and_a_dynamic_batch(exported):
    graph = onnx.load(str(exported)).graph
    (inp,), (out,) = graph.input, graph.output
    assert inp.name == "image" and out.name == "probability"
    in_dims = inp.type.tensor_type.shape.dim
    out_dims = out.type.tensor_type.shape.dim
    assert in_dims[0].dim_param and not in_dims[0].dim_value  # the batch is symbolic
    assert [d.dim_value for d in in_dims[1:]] == [3, SIZE, SIZE]
    assert out_dims[0].dim_param and [d.dim_value for d in out_dims[1:]] == [1, SIZE, SIZE]


def test_only_standard_operators_the_fused_attention_kernel_is_not_in_the_graph(exported):
    nodes = onnx.load(str(exported)).graph.node
    assert {n.domain for n in nodes} <= {"", "ai.onnx"}
    assert not [n for n in nodes if "pam" in n.op_type.lower() or "dermaseg" in n.op_type.lower()]
    assert sum(n.op_type == "Softmax" for n in nodes) >= 1  # the attention is there, as plain operators


def test_onnx_runtime_gives_torchs_probabilities(exported, model_path):
    ort = pytest.importorskip("onnxruntime")
    network, _ = load_model(model_path, "cpu")  # the unfused network, as trained
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(exported), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    for batch in (1, 3):  # the batch is dynamic: other sizes than the traced one
        x = rng.random((batch, 3, SIZE, SIZE), dtype=np.float32)
        got = session.run(["probability"], {"image": x})[0]
        with torch.inference_mode():
            want = network(torch.from_numpy(x)).numpy()
        assert got.shape == want.shape == (batch, 1, SIZE, SIZE)
        assert np.abs(got - want).max() <= TOLERANCE
        assert want.std() > 1e-3  # a real map, not a constant both sides could agree on


def test_the_command_verifies_with_onnx_runtime(model_path, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "sub" / "m.onnx"
    assert main(["export-model", str(model_path), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "verified with ONNX Runtime" in text and "tiny-onnx 1.2.3" in text and out.is_file()


def test_a_difference_above_the_tolerance_fails(model_path, tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    from dermaseg_app.ml import export_onnx

    monkeypatch.setattr(export_onnx, "compare_with_torch", lambda *a, **k: 0.25)
    assert main(["export-model", str(model_path), "--out", str(tmp_path / "m.onnx")]) == 1
    assert "differs from torch by 2.50e-01" in capsys.readouterr().err


def test_bad_arguments(model_path, tmp_path, capsys):
    assert main(["export-model", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert main(["export-model", str(model_path), "--out", str(tmp_path)]) == 2
    assert main(["export-model", str(model_path), "--out", str(model_path)]) == 2
    with pytest.raises(SystemExit):
        main(["export-model", str(model_path), "--format", "tflite", "--out", str(tmp_path / "m")])
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model")
    assert main(["export-model", str(bad), "--out", str(tmp_path / "m.onnx")]) == 1
    assert "cannot load the model" in capsys.readouterr().err


def test_without_the_onnx_package_it_says_what_to_install(model_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    assert main(["export-model", str(model_path), "--out", str(tmp_path / "m.onnx")]) == 1
    assert "dermaseg[onnx]" in capsys.readouterr().err and not (tmp_path / "m.onnx").exists()


def test_cached_export_is_made_once_per_model_file(model_path, tmp_path, monkeypatch):
    from dermaseg_app.ml import export_onnx

    calls = []
    real = export_onnx.export_onnx
    monkeypatch.setattr(export_onnx, "export_onnx", lambda *a, **k: calls.append(a) or real(*a, **k))
    first = export_onnx.cached_onnx(model_path, tmp_path / "cache")
    copy = tmp_path / "elsewhere.safetensors"
    copy.write_bytes(model_path.read_bytes())  # the same contents under another name
    assert export_onnx.cached_onnx(copy, tmp_path / "cache") == first and len(calls) == 1
    other = tiny_model(tmp_path, seed=5)
    assert export_onnx.cached_onnx(other, tmp_path / "cache") != first and len(calls) == 2

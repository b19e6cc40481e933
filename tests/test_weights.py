"""Model files: round trip, and a clear WeightsError naming the file for every kind of bad file."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dermaseg_app.ml.registry import build_generator, default_config
from dermaseg_app.ml.weights import (
    ModelInfo,
    WeightsError,
    card_path,
    load_model,
    read_card_summary,
    read_model_info,
    save_model,
)

SIZE = 32


# A narrow SLSNet keeps the tests quick; the round trip also runs the paper's full widths.
SMALL = {"encoder_channels": [24, 32, 64], "decoder_channels": [32, 16], "stage2_dilations": [2, 4]}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_info(size: int = SIZE, full: bool = False, **changes) -> ModelInfo:
    config = dict(default_config("slsnet"), input_size=size)
    if not full:
        config.update(SMALL)
    fields = dict(name="test-slsnet", version="0.0.1", arch="slsnet", config=config, input_size=size,
                  threshold=0.5, trained_on="random init (test)", metrics={"jsc": 0.5})
    fields.update(changes)
    return ModelInfo(**fields)


def random_model(tmp_path: Path, size: int = SIZE, name: str = "model.safetensors", seed: int = 0,
                 full: bool = False):
    torch.manual_seed(seed)
    info = make_info(size, full=full)
    generator = build_generator("slsnet", info.config).eval()
    path = save_model(tmp_path / name, generator, info)
    return path, generator, info


def test_round_trip_gives_identical_outputs_and_info(tmp_path):
    path, generator, info = random_model(tmp_path, full=True)
    loaded, loaded_info = load_model(path)
    assert not loaded.training
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.inference_mode():
        assert torch.equal(generator(x), loaded(x))
    assert loaded_info.path == path
    assert (loaded_info.name, loaded_info.version, loaded_info.arch) == ("test-slsnet", "0.0.1", "slsnet")
    assert loaded_info.input_size == SIZE and loaded_info.threshold == 0.5
    assert loaded_info.metrics == {"jsc": 0.5}
    assert loaded_info.config == info.config
    assert loaded_info.card_summary == ""
    assert read_model_info(path).name == "test-slsnet"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temp files left


def test_model_card_summary_is_the_first_paragraph(tmp_path):
    torch.manual_seed(0)
    info = make_info()
    generator = build_generator("slsnet", info.config)
    card = ("# SLSNet ISIC 2017\n\nTrained on the ISIC 2017 training set.\nJSC 0.77 on val.\n\n"
            "## Limits\n\nNot for clinical photos.\n")
    path = save_model(tmp_path / "m.safetensors", generator, info, card=card)
    assert card_path(path).read_text() == card
    _, loaded = load_model(path)
    assert loaded.card_summary.startswith("Trained on the ISIC 2017 training set. JSC 0.77 on val.")
    assert "#" not in loaded.card_summary
    assert read_card_summary(tmp_path / "absent.safetensors") == ""


def test_missing_file_names_the_file(tmp_path):
    path = tmp_path / "nowhere.safetensors"
    with pytest.raises(WeightsError, match="no such model file") as err:
        load_model(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("keep", [0, 5, 100, 0.5])
def test_truncated_file_names_the_file(tmp_path, keep):
    path, _, _ = random_model(tmp_path)
    data = path.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep
    path.write_bytes(data[:cut])
    with pytest.raises(WeightsError) as err:
        load_model(path)
    assert str(path) in str(err.value)
    assert "truncated" in str(err.value) or "corrupt" in str(err.value)


def test_garbage_file_names_the_file(tmp_path):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(WeightsError) as err:
        load_model(path)
    assert str(path) in str(err.value)


def test_a_pickle_cannot_run_code_when_loaded(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"state_dict": Evil()}))
    with pytest.raises(WeightsError):
        load_model(path)
    assert not marker.exists()


def _rewrite(path: Path, tensors: dict, metadata: dict) -> None:
    save_file(tensors, str(path), metadata=metadata)


def _contents(path: Path) -> tuple[dict, dict]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())


def test_wrong_shape_tensor_is_named(tmp_path):
    path, _, _ = random_model(tmp_path)
    tensors, metadata = _contents(path)
    key = next(k for k, v in tensors.items() if v.dim() == 4)
    tensors[key] = torch.zeros(*tensors[key].shape[:-1], tensors[key].shape[-1] + 1)
    _rewrite(path, tensors, metadata)
    with pytest.raises(WeightsError, match="shape") as err:
        load_model(path)
    assert key in str(err.value) and str(path) in str(err.value)


def test_missing_and_extra_tensors(tmp_path):
    path, _, _ = random_model(tmp_path)
    tensors, metadata = _contents(path)
    removed = sorted(tensors)[0]
    del tensors[removed]
    _rewrite(path, tensors, metadata)
    with pytest.raises(WeightsError, match="missing tensor") as err:
        load_model(path)
    assert removed in str(err.value)
    tensors, metadata = _contents(path)
    tensors["extra.weight"] = torch.zeros(3)
    _rewrite(path, tensors, metadata)
    with pytest.raises(WeightsError, match="unexpected tensor"):
        load_model(path)


def test_unknown_architecture_and_bad_config(tmp_path):
    path, _, _ = random_model(tmp_path)
    tensors, metadata = _contents(path)
    info = json.loads(metadata["info"])
    info["arch"] = "unet9000"
    _rewrite(path, tensors, dict(metadata, info=json.dumps(info)))
    with pytest.raises(WeightsError, match="unknown architecture 'unet9000'"):
        load_model(path)
    config = json.loads(metadata["config"])
    config["no_such_setting"] = 3
    _rewrite(path, tensors, dict(metadata, config=json.dumps(config)))
    with pytest.raises(WeightsError, match="configuration") as err:
        load_model(path)
    assert str(path) in str(err.value)


def test_plain_safetensors_without_our_metadata(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(WeightsError, match="not a DermaSeg model file"):
        load_model(path)


def test_save_refuses_bad_info(tmp_path):
    generator = build_generator("slsnet", make_info().config)
    with pytest.raises(WeightsError, match="threshold"):
        save_model(tmp_path / "m.safetensors", generator, make_info(threshold=1.5))
    with pytest.raises(WeightsError, match="divisible by 8"):
        save_model(tmp_path / "m.safetensors", generator, make_info(input_size=30))
    with pytest.raises(WeightsError, match=".safetensors"):
        save_model(tmp_path / "m.pt", generator, make_info())
    assert not any(tmp_path.iterdir())

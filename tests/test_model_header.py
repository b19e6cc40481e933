"""The one reader of a model file's header (``ml.header``): torch-free, shared by the window
(``read_model_header``) and ``ml.weights.read_model_info``."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from dermaseg_app.ml.header import ModelHeaderError, read_metadata, read_model_header


def _file(path: Path, metadata: dict | None, data: bytes = b"\0" * 8) -> Path:
    header: dict = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, len(data)]}}
    if metadata is not None:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def test_the_window_and_the_weights_read_the_same_header(random_model: Path) -> None:
    from dermaseg_app.ml.weights import read_model_info

    header = read_model_header(random_model)
    info = read_model_info(random_model)
    assert (header.name, header.version, header.threshold) == (info.name, info.version, info.threshold)
    assert read_metadata(random_model)["format"] == "dermaseg.model"


def test_reading_the_header_does_not_import_torch(random_model: Path) -> None:
    code = ("import sys; from dermaseg_app.ml.header import read_model_header; "
            f"read_model_header({str(random_model)!r}); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("content, words", [
    (b"", "empty or truncated"),
    (b"not a model at all, just some words", "bad header length"),
    (struct.pack("<Q", 5) + b"{oops", "damaged header"),
])
def test_a_damaged_file_names_the_reason(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelHeaderError, match=words) as err:
        read_model_header(path)
    assert err.value.path == path


def test_a_truncated_file_is_refused(tmp_path: Path) -> None:
    path = _file(tmp_path / "m.safetensors", {"info": json.dumps({"name": "m", "version": "1"})})
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ModelHeaderError, match="truncated or corrupt"):
        read_metadata(path)


def test_the_windows_header_is_lenient_about_the_threshold(tmp_path: Path) -> None:
    path = _file(tmp_path / "m.safetensors", {"info": json.dumps({"name": "m", "version": "2", "threshold": 7})})
    header = read_model_header(path)
    assert header.label == "m 2" and header.threshold == 0.5
    with pytest.raises(ModelHeaderError, match="not a DermaSeg model file"):
        read_model_header(_file(tmp_path / "foreign.safetensors", None))

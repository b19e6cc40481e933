"""The pixel and file-size limits (issue 11 item 9): refused from the header, before decoding,
with the path and the reason; the limit is a setting."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermaseg_app.core import limits
from dermaseg_app.core.dataset import Case, check_pair
from dermaseg_app.core.imageio import ImageReadError, image_size, read_image, read_mask


@pytest.fixture(autouse=True)
def fresh_limits(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("DERMASEG_MAX_IMAGE_PIXELS", raising=False)
    limits.reset_limits()
    yield
    limits.reset_limits()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _declared_png(path: Path, w: int, h: int) -> Path:
    """A PNG header declaring w x h (its data is never reached)."""
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                     + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("w,h", [(30000, 30000), (40000, 40000)])  # the second is over 2^30 pixels
def test_huge_images_are_refused_before_decoding(tmp_path: Path, w: int, h: int) -> None:
    path = _declared_png(tmp_path / "huge.png", w, h)
    for read in (read_image, read_mask, image_size):
        with pytest.raises(ImageReadError, match=f"{w}x{h} pixels.*over the limit of 200 megapixels") as info:
            read(path)
        assert info.value.path == path
    message = check_pair(Case(image=path, ground_truth=path, stem="huge"))
    assert message is not None and "over the limit" in message


def test_the_limit_is_a_setting(tmp_path: Path, monkeypatch) -> None:
    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(photo)
    assert read_image(photo).shape == (60, 80, 3)          # 4800 pixels: under the default
    settings = tmp_path / "config" / "dermaseg" / "settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps({"schema_version": 1, "max_image_pixels": 4000}))
    limits.reset_limits()
    with pytest.raises(ImageReadError, match="over the limit"):
        read_image(photo)
    monkeypatch.setenv("DERMASEG_MAX_IMAGE_PIXELS", "5000")  # the environment wins
    limits.reset_limits()
    assert read_image(photo).shape == (60, 80, 3)
    limits.set_limits(max_image_pixels=100)
    with pytest.raises(ImageReadError, match="over the limit"):
        image_size(photo)


def test_a_6000x4000_photograph_is_accepted(tmp_path: Path) -> None:
    path = _declared_png(tmp_path / "camera.png", 6000, 4000)
    assert image_size(path) == (6000, 4000)

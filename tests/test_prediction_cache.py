import os
import sys
from pathlib import Path

import numpy as np
import pytest

from dermaseg_app.core.prediction_cache import ModelKey, PredictionCache, dequantize, quantize


def _image(tmp_path: Path, name: str = "a.jpg", content: bytes = b"image bytes") -> Path:
    path = tmp_path / "images" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def _prob(h: int = 24, w: int = 32) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.random((h, w), dtype=np.float32)


def test_round_trip_within_quantisation(tmp_path: Path) -> None:
    cache = PredictionCache(ModelKey("slsnet", "1.0"), root=tmp_path / "cache")
    image = _image(tmp_path)
    prob = _prob()
    assert cache.load(image) is None
    entry = cache.store(image, prob)
    assert entry.is_file() and entry.suffix == ".png"
    back = cache.load(image)
    assert back is not None and back.dtype == np.float32 and back.shape == prob.shape
    assert np.abs(back - prob).max() <= 0.5 / 255 + 1e-6
    assert np.array_equal(cache.load_u8(image), quantize(prob))


def test_key_changes_with_image_and_model(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    image = _image(tmp_path)
    v1 = PredictionCache(ModelKey("slsnet", "1.0"), root=root)
    v1.store(image, _prob())
    assert PredictionCache(ModelKey("slsnet", "1.1"), root=root).load(image) is None
    assert PredictionCache(ModelKey("other", "1.0"), root=root).load(image) is None
    assert PredictionCache(ModelKey("slsnet", "1.0", "fp2"), root=root).load(image) is None
    assert PredictionCache(ModelKey("slsnet", "1.0"), root=root).load(image) is not None
    # the image file changes (size and mtime): a miss, never a stale map
    image.write_bytes(b"another image, longer")
    os.utime(image, ns=(1, 1))
    assert v1.load(image) is None
    # another file with the same name in another folder
    assert v1.load(_image(tmp_path / "elsewhere")) is None


def test_damaged_entry_is_a_miss_and_removed(tmp_path: Path) -> None:
    cache = PredictionCache(ModelKey("m", "1"), root=tmp_path / "cache")
    image = _image(tmp_path)
    entry = cache.store(image, _prob())
    entry.write_bytes(b"\x89PNG truncated")
    assert cache.load(image) is None
    assert not entry.exists()


def test_missing_image_is_a_miss(tmp_path: Path) -> None:
    cache = PredictionCache(ModelKey("m", "1"), root=tmp_path / "cache")
    assert cache.load(tmp_path / "nope.jpg") is None
    assert not cache.contains(tmp_path / "nope.jpg")
    with pytest.raises(OSError):
        cache.store(tmp_path / "nope.jpg", _prob())


def test_store_is_atomic_no_temp_files_left(tmp_path: Path) -> None:
    cache = PredictionCache(ModelKey("m", "1"), root=tmp_path / "cache")
    image = _image(tmp_path)
    cache.store(image, _prob())
    cache.store(image, _prob())  # overwrite
    names = [p.name for p in cache.folder.iterdir()]
    assert len(names) == 1 and names[0].endswith(".png")


def test_rejects_non_2d(tmp_path: Path) -> None:
    cache = PredictionCache(ModelKey("m", "1"), root=tmp_path / "cache")
    with pytest.raises(ValueError):
        cache.store(_image(tmp_path), np.zeros((4, 4, 3), np.float32))


def test_prune_keeps_budget(tmp_path: Path) -> None:
    cache = PredictionCache(ModelKey("m", "1"), root=tmp_path / "cache")
    images = [_image(tmp_path, f"{i}.jpg", bytes([i]) * (i + 1)) for i in range(4)]
    for img in images:
        cache.store(img, _prob(64, 64))
    one = cache.size_bytes() // 4
    removed = cache.prune(2 * one + one // 2)
    assert removed >= 2
    assert cache.size_bytes() <= 2 * one + one // 2
    assert cache.clear() >= 1 and cache.size_bytes() == 0


def test_quantize_helpers() -> None:
    p = np.array([[0.0, 0.5, 1.0, 1.5, -0.2]], np.float32)
    q = quantize(p)
    assert q.dtype == np.uint8 and q.tolist() == [[0, 128, 255, 255, 0]]
    assert np.allclose(dequantize(q), [[0, 128 / 255, 1, 1, 0]])


def test_core_cache_imports_no_qt_or_torch() -> None:
    import subprocess

    code = (
        "import sys, dermaseg_app.core.prediction_cache; "
        "bad = [m for m in ('torch', 'PySide6', 'pyqtgraph') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

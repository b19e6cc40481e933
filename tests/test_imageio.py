import io
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from dermaseg_app.core import imageio
from dermaseg_app.core.atomic import TEMP_PREFIX
from dermaseg_app.core.imageio import (
    IMAGE_EXTENSIONS,
    ImageReadError,
    image_size,
    read_image,
    read_mask,
    write_image,
    write_mask_png,
)

H, W = 12, 20


def _rgb8() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)


def _write_cv(path: Path, arr_bgr: np.ndarray) -> Path:
    ok, buf = cv2.imencode(path.suffix, arr_bgr)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


@pytest.mark.parametrize("ext", [".png", ".tif", ".bmp"])
def test_rgb8_lossless_formats(tmp_path: Path, ext: str) -> None:
    rgb = _rgb8()
    p = _write_cv(tmp_path / f"a{ext}", rgb[:, :, ::-1])
    out = read_image(p)
    assert out.dtype == np.uint8 and out.shape == (H, W, 3)
    np.testing.assert_array_equal(out, rgb)
    assert image_size(p) == (W, H)


@pytest.mark.parametrize("ext", [".png", ".tif", ".bmp"])
def test_grey8(tmp_path: Path, ext: str) -> None:
    g = _rgb8()[:, :, 0]
    out = read_image(_write_cv(tmp_path / f"g{ext}", g))
    assert out.shape == (H, W, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], g)


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_scaled_not_truncated(tmp_path: Path, ext: str) -> None:
    vals = np.array([[0, 257, 65535, 32768, 128, 129 * 257 + 100]], dtype=np.uint16)
    expected = np.array([[0, 1, 255, 128, 0, 129]], dtype=np.uint8)
    grey = read_image(_write_cv(tmp_path / f"g16{ext}", vals))
    np.testing.assert_array_equal(grey[:, :, 0], expected)
    rgb16 = np.stack([vals, vals // 2, np.full_like(vals, 65535)], axis=2)  # RGB
    out = read_image(_write_cv(tmp_path / f"c16{ext}", rgb16[:, :, ::-1]))
    np.testing.assert_array_equal(out[:, :, 0], expected)
    np.testing.assert_array_equal(out[:, :, 2], 255)
    # truncating to the low byte would give 0 for 65535 // 2 = 32767 -> 127 expected
    assert out[0, 2, 1] == 127


def test_rgba_composited_on_black(tmp_path: Path) -> None:
    rgb = np.full((2, 3, 3), 200, dtype=np.uint8)
    alpha = np.array([[255, 0, 128], [255, 255, 255]], dtype=np.uint8)
    bgra = np.dstack([rgb[:, :, ::-1], alpha])
    out = read_image(_write_cv(tmp_path / "a.png", bgra))
    assert out.shape == (2, 3, 3)
    assert out[0, 0].tolist() == [200, 200, 200]
    assert out[0, 1].tolist() == [0, 0, 0]
    assert out[0, 2].tolist() == [100, 100, 100]  # 200 * 128/255 = 100.4
    # RGBA TIFF, fully opaque: identical to RGB
    opaque = np.dstack([_rgb8()[:, :, ::-1], np.full((H, W), 255, np.uint8)])
    np.testing.assert_array_equal(read_image(_write_cv(tmp_path / "o.tif", opaque)), _rgb8())


def test_jpeg_roundtrip_close(tmp_path: Path) -> None:
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[:, :24] = (200, 30, 30)
    rgb[:, 24:] = (20, 40, 220)
    p = tmp_path / "a.jpg"
    Image.fromarray(rgb).save(p, quality=95)
    out = read_image(p)
    assert out.shape == (32, 48, 3)
    assert np.abs(out[4:28, 4:20].astype(int) - (200, 30, 30)).max() < 12  # RGB order kept


def _oriented_jpeg(path: Path, orientation: int) -> np.ndarray:
    """Write a 40x60 (HxW) JPEG with an EXIF orientation; return what a viewer shows."""
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:10, :10] = (255, 0, 0)  # red block at the stored top-left
    rgb[30:, 50:] = (0, 0, 255)
    im = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, "JPEG", quality=95, exif=exif)
    with Image.open(path) as reopened:
        return np.asarray(ImageOps.exif_transpose(reopened).convert("RGB"))


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
def test_exif_orientation(tmp_path: Path, orientation: int) -> None:
    p = tmp_path / f"o{orientation}.jpg"
    shown = _oriented_jpeg(p, orientation)
    out = read_image(p)
    assert out.shape == shown.shape
    if orientation in (5, 6, 7, 8):
        assert out.shape == (60, 40, 3)
    assert np.abs(out.astype(int) - shown.astype(int)).max() <= 2
    assert image_size(p) == (shown.shape[1], shown.shape[0])


def test_exif_orientation_6_puts_top_left_at_top_right(tmp_path: Path) -> None:
    p = tmp_path / "rot.jpg"
    _oriented_jpeg(p, 6)
    out = read_image(p)
    assert out.shape == (60, 40, 3)
    # stored top-left red block: displayed (rotated 90 deg clockwise) at the top-right
    assert out[2, 37, 0] > 200 and out[2, 37, 2] < 60
    assert out[2, 2, 0] < 60


def test_non_ascii_path(tmp_path: Path) -> None:
    folder = tmp_path / "Läsion ünd 皮肤"
    folder.mkdir()
    p = _write_cv(folder / "bild_é.png", _rgb8()[:, :, ::-1])
    np.testing.assert_array_equal(read_image(p), _rgb8())
    write_mask_png(folder / "maske_ö.png", np.eye(4, dtype=bool))
    np.testing.assert_array_equal(read_mask(folder / "maske_ö.png"), np.eye(4, dtype=bool))


def _assert_error(path: Path, words: str) -> None:
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    err = info.value
    assert err.path == path
    assert words in err.reason
    assert str(path) in str(err) and err.reason in str(err)


def test_errors(tmp_path: Path) -> None:
    _assert_error(tmp_path / "missing.jpg", "does not exist")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    _assert_error(empty, "empty")
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture\n")
    _assert_error(text, "not an image")
    gif = tmp_path / "anim.gif"
    gif.write_bytes(b"GIF89a" + b"\x00" * 50)
    _assert_error(gif, "unsupported format GIF")
    folder = tmp_path / "dir.png"
    folder.mkdir()
    _assert_error(folder, "folder")


def test_corrupt_png(tmp_path: Path) -> None:
    ok, buf = cv2.imencode(".png", _rgb8())
    data = bytearray(buf.tobytes())
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(bytes(data[:40]) + b"\x00" * 30)  # header then garbage
    _assert_error(corrupt, "corrupt")
    truncated = tmp_path / "trunc.png"
    truncated.write_bytes(bytes(data[: len(data) // 2]))
    _assert_error(truncated, "truncated")


def test_truncated_jpeg(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    for cut in (2, len(data) // 3):
        p = tmp_path / f"trunc{cut}.jpg"
        p.write_bytes(data[:-cut])
        _assert_error(p, "truncated")


def test_jpeg_with_trailer_after_eoi_is_accepted(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(_rgb8()).save(buf, "JPEG", quality=90)
    p = tmp_path / "trailer.jpg"
    p.write_bytes(buf.getvalue() + b"SEFT vendor trailer data")
    assert read_image(p).shape == (H, W, 3)


def test_read_mask_rules(tmp_path: Path) -> None:
    m = np.zeros((5, 6), np.uint8)
    m[1:3, 2:5] = 255
    m[4, 0] = 100  # below half: background (e.g. JPEG noise)
    out = read_mask(_write_cv(tmp_path / "m.png", m))
    assert out.dtype == np.bool_ and out.shape == (5, 6)
    assert out.sum() == 6 and not out[4, 0]
    # 0/1 label mask
    lab = (m == 255).astype(np.uint8)
    np.testing.assert_array_equal(read_mask(_write_cv(tmp_path / "l.png", lab)), m == 255)
    # 16-bit
    m16 = (m == 255).astype(np.uint16) * 65535
    np.testing.assert_array_equal(read_mask(_write_cv(tmp_path / "m16.png", m16)), m == 255)
    # colour mask: lesion drawn in any colour channel
    col = np.zeros((5, 6, 3), np.uint8)
    col[1:3, 2:5, 1] = 255
    np.testing.assert_array_equal(read_mask(_write_cv(tmp_path / "c.png", col)), m == 255)
    # BMP (PH2 style)
    np.testing.assert_array_equal(read_mask(_write_cv(tmp_path / "b.bmp", m)), out)
    empty = tmp_path / "e.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        read_mask(empty)


def test_write_mask_png(tmp_path: Path) -> None:
    mask = np.zeros((7, 9), bool)
    mask[2:5, 3:8] = True
    p = tmp_path / "out.png"
    write_mask_png(p, mask)
    raw = cv2.imdecode(np.frombuffer(p.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint8 and raw.ndim == 2
    assert set(np.unique(raw).tolist()) == {0, 255}
    np.testing.assert_array_equal(raw == 255, mask)
    np.testing.assert_array_equal(read_mask(p), mask)
    # replaced atomically, no temp left
    write_mask_png(p, ~mask)
    np.testing.assert_array_equal(read_mask(p), ~mask)
    assert not [q for q in tmp_path.iterdir() if q.name.startswith(TEMP_PREFIX)]
    with pytest.raises(ValueError, match="2-D"):
        write_mask_png(p, np.zeros((3, 3, 3), bool))


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".jpg"])
def test_write_image(tmp_path: Path, ext: str) -> None:
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:, :8] = (250, 10, 10)
    p = tmp_path / f"w{ext}"
    write_image(p, rgb)
    out = read_image(p)
    tol = 10 if ext == ".jpg" else 0
    assert np.abs(out[2:14, 1:6].astype(int) - (250, 10, 10)).max() <= tol


def test_sample_images_read(samples_dir: Path) -> None:
    p = samples_dir / "ISIC_0000009.jpg"
    out = read_image(p)
    assert out.shape == (767, 1022, 3) and out.dtype == np.uint8
    assert image_size(p) == (1022, 767)
    assert ".jpg" in IMAGE_EXTENSIONS and ".png" in IMAGE_EXTENSIONS


def test_error_is_picklable() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(ImageReadError("/x/y.jpg", "the file is empty (0 bytes)")))
    assert err.path == Path("/x/y.jpg") and "empty" in str(err)


def test_orientation_helper_matches_pillow() -> None:
    arr = np.arange(6 * 4 * 3, dtype=np.uint8).reshape(6, 4, 3)
    methods = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }
    for o, method in methods.items():
        expected = np.asarray(Image.fromarray(arr).transpose(method))
        np.testing.assert_array_equal(imageio._apply_orientation(arr, o), expected)


def test_other_pixel_layouts(tmp_path: Path) -> None:
    rgb = np.zeros((8, 10, 3), np.uint8)
    rgb[:, :5] = (200, 50, 20)
    rgb[:, 5:] = (10, 120, 240)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    out = read_image(tmp_path / "cmyk.jpg")
    assert np.abs(out[2, 1].astype(int) - (200, 50, 20)).max() <= 6
    # palette PNG: expanded to its RGB colours
    pal = Image.fromarray(rgb).quantize(colors=4)
    pal.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), np.asarray(pal.convert("RGB")))
    # grey + alpha: composited on black
    la = Image.fromarray(rgb[:, :, 0]).convert("LA")
    la.putalpha(Image.fromarray(np.full((8, 10), 128, np.uint8)))
    la.save(tmp_path / "la.png")
    assert read_image(tmp_path / "la.png")[2, 1].tolist() == [100, 100, 100]
    # 16-bit RGBA, half transparent
    bgra16 = np.zeros((2, 2, 4), np.uint16)
    bgra16[..., 2] = 65535  # red
    bgra16[..., 3] = 32768
    out = read_image(_write_cv(tmp_path / "rgba16.png", bgra16))
    assert out[0, 0].tolist() == [128, 0, 0]
    # 1-bit images and masks
    bits = Image.fromarray(rgb[:, :, 0] > 100)
    bits.save(tmp_path / "b.png")
    bits.save(tmp_path / "b.tif")
    for name in ("b.png", "b.tif"):
        assert read_image(tmp_path / name)[2, 1].tolist() == [255, 255, 255]
        np.testing.assert_array_equal(read_mask(tmp_path / name), rgb[:, :, 0] > 100)


def test_permission_denied_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = _write_cv(tmp_path / "locked.png", _rgb8())

    real_open = os.open

    def refuse(path, *args, **kwargs):  # the tests run as root, which chmod cannot stop
        if os.fspath(path) == os.fspath(p):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    _assert_error(p, "permission denied")

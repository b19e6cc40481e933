"""Decoding a case for display: preview, ground truth, probability map (no Qt)."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from dermaseg_app.core.dataset import Case
from dermaseg_app.core.imageio import ImageReadError
from dermaseg_app.gui.case_images import PREVIEW_MAX_SIDE, load_case_images


def _jpeg(path: Path, h: int, w: int) -> Path:
    yy, xx = np.mgrid[:h, :w]
    img = np.stack([(xx * 255 // w), (yy * 255 // h), np.full((h, w), 90)], -1).astype(np.uint8)
    cv2.imwrite(str(path), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    return path


def test_large_jpeg_gets_a_fast_preview_matching_the_full_image(tmp_path: Path) -> None:
    image = _jpeg(tmp_path / "big.jpg", 1800, 2400)
    mask = np.zeros((1800, 2400), np.uint8)
    mask[600:1200, 800:1600] = 255
    gt = tmp_path / "big_mask.png"
    cv2.imwrite(str(gt), mask)
    images = load_case_images(Case(image, gt, "big"))
    assert images.rgb.shape == (1800, 2400, 3)
    ph, pw = images.preview.shape[:2]
    assert max(ph, pw) <= PREVIEW_MAX_SIDE and abs(ph / pw - 0.75) < 0.01
    small = cv2.resize(images.rgb, (pw, ph), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(int) - images.preview.astype(int)).mean() < 3  # same picture
    assert images.gt is not None and images.gt.sum() == 600 * 800
    assert images.gt_preview.shape == (ph, pw)
    prob = (mask // 255 * 200).astype(np.uint8)
    images.set_prob(prob)
    assert images.prob_preview.shape == (ph, pw)


def test_ground_truth_of_another_size_is_not_compared(tmp_path: Path) -> None:
    image = _jpeg(tmp_path / "a.jpg", 60, 80)
    gt = tmp_path / "a_mask.png"
    cv2.imwrite(str(gt), np.zeros((30, 40), np.uint8))
    images = load_case_images(Case(image, gt, "a"))
    assert images.gt is None and "not compared" in images.gt_problem and "40x30" in images.gt_problem


def test_unreadable_ground_truth_keeps_the_image(tmp_path: Path) -> None:
    image = _jpeg(tmp_path / "a.jpg", 60, 80)
    gt = tmp_path / "a_mask.png"
    gt.write_bytes(b"broken")
    images = load_case_images(Case(image, gt, "a"))
    assert images.rgb.shape == (60, 80, 3) and images.gt is None
    assert "cannot be read" in images.gt_problem


def test_unreadable_image_raises_with_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff nothing")
    with pytest.raises(ImageReadError):
        load_case_images(Case(bad, None, "bad"))


def test_thumbnail_follows_exif_orientation_and_reports_bad_files(tmp_path: Path) -> None:
    from PIL import Image

    from dermaseg_app.gui.thumbnails import THUMB_SIZE, read_thumbnail

    path = tmp_path / "rotated.jpg"
    img = Image.new("RGB", (400, 200), (200, 60, 60))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees": shown as 200 wide, 400 high
    img.save(path, exif=exif)
    thumb = read_thumbnail(path)
    assert thumb.shape[0] == THUMB_SIZE and thumb.shape[1] == THUMB_SIZE // 2
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ImageReadError) as err:
        read_thumbnail(bad)
    assert err.value.reason


def test_case_is_drawable_before_the_full_decode_ends(tmp_path: Path) -> None:
    image = _jpeg(tmp_path / "big.jpg", 2304, 3072)
    images = load_case_images(Case(image, None, "big"), wait_full=False)
    assert images.shape == (2304, 3072) and images.size == (3072, 2304)
    assert max(images.preview.shape[:2]) <= PREVIEW_MAX_SIDE
    images.set_prob(np.zeros((2304, 3072), np.uint8))  # the map fits before the pixels arrive
    images.wait_full()
    assert images.full_ready and images.rgb.shape == (2304, 3072, 3)

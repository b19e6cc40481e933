from pathlib import Path

import numpy as np
import pytest

from dermaseg_app.core.dataset import (
    OUTPUT_MARKER,
    Case,
    check_pair,
    find_cases,
    find_ground_truth,
    find_images,
    mark_output_folder,
)
from dermaseg_app.core.imageio import write_image, write_mask_png


def _img(path: Path, w: int = 6, h: int = 4) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, np.full((h, w, 3), 120, np.uint8))
    return path


def _mask(path: Path, w: int = 6, h: int = 4) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((h, w), bool)
    m[1:3, 1:4] = True
    if path.suffix.lower() == ".png":
        write_mask_png(path, m)
    else:
        write_image(path, np.where(m, 255, 0).astype(np.uint8))
    return path


def test_images_masks_sibling_layout(tmp_path: Path) -> None:
    a = _img(tmp_path / "set" / "images" / "a.jpg")
    b = _img(tmp_path / "set" / "images" / "sub" / "b.png")
    c = _img(tmp_path / "set" / "images" / "c.jpg")
    ma = _mask(tmp_path / "set" / "masks" / "a.png")
    mb = _mask(tmp_path / "set" / "masks" / "sub" / "b_segmentation.png")
    assert find_images([tmp_path / "set"]) == [a, c, b]  # masks/ skipped; natural order
    assert find_ground_truth(a) == ma
    assert find_ground_truth(b) == mb
    assert find_ground_truth(c) is None
    cases = find_cases([tmp_path / "set"])
    assert cases == [Case(a, ma, "a"), Case(c, None, "c"), Case(b, mb, "b")]


def test_case_insensitive_names(tmp_path: Path) -> None:
    a = _img(tmp_path / "Images" / "A1.JPG")
    m = _mask(tmp_path / "Masks" / "a1.PNG")
    assert find_images([tmp_path]) == [a]
    assert find_ground_truth(a) == m


def test_isic_beside_image(tmp_path: Path) -> None:
    img = _img(tmp_path / "ISIC_0000001.jpg")
    gt = _mask(tmp_path / "ISIC_0000001_segmentation.png")
    assert find_images([tmp_path]) == [img]  # the mask is not an input image
    assert find_ground_truth(img) == gt


def test_isic_groundtruth_sibling_folder(tmp_path: Path) -> None:
    img = _img(tmp_path / "ISIC-2017_Training_Data" / "ISIC_0000002.jpg")
    gt = _mask(tmp_path / "ISIC-2017_Training_Part1_GroundTruth" / "ISIC_0000002_segmentation.png")
    _mask(tmp_path / "ISIC-2017_Training_Part2_GroundTruth" / "ISIC_0000002_superpixels.png")
    assert find_images([tmp_path]) == [img]
    assert find_ground_truth(img) == gt
    assert find_cases([tmp_path]) == [Case(img, gt, "ISIC_0000002")]


def test_ph2_layout(tmp_path: Path) -> None:
    root = tmp_path / "PH2 Dataset images"
    imgs, gts = [], []
    for n in ("IMD003", "IMD010"):
        imgs.append(_img(root / n / f"{n}_Dermoscopic_Image" / f"{n}.bmp"))
        gts.append(_mask(root / n / f"{n}_lesion" / f"{n}_lesion.bmp"))
        _mask(root / n / f"{n}_roi" / f"{n}_R1_Label4.bmp")
    assert find_images([root]) == imgs
    assert [c.ground_truth for c in find_cases([root])] == gts
    assert find_cases([root])[0].stem == "IMD003"


def test_explicit_masks_dir(tmp_path: Path) -> None:
    imgs = [_img(tmp_path / "in" / f"{s}.jpg") for s in "abcde"]
    md = tmp_path / "my masks"
    ma = _mask(md / "a.png")
    mb = _mask(md / "b_segmentation.png")
    mc = _mask(md / "c_mask.tif")
    # e has an ISIC mask beside it, but an explicit masks_dir is the only place looked in
    _mask(tmp_path / "in" / "e_segmentation.png")
    assert find_ground_truth(imgs[0], md) == ma
    assert find_ground_truth(imgs[1], md) == mb
    assert find_ground_truth(imgs[2], md) == mc
    assert find_ground_truth(imgs[3], md) is None
    assert find_ground_truth(imgs[4], md) is None
    assert find_ground_truth(imgs[4]) == tmp_path / "in" / "e_segmentation.png"
    cases = find_cases([tmp_path / "in"], masks_dir=md)
    assert [c.ground_truth for c in cases] == [ma, mb, mc, None, None]
    with pytest.raises(FileNotFoundError):
        find_cases([tmp_path / "in"], masks_dir=tmp_path / "nope")


def test_masks_dir_equal_to_image_dir_never_pairs_image_with_itself(tmp_path: Path) -> None:
    img = _img(tmp_path / "x.png")
    assert find_ground_truth(img, tmp_path) is None
    m = _mask(tmp_path / "x_mask.png")
    assert find_ground_truth(img, tmp_path) == m


def test_no_ground_truth(tmp_path: Path) -> None:
    img = _img(tmp_path / "lonely.jpg")
    assert find_ground_truth(img) is None
    assert find_cases([img]) == [Case(img, None, "lonely")]


def test_skips_hidden_output_and_non_images(tmp_path: Path) -> None:
    keep = _img(tmp_path / "keep.jpg")
    _img(tmp_path / ".hidden.jpg")
    _img(tmp_path / ".dermaseg-tmp-abc-keep.png")
    _img(tmp_path / ".cache" / "x.jpg")
    _img(tmp_path / "dermaseg-project" / "predictions" / "keep_prediction.png")
    _img(tmp_path / "ground_truth" / "keep.png")
    (tmp_path / "notes.txt").write_text("hi")
    out = tmp_path / "results"
    _img(out / "keep.png")
    mark_output_folder(out)
    assert (out / OUTPUT_MARKER).exists()
    assert find_images([tmp_path]) == [keep]


def test_recursive_flag_and_order(tmp_path: Path) -> None:
    names = ["img10.jpg", "img2.jpg", "img1.jpg"]
    top = [_img(tmp_path / n) for n in names]
    deep = _img(tmp_path / "sub" / "deep.jpg")
    assert find_images([tmp_path], recursive=False) == [top[2], top[1], top[0]]
    assert find_images([tmp_path]) == [top[2], top[1], top[0], deep]


def test_explicit_files_and_duplicates(tmp_path: Path) -> None:
    a = _img(tmp_path / "a.jpg")
    b = _img(tmp_path / "b.jpg")
    seg = _mask(tmp_path / "b_segmentation.png")
    # explicit files are taken as given (even a mask, the user asked for it), no duplicates
    assert find_images([b, tmp_path, seg]) == [b, a, seg]


def test_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        find_images([tmp_path / "missing"])
    assert str(tmp_path / "missing") in str(info.value)
    (tmp_path / "empty").mkdir()
    assert find_images([tmp_path / "empty"]) == []
    assert find_cases([tmp_path / "empty"]) == []


def test_check_pair(tmp_path: Path) -> None:
    img = _img(tmp_path / "images" / "a.png", w=6, h=4)
    good = _mask(tmp_path / "masks" / "a.png", w=6, h=4)
    assert check_pair(Case(img, good, "a")) is None
    assert check_pair(Case(img, None, "a")) is None
    bad = _mask(tmp_path / "other" / "a.png", w=4, h=6)
    msg = check_pair(Case(img, bad, "a"))
    assert msg is not None and "4x6" in msg and "6x4" in msg and str(bad) in msg
    broken = tmp_path / "other" / "broken.png"
    broken.write_bytes(b"")
    msg = check_pair(Case(img, broken, "a"))
    assert msg is not None and "empty" in msg and str(broken) in msg


def test_real_samples_pair(samples_dir: Path, sample_gt_dir: Path) -> None:
    cases = find_cases([samples_dir])
    assert len(cases) == 8
    for c in cases:
        assert c.ground_truth == sample_gt_dir / f"{c.stem}_segmentation.png"
        assert check_pair(c) is None
    # the whole samples folder: masks are not taken as images
    assert len(find_images([samples_dir.parent])) == 8

import math

import numpy as np
import pytest

from dermaseg_app.core.metrics import (
    Confusion,
    FolderSummary,
    MaskSizeMismatch,
    Scores,
    agreement,
    border_uncertainty,
    confusion,
    hd95,
    score,
    score_with_confusion,
    summarize,
    threshold_u8,
)

PRED = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=bool)
GT = np.array([[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]], dtype=bool)


def test_confusion_hand_counted() -> None:
    c = confusion(PRED, GT)
    assert c == Confusion(tp=2, fp=2, fn=2, tn=6)
    assert c.total == 12
    assert all(isinstance(v, int) for v in c.as_dict().values())
    # integer 0/255 masks are accepted (nonzero = lesion)
    assert confusion(PRED.astype(np.uint8) * 255, GT.astype(np.uint8)) == c


def test_scores_hand_computed() -> None:
    s = Scores.from_confusion(Confusion(tp=2, fp=2, fn=2, tn=6))
    assert s.acc == pytest.approx(8 / 12)
    assert s.dsc == pytest.approx(4 / 8)
    assert s.jsc == pytest.approx(2 / 6)
    assert s.sen == pytest.approx(2 / 4)
    assert s.spe == pytest.approx(6 / 8)
    assert s.jsc_th == 0.0  # 0.333 < 0.65
    assert s.hd95 is None
    good = Scores.from_confusion(Confusion(tp=70, fp=20, fn=10, tn=900))
    assert good.jsc == pytest.approx(70 / 100)
    assert good.jsc_th == pytest.approx(0.70)  # above the ISIC 2018 threshold: kept
    assert good.dsc == pytest.approx(140 / 170)
    assert good.spe == pytest.approx(900 / 920)
    exact = Scores.from_confusion(Confusion(tp=65, fp=35, fn=0, tn=0))
    assert exact.jsc_th == pytest.approx(0.65)  # threshold is inclusive


def test_score_matches_confusion() -> None:
    s = score(PRED, GT)
    assert s.dsc == pytest.approx(0.5)
    # boundaries: both 2x2 squares are all boundary; pred->gt distances [1,0,1,0],
    # gt->pred [0,1,0,1]; 95th percentile of the pooled eight = 1
    assert s.hd95 == pytest.approx(1.0)
    c, s2 = score_with_confusion(PRED, GT)
    assert c == confusion(PRED, GT) and s2 == s
    assert score(PRED, GT, with_hd95=False).hd95 is None


def test_edge_cases_conventions() -> None:
    empty = np.zeros((4, 5), bool)
    both = score(empty, empty)
    assert (both.acc, both.dsc, both.jsc, both.sen, both.spe, both.jsc_th) == (1, 1, 1, 1, 1, 1)
    assert both.hd95 == 0.0

    fp_only = empty.copy()
    fp_only[1, 1] = True
    s = score(fp_only, empty)  # nothing to find, one false alarm
    assert s.sen == 1.0  # 0/0 -> 1: no lesion pixel was missed
    assert s.dsc == 0.0 and s.jsc == 0.0 and s.jsc_th == 0.0
    assert s.spe == pytest.approx(19 / 20)
    assert s.hd95 is None

    s = score(empty, fp_only)  # lesion missed entirely
    assert s.sen == 0.0 and s.dsc == 0.0 and s.spe == 1.0 and s.hd95 is None

    full = np.ones((4, 5), bool)
    s = score(full, full)
    assert s.spe == 1.0 and s.dsc == 1.0 and s.hd95 == 0.0


def test_hd95_hand_computed() -> None:
    gt = np.zeros((1, 11), bool)
    gt[0, 0] = True
    pred = gt.copy()
    pred[0, 10] = True
    # pred->gt distances [0, 10], gt->pred [0]; pooled [0, 0, 10]; the 95th percentile with
    # linear interpolation sits at rank 1.9: 0 + 0.9 * 10 = 9
    assert hd95(pred, gt) == pytest.approx(9.0)

    a = np.zeros((3, 5), bool)
    b = np.zeros((3, 5), bool)
    a[0, :] = True
    b[2, :] = True
    assert hd95(a, b) == pytest.approx(2.0)

    # interior pixels are not boundary: a 5x5 square vs the same square grown by one ring
    # (7x7): every distance is 1 (grown ring -> square ring: 1 or sqrt(2) at the 4 corners)
    sq = np.zeros((11, 11), bool)
    sq[3:8, 3:8] = True
    big = np.zeros((11, 11), bool)
    big[2:9, 2:9] = True
    d_small = [1.0] * 16  # each of the 16 ring pixels of the 5x5 is 1 from the 7x7 ring
    d_big = [1.0] * 20 + [math.sqrt(2)] * 4
    assert hd95(sq, big) == pytest.approx(float(np.percentile(d_small + d_big, 95)))
    assert hd95(sq, big) == pytest.approx(math.sqrt(2))


def test_hd95_far_apart_cropped_correctly() -> None:
    a = np.zeros((200, 300), bool)
    b = np.zeros((200, 300), bool)
    a[10, 20] = True
    b[13, 24] = True
    assert hd95(a, b) == pytest.approx(5.0)


def test_mask_size_mismatch() -> None:
    with pytest.raises(MaskSizeMismatch) as info:
        confusion(np.zeros((3, 4), bool), np.zeros((4, 3), bool))
    msg = str(info.value)
    assert "4x3" in msg and "3x4" in msg
    assert isinstance(info.value, ValueError)
    with pytest.raises(MaskSizeMismatch):
        score(np.zeros((3, 4), bool), np.zeros((3, 5), bool))
    with pytest.raises(MaskSizeMismatch):
        agreement(np.zeros((3, 4), bool), np.zeros((3, 5), bool))
    err = MaskSizeMismatch((3, 4), (4, 3), context="case.jpg")
    assert str(err).startswith("case.jpg: ")


def test_summarize_mean_vs_pooled() -> None:
    c1 = Confusion(tp=2, fp=2, fn=2, tn=6)
    c2 = Confusion(tp=10, fp=0, fn=0, tn=2)
    items = [
        (c1, Scores.from_confusion(c1, hd95=3.0)),
        (c2, Scores.from_confusion(c2, hd95=None)),
    ]
    summary = summarize(items)
    assert isinstance(summary, FolderSummary)
    assert summary.n == 2 and summary.hd95_n == 1
    assert summary.mean.dsc == pytest.approx((0.5 + 1.0) / 2)
    assert summary.mean.jsc == pytest.approx((1 / 3 + 1.0) / 2)
    assert summary.mean.jsc_th == pytest.approx((0.0 + 1.0) / 2)
    assert summary.mean.hd95 == pytest.approx(3.0)  # over images where defined
    # pooled: tp=12 fp=2 fn=2 tn=8
    assert summary.pooled.dsc == pytest.approx(24 / 28)
    assert summary.pooled.jsc == pytest.approx(12 / 16)
    assert summary.pooled.jsc_th == pytest.approx(0.75)
    assert summary.pooled.acc == pytest.approx(20 / 24)
    assert summary.pooled.hd95 is None
    d = summary.as_dict()
    assert d["n"] == 2 and d["mean"]["dsc"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="no images"):
        summarize([])


def test_agreement() -> None:
    assert agreement(PRED, GT) == pytest.approx(0.5)
    assert agreement(PRED, PRED) == 1.0
    z = np.zeros((2, 2), bool)
    assert agreement(z, z) == 1.0


def test_confusion_large_mask_speed() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((2304, 3072)) > 0.5
    b = rng.random((2304, 3072)) > 0.5
    c = confusion(a, b)
    assert c.tp == int(np.count_nonzero(a & b))
    assert c.tn == int(np.count_nonzero(~a & ~b))
    assert c.total == a.size


def _medpy_hd95(pred: np.ndarray, gt: np.ndarray) -> float:
    """MedPy's hd95 written out with SciPy (reference implementation for the test)."""
    from scipy import ndimage

    cross = ndimage.generate_binary_structure(2, 1)

    def border(m: np.ndarray) -> np.ndarray:
        return m ^ ndimage.binary_erosion(m, structure=cross, iterations=1)

    bp, bg = border(pred), border(gt)
    d_pg = ndimage.distance_transform_edt(~bg)[bp]
    d_gp = ndimage.distance_transform_edt(~bp)[bg]
    return float(np.percentile(np.hstack((d_pg, d_gp)), 95))


def test_hd95_matches_medpy_definition() -> None:
    rng = np.random.default_rng(7)
    for _ in range(25):
        h, w = (int(v) for v in rng.integers(5, 40, 2))
        pred = rng.random((h, w)) < rng.uniform(0.05, 0.9)
        gt = rng.random((h, w)) < rng.uniform(0.05, 0.9)
        if not pred.any() or not gt.any():
            continue
        assert hd95(pred, gt) == pytest.approx(_medpy_hd95(pred, gt), abs=1e-4)
    # smooth shapes, one touching the image edge
    yy, xx = np.mgrid[0:60, 0:80]
    a = (xx - 30) ** 2 + (yy - 28) ** 2 < 20**2
    b = (xx - 38) ** 2 / 1.5 + (yy - 20) ** 2 < 22**2
    assert hd95(a, b) == pytest.approx(_medpy_hd95(a, b), abs=1e-4)


def test_threshold_u8_matches_float_threshold() -> None:
    prob = np.arange(256, dtype=np.uint8).reshape(16, 16)
    for t in (0.1, 0.3, 0.5, 0.73, 0.99):
        assert np.array_equal(threshold_u8(prob, t), prob / 255.0 >= t - 1e-9)


def test_border_uncertainty_sure_vs_unsure() -> None:
    yy, xx = np.mgrid[:100, :100]
    disk = ((yy - 50) ** 2 + (xx - 50) ** 2) < 30 ** 2
    sure = np.where(disk, 250, 3).astype(np.uint8)
    assert border_uncertainty(sure) < 0.05
    dist = np.sqrt((yy - 50) ** 2 + (xx - 50) ** 2)
    soft = np.clip(255 * (1 - (dist - 15) / 30), 0, 255).astype(np.uint8)  # a wide soft edge
    assert border_uncertainty(soft) > 0.3
    assert border_uncertainty(np.full((50, 50), 128, np.uint8)) == 1.0


def test_disagreement_is_xor_over_union() -> None:
    from dermaseg_app.core.metrics import MaskSizeMismatch, disagreement

    a = np.zeros((4, 5), bool)
    b = np.zeros((4, 5), bool)
    assert disagreement(a, b) == 0.0  # both empty: nothing to disagree on
    a[0, :4] = True  # 4 pixels
    b[0, 2:] = True  # 3 pixels, 2 shared
    # xor: columns 0, 1 (a only) and 4 (b only) = 3; union = 5
    assert disagreement(a, b) == pytest.approx(3 / 5)
    assert disagreement(b, a) == disagreement(a, b)
    assert disagreement(a, a) == 0.0
    assert disagreement(a, np.zeros_like(a)) == 1.0  # one empty, the other not: all differ
    assert disagreement(a.astype(np.uint8) * 255, b) == pytest.approx(3 / 5)  # 0/255 masks too
    with pytest.raises(MaskSizeMismatch):
        disagreement(a, np.zeros((5, 4), bool))

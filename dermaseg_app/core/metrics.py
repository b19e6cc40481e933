"""Segmentation metrics: confusion counts, the ISIC scores, HD95, folder summaries.

Definitions (pred = predicted lesion mask, gt = ground truth, counts over pixels):

* ``acc = (TP + TN) / N``            accuracy
* ``dsc = 2 TP / (2 TP + FP + FN)``  Dice similarity coefficient
* ``jsc = TP / (TP + FP + FN)``      Jaccard similarity coefficient (IoU)
* ``sen = TP / (TP + FN)``           sensitivity (recall)
* ``spe = TN / (TN + FP)``           specificity
* ``jsc_th = jsc if jsc >= 0.65 else 0``  the ISIC 2018 Task 1 thresholded Jaccard
* ``hd95``: 95th percentile of the symmetric boundary distances in pixels (below).

All ratios are fractions in [0, 1].

**Zero denominators (0/0) count as 1.0**: a quantity with nothing to measure is perfect. So both
masks empty gives DSC = JSC = SEN = SPE = ACC = 1 (as docs/DESIGN.md requires); an empty ground
truth with a non-empty prediction gives SEN = 1 (no lesion pixel was missed) but DSC = JSC = 0
and SPE < 1, so the false positives are still punished; a ground truth that fills the image
gives SPE = 1. This is MONAI's ``DiceMetric(ignore_empty=False)`` convention for DSC and
segmentation_models_pytorch's metrics with ``zero_division=1`` (its default, ``"warn"``, uses 0
and would score a correct empty prediction as a total failure). ISIC ground truths are never
empty, so the challenge numbers are unaffected.

**HD95** follows MedPy's ``hd95``: the boundary of a mask is its pixels that have a 4-neighbour
outside the mask (pixels on the image edge count as boundary); distances are Euclidean between
pixel centres, from every boundary pixel of one mask to the nearest boundary pixel of the other,
in both directions; HD95 is the 95th percentile of the two sets pooled. Both masks empty: 0;
exactly one empty: None (undefined). (MONAI instead takes the larger of the two directed
percentiles; the two agree on symmetric errors.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import cv2
import numpy as np

__all__ = [
    "JSC_THRESHOLD",
    "SCORE_LABELS",
    "Confusion",
    "FolderSummary",
    "MaskSizeMismatch",
    "Scores",
    "agreement",
    "confusion",
    "disagreement",
    "hd95",
    "score",
    "score_with_confusion",
    "summarize",
]

JSC_THRESHOLD = 0.65

SCORE_LABELS: dict[str, str] = {
    "acc": "Accuracy",
    "dsc": "Dice (DSC)",
    "jsc": "Jaccard (JSC)",
    "sen": "Sensitivity",
    "spe": "Specificity",
    "jsc_th": "Thresholded Jaccard",
    "hd95": "HD95 (px)",
}


class MaskSizeMismatch(ValueError):
    """Two masks that must be compared pixel by pixel have different sizes."""

    def __init__(
        self,
        pred_shape: tuple[int, ...],
        gt_shape: tuple[int, ...],
        context: str | None = None,
    ) -> None:
        self.pred_shape = tuple(pred_shape)
        self.gt_shape = tuple(gt_shape)
        self.context = context
        msg = (
            f"mask sizes differ: prediction {_shape_text(self.pred_shape)} vs "
            f"ground truth {_shape_text(self.gt_shape)}"
        )
        if context:
            msg = f"{context}: {msg}"
        super().__init__(msg)

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        return (type(self), (self.pred_shape, self.gt_shape, self.context))


def _shape_text(shape: tuple[int, ...]) -> str:
    if len(shape) >= 2:
        return f"{shape[1]}x{shape[0]} (WxH)"
    return str(shape)


def _ratio(num: int, den: int) -> float:
    return 1.0 if den == 0 else num / den


@dataclass(frozen=True)
class Confusion:
    """Pixel counts of one comparison (or of several, summed with ``+``)."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    def __add__(self, other: Confusion) -> Confusion:
        return Confusion(
            self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn
        )

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _as_bool(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    return m if m.dtype == np.bool_ else m != 0


def _check_shapes(pred: np.ndarray, gt: np.ndarray) -> None:
    if pred.shape != gt.shape:
        raise MaskSizeMismatch(pred.shape, gt.shape)


def confusion(pred: np.ndarray, gt: np.ndarray) -> Confusion:
    """Count TP, FP, FN, TN in one pass over both masks (bool, or numbers: nonzero = lesion).

    Raises MaskSizeMismatch when the shapes differ.
    """
    p, g = _as_bool(pred), _as_bool(gt)
    _check_shapes(p, g)
    code = p.view(np.uint8).ravel() + (g.view(np.uint8).ravel() << 1)  # 0 TN,1 FP,2 FN,3 TP
    tn, fp, fn, tp = (int(x) for x in np.bincount(code, minlength=4))
    return Confusion(tp=tp, fp=fp, fn=fn, tn=tn)


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it (image edge = outside)."""
    padded = np.pad(mask.view(np.uint8), 1)
    eroded = cv2.erode(padded, cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)))[1:-1, 1:-1]
    return mask & (eroded == 0)


def _distances_to(boundary_from: np.ndarray, boundary_to: np.ndarray) -> np.ndarray:
    """Euclidean distance from each pixel of boundary_from to the nearest of boundary_to."""
    free = np.where(boundary_to, np.uint8(0), np.uint8(1))
    dist = cv2.distanceTransform(free, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return dist[boundary_from]


def hd95(pred: np.ndarray, gt: np.ndarray) -> float | None:
    """95th-percentile symmetric Hausdorff distance in pixels (definition in the module doc)."""
    p, g = _as_bool(pred), _as_bool(gt)
    _check_shapes(p, g)
    p_any, g_any = bool(p.any()), bool(g.any())
    if not p_any and not g_any:
        return 0.0
    if not p_any or not g_any:
        return None
    # Boundaries are found on the full masks (image-edge rule), then the distance transforms
    # run on the union's bounding box only: every boundary pixel lies inside it, and exact
    # Euclidean distances between them do not depend on pixels outside it.
    union = p | g
    rows = np.flatnonzero(union.any(axis=1))
    cols = np.flatnonzero(union.any(axis=0))
    r0, r1 = rows[0], rows[-1] + 1
    c0, c1 = cols[0], cols[-1] + 1
    bp = _boundary(p)[r0:r1, c0:c1]
    bg = _boundary(g)[r0:r1, c0:c1]
    d = np.concatenate([_distances_to(bp, bg), _distances_to(bg, bp)])
    return float(np.percentile(d, 95))


@dataclass(frozen=True)
class Scores:
    """The per-image (or pooled) scores; fractions in [0, 1], hd95 in pixels or None."""

    acc: float
    dsc: float
    jsc: float
    sen: float
    spe: float
    jsc_th: float
    hd95: float | None = None

    @classmethod
    def from_confusion(cls, c: Confusion, hd95: float | None = None) -> Scores:
        jsc = _ratio(c.tp, c.tp + c.fp + c.fn)
        return cls(
            acc=_ratio(c.tp + c.tn, c.total),
            dsc=_ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn),
            jsc=jsc,
            sen=_ratio(c.tp, c.tp + c.fn),
            spe=_ratio(c.tn, c.tn + c.fp),
            jsc_th=jsc if jsc >= JSC_THRESHOLD else 0.0,
            hd95=hd95,
        )

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)


def score(pred: np.ndarray, gt: np.ndarray, with_hd95: bool = True) -> Scores:
    """All scores of ``pred`` against ``gt`` (MaskSizeMismatch when the sizes differ)."""
    c = confusion(pred, gt)
    return Scores.from_confusion(c, hd95(pred, gt) if with_hd95 else None)


def score_with_confusion(
    pred: np.ndarray, gt: np.ndarray, with_hd95: bool = True
) -> tuple[Confusion, Scores]:
    """(Confusion, Scores) in one call: the item type that summarize() takes."""
    c = confusion(pred, gt)
    return c, Scores.from_confusion(c, hd95(pred, gt) if with_hd95 else None)


@dataclass(frozen=True)
class FolderSummary:
    """Scores over a folder.

    ``mean``: the mean of the per-image scores (how ISIC ranks); its hd95 is the mean over the
    images where hd95 is defined (None if none). ``pooled``: scores of the summed confusion
    counts (every pixel of the folder weighs the same; hd95 None). ``n``: number of images.
    ``hd95_n``: images that contributed to the mean hd95.
    """

    mean: Scores
    pooled: Scores
    n: int
    hd95_n: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "n": self.n,
            "hd95_n": self.hd95_n,
            "mean": self.mean.as_dict(),
            "pooled": self.pooled.as_dict(),
        }


def summarize(items: Sequence[tuple[Confusion, Scores]]) -> FolderSummary:
    """Mean and pooled scores of per-image results. Raises ValueError for an empty sequence."""
    if len(items) == 0:
        raise ValueError("no images with ground truth to summarize")
    names = [f.name for f in fields(Scores) if f.name != "hd95"]
    means = {name: float(np.mean([getattr(s, name) for _, s in items])) for name in names}
    hds = [s.hd95 for _, s in items if s.hd95 is not None]
    mean = Scores(**means, hd95=float(np.mean(hds)) if hds else None)
    total = Confusion(0, 0, 0, 0)
    for c, _ in items:
        total = total + c
    return FolderSummary(
        mean=mean, pooled=Scores.from_confusion(total), n=len(items), hd95_n=len(hds)
    )


def agreement(mask_a: np.ndarray, mask_b: np.ndarray) -> float:
    """Dice between two masks (1.0 when both are empty); e.g. model vs corrected mask."""
    c = confusion(mask_a, mask_b)
    return _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn)


def disagreement(mask_a: np.ndarray, mask_b: np.ndarray) -> float:
    """Share of lesion pixels where two masks differ: |A xor B| / |A or B|, in [0, 1]; 0.0 when
    both are empty (nothing to disagree on). It is 1 - JSC(A, B); e.g. two models' masks.

    Raises MaskSizeMismatch when the shapes differ."""
    c = confusion(mask_a, mask_b)
    union = c.tp + c.fp + c.fn
    return 0.0 if union == 0 else (c.fp + c.fn) / union


def threshold_u8(prob_u8: np.ndarray, threshold: float) -> np.ndarray:
    """mask = prob >= threshold on an 8-bit map (probability * 255)."""
    return np.asarray(prob_u8) >= int(np.ceil(float(threshold) * 255.0 - 1e-6))


def border_uncertainty(prob_u8: np.ndarray, threshold: float = 0.5, low: float = 0.3, high: float = 0.7,
                       work_size: int = 256, band: float = 0.06) -> float:
    """How unsure the model is about the lesion's border, in [0, 1].

    The share of pixels in a band around the predicted border whose probability lies between
    ``low`` and ``high``. The band is the predicted mask's morphological gradient with a disk
    ``band`` (6%) of the image's long side across, so a crisp border scores near 0 and a border
    blurred across the whole band near 1; with no border at all (empty or full mask) the whole
    image counts.
    Computed on a copy at most ``work_size`` pixels on its long side.
    """
    prob: np.ndarray = np.asarray(prob_u8, dtype=np.uint8)  # (cv2.resize below returns an untyped array)
    h, w = prob.shape
    scale = min(1.0, work_size / max(h, w))
    if scale < 1.0:
        prob = cv2.resize(prob, (max(1, round(w * scale)), max(1, round(h * scale))),
                          interpolation=cv2.INTER_AREA)
    mask = threshold_u8(prob, threshold).astype(np.uint8)
    k = max(3, int(round(band * max(prob.shape))) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    ring = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, kernel).astype(bool)
    unsure = (prob > low * 255) & (prob < high * 255)
    if not ring.any():
        return float(unsure.mean())
    return float(unsure[ring].mean())

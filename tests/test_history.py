"""Undo/redo (issue 5): core/history.py."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from dermaseg_app.core.editing import BBox, EditOp, fill_polygon
from dermaseg_app.core.history import History, decode_patch, encode_patch, replay_entry

GT = Path(__file__).resolve().parents[1] / "resources" / "samples" / "ISIC-2017_Training_Part1_GroundTruth"


def load(stem: str = "ISIC_0000009", scale: float = 0.5) -> np.ndarray:
    m = cv2.imread(str(GT / f"{stem}_segmentation.png"), cv2.IMREAD_GRAYSCALE)
    if scale != 1:
        m = cv2.resize(m, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    return m > 127


def stroke(history: History, pts, radius=5.0, erase=False):
    s = history.begin_stroke(radius, erase)
    boxes = [s.add_point(x, y) for x, y in pts]
    return boxes, history.end_stroke()


def test_stroke_is_one_step_and_undo_redo() -> None:
    m0 = load()
    h = History(m0)
    assert not h.can_undo() and not h.can_redo()
    boxes, res = stroke(h, [(50, 50), (60, 55), (80, 70), (120, 90)], 6)
    assert res.changed and len(h) == 1 and h.can_undo()
    assert any(b is not None for b in boxes)
    m1 = h.mask.copy()
    assert not np.array_equal(m1, m0)
    bb = h.undo()
    assert bb is not None and np.array_equal(h.mask, m0)
    assert h.can_redo() and not h.can_undo()
    h.redo()
    assert np.array_equal(h.mask, m1)
    assert h.undo_label() == "brush stroke"


def test_sequence_and_redo_cleared_by_new_edit() -> None:
    m0 = load()
    h = History(m0)
    states = [m0.copy()]
    stroke(h, [(30, 30), (90, 40)], 5)
    states.append(h.mask.copy())
    h.apply(EditOp.grow(3))
    states.append(h.mask.copy())
    stroke(h, [(200, 150), (220, 180)], 8, erase=True)
    states.append(h.mask.copy())
    h.apply(EditOp.smooth(2.0))
    states.append(h.mask.copy())
    for expected in reversed(states[:-1]):
        h.undo()
        assert np.array_equal(h.mask, expected)
    assert h.undo() is None  # nothing left
    for expected in states[1:3]:
        h.redo()
        assert np.array_equal(h.mask, expected)
    assert h.can_redo()
    h.apply(EditOp.polygon([(10, 10), (40, 10), (25, 40)], "add"))  # new edit
    assert not h.can_redo() and h.redo() is None
    after_new = h.mask.copy()
    h.undo()
    assert np.array_equal(h.mask, states[2])
    h.redo()
    assert np.array_equal(h.mask, after_new)


def test_reset_to_prediction_is_undoable() -> None:
    pred = load()
    h = History(pred)
    stroke(h, [(10, 10), (200, 200)], 10)
    h.apply(EditOp.fill_holes())
    edited = h.mask.copy()
    h.reset_to(pred)
    assert np.array_equal(h.mask, pred)
    assert h.undo_label() == "reset to prediction"
    h.undo()
    assert np.array_equal(h.mask, edited)
    h.redo()
    assert np.array_equal(h.mask, pred)


def test_noop_edits_add_no_step() -> None:
    m = np.zeros((50, 50), bool)
    h = History(m)
    stroke(h, [(10, 10), (20, 20)], 3, erase=True)  # erasing nothing
    h.apply(EditOp.fill_holes())
    assert len(h) == 0 and not h.can_undo()


def test_old_masks_never_mutated() -> None:
    m0 = load()
    keep = m0.copy()
    h = History(m0)
    stroke(h, [(10, 10), (100, 100)], 6)
    first = h.mask
    first_copy = first.copy()
    h.apply(EditOp.grow(2))
    h.undo()
    h.undo()
    assert np.array_equal(m0, keep) and np.array_equal(first, first_copy)


def test_memory_is_patches_not_full_masks() -> None:
    m0 = load("ISIC_0000377", 1.0)  # 3072 x 2304 = 7 MB as bool
    h = History(m0)
    for i in range(20):
        stroke(h, [(500 + 30 * i, 500), (520 + 30 * i, 540)], 10)
    # 20 strokes of ~40x60 px: a few hundred bytes each, packed (1 bit/px), before+after
    assert h.nbytes < 20 * 2 * (62 * 82 // 8 + 8)
    assert h.nbytes < m0.size // 100


def test_memory_bound_drops_oldest() -> None:
    h = History(np.zeros((64, 64), bool), max_steps=3)
    for i in range(6):
        h.apply(EditOp.polygon([(i * 10, 0), (i * 10 + 5, 0), (i * 10 + 5, 5)], "add"))
    assert len(h) == 3
    for _ in range(3):
        assert h.undo() is not None
    assert h.undo() is None
    assert h.mask.sum() > 0  # the three oldest cannot be undone any more


def test_stroke_guards() -> None:
    h = History(np.zeros((20, 20), bool))
    with pytest.raises(RuntimeError):
        h.end_stroke()
    s = h.begin_stroke(2)
    s.add_point(5, 5)
    assert h.mask[4, 4] and not h.can_undo()
    with pytest.raises(RuntimeError):
        h.apply(EditOp.grow(1))
    with pytest.raises(RuntimeError):
        h.undo()
    assert h.cancel_stroke() is not None
    assert not h.mask.any() and len(h) == 0


def test_commit_external_result() -> None:
    m = load()
    h = History(m)
    res = fill_polygon(m, [(5, 5), (80, 5), (40, 60)], "replace")
    h.commit(res)
    assert np.array_equal(h.mask, res.mask)
    h.undo()
    assert np.array_equal(h.mask, m)
    with pytest.raises(ValueError):
        h.commit(fill_polygon(np.zeros((5, 5), bool), [(0, 0), (3, 0), (0, 3)], "add"))


def test_journal_entries_replay_to_the_same_mask() -> None:
    m0 = load()
    entries: list[dict] = []
    h = History(m0, journal=entries.append)
    stroke(h, [(30, 30), (90, 40), (100, 80)], 5)
    h.apply(EditOp.grow(2))
    h.undo()
    stroke(h, [(200, 150), (220, 180)], 8, erase=True)
    h.undo()
    h.redo()
    h.reset_to(np.zeros_like(m0))
    h.undo()
    h.apply(EditOp.remove_islands(10**9))  # removes everything
    assert [e["op"] for e in entries] == ["brush", "grow", "undo", "erase", "undo", "redo", "reset",
                                          "undo", "remove_islands"]
    replayed = m0.copy()
    for e in entries:
        replayed = replay_entry(replayed, json.loads(json.dumps(e)))
    assert np.array_equal(replayed, h.mask)


def test_patch_codec() -> None:
    rng = np.random.default_rng(0)
    p = rng.random((13, 29)) > 0.5
    assert np.array_equal(decode_patch(encode_patch(p), p.shape), p)
    with pytest.raises(ValueError, match="outside"):
        replay_entry(np.zeros((5, 5), bool), {"op": "undo", "bbox": [0, 0, 9, 9], "bits": encode_patch(p)})
    assert BBox(0, 0, 2, 2).shape == (2, 2)

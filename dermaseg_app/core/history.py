"""Undo/redo of mask edits for one image (issue 5). No Qt.

Each step stores only the changed region: its box and the before/after pixels of that box, bit-
packed with ``np.packbits`` (1 bit per pixel), never a copy of the whole mask. A brush stroke is
one step however many mouse moves it had; "reset to the model's prediction" is a step too, so it
can be undone. A new edit clears the redo stack.

Typical use by a canvas::

    history = History(prediction_mask, journal=lambda entry: store.append_journal(stem, entry))
    stroke = history.begin_stroke(radius=12, erase=False)
    for x, y in mouse_moves:
        box = stroke.add_point(x, y)        # repaint box; history.mask is the live mask
    result = history.end_stroke()           # one undo step, journalled
    history.apply(EditOp.smooth(2.0))       # any other operation
    box = history.undo()                    # repaint box (None: nothing to undo)

``journal`` (optional) receives one JSON-safe dict per change, at once: ``{"op": ..., "params":
...}`` for edits, and for undo/redo the resulting pixels of the box (``{"op": "undo", "bbox": ...,
"bits": <base64>}``), so the journal can be replayed without the history (core.store.replay).
"""

from __future__ import annotations

import base64
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dermaseg_app.core.edit import BBox, BrushStroke, EditOp, EditResult, diff_bbox

JournalSink = Callable[[dict], None]


def pack_bits(patch: np.ndarray) -> bytes:
    """A bool patch as bytes, 1 bit per pixel (the shape is kept by the caller)."""
    return np.packbits(patch, axis=None).tobytes()


def unpack_bits(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    n = shape[0] * shape[1]
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=n).astype(bool).reshape(shape)


def encode_patch(patch: np.ndarray) -> str:
    """Base64 of the bit-packed patch (for the journal)."""
    return base64.b64encode(pack_bits(patch)).decode("ascii")


def decode_patch(text: str, shape: tuple[int, int]) -> np.ndarray:
    return unpack_bits(base64.b64decode(text), shape)


@dataclass(frozen=True)
class Step:
    """One undoable change: the box and its packed pixels before and after."""

    bbox: BBox
    before: bytes
    after: bytes
    op: EditOp | None

    @property
    def nbytes(self) -> int:
        return len(self.before) + len(self.after)

    @property
    def label(self) -> str:
        return self.op.label if self.op is not None else "edit"


class History:
    """The current mask of one image with its undo and redo stacks.

    ``mask`` is replaced by a new array on every change (old arrays are never modified), except
    during a brush stroke, when it is the stroke's working array, updated in place per mouse move.
    Memory is bounded by ``max_steps`` and ``max_bytes`` (the oldest steps are dropped).
    """

    def __init__(self, mask: np.ndarray, *, journal: JournalSink | None = None,
                 max_steps: int = 500, max_bytes: int = 256 * 1024 * 1024) -> None:
        if not isinstance(mask, np.ndarray) or mask.ndim != 2:
            raise ValueError("History needs a 2-D mask")
        self._mask = mask.astype(bool, copy=True)
        self._undo: deque[Step] = deque()
        self._redo: list[Step] = []
        self._stroke: BrushStroke | None = None
        self.journal = journal
        self.max_steps = max_steps
        self.max_bytes = max_bytes
        self._bytes = 0
        self.revision = 0  # bumped on every change; compare with a saved value for "modified"

    # -- state ------------------------------------------------------------------------------
    @property
    def mask(self) -> np.ndarray:
        """The current mask (during a stroke: the live working mask)."""
        return self._stroke.working if self._stroke is not None else self._mask

    @property
    def shape(self) -> tuple[int, int]:
        return self._mask.shape

    def can_undo(self) -> bool:
        return bool(self._undo) and self._stroke is None

    def can_redo(self) -> bool:
        return bool(self._redo) and self._stroke is None

    def undo_label(self) -> str | None:
        return self._undo[-1].label if self._undo else None

    def redo_label(self) -> str | None:
        return self._redo[-1].label if self._redo else None

    @property
    def nbytes(self) -> int:
        """Memory held by the undo and redo stacks (packed patches)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._undo)

    # -- changes ----------------------------------------------------------------------------
    def apply(self, op: EditOp, reset_mask: np.ndarray | None = None) -> EditResult:
        """Apply an operation as one undoable step; returns the result (``bbox`` to repaint)."""
        self._no_stroke()
        result = op.apply(self._mask, reset_mask=reset_mask)
        self.commit(result)
        return result

    def commit(self, result: EditResult) -> None:
        """Record an EditResult computed elsewhere (e.g. ``editing.apply_geometry``) as one step."""
        self._no_stroke()
        if result.mask.shape != self._mask.shape:
            raise ValueError(f"the edit's mask is {result.mask.shape}, the image's is {self._mask.shape}")
        self._record(self._mask, result.mask.astype(bool, copy=False), result.bbox, result.op)

    def reset_to(self, mask: np.ndarray, op: EditOp | None = None) -> EditResult:
        """Replace the whole mask (e.g. with the model's prediction) as one undoable step."""
        return self.apply(op or EditOp.reset(), reset_mask=mask)

    def begin_stroke(self, radius: float, erase: bool = False) -> BrushStroke:
        """Start a brush (or eraser) stroke; feed it with ``add_point``; end with ``end_stroke``."""
        self._no_stroke()
        self._stroke = BrushStroke(self._mask, radius, erase)
        return self._stroke

    def end_stroke(self) -> EditResult:
        """Finish the stroke: one undo step (none when it changed nothing)."""
        if self._stroke is None:
            raise RuntimeError("no stroke in progress")
        stroke, self._stroke = self._stroke, None
        result = stroke.finish()
        self._record(stroke.base, result.mask, result.bbox, result.op)
        return result

    def cancel_stroke(self) -> BBox | None:
        """Abandon the stroke in progress; returns the box to repaint."""
        if self._stroke is None:
            return None
        stroke, self._stroke = self._stroke, None
        return stroke.region

    @property
    def stroke_in_progress(self) -> bool:
        return self._stroke is not None

    def _no_stroke(self) -> None:
        if self._stroke is not None:
            raise RuntimeError("a brush stroke is in progress; end or cancel it first")

    def _record(self, old: np.ndarray, new: np.ndarray, bbox: BBox | None, op: EditOp | None) -> None:
        if bbox is not None:
            bbox = diff_bbox(old, new, bbox)
        if bbox is None:  # nothing changed: no step, nothing to journal
            return
        sl = bbox.slices
        step = Step(bbox, pack_bits(old[sl]), pack_bits(new[sl]), op)
        self._mask = new
        self._undo.append(step)
        self._bytes += step.nbytes
        for s in self._redo:
            self._bytes -= s.nbytes
        self._redo.clear()
        self._trim()
        self.revision += 1
        if self.journal is not None:
            entry = op.to_json() if op is not None else {
                "op": "patch", "params": {}, "bbox": bbox.to_list(), "bits": encode_patch(new[sl])}
            if op is not None and op.name == "reset":
                # the reset target might not be the stored prediction: record the pixels too
                entry = dict(entry, bbox=bbox.to_list(), bits=encode_patch(new[sl]))
            self.journal(entry)

    def _trim(self) -> None:
        while self._undo and (len(self._undo) > self.max_steps or self._bytes > self.max_bytes):
            self._bytes -= self._undo.popleft().nbytes

    def _swap(self, step: Step, data: bytes, name: str) -> BBox:
        sl = step.bbox.slices
        new = self._mask.copy()
        new[sl] = unpack_bits(data, step.bbox.shape)
        self._mask = new
        self.revision += 1
        if self.journal is not None:
            self.journal({"op": name, "params": {}, "bbox": step.bbox.to_list(),
                          "bits": encode_patch(new[sl])})
        return step.bbox

    def undo(self) -> BBox | None:
        """Undo the last step; returns the box to repaint (None when there is nothing to undo)."""
        self._no_stroke()
        if not self._undo:
            return None
        step = self._undo.pop()
        self._redo.append(step)
        return self._swap(step, step.before, "undo")

    def redo(self) -> BBox | None:
        """Redo the last undone step; returns the box to repaint (None when nothing to redo)."""
        self._no_stroke()
        if not self._redo:
            return None
        step = self._redo.pop()
        self._undo.append(step)
        return self._swap(step, step.after, "redo")

    def clear(self, mask: np.ndarray | None = None) -> None:
        """Forget all steps (e.g. when another image is shown); optionally set a new mask."""
        self._no_stroke()
        if mask is not None:
            self._mask = mask.astype(bool, copy=True)
        self._undo.clear()
        self._redo.clear()
        self._bytes = 0
        self.revision += 1


def replay_entry(mask: np.ndarray, entry: dict, reset_mask: np.ndarray | None = None) -> np.ndarray:
    """Apply one journal entry (an EditOp dict, or an undo/redo/patch/reset with pixels) to ``mask``.

    Entries that carry ``bbox`` + ``bits`` are written as they are (exact, independent of any
    history); other entries are operations replayed with EditOp.apply.
    """
    if "bits" in entry and "bbox" in entry:
        bbox = BBox.from_list(entry["bbox"])
        if bbox.x1 > mask.shape[1] or bbox.y1 > mask.shape[0] or bbox.x0 < 0 or bbox.y0 < 0:
            raise ValueError(f"journal entry box {bbox.to_list()} is outside the {mask.shape} mask")
        out = mask.copy()
        out[bbox.slices] = decode_patch(entry["bits"], bbox.shape)
        return out
    return EditOp.from_json(entry).apply(mask, reset_mask=reset_mask).mask

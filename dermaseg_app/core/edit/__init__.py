"""Contour correction operations on masks and polygons (issue 5). No Qt, no torch.

Conventions
-----------
* A mask is a bool ``np.ndarray`` HxW at the image's full resolution.
* Points are ``(x, y)`` in *pixel-edge* image coordinates, the convention of
  ``core.geometry``: pixel ``(row r, col c)`` covers the square ``[c, c+1] x [r, r+1]``, its
  centre is ``(c + 0.5, r + 0.5)``. A pixel belongs to a shape when its centre does (brush:
  centre within ``radius`` of the stroke; polygon: centre inside, by the one rasteriser
  ``core.geometry.rasterize_rings``).
* Operations never mutate their inputs: they return an :class:`EditResult` with a new mask and the
  :class:`BBox` of the pixels that may have changed (``None`` when nothing changed), so a view
  repaints only that region and the undo history stores only that patch.
* Several components and holes are handled everywhere.

Every operation also has a serialisable description, :class:`EditOp` (``name`` + JSON ``params``),
replayed through the registry ``OPS`` (name -> :class:`Operation`) of ``core.edit.ops``.

Modules: ``base`` (BBox, the mask checks), ``brush`` (brush, eraser, interactive strokes), ``polygon``
(lasso, committing an edited outline), ``outline`` (simplify/buffer/smooth a geometry),
``morphology`` (whole-mask clean-up), ``vertices`` (vertex editing), ``ops`` (EditOp, EditResult, registry).
Import from this package; ``dermaseg_app.core.editing`` is the same API under its old name.
"""

from dermaseg_app.core.edit.base import BBox, Point, check_mask, diff_bbox
from dermaseg_app.core.edit.brush import BrushStroke, paint_segment_inplace, paint_stroke
from dermaseg_app.core.edit.morphology import fill_holes, grow, keep_largest, remove_islands, simplify, smooth
from dermaseg_app.core.edit.ops import OPS, EditOp, EditResult, Operation, register
from dermaseg_app.core.edit.outline import buffer_geometry, simplify_geometry, smooth_geometry
from dermaseg_app.core.edit.polygon import apply_geometry, fill_polygon, rasterize_geometry
from dermaseg_app.core.edit.vertices import (
    GeometryEdit,
    VertexRef,
    delete_vertex,
    insert_vertex,
    move_vertex,
    nearest_edge,
    nearest_vertex,
    vertices,
)
from dermaseg_app.core.geometry import as_multipolygon, polygons_of, rasterize_rings

__all__ = [
    "OPS",
    "BBox",
    "BrushStroke",
    "EditOp",
    "EditResult",
    "GeometryEdit",
    "Operation",
    "Point",
    "VertexRef",
    "apply_geometry",
    "as_multipolygon",
    "buffer_geometry",
    "check_mask",
    "delete_vertex",
    "diff_bbox",
    "fill_holes",
    "fill_polygon",
    "grow",
    "insert_vertex",
    "keep_largest",
    "move_vertex",
    "nearest_edge",
    "nearest_vertex",
    "paint_segment_inplace",
    "paint_stroke",
    "polygons_of",
    "rasterize_geometry",
    "rasterize_rings",
    "register",
    "remove_islands",
    "simplify",
    "simplify_geometry",
    "smooth",
    "smooth_geometry",
    "vertices",
]

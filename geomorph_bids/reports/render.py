"""A small orthographic mesh renderer for the reports (numpy only, no OpenGL, no display).

:class:`MeshCamera` rasterises a triangle mesh once per view with a per-pixel z-buffer:
every triangle is expanded into the pixel centres of its bounding box (a ragged expansion
done with ``np.repeat``, no Python loop over faces or pixels), the centres inside the
triangle keep their barycentric coordinates and depth, and for each pixel the nearest
candidate wins (one ``np.lexsort``). The result -- per pixel: the face and its barycentric
weights -- is reused to draw any number of per-vertex maps (values interpolated linearly
inside the face, Gouraud shading from interpolated vertex normals, light from the viewer).
Hidden surfaces are handled exactly at pixel-centre resolution; back faces need no culling
(they lose the depth test), so the face winding does not matter.

It has the attributes :mod:`geomorph_bids.reports.figures` expects of a camera (``view``,
``inside``, ``shade``, ``sample``), so the figure layouts are shared with the sphere views.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .views import View

__all__ = ["MeshCamera", "cameras_for_mesh", "rasterise"]


def rasterise(xy: np.ndarray, depth: np.ndarray, faces: np.ndarray, shape: tuple[int, int]
              ) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffer rasterisation of projected triangles.

    Parameters
    ----------
    xy : (V, 2) float, vertex positions in pixel units (x: column, y: row; pixel ``(r, c)``
        has its centre at ``(c + 0.5, r + 0.5)``).
    depth : (V,) float, distance towards the viewer (larger = nearer).
    faces : (F, 3) int.
    shape : (rows, cols) of the image.

    Returns
    -------
    face : (rows, cols) int64, the visible face of each pixel, -1 for background.
    bary : (rows, cols, 3) float64, barycentric weights of the pixel centre in that face
        (0 for background).
    """
    rows, cols = shape
    faces = np.asarray(faces, dtype=np.int64)
    p = np.asarray(xy, dtype=np.float64)
    # one contiguous (F,) array per corner and coordinate: the per-face arithmetic below runs on
    # contiguous arrays (strided (F, 3, 2) slices took twice as long at 164k vertices)
    i0, i1, i2 = (np.ascontiguousarray(faces[:, k]) for k in range(3))
    ax, bx, cx = (p[i, 0] for i in (i0, i1, i2))
    ay, by, cy = (p[i, 1] for i in (i0, i1, i2))
    # bounding boxes from the 3 corners pairwise (the same numbers as min/max over the corners)
    x0 = np.clip(np.ceil(np.minimum(np.minimum(ax, bx), cx) - 0.5), 0, cols).astype(np.int64)
    x1 = np.clip(np.floor(np.maximum(np.maximum(ax, bx), cx) - 0.5), -1, cols - 1).astype(np.int64)
    y0 = np.clip(np.ceil(np.minimum(np.minimum(ay, by), cy) - 0.5), 0, rows).astype(np.int64)
    y1 = np.clip(np.floor(np.maximum(np.maximum(ay, by), cy) - 0.5), -1, rows - 1).astype(np.int64)
    w = np.maximum(x1 - x0 + 1, 0)
    h = np.maximum(y1 - y0 + 1, 0)
    # signed doubled area; degenerate (edge-on) faces cover no pixel centre
    e1x, e1y, e2x, e2y = bx - ax, by - ay, cx - ax, cy - ay
    area = e1x * e2y - e1y * e2x
    count = np.where(np.abs(area) > 1e-12, w * h, 0)
    face_img = np.full(shape, -1, dtype=np.int64)
    bary_img = np.zeros((*shape, 3), dtype=np.float64)
    # only the faces whose box holds a pixel centre (at 164k vertices a third hold none); each
    # face's numbers are repeated once per candidate pixel (np.repeat of the kept faces' arrays,
    # the same values as gathering them by face index)
    kept = np.flatnonzero(count)
    n = count[kept]
    total = int(n.sum())
    if total == 0:
        return face_img, bary_img

    def each(a: np.ndarray) -> np.ndarray:
        return np.repeat(a[kept], n)

    fid = each(np.arange(len(faces)))
    wc = each(w)
    local = np.arange(total) - np.repeat(np.cumsum(n) - n, n)
    px = each(x0) + local % wc
    py = each(y0) + local // wc
    qx = px + 0.5 - each(ax)
    qy = py + 0.5 - each(ay)
    inv = 1.0 / each(area)
    b1 = (qx * each(e2y) - qy * each(e2x)) * inv
    b2 = (each(e1x) * qy - each(e1y) * qx) * inv
    b0 = 1.0 - b1 - b2
    eps = -1e-9
    ok = (b0 >= eps) & (b1 >= eps) & (b2 >= eps)
    fid, px, py, b0, b1, b2 = fid[ok], px[ok], py[ok], b0[ok], b1[ok], b2[ok]
    d = depth[i0[fid]] * b0 + depth[i1[fid]] * b1 + depth[i2[fid]] * b2
    pix = py * cols + px
    order = np.lexsort((-d, pix))                                     # nearest first per pixel
    pix_sorted = pix[order]
    first = order[np.r_[True, pix_sorted[1:] != pix_sorted[:-1]]]
    flat_face = face_img.reshape(-1)
    flat_bary = bary_img.reshape(-1, 3)
    flat_face[pix[first]] = fid[first]
    flat_bary[pix[first]] = np.stack([b0[first], b1[first], b2[first]], axis=1)
    return face_img, bary_img


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) unit area-weighted vertex normals."""
    v = vertices[faces]
    fn = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])              # length = 2 x area
    # the face normals summed at their corners: one weighted bincount per coordinate over the
    # corners listed corner by corner (the order np.add.at would add them in: the same sums)
    corners = np.asarray(faces, dtype=np.intp).T.reshape(-1)         # (3F,): all first corners, ...
    n = np.stack([np.bincount(corners, weights=np.tile(fn[:, k], 3), minlength=len(vertices)) for k in range(3)],
                 axis=1)
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    return n / np.where(norm > 0, norm, 1.0)


class MeshCamera:
    """One orthographic view of a triangle mesh, rasterised once; maps are then sampled.

    Parameters
    ----------
    vertices : (V, 3) float, any units (mm).
    faces : (F, 3) int.
    view : camera direction (from the mesh towards the viewer) and image up.
    scale : pixels per mesh unit.
    centre : (3,) point drawn at the image centre (default: the bounding-box centre).
    shape : (rows, cols) of the image (default: the projected bounding box plus a margin).
    normals : (V, 3) vertex normals to reuse between views (default: computed).
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, view: View, scale: float,
                 centre: np.ndarray | None = None, shape: tuple[int, int] | None = None,
                 normals: np.ndarray | None = None) -> None:
        v = np.asarray(vertices, dtype=np.float64)
        f = np.asarray(faces, dtype=np.int64)
        right, up, toward = view.frame()
        c = (v.min(axis=0) + v.max(axis=0)) / 2.0 if centre is None else np.asarray(centre, dtype=np.float64)
        rel = v - c
        u, w, d = rel @ right, rel @ up, rel @ toward
        if shape is None:
            shape = (int(np.ceil(2 * np.abs(w).max() * scale)) + 4, int(np.ceil(2 * np.abs(u).max() * scale)) + 4)
        rows, cols = shape
        xy = np.stack([cols / 2.0 + u * scale, rows / 2.0 - w * scale], axis=1)
        self.view = view
        self.faces = f
        self.n_vertices = len(v)
        self.face, self.bary = rasterise(xy, d, f, shape)
        self.inside = self.face >= 0
        # the corners and weights of the covered pixels only, in row-major order: every map is
        # sampled from them (the background's value is NaN whatever its face)
        self._corners = f[self.face[self.inside]]                      # (P, 3)
        self._weights = self.bary[self.inside]                         # (P, 3)
        nrm = _vertex_normals(v, f) if normals is None else np.asarray(normals, dtype=np.float64)
        n_pix = self._interp(nrm)
        lam = np.abs(n_pix @ toward) / np.maximum(np.linalg.norm(n_pix, axis=-1), 1e-12)
        self.shade = np.where(self.inside, 0.35 + 0.65 * lam, 1.0)

    def _interp(self, values: np.ndarray) -> np.ndarray:
        """Per-pixel barycentric interpolation of per-vertex ``values`` (V,) or (V, k)."""
        corners = self.faces[np.where(self.inside, self.face, 0)]      # (rows, cols, 3)
        vals = values[corners]                                         # (rows, cols, 3[, k])
        b = self.bary if vals.ndim == 3 else self.bary[..., None]
        return (vals * b).sum(axis=2)

    def sample(self, values: np.ndarray) -> np.ndarray:
        """(rows, cols) image of per-vertex ``values`` (V,): linear inside each face; NaN
        outside the mesh and where the face has a NaN corner with non-zero weight."""
        vals = np.asarray(values, dtype=np.float64).reshape(-1)
        if len(vals) != self.n_vertices:
            raise ValueError(f"{len(vals)} values for a mesh of {self.n_vertices} vertices")
        cv = vals[self._corners]                                       # (P, 3)
        finite = np.isfinite(cv)
        bad = (~finite & (self._weights > 1e-9)).any(axis=1)
        img = np.full(self.inside.shape, np.nan)
        img[self.inside] = np.where(bad, np.nan, (np.where(finite, cv, 0.0) * self._weights).sum(axis=1))
        return img


def cameras_for_mesh(vertices: np.ndarray, faces: np.ndarray, views: Sequence[View], width: int = 320
                     ) -> list[MeshCamera]:
    """One :class:`MeshCamera` per view, all with the same scale and image size (so panels
    line up): the largest projected extent over the views spans ``width`` pixels."""
    v = np.asarray(vertices, dtype=np.float64)
    centre = (v.min(axis=0) + v.max(axis=0)) / 2.0
    rel = v - centre
    extents = []
    for view in views:
        right, up, _ = view.frame()
        extents.append((2 * np.abs(rel @ up).max(), 2 * np.abs(rel @ right).max()))
    ext = np.asarray(extents)
    scale = (width - 4) / max(float(ext[:, 1].max()), 1e-12)
    shape = (int(np.ceil(ext[:, 0].max() * scale)) + 4, width)
    normals = _vertex_normals(v, np.asarray(faces, dtype=np.int64))
    return [MeshCamera(v, faces, view, scale, centre, shape, normals) for view in views]

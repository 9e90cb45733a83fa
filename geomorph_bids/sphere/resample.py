"""Metric and label resampling between registered spheres (Connectome Workbench's methods).

Resampling is a sparse matrix ``W`` of shape (V_new, V_current) whose rows sum to 1:
``new_values = W @ current_values``. Build it once with :func:`resample_weights` and
apply it with :func:`apply_weights` to resample many maps between the same meshes.

Methods (the same names and results as ``wb_command -metric-resample``):

``barycentric``
    Each new vertex takes the barycentric interpolation of the current triangle
    that contains its direction. Exact at shared vertices, reproduces linear
    functions, but ignores most data when downsampling.
``adap_bary_area``
    Adaptive barycentric with vertex-area correction, for downsampling without
    aliasing. Forward weights ``F`` (new vertices located in the current mesh) and
    reverse weights ``R`` (current vertices located in the new mesh, transposed to
    gather into new vertices) are both computed. A new vertex keeps its forward row
    when every current vertex that the reverse weights send to it is already one of
    its forward corners; otherwise it takes its reverse row (it is the nearest new
    vertex of current vertices that the forward weights would skip). (``F`` is computed
    only for the new vertices that can keep their row: those that the reverse weights
    send at most 3 distinct current vertices; when downsampling, as a rule, none.) The chosen rows
    are scaled by the new vertex areas, each column is divided by its sum and
    multiplied by the current vertex area (so every current vertex hands out exactly
    its own area), and rows are normalised to sum to 1. Constants are preserved and
    the area-weighted mean is kept.

Both spheres are projected onto the unit sphere first, so any radius works and the
two radii may differ. The point location uses central (gnomonic) projection onto the
triangles; Workbench uses the closest point on the triangle at radius 100 (float32),
which differs by well under 1e-3 of a weight on real meshes.

Missing data: NaN inputs are left out and the remaining weights of each output row
renormalised; an output is NaN only when every input it draws on is NaN (the
behaviour of ``-current-roi`` with the NaNs as the excluded vertices).
"""

from __future__ import annotations

import os
from typing import Literal, Union

import numpy as np
from scipy import sparse

from ..errors import InputError
from .locate import SphereLocator
from .mesh import host_array, is_mesh_pair, masked_as_nan, row_norms, vertex_areas

__all__ = ["resample", "resample_weights", "apply_weights", "resample_labels", "barycentric_weights",
           "area_surfaces", "corner_weights", "corner_matrix", "forward_needed"]

Mesh = tuple[np.ndarray, np.ndarray]
AreaSpec = Union[Mesh, np.ndarray, None]
Method = Literal["barycentric", "adap_bary_area"]

_METHODS = ("barycentric", "adap_bary_area")
_LABEL_METHODS = ("majority", "nearest")
_ZERO_WEIGHT = 1e-9  # barycentric weights below this count as exact zeros (point on an edge or vertex)
_MAX_RADIUS_RATIO = 1.1  # a "sphere" whose vertex radii vary more than this is rejected


def _check_mesh(mesh: Mesh, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(vertices float64 (V, 3), faces int64 (F, 3)) after shape and sphericity checks."""
    try:
        vertices, faces = mesh
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a (vertices, faces) pair") from None
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) < 4:
        raise InputError(f"{name} vertices must have shape (V, 3), got {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise InputError(f"{name} faces must be integers of shape (F, 3), got {faces.shape} {faces.dtype}")
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise InputError(f"{name} faces index vertices outside 0..{len(vertices) - 1}")
    radius = row_norms(vertices)
    if not np.all(np.isfinite(radius)) or radius.min() <= 0:
        raise InputError(f"{name} has non-finite vertices or a vertex at the centre")
    if radius.max() > _MAX_RADIUS_RATIO * radius.min():
        raise InputError(f"{name} is not a sphere centred on the origin "
                         f"(vertex radii {radius.min():.3g} to {radius.max():.3g})")
    return vertices, faces.astype(np.int64, copy=False)


def _areas(spec: AreaSpec, sphere: tuple[np.ndarray, np.ndarray], name: str) -> np.ndarray:
    """(V,) float64 vertex areas from a surface, an area array, or (None) the sphere itself."""
    n = len(sphere[0])
    if spec is None:
        return vertex_areas(*sphere)
    if isinstance(spec, (tuple, list)) and len(spec) == 2 and np.ndim(spec[0]) == 2:
        vertices, faces = spec
        vertices = np.asarray(vertices, dtype=np.float64)
        if vertices.ndim != 2 or len(vertices) != n:
            raise InputError(f"{name} surface has {len(vertices)} vertices, its sphere has {n}")
        areas = vertex_areas(vertices, np.asarray(faces, dtype=np.int64))
    else:
        areas = np.asarray(spec, dtype=np.float64)
        if areas.shape != (n,):
            raise InputError(f"{name} vertex areas have shape {areas.shape}, expected ({n},)")
    if not np.all(np.isfinite(areas)) or areas.min() < 0:
        raise InputError(f"{name} vertex areas must be finite and non-negative")
    return areas


def corner_weights(mesh: tuple[np.ndarray, np.ndarray], points: np.ndarray,
                   locator: SphereLocator | None = None, hint: np.ndarray | None = None,
                   far: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Corners (N, 3) int64 and weights (N, 3) float64 of points in a mesh.

    Weights below ``_ZERO_WEIGHT`` are set to exactly 0 and the rest renormalised.
    ``locator``: a :class:`SphereLocator` already built for ``mesh`` (reused, not rebuilt);
    ``hint``, ``far``: (N,) faces to try first, and whether most points are expected to have
    left them (:meth:`SphereLocator.locate`; the same result either way). The result can be handed
    to :func:`resample_weights` and :func:`area_surfaces` as ``forward`` (the new sphere's
    vertices in the current one), so that one location serves both.
    """
    locator = locator if locator is not None else SphereLocator(*mesh)
    face, w = locator.locate(points, hint=hint, far=far)
    w[w < _ZERO_WEIGHT] = 0.0
    w /= w.sum(axis=1, keepdims=True)
    return locator.faces.take(face, axis=0), w  # take: rows[face], 2-3x faster


def _csr(rows: np.ndarray, cols: np.ndarray, data: np.ndarray, shape: tuple[int, int]) -> sparse.csr_matrix:
    """CSR matrix from entries (duplicates, e.g. a degenerate face's repeated corner, are summed)."""
    matrix = sparse.csr_matrix((data, (rows, cols)), shape=shape)
    matrix.sum_duplicates()
    return matrix


def barycentric_weights(mesh: Mesh, points: np.ndarray, locator: SphereLocator | None = None,
                        hint: np.ndarray | None = None) -> sparse.csr_matrix:
    """(N, V) sparse barycentric weights of points in a spherical mesh.

    Parameters
    ----------
    mesh : (vertices (V, 3), faces (F, 3)) of a sphere of any radius.
    points : (N, 3) float, directions (any radius).
    locator : optional :class:`SphereLocator` already built for ``mesh``, to locate several
        point sets without rebuilding it.
    hint : optional (N,) face indices to try first (e.g. where nearby points were found).

    Returns
    -------
    (N, V) float64 CSR matrix, at most 3 entries per row, rows summing to 1; weights
    below 1e-9 are dropped (points on an edge or at a vertex use 2 or 1 corners).
    """
    mesh = _check_mesh(mesh, "mesh")
    return corner_matrix(*corner_weights(mesh, np.asarray(points, dtype=np.float64), locator, hint), len(mesh[0]))


def corner_matrix(corners: np.ndarray, weights: np.ndarray, n_vertices: int) -> sparse.csr_matrix:
    """(N, n_vertices) CSR matrix of :func:`corner_weights`' (N, 3) corners and weights (zero
    weights left out): :func:`barycentric_weights` of points already located."""
    keep = weights > 0
    rows = np.broadcast_to(np.arange(len(weights))[:, None], weights.shape)[keep]
    return _csr(rows, corners[keep], weights[keep], (len(weights), n_vertices))


def resample_weights(current: Mesh, new: Mesh, method: Method = "barycentric",
                     current_area: AreaSpec = None, new_area: AreaSpec = None,
                     current_locator: SphereLocator | None = None,
                     new_locator: SphereLocator | None = None,
                     forward: tuple[np.ndarray, np.ndarray] | None = None,
                     current_fans: np.ndarray | None = None) -> sparse.csr_matrix:
    """Sparse resampling matrix from the current sphere's vertices to the new sphere's.

    Parameters
    ----------
    current, new : (vertices (V, 3), faces (F, 3)) of two spheres in register (any radii).
    method : ``"barycentric"`` or ``"adap_bary_area"`` (see the module docstring).
    current_area, new_area : for ``adap_bary_area`` only: the anatomical surface
        (vertices, faces) with the sphere's topology (e.g. the midthickness), or
        per-vertex areas (V,) in any consistent unit; default: the sphere's own vertex areas.
    current_locator, new_locator : :class:`SphereLocator` objects already built for ``current``
        and ``new`` (reused, e.g. one template sphere for many subjects), or None.
    forward : :func:`corner_weights` of the new vertices in the current sphere, already
        computed (e.g. by :func:`area_surfaces`), or None: located here; for ``adap_bary_area``
        only the new vertices that can keep their forward row (:func:`forward_needed`; none, as a
        rule, when downsampling), and the current sphere's locator is built only if there is one.
    current_fans : (V_current, D) int32 faces around each current vertex (:func:`~geomorph_bids.sphere.locate.vertex_fans`
        of ``current``'s faces), for the current sphere's locator when it is built here, or None.

    Returns
    -------
    (V_new, V_current) float64 CSR matrix with rows summing to 1.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    current = _check_mesh(current, "current sphere")
    new = _check_mesh(new, "new sphere")
    n_new, n_cur = len(new[0]), len(current[0])
    if method == "barycentric":
        # Forward: each new vertex gathers from the corners of its current triangle.
        f_corner, f_w = (corner_weights(current, new[0], _locator(current, current_locator, current_fans))
                         if forward is None else _forward(forward, n_new))
        f_keep = f_w > 0
        f_rows = np.broadcast_to(np.arange(n_new)[:, None], f_w.shape)[f_keep]
        return _csr(f_rows, f_corner[f_keep], f_w[f_keep], (n_new, n_cur))
    a_cur = _areas(current_area, current, "current area")
    a_new = _areas(new_area, new, "new area")
    # Reverse: each current vertex scatters to the corners of its new triangle;
    # read as gathering, entry (new corner, current vertex).
    r_corner, r_w = corner_weights(new, current[0], new_locator)
    r_keep = r_w > 0
    g_rows = r_corner[r_keep]
    g_cols = np.broadcast_to(np.arange(n_cur)[:, None], r_w.shape)[r_keep]
    g_w = r_w[r_keep]
    given = None if forward is None else _forward(forward, n_new)
    need = np.flatnonzero(forward_needed(r_corner, r_keep, n_new))
    if not need.size:  # no new vertex can keep its forward row: every row is the reverse one (the
        # entries the choice below would make, in the same order)
        return _area_corrected(g_rows, g_cols, g_w, a_cur, a_new)
    if given is None:  # forward rows only where one can be kept (each point is located on its own:
        # the same corners and weights as locating every new vertex)
        f_corner = np.zeros((n_new, 3), dtype=np.int64)
        f_w = np.zeros((n_new, 3), dtype=np.float64)  # a row of zeros: no forward corner, never kept
        f_corner[need], f_w[need] = corner_weights(current, new[0][need],
                                                   _locator(current, current_locator, current_fans))
    else:
        f_corner, f_w = given
    f_keep = f_w > 0
    f_rows = np.broadcast_to(np.arange(n_new)[:, None], f_w.shape)[f_keep]
    # A new vertex keeps its forward row when the reverse weights bring it nothing new: every
    # current vertex sent to it is one of its forward corners with a weight (-1: none). One corner
    # at a time, gathered from contiguous rows: 3x faster than comparing gathered (n, 3) rows.
    named = np.ascontiguousarray(np.where(f_keep, f_corner, -1).T)
    known = named[0].take(g_rows) == g_cols
    for corner in named[1:]:
        known |= corner.take(g_rows) == g_cols
    use_forward = np.bincount(g_rows[known], minlength=n_new) == np.bincount(g_rows, minlength=n_new)
    pick_f = use_forward[f_rows]
    pick_g = ~use_forward[g_rows]
    rows = np.concatenate([f_rows[pick_f], g_rows[pick_g]])
    cols = np.concatenate([f_corner[f_keep][pick_f], g_cols[pick_g]])
    data = np.concatenate([f_w[f_keep][pick_f], g_w[pick_g]])
    return _area_corrected(rows, cols, data, a_cur, a_new)


def _area_corrected(rows: np.ndarray, cols: np.ndarray, data: np.ndarray, a_cur: np.ndarray,
                    a_new: np.ndarray) -> sparse.csr_matrix:
    """The (V_new, V_current) matrix of the chosen entries (``data`` is scaled in place)."""
    n_new, n_cur = len(a_new), len(a_cur)
    # Area correction: each current vertex hands out exactly its own area, then rows sum to 1.
    data *= a_new[rows]
    column_sum = np.bincount(cols, weights=data, minlength=n_cur)
    data *= np.divide(a_cur, column_sum, out=np.zeros(n_cur), where=column_sum > 0)[cols]
    row_sum = np.bincount(rows, weights=data, minlength=n_new)
    data *= np.divide(1.0, row_sum, out=np.zeros(n_new), where=row_sum > 0)[rows]
    keep = data > 0
    if not keep.all():  # (as a rule every entry has a weight: no copies then)
        rows, cols, data = rows[keep], cols[keep], data[keep]
    return _csr(rows, cols, data, (n_new, n_cur))


def forward_needed(r_corner: np.ndarray, r_keep: np.ndarray, n_new: int) -> np.ndarray:
    """(V_new,) bool: the new vertices that may keep their forward row in ``adap_bary_area``.

    ``r_corner`` (V_current, 3): the new corners of each current vertex's triangle (the reverse
    location), ``r_keep`` (V_current, 3): those with a weight. A new vertex keeps its forward row
    only when every current vertex the reverse weights send to it is one of its forward corners,
    of which there are at most 3: one sent 4 or more distinct current vertices never does, and
    needs no forward location (when downsampling, as a rule, none does: 164k -> 32k sends each
    about 15)."""
    keep = np.asarray(r_keep, dtype=bool)
    corner = np.asarray(r_corner)
    # a triangle naming one corner twice (no area) sends its current vertex there once, not twice
    once = keep.copy()
    once[:, 1] &= ~(keep[:, 0] & (corner[:, 1] == corner[:, 0]))
    once[:, 2] &= ~((keep[:, 0] & (corner[:, 2] == corner[:, 0])) | (keep[:, 1] & (corner[:, 2] == corner[:, 1])))
    return np.bincount(corner[once], minlength=n_new) <= 3


def _locator(mesh: tuple[np.ndarray, np.ndarray], locator: SphereLocator | None,
             fans: np.ndarray | None) -> SphereLocator:
    """``locator``, or one built for the (checked) ``mesh`` with its ``fans`` table if given."""
    if locator is not None:
        return locator
    if fans is not None and len(fans) != len(mesh[0]):
        raise ValueError(f"current_fans has {len(fans)} rows, the current sphere {len(mesh[0])} vertices")
    return SphereLocator(*mesh, fans=fans)


def _forward(forward: tuple[np.ndarray, np.ndarray], n_new: int) -> tuple[np.ndarray, np.ndarray]:
    """A ``forward`` argument checked: (corners, weights), both (V_new, 3)."""
    corners, w = (np.asarray(a) for a in forward)
    if corners.shape != (n_new, 3) or w.shape != (n_new, 3):
        raise ValueError(f"forward must be corners and weights of shape ({n_new}, 3), "
                         f"got {corners.shape} and {w.shape}")
    return corners, w


def area_surfaces(current: Mesh, anatomical: np.ndarray, new: Mesh,
                  locator: SphereLocator | None = None,
                  forward: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[Mesh, Mesh]:
    """The ``current_area`` and ``new_area`` surfaces of an area-corrected resampling.

    ``anatomical`` (V_current, 3) is a surface on the current sphere's mesh (e.g. the
    subject's midthickness, mm), or its (vertices, faces) pair as every mesh is passed here (the
    faces must be the current sphere's); it is carried onto the new sphere barycentrically
    (``wb_command -surface-resample ... BARYCENTRIC``), as sMRIPrep and the HCP pipelines do
    before ``-metric-resample ... ADAP_BARY_AREA -area-surfs``.

    ``locator``: a :class:`SphereLocator` already built for ``current`` (reused);
    ``forward``: :func:`corner_weights` of ``new``'s vertices in ``current`` (reused), or None.

    Returns ((anatomical, current faces), (resampled anatomical (V_new, 3), new faces)).
    """
    current = _check_mesh(current, "current sphere")
    new = _check_mesh(new, "new sphere")
    if is_mesh_pair(anatomical):
        # a (vertices, faces) pair, as the spheres are given (numpy raised "inhomogeneous shape")
        if not np.array_equal(np.asarray(anatomical[1]), current[1]):
            raise InputError("the anatomical surface's faces are not the current sphere's: it must be the "
                             "same mesh (e.g. lh.midthickness of the lh.sphere resampled)")
        anatomical = anatomical[0]
    anatomical = np.asarray(anatomical, dtype=np.float64)
    if anatomical.shape != current[0].shape:
        raise InputError(f"the anatomical surface has {len(anatomical)} vertices, the current sphere "
                         f"{len(current[0])}: it must be the same mesh")
    corners, w = (corner_weights(current, new[0], locator) if forward is None
                  else _forward(forward, len(new[0])))
    moved = np.einsum("nk,nkd->nd", w, anatomical.take(corners, axis=0))
    return (anatomical, current[1]), (moved, new[1])


def _check_values(values: np.ndarray, n_current: int, name: str = "values") -> np.ndarray:
    if isinstance(values, (str, bytes, os.PathLike)):
        raise InputError(f"{name} must be per-vertex numbers, got the path {str(values)!r}: read the file first "
                         "(geomorph_bids.io.read_feature)")
    # a torch tensor (numpy refuses one that requires grad); a masked array's masked values are missing
    # data, NaN (numpy's asarray would read the values under the mask)
    values = np.asarray(masked_as_nan(host_array(values, name)))
    if values.dtype.kind not in "biuf":
        raise InputError(f"{name} must be real numbers, got {values.dtype} values")
    if values.dtype.kind == "f" and values.size and not np.isfinite(values).all():
        n_inf = int(np.isinf(values).sum())
        if n_inf:  # NaN marks missing data; an infinity would spread into every value it is averaged into
            raise InputError(f"{name} hold {n_inf} infinite value(s): mark missing data with NaN instead")
    if values.ndim not in (1, 2):
        raise InputError(f"{name} must have shape (V,) or (V, K), got {values.shape}")
    if len(values) != n_current and values.ndim == 2 and values.shape[1] == n_current:
        raise InputError(f"{name} have shape {values.shape}: (K, V), one map per row; maps are columns, "
                         f"(V, K): transposed? pass {name}.T")
    if len(values) != n_current:
        raise InputError(f"{name} have {len(values)} vertices but the current sphere has {n_current}: "
                         "is this map on that mesh (and hemisphere)?")
    return values


def apply_weights(weights: sparse.spmatrix, values: np.ndarray) -> np.ndarray:
    """Resample values with a matrix from :func:`resample_weights`, skipping NaNs.

    Parameters
    ----------
    weights : (V_new, V_current) sparse, rows summing to 1.
    values : (V_current,) or (V_current, K) numbers; NaN marks missing data.

    Returns
    -------
    (V_new,) or (V_new, K): float32 for float32 input, otherwise float64. Rows whose
    inputs are all NaN (or that have no weight) are NaN.
    """
    values = _check_values(values, weights.shape[1])
    out_dtype = np.float32 if values.dtype.kind == "f" and values.dtype.itemsize == 4 else np.float64  # '>f4' too
    data = values.astype(np.float64, copy=False)
    missing = np.isnan(data)
    if missing.any():
        numerator = weights @ np.where(missing, 0.0, data)
        denominator = weights @ (~missing).astype(np.float64)
    else:
        numerator = weights @ data
        row_sum = np.asarray(weights.sum(axis=1)).ravel()
        denominator = row_sum if data.ndim == 1 else row_sum[:, None]
    ok = denominator > 0
    out = np.divide(numerator, denominator, out=np.full(numerator.shape, np.nan), where=ok)
    return out.astype(out_dtype, copy=False)


def resample(values: np.ndarray, current: Mesh, new: Mesh, method: Method = "barycentric",
             current_area: AreaSpec = None, new_area: AreaSpec = None) -> np.ndarray:
    """Resample per-vertex values from the current sphere onto the new sphere.

    Equivalent to ``wb_command -metric-resample values current new METHOD out``
    (``-area-surfs``/``-area-metrics`` given by ``current_area``/``new_area``).

    Parameters
    ----------
    values : (V_current,) or (V_current, K) numbers; NaN marks missing data.
    current, new : (vertices (V, 3), faces (F, 3)) of two spheres in register (any radii).
    method : ``"barycentric"`` or ``"adap_bary_area"``.
    current_area, new_area : see :func:`resample_weights`.

    Returns
    -------
    (V_new,) or (V_new, K): float32 for float32 input, otherwise float64.
    """
    n_current = len(_check_mesh(current, "current sphere")[0])  # the mesh first: a transposed one is named as such
    _check_values(values, n_current)
    weights = resample_weights(current, new, method, current_area, new_area)
    return apply_weights(weights, values)


def resample_labels(labels: np.ndarray, current: Mesh, new: Mesh,
                    method: Literal["majority", "nearest"] = "majority",
                    current_area: AreaSpec = None, new_area: AreaSpec = None) -> np.ndarray:
    """Resample integer labels from the current sphere onto the new sphere.

    Parameters
    ----------
    labels : (V_current,) integers (label keys).
    current, new : (vertices (V, 3), faces (F, 3)) of two spheres in register.
    method : ``"majority"``: the label with the largest summed ``adap_bary_area``
        weight (``wb_command -label-resample ... ADAP_BARY_AREA``); ``"nearest"``: the
        label of the containing triangle's corner with the largest barycentric weight
        (``wb_command -label-resample ... BARYCENTRIC -largest``).
    current_area, new_area : areas for ``"majority"``, see :func:`resample_weights`.

    Returns
    -------
    (V_new,) labels, same integer dtype as the input.
    """
    if method not in _LABEL_METHODS:
        raise ValueError(f"method must be one of {_LABEL_METHODS}, got {method!r}")
    if isinstance(labels, np.ma.MaskedArray) and np.ma.count_masked(labels):  # no NaN among integers
        raise InputError(f"labels is a masked array with {np.ma.count_masked(labels)} masked value(s), which would "
                         "be read as labels: fill them with a label of their own (labels.filled(0)) first")
    labels = _check_values(labels, len(_check_mesh(current, "current sphere")[0]), "labels")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"labels must be a (V,) integer array, got {labels.shape} {labels.dtype}")
    if method == "nearest":
        weights = resample_weights(current, new, "barycentric")
        return labels[np.asarray(weights.argmax(axis=1)).ravel()]
    weights = resample_weights(current, new, "adap_bary_area", current_area, new_area)
    keys, code = np.unique(labels, return_inverse=True)
    rows = np.repeat(np.arange(weights.shape[0]), np.diff(weights.indptr))
    votes = sparse.csr_matrix((weights.data, (rows, code[weights.indices])),
                              shape=(weights.shape[0], len(keys)))  # duplicates are summed
    return keys[np.asarray(votes.argmax(axis=1)).ravel()]

"""Rigid (rotational) pre-alignment from feature maps: :func:`rigid_align`, the first step of
every registration, for spheres of any density and any starting orientation (e.g. sulcal depth
against a template). Rotations follow :mod:`geomorph_bids.sphere.rotation`'s convention
(``vertices @ R.T``).

How :func:`rigid_align` works
-----------------------------
1. Both feature maps are area-weighted bin-averaged onto icospheres (nearest vertex, found
   by descent through the nested levels: :func:`_nearest_ico_vertex`, the k-d tree's answer at
   a third of its cost) and low-pass filtered with a normalised Gaussian kernel, one width per level;
   invalid vertices (``mask``, non-finite values, vertices whose channels are all
   exactly zero, such as a zeroed medial wall) get weight zero.
2. Coarse search over all of SO(3): a deterministic super-Fibonacci grid of rotations
   (Alexa, CVPR 2022) is scored by the weighted Pearson correlation between the
   coarse moving map and the fixed map read from a precomputed latitude-longitude
   image, so that thousands of rotations are pure array arithmetic.
3. The best few grid rotations, at least 20 degrees apart, are refined with a
   Gauss-Newton optimiser on a rotation-vector update (left-multiplicative), with the
   fixed map interpolated barycentrically (:class:`~geomorph_bids.sphere.locate.SphereLocator`)
   and its exact analytic gradient: all at the coarse level, then the best one or two
   (near-ties) at a middle and at a fine level. The best fine-level correlation wins.

Defaults (ico-3 / 8 deg, 3000 grid rotations with a covering radius of ~14 deg against a
basin of ~20-25 deg; ico-4 / 4 deg; ico-5 / 2 deg) take ~0.5 s of CPU for two 164k-vertex
spheres (0.8 s wall on 2 busy cores; a template already cached, as ``register()`` reuses it:
less) and agree with the fsaverage -> fsLR reference rotation to ~0.6 deg
(the remaining difference is the non-rigid part of that registration).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Executor
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree

from geomorph_bids.errors import InputError
from geomorph_bids.sphere.icosphere import containing_face, icosphere, n_vertices, unit_icosphere
from geomorph_bids.sphere.locate import SphereLocator, unit
from geomorph_bids.sphere.mesh import (host_array, in_float_range, is_mesh_pair, masked_as_nan, nonfinite_rows,
                                      vertex_areas)
from geomorph_bids.sphere.rotation import expm_so3, orthonormalise, quat_to_matrix

__all__ = ["rigid_align", "rigid_fit", "RigidFit", "MIN_VALID_FRACTION"]

#: Smallest fraction of a map's vertices that must be valid (non-zero: 0 is read as the medial wall;
#: finite; in the cortex mask) for it to drive an alignment; ``io.validate`` refuses a map file below it.
MIN_VALID_FRACTION = 0.05
#: A sphere whose vertex distances from the origin vary by more than this ratio is refused: directions
#: are read from the origin, so an off-centre sphere gave a wrong rotation in silence (as resample's check)
_MAX_RADIUS_RATIO = 1.1

@lru_cache(maxsize=8)
def _super_fibonacci(n: int) -> np.ndarray:
    """Deterministic near-uniform rotations: super-Fibonacci spiral on S^3 (Alexa 2022).

    Returns (n, 3, 3) float64 (read-only, cached).
    """
    phi = np.sqrt(2.0)
    psi = 1.533751168755204288118041
    s = np.arange(n) + 0.5
    t = s / n
    r, big_r = np.sqrt(t), np.sqrt(1.0 - t)
    alpha, beta = 2.0 * np.pi * s / phi, 2.0 * np.pi * s / psi
    q = np.stack([r * np.sin(alpha), r * np.cos(alpha), big_r * np.sin(beta), big_r * np.cos(beta)], -1)
    out = quat_to_matrix(q)
    out.setflags(write=False)
    return out


# ----------------------------------------------------------------------------
# Icospheres and smoothing tables (deterministic, cached)
# ----------------------------------------------------------------------------

_FLIP = np.array([-1.0, 1.0, 1.0])  # the mirror x -> -x
_SEARCH_RES_DEG = 1.0  # the grid search's latitude-longitude images: cells of this many degrees


def _ico(level: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit icosphere of a level: (vertices (V, 3), faces (F, 3)), read-only."""
    return unit_icosphere(level), icosphere(level)[1]


@lru_cache(maxsize=8)
def _ico_tree(level: int) -> cKDTree:
    return cKDTree(_ico(level)[0])


@lru_cache(maxsize=16)
def _ico_nearest(src_level: int, level: int) -> np.ndarray:
    """(V_src,) index of the nearest ico-``level`` vertex of every ico-``src_level`` vertex (cached)."""
    _, idx = _ico_tree(level).query(_ico(src_level)[0], workers=1)
    idx.setflags(write=False)
    return idx


@lru_cache(maxsize=16)
def _ico_nearest_mirrored(src_level: int, level: int) -> np.ndarray:
    """(V_src,) index of the nearest ico-``level`` vertex of every MIRRORED (x -> -x) ico-``src_level``
    vertex (cached): a template on the icosphere grid, mirrored for the identity check."""
    _, idx = _ico_tree(level).query(_ico(src_level)[0] * _FLIP, workers=1)
    idx.setflags(write=False)
    return idx


@lru_cache(maxsize=8)
def _face_tables(level: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per unit ico-level face (a, b, c), counter-clockwise seen from outside: (9, F) float64
    components of the normals ``b x c``, ``c x a``, ``a x b`` (a direction lies in the face where
    its dot products with all three are >= 0), (3, F) int64 corners, (3, V) float64 vertices;
    read-only, as component rows (``take`` gathers them 4x faster than fancy indexing rows)."""
    v, f = _ico(level)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    normals = np.ascontiguousarray(np.stack([np.cross(b, c), np.cross(c, a), np.cross(a, b)], 1).reshape(-1, 9).T)
    corners, vt = np.ascontiguousarray(f.T), np.ascontiguousarray(v.T)
    for t in (normals, corners, vt):
        t.setflags(write=False)
    return normals, corners, vt


_TIE = 1e-12  # two corners whose dot products with a point differ by less are left to the k-d tree


def _nearest_ico_vertex(u: np.ndarray, level: int) -> np.ndarray:
    """(N,) int64: the nearest unit ico-``level`` vertex of each of (N, 3) unit points ``u``, as
    :func:`_ico_tree`'s query gives it.

    Each point's face by descent (:func:`~geomorph_bids.sphere.icosphere.containing_face`), then the
    nearest of its three corners: every icosphere triangle is acute, so each vertex's Voronoi cell
    (the points nearest to it) lies inside the triangles around it, and a point's nearest vertex is
    a corner of the triangle that holds it. A point outside that face by the float64 test, or whose
    two nearest corners are within ``_TIE`` of a tie, gets the k-d tree's answer: the same indices
    as the query, ties included, at a third of its cost (164k points at ico-5: 40 ms, not 0.14 s).
    """
    face = containing_face(u, level)
    normals, corners, vt = _face_tables(level)
    ut = np.ascontiguousarray(u.T)
    g = [row.take(face) for row in normals]
    inside = ((g[0] * ut[0] + g[1] * ut[1] + g[2] * ut[2] >= 0.0) & (g[3] * ut[0] + g[4] * ut[1] + g[5] * ut[2] >= 0.0)
              & (g[6] * ut[0] + g[7] * ut[1] + g[8] * ut[2] >= 0.0))
    c = [row.take(face) for row in corners]
    dots = np.stack([vt[0].take(ci) * ut[0] + vt[1].take(ci) * ut[1] + vt[2].take(ci) * ut[2] for ci in c])
    best = np.argmax(dots, axis=0)
    top = np.take_along_axis(dots, best[None], axis=0)[0]
    second = np.max(np.where(np.arange(3)[:, None] == best[None], -np.inf, dots), axis=0)
    idx = np.where(best == 0, c[0], np.where(best == 1, c[1], c[2]))
    doubt = np.flatnonzero(~inside | (top - second <= _TIE))
    if doubt.size:
        idx[doubt] = _ico_tree(level).query(u[doubt], workers=1)[1]
    return idx


def _icosphere_level(u: np.ndarray) -> int | None:
    """The level whose unit icosphere ``u`` is, vertex for vertex (to 1e-9), else None."""
    for level in range(8):
        if len(u) == n_vertices(level):
            ico = unit_icosphere(level)
            # the 12 first vertices (the icosahedron's) first: a sphere of this size that is no
            # icosphere (fsaverage's 163,842-vertex sphere, rotated) is told in microseconds
            same = (np.allclose(u[:12], ico[:12], rtol=0.0, atol=1e-9)
                    and np.allclose(u, ico, rtol=0.0, atol=1e-9))
            return level if same else None
    return None


@lru_cache(maxsize=8)
def _ico_locator(level: int) -> SphereLocator:
    return SphereLocator(*_ico(level))


@lru_cache(maxsize=8)
def _ico_areas(level: int) -> np.ndarray:
    a = vertex_areas(*_ico(level))
    a.setflags(write=False)
    return a


@lru_cache(maxsize=16)
def _gauss_kernel(level: int, sigma_deg: float) -> sparse.csr_matrix:
    """(V, V) sparse Gaussian weights exp(-theta^2 / 2 sigma^2), theta < 3 sigma, on ico-level."""
    v = _ico(level)[0]
    tree = _ico_tree(level)
    sigma = np.radians(sigma_deg)
    radius = 2.0 * np.sin(min(3.0 * sigma, np.pi) / 2.0)  # chord length
    coo = tree.sparse_distance_matrix(tree, radius, output_type="coo_matrix")
    theta = 2.0 * np.arcsin(np.clip(coo.data / 2.0, 0.0, 1.0))
    rows = np.concatenate([coo.row, np.arange(len(v))])
    cols = np.concatenate([coo.col, np.arange(len(v))])
    vals = np.concatenate([np.exp(-0.5 * (theta / sigma) ** 2), np.ones(len(v))])
    return sparse.csr_matrix((vals, (rows, cols)), shape=(len(v), len(v)))


@lru_cache(maxsize=4)
def _latlon_table(level: int, res_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric table from ico-level vertices to a lat-lon grid.

    Returns corner indices (H*W, 3) and weights (H*W, 3); rows run over latitude
    (-90 + res/2 ... 90 - res/2) then longitude (-180 + res/2 ...).
    """
    n_lat, n_lon = int(round(180 / res_deg)), int(round(360 / res_deg))
    lat = np.radians(-90 + res_deg * (np.arange(n_lat) + 0.5))
    lon = np.radians(-180 + res_deg * (np.arange(n_lon) + 0.5))
    cl, sl = np.cos(lat)[:, None], np.sin(lat)[:, None]
    pts = np.stack([cl * np.cos(lon)[None], cl * np.sin(lon)[None], np.broadcast_to(sl, (n_lat, n_lon))], -1)
    pts = pts.reshape(-1, 3)
    # each point's face by descent, kept where the point lies clear of its edges (the search's face:
    # the same bits), the rest searched: 2-3x faster than searching all, and no k-d tree on first use
    face, w = _ico_locator(level).locate(pts, hint=containing_face(pts, level), exact=True)
    corners = _ico(level)[1][face]
    corners.setflags(write=False)
    w.setflags(write=False)
    return corners, w


# ----------------------------------------------------------------------------
# Feature maps on the icosphere pyramid
# ----------------------------------------------------------------------------


@dataclass(eq=False)
class _Smoothed:
    """A feature map low-passed onto one icosphere level.

    The tables read from the FIXED map are built on first use and kept with it
    (:attr:`interpolation`, :meth:`latlon_image`): the refinements and the grid searches that
    share one fixed map (and, through :func:`_fixed_side`'s cache, every registration to one
    template in a process) build them once."""

    level: int
    values: np.ndarray  # (V, K) float64, z-scored per channel over valid vertices
    weight: np.ndarray  # (V,) float64 in [0, 1]: coverage by valid input (0 = invalid)
    _images: dict = field(default_factory=dict, repr=False)  # res_deg -> latlon_image's result

    @cached_property
    def interpolation(self) -> tuple[np.ndarray, np.ndarray]:
        """(F, 3) ``N`` and (F, K, 3) ``g`` of :class:`_Interpolant` on this level's faces."""
        v, f = _ico(self.level)
        a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
        normals = np.stack([np.cross(b, c), np.cross(c, a), np.cross(a, b)], 1)  # (F, 3 corners, 3)
        return normals.sum(1), np.einsum("fcd,fck->fkd", normals, self.values[f])

    def latlon_image(self, res_deg: float) -> tuple[np.ndarray, np.ndarray]:
        """The map (H*W, K) and its validity weight (H*W,), float32, on the latitude-longitude
        grid of :func:`_latlon_table` (the grid search reads them)."""
        if res_deg not in self._images:
            corners, bw = _latlon_table(self.level, res_deg)
            self._images[res_deg] = (np.einsum("nc,nck->nk", bw, self.values[corners]).astype(np.float32),
                                     np.einsum("nc,nc->n", bw, self.weight[corners]).astype(np.float32))
        return self._images[res_deg]


def _prepare_features(vertices: np.ndarray, faces: np.ndarray, features: np.ndarray,
                      mask: np.ndarray | None, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate inputs; return unit vertices, (V, K) features, (V,) area x validity weights."""
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) < 4:
        raise InputError(f"{name} sphere vertices must be (V, 3), got {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.min(initial=0) < 0 or faces.max(initial=0) >= len(vertices):
        raise InputError(f"{name} sphere faces must be (F, 3) indices into its vertices")
    bad = nonfinite_rows(vertices)
    if bad.any():  # else the k-d tree's "'x' must be finite", naming nothing, in the binning
        raise InputError(f"{name} sphere vertices: {int(bad.sum())} of {len(vertices)} have non-finite coordinates "
                         f"(NaN or Inf, first at vertex {int(np.argmax(bad))})")
    radius = np.sqrt(np.einsum("ij,ij->i", vertices, vertices))
    if radius.min() <= 0 or radius.max() > _MAX_RADIUS_RATIO * radius.min():  # directions are read from the origin
        raise InputError(f"{name} sphere is not a sphere centred on the origin (vertex radii {radius.min():.3g} to "
                         f"{radius.max():.3g}): recentre it (vertices - vertices.mean(axis=0))")
    feat = np.asarray(features, dtype=np.float64)
    if feat.ndim == 1:
        feat = feat[:, None]
    if feat.ndim != 2 or len(feat) != len(vertices):
        raise InputError(f"{name} features must be (V,) or (V, K) with V = {len(vertices)}, got {feat.shape}")
    valid = np.all(np.isfinite(feat), axis=1) & np.any(feat != 0, axis=1)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool).reshape(-1)
        if mask.shape != (len(vertices),):
            raise InputError(f"{name} mask must be (V,) with V = {len(vertices)}, got {mask.shape}")
        valid &= mask
    if valid.sum() < MIN_VALID_FRACTION * len(valid):
        raise InputError(f"{name} features: fewer than {100 * MIN_VALID_FRACTION:g}% of vertices are valid "
                         "(non-zero, finite, in mask)")
    feat = in_float_range(np.where(valid[:, None], feat, 0.0))  # 1e300 or 1e-300: the same pattern, exactly
    flat = [k for k in range(feat.shape[1]) if np.ptp(feat[valid, k]) == 0]
    if flat:  # one value everywhere: any rotation fits it as well (it returned one in silence)
        raise InputError(f"{name} features: channel {flat[0]} is constant ({feat[valid, flat[0]][0]:g}) on every valid "
                         "vertex (non-zero, finite, in mask): it carries nothing to align")
    feat = np.where(valid[:, None], feat, 0.0)
    u = unit(vertices)
    level = _icosphere_level(u)  # a template on its icosphere grid: its cached vertex areas
    grid = level is not None and faces.shape == _ico(level)[1].shape and np.array_equal(faces, _ico(level)[1])
    area = (_ico_areas(level) if grid else vertex_areas(u, faces)) * valid
    return u, feat, area


def _bin_to_level(u: np.ndarray, feat: np.ndarray, area: np.ndarray,
                  level: int) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted sums of features (V_L, K) and of weights (V_L,) per nearest ico vertex.

    Cells that receive no input vertex (input coarser than the level) take the value of
    the nearest input vertex, weighted by the cell's own area.
    """
    n = len(_ico(level)[0])
    own = _icosphere_level(u)  # a template on its icosphere grid (or its mirror image): a cached table
    mirrored = _icosphere_level(u * _FLIP) if own is None else None
    if own is not None and own >= level:
        idx = _ico_nearest(own, level)
    elif mirrored is not None and mirrored >= level:
        idx = _ico_nearest_mirrored(mirrored, level)
    else:
        idx = _nearest_ico_vertex(u, level)
    wsum = np.bincount(idx, weights=area, minlength=n)
    fsum = np.stack([np.bincount(idx, weights=area * feat[:, k], minlength=n)
                     for k in range(feat.shape[1])], 1)
    empty = np.flatnonzero(np.bincount(idx, minlength=n) == 0)
    if empty.size:
        _, near = cKDTree(u).query(_ico(level)[0][empty], workers=1)
        cell = _ico_areas(level)[empty] * (area[near] > 0)
        wsum[empty] = cell
        fsum[empty] = feat[near] * cell[:, None]
    return fsum, wsum


def _coarsen(fsum: np.ndarray, wsum: np.ndarray, src_level: int, level: int) -> tuple[np.ndarray, np.ndarray]:
    """Aggregate bin sums of a finer icosphere level onto a coarser one (nearest vertex)."""
    if level == src_level:
        return fsum, wsum
    n = len(_ico(level)[0])
    idx = _ico_nearest(src_level, level)
    w = np.bincount(idx, weights=wsum, minlength=n)
    f = np.stack([np.bincount(idx, weights=fsum[:, k], minlength=n) for k in range(fsum.shape[1])], 1)
    return f, w


def _smooth(fsum: np.ndarray, wsum: np.ndarray, level: int, sigma_deg: float) -> _Smoothed:
    """Normalised Gaussian convolution of bin sums; z-score channels over valid vertices."""
    K = _gauss_kernel(level, float(sigma_deg))
    num = K @ fsum
    den = K @ wsum
    full = K @ _ico_areas(level)
    coverage = den / full
    values = num / np.where(den > 0, den, 1.0)[:, None]
    weight = np.clip((coverage - 0.25) / 0.5, 0.0, 1.0)  # smooth ramp: 0 below 25%, 1 above 75%
    if not np.any(weight > 0):
        raise InputError("features have no valid region after smoothing")
    sw = weight.sum()
    mean = (weight @ values) / sw
    std = np.sqrt((weight @ (values - mean) ** 2) / sw)
    values = (values - mean) / np.where(std > 0, std, 1.0)
    values[weight == 0] = 0.0
    return _Smoothed(level, values, weight)


# ----------------------------------------------------------------------------
# Scoring: weighted correlation
# ----------------------------------------------------------------------------


def _weighted_corr(m: np.ndarray, f: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted Pearson correlation along the last axis; m, f, w broadcast together."""
    sw = w.sum(-1)
    sw = np.where(sw > 0, sw, 1.0)
    wm, wf = w * m, w * f  # each product once: ``w * m * f`` is ``(w * m) * f``, the same bits
    mm = wm.sum(-1) / sw
    fm = wf.sum(-1) / sw
    cov = (wm * f).sum(-1) / sw - mm * fm
    vm = (wm * m).sum(-1) / sw - mm * mm
    vf = (wf * f).sum(-1) / sw - fm * fm
    return cov / np.sqrt(np.maximum(vm * vf, 1e-30))


def _coarse_search(mov: _Smoothed, fix: _Smoothed, n_rotations: int,
                   res_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Score every grid rotation; return rotations (N, 3, 3) and scores (N,)."""
    n_lat, n_lon = int(round(180 / res_deg)), int(round(360 / res_deg))
    # fixed map and its validity as lat-lon images (float32: lookups dominate the cost)
    img, img_w = fix.latlon_image(res_deg)  # (H*W, K), (H*W,)
    keep = mov.weight > 0
    p = _ico(mov.level)[0][keep].astype(np.float32)  # (P, 3)
    pt = np.ascontiguousarray(p.T)  # (3, P)
    m = mov.values[keep].astype(np.float32)  # (P, K)
    wm = mov.weight[keep].astype(np.float32)
    rots = _super_fibonacci(int(n_rotations))
    scores = np.empty(len(rots))
    chunk = max(1, (1 << 21) // len(p))
    block = max(1, (1 << 16) // len(p))  # rotations per pass of the lookups: temporaries of ~256 kB
    for s in range(0, len(rots), chunk):
        R = rots[s:s + chunk].astype(np.float32)
        xs = np.matmul(R.reshape(-1, 3), pt).reshape(len(R), 3, -1)  # (n, 3, P): a BLAS call, 10x einsum
        # the rest row by row (a rotation's score reads its own row only), in cache-sized blocks:
        # 2x faster than on the whole chunk's 7 MB temporaries at ico-3, the same bits
        for b in range(0, len(R), block):
            x = xs[b:b + block]
            lat = np.arcsin(np.clip(x[:, 2], -1.0, 1.0))
            lon = np.arctan2(x[:, 1], x[:, 0])
            i = np.minimum(((lat + np.pi / 2) * (n_lat / np.pi)).astype(np.int32), n_lat - 1)
            j = np.minimum(((lon + np.pi) * (n_lon / (2 * np.pi))).astype(np.int32), n_lon - 1)
            flat = i * n_lon + j
            w = wm[None] * img_w[flat]
            score = 0.0
            for k in range(m.shape[1]):
                score = score + _weighted_corr(m[None, :, k], img[flat, k], w)
            scores[s + b:s + b + len(x)] = score / m.shape[1]
    return rots, scores


def _angle_deg(R: np.ndarray, Q: np.ndarray) -> float:
    """Angle of the rotation ``R Q^T`` in degrees."""
    return float(np.degrees(np.arccos(np.clip((np.trace(R @ Q.T) - 1.0) / 2.0, -1.0, 1.0))))


def _pick_candidates(rots: np.ndarray, scores: np.ndarray, n: int, min_sep_deg: float) -> list[np.ndarray]:
    """Best-scoring rotations, each at least ``min_sep_deg`` from every better pick."""
    order = np.argsort(-scores, kind="stable")
    picks: list[np.ndarray] = []
    cos_half = np.cos(np.radians(min_sep_deg) / 2)
    for idx in order[: max(50 * n, 200)]:
        R = rots[idx]
        # angle(R1 R2^T) > sep  <=>  |trace(R1 R2^T)| small enough: compare via quaternion dot
        if all((np.trace(R @ Q.T) + 1.0) / 4.0 < cos_half**2 for Q in picks):
            picks.append(np.array(R))
        if len(picks) == n:
            break
    return picks


# ----------------------------------------------------------------------------
# Continuous refinement: Gauss-Newton with barycentric interpolation
# ----------------------------------------------------------------------------


class _Interpolant:
    """Barycentric (gnomonic) interpolation of an ico-level map with its exact gradient.

    Inside face (a, b, c) with edge normals n_a = b x c, n_b = c x a, n_c = a x b,
    F(x) = (g . x) / (N . x) with g = sum_i f_i n_i and N = sum_i n_i, hence
    grad F = (g (N . x) - (g . x) N) / (N . x)^2.
    """

    def __init__(self, sm: _Smoothed) -> None:
        self.locator = _ico_locator(sm.level)
        self.N, self.g = sm.interpolation  # (F, 3), (F, K, 3): built once per fixed map
        self.faces = _ico(sm.level)[1]
        self.values = sm.values
        self.weight = sm.weight
        self._last: np.ndarray | None = None  # faces of the previous call's points

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Values (P, K), gradients (P, K, 3) and validity weights (P,) at unit points x.

        Successive calls usually move the points a little: the faces found last time are
        tried first."""
        hint = self._last if self._last is not None and len(self._last) == len(x) else None
        face, bw = self.locator.locate(x, hint=hint)
        self._last = face
        corners = self.faces.take(face, axis=0)  # take: rows[idx], faster than fancy indexing
        vals = np.einsum("pc,pck->pk", bw, self.values.take(corners, axis=0))
        wt = np.einsum("pc,pc->p", bw, self.weight.take(corners))
        N, g = self.N.take(face, axis=0), self.g.take(face, axis=0)
        nx = np.einsum("pd,pd->p", N, x)
        gx = np.einsum("pkd,pd->pk", g, x)
        grad = (g * nx[:, None, None] - gx[..., None] * N[:, None, :]) / (nx**2)[:, None, None]
        return vals, grad, wt


def _refine(R0: np.ndarray, mov: _Smoothed, fix: _Smoothed, max_iter: int = 30,
            tol_deg: float = 0.005) -> tuple[np.ndarray, float]:
    """Maximise the weighted correlation over rotations near R0; return (R, correlation).

    Gauss-Newton on the residuals ``a_k F_k(R p) + b_k - m_k`` (one scale and offset per
    channel), which for z-scored m_k amounts to maximising sum_k r_k^2; the update is
    ``R <- exp([delta]x) R``. Steps that do not lower the cost are halved.
    """
    interp = _Interpolant(fix)
    keep = mov.weight > 0
    p = _ico(mov.level)[0][keep]
    m = mov.values[keep]
    wm = mov.weight[keep]
    n_ch = m.shape[1]

    def evaluate(R: np.ndarray):
        x = p @ R.T
        vals, grad, wt = interp(x)
        return x, vals, grad, wm * wt

    def fit_ab(vals, w):
        sw = w.sum()
        fm = np.einsum("p,pk->k", w, vals) / sw
        mm = np.einsum("p,pk->k", w, m) / sw
        cov = np.einsum("p,pk->k", w, (vals - fm) * (m - mm)) / sw
        var = np.einsum("p,pk->k", w, (vals - fm) ** 2) / sw
        a = cov / np.maximum(var, 1e-12)
        return a, mm - a * fm

    def cost(vals, w, a, b):
        r = vals * a + b - m
        return float(np.einsum("p,pk->", w, r * r) / w.sum())

    R = np.array(R0, dtype=np.float64)
    x, vals, grad, w = evaluate(R)
    a, b = fit_ab(vals, w)
    c0 = cost(vals, w, a, b)
    for _ in range(max_iter):
        r = vals * a + b - m  # (P, K)
        # Jacobian per channel k: [a_k (x x gradF_k) | e_k F_k | e_k]
        jd = a[None, :, None] * np.cross(x[:, None, :], grad)  # (P, K, 3)
        n_par = 3 + 2 * n_ch
        J = np.zeros((len(p), n_ch, n_par))
        J[..., :3] = jd
        ar = np.arange(n_ch)
        J[:, ar, 3 + ar] = vals
        J[:, ar, 3 + n_ch + ar] = 1.0
        Jw = J * w[:, None, None]
        A = np.einsum("pki,pkj->ij", Jw, J)
        g = np.einsum("pki,pk->i", Jw, r)
        A += 1e-9 * np.trace(A) * np.eye(n_par)
        step = -np.linalg.solve(A, g)
        t = 1.0
        accepted = False
        for _ in range(8):
            Rn = expm_so3(t * step[:3]) @ R
            xn, valsn, gradn, wn = evaluate(Rn)
            an, bn = a + t * step[3:3 + n_ch], b + t * step[3 + n_ch:]
            cn = cost(valsn, wn, an, bn)
            if cn <= c0:
                accepted = True
                break
            t *= 0.5
        if not accepted:
            break
        R, x, vals, grad, w, a, b, c0 = Rn, xn, valsn, gradn, wn, an, bn, cn
        a, b = fit_ab(vals, w)
        c0 = cost(vals, w, a, b)
        if np.degrees(np.linalg.norm(t * step[:3])) < tol_deg:
            break
    R = orthonormalise(R)
    _, vals, _, w = evaluate(R)
    corr = float(np.mean([_weighted_corr(m[:, k], vals[:, k], w) for k in range(n_ch)]))
    return R, corr


# ----------------------------------------------------------------------------
# Public: rigid alignment from features
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RigidFit:
    """Result of :func:`rigid_fit`.

    Attributes
    ----------
    rotation : (3, 3) float64, det +1; ``moving_vertices @ rotation.T`` lies on the fixed sphere.
    correlation : weighted Pearson correlation of the fine-level smoothed maps at ``rotation``
        (mean over channels); of the coarse-level maps when the rotation was given.
    own : the best correlation of the coarse-level smoothed maps over rotations (grid search
        and Gauss-Newton polish; with a given rotation: polished from it), against the fixed
        sphere.
    mirrored : the same measure against the MIRROR IMAGE of the fixed sphere (``x -> -x``),
        or None when not asked for. A rotation cannot turn a left hemisphere into a right one,
        so a moving hemisphere fits the mirror image of its own side's template much worse
        (real FreeSurfer/fsLR data: 0.92-0.96 own vs 0.36-0.39 mirrored); one that fits the
        mirror image better is the other hemisphere (swapped files or labels).
    """

    rotation: np.ndarray
    correlation: float
    own: float
    mirrored: float | None = None


def _pyramid(u: np.ndarray, feat: np.ndarray, area: np.ndarray, fine_level: int,
             levels: tuple[tuple[int, float], ...]) -> dict[tuple[int, float], _Smoothed]:
    """The maps of :func:`_prepare_features`' output binned at ``fine_level`` and smoothed at each
    (level, sigma_deg) of ``levels``."""
    fsum, wsum = _bin_to_level(u, feat, area, fine_level)
    return {(lev, sig): _smooth(*_coarsen(fsum, wsum, fine_level, lev), lev, sig) for lev, sig in levels}


class _Content:
    """Arrays as a cache key: two keys are equal when their arrays have the same shapes, dtypes
    and bytes (a BLAKE2b digest of them), whatever objects hold them."""

    def __init__(self, arrays: tuple[np.ndarray | None, ...], digest: bytes) -> None:
        self.arrays, self._digest = arrays, digest

    @classmethod
    def of(cls, vertices: np.ndarray, faces: np.ndarray, features: np.ndarray,
           mask: np.ndarray | None) -> "_Content":
        """A fixed sphere's inputs to :func:`rigid_fit` (converted as :func:`_prepare_features`
        reads them) as a key."""
        arrays = (np.asarray(vertices, dtype=np.float64), np.asarray(faces), np.asarray(features, dtype=np.float64),
                  None if mask is None else np.asarray(mask))
        h = hashlib.blake2b(digest_size=20)
        for a in arrays:
            h.update(b"-" if a is None else repr((a.shape, a.dtype.str)).encode())
            if a is not None:
                h.update(np.ascontiguousarray(a).view(np.uint8).reshape(-1))
        return cls(arrays, h.digest())

    def __hash__(self) -> int:
        return hash(self._digest)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Content) and other._digest == self._digest


@lru_cache(maxsize=4)
def _fixed_side(content: _Content, fine_level: int, levels: tuple[tuple[int, float], ...],
                mirrored_level: tuple[int, float] | None) -> tuple[dict[tuple[int, float], _Smoothed], _Smoothed | None]:
    """The fixed sphere's smoothed maps (:func:`_pyramid`) and, for ``mirrored_level``, those of its
    mirror image (the identity check), cached by content: a process that registers many
    hemispheres to one template (``register_many``, the batch mode, a Nipype worker) builds them,
    and the tables they keep (:class:`_Smoothed`), once. Read-only arrays."""
    vertices, faces, features, mask = content.arrays
    fu, ffeat, farea = _prepare_features(vertices, faces, features, mask, "fixed")
    own = _pyramid(fu, ffeat, farea, fine_level, levels)
    mirrored = None if mirrored_level is None else _pyramid(fu * _FLIP, ffeat, farea, fine_level,
                                                            (mirrored_level,))[mirrored_level]
    content.arrays = ()  # the key keeps its digest, not the caller's arrays
    for sm in (*own.values(), *(() if mirrored is None else (mirrored,))):
        sm.values.setflags(write=False)
        sm.weight.setflags(write=False)
    return own, mirrored


def _coarse_best(mov: _Smoothed, fix: _Smoothed, n_rotations: int, n_candidates: int, tol_deg: float = 0.005
                 ) -> list[tuple[np.ndarray, float]]:
    """Grid search over SO(3), then the best distinct candidates polished at this level (until a
    step is below ``tol_deg``)."""
    rots, scores = _coarse_search(mov, fix, n_rotations, res_deg=_SEARCH_RES_DEG)
    candidates = _pick_candidates(rots, scores, n_candidates, min_sep_deg=20.0)
    return [_refine(R0, mov, fix, tol_deg=tol_deg) for R0 in candidates]


def _level_tables(n_fixed: int, fine_level: int, levels: tuple[tuple[int, float], ...], search: bool,
                  mirror_rotations: int | None, n_rotations: int) -> None:
    """Build the cached level tables a fit reads (or find them built), about in the reverse of the
    order in which :func:`rigid_fit` first reaches them: run by its ``worker`` beside it (the
    result never read), the first fit of a process shares their build between two CPUs (the
    template's pyramid and the grid search's tables: 0.1-0.2 s), and later fits find them all
    cached (microseconds). Deterministic tables: the same whichever thread builds them first
    (both, at worst). ``n_fixed``: the fixed sphere's vertex count (an icosphere grid's level is
    taken from it; a guess only: a table built for nothing costs time, never bits); ``levels``:
    the (level, sigma_deg) of the pyramid, finest first; ``search``: the coarse grid search runs;
    ``mirror_rotations``: the identity check's grid, or None."""
    coarse = levels[-1][0]
    if search or mirror_rotations is not None:
        _latlon_table(coarse, _SEARCH_RES_DEG)
    for n in ((n_rotations,) if search else ()) + (() if mirror_rotations is None else (mirror_rotations,)):
        _super_fibonacci(int(n))
    grid = next((lev for lev in range(8) if n_vertices(lev) == n_fixed), None)
    if mirror_rotations is not None and grid is not None and grid >= fine_level:
        _ico_nearest_mirrored(grid, fine_level)
    for level, sigma in reversed(levels):
        if level != fine_level:
            _ico_nearest(fine_level, level)
        _gauss_kernel(level, float(sigma))
    _face_tables(fine_level)
    if grid is not None and grid >= fine_level:
        _ico_nearest(grid, fine_level)


def _mirror_fit(mov: _Smoothed, mirrored: _Smoothed, n_rotations: int) -> float:
    """The identity check's measure: the best coarse-level correlation of the moving maps with the
    fixed sphere's mirror image (grid search, its two best candidates polished to 0.1 deg steps)."""
    return max(c for _, c in _coarse_best(mov, mirrored, n_rotations, 2, 0.1))


def _host_inputs(sphere: Any, features: Any, mask: Any, name: str) -> tuple[tuple[Any, Any], Any, Any]:
    """One side of :func:`rigid_fit` as arrays, decided once here: the sphere a ``(vertices, faces)``
    pair, torch tensors detached, a masked array's masked values NaN (left out, as the medial
    wall is), complex values refused (numpy would drop the imaginary part)."""
    if not is_mesh_pair(sphere):
        raise InputError(f"{name} sphere must be a (vertices, faces) pair, got {type(sphere).__name__}"
                         + (f" of shape {np.shape(sphere)}" if hasattr(sphere, "shape") else ""))
    vertices, faces = (host_array(a, f"{name} sphere") for a in sphere)
    features = masked_as_nan(host_array(features, f"{name} features"))
    if np.iscomplexobj(features):
        raise InputError(f"{name} features hold complex numbers: a feature map must be real")
    mask = host_array(mask, f"{name} mask")
    if isinstance(mask, np.ma.MaskedArray):  # masked entries are not in the mask
        mask = np.ma.filled(mask.astype(bool), False)
    return (vertices, faces), features, mask


def rigid_fit(moving: tuple[np.ndarray, np.ndarray], moving_features: np.ndarray,
              fixed: tuple[np.ndarray, np.ndarray], fixed_features: np.ndarray, *,
              mask: np.ndarray | None = None, fixed_mask: np.ndarray | None = None,
              rotation: np.ndarray | None = None, mirror_check: bool = False,
              coarse_level: int = 3, coarse_sigma_deg: float = 8.0, n_rotations: int = 3000,
              mid_level: int = 4, mid_sigma_deg: float = 4.0,
              fine_level: int = 5, fine_sigma_deg: float = 2.0,
              n_candidates: int = 4, worker: Executor | None = None) -> RigidFit:
    """Rotation that best aligns two spheres' feature maps (:func:`rigid_align`), with the
    measures a hemisphere-identity check needs (:class:`RigidFit`).

    ``rotation``: a rotation already known (e.g. from FreeSurfer's ``sphere.reg``
    correspondence): no search, only the coarse-level correlations are measured. ``mirror_check``:
    also fit the mirror image of the fixed sphere, reusing the moving maps already binned and
    smoothed: one coarse grid search of a third of the rotations and the polish of its two best
    candidates (0.2-0.3 s at any mesh size, docs/benchmarks.md). ``worker``: an executor (e.g. a
    one-thread pool) that fits the mirror image beside the own fit, on another CPU (its result read
    from ``submit(...).result()``; the same bits); None: after it. Other parameters as in
    :func:`rigid_align`.
    """
    moving, moving_features, mask = _host_inputs(moving, moving_features, mask, "moving")
    fixed, fixed_features, fixed_mask = _host_inputs(fixed, fixed_features, fixed_mask, "fixed")
    mu, mfeat, marea = _prepare_features(moving[0], moving[1], moving_features, mask, "moving")
    if not coarse_level <= mid_level <= fine_level:
        raise InputError("levels must satisfy coarse_level <= mid_level <= fine_level")
    c_key, m_key, f_key = (coarse_level, coarse_sigma_deg), (mid_level, mid_sigma_deg), (fine_level, fine_sigma_deg)
    keys = (f_key, m_key, c_key) if rotation is None else (c_key,)  # a known rotation: the coarse maps suffice
    mirror_rotations = max(500, n_rotations // 3)
    if worker is not None:  # the level tables (first fit of a process) built beside the rest
        worker.submit(_level_tables, len(fixed[0]), fine_level, keys, rotation is None,
                      mirror_rotations if mirror_check else None, n_rotations)
    f, f_mirrored = _fixed_side(_Content.of(fixed[0], fixed[1], fixed_features, fixed_mask), fine_level, keys,
                                c_key if mirror_check else None)
    if mfeat.shape[1] != f[c_key].values.shape[1]:
        raise InputError(f"moving and fixed features have {mfeat.shape[1]} and {f[c_key].values.shape[1]} channels")
    m = _pyramid(mu, mfeat, marea, fine_level, keys)
    coarse = (m[c_key], f[c_key])
    # a third of the grid and two candidates: the two fits differ by ~0.4; a measure, not a rotation:
    # polished to 0.1 deg steps (the correlation within 1e-5 of 0.005 deg's, 0.7x)
    mirror_args = (m[c_key], f_mirrored, mirror_rotations)
    mirror_job = worker.submit(_mirror_fit, *mirror_args) if mirror_check and worker is not None else None

    if rotation is None:
        # Polish every grid candidate at the coarse level (cheap), then carry the best ones
        # (near-ties included) through the middle and fine levels.
        polished = _coarse_best(*coarse, n_rotations, n_candidates)
        own = max(c for _, c in polished)
        keep: list[tuple[np.ndarray, float]] = []  # near-ties, but not two polished onto one optimum
        for R0, c0 in sorted((p for p in polished if p[1] >= own - 0.05), key=lambda p: -p[1]):
            if all(_angle_deg(R0, Q) > 2.0 for Q, _ in keep):
                keep.append((R0, c0))
        keep = keep[:2]
        best_R, best_c = None, -np.inf
        for R0, _ in keep:
            R1, _ = _refine(R0, m[m_key], f[m_key])
            R2, c2 = _refine(R1, m[f_key], f[f_key])
            if c2 > best_c:
                best_R, best_c = R2, c2
        assert best_R is not None
    else:
        best_R = orthonormalise(np.asarray(rotation, dtype=np.float64))
        best_c = _refine(best_R, *coarse, max_iter=0)[1]
        own = _refine(best_R, *coarse)[1]
    mirrored = None
    if mirror_check:
        mirrored = mirror_job.result() if mirror_job is not None else _mirror_fit(*mirror_args)
    return RigidFit(best_R, float(best_c), float(own), None if mirrored is None else float(mirrored))


def rigid_align(moving: tuple[np.ndarray, np.ndarray], moving_features: np.ndarray,
                fixed: tuple[np.ndarray, np.ndarray], fixed_features: np.ndarray, *,
                mask: np.ndarray | None = None, fixed_mask: np.ndarray | None = None,
                coarse_level: int = 3, coarse_sigma_deg: float = 8.0, n_rotations: int = 3000,
                mid_level: int = 4, mid_sigma_deg: float = 4.0,
                fine_level: int = 5, fine_sigma_deg: float = 2.0,
                n_candidates: int = 4, return_correlation: bool = False,
                ) -> np.ndarray | tuple[np.ndarray, float]:
    """Rotation that best aligns two spheres' feature maps (maximum correlation).

    Parameters
    ----------
    moving, fixed : (vertices (V, 3) float, faces (F, 3) int) spheres centred on the
        origin, any radius and density (e.g. fsaverage 164k, fsLR 32k/164k, native).
    moving_features, fixed_features : (V,) or (V, K) float maps on each sphere, with the
        same channels in the same order and the SAME SIGN CONVENTION (e.g. both
        FreeSurfer sulc, or both HCP sulc = -FreeSurfer sulc): only positive
        correlation is maximised, so a flipped sign gives a wrong answer.
    mask, fixed_mask : (V,) bool, True where the moving / fixed features are valid.
        Independently of the masks, vertices with non-finite values or with all
        channels exactly 0 (a zeroed medial wall) are ignored.
    coarse_level, coarse_sigma_deg, n_rotations : icosphere level, Gaussian smoothing
        (degrees) and number of grid rotations of the exhaustive search over SO(3).
    mid_level, mid_sigma_deg, fine_level, fine_sigma_deg : levels and smoothing of the
        two continuous refinements.
    n_candidates : distinct grid optima refined.
    return_correlation : also return the final correlation (weighted Pearson of the
        fine-level smoothed maps, mean over channels); useful as a quality check
        (e.g. ~0.96 for fsaverage sulc against fsLR refsulc, < 0.6 for a flipped sign).

    Returns
    -------
    R : (3, 3) float64 rotation (det +1) such that ``moving_vertices @ R.T`` (i.e.
        ``apply_rotation(moving_vertices, R)``) lies aligned with the fixed sphere;
        with ``return_correlation``, ``(R, correlation)``.

    Deterministic: no random numbers; the same inputs give the same rotation.

    Raises
    ------
    InputError : bad shapes, different channel counts, or fewer than 5% valid vertices.
    """
    fit = rigid_fit(moving, moving_features, fixed, fixed_features, mask=mask, fixed_mask=fixed_mask,
                    coarse_level=coarse_level, coarse_sigma_deg=coarse_sigma_deg, n_rotations=n_rotations,
                    mid_level=mid_level, mid_sigma_deg=mid_sigma_deg, fine_level=fine_level,
                    fine_sigma_deg=fine_sigma_deg, n_candidates=n_candidates)
    return (fit.rotation, fit.correlation) if return_correlation else fit.rotation

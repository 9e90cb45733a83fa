"""Remove folded triangles from a deformed spherical mesh of any topology (numpy).

A registered sphere is the subject's mesh moved through a warp. Where the warp is fold-free on
its own grid (the ico-6 warp is unfolded before it is applied), a small triangle of a much
finer subject mesh can still flip: its three corners are mapped by different linear pieces of
the warp. Real subject meshes (FreeSurfer's, made from a voxel grid) are full of slivers,
triangles a fraction of a millimetre high, which flip under the slightest shear.
:func:`unfold_mesh` removes such folds: first by re-seating the apex of each folded triangle
(the corner opposite its longest edge) where the base triangle's shape puts it, then, for folds
that remain, by smoothing the displacement locally;
:func:`geomorph_bids.engine.warp_geometry.unfold_warp` uses it for warps on the icosphere.
"""

from __future__ import annotations

import numpy as np

from .distortion import checked_sides, triangle_orientation
from .locate import unit

__all__ = ["unfold_mesh"]

#: re-seating rounds tried before a smoothing step (each re-checks the triangles it touched)
_RESEAT_ROUNDS = 3
#: a triangle is a sliver when its height over its longest edge is at most this (equilateral: 0.87)
_SLIVER = 0.2
#: an apex is re-seated only if that moves it by at most this fraction of its triangle's longest edge
_RESEAT_REACH = 0.5


class _Incidence:
    """Triangles around each vertex (built once, when a mesh has folds)."""

    def __init__(self, faces: np.ndarray, n_vertices: int) -> None:
        corners = faces.ravel()
        self.order = np.argsort(corners, kind="stable") // 3
        self.start = np.concatenate([[0], np.cumsum(np.bincount(corners, minlength=n_vertices))])

    def around(self, vertices: np.ndarray) -> np.ndarray:
        """Sorted unique indices of the triangles touching ``vertices``."""
        lo = self.start[vertices]
        count = self.start[vertices + 1] - lo
        first = np.cumsum(count) - count                      # each vertex's first slot in the output
        idx = np.arange(count.sum()) - np.repeat(first - lo, count)
        return np.unique(self.order[idx])


def _reseat(b: np.ndarray, m: np.ndarray, tri: np.ndarray, sign: np.ndarray,
            radius: float) -> tuple[np.ndarray, np.ndarray]:
    """New positions for the apex of each folded triangle ``tri`` (K, 3): its corner opposite the
    longest base edge, put at the same place relative to that edge (along it and across it, in
    edge lengths) as in the base, on the side that gives the triangle orientation ``sign``.
    Only slivers (base height at most :data:`_SLIVER` of the longest edge) whose apex moves
    less than :data:`_RESEAT_REACH` of that edge are re-seated; a folded region of well-shaped
    triangles is left to smoothing. Returns (apex vertex indices (K',), their positions (K', 3)
    on ``radius``)."""
    pb = b[tri]                                                   # (K, 3 corners, 3)
    opposite = np.linalg.norm(pb[:, [2, 0, 1]] - pb[:, [1, 2, 0]], axis=2)  # edge opposite each corner
    k = np.argmax(opposite, axis=1)
    rows = np.arange(len(tri))
    p, a, c = tri[rows, k], tri[rows, (k + 1) % 3], tri[rows, (k + 2) % 3]  # (p, a, c): tri's own cyclic order
    e = b[c] - b[a]
    rel = b[p] - b[a]
    ee = np.einsum("ij,ij->i", e, e)
    t = np.einsum("ij,ij->i", rel, e) / ee                                    # along the edge
    s = np.abs(np.einsum("ij,ij->i", rel, np.cross(unit(b[a] + b[c]), e))) / ee  # across it, tangentially
    e_m = m[c] - m[a]
    across = np.cross(unit(m[a] + m[c]), e_m)                    # in the tangent plane, |e_m| long
    q = unit(m[a] + t[:, None] * e_m + (sign * s)[:, None] * across) * radius
    longest = opposite[rows, k]
    sliver = s <= _SLIVER                                 # base height over the longest edge
    small = np.linalg.norm(q - m[p], axis=1) <= _RESEAT_REACH * longest
    keep = sliver & small
    return p[keep], q[keep]


def unfold_mesh(base: np.ndarray, moved: np.ndarray, faces: np.ndarray,
                max_iterations: int = 100, base_sides: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Unfold ``moved`` relative to ``base``: re-seat the folded triangles' apexes, then smooth
    the displacement near folds that remain.

    Parameters
    ----------
    base : (V, 3) float, the reference positions (e.g. the rigidly aligned input sphere), on a
        sphere centred at the origin (any radius); its triangles' orientation is the one to keep.
    moved : (V, 3) float, the same vertices deformed (e.g. the registered sphere), same radius.
    faces : (F, 3) int, the mesh's triangles.
    max_iterations : at most this many steps (a re-seating round or a smoothing step each).
    base_sides : optional (F,) orientation signs of ``base``'s triangles, if at hand (e.g. an
        icosphere's, cached): what the fold test computes from ``base`` otherwise.

    Returns
    -------
    (V, 3) float64 on ``moved``'s mean radius, and the number of steps used (0: nothing was
    folded; ``max_iterations``: folds may remain). A triangle is folded while its orientation
    (:func:`geomorph_bids.sphere.distortion.folded_triangles`) differs from ``base``'s;
    triangles degenerate in ``base`` have none and are left alone. A re-seating round moves the
    corner of each folded triangle opposite its longest base edge to where the base triangle's
    shape puts it against that edge (a sliver's apex moves by about its own height, a fraction
    of a millimetre); after :data:`_RESEAT_ROUNDS` rounds that leave folds, a smoothing step
    moves the displacement ``moved - base`` at the folded triangles' corners and two rings around
    them half-way to the mean over their triangles' other corners. Vertices away from folds
    never move. Cost: one orientation test of the whole mesh, then of the triangles around the
    vertices each step moved.
    """
    b = np.asarray(base, dtype=np.float64)
    m = np.asarray(moved, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    radius = float(np.linalg.norm(m, axis=1).mean())
    ref = triangle_orientation(b, f) if base_sides is None else checked_sides(base_sides, len(f), "base_sides")
    bad = np.flatnonzero((triangle_orientation(m, f) != ref) & (ref != 0))  # a degenerate base triangle has no side
    if bad.size == 0:
        return m, 0
    m = m.copy()
    b_unit = unit(b)
    incidence = _Incidence(f, len(m))
    reseats = 0
    for it in range(1, max_iterations + 1):
        idx = np.empty(0, dtype=np.int64)
        if reseats < _RESEAT_ROUNDS:
            reseats += 1
            idx, pos = _reseat(b, m, f[bad], ref[bad], radius)
            m[idx] = pos
        if idx.size == 0:
            reseats = 0
            idx = _smooth_near(m, b_unit, f, bad, radius)
        check = np.union1d(incidence.around(np.unique(idx)), bad)
        sides = triangle_orientation(m, f[check])  # the fold test's own (centre: the mean of all vertices)
        bad = check[(sides != ref[check]) & (ref[check] != 0)]
        if bad.size == 0:
            return m, it
    return m, max_iterations


def _smooth_near(m: np.ndarray, b_unit: np.ndarray, f: np.ndarray, bad: np.ndarray, radius: float) -> np.ndarray:
    """One smoothing step of the displacement at the corners of ``bad`` and two rings around
    them, in place on ``m``; returns the indices of the vertices moved."""
    near = np.zeros(len(m), dtype=bool)
    near[f[bad].ravel()] = True
    for _ in range(2):  # two rings around the folds
        near[f[near[f].any(axis=1)].ravel()] = True
    local = f[near[f].any(axis=1)]  # every triangle touching the region
    d = unit(m) - b_unit
    total = np.zeros_like(d)
    count = np.zeros(len(d))
    for i in range(3):  # each corner gets its triangle's two other corners
        a, c1, c2 = local[:, i], local[:, (i + 1) % 3], local[:, (i + 2) % 3]
        np.add.at(total, a, d[c1] + d[c2])
        np.add.at(count, a, 2.0)
    idx = np.flatnonzero(near & (count > 0))
    d_new = d[idx] + 0.5 * (total[idx] / count[idx, None] - d[idx])
    m[idx] = unit(b_unit[idx] + d_new) * radius
    return idx

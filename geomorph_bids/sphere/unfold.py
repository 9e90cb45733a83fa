"""Remove folded triangles from a deformed spherical mesh of any topology (numpy).

A registered sphere is the subject's mesh moved through a warp. Where the warp is fold-free on
its own grid (the ico-6 warp is unfolded before it is applied), a small triangle of a much
finer subject mesh can still flip: its three corners are mapped by different linear pieces of
the warp. :func:`unfold_mesh` removes such folds by smoothing the displacement locally;
:func:`geomorph_bids.engine.warp_geometry.unfold_warp` uses it for warps on the icosphere.
"""

from __future__ import annotations

import numpy as np

from .distortion import _orientation
from .locate import unit

__all__ = ["unfold_mesh"]


def unfold_mesh(base: np.ndarray, moved: np.ndarray, faces: np.ndarray,
                max_iterations: int = 100) -> tuple[np.ndarray, int]:
    """Unfold ``moved`` relative to ``base`` by smoothing the displacement near the folds.

    Parameters
    ----------
    base : (V, 3) float, the reference positions (e.g. the rigidly aligned input sphere), on a
        sphere centred at the origin (any radius); its triangles' orientation is the one to keep.
    moved : (V, 3) float, the same vertices deformed (e.g. the registered sphere), same radius.
    faces : (F, 3) int, the mesh's triangles.
    max_iterations : at most this many smoothing steps.

    Returns
    -------
    (V, 3) float64 on ``moved``'s mean radius, and the number of steps used (0: nothing was
    folded; ``max_iterations``: folds may remain). While a triangle is folded (its orientation,
    :func:`geomorph_bids.sphere.distortion.folded_triangles`, differs from ``base``'s; triangles
    degenerate in ``base`` have none and are left alone), the
    displacement ``moved - base`` at the corners of the folded triangles and two rings around
    them moves half-way to the mean over their triangles' other corners; vertices away from
    folds never move. Cost: one orientation test of the whole mesh per step.
    """
    b = np.asarray(base, dtype=np.float64)
    m = np.asarray(moved, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    radius = float(np.linalg.norm(m, axis=1).mean())
    ref = _orientation(b, f)
    b_unit = unit(b)
    for it in range(max_iterations + 1):
        bad = np.flatnonzero((_orientation(m, f) != ref) & (ref != 0))  # a degenerate base triangle has no side
        if bad.size == 0:
            return m, it
        if it == max_iterations:
            break
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
        m = m.copy()
        m[idx] = unit(b_unit[idx] + d_new) * radius
    return m, max_iterations

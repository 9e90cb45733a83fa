"""Teacher warps (engine.teachers): the optimiser's registration of a source to the template."""

from __future__ import annotations

import numpy as np
import pytest

from geomorph_bids.engine.teachers import teacher_warp
from geomorph_bids.sphere.icosphere import icosphere
from geomorph_bids.sphere.resample import barycentric_weights


def _smooth_map(points: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((16, 3)) * rng.uniform(2, 5, (16, 1))
    return np.cos(points @ w.T + rng.uniform(0, 6.28, 16)) @ rng.standard_normal(16)


def test_teacher_recovers_a_known_rotation():
    v, f = icosphere(6)
    grid = v / np.linalg.norm(v, axis=1, keepdims=True)
    t = np.radians(2.0)
    q = np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])
    fixed = _smooth_map(grid)
    source = _smooth_map(grid @ q)                      # source(y) = fixed(Q^T y): psi(x) = Q x
    warp = teacher_warp(source[:, None], fixed[:, None], ("sulc",))
    assert warp.shape == (len(grid), 3) and warp.dtype == np.float32
    assert np.allclose(np.linalg.norm(warp, axis=1), 1.0, atol=1e-5)
    err = np.degrees(np.arccos(np.clip((warp * (grid @ q.T)).sum(1), -1, 1)))
    moved = np.degrees(np.arccos(np.clip((warp * grid).sum(1), -1, 1)))
    assert np.median(err) < 0.5 and np.median(moved) > 1.0        # it moved, and to the answer
    back = barycentric_weights((v, f), warp * 100.0) @ source     # source(psi(x)) ~ fixed(x)
    assert np.corrcoef(back, fixed)[0, 1] > 0.99


def test_teacher_refuses_mismatched_maps():
    with pytest.raises(ValueError, match=r"\(V, 1\)"):
        teacher_warp(np.ones((10, 1)), np.ones((12, 1)), ("sulc",))

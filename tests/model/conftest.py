"""Shared fixtures for the model tests: smooth random maps and rotated pairs on icospheres."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geomorph_bids.sphere.icosphere import icosphere
from geomorph_bids.sphere.rotation import rotation_matrix


def _plane_waves(points: np.ndarray, seed: int = 0, n: int = 24, lo: float = 4.0, hi: float = 8.0
                 ) -> np.ndarray:
    """Smooth random field sum_k a_k cos(w_k . x + phi_k), |w_k| in [lo, hi], at (N, 3) points."""
    rng = np.random.default_rng(seed)
    x = points / np.linalg.norm(points, axis=1, keepdims=True)
    w = rng.standard_normal((n, 3))
    w *= (np.exp(rng.uniform(np.log(lo), np.log(hi), n)) / np.linalg.norm(w, axis=1))[:, None]
    a = rng.standard_normal(n)
    phase = rng.uniform(0.0, 2.0 * np.pi, n)
    return np.cos(x @ w.T + phase) @ a


def _rotated_pair(level: int = 4, deg: float = 8.0):
    """fixed: smooth map on ico-`level`; moving = fixed under rotation R (moving(R y) = fixed(y)).

    Returns (moving (1, V, 1) float32, fixed (1, V, 1) float32, R (3, 3)), both z-scored with
    the fixed map's statistics.
    """
    v = icosphere(level)[0]
    R = rotation_matrix(np.array([1.0, 2.0, 0.5]), deg)
    f = _plane_waves(v)
    mu, sd = f.mean(), f.std()
    fixed = torch.tensor((f - mu) / sd, dtype=torch.float32)[None, :, None]
    moving = torch.tensor((_plane_waves(v @ R) - mu) / sd, dtype=torch.float32)[None, :, None]
    return moving, fixed, R


@pytest.fixture(scope="session")
def plane_waves():
    """Callable (points (N, 3), seed=0, n=24, lo=4, hi=8) -> (N,) smooth random map."""
    return _plane_waves


@pytest.fixture(scope="session")
def rotated_pair():
    """Callable (level=4, deg=8) -> (moving, fixed, R): a pair related by a known rotation."""
    return _rotated_pair

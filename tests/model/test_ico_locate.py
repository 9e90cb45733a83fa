"""Icosphere point location by hierarchy descent (model.ico_locate) vs the k-d tree locator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geomorph_bids.model.ico_locate import IcoLocator, ico_locator
from geomorph_bids.model.warp import SphereSampler, ico_sampler
from geomorph_bids.sphere.icosphere import icosphere
from geomorph_bids.sphere.locate import SphereLocator


def _weights(level: int, face: np.ndarray, points: np.ndarray) -> np.ndarray:
    v, f = icosphere(level)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    p = points / np.linalg.norm(points, axis=1, keepdims=True)
    a, b, c = v[f[face, 0]], v[f[face, 1]], v[f[face, 2]]
    raw = np.stack([np.einsum("ij,ij->i", np.cross(b, c), p), np.einsum("ij,ij->i", np.cross(c, a), p),
                    np.einsum("ij,ij->i", np.cross(a, b), p)], axis=1)
    return raw / raw.sum(1, keepdims=True)


@pytest.mark.parametrize("level", [0, 2, 5])
def test_descent_finds_the_containing_face(level):
    pts = np.random.default_rng(level).standard_normal((20000, 3)) * 37.0
    v, f = icosphere(level)
    ref, _ = SphereLocator(v, f).locate(pts)
    got64 = IcoLocator(level).locate(torch.from_numpy(pts)).numpy()
    got32 = IcoLocator(level).locate(torch.from_numpy(pts).float()).numpy()
    assert _weights(level, got64, pts).min() > -1e-12
    assert _weights(level, got32, pts).min() > -1e-5
    assert (got64 == ref).mean() > 0.9999  # random points: ties are measure-zero
    assert (got32 == ref).mean() > 0.999


def test_vertices_and_edge_midpoints_get_a_face_that_holds_them():
    level = 4
    v, f = icosphere(level)
    pts = np.concatenate([v, v[f[:, 0]] + v[f[:, 1]]])
    got = ico_locator(level).locate(torch.from_numpy(pts).float()).numpy()
    assert got.shape == (len(pts),)
    assert _weights(level, got, pts).min() > -1e-5


def test_batch_shape_is_kept():
    pts = torch.randn(3, 7, 3)
    assert ico_locator(3).locate(pts).shape == (3, 7)


def test_cpu_sampling_still_uses_the_kd_tree():
    # the icosphere sampler's CPU path is unchanged (bit-identical results on CPU)
    s = ico_sampler(3)
    assert s.ico_level == 3
    plain = SphereSampler(*icosphere(3))
    pts = torch.randn(2, 500, 3, dtype=torch.float64)
    vals = torch.randn(2, len(icosphere(3)[0]), 2, dtype=torch.float64)
    assert torch.equal(s(vals, pts), plain(vals, pts))


@pytest.mark.cuda
def test_cuda_sampling_matches_cpu():
    level = 6
    pts = torch.randn(4, 30000, 3, dtype=torch.float32)
    vals = torch.randn(4, len(icosphere(level)[0]), 3)
    s = ico_sampler(level)
    cpu = s(vals, pts)
    gpu = s(vals.cuda(), pts.cuda()).cpu()
    assert torch.allclose(cpu, gpu, atol=1e-4)

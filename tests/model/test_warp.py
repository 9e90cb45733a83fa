"""Dense warp upsampling, differentiable barycentric sampling and the pull-back transformer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geomorph_bids.model.warp import (SphereSampler, Transformer, ico_sampler, sample_on_sphere,
                                      upsample_displacement)
from geomorph_bids.sphere.icosphere import icosphere, n_vertices
from geomorph_bids.sphere.resample import barycentric_weights
from geomorph_bids.sphere.rotation import random_rotation, rotation_matrix


def _unit(level: int, dtype=torch.float64) -> torch.Tensor:
    v = icosphere(level)[0]
    return torch.tensor(v / np.linalg.norm(v, axis=1, keepdims=True), dtype=dtype)


def _angle_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    return torch.rad2deg(torch.atan2(torch.linalg.cross(a, b).norm(dim=-1), (a * b).sum(-1)))


@pytest.mark.parametrize("control, target", [(2, 4), (3, 6), (4, 4)])
def test_identity_control_points_give_identity_warp(control, target):
    ctrl = _unit(control, torch.float32)[None].repeat(2, 1, 1)
    out = upsample_displacement(ctrl, control, target)
    assert out.shape == (2, n_vertices(target), 3)
    assert (out - _unit(target, torch.float32)).abs().max() < 1e-6


def test_rotation_of_control_points_rotates_dense_warp():
    R = torch.tensor(rotation_matrix([0.3, -0.5, 0.8], 12.0), dtype=torch.float32)
    ctrl = (_unit(2, torch.float32) @ R.T)[None]
    out = upsample_displacement(ctrl, 2, 6)
    expected = _unit(6, torch.float32) @ R.T
    assert _angle_deg(out[0].double(), expected.double()).max() < 0.5
    assert _angle_deg(out[0].double(), expected.double()).max() < 1e-3  # in fact exact to rounding


def test_upsampled_vertex_is_normalised_parent_mean():
    torch.manual_seed(0)
    ctrl = _unit(1)[None] + 0.05 * torch.randn(1, 42, 3, dtype=torch.float64)
    out = upsample_displacement(ctrl, 1, 2)
    from geomorph_bids.sphere.icosphere import upsample_parents
    p = torch.from_numpy(np.array(upsample_parents(2)))
    c = ctrl / ctrl.norm(dim=-1, keepdim=True)
    mid = c[:, p[:, 0]] + c[:, p[:, 1]]
    torch.testing.assert_close(out[:, 42:], mid / mid.norm(dim=-1, keepdim=True))
    torch.testing.assert_close(out[:, :42], c)


def _random_points(n: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(1, n, 3, generator=g, dtype=dtype)
    return 100.0 * p / p.norm(dim=-1, keepdim=True)


def test_sample_reproduces_linear_function_on_triangle_planes():
    verts, faces = icosphere(3)
    a = np.array([0.3, -1.2, 0.7])
    values = torch.tensor(np.stack([verts @ a, np.ones(len(verts))], 1))[None]  # (1, V, 2)
    pts = _random_points(500, 0)
    out = sample_on_sphere(values, verts, faces, pts)
    # barycentric interpolation of a linear function gives its value at the gnomonic
    # projection q of p onto the containing triangle's plane
    sampler = SphereSampler(verts, faces)
    face = sampler.locate(pts)[0].numpy()
    p = pts[0].numpy()
    v0 = verts[faces[face, 0]]
    n = np.cross(verts[faces[face, 1]] - v0, verts[faces[face, 2]] - v0)
    q = p * ((n * v0).sum(1) / (n * p).sum(1))[:, None]
    np.testing.assert_allclose(out[0, :, 0].numpy(), q @ a, atol=1e-9)
    np.testing.assert_allclose(out[0, :, 1].numpy(), 1.0, atol=1e-12)


def test_sample_matches_engine_barycentric():
    verts, faces = icosphere(4)
    rng = np.random.default_rng(1)
    values = rng.normal(size=(len(verts), 3))
    pts = _random_points(2000, 1)
    ref = barycentric_weights((verts, faces), pts[0].numpy()) @ values
    out = sample_on_sphere(torch.tensor(values)[None], verts, faces, pts)
    np.testing.assert_allclose(out[0].numpy(), ref, atol=1e-5)
    # and at the mesh's own vertices it returns the values exactly (float32 too)
    vv = torch.tensor(verts, dtype=torch.float32)[None]
    out32 = sample_on_sphere(torch.tensor(values, dtype=torch.float32)[None], verts, faces, vv)
    np.testing.assert_allclose(out32[0].numpy(), values, atol=1e-5)


def test_sample_gradient_matches_finite_differences():
    verts, faces = icosphere(3)
    rng = np.random.default_rng(2)
    values = torch.tensor(rng.normal(size=(1, len(verts), 2)))
    sampler = SphereSampler(verts, faces)
    pts = _random_points(50, 2) / 100.0
    pts.requires_grad_(True)
    out = sampler(values, pts)
    coef = torch.tensor([1.0, -0.5], dtype=torch.float64)
    (out * coef).sum().backward()
    grad = pts.grad.clone()
    assert torch.isfinite(grad).all() and grad.abs().max() > 0
    # central differences with the triangles held fixed (interior points: same triangle)
    face = sampler.locate(pts.detach())
    h = 1e-6
    fd = torch.zeros_like(grad)
    for d in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[d] = h
        def f(p):
            corners, w = sampler.weights(p, face)
            g = torch.gather(values, 1, corners.reshape(1, -1, 1).expand(-1, -1, 2)).reshape(1, -1, 3, 2)
            return ((g * w.unsqueeze(-1)).sum(2) * coef).sum(-1)
        fd[..., d] = (f(pts.detach() + e) - f(pts.detach() - e)) / (2 * h)
    torch.testing.assert_close(grad, fd, atol=1e-6, rtol=1e-6)
    # and the located triangle is the same for the shifted points (the FD is the true derivative)
    assert torch.equal(sampler.locate(pts.detach() + 1e-6), face)


def test_transformer_pull_back_with_known_rotation():
    # moving = fixed rotated by R: moving(R y) = fixed(y). Correct warp: warp[x] = R x,
    # control points R c_i; then warped(x) = moving(R x) = fixed(x).
    level = 4
    x = _unit(level)
    R = torch.tensor(random_rotation(np.random.default_rng(3), 20.0))
    fixed_fn = lambda p: torch.stack([p[:, 0] * p[:, 1] + p[:, 2], torch.sin(2 * p[:, 0])], 1)
    moving = fixed_fn(x @ R)            # moving(v) = fixed(R^T v)
    fixed = fixed_fn(x)
    tr = Transformer(control_level=2, data_level=level)
    ctrl = (_unit(2) @ R.T)[None]
    warped, warp = tr(moving[None], ctrl)
    assert warp.shape == (1, n_vertices(level), 3) and warped.shape == (1, n_vertices(level), 2)
    assert _angle_deg(warp[0], x @ R.T).max() < 1e-6
    err = (warped[0] - fixed).abs().max()
    ident_err = (moving - fixed).abs().max()
    assert err < 0.02 < ident_err  # interpolation error at ico-4 (edges ~0.075 rad)
    # the opposite convention (push-forward, warp R^T x) would be far off
    warped_wrong, _ = tr(moving[None], (_unit(2) @ R)[None])
    assert (warped_wrong[0] - fixed).abs().max() > 10 * err


def test_transformer_identity_and_gradients():
    torch.manual_seed(5)
    tr = Transformer(control_level=2, data_level=3)
    moving = torch.randn(2, n_vertices(3), 3)
    ctrl = _unit(2, torch.float32)[None].repeat(2, 1, 1)
    warped, warp = tr(moving, ctrl)
    torch.testing.assert_close(warped, moving, atol=1e-5, rtol=0)
    ctrl = (ctrl + 0.01 * torch.randn_like(ctrl)).requires_grad_(True)
    warped, warp = tr(moving, ctrl)
    warped.square().sum().backward()
    assert torch.isfinite(ctrl.grad).all() and ctrl.grad.abs().sum() > 0
    assert ico_sampler(3) is ico_sampler(3)


def test_batch_elements_are_independent():
    torch.manual_seed(6)
    tr = Transformer(control_level=1, data_level=3)
    moving = torch.randn(2, n_vertices(3), 2, dtype=torch.float64)
    R = torch.tensor(rotation_matrix([0.0, 1.0, 0.0], 15.0))
    ctrl = torch.stack([_unit(1), _unit(1) @ R.T])
    warped, warp = tr(moving, ctrl)
    for b in range(2):
        w1, p1 = tr(moving[b:b + 1], ctrl[b:b + 1])
        torch.testing.assert_close(warped[b:b + 1], w1, atol=1e-12, rtol=0)
        torch.testing.assert_close(warp[b:b + 1], p1, atol=1e-12, rtol=0)
    assert (warped[1] - moving[1]).abs().max() > 0.1


def test_face_tables_and_barycentric_equal_weights():
    """Gathering a face's corners and normals once and evaluating the weights later gives the same
    bits as weights(); sampling with known faces equals sampling that locates them; a hinted look-up
    (which may walk) finds the same faces."""
    sampler = ico_sampler(3)
    pts = _random_points(500, 3).float()
    face = sampler.locate(pts)
    corners, w = sampler.weights(pts, face)
    c2, normals = sampler.face_tables(face, pts.dtype)
    assert torch.equal(c2, corners) and normals.shape == (1, 500, 3, 3)
    assert torch.equal(sampler.barycentric(normals, pts), w)
    values = torch.randn(1, n_vertices(3), 2)
    assert torch.equal(sampler(values, pts, face), sampler(values, pts))
    moved = pts + 0.05 * torch.randn_like(pts)
    assert torch.equal(sampler.locate(moved, hint=face), sampler.locate(moved))


def test_points_at_their_own_vertices_located_from_them():
    """A control grid's points start at the data icosphere's first vertices: screening each one's
    own fan (``near``) gives the faces the k-d tree search gives, ties at the vertex included."""
    from geomorph_bids.model.labels import normalise

    sampler = ico_sampler(4)
    grid = upsample_displacement(normalise(_unit(2, torch.float32)[None]), 2, 3)
    near = torch.arange(grid.shape[1])[None]
    assert torch.equal(sampler.locate(grid, near=near), sampler.locate(grid))


@pytest.mark.parametrize("batch", [1, 3])
def test_select_rows_gives_advanced_indexings_values_and_gradients_bit_for_bit(batch):
    """The optimiser's gathers (upsampling, control-triangle areas) use select_rows for speed; the
    registration's bits must not change: values and gradients equal to x[:, index], also with
    repeated indices (a vertex that is the parent of several), for one pair and for a batch."""
    from geomorph_bids.model.warp import select_rows

    g = torch.Generator().manual_seed(4)
    x0 = torch.randn(batch, 50, 3, generator=g)
    index = torch.randint(0, 50, (200,), generator=g)
    weights = torch.randn(batch, 200, 3, generator=g)
    grads = []
    for gather in (lambda x: x[:, index], lambda x: select_rows(x, index)):
        x = x0.clone().requires_grad_(True)
        y = gather(x)
        (y * weights).sum().backward()
        grads.append((y.detach(), x.grad))
    assert grads[0][0].shape == (batch, 200, 3)
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])

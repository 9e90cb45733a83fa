"""Similarity and smoothness losses, metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geomorph_bids.model.geoconv import hex_laplacian
from geomorph_bids.model.losses import (cc_per_channel, pearson, pearson_to, similarity_loss,
                                        smoothness_loss, total_loss, warp_distortion)
from geomorph_bids.sphere.icosphere import hex_neighbourhood, icosphere, n_vertices
from geomorph_bids.sphere.rotation import rotation_matrix


def _unit(level: int) -> torch.Tensor:
    v = icosphere(level)[0]
    return torch.tensor(v / np.linalg.norm(v, axis=1, keepdims=True))


def test_similarity_zero_for_identical_and_affine_copy():
    torch.manual_seed(0)
    fixed = torch.randn(2, 642, 3, dtype=torch.float64)
    assert abs(float(similarity_loss(fixed, fixed))) < 1e-12
    # positive affine copy: CC = 1, so the loss is the MSE alone
    warped = 2.0 * fixed + 0.5
    loss, parts = similarity_loss(warped, fixed, return_parts=True)
    assert abs(float(parts["cc"][0]) - 1.0) < 1e-12
    assert abs(float(loss) - float(((warped - fixed) ** 2).mean())) < 1e-12
    # negative copy: CC = -1 -> CC term 2
    _, parts = similarity_loss(-fixed, fixed, return_parts=True)
    assert abs(float(parts["cc"][0]) + 1.0) < 1e-12


def test_similarity_hand_example_groups_weights_mask():
    # one sample, 4 vertices, 2 channels in two groups; the fixed 0 is masked out
    fixed = torch.tensor([[[1.0, 1.0], [2.0, 0.0], [3.0, 2.0], [0.0, 3.0]]], dtype=torch.float64)
    warped = torch.tensor([[[1.0, 2.0], [3.0, 9.0], [2.0, 2.0], [7.0, 5.0]]], dtype=torch.float64)
    loss, parts = similarity_loss(warped, fixed, groups=[[0], [1]], weights=[1.0, 0.5],
                                  return_parts=True)
    # group 0: entries (1,1), (2,3), (3,2): MSE = (0 + 1 + 1) / 3; CC of x=[1,2,3], y=[1,3,2] = 0.5
    # group 1: entries (1,2), (2,2), (3,5): MSE = (1 + 0 + 4) / 3; CC of [1,2,3] vs [2,2,5] = 0.8660254
    np.testing.assert_allclose(parts["mse"].numpy(), [2 / 3, 5 / 3], atol=1e-12)
    np.testing.assert_allclose(parts["cc"].numpy(), [0.5, np.sqrt(3) / 2], atol=1e-9)
    expected = (2 / 3 + 0.5) + 0.5 * (5 / 3 + 1 - np.sqrt(3) / 2)
    assert abs(float(loss) - expected) < 1e-9
    # unmasked: all 4 entries of group 0
    loss0 = similarity_loss(warped[..., :1], fixed[..., :1], mask_zeros=False)
    x, y = fixed[0, :, 0].numpy(), warped[0, :, 0].numpy()
    assert abs(float(loss0) - (np.mean((x - y) ** 2) + 1 - np.corrcoef(x, y)[0, 1])) < 1e-9
    with pytest.raises(ValueError):
        similarity_loss(warped, fixed, groups=[[0, 2]])
    with pytest.raises(ValueError):
        similarity_loss(warped, fixed, groups=[[0], [1]], weights=[1.0])


def test_pearson_and_cc_per_channel():
    torch.manual_seed(1)
    a = torch.randn(3, 100, 2, dtype=torch.float64)
    b = a + 0.5 * torch.randn_like(a)
    cc = cc_per_channel(b, a, mask_zeros=False)
    for i in range(3):
        for c in range(2):
            ref = np.corrcoef(a[i, :, c].numpy(), b[i, :, c].numpy())[0, 1]
            assert abs(float(cc[i, c]) - ref) < 1e-9
    assert torch.all(pearson(a, torch.ones_like(a)) == 0)  # constant input -> 0, no NaN


def test_smoothness_zero_for_identity_and_constant_displacement():
    x = _unit(3)[None]
    assert float(smoothness_loss(x, 3)) < 1e-15
    shifted = x + torch.tensor([0.01, -0.02, 0.03], dtype=torch.float64)
    assert float(smoothness_loss(shifted, 3)) < 1e-15
    # radius: identity on the radius-100 sphere
    assert float(smoothness_loss(100.0 * x, 3, radius=100.0)) < 1e-12


def test_smoothness_rotation_and_hand_value():
    level = 2
    x = _unit(level)[None]
    R = torch.tensor(rotation_matrix([0.0, 0.0, 1.0], 10.0))
    # u = (R - I) x is linear: lap(u) = (R - I) lap(x), small but not zero
    lap_x = hex_laplacian(x, level)
    expected = (lap_x @ (R - torch.eye(3, dtype=torch.float64)).T).abs().mean()
    got = smoothness_loss(x @ R.T, level)
    assert abs(float(got) - float(expected)) < 1e-14
    assert 1e-4 < float(got) < 1e-2
    # hand example: displace only vertex 20 (degree 6) by d: its Laplacian is d, each of its
    # 6 neighbours gets -d/6 (neighbours of degree 5 would get -d/5)
    index, mask = hex_neighbourhood(level)
    v = 20
    assert mask[v].all()
    nbrs = index[v, 1:]
    deg = mask[nbrs].sum(1) - 1
    d = torch.tensor([0.0, 0.0, 0.06], dtype=torch.float64)
    warp = x.clone()
    warp[0, v] += d
    expected = (0.06 + 0.06 * np.sum(1.0 / deg)) / (n_vertices(level) * 3)
    assert abs(float(smoothness_loss(warp, level)) - expected) < 1e-14


def test_total_loss_and_gradients():
    torch.manual_seed(2)
    fixed = torch.randn(1, 162, 2)
    warped = (fixed + 0.1 * torch.randn_like(fixed)).requires_grad_(True)
    warp = (_unit(2).float()[None] + 0.01 * torch.randn(1, 162, 3)).requires_grad_(True)
    loss, parts = total_loss(warped, fixed, warp, level=2, lam=0.5)
    assert abs(loss.item() - float(parts["similarity"] + 0.5 * parts["smoothness"])) < 1e-6
    loss.backward()
    assert torch.isfinite(warped.grad).all() and torch.isfinite(warp.grad).all()
    assert warp.grad.abs().sum() > 0


def test_warp_distortion_identity_and_fold():
    x = _unit(3)
    d = warp_distortion(x[None].repeat(2, 1, 1))
    assert len(d) == 2
    assert d[0]["n_folded"] == 0 and d[0]["areal_mean_abs"] < 1e-9
    # a rotation is distortion-free; pushing one vertex far across its ring folds triangles
    R = torch.tensor(rotation_matrix([1.0, 2.0, 3.0], 30.0))
    assert warp_distortion(x @ R.T)[0]["areal_max_abs"] < 1e-9
    folded = x.clone()
    folded[100] = x[hex_neighbourhood(3)[0][100, 1]] * 2 - x[100]  # reflect over a neighbour
    s = warp_distortion(folded)[0]
    assert s["n_folded"] >= 1
    raw = warp_distortion(folded, summary=False)[0]
    assert set(raw) >= {"areal", "folded"} and len(raw["areal"]) == n_vertices(3)


def test_fold_penalty_is_zero_for_the_identity_and_counts_folds():
    from geomorph_bids.model.losses import fold_penalty

    v, _ = icosphere(3)
    x = torch.tensor(v / np.linalg.norm(v, axis=1, keepdims=True))[None]
    assert float(fold_penalty(x, 3)) == 0.0
    assert float(fold_penalty(x * 100.0, 3)) == 0.0                      # any radius
    mirrored = x * torch.tensor([-1.0, 1.0, 1.0], dtype=x.dtype)         # every triangle inside out
    assert float(fold_penalty(mirrored, 3)) == pytest.approx(1.2)        # relu(0.2 - (-1))
    squashed = (x * torch.tensor([1.0, 1.0, 0.05], dtype=x.dtype)).requires_grad_()
    p = fold_penalty(squashed, 3)
    assert float(p) > 0.05
    p.backward()
    assert float(squashed.grad.abs().sum()) > 0


def test_total_loss_adds_the_fold_barrier_only_when_weighted():
    from geomorph_bids.model.losses import total_loss

    v, _ = icosphere(2)
    x = torch.tensor(v / np.linalg.norm(v, axis=1, keepdims=True), dtype=torch.float32)[None]
    folded = x * torch.tensor([-1.0, 1.0, 1.0])
    feats = torch.randn(1, len(v), 1, generator=torch.Generator().manual_seed(0))
    base, parts = total_loss(feats, feats, folded, level=2, lam=0.0)
    with_fold, parts_f = total_loss(feats, feats, folded, level=2, lam=0.0, fold=10.0)
    assert float(parts["folding"]) == 0.0
    assert float(with_fold - base) == pytest.approx(12.0, rel=1e-5)
    assert float(parts_f["folding"]) == pytest.approx(1.2, rel=1e-5)


def test_pearson_to_a_fixed_side_equals_pearson_bit_for_bit():
    """The fixed side computed once gives pearson's values and gradients exactly, for every a."""
    g = torch.Generator().manual_seed(3)
    b = torch.randn(2, 500, generator=g)
    mask = torch.rand(2, 500, generator=g) > 0.2
    correlation = pearson_to(b, mask)
    for _ in range(3):
        a1 = torch.randn(2, 500, generator=g, requires_grad=True)
        a2 = a1.detach().clone().requires_grad_(True)
        got, want = correlation(a1), pearson(a2, b, mask)
        assert torch.equal(got, want)
        got.sum().backward()
        want.sum().backward()
        assert torch.equal(a1.grad, a2.grad)

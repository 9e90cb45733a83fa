"""Sparse CRF-RNN: distributions, identity at 0 iterations, sparse message == dense reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geomorph_bids.model.crf import CRFRNN, _reverse_slots, crf_message, neighbour_sum, ring_neighbourhood
from geomorph_bids.model.labels import LabelGrid, deform_from_logits
from geomorph_bids.sphere.icosphere import hex_neighbourhood, n_vertices


def _dense_rings(level: int, k: int) -> np.ndarray:
    """(V, V) graph distance in rings (dense BFS, reference only), -1 beyond k."""
    index, mask = hex_neighbourhood(level)
    V = n_vertices(level)
    adj = np.zeros((V, V), dtype=bool)
    for s in range(1, 7):
        adj[np.arange(V)[mask[:, s]], index[mask[:, s], s]] = True
    dist = np.full((V, V), -1)
    np.fill_diagonal(dist, 0)
    reach = np.eye(V, dtype=bool)
    for r in range(1, k + 1):
        new = (reach.astype(int) @ adj.astype(int) > 0) & ~reach
        dist[new] = r
        reach |= new
    return dist


@pytest.mark.parametrize("level, k", [(1, 1), (2, 2), (2, 3)])
def test_ring_table_matches_dense_bfs(level, k):
    index, mask, ring = ring_neighbourhood(level, k)
    dist = _dense_rings(level, k)
    V = n_vertices(level)
    for i in (0, 5, 11, 12, V - 1):  # degree-5 and degree-6 vertices
        expected = np.flatnonzero(dist[i] > 0)
        got = index[i][mask[i]]
        assert sorted(got) == sorted(expected)
        np.testing.assert_array_equal(ring[i][mask[i]], dist[i, got])
    assert np.all(index[~mask] == np.broadcast_to(np.arange(V)[:, None], index.shape)[~mask])
    assert mask.sum() == (dist > 0).sum()


def test_sparse_message_equals_dense_reference():
    torch.manual_seed(0)
    level, L, k = 2, 20, 2
    grid = LabelGrid(level, 3, L, dtype=torch.float64)
    index, mask, ring = (torch.from_numpy(a.copy()) for a in ring_neighbourhood(level, k))
    logits = 3.0 * torch.randn(2, n_vertices(level), L, dtype=torch.float64)
    q = torch.softmax(logits, -1)
    points = deform_from_logits(logits, grid)
    ring_w = torch.tensor([1.5, 0.7], dtype=torch.float64)
    compat = torch.rand(L, L, dtype=torch.float64)
    gamma = 0.3
    msg = crf_message(q, points, index, mask, ring, ring_w, compat, gamma,
                      torch.from_numpy(_reverse_slots(level, k).copy()))
    # dense reference
    dist = torch.from_numpy(_dense_rings(level, k))
    w = torch.where(dist > 0, ring_w[(dist - 1).clamp_min(0)], torch.zeros((), dtype=torch.float64))
    sq = ((points[:, :, None] - points[:, None]) ** 2).sum(-1)
    kern = torch.exp(-sq / (2 * gamma ** 2)) * w
    ref = torch.einsum("bij,bjm,ml->bil", kern, q, compat)
    torch.testing.assert_close(msg, ref, atol=1e-10, rtol=1e-10)
    assert msg.abs().max() > 0.1  # the test is not vacuous


def test_reverse_slots():
    index, mask, _ = ring_neighbourhood(2, 2)
    rev = _reverse_slots(2, 2)
    j, t = np.nonzero(mask)
    np.testing.assert_array_equal(index[index[j, t], rev[j, t]], j)


@pytest.mark.parametrize("level, k", [(1, 1), (1, 2)])
def test_neighbour_sum_gradcheck(level, k):
    torch.manual_seed(1)
    index, mask, _ = (torch.from_numpy(a.copy()) for a in ring_neighbourhood(level, k))
    rev = torch.from_numpy(_reverse_slots(level, k).copy())
    V = n_vertices(level)
    q = torch.rand(2, V, 5, dtype=torch.float64, requires_grad=True)
    kern = (torch.rand(2, V, index.shape[1], dtype=torch.float64) * mask).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: neighbour_sum(a, b, index, rev, mask), (q, kern))
    # custom backward == autograd through the plain gather
    out = neighbour_sum(q, kern, index, rev, mask)
    ref = neighbour_sum(q, kern, index)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    torch.testing.assert_close(torch.autograd.grad(out, (q, kern), g),
                               torch.autograd.grad(ref, (q, kern), g))


def test_zero_iterations_is_softmax_and_outputs_are_distributions():
    torch.manual_seed(2)
    grid = LabelGrid(2, 3, 20)
    logits = torch.randn(2, 162, 20)
    crf0 = CRFRNN(grid, n_iter=0)
    torch.testing.assert_close(crf0(logits), torch.softmax(logits, -1))
    crf = CRFRNN(grid, n_iter=5, k_ring=2)
    q = crf(logits)
    assert q.shape == (2, 162, 20)
    assert torch.all(q >= 0)
    torch.testing.assert_close(q.sum(-1), torch.ones(2, 162), atol=1e-5, rtol=0)
    assert (q - torch.softmax(logits, -1)).abs().max() > 1e-3  # the CRF changed something


def test_one_iteration_by_hand():
    torch.manual_seed(3)
    grid = LabelGrid(2, 3, 10, dtype=torch.float64)
    crf = CRFRNN(grid, n_iter=1, k_ring=1, gamma=0.2).double()
    with torch.no_grad():
        crf.compat.copy_(torch.rand(10, 10))
        crf.ring_weights.fill_(2.0)
    logits = torch.randn(1, 162, 10, dtype=torch.float64)
    q0 = torch.softmax(logits, -1)
    pts = deform_from_logits(torch.log(q0), grid)
    index, mask = crf.index, crf.mask
    kern = 2.0 * torch.exp(-((pts[:, :, None] - pts[:, index]) ** 2).sum(-1) / (2 * 0.2 ** 2)) * mask
    msg = torch.einsum("bis,bisl->bil", kern, q0[:, index]) @ crf.compat
    torch.testing.assert_close(crf(logits), torch.softmax(torch.log(q0) - msg, -1), atol=1e-12, rtol=0)


def test_potts_prior_pulls_towards_neighbours():
    # all neighbours sure of label 3, one control point undecided between 3 and 7
    grid = LabelGrid(2, 3, 10)
    logits = torch.full((1, 162, 10), -10.0)
    logits[..., 3] = 10.0
    logits[0, 50, 3] = 0.0
    logits[0, 50, 7] = 0.0
    # at ico-2 control points are ~0.3 apart on the unit sphere: widen the kernel
    q = CRFRNN(grid, n_iter=5, k_ring=1, gamma=0.5)(logits)
    assert q[0, 50, 3] > 0.99
    assert abs(float(torch.softmax(logits, -1)[0, 50, 3]) - 0.5) < 1e-4


def test_gradients_reach_parameters():
    torch.manual_seed(4)
    grid = LabelGrid(2, 3, 20)
    crf = CRFRNN(grid, n_iter=3, k_ring=2)
    logits = torch.randn(2, 162, 20, requires_grad=True)
    out = deform_from_logits(torch.log(crf(logits)), grid)
    (out * torch.randn_like(out)).sum().backward()
    for t in (crf.compat.grad, crf.ring_weights.grad, logits.grad):
        assert t is not None and torch.isfinite(t).all() and t.abs().sum() > 0
    assert set(crf.state_dict()) == {"compat", "ring_weights"}


def test_gather_rows_is_advanced_indexing():
    from geomorph_bids.model.crf import gather_rows

    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 50, 7, generator=g)
    index = torch.randint(0, 50, (12, 5), generator=g)
    assert torch.equal(gather_rows(q, index), q[:, index])

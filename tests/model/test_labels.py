"""Label grids and deformed control points (small grids: control ico-2/3, labels ico-3/4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geomorph_bids.model.labels import LabelGrid, deform_control_points, deform_from_logits, label_table
from geomorph_bids.sphere.icosphere import icosphere, n_vertices


@pytest.mark.parametrize("control, label, L", [(2, 3, 20), (2, 4, 50), (3, 4, 30), (3, 3, 7)])
def test_label_table_nearest_sorted(control, label, L):
    index, positions, angles = label_table(control, label, L)
    ncp = n_vertices(control)
    assert index.shape == (ncp, L) and positions.shape == (ncp, L, 3) and angles.shape == (ncp, L)
    # label 0 is the control point itself
    np.testing.assert_array_equal(index[:, 0], np.arange(ncp))
    assert np.all(angles[:, 0] == 0.0)
    # sorted by angle, unique per row, on the unit sphere
    assert np.all(np.diff(angles, axis=1) >= -1e-12)
    assert all(len(np.unique(r)) == L for r in index)
    np.testing.assert_allclose(np.linalg.norm(positions, axis=2), 1.0, atol=1e-12)
    # brute force: the kept labels are exactly the L nearest (up to ties at the boundary)
    v = icosphere(label)[0] / 100.0
    ang = np.arccos(np.clip(v[:ncp] @ v.T, -1, 1))
    kth = np.sort(ang, axis=1)[:, L - 1]
    np.testing.assert_allclose(angles[:, -1], kth, atol=1e-9)
    assert np.all(ang[np.arange(ncp)[:, None], index] <= kth[:, None] + 1e-9)
    # ties broken by vertex index: within equal angles, indices increase
    same = np.abs(np.diff(angles, axis=1)) < 1e-9
    assert np.all(np.diff(index, axis=1)[same] > 0)


def test_label_counts_first_ring():
    # control ico-2, labels ico-3: the 1-ring of a degree-6 vertex at label level has 6 vertices
    index, _, angles = label_table(2, 3, 7)
    deg5 = np.arange(12)
    ring = np.round(angles[:, 1:], 6)
    # degree-5 control points: 5 equal nearest, the 6th is farther
    assert np.all(ring[deg5, :5] == ring[deg5, :1])
    assert np.all(ring[deg5, 5] > ring[deg5, 0])


def test_label_grid_module_and_errors():
    grid = LabelGrid(2, 3, 20)
    assert grid.n_control == 162 and grid.positions.dtype == torch.float32
    assert grid.state_dict() == {}  # buffers rebuilt from the levels, not saved
    torch.testing.assert_close(grid.control, grid.positions[:, 0])
    with pytest.raises(ValueError):
        LabelGrid(3, 2, 10)
    with pytest.raises(ValueError):
        LabelGrid(0, 0, 13)


def test_one_hot_gives_label_position():
    grid = LabelGrid(2, 3, 20, dtype=torch.float64)
    rng = np.random.default_rng(0)
    pick = torch.from_numpy(rng.integers(0, 20, size=(2, 162)))
    probs = torch.nn.functional.one_hot(pick, 20).to(torch.float64)
    out = deform_control_points(probs, grid)
    expected = grid.positions[torch.arange(162)[None], pick]
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=0)
    # identity label -> zero displacement
    ident = torch.nn.functional.one_hot(torch.zeros(1, 162, dtype=torch.long), 20).to(torch.float64)
    torch.testing.assert_close(deform_control_points(ident, grid), grid.control[None], atol=1e-10, rtol=0)
    # uniform over a single label is that label: a one-hot scaled by any constant
    torch.testing.assert_close(deform_control_points(0.3 * probs, grid), expected, atol=1e-10, rtol=0)


def test_l4_sharpens():
    grid = LabelGrid(2, 3, 20, dtype=torch.float64)
    probs = torch.zeros(1, 162, 20, dtype=torch.float64)
    probs[..., 0] = 0.6
    probs[..., 5] = 0.4
    p4 = deform_control_points(probs, grid, power=4.0)
    p1 = deform_control_points(probs, grid, power=1.0)
    ang = lambda a, b: torch.arccos((a * b).sum(-1).clamp(-1, 1))
    target = grid.positions[:, 0][None]
    # weights (0.6, 0.4) -> (0.6^4, 0.4^4) / sum = (0.835..., 0.164...): much closer to label 0
    w0 = 0.6 ** 4 / (0.6 ** 4 + 0.4 ** 4)
    assert abs(w0 - 0.8350515) < 1e-6
    assert torch.all(ang(p4, target) < ang(p1, target))
    expected = grid.positions[:, 0] * w0 + grid.positions[:, 5] * (1 - w0)
    expected = expected / expected.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(p4[0], expected, atol=1e-10, rtol=0)
    # logits path: softmax(4 z) == p^4 / sum p^4
    torch.testing.assert_close(deform_from_logits(torch.log(probs.clamp_min(1e-300)), grid), p4,
                               atol=1e-10, rtol=0)


def test_on_sphere_and_gradient():
    grid = LabelGrid(2, 3, 20)
    logits = torch.randn(2, 162, 20, requires_grad=True)
    out = deform_from_logits(logits, grid)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2, 162), atol=1e-6, rtol=0)
    out.sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0

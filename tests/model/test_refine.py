"""Tests of test-time refinement (gradient steps on the control points of one pair)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geomorph_bids.model.geomorph import GeoMorph, tiny_config
from geomorph_bids.model.losses import total_loss
from geomorph_bids.model.refine import refine
from geomorph_bids.sphere.icosphere import icosphere


def unit_ico(level: int) -> torch.Tensor:
    v = icosphere(level)[0]
    return torch.tensor(v / np.linalg.norm(v, axis=1, keepdims=True), dtype=torch.float32)


def angle_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.rad2deg(torch.atan2(torch.linalg.cross(a, b).norm(dim=-1), (a * b).sum(-1)))


def make_model(seed: int = 0, **kwargs) -> GeoMorph:
    torch.manual_seed(seed)
    return GeoMorph(tiny_config(**kwargs))


def favour_identity(model: GeoMorph) -> None:
    """Make label 0 (the control point itself) dominate every stage's logits."""
    with torch.no_grad():
        for stage in model.stages:
            stage.network.blocks[-1].conv2.bias[0] = 100.0


def loss_of(out, fixed) -> float:
    return total_loss(out.warped, fixed, out.warp, level=4)[0].item()


def test_refine_never_increases_the_loss_and_leaves_the_model_alone(rotated_pair):
    moving, fixed, _ = rotated_pair()
    model = make_model(seed=0, control_level=(2, 3), n_labels=20, label_level=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        initial = model(moving, fixed)
    history: list[float] = []
    out = refine(model, moving, fixed, steps=10, lr=5e-3, initial=initial, history=history)
    assert len(history) == 11
    assert history[0] == pytest.approx(loss_of(initial, fixed), rel=1e-6)
    assert loss_of(out, fixed) == pytest.approx(min(history), rel=1e-5)
    assert loss_of(out, fixed) < 0.9 * history[0]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in model.parameters())
    assert not out.warp.requires_grad
    assert [lg.shape for lg in out.logits] == [lg.shape for lg in initial.logits]
    assert torch.allclose(out.warp.norm(dim=-1), torch.ones(1, 2562), atol=1e-5)
    # only the last stage moved
    assert torch.equal(out.control_points[0], initial.control_points[0])
    assert not torch.equal(out.control_points[1], initial.control_points[1])


def test_refine_recovers_a_rotation_from_the_identity(rotated_pair):
    moving, fixed, R = rotated_pair()
    x = unit_ico(4)[None]
    truth = x @ torch.tensor(R.T, dtype=torch.float32)
    model = make_model(control_level=2, n_labels=30, label_level=4)
    favour_identity(model)
    history: list[float] = []
    out = refine(model, moving, fixed, steps=20, lr=1e-2, history=history)
    assert angle_deg(model(moving, fixed).warp, x).max().item() < 1e-3   # model: identity
    assert loss_of(out, fixed) < 0.2 * history[0]
    assert angle_deg(out.warp, truth).mean().item() < 0.4 * angle_deg(x, truth).mean().item()


def test_refine_all_stages_and_zero_steps(rotated_pair):
    moving, fixed, _ = rotated_pair()
    model = make_model(seed=1, control_level=(2, 3), n_labels=20, label_level=4)
    with torch.no_grad():
        initial = model(moving, fixed)
    same = refine(model, moving, fixed, steps=0, initial=initial)
    assert torch.equal(same.warp, initial.warp) and torch.equal(same.warped, initial.warped)
    out = refine(model, moving, fixed, steps=5, lr=5e-3, stages="all", initial=initial)
    assert all(not torch.equal(a, b) for a, b in zip(out.control_points, initial.control_points))
    assert loss_of(out, fixed) < loss_of(initial, fixed)
    with pytest.raises(ValueError, match="stages"):
        refine(model, moving, fixed, stages="first")
    with pytest.raises(ValueError, match="steps"):
        refine(model, moving, fixed, steps=-1)

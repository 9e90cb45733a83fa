"""StageLoss: the optimiser stage's loss and gradient written out equal autograd's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geomorph_bids.model import optimise as opt
from geomorph_bids.model.optimise import OptimiseConfig, optimise_warp
from geomorph_bids.model.stage_loss import from_components, to_components
from geomorph_bids.model.warp import ico_sampler
from geomorph_bids.sphere.icosphere import icosphere, n_vertices
from geomorph_bids.sphere.locate import unit

from .conftest import _plane_waves

ICO6 = unit(icosphere(6)[0])
FAST = OptimiseConfig(control_levels=(2, 3), data_levels=(4, 5), steps=(30, 30), smoothing=(10, 3))


def _images(B: int, K: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """moving, fixed (B, 40962, K) smooth maps; mask with a zeroed cap (a medial wall)."""
    mov = np.stack([np.stack([_plane_waves(ICO6, seed=10 * b + k) for k in range(K)], -1) for b in range(B)])
    fix = np.stack([np.stack([_plane_waves(ICO6, seed=10 * b + k + 100) for k in range(K)], -1) for b in range(B)])
    mask = np.broadcast_to((ICO6[:, 0] < 0.7)[None, :, None], fix.shape)
    return (torch.as_tensor(mov, dtype=torch.float32), torch.as_tensor(fix, dtype=torch.float32),
            torch.as_tensor(np.array(mask)))


def _stages(c: int, d: int, B: int, K: int, cfg: OptimiseConfig):
    mov, fix, mask = _images(B, K)
    nd = n_vertices(d)
    base_cpu, faces = opt._control_grid(c)
    base = base_cpu.float()[None]
    area0 = opt._signed_area(base, faces)
    w = torch.tensor([0.7, 0.3][:K] if K == 2 else [1.0])
    args = (cfg, ico_sampler(6), mov, fix[:, :nd], mask[:, :nd], w, base, faces, area0, c, d)
    return opt._AutogradStage(*args), opt._WrittenStage(*args)


@pytest.mark.parametrize("c,d,B,K,scale,areal", [(2, 4, 1, 1, 0.002, 0.0), (3, 5, 2, 2, 0.004, 0.0),
                                                 (2, 4, 2, 1, 0.05, 1.0), (4, 5, 1, 2, 0.003, 0.5)])
def test_written_loss_and_gradient_equal_autograd(c, d, B, K, scale, areal):
    auto, written = _stages(c, d, B, K, OptimiseConfig(areal=areal))
    gen = torch.Generator().manual_seed(c + d + B)
    offset = scale * torch.randn(auto.offset.shape, generator=gen)
    with torch.no_grad():
        auto.offset.copy_(offset)
        written.offset.copy_(to_components(offset))
    value_a, grad_a = auto(0)
    value_w, grad_w = written(0)
    assert torch.equal(auto.located, written.located)
    np.testing.assert_allclose(value_w.numpy(), value_a.numpy(), rtol=2e-6)
    grad_w = from_components(grad_w)
    assert ((grad_w - grad_a).norm() / grad_a.norm()).item() < 1e-5
    if scale >= 0.05:  # large offsets: the fold barrier (and the areal term) take part
        ratio = opt._signed_area(auto.control_points(), auto.faces) / auto.area0
        assert (ratio < 0.2).any()
    np.testing.assert_allclose(written.control_points().numpy(), auto.control_points().numpy(), atol=1e-6)
    value_only, none = written(0, grad=False)
    assert none is None and torch.equal(value_only, value_w)


def test_components_round_trip():
    x = torch.randn(2, 7, 3)
    c = to_components(x)
    assert c.shape == (3, 2, 7) and c.is_contiguous()
    assert torch.equal(from_components(c), x)


def test_optimise_warp_follows_the_autograd_descent(monkeypatch):
    """The whole descent: the written stage gives the autograd stage's warp up to float rounding
    (the same faces at every stage's start, where the points sit on grid vertices)."""
    mov, fix, _ = _images(1, 1)
    written = optimise_warp(mov[0], fix[0], FAST).warp
    monkeypatch.setattr(opt, "_WrittenStage", opt._AutogradStage)
    auto = optimise_warp(mov[0], fix[0], FAST).warp
    angle = np.degrees(np.arccos(np.clip((unit(written) * unit(auto)).sum(1), -1, 1)))
    moved = np.degrees(np.arccos(np.clip((unit(auto) * ICO6).sum(1), -1, 1)))
    assert np.median(moved) > 0.5            # the descent went somewhere
    assert np.median(angle) < 1e-3 and angle.max() < 0.05

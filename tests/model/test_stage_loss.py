"""StageLoss: the optimiser stage's loss and gradient written out equal autograd's."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from geomorph_bids.model import optimise as opt
from geomorph_bids.model.geoconv import hex_laplacian
from geomorph_bids.model.labels import normalise
from geomorph_bids.model.losses import pearson_to, signed_areas
from geomorph_bids.model.optimise import OptimiseConfig, optimise_warp
from geomorph_bids.model.stage_loss import from_components, to_components
from geomorph_bids.model.warp import ico_sampler, upsample_displacement
from geomorph_bids.sphere.icosphere import icosphere, n_vertices
from geomorph_bids.sphere.locate import unit

from .conftest import _plane_waves

ICO6 = unit(icosphere(6)[0])
FAST = OptimiseConfig(control_levels=(2, 3), data_levels=(4, 5), steps=(30, 30), smoothing=(10, 3))


class AutogradStage:
    """The reference: the stage's loss through autograd, row-major (B, Nc, 3) offsets, as
    ``optimise_warp`` computed it before the loss was written out (the same interface as
    ``optimise._WrittenStage``)."""

    def __init__(self, cfg, sampler, image, fixed, mask, weights, base, faces, area0, c, d, *, total=None):
        B, nd, k = fixed.shape
        self.cfg, self.sampler, self.image, self.total = cfg, sampler, image, total
        self.weights, self.base, self.faces, self.area0, self.c, self.d, self.k = weights, base, faces, area0, c, d, k
        self.correlation = pearson_to(fixed.transpose(1, 2).reshape(B * k, nd), mask.transpose(1, 2).reshape(B * k, nd))
        self.offset = torch.zeros((B,) + tuple(base.shape[1:]), requires_grad=True)
        self.located = None

    def _loss(self, ctrl, step):
        cfg, sampler, c, k = self.cfg, self.sampler, self.c, self.k
        points = upsample_displacement(ctrl, c, self.d)
        B, nd = points.shape[:2]
        if self.located is None:
            self.located = sampler.locate(points, near=torch.arange(nd).expand(B, nd))
        elif step % cfg.relocate_every == 0:
            self.located = sampler.locate(points, hint=self.located)
        corners, normals = sampler.face_tables(self.located, points.dtype)
        gathered = torch.gather(self.image, 1, corners.reshape(B, nd * 3, 1).expand(-1, -1, k)).reshape(B, nd, 3, k)
        warped = (gathered * sampler.barycentric(normals, points).unsqueeze(-1)).sum(2)
        cc = self.correlation(warped.transpose(1, 2).reshape(B * k, nd)).reshape(B, k)
        sim = ((1.0 - cc) * self.weights).sum(-1)
        disp = (normalise(sampler(self.total, ctrl)) if self.total is not None else ctrl) - self.base
        bend = (hex_laplacian(disp, c) ** 2).sum(-1).mean(-1) * float(4 ** c)
        ratio = signed_areas(ctrl, self.faces) / self.area0
        loss = sim + cfg.lam * bend + cfg.fold * torch.relu(0.2 - ratio).mean(-1)
        if cfg.areal:
            loss = loss + cfg.areal * torch.log(ratio.clamp_min(0.05)).square().mean(-1)
        return loss

    def __call__(self, step, grad=True):
        losses = self._loss(normalise(self.base + self.offset), step)
        if not grad:
            return losses.detach(), None
        losses.sum().backward()
        return losses.detach(), self.offset.grad

    def per_pair(self, flags):
        return flags[:, None, None]

    def control_points(self):
        return normalise(self.base + self.offset).detach()


def _images(B: int, K: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """moving, fixed (B, 40962, K) smooth maps; mask with a zeroed cap (a medial wall)."""
    mov = np.stack([np.stack([_plane_waves(ICO6, seed=10 * b + k) for k in range(K)], -1) for b in range(B)])
    fix = np.stack([np.stack([_plane_waves(ICO6, seed=10 * b + k + 100) for k in range(K)], -1) for b in range(B)])
    mask = np.broadcast_to((ICO6[:, 0] < 0.7)[None, :, None], fix.shape)
    return (torch.as_tensor(mov, dtype=torch.float32), torch.as_tensor(fix, dtype=torch.float32),
            torch.as_tensor(np.array(mask)))


def _stages(c: int, d: int, B: int, K: int, cfg: OptimiseConfig, bend_total: bool = False):
    mov, fix, mask = _images(B, K)
    nd = n_vertices(d)
    base_cpu, faces = opt._control_grid(c)
    base = base_cpu.float()[None]
    area0 = opt._signed_area(base, faces)
    w = torch.tensor([0.7, 0.3][:K] if K == 2 else [1.0])
    args = (cfg, ico_sampler(6), mov, fix[:, :nd], mask[:, :nd], w, base, faces, area0, c, d)
    total = None
    if bend_total:  # a smooth warp so far: the grid rotated a little, differently per pair
        gen = torch.Generator().manual_seed(7)
        grid = torch.as_tensor(ICO6, dtype=torch.float32)
        total = torch.stack([normalise(grid + 0.02 * torch.randn(3, generator=gen)) for _ in range(B)])
    return AutogradStage(*args, total=total), opt._WrittenStage(*args, total=total)


@pytest.mark.parametrize("c,d,B,K,scale,areal,bend_total", [
    (2, 4, 1, 1, 0.002, 0.0, False), (3, 5, 2, 2, 0.004, 0.0, False), (2, 4, 2, 1, 0.05, 1.0, False),
    (4, 5, 1, 2, 0.003, 0.5, False), (4, 5, 2, 1, 0.003, 0.0, True), (3, 5, 1, 2, 0.05, 0.5, True)])
def test_written_loss_and_gradient_equal_autograd(c, d, B, K, scale, areal, bend_total):
    auto, written = _stages(c, d, B, K, OptimiseConfig(areal=areal, bend_total=bend_total), bend_total)
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


@pytest.mark.parametrize("refine", [False, True])
def test_optimise_warp_follows_the_autograd_descent(monkeypatch, refine):
    """The whole descent: the written stage gives the autograd stage's warp up to float rounding
    (the same faces at every stage's start, where the points sit on grid vertices); ``refine``:
    the short refinement's whole-warp bending, from a warp so far (a rotated grid)."""
    mov, fix, _ = _images(1, 1)
    cfg, init = FAST, None
    if refine:
        cfg = dataclasses.replace(opt.REFINEMENT, steps=(20,))
        init = normalise(torch.as_tensor(ICO6, dtype=torch.float32) + torch.tensor([0.0, 0.01, -0.01])).numpy()
    written = optimise_warp(mov[0], fix[0], cfg, init=init).warp
    monkeypatch.setattr(opt, "_WrittenStage", AutogradStage)
    auto = optimise_warp(mov[0], fix[0], cfg, init=init).warp
    angle = np.degrees(np.arccos(np.clip((unit(written) * unit(auto)).sum(1), -1, 1)))
    start = ICO6 if init is None else unit(init)
    moved = np.degrees(np.arccos(np.clip((unit(auto) * start).sum(1), -1, 1)))
    assert np.median(moved) > 0.1            # the descent went somewhere
    assert np.median(angle) < 1e-3 and angle.max() < 0.05


@pytest.mark.cuda
def test_written_stage_on_cuda_equals_cpu():
    """The same loss and gradient on a GPU (its own look-up: the icosphere hierarchy)."""
    cfg = OptimiseConfig(bend_total=True, areal=0.5)
    mov, fix, mask = _images(2, 2)
    c, d = 3, 5
    nd = n_vertices(d)
    base_cpu, faces = opt._control_grid(c)
    base = base_cpu.float()[None]
    area0 = opt._signed_area(base, faces)
    w = torch.tensor([0.7, 0.3])
    total = torch.as_tensor(ICO6, dtype=torch.float32)[None].expand(2, -1, -1).contiguous()
    offset = 0.004 * torch.randn((3, 2, base.shape[1]), generator=torch.Generator().manual_seed(3))
    out = []
    for dev in ("cpu", "cuda"):
        args = [t.to(dev) for t in (mov, fix[:, :nd], mask[:, :nd], w, base, faces, area0)]
        stage = opt._WrittenStage(cfg, ico_sampler(6), args[0], args[1], args[2], args[3], args[4], args[5],
                                  args[6], c, d, total=total.to(dev))
        stage.offset.copy_(offset.to(dev))
        value, grad = stage(0)
        out.append((value.cpu(), grad.cpu()))
    np.testing.assert_allclose(out[1][0].numpy(), out[0][0].numpy(), rtol=1e-5)
    assert ((out[1][1] - out[0][1]).norm() / out[0][1].norm()).item() < 1e-3

"""Tests of the assembled GeoMorph model (small configs: data ico-3/ico-4, control ico-2/ico-3)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from geomorph_bids.model.geomorph import (GeoMorph, GeoMorphConfig, GeoMorphOutput, StageConfig,
                                          compose_warps, default_config, tiny_config)
from geomorph_bids.model.losses import cc_per_channel, total_loss
from geomorph_bids.model.network import NetworkConfig
from geomorph_bids.model.warp import ico_sampler
from geomorph_bids.sphere.icosphere import icosphere, n_vertices
from geomorph_bids.sphere.rotation import rotation_matrix


def unit_ico(level: int) -> torch.Tensor:
    v = icosphere(level)[0]
    return torch.tensor(v / np.linalg.norm(v, axis=1, keepdims=True), dtype=torch.float32)


def make_model(seed: int = 0, **kwargs) -> GeoMorph:
    torch.manual_seed(seed)
    return GeoMorph(tiny_config(**kwargs))


def angle_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.rad2deg(torch.atan2(torch.linalg.cross(a, b).norm(dim=-1), (a * b).sum(-1)))


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("levels", [2, (2, 3)])
@pytest.mark.parametrize("K", [1, 2])
def test_output_shapes_and_unit_warp(levels, K):
    model = make_model(in_channels=K, data_level=4, control_level=levels, n_labels=12)
    g = torch.Generator().manual_seed(1)
    moving, fixed = torch.randn(2, 2562, K, generator=g), torch.randn(2, 2562, K, generator=g)
    out = model(moving, fixed)
    assert isinstance(out, GeoMorphOutput)
    n_stages = 1 if isinstance(levels, int) else len(levels)
    assert out.warp.shape == (2, 2562, 3) and out.warp.dtype == torch.float32
    assert out.warped.shape == (2, 2562, K)
    cls = [levels] if isinstance(levels, int) else list(levels)
    assert [tuple(lg.shape) for lg in out.logits] == [(2, n_vertices(c), 12) for c in cls]
    assert [tuple(c.shape) for c in out.control_points] == [(2, n_vertices(c), 3) for c in cls]
    assert len(out.stage_warps) == n_stages
    assert torch.allclose(out.warp.norm(dim=-1), torch.ones(2, 2562), atol=1e-5)
    for c in out.control_points:
        assert torch.allclose(c.norm(dim=-1), torch.ones(c.shape[:2]), atol=1e-5)
    assert torch.isfinite(out.warped).all()


def test_ico3_data_level():
    model = make_model(data_level=3, control_level=2, n_labels=10)
    x = torch.randn(1, 642, 1)
    out = model(x, x)
    assert out.warp.shape == (1, 642, 3) and out.logits[0].shape == (1, 162, 10)


def test_rejects_bad_inputs():
    model = make_model(in_channels=2)
    with pytest.raises(ValueError, match=r"moving: expected \(B, 2562, 2\)"):
        model(torch.zeros(1, 2562, 1), torch.zeros(1, 2562, 2))
    with pytest.raises(ValueError, match="fixed"):
        model(torch.zeros(1, 2562, 2), torch.zeros(2562, 2))
    with pytest.raises(ValueError, match="batch sizes"):
        model(torch.zeros(1, 2562, 2), torch.zeros(2, 2562, 2))
    with pytest.raises(ValueError, match="control-point sets"):
        model.forward_from_control(torch.zeros(1, 2562, 2), [])
    with pytest.raises(ValueError, match=r"\(1, 162, 3\)"):
        model.forward_from_control(torch.zeros(1, 2562, 2), [torch.zeros(1, 42, 3)])


# ----------------------------------------------------------------------------- identity


def favour_identity(model: GeoMorph) -> None:
    """Make label 0 (the control point itself) dominate every stage's logits."""
    with torch.no_grad():
        for stage in model.stages:
            stage.network.blocks[-1].conv2.bias[0] = 100.0


@pytest.mark.parametrize("levels,crf", [(2, 2), (2, 0), ((2, 3), 2)])
def test_identity_labels_give_identity_warp(levels, crf):
    model = make_model(in_channels=2, control_level=levels, n_labels=20, crf_iterations=crf)
    favour_identity(model)
    g = torch.Generator().manual_seed(2)
    moving, fixed = torch.randn(2, 2562, 2, generator=g), torch.randn(2, 2562, 2, generator=g)
    out = model(moving, fixed)
    for lg in out.logits:
        assert (lg.argmax(-1) == 0).all()
    x = unit_ico(4).expand(2, -1, -1)
    assert (out.warp - x).abs().max().item() < 1e-5
    # float32 rounding of the barycentric weights, relative to the values' scale
    assert (out.warped - moving).abs().max().item() < 1e-5 * moving.abs().max().item()


# ----------------------------------------------------------------------------- composition


def rotated_controls(model: GeoMorph, rotations: list[np.ndarray]) -> list[torch.Tensor]:
    return [stage.grid.control @ torch.tensor(R.T, dtype=torch.float32)
            for stage, R in zip(model.stages, rotations)]


def test_cascade_composes_rotations_in_order(plane_waves):
    model = make_model(control_level=(2, 3))
    R1 = rotation_matrix(np.array([1.0, 0.0, 0.0]), 20.0)
    R2 = rotation_matrix(np.array([0.0, 0.3, 1.0]), 25.0)
    moving = torch.tensor(plane_waves(icosphere(4)[0]), dtype=torch.float32)[None, :, None]
    controls = [c[None] for c in rotated_controls(model, [R1, R2])]
    out = model.forward_from_control(moving, controls)
    x = unit_ico(4).double()
    t = lambda R: torch.tensor(R)  # noqa: E731
    first = (x @ t(R1).T).float()
    right = (x @ (t(R1) @ t(R2)).T).float()    # total(x) = warp_1(warp_2(x)) = R1 R2 x
    wrong = (x @ (t(R2) @ t(R1)).T).float()
    assert (out.stage_warps[0][0] - first).abs().max().item() < 1e-5
    assert angle_deg(out.warp[0], right).max().item() < 1e-3          # degrees
    assert angle_deg(out.warp[0], wrong).mean().item() > 3.0          # the order matters
    # warped moving = the original moving sampled ONCE at R1 R2 x
    expected = ico_sampler(4)(moving, right[None])
    assert (out.warped - expected).abs().max().item() < 1e-4
    # ... which differs from resampling twice (moving o warp_1, then o warp_2) by blur only
    twice = ico_sampler(4)(ico_sampler(4)(moving, first[None]), out.stage_warps[1])
    diff = (twice - out.warped).abs()
    assert 1e-4 < diff.mean().item() < 0.2 * moving.abs().mean().item()


def test_compose_warps_identity_and_gradients():
    x = unit_ico(3)[None]
    R = torch.tensor(rotation_matrix(np.array([0.0, 1.0, 0.0]), 15.0), dtype=torch.float32)
    w = (x @ R.T).requires_grad_(True)
    assert compose_warps(None, w, 3) is w
    assert (compose_warps(x, w, 3) - w).abs().max().item() < 1e-5   # identity first
    assert (compose_warps(w, x, 3) - w).abs().max().item() < 1e-5   # identity second
    compose_warps(w, w, 3).sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


def test_second_stage_sees_first_stage_output():
    model = make_model(control_level=(2, 3))
    seen = {}
    model.stages[1].network.register_forward_hook(lambda m, args, out: seen.update(moving=args[0]))
    g = torch.Generator().manual_seed(3)
    moving, fixed = torch.randn(1, 2562, 1, generator=g), torch.randn(1, 2562, 1, generator=g)
    out = model(moving, fixed)
    expected = ico_sampler(4)(moving, out.stage_warps[0])
    assert (seen["moving"] - expected).abs().max().item() < 1e-6
    # the total warp composes the stage warps: warp_1 sampled at warp_2
    total = compose_warps(out.stage_warps[0], out.stage_warps[1], 4)
    assert (out.warp - total).abs().max().item() < 1e-6


# ----------------------------------------------------------------------------- training


def test_gradients_reach_every_parameter():
    model = make_model(in_channels=2, control_level=(2, 3), n_labels=12)
    g = torch.Generator().manual_seed(4)
    moving, fixed = torch.randn(2, 2562, 2, generator=g), torch.randn(2, 2562, 2, generator=g)
    out = model(moving, fixed)
    loss, _ = total_loss(out.warped, fixed, out.warp, level=4, groups=[[0], [1]], weights=[1.0, 0.5])
    loss.backward()
    names = [n for n, p in model.named_parameters()]
    assert any(".crf.compat" in n for n in names) and any("moving_stages" in n for n in names)
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum().item() > 0, name


def test_short_optimisation_registers_a_rotated_pair(rotated_pair):
    moving, fixed, R = rotated_pair()
    x = unit_ico(4)[None]
    truth = x @ torch.tensor(R.T, dtype=torch.float32)   # warp[x] = R x
    identity_loss, _ = total_loss(moving, fixed, x, level=4)
    model = make_model(seed=0, control_level=2, n_labels=30, label_level=4, crf_iterations=2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(30):
        out = model(moving, fixed)
        loss, parts = total_loss(out.warped, fixed, out.warp, level=4)
        history.append((loss.item(), parts["cc"].item(), angle_deg(out.warp, truth).mean().item()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = model(moving, fixed)
        loss, parts = total_loss(out.warped, fixed, out.warp, level=4)
    first = history[0]
    assert loss.item() < 0.7 * first[0]
    assert loss.item() < 0.8 * identity_loss.item()      # better than not moving at all
    assert parts["cc"].item() > first[1] + 0.03
    assert cc_per_channel(out.warped, fixed)[0, 0].item() > 0.94
    assert angle_deg(out.warp, truth).mean().item() < first[2]   # moves towards R x


# ----------------------------------------------------------------------------- determinism, state


def test_same_seed_same_output():
    g = torch.Generator().manual_seed(5)
    moving, fixed = torch.randn(1, 2562, 1, generator=g), torch.randn(1, 2562, 1, generator=g)
    a, b = make_model(seed=7, control_level=(2, 3)), make_model(seed=7, control_level=(2, 3))
    oa, ob = a(moving, fixed), b(moving, fixed)
    assert torch.equal(oa.warp, ob.warp) and torch.equal(oa.warped, ob.warped)
    assert all(torch.equal(x, y) for x, y in zip(oa.logits, ob.logits))
    c = make_model(seed=8, control_level=(2, 3))
    assert not torch.equal(c(moving, fixed).logits[0], oa.logits[0])


@pytest.mark.parametrize("correlation, n_separate", [(True, 0), (False, 1), (True, 2)])
def test_encode_fixed_gives_the_same_bits(correlation, n_separate):
    """The fixed image's share computed once (encode_fixed) and reused by several moving images
    gives the very bits of the plain forward pass, for a two-stage cascade; warped=False skips
    the last resampling only."""
    base = tiny_config(data_level=3, control_level=(2, 3))  # 2 encoder levels: n_separate 2 shares none
    torch.manual_seed(3)
    model = GeoMorph(dataclasses.replace(base, stages=tuple(
        dataclasses.replace(st, correlation=correlation, network=dataclasses.replace(st.network, n_separate=n_separate))
        for st in base.stages))).eval()
    g = torch.Generator().manual_seed(4)
    fixed = torch.randn(2, 642, 1, generator=g)
    encoded = model.encode_fixed(fixed)
    assert len(encoded.stages) == 2 and encoded.fixed is fixed
    assert all((d is None) != correlation for _, d in encoded.stages)
    with torch.inference_mode():
        for _ in range(2):  # one encoding serves every moving image registered to this fixed
            moving = torch.randn(2, 642, 1, generator=g)
            plain = model(moving, fixed)
            reused = model(moving, fixed, encoded=encoded, warped=False)
            assert torch.equal(plain.warp, reused.warp)
            assert all(torch.equal(a, b) for a, b in zip(plain.logits, reused.logits))
            assert reused.warped is None and plain.warped is not None
        assert torch.equal(model(moving, fixed, encoded=encoded).warped, plain.warped)


def test_encode_fixed_of_another_tensor_is_refused():
    model = make_model(seed=3, control_level=2)
    fixed = torch.randn(1, 2562, 1)
    encoded = model.encode_fixed(fixed)
    with pytest.raises(ValueError, match="another fixed tensor"):
        model(torch.randn(1, 2562, 1), fixed.clone(), encoded=encoded)


def test_state_dict_round_trip():
    a, b = make_model(seed=1, control_level=(2, 3)), make_model(seed=2, control_level=(2, 3))
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 2562, 1)
    assert torch.equal(a(x, x.flip(1)).warp, b(x, x.flip(1)).warp)
    # index tables and label grids are rebuilt, not stored
    assert not any(k.endswith((".index", ".positions", ".coords")) for k in a.state_dict())


def test_bf16_autocast_keeps_geometry_float32():
    model = make_model(in_channels=2, control_level=(2, 3))
    x = torch.randn(1, 2562, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, x.flip(1))
    assert out.warp.dtype == torch.float32 and out.warped.dtype == torch.float32
    assert out.control_points[0].dtype == torch.float32
    assert torch.allclose(out.warp.norm(dim=-1), torch.ones(1, 2562), atol=1e-5)
    ref = model(x, x.flip(1))
    assert angle_deg(out.warp, ref.warp).max().item() < 5.0   # same registration, bf16 rounding


# ----------------------------------------------------------------------------- config


def test_config_round_trip_through_json():
    for cfg in (tiny_config(), tiny_config(in_channels=3, control_level=(2, 3), n_labels=(30, 15),
                                           label_level=(4, 5), crf_iterations=0),
                default_config(), default_config(2, control_level=(2, 4), n_labels=(100, 600))):
        d = json.loads(json.dumps(cfg.to_dict()))
        assert GeoMorphConfig.from_dict(d) == cfg
        assert StageConfig.from_dict(d["stages"][0]) == cfg.stages[0]
    cfg = default_config(2, control_level=(2, 4), n_labels=(100, 600))
    assert cfg.in_channels == 2 and [s.control_level for s in cfg.stages] == [2, 4]
    assert cfg.stages[1].n_labels == 600 and cfg.data_level == 6


def test_config_validation():
    net = NetworkConfig(in_channels=1, input_level=4, channels=(8, 8, 8), decoder_channels=(8,),
                        control_level=3, n_labels=10, kernels=2)
    with pytest.raises(ValueError, match=r"label_level \(2\) must be >= the control level \(3\)"):
        StageConfig(net, label_level=2)
    with pytest.raises(ValueError, match="n_labels"):
        StageConfig(NetworkConfig(**{**net.to_dict(), "n_labels": 700}), label_level=3)
    with pytest.raises(ValueError, match="crf_iterations"):
        StageConfig(net, label_level=4, crf_iterations=-1)
    with pytest.raises(ValueError, match=r"input_level \(4\) must equal data_level \(5\)"):
        GeoMorphConfig((StageConfig(net, label_level=4),), data_level=5)
    other = NetworkConfig(**{**net.to_dict(), "in_channels": 2})
    with pytest.raises(ValueError, match="same number of input channels"):
        GeoMorphConfig((StageConfig(net, label_level=4), StageConfig(other, label_level=4)), 4)
    coarse = NetworkConfig(in_channels=1, input_level=4, channels=(8, 8, 8, 8), control_level=1,
                           n_labels=10, kernels=2)
    with pytest.raises(ValueError, match=r"control level must be in 2..5, got 1"):
        StageConfig(coarse, label_level=4)
    fine = NetworkConfig(in_channels=1, input_level=6, control_level=6, n_labels=10)
    with pytest.raises(ValueError, match=r"control level must be in 2..5, got 6"):
        StageConfig(fine)
    with pytest.raises(ValueError, match="at least one stage"):
        GeoMorphConfig((), 4)
    with pytest.raises(ValueError, match="unknown GeoMorphConfig keys"):
        GeoMorphConfig.from_dict({"stages": [], "levels": 3})
    with pytest.raises(ValueError, match="unknown StageConfig keys"):
        StageConfig.from_dict({"network": net.to_dict(), "gamma": 0.1})
    with pytest.raises(ValueError, match="n_labels: 3 values for 2 stages"):
        tiny_config(control_level=(2, 3), n_labels=(10, 10, 10))


def test_float64_model_keeps_float64_geometry():
    model = make_model(control_level=(2, 3)).double()
    x = torch.randn(1, 2562, 1, dtype=torch.float64)
    out = model(x, x.flip(1))
    assert out.warp.dtype == torch.float64 and out.warped.dtype == torch.float64
    assert (out.warp.norm(dim=-1) - 1).abs().max().item() < 1e-10   # normalise() eps is 1e-12


def _networks_for_another_device() -> list[GeoMorph]:
    """The network kinds a lent GPU runs: the paper's label block, the correlation head without
    it (what scripts/gpu_session.sh trains), a two-stage cascade of two channels."""
    plain = tiny_config(data_level=4, control_level=2, n_labels=12)
    stage = plain.stages[0]
    corr = GeoMorphConfig(stages=(StageConfig(network=dataclasses.replace(stage.network, label_block=False),
                                              label_level=4, crf_iterations=2, correlation=True,
                                              correlation_channels=4),), data_level=4)
    torch.manual_seed(0)
    return [GeoMorph(plain), GeoMorph(corr), GeoMorph(tiny_config(in_channels=2, control_level=(2, 3)))]


def test_the_network_mixes_no_cpu_tensor_into_another_device():
    """What a GPU run would meet first, found here without one: every tensor of a forward pass
    (training, with its backward, and inference through ``encode_fixed``) on the module's device.
    On torch's 'meta' device, as on CUDA, an operation that mixes in a CPU tensor (a table made
    without ``device=``) raises; the Gaussian kernels' autocast switch raised there for any device
    type without autocast ('unsupported scalarType'), before any such check could run."""
    for model in _networks_for_another_device():
        model = model.to("meta")
        k = model.config.in_channels
        mov, fix = torch.randn(2, 2562, k, device="meta"), torch.randn(2, 2562, k, device="meta")
        out = model(mov, fix)
        assert out.warp.device.type == "meta" and out.warped.device.type == "meta"
        (out.warp.sum() + out.warped.sum()).backward()
        assert all(p.grad is not None and p.grad.device.type == "meta" for p in model.parameters()
                   if p.requires_grad and p.grad is not None)
        with torch.inference_mode():
            enc = model.encode_fixed(fix)
            assert model(mov, fix, encoded=enc, warped=False).warp.device.type == "meta"
        # the check bites: a CPU table in the module is refused on 'meta' as on CUDA
        with pytest.raises((RuntimeError, NotImplementedError)):
            _ = out.warp + torch.ones(out.warp.shape)


@pytest.mark.cuda
def test_cuda_matches_cpu():
    model = make_model(in_channels=2, control_level=(2, 3))
    g = torch.Generator().manual_seed(6)
    moving, fixed = torch.randn(1, 2562, 2, generator=g), torch.randn(1, 2562, 2, generator=g)
    ref = model(moving, fixed)
    out = model.cuda()(moving.cuda(), fixed.cuda())
    assert out.warp.device.type == "cuda" and out.warped.device.type == "cuda"
    assert angle_deg(out.warp.cpu(), ref.warp).max().item() < 0.05
    assert (out.warped.cpu() - ref.warped).abs().max().item() < 1e-2


def test_correlation_head_adds_a_learned_cost_volume():
    cfg = tiny_config(data_level=4, control_level=2, n_labels=12, crf_iterations=0)
    stage = cfg.stages[0]
    with_corr = GeoMorphConfig(stages=(StageConfig(network=stage.network, label_level=4, crf_iterations=0,
                                                   correlation=True, correlation_channels=4),), data_level=4)
    # round trip; plain stages keep writing the keys they always wrote
    assert GeoMorphConfig.from_dict(with_corr.to_dict()) == with_corr
    assert "correlation" not in cfg.to_dict()["stages"][0]
    torch.manual_seed(0)
    model = GeoMorph(with_corr)
    x = torch.randn(2, 2562, 1)
    corr = model.stages[0].correlation(x, x)
    assert corr.shape == (2, 162, 12)
    # identical images: every control point's best match is itself (label 0), similarity 1
    assert torch.allclose(corr[..., 0], torch.ones(2, 162), atol=1e-5)
    assert corr.max() <= 1 + 1e-5
    out = model(x, x.roll(7, dims=1))
    out.warp.sum().backward()
    assert model.stages[0].corr_scale.grad is not None
    assert model.stages[0].match.conv1.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="label_level"):
        StageConfig(network=stage.network, label_level=5, correlation=True)

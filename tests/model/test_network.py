"""GeoMorphNet / FeatureEncoder: shapes, weight sharing, determinism, batching, config."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from geomorph_bids.model.geoconv import GeoConv
from geomorph_bids.model.gmm_oracle import GMMConvHex
from geomorph_bids.model.network import FeatureEncoder, GeoMorphNet, NetworkConfig
from geomorph_bids.sphere.icosphere import n_vertices


def small(**kw) -> NetworkConfig:
    """ico-5 input, 4 encoder levels (ico-5..ico-2), 2 separate + 2 shared, tiny widths."""
    base = dict(in_channels=1, input_level=5, channels=(4, 4, 8, 8), n_separate=2,
                decoder_channels=(8, 8, 8), control_level=3, n_labels=6, kernels=3)
    base.update(kw)
    return NetworkConfig(**base)


def inputs(cfg: NetworkConfig, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (batch, n_vertices(cfg.input_level), cfg.in_channels)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


def test_default_config_matches_the_paper_sizes():
    cfg = NetworkConfig()
    assert cfg.bottom_level == 2 and cfg.n_blocks == 5
    net = GeoMorphNet(cfg)
    assert net.block_levels == [2, 3, 4, 4, 4]
    assert net.n_parameters() == 12_188_160  # the paper quotes ~12.7 M for the same layout
    enc = net.encoder
    assert [s.conv1.in_channels for s in enc.moving_stages] == [1, 65, 65]
    assert [s.conv1.in_channels for s in enc.shared_stages] == [129, 129]
    assert [s.conv2.out_channels for s in (*enc.moving_stages, *enc.shared_stages)] == \
        [32, 32, 64, 64, 128]
    assert [b.conv2.out_channels for b in net.blocks] == [128, 128, 128, 600, 600]
    assert net.blocks[0].conv1.in_channels == 256


@pytest.mark.parametrize("control_level", [2, 3, 4])
@pytest.mark.parametrize("K", [1, 3])
def test_output_shapes(control_level, K):
    cfg = small(in_channels=K, control_level=control_level)
    torch.manual_seed(0)
    net = GeoMorphNet(cfg)
    m, f = inputs(cfg, batch=2)
    out = net(m, f)
    assert out.shape == (2, n_vertices(control_level), cfg.n_labels)
    assert torch.isfinite(out).all()
    assert out.std().item() > 0
    fm, ff = net.encoder(m, f)
    assert fm.shape == ff.shape == (2, n_vertices(2), cfg.channels[-1])
    assert net(m[0], f[0]).shape == (n_vertices(control_level), cfg.n_labels)


def test_separate_and_shared_weights():
    cfg = small()
    enc = FeatureEncoder(cfg)
    assert len(enc.moving_stages) == len(enc.fixed_stages) == 2 and len(enc.shared_stages) == 2
    moving_ids = {id(p) for p in enc.moving_stages.parameters()}
    fixed_ids = {id(p) for p in enc.fixed_stages.parameters()}
    shared_ids = {id(p) for p in enc.shared_stages.parameters()}
    assert not moving_ids & fixed_ids and not shared_ids & (moving_ids | fixed_ids)
    assert {id(p) for p in enc.parameters()} == moving_ids | fixed_ids | shared_ids
    # same sizes: one set per stream for the separate levels, one set for the shared ones
    n = lambda ms: sum(p.numel() for p in ms.parameters())  # noqa: E731
    assert n(enc.moving_stages) == n(enc.fixed_stages)
    assert n(enc) == 2 * n(enc.moving_stages) + n(enc.shared_stages)
    # functional check: the moving stream's features depend on moving_stages and shared
    # stages, never on fixed_stages (and vice versa); with equal inputs and copied separate
    # weights, the two streams agree exactly
    m, f = inputs(cfg)
    with torch.no_grad():
        fm0, ff0 = enc(m, f)
        for p in enc.fixed_stages.parameters():
            p.add_(0.5)
        fm1, ff1 = enc(m, f)
        assert torch.equal(fm0, fm1) and (ff1 - ff0).abs().max() > 1e-3
        enc.fixed_stages.load_state_dict(enc.moving_stages.state_dict())
        a, b = enc(m, m)
        assert torch.equal(a, b)
        for p in enc.shared_stages.parameters():
            p.mul_(1.1)
        a2, b2 = enc(m, f)
        assert (a2 - fm0).abs().max() > 1e-4 and (b2 - ff0).abs().max() > 1e-4


def test_determinism_with_seed():
    cfg = small()
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        net = GeoMorphNet(cfg)
        outs.append(net(*inputs(cfg, seed=7)))
    assert torch.equal(outs[0], outs[1])
    torch.manual_seed(124)
    assert not torch.equal(GeoMorphNet(cfg)(*inputs(cfg, seed=7)), outs[0])


def test_batch_equals_single_forwards():
    cfg = small(in_channels=2, control_level=4)
    torch.manual_seed(1)
    net = GeoMorphNet(cfg)
    m, f = inputs(cfg, batch=2, seed=3)
    with torch.no_grad():
        both = net(m, f)
        for b in range(2):
            single = net(m[b:b + 1], f[b:b + 1])
            assert (both[b] - single[0]).abs().max().item() < 1e-5


def test_gradients_reach_all_parameters():
    cfg = small(control_level=4)
    torch.manual_seed(2)
    net = GeoMorphNet(cfg)
    m, f = inputs(cfg, seed=4)
    logits = net(m, f)
    target = torch.randint(0, cfg.n_labels, logits.shape[:-1])
    nn.functional.cross_entropy(logits.reshape(-1, cfg.n_labels), target.reshape(-1)).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum().item() > 0, name


def test_config_round_trip_and_validation():
    cfg = small(channels=[4, 4, 8, 8], decoder_channels=[8, 8, 8])
    assert cfg.channels == (4, 4, 8, 8)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert NetworkConfig.from_dict(d) == cfg
    assert NetworkConfig.from_dict({}) == NetworkConfig()
    with pytest.raises(ValueError, match="unknown"):
        NetworkConfig.from_dict({**d, "bogus": 1})
    with pytest.raises(ValueError, match="control_level"):
        small(control_level=1)
    with pytest.raises(ValueError, match="control_level"):
        small(control_level=6)
    with pytest.raises(ValueError):
        small(n_separate=5)
    with pytest.raises(ValueError):
        NetworkConfig(input_level=3)  # 5 levels do not fit below ico-3
    with pytest.raises(ValueError, match="expected"):
        GeoMorphNet(small())(*inputs(small(in_channels=2)))


def test_state_dict_round_trip_holds_no_index_tables():
    cfg = small()
    torch.manual_seed(5)
    a = GeoMorphNet(cfg)
    sd = a.state_dict()
    assert not any(k.endswith(("index", "slot_mask", "coords", "parents")) for k in sd)
    b = GeoMorphNet(NetworkConfig.from_dict(cfg.to_dict()))
    b.load_state_dict(sd)
    m, f = inputs(cfg)
    assert torch.equal(a(m, f), b(m, f))


def test_whole_network_equals_gmmconv_network():
    cfg = small(control_level=3)
    torch.manual_seed(6)
    ours = GeoMorphNet(cfg)
    ref = GeoMorphNet(cfg, conv=GMMConvHex)
    a = [m for m in ours.modules() if isinstance(m, GeoConv)]
    b = [m.conv for m in ref.modules() if isinstance(m, GMMConvHex)]
    assert len(a) == len(b) == 12 + 3 + 2 + 2 + 3 + 2  # encoder 2x2x2 + 2x2, 5 res blocks
    with torch.no_grad():
        for g, r in zip(a, b):
            K, cin, cout = g.kernels, g.in_channels, g.out_channels
            r.mu.copy_(g.mu)
            r.sigma.copy_(g.sigma)
            r.bias.copy_(g.bias)
            r.g.copy_(g.weight[: K * cin].view(K, cin, cout).permute(1, 0, 2).reshape(cin, -1))
            r.root.weight.copy_(g.weight[K * cin:].T)
        m, f = inputs(cfg, batch=2)
        x, y = ours(m, f), ref(m, f)
    assert (x - y).abs().max().item() < 1e-4 * max(1.0, y.abs().max().item())
    assert torch.equal(x.argmax(-1), y.argmax(-1))

"""GeoConv (hex form) against torch_geometric's GMMConv, and the hex pooling/upsampling helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.nn import GMMConv  # test-only oracle (extras: test)

from geomorph_bids.model.geoconv import (
    GeoConv,
    HexMaxPool,
    HexUpsample,
    hex_laplacian,
    hex_max_pool,
    hex_tables,
    hex_upsample,
)
from geomorph_bids.sphere.icosphere import (
    hex_neighbourhood,
    icosphere,
    n_vertices,
    pool_index,
    pseudo_coords,
    upsample_parents,
)


def _edges(level: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Explicit edge list of GeoConv's neighbourhoods: valid hex slot (self included) -> centre."""
    index, mask = hex_neighbourhood(level)
    dst = np.broadcast_to(np.arange(len(index))[:, None], index.shape)
    edge_index = torch.from_numpy(np.stack([index[mask], dst[mask]]))
    # GeoConv's coordinate buffer is float32 (cast to the module dtype): use the same numbers
    edge_attr = torch.tensor(pseudo_coords(level)[mask].astype(np.float32), dtype=dtype)
    return edge_index, edge_attr


def _oracle_pair(cin: int, cout: int, level: int, dtype: torch.dtype, seed: int = 0):
    """A GeoConv with random means/sigmas/bias and a GMMConv holding the same numbers."""
    torch.manual_seed(seed)
    conv = GeoConv(cin, cout, level).to(dtype)
    ref = GMMConv(cin, cout, dim=2, kernel_size=conv.kernels, aggr="mean").to(dtype)
    K = conv.kernels
    with torch.no_grad():
        conv.mu.copy_(torch.randn(K, 2) * 0.8)
        conv.sigma.copy_(torch.rand(K, 2) * 1.2 + 0.3)
        conv.bias.copy_(torch.randn(cout))
        ref.mu.copy_(conv.mu)
        ref.sigma.copy_(conv.sigma)
        ref.bias.copy_(conv.bias)
        ref.g.copy_(conv.weight[: K * cin].view(K, cin, cout).permute(1, 0, 2).reshape(cin, K * cout))
        ref.root.weight.copy_(conv.weight[K * cin:].T)
    return conv, ref


@pytest.mark.parametrize("level", [2, 3])
@pytest.mark.parametrize("cin,cout", [(3, 8), (8, 8), (12, 5)])  # aggregate-first and transform-first
def test_equals_gmmconv_oracle(level, cin, cout):
    conv, ref = _oracle_pair(cin, cout, level, torch.float32)
    edge_index, edge_attr = _edges(level, torch.float32)
    x = torch.randn(2, n_vertices(level), cin)
    out = conv(x)
    assert out.shape == (2, n_vertices(level), cout)
    for b in range(2):
        expected = ref(x[b], edge_index, edge_attr)
        scale = expected.abs().max().item()
        assert scale > 0.1
        assert (out[b] - expected).abs().max().item() < 1e-5 * max(1.0, scale)
    # unbatched input gives the unbatched result
    assert torch.allclose(conv(x[1]), out[1], atol=1e-6)


@pytest.mark.parametrize("cin,cout", [(4, 6), (6, 4)])
def test_equals_gmmconv_float64(cin, cout):
    conv, ref = _oracle_pair(cin, cout, 3, torch.float64, seed=3)
    edge_index, edge_attr = _edges(3, torch.float64)
    x = torch.randn(n_vertices(3), cin, dtype=torch.float64)
    assert (conv(x) - ref(x, edge_index, edge_attr)).abs().max().item() < 1e-12


def test_padded_slots_contribute_nothing():
    level = 2
    index, mask = hex_neighbourhood(level)
    padded = np.flatnonzero(~mask[:, 6])
    assert len(padded) == 12
    # vertices outside every degree-5 vertex's true neighbourhood
    targets = np.setdiff1d(np.arange(n_vertices(level)), index[padded][mask[padded]])[:12]
    assert len(targets) == 12
    rows, targets_t = torch.from_numpy(padded), torch.from_numpy(targets)
    torch.manual_seed(1)
    for cin, cout in [(3, 7), (7, 3)]:
        conv = GeoConv(cin, cout, level)
        x = torch.randn(1, n_vertices(level), cin) * 3
        with torch.no_grad():
            before = conv(x)
            w = conv.gaussian_weights()
            assert torch.all(w[rows, 6] == 0)
            assert torch.all(w[torch.from_numpy(np.array(mask))] > 0)
            # point the padded slots at other vertices and change those vertices wildly
            conv.index[rows, 6] = targets_t
            x2 = x.clone()
            x2[:, targets_t] += 1000.0
            after = conv(x2)
        assert (after[0, rows] - before[0, rows]).abs().max().item() < 1e-4
        assert (after[0, targets_t] - before[0, targets_t]).abs().amax(-1).min().item() > 1.0


@pytest.mark.parametrize("cin,cout", [(3, 9), (9, 3)])
def test_gradients_reach_every_parameter(cin, cout):
    torch.manual_seed(2)
    conv = GeoConv(cin, cout, 3)
    x = torch.randn(2, n_vertices(3), cin, requires_grad=True)
    (conv(x) ** 2).mean().backward()
    for name, p in conv.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum().item() > 0, name
        # every kernel's mean and sigma receives gradient
        if name in ("mu", "sigma"):
            assert (p.grad.abs().sum(1) > 0).all(), name
    assert x.grad.abs().sum().item() > 0


def test_buffers_are_not_state_and_move_with_module():
    conv = GeoConv(2, 3, 2)
    assert sorted(conv.state_dict()) == ["bias", "mu", "sigma", "weight"]
    assert {n for n, _ in conv.named_buffers()} == {"index", "slot_mask", "coords"}
    conv64 = GeoConv(2, 3, 2).double()
    assert conv64.coords.dtype == torch.float64 and conv64.index.dtype == torch.int64
    assert sum(p.numel() for p in conv.parameters()) == 10 * 2 + 10 * 2 + 11 * 2 * 3 + 3


def test_inference_cache_follows_parameter_updates():
    torch.manual_seed(4)
    conv = GeoConv(3, 4, 2)
    x = torch.randn(1, n_vertices(2), 3)
    with torch.no_grad():
        a = conv(x)
        conv.mu.add_(0.3)
        conv.sigma.mul_(0.7)
        b = conv(x)
    c = conv(x)  # grad mode: recomputed without the cache
    assert (a - b).abs().max().item() > 1e-3
    assert torch.allclose(b, c, atol=1e-6)
    with torch.no_grad():
        conv.mu.data.copy_(torch.zeros(conv.kernels, 2))  # .data: no version-counter bump
        d = conv(x)
    assert torch.allclose(d, conv(x), atol=1e-6) and (d - b).abs().max().item() > 1e-3


def test_bf16_autocast_close():
    torch.manual_seed(5)
    conv = GeoConv(16, 32, 3)
    x = torch.randn(1, n_vertices(3), 16)
    ref = conv(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x)
    rel = ((out.float() - ref).norm() / ref.norm()).item()
    assert rel < 2e-2


def test_wrong_shapes_raise():
    conv = GeoConv(2, 3, 2)
    with pytest.raises(ValueError):
        conv(torch.randn(1, n_vertices(3), 2))
    with pytest.raises(ValueError):
        conv(torch.randn(1, n_vertices(2), 5))


# ----------------------------------------------------------------- pooling / upsampling


@pytest.mark.parametrize("level", [1, 3])
def test_hex_max_pool_is_masked_neighbourhood_max(level):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, n_vertices(level), 5))
    index, mask = hex_neighbourhood(level)
    Vc = n_vertices(level - 1)
    gathered = np.where(mask[:Vc, :, None], x[:, index[:Vc]], -np.inf)  # (2, Vc, 7, 5)
    expected = gathered.max(2)
    out = hex_max_pool(torch.from_numpy(x), level).numpy()
    assert out.shape == (2, Vc, 5)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(HexMaxPool(level)(torch.from_numpy(x)).numpy(), expected)
    # the pooling table is the coarse vertices' fine neighbourhood (centre first)
    np.testing.assert_array_equal(pool_index(level)[:, 0], np.arange(Vc))


def test_hex_max_pool_padding_never_wins():
    """A degree-5 vertex whose centre is the smallest value must still get its ring's max."""
    level = 2
    x = torch.zeros(1, n_vertices(level), 1)
    x[0, :12] = -5.0  # the 12 degree-5 vertices (base icosahedron) are the smallest
    index, mask = hex_neighbourhood(level)
    for v in range(12):
        ring = index[v][mask[v]][1:]
        x[0, ring[0]] = float(v + 1)  # one neighbour carries a marker
    out = hex_max_pool(x, level)[0, :12, 0]
    assert torch.all(out >= 1.0)
    # and a mask-free max over a constant signal is that constant
    assert torch.all(hex_max_pool(torch.full((1, n_vertices(3), 2), 2.5), 3) == 2.5)


@pytest.mark.parametrize("level", [1, 3, 4])
def test_hex_upsample(level):
    Vc, Vf = n_vertices(level - 1), n_vertices(level)
    const = torch.full((2, Vc, 3), 1.7, dtype=torch.float64)
    up = hex_upsample(const, level)
    assert up.shape == (2, Vf, 3)
    assert torch.all(up == 1.7)
    # linear function of the (unit) coordinates: the parents' mean is the chord midpoint,
    # the new vertex its projection; they differ by the factor |midpoint| ~ cos(edge/2)
    v = icosphere(level)[0] / 100.0
    a = np.array([0.3, -0.5, 0.8])
    f_coarse = torch.from_numpy(v[:Vc] @ a)[None, :, None]
    got = HexUpsample(level)(f_coarse)[0, :, 0].numpy()
    np.testing.assert_array_equal(got[:Vc], (v[:Vc] @ a))
    parents = upsample_parents(level)
    mid = 0.5 * (v[parents[:, 0]] + v[parents[:, 1]])
    np.testing.assert_allclose(got[Vc:], mid @ a, atol=1e-12)
    tol = {1: 0.16, 3: 0.015, 4: 0.004}[level]  # measured 0.148 / 0.0131 / 0.0034
    assert np.abs(got - v @ a).max() < tol * np.linalg.norm(a)


def test_hex_laplacian():
    level = 3
    assert hex_laplacian(torch.full((n_vertices(level), 2), 4.0), level).abs().max() < 1e-6
    index, mask = hex_neighbourhood(level)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n_vertices(level), 3))
    expected = np.stack([x[index[v, 1:][mask[v, 1:]]].mean(0) - x[v]
                         for v in range(n_vertices(level))])
    got = hex_laplacian(torch.from_numpy(x), level).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12)
    # on the positions of a convex sphere mesh it points inwards at every vertex
    v = torch.from_numpy(icosphere(level)[0] / 100.0)
    assert torch.all((hex_laplacian(v, level) * v).sum(1) < 0)
    # batched == unbatched
    xb = torch.randn(2, n_vertices(level), 3)
    assert torch.allclose(hex_laplacian(xb, level)[1], hex_laplacian(xb[1], level), atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hex_laplacian_cached_tables_equal_explicit_ones(dtype):
    """The cached one-ring tables give the same bits as a caller's own index and mask (a GeoConv's
    buffers), in either precision."""
    level = 3
    index, mask, _ = hex_tables(level)
    x = torch.randn(2, n_vertices(level), 3, generator=torch.Generator().manual_seed(0)).to(dtype)
    assert torch.equal(hex_laplacian(x, level), hex_laplacian(x, level, index=index, mask=mask))
    assert hex_laplacian(x, level).dtype == dtype


def test_hex_laplacian_gradient_is_its_adjoint():
    """With the cached tables the backward pass is a gather over the (symmetric) one-ring: it equals
    autograd's scatter-add of the explicit-table path up to rounding, and the double gradient of a
    quadratic (L^T L applied twice) works."""
    level = 3
    index, mask, _ = hex_tables(level)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, n_vertices(level), 3, dtype=torch.float64, generator=g)
    w = torch.randn(2, n_vertices(level), 3, dtype=torch.float64, generator=g)
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    (hex_laplacian(a, level) * w).sum().backward()
    (hex_laplacian(b, level, index=index, mask=mask) * w).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-14)
    assert torch.autograd.gradgradcheck(lambda t: (hex_laplacian(t, level) ** 2).sum(),
                                        (x[:1, :, :1].clone().requires_grad_(True),))

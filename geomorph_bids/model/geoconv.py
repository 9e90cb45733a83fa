"""Geometric (MoNet / Gaussian-mixture) convolution on the icosphere's fixed hex neighbourhoods.

Layout
------
Features are channels-last: ``(B, V, C)`` (batch, vertices of one icosphere level, channels);
every function and module here also accepts an unbatched ``(V, C)`` tensor and then returns
an unbatched result. Vertex ``v`` of level ``n`` is vertex ``v`` of level ``n + 1`` (nested
hierarchy, see ``geomorph_bids.sphere.icosphere``), so "downsampling" a per-vertex signal
to a coarser level is ``x[:, :n_vertices(level)]``.

Semantics of ``GeoConv`` (identical to torch_geometric's ``GMMConv(in, out, dim=2,
kernel_size=K, aggr="mean", root_weight=True)`` run on the edge list "every valid hex slot
(self included, pseudo-coordinate (0, 0)) -> centre")::

    out[v] = 1/|N(v)| * sum_{s in N(v)} sum_k g_k(u[v, s]) * (x[idx[v, s]] @ W_k)
             + x[v] @ W_root + bias
    g_k(u) = exp(-1/2 * sum_d (u_d - mu[k, d])^2 / (1e-15 + sigma[k, d]^2))

where ``N(v)`` are the valid slots of ``hex_neighbourhood(level)`` (7, or 6 for the 12
degree-5 vertices, whose padded slot has weight 0), ``u = pseudo_coords(level)`` (tangent
east/north offsets in units of the level's mean edge length) and ``W_k`` the ``(C_in, C_out)``
block ``k`` of ``weight``. No per-edge message passing: the neighbourhood is a ``(V, 7)``
gather, the Gaussian weights a ``(V, 7, K)`` table recomputed from ``mu``/``sigma`` on each
call, and the rest dense matmuls ("hex form"; timings in docs/benchmarks.md). When ``C_in <= C_out`` the
neighbourhood is aggregated first (``(B, V, K, C_in)``, then one matmul); otherwise the
features are transformed first (``(B, V, K, C_out)``) and then aggregated: the cheaper order.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from torch import Tensor, nn

from geomorph_bids.model.cache import cached_tables
from geomorph_bids.sphere.icosphere import (
    hex_neighbourhood,
    n_vertices,
    pool_index,
    pseudo_coords,
    upsample_parents,
)

__all__ = [
    "GeoConv",
    "HexMaxPool",
    "HexUpsample",
    "hex_tables",
    "hex_max_pool",
    "hex_upsample",
    "hex_laplacian",
]

_EPS = 1e-15  # same guard as torch_geometric's GMMConv: 1 / (eps + sigma^2)


# ---------------------------------------------------------------------------------------------
# index tables (CPU torch tensors, cached per level; never modified in place)
# ---------------------------------------------------------------------------------------------

@cached_tables(maxsize=None)
def hex_tables(level: int) -> tuple[Tensor, Tensor, Tensor]:
    """Hex neighbourhood tables of icosphere ``level`` as CPU tensors (cached; do not modify).

    Returns
    -------
    index : (V, 7) int64, self + 6 counter-clockwise neighbours (padded slot repeats self).
    mask : (V, 7) float32, 1 on valid slots, 0 on padded ones.
    coords : (V, 7, 2) float32, pseudo-coordinates (mean edge length units), 0 when padded.
    """
    index, mask = hex_neighbourhood(level)
    mask_f = mask.astype(np.float32)
    coords = pseudo_coords(level) * mask_f[..., None]
    return (torch.from_numpy(np.array(index, dtype=np.int64)),
            torch.from_numpy(mask_f),
            torch.from_numpy(coords.astype(np.float32)))


@cached_tables(maxsize=None)
def _pool_table(level: int) -> Tensor:
    return torch.from_numpy(np.array(pool_index(level), dtype=np.int64))


@cached_tables(maxsize=None)
def _parent_table(level: int) -> Tensor:
    return torch.from_numpy(np.array(upsample_parents(level), dtype=np.int64))


@cached_tables(maxsize=None)
def _ring_tables(level: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """One-ring tables of ``hex_tables(level)`` for :func:`hex_laplacian`, CPU (cached; do not
    modify): the neighbours' indices (V, 6) int64 and weights (V, 6) of ``dtype``,
    ``1 / |ring(v)|`` on the valid slots and 0 on the padded one."""
    index, mask, _ = hex_tables(level)
    ring = (mask[:, 1:] != 0).to(dtype)
    return index[:, 1:].contiguous(), ring / ring.sum(1, keepdim=True)


def full_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast switched off on ``device``'s type (a no-op context on a device type without
    autocast, e.g. 'meta', where torch.autocast itself raises)."""
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except RuntimeError:
        return contextlib.nullcontext()


def _batched(x: Tensor, n_vertices_expected: int, name: str) -> tuple[Tensor, bool]:
    """(V, C) -> (1, V, C) and a flag to undo it; checks the vertex count."""
    if x.dim() == 2:
        x, squeeze = x.unsqueeze(0), True
    elif x.dim() == 3:
        squeeze = False
    else:
        raise ValueError(f"{name}: expected (B, V, C) or (V, C), got shape {tuple(x.shape)}")
    if x.shape[1] != n_vertices_expected:
        raise ValueError(f"{name}: expected {n_vertices_expected} vertices, got {x.shape[1]}")
    return x, squeeze


def _gather(x: Tensor, index: Tensor) -> Tensor:
    """x (B, V, C), index (V', S) -> (B, V', S, C)."""
    B, _, C = x.shape
    return x.index_select(1, index.reshape(-1)).view(B, index.shape[0], index.shape[1], C)


# ---------------------------------------------------------------------------------------------
# pooling, upsampling, Laplacian
# ---------------------------------------------------------------------------------------------

def hex_max_pool(x: Tensor, level: int, index: Tensor | None = None) -> Tensor:
    """Max over each coarse vertex's fine-level hex neighbourhood: ico-``level`` -> ico-``level-1``.

    Parameters
    ----------
    x : (B, n_vertices(level), C) or (V, C) float.
    level : fine level (1-7).
    index : optional ``pool_index(level)`` already on ``x``'s device (modules pass their
        buffer); padded slots repeat the centre, so they can never win the max wrongly.

    Returns
    -------
    (B, n_vertices(level-1), C): channel-wise max over the (up to) 7 slots.
    """
    x, squeeze = _batched(x, n_vertices(level), "hex_max_pool")
    if index is None:
        index = _pool_table(level).to(x.device)
    out = _gather(x, index).amax(dim=2)
    return out[0] if squeeze else out


def hex_upsample(x: Tensor, level: int, parents: Tensor | None = None) -> Tensor:
    """Upsample ico-``level-1`` -> ico-``level``: kept vertices copy, new ones average their parents.

    Parameters
    ----------
    x : (B, n_vertices(level-1), C) or (V, C) float.
    level : target (fine) level (1-7).
    parents : optional ``upsample_parents(level)`` already on ``x``'s device.

    Returns
    -------
    (B, n_vertices(level), C).
    """
    x, squeeze = _batched(x, n_vertices(level - 1), "hex_upsample")
    if parents is None:
        parents = _parent_table(level).to(x.device)
    new = 0.5 * (x.index_select(1, parents[:, 0]) + x.index_select(1, parents[:, 1]))
    out = torch.cat([x, new], dim=1)
    return out[0] if squeeze else out


class _RingMean(torch.autograd.Function):
    """``sum_s ring[v, s] * x[nbr[v, s]]`` (B, V, C) for the cached symmetric one-ring tables.

    The backward pass is a gather too: u is in ring(v) exactly when v is in ring(u), so the
    adjoint at v is the sum over its ring of ``grad[u] / |ring(u)|``. Autograd's own adjoint
    of the forward gather is a scatter-add (``index_add_`` of 6 V slices of C values), which cost
    5-10x the forward on the optimiser's control grids. Equal to it up to float rounding (the
    order of the sum)."""

    @staticmethod
    def forward(ctx, x: Tensor, nbr: Tensor, ring: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(nbr, ring)
        return torch.einsum("vs,bvsc->bvc", ring, _gather(x, nbr))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        nbr, ring = ctx.saved_tensors
        per_neighbour = grad * ring.amax(1)[None, :, None]          # grad[u] / |ring(u)|
        valid = (ring != 0).to(grad.dtype)
        return torch.einsum("vs,bvsc->bvc", valid, _gather(per_neighbour, nbr)), None, None


def hex_laplacian(x: Tensor, level: int, index: Tensor | None = None,
                  mask: Tensor | None = None) -> Tensor:
    """Graph (umbrella) Laplacian on ico-``level``: mean of the one-ring neighbours minus the centre.

    Parameters
    ----------
    x : (B, n_vertices(level), C) or (V, C) float, any per-vertex signal (e.g. a warp in mm).
    level : the icosphere level ``x`` lives on (0-7).
    index, mask : optional ``hex_neighbourhood`` index (V, 7) int64 and mask (V, 7) (bool or
        0/1 float) on ``x``'s device (e.g. a GeoConv's ``index`` / ``slot_mask`` buffers).

    Returns
    -------
    Same shape as ``x``: ``mean_{j in ring(v)} x[j] - x[v]`` (6 or 5 neighbours; the padded
    slot and the centre slot are excluded). Zero for constant signals. With the cached tables
    (no ``index``/``mask``) its gradient is computed by a gather over the symmetric one-ring.
    """
    x, squeeze = _batched(x, n_vertices(level), "hex_laplacian")
    if index is None or mask is None:  # the cached tables, built once per level
        nbr, ring = (t.to(x.device) for t in _ring_tables(level, x.dtype))   # (V, 6) each
        out = _RingMean.apply(x, nbr, ring) - x
    else:
        ring = (mask[:, 1:] != 0).to(x.dtype)
        ring = ring / ring.sum(1, keepdim=True)
        out = torch.einsum("vs,bvsc->bvc", ring, _gather(x, index[:, 1:])) - x
    return out[0] if squeeze else out


class HexMaxPool(nn.Module):
    """Module form of :func:`hex_max_pool` (ico-``level`` -> ico-``level-1``); moves with ``.to()``."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = int(level)
        self.register_buffer("index", _pool_table(self.level).clone(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """(B, n_vertices(level), C) -> (B, n_vertices(level-1), C)."""
        return hex_max_pool(x, self.level, self.index)

    def extra_repr(self) -> str:
        return f"level={self.level}"


class HexUpsample(nn.Module):
    """Module form of :func:`hex_upsample` (ico-``level-1`` -> ico-``level``)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = int(level)
        self.register_buffer("parents", _parent_table(self.level).clone(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """(B, n_vertices(level-1), C) -> (B, n_vertices(level), C)."""
        return hex_upsample(x, self.level, self.parents)

    def extra_repr(self) -> str:
        return f"level={self.level}"


# ---------------------------------------------------------------------------------------------
# the convolution
# ---------------------------------------------------------------------------------------------

class GeoConv(nn.Module):
    """Gaussian-mixture (MoNet) convolution on icosphere ``level``: (B, V, C_in) -> (B, V, C_out).

    Parameters
    ----------
    in_channels, out_channels : channel counts.
    level : icosphere level (0-7) the layer runs on (V = n_vertices(level)).
    kernels : number of Gaussian kernels K (10 in GeoMorph).
    bias : learn an additive bias (C_out,).
    root_weight : add ``x[v] @ W_root`` (GMMConv's default, used by GeoMorph).

    Learnable parameters
    --------------------
    mu : (K, 2) kernel means in pseudo-coordinate units (mean edge lengths).
    sigma : (K, 2) kernel standard deviations (diagonal covariance ``sigma^2``; the sign is
        irrelevant).
    weight : ((K + root_weight) * C_in, C_out): rows ``k*C_in:(k+1)*C_in`` are kernel k's
        ``W_k``; with ``root_weight`` the last ``C_in`` rows are ``W_root``. (torch_geometric
        stores the same numbers as ``g`` (C_in, K*C_out) with ``g[c, k*C_out + m] =
        W_k[c, m]`` and ``root.weight = W_root.T``.)
    bias : (C_out,) or None.

    The index tables are non-persistent buffers: ``.to(device)`` moves them and they are not
    in the ``state_dict``. On the CPU they are the level's cached tables (:func:`hex_tables`),
    shared by every layer on that level: never write into them.
    """

    def __init__(self, in_channels: int, out_channels: int, level: int, kernels: int = 10,
                 bias: bool = True, root_weight: bool = True) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1 or kernels < 1:
            raise ValueError("in_channels, out_channels and kernels must be >= 1")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.level = int(level)
        self.kernels = int(kernels)
        self.root_weight = bool(root_weight)
        self.n_vertices = n_vertices(self.level)
        index, agg, coords = hex_tables(self.level)
        # the level's cached tables themselves, shared by every layer on the level (nothing
        # writes into them; .to() and dtype casts make new tensors): copying them cost a
        # network's first load 0.1-0.3 s and ~1-5 MB per layer
        self.register_buffer("index", index, persistent=False)
        self.register_buffer("slot_mask", agg, persistent=False)
        self.register_buffer("coords", coords, persistent=False)
        n_blocks = self.kernels + int(self.root_weight)
        self.mu = nn.Parameter(torch.empty(self.kernels, 2))
        self.sigma = nn.Parameter(torch.empty(self.kernels, 2))
        self.weight = nn.Parameter(torch.empty(n_blocks * self.in_channels, self.out_channels))
        self.bias = nn.Parameter(torch.empty(self.out_channels)) if bias else None
        self._w_cache: tuple | None = None  # inference-only: (mu, sigma, coords ptr, weights)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Means U(-1, 1) (within about one edge of the centre), sigmas U(0.5, 1.5) edges,
        weights Kaiming-uniform for LeakyReLU over fan-in ``(K + root) * C_in``, bias 0."""
        self.mu.uniform_(-1.0, 1.0)
        self.sigma.uniform_(0.5, 1.5)
        bound = math.sqrt(6.0 / self.weight.shape[0])
        self.weight.uniform_(-bound, bound)
        if self.bias is not None:
            self.bias.zero_()

    def gaussian_weights(self) -> Tensor:
        """(V, 7, K) aggregation weights ``g_k(u[v, s]) / |N(v)|`` (parameter dtype), exactly 0
        on padded slots.

        The exponent ``-1/2 sum_d p_kd (u_d - mu_kd)^2`` with ``p = 1 / (1e-15 + sigma^2)`` is
        expanded into one ``(V*7, 5) @ (5, K)`` matmul over ``[u_x^2, u_y^2, u_x, u_y, 1]``
        (3 passes over a (V, 7, K) tensor instead of ~10); always computed outside autocast,
        so bf16 autocast never rounds the exponent. Without autograd (inference) the table is
        cached and reused while ``mu``/``sigma`` hold the same values on the same device.
        """
        mu, sigma = self.mu, self.sigma
        # (a 'meta' tensor holds no values to key a cache by)
        use_cache = not torch.is_grad_enabled() and mu.device.type != "meta"
        if use_cache and self._w_cache is not None:
            c_mu, c_sigma, c_ptr, c_w = self._w_cache
            if (c_ptr == self.coords.data_ptr() and c_mu.dtype == mu.dtype
                    and c_mu.device == mu.device and torch.equal(c_mu, mu)
                    and torch.equal(c_sigma, sigma)):
                return c_w
        with full_precision(mu.device):
            u = self.coords.to(mu.dtype)                               # (V, 7, 2)
            p = 1.0 / (_EPS + sigma.square())                          # (K, 2)
            basis = torch.cat([u.square(), u, torch.ones_like(u[..., :1])], -1)  # (V, 7, 5)
            coef = torch.cat([-0.5 * p.T, (p * mu).T,
                              -0.5 * (p * mu.square()).sum(-1, keepdim=True).T], 0)  # (5, K)
            m = self.slot_mask.to(mu.dtype)
            w = torch.exp(basis @ coef) * (m / m.sum(1, keepdim=True)).unsqueeze(-1)
        if use_cache:  # key: the 2K + 2K parameter values themselves (robust to .data edits)
            self._w_cache = (mu.detach().clone(), sigma.detach().clone(), self.coords.data_ptr(), w)
        return w

    def forward(self, x: Tensor) -> Tensor:
        """x (B, V, C_in) or (V, C_in) float -> (B, V, C_out) or (V, C_out)."""
        x, squeeze = _batched(x, self.n_vertices, "GeoConv")
        if x.shape[-1] != self.in_channels:
            raise ValueError(f"GeoConv: expected {self.in_channels} channels, got {x.shape[-1]}")
        B, V, C = x.shape
        K, M = self.kernels, self.out_channels
        w = self.gaussian_weights()                                # (V, 7, K)
        x2 = x.reshape(B * V, C)
        w_kernels = self.weight[: K * C]                               # (K*C, M)
        if C <= M:  # aggregate first: (B, V, K, C), then one (K*C, M) matmul
            a = torch.einsum("vsk,bvsc->bvkc", w.to(x.dtype), _gather(x, self.index))
            out = a.reshape(B * V, K * C) @ w_kernels
        else:       # transform first: (B, V, K*M), then aggregate the K blocks over the slots
            w_t = w_kernels.view(K, C, M).transpose(0, 1).reshape(C, K * M)
            y = (x2 @ w_t).view(B, V, K * M)
            g = _gather(y, self.index).view(B, V, 7 * K, M)            # (B, V, 7K, M)
            out = torch.einsum("vj,bvjm->bvm", w.reshape(V, 7 * K).to(g.dtype), g)
            out = out.reshape(B * V, M)
        if self.root_weight:  # fused: out + x @ W_root (no concatenation of big tensors)
            out = torch.addmm(out, x2, self.weight[K * C:].to(out.dtype))
        if self.bias is not None:
            out = out + self.bias
        out = out.view(B, V, M)
        return out[0] if squeeze else out

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, level={self.level}, "
                f"kernels={self.kernels}, bias={self.bias is not None}, "
                f"root_weight={self.root_weight}")

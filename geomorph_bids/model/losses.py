"""Training losses (similarity + smoothness) and metrics of a warp.

Similarity, per modality group g (a list of channel indices) with weight w_g:

    loss_g = MSE_g + (1 - CC_g)
    MSE_g  = mean over the valid (vertex, channel) entries of the group, over the batch
    CC_g   = Pearson correlation of warped and fixed over the valid entries of the group,
             computed per sample (all the group's channels pooled), averaged over the batch
    similarity = sum_g w_g * loss_g

"Valid" entries are those where ``fixed != 0`` when ``mask_zeros`` (the medial wall is exactly
0 after normalisation), else all entries.

Smoothness: with the displacement ``u = warp - x`` on icosphere ``level`` (x: the icosphere on
the warp's sphere, unit by default), the hexagonal Laplacian ``lap(u)_i = mean_{j in
N(i)} u_j - u_i`` (:func:`.geoconv.hex_laplacian`: the 5 or 6 one-ring neighbours), and the loss is the
L1 mean ``mean_{b, i, xyz} |lap(u)|``. A constant displacement and the identity give 0; a
rotation R gives ``(R - I) lap(x)`` (small, not zero: the sphere is curved).

Fold barrier (optional, ``fold`` > 0): with ``det_t`` the signed area (triple product
``((b - a) x (c - a)) . a``) of warped triangle t of the data icosphere and ``det0_t`` its
area before warping, ``mean_t relu(0.2 - det_t / det0_t)``: zero while every triangle keeps
at least 20 % of its area, growing linearly as one shrinks towards a fold (the same barrier
as the pair-wise optimisation's, :mod:`.optimise`).

    total = similarity + lam * smoothness + fold * fold_barrier    (lam = 0.5, fold = 0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from geomorph_bids.model.cache import cached_tables
from geomorph_bids.sphere.distortion import distortion, distortion_summary
from geomorph_bids.model.geoconv import hex_laplacian
from geomorph_bids.model.warp import select_rows
from geomorph_bids.sphere.icosphere import icosphere, level_of, unit_icosphere

__all__ = ["similarity_loss", "pearson", "pearson_to", "smoothness_loss", "fold_penalty", "signed_areas", "total_loss",
           "cc_per_channel", "warp_distortion"]

_EPS = 1e-8


def pearson(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None,
            eps: float = _EPS) -> torch.Tensor:
    """Pearson correlation over all but the first dimension.

    Parameters
    ----------
    a, b : (B, ...) float.
    mask : optional (B, ...) bool or float weights (entries to use).
    eps : added to the denominator (a constant input gives 0, not NaN).

    Returns
    -------
    (B,) correlations; 0 for a constant input (``eps`` guards the denominator).
    """
    a = a.reshape(a.shape[0], -1)
    return pearson_to(b, torch.ones_like(a) if mask is None else mask, eps)(a)


def pearson_to(b: torch.Tensor, mask: torch.Tensor, eps: float = _EPS) -> Callable[[torch.Tensor], torch.Tensor]:
    """:func:`pearson` against a fixed ``b`` (B, ...) with ``mask`` (B, ...): the function
    ``a -> pearson(a, b, mask)``, with b's side (its masked mean, centred values and sum of
    squares) computed once here, for a caller that correlates many ``a`` with one ``b`` (an
    optimiser's steps). The same values and gradients as :func:`pearson`, bit for bit."""
    b = b.reshape(b.shape[0], -1)
    m = mask.reshape(b.shape[0], -1).to(b.dtype)
    n = m.sum(1).clamp_min(1.0)
    mb = (b * m).sum(1) / n
    db = (b - mb[:, None]) * m
    ss_b = (db * db).sum(1)

    def correlation(a: torch.Tensor) -> torch.Tensor:
        a = a.reshape(a.shape[0], -1)
        ma = (a * m).sum(1) / n
        da = (a - ma[:, None]) * m
        cov = (da * db).sum(1)
        var = (da * da).sum(1) * ss_b
        return cov / torch.sqrt(var + eps)

    return correlation


def _groups(n_channels: int, groups: Sequence[Sequence[int]] | None,
            weights: Sequence[float] | None) -> tuple[list[list[int]], list[float]]:
    groups = [list(range(n_channels))] if groups is None else [list(map(int, g)) for g in groups]
    if any(len(g) == 0 for g in groups) or any(not 0 <= c < n_channels for g in groups for c in g):
        raise ValueError(f"groups must be non-empty lists of channel indices in 0..{n_channels - 1}")
    weights = [1.0] * len(groups) if weights is None else [float(w) for w in weights]
    if len(weights) != len(groups):
        raise ValueError(f"{len(weights)} weights for {len(groups)} groups")
    return groups, weights


def similarity_loss(warped: torch.Tensor, fixed: torch.Tensor,
                    groups: Sequence[Sequence[int]] | None = None,
                    weights: Sequence[float] | None = None, mask_zeros: bool = True,
                    return_parts: bool = False) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum over modality groups of ``MSE + (1 - CC)`` (see module docstring).

    Parameters
    ----------
    warped, fixed : (B, V, C) float, warped moving and fixed images.
    groups : channel index lists (default: one group of all channels).
    weights : one weight per group (default 1.0 each).
    mask_zeros : use only entries where ``fixed != 0``.
    return_parts : also return a dict ``{"mse": (G,), "cc": (G,)}`` (batch means, detached).

    Returns
    -------
    Scalar tensor (and the parts dict if ``return_parts``).
    """
    if warped.shape != fixed.shape or warped.dim() != 3:
        raise ValueError(f"warped {tuple(warped.shape)} and fixed {tuple(fixed.shape)} "
                         "must have the same (B, V, C) shape")
    groups, weights = _groups(warped.shape[-1], groups, weights)
    total = warped.new_zeros(())
    mses, ccs = [], []
    for g, w in zip(groups, weights):  # a handful of modality groups
        a, b = warped[..., g], fixed[..., g]
        m = (b != 0).to(a.dtype) if mask_zeros else torch.ones_like(a)
        n = m.sum().clamp_min(1.0)
        mse = (((a - b) ** 2) * m).sum() / n
        cc = pearson(a, b, m).mean()
        total = total + w * (mse + (1.0 - cc))
        mses.append(mse.detach())
        ccs.append(cc.detach())
    if return_parts:
        return total, {"mse": torch.stack(mses), "cc": torch.stack(ccs)}
    return total


@cached_tables(maxsize=None)
def _unit_icosphere(level: int) -> torch.Tensor:
    """(V, 3) float64 CPU tensor: icosphere ``level`` on the unit sphere
    (:func:`~geomorph_bids.sphere.icosphere.unit_icosphere` as a tensor)."""
    return torch.from_numpy(unit_icosphere(level).copy())


def smoothness_loss(warp_positions: torch.Tensor, level: int | None = None,
                    radius: float = 1.0) -> torch.Tensor:
    """L1 mean of the hexagonal Laplacian of the displacement ``warp - x``.

    Parameters
    ----------
    warp_positions : (B, V, 3) warp on icosphere ``level`` (see :mod:`.warp`).
    level : icosphere level (default: inferred from V).
    radius : radius of the sphere the warp lives on (1 for :class:`~.warp.Transformer`).

    Returns
    -------
    Scalar tensor ``mean_{b, i, xyz} |lap(warp - radius * x)|``.
    """
    if level is None:
        level = level_of(warp_positions.shape[1])
    x = _unit_icosphere(level).to(device=warp_positions.device, dtype=warp_positions.dtype) * radius
    return hex_laplacian(warp_positions - x, level).abs().mean()


def signed_areas(points: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(B, F) triple products ``((b - a) x (c - a)) . a`` of the triangles ``faces`` (F, 3) of
    ``points`` (B, V, 3): twice the area (times the radius) for outward-wound triangles,
    negative for folded ones."""
    a, b, c = (select_rows(points, faces[:, i]) for i in range(3))
    return (torch.cross(b - a, c - a, dim=-1) * a).sum(-1)


def fold_penalty(warp_positions: torch.Tensor, level: int | None = None, floor: float = 0.2) -> torch.Tensor:
    """``mean relu(floor - det / det0)`` over the triangles of icosphere ``level`` warped to
    ``warp_positions`` (B, V, 3), any radius (projected to the unit sphere). Scalar tensor."""
    if level is None:
        level = level_of(warp_positions.shape[1])
    x = _unit_icosphere(level).to(device=warp_positions.device, dtype=warp_positions.dtype)
    faces = torch.from_numpy(np.array(icosphere(level)[1], dtype=np.int64)).to(warp_positions.device)
    w = warp_positions / warp_positions.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    det0 = signed_areas(x[None], faces)
    return torch.relu(floor - signed_areas(w, faces) / det0).mean()


def total_loss(warped: torch.Tensor, fixed: torch.Tensor, warp_positions: torch.Tensor,
               level: int | None = None, groups: Sequence[Sequence[int]] | None = None,
               weights: Sequence[float] | None = None, lam: float = 0.5, mask_zeros: bool = True,
               radius: float = 1.0, fold: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``similarity + lam * smoothness + fold * fold_penalty`` (the last only when ``fold`` > 0).

    Returns the scalar loss and a dict of detached parts: ``similarity``, ``smoothness``,
    ``folding`` (0 when ``fold`` is 0), ``mse`` (G,), ``cc`` (G,).
    """
    sim, parts = similarity_loss(warped, fixed, groups, weights, mask_zeros, return_parts=True)
    smooth = smoothness_loss(warp_positions, level, radius)
    loss = sim + lam * smooth
    folding = torch.zeros((), dtype=loss.dtype, device=loss.device)
    if fold > 0:
        folding = fold_penalty(warp_positions, level)
        loss = loss + fold * folding
    parts = {"similarity": sim.detach(), "smoothness": smooth.detach(), "folding": folding.detach(), **parts}
    return loss, parts


@torch.no_grad()
def cc_per_channel(warped: torch.Tensor, fixed: torch.Tensor, mask_zeros: bool = True) -> torch.Tensor:
    """(B, C) Pearson correlation of each channel (over vertices, ``fixed != 0`` if masked)."""
    B, V, C = warped.shape
    a = warped.transpose(1, 2).reshape(B * C, V)
    b = fixed.transpose(1, 2).reshape(B * C, V)
    m = (b != 0) if mask_zeros else None
    return pearson(a, b, m).reshape(B, C)


@torch.no_grad()
def warp_distortion(warp_positions: torch.Tensor, level: int | None = None,
                    summary: bool = True) -> list[dict]:
    """Distortion of a warp relative to the regular icosphere (one entry per batch element).

    Calls :func:`geomorph_bids.sphere.distortion.distortion` with ``before`` = icosphere
    ``level`` (radius 100) and ``after`` = the warped positions (radius normalised).

    Parameters
    ----------
    warp_positions : (B, V, 3) or (V, 3) warp on icosphere ``level`` (any radius).
    level : the icosphere level (None: from V).
    summary : return :func:`distortion_summary` dicts (``areal_mean_abs``, ``n_folded``, ...)
        instead of the per-vertex arrays.

    Returns
    -------
    list of B dicts.
    """
    w = warp_positions.detach()
    if w.dim() == 2:
        w = w.unsqueeze(0)
    if level is None:
        level = level_of(w.shape[1])
    verts, faces = icosphere(level)
    out = []
    for b in range(w.shape[0]):  # a few samples; the work inside is vectorised
        after = w[b].to(device="cpu", dtype=torch.float64).numpy()
        d = distortion((verts, faces), (after, faces), normalise_radius=True)
        out.append(distortion_summary(d) if summary else d)
    return out

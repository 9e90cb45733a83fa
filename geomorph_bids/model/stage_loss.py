"""One optimiser stage's loss and its gradient, written out by hand, component-first.

:func:`~geomorph_bids.model.optimise.optimise_warp` minimises, per stage and per pair,

    sum_k w_k (1 - CC_k) + lam * mean |lap(ctrl - base)|^2 * 4^c
    + fold * mean relu(0.2 - r) + areal * mean log(max(r, 0.05))^2,      r = det / det0,

over the offsets of the ico-``c`` control points (``ctrl = normalise(base + offset)``, upsampled to
the ico-``d`` data points and sampled barycentrically in the moving image's triangles).
Autograd spent most of a step on small reductions over the last axis of (B, N, 3) tensors (the
norms, the triple products, the barycentric einsum's batched 3x3 products) and on their
backward nodes. Here every point set is held **component-first**, (3, B, N): a norm or a dot
product is one product and one sum over the first axis, a cross product two products of rolled
copies, and the gradient is the chain rule of the same expressions, written out. One step at
ico-4 control points / ico-5 data points takes ~1.0 ms instead of ~2.7 on one CPU thread. The values are those of the autograd
loss up to float32 rounding (the order of a few sums), and so are the gradients
(``tests/model/test_stage_loss.py`` compares both).

With the whole-warp bending (``OptimiseConfig.bend_total``, the short refinement after a
network) the bending term measures ``normalise(total(ctrl)) - base`` instead of ``ctrl - base``:
the warp so far (``total``, on ico-6) sampled barycentrically at the moving control points; the
caller hands in the ico-6 triangles holding them at each step (``bend=`` of
:meth:`StageLoss.value_and_grad`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..sphere.icosphere import n_vertices
from .geoconv import hex_tables
from .labels import _EPS as _EPS_NORM  # labels.normalise: x / (|x| + eps)
from .losses import _EPS as _EPS_CC    # losses.pearson: cov / sqrt(var + eps)
from .warp import _parents, flat_rows

__all__ = ["StageLoss", "corner_tables", "to_components", "from_components"]

_FLOOR = 0.2        # every control triangle keeps this share of its area (fold barrier)
_AREAL_CLAMP = 0.05  # the areal term's log(max(r, 0.05))


def to_components(x: Tensor) -> Tensor:
    """(B, N, 3) -> (3, B, N), contiguous."""
    return x.permute(2, 0, 1).contiguous()


def from_components(x: Tensor) -> Tensor:
    """(3, B, N) -> (B, N, 3), contiguous."""
    return x.permute(1, 2, 0).contiguous()


def _norm(x: Tensor) -> Tensor:
    return (x * x).sum(0).sqrt()


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(0)


def _cross(a: Tensor, b: Tensor) -> Tensor:
    # component i: a[i+1] b[i+2] - a[i+2] b[i+1] (indices mod 3), as whole rolled tensors
    return a.roll(-1, 0) * b.roll(-2, 0) - a.roll(-2, 0) * b.roll(-1, 0)


def _sample(normals: Tensor, values: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Barycentric sampling at points ``x`` (3, B, N) in their triangles, from the corners'
    ``normals`` (3, 3, B, N) and ``values`` (3, K, B, N): the (K, B, N) samples, the (3, B, N)
    weights and their (B, N) unnormalised sum (gnomonic: triple products, normalised)."""
    raw = (normals * x[None]).sum(1)
    total = raw.sum(0)
    bary = raw / total
    return (values * bary[:, None]).sum(0), bary, total


def _sample_grad(normals: Tensor, values: Tensor, bary: Tensor, total: Tensor, g: Tensor) -> Tensor:
    """Gradient (3, B, N) in the points of :func:`_sample`'s samples, given a gradient ``g``
    (K, B, N) on them (the triangles fixed)."""
    g_bary = (values * g).sum(1)
    g_raw = (g_bary - _dot(g_bary, bary)) / total
    return (normals * g_raw[:, None]).sum(0)


def _normalise_grad(g: Tensor, x: Tensor, r: Tensor) -> Tensor:
    """Gradient through ``x / (r + eps)`` (``r = |x|``) of a gradient ``g`` on its output."""
    re = r + _EPS_NORM
    return g / re - x * (_dot(x, g) / (r * re * re))


class StageLoss:
    """The loss of one optimiser stage for B pairs, and its gradient in the control offsets.

    Parameters
    ----------
    base : (1, Nc, 3) float, the unit ico-``control_level`` vertices (the undeformed grid).
    faces : (F, 3) int64 control triangles; ``area0`` (1, F) their undeformed triple products.
    control_level, data_level : the stage's icosphere levels (``control_level <= data_level``).
    fixed, mask : (B, Nd, K) the fixed image (smoothed as the stage asks) on the first ``Nd =
        n_vertices(data_level)`` template vertices, and where it counts (bool).
    weights : (K,) the channels' weights of ``1 - CC``.
    lam, fold, areal : the bending, fold-barrier and areal weights (``OptimiseConfig``).

    Use: :meth:`points` for the current offsets (3, B, Nc), then, once the caller has the moving
    image's values at the corners of the triangles holding them, :meth:`value_and_grad`.
    """

    def __init__(self, base: Tensor, faces: Tensor, area0: Tensor, control_level: int, data_level: int,
                 fixed: Tensor, mask: Tensor, weights: Tensor, lam: float, fold: float, areal: float) -> None:
        dev, dtype = base.device, base.dtype
        B = fixed.shape[0]
        self.B, self.nc = B, base.shape[1]
        self.base = to_components(base)                                   # (3, 1, Nc)
        self.area0 = area0.reshape(1, -1)
        self.scale = float(4 ** control_level)
        self.lam, self.fold, self.areal = float(lam), float(fold), float(areal)
        self.weights = weights.to(device=dev, dtype=dtype)[:, None, None]  # (K, 1, 1)
        # fixed image's side of the correlation, per channel and pair: (K, B, Nd)
        m = mask.permute(2, 0, 1).to(dtype)
        b = fixed.permute(2, 0, 1)
        n = m.sum(-1, keepdim=True).clamp_min(1.0)
        self.mask, self.count = m, n
        db = (b - (b * m).sum(-1, keepdim=True) / n) * m
        self.db, self.ss_b = db, (db * db).sum(-1, keepdim=True)
        # row indices into (3, B * N) views: the batch's pairs side by side
        self.parents = []
        for level in range(control_level + 1, data_level + 1):
            p = _parents(level).to(dev)
            self.parents.append((self._flat(p[:, 0], n_vertices(level - 1)),
                                 self._flat(p[:, 1], n_vertices(level - 1)), p.shape[0]))
        self.faces = [self._flat(faces[:, i].to(dev), self.nc) for i in range(3)]
        index, slot_mask, _ = hex_tables(control_level)
        valid = (slot_mask[:, 1:] != 0).to(dtype)
        self.ring = (valid / valid.sum(1, keepdim=True)).t().contiguous().to(dev)   # (6, Nc)
        self.valid = valid.t().contiguous().to(dev)                                 # (6, Nc)
        self.inv_count = (1.0 / valid.sum(1)).to(dev)                                        # (Nc,)
        self.neighbours = self._flat(index[:, 1:].t().contiguous().to(dev).reshape(-1), self.nc)
        self._saved: tuple = ()

    def _flat(self, index: Tensor, n: int) -> Tensor:
        """Row indices of ``index`` (N,) into every pair of a (3, B * n) view, pair after pair."""
        return flat_rows(index, self.B, n)

    def _take(self, x: Tensor, flat: Tensor) -> Tensor:
        """(3, B, n) -> (3, B, len(flat) // B): the rows ``flat`` of each pair."""
        return x.reshape(3, -1).index_select(1, flat).reshape(3, self.B, -1)

    @staticmethod
    def _add(into: Tensor, flat: Tensor, values: Tensor) -> None:
        into.view(3, -1).index_add_(1, flat, values.reshape(3, -1))

    def points(self, offset: Tensor) -> Tensor:
        """The stage's data points (3, B, Nd) on the unit sphere for control offsets (3, B, Nc):
        ``upsample_displacement(normalise(base + offset), c, d)``, component-first."""
        y = self.base + offset
        ry = _norm(y)
        ctrl = y / (ry + _EPS_NORM)
        rc = _norm(ctrl)
        x = ctrl / (rc + _EPS_NORM)   # upsample_displacement normalises its input again
        mids = []
        for first, second, n_new in self.parents:
            mid = self._take(x, first) + self._take(x, second)
            rm = _norm(mid)
            mids.append((mid, rm))
            x = torch.cat([x, mid / (rm + _EPS_NORM)], 2)
        self._saved = (y, ry, ctrl, rc, mids, x)
        return x

    def control_points(self) -> Tensor:
        """(B, Nc, 3) unit control points of the last :meth:`points` call."""
        return from_components(self._saved[2])

    def value_and_grad(self, normals: Tensor, values: Tensor, grad: bool = True,
                       bend: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor | None]:
        """(B,) losses at the offsets of the last :meth:`points` call, and their gradient
        (3, B, Nc) in the offsets (None unless ``grad``).

        ``normals``: (3, 3, B, Nd) corner normals of each point's triangle (row i, component j:
        :meth:`~geomorph_bids.model.warp.SphereSampler.face_tables`'s ``[..., i, j]``), and
        ``values``: (3, K, B, Nd) the moving image at its corners. ``bend``: the whole-warp
        bending's (3, 3, B, Nc) normals of the ico-6 triangles holding the control points and
        (3, 3, B, Nc) the warp so far at their corners (:func:`corner_tables`); None: the stage's
        own offsets are bent."""
        y, ry, ctrl, rc, mids, x = self._saved
        warped, bary, total = _sample(normals, values, x)                              # (K, B, Nd)
        m = self.mask
        da = (warped - (warped * m).sum(-1, keepdim=True) / self.count) * m
        cov = (da * self.db).sum(-1, keepdim=True)
        s = torch.sqrt((da * da).sum(-1, keepdim=True) * self.ss_b + _EPS_CC)
        sim = ((1.0 - cov / s) * self.weights).sum(0)[:, 0]                            # (B,)
        if bend is None:
            disp = ctrl - self.base
        else:   # the warp so far at the control points, projected to the sphere
            tri, corner_warp = bend
            warp_at, bary6, total6 = _sample(tri, corner_warp, ctrl)
            r_at = _norm(warp_at)
            disp = warp_at / (r_at + _EPS_NORM) - self.base
        lap = (self._take(disp, self.neighbours).reshape(3, self.B, 6, self.nc) * self.ring).sum(2) - disp
        bending = (lap * lap).sum(0).mean(-1) * self.scale
        a, b, c = (self._take(ctrl, f) for f in self.faces)
        ratio = _dot(_cross(b - a, c - a), a) / self.area0                             # (B, F)
        loss = sim + self.lam * bending + self.fold * torch.relu(_FLOOR - ratio).mean(-1)
        if self.areal:
            loss = loss + self.areal * torch.log(ratio.clamp_min(_AREAL_CLAMP)).square().mean(-1)
        if not grad:
            return loss, None

        # d(sim)/d(warped): each pair's centred correlation (the mean's own term sums to 0)
        g_warped = (self.db / s - (cov * self.ss_b / (s * s * s)) * da) * (m * -self.weights)
        g_x = _sample_grad(normals, values, bary, total, g_warped)                       # (3, B, Nd)
        for (first, second, n_new), (mid, rm) in zip(reversed(self.parents), reversed(mids)):
            kept = g_x.shape[2] - n_new
            g_mid = _normalise_grad(g_x[:, :, kept:], mid, rm)
            g_x = g_x[:, :, :kept].contiguous()
            self._add(g_x, first, g_mid)
            self._add(g_x, second, g_mid)
        g_ctrl = _normalise_grad(g_x, ctrl, rc)
        # bending: the one-ring mean's adjoint is a gather over the (symmetric) one-ring
        g_lap = lap * (2.0 * self.lam * self.scale / self.nc)
        spread = self._take(g_lap * self.inv_count, self.neighbours).reshape(3, self.B, 6, self.nc)
        g_disp = (spread * self.valid).sum(2) - g_lap
        if bend is None:
            g_ctrl = g_ctrl + g_disp
        else:
            g_at = _normalise_grad(g_disp, warp_at, r_at)
            g_ctrl = g_ctrl + _sample_grad(tri, corner_warp, bary6, total6, g_at)
        # the triple product a . (b x c): its gradient in each corner is the other two's cross product
        n_faces = ratio.shape[-1]
        g_ratio = torch.where(ratio < _FLOOR, -self.fold / n_faces, 0.0).to(ratio.dtype)  # two scalars: the default dtype
        if self.areal:
            r = ratio.clamp_min(_AREAL_CLAMP)
            g_ratio = g_ratio + (ratio >= _AREAL_CLAMP).to(r.dtype) * (2.0 * self.areal / n_faces) * torch.log(r) / r
        g_det = g_ratio / self.area0
        self._add(g_ctrl, self.faces[0], g_det * _cross(b, c))
        self._add(g_ctrl, self.faces[1], g_det * _cross(c, a))
        self._add(g_ctrl, self.faces[2], g_det * _cross(a, b))
        return loss, _normalise_grad(g_ctrl, y, ry)


def corner_tables(normals: Tensor, corners: Tensor, image: Tensor) -> tuple[Tensor, Tensor]:
    """The :meth:`StageLoss.value_and_grad` inputs from a look-up: ``normals`` (B, Nd, 3, 3) and
    ``corners`` (B, Nd, 3) int64 of the triangles holding the points
    (:meth:`~geomorph_bids.model.warp.SphereSampler.face_tables`), ``image`` (B, V, K) the moving
    image -> normals (3, 3, B, Nd) and its values at the corners (3, K, B, Nd)."""
    B, nd, _ = corners.shape
    V, K = image.shape[1], image.shape[2]
    flat = corners.permute(2, 0, 1)
    if B > 1:
        flat = flat + (torch.arange(B, device=corners.device) * V)[None, :, None]
    values = image.reshape(B * V, K).index_select(0, flat.reshape(-1)).reshape(3, B, nd, K)
    return normals.permute(2, 3, 0, 1).contiguous(), values.permute(0, 3, 1, 2).contiguous()

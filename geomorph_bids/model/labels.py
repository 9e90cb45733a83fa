"""Label grids: the candidate positions of each control point, and the deformed control points.

Conventions
-----------
Everything here lives on the **unit sphere** (the icospheres of :mod:`geomorph_bids.sphere`
have radius 100 mm; we divide by their radius). The control grid is icosphere level ``c``
and the label grid icosphere level ``l >= c``; the hierarchy is nested, so control point
``i`` is vertex ``i`` of the label icosphere.

For each control point the labels are the ``L`` label-grid vertices nearest to it by angle
(equivalently by chord length), sorted by increasing angle; exact ties (the icosphere is
symmetric, so rings of equidistant vertices are common) are broken by increasing vertex index
after rounding the chord length to 1e-9. Label 0 is therefore always the control point itself
(angle 0): a one-hot on label 0 is the identity.

Deformed control point (the GeoMorph paper's label formulation): with label probabilities ``p`` (B, Ncp, L),
the weights are the L4-sharpened probabilities ``w = p**4 / sum_l p**4`` (``power`` = 4) and
the deformed control point is ``normalise(sum_l w_l * position_l)``.

Note on the authors' code: it applies ``F.normalize(p, p=4)``, i.e. ``p / ||p||_4``, which
only rescales all weights of a control point by one constant; since the weighted sum is then
projected onto the sphere, that is a no-op. We follow the paper's intent (sharpening with
``p**4 / sum p**4``); ``power=1`` reproduces what the authors' code effectively computes.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import nn

from geomorph_bids.sphere.icosphere import MAX_LEVEL, n_vertices, unit_icosphere

__all__ = ["LabelGrid", "label_table", "deform_control_points", "deform_from_logits", "normalise"]

_EPS = 1e-12
_TIE_DECIMALS = 9  # chord lengths are rounded to 1e-9 before tie-breaking by index


def normalise(x: torch.Tensor, eps: float = _EPS) -> torch.Tensor:
    """Project (..., 3) points onto the unit sphere: ``x / (|x| + eps)``."""
    return x / (torch.linalg.vector_norm(x, dim=-1, keepdim=True) + eps)


@lru_cache(maxsize=4)
def _label_index(control_level: int, label_level: int, n_labels: int) -> np.ndarray:
    """(Ncp, L) int64 read-only label table (cached; see :func:`label_table`)."""
    if not 0 <= control_level <= label_level <= MAX_LEVEL:
        raise ValueError(f"need 0 <= control_level ({control_level}) <= label_level ({label_level}) "
                         f"<= {MAX_LEVEL}")
    n_label_vertices = n_vertices(label_level)
    if not 1 <= n_labels <= n_label_vertices:
        raise ValueError(f"n_labels must be in 1..{n_label_vertices} for label level {label_level}, "
                         f"got {n_labels}")
    verts = unit_icosphere(label_level)
    ctrl = verts[: n_vertices(control_level)]
    tree = cKDTree(verts)
    margin = 32
    while True:  # at most a few rounds: widens the query until the last tie group fits
        k = min(n_labels + margin, n_label_vertices)
        dist, idx = tree.query(ctrl, k=k)
        dist = np.asarray(dist).reshape(len(ctrl), k)
        idx = np.asarray(idx).reshape(len(ctrl), k)
        key = np.round(dist, _TIE_DECIMALS)
        order = np.lexsort((idx, key), axis=1)  # by rounded distance, then by vertex index
        key = np.take_along_axis(key, order, 1)
        idx = np.take_along_axis(idx, order, 1)
        # The last kept label's tie group must lie wholly inside the query.
        if k == n_label_vertices or np.all(key[:, n_labels - 1] < key[:, -1]):
            break
        margin *= 4
    index = np.ascontiguousarray(idx[:, :n_labels]).astype(np.int64)
    index.setflags(write=False)
    return index


def label_table(control_level: int, label_level: int, n_labels: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``n_labels`` nearest label-grid vertices of every control point.

    Parameters
    ----------
    control_level : icosphere level of the control grid (0-7).
    label_level : icosphere level of the label grid (``control_level`` .. 7).
    n_labels : L, 1 .. ``n_vertices(label_level)``.

    Returns
    -------
    index : (Ncp, L) int64, label-grid vertex indices, sorted by angle then index; column 0 is
        the control point itself (read-only, cached).
    positions : (Ncp, L, 3) float64, the labels' positions on the unit sphere.
    angles : (Ncp, L) float64, angle (radians) between each label and its control point,
        non-decreasing along rows.
    """
    index = _label_index(int(control_level), int(label_level), int(n_labels))
    verts = unit_icosphere(label_level)
    positions = verts[index]
    ctrl = verts[: len(index)]
    cos = np.clip(np.einsum("nlc,nc->nl", positions, ctrl), -1.0, 1.0)
    angles = np.arccos(cos)
    angles[:, 0] = 0.0
    return index, positions, angles


class LabelGrid(nn.Module):
    """Label positions of every control point, as (non-persistent) buffers.

    Parameters
    ----------
    control_level : icosphere level of the control grid (authors: 4; ours 2..5).
    label_level : icosphere level of the label grid (authors: 6), >= ``control_level``.
    n_labels : L, labels per control point (authors: 600).
    dtype : floating dtype of ``positions``.

    Buffers (rebuilt from the levels, so they are not written to checkpoints)
    -------
    index : (Ncp, L) int64 label-grid vertex indices (column 0: the control point).
    positions : (Ncp, L, 3) label positions on the unit sphere.
    angles : (Ncp, L) angle in radians from the control point, sorted per row.
    control : (Ncp, 3) control points on the unit sphere (``positions[:, 0]``).
    """

    index: torch.Tensor
    positions: torch.Tensor
    angles: torch.Tensor
    control: torch.Tensor

    def __init__(self, control_level: int = 4, label_level: int = 6, n_labels: int = 600,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        index, positions, angles = label_table(int(control_level), int(label_level), int(n_labels))
        positions = torch.tensor(positions, dtype=dtype)
        self.control_level = int(control_level)
        self.label_level = int(label_level)
        self.n_labels = int(n_labels)
        self.register_buffer("index", torch.from_numpy(index.copy()), persistent=False)
        self.register_buffer("positions", positions, persistent=False)
        self.register_buffer("angles", torch.tensor(angles, dtype=dtype), persistent=False)
        self.register_buffer("control", positions[:, 0].clone(), persistent=False)

    @property
    def n_control(self) -> int:
        """Number of control points Ncp."""
        return int(self.index.shape[0])

    def extra_repr(self) -> str:
        return (f"control_level={self.control_level}, label_level={self.label_level}, "
                f"n_labels={self.n_labels}")


def _weighted_position(weights: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """normalise(sum_l weights[b, n, l] * positions[n, l]) -> (B, Ncp, 3)."""
    positions = positions.to(weights.dtype)
    # (Ncp, B, L) @ (Ncp, L, 3): one small matmul per control point, batched.
    out = torch.bmm(weights.transpose(0, 1), positions).transpose(0, 1)
    return normalise(out)


def deform_from_logits(logits: torch.Tensor, grid: LabelGrid | torch.Tensor, power: float = 4.0
                       ) -> torch.Tensor:
    """Deformed control points from label logits (any per-row shift).

    With ``p = softmax(logits)``, ``p**power / sum p**power == softmax(power * logits)``,
    which is what is computed (stable, no log of probabilities).

    Parameters
    ----------
    logits : (B, Ncp, L) float.
    grid : a :class:`LabelGrid` or its ``positions`` (Ncp, L, 3).
    power : sharpening exponent (4: the paper's L4 normalisation; 1: plain expectation).

    Returns
    -------
    (B, Ncp, 3) deformed control points on the unit sphere, dtype of ``logits``.
    """
    positions = grid.positions if isinstance(grid, LabelGrid) else grid
    weights = torch.softmax(logits * power, dim=-1)
    return _weighted_position(weights, positions)


def deform_control_points(probs: torch.Tensor, grid: LabelGrid | torch.Tensor, power: float = 4.0
                          ) -> torch.Tensor:
    """Deformed control points: L4-sharpened probability-weighted label positions.

    Parameters
    ----------
    probs : (B, Ncp, L) label probabilities (non-negative; rows need not sum to 1).
    grid : a :class:`LabelGrid` or its ``positions`` (Ncp, L, 3) on the unit sphere.
    power : sharpening exponent; weights are ``p**power / sum_l p**power`` (4 by default).

    Returns
    -------
    (B, Ncp, 3) deformed control points, projected onto the unit sphere.
    """
    positions = grid.positions if isinstance(grid, LabelGrid) else grid
    # Divide by the row maximum first so that p**power cannot underflow to an all-zero row.
    scaled = probs / probs.amax(dim=-1, keepdim=True).clamp_min(torch.finfo(probs.dtype).tiny)
    weights = scaled.pow(power)
    weights = weights / weights.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(probs.dtype).tiny)
    return _weighted_position(weights, positions)

"""Test-time refinement: a few gradient steps on the control points of one registration.

The trained model gives per-stage deformed control points ``c_i`` (unit sphere). Refinement
keeps the networks fixed and optimises free offsets ``d_i`` (B, Ncp_i, 3), initialised to 0,
of the control points ``normalise(c_i + d_i)`` of the chosen stages with Adam on the training
loss (``similarity + lam * smoothness``, :func:`geomorph_bids.model.losses.total_loss`) of the
composed cascade (:meth:`GeoMorph.forward_from_control`). The result with the lowest loss seen
(the model's own output included) is returned, so refinement never increases the loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from geomorph_bids.model.adam import Adam
from geomorph_bids.model.geomorph import GeoMorph, GeoMorphOutput, _full_precision
from geomorph_bids.model.labels import normalise
from geomorph_bids.model.losses import total_loss

__all__ = ["refine"]


def refine(model: GeoMorph, moving: Tensor, fixed: Tensor, steps: int = 20, lr: float = 2e-3, *,
           lam: float = 0.5, groups: Sequence[Sequence[int]] | None = None,
           weights: Sequence[float] | None = None, mask_zeros: bool = True,
           stages: str = "last", initial: GeoMorphOutput | None = None,
           history: list[float] | None = None) -> GeoMorphOutput:
    """Refine one registration by gradient steps on its control points.

    Parameters
    ----------
    model : a (trained) :class:`GeoMorph`; its parameters are not changed.
    moving, fixed : (B, V_data, K) normalised features (B is usually 1).
    steps : Adam steps (0 returns the model's output).
    lr : Adam learning rate, in unit-sphere units (1e-3 ~ 0.06 degrees per step).
    lam, groups, weights, mask_zeros : loss settings, as in :func:`total_loss`.
    stages : ``"last"`` optimises the last stage's control points, ``"all"`` every stage's.
    initial : the model's output for this pair, if already computed (else it is run once,
        without gradients).
    history : if a list is given, the loss (batch mean) of the model's output and after each
        step is appended to it (``steps + 1`` values).

    Returns
    -------
    :class:`GeoMorphOutput` (detached) with the lowest loss seen; its ``logits`` are the
    model's, its ``control_points`` the refined ones.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if stages not in ("last", "all"):
        raise ValueError(f"stages must be 'last' or 'all', got {stages!r}")
    if initial is None:
        with torch.no_grad():
            initial = model(moving, fixed)
    base = [c.detach().float() for c in initial.control_points]
    chosen = range(len(base)) if stages == "all" else [len(base) - 1]
    offsets = {i: torch.zeros_like(base[i], requires_grad=True) for i in chosen}
    logits = [lg.detach() for lg in initial.logits]

    def loss_of(out: GeoMorphOutput) -> Tensor:
        return total_loss(out.warped, fixed.to(out.warped.dtype), out.warp, level=model.data_level,
                          groups=groups, weights=weights, lam=lam, mask_zeros=mask_zeros)[0]

    def evaluate() -> tuple[Tensor, GeoMorphOutput]:
        controls = [normalise(c + offsets[i]) if i in offsets else c for i, c in enumerate(base)]
        out = model.forward_from_control(moving, controls)
        return loss_of(out), out

    def detached(out: GeoMorphOutput) -> GeoMorphOutput:
        return GeoMorphOutput(warp=out.warp.detach(), warped=out.warped.detach(), logits=logits,
                              control_points=[c.detach() for c in out.control_points],
                              stage_warps=[w.detach() for w in out.stage_warps])

    with _full_precision(moving.device):
        with torch.no_grad():
            best_loss, best = float(loss_of(initial)), detached(initial)
        if history is not None:
            history.append(best_loss)
        if steps > 0:
            optimiser = Adam(offsets.values(), lr=lr)
            for step in range(steps + 1):  # step 0 re-evaluates the model's output, with gradients
                with torch.set_grad_enabled(step < steps):
                    loss, out = evaluate()
                value = float(loss.detach())
                if step > 0:
                    if history is not None:
                        history.append(value)
                    if value < best_loss:
                        best_loss, best = value, detached(out)
                if step < steps:
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
    return best

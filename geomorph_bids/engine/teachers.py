"""Teacher warps for distillation: the per-pair optimiser's registration of a bank source to
the template (no Nipype).

A bank source (:class:`~geomorph_bids.engine.pairgen.SourceBank`) is carried into the
template's space by a reference registration (landmark-constrained, across populations); its
sulcal pattern departs from the template's by about 1 degree (median) at the vertices the
reference pairs. A network trained to reproduce that reference is asked for something its
inputs do not show. The teacher warp is what the per-pair optimiser finds from the maps
themselves; ``geomorph-train --teachers`` starts every generated pair's true warp from it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["teacher_warp"]


def teacher_warp(source: np.ndarray, fixed: np.ndarray, channels: Sequence[str]) -> np.ndarray:
    """The optimiser's pull-back warp registering ``source`` to ``fixed``.

    Parameters
    ----------
    source, fixed : (40962, K) maps on the template's ico-6 grid (raw values; exact 0 = no data,
        e.g. a medial wall).
    channels : their K names, which pick the default registration's schedule and channel weights
        (:func:`~geomorph_bids.engine.model_choice.optimiser_weights`).

    Returns
    -------
    (40962, 3) float32 unit-sphere points: the source's point matched to each template vertex
    (identity where the maps already agree). Deterministic (the optimiser's own guarantee).
    """
    from ..model.normalise import NormalisationSpec
    from ..model.optimise import OptimiseConfig, optimise_warp
    from .model_choice import optimiser_weights

    source, fixed = np.asarray(source, dtype=np.float64), np.asarray(fixed, dtype=np.float64)
    if source.shape != fixed.shape or source.ndim != 2 or source.shape[1] != len(channels):
        raise ValueError(f"source and fixed must both be (V, {len(channels)}); got {source.shape} and {fixed.shape}")
    spec, names = NormalisationSpec(), list(channels)
    mov, fix = spec(source, channel_names=names)[0], spec(fixed, channel_names=names)[0]
    config = OptimiseConfig(channel_weights=optimiser_weights(tuple(channels)))
    warp = optimise_warp(mov, fix, config, mask=(fixed != 0) & (source != 0)).warp  # unit sphere, float64
    return warp.astype(np.float32)

"""Start a network with more input channels from a trained one with fewer (e.g. a multimodal
sulc + curv + myelin network from a sulc network), so that it begins exactly where that one is.

Every layer that reads the raw input (the first convolution of each encoder stream, the encoder
stages that take the raw input again beside the pooled features, the correlation head's first
convolution) is a :class:`~geomorph_bids.model.geoconv.GeoConv` whose weight has one row per
(kernel, input channel) plus one root row per channel, the raw input channels last. The trained
rows are copied to their channel's new place and the new channels' rows are zero, so the widened
network computes the same function as the trained one whatever the new channels hold; training
then learns to use them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

__all__ = ["widen_input_channels", "with_in_channels"]


def with_in_channels(config: Mapping, in_channels: int) -> dict:
    """A copy of a GeoMorph config dict (:meth:`GeoMorphConfig.to_dict` form) whose every stage
    reads ``in_channels`` input channels: the one difference :func:`widen_input_channels`
    bridges, so two configs that agree on this are the same network otherwise."""
    import copy

    config = copy.deepcopy(dict(config))
    for stage in config.get("stages", []):
        stage["network"]["in_channels"] = int(in_channels)
    return config


def widen_input_channels(state: Mapping[str, Tensor], model: nn.Module, old_channels: Sequence[str],
                         new_channels: Sequence[str]) -> dict[str, Tensor]:
    """``state`` (a network trained on ``old_channels``) laid out for ``model`` (the same
    architecture on ``new_channels``, which must contain every old channel).

    Returns a state dict for ``model``: tensors whose shape did not change are ``state``'s;
    the input-reading GeoConv weights are widened (old channels copied to their new positions,
    new channels zero). Raises ValueError when the two differ in anything else.
    """
    old, new = list(old_channels), list(new_channels)
    missing = [c for c in old if c not in new]
    if missing:
        raise ValueError(f"the new channels {new} lack {missing}, which the trained network reads")
    target = model.state_dict()
    if set(target) != set(state):
        raise ValueError("the trained network and the new one have different layers")
    out: dict[str, Tensor] = {}
    for name, value in state.items():
        want = target[name]
        if want.shape == value.shape:
            out[name] = value
            continue
        module = model.get_submodule(name.rsplit(".", 1)[0])
        kernels = getattr(module, "kernels", None)
        if kernels is None or not name.endswith(".weight") or value.dim() != 2 or value.shape[1] != want.shape[1]:
            raise ValueError(f"{name}: {tuple(value.shape)} -> {tuple(want.shape)} is not an input-channel change")
        blocks = kernels + 1  # one row block per kernel, then the root weight
        c_old, c_new = value.shape[0] // blocks, want.shape[0] // blocks
        features = c_old - len(old)
        if c_old * blocks != value.shape[0] or c_new * blocks != want.shape[0] or c_new - len(new) != features:
            raise ValueError(f"{name}: {tuple(value.shape)} -> {tuple(want.shape)} is not an input-channel change")
        place = list(range(features)) + [features + new.index(c) for c in old]
        widened = torch.zeros_like(want)
        for k in range(blocks):
            widened[[k * c_new + p for p in place]] = value[k * c_old:(k + 1) * c_old]
        out[name] = widened
    return out

"""A network widened to more input channels starts as the trained one: same warp whatever the
new channels hold; anything but an input-channel change is refused."""

from __future__ import annotations

import copy

import pytest
import torch

from geomorph_bids.model.geomorph import GeoMorph, GeoMorphConfig, tiny_config
from geomorph_bids.model.widen import widen_input_channels


def _configs():
    one = tiny_config(in_channels=1, data_level=3, control_level=2, n_labels=12)
    d = one.to_dict()
    for stage in d["stages"]:
        stage["correlation"] = True  # the correlation head reads the raw input too
    one = GeoMorphConfig.from_dict(d)
    three = copy.deepcopy(d)
    for stage in three["stages"]:
        stage["network"]["in_channels"] = 3
    return one, GeoMorphConfig.from_dict(three)


def test_widened_network_computes_the_trained_one_whatever_the_new_channels_hold():
    one, three = _configs()
    torch.manual_seed(0)
    trained = GeoMorph(one).eval()
    for p in trained.parameters():  # non-trivial weights everywhere
        p.data.add_(0.05 * torch.randn_like(p))
    wide = GeoMorph(three).eval()
    state = widen_input_channels(trained.state_dict(), wide, ["sulc"], ["curv", "sulc", "myelin"])
    changed = [k for k, v in state.items() if v.shape != trained.state_dict()[k].shape]
    assert changed and all(k.endswith("conv1.weight") for k in changed)
    wide.load_state_dict(state)
    assert (trained.stages[0].network.config.in_channels, wide.stages[0].network.config.in_channels) == (1, 3)
    gen = torch.Generator().manual_seed(1)
    mov = torch.randn(2, 642, 3, generator=gen)
    fix = torch.randn(2, 642, 3, generator=gen)
    with torch.no_grad():
        ref = trained(mov[..., 1:2], fix[..., 1:2]).warp  # sulc is the new network's channel 1
        out = wide(mov, fix).warp
        other = wide(torch.cat([mov[..., :1] * 5, mov[..., 1:2], -mov[..., 2:]], -1), fix).warp
    assert torch.allclose(out, ref, atol=1e-5) and torch.allclose(other, ref, atol=1e-5)
    # the new channels' weights are zero, not absent: they train
    w = state[changed[0]]
    assert w.abs().sum() > 0 and w.shape[0] == 3 * (w.shape[0] // 3)


def test_only_an_input_channel_change_is_bridged():
    one, three = _configs()
    trained = GeoMorph(one)
    with pytest.raises(ValueError, match="lack"):
        widen_input_channels(trained.state_dict(), GeoMorph(three), ["sulc"], ["curv", "myelin", "thickness"])
    other = GeoMorph(tiny_config(in_channels=3, data_level=3, control_level=2, n_labels=20))
    with pytest.raises(ValueError):
        widen_input_channels(trained.state_dict(), other, ["sulc"], ["sulc", "curv", "myelin"])

"""engine.checkpoints: a checkpoint's forward passes (config["inference"]["passes"])."""

from __future__ import annotations

import pytest

from geomorph_bids.engine.checkpoints import MAX_PASSES, network_passes
from geomorph_bids.errors import InputError


def test_passes_default_to_one_pass_smoothed_once():
    assert network_passes({}) == (1,)
    assert network_passes({"geomorph": {}, "inference": {}}) == (1,)


def test_passes_are_read_in_order():
    assert network_passes({"inference": {"passes": [2, 4, 8]}}) == (2, 4, 8)
    assert network_passes({"inference": {"passes": [1] * MAX_PASSES}}) == (1,) * MAX_PASSES


@pytest.mark.parametrize("passes", [[], [0], [1.5], [True], "2", [1] * (MAX_PASSES + 1), [65], None])
def test_bad_passes_are_refused_on_one_line_naming_the_checkpoint(passes, tmp_path):
    with pytest.raises(InputError, match="inference.passes must be a list of 1 to 5 whole numbers") as err:
        network_passes({"inference": {"passes": passes}}, tmp_path / "m.pt")
    assert "\n" not in str(err.value) and "m.pt" in str(err.value)


def test_an_inference_entry_that_is_no_mapping_is_refused():
    with pytest.raises(InputError, match="inference.passes"):
        network_passes({"inference": [2, 4]})

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
    with pytest.raises(InputError, match=r"config inference must be a mapping .*got \[2, 4\]"):
        network_passes({"inference": [2, 4]})


@pytest.mark.parametrize("inference, needle", [({"pases": [2, 4, 8]}, "'pases'"),
                                               ({"passes": [2, 4], "note": "x"}, "'note'")])
def test_an_inference_key_this_version_does_not_read_is_refused(inference, needle, tmp_path):
    """Round twenty: a misspelt key (`pases`, a checkpoint edited by hand) or one from a newer
    version registered in one pass, silently, instead of as the checkpoint asks."""
    with pytest.raises(InputError, match="inference") as err:
        network_passes({"inference": inference}, tmp_path / "m.pt")
    assert needle in str(err.value) and "passes" in str(err.value) and "m.pt" in str(err.value)


def test_inference_null_is_named_as_such():
    """Round twenty: `inference: null` was reported as `inference.passes ... got None`."""
    with pytest.raises(InputError, match=r"config inference must be a mapping .*got None"):
        network_passes({"inference": None})


def test_a_huge_passes_list_is_not_printed_whole():
    """Round twenty: the one error line held every entry of a list of any length."""
    with pytest.raises(InputError, match="inference.passes") as err:
        network_passes({"inference": {"passes": list(range(1, 100_000))}})
    assert len(str(err.value)) < 400 and "99999 entries" in str(err.value)


def test_a_checkpoint_is_built_once_per_process_until_its_file_changes(tmp_path):
    """load_model keeps the network read from a file for the next registration (same file, same
    device): the same module; a rewritten file (another mtime or size) is read again."""
    import os

    import torch

    from geomorph_bids.engine.checkpoints import load_model
    from geomorph_bids.model.checkpoint import CheckpointMeta, save_checkpoint
    from geomorph_bids.model.geomorph import GeoMorph, tiny_config

    torch.manual_seed(0)
    net = GeoMorph(tiny_config(data_level=3, control_level=2, n_labels=10))
    meta = CheckpointMeta(name="tiny", template="fsLR", hemisphere="L", channels=("sulc",),
                          config=net.config.to_dict())
    path = save_checkpoint(tmp_path / "m.pt", net.state_dict(), meta)
    a = load_model(path, ["sulc"], "fsLR", "L", torch.device("cpu"))
    b = load_model(str(path), ["sulc"], "fsLR", "L", torch.device("cpu"))
    assert a.net is b.net and not a.net.training
    with torch.no_grad():
        next(net.parameters()).add_(1.0)
    save_checkpoint(path, net.state_dict(), meta)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a new mtime whatever the clock's grain
    c = load_model(path, ["sulc"], "fsLR", "L", torch.device("cpu"))
    assert c.net is not a.net
    assert torch.equal(next(c.net.parameters()), next(net.parameters()))
    assert not torch.equal(next(c.net.parameters()), next(a.net.parameters()))


def test_a_checkpoint_replaced_by_one_of_the_same_size_and_mtime_is_read_again(tmp_path):
    """Round twenty-six: the cache was keyed by mtime and size, and a checkpoint replaced by another
    of the same architecture (same size) with its mtime kept (`cp -p`, `rsync -t`, `tar x`), or a
    link pointed at such a file, kept the old network for the rest of the process."""
    import os
    import shutil

    import torch

    from geomorph_bids.engine.checkpoints import load_model
    from geomorph_bids.model.checkpoint import CheckpointMeta, save_checkpoint
    from geomorph_bids.model.geomorph import GeoMorph, tiny_config

    torch.manual_seed(0)
    net = GeoMorph(tiny_config(data_level=3, control_level=2, n_labels=10))
    meta = CheckpointMeta(name="tiny", template="fsLR", hemisphere="L", channels=("sulc",),
                          config=net.config.to_dict())
    old = save_checkpoint(tmp_path / "old.pt", net.state_dict(), meta)
    with torch.no_grad():
        next(net.parameters()).add_(1.0)
    new = save_checkpoint(tmp_path / "new.pt", net.state_dict(), meta)
    st = old.stat()
    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert new.stat().st_size == st.st_size
    cpu = torch.device("cpu")

    def first(model) -> torch.Tensor:
        return next(model.net.parameters()).detach()

    path = tmp_path / "model.pt"
    shutil.copy2(old, path)
    a = load_model(path, ["sulc"], "fsLR", "L", cpu)
    shutil.copy2(new, path)  # the same size and mtime, other bytes
    assert path.stat().st_mtime_ns == st.st_mtime_ns
    b = load_model(path, ["sulc"], "fsLR", "L", cpu)
    assert torch.equal(first(b), next(net.parameters()).detach()) and not torch.equal(first(a), first(b))

    link = tmp_path / "current.pt"
    link.symlink_to(old)
    c = load_model(link, ["sulc"], "fsLR", "L", cpu)
    link.unlink()
    link.symlink_to(new)
    d = load_model(link, ["sulc"], "fsLR", "L", cpu)
    assert not torch.equal(first(c), first(d)) and torch.equal(first(d), first(b))
    assert load_model(link, ["sulc"], "fsLR", "L", cpu).net is d.net  # unchanged: still kept


def test_loading_a_checkpoint_leaves_the_callers_random_sequence_alone(tmp_path):
    """Building the network drew its random initial weights (replaced at once by the checkpoint's)
    from torch's global generator: after ``torch.manual_seed(0)`` the first ``register(...,
    model=...)`` of a process changed every later ``torch.randn`` of the caller's (a seeded
    notebook's numbers depended on whether a network had been loaded yet)."""
    import torch

    from geomorph_bids.engine.checkpoints import load_model
    from geomorph_bids.model.checkpoint import CheckpointMeta, save_checkpoint
    from geomorph_bids.model.geomorph import GeoMorph, tiny_config

    net = GeoMorph(tiny_config(data_level=3, control_level=2, n_labels=10))
    meta = CheckpointMeta(name="tiny", template="fsLR", hemisphere="L", channels=("sulc",),
                          config=net.config.to_dict())
    path = save_checkpoint(tmp_path / "seeded.pt", net.state_dict(), meta)
    torch.manual_seed(0)
    expected = torch.randn(4)
    torch.manual_seed(0)
    loaded = load_model(path, ["sulc"], "fsLR", "L", torch.device("cpu"))
    assert torch.equal(torch.randn(4), expected)
    assert torch.equal(next(loaded.net.parameters()), next(net.parameters()))


def test_a_network_for_other_channels_or_another_hemisphere_is_refused_naming_its_file(tmp_path):
    """A checkpoint trained on sulc given curv, or trained for hemi-L given hemi-R: an InputError that
    names the checkpoint (was a bare ValueError: geomorph-register's line named no file or hemisphere)."""
    import pytest
    import torch

    from geomorph_bids.engine.checkpoints import load_model
    from geomorph_bids.errors import InputError
    from geomorph_bids.model.checkpoint import CheckpointMeta, save_checkpoint
    from geomorph_bids.model.geomorph import GeoMorph, tiny_config

    net = GeoMorph(tiny_config(data_level=3, control_level=2, n_labels=10))
    meta = CheckpointMeta(name="tiny", template="fsLR", hemisphere="L", channels=("sulc",),
                          config=net.config.to_dict())
    path = save_checkpoint(tmp_path / "m.pt", net.state_dict(), meta)
    with pytest.raises(InputError) as e:
        load_model(path, ["curv"], "fsLR", "L", torch.device("cpu"))
    assert str(e.value).startswith(f"{path}: model 'tiny' expects channels [sulc]") and "missing: sulc" in str(e.value)
    with pytest.raises(InputError) as e:
        load_model(path, ["sulc"], "fsLR", "R", torch.device("cpu"))
    assert str(e.value) == f"{path}: model 'tiny' was trained for hemisphere L only; input is hemisphere R"
    assert str(e.value.with_context(hemi="R")).startswith(f"hemi-R {path}: ")

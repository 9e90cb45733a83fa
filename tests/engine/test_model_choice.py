"""engine/model_choice.py: the model argument decided once into a typed choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from geomorph_bids.engine.model_choice import (ModelChoice, default_registration, network, optimiser,
                                               resolve_model, rigid)
from geomorph_bids.errors import InputError
from geomorph_bids.resources import bundled_models, model_path


def test_default_is_decided_per_template_in_one_place():
    for spec in (None, "", "default"):
        choice = resolve_model(spec, "fsaverage")
        assert choice == default_registration("fsaverage")
        assert choice.kind == "optimise" and choice.name == "default" and choice.channels == ("sulc", "curv")
    assert resolve_model("default", "fsLR").channels == ("sulc",)
    assert resolve_model("default", "myPopulation").channels == ("sulc",)  # a custom template: sulc
    assert default_registration("fsLR").register_arguments() == {"model": None, "rigid_only": False,
                                                                  "optimise": True}


def test_rigid_runs_on_the_cpu_without_resolving_a_device():
    choice = resolve_model("rigid", "fsLR")
    assert choice == rigid() and choice.rigid_only and choice.channels == ("sulc",)
    assert choice.resolve_device("cuda:7") == "cpu"  # no CUDA needed for the rigid stage
    assert choice.register_arguments()["rigid_only"] is True


@pytest.mark.skipif(not bundled_models(), reason="no bundled model installed")
def test_bundled_network_reads_its_channels_from_the_checkpoint():
    name = "multimodal-fsLR" if "multimodal-fsLR" in bundled_models() else bundled_models()[0]
    choice = resolve_model(name, "fsLR")
    assert choice.kind == "network" and choice.name == name and choice.checkpoint == model_path(name).absolute()
    assert len(choice.channels) >= 1 and choice.register_arguments()["model"] == str(choice.checkpoint)
    assert ModelChoice.from_dict(choice.to_dict()) == choice


def test_checkpoint_path_is_recorded_absolute(tmp_path, monkeypatch):
    from geomorph_bids.model.checkpoint import CheckpointMeta, save_checkpoint
    from geomorph_bids.model.geomorph import GeoMorph, tiny_config

    net = GeoMorph(tiny_config(in_channels=2))
    save_checkpoint(tmp_path / "ck.pt", net.state_dict(),
                    CheckpointMeta(name="tiny", template="fsLR", hemisphere="L", channels=("sulc", "curv"),
                                   config={"geomorph": net.config.to_dict()}))
    monkeypatch.chdir(tmp_path)
    choice = resolve_model("ck.pt", "fsLR")
    assert choice.kind == "network" and choice.name == str(tmp_path / "ck.pt")
    assert choice.checkpoint == tmp_path / "ck.pt" and choice.channels == ("sulc", "curv")
    with pytest.raises(InputError, match="model checkpoint not found"):
        network("missing.pt")


def test_invalid_choices_are_refused():
    with pytest.raises(ValueError, match="kind"):
        ModelChoice("magic", "x")
    with pytest.raises(ValueError, match="checkpoint"):
        ModelChoice("optimise", "default", checkpoint=model_path("x"))
    with pytest.raises(ValueError, match="checkpoint"):
        ModelChoice("network", "n")


def test_optimise_schedule_survives_the_round_trip():
    from geomorph_bids.model.optimise import OptimiseConfig

    cfg = OptimiseConfig(steps=(5, 5, 5))
    choice = ModelChoice("network", "n", ("sulc",), model_path("/m.pt"), cfg)
    back = ModelChoice.from_dict(choice.to_dict())
    assert back.optimise == cfg and back.checkpoint == choice.checkpoint


def test_a_networks_forward_passes_come_from_its_checkpoint_and_survive_the_round_trip():
    """sulc-fsaverage registers in three passes (its checkpoint's config["inference"]); the
    networks without the entry in one; the methods text says which."""
    from geomorph_bids.cli.methods import method_text as _method_text

    cascade, single = network("sulc-fsaverage", optimise=False), network("sulc-fsLR", optimise=False)
    assert cascade.passes == (2, 4, 8) and single.passes == (1,) and optimiser("fsLR").passes == (1,)
    assert ModelChoice.from_dict(cascade.to_dict()) == cascade
    assert ModelChoice.from_dict({k: v for k, v in single.to_dict().items() if k != "passes"}) == single
    assert "in 3 forward passes" in _method_text(cascade) and "in one forward pass" in _method_text(single)


def test_a_network_for_the_other_template_is_refused_before_any_work():
    """--model sulc-fsaverage with the default --template fsLR: one line saying what to add,
    at argument time (it failed per hemisphere, in the register node, with crash files)."""
    from geomorph_bids.engine.model_choice import resolve_model
    from geomorph_bids.errors import InputError

    with pytest.raises(InputError) as e:
        resolve_model("sulc-fsaverage", "fsLR")
    msg = str(e.value)
    assert "\n" not in msg and "trained for template fsaverage, not fsLR" in msg
    assert "--template fsaverage" in msg and "sulc-fsLR" in msg
    assert resolve_model("sulc-fsaverage", "fsaverage").channels == ("sulc",)
    # a custom template (a population average built on fsLR): it failed per hemisphere, in the
    # register node, with crash files (round five); now the same one line up front
    with pytest.raises(InputError, match="template myPopulation is another one.*--model default"):
        resolve_model("sulc-fsLR", "myPopulation")


@pytest.mark.skipif("sulc-fsLR" not in bundled_models(), reason="no bundled sulc-fsLR")
def test_no_refinement_is_decided_with_the_model_and_needs_a_network():
    alone = resolve_model("sulc-fsLR", "fsLR", refine=False)
    assert alone.kind == "network" and alone.optimise is False
    assert alone.register_arguments()["optimise"] is False
    assert "refined" not in alone.describe() and "refined" in resolve_model("sulc-fsLR", "fsLR").describe()
    assert ModelChoice.from_dict(alone.to_dict()) == alone
    for spec in ("default", None, "rigid"):  # nothing to run without the refinement
        with pytest.raises(InputError, match="--no-optimise .* runs no network"):
            resolve_model(spec, "fsLR", refine=False)


def test_full_refinement_is_the_optimisers_schedule_from_the_networks_low_passed_warp():
    """--refine full: the optimiser's whole schedule, started from the network's warp low-passed
    8 times more (FROM_NETWORK); it survives the trip to the workflow's nodes and needs a network."""
    from geomorph_bids.model.optimise import FROM_NETWORK, OptimiseConfig

    assert FROM_NETWORK == OptimiseConfig(start_lowpass=8)
    full = resolve_model("sulc-fsaverage", "fsaverage", refine="full")
    assert full.optimise == FROM_NETWORK and full.register_arguments()["optimise"] == FROM_NETWORK
    assert ModelChoice.from_dict(full.to_dict()) == full
    assert "optimised for this hemisphere" in full.describe() and "refined" not in full.describe()
    assert resolve_model("sulc-fsaverage", "fsaverage", refine="short").optimise is True
    for spec in ("default", None, "rigid"):
        with pytest.raises(InputError, match="--refine full optimises the warp from a network's.* runs no network"):
            resolve_model(spec, "fsaverage", refine="full")
    with pytest.raises(ValueError, match="refine must be"):
        resolve_model("sulc-fsaverage", "fsaverage", refine="long")


def test_refine_of_any_value_needs_a_network():
    """--refine short (the network's default refinement, given explicitly) without a network was
    silently accepted while --refine full was refused: both are refused the same way now; left out
    (refine=True) the default registration runs."""
    for spec in ("default", None, "rigid"):
        for refine in ("short", "full"):
            with pytest.raises(InputError, match=f"--refine {refine} .* runs no network.*or leave --refine out"):
                resolve_model(spec, "fsaverage", refine=refine)
        assert resolve_model(spec, "fsaverage").kind != "network"


def test_the_optimiser_weighs_curv_less_than_sulc_for_fsaverage_only():
    from geomorph_bids.engine.model_choice import optimiser_weights

    assert optimiser_weights(("sulc", "curv")) == (0.7, 0.3)
    assert optimiser_weights(["curv", "sulc"]) == (0.3, 0.7)  # in the channels' order
    assert optimiser_weights(("sulc",)) is None and optimiser_weights(("sulc", "curv", "myelin")) is None


@pytest.mark.parametrize("given, meant", [("Rigid", "rigid"), ("DEFAULT", "default"), ("sulc-fslr", "sulc-fsLR")])
def test_a_model_name_in_another_case_gets_did_you_mean(given, meant):
    """As --template fslr gets 'did you mean fsLR?'; before, --model Rigid got only the list."""
    if meant not in ("rigid", "default") and meant not in bundled_models():
        pytest.skip(f"{meant} is not installed")
    with pytest.raises(InputError, match=f"model checkpoint not found; did you mean {meant}\\? \\(use default"):
        network(given)


def test_a_trained_networks_folder_stands_for_its_model_pt(tmp_path):
    """``model="my_model"`` (the folder ``geomorph-train --out my_model`` wrote) was refused by
    ``register()`` ("is a folder, not a regular file") and by ``--model`` ("model checkpoint not
    found", though it was there). A folder holding ``model.pt`` stands for that file, as ``--resume``
    reads a folder as its ``last.pt``; a folder without one says so."""
    import shutil

    folder = tmp_path / "my_model"
    folder.mkdir()
    shutil.copy(model_path("sulc-fsLR"), folder / "model.pt")
    assert model_path(folder) == folder / "model.pt"
    choice = network(str(folder), template="fsLR")
    assert choice.checkpoint == (folder / "model.pt").absolute() and choice.channels == ("sulc",)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="is a folder holding no model.pt"):
        network(tmp_path / "empty", template="fsLR")


def test_a_mirrored_network_refuses_right_hemispheres_of_a_template_that_is_not_symmetric(tmp_path, capsys):
    """sulc-fsaverage registers a right hemisphere mirrored onto fsaverage's LEFT template and mirrors
    the result back; fsaverage's right hemisphere is not the left's mirror image (their sulc maps so
    mirrored correlate 0.05; fsLR's 0.98), so the example's rh landed 16.8 deg from its rigid (right)
    alignment, its sulc correlating 0.047 with fsaverage's right template, while the metrics said
    0.972 (measured against the mirrored left one) and no gate flagged it. Refused before any work,
    in every entry point; fsLR's mirrored networks and left hemispheres go on."""
    from geomorph_bids import register
    from geomorph_bids.cli.bids import main as bids_main
    from geomorph_bids.cli.register import main as register_main
    from geomorph_bids.errors import InputError
    from geomorph_bids.resources import example_dir

    surf = example_dir() / "sub-01" / "surf"
    with pytest.raises(InputError, match=r"^model sulc-fsaverage registers right hemispheres mirrored onto the left "
                                         r"template, and fsaverage's right hemisphere is not the mirror image"):
        register(surf / "rh.sphere", {"sulc": surf / "rh.sulc"}, "fsaverage", "R", model="sulc-fsaverage")
    right = register(surf / "rh.sphere", {"sulc": surf / "rh.sulc"}, "fsLR", "R", model="sulc-fsLR", optimise=False)
    assert right.metrics["mirrored"] is True
    code = register_main(["--sphere", str(surf / "rh.sphere"), "--feature", f"sulc={surf / 'rh.sulc'}", "--hemi", "R",
                          "--template", "fsaverage", "--model", "sulc-fsaverage", "--out", str(tmp_path / "r.surf.gii")])
    err = capsys.readouterr().err
    assert code == 1 and "register hemi-R with --model default" in err and not (tmp_path / "r.surf.gii").exists()
    bids = Path(__file__).resolve().parents[2] / "examples" / "ds-geomorph-example"
    code = bids_main([str(bids), str(tmp_path / "out"), "participant", "--template", "fsaverage", "--model",
                      "sulc-fsaverage", "-w", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert code == 1 and "e.g. --hemi L --model sulc-fsaverage, then --hemi R" in err, err
    assert not (tmp_path / "out").exists()


def test_the_methods_text_names_a_users_network_by_its_name_and_weights(tmp_path):
    """A network trained with geomorph-train: CITATION.md said 'the GeoMorph network of checkpoint
    model.pt' (every geomorph-train folder's file name); now its recorded name and weights' sha256."""
    from geomorph_bids.cli.methods import method_text as _method_text
    from geomorph_bids.model.checkpoint import CheckpointMeta, read_metadata, save_checkpoint
    from geomorph_bids.model.geomorph import GeoMorph, tiny_config

    net = GeoMorph(tiny_config(data_level=3, control_level=2, n_labels=10))
    path = save_checkpoint(tmp_path / "model.pt", net.state_dict(),
                           CheckpointMeta(name="sulc-fsLR-cohort", template="fsLR", hemisphere="LR-mirrored",
                                          channels=("sulc",), config=net.config.to_dict()))
    sha = read_metadata(path).weights_sha256
    text = _method_text(network(tmp_path, optimise=True))
    assert f"the GeoMorph network sulc-fsLR-cohort (checkpoint model.pt, weights sha256 {sha[:12]}, trained " \
           "for fsLR), predicted a non-rigid warp in one forward pass" in text


def test_a_bundled_name_that_is_also_a_network_in_the_current_folder_says_which_is_used(tmp_path, monkeypatch):
    """``geomorph-train --out sulc-fsLR`` (scripts/train_models.sh names its folders after the bundled
    networks), then ``--model sulc-fsLR`` from the folder holding it: the bundled network was used
    without a word, the user's own shadowed. The bundled one is still used (the name is documented as
    the bundled network's), and one warning names the folder and how to take it."""
    import shutil
    import warnings

    from geomorph_bids.engine.model_choice import network
    from geomorph_bids.resources import model_path

    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as quiet:
        warnings.simplefilter("always")
        network("sulc-fsLR", template="fsLR")
    assert not [w for w in quiet if "holds a network" in str(w.message)]
    (tmp_path / "sulc-fsLR").mkdir()
    shutil.copy(model_path("sulc-fsLR"), tmp_path / "sulc-fsLR" / "model.pt")
    with pytest.warns(UserWarning) as caught:
        choice = network("sulc-fsLR", template="fsLR")
    assert choice.checkpoint == model_path("sulc-fsLR")
    assert [str(w.message) for w in caught] == [
        f"model sulc-fsLR: the bundled network sulc-fsLR is used; {tmp_path / 'sulc-fsLR'} holds a network of the "
        "same name: give its path (./sulc-fsLR) to use that one"]
    assert network("./sulc-fsLR", template="fsLR").checkpoint == tmp_path / "sulc-fsLR" / "model.pt"

"""The pretrained models shipped in geomorph_bids/data/models: found by name, self-describing,
trained with geomorph-train as their cards say, and useful on held-out pairs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from geomorph_bids.cli.register import main as register_main
from geomorph_bids.engine.register import register
from geomorph_bids.engine.benchmark_sources import load_benchmark_source
from geomorph_bids.engine.synth import angular_error_deg, make_benchmark
from geomorph_bids.errors import InputError
from geomorph_bids.model.checkpoint import load_checkpoint, read_metadata
from geomorph_bids.model.optimise import OptimiseConfig
from geomorph_bids.resources import bundled_models, example_dir, model_dir, model_path

EXAMPLE_DATASET = Path(__file__).resolve().parents[2] / "examples" / "ds-geomorph-example"
#: name -> (template, channels): the models the README and docs/models.md promise
SHIPPED = {"sulc-fsLR": ("fsLR", ("sulc",)), "sulc-fsaverage": ("fsaverage", ("sulc",)),
           "multimodal-fsLR": ("fsLR", ("sulc", "curv", "myelin"))}
#: held-out benchmark source per model (never used in training; docs/synthetic_data.md)
SOURCE = {"sulc-fsLR": "hcp_s1200_sulc", "sulc-fsaverage": "hcp_s1200_sulc_fsaverage",
          "multimodal-fsLR": "conte69_multimodal"}


def test_the_three_models_ship_and_resolve_by_name(tmp_path):
    assert bundled_models() == sorted(SHIPPED)
    for name in SHIPPED:
        assert model_path(name) == model_dir() / name / "model.pt"
    assert model_path(tmp_path / "mine.pt") == tmp_path / "mine.pt"   # anything else is a path
    assert str(model_path("no-such-model")) == "no-such-model"


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_checkpoint_and_card_describe_the_training(name):
    path = model_path(name)
    assert path.stat().st_size < 20 * 2**20                        # small enough for the repository
    meta = read_metadata(path)
    template, channels = SHIPPED[name]
    assert (meta.name, meta.template, meta.channels) == (name, template, channels)
    assert meta.hemisphere == "LR-mirrored"                        # one model for both hemispheres
    prov = meta.provenance
    assert prov.command.startswith("geomorph-train ") and f"--name {name}" in prov.command
    assert prov.wall_time_s > 60 and prov.extra["stopped"] in ("epochs", "early_stopping", "time_budget")
    state, _ = load_checkpoint(path)                               # weights_only load, sha-checked
    assert sum(t.numel() for t in state.values()) > 10_000
    card = (path.parent / "model_card.md").read_text()
    assert prov.command in card and f"Seed: {prov.seed}" in card
    assert re.search(r"wall time: [\d.]+ s", card)
    assert "## Evaluation" in card and "median angular error" in card.lower()
    assert (path.parent / "train_log.csv").read_text().count("\n") >= 3


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_network_recovers_a_held_out_warp(name):
    """One held-out benchmark subject with a large (12 deg) warp, from the benchmark seed stream
    and a generator never used in training: the network alone moves it most of the way towards
    the known answer without folding, and network + optimisation recovers it."""
    template, channels = SHIPPED[name]
    names = load_benchmark_source(SOURCE[name])[4]
    subj, tpl = next(make_benchmark(1, SOURCE[name], "smooth_large", seed=11, level=5))
    assert tpl == template
    feats = {c: subj.features[:, names.index(c)] for c in channels}
    sphere = (subj.vertices, subj.faces)
    rigid = register(sphere, feats, template, "L", rigid_only=True, device="cpu")
    net = register(sphere, feats, template, "L", model=name, optimise=False, device="cpu")
    refined = register(sphere, feats, template, "L", model=name, device="cpu")  # the short REFINEMENT
    full = register(sphere, feats, template, "L", model=name, optimise=OptimiseConfig(), device="cpu")
    assert net.metrics["method"] == "geomorph" and refined.metrics["method"] == "geomorph+optimise"
    assert net.metrics["model_name"] == name
    assert net.metrics["cc_sulc_after"] > rigid.metrics["cc_sulc_after"] + 0.02
    assert all(r.metrics["warp_folded_triangles"] == 0 for r in (net, refined, full))
    err = {k: float(np.median(angular_error_deg(r.sphere, subj.registered))) for k, r in
           (("rigid", rigid), ("net", net), ("refined", refined), ("full", full))}
    assert err["net"] < 0.85 * err["rigid"], err
    # the refinement smooths, it never undoes the network (after sulc-fsaverage's three passes it keeps
    # their warp within a few hundredths: 1.039 -> 1.096 deg here; its single pass: 1.425 -> 1.405)
    assert err["refined"] < 1.1 * err["net"], err
    assert err["full"] < 0.5 * err["rigid"], err


def test_right_hemisphere_goes_through_the_mirrored_model():
    surf = example_dir() / "sub-01" / "surf"
    r = register(surf / "rh.sphere", {"sulc": surf / "rh.sulc"}, "fsLR", "R", model="sulc-fsLR",
                 optimise=False, device="cpu")
    assert r.metrics["hemi"] == "R" and r.metrics["cc_sulc_after"] > r.metrics["cc_sulc_rigid"]
    assert r.metrics["warp_folded_triangles"] == 0


def test_register_cli_takes_a_model_name(tmp_path):
    surf = example_dir() / "sub-01" / "surf"
    out = tmp_path / "lh.fsLR.surf.gii"
    assert register_main(["--sphere", str(surf / "lh.sphere"), "--feature", f"sulc={surf / 'lh.sulc'}",
                          "--hemi", "L", "--model", "sulc-fsLR", "--out", str(out)]) == 0
    import json

    metrics = json.loads(out.with_name("lh.fsLR_metrics.json").read_text())
    assert metrics["method"] == "geomorph+optimise" and metrics["model_name"] == "sulc-fsLR"


def test_multimodal_model_without_myelin_is_refused():
    surf = example_dir() / "sub-01" / "surf"
    with pytest.raises((InputError, ValueError), match="myelin"):
        register(surf / "lh.sphere", {"sulc": surf / "lh.sulc"}, "fsLR", "L", model="multimodal-fsLR")


def test_bids_app_takes_a_bundled_model_name(tmp_path):
    """geomorph-bids --model sulc-fsLR on the example dataset's FreeSurfer subject."""
    import contextlib
    import io
    import json

    from geomorph_bids.cli.bids import main as bids_main

    out = tmp_path / "out"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = bids_main([str(EXAMPLE_DATASET), str(out), "participant", "--participant-label", "01", "--model", "sulc-fsLR",
                          "--device", "cpu", "-w", str(tmp_path / "w")])
    assert code == 0, err.getvalue()
    for hemi in ("L", "R"):
        m = json.loads((out / "sub-01" / "anat" / f"sub-01_hemi-{hemi}_space-fsLR_desc-geomorph_metrics.json")
                       .read_text())
        assert m["method"] == "geomorph+optimise" and m["registration"]["model_name"] == "sulc-fsLR"
        assert m["registration"]["cc_sulc_after"] > 0.9
    assert "sulc-fsLR" in (out / "logs" / "CITATION.md").read_text()

"""geomorph-register end to end: the bundled example and bad input."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from geomorph_bids.cli.register import build_parser, main
from geomorph_bids.resources import example_dir
from geomorph_bids.sphere.rotation import angle_between


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("example")
    assert main(["--example", "--out-dir", str(out)]) == 0
    return out


@pytest.mark.parametrize("hemi", ["L", "R"])
def test_example_recovers_known_rotation(example_run, hemi, example_true_rotation):
    metrics = json.loads((example_run / f"sub-01_hemi-{hemi}_space-fsLR_desc-geomorph_metrics.json").read_text())
    error = angle_between(np.asarray(metrics["rotation"]), example_true_rotation(hemi))
    assert error < 1.0
    assert metrics["method"] == "optimise"
    assert metrics["cc_sulc_rigid"] > metrics["cc_sulc_before"] + 0.3
    assert metrics["cc_sulc_after"] > metrics["cc_sulc_rigid"] + 0.01
    assert metrics["n_folded"] == 0


@pytest.mark.parametrize("hemi", ["L", "R"])
def test_example_outputs_are_valid_gifti(example_run, hemi):
    img = nib.load(str(example_run / f"sub-01_hemi-{hemi}_space-fsLR_desc-geomorph_sphere.surf.gii"))
    verts = img.agg_data("NIFTI_INTENT_POINTSET")
    assert verts.shape == (10242, 3)
    np.testing.assert_allclose(np.linalg.norm(verts, axis=1), 100.0, atol=1e-3)
    meta = dict(img.darrays[0].meta)
    assert meta["AnatomicalStructurePrimary"] == {"L": "CortexLeft", "R": "CortexRight"}[hemi]
    assert meta["GeometricType"] == "Spherical"
    sulc = nib.load(str(example_run / f"hemi-{hemi}_space-fsLR_den-ico6_sulc.shape.gii")).agg_data()
    assert sulc.shape == (40962,) and np.isfinite(sulc).all()


def test_register_own_files_with_hcp_sign(tmp_path, fsaverage5):
    """A GIFTI sphere + HCP-signed sulc: the sign flag restores a positive correlation."""
    import gzip

    sphere = nib.GiftiImage.from_bytes(gzip.decompress((fsaverage5 / "sphere_left.gii.gz").read_bytes()))
    sulc = nib.GiftiImage.from_bytes(gzip.decompress((fsaverage5 / "sulc_left.gii.gz").read_bytes()))
    nib.save(sphere, str(tmp_path / "lh.sphere.surf.gii"))
    hcp = nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(-sulc.agg_data().astype(np.float32),
                                                                 intent="NIFTI_INTENT_SHAPE")])
    nib.save(hcp, str(tmp_path / "lh.sulc.shape.gii"))
    out = tmp_path / "out" / "lh_sphere.surf.gii"
    code = main(["--sphere", str(tmp_path / "lh.sphere.surf.gii"), "--feature",
                 f"sulc={tmp_path / 'lh.sulc.shape.gii'}", "--sulc-sign", "hcp", "--hemi", "L",
                 "--template", "fsaverage", "--out", str(out)])
    assert code == 0
    metrics = json.loads((tmp_path / "out" / "lh_metrics.json").read_text())
    assert metrics["rotation_deg"] < 1.0  # fsaverage5 is already in fsaverage space
    assert metrics["cc_sulc_after"] > 0.95


def test_the_hcp_sign_negates_hcps_curvature_too(tmp_path, fsaverage5, capsys):
    """HCP writes curvature with the opposite sign of FreeSurfer's too (``.curvature.native.shape.gii``),
    and geomorph-bids negates both for HCP inputs; ``--sulc-sign hcp`` negated the sulc only, so an HCP
    user giving both files (needed by multimodal-fsLR and fsaverage's default sulc + curv) was refused:
    ``feature 'curv' correlates -0.73 with sulc ... negate it``, though troubleshooting.md said the
    option flips both. It now does, as the BIDS-App."""
    import gzip

    def gifti(name: str) -> nib.GiftiImage:
        return nib.GiftiImage.from_bytes(gzip.decompress((fsaverage5 / f"{name}_left.gii.gz").read_bytes()))

    nib.save(gifti("sphere"), str(tmp_path / "100307.L.sphere.native.surf.gii"))
    for name, stem in (("sulc", "sulc"), ("curv", "curvature")):
        hcp = nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(-gifti(name).agg_data().astype(np.float32),
                                                                     intent="NIFTI_INTENT_SHAPE")])
        nib.save(hcp, str(tmp_path / f"100307.L.{stem}.native.shape.gii"))
    out = tmp_path / "out" / "lh_sphere.surf.gii"
    code = main(["--sphere", str(tmp_path / "100307.L.sphere.native.surf.gii"), "--feature",
                 f"sulc={tmp_path / '100307.L.sulc.native.shape.gii'}",
                 f"curv={tmp_path / '100307.L.curvature.native.shape.gii'}", "--sulc-sign", "hcp", "--hemi", "L",
                 "--template", "fsaverage", "--model", "rigid", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "out" / "lh_metrics.json").read_text())
    assert metrics["cc_sulc_after"] > 0.95 and metrics["cc_curv_after"] > 0.8


def test_white_surface_as_sphere_is_refused(tmp_path, fsaverage5, capsys):
    import gzip

    white = nib.GiftiImage.from_bytes(gzip.decompress((fsaverage5 / "white_left.gii.gz").read_bytes()))
    nib.save(white, str(tmp_path / "lh.white.surf.gii"))
    out = tmp_path / "out" / "lh_sphere.surf.gii"
    code = main(["--sphere", str(tmp_path / "lh.white.surf.gii"), "--feature",
                 f"sulc={fsaverage5 / 'sulc_left.gii.gz'}", "--hemi", "L", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1 and "lh.white.surf.gii" in err and "hemi-L" in err
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_feature_with_wrong_vertex_count_is_refused(tmp_path, fsaverage5, capsys):
    surf = example_dir() / "sub-01" / "surf"
    bad = tmp_path / "lh.sulc"
    nib.freesurfer.write_morph_data(str(bad), np.ones(100, dtype=np.float32))
    out = tmp_path / "out" / "lh_sphere.surf.gii"
    code = main(["--sphere", str(surf / "lh.sphere"), "--feature", f"sulc={bad}", "--hemi", "L",
                 "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1 and str(bad) in err and "100" in err and "10242" in err
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_missing_arguments_exit_2():
    with pytest.raises(SystemExit) as exc:
        main(["--hemi", "L"])
    assert exc.value.code == 2


@pytest.mark.parametrize("option,value", [("--min-cc", "nan"), ("--min-cc-other", "inf"), ("--max-distortion", "-1"),
                                          ("--identity-margin", "nan"), ("--max-folds", "1.5")])
def test_gate_options_refuse_what_would_flag_everything(tmp_path, option, value, capsys):
    """NaN or out-of-range quality thresholds: one argparse line naming the option, exit 2, nothing written."""
    with pytest.raises(SystemExit) as exc:
        main(["--example", "--out-dir", str(tmp_path / "o"), option, value])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and option in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_failed_write_leaves_no_partial_outputs(tmp_path, monkeypatch):
    """If the last output cannot be written, the ones already written are removed."""
    import geomorph_bids.cli.register as cli

    def refuse(path, payload):
        raise OSError(f"{path}: No space left on device")

    monkeypatch.setattr(cli, "_write_json", refuse)
    surf = example_dir() / "sub-01" / "surf"
    out = tmp_path / "out"
    code = main(["--sphere", str(surf / "lh.sphere"), "--feature", f"sulc={surf / 'lh.sulc'}", "--hemi", "L",
                 "--out", str(out / "lh_sphere.surf.gii"), "--features-out", str(out)])
    assert code == 1
    assert list(out.iterdir()) == []


def _tiny_checkpoint(path, channels=("sulc",)):
    """A randomly initialised tiny GeoMorph saved as geomorph-train saves it."""
    import torch

    from geomorph_bids.model.checkpoint import CheckpointMeta, save_checkpoint
    from geomorph_bids.model.geomorph import GeoMorph, tiny_config

    torch.manual_seed(0)
    model = GeoMorph(tiny_config(in_channels=len(channels)))
    meta = CheckpointMeta(name="tiny-cli", template="fsLR", hemisphere="L", channels=list(channels),
                          config={"geomorph": model.config.to_dict()})
    return save_checkpoint(path, model.state_dict(), meta)


def test_model_option_runs_the_network(tmp_path):
    surf = example_dir() / "sub-01" / "surf"
    ckpt = _tiny_checkpoint(tmp_path / "tiny.pt")
    out = tmp_path / "out" / "lh_sphere.surf.gii"
    code = main(["--sphere", str(surf / "lh.sphere"), "--feature", f"sulc={surf / 'lh.sulc'}", "--hemi", "L",
                 "--model", str(ckpt), "--device", "cpu", "--no-optimise", "--out", str(out)])
    metrics = json.loads((tmp_path / "out" / "lh_metrics.json").read_text())
    assert code == (3 if metrics["quality"]["flagged"] else 0)  # an untrained network may well be flagged
    assert metrics["method"] == "geomorph" and metrics["model_name"] == "tiny-cli"
    # an untrained model may fold triangles: they must be counted and reported
    assert isinstance(metrics["n_folded"], int) and "warp_folded_triangles" in metrics
    assert metrics["seconds_network"] > 0
    verts = nib.load(str(out)).agg_data("NIFTI_INTENT_POINTSET")
    assert verts.shape == (10242, 3)
    np.testing.assert_allclose(np.linalg.norm(verts, axis=1), 100.0, atol=1e-3)


def test_refine_full_runs_the_optimisers_schedule_from_the_network(tmp_path, capsys):
    """--refine full: the default schedule started from the network's low-passed warp; it needs a
    network and does not go with --no-optimise (one line each, nothing written)."""
    surf = example_dir() / "sub-01" / "surf"
    ckpt = _tiny_checkpoint(tmp_path / "tiny.pt")
    args = ["--sphere", str(surf / "lh.sphere"), "--feature", f"sulc={surf / 'lh.sulc'}", "--hemi", "L",
            "--device", "cpu"]
    out = tmp_path / "out" / "lh_sphere.surf.gii"
    code = main([*args, "--model", str(ckpt), "--refine", "full", "--out", str(out)])
    metrics = json.loads((tmp_path / "out" / "lh_metrics.json").read_text())
    assert code == (3 if metrics["quality"]["flagged"] else 0)
    assert metrics["method"] == "geomorph+optimise" and metrics["optimise"]["start_lowpass"] == 8
    assert metrics["optimise"]["steps"] == [60, 60, 60]  # the default schedule, not the short refinement
    capsys.readouterr()
    for extra, message in ((["--refine", "full"], "--refine full optimises the warp from a network's"),
                           (["--refine", "short"], "--refine short refines a network's warp"),
                           (["--model", "rigid", "--refine", "short"], "--model rigid runs no network"),
                           (["--model", str(ckpt), "--refine", "short", "--no-optimise"], "give one of them")):
        bad = tmp_path / "bad" / "lh_sphere.surf.gii"
        assert main([*args, *extra, "--out", str(bad)]) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
        assert not bad.parent.exists()


def test_rigid_model_option_stops_after_the_rigid_stage(tmp_path):
    surf = example_dir() / "sub-01" / "surf"
    out = tmp_path / "lh_sphere.surf.gii"
    assert main(["--sphere", str(surf / "lh.sphere"), "--feature", f"sulc={surf / 'lh.sulc'}", "--hemi", "L",
                 "--model", "rigid", "--out", str(out)]) == 0
    metrics = json.loads((tmp_path / "lh_metrics.json").read_text())
    assert metrics["method"] == "rigid" and metrics["cc_sulc_after"] == metrics["cc_sulc_rigid"]


def test_model_for_other_channels_is_refused(tmp_path, capsys):
    surf = example_dir() / "sub-01" / "surf"
    ckpt = _tiny_checkpoint(tmp_path / "curv.pt", channels=("curv",))
    out = tmp_path / "out" / "lh_sphere.surf.gii"
    code = main(["--sphere", str(surf / "lh.sphere"), "--feature", f"sulc={surf / 'lh.sulc'}", "--hemi", "L",
                 "--model", str(ckpt), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "curv" in err and "sulc" in err
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_a_network_whose_template_maps_need_an_uninstalled_package_names_it(tmp_path, monkeypatch, capsys):
    """multimodal-fsLR's curv and myelin template maps come from brainspace: without it, geomorph-register
    said ``input has [sulc] (missing: curv, myelin)`` and named no package; now the template's maps are
    read first, as geomorph-bids reads them, and the line names brainspace and the pip command."""
    import geomorph_bids.resources as resources

    real = resources.package_file
    monkeypatch.setattr(resources, "package_file",
                        lambda package, relative: None if package == "brainspace" else real(package, relative))
    surf = example_dir() / "sub-01" / "surf"
    out = tmp_path / "out" / "lh_sphere.surf.gii"
    code = main(["--sphere", str(surf / "lh.sphere"), "--feature", f"sulc={surf / 'lh.sulc'}",
                 "--model", "multimodal-fsLR", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1] == (
        "geomorph-register: error: template fsLR has no feature curv, myelin; it has: sulc (curv, myelin come from "
        "the brainspace package: pip install 'geomorph-bids[multimodal]')")
    assert not out.parent.exists()


@pytest.mark.parametrize("hemi", ["L", "R"])
def test_sphere_reg_path_lands_in_fslr(tmp_path, fsaverage5, example_true_rotation, hemi):
    """The example's sphere.reg is the unrotated fsaverage5 sphere (fsaverage space): the
    correspondence path must still land in fsLR, not in fsaverage space."""
    import gzip

    side, prefix = {"L": ("left", "lh"), "R": ("right", "rh")}[hemi]
    fs5 = nib.GiftiImage.from_bytes(gzip.decompress((fsaverage5 / f"sphere_{side}.gii.gz").read_bytes()))
    reg = tmp_path / f"{prefix}.sphere.reg"
    nib.freesurfer.write_geometry(str(reg), fs5.agg_data("NIFTI_INTENT_POINTSET"),
                                  fs5.agg_data("NIFTI_INTENT_TRIANGLE"))
    surf = example_dir() / "sub-01" / "surf"
    out = tmp_path / f"{prefix}_sphere.surf.gii"
    code = main(["--sphere", str(surf / f"{prefix}.sphere"), "--feature", f"sulc={surf / f'{prefix}.sulc'}",
                 "--sphere-reg", str(reg), "--hemi", hemi, "--out", str(out)])
    assert code == 0
    metrics = json.loads((tmp_path / f"{prefix}_metrics.json").read_text())
    assert metrics["rotation_method"] == "correspondence"
    assert angle_between(np.asarray(metrics["rotation"]), example_true_rotation(hemi)) < 0.05
    assert metrics["cc_sulc_after"] > 0.9


def test_template_from_subjects_dir_is_recorded(tmp_path, monkeypatch, tiny_fsaverage, capsys):
    """geomorph-register finds fsaverage in $SUBJECTS_DIR, records it, and warns about a right
    hemisphere the folder lacks (the bundled maps are used for it)."""
    fs = tiny_fsaverage(tmp_path / "subjects", hemis=("L",), maps=("sulc",))
    monkeypatch.setenv("SUBJECTS_DIR", str(tmp_path / "subjects"))
    surf = example_dir() / "sub-01" / "surf"
    for hemi, prefix in (("L", "lh"), ("R", "rh")):
        out = tmp_path / f"{hemi}_sphere.surf.gii"
        assert main(["--sphere", str(surf / f"{prefix}.sphere"), "--feature", f"sulc={surf / f'{prefix}.sulc'}",
                     "--hemi", hemi, "--template", "fsaverage", "--model", "rigid", "--out", str(out)]) == 0
        metrics = json.loads((tmp_path / f"{hemi}_metrics.json").read_text())
        assert metrics["template_source"] == ("freesurfer" if hemi == "L" else "bundled")
        assert metrics["template_vertices"] == (10242 if hemi == "L" else 40962)  # the tiny fsaverage; bundled ico-6
        assert metrics.get("template_built_from_vertices") == (None if hemi == "L" else 10242)  # fsaverage5
        assert len(metrics["template_sha256"]) == 64
    assert metrics["template_source_path"].endswith("templates")
    said = capsys.readouterr()
    err = said.err
    assert f"geomorph-register: warning: template: FreeSurfer fsaverage {fs}: no rh.sphere or rh.sulc for hemi-R" in err
    # which maps each hemisphere was registered to, and how many vertices a folder's have: before, nothing on
    # stdout said it (a full 163,842-vertex fsaverage looked the same as an fsaverage5 in its place)
    assert said.out.splitlines()[0] == f"template maps: hemi-L: fsaverage from FreeSurfer fsaverage {fs} (10,242 vertices)"
    assert "template maps: hemi-R: fsaverage from the bundled fsaverage\n" in said.out
    assert err.count("warning") == 1
    code = main(["--sphere", str(surf / "lh.sphere"), "--feature", f"sulc={surf / 'lh.sulc'}", "--hemi", "L",
                 "--template", "fsaverage", "--template-dir", "bundled", "--model", "rigid",
                 "--out", str(tmp_path / "b_sphere.surf.gii")])
    assert code == 0 and json.loads((tmp_path / "b_metrics.json").read_text())["template_source"] == "bundled"


def test_corrupted_feature_values_are_clipped_and_said_on_one_line(tmp_path, capsys):
    """A sulc file with one value of 1e30: one warning line, then the registration of the clean map."""
    import nibabel.freesurfer as fs

    surf = example_dir() / "sub-01" / "surf"
    values = fs.read_morph_data(str(surf / "lh.sulc")).astype(">f4")
    values[7] = 1e30
    bad = tmp_path / "lh.sulc"
    fs.write_morph_data(str(bad), values)
    args = ["--sphere", str(surf / "lh.sphere"), "--hemi", "L", "--model", "rigid"]
    assert main([*args, "--feature", f"sulc={bad}", "--out", str(tmp_path / "bad" / "lh_sphere.surf.gii")]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "interquartile" in line]
    assert len(lines) == 1 and lines[0].startswith("geomorph-register: warning: feature 'sulc'") and "1e+30" in lines[0]
    assert main([*args, "--feature", f"sulc={surf / 'lh.sulc'}", "--out", str(tmp_path / "ok" / "lh_sphere.surf.gii")]) == 0
    assert "interquartile" not in capsys.readouterr().err
    got, clean = (json.loads((tmp_path / d / "lh_metrics.json").read_text()) for d in ("bad", "ok"))
    assert abs(got["cc_sulc_after"] - clean["cc_sulc_after"]) < 0.005


def test_swapped_hemisphere_is_written_flagged_and_exits_3(tmp_path, capsys):
    """rh files registered as --hemi L: the outputs are written, the metrics JSON records the
    verdict, one FLAGGED line names every reason (file names and the mirrored-template fit) and
    the exit code is 3, as in geomorph-bids; the gate options move the verdict."""
    surf = example_dir() / "sub-01" / "surf"
    out = tmp_path / "lh_sphere.surf.gii"
    args = ["--sphere", str(surf / "rh.sphere"), "--feature", f"sulc={surf / 'rh.sulc'}", "--hemi", "L",
            "--model", "rigid", "--out", str(out)]
    assert main(args) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("geomorph-register: FLAGGED hemi-L: ")
    assert "rh.sphere: its name (rh.) says hemi-R" in err[0] and "mirrored template" in err[0]
    metrics = json.loads((tmp_path / "lh_metrics.json").read_text())
    assert out.is_file() and metrics["quality"]["flagged"]
    assert len(metrics["label_conflicts"]) == 2
    assert metrics["identity_cc_mirrored"] > metrics["identity_cc_own"]
    # the right files as the right hemisphere pass; an impossible --min-cc flags them
    right = ["--sphere", str(surf / "rh.sphere"), "--feature", f"sulc={surf / 'rh.sulc'}", "--hemi", "R",
             "--model", "rigid", "--out", str(tmp_path / "rh_sphere.surf.gii")]
    assert main(right) == 0
    assert not json.loads((tmp_path / "rh_metrics.json").read_text())["quality"]["flagged"]
    capsys.readouterr()
    assert main([*right, "--min-cc", "0.999"]) == 3
    assert "correlation: sulc correlates" in capsys.readouterr().err
    assert json.loads((tmp_path / "rh_metrics.json").read_text())["quality"]["thresholds"]["min_cc_after"] == 0.999


def test_curvature_given_as_sulc_is_written_flagged_and_exits_3(tmp_path, capsys):
    """--feature sulc=lh.curv registers plausibly (no correlation gate fires), so the file name
    decides: written, flagged, one FLAGGED line naming the file, exit 3."""
    surf = example_dir() / "sub-01" / "surf"
    curv = tmp_path / "lh.curv"  # the name decides, whatever the values (here the example's sulc)
    curv.write_bytes((surf / "lh.sulc").read_bytes())
    out = tmp_path / "lh_sphere.surf.gii"
    assert main(["--sphere", str(surf / "lh.sphere"), "--feature", f"sulc={curv}", "--hemi", "L",
                 "--model", "rigid", "--out", str(out)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "geomorph-register: FLAGGED hemi-L: identity: lh.curv: its name says curv, registered as sulc"
    metrics = json.loads((tmp_path / "lh_metrics.json").read_text())
    assert out.is_file() and metrics["label_conflicts"] == ["lh.curv: its name says curv, registered as sulc"]
    assert metrics["cc_sulc_after"] > 0.5  # no other gate noticed


def test_an_output_named_like_an_input_is_refused_and_the_input_kept(tmp_path, capsys):
    """--out (or --metrics, or a --features-out file) naming an input file overwrote it with exit 0
    (and a later failure would have deleted it); now one line naming the option, exit 1, the input
    byte for byte unchanged, nothing written. Links are resolved."""
    surf = example_dir() / "sub-01" / "surf"
    sphere = tmp_path / "lh.sphere.surf.gii"
    from geomorph_bids.io import read_surface, write_surface

    s = read_surface(surf / "lh.sphere")
    write_surface(sphere, s.vertices, s.faces, hemi="L")
    (tmp_path / "link.surf.gii").symlink_to(sphere.name)
    sulc = tmp_path / "lh.sulc"
    sulc.write_bytes((surf / "lh.sulc").read_bytes())
    before = {p: p.read_bytes() for p in (sphere, sulc)}
    base = ["--sphere", str(sphere), "--feature", f"sulc={sulc}", "--hemi", "L", "--model", "rigid"]
    for extra, option in [(["--out", str(sphere)], "--sphere"), (["--out", str(tmp_path / "link.surf.gii")], "--sphere"),
                          (["--out", str(tmp_path / "o.surf.gii"), "--metrics", str(sulc)], "--feature sulc")]:
        assert main([*base, *extra]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"is also the input {option}: writing the output there would overwrite it" in err[0]
        assert {p: p.read_bytes() for p in before} == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["lh.sphere.surf.gii", "lh.sulc", "link.surf.gii"]


def test_hemisphere_and_feature_names_taken_from_the_file_names(tmp_path, capsys):
    """--hemi and NAME= may be left out where FreeSurfer's (or BIDS/HCP) file names say them;
    a name that says nothing is still a usage error."""
    surf = example_dir() / "sub-01" / "surf"
    assert main(["--sphere", str(surf / "rh.sphere"), "--feature", str(surf / "rh.sulc"), "--model", "rigid",
                 "--out", str(tmp_path / "x_sphere.surf.gii")]) == 0
    assert "geomorph-register: note: --hemi R (from rh.sphere)" in capsys.readouterr().err
    metrics = json.loads((tmp_path / "x_metrics.json").read_text())
    assert metrics["hemi"] == "R" and "cc_sulc_after" in metrics and metrics["label_conflicts"] == []
    plain = tmp_path / "sphere"
    plain.write_bytes((surf / "lh.sphere").read_bytes())
    with pytest.raises(SystemExit) as exc:
        main(["--sphere", str(plain), "--feature", f"sulc={surf / 'lh.sulc'}", "--out", str(tmp_path / "y.surf.gii")])
    assert exc.value.code != 0 and "--hemi is required: sphere does not say" in str(exc.value)
    with pytest.raises(SystemExit) as exc:
        main(["--sphere", str(surf / "lh.sphere"), "--feature", str(plain), "--out", str(tmp_path / "y.surf.gii")])
    assert "--feature expects NAME=FILE" in str(exc.value)


@pytest.mark.parametrize("name", ["lh.sphere.reg", "out.txt", "folder"])
def test_output_that_would_not_be_a_gifti_file_is_a_usage_error(tmp_path, capsys, name):
    """--out lh.sphere.reg would have held GIFTI bytes under a FreeSurfer name; a folder gave
    'Is a directory': both are usage errors naming what to give, and nothing is written."""
    surf = example_dir() / "sub-01" / "surf"
    (tmp_path / "folder").mkdir()
    with pytest.raises(SystemExit) as exc:
        main(["--sphere", str(surf / "lh.sphere"), "--feature", f"sulc={surf / 'lh.sulc'}", "--hemi", "L",
              "--out", str(tmp_path / name)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert ("is a folder" if name == "folder" else ".surf.gii") in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


@pytest.mark.parametrize("name, needle", [("lh.fsLR.surf.gii.gz", "written uncompressed"),
                                          ("lh.sulc.shape.gii", "says a per-vertex map"),
                                          ("lh.fsLR.func.gii", "says a per-vertex map"),
                                          # told to "end its name with .surf.gii", which it did but for the case
                                          ("lh.fsLR.surf.GII", "end its name with .surf.gii in lower case (the "
                                           "outputs' names, the metrics file's among them, are made from it): "
                                           "lh.fsLR.surf.gii")])
def test_an_output_name_of_a_gzipped_file_or_a_map_is_a_usage_error(tmp_path, capsys, name, needle):
    """Round eight: --out lh.sulc.shape.gii wrote the sphere under a map's name (exit 0; read back
    later as a map it is refused), and --out x.surf.gii.gz was told to 'end its name with .surf.gii'
    as if it did not: both say what is wrong, and nothing is written."""
    surf = example_dir() / "sub-01" / "surf"
    with pytest.raises(SystemExit) as exc:
        main(["--sphere", str(surf / "lh.sphere"), "--feature", f"sulc={surf / 'lh.sulc'}", "--hemi", "L",
              "--model", "rigid", "--out", str(tmp_path / name)])
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("extra", [["--out", "mine.surf.gii"], ["--hemi", "L"],
                                   ["--sphere", "lh.sphere", "--feature", "lh.sulc"], ["--features-out", "f"]])
def test_example_with_options_for_ones_own_files_is_a_usage_error(tmp_path, capsys, monkeypatch, extra):
    """Round eight: --example --out mine.surf.gii --hemi L registered both hemispheres of the
    bundled subject into ./geomorph_example, ignoring --out and --hemi, exit 0."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["--example", "--model", "rigid", *extra])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--example registers the bundled example subject" in err and f"does not use {extra[0]}" in err
    assert list(tmp_path.iterdir()) == []


def test_example_and_the_quick_start_can_run_in_either_order(tmp_path, monkeypatch, capsys):
    """Round eighteen: the README's quick start writes geomorph-bids' derivatives to ./geomorph_example
    and --example wrote its loose files (not BIDS derivatives) to ./geomorph_example too: either order
    ran, but left a derivatives folder with files at its top level that no BIDS rule covers. Now
    --example writes to ./geomorph_register_example, and refuses (one line, nothing written)
    a geomorph-bids derivatives folder given as --out-dir."""
    from geomorph_bids.cli.descriptions import write_dataset_description
    from geomorph_bids.cli.register import build_parser

    monkeypatch.chdir(tmp_path)
    quick = tmp_path / "geomorph_example"  # the README quick start's output folder
    quick.mkdir()
    write_dataset_description(quick, example_dir(), None)
    assert build_parser().get_default("out_dir").name != quick.name
    assert main(["--example", "--model", "rigid"]) == 0
    assert [p.name for p in quick.iterdir()] == ["dataset_description.json"]
    assert len(list((tmp_path / "geomorph_register_example").glob("*_sphere.surf.gii"))) == 2
    capsys.readouterr()
    assert main(["--example", "--model", "rigid", "--out-dir", "geomorph_example"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "geomorph_example: is geomorph-bids' output" in err, err
    assert [p.name for p in quick.iterdir()] == ["dataset_description.json"]


def test_example_to_a_template_folder_names_files_by_its_label(tmp_path):
    """Round eight: --example --template /path/tpl-pop wrote 'sub-01_hemi-L_space-/path/tpl-pop_desc-...'
    (a tree of folders named after the path) instead of space-pop."""
    from geomorph_bids.io.custom_template import DESCRIPTION, custom_feature_file
    from geomorph_bids.io.gifti import write_metric
    from geomorph_bids.io.templates import load_template

    folder = tmp_path / "tpl-pop"
    folder.mkdir()
    (folder / DESCRIPTION).write_text(json.dumps({"Identifier": "pop", "BaseTemplate": "fsLR"}))
    for hemi in "LR":
        write_metric(custom_feature_file(folder, "pop", hemi, "sulc"),
                     load_template("fsLR", hemi, ("sulc",)).features["sulc"].astype(np.float32), hemi=hemi)
    out = tmp_path / "out"
    assert main(["--example", "--model", "rigid", "--template", str(folder), "--out-dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "hemi-L_space-pop_den-ico6_sulc.shape.gii", "hemi-R_space-pop_den-ico6_sulc.shape.gii",
        "sub-01_hemi-L_space-pop_desc-rigid_metrics.json", "sub-01_hemi-L_space-pop_desc-rigid_sphere.surf.gii",
        "sub-01_hemi-R_space-pop_desc-rigid_metrics.json", "sub-01_hemi-R_space-pop_desc-rigid_sphere.surf.gii"]


def test_features_out_holds_every_feature_given(tmp_path):
    """Round eight: without a network only the template's maps were kept, so --feature
    thickness=lh.thickness --features-out F wrote no thickness (exit 0); every map given is
    resampled, the registration still uses the template's (sulc)."""
    from geomorph_bids.engine.example_data import template_hemisphere

    v, f, maps = template_hemisphere("L", 4)
    surf = tmp_path / "surf"
    surf.mkdir()
    import nibabel.freesurfer as nfs

    nfs.write_geometry(str(surf / "lh.sphere"), v, f)
    for name in ("sulc", "thickness"):
        nfs.write_morph_data(str(surf / f"lh.{name}"), maps[name].astype(np.float32))
    feats = tmp_path / "feats"
    assert main(["--sphere", str(surf / "lh.sphere"), "--feature", str(surf / "lh.sulc"), "--feature",
                 str(surf / "lh.thickness"), "--model", "rigid", "--out", str(tmp_path / "lh.surf.gii"),
                 "--features-out", str(feats)]) == 0
    assert sorted(p.name for p in feats.iterdir()) == ["hemi-L_space-fsLR_den-ico6_sulc.shape.gii",
                                                       "hemi-L_space-fsLR_den-ico6_thickness.shape.gii"]
    thick = nib.load(str(feats / "hemi-L_space-fsLR_den-ico6_thickness.shape.gii")).agg_data()
    assert 2.0 < float(np.median(thick)) < 3.0  # the thickness map, in mm
    metrics = json.loads((tmp_path / "lh_metrics.json").read_text())
    assert "cc_sulc_after" in metrics and "cc_thickness_after" not in metrics


def test_metrics_naming_a_folder_is_refused_before_the_registration(tmp_path, capsys):
    """Round eight: --metrics FOLDER was found only after the registration, leaving the folder
    made for --out behind, empty. Now a usage error before anything is read or made."""
    surf = example_dir() / "sub-01" / "surf"
    (tmp_path / "m").mkdir()
    with pytest.raises(SystemExit) as exc:
        main(["--sphere", str(surf / "lh.sphere"), "--feature", f"sulc={surf / 'lh.sulc'}", "--hemi", "L",
              "--out", str(tmp_path / "new" / "x.surf.gii"), "--metrics", str(tmp_path / "m")])
    assert exc.value.code == 2 and "--metrics" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_one_feature_given_twice_is_refused_before_anything_is_read(tmp_path):
    """Round fifteen: ``--feature sulc=lh.sulc --feature sulc=other.shape.gii`` registered the last
    and left the first out in silence (a map named otherwise than ``curv`` was not even flagged)."""
    from geomorph_bids.cli.register import main

    surf = example_dir() / "sub-01" / "surf"
    other = tmp_path / "other_sulc.shape.gii"
    with pytest.raises(SystemExit) as exc:
        main(["--sphere", str(surf / "lh.sphere"), "--feature", f"sulc={surf / 'lh.sulc'}", "--feature",
              f"sulc={other}", "--model", "rigid", "--out", str(tmp_path / "x.surf.gii")])
    assert exc.value.code != 0
    assert str(exc.value) == (f"geomorph-register: error: --feature sulc is given twice ({surf / 'lh.sulc'}, {other}): "
                              "give each map once")
    assert list(tmp_path.iterdir()) == []
    assert main(["--sphere", str(surf / "lh.sphere"), "--feature", str(surf / "lh.sulc"), "--feature",
                 f"sulc={surf / 'lh.sulc'}", "--model", "rigid", "--out", str(tmp_path / "x.surf.gii")]) == 0


@pytest.mark.parametrize("extra, words", [
    (["--metrics", "{out}"], "is also --out: the metrics JSON would replace the registered sphere"),
    (["--metrics", "{tmp}/m.shape.gii"], "the metrics are written as JSON, but that name says GIFTI"),
    (["--features-out", "{tmp}/afile"], "is a file: give the folder the resampled maps are written to"),
    # written as named, 'nan', exit 0 (a script's value, or a word left out)
    (["--metrics", "{tmp}/nan"], "--metrics nan: the metrics are written as JSON, and that name has no extension; "
                                 "end it with .json (e.g. nan_metrics.json)"),
])
def test_outputs_that_would_clash_are_refused_before_the_registration(tmp_path, extra, words, capsys):
    """Round fifteen: ``--metrics`` naming the ``--out`` file replaced the registered sphere by the
    metrics JSON, exit 0; ``--metrics m.shape.gii`` wrote JSON under a map's name; ``--features-out``
    an existing file failed after the registration (``File exists``)."""
    surf = example_dir() / "sub-01" / "surf"
    out = tmp_path / "x.surf.gii"
    (tmp_path / "afile").write_text("a user's file")
    argv = ["--sphere", str(surf / "lh.sphere"), "--feature", str(surf / "lh.sulc"), "--model", "rigid",
            "--out", str(out), *[a.format(out=out, tmp=tmp_path) for a in extra]]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and words in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_an_output_folder_that_cannot_be_written_is_found_before_the_registration(tmp_path, monkeypatch, capsys):
    """Round fifteen: ``--out`` on a read-only filesystem failed only after the registration (minutes on
    a 164k sphere), naming the temporary file: ``read-only filesystem writing RO/.x.surf.gii.sl5t1jbk.tmp``.
    Now the folders of --out, --metrics and --features-out take a probe write first (simulated: the
    probe of ``ro`` raises EROFS)."""
    import errno

    import geomorph_bids.cli.register as cli_register
    from geomorph_bids.cli import preflight

    surf = example_dir() / "sub-01" / "surf"
    ro = tmp_path / "ro"
    ro.mkdir()
    (tmp_path / "afile").write_text("a user's file")
    real_probe = preflight._write_probe

    def probe(folder):
        if folder == ro:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_probe(folder)

    def never(*args, **kwargs):
        raise AssertionError("registered before the outputs were checked")

    monkeypatch.setattr(preflight, "_write_probe", probe)
    monkeypatch.setattr(cli_register, "register_files", never)
    base = ["--sphere", str(surf / "lh.sphere"), "--feature", str(surf / "lh.sulc"), "--model", "rigid"]
    for extra, words in [(["--out", str(ro / "new" / "x.surf.gii")], f"--out cannot be written in {ro} (read-only filesystem)"),
                         (["--out", str(tmp_path / "x.surf.gii"), "--features-out", str(ro / "F")],
                          f"{ro / 'F'}: --features-out cannot be written in {ro} (read-only filesystem)"),
                         (["--out", str(tmp_path / "afile" / "x.surf.gii")], f"cannot be written: {tmp_path / 'afile'} is not a folder")]:
        assert main(base + extra) == 1
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("geomorph-register: error: ") and words in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "ro"] and list(ro.iterdir()) == []


def test_a_features_out_that_is_a_link_loop_or_a_broken_link_says_so(tmp_path, monkeypatch, capsys):
    """``--features-out LOOP`` (a symbolic link to itself) was refused as ``is a file``, then ``is not a folder``:
    neither says what is there. Now the loop and a broken link are named, before the registration."""
    import geomorph_bids.cli.register as cli_register

    def never(*args, **kwargs):
        raise AssertionError("registered before the outputs were checked")

    monkeypatch.setattr(cli_register, "register_files", never)
    surf = example_dir() / "sub-01" / "surf"
    (tmp_path / "LOOP").symlink_to("LOOP")
    (tmp_path / "BROKEN").symlink_to("gone")
    base = ["--sphere", str(surf / "lh.sphere"), "--feature", str(surf / "lh.sulc"), "--model", "rigid",
            "--out", str(tmp_path / "x.surf.gii"), "--features-out"]
    for name, what in (("LOOP", "is a symbolic link that leads back to itself (a loop)"),
                       ("BROKEN", "is a broken symbolic link (to gone)")):
        assert main([*base, str(tmp_path / name)]) == 1
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            f"geomorph-register: error: hemi-L {tmp_path / name}: --features-out cannot be written: {tmp_path / name} "
            f"{what}, not a folder: remove it or give another name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["BROKEN", "LOOP"]


def test_a_nearly_all_zero_map_is_refused_naming_its_file(tmp_path, capsys):
    surf = example_dir() / "sub-01" / "surf"
    values = np.zeros(10242, dtype=np.float32)
    values[5] = 1.0
    bad = tmp_path / "lh.sulc"
    nib.freesurfer.write_morph_data(str(bad), values)
    out = tmp_path / "out" / "lh_sphere.surf.gii"
    code = main(["--sphere", str(surf / "lh.sphere"), "--feature", f"sulc={bad}", "--hemi", "L",
                 "--model", "rigid", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert err.startswith(f"geomorph-register: error: hemi-L {bad}: feature 'sulc' is non-zero at only 1 of 10242 "
                          "vertices") and "moving features" not in err
    assert not out.parent.exists()


def test_a_map_zero_filled_over_part_of_the_cortex_is_warned_about(tmp_path, capsys):
    """60 % of the vertices exactly 0 (read as medial wall, ~10 % of a hemisphere): registered, with
    one warning line naming the file and the fraction (before: silent)."""
    surf = example_dir() / "sub-01" / "surf"
    values = nib.freesurfer.read_morph_data(str(surf / "lh.sulc")).astype(np.float32)
    x = nib.freesurfer.read_geometry(str(surf / "lh.sphere"))[0][:, 0]
    values[x > np.percentile(x, 40)] = 0
    bad = tmp_path / "lh.sulc"
    nib.freesurfer.write_morph_data(str(bad), values)
    code = main(["--sphere", str(surf / "lh.sphere"), "--feature", f"sulc={bad}", "--hemi", "L",
                 "--model", "rigid", "--out", str(tmp_path / "out" / "lh_sphere.surf.gii")])
    lines = [line for line in capsys.readouterr().err.splitlines() if "exactly 0" in line]
    assert code == 0
    assert lines == [f"geomorph-register: warning: {bad}: feature 'sulc' is exactly 0 at 60% of its vertices "
                     "(6145 of 10242); 0 is read as the medial wall, which is about 10% of a hemisphere, and those "
                     "vertices are registered from their neighbours only: check that the map was not cut, masked "
                     "or zero-filled"]


@pytest.mark.parametrize("name, words", [
    ("sulcc", "--feature sulcc: unknown feature name; use sulc, curv, thickness or myelin (did you mean sulc?)"),
    ("Sulc", "--feature Sulc: unknown feature name; use sulc, curv, thickness or myelin (did you mean sulc?)"),
    ("sulc ", "--feature 'sulc ': unknown feature name; use sulc, curv, thickness or myelin (did you mean sulc?)"),
    ("thickness", "no registration feature (sulc, curv or myelin) among --feature thickness: template fsLR has no "
                  "map of it; give sulc as well"),
])
def test_a_misspelt_or_unregistrable_feature_name_is_named(tmp_path, capsys, name, words):
    """Before: 'moving_features must be a non-empty dict: name -> (V,) array or path' (the map was
    dropped as one the template lacks), naming neither the name nor the accepted ones."""
    surf = example_dir() / "sub-01" / "surf"
    out = tmp_path / "out" / "lh_sphere.surf.gii"
    code = main(["--sphere", str(surf / "lh.sphere"), "--feature", f"{name}={surf / 'lh.sulc'}", "--hemi", "L",
                 "--model", "rigid", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and words in err and "moving_features" not in err
    assert not out.parent.exists()


def test_own_files_print_the_short_summary_and_leave_the_metrics_to_the_json(tmp_path, capsys):
    """Before: about 80 lines of metrics JSON on stdout; now the table --example prints (with the
    quality verdict) and the output paths; the metrics are in the metrics JSON."""
    surf = example_dir() / "sub-01" / "surf"
    out = tmp_path / "lh_sphere.surf.gii"
    assert main(["--sphere", str(surf / "lh.sphere"), "--feature", f"sulc={surf / 'lh.sulc'}", "--hemi", "L",
                 "--model", "rigid", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert lines.pop(0) == "template maps: hemi-L: fsLR from the bundled fsLR"
    assert lines[0].split() == ["hemi", "method", "rotation", "(deg)", "CC", "sulc", "before", "CC", "rigid", "CC",
                                "after", "folded", "seconds", "quality"]
    assert lines[1].split()[:2] == ["L", "rigid"] and lines[1].split()[-1] == "ok"
    assert lines[2] == f"outputs: {out}, {tmp_path / 'lh_metrics.json'}"
    assert json.loads((tmp_path / "lh_metrics.json").read_text())["method"] == "rigid"


def test_several_feature_maps_after_one_feature_flag():
    """`--feature sulc=lh.sulc curv=lh.curv` was a usage error (unrecognized arguments): one flag now
    takes several maps, as geomorph-bids' list options do, and repeating it still works."""
    from geomorph_bids.cli.register import build_parser

    p = build_parser()
    args = p.parse_args(["--sphere", "lh.sphere", "--feature", "sulc=lh.sulc", "curv=lh.curv", "--out", "x.surf.gii"])
    assert args.feature == ["sulc=lh.sulc", "curv=lh.curv"]
    args = p.parse_args(["--feature", "sulc=a", "--feature", "curv=b", "--feature", "myelin=c"])
    assert args.feature == ["sulc=a", "curv=b", "myelin=c"]


def test_a_feature_the_template_has_no_map_of_is_said_not_to_register(tmp_path, capsys, tiny_fsaverage):
    """--feature sulc=lh.sulc curv=lh.curv to an fsaverage folder without lh.curv: curv was dropped
    from the registration without a word (metrics with sulc alone). One note line says so, and where
    the map still goes (--features-out); a template that has the map says nothing."""
    from pathlib import Path

    surf = Path(__file__).parents[2] / "examples" / "ds-geomorph-example" / "derivatives" / "freesurfer" / "sub-01" / "surf"
    fs = tiny_fsaverage(tmp_path / "subjects", hemis=("L",), maps=("sulc",))
    feats = [f"sulc={surf / 'lh.sulc'}", f"curv={surf / 'lh.curv'}"]
    common = ["--sphere", str(surf / "lh.sphere"), "--feature", *feats, "--hemi", "L", "--template", "fsaverage",
              "--model", "rigid"]
    assert main([*common, "--template-dir", str(fs), "--out", str(tmp_path / "a_sphere.surf.gii")]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "curv" in line]
    assert notes == ["geomorph-register: note: --feature curv is not used by the registration: template fsaverage "
                     "has no curv map (give --features-out to have it resampled)"]
    assert "cc_curv_after" not in json.loads((tmp_path / "a_metrics.json").read_text())
    assert main([*common, "--template-dir", str(fs), "--out", str(tmp_path / "b_sphere.surf.gii"),
                 "--features-out", str(tmp_path / "maps")]) == 0
    assert "no curv map (resampled to --features-out only)" in capsys.readouterr().err
    assert (tmp_path / "maps" / "hemi-L_space-fsaverage_den-ico6_curv.shape.gii").is_file()
    assert main([*common, "--template-dir", "bundled", "--out", str(tmp_path / "c_sphere.surf.gii")]) == 0
    assert "not used by the registration" not in capsys.readouterr().err
    assert "cc_curv_after" in json.loads((tmp_path / "c_metrics.json").read_text())


def test_a_cifti_feature_is_read_for_the_hemisphere_given(tmp_path, capsys, two_hemisphere_sulc):
    """``--feature sulc=x.dscalar.nii --hemi R`` said ``is a CIFTI file holding both hemispheres: pass
    hemi='L' or 'R'`` (a Python argument, and --hemi was given): the right hemisphere's column is read."""
    from geomorph_bids.io import write_surface

    sulc = tmp_path / "sulc.dscalar.nii"
    hemis, _ = two_hemisphere_sulc(sulc, 4, 5)
    ccs = []
    for feature in (sulc, tmp_path / "rh.sulc"):
        if feature.name == "rh.sulc":
            nib.freesurfer.write_morph_data(str(feature), hemis["R"].maps["sulc"].astype(np.float32))
        sphere = tmp_path / "rh.sphere.surf.gii"
        write_surface(sphere, hemis["R"].vertices, hemis["R"].faces, "R")
        out = tmp_path / f"out_{feature.name}" / "rh_sphere.surf.gii"
        code = main(["--sphere", str(sphere), "--feature", f"sulc={feature}", "--hemi", "R", "--model", "rigid",
                     "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 0, err
        ccs.append(json.loads((out.parent / "rh_metrics.json").read_text())["cc_sulc_after"])
    assert ccs[0] == pytest.approx(ccs[1], abs=1e-6) and ccs[0] > 0.5


def test_the_bundled_low_resolution_fsaverage_is_said_on_one_line(tmp_path, monkeypatch, tiny_fsaverage, capsys):
    """--template fsaverage with no fsaverage folder anywhere took the bundled fsaverage5-derived
    maps in silence (only the metrics JSON said so): one note line now names the hemisphere and
    how to point at the full one, as geomorph-bids says it; none when SUBJECTS_DIR holds fsaverage."""
    for name in ("SUBJECTS_DIR", "FREESURFER_HOME", "TEMPLATEFLOW_HOME"):
        monkeypatch.delenv(name, raising=False)
    surf = example_dir() / "sub-01" / "surf"
    args = ["--sphere", str(surf / "lh.sphere"), "--feature", f"sulc={surf / 'lh.sulc'}", "--hemi", "L",
            "--template", "fsaverage", "--model", "rigid", "--out", str(tmp_path / "a_sphere.surf.gii")]
    assert main(args) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "low-resolution" in line]
    assert len(notes) == 1
    assert notes[0].startswith("geomorph-register: note: hemi-L registered to the bundled low-resolution fsaverage")
    assert "SUBJECTS_DIR pointing at a folder that holds fsaverage" in notes[0]
    assert "--fs-subjects-dir" not in notes[0]  # not an option of geomorph-register
    # fix-av: asked for with --template-dir bundled: what the maps are, without advice to use others
    assert main([*args, "--template-dir", "bundled"]) == 0
    assert [line for line in capsys.readouterr().err.splitlines() if "low-resolution" in line] == [
        "geomorph-register: note: hemi-L registered to the bundled low-resolution fsaverage (built from fsaverage5's "
        "10,242 vertices: the source repository's docs/templates.md), as --template-dir bundled asks"]
    tiny_fsaverage(tmp_path / "subjects", hemis=("L",), maps=("sulc",))
    monkeypatch.setenv("SUBJECTS_DIR", str(tmp_path / "subjects"))
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "low-resolution" not in err  # not the bundled maps: the tiny fsaverage (fsaverage5's mesh), said as such
    assert (f"geomorph-register: note: hemi-L registered to fsaverage maps of 10,242 vertices (FreeSurfer "
            f"{tmp_path / 'subjects' / 'fsaverage'}), not the full template's 163,842") in err


def test_a_freesurfer_sulc_given_with_sulc_sign_hcp_is_told_to_leave_the_option_out(tmp_path, capsys):
    """``--sulc-sign hcp`` given for FreeSurfer's own lh.sulc: flagged for its sign (exit 3), and the
    advice is to leave the option out, not (as before) to add it."""
    surf = example_dir() / "sub-01" / "surf"
    out = tmp_path / "lh_sphere.surf.gii"
    assert main(["--sphere", str(surf / "lh.sphere"), "--feature", f"sulc={surf / 'lh.sulc'}",
                 "--sulc-sign", "hcp", "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert "FLAGGED hemi-L: sign:" in err and "leave out --sulc-sign hcp" in err
    assert "(geomorph-register --sulc-sign hcp" not in err
    metrics = json.loads((tmp_path / "lh_metrics.json").read_text())
    assert metrics["sulc_sign"] == "hcp" and metrics["identity_cc_negated"] > 0.9


def test_a_curvature_gifti_copied_over_the_sulc_is_written_flagged_and_exits_3(tmp_path, capsys):
    """The sMRIPrep example's curv copied over its sulc's name registered at CC 0.74, quality ok,
    exit 0 (no gate fires); its data array is still named curv: written, flagged, exit 3."""
    anat = Path(__file__).resolve().parents[2] / "examples" / "ds-geomorph-example" / "derivatives" / "smriprep" \
        / "sub-02" / "anat"
    sulc = tmp_path / "sub-02_hemi-L_sulc.shape.gii"
    sulc.write_bytes((anat / "sub-02_hemi-L_curv.shape.gii").read_bytes())
    out = tmp_path / "lh_sphere.surf.gii"
    assert main(["--sphere", str(anat / "sub-02_hemi-L_sphere.surf.gii"), "--feature", f"sulc={sulc}",
                 "--out", str(out)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("geomorph-register: FLAGGED hemi-L: identity: sub-02_hemi-L_sulc.shape.gii: its GIFTI "
                              "data array is named for curv (Name metadata), registered as sulc")
    metrics = json.loads((tmp_path / "lh_metrics.json").read_text())
    assert out.is_file() and 0.5 < metrics["cc_sulc_after"] < 0.85  # no other gate noticed


def test_a_parcellation_given_as_sulc_is_written_flagged_and_exits_3(tmp_path, capsys):
    """QA (fix-bd): a parcellation of 35 regions (``lh.aparc.label.gii``, keys in no order of depth) given as
    sulc registered at CC 0.51, rotated 123 degrees, **quality ok, exit 0**: no gate tells region numbers from
    a map. Its data array's intent (``NIFTI_INTENT_LABEL``) does: written, flagged, exit 3."""
    from nibabel.gifti import GiftiDataArray, GiftiImage, GiftiLabel, GiftiLabelTable

    from geomorph_bids.io import read_sphere

    anat = Path(__file__).resolve().parents[2] / "examples" / "ds-geomorph-example" / "derivatives" / "freesurfer" \
        / "sub-01" / "surf"
    v = read_sphere(anat / "lh.sphere").vertices
    rng = np.random.default_rng(0)
    centres = v[rng.choice(len(v), 35, replace=False)]
    region = np.argmin(((v[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)  # 35 patches
    table = GiftiLabelTable()
    for key in range(36):
        label = GiftiLabel(key, 0.5, 0.5, 0.5, 1.0)
        label.label = f"region{key}"
        table.labels.append(label)
    keys = GiftiDataArray((rng.permutation(35)[region] + 1).astype(np.int32), intent="NIFTI_INTENT_LABEL",
                          datatype="NIFTI_TYPE_INT32")
    parcellation = tmp_path / "lh.aparc.label.gii"
    nib.save(GiftiImage(darrays=[keys], labeltable=table), parcellation)
    out = tmp_path / "lh_sphere.surf.gii"
    assert main(["--sphere", str(anat / "lh.sphere"), "--feature", f"sulc={parcellation}", "--out", str(out)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("geomorph-register: FLAGGED hemi-L: identity: lh.aparc.label.gii: is a GIFTI label file "
                       "(NIFTI_INTENT_LABEL), a parcellation's region numbers, not a map of values, registered as "
                       "sulc: give the sulc map")
    metrics = json.loads((tmp_path / "lh_metrics.json").read_text())
    assert out.is_file() and metrics["cc_sulc_after"] > 0.5  # the correlation gate passed it


def _own_files_run(surf, out, model="rigid"):
    """geomorph-register's arguments for the example's left hemisphere into folder ``out``."""
    return ["--sphere", str(surf / "lh.sphere"), "--feature", f"sulc={surf / 'lh.sulc'}", "--hemi", "L", "--model", model,
            "--out", str(out / "lh.reg.surf.gii"), "--features-out", str(out / "maps")]


def _tree_bytes(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_rerun_stopped_while_writing_leaves_the_earlier_set_whole(tmp_path, sig):
    """Twentieth session: a rerun into the folder of an earlier run, stopped by a cluster's time limit
    (SIGTERM) or Ctrl-C after the sphere and the map were written, before the metrics JSON. Before:
    SIGTERM left the new sphere and map beside the earlier run's metrics JSON (a mixed set that
    looked finished); Ctrl-C printed a traceback and deleted the sphere and map, leaving the earlier
    metrics JSON describing a sphere that was gone. Now: one line, 128 + N, and the earlier set byte
    for byte, no staging folder left."""
    import signal
    import subprocess
    import sys

    surf = example_dir() / "sub-01" / "surf"
    out = tmp_path / "out"
    assert main(_own_files_run(surf, out)) in (0, 3)
    before = _tree_bytes(out)
    # the metrics JSON's write sends the signal to the process itself (what a time limit does meanwhile)
    script = ("import os, signal, sys\n"
              "import geomorph_bids.cli.register as cli\n"
              "real = cli._write_json\n"
              "def write_json(*a):\n"
              f"    os.kill(os.getpid(), signal.{sig})\n"
              "    return real(*a)\n"
              "cli._write_json = write_json\n"
              "sys.exit(cli.main(sys.argv[1:]))\n")
    run = subprocess.run([sys.executable, "-c", script, *_own_files_run(surf, out, model="default")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 128 + getattr(signal, sig), run.stderr
    assert "Traceback" not in run.stderr
    assert f"geomorph-register: interrupted by {sig}" in run.stderr
    assert _tree_bytes(out) == before
    assert sorted(p.name for p in out.rglob(".*")) == []


def test_a_rerun_that_cannot_write_its_metrics_keeps_the_earlier_set(tmp_path, monkeypatch, capsys):
    """Twentieth session: a disk that fills while a rerun writes. Before: the rerun's sphere and maps were
    removed, and with them the earlier run's of the same names, while the earlier metrics JSON stayed (a
    'done' file for a sphere that was gone). Now the earlier set is left as it was, and the message names
    the output that could not be written, not a staged copy."""
    import errno

    import geomorph_bids.cli.register as cli

    surf = example_dir() / "sub-01" / "surf"
    out = tmp_path / "out"
    assert main(_own_files_run(surf, out)) in (0, 3)
    before = _tree_bytes(out)
    real = cli._write_json

    def full(path, payload):
        real(path, payload)
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(cli, "_write_json", full)
    capsys.readouterr()
    assert main(_own_files_run(surf, out, model="default")) == 1
    err = capsys.readouterr().err
    assert f"no space left on device (disk full) writing {out / 'lh.reg_metrics.json'}" in err, err
    assert _tree_bytes(out) == before
    assert sorted(p.name for p in out.rglob(".*")) == []


def test_two_runs_into_the_same_output_names_at_once_leave_one_runs_whole_set(tmp_path, monkeypatch):
    """Two `geomorph-register` runs given the same --out at once (two subjects' spheres, a copied
    command line): each renamed its staged files into place one by one, so their renames could
    interleave and leave one run's sphere beside the other's metrics JSON (which names the other
    input sphere), both runs exit 0. Now a run's set is renamed into place under a lock on the
    output folder: the folder holds one run's whole set, the other's replaced as a whole."""
    import os
    import threading

    from geomorph_bids.cli.register import _OutputSet

    b_done = threading.Event()
    real_replace = os.replace
    seen: list[str] = []

    def replace(src, dst):
        real_replace(src, dst)
        if threading.current_thread().name == "A" and not seen:
            seen.append(str(dst))
            b_done.wait(timeout=0.3)  # B commits its whole set meanwhile (before the fix)

    def write_set(who: str):
        with _OutputSet() as outputs:
            for name in ("x.surf.gii", "x_metrics.json"):
                outputs.stage(tmp_path / name).write_text(who)
            outputs.commit()
        if who == "B":
            b_done.set()

    monkeypatch.setattr(os, "replace", replace)
    a = threading.Thread(target=write_set, args=("A",), name="A")
    a.start()
    while not seen and a.is_alive():  # A has put its sphere in place
        threading.Event().wait(0.005)
    b = threading.Thread(target=write_set, args=("B",), name="B")
    b.start()
    a.join()
    b.join()
    assert (tmp_path / "x.surf.gii").read_text() == (tmp_path / "x_metrics.json").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.surf.gii", "x_metrics.json"]


def test_an_output_name_too_long_for_its_temporary_name_is_refused_before_the_registration(tmp_path, capsys):
    """``--out`` of a 249-byte name (a name the file system takes) failed after the registration with
    ``error: File name too long at .../.<name>.a86fdk6p.tmp``: the temporary name it is written under
    is 14 bytes longer, and the message named that file, not --out. A metrics name made from --out
    (``_metrics.json`` in place of ``.surf.gii``) could overflow the same way. Both are now refused
    before anything is read, naming the option; nothing is written."""
    surf = example_dir() / "sub-01" / "surf"
    for stem, option, name in [("x" * 240, "--out", "x" * 240 + ".surf.gii"),
                               ("x" * 232, "--metrics", "x" * 232 + "_metrics.json")]:
        code = main(["--sphere", str(surf / "lh.sphere"), "--feature", f"sulc={surf / 'lh.sulc'}", "--hemi", "L",
                     "--model", "rigid", "--out", str(tmp_path / f"{stem}.surf.gii")])
        assert code == 1
        assert capsys.readouterr().err.splitlines()[-1] == (
            f"geomorph-register: error: hemi-L {tmp_path / name}: {option} cannot be written: its file name is "
            f"{len(name)} bytes long, more than the 241 the file system takes (255, less 14 for the temporary name "
            "it is written under); give a shorter name")
    assert list(tmp_path.iterdir()) == []


def test_a_feature_file_whose_path_holds_an_equals_sign_is_read_as_a_file(tmp_path, monkeypatch):
    """``--feature /data/run=2/lh.sulc`` (the name left to the file's, as the help allows) was split at
    the ``=``: ``error: hemi-L: --feature /data/run: unknown feature name``. A name holding ``/``, or
    a word that is a file where its part after ``=`` is none, is now a file; ``NAME=FILE`` as before."""
    import shutil

    from geomorph_bids.cli.register import _parse_features

    folder = tmp_path / "run=2"
    folder.mkdir()
    shutil.copy(example_dir() / "sub-01" / "surf" / "lh.sulc", folder / "lh.sulc")
    monkeypatch.chdir(tmp_path)
    assert _parse_features([str(folder / "lh.sulc")]) == {"sulc": folder / "lh.sulc"}
    assert _parse_features(["run=2/lh.sulc"]) == {"sulc": Path("run=2/lh.sulc")}
    assert _parse_features(["curv=run=2/lh.sulc"]) == {"curv": Path("run=2/lh.sulc")}
    assert main(["--sphere", str(example_dir() / "sub-01" / "surf" / "lh.sphere"), "--feature", "run=2/lh.sulc",
                 "--model", "rigid", "--out", str(tmp_path / "o" / "x.surf.gii")]) == 0


def test_geomorph_bids_features_option_is_not_taken_as_features_out(tmp_path, monkeypatch, capsys):
    """Twentieth session: ``--features curv`` (geomorph-bids' option, given to geomorph-register) was a
    unique abbreviation of ``--features-out``: the resampled sulc went into a new folder named ``curv``,
    exit 0. Now a usage error naming this command's options, nothing written."""
    from geomorph_bids.cli.register import build_parser

    surf = example_dir() / "sub-01" / "surf"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["--sphere", str(surf / "lh.sphere"), "--feature", f"sulc={surf / 'lh.sulc'}", "--features",
              "curv", "--out", "lh.surf.gii", "--model", "rigid"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exc.value.code == 2 and err == (
        "geomorph-register: error: --features is geomorph-bids' option; geomorph-register takes each map with "
        "--feature NAME=FILE (e.g. --feature sulc=lh.sulc curv=lh.curv) and writes them resampled to "
        "--features-out DIR")
    assert list(tmp_path.iterdir()) == []
    assert "--features " not in " ".join(build_parser().format_help().split()).replace("--features-out", "")


def test_a_feature_file_whose_path_holds_an_equals_sign_needs_no_name(tmp_path, monkeypatch):
    """Twentieth session: ``--feature /data/run=1/lh.sulc`` was read as NAME=FILE, name ``/data/run``
    (``unknown feature name``). A part before ``=`` with a ``/``, or a relative path that is a file as
    a whole, is a FILE whose name says the feature."""
    from geomorph_bids.cli.register import _parse_features

    folder = tmp_path / "run=1"
    folder.mkdir()
    (folder / "lh.sulc").write_bytes(b"")
    assert _parse_features([str(folder / "lh.sulc")]) == {"sulc": folder / "lh.sulc"}
    monkeypatch.chdir(tmp_path)
    assert _parse_features(["run=1/lh.sulc"]) == {"sulc": Path("run=1/lh.sulc")}
    assert _parse_features([f"curv={folder / 'lh.sulc'}"]) == {"curv": folder / "lh.sulc"}  # NAME=FILE still


@pytest.mark.parametrize("file_name, feature", [
    ("sub-01_hemi-L_myelinw.func.gii", "myelin"),              # the sMRIPrep-layout name discovery reads
    ("100307.L.MyelinMap_BC.native.func.gii", "myelin"),       # HCP's PostFreeSurfer
    ("100307.L.MyelinMap_BC.native.dscalar.nii", "myelin"),
    ("100307.L.curvature.native.shape.gii", "curv"),
    ("L.refsulc.164k_fs_LR.shape.gii", "sulc"),
    ("lh.sulc", "sulc"),
    ("sub-01_hemi-L_desc-myelin_map.func.gii", "myelin"),
])
def test_a_feature_file_named_as_hcp_or_the_bids_layout_name_it_needs_no_name(file_name, feature):
    """Twenty-first session: the help says NAME may be left out "when the file name says it", but
    ``--feature sub-01_hemi-L_myelinw.func.gii`` (the name discovery and docs/models.md give a myelin
    map) or HCP's ``.MyelinMap_BC.`` and ``.curvature.`` were a usage error (``--feature expects
    NAME=FILE``): only the four literal words were read. The file name is read as the identity check
    reads it (``io.hemisphere_label.declared_map``)."""
    from geomorph_bids.cli.register import _parse_features

    assert _parse_features([f"/data/{file_name}"]) == {feature: Path(f"/data/{file_name}")}


def test_a_killed_runs_staging_folder_is_removed_by_the_next_run(tmp_path, capsys):
    """A SIGKILLed geomorph-register left its hidden ``.geomorph-register-*`` folder beside the outputs
    for good. Each now holds owner.json (host, pid, the process's start time): the next run into the
    folder removes those whose process has ended, or without one (an earlier version's) untouched for a
    day, and says so; a live run's, and a fresh one without an owner, are left alone."""
    import os
    import socket
    import subprocess
    import sys
    import time

    from geomorph_bids.cli.register import _pid_namespace, _process_start

    surf = example_dir() / "sub-01" / "surf"
    out = tmp_path / "out"
    out.mkdir()
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(ended.stdout)
    folders = {name: out / f".geomorph-register-{name}"
               for name in ("dead", "reused", "live", "old", "fresh", "container")}
    for f in folders.values():
        f.mkdir()
        (f / "lh.reg.surf.gii").write_bytes(b"half")
    host = socket.gethostname()
    ns = _pid_namespace()
    (folders["dead"] / "owner.json").write_text(json.dumps({"host": host, "pid": dead_pid, "start": "1", "pidns": ns}))
    (folders["reused"] / "owner.json").write_text(json.dumps({"host": host, "pid": os.getpid(), "start": "-1",
                                                              "pidns": ns}))
    (folders["live"] / "owner.json").write_text(json.dumps({"host": host, "pid": os.getpid(),
                                                            "start": _process_start(os.getpid()), "pidns": ns}))
    # another container on this host (its own PID namespace): its pid means nothing here, kept until a day old
    (folders["container"] / "owner.json").write_text(json.dumps({"host": host, "pid": dead_pid, "start": "1",
                                                                 "pidns": "pid:[1]"}))
    two_days = time.time() - 2 * 86400
    os.utime(folders["old"], (two_days, two_days))
    assert main(_own_files_run(surf, out)) in (0, 3)
    err = capsys.readouterr().err
    left = sorted(p.name for p in out.glob(".geomorph-register-*"))
    assert left == [".geomorph-register-container", ".geomorph-register-fresh", ".geomorph-register-live"], left
    assert f"note: removed {folders['dead']}, the temporary folder of a run that was killed (its process " \
           f"{dead_pid} has ended)" in err
    assert "(the id is another process's now)" in err and "(untouched for 48 h)" in err
    assert (out / "lh.reg.surf.gii").is_file()


def test_an_output_folder_named_in_another_encoding_is_written_as_before(tmp_path, capsys):
    """Twenty-second session: a folder named in Latin-1 (``caf\\xe9``, from an old file server; any
    name whose bytes are not UTF-8) given as ``--out`` ended the run before anything was read on
    ``error: 'utf-8' codec can't encode character '\\udce9' in position 15: surrogates not allowed``,
    naming nothing: the new check of the name's length counted its UTF-8 bytes. The bytes on disk are
    counted now (``os.fsencode``), and the outputs are written there, as before that check."""
    import os

    surf = example_dir() / "sub-01" / "surf"
    folder = tmp_path / os.fsdecode(b"caf\xe9")
    out = folder / "lh.reg.surf.gii"
    code = main(["--sphere", str(surf / "lh.sphere"), "--feature", str(surf / "lh.sulc"), "--model", "rigid",
                 "--out", str(out), "--features-out", str(folder / "maps")])
    assert code == 0, capsys.readouterr().err
    assert sorted(os.listdir(os.fsencode(folder))) == [b"lh.reg.surf.gii", b"lh.reg_metrics.json", b"maps"]
    assert json.loads(out.with_name("lh.reg_metrics.json").read_text())["hemi"] == "L"


def test_a_metrics_name_that_is_a_link_loop_is_no_traceback(tmp_path, capsys):
    """Round twenty-two, found by fuzzing the command line: ``--metrics LOOP`` (a symbolic link to
    itself: a script's ``ln -s`` gone wrong) ended in a ``RuntimeError: Symlink loop`` traceback from
    the check that --metrics is not --out (``Path.resolve``). The link is now replaced by the metrics
    JSON, as ``mv`` replaces one; a link to --out is still refused as --out."""
    surf = example_dir() / "sub-01" / "surf"
    (tmp_path / "loop.json").symlink_to("loop.json")
    out = tmp_path / "x.surf.gii"
    argv = ["--sphere", str(surf / "lh.sphere"), "--feature", str(surf / "lh.sulc"), "--model", "rigid",
            "--out", str(out)]
    assert main([*argv, "--metrics", str(tmp_path / "loop.json")]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "loop.json").is_symlink()
    assert json.loads((tmp_path / "loop.json").read_text())["hemi"] == "L"
    (tmp_path / "to-out.json").symlink_to(out)
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--metrics", str(tmp_path / "to-out.json")])
    assert exc.value.code == 2 and "is also --out" in capsys.readouterr().err


def test_a_mirrored_hemisphere_wound_inward_is_written_with_its_own_triangles(tmp_path, capsys):
    """geomorph-register on a right hemisphere mirrored x -> -x and given as --hemi L (faces kept, so wound
    inward): it registered, but the output sphere was written with every triangle re-wound ([0, 2, 1]),
    where the README promises "same vertices and triangles as the input", so an evaluator comparing each
    file's triangle orientations counted all 20,480 as flipped. Now the output has the input's triangles."""
    from geomorph_bids.io import read_feature, read_surface

    surf = example_dir() / "sub-01" / "surf"
    rh = read_surface(surf / "rh.sphere")
    nib.freesurfer.write_geometry(str(tmp_path / "lh.sphere"), (rh.vertices * [-1.0, 1.0, 1.0]).astype(np.float32),
                                  rh.faces.astype(np.int32))
    nib.freesurfer.write_morph_data(str(tmp_path / "lh.sulc"), read_feature(surf / "rh.sulc").astype(np.float32))
    out = tmp_path / "out" / "lh.reg.surf.gii"
    assert main(["--sphere", str(tmp_path / "lh.sphere"), "--feature", f"sulc={tmp_path / 'lh.sulc'}",
                 "--hemi", "L", "--out", str(out)]) == 0
    assert "error" not in capsys.readouterr().err
    img = nib.load(str(out))
    vertices, faces = img.darrays[0].data.astype(np.float64), img.darrays[1].data
    assert np.array_equal(faces, rh.faces)
    v_in, f_in = nib.freesurfer.read_geometry(str(tmp_path / "lh.sphere"))

    def outward(v, f):
        n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
        return np.einsum("ij,ij->i", n, v[f].mean(axis=1)) > 0

    assert np.array_equal(outward(v_in, f_in), outward(vertices, faces))  # not one triangle flipped
    metrics = json.loads((tmp_path / "out" / "lh.reg_metrics.json").read_text())
    assert metrics["n_folded"] == 0 and metrics["cc_sulc_after"] > 0.9


def test_the_readmes_metric_definitions_are_what_the_metrics_json_holds(tmp_path):
    """README, "Evaluating accuracy yourself": areal_* are per-vertex |log2| area ratios (a third of the
    triangles around each vertex, both spheres at radius 100), n_folded the triangles whose orientation
    differs between input and output with the same faces; the output keeps the input's vertex order
    and lies at radius 100. Recomputed here with numpy alone from the files, as an evaluator would."""
    surf = example_dir() / "sub-01" / "surf"
    out = tmp_path / "lh.reg.surf.gii"
    assert main(["--sphere", str(surf / "lh.sphere"), "--feature", f"sulc={surf / 'lh.sulc'}", "--hemi", "L",
                 "--out", str(out)]) == 0
    metrics = json.loads((tmp_path / "lh.reg_metrics.json").read_text())
    v_in, f_in = nib.freesurfer.read_geometry(str(surf / "lh.sphere"))
    img = nib.load(str(out))
    v_out, f_out = img.darrays[0].data.astype(np.float64), img.darrays[1].data
    assert np.array_equal(f_out, f_in)
    np.testing.assert_allclose(np.linalg.norm(v_out, axis=1), 100.0, atol=1e-3)
    v_in = 100.0 * v_in / np.linalg.norm(v_in, axis=1, keepdims=True)
    assert np.degrees(np.arccos(np.clip((v_in * v_out).sum(1) / 1e4, -1, 1))).max() < 60  # vertex i is vertex i

    def vertex_areas(v, f):
        a = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
        return np.bincount(f.ravel(), weights=np.repeat(a / 3, 3), minlength=len(v))

    def orientation(v, f):
        n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
        return np.sign(np.einsum("ij,ij->i", v[f[:, 0]] - v.mean(axis=0), n))

    areal = np.abs(np.log2(vertex_areas(v_out, f_in) / vertex_areas(v_in, f_in)))
    assert metrics["areal_mean_abs"] == pytest.approx(areal.mean(), abs=2e-5)  # the output is float32
    assert metrics["areal_p95_abs"] == pytest.approx(np.percentile(areal, 95), abs=2e-4)
    assert metrics["areal_max_abs"] == pytest.approx(areal.max(), abs=2e-4)
    assert metrics["n_folded"] == int((orientation(v_in, f_in) != orientation(v_out, f_in)).sum()) == 0


def test_a_mirrored_right_hemisphere_still_declared_right_says_how_to_declare_it_left(tmp_path, capsys):
    """An evaluator mirrors sMRIPrep's hemi-R sphere x -> -x (nibabel keeps its CortexRight metadata and its
    faces, now wound inward) and gives it as --hemi L: FLAGGED identity, exit 3, with nothing saying that a
    mirrored hemisphere was recognised or what clears the flag. The sphere's line now says so; declared
    CortexLeft (sphere and sulc), the same files register without a flag."""
    anat = Path(__file__).resolve().parents[2] / "examples" / "ds-geomorph-example" / "derivatives" / "smriprep"
    anat = anat / "sub-02" / "anat"
    sphere = nib.load(str(anat / "sub-02_hemi-R_sphere.surf.gii"))
    sphere.darrays[0].data[:, 0] *= -1
    nib.save(sphere, str(tmp_path / "mirrored_sphere.surf.gii"))
    sulc = nib.load(str(anat / "sub-02_hemi-R_sulc.shape.gii"))
    nib.save(sulc, str(tmp_path / "mirrored_sulc.shape.gii"))
    args = ["--sphere", str(tmp_path / "mirrored_sphere.surf.gii"), "--feature",
            f"sulc={tmp_path / 'mirrored_sulc.shape.gii'}", "--hemi", "L"]
    assert main(args + ["--out", str(tmp_path / "a" / "lh.surf.gii")]) == 3
    err = capsys.readouterr().err
    assert ("identity: mirrored_sphere.surf.gii: GIFTI AnatomicalStructurePrimary CortexRight says hemi-R, registered "
            "as hemi-L (its triangles are wound inward, as those of a hemisphere mirrored x -> -x are: if it was "
            "mirrored on purpose, declare it and its maps hemi-L, in the GIFTI AnatomicalStructurePrimary and the "
            "file names, and this flag goes)") in err
    for img, name in ((sphere, "mirrored_sphere.surf.gii"), (sulc, "mirrored_sulc.shape.gii")):
        for array in img.darrays:
            array.meta["AnatomicalStructurePrimary"] = "CortexLeft"
        img.meta["AnatomicalStructurePrimary"] = "CortexLeft"
        nib.save(img, str(tmp_path / name))
    assert main(args + ["--out", str(tmp_path / "b" / "lh.surf.gii")]) == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "b" / "lh_metrics.json").read_text())
    assert metrics["label_conflicts"] == [] and metrics["n_folded"] == 0 and metrics["cc_sulc_after"] > 0.9


@pytest.mark.parametrize("brainspace", [True, False])
def test_the_example_with_a_network_of_maps_it_lacks_says_so_as_geomorph_bids_does(tmp_path, monkeypatch, capsys,
                                                                                     brainspace):
    """Twenty-fourth session: ``--example --model multimodal-fsLR`` (the bundled subject has sulc alone) ended on
    ``.../multimodal-fsLR/model.pt: model 'multimodal-fsLR' expects channels [sulc, curv, myelin] ...; input has
    [sulc] ... (missing: curv, myelin)``, naming the network's file as if it were at fault. Now, as geomorph-bids,
    the template's maps first (brainspace missing: its line), then one line naming the example's folder and what
    it lacks; nothing written either way."""
    import geomorph_bids.resources as resources
    from geomorph_bids.resources import example_dir

    real = resources.package_file
    if not brainspace:
        monkeypatch.setattr(resources, "package_file",
                            lambda package, relative: None if package == "brainspace" else real(package, relative))
    elif real("brainspace", "datasets") is None:
        pytest.skip("brainspace is not installed")
    out = tmp_path / "example"
    code = main(["--example", "--model", "multimodal-fsLR", "--out-dir", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and not out.exists()
    if brainspace:
        assert err[-1] == (
            f"geomorph-register: error: {example_dir() / 'sub-01' / 'surf'}: the bundled example subject has sulc alone "
            "(?h.sphere, ?h.sulc); --model multimodal-fsLR registers sulc, curv, myelin (missing: curv, myelin): run "
            "--example with a model of sulc (the default, sulc-fsLR or rigid), or register your own subject's files: "
            "geomorph-register --sphere lh.sphere --feature sulc=lh.sulc --feature curv=FILE --feature myelin=FILE "
            "--model multimodal-fsLR --out lh.fsLR.surf.gii")
        # the command it offers runs as written (it lacked --out: `missing --out`, exit 2)
        offered = shlex.split(err[-1].split("files: ", 1)[1])
        args = build_parser().parse_args(offered[1:])
        assert args.out is not None and args.sphere.name == "lh.sphere"
    else:
        assert err[-1] == (
            "geomorph-register: error: template fsLR has no feature curv, myelin; it has: sulc (curv, myelin come "
            "from the brainspace package: pip install 'geomorph-bids[multimodal]')")


def test_ones_own_files_without_a_map_the_network_reads_name_the_maps_and_the_input(tmp_path, capsys):
    """Twenty-fourth session: ``geomorph-register --sphere lh.sphere --feature sulc=lh.sulc --model multimodal-fsLR``
    (brainspace installed) ended on ``.../multimodal-fsLR/model.pt: model 'multimodal-fsLR' expects channels [sulc,
    curv, myelin] ...; input has [sulc] ...``, naming the network's file as if it were at fault. Now one line names
    the hemisphere, the input, the maps the network reads and the ``--feature`` to add; nothing is written. A
    misspelt name is still named as one first."""
    import geomorph_bids.resources as resources

    if resources.package_file("brainspace", "datasets") is None:
        pytest.skip("brainspace is not installed")
    surf = example_dir() / "sub-01" / "surf"
    out = tmp_path / "out" / "lh_sphere.surf.gii"
    code = main(["--sphere", str(surf / "lh.sphere"), "--feature", f"sulc={surf / 'lh.sulc'}",
                 f"thickness={surf / 'lh.sulc'}", "--model", "multimodal-fsLR", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and not out.parent.exists()
    assert err[-1] == (
        f"geomorph-register: error: hemi-L {surf / 'lh.sphere'}: --model multimodal-fsLR registers sulc, curv, myelin; "
        "--feature gives sulc, thickness (missing: curv, myelin): add --feature curv=FILE --feature myelin=FILE")
    code = main(["--sphere", str(surf / "lh.sphere"), "--feature", f"sulc={surf / 'lh.sulc'}",
                 f"curvv={surf / 'lh.sulc'}", "--model", "multimodal-fsLR", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and "--feature curvv: unknown feature name" in err[-1] and "did you mean curv?" in err[-1]


def test_a_sulc_nan_over_a_cap_is_recorded_in_the_metrics_and_looked_for_once(tmp_path, no_data_calls):
    """A sulc NaN over a 30-degree cap (a lesion or medial wall exported as NaN): the metrics JSON records the
    vertices as the BIDS-App's does (``no_data``: before, absent), and ``io.validate.no_data`` runs once per map
    (``read_hemisphere``), not again in ``register()`` on maps where it can find nothing (before: twice)."""
    calls = no_data_calls
    surf = example_dir() / "sub-01" / "surf"
    values = nib.freesurfer.read_morph_data(str(surf / "lh.sulc")).astype(np.float32)
    v = nib.freesurfer.read_geometry(str(surf / "lh.sphere"))[0]
    cap = v[:, 0] / np.linalg.norm(v, axis=1) > np.cos(np.radians(30))
    values[cap] = np.nan
    bad = tmp_path / "lh.sulc"
    nib.freesurfer.write_morph_data(str(bad), values)
    code = main(["--sphere", str(surf / "lh.sphere"), "--feature", f"sulc={bad}", "--hemi", "L",
                 "--model", "rigid", "--out", str(tmp_path / "out" / "lh_sphere.surf.gii")])
    metrics = json.loads((tmp_path / "out" / "lh_metrics.json").read_text())
    assert code == 0 and calls == ["feature 'sulc'"]
    assert metrics["no_data"] == {"vertices": int(cap.sum()), "of_vertices": 10242,
                                  "features": {"sulc": {"nan": int(cap.sum()), "constant": 0}}}


def test_the_no_data_line_of_a_map_the_registration_does_not_compare_says_the_resampling_alone(tmp_path, capsys):
    """fix-cd: thickness NaN over a 30-degree cap beside a sulc registration (fsLR has no thickness map: it is
    resampled only): its warning line said "left out of the registration as a cortex mask
    leaves the medial wall", but the registration does not compare thickness (``registration_cortex``). Now it says
    the resampling alone; sulc's line is unchanged."""
    surf = example_dir() / "sub-01" / "surf"
    v = nib.freesurfer.read_geometry(str(surf / "lh.sphere"))[0]
    cap = v[:, 0] / np.linalg.norm(v, axis=1) > np.cos(np.radians(30))
    values = 2.5 + 0.3 * nib.freesurfer.read_morph_data(str(surf / "lh.sulc")).astype(np.float32)  # mm
    values[cap] = np.nan
    bad = tmp_path / "lh.thickness"
    nib.freesurfer.write_morph_data(str(bad), values)
    code = main(["--sphere", str(surf / "lh.sphere"), "--feature", f"sulc={surf / 'lh.sulc'}", "--feature",
                 f"thickness={bad}", "--hemi", "L", "--model", "rigid", "--template", "fsLR",
                 "--out", str(tmp_path / "out" / "lh_sphere.surf.gii")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert [line.split(": feature ", 1)[1] for line in err.splitlines() if "read as no data" in line] == [
        f"'thickness' holds NaN at {int(cap.sum())} of 10242 vertices ({100 * cap.mean():.1f}%; a medial wall or lesion "
        "exported as NaN?): read as no data, left out of the resampling as a cortex mask leaves the medial wall "
        "(not of the registration, which does not compare this map), and 0 in the maps written"], err

"""geomorph-train end to end: synthetic and user subjects, model card, resume, one-line errors."""

from __future__ import annotations

import csv

import pytest
import torch

from geomorph_bids.cli.train import build_model_config, main
from geomorph_bids.model.checkpoint import read_metadata
from geomorph_bids.model.geomorph import GeoMorphConfig
from geomorph_bids.resources import example_dir


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_synthetic_end_to_end_and_resume(tmp_path, capsys):
    out = tmp_path / "model"
    argv = ["--out", str(out), "--synthetic", "6", "--epochs", "2", "--channels", "tiny",
            "--data-level", "3", "--seed", "3", "--lr", "3e-3", "--threads", "1"]
    assert main(argv) == 0
    for name in ("model.pt", "last.pt", "last.state.pt", "train_log.csv", "model_card.md"):
        assert (out / name).is_file(), name
    rows = _rows(out / "train_log.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    meta = read_metadata(out / "model.pt")
    command = "geomorph-train " + " ".join(argv)
    assert meta.provenance.command == command and meta.provenance.seed == 3
    # never a bundled network's name (a registration with it would record that name)
    assert meta.name == "sulc-fsLR-model" and meta.template == "fsLR" and meta.channels == ("sulc",)
    assert meta.provenance.extra["n_train"] == 5 and meta.provenance.extra["n_val"] == 1
    assert GeoMorphConfig.from_dict(meta.config["geomorph"]).data_level == 3
    card = (out / "model_card.md").read_text()
    assert command in card and "- Seed: 3" in card and "5 synthetic subjects" in card
    assert card.startswith("# GeoMorph model `sulc-fsLR-model`")
    assert "ReduceLROnPlateau (patience 3" in card and "cosine" not in card  # the schedule that ran
    assert "wall time" in card and f"best epoch ({meta.provenance.extra['best_epoch']})" in card
    # the hardware the wall time was spent on (was "Device: cpu" alone)
    assert meta.provenance.extra["hardware"].endswith(" cores, 1 torch thread")
    assert f"- Device: cpu ({meta.provenance.extra['hardware']}); wall time" in card
    printed = capsys.readouterr().out
    assert "epoch   2/2" in printed and "cc " in printed
    # resume for one more epoch
    assert main(argv[:4] + ["--epochs", "3"] + argv[6:] + ["--resume", str(out / "last.pt"), "--quiet"]) == 0
    assert [int(r["epoch"]) for r in _rows(out / "train_log.csv")] == [1, 2, 3]
    assert read_metadata(out / "last.pt").provenance.extra["epochs_run"] == 3


def test_user_subjects_directory_mirrored(tmp_path):
    out = tmp_path / "subj"
    # the bundled example: one subject, both hemispheres, right mirrored into the left model
    assert main(["--out", str(out), "--subjects-dir", str(example_dir()), "--mirror-right",
                 "--epochs", "1", "--channels", "tiny", "--data-level", "3", "--val-fraction", "0",
                 "--lr-schedule", "cosine", "--warmup", "3", "--quiet"]) == 0
    meta = read_metadata(out / "model.pt")
    assert meta.hemisphere == "LR-mirrored" and meta.provenance.extra["n_train"] == 2
    assert meta.provenance.extra["n_val"] == 0
    card = (out / "model_card.md").read_text()
    assert "2 hemispheres of 1 subjects" in card
    assert "cosine decay after 3 warm-up steps" in card and "ReduceLROnPlateau" not in card


@pytest.mark.parametrize("argv, needle", [
    (["--synthetic", "4", "--device", "cuda"], "CUDA is not available"),
    ([], "no training data"),
    (["--synthetic", "4", "--hemi", "R", "--mirror-right"], "--hemi L"),
    (["--subjects-dir", "/nonexistent/subjects"], "subjects directory not found"),
    (["--synthetic", "4", "--template", "fsaverage", "--features", "myelin"], "no feature myelin"),
    (["--sources", "/nonexistent/bank.npz"], "--sources /nonexistent/bank.npz: no such file"),
    (["--sources", "/nonexistent/bank.npz", "--mirror-right"], "no such file"),
    (["--synthetic", "4", "--teachers"], "--teachers needs --sources"),
    # the bank's pair options without a bank changed nothing, exit 0 (--warp-deg 10 2 unchecked)
    (["--synthetic", "4", "--holdout", "fsavg5_Rm"], "--holdout shapes the pairs generated from --sources"),
    (["--synthetic", "4", "--warp-deg", "10", "2", "--small-warp-fraction", "0.2"],
     "--warp-deg and --small-warp-fraction shape the pairs generated from --sources"),
    # twentieth session: the counts of generated pairs without a bank trained on --synthetic, exit 0
    (["--synthetic", "4", "--pairs-per-epoch", "100"], "--pairs-per-epoch shapes the pairs generated"),
    (["--synthetic", "4", "--pairs-per-epoch", "8", "--val-pairs", "4"],
     "--pairs-per-epoch and --val-pairs shape the pairs generated from --sources"),
])
def test_errors_are_one_line(tmp_path, capsys, argv, needle):
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert main(["--out", str(tmp_path / "o"), "--data-level", "3", "--channels", "tiny", *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("geomorph-train: error:") and "\n" not in err and needle in err, err
    assert not (tmp_path / "o" / "model.pt").exists()


def test_presets_and_cascade():
    cfg = build_model_config("default", 1)
    net = cfg.stages[0].network
    assert net.channels == (32, 32, 64, 64, 128) and net.control_level == 4 and net.n_labels == 600
    assert cfg.stages[0].label_level == 6 and cfg.data_level == 6
    cas = build_model_config("small", 2, 6, (2, 4), (100, 300))
    assert [s.control_level for s in cas.stages] == [2, 4] and [s.n_labels for s in cas.stages] == [100, 300]
    assert cas.in_channels == 2
    tiny = build_model_config("tiny", 1, 3)
    assert tiny.stages[0].network.channels == (8, 8) and tiny.stages[0].label_level == 3
    with pytest.raises(ValueError, match="label counts"):
        build_model_config("tiny", 1, 4, (2, 3), (10, 20, 30))


def test_training_uses_the_template_maps_found(tmp_path, tiny_fsaverage, capsys):
    """--template-dir (like SUBJECTS_DIR or TEMPLATEFLOW_HOME) gives the template's maps: the
    fixed image is the folder's, and the model card says where they came from."""
    from geomorph_bids.engine.data import synthetic_pairs
    from geomorph_bids.io.template_ref import TemplateRef, resolve_template_ref

    fs = tiny_fsaverage(tmp_path / "subjects", scale=2.0)
    out = tmp_path / "model"
    assert main(["--out", str(out), "--template", "fsaverage", "--template-dir", str(fs), "--synthetic", "2",
                 "--epochs", "1", "--channels", "tiny", "--data-level", "3", "--threads", "1"]) == 0
    said = capsys.readouterr()
    assert f"template maps: fsaverage from folder fsaverage {fs}" in said.out
    # the tiny fsaverage has fsaverage5's 10,242 vertices: said on one line, as the other commands say it
    # (geomorph-train said nothing of coarse maps, nor of the bundled low-resolution ones)
    notes = [line for line in said.err.splitlines() if "note: hemi-" in line]
    assert len(notes) == 1 and notes[0].startswith(
        f"geomorph-train: note: hemi-L training pairs were registered to fsaverage maps of 10,242 vertices "
        f"(folder {fs}), not the full template's 163,842")
    card = (out / "model_card.md").read_text()
    assert f"maps: fsaverage from folder fsaverage {fs}" in card and f"maps: folder {fs}" in card
    full = synthetic_pairs(1, resolve_template_ref(fs), "L", ("sulc",), level=3)
    bundled = synthetic_pairs(1, TemplateRef.bundled("fsaverage"), "L", ("sulc",), level=3)
    assert full.template == bundled.template == "fsaverage"
    assert float((full.fixed - bundled.fixed).abs().max()) > 0.1  # another fixed image


def test_fine_tuning_keeps_the_networks_architecture_and_adds_channels(tmp_path, capsys):
    """--init NAME|PATH without model options fine-tunes that network as it is built (here onto
    two channels, sulc + curv); a model option that contradicts it is refused on one line."""
    first = tmp_path / "first"
    assert main(["--out", str(first), "--template", "fsaverage", "--synthetic", "4", "--epochs", "1",
                 "--channels", "tiny", "--data-level", "3", "--control-level", "2", "--labels", "12",
                 "--threads", "1"]) == 0
    tuned = tmp_path / "tuned"
    assert main(["--out", str(tuned), "--template", "fsaverage", "--features", "sulc", "curv", "--synthetic", "4",
                 "--epochs", "1", "--threads", "1", "--init", str(first / "model.pt")]) == 0
    before, after = read_metadata(first / "model.pt"), read_metadata(tuned / "model.pt")
    assert after.channels == ("sulc", "curv")
    a, b = before.config["geomorph"], after.config["geomorph"]
    assert b["data_level"] == a["data_level"] == 3
    assert b["stages"][0]["network"]["in_channels"] == 2
    b["stages"][0]["network"]["in_channels"] = 1
    assert a == b  # the same network otherwise
    capsys.readouterr()
    assert main(["--out", str(tmp_path / "x"), "--template", "fsaverage", "--synthetic", "4", "--epochs", "1",
                 "--channels", "tiny", "--data-level", "3", "--labels", "30", "--threads", "1",
                 "--init", str(first / "model.pt")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another model config" in err[0]


def test_passes_are_recorded_and_a_fine_tuned_network_keeps_its_starts(tmp_path, capsys):
    """--passes K ... is written as the checkpoint's config["inference"]["passes"] (what register()
    reads); a network fine-tuned with --init keeps its start's passes unless --passes says
    otherwise; bad values are refused on one line."""
    from geomorph_bids.engine.checkpoints import network_passes

    tiny = ["--template", "fsaverage", "--synthetic", "4", "--epochs", "1", "--threads", "1"]
    first = tmp_path / "first"
    assert main(["--out", str(first), *tiny, "--channels", "tiny", "--data-level", "3", "--control-level", "2",
                 "--labels", "12", "--passes", "2", "4"]) == 0
    assert network_passes(read_metadata(first / "model.pt").config) == (2, 4)
    assert read_metadata(first / "model.pt").config["training"]["passes"] == [2, 4]
    capsys.readouterr()
    assert main(["--out", str(tmp_path / "tuned"), *tiny, "--init", str(first / "model.pt")]) == 0
    assert "forward passes 2 4 from --init" in capsys.readouterr().out
    assert network_passes(read_metadata(tmp_path / "tuned" / "model.pt").config) == (2, 4)
    assert main(["--out", str(tmp_path / "one"), *tiny, "--init", str(first / "model.pt"), "--passes", "1"]) == 0
    assert network_passes(read_metadata(tmp_path / "one" / "model.pt").config) == (1,)
    capsys.readouterr()
    assert main(["--out", str(tmp_path / "bad"), *tiny, "--passes", "1", "2", "3", "4", "5", "6"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "passes must be a list of 1 to 5 whole numbers" in err[0]
    assert not (tmp_path / "bad" / "model.pt").exists()
    with pytest.raises(SystemExit) as exc:  # a pass out of range: a usage error (round twenty-two)
        main(["--out", str(tmp_path / "bad"), *tiny, "--passes", "0"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        "geomorph-train: error: argument --passes: must be from 1 to 64, got 0"
    assert not (tmp_path / "bad").exists()


def test_an_output_that_is_a_file_is_refused_before_any_data_is_made(tmp_path, capsys):
    taken = tmp_path / "o"
    taken.write_text("mine")
    assert main(["--out", str(taken), "--synthetic", "4", "--data-level", "3", "--channels", "tiny"]) == 1
    err = capsys.readouterr()
    assert "is a file: give a folder" in err.err and "synthesising" not in err.out
    assert taken.read_text() == "mine"



def test_an_output_folder_that_cannot_be_written_is_refused_before_any_data_is_made(tmp_path, capsys, monkeypatch):
    """Round fifteen: --out on a read-only filesystem was found when the model was first saved, after
    every subject had been read (synthesised here): ``read-only filesystem writing OUT``. Simulated:
    the probe write of ``ro`` raises EROFS."""
    import errno

    from geomorph_bids.cli import preflight

    ro = tmp_path / "ro"
    ro.mkdir()
    real_probe = preflight._write_probe

    def probe(folder):
        if folder == ro:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_probe(folder)

    monkeypatch.setattr(preflight, "_write_probe", probe)
    assert main(["--out", str(ro / "m"), "--synthetic", "4", "--data-level", "3", "--channels", "tiny"]) == 1
    err = capsys.readouterr()
    assert f"--out cannot be written in {ro} (read-only filesystem)" in err.err and "synthesising" not in err.out
    assert list(ro.iterdir()) == []


def test_max_minutes_must_be_more_than_nothing(tmp_path, capsys):
    """``--max-minutes 0`` said "error: max_minutes must be > 0" with exit 1, after reading data."""
    for value in ("0", "-5", "nan", "soon"):
        with pytest.raises(SystemExit) as exc:
            main(["--out", str(tmp_path / "m"), "--synthetic", "4", "--max-minutes", value])
        assert exc.value.code == 2 and "--max-minutes" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_a_seed_numpy_cannot_take_is_refused_by_the_parser(tmp_path, capsys):
    """``--seed -5`` said "error: expected non-negative integer" (numpy's words) after the data
    was being made."""
    for value in ("-5", str(2 ** 32), "1.5"):
        with pytest.raises(SystemExit) as exc:
            main(["--out", str(tmp_path / "s"), "--synthetic", "4", "--seed", value])
        assert exc.value.code == 2 and "argument --seed: must be" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_a_training_without_validation_subjects_says_so(tmp_path, capsys):
    """``--synthetic 1`` held none out: the "val" column and the best epoch were the training
    set's, in silence."""
    assert main(["--out", str(tmp_path / "o"), "--data-level", "3", "--channels", "tiny", "--synthetic", "1",
                 "--epochs", "1", "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert "warning: no subject is held out for validation (--val-fraction 0.1 of 1 subject(s))" in err


def test_warp_size_options_reach_the_pair_generator():
    """--warp-deg / --small-warp-fraction set the generated warps (individuals' spheres are further
    from a template than the default 4-10 deg largest displacement)."""
    from geomorph_bids.cli.train import _pair_config, build_parser
    from geomorph_bids.engine.pairgen import PairGenConfig

    parse = lambda *a: build_parser().parse_args(["--out", "o", "--sources", "b.npz", *a])  # noqa: E731
    assert _pair_config(parse()) == PairGenConfig()
    config = _pair_config(parse("--warp-deg", "6", "16", "--small-warp-fraction", "0.35"))
    assert config.max_displacement_deg == (6.0, 16.0) and config.small_warp_fraction == 0.35
    with pytest.raises(ValueError, match="--warp-deg"):  # LO above HI: found when the pair options are read
        _pair_config(parse("--warp-deg", "10", "5"))
    for bad in (("--warp-deg", "0", "5"), ("--small-warp-fraction", "1.5")):  # out of range: a usage error
        with pytest.raises(SystemExit):
            parse(*bad)


def _subjects(root, gzipped=(), zero=()):
    """Three small GIFTI subjects (ico-3 spheres warped from the template), in sMRIPrep's names;
    those in ``gzipped`` as .gii.gz, those in ``zero`` with an all-zero sulc."""
    import gzip

    import numpy as np

    from geomorph_bids.engine.example_data import synthetic_hemisphere, template_hemisphere
    from geomorph_bids.io.gifti import write_metric, write_surface

    v, f, maps = template_hemisphere("L", 3)
    for i, sub in enumerate(("sub-01", "sub-02", "sub-03")):
        h = synthetic_hemisphere("L", v, f, maps, seed=i)
        anat = root / sub / "anat"
        anat.mkdir(parents=True)
        files = [write_surface(anat / f"{sub}_hemi-L_sphere.surf.gii", h.vertices, h.faces, hemi="L"),
                 write_metric(anat / f"{sub}_hemi-L_sulc.shape.gii",
                              (0 * h.maps["sulc"] if sub in zero else h.maps["sulc"]).astype(np.float32), hemi="L")]
        if sub in gzipped:
            for p in files:
                p = p if hasattr(p, "read_bytes") else anat / p
                (p.parent / (p.name + ".gz")).write_bytes(gzip.compress(p.read_bytes()))
                p.unlink()
    return root


def test_gzipped_subjects_are_trained_on_not_left_out(tmp_path):
    """Round eight: a subject whose GIFTI files were gzipped (read everywhere else) was left out
    in silence ('from 2 subjects')."""
    subjects = _subjects(tmp_path / "subjects", gzipped=("sub-02",))
    out = tmp_path / "m"
    assert main(["--out", str(out), "--subjects-dir", str(subjects), "--epochs", "1", "--channels", "tiny",
                 "--data-level", "3", "--val-fraction", "0", "--threads", "1", "--quiet"]) == 0
    assert read_metadata(out / "model.pt").provenance.extra["n_train"] == 3
    assert "3 hemispheres of 3 subjects" in (out / "model_card.md").read_text()


def test_an_all_zero_map_of_a_subject_is_named_with_its_file(tmp_path, capsys):
    """Round eight: training read the user's maps unchecked, and an all-zero sulc ended it with
    'moving features: fewer than 5% of vertices are valid', naming no subject, hemisphere or file."""
    subjects = _subjects(tmp_path / "subjects", zero=("sub-02",))
    assert main(["--out", str(tmp_path / "m"), "--subjects-dir", str(subjects), "--epochs", "1", "--channels",
                 "tiny", "--data-level", "3", "--threads", "1", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("geomorph-train: error: sub-02 hemi-L ") and "\n" not in err
    assert "sub-02_hemi-L_sulc.shape.gii" in err and "all zero" in err
    assert not (tmp_path / "m").exists()


def test_resume_takes_the_network_from_the_checkpoint_and_is_checked_before_the_data(tmp_path, capsys, monkeypatch):
    """Round eight: resuming without repeating --channels tiny ended, after every subject had been
    read, on 'the checkpoint's model config differs from the requested one'; --resume FOLDER,
    --resume with --init, other --features or --template were found only after the data too."""
    out = tmp_path / "m"
    base = ["--synthetic", "4", "--data-level", "3", "--threads", "1", "--quiet"]
    assert main(["--out", str(out), "--epochs", "1", "--channels", "tiny", *base]) == 0
    # continued as it is, from the folder: the network (tiny, ico-3) comes from the checkpoint
    assert main(["--out", str(out), "--epochs", "2", "--synthetic", "4", "--threads", "1", "--quiet",
                 "--resume", str(out)]) == 0
    assert [int(r["epoch"]) for r in _rows(out / "train_log.csv")] == [1, 2]
    assert "Network preset: tiny" in (out / "model_card.md").read_text()
    capsys.readouterr()

    import geomorph_bids.cli.train as cli

    def no_data(*a, **k):
        raise AssertionError("data read before the --resume checks")

    monkeypatch.setattr(cli, "_prepare_data", no_data)
    for extra, needle in [(["--resume", str(out), "--init", "sulc-fsLR"], "give one of them"),
                          (["--resume", str(out), "--features", "sulc", "curv"], "trained on --features sulc, not sulc curv"),
                          (["--resume", str(out), "--template", "fsaverage"], "trained for --template fsLR, not fsaverage"),
                          (["--resume", str(out / "model.pt")], "model.state.pt is not next to it"),
                          (["--resume", str(tmp_path / "none")], "no such checkpoint"),
                          (["--resume", str(out), "--channels", "small"], "that network differs")]:
        assert main(["--out", str(out), "--epochs", "3", *base, *extra]) == 1, extra
        err = capsys.readouterr().err.strip()
        assert err.startswith("geomorph-train: error:") and "\n" not in err and needle in err, err
    assert [int(r["epoch"]) for r in _rows(out / "train_log.csv")] == [1, 2]


def test_a_folder_holding_a_trained_network_is_not_trained_over(tmp_path, capsys):
    """A rerun into the same --out replaced its model.pt at the first epoch (round eight): hours
    of training lost to a repeated command. Now refused unless --resume or --overwrite."""
    out = tmp_path / "m"
    out.mkdir()
    (out / "model.pt").write_bytes(b"an earlier network")
    assert main(["--out", str(out), "--synthetic", "4", "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert "already holds a trained network" in err and "--overwrite" in err and "--resume" in err
    assert (out / "model.pt").read_bytes() == b"an earlier network"
    # --overwrite passes this check (and fails on the next one here: a bank that does not exist)
    assert main(["--out", str(out), "--sources", str(tmp_path / "none.npz"), "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert "none.npz" in err and "already holds" not in err


@pytest.mark.parametrize("marker, words", [("IsRunning.lh+rh", "recon-all has not finished"),
                                           ("IsRunning.lh", "recon-all has not finished"),
                                           ("recon-all.error", "recon-all stopped with an error")])
def test_a_subject_whose_recon_all_has_not_finished_is_refused_before_training(tmp_path, capsys, marker, words):
    """Round twelve: the BIDS-App refuses a FreeSurfer subject whose recon-all is still running,
    was killed or stopped on an error (round ten); geomorph-train --subjects-dir trained on it in
    silence (a sphere of one run beside maps of the next). Refused on one line naming subject,
    hemisphere and the marker file, before any data is read or the output folder made."""
    from geomorph_bids.engine.example_data import synthetic_hemisphere, template_hemisphere, write_freesurfer

    v, f, maps = template_hemisphere("L", 3)
    subjects = tmp_path / "subjects"
    for i, sub in enumerate(("sub-01", "sub-02", "sub-03")):
        write_freesurfer(subjects, sub, synthetic_hemisphere("L", v, f, maps, seed=i))
    (subjects / "sub-02" / "scripts").mkdir()
    (subjects / "sub-02" / "scripts" / marker).write_text("")
    assert main(["--out", str(tmp_path / "m"), "--subjects-dir", str(subjects), "--epochs", "1", "--channels",
                 "tiny", "--data-level", "3", "--threads", "1", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"geomorph-train: error: sub-02 hemi-L {subjects / 'sub-02'}: {words} "
                          f"({subjects / 'sub-02' / 'scripts' / marker} is there") and "\n" not in err
    assert err.endswith("or leave this subject out of --subjects-dir before training")
    assert not (tmp_path / "m").exists()


def test_a_resumed_training_keeps_the_passes_it_was_started_with(tmp_path, capsys):
    """Round twenty: a training started with --passes (or inheriting them from --init), then
    resumed without repeating them (--resume refuses --init, so nothing could be inherited), wrote
    model.pt without config["inference"]: the network it made registered in one pass, silently.
    Now the resumed run keeps the checkpoint's passes (said on one line); --passes overrides them."""
    from geomorph_bids.engine.checkpoints import network_passes

    out = tmp_path / "m"
    base = ["--synthetic", "4", "--threads", "1"]
    assert main(["--out", str(out), "--epochs", "1", "--channels", "tiny", "--data-level", "3", "--passes", "2", "4",
                 *base]) == 0
    capsys.readouterr()
    assert main(["--out", str(out), "--epochs", "2", *base, "--resume", str(out)]) == 0
    assert "forward passes 2 4 from --resume" in capsys.readouterr().out
    for name in ("model.pt", "last.pt"):
        assert network_passes(read_metadata(out / name).config) == (2, 4), name
    # the card says so too (the resumed command line does not)
    assert "- Inference: **2 forward passes** (`config[\"inference\"][\"passes\"] = [2, 4]`)" in (
        out / "model_card.md").read_text()
    assert main(["--out", str(out), "--epochs", "3", *base, "--resume", str(out), "--passes", "3", "--quiet"]) == 0
    assert network_passes(read_metadata(out / "model.pt").config) == (3,)


def test_the_cards_real_pair_table_says_it_measured_one_pass(tmp_path):
    """Round twenty: the card's real-pair table (geomorph-train --sources) is measured with one
    forward pass (engine.train.evaluate_warps), and was titled "network alone" for a checkpoint
    that registers in three (--init sulc-fsaverage inherits [2, 4, 8]): now it says so."""
    from types import SimpleNamespace

    from geomorph_bids.cli.train import build_parser, write_model_card
    from geomorph_bids.engine.train import TrainConfig
    from geomorph_bids.model.geomorph import tiny_config

    args = build_parser().parse_args(["--out", str(tmp_path / "m"), "--synthetic", "2"])
    result = SimpleNamespace(history=[], best_epoch=0, n_parameters=1, device="cpu", wall_time_s=1.0, epochs_run=0,
                             stopped="epochs", initial_val_loss=None, initial_val_cc=None, best_val_loss=None,
                             best_val_cc=None)
    pairs = type("Pairs", (), {"hemisphere": "L", "template": "fsLR", "channels": ("sulc",), "description": "d",
                               "__len__": lambda self: 1})()
    row = {"name": "p", "rigid_median_deg": 2.0, "rigid_p95_deg": 4.0, "net_median_deg": 1.5, "net_p95_deg": 3.0,
           "cc_rigid": 0.8, "cc_net": 0.9}

    def card(passes):
        path = write_model_card(tmp_path / f"{passes}.md", command="c", args=args, result=result,
                                model_config=tiny_config(in_channels=1, data_level=3), train_set=pairs, val_set=None,
                                train_config=TrainConfig(passes=passes), real_rows=[row])
        return path.read_text()

    assert "One forward pass, its warp low-passed once: `register()` makes 3" in card((2, 4, 8))
    assert "| p | 2.000 / 4.00 | 1.500 / 3.00 |" in card(None) and "One forward pass" not in card(None)


def test_an_interrupted_training_says_on_one_line_what_to_resume(tmp_path, capsys, monkeypatch):
    """Ctrl-C mid-training: one line and exit 130 (was a 20-line KeyboardInterrupt traceback), naming
    the epoch last.pt holds and the --resume that continues it; that resume then works."""
    import os
    import signal

    import geomorph_bids.engine.train as engine_train

    out = tmp_path / "m"
    argv = ["--out", str(out), "--synthetic", "4", "--epochs", "4", "--channels", "tiny", "--data-level", "3",
            "--patience", "0", "--threads", "1"]
    progress = engine_train._progress_line

    def ctrl_c_after_epoch_2(epoch, *a, **k):
        if epoch == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return progress(epoch, *a, **k)

    monkeypatch.setattr(engine_train, "_progress_line", ctrl_c_after_epoch_2)
    assert main(argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("geomorph-train: interrupted by SIGINT: ")
    assert f"{out / 'last.pt'} holds epoch 2" in err[0] and f"--resume {out}" in err[0]
    assert not (out / "model_card.md").exists() and (out / "model.pt").is_file()
    monkeypatch.setattr(engine_train, "_progress_line", progress)
    assert main(argv + ["--resume", str(out), "--quiet"]) == 0
    assert [int(r["epoch"]) for r in _rows(out / "train_log.csv")] == [1, 2, 3, 4]
    assert (out / "model_card.md").is_file()


def test_a_training_interrupted_before_its_first_epoch_says_nothing_is_left(tmp_path):
    from geomorph_bids.cli.train import interrupted_detail

    assert interrupted_detail(tmp_path) == f"no epoch had finished: nothing to resume in {tmp_path}"


def test_a_resume_with_another_loss_or_schedule_is_refused_before_the_data(tmp_path, capsys):
    """--resume without repeating --lam/--fold/--lr-schedule (or with another --seed) continued the
    training with another loss and schedule in silence, and the card gave the new values as the
    training's; now one line before any data, naming the options, and nothing rewritten."""
    out = tmp_path / "m"
    argv = ["--out", str(out), "--synthetic", "3", "--epochs", "1", "--channels", "tiny", "--data-level", "3",
            "--threads", "1", "--lam", "20", "--fold", "10", "--lr-schedule", "cosine", "--quiet"]
    assert main(argv) == 0
    before = (out / "last.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["--out", str(out), "--synthetic", "3", "--epochs", "2", "--threads", "1", "--seed", "4",
                 "--resume", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"geomorph-train: error: --resume {out / 'last.pt'}: it was trained with --seed 0 --lam 20 "
                   f"--fold 10 --lr-schedule cosine, not --seed 4 --lam 0.5 --fold 0 --lr-schedule plateau: resume "
                   f"with the same options (or start a new training from its weights with --init "
                   f"{out / 'model.pt'} and another --out)"]
    assert (out / "last.pt").stat().st_mtime_ns == before
    assert main(argv[:4] + ["--epochs", "2"] + argv[6:] + ["--resume", str(out)]) == 0  # the same options


def test_a_stop_while_the_resume_pair_is_written_leaves_a_pair_that_resumes(tmp_path, capsys, monkeypatch):
    """Ctrl-C arriving after last.pt was replaced and before last.state.pt was: the pair was an epoch
    apart and --resume refused it ('does not belong to these weights'); now the signal waits until
    both are written."""
    import os
    import signal

    import geomorph_bids.engine.train as engine_train

    out = tmp_path / "m"
    argv = ["--out", str(out), "--synthetic", "3", "--epochs", "3", "--channels", "tiny", "--data-level", "3",
            "--patience", "0", "--threads", "1", "--quiet"]
    save_state = engine_train._save_state

    def stopped_between(path, state):
        if state["epoch"] == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return save_state(path, state)

    monkeypatch.setattr(engine_train, "_save_state", stopped_between)
    assert main(argv) == 130
    assert f"{out / 'last.pt'} holds epoch 2" in capsys.readouterr().err
    monkeypatch.setattr(engine_train, "_save_state", save_state)
    assert main(argv + ["--resume", str(out)]) == 0
    assert [int(r["epoch"]) for r in _rows(out / "train_log.csv")] == [1, 2, 3]


def test_options_of_another_kind_of_training_data_are_refused(tmp_path, capsys):
    """Twentieth session: --val-fraction with --sources changed nothing (a bank's validation pairs are
    --val-pairs), and --pairs-per-epoch 0 or --val-pairs -3 were taken (an empty epoch; no validation
    at all, in silence)."""
    bank = tmp_path / "bank.npz"
    bank.write_bytes(b"")  # refused before it is read
    assert main(["--out", str(tmp_path / "o"), "--sources", str(bank), "--mirror-right", "--val-fraction", "0.2",
                 "--data-level", "3", "--channels", "tiny"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("geomorph-train: error: --val-fraction 0.2 splits --synthetic and --subjects-dir subjects; "
                   "--sources draws its validation pairs apart: give --val-pairs N instead"), err
    for option, value, words in (("--pairs-per-epoch", "0", "must be >= 1, got 0"),
                                 ("--val-pairs", "-3", "must be >= 0, got -3")):
        with pytest.raises(SystemExit) as exc:
            main(["--out", str(tmp_path / "o"), "--sources", str(bank), option, value])
        assert exc.value.code == 2 and f"argument {option}: {words}" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_resuming_another_folder_s_training_into_a_trained_out_is_refused(tmp_path, capsys):
    """Twentieth session: ``--resume a --out b``, b holding a trained network, replaced b's model.pt
    (exit 0): the guard against a careless rerun was skipped for every --resume. Now refused like a
    rerun, before any data is made; --resume of --out's own training, or --overwrite, go on."""
    base = ["--synthetic", "3", "--channels", "tiny", "--data-level", "3", "--threads", "1", "--quiet",
            "--val-fraction", "0"]
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        assert main(["--out", str(out), *base, "--epochs", "1"]) == 0
    capsys.readouterr()
    before = (b / "model.pt").read_bytes()
    assert main(["--out", str(b), *base, "--epochs", "2", "--resume", str(a / "last.pt")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"geomorph-train: error: --out {b} already holds a trained network (model.pt), and --resume "
                   f"{a / 'last.pt'} continues the training of {a}: write it to a new --out (or to {a} itself), or "
                   f"replace {b}'s with --overwrite"), err
    assert (b / "model.pt").read_bytes() == before
    assert main(["--out", str(a), *base, "--epochs", "2", "--resume", str(a / "last.pt")]) == 0


@pytest.mark.parametrize("option, value, words", [
    ("--epochs", "0", "must be >= 1, got 0"), ("--batch-size", "0", "must be >= 1, got 0"),
    ("--threads", "-2", "must be >= 1, got -2"), ("--patience", "-1", "must be >= 0, got -1"),
    ("--lr-patience", "-1", "must be >= 0, got -1"), ("--warmup", "-5", "must be >= 0, got -5"),
    ("--crf-iterations", "-1", "must be >= 0, got -1"), ("--synthetic", "-4", "must be >= 0, got -4"),
    ("--epochs", "ten", "must be a whole number, got 'ten'"),
])
def test_counts_out_of_range_are_usage_errors_naming_the_option(option, value, words, tmp_path, capsys):
    """Twentieth session: ``--threads 0`` said ``num_threads must be >= 1``, ``--epochs 0`` ``epochs and
    batch_size must be >= 1, got 0, 2`` (the training's field names, not the options), after the template
    was resolved and the output folder checked. Now argparse's usage error names the option."""
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path / "o"), "--synthetic", "2", option, value])
    assert exc.value.code == 2 and f"argument {option}: {words}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_model_folder_named_in_another_encoding_gets_its_model_card(tmp_path, capsys):
    """Twenty-second session: ``--out`` in a folder named in Latin-1 (``caf\\xe9``; or a UTF-8 name where
    Python decodes file names as ASCII, ``LC_ALL=C PYTHONUTF8=0``): the whole training ran, then the model
    card, written in the locale's encoding, ended the run on ``error: 'utf-8' codec can't encode character
    '\\udce9' ...``, exit 1, ``model_card.md.tmp`` left beside the weights. The card is now UTF-8 with the
    path's bytes as they are on disk."""
    import os

    out = tmp_path / os.fsdecode(b"caf\xe9") / "m"
    code = main(["--out", str(out), "--synthetic", "6", "--epochs", "1", "--channels", "tiny", "--data-level", "3",
                 "--threads", "1", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert sorted(os.listdir(out)) == ["last.pt", "last.state.pt", "model.pt", "model_card.md", "train_log.csv"]
    assert f"geomorph-train --out {os.fsencode(tmp_path).decode()}/caf\xe9/m".encode("latin-1") in \
        (out / "model_card.md").read_bytes().replace(b"'", b"")


@pytest.mark.parametrize("argv, line", [
    (["--lr", "nan"], "argument --lr: must be a finite number above 0, got nan"),
    (["--lr", "0"], "argument --lr: must be a finite number above 0, got 0"),
    (["--lr", "-1e-30"], "argument --lr: must be a finite number above 0, got -1e-30"),
    (["--lam", "-inf"], "argument --lam: must be a finite number at least 0, got -inf"),
    (["--fold", "1e309"], "argument --fold: must be a finite number at least 0, got 1e309"),
    (["--supervised", "-1"], "argument --supervised: must be a finite number at least 0, got -1"),
    (["--val-fraction", "1"], "argument --val-fraction: must be a finite number at least 0 and below 1, got 1"),
    (["--val-fraction", "nan"], "argument --val-fraction: must be a finite number at least 0 and below 1, got nan"),
    (["--small-warp-fraction", "1.5"],
     "argument --small-warp-fraction: must be a finite number at least 0 and at most 1, got 1.5"),
    (["--warp-deg", "0", "5"], "argument --warp-deg: must be a finite number above 0 and at most 60, got 0"),
    (["--data-level", "8"], "argument --data-level: must be from 3 to 6, got 8"),
    (["--control-level", "100"], "argument --control-level: must be from 0 to 7, got 100"),
    (["--label-level", "-1"], "argument --label-level: must be from 0 to 7, got -1"),
    (["--labels", "0"], "argument --labels: each must be from 1 to 1000000, got 0"),
    (["--cascade", "2,9"], "argument --cascade: each must be from 0 to 7, got 2,9"),
])
def test_training_numbers_are_usage_errors_naming_the_option(tmp_path, capsys, argv, line):
    """Round twenty-two, found by fuzzing the command line: the training's numbers were read as any
    float or int. ``--lr nan`` said 'lr, lam and fold must be finite and >= 0, got nan, 0.5, 0.0' and
    ``--val-fraction 1`` 'val_fraction must be in [0, 1), got 1.0' (exit 1, Python's names, no option);
    ``--lr 0`` trained a network that never moved and exited 0; ``--lr -1e-30`` and ``--lam -inf`` said
    'expected one argument' (argparse took them for options); ``--labels 0`` 'in_channels, n_labels and
    kernels must be >= 1'. Each is now refused as it is parsed: exit 2, one line naming the option."""
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path / "o"), "--synthetic", "2", "--epochs", "1", "--channels", "tiny", "--data-level", "3",
              "--quiet", *argv])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"geomorph-train: error: {line}"
    assert not (tmp_path / "o").exists()


def test_a_control_level_the_network_cannot_take_names_the_options(tmp_path, capsys):
    """``--control-level 6`` with ``--data-level 3`` said 'control_level must be in 2..3 for this config',
    the network's own field name; now which options made that network."""
    assert main(["--out", str(tmp_path / "o"), "--synthetic", "4", "--channels", "tiny", "--data-level", "3",
                 "--control-level", "6"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("geomorph-train: error: --channels tiny --data-level 3 with control level(s) 6 (--control-level, "
                   "--cascade) and 20 label(s) (--labels): control_level must be in 2..3 for this config (one "
                   "decoder block per level climbed)")
    assert not (tmp_path / "o").exists()


def test_the_device_is_decided_once(tmp_path, monkeypatch):
    """``--device`` becomes a device once, at the entry point; the training, the checkpoint's
    ``hardware`` and the pair generator take that. It was resolved again for the hardware line and
    for the generated pairs (``auto`` probes CUDA each time: the answers could differ within a run)."""
    from geomorph_bids.engine import device as device_module

    calls = []
    real = device_module.resolve_device

    def counted(spec="auto", **kwargs):
        calls.append(spec)
        return real(spec, **kwargs)

    monkeypatch.setattr(device_module, "resolve_device", counted)
    out = tmp_path / "o"
    assert main(["--out", str(out), "--data-level", "3", "--channels", "tiny", "--synthetic", "2",
                 "--epochs", "1", "--threads", "1", "--device", "auto", "--quiet"]) == 0
    assert calls[0] == "auto" and calls[1:] == [str(real("auto"))] * (len(calls) - 1)  # the engine: as given
    meta = read_metadata(out / "model.pt")
    if str(real("auto")) == "cpu":  # the machine of the device decided (a GPU's name on a GPU)
        assert meta.provenance.extra["hardware"].endswith(" cores, 1 torch thread")
    # pairs generated from a --sources bank: on the device decided (a torch.device, as the generator wants)
    import numpy as np

    from geomorph_bids.io.templates import load_template

    sulc = np.asarray(load_template("fsLR", "L", ("sulc",)).features["sulc"], dtype=np.float32)
    np.savez(tmp_path / "bank.npz", **{"fsLR/fixed/sulc": sulc, "fsLR/a/sulc": 0.9 * sulc, "fsLR/b/sulc": sulc ** 3})
    calls.clear()
    assert main(["--out", str(tmp_path / "g"), "--sources", str(tmp_path / "bank.npz"), "--mirror-right", "--data-level",
                 "3", "--channels", "tiny", "--epochs", "1", "--pairs-per-epoch", "2", "--val-pairs", "2",
                 "--batch-size", "2", "--threads", "1", "--device", "auto"]) == 0
    assert calls[0] == "auto" and calls[1:] == [str(real("auto"))] * (len(calls) - 1)


def test_running_out_of_gpu_memory_in_a_training_is_one_line_with_what_to_do(tmp_path, monkeypatch, capsys):
    """Twenty-fifth session: torch's CUDA out-of-memory error (a RuntimeError) in a step ended geomorph-train
    with a traceback and torch's allocator advice. Now one line: what was asked and free, the batch size to
    lower, and what the folder holds (as after an interruption)."""
    from geomorph_bids.engine import train as engine_train

    progress = engine_train._progress_line

    def no_gpu_memory(epoch, *a, **k):
        if epoch == 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB. GPU 0 has a total "
                                              "capacity of 79.19 GiB of which 2.50 GiB is free. Including non-PyTorch "
                                              "memory, this process has 76.60 GiB memory in use. See documentation")
        return progress(epoch, *a, **k)

    monkeypatch.setattr(engine_train, "_progress_line", no_gpu_memory)
    out = tmp_path / "m"
    assert main(["--out", str(out), "--synthetic", "4", "--epochs", "3", "--channels", "tiny", "--data-level", "3",
                 "--patience", "0", "--threads", "1", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"geomorph-train: error: out of GPU memory (CUDA out of memory. Tried to allocate 3.00 GiB. GPU 0 "
                   "has a total capacity of 79.19 GiB of which 2.50 GiB is free); other processes hold the GPU's memory, "
                   "or the network and --batch-size need more than it has: free it, lower --batch-size (now 2), or use "
                   f"--device cpu; {out / 'last.pt'} holds epoch 2 (the epoch under way is lost) and {out / 'model.pt'} "
                   "the best epoch so far (no model_card.md until a training ends): continue with the same command "
                   f"and --resume {out}"]

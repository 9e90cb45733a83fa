"""geomorph-bids' argument types: what users type is read as they mean it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from geomorph_bids.cli.parser import build_parser, hemisphere


def test_hemisphere_spellings_on_the_command_line():
    assert [hemisphere(h) for h in ("l", "lh", "Left", "R", "rh")] == ["L", "L", "L", "R", "R"]
    with pytest.raises(argparse.ArgumentTypeError, match="invalid hemisphere 'x'"):
        hemisphere("x")
    args = build_parser().parse_args(["bids", "out", "participant", "--hemi", "lh", "r"])
    assert args.hemi == ["L", "R"]


@pytest.mark.parametrize("option, value", [("--build-template", "mytpl"), ("--nprocs", "two"), ("--batch-size", "1.5")])
def test_a_word_where_a_number_goes_says_so_not_the_parser_function(option, value, capsys):
    """argparse named the type function: "invalid _positive_int value: 'mytpl'"."""
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["bids", "out", "group", option, value])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"must be a whole number, got '{value}'" in err and "_positive_int" not in err


@pytest.mark.parametrize("label", ["fsLR", "FSAVERAGE", "fsaverage6", "../evil", "a b", "", "bért"])
def test_a_template_label_that_names_a_standard_space_or_no_label_is_refused_up_front(label, capsys):
    """--template-label fsLR wrote space-fsLR outputs over the real fsLR ones and handed them to
    fMRIPrep as MSMSulc's; '../evil' was refused only after the group table had been rewritten."""
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["bids", "out", "group", "--build-template", "1", "--template-label", label])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--template-label" in err
    assert ("standard template" in err) == (label.lower() in ("fslr", "fsaverage", "fsaverage6"))
    assert build_parser().parse_args(["b", "o", "group", "--template-label", "myCohort2"]).template_label == "myCohort2"


def test_a_list_option_given_twice_keeps_every_value():
    """Round fifteen: ``--participant-label 01 --participant-label 02`` (a script that adds one option
    per subject) processed sub-02 alone, exit 0; ``--hemi L --hemi R`` the right hemisphere alone:
    argparse kept the last time's values. Every value now counts; a default is replaced, not added to."""
    from geomorph_bids.cli.train import build_parser as train_parser

    args = build_parser().parse_args(["b", "o", "participant", "--participant-label", "01", "--hemi", "L",
                                      "--participant-label", "sub-02", "03", "--hemi", "rh",
                                      "--session-label", "1", "--session-label", "2", "--features", "sulc",
                                      "--features", "curv", "--derivatives", "a=/x", "--derivatives", "/y"])
    assert args.participant_label == ["01", "sub-02", "03"] and args.hemi == ["L", "R"]
    assert args.session_label == ["1", "2"] and args.features == ["sulc", "curv"]
    assert args.derivatives == ["a=/x", "/y"]
    parser = build_parser()
    assert parser.parse_args(["b", "o", "participant", "--hemi", "R"]).hemi == ["R"]  # the default is replaced
    assert parser.parse_args(["b", "o", "participant"]).hemi == ["L", "R"]  # and left as it was
    targs = train_parser().parse_args(["--out", "m", "--features", "curv", "--features", "sulc",
                                       "--holdout", "a", "--holdout", "b"])
    assert targs.features == ["curv", "sulc"] and targs.holdout == ["a", "b"]


def test_memory_takes_units_and_fmripreps_options(capsys):
    """Round fifteen: an fMRIPrep user's ``--mem 16000`` said "ambiguous option: --mem could match
    --mem-gb, --mem_gb" (one option under two spellings), ``--mem_mb 16000`` was unrecognised and
    ``--mem-gb 16G`` "must be a number". Now ``--mem``/``--mem-mb`` are fMRIPrep's (MB unless a unit is
    given) and every memory option takes sbatch's units."""
    parser = build_parser()
    given = {("--mem-gb", "16"): 16.0, ("--mem-gb", "16G"): 16.0, ("--mem-gb", "16gb"): 16.0,
             ("--mem-gb", "16000M"): 16.0, ("--mem", "16000"): 16.0, ("--mem_mb", "16000"): 16.0,
             ("--mem-mb", "16GiB"): 16.0, ("--mem-gb", "1.5T"): 1500.0, ("--mem=8G",): 8.0}
    for argv, gb in given.items():
        assert parser.parse_args(["b", "o", "participant", *argv]).mem_gb == pytest.approx(gb), argv
    for argv, words in [(("--mem", "16"), "got 16 (0.016 GB)"), (("--mem-gb", "lots"), "must be a memory size"),
                        (("--mem-gb", "infG"), "finite size"), (("--mem-gb", "G"), "must be a memory size")]:
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(["b", "o", "participant", *argv])
        assert exc.value.code == 2 and words in capsys.readouterr().err, argv


@pytest.mark.parametrize("argv, where", [
    (["b", "", "participant"], "argument 2 of the command line"),
    (["", "o", "participant"], "argument 1 of the command line"),
    (["b", "o", "participant", "--model", ""], "argument --model"),
    (["b", "o", "participant", "--device", " "], "argument --device"),
    (["b", "o", "participant", "--template-dir="], "argument --template-dir"),
    (["b", "o", "participant", "-w", ""], "argument -w"),
    (["b", "o", "participant", "--participant-label", "01", ""], "argument 6 of the command line"),
])
def test_an_empty_argument_is_a_usage_error(argv, where, capsys):
    """Round fifteen: an empty argument, what an unset shell variable gives, was read another way by
    each option: an output folder "" as the current folder (derivatives written there, or refused
    for a folder nobody named), ``--model ""`` / ``--device ""`` / ``--template-dir ""`` as their
    defaults in silence, ``--use-plugin ""`` as the current folder."""
    from geomorph_bids.cli.register import build_parser as register_parser
    from geomorph_bids.cli.train import build_parser as train_parser

    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    err = capsys.readouterr().err.splitlines()[-1]
    assert exc.value.code == 2 and err.startswith(f"geomorph-bids: error: {where} is empty"), err
    assert "unset shell variable" in err
    for parser, args in [(register_parser(), ["--sphere", "s", "--model", ""]), (train_parser(), ["--out", ""])]:
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(args)
        assert exc.value.code == 2 and "is empty" in capsys.readouterr().err
    assert build_parser().parse_args(["b", "o", "participant", "--min-cc", "-0.5"]).min_cc == -0.5


def test_two_derivatives_folders_of_one_name_are_refused_not_one_dropped(tmp_path, capsys):
    """Round fifteen: ``--derivatives /site1/smriprep /site2/smriprep`` (or ``smriprep=A smriprep=B``)
    kept the last folder under the name: every subject of the first was left out, exit 0."""
    from geomorph_bids.cli.bids import main
    from geomorph_bids.cli.parser import parse_derivatives

    a, b = tmp_path / "site1" / "smriprep", tmp_path / "site2" / "smriprep"
    with pytest.raises(argparse.ArgumentTypeError, match=r"--derivatives names two folders 'smriprep' \(.*site1/smriprep, "
                                                         r".*site2/smriprep\): give each a name of its own"):
        parse_derivatives([str(a), f"smriprep={b}"])
    assert parse_derivatives([str(a), f"{a}/", f"x={b}"]) == {"smriprep": a, "x": b}  # one folder twice: once
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path), str(tmp_path / "out"), "participant", "--derivatives", str(a), str(b)])
    assert exc.value.code == 2 and "smriprep1=" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_path_starting_with_an_unexpanded_tilde_is_a_usage_error(tmp_path, monkeypatch, capsys):
    """Round fifteen: ``geomorph-bids B "~/out" participant`` (quoted, or from a config file) wrote the
    derivatives into a folder named ``~`` made in the current folder, exit 0 (and ``rm -rf ~`` is how
    one removes it by mistake). A path whose first part starts with ``~`` and does not exist is refused;
    a real folder named ``~`` is still taken."""
    from geomorph_bids.cli.register import build_parser as register_parser

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", "/home/me")
    for parser, argv, words in [
        (build_parser(), ["b", "~/out", "participant"], "output_dir '~/out' starts with '~'"),
        (build_parser(), ["b", "o", "participant", "-w", "~/w"], "--work-dir '~/w' starts with '~'"),
        (register_parser(), ["--sphere", "~/lh.sphere"], "--sphere '~/lh.sphere' starts with '~'"),
    ]:
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and words in err and "(e.g. '/home/me/" in err, err
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "~").mkdir()
    assert build_parser().parse_args(["~", "o", "participant"]).bids_dir.name == "~"


def test_help_states_the_defaults_batch_mode_and_nipype_use():
    """--omp-nthreads' help gave nprocs // 2 while batch mode runs 1 thread per worker
    (cli.settings), and --mem-gb stated no default (Nipype's MultiProc takes 90% of the memory)."""
    actions = {a.option_strings[0]: a for a in build_parser()._actions if a.option_strings}
    omp = " ".join(actions["--omp-nthreads"].help.split())
    assert "nprocs // 2" in omp and "batch mode, --batch-size: 1" in omp
    assert "a SLURM job's --mem" in actions["--mem-gb"].help % {} and "default: 90% of it" in actions["--mem-gb"].help % {}


def test_a_path_that_starts_with_a_dash_is_said_to_read_as_an_option(tmp_path, monkeypatch, capsys):
    """``geomorph-bids -ds -out participant`` (folders named ``-ds``, ``-out``): argparse took both
    for unknown options and said ``the following arguments are required: output_dir, analysis_level``,
    and ``geomorph-register --sphere -lh.sphere`` ``expected one argument``. An existing path is now
    named with how to give it; a word that exists nowhere (an output folder not made yet) is named
    beside argparse's message. Options, negative numbers and words after ``--`` are left alone."""
    from geomorph_bids.cli.register import build_parser as register_parser

    monkeypatch.chdir(tmp_path)
    (tmp_path / "-ds").mkdir()
    (tmp_path / "-lh.sphere").touch()
    for parser, argv, line in [
        (build_parser(), ["-ds", "-out", "participant"],
         "error: '-ds' starts with '-', so it reads as an option, but it names a path here: give it as './-ds'"),
        (register_parser(), ["--sphere", "-lh.sphere"],
         "error: '-lh.sphere' starts with '-', so it reads as an option, but it names a path here: give it as "
         "'./-lh.sphere'"),
        (build_parser(), ["./-ds", "-out", "participant"],
         "error: the following arguments are required: analysis_level ('-out' read as an option this command does "
         "not have: a path that starts with '-' is given as './-out')"),
    ]:
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(argv)
        assert exc.value.code == 2 and capsys.readouterr().err.splitlines()[-1].endswith(line)
    args = build_parser().parse_args(["--identity-margin", "-0.1", "-w", "./-ds", "--", "-ds", "-out", "participant"])
    assert (str(args.bids_dir), str(args.output_dir), args.identity_margin) == ("-ds", "-out", -0.1)


def test_a_derivatives_folder_whose_path_holds_an_equals_sign_is_read_as_a_path(tmp_path, monkeypatch):
    """``--derivatives /data/run=2/smriprep`` (a folder named by a script's key=value) was read as
    NAME=PATH: the derivatives named ``/data/run`` in folder ``2/smriprep``, refused as no such folder
    (naming neither the folder given nor why). A name holding ``/``, or a whole word that is a path
    where its part after ``=`` is none, is now a path; ``NAME=PATH`` is as before."""
    from geomorph_bids.cli.parser import parse_derivatives

    folder = tmp_path / "run=2" / "smriprep"
    folder.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert parse_derivatives([str(folder)]) == {"smriprep": folder}
    assert parse_derivatives(["run=2/smriprep"]) == {"smriprep": folder}
    assert parse_derivatives([f"sm={folder}"]) == {"sm": folder}
    assert parse_derivatives(["sm=run=2/smriprep"]) == {"sm": folder}
    assert parse_derivatives(["fmriprep=elsewhere"]) == {"fmriprep": tmp_path / "elsewhere"}


def test_an_abbreviation_of_one_option_s_two_spellings_is_that_option(capsys):
    """Twentieth session: ``--participant 01`` (a unique abbreviation, as argparse takes them) was
    refused as "ambiguous option: --participant could match --participant-label, --participant_label",
    two spellings of the same option (also ``--session``, ``--skip``). A prefix of two options stays
    ambiguous."""
    args = build_parser().parse_args(["b", "o", "participant", "--participant", "01", "--session", "1", "--skip"])
    assert args.participant_label == ["01"] and args.session_label == ["1"] and args.skip_bids_validation
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["b", "o", "participant", "--temp", "fsaverage"])
    assert exc.value.code == 2 and "ambiguous option: --temp could match --template, --template-dir" in \
        capsys.readouterr().err


@pytest.mark.parametrize("extra, named", [(["--build-template", "3"], "--build-template is an option"),
                                          (["--template-label", "pop"], "--template-label is an option"),
                                          (["--build-template", "2", "--template-label", "pop", "--reports-only"],
                                           "--build-template and --template-label are options")])
def test_a_group_level_option_at_the_participant_level_is_a_usage_error(extra, named, tmp_path, capsys):
    """Twentieth session: ``participant --build-template 3`` registered every participant (hours on a
    cohort), built no template and exited 0: the option was ignored in silence. Now a usage error
    before anything is read or written, with the group-level command to run."""
    from geomorph_bids.cli.bids import main

    bids, out = tmp_path / "bids", tmp_path / "out"
    bids.mkdir()
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    with pytest.raises(SystemExit) as exc:
        main([str(bids), str(out), "participant", "-w", str(tmp_path / "work"), *extra])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"error: {named} of the group level" in err, err
    assert f"then geomorph-bids {bids} {out} group {' '.join(a for a in extra if a != '--reports-only')}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bids"]  # no output or work folder made


def test_participant_level_options_given_to_the_group_level_are_named():
    """Twentieth session: ``group --reports-only`` wrote the group table and said nothing of the
    option (the participant reports were not rebuilt), as ``--batch-size``, ``--cifti-output``,
    ``--output-density``, ``--features``, ``--device`` and ``--template-label`` (without ``--build-template``) were
    ignored in silence; only --hemi, --template, --template-dir, --model, --no-optimise, --refine and
    --session-label were named. The execution options a script gives both levels stay unnamed."""
    from geomorph_bids.cli.group_level import _ignored_at_group_level

    args = build_parser().parse_args(["b", "o", "group", "--reports-only", "--batch-size", "4", "--cifti-output",
                                      "--output-density", "164k", "--features", "curv", "--device", "cpu",
                                      "--nprocs", "1", "--mem-gb", "2", "-w", "/tmp/w", "--template-label", "pop"])
    lines = _ignored_at_group_level(args)
    assert [line.split()[0] for line in lines] == ["--output-density", "--cifti-output", "--batch-size",
                                                   "--reports-only", "--features", "--device", "--template-label"]
    assert "participant --reports-only rebuilds the participant reports" in lines[3]
    assert lines[-1] == "--template-label has no effect at the group level without --build-template"
    with_template = build_parser().parse_args(["b", "o", "group", "--build-template", "2", "--features", "curv",
                                               "--cifti-output"])
    assert _ignored_at_group_level(with_template) == [
        "--cifti-output has no effect at the group level (an option of the participant level)"]


def test_positional_arguments_taken_by_a_list_option_before_them_are_named(capsys):
    """Twentieth session: ``geomorph-bids --participant-label 01 B O participant`` said "the following
    arguments are required: bids_dir, output_dir, analysis_level", though all three were given: the
    list option took them as labels. The line now says so, and how to give them; ``--`` ends the list."""
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--hemi", "L", "--participant-label", "01", "02", "B", "O", "participant"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exc.value.code == 2 and err == (
        "geomorph-bids: error: the following arguments are required: bids_dir, output_dir, analysis_level "
        "(--participant-label took 01 02 B O participant as its values: give bids_dir output_dir analysis_level "
        "before the options, or end --participant-label's values with --)")
    args = build_parser().parse_args(["--participant-label", "01", "02", "--", "B", "O", "participant"])
    assert args.participant_label == ["01", "02"] and (str(args.bids_dir), args.analysis_level) == ("B", "participant")
    with pytest.raises(SystemExit):  # one value taken: nothing to say beyond argparse's line
        build_parser().parse_args(["B", "--participant-label", "01"])
    assert capsys.readouterr().err.strip().endswith("required: output_dir, analysis_level")


def test_paths_a_list_option_took_are_named_as_positionals_not_as_bad_labels(capsys):
    """Labels are checked once the whole line is read (a label that is not one is the option's usage error):
    the folders ``--participant-label`` took before the positionals are still named as the positionals they are."""
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--participant-label", "01", "/data/bids", "/data/out", "participant"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exc.value.code == 2 and err.startswith(
        "geomorph-bids: error: the following arguments are required: bids_dir, output_dir, analysis_level "
        "(--participant-label took 01 /data/bids /data/out participant as its values"), err
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["/data/bids", "/data/out", "participant", "--session-label", "1", "ses-"])
    assert exc.value.code == 2 and capsys.readouterr().err.strip().splitlines()[-1] == (
        "geomorph-bids: error: argument --session-label/--session_label: invalid ses label 'ses-': BIDS labels are "
        "alphanumeric")


def test_a_nipype_plugin_with_batch_mode_is_a_usage_error(tmp_path, capsys):
    """Twentieth session: ``--use-plugin slurm.yml --batch-size 8`` read the plugin file and ran batch
    mode, which has no Nipype, on the node that ran the command: the plugin (a SLURM job per node) was
    ignored in silence. Now a usage error before anything is read or written."""
    from geomorph_bids.cli.bids import main

    bids, plugin = tmp_path / "bids", tmp_path / "slurm.yml"
    bids.mkdir()
    plugin.write_text("plugin: SLURM\n")
    with pytest.raises(SystemExit) as exc:
        main([str(bids), str(tmp_path / "out"), "participant", "--use-plugin", str(plugin), "--batch-size", "8"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exc.value.code == 2 and err == (
        f"geomorph-bids: error: --use-plugin {plugin} sets Nipype's scheduler, and batch mode (--batch-size 8) runs "
        "without Nipype, in --nprocs worker processes on this machine: give one of them")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bids", "slurm.yml"]


@pytest.mark.parametrize("command", ["bids", "register", "train"])
def test_every_command_s_help_states_its_defaults(command):
    """Twentieth session: geomorph-train's --help gave no default for --epochs, --batch-size,
    --lr-schedule, --patience, --lr-patience, --warmup, --synthetic or --data-level (and --lr as
    2e-4 beside ...), geomorph-register's for none it did not write by hand. Every option with a value
    by default now says it once; an empty default (--holdout) says nothing."""
    import importlib

    parser = importlib.import_module(f"geomorph_bids.cli.{command}").build_parser()
    formatter = parser._get_formatter()
    for action in parser._actions:
        text = formatter._get_help_string(action) or ""
        shown = action.default not in (None, False, [], (), argparse.SUPPRESS) and action.nargs != 0 \
            and action.option_strings
        assert not shown or "default" in text.lower(), (action.option_strings, text)
        assert "(default: )" not in text and ("default" not in (action.help or "").lower() or text == action.help)
    if command == "train":
        help_text = " ".join(parser.format_help().split())
        assert "--epochs EPOCHS most epochs (early stopping: --patience) (default: 50)" in help_text
        assert "--lr LR Adam learning rate (default: 0.0002)" in help_text


def test_no_command_reads_a_sibling_command_s_option_as_another_option(capsys):
    """Twentieth session: argparse takes any unique prefix of an option, and an option of one command
    was such a prefix in another: ``geomorph-register --features curv`` was ``--features-out curv`` (a
    folder named curv, exit 0), ``geomorph-bids ... --out O`` was ``--output-density O``. Each command
    now reads another's option as the same option (``--feature`` is ``--features``) or refuses it."""
    import importlib

    parsers = {c: importlib.import_module(f"geomorph_bids.cli.{c}").build_parser() for c in ("bids", "register", "train")}
    same = {("--feature", "features")}  # geomorph-register's --feature NAME=FILE, elsewhere --features NAME
    for a, pa in parsers.items():
        for b, pb in parsers.items():
            for option in (o for o in pa._option_string_actions if o.startswith("--") and a != b):
                if option in pb._option_string_actions:
                    continue
                matches = pb._get_option_tuples(option)
                assert len(matches) != 1 or (option, matches[0][0].dest) in same, (a, option, b, matches[0][1])
    with pytest.raises(SystemExit) as exc:
        parsers["bids"].parse_args(["B", "O", "participant", "--out", "x"])
    assert exc.value.code == 2 and "error: --out is geomorph-register's and geomorph-train's option; geomorph-bids " \
        "writes to output_dir, its second argument" in capsys.readouterr().err


def test_a_derivatives_folder_whose_path_holds_an_equals_sign_is_a_path(tmp_path, monkeypatch):
    """Twentieth session: ``--derivatives /data/site=1/smriprep`` was read as NAME=PATH, name
    ``/data/site`` and folder ``1/smriprep`` (``no such folder``, naming a folder nobody gave). A part
    before ``=`` with a ``/`` in it, or a relative path that is a folder as a whole, is a PATH."""
    from geomorph_bids.cli.parser import parse_derivatives

    folder = tmp_path / "site=1" / "smriprep"
    folder.mkdir(parents=True)
    assert parse_derivatives([str(folder)]) == {"smriprep": folder}
    monkeypatch.chdir(tmp_path)
    assert parse_derivatives(["site=1/smriprep"]) == {"smriprep": folder}
    assert parse_derivatives([f"fmriprep={folder}"]) == {"fmriprep": folder}  # NAME=PATH still
    assert parse_derivatives(["hcp=/data/a=b"]) == {"hcp": Path("/data/a=b")}


@pytest.mark.parametrize("module, prog", [("geomorph_bids.cli.register", "geomorph-register"),
                                          ("geomorph_bids.cli.train", "geomorph-train")])
def test_each_command_names_itself_in_its_version(module, prog, capsys):
    """Twentieth session (fix-x's left list): geomorph-register --version and geomorph-train --version
    printed "geomorph-bids 0.1.0.dev0", the name of another command."""
    import importlib

    from geomorph_bids import __version__

    with pytest.raises(SystemExit) as done:
        importlib.import_module(module).build_parser().parse_args(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"{prog} (geomorph-bids {__version__})"


@pytest.mark.parametrize("value", ["gpu", "0x10", "1", "cuda:x", "cuda:-1", "auto:1", "/dev/null", "\u200b", "cpu0"])
def test_a_device_no_command_knows_is_a_usage_error_whatever_the_model(value, capsys):
    """Round twenty-two (found by fuzzing the command lines): with ``--model rigid`` no device was ever
    resolved (the rigid stage runs on the CPU), so ``geomorph-bids ... --model rigid --device gpu`` and
    ``geomorph-register ... --model rigid --device 0x10`` registered and exited 0, the word read by nobody.
    Every command now checks the spelling when it parses its arguments (exit 2, naming the option)."""
    from geomorph_bids.cli.register import build_parser as register_parser
    from geomorph_bids.cli.train import build_parser as train_parser

    for parser, argv in ((build_parser(), ["b", "o", "participant", "--model", "rigid"]),
                         (register_parser(), ["--model", "rigid"]), (train_parser(), ["--out", "m"])):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([*argv, "--device", value])
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert exc.value.code == 2
        assert err == f"{parser.prog}: error: argument --device: unknown device {value!r}: use auto, cpu, cuda or cuda:N"
    for value in ("auto", "cpu", "CPU", " cuda ", "cuda:1", "cpu:0", "mps"):  # as resolve_device reads them
        assert build_parser().parse_args(["b", "o", "participant", "--device", value]).device == value


def test_a_huge_value_is_quoted_by_its_start_in_a_usage_error(capsys):
    """A 5000-character value (a file's contents pasted, a variable holding a whole list) was quoted
    whole in the usage error, the message lost in it; now its first 60 characters and its length."""
    from geomorph_bids.cli.train import build_parser as train_parser

    for parser, argv in ((build_parser(), ["b", "o", "participant", "--nprocs", "7" * 5000]),
                         (train_parser(), ["--out", "m", "--channels", "x" * 5000])):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(argv)
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert exc.value.code == 2 and len(err) < 250, err
        assert f"{argv[-1][:60]!r}... (5000 characters)" in err
    with pytest.raises(SystemExit):  # a long real path (a cluster's scratch folder) is quoted whole
        build_parser().parse_args(["b", "o", "participant", "--device", "/scratch/" + "p" * 300])
    assert "/scratch/" + "p" * 300 + "'" in capsys.readouterr().err


def test_options_the_reports_only_pass_reads_nothing_of_are_named_on_one_line():
    """Round twenty-two, found by fuzzing the command line: ``participant --reports-only --model X
    --template fsaverage --session-label 2 --min-cc 0.9`` rebuilt every report as it was and exited 0,
    the options read by nobody (a model that does not exist among them), where the group level names
    such options. Now one warning line names them; the execution options stay unnamed."""
    from geomorph_bids.cli.group_level import _ignored_by_reports_only

    args = build_parser().parse_args(["b", "o", "participant", "--reports-only", "--model", "nonexistent",
                                      "--template", "fsaverage", "--session-label", "2", "--min-cc", "0.9",
                                      "--nprocs", "1", "-w", "/tmp/w", "--participant-label", "01"])
    assert _ignored_by_reports_only(args) == (
        "--session-label, --template, --model and --min-cc have no effect with --reports-only (the reports are "
        "drawn from the outputs already written): run the participant level without --reports-only to register "
        "with them")
    one = build_parser().parse_args(["b", "o", "participant", "--reports-only", "--cifti-output"])
    assert _ignored_by_reports_only(one).startswith("--cifti-output has no effect with --reports-only")
    assert _ignored_by_reports_only(build_parser().parse_args(["b", "o", "participant", "--reports-only",
                                                                "--nprocs", "1", "--participant-label", "01"])) is None


def test_an_option_of_one_value_given_twice_with_different_values_is_named(capsys):
    """Round twenty-two, found by fuzzing the command line: ``--template fsLR ... --template fsaverage``
    or ``--batch-size 1 --batch-size=2`` (a script that builds its command in pieces) ran with the last
    value in silence. The last still wins (a script's override keeps working); one warning line names
    the values, both spellings of one setting (``--mem 1G --mem-gb 2``) together. The same value twice
    (``--hemi L --hemi lh``, ``--min-cc 0.5 --min-cc .50``) and list options (every value kept) are not named."""
    from geomorph_bids.cli.register import build_parser as register_parser

    args = build_parser().parse_args(["b", "o", "participant", "--batch-size", "1", "--batch-size=2", "--template",
                                      "fsLR", "--model", "rigid", "--model", "rigid", "--templ" "ate", "fsaverage",
                                      "--participant-label", "01", "--participant-label", "02", "--nprocs", "2",
                                      "--nthreads", "3", "--mem", "1G", "--mem-gb", "2", "-v", "-v"])
    assert (args.batch_size, args.template, args.nprocs, args.mem_gb) == (2, "fsaverage", 3, 2.0)
    assert capsys.readouterr().err.splitlines() == [
        "geomorph-bids: warning: --batch-size given 2 times (1, 2): using 2",
        "geomorph-bids: warning: --template given 2 times (fsLR, fsaverage): using fsaverage",
        "geomorph-bids: warning: --nprocs given 2 times (2, 3): using 3",
        "geomorph-bids: warning: --mem / --mem-gb given 2 times (--mem 1G, --mem-gb 2): using --mem-gb 2"]
    register_parser().parse_args(["--out", "a.surf.gii", "--out", "b.surf.gii", "--hemi", "L", "--hemi", "lh",
                                   "--min-cc", "0.5", "--min-cc", ".50"])
    assert capsys.readouterr().err.splitlines() == [
        "geomorph-register: warning: --out given 2 times (a.surf.gii, b.surf.gii): using b.surf.gii"]  # L is lh


def test_refine_says_one_thing_in_both_commands_and_what_short_is():
    """--refine is one option of geomorph-bids and geomorph-register, written twice with two wordings
    (duplicates found the pair): one text now, whose 'short' is the refinement register() runs."""
    from geomorph_bids.cli.register import build_parser as register_parser
    from geomorph_bids.model.optimise import REFINEMENT

    def refine_help(parser):
        return next(a.help for a in parser._actions if "--refine" in a.option_strings)

    text = refine_help(build_parser())
    assert text == refine_help(register_parser())
    (level,), (steps,) = REFINEMENT.control_levels, REFINEMENT.steps
    assert f"'short' (default: one ico-{level} stage, {steps} steps)" in text

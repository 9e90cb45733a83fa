"""How the commands talk: one-line warnings, and output streams whose reader goes away."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .test_faults import N_FILES, cli

SAFETY_S = 600  # only so that a broken run cannot hang the test suite


def test_a_reader_that_goes_away_costs_the_text_not_the_work(tmp_path):
    """Round fifteen: a pipe whose reader went away (``| head -1``; ``nohup ... | tee log &`` whose
    tee ended with the session) raised BrokenPipeError at the next print or warning, wherever it was:
    the run ended with exit 1. Within ``reader_may_go_away`` the text is dropped and the work goes on."""
    marker = tmp_path / "done"
    code = textwrap.dedent(f"""
        import sys, warnings
        from geomorph_bids.cli.messages import one_line_warnings, reader_may_go_away
        with reader_may_go_away(), one_line_warnings("prog"):
            print("first line", flush=True)
            sys.stdin.read()  # the test closes the reader, then stdin
            for i in range(10000):
                print("line", i)
            print("to stderr", file=sys.stderr, flush=True)
            warnings.warn("a warning nobody reads")
            open({str(marker)!r}, "w").write("ok")
        sys.stdout.write("after the block" * 10000)
    """)
    read_end, write_end = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=write_end,
                            stderr=write_end, env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        assert reader.readline() == b"first line\n"
    proc.stdin.close()  # the reader is gone: let the child write on
    assert proc.wait(timeout=SAFETY_S) == 0
    assert marker.read_text() == "ok"


def test_geomorph_bids_whose_output_nobody_reads_writes_every_output(dataset_factory, tmp_path):
    """The whole command with stdout and stderr a pipe already closed by its reader: before, the
    first line ended the run (``geomorph-bids: error: Broken pipe``, exit 1, nothing registered);
    with ``2>&1 | head -1`` a warning raised while the reports were built (outputs without reports)."""
    bids = dataset_factory("freesurfer", subjects=("01",))
    out = tmp_path / "out"
    read_end, write_end = os.pipe()
    os.close(read_end)
    proc = subprocess.run(cli(bids, out, "participant", "--model", "rigid", "--hemi", "L", "-w", tmp_path / "work"),
                          stdout=write_end, stderr=write_end, timeout=SAFETY_S)
    os.close(write_end)
    assert proc.returncode == 0
    assert len(list((out / "sub-01" / "anat").glob("*"))) == N_FILES
    assert (out / "sub-01.html").is_file()


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_a_character_stdout_cannot_encode_is_escaped_not_fatal(tmp_path, encoding):
    """Twenty-second session: with ``PYTHONIOENCODING=ascii`` (or ``latin-1``, or a locale of another
    encoding) a printed path holding ``ä`` or ``→`` raised ``UnicodeEncodeError`` at that line: the run
    ended there (``error: 'ascii' codec can't encode character '\\xe4' ...``, exit 1). Now the
    character is written as its escape, as Python writes stderr, and the work goes on."""
    marker = tmp_path / "done"
    code = textwrap.dedent(f"""
        from geomorph_bids.cli.messages import reader_may_go_away
        with reader_may_go_away():
            print("outputs in /data/d\\u00e4t\\u00e4 \\u2192/out")
            open({str(marker)!r}, "w").write("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=SAFETY_S,
                          env={**os.environ, "PYTHONPATH": str(Path.cwd()), "PYTHONIOENCODING": encoding})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
    expected = {"ascii": b"outputs in /data/d\\xe4t\\xe4 \\u2192/out\n",
                "latin-1": b"outputs in /data/d\xe4t\xe4 \\u2192/out\n"}
    assert proc.stdout == expected[encoding]
    assert marker.read_text() == "ok"


def test_geomorph_bids_prints_a_non_ascii_output_folder_to_an_ascii_stdout(dataset_factory, tmp_path):
    """The whole command with ``PYTHONIOENCODING=ascii`` and an output folder ``dätä →``: before,
    ``geomorph-bids: error: 'ascii' codec can't encode character '\\xe4' in position 82``, exit 1, at the
    start line, after the output folder's descriptions were written and before anything registered."""
    bids = dataset_factory("freesurfer", subjects=("01",))
    out = tmp_path / "d\u00e4t\u00e4 \u2192" / "out"
    proc = subprocess.run(cli(bids, out, "participant", "--model", "rigid", "--hemi", "L", "-w", tmp_path / "work"),
                          capture_output=True, timeout=SAFETY_S, env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert proc.returncode == 0, proc.stderr
    assert f"outputs in {tmp_path}/d\\xe4t\\xe4 \\u2192/out\n".encode() in proc.stdout
    assert len(list((out / "sub-01" / "anat").glob("*"))) == N_FILES
    assert (out / "sub-01.html").is_file()


def test_one_line_escapes_control_characters_and_shortens_a_huge_word_in_its_middle():
    """The exit-1 error lines (``error_exit``) printed a control character of a name raw (an ESC of
    ``--derivatives $'a\\x1b[31mb'`` coloured the terminal) and quoted a path of thousands of characters whole.
    ``one_line``, their one formatter, escapes what does not print and keeps a huge word's two ends."""
    from geomorph_bids.cli.messages import one_line

    assert one_line("a\x1b[31mb: x\ry\a \xa0 café\nnext\tline  end\r\n") == \
        "a\\x1b[31mb: x\\ry\\x07 \\xa0 café next line end"
    path = "/data/" + "d" * 3000 + "/lh.sulc"
    assert one_line(f"{path}: cannot be read") == ("/data/" + "d" * 94 + "...(2815 characters)..." + "d" * 91
                                                   + "/lh.sulc: cannot be read")
    assert one_line("/" + "p" * 499) == "/" + "p" * 499  # a real path, however long, is shown whole


def test_an_error_line_shows_a_huge_path_by_its_ends_and_a_control_character_escaped(capsys, tmp_path):
    from geomorph_bids.cli.bids import main

    bids = Path(__file__).resolve().parents[2] / "examples" / "ds-geomorph-example"
    huge = tmp_path.joinpath(*["d" * 200] * 15)  # 3,000 characters, as deep as a folder can be
    assert main([str(bids), str(tmp_path / "out"), "participant", "--fs-subjects-dir", str(huge)]) == 1
    err = capsys.readouterr().err
    word = f"{huge}:"  # the path's word ends in the colon after it
    assert err == (f"geomorph-bids: error: {word[:100]}...({len(word) - 200} characters)...{word[-100:]} "
                   "--fs-subjects-dir: no such folder (the FreeSurfer SUBJECTS_DIR holding the subjects)\n")
    assert main([str(bids), str(tmp_path / "out"), "participant", "--derivatives", "a\x1b[31mb=/nonexistent"]) == 1
    assert capsys.readouterr().err == ("geomorph-bids: error: /nonexistent: --derivatives a\\x1b[31mb: no such folder "
                                       "(give the sMRIPrep/fMRIPrep/HCP output folder that holds the sub-* folders)\n")
    assert not (tmp_path / "out").exists()


def test_every_error_line_escapes_a_control_character_usage_errors_and_raised_exits_too(capsys, monkeypatch):
    """README says an ``error:`` line escapes a control character of a name; two kinds printed it raw: argparse's
    usage errors (``unrecognized arguments: x<ESC>[31my``, exit 2) and a command's own ``raise SystemExit(...)``
    (geomorph-register's ``--hemi is required: a<ESC>[31mb ...``, exit 1). Both are one escaped line now."""
    from geomorph_bids.cli.launch import launch

    monkeypatch.setattr(sys, "argv", ["geomorph-register", "--sphere", "a\x1b[31mb", "--feature", "sulc=x"])
    assert launch("geomorph_bids.cli.register", "geomorph-register") == 1
    assert capsys.readouterr().err == ("geomorph-register: error: --hemi is required: a\\x1b[31mb does not say "
                                       "which hemisphere it is\n")
    monkeypatch.setattr(sys, "argv", ["geomorph-bids", "/nonexistent", "out", "participant", "x\x1b[31my"])
    with pytest.raises(SystemExit) as stop:
        launch("geomorph_bids.cli.bids", "geomorph-bids")
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == "geomorph-bids: error: unrecognized arguments: x\\x1b[31my"
def _ends(word: str) -> str:
    """A word of over 500 characters as a message line shows it (``one_line``)."""
    return f"{word[:100]}...({len(word) - 200} characters)...{word[-100:]}"


def test_warning_and_failed_lines_escape_control_characters_and_shorten_a_huge_path(capsys, tmp_path):
    """``warning:`` and ``FAILED`` lines were printed where they were made: ``--derivatives $'a\\x1b[31mb=DIR'``
    of an empty folder printed the ESC raw (the terminal turned red) and a folder of 3,000 characters whole, twice
    in the FAILED line. They go through ``messages.say`` now, which writes them as ``one_line`` writes an
    ``error:`` line."""
    from geomorph_bids.cli.bids import main

    bids = Path(__file__).resolve().parents[2] / "examples" / "ds-geomorph-example"
    huge = tmp_path.joinpath(*["d" * 200] * 15)
    huge.mkdir(parents=True)
    assert main([str(bids), str(tmp_path / "out"), "participant", "--derivatives", f"a\x1b[31mb={huge}",
                 "--participant-label", "99"]) == 1
    err = capsys.readouterr().err.splitlines()
    shown = "a\\x1b[31mb=" + str(huge)
    assert err[0] == (f"geomorph-bids: warning: --derivatives {_ends(shown)} holds no subject (no "
                      "sub-* folder, HCP or FreeSurfer subject, nor a smriprep/ or fmriprep/ folder with sub-*): "
                      "nothing is read from it")
    assert err[1] == "geomorph-bids: 1 failure(s): no hemisphere registered:"
    assert err[2].startswith("  FAILED sub-99 hemi-L,R: not found; available: 01; ")
    assert f"searched: {_ends(str(huge))} (empty: a DataLad subdataset not installed? datalad get -n " \
           f"{_ends(str(huge) + '),')} " in err[2]
    assert len(err) == 3 and all("\x1b" not in line and len(line) < 1500 for line in err)
    assert not (tmp_path / "out").exists()


def test_a_python_warning_line_escapes_control_characters(capsys):
    import warnings

    from geomorph_bids.cli.messages import one_line_warnings

    with one_line_warnings("geomorph-train"):
        warnings.warn("sub-\x1b[2Ja: odd\nname", UserWarning)
    assert capsys.readouterr().err == "geomorph-train: warning: sub-\\x1b[2Ja: odd name\n"


def test_batch_progress_removed_and_lock_wait_lines_escape_control_characters(capsys, monkeypatch, tmp_path):
    """Twenty-fourth session: batch mode's progress lines (``log``: a CIFTI file not written names its path),
    its summary, the ``removed N output(s)`` line and ``--lock-wait``'s line naming the other run (read from
    its lock file) were printed by ``print``: an ESC raw, a path of thousands of characters whole. They go
    through ``messages.say`` now; an ordinary line reads as before."""
    import types

    from geomorph_bids.batch import pipeline
    from geomorph_bids.cli import bids, preflight

    huge = "/x" + "d" * 3000 + "/sub-01_space-fsLR_sulc.dscalar.nii"

    def fake_batch(jobs, config, crashes, **kw):
        kw["log"]("batch: 2/2 hemisphere(s) done (0.50/s), 0 failed")
        kw["log"](f"batch: sub-01: CIFTI file not written: disk\x1b[31m full ({huge})")
        return types.SimpleNamespace(registered=2, seconds={"workers": 3.0}, failed=0, not_started=[], reused=0,
                                     report_warnings=[], worker_deaths=0, unrecorded=[], reports={})

    monkeypatch.setattr(pipeline, "run_batch", fake_batch)
    job = types.SimpleNamespace(subject="01", session=None, inputs=types.SimpleNamespace(hemis={"L": None}))
    config = types.SimpleNamespace(batch_size=4)
    args = types.SimpleNamespace(stop_on_first_crash=False)
    bids._run_workflow([job], config, args, tmp_path, set(), ("MultiProc", {}))
    out = capsys.readouterr().out.splitlines()
    assert out == ["batch: 2/2 hemisphere(s) done (0.50/s), 0 failed",
                   "batch: sub-01: CIFTI file not written: disk\\x1b[31m full "
                   f"{_ends('(' + huge + ')')}",
                   "batch mode: registered 2 hemisphere(s) in 3 worker process(es), 4 per registration batch; "
                   "0 failed; 0 already done"]

    stale = tmp_path / "sub-01_hemi-L_space-fsLR_den-41k_desc-\x1b[2Jx_sulc.shape.gii"
    stale.write_text("")
    outputs = types.SimpleNamespace(entities="sub-01", space="fsLR", anat=tmp_path, hemi="L", others=lambda: [stale])
    bids._remove_stale(outputs, job, None)
    assert capsys.readouterr().err == ("geomorph-bids: sub-01 hemi-L: removed 1 output(s) an earlier run derived "
                                       "from the previous registration: sub-01_hemi-L_space-fsLR_den-41k_desc-"
                                       "\\x1b[2Jx_sulc.shape.gii\n")
    assert not stale.exists()

    locks = types.SimpleNamespace(try_lock=lambda name: False, stale=lambda name: "",
                                  holder=lambda name: "pid 7 on node\x1b[31m1", path=lambda name: tmp_path / name)
    monkeypatch.setattr(preflight, "PROBE_PAUSE_S", 0.0)
    preflight.lock_participants(locks, [job], True, "geomorph-bids")
    assert capsys.readouterr().out == ("geomorph-bids: sub-01: another geomorph-bids run is processing it (pid 7 on "
                                       "node\\x1b[31m1); it will be done after that run, once this run's other "
                                       "participants are finished\n")


def test_one_line_keep_spaces_keeps_a_folders_two_spaces_and_escapes_its_line_break():
    """``one_line`` folds every run of blanks into one space: a folder ``my  study`` read as ``my study``, a
    folder that does not exist. With ``keep_spaces`` (the lines that name folders) the spaces are kept, and a
    line break or tab of a name escaped; what does not print is escaped and a huge word shortened as before."""
    from geomorph_bids.cli.messages import one_line

    assert one_line("-> /data/my  study\x1b[31m/out (work dir /w\nx\ty)", keep_spaces=True) == \
        "-> /data/my  study\\x1b[31m/out (work dir /w\\nx\\ty)"
    path = "/data/" + "d" * 3000 + "/lh.sulc"
    assert one_line(f"in  {path}:  x", keep_spaces=True) == (
        "in  /data/" + "d" * 94 + "...(2815 characters)..." + "d" * 91 + "/lh.sulc:  x")
    assert one_line("a  b\nc") == "a b c"  # the other lines: as before


def test_the_start_inputs_and_reports_deferred_lines_name_the_folders_exactly(capsys, tmp_path):
    """Twenty-fourth session: the start line (``geomorph-bids X: N hemisphere(s) ... -> OUTPUT_DIR (... work dir
    WORK)``), the ``inputs:`` line and ``reports deferred:`` were ``print``ed as made: an ESC of a folder's name
    raw (it coloured the terminal). Through ``say`` with ``keep_spaces``, the ESC is escaped and a folder's two
    spaces are kept (``say``'s ``one_line`` alone would have folded them into one, naming another folder); the
    command that ``reports deferred`` suggests quotes the folders, to be pasted as it is."""
    from geomorph_bids.cli.bids import main

    from .conftest import make_dataset

    bids = make_dataset(tmp_path / "my  study\x1b[31m", "freesurfer", subjects=("01",))
    out, work = tmp_path / "out  dir", tmp_path / "work  dir"
    assert main([str(bids), str(out), "participant", "--model", "rigid", "--hemi", "L", "-w", str(work),
                 "--reports", "deferred"]) == 0
    lines = capsys.readouterr().out.splitlines()
    shown = str(tmp_path / "my  study\\x1b[31m")
    start = next(line for line in lines if line.startswith("geomorph-bids ") and " -> " in line)
    assert f" -> {out} (template " in start and start.endswith(f", work dir {work})")
    inputs = next(line for line in lines if line.startswith("inputs: "))
    assert inputs == f"inputs: FreeSurfer layout in {shown}/derivatives/freesurfer: sub-01"
    assert lines[-1] == (f"reports deferred: build them with geomorph-bids '{shown}' '{out}' participant "
                         "--reports-only")
    assert "\x1b" not in "\n".join(lines)


def test_the_report_lines_name_the_folders_exactly(capsys):
    """The ``report(s):`` line was ``print``ed as made (an ESC of a folder's name raw); now escaped, with a
    folder's two spaces kept."""
    from geomorph_bids.cli.reporting import print_reports

    print_reports([Path("/data/my  out\x1b[31m/sub-01.html")])
    print_reports([Path(f"/data/my  out/sub-0{k}.html") for k in range(1, 6)])
    assert capsys.readouterr().out.splitlines() == [
        "report(s): /data/my  out\\x1b[31m/sub-01.html",
        "report(s): 5 in /data/my  out (sub-01.html ... sub-05.html)"]

"""Fuzzing the geomorph-bids command line with hypothesis: random argv built from the real
option names, analysis levels and random words. Property: ``main`` returns 0 or 1 (bad input
reported on one line) or argparse exits with 2 (usage; 0 for --help/--version); never
another exception, never a hang. The levels themselves are replaced by stubs, so nothing runs.
The BIDS filter file and the plugin file (read before any work) are fuzzed the same way."""

from __future__ import annotations

import contextlib
import io
import os
import types

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geomorph_bids.cli import bids as cli_bids
from geomorph_bids.cli.nipype_config import plugin_settings
from geomorph_bids.cli.parser import build_parser
from geomorph_bids.cli.selection import read_filter
from geomorph_bids.errors import InputError

# derandomised (the same examples every run: CI never flakes); GEOMORPH_FUZZ_RANDOM=1 explores anew
FUZZ = settings(max_examples=int(os.environ.get("GEOMORPH_FUZZ_EXAMPLES", "300")), deadline=3000, database=None,
                derandomize=not os.environ.get("GEOMORPH_FUZZ_RANDOM"),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

OPTIONS = sorted(s for a in build_parser()._actions for s in a.option_strings)
WORDS = ["participant", "group", ".", "..", "bids", "out", "L", "R", "sulc", "curv", "thickness", "myelin",
         "fsLR", "fsaverage", "rigid", "default", "cpu", "cuda", "auto", "32k", "ico6", "0", "1", "-1", "2.5",
         "nan", "inf", "", "-", "--", "=", "a=b", "=b", "a=", "sub-01", "01", "ses-pre", "\x00", "é"]
TOKEN = st.one_of(st.sampled_from(OPTIONS), st.sampled_from(WORDS),
                  st.text(max_size=12), st.integers(-5, 10 ** 6).map(str))


@pytest.fixture()
def stubbed(monkeypatch, tmp_path):
    """main() with the three levels replaced by a stub (returns 0), run in an empty folder."""
    for name in ("run_participant", "run_group", "run_reports_only"):
        monkeypatch.setattr(cli_bids, name, lambda args: 0)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@FUZZ
@given(argv=st.lists(TOKEN, max_size=14))
def test_random_argv(stubbed, argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli_bids.main(argv)
        except SystemExit as exc:
            assert exc.code in (0, 2), (argv, err.getvalue())
            return
    assert code in (0, 1), argv
    if code == 1:  # an option given twice with two values is a warning line of its own (round twenty-two)
        lines = [line for line in err.getvalue().strip().splitlines() if " times (" not in line]
        assert len(lines) == 1 and lines[0].startswith("geomorph-bids: error: "), err.getvalue()


@FUZZ
@given(argv=st.lists(TOKEN, max_size=10))
def test_random_argv_after_valid_positionals(stubbed, argv):
    """The same with valid positionals first, so that the options are actually parsed."""
    (stubbed / "bids").mkdir(exist_ok=True)
    (stubbed / "bids" / "dataset_description.json").write_text("{}")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli_bids.main(["bids", "out", "participant", *argv])
        except SystemExit as exc:
            assert exc.code in (0, 2), (argv, err.getvalue())
            return
    assert code in (0, 1), argv


def test_empty_derivative_name_is_a_usage_error(stubbed, capsys):
    """``--derivatives =x`` used to raise ArgumentTypeError out of main (a traceback); the
    argv fuzzing property above covers it."""
    (stubbed / "bids").mkdir()
    with pytest.raises(SystemExit) as exc:
        cli_bids.main(["bids", "out", "participant", "--derivatives", "=x"])
    assert exc.value.code == 2
    assert "--derivatives expects NAME=PATH or PATH, got '=x'" in capsys.readouterr().err


@FUZZ
@given(text=st.one_of(st.text(max_size=200), st.sampled_from([
    '{"subject": ["01"]}', '{"t1w": {"session": "pre"}}', '{"subject": 1}', '{"subject": [null]}',
    '{"subject": [{}]}', '{"task": "x"}', "[]", "null", '{"session": ["a b"]}', '{"subject": ["sub-"]}'])))
def test_random_bids_filter_file(tmp_path, text):
    path = tmp_path / "filter.json"
    path.write_text(text)
    try:
        out = read_filter(path)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert set(out) <= {"subject", "session"} and all(isinstance(v, list) for v in out.values())


@FUZZ
@given(text=st.one_of(st.text(max_size=200), st.sampled_from([
    "plugin: MultiProc", "plugin: Linear\nplugin_args: 3", "plugin: [1]", "plugin: MultiProc\nplugin_args: [1]",
    "plugin_args: {}", "- a", ": :", "plugin: MultiProc\nplugin_args: {n_procs: x}"])))
def test_random_plugin_file(tmp_path, text):
    """Found by this fuzzing: ``plugin_args: 3`` (TypeError) and ``plugin: []`` were accepted."""
    path = tmp_path / "plugin.yml"
    path.write_text(text)
    args = types.SimpleNamespace(nprocs=2, mem_gb=None, use_plugin=path)
    try:
        plugin, plugin_args = plugin_settings(args)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(plugin, str) and isinstance(plugin_args, dict)

"""What the machine lets a run use: the thread settings of the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from geomorph_bids.cli.machine import drop_unusable_thread_settings, threads_wait_passively


@pytest.mark.parametrize("value, kept", [("abc", False), ("0", False), ("-1", False), ("", False), ("2.5", False),
                                         ("4", True), ("4,2", True), (" 8 ", True)])
def test_an_omp_num_threads_that_is_no_thread_count_is_dropped_with_one_warning(value, kept, capsys):
    """Round fifteen: OMP_NUM_THREADS=abc (0, empty: an unset variable exported) let the run go on, but
    libgomp printed a blank line and 'libgomp: Invalid value for environment variable OMP_NUM_THREADS',
    naming no command."""
    env = {"OMP_NUM_THREADS": value, "OTHER": "x"}
    drop_unusable_thread_settings("prog", env)
    err = capsys.readouterr().err
    assert ("OMP_NUM_THREADS" in env) == kept and env["OTHER"] == "x"
    assert err == ("" if kept else f"prog: warning: OMP_NUM_THREADS={value!r} is not a number of threads "
                                   "(a whole number >= 1); ignored\n")


def test_openmp_no_longer_complains_once_the_setting_is_dropped():
    code = ("from geomorph_bids.cli.machine import drop_unusable_thread_settings as d; d('prog'); "
            "import torch; torch.ones(3).sum()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "abc", "PYTHONPATH": str(Path.cwd())})
    assert done.returncode == 0 and "libgomp" not in done.stderr
    assert done.stderr.strip() == "prog: warning: OMP_NUM_THREADS='abc' is not a number of threads (a whole number >= 1); ignored"


@pytest.mark.parametrize("given", [None, "ACTIVE", "passive"])
def test_openmp_threads_wait_passively_unless_the_user_said_otherwise(given):
    """Eleventh session: spinning OpenMP threads made a forward pass 5-20x slower when another
    process held a core; the commands set OMP_WAIT_POLICY=PASSIVE, keeping a user's own value."""
    env = {"OTHER": "x"} if given is None else {"OMP_WAIT_POLICY": given}
    threads_wait_passively(env)
    assert env["OMP_WAIT_POLICY"] == ("PASSIVE" if given is None else given)


def test_the_commands_set_the_wait_policy_before_torch_is_imported():
    code = ("import sys, os; from geomorph_bids.cli import bids, register; assert 'torch' not in sys.modules; "
            "from geomorph_bids.cli.machine import threads_wait_passively as t; t(); import torch; "
            "print(os.environ['OMP_WAIT_POLICY'])")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**env, "PYTHONPATH": str(Path.cwd())})
    assert done.returncode == 0 and done.stdout.strip() == "PASSIVE", done.stderr


def test_a_current_folder_that_was_deleted_is_one_line_for_each_command(tmp_path):
    """Round fifteen: from a shell whose current folder had been deleted, geomorph-bids ended with a
    traceback (``FileNotFoundError`` from ``os.getcwd`` in ``absolute_paths``; with ``-w`` given, from
    Nipype's configuration, then a second traceback at exit) and geomorph-register said ``error: no
    such file``, naming nothing."""
    gone = tmp_path / "gone"
    gone.mkdir()
    code = ("from geomorph_bids.cli import bids, register, train; "
            f"print(bids.main(['{tmp_path}/b', '{tmp_path}/o', 'participant', '-w', '{tmp_path}/w']), "
            "register.main(['--example']), train.main(['--out', 'm', '--synthetic', '2']))")
    done = subprocess.run(["sh", "-c", f'cd "{gone}" && rmdir "{gone}" && exec "{sys.executable}" -c "{code}"'],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    assert done.stdout.split() == ["1", "1", "1"], done.stderr
    why = ("error: the current folder no longer exists (deleted or moved while this shell was in it): cd to an "
           "existing folder and run the command again")
    assert done.stderr.splitlines() == [f"{prog}: {why}" for prog in ("geomorph-bids", "geomorph-register",
                                                                      "geomorph-train")]
    assert not (tmp_path / "o").exists() and not (tmp_path / "w").exists()

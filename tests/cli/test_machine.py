"""What the machine lets a run use: the thread settings of the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from geomorph_bids.cli.machine import drop_unusable_thread_settings


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

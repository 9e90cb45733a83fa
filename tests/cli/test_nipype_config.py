"""Nipype's settings for a run of geomorph-bids."""

from __future__ import annotations

from geomorph_bids.cli.nipype_config import configure_nipype
from geomorph_bids.cli.parser import build_parser


def test_verbose_gives_the_levels_its_help_says(tmp_path):
    """Twentieth session: ``-v`` ("more log messages (-vv: debug)") set Nipype's level to WARNING,
    which a run that works never uses: nothing more was printed; ``-vv`` gave INFO and ``-vvv`` DEBUG.
    Now ``-v`` is Nipype's messages (INFO), ``-vv`` and more its debug ones."""
    from nipype import config

    try:
        for count, level in ((0, "CRITICAL"), (1, "INFO"), (2, "DEBUG"), (3, "DEBUG")):
            configure_nipype(tmp_path, count, False)
            assert [config.get("logging", f"{kind}_level") for kind in ("workflow", "interface", "utils")] == \
                [level] * 3, count
    finally:
        configure_nipype(tmp_path, 0, False)
    help_text = " ".join(build_parser().format_help().split())
    assert "-v, --verbose Nipype's log messages on stdout (-v: each node run, -vv: debug; batch mode" in help_text


_DYING_WORKFLOW = r'''
import sys, time
from pathlib import Path
from nipype import Node, Workflow, config
from nipype.interfaces.utility import Function
from geomorph_bids.cli.nipype_config import plugin_runner

def die(folder):
    import os, signal, time
    open(os.path.join(folder, "died"), "w").write(repr(time.time()))
    os.kill(os.getpid(), signal.SIGKILL)  # what the out-of-memory killer does

def after(folder):
    import os, time
    open(os.path.join(folder, "after"), "w").write(repr(time.time()))

tmp = Path(sys.argv[1])
config.set("execution", "crashdump_dir", str(tmp / "crash"))
config.set("execution", "crashfile_format", "txt")
config.set("execution", "poll_sleep_duration", "0.1")
config.set("logging", "workflow_level", "CRITICAL")
wf = Workflow("wf", base_dir=str(tmp / "work"))
a = Node(Function(input_names=["folder"], output_names=[], function=die), name="register")
b = Node(Function(input_names=["folder"], output_names=[], function=after), name="other")
a.inputs.folder = b.inputs.folder = str(tmp)
wf.add_nodes([a, b])
try:
    wf.run(plugin=plugin_runner(("MultiProc", {"n_procs": 1, "raise_insufficient": False})))
except RuntimeError:
    print("raised")
'''


def test_a_worker_killed_mid_step_fails_that_step_and_the_run_goes_on(tmp_path):
    """Twenty-first session: a MultiProc worker killed by the out-of-memory killer (a 163,842-vertex
    hemisphere in a 0.45 GB cgroup) broke Nipype's pool: a ``BrokenProcessPool`` traceback from its
    done-callback, then the run waited for ever (killed by ``timeout`` after 300 s), naming no subject.
    Now the step fails with a crash file saying why, and the next step runs in a fresh pool."""
    import subprocess
    import sys
    from pathlib import Path

    from geomorph_bids.cli.nipype_config import WORKER_DIED
    from geomorph_bids.crashfiles import read_crash_file

    try:
        script = tmp_path / "run.py"  # a file: Nipype's Function reads its functions' source
        script.write_text(_DYING_WORKFLOW)
        done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                              timeout=60, env={**__import__("os").environ, "PYTHONPATH": str(Path.cwd())})
    except subprocess.TimeoutExpired:
        raise AssertionError("the run waited for ever for the step whose worker was killed") from None
    assert done.stdout.split()[-1:] == ["raised"], done.stderr
    assert "BrokenProcessPool" not in done.stderr and "exception calling callback" not in done.stderr
    crashes = [read_crash_file(p) for p in sorted((tmp_path / "crash").glob("crash-*.txt"))]
    assert [(c.node, c.error) for c in crashes] == [("register", WORKER_DIED)]
    assert float((tmp_path / "after").read_text()) > float((tmp_path / "died").read_text())  # in a fresh pool

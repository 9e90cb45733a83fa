"""The batch workers' fork server: the package the workers import is the one the command runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ds-geomorph-example"
CONSOLE_SCRIPT = ("from geomorph_bids.cli.bids import main\n\nif __name__ == '__main__':\n"
                  "    sys.exit(main())\n")  # as pip writes console scripts (workers import it)


def _run_beside_a_geomorph_bids_folder(tmp_path: Path, prelude: str = "") -> Path:
    """Batch mode started like the console script (a fresh interpreter running a script kept in
    another folder) from a folder whose output folder is named geomorph_bids (a natural name, and
    what a stale checkout beside the data would be); returns that folder after asserting exit 0."""
    launcher = tmp_path / "bin" / "geomorph-bids"
    launcher.parent.mkdir()
    launcher.write_text("import sys\n" + prelude + CONSOLE_SCRIPT)
    work = tmp_path / "here"
    (work / "geomorph_bids").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}
    proc = subprocess.run([sys.executable, str(launcher), str(EXAMPLE), "geomorph_bids", "participant",
                           "--participant-label", "01", "--hemi", "L", "--model", "rigid", "--batch-size", "1",
                           "--nprocs", "1", "-w", "work"], cwd=work, capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "ImportError" not in proc.stderr
    return work / "geomorph_bids"


def test_workers_do_not_import_a_geomorph_bids_folder_from_the_current_folder(tmp_path):
    """The fork server runs as `python -c`, with the current folder first on sys.path, so its
    workers imported the output folder named geomorph_bids as the package and every hemisphere
    failed (ImportError)."""
    out = _run_beside_a_geomorph_bids_folder(tmp_path)
    assert list(out.rglob("*_desc-geomorph_sphere.surf.gii"))


def test_without_safe_path_the_fork_server_preloads_nothing(tmp_path):
    """Python 3.10 has no PYTHONSAFEPATH, so its fork server would import PRELOAD from the current
    folder's `geomorph_bids`: there it preloads nothing and each worker imports the package through
    the parent's sys.path. Simulated here: no PYTHONSAFEPATH, no preload, the same hostile folder
    (with the preload, this run's worker dies: checked by hand)."""
    from geomorph_bids.batch.pool import PRELOAD, preload_modules

    assert preload_modules((3, 10)) == [] and preload_modules((3, 11)) == list(PRELOAD)
    out = _run_beside_a_geomorph_bids_folder(tmp_path, "import geomorph_bids.batch.pool as pool\n"
                                                       "pool.preload_modules = lambda *a, **k: []\n"
                                                       "pool._start_fork_server = lambda: None\n")
    assert list(out.rglob("*_desc-geomorph_sphere.surf.gii"))


def test_the_fork_server_started_early_is_the_one_the_pool_forks_from():
    """start_fork_server (called by the command line before its settings and discovery, so that
    the workers' imports run beside them) starts the server once; worker_pool then uses it."""
    from multiprocessing import forkserver

    from geomorph_bids.batch.pool import start_fork_server, worker_pool

    ctx = start_fork_server()
    assert ctx.get_start_method() == "forkserver"
    pid = forkserver._forkserver._forkserver_pid
    assert pid is not None
    start_fork_server()
    pool = worker_pool(1)
    try:
        assert pool.submit(os.getpid).result(timeout=300) != os.getpid()
    finally:
        pool.shutdown()
    assert forkserver._forkserver._forkserver_pid == pid


def test_report_pools_also_preload_what_the_figures_import():
    """A pool that draws reports has its fork server import matplotlib's figure, Agg canvas and
    colour bars and PIL's PNG writer once, instead of every worker at its first figure; a pool
    that draws only reports (the Nipype mode's, --reports-only) leaves torch out."""
    import importlib

    from geomorph_bids.batch.pool import PRELOAD, REGISTRATION_MODULES, REPORT_PRELOAD, preload_modules

    assert preload_modules((3, 11), reports=True) == list(PRELOAD) + list(REPORT_PRELOAD)
    only = preload_modules((3, 11), reports=True, registrations=False)
    assert "torch" in REGISTRATION_MODULES and not set(only) & set(REGISTRATION_MODULES)
    assert set(only) == set(PRELOAD) - set(REGISTRATION_MODULES) | set(REPORT_PRELOAD)
    assert preload_modules((3, 10), reports=True) == [] == preload_modules((3, 10), registrations=False)
    for name in REPORT_PRELOAD:
        importlib.import_module(name)


REPORT_ONLY_POOL = """
import sys
from pathlib import Path


def report(output_dir, subject):
    from geomorph_bids.batch.tasks import build_report

    outcome = build_report(Path(output_dir), subject, False)
    return "torch" in sys.modules, outcome.error


if __name__ == "__main__":
    from geomorph_bids.batch.pool import worker_pool

    with worker_pool(1, reports=True, registrations=False) as pool:
        print(pool.submit(report, sys.argv[1], "01").result())
"""


def test_a_report_only_pool_draws_reports_without_torch(tmp_path):
    """Its workers neither preload nor import torch, and still draw a report (of a subject with
    no outputs here: the page with its errors section)."""
    script = tmp_path / "run.py"
    script.write_text(REPORT_ONLY_POOL)
    (tmp_path / "out" / "sub-01").mkdir(parents=True)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "(False, None)"
    assert (tmp_path / "out" / "sub-01.html").is_file()


def test_ctrl_c_reaches_neither_the_fork_server_nor_its_workers():
    """A terminal sends Ctrl-C to the whole process group: the fork server, still importing its
    preload, printed a KeyboardInterrupt traceback. SIGINT is blocked in the server (and so in
    the workers it forks) and stays unblocked in the parent, which handles it; the resource
    tracker, whose start unblocks SIGINT, runs first."""
    code = (
        "import signal\n"
        "from multiprocessing import resource_tracker\n"
        "from geomorph_bids.batch.pool import worker_pool\n"
        "with worker_pool(1, reports=True, registrations=False) as pool:\n"
        "    worker = pool.submit(signal.pthread_sigmask, signal.SIG_BLOCK, []).result()\n"
        "parent = signal.pthread_sigmask(signal.SIG_BLOCK, [])\n"
        "print(int(signal.SIGINT in worker), int(signal.SIGINT in parent), "
        "int(resource_tracker._resource_tracker._pid is not None))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONSAFEPATH": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["1", "0", "1"]


def _ended_within(pids: list[int], seconds: float) -> list[int]:
    """The processes of ``pids`` still running (not zombies) after waiting up to ``seconds``."""
    import time

    deadline = time.monotonic() + seconds
    while True:
        left = []
        for pid in pids:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                left.append(pid)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


@pytest.mark.parametrize("registrations", [True, False], ids=["registration pool", "report pool"])
def test_workers_end_when_the_main_process_is_killed(registrations, tmp_path):
    """SIGKILL of batch mode's main process (the OOM killer, `kill -9` of the job's main pid)
    left its workers waiting for work for ever (each holds both ends of the pool's pipes), ~0.3 GB
    each, and the fork server with them: 9 kills of a 30-participant run left 9 servers and 12
    workers, 5 GB, and a worker that finished its chunk committed a hemisphere the next run was
    writing too. Each worker now ends within a second of the pool's maker; the fork server and
    the resource tracker follow (nothing holds their pipes any more), the tracker without its
    2-line "leaked semaphore objects" warning."""
    code = (
        "import os, signal, time\n"
        "from multiprocessing import forkserver, resource_tracker\n"
        "from geomorph_bids.batch.pool import worker_pool\n"
        f"pool = worker_pool(2, registrations={registrations})\n"
        "workers = {pool.submit(os.getpid).result() for _ in range(4)}\n"
        "busy = [pool.submit(time.sleep, 60) for _ in range(2)]\n"
        "time.sleep(0.5)\n"
        "print(*workers, forkserver._forkserver._forkserver_pid, resource_tracker._resource_tracker._pid,"
        " flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")
    log = tmp_path / "stdout"
    with open(log, "w") as out:  # (not a pipe: the workers inherit it, and a pipe waits for them)
        proc = subprocess.run([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT, timeout=120,
                              env={**os.environ, "PYTHONSAFEPATH": "1"})
    assert proc.returncode == -9, log.read_text()[-2000:]
    pids = [int(p) for p in log.read_text().split()]
    assert len(pids) >= 3
    left = _ended_within(pids, 15)
    for pid in left:  # (clean up after a failure)
        os.kill(pid, 9)
    assert left == []
    assert "leaked semaphore" not in log.read_text()  # (the tracker's warning, in the job's log)


def test_a_registration_worker_prints_a_warning_on_the_commands_one_line(tmp_path):
    """Batch mode's workers (started by the fork server, not forked from the command) printed a feature map's
    warning (a NaN medial wall read as no data, the zero-fraction and outlier lines) in Python's own format:
    ``.../io/hemisphere.py:92: FeatureWarning: ...`` and the source line under it. Given the command's printer,
    they print ``geomorph-bids: warning: ...`` on one line, a control character escaped, as the workflow does."""
    code = (
        "import warnings\n"
        "from geomorph_bids.batch.pool import worker_pool\n"
        "from geomorph_bids.cli.messages import warning_printer\n"
        "with worker_pool(1, show_warning=warning_printer('geomorph-bids')) as pool:\n"
        "    pool.submit(warnings.warn, 'lh.sulc: holds NaN\\x1b[31m at 9 of 99 vertices').result(timeout=300)\n")
    log = tmp_path / "stderr"
    with open(log, "w") as err:  # (not a pipe: the workers inherit it)
        proc = subprocess.run([sys.executable, "-c", code], stdout=err, stderr=subprocess.STDOUT, timeout=300,
                              env={**os.environ, "PYTHONSAFEPATH": "1"})
    assert proc.returncode == 0, log.read_text()[-2000:]
    assert log.read_text().splitlines() == ["geomorph-bids: warning: lh.sulc: holds NaN\\x1b[31m at 9 of 99 vertices"]

"""What the machine lets a run use: the thread settings of the environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
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


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_a_batch_jobs_cgroup_limits_are_read_on_its_ancestors_v2_and_v1(tmp_path):
    """Only ``/sys/fs/cgroup/{memory,cpu}.max`` were read: right in a container with its own cgroup
    namespace, but a SLURM job's cgroup (v2: ``.../job_N/step_batch/...``, its limits on ``job_N``;
    v1, as on many clusters and this machine: ``memory/slurm/uid_U/job_N/...``) was never seen, so
    ``--mem-gb`` above the job's memory and the default ``--nprocs`` of a node's every CPU passed."""
    from geomorph_bids.cli.machine import _cgroup_cpu_limit, _cgroup_memory_limit

    v2, job = tmp_path / "v2", "system.slice/slurmstepd.scope/job_5"
    _tree(v2, {"cgroup.controllers": "cpu memory", f"{job}/memory.max": "2147483648", f"{job}/cpu.max": "150000 100000",
               f"{job}/step_batch/memory.max": "max", f"{job}/step_batch/cpu.max": "max 100000",
               "self": f"0::/{job}/step_batch/user/task_0\n"})
    assert _cgroup_memory_limit(v2, v2 / "self") == 2147483648 and _cgroup_cpu_limit(v2, v2 / "self") == 2
    v1, job = tmp_path / "v1", "slurm/uid_0/job_5"
    _tree(v1, {f"memory/{job}/memory.limit_in_bytes": "3221225472",
               f"memory/{job}/step_batch/memory.limit_in_bytes": "9223372036854771712",
               f"cpu,cpuacct/{job}/cpu.cfs_quota_us": "-1", f"cpu,cpuacct/{job}/cpu.cfs_period_us": "100000",
               "self": f"4:memory:/{job}/step_batch\n2:cpu,cpuacct:/{job}/step_batch\n1:name=systemd:/x\n"})
    assert _cgroup_memory_limit(v1, v1 / "self") == 3221225472 and _cgroup_cpu_limit(v1, v1 / "self") is None
    assert _cgroup_memory_limit(tmp_path / "none", tmp_path / "missing") is None


@pytest.mark.parametrize("env, expected", [
    ({}, (None, None)),
    ({"SLURM_CPUS_ON_NODE": "4"}, (None, None)),  # no job: a variable left in a shell
    ({"SLURM_JOB_ID": "7", "SLURM_CPUS_ON_NODE": "4", "SLURM_MEM_PER_NODE": "4096"}, (4, 4096 * 2 ** 20 / 1e9)),
    ({"SLURM_JOB_ID": "7", "SLURM_CPUS_PER_TASK": "2", "SLURM_CPUS_ON_NODE": "4", "SLURM_MEM_PER_CPU": "1024"},
     (2, 2048 * 2 ** 20 / 1e9)),
    ({"SLURM_JOB_ID": "7", "SLURM_CPUS_PER_TASK": "", "SLURM_CPUS_ON_NODE": "3", "SLURM_MEM_PER_NODE": "0"}, (3, None)),
])
def test_the_slurm_allocation_is_read_from_the_jobs_variables(env, expected):
    from geomorph_bids.cli.machine import slurm_allocation

    cpus, mem = slurm_allocation(env)
    assert cpus == expected[0] and mem == pytest.approx(expected[1])


def test_a_slurm_jobs_cpus_and_memory_bound_nprocs_and_mem_gb_where_nothing_else_confines_it(tmp_path):
    """A task given ``--cpus-per-task=1 --mem=1G`` on a cluster that does not confine jobs (this test
    node's ``TaskPlugin=task/none``) ran with ``--nprocs`` defaulting to every CPU of the node and took
    ``--mem-gb 64`` as given; both now follow the job (one warning line for the memory)."""
    from geomorph_bids.cli.machine import usable_cpus

    if usable_cpus({}) < 2:
        pytest.skip("needs two CPUs")
    code = ("import argparse; from geomorph_bids.cli.parser import build_parser; "
            "from geomorph_bids.cli.settings import validate_resources; "
            "a = build_parser().parse_args(['b', 'o', 'participant', '--mem-gb', '64']); validate_resources(a); "
            "print(a.nprocs, round(a.mem_gb, 2))")
    env = {**os.environ, "PYTHONPATH": str(Path.cwd()), "SLURM_JOB_ID": "9", "SLURM_CPUS_PER_TASK": "1",
           "SLURM_CPUS_ON_NODE": "1", "SLURM_MEM_PER_NODE": "1024"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.stdout.strip() == "1 1.07", done.stderr
    assert done.stderr.strip() == "geomorph-bids: warning: --mem-gb 64 is more than the 1.1 GB this process may use; using 1.1"


def test_nipypes_memory_without_mem_gb_is_90_percent_of_the_jobs_not_the_nodes(monkeypatch):
    """Without --mem-gb, MultiProc took Nipype's default, 90% of the node's memory, whatever the job
    was given; now 90% of what this process may use (here a SLURM job's --mem=2048M)."""
    import types

    from geomorph_bids.cli.nipype_config import plugin_settings

    for name, value in {"SLURM_JOB_ID": "3", "SLURM_CPUS_ON_NODE": "1", "SLURM_MEM_PER_NODE": "2048"}.items():
        monkeypatch.setenv(name, value)
    name, plugin_args = plugin_settings(types.SimpleNamespace(nprocs=1, mem_gb=None, use_plugin=None))
    assert name == "MultiProc" and plugin_args["memory_gb"] == pytest.approx(0.9 * 2048 * 2 ** 20 / 1e9, abs=1e-3)
    assert plugin_settings(types.SimpleNamespace(nprocs=1, mem_gb=1.5, use_plugin=None))[1]["memory_gb"] == 1.5


def test_an_unwritable_home_gives_matplotlib_a_private_folder_without_its_log_lines(tmp_path):
    """With HOME unwritable (a compute node's or container's read-only home) and MPLCONFIGDIR unset,
    every run (and every SLURM task's log) printed Matplotlib's ``mkdir -p failed for path
    /proc/.config/matplotlib ...`` and ``Matplotlib created a temporary cache directory ...``. The
    commands now give it a temporary folder first (removed at exit); a writable home is left alone."""
    code = ("import os, sys; from geomorph_bids.cli.machine import matplotlib_config_in_tmp as m; made = m(); "
            "import matplotlib; matplotlib.get_cachedir(); import matplotlib.pyplot; "
            "print(made, os.path.isdir(str(made)), matplotlib.get_configdir() == str(made))")
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    env.update(HOME="/proc", PYTHONPATH=str(Path.cwd()), TMPDIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    made, exists, used = done.stdout.split()
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert made.startswith(str(tmp_path / "matplotlib-")) and exists == "True" and used == "True"
    assert not list(tmp_path.iterdir())  # removed at exit
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**env, "HOME": str(home)})
    assert done.stdout.split()[0] == "None" and (home / ".config" / "matplotlib").is_dir(), done.stderr


def test_a_read_only_container_makes_its_temporary_folder_in_the_work_dir(tmp_path):
    """``docker run --read-only`` without a tmpfs on ``/tmp``, the work folder bound (``-v
    /scratch/work:/work -w /work``): no temporary folder could be made anywhere, so the image's
    ``MPLCONFIGDIR=/tmp/matplotlib`` failed (``mkdir -p failed for path /tmp/matplotlib``, a report
    without figures) and, with two participants, the reports' process pool stopped the run with
    ``error: no such file`` after the registrations. The temporary folder is now made in the work
    folder (``TMPDIR`` for the processes started), an unwritable ``MPLCONFIGDIR`` is treated as an
    unwritable home, and both are removed at exit."""
    work = Path(tempfile.mkdtemp(dir="/tmp")) / "work"  # short: the forkserver's socket path is at most 107 bytes
    work.mkdir()
    code = ("import os, sys, tempfile, multiprocessing; from pathlib import Path; "
            "from concurrent.futures import ProcessPoolExecutor; "
            "from geomorph_bids.cli.machine import matplotlib_config_in_tmp as m, temporary_folder_in as t; "
            "tempfile._candidate_tempdir_list = lambda: ['/proc']; tmp = t(Path(sys.argv[1])); made = m(); "
            "import matplotlib; matplotlib.get_cachedir(); import matplotlib.pyplot; "
            "pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('forkserver')); "
            "print(tmp, made, os.environ.get('TMPDIR') == str(tmp), matplotlib.get_configdir() == str(made), "
            "pool.submit(abs, -3).result()); pool.shutdown()")
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "TMPDIR")}
    env.update(HOME="/proc", MPLCONFIGDIR="/proc/matplotlib", PYTHONPATH=str(Path.cwd()))
    done = subprocess.run([sys.executable, "-c", code, str(work)], capture_output=True, text=True, timeout=300,
                          env=env)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    tmp, made, tmpdir, used, result = done.stdout.split()
    assert tmp.startswith(str(work / ".tmp-")) and made.startswith(tmp + "/matplotlib-")
    assert (tmpdir, used, result) == ("True", "True", "3")
    assert not list(work.iterdir())  # removed at exit
    done = subprocess.run([sys.executable, "-c", code.replace("tempfile._candidate_tempdir_list = lambda: ['/proc']; ",
                                                              ""), str(work)],
                          capture_output=True, text=True, timeout=300, env=env)  # where /tmp can be written
    assert done.returncode == 0 and done.stderr == "", done.stderr
    tmp, made = done.stdout.split()[:2]
    assert tmp == "None" and not made.startswith(str(work)) and Path(made).name.startswith("matplotlib-")
    shutil.rmtree(work.parent)


def test_the_plugin_runner_freezes_the_graph_and_leaves_a_callers_frozen_heap_frozen(monkeypatch):
    """plugin_runner's run holds the graph frozen for the garbage collector (MultiProc's gc.collect()
    every round walked it: 4 s a round with 2,000 participants) and unfreezes it afterwards; a caller
    that froze its own heap (a pre-fork server) finds it frozen still."""
    import gc

    from nipype.pipeline import plugins

    from geomorph_bids.cli.nipype_config import plugin_runner

    seen = []

    class FakePlugin:
        def __init__(self, plugin_args=None):
            self.plugin_args = plugin_args

        def run(self, graph, config, updatehash=False):
            seen.append(gc.get_freeze_count())

    monkeypatch.setattr(plugins, "FakePlugin", FakePlugin, raising=False)
    runner = plugin_runner(("Fake", {"n_procs": 1}))
    assert isinstance(runner, FakePlugin) and runner.plugin_args == {"n_procs": 1}
    try:
        assert gc.get_freeze_count() == 0
        runner.run(None, {})
        assert seen[-1] > 1000 and gc.get_freeze_count() == 0
        gc.freeze()
        mine = gc.get_freeze_count()
        runner.run(None, {})
        assert gc.get_freeze_count() >= mine > 0
    finally:
        gc.unfreeze()


def test_threads_follow_a_cpu_quota_below_the_affinity_mask(monkeypatch):
    """Twenty-first session: in a cgroup with a 1-CPU quota on this 2-CPU machine, geomorph-register
    ran 4 threads (torch 2, OpenBLAS 2; a 2-CPU container on a 64-core node: 64 each), as torch and
    OpenBLAS count the affinity mask and know nothing of a quota. OMP_NUM_THREADS now says the usable
    CPUs, unless the user set it."""
    from geomorph_bids.cli import machine

    monkeypatch.setattr(machine.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(machine, "_cgroup_cpu_limit", lambda: 2)
    env = {"OTHER": "x"}
    assert machine.threads_within_usable_cpus(env) == 2 and env == {"OTHER": "x", "OMP_NUM_THREADS": "2"}
    env = {"OMP_NUM_THREADS": "3"}
    assert machine.threads_within_usable_cpus(env) is None and env == {"OMP_NUM_THREADS": "3"}
    env = {"SLURM_JOB_ID": "5", "SLURM_CPUS_PER_TASK": "1"}  # a job on a node that does not confine it
    assert machine.threads_within_usable_cpus(env) == 1 and env["OMP_NUM_THREADS"] == "1"
    monkeypatch.setattr(machine, "_cgroup_cpu_limit", lambda: None)
    env = {}
    assert machine.threads_within_usable_cpus(env) is None and env == {}  # no quota: the libraries' own count


def test_the_commands_hold_torch_and_blas_to_a_slurm_jobs_cpus():
    """The same through each command's main, in a SLURM job of one CPU on a node that does not confine
    it (no quota, the whole affinity mask): torch and numpy's BLAS ran one thread per CPU of the node."""
    from geomorph_bids.cli.machine import usable_cpus

    if usable_cpus({}) < 2:
        pytest.skip("needs two CPUs")
    code = ("import sys; from geomorph_bids.cli import bids, register, train; "
            "m = {'bids': lambda: bids.main(['/nonexistent/b', '/nonexistent/o', 'participant']), "
            "'register': lambda: register.main(['--sphere', '/nonexistent/lh.sphere', '--feature', "
            "'sulc=/nonexistent/lh.sulc', '--out', '/nonexistent/o.surf.gii']), "
            "'train': lambda: train.main(['--out', '/nonexistent/m', '--synthetic', '2', '--init', '/nonexistent/m.pt'])}; "
            "m[sys.argv[1]](); import torch; from threadpoolctl import threadpool_info; "
            "print(torch.get_num_threads(), sorted({i['num_threads'] for i in threadpool_info() "
            "if i['user_api'] == 'blas'}))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "OPENBLAS_", "MKL_", "SLURM_"))}
    env.update(PYTHONPATH=str(Path.cwd()), SLURM_JOB_ID="9", SLURM_CPUS_PER_TASK="1")
    for command in ("bids", "register", "train"):
        done = subprocess.run([sys.executable, "-c", code, command], capture_output=True, text=True, timeout=120,
                              env=env, cwd=tempfile.gettempdir())
        assert done.stdout.split("\n")[-2:] == ["1 [1]", ""], (command, done.stdout, done.stderr)


def _address_space(gb: float):
    """A preexec_fn that sets the child's address-space limit (``ulimit -v``) to ``gb`` GB."""
    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (int(gb * 1e9), resource.RLIM_INFINITY))
    return limit


_EXAMPLE = Path(__file__).parents[2] / "examples" / "ds-geomorph-example"
_EXAMPLE_FS = _EXAMPLE / "derivatives" / "freesurfer" / "sub-01" / "surf"


@pytest.mark.parametrize("command, args", [
    ("register", ["--sphere", f"{_EXAMPLE_FS}/lh.sphere", "--feature", f"sulc={_EXAMPLE_FS}/lh.sulc", "--out",
                  "{d}/lh.surf.gii"]),
    ("bids", [str(_EXAMPLE), "{d}/o", "participant", "-w", "{d}/w", "--participant-label", "01", "--hemi", "L"]),
])
def test_an_address_space_too_small_for_torch_is_refused_up_front_on_one_line(command, args, tmp_path):
    """Twenty-first session: under ``ulimit -v`` 0.4 GB torch's import ended geomorph-register and
    geomorph-bids with a 22-line ``ImportError: libtorch_cpu.so: failed to map segment from shared
    object`` traceback; at 0.8 GB, ``error: Cannot allocate memory at .../torch/_logging`` (or
    ``std::bad_alloc``, an abort), none naming the limit. Now one line before anything is read."""
    code = f"import sys; from geomorph_bids.cli import {command}; sys.exit({command}.main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", code, *[a.format(d=tmp_path) for a in args]], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(Path.cwd())},
                          preexec_fn=_address_space(0.8))
    prog = f"geomorph-{command}"
    assert done.returncode == 1 and done.stderr.splitlines()[-1:] == [
        f"{prog}: error: the address-space limit (ulimit -v) is 0.80 GB: torch needs about 0.9 GB of address space "
        "to load and a registration more, 1.1 GB at the least (10,242 vertices; 1.3 GB at 163,842, more above): raise "
        "it (ulimit -v unlimited, or a cluster's virtual-memory limit) and run the command again"], done.stderr
    assert "Traceback" not in done.stderr and list(tmp_path.iterdir()) == []


def test_the_up_front_address_space_refusal_quotes_what_the_sphere_given_needs(tmp_path):
    """The refusal under 1.1 GB of address space said "a registration 1.1 GB (10,242 vertices) to 1.3 GB
    (163,842)" whatever the sphere: geomorph-register given a 655,362-vertex one (which needs 1.64 GB) read that
    1.3 GB would do. It comes before torch loads (which it cannot there), so geomorph-bids, whose spheres are
    found later, says the least a registration needs and that larger spheres need more; geomorph-register reads
    its sphere's header (no torch) and quotes that sphere's need."""
    import numpy as np

    sphere = tmp_path / "lh.sphere"  # a FreeSurfer header, the rest sparse: only its vertex count is read
    head = b"\xff\xff\xfe" + b"created by test\n\n" + np.array([655362, 1310720], ">i4").tobytes()
    sphere.write_bytes(head)
    with open(sphere, "r+b") as fh:
        fh.truncate(len(head) + 12 * 655362 + 12 * 1310720)
    code = "import sys; from geomorph_bids.cli import register; sys.exit(register.main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", code, "--sphere", str(sphere), "--feature",
                           f"sulc={tmp_path / 'lh.sulc'}", "--out", str(tmp_path / "o.surf.gii")], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(Path.cwd())},
                          preexec_fn=_address_space(0.8))
    assert done.returncode == 1 and done.stderr.splitlines()[-1:] == [
        "geomorph-register: error: the address-space limit (ulimit -v) is 0.80 GB: torch needs about 0.9 GB of "
        "address space to load and a registration of this 655,362-vertex sphere about 1.64 GB: raise it (ulimit -v "
        "unlimited, or a cluster's virtual-memory limit) and run the command again"], done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lh.sphere"]


def test_running_out_of_memory_in_a_registration_is_one_line_naming_the_hemisphere(tmp_path, monkeypatch, capsys):
    """Twenty-first session: a 163,842-vertex hemisphere under ``ulimit -v`` 1.23 GB (1.33 needed) ended
    geomorph-register with a 30-line ``_ArrayMemoryError`` traceback; in geomorph-bids' FAILED line it
    said ``_ArrayMemoryError: Unable to allocate ...`` and nothing of the limit. Now both say out of
    memory, the limit and what a registration needs; geomorph-register names the hemisphere and file."""
    import numpy as np

    from geomorph_bids.cli import register
    from geomorph_bids.cli.failures import readable

    def no_memory(*args, **kwargs):
        np.empty(2 ** 62, dtype=np.uint8)  # numpy's _ArrayMemoryError, whatever the machine

    monkeypatch.setattr(register, "register_files", no_memory)
    sphere = tmp_path / "lh.sphere"
    code = register.main(["--sphere", str(sphere), "--feature", f"sulc={tmp_path / 'lh.sulc'}",
                          "--out", str(tmp_path / "o.surf.gii")])
    err = capsys.readouterr().err.splitlines()
    assert code == 1 and err[-1].startswith(f"geomorph-register: error: hemi-L {sphere}: out of memory (Unable to "
                                            "allocate 4.00 EiB for an array with shape (4611686018427387904,) "
                                            "and data type uint8); ")
    assert err[-1].endswith(("0.45 GB (10,242 vertices) to 0.66 GB (163,842): give it more memory; nothing was written",
                             "1.3 GB (163,842): raise it; nothing was written"))
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    line = readable("_ArrayMemoryError: Unable to allocate 5.62 MiB for an array with shape (81920, 3, 3) and data "
                    "type float64")
    assert line.startswith("out of memory (Unable to allocate 5.62 MiB for an array with shape (81920, 3, 3) and data "
                           "type float64); ") and "163,842" in line
    assert readable("MemoryError").startswith("out of memory (MemoryError); ")


def test_an_mkl_num_threads_that_is_no_number_no_longer_holds_torch_to_one_thread():
    """Twenty-first session: ``MKL_NUM_THREADS=abc`` (torch reads it too) gave torch one thread in
    silence (2 on this machine without it); it is now dropped with one warning, as OMP_NUM_THREADS'."""
    from geomorph_bids.cli.machine import usable_cpus

    if usable_cpus({}) < 2:
        pytest.skip("needs two CPUs")
    code = ("from geomorph_bids.cli.machine import drop_unusable_thread_settings as d; d('prog'); "
            "import torch; print(torch.get_num_threads())")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_", "SLURM_"))}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**env, "MKL_NUM_THREADS": "abc", "PYTHONPATH": str(Path.cwd())})
    assert int(done.stdout) >= 2, done.stderr  # torch's own count of this machine's CPUs
    assert done.stderr.strip() == ("prog: warning: MKL_NUM_THREADS='abc' is not a number of threads (a whole number "
                                   ">= 1); ignored")


def test_running_out_of_memory_on_a_high_resolution_sphere_says_what_that_sphere_needs(tmp_path, monkeypatch, capsys):
    """Twenty-third session: a 655,362-vertex sphere (ico-8) under ``ulimit -v`` 1.54 GB ran out of memory and
    was told a registration needs '1.1 GB of it (10,242 vertices) to 1.3 GB (163,842)', less than the limit it
    had just met; it needs 1.64 GB. Now the line gives the figure of the sphere's own vertex count."""
    import numpy as np

    from geomorph_bids.cli import machine, register

    def no_memory(*args, **kwargs):
        np.empty(2 ** 62, dtype=np.uint8)

    monkeypatch.setattr(register, "register_files", no_memory)
    sphere = tmp_path / "lh.sphere"  # a FreeSurfer surface's header, the rest sparse: its vertex count is all that
    head = b"\xff\xff\xfe" + b"created by test\n\n" + np.array([655362, 1310720], ">i4").tobytes()
    sphere.write_bytes(head)  # is read, and believed only where the file has the bytes it announces
    with open(sphere, "r+b") as fh:
        fh.truncate(len(head) + 12 * 655362 + 12 * 1310720)
    for limit, ending in ((1.54, "the address-space limit (ulimit -v) is 1.54 GB; a registration of this 655,362-vertex "
                                 "sphere needs about 1.64 GB of it: raise it; nothing was written"),
                          (None, "a registration of this 655,362-vertex sphere needs about 1.15 GB: give it more memory; "
                                 "nothing was written")):
        monkeypatch.setattr(machine, "address_space_limit_gb", lambda limit=limit: limit)
        code = register.main(["--sphere", str(sphere), "--feature", f"sulc={tmp_path / 'lh.sulc'}",
                              "--out", str(tmp_path / "o.surf.gii")])
        err = capsys.readouterr().err.splitlines()
        assert code == 1 and err[-1].startswith(f"geomorph-register: error: hemi-L {sphere}: out of memory (Unable to ")
        assert err[-1].endswith(ending), err[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lh.sphere"]


#: torch's message for a CUDA allocation that did not fit (torch 2.11-2.13, one line)
CUDA_OOM = ("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 139.81 GiB of which "
            "1.12 GiB is free. Including non-PyTorch memory, this process has 138.60 GiB memory in use. Of the "
            "allocated memory 136.20 GiB is allocated by PyTorch, and 1.10 GiB is reserved by PyTorch but "
            "unallocated. If reserved but unallocated memory is large try setting "
            "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See documentation for "
            "Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)")
#: what the line says of it, and what to do
CUDA_OOM_LINE = ("out of GPU memory (CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
                 "139.81 GiB of which 1.12 GiB is free); other processes or registrations hold the GPU's memory: "
                 "free it, run fewer at once (--nprocs, --batch-size), or use --device cpu")


def test_running_out_of_gpu_memory_is_one_line_naming_the_hemisphere(tmp_path, monkeypatch, capsys):
    """Twenty-fifth session: torch's CUDA out-of-memory error is a RuntimeError, not a MemoryError: on a
    GPU shared with other processes geomorph-register ended with a traceback and torch's advice on
    PYTORCH_CUDA_ALLOC_CONF, and geomorph-bids' FAILED line carried torch's 600-character message. Now
    one line names the hemisphere and file, what was asked and free, and what to do."""
    import torch

    from geomorph_bids.cli import register
    from geomorph_bids.cli.failures import readable

    def no_gpu_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError(CUDA_OOM)

    monkeypatch.setattr(register, "register_files", no_gpu_memory)
    sphere = tmp_path / "lh.sphere"
    code = register.main(["--sphere", str(sphere), "--feature", f"sulc={tmp_path / 'lh.sulc'}",
                          "--out", str(tmp_path / "o.surf.gii")])
    err = capsys.readouterr().err.splitlines()
    assert code == 1 and err[-1] == f"geomorph-register: error: hemi-L {sphere}: {CUDA_OOM_LINE}; nothing was written"
    assert "Traceback" not in "\n".join(err) and sorted(tmp_path.iterdir()) == []
    for name in ("OutOfMemoryError", "torch.OutOfMemoryError", "torch.cuda.OutOfMemoryError"):  # a crash file's
        assert readable(f"{name}: {CUDA_OOM}") == CUDA_OOM_LINE

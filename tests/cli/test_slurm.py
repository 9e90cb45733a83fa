"""geomorph-bids under a real scheduler: ``scripts/ci_slurm.sh`` starts a single-node SLURM
(Debian's slurm-wlm 22.05: munge, slurmctld, slurmd) for this module and stops it afterwards.
The tests submit ``workflows/slurm_array.sh`` (one array task per participant, the project's
virtual environment as the runtime) and run the Nipype SLURM plugin
(``--use-plugin workflows/nipype_slurm.yml``) on a copy of the example dataset at a path with
spaces, and compare the outputs with a local run of the same copy (timings masked, as in
test_faults). Job states come from ``sacct --completion`` (jobcomp/filetxt: no slurmdbd) and
``scontrol show job``. Deselect with ``-m "not slurm"`` or ``GEOMORPH_SKIP_SLURM=1``."""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from geomorph_bids.cli import preflight as pf

from .test_faults import _mask, cli

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "workflows" / "slurm_array.sh"
CI_SLURM = REPO / "scripts" / "ci_slurm.sh"
EXAMPLE = REPO / "examples" / "ds-geomorph-example"
BROKEN = Path("derivatives/smriprep/sub-02/anat/sub-02_hemi-L_sulc.shape.gii")  # in the dataset
SAFETY_S = 900  # only so that a broken scheduler cannot hang the suite; no assertion depends on time


# ------------------------------------------------------------------------------ the scheduler

@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running single-node SLURM: SimpleNamespace(dir, env) with SLURM_CONF in env."""
    if os.environ.get("GEOMORPH_SKIP_SLURM") == "1":
        pytest.skip("GEOMORPH_SKIP_SLURM=1")
    folder = tmp_path_factory.mktemp("slurm")
    # our pid as the owner: the script's guard stops SLURM even if this process is killed
    proc = subprocess.run(["bash", str(CI_SLURM), "start", str(folder), str(os.getpid())],
                          capture_output=True, text=True, timeout=SAFETY_S)
    if proc.returncode != 0:
        pytest.fail(f"scripts/ci_slurm.sh start failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    env = dict(os.environ, SLURM_CONF=str(folder / "slurm.conf"),
               GEOMORPH_CI_SLURM=str(folder),  # marks the jobs' processes for ci_slurm.sh stop
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env.setdefault("LOGNAME", getpass.getuser())  # Nipype's SLURM plugin names its jobs from it
    for name in ("GEOMORPH_SIF", "GEOMORPH_BIDS", "GEOMORPH_LABELS", "GEOMORPH_SBATCH_ARGS"):
        env.pop(name, None)
    try:
        yield SimpleNamespace(dir=folder, env=env)
    finally:
        subprocess.run(["bash", str(CI_SLURM), "stop", str(folder)], timeout=120, check=False)
        left = [line for line in subprocess.run(["ps", "-eo", "pid,args"], capture_output=True,
                                                text=True).stdout.splitlines() if str(folder) in line]
        assert left == [], f"processes left running: {left}"


def sh(env: dict, *argv, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=SAFETY_S)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, argv))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def submitted(stdout: str) -> str:
    """The array job id the recipe printed."""
    ids = re.findall(r"^submitted array job (\d+) ", stdout, flags=re.M)
    assert len(ids) == 1, stdout
    return ids[0]


def wait_for_jobs(env: dict, *jobids: str) -> None:
    start = time.monotonic()
    while sh(env, "squeue", "-h", "-j", ",".join(jobids)).stdout.strip():
        if time.monotonic() - start > SAFETY_S:
            pytest.fail(f"jobs {jobids} still queued after {SAFETY_S} s")
        time.sleep(1)


def sacct(env: dict) -> dict[str, dict[str, str]]:
    """Finished jobs from ``sacct --completion`` (jobcomp/filetxt), by raw job id."""
    out = sh(env, "sacct", "--completion", "-X", "-P", "-n",
             "-o", "jobidraw,jobname%200,state,exitcode,elapsed").stdout  # stderr: 22.05's noise
    rows = (line.split("|") for line in out.splitlines() if line.strip())
    return {r[0]: dict(name=r[1], state=r[2], exit=r[3], elapsed=r[4]) for r in rows}


def task_states(env: dict, array_id: str) -> dict[int, tuple[str, str]]:
    """{array task index: (state, exit code)} for one array job: ``scontrol show job`` maps
    tasks to raw job ids, ``sacct --completion`` gives their final states."""
    shown = sh(env, "scontrol", "-o", "show", "job", array_id).stdout
    raw = {int(m.group(2)): m.group(1)
           for m in re.finditer(r"JobId=(\d+) ArrayJobId=\d+ ArrayTaskId=(\d+)", shown)}
    done = sacct(env)
    return {task: (done[job]["state"], done[job]["exit"]) for task, job in sorted(raw.items())}


# ------------------------------------------------------------------------------ data and reference

def masked(path: Path) -> bytes:
    """test_faults' ``_mask``, and every hemisphere's cell of a report's run-time row."""
    data = _mask(path)
    if path.suffix == ".html":
        data = re.sub(rb"(run time \(s\)</t[dh]>).*?</tr>", rb"\1</tr>", data)
    return data


def comparable(out: Path, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """sha256 of every output (timings masked), less locks, the recipe's logs and crash files."""
    return {str(p.relative_to(out)): hashlib.sha256(masked(p)).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and pf.LOCK_DIR not in p.relative_to(out).parts
            and not str(p.relative_to(out)).startswith(("logs/slurm/", "logs/crash-", *drop))}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """The example dataset copied to a path with spaces, and a local run of that copy."""
    root = tmp_path_factory.mktemp("slurm data")
    bids = root / "bids data"
    shutil.copytree(EXAMPLE, bids)
    local = root / "local out"
    proc = subprocess.run(cli(bids, local, "participant", "-w", root / "local work", "--nprocs", "2"),
                          capture_output=True, text=True, timeout=SAFETY_S)
    assert proc.returncode == 0, proc.stderr
    digests = comparable(local)
    assert len([k for k in digests if "/anat/" in k]) == 2 * 2 * 9  # 2 subjects x 2 hemispheres
    return SimpleNamespace(bids=bids, local=local, digests=digests)


def report_without_errors(path: Path) -> str:
    """A report's digest with its "Errors and warnings" section left out."""
    data = re.sub(rb'<section id="errors">.*?</section>', b"", masked(path), flags=re.S)
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------ the array recipe

def test_array_recipe_fails_one_participant_then_resubmits_only_it(slurm, dataset, tmp_path):
    """Both participants as one array (the recipe's defaults: 2 CPUs, 8G; partition and time from
    GEOMORPH_SBATCH_ARGS), submitted from another folder with $TMPDIR at a node-local path with
    spaces; sub-02's left sulc file is truncated on purpose. Its task fails alone (sacct FAILED
    1:0, the error in the task's log, no sub-02 hemi-L output); the file is restored and
    --resubmit-failed submits exactly sub-02 (this time with a login-node $TMPDIR that does not
    exist on the node); then every output equals the local run's, and a third call submits
    nothing."""
    out, scratch, cwd = tmp_path / "out dir", tmp_path / "node scratch", tmp_path / "submit here"
    scratch.mkdir()
    cwd.mkdir()
    env = dict(slurm.env, TMPDIR=str(scratch), GEOMORPH_SBATCH_ARGS="--partition=cpu --time=00:15:00")
    broken, saved = dataset.bids / BROKEN, (dataset.bids / BROKEN).read_bytes()
    broken.write_bytes(saved[:300])
    try:
        first = sh(env, "bash", RECIPE, "--submit", dataset.bids, out, cwd=cwd).stdout
        job = submitted(first)
        assert "2 participant(s)" in first and "native install" in first, first
        wait_for_jobs(env, job)
    finally:
        broken.write_bytes(saved)

    status = out / "logs" / "slurm"
    assert task_states(env, job) == {1: ("COMPLETED", "0:0"), 2: ("FAILED", "1:0")}
    log1, log2 = (status / f"geomorph_{job}_1.log").read_text(), (status / f"geomorph_{job}_2.log").read_text()
    assert "sub-01 on geomorph-ci (cpus 2, mem 8 GB, gpu 0)" in log1 and "sub-01: done" in log1, log1
    assert f"scratch {scratch}/geomorph-{job}-1." in log1, log1
    assert "FAILED sub-02 hemi-L: InputError" in log2 and str(dataset.bids / BROKEN) in log2, log2
    assert "sub-02: FAILED (exit 1)" in log2, log2
    assert (status / "sub-01.ok").is_file() and not (status / "sub-02.ok").exists()
    assert f"job {job}_2 exit 1 " in (status / "sub-02.failed").read_text()
    assert list(scratch.iterdir()) == []  # each task removed its work folder
    got = comparable(out)
    assert {k: v for k, v in got.items() if k.startswith("sub-01")} == \
        {k: v for k, v in dataset.digests.items() if k.startswith("sub-01")}
    assert not any(k.startswith("sub-02/anat/sub-02_hemi-L") for k in got)  # the failure wrote nothing

    env["TMPDIR"] = "/nonexistent/login node tmp"
    second = sh(env, "bash", RECIPE, "--resubmit-failed", dataset.bids, out, cwd=cwd).stdout
    again = submitted(second)
    assert re.search(r"^1 participant\(s\) from (.*): 02$", second, flags=re.M), second
    wait_for_jobs(env, again)
    assert task_states(env, again) == {1: ("COMPLETED", "0:0")}
    log = (status / f"geomorph_{again}_1.log").read_text()
    assert "sub-02: done" in log and f"scratch /tmp/geomorph-{again}-1." in log, log
    assert (status / "sub-02.ok").is_file() and not (status / "sub-02.failed").exists()

    # every output as in the local run; sub-02's report also lists the earlier failure (by design)
    got = comparable(out, drop=("sub-02.html",))
    assert got == {k: v for k, v in dataset.digests.items() if k != "sub-02.html"}
    assert "sub-02_hemi-L_sulc.shape.gii: GIFTI file is truncated" in (out / "sub-02.html").read_text()
    assert report_without_errors(out / "sub-02.html") == report_without_errors(dataset.local / "sub-02.html")

    third = sh(env, "bash", RECIPE, "--resubmit-failed", dataset.bids, out, cwd=cwd).stdout
    assert "nothing to submit" in third and "submitted array job" not in third, third
    assert len((status / "submitted.tsv").read_text().splitlines()) == 2


def test_resubmit_leaves_out_participants_still_queued(slurm, dataset, tmp_path):
    """A held array (nothing runs): --resubmit-failed must not submit its participants again;
    once it is cancelled, --list-unfinished lists both."""
    out = tmp_path / "out"
    env = dict(slurm.env, GEOMORPH_SBATCH_ARGS="--hold")
    job = submitted(sh(env, "bash", RECIPE, "--submit", dataset.bids, out).stdout)
    try:
        pending = sh(env, "squeue", "-h", "-r", "-j", job, "-o", "%K %T").stdout.split("\n")
        assert sorted(line for line in pending if line) == ["1 PENDING", "2 PENDING"]
        proc = sh(env, "bash", RECIPE, "--resubmit-failed", dataset.bids, out)
        assert "2 unfinished participant(s) still pending or running: not resubmitted" in proc.stderr
        assert "nothing to submit" in proc.stdout and "submitted array job" not in proc.stdout
    finally:
        sh(env, "scancel", job)
    wait_for_jobs(env, job)
    listed = sh(env, "bash", RECIPE, "--list-unfinished", dataset.bids, out).stdout
    assert listed.startswith("2 unfinished label(s) in ")
    label_file = Path(re.search(r" in (.*) \(submit with", listed).group(1))
    assert label_file.read_text().split() == ["01", "02"]


def test_more_participants_than_max_array_size_become_several_arrays(slurm, dataset, tmp_path):
    """The test cluster's MaxArraySize is 3 (indices up to 2): five labels become arrays of 2, 2
    and 1, each with its own label file, all recorded for --resubmit-failed (held: nothing runs)."""
    labels, out = tmp_path / "labels.txt", tmp_path / "out"
    labels.write_text("".join(f"sub-{k:02d}\n" for k in range(1, 6)))
    env = dict(slurm.env, GEOMORPH_LABELS=str(labels), GEOMORPH_SBATCH_ARGS="--hold")
    stdout = sh(env, "bash", RECIPE, "--submit", dataset.bids, out).stdout
    jobs = re.findall(r"^submitted array job (\d+) \(tasks 1-(\d)\)", stdout, flags=re.M)
    try:
        assert [n for _, n in jobs] == ["2", "2", "1"], stdout
        recorded = [line.split("\t") for line in (out / "logs" / "slurm" / "submitted.tsv").read_text().splitlines()]
        assert [job for job, _ in recorded] == [job for job, _ in jobs]
        assert [Path(f).read_text().split() for _, f in recorded] == [["01", "02"], ["03", "04"], ["05"]]
        queued = sh(env, "squeue", "-h", "-r", "-o", "%i", "-j", ",".join(job for job, _ in jobs)).stdout.split()
        assert len(queued) == 5
    finally:
        sh(env, "scancel", *[job for job, _ in jobs])
    wait_for_jobs(env, *[job for job, _ in jobs])


def test_gpu_allocation_cpus_and_memory_reach_geomorph_bids(slurm, dataset, tmp_path):
    """What a real allocation exposes becomes geomorph-bids options: --gres=gpu:1 (the test
    node's stand-in GPU) gives SLURM_JOB_GPUS/CUDA_VISIBLE_DEVICES and so --device cuda,
    --cpus-per-task and --mem-per-cpu give --nprocs/--omp-nthreads and --mem-gb (sbatch would
    refuse --mem-per-cpu beside a default --mem); extra options follow.
    GEOMORPH_BIDS points at a stub that prints what it was given."""
    stub = tmp_path / "bin dir" / "geomorph-bids"
    stub.parent.mkdir()
    stub.write_text('#!/bin/sh\necho "ARGS $*"\necho "CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"\n'
                    'echo "TMPDIR=$TMPDIR"\n')
    stub.chmod(0o755)
    labels = tmp_path / "labels.txt"
    labels.write_text("sub-02\n")
    out = tmp_path / "out"
    env = dict(slurm.env, GEOMORPH_BIDS=str(stub), GEOMORPH_LABELS=str(labels),
               GEOMORPH_SBATCH_ARGS="--gres=gpu:1 --cpus-per-task=1 --mem-per-cpu=3G")
    job = submitted(sh(env, "bash", RECIPE, "--submit", dataset.bids, out, "--hemi", "L").stdout)
    wait_for_jobs(env, job)
    assert task_states(env, job) == {1: ("COMPLETED", "0:0")}
    log = (out / "logs" / "slurm" / f"geomorph_{job}_1.log").read_text()
    assert "(cpus 1, mem 3 GB, gpu 1)" in log, log
    args = re.search(r"^ARGS (.*)$", log, flags=re.M).group(1)
    assert args.startswith(f"{dataset.bids} {out} participant --participant-label 02 -w ")
    assert args.endswith("--nprocs 1 --omp-nthreads 1 --mem-gb 3 --device cuda --hemi L"), args
    assert "CUDA_VISIBLE_DEVICES=0" in log, log
    assert re.search(r"^TMPDIR=.*/geomorph-" + job + r"-1\.\w+/tmp$", log, flags=re.M), log


def test_cancelled_task_cleans_its_scratch_and_is_marked(slurm, dataset, tmp_path):
    """scancel (as a time limit does) sends SIGTERM to every process of the task: the task
    records sub-<label>.failed, removes its scratch folder within SLURM's KillWait, and the
    participant is listed as unfinished. GEOMORPH_BIDS is a stub that only sleeps."""
    stub = tmp_path / "sleeper"
    stub.write_text("#!/bin/sh\necho started\nsleep 300\n")
    stub.chmod(0o755)
    labels, out, scratch = tmp_path / "labels.txt", tmp_path / "out", tmp_path / "scratch"
    labels.write_text("01\n")
    scratch.mkdir()
    env = dict(slurm.env, GEOMORPH_BIDS=str(stub), GEOMORPH_LABELS=str(labels), TMPDIR=str(scratch))
    job = submitted(sh(env, "bash", RECIPE, "--submit", dataset.bids, out).stdout)
    log = out / "logs" / "slurm" / f"geomorph_{job}_1.log"
    start = time.monotonic()
    while not (log.is_file() and "started" in log.read_text()):
        assert time.monotonic() - start < SAFETY_S, "the task never started"
        time.sleep(0.2)
    assert len(list(scratch.iterdir())) == 1
    sh(env, "scancel", job)
    wait_for_jobs(env, job)
    assert task_states(env, job)[1][0] == "CANCELLED"
    assert "terminated (SIGTERM" in (out / "logs" / "slurm" / "sub-01.failed").read_text()
    assert list(scratch.iterdir()) == []
    listed = sh(env, "bash", RECIPE, "--list-unfinished", dataset.bids, out).stdout
    assert listed.startswith("1 unfinished label(s)"), listed


def test_an_output_folder_with_a_percent_sign_and_a_task_killed_by_sigkill(slurm, dataset, tmp_path):
    """sbatch expands %-patterns in the whole --output path: an output folder named
    ``out 100%u %j`` had each task's log sent to ``out 100root <jobid>/...``, a folder that does
    not exist, so every task failed before it started (FAILED 0:53), with no log, no marker and
    nothing in the output folder; the recipe doubles the folder's '%'. A task whose geomorph-bids
    is killed with SIGKILL (the memory limit's OOM killer) said "crash files under OUT/logs",
    where there are none: its log and ``.failed`` now name the signal. GEOMORPH_BIDS is a stub
    that kills itself for participant 02, and flags 03 (exit 3: written, flagged), which was marked
    ``.failed`` and resubmitted by ``--resubmit-failed`` forever. The recipe prints the group level's sbatch line, to run
    after the array (the group level started beside the tasks misses the unfinished ones)."""
    stub = tmp_path / "stub"
    stub.write_text('#!/bin/bash\necho "ARGS $*"\ncase "$*" in *"--participant-label 02 "*) kill -9 $$ ;;\n'
                    '  *"--participant-label 03 "*) echo "FLAGGED sub-03 hemi-L: correlation" >&2; exit 3 ;; esac\n')
    stub.chmod(0o755)
    labels, out = tmp_path / "labels.txt", tmp_path / "out 100%u %j"
    labels.write_text("01\n02\n03\n")
    env = dict(slurm.env, GEOMORPH_BIDS=str(stub), GEOMORPH_LABELS=str(labels))
    printed = sh(env, "bash", RECIPE, "--submit", dataset.bids, out).stdout
    job, job3 = re.findall(r"^submitted array job (\d+) ", printed, flags=re.M)  # MaxArraySize 3: two arrays
    # the group level after both arrays, as printed (it runs once every task has ended)
    group_cmd = re.search(r"^the group level, once every task has ended: (sbatch --dependency=afterany:(\S+) .*)$",
                          printed, flags=re.M)
    assert group_cmd and group_cmd.group(2) == f"{job}:{job3}", printed
    group_job = re.search(r"Submitted batch job (\d+)", sh(env, "bash", "-c", group_cmd.group(1)).stdout).group(1)
    wait_for_jobs(env, job, job3, group_job)
    assert sacct(env)[group_job]["state"] == "COMPLETED"
    group_log = (out / "logs" / "slurm" / f"group_{group_job}.log").read_text()
    assert group_log.strip() == f"ARGS {dataset.bids} {out} group", group_log
    states = {**task_states(env, job), 3: task_states(env, job3)[1]}
    assert states[1] == ("COMPLETED", "0:0"), states
    assert states[2][0] == "FAILED" and states[2][1].startswith("137"), states
    logs = out / "logs" / "slurm"
    assert (logs / "sub-01.ok").is_file()
    assert "--participant-label 01 " in (logs / f"geomorph_{job}_1.log").read_text()
    killed = (logs / f"geomorph_{job}_2.log").read_text()
    assert "sub-02: FAILED (exit 137: geomorph-bids was killed by SIGKILL (out of memory?" in killed, killed
    assert "crash files" not in killed
    assert "exit 137 killed by SIGKILL" in (logs / "sub-02.failed").read_text()
    # written but flagged (exit 3): finished, not resubmitted (a rerun gives the same)
    assert states[3] == ("FAILED", "3:0"), states
    assert "exit 3 flagged" in (logs / "sub-03.ok").read_text() and not (logs / "sub-03.failed").exists()
    assert "sub-03: done, but FLAGGED by a quality gate (exit 3" in (logs / f"geomorph_{job3}_1.log").read_text()
    listed = sh(env, "bash", RECIPE, "--list-unfinished", dataset.bids, out).stdout
    assert listed.startswith("1 unfinished label(s)"), listed  # 02 alone


def _stub_env(tmp_path: Path, labels: Path) -> dict[str, str]:
    """The environment of a recipe run that needs no scheduler: geomorph-bids a stub that does
    nothing, the label list ``labels``, no GEOMORPH_/SLURM_ variables of this shell."""
    stub = tmp_path / "geomorph-bids"
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEOMORPH_", "SLURM_"))}
    env.update(GEOMORPH_BIDS=str(stub), GEOMORPH_LABELS=str(labels))
    return env


def _recipe(mode: str, out: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``slurm_array.sh MODE EXAMPLE OUT`` with ``env`` (:func:`_stub_env`), its output captured."""
    return subprocess.run(["bash", str(RECIPE), mode, str(EXAMPLE), str(out)], env=env, capture_output=True,
                          text=True, timeout=60)


def test_an_empty_label_list_is_no_finished_cohort(tmp_path):
    """A participants.tsv holding its header only (never filled in) made ``--submit`` print
    "nothing to submit: every participant has finished", exit 0; a missing label list was said
    three times by ``--resubmit-failed`` and left an empty ``labels-*.txt``. Needs no scheduler."""
    empty, out = tmp_path / "participants.tsv", tmp_path / "out"
    empty.write_text("participant_id\tage\n")
    env = _stub_env(tmp_path, empty)
    for mode in ("--submit", "--resubmit-failed", "--dry-run"):
        done = _recipe(mode, out, env)
        assert done.returncode == 1, (mode, done.stdout, done.stderr)
        assert f"no participant labels in {empty}: nothing submitted" in done.stderr, done.stderr
        assert "every participant has finished" not in done.stdout
    env["GEOMORPH_LABELS"] = str(tmp_path / "missing.txt")
    done = _recipe("--resubmit-failed", out, env)
    assert done.returncode == 1 and done.stderr == f"no label list: {tmp_path / 'missing.txt'} (set GEOMORPH_LABELS)\n"
    assert not list((out / "logs" / "slurm").glob("labels-*"))


def test_a_participant_listed_twice_is_submitted_once(tmp_path):
    """``sub-07`` and ``07`` (or a row repeated in participants.tsv) became two array tasks of one
    participant running at once: the second was skipped by the first's lock, so sacct showed a
    FAILED task (and ``sub-07.failed`` beside ``sub-07.ok``) for a participant that was done.
    Needs no scheduler (--dry-run)."""
    labels = tmp_path / "participants.tsv"
    labels.write_text("participant_id\tage\nsub-07\t30\n07\t30\nsub-08\t31\nsub-07\t30\n")
    env = _stub_env(tmp_path, labels)
    done = _recipe("--dry-run", tmp_path / "out", env)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^2 participant\(s\) from .*: 07 08$", done.stdout, flags=re.M), done.stdout
    assert "--array=1-2%50" in done.stdout


def test_a_dry_run_says_its_label_list_is_gone_and_where_a_submit_writes_its_own(tmp_path):
    """fix-as: ``--dry-run`` printed an sbatch line reading ``GEOMORPH_LABELS=/tmp/geomorph-labels-...``, a
    file it removed on exit, and said nothing of it: the line, pasted, submitted tasks with no labels. Now
    one line says so, and where ``--submit`` keeps its list. Needs no scheduler."""
    labels = tmp_path / "labels.txt"
    labels.write_text("01\n02\n")
    env = _stub_env(tmp_path, labels)
    done = _recipe("--dry-run", tmp_path / "out", env)
    assert done.returncode == 0, done.stderr
    listed = re.search(r"^\+ GEOMORPH_LABELS=(\S+) sbatch ", done.stdout, flags=re.M).group(1)
    assert not Path(listed).exists()
    assert done.stdout.splitlines()[-1] == (f"(dry run: nothing submitted; the label list {listed} is removed now: "
                                            f"--submit writes its own to {tmp_path / 'out'}/logs/slurm/"
                                            "labels-<time>.txt)")


def test_an_output_folder_with_a_backslash_is_refused_before_anything_is_submitted(tmp_path):
    """sbatch removes every backslash from an --output path and then expands none of its patterns:
    under ``out b\\s`` every task failed before it started (FAILED 0:53; slurmd: ``Could not open
    stdout file .../out bs/logs/slurm/geomorph_%A_%a.log``), with no log and no marker. Now one
    line before anything is created or submitted. Needs no scheduler."""
    labels, out = tmp_path / "labels.txt", tmp_path / "out b\\s"
    labels.write_text("01\n")
    env = _stub_env(tmp_path, labels)
    for mode in ("--submit", "--resubmit-failed", "--dry-run"):
        done = _recipe(mode, out, env)
        assert done.returncode == 2, (mode, done.stdout, done.stderr)
        assert done.stderr == (f"OUTPUT_DIR holds a backslash, which sbatch removes from the tasks' log paths (each task "
                               f"would fail before it starts, with no log): {out}; choose a folder without one\n")
    assert not out.exists()


# ------------------------------------------------------------------------------ Nipype's SLURM plugin

def test_nipype_slurm_plugin_matches_local(slurm, dataset, tmp_path):
    """``--use-plugin workflows/nipype_slurm.yml`` as shipped (partition cpu, 4G, 2 CPUs per
    node job): every submitted node ran as its own SLURM job and finished COMPLETED, and the
    outputs equal the local run's for that participant."""
    out = tmp_path / "out"
    before = set(sacct(slurm.env))
    proc = sh(slurm.env, *cli(dataset.bids, out, "participant", "--participant-label", "01",
                             "-w", tmp_path / "work", "--use-plugin", REPO / "workflows" / "nipype_slurm.yml"),
              check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jobs = {k: v for k, v in sacct(slurm.env).items() if k not in before}
    names = sorted(j["name"].split(".")[0] for j in jobs.values())
    # per hemisphere: load_features, register, resample (write_outputs runs in-process)
    assert names == sorted(["load_features", "register", "resample"] * 2), names
    assert {j["state"] for j in jobs.values()} == {"COMPLETED"}
    assert all(".sub_01_wf.geomorph_wf." in j["name"] for j in jobs.values())
    assert comparable(out) == {k: v for k, v in dataset.digests.items() if not k.startswith("sub-02")}

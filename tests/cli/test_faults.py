"""Faults around a geomorph-bids run: SIGKILL in the middle of a subject then a rerun, two
runs on one output folder at once, an unwritable output folder, a read-only or full work
folder. Outputs are compared byte for byte with one uninterrupted run; the only run-specific
values (the ``seconds_*`` timings in the metrics JSON, the report's "run time" cell and its
"Report built <date> in <s>" line) are masked first."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from geomorph_bids.cli import preflight as pf

from .test_bids import run

ARGS = ("--model", "rigid", "--hemi", "L", "--nprocs", "2")
N_FILES = 9  # per hemisphere: registered sphere + json, metrics, sulc + json, native sphere + json, native sulc + json
SAFETY_S = 600  # only so that a broken run cannot hang the test suite; no assertion depends on time


def cli(*argv) -> list[str]:
    return [sys.executable, "-m", "geomorph_bids.cli.bids", *[str(a) for a in argv]]


def _mask(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith("_metrics.json"):
        doc = json.loads(data)
        doc["registration"] = {k: v for k, v in doc["registration"].items() if not k.startswith("seconds")}
        return json.dumps(doc, sort_keys=True).encode()
    if path.suffix == ".html":
        data = re.sub(rb"(run time \(s\)</t[dh]><td[^>]*>)[^<]*", rb"\1", data)
        return re.sub(rb"Report built [^<]*", b"Report built", data)  # when, and in how many seconds
    return data


def normalised(root: Path) -> dict[str, str]:
    """sha256 of every output file (lock files left out), run-specific timings masked."""
    return {str(p.relative_to(root)): hashlib.sha256(_mask(p)).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and pf.LOCK_DIR not in p.parts}


def outputs(out: Path, subject: str) -> list[Path]:
    return sorted((out / f"sub-{subject}" / "anat").glob("*"))


def stamps(paths: list[Path]) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for p in paths}


def node_dir(work: Path, subject: str, node: str = "register") -> Path:
    return work / "geomorph_wf" / f"sub_{subject}_wf" / "hemi_L_wf" / node


def leftovers(out: Path) -> list[str]:
    return [str(p) for p in out.rglob("*") if p.name == ".geomorph-staging" or p.name.endswith(".tmp")
            or p.name.startswith(".geomorph-probe") or p.name.startswith("crash-")]


def wait_for(condition, proc: subprocess.Popen | None = None, what: str = "") -> None:
    """Poll ``condition`` every 5 ms (the run must not have ended meanwhile)."""
    start = time.monotonic()
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before {what}")
        if time.monotonic() - start > SAFETY_S:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.005)


@pytest.fixture(scope="module")
def reference(dataset_factory, tmp_path_factory):
    """One uninterrupted run (two subjects, left hemisphere, rigid)."""
    bids = dataset_factory("freesurfer")
    tmp = tmp_path_factory.mktemp("reference")
    code, _, err = run(bids, tmp / "out", "participant", *ARGS, "-w", tmp / "work")
    assert code == 0, err
    digests = normalised(tmp / "out")
    assert len([k for k in digests if "/anat/" in k]) == 2 * N_FILES
    return dict(bids=bids, digests=digests, out=tmp / "out")


# ------------------------------------------------------------------------------ SIGKILL

def test_sigkill_while_registering_the_second_subject_then_rerun(reference, tmp_path):
    """The run is killed (its whole process group, MultiProc workers included) while sub-02 is
    being registered and sub-01 is finished; the rerun leaves sub-01 untouched (same inode and
    mtime of every output, registration node not rerun) and ends with exactly the outputs of an
    uninterrupted run. To order things without timing, the test holds sub-02's lock (playing
    another run) until sub-01 is done; ``--lock-wait`` makes the run wait for it."""
    bids, out, work = reference["bids"], tmp_path / "out", tmp_path / "work"
    (out / pf.LOCK_DIR).mkdir(parents=True)
    held = os.open(out / pf.LOCK_DIR / "sub-02.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX)
    log = (tmp_path / "killed.log").open("w")
    proc = subprocess.Popen(cli(bids, out, "participant", *ARGS, "-w", work, "--lock-wait"),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: len(outputs(out, "01")) == N_FILES, proc, "sub-01 was finished")
        os.close(held)  # sub-02 may start now
        held = None
        started = lambda: any(node_dir(work, "02").glob("_0x*_unfinished.json"))  # noqa: E731
        wait_for(started, proc, "sub-02's registration started")
        os.killpg(proc.pid, signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
    finally:
        if held is not None:
            os.close(held)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    # killed in the middle of sub-02: its registration has no result and nothing of it is written
    assert not (node_dir(work, "02") / "result_register.pklz").exists()
    assert outputs(out, "02") == []
    sub01 = stamps(outputs(out, "01"))
    reg01 = node_dir(work, "01") / "result_register.pklz"
    reg01_stamp = (reg01.stat().st_ino, reg01.stat().st_mtime_ns)

    code, stdout, err = run(bids, out, "participant", *ARGS, "-w", work)
    assert code == 0, err
    assert stamps(outputs(out, "01")) == sub01  # finished subject: files untouched
    assert (reg01.stat().st_ino, reg01.stat().st_mtime_ns) == reg01_stamp  # and not registered again
    assert (node_dir(work, "02") / "result_register.pklz").is_file()
    assert normalised(out) == reference["digests"]  # identical to the uninterrupted run
    assert leftovers(out) == []


# ------------------------------------------------------------------------------ concurrency

def _processed(stdout: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^sub-(\w+)\s+-\s+L\s", stdout, re.M)}


@pytest.mark.slow
@pytest.mark.parametrize("wait", [False, True], ids=["skip", "lock-wait"])
def test_two_concurrent_runs_on_one_output_folder(reference, tmp_path, wait):
    """Two real processes on the same output and work folders at once. Skip mode (default):
    each participant is processed by one of them, the other skips it with one line naming the
    lock and its holder and exits 1. ``--lock-wait``: the second waits, then finds the work
    done (same work folder), both exit 0. Either way the outputs are exactly a single run's."""
    bids, out, work = reference["bids"], tmp_path / "out", tmp_path / "work"
    extra = ("--lock-wait",) if wait else ()
    procs = [subprocess.Popen(cli(bids, out, "participant", *ARGS, "-w", work, *extra), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=SAFETY_S) for p in procs]
    codes = [p.returncode for p in procs]
    processed = [_processed(stdout) for stdout, _ in results]
    for (stdout, err), code, done in zip(results, codes, processed):
        failed = [line for line in err.splitlines() if line.strip().startswith("FAILED")]
        assert all("skipped: another geomorph-bids run is processing this participant" in line
                   and "pid " in line and ".geomorph-locks" in line for line in failed), err
        assert code == (1 if failed else 0)
        assert {re.search(r"sub-(\w+)", line).group(1) for line in failed} == {"01", "02"} - done
        if wait:
            assert code == 0 and done == {"01", "02"}
    # together they did both participants (both did one only if the first had finished it
    # before the second looked at its lock)
    assert processed[0] | processed[1] == {"01", "02"}
    assert normalised(out) == reference["digests"]
    assert leftovers(out) == []


def test_a_run_that_skips_every_participant_leaves_the_methods_text_alone(reference, tmp_path):
    """Round nine: a second run with other settings (here the default warp; the outputs are
    rigid) started while another run holds every participant skips them all, and yet rewrote
    ``logs/CITATION.md`` and ``dataset_description.json`` with its own settings: the methods
    text then described a non-rigid warp no output had. Now a run that processes nobody writes
    neither."""
    bids, out = reference["bids"], tmp_path / "out"
    shutil.copytree(reference["out"], out)  # a finished --model rigid run (its locks' files included)
    shared = {p: p.read_bytes() for p in (out / "logs" / "CITATION.md", out / "dataset_description.json")}
    assert b"no non-rigid stage was run (--model rigid)" in shared[out / "logs" / "CITATION.md"]
    held = []
    try:
        for sub in ("01", "02"):  # another run processing both participants
            fd = os.open(out / pf.LOCK_DIR / f"sub-{sub}.lock", os.O_RDWR)
            fcntl.flock(fd, fcntl.LOCK_EX)
            held.append(fd)
        code, _, err = run(bids, out, "participant", "--hemi", "L", "--nprocs", "2", "-w", tmp_path / "work2")
    finally:
        for fd in held:
            os.close(fd)
    assert code == 1
    assert len([line for line in err.splitlines() if "skipped: another geomorph-bids run" in line]) == 2, err
    assert {p: p.read_bytes() for p in shared} == shared


def test_shared_files_are_written_atomically(tmp_path, monkeypatch):
    """dataset_description.json goes through a uniquely named temporary file and a rename: a
    crash in the middle of writing leaves the previous file intact."""
    from geomorph_bids.cli import descriptions

    bids = tmp_path / "bids"
    bids.mkdir()
    first = descriptions.write_dataset_description(tmp_path / "out", bids, None)
    before = first.read_bytes()

    def broken_dumps(*a, **k):
        return '{"Name": "half'  # what a writer killed half way would have produced so far

    real_replace = os.replace
    monkeypatch.setattr(descriptions.json, "dumps", broken_dumps)
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(errno.EIO, "killed")))
    with pytest.raises(OSError):
        descriptions.write_dataset_description(tmp_path / "out", bids, None)
    monkeypatch.setattr(os, "replace", real_replace)
    assert first.read_bytes() == before and json.loads(before)["DatasetType"] == "derivative"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["dataset_description.json"]


# ------------------------------------------------------------------------------ folders

def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_output_folder_that_refuses_writes_even_as_root(reference, tmp_path):
    """Works as root: a process whose file-size limit is 0 cannot write a byte anywhere (the
    kernel refuses with EFBIG, root included), so only a real probe write can notice."""
    out, work = tmp_path / "out", tmp_path / "work"

    def no_file_writes():
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    proc = subprocess.run(cli(reference["bids"], out, "participant", *ARGS, "-w", work),
                          capture_output=True, text=True, preexec_fn=no_file_writes, timeout=SAFETY_S)
    assert proc.returncode == 1
    line = _one_error_line(proc.stderr)
    assert f"{out}: cannot write to the output directory" in line and "File too large" in line
    assert not out.exists() and not work.exists()  # nothing done, nothing left


def test_a_file_size_limit_reached_while_writing_names_the_file_and_the_rerun_completes(reference, tmp_path):
    """Round nine: a file-size limit (``ulimit -f``, SIGXFSZ ignored: the write fails with EFBIG)
    that the 4 KiB probe passes but a hemisphere's registered sphere (~70 KiB here) exceeds.
    Each hemisphere fails on one line, which named no file (``file too large (the file size
    limit)``: ``write()`` gives none) and now names it; nothing partial is left; the rerun
    without the limit completes, with the outputs of an uninterrupted run."""
    out, work = tmp_path / "out", tmp_path / "work"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (32 * 1024, resource.RLIM_INFINITY))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    proc = subprocess.run(cli(reference["bids"], out, "participant", *ARGS, "-w", work, "--batch-size", "2"),
                          capture_output=True, text=True, preexec_fn=limit, timeout=SAFETY_S)
    assert proc.returncode == 1, proc.stderr
    failed = sorted(line.strip() for line in proc.stderr.splitlines() if "FAILED" in line)
    assert [line.split(":")[0] for line in failed] == ["FAILED sub-01 hemi-L", "FAILED sub-02 hemi-L"]
    for line, sub in zip(failed, ("01", "02")):
        assert re.search(rf"file too large \(the file size limit\) writing {out}/\S*sub-{sub}_hemi-L_\S+\.gii", line), line
    assert not list(out.glob("sub-*/anat/*")) and leftovers(out) == [line for line in leftovers(out) if "crash-" in line]
    code, _, err = run(reference["bids"], out, "participant", *ARGS, "-w", work, "--batch-size", "2")  # no limit
    assert code == 0, err
    digests = normalised(out)
    anat = {k: v for k, v in digests.items() if "/anat/" in k}
    assert anat == {k: v for k, v in reference["digests"].items() if "/anat/" in k}


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits (the probe-write test covers root)")
def test_output_folder_without_write_permission(reference, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        code, stdout, err = run(reference["bids"], out, "participant", *ARGS, "-w", tmp_path / "work")
    finally:
        out.chmod(0o755)
    assert code == 1 and f"{out}: the output directory is not writable" in _one_error_line(err)
    assert list(out.iterdir()) == [] and not (tmp_path / "work").exists()


def test_output_folder_without_write_permission_as_seen_by_os_access(reference, tmp_path, monkeypatch):
    """The permission check itself, runnable as root: os.access says the folder is not
    writable (what a non-root user gets for chmod 0o555, tested above when not root)."""
    out, work = tmp_path / "out", tmp_path / "work"
    out.mkdir()
    real = os.access
    monkeypatch.setattr(pf.os, "access", lambda path, mode: False if Path(path) == out else real(path, mode))
    code, stdout, err = run(reference["bids"], out, "participant", *ARGS, "-w", work)
    assert code == 1
    assert _one_error_line(err) == (f"geomorph-bids: error: {out}: the output directory is not writable "
                                    "(permission denied)")
    assert list(out.iterdir()) == [] and not work.exists() and stdout == ""


def test_read_only_work_folder(reference, tmp_path, monkeypatch):
    """The work folder's probe write fails as on a read-only filesystem (EROFS): one line
    naming the work folder, exit 1, no output folder left behind."""
    out, work = tmp_path / "out", tmp_path / "work"
    real = pf._write_probe

    def probe(folder):
        if folder == work:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(folder))
        real(folder)

    monkeypatch.setattr(pf, "_write_probe", probe)
    code, stdout, err = run(reference["bids"], out, "participant", *ARGS, "-w", work)
    assert code == 1
    assert _one_error_line(err) == (f"geomorph-bids: error: {work}: cannot write to the work directory "
                                    "(read-only filesystem)")
    assert not out.exists() and stdout == ""


def test_folders_the_container_cannot_write_say_what_to_change_in_the_run_line(tmp_path, monkeypatch):
    """Inside the image (``$GEOMORPH_CONTAINER``): ``docker run`` without ``-u`` into a host folder
    of the caller's said only ``/out: the output directory is not writable (permission denied)``,
    and with ``/out`` not bound, or ``docker run --read-only`` and the default work folder,
    ``cannot create the ... directory (permission denied / read-only filesystem)``: nothing said
    which uid the container runs as, whose the folder is, or that a folder must be bound. Outside
    the image the lines are as before."""
    out = tmp_path / "out"
    out.mkdir()
    real = os.access
    monkeypatch.setattr(pf.os, "access", lambda path, mode: False if Path(path) == out else real(path, mode))
    monkeypatch.delenv("GEOMORPH_CONTAINER", raising=False)
    with pytest.raises(pf.InputError) as native:
        pf.check_writable(out, "output")
    assert str(native.value) == f"{out}: the output directory is not writable (permission denied)"
    monkeypatch.setenv("GEOMORPH_CONTAINER", "docker://geomorph-bids:test")
    with pytest.raises(pf.InputError) as owned:
        pf.check_writable(out, "output")
    st = out.stat()
    assert str(owned.value) == (
        f"{out}: the output directory is not writable (permission denied); in this container the command runs "
        f"as uid {os.getuid()}, gid {os.getgid()} and {out} belongs to uid {st.st_uid}, gid {st.st_gid}, mode "
        f"{st.st_mode & 0o7777:04o}: run the container as the folder's owner (docker run -u \"$(id -u):$(id -g)\", "
        "with a host folder you own: Docker creates a bind's missing host folder as root) or make it writable for "
        "that uid")

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(pf.Path, "mkdir", read_only)
    work = tmp_path / "tmp" / "work"
    with pytest.raises(pf.InputError) as unbound:
        pf.check_writable(work, "work")
    assert str(unbound.value) == (
        f"{work}: cannot create the work directory (read-only filesystem); in this container only folders bound "
        f"writable can be written: bind a host folder you own there, not :ro (docker run -v /path/on/host:{work}, "
        f"apptainer run -B /path/on/host:{work}); or give the container a writable /tmp (docker run --read-only "
        "--tmpfs /tmp)")
    assert not work.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits (EROFS is simulated above)")
def test_work_folder_without_write_permission(reference, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    work.chmod(0o555)
    try:
        code, _, err = run(reference["bids"], tmp_path / "out", "participant", *ARGS, "-w", work)
    finally:
        work.chmod(0o755)
    assert code == 1 and f"{work}: the work directory is not writable" in _one_error_line(err)
    assert not (tmp_path / "out").exists()


def test_full_work_folder(reference, tmp_path, monkeypatch):
    """Less free space than the documented minimum in the work folder: refused up front."""
    out, work = tmp_path / "out", tmp_path / "work"
    real = pf._free_mb
    monkeypatch.setattr(pf, "_free_mb", lambda folder: 10.0 if folder == work else real(folder))
    code, stdout, err = run(reference["bids"], out, "participant", *ARGS, "-w", work)
    assert code == 1
    assert _one_error_line(err) == (f"geomorph-bids: error: {work}: the work directory has 10 MiB free; "
                                    f"geomorph-bids needs at least {pf.MIN_FREE_MB['work']} MiB there (disk full?)")
    assert not out.exists() and not work.exists()  # both created by the check, both removed again


def test_a_work_folder_whose_path_holds_unfinished_is_refused_up_front(dataset_factory, tmp_path):
    """-w /scratch/study_unfinished/work: Nipype renames each step's "<hash>_unfinished.json" with a
    str.replace over the whole path, so every hemisphere failed with "no such file at
    .../study/work/..." and a crash file each (found by round ten: a test folder named
    test_unfinished_...). Now one line naming the work folder before anything is made."""
    bids = dataset_factory("freesurfer")
    out, work = tmp_path / "out", tmp_path / "study_unfinished" / "work"
    code, stdout, err = run(bids, out, "participant", *ARGS, "-w", work)
    assert code == 1
    assert _one_error_line(err).startswith(f"geomorph-bids: error: {work}: the work directory's path holds "
                                           "'_unfinished'")
    assert not out.exists() and not work.exists() and stdout == ""


def _path_of_length(base: Path, length: int) -> Path:
    """A folder path under ``base`` exactly ``length`` bytes long (components under NAME_MAX)."""
    p = str(base)
    while length - len(p) - 1 > 200:
        p += "/" + "a" * 150
    return Path(p + "/" + "b" * (length - len(p) - 1))


def test_a_work_folder_too_deep_for_nipype_is_refused_up_front(dataset_factory, tmp_path):
    """A work folder under PATH_MAX whose path leaves Nipype too little room (its deepest path is
    98 bytes below it for sub-01: measured, 3997 bytes run and 3998 fail) failed every hemisphere
    with "File name too long" at a path of Nipype's. Now: with --participant-label, one line naming
    the work folder and the limit, before anything is made; without it (labels not yet known),
    one FAILED line per hemisphere saying the same, before any work."""
    from geomorph_bids.crashfiles import work_depth

    assert work_depth("01", None) == 98 and work_depth("01", "pre") == 106
    bids = dataset_factory("freesurfer", subjects=("01",))
    out, work = tmp_path / "out", _path_of_length(tmp_path, pf.path_max(tmp_path) - 98 + 1)
    code, stdout, err = run(bids, out, "participant", *ARGS, "--participant-label", "01", "-w", work)
    assert code == 1 and stdout == ""
    from geomorph_bids.cli.messages import one_line

    # the path is thousands of characters long: the error line shows it by its two ends (cli.messages.one_line)
    assert _one_error_line(err).startswith(one_line(f"geomorph-bids: error: {work}: the work directory's path is "
                                                    f"{len(str(work))} bytes long and Nipype writes paths up to 98 "
                                                    "bytes"))
    assert f"whose path is at most {pf.path_max(tmp_path) - 98} bytes" in err
    assert not out.exists() and not work.exists()
    code, stdout, err = run(bids, out, "participant", *ARGS, "-w", work)
    assert code == 1
    failed = [line for line in err.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and "sub-01 hemi-L: the work directory's path is" in failed[0], err
    assert "File name too long" not in err and not list(out.glob("sub-01/anat/*"))
    assert not (work / "geomorph_wf").exists()  # nothing ran


@pytest.mark.slow
def test_a_work_folder_at_the_limit_runs(dataset_factory, tmp_path):
    """The limit is Nipype's real one: a work folder exactly as deep as the check allows registers."""
    bids = dataset_factory("freesurfer", subjects=("01",))
    work = _path_of_length(tmp_path, pf.path_max(tmp_path) - 98)
    code, _, err = run(bids, tmp_path / "out", "participant", *ARGS, "--participant-label", "01", "-w", work)
    assert code == 0, err
    deepest = max(len(str(p)) for p in work.rglob("*")) - len(str(work))
    assert deepest + len("_unfinished") == 98  # the running step's name, renamed when it finishes


def test_disk_full_while_writing_the_probe(tmp_path, monkeypatch):
    """ENOSPC from the write itself (a disk that is full although df shows some space)."""
    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pf.os, "write", full)
    with pytest.raises(pf.InputError, match=r"cannot write to the work directory \(no space left"):
        pf.check_writable(tmp_path / "w", "work")
    assert not (tmp_path / "w").exists()  # the folder the check created is removed again


def test_lock_files_take_the_umask_as_the_outputs_do(tmp_path):
    """A lab's shared output folder (umask 002: outputs 0664, folders 0775): the lock files were
    created 0644 whatever the umask, so a second member of the group, whose run could write every
    output, stopped at once on ``.geomorph-locks/run.lock: cannot open the lock file: permission
    denied`` (seen with two uids of one group in the image, ``podman run --umask 0002``). They
    are 0666 less the umask now, as every output."""
    old = os.umask(0o002)
    try:
        with pf.RunLocks(tmp_path) as locks:
            assert locks.try_lock("sub-01")
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / pf.LOCK_DIR).iterdir()}
    assert modes == {"run.lock": 0o664, "sub-01.lock": 0o664}
    assert (tmp_path / pf.LOCK_DIR).stat().st_mode & 0o777 == 0o775


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


def test_a_group_writable_output_folder_stays_writable_for_the_group_whatever_the_umask(reference, tmp_path):
    """A lab's shared folder (setgid, group-writable) and a member whose umask is 022 (the usual
    default): the run left ``.geomorph-locks/`` 0755 with its files 0644, ``logs/`` and (group level)
    ``figures/`` 0755, and so did the output folder it created; every other member's run then stopped
    on ``run.lock: cannot open the lock file: permission denied``, their group level on
    ``figures/``. Now those are writable for the group as the folder they are in; each participant's
    own folders and files keep the member's umask (a colleague may read them, not replace them)."""
    lab = tmp_path / "lab"
    lab.mkdir()
    lab.chmod(0o2775)
    out = lab / "derivatives" / "geomorph"
    old = os.umask(0o022)
    try:
        code, _, err = run(reference["bids"], out, "participant", *ARGS, "--participant-label", "01",
                           "-w", tmp_path / "work")
        assert code == 0, err
        code, _, err = run(reference["bids"], out, "group")
        assert code == 0, err
    finally:
        os.umask(old)
    shared = {str(p.relative_to(lab)): _mode(p)
              for p in (lab / "derivatives", out, out / pf.LOCK_DIR, out / "logs", out / "figures")}
    assert shared == dict.fromkeys(shared, 0o2775)
    locks = {p.name: _mode(p) for p in (out / pf.LOCK_DIR).iterdir()}
    assert locks == dict.fromkeys(["citation.lock", "reports.lock", "run.lock", "sub-01.lock"], 0o664)
    assert (_mode(out / "sub-01"), _mode(out / "sub-01" / "anat")) == (0o2755, 0o2755)
    assert {_mode(p) for p in (out / "sub-01" / "anat").iterdir()} == {0o644}
    assert _mode(out / "logs" / "CITATION.md") == 0o644


def _as_member(uid: int, gid: int, work) -> str:
    """``work()`` in a forked child that runs as ``uid`` (group ``gid`` only, umask 022): permission
    bits are enforced there. Returns '' or what it raised, on one line."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        code = 0
        try:
            os.close(read)
            os.setgroups([gid])
            os.setgid(gid)
            os.setuid(uid)
            os.umask(0o022)
            work()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            os.write(write, f"{type(exc).__name__}: {exc}".encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as fh:
        said = fh.read()
    os.waitpid(pid, 0)
    return said


def test_two_members_of_a_group_with_umask_022_take_turns_in_one_output_folder(tmp_path):
    """Two real uids of one group (forked from root: the machine runs as root, and root ignores
    permission bits), each with umask 022, in a setgid group folder: the second member's run
    stopped at once on the first's ``run.lock`` (0644). Now it takes its own participant's lock,
    stages and writes in the shared folders."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to run as two other users")
    import tempfile

    from geomorph_bids.results.writer import staging

    lab = Path(tempfile.mkdtemp(prefix="geomorph-lab-"))  # pytest's own folders are 0700
    gid = 4300
    try:
        os.chown(lab, 0, gid)
        lab.chmod(0o2775)
        out = lab / "out"

        def member(subject: str):
            def work():
                pf.check_writable(out, "output")
                with pf.RunLocks(out) as locks:
                    assert locks.try_lock(f"sub-{subject}")
                    with pf.folder_lock(out, "citation"), staging(out) as stage:
                        (stage / "x").write_bytes(b"staged")
            return work

        assert _as_member(4301, gid, member("01")) == ""
        assert _as_member(4302, gid, member("02")) == ""
        assert {p.name: (p.stat().st_uid, _mode(p)) for p in (out / pf.LOCK_DIR).iterdir()} == {
            "run.lock": (4301, 0o664), "sub-01.lock": (4301, 0o664), "citation.lock": (4301, 0o664),
            "sub-02.lock": (4302, 0o664)}
    finally:
        shutil.rmtree(lab)


def test_a_folder_of_another_member_that_refuses_the_run_says_whose_it_is(tmp_path, monkeypatch):
    """``the output directory is not writable (permission denied)`` / ``cannot open the lock file:
    permission denied`` in a lab's shared folder said nothing of whose the folder or lock is, nor
    what would help. Now: its owner, group and mode, this run's user, and the chmod its owner can
    run. (This process plays uid 4242; the folder is root's.)"""
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o2755)
    real = os.access
    monkeypatch.setattr(pf.os, "access", lambda path, mode: False if Path(path) == out else real(path, mode))
    monkeypatch.setattr(pf.os, "geteuid", lambda: 4242)
    monkeypatch.delenv("GEOMORPH_CONTAINER", raising=False)
    with pytest.raises(pf.InputError) as refused:
        pf.check_writable(out, "output")
    owner = pf.owner_words(out)
    assert owner.startswith(f"{pf.user_words(os.getuid())}, group ") and owner.endswith(", mode 2755")
    assert str(refused.value) == (
        f"{out}: the output directory is not writable (permission denied); {out} belongs to {owner}, and this run "
        f"is uid 4242: its owner can make it writable for the group (chmod -R g+w {out}), or use a folder of "
        "your own")

    monkeypatch.setattr(pf.os, "getgroups", lambda: [])
    monkeypatch.setattr(pf.os, "getegid", lambda: out.stat().st_gid + 1)  # a group this user is not in
    with pytest.raises(pf.InputError) as private:
        pf.check_writable(out, "output")
    assert str(private.value).endswith(f"{out} belongs to {owner}, and this run is uid 4242: its group is none of this "
                                       "user's: use a folder of your own")
    monkeypatch.undo()
    monkeypatch.setattr(pf.os, "geteuid", lambda: 4242)
    monkeypatch.delenv("GEOMORPH_CONTAINER", raising=False)

    lock = out / pf.LOCK_DIR / "run.lock"
    lock.parent.mkdir()
    lock.write_text("")
    lock.chmod(0o644)
    real_open = os.open

    def refuse(path, flags, *args):
        if Path(path) == lock and flags & os.O_RDWR:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(pf.os, "open", refuse)
    with pytest.raises(pf.InputError) as locked:
        pf.RunLocks(out).__enter__()
    assert str(locked.value) == (
        f"{lock}: cannot open the lock file: permission denied; {lock} belongs to {pf.owner_words(lock)}, and this "
        f"run is uid 4242: its owner can make it writable for the group (chmod -R g+w {lock}), or use a folder of "
        "your own")


def test_locks_are_released_when_the_holder_dies(tmp_path):
    """A lock held by a process killed with SIGKILL is free again: no stale locks."""
    code = ("import sys, time; from pathlib import Path; from geomorph_bids.cli.preflight import RunLocks;"
            "l = RunLocks(Path(sys.argv[1])).__enter__(); assert l.try_lock('sub-01');"
            "print('held', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pf.RunLocks(tmp_path) as mine:
            assert not mine.try_lock("sub-01")
            assert f"pid {proc.pid} " in mine.holder("sub-01")
            assert not mine.when_alone(lambda: None)  # another run is active
            proc.kill()
            proc.wait()
            assert mine.try_lock("sub-01")
            assert f"pid {os.getpid()} " in mine.holder("sub-01")
            assert mine.when_alone(lambda: None)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_participant_whose_lock_is_probed_at_that_moment_is_not_skipped(tmp_path):
    """`--reports-only` asks whether a participant run holds a participant's lock with a
    non-blocking lock taken and given back at once (:func:`participant_lock_holder`): a participant
    run taking that lock in that instant found it held and skipped the participant ("another
    geomorph-bids run is processing this participant", exit 1), though no run was. Now a lock found
    held is tried once more after a short pause: only a lock still held is another run's."""
    import threading
    from types import SimpleNamespace

    job = SimpleNamespace(subject="01", session=None, inputs=SimpleNamespace(hemis={"L": None, "R": None}))
    with pf.RunLocks(tmp_path) as locks:
        probe = os.open(locks.path("sub-01"), os.O_RDONLY | os.O_CREAT, 0o666)
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a probe, in the instant the run takes the lock
        threading.Timer(0.02, os.close, (probe,)).start()
        mine, skipped, later = pf.lock_participants(locks, [job], wait=False)
        assert mine == [job] and skipped == [] and later == [] and locks.holds("sub-01")
        assert pf.participant_lock_holder(tmp_path, "01") != ""  # held: the probe leaves it held
        holder = pf.participant_lock_holder(tmp_path, "01")
        assert holder == locks.holder("sub-01") and holder.startswith(f"pid {os.getpid()} on ")
        with pf.RunLocks(tmp_path) as other:  # a lock that stays held is still another run's
            mine, skipped, _ = pf.lock_participants(other, [job], wait=False)
            assert mine == [] and len(skipped) == 1 and "another geomorph-bids run is processing" in skipped[0].reason
    assert pf.participant_lock_holder(tmp_path, "01") == ""
    assert pf.participant_lock_holder(tmp_path / "none", "01") == "" and not (tmp_path / "none").exists()


@pytest.mark.slow
def test_disk_full_during_a_registration(reference, tmp_path, monkeypatch):
    """The work disk fills while sub-02 is registered (its result write fails with ENOSPC; the
    in-process Linear plugin lets the test inject it): sub-02 fails on one line naming the file
    and the error, leaves no outputs; sub-01 is complete; exit 1. The rerun, with space again,
    completes sub-02 without redoing sub-01."""
    from geomorph_bids.interfaces import registration

    out, work = tmp_path / "out", tmp_path / "work"
    plugin = tmp_path / "plugin.yml"
    plugin.write_text("plugin: Linear\n")
    real = registration.write_registration

    def full_for_sub02(folder, result, hemi, record):
        if "sub_02_wf" in str(folder):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(folder) / "registration.json"))
        return real(folder, result, hemi, record)

    monkeypatch.setattr(registration, "write_registration", full_for_sub02)
    code, _, err = run(reference["bids"], out, "participant", *ARGS, "-w", work, "--use-plugin", plugin)
    assert code == 1
    failed = [line for line in err.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and "sub-02 hemi-L:" in failed[0]
    assert "no space left on device" in failed[0].lower() and "registration.json" in failed[0]
    assert outputs(out, "02") == [] and len(outputs(out, "01")) == N_FILES
    sub01 = stamps(outputs(out, "01"))
    monkeypatch.setattr(registration, "write_registration", real)
    code, _, err = run(reference["bids"], out, "participant", *ARGS, "-w", work, "--use-plugin", plugin)
    assert code == 0, err
    assert stamps(outputs(out, "01")) == sub01
    # the same outputs as the uninterrupted run, except the first run's crash file and sub-02's
    # report, which lists that crash file (by design: the report shows the subject's crashes)
    after = {k: v for k, v in normalised(out).items() if not k.startswith("logs/crash-") and k != "sub-02.html"}
    assert after == {k: v for k, v in reference["digests"].items() if k != "sub-02.html"}


def test_a_cohort_runs_as_consecutive_graphs_and_a_crash_stops_only_its_participant(reference, tmp_path,
                                                                                    monkeypatch):
    """Workflow mode runs a cohort as consecutive Nipype graphs of ``workflow_chunk`` participants
    (one graph of 2,000 participants took 27 s to build, 0.7 GB, and 4 s of ``gc.collect`` per
    scheduling round). Here chunks of one: two graphs, and a crash in the first one (sub-01's
    result write) stops neither the second nor the summary: sub-02's outputs are the uninterrupted
    run's, sub-01 fails on one line, exit 1; the rerun completes sub-01 without redoing sub-02.
    The graph is held frozen for the garbage collector while it runs, and released after."""
    import gc

    from geomorph_bids.cli import bids
    from geomorph_bids.interfaces import registration
    from geomorph_bids.workflows import base

    out, work = tmp_path / "out", tmp_path / "work"
    plugin = tmp_path / "plugin.yml"
    plugin.write_text("plugin: Linear\n")
    real, real_wf = registration.write_registration, base.init_geomorph_wf
    graphs, frozen = [], []

    def full_for_sub01(folder, result, hemi, record):
        frozen.append(gc.get_freeze_count())
        if "sub_01_wf" in str(folder):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(folder) / "registration.json"))
        return real(folder, result, hemi, record)

    def counted(jobs, config):
        graphs.append([j.subject for j in jobs])
        return real_wf(jobs, config)

    monkeypatch.setattr(bids, "workflow_chunk", lambda nprocs: 1)
    monkeypatch.setattr(base, "init_geomorph_wf", counted)
    monkeypatch.setattr("geomorph_bids.workflows.init_geomorph_wf", counted)
    monkeypatch.setattr(registration, "write_registration", full_for_sub01)
    code, stdout, err = run(reference["bids"], out, "participant", *ARGS, "-w", work, "--use-plugin", plugin)
    assert code == 1
    assert graphs == [["01"], ["02"]]
    # one progress line per graph (Nipype itself is silent until the summary)
    assert [line for line in stdout.splitlines() if line.startswith("workflow: ")] == [
        "workflow: graph 1 of 2: subject/session(s) 1-1 of 2 (sub-01)",
        "workflow: graph 2 of 2: subject/session(s) 2-2 of 2 (sub-02)"]
    assert min(frozen) > 10_000 and gc.get_freeze_count() == 0  # the graph was frozen, and is no more
    failed = [line for line in err.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and "sub-01 hemi-L:" in failed[0]
    assert outputs(out, "01") == [] and len(outputs(out, "02")) == N_FILES
    assert {k: v for k, v in normalised(out).items() if k.startswith("sub-02/")} == \
        {k: v for k, v in reference["digests"].items() if k.startswith("sub-02/")}
    sub02 = stamps(outputs(out, "02"))
    monkeypatch.setattr(registration, "write_registration", real)
    code, _, err = run(reference["bids"], out, "participant", *ARGS, "-w", work, "--use-plugin", plugin)
    assert code == 0, err
    assert stamps(outputs(out, "02")) == sub02 and len(outputs(out, "01")) == N_FILES


def test_stop_on_first_crash_in_a_chunk_names_the_participants_it_left_undone(reference, tmp_path, monkeypatch):
    """``--stop-on-first-crash`` with a cohort in chunks: sub-01's crash ends the run, so the
    next graph (sub-02) never starts; sub-02 fails on a short line saying why and what to do,
    not on a list of the nine files it lacks (one such line per hemisphere of every later
    chunk: hundreds of lines in a cohort)."""
    from geomorph_bids.cli import bids
    from geomorph_bids.interfaces import registration

    out, work = tmp_path / "out", tmp_path / "work"
    real = registration.write_registration

    def full_for_sub01(folder, result, hemi, record):
        if "sub_01_wf" in str(folder):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(folder) / "registration.json"))
        return real(folder, result, hemi, record)

    monkeypatch.setattr(bids, "workflow_chunk", lambda nprocs: 1)
    monkeypatch.setattr(registration, "write_registration", full_for_sub01)
    code, stdout, err = run(reference["bids"], out, "participant", *ARGS, "-w", work, "--stop-on-first-crash")
    assert code == 1
    assert "graph 2 of 2" not in stdout
    failed = [line for line in err.splitlines() if "FAILED" in line]
    assert len(failed) == 2 and "sub-01 hemi-L:" in failed[0] and "no space left" in failed[0]
    assert failed[1] == ("  FAILED sub-02 hemi-L: not finished: --stop-on-first-crash ended the run at the first "
                         "failure; rerun without it (or once that one is fixed) to do the rest")
    assert outputs(out, "01") == outputs(out, "02") == []
    # with --cifti-output the undone subject's missing CIFTI file said it instead, naming both files
    shutil.rmtree(work)
    code, _, err = run(reference["bids"], out, "participant", *ARGS, "--hemi", "L", "R", "--cifti-output",
                       "-w", work, "--stop-on-first-crash")
    failed = [line for line in err.splitlines() if "FAILED" in line]
    assert code == 1, err
    assert [line for line in failed if "sub-02" in line] == [
        "  FAILED sub-02 hemi-L,R: not finished: --stop-on-first-crash ended the run at the first failure; rerun "
        "without it (or once that one is fixed) to do the rest"], err


def test_stop_on_first_crash_leaves_no_worker_running_after_the_summary(reference, tmp_path, monkeypatch):
    """``--stop-on-first-crash``: Nipype raises at the first failed node (sub-01's register) and
    leaves its process pool as it is, so sub-02's register, in flight in the other worker, went
    on after the summary had called sub-02 not finished and the locks were released (its result
    appeared seconds later). The run now stops its workers before it looks at the outputs."""
    from geomorph_bids.interfaces import registration

    out, work = tmp_path / "out", tmp_path / "work"
    real = registration.write_registration
    flag = tmp_path / "sub-02-registering"

    def fail_01_slow_02(folder, result, hemi, record):
        if "sub_01_wf" in str(folder):
            while not flag.exists():  # sub-02's register is in flight when sub-01 fails
                time.sleep(0.01)
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(Path(folder) / "registration.json"))
        flag.touch()
        time.sleep(3)
        return real(folder, result, hemi, record)

    monkeypatch.setattr(registration, "write_registration", fail_01_slow_02)
    code, _, err = run(reference["bids"], out, "participant", *ARGS, "-w", work, "--stop-on-first-crash")
    assert code == 1
    assert [line for line in err.splitlines() if "FAILED" in line][1].startswith("  FAILED sub-02 hemi-L: not finished")
    time.sleep(4)  # what a worker left running would have finished by now
    assert not list(node_dir(work, "02").glob("result_*.pklz"))
    assert outputs(out, "02") == []


def test_a_stop_between_chunks_leaves_the_first_whole_and_no_staging_folder(reference, tmp_path, monkeypatch):
    """SIGTERM once the first graph (sub-01) has written its outputs and the second is being
    built: exit 143 and one line; sub-01 is whole and no hidden ``.geomorph-staging/`` is left in
    the derivatives (the first graph's sinks made it; only a later run's summary removed it);
    the rerun reuses sub-01 and does sub-02."""
    import signal as signals

    from geomorph_bids.cli import bids
    from geomorph_bids.cli.interrupts import Interrupted
    from geomorph_bids.results.writer import STAGING_DIR
    from geomorph_bids.workflows import base

    out, work = tmp_path / "out", tmp_path / "work"
    real_wf = base.init_geomorph_wf

    def stopped_at_sub02(jobs, config):
        if jobs[0].subject == "02":
            raise Interrupted(signals.SIGTERM)
        return real_wf(jobs, config)

    monkeypatch.setattr(bids, "workflow_chunk", lambda nprocs: 1)
    monkeypatch.setattr("geomorph_bids.workflows.init_geomorph_wf", stopped_at_sub02)
    code, _, err = run(reference["bids"], out, "participant", *ARGS, "-w", work)
    assert code == 143
    assert [line for line in err.splitlines() if line.strip()][0].startswith("geomorph-bids: interrupted by SIGTERM")
    assert len(outputs(out, "01")) == N_FILES and outputs(out, "02") == []
    assert not (out / STAGING_DIR).exists() and leftovers(out) == []
    sub01 = stamps(outputs(out, "01"))
    monkeypatch.setattr("geomorph_bids.workflows.init_geomorph_wf", real_wf)
    code, _, err = run(reference["bids"], out, "participant", *ARGS, "-w", work)
    assert code == 0, err
    assert stamps(outputs(out, "01")) == sub01 and normalised(out) == reference["digests"]


def test_workflow_chunks_grow_with_the_processes():
    from geomorph_bids.cli.bids import workflow_chunk

    assert [workflow_chunk(n) for n in (0, 1, 2, 4, 8, 64)] == [64, 64, 64, 64, 128, 1024]


# ------------------------------------------------------------------------------ polite kills

def _session_processes(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid`` (the run was started in its own session)."""
    out = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if fields[0] != "Z" and int(fields[3]) == sid:  # state, ppid, pgrp, session
            out.append(int(entry.name))
    return out


@pytest.mark.parametrize("sig", [
    signal.SIGTERM,
    pytest.param(signal.SIGINT, marks=pytest.mark.slow),
    pytest.param(signal.SIGHUP, marks=pytest.mark.slow),
], ids=lambda s: s.name)
def test_polite_kill_stops_the_whole_tree_releases_the_locks_then_rerun(reference, tmp_path, sig):
    """SIGTERM or SIGHUP to the main process alone (a scheduler, a closed terminal), SIGINT to the
    whole process group (Ctrl-C in a terminal) while sub-01 is being registered: the run ends
    with 128 + N and one line, no process of it is left (MultiProc workers included), the
    participant locks are free, no hemisphere is half written; the rerun exits 0 with exactly
    the outputs of an uninterrupted run."""
    bids, out, work = reference["bids"], tmp_path / "out", tmp_path / "work"
    proc = subprocess.Popen(cli(bids, out, "participant", *ARGS, "-w", work),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        def started() -> bool:
            return any(p for s in ("01", "02") for p in node_dir(work, s).glob("_0x*_unfinished.json"))
        wait_for(started, proc, "a registration started")
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=SAFETY_S)
        seconds = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    print(f"{sig.name}: ended in {seconds:.2f} s")  # the figure in docs/reliability.md
    assert proc.returncode == 128 + sig, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"geomorph-bids: interrupted by {sig.name}"), err
    assert _session_processes(proc.pid) == []  # no worker left behind
    for subject in ("01", "02"):
        lock = out / pf.LOCK_DIR / f"sub-{subject}.lock"
        if lock.exists():
            fd = os.open(lock, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: raises BlockingIOError if not
            finally:
                os.close(fd)
        assert len(outputs(out, subject)) in (0, N_FILES)
    code, _, err = run(bids, out, "participant", *ARGS, "-w", work)
    assert code == 0, err
    assert normalised(out) == reference["digests"]
    assert leftovers(out) == []


def test_stopping_the_children_spares_the_resource_tracker():
    """``stop_children`` stops the workers but not multiprocessing's resource tracker: it ignores
    SIGTERM, so it was killed after the whole grace, and its successor printed a KeyError traceback
    for each semaphore it had not seen. Left alone it ends with the main process."""
    code = (
        "import multiprocessing, time\n"
        "from multiprocessing import resource_tracker\n"
        "from geomorph_bids.cli.interrupts import pid_alive, stop_children\n"
        "resource_tracker.ensure_running()\n"
        "tracker = resource_tracker._resource_tracker._pid\n"
        "worker = multiprocessing.get_context('fork').Process(target=time.sleep, args=(60,))\n"
        "worker.start()\n"
        "t = time.monotonic()\n"
        "n = stop_children(grace_s=5.0)\n"
        "print(n, int(pid_alive(tracker)), int(worker.is_alive()), int(time.monotonic() - t < 2.0))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["1", "1", "0", "1"]


def test_an_output_folder_on_a_read_only_mount_is_said_to_be_read_only_not_a_permission(tmp_path, monkeypatch):
    """An existing output folder on a read-only mount (``mount -o ro``, ``docker run -v /data/out:/out:ro``
    for the group level or ``--reports-only``) said ``the output directory is not writable (permission
    denied)``, and in the image told the user to run the container as the folder's owner: no owner or
    mode helps a read-only mount. Now it says ``read-only filesystem`` and, in the image, to bind it
    writable; a folder of another owner still says ``permission denied``."""
    out = tmp_path / "out"
    out.mkdir()
    real_access, real_statvfs = os.access, os.statvfs
    monkeypatch.setattr(pf.os, "access", lambda path, mode: False if Path(path) == out else real_access(path, mode))

    class ReadOnly:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(pf.os, "statvfs", lambda path: ReadOnly() if Path(path) == out else real_statvfs(path))
    monkeypatch.delenv("GEOMORPH_CONTAINER", raising=False)
    with pytest.raises(pf.InputError) as native:
        pf.check_writable(out, "output")
    assert str(native.value) == f"{out}: the output directory is not writable (read-only filesystem)"
    monkeypatch.setenv("GEOMORPH_CONTAINER", "docker://geomorph-bids:test")
    with pytest.raises(pf.InputError) as image:
        pf.check_writable(out, "output")
    assert str(image.value) == (
        f"{out}: the output directory is not writable (read-only filesystem); in this container only folders bound "
        f"writable can be written: bind a host folder you own there, not :ro (docker run -v /path/on/host:{out}, "
        f"apptainer run -B /path/on/host:{out})")


def test_runs_waiting_for_each_others_participants_never_wait_in_a_circle(tmp_path, capsys):
    """Three `--lock-wait` runs started at once with overlapping labels (A: 01 02, B: 02 03,
    C: 01 03, a SLURM array's tasks written by hand): each took every free lock, so A could hold
    sub-01 and wait for sub-02, B hold sub-02 and wait for sub-03, C hold sub-03 and wait for
    sub-01; each holds its locks until it ends, so all three waited for ever. Now a waiting run
    takes locks in sorted order up to the first that another holds and defers the rest: it waits
    only for locks above every one it holds, so no circle can form."""
    from types import SimpleNamespace

    def jobs(*labels):
        return [SimpleNamespace(subject=s, session=None, inputs=SimpleNamespace(hemis={"L": None})) for s in labels]

    a, b, c = pf.RunLocks(tmp_path), pf.RunLocks(tmp_path), pf.RunLocks(tmp_path)
    with a, b, c:
        assert b.try_lock("sub-02")  # B was first to sub-02
        mine, skipped, later = pf.lock_participants(a, jobs("01", "02", "03"), wait=True)
        assert [j.subject for j in mine] == ["01"] and skipped == []
        assert [j.subject for j in later] == ["02", "03"]
        assert a.holds("sub-01") and not a.holds("sub-03")  # free, but above the one A waits for
        out = capsys.readouterr().out
        assert "sub-02: another geomorph-bids run is processing it (pid " in out
        assert "so will the 1 participant(s) after it (sub-03), whose locks are taken in order after it" in out
        # C can still take sub-03 and wait for sub-01: no one waits for a lock below one it holds
        mine, _, later = pf.lock_participants(c, jobs("01", "03"), wait=True)
        assert mine == [] and [j.subject for j in later] == ["01", "03"] and not c.holds("sub-03")
        # without --lock-wait every free lock is taken at once, as before
        mine, skipped, _ = pf.lock_participants(c, jobs("03", "04"), wait=False)
        assert [j.subject for j in mine] == ["03", "04"] and skipped == []


def test_runs_into_other_output_folders_sharing_a_work_folder_take_turns_on_a_participant(tmp_path, capsys):
    """Two workflow-mode runs of sub-02 at once into other output folders (fsLR and fsaverage) with
    one `-w`: the locks were the output folder's, so both ran; their common step (`load_features`)
    ran twice at once in one cache folder: one run failed (`no such file at WORK/.../load_features/
    _0x..._unfinished.json`, exit 1) or **hung for ever** (Nipype's pool callback raised
    `FileNotFoundError: .../result_load_features.pklz`; 1 and 1 of 3 real tries). Now a
    participant's lock is taken in the work folder too (after the output folder's, released
    again when that one is held): the second skips it on the usual line naming the work folder's
    lock, or waits for it with --lock-wait."""
    from types import SimpleNamespace

    job = SimpleNamespace(subject="02", session=None, inputs=SimpleNamespace(hemis={"L": None, "R": None}))
    work = tmp_path / "work"
    with pf.participant_locks(tmp_path / "fsLR", work) as first, \
            pf.participant_locks(tmp_path / "fsaverage", work) as second:
        mine, skipped, _ = pf.lock_participants(first, [job], wait=False)
        assert mine == [job] and first.holds("sub-02")
        mine, skipped, _ = pf.lock_participants(second, [job], wait=False)
        assert mine == [] and len(skipped) == 1 and not second.holds("sub-02")
        reason = skipped[0].reason
        assert reason.startswith("skipped: another geomorph-bids run is processing this participant (pid ")
        assert f"lock {work / pf.LOCK_DIR / 'sub-02.lock'})" in reason
        # the second run's output-folder lock was given back: a third run into that folder is not held up
        with pf.RunLocks(tmp_path / "fsaverage") as third:
            assert third.try_lock("sub-02")
        mine, _, later = pf.lock_participants(second, [job], wait=True)
        assert mine == [] and later == [job] and "processing it (pid " in capsys.readouterr().out
    with pf.participant_locks(tmp_path / "fsaverage", None) as alone:  # batch mode: no work-folder lock
        assert alone.try_lock("sub-02") and alone.path("sub-02") == tmp_path / "fsaverage" / pf.LOCK_DIR / "sub-02.lock"

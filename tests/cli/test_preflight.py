"""Preflight and the run locks on network and FUSE file systems: NFS without its lock service
(flock: ENOLCK), Lustre without ``-o flock`` (ENOSYS), NFS's flock emulation on a descriptor open
for reading (EBADF), s3fs/gcsfuse (fsync: EINVAL), SMB (no hard links, chmod refused), a quota
(EDQUOT). None can be mounted here: each is simulated at the OS-call boundary, in this process
(monkeypatch) or, for whole runs, in the command's own process (a ``sitecustomize`` on its
``PYTHONPATH``, so that Nipype's and batch mode's workers see the same file system)."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from geomorph_bids.cli import preflight
from geomorph_bids.cli.preflight import (LOCK_DIR, RunLocks, check_writable, folder_lock, participant_lock_holder,
                                         participant_runs_active)
from geomorph_bids.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
NO_LOCKS = "ENOLCK: No locks available"


def _failing(code: int = errno.ENOLCK):
    """A stand-in for an OS call that fails with ``code`` (flock, fsync, write)."""
    def call(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    return call


def _ended_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------------------------ preflight

@pytest.mark.parametrize("code", [errno.EINVAL, errno.EOPNOTSUPP], ids=["EINVAL", "EOPNOTSUPP"])
def test_an_output_folder_whose_file_system_does_no_fsync_is_written_to(tmp_path, monkeypatch, code):
    """s3fs and gcsfuse answer fsync with EINVAL or ENOTSUP: the probe refused the output folder,
    `error: OUT: cannot write to the output directory (Invalid argument)`, before any work."""
    monkeypatch.setattr(os, "fsync", _failing(code))
    assert check_writable(tmp_path / "out", "output") is True
    assert os.listdir(tmp_path / "out") == []  # the probe removed


def test_a_quota_used_up_is_named_as_a_quota_not_as_a_full_disk(tmp_path, monkeypatch):
    """EDQUOT said `no space left (Disk quota exceeded)`: `df` then shows free space. The disk may
    have room; the user's quota has none."""
    monkeypatch.setattr(os, "write", _failing(errno.EDQUOT))
    with pytest.raises(InputError) as caught:
        check_writable(tmp_path / "out", "output")
    assert str(caught.value) == (f"{tmp_path / 'out'}: cannot write to the output directory (disk quota exceeded: "
                                 "your quota there is used up (quota -s; on Lustre lfs quota -h FOLDER))")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("refused", ["access", "probe"])
def test_root_refused_by_an_nfs_server_that_squashes_root_is_told_why(tmp_path, monkeypatch, refused):
    """A run as root (a container without -u, sudo) into an NFS export with root_squash (the
    default): the server maps root to nobody and refuses the write whatever the folder's modes say.
    The line said only `(permission denied)`, which a root user does not expect. Now it names the
    file system and what to do; a local file system's line is as before."""
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.delenv("GEOMORPH_CONTAINER", raising=False)
    monkeypatch.setattr(preflight.os, "geteuid", lambda: 0)
    if refused == "access":
        monkeypatch.setattr(preflight.os, "access", lambda path, mode: False)
    else:
        monkeypatch.setattr(preflight, "_write_probe", _failing(errno.EACCES))
    with pytest.raises(InputError) as local:
        check_writable(out, "output")
    start = (f"{out}: the output directory is not writable (permission denied)" if refused == "access" else
             f"{out}: cannot write to the output directory (permission denied)")
    assert str(local.value) == start
    monkeypatch.setattr(preflight, "filesystem_type", lambda folder: "nfs4" if Path(folder) == out else "ext4")
    with pytest.raises(InputError) as squashed:
        check_writable(out, "output")
    assert str(squashed.value) == (
        f"{start}; {out} is on nfs4, whose server maps root to another user (NFS's root_squash): run as a user who "
        "may write there (the folder's owner; in a container docker run -u \"$(id -u):$(id -g)\"), not as root")


def test_the_file_system_type_of_a_folder_is_its_longest_mount_point(tmp_path, monkeypatch):
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/sda1 / ext4 rw 0 0\nserver:/export /data nfs4 rw 0 0\n"
                      "server:/x /data/my\\040lab nfs rw 0 0\nsshfs#u@h: /datax fuse.sshfs rw 0 0\n")
    real = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: real(mounts) if str(self) == "/proc/self/mounts"
                        else real(self, *a, **k))
    kind = {p: preflight.filesystem_type(Path(p)) for p in ("/data/sub", "/data/my lab/out", "/datax/o", "/tmp")}
    assert kind == {"/data/sub": "nfs4", "/data/my lab/out": "nfs", "/datax/o": "fuse.sshfs", "/tmp": "ext4"}


# ------------------------------------------------------------------------------ locks without flock

def test_participant_locks_without_flock_are_files_created_exclusively(tmp_path, monkeypatch):
    """NFS without lockd: every participant run stopped on `error: No locks available` (exit 1).
    Now a participant's lock is `sub-<label>.held`, created with O_EXCL: a second run finds it
    held and names its holder; it is removed when the holder gives it back; run.lock is not held,
    so no run removes leftovers as if it were alone."""
    monkeypatch.setattr(fcntl, "flock", _failing())
    first, second = RunLocks(tmp_path), RunLocks(tmp_path)
    with first, second:
        assert first.without_flock == NO_LOCKS
        assert first.try_lock("sub-01") and first.holds("sub-01")
        assert not second.try_lock("sub-01") and second.stale("sub-01") == ""
        held = tmp_path / LOCK_DIR / "sub-01.held"
        assert second.path("sub-01") == held
        assert second.holder("sub-01").startswith(f"pid {os.getpid()} on {socket.gethostname()} since ")
        assert not first.when_alone(lambda: pytest.fail("no run may think itself alone"))
        first.unlock("sub-01")
        assert not held.exists() and second.try_lock("sub-01")
    assert not held.exists()  # released on the way out
    assert sorted(p.name for p in (tmp_path / LOCK_DIR).iterdir()) == ["run.lock"]


def test_a_held_file_of_a_run_killed_on_this_machine_is_taken_over_one_of_another_machine_is_not(tmp_path,
                                                                                                monkeypatch):
    """SIGKILL or the OOM killer leaves the .held file (no kernel releases it): one whose holder
    was a process of this machine that has ended is taken over; one of another machine cannot be
    judged and keeps its participant skipped, naming the file to delete."""
    monkeypatch.setattr(fcntl, "flock", _failing(errno.ENOSYS))
    folder = tmp_path / LOCK_DIR
    folder.mkdir()
    (folder / "sub-01.held").write_text(f"pid {_ended_pid()} on {socket.gethostname()} since 2026-12-07T10:00:00Z\n")
    (folder / "sub-02.held").write_text("pid 4242 on node017 since 2026-12-07T10:00:00Z\n")
    with RunLocks(tmp_path) as locks:
        assert locks.without_flock == "ENOSYS: Function not implemented"
        assert locks.try_lock("sub-01")
        assert (folder / "sub-01.held").read_text().startswith(f"pid {os.getpid()} ")
        assert not locks.try_lock("sub-02") and locks.stale("sub-02") == ""
        assert locks.holder("sub-02") == "pid 4242 on node017 since 2026-12-07T10:00:00Z"
    assert not (folder / "sub-01.held").exists() and (folder / "sub-02.held").is_file()
    assert not (folder / "sub-01.takeover").exists()


def test_folder_locks_without_flock(tmp_path, monkeypatch):
    """citation.lock (a read-modify-write of logs/CITATION.md) was `No locks available` for every
    run; the group level's shared reports.lock ended the group level. Now an exclusive folder lock
    is a .held file (a second holder waits or, not waiting, is told no), a shared one is not held."""
    monkeypatch.setattr(fcntl, "flock", _failing())
    with folder_lock(tmp_path, "citation") as held:
        assert held and (tmp_path / LOCK_DIR / "citation.held").is_file()
        with folder_lock(tmp_path, "citation", wait=False) as again:
            assert not again
    assert not (tmp_path / LOCK_DIR / "citation.held").exists()
    with folder_lock(tmp_path, "reports", shared=True, required=False) as shared:
        assert shared is False


def test_the_group_level_and_reports_only_read_held_files(tmp_path, monkeypatch):
    """Without flock the probes said nothing (no run active, no participant held): a group level
    beside a running array wrote a partial table without a word. Now they read the .held files."""
    monkeypatch.setattr(fcntl, "flock", _failing())
    assert not participant_runs_active(tmp_path) and participant_lock_holder(tmp_path, "01") == ""
    with RunLocks(tmp_path) as locks:
        assert locks.try_lock("sub-01")
        assert participant_runs_active(tmp_path)
        assert participant_lock_holder(tmp_path, "01").startswith(f"pid {os.getpid()} on ")
        assert participant_lock_holder(tmp_path, "02") == ""
        assert preflight.shown_lock_file(tmp_path, "sub-01") == tmp_path / LOCK_DIR / "sub-01.held"
        assert preflight.shown_lock_file(tmp_path, "run") == tmp_path / LOCK_DIR / "sub-01.held"
    assert not participant_runs_active(tmp_path)
    (tmp_path / LOCK_DIR / "sub-03.held").write_text(f"pid {_ended_pid()} on {socket.gethostname()} since x\n")
    assert not participant_runs_active(tmp_path)  # a run of this machine that has ended holds nothing


def test_probes_on_nfs_whose_flock_emulation_refuses_a_descriptor_open_for_reading(tmp_path, monkeypatch):
    """NFS emulates flock with byte-range locks and refuses an exclusive one on a descriptor open
    for reading alone (EBADF): the group level's and --reports-only's probes opened the lock files
    read-only, so a participant run in progress went unseen (no warning, its report drawn from half
    its files). Now the probes open the lock files for writing where they may."""
    real = fcntl.flock

    def nfs_flock(fd, op):
        if op & fcntl.LOCK_EX and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return real(fd, op)

    monkeypatch.setattr(fcntl, "flock", nfs_flock)
    with RunLocks(tmp_path) as locks:  # another run, in another process on a real NFS
        assert locks.try_lock("sub-01") and getattr(locks, "without_flock", "") == ""
        assert participant_runs_active(tmp_path)
        assert participant_lock_holder(tmp_path, "01").startswith(f"pid {os.getpid()} on ")
    assert not participant_runs_active(tmp_path) and participant_lock_holder(tmp_path, "01") == ""


def test_the_note_names_the_folders_and_what_to_do(tmp_path):
    from geomorph_bids.cli.preflight import without_flock_note

    out, work = RunLocks(tmp_path / "out"), RunLocks(tmp_path / "work")
    out.without_flock = work.without_flock = NO_LOCKS
    assert without_flock_note([out, work]) == (
        f"geomorph-bids: note: {tmp_path}/out/.geomorph-locks and {tmp_path}/work/.geomorph-locks: the file system "
        "does not lock files (flock: ENOLCK: No locks available; NFS without its lock service, Lustre without -o "
        "flock?): each participant is locked by a file created exclusively there instead (sub-<label>.held, removed "
        "when the run ends; one a run killed on another machine left must be deleted by hand), and killed runs' "
        "leftovers are not removed")


def test_a_gpu_turn_without_flock_runs_without_turns(tmp_path, monkeypatch):
    """A TMPDIR on a file system without flock: every registration on the GPU failed on the
    turn's lock; it now runs (as a process alone on the GPU would)."""
    from geomorph_bids.engine import gpu_slot

    monkeypatch.setattr(gpu_slot, "device_key", lambda index: str(index))  # (torch not asked: no GPU here)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    monkeypatch.setattr(fcntl, "flock", _failing(errno.EOPNOTSUPP))
    ran = []
    with gpu_slot.gpu_lock("cuda:0"):
        ran.append(True)
    assert ran == [True]


# ------------------------------------------------------------------------------ whole runs

_FILE_SYSTEM = textwrap.dedent('''
    """A network/FUSE file system under {root}, at the OS-call boundary (tests/cli/test_preflight.py)."""
    import errno, fcntl, os

    def _fail(code, *args):
        raise OSError(code, os.strerror(code), *args)

    def _ours(path):
        return not isinstance(path, int) and os.fsdecode(path).startswith({root!r})

    fcntl.flock = lambda fd, op: _fail(errno.ENOLCK)
    os.fsync = lambda fd: _fail(errno.EINVAL)
    os.link = lambda src, dst, *a, **k: _fail(errno.EPERM, src)
    _chmod = os.chmod
    os.chmod = lambda p, *a, **k: _fail(errno.EPERM, p) if _ours(p) else _chmod(p, *a, **k)
''')


@pytest.mark.slow
def test_a_whole_run_on_a_file_system_without_flock_fsync_links_or_modes(dataset_factory, tmp_path):
    """The participant level, the group level and --reports-only, each a real command in a process
    whose flock says ENOLCK, fsync EINVAL, and link and chmod (under the test's folder) EPERM (an
    NFS without lockd, an SMB or FUSE mount). Before: `geomorph-bids: error: No locks available`
    (exit 1) from each; with flock working, `cannot write to the output directory (Invalid
    argument)`. Now the participant's outputs are written (one note line on the locks), no .held
    file is left, and the group table and the reports are built."""
    bids = dataset_factory("freesurfer", subjects=("01",))
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_FILE_SYSTEM.format(root=str(tmp_path)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    out, work = tmp_path / "out", tmp_path / "work"

    def cli(*argv):
        return subprocess.run([sys.executable, "-m", "geomorph_bids.cli.bids", str(bids), str(out), *argv],
                              capture_output=True, text=True, env=env, timeout=600)

    proc = cli("participant", "--model", "rigid", "--hemi", "L", "--nprocs", "1", "-w", str(work))
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if "does not lock files" in line]
    assert notes == [f"geomorph-bids: note: {out}/{LOCK_DIR} and {work}/{LOCK_DIR}: the file system does not lock "
                     "files (flock: ENOLCK: No locks available; NFS without its lock service, Lustre without -o "
                     "flock?): each participant is locked by a file created exclusively there instead "
                     "(sub-<label>.held, removed when the run ends; one a run killed on another machine left must be "
                     "deleted by hand), and killed runs' leftovers are not removed"]
    anat = out / "sub-01" / "anat"
    metrics = json.loads((anat / "sub-01_hemi-L_space-fsLR_desc-geomorph_metrics.json").read_text())
    assert metrics["quality"]["flagged"] is False
    assert len([p for p in anat.iterdir() if p.is_file()]) == 9
    assert not list(tmp_path.rglob("*.held")) and not list(out.glob(".*.tmp"))
    proc = cli("group")
    assert proc.returncode == 0 and "1 row(s)" in proc.stdout, proc.stderr
    (out / "sub-01.html").unlink()
    proc = cli("participant", "--reports-only")
    assert proc.returncode == 0 and (out / "sub-01.html").is_file(), proc.stderr

"""The one atomic write on file systems that are not a local disk's: FUSE mounts (s3fs, gcsfuse,
sshfs) and SMB shares do no fsync or chmod; NFS reports a full disk or a quota at fsync.
Simulated at the OS-call boundary: no such file system can be mounted here. And the folders every
member of a lab writes into, and what an atomic write names when the folder refuses it: modes are
checked with the process's umask set (root ignores permission bits; nothing here needs another user)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from geomorph_bids.errors import describe_os_error
from geomorph_bids.io import atomic
from geomorph_bids.io.atomic import atomic_write_bytes, flock_unsupported, share_file, shared_folder


def _raising(code: int):
    def call(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    return call


@pytest.mark.parametrize("code", ["EINVAL", "EOPNOTSUPP", "ENOSYS"])
def test_an_fsync_or_chmod_the_file_system_does_not_do_is_carried_on(tmp_path, monkeypatch, code):
    """s3fs/gcsfuse answer fsync with EINVAL or ENOTSUP, SMB and FUSE mounts chmod with EPERM or
    ENOTSUP: every output failed there (`error: ... (Invalid argument)`, `operation not permitted
    at OUT/.dataset_description.json.XXXX.tmp`). Now the file is written whole, no temporary left."""
    monkeypatch.setattr(os, "fsync", _raising(getattr(errno, code)))
    monkeypatch.setattr(os, "chmod", _raising(errno.EPERM if code == "EINVAL" else getattr(errno, code)))
    path = atomic_write_bytes(tmp_path / "x.json", b'{"a": 1}')
    assert path.read_bytes() == b'{"a": 1}' and os.listdir(tmp_path) == ["x.json"]


@pytest.mark.parametrize("code, said", [("EDQUOT", "disk quota exceeded writing {}"),
                                        ("ENOSPC", "no space left on device (disk full) writing {}"),
                                        ("EIO", "input/output error (a failing disk or network filesystem?) at {}")])
def test_a_quota_or_full_disk_that_nfs_reports_at_fsync_still_fails_the_write(tmp_path, monkeypatch, code, said):
    """NFS reports a quota (EDQUOT), a full disk or a lost server at fsync or close, not at write:
    carrying on there would rename an empty or short file into place. The write fails, naming the
    file (not its temporary name), and leaves nothing."""
    monkeypatch.setattr(os, "fsync", _raising(getattr(errno, code)))
    target = tmp_path / "x.json"
    with pytest.raises(OSError) as caught:
        atomic_write_bytes(target, b"{}")
    assert caught.value.errno == getattr(errno, code) and os.listdir(tmp_path) == []
    assert describe_os_error(caught.value) == said.format(target)


def test_the_mode_is_still_set_where_the_file_system_takes_it(tmp_path):
    old = os.umask(0o027)
    try:
        path = atomic_write_bytes(tmp_path / "x.txt", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


@pytest.mark.parametrize("code, unsupported", [("ENOLCK", True), ("ENOSYS", True), ("EOPNOTSUPP", True),
                                               ("EINVAL", True), ("EBADF", True), ("EIO", False),
                                               ("EWOULDBLOCK", False)])
def test_a_file_system_without_flock_is_told_from_a_held_lock(code, unsupported):
    number = getattr(errno, code)
    exc = BlockingIOError(number, os.strerror(number)) if code == "EWOULDBLOCK" else OSError(number, "x")
    assert flock_unsupported(exc) is unsupported
    assert errno.EDQUOT not in atomic.FSYNC_UNSUPPORTED and errno.ENOSPC not in atomic.MODE_UNSUPPORTED


@pytest.fixture
def umask():
    """Set the process's umask for the test (``umask(0o022)``); the old one is put back."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_folders_made_in_a_group_writable_folder_are_group_writable_whatever_the_umask(tmp_path, umask):
    """umask 022, the usual default: a run's shared folders in a lab's setgid group folder were
    made 0755, and the other members' runs stopped on them. Now 2775 as the folder they are in;
    created parents too, each from its own parent."""
    lab = tmp_path / "lab"
    lab.mkdir()
    lab.chmod(0o2775)
    umask(0o022)
    shared_folder(lab / "derivatives" / "geomorph" / ".geomorph-locks")
    assert [mode(p) for p in (lab / "derivatives", lab / "derivatives/geomorph",
                              lab / "derivatives/geomorph/.geomorph-locks")] == [0o2775, 0o2775, 0o2775]
    (lab / "derivatives/geomorph/sub-01").mkdir()  # a participant's own folder: the umask's, as before
    assert mode(lab / "derivatives/geomorph/sub-01") == 0o2755


@pytest.mark.parametrize("parent_mode, mask, expected", [
    (0o755, 0o022, 0o755),    # not a group folder: the umask's mode, as before
    (0o2775, 0o077, 0o2700),  # a private umask: kept private, even in a group folder
    (0o2775, 0o002, 0o2775),  # umask 002 gives it already
    (0o777, 0o022, 0o775),    # world-writable: the group's write as the parent's, never the others'
])
def test_the_umask_decides_outside_a_group_folder_and_where_it_keeps_the_group_out(tmp_path, umask, parent_mode,
                                                                                   mask, expected):
    parent = tmp_path / "p"
    parent.mkdir()
    parent.chmod(parent_mode)
    umask(mask)
    assert mode(shared_folder(parent / "logs")) == expected


def test_a_folder_of_another_group_than_its_parent_s_is_not_opened_to_its_group(tmp_path, umask, monkeypatch):
    """A group-writable folder of group A without setgid: a folder made there has the user's
    primary group B (on some systems ``users``, everyone's): g+w would open it to B, who could
    not write the parent."""
    parent = tmp_path / "p"
    parent.mkdir()
    parent.chmod(0o775)
    st = os.stat(parent)
    real = os.stat
    other_group = os.stat_result((*st[:5], st.st_gid + 1, *st[6:]))
    monkeypatch.setattr(atomic.os, "stat", lambda p, *a, **k: other_group if Path(p) == parent else real(p, *a, **k))
    umask(0o022)
    assert mode(shared_folder(parent / "logs")) == 0o755


def test_an_existing_folder_of_this_user_s_is_repaired_unless_asked_not_to(tmp_path, umask):
    """A lock folder an earlier version left 0755 in a group folder gets the group's write on its
    owner's next run; the output folder itself (``repair=False``) is left as its owner set it."""
    lab = tmp_path / "lab"
    lab.mkdir()
    lab.chmod(0o2775)
    umask(0o022)
    (lab / "old").mkdir()
    (lab / "mine").mkdir()
    assert mode(lab / "old") == 0o2755
    shared_folder(lab / "old")
    shared_folder(lab / "mine", repair=False)
    assert (mode(lab / "old"), mode(lab / "mine")) == (0o2775, 0o2755)


def test_a_lock_file_in_a_group_folder_is_group_writable(tmp_path, umask):
    lab = tmp_path / "lab"
    lab.mkdir()
    lab.chmod(0o2775)
    umask(0o022)
    for name, folder_mode, expected in (("group", 0o2775, 0o664), ("private", 0o755, 0o644)):
        folder = lab / name
        folder.mkdir()
        folder.chmod(folder_mode)
        fd = os.open(folder / "run.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            share_file(fd, folder)
        finally:
            os.close(fd)
        assert mode(folder / "run.lock") == expected, name


def test_a_write_the_folder_refuses_names_the_file_not_its_temporary_name(tmp_path, monkeypatch):
    """A folder this user may not write (another lab member's ``figures/``, 0755): the group level
    ended on ``permission denied at .../figures/.group_desc-distributions_metrics.png.l98svsbd.tmp``,
    a file nobody sees. Root may write anywhere: the refusal is simulated where mkstemp makes it."""
    target = tmp_path / "figures" / "group.png"

    def refuse(prefix, suffix, dir):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.path.join(dir, f"{prefix}l98svsbd{suffix}"))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError) as info:
        atomic_write_bytes(target, b"x")
    assert describe_os_error(info.value) == f"permission denied at {target}"
    assert list(target.parent.iterdir()) == []

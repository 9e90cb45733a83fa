"""The one atomic write on file systems that are not a local disk's: FUSE mounts (s3fs, gcsfuse,
sshfs) and SMB shares do no fsync or chmod; NFS reports a full disk or a quota at fsync.
Simulated at the OS-call boundary: no such file system can be mounted here."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from geomorph_bids.errors import describe_os_error
from geomorph_bids.io import atomic
from geomorph_bids.io.atomic import atomic_write_bytes, flock_unsupported


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

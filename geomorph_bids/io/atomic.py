"""Atomic file writes: the one helper every output goes through.

A file is written to a uniquely named temporary file in the target folder
(``.<name>.<random>.tmp``: concurrent runs never share one), flushed to disk, given the usual
permissions (0666 minus the umask) and renamed over the target with :func:`os.replace`, so an
interrupted run never leaves a partial file and a reader sees the old or the new file whole.
Leftover temporary files of killed runs match ``.*.tmp`` (the BIDS-App removes them).

Network and FUSE file systems do not all do what a local one does: :func:`flush_to_disk` carries
on where ``fsync`` is not supported (s3fs, gcsfuse, some SMB servers: EINVAL, ENOTSUP), a write
carries on where the file's mode cannot be set (SMB, FUSE: the mount decides it), and
:func:`flock_unsupported` tells the errors of a file system without ``flock`` (NFS without its
lock service, Lustre without ``-o flock``) from a lock that is held.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "file_mode", "naming", "shared_folder", "share_file",
           "flush_to_disk", "FSYNC_UNSUPPORTED", "FLOCK_UNSUPPORTED", "flock_unsupported", "MODE_UNSUPPORTED",
           "chmod_if_supported"]

#: errnos of an ``fsync`` the file system does not do (FUSE mounts such as s3fs and gcsfuse, some SMB
#: servers): the bytes were handed over by ``write()``. Never a write's own error: NFS reports a full disk,
#: a quota (ENOSPC, EDQUOT) or a lost server (EIO) at ``fsync`` or ``close``, and those must fail the write
FSYNC_UNSUPPORTED = frozenset({errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS})

#: errnos of a ``flock`` the file system does not do, as opposed to a lock another process holds
#: (``BlockingIOError``): NFS without its lock service (ENOLCK), Lustre without ``-o flock`` (ENOSYS),
#: FUSE and SMB mounts (EOPNOTSUPP, EINVAL), NFS's emulation on a descriptor not open for writing (EBADF)
FLOCK_UNSUPPORTED = frozenset({errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL,
                               errno.EBADF})


def flush_to_disk(fd: int) -> None:
    """``os.fsync(fd)``, carrying on where the file system does not support it (:data:`FSYNC_UNSUPPORTED`);
    any other error (a full disk or quota that NFS reports only now) is raised."""
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in FSYNC_UNSUPPORTED:
            raise


#: errnos of a ``chmod`` the file system does not do on a file this process has just created (SMB and
#: FUSE mounts whose permissions are fixed by the mount: EPERM, ENOTSUP): the file keeps the mount's mode
MODE_UNSUPPORTED = FSYNC_UNSUPPORTED | {errno.EPERM}


def chmod_if_supported(path: str | Path, mode: int) -> None:
    """``os.chmod(path, mode)`` of a file just created, carrying on where the file system takes no
    modes (:data:`MODE_UNSUPPORTED`): before, every output failed there on ``operation not permitted``."""
    try:
        os.chmod(path, mode)
    except OSError as exc:
        if exc.errno not in MODE_UNSUPPORTED:
            raise


def flock_unsupported(exc: BaseException) -> bool:
    """Whether ``exc``, raised by ``fcntl.flock``, says the file system cannot lock files at all
    (:data:`FLOCK_UNSUPPORTED`) rather than that another process holds the lock."""
    return isinstance(exc, OSError) and not isinstance(exc, BlockingIOError) and exc.errno in FLOCK_UNSUPPORTED


def _umask() -> int:
    """The process's umask, read without changing it (``os.umask`` sets it: not safe beside threads)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def file_mode() -> int:
    """The mode a new file gets from ``open()``: 0666 less the umask (0644 with 022, 0664 with 002,
    0600 with 077). A file written under :func:`tempfile.mkstemp` (0600) is given it before its rename."""
    return 0o666 & ~_umask()


#: characters a temporary name adds to the file's own (``.<name>.<8 random>.tmp``): a file's name must
#: leave room for them within the file system's limit on a name (``NAME_MAX``, 255 bytes on most)
TEMP_NAME_EXTRA = len(".") + len(".12345678.tmp")


def naming(exc: OSError, path: str | Path) -> OSError:
    """The same OSError (type, errno, message) naming ``path`` as its file: ``write()`` names none,
    and a staged copy's name is not the output's."""
    return type(exc)(exc.errno, exc.strerror, str(path))


def _group_write(st: os.stat_result, parent: os.stat_result) -> int:
    """The bits to add to a file or folder of this user's (``st``) in ``parent`` so that the group
    may write it as it may write ``parent``: ``0o070`` (``0o060`` for a file), or 0 when ``parent``
    is not group-writable, ``st`` has another group than ``parent`` (it would open the file to a
    group that could not write the folder: a shared primary group such as ``users``), is not this
    user's, or the umask keeps the group from reading (077: private outputs stay private)."""
    if (st.st_uid != os.geteuid() or not parent.st_mode & 0o020 or st.st_gid != parent.st_gid
            or _umask() & 0o040):
        return 0
    bits = 0o070 if stat.S_ISDIR(st.st_mode) else 0o060
    return bits & ~st.st_mode


def shared_folder(folder: str | Path, repair: bool = True) -> Path:
    """Create ``folder`` and its missing parents (``mkdir -p``) for what every run into a folder
    writes, whoever runs it: the output and work folders, and in them the locks, ``logs/``, the
    staging folder and the group figures. Each folder created in a group-writable folder of the same
    group (a lab's shared folder: setgid, or the user's own group) is made writable for that group as
    its parent is, whatever the umask's group-write bit: with umask 022 (the usual default) the
    first member's run left ``.geomorph-locks/``, ``logs/`` and ``figures/`` 0755, and every other
    member's run then stopped on them (``permission denied``). A umask that keeps the group from
    reading (077) is kept. ``repair``: an existing folder of this user's gets the group's write
    too (made by an earlier version). Returns ``folder``."""
    folder = Path(folder)
    created, f = [], folder
    while not os.path.lexists(f) and f != f.parent:
        created.append(f)
        f = f.parent
    folder.mkdir(parents=True, exist_ok=True)
    for f in reversed(created or ([folder] if repair else [])):
        try:
            st = os.lstat(f)
            add = _group_write(st, os.stat(f.parent)) if stat.S_ISDIR(st.st_mode) else 0
            if add:
                os.chmod(f, stat.S_IMODE(st.st_mode) | add)
        except OSError:  # best effort: a folder that cannot take it is as the umask made it
            pass
    return folder


def share_file(fd: int, folder: str | Path) -> None:
    """Give a file of this user's (open as ``fd``) in a :func:`shared_folder` the group's write
    where the folder grants it (see :func:`shared_folder`): for the lock files, which every run
    into the folder opens for writing. Best effort."""
    try:
        st = os.fstat(fd)
        add = _group_write(st, os.stat(folder))
        if add:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) | add)
    except OSError:
        pass


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (parent folders are created); returns ``path``.
    An OSError of the write itself (a full disk, the file-size limit: ``write()`` names no
    file), or of the temporary file's creation (a folder this user may not write: it named
    ``.<name>.<random>.tmp``, a file the user never sees), is raised again with ``path`` as its
    file, so that the one-line message names it."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    except OSError as exc:
        raise naming(exc, p) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            flush_to_disk(fh.fileno())
        chmod_if_supported(tmp, file_mode())  # mkstemp's 0600 otherwise
        os.replace(tmp, p)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and not exc.filename:  # a failed write names no file: name it
            raise naming(exc, p) from exc
        raise
    return p


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    return atomic_write_bytes(path, text.encode("utf-8"))

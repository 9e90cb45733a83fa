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
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "naming", "flush_to_disk", "FSYNC_UNSUPPORTED",
           "FLOCK_UNSUPPORTED", "flock_unsupported", "MODE_UNSUPPORTED", "chmod_if_supported"]

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
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


#: characters a temporary name adds to the file's own (``.<name>.<8 random>.tmp``): a file's name must
#: leave room for them within the file system's limit on a name (``NAME_MAX``, 255 bytes on most)
TEMP_NAME_EXTRA = len(".") + len(".12345678.tmp")


def naming(exc: OSError, path: str | Path) -> OSError:
    """The same OSError (type, errno, message) naming ``path`` as its file: ``write()`` names none,
    and a staged copy's name is not the output's."""
    return type(exc)(exc.errno, exc.strerror, str(path))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (parent folders are created); returns ``path``.
    An OSError of the write itself (a full disk, the file-size limit: ``write()`` names no
    file) is raised again with ``path`` as its file, so that the one-line message names it."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            flush_to_disk(fh.fileno())
        chmod_if_supported(tmp, 0o666 & ~_umask())  # mkstemp's 0600 otherwise
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

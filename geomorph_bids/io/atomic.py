"""Atomic file writes: the one helper every output goes through.

A file is written to a uniquely named temporary file in the target folder
(``.<name>.<random>.tmp``: concurrent runs never share one), flushed to disk, given the usual
permissions (0666 minus the umask) and renamed over the target with :func:`os.replace`, so an
interrupted run never leaves a partial file and a reader sees the old or the new file whole.
Leftover temporary files of killed runs match ``.*.tmp`` (the BIDS-App removes them).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "naming"]


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
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
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

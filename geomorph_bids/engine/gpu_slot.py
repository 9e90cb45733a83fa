"""One process at a time on a GPU: an exclusive lock file per CUDA device.

Several processes of one machine (Nipype's MultiProc workers, batch mode's workers, separate
``geomorph-bids`` runs) share a GPU by taking turns on its lock
(``<tempdir>/geomorph_bids-cuda<KEY>.lock``) around their device work only, so one process's
CPU stages overlap with another's GPU stage and none runs out of GPU memory. The key names the
physical GPU (:func:`device_key`), not the process's own index: two cluster jobs on one node given
GPUs 2 and 3 each see theirs as ``cuda:0``, and must not take turns.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["gpu_lock", "device_key"]


@contextlib.contextmanager
def gpu_lock(device: str) -> Iterator[None]:
    """Hold an exclusive per-GPU lock file while the block runs (no-op for CPU devices)."""
    if not str(device).startswith("cuda"):
        yield
        return
    import fcntl

    from ..io.atomic import flock_unsupported

    index = int(str(device).partition(":")[2] or 0)
    fd = _open_lock(Path(tempfile.gettempdir()) / f"geomorph_bids-cuda{device_key(index)}.lock")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:  # a TMPDIR on a file system without flock (NFS, Lustre): no turns, as
            if not flock_unsupported(exc):  # one process alone on the GPU; never a failed registration
                raise
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def device_key(index: int) -> str:
    """The physical GPU behind this process's CUDA device ``index``, for a lock file's name: its
    UUID where torch reports one (``-<uuid>``), else the entry of ``CUDA_VISIBLE_DEVICES`` that the
    index stands for (an index, ``GPU-<uuid>`` or ``MIG-<uuid>``: ``2``, ``-GPU-...``), else the index."""
    try:
        import torch

        if torch.cuda.is_available() and index < torch.cuda.device_count():
            uuid = str(getattr(torch.cuda.get_device_properties(index), "uuid", "") or "")
            if uuid:
                return "-" + re.sub(r"[^A-Za-z0-9-]", "", uuid)
    except Exception:  # a driver that cannot say: the environment's word below
        pass
    visible = [e.strip() for e in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if e.strip()]
    if index < len(visible):
        entry = re.sub(r"[^A-Za-z0-9-]", "", visible[index])
        if entry:
            return entry if entry.isdigit() else "-" + entry
    return str(index)


def _open_lock(path: Path) -> int:
    """A read-only descriptor on the lock file (flock needs no write access), created if missing.
    An existing file is opened without ``O_CREAT``: on a GPU node shared by several users, another
    user's lock file in the common ``/tmp`` (0644, a sticky folder) could not be opened for writing
    (``PermissionError``: every registration on the GPU failed), and where ``fs.protected_regular`` is
    set (systemd's default) not even for reading with ``O_CREAT``. Never through a link."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    for _ in range(3):  # created or removed by another process meanwhile: look again
        try:
            return os.open(path, flags)
        except FileNotFoundError:
            pass
        try:
            return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
    return os.open(path, flags)

"""One process at a time on a GPU: an exclusive lock file per CUDA device.

Several processes of one machine (Nipype's MultiProc workers, batch mode's workers, separate
``geomorph-bids`` runs) share a GPU by taking turns on its lock
(``<tempdir>/geomorph_bids-cuda<N>.lock``) around their device work only, so one process's
CPU stages overlap with another's GPU stage and none runs out of GPU memory.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["gpu_lock"]


@contextlib.contextmanager
def gpu_lock(device: str) -> Iterator[None]:
    """Hold an exclusive per-GPU lock file while the block runs (no-op for CPU devices)."""
    if not str(device).startswith("cuda"):
        yield
        return
    import fcntl

    index = str(device).partition(":")[2] or "0"
    path = Path(tempfile.gettempdir()) / f"geomorph_bids-cuda{index}.lock"
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

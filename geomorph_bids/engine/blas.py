"""How many threads numpy's and scipy's BLAS (OpenBLAS) may use: torch's own thread count is set
elsewhere (``torch.set_num_threads``), theirs here, through threadpoolctl (a declared dependency;
where it is missing, :func:`blas_threads` does nothing).

OpenBLAS starts one thread per CPU and splits even small matrix products between them; after each
split call its idle threads spin for a while. The rigid fit's many small products (its rotation
search's (3n, 3) x (3, P) lookups) then cost a 10k-vertex pre-alignment 0.33 instead of 0.21 s of
CPU on two cores, the spinning threads taking the core another process (a batch worker, a Nipype
node) runs on; and a split product may round in its last bit otherwise than a whole one, so the
rotation found depended on the machine's CPU count (~4e-16 apart). docs/benchmarks.md, round
thirty-two.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["blas_threads"]


class _Holders:
    """Who holds :func:`blas_threads`' limit now: BLAS's thread count is the process's, so the
    blocks running at once in a caller's threads share one limit, set by the first and lifted by
    the last (the one piece of module state here, as the libraries' own is)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.limits: Any = None


_HOLDERS = _Holders()


@contextlib.contextmanager
def blas_threads(threads: int) -> Iterator[None]:
    """Hold numpy's and scipy's BLAS to ``threads`` (>= 1) threads inside the block (process-wide:
    other Python threads' products too), then give back what was set before (~2 ms to find the
    libraries each time).

    Blocks running at once in several threads (``register()`` called from a thread pool) share
    the limit: the first sets it and the last gives the caller's back. Each block saving and
    restoring its own interleaved, and left the caller's process with one BLAS thread for good
    (the second block saved the first's limit and restored it last).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with _HOLDERS.lock:
        if _HOLDERS.count == 0:
            _HOLDERS.limits = threadpool_limits(max(1, int(threads)), user_api="blas")
        _HOLDERS.count += 1
    try:
        yield
    finally:
        with _HOLDERS.lock:
            _HOLDERS.count -= 1
            if _HOLDERS.count == 0:
                _HOLDERS.limits.restore_original_limits()
                _HOLDERS.limits = None

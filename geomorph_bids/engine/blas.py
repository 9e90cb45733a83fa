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
from collections.abc import Iterator

from ..io.process_wide import Shared

__all__ = ["blas_threads"]

#: the BLAS limit, shared by the blocks running at once in a caller's threads
_LIMIT = Shared()


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
    with _LIMIT.held(lambda: threadpool_limits(max(1, int(threads)), user_api="blas"),
                     lambda limits: limits.restore_original_limits()):
        yield

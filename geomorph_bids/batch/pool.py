"""The worker processes of batch mode (and of the reports of the Nipype mode).

Workers start from a fork server that has imported what they use once (:data:`PRELOAD`: no
Nipype, no CUDA context: the parent's state never leaks into a worker), so each starts in a
fraction of a second and they share those pages; each runs ``threads`` torch threads.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

__all__ = ["worker_pool", "stop_pool", "PRELOAD"]

#: modules the fork server imports before it forks workers
PRELOAD = ("geomorph_bids.batch.tasks", "geomorph_bids.engine.register", "geomorph_bids.reports", "torch")


def worker_pool(workers: int, threads: int = 1) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes (see the module docstring)."""
    from .tasks import init_worker

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(PRELOAD))
    return ProcessPoolExecutor(max(1, int(workers)), mp_context=ctx, initializer=init_worker,
                               initargs=(max(1, int(threads)),))


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop a pool now: queued work is cancelled and running workers are terminated (after an
    interruption, or when a worker died and the pool is broken)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # (the executor keeps no public list)
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(timeout=5)

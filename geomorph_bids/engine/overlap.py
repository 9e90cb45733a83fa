"""Independent pieces of a registration at once, where the process may use a second CPU.

Most of a registration's CPU stages are single-threaded numpy, and on two cores the second one
idles through them. :func:`side_worker` gives one worker thread for side tasks (e.g. the moving
mesh's point locator and its k-d tree, which do not depend on the rotation the rigid fit is
looking for) while the caller goes on with other work: numpy and scipy release the GIL inside their
loops, so the two overlap. The results are the same bits as one after the other (the same
operations on the same arrays; neither writes what the other reads, but for caches of pure functions
and lazily built tables, which either may fill first with the same values). With one usable CPU a side
task runs when its result is asked for, in the caller's thread, as it did before; so it does where
torch is held to one thread (a batch worker, ``--omp-nthreads 1``): work sized to one CPU a process
keeps to one. :func:`split_rows` shares one row-wise job (e.g. the location of many points, each
found alone) between the caller and the worker, in pieces: the same bits as one call.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

import numpy as np

__all__ = ["side_worker", "split_rows", "threads_allowed", "usable_cpus"]

T = TypeVar("T")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threads_allowed() -> int:
    """Threads a registration may run at once: the usable CPUs, capped by torch's thread count where
    torch is loaded (``torch.set_num_threads``: what ``--omp-nthreads``, a batch worker or the caller
    set; torch is not imported for this)."""
    torch = sys.modules.get("torch")
    n = usable_cpus()
    return min(n, torch.get_num_threads()) if torch is not None else n


class _Deferred(Generic[T]):
    """A task of :class:`_InCaller`: run in the caller's thread when its result is first asked for."""

    def __init__(self, fn: Callable[..., T], args: tuple, kwargs: dict) -> None:
        self._call: Callable[[], T] | None = lambda: fn(*args, **kwargs)
        self._value: T | None = None

    def result(self) -> T:
        """The task's result (run now if it has not run; its exception raised each time)."""
        if self._call is not None:
            call, self._call = self._call, None
            try:
                self._value = call()
            except BaseException:
                self._call = call
                raise
        return self._value  # type: ignore[return-value]


class _InCaller(Executor):
    """An executor without threads: each task runs when its result is asked for."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> _Deferred[T]:  # type: ignore[override]
        return _Deferred(fn, args, kwargs)


@contextlib.contextmanager
def side_worker(threaded: bool | None = None) -> Iterator[Executor]:
    """An executor for side tasks: one worker thread (tasks run in the order submitted), or,
    ``threaded`` False, none (a task runs in the caller's thread when its result is asked for);
    None: threaded where :func:`threads_allowed` > 1. Only ``submit(fn, *args).result()`` is to be
    used. On leaving the block the running task is waited for and tasks not yet started are
    dropped: an exception of the body wins over one of a task whose result was never asked for
    (as when the task ran after the body)."""
    if threaded is None:
        threaded = threads_allowed() > 1
    if not threaded:
        yield _InCaller()
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geomorph-side")
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def split_rows(worker: Executor, fn: Callable[..., tuple[np.ndarray, ...]], *rows: np.ndarray | None,
               pieces: int = 2) -> tuple[np.ndarray, ...]:
    """``fn(*rows)`` for a function whose every output row ``i`` depends on input row ``i`` alone
    (of each of ``rows``, (N, ...) arrays or None; e.g. points located one by one), computed in
    ``pieces`` runs of rows shared by ``worker`` (from the first) and the caller (from the last:
    a piece the worker has not started when the caller reaches it is the caller's), the outputs
    joined along their first axis: the same bits as one call. A worker without a thread
    (:func:`side_worker` on one CPU) gets one call of all rows, as before."""
    if isinstance(worker, _InCaller) or pieces < 2:
        return fn(*rows)
    n = len(next(r for r in rows if r is not None))
    edges = [n * k // pieces for k in range(pieces + 1)]
    parts = [tuple(None if r is None else r[a:b] for r in rows) for a, b in zip(edges[:-1], edges[1:])]
    futures = [worker.submit(fn, *part) for part in parts]
    done: list[tuple[np.ndarray, ...] | None] = [None] * pieces
    for k in range(pieces - 1, -1, -1):
        if futures[k].cancel():  # not started: the caller's
            done[k] = fn(*parts[k])
    out = [d if d is not None else f.result() for d, f in zip(done, futures)]
    return tuple(np.concatenate([o[j] for o in out]) for j in range(len(out[0])))

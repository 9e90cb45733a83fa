"""The worker processes of batch mode (and of the reports of the Nipype mode).

Workers start from a fork server that has imported what they use once (:data:`PRELOAD`: no
Nipype, no CUDA context: the parent's state never leaks into a worker), so each starts in a
fraction of a second and they share those pages; each runs ``threads`` torch threads (a pool
that draws reports only imports no torch at all: :func:`worker_pool`).
"""

from __future__ import annotations

import multiprocessing
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

from ..io.processes import pid_alive

__all__ = ["worker_pool", "start_fork_server", "stop_pool", "PRELOAD", "REPORT_PRELOAD", "REGISTRATION_MODULES",
           "preload_modules", "exit_with_owner"]

#: modules the fork server imports before it forks workers
PRELOAD = ("geomorph_bids.batch.tasks", "geomorph_bids.engine.register", "geomorph_bids.reports", "torch")
#: and, for a pool that draws reports, what the figures import when they are first drawn
#: (matplotlib, its Agg canvas and PIL's PNG writer: ~1 s of CPU once per server instead of per worker)
REPORT_PRELOAD = ("geomorph_bids.reports.figures", "matplotlib.figure", "matplotlib.backends.backend_agg",
                  "matplotlib.colorbar", "PIL.PngImagePlugin")
#: what only registrations use, left out of a pool that draws reports only (torch: ~1 s of CPU,
#: before the first worker can start)
REGISTRATION_MODULES = ("geomorph_bids.engine.register", "torch")


def worker_pool(workers: int, threads: int = 1, reports: bool = False, registrations: bool = True,
                show_warning: Callable[..., None] | None = None) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes (see the module docstring). ``reports``: its workers draw
    participant reports (:data:`REPORT_PRELOAD` is preloaded too); ``registrations=False``: they
    draw nothing else (no torch: neither preloaded nor imported by the workers, ``threads`` unused).
    The preload applies when this process starts its fork server here (once per process).
    ``show_warning``: a registration worker's :func:`warnings.showwarning` (picklable; the command's
    one-line printer), or None: Python's."""
    ctx = start_fork_server(reports=reports, registrations=registrations)
    if not registrations:
        return ProcessPoolExecutor(max(1, int(workers)), mp_context=ctx, initializer=exit_with_owner,
                                   initargs=(os.getpid(),))
    return ProcessPoolExecutor(max(1, int(workers)), mp_context=ctx, initializer=_start_worker,
                               initargs=(max(1, int(threads)), os.getpid(), show_warning))


def _start_worker(threads: int, owner: int, show_warning: Callable[..., None] | None = None) -> None:
    """A registration worker's start: it ends with process ``owner`` (:func:`exit_with_owner`), runs
    ``threads`` torch threads (:func:`~geomorph_bids.batch.tasks.init_worker`) and prints warnings with
    ``show_warning`` where given (a feature map's warning line, as the workflow's nodes print it)."""
    import warnings

    from .tasks import init_worker

    exit_with_owner(owner)
    init_worker(threads)
    if show_warning is not None:
        warnings.showwarning = show_warning


def exit_with_owner(owner: int, poll_s: float = 1.0) -> None:
    """In a worker: end this process as soon as process ``owner`` (the one that made the pool)
    has ended.

    A worker's parent is the fork server, not the pool's owner, and it holds both ends of the
    pool's pipes itself, so an owner killed with SIGKILL (the OOM killer, ``kill -9`` of the main
    process) left it waiting for work for ever, ~0.3 GB each, the fork server with it (the
    workers hold its liveness pipe) and, worse, free to finish and commit a hemisphere that the
    next run (the participant locks died with the owner) was writing too. A daemon thread waits
    on a pidfd of the owner (Linux >= 5.3; elsewhere it polls every ``poll_s`` seconds) and
    ends the worker with ``os._exit``, as a SIGKILL would: its hemisphere's staged files are
    never renamed into place, and the next run cleans them up as any killed run's."""
    try:
        fd = os.pidfd_open(owner)
    except (AttributeError, OSError):
        fd = None
    if fd is None and not pid_alive(owner):
        os._exit(70)

    def watch() -> None:
        if fd is not None:
            select.select([fd], [], [])
        else:
            while pid_alive(owner):
                time.sleep(poll_s)
        os._exit(70)

    threading.Thread(target=watch, name="exit-with-owner", daemon=True).start()


def start_fork_server(reports: bool = False, registrations: bool = True) -> multiprocessing.context.BaseContext:
    """The forkserver context, its server started with :func:`preload_modules` (``reports``,
    ``registrations``) unless this process has started it already (its preload then stays as it
    was: a process that draws reports and registers in several pools, like a test session, can
    start it first with both). Its imports (torch, the engine, the reports: 2-3 s) run in its own
    process: started before other work (the command line's settings and discovery, which import
    torch too), they run beside it, and :func:`worker_pool`'s workers are forked at once."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(preload_modules(reports=reports, registrations=registrations))
    _start_fork_server()
    return ctx


def preload_modules(version: tuple[int, ...] = tuple(sys.version_info[:2]), reports: bool = False,
                    registrations: bool = True) -> list[str]:
    """What the fork server imports before forking: :data:`PRELOAD` (without the registration's
    modules, :data:`REGISTRATION_MODULES`, when ``registrations`` is False; with
    :data:`REPORT_PRELOAD` when ``reports``) on Python >= 3.11; nothing on
    3.10, which cannot keep the current folder off the server's ``sys.path`` (no
    ``PYTHONSAFEPATH``, :func:`_start_fork_server`): each worker then imports what it uses itself,
    through the parent's ``sys.path`` (slower to start, never another copy of the package)."""
    if version < (3, 11):
        return []
    base = [m for m in PRELOAD if registrations or m not in REGISTRATION_MODULES]
    return base + (list(REPORT_PRELOAD) if reports else [])


def _start_fork_server() -> None:
    """Start the fork server (once per process) without the current folder on its ``sys.path``.

    It runs as ``python -c``, which puts the current folder first on ``sys.path`` (Python 3.11
    ignores the parent's path there): started from a folder holding an output folder named
    ``geomorph_bids`` (or another checkout of the package), the workers imported that instead of
    the installed package and failed. ``PYTHONSAFEPATH`` (Python >= 3.11) leaves it out; the
    parent's own environment is restored at once.

    SIGINT is blocked while the server and multiprocessing's resource tracker start, and stays
    blocked in them and in the workers they fork (a blocked signal stays so across fork and exec):
    a Ctrl-C reaches the whole foreground process group, and the server, still importing its
    preload, printed a KeyboardInterrupt traceback, the tracker died and its successor printed a
    KeyError for every shared block it had not seen. The parent alone handles the interruption
    (it stops the workers, :func:`stop_pool`); a Ctrl-C in the parent during the start is
    delivered to it when the block is lifted. The tracker is started first, on its own: it blocks
    SIGINT while it starts and then *unblocks* it, which would lift this block before the server
    starts."""
    from multiprocessing import forkserver, resource_tracker

    saved = os.environ.get("PYTHONSAFEPATH")
    os.environ["PYTHONSAFEPATH"] = "1"
    warnings = os.environ.get("PYTHONWARNINGS")
    # the tracker of a run killed with SIGKILL removes the pool's semaphores once its workers have
    # ended (exit_with_owner), with a 2-line "leaked semaphore objects" UserWarning in the job's log
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [warnings, _TRACKER_QUIET]))
    try:
        resource_tracker.ensure_running()
    finally:
        if warnings is None:
            del os.environ["PYTHONWARNINGS"]
        else:
            os.environ["PYTHONWARNINGS"] = warnings
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        forkserver.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if saved is None:
            del os.environ["PYTHONSAFEPATH"]
        else:
            os.environ["PYTHONSAFEPATH"] = saved


#: the warning filter of multiprocessing's resource tracker (its own warnings only)
_TRACKER_QUIET = "ignore::UserWarning:multiprocessing.resource_tracker"


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

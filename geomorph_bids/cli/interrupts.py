"""Polite kills: SIGTERM, SIGINT (Ctrl-C) and SIGHUP stop the whole run within seconds.

Inside :func:`stop_on_signals` the three signals raise :class:`Interrupted` in the main
process; Nipype runs some nodes in the main process and turns any exception there into a node
failure, so the signal is delivered again every :data:`REDELIVER_S` s until the command line
handles the exception (:meth:`Interrupted.acknowledge`); later signals are then ignored while
it cleans up (the crash files the interruption caused are removed with the partial outputs).
Every process forked meanwhile
(Nipype's MultiProc workers) is set up at fork time to ignore SIGINT (a terminal sends Ctrl-C
to the whole process group: only the main process reports it, so the user sees one line instead
of a traceback per worker), to die at once on SIGTERM and SIGHUP (the default action, no Python
handler), and to be killed by the kernel if the main process dies first (``PR_SET_PDEATHSIG``,
Linux), so a run killed with SIGKILL leaves no workers behind either. The main process then
stops its descendants with :func:`stop_children` (SIGTERM, SIGKILL after :data:`GRACE_S`),
removes the partial outputs of the hemispheres it was writing, releases its locks (their file
descriptors are never inherited by the workers: :class:`~geomorph_bids.cli.preflight.RunLocks`),
prints one line and exits with ``128 + signal number`` (:mod:`.exit_codes`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path
from typing import Iterator

from ..io.process_wide import ForkHooks
from ..io.processes import pid_alive

__all__ = ["STOP_SIGNALS", "GRACE_S", "REDELIVER_S", "Interrupted", "stop_on_signals", "stop_children", "descendants",
           "pid_alive"]

#: the signals that stop a run politely
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: seconds the workers get to end after SIGTERM before SIGKILL
GRACE_S = 3.0
#: seconds between re-deliveries of a stop signal that has not reached the command line's handler
REDELIVER_S = 0.5
#: what a process forked inside a :func:`stop_on_signals` block does first (one ``os.register_at_fork``
#: for the process: one per block left a function behind per command run in one process)
_FORKED = ForkHooks()


class Interrupted(BaseException):
    """A stop signal reached the main process (a BaseException: no ``except Exception`` on the
    way up swallows it)."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        self.name = signal.Signals(self.signum).name
        self.stopped = 0  # worker processes stopped so far (stop_children)
        self._acknowledge = lambda: None
        super().__init__(f"interrupted by {self.name}")

    def acknowledge(self) -> None:
        """Called where the exception is handled: the signal is not delivered again."""
        self._acknowledge()

    @property
    def exit_code(self) -> int:
        """``128 + signal number``, as a shell reports a process killed by that signal."""
        return 128 + self.signum


def _die_with_parent() -> None:
    """Linux: the kernel sends SIGKILL to this (forked) process when its parent exits."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM/SIGINT/SIGHUP raise :class:`Interrupted` in this process, and
    processes forked from it behave as described in the module docstring. Does nothing outside
    the main thread (Python delivers signals there only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    main = os.getpid()
    state = {"active": True, "stopping": False, "redelivering": False}

    def redeliver(signum: int) -> None:
        """Nipype runs some nodes in the main process and turns any exception there (ours
        included) into a node failure, then goes on: until the exception reaches the command
        line's handler (:meth:`Interrupted.acknowledge`), deliver the signal again every
        :data:`REDELIVER_S` seconds."""
        while True:
            time.sleep(REDELIVER_S)
            if state["stopping"] or not state["active"]:
                return
            with contextlib.suppress(OSError):
                os.kill(main, signum)

    def handler(signum, frame):  # noqa: ARG001 - the signal module's signature
        if os.getpid() != main or state["stopping"]:
            return  # a child that has not reset its handlers yet, or cleanup under way
        if not state["redelivering"]:
            state["redelivering"] = True
            threading.Thread(target=redeliver, args=(signum,), daemon=True).start()
        exc = Interrupted(signum)
        exc._acknowledge = lambda: state.__setitem__("stopping", True)
        raise exc

    def in_child() -> None:
        if not state["active"] or os.getpid() == main:
            return
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for s in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_DFL)
        _die_with_parent()
        if os.getppid() != main:  # the parent died between the fork and the prctl
            os._exit(128 + int(signal.SIGKILL))

    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    for s in STOP_SIGNALS:
        signal.signal(s, handler)
    try:
        with _FORKED.while_held(in_child):
            yield
    finally:
        state["active"] = False
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process visible in /proc (Linux); {} elsewhere."""
    out = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) ": state, ppid, ...
        if len(fields) > 1 and fields[0] != "Z":  # zombies have ended already
            out[int(entry.name)] = int(fields[1])
    return out


def descendants(pid: int | None = None) -> list[int]:
    """Live descendants of ``pid`` (default: this process), children first."""
    root = os.getpid() if pid is None else pid
    parents = _parents()
    out, frontier = [], [root]
    while frontier:
        kids = sorted(p for p, parent in parents.items() if parent in frontier and p not in out)
        out += kids
        frontier = kids
    if not parents:  # no /proc: the children multiprocessing knows of
        import multiprocessing

        out = [p.pid for p in multiprocessing.active_children() if p.pid]
    return out


def _resource_tracker_pid() -> int | None:
    """The pid of multiprocessing's resource tracker started by this process, if any."""
    import sys

    module = sys.modules.get("multiprocessing.resource_tracker")
    pid = getattr(getattr(module, "_resource_tracker", None), "_pid", None)
    return pid if isinstance(pid, int) else None


def stop_children(grace_s: float = GRACE_S) -> int:
    """Stop every descendant of this process but multiprocessing's resource tracker: SIGTERM,
    then SIGKILL for those still alive after ``grace_s`` seconds. Returns how many there were.
    The process pool of Nipype's MultiProc then reports its broken futures through the
    ``concurrent.futures`` logger with a traceback; that logger is silenced (the run is ending,
    and says why on one line). The tracker ignores SIGTERM, so it used to take the whole grace
    and a SIGKILL; its successor, started by the next semaphore released, then printed a KeyError
    traceback for each one it had not seen. Left alone, it ends when this process does (its pipe
    closes), freeing what the stopped workers left (named semaphores, shared memory)."""
    import logging

    logging.getLogger("concurrent.futures").setLevel(logging.CRITICAL + 1)
    tracker = _resource_tracker_pid()

    def workers() -> list[int]:
        return [p for p in descendants() if p != tracker]

    pids = workers()
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in [p for p in pids if pid_alive(p)] + workers():  # and any forked meanwhile
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)

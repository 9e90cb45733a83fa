"""cli/interrupts.py's liveness test where ``/proc`` hides other users' processes; its blocks run in a long-lived
process."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from geomorph_bids.cli import interrupts
from geomorph_bids.cli.interrupts import stop_on_signals
from geomorph_bids.cli.preflight import RunLocks


def test_a_colleague_s_live_process_that_proc_hides_is_alive(monkeypatch):
    """A shared cluster mounts ``/proc`` with ``hidepid=2``: another user's process has no
    ``/proc/<pid>``. pid_alive read that as ended, so a colleague's run holding a participant's
    lock was called stale (``the run that took the lock (pid N) has ended``). Signal 0 answers
    "not permitted" for a live process of another user: alive; an ended one is still ended."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    hidden = f"/proc/{child.pid}/stat"
    real_read, real_kill = Path.read_text, os.kill

    def read_text(self, *args, **kwargs):
        if str(self) == hidden:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), hidden)
        return real_read(self, *args, **kwargs)

    def kill(pid, sig):
        if pid == child.pid and sig == 0 and child.poll() is None:  # another user's process: not ours to signal
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))
        return real_kill(pid, sig)

    monkeypatch.setattr(Path, "read_text", read_text)
    monkeypatch.setattr(interrupts.os, "kill", kill)
    try:
        assert interrupts.pid_alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not interrupts.pid_alive(child.pid)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_commands_run_in_one_process_leave_no_fork_hook_per_run(tmp_path, monkeypatch):
    """A pipeline calling a command's ``main()`` in one process, run after run: each run's
    ``stop_on_signals`` block and each ``RunLocks`` registered an ``os.register_at_fork`` function for
    good (one more kept alive, and called at every later fork, per run: 21 after 21 runs of
    geomorph-register). Now the blocks hold their hooks while they run; a child forked inside one
    still ignores SIGINT and closes the run's lock descriptors, one forked after it keeps the caller's SIGINT."""
    registered = []
    monkeypatch.setattr(os, "register_at_fork", lambda **hooks: registered.append(hooks))
    for _ in range(5):
        with stop_on_signals(), RunLocks(tmp_path) as locks:
            assert locks.try_lock("sub-01")
    assert registered == []

    def child_sees(locks: RunLocks) -> tuple[bool, bool]:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: SIGINT ignored? the parent's lock descriptors closed?
            try:
                os.write(write, bytes([signal.getsignal(signal.SIGINT) == signal.SIG_IGN, not locks._fds]))
            finally:
                os._exit(0)
        os.close(write)
        seen = os.read(read, 2)
        os.close(read)
        os.waitpid(pid, 0)
        return bool(seen[0]), bool(seen[1])

    locks = RunLocks(tmp_path)
    with stop_on_signals(), locks:
        assert locks.try_lock("sub-01")
        assert child_sees(locks) == (True, True)
    assert child_sees(locks)[0] is False  # SIGINT is the caller's again in a child forked after the block

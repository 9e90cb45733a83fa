"""cli/interrupts.py's liveness test where ``/proc`` hides other users' processes."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

from geomorph_bids.cli import interrupts


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

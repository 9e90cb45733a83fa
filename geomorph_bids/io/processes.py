"""Whether a process is running, asked the one way every part of the package asks it."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["pid_alive"]


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is running (a zombie, ended but not yet reaped, is not). Another user's
    process that ``/proc`` hides (``hidepid=2``, as many shared clusters mount it) is asked with
    signal 0, which answers "not permitted" for a live one: read as ended, a colleague's running
    run's lock was called stale."""
    if Path("/proc").is_dir():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            return stat[stat.rfind(")") + 2:][:1] != "Z"
        except OSError:
            pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

"""What this machine (or container, or batch-job allocation) lets a run use: CPUs and memory.

:func:`usable_cpus` counts the CPUs this process may run on (its affinity mask, as set by
SLURM, ``taskset`` or ``docker --cpuset-cpus``) within its cgroup's CPU quota (``docker
--cpus``, Kubernetes limits); :func:`total_memory_gb` is the machine's memory within the
cgroup's memory limit. The resource arguments are checked against both
(:func:`geomorph_bids.cli.settings.validate_resources`).
"""

from __future__ import annotations

import math
import os
import re
import sys
from pathlib import Path

__all__ = ["usable_cpus", "total_memory_gb", "drop_unusable_thread_settings", "current_folder_problem"]

_CGROUP = Path("/sys/fs/cgroup")


def _cgroup_value(name: str) -> str | None:
    try:
        return (_CGROUP / name).read_text().strip()
    except OSError:
        return None


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup-v2 CPU quota (at least 1)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_value("cpu.max")
    if quota:
        limit, _, period = quota.partition(" ")
        if limit != "max" and limit.isdigit() and period.isdigit() and int(period) > 0:
            n = min(n, max(1, math.ceil(int(limit) / int(period))))
    return max(1, n)


def total_memory_gb() -> float:
    """The memory (GB) this process may use: the machine's, capped by a cgroup-v2 memory limit."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        total = float("inf")
    limit = _cgroup_value("memory.max")
    if limit and limit.isdigit():
        total = min(total, int(limit) / 1e9)
    return total


#: what OpenMP reads from OMP_NUM_THREADS: a positive count, or counts per nesting level (4,2)
_OMP_THREADS = re.compile(r"\s*[1-9][0-9]*\s*(,\s*[1-9][0-9]*\s*)*")


def drop_unusable_thread_settings(prog: str, environ: "os._Environ[str] | dict[str, str] | None" = None) -> None:
    """Remove an ``OMP_NUM_THREADS`` that is no thread count (``abc``, ``0``, ``-1``, empty: an unset
    ``$SLURM_CPUS_PER_TASK`` exported) before torch starts OpenMP, with one warning line; before, the
    run went on but libgomp printed ``libgomp: Invalid value for environment variable
    OMP_NUM_THREADS`` after a blank line, naming no command. The threads per registration are
    ``--omp-nthreads``'s (``torch.set_num_threads``), whatever the variable says."""
    env = os.environ if environ is None else environ
    value = env.get("OMP_NUM_THREADS")
    if value is None or _OMP_THREADS.fullmatch(value):
        return
    del env["OMP_NUM_THREADS"]
    print(f"{prog}: warning: OMP_NUM_THREADS={value!r} is not a number of threads (a whole number >= 1); "
          "ignored", file=sys.stderr)


def threads_wait_passively(environ: "os._Environ[str] | dict[str, str] | None" = None) -> None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user set it, before torch starts OpenMP (its
    worker processes inherit it). torch's OpenMP threads otherwise spin at every barrier: when
    another process holds one of the cores (a shared node, Nipype's other workers), each of the
    network's hundreds of small parallel regions waits for the stolen core's time slice, and one
    forward pass took 0.3-1.6 s instead of 0.06-0.08 (2 cores, one busy process beside it). Passive
    threads sleep instead: 0.08 s busy, 0.07 instead of 0.06 s on quiet cores (docs/benchmarks.md,
    eleventh session). The results are the same bits."""
    env = os.environ if environ is None else environ
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def current_folder_problem() -> str | None:
    """Why the current folder cannot be used, or None. A shell left in a folder that was deleted
    (a job's scratch removed, ``git clean``) gave geomorph-bids a traceback (``FileNotFoundError`` from
    ``os.getcwd``: every relative path, the default work folder, Nipype's own configuration need it)
    and geomorph-register ``error: no such file``, naming nothing."""
    try:
        os.getcwd()
    except FileNotFoundError:
        return ("the current folder no longer exists (deleted or moved while this shell was in it): cd to an "
                "existing folder and run the command again")
    except OSError as exc:
        return f"the current folder cannot be used ({exc.strerror or exc}): cd to another folder and run the command again"
    return None

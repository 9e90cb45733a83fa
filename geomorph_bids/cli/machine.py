"""What this machine (or container, or batch-job allocation) lets a run use: CPUs and memory.

:func:`usable_cpus` counts the CPUs this process may run on (its affinity mask, as set by
SLURM, ``taskset`` or ``docker --cpuset-cpus``) within its cgroup's CPU quota (``docker
--cpus``, Kubernetes limits, a batch job's cgroup: v2 or v1, its own or an ancestor's) and its
SLURM job's CPUs; :func:`total_memory_gb` is the machine's memory within the cgroup's memory
limit and the SLURM job's memory. The resource arguments are checked against both
(:func:`geomorph_bids.cli.settings.validate_resources`).
"""

from __future__ import annotations

import math
import os
import re
import sys
from pathlib import Path

from ..engine.device import REGISTRATION_NEEDS_GB, high_resolution, registration_needs_gb
from .messages import say

__all__ = ["gpu_out_of_memory", "is_gpu_out_of_memory", "usable_cpus", "total_memory_gb", "slurm_allocation", "drop_unusable_thread_settings",
           "threads_within_usable_cpus", "address_space_problem", "out_of_memory", "current_folder_problem",
           "matplotlib_config_in_tmp", "temporary_folder_in"]

_CGROUP = Path("/sys/fs/cgroup")
_SELF_CGROUP = Path("/proc/self/cgroup")
#: a cgroup-v1 memory.limit_in_bytes at or above this is "no limit" (the kernel's is 2**63 rounded to a page)
_V1_UNLIMITED = 2 ** 60


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _own_cgroup_folders(root: Path, self_cgroup: Path) -> dict[str, list[Path]]:
    """The folders of this process's cgroup and of each of its ancestors, nearest first, per
    hierarchy: ``v2`` (the unified one, at ``root`` or ``root/unified``), ``memory`` and ``cpu`` (v1).
    A batch job's limits are set on its job's cgroup, an ancestor of the step's that the process is
    in (SLURM: ``.../job_N/step_batch/...``); a container with its own cgroup namespace sees ``/``.
    Folders not mounted here (a container without the namespace) are left out."""
    text = _read(self_cgroup) or ""
    out: dict[str, list[Path]] = {"v2": [], "memory": [], "cpu": []}
    for line in text.splitlines():
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        rel = Path(path.strip() or "/").relative_to("/") if path.strip().startswith("/") else None
        if rel is None:
            continue
        if controllers == "":
            bases = [b for b in (root, root / "unified") if (b / "cgroup.controllers").is_file()]
            kinds = [("v2", b) for b in bases[:1]]
        else:
            names = controllers.split(",")
            kinds = [(kind, root / controllers) for kind in ("memory", "cpu") if kind in names]
            kinds = [(k, b if b.is_dir() else root / k) for k, b in kinds]
        for kind, base in kinds:
            folder = base / rel
            chain = [folder, *folder.parents]
            out[kind] += [f for f in chain if f == base or base in f.parents]
    return out


def _cgroup_cpu_limit(root: Path = _CGROUP, self_cgroup: Path = _SELF_CGROUP) -> int | None:
    """The smallest CPU quota (whole CPUs, rounded up) on this process's cgroup or its ancestors:
    v2 ``cpu.max``, v1 ``cpu.cfs_quota_us / cpu.cfs_period_us``; None without one."""
    quotas = []
    folders = _own_cgroup_folders(root, self_cgroup)
    for folder in [root, *folders["v2"]]:
        limit, _, period = (_read(folder / "cpu.max") or "max").partition(" ")
        if limit.isdigit() and period.isdigit() and int(period) > 0:
            quotas.append(math.ceil(int(limit) / int(period)))
    for folder in folders["cpu"]:
        limit, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
        if limit and period and limit.isdigit() and period.isdigit() and int(period) > 0:
            quotas.append(math.ceil(int(limit) / int(period)))
    return max(1, min(quotas)) if quotas else None


def _cgroup_memory_limit(root: Path = _CGROUP, self_cgroup: Path = _SELF_CGROUP) -> int | None:
    """The smallest memory limit (bytes) on this process's cgroup or its ancestors: v2
    ``memory.max``, v1 ``memory.limit_in_bytes``; None without one."""
    limits = []
    folders = _own_cgroup_folders(root, self_cgroup)
    for folder in [root, *folders["v2"]]:
        value = _read(folder / "memory.max")
        if value and value.isdigit():
            limits.append(int(value))
    for folder in folders["memory"]:
        value = _read(folder / "memory.limit_in_bytes")
        if value and value.isdigit() and int(value) < _V1_UNLIMITED:
            limits.append(int(value))
    return min(limits) if limits else None


def _positive(environ, name: str) -> int | None:
    value = (environ.get(name) or "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def slurm_allocation(environ: "os._Environ[str] | dict[str, str] | None" = None) -> tuple[int | None, float | None]:
    """(CPUs, memory in GB) of the SLURM job this process runs in, on this node, from the variables
    SLURM sets in a job (``SLURM_JOB_ID``): ``SLURM_CPUS_PER_TASK`` (``--cpus-per-task``), else
    ``SLURM_CPUS_ON_NODE``; ``SLURM_MEM_PER_NODE`` (``--mem``, MiB; 0: the whole node), else
    ``SLURM_MEM_PER_CPU`` x those CPUs. (None, None) outside a job. Where SLURM confines jobs with
    cgroups the affinity mask and limits say the same; where it does not (``TaskPlugin=task/none``,
    memory not enforced) these are all that says what the job was given."""
    env = os.environ if environ is None else environ
    if not (env.get("SLURM_JOB_ID") or "").strip():
        return None, None
    cpus = _positive(env, "SLURM_CPUS_PER_TASK") or _positive(env, "SLURM_CPUS_ON_NODE")
    per_node, per_cpu = _positive(env, "SLURM_MEM_PER_NODE"), _positive(env, "SLURM_MEM_PER_CPU")
    mib = per_node or (per_cpu * cpus if per_cpu and cpus else None)
    return cpus, (mib * 2 ** 20 / 1e9 if mib else None)


def usable_cpus(environ: "os._Environ[str] | dict[str, str] | None" = None) -> int:
    """CPUs this process may use: its affinity mask, capped by a CPU quota of its cgroup (or an
    ancestor's: v2 or v1) and by its SLURM job's CPUs (:func:`slurm_allocation`); at least 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    for limit in (_cgroup_cpu_limit(), slurm_allocation(environ)[0]):
        if limit:
            n = min(n, limit)
    return max(1, n)


def total_memory_gb(environ: "os._Environ[str] | dict[str, str] | None" = None) -> float:
    """The memory (GB) this process may use: the machine's, capped by a memory limit of its cgroup
    (or an ancestor's: v2 or v1) and by its SLURM job's memory (:func:`slurm_allocation`)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        total = float("inf")
    limit = _cgroup_memory_limit()
    if limit:
        total = min(total, limit / 1e9)
    job = slurm_allocation(environ)[1]
    return min(total, job) if job else total


#: the address space (``ulimit -v``, RLIMIT_AS; GB) below which no registration can run: torch alone
#: needs 0.75-0.9 GB of it to load (below, ``ImportError: libtorch_cpu.so: failed to map segment`` or
#: ``std::bad_alloc``, an abort); a 10,242-vertex hemisphere registered in 1.13 GB, a 163,842-vertex
#: one in 1.33 GB (failed at 1.23), 2 CPUs (more threads reserve more)
ADDRESS_SPACE_FLOOR_GB = 1.1


def address_space_limit_gb() -> float | None:
    """This process's address-space limit (``ulimit -v``, soft RLIMIT_AS) in GB; None without one."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError, AttributeError):
        return None
    return None if soft == resource.RLIM_INFINITY or soft <= 0 else soft / 1e9


def address_space_problem(sphere: str | Path | None = None) -> str | None:
    """Why no registration can run under this process's address-space limit (``ulimit -v`` below
    :data:`ADDRESS_SPACE_FLOOR_GB`), on one line; None where it can. Before, torch's import failed
    with a 22-line ``ImportError`` traceback, or the run went on to ``error: Cannot allocate memory at
    .../torch/_logging`` or ``std::bad_alloc`` (an abort), none of them naming the limit. It is asked before
    torch loads, when the spheres may not be found yet: a ``sphere`` file (geomorph-register's) of more than
    163,842 vertices (its header, read only under such a limit) quotes that sphere's need; else the least a
    registration needs, and that larger spheres need more."""
    limit = address_space_limit_gb()
    if limit is None or limit >= ADDRESS_SPACE_FLOOR_GB:
        return None
    from ..io.discover import surface_vertex_count

    n_vertices = None if sphere is None else surface_vertex_count(sphere)
    if high_resolution(n_vertices):
        need = f"of this {n_vertices:,}-vertex sphere about {registration_needs_gb(n_vertices)[1]:g} GB"
    else:
        need = (f"more, {REGISTRATION_NEEDS_GB[10242][1]:.2g} GB at the least (10,242 vertices; "
                f"{REGISTRATION_NEEDS_GB[163842][1]:.2g} GB at 163,842, more above)")
    return (f"the address-space limit (ulimit -v) is {limit:.2f} GB: torch needs about 0.9 GB of address space to "
            f"load and a registration {need}: raise it (ulimit -v unlimited, or a cluster's virtual-memory limit) and "
            "run the command again")


#: the names torch's CUDA out-of-memory error goes by (``torch.OutOfMemoryError``, a RuntimeError; a crash
#: file writes it with or without its module)
GPU_OUT_OF_MEMORY_NAMES = ("OutOfMemoryError", "torch.OutOfMemoryError", "torch.cuda.OutOfMemoryError")


def is_gpu_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is torch's CUDA out-of-memory error (checked by name: torch need not be imported)."""
    return type(exc).__name__ == "OutOfMemoryError" and isinstance(exc, RuntimeError)


#: what to do when a registration ran out of GPU memory
GPU_MEMORY_ADVICE = ("other processes or registrations hold the GPU's memory: free it, run fewer at once (--nprocs, "
                     "--batch-size), or use --device cpu")


def gpu_out_of_memory(message: str, advice: str = GPU_MEMORY_ADVICE) -> str:
    """torch's CUDA out-of-memory message (``CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total
    capacity of 139.81 GiB of which 1.12 GiB is free. Including non-PyTorch memory, ...``, ~600 characters
    ending in advice on its allocator) as one line: what was asked and what was free, then ``advice``."""
    text = " ".join(message.split())
    found = re.match(r"(.*?\bis free)\.", text) or re.match(r"(.*?)\. ", text)
    what = found.group(1) if found else (text or "CUDA out of memory")
    return f"out of GPU memory ({what}); {advice}"


def out_of_memory(exc: MemoryError, n_vertices: int | None = None) -> str:
    """A ``MemoryError`` as one line that says what limit was met and what a registration needs:
    ``out of memory (Unable to allocate 7.50 MiB ...); the address-space limit (ulimit -v) is 1.23 GB,
    a 163,842-vertex hemisphere needs about 1.3 GB of it ...``; for a sphere of more than 163,842
    vertices (``n_vertices``, when known) what that one needs (:func:`~geomorph_bids.engine.device.registration_needs_gb`)."""
    what = " ".join(str(exc).split()) or "MemoryError"
    limit = address_space_limit_gb()
    small, large = REGISTRATION_NEEDS_GB[10242], REGISTRATION_NEEDS_GB[163842]
    if high_resolution(n_vertices):  # a high-resolution mesh: the range above would not do
        need = registration_needs_gb(n_vertices)
        who = f"a registration of this {n_vertices:,}-vertex sphere"
        space, memory = f"{need[1]:g} GB of it", f"{need[0]:g} GB"
    else:
        who = "a registration"
        space = f"{small[1]:.2g} GB of it (10,242 vertices) to {large[1]:.2g} GB (163,842)"
        memory = f"{small[0]:.2g} GB (10,242 vertices) to {large[0]:.2g} GB (163,842)"
    if limit is not None:
        where = f"the address-space limit (ulimit -v) is {limit:.2f} GB; {who} needs about {space}: raise it"
    else:
        where = f"this process may use {total_memory_gb():.1f} GB; {who} needs about {memory}: give it more memory"
    return f"out of memory ({what}); {where}"


#: what OpenMP reads from OMP_NUM_THREADS: a positive count, or counts per nesting level (4,2)
_OMP_THREADS = re.compile(r"\s*[1-9][0-9]*\s*(,\s*[1-9][0-9]*\s*)*")


def drop_unusable_thread_settings(prog: str, environ: "os._Environ[str] | dict[str, str] | None" = None) -> None:
    """Remove an ``OMP_NUM_THREADS`` that is no thread count (``abc``, ``0``, ``-1``, empty: an unset
    ``$SLURM_CPUS_PER_TASK`` exported) before torch starts OpenMP, with one warning line; before, the
    run went on but libgomp printed ``libgomp: Invalid value for environment variable
    OMP_NUM_THREADS`` after a blank line, naming no command. The threads per registration are
    ``--omp-nthreads``'s (``torch.set_num_threads``), whatever the variable says. The same for
    ``MKL_NUM_THREADS``, which torch also reads: one that is no number (``abc``) held torch to one
    thread in silence (geomorph-register, geomorph-train without ``--threads``)."""
    env = os.environ if environ is None else environ
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        value = env.get(name)
        if value is None or _OMP_THREADS.fullmatch(value):
            continue
        del env[name]
        say(f"{prog}: warning: {name}={value!r} is not a number of threads (a whole number >= 1); "
            "ignored", file=sys.stderr)


def threads_within_usable_cpus(environ: "os._Environ[str] | dict[str, str] | None" = None) -> int | None:
    """Where this process may use fewer CPUs than its affinity mask lists (a cgroup CPU quota:
    ``docker --cpus 2``, Kubernetes limits; a SLURM job's ``--cpus-per-task`` on a node that does not
    confine jobs), hold the libraries' thread pools to those CPUs: ``OMP_NUM_THREADS`` set to
    :func:`usable_cpus` (read by torch when it is imported, and by the worker processes started
    from here), and numpy's BLAS, already loaded, limited to as many. torch and OpenBLAS count the
    affinity mask (or the host's cores) and know nothing of a quota: geomorph-register, the
    workflow's other steps and geomorph-train without ``--threads`` ran one thread per host CPU
    (64 in a 2-CPU container on a 64-core node: the quota's time spent in a few milliseconds, then
    the whole pool throttled). A user's own ``OMP_NUM_THREADS`` is kept (and numpy's BLAS left
    alone where ``OPENBLAS_NUM_THREADS`` or ``MKL_NUM_THREADS`` is set). Returns the count set, or
    None (no quota below the mask, or the user's setting kept). ``--omp-nthreads`` and batch
    workers still set their own counts (``torch.set_num_threads``)."""
    env = os.environ if environ is None else environ
    try:
        mask = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        mask = os.cpu_count() or 1
    usable = usable_cpus(env)
    if usable >= mask or "OMP_NUM_THREADS" in env:  # the user's (one that is no count: dropped, then called again)
        return None
    env["OMP_NUM_THREADS"] = str(usable)
    if environ is None:  # this process's libraries, where they are loaded already
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(min(torch.get_num_threads(), usable))
        if not any((env.get(name) or "").strip() for name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")):
            try:
                from threadpoolctl import threadpool_limits
            except ImportError:  # a declared dependency; without it BLAS keeps its pool
                return usable
            threadpool_limits(usable, user_api="blas")
    return usable


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


def temporary_folder_in(fallback: Path | None,
                        environ: "os._Environ[str] | dict[str, str] | None" = None) -> Path | None:
    """Where no temporary folder can be made at all (``TMPDIR``, ``/tmp``, ``/var/tmp``, ``/usr/tmp``
    and the current folder unwritable: ``docker run --read-only`` without a tmpfs on ``/tmp``, the
    work folder bound), make one in ``fallback`` (the run's work folder, when it exists) and point
    ``TMPDIR`` and :mod:`tempfile` at it, for this process and the ones it starts: the reports'
    process pool and batch mode's forkserver need one (the run stopped with ``error: no such file``
    once the registrations were written), Matplotlib too. Removed at exit. Returns the folder made,
    or None (a temporary folder can be made, or ``fallback`` cannot hold one)."""
    import shutil
    import tempfile

    env = os.environ if environ is None else environ
    try:
        tempfile.gettempdir()
        return None
    except OSError:  # FileNotFoundError: "No usable temporary directory found in [...]"
        pass
    if fallback is None or not Path(fallback).is_dir():
        return None
    try:
        made = Path(tempfile.mkdtemp(prefix=".tmp-", dir=fallback))
    except OSError:
        return None
    env["TMPDIR"] = str(made)
    if environ is None:
        tempfile.tempdir = str(made)
    # removed at exit after multiprocessing's own folders in it (their exit priority is -100), which
    # an atexit function could remove first, whoever imported multiprocessing before
    from multiprocessing import util

    util.Finalize(None, shutil.rmtree, args=(str(made), True), exitpriority=-200)
    return made


def matplotlib_config_in_tmp(environ: "os._Environ[str] | dict[str, str] | None" = None) -> Path | None:
    """Where ``HOME`` cannot hold Matplotlib's configuration and font cache (a read-only or missing
    home on a compute node or in a container; ``MPLCONFIGDIR`` unset), or the ``MPLCONFIGDIR`` given
    cannot be written (the image's ``/tmp/matplotlib`` under ``docker run --read-only`` without a
    tmpfs on ``/tmp``: every report lost its figures), give it a private temporary folder before it
    is imported (call :func:`temporary_folder_in` first where there may be none), removed when the
    command ends, as Matplotlib itself would make one, but without its two log lines on every run
    and in every SLURM task's log (``mkdir -p failed for path /home/u/.config/matplotlib ...``,
    ``Matplotlib created a temporary cache directory ...``). Returns the folder made, or None (a
    writable home or ``MPLCONFIGDIR``)."""
    import atexit
    import shutil
    import tempfile

    env = os.environ if environ is None else environ
    given = env.get("MPLCONFIGDIR")
    try:
        if given:
            folder = Path(given)
        else:
            base = Path(env.get("XDG_CONFIG_HOME") or Path(env.get("HOME") or Path.home()) / ".config")
            folder = base / "matplotlib"
        folder.mkdir(parents=True, exist_ok=True)
        if folder.is_dir() and os.access(folder, os.W_OK):
            return None
    except (OSError, RuntimeError):
        pass
    try:
        made = Path(tempfile.mkdtemp(prefix="matplotlib-"))
    except OSError:  # Matplotlib will say why, as before
        return None
    env["MPLCONFIGDIR"] = str(made)
    atexit.register(shutil.rmtree, made, True)
    return made


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

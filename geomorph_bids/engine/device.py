"""The one place a device specification becomes a torch device (registration and training).

Entry points resolve the user's ``--device`` / ``device=`` once with :func:`resolve_device` and
hand the result down; layers below use it as given.
"""

from __future__ import annotations

import functools
import math
import os
import re
import subprocess
import sys
from typing import Any

__all__ = ["REGISTRATION_NEEDS_GB", "BATCH_HEMISPHERE_GB", "STANDARD_MAX_VERTICES", "high_resolution",
           "registration_needs_gb", "batch_share", "resolve_device", "NoGpuVisible"]


class NoGpuVisible(ValueError):
    """CUDA asked for by name, with a CUDA build of torch, where no GPU is visible and nothing hides them
    (``CUDA_VISIBLE_DEVICES`` not empty): a machine without one, or a container given none (the command
    lines add the flag that gives it one: :func:`~geomorph_bids.cli.container.with_gpu_flag`)."""

#: what one registration needs of the machine (GB): (memory, address space) at 10,242, 163,842 and
#: 655,362 (ico-8, a high-resolution mesh) vertices, measured with geomorph-register (peak RSS, torch and
#: the libraries loaded included; the largest of default, rigid and ``--model sulc-fsLR``) and
#: ``ulimit -v``; docs/scaling.md, "Memory and CPUs". The workflow's registration step reserves
#: :func:`registration_needs_gb` of its sphere from Nipype's ``--mem-gb``; the command line checks
#: ``--mem-gb`` and ``ulimit -v``
REGISTRATION_NEEDS_GB = {10242: (0.45, 1.13), 163842: (0.66, 1.33), 655362: (1.15, 1.64)}
#: the largest standard mesh (fsaverage, fsLR 164k): what a registration needs grows beyond it
STANDARD_MAX_VERTICES = 163842


def high_resolution(n_vertices: int | None) -> bool:
    """Whether a sphere of ``n_vertices`` (None: unknown, not) is larger than :data:`STANDARD_MAX_VERTICES`, where
    :func:`registration_needs_gb` grows with it."""
    return n_vertices is not None and n_vertices > STANDARD_MAX_VERTICES


def registration_needs_gb(n_vertices: int | None) -> tuple[float, float]:
    """(memory, address space) in GB that one registration of an ``n_vertices`` sphere needs: the
    163,842-vertex figures up to that size (or when the count is unknown, None), and beyond it the line
    through the 163,842- and 655,362-vertex measurements (FastSurfer's and FreeSurfer's ``-hires``
    meshes, 250k-450k: 0.75-0.95 GB), rounded up to 0.01 GB. Measured at 300,000 vertices: 0.70-0.76 GB
    of memory (0.80 estimated)."""
    base = REGISTRATION_NEEDS_GB[STANDARD_MAX_VERTICES]
    if not high_resolution(n_vertices):
        return base
    far = REGISTRATION_NEEDS_GB[655362]
    share = (int(n_vertices) - STANDARD_MAX_VERTICES) / (655362 - STANDARD_MAX_VERTICES)
    return tuple(math.ceil(100 * (b + share * (f - b)) - 1e-9) / 100 for b, f in zip(base, far))  # type: ignore[return-value]


#: what one hemisphere of 163,842 vertices or fewer adds to a batch-mode worker's registration batch (GB;
#: ``--batch-size`` is sized from it)
BATCH_HEMISPHERE_GB = 0.06


def batch_share(n_vertices: int | None) -> int:
    """How many hemispheres' places in a batch-mode registration batch (``--batch-size``) one of ``n_vertices``
    takes: 1 up to 163,842 vertices (or unknown), and for a larger sphere 1 more per :data:`BATCH_HEMISPHERE_GB`
    of what it needs beyond a 163,842-vertex one (:func:`registration_needs_gb`): 4 at 300,000 vertices, 10 at
    655,362 (measured: a worker grew by 0.18 and 0.47 GB per hemisphere of those, 0.06 assumed)."""
    extra = registration_needs_gb(n_vertices)[0] - REGISTRATION_NEEDS_GB[163842][0]
    return 1 + max(0, math.ceil(round(extra / BATCH_HEMISPHERE_GB, 9)))


def resolve_device(device: Any = "auto", check_driver: bool = False) -> Any:
    """``"auto"`` (or None) -> CUDA if torch counts a GPU and can use it, else CPU; ``"cpu"`` (``"cpu:N"``, as
    ``torch.device("cpu", 0)`` prints, is the CPU); ``"cuda"`` / ``"cuda:N"``; ``"mps"``; or a
    ``torch.device`` (checked the same way). Returns a ``torch.device``.

    Raises a one-line ValueError for an unknown specification, CUDA (or MPS) requested but not
    available, or a CUDA index beyond the visible devices; with ``check_driver`` (the command lines,
    which resolve once before any work) also for CUDA requested on GPUs torch cannot use (a driver
    too old for its CUDA build), asked as ``auto`` asks it. CUDA is not initialised here
    (:func:`_cuda_count`): a caller may fork workers that use it.
    """
    import torch

    spec = "auto" if device is None else str(device).strip().lower()
    if spec == "auto":
        return torch.device("cuda" if _cuda_count(torch) > 0 and _cuda_works(torch) else "cpu")
    if spec == "cpu" or (spec.startswith("cpu:") and spec[4:].isdigit()):  # torch's CPU has no index but 0
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        count = _cuda_count(torch)
        if count < 1:
            if torch.version.cuda is None:
                why = "this torch build has no CUDA support"
            elif os.environ.get("CUDA_VISIBLE_DEVICES") is not None and not os.environ["CUDA_VISIBLE_DEVICES"].strip():
                why = "no CUDA GPU is visible: CUDA_VISIBLE_DEVICES is set but empty"
            else:
                why = "no CUDA GPU is visible"
            kind = NoGpuVisible if why == "no CUDA GPU is visible" else ValueError
            raise kind(f"device {spec!r} requested but CUDA is not available ({why}); use device cpu or auto")
        dev = _parse(torch, spec)
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {spec!r} requested but only {count} CUDA device(s) are visible")
        if check_driver and (problem := _cuda_problem(torch)) is not None:
            raise ValueError(f"device {spec!r} requested but torch {torch.__version__} (built for CUDA "
                             f"{torch.version.cuda}) cannot use the {count} GPU(s) it sees ({problem}); update the "
                             "NVIDIA driver, or use device cpu")
        return dev
    if spec == "mps" or spec.startswith("mps:"):
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {spec!r} requested but MPS is not available; use device cpu or auto")
        return _parse(torch, spec)
    raise ValueError(f"unknown device {spec!r}: use auto, cpu, cuda or cuda:N")


def _cuda_count(torch: Any) -> int:
    """The CUDA devices this process sees (``CUDA_VISIBLE_DEVICES`` applied), counted through NVML
    where it answers, so without initialising CUDA here. ``torch.cuda.is_available()`` initialises
    the driver, and a process that has done so cannot fork workers that use CUDA: the BIDS-App
    resolves ``--device`` in its main process and Nipype's MultiProc forks its workers, each of whose
    registrations then failed with torch's 'Cannot re-initialize CUDA in forked subprocess'."""
    return int(torch.cuda.device_count())


def _cuda_works(torch: Any) -> bool:
    """Whether torch can use the GPUs it counts (a driver too old for its CUDA build cannot), for
    ``auto``: asked of torch itself, in a child process where this one has not initialised CUDA
    (:func:`_cuda_count`), once per process."""
    if torch.cuda.is_initialized():
        return bool(torch.cuda.is_available())
    return _cuda_works_in_a_child(sys.executable)


def _cuda_works_in_a_child(python: str) -> bool:
    return _cuda_problem_in_a_child(python) is None


def _cuda_problem(torch: Any) -> str | None:
    """Why torch cannot use the GPUs it counts (:func:`_cuda_problem_in_a_child`), None when it can."""
    if torch.cuda.is_initialized():
        return None if torch.cuda.is_available() else "torch.cuda.is_available() is False"
    return _cuda_problem_in_a_child(sys.executable)


#: asks torch in a child process; prints the first line of its CUDA warning when it cannot use the GPU
_CHILD_CODE = """import sys, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import torch
    ok = torch.cuda.is_available()
said = [" ".join(str(w.message).split()) for w in caught if "CUDA" in str(w.message) or "driver" in str(w.message)]
print(said[0] if said and not ok else "")
sys.exit(0 if ok else 3)
"""


@functools.lru_cache(maxsize=None)
def _cuda_problem_in_a_child(python: str) -> str | None:
    """None when torch, in a child process of ``python``, can use CUDA; else why not in a few words: torch's
    warning without its advice (``The NVIDIA driver on your system is too old (found version 11040)``), or
    ``torch.cuda.is_available() is False``. Once per process."""
    try:
        done = subprocess.run([python, "-c", _CHILD_CODE], capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"torch could not be asked: {type(exc).__name__}"
    if done.returncode == 0:
        return None
    said = done.stdout.strip().removeprefix("CUDA initialization:").strip()
    said = re.split(r"\.?\s+(?:Please|Alternatively|\(Triggered)", said)[0].rstrip(".")
    return said or "torch.cuda.is_available() is False"


def _parse(torch: Any, spec: str) -> Any:
    try:
        return torch.device(spec)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {spec!r}: use auto, cpu, cuda or cuda:N") from None

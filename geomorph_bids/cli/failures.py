"""What went wrong in a participant run, one line per subject/session/hemisphere: the
:class:`Failure` record, the failures Nipype's crash files report, and their deduplication."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..crashfiles import read_crash_file
from ..errors import describe_os_error

__all__ = ["Failure", "crash_failures", "one_per_hemisphere"]


@dataclass(frozen=True)
class Failure:
    """A subject/session/hemisphere that produced no outputs, and why (one line)."""

    subject: str
    session: str | None
    hemi: str  # "L", "R" or "L,R"
    reason: str

    def line(self) -> str:
        """``sub-X[ ses-Y] hemi-H: reason`` on one line: a reason spread over lines (a crash file's
        error continued on a tab-indented line, a path holding a newline) is joined with spaces."""
        ses = f" ses-{self.session}" if self.session else ""
        return f"sub-{self.subject}{ses} hemi-{self.hemi}: {' '.join(self.reason.split())}"


def crash_failures(crash_dir: Path, names: dict[str, tuple[str, str | None]]) -> list[Failure]:
    """Failures recorded in Nipype's crash files (``crash-*.txt`` in ``crash_dir``), mapped to
    subject/session/hemisphere through the workflow names (``names``: subject workflow name ->
    (subject, session))."""
    out = []
    for path in sorted(crash_dir.glob("crash-*.txt")):
        crash = read_crash_file(path)
        if crash is None:
            continue
        subject_wf = next((p for p in crash.nodes if p in names), None)
        if subject_wf is None:
            continue
        subject, session = names[subject_wf]
        out.append(Failure(subject, session, crash.hemi or "L,R", f"{readable(crash.error)} (node {crash.node}; {path})"))
    return out


_ERRNO_LINE = re.compile(r"^(?:\w+Error): \[Errno (\d+)\] ([^:]+?)(?:: '(.*?)')?(?:\s*->\s*'(.*?)')?$")


def readable(error: str) -> str:
    """A crash file's innermost error as the user should read it: ``OSError: [Errno 28] No space
    left on device: '/w/x.json'`` -> ``no space left on device (disk full) writing /w/x.json``;
    numpy's and Python's ``MemoryError`` (``_ArrayMemoryError: Unable to allocate ...``) -> ``out of
    memory (...); the address-space limit (ulimit -v) is ...`` (:func:`~.machine.out_of_memory`: the
    limit met and what a registration needs); torch's CUDA ``OutOfMemoryError`` -> ``out of GPU memory (...);
    ...`` (:func:`~.machine.gpu_out_of_memory`); other errors unchanged."""
    kind, sep, rest = error.strip().partition(": ")
    from .machine import GPU_OUT_OF_MEMORY_NAMES

    if kind in GPU_OUT_OF_MEMORY_NAMES:
        from .machine import gpu_out_of_memory

        return gpu_out_of_memory(rest)
    if kind in ("MemoryError", "_ArrayMemoryError") or error.strip() == "MemoryError":
        from .machine import out_of_memory

        return out_of_memory(MemoryError(rest if sep else ""))
    m = _ERRNO_LINE.match(error.strip())
    if not m:
        return error
    exc = OSError(int(m.group(1)), m.group(2), m.group(3), None, m.group(4))
    return describe_os_error(exc)


def one_per_hemisphere(failures: Iterable[Failure]) -> list[Failure]:
    """The first failure of each subject/session/hemisphere (in batch mode two nodes may
    report the same bad input)."""
    unique: dict[tuple, Failure] = {}
    for f in failures:
        unique.setdefault((f.subject, f.session, f.hemi), f)
    return list(unique.values())

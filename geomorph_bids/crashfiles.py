"""Nipype crash files: which subject, session and hemisphere they belong to, and their error.

The participant workflows are named by :func:`subject_wf_name` and :func:`hemi_wf_name`; a crash
file's first line (``Node: <workflow>.<...>.<node>``) names that hierarchy, which the command
line's failure summary and the participant report map back through the same two functions.
Batch mode (no Nipype) records its failures in the same format (:func:`crash_file`), so
both modes report them the same way. Plain text only (no Nipype import).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

__all__ = ["subject_wf_name", "subject_of_wf", "hemi_wf_name", "hemi_of_nodes", "TOP_WF_NAME", "work_depth", "CrashRecord", "crash_nodes",
           "read_crash_file", "innermost_error", "crash_file"]


#: Nipype marks a step's cache file ``<hash>_unfinished.json`` and, once the step is done, renames it
#: with ``str.replace("_unfinished", "")`` over the whole path: any other ``_unfinished`` in the path
#: is removed too, and the step's result is looked for where it is not
NIPYPE_UNFINISHED = "_unfinished"


def subject_wf_name(subject: str, session: str | None) -> str:
    """Workflow name of a subject/session, e.g. ``sub_01_ses_pre_wf`` (labels are alphanumeric).

    A label that starts with ``unfinished`` (a FreeSurfer subject ``unfinished2``, a session
    ``unfinishedscan``) would put :data:`NIPYPE_UNFINISHED` into every step's path, and Nipype's
    rename would then lose every result: such a name is spelt with dashes instead
    (``sub-unfinished2_wf``), which no other label gives and Nipype accepts."""
    name = f"sub_{subject}" + (f"_ses_{session}" if session else "") + "_wf"
    if NIPYPE_UNFINISHED in name:
        name = f"sub-{subject}" + (f"_ses-{session}" if session else "") + "_wf"
    return name


_SUBJECT_WF = re.compile(r"sub[-_]([A-Za-z0-9]+)(?:_ses[-_]([A-Za-z0-9]+))?_wf")


def subject_of_wf(name: str) -> tuple[str, str | None] | None:
    """``(subject, session or None)`` of a workflow named by :func:`subject_wf_name`, else None."""
    m = _SUBJECT_WF.fullmatch(name)
    return None if m is None or subject_wf_name(m.group(1), m.group(2)) != name else (m.group(1), m.group(2))


def hemi_wf_name(hemi: str) -> str:
    """Workflow name of a hemisphere, e.g. ``hemi_L_wf``."""
    return f"hemi_{hemi}_wf"


def hemi_of_nodes(nodes: Sequence[str]) -> str | None:
    """``"L"``/``"R"`` of the hemisphere workflow (:func:`hemi_wf_name`) in a crash file's node
    hierarchy, else None."""
    wf = next((p for p in nodes if p.startswith("hemi_") and p.endswith("_wf")), None)
    return wf[len("hemi_"):-len("_wf")] if wf else None


#: the participant level's top workflow (its folder in the work directory)
TOP_WF_NAME = "geomorph_wf"

#: the longest node name of a hemisphere's workflow (``load_features``, ``write_outputs``: 13 characters)
LONGEST_NODE_NAME = "write_outputs"

#: a step's cache file while it runs, Nipype's longest name in a node's folder
_RUNNING_STEP_FILE = "_0x" + "0" * 32 + NIPYPE_UNFINISHED + ".json"


def work_depth(subject: str, session: str | None) -> int:
    """Bytes of the deepest path Nipype writes below the work directory for this subject/session:
    ``/geomorph_wf/sub_01_wf/hemi_L_wf/write_outputs/_0x<32 hex>_unfinished.json`` (98 for
    sub-01; a work directory whose path is longer than ``PATH_MAX - 1`` less this fails every
    step: measured 3997 bytes run, 3998 fail)."""
    parts = (TOP_WF_NAME, subject_wf_name(subject, session), hemi_wf_name("L"), LONGEST_NODE_NAME,
             _RUNNING_STEP_FILE)
    return sum(1 + len(part.encode()) for part in parts)


@dataclass(frozen=True)
class CrashRecord:
    """One crash file: ``nodes`` is the hierarchy of its ``Node:`` line (workflows, then the
    node), ``error`` the innermost exception line of its traceback."""

    path: Path
    nodes: tuple[str, ...]
    error: str

    @property
    def node(self) -> str:
        """The node that failed (last element of the hierarchy), or ''."""
        return self.nodes[-1] if self.nodes else ""

    @property
    def hemi(self) -> str | None:
        """``"L"``/``"R"`` when the hierarchy holds a hemisphere workflow, else None."""
        return hemi_of_nodes(self.nodes)


def innermost_error(traceback: str | list[str]) -> str:
    """The innermost exception line of a (Nipype) traceback, without the module path, e.g.
    ``InputError: sub-01 hemi-L lh.sulc: is empty (0 bytes)``."""
    text = "".join(traceback) if isinstance(traceback, list) else str(traceback)
    best = ""
    for line in text.splitlines():
        head, sep, rest = line.strip().partition(": ")
        if sep and head.replace(".", "").replace("_", "").isalnum() and head.endswith(("Error", "Exception")):
            kind = head.rsplit(".", 1)[-1]
            if kind not in ("NodeExecutionError", "RuntimeError") or not best:
                best = f"{kind}: {rest}"
    return best or (text.strip().splitlines() or ["unknown error"])[-1]


def _nodes_of(first_line: str) -> tuple[str, ...]:
    """The hierarchy of a crash file's first line (``Node: a.b.c`` -> ``("a", "b", "c")``), () for another line."""
    return tuple(first_line[len("Node: "):].strip().split(".")) if first_line.startswith("Node: ") else ()


@lru_cache(maxsize=65536)
def _first_line_nodes(path: str, size: int, mtime_ns: int) -> tuple[str, ...]:
    """:func:`_nodes_of` the first line of ``path`` (its first 4 KiB), remembered per file version
    (size, mtime): a process building many reports reads each crash file's first line once."""
    with open(path, "rb") as handle:
        first = handle.read(4096).decode("utf-8", errors="replace").splitlines()[:1]
    return _nodes_of(first[0] if first else "")


def crash_nodes(path: str | Path) -> tuple[str, ...]:
    """The hierarchy of a crash file's ``Node:`` line (its first 4 KiB only), () when it cannot
    be read: which subject and hemisphere it belongs to, without reading the traceback."""
    try:
        st = os.stat(path)
        return _first_line_nodes(str(path), st.st_size, st.st_mtime_ns)
    except OSError:
        return ()


def read_crash_file(path: str | Path) -> CrashRecord | None:
    """A Nipype crash file (``crashfile_format: txt``), or None when it cannot be read."""
    try:
        with open(path, "rb") as handle:  # our own files; bounded all the same (16 MiB)
            text = handle.read(16 * 2 ** 20).decode("utf-8", errors="replace")
    except OSError:
        return None
    return CrashRecord(Path(path), _nodes_of(text.splitlines()[0] if text else ""), innermost_error(text))



def crash_file(nodes: tuple[str, ...], traceback: str) -> tuple[str, str]:
    """(file name, text) of a crash file in Nipype's text format: ``Node: a.b.c``, then the
    traceback, whose last exception line :func:`read_crash_file` reports (the caller writes it
    into the run's crash folder)."""
    import time
    import uuid

    name = f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{'.'.join(nodes)}-{uuid.uuid4().hex[:8]}.txt"
    return name, f"Node: {'.'.join(nodes)}\n\n{traceback.rstrip()}\n"

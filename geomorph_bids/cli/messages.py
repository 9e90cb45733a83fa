"""How the commands talk to the user besides their results: warnings on one line each."""

from __future__ import annotations

import contextlib
import sys
import warnings
from typing import Iterator

__all__ = ["one_line_warnings"]


@contextlib.contextmanager
def one_line_warnings(prog: str) -> Iterator[None]:
    """Within the block (and in processes forked from it), a Python warning is printed as
    ``<prog>: warning: <message>`` on one line of stderr, without the source file and line
    Python shows by default."""
    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001 - warnings' signature
        print(f"{prog}: warning: {' '.join(str(message).split())}", file=file or sys.stderr, flush=True)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield

"""Exit codes of every geomorph-bids command (``geomorph-bids``, ``geomorph-register``,
``geomorph-train``) and the one way bad input ends one.

- 0 (:data:`EXIT_OK`): everything requested succeeded;
- 1 (:data:`EXIT_FAILED`): bad input or arguments found after parsing (one line on stderr,
  ``<prog>: error: ...``), or a subject/hemisphere that failed (the BIDS-App lists each one and
  keeps the others' outputs);
- 2 (:data:`EXIT_USAGE`): a usage error found by the argument parser.
"""

from __future__ import annotations

import sys

from ..errors import InputError

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "HANDLED", "error_exit"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

#: the exceptions a command reports on one line (bad input), rather than as a traceback
HANDLED = (InputError, ValueError, OSError)


def error_exit(prog: str, error: BaseException | str) -> int:
    """Print ``<prog>: error: <one line>`` on stderr; returns :data:`EXIT_FAILED`."""
    print(f"{prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
    return EXIT_FAILED

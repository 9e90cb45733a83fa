"""Exit codes of every geomorph-bids command (``geomorph-bids``, ``geomorph-register``,
``geomorph-train``) and the one way bad input ends one.

- 0 (:data:`EXIT_OK`): everything requested succeeded;
- 1 (:data:`EXIT_FAILED`): bad input or arguments found after parsing (one line on stderr,
  ``<prog>: error: ...``), or a subject/hemisphere that failed (the BIDS-App lists each one and
  keeps the others' outputs);
- 2 (:data:`EXIT_USAGE`): a usage error found by the argument parser;
- 3 (:data:`EXIT_FLAGGED`): everything requested was written, but at least one hemisphere
  failed a quality gate (:mod:`geomorph_bids.quality`; the BIDS-App lists each as
  ``FLAGGED sub-X hemi-L: <reasons>``), or (the group level) a hemisphere's row is stale, an
  earlier run's outputs kept after its latest participant run failed (``STALE ...``); a run with
  failures exits 1 whatever was flagged;
- 128 + N (:func:`interrupted`): stopped by signal N (130 Ctrl-C/SIGINT, 143 SIGTERM,
  129 SIGHUP) after stopping its workers and releasing its locks; Ctrl-C while a console script
  is still importing its command is the same one line and 130 (:mod:`.launch`).

:func:`run_exit_code` is the one mapping from a run's failures and flags to its code.
"""

from __future__ import annotations

import sys

from ..errors import InputError, describe_os_error
from .messages import one_line

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_FLAGGED", "HANDLED", "error_exit", "run_exit_code",
           "interrupted"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_FLAGGED = 3

#: the exceptions a command reports on one line (bad input), rather than as a traceback
HANDLED = (InputError, ValueError, OSError)


def run_exit_code(n_failed: int, n_flagged: int) -> int:
    """The code of a run with ``n_failed`` failures and ``n_flagged`` flagged hemispheres:
    failures first (1), then flags (3), else 0."""
    return EXIT_FAILED if n_failed else EXIT_FLAGGED if n_flagged else EXIT_OK


def interrupted(prog: str, signal_name: str, signum: int, detail: str = "") -> int:
    """Print the one line of a run stopped by a signal; returns ``128 + signum``."""
    print(f"{prog}: interrupted by {signal_name}{': ' + detail if detail else ''}", file=sys.stderr, flush=True)
    return 128 + int(signum)


def error_exit(prog: str, error: BaseException | str) -> int:
    """Print ``<prog>: error: <one line>`` on stderr (an OSError in words: what happened, and
    the file; :func:`~.messages.one_line`: control characters escaped, a path of thousands of characters
    shortened in its middle); returns :data:`EXIT_FAILED`."""
    if isinstance(error, OSError):
        error = describe_os_error(error)
    print(f"{prog}: error: {one_line(str(error))}", file=sys.stderr)
    return EXIT_FAILED

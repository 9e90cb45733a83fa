"""Other libraries' warnings silenced for a block, safely in a caller's threads.

``warnings.catch_warnings`` saves the process's warning filters on entry and puts them back on
exit (Python < 3.14 has no per-thread filters). Two such blocks overlapping in a caller's threads
(``register()`` from a thread pool: each read silences nibabel) interleave their saves and
restores: the block that ends last puts back the filters the other had set, and the caller's
process was left with ``ignore`` on every warning for good (geomorph-bids' own ``SphereWarning``
and ``FeatureWarning`` included). Every block of :func:`quiet_warnings` holds one lock, so ours
never overlap; what other threads warn while one runs may still be silenced, as with
``catch_warnings`` itself (:mod:`geomorph_bids.io.process_wide`).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

from .process_wide import Serial

__all__ = ["quiet_warnings"]

#: every :func:`quiet_warnings` block runs alone (re-entrant: a read inside a quieted read)
_FILTERS = Serial()


@contextlib.contextmanager
def quiet_warnings(category: type[Warning] = Warning, message: str = "") -> Iterator[None]:
    """Ignore warnings of ``category`` whose text starts with ``message`` (a regular expression, as
    ``warnings.filterwarnings`` reads it) inside the block; the filters restored afterwards."""
    with _FILTERS.block(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=message, category=category)
        yield

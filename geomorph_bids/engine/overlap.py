"""Two independent pieces of a registration at once, where the process may use a second CPU.

Most of a registration's CPU stages are single-threaded numpy, and on two cores the second one
idles through them. :func:`beside` runs a side task (e.g. the moving mesh's point locator and its
k-d tree, which do not depend on the rotation the rigid fit is looking for) in one worker thread
while the caller goes on with other work: numpy and scipy release the GIL inside their loops, so
the two overlap. The results are the same bits as one after the other (the same operations on the
same arrays; nothing is shared that either writes). With one usable CPU the side task runs when
its result is asked for, in the caller's thread, as it did before.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["beside", "usable_cpus"]

T = TypeVar("T")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@contextlib.contextmanager
def beside(fn: Callable[..., T], *args: Any, threaded: bool | None = None, **kwargs: Any
           ) -> Iterator[Callable[[], T]]:
    """Run ``fn(*args, **kwargs)`` beside the body of the ``with`` block.

    Yields a function that returns its result (re-raising its exception). ``threaded``: in a
    worker thread (started on entry) or, False, in the caller's thread when the result is first
    asked for; None: threaded where :func:`usable_cpus` > 1. On leaving the block the worker is
    waited for; an exception of the body wins over one of ``fn`` whose result was never asked
    for (as when ``fn`` ran after the body).
    """
    if threaded is None:
        threaded = usable_cpus() > 1
    if not threaded:
        done: list[T] = []

        def result() -> T:
            if not done:
                done.append(fn(*args, **kwargs))
            return done[0]

        yield result
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="geomorph-beside") as pool:
        future = pool.submit(fn, *args, **kwargs)
        yield future.result

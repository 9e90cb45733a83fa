"""Settings that are the whole process's, changed for a block by calls that may run at once in a
caller's threads.

torch's deterministic-algorithms switch and thread count, the BLAS libraries' thread count and
Python's warning filters (before 3.14) belong to the process. A block that saves such a setting on
entry and restores it on exit is right for one call at a time; two in a caller's threads
(``register()`` from a thread pool) interleave: A saves the caller's value and sets its own, B
saves A's, A restores the caller's while B still runs, and B restores A's, which the caller keeps
for good (one BLAS thread, one torch thread, deterministic algorithms on, every warning ignored).

:class:`Shared` makes the first block to start save the setting and the last to end restore it;
:class:`Serial` runs the blocks one at a time; :class:`ForkHooks` runs, in a forked child, the hooks of
the blocks running when it was forked (``os.register_at_fork`` registers for good: one registration per
block left one more function, and one more call at every later fork, per command run in a long-lived
process). Their instances are the package's only locks at module level (``tests/test_architecture.py`` refuses others): each forgets, in a child forked
while a block was running, the blocks of its parent (a fresh lock, no holder), as ``logging`` does
for its locks.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["ForkHooks", "Serial", "Shared"]


def _forget_in_children(instance: Any) -> None:
    me = weakref.ref(instance)
    os.register_at_fork(after_in_child=lambda: (lambda obj: obj and obj._forget())(me()))


class Shared:
    """One process-wide setting held by the blocks running at once: ``take()`` saves the caller's
    value when the first block starts (and sets ours), ``give_back(saved)`` restores it when the
    last one ends."""

    def __init__(self) -> None:
        self._forget()
        _forget_in_children(self)

    def _forget(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.saved: Any = None

    @contextlib.contextmanager
    def held(self, take: Callable[[], Any], give_back: Callable[[Any], None],
             each: Callable[[Any], None] | None = None) -> Iterator[None]:
        """The block holds the setting; ``each(saved)``, if given, runs as every block starts
        (e.g. a thread count that depends on the block, capped by the caller's saved one)."""
        with self.lock:
            if self.count == 0:
                self.saved = take()
            self.count += 1
            try:
                if each is not None:
                    each(self.saved)
            except BaseException:
                self._leave(give_back)
                raise
        try:
            yield
        finally:
            with self.lock:
                self._leave(give_back)

    def _leave(self, give_back: Callable[[Any], None]) -> None:
        self.count -= 1
        if self.count == 0:
            saved, self.saved = self.saved, None
            give_back(saved)


class Serial:
    """Blocks run one at a time (re-entrant in one thread)."""

    def __init__(self) -> None:
        self._forget()
        _forget_in_children(self)

    def _forget(self) -> None:
        self.lock = threading.RLock()

    @contextlib.contextmanager
    def block(self) -> Iterator[None]:
        with self.lock:
            yield


class ForkHooks:
    """Functions run in a child forked while they are held (:meth:`add` to :meth:`remove`, or a
    :meth:`while_held` block), in the order added; one ``os.register_at_fork`` per instance, made
    when it is created. A child keeps its parent's hooks (a process it forks in turn runs them too),
    with a fresh lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hooks: dict[int, Callable[[], None]] = {}
        self._tokens = itertools.count()
        me = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (lambda obj: obj and obj._in_child())(me()))

    def add(self, hook: Callable[[], None]) -> int:
        """Run ``hook()`` in every child forked from now on, until :meth:`remove` of the returned token."""
        with self.lock:
            token = next(self._tokens)
            self.hooks[token] = hook
        return token

    def remove(self, token: int) -> None:
        """Forked children no longer run the hook of ``token`` (an unknown token: nothing)."""
        with self.lock:
            self.hooks.pop(token, None)

    @contextlib.contextmanager
    def while_held(self, hook: Callable[[], None]) -> Iterator[None]:
        """``hook()`` runs in every child forked inside the block."""
        token = self.add(hook)
        try:
            yield
        finally:
            self.remove(token)

    def _in_child(self) -> None:
        self.lock = threading.Lock()  # another thread may have held the parent's at the fork
        for hook in list(self.hooks.values()):
            hook()

"""torch's deterministic-algorithms switch, without the second of imports it costs.

``torch.use_deterministic_algorithms`` sets one flag in torch's C++ core, and first imports
``torch._inductor.config`` to mirror it for ``torch.compile``: that import pulls in TorchDynamo,
sympy and mpmath (~800 modules, 0.9-1.0 s on 2 CPU cores), paid by every process that registers
or trains once, although nothing here compiles. :func:`deterministic` sets the core flag alone
while the inductor's configuration is not loaded (nothing in this process can compile then; if
it is loaded later, it reads its own default), and goes through the public function otherwise,
or on a torch without the core setter.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import torch

from ..io.process_wide import Shared

__all__ = ["deterministic", "deterministic_cpu_threads", "set_deterministic", "torch_threads"]


def set_deterministic(mode: bool, warn_only: bool = False) -> None:
    """Same effect as ``torch.use_deterministic_algorithms(mode, warn_only=warn_only)``."""
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    else:
        setter(bool(mode), warn_only=bool(warn_only))


@contextlib.contextmanager
def deterministic(mode: bool = True, warn_only: bool = True) -> Iterator[None]:
    """Deterministic algorithms switched to ``mode`` inside the block; the previous setting
    (and its warn-only flag) restored afterwards, also on an exception."""
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    set_deterministic(mode, warn_only)
    try:
        yield
    finally:
        set_deterministic(previous, previous_warn)


#: deterministic algorithms and torch's thread count, shared by the blocks running at once
_SETTINGS = Shared()


@contextlib.contextmanager
def deterministic_cpu_threads(threads: int | None = None) -> Iterator[None]:
    """Deterministic algorithms (warn-only) inside the block and, with ``threads``, at most that
    many torch CPU threads (never more than the caller had); the caller's settings restored when
    the last block running at once ends, also on an exception.

    :func:`deterministic` and a plain save/restore of ``torch.set_num_threads`` are right for one
    call at a time; two calls in a caller's threads interleaved their saves and restores, so the
    first to end switched determinism off under the other (its result no longer bit-reproducible)
    and the last restored what the first had set: deterministic algorithms left on and one torch
    thread left for the rest of the caller's process (:mod:`geomorph_bids.io.process_wide`).
    """
    def take() -> tuple[bool, bool, int]:
        saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                 torch.get_num_threads())
        set_deterministic(True, True)
        return saved

    def give_back(saved: tuple[bool, bool, int]) -> None:
        set_deterministic(saved[0], saved[1])
        torch.set_num_threads(saved[2])

    def each(saved: tuple[bool, bool, int]) -> None:
        if threads is not None:
            torch.set_num_threads(max(1, min(saved[2], int(threads))))

    with _SETTINGS.held(take, give_back, each):
        yield


#: torch's thread count as blocks of :func:`torch_threads` set it, shared by the blocks running at once
_THREADS = Shared()


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's CPU thread count set to ``threads`` inside the block (None or 0: left as it is), the
    caller's count restored when the last block running at once ends, also on an exception.

    For a step that runs inside someone else's process and must use as many threads as it was given
    (a Nipype node's ``num_threads``, more or fewer than the process had): ``torch.set_num_threads``
    alone left the count to every later node of a MultiProc worker and to a notebook running the
    workflow with the Linear plugin."""
    if not threads or int(threads) < 1:
        yield
        return
    with _THREADS.held(torch.get_num_threads, torch.set_num_threads,
                       lambda saved: torch.set_num_threads(int(threads))):  # noqa: ARG005 - held's signature
        yield

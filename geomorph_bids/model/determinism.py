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

__all__ = ["deterministic", "set_deterministic"]


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

"""Caching of constant tensors (index tables, icosphere geometry) shared by every model.

A table first built inside ``torch.inference_mode()`` (e.g. by ``register()``) would be an
"inference tensor", and any later training in the same process would fail when autograd
tries to save it. Building cached values with inference mode switched off makes the cache
independent of the caller's mode.
"""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

import torch

__all__ = ["cached_tables"]

F = TypeVar("F", bound=Callable)


def cached_tables(maxsize: int | None = None) -> Callable[[F], F]:
    """``functools.lru_cache`` whose values are always built as ordinary (non-inference) tensors."""

    def decorate(fn: F) -> F:
        @functools.lru_cache(maxsize=maxsize)
        @functools.wraps(fn)
        def build(*args, **kwargs):
            with torch.inference_mode(False), torch.no_grad():
                return fn(*args, **kwargs)

        return build  # type: ignore[return-value]

    return decorate

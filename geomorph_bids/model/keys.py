"""The one check of a configuration dictionary's keys (``from_dict`` of every stored config)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["check_keys"]


def check_keys(d: Any, allowed: Sequence[str], what: str, required: Sequence[str] = ()) -> None:
    """One-line ValueError unless ``d`` is a mapping whose keys are all in ``allowed`` and
    include every key in ``required`` (``what`` names the configuration in the message)."""
    if not isinstance(d, Mapping):
        raise ValueError(f"{what} must be a mapping, got {type(d).__name__}")
    unknown = sorted(map(str, set(d) - set(allowed)))
    if unknown:
        raise ValueError(f"unknown {what} keys: {', '.join(unknown)}")
    missing = [k for k in required if k not in d]
    if missing:
        raise ValueError(f"{what} lacks keys: {', '.join(missing)}")

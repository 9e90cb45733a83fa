"""The one place a device specification becomes a torch device (registration and training).

Entry points resolve the user's ``--device`` / ``device=`` once with :func:`resolve_device` and
hand the result down; layers below use it as given.
"""

from __future__ import annotations

from typing import Any

__all__ = ["resolve_device"]


def resolve_device(device: Any = "auto") -> Any:
    """``"auto"`` (or None) -> CUDA if available, else CPU; ``"cpu"`` (``"cpu:N"``, as
    ``torch.device("cpu", 0)`` prints, is the CPU); ``"cuda"`` / ``"cuda:N"``; ``"mps"``; or a
    ``torch.device`` (checked the same way). Returns a ``torch.device``.

    Raises a one-line ValueError for an unknown specification, CUDA (or MPS) requested but not
    available, or a CUDA index beyond the visible devices.
    """
    import torch

    spec = "auto" if device is None else str(device).strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu" or (spec.startswith("cpu:") and spec[4:].isdigit()):  # torch's CPU has no index but 0
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(f"device {spec!r} requested but CUDA is not available ({why}); "
                             "use device cpu or auto")
        dev = _parse(torch, spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {spec!r} requested but only {torch.cuda.device_count()} CUDA "
                             "device(s) are visible")
        return dev
    if spec == "mps" or spec.startswith("mps:"):
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {spec!r} requested but MPS is not available; use device cpu or auto")
        return _parse(torch, spec)
    raise ValueError(f"unknown device {spec!r}: use auto, cpu, cuda or cuda:N")


def _parse(torch: Any, spec: str) -> Any:
    try:
        return torch.device(spec)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {spec!r}: use auto, cpu, cuda or cuda:N") from None

"""Quality checks of a finished registration, from its metrics alone (no files, no Nipype): the
one place the thresholds live, read by the participant report (and by anything else that flags
an implausible result)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["QualityThresholds", "DEFAULT_THRESHOLDS", "quality_warnings"]


@dataclass(frozen=True)
class QualityThresholds:
    """When a registration is flagged.

    Attributes
    ----------
    min_cc_after : a registration feature's correlation with the template after registration
        below this is low.
    max_cc_drop : the non-rigid stage lowering the correlation by more than this (from the
        rigid alignment's) is flagged.
    max_areal_p95 : 95th percentile of |log2 areal distortion| above this is strong distortion.
    """

    min_cc_after: float = 0.5
    max_cc_drop: float = 0.01
    max_areal_p95: float = 1.0


DEFAULT_THRESHOLDS = QualityThresholds()


def _number(value: Any) -> bool:
    return isinstance(value, (int, float))


def quality_warnings(registration: Mapping[str, Any], features: Sequence[str],
                     thresholds: QualityThresholds = DEFAULT_THRESHOLDS) -> list[str]:
    """One line per flag raised by a hemisphere's registration metrics (the ``registration``
    part of its metrics JSON; ``features``: its registration features): low correlation, a
    non-rigid stage that made it worse, folds, strong distortion, non-finite distortion."""
    reg = registration
    out = []
    for f in features:
        after, rigid = reg.get(f"cc_{f}_after"), reg.get(f"cc_{f}_rigid")
        if _number(after) and after < thresholds.min_cc_after:
            out.append(f"{f}: correlation with the template after registration is low ({after:.3f})")
        if _number(after) and _number(rigid) and after < rigid - thresholds.max_cc_drop:
            out.append(f"{f}: the non-rigid stage lowered the correlation ({rigid:.3f} -> {after:.3f})")
    if (reg.get("n_folded") or 0) > 0:
        out.append(f"{reg['n_folded']} folded triangle(s) in the registered sphere")
    if (reg.get("warp_folded_triangles") or 0) > 0:
        out.append(f"the warp folds {reg['warp_folded_triangles']} template triangle(s)")
    if _number(reg.get("areal_p95_abs")) and reg["areal_p95_abs"] > thresholds.max_areal_p95:
        out.append(f"strong areal distortion (95th percentile |log2| = {reg['areal_p95_abs']:.2f})")
    if (reg.get("n_nonfinite") or 0) > 0:
        out.append(f"{int(reg['n_nonfinite'])} vertices with non-finite distortion")
    return out

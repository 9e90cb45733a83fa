"""A subject map of the other sign, caught before registration: :func:`check_signs`.

FreeSurfer's sulc and curv are both positive in sulci, so on every hemisphere they correlate
positively (templates +0.73 to +0.78, an individual brain about +0.4). A curv map written with
the other convention (HCP's and Workbench's mean curvature are ``-curv``), or a sulc of the other
sign next to a FreeSurfer curv, correlates negatively with its sulc: registered as it is, the
two channels pull against each other (an individual brain's sulc correlation with fsaverage
fell from 0.88 to 0.54). The template's own maps say which pairs are tied this way; maps that
are not (myelin: +0.1 with sulc) are not judged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import InputError
from .prealign import correlation

__all__ = ["TIED", "OPPOSED", "check_signs"]

#: |correlation| of a template map with the template's first channel above which the two are
#: taken to be tied by sign
TIED = 0.4
#: a subject's correlation of that sign's opposite, at least this large, is refused
OPPOSED = 0.15


def _tied(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two (V,) maps where either is non-zero (NaN when one is constant)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return correlation(a, b, (a != 0) | (b != 0))


def check_signs(subject: Mapping[str, np.ndarray], template: Mapping[str, np.ndarray],
                channels: Sequence[str]) -> None:
    """Refuse (:class:`InputError` with ``feature`` set, so that callers name its file) a
    registration channel whose correlation with the first channel (sulc) on the subject has the
    other sign than on the template, where the template ties the two (``|r| >= TIED``) and the
    subject clearly opposes it (``|r| >= OPPOSED``).

    subject, template : name -> (V,) and (40962,) float maps; channels : the registration's, in
    order (the first is the reference, e.g. sulc).
    """
    first = channels[0]
    for name in channels[1:]:
        r_tpl = _tied(template[first], template[name])
        if not abs(r_tpl) >= TIED:
            continue
        r_sub = _tied(subject[first], subject[name])
        if r_sub * np.sign(r_tpl) <= -OPPOSED:
            raise InputError(
                f"feature {name!r} correlates {r_sub:+.2f} with {first} on this hemisphere, where the template's "
                f"{first} and {name} correlate {r_tpl:+.2f}: {name} (or {first}) has the other sign. Maps must "
                f"use FreeSurfer's sign (positive in sulci); HCP/Workbench curvature is -curv: negate it (for an "
                f"HCP sulc: --sulc-sign hcp), or register with {first} alone", feature=name)

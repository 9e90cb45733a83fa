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
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["TIED", "OPPOSED", "check_signs"]

#: |correlation| of a template map with the template's first channel above which the two are
#: taken to be tied by sign
TIED = 0.4
#: a subject's correlation of that sign's opposite, at least this large, is refused
OPPOSED = 0.15


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two (V,) maps over the vertices where either is non-zero."""
    keep = (a != 0) | (b != 0)
    a, b = a[keep] - a[keep].mean(), b[keep] - b[keep].mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


def check_signs(subject: Mapping[str, np.ndarray], template: Mapping[str, np.ndarray],
                channels: Sequence[str], paths: Mapping[str, object] | None = None) -> None:
    """Refuse (:class:`InputError`, one line naming the map's file when known) a registration
    channel whose correlation with the first channel (sulc) on the subject has the other sign
    than on the template, where the template ties the two (``|r| >= TIED``) and the subject
    clearly opposes it (``|r| >= OPPOSED``).

    subject, template : name -> (V,) and (40962,) float maps; channels : the registration's, in
    order (the first is the reference, e.g. sulc); paths : name -> the map's file, for the message.
    """
    if len(channels) < 2:
        return
    first = channels[0]
    for name in channels[1:]:
        r_tpl = _corr(np.asarray(template[first], np.float64), np.asarray(template[name], np.float64))
        if abs(r_tpl) < TIED:
            continue
        r_sub = _corr(np.asarray(subject[first], np.float64), np.asarray(subject[name], np.float64))
        if r_sub * np.sign(r_tpl) <= -OPPOSED:
            path = (paths or {}).get(name)
            raise InputError(
                f"feature {name!r} correlates {r_sub:+.2f} with {first} on this hemisphere, where the template's "
                f"{first} and {name} correlate {r_tpl:+.2f}: {name} (or {first}) has the other sign. Maps must use FreeSurfer's sign "
                f"(positive in sulci); HCP/Workbench curvature is -curv: negate it (for an HCP sulc: "
                f"--sulc-sign hcp), or register with {first} alone",
                path=path if isinstance(path, (str, Path)) else None, feature=name)

"""Nipype workflows (they only wire :mod:`geomorph_bids.interfaces`):
``init_geomorph_wf`` -> ``init_single_subject_wf`` -> ``init_hemisphere_wf``; what a
hemisphere writes is declared in :mod:`.outputs` (shared with batch mode).

Names are imported from their modules on first use, so that the Nipype-free modules
(:mod:`.config`, :mod:`.outputs`), which ``geomorph-register`` and batch mode need, do not
import Nipype (0.3 s) through this package.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module that defines it
_WHERE = {
    "subject_wf_name": "geomorph_bids.crashfiles",
    "init_geomorph_wf": "geomorph_bids.workflows.base",
    "init_single_subject_wf": "geomorph_bids.workflows.base",
    "RunConfig": "geomorph_bids.workflows.config",
    "SubjectJob": "geomorph_bids.workflows.config",
    "GEOMORPH_SPHERE_SIDECAR": "geomorph_bids.workflows.fmriprep_compat",
    "init_geomorph_sulc_wf": "geomorph_bids.workflows.fmriprep_compat",
    "hemi_outputs": "geomorph_bids.workflows.outputs",
    "init_hemisphere_wf": "geomorph_bids.workflows.hemisphere",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))

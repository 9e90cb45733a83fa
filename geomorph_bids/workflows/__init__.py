"""Nipype workflows (they only wire :mod:`geomorph_bids.interfaces`):
``init_geomorph_wf`` -> ``init_single_subject_wf`` -> ``init_hemisphere_wf``; what a
hemisphere writes is declared in :mod:`.outputs` (shared with batch mode)."""

from ..crashfiles import subject_wf_name
from .base import init_geomorph_wf, init_single_subject_wf
from .config import RunConfig, SubjectJob
from .fmriprep_compat import GEOMORPH_SPHERE_SIDECAR, init_geomorph_sulc_wf
from .hemisphere import hemi_outputs, init_hemisphere_wf

__all__ = ["GEOMORPH_SPHERE_SIDECAR", "RunConfig", "SubjectJob", "hemi_outputs", "init_geomorph_sulc_wf",
           "init_geomorph_wf", "init_hemisphere_wf", "init_single_subject_wf", "subject_wf_name"]

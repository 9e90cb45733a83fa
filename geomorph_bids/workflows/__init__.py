"""Nipype workflows (they only wire :mod:`geomorph_bids.interfaces`):
``init_geomorph_wf`` -> ``init_single_subject_wf`` -> ``init_hemisphere_wf``."""

from .base import RunConfig, SubjectJob, init_geomorph_wf, init_single_subject_wf, subject_wf_name
from .hemisphere import hemi_outputs, init_hemisphere_wf

__all__ = ["RunConfig", "SubjectJob", "hemi_outputs", "init_geomorph_wf", "init_hemisphere_wf",
           "init_single_subject_wf", "subject_wf_name"]

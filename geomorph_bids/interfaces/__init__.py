"""Nipype interfaces: thin wrappers over :mod:`geomorph_bids.engine` and :mod:`geomorph_bids.io`.

Each interface reads files, calls one engine/io function and writes files into its node's
working directory, so that Nipype can cache it and reruns resume.
"""

from .bids import GeomorphDataSink, OutputsReady
from .features import LoadFeatures
from .fmriprep_compat import FeaturesCifti, SphereToFsLR
from .metrics import WriteMetrics
from .registration import PrecomputedRegistration, Register
from .resampling import ResampleFeatures

__all__ = ["FeaturesCifti", "GeomorphDataSink", "LoadFeatures", "OutputsReady", "PrecomputedRegistration",
           "Register", "ResampleFeatures", "SphereToFsLR", "WriteMetrics"]

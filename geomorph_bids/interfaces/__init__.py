"""Nipype interfaces: thin wrappers over :mod:`geomorph_bids.engine`, :mod:`geomorph_bids.io`
and :mod:`geomorph_bids.results`.

Each interface reads files, calls one engine/io/results function and writes files into its
node's working directory (the writer: into the output folder), so that Nipype can cache it and
reruns resume.
"""

from .bids import CommitFile, WriteHemisphere
from .features import LoadFeatures
from .fmriprep_compat import FeaturesCifti, SphereToFsLR
from .registration import Register
from .resampling import ResampleFeatures

__all__ = ["CommitFile", "FeaturesCifti", "LoadFeatures", "Register", "ResampleFeatures", "SphereToFsLR", "WriteHemisphere"]

"""Reading and writing cortical surfaces and maps (GIFTI, FreeSurfer, CIFTI-2), with validation.

Every reader raises :class:`geomorph_bids.errors.InputError` (one line naming the
file) on bad input; every writer is atomic (temporary file, then rename).
"""

from .cifti import CiftiCortex, read_cifti_cortex
from .discover import DiscoveryError, HemiInputs, SubjectInputs, discover, find_subjects
from .gifti import write_labels, write_metric, write_surface
from .surfaces import (Surface, detect_format, read_feature, read_labels, read_mask, read_sphere, read_surface,
                       write_sphere_reg)
from .validate import SphereWarning, validate_feature, validate_sphere

__all__ = [
    "CiftiCortex", "DiscoveryError", "HemiInputs", "Surface", "SphereWarning", "SubjectInputs", "detect_format",
    "discover", "find_subjects", "read_cifti_cortex", "read_feature",
    "read_labels", "read_mask", "read_sphere", "read_surface", "validate_feature", "validate_sphere",
    "write_labels", "write_metric", "write_sphere_reg", "write_surface",
]

"""A registered hemisphere's results, turned into its derivatives (no Nipype): the features
resampled onto the output density (:mod:`.resample`), the metrics document (:mod:`.metrics`),
and the one writer that commits a hemisphere's files into the output folder (:mod:`.writer`).

Both ways of running the participant level use these functions: the Nipype workflow through
thin interfaces (``ResampleFeatures``, ``WriteHemisphere``), batch mode
(:mod:`geomorph_bids.batch`) directly, so the two write the same files with the same names,
sidecars and atomicity.
"""

from .metrics import metrics_document, registration_record
from .resample import ResampledFeatures, resample_features
from .writer import STAGING_DIR, OutputFile, commit_outputs

__all__ = ["OutputFile", "ResampledFeatures", "STAGING_DIR", "commit_outputs", "metrics_document",
           "registration_record", "resample_features"]

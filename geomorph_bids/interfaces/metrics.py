"""Quality metrics: the per-hemisphere JSON (the group table built from them is
:mod:`geomorph_bids.reports.group_table`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nipype.interfaces.base import BaseInterfaceInputSpec, File, SimpleInterface, TraitedSpec, isdefined, traits

__all__ = ["WriteMetrics"]


class _WriteMetricsInputSpec(BaseInterfaceInputSpec):
    registration = File(exists=True, mandatory=True, desc="Register.metrics_file")
    info = traits.Dict(traits.Str, traits.Any, desc="provenance merged in (subject, inputs, sign...)")
    density = traits.Str(desc="output density label")
    density_source = traits.Str(desc="where the output-density sphere came from")
    thresholds = traits.Dict(traits.Str, traits.Any, desc="the run's QualityThresholds.to_dict() (default: defaults)")
    label_conflicts = traits.List(traits.Str, desc="LoadFeatures.label_conflicts: input files declaring the "
                                                   "other hemisphere")


class _WriteMetricsOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="metrics JSON")


class WriteMetrics(SimpleInterface):
    """Merge the registration metrics with provenance into one JSON document, with the verdict
    of the quality gates (``quality``: :func:`geomorph_bids.quality.assess` with the run's
    thresholds)."""

    input_spec = _WriteMetricsInputSpec
    output_spec = _WriteMetricsOutputSpec

    def _run_interface(self, runtime):
        from .. import __version__
        from ..quality import QualityThresholds, assess

        metrics: dict[str, Any] = json.loads(Path(self.inputs.registration).read_text())
        if isdefined(self.inputs.label_conflicts):  # the native files: the Register node only saw ours
            metrics["label_conflicts"] = list(self.inputs.label_conflicts)
        thresholds = QualityThresholds.from_dict(self.inputs.thresholds if isdefined(self.inputs.thresholds) else None)
        verdict = assess(metrics, metrics.get("registration_features") or [], thresholds)
        doc = {"software": f"geomorph-bids {__version__}", **dict(self.inputs.info or {}),
               # what register() did: rigid, optimise (no network), geomorph[+optimise]
               "method": metrics.get("method"),
               "output_density": self.inputs.density or None,
               "output_density_source": self.inputs.density_source or None,
               "registration": metrics,
               "quality": verdict.to_dict()}
        out = Path(runtime.cwd) / "metrics.json"
        out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        self._results["out_file"] = str(out)
        return runtime

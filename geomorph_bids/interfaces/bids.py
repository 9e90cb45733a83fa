"""BIDS-Derivatives writing: one node per hemisphere (:class:`WriteHemisphere`) builds the
metrics document and commits every file of the hemisphere through
:func:`geomorph_bids.results.writer.commit_outputs` (the writer batch mode uses too). The node
has every result of the hemisphere as a mandatory input, so nothing of a hemisphere is written
unless every step succeeded."""

from __future__ import annotations

import os

from nipype.interfaces.base import File, InputMultiObject, SimpleInterface, TraitedSpec, isdefined, traits

from .base import KeyedInputSpec

__all__ = ["WriteHemisphere", "CommitFile"]


class _WriteInputSpec(KeyedInputSpec):
    registered_sphere = File(exists=True, mandatory=True, desc="the native mesh in template space")
    resampled_features = InputMultiObject(File(exists=True), mandatory=True,
                                          desc="one map per output feature, in the run's feature order")
    registration = File(exists=True, mandatory=True, desc="Register.metrics_file (the registration record)")
    native_sphere = File(exists=True, mandatory=True, desc="the validated native sphere")
    native_features = InputMultiObject(File(exists=True), mandatory=True,
                                       desc="the validated native maps, in the run's feature order")
    files = traits.List(traits.Dict, mandatory=True,
                        desc="OutputFile.to_dict() of every file (workflows.outputs.hemisphere_files)")
    info = traits.Dict(traits.Str, traits.Any, desc="provenance merged into the metrics JSON")
    density = traits.Str(desc="output density label")
    density_source = traits.Str(desc="where the output-density sphere came from")
    output_dir = traits.Str(mandatory=True, desc="the derivatives folder")
    thresholds = traits.Dict(traits.Str, traits.Any, desc="the run's QualityThresholds.to_dict() (default: defaults)")
    label_conflicts = traits.List(traits.Str, desc="LoadFeatures.label_conflicts: input files declaring the "
                                                   "other hemisphere")
    sphere_reg_fslr = File(exists=True, desc="--fmriprep-compat, template fsaverage: the sphere carried into fsLR")
    no_data = traits.Dict(traits.Str, traits.Any, desc="LoadFeatures.no_data: the vertices the maps hold no data at "
                                                       "(recorded in the metrics JSON and the maps' sidecars)")


class _WriteOutputSpec(TraitedSpec):
    out_files = traits.List(File(exists=True), desc="every file written, sidecars included")
    metrics = File(exists=True, desc="the metrics JSON in the output folder")
    resampled_features = traits.List(File(exists=True), desc="the resampled maps as written in the output "
                                                             "folder, in the run's feature order")


class WriteHemisphere(SimpleInterface):
    """Merge the registration record with the provenance into the metrics JSON
    (:func:`~geomorph_bids.results.metrics.metrics_document`) and commit the hemisphere's files
    (:func:`~geomorph_bids.results.writer.commit_outputs`). Always runs, so a rerun restores
    an output deleted since."""

    input_spec = _WriteInputSpec
    output_spec = _WriteOutputSpec
    _always_run = True

    def _run_interface(self, runtime):
        import json
        from pathlib import Path

        from ..io.atomic import atomic_write_bytes
        from ..results.metrics import metrics_bytes, metrics_document
        from ..quality import QualityThresholds
        from ..results.writer import OutputFile, commit_outputs, note_no_data

        registration = json.loads(Path(self.inputs.registration).read_text())
        conflicts = list(self.inputs.label_conflicts) if isdefined(self.inputs.label_conflicts) else None
        thresholds = QualityThresholds.from_dict(self.inputs.thresholds if isdefined(self.inputs.thresholds) else None)
        no_data = (self.inputs.no_data or None) if isdefined(self.inputs.no_data) else None
        files = note_no_data([OutputFile.from_dict(d) for d in self.inputs.files], no_data,
                             registration.get("registration_features"))
        doc = metrics_document(registration, self.inputs.info, self.inputs.density, self.inputs.density_source,
                               thresholds, conflicts, [f.path.name for f in files if f.unless_flagged], no_data)
        metrics = atomic_write_bytes(os.path.join(runtime.cwd, "metrics.json"), metrics_bytes(doc))
        produced = {"registered_sphere": self.inputs.registered_sphere,
                    "resampled_features": list(self.inputs.resampled_features),
                    "metrics": str(metrics), "native_sphere": self.inputs.native_sphere,
                    "native_features": list(self.inputs.native_features)}
        if isdefined(self.inputs.sphere_reg_fslr):
            produced["sphere_reg_fslr"] = self.inputs.sphere_reg_fslr
        written = commit_outputs(files, produced, self.inputs.output_dir)
        self._results["out_files"] = [str(p) for p in written]
        self._results["metrics"] = str(next(f.path for f in files if f.field == "metrics"))
        self._results["resampled_features"] = [str(f.path) for f in sorted(
            (f for f in files if f.field == "resampled_features"), key=lambda f: f.index)]
        return runtime


class _CommitInputSpec(KeyedInputSpec):
    in_file = File(exists=True, mandatory=True, desc="the produced file")
    path = traits.Str(mandatory=True, desc="its final path in the output folder")
    meta = traits.Dict(traits.Str, traits.Any, desc="its JSON sidecar")
    field = traits.Str("cifti", usedefault=True, desc="the result it is (results.writer.OUTPUT_FIELDS)")
    output_dir = traits.Str(mandatory=True, desc="the derivatives folder")
    sources = traits.List(traits.Str, desc="the output files it was built from: their sizes and SHA-1 go into its "
                                           "sidecar (results.metrics.SOURCES_AS_WRITTEN)")


class _CommitOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="the file in the output folder")


class CommitFile(SimpleInterface):
    """Commit one produced file (and its sidecar) into the output folder with the one writer
    (:func:`~geomorph_bids.results.writer.commit_outputs`): e.g. ``--cifti-output``'s dscalar."""

    input_spec = _CommitInputSpec
    output_spec = _CommitOutputSpec

    def _run_interface(self, runtime):
        from pathlib import Path

        from ..results.metrics import SOURCES_AS_WRITTEN, sources_as_written
        from ..results.writer import OutputFile, commit_outputs

        meta = dict(self.inputs.meta) if isdefined(self.inputs.meta) else None
        if isdefined(self.inputs.sources) and self.inputs.sources:  # what it was built from, by content
            meta = {**(meta or {}), SOURCES_AS_WRITTEN: sources_as_written(
                self.inputs.sources, self.inputs.output_dir, built=(self.inputs.path, self.inputs.in_file))}
        out = OutputFile(Path(self.inputs.path), self.inputs.field, meta=meta)
        commit_outputs([out], {self.inputs.field: self.inputs.in_file}, self.inputs.output_dir)
        self._results["out_file"] = str(out.path)
        return runtime

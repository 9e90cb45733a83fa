"""``--fmriprep-compat`` and ``--cifti-output`` steps: thin wrappers over
:mod:`geomorph_bids.io.fmriprep_compat`."""

from __future__ import annotations

import os

from nipype.interfaces.base import File, InputMultiObject, SimpleInterface, TraitedSpec, traits

from .base import KeyedInputSpec

__all__ = ["SphereToFsLR", "FeaturesCifti", "SwappedSphereGate"]


class _SphereToFsLRInputSpec(KeyedInputSpec):
    in_sphere = File(exists=True, mandatory=True, desc="a sphere registered to fsaverage (.surf.gii)")
    hemi = traits.Enum("L", "R", mandatory=True)


class _SphereToFsLROutputSpec(TraitedSpec):
    out_sphere = File(exists=True, desc="the same mesh carried into fsLR space")
    deformation = traits.Str(desc="the fsaverage -> fsLR deformation used")


class SphereToFsLR(SimpleInterface):
    """Carry a sphere registered to fsaverage into fsLR (sMRIPrep's ``init_fsLR_reg_wf``, in numpy:
    :func:`geomorph_bids.io.fmriprep_compat.sphere_reg_fslr`)."""

    input_spec = _SphereToFsLRInputSpec
    output_spec = _SphereToFsLROutputSpec

    def _run_interface(self, runtime):
        from ..io import read_surface, write_surface
        from ..io.fmriprep_compat import sphere_reg_fslr

        sphere = read_surface(self.inputs.in_sphere)
        moved, source = sphere_reg_fslr(sphere.vertices, self.inputs.hemi)
        self._results["out_sphere"] = str(write_surface(os.path.join(runtime.cwd, "sphere_reg_fsLR.surf.gii"),
                                                        moved, sphere.faces, hemi=self.inputs.hemi))
        self._results["deformation"] = source
        return runtime


class _SwappedSphereGateInputSpec(KeyedInputSpec):
    in_sphere = File(exists=True, mandatory=True, desc="GeoMorph's registered sphere (Register's out_sphere)")
    metrics_file = File(exists=True, mandatory=True, desc="Register's registration.json")
    fallback_sphere = File(exists=True, mandatory=True, desc="the sphere_reg_fsLR input (same mesh)")
    hemi = traits.Enum("L", "R", mandatory=True)
    source = traits.Str(mandatory=True, desc="an input file of the hemisphere, named in messages")
    on_flagged = traits.Enum("fallback", "error", usedefault=True, desc="what a flagged registration does")
    thresholds = traits.Dict(desc="QualityThresholds.to_dict(); undefined: the defaults")


class _SwappedSphereGateOutputSpec(TraitedSpec):
    out_sphere = File(exists=True, desc="the sphere to pass on")
    quality = traits.Dict(desc="flagged, reasons, thresholds, used (geomorph or sphere_reg_fsLR), message")


class SwappedSphereGate(SimpleInterface):
    """The quality gate of ``init_geomorph_sulc_wf``
    (:func:`geomorph_bids.io.fmriprep_compat.gate_swapped_sphere`); a flagged hemisphere is logged
    as a warning on Nipype's workflow logger."""

    input_spec = _SwappedSphereGateInputSpec
    output_spec = _SwappedSphereGateOutputSpec

    def _run_interface(self, runtime):
        import json
        import logging

        from nipype.interfaces.base import isdefined

        from ..io.fmriprep_compat import gate_swapped_sphere

        with open(self.inputs.metrics_file, encoding="utf-8") as fh:
            record = json.load(fh)
        thresholds = self.inputs.thresholds if isdefined(self.inputs.thresholds) else None
        sphere, quality = gate_swapped_sphere(self.inputs.in_sphere, self.inputs.fallback_sphere, record,
                                              self.inputs.hemi, self.inputs.source, runtime.cwd,
                                              self.inputs.on_flagged, thresholds)
        if quality["message"]:
            logging.getLogger("nipype.workflow").warning(quality["message"])
        self._results["out_sphere"] = str(sphere)
        self._results["quality"] = quality
        return runtime


class _FeaturesCiftiInputSpec(KeyedInputSpec):
    left = InputMultiObject(File(exists=True), mandatory=True, desc="left maps on fsLR, one per feature")
    right = InputMultiObject(File(exists=True), mandatory=True, desc="right maps on fsLR, one per feature")
    features = traits.List(traits.Str, mandatory=True, desc="feature names, the maps' order")
    density = traits.Enum("32k", "59k", mandatory=True)
    name = traits.Str("features.dscalar.nii", usedefault=True, desc="output file name")


class _FeaturesCiftiOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="CIFTI-2 dscalar, one map per feature, medial wall left out")
    roi = traits.Dict(desc="hemi -> atlas ROI source")
    sources = traits.List(traits.Str, desc="the maps it was built from: left's, then right's")


class FeaturesCifti(SimpleInterface):
    """Both hemispheres' resampled features -> one CIFTI-2 dscalar inside the fsLR atlas ROI
    (:func:`geomorph_bids.io.fmriprep_compat.write_features_cifti`)."""

    input_spec = _FeaturesCiftiInputSpec
    output_spec = _FeaturesCiftiOutputSpec

    def _run_interface(self, runtime):
        from ..io.fmriprep_compat import write_features_cifti

        out, info = write_features_cifti(os.path.join(runtime.cwd, self.inputs.name), self.inputs.left,
                                         self.inputs.right, self.inputs.features, self.inputs.density)
        self._results["out_file"] = str(out)
        self._results["roi"] = info["roi"]
        self._results["sources"] = [str(p) for p in [*self.inputs.left, *self.inputs.right]]
        return runtime

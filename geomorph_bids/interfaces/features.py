"""Load one hemisphere's native sphere and feature maps (and, when given, its midthickness and
cortex mask), validate them, fix their sign."""

from __future__ import annotations

import os

from nipype.interfaces.base import File, SimpleInterface, TraitedSpec, isdefined, traits

from ..errors import InputError
from .base import KeyedInputSpec

__all__ = ["LoadFeatures"]


class _LoadFeaturesInputSpec(KeyedInputSpec):
    sphere = File(exists=True, mandatory=True, desc="native sphere (GIFTI or FreeSurfer ?h.sphere)")
    feature_files = traits.List(File(exists=True), mandatory=True, desc="feature maps on the sphere")
    feature_names = traits.List(traits.Str, mandatory=True, desc="feature names, same order")
    signs = traits.List(traits.Float, desc="factor per feature converting it to FreeSurfer's sign "
                                           "(-1 for HCP sulc/curv); default all +1")
    sphere_reg = File(exists=True, desc="optional FreeSurfer sphere.reg (same topology)")
    midthickness = File(exists=True, desc="optional midthickness surface (same mesh): area-corrected resampling")
    cortex_mask = File(exists=True, desc="optional cortex mask (sMRIPrep desc-cortex_mask, HCP roi, FreeSurfer "
                                         "cortex.label): medial wall left out of the similarity")
    hemi = traits.Enum("L", "R", mandatory=True)
    registration_features = traits.List(traits.Str, desc="the maps the registration compares (the model's "
                                                         "channels): only their no-data regions leave "
                                                         "registration_mask; default: every map")
    subject = traits.Str("", usedefault=True, desc="subject label, for error messages")
    input_digest = traits.Str("", usedefault=True,
                              desc="content hash of the input files (io/digest.py): part of the node's "
                                   "cache key, so a changed file with the same size and mtime is read again")


class _LoadFeaturesOutputSpec(TraitedSpec):
    sphere = File(exists=True, desc="validated sphere, radius 100, centred, outward triangles")
    feature_files = traits.List(File(exists=True), desc="features in FreeSurfer's sign (.shape.gii)")
    feature_names = traits.List(traits.Str)
    sphere_reg = File(desc="validated sphere.reg (GIFTI), when given")
    midthickness = File(desc="validated midthickness (GIFTI), when given")
    cortex_mask = File(desc="cortex mask, 1 on the cortex and 0 on the medial wall (.shape.gii), when given, less "
                            "where any map holds no data: the resampling's")
    registration_mask = File(desc="the registration's mask (.shape.gii): the one given, less where the "
                                  "registration_features hold no data; absent where that leaves every vertex")
    n_vertices = traits.Int()
    label_conflicts = traits.List(traits.Str, desc="input files declaring the other hemisphere (one line each)")
    no_data = traits.Dict(traits.Str, traits.Any, desc="results.metrics.no_data_record of the maps: the vertices "
                                                       "they hold no data at (empty: none)")


class LoadFeatures(SimpleInterface):
    """Read and validate a native sphere and its feature maps (one-line InputError on bad
    input), apply the sign convention and write them as GIFTI in the node directory; list the
    input files that declare the other hemisphere (``label_conflicts``, for the quality gates)."""

    input_spec = _LoadFeaturesInputSpec
    output_spec = _LoadFeaturesOutputSpec

    def _run_interface(self, runtime):
        from ..io import write_metric, write_surface
        from ..io.gifti import EncodedArrays
        from ..io.hemisphere import read_hemisphere
        from ..results.metrics import no_data_record

        hemi, subject = self.inputs.hemi, self.inputs.subject or None
        names = list(self.inputs.feature_names)
        files = list(self.inputs.feature_files)
        signs = list(self.inputs.signs) if isdefined(self.inputs.signs) and self.inputs.signs else [1.0] * len(names)
        if not (len(names) == len(files) == len(signs)):
            raise ValueError(f"{len(names)} feature names, {len(files)} files and {len(signs)} signs")
        def given(value):
            return value if isdefined(value) and value else None

        channels = list(self.inputs.registration_features) if isdefined(self.inputs.registration_features) else names
        try:
            native = read_hemisphere(self.inputs.sphere, dict(zip(names, files)), signs=dict(zip(names, signs)),
                                     sphere_reg=given(self.inputs.sphere_reg),
                                     midthickness=given(self.inputs.midthickness),
                                     cortex_mask=given(self.inputs.cortex_mask), hemi=hemi, compared=channels)
        except InputError as exc:
            raise exc.with_context(subject=subject, hemi=hemi) from None
        sphere = native.sphere
        out_sphere = os.path.join(runtime.cwd, "sphere.surf.gii")
        encoded = EncodedArrays()  # sphere.reg and midthickness have the sphere's triangles: compressed once
        write_surface(out_sphere, sphere.vertices, sphere.faces, hemi=hemi, geometric_type="Spherical",
                      encoded=encoded)
        outs = [write_metric(os.path.join(runtime.cwd, f"{name}.shape.gii"), native.features[name], hemi=hemi,
                             names=[name]) for name in names]
        if native.sphere_reg is not None:
            reg = native.sphere_reg
            self._results["sphere_reg"] = str(write_surface(os.path.join(runtime.cwd, "sphere_reg.surf.gii"),
                                                            reg.vertices, reg.faces, hemi=hemi,
                                                            encoded=encoded))
        if native.midthickness is not None:
            mid = native.midthickness
            self._results["midthickness"] = str(write_surface(os.path.join(runtime.cwd, "midthickness.surf.gii"),
                                                              mid.vertices, mid.faces, hemi=hemi,
                                                              geometric_type="Anatomical", encoded=encoded))
        if native.cortex is not None:
            self._results["cortex_mask"] = str(write_metric(os.path.join(runtime.cwd, "cortex_mask.shape.gii"),
                                                            native.cortex.astype("float32"), hemi=hemi,
                                                            names=["cortex"]))
        registration = native.registration_cortex(channels)
        if registration is not None:
            self._results["registration_mask"] = str(write_metric(
                os.path.join(runtime.cwd, "registration_mask.shape.gii"), registration.astype("float32"), hemi=hemi,
                names=["cortex"]))
        self._results["sphere"] = out_sphere
        self._results["feature_files"] = [str(p) for p in outs]
        self._results["feature_names"] = names
        self._results["n_vertices"] = int(len(sphere.vertices))
        self._results["label_conflicts"] = list(native.label_conflicts)
        self._results["no_data"] = no_data_record(native.no_data, native.no_data_vertices, len(sphere.vertices)) or {}
        return runtime

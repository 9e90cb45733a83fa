"""Resample a hemisphere's features onto the template's sphere at the output density
(:func:`geomorph_bids.results.resample.resample_features`; area-corrected with the subject's
midthickness and restricted to its cortex mask when given, as sMRIPrep and the HCP pipelines do)."""

from __future__ import annotations

import os

from nipype.interfaces.base import File, SimpleInterface, TraitedSpec, isdefined, traits

from .base import KeyedInputSpec

__all__ = ["ResampleFeatures"]


class _ResampleInputSpec(KeyedInputSpec):
    registered_sphere = File(exists=True, mandatory=True,
                             desc="the native mesh in template space (Register.out_sphere)")
    feature_files = traits.List(File(exists=True), mandatory=True, desc="maps on that mesh")
    feature_names = traits.List(traits.Str, mandatory=True)
    template = traits.Str("fsLR", usedefault=True)
    hemi = traits.Enum("L", "R", mandatory=True)
    density = traits.Str(mandatory=True, desc="output density label, e.g. 32k (see io.templates.DENSITIES)")
    templateflow_home = traits.Str(desc="TemplateFlow folder (default: $TEMPLATEFLOW_HOME)")
    method = traits.Enum("adap_bary_area", "barycentric", usedefault=True)
    midthickness = File(exists=True, desc="the subject's midthickness (same mesh): adap_bary_area weighs by its "
                                          "vertex areas and by those of its resampled copy (wb_command "
                                          "-metric-resample ... -area-surfs); default: the spheres' own areas")
    cortex_mask = File(exists=True, desc="the subject's cortex mask (same mesh; LoadFeatures' output, 1 on the "
                                         "cortex): values outside it are not mixed into the cortex "
                                         "(wb_command -metric-resample ... -current-roi)")


class _ResampleOutputSpec(TraitedSpec):
    out_files = traits.List(File(exists=True), desc="one .shape.gii per feature, same order")
    n_vertices = traits.Int(desc="vertices of the output density mesh")
    density_source = traits.Str(desc="where the output-density sphere came from")
    area_surfaces = traits.Bool(desc="whether the midthickness areas were used")
    cortex_roi = traits.Bool(desc="whether the cortex mask restricted the resampling")


class ResampleFeatures(SimpleInterface):
    """One resampling matrix (Workbench's ADAP_BARY_AREA by default) from the registered
    sphere to the template sphere at ``density``, applied to every feature."""

    input_spec = _ResampleInputSpec
    output_spec = _ResampleOutputSpec

    def _run_interface(self, runtime):
        from ..io import read_feature, read_surface, write_metric
        from ..results.resample import resample_features

        home = self.inputs.templateflow_home if isdefined(self.inputs.templateflow_home) else None
        moving = read_surface(self.inputs.registered_sphere)
        mid = (read_surface(self.inputs.midthickness).vertices
               if isdefined(self.inputs.midthickness) else None)
        maps = {name: read_feature(path, n_vertices=len(moving.vertices))
                for name, path in zip(self.inputs.feature_names, self.inputs.feature_files)}
        cortex = (read_feature(self.inputs.cortex_mask, n_vertices=len(moving.vertices)) > 0
                  if isdefined(self.inputs.cortex_mask) else None)
        res = resample_features((moving.vertices, moving.faces), maps, self.inputs.template, self.inputs.hemi,
                                self.inputs.density, home or None, method=self.inputs.method,
                                midthickness=mid, cortex=cortex)
        self._results["out_files"] = [
            str(write_metric(os.path.join(runtime.cwd, f"{name}_den-{self.inputs.density}.shape.gii"), values,
                             hemi=self.inputs.hemi, names=[name])) for name, values in res.maps.items()]
        self._results["n_vertices"] = res.n_vertices
        self._results["density_source"] = res.source
        self._results["area_surfaces"] = res.area_surfaces
        self._results["cortex_roi"] = res.cortex_roi
        return runtime

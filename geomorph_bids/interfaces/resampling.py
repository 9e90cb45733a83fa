"""Resample a hemisphere's features onto the template's sphere at the output density
(area-corrected with the subject's midthickness when given, as sMRIPrep and the HCP pipelines do)."""

from __future__ import annotations

import os

from nipype.interfaces.base import (BaseInterfaceInputSpec, File, SimpleInterface, TraitedSpec, isdefined,
                                    traits)

__all__ = ["ResampleFeatures"]


class _ResampleInputSpec(BaseInterfaceInputSpec):
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


class _ResampleOutputSpec(TraitedSpec):
    out_files = traits.List(File(exists=True), desc="one .shape.gii per feature, same order")
    n_vertices = traits.Int(desc="vertices of the output density mesh")
    density_source = traits.Str(desc="where the output-density sphere came from")
    area_surfaces = traits.Bool(desc="whether the midthickness areas were used")


class ResampleFeatures(SimpleInterface):
    """One resampling matrix (Workbench's ADAP_BARY_AREA by default) from the registered
    sphere to the template sphere at ``density``, applied to every feature."""

    input_spec = _ResampleInputSpec
    output_spec = _ResampleOutputSpec

    def _run_interface(self, runtime):
        import numpy as np

        from ..io import read_feature, read_surface, write_metric
        from ..io.templates import load_density_sphere
        from ..sphere.resample import apply_weights, area_surfaces, resample_weights

        home = self.inputs.templateflow_home if isdefined(self.inputs.templateflow_home) else None
        tv, tf, source = load_density_sphere(self.inputs.template, self.inputs.hemi, self.inputs.density,
                                             templateflow_home=home or None)
        # read as a plain mesh: a non-rigid registration may fold a few triangles, which the
        # sphere validation of the inputs would refuse; resampling projects onto the unit sphere
        moving = read_surface(self.inputs.registered_sphere)
        current_area = new_area = None
        if isdefined(self.inputs.midthickness) and self.inputs.method == "adap_bary_area":
            mid = read_surface(self.inputs.midthickness)
            current_area, new_area = area_surfaces((moving.vertices, moving.faces), mid.vertices, (tv, tf))
        weights = resample_weights((moving.vertices, moving.faces), (tv, tf), method=self.inputs.method,
                                   current_area=current_area, new_area=new_area)
        outs = []
        for name, path in zip(self.inputs.feature_names, self.inputs.feature_files):
            values = np.asarray(read_feature(path, n_vertices=len(moving.vertices)), dtype=np.float64)
            out = apply_weights(weights, values).astype(np.float32)
            outs.append(str(write_metric(os.path.join(runtime.cwd, f"{name}_den-{self.inputs.density}.shape.gii"),
                                         out, hemi=self.inputs.hemi, names=[name])))
        self._results["out_files"] = outs
        self._results["n_vertices"] = int(len(tv))
        self._results["density_source"] = source
        self._results["area_surfaces"] = current_area is not None
        return runtime

"""A workflow fMRIPrep-style pipelines can swap in for sMRIPrep's MSMSulc registration.

:func:`init_geomorph_sulc_wf` has the interface of ``smriprep.workflows.surfaces.init_msm_sulc_wf``:
``inputnode`` fields ``sulc``, ``sphere`` and ``sphere_reg_fsLR``, each a [left, right] pair of
GIFTI files as sMRIPrep's anatomical workflow feeds them (its ``surfaces_buffer`` and
``fsLR_buffer``), and ``outputnode.sphere_reg_fsLR``, the [left, right] native spheres moved into
fsLR space, which sMRIPrep then writes as ``space-fsLR_desc-msmsulc_sphere`` and uses for every
fsLR resampling. A pipeline author changes three lines (README, "Using geomorph-bids with
fMRIPrep and sMRIPrep")::

    from geomorph_bids.workflows import GEOMORPH_SPHERE_SIDECAR, init_geomorph_sulc_wf  # the import
    msm_sulc_wf = init_geomorph_sulc_wf(sloppy=sloppy, omp_nthreads=omp_nthreads)   # the builder
    ds_msmsulc_wf.get_node("ds_sphere_reg_msm").inputs.meta_dict = GEOMORPH_SPHERE_SIDECAR  # provenance

As MSMSulc does with it, ``sphere_reg_fsLR`` (sMRIPrep's FreeSurfer-derived fsLR sphere) gives the
initial rotation (here from vertex correspondence); then GeoMorph registers the native sphere's
sulc (FreeSurfer's sign, as sMRIPrep writes it) to the fsLR template.
"""

from __future__ import annotations

from niworkflows.engine.workflows import LiterateWorkflow
from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from .. import __version__
from ..engine.model_choice import resolve_model
from ..interfaces import Register
from ..io.template_ref import TemplateRef

__all__ = ["init_geomorph_sulc_wf", "GEOMORPH_SPHERE_SIDECAR"]

#: the sidecar a pipeline gives its ``sphere_reg_msm`` sink when this workflow replaces MSMSulc
GEOMORPH_SPHERE_SIDECAR = {
    "Description": f"Made by geomorph-bids {__version__} (GeoMorph cortical surface registration) in place of "
                   "MSMSulc: the native sphere moved into fsLR space by a rotation from the sphere_reg_fsLR "
                   "correspondence and a GeoMorph warp from sulc.",
    "GeneratedBy": [{"Name": "geomorph-bids", "Version": __version__}],
}


def _each_as_list(files: list) -> list:
    """[a, b] -> [[a], [b]]: one feature list per hemisphere (Nipype connection function)."""
    return [[f] for f in files]


def init_geomorph_sulc_wf(*, sloppy: bool = False, name: str = "geomorph_sulc_wf", model: str = "default",
                          device: str = "auto", omp_nthreads: int = 1) -> LiterateWorkflow:
    """Register both hemispheres' native spheres to fsLR with GeoMorph, in place of MSMSulc.

    Parameters
    ----------
    sloppy : accepted for the interface of ``init_msm_sulc_wf``; GeoMorph's default takes a few
        seconds per hemisphere, so it changes nothing.
    name : workflow name.
    model : ``--model`` of the BIDS-App (``default``, ``rigid``, a bundled network or a
        checkpoint), decided here once (:func:`~geomorph_bids.engine.model_choice.resolve_model`).
    device : ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, resolved here once.
    omp_nthreads : threads per registration.

    Inputs (``inputnode``, each [left, right]): ``sulc`` (FreeSurfer-sign sulcal depth on the
    native mesh, ``.shape.gii``), ``sphere`` (native sphere), ``sphere_reg_fsLR`` (the same mesh
    in fsLR space, e.g. sMRIPrep's ``space-fsLR_desc-reg`` sphere: the initial rotation).

    Outputs (``outputnode``): ``sphere_reg_fsLR`` [left, right], the native meshes moved into
    fsLR space (same vertices and triangles as ``sphere``).
    """
    del sloppy  # the interface of init_msm_sulc_wf; nothing to make faster
    choice = resolve_model(model, "fsLR")
    template = TemplateRef.bundled("fsLR")
    workflow = LiterateWorkflow(name=name)
    workflow.__desc__ = (
        "The native spheres were registered to fsLR with GeoMorph (Suliman et al., Medical Image Analysis "
        "2025; geomorph-bids "
        f"{__version__}): a rotation from the correspondence with the FreeSurfer-derived fsLR sphere, "
        f"then {choice.describe().replace('rigid pre-alignment, then ', '')} on sulcal depth.\n")
    inputnode = pe.Node(niu.IdentityInterface(fields=["sulc", "sphere", "sphere_reg_fsLR"]), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["sphere_reg_fsLR"]), name="outputnode")
    register = pe.MapNode(
        Register(feature_names=["sulc"], template=template.to_dict(), model=choice.to_dict(),
                 device=choice.resolve_device(device), num_threads=omp_nthreads, sphere_reg_space="template"),
        iterfield=["sphere", "feature_files", "sphere_reg", "hemi"], name="register",
        n_procs=omp_nthreads, mem_gb=2.0)
    register.inputs.hemi = ["L", "R"]
    workflow.connect([
        (inputnode, register, [("sphere", "sphere"), (("sulc", _each_as_list), "feature_files"),
                               ("sphere_reg_fsLR", "sphere_reg")]),
        (register, outputnode, [("out_sphere", "sphere_reg_fsLR")]),
    ])
    return workflow

"""A workflow fMRIPrep-style pipelines can swap in for sMRIPrep's MSMSulc registration.

:func:`init_geomorph_sulc_wf` has the interface of ``smriprep.workflows.surfaces.init_msm_sulc_wf``:
``inputnode`` fields ``sulc``, ``sphere`` and ``sphere_reg_fsLR``, each a [left, right] pair of
GIFTI files as sMRIPrep's anatomical workflow feeds them (its ``surfaces_buffer`` and
``fsLR_buffer``), and ``outputnode.sphere_reg_fsLR``, the [left, right] native spheres moved into
fsLR space, which sMRIPrep then writes as ``space-fsLR_desc-msmsulc_sphere`` and uses for every
fsLR resampling. A pipeline author changes three lines (docs/fmriprep.md, "Swapping GeoMorph
into an fMRIPrep-style pipeline")::

    from geomorph_bids.workflows import GEOMORPH_SPHERE_SIDECAR, init_geomorph_sulc_wf  # the import
    msm_sulc_wf = init_geomorph_sulc_wf(sloppy=sloppy, omp_nthreads=omp_nthreads)   # the builder
    ds_msmsulc_wf.get_node("ds_sphere_reg_msm").inputs.meta_dict = GEOMORPH_SPHERE_SIDECAR  # provenance

As MSMSulc does with it, ``sphere_reg_fsLR`` (sMRIPrep's FreeSurfer-derived fsLR sphere) gives the
initial rotation (here from vertex correspondence); then GeoMorph registers the native sphere's
sulc (FreeSurfer's sign, as sMRIPrep writes it) to the fsLR template.

Each hemisphere's registration passes the BIDS-App's quality gates (:func:`geomorph_bids.quality.assess`)
before it is passed on: a FLAGGED one is, by default (``on_flagged="fallback"``), replaced by the
``sphere_reg_fsLR`` input (sMRIPrep's FreeSurfer-derived fsLR sphere, what it uses with ``--no-msm``),
with a warning naming the subject, the hemisphere and the reasons, and the reasons in the written
sphere's GIFTI metadata (``GeoMorphQualityFlagged``); ``on_flagged="error"`` fails the node instead
(:class:`~geomorph_bids.io.fmriprep_compat.FlaggedRegistration`, the same line).
"""

from __future__ import annotations

from niworkflows.engine.workflows import LiterateWorkflow
from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from .. import __version__
from ..engine.device import REGISTRATION_NEEDS_GB
from ..engine.model_choice import resolve_model
from ..interfaces import Register
from ..interfaces.registration import SphereMemory
from ..interfaces.fmriprep_compat import SwappedSphereGate
from ..io.digest import software_id
from ..io.fmriprep_compat import ON_FLAGGED
from ..io.template_ref import TemplateRef
from ..quality import QualityThresholds

__all__ = ["init_geomorph_sulc_wf", "GEOMORPH_SPHERE_SIDECAR"]

#: the sidecar a pipeline gives its ``sphere_reg_msm`` sink when this workflow replaces MSMSulc
GEOMORPH_SPHERE_SIDECAR = {
    "Description": f"Made by geomorph-bids {__version__} (GeoMorph cortical surface registration) in place of "
                   "MSMSulc: the native sphere moved into fsLR space by a rotation from the sphere_reg_fsLR "
                   "correspondence and a GeoMorph warp from sulc. A hemisphere whose GeoMorph registration failed "
                   "geomorph-bids' quality gates is the sphere_reg_fsLR input instead (sMRIPrep's FreeSurfer-derived "
                   "fsLR sphere), with the reasons in the file's GIFTI metadata (GeoMorphQualityFlagged).",
    "GeneratedBy": [{"Name": "geomorph-bids", "Version": __version__}],
}


def _each_as_list(files: list) -> list:
    """[a, b] -> [[a], [b]]: one feature list per hemisphere (Nipype connection function)."""
    return [[f] for f in files]


def init_geomorph_sulc_wf(*, sloppy: bool = False, name: str = "geomorph_sulc_wf", model: str = "default",
                          device: str = "auto", omp_nthreads: int = 1, on_flagged: str = "fallback",
                          thresholds: QualityThresholds | None = None) -> LiterateWorkflow:
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
    on_flagged : what a hemisphere whose registration the quality gates flag (as the BIDS-App flags
        it: ``FLAGGED``, exit 3) passes on: ``"fallback"`` (default) the ``sphere_reg_fsLR`` input,
        sMRIPrep's FreeSurfer-derived fsLR sphere (what it uses with ``--no-msm``), with a warning on
        Nipype's workflow logger naming subject, hemisphere and reasons, and the reasons in the
        sphere's GIFTI metadata (``GeoMorphQualityFlagged``), which the sink copies; ``"error"``: the
        node fails with that line (:class:`~geomorph_bids.io.fmriprep_compat.FlaggedRegistration`).
    thresholds : the gates' thresholds (the BIDS-App's ``--min-cc`` ...); None: its defaults.

    Inputs (``inputnode``, each [left, right]): ``sulc`` (FreeSurfer-sign sulcal depth on the
    native mesh, ``.shape.gii``), ``sphere`` (native sphere), ``sphere_reg_fsLR`` (the same mesh
    in fsLR space, e.g. sMRIPrep's ``space-fsLR_desc-reg`` sphere: the initial rotation).

    Outputs (``outputnode``): ``sphere_reg_fsLR`` [left, right], the native meshes moved into
    fsLR space (same vertices and triangles as ``sphere``).
    """
    del sloppy  # the interface of init_msm_sulc_wf; nothing to make faster
    if on_flagged not in ON_FLAGGED:
        raise ValueError(f"on_flagged must be one of {', '.join(ON_FLAGGED)}, got {on_flagged!r}")
    choice = resolve_model(model, "fsLR")
    template = TemplateRef.bundled("fsLR")
    workflow = LiterateWorkflow(name=name)
    workflow.__desc__ = (
        "The native spheres were registered to fsLR with GeoMorph (Suliman et al., Medical Image Analysis "
        "2025; geomorph-bids "
        f"{__version__}): a rotation from the correspondence with the FreeSurfer-derived fsLR sphere, "
        f"then {choice.describe().replace('rigid pre-alignment, then ', '')} on sulcal depth"
        + (". A hemisphere whose registration failed geomorph-bids' quality gates would keep the FreeSurfer-derived "
           "fsLR sphere.\n" if on_flagged == "fallback" else ".\n"))
    inputnode = pe.Node(niu.IdentityInterface(fields=["sulc", "sphere", "sphere_reg_fsLR"]), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["sphere_reg_fsLR"]), name="outputnode")
    register = pe.MapNode(
        Register(feature_names=["sulc"], template=template.to_dict(), model=choice.to_dict(),
                 device=choice.resolve_device(device), num_threads=omp_nthreads, sphere_reg_space="template",
                 software=software_id()),
        iterfield=["sphere", "feature_files", "sphere_reg", "hemi"], name="register",
        n_procs=omp_nthreads, mem_gb=REGISTRATION_NEEDS_GB[163842][0])
    # the spheres are this workflow's inputs, unknown while the graph is built: each hemisphere's memory is read
    # from its sphere's header when it is scheduled (nipype 1.11; before, 0.66 GB, a 163,842-vertex one's)
    register.ram_estimator = SphereMemory()
    register.inputs.hemi = ["L", "R"]
    gate = pe.MapNode(SwappedSphereGate(on_flagged=on_flagged, software=software_id()), name="quality_gate",
                      iterfield=["in_sphere", "metrics_file", "fallback_sphere", "hemi", "source"])
    gate.inputs.hemi = ["L", "R"]
    if thresholds is not None:
        gate.inputs.thresholds = thresholds.to_dict()
    workflow.connect([
        (inputnode, register, [("sphere", "sphere"), (("sulc", _each_as_list), "feature_files"),
                               ("sphere_reg_fsLR", "sphere_reg")]),
        (inputnode, gate, [("sphere_reg_fsLR", "fallback_sphere"), ("sulc", "source")]),
        (register, gate, [("out_sphere", "in_sphere"), ("metrics_file", "metrics_file")]),
        (gate, outputnode, [("out_sphere", "sphere_reg_fsLR")]),
    ])
    return workflow

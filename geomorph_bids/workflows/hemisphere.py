"""Per-hemisphere workflow: load -> register -> resample -> write."""

from __future__ import annotations

from nipype.pipeline import engine as pe

from ..crashfiles import hemi_wf_name
from ..engine.device import registration_needs_gb
from ..interfaces import LoadFeatures, Register, ResampleFeatures, SphereToFsLR, WriteHemisphere
from ..io.discover import HemiInputs
from .config import RunConfig
from .outputs import hemi_outputs, hemisphere_files, hemisphere_info, needs_fslr_sphere

__all__ = ["init_hemisphere_wf", "hemi_outputs"]


def init_hemisphere_wf(h: HemiInputs, config: RunConfig) -> pe.Workflow:
    """Register one hemisphere and write its derivatives: four nodes (five with
    ``--fmriprep-compat`` and template fsaverage).

    ``load_features`` (validate, sign, hemisphere labels; the midthickness and cortex mask when
    found; its cache key includes the inputs' content hash ``h.digest``) -> ``register``
    (pre-alignment + GeoMorph, the medial wall left out of the similarity when there is a cortex
    mask; with a GPU it takes every process slot) -> ``resample`` (every feature onto the
    template sphere at ``config.density``, area-corrected with the midthickness and restricted to
    the cortex mask when there are) -> ``write_outputs`` (the metrics JSON with the verdict of the quality gates,
    ``config.quality``, and every file of :func:`~geomorph_bids.workflows.outputs.hemisphere_files`,
    committed together once every result exists: nothing of a hemisphere is written unless every
    step succeeded); ``to_fslr`` (the sphere carried into fsLR) feeds ``write_outputs`` with
    ``--fmriprep-compat`` and template fsaverage. Every node has ``config.software`` among its
    inputs (its cache key): results an earlier build of geomorph-bids left in the work folder are
    computed again.
    """
    wf = pe.Workflow(name=hemi_wf_name(h.hemi))
    features = list(config.features)
    load = pe.Node(LoadFeatures(sphere=str(h.sphere), feature_files=[str(h.features[f]) for f in features],
                                feature_names=features, signs=[h.sign(f) for f in features], hemi=h.hemi,
                                subject=h.subject, input_digest=h.digest, software=config.software,
                                registration_features=list(config.channels)),
                   name="load_features")
    if h.sphere_reg is not None:
        load.inputs.sphere_reg = str(h.sphere_reg)
    if h.midthickness is not None:
        load.inputs.midthickness = str(h.midthickness)
    if h.cortex_mask is not None:
        load.inputs.cortex_mask = str(h.cortex_mask)
    register = pe.Node(Register(template=config.template.to_dict(), model=config.model.to_dict(),
                                hemi=h.hemi, device=config.device, num_threads=config.omp_nthreads,
                                subject=h.subject, source_files=[str(h.features[f]) for f in features],
                                content_key=config.registration_key(h.hemi), software=config.software),
                       name="register", n_procs=config.nprocs if config.gpu else config.omp_nthreads,
                       # measured peak RSS at 164k, more for a high-resolution mesh (7T, FastSurfer's hires)
                       mem_gb=registration_needs_gb(h.sphere_vertices())[0])
    resample = pe.Node(ResampleFeatures(template=config.template.base, hemi=h.hemi, density=config.density,
                                        templateflow_home=config.templateflow_home, software=config.software),
                       name="resample")
    write = pe.Node(WriteHemisphere(files=[f.to_dict() for f in hemisphere_files(h, config)],
                                    info=hemisphere_info(h, config), density=config.density,
                                    output_dir=str(config.output_dir), thresholds=config.quality.to_dict(),
                                    software=config.software),
                    name="write_outputs", run_without_submitting=True)
    wf.connect([
        (load, register, [("sphere", "sphere"), ("feature_files", "feature_files"), ("feature_names", "feature_names")]),
        (load, resample, [("feature_files", "feature_files"), ("feature_names", "feature_names")]),
        (register, resample, [("out_sphere", "registered_sphere")]),
        (register, write, [("out_sphere", "registered_sphere"), ("metrics_file", "registration")]),
        (resample, write, [("out_files", "resampled_features"), ("density_source", "density_source")]),
        (load, write, [("sphere", "native_sphere"), ("feature_files", "native_features"),
                       ("label_conflicts", "label_conflicts"), ("no_data", "no_data")]),
    ])
    if h.sphere_reg is not None:
        wf.connect(load, "sphere_reg", register, "sphere_reg")
    # always: load_features makes a mask where a map holds no data (NaN, a sulc plateau), without a mask file too
    # the registration leaves out where its own maps hold no data; the resampling where any map does
    wf.connect([(load, register, [("registration_mask", "cortex_mask")]),
                (load, resample, [("cortex_mask", "cortex_mask")])])
    if h.midthickness is not None:
        wf.connect(load, "midthickness", resample, "midthickness")
    if needs_fslr_sphere(config):
        to_fslr = pe.Node(SphereToFsLR(hemi=h.hemi, software=config.software), name="to_fslr")
        wf.connect([(register, to_fslr, [("out_sphere", "in_sphere")]),
                    (to_fslr, write, [("out_sphere", "sphere_reg_fslr")])])
    return wf

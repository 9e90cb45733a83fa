"""Per-hemisphere workflow: load -> register -> resample -> metrics -> derivatives."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..crashfiles import hemi_wf_name
from ..derivatives import FMRIPREP_SPHERES, HemisphereOutputs, entities, hemisphere_outputs
from ..interfaces import (LoadFeatures, OutputsReady, PrecomputedRegistration, Register, ResampleFeatures,
                          SphereToFsLR, WriteMetrics)
from ..io.discover import HemiInputs
from .config import RunConfig
from .outputs import init_ds_hemisphere_wf, relative_to, sign_convention

__all__ = ["init_hemisphere_wf", "hemi_outputs", "batch_item_dir"]


def hemi_outputs(h: HemiInputs, config: RunConfig) -> HemisphereOutputs:
    """Every file the hemisphere workflow writes (:meth:`HemisphereOutputs.files`, sidecars
    included): for the completeness check and the cleanup of a failed hemisphere."""
    return hemisphere_outputs(config.output_dir, h.subject, h.session, h.hemi, config.template.label,
                              config.density, config.features, config.channels, config.fmriprep_compat)


def batch_item_dir(batch_dir: str | Path, h: HemiInputs) -> Path:
    """Folder of one hemisphere's batch-mode registration (see workflows/batch.py)."""
    return Path(batch_dir) / f"{entities(h.subject, h.session)}_hemi-{h.hemi}"


def init_hemisphere_wf(h: HemiInputs, config: RunConfig) -> pe.Workflow:
    """Register one hemisphere and write its derivatives.

    Nodes: ``load_features`` (validate, sign, hemisphere labels; the midthickness and cortex
    mask when found; its cache key includes the inputs' content hash ``h.digest``) ->
    ``register`` (pre-alignment + GeoMorph, the medial wall left out of the similarity when there
    is a cortex mask; with a GPU it takes every process slot) -> ``resample`` (every feature onto
    the template sphere at ``config.density``, area-corrected with the midthickness when there is
    one) and ``metrics`` (with the verdict of the quality gates, ``config.quality``); with
    ``--fmriprep-compat`` and template fsaverage, ``to_fslr`` (the sphere carried into fsLR);
    ``outputs_ready`` passes the named results on once all of them exist, so nothing of a
    hemisphere is written unless every step succeeded; then the sinks of
    :func:`~geomorph_bids.workflows.outputs.init_ds_hemisphere_wf`.
    """
    wf = pe.Workflow(name=hemi_wf_name(h.hemi))
    features = list(config.features)
    signs = [h.sign(f) for f in features]

    load = pe.Node(LoadFeatures(sphere=str(h.sphere), feature_files=[str(h.features[f]) for f in features],
                                feature_names=features, signs=signs, hemi=h.hemi, subject=h.subject,
                                input_digest=h.digest),
                   name="load_features")
    if h.sphere_reg is not None:
        load.inputs.sphere_reg = str(h.sphere_reg)
    if h.midthickness is not None:
        load.inputs.midthickness = str(h.midthickness)
    if h.cortex_mask is not None:
        load.inputs.cortex_mask = str(h.cortex_mask)
    if config.batch_dir:  # batch mode: registered beforehand, in one process for the cohort
        register = pe.Node(PrecomputedRegistration(folder=str(batch_item_dir(config.batch_dir, h)),
                                                   subject=h.subject, hemi=h.hemi), name="register")
    else:
        register = pe.Node(Register(template=config.template.to_dict(), model=config.model.to_dict(),
                                    hemi=h.hemi, device=config.device, num_threads=config.omp_nthreads,
                                    subject=h.subject),
                           name="register", n_procs=config.nprocs if config.gpu else config.omp_nthreads,
                           mem_gb=2.0)  # target: peak RSS <= 2 GB per registration
    resample = pe.Node(ResampleFeatures(template=config.template.base, hemi=h.hemi, density=config.density,
                                        templateflow_home=config.templateflow_home),
                       name="resample")
    info = {"subject": h.subject, "session": h.session, "hemi": h.hemi, "template": config.template.label,
            "template_ref": config.template.to_dict(),
            "model": config.model.name, "input_source": h.source, "sulc_sign": h.sulc_sign,
            "sign_convention": sign_convention(h, features),
            "input_sphere": relative_to(h.sphere, config.bids_dir),
            "input_sphere_reg": relative_to(h.sphere_reg, config.bids_dir) if h.sphere_reg else None,
            "input_features": {f: relative_to(h.features[f], config.bids_dir) for f in features},
            "features": features,
            # the inflated/midthickness mesh the report draws maps on (not copied into the outputs):
            # relative to the BIDS dir like the other inputs, plus the absolute path to open it
            "input_surface": relative_to(h.surface, config.bids_dir) if h.surface else None,
            "input_surface_kind": h.surface_kind,
            "input_surface_path": str(Path(h.surface).resolve()) if h.surface else None,
            "input_midthickness": relative_to(h.midthickness, config.bids_dir) if h.midthickness else None,
            "input_cortex_mask": relative_to(h.cortex_mask, config.bids_dir) if h.cortex_mask else None}
    metrics = pe.Node(WriteMetrics(info=info, density=config.density, thresholds=config.quality.to_dict()),
                      name="metrics")
    ready = pe.Node(OutputsReady(), name="outputs_ready", run_without_submitting=True)
    native_feats = pe.Node(niu.Select(index=[features.index(c) for c in config.channels]),
                           name="native_features", run_without_submitting=True)

    if not config.batch_dir:
        wf.connect(load, "sphere", register, "sphere")
        wf.connect(load, "feature_files", register, "feature_files")
        wf.connect(load, "feature_names", register, "feature_names")
    wf.connect([
        (load, resample, [("feature_files", "feature_files"), ("feature_names", "feature_names")]),
        (register, resample, [("out_sphere", "registered_sphere")]),
        (register, metrics, [("metrics_file", "registration")]),
        (load, metrics, [("label_conflicts", "label_conflicts")]),
        (resample, metrics, [("density_source", "density_source")]),
        (register, ready, [("out_sphere", "registered_sphere")]),
        (resample, ready, [("out_files", "resampled_features")]),
        (metrics, ready, [("out_file", "metrics")]),
        (load, ready, [("sphere", "native_sphere")]),
        (load, native_feats, [("feature_files", "inlist")]),
        (native_feats, ready, [("out", "native_features")]),
    ])
    if h.sphere_reg is not None and not config.batch_dir:
        wf.connect(load, "sphere_reg", register, "sphere_reg")
    if h.cortex_mask is not None and not config.batch_dir:
        wf.connect(load, "cortex_mask", register, "cortex_mask")
    if h.midthickness is not None:
        wf.connect(load, "midthickness", resample, "midthickness")
    if config.fmriprep_compat and "sphere_reg_fsLR" in FMRIPREP_SPHERES.get(config.template.label, {}):
        to_fslr = pe.Node(SphereToFsLR(hemi=h.hemi), name="to_fslr")
        wf.connect([(register, to_fslr, [("out_sphere", "in_sphere")]),
                    (to_fslr, ready, [("out_sphere", "sphere_reg_fslr")])])

    ds = init_ds_hemisphere_wf(h, config)
    wf.connect([(ready, ds, [(f, f"inputnode.{f}") for f in ("registered_sphere", "resampled_features", "metrics",
                                                             "native_sphere", "native_features")])])
    if config.fmriprep_compat and "sphere_reg_fsLR" in FMRIPREP_SPHERES.get(config.template.label, {}):
        wf.connect(ready, "sphere_reg_fslr", ds, "inputnode.sphere_reg_fslr")
    return wf

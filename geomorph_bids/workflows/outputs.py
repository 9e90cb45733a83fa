"""Derivative sinks of one hemisphere (the sMRIPrep way: one ``ds_*`` sink per output, each fed
from a named field of the builder's ``inputnode``; names from :mod:`geomorph_bids.derivatives`,
sidecar contents here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..derivatives import (CIFTI_FEATURES, METRICS, NATIVE_FEATURE, NATIVE_SPHERE, REGISTERED_SPHERE,
                           RESAMPLED_FEATURE, Derivative, cifti_file, entities)
from ..interfaces import FeaturesCifti, GeomorphDataSink
from ..interfaces.bids import OPTIONAL_OUTPUT_FIELDS, OUTPUT_FIELDS
from ..io.discover import HemiInputs
from .config import RunConfig, SubjectJob

__all__ = ["init_ds_hemisphere_wf", "init_cifti_wf", "cifti_output", "sign_convention", "relative_to",
           "template_source"]

#: features whose sign convention the sidecars state (FreeSurfer: positive in sulci)
_SIGNED = ("sulc", "curv")


def relative_to(path: str | Path, root: Path) -> str:
    """``path`` relative to ``root`` (both resolved), else as given: how inputs are recorded."""
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def sign_convention(h: HemiInputs, features: Sequence[str]) -> str:
    """The sign convention of the outputs, and which input maps were negated to reach it."""
    flipped = [f for f in features if h.sign(f) < 0]
    return ("FreeSurfer (sulc and curv positive in sulci)" +
            (f"; the input's {', '.join(flipped)} (HCP sign) were negated" if flipped else ""))


def template_source(h: HemiInputs, config: RunConfig) -> dict[str, Any]:
    """The sidecars' ``TemplateSource``: where the maps the hemisphere is registered to come
    from (``Kind``: folder, templateflow, freesurfer, bundled or custom; ``Path``; ``Vertices``
    of the maps as their source has them; ``SHA256`` of the files read)."""
    p = config.template.provenance(config.model.template_hemi(h.hemi), config.channels)
    return {"Kind": p["template_source"], "Path": p["template_source_path"], "Vertices": p["template_vertices"],
            "SHA256": p["template_sha256"]}


def init_ds_hemisphere_wf(h: HemiInputs, config: RunConfig, name: str = "ds_hemi_wf") -> pe.Workflow:
    """Write one hemisphere's derivatives.

    ``inputnode`` fields (:data:`~geomorph_bids.interfaces.bids.OUTPUT_FIELDS`):
    ``registered_sphere``, ``resampled_features`` (one per ``config.features``, in order),
    ``metrics``, ``native_sphere``, ``native_features`` (one per ``config.channels``, in order),
    and ``sphere_reg_fslr`` (``--fmriprep-compat`` with template fsaverage).
    Each output is one :class:`~geomorph_bids.interfaces.GeomorphDataSink` named ``ds_<output>``
    (``ds_sphere``, ``ds_<feature>``, ``ds_metrics``, ``ds_native_sphere``, ``ds_native_<feature>``;
    ``--fmriprep-compat``: ``ds_<sMRIPrep io_spec key>``, e.g. ``ds_sphere_reg_msm``).
    """
    wf = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=[*OUTPUT_FIELDS, *OPTIONAL_OUTPUT_FIELDS]), name="inputnode")
    features = list(config.features)
    space, density, model = config.template.label, config.density, config.model.name
    sources = {f: relative_to(h.features[f], config.bids_dir) for f in features}
    sign_note = sign_convention(h, features)
    ent = entities(h.subject, h.session)
    source_file = str(config.bids_dir / f"sub-{h.subject}" / f"{ent}_hemi-{h.hemi}_sphere.surf.gii")
    tpl_source = template_source(h, config)

    def sink(node_name: str, kind: Derivative, field: str, index: int | None = None, feature: str | None = None,
             meta: dict[str, Any] | None = None) -> None:
        ds = pe.Node(GeomorphDataSink(base_directory=str(config.output_dir), source_file=source_file, hemi=h.hemi,
                                      **kind.entities(space, density, feature)),
                     name=f"ds_{node_name}", run_without_submitting=True)
        if meta is not None:
            ds.inputs.meta_dict = meta
        if index is None:
            wf.connect(inputnode, field, ds, "in_file")
            return
        pick = pe.Node(niu.Select(index=[index]), name=f"pick_{node_name}", run_without_submitting=True)
        wf.connect([(inputnode, pick, [(field, "inlist")]), (pick, ds, [("out", "in_file")])])

    sink("sphere", REGISTERED_SPHERE, "registered_sphere", meta={
        "Description": f"Native sphere mesh moved into {space} space by geomorph-bids "
                       "(same vertices and triangles as the input sphere); use it where sMRIPrep's "
                       "desc-msmsulc sphere is used.",
        "Sources": [relative_to(h.sphere, config.bids_dir)], "Template": space, "TemplateSource": tpl_source,
        "RegistrationFeatures": list(config.channels), "Model": model,
        "RegistrationMetrics": METRICS.name(ent, h.hemi, space),
        "InputSource": h.source, "SignConvention": sign_note})
    for k, f in enumerate(features):
        sink(f, RESAMPLED_FEATURE, "resampled_features", k, f, meta={
            "Description": f"{f} resampled onto the {space} {density} sphere through "
                           "the geomorph-bids registration",
            "Sources": [sources[f]], "Template": space, "TemplateSource": tpl_source, "Density": density,
            "SpatialReference": config.density_sources.get(h.hemi, ""),
            "ResamplingMethod": "ADAP_BARY_AREA", "Model": model,
            "AreaSurfaces": ("the subject's midthickness and its copy resampled onto the template "
                             "(-area-surfs)" if h.midthickness is not None else "the spheres' own vertex areas"),
            "SignConvention": sign_note if f in _SIGNED else "as in the input",
            "SignFlipped": h.sign(f) < 0})
    sink("metrics", METRICS, "metrics")
    sink("native_sphere", NATIVE_SPHERE, "native_sphere", meta={
        "Description": "The native sphere as registered: the input, validated, centred and scaled to "
                       "radius 100 (same vertices and triangles as the desc-geomorph sphere)",
        "Sources": [relative_to(h.sphere, config.bids_dir)]})
    for k, f in enumerate(config.channels):
        sink(f"native_{f}", NATIVE_FEATURE, "native_features", k, f, meta={
            "Description": f"The native {f} map the registration used, on the native sphere",
            "Sources": [sources[f]],
            "SignConvention": sign_note if f in _SIGNED else "as in the input", "SignFlipped": h.sign(f) < 0})
    if config.fmriprep_compat:
        from ..io.fmriprep_compat import deformation_source, fmriprep_spheres, sphere_sidecar

        for key, kind in fmriprep_spheres(space).items():
            carried = key == "sphere_reg_fsLR"
            sink(key, kind, "sphere_reg_fslr" if carried else "registered_sphere", meta=sphere_sidecar(
                key, subject_entities=ent, hemi=h.hemi, template=space, model=model, channels=config.channels,
                method=config.model.describe(), input_sphere=relative_to(h.sphere, config.bids_dir),
                deformation=deformation_source(h.hemi) if carried else None))
    return wf


def cifti_output(job: SubjectJob, config: RunConfig) -> Path | None:
    """The CIFTI file a subject/session's workflow writes (``--cifti-output``), or None: it needs
    both hemispheres, found in the same session folder."""
    hemis = job.inputs.hemis
    if not config.cifti or set(hemis) != {"L", "R"} or hemis["L"].session != hemis["R"].session:
        return None
    return cifti_file(config.output_dir, job.subject, hemis["L"].session, config.template.label, config.density)


def init_cifti_wf(subject: str, session: str | None, config: RunConfig, name: str = "cifti_wf") -> pe.Workflow:
    """``--cifti-output``: both hemispheres' resampled features -> one CIFTI-2 dscalar, and its sink.

    ``inputnode`` fields ``left`` and ``right``: the resampled features of each hemisphere (one
    per ``config.features``, in order; the ``resampled_features`` of each hemisphere's
    ``outputs_ready``, so the file is written only when both hemispheres succeeded).
    """
    from ..io.fmriprep_compat import cifti_sidecar
    from ..io.templates import load_atlas_roi

    wf = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["left", "right"]), name="inputnode")
    features, space, density = list(config.features), config.template.label, config.density
    ent = entities(subject, session)
    make = pe.Node(FeaturesCifti(features=features, density=density), name="make_cifti")
    ds = pe.Node(GeomorphDataSink(base_directory=str(config.output_dir), compress=False,
                                  source_file=str(config.bids_dir / f"sub-{subject}" / f"{ent}_features.dscalar.nii"),
                                  **CIFTI_FEATURES.entities(space, density)),
                 name="ds_cifti", run_without_submitting=True)
    ds.inputs.meta_dict = cifti_sidecar(features, space, density, ent,
                                        {h: load_atlas_roi(h, density)[1] for h in ("L", "R")},
                                        config.density_sources)
    wf.connect([(inputnode, make, [("left", "left"), ("right", "right")]),
                (make, ds, [("out_file", "in_file")])])
    return wf

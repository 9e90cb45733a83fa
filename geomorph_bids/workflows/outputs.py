"""What one hemisphere writes, declared once for both ways of running the participant level
(the Nipype workflow's ``write_outputs`` node and batch mode): every file with its name (from
:mod:`geomorph_bids.derivatives`), the result that feeds it and its JSON sidecar
(:func:`hemisphere_files`), and the provenance recorded in the metrics JSON
(:func:`hemisphere_info`). Plain functions of the discovered inputs and the run's settings: no
Nipype. Adding an output = one more :class:`~geomorph_bids.results.writer.OutputFile` here
(plus its name in :mod:`geomorph_bids.derivatives`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..derivatives import (METRICS, NATIVE_FEATURE, NATIVE_SPHERE, REGISTERED_SPHERE,
                           RESAMPLED_FEATURE, HemisphereOutputs, anat_uri, cifti_file, entities, hemisphere_outputs)
from ..io.discover import HemiInputs
from ..io.template_sources import source_record
from ..results.writer import OutputFile
from .config import RunConfig, SubjectJob
from .uris import folder_name, input_uri
from .uris import relative_inside as _inside

if TYPE_CHECKING:  # annotations only: batch mode imports this module, which loads no Nipype
    from nipype.pipeline import engine as pe

__all__ = ["hemi_outputs", "hemisphere_files", "hemisphere_info", "sign_convention", "relative_to", "input_uri",
           "template_source", "template_folder_name", "run_settings", "recorded_settings", "expected_files", "withheld_spheres",
           "resume_record", "reusable",
           "cifti_output", "cifti_meta", "write_cifti", "cifti_is_current", "init_cifti_wf"]

#: features whose sign convention the sidecars state (FreeSurfer: positive in sulci)
_SIGNED = ("sulc", "curv")


def relative_to(path: str | Path, root: Path) -> str:
    """``path`` relative to ``root`` (as :func:`_inside` finds it), else as given: how inputs are recorded."""
    rel = _inside(path, root)
    return str(path) if rel is None else rel


def sign_convention(h: HemiInputs, features: Sequence[str]) -> str:
    """The sign convention of the outputs, and which input maps were negated to reach it."""
    flipped = [f for f in features if h.sign(f) < 0]
    return ("FreeSurfer (sulc and curv positive in sulci)" +
            (f"; the input's {', '.join(flipped)} (HCP sign) were negated" if flipped else ""))


def hemi_outputs(h: HemiInputs, config: RunConfig) -> HemisphereOutputs:
    """Every file the hemisphere writes (:meth:`HemisphereOutputs.files`, sidecars included):
    for the completeness check and the cleanup of a failed hemisphere."""
    return hemisphere_outputs(config.output_dir, h.subject, h.session, h.hemi, config.template.label,
                              config.density, config.features, config.channels, config.fmriprep_compat)


def template_source(h: HemiInputs, config: RunConfig) -> dict[str, Any]:
    """The sidecars' ``TemplateSource``: where the maps the hemisphere is registered to come
    from (``Kind``: folder, templateflow, freesurfer, bundled or custom; ``Path``, named as
    :func:`template_folder_name` names it; ``Vertices`` of the maps read; the bundled maps also
    ``BuiltFromVertices``, those of the maps they were built from; ``SHA256`` of the files read)."""
    record = source_record(config.template.provenance(config.model.template_hemi(h.hemi), config.channels))
    return {**record, "Path": template_folder_name(record.get("Path"), config)}


def template_folder_name(folder: str | Path | None, config: RunConfig) -> str | None:
    """A template's folder as the sidecars name it (:func:`~geomorph_bids.workflows.uris.folder_name`, with the
    run's dataset, links, output folder and ``TEMPLATEFLOW_HOME``)."""
    return folder_name(folder, config.bids_dir, config.dataset_links, config.output_dir, config.templateflow_home)


#: what the registered sphere stands in for, by the template whose coordinates it is in: an fsLR sphere for
#: sMRIPrep's MSMSulc one; an fsaverage sphere for FreeSurfer's sphere.reg (sMRIPrep's desc-reg), never for the
#: MSMSulc one, which is in fsLR space, 42.5 / 26.4 deg (L / R) away
_USED_AS = {"fsLR": "sMRIPrep's space-fsLR_desc-msmsulc sphere",
            "fsaverage": "FreeSurfer's sphere.reg (sMRIPrep's space-fsaverage_desc-reg sphere)"}


def hemisphere_files(h: HemiInputs, config: RunConfig) -> list[OutputFile]:
    """The hemisphere's files, each fed by a named result:

    ``registered_sphere`` (the native mesh in template space), ``resampled_features`` (one map
    per ``config.features``, in order), ``metrics`` (the metrics JSON), ``native_sphere`` (the
    validated native sphere) and ``native_features`` (the validated native maps of every
    ``config.features``, in order: the registration's own ones are written); with
    ``--fmriprep-compat`` the sphere again under sMRIPrep's names (``registered_sphere``, or
    ``sphere_reg_fslr``: with template fsaverage, the sphere carried into fsLR), written only
    when the hemisphere passes the quality gates (``unless_flagged``: fMRIPrep would take a
    flagged one in place of MSMSulc's without a word).
    """
    out = hemi_outputs(h, config)
    features = list(config.features)
    space, density, model = config.template.label, config.density, config.model.name
    sources = {f: input_uri(h.features[f], config.bids_dir, config.dataset_links) for f in features}
    sphere_source = input_uri(h.sphere, config.bids_dir, config.dataset_links)
    sign_note = sign_convention(h, features)
    ent = entities(h.subject, h.session)
    registered = anat_uri(ent, REGISTERED_SPHERE.name(ent, h.hemi, space))
    tpl_source = template_source(h, config)
    # a custom (population) template's maps lie in its base template's coordinates, and its outputs are
    # on the base's output spheres: said, as the SpatialReference (the base's sphere) shows
    base = config.template.base
    # what registered it, in words (the sidecars said the model's name alone: the same "sulc-fsLR" for the network
    # alone, refined, or as the full optimiser's start), and a right hemisphere a left-hemisphere network took mirrored
    method = config.model.describe() + (", the hemisphere mirrored (x -> -x) onto the left template and back"
                                        if config.model.template_hemi(h.hemi) != h.hemi else "")
    custom = {"BaseTemplate": base} if config.template.is_custom else {}
    where = f"{space} space" + (f" (the {base} sphere's coordinates, where its maps lie)" if custom else "")
    files = [OutputFile(out.path(REGISTERED_SPHERE), "registered_sphere", meta={
        "Description": f"Native sphere mesh moved into {where} by geomorph-bids "
                       f"(same vertices and triangles as the input sphere); use it where {_USED_AS[base]} is used.",
        "Sources": [sphere_source], "Template": space, **custom, "TemplateSource": tpl_source,
        "RegistrationFeatures": list(config.channels), "Model": model, "RegistrationMethod": method,
        "RegistrationMetrics": anat_uri(ent, METRICS.name(ent, h.hemi, space)),
        "InputSource": h.source, "SignConvention": sign_note})]
    cortex = {} if h.cortex_mask is None else {"CurrentRoi": (
        f"{input_uri(h.cortex_mask, config.bids_dir, config.dataset_links)}: values outside the subject's cortex are left out of "
        "every vertex that has a cortical source (-current-roi); a vertex with none keeps the unrestricted value")}
    for k, f in enumerate(features):
        files.append(OutputFile(out.path(RESAMPLED_FEATURE, f), "resampled_features", k, meta={
            "Description": f"{f} resampled onto the {base if custom else space} {density} sphere"
                           + (f" (template {space} is built on {base})" if custom else "")
                           + " through the geomorph-bids registration",
            "Sources": [sources[f], registered], "Template": space, **custom, "TemplateSource": tpl_source,
            "Density": density,
            "SpatialReference": config.density_sources.get(h.hemi, ""),
            "ResamplingMethod": "ADAP_BARY_AREA", "Model": model, "RegistrationMethod": method,
            "AreaSurfaces": ("the subject's midthickness and its copy resampled onto the template "
                             "(-area-surfs)" if h.midthickness is not None else "the spheres' own vertex areas"),
            **cortex,
            "SignConvention": sign_note if f in _SIGNED else "as in the input",
            "SignFlipped": h.sign(f) < 0}))
    files.append(OutputFile(out.path(METRICS), "metrics"))
    files.append(OutputFile(out.path(NATIVE_SPHERE), "native_sphere", meta={
        "Description": "The native sphere as registered: the input, validated, centred and scaled to "
                       "radius 100 (same vertices and triangles as the desc-geomorph sphere)",
        "Sources": [sphere_source]}))
    for f in config.channels:
        files.append(OutputFile(out.path(NATIVE_FEATURE, f), "native_features", features.index(f), meta={
            "Description": f"The native {f} map the registration used, on the native sphere",
            "Sources": [sources[f]],
            "SignConvention": sign_note if f in _SIGNED else "as in the input", "SignFlipped": h.sign(f) < 0}))
    if config.fmriprep_compat:
        from ..io.fmriprep_compat import deformation_source, fmriprep_spheres, sphere_sidecar

        paths = out.fmriprep_spheres
        for key in fmriprep_spheres(space):
            carried = key == "sphere_reg_fsLR"
            files.append(OutputFile(paths[key], "sphere_reg_fslr" if carried else "registered_sphere",
                                    unless_flagged=True, meta=sphere_sidecar(
                key, subject_entities=ent, hemi=h.hemi, template=space, model=model, channels=config.channels,
                method=method, input_sphere=relative_to(h.sphere, config.bids_dir),
                deformation=deformation_source(h.hemi) if carried else None)))
    return files


def expected_files(outputs: HemisphereOutputs, flagged: bool | None = None) -> list[Path]:
    """The files a finished hemisphere has (:meth:`HemisphereOutputs.files`), less the sphere under
    sMRIPrep's names (and its sidecar) when its metrics JSON says it was flagged: those are withheld
    (:func:`~geomorph_bids.results.writer.commit_outputs`). For the completeness checks; a failed
    hemisphere's cleanup takes :meth:`HemisphereOutputs.files` whole. ``flagged``: the verdict of the
    metrics JSON when the caller has read it (None: read here)."""
    from ..derivatives import sidecar
    from ..results.writer import is_flagged

    files = outputs.files()
    if not outputs.fmriprep_spheres or not (is_flagged(outputs.metrics) if flagged is None else flagged):
        return files
    withheld = {q for p in outputs.fmriprep_spheres.values() for q in (p, sidecar(p))}
    return [p for p in files if p not in withheld]


def withheld_spheres(outputs: HemisphereOutputs, flagged: bool | None = None) -> list[str]:
    """The names of the spheres under sMRIPrep's names a flagged hemisphere did not write (empty
    when it passed, or without ``--fmriprep-compat``). ``flagged`` as for :func:`expected_files`."""
    from ..results.writer import is_flagged

    if not outputs.fmriprep_spheres or not (is_flagged(outputs.metrics) if flagged is None else flagged):
        return []
    return [p.name for p in outputs.fmriprep_spheres.values()]


def needs_fslr_sphere(config: RunConfig) -> bool:
    """Whether ``--fmriprep-compat`` also writes the sphere carried into fsLR (template fsaverage)."""
    from ..derivatives import FMRIPREP_SPHERES

    return config.fmriprep_compat and "sphere_reg_fsLR" in FMRIPREP_SPHERES.get(config.template.label, {})


def hemisphere_info(h: HemiInputs, config: RunConfig) -> dict[str, Any]:
    """Provenance of one hemisphere, merged into its metrics JSON
    (:func:`geomorph_bids.results.metrics.metrics_document`); ``resume``: its :func:`resume_record`."""
    features = list(config.features)
    info = {"subject": h.subject, "session": h.session, "hemi": h.hemi, "template": config.template.label,
            "template_ref": config.template.to_dict(),
            "model": config.model.name, "input_source": h.source, "sulc_sign": h.sulc_sign,
            "sign_convention": sign_convention(h, features),
            "input_sphere": relative_to(h.sphere, config.bids_dir),
            "input_sphere_reg": relative_to(h.sphere_reg, config.bids_dir) if h.sphere_reg else None,
            "input_features": {f: relative_to(h.features[f], config.bids_dir) for f in features},
            "features": features,
            # the inflated/midthickness mesh the report draws maps on (not copied into the outputs):
            # relative to the BIDS dir like the other inputs (the report finds it through DatasetLinks' raw),
            # and the absolute path to open it only outside the BIDS dir (no user's folder named otherwise)
            "input_surface": relative_to(h.surface, config.bids_dir) if h.surface else None,
            "input_surface_kind": h.surface_kind,
            "input_surface_path": (str(Path(h.surface).resolve())
                                   if h.surface and _inside(h.surface, config.bids_dir) is None else None),
            "input_midthickness": relative_to(h.midthickness, config.bids_dir) if h.midthickness else None,
            "input_cortex_mask": relative_to(h.cortex_mask, config.bids_dir) if h.cortex_mask else None}
    record = resume_record(h, config)
    return info if record is None else {**info, "resume": record}


def resume_record(h: HemiInputs, config: RunConfig) -> dict[str, Any] | None:
    """What the metrics JSON records (``resume``) so that a later run may take its hemisphere as done
    without a work folder (:func:`reusable`): the input files as the sidecars name them (:func:`input_uri`:
    ``bids:raw:...`` in the BIDS folder, ``bids:<link>:...`` in a DatasetLinks dataset, else the absolute
    path; the surface the report draws on too: what the outputs say of where the inputs lie, so a dataset
    moved with its outputs is still theirs), their content hash ``h.digest`` (computed once after discovery)
    and :attr:`~geomorph_bids.workflows.config.RunConfig.results_key` (the settings) with where the hemisphere's
    output-density sphere comes from (``density_sources``, named without folders: ``TEMPLATEFLOW_HOME`` set or
    unset resamples to another sphere, which the sidecars name). None when ``h`` has no content hash (inputs not
    hashed: such outputs are never reused)."""
    if not h.digest:
        return None
    inputs = [h.sphere, h.sphere_reg, *(h.features[f] for f in config.features), h.midthickness, h.cortex_mask,
              h.surface]
    return {"inputs": [input_uri(Path(p).absolute(), config.bids_dir, config.dataset_links)
                       for p in inputs if p is not None], "sha1": h.digest, "settings": config.results_key,
            "density_source": config.density_sources.get(h.hemi, "")}


def reusable(h: HemiInputs, config: RunConfig) -> bool:
    """Whether hemisphere ``h``'s outputs in the output folder are those this run would write, so that
    it need not be registered again (a fresh or purged work folder, the other mode, a moved output
    folder): its metrics JSON records the same :func:`resume_record` (inputs by content, every
    setting, the build), its latest run did not fail, and every file of :func:`expected_files` is
    there with the size and SHA-1 it was written with
    (:func:`~geomorph_bids.results.metrics.outputs_as_written`: the manifest the writer adds)."""
    from ..results.metrics import LATEST_RUN_FAILED, outputs_as_written, read_document
    from ..results.writer import flagged_in

    record = resume_record(h, config)
    outputs = hemi_outputs(h, config)
    doc = read_document(outputs.metrics)
    if record is None or doc is None or LATEST_RUN_FAILED in doc or doc.get("resume") != record:
        return False
    files = [p for p in expected_files(outputs, flagged_in(doc)) if p != outputs.metrics]
    return outputs_as_written(doc, outputs.metrics, files)


def run_settings(config: RunConfig, hemi: str) -> dict[str, str]:
    """The settings that decide a hemisphere's results, as :func:`recorded_settings` reads them
    back from its metrics JSON: model, method, features, the output density and where the template's maps come from
    (the kind, and the folder unless bundled: the package's folder moves with each installation),
    with the vertex count of maps found on the machine (a folder whose fsaverage5 was replaced by
    the full fsaverage in place, or a link pointed elsewhere), and the build of geomorph-bids
    (``config.software``, when decided: outputs of an earlier build are redone, not kept)."""
    template = config.template
    count = ""  # the vertex count of maps found on the machine: an fsaverage5 replaced by the full one in place
    if template.is_custom:
        maps = f"custom {template.folder}"
    else:
        source = template.source(config.model.template_hemi(hemi), config.channels)
        maps = source.kind if source.is_bundled else f"{source.kind} {source.folder}"
        if not source.is_bundled:
            count = f"{source.vertex_count():,}"
    return {"model": config.model.name, "method": config.model.method, "features": ", ".join(config.features),
            "output density": config.density, "template maps": maps, "template vertices": count,
            **({"software": config.software} if config.software else {})}


def recorded_settings(doc: dict[str, Any]) -> dict[str, str]:
    """:func:`run_settings` of the run that wrote a metrics document ``doc``: the settings it
    records (a document of an early version has no ``template_source``, and no template maps are
    compared: a rerun would otherwise report ``template maps None None -> bundled``)."""
    reg = doc.get("registration") if isinstance(doc.get("registration"), dict) else {}
    out = {key: ", ".join(map(str, doc[key] or ())) if key == "features" else str(doc[key])
           for key in ("model", "method", "features") if key in doc}
    if doc.get("output_density"):
        out["output density"] = str(doc["output_density"])
    kind = reg.get("template_source")
    if kind is not None:
        count = reg.get("template_vertices")
        out["template maps"] = str(kind) if kind == "bundled" else f"{kind} {reg.get('template_source_path')}"
        out["template vertices"] = "" if kind in ("bundled", "custom") else (
            f"{count:,}" if isinstance(count, int) and not isinstance(count, bool) else str(count))
    if "software" in doc:
        out["software"] = str(doc["software"])
    return out


def cifti_output(job: SubjectJob, config: RunConfig) -> Path | None:
    """The CIFTI file a subject/session's workflow writes (``--cifti-output``), or None: it needs
    both hemispheres, found in the same session folder."""
    hemis = job.inputs.hemis
    if not config.cifti or set(hemis) != {"L", "R"} or hemis["L"].session != hemis["R"].session:
        return None
    return cifti_file(config.output_dir, job.subject, hemis["L"].session, config.template.label, config.density)


def cifti_meta(subject: str, session: str | None, config: RunConfig) -> dict[str, Any]:
    """The JSON sidecar of a subject/session's ``--cifti-output`` dscalar."""
    from ..io.fmriprep_compat import cifti_sidecar
    from ..io.templates import load_atlas_roi

    return cifti_sidecar(list(config.features), config.template.label, config.density, entities(subject, session),
                         {h: load_atlas_roi(h, config.density)[1] for h in ("L", "R")}, config.density_sources)


def write_cifti(job: SubjectJob, config: RunConfig) -> Path | None:
    """``--cifti-output`` without Nipype (batch mode): the subject/session's dscalar from both
    hemispheres' resampled features as written, committed with the one writer; None when the
    job has no CIFTI file (:func:`cifti_output`). OSError/ValueError propagate."""
    from ..io.fmriprep_compat import write_features_cifti
    from ..results.metrics import SOURCES_AS_WRITTEN, sources_as_written
    from ..results.writer import OutputFile, commit_outputs, staging

    path = cifti_output(job, config)
    if path is None:
        return None
    maps = _cifti_maps(job, config)
    session = job.inputs.hemis["L"].session
    with staging(config.output_dir) as stage:
        made, _ = write_features_cifti(stage / path.name, maps["L"], maps["R"], list(config.features),
                                       config.density)
        meta = {**cifti_meta(job.subject, session, config),
                SOURCES_AS_WRITTEN: sources_as_written([m for ms in maps.values() for m in ms], config.output_dir,
                                                       built=(path, made))}
        commit_outputs([OutputFile(path, "cifti", meta=meta)],
                       {"cifti": made}, config.output_dir, stage=stage)
    return path


def _cifti_maps(job: SubjectJob, config: RunConfig) -> dict[str, list[Path]]:
    """hemi -> the resampled maps (in the run's feature order) a subject/session's CIFTI file is built from."""
    return {h: [hemi_outputs(job.inputs.hemis[h], config).path(RESAMPLED_FEATURE, f) for f in config.features]
            for h in ("L", "R")}


def cifti_is_current(job: SubjectJob, config: RunConfig) -> bool:
    """Whether the subject/session's ``--cifti-output`` file exists and was built from its maps as they
    are now: its sidecar's :data:`~geomorph_bids.results.metrics.SOURCES_AS_WRITTEN` (each map's size and
    SHA-1 when it was built, and the file's own) equals theirs now. A run stopped (or failing on a full disk) after a
    hemisphere's maps were rewritten and before the CIFTI file was leaves the earlier CIFTI file, which
    holds the earlier maps: it is written again. Modification times decide nothing (before: a study
    copied without them, ``cp -r``, built it again, and a map replaced by one with an older time did not);
    a sidecar of an earlier version, without the record, is not current (built once more)."""
    from ..derivatives import sidecar
    from ..results.metrics import SOURCES_AS_WRITTEN, sources_as_written

    path = cifti_output(job, config)
    if path is None:
        return True
    try:
        if not path.is_file():
            return False
        recorded = json.loads(sidecar(path).read_text()).get(SOURCES_AS_WRITTEN)
    except (OSError, ValueError, AttributeError):  # missing, unreadable, or not a JSON object
        return False
    now = sources_as_written([m for ms in _cifti_maps(job, config).values() for m in ms], config.output_dir,
                             built=(path, path))
    return isinstance(recorded, dict) and None not in now.values() and recorded == now


def init_cifti_wf(subject: str, session: str | None, config: RunConfig, name: str = "cifti_wf") -> pe.Workflow:
    """``--cifti-output``: both hemispheres' resampled features -> one CIFTI-2 dscalar, committed
    with the one writer (:class:`~geomorph_bids.interfaces.bids.CommitFile`).

    ``inputnode`` fields ``left`` and ``right``: the resampled features of each hemisphere as
    written (``write_outputs.resampled_features``, one per ``config.features``, in order), so the
    file is written only when both hemispheres succeeded.
    """
    from nipype.interfaces import utility as niu
    from nipype.pipeline import engine as pe

    from ..interfaces import CommitFile, FeaturesCifti

    wf = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["left", "right"]), name="inputnode")
    features, space, density = list(config.features), config.template.label, config.density
    make = pe.Node(FeaturesCifti(features=features, density=density, software=config.software), name="make_cifti")
    meta = cifti_meta(subject, session, config)
    ds = pe.Node(CommitFile(path=str(cifti_file(config.output_dir, subject, session, space, density)), meta=meta,
                            field="cifti", output_dir=str(config.output_dir), software=config.software),
                 name="ds_cifti", run_without_submitting=True)
    wf.connect([(inputnode, make, [("left", "left"), ("right", "right")]),
                (make, ds, [("out_file", "in_file"), ("sources", "sources")])])
    return wf

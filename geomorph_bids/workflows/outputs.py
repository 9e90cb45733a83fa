"""What one hemisphere writes, declared once for both ways of running the participant level
(the Nipype workflow's ``write_outputs`` node and batch mode): every file with its name (from
:mod:`geomorph_bids.derivatives`), the result that feeds it and its JSON sidecar
(:func:`hemisphere_files`), and the provenance recorded in the metrics JSON
(:func:`hemisphere_info`). Plain functions of the discovered inputs and the run's settings: no
Nipype. Adding an output = one more :class:`~geomorph_bids.results.writer.OutputFile` here
(plus its name in :mod:`geomorph_bids.derivatives`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..derivatives import (METRICS, NATIVE_FEATURE, NATIVE_SPHERE, REGISTERED_SPHERE, RESAMPLED_FEATURE,
                           HemisphereOutputs, entities, hemisphere_outputs)
from ..io.discover import HemiInputs
from ..results.writer import OutputFile
from .config import RunConfig

__all__ = ["hemi_outputs", "hemisphere_files", "hemisphere_info", "sign_convention", "relative_to"]

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


def hemi_outputs(h: HemiInputs, config: RunConfig) -> HemisphereOutputs:
    """Every file the hemisphere writes (:meth:`HemisphereOutputs.files`, sidecars included):
    for the completeness check and the cleanup of a failed hemisphere."""
    return hemisphere_outputs(config.output_dir, h.subject, h.session, h.hemi, config.template.label,
                              config.density, config.features, config.channels)


def hemisphere_files(h: HemiInputs, config: RunConfig) -> list[OutputFile]:
    """The hemisphere's files, each fed by a named result:

    ``registered_sphere`` (the native mesh in template space), ``resampled_features`` (one map
    per ``config.features``, in order), ``metrics`` (the metrics JSON), ``native_sphere`` (the
    validated native sphere) and ``native_features`` (the validated native maps of every
    ``config.features``, in order: the registration's own ones are written).
    """
    out = hemi_outputs(h, config)
    features = list(config.features)
    space, density, model = config.template.label, config.density, config.model.name
    sources = {f: relative_to(h.features[f], config.bids_dir) for f in features}
    sign_note = sign_convention(h, features)
    ent = entities(h.subject, h.session)
    files = [OutputFile(out.path(REGISTERED_SPHERE), "registered_sphere", meta={
        "Description": f"Native sphere mesh moved into {space} space by geomorph-bids "
                       "(same vertices and triangles as the input sphere); use it where sMRIPrep's "
                       "desc-msmsulc sphere is used.",
        "Sources": [relative_to(h.sphere, config.bids_dir)], "Template": space,
        "RegistrationFeatures": list(config.channels), "Model": model,
        "RegistrationMetrics": METRICS.name(ent, h.hemi, space),
        "InputSource": h.source, "SignConvention": sign_note})]
    for k, f in enumerate(features):
        files.append(OutputFile(out.path(RESAMPLED_FEATURE, f), "resampled_features", k, meta={
            "Description": f"{f} resampled onto the {space} {density} sphere through "
                           "the geomorph-bids registration",
            "Sources": [sources[f]], "Template": space, "Density": density,
            "SpatialReference": config.density_sources.get(h.hemi, ""),
            "ResamplingMethod": "ADAP_BARY_AREA", "Model": model,
            "SignConvention": sign_note if f in _SIGNED else "as in the input",
            "SignFlipped": h.sign(f) < 0}))
    files.append(OutputFile(out.path(METRICS), "metrics"))
    files.append(OutputFile(out.path(NATIVE_SPHERE), "native_sphere", meta={
        "Description": "The native sphere as registered: the input, validated, centred and scaled to "
                       "radius 100 (same vertices and triangles as the desc-geomorph sphere)",
        "Sources": [relative_to(h.sphere, config.bids_dir)]}))
    for f in config.channels:
        files.append(OutputFile(out.path(NATIVE_FEATURE, f), "native_features", features.index(f), meta={
            "Description": f"The native {f} map the registration used, on the native sphere",
            "Sources": [sources[f]],
            "SignConvention": sign_note if f in _SIGNED else "as in the input", "SignFlipped": h.sign(f) < 0}))
    return files


def hemisphere_info(h: HemiInputs, config: RunConfig) -> dict[str, Any]:
    """Provenance of one hemisphere, merged into its metrics JSON
    (:func:`geomorph_bids.results.metrics.metrics_document`)."""
    features = list(config.features)
    return {"subject": h.subject, "session": h.session, "hemi": h.hemi, "template": config.template.label,
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
            "input_surface_path": str(Path(h.surface).resolve()) if h.surface else None}

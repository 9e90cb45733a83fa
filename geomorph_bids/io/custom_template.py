"""Custom registration templates from a folder, e.g. a population average written by
:func:`geomorph_bids.engine.population.build_template`.

Layout (TemplateFlow-like; ``<label>`` alphanumeric)::

    tpl-<label>/
      template_description.json                  Name, Identifier, BaseTemplate, Features, ...
      tpl-<label>_hemi-L_den-ico6_sulc.shape.gii  one map per feature and hemisphere (ico-6 grid,
      tpl-<label>_hemi-R_den-ico6_sulc.shape.gii  FreeSurfer sign; 0 = medial wall)
      tpl-<label>_hemi-L_den-ico6_sphere.surf.gii  the ico-6 sphere they are on (written by build_template,
                                                   for Workbench; not read here)

The maps are sampled at the vertices of our level-6 icosphere placed in the BASE template's
spherical coordinates (``BaseTemplate``: fsLR or fsaverage), exactly like the bundled
templates, so a custom template is a drop-in :class:`~geomorph_bids.io.templates.Template`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from .limits import read_json_bounded
from .template_sources import files_sha256
from .templates import TEMPLATE_LEVEL, Template, is_bundled_template, load_template
from .validate import validate_feature

__all__ = ["load_custom_template", "custom_template_info", "find_custom_template", "custom_feature_file",
           "custom_sphere_file", "custom_template_folder", "DESCRIPTION"]

DESCRIPTION = "template_description.json"
_LABEL = re.compile(r"^[A-Za-z0-9]+$")


def custom_template_folder(out_dir: str | Path, label: str) -> Path:
    """``out_dir/tpl-<label>``: where a custom template of ``label`` is written
    (:func:`~geomorph_bids.engine.population.write_template`) and looked for (:func:`find_custom_template`)."""
    return Path(out_dir) / f"tpl-{label}"


def custom_feature_file(folder: str | Path, label: str, hemi: str, feature: str) -> Path:
    """Path of one feature map of a custom template (``feature``: a map's name, or a glob pattern such as
    ``*`` for every map of ``hemi``)."""
    return Path(folder) / f"tpl-{label}_hemi-{hemi}_den-ico{TEMPLATE_LEVEL}_{feature}.shape.gii"


def custom_sphere_file(folder: str | Path, label: str, hemi: str) -> Path:
    """Path of the ico-6 sphere a custom template's maps are on (in its base template's
    coordinates; written for Workbench and other tools: the maps load without it)."""
    return Path(folder) / f"tpl-{label}_hemi-{hemi}_den-ico{TEMPLATE_LEVEL}_sphere.surf.gii"


def custom_template_info(folder: str | Path) -> dict[str, Any]:
    """``template_description.json`` of a custom template folder (InputError if absent/bad)."""
    path = Path(folder) / DESCRIPTION
    try:
        doc = read_json_bounded(path, what="template description")
    except InputError as exc:
        raise InputError(f"not a custom template folder ({exc.reason})", path=path) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("Identifier"), str) or not _LABEL.match(doc["Identifier"]):
        raise InputError("template_description.json needs an alphanumeric 'Identifier'", path=path)
    label = doc["Identifier"]
    if not any(Path(folder).glob(f"tpl-{label}_hemi-[LR]_den-ico*_*.shape.gii")):
        others = sorted({q.name.split("_hemi-")[0] for q in Path(folder).glob("tpl-*_hemi-[LR]_den-ico*_*.shape.gii")})
        found = (f"its maps are named {', '.join(others)}_...: the Identifier and the maps' names must agree" if others
                 else "it holds no maps")
        raise InputError(f"template_description.json's Identifier is {label!r} but the folder holds no "
                         f"tpl-{label}_hemi-<L|R>_den-ico{TEMPLATE_LEVEL}_<map>.shape.gii ({found})", path=path)
    return doc


def find_custom_template(name: str | Path, search: Sequence[str | Path] = ()) -> Path | None:
    """The folder of a custom template: ``name`` itself when it is a folder holding
    ``template_description.json``, else ``<dir>/tpl-<name>`` for each ``dir`` in ``search``."""
    p = Path(name)
    if (p / DESCRIPTION).is_file():
        return p
    label = str(name)[4:] if str(name).startswith("tpl-") else str(name)
    if _LABEL.match(label):
        for d in search:
            q = custom_template_folder(d, label)
            if (q / DESCRIPTION).is_file():
                return q
    return None


def custom_provenance(folder: str | Path, label: str, hemi: str, features: Sequence[str]) -> dict[str, Any]:
    """What the outputs record about a custom template's maps of ``hemi`` for ``features``: kind
    ``custom``, its folder, 40962 vertices, the maps' SHA-256 and paths (the metrics'
    ``template_source``, ... fields)."""
    files = [custom_feature_file(folder, label, hemi, f) for f in features]
    return {"template_source": "custom", "template_source_path": str(folder), "template_vertices": 40962,
            "template_sha256": files_sha256(tuple(str(p) for p in files if p.is_file())),
            "template_files": [str(p) for p in files]}


def load_custom_template(folder: str | Path, hemi: str, features: Sequence[str] = ("sulc",)) -> Template:
    """Load a custom template folder as a :class:`Template` (name = its ``Identifier``), with its
    ``provenance`` (:func:`custom_provenance`), so that a registration to it records where its maps came from.

    ``from_fsaverage`` is the base template's rotation (identity for fsaverage). Raises
    InputError (one line, naming the file) when a map is missing or not on the ico-6 grid.
    """
    from ..sphere.icosphere import icosphere
    from .surfaces import read_feature

    if hemi not in ("L", "R"):
        raise ValueError(f"hemisphere must be 'L' or 'R', got {hemi!r}")
    folder = Path(folder)
    info = custom_template_info(folder)
    label = str(info["Identifier"])
    vertices, faces = icosphere(TEMPLATE_LEVEL)
    built = info.get("Hemispheres") if isinstance(info.get("Hemispheres"), dict) else None
    maps: dict[str, np.ndarray] = {}
    for feat in features:
        path = custom_feature_file(folder, label, hemi, feat)
        if path.is_file() and built is not None and hemi not in built:
            # group --build-template unlists a hemisphere while it replaces its maps (engine.population.write_template)
            raise InputError(f"custom template {label} has maps for hemi {hemi}, but its {DESCRIPTION} does not list "
                             f"hemi-{hemi}: its build did not finish (stopped, or the disk was full); build it again "
                             f"(group --build-template N --hemi {hemi} --template-label {label})", path=path)
        if not path.is_file():
            have = sorted({p.name.rsplit("_", 1)[-1][: -len(".shape.gii")]
                           for p in folder.glob(f"tpl-{label}_hemi-{hemi}_den-ico*_*.shape.gii")})
            other = sorted(h for h in built or {} if h != hemi)
            hint = (f"; it was built for hemi-{'/'.join(other)} only: register --hemi {' '.join(other)}, or build "
                    f"hemi-{hemi} too (group --build-template N --hemi {hemi} --template-label {label})"
                    if other and hemi not in (built or {}) else "")
            raise InputError(f"custom template {label} has no {feat} map for hemi {hemi} "
                             f"(it has: {', '.join(have) or 'none'}){hint}", path=path)
        values = np.asarray(read_feature(path, n_vertices=len(vertices)), dtype=np.float64).reshape(-1)
        # all zero, constant or almost all medial wall (a map cast to integers, emptied): named here, not as
        # the registration's "fixed features: fewer than 5% of vertices are valid" naming no file
        maps[feat] = validate_feature(values, path, what=f"template map '{feat}'")
    base = str(info.get("BaseTemplate", ""))
    entry = info.get("Hemispheres", {}).get(hemi) if isinstance(info.get("Hemispheres"), dict) else None
    built_on = entry.get("BaseTemplate") if isinstance(entry, dict) else None
    if built_on and str(built_on) != base:  # one hemisphere rebuilt on another base: its maps lie elsewhere
        raise InputError(f"hemi-{hemi} of template {label} was built on {built_on}, but the folder's BaseTemplate "
                         f"is {base} (a hemisphere rebuilt on another base template?): rebuild hemi-{hemi} on "
                         f"{base}, or build the template into a folder of its own", path=folder / DESCRIPTION)
    rotation = np.eye(3)
    if is_bundled_template(base):
        rotation = load_template(base, hemi, ()).from_fsaverage
    return Template(name=label, hemi=hemi, vertices=np.asarray(vertices), faces=np.asarray(faces), features=maps,
                    from_fsaverage=rotation, provenance=custom_provenance(folder, label, hemi, features))

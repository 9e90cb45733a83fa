"""Synthetic subjects written in the layouts the BIDS-App reads (FreeSurfer, sMRIPrep, HCP).

Used by ``scripts/build_example_dataset.py`` (the README's example dataset), the tests and
``benchmarks/bids_app.py``. A subject's hemisphere is a template hemisphere (sphere and maps)
whose sphere is moved by a smooth random diffeomorphic warp
(:func:`geomorph_bids.engine.synth.random_warp`) and a rotation, with white noise added to
each map: registering it back to the template must undo the motion. Deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import nibabel as nib
import numpy as np

from ..io.gifti import write_metric, write_surface
from ..sphere.icosphere import icosphere, n_vertices
from ..sphere.rotation import rotation_matrix
from .synth import SynthConfig, random_scalar_field, random_warp

__all__ = ["SyntheticHemisphere", "WARP", "template_hemisphere", "synthetic_hemisphere", "write_freesurfer",
           "write_smriprep", "write_smriprep_anat", "write_hcp", "STAMP"]

#: moderate smooth warps (8 degrees at most, localised bumps), no random rotation
WARP = SynthConfig(max_displacement_deg=(8.0, 8.0), field="bumps", bump_width_deg=(15.0, 30.0),
                   n_components=16, rotation_max_deg=0.0)
#: FreeSurfer file stamp (fixed: byte-identical rebuilds)
STAMP = "created by geomorph-bids (synthetic example subject)"
_FS_HEMI = {"L": "lh", "R": "rh"}


@dataclass(frozen=True)
class SyntheticHemisphere:
    """A synthetic native hemisphere: sphere (V, 3) radius 100, faces (F, 3), maps name -> (V,)
    in FreeSurfer's sign, and ``rotation`` (3, 3) applied after the warp."""

    hemi: str
    vertices: np.ndarray
    faces: np.ndarray
    maps: dict[str, np.ndarray]
    rotation: np.ndarray


def template_hemisphere(hemi: str, level: int = 5) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """fsaverage hemisphere at icosphere ``level`` (<= 6) from the bundled fsaverage template
    (sulc, curv; the ico-6 grid is nested, so the first ``n_vertices(level)`` values are exact)
    plus a smooth positive ``thickness`` map (mm). Returns (vertices, faces, maps): (V, 3) float64, mm
    on the radius-100 icosphere; (F, 3) int64; name -> (V,) float64 (V = ``n_vertices(level)``)."""
    from ..io.templates import load_template

    tpl = load_template("fsaverage", hemi, ("sulc", "curv"))
    v, f = icosphere(level)
    n = n_vertices(level)
    rng = np.random.default_rng([level, 0 if hemi == "L" else 1, 7])
    maps = {k: np.asarray(tpl.features[k][:n], dtype=np.float64) for k in ("sulc", "curv")}
    maps["thickness"] = 2.5 + 0.4 * random_scalar_field(v, rng)
    return np.asarray(v, dtype=np.float64), np.asarray(f, dtype=np.int64), maps


def synthetic_hemisphere(hemi: str, vertices: np.ndarray, faces: np.ndarray, maps: Mapping[str, np.ndarray],
                         seed: int | list[int], rotation: tuple[tuple[float, float, float], float] | None = None,
                         noise: float = 0.1, config: SynthConfig = WARP) -> SyntheticHemisphere:
    """Warp + rotate a template hemisphere and add ``noise`` (fraction of each map's SD) of
    white noise. ``rotation``: (axis, degrees); default a rotation of 10-25 degrees drawn from the seed."""
    rng = np.random.default_rng(seed)
    v = np.asarray(vertices, dtype=np.float64)
    v = v * (100.0 / np.linalg.norm(v, axis=1, keepdims=True))
    warped = random_warp(v, rng, config, inverse=False).forward
    if rotation is None:
        axis = rng.standard_normal(3)
        rot = rotation_matrix(axis / np.linalg.norm(axis), float(rng.uniform(10.0, 25.0)))
    else:
        rot = rotation_matrix(np.asarray(rotation[0], dtype=np.float64), float(rotation[1]))
    moved = warped @ rot.T
    moved *= 100.0 / np.linalg.norm(moved, axis=1, keepdims=True)
    noisy = {k: np.asarray(m, dtype=np.float64) + rng.normal(0.0, noise * float(np.std(m)), size=len(m))
             for k, m in maps.items()}
    return SyntheticHemisphere(hemi, moved, np.asarray(faces, dtype=np.int64), noisy, rot)


def write_freesurfer(subjects_dir: str | Path, name: str, h: SyntheticHemisphere, *,
                     sphere_reg: bool = False) -> Path:
    """``<subjects_dir>/<name>/surf/{lh,rh}.sphere`` (+ ``.sulc``, ``.curv``, ``.thickness``;
    ``.sphere.reg`` = the sphere with its rotation undone, when asked). Returns the surf folder."""
    surf = Path(subjects_dir) / name / "surf"
    surf.mkdir(parents=True, exist_ok=True)
    fh = _FS_HEMI[h.hemi]
    nib.freesurfer.write_geometry(str(surf / f"{fh}.sphere"), h.vertices.astype(np.float32),
                                  h.faces.astype(np.int32), create_stamp=STAMP)
    if sphere_reg:
        nib.freesurfer.write_geometry(str(surf / f"{fh}.sphere.reg"), (h.vertices @ h.rotation).astype(np.float32),
                                      h.faces.astype(np.int32), create_stamp=STAMP)
    for k, m in h.maps.items():
        nib.freesurfer.write_morph_data(str(surf / f"{fh}.{k}"), m.astype(np.float32))
    return surf


def write_smriprep(root: str | Path, subject: str, h: SyntheticHemisphere, session: str | None = None) -> Path:
    """``<root>/sub-X[/ses-Y]/anat/sub-X[_ses-Y]_hemi-H_sphere.surf.gii`` and ``_<feature>.shape.gii``
    (sMRIPrep/fMRIPrep names). Returns the anat folder."""
    anat = Path(root) / f"sub-{subject}" / (f"ses-{session}" if session else "") / "anat"
    anat.mkdir(parents=True, exist_ok=True)
    stem = f"sub-{subject}" + (f"_ses-{session}" if session else "") + f"_hemi-{h.hemi}"
    write_surface(anat / f"{stem}_sphere.surf.gii", h.vertices, h.faces, hemi=h.hemi)
    for k, m in h.maps.items():
        write_metric(anat / f"{stem}_{k}.shape.gii", m.astype(np.float32), hemi=h.hemi, names=[k])
    return anat


def write_smriprep_anat(root: str | Path, subject: str, h: SyntheticHemisphere, *, session: str | None = None,
                        surfaces: Mapping[str, np.ndarray], cortex: np.ndarray, sphere_reg_fslr: np.ndarray
                        ) -> Path:
    """A hemisphere's surface outputs exactly as sMRIPrep 0.19 names and writes them
    (``smriprep/data/io_spec.json`` and ``workflows/outputs.py``), in
    ``<root>/sub-X[/ses-Y]/anat/sub-X[_ses-Y]_hemi-H_``:

    ``<name>.surf.gii`` for each of ``surfaces`` (name -> (V, 3) mm on the sphere's mesh: ``white``,
    ``pial``, ``midthickness``; the midthickness at least),
    ``sphere.surf.gii``, ``space-fsaverage_desc-reg_sphere.surf.gii`` (FreeSurfer's ``sphere.reg``;
    here the sphere with its rotation undone), ``space-fsLR_desc-reg_sphere.surf.gii``
    (``sphere_reg_fslr``: that sphere carried into fsLR), ``{sulc,curv,thickness}.shape.gii``
    (thickness 0 outside the cortex, as FreeSurfer's), and ``desc-cortex_mask.label.gii`` (0/1
    values, as sMRIPrep's ``init_cortex_masks_wf`` writes them, ``cortex`` (V,) bool) with its
    JSON (``Type``, ``Sources``). Returns the anat folder.
    """
    import json

    anat = Path(root) / f"sub-{subject}" / (f"ses-{session}" if session else "") / "anat"
    anat.mkdir(parents=True, exist_ok=True)
    stem = f"sub-{subject}" + (f"_ses-{session}" if session else "") + f"_hemi-{h.hemi}"
    secondary = {"white": "GrayWhite", "pial": "Pial", "midthickness": "MidThickness"}
    for name, vertices in surfaces.items():
        write_surface(anat / f"{stem}_{name}.surf.gii", vertices, h.faces, hemi=h.hemi,
                      geometric_type="Anatomical", secondary=secondary[name])
    write_surface(anat / f"{stem}_sphere.surf.gii", h.vertices, h.faces, hemi=h.hemi)
    write_surface(anat / f"{stem}_space-fsaverage_desc-reg_sphere.surf.gii", h.vertices @ h.rotation, h.faces,
                  hemi=h.hemi)
    write_surface(anat / f"{stem}_space-fsLR_desc-reg_sphere.surf.gii", sphere_reg_fslr, h.faces, hemi=h.hemi)
    cortex = np.asarray(cortex, dtype=bool)
    for k in ("sulc", "curv", "thickness"):
        values = np.where(cortex, h.maps[k], 0.0) if k == "thickness" else h.maps[k]
        write_metric(anat / f"{stem}_{k}.shape.gii", values.astype(np.float32), hemi=h.hemi, names=[k])
    write_metric(anat / f"{stem}_desc-cortex_mask.label.gii", cortex.astype(np.float32), hemi=h.hemi,
                 intent="NIFTI_INTENT_NONE")
    rel = anat.relative_to(Path(root))
    (anat / f"{stem}_desc-cortex_mask.json").write_text(json.dumps(
        {"Type": "ROI", "Sources": [f"{rel}/{stem}_midthickness.surf.gii", f"{rel}/{stem}_thickness.shape.gii"]},
        indent=2) + "\n")
    return anat


def write_hcp(root: str | Path, name: str, h: SyntheticHemisphere) -> Path:
    """HCP-pipelines layout ``<root>/<name>/MNINonLinear/Native/<name>.H.sphere.native.surf.gii``
    with ``.sulc``/``.curvature``/``.thickness.native.shape.gii``; sulc and curv NEGATED
    (HCP's sign). Returns the Native folder."""
    native = Path(root) / name / "MNINonLinear" / "Native"
    native.mkdir(parents=True, exist_ok=True)
    write_surface(native / f"{name}.{h.hemi}.sphere.native.surf.gii", h.vertices, h.faces, hemi=h.hemi)
    names = {"sulc": ("sulc", -1.0), "curv": ("curvature", -1.0), "thickness": ("thickness", 1.0)}
    for k, m in h.maps.items():
        stem, sign = names[k]
        write_metric(native / f"{name}.{h.hemi}.{stem}.native.shape.gii", (sign * m).astype(np.float32),
                     hemi=h.hemi, names=[k])
    return native

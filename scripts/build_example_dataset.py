"""Build the tiny example BIDS datasets ``examples/ds-geomorph-example`` and
``examples/ds-smriprep-example`` (deterministic).

    .venv/bin/python scripts/build_example_dataset.py [--out examples/ds-geomorph-example]
        [--smriprep-out examples/ds-smriprep-example]

Two synthetic subjects made from nilearn's fsaverage5 (BSD-3; 10242 vertices per hemisphere;
nilearn is a test extra): each hemisphere's sphere is moved by a smooth random diffeomorphic
warp (up to 8 degrees, :mod:`geomorph_bids.engine.example_data`) and a fixed rotation, and its
sulc/curv/thickness get 10 % white noise. sub-01 is written in FreeSurfer layout
(``derivatives/freesurfer/sub-01/surf/{lh,rh}.{sphere,sulc,curv,thickness}``), sub-02 in
sMRIPrep layout (``derivatives/smriprep/sub-02/anat/sub-02_hemi-{L,R}_*.gii``). Each subject also
gets an inflated surface (``lh.inflated`` / ``_hemi-L_inflated.surf.gii``, for the report's maps
on the subject's surface): fsaverage5's inflated mesh (same vertices as the sphere) with a smooth
random radial deformation of up to ~6 %. The raw level holds only metadata (no images: the
BIDS-App reads surfaces). Byte-identical on every run.

``ds-smriprep-example``: one subject with two sessions, its anatomical surface outputs exactly
as sMRIPrep 0.19 names and writes them when it processes each session on its own
(``--subject-anatomical-reference sessionwise``; :func:`geomorph_bids.engine.example_data.write_smriprep_anat`):
``derivatives/smriprep/sub-01/ses-{1,2}/anat/sub-01_ses-X_hemi-{L,R}_`` midthickness (the mean of
fsaverage5's white and pial surfaces with a smooth random radial deformation of ~2 %; sMRIPrep's
white and pial surfaces are left out to keep the example small: geomorph-bids does not read them), sphere (a synthetic sphere as above), ``space-fsaverage_desc-reg`` sphere (FreeSurfer's
``sphere.reg``: here the sphere with its rotation undone, i.e. a rigid registration to fsaverage),
``space-fsLR_desc-reg`` sphere (that one carried into fsLR through sMRIPrep's fsaverage -> fsLR atlas
deformation, as sMRIPrep's ``init_fsLR_reg_wf`` does), sulc, curv, thickness (0 on the medial wall)
and ``desc-cortex_mask.label.gii`` (+ JSON): the HCP fsLR 32k atlas ROI carried back onto fsaverage5
through the same deformation. No volumes (the BIDS-App reads surfaces).
"""

from __future__ import annotations

import argparse
import gzip
import json
from importlib.resources import files
from pathlib import Path

import nibabel as nib
import numpy as np

from geomorph_bids.engine.synth import random_scalar_field
from geomorph_bids.engine.example_data import (STAMP, synthetic_hemisphere, write_freesurfer, write_smriprep,
                                              write_smriprep_anat)
from geomorph_bids.io.gifti import write_surface

HEMIS = {"L": "left", "R": "right"}
FEATURES = {"sulc": "sulc", "curv": "curv", "thickness": "thick"}  # our name -> nilearn's
ROTATION = {"01": ((0.3, -0.5, 0.8), 21.0), "02": ((-0.6, 0.2, 0.7), 17.0)}  # axis, degrees


def _gifti(path: Path) -> nib.GiftiImage:
    return nib.GiftiImage.from_bytes(gzip.decompress(path.read_bytes()))


def fsaverage5(hemi: str) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """nilearn's fsaverage5 sphere, faces and maps for one hemisphere."""
    fs5 = Path(str(files("nilearn") / "datasets" / "data" / "fsaverage5"))
    img = _gifti(fs5 / f"sphere_{HEMIS[hemi]}.gii.gz")
    maps = {k: _gifti(fs5 / f"{stem}_{HEMIS[hemi]}.gii.gz").agg_data().astype(np.float64)
            for k, stem in FEATURES.items()}
    return (img.agg_data("NIFTI_INTENT_POINTSET").astype(np.float64),
            img.agg_data("NIFTI_INTENT_TRIANGLE").astype(np.int64), maps)


def inflated(hemi: str, sphere: np.ndarray, faces: np.ndarray, seed: list[int]) -> np.ndarray:
    """A subject's synthetic inflated surface (V, 3) mm: fsaverage5's inflated mesh scaled
    about its centre by 1 + 0.02 x (a smooth random field over the fsaverage5 sphere, SD 1)."""
    img = _gifti(Path(str(files("nilearn") / "datasets" / "data" / "fsaverage5")) / f"infl_{HEMIS[hemi]}.gii.gz")
    v = img.agg_data("NIFTI_INTENT_POINTSET").astype(np.float64)
    if not np.array_equal(img.agg_data("NIFTI_INTENT_TRIANGLE"), faces):
        raise ValueError("fsaverage5's inflated and sphere meshes have different triangles")
    return _scaled(v, random_scalar_field(sphere, np.random.default_rng(seed)))


#: what the participants.tsv columns of the examples mean (participants.json; without it the BIDS
#: validator warns TSV_ADDITIONAL_COLUMNS_UNDEFINED)
PARTICIPANT_COLUMNS = {
    "input_layout": {"Description": "where the participant's surfaces are",
                     "Levels": {"freesurfer": "derivatives/freesurfer (a FreeSurfer subject)",
                                "smriprep": "derivatives/smriprep (sMRIPrep's names)"}},
    "sessions": {"Description": "number of sessions of the participant"}}


def raw_description(name: str) -> dict:
    """The examples' raw ``dataset_description.json``: GeneratedBy and SourceDatasets as the BIDS
    validator recommends (the surfaces are made by this script from nilearn's fsaverage5)."""
    return {"Name": name, "BIDSVersion": "1.9.0", "DatasetType": "raw",
            "License": "BSD-3-Clause (derived from nilearn's fsaverage5)",
            "GeneratedBy": [{"Name": "scripts/build_example_dataset.py", "Description":
                             "synthetic subjects made from nilearn's fsaverage5 (nilearn/datasets/data)"}],
            "SourceDatasets": [{"URL": "https://github.com/nilearn/nilearn"}]}


def _dataset(out: Path, name: str, participants: str, readme: str, smriprep: dict) -> Path:
    """The raw dataset's description, participants.tsv (+ .json) and README, and the description
    of its ``derivatives/smriprep`` folder (``smriprep``: that JSON); returns that folder."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "dataset_description.json").write_text(json.dumps(raw_description(name), indent=2) + "\n")
    (out / "participants.tsv").write_text(participants)
    columns = participants.splitlines()[0].split("\t")[1:]
    (out / "participants.json").write_text(json.dumps({c: PARTICIPANT_COLUMNS[c] for c in columns}, indent=2) + "\n")
    (out / "README").write_text(readme)
    folder = out / "derivatives" / "smriprep"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset_description.json").write_text(json.dumps(smriprep, indent=2) + "\n")
    return folder


def _scaled(v: np.ndarray, field: np.ndarray) -> np.ndarray:
    """(V, 3) vertices scaled about their centre by 1 + 0.02 x ``field`` (V,)."""
    centre = v.mean(axis=0)
    return centre + (v - centre) * (1.0 + 0.02 * field)[:, None]


def build(out: Path) -> None:
    smriprep = _dataset(
        out, "geomorph-bids example: two synthetic subjects made from fsaverage5",
        "participant_id\tinput_layout\nsub-01\tfreesurfer\nsub-02\tsmriprep\n",
        "Synthetic example for geomorph-bids: fsaverage5 spheres moved by smooth random warps and a\n"
        "rotation, with noisy sulc/curv/thickness. sub-01: FreeSurfer layout (derivatives/freesurfer);\n"
        "sub-02: sMRIPrep layout (derivatives/smriprep). Rebuild: scripts/build_example_dataset.py\n",
        {"Name": "sMRIPrep-layout surfaces (synthetic)", "BIDSVersion": "1.9.0",
         "DatasetType": "derivative", "GeneratedBy": [{"Name": "scripts/build_example_dataset.py"}]})
    for k, hemi in enumerate(HEMIS):
        v, f, maps = fsaverage5(hemi)
        for subject in ("01", "02"):
            axis, angle = ROTATION[subject]
            h = synthetic_hemisphere(hemi, v, f, maps, seed=[int(subject), k, 20261124],
                                     rotation=(axis, angle if hemi == "L" else -angle))
            infl = inflated(hemi, v, f, [int(subject), k, 20261125])
            if subject == "01":
                surf = write_freesurfer(out / "derivatives" / "freesurfer", "sub-01", h)
                nib.freesurfer.write_geometry(str(surf / f"{'lh' if hemi == 'L' else 'rh'}.inflated"),
                                              infl.astype(np.float32), f.astype(np.int32), create_stamp=STAMP)
            else:
                anat = write_smriprep(smriprep, "02", h)
                write_surface(anat / f"sub-02_hemi-{hemi}_inflated.surf.gii", infl, f, hemi=hemi,
                              geometric_type="Inflated")


#: sessions of the sMRIPrep example and the rotation of each (axis, degrees)
SESSIONS = {"1": ((0.5, 0.4, -0.6), 19.0), "2": ((-0.2, -0.7, 0.5), 23.0)}


def fsaverage5_cortex(hemi: str) -> np.ndarray:
    """(10242,) bool: the HCP fsLR 32k atlas ROI (sMRIPrep's) carried onto fsaverage5 through
    sMRIPrep's fsaverage -> fsLR deformation (fsaverage5's vertices are fsaverage's first 10242)."""
    from geomorph_bids.io import read_surface
    from geomorph_bids.io.templates import load_atlas_roi, load_density_sphere
    from geomorph_bids.resources import package_data_file
    from geomorph_bids.sphere.resample import barycentric_weights

    in_lr = read_surface(package_data_file("fsaverage_in_fsLR_sphere_164k", hemi=hemi)).vertices[:10242]
    roi, _ = load_atlas_roi(hemi, "32k")
    v32, f32, _ = load_density_sphere("fsLR", hemi, "32k", templateflow_home="")
    return (barycentric_weights((v32, f32), in_lr) @ roi.astype(np.float64)) > 0.5


def midthickness(hemi: str, faces: np.ndarray, sphere: np.ndarray, seed: list[int]) -> dict[str, np.ndarray]:
    """{"midthickness": (V, 3) mm}: the mean of fsaverage5's white and pial surfaces, each scaled
    about its centre by 1 + 0.02 x (one smooth random field)."""
    fs5 = Path(str(files("nilearn") / "datasets" / "data" / "fsaverage5"))
    field = random_scalar_field(sphere, np.random.default_rng(seed))
    out = {}
    for name in ("white", "pial"):
        img = _gifti(fs5 / f"{name}_{HEMIS[hemi]}.gii.gz")
        if not np.array_equal(img.agg_data("NIFTI_INTENT_TRIANGLE"), faces):
            raise ValueError(f"fsaverage5's {name} and sphere meshes have different triangles")
        out[name] = _scaled(img.agg_data("NIFTI_INTENT_POINTSET").astype(np.float64), field)
    return {"midthickness": 0.5 * (out["white"] + out["pial"])}


def build_smriprep(out: Path) -> None:
    """``ds-smriprep-example``: sub-01, sessions 1 and 2, sMRIPrep 0.19 sessionwise outputs."""
    from geomorph_bids.io.fmriprep_compat import sphere_reg_fslr

    smriprep = _dataset(
        out, "geomorph-bids example: one synthetic subject with two sessions, as sMRIPrep 0.19 writes it",
        "participant_id\tsessions\nsub-01\t2\n",
        "Synthetic example for geomorph-bids with fMRIPrep/sMRIPrep: one subject, two sessions, whose\n"
        "surface outputs are named and laid out exactly as sMRIPrep 0.19 writes them per session\n"
        "(--subject-anatomical-reference sessionwise): derivatives/smriprep/sub-01/ses-{1,2}/anat.\n"
        "The desc-reg spheres are rigid stand-ins for FreeSurfer's sphere.reg. No volumes.\n"
        "Rebuild: scripts/build_example_dataset.py\n",
        {"Name": "sMRIPrep - Structural MRI PREProcessing workflow (synthetic stand-in)", "BIDSVersion": "1.9.0",
         "DatasetType": "derivative",
         "GeneratedBy": [{"Name": "scripts/build_example_dataset.py",
                          "Description": "synthetic surfaces named and laid out as sMRIPrep 0.19.5 writes them"}]})
    for k, hemi in enumerate(HEMIS):
        v, f, maps = fsaverage5(hemi)
        cortex = fsaverage5_cortex(hemi)
        for s, (session, (axis, angle)) in enumerate(SESSIONS.items()):
            h = synthetic_hemisphere(hemi, v, f, maps, seed=[1, s, k, 20261201],
                                     rotation=(axis, angle if hemi == "L" else -angle))
            surfaces = midthickness(hemi, f, v, [1, s, k, 20261202])
            reg_fslr, _ = sphere_reg_fslr(h.vertices @ h.rotation, hemi)
            write_smriprep_anat(smriprep, "01", h, session=session, surfaces=surfaces, cortex=cortex,
                                sphere_reg_fslr=reg_fslr)


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1] / "examples"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=root / "ds-geomorph-example")
    parser.add_argument("--smriprep-out", type=Path, default=root / "ds-smriprep-example")
    args = parser.parse_args()
    build(args.out)
    build_smriprep(args.smriprep_out)
    print("done")

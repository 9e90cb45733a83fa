"""Build the tiny example BIDS dataset ``examples/ds-geomorph-example`` (deterministic).

    .venv/bin/python scripts/build_example_dataset.py [--out examples/ds-geomorph-example]

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
from geomorph_bids.engine.example_data import STAMP, synthetic_hemisphere, write_freesurfer, write_smriprep
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
    field = random_scalar_field(sphere, np.random.default_rng(seed))
    centre = v.mean(axis=0)
    return centre + (v - centre) * (1.0 + 0.02 * field)[:, None]


def build(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "dataset_description.json").write_text(json.dumps({
        "Name": "geomorph-bids example: two synthetic subjects made from fsaverage5",
        "BIDSVersion": "1.9.0", "DatasetType": "raw",
        "License": "BSD-3-Clause (derived from nilearn's fsaverage5)"}, indent=2) + "\n")
    (out / "participants.tsv").write_text("participant_id\tinput_layout\nsub-01\tfreesurfer\nsub-02\tsmriprep\n")
    (out / "README").write_text(
        "Synthetic example for geomorph-bids: fsaverage5 spheres moved by smooth random warps and a\n"
        "rotation, with noisy sulc/curv/thickness. sub-01: FreeSurfer layout (derivatives/freesurfer);\n"
        "sub-02: sMRIPrep layout (derivatives/smriprep). Rebuild: scripts/build_example_dataset.py\n")
    smriprep = out / "derivatives" / "smriprep"
    smriprep.mkdir(parents=True, exist_ok=True)
    (smriprep / "dataset_description.json").write_text(json.dumps({
        "Name": "sMRIPrep-layout surfaces (synthetic)", "BIDSVersion": "1.9.0",
        "DatasetType": "derivative", "GeneratedBy": [{"Name": "scripts/build_example_dataset.py"}]},
        indent=2) + "\n")
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parents[1] / "examples" / "ds-geomorph-example")
    build(parser.parse_args().out)
    print("done")

"""Rebuild the compact data bundled in ``geomorph_bids/data`` from installed packages.

    .venv/bin/python scripts/build_bundled_data.py

Sources (licences allow bundling derived, compact copies; see NOTICE):
- fsLR sulc template: sMRIPrep's ``{L,R}.refsulc.164k_fs_LR.shape.gii`` on
  ``fsaverage.{L,R}_LR.spherical_std.164k_fs_LR.surf.gii`` (Apache-2.0), resampled
  to our ico-6 grid with adaptive barycentric area weighting.
- fsaverage sulc/curv template and the example subject: nilearn's fsaverage5
  (BSD-3), resampled to ico-6 barycentrically (upsampling).
The example subject is fsaverage5's sphere rotated by a fixed, known rotation,
with white noise (10% of its SD) added to sulc, written in FreeSurfer layout.
Deterministic: running it twice gives identical files.
"""

from __future__ import annotations

import gzip
import json
from importlib.resources import files
from pathlib import Path

import nibabel as nib
import numpy as np

from geomorph_bids.io import write_metric
from geomorph_bids.resources import data_dir, example_dir, template_feature_file, template_rotation_file
from geomorph_bids.sphere import icosphere, resample
from geomorph_bids.sphere.rotation import rotation_from_correspondence, rotation_matrix

HEMIS = {"L": "left", "R": "right"}
# smriprep's refsulc has HCP's sign (positive on gyri): fsaverage sulc carried through
# the fs_L-to-fs_LR deformation correlates r = -0.95 with it. Stored negated (FreeSurfer sign).
REFSULC_SIGN = -1.0
EXAMPLE_ROTATION = {"L": ((0.3, -0.5, 0.8), 21.0), "R": ((-0.6, 0.2, 0.7), 17.0)}  # axis, degrees


def _gifti(path: Path) -> nib.GiftiImage:
    raw = path.read_bytes()
    return nib.GiftiImage.from_bytes(gzip.decompress(raw) if path.suffix == ".gz" else raw)


def _surface(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = _gifti(path)
    return (img.agg_data("NIFTI_INTENT_POINTSET").astype(np.float64),
            img.agg_data("NIFTI_INTENT_TRIANGLE").astype(np.int64))


def build_templates() -> None:
    atlases = Path(str(files("smriprep") / "data" / "atlases"))
    fs5 = Path(str(files("nilearn") / "datasets" / "data" / "fsaverage5"))
    ico = icosphere(6)
    (data_dir() / "templates").mkdir(parents=True, exist_ok=True)
    # FreeSurfer's sphere.reg lives in fsaverage space; this rotation carries it into fsLR
    # (least squares over sMRIPrep's fsaverage sphere and the same mesh deformed into fsLR).
    from_fsaverage = {}
    for hemi in HEMIS:
        fs_sphere = _surface(atlases / f"fs_{hemi}" / f"fsaverage.{hemi}.sphere.164k_fs_{hemi}.surf.gii")[0]
        in_lr = _surface(atlases / f"fs_{hemi}" /
                         f"fs_{hemi}-to-fs_LR_fsaverage.{hemi}_LR.spherical_std.164k_fs_{hemi}.surf.gii")[0]
        from_fsaverage[hemi] = rotation_from_correspondence(fs_sphere, in_lr).round(12).tolist()
    template_rotation_file("fsLR").write_text(json.dumps(from_fsaverage, indent=2) + "\n")
    for hemi, side in HEMIS.items():
        sphere = _surface(atlases / f"fsaverage.{hemi}_LR.spherical_std.164k_fs_LR.surf.gii")
        sulc = _gifti(atlases / f"{hemi}.refsulc.164k_fs_LR.shape.gii").agg_data().astype(np.float64)
        values = resample(REFSULC_SIGN * sulc, sphere, ico, method="adap_bary_area")
        write_metric(template_feature_file("fsLR", hemi, "sulc"), values.astype(np.float32), hemi=hemi,
                     names=["sulc"])
        fs_sphere = _surface(fs5 / f"sphere_{side}.gii.gz")
        for feat in ("sulc", "curv"):
            vals = _gifti(fs5 / f"{feat}_{side}.gii.gz").agg_data().astype(np.float64)
            out = resample(vals, fs_sphere, ico, method="barycentric")
            write_metric(template_feature_file("fsaverage", hemi, feat), out.astype(np.float32), hemi=hemi,
                         names=[feat])


def build_example() -> None:
    fs5 = Path(str(files("nilearn") / "datasets" / "data" / "fsaverage5"))
    surf = example_dir() / "sub-01" / "surf"
    surf.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261123)
    truth = {}
    for hemi, side in HEMIS.items():
        prefix = {"L": "lh", "R": "rh"}[hemi]
        vertices, faces = _surface(fs5 / f"sphere_{side}.gii.gz")
        axis, angle = EXAMPLE_ROTATION[hemi]
        rot = rotation_matrix(np.asarray(axis), angle)
        moved = vertices @ rot.T
        moved *= 100.0 / np.linalg.norm(moved, axis=1, keepdims=True)
        sulc = _gifti(fs5 / f"sulc_{side}.gii.gz").agg_data().astype(np.float64)
        sulc = sulc + rng.normal(0.0, 0.1 * sulc.std(), size=sulc.shape)
        nib.freesurfer.write_geometry(str(surf / f"{prefix}.sphere"), moved.astype(np.float32),
                                      faces.astype(np.int32),
                                      create_stamp="created by geomorph-bids scripts/build_bundled_data.py")
        nib.freesurfer.write_morph_data(str(surf / f"{prefix}.sulc"), sulc.astype(np.float32))
        # the rotation that undoes the example's: template space = subject @ rot (inverse)
        truth[hemi] = {"rotation_applied": rot.round(10).tolist(), "angle_deg": angle}
    (example_dir() / "sub-01" / "ground_truth.json").write_text(json.dumps(truth, indent=2) + "\n")


if __name__ == "__main__":
    import argparse

    # no options; parsing makes --help print this and exit instead of rewriting the bundled data
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                            epilog="Rewrites geomorph_bids/data/templates and geomorph_bids/data/example "
                                   "in place.").parse_args()
    build_templates()
    build_example()
    print(f"wrote {data_dir()}")

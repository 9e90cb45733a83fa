"""Shared real-data fixtures of the sphere tests: smriprep's fsLR / fsaverage atlases and
nilearn's fsaverage5 (see tests/conftest.py). Reference rotation fsaverage -> fsLR = Kabsch
between the fsaverage sphere and the same mesh deformed into fsLR space."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from geomorph_bids.sphere.rotation import rotation_from_correspondence

HEMIS = {"L": "left", "R": "right"}


def _metric(path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).agg_data(), dtype=np.float64)


@pytest.fixture(scope="module")
def hemi_data(atlases, fsaverage5, load_surface):
    """Per hemisphere: fsLR sphere + refsulc, fsaverage5 sphere + sulc (HCP sign), reference R."""
    out = {}
    for H, h in HEMIS.items():
        fs = load_surface(atlases / f"fs_{H}" / f"fsaverage.{H}.sphere.164k_fs_{H}.surf.gii")
        fs_in_lr = load_surface(atlases / f"fs_{H}" / f"fs_{H}-to-fs_LR_fsaverage.{H}_LR.spherical_std.164k_fs_{H}.surf.gii")
        lr = load_surface(atlases / f"fsaverage.{H}_LR.spherical_std.164k_fs_LR.surf.gii")
        out[H] = dict(
            fs=fs, fs_in_lr=fs_in_lr, lr=lr,
            refsulc=_metric(atlases / f"{H}.refsulc.164k_fs_LR.shape.gii"),
            fs5=load_surface(fsaverage5 / f"sphere_{h}.gii.gz"),
            sulc5_fs=_metric(fsaverage5 / f"sulc_{h}.gii.gz"),  # FreeSurfer sign
            R_ref=rotation_from_correspondence(fs[0], fs_in_lr[0]),
        )
    return out

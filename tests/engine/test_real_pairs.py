"""Real pairs with reference registrations (engine.real_pairs), from installed packages."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from geomorph_bids.engine.real_pairs import REAL_PAIRS, angular_error_deg, lr_to_fsaverage, real_pair
from geomorph_bids.engine.register import register
from geomorph_bids.sphere.icosphere import icosphere


@pytest.mark.parametrize("name", ["fsavg5_Rm-fsaverage", "fsavg5_Rm-fsLR", "fsavg5_Lm-fsaverage"])
def test_rigid_registration_lands_near_the_reference(name):
    pair = real_pair(name)
    assert pair.template == REAL_PAIRS[name][0] and len(pair.vertices) == 10242
    assert pair.hemi == ("R" if name == "fsavg5_Lm-fsaverage" else "L")
    assert np.allclose(np.linalg.norm(pair.reference, axis=1), 1.0)
    assert np.allclose(np.linalg.norm(pair.vertices, axis=1), 100.0)
    rigid = register((pair.vertices, pair.faces), {"sulc": pair.features["sulc"]}, pair.template, pair.hemi,
                     rigid_only=True)
    err = pair.error_deg(rigid.sphere)
    before = pair.error_deg(pair.vertices)
    # a hemisphere mirrored into a left one needs a large rotation (17-26 deg); after it, the
    # remaining disagreement with the reference is the non-rigid part (1-2 deg median)
    assert np.median(before) > 10 and 0.5 < np.median(err) < 2.5


def test_mirrored_fslr_reference_is_the_identity():
    pair = real_pair("refsulc_Rm-fsLR")
    assert len(pair.vertices) == 163842
    assert np.median(pair.error_deg(pair.vertices)) < 1e-6


@pytest.mark.parametrize("hemi", ["L", "R"])
def test_fsaverage_round_trip_through_fslr(hemi):
    # fsaverage vertices carried into fsLR (sMRIPrep's sphere) and back land where they started
    from geomorph_bids.engine.real_pairs import _fs_spheres

    (fs_v, _), in_lr = _fs_spheres(hemi)
    back = lr_to_fsaverage(in_lr[:2000] * 100.0, hemi)
    assert np.max(angular_error_deg(back, fs_v[:2000])) < 1e-6


def test_full_fsaverage_pair_needs_a_subjects_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("SUBJECTS_DIR", raising=False)
    monkeypatch.delenv("FREESURFER_HOME", raising=False)
    with pytest.raises(ValueError, match="SUBJECTS_DIR"):
        real_pair("fsaverage_L-fsLR")
    surf = tmp_path / "fsaverage" / "surf"
    surf.mkdir(parents=True)
    v, f = icosphere(3)
    nib.freesurfer.write_geometry(str(surf / "lh.sphere"), v.astype(np.float32), f.astype(np.int32))
    nib.freesurfer.write_morph_data(str(surf / "lh.sulc"), np.zeros(len(v), np.float32))
    with pytest.raises(ValueError, match="642 vertices"):
        real_pair("fsaverage_L-fsLR", subjects_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown real pair"):
        real_pair("nope")

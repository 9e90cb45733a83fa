"""Tests for geomorph_bids.sphere.rotation: utilities, Kabsch, and feature-based rigid alignment.

Real-data checks use smriprep's fsLR / fsaverage atlases and nilearn's fsaverage5 (see
tests/conftest.py). Reference rotation fsaverage -> fsLR = Kabsch between the fsaverage
sphere and the same mesh deformed into fsLR space.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from geomorph_bids.errors import InputError
from geomorph_bids.sphere.icosphere import icosphere
from geomorph_bids.sphere.locate import SphereLocator, unit
from geomorph_bids.sphere.rotation import (
    angle_between,
    apply_rotation,
    random_rotation,
    rigid_align,
    rotation_angle,
    rotation_from_correspondence,
    rotation_matrix,
)

HEMIS = {"L": "left", "R": "right"}


def _metric(path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).agg_data(), dtype=np.float64)


def _sample(vertices, faces, values, points) -> np.ndarray:
    face, w = SphereLocator(vertices, faces).locate(points)
    return np.einsum("nc,nc->n", w, values[faces[face]])


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


# ---------------------------------------------------------------------------- utilities


def test_rotation_matrix_quarter_turn_about_z():
    R = rotation_matrix([0, 0, 2.0], 90.0)
    np.testing.assert_allclose(R @ [1.0, 0, 0], [0, 1.0, 0], atol=1e-15)
    np.testing.assert_allclose(apply_rotation([[0, 1.0, 0]], R), [[-1.0, 0, 0]], atol=1e-15)
    assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-14)


@pytest.mark.parametrize("angle", [0.0, 1e-6, 0.3, 42.5, 120.0, 179.9, 180.0])
def test_rotation_angle_roundtrip(angle):
    R = rotation_matrix([0.3, -1.0, 2.0], angle)
    assert rotation_angle(R) == pytest.approx(angle, abs=1e-9)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-14)


def test_angle_between_is_symmetric_and_additive_on_one_axis():
    a, b = rotation_matrix([1, 2, 3], 10.0), rotation_matrix([1, 2, 3], 35.0)
    assert angle_between(a, b) == pytest.approx(25.0, abs=1e-10)
    assert angle_between(b, a) == pytest.approx(25.0, abs=1e-10)
    assert angle_between(a, a) == pytest.approx(0.0, abs=1e-6)


def test_random_rotation_proper_deterministic_and_bounded():
    Rs = np.stack([random_rotation(np.random.default_rng(s)) for s in range(200)])
    np.testing.assert_allclose(np.einsum("nij,nkj->nik", Rs, Rs), np.broadcast_to(np.eye(3), Rs.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(Rs), 1.0, atol=1e-12)
    np.testing.assert_array_equal(random_rotation(7), random_rotation(7))
    angles = np.array([rotation_angle(R) for R in Rs])
    # Haar measure: P(angle < 90 deg) = (pi/2 - 1)/pi ~ 0.18; mean angle = pi/2 + 2/pi rad ~ 126.5 deg
    assert 0.10 < np.mean(angles < 90) < 0.27
    assert 115 < angles.mean() < 138
    small = [rotation_angle(random_rotation(s, max_angle_deg=5.0)) for s in range(50)]
    assert max(small) <= 5.0 + 1e-9 and min(small) >= 0.0


# ---------------------------------------------------------------------------- Kabsch


def test_correspondence_recovers_rotation_with_different_radii():
    rng = np.random.default_rng(0)
    p = unit(rng.standard_normal((500, 3))) * 100.0
    Q = random_rotation(rng)
    R = rotation_from_correspondence(p, 37.0 * p @ Q.T)
    assert angle_between(R, Q) < 1e-10
    assert np.linalg.det(R) == pytest.approx(1.0)


def test_correspondence_weights_ignore_outliers():
    rng = np.random.default_rng(1)
    p = unit(rng.standard_normal((400, 3)))
    Q = random_rotation(rng)
    t = p @ Q.T
    t[:40] = unit(rng.standard_normal((40, 3)))  # corrupted correspondences
    w = np.ones(400)
    w[:40] = 0.0
    assert angle_between(rotation_from_correspondence(p, t, w), Q) < 1e-10
    assert angle_between(rotation_from_correspondence(p, t), Q) > 0.5


def test_correspondence_never_returns_a_reflection():
    rng = np.random.default_rng(2)
    p = unit(rng.standard_normal((300, 3)))
    mirrored = p * [-1.0, 1.0, 1.0]
    R = rotation_from_correspondence(p, mirrored)
    assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-12)


def test_correspondence_rejects_bad_shapes():
    with pytest.raises(InputError):
        rotation_from_correspondence(np.zeros((5, 3)), np.zeros((6, 3)))
    with pytest.raises(InputError):
        rotation_from_correspondence(np.ones((5, 3)), np.ones((5, 3)), weights=-np.ones(5))


# ---------------------------------------------------------------------------- real data facts


@pytest.mark.parametrize("H, angle", [("L", 42.49), ("R", 26.40)])
def test_reference_rotation_fsaverage_to_fslr(hemi_data, H, angle):
    d = hemi_data[H]
    R = d["R_ref"]
    assert rotation_angle(R) == pytest.approx(angle, abs=0.05)
    moved = unit(apply_rotation(d["fs"][0], R))
    resid = np.degrees(np.arccos(np.clip(np.sum(moved * unit(d["fs_in_lr"][0]), 1), -1, 1)))
    # the non-linear part left after the rotation: median ~1 deg, max ~6 deg
    assert 0.9 < np.median(resid) < 1.1
    assert 5.0 < resid.max() < 6.5


def test_fsaverage5_is_nested_in_fsaverage(hemi_data):
    for H in HEMIS:
        d = hemi_data[H]
        assert np.abs(d["fs5"][0] - d["fs"][0][:10242]).max() < 0.01  # mm, float32 storage


def test_refsulc_has_hcp_sign(hemi_data):
    """fsaverage sulc carried through the reference deformation anti-correlates with refsulc."""
    for H in HEMIS:
        d = hemi_data[H]
        carried = _sample(*d["lr"], d["refsulc"], d["fs_in_lr"][0][:10242])
        r = np.corrcoef(carried, d["sulc5_fs"])[0, 1]
        assert r < -0.9  # refsulc = -(FreeSurfer sulc): HCP convention


# ---------------------------------------------------------------------------- rigid_align


def test_rigid_align_synthetic_icosphere():
    v, f = icosphere(4)
    u = unit(v)
    rng = np.random.default_rng(3)
    centres = unit(rng.standard_normal((12, 3)))
    feat = np.exp(-(1 - u @ centres.T) / 0.05) @ rng.uniform(0.5, 2.0, 12)  # smooth bumps
    Q = random_rotation(rng)
    R = rigid_align((apply_rotation(v, Q), f), feat, (v, f), feat)
    assert angle_between(R, Q.T) < 0.2


@pytest.mark.parametrize("H", ["L", "R"])
def test_rigid_align_recovers_fsaverage_to_fslr(hemi_data, H):
    d = hemi_data[H]
    R, corr = rigid_align(d["fs5"], -d["sulc5_fs"], d["lr"], d["refsulc"], return_correlation=True)
    err = angle_between(R, d["R_ref"])
    assert err < 1.0, err
    assert corr > 0.9
    assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-12)


def _random_cases(hemi_data, n, seed, H="L"):
    d = hemi_data[H]
    rng = np.random.default_rng(seed)
    errs_self, errs_fs5 = [], []
    for _ in range(n):
        Q = random_rotation(rng)
        R = rigid_align((apply_rotation(d["lr"][0], Q), d["lr"][1]), d["refsulc"], d["lr"], d["refsulc"])
        errs_self.append(angle_between(R, Q.T))
        Q = random_rotation(rng)
        R = rigid_align((apply_rotation(d["fs5"][0], Q), d["fs5"][1]), -d["sulc5_fs"], d["lr"], d["refsulc"])
        errs_fs5.append(angle_between(R, d["R_ref"] @ Q.T))
    return np.array(errs_self), np.array(errs_fs5)


def test_rigid_align_random_rotations(hemi_data):
    errs_self, errs_fs5 = _random_cases(hemi_data, 3, seed=11)
    assert errs_self.max() < 0.1, errs_self  # same map: only interpolation error
    assert errs_fs5.max() < 1.0, errs_fs5


@pytest.mark.slow
@pytest.mark.parametrize("H", ["L", "R"])
def test_rigid_align_random_rotations_many(hemi_data, H):
    errs_self, errs_fs5 = _random_cases(hemi_data, 10, seed=2024, H=H)
    assert errs_self.max() < 0.1, errs_self
    assert errs_fs5.max() < 1.0, errs_fs5


@pytest.mark.parametrize("H, structure", [("L", "CIFTI_STRUCTURE_CORTEX_LEFT"), ("R", "CIFTI_STRUCTURE_CORTEX_RIGHT")])
def test_rigid_align_hcp_32k_with_zero_medial_wall(hemi_data, hcp_data, load_surface, H, structure):
    """HCP S1200 group sulc on fsLR 32k (medial wall = 0), randomly rotated, onto fsLR 164k refsulc."""
    img = nib.load(str(hcp_data / "S1200.sulc_MSMAll.32k_fs_LR.dscalar.nii"))
    values = np.asarray(img.get_fdata()).ravel()
    for name, sl, bm in img.header.get_axis(1).iter_structures():
        if name == structure:
            sulc = np.zeros(bm.nvertices[structure])
            sulc[bm.vertex] = values[sl]
    assert 2500 < np.sum(sulc == 0) < 3000  # the medial wall
    v, f = load_surface(hcp_data / f"S1200.{H}.sphere.32k_fs_LR.surf.gii")
    Q = random_rotation(np.random.default_rng(5))
    d = hemi_data[H]
    R, corr = rigid_align((apply_rotation(v, Q), f), sulc, d["lr"], d["refsulc"], return_correlation=True)
    assert angle_between(R, Q.T) < 0.2  # same space: only the rotation to undo
    assert corr > 0.99


def test_rigid_align_medial_wall_zeros_and_mask(hemi_data):
    d = hemi_data["L"]
    lr_u = unit(d["lr"][0])
    wall = lr_u @ [1.0, 0, 0] > np.cos(np.radians(35))  # a 35-degree cap, ~9% of the sphere
    # zeros on both sides are ignored without a mask
    fs5_wall = unit(apply_rotation(d["fs5"][0], d["R_ref"])) @ [1.0, 0, 0] > np.cos(np.radians(35))
    R = rigid_align(d["fs5"], np.where(fs5_wall, 0.0, -d["sulc5_fs"]), d["lr"], np.where(wall, 0.0, d["refsulc"]))
    assert angle_between(R, d["R_ref"]) < 1.0
    # a constant garbage value breaks it unless masked
    garbage = np.where(wall, 5.0, d["refsulc"])
    R_bad = rigid_align(d["fs5"], -d["sulc5_fs"], d["lr"], garbage)
    R_ok = rigid_align(d["fs5"], -d["sulc5_fs"], d["lr"], garbage, fixed_mask=~wall)
    assert angle_between(R_bad, d["R_ref"]) > 5.0
    assert angle_between(R_ok, d["R_ref"]) < 1.0


def test_rigid_align_wrong_sign_is_not_silently_fixed(hemi_data):
    """FreeSurfer-sign sulc against HCP-sign refsulc: no good positive correlation exists."""
    d = hemi_data["L"]
    R, corr = rigid_align(d["fs5"], d["sulc5_fs"], d["lr"], d["refsulc"], return_correlation=True)
    assert corr < 0.6
    assert angle_between(R, d["R_ref"]) > 10.0


def test_rigid_align_deterministic_and_multichannel(hemi_data):
    d = hemi_data["R"]
    mov = np.stack([-d["sulc5_fs"], d["sulc5_fs"] ** 2], 1)
    fix = np.stack([d["refsulc"], d["refsulc"] ** 2], 1)
    R1 = rigid_align(d["fs5"], mov, d["lr"], fix)
    R2 = rigid_align(d["fs5"], mov, d["lr"], fix)
    np.testing.assert_array_equal(R1, R2)
    assert angle_between(R1, d["R_ref"]) < 1.0


def test_rigid_align_rejects_bad_inputs(hemi_data):
    d = hemi_data["L"]
    with pytest.raises(InputError):
        rigid_align(d["fs5"], np.zeros((10242, 2)) + 1, d["lr"], d["refsulc"])
    with pytest.raises(InputError):
        rigid_align(d["fs5"], np.ones(100), d["lr"], d["refsulc"])
    with pytest.raises(InputError):
        rigid_align(d["fs5"], np.zeros(10242), d["lr"], d["refsulc"])  # nothing valid
    with pytest.raises(InputError):
        rigid_align(d["fs5"], d["sulc5_fs"], d["lr"], d["refsulc"], mask=np.ones(5, bool))

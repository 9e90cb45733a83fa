"""Tests for geomorph_bids.sphere.rotation: SO(3) utilities and Kabsch (real data: tests/sphere/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest

from geomorph_bids.errors import InputError
from geomorph_bids.sphere.icosphere import icosphere
from geomorph_bids.sphere.locate import SphereLocator, unit
from geomorph_bids.sphere.rotation import (angle_between, apply_rotation, random_rotation, rotation_angle,
                                           rotation_from_correspondence, rotation_matrix)


def _sample(vertices, faces, values, points) -> np.ndarray:
    face, w = SphereLocator(vertices, faces).locate(points)
    return np.einsum("nc,nc->n", w, values[faces[face]])


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
    for H in ("L", "R"):
        d = hemi_data[H]
        assert np.abs(d["fs5"][0] - d["fs"][0][:10242]).max() < 0.01  # mm, float32 storage


def test_refsulc_has_hcp_sign(hemi_data):
    """fsaverage sulc carried through the reference deformation anti-correlates with refsulc."""
    for H in ("L", "R"):
        d = hemi_data[H]
        carried = _sample(*d["lr"], d["refsulc"], d["fs_in_lr"][0][:10242])
        r = np.corrcoef(carried, d["sulc5_fs"])[0, 1]
        assert r < -0.9  # refsulc = -(FreeSurfer sulc): HCP convention


def test_correspondence_names_a_non_finite_vertex_and_reads_a_tensor_that_requires_grad():
    """Twentieth session: a NaN coordinate raised numpy's ``LinAlgError: SVD did not converge``; a
    tensor that requires grad torch's ``Can't call numpy() on Tensor that requires grad``."""
    import torch

    v, _ = icosphere(3)
    Q = random_rotation(np.random.default_rng(0))
    moved = apply_rotation(v, Q)
    bad = np.array(moved)
    bad[5] = np.nan
    with pytest.raises(InputError, match=r"^rotation_from_correspondence: target has 1 of 642 vertices with "
                                         r"non-finite coordinates \(NaN or Inf, first at vertex 5\)"):
        rotation_from_correspondence(v, bad)
    graded = torch.from_numpy(np.array(v)).requires_grad_()
    np.testing.assert_array_equal(rotation_from_correspondence(graded, moved), rotation_from_correspondence(v, moved))


def test_apply_rotation_names_a_transposed_array():
    """Twentieth session: ``apply_rotation(v.T, R)`` raised numpy's ``matmul: Input operand 1 has a
    mismatch in its core dimension 0, with gufunc signature (n?,k),(k,m?)->(n?,m?) ...``."""
    v, _ = icosphere(2)
    with pytest.raises(InputError, match=r"^apply_rotation takes \(V, 3\) vertices, got shape \(3, 162\); "
                                         r"transposed\? pass vertices.T"):
        apply_rotation(np.asarray(v).T, np.eye(3))
    np.testing.assert_array_equal(apply_rotation(v[0], np.eye(3)), v[0])  # one vertex, as before

"""engine/warp_geometry.py: the inverse of a pull-back warp, fold counting, upsampling, unfolding."""

from __future__ import annotations

import numpy as np
import pytest

from geomorph_bids.engine.synth import SynthConfig, angular_error_deg, random_warp
from geomorph_bids.engine.warp_geometry import (apply_warp, grid_vertices_near, lowpass_level, lowpass_network_warp,
                                               network_smoothing,
                                               smooth_warp, unfold_warp, upsample_warp, warp_folded_triangles)
from geomorph_bids.sphere.distortion import folded_triangles
from geomorph_bids.sphere.icosphere import icosphere
from geomorph_bids.sphere.locate import SphereLocator, unit
from geomorph_bids.sphere.resample import corner_weights
from geomorph_bids.sphere.rotation import random_rotation


def _points(n: int, seed: int = 0) -> np.ndarray:
    return unit(np.random.default_rng(seed).normal(size=(n, 3))) * 100.0


def test_identity_warp_returns_the_input():
    pts = _points(5000)
    ico6 = icosphere(6)[0]
    np.testing.assert_allclose(apply_warp(pts, ico6), pts, atol=1e-6)
    assert warp_folded_triangles(ico6) == 0


def test_rotation_warp_is_inverted_exactly():
    q = random_rotation(1, 30.0)
    ico5 = icosphere(5)[0]
    pts = _points(3000, 1)
    out = apply_warp(pts, ico5 @ q.T, 5)  # pull-back: template x -> moving point Q x
    assert angular_error_deg(out, pts @ q).max() < 1e-6  # moving p -> Q^T p
    assert warp_folded_triangles(ico5 @ q.T) == 0


def test_random_warp_is_inverted():
    """Pull-back warp = psi^-1 on the template grid; the output must be psi(moving points)."""
    config = SynthConfig(max_displacement_deg=(12.0, 12.0), rotation_max_deg=5.0)
    ico6 = icosphere(6)[0]
    w = random_warp(ico6, 3, config)                  # w.inverse[i] = psi^-1(x_i)
    pts = _points(4000, 2)
    err = angular_error_deg(apply_warp(pts, w.inverse, 6), w.apply(pts))
    assert np.median(err) < 0.05 and np.percentile(err, 99) < 0.2
    assert warp_folded_triangles(w.inverse) == 0


def test_grid_vertices_near_start_apply_warp_where_the_tree_would_end():
    """register() hands apply_warp, per moving vertex, a grid vertex whose warped position is near
    (from the warp located in the moving mesh): the same output sphere as the k-d tree's search."""
    config = SynthConfig(max_displacement_deg=(12.0, 12.0), rotation_max_deg=5.0)
    w = random_warp(icosphere(6)[0], 3, config).inverse * 100.0
    mv, mf = icosphere(5)
    mv = unit(mv + np.random.default_rng(6).normal(scale=0.3, size=mv.shape)) * 100.0  # an irregular moving mesh
    moving = SphereLocator(mv, mf)
    corners, _ = corner_weights((mv, mf), w, moving)
    near = grid_vertices_near(corners, mf, moving.fans)
    assert near.shape == (len(mv),) and near.min() >= 0
    out = apply_warp(mv, w, 6, near=near)
    assert angular_error_deg(out, apply_warp(mv, w, 6)).max() < 1e-9
    # the points shared with a worker thread (each moved alone): the same bits
    from geomorph_bids.engine.overlap import side_worker

    for given in (near, None):
        with side_worker(threaded=True) as worker:
            np.testing.assert_array_equal(apply_warp(mv, w, 6, near=given, worker=worker),
                                          apply_warp(mv, w, 6, near=given))


def test_folded_warp_is_counted():
    ico3 = icosphere(3)[0].copy()
    ico3[[100, 101]] = ico3[[101, 100]]               # swap two neighbouring vertices
    assert warp_folded_triangles(ico3) > 0
    # the cached icosphere orientation counts what folded_triangles finds, at any radius
    want = len(folded_triangles(icosphere(3), (unit(ico3) * 100.0, icosphere(3)[1])))
    assert warp_folded_triangles(ico3 * 0.01, 3) == want > 0
    with pytest.raises(ValueError, match="icosphere level 4"):
        warp_folded_triangles(ico3, 4)


def test_upsample_warp_matches_the_nested_grid():
    np.testing.assert_allclose(upsample_warp(icosphere(3)[0], 3, 6), icosphere(6)[0], atol=1e-9)
    q = random_rotation(2, 20.0)
    np.testing.assert_allclose(upsample_warp(icosphere(2)[0] @ q.T, 2, 5), icosphere(5)[0] @ q.T, atol=1e-9)
    with pytest.raises(ValueError, match="level 3 has 642"):
        upsample_warp(np.zeros((10, 3)), 3)


def test_unfold_warp_removes_folds_locally():
    x = unit(icosphere(5)[0])
    assert unfold_warp(x, 5)[1] == 0                                   # nothing folded: untouched
    c = unit(np.array([0.3, 0.2, 0.9]))
    d = np.arccos(np.clip(x @ c, -1, 1))
    towards = c - (x @ c)[:, None] * x
    towards /= np.maximum(np.linalg.norm(towards, axis=1, keepdims=True), 1e-12)
    pinched = unit(x + 0.1 * np.exp(-(d / 0.08) ** 2)[:, None] * towards)   # overshoots the centre
    assert warp_folded_triangles(pinched, 5) > 10
    fixed, iterations = unfold_warp(pinched, 5)
    assert warp_folded_triangles(fixed, 5) == 0 and 0 < iterations < 200
    far = d > 0.5
    np.testing.assert_allclose(fixed[far], pinched[far], atol=1e-12)   # away from the folds nothing moves


def test_smooth_warp_removes_noise_and_keeps_a_smooth_displacement():
    """Umbrella smoothing of the displacement: vertex-to-vertex noise shrinks (by > 3x), a smooth
    (rotation) displacement barely moves, the identity stays the identity, 0 iterations only
    normalises."""
    x = unit(icosphere(4)[0])
    assert np.abs(smooth_warp(x, 4, 15) - x).max() < 1e-12
    noisy = unit(x + 0.01 * np.random.default_rng(0).normal(size=x.shape))
    out = smooth_warp(noisy, 4, 15)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0)
    assert np.median(angular_error_deg(out, x)) < np.median(angular_error_deg(noisy, x)) / 3
    rotated = x @ random_rotation(np.random.default_rng(1), max_angle_deg=3.0).T
    moved = np.median(angular_error_deg(rotated, x))
    assert moved > 0.5 and np.median(angular_error_deg(smooth_warp(rotated, 4, 15), rotated)) < 0.05 * moved
    assert np.allclose(smooth_warp(noisy * 2.0, 4, 0), noisy)
    with pytest.raises(ValueError, match="icosphere level 5"):
        smooth_warp(x, 5, 3)


def test_lowpass_network_warp_on_the_control_grid_matches_the_data_level():
    """A warp upsampled from ico-2 control points, low-passed on ico-4 (64 steps) or on its control
    grid (4 steps, the same width): the two agree to a small fraction of the displacement; on the
    warp's own level the result is smooth_warp then upsample_warp, to the bit."""
    x2 = unit(icosphere(2)[0])
    rng = np.random.default_rng(3)
    control = unit(x2 + 0.03 * rng.normal(size=x2.shape))      # ~1.7 deg displacements, control grid
    warp = unit(upsample_warp(control, 2, 4))                 # the network's warp on its data level
    fine = lowpass_network_warp(warp, 4, 64)                  # on ico-4: the reference
    assert fine.shape == (icosphere(6)[0].shape[0], 3) and np.allclose(np.linalg.norm(fine, axis=1), 1.0)
    np.testing.assert_array_equal(fine, unit(upsample_warp(smooth_warp(warp, 4, 64), 4, 6)))
    coarse = lowpass_network_warp(warp, 4, 64, control_level=2)
    np.testing.assert_allclose(warp[:len(x2)], control, atol=1e-12)  # the control points are its first rows
    np.testing.assert_array_equal(coarse, unit(upsample_warp(smooth_warp(warp[:len(x2)], 2, 4), 2, 6)))
    x6 = unit(icosphere(6)[0])
    moved = np.median(angular_error_deg(fine, x6))
    assert moved > 0.1
    assert np.median(angular_error_deg(coarse, fine)) < 0.1 * moved
    unsmoothed = np.median(angular_error_deg(unit(upsample_warp(warp, 4, 6)), fine))
    assert np.median(angular_error_deg(coarse, fine)) < 0.2 * unsmoothed
    # 0 steps: the warp upsampled; a few steps still run at least one step on the control grid
    np.testing.assert_allclose(lowpass_network_warp(warp, 4, 0, control_level=2),
                               unit(upsample_warp(warp[:len(x2)], 2, 6)), atol=1e-12)
    np.testing.assert_array_equal(lowpass_network_warp(warp, 4, 3, control_level=2),
                                  unit(upsample_warp(smooth_warp(warp[:len(x2)], 2, 1), 2, 6)))
    with pytest.raises(ValueError, match="control level 5"):
        lowpass_network_warp(warp, 4, 10, control_level=5)
    with pytest.raises(ValueError, match="level 4 has 2562"):
        lowpass_network_warp(control, 4, 10)


def test_lowpass_level_is_a_one_stage_networks_control_grid():
    from geomorph_bids.model.geomorph import tiny_config

    assert lowpass_level(tiny_config(data_level=4, control_level=2)) == 2
    assert lowpass_level(tiny_config(data_level=4, control_level=(2, 3))) == 4   # a cascade: its data level


def test_network_smoothing_has_the_same_width_at_every_level():
    assert network_smoothing(5) == 25 and network_smoothing(6) == 100 and network_smoothing(4) == 6

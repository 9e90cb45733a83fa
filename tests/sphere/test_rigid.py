"""Tests for geomorph_bids.sphere.rigid: feature-based rigid alignment (real data: tests/sphere/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest

from geomorph_bids.errors import InputError
from geomorph_bids.io.cifti import read_cifti_cortex
from geomorph_bids.sphere.icosphere import icosphere, n_vertices
from geomorph_bids.sphere.locate import unit
from geomorph_bids.sphere.rigid import rigid_align
from geomorph_bids.sphere.rotation import angle_between, apply_rotation, random_rotation


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


@pytest.mark.parametrize("H", ["L", "R"])
def test_rigid_align_hcp_32k_with_zero_medial_wall(hemi_data, hcp_data, load_surface, H):
    """HCP S1200 group sulc on fsLR 32k (medial wall = 0), randomly rotated, onto fsLR 164k refsulc."""
    cortex = read_cifti_cortex(hcp_data / "S1200.sulc_MSMAll.32k_fs_LR.dscalar.nii", H, fill=0.0)
    sulc = cortex.values[:, 0]
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


def test_icosphere_grid_binning_uses_the_cached_table_with_the_same_bins():
    """A template on its icosphere grid is binned through a cached nearest-vertex table; the bins
    must be those of the k-d tree query that other meshes get (ties at edge midpoints included)."""
    from geomorph_bids.sphere import rigid
    from geomorph_bids.sphere.icosphere import unit_icosphere

    u = np.array(unit_icosphere(6))
    feat = np.random.default_rng(0).normal(size=(len(u), 1))
    area = np.ones(len(u))
    assert rigid._icosphere_level(u) == 6 and rigid._icosphere_level(u[::-1]) is None
    fast = rigid._bin_to_level(u, feat, area, 4)
    _, idx = rigid._ico_tree(4).query(u, workers=1)
    n = len(unit_icosphere(4))
    np.testing.assert_allclose(fast[1], np.bincount(idx, weights=area, minlength=n))
    np.testing.assert_allclose(fast[0][:, 0], np.bincount(idx, weights=feat[:, 0], minlength=n))


def test_fixed_side_is_cached_by_content_with_the_same_fit():
    """The fixed sphere's smoothed maps are built once per content (a process registering many
    hemispheres to one template): a copy of the template hits the cache and gives the same fit
    to the last bit; another map misses it."""
    from geomorph_bids.sphere import rigid

    v, f = icosphere(5)
    rng = np.random.default_rng(3)
    fixed = unit(v) @ rng.normal(size=(3, 1)) + np.sin(3 * unit(v)[:, :1])
    R = random_rotation(np.random.default_rng(4))
    moving = (apply_rotation(v, R.T), f)
    rigid._fixed_side.cache_clear()
    first = rigid.rigid_fit(moving, fixed, (v, f), fixed, mirror_check=True, n_rotations=600)
    again = rigid.rigid_fit(moving, fixed, (v.copy(), f.copy()), fixed.copy(), mirror_check=True, n_rotations=600)
    info = rigid._fixed_side.cache_info()
    assert (info.hits, info.misses) == (1, 1)
    np.testing.assert_array_equal(again.rotation, first.rotation)
    assert (again.own, again.mirrored, again.correlation) == (first.own, first.mirrored, first.correlation)
    assert angle_between(first.rotation, R) < 2.0
    rigid.rigid_fit(moving, fixed, (v, f), fixed * 2.0, n_rotations=600)
    assert rigid._fixed_side.cache_info().misses == 2


def test_the_mirror_images_fit_on_a_worker_gives_the_same_bits():
    """rigid_fit(worker=): the identity check's fit of the mirror image runs on the worker (a
    one-thread pool) beside the own fit: the same rotation and measures to the last bit, and the
    worker fits only when the mirror image is fitted (it builds the level tables beside each fit:
    found cached but the first time)."""
    from concurrent.futures import ThreadPoolExecutor

    from geomorph_bids.sphere import rigid

    v, f = icosphere(5)
    rng = np.random.default_rng(5)
    fixed = unit(v) @ rng.normal(size=(3, 1)) + np.sin(3 * unit(v)[:, :1])
    moving = (apply_rotation(v, random_rotation(np.random.default_rng(6)).T), f)
    alone = rigid.rigid_fit(moving, fixed, (v, f), fixed, mirror_check=True, n_rotations=600)

    class Counting(ThreadPoolExecutor):
        submitted: list = []

        def submit(self, fn, /, *args, **kwargs):
            Counting.submitted.append(fn.__name__)
            return super().submit(fn, *args, **kwargs)

    with Counting(max_workers=1) as pool:
        beside = rigid.rigid_fit(moving, fixed, (v, f), fixed, mirror_check=True, n_rotations=600, worker=pool)
        assert Counting.submitted == ["_level_tables", "_mirror_fit"]
        rigid.rigid_fit(moving, fixed, (v, f), fixed, n_rotations=600, worker=pool)
        assert Counting.submitted == ["_level_tables", "_mirror_fit", "_level_tables"]  # no mirror check, no fit
    np.testing.assert_array_equal(beside.rotation, alone.rotation)
    assert (beside.own, beside.mirrored, beside.correlation) == (alone.own, alone.mirrored, alone.correlation)
    assert alone.mirrored is not None and alone.mirrored < alone.own


def test_nearest_ico_vertex_is_the_k_d_trees_ties_included():
    """The moving vertices' bins come from a descent to their face and its nearest corner: the
    same indices as the k-d tree query on random points, and on an unrotated finer icosphere,
    whose edge midpoints lie exactly halfway between two vertices (ties left to the tree)."""
    from geomorph_bids.sphere import rigid
    from geomorph_bids.sphere.icosphere import unit_icosphere

    x = unit(np.random.default_rng(5).normal(size=(50000, 3)))
    for level in (2, 4):
        _, want = rigid._ico_tree(level).query(x, workers=1)
        np.testing.assert_array_equal(rigid._nearest_ico_vertex(x, level), want)
    fine = np.array(unit_icosphere(5))
    for level in (3, 4):
        _, want = rigid._ico_tree(level).query(fine, workers=1)
        np.testing.assert_array_equal(rigid._nearest_ico_vertex(fine, level), want)
    # a moving sphere binned by descent gets the bins of the tree query
    u = unit(apply_rotation(fine, random_rotation(np.random.default_rng(6))))
    feat = np.random.default_rng(7).normal(size=(len(u), 2))
    area = np.random.default_rng(8).uniform(0.5, 1.5, len(u))
    fsum, wsum = rigid._bin_to_level(u, feat, area, 4)
    _, idx = rigid._ico_tree(4).query(u, workers=1)
    n = len(unit_icosphere(4))
    np.testing.assert_array_equal(wsum, np.bincount(idx, weights=area, minlength=n))
    np.testing.assert_array_equal(fsum[:, 1], np.bincount(idx, weights=area * feat[:, 1], minlength=n))


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_sphere_with_non_finite_coordinates_is_refused_naming_the_vertex(value):
    """Round twenty-six: the binning by descent passed NaN on to the k-d tree, whose `'x' must be
    finite, check for nan or inf values` named neither the sphere nor the vertex."""
    v, f = icosphere(3)
    v = np.array(v)
    v[10] = value
    feat = np.cos(np.arange(len(v)) * 0.1)
    with pytest.raises(InputError, match=r"moving sphere vertices: 1 of 642 have non-finite coordinates "
                                         r"\(NaN or Inf, first at vertex 10\)"):
        rigid_align((v, f), feat, icosphere(3), np.cos(np.arange(len(v)) * 0.1))


@pytest.mark.parametrize("level", [2, 3])
def test_latlon_table_is_the_searchs_to_the_last_bit(level):
    """The grid search's lat-lon table locates its points by descent (kept where clear of every
    edge, else searched): the same corners and weights as the locator's search of every point."""
    from geomorph_bids.sphere import rigid
    from geomorph_bids.sphere.locate import SphereLocator

    corners, w = rigid._latlon_table.__wrapped__(level, 2.0)
    n_lat, n_lon = 90, 180
    lat = np.radians(-90 + 2.0 * (np.arange(n_lat) + 0.5))
    lon = np.radians(-180 + 2.0 * (np.arange(n_lon) + 0.5))
    pts = np.stack([np.cos(lat)[:, None] * np.cos(lon)[None], np.cos(lat)[:, None] * np.sin(lon)[None],
                    np.broadcast_to(np.sin(lat)[:, None], (n_lat, n_lon))], -1).reshape(-1, 3)
    v, f = rigid._ico(level)
    face, want = SphereLocator(v, f).locate(pts)
    np.testing.assert_array_equal(corners, f[face])
    np.testing.assert_array_equal(w, want)


def test_level_tables_builds_the_tables_a_first_fit_reads():
    """The worker's share of a first fit: the grid search's, the pyramid's and the mirror image's
    cached tables, which the fit then finds built (the same objects: cache hits)."""
    from geomorph_bids.sphere import rigid

    tables = (rigid._latlon_table, rigid._super_fibonacci, rigid._ico_nearest_mirrored, rigid._ico_nearest,
              rigid._gauss_kernel, rigid._face_tables)
    for table in tables:
        table.cache_clear()
    rigid._level_tables(n_vertices(5), 4, ((4, 4.0), (3, 8.0)), True, 200, 600)
    assert [t.cache_info().currsize for t in tables] == [1, 2, 1, 2, 2, 1]
    calls = (lambda: rigid._latlon_table(3, 1.0), lambda: rigid._super_fibonacci(600),
             lambda: rigid._super_fibonacci(200), lambda: rigid._ico_nearest_mirrored(5, 4),
             lambda: rigid._ico_nearest(5, 4), lambda: rigid._ico_nearest(4, 3),
             lambda: rigid._gauss_kernel(4, 4.0), lambda: rigid._gauss_kernel(3, 8.0), lambda: rigid._face_tables(4))
    misses = [t.cache_info().misses for t in tables]
    for call in calls:
        call()
    assert [t.cache_info().misses for t in tables] == misses  # every one built already
    # a known rotation: no grid search, and the coarse maps only
    for table in tables:
        table.cache_clear()
    rigid._level_tables(n_vertices(6), 5, ((3, 8.0),), False, None, 3000)
    assert [t.cache_info().currsize for t in tables] == [0, 0, 0, 2, 1, 1]


def _bumps(level: int = 3) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray, np.ndarray]:
    """An icosphere, a map of smooth bumps on it and the rotation that moves a copy of it."""
    v, f = icosphere(level)
    rng = np.random.default_rng(5)
    feat = np.exp(-(1 - unit(v) @ unit(rng.standard_normal((8, 3))).T) / 0.05) @ rng.uniform(0.5, 2.0, 8)
    return (v, f), feat, random_rotation(rng, max_angle_deg=40)


def test_maps_of_any_scale_masked_arrays_and_tensors_give_the_plain_rotation():
    """Twentieth session: a map at 1e300 (its squares overflow) or 1e-300 (they vanish) gave a rotation
    138 degrees off, with at most numpy's overflow warning; a masked array's hidden values were
    read as data; a tensor that requires grad raised torch's "Can't call numpy() on Tensor that requires
    grad". The maps are scaled by a power of two (exact), masked values left out as NaN is."""
    import torch

    (v, f), feat, Q = _bumps()
    moved = (apply_rotation(v, Q), f)
    plain = rigid_align(moved, feat, (v, f), feat)
    assert angle_between(plain, Q.T) < 1.0
    for scale in (1e300, 1e-300):
        np.testing.assert_allclose(rigid_align(moved, feat * scale, (v, f), feat / scale), plain, atol=1e-12)
    hide = np.arange(len(v)) % 5 == 0
    garbage = np.where(hide, 50.0, feat)  # what the mask hides would pull the fit off
    as_nan = rigid_align(moved, np.where(hide, np.nan, feat), (v, f), feat)
    np.testing.assert_array_equal(rigid_align(moved, np.ma.masked_array(garbage, mask=hide), (v, f), feat), as_nan)
    np.testing.assert_array_equal(rigid_align(moved, feat, (v, f), np.ma.masked_array(garbage, mask=hide)),
                                  rigid_align(moved, feat, (v, f), np.where(hide, np.nan, feat)))
    graded = torch.from_numpy(feat).requires_grad_()
    np.testing.assert_array_equal(rigid_align((torch.from_numpy(moved[0]), f), graded, (v, f), graded), plain)


@pytest.mark.parametrize("case, message", [
    ("constant", r"moving features: channel 0 is constant \(3\) on every valid vertex .*carries nothing to align"),
    ("binary", r"moving features: channel 0 is constant \(1\) on every valid vertex"),
    ("off-centre", r"moving sphere is not a sphere centred on the origin \(vertex radii 70 to 130\): recentre it"),
    ("vertices only", r"moving sphere must be a \(vertices, faces\) pair, got ndarray of shape \(642, 3\)"),
    ("complex", r"moving features hold complex numbers"),
])
def test_inputs_that_gave_an_arbitrary_rotation_or_a_deep_error_are_refused_on_one_line(case, message):
    """Twentieth session: a constant map (any rotation fits it) and a binary one (0 is the medial
    wall, so 1 everywhere else) returned a rotation 122 and 138 degrees off; a sphere 30 mm off the
    origin (directions are read from the origin) one 9.4 degrees off, all in silence; a (V, 3) array in place of
    the (vertices, faces) pair was read as a pair (``vertices must be (V, 3), got (3,)``); complex
    values lost their imaginary part with numpy's ComplexWarning."""
    (v, f), feat, _ = _bumps()
    moving, values = (v, f), feat
    if case == "constant":
        values = np.full(len(v), 3.0)
    elif case == "binary":
        values = (feat > np.median(feat)).astype(float)
    elif case == "off-centre":
        moving = (v + [30.0, 0.0, 0.0], f)
    elif case == "vertices only":
        moving = v
    else:
        values = feat + 1j
    with pytest.raises(InputError, match=message):
        rigid_align(moving, values, (v, f), feat)

"""Tests for the nested icosphere hierarchy and its hexagonal tables."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from geomorph_bids.sphere.icosphere import (
    MAX_LEVEL,
    RADIUS,
    containing_face,
    hex_neighbourhood,
    icosphere,
    level_of,
    local_frames,
    mean_edge_length,
    n_faces,
    n_vertices,
    pool_index,
    pseudo_coords,
    unit_icosphere,
    upsample_parents,
)
from geomorph_bids.sphere.mesh import edges, signed_volumes

ico = importlib.import_module("geomorph_bids.sphere.icosphere")  # the module; the package exports the function

LEVELS = list(range(MAX_LEVEL + 1))
FINE_LEVELS = list(range(1, MAX_LEVEL + 1))


def _edge_keys(faces: np.ndarray, n: int) -> np.ndarray:
    e = edges(faces)
    return e[:, 0] * n + e[:, 1]


def _ring_angles(level: int) -> np.ndarray:
    """(V, 6) angles in [-1e-9, 2pi - 1e-9] of the hex slots 1-6 (nan on padding)."""
    coords = pseudo_coords(level)[:, 1:]
    _, mask = hex_neighbourhood(level)
    ang = np.mod(np.arctan2(coords[..., 1], coords[..., 0]), 2 * np.pi)
    ang = np.where(ang > 2 * np.pi - 1e-9, ang - 2 * np.pi, ang)  # exactly east: rounding
    return np.where(mask[:, 1:], ang, np.nan)


# --------------------------------------------------------------------------- counts
@pytest.mark.parametrize("level", LEVELS)
def test_counts_and_euler(level):
    v, f = icosphere(level)
    e = edges(f)
    assert v.shape == (10 * 4**level + 2, 3) and v.dtype == np.float64
    assert f.shape == (20 * 4**level, 3) and f.dtype == np.int64
    assert len(e) == 30 * 4**level
    assert len(v) - len(e) + len(f) == 2
    assert n_vertices(level) == len(v) and n_faces(level) == len(f)
    assert f.min() == 0 and f.max() == len(v) - 1


def test_known_counts():
    assert [n_vertices(k) for k in LEVELS] == [12, 42, 162, 642, 2562, 10242, 40962, 163842]


def test_level_of_roundtrip_and_errors():
    for k in LEVELS:
        assert level_of(n_vertices(k)) == k
    assert level_of(np.int64(40962)) == 6
    for bad in (0, 13, 32492, 40961, 655362, "x"):
        with pytest.raises(ValueError, match="not an icosphere"):
            level_of(bad)
    with pytest.raises(ValueError):
        icosphere(MAX_LEVEL + 1)
    with pytest.raises(ValueError):
        icosphere(-1)
    with pytest.raises(ValueError):
        upsample_parents(0)
    with pytest.raises(ValueError):
        pool_index(0)


# --------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("level", LEVELS)
def test_on_radius_100_and_outward(level):
    v, f = icosphere(level)
    assert np.abs(np.linalg.norm(v, axis=1) - 100.0).max() < 1e-9
    vol = signed_volumes(v, f)
    assert vol.min() > 0
    # outward triangles tile the sphere: sum of tetra volumes -> sphere volume from below
    total = vol.sum() / 6.0
    assert 0 < total < 4.0 / 3.0 * np.pi * 100.0**3
    assert np.abs(v.mean(axis=0)).max() < 1e-9  # centred on the origin


def test_base_orientation():
    v, _ = icosphere(0)
    assert np.array_equal(v[0], [0.0, 0.0, 100.0])
    assert np.array_equal(v[11], [0.0, 0.0, -100.0])
    assert v[2, 1] == 0.0 and v[2, 0] > 0  # vertex 2 in the x-z half plane
    lon = np.rad2deg(np.arctan2(v[1:11, 1], v[1:11, 0]))
    np.testing.assert_allclose(np.mod(lon + 360, 360),
                               np.mod([-72, 0, 72, 144, 216, -108, -36, 36, 108, 180], 360),
                               atol=1e-12)


@pytest.mark.parametrize("level", range(MAX_LEVEL))
def test_nested_exactly(level):
    coarse, _ = icosphere(level)
    fine, _ = icosphere(level + 1)
    assert np.array_equal(fine[: len(coarse)], coarse)


@pytest.mark.parametrize("level", LEVELS)
def test_edge_length_uniformity(level):
    v, f = icosphere(level)
    e = edges(f)
    length = np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1)
    ratio = length.max() / length.min()
    # measured: 1.0 (ico-0), 1.131 (ico-1) ... 1.1951 (ico-7); the limit is ~1.1951
    assert 1.0 <= ratio < 1.196
    if level >= 2:
        assert ratio > 1.17
    assert mean_edge_length(level) == pytest.approx(length.mean(), rel=1e-12)
    expected = [105.146, 58.228, 29.933, 15.073, 7.5499, 3.7766, 1.8885, 0.94429]  # mm
    assert mean_edge_length(level) == pytest.approx(expected[level], rel=1e-4)


# --------------------------------------------------------------------------- hex tables
@pytest.mark.parametrize("level", LEVELS)
def test_hex_neighbourhood_structure(level):
    v, f = icosphere(level)
    index, mask = hex_neighbourhood(level)
    V = len(v)
    assert index.shape == (V, 7) and index.dtype == np.int64
    assert mask.shape == (V, 7) and mask.dtype == np.bool_
    assert np.array_equal(index[:, 0], np.arange(V)) and mask[:, 0].all()
    # padding only in the last slot, and only for the 12 base vertices
    assert mask[:, :6].all()
    deg5 = np.flatnonzero(~mask[:, 6])
    assert np.array_equal(deg5, np.arange(12))
    assert np.array_equal(index[deg5, 6], deg5)
    # every listed neighbour shares an edge with the centre; all edges are listed
    keys = set(_edge_keys(f, V).tolist())
    centre = np.repeat(np.arange(V)[:, None], 6, 1)[mask[:, 1:]]
    nb = index[:, 1:][mask[:, 1:]]
    lo, hi = np.minimum(centre, nb), np.maximum(centre, nb)
    assert np.isin(lo * V + hi, np.fromiter(keys, np.int64)).all()
    assert mask[:, 1:].sum() == 2 * len(keys)
    # no repeated neighbour in a row
    srt = np.sort(np.where(mask[:, 1:], index[:, 1:], -1 - np.arange(6)), axis=1)
    assert (np.diff(srt, axis=1) != 0).all()


@pytest.mark.parametrize("level", LEVELS)
def test_hex_ccw_consecutive_neighbours_form_faces(level):
    v, f = icosphere(level)
    V = len(v)
    index, mask = hex_neighbourhood(level)
    # directed triangles (any rotation) of the outward faces
    rot = np.concatenate([f, np.roll(f, 1, 1), np.roll(f, 2, 1)])
    face_keys = (rot[:, 0] * V + rot[:, 1]) * V + rot[:, 2]
    deg = mask[:, 1:].sum(1)
    k = np.arange(6)
    nxt = np.where(k[None, :] + 1 < deg[:, None], k[None, :] + 1, 0)  # wraps to slot 1
    a = index[:, 1:]
    b = np.take_along_axis(a, nxt, 1)
    valid = mask[:, 1:]
    tri = (np.arange(V)[:, None] * V + a) * V + b
    assert np.isin(tri[valid], face_keys).all()


@pytest.mark.parametrize("level", LEVELS)
def test_hex_starts_east_and_angles_increase(level):
    ang = _ring_angles(level)
    d = np.diff(ang, axis=1)
    assert (d[~np.isnan(d)] > 0).all()
    first = ang[:, 0]
    assert (first >= -1e-9).all() and (first < 2 * np.pi / 5 + 1e-9).all()
    assert (np.nanmax(ang, axis=1) < 2 * np.pi - 1e-9).all()
    # neighbours exactly east (by symmetry; +-1e-14 after rounding) always come first;
    # the smallest genuinely non-zero angle is far above the 1e-9 tolerance
    east = np.abs(ang) < 1e-9
    assert not east[:, 1:].any()
    assert east[:, 0].sum() == [1, 21, 41, 101, 221, 461, 941, 1901][level]
    assert np.nanmin(np.where(east, np.nan, np.abs(ang))) > 1e-6


def test_frames_orthonormal_and_east():
    v, _ = icosphere(3)
    fr = local_frames(3)
    gram = np.einsum("vic,vjc->vij", fr, fr)
    assert np.abs(gram - np.eye(3)).max() < 1e-12
    assert np.abs(fr[:, 2] - v / 100.0).max() < 1e-15
    # right handed: e1 x e2 = n; e1 horizontal (no z component), e2 points north
    assert np.abs(np.cross(fr[:, 0], fr[:, 1]) - fr[:, 2]).max() < 1e-12
    assert np.abs(fr[2:, 0, 2]).max() < 1e-15
    assert (fr[2:, 1, 2][np.abs(v[2:, 2]) < 99.9] > 0).all()
    # poles: e1 is the x axis
    np.testing.assert_allclose(fr[0, 0], [1, 0, 0], atol=1e-15)
    np.testing.assert_allclose(fr[11, 0], [1, 0, 0], atol=1e-15)
    np.testing.assert_allclose(fr[0, 1], [0, 1, 0], atol=1e-15)
    np.testing.assert_allclose(fr[11, 1], [0, -1, 0], atol=1e-15)


def test_hex_at_north_pole_ico1():
    # vertex 0 at ico-1: 5 neighbours = midpoints towards vertices 1..5, whose longitudes
    # are -72, 0, 72, 144, 216 deg; in the pole frame (e1 = x, e2 = y) the ring starts at 0 deg
    v, _ = icosphere(1)
    index, mask = hex_neighbourhood(1)
    lon = np.rad2deg(np.arctan2(v[index[0, 1:6], 1], v[index[0, 1:6], 0]))
    np.testing.assert_allclose(np.mod(lon, 360), [0, 72, 144, 216, 288], atol=1e-9)
    assert not mask[0, 6]


@pytest.mark.parametrize("level", FINE_LEVELS)
def test_pool_index_matches_hex_rows(level):
    index, _ = hex_neighbourhood(level)
    pool = pool_index(level)
    n = n_vertices(level - 1)
    assert pool.shape == (n, 7) and pool.dtype == np.int64
    assert np.array_equal(pool, index[:n])
    # max-pooling a field over the 7 slots equals the max over centre + one-ring
    rng = np.random.default_rng(0)
    x = rng.normal(size=n_vertices(level))
    v, f = icosphere(level)
    e = edges(f)
    ring_max = x.copy()
    np.maximum.at(ring_max, e[:, 0], x[e[:, 1]])
    np.maximum.at(ring_max, e[:, 1], x[e[:, 0]])
    assert np.array_equal(x[pool].max(1), ring_max[:n])


@pytest.mark.parametrize("level", FINE_LEVELS)
def test_upsample_parents(level):
    coarse, cf = icosphere(level - 1)
    fine, _ = icosphere(level)
    par = upsample_parents(level)
    n0 = len(coarse)
    assert par.shape == (len(fine) - n0, 2) and par.dtype == np.int64
    assert (par[:, 0] < par[:, 1]).all() and par.max() < n0
    # one new vertex per coarse edge
    keys = par[:, 0] * n0 + par[:, 1]
    assert np.array_equal(np.sort(keys), _edge_keys(cf, n0))
    mid = coarse[par[:, 0]] + coarse[par[:, 1]]
    mid *= 100.0 / np.linalg.norm(mid, axis=1, keepdims=True)
    assert np.abs(fine[n0:] - mid).max() < 1e-9
    # the parents are the new vertex's two old neighbours in the fine mesh
    index, _ = hex_neighbourhood(level)
    old_nb = np.sort(np.where(index[n0:, 1:] < n0, index[n0:, 1:], n0 + 10**9), axis=1)[:, :2]
    assert np.array_equal(old_nb, par)


@pytest.mark.parametrize("level", LEVELS)
def test_pseudo_coords(level):
    c = pseudo_coords(level)
    _, mask = hex_neighbourhood(level)
    assert c.shape == (n_vertices(level), 7, 2) and c.dtype == np.float64
    assert not c[:, 0].any()
    assert not c[~mask].any()
    norm = np.linalg.norm(c, axis=2)[mask]
    norm = norm[norm > 0]
    assert norm.size == mask[:, 1:].sum()
    # measured range: ico-0 0.851 (all equal), ico-1 0.903-1.009, ico-7 0.916-1.095
    if level == 0:  # all edges equal; tangent projection shortens them by cos(31.7 deg)
        np.testing.assert_allclose(norm, 0.8506508083520399, rtol=1e-12)
    else:
        assert norm.min() > 0.90 and norm.max() < 1.10


@pytest.mark.parametrize("level", [2, 4])
def test_pseudo_coords_match_definition(level):
    v, _ = icosphere(level)
    index, mask = hex_neighbourhood(level)
    c = pseudo_coords(level)
    h = mean_edge_length(level)
    for i in (0, 11, 5, 17, len(v) - 1):  # poles, base vertex, generic vertices
        n = v[i] / 100.0
        e1 = np.cross([0.0, 0.0, 1.0], n)
        if np.linalg.norm(e1) < 1e-6:
            e1 = np.array([1.0, 0.0, 0.0]) - n[0] * n
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(n, e1)
        d = v[index[i, 1:]] - v[i]
        d -= np.outer(d @ n, n)
        expect = np.stack([d @ e1, d @ e2], 1) / h
        expect[~mask[i, 1:]] = 0.0
        np.testing.assert_allclose(c[i, 1:], expect, atol=1e-12)


# --------------------------------------------------------------------------- caching
def test_read_only_and_cached():
    v, f = icosphere(3)
    assert icosphere(3)[0] is v
    for arr in (v, f, *hex_neighbourhood(3), pool_index(3), pseudo_coords(3),
                upsample_parents(3), local_frames(3)):
        assert not arr.flags.writeable
        with pytest.raises(ValueError):
            arr[0] = 0


def test_deterministic_rebuild():
    level = 5
    before = [np.array(a) for a in (*icosphere(level), *hex_neighbourhood(level),
                                    pseudo_coords(level), upsample_parents(level))]
    for cached in (ico._level, ico._hex, ico.local_frames, ico.mean_edge_length):
        cached.cache_clear()
    after = [*icosphere(level), *hex_neighbourhood(level), pseudo_coords(level),
             upsample_parents(level)]
    for a, b in zip(before, after):
        assert a is not b and np.array_equal(a, b)


# --------------------------------------------------------------------------- FreeSurfer
@pytest.mark.parametrize("hemi", ["left", "right"])
def test_matches_fsaverage5_sphere(fsaverage5, load_surface, hemi):
    fv, ff = load_surface(fsaverage5 / f"sphere_{hemi}.gii.gz")
    v, f = icosphere(5)
    # same vertex order and identical faces; positions differ only by FreeSurfer's
    # 4-decimal rounding of unit-sphere coordinates (measured max 0.0083 mm)
    assert fv.shape == v.shape
    assert np.array_equal(ff, f)
    d = np.linalg.norm(v - fv, axis=1)
    assert d.max() < 0.009
    assert np.median(d) < 0.005


def test_matches_fsaverage_ic7_and_nested_fsaverage6(atlases, load_surface):
    fv, ff = load_surface(atlases / "fs_L" / "fsaverage.L.sphere.164k_fs_L.surf.gii")
    v, f = icosphere(7)
    assert np.array_equal(ff, f)
    assert np.linalg.norm(v - fv, axis=1).max() < 0.0085  # measured 0.00838 mm
    v6, _ = icosphere(6)  # fsaverage6 = first 40962 vertices of fsaverage
    assert np.linalg.norm(v6 - fv[: len(v6)], axis=1).max() < 0.0085


@pytest.mark.parametrize("level", [0, 1, 3, 4])
def test_containing_face_is_the_locators_face(level):
    """The descent's face holds each direction: the face the k-d tree locator finds, wherever the
    direction lies clear of an edge (float32 tests), and within 1e-6 of the returned face
    otherwise; any radius."""
    from geomorph_bids.sphere.locate import SphereLocator

    x = np.random.default_rng(level).normal(size=(20000, 3))
    v, f = icosphere(level)
    face, w = SphereLocator(v, f).locate(x)
    got = containing_face(x * 7.0, level)
    assert got.dtype == np.int64 and got.shape == (len(x),)
    clear = w.min(axis=1) > 1e-5
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(got[clear], face[clear])
    # every returned face holds its direction to within float32 rounding (gnomonic weights)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    corners = v[f[got]] / RADIUS
    raw = np.stack([np.einsum("nd,nd->n", u, np.cross(corners[:, (i + 1) % 3], corners[:, (i + 2) % 3]))
                    for i in range(3)], 1)
    assert (raw / raw.sum(axis=1, keepdims=True)).min() > -1e-6


def test_containing_face_of_vertices_and_midpoints():
    """Directions exactly on vertices and edges of a coarser level get a face that has them."""
    fine = unit_icosphere(4)  # ico-3's vertices and its edge midpoints (and ico-4's)
    v, f = icosphere(3)
    face = containing_face(fine, 3)
    corners = v[f[face]] / RADIUS
    raw = np.stack([np.einsum("nd,nd->n", fine, np.cross(corners[:, (i + 1) % 3], corners[:, (i + 2) % 3]))
                    for i in range(3)], 1)
    assert (raw / raw.sum(axis=1, keepdims=True)).min() > -1e-6
    n3 = n_vertices(3)
    np.testing.assert_array_equal((f[face[:n3]] == np.arange(n3)[:, None]).any(axis=1), True)


def test_grid_deviation_is_zero_on_the_grid_at_any_radius_only():
    from geomorph_bids.sphere.icosphere import grid_deviation

    v = icosphere(3)[0]
    assert np.abs(grid_deviation(v * 0.01, 3)).max() < 1e-12
    assert np.abs(grid_deviation(v[:162], 3)).max() < 1e-12             # the first vertices: a coarser level's
    moved = v[::-1].copy()
    assert np.linalg.norm(grid_deviation(moved, 3), axis=1).max() > 1.0  # another order
    moved[0] = 0.0
    assert np.isnan(grid_deviation(moved, 3)[0]).all()

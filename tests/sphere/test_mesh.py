"""Tests for geomorph_bids.sphere.mesh."""

from __future__ import annotations

import numpy as np
import pytest

from geomorph_bids.sphere.icosphere import icosphere
from geomorph_bids.sphere.mesh import areas_and_volumes, edges, row_norms, signed_volumes, triangle_areas


def _brute_edges(faces: np.ndarray) -> np.ndarray:
    pairs = {tuple(sorted((int(a), int(b)))) for tri in faces for a, b in ((tri[0], tri[1]), (tri[1], tri[2]),
                                                                             (tri[2], tri[0]))}
    return np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)


def test_edges_of_an_icosphere_are_unique_sorted_and_complete():
    _, f = icosphere(3)
    e = edges(f)
    np.testing.assert_array_equal(e, _brute_edges(np.asarray(f)))
    assert len(e) == 3 * len(f) // 2  # closed mesh: E = 3F/2


def test_edges_of_an_open_non_manifold_mesh_with_repeats():
    # a repeated triangle, a fin (three faces on one edge), a lone vertex index gap (vertex 9 unused)
    f = np.array([[0, 1, 2], [2, 1, 0], [0, 1, 3], [0, 1, 4], [4, 5, 10], [7, 6, 8]])
    e = edges(f)
    np.testing.assert_array_equal(e, _brute_edges(f))
    assert e.dtype == np.int64 and np.all(e[:, 0] < e[:, 1])


def test_edges_of_int32_faces_and_of_faces_in_either_winding():
    """edges() gathers int32 pairs where the vertex count allows: the same int64 edges for int32 and
    int64 faces, clockwise or not, on a closed mesh and on one with a fin and repeats."""
    _, f = icosphere(3)
    fin = np.array([[0, 1, 2], [2, 1, 0], [0, 1, 3], [0, 1, 4], [4, 5, 10], [7, 6, 8]])
    for faces in (np.asarray(f), fin):
        want = _brute_edges(faces)
        for given in (faces.astype(np.int32), faces.astype(np.int64), faces[:, ::-1], faces.astype(np.uint16)):
            e = edges(given)
            assert e.dtype == np.int64
            np.testing.assert_array_equal(e, want)


def test_edges_of_no_faces():
    assert edges(np.zeros((0, 3), dtype=np.int64)).shape == (0, 2)


def test_areas_and_volumes_are_the_two_functions_numbers_bit_for_bit():
    """One gather of the corners for both (a sphere's checks): the same bits as each alone, on
    an irregular mesh with flipped and degenerate triangles."""
    v, f = icosphere(3)
    rng = np.random.default_rng(1)
    v = v * 100.0 + rng.normal(scale=0.5, size=v.shape)
    f = f.copy()
    f[:7] = f[:7, ::-1]  # clockwise: negative volumes
    f[7] = [0, 0, 1]  # no area
    areas, volumes = areas_and_volumes(v, f)
    np.testing.assert_array_equal(areas, triangle_areas(v, f))
    np.testing.assert_array_equal(volumes, signed_volumes(v, f))
    assert (volumes[:7] < 0).all() and areas[7] == 0.0 and (volumes[8:] > 0).all()


def test_repeated_sides_tell_arbitrary_winding_from_a_fold():
    from geomorph_bids.sphere.mesh import repeated_sides

    v, f = icosphere(2)
    assert repeated_sides(f) == 0
    turned = f.copy()
    turned[[0, 5]] = turned[[0, 5]][:, [0, 2, 1]]     # two triangles listed the other way round
    assert repeated_sides(turned) == 6                 # each of their 3 sides now runs as a neighbour's does
    w = np.array(v, dtype=np.float64)
    a, b = f[0][1], f[0][2]
    w[[a, b]] = w[[b, a]]                              # a fold: geometry, not winding
    assert repeated_sides(f) == 0 and int((signed_volumes(w, f) < 0).sum()) == 2
    assert repeated_sides(np.zeros((0, 3), dtype=np.int64)) == 0


def test_row_norms_are_numpys_bit_for_bit():
    """row_norms: the lengths np.linalg.norm(axis=1) gives, bit for bit, on an icosphere at radius
    100 off-centre and on a million random rows of mixed scales (a sum in another order would
    differ on about 1 row in 8); rows of 3 only."""
    rng = np.random.default_rng(3)
    v = 100.0 * np.asarray(icosphere(5)[0], dtype=np.float64) + np.array([0.3, -2.0, 1.1])
    mixed = rng.normal(size=(1_000_000, 3)) * 10.0 ** rng.integers(-3, 4, size=(1_000_000, 1))
    for a in (v, mixed, v.astype(np.float32)):
        got = row_norms(a)
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, np.linalg.norm(np.asarray(a, dtype=np.float64), axis=1))
    np.testing.assert_array_equal(row_norms(np.array([[3.0, 4.0, 12.0]])), [13.0])
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        row_norms(np.ones((4, 2)))

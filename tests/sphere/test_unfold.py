"""Tests for geomorph_bids.sphere.unfold."""

from __future__ import annotations

import numpy as np

from geomorph_bids.sphere.distortion import folded_triangles
from geomorph_bids.sphere.icosphere import hex_neighbourhood, icosphere
from geomorph_bids.sphere.locate import unit
from geomorph_bids.sphere.unfold import unfold_mesh


def _folded_mesh():
    v, f = icosphere(4)
    v, f = np.array(v, dtype=np.float64), np.asarray(f)
    moved = v.copy()
    index, _ = hex_neighbourhood(4)
    i = 500  # push one vertex past its one-ring: its fan folds
    far = v[i] + 2.5 * (v[index[i, 1]] - v[i])
    moved[i] = unit(far[None])[0] * 100.0
    return v, moved, f, i


def test_unfold_removes_the_folds_and_moves_only_vertices_near_them():
    v, moved, f, i = _folded_mesh()
    assert len(folded_triangles((v, f), (moved, f))) > 0
    out, steps = unfold_mesh(v, moved, f)
    assert 0 < steps < 100
    assert len(folded_triangles((v, f), (out, f))) == 0
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 100.0, rtol=1e-9)
    dist = np.degrees(np.arccos(np.clip(unit(v) @ unit(v[i : i + 1])[0], -1, 1)))
    changed = np.any(out != moved, axis=1)
    assert changed[i] and dist[changed].max() < 25.0  # local: nothing moves far from the fold
    assert not np.any(changed[dist > 30.0])


def test_a_mesh_without_folds_is_returned_unchanged():
    v, f = icosphere(3)
    rng = np.random.default_rng(1)
    moved = unit(np.asarray(v) + rng.normal(0, 0.5, np.shape(v))) * 100.0
    assert len(folded_triangles((v, f), (moved, f))) == 0
    out, steps = unfold_mesh(np.asarray(v), moved, np.asarray(f))
    assert steps == 0 and np.array_equal(out, moved)


def test_a_triangle_degenerate_in_the_base_is_not_chased():
    """A zero-area input triangle has no orientation to restore: it counts as folded once it
    opens up, but nothing is smoothed for it."""
    v, f = icosphere(3)
    v, f = np.array(v, dtype=np.float64), np.asarray(f)
    k = len(v)
    v = np.vstack([v, v[:1]])                      # vertex k sits exactly on vertex 0
    f = np.vstack([f, [[0, k, 1]]])                # so this triangle has no area in the base
    moved = v.copy()
    moved[k] = unit((v[0] + 0.05 * (v[2] - v[0]))[None])[0] * 100.0  # it opens up when moved
    assert len(folded_triangles((v, f), (moved, f))) == 1
    out, steps = unfold_mesh(v, moved, f)
    assert steps == 0 and np.array_equal(out, moved)


def test_a_flipped_sliver_is_re_seated_by_moving_its_apex_alone():
    """Real subject meshes have slivers (a fraction of a millimetre high): the slightest shear
    flips one. Its apex is put back where the base triangle's shape puts it, in one step, and
    no other vertex moves (smoothing made such a fold worse on a real mesh)."""
    v, f = icosphere(3)
    v, f = np.array(v, dtype=np.float64), np.asarray(f).copy()
    t = 7
    a, b, d = f[t]                                       # split this triangle at a point near its edge (a, b)
    h = 0.01                                             # mm on the radius-100 sphere: a sliver
    mid = 0.5 * (v[a] + v[b])
    p = unit((mid + h * unit((v[d] - mid)[None])[0])[None])[0] * 100.0
    k = len(v)
    v = np.vstack([v, p])
    f = np.vstack([np.delete(f, t, axis=0), [[a, b, k], [b, d, k], [d, a, k]]])
    sliver = len(f) - 3
    moved = v.copy()
    moved[k] = unit((mid - 2 * h * unit((v[d] - mid)[None])[0])[None])[0] * 100.0  # across the edge
    assert folded_triangles((v, f), (moved, f)).tolist() == [sliver]
    out, steps = unfold_mesh(v, moved, f)
    assert steps == 1 and len(folded_triangles((v, f), (out, f))) == 0
    changed = np.flatnonzero(np.any(out != moved, axis=1))
    assert changed.tolist() == [k]
    assert np.linalg.norm(out[k] - v[k]) < 0.01 * h + 1e-9   # back to its own place (the edge did not move)


def test_base_sides_given_give_the_same_unfolding():
    """unfold_mesh with the base's orientation signs passed in (a cached icosphere's) moves the
    same vertices to the same bits as when it measures them itself."""
    from geomorph_bids.sphere.distortion import triangle_orientation

    v, f = icosphere(3)
    moved = np.array(v, dtype=np.float64)
    moved[[100, 101]] = moved[[101, 100]]               # two neighbours swapped: folds
    plain, steps = unfold_mesh(v, moved, f)
    given, steps2 = unfold_mesh(v, moved, f, base_sides=triangle_orientation(np.asarray(v, dtype=np.float64), f))
    assert steps == steps2 > 0
    np.testing.assert_array_equal(given, plain)

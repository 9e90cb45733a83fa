"""Point location on spherical meshes: containment, weights, edge cases, a real 164k mesh."""

from __future__ import annotations

import numpy as np
import pytest

from geomorph_bids.sphere.icosphere import icosphere
from geomorph_bids.sphere.locate import SphereLocator, face_neighbours, locate, unit, vertex_faces, vertex_fans
from geomorph_bids.sphere.rotation import rotation_matrix


def _random_directions(n: int, seed: int) -> np.ndarray:
    return unit(np.random.default_rng(seed).normal(size=(n, 3)))


def _jittered_mesh(level: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Icosphere with every vertex moved a little along the sphere (irregular triangles)."""
    v, f = icosphere(level)
    rng = np.random.default_rng(seed)
    edge = np.linalg.norm(v[f[0, 0]] - v[f[0, 1]])
    v = 100.0 * unit(v + rng.normal(scale=0.15 * edge, size=v.shape))
    return v, np.array(f, dtype=np.int64)


def _uv_sphere(n_lat: int, n_lon: int) -> tuple[np.ndarray, np.ndarray]:
    """Latitude-longitude sphere: both poles have n_lon triangles (wider than the fan table)."""
    theta = np.linspace(0, np.pi, n_lat + 1)[1:-1]
    phi = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    ring = np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], axis=-1).reshape(-1, 3)
    v = np.concatenate([[[0, 0, 1]], ring, [[0, 0, -1]]])
    idx = 1 + np.arange((n_lat - 1) * n_lon).reshape(n_lat - 1, n_lon)
    nxt = np.roll(idx, -1, axis=1)
    south = len(v) - 1
    faces = [np.stack([np.zeros(n_lon, int), idx[0], nxt[0]], axis=1)]
    for i in range(n_lat - 2):
        faces += [np.stack([idx[i], idx[i + 1], nxt[i + 1]], axis=1),
                  np.stack([idx[i], nxt[i + 1], nxt[i]], axis=1)]
    faces.append(np.stack([idx[-1], np.full(n_lon, south), nxt[-1]], axis=1))
    return v, np.concatenate(faces).astype(np.int64)


def _check_located(points, vertices, faces, face, weights, tol=1e-10):
    """Weights valid, the face contains the point, and the weights rebuild its direction."""
    assert face.shape == (len(points),) and weights.shape == (len(points), 3)
    assert face.dtype == np.int64 and weights.dtype == np.float64
    assert weights.min() >= 0.0
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-12)
    u = unit(vertices)
    rebuilt = unit(np.einsum("ni,nij->nj", weights, u[faces[face]]))
    err = np.linalg.norm(rebuilt - unit(points), axis=1)
    assert err.max() < tol, err.max()
    # Independent containment check: the triple-product signs of the returned face.
    a, b, c = (u[faces[face, i]] for i in range(3))
    p = unit(points)
    orient = np.sign(np.einsum("ij,ij->i", a, np.cross(b, c)))
    raw = np.stack([np.einsum("ij,ij->i", p, np.cross(b, c)), np.einsum("ij,ij->i", p, np.cross(c, a)),
                    np.einsum("ij,ij->i", p, np.cross(a, b))], axis=1) * orient[:, None]
    assert (raw.min(axis=1) / raw.sum(axis=1)).min() > -1e-12


@pytest.mark.parametrize("level", [2, 4])
def test_random_points_icosphere(level):
    v, f = icosphere(level)
    f = np.asarray(f, dtype=np.int64)
    pts = _random_directions(20000, seed=level)
    face, w = SphereLocator(v, f).locate(pts)
    _check_located(pts, v, f, face, w)


def test_random_points_irregular_mesh_matches_brute_force():
    v, f = _jittered_mesh(3, seed=1)
    pts = 37.0 * _random_directions(3000, seed=2)  # another radius than the mesh
    face, w = SphereLocator(v, f).locate(pts)
    _check_located(pts, v, f, face, w)
    # Brute force over all faces: the smallest normalised weight of the returned face
    # equals the best over every face (ties only on shared edges).
    u = unit(v)
    a, b, c = (u[f[:, i]] for i in range(3))
    normals = np.stack([np.cross(b, c), np.cross(c, a), np.cross(a, b)], axis=1)
    normals *= np.sign(np.einsum("fi,fi->f", a, normals[:, 0]))[:, None, None]
    raw = np.einsum("fij,nj->nfi", normals, unit(pts))
    total = raw.sum(axis=2)
    score = np.where(total > 0, raw.min(axis=2) / np.where(total > 0, total, 1), -np.inf)
    best = score.max(axis=1)
    np.testing.assert_allclose(score[np.arange(len(pts)), face], best, atol=1e-12)
    assert best.min() >= -1e-12  # the mesh covers the sphere


def test_points_at_vertices_get_weight_one():
    v, f = _jittered_mesh(3, seed=3)
    face, w = SphereLocator(v, f).locate(v * 2.5)
    corner = f[face]
    hit = corner == np.arange(len(v))[:, None]
    assert hit.any(axis=1).all()  # every vertex lies in a face it belongs to
    np.testing.assert_allclose(w[hit], 1.0, atol=1e-12)
    np.testing.assert_allclose(w[~hit], 0.0, atol=1e-12)


def test_points_on_edges_get_half_half():
    v, f = _jittered_mesh(3, seed=4)
    u = unit(v)
    e = np.unique(np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1), axis=0)
    mid = unit(u[e[:, 0]] + u[e[:, 1]])  # the chord midpoint's direction: weights exactly 1/2, 1/2
    face, w = SphereLocator(v, f).locate(mid)
    _check_located(mid, v, f, face, w)
    corner = f[face]
    on_a = corner == e[:, :1]
    on_b = corner == e[:, 1:]
    assert (on_a.sum(axis=1) == 1).all() and (on_b.sum(axis=1) == 1).all()
    np.testing.assert_allclose(w[on_a], 0.5, atol=1e-12)
    np.testing.assert_allclose(w[on_b], 0.5, atol=1e-12)
    np.testing.assert_allclose(w[~(on_a | on_b)], 0.0, atol=1e-12)


def test_both_windings_and_mixed():
    v, f = _jittered_mesh(3, seed=5)
    pts = _random_directions(5000, seed=6)
    face, w = SphereLocator(v, f).locate(pts)
    flipped = f[:, ::-1].copy()
    face2, w2 = SphereLocator(v, flipped).locate(pts)
    np.testing.assert_array_equal(face2, face)
    np.testing.assert_allclose(w2, w[:, ::-1], atol=1e-12)
    rng = np.random.default_rng(7)
    mixed = np.where(rng.random(len(f))[:, None] < 0.5, f, flipped)
    face3, w3 = SphereLocator(v, mixed).locate(pts)
    _check_located(pts, v, mixed, face3, w3)
    np.testing.assert_array_equal(face3, face)


def test_wide_fans_use_the_fallback():
    v, f = _uv_sphere(12, 40)  # poles have 40 triangles each
    pts = np.concatenate([_random_directions(4000, seed=8),
                          unit([[0.01, 0.02, 1.0], [0.0, -0.03, -1.0], [1e-9, 0, 1]])])
    face, w = SphereLocator(v, f).locate(pts)
    _check_located(pts, v, f, face, w)


def test_k_and_one_off_function_agree():
    v, f = _jittered_mesh(3, seed=9)
    pts = _random_directions(3000, seed=10)
    loc = SphereLocator(v, f)
    face, w = loc.locate(pts)
    for k in (1, 20):
        face_k, w_k = loc.locate(pts, k=k)
        np.testing.assert_array_equal(face_k, face)
        np.testing.assert_allclose(w_k, w, atol=1e-14)
    face_o, w_o = locate(pts, v, f)
    np.testing.assert_array_equal(face_o, face)


def test_real_164k_mesh(atlases, load_surface):
    """All 163842 vertices of the fsaverage mesh registered to fsLR, located in the fsLR sphere."""
    v, f = load_surface(atlases / "fsaverage.L_LR.spherical_std.164k_fs_LR.surf.gii")
    pts, _ = load_surface(atlases / "fs_L" / "fs_L-to-fs_LR_fsaverage.L_LR.spherical_std.164k_fs_L.surf.gii")
    face, w = SphereLocator(v, f).locate(pts)
    _check_located(pts, v, f, face, w)
    # The mesh's own vertices: weight 1 on themselves.
    face, w = SphereLocator(v, f).locate(v[::7])
    own = f[face] == np.arange(0, len(v), 7)[:, None]
    np.testing.assert_allclose(w[own], 1.0, atol=1e-9)


def test_near_vertices_give_the_same_location_without_a_tree():
    """``near`` (a vertex near each point) screens its fan instead of querying the k-d tree: the same
    faces and weights; wrong or missing (-1) vertices fall back to the search, and a locator that
    needed none never builds its tree."""
    v, f = _jittered_mesh(4, 3)
    pts = _random_directions(3000, 4)
    ref_face, ref_w = SphereLocator(v, f).locate(pts)
    loc = SphereLocator(v, f)
    exact = f[ref_face, 0]  # a corner of the containing face: its fan holds the point
    face, w = loc.locate(pts, near=exact)
    np.testing.assert_array_equal(face, ref_face)
    np.testing.assert_allclose(w, ref_w, atol=1e-12)
    assert loc._kdtree is None
    rng = np.random.default_rng(5)
    rough = np.where(rng.random(len(pts)) < 0.2, rng.integers(-1, len(v), len(pts)), exact)
    face, w = loc.locate(pts, near=rough)
    np.testing.assert_array_equal(face, ref_face)
    np.testing.assert_allclose(w, ref_w, atol=1e-12)
    with pytest.raises(ValueError, match="near"):
        loc.locate(pts, near=exact[:10])


def test_near_points_within_float32_rounding_of_their_vertex_need_no_tree():
    """Points 1e-8 from their ``near`` vertex (an optimiser's grid in float32) sit closer to it than
    float32 can tell, so the float32 screen misses about half of them: the fan is screened again
    in float64, and the k-d tree is never built. The same faces as the search without ``near``."""
    v, f = icosphere(5)
    v = np.asarray(v, dtype=np.float64)
    rng = np.random.default_rng(6)
    pts = unit(unit(v) + rng.normal(scale=1e-8, size=v.shape))
    loc = SphereLocator(v, f)
    raw32 = loc._screen(pts, loc.fans)[2]
    assert np.mean(raw32 < -1e-12) > 0.2  # the case this guards: float32 alone misses many
    face, w = loc.locate(pts, near=np.arange(len(v)))
    assert loc._kdtree is None
    ref_face, ref_w = SphereLocator(v, f).locate(pts)
    np.testing.assert_array_equal(face, ref_face)
    np.testing.assert_allclose(w, ref_w, atol=1e-12)


def test_best_candidate_matches_the_full_barycentric_division():
    """``_best`` divides out only the chosen face's weights: the same face, weights and score, bit for
    bit, as dividing every candidate's (NaN points and faces seen edge-on included)."""
    v, f = _jittered_mesh(3, 8)
    loc = SphereLocator(v, f)
    rng = np.random.default_rng(9)
    pts = np.concatenate([_random_directions(2000, 10), unit(v[f[:500, 0]]) + 1e-12])
    pts[:5] = np.nan
    cand = rng.integers(0, len(f), (len(pts), 7))
    raw = np.einsum("nkij,nj->nki", loc._normals.take(cand, axis=0), pts)
    total = raw.sum(axis=2, keepdims=True)
    ok = total[..., 0] > 0
    bary = raw / np.where(ok[..., None], total, 1.0)
    score = np.where(ok, bary.min(axis=2), -np.inf)
    pick = np.argmax(score, axis=1)
    rows = np.arange(len(pts))
    face, w, s = loc._best(pts, cand)
    np.testing.assert_array_equal(face, cand[rows, pick])
    np.testing.assert_array_equal(w, bary[rows, pick])
    np.testing.assert_array_equal(s, score[rows, pick])


def test_face_neighbours_share_the_opposite_edge():
    """Each face's neighbour across the edge opposite corner i holds that edge's two corners and
    names the face back; an edge without a second face (a hole) gives -1."""
    v, f = _jittered_mesh(3, 1)
    nb = face_neighbours(f)
    assert nb.shape == f.shape and nb.dtype == np.int64 and nb.min() >= 0
    for i in range(3):
        edge = np.sort(f[:, [(i + 1) % 3, (i + 2) % 3]], axis=1)
        other = f[nb[:, i]]
        assert np.all((other[:, :, None] == edge[:, None, :]).any(1).all(1))
        assert np.all(nb[:, i] != np.arange(len(f)))
        assert np.all((nb[nb[:, i]] == np.arange(len(f))[:, None]).any(1))
    holed = face_neighbours(f[1:])
    assert (holed == -1).sum() == 3


def test_a_walk_from_a_hint_gives_the_same_location():
    """Points hinted a few triangles away (or anywhere) walk to their face: the same faces and
    weights as the search without a hint, on an irregular mesh; a mesh with a hole still finds
    every point (walks that reach the hole fall back to the search)."""
    v, f = _jittered_mesh(4, 3)
    pts = _random_directions(4000, 6)
    ref_face, ref_w = SphereLocator(v, f).locate(pts)
    nb = face_neighbours(f)
    rng = np.random.default_rng(7)
    hint = ref_face.copy()
    for _ in range(3):  # three random steps away from the containing face
        hint = nb[hint, rng.integers(0, 3, len(hint))]
    for h in (hint, rng.integers(0, len(f), len(pts))):
        loc = SphereLocator(v, f)
        face, w = loc.locate(pts, hint=h, walk=8)
        np.testing.assert_array_equal(face, ref_face)
        np.testing.assert_allclose(w, ref_w, atol=1e-12)
    near = SphereLocator(v, f)
    near.locate(pts, hint=hint, walk=8)
    assert near._kdtree is None  # a few steps away: found by walking, no search
    outside_hole = ref_face != 0
    face, w = SphereLocator(v, f[1:]).locate(pts[outside_hole], hint=np.clip(hint[outside_hole] - 1, 0, None),
                                              walk=8)
    np.testing.assert_array_equal(face, ref_face[outside_hole] - 1)
    np.testing.assert_allclose(w, ref_w[outside_hole], atol=1e-12)


def test_far_hints_give_the_hinted_result_bit_for_bit():
    """``far`` searches first and screens the hint's corner fans only where they could hold the
    point: the same faces and the same bits as the hinted search, for points at their hint, one or
    several triangles away, and on vertices and edge midpoints (a uv sphere's wide polar fans too)."""
    for v, f in (_jittered_mesh(4, 5), _uv_sphere(12, 40)):
        loc = SphereLocator(v, f)
        u = unit(v)
        pts = np.concatenate([_random_directions(3000, 8), u[f[:200, 0]], unit(u[f[:200, 0]] + u[f[:200, 1]])])
        start, _ = loc.locate(pts)
        nb = face_neighbours(f)
        rng = np.random.default_rng(9)
        # 0-3 triangles away, a quarter of the points each (97 % found around the hint's corners:
        # the sample sends far to the hinted search); then 70 % of them hinted with the face of a
        # point 20 deg away, the others 0-1 triangle away (the far search)
        far_faces, _ = loc.locate(pts @ rotation_matrix(np.array([0.3, -0.5, 0.8]), 20.0).T)
        for chances, away, searched in (((0.25, 0.5, 0.75), 0.0, False), ((0.7,), 0.7, True)):
            hint = start.copy()
            for chance in chances:
                moved = rng.random(len(hint)) < chance
                hint[moved] = np.maximum(nb[hint[moved], rng.integers(0, 3, int(moved.sum()))], 0)
            jump = rng.random(len(hint)) < away
            hint[jump] = far_faces[jump]
            ref = SphereLocator(v, f).locate(pts, hint=hint)
            loc = SphereLocator(v, f)
            calls = []
            far_search = loc._locate_far
            loc._locate_far = lambda *a: calls.append(len(a[3])) or far_search(*a)
            got = loc.locate(pts, hint=hint, far=True)
            np.testing.assert_array_equal(got[0], ref[0])
            np.testing.assert_array_equal(got[1], ref[1])
            assert bool(calls) == searched  # the far search only where most points left their hint


def test_exact_starts_give_the_faces_of_the_search_without_them():
    """``exact`` keeps a point where its start (``near`` vertex or walked ``hint``) found it only
    when it is clear of every edge: the faces of the search without a start, for points at their
    own vertex, a few triangles away, on vertices and on edge midpoints; the weights to rounding.
    The ico grid's own fans hold most of a small warp's points (the search is left the rest)."""
    for v, f in (_jittered_mesh(4, 5), _uv_sphere(12, 40)):
        u = unit(v)
        rng = np.random.default_rng(11)
        own = np.concatenate([rng.integers(0, len(v), 3000), f[:200, 0], f[:200, 0]])
        pts = u[own] + rng.normal(scale=0.02, size=(len(own), 3)) * (np.arange(len(own)) < 3000)[:, None]
        pts[3200:] = unit(u[f[:200, 0]] + u[f[:200, 1]])  # edge midpoints
        pts[3000:3100] *= 37.0  # any radius
        ref_face, ref_w = SphereLocator(v, f).locate(pts)
        hint = SphereLocator(v, f).fans[own, 0]
        for kw in ({"near": own}, {"hint": hint, "walk": 8}, {"hint": hint}):
            loc = SphereLocator(v, f)
            face, w = loc.locate(pts, exact=True, **kw)
            edge = ref_w.min(axis=1) < 1e-9  # on an edge: either face, the same point
            np.testing.assert_array_equal(face[~edge], ref_face[~edge])
            np.testing.assert_allclose(w[~edge], ref_w[~edge], rtol=0, atol=1e-12)
            same = (loc.vertices[loc.faces[face]] * w[:, :, None]).sum(1)
            np.testing.assert_allclose(same, (loc.vertices[loc.faces[ref_face]] * ref_w[:, :, None]).sum(1), atol=1e-12)
    v, f = icosphere(3)
    pts = unit(v) + np.random.default_rng(3).normal(scale=1e-3, size=v.shape)
    loc = SphereLocator(v, f)
    assert (loc.locate(pts, near=np.arange(len(v)), exact=True)[0] == locate(pts, v, f)[0]).all()
    with pytest.raises(ValueError, match="near must hold"):
        loc.locate(pts, near=np.arange(len(v)) - 1, exact=True)


def test_vertex_faces_list_each_vertex_faces_once_in_order():
    v, f = icosphere(2)
    f = np.asarray(f)
    indptr, indices = vertex_faces(f, len(v))
    assert indptr[-1] == f.size and indices.dtype == np.int32
    for i in (0, 7, 41, len(v) - 1):
        np.testing.assert_array_equal(indices[indptr[i]:indptr[i + 1]], np.flatnonzero((f == i).any(axis=1)))
    np.testing.assert_array_equal(vertex_fans(f, len(v), (indptr, indices)), vertex_fans(f, len(v)))
    loc = SphereLocator(v, f)
    for got, want in zip(loc.faces_around, (indptr, indices)):
        np.testing.assert_array_equal(got, want)
    shared = SphereLocator(v, f, loc.fans)                      # fans given: built on first use
    np.testing.assert_array_equal(shared.faces_around[1], indices)
    twice = f.copy()
    twice[0] = [twice[0, 0], twice[0, 0], twice[0, 2]]          # names vertex twice[0, 0] twice
    ip2, ix2 = vertex_faces(twice, len(v))
    assert ip2[-1] == f.size - 1
    assert list(ix2[ip2[twice[0, 0]]:ip2[twice[0, 0] + 1]]).count(0) == 1


def test_a_face_whose_corners_coincide_never_holds_a_point():
    """A face whose three corners lie at one position has weights (0, 0, 0) for every point: the
    fallback search counted that as inside (its smallest weight, 0, is >= 0), and a point at that
    position came back with NaN weights (0 / 0). Round twenty-six: the real face around it."""
    v, f = icosphere(2)
    n = len(v)
    v = np.concatenate([v, v[[0, 0]]])  # two copies of vertex 0
    f = np.concatenate([[[0, n, n + 1]], f])  # face 0: collapsed onto vertex 0, first in its fan
    points = np.concatenate([v[[0]], v[[0]] * 0.5, unit(v[[0]] + 1e-9)])
    loc = SphereLocator(v, f)
    for kw in ({}, {"hint": np.zeros(3, int)}, {"hint": np.zeros(3, int), "far": True},
               {"hint": np.zeros(3, int), "exact": True}, {"near": np.zeros(3, int)},
               {"near": np.zeros(3, int), "exact": True}):
        face, w = loc.locate(points, **kw)
        assert np.all(np.isfinite(w)) and np.all(face > 0), kw
        np.testing.assert_allclose(w.sum(axis=1), 1.0)
        # the face holds the point: its weights reproduce it
        at = unit(np.einsum("nk,nkd->nd", w, unit(v)[f[face]]))
        np.testing.assert_allclose(at, unit(points), atol=1e-9)


def _fan_closed_icosphere(level: int, cap_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An icosphere whose faces within ``cap_deg`` of a direction are replaced by a fan of long
    slivers from one new vertex there (a cut-out medial wall closed by a fan), the vertices inside
    dropped: (vertices, faces, the cap's direction)."""
    v, f = icosphere(level)
    u = unit(v)
    c = unit(np.array([1.0, 0.2, 0.1]))
    f = f[unit(u[f].sum(axis=1)) @ c < np.cos(np.radians(cap_deg))]
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    key = e[:, 0] * len(v) + e[:, 1]
    border = e[~np.isin(e[:, 1] * len(v) + e[:, 0], key)]  # edges whose twin was dropped
    f = np.concatenate([f, np.column_stack([border[:, 1], border[:, 0], np.full(len(border), len(v))])])
    used = np.unique(f)
    remap = np.full(len(v) + 1, -1)
    remap[used] = np.arange(len(used))
    return np.concatenate([u, c[None]])[used], remap[f], c


def test_a_point_in_a_fan_of_slivers_is_found_in_its_face():
    """Round twenty-six: a vertex of more than 12 faces (here 181 slivers closing a hole, as a mesh
    whose medial wall was cut out and closed by a fan) keeps 12 in the candidate table; a point
    in a sliver whose corners are all far from it was in no fan of its 64 nearest vertices and got
    the best face that did not hold it (clipped weights: a value from elsewhere; 2 of these 21,951
    points). It is walked to."""
    v, f, c = _fan_closed_icosphere(6, 25.0)
    assert np.bincount(f.ravel()).max() > 180
    rng = np.random.default_rng(5)
    points = unit(c + rng.normal(size=(40000, 3)) * 0.35)
    points = points[points @ c > np.cos(np.radians(24.5))]
    loc = SphereLocator(v, f)
    for kw in ({}, {"near": np.full(len(points), len(v) - 1)},
               {"hint": np.zeros(len(points), int), "far": True}):
        face, w = loc.locate(points, **kw)
        _, score = loc._weights(face, points)
        assert np.all(score >= -1e-12), kw
        np.testing.assert_allclose(unit(np.einsum("nk,nkd->nd", w, v[f[face]])), points, atol=1e-9)


def test_far_and_near_with_nothing_to_screen_give_the_search_without_them():
    """Round twenty-six: ``far`` when no point left its hint for a face around the hint's corners (a
    warp that moved every point far), and ``near`` all -1, screened an empty selection, which
    raised `ValueError: cannot reshape array of size 0 into shape (0,newaxis,3)`."""
    v, f = icosphere(3)
    loc = SphereLocator(v, f)
    points = _random_directions(50, 0)
    hint = np.zeros(50, dtype=int)
    face, w = loc.locate(points, hint=hint)
    far_face, far_w = loc.locate(points, hint=hint, far=True)
    assert np.array_equal(far_face, face) and np.array_equal(far_w, w)
    plain = loc.locate(points)
    near = loc.locate(points, near=np.full(50, -1))
    assert np.array_equal(near[0], plain[0])
    np.testing.assert_allclose(near[1], plain[1], rtol=0, atol=1e-12)  # the points normalised once more
    assert loc.locate(points[:0])[0].shape == (0,)


def test_search_within_the_longest_edge_finds_the_same_nearest_vertices():
    """A large search queries the k-d tree within the mesh's longest edge, and again without it for
    the points with no vertex that near: the same nearest vertex as the plain query, ties (an
    icosphere's edge midpoints and face centres) included, and the same location."""
    v, f = _jittered_mesh(3, seed=4)
    loc = SphereLocator(v, f)
    u = unit(v)
    chords = np.linalg.norm(u[f] - u[np.roll(f, 1, axis=1)], axis=2)
    assert loc._longest_edge() == pytest.approx(chords.max(), rel=1e-12)
    ico = SphereLocator(*icosphere(3))
    fine = unit(np.asarray(icosphere(5)[0], dtype=np.float64))  # midpoints: two vertices equally near
    for locator, points in ((loc, _random_directions(4000, seed=5)), (ico, fine)):
        plain = locator._tree.query(points, k=1, workers=1)[1]
        for reach in (locator._longest_edge(), 0.05 * locator._longest_edge()):  # the second: most searched again
            got = locator._candidates(points, 1, reach)
            np.testing.assert_array_equal(got, locator._fans[plain])
        face, w = locator.locate(points)
        assert len(points) >= len(locator.vertices)  # the search within the longest edge ran
        face0 = np.empty_like(face)
        w0 = np.empty_like(w)
        face0[:], w0[:] = locator._locate_chunk(unit(points), 1)  # without it (locate projects the points first)
        np.testing.assert_array_equal(face, face0)
        np.testing.assert_array_equal(w, w0)


def test_norms_and_unit_are_numpys_to_the_last_bit():
    """row_norms adds the three squares in np.linalg.norm's order: the same lengths, bit for bit,
    on rows of every scale (and NaN, inf and zero rows), so unit() keeps its bits; other shapes too."""
    from geomorph_bids.sphere.mesh import row_norms as norms

    rng = np.random.default_rng(12)
    p = rng.normal(size=(200_000, 3)) * 10.0 ** rng.uniform(-150, 150, size=(200_000, 1))
    p[:3] = [[0.0, 0.0, 0.0], [np.nan, 1.0, 2.0], [np.inf, 0.0, 1.0]]
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        np.testing.assert_array_equal(norms(p), np.linalg.norm(p, axis=1))
        norm = np.linalg.norm(p, axis=-1, keepdims=True)
        np.testing.assert_array_equal(unit(p), p / np.where(norm > 0, norm, 1.0))
    for q in (rng.normal(size=(4, 5, 3)), rng.normal(size=3)):  # any leading shape, one point too
        np.testing.assert_array_equal(norms(q), np.linalg.norm(q, axis=-1))
        np.testing.assert_array_equal(unit(q), q / np.linalg.norm(q, axis=-1, keepdims=True))
    flat = rng.normal(size=(7, 2))  # not 3-D: numpy's norm
    np.testing.assert_array_equal(unit(flat), flat / np.linalg.norm(flat, axis=-1, keepdims=True))


def test_the_angle_between_directions_is_one_function():
    """``angular_error_deg`` was written twice in numpy (engine.synth for (..., 3), engine.real_pairs
    for (N, 3)): one now, in the sphere package, that both engine modules name."""
    from geomorph_bids.engine import real_pairs, synth
    from geomorph_bids.sphere.locate import angular_error_deg

    assert synth.angular_error_deg is real_pairs.angular_error_deg is angular_error_deg
    a = np.array([[100.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    b = np.array([[0.0, 5.0, 0.0], [1.0, 1e-9, 0.0], [0.0, 0.0, -1.0]])
    got = angular_error_deg(a, b)
    assert got.shape == (3,) and got.dtype == np.float64
    np.testing.assert_allclose(got, [90.0, np.degrees(1e-9), 180.0], rtol=1e-12)
    assert angular_error_deg(a[None], b[None]).shape == (1, 3)  # any leading shape

"""Tests for geomorph_bids.sphere.distortion against wb_command and known warps."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from geomorph_bids.sphere.distortion import (
    areal_distortion,
    caret5_areal_distortion,
    distortion,
    distortion_summary,
    edge_distortion,
    folded_triangles,
    local_affine_distortion,
)


# ---------------------------------------------------------------- helpers

def _ico(level: int, radius: float = 100.0) -> tuple[np.ndarray, np.ndarray]:
    """Tiny subdivided icosahedron, outward (counter-clockwise) winding."""
    t = (1.0 + 5 ** 0.5) / 2.0
    v = np.array([[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0],
                  [0, -1, t], [0, 1, t], [0, -1, -t], [0, 1, -t],
                  [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]], dtype=float)
    f = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11],
                  [1, 5, 9], [5, 11, 4], [11, 10, 2], [10, 7, 6], [7, 1, 8],
                  [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9],
                  [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]])
    verts = list(v / np.linalg.norm(v, axis=1, keepdims=True))
    for _ in range(level):
        mid: dict[tuple[int, int], int] = {}

        def m(i: int, j: int) -> int:
            key = (min(i, j), max(i, j))
            if key not in mid:
                p = verts[i] + verts[j]
                verts.append(p / np.linalg.norm(p))
                mid[key] = len(verts) - 1
            return mid[key]

        new = []
        for a, b, c in f:
            ab, bc, ca = m(a, b), m(b, c), m(c, a)
            new += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
        f = np.array(new)
    v = np.array(verts) * radius
    assert np.all(np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])) > 0)
    return v, f.astype(np.int64)


def _rotation(seed: int = 0) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _smooth_warp(v: np.ndarray, amount: float = 0.25) -> np.ndarray:
    """A smooth tangential-ish warp that keeps points on the sphere of the same radius."""
    r = np.linalg.norm(v, axis=1, keepdims=True)
    u = v / r
    w = u + amount * np.column_stack([np.sin(2 * u[:, 1]), np.cos(3 * u[:, 2]),
                                      np.sin(u[:, 0] + 2 * u[:, 2])])
    return r * w / np.linalg.norm(w, axis=1, keepdims=True)


def _write_surface(path, vertices: np.ndarray, faces: np.ndarray) -> None:
    img = nib.GiftiImage()
    img.add_gifti_data_array(nib.gifti.GiftiDataArray(
        vertices.astype(np.float32), intent="NIFTI_INTENT_POINTSET", datatype="NIFTI_TYPE_FLOAT32"))
    img.add_gifti_data_array(nib.gifti.GiftiDataArray(
        faces.astype(np.int32), intent="NIFTI_INTENT_TRIANGLE", datatype="NIFTI_TYPE_INT32"))
    nib.save(img, str(path))


def _wb_distortion(wb_command, tmp_path, ref_path, dist_path, tag: str, *options: str) -> list[np.ndarray]:
    out = tmp_path / f"{tag}.func.gii"
    wb_command("-surface-distortion", ref_path, dist_path, out, *options)
    return [np.asarray(d.data, dtype=np.float64) for d in nib.load(str(out)).darrays]


def _assert_close(ours: np.ndarray, theirs: np.ndarray, max_abs: float) -> None:
    assert ours.shape == theirs.shape
    assert np.all(np.isfinite(ours))
    assert np.corrcoef(ours, theirs)[0, 1] > 0.999999
    assert np.abs(ours - theirs).max() < max_abs


# ---------------------------------------------------------------- wb_command

@pytest.mark.wb
def test_matches_wb_command_fsaverage_to_fslr_164k(atlases, load_surface, wb_command, tmp_path):
    # fsaverage 164k sphere (reference) vs the same mesh deformed into fs_LR space.
    # Measured: max |diff| areal 4.1e-7, J 3.6e-7, R 9.5e-5, edge 1.4e-7, caret5 1.8e-7;
    # all correlations > 1 - 1e-10 (Workbench works in float32, we in float64).
    ref = atlases / "fs_L" / "fsaverage.L.sphere.164k_fs_L.surf.gii"
    dist = atlases / "fs_L" / "fs_L-to-fs_LR_fsaverage.L_LR.spherical_std.164k_fs_L.surf.gii"
    before, after = load_surface(ref), load_surface(dist)
    d = distortion(before, after)

    (wb_areal,) = _wb_distortion(wb_command, tmp_path, ref, dist, "areal")
    wb_j, wb_r = _wb_distortion(wb_command, tmp_path, ref, dist, "affine",
                                "-local-affine-method", "-log2")
    (wb_edge,) = _wb_distortion(wb_command, tmp_path, ref, dist, "edge", "-edge-method")
    (wb_c5,) = _wb_distortion(wb_command, tmp_path, ref, dist, "caret5", "-caret5-method")

    _assert_close(d["areal"], wb_areal, 2e-6)
    _assert_close(d["J"], wb_j, 2e-6)
    _assert_close(d["R"], wb_r, 5e-4)   # wb's float32 sqrt(I1^2 - 4) is noisy near R = 1
    _assert_close(d["edge"], wb_edge, 1e-6)
    _assert_close(caret5_areal_distortion(before, after), wb_c5, 1e-6)
    # the fsaverage -> fs_LR deformation is a real, non-trivial and fold-free warp
    assert 0.05 < np.abs(d["areal"]).mean() < 0.2
    assert d["folded"].size == 0
    s = distortion_summary(d)
    assert s["n_folded"] == 0 and s["folded_fraction"] == 0 and s["n_nonfinite"] == 0
    assert s["areal_mean_abs"] == pytest.approx(np.abs(wb_areal).mean(), abs=1e-6)
    assert s["R_mean"] == pytest.approx(wb_r.mean(), abs=1e-5)


@pytest.mark.wb
def test_matches_wb_command_icosphere_warp_and_radius(wb_command, tmp_path):
    # reference radius 100, distorted radius 1 (raw comparison, as Workbench), plus one
    # vertex pushed across its neighbour so a few triangles fold
    v, f = _ico(3, radius=100.0)
    w = _smooth_warp(v) / 100.0
    nb = f[np.any(f == 7, axis=1)]
    j_nb = int(nb[nb != 7][0])
    w[7] = w[j_nb] + 0.5 * (w[j_nb] - w[7])  # push vertex 7 beyond its neighbour
    w[7] /= np.linalg.norm(w[7])
    ref, dist = tmp_path / "ref.surf.gii", tmp_path / "dist.surf.gii"
    _write_surface(ref, v, f)
    _write_surface(dist, w, f)
    # compare with what wb_command read (float32 coordinates)
    before = (v.astype(np.float32), f)
    after = (w.astype(np.float32), f)
    d = distortion(before, after)
    assert d["folded"].size > 0

    (wb_areal,) = _wb_distortion(wb_command, tmp_path, ref, dist, "areal")
    wb_j, wb_r = _wb_distortion(wb_command, tmp_path, ref, dist, "affine",
                                "-local-affine-method", "-log2")
    wb_j_raw, wb_r_raw = _wb_distortion(wb_command, tmp_path, ref, dist, "affine_raw",
                                        "-local-affine-method")
    (wb_edge,) = _wb_distortion(wb_command, tmp_path, ref, dist, "edge", "-edge-method")
    (wb_c5,) = _wb_distortion(wb_command, tmp_path, ref, dist, "caret5", "-caret5-method")

    assert np.abs(wb_areal).mean() > 13.0  # log2(1e-4) = -13.29 dominates: raw radii
    _assert_close(d["areal"], wb_areal, 1e-5)
    _assert_close(d["J"], wb_j, 1e-5)
    _assert_close(d["R"], wb_r, 1e-3)
    _assert_close(d["edge"], wb_edge, 1e-5)
    _assert_close(caret5_areal_distortion(before, after), wb_c5, 1e-5)
    j_raw, r_raw = local_affine_distortion(before, after, log2=False)
    assert np.abs(j_raw / wb_j_raw - 1).max() < 1e-5
    assert np.abs(r_raw / wb_r_raw - 1).max() < 1e-3


# ---------------------------------------------------------------- known warps

def test_rotation_has_zero_distortion():
    v, f = _ico(3)
    d = distortion((v, f), (v @ _rotation(1).T, f))
    for key in ("areal", "J", "R", "edge"):
        assert d[key].shape == (len(v),) and d[key].dtype == np.float64
        assert np.abs(d[key]).max() < 1e-9, key
    assert d["folded"].dtype == np.int64 and d["folded"].size == 0
    identity = distortion((v, f), (v.copy(), f))
    assert max(np.abs(identity[k]).max() for k in ("areal", "J", "R", "edge")) == 0.0
    assert identity["folded"].size == 0


def test_uniform_scaling_by_two():
    v, f = _ico(2, radius=1.0)
    d = distortion((v, f), (2.0 * v, f))
    np.testing.assert_allclose(d["areal"], 2.0, atol=1e-12)   # area x4 = 2 log2 units
    np.testing.assert_allclose(d["J"], 2.0, atol=1e-12)
    np.testing.assert_allclose(d["R"], 0.0, atol=1e-7)
    np.testing.assert_allclose(d["edge"], 1.0, atol=1e-12)    # lengths x2
    assert d["folded"].size == 0
    s = distortion_summary(d)
    assert s["areal_mean_abs"] == pytest.approx(2.0) and s["areal_max_abs"] == pytest.approx(2.0)
    assert s["J_mean_abs"] == pytest.approx(2.0) and s["R_mean"] == pytest.approx(0.0, abs=1e-7)
    assert s["edge_mean"] == pytest.approx(1.0) and s["folded_fraction"] == 0.0


def test_normalise_radius_removes_radius_difference():
    v, f = _ico(3, radius=100.0)
    small = (v @ _rotation(2).T) / 100.0
    raw = distortion((v, f), (small, f))
    np.testing.assert_allclose(raw["areal"], np.log2(1e-4), atol=1e-9)
    np.testing.assert_allclose(raw["J"], np.log2(1e-4), atol=1e-9)
    np.testing.assert_allclose(raw["edge"], np.log2(100.0), atol=1e-9)
    norm = distortion((v, f), (small, f), normalise_radius=True)
    for key in ("areal", "J", "R", "edge"):
        assert np.abs(norm[key]).max() < 1e-9, key
    # a warp of the small sphere: normalised = raw warp measured at equal radii
    a = areal_distortion((v, f), (_smooth_warp(v) / 100.0, f), normalise_radius=True)
    b = areal_distortion((v, f), (_smooth_warp(v), f))
    assert np.abs(a - b).max() < 1e-9 and np.abs(b).max() > 0.1
    j_a, r_a = local_affine_distortion((v, f), (_smooth_warp(v) / 3.0, f), normalise_radius=True)
    j_b, r_b = local_affine_distortion((v, f), (_smooth_warp(v), f))
    assert np.abs(j_a - j_b).max() < 1e-9 and np.abs(r_a - r_b).max() < 1e-9


def test_planar_stretch_known_anisotropy():
    # flat triangulated grid stretched by 2 along x: area x2, anisotropy 2 everywhere
    n = 6
    x, y = np.meshgrid(np.arange(n, dtype=float), np.arange(n, dtype=float), indexing="ij")
    v = np.column_stack([x.ravel(), y.ravel(), np.zeros(n * n)])
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, e = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    f = np.concatenate([np.column_stack([a, b, c]), np.column_stack([a, c, e])])
    w = v * [2.0, 1.0, 1.0]
    d = distortion((v, f), (w, f))
    np.testing.assert_allclose(d["areal"], 1.0, atol=1e-12)
    np.testing.assert_allclose(d["J"], 1.0, atol=1e-12)
    np.testing.assert_allclose(d["R"], 1.0, atol=1e-12)
    # edge: brute-force mean over each vertex's neighbours
    expected = np.zeros(len(v))
    for i in range(len(v)):
        nbrs = set(f[np.any(f == i, axis=1)].ravel()) - {i}
        expected[i] = np.mean([abs(np.log2(np.linalg.norm(w[j] - w[i]) / np.linalg.norm(v[j] - v[i])))
                               for j in nbrs])
    np.testing.assert_allclose(d["edge"], expected, atol=1e-12)
    # interior vertex: neighbours +-x (x2: 1), +-y (0), +-(1, 1) (sqrt2 -> sqrt5)
    interior = idx[2, 2]
    assert d["edge"][interior] == pytest.approx((2.0 + np.log2(2.5)) / 6.0, abs=1e-12)


def test_local_affine_random_triangle_matches_svd():
    # J and R of single random triangles against an independent least-squares 3-D affine
    rng = np.random.default_rng(3)
    for _ in range(20):
        p = rng.normal(size=(3, 3))
        m = rng.normal(size=(3, 3))
        q = p @ m.T + rng.normal(size=3)
        f = np.array([[0, 1, 2]])
        j, r = local_affine_distortion((p, f), (q, f), log2=False)
        # the map restricted to the triangle's plane: singular values of M on span(edges)
        basis, _ = np.linalg.qr(np.column_stack([p[1] - p[0], p[2] - p[0]]))
        s = np.linalg.svd(m @ basis, compute_uv=False)
        np.testing.assert_allclose(j, s[0] * s[1], rtol=1e-10)
        np.testing.assert_allclose(r, s[0] / s[1], rtol=1e-8)


# ---------------------------------------------------------------- folds

def _flipped_brute_force(v0: np.ndarray, v1: np.ndarray, f: np.ndarray) -> np.ndarray:
    out = []
    c0, c1 = v0.mean(axis=0), v1.mean(axis=0)
    for k, (a, b, c) in enumerate(f):
        s0 = np.linalg.det(np.array([v0[a] - c0, v0[b] - v0[a], v0[c] - v0[a]]))
        s1 = np.linalg.det(np.array([v1[a] - c1, v1[b] - v1[a], v1[c] - v1[a]]))
        if np.sign(s0) != np.sign(s1):
            out.append(k)
    return np.array(out, dtype=np.int64)


def test_mirror_folds_every_triangle():
    v, f = _ico(2)
    d = distortion((v, f), (v * [-1.0, 1.0, 1.0], f))
    np.testing.assert_array_equal(d["folded"], np.arange(len(f)))
    summary = distortion_summary(d)
    assert summary["folded_fraction"] == 1.0
    # counts are whole numbers (a metrics JSON said "n_nonfinite": 0.0)
    assert summary["n_folded"] == len(f) and type(summary["n_folded"]) is int and type(summary["n_nonfinite"]) is int
    np.testing.assert_allclose(d["areal"], 0.0, atol=1e-12)  # areas unchanged: folds are separate


def test_swapped_vertices_fold_exactly():
    v, f = _ico(3)
    i, j = f[10, 0], f[10, 1]   # the two ends of an edge
    w = v.copy()
    w[[i, j]] = w[[j, i]]
    folded = folded_triangles((v, f), (w, f))
    expected = _flipped_brute_force(v, w, f)
    np.testing.assert_array_equal(folded, expected)
    sharing = np.flatnonzero(np.isin(f, [i, j]).sum(axis=1) == 2)
    assert len(sharing) == 2 and set(sharing) <= set(folded.tolist())
    assert set(folded.tolist()) <= set(np.flatnonzero(np.isin(f, [i, j]).any(axis=1)).tolist())


def test_vertex_pushed_across_neighbours_folds_exactly():
    v, f = _ico(3)
    i = 50
    ring = f[np.any(f == i, axis=1)]
    j = int(ring[ring != i][0])
    w = v.copy()
    p = v[j] + 0.8 * (v[j] - v[i])       # beyond neighbour j, back onto the sphere
    w[i] = p / np.linalg.norm(p) * 100.0
    folded = folded_triangles((v, f), (w, f))
    np.testing.assert_array_equal(folded, _flipped_brute_force(v, w, f))
    assert folded.size >= 2
    assert np.all(np.any(f[folded] == i, axis=1))   # only triangles around the moved vertex


# ---------------------------------------------------------------- validation

def test_mismatched_inputs_raise():
    v, f = _ico(1)
    v2, f2 = _ico(2)
    with pytest.raises(ValueError, match="vertex count"):
        distortion((v, f), (v2, f2))
    g = f.copy()
    g[3] = g[3, ::-1]
    with pytest.raises(ValueError, match="identical faces"):
        distortion((v, f), (v, g))
    with pytest.raises(ValueError, match="identical faces"):
        distortion((v, f), (v, f[:-1]))
    with pytest.raises(ValueError, match=r"\(V, 3\)"):
        distortion((v[:, :2], f), (v[:, :2], f))
    bad = f.copy()
    bad[0, 0] = len(v)
    with pytest.raises(ValueError, match="face indices"):
        edge_distortion((v, bad), (v, bad))


def test_fused_distortion_equals_single_measures_with_boundary_and_degenerate():
    """distortion() computes every measure in one pass: it must equal the single-measure
    functions, also on an open mesh (boundary edges) with a degenerate and a folded triangle."""
    v, f = _ico(3)
    rng = np.random.default_rng(4)
    after = v + rng.normal(0.0, 1.5, v.shape)
    f = f[5:]                                   # an open mesh: the first triangles removed
    after[f[0, 1]] = after[f[0, 0]]             # one degenerate triangle after
    after[f[10]] = after[f[10][[0, 2, 1]]]      # swapped corners: folds around that face
    d = distortion((v, f), (after, f))
    np.testing.assert_array_equal(d["folded"], folded_triangles((v, f), (after, f)))
    j, r = local_affine_distortion((v, f), (after, f))
    for key, ref in (("areal", areal_distortion((v, f), (after, f))), ("J", j), ("R", r),
                     ("edge", edge_distortion((v, f), (after, f)))):
        np.testing.assert_allclose(d[key], ref, rtol=1e-12, atol=1e-12, equal_nan=True, err_msg=key)
    assert d["n_faces"] == len(f) and len(d["folded"]) >= 1


def test_faces_around_give_the_same_bits():
    """With the faces around each vertex (a locator's CSR), the per-vertex sums come from one
    sparse product: every measure equal to the last bit, also with an unused vertex (count 0),
    a degenerate and a folded triangle; ignored when a face names a vertex twice."""
    from geomorph_bids.sphere.locate import SphereLocator, vertex_faces

    v, f = _ico(3)
    rng = np.random.default_rng(7)
    after = v + rng.normal(0.0, 1.5, v.shape)
    f = f[5:]                                   # open: the first triangles' corners lose faces
    f = f[~(f == 0).any(axis=1)]                # vertex 0 in no triangle
    after[f[0, 1]] = after[f[0, 0]]             # one degenerate triangle after
    after[f[10]] = after[f[10][[0, 2, 1]]]      # a fold
    plain = distortion((v, f), (after, f))
    around = SphereLocator(v, f).faces_around
    assert around[0][1] == around[0][0]         # vertex 0: no faces
    fast = distortion((v, f), (after, f), faces_around=around)
    for key in ("areal", "J", "R", "edge", "folded"):
        np.testing.assert_array_equal(fast[key], plain[key], err_msg=key)
    twice = f.copy()
    twice[3, 2] = twice[3, 0]                   # a face naming a vertex twice: bincounts as before
    ref = distortion((v, twice), (after, twice))
    got = distortion((v, twice), (after, twice), faces_around=vertex_faces(twice, len(v)))
    for key in ("areal", "J", "R"):
        np.testing.assert_array_equal(got[key], ref[key], err_msg=key)


def test_a_reference_built_once_gives_the_same_bits():
    """distortion(Reference(before), after): the reference surface's frames, edges and edge lengths
    computed once (register() builds them beside the inverse warp, and reuses them after an unfold):
    every measure equal to the last bit, for two surfaces in turn, with faces_around, with the
    radius normalised and on an open mesh with a degenerate and a folded triangle."""
    from concurrent.futures import ThreadPoolExecutor

    from geomorph_bids.sphere.distortion import Reference
    from geomorph_bids.sphere.locate import vertex_faces

    v, f = _ico(3)
    rng = np.random.default_rng(11)
    f = f[5:]                                   # open: boundary edges
    ref = Reference((v, f))
    for scale in (1.0, 0.01):
        after = (v + rng.normal(0.0, 1.5, v.shape)) * scale
        after[f[0, 1]] = after[f[0, 0]]         # one degenerate triangle after
        after[f[10]] = after[f[10][[0, 2, 1]]]  # a fold
        for kwargs in ({}, {"faces_around": vertex_faces(f, len(v))}, {"normalise_radius": True}):
            plain = distortion((v, f), (after, f), **kwargs)
            given = distortion(ref, (after, f), **kwargs)
            with ThreadPoolExecutor(max_workers=1) as pool:  # the edges measured beside, either way
                beside = [distortion(ref, (after, f), worker=pool, **kwargs),
                          distortion((v, f), (after, f), worker=pool, **kwargs)]
            for key in ("areal", "J", "R", "edge", "folded"):
                np.testing.assert_array_equal(given[key], plain[key], err_msg=f"{key} {kwargs}")
                for other in beside:
                    np.testing.assert_array_equal(other[key], plain[key], err_msg=f"{key} {kwargs} worker")
            assert given["n_faces"] == plain["n_faces"]
    with pytest.raises(ValueError, match="identical faces"):
        distortion(ref, (v, f[:-1]))
    with pytest.raises(ValueError, match="vertex count"):
        distortion(ref, (v[:-1], f))


def test_orientation_signs_given_must_be_one_per_triangle():
    """Round twenty-six: ``before_sides`` / ``base_sides`` of another shape (a scalar "all outward",
    one sign) broadcast against every triangle: every unfolded triangle of the mesh counted as
    folded, silently (unfold_mesh: an IndexError). One line now; the right shape, the same answer."""
    from geomorph_bids.errors import InputError
    from geomorph_bids.sphere.distortion import folded_triangles, triangle_orientation
    from geomorph_bids.sphere.icosphere import icosphere
    from geomorph_bids.sphere.unfold import unfold_mesh

    v, f = icosphere(2)
    v = np.asarray(v)
    w = v.copy()
    w[0] = w[1] + (w[1] - w[0]) * 0.6  # vertex 0 past vertex 1: two triangles fold
    assert folded_triangles((v, f), (w, f)).tolist() == [2, 3]
    assert folded_triangles((v, f), (w, f), before_sides=triangle_orientation(v, f)).tolist() == [2, 3]
    for bad in (np.array([-1.0]), 1.0, np.ones(5)):
        with pytest.raises(InputError, match=r"before_sides must hold one orientation sign per triangle, shape \(320,\)"):
            folded_triangles((v, f), (w, f), before_sides=bad)
        with pytest.raises(InputError, match=r"base_sides must hold one orientation sign per triangle"):
            unfold_mesh(v, w, f, base_sides=bad)


def test_tensors_are_read_as_the_other_calls_read_them():
    """Twentieth session: a tensor that requires grad raised torch's ``Can't call numpy() on Tensor
    that requires grad``, one on 'meta' torch's ``can't convert meta device type tensor to numpy``."""
    import torch

    from geomorph_bids.errors import InputError
    from geomorph_bids.sphere.icosphere import icosphere

    v, f = icosphere(3)
    moved = np.asarray(v) * [1.0, 1.0, 1.2]
    plain = distortion((v, f), (moved, f))
    graded = distortion((torch.from_numpy(np.array(v)).requires_grad_(), torch.from_numpy(np.array(f))), (moved, f))
    np.testing.assert_array_equal(graded["areal"], plain["areal"])
    with pytest.raises(InputError, match=r"^distortion: after vertices is a torch tensor on the 'meta' device"):
        distortion((v, f), (torch.empty(moved.shape, device="meta"), f))

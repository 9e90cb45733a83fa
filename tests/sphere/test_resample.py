"""Metric and label resampling: exact properties on small icospheres, and Connectome
Workbench (wb_command -metric-resample / -label-resample) on real fsaverage and fsLR data."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from geomorph_bids.errors import InputError
from geomorph_bids.sphere.icosphere import icosphere
from geomorph_bids.sphere.locate import unit, vertex_fans
from geomorph_bids.sphere.mesh import vertex_areas
from geomorph_bids.sphere.resample import (apply_weights, area_surfaces, corner_weights, forward_needed, resample,
                                           resample_labels, resample_weights)


def _ico(level: int) -> tuple[np.ndarray, np.ndarray]:
    v, f = icosphere(level)
    return np.array(v, dtype=np.float64), np.array(f, dtype=np.int64)


def _rotated(mesh, angle=0.3):
    """The same mesh turned about an oblique axis: a mesh not nested in the original."""
    axis = unit(np.array([1.0, 2.0, 3.0]))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    return mesh[0] @ rot.T, mesh[1]


# ---------------------------------------------------------------- exact properties

def test_barycentric_exact_at_shared_vertices_and_midpoints():
    coarse, fine = _ico(2), _ico(3)
    x = np.random.default_rng(0).normal(size=len(coarse[0]))
    out = resample(x, coarse, fine)
    n = len(coarse[0])
    np.testing.assert_allclose(out[:n], x, atol=1e-12)  # nested: shared vertices copy exactly
    # every new vertex sits on a coarse edge midpoint: the mean of the edge's two ends
    w = resample_weights(coarse, fine)
    assert w.shape == (len(fine[0]), n)
    assert (w.getnnz(axis=1)[n:] == 2).all()
    np.testing.assert_allclose(w.data[w.data < 0.9], 0.5, atol=1e-12)


def test_barycentric_reproduces_linear_functions():
    current, new = _ico(3), _rotated(_ico(4))
    coords = unit(current[0])  # the linear functions x, y, z on the unit sphere
    out = resample(coords, current, new)  # multi-column: (V_new, 3)
    # interpolating x, y, z gives the central projection of each new vertex onto its triangle:
    # parallel to the new vertex, inside the sphere
    np.testing.assert_allclose(np.cross(out, unit(new[0])), 0.0, atol=1e-13)
    r = np.linalg.norm(out, axis=1)
    assert r.max() <= 1.0 + 1e-12 and r.min() > 0.98
    g = np.array([0.3, -1.2, 2.0])
    np.testing.assert_allclose(resample(coords @ g + 5.0, current, new), out @ g + 5.0, atol=1e-12)


@pytest.mark.parametrize("method", ["barycentric", "adap_bary_area"])
def test_constants_preserved_and_rows_sum_to_one(method):
    current, new = _ico(4), _rotated(_ico(2))
    w = resample_weights(current, new, method)
    np.testing.assert_allclose(np.asarray(w.sum(axis=1)).ravel(), 1.0, atol=1e-12)
    assert w.data.min() > 0
    np.testing.assert_allclose(resample(np.full(len(current[0]), 7.5), current, new, method), 7.5, atol=1e-12)


def test_adap_bary_area_uses_all_data_when_downsampling():
    current, new = _ico(4), _ico(2)
    bary = resample_weights(current, new, "barycentric")
    adap = resample_weights(current, new, "adap_bary_area")
    assert (bary.getnnz(axis=0) > 0).sum() == len(new[0])  # nested: plain subsampling
    assert (adap.getnnz(axis=0) > 0).all()  # every current vertex contributes
    # each current vertex hands out weight in proportion to its area: area-weighted means agree
    x = np.random.default_rng(1).normal(size=len(current[0]))
    a_cur, a_new = vertex_areas(*current), vertex_areas(*new)
    out = resample(x, current, new, "adap_bary_area")
    assert abs(a_new @ out / a_new.sum() - a_cur @ x / a_cur.sum()) < 0.01 * x.std()
    # ... and it smooths: less variance than subsampling
    assert out.std() < 0.5 * resample(x, current, new).std()


def test_adap_bary_area_identity_on_the_same_mesh():
    mesh = _ico(3)
    x = np.random.default_rng(2).normal(size=len(mesh[0]))
    np.testing.assert_allclose(resample(x, mesh, (mesh[0] * 3.0, mesh[1]), "adap_bary_area"), x, atol=1e-12)


def test_area_inputs_surface_or_array_and_radius_invariance():
    current, new = _ico(3), _rotated(_ico(2))
    rng = np.random.default_rng(3)
    bumpy = (current[0] * (1 + 0.2 * rng.random((len(current[0]), 1))), current[1])
    x = rng.normal(size=len(current[0]))
    from_surface = resample(x, current, new, "adap_bary_area", current_area=bumpy)
    from_array = resample(x, current, new, "adap_bary_area", current_area=vertex_areas(*bumpy),
                          new_area=5.0 * vertex_areas(*new))  # area units do not matter
    np.testing.assert_allclose(from_array, from_surface, atol=1e-12)
    plain = resample(x, current, new, "adap_bary_area")
    assert np.abs(plain - from_surface).max() > 1e-3  # the areas really were used
    # sphere radii do not matter, and may differ between the two spheres
    scaled = resample(x, (current[0] / 100.0, current[1]), (new[0] * 7.0, new[1]), "adap_bary_area")
    np.testing.assert_allclose(scaled, plain, atol=1e-12)


def test_forward_location_given_once_gives_the_same_weights_and_areas():
    """The new vertices located in the current sphere once (corner_weights) and handed to both
    area_surfaces and resample_weights: the same matrix and areas as locating them in each."""
    cur, new = _rotated(_ico(4)), _ico(3)
    mid = cur[0] * (1.0 + 0.1 * np.sin(cur[0][:, :1] / 20.0))
    forward = corner_weights(cur, new[0])
    own = area_surfaces(cur, mid, new)
    shared = area_surfaces(cur, mid, new, forward=forward)
    np.testing.assert_allclose(shared[1][0], own[1][0], rtol=1e-12, atol=1e-9)
    for method in ("barycentric", "adap_bary_area"):
        a = resample_weights(cur, new, method, own[0], own[1])
        b = resample_weights(cur, new, method, shared[0], shared[1], forward=forward)
        assert abs(a - b).max() < 1e-12 and a.nnz == b.nnz
    with pytest.raises(ValueError, match="forward"):
        resample_weights(cur, new, forward=(forward[0][:5], forward[1][:5]))


def test_forward_needed_counts_distinct_current_vertices():
    """A new vertex may keep its forward row only when at most 3 distinct current vertices reach
    it; a triangle naming a corner twice sends its current vertex there once."""
    corner = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [0, 1, 1], [0, 4, 4], [4, 1, 2]])
    keep = np.ones(corner.shape, dtype=bool)
    keep[5, 0] = False  # no weight: vertex 5 does not reach new vertex 4
    # distinct current vertices per new vertex: 0 <- 0,1,2,3,4 (5); 1 <- 0,1,3,5 (4); 2 <- 0,2,5 (3);
    # 3 <- 1,2 (2); 4 <- 4 (1, named twice); 5 <- none
    np.testing.assert_array_equal(forward_needed(corner, keep, 6), [False, False, True, True, True, True])


@pytest.mark.parametrize("levels", [(4, 2), (2, 4), (3, 3)])
def test_forward_located_only_where_needed_gives_the_same_matrix(levels):
    """adap_bary_area without ``forward`` locates only the new vertices that can keep their forward
    row (none when downsampling 4 -> 2, all when upsampling, some at one level): the same matrix,
    bit for bit, as locating every new vertex."""
    cur, new = _rotated(_ico(levels[0])), _ico(levels[1])
    r_corner, r_w = corner_weights(new, cur[0])
    need = forward_needed(r_corner, r_w > 0, len(new[0]))
    expected = {(4, 2): (0, 0), (2, 4): (len(new[0]), len(new[0]))}.get(levels, (1, len(new[0]) - 1))
    assert expected[0] <= need.sum() <= expected[1]
    full = resample_weights(cur, new, "adap_bary_area", forward=corner_weights(cur, new[0]))
    part = resample_weights(cur, new, "adap_bary_area")
    fans = resample_weights(cur, new, "adap_bary_area", current_fans=vertex_fans(cur[1], len(cur[0])))
    for name in ("data", "indices", "indptr"):
        np.testing.assert_array_equal(getattr(part, name), getattr(full, name))
        np.testing.assert_array_equal(getattr(fans, name), getattr(full, name))
    if need.any():  # a table that does not fit the current sphere is refused where it would be used
        with pytest.raises(ValueError, match="current_fans"):
            resample_weights(cur, new, "adap_bary_area", current_fans=vertex_fans(cur[1], len(cur[0]))[:-1])


@pytest.mark.parametrize("method", ["barycentric", "adap_bary_area"])
def test_nan_inputs_are_skipped(method):
    coarse, fine = _ico(2), _ico(3)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(len(coarse[0]), 2))
    x[:40, 0] = np.nan  # column 0 loses vertices 0..39, column 1 is complete
    out = resample(x, coarse, fine, method)
    w = resample_weights(coarse, fine, method).toarray()
    valid = ~np.isnan(x[:, 0])
    expect = np.where(w[:, valid].sum(axis=1) > 0,
                      w[:, valid] @ x[valid, 0] / np.where(w[:, valid].sum(axis=1) > 0, w[:, valid].sum(axis=1), 1),
                      np.nan)
    np.testing.assert_allclose(out[:, 0], expect, atol=1e-12)
    np.testing.assert_array_equal(np.isnan(out[:, 0]), w[:, valid].sum(axis=1) == 0)
    assert np.isnan(out[:, 0]).sum() >= 20  # outputs that only see NaNs stay NaN
    np.testing.assert_allclose(out[:, 1], resample(x[:, 1], coarse, fine, method), atol=1e-12)
    if method == "barycentric":  # an edge midpoint with one NaN end takes the other end
        weights = resample_weights(coarse, fine)
        one_nan = np.flatnonzero((weights[:, :40].getnnz(axis=1) == 1) & (weights.getnnz(axis=1) == 2))
        assert one_nan.size > 0
        other = weights[one_nan][:, 40:].tocsr()
        np.testing.assert_allclose(out[one_nan, 0], x[40:, 0][other.indices], atol=1e-12)


def test_dtypes_and_shapes():
    current, new = _ico(2), _ico(1)
    x = np.arange(len(current[0]))
    assert resample(x, current, new).dtype == np.float64
    assert resample(x.astype(np.float32), current, new).dtype == np.float32
    assert resample(x[:, None], current, new).shape == (len(new[0]), 1)
    w = resample_weights(current, new, "adap_bary_area")
    np.testing.assert_allclose(apply_weights(w, x), resample(x, current, new, "adap_bary_area"))


def test_validation_errors():
    current, new = _ico(2), _ico(1)
    with pytest.raises(ValueError, match="current sphere has 162"):
        resample(np.zeros(100), current, new)
    with pytest.raises(ValueError, match="vertices"):
        apply_weights(resample_weights(current, new), np.zeros((10, 2)))
    with pytest.raises(ValueError, match="method"):
        resample(np.zeros(162), current, new, method="cubic")
    with pytest.raises(ValueError, match="area"):
        resample(np.zeros(162), current, new, "adap_bary_area", current_area=np.ones(5))
    with pytest.raises(ValueError, match="not a sphere"):
        resample(np.zeros(162), (current[0] * np.linspace(1, 2, 162)[:, None], current[1]), new)
    with pytest.raises(ValueError, match="labels"):
        resample_labels(np.zeros(162), current, new)  # floats are not labels


def test_labels_small():
    current, new = _ico(3), _rotated(_ico(3), 0.05)
    labels = (np.arange(len(current[0])) % 5).astype(np.int16) * 10
    same = resample_labels(labels, current, current)
    np.testing.assert_array_equal(same, labels)
    assert same.dtype == np.int16
    for method in ("majority", "nearest"):
        out = resample_labels(labels, current, new, method)
        assert set(np.unique(out)) <= set(np.unique(labels))
    # nearest = the corner with the largest barycentric weight
    w = resample_weights(current, new).toarray()
    np.testing.assert_array_equal(resample_labels(labels, current, new, "nearest"), labels[w.argmax(axis=1)])
    # majority: a two-region map; the summed weights decide, so the output regions stay whole
    half = (unit(current[0])[:, 2] > 0.1).astype(np.int32)
    out = resample_labels(half, current, new, "majority")
    expect = (unit(new[0])[:, 2] > 0.1).astype(np.int32)
    assert (out != expect).mean() < 0.03


# ---------------------------------------------------------------- against wb_command

def _write_surface(path, vertices, faces):
    img = nib.gifti.GiftiImage(darrays=[
        nib.gifti.GiftiDataArray(np.asarray(vertices, np.float32), intent="NIFTI_INTENT_POINTSET"),
        nib.gifti.GiftiDataArray(np.asarray(faces, np.int32), intent="NIFTI_INTENT_TRIANGLE")])
    nib.save(img, str(path))
    return path


def _write_metric(path, values):
    values = np.asarray(values, np.float32)
    values = values[:, None] if values.ndim == 1 else values
    img = nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(np.ascontiguousarray(values[:, i]),
                                                                 intent="NIFTI_INTENT_SHAPE")
                                        for i in range(values.shape[1])])
    nib.save(img, str(path))
    return path


def _write_labels(path, labels):
    table = nib.gifti.GiftiLabelTable()
    for key in np.unique(labels):
        label = nib.gifti.GiftiLabel(key=int(key), red=(key % 7) / 7, green=(key % 11) / 11, blue=0.5, alpha=1.0)
        label.label = f"parcel{key}"
        table.labels.append(label)
    img = nib.gifti.GiftiImage(labeltable=table, darrays=[nib.gifti.GiftiDataArray(
        np.asarray(labels, np.int32), intent="NIFTI_INTENT_LABEL", datatype="NIFTI_TYPE_INT32")])
    nib.save(img, str(path))
    return path


def _read(path):
    arrays = [d.data for d in nib.load(str(path)).darrays]
    return arrays[0] if len(arrays) == 1 else np.stack(arrays, axis=1)


def _compare(ours, theirs, max_abs):
    ok = np.isfinite(ours) & np.isfinite(theirs)
    assert ok.all()
    r = np.corrcoef(ours.ravel(), theirs.ravel())[0, 1]
    diff = np.abs(ours - theirs).max()
    print(f"r = {r:.9f}, max |ours - wb| = {diff:.3g} (range {np.ptp(theirs):.3g})")
    assert r > 0.999
    assert diff < max_abs
    return diff


@pytest.fixture(scope="module")
def meshes(atlases, fsaverage5, hcp_data, load_surface):
    fs5_sphere = load_surface(fsaverage5 / "sphere_left.gii.gz")
    deformed = load_surface(atlases / "fs_L" / "fs_L-to-fs_LR_fsaverage.L_LR.spherical_std.164k_fs_L.surf.gii")
    fs_l = load_surface(atlases / "fs_L" / "fsaverage.L.sphere.164k_fs_L.surf.gii")
    white = load_surface(fsaverage5 / "white_left.gii.gz")
    pial = load_surface(fsaverage5 / "pial_left.gii.gz")
    return {
        "fs5_sphere": fs5_sphere,
        "fs_L": fs_l,
        # fsaverage5 deformed into fsLR: the first 10242 vertices of the deformed fsaverage mesh
        "fs5_in_fsLR": (deformed[0][:10242], fs5_sphere[1]),
        "fs5_mid": ((white[0] + pial[0]) / 2.0, white[1]),
        "fsLR164": load_surface(atlases / "fsaverage.L_LR.spherical_std.164k_fs_LR.surf.gii"),
        "fsLR32": load_surface(hcp_data / "S1200.L.sphere.32k_fs_LR.surf.gii"),
        "mid32": load_surface(hcp_data / "S1200.L.midthickness_MSMAll.32k_fs_LR.surf.gii"),
        "ico6": _ico(6),
        "sulc5": nib.load(str(fsaverage5 / "sulc_left.gii.gz")).darrays[0].data.astype(np.float64),
        "refsulc": nib.load(str(atlases / "L.refsulc.164k_fs_LR.shape.gii")).darrays[0].data.astype(np.float64),
    }


@pytest.fixture(scope="module")
def gii(meshes, tmp_path_factory):
    """The meshes above written as GIFTI surfaces for wb_command."""
    folder = tmp_path_factory.mktemp("wb_meshes")
    names = ["fs5_in_fsLR", "fs5_mid", "fsLR164", "fsLR32", "mid32", "ico6"]
    return {name: _write_surface(folder / f"{name}.surf.gii", *meshes[name]) for name in names}


def test_fsaverage5_nested_in_fsaverage(meshes):
    fs5, fs_l = meshes["fs5_sphere"][0], meshes["fs_L"][0]
    cos = np.einsum("ij,ij->i", unit(fs5), unit(fs_l[:10242]))
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 1e-3


@pytest.mark.wb
@pytest.mark.parametrize("method", ["BARYCENTRIC", "ADAP_BARY_AREA"])
def test_fsaverage5_sulc_to_fslr32k(method, meshes, gii, wb_command, tmp_path):
    """The issue's acceptance test: fsaverage5 sulc onto fsLR 32k through the fs_L->fs_LR sphere."""
    sulc = meshes["sulc5"]
    src = _write_metric(tmp_path / "sulc.func.gii", sulc)
    out = tmp_path / "out.func.gii"
    area = ["-area-surfs", gii["fs5_mid"], gii["mid32"]] if method == "ADAP_BARY_AREA" else []
    wb_command("-metric-resample", src, gii["fs5_in_fsLR"], gii["fsLR32"], method, out, *area)
    ours = resample(sulc, meshes["fs5_in_fsLR"], meshes["fsLR32"], method.lower(),
                    current_area=meshes["fs5_mid"], new_area=meshes["mid32"])
    # measured: 6.3e-5 (BARYCENTRIC), 7.0e-5 (ADAP_BARY_AREA) on a sulc range of 3.3
    _compare(ours, _read(out), max_abs=3e-4)


@pytest.mark.wb
@pytest.mark.parametrize("method, target", [
    ("BARYCENTRIC", "fsLR32"), ("ADAP_BARY_AREA", "fsLR32"), ("BARYCENTRIC", "ico6"),
    pytest.param("ADAP_BARY_AREA", "ico6", marks=pytest.mark.slow)])
def test_fslr164k_refsulc_downsampled(method, target, meshes, gii, wb_command, tmp_path):
    """164k fsLR template sulc (plus a second column) onto 32k fsLR and onto ico-6."""
    ref = meshes["refsulc"]
    values = np.stack([ref, unit(meshes["fsLR164"][0])[:, 0] * 10.0], axis=1)  # multi-column
    src = _write_metric(tmp_path / "ref.func.gii", values)
    out = tmp_path / "out.func.gii"
    if method == "ADAP_BARY_AREA":
        # no 164k anatomical surface: sphere areas there, per-vertex area metrics on the way in
        current_area = vertex_areas(*meshes["fsLR164"])
        new_area = vertex_areas(*meshes["mid32"]) if target == "fsLR32" else vertex_areas(*meshes["ico6"])
        area = ["-area-metrics", _write_metric(tmp_path / "a_cur.func.gii", current_area),
                _write_metric(tmp_path / "a_new.func.gii", new_area)]
    else:
        current_area = new_area = None
        area = []
    wb_command("-metric-resample", src, gii["fsLR164"], gii[target], method, out, *area)
    ours = resample(values, meshes["fsLR164"], meshes[target], method.lower(), current_area, new_area)
    assert ours.shape == (len(meshes[target][0]), 2)
    # measured: <= 3e-6 on a range of 2.8 (float32 files and arithmetic in wb_command)
    _compare(ours, _read(out), max_abs=2e-5)


@pytest.mark.wb
def test_nan_matches_current_roi(meshes, gii, wb_command, tmp_path):
    """NaN inputs behave like wb_command's -current-roi (ADAP_BARY_AREA, 164k -> 32k)."""
    ref = meshes["refsulc"].copy()
    missing = unit(meshes["fsLR164"][0])[:, 0] > 0.6  # a cap of the sphere without data
    ref[missing] = np.nan
    src = _write_metric(tmp_path / "ref.func.gii", np.where(missing, 0.0, ref))
    roi = _write_metric(tmp_path / "roi.func.gii", (~missing).astype(np.float32))
    out, valid = tmp_path / "out.func.gii", tmp_path / "valid.func.gii"
    wb_command("-metric-resample", src, gii["fsLR164"], gii["fsLR32"], "ADAP_BARY_AREA", out,
               "-area-surfs", gii["fsLR164"], gii["fsLR32"], "-current-roi", roi, "-valid-roi-out", valid)
    ours = resample(ref, meshes["fsLR164"], meshes["fsLR32"], "adap_bary_area")
    theirs, valid = _read(out), _read(valid) > 0
    np.testing.assert_array_equal(np.isfinite(ours), valid)
    assert 1000 < (~valid).sum() < len(valid) - 1000
    _compare(ours[valid], theirs[valid], max_abs=2e-5)


@pytest.mark.wb
@pytest.mark.parametrize("target", ["fsLR32", pytest.param("ico6", marks=pytest.mark.slow)])
def test_labels_against_wb(target, meshes, gii, wb_command, tmp_path):
    """Label resampling (majority of ADAP_BARY_AREA weights; nearest corner) vs -label-resample."""
    sphere = meshes["fsLR164"]
    seeds = unit(np.random.default_rng(0).normal(size=(200, 3)))
    parcels = (np.argmax(unit(sphere[0]) @ seeds.T, axis=1) + 1).astype(np.int32)  # 200 Voronoi parcels
    labels = np.where(meshes["refsulc"] > 0, parcels, parcels + 1000).astype(np.int32)  # split by sulc sign
    src = _write_labels(tmp_path / "in.label.gii", labels)
    major, near = tmp_path / "major.label.gii", tmp_path / "near.label.gii"
    wb_command("-label-resample", src, gii["fsLR164"], gii[target], "ADAP_BARY_AREA", major,
               "-area-surfs", gii["fsLR164"], gii[target])
    wb_command("-label-resample", src, gii["fsLR164"], gii[target], "BARYCENTRIC", near, "-largest")
    for method, path in (("majority", major), ("nearest", near)):
        ours = resample_labels(labels, sphere, meshes[target], method)
        agree = (ours == _read(path)).mean()
        print(f"{method}: agreement {agree:.6f}")  # measured: 1.000000 for both
        assert agree > 0.999


@pytest.mark.wb
def test_atlasroi_labels_upsampled(atlases, meshes, gii, wb_command, tmp_path):
    """The fsLR 32k medial-wall ROI as labels, upsampled to 164k."""
    roi = (nib.load(str(atlases / "L.atlasroi.32k_fs_LR.shape.gii")).darrays[0].data > 0).astype(np.int32)
    src = _write_labels(tmp_path / "roi.label.gii", roi)
    out = tmp_path / "out.label.gii"
    wb_command("-label-resample", src, gii["fsLR32"], gii["fsLR164"], "ADAP_BARY_AREA", out,
               "-area-surfs", gii["mid32"], gii["fsLR164"])
    ours = resample_labels(roi, meshes["fsLR32"], meshes["fsLR164"], "majority",
                           current_area=meshes["mid32"], new_area=None)
    agree = (ours == _read(out)).mean()
    print(f"agreement {agree:.6f}")
    assert agree > 0.999


def test_infinite_complex_or_path_values_are_refused_not_spread():
    """100 Inf values became 930 Inf on fsLR 32k (NaN marks missing data, Inf spread into every
    value it was averaged into); complex values lost their imaginary part; a path said
    "values must have shape (V,) or (V, K), got ()"."""
    from geomorph_bids.errors import InputError
    from geomorph_bids.sphere.icosphere import icosphere
    from geomorph_bids.sphere.resample import resample

    v, f = icosphere(3)
    vals = np.arange(len(v), dtype=float)
    vals[:10] = np.inf
    with pytest.raises(InputError, match=r"10 infinite value\(s\): mark missing data with NaN"):
        resample(vals, (v, f), icosphere(2))
    with pytest.raises(InputError, match="real numbers"):
        resample(np.ones(len(v), complex), (v, f), icosphere(2))
    with pytest.raises(InputError, match="read the file first"):
        resample("lh.thickness", (v, f), icosphere(2))
    vals[:10] = np.nan
    assert np.isfinite(resample(vals, (v, f), icosphere(2))).sum() > 0


def test_maps_given_one_per_row_say_to_transpose():
    """Round fifteen: ``np.stack([sulc, curv])`` ((K, V): maps as rows) said "values have 2 vertices but
    the current sphere has 642"."""
    from geomorph_bids.errors import InputError
    from geomorph_bids.sphere.icosphere import icosphere
    from geomorph_bids.sphere.resample import resample

    v, f = icosphere(3)
    maps = np.stack([np.arange(len(v), dtype=float), np.ones(len(v))])
    with pytest.raises(InputError, match=r"values have shape \(2, 642\): \(K, V\), .*transposed\? pass values.T"):
        resample(maps, (v, f), icosphere(2))
    assert resample(maps.T, (v, f), icosphere(2)).shape == (162, 2)


def test_big_endian_float32_stays_float32_and_a_tensor_that_requires_grad_is_read():
    """A big-endian float32 map (``>f4``, as some files and ``np.frombuffer`` give it) came back
    float64 although "float32 in gives float32 out"; a torch tensor that requires grad raised
    torch's "Can't call numpy() on Tensor that requires grad" (``register()`` already detached one)."""
    import torch

    v, f = icosphere(3)
    new = icosphere(2)
    x = np.random.default_rng(0).normal(size=len(v)).astype(np.float32)
    plain = resample(x, (v, f), new)
    big = resample(x.astype(">f4"), (v, f), new)
    assert plain.dtype == big.dtype == np.float32
    np.testing.assert_array_equal(big, plain)
    graded = resample(torch.from_numpy(x).requires_grad_(), (v, f), new)
    np.testing.assert_array_equal(graded, plain)


def test_a_masked_arrays_masked_values_are_missing_data_and_labels_with_a_mask_are_refused():
    """Twentieth session: ``resample``, ``apply_weights`` and ``Registration.resample`` read a numpy
    masked array's hidden values as data (``np.asarray`` drops the mask): the masked vertices'
    values were averaged in, in silence. They are missing data now, as NaN is; a masked label array
    (no NaN among integers) is refused on one line."""
    v, f = icosphere(3)
    new = icosphere(2)
    x = np.random.default_rng(1).normal(size=len(v))
    hide = np.zeros(len(v), bool)
    hide[::7] = True
    as_nan = resample(np.where(hide, np.nan, x), (v, f), new, method="adap_bary_area")
    masked = resample(np.ma.masked_array(x, mask=hide), (v, f), new, method="adap_bary_area")
    np.testing.assert_array_equal(masked, as_nan)
    assert not np.array_equal(masked, resample(x, (v, f), new, method="adap_bary_area"))
    x32 = np.ma.masked_array(x.astype(np.float32), mask=hide)
    assert resample(x32, (v, f), new).dtype == np.float32  # float32 in, float32 out, masked or not
    ints = np.ma.masked_array(np.arange(len(v)), mask=hide)  # an integer map: float with NaN
    np.testing.assert_array_equal(resample(ints, (v, f), new),
                                  resample(np.where(hide, np.nan, np.arange(len(v))), (v, f), new))
    labels = np.ma.masked_array((x > 0).astype(np.int32), mask=hide)
    with pytest.raises(InputError, match=r"^labels is a masked array with 92 masked value\(s\), which would be read "
                                         r"as labels: fill them .*labels.filled\(0\)"):
        resample_labels(labels, (v, f), new)
    np.testing.assert_array_equal(resample_labels(np.ma.masked_array(labels.data), (v, f), new),  # nothing masked
                                  resample_labels(labels.data, (v, f), new))


def test_a_transposed_current_sphere_and_a_meta_tensor_are_named_as_what_they_are():
    """Twentieth session: ``resample(x, (v.T, f), new)`` said ``values have 642 vertices but the current
    sphere has 3`` (the map blamed for the mesh); a tensor on torch's 'meta' device raised torch's
    ``NotImplementedError: Cannot copy out of meta tensor; no data!``."""
    import torch

    v, f = icosphere(3)
    x = np.random.default_rng(2).normal(size=len(v))
    with pytest.raises(InputError, match=r"current sphere vertices must have shape \(V, 3\), got \(3, 642\)"):
        resample(x, (v.T, f), icosphere(2))
    with pytest.raises(InputError, match=r"^values is a torch tensor on the 'meta' device, which holds no values"):
        resample(torch.empty(len(v), device="meta"), (v, f), icosphere(2))

"""Format-independent readers (geomorph_bids.io.surfaces): the broken-input matrix and fuzzing."""

from __future__ import annotations

import gzip
import warnings

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nibabel import freesurfer as nfs
from nibabel.gifti import GiftiDataArray, GiftiImage

from geomorph_bids.errors import InputError
from geomorph_bids.io import gifti
from geomorph_bids.io.surfaces import (Surface, detect_format, read_feature, read_labels, read_mask,
                                       read_sphere, read_surface)
from geomorph_bids.io.validate import SphereWarning, count_folded

S1200 = "S1200.sulc_MSMAll.32k_fs_LR.dscalar.nii"


@pytest.fixture(scope="module")
def sphere5(fsaverage5) -> Surface:
    return read_surface(fsaverage5 / "sphere_left.gii.gz")


def _raw_gifti_surface(path, v, f):
    """Write a GIFTI surface with nibabel directly (no checks), for broken inputs."""
    img = GiftiImage(darrays=[GiftiDataArray(np.asarray(v, np.float32), intent="NIFTI_INTENT_POINTSET"),
                              GiftiDataArray(np.asarray(f, np.int32), intent="NIFTI_INTENT_TRIANGLE")])
    nib.save(img, str(path))
    return path


# ----------------------------------------------------------------------------- happy paths

def test_read_nilearn_gz(fsaverage5, sphere5):
    assert sphere5.n_vertices == 10242 and sphere5.faces.shape == (20480, 3)
    assert sphere5.vertices.dtype == np.float64 and sphere5.faces.dtype == np.int64
    assert sphere5.hemi == "L" and sphere5.path == fsaverage5 / "sphere_left.gii.gz"
    for name in ("sulc_left.gii.gz", "curv_left.gii.gz", "thick_right.gii.gz"):
        x = read_feature(fsaverage5 / name, n_vertices=10242)
        assert x.shape == (10242,) and x.dtype == np.float64 and np.ptp(x) > 0.5


def test_read_sphere_real(atlases, hcp_data):
    s = read_sphere(atlases / "fsaverage.L_LR.spherical_std.164k_fs_LR.surf.gii")
    assert s.n_vertices == 163842 and s.hemi == "L"
    np.testing.assert_allclose(np.linalg.norm(s.vertices, axis=1), 100.0, atol=2e-5)
    assert count_folded(s.vertices, s.faces) == 0
    assert read_sphere(hcp_data / "S1200.R.sphere.32k_fs_LR.surf.gii").hemi == "R"


def test_freesurfer_files(tmp_path, sphere5, fsaverage5):
    nfs.write_geometry(str(tmp_path / "lh.sphere.reg"), sphere5.vertices, sphere5.faces)
    sulc = read_feature(fsaverage5 / "sulc_left.gii.gz")
    nfs.write_morph_data(str(tmp_path / "lh.sulc"), sulc)
    assert detect_format(tmp_path / "lh.sphere.reg") == "freesurfer"
    s = read_sphere(tmp_path / "lh.sphere.reg")
    np.testing.assert_allclose(s.vertices, sphere5.vertices, atol=1e-4)
    np.testing.assert_array_equal(read_feature(tmp_path / "lh.sulc", n_vertices=s.n_vertices),
                                  sulc.astype(np.float32))


def test_mgh_feature(tmp_path):
    x = np.linspace(0, 1, 50, dtype=np.float32)
    for name in ("lh.thickness.mgh", "lh.thickness.mgz"):
        nib.save(nib.MGHImage(x[:, None, None], np.eye(4)), str(tmp_path / name))
        np.testing.assert_array_equal(read_feature(tmp_path / name, 50), x)
    nib.save(nib.MGHImage(np.zeros((5, 5, 2), np.float32), np.eye(4)), str(tmp_path / "vol.mgz"))
    with pytest.raises(InputError, match=r"shape \(5, 5, 2\)"):
        read_feature(tmp_path / "vol.mgz")


def test_cifti_feature(hcp_data, one_line):
    x = read_feature(hcp_data / S1200, n_vertices=32492, hemi="R")
    assert x.shape == (32492,) and int((x != 0).sum()) == 29716
    with pytest.raises(InputError) as e:
        read_feature(hcp_data / S1200)
    assert "pass hemi='L' or 'R'" in one_line(e, hcp_data / S1200)


def test_multicolumn_feature(tmp_path):
    x = np.random.default_rng(1).normal(size=(40, 2))
    p = gifti.write_metric(tmp_path / "f.func.gii", x, "L", names=["a", "b"])
    assert read_feature(p).shape == (40, 2)
    assert read_feature(gifti.write_metric(tmp_path / "g.func.gii", x[:, :1], "L")).shape == (40,)
    assert read_feature(p, squeeze=False).shape == (40, 2)


def test_read_labels_dispatch(tmp_path, fsaverage5):
    p = gifti.write_labels(tmp_path / "a.label.gii", np.array([0, 1, 2, 1]), {1: "a", 2: "b"}, "L")
    labels, table = read_labels(p, n_vertices=4)
    np.testing.assert_array_equal(labels, [0, 1, 2, 1])
    assert table[2][0] == "b"
    with pytest.raises(InputError, match="has 4 vertices but the sphere has 5"):
        read_labels(p, n_vertices=5)
    lab = tmp_path / "lh.x.label"
    lab.write_text("#!ascii label\n1\n3 0 0 0 0\n")
    with pytest.raises(InputError, match="pass n_vertices"):
        read_labels(lab)
    np.testing.assert_array_equal(read_labels(lab, n_vertices=4)[0], [0, 0, 0, 1])


def _float_label_gifti(path, values, intent="NIFTI_INTENT_NONE"):
    """A GIFTI whose one data array is float32, as sMRIPrep writes its cortex mask."""
    nib.save(GiftiImage(darrays=[GiftiDataArray(np.asarray(values, np.float32), intent=intent)]), str(path))
    return path


@pytest.mark.parametrize("intent", ["NIFTI_INTENT_NONE", "NIFTI_INTENT_LABEL"])
def test_read_labels_takes_smriprep_float_cortex_mask(tmp_path, intent):
    # sMRIPrep/fMRIPrep write _desc-cortex_mask.label.gii as float32 0.0/1.0; read_mask took it,
    # read_labels refused it (round eighteen)
    p = _float_label_gifti(tmp_path / "sub-01_hemi-L_desc-cortex_mask.label.gii", [1.0, 1.0, 0.0, 1.0], intent)
    labels, _ = read_labels(p, n_vertices=4)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, [1, 1, 0, 1])
    np.testing.assert_array_equal(read_mask(p, n_vertices=4), labels > 0)


@pytest.mark.parametrize("values", [[1.0, 0.5, 0.0, 1.0], [1.0, np.nan, 0.0, 1.0], [1.0, np.inf, 0.0, 1.0],
                                    [1.0, 3e18, 0.0, 1.0]])
def test_read_labels_refuses_non_integral_floats(tmp_path, values, one_line):
    p = _float_label_gifti(tmp_path / "sub-01_hemi-L_desc-cortex_mask.label.gii", values)
    with pytest.raises(InputError) as err:
        read_labels(p)
    assert "label" in one_line(err, p)


# ----------------------------------------------------------------------------- the broken-input matrix

def test_truncated_gifti(tmp_path, hcp_data, one_line):
    raw = (hcp_data / "S1200.L.sphere.32k_fs_LR.surf.gii").read_bytes()
    p = tmp_path / "lh.sphere.surf.gii"
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError) as e:
        read_sphere(p)
    assert "truncated or corrupted" in one_line(e, p)


@pytest.mark.parametrize("name", ["x.surf.gii", "x.surf.gii.gz", "lh.sphere", "lh.sulc", "x.dscalar.nii"])
def test_garbage_bytes(tmp_path, name, one_line):
    p = tmp_path / name
    p.write_bytes(np.random.default_rng(3).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    for reader in (read_surface, read_feature):
        with pytest.raises(InputError) as e:
            reader(p)
        one_line(e, p)


def test_empty_file(tmp_path):
    p = tmp_path / "lh.sulc"
    p.write_bytes(b"")
    with pytest.raises(InputError, match="is empty"):
        read_feature(p)


def test_wrong_magic(tmp_path, sphere5, one_line):
    p = tmp_path / "lh.sphere"
    nfs.write_geometry(str(p), sphere5.vertices, sphere5.faces)
    raw = bytearray(p.read_bytes())
    raw[2] = 0x00
    p.write_bytes(bytes(raw))
    with pytest.raises(InputError) as e:
        read_sphere(p)
    assert "magic number 0xFFFF00, expected 0xFFFFFE" in one_line(e, p)


@pytest.mark.parametrize("fmt", ["gifti", "freesurfer"])
def test_nan_inf_features(tmp_path, fmt, one_line):
    x = np.linspace(-1, 1, 100)
    x[[3, 4, 5]] = np.nan
    x[7] = np.inf
    if fmt == "gifti":
        p = gifti.write_metric(tmp_path / "sulc.shape.gii", x, "L")
    else:
        p = tmp_path / "lh.sulc"
        nfs.write_morph_data(str(p), x)
    with pytest.raises(InputError) as e:
        read_feature(p)
    assert "4 non-finite values (3 NaN, 1 Inf) out of 100" in one_line(e, p)


def test_wrong_vertex_count(fsaverage5, one_line):
    p = fsaverage5 / "sulc_left.gii.gz"
    with pytest.raises(InputError) as e:
        read_feature(p, n_vertices=163842)
    assert "has 10242 vertices but the sphere has 163842" in one_line(e, p)


@pytest.mark.parametrize("bad,match", [(10242, "1 of 20480 triangles reference vertices that do not exist"),
                                       (-1, "1 of 20480 triangles use negative vertex indices")])
def test_faces_out_of_range(tmp_path, sphere5, bad, match, one_line):
    f = sphere5.faces.copy()
    f[7, 1] = bad
    for p in (_raw_gifti_surface(tmp_path / "s.surf.gii", sphere5.vertices, f), tmp_path / "lh.sphere"):
        if p.name == "lh.sphere":
            nfs.write_geometry(str(p), sphere5.vertices, f)
        with pytest.raises(InputError, match=match) as e:
            read_surface(p)
        one_line(e, p)


def test_white_as_sphere(fsaverage5, one_line):
    for name in ("white_left.gii.gz", "pial_left.gii.gz"):
        p = fsaverage5 / name
        assert read_surface(p).n_vertices == 10242          # fine as a surface...
        with pytest.raises(InputError) as e:                # ...but not as a sphere
            read_sphere(p)
        assert "is not a sphere" in one_line(e, p)


def test_offcentre_unit_sphere(tmp_path, sphere5):
    p = gifti.write_surface(tmp_path / "unit.surf.gii", sphere5.vertices / 100 + [0.2, 0.1, -0.3],
                            sphere5.faces, "L")
    with pytest.warns(SphereWarning) as rec:
        s = read_sphere(p)
    assert str(p) in str(rec[0].message)
    r = np.linalg.norm(s.vertices, axis=1)
    r0 = np.linalg.norm(sphere5.vertices, axis=1)                     # fsaverage5: std 0.0029 mm
    assert abs(r.mean() - 100) < 1e-9 and abs(r.std() - r0.std()) < 1e-4
    assert np.abs(s.vertices.mean(0)).max() < 1e-3
    np.testing.assert_allclose(s.vertices, sphere5.vertices, atol=2e-3)   # float32 storage


def test_reversed_winding_fixed(tmp_path, sphere5):
    p = gifti.write_surface(tmp_path / "rev.surf.gii", sphere5.vertices, sphere5.faces[:, [0, 2, 1]], "L")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = read_sphere(p)
    np.testing.assert_array_equal(s.faces, sphere5.faces)
    assert count_folded(s.vertices, s.faces) == 0


def _folded(vertices: np.ndarray, faces: np.ndarray, rows) -> np.ndarray:
    """The sphere folded at each listed triangle: the positions of its second and third corners
    swapped, which turns over that triangle and its neighbour across that edge (2 per row; the
    faces keep their consistent winding, as on a real folded sphere)."""
    w = np.array(vertices, dtype=np.float64)
    for r in rows:
        a, b = faces[r][1], faces[r][2]
        w[[a, b]] = w[[b, a]]
    return w


def test_folded_rejected(tmp_path, sphere5, one_line):
    """Above the tolerance (0.1% of triangles, here 20) a folded sphere is refused."""
    w = _folded(sphere5.vertices, sphere5.faces, np.arange(0, 20480, 1024))  # 20 folds: 40 triangles
    assert count_folded(w, sphere5.faces) == 40
    p = gifti.write_surface(tmp_path / "fold.surf.gii", w, sphere5.faces, "L")
    with pytest.raises(InputError) as e:
        read_sphere(p)
    assert "40 of 20480 triangles are folded" in one_line(e, p)


def test_few_folds_tolerated_with_warning(tmp_path, sphere5, one_line):
    w = _folded(sphere5.vertices, sphere5.faces, [10, 9000])
    p = gifti.write_surface(tmp_path / "fold.surf.gii", w, sphere5.faces, "L")
    with pytest.warns(SphereWarning, match="4 of 20480 triangles are folded"):
        s = read_sphere(p)
    assert count_folded(s.vertices, s.faces) == 4
    with pytest.raises(InputError) as e:
        read_sphere(p, max_folded=0)
    assert "4 of 20480 triangles are folded" in one_line(e, p)


def test_triangles_wound_against_their_neighbours_are_turned_not_refused(tmp_path, sphere5):
    """A sphere whose triangles list their corners in arbitrary order (as scipy's ConvexHull
    does) is not folded: each inward triangle is turned outward, with one warning line naming the
    file; the same sphere as wound consistently, triangle for triangle."""
    rows = np.arange(0, 20480, 3)
    f = sphere5.faces.copy()
    f[rows] = f[rows][:, [1, 0, 2]]
    p = gifti.write_surface(tmp_path / "hull.surf.gii", sphere5.vertices, f, "L")
    with pytest.warns(SphereWarning, match=rf"hull.surf.gii: {len(rows)} of 20480 triangles were wound against "
                                           r"their neighbours .* turned outward") as rec:
        s = read_sphere(p)
    assert len(rec) == 1
    assert count_folded(s.vertices, s.faces) == 0
    np.testing.assert_array_equal(np.sort(s.faces, axis=1), np.sort(sphere5.faces, axis=1))
    same = np.zeros(len(f), dtype=bool)  # each triangle in the original's cyclic order, not just its corners
    for k in range(3):
        same |= (np.roll(s.faces, k, axis=1) == sphere5.faces).all(axis=1)
    assert same.all()


def test_wrong_kind(tmp_path, fsaverage5):
    mgz = tmp_path / "x.mgz"
    mgz.write_bytes(b"\x00" * 10)
    with pytest.raises(InputError, match="is an MGH file, not a surface mesh"):
        read_surface(mgz)
    with pytest.raises(InputError, match="not a per-vertex feature map"):
        read_feature(fsaverage5 / "sphere_left.gii.gz")
    with pytest.raises(InputError, match="cannot be read"):
        read_surface(tmp_path / "missing.surf.gii")


# ----------------------------------------------------------------------------- fuzzing

PREFIXES = [b"", b"\xff\xff\xfe", b"\xff\xff\xfe created by x\n\n", b"\xff\xff\xff", b"\x1f\x8b",
            b'<?xml version="1.0"?><GIFTI NumberOfDataArrays="1"><DataArray ', b"\x00\x00\x00\x01"]
NAMES = ["x.surf.gii", "x.shape.gii.gz", "lh.sphere", "lh.sulc", "x.dscalar.nii", "x.mgz", "x.mgh"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=st.sampled_from(PREFIXES), body=st.binary(max_size=600), name=st.sampled_from(NAMES),
       gz=st.booleans())
def test_fuzz_readers(tmp_path, prefix, body, name, gz):
    data = prefix + body
    if gz:
        data = gzip.compress(data)
    p = tmp_path / name
    p.write_bytes(data)
    for reader in (read_surface, read_feature, read_sphere):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reader(p)
        except InputError as exc:
            assert "\n" not in str(exc) and str(p) in str(exc)


def test_a_map_of_another_mesh_names_the_sphere_too(tmp_path):
    """Round twelve: ``read_hemisphere`` said ``lh.sulc: feature map has 632 vertices but the sphere
    has 642``, naming the map only: which of the two files is of the other mesh (a sulc of another
    run, or a sphere copied over) is for the user to see, so both are named (a sphere.reg too)."""
    from geomorph_bids.io.hemisphere import read_hemisphere
    from geomorph_bids.sphere.icosphere import icosphere

    v, f = icosphere(3)
    sphere, sulc, reg = tmp_path / "lh.sphere", tmp_path / "lh.sulc", tmp_path / "lh.sphere.reg"
    nfs.write_geometry(str(sphere), 100 * v, f)
    nfs.write_morph_data(str(sulc), np.linspace(-1, 1, len(v) - 10).astype(np.float32))
    with pytest.raises(InputError) as e:
        read_hemisphere(sphere, {"sulc": sulc})
    assert str(e.value) == (f"{sulc}: feature map has 632 vertices but the sphere {sphere} has 642; features must "
                            "be on the same subject's native mesh as the sphere")
    nfs.write_morph_data(str(sulc), np.linspace(-1, 1, len(v)).astype(np.float32))
    v2, f2 = icosphere(2)
    nfs.write_geometry(str(reg), 100 * v2, f2)
    with pytest.raises(InputError) as e:
        read_hemisphere(sphere, {"sulc": sulc}, sphere_reg=reg)
    assert str(e.value) == f"{reg}: has 162 vertices but the sphere {sphere} has 642"


def test_a_freesurfer_label_given_as_a_feature_map_names_no_python_function(tmp_path):
    """Before: '... is a FreeSurfer label, not a feature map; use read_labels' (to a command-line user)."""
    path = tmp_path / "lh.cortex.label"
    path.write_text("#!ascii label\n2\n0 0 0 0 0\n1 0 0 0 0\n")
    with pytest.raises(InputError) as e:
        read_feature(path)
    assert str(e.value) == (f"{path}: is a FreeSurfer label, not a feature map: give a map of one value per vertex, "
                            "e.g. lh.sulc or a .shape.gii file")


# ----------------------------------------------------------------------------- a registered sphere into FreeSurfer

_VOLUME_INFO = {"head": np.array([2, 0, 20]), "valid": "1  # volume info valid",
                "filename": "/subjects/sub-01/mri/filled-pretess255.mgz", "volume": np.array([256, 256, 256]),
                "voxelsize": np.array([1.0, 1.0, 1.0]), "xras": np.array([-1.0, 0.0, 0.0]),
                "yras": np.array([0.0, 0.0, -1.0]), "zras": np.array([0.0, 1.0, 0.0]),
                "cras": np.array([1.5, -20.25, 3.0])}


def test_a_registered_sphere_becomes_a_freesurfer_sphere_reg_with_the_subjects_volume_geometry(tmp_path, sphere5):
    """Twenty-third session: the README's conversion (nibabel's write_geometry) wrote a sphere.reg with no
    volume geometry, which recon-all's lh.sphere.reg carries (nibabel's read_geometry(read_metadata=True)
    warned "No volume information contained in the file" and returned none) and a "created by root on
    <date>" line, and never checked that the GIFTI was registered from that lh.sphere. ``write_sphere_reg``
    keeps the GIFTI's float32 vertices, the lh.sphere's triangles and its footer byte for byte."""
    from geomorph_bids import __version__
    from geomorph_bids.io.surfaces import write_sphere_reg

    native = tmp_path / "lh.sphere"
    nfs.write_geometry(str(native), sphere5.vertices.astype(np.float32), sphere5.faces.astype(np.int32),
                       volume_info=_VOLUME_INFO)
    turn = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    registered = tmp_path / "sub-01_hemi-L_space-fsaverage_desc-geomorph_sphere.surf.gii"
    gifti.write_surface(registered, sphere5.vertices @ turn.T, sphere5.faces, "L")
    out = write_sphere_reg(registered, native, tmp_path / "lh.sphere.geomorph.reg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")               # no "No volume information", no "Unknown extension code"
        coords, faces, info, stamp = nfs.read_geometry(str(out), read_metadata=True, read_stamp=True)
    assert stamp == f"created by geomorph-bids {__version__} from {registered.name}"
    assert np.array_equal(coords, nib.load(str(registered)).darrays[0].data)
    assert np.array_equal(faces, sphere5.faces)
    assert info["filename"] == _VOLUME_INFO["filename"] and np.array_equal(info["cras"], _VOLUME_INFO["cras"])
    raw, mesh = native.read_bytes(), 8 + 12 * len(coords) + 12 * len(faces)
    footer = raw[raw.index(b"\n\n") + 2 + mesh:]          # nibabel's volume geometry, as FreeSurfer lays it out
    assert len(footer) > 100 and out.read_bytes() == (b"\xff\xff\xfe" + stamp.encode() + b"\n\n"
                                                      + out.read_bytes()[3 + len(stamp) + 2:][:mesh] + footer)


def test_a_sphere_reg_is_refused_for_another_hemisphere_or_mesh(tmp_path, sphere5, one_line):
    """FreeSurfer pairs a sphere.reg with lh.sphere vertex for vertex without a word: a GIFTI of the other
    hemisphere or of another mesh is refused on one line naming both files, nothing written."""
    from geomorph_bids.io.surfaces import write_sphere_reg

    registered = tmp_path / "sub-01_hemi-L_space-fsaverage_desc-geomorph_sphere.surf.gii"
    gifti.write_surface(registered, sphere5.vertices, sphere5.faces, "L")
    right = tmp_path / "rh.sphere"
    nfs.write_geometry(str(right), sphere5.vertices.astype(np.float32), sphere5.faces.astype(np.int32))
    with pytest.raises(InputError) as err:
        write_sphere_reg(registered, right, tmp_path / "out.reg")
    assert one_line(err, registered).endswith(
        f"is hemi-L (GIFTI AnatomicalStructurePrimary CortexLeft) but {right} is hemi-R (its name (rh.)): "
        "give the lh.sphere it was registered from")
    other = tmp_path / "lh.sphere"
    nfs.write_geometry(str(other), sphere5.vertices.astype(np.float32), sphere5.faces[:, [0, 2, 1]].astype(np.int32))
    with pytest.raises(InputError) as err:
        write_sphere_reg(registered, other, tmp_path / "out.reg")
    assert one_line(err, registered).endswith(
        f"has other triangles than {other}: it was not registered from this FreeSurfer sphere (another "
        "subject's, hemisphere's or recon-all run's); give the surf/?h.sphere it was registered from")
    assert not (tmp_path / "out.reg").exists()
def test_the_input_loader_refuses_a_sphere_too_coarse_to_register_naming_the_users_file(tmp_path):
    """Twenty-third session: in workflow mode a 42-vertex ``lh.sphere`` failed in the register node naming the work
    folder's copy (``WORK/.../load_features/sphere.surf.gii: has only 42 vertices ...``); the loader every mode
    reads inputs with (``read_hemisphere``: the workflow's load_features, batch mode's read, geomorph-register) now
    refuses it, naming the user's file, before the maps are read; 162 vertices are read."""
    from geomorph_bids.io.hemisphere import read_hemisphere
    from geomorph_bids.sphere.icosphere import icosphere

    sphere, sulc = tmp_path / "lh.sphere", tmp_path / "lh.sulc"
    v, f = icosphere(1)
    nfs.write_geometry(str(sphere), v, f)
    with pytest.raises(InputError) as e:
        read_hemisphere(sphere, {"sulc": sulc})  # lh.sulc does not exist: never read
    assert str(e.value) == (f"{sphere}: has only 42 vertices: too coarse to register (its vertices are about 34 degrees "
                            "apart, too far to follow the folds; at least 162 are needed, an ico-2 sphere; FreeSurfer's "
                            "fsaverage3 has 642, a subject's sphere ~130,000): pass the subject's spherical surface "
                            "(e.g. lh.sphere)")
    v, f = icosphere(2)
    nfs.write_geometry(str(sphere), v, f)
    nfs.write_morph_data(str(sulc), (v[:, 2] / 100).astype(np.float32))
    assert read_hemisphere(sphere, {"sulc": sulc}).sphere.vertices.shape == (162, 3)


def test_a_sphere_past_the_largest_mesh_is_read_with_one_warning(tmp_path, monkeypatch):
    """``io.limits.MAX_VERTICES`` (2,097,152) bounded the file's bytes only: a 2.6M-vertex (ico-9) sphere was read
    and registered and nothing said it was past the largest mesh the limits are sized for. It is still read (the
    same vertices), with one SphereWarning naming the file and both counts (the bound lowered here to 600, an
    ico-3 sphere of 642 being the mesh past it)."""
    import geomorph_bids.io.surfaces as surfaces
    from geomorph_bids.sphere.icosphere import icosphere

    v, f = icosphere(3)
    path = tmp_path / "lh.sphere"
    nfs.write_geometry(str(path), v, f)  # radius 100
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = read_sphere(path)  # at the bound's own value: no word
    monkeypatch.setattr(surfaces, "MAX_VERTICES", 600)
    with pytest.warns(SphereWarning) as said:
        loud = read_sphere(path)
    assert [str(w.message) for w in said] == [
        f"{path}: 642 vertices, more than the 600 of the largest mesh geomorph-bids is sized for "
        "(io.limits.MAX_VERTICES, 12.8 times FreeSurfer's fsaverage): it is registered, but its memory and time are "
        "beyond those measured"]
    np.testing.assert_array_equal(loud.vertices, quiet.vertices)

"""GIFTI reading and atomic writing (geomorph_bids.io.gifti)."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pytest

from geomorph_bids.errors import InputError
from geomorph_bids.io import gifti
from geomorph_bids.sphere.mesh import vertex_areas


@pytest.fixture(scope="module")
def sphere5(fsaverage5):
    v, f, meta = gifti.read_gifti_surface(fsaverage5 / "sphere_left.gii.gz")
    return v, f


def test_read_gz_nilearn(fsaverage5):
    v, f, meta = gifti.read_gifti_surface(fsaverage5 / "sphere_left.gii.gz")
    assert v.shape == (10242, 3) and f.shape == (20480, 3)
    assert v.dtype == np.float64 and meta["AnatomicalStructurePrimary"] == "CortexLeft"
    vals, names, _ = gifti.read_gifti_data(fsaverage5 / "sulc_right.gii.gz")
    assert vals.shape == (10242, 1)
    ref = nib.GiftiImage.from_bytes(gzip.decompress((fsaverage5 / "sulc_right.gii.gz").read_bytes()))
    np.testing.assert_array_equal(vals[:, 0], ref.darrays[0].data)


@pytest.mark.parametrize("suffix", [".surf.gii", ".surf.gii.gz"])
def test_surface_round_trip(tmp_path, sphere5, suffix):
    v, f = sphere5
    out = tmp_path / f"sub-01_hemi-R_sphere{suffix}"
    gifti.write_surface(out, v, f, "R", geometric_type="Spherical", secondary="MidThickness",
                        meta={"Description": "test"})
    rv, rf, meta = gifti.read_gifti_surface(out)
    np.testing.assert_array_equal(rv, v.astype(np.float32).astype(np.float64))
    np.testing.assert_array_equal(rf, f)
    assert meta["AnatomicalStructurePrimary"] == "CortexRight"
    assert meta["AnatomicalStructureSecondary"] == "MidThickness"
    assert meta["GeometricType"] == "Spherical"
    assert meta["Description"] == "test"
    img = gifti.load_gifti(out)
    pts, tri = img.darrays
    assert pts.intent == nib.nifti1.intent_codes["NIFTI_INTENT_POINTSET"] and pts.data.dtype == np.float32
    assert tri.intent == nib.nifti1.intent_codes["NIFTI_INTENT_TRIANGLE"] and tri.data.dtype == np.int32
    assert tri.meta["TopologicalType"] == "Closed"
    assert (out.stat().st_mode & 0o777) == 0o666 & ~_umask()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_written_arrays_are_compressed_like_nibabel(tmp_path, sphere5):
    """Our level-1 zlib payloads: GZipBase64Binary as nibabel writes it, decoded by nibabel's
    reader, and the file no more than 8 % larger than nibabel's own (level 6) file."""
    v, f = sphere5
    ours = gifti.write_surface(tmp_path / "ours.surf.gii", v, f, "L")
    img = gifti.load_gifti(ours)
    assert [gifti.nib.gifti.util.gifti_encoding_codes.label[d.encoding] for d in img.darrays] == ["B64GZ"] * 2
    np.testing.assert_array_equal(img.darrays[1].data, f)
    theirs = tmp_path / "theirs.surf.gii"
    theirs.write_bytes(nib.gifti.GiftiImage(darrays=[
        nib.gifti.GiftiDataArray(v.astype(np.float32), intent="NIFTI_INTENT_POINTSET", datatype="NIFTI_TYPE_FLOAT32"),
        nib.gifti.GiftiDataArray(f.astype(np.int32), intent="NIFTI_INTENT_TRIANGLE", datatype="NIFTI_TYPE_INT32"),
    ]).to_xml())
    assert ours.stat().st_size <= 1.08 * theirs.stat().st_size


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


def test_surface_anatomical_no_secondary(tmp_path, sphere5):
    v, f = sphere5
    out = gifti.write_surface(tmp_path / "white.surf.gii", v * 0.5, f, "left", geometric_type="Anatomical")
    meta = gifti.read_gifti_surface(out)[2]
    assert meta["AnatomicalStructurePrimary"] == "CortexLeft" and meta["GeometricType"] == "Anatomical"
    assert "AnatomicalStructureSecondary" not in meta
    with pytest.raises(ValueError, match="geometric_type"):
        gifti.write_surface(tmp_path / "x.surf.gii", v, f, "L", geometric_type="Sphere")
    with pytest.raises(ValueError, match="hemisphere"):
        gifti.write_surface(tmp_path / "x.surf.gii", v, f, "X")


def test_metric_round_trip_multicolumn(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3))
    out = gifti.write_metric(tmp_path / "sub-01_hemi-L_desc-x_feat.func.gii", x, "L",
                             names=["sulc", "curv", "myelin"])
    vals, names, meta = gifti.read_gifti_data(out)
    np.testing.assert_array_equal(vals, x.astype(np.float32))
    assert names == ["sulc", "curv", "myelin"]
    assert meta["AnatomicalStructurePrimary"] == "CortexLeft"
    img = gifti.load_gifti(out)
    assert [d.intent for d in img.darrays] == [nib.nifti1.intent_codes["NIFTI_INTENT_NONE"]] * 3
    assert all(d.data.dtype == np.float32 for d in img.darrays)


def test_metric_shape_intent(tmp_path):
    x = np.linspace(-2, 2, 100)
    out = gifti.write_metric(tmp_path / "sulc.shape.gii", x, "R", names=["sulc"])
    img = gifti.load_gifti(out)
    assert len(img.darrays) == 1
    assert img.darrays[0].intent == nib.nifti1.intent_codes["NIFTI_INTENT_SHAPE"]
    assert img.darrays[0].meta["Name"] == "sulc" and img.meta["AnatomicalStructurePrimary"] == "CortexRight"
    np.testing.assert_array_equal(img.darrays[0].data, x.astype(np.float32))
    with pytest.raises(ValueError, match="2 names for 1 columns"):
        gifti.write_metric(tmp_path / "y.shape.gii", x, "R", names=["a", "b"])


def test_labels_round_trip(tmp_path):
    lab = np.array([0, 1, 1, 2, 5, 0, 2])
    table = {1: "V1", 2: ("V2", (0.0, 1.0, 0.0, 1.0)), 5: "MT"}
    out = gifti.write_labels(tmp_path / "x.label.gii", lab, table, "L", name="areas")
    rl, rt = gifti.read_gifti_labels(out)
    np.testing.assert_array_equal(rl, lab)
    assert sorted(rt) == [0, 1, 2, 5]
    assert rt[0][0] == "???" and rt[1][0] == "V1" and rt[5][0] == "MT"
    assert rt[2] == ("V2", (0.0, 1.0, 0.0, 1.0))
    img = gifti.load_gifti(out)
    assert img.darrays[0].data.dtype == np.int32
    assert img.darrays[0].intent == nib.nifti1.intent_codes["NIFTI_INTENT_LABEL"]
    assert img.meta["AnatomicalStructurePrimary"] == "CortexLeft"
    with pytest.raises(ValueError, match=r"\[7\]"):
        gifti.write_labels(tmp_path / "y.label.gii", np.array([1, 7]), {1: "a"}, "L")


def test_atomic_write_keeps_old_file(tmp_path, monkeypatch, sphere5):
    v, f = sphere5
    out = tmp_path / "s.surf.gii"
    gifti.write_surface(out, v, f, "L")
    before = out.read_bytes()

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        gifti.write_surface(out, v * 2, f, "L")
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.surf.gii"]


def test_truncated_gifti(tmp_path, hcp_data, one_line):
    raw = (hcp_data / "S1200.L.sphere.32k_fs_LR.surf.gii").read_bytes()
    bad = tmp_path / "half.surf.gii"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError) as e:
        gifti.read_gifti_surface(bad)
    assert "truncated or corrupted" in one_line(e, bad)


def test_truncated_gz(tmp_path, fsaverage5, one_line):
    raw = (fsaverage5 / "sphere_left.gii.gz").read_bytes()
    bad = tmp_path / "half.surf.gii.gz"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError) as e:
        gifti.read_gifti_surface(bad)
    assert "gzip stream is truncated" in one_line(e, bad)


@pytest.mark.parametrize("content,match", [(b"", "is empty"),
                                           (bytes(range(256)) * 4, "not a GIFTI file"),
                                           (b"<?xml version='1.0'?><GIFTI><Data", "truncated or corrupted"),
                                           (b'<?xml version="1.0"?><GIFTI NumberOfDataArrays="0"></GIFTI>',
                                            "no data arrays")])
def test_garbage_gifti(tmp_path, content, match, one_line):
    bad = tmp_path / "bad.surf.gii"
    bad.write_bytes(content)
    with pytest.raises(InputError, match=match) as e:
        gifti.load_gifti(bad)
    one_line(e, bad)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="cannot be read"):
        gifti.load_gifti(tmp_path / "nope.surf.gii")


def test_metric_is_not_surface(tmp_path, fsaverage5, sphere5):
    with pytest.raises(InputError, match="found 0 and 0"):
        gifti.read_gifti_surface(fsaverage5 / "sulc_left.gii.gz")
    out = gifti.write_surface(tmp_path / "s.surf.gii", *sphere5, "L")
    with pytest.raises(InputError, match="not a per-vertex feature map"):
        gifti.read_gifti_data(out)


@pytest.fixture
def wb_output(wb_command):
    exe = shutil.which("wb_command")

    def run(*args) -> str:
        return subprocess.run([exe, *map(str, args)], check=True, capture_output=True, text=True).stdout

    return run


@pytest.mark.wb
def test_workbench_reads_our_files(tmp_path, sphere5, wb_command, wb_output):
    v, f = sphere5
    surf = gifti.write_surface(tmp_path / "s.surf.gii", v, f, "R", secondary="MidThickness")
    info = wb_output("-file-information", surf)
    assert "CortexRight" in info
    assert "Surface Type (Primary):     Spherical" in info
    assert "Surface Type (Secondary):   Midthickness" in info       # workbench's spelling
    assert "Normal Vectors Correct:     true" in info
    # numbers: workbench's vertex areas on our file equal ours
    areas = tmp_path / "areas.shape.gii"
    wb_command("-surface-vertex-areas", surf, areas)
    got = gifti.read_gifti_data(areas)[0][:, 0]
    ref = vertex_areas(v.astype(np.float32), f)
    assert np.abs(got - ref).max() < 1e-3 * ref.mean()
    metric = gifti.write_metric(tmp_path / "m.func.gii", np.column_stack([got, -got]), "R",
                                names=["area", "minus"])
    info = wb_output("-file-information", metric)
    assert "CortexRight" in info and "area" in info and "minus" in info
    stats = wb_output("-metric-stats", metric, "-reduce", "SUM")
    assert abs(float(stats.split()[0]) - got.sum()) < 1e-3 * got.sum()


@pytest.mark.parametrize("kind", ["irregular", "regular"])
def test_float_arrays_are_deflated_the_cheaper_way_and_never_larger(kind, sphere5):
    """Irregular floats (a real sphere's coordinates) are Huffman-coded only, which is no larger
    than zlib level 1 on them; regular ones (an icosphere's) keep level 1's matches. Both inflate
    to the same bytes."""
    import zlib

    v, _ = sphere5
    if kind == "irregular":
        v = v + np.random.default_rng(0).normal(scale=0.01, size=v.shape)
    payload = np.tile(v.astype(np.float32), (4, 1)).tobytes()  # > one probe
    packed = gifti._deflate(payload, floating=True)
    assert zlib.decompress(packed) == payload
    level1 = len(zlib.compress(payload, 1))
    assert len(packed) <= 1.01 * level1
    huffman = len(gifti._pack(payload, zlib.Z_HUFFMAN_ONLY))
    assert len(packed) == (huffman if kind == "irregular" else len(gifti._pack(payload, zlib.Z_DEFAULT_STRATEGY)))


@pytest.mark.parametrize("size", [0, 5, 4 * 16384 - 4, 4 * 16384, 4 * 16384 + 4, 3 * 4 * 16384 + 12])
@pytest.mark.parametrize("kind", ["irregular", "regular"])
def test_the_probe_continued_gives_the_stream_of_one_pass(kind, size):
    """The probe's stream, continued with the rest of the array, is byte for byte the stream of
    compressing the whole array at once with the strategy chosen (shorter, as long as and longer
    than the probe)."""
    import zlib

    rng = np.random.default_rng(size)
    values = rng.normal(size=size // 4) if kind == "irregular" else np.arange(size // 4) % 97
    payload = values.astype(np.float32).tobytes()
    probe = payload[:gifti._PROBE]
    huffman = len(gifti._pack(probe, zlib.Z_HUFFMAN_ONLY)) <= 1.01 * len(gifti._pack(probe, zlib.Z_DEFAULT_STRATEGY))
    if size >= gifti._PROBE:  # both strategies are met
        assert huffman == (kind == "irregular")
    strategy = zlib.Z_HUFFMAN_ONLY if huffman else zlib.Z_DEFAULT_STRATEGY
    assert gifti._deflate(payload, floating=True) == gifti._pack(payload, strategy)


def test_surfaces_sharing_triangles_compress_them_once_into_the_same_files(tmp_path, sphere5, monkeypatch):
    """EncodedArrays: the registered and native spheres of a hemisphere share their triangles;
    written with one, the triangles are deflated once and every file holds the bytes it holds
    when written alone."""
    v, f = sphere5
    moved = v[:, [1, 2, 0]] * 1.001
    alone = [gifti.write_surface(tmp_path / f"alone{k}.surf.gii", x, f, hemi="L").read_bytes()
             for k, x in enumerate((v, moved))]
    calls = []
    deflate = gifti._deflate
    monkeypatch.setattr(gifti, "_deflate", lambda payload, floating: calls.append(floating) or deflate(payload, floating))
    encoded = gifti.EncodedArrays()
    shared = [gifti.write_surface(tmp_path / f"shared{k}.surf.gii", x, f, hemi="L", encoded=encoded).read_bytes()
              for k, x in enumerate((v, moved))]
    assert shared == alone
    assert calls == [True, False, True]  # coordinates, triangles, coordinates: the triangles once
    other = f[:, [1, 2, 0]]  # other triangle bytes: compressed, never taken for the first ones
    gifti.write_surface(tmp_path / "other.surf.gii", v, other, hemi="L", encoded=encoded)
    assert calls == [True, False, True, True, False]
    assert gifti.read_gifti_surface(tmp_path / "other.surf.gii")[1].tolist() == other.tolist()


def test_a_freesurfer_file_under_a_gifti_name_says_what_it_is(tmp_path, one_line):
    """``cp lh.sphere sub-01_hemi-L_sphere.surf.gii`` (renaming into sMRIPrep's layout): before,
    only "is not a GIFTI file (does not start with XML)"."""
    from nibabel import freesurfer as nfs

    from geomorph_bids.io import read_feature, read_sphere
    from geomorph_bids.sphere.icosphere import icosphere

    v, f = icosphere(2)
    sphere = tmp_path / "sub-01_hemi-L_sphere.surf.gii"
    nfs.write_geometry(str(sphere), (100 * v).astype(np.float32), f.astype(np.int32))
    with pytest.raises(InputError) as e:
        read_sphere(sphere)
    assert "it is a FreeSurfer surface (magic 0xFFFFFE) under a GIFTI name" in one_line(e, sphere)
    sulc = tmp_path / "sub-01_hemi-L_sulc.shape.gii"
    nfs.write_morph_data(str(sulc), np.linspace(-1, 1, len(v)).astype(np.float32))
    with pytest.raises(InputError) as e:
        read_feature(sulc)
    assert "mris_convert -c lh.sulc lh.white lh.sulc.shape.gii" in one_line(e, sulc)


def test_data_in_an_external_file_is_refused_saying_so(tmp_path, one_line):
    """A valid GIFTI whose array is ``ExternalFileBinary`` (nibabel reads it from disk; we read the
    file whole, from memory): before, 'GIFTI file is truncated or corrupted (GiftiParseError: ...)'."""
    np.arange(1, 11, dtype="<f4").tofile(tmp_path / "lh.sulc.bin")
    path = tmp_path / "lh.sulc.shape.gii"
    path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<GIFTI Version="1.0" NumberOfDataArrays="1">\n'
                    '<DataArray Intent="NIFTI_INTENT_SHAPE" DataType="NIFTI_TYPE_FLOAT32" '
                    'ArrayIndexingOrder="RowMajorOrder" Dimensionality="1" Dim0="10" Encoding="ExternalFileBinary" '
                    'Endian="LittleEndian" ExternalFileName="lh.sulc.bin" ExternalFileOffset="0">\n<Data></Data>\n'
                    '</DataArray>\n</GIFTI>\n')
    assert nib.load(str(path)).darrays[0].data.shape == (10,)  # valid: nibabel reads it from disk
    with pytest.raises(InputError) as e:
        gifti.read_gifti_data(path)
    assert one_line(e, path) == (f"{path}: GIFTI data array 0: data in an external file (lh.sulc.bin) is not "
                                 "supported; save the GIFTI with its data inline (e.g. wb_command -gifti-convert "
                                 "BASE64_BINARY lh.sulc.shape.gii lh.sulc_inline.shape.gii)")


def test_the_guards_own_refusals_are_not_called_corrupted(tmp_path):
    """The XML scan's refusals (an InputError is a ValueError) were wrapped as 'GIFTI file is
    truncated or corrupted (InputError: PATH: ...)', the file named twice."""
    img = nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(np.zeros(10, np.float32))])
    path = tmp_path / "huge.shape.gii"
    path.write_bytes(img.to_xml().replace(b'Dim0="10"', b'Dim0="1000000000000"'))
    with pytest.raises(InputError) as e:
        gifti.read_gifti_data(path)
    assert str(e.value).startswith(f"{path}: GIFTI data arrays declare 3.6 TiB, more than a GIFTI file may hold")


def test_a_surface_file_with_two_pointsets_lists_every_array(tmp_path, sphere5, one_line):
    """Before: '(arrays: pointset, triangle); is it a metric (.shape.gii/.func.gii)?': a set of the
    kinds (one pointset left out) and a hint for a file with no pointset."""
    v, f = sphere5
    img = nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(v.astype(np.float32), intent="NIFTI_INTENT_POINTSET"),
                                        nib.gifti.GiftiDataArray(f.astype(np.int32), intent="NIFTI_INTENT_TRIANGLE"),
                                        nib.gifti.GiftiDataArray(v.astype(np.float32), intent="NIFTI_INTENT_POINTSET")])
    path = tmp_path / "two.surf.gii"
    nib.save(img, str(path))
    with pytest.raises(InputError) as e:
        gifti.read_gifti_surface(path)
    assert one_line(e, path).endswith("found 2 and 1 (arrays: pointset, triangle, pointset); one surface per file "
                                      "expected (several surfaces in one file?)")


def test_a_gzipped_nifti_given_as_a_map_or_sphere_says_what_it_is(tmp_path):
    """``--feature sulc=lh.thickness.nii.gz`` (a volume, or a surface map saved as NIfTI) or a gzipped
    CIFTI file: ``is not a GIFTI file (does not start with XML)`` (gzip is how GIFTI is read too), while
    the same image not gzipped (``.nii``) was named a NIfTI volume."""
    from geomorph_bids.io import read_feature, read_sphere
    from geomorph_bids.io.cifti import write_dscalar

    vol = tmp_path / "lh.thickness.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((642, 1, 1), np.float32), np.eye(4)), str(vol))
    cifti = tmp_path / "sulc.dscalar.nii"
    write_dscalar(cifti, {h: np.ones((642, 1)) for h in "LR"}, {h: np.ones(642, bool) for h in "LR"}, ["sulc"])
    zipped = tmp_path / "sulc.dscalar.nii.gz"
    zipped.write_bytes(gzip.compress(cifti.read_bytes()))
    for path in (vol, zipped):
        for read in (lambda p: read_feature(p, 642, "L"), read_sphere):
            with pytest.raises(InputError) as e:
                read(path)
            assert str(e.value) == (f"{path}: is not a GIFTI file (does not start with XML): it is a gzipped NIfTI "
                                    "image (a volume, or a CIFTI file): volumes must first be projected onto the "
                                    "surface; give a CIFTI-2 file as it is written (.dscalar.nii, not gzipped)")


def test_a_gzipped_freesurfer_file_says_to_decompress_it_not_to_rename_it(tmp_path, one_line):
    """``lh.sphere.gz``/``lh.sulc.gz`` (``gzip -r`` on a copy of a subject or of fsaverage), or a
    FreeSurfer file gzipped under its own name (``lh.sphere``): before, "is not a GIFTI file ...: it
    is a FreeSurfer surface (magic 0xFFFFFE) under a GIFTI name; give it its FreeSurfer name
    (lh.sphere)", to a file that had that name."""
    from nibabel import freesurfer as nfs

    from geomorph_bids.io import read_feature, read_sphere
    from geomorph_bids.sphere.icosphere import icosphere

    v, f = icosphere(2)
    plain = tmp_path / "plain"
    plain.mkdir()
    nfs.write_geometry(str(plain / "lh.sphere"), (100 * v).astype(np.float32), f.astype(np.int32))
    nfs.write_morph_data(str(plain / "lh.sulc"), np.linspace(-1, 1, len(v)).astype(np.float32))
    for name, read, what in (("lh.sphere", read_sphere, "surface (magic 0xFFFFFE)"),
                             ("lh.sulc", lambda p: read_feature(p, len(v), "L"), "morphometry file (magic 0xFFFFFF)")):
        data = gzip.compress((plain / name).read_bytes())
        for zipped, how in ((tmp_path / f"{name}.gz", f"gunzip {name}.gz"),
                            (tmp_path / name, f"mv {name} {name}.gz && gunzip {name}.gz")):
            zipped.write_bytes(data)
            with pytest.raises(InputError) as e:
                read(zipped)
            assert one_line(e, zipped) == (f"{zipped}: is a gzipped FreeSurfer {what}; FreeSurfer files are read "
                                           f"uncompressed: decompress it ({how})")


def test_damaged_values_that_are_signalling_nans_are_read_without_a_numpy_warning(tmp_path):
    """A GIFTI whose Endian attribute lies (or whose bytes are damaged into 0x7F800001) made numpy's
    float32 -> float64 cast print `warning: invalid value encountered in cast` (no file named) before
    the NaN's own one-line error (found by the fuzz pass, fix-ak)."""
    import warnings

    values = np.linspace(-1, 1, 12).astype(np.float32)
    values.view(np.uint32)[[2, 5]] = 0x7F800001
    shape = tmp_path / "lh.sulc.shape.gii"
    gifti.write_metric(shape, values, hemi="L")
    from geomorph_bids.sphere.icosphere import icosphere

    v, f = icosphere(1)
    v = v.astype(np.float32)
    v.view(np.uint32)[0, 0] = 0x7F800001
    sphere = tmp_path / "lh.sphere.surf.gii"
    nib.save(nib.GiftiImage(darrays=[
        nib.gifti.GiftiDataArray(v, intent="NIFTI_INTENT_POINTSET", datatype="NIFTI_TYPE_FLOAT32"),
        nib.gifti.GiftiDataArray(f.astype(np.int32), intent="NIFTI_INTENT_TRIANGLE", datatype="NIFTI_TYPE_INT32")]),
        sphere)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got, _, _ = gifti.read_gifti_data(shape)
        got_v, _, _ = gifti.read_gifti_surface(sphere)
    assert np.flatnonzero(np.isnan(got[:, 0])).tolist() == [2, 5]
    assert np.isnan(got_v[0, 0]) and np.isfinite(got_v[1:]).all()

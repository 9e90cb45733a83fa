"""FreeSurfer binary surfaces, morphometry, annotations and labels (geomorph_bids.io.freesurfer)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from nibabel import freesurfer as nfs

from geomorph_bids.errors import InputError
from geomorph_bids.io import freesurfer as fs
from geomorph_bids.io.gifti import read_gifti_data, read_gifti_surface


@pytest.fixture(scope="module")
def fs5(fsaverage5, tmp_path_factory):
    """fsaverage5 left sphere, white and sulc written in FreeSurfer binary formats."""
    d = tmp_path_factory.mktemp("fs5")
    sv, sf, _ = read_gifti_surface(fsaverage5 / "sphere_left.gii.gz")
    wv, wf, _ = read_gifti_surface(fsaverage5 / "white_left.gii.gz")
    sulc = read_gifti_data(fsaverage5 / "sulc_left.gii.gz")[0][:, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nfs.write_geometry(str(d / "lh.sphere"), sv, sf)
        nfs.write_geometry(str(d / "lh.white"), wv, wf,
                           volume_info={"head": np.array([2, 0, 20], dtype=np.int32), "valid": "1  # volume info valid",
                                        "filename": "orig.mgz", "volume": np.array([256, 256, 256]),
                                        "voxelsize": np.ones(3), "xras": np.array([-1.0, 0, 0]),
                                        "yras": np.array([0, 0, -1.0]), "zras": np.array([0, 1.0, 0]),
                                        "cras": np.array([1.5, 2.0, -3.0])})
    nfs.write_morph_data(str(d / "lh.sulc"), sulc, fnum=len(sf))
    return {"dir": d, "sphere": (sv, sf), "white": (wv, wf), "sulc": sulc}


def test_surface_round_trip(fs5):
    v, f, meta = fs.read_fs_surface(fs5["dir"] / "lh.sphere")
    np.testing.assert_array_equal(v, fs5["sphere"][0].astype(np.float32))
    np.testing.assert_array_equal(f, fs5["sphere"][1])
    assert v.shape == (10242, 3) and f.dtype == np.int64 and meta == {}
    v, f, meta = fs.read_fs_surface(fs5["dir"] / "lh.white")
    np.testing.assert_array_equal(v, fs5["white"][0].astype(np.float32))
    assert meta["cras"] == "1.5 2.0 -3.0" and meta["filename"] == "orig.mgz"


def test_morph_round_trip(fs5):
    x = fs.read_fs_morph(fs5["dir"] / "lh.sulc")
    np.testing.assert_array_equal(x, fs5["sulc"].astype(np.float32))
    assert x.dtype == np.float64 and x.shape == (10242,)


def test_old_format_morph(tmp_path):
    vals = np.array([120, -50, 7, 0], dtype=">i2")
    p = tmp_path / "lh.curv"
    p.write_bytes((4).to_bytes(3, "big") + (0).to_bytes(3, "big") + vals.tobytes())
    np.testing.assert_allclose(fs.read_fs_morph(p), [1.2, -0.5, 0.07, 0.0])


def test_wrong_magic_surface(tmp_path, fs5, one_line):
    raw = bytearray((fs5["dir"] / "lh.sphere").read_bytes())
    raw[:3] = b"\x12\x34\x56"
    bad = tmp_path / "lh.sphere"
    bad.write_bytes(bytes(raw))
    with pytest.raises(InputError) as e:
        fs.read_fs_surface(bad)
    msg = one_line(e, bad)
    assert "magic number 0x123456, expected 0xFFFFFE" in msg


def test_wrong_magic_morph(tmp_path, fs5, one_line):
    raw = bytearray((fs5["dir"] / "lh.sulc").read_bytes())
    raw[:3] = b"\x00\x00\x07"
    bad = tmp_path / "lh.sulc"
    bad.write_bytes(bytes(raw))
    with pytest.raises(InputError) as e:
        fs.read_fs_morph(bad)
    assert "magic number 0x000007, expected 0xFFFFFF" in one_line(e, bad)


def test_truncated_surface(tmp_path, fs5, one_line):
    raw = (fs5["dir"] / "lh.sphere").read_bytes()
    bad = tmp_path / "lh.sphere"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError) as e:
        fs.read_fs_surface(bad)
    msg = one_line(e, bad)
    assert "truncated" in msg and "10242 vertices, 20480 triangles" in msg


def test_truncated_morph(tmp_path, fs5, one_line):
    raw = (fs5["dir"] / "lh.sulc").read_bytes()
    bad = tmp_path / "lh.sulc"
    bad.write_bytes(raw[:1000])
    with pytest.raises(InputError) as e:
        fs.read_fs_morph(bad)
    assert f"truncated: 1000 bytes, the header (10242 vertices) needs {15 + 4 * 10242}" in one_line(e, bad)


def test_swapped_file_kinds(fs5):
    with pytest.raises(InputError, match="morphometry file .* not a triangle surface"):
        fs.read_fs_surface(fs5["dir"] / "lh.sulc")
    with pytest.raises(InputError, match="is a FreeSurfer surface"):
        fs.read_fs_morph(fs5["dir"] / "lh.sphere")


def test_empty(tmp_path):
    p = tmp_path / "lh.sphere"
    p.write_bytes(b"")
    with pytest.raises(InputError, match="is empty"):
        fs.read_fs_surface(p)
    with pytest.raises(InputError, match="is empty"):
        fs.read_fs_morph(p)


def test_annot_round_trip(tmp_path):
    labels = np.array([0, 0, 1, 2, 2, 1, -1])
    ctab = np.array([[25, 5, 25, 0, 0], [200, 0, 0, 0, 0], [0, 0, 200, 0, 0]], dtype=np.int32)
    p = tmp_path / "lh.aparc.annot"
    nfs.write_annot(str(p), labels, ctab, [b"unknown", b"red", b"blue"], fill_ctab=True)
    lab, table = fs.read_fs_annot(p)
    np.testing.assert_array_equal(lab, labels)
    assert table[1][0] == "red" and table[2][0] == "blue" and table[-1][0] == "unknown"
    np.testing.assert_allclose(table[1][1], (200 / 255, 0, 0, 1))
    bad = tmp_path / "bad.annot"
    bad.write_bytes(p.read_bytes()[:30])
    with pytest.raises(InputError, match="not a readable FreeSurfer annotation"):
        fs.read_fs_annot(bad)


def test_label_file(tmp_path):
    p = tmp_path / "lh.V1.label"
    rows = "\n".join(f"{i} 0.0 0.0 0.0 1.0" for i in (2, 5, 7))
    p.write_text(f"#!ascii label\n3\n{rows}\n")
    mask = fs.read_fs_label(p, 10)
    np.testing.assert_array_equal(np.flatnonzero(mask), [2, 5, 7])
    with pytest.raises(InputError, match="lists vertex 7 but the surface has only 6"):
        fs.read_fs_label(p, 6)
    p.write_text("#!ascii label\n3\n" + "\n".join(f"{i} 0.0 0.0 0.0 1.0" for i in (2, -5, 7)) + "\n")
    with pytest.raises(InputError, match="lists vertex -5: vertex numbers start at 0"):  # not "vertex 7"
        fs.read_fs_label(p, 10)


def test_byte_swapped_files_say_so(tmp_path, one_line):
    """A FreeSurfer file written little-endian (a tool that ignored the byte order): before, the
    morphometry file's header was read as "34209792 vertices and 16777216 values per vertex ...
    corrupted" and the surface's magic as "0xFEFFFF ... of another format"."""
    from geomorph_bids.sphere.icosphere import icosphere

    v, f = icosphere(2)
    values = np.linspace(-1.0, 1.0, len(v)).astype("<f4")
    morph = tmp_path / "lh.sulc"
    morph.write_bytes(b"\xff\xff\xff" + np.array([len(v), len(f), 1], "<i4").tobytes() + values.tobytes())
    with pytest.raises(InputError) as e:
        fs.read_fs_morph(morph)
    assert "is byte-swapped" in one_line(e, morph) and "write_morph_data" in str(e.value)
    surface = tmp_path / "lh.sphere"
    surface.write_bytes(b"\xfe\xff\xff" + b"created by a tool\n\n" + np.array([len(v), len(f)], "<i4").tobytes()
                        + (100 * v).astype("<f4").tobytes() + f.astype("<i4").tobytes())
    with pytest.raises(InputError) as e:
        fs.read_fs_surface(surface)
    assert "is byte-swapped" in one_line(e, surface) and "write_geometry" in str(e.value)


def test_a_morph_file_with_bytes_after_its_values_is_refused(tmp_path, one_line):
    """lh.sulc concatenated with itself was read as the first half, silently."""
    path = tmp_path / "lh.sulc"
    nfs.write_morph_data(str(path), np.linspace(-1, 1, 100).astype(np.float32))
    path.write_bytes(path.read_bytes() * 2)
    with pytest.raises(InputError) as e:
        fs.read_fs_morph(path)
    assert one_line(e, path).endswith("FreeSurfer morphometry file has 415 bytes after its 100 values (830 bytes, the "
                                      "header needs 415): two files joined, or a corrupted file")


def test_a_surface_with_another_freesurfer_file_after_its_triangles_is_refused(tmp_path, one_line):
    """lh.sphere concatenated with itself (or with lh.sulc) was read as the first copy, silently;
    the tags FreeSurfer writes after the triangles (volume geometry) are still read."""
    v = np.array([[100, 0, 0], [0, 100, 0], [0, 0, 100], [-100, 0, 0]], dtype=np.float64)
    f = np.array([[0, 1, 2], [0, 2, 3], [1, 3, 2], [0, 3, 1]])
    path = tmp_path / "lh.sphere"
    nfs.write_geometry(str(path), v, f)
    single = path.read_bytes()
    path.write_bytes(single * 2)
    with pytest.raises(InputError) as e:
        fs.read_fs_surface(path)
    need = len(single)
    assert one_line(e, path).endswith(
        f"FreeSurfer surface has {need} bytes after its 4 vertices and 4 triangles ({2 * need} bytes, the header "
        f"needs {need}) that begin with another FreeSurfer file's magic number (0xFFFFFE): two files joined, "
        "or a corrupted file")
    sulc = tmp_path / "lh.sulc"
    nfs.write_morph_data(str(sulc), np.zeros(4, np.float32))
    path.write_bytes(single + sulc.read_bytes())
    with pytest.raises(InputError, match=r"magic number \(0xFFFFFF\): two files joined"):
        fs.read_fs_surface(path)
    info = {"head": [2, 0, 20], "valid": "1  # volume info valid", "filename": "vol.nii",
            "volume": [256, 256, 256], "voxelsize": [1, 1, 1], "xras": [-1, 0, 0], "yras": [0, 0, -1],
            "zras": [0, 1, 0], "cras": [0, 0, 0]}
    nfs.write_geometry(str(path), v, f, volume_info=info)
    got_v, _, meta = fs.read_fs_surface(path)
    assert np.allclose(got_v, v) and meta["filename"] == "vol.nii"


def test_damaged_values_that_are_signalling_nans_are_read_without_a_numpy_warning(tmp_path):
    """Bytes damaged into a signalling NaN (0x7F800001) made numpy's float32 -> float64 cast print
    `warning: invalid value encountered in cast` (no file named) before the NaN's own one-line error."""
    values = np.linspace(-1, 1, 50).astype(">f4")
    values.view(">u4")[[3, 7]] = 0x7F800001
    path = tmp_path / "lh.sulc"
    path.write_bytes(b"\xff\xff\xff" + np.array([50, 0, 1], ">i4").tobytes() + values.tobytes())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = fs.read_fs_morph(path)
    assert np.flatnonzero(np.isnan(got)).tolist() == [3, 7]
    v = np.array([[100, 0, 0], [0, 100, 0], [0, 0, 100], [-100, 0, 0]], dtype=np.float32)
    sphere = tmp_path / "lh.sphere"
    nfs.write_geometry(str(sphere), v, np.array([[0, 1, 2], [0, 2, 3], [1, 3, 2], [0, 3, 1]]))
    raw = bytearray(sphere.read_bytes())
    at = raw.index(v.astype(">f4").tobytes())
    raw[at:at + 4] = np.array([0x7F800001], ">u4").tobytes()
    sphere.write_bytes(bytes(raw))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got_v, _, _ = fs.read_fs_surface(sphere)
    assert np.isnan(got_v[0, 0]) and np.isfinite(got_v[1:]).all()


def test_a_label_file_that_lists_another_number_of_vertices_than_its_header_is_refused(tmp_path, one_line):
    """lh.cortex.label cut short (or its count line damaged) was read as the rows left: a cortex mask
    missing part of the cortex, in silence when it still covered half the vertices."""
    p = tmp_path / "lh.cortex.label"
    rows = [f"{i}  0.000  0.000  0.000 0.0000000000" for i in range(8)]
    p.write_text("#!ascii label  , from subject bert vox2ras=TkReg\n8\n" + "\n".join(rows[:6]) + "\n")
    with pytest.raises(InputError) as e:
        fs.read_fs_label(p, 10)
    assert one_line(e, p).endswith("FreeSurfer label file's header says 8 vertices but it lists 6: the file is "
                                   "truncated or corrupted")
    p.write_text("#!ascii label\n2147483647\n" + "\n".join(rows) + "\n")
    with pytest.raises(InputError, match="header says 2147483647 vertices but it lists 8"):
        fs.read_fs_label(p, 10)
    p.write_text("#!ascii label\nabc\n" + "\n".join(rows) + "\n")
    with pytest.raises(InputError, match="second line should be its number of vertices, not 'abc'"):
        fs.read_fs_label(p, 10)
    p.write_text("#!ascii label\n1\n" + rows[3] + "\n")  # one row: still a label
    np.testing.assert_array_equal(np.flatnonzero(fs.read_fs_label(p, 10)), [3])


def test_a_label_of_no_vertices_is_read_without_numpy_s_warning(tmp_path):
    """A label whose header says 0 and lists nothing printed numpy's `warning: loadtxt: input contained
    no data: "..."` as a line of its own before the run's verdict on the empty mask."""
    p = tmp_path / "lh.cortex.label"
    p.write_text("#!ascii label  , from subject bert vox2ras=TkReg\n0\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mask = fs.read_fs_label(p, 10)
    assert mask.shape == (10,) and not mask.any()


def _volume_geometry(filename: bytes, drop: bytes = b"") -> bytes:
    """The footer FreeSurfer writes after a surface's triangles: TAG_OLD_USEREALRAS (2, value 0), then
    TAG_OLD_SURF_GEOM (20) and its eight text lines; ``drop``: a line left out."""
    lines = [b"valid = 1  # volume info valid", b"filename = " + filename, b"volume = 256 256 256",
             b"voxelsize = 1.000000000000000e+00 1.000000000000000e+00 1.000000000000000e+00",
             b"xras   = -1.000000000000000e+00 0.000000000000000e+00 0.000000000000000e+00",
             b"yras   = 0.000000000000000e+00 0.000000000000000e+00 -1.000000000000000e+00",
             b"zras   = 0.000000000000000e+00 1.000000000000000e+00 0.000000000000000e+00",
             b"cras   = 1.500000000000000e+00 2.000000000000000e+00 -3.000000000000000e+00"]
    return np.array([2, 0, 20], ">i4").tobytes() + b"".join(x + b"\n" for x in lines if not x.startswith(drop or b"\0"))


@pytest.mark.parametrize("footer", [_volume_geometry(b"/scratch/job=42/sub-01/mri/filled-pretess255.mgz"),
                                    _volume_geometry("/home/jos\u00e9/sub-01/mri/filled.mgz".encode("latin-1")),
                                    _volume_geometry(b"/data/sub-01/mri/filled.mgz", drop=b"cras")],
                         ids=["equals-sign-in-volume-path", "latin-1-volume-path", "cras-line-left-out"])
def test_a_surface_whose_volume_geometry_footer_nibabel_cannot_parse_is_read(tmp_path, footer):
    """FreeSurfer reads its volume-geometry lines one by one with sscanf; nibabel splits each on '=' and
    decodes UTF-8, so a sphere made from a volume under /scratch/job=42/ (or a Latin-1 path, or with a
    line missing) was refused as 'FreeSurfer surface is corrupted (OSError: Error parsing volume info.)'.
    The mesh is read; the footer, which describes the volume and not the mesh, is left out."""
    v = np.array([[100, 0, 0], [0, 100, 0], [0, 0, 100], [-100, 0, 0]], dtype=np.float64)
    f = np.array([[0, 1, 2], [0, 2, 3], [1, 3, 2], [0, 3, 1]])
    path = tmp_path / "lh.sphere"
    nfs.write_geometry(str(path), v, f)
    path.write_bytes(path.read_bytes() + footer)
    got_v, got_f, meta = fs.read_fs_surface(path)
    np.testing.assert_array_equal(got_v, v)
    np.testing.assert_array_equal(got_f, f)
    assert meta == {}
    stamped = tmp_path / "lh.sphere.latin1"   # a "created by" line in Latin-1 (a user name with an accent)
    stamped.write_bytes(b"\xff\xff\xfe" + "created by jos\u00e9 on Mon Dec  7 2026".encode("latin-1")
                        + path.read_bytes()[path.read_bytes().index(b"\n"):])
    np.testing.assert_array_equal(fs.read_fs_surface(stamped)[0], v)
    readable = tmp_path / "rh.sphere"   # the same footer with an ordinary path is still read into meta
    nfs.write_geometry(str(readable), v, f)
    readable.write_bytes(readable.read_bytes() + _volume_geometry(b"/data/sub-01/mri/filled.mgz"))
    assert fs.read_fs_surface(readable)[2]["filename"] == "/data/sub-01/mri/filled.mgz"


def test_a_created_by_line_ending_in_one_newline_is_read_as_freesurfer_reads_it(tmp_path):
    """Twenty-second session (fix-av): FreeSurfer writes the "created by" line with two newlines and reads it
    with fgets then fscanf(fp, "\\n"), which skips any whitespace: a surface whose line ends in one newline (a
    third-party writer's) is read by FreeSurfer. Here (and in nibabel, which reads two lines) the header was
    looked for after a second newline in the coordinates' bytes: 'header gives 744309960 vertices and -955431402
    triangles; the file is corrupted' (a 162-vertex sphere), or 'truncated'. It is now read as FreeSurfer reads
    it, the mesh exactly, and so is the vertex count."""
    v = np.array([[100, 0, 0], [0, 100, 0], [0, 0, 100], [-100, 0, 0]], dtype=np.float64)
    f = np.array([[0, 1, 2], [0, 2, 3], [1, 3, 2], [0, 3, 1]])
    two = tmp_path / "two" / "lh.sphere"
    two.parent.mkdir()
    nfs.write_geometry(str(two), v, f, create_stamp="created by someone on Mon Dec  7 2026")
    raw = two.read_bytes()
    end = raw.index(b"\n\n")
    for name, header in (("one", b"\n"), ("three", b"\n\n\n"), ("crlf", b"\r\n")):
        path = tmp_path / name / "lh.sphere"
        path.parent.mkdir()
        path.write_bytes(raw[:end] + header + raw[end + 2:])
        assert fs.triangle_header(path.read_bytes()) == (4, 4, end + len(header) + 8), name
        got_v, got_f, meta = fs.read_fs_surface(path)
        np.testing.assert_array_equal(got_v, v)
        np.testing.assert_array_equal(got_f, f)
        assert meta == {} and fs.read_fs_vertex_count(path) == 4
    assert fs.triangle_header(raw) == (4, 4, end + 10)   # FreeSurfer's own: as before, nibabel reads it
    np.testing.assert_array_equal(fs.read_fs_surface(two)[0], v)


def _cube_sphere(n: int = 6, radius: float = 100.0) -> tuple[np.ndarray, np.ndarray]:
    """A quadrangle sphere: a cube of n x n quadrangles a side projected onto radius ``radius`` (mm).
    Returns (V, 3) float64 vertices and (Q, 4) int quadrangles wound outward."""
    pts = np.stack(np.meshgrid(*(np.arange(n + 1),) * 3, indexing="ij"), -1).reshape(-1, 3)
    boundary = ((pts == 0) | (pts == n)).any(1)
    index = -np.ones(len(pts), int)
    index[boundary] = np.arange(boundary.sum())
    index = index.reshape((n + 1,) * 3)
    verts = pts[boundary] - n / 2
    verts = radius * verts / np.linalg.norm(verts, axis=1, keepdims=True)
    quads = []
    for axis in range(3):
        u, w = (a for a in range(3) if a != axis)
        for side in (0, n):
            for i in range(n):
                for j in range(n):
                    corners = []
                    for di, dj in ((0, 0), (1, 0), (1, 1), (0, 1)):
                        c = [0, 0, 0]
                        c[axis], c[u], c[w] = side, i + di, j + dj
                        corners.append(index[tuple(c)])
                    quads.append(corners)
    quads = np.array(quads)
    a, b, d = verts[quads[:, 0]], verts[quads[:, 1]], verts[quads[:, 3]]
    inward = np.einsum("ij,ij->i", np.cross(b - a, d - a), a) < 0
    quads[inward] = quads[inward][:, ::-1]
    return verts, quads


def _quad_file(verts: np.ndarray, quads: np.ndarray, new: bool) -> bytes:
    """The bytes of a FreeSurfer quadrangle surface: magic 0xFFFFFD with float32 coordinates (``new``), else
    0xFFFFFF with int16 hundredths of a millimetre; 3-byte counts and vertex numbers."""
    three = lambda x: np.asarray(x, ">u4").reshape(-1, 1).view(">u1")[:, 1:].tobytes()  # noqa: E731
    coords = np.asarray(verts, ">f4") if new else np.round(np.asarray(verts) * 100).astype(">i2")
    return ((b"\xff\xff\xfd" if new else b"\xff\xff\xff") + three(len(verts)) + three(len(quads))
            + coords.tobytes() + three(quads.reshape(-1)))


@pytest.mark.parametrize("new", [False, True], ids=["quad-0xFFFFFF-int16", "new-quad-0xFFFFFD-float32"])
def test_an_old_quadrangle_surface_is_read_as_freesurfer_and_nibabel_read_it(tmp_path, new, one_line):
    """A sphere in FreeSurfer's quadrangle format (FreeSurfer before 2.0; FreeSurfer 7 and nibabel still read
    it) was refused: 'magic number 0xFFFFFF is a FreeSurfer morphometry file (e.g. lh.sulc) or an obsolete
    quadrangle surface ...; pass the surface (lh.sphere)', naming the very file given. It is now read, each
    quadrangle split into the two triangles FreeSurfer (and nibabel) make of it; a cut-short one says so."""
    from geomorph_bids.io.surfaces import read_sphere

    verts, quads = _cube_sphere()
    path = tmp_path / "lh.sphere"
    path.write_bytes(_quad_file(verts, quads, new))
    v, f, meta = fs.read_fs_surface(path)
    ref_v, ref_f = nfs.read_geometry(str(path))
    np.testing.assert_array_equal(v, ref_v)
    np.testing.assert_array_equal(f, ref_f)
    assert v.shape == (218, 3) and f.shape == (2 * 216, 3) and meta == {}
    np.testing.assert_allclose(v, verts, atol=0.005 if not new else 1e-4)
    sphere = read_sphere(path)
    assert sphere.n_vertices == 218 and np.allclose(np.linalg.norm(sphere.vertices, axis=1), 100, atol=0.01)
    assert fs.read_fs_vertex_count(path) == 218
    with pytest.raises(InputError, match="is a FreeSurfer quadrangle surface"):   # given as a map
        fs.read_fs_morph(path)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(InputError) as e:
        fs.read_fs_surface(path)
    size = len(path.read_bytes())
    assert one_line(e, path).endswith(
        f"magic number 0x{'FFFFFD' if new else 'FFFFFF'} is a FreeSurfer quadrangle surface's or morphometry file's, "
        f"but its {size} bytes fit neither (as a quadrangle surface: 218 vertices, 216 quadrangles); the file is "
        "truncated or corrupted")


@pytest.mark.parametrize("head, what", [(b"P 0.3 0.3 0.4 10 1 81924\n", "an MNI .obj surface (CIVET's format)"),
                                        (b"# vtk DataFile Version 3.0\n", "a VTK file"),
                                        (b"#!ascii version of lh.sphere\n", "a FreeSurfer ASCII file (.asc)"),
                                        (b"ply\nformat ascii 1.0\n", "a PLY file"),
                                        (b"2.31\n1.97\n3.02\n2.5\n",
                                         "a text file of numbers (a CIVET .txt map, one value per vertex?)")],
                         ids=["civet-obj", "vtk", "freesurfer-ascii", "ply", "civet-txt"])
def test_surfaces_and_maps_of_formats_read_nowhere_here_are_named(tmp_path, head, what, one_line):
    """CIVET's .obj surfaces and .txt maps, VTK, PLY and FreeSurfer ASCII files given as a sphere or a map
    were 'not a FreeSurfer triangle surface: magic number 0x502030 ...; the file is corrupted or of another
    format', as if damaged. The line now says which format it is and to convert it to GIFTI."""
    path = tmp_path / "lh.sphere"
    path.write_bytes(head + b"1.0 2.0 3.0\n" * 3)
    tail = (f": it is {what}, a format not read here; convert it to GIFTI (.surf.gii for a surface, .shape.gii "
            "for a map: mris_convert reads VTK, STL and ASCII surfaces; nibabel writes GIFTI from numbers)")
    with pytest.raises(InputError) as e:
        fs.read_fs_surface(path)
    assert one_line(e, path).endswith(tail)
    with pytest.raises(InputError) as e:
        fs.read_fs_morph(path)
    assert one_line(e, path).endswith(tail)
    path.write_bytes(b"\x12\x34\x56" + bytes(range(200)))       # binary bytes of no format: as before
    with pytest.raises(InputError, match="the file is corrupted or of another format"):
        fs.read_fs_surface(path)

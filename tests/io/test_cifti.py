"""CIFTI-2 cortex columns scattered onto the full surface (geomorph_bids.io.cifti)."""

from __future__ import annotations

import numpy as np
import nibabel as nib
import pytest
from nibabel import cifti2

from geomorph_bids.errors import InputError
from geomorph_bids.io import cifti
from geomorph_bids.io.gifti import read_gifti_data

S1200 = "S1200.sulc_MSMAll.32k_fs_LR.dscalar.nii"


@pytest.fixture(scope="module")
def s1200(hcp_data):
    img = nib.load(str(hcp_data / S1200))
    return hcp_data / S1200, np.asarray(img.dataobj, dtype=np.float64)


@pytest.mark.parametrize("hemi,n_cortex,start", [("L", 29696, 0), ("R", 29716, 29696)])
def test_s1200_scatter(s1200, hemi, n_cortex, start):
    path, raw = s1200
    out = cifti.read_cifti_cortex(path, hemi)
    assert out.values.shape == (32492, 1) and out.mask.shape == (32492,)
    assert int(out.mask.sum()) == n_cortex
    assert out.names == ["S1200_sulc_MSMAll"]
    np.testing.assert_array_equal(out.values[out.mask, 0], raw[0, start:start + n_cortex])
    assert np.all(out.values[~out.mask] == 0.0)
    nan = cifti.read_cifti_cortex(path, hemi, fill=np.nan)
    assert int(np.isnan(nan.values).sum()) == 32492 - n_cortex


def test_hemi_names(s1200):
    a = cifti.read_cifti_cortex(s1200[0], "left").values
    b = cifti.read_cifti_cortex(s1200[0], "CortexLeft").values
    np.testing.assert_array_equal(a, b)


def _small_dlabel(tmp_path, structures=("CortexLeft",)):
    n = 20
    bm = None
    for s in structures:
        part = cifti2.BrainModelAxis.from_mask(np.arange(n) % 4 != 0, name=s)   # 15 of 20 vertices
        bm = part if bm is None else bm + part
    keys = {0: ("???", (0, 0, 0, 0)), 3: ("V1", (1, 0, 0, 1)), 8: ("MT", (0, 1, 0, 1))}
    lab = cifti2.LabelAxis(["areas"], [keys])
    data = np.tile(np.array([3, 8, 0], dtype=np.float32), len(bm) // 3 + 1)[: len(bm)][None]
    p = tmp_path / "x.dlabel.nii"
    cifti2.Cifti2Image(data, header=(lab, bm)).to_filename(str(p))
    return p, data


def test_dlabel(tmp_path):
    p, data = _small_dlabel(tmp_path)
    labels, table = cifti.read_cifti_labels(p, "L", fill=-1)
    assert labels.shape == (20,)
    assert np.all(labels[::4] == -1)
    np.testing.assert_array_equal(labels[np.arange(20) % 4 != 0], data[0].astype(int))
    assert table[3][0] == "V1" and table[8][0] == "MT" and table[3][1] == (1.0, 0.0, 0.0, 1.0)


def test_missing_structure(tmp_path, one_line):
    p, _ = _small_dlabel(tmp_path)
    with pytest.raises(InputError) as e:
        cifti.read_cifti_cortex(p, "R")
    assert "has no CIFTI_STRUCTURE_CORTEX_RIGHT brain model (structures: CIFTI_STRUCTURE_CORTEX_LEFT)" \
        in one_line(e, p)


def test_dscalar_not_label(s1200):
    with pytest.raises(InputError, match="not a CIFTI label file"):
        cifti.read_cifti_labels(s1200[0], "L")


def test_cifti1_refused(tmp_path, hcp_data, one_line):
    raw = (hcp_data / S1200).read_bytes()
    assert raw.count(b'<CIFTI Version="2"') == 1
    p = tmp_path / "old.dscalar.nii"
    p.write_bytes(raw.replace(b'<CIFTI Version="2"', b'<CIFTI Version="1"'))
    with pytest.raises(InputError) as e:
        cifti.read_cifti_cortex(p, "L")
    msg = one_line(e, p)
    assert "CIFTI-1" in msg
    assert "wb_command -file-convert -cifti-version-convert old.dscalar.nii 2 old_cifti2.dscalar.nii" in msg


@pytest.mark.wb
def test_cifti1_from_workbench(tmp_path, hcp_data, wb_command):
    p = tmp_path / "v1.dscalar.nii"
    wb_command("-file-convert", "-cifti-version-convert", hcp_data / S1200, "1", p)
    with pytest.raises(InputError, match="CIFTI-1 file.*-cifti-version-convert"):
        cifti.read_cifti_cortex(p, "L")
    back = tmp_path / "v2.dscalar.nii"
    wb_command("-file-convert", "-cifti-version-convert", p, "2", back)
    assert int(cifti.read_cifti_cortex(back, "L").mask.sum()) == 29696


@pytest.mark.wb
@pytest.mark.parametrize("hemi,structure", [("L", "CORTEX_LEFT"), ("R", "CORTEX_RIGHT")])
def test_matches_workbench_separate(tmp_path, s1200, wb_command, hemi, structure):
    out = tmp_path / f"{hemi}.func.gii"
    roi = tmp_path / f"{hemi}.roi.func.gii"
    wb_command("-cifti-separate", s1200[0], "COLUMN", "-metric", structure, out, "-roi", roi)
    ours = cifti.read_cifti_cortex(s1200[0], hemi)
    np.testing.assert_array_equal(ours.values, read_gifti_data(out)[0])
    np.testing.assert_array_equal(ours.mask, read_gifti_data(roi)[0][:, 0] > 0)


def test_truncated(tmp_path, hcp_data, one_line):
    raw = (hcp_data / S1200).read_bytes()
    p = tmp_path / "half.dscalar.nii"
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError) as e:
        cifti.read_cifti_cortex(p, "L")
    assert "truncated or corrupted" in one_line(e, p)


def test_nifti_volume_refused(tmp_path):
    p = tmp_path / "vol.nii"
    nib.Nifti1Image(np.zeros((3, 3, 3), np.float32), np.eye(4)).to_filename(str(p))
    with pytest.raises(InputError, match="Nifti1Image, not a CIFTI-2 file"):
        cifti.load_cifti(p)
    e = tmp_path / "empty.dscalar.nii"
    e.write_bytes(b"")
    with pytest.raises(InputError, match="is empty"):
        cifti.load_cifti(e)


def test_data_shorter_than_its_brain_model_is_refused(tmp_path):
    """Found by fuzzing (tests/io/test_fuzz.py): a header whose column count was damaged so that
    the brain model lists more vertices than the data hold gave a numpy broadcast error."""
    import struct

    import nibabel as nib
    from nibabel import cifti2

    from geomorph_bids.errors import InputError
    from geomorph_bids.io.cifti import read_cifti_cortex

    bm = cifti2.BrainModelAxis.from_mask(np.arange(42) % 4 != 0, name="CortexLeft")
    path = tmp_path / "x.dscalar.nii"
    cifti2.Cifti2Image(np.ones((1, len(bm)), np.float32), header=(cifti2.ScalarAxis(["sulc"]), bm)).to_filename(path)
    raw = bytearray(path.read_bytes())
    dims = list(struct.unpack_from("<8q", raw, 16))
    k = dims.index(len(bm))
    struct.pack_into("<q", raw, 16 + 8 * k, len(bm) - 1)        # one column fewer than the model
    path.write_bytes(bytes(raw))
    assert nib.load(str(path)).shape[-1] == len(bm) - 1
    with pytest.raises(InputError, match="truncated or corrupted"):
        read_cifti_cortex(path, "L")


@pytest.mark.parametrize("n_surface, n_maps, match", [
    (200_000_000, 1, "accepts at most 2097152 vertices"),   # before: 1.6 GB allocated (8 s), then a count error
    (2_000_000, 100, "with 100 maps: 200000000 values"),     # a dtseries: 1.6 GB for a 4 KB file
])
def test_a_surface_size_the_data_do_not_back_is_refused_before_allocating(tmp_path, one_line, n_surface, n_maps,
                                                                          match):
    """The header's SurfaceNumberOfVertices sets the size of the scattered map, not the data the
    file holds: a few-KB file claiming a huge surface is refused before anything is allocated."""
    import resource

    bm = cifti2.BrainModelAxis("CortexLeft", vertex=np.arange(10), nvertices={"CortexLeft": n_surface})
    path = tmp_path / "liar.dscalar.nii"
    cifti2.Cifti2Image(np.ones((n_maps, 10), np.float32),
                       header=(cifti2.ScalarAxis([f"m{i}" for i in range(n_maps)]), bm)).to_filename(path)
    assert path.stat().st_size < 20_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InputError, match=match) as e:
        cifti.read_cifti_cortex(path, "L")
    assert "header is corrupted" in one_line(e, str(path))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024  # KiB


def test_a_dscalar_of_both_hemispheres_cut_in_the_right_s_values_is_refused_for_either(tmp_path, one_line):
    """Found by the fuzz pass (fix-ak): a dscalar of both hemispheres cut short inside the right
    hemisphere's values was read for hemi L (its values lie before the cut: the data are read a slice at
    a time), so `geomorph-register --hemi L` registered from a damaged file, exit 0. Now refused for
    either hemisphere, saying how many bytes the header needs."""
    n = 200
    bm = (cifti2.BrainModelAxis.from_mask(np.ones(n, bool), name="CortexLeft")
          + cifti2.BrainModelAxis.from_mask(np.ones(n, bool), name="CortexRight"))
    img = cifti2.Cifti2Image(np.linspace(-1, 1, 2 * n, dtype=np.float32)[None], header=(cifti2.ScalarAxis(["sulc"]), bm))
    p = tmp_path / "sub-01_sulc.dscalar.nii"
    img.to_filename(str(p))
    raw = p.read_bytes()
    assert np.allclose(cifti.read_cifti_cortex(p, "L").values[:, 0], np.linspace(-1, 1, 2 * n)[:n], atol=1e-6)
    p.write_bytes(raw[:-100])
    for hemi in ("L", "R"):
        with pytest.raises(InputError) as e:
            cifti.read_cifti_cortex(p, hemi)
        assert one_line(e, p).endswith(f"CIFTI file is truncated or corrupted: {len(raw) - 100} bytes, its header "
                                       f"(1 x {2 * n} float32 values) needs {len(raw)}")


def test_a_dscalar_declaring_two_billion_vertices_is_refused_before_any_allocation(tmp_path, one_line, monkeypatch):
    """Found by the fuzz pass (fix-ak): a brain model's IndexCount edited to 2147483647 made nibabel
    allocate (2147493889, 3) int64, 48 GiB, while parsing the header (a MemoryError under the fuzz's
    memory limit; without one, that much memory asked for). Now refused from the header's text."""
    n = 50
    bm = cifti2.BrainModelAxis.from_mask(np.ones(n, bool), name="CortexLeft")
    img = cifti2.Cifti2Image(np.zeros((1, n), np.float32), header=(cifti2.ScalarAxis(["sulc"]), bm))
    p = tmp_path / "sub-01_sulc.dscalar.nii"
    img.to_filename(str(p))
    raw = p.read_bytes()
    assert b'IndexCount="50"' in raw
    p.write_bytes(raw.replace(b'IndexCount="50"', b'IndexCount="2147483647"', 1))

    def no_parse(*_a, **_k):
        raise AssertionError("parsed the header")

    monkeypatch.setattr(cifti2.Cifti2Image, "from_bytes", no_parse)
    with pytest.raises(InputError) as e:
        cifti.read_cifti_cortex(p, "L")
    assert one_line(e, p).endswith("CIFTI header declares IndexCount=2147483647; geomorph-bids accepts at most "
                                   "2097152 vertices: the header is corrupted")


def test_the_dscalar_names_its_intent_as_workbench_and_hcp_do(tmp_path, s1200):
    """Twenty-third session: our dscalar's NIfTI-2 header had intent code 3006 but an empty
    ``intent_name``, where the CIFTI-2 standard's table and every Workbench/HCP dscalar (S1200's
    here) have ``ConnDenseScalar``."""
    out = cifti.write_dscalar(tmp_path / "x.dscalar.nii", {h: np.ones((642, 1)) for h in "LR"},
                              {h: np.ones(642, bool) for h in "LR"}, ["sulc"])
    ours, hcp = nib.load(str(out)).nifti_header, nib.load(str(s1200[0])).nifti_header
    assert (int(ours["intent_code"]), ours["intent_name"].item()) == (3006, b"ConnDenseScalar")
    assert (int(hcp["intent_code"]), hcp["intent_name"].item()) == (3006, b"ConnDenseScalar")

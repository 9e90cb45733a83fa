"""What sMRIPrep provides beside the sphere (midthickness, cortex mask) found and read, and the
files --fmriprep-compat and --cifti-output add (io.fmriprep_compat, io.cifti.write_dscalar)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from geomorph_bids.errors import InputError
from geomorph_bids.io import read_surface, write_labels, write_metric, write_surface
from geomorph_bids.io.cifti import read_cifti_cortex
from geomorph_bids.io.discover import SurfaceWarning, discover
from geomorph_bids.io.fmriprep_compat import fmriprep_spheres, sphere_reg_fslr, write_features_cifti
from geomorph_bids.io.hemisphere import read_hemisphere
from geomorph_bids.io.surfaces import read_mask
from geomorph_bids.io.templates import load_atlas_roi
from geomorph_bids.sphere.icosphere import icosphere

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ds-smriprep-example"
V, F = (np.asarray(a) for a in icosphere(3))  # 642 vertices


def _mask(n: int = len(V)) -> np.ndarray:
    m = np.ones(n, dtype=bool)
    m[: n // 10] = False
    return m


def test_example_inputs_are_found_per_session():
    """The sMRIPrep example: each session's sphere, desc-reg sphere, midthickness and cortex mask."""
    for session in ("1", "2"):
        found = discover("01", EXAMPLE, session=session, hemis=("L", "R"))
        for h in "LR":
            x = found.hemis[h]
            stem = f"sub-01_ses-{session}_hemi-{h}"
            assert x.session == session and x.source == "smriprep"
            assert x.midthickness.name == f"{stem}_midthickness.surf.gii"
            assert x.cortex_mask.name == f"{stem}_desc-cortex_mask.label.gii"
            assert x.sphere_reg.name == f"{stem}_space-fsaverage_desc-reg_sphere.surf.gii"
            assert x.surface_kind == "midthickness"


def test_example_is_what_smriprep_itself_collects():
    """sMRIPrep's own collect_derivatives (as fMRIPrep 25.2 calls it, sessionwise) finds every surface
    of the example under its io_spec keys, left then right, session by session (white and pial are
    left out of the example: nothing here reads them)."""
    from smriprep.utils.bids import collect_derivatives

    keys = {"midthickness", "sphere", "sphere_reg", "sphere_reg_fsLR", "sulc", "curv", "thickness", "cortex_mask"}
    for session in ("1", "2"):
        found = collect_derivatives(EXAMPLE / "derivatives" / "smriprep", "01", std_spaces=[], session_id=[session])
        assert keys <= set(found) and "sphere_reg_msm" not in found
        for key in keys:
            assert [f"ses-{session}_hemi-{h}_" in Path(p).name for h, p in zip("LR", found[key])] == [True, True], key


def test_freesurfer_and_hcp_midthickness_and_cortex(tmp_path):
    fs = tmp_path / "bids" / "derivatives" / "freesurfer" / "sub-01"
    (fs / "surf").mkdir(parents=True)
    (fs / "label").mkdir()
    import nibabel.freesurfer as nfs

    nfs.write_geometry(str(fs / "surf" / "lh.sphere"), V.astype(np.float32), F.astype(np.int32))
    nfs.write_geometry(str(fs / "surf" / "lh.midthickness"), (V * 0.7).astype(np.float32), F.astype(np.int32))
    nfs.write_morph_data(str(fs / "surf" / "lh.sulc"), np.linspace(-1, 1, len(V)).astype(np.float32))
    (fs / "label" / "lh.cortex.label").write_text("#!ascii label\n3\n" + "".join(
        f"{i} 0 0 0 0\n" for i in (1, 2, 3)))
    found = discover("01", tmp_path / "bids", hemis=("L",)).hemis["L"]
    assert found.midthickness == fs / "surf" / "lh.midthickness"
    assert found.cortex_mask == fs / "label" / "lh.cortex.label"
    hcp = tmp_path / "hcp" / "sub-02" / "MNINonLinear" / "Native"
    hcp.mkdir(parents=True)
    for s in ("sphere", "midthickness"):
        write_surface(hcp / f"sub-02.L.{s}.native.surf.gii", V if s == "sphere" else V * 0.7, F, hemi="L")
    write_metric(hcp / "sub-02.L.sulc.native.shape.gii", np.linspace(-1, 1, len(V)), hemi="L")
    write_metric(hcp / "sub-02.L.roi.native.shape.gii", _mask().astype(np.float32), hemi="L")
    found = discover("02", tmp_path / "bids", derivatives={"hcp": tmp_path / "hcp"}, hemis=("L",)).hemis["L"]
    assert found.midthickness.name == "sub-02.L.midthickness.native.surf.gii"
    assert found.cortex_mask.name == "sub-02.L.roi.native.shape.gii"
    assert read_mask(found.cortex_mask, len(V)).sum() == _mask().sum()


def test_a_midthickness_of_another_mesh_is_dropped_with_a_warning(tmp_path):
    anat = tmp_path / "bids" / "derivatives" / "smriprep" / "sub-01" / "anat"
    anat.mkdir(parents=True)
    write_surface(anat / "sub-01_hemi-L_sphere.surf.gii", V, F, hemi="L")
    write_metric(anat / "sub-01_hemi-L_sulc.shape.gii", np.linspace(-1, 1, len(V)), hemi="L")
    v2, f2 = icosphere(2)
    write_surface(anat / "sub-01_hemi-L_midthickness.surf.gii", np.asarray(v2) * 0.7, f2, hemi="L")
    with pytest.warns(SurfaceWarning, match="midthickness surface .* ignored"):
        found = discover("01", tmp_path / "bids", hemis=("L",)).hemis["L"]
    assert found.midthickness is None


@pytest.mark.parametrize("kind", ["smriprep", "labels", "freesurfer"])
def test_read_mask_formats(tmp_path, kind):
    mask = _mask()
    if kind == "smriprep":  # what sMRIPrep writes: 0/1 floats (a metric) named .label.gii
        path = write_metric(tmp_path / "sub-01_hemi-L_desc-cortex_mask.label.gii", mask.astype(np.float32), hemi="L",
                            intent="NIFTI_INTENT_NONE")
    elif kind == "labels":
        path = write_labels(tmp_path / "cortex.label.gii", mask.astype(np.int32), {0: "???", 1: "cortex"}, hemi="L")
    else:
        path = tmp_path / "lh.cortex.label"
        idx = np.flatnonzero(mask)
        path.write_text(f"#!ascii\n{len(idx)}\n" + "".join(f"{i} 0 0 0 0\n" for i in idx))
    assert np.array_equal(read_mask(path, len(V)), mask)


def test_read_mask_refuses_what_is_no_cortex_mask(tmp_path, one_line):
    inverted = write_metric(tmp_path / "inverted.label.gii", (~_mask()).astype(np.float32), hemi="L")
    with pytest.raises(InputError, match=r"covers 10\.\d% of the vertices") as err:
        read_mask(inverted, len(V))
    one_line(err, inverted)
    with pytest.raises(InputError, match="vertices but the sphere has"):
        read_mask(write_metric(tmp_path / "short.label.gii", np.ones(10), hemi="L"), len(V))


def test_hemisphere_loader_reads_midthickness_and_mask(tmp_path, one_line):
    write_surface(tmp_path / "sphere.surf.gii", V, F, hemi="L")
    write_metric(tmp_path / "sulc.shape.gii", np.linspace(-1, 1, len(V)), hemi="L")
    write_surface(tmp_path / "mid.surf.gii", V * 0.7, F[:, ::-1], hemi="L")  # winding does not matter
    write_metric(tmp_path / "mask.label.gii", _mask().astype(np.float32), hemi="L")
    h = read_hemisphere(tmp_path / "sphere.surf.gii", {"sulc": tmp_path / "sulc.shape.gii"},
                        midthickness=tmp_path / "mid.surf.gii", cortex_mask=tmp_path / "mask.label.gii")
    assert np.allclose(h.midthickness.vertices, V * 0.7, atol=1e-4) and np.array_equal(h.cortex, _mask())
    other = np.asarray(F).copy()
    other[0] = other[5]  # another triangle list (a duplicated triangle)
    write_surface(tmp_path / "bad.surf.gii", V * 0.7, other, hemi="L")
    with pytest.raises(InputError, match="other triangles") as err:
        read_hemisphere(tmp_path / "sphere.surf.gii", {"sulc": tmp_path / "sulc.shape.gii"},
                        midthickness=tmp_path / "bad.surf.gii")
    one_line(err, tmp_path / "bad.surf.gii")


def test_sphere_reg_fslr_is_smripreps_deformation(atlases, load_surface):
    """fsaverage's own sphere carried into fsLR is the deformed sphere sMRIPrep ships."""
    fs = load_surface(atlases / "fs_R" / "fsaverage.R.sphere.164k_fs_R.surf.gii")
    lr = load_surface(atlases / "fs_R" / "fs_R-to-fs_LR_fsaverage.R_LR.spherical_std.164k_fs_R.surf.gii")
    moved, source = sphere_reg_fslr(fs[0][:2000], "R")
    radius = np.linalg.norm(fs[0][:2000], axis=1, keepdims=True)
    expected = lr[0][:2000] / np.linalg.norm(lr[0][:2000], axis=1, keepdims=True) * radius
    assert np.abs(moved - expected).max() < 1e-3 and "fs_R-to-fs_LR" in source


def test_only_fslr_and_fsaverage_have_smriprep_names():
    assert set(fmriprep_spheres("fsLR")) == {"sphere_reg_msm"}
    assert set(fmriprep_spheres("fsaverage")) == {"sphere_reg", "sphere_reg_fsLR"}
    with pytest.raises(InputError, match="fsLR and fsaverage space only"):
        fmriprep_spheres("geomorphPopulation")


def test_features_cifti_round_trip(tmp_path):
    """Two features of both hemispheres -> one dscalar: the atlas ROI's vertices only, values kept."""
    rng = np.random.default_rng(0)
    files = {h: [] for h in "LR"}
    values = {}
    for h in "LR":
        values[h] = rng.normal(size=(32492, 2))
        for k, f in enumerate(("sulc", "curv")):
            files[h].append(write_metric(tmp_path / f"{h}_{f}.shape.gii", values[h][:, k].astype(np.float32), hemi=h))
    out, info = write_features_cifti(tmp_path / "x.dscalar.nii", files["L"], files["R"], ["sulc", "curv"], "32k")
    img = nib.load(str(out))
    assert img.shape == (2, 59412) and list(img.header.get_axis(0).name) == ["sulc", "curv"]
    assert info["n_vertices"] == {"L": 29696, "R": 29716}
    for h in "LR":
        c = read_cifti_cortex(out, h)
        roi, _ = load_atlas_roi(h, "32k")
        assert np.array_equal(c.mask, roi)
        assert np.allclose(c.values[roi], values[h][roi].astype(np.float32))
    with pytest.raises(ValueError, match="atlas ROI exists for"):
        write_features_cifti(tmp_path / "y.dscalar.nii", files["L"], files["R"], ["sulc", "curv"], "164k")


def test_the_swap_in_gate_passes_a_good_registration_and_replaces_or_refuses_a_flagged_one(tmp_path):
    """init_geomorph_sulc_wf's gate (gate_swapped_sphere): the BIDS-App's verdict decides; a flagged
    hemisphere passes on the sphere_reg_fsLR input with the reasons in its GIFTI metadata, or fails
    naming subject, session and hemisphere."""
    import nibabel as nib

    from geomorph_bids.io.fmriprep_compat import FLAGGED_SPHERE_META, FlaggedRegistration, gate_swapped_sphere

    ours = write_surface(tmp_path / "ours.surf.gii", V * 100, F, hemi="L")
    theirs = write_surface(tmp_path / "theirs.surf.gii", V[:, [1, 0, 2]] * 100, F, hemi="L")
    source = "/d/sub-07_ses-2_hemi-L_sulc.shape.gii"
    good = {"registration_features": ["sulc"], "cc_sulc_after": 0.93, "areal_p95_abs": 0.3, "n_folded": 0}
    bad = {**good, "cc_sulc_after": 0.31}
    path, q = gate_swapped_sphere(ours, theirs, good, "L", source, tmp_path)
    assert path == ours and q["flagged"] is False and q["used"] == "geomorph" and q["message"] == ""

    path, q = gate_swapped_sphere(ours, theirs, bad, "L", source, tmp_path / "fb")
    assert q["flagged"] and q["used"] == "sphere_reg_fsLR"
    assert q["message"].startswith("sub-07 ses-2 hemi-L: GeoMorph's registration to fsLR is FLAGGED by the quality "
                                   "gates: correlation: sulc correlates 0.310")
    assert np.allclose(read_surface(path).vertices, V[:, [1, 0, 2]] * 100, atol=1e-4)
    meta = dict(nib.load(path).darrays[0].meta)
    assert meta[FLAGGED_SPHERE_META].startswith("FLAGGED: correlation: sulc correlates 0.310")
    # the BIDS-App's --min-cc as thresholds: the same record passes at 0.3
    assert not gate_swapped_sphere(ours, theirs, bad, "L", source, tmp_path, thresholds={"min_cc_after": 0.3})[1]["flagged"]

    with pytest.raises(FlaggedRegistration, match=r"^sub-07 ses-2 hemi-L: GeoMorph's registration .* FLAGGED .*"
                                                  r"sulc correlates 0\.310"):
        gate_swapped_sphere(ours, theirs, bad, "L", source, tmp_path, on_flagged="error")
    with pytest.raises(FlaggedRegistration, match=r"^hemi-R \(rh\.sulc\.gii\): "):
        gate_swapped_sphere(ours, theirs, bad, "R", "rh.sulc.gii", tmp_path, on_flagged="error")
    with pytest.raises(ValueError, match="on_flagged must be one of fallback, error, got 'keep'"):
        gate_swapped_sphere(ours, theirs, good, "L", source, tmp_path, on_flagged="keep")

"""Carrying a sphere through a deformation (wb_command -surface-sphere-project-unproject) and
area-corrected resampling with anatomical surfaces (-metric-resample ... -area-surfs)."""

from __future__ import annotations

import numpy as np
import pytest

from geomorph_bids.io import read_feature, read_surface, write_metric, write_surface
from geomorph_bids.sphere.icosphere import icosphere
from geomorph_bids.sphere.project import project_unproject
from geomorph_bids.sphere.resample import area_surfaces, resample
from geomorph_bids.sphere.rotation import rotation_matrix


def test_project_unproject_follows_the_deformation():
    """A deformation that is a rotation moves every vertex by that rotation; the identity, not at all."""
    v, f = (np.asarray(a) for a in icosphere(4))
    rot = rotation_matrix(np.array([0.3, -0.2, 0.9]), 12.0)
    points = np.asarray(icosphere(3)[0]) @ rotation_matrix(np.array([1.0, 0.0, 0.0]), 7.0).T * 0.5  # radius 50
    assert np.allclose(project_unproject(points, (v, f), v), points, atol=1e-9)
    moved = project_unproject(points, (v, f), v @ rot.T)
    np.testing.assert_allclose(np.linalg.norm(moved, axis=1), 50.0, atol=1e-9)
    # a rotated mesh is a piecewise-linear chord approximation, exact at the input's own vertices
    assert np.degrees(np.arccos(np.clip(np.sum(moved * (points @ rot.T), axis=1) / 2500, -1, 1))).max() < 0.3


@pytest.mark.wb
def test_project_unproject_matches_workbench(atlases, load_surface, wb_command, tmp_path):
    """fsaverage -> fsLR through sMRIPrep's atlases, as its init_fsLR_reg_wf does with wb_command."""
    fs = load_surface(atlases / "fs_L" / "fsaverage.L.sphere.164k_fs_L.surf.gii")
    lr = load_surface(atlases / "fs_L" / "fs_L-to-fs_LR_fsaverage.L_LR.spherical_std.164k_fs_L.surf.gii")
    v, f = (np.asarray(a) for a in icosphere(5))
    sphere = v @ rotation_matrix(np.array([0.1, 0.5, -0.3]), 9.0).T
    write_surface(tmp_path / "in.surf.gii", sphere, f, hemi="L")
    wb_command("-surface-sphere-project-unproject", tmp_path / "in.surf.gii",
               atlases / "fs_L" / "fsaverage.L.sphere.164k_fs_L.surf.gii",
               atlases / "fs_L" / "fs_L-to-fs_LR_fsaverage.L_LR.spherical_std.164k_fs_L.surf.gii",
               tmp_path / "out.surf.gii")
    ours = project_unproject(sphere, fs, lr[0])
    assert np.abs(ours - read_surface(tmp_path / "out.surf.gii").vertices).max() < 1e-3  # mm, float32 files


@pytest.mark.wb
def test_area_surfaces_resampling_matches_workbench(fsaverage5, wb_command, tmp_path):
    """ADAP_BARY_AREA with a midthickness: the new-area surface is the midthickness carried onto
    the new sphere barycentrically (wb_command -surface-resample ... BARYCENTRIC), as sMRIPrep does."""
    import gzip

    import nibabel as nib

    def gii(name):
        return nib.GiftiImage.from_bytes(gzip.decompress((fsaverage5 / name).read_bytes()))

    sphere = gii("sphere_left.gii.gz")
    cur = (sphere.agg_data("NIFTI_INTENT_POINTSET").astype(np.float64),
           sphere.agg_data("NIFTI_INTENT_TRIANGLE").astype(np.int64))
    white = gii("white_left.gii.gz").agg_data("NIFTI_INTENT_POINTSET").astype(np.float64)
    pial = gii("pial_left.gii.gz").agg_data("NIFTI_INTENT_POINTSET").astype(np.float64)
    mid = 0.5 * (white + pial)
    sulc = gii("sulc_left.gii.gz").agg_data().astype(np.float64)
    v, f = (np.asarray(a, dtype=np.float64) for a in icosphere(4))
    new = (v @ rotation_matrix(np.array([0.2, 0.1, 1.0]), 5.0).T, np.asarray(f, dtype=np.int64))
    (current_area, new_area) = area_surfaces(cur, mid, new)
    ours = resample(sulc, cur, new, "adap_bary_area", current_area, new_area)
    write_surface(tmp_path / "cur.surf.gii", *cur, hemi="L")
    write_surface(tmp_path / "new.surf.gii", *new, hemi="L")
    write_surface(tmp_path / "mid.surf.gii", mid, cur[1], hemi="L", geometric_type="Anatomical")
    write_metric(tmp_path / "sulc.shape.gii", sulc, hemi="L")
    wb_command("-surface-resample", tmp_path / "mid.surf.gii", tmp_path / "cur.surf.gii", tmp_path / "new.surf.gii",
               "BARYCENTRIC", tmp_path / "mid_new.surf.gii")
    np.testing.assert_allclose(new_area[0], read_surface(tmp_path / "mid_new.surf.gii").vertices, atol=2e-3)
    wb_command("-metric-resample", tmp_path / "sulc.shape.gii", tmp_path / "cur.surf.gii", tmp_path / "new.surf.gii",
               "ADAP_BARY_AREA", tmp_path / "out.shape.gii", "-area-surfs", tmp_path / "mid.surf.gii",
               tmp_path / "mid_new.surf.gii")
    theirs = read_feature(tmp_path / "out.shape.gii")
    plain = resample(sulc, cur, new, "adap_bary_area")
    assert np.abs(ours - theirs).max() < 1e-3 * np.abs(sulc).max()
    assert np.abs(plain - theirs).max() > 10 * np.abs(ours - theirs).max()  # the area surfaces matter


def test_meshes_given_as_vertices_and_faces_pairs_are_read_as_their_vertices():
    """``project_unproject((v, f), (v, f), (w, f))`` and ``area_surfaces(cur, (mid, f), new)``:
    the docs pass every mesh as a (vertices, faces) pair, and these two raised numpy's "setting an
    array element with a sequence ... inhomogeneous shape". Same result as the vertices alone;
    faces of another mesh are refused naming the argument."""
    v, f = icosphere(3)
    moved = v @ rotation_matrix([0.2, 0.1, 1.0], 7.0).T
    points = icosphere(2)[0] * 0.5
    plain = project_unproject(points, (v, f), moved)
    np.testing.assert_array_equal(project_unproject((points, icosphere(2)[1]), (v, f), (moved, f)), plain)
    with pytest.raises(ValueError, match="unproject_from's faces are not project_to's"):
        project_unproject(points, (v, f), (moved, f[:, ::-1]))
    mid = v * 0.9
    new = icosphere(2)
    (_, _), (own, _) = area_surfaces((v, f), mid, new)
    (_, _), (paired, _) = area_surfaces((v, f), (mid, f), new)
    np.testing.assert_array_equal(paired, own)
    with pytest.raises(ValueError, match="faces are not the current sphere's"):
        area_surfaces((v, f), (mid, f[::-1]), new)

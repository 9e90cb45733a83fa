"""Bundled ico-6 templates: presence, shapes, sign convention, errors."""

from __future__ import annotations

import numpy as np
import pytest

from geomorph_bids.engine.prealign import correlation
from geomorph_bids.io.templates import available_templates, load_template
from geomorph_bids.sphere import SphereLocator, rotation_from_correspondence


def test_available_templates():
    assert available_templates() == {"fsLR": ["curv", "myelin", "sulc"], "fsaverage": ["curv", "sulc"]}


@pytest.mark.parametrize("hemi", ["L", "R"])
def test_fslr_multimodal_features_from_brainspace(hemi):
    """fsLR myelin and curvature come from brainspace's group maps, resampled onto ico-6:
    the medial wall is 0 (masked by the registration), curvature has FreeSurfer's sign
    (positive in sulci, like sulc), and myelin is the T1w/T2w ratio (~1-2.5)."""
    tpl = load_template("fsLR", hemi, ("sulc", "curv", "myelin"))
    myelin, curv, sulc = tpl.features["myelin"], tpl.features["curv"], tpl.features["sulc"]
    wall = myelin == 0
    assert 0.08 < wall.mean() < 0.12                   # fsLR's medial wall is ~10% of the sphere
    assert np.array_equal(wall, curv == 0)
    assert 0.7 < myelin[~wall].min() and myelin[~wall].max() < 2.5
    assert correlation(curv, sulc, ~wall) > 0.7       # negated from brainspace's HCP sign
    # the heavily myelinated sensorimotor and visual cortex sit above the median
    assert np.percentile(myelin[~wall], 95) > 1.1 * np.median(myelin[~wall])
    myelin[:] = 0                                     # the caller's copy: the cached map is untouched
    assert load_template("fsLR", hemi, ("myelin",)).features["myelin"].max() > 1.5


@pytest.mark.parametrize("name", ["fsLR", "fsaverage"])
@pytest.mark.parametrize("hemi", ["L", "R"])
def test_template_shapes(name, hemi):
    tpl = load_template(name, hemi)
    assert tpl.vertices.shape == (40962, 3) and tpl.faces.shape == (81920, 3)
    sulc = tpl.features["sulc"]
    assert sulc.shape == (40962,) and np.isfinite(sulc).all() and sulc.std() > 0.1


@pytest.mark.parametrize("hemi", ["L", "R"])
def test_fslr_template_has_freesurfer_sign(hemi, atlases, load_surface):
    """fsaverage sulc carried into fsLR by the reference rotation correlates positively with fsLR."""
    fs, _ = load_surface(atlases / f"fs_{hemi}" / f"fsaverage.{hemi}.sphere.164k_fs_{hemi}.surf.gii")
    lr, _ = load_surface(atlases / f"fs_{hemi}" /
                         f"fs_{hemi}-to-fs_LR_fsaverage.{hemi}_LR.spherical_std.164k_fs_{hemi}.surf.gii")
    rot = rotation_from_correspondence(fs, lr)
    fsaverage, fslr = load_template("fsaverage", hemi), load_template("fsLR", hemi)
    face, w = SphereLocator(fsaverage.vertices, fsaverage.faces).locate(fslr.vertices @ rot)
    carried = np.einsum("nk,nk->n", fsaverage.features["sulc"][fsaverage.faces[face]], w)
    assert correlation(carried, fslr.features["sulc"]) > 0.8


def test_unknown_template_and_feature():
    with pytest.raises(ValueError, match="bundled templates: fsLR, fsaverage"):
        load_template("MNI152", "L")
    with pytest.raises(ValueError, match="has no feature myelin"):
        load_template("fsaverage", "L", ("myelin",))
    with pytest.raises(ValueError, match="'L' or 'R'"):
        load_template("fsLR", "left")


@pytest.mark.parametrize(("hemi", "angle"), [("L", 42.49), ("R", 26.40)])
def test_fsaverage_to_fslr_rotation_is_bundled(hemi, angle):
    from geomorph_bids.sphere import rotation_angle

    assert rotation_angle(load_template("fsLR", hemi).from_fsaverage) == pytest.approx(angle, abs=0.01)
    np.testing.assert_array_equal(load_template("fsaverage", hemi).from_fsaverage, np.eye(3))

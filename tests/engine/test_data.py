"""Training pairs: synthetic subjects, the user's subjects (FreeSurfer / GIFTI), mirroring, splits."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from geomorph_bids.engine.data import (PairSet, find_subjects, mirror_grid_features, mirror_sphere,
                                       split_by_subject, subject_pairs, synthetic_pairs, template_on_level)
from geomorph_bids.errors import InputError
from geomorph_bids.io import read_feature, read_sphere, write_metric, write_surface
from geomorph_bids.io.templates import load_template
from geomorph_bids.resources import example_dir
from geomorph_bids.sphere.icosphere import icosphere, n_vertices


def _cc(a, b) -> float:
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    return float(np.corrcoef(a, b)[0, 1])


def test_synthetic_pairs_shapes_normalisation_and_streams():
    p = synthetic_pairs(3, "fsLR", "L", ("sulc",), seed=5, level=3)
    assert p.moving.shape == (3, 642, 1) and p.fixed.shape == (642, 1) and len(p) == 3
    assert p.moving.dtype == torch.float32 and p.level == 3
    assert p.template == "fsLR" and p.hemisphere == "L" and p.channels == ("sulc",)
    for x in (p.moving[0, :, 0], p.fixed[:, 0]):  # z-scored over the non-zero vertices
        nz = x[x != 0].double()
        assert abs(float(nz.mean())) < 1e-5 and abs(float(nz.std(unbiased=False)) - 1) < 1e-5
    # the fixed image is the template subsampled on the nested ico-3 vertices
    tpl = load_template("fsLR", "L", ("sulc",))
    raw = template_on_level(tpl, ("sulc",), 3)
    assert np.array_equal(raw[:, 0], tpl.features["sulc"][:642])
    assert _cc(p.fixed[:, 0], raw[:, 0]) > 0.999
    # deterministic, and the subjects are warped versions of the template
    q = synthetic_pairs(3, "fsLR", "L", ("sulc",), seed=5, level=3)
    assert torch.equal(p.moving, q.moving)
    ccs = [_cc(m[:, 0], p.fixed[:, 0]) for m in p.moving]
    assert all(0.3 < c < 0.999 for c in ccs), ccs
    v = synthetic_pairs(2, "fsLR", "L", ("sulc",), seed=5, level=3, stream="validation")
    assert not torch.equal(v.moving[0], p.moving[0])
    mb, fb = p.batch([2, 0])
    assert mb.shape == (2, 642, 1) and torch.equal(mb[0], p.moving[2]) and torch.equal(fb[1], p.fixed)


def test_synthetic_pairs_two_channels():
    p = synthetic_pairs(2, "fsaverage", "R", ("sulc", "curv"), seed=1, level=3)
    assert p.moving.shape == (2, 642, 2) and p.channels == ("sulc", "curv") and p.hemisphere == "R"


def test_mirror_sphere_is_an_involution_and_keeps_outward_winding():
    v, f = icosphere(2)
    mv, mf = mirror_sphere(v, f)
    assert np.allclose(mv[:, 0], -v[:, 0]) and np.array_equal(mv[:, 1:], v[:, 1:])

    def signed_volume(verts, faces):
        a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
        return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum())

    assert signed_volume(v, f) > 0 and signed_volume(mv, mf) > 0
    v2, f2 = mirror_sphere(mv, mf)
    assert np.array_equal(v2, v) and np.array_equal(f2, f)


def test_mirrored_right_template_resembles_the_left_one():
    level = 5
    left = load_template("fsLR", "L", ("sulc",)).features["sulc"][: n_vertices(level), None]
    right = load_template("fsLR", "R", ("sulc",)).features["sulc"][: n_vertices(level), None]
    mirrored = mirror_grid_features(right, level)
    assert _cc(mirrored, left) > 0.8          # homologous hemispheres after x -> -x
    assert _cc(right, left) < 0.3             # unmirrored, they do not line up
    assert _cc(mirror_grid_features(mirrored, level), right) > 0.97  # twice: back (up to interpolation)
    p = synthetic_pairs(2, "fsLR", "L", ("sulc",), seed=0, level=3, mirror=True)
    assert p.hemisphere == "LR-mirrored" and all(_cc(m[:, 0], p.fixed[:, 0]) > 0.3 for m in p.moving)
    with pytest.raises(ValueError, match="left template"):
        synthetic_pairs(1, "fsLR", "R", ("sulc",), level=3, mirror=True)


def test_example_subject_freesurfer_layout_is_prealigned():
    p = subject_pairs(example_dir(), "fsLR", "L", ("sulc",), level=4)
    assert p.moving.shape == (1, 2562, 1) and p.names == ("sub-01_hemi-L",) and p.groups == ("sub-01",)
    # the example sphere is rotated by 21 deg; after rigid pre-alignment it matches the template
    assert _cc(p.moving[0, :, 0], p.fixed[:, 0]) > 0.9
    found = find_subjects(example_dir(), ("L",), ("sulc",))
    assert [(f.subject, f.hemi, f.sphere.name) for f in found] == [("sub-01", "L", "lh.sphere")]


@pytest.fixture(scope="module")
def gifti_dir(tmp_path_factory):
    """sub-01 (the FreeSurfer example) and sub-02 (GIFTI: left = the example's lh, right = the
    same hemisphere mirrored x -> -x)."""
    root = tmp_path_factory.mktemp("gifti_subjects")
    surf = example_dir() / "sub-01" / "surf"
    sphere = read_sphere(surf / "lh.sphere")
    sulc = read_feature(surf / "lh.sulc", n_vertices=len(sphere.vertices))
    anat = root / "sub-02" / "anat"
    anat.mkdir(parents=True)
    write_surface(anat / "sub-02_hemi-L_sphere.surf.gii", sphere.vertices, sphere.faces, hemi="L",
                  geometric_type="Spherical")
    write_metric(anat / "sub-02_hemi-L_sulc.shape.gii", sulc, hemi="L", names=["sulc"])
    mv, mf = mirror_sphere(sphere.vertices, sphere.faces)
    write_surface(anat / "sub-02_hemi-R_sphere.surf.gii", mv, mf, hemi="R", geometric_type="Spherical")
    write_metric(anat / "sub-02_hemi-R_sulc.shape.gii", sulc, hemi="R", names=["sulc"])
    shutil.copytree(example_dir() / "sub-01", root / "sub-01")
    return root


@pytest.fixture(scope="module")
def mirrored_pairs(gifti_dir):
    return subject_pairs(gifti_dir, "fsLR", "L", ("sulc",), level=3, mirror_right=True)


def test_gifti_layout_and_mirrored_right_hemisphere(gifti_dir, mirrored_pairs):
    p = mirrored_pairs
    assert p.names == ("sub-01_hemi-L", "sub-01_hemi-R-mirrored", "sub-02_hemi-L", "sub-02_hemi-R-mirrored")
    assert p.groups == ("sub-01", "sub-01", "sub-02", "sub-02") and p.hemisphere == "LR-mirrored"
    # sub-02's left is sub-01's left (FreeSurfer vs GIFTI layout: same pair)
    assert torch.allclose(p.moving[2], p.moving[0], atol=1e-5)
    # sub-02's right is that hemisphere mirrored: mirroring it back gives the same pair
    # (equivariance of the mirroring, up to the pre-alignment's optimiser)
    assert _cc(p.moving[3, :, 0], p.moving[2, :, 0]) > 0.99
    assert _cc(p.moving[1, :, 0], p.fixed[:, 0]) > 0.8  # the example's own right hemisphere
    right_only = subject_pairs(gifti_dir, "fsLR", "R", ("sulc",), level=3)
    assert right_only.names == ("sub-01_hemi-R", "sub-02_hemi-R") and right_only.hemisphere == "R"


def test_split_by_subject_keeps_hemispheres_together(mirrored_pairs):
    p = mirrored_pairs
    train, val = split_by_subject(p, 0.5, seed=3)
    assert val is not None and len(train) == len(val) == 2
    assert not set(train.groups) & set(val.groups)
    again, _ = split_by_subject(p, 0.5, seed=3)
    assert again.names == train.names
    whole, none = split_by_subject(p, 0.0, seed=3)
    assert none is None and len(whole) == 4


def test_subject_errors_are_one_line(tmp_path, one_line):
    with pytest.raises(InputError) as e:
        subject_pairs(tmp_path, "fsLR", "L", ("sulc",), level=3)
    one_line(e, tmp_path)
    sub = tmp_path / "sub-03" / "surf"
    sub.mkdir(parents=True)
    shutil.copy(example_dir() / "sub-01" / "surf" / "lh.sphere", sub / "lh.sphere")
    with pytest.raises(InputError) as e:
        find_subjects(tmp_path, ("L",), ("sulc",))
    msg = one_line(e, sub)
    assert "sub-03" in msg and "lh.sulc" in msg


def test_pairset_from_pairs_checks_the_fixed_image():
    fixed = torch.randn(162, 1)
    ps = PairSet.from_pairs([(torch.randn(162, 1), fixed), (torch.randn(162, 1), fixed)], ("sulc",), "fsLR")
    assert len(ps) == 2 and ps.level == 2 and ps.names == ("pair-0000", "pair-0001")
    with pytest.raises(ValueError, match="same fixed"):
        PairSet.from_pairs([(torch.randn(162, 1), fixed), (torch.randn(162, 1), fixed + 1)])
    with pytest.raises(ValueError):
        PairSet.from_pairs([(torch.randn(100, 1), torch.randn(100, 1))])


@pytest.mark.parametrize("mistake", ["swapped", "hcp_sign"])
def test_a_subject_of_the_other_hemisphere_or_sign_is_refused_naming_it(tmp_path, one_line, mistake):
    """Swapped lh/rh files, or sulc in HCP's sign, would be trained on as bad pairs in silence
    (validation CC 0.24 in round eight's trial): the registration's identity gate refuses them."""
    from nibabel.freesurfer import read_morph_data, write_morph_data

    good, bad = tmp_path / "sub-01", tmp_path / "sub-02"
    shutil.copytree(example_dir() / "sub-01", good)
    shutil.copytree(example_dir() / "sub-01", bad)
    surf = bad / "surf"
    if mistake == "swapped":
        for kind in ("sphere", "sulc"):
            (surf / f"lh.{kind}").rename(surf / f"tmp.{kind}")
            (surf / f"rh.{kind}").rename(surf / f"lh.{kind}")
            (surf / f"tmp.{kind}").rename(surf / f"rh.{kind}")
    else:
        write_morph_data(surf / "lh.sulc", -read_morph_data(surf / "lh.sulc"))
    with pytest.raises(InputError) as e:
        subject_pairs(tmp_path, "fsLR", "L", ("sulc",), level=3)
    msg = one_line(e, surf / "lh.sphere")
    assert "sub-02" in msg and "hemi-L" in msg
    assert ("sign" in msg) if mistake == "hcp_sign" else ("mirrored template" in msg)
    shutil.rmtree(bad)
    assert subject_pairs(tmp_path, "fsLR", "L", ("sulc",), level=3).names == ("sub-01_hemi-L",)


def test_longitudinal_folders_of_one_brain_share_a_split_group(tmp_path):
    """FreeSurfer's longitudinal stream makes one brain five folders here (two cross-sectional
    runs, their base and two .long. runs); each was its own group, so one brain could be trained
    on and validated on. Now they are one group, named after the base; other subjects stay apart."""
    from geomorph_bids.engine.data import brain_groups

    (tmp_path / "base1" / "scripts").mkdir(parents=True)
    (tmp_path / "base1" / "scripts" / "base-tps").write_text("tp1\ntp2\n")
    names = ["bert", "base1", "tp1", "tp2", "tp1.long.base1", "tp2.long.base1", "x.long.gone"]
    groups = brain_groups(tmp_path, names)
    assert groups == {"bert": "bert", "base1": "base1", "tp1": "base1", "tp2": "base1", "tp1.long.base1": "base1",
                      "tp2.long.base1": "base1", "x.long.gone": "gone"}
    # the base folder need not be a subject (no sphere) to name its timepoints
    assert brain_groups(tmp_path, ["tp1", "tp1.long.base1"]) == {"tp1": "base1", "tp1.long.base1": "base1"}


def test_a_bids_dataset_given_as_the_subjects_folder_is_refused_naming_its_pipelines():
    """geomorph-train --subjects-dir examples/ds-geomorph-example (the BIDS root): 'derivatives' was
    taken for one subject (sub-02's smriprep GIFTI found under it, sub-01's FreeSurfer folder left
    out: '2 hemispheres of 1 subjects', in silence); now one line naming the folders to give."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "examples" / "ds-geomorph-example"
    with pytest.raises(InputError) as e:
        find_subjects(root, ("L",), ("sulc",))
    assert str(e.value) == (f"{root}: is a BIDS dataset (it holds derivatives/), not a folder of subjects: its "
                            "derivatives would be trained on as one subject named 'derivatives'; give the folder "
                            f"holding one folder per subject, e.g. --subjects-dir {root / 'derivatives' / 'freesurfer'}"
                            f" or {root / 'derivatives' / 'smriprep'}")
    found = find_subjects(root / "derivatives" / "freesurfer", ("L",), ("sulc",))
    assert [f.subject for f in found] == ["sub-01"]


def test_a_subject_folder_that_is_a_link_to_nothing_is_named_not_left_out_of_the_training(tmp_path):
    """``--subjects-dir`` whose ``sub-02`` is a link to a disk that is not mounted (or a loop): the
    training went on with the other subjects (``1 hemispheres of 1 subjects``), nothing said that one
    was missing. Now one warning names each such link; the others are trained on as before."""
    subjects = tmp_path / "subjects"
    shutil.copytree(example_dir() / "sub-01", subjects / "sub-01")
    (subjects / "sub-02").symlink_to(tmp_path / "unmounted" / "sub-02")
    (subjects / "sub-03").symlink_to("sub-03")
    with pytest.warns(UserWarning) as caught:
        found = find_subjects(subjects, ("L",), ("sulc",))
    assert [f.subject for f in found] == ["sub-01"]
    assert [str(w.message) for w in caught] == [
        f"subject folder {subjects / 'sub-02'} is not read: it is a link to {tmp_path / 'unmounted' / 'sub-02'}, which "
        "does not exist (on a disk that is not mounted, or a relative link made from another folder?)",
        f"subject folder {subjects / 'sub-03'} is not read: it is a loop of symbolic links"]

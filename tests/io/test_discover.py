"""Input discovery on tiny fake layouts (empty files: discovery reads names only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geomorph_bids.errors import InputError
from geomorph_bids.io.discover import (DiscoveryError, discover, find_subjects, label_for, normalise_label,
                                       unlabelled_subjects)


def touch(*paths: Path) -> None:
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.touch()


def make_fs(root: Path, name: str, hemis=("lh", "rh"), reg: bool = True,
            feats=("sulc", "curv", "thickness")) -> Path:
    surf = root / name / "surf"
    for h in hemis:
        touch(surf / f"{h}.sphere", *[surf / f"{h}.{f}" for f in feats])
        if reg:
            touch(surf / f"{h}.sphere.reg")
    return surf


def make_smriprep(root: Path, subject: str, session: str | None = None, hemis=("L", "R"),
                  feats=("sulc", "curv", "thickness"), in_session_dir: bool = True) -> Path:
    ses = f"_ses-{session}" if session else ""
    anat = root / f"sub-{subject}" / (f"ses-{session}" if session and in_session_dir else "") / "anat"
    for h in hemis:
        stem = f"sub-{subject}{ses}_hemi-{h}"
        touch(anat / f"{stem}_sphere.surf.gii", anat / f"{stem}_space-fsaverage_desc-reg_sphere.surf.gii",
              anat / f"{stem}_space-fsLR_desc-msmsulc_sphere.surf.gii",
              anat / f"{stem}_space-fsLR_den-32k_sulc.shape.gii",
              *[anat / f"{stem}_{f}.shape.gii" for f in feats])
    return anat


def make_hcp(root: Path, name: str, hemis=("L", "R")) -> Path:
    native = root / name / "MNINonLinear" / "Native"
    for h in hemis:
        touch(*[native / f"{name}.{h}.{s}" for s in
                ("sphere.native.surf.gii", "sphere.reg.native.surf.gii", "sulc.native.shape.gii",
                 "curvature.native.shape.gii", "thickness.native.shape.gii",
                 "MyelinMap_BC.native.func.gii", "MyelinMap.native.func.gii")])
    return native


@pytest.fixture()
def bids(tmp_path: Path) -> Path:
    b = tmp_path / "bids"
    touch(b / "sub-01" / "anat" / "sub-01_T1w.nii.gz", b / "dataset_description.json")
    return b


@pytest.mark.parametrize("reg", [True, False])
def test_freesurfer_default_location(bids: Path, reg: bool) -> None:
    surf = make_fs(bids / "derivatives" / "freesurfer", "sub-01", reg=reg)
    res = discover("01", bids, features=("sulc", "curv"))
    assert sorted(res.hemis) == ["L", "R"] and res.missing == {}
    lh = res.hemis["L"]
    assert (lh.source, lh.subject, lh.session, lh.sulc_sign) == ("freesurfer", "01", None, "freesurfer")
    assert lh.sphere == surf / "lh.sphere" and res.hemis["R"].sphere == surf / "rh.sphere"
    assert lh.sphere_reg == (surf / "lh.sphere.reg" if reg else None)
    assert lh.features == {"sulc": surf / "lh.sulc", "curv": surf / "lh.curv",
                           "thickness": surf / "lh.thickness"}
    assert lh.sign("sulc") == 1.0


def test_fs_subjects_dir_override(bids: Path, tmp_path: Path) -> None:
    surf = make_fs(tmp_path / "fs", "sub-01", reg=False)
    res = discover("sub-01", bids, fs_subjects_dir=tmp_path / "fs")
    assert res.hemis["L"].sphere == surf / "lh.sphere"
    assert res.searched == (tmp_path / "fs",)


def test_smriprep_without_session(bids: Path) -> None:
    anat = make_smriprep(bids / "derivatives" / "smriprep", "01")
    res = discover("01", bids, features=("sulc", "thickness"))
    r = res.hemis["R"]
    assert (r.source, r.session, r.sulc_sign) == ("smriprep", None, "freesurfer")
    assert r.sphere == anat / "sub-01_hemi-R_sphere.surf.gii"
    assert r.sphere_reg == anat / "sub-01_hemi-R_space-fsaverage_desc-reg_sphere.surf.gii"
    # the fsLR-resampled sulc is not a native feature
    assert r.features == {f: anat / f"sub-01_hemi-R_{f}.shape.gii" for f in ("sulc", "curv", "thickness")}


def test_smriprep_files_gzipped_are_found(bids: Path) -> None:
    """Derivatives gzipped to save space (``gzip anat/*.gii``): before, ``no inputs`` for a
    subject whose sphere and maps were all there as ``.gii.gz`` (the readers take them). The
    plain file wins over its .gz; the .gz of a resampled map is still not a native feature."""
    anat = make_smriprep(bids / "derivatives" / "smriprep", "01", hemis=("L",))
    for p in list(anat.iterdir()):
        p.rename(p.with_name(p.name + ".gz"))
    touch(anat / "sub-01_hemi-L_curv.shape.gii")  # both: the plain one is used, no "ambiguous"
    res = discover("01", bids, hemis=("L",), features=("sulc", "curv"))
    h = res.hemis["L"]
    assert h.sphere == anat / "sub-01_hemi-L_sphere.surf.gii.gz"
    assert h.sphere_reg == anat / "sub-01_hemi-L_space-fsaverage_desc-reg_sphere.surf.gii.gz"
    assert h.features == {"sulc": anat / "sub-01_hemi-L_sulc.shape.gii.gz",
                          "curv": anat / "sub-01_hemi-L_curv.shape.gii",
                          "thickness": anat / "sub-01_hemi-L_thickness.shape.gii.gz"}


def test_smriprep_with_session(bids: Path) -> None:
    anat = make_smriprep(bids / "derivatives" / "fmriprep", "01", session="pre")
    # session given explicitly
    res = discover("01", bids, session="ses-pre")
    assert res.hemis["L"].sphere == anat / "sub-01_ses-pre_hemi-L_sphere.surf.gii"
    assert res.hemis["L"].session == "pre" and res.session == "pre"
    # no session given: the single session holding spheres is used and recorded
    res = discover("01", bids)
    assert res.hemis["L"].sphere == anat / "sub-01_ses-pre_hemi-L_sphere.surf.gii"
    assert res.hemis["L"].session == "pre"


def test_smriprep_session_falls_back_to_shared_anat(bids: Path) -> None:
    anat = make_smriprep(bids / "derivatives" / "smriprep", "01")
    res = discover("01", bids, session="pre")
    assert res.hemis["L"].sphere == anat / "sub-01_hemi-L_sphere.surf.gii"
    assert res.hemis["L"].session is None


def test_smriprep_several_sessions_needs_session(bids: Path) -> None:
    root = bids / "derivatives" / "smriprep"
    make_smriprep(root, "01", session="a")
    make_smriprep(root, "01", session="b")
    with pytest.raises(DiscoveryError, match=r"several sessions \(ses-a, ses-b\)"):
        discover("01", bids, hemis=("L",))
    assert discover("01", bids, session="b").hemis["R"].session == "b"


def test_smriprep_myelin_liberal(bids: Path) -> None:
    anat = make_smriprep(bids / "derivatives" / "smriprep", "01", hemis=("L",))
    touch(anat / "sub-01_hemi-L_myelinw.func.gii", anat / "sub-01_hemi-L_space-fsLR_myelinw.func.gii")
    res = discover("01", bids, hemis=("L",), features=("sulc", "myelin"))
    assert res.hemis["L"].features["myelin"] == anat / "sub-01_hemi-L_myelinw.func.gii"
    (anat / "sub-01_hemi-L_myelinw.func.gii").unlink()
    touch(anat / "sub-01_hemi-L_desc-myelin_map.shape.gii")
    res = discover("01", bids, hemis=("L",), features=("myelin",))
    assert res.hemis["L"].features["myelin"] == anat / "sub-01_hemi-L_desc-myelin_map.shape.gii"


def test_dhcp_release_3_native_surfaces_named_space_t2w_are_read(bids: Path) -> None:
    """The dHCP structural pipeline's release 3 (``derivatives/dhcp_anat_pipeline``) names its native
    surfaces and maps ``_hemi-L_space-T2w_sphere.surf.gii``: the subject's own image, a native mesh.
    Before: ``no inputs`` (every ``space-`` was read as a template's). A template's ``space-`` is still
    not read, and the bare name wins over the ``space-T2w`` one when both are there."""
    anat = bids / "derivatives" / "dhcp_anat_pipeline" / "sub-CC00050XX01" / "ses-7201" / "anat"
    stem = "sub-CC00050XX01_ses-7201_hemi-L"
    touch(anat / f"{stem}_space-T2w_sphere.surf.gii", anat / f"{stem}_space-T2w_sulc.shape.gii",
          anat / f"{stem}_space-T2w_curv.shape.gii", anat / f"{stem}_desc-medialwall_mask.shape.gii",
          anat / f"{stem}_space-dhcpSym40_sulc.shape.gii")
    res = discover("CC00050XX01", bids, session="7201", hemis=("L",), features=("sulc", "curv"))
    h = res.hemis["L"]
    assert (h.source, h.session, h.sulc_sign) == ("smriprep", "7201", "freesurfer")
    assert h.sphere == anat / f"{stem}_space-T2w_sphere.surf.gii"
    assert h.features == {"sulc": anat / f"{stem}_space-T2w_sulc.shape.gii",
                          "curv": anat / f"{stem}_space-T2w_curv.shape.gii"}
    assert h.cortex_mask is None  # dHCP's medial wall mask is not read: its values' meaning is not ours
    touch(anat / f"{stem}_sphere.surf.gii")
    assert discover("CC00050XX01", bids, session="7201", hemis=("L",)).hemis["L"].sphere == anat / f"{stem}_sphere.surf.gii"


def test_dhcp_release_2_hemi_left_in_anat_native_with_curvature_is_read(bids: Path) -> None:
    """The dHCP release 2 layout: ``anat/Native/sub-X_ses-Y_hemi-left_sphere.surf.gii``, ``_hemi-right_``,
    ``_curvature.shape.gii``. Before: ``no inputs`` for both hemispheres."""
    native = bids / "derivatives" / "dhcp" / "sub-CC00050XX01" / "ses-7201" / "anat" / "Native"
    for word in ("left", "right"):
        stem = f"sub-CC00050XX01_ses-7201_hemi-{word}"
        touch(native / f"{stem}_sphere.surf.gii", native / f"{stem}_sulc.shape.gii",
              native / f"{stem}_curvature.shape.gii")
    res = discover("CC00050XX01", bids, features=("sulc", "curv"))
    assert res.missing == {}
    for hemi, word in (("L", "left"), ("R", "right")):
        h = res.hemis[hemi]
        stem = f"sub-CC00050XX01_ses-7201_hemi-{word}"
        assert h.sphere == native / f"{stem}_sphere.surf.gii" and h.session == "7201"
        assert h.features == {"sulc": native / f"{stem}_sulc.shape.gii", "curv": native / f"{stem}_curvature.shape.gii"}


def test_dhcp_names_without_hemi_are_named_with_the_links_that_read_them(bids: Path) -> None:
    """An early dHCP spelling, ``sub-X_ses-Y_left_sphere.surf.gii`` (no ``hemi-``): ``no inputs`` named
    nothing there; now the line names the file and the links that make it read."""
    native = bids / "derivatives" / "dhcp" / "sub-CC01" / "ses-1" / "anat" / "Native"
    touch(native / "sub-CC01_ses-1_left_sphere.surf.gii", native / "sub-CC01_ses-1_left_sulc.shape.gii")
    with pytest.raises(DiscoveryError) as err:
        discover("CC01", bids, session="1", hemis=("L",))
    assert (f"smriprep {native}: has sub-CC01_ses-1_left_sphere.surf.gii, the dHCP's early name without hemi-: "
            f"link its files under the hemi- names read (cd {native} && for f in *_left_*; do ln -s \"$f\" "
            '"${f/_left_/_hemi-left_}"; done)') in str(err.value)


def test_hcp_layout_records_sign(tmp_path: Path) -> None:
    bids = tmp_path / "bids"
    bids.mkdir()
    native = make_hcp(tmp_path / "hcp", "100307")
    res = discover("sub-100307", bids, derivatives={"hcp": tmp_path / "hcp"},
                   features=("sulc", "curv", "thickness", "myelin"))
    lh = res.hemis["L"]
    assert (lh.source, lh.sulc_sign) == ("hcp", "hcp")
    assert lh.sphere == native / "100307.L.sphere.native.surf.gii"
    assert lh.sphere_reg == native / "100307.L.sphere.reg.native.surf.gii"
    assert lh.features["myelin"] == native / "100307.L.MyelinMap_BC.native.func.gii"
    assert lh.features["curv"] == native / "100307.L.curvature.native.shape.gii"
    assert [lh.sign(f) for f in ("sulc", "curv", "thickness", "myelin")] == [-1.0, -1.0, 1.0, 1.0]


def test_priority_smriprep_over_freesurfer_over_hcp(bids: Path) -> None:
    d = bids / "derivatives"
    make_fs(d / "freesurfer", "sub-01")
    make_hcp(d / "hcp", "sub-01")
    make_smriprep(d / "smriprep", "01", hemis=("L",))
    from geomorph_bids.io.discover import InputChoiceWarning

    with pytest.warns(InputChoiceWarning, match="hemispheres are read from different inputs"):
        res = discover("01", bids)
    assert res.hemis["L"].source == "smriprep"
    assert res.hemis["R"].source == "freesurfer"  # sMRIPrep lacks the right hemisphere
    # without FreeSurfer, the right hemisphere comes from HCP
    with pytest.warns(InputChoiceWarning, match="hemi-R from the HCP layout"):
        res = discover("01", bids, fs_subjects_dir=bids / "nowhere")
    assert (res.hemis["L"].source, res.hemis["R"].source) == ("smriprep", "hcp")


def test_one_hemisphere_missing(bids: Path) -> None:
    make_fs(bids / "derivatives" / "freesurfer", "sub-01", hemis=("lh",))
    res = discover("01", bids)
    assert list(res.hemis) == ["L"] and list(res.missing) == ["R"]
    assert "rh.sphere" in res.missing["R"] and "\n" not in res.missing["R"]
    err = res.error("R")
    assert isinstance(err, InputError) and (err.subject, err.hemi) == ("01", "R")
    assert str(err).startswith("sub-01 hemi-R: ")


def test_requested_feature_missing_makes_hemi_missing(bids: Path) -> None:
    make_fs(bids / "derivatives" / "freesurfer", "sub-01", feats=("sulc",))
    touch(bids / "derivatives" / "freesurfer" / "sub-01" / "surf" / "lh.curv")
    res = discover("01", bids, features=("sulc", "curv"))
    assert list(res.hemis) == ["L"]
    assert res.missing["R"].startswith("freesurfer ") and "has rh.sphere but no rh.curv;" in res.missing["R"]
    assert "rh.curv" in str(res.error("R")) and "\n" not in str(res.error("R"))
    assert discover("01", bids, features=("sulc",)).missing == {}


def test_subject_with_nothing_one_line_error(bids: Path) -> None:
    make_fs(bids / "derivatives" / "freesurfer", "sub-02")
    (bids / "derivatives" / "smriprep").mkdir()
    with pytest.raises(DiscoveryError) as info:
        discover("01", bids)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("sub-01: no inputs for hemi-L, hemi-R; looked for")
    for text in (str(bids / "derivatives" / "smriprep"), str(bids / "derivatives" / "freesurfer"),
                 "sub-01_hemi-{L,R}_sphere.surf.gii", "surf/{lh,rh}.sphere", "sphere.native.surf.gii"):
        assert text in msg
    assert info.value.subject == "01"
    assert set(info.value.searched) == {bids / "derivatives" / "smriprep", bids / "derivatives" / "freesurfer"}


def test_no_folders_at_all(bids: Path) -> None:
    pattern = r"^sub-01 hemi-L: no inputs; looked for .*; no input folder exists \(expected .*derivatives"
    with pytest.raises(DiscoveryError, match=pattern):
        discover("01", bids, hemis=("L",))


def test_labels_and_arguments(bids: Path) -> None:
    assert normalise_label("sub-01") == normalise_label("01") == "01"
    assert normalise_label("ses-pre", "ses") == "pre"
    for bad in ("sub-", "../x", "a_b"):
        with pytest.raises(InputError):
            normalise_label(bad)
    make_fs(bids / "derivatives" / "freesurfer", "sub-01")
    with pytest.raises(InputError, match="unknown feature"):
        discover("01", bids, features=("depth",))
    with pytest.raises(InputError, match="hemis"):
        discover("01", bids, hemis=("X",))
    assert discover("sub-01", bids) == discover("01", bids)


def test_find_subjects_across_sources(bids: Path, tmp_path: Path) -> None:
    d = bids / "derivatives"
    touch(bids / "sub-02" / "anat" / "sub-02_T1w.nii.gz")
    make_fs(d / "freesurfer", "sub-03")
    make_fs(d / "freesurfer", "sub-01_ses-a")
    make_fs(d / "freesurfer", "fsaverage")
    make_smriprep(d / "smriprep", "04")
    touch(d / "smriprep" / "sub-09.html")
    make_hcp(d / "hcp", "100307")
    (d / "hcp" / "notasubject").mkdir()
    assert find_subjects(bids) == ["01", "02", "03", "04", "100307"]
    # explicit roots replace the defaults
    make_fs(tmp_path / "fs", "sub-05")
    assert find_subjects(bids, fs_subjects_dir=tmp_path / "fs", derivatives={}) == ["01", "02", "05"]


def test_freesurfer_subjects_named_without_sub(bids: Path, tmp_path: Path) -> None:
    """recon-all -s bert: a SUBJECTS_DIR's subjects are found without the sub- prefix when their
    names are BIDS labels; fsaverage and folders without a sphere are not subjects."""
    fs = tmp_path / "subjects"
    make_fs(fs, "bert")
    make_fs(fs, "subj002", hemis=("rh",))
    make_fs(fs, "sub-03")
    for name in ("fsaverage", "fsaverage6", "fsaverage_sym", "subj_004", "001-A"):
        make_fs(fs, name)
    (fs / "notes").mkdir()
    touch(fs / "scripts" / "surf" / "lh.sulc")
    assert find_subjects(bids, fs_subjects_dir=fs, derivatives={}) == ["01", "03", "bert", "subj002"]
    res = discover("bert", bids, fs_subjects_dir=fs)
    assert sorted(res.hemis) == ["L", "R"] and res.hemis["L"].sphere == fs / "bert" / "surf" / "lh.sphere"
    # the subject folders left out are named, so that the caller can say so (templates are not)
    assert unlabelled_subjects(bids, fs_subjects_dir=fs, derivatives={}) == [fs / "001-A", fs / "subj_004"]
    assert [label_for(n) for n in ("bért", "my subj", "sub-01.long", "---")] == ["bert", "mysubj", "01long", "subject"]


# ------------------------------------------------ optional display surface (inflated / midthickness)

def _mesh(level: int):
    from geomorph_bids.sphere.icosphere import icosphere

    v, f = icosphere(level)
    return np.asarray(v, dtype=np.float32), np.asarray(f, dtype=np.int32)


def _write_mesh(path: Path, level: int) -> None:
    """A real surface file (FreeSurfer binary, or GIFTI for ``.gii``/``.gii.gz``)."""
    import gzip

    import nibabel as nib

    from geomorph_bids.io.gifti import write_surface

    v, f = _mesh(level)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".gii.gz"):
        plain = path.with_name(path.name[:-3])
        write_surface(plain, v, f, hemi="L")
        path.write_bytes(gzip.compress(plain.read_bytes()))
        plain.unlink()
    elif path.name.endswith(".gii"):
        write_surface(path, v, f, hemi="L")
    else:
        nib.freesurfer.write_geometry(str(path), v, f)


def _layout(kind: str, bids: Path, level_surface: int = 1, names=("inflated",)) -> tuple[Path, dict[str, Path]]:
    """Each layout with real sphere files (ico-1, 42 vertices) and the named surfaces."""
    if kind == "freesurfer":
        d = make_fs(bids / "derivatives" / "freesurfer", "sub-01", reg=False)
        sphere, surf = d / "lh.sphere", {n: d / f"lh.{n}" for n in names}
    elif kind == "smriprep":
        d = make_smriprep(bids / "derivatives" / "smriprep", "01")
        sphere = d / "sub-01_hemi-L_sphere.surf.gii"
        surf = {n: d / f"sub-01_hemi-L_{n}.surf.gii" for n in names}
        touch(d / "sub-01_hemi-L_space-fsLR_den-32k_inflated.surf.gii",   # not the native mesh: ignored
              d / "sub-01_hemi-L_desc-smoothed_inflated.surf.gii")
    else:
        d = make_hcp(bids / "derivatives" / "hcp", "sub-01")
        sphere = d / "sub-01.L.sphere.native.surf.gii"
        surf = {n: d / f"sub-01.L.{n}.native.surf.gii" for n in names}
    _write_mesh(sphere, 1)
    for p in surf.values():
        _write_mesh(p, level_surface)
    return sphere, surf


def test_fmriprep_without_a_cortex_mask_takes_recon_alls_cortex_label_of_the_same_mesh(bids: Path) -> None:
    """fix-as: fMRIPrep 23.2-24 write no ``desc-cortex_mask``; recon-all's ``label/lh.cortex.label`` is in
    their ``sourcedata/freesurfer``, and the FreeSurfer layout uses it. Read from fMRIPrep's GIFTIs the
    hemisphere had no mask (the medial wall in the similarity, no -current-roi); now the label of the
    FreeSurfer folder whose ``lh.sphere`` has the GIFTI sphere's very vertices is taken, and no other."""
    fmriprep = bids / "derivatives" / "fmriprep"
    anat = make_smriprep(fmriprep, "01", hemis=("L",))
    _write_mesh(anat / "sub-01_hemi-L_sphere.surf.gii", 1)
    surf = make_fs(fmriprep / "sourcedata" / "freesurfer", "sub-01", hemis=("lh",), reg=False)
    _write_mesh(surf / "lh.sphere", 1)
    label = surf.parent / "label" / "lh.cortex.label"
    touch(label)
    lh = discover("01", bids, hemis=("L",)).hemis["L"]
    assert (lh.source, lh.sphere, lh.cortex_mask) == ("smriprep", anat / "sub-01_hemi-L_sphere.surf.gii", label)
    # another recon-all run (same vertex count, other vertices): not this mesh's label
    import nibabel as nib

    v, f = _mesh(1)
    nib.freesurfer.write_geometry(str(surf / "lh.sphere"), v[:, [1, 0, 2]], f)
    assert discover("01", bids, hemis=("L",)).hemis["L"].cortex_mask is None
    # fMRIPrep's own mask, where it wrote one, is kept
    _write_mesh(surf / "lh.sphere", 1)
    own = anat / "sub-01_hemi-L_desc-cortex_mask.label.gii"
    touch(own)
    assert discover("01", bids, hemis=("L",)).hemis["L"].cortex_mask == own


@pytest.mark.parametrize("kind", ["freesurfer", "smriprep", "hcp"])
def test_surface_found_in_each_layout(bids: Path, kind: str) -> None:
    sphere, surf = _layout(kind, bids, names=("inflated", "midthickness"))
    lh = discover("01", bids, hemis=("L",)).hemis["L"]
    assert (lh.source, lh.sphere) == (kind, sphere)
    assert (lh.surface, lh.surface_kind) == (surf["inflated"], "inflated")  # preferred over midthickness
    surf["inflated"].unlink()
    lh = discover("01", bids, hemis=("L",)).hemis["L"]
    assert (lh.surface, lh.surface_kind) == (surf["midthickness"], "midthickness")


@pytest.mark.parametrize("kind", ["freesurfer", "smriprep", "hcp"])
def test_surface_absent_or_mismatched_is_ignored(bids: Path, kind: str) -> None:
    import warnings

    from geomorph_bids.io.discover import SurfaceWarning

    _, surf = _layout(kind, bids, level_surface=2)             # 162 vertices vs the sphere's 42
    with pytest.warns(SurfaceWarning, match="162 vertices, the sphere 42"):
        res = discover("01", bids, hemis=("L",))
    assert res.hemis["L"].surface is None and res.hemis["L"].surface_kind is None and res.missing == {}
    surf["inflated"].write_bytes(b"")                          # unreadable: ignored too
    with pytest.warns(SurfaceWarning, match="cannot be read"):
        assert discover("01", bids, hemis=("L",)).hemis["L"].surface is None
    surf["inflated"].unlink()                                  # absent: fine, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert discover("01", bids, hemis=("L",)).hemis["L"].surface is None


def test_surface_vertex_count(tmp_path: Path) -> None:
    from geomorph_bids.io.discover import surface_vertex_count

    for name, level, n in (("lh.inflated", 2, 162), ("a.surf.gii", 3, 642), ("b.surf.gii.gz", 1, 42)):
        _write_mesh(tmp_path / name, level)
        assert surface_vertex_count(tmp_path / name) == n, name
    (tmp_path / "x.surf.gii").write_text("<GIFTI><DataArray Intent=\"NIFTI_INTENT_TRIANGLE\" Dim0=\"5\">")
    assert surface_vertex_count(tmp_path / "x.surf.gii") is None
    assert surface_vertex_count(tmp_path / "missing") is None


@pytest.mark.parametrize("marker, hemis_refused", [("IsRunning.lh+rh", ["L", "R"]), ("IsRunning.lh", ["L"]),
                                                   ("recon-all.error", ["L", "R"])])
def test_a_subject_whose_recon_all_has_not_finished_is_named_not_registered(bids: Path, tmp_path: Path, marker,
                                                                             hemis_refused) -> None:
    """recon-all still running, killed (IsRunning.* left) or stopped on an error (recon-all.error):
    its surfaces were registered as if finished (a sphere of one run beside maps of another, or
    steps missing), exit 0. Now each hemisphere concerned is one line naming the file; the
    others (and the other subjects) are found."""
    fs = tmp_path / "subjects"
    make_fs(fs, "bert")
    make_fs(fs, "ernie")
    touch(fs / "bert" / "scripts" / marker, fs / "ernie" / "scripts" / "recon-all.log",
          fs / "ernie" / "scripts" / "recon-all.done")
    assert sorted(discover("ernie", bids, fs_subjects_dir=fs, derivatives={}).hemis) == ["L", "R"]
    if hemis_refused == ["L", "R"]:
        with pytest.raises(DiscoveryError) as exc:
            discover("bert", bids, fs_subjects_dir=fs, derivatives={})
        msg = str(exc.value)
    else:
        res = discover("bert", bids, fs_subjects_dir=fs, derivatives={})
        assert sorted(res.hemis) == ["R"]
        msg = res.missing["L"]
    assert "\n" not in msg and str(fs / "bert" / "scripts" / marker) in msg
    assert ("recon-all has not finished" if "IsRunning" in marker else "recon-all stopped with an error") in msg


def test_longitudinal_freesurfer_folders_are_named_not_left_out(bids: Path, tmp_path: Path) -> None:
    """recon-all -long sub-01_ses-1 sub-01_base: the cross-sectional sub-01_ses-1 was registered
    and the longitudinal sub-01_ses-1.long.sub-01_base and base sub-01_base left out in silence
    (their names start with a subject's 'sub-01'). Now they are named, like other folders whose
    names discover() does not read."""
    fs = tmp_path / "subjects"
    for name in ("sub-01_ses-1", "sub-01_base", "sub-01_ses-1.long.sub-01_base", "bert.long.bert_base", "sub-02",
                 "fsaverage", "fsaverage5", "lh.EC_average"):
        make_fs(fs, name)
    touch(fs / "README")
    assert unlabelled_subjects(bids, fs_subjects_dir=fs, derivatives={}) == [
        fs / "bert.long.bert_base", fs / "sub-01_base", fs / "sub-01_ses-1.long.sub-01_base"]
    # and they make no subject of their own ('sub-01' failed with "no inputs" when only they held it)
    (fs / "sub-01_ses-1").rename(fs / "cross")
    assert find_subjects(bids, fs_subjects_dir=fs, derivatives={}) == ["01", "02", "cross"]
    assert find_subjects(fs, fs_subjects_dir=fs, derivatives={}) == ["02", "cross"]


def test_smriprep_files_of_another_acquisition_are_never_mixed_in(bids: Path) -> None:
    """Round twelve: each role was picked on its own (fewest entities), so a sphere without
    ``acq-`` was registered with the only sulc there, ``acq-hi``'s (another mesh), and an
    ``acq-hi`` sphere with the plain sulc beside its own; two complete ``run-`` sets said
    ``sulc ambiguous`` (not the sphere, not what to do)."""
    d = bids / "derivatives" / "smriprep"
    a1, a2, a3 = (d / f"sub-0{i}" / "anat" for i in (1, 2, 3))
    touch(a1 / "sub-01_hemi-L_sphere.surf.gii", a1 / "sub-01_acq-hi_hemi-L_sulc.shape.gii")
    touch(a2 / "sub-02_acq-hi_hemi-L_sphere.surf.gii", a2 / "sub-02_acq-hi_hemi-L_sulc.shape.gii",
          a2 / "sub-02_hemi-L_sulc.shape.gii", a2 / "sub-02_acq-hi_hemi-L_curv.shape.gii",
          a2 / "sub-02_acq-hi_hemi-L_space-fsaverage_desc-reg_sphere.surf.gii",
          a2 / "sub-02_hemi-L_space-fsaverage_desc-reg_sphere.surf.gii")
    for run in (1, 2):
        touch(a3 / f"sub-03_run-{run}_hemi-L_sphere.surf.gii", a3 / f"sub-03_run-{run}_hemi-L_sulc.shape.gii")
    with pytest.raises(DiscoveryError) as info:
        discover("01", bids, hemis=("L",))
    assert ("has the sphere but no sulc of its set (sub-01_hemi-L_sphere.surf.gii: no acq-/run-/rec- entity); "
            "another set has it (sub-01_acq-hi_hemi-L_sulc.shape.gii), and sets are never mixed") in str(info.value)
    h = discover("02", bids, hemis=("L",), features=("sulc",)).hemis["L"]
    assert h.sphere == a2 / "sub-02_acq-hi_hemi-L_sphere.surf.gii"
    assert h.features == {"sulc": a2 / "sub-02_acq-hi_hemi-L_sulc.shape.gii",
                          "curv": a2 / "sub-02_acq-hi_hemi-L_curv.shape.gii"}
    assert h.sphere_reg == a2 / "sub-02_acq-hi_hemi-L_space-fsaverage_desc-reg_sphere.surf.gii"
    with pytest.raises(DiscoveryError) as info:
        discover("03", bids, hemis=("L",))
    assert ("sphere ambiguous: sub-03_run-1_hemi-L_sphere.surf.gii, sub-03_run-2_hemi-L_sphere.surf.gii (two sets "
            "of surfaces, e.g. of two acquisitions or runs") in str(info.value)
    assert "keep one set in this folder" in str(info.value)


def test_subject_folders_whose_labels_are_no_bids_labels_are_listed(bids: Path, tmp_path: Path) -> None:
    """Round twelve: ``sub-ü3`` (sMRIPrep) and ``sub-01-a`` (raw) were left out in silence."""
    from geomorph_bids.io.discover import unlabelled_folders

    make_smriprep(bids / "derivatives" / "smriprep", "02")
    touch(bids / "derivatives" / "smriprep" / "sub-ü3" / "anat" / "sub-ü3_hemi-L_sphere.surf.gii",
          bids / "sub-01-a" / "anat" / "sub-01-a_T1w.nii.gz", bids / "sub-04_notes.txt")
    make_fs(bids / "derivatives" / "freesurfer", "sub-é1")  # a FreeSurfer folder: unlabelled_subjects names it
    assert unlabelled_folders(bids) == [bids / "sub-01-a", bids / "derivatives" / "smriprep" / "sub-ü3"]
    assert "02" in find_subjects(bids) and "ü3" not in find_subjects(bids)


def test_a_hemisphere_in_two_input_folders_of_one_kind_is_named_not_chosen_in_silence(bids: Path) -> None:
    """Round fifteen: two fMRIPrep runs side by side in ``derivatives/`` (``fmriprep-old``, ``smriprep``)
    holding one subject with other files: the alphabetically first folder's sphere was registered and
    nothing said there was another. Now one warning names the one used and the others; copies with the
    same bytes (the same run copied) say nothing."""
    import warnings

    from geomorph_bids.io.discover import InputChoiceWarning

    old = make_smriprep(bids / "derivatives" / "fmriprep-old", "01", hemis=("L",))
    new = make_smriprep(bids / "derivatives" / "smriprep", "01", hemis=("L",))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = discover("01", bids, hemis=("L",))
    assert res.hemis["L"].sphere == old / "sub-01_hemi-L_sphere.surf.gii"
    assert not [w for w in caught if issubclass(w.category, InputChoiceWarning)]  # same (empty) bytes
    (new / "sub-01_hemi-L_sphere.surf.gii").write_bytes(b"another run")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = discover("01", bids, hemis=("L",))
    [line] = [str(w.message) for w in caught if issubclass(w.category, InputChoiceWarning)]
    assert res.hemis["L"].sphere == old / "sub-01_hemi-L_sphere.surf.gii"
    assert line.startswith(f"sub-01 hemi-L: registering {old / 'sub-01_hemi-L_sphere.surf.gii'}, the first of 2")
    assert str(new / "sub-01_hemi-L_sphere.surf.gii") in line and "--derivatives NAME=PATH" in line
    make_fs(bids / "derivatives" / "freesurfer", "sub-02", hemis=("lh",))
    other = make_fs(bids / "derivatives" / "smriprep" / "sourcedata" / "freesurfer", "sub-02", hemis=("lh",))
    (other / "lh.sphere").write_bytes(b"\xff\xff\xfe another recon-all")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        discover("02", bids, hemis=("L",))
    [line] = [str(w.message) for w in caught if issubclass(w.category, InputChoiceWarning)]
    assert "derivatives/freesurfer/sub-02/surf/lh.sphere, the first of 2" in line and "--fs-subjects-dir" in line


@pytest.mark.parametrize("layout", ["freesurfer", "hcp"])
def test_sub_x_and_x_in_one_subjects_folder_with_other_files_are_named(bids: Path, layout: str) -> None:
    """QA pass (fix-a): a FreeSurfer subjects folder holding ``sub-01/`` and ``01/`` (sub- prefixes are
    optional: one subject) with another ``lh.sulc`` in ``01/``: ``sub-01`` was registered and ``01``
    ignored in silence. Now one InputChoiceWarning names both; identical bytes say nothing. HCP's
    ``01`` beside ``sub-01`` alike."""
    import warnings

    from geomorph_bids.io.discover import InputChoiceWarning

    root = bids / "derivatives" / layout
    if layout == "freesurfer":
        used, twin = make_fs(root, "sub-01", hemis=("lh",)), make_fs(root, "01", hemis=("lh",))
        sphere, other, sulc = used / "lh.sphere", twin / "lh.sphere", twin / "lh.sulc"
    else:
        used, twin = make_hcp(root, "sub-01", hemis=("L",)), make_hcp(root, "01", hemis=("L",))
        sphere = used / "sub-01.L.sphere.native.surf.gii"
        other, sulc = twin / "01.L.sphere.native.surf.gii", twin / "01.L.sulc.native.shape.gii"

    def choice_warnings() -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = discover("01", bids, hemis=("L",))
        assert res.hemis["L"].sphere == sphere
        return [str(w.message) for w in caught if issubclass(w.category, InputChoiceWarning)]

    assert choice_warnings() == []  # the same (empty) bytes
    sulc.write_bytes(b"another sulc")  # the sphere the same, a map not
    [line] = choice_warnings()
    assert line == (f"sub-01 hemi-L: registering {sphere}, the first of 2 input folders that hold this hemisphere "
                    f"with other files (also {other}); sub-01 and 01 in one subjects folder name one subject (sub- "
                    "prefixes are optional): remove or rename the one not to register")


def test_two_input_folders_with_one_sphere_and_other_maps_are_named(bids: Path) -> None:
    """fix-a: the InputChoiceWarning compared the spheres alone: two fMRIPrep runs with one sphere
    and another ``sulc`` said nothing. Every file the registration reads is compared now."""
    import warnings

    from geomorph_bids.io.discover import InputChoiceWarning

    old = make_smriprep(bids / "derivatives" / "fmriprep-old", "01", hemis=("L",))
    new = make_smriprep(bids / "derivatives" / "smriprep", "01", hemis=("L",))
    (new / "sub-01_hemi-L_sulc.shape.gii").write_bytes(b"another sulc")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        discover("01", bids, hemis=("L",))
    [line] = [str(w.message) for w in caught if issubclass(w.category, InputChoiceWarning)]
    assert line.startswith(f"sub-01 hemi-L: registering {old / 'sub-01_hemi-L_sphere.surf.gii'}, the first of 2")
    assert str(new / "sub-01_hemi-L_sphere.surf.gii") in line and line.endswith(
        "to use another, name it alone with --derivatives NAME=PATH (FreeSurfer: --fs-subjects-dir)")


def test_holds_any_subject_of_a_derivatives_folder(tmp_path: Path) -> None:
    """A --derivatives folder with no subject of any layout is warned about (fix-a); sub-*, HCP and
    FreeSurfer subjects, in it or in its sourcedata/freesurfer, each count."""
    from geomorph_bids.io.discover import holds_any_subject

    empty = tmp_path / "empty"
    touch(empty / "README", empty / "dataset_description.json")
    (empty / "logs").mkdir()
    assert not holds_any_subject(empty) and not holds_any_subject(tmp_path / "missing")
    make_smriprep(tmp_path / "smriprep", "01")
    make_hcp(tmp_path / "hcp", "100307")
    make_fs(tmp_path / "fs", "bert")
    make_fs(tmp_path / "fmriprep" / "sourcedata" / "freesurfer", "sub-01")
    assert all(holds_any_subject(tmp_path / f) for f in ("smriprep", "hcp", "fs", "fmriprep"))


def test_smriprep_own_layout_is_read_in_its_subfolder(bids: Path, tmp_path: Path) -> None:
    """``smriprep BIDS OUT participant`` writes ``OUT/smriprep/sub-*`` beside ``OUT/freesurfer``:
    ``--derivatives smriprep=OUT`` (and ``OUT`` as ``derivatives/smriprep``) is read in the subfolder,
    and a FreeSurfer-only subject and the fsaverage template are found in ``OUT/freesurfer``."""
    from geomorph_bids.io.discover import derivatives_root, freesurfer_roots

    out = tmp_path / "smriprep_out"
    anat = make_smriprep(out / "smriprep", "01")
    fs = make_fs(out / "freesurfer", "sub-02", hemis=("lh",))
    make_fs(out / "freesurfer", "fsaverage", reg=False)
    assert derivatives_root(out) == out / "smriprep"
    res = discover("01", bids, derivatives={"smriprep": out})
    assert res.hemis["L"].source == "smriprep" and res.hemis["L"].sphere == anat / "sub-01_hemi-L_sphere.surf.gii"
    assert discover("02", bids, derivatives={"smriprep": out}, hemis=("L",)).hemis["L"].sphere == fs / "lh.sphere"
    assert out / "freesurfer" in freesurfer_roots(bids, None, {"smriprep": out})
    assert find_subjects(bids, None, {"smriprep": out}) == ["01", "02"]
    # a folder that holds subjects itself is read as it is, whatever its subfolders
    make_smriprep(out, "03")
    assert derivatives_root(out) == out
    # the default roots: BIDS/derivatives/smriprep holding smriprep/sub-*
    nested = bids / "derivatives" / "smriprep"
    make_smriprep(nested / "smriprep", "04")
    assert discover("04", bids).hemis["R"].source == "smriprep"


def test_an_upper_case_prefix_is_named_not_called_not_alphanumeric():
    with pytest.raises(InputError) as e:
        normalise_label("SUB-01", "sub")
    assert str(e.value) == "invalid sub label 'SUB-01': the prefix is lower-case 'sub-' (sub-01, or 01 alone)"
    assert normalise_label("sub-01", "sub") == "01"


def test_a_label_list_or_a_folder_given_as_a_label_says_how_to_give_it():
    """``--participant-label 01,02`` (a list in one word) and ``sub-01/`` (the shell's completion of
    the folder) said only 'BIDS labels are alphanumeric'; now what to give instead."""
    for given, hint in (("01,02", "(labels are separate words, no commas: 01 02)"),
                        ("sub-01;sub-02", "(labels are separate words, no commas: 01 02)"),
                        ("sub-01/", "(a label, not a folder's path: 01)"),
                        ("derivatives/freesurfer/sub-01", "(a label, not a folder's path: 01)")):
        with pytest.raises(InputError) as e:
            normalise_label(given)
        assert str(e.value) == f"invalid sub label {given!r}: BIDS labels are alphanumeric {hint}"
    with pytest.raises(InputError) as e:
        normalise_label("a-b")
    assert str(e.value) == "invalid sub label 'a-b': BIDS labels are alphanumeric"


def test_files_named_in_another_letter_case_are_named_with_the_names_looked_for(bids: Path) -> None:
    """Files copied from a system whose names are case-insensitive (``.surf.GII``, ``LH.SULC``) failed
    with ``no inputs; looked for ...`` as if nothing were there. The failure now names them and says
    that names are case-sensitive; nothing is registered from them (the run does what the names say)."""
    anat = make_smriprep(bids / "derivatives" / "smriprep", "01", hemis=("L",))
    for p in list(anat.iterdir()):
        p.rename(p.with_name(p.name.replace(".gii", ".GII")))
    with pytest.raises(DiscoveryError) as smriprep:
        discover("01", bids, hemis=("L",))
    assert str(smriprep.value).startswith(
        f"sub-01 hemi-L: smriprep {anat}: no sphere; sub-01_hemi-L_sphere.surf.GII, sub-01_hemi-L_sulc.shape.GII in it "
        "are named in another letter case (file names are case-sensitive here): rename them to the names looked for; "
        "looked for sMRIPrep sub-01/[ses-*/]anat/sub-01_hemi-L_sphere.surf.gii + _sulc.shape.gii")
    make_fs(bids / "derivatives" / "freesurfer", "sub-02", hemis=("lh",))
    surf = bids / "derivatives" / "freesurfer" / "sub-02" / "surf"
    (surf / "lh.sulc").rename(surf / "LH.SULC")
    with pytest.raises(DiscoveryError) as freesurfer:
        discover("02", bids, hemis=("L",))
    assert str(freesurfer.value).startswith(
        f"sub-02 hemi-L: freesurfer {surf}: has lh.sphere but no lh.sulc; LH.SULC in it is named in another letter "
        "case (file names are case-sensitive here): rename it to the name looked for; looked for")


def test_hemispheres_read_from_two_inputs_are_said(bids: Path) -> None:
    """fix-aa: sMRIPrep's folder holds sub-01's left hemisphere only, FreeSurfer's both: hemi-L came
    from sMRIPrep and hemi-R from FreeSurfer, and nothing said the subject's two hemispheres were
    read from two runs. Now one InputChoiceWarning names both folders; one input says nothing."""
    import warnings

    from geomorph_bids.io.discover import InputChoiceWarning

    d = bids / "derivatives"
    make_fs(d / "freesurfer", "sub-01")
    anat = make_smriprep(d / "smriprep", "01", hemis=("L",))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = discover("01", bids)
    assert (res.hemis["L"].source, res.hemis["R"].source) == ("smriprep", "freesurfer")
    [line] = [str(w.message) for w in caught if issubclass(w.category, InputChoiceWarning)]
    assert line == (f"sub-01: the hemispheres are read from different inputs: hemi-L from the sMRIPrep/fMRIPrep "
                    f"layout's {anat}, hemi-R from the FreeSurfer layout's {d / 'freesurfer' / 'sub-01'}; both are "
                    "registered: check they are one run of this subject (a hemisphere missing or incomplete where "
                    "the other is read is taken from the next input)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        discover("01", bids, hemis=("R",))
        discover("01", bids, fs_subjects_dir=bids / "nowhere", hemis=("L",))
    assert not [w for w in caught if issubclass(w.category, InputChoiceWarning)]


def test_a_subject_in_two_layouts_with_other_meshes_is_said(bids: Path) -> None:
    """fix-aa: sub-01 in sMRIPrep's folder and, from another recon-all run, in FreeSurfer's: the
    sMRIPrep sphere was registered (the layouts' order) and the other run passed over in silence.
    Now a FreeSurfer sphere of another vertex count is named on one InputChoiceWarning line; one of
    the same count (sMRIPrep's GIFTI of its own FreeSurfer run, the usual case) says nothing."""
    import warnings

    from geomorph_bids.io.discover import InputChoiceWarning

    d = bids / "derivatives"
    anat = make_smriprep(d / "smriprep", "01", hemis=("L",))
    surf = make_fs(d / "freesurfer", "sub-01", hemis=("lh",))
    _write_mesh(anat / "sub-01_hemi-L_sphere.surf.gii", 2)
    _write_mesh(surf / "lh.sphere", 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = discover("01", bids, hemis=("L",))
    assert res.hemis["L"].source == "smriprep"
    assert not [w for w in caught if issubclass(w.category, InputChoiceWarning)]
    _write_mesh(surf / "lh.sphere", 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = discover("01", bids, hemis=("L",))
    assert res.hemis["L"].source == "smriprep"
    [line] = [str(w.message) for w in caught if issubclass(w.category, InputChoiceWarning)]
    assert line == (f"sub-01 hemi-L: registering {anat / 'sub-01_hemi-L_sphere.surf.gii'} (sMRIPrep/fMRIPrep layout, "
                    f"read first); the FreeSurfer layout's {surf / 'lh.sphere'} has 642 vertices, this one 162 (to "
                    f"register it, name its folder alone: --derivatives other={d / 'freesurfer'}): another run of "
                    "this subject? (the layouts are read in this order: sMRIPrep/fMRIPrep, FreeSurfer, HCP)")
    res = discover("01", bids, derivatives={"other": d / "freesurfer"}, hemis=("L",))
    assert res.hemis["L"].sphere == surf / "lh.sphere"  # the advice reads the other run


def test_an_hcp_subjects_myelin_as_the_native_dscalar_of_both_hemispheres_is_found(tmp_path: Path) -> None:
    """Twenty-first session: HCP's downloads offer the native myelin as one CIFTI dscalar of both
    hemispheres (``MNINonLinear/Native/<S>.MyelinMap_BC.native.dscalar.nii``, written by PostFreeSurfer
    beside the per-hemisphere ``.func.gii``); a subject with only that failed (``has the sphere but no
    .MyelinMap_BC.native.func.gii``). It is now read, its columns of the hemisphere (the reader's);
    the per-hemisphere file, when present, still comes first."""
    bids = tmp_path / "bids"
    bids.mkdir()
    native = make_hcp(tmp_path / "hcp", "100307")
    for h in "LR":
        for m in ("MyelinMap_BC", "MyelinMap"):
            (native / f"100307.{h}.{m}.native.func.gii").unlink()
    with pytest.raises(DiscoveryError, match=r"has the sphere but no \.MyelinMap_BC\.native\.func\.gii"):
        discover("sub-100307", bids, derivatives={"hcp": tmp_path / "hcp"}, features=("sulc", "myelin"))
    touch(native / "100307.MyelinMap.native.dscalar.nii")
    res = discover("sub-100307", bids, derivatives={"hcp": tmp_path / "hcp"}, features=("sulc", "myelin"))
    assert res.hemis["L"].features["myelin"] == native / "100307.MyelinMap.native.dscalar.nii"
    touch(native / "100307.MyelinMap_BC.native.dscalar.nii")
    res = discover("sub-100307", bids, derivatives={"hcp": tmp_path / "hcp"}, features=("sulc", "myelin"))
    assert res.hemis["R"].features["myelin"] == native / "100307.MyelinMap_BC.native.dscalar.nii"
    assert res.hemis["R"].sign("myelin") == 1.0
    touch(native / "100307.R.MyelinMap_BC.native.func.gii")
    res = discover("sub-100307", bids, derivatives={"hcp": tmp_path / "hcp"}, features=("sulc", "myelin"))
    assert res.hemis["R"].features["myelin"] == native / "100307.R.MyelinMap_BC.native.func.gii"


def test_a_map_only_on_a_template_mesh_is_named_where_the_native_one_is_missing(tmp_path: Path) -> None:
    """Twenty-first session: an fMRIPrep user whose myelin map is on fsLR only
    (``sub-01_hemi-L_space-fsLR_den-32k_myelinw.func.gii``, or fMRIPrep's CIFTI
    ``sub-01_space-fsLR_den-91k_myelinw.dscalar.nii``) got ``has the sphere but no myelin; looked for
    ..._myelinw...``: the file that is there was not said, nor why it is not read. The line now names
    it: it is on a template's mesh, the registration needs the map on the sphere's."""
    bids = tmp_path / "bids"
    bids.mkdir()
    anat = make_smriprep(tmp_path / "smriprep", "01", feats=("sulc", "curv"))
    touch(anat / "sub-01_hemi-L_space-fsLR_den-32k_myelinw.func.gii",
          anat / "sub-01_space-fsLR_den-91k_myelinw.dscalar.nii",
          anat / "sub-01_hemi-R_space-fsLR_den-32k_myelinw.func.gii")
    with pytest.raises(DiscoveryError) as exc:
        discover("sub-01", bids, derivatives={"smriprep": tmp_path / "smriprep"}, hemis=("L",),
                 features=("sulc", "myelin"))
    msg = str(exc.value)
    assert ("has the sphere but no myelin (sub-01_hemi-L_space-fsLR_den-32k_myelinw.func.gii, "
            "sub-01_space-fsLR_den-91k_myelinw.dscalar.nii there are on a template's mesh, space-fsLR: "
            "the registration reads the map on this sphere's native mesh, named without space-/den-)") in msg
    assert "hemi-R_space" not in msg


def test_subjects_and_sessions_are_found_in_natural_order(tmp_path: Path) -> None:
    """Unpadded labels: sub-2 before sub-10 (text order put 10 and 100 first), as the group level
    lists them."""
    for label in ("10", "2", "100", "1", "01"):
        (tmp_path / f"sub-{label}").mkdir()
    assert find_subjects(tmp_path, derivatives={}) == ["01", "1", "2", "10", "100"]


@pytest.mark.parametrize("producer", ["fastsurfer", "recon-all"])
def test_a_subject_with_surfaces_but_no_sphere_is_found_and_named_with_how_to_make_it(bids: Path, tmp_path: Path,
                                                                                      producer: str) -> None:
    """FastSurfer with --no_surfreg (and recon-all stopped after -autorecon2) writes surf/lh.white, lh.inflated,
    lh.sulc and FastSurfer's spectral lh.qsphere.nofix, but no lh.sphere. Such a SUBJECTS_DIR was 'not a BIDS
    dataset' (no subject in it had a sphere), and with --fs-subjects-dir 'no subjects found'; a subject
    named sub-X failed with only the 'looked for' list. Now the subject is found and each hemisphere's line
    says why there is no sphere and the command that makes it."""
    from geomorph_bids.io.discover import sphereless_subject

    fs = tmp_path / "subjects"
    surf = fs / "fast1" / "surf"
    touch(*(surf / f"{h}.{k}" for h in ("lh", "rh") for k in ("white", "inflated", "sulc", "curv", "qsphere.nofix")))
    if producer == "fastsurfer":
        touch(fs / "fast1" / "scripts" / "recon-surf.log", fs / "fast1" / "scripts" / "recon-surf.done")
    else:
        touch(fs / "fast1" / "scripts" / "recon-all.log")
    make_fs(fs, "bert")
    touch(fs / "fsaverage" / "surf" / "lh.white")          # a template without its sphere is still no subject
    assert sphereless_subject(fs / "fast1") and not sphereless_subject(fs / "bert")
    touch(fs / "my fast" / "surf" / "lh.white", fs / "sub-01_base" / "surf" / "lh.white")   # names read nowhere
    assert find_subjects(bids, fs_subjects_dir=fs, derivatives={}) == ["01", "bert", "fast1"]
    assert unlabelled_subjects(bids, fs_subjects_dir=fs, derivatives={}) == [fs / "my fast", fs / "sub-01_base"]
    with pytest.raises(DiscoveryError) as exc:
        discover("fast1", bids, fs_subjects_dir=fs, derivatives={})
    msg = str(exc.value)
    assert "\n" not in msg
    qsphere = " (lh.qsphere.nofix is no stand-in: its mesh is the one before topology correction)"
    if producer == "fastsurfer":
        assert (f"hemi-L: freesurfer {surf}: has lh.white but no lh.sphere: FastSurfer made no sphere (2.0 on skips "
                f"it with --no_surfreg, 1.x unless run with --surfreg); make lh.sphere and lh.sphere.reg with "
                f"FastSurfer's recon_surf/recon-surfreg.sh --sid fast1 --sd {fs} (FastSurfer 2.1 on), or rerun "
                f"FastSurfer with its surface registration{qsphere}; looked for ") in msg
    else:
        assert (f"hemi-L: freesurfer {surf}: has lh.white but no lh.sphere: recon-all stopped before its -sphere "
                f"step (the first of -autorecon3); run recon-all -sd {fs} -s fast1 -autorecon3{qsphere}; "
                "looked for ") in msg
    touch(fs / "fast1" / "scripts" / "IsRunning.lh+rh")   # still running: that is what is said
    with pytest.raises(DiscoveryError, match=r"hemi-L: freesurfer \S+/fast1: recon-all has not finished"):
        discover("fast1", bids, fs_subjects_dir=fs, derivatives={})
    touch(fs / "seg2" / "mri" / "aparc.DKTatlas+aseg.deep.mgz", fs / "seg2" / "scripts" / "deep-seg.log")
    assert "seg2" in find_subjects(bids, fs_subjects_dir=fs, derivatives={})    # FastSurfer --seg_only
    with pytest.raises(DiscoveryError) as exc:
        discover("seg2", bids, fs_subjects_dir=fs, derivatives={})
    assert (f"hemi-L: freesurfer {fs / 'seg2'}: FastSurfer made no surfaces (a --seg_only run: its segmentation "
            "mri/aparc.DKTatlas+aseg.deep.mgz, no surf/lh.*); run its surface pipeline on it, run_fastsurfer.sh "
            f"--sid seg2 --sd {fs} --surf_only; looked for ") in str(exc.value)


def test_an_older_fmriprep_folder_with_surfaces_but_no_native_sphere_names_the_freesurfer_folder(bids: Path,
                                                                                               tmp_path: Path) -> None:
    """fMRIPrep before 23.2 (sMRIPrep before 0.13) wrote _smoothwm/_pial/_midthickness/_inflated surfaces (0.12 also
    FreeSurfer's sphere.reg as _desc-reg_sphere) but no native _sphere.surf.gii: with no FreeSurfer folder beside it
    the hemisphere failed with only 'no inputs; looked for ...'. The line now says which files are there, which
    one is missing and that the FreeSurfer subjects folder of that run has it; with that folder there it is read."""
    root = bids / "derivatives" / "fmriprep"
    anat = root / "sub-01" / "anat"
    touch(*(anat / f"sub-01_hemi-{h}_{s}.surf.gii" for h in "LR" for s in ("smoothwm", "pial", "midthickness")),
          *(anat / f"sub-01_hemi-{h}_{s}" for h in "LR" for s in ("space-fsaverage_desc-reg_sphere.surf.gii",
                                                                  "space-fsLR_den-32k_midthickness.surf.gii")))
    with pytest.raises(DiscoveryError) as exc:
        discover("01", bids)
    assert (f"hemi-L: smriprep {anat}: has sub-01_hemi-L_midthickness.surf.gii, sub-01_hemi-L_pial.surf.gii, "
            "sub-01_hemi-L_smoothwm.surf.gii ... but no native sphere (sub-01_hemi-L_sphere.surf.gii, written from "
            "sMRIPrep 0.13 and fMRIPrep 23.2 on; a desc-reg sphere is FreeSurfer's sphere.reg, not it): register "
            "from the FreeSurfer subjects folder that run made (its sourcedata/freesurfer, or the freesurfer folder "
            "beside it): --fs-subjects-dir DIR; looked for ") in str(exc.value)
    make_fs(bids / "derivatives" / "freesurfer", "sub-01")
    found = discover("01", bids)
    assert {h: i.source for h, i in found.hemis.items()} == {"L": "freesurfer", "R": "freesurfer"}


def test_an_fmriprep_1x_folder_is_named_as_that_layout_with_the_freesurfer_folder(bids: Path, tmp_path: Path) -> None:
    """Twenty-second session (fix-av): fMRIPrep 1.0-1.3 named its surfaces sub-01_T1w_smoothwm.L.surf.gii (no hemi-
    entity) and wrote no sphere: the hemisphere failed with only 'no inputs; looked for ...'. The line now names that
    layout and the FreeSurfer folder the run made; with that folder beside it the subject is read from it."""
    anat = bids / "derivatives" / "fmriprep" / "sub-01" / "anat"
    kinds = ("smoothwm", "pial", "midthickness", "inflated")
    touch(*(anat / f"sub-01_T1w_{s}.{h}.surf.gii" for h in "LR" for s in kinds),
          anat / "sub-01_T1w_preproc.nii.gz")
    with pytest.raises(DiscoveryError) as exc:
        discover("01", bids)
    assert (f"hemi-L: smriprep {anat}: has sub-01_T1w_inflated.L.surf.gii, sub-01_T1w_midthickness.L.surf.gii, "
            "sub-01_T1w_pial.L.surf.gii ...: fMRIPrep 1.x's layout (before 1.4), which wrote no sphere: register from "
            "the FreeSurfer subjects folder that run made (the freesurfer folder beside its fmriprep folder): "
            "--fs-subjects-dir DIR; looked for ") in str(exc.value)
    assert "hemi-R: smriprep" in str(exc.value) and "sub-01_T1w_pial.R.surf.gii" in str(exc.value)
    make_fs(bids / "derivatives" / "freesurfer", "sub-01")
    found = discover("01", bids)
    assert {h: i.source for h, i in found.hemis.items()} == {"L": "freesurfer", "R": "freesurfer"}


def test_a_fastsurfer_subject_whose_recon_surf_has_not_finished_is_named_not_registered(bids: Path,
                                                                                      tmp_path: Path) -> None:
    """FastSurfer runs recon-all with -no-isrunning, so a FastSurfer run still going, killed or failed left no
    IsRunning file: its surfaces were registered as if finished. recon-surf.sh deletes scripts/recon-surf.done
    when it starts and writes it last (FastSurfer 1.0 on): a recon-surf.log without it is now named on the
    hemisphere's line; with it (or with no FastSurfer log at all) the subject is read as before."""
    fs = tmp_path / "subjects"
    make_fs(fs, "fast1")
    scripts = fs / "fast1" / "scripts"
    touch(scripts / "recon-surf.log")
    with pytest.raises(DiscoveryError) as exc:
        discover("fast1", bids, fs_subjects_dir=fs, derivatives={})
    assert (f"hemi-L: freesurfer {fs / 'fast1'}: FastSurfer has not finished ({scripts / 'recon-surf.log'} is there "
            "but not recon-surf.done, which recon-surf.sh writes last: it is still running, was killed or stopped on "
            "an error, see the end of its log); register this subject once FastSurfer has ended (or create "
            f"{scripts / 'recon-surf.done'} to register the surfaces as they are); looked for ") in str(exc.value)
    touch(scripts / "recon-surf.done")
    assert sorted(discover("fast1", bids, fs_subjects_dir=fs, derivatives={}).hemis) == ["L", "R"]
    touch(scripts / "recon-surfreg.log")      # FastSurfer's recon-surfreg.sh (after --no_surfreg), not finished
    with pytest.raises(DiscoveryError, match=r"FastSurfer has not finished \(\S+/recon-surfreg.log is there but not "
                                             r"recon-surfreg.done, which recon-surfreg.sh writes last"):
        discover("fast1", bids, fs_subjects_dir=fs, derivatives={})
    touch(scripts / "recon-surfreg.done")
    assert sorted(discover("fast1", bids, fs_subjects_dir=fs, derivatives={}).hemis) == ["L", "R"]


def test_a_cat12_folder_among_the_derivatives_is_named_as_not_read(bids: Path) -> None:
    """CAT12's BIDS output (derivatives/CAT12.8.2/sub-01/anat/surf/lh.sphere.sub-01_T1w.gii, lh.central...,
    lh.sqrtsulc..., lh.thickness...) gave 'no inputs; looked for ...', as if the folder were empty. The
    hemisphere's line now says it is CAT12's layout, why it is not read and where to go instead."""
    surf = bids / "derivatives" / "CAT12.8.2" / "sub-01" / "anat" / "surf"
    touch(*(surf / f"{h}.{k}.sub-01_T1w{ext}" for h in ("lh", "rh") for k, ext in
            (("central", ".gii"), ("sphere", ".gii"), ("sphere.reg", ".gii"), ("sqrtsulc", ""), ("thickness", ""))))
    with pytest.raises(DiscoveryError) as exc:
        discover("01", bids)
    assert (f"hemi-L: cat12 {surf}: CAT12's layout (lh.sphere.sub-01_T1w.gii), which is not read: CAT12 writes no "
            "sulc of FreeSurfer's kind (lh.sqrtsulc is the square root of sulcal depth); register this subject from a "
            "FreeSurfer or FastSurfer run (the source repository's docs/troubleshooting.md, Surfaces from other "
            "FreeSurfer versions and other "
            "producers); looked for ") in str(exc.value)
    make_fs(bids / "derivatives" / "freesurfer", "sub-01")       # with a FreeSurfer run beside it: read, no word
    assert sorted(discover("01", bids).hemis) == ["L", "R"]


def _as_user(uid: int, work) -> str:
    """``repr(work())`` from a forked child running as ``uid`` (permission bits enforced there), or
    what it raised, as ``Type: message``."""
    import os

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            said = repr(work())
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            said = f"{type(exc).__name__}: {exc}"
        os.write(write, said.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as fh:
        said = fh.read()
    os.waitpid(pid, 0)
    return said


def test_a_colleague_s_subject_this_user_may_not_read_is_named_and_ends_nothing_else():
    """A shared FreeSurfer subjects dir where one colleague's subject is 0700: listing the subjects
    raised ``PermissionError`` (Python's ``is_file`` passes EACCES on), and the run ended on
    ``error: permission denied at .../sub-01/surf/lh.sphere``, every other subject unregistered; an
    sMRIPrep ``anat`` of 0700 was ``no inputs ... looked for ...``, as if absent. Now the subjects are
    listed (``bert``, named as recon-all names it, too) and each refused one says which folder this
    user may not read, and whose it is. Run as uid 4242 from root: root ignores permission bits."""
    import grp  # noqa: F401 - imported before the fork: the child, another user, may not read the stdlib here
    import os
    import pwd  # noqa: F401
    import shutil
    import tempfile

    from geomorph_bids.errors import owner_words

    if os.geteuid() != 0:
        pytest.skip("needs root, to run as another user")
    ds = Path(tempfile.mkdtemp(prefix="geomorph-ds-"))  # pytest's own folders are 0700
    try:
        ds.chmod(0o755)
        fs = ds / "derivatives" / "freesurfer"
        for name in ("sub-01", "bert"):
            (fs / name / "surf").mkdir(parents=True)
            for f in ("lh.sphere", "lh.sulc"):
                (fs / name / "surf" / f).write_bytes(b"")
        anat = ds / "derivatives" / "smriprep" / "sub-02" / "anat"
        anat.mkdir(parents=True)
        for folder in (fs / "sub-01" / "surf", fs / "bert" / "surf", anat):
            os.chown(folder, 4243, 4243)
            folder.chmod(0o700)
        assert _as_user(4242, lambda: find_subjects(ds)) == repr(["01", "02", "bert"])
        for label, folder in (("01", fs / "sub-01" / "surf"), ("02", anat)):
            said = _as_user(4242, lambda: discover(label, ds, hemis=("L",)))
            assert said.startswith(f"DiscoveryError: sub-{label} hemi-L: {folder} may not be read by this run's user "
                                   f"({owner_words(folder)}; this run is uid 4242); looked for "), said
            assert owner_words(folder) == "uid 4243, group gid 4243, mode 0700"
    finally:
        shutil.rmtree(ds)

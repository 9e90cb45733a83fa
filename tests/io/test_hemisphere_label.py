"""What input file names (and GIFTI metadata) say about their hemisphere and their map."""

from __future__ import annotations

import numpy as np
import pytest

from geomorph_bids.io import write_metric
from geomorph_bids.io.hemisphere_label import declared_hemispheres, declared_map, feature_conflicts, label_conflicts


@pytest.mark.parametrize("name, expected", [
    ("lh.sulc", "sulc"), ("rh.curv", "curv"), ("lh.curv.pial", "curv"), ("lh.avg_curv", "curv"),
    ("lh.thickness", "thickness"), ("sub-01_hemi-L_curv.shape.gii", "curv"),
    ("sub-01_hemi-L_desc-smoothed_sulc.shape.gii", "sulc"), ("L.refsulc.164k_fs_LR.shape.gii", "sulc"),
    ("100307.L.MyelinMap_BC.164k_fs_LR.func.gii", "myelin"), ("100307.R.curvature.native.shape.gii", "curv"),
    ("lh.sphere", None), ("lh.area", None), ("rsn_07.func.gii", None),
    ("lh.sulc_minus_curv.mgh", None),  # two maps named: says nothing
])
def test_declared_map_reads_freesurfer_bids_and_hcp_names(name, expected):
    assert declared_map(name) == expected


def test_a_map_given_as_another_known_feature_is_a_conflict(tmp_path):
    """lh.curv given as sulc: one line naming the file and both maps; the right names, a user's own
    feature name and arrays are never judged; the folder's name does not count."""
    folder = tmp_path / "curv_study"
    folder.mkdir()
    assert feature_conflicts({"sulc": folder / "lh.curv"}) == ["lh.curv: its name says curv, registered as sulc"]
    assert feature_conflicts({"sulc": folder / "lh.sulc", "curv": "sub-01_hemi-L_curv.shape.gii"}) == []
    assert feature_conflicts({"rsn7": "lh.thickness", "sulc": np.zeros(3)}) == []
    assert feature_conflicts({"myelin": "L.refsulc.164k_fs_LR.shape.gii"}) == [
        "L.refsulc.164k_fs_LR.shape.gii: its name says sulc, registered as myelin"]


def test_a_gifti_map_copied_under_another_maps_name_is_a_conflict(tmp_path):
    """A curv GIFTI copied over ``_sulc.shape.gii`` (same subject, same mesh) registered as sulc at
    CC 0.74, "ok": its data array's Name metadata still says curv. Workbench's map names
    (``100307_L_Curvature``) count; arrays named for no map, or for several, and files named for
    the map they hold, do not. Before, only the file name was read."""
    values = np.linspace(-1, 1, 12)
    curv = write_metric(tmp_path / "sub-02_hemi-L_sulc.shape.gii", values, "L", names=["curv"])
    assert feature_conflicts({"sulc": curv}) == [
        "sub-02_hemi-L_sulc.shape.gii: its GIFTI data array is named for curv (Name metadata), registered as "
        "sulc: a curv file copied under this name?"]
    hcp = write_metric(tmp_path / "100307.L.sulc.native.shape.gii.gz", values, "L", names=["100307_L_Curvature"])
    assert feature_conflicts({"sulc": hcp})[0].startswith("100307.L.sulc.native.shape.gii.gz: its GIFTI data array "
                                                          "is named for curv")
    for names in (["sulc"], ["100307_L_Sulc"], ["column 1"], ["sulc curv"], None):
        ok = write_metric(tmp_path / "mine.shape.gii", values, "L", names=names)
        assert feature_conflicts({"sulc": ok}) == [], names
    thick = write_metric(tmp_path / "thick_left.gii", values, "L", names=["thickness"])  # nilearn's name
    assert feature_conflicts({"sulc": thick})[0].startswith("thick_left.gii: its GIFTI data array is named for "
                                                            "thickness")
    assert len(feature_conflicts({"curv": curv})) == 1  # given as what it holds: the file name's conflict alone
    assert feature_conflicts({"thickness": thick}) == []


def test_a_label_file_given_as_a_map_is_a_conflict(tmp_path):
    """QA (fix-bd): a parcellation (``lh.aparc.label.gii``, region numbers 1-35 with a label table) given
    as sulc registered **ok**, exit 0 (CC 0.51, rotated 123 degrees): its numbers are as good as any map's
    to the gates. A GIFTI data array of ``NIFTI_INTENT_LABEL``, a ``.label.gii`` or ``.dlabel.nii`` name
    says what it is."""
    import nibabel as nib
    from nibabel.gifti import GiftiDataArray, GiftiImage, GiftiLabel, GiftiLabelTable

    from geomorph_bids.io.hemisphere_label import declared_label_file

    table = GiftiLabelTable()
    for key in range(3):
        label = GiftiLabel(key, 0.5, 0.5, 0.5, 1.0)
        label.label = f"region{key}"
        table.labels.append(label)
    keys = GiftiDataArray(np.array([1, 2, 2, 1, 0, 1], dtype=np.int32), intent="NIFTI_INTENT_LABEL",
                          datatype="NIFTI_TYPE_INT32")
    parcellation = tmp_path / "lh.aparc.label.gii"
    nib.save(GiftiImage(darrays=[keys], labeltable=table), parcellation)
    renamed = tmp_path / "sub-01_hemi-L_sulc.shape.gii"  # under a map's name, its intent still says so
    renamed.write_bytes(parcellation.read_bytes())
    assert feature_conflicts({"sulc": parcellation}) == [
        "lh.aparc.label.gii: is a GIFTI label file (NIFTI_INTENT_LABEL), a parcellation's region numbers, not a map "
        "of values, registered as sulc: give the sulc map"]
    assert feature_conflicts({"curv": renamed}) == [
        "sub-01_hemi-L_sulc.shape.gii: is a GIFTI label file (NIFTI_INTENT_LABEL), a parcellation's region numbers, "
        "not a map of values, registered as curv: give the curv map"]
    assert declared_label_file(tmp_path / "S1200.RSN.32k_fs_LR.dlabel.nii") == "a CIFTI label file (.dlabel.nii)"
    mask = write_metric(tmp_path / "sub-01_hemi-L_desc-cortex_mask.label.gii", np.ones(6), "L")  # a metric, by name
    assert declared_label_file(mask) == "a GIFTI label file (.label.gii)"
    # maps, and a user's own map name (not judged): nothing
    sulc = write_metric(tmp_path / "sub-01_hemi-L_sulc.shape.gii.gz", np.linspace(-1, 1, 6), "L", names=["sulc"])
    assert declared_label_file(sulc) is None and feature_conflicts({"sulc": sulc}) == []
    assert feature_conflicts({"parcels": parcellation}) == []


def test_hemisphere_from_gifti_metadata_and_names(tmp_path):
    path = write_metric(tmp_path / "sub-01_hemi-L_sulc.shape.gii", np.arange(5, dtype=np.float32), hemi="R")
    assert ("R", "GIFTI AnatomicalStructurePrimary CortexRight") in declared_hemispheres(path)
    assert ("L", "its name (hemi-L)") in declared_hemispheres(path)
    lines = label_conflicts([path, None, tmp_path / "lh.sulc"], "L")
    assert lines == [f"{path.name}: GIFTI AnatomicalStructurePrimary CortexRight says hemi-R, registered as hemi-L"]


def test_cat12s_sqrtsulc_given_as_sulc_is_a_conflict_that_names_what_it_is(tmp_path):
    """CAT12 writes no FreeSurfer sulc; its surf/lh.sqrtsulc.NAME (square root of sulcal depth, never negative)
    given as sulc registered FLAGGED on correlation alone ('check the map is this subject's sulcal depth'),
    which it is, after a fashion. The identity reason now says what the file is and what is expected;
    the same file given under another name, and FreeSurfer's own names, are not judged."""
    assert feature_conflicts({"sulc": tmp_path / "lh.sqrtsulc.sub-01_T1w", "curv": tmp_path / "lh.curv"}) == [
        "lh.sqrtsulc.sub-01_T1w: its name says sqrtsulc, CAT12's square root of sulcal depth, never negative, "
        "registered as sulc, FreeSurfer's signed map (positive in sulci, negative on gyral crowns): give "
        "FreeSurfer's or FastSurfer's ?h.sulc"]
    assert feature_conflicts({"depth": tmp_path / "lh.sqrtsulc.sub-01_T1w"}) == []
    assert feature_conflicts({"sulc": tmp_path / "lh.sulc", "thickness": tmp_path / "lh.thickness.sub-01_T1w"}) == []

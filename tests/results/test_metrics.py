"""results.metrics: the registration record of a hemisphere's metrics document."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from geomorph_bids.results.metrics import metrics_document, registration_record


def test_a_sphere_reg_set_aside_is_not_recorded_as_used():
    """A sphere.reg that the pre-alignment set aside (``reg_sphere_set_aside``: the maps fit far
    better near it, the rotation came from them) was recorded ``used_sphere_reg: true`` beside
    ``rotation_method: features``: the group table's column said the sphere.reg was used. It says
    so only when the rotation came from it."""
    choice = SimpleNamespace(channels=("sulc",), name="default")

    def record(method: str, given: bool) -> bool:
        result = SimpleNamespace(metrics={"rotation_method": method}, rotation=np.eye(3))
        return registration_record(result, choice, given)["used_sphere_reg"]

    assert record("correspondence", True) is True
    assert record("features", True) is False  # set aside
    assert record("features", False) is False


def test_the_sign_the_sulc_was_read_in_is_recorded_for_the_sign_gate():
    """An HCP-layout hemisphere (``sulc_sign`` "hcp") whose sulc fits far better unflipped: the
    document records the sign in its registration record, which the gates (and the group level and
    reports, which re-judge that record) read: the advice is to drop the HCP sign."""
    record = {"registration_features": ["sulc"], "cc_sulc_after": 0.63, "identity_cc_own": 0.37,
              "identity_cc_mirrored": 0.45, "identity_cc_negated": 0.93}
    doc = metrics_document(record, {"subject": "01", "hemi": "L", "sulc_sign": "hcp"}, "32k", "bundled")
    assert doc["registration"]["sulc_sign"] == "hcp"
    (reason,) = doc["quality"]["reasons"]
    assert "read in HCP's convention and negated" in reason


def test_the_vertices_a_map_holds_no_data_at_are_said_in_the_sidecars_beside_a_cortex_mask():
    """A mask file given and a sulc filled with one value over a lesion: the resampled map's ``CurrentRoi`` named
    the mask file alone, though the resampling also left out the filled vertices. It says both now, and ``NoData``
    how many and why; the sphere's sidecar and a file without one are left as they were."""
    from pathlib import Path

    from geomorph_bids.results.metrics import no_data_record
    from geomorph_bids.results.writer import OutputFile, note_no_data

    assert no_data_record({}, 0, 2562) is None and note_no_data([], None) == []
    record = no_data_record({"sulc": {"nan": 0, "constant": 300}, "curv": {"nan": 40, "constant": 0}}, 320, 2562)
    assert record == {"vertices": 320, "of_vertices": 2562,
                      "features": {"sulc": {"nan": 0, "constant": 300}, "curv": {"nan": 40, "constant": 0}}}
    files = [OutputFile(Path("a_sulc.shape.gii"), "resampled_features", 0,
                        meta={"CurrentRoi": "bids:raw:x_roi.shape.gii: values outside ..."}),
             OutputFile(Path("n_sulc.shape.gii"), "native_features", 0, meta={"Sources": ["bids:raw:lh.sulc"]}),
             OutputFile(Path("s.surf.gii"), "registered_sphere", meta={"Sources": []}),
             OutputFile(Path("m.json"), "metrics")]
    noted = note_no_data(files, record)
    said = ("320 of the native sphere's 2,562 vertices hold no data (sulc: one value filling 300; curv: NaN at 40): "
            "0 in the native maps, left out of the registration's similarity and of the resampling, as a medial "
            "wall is")
    assert noted[0].meta == {"CurrentRoi": "bids:raw:x_roi.shape.gii: values outside ...; less the 320 vertices "
                                           "where a map holds no data (NoData)",
                             "NoData": {"Vertices": 320, "Description": said}}
    assert noted[1].meta == {"Sources": ["bids:raw:lh.sulc"], "NoData": {"Vertices": 320, "Description": said}}
    assert noted[2:] == files[2:] and noted[2].meta == {"Sources": []} and files[0].meta["CurrentRoi"].endswith("...")


def test_no_data_in_a_map_the_registration_does_not_compare_is_not_said_to_leave_the_registration():
    """Twenty-fifth session (fix-cc): fix-bt made the registration leave out only its own maps' no-data regions
    (``NativeHemisphere.registration_cortex``), but every map's sidecar still said of a curv NaN region beside a sulc
    registration "left out of the registration's similarity", which it no longer is. The sidecars now say which
    maps' regions the registration left out (the registration's features, as its record names them)."""
    from pathlib import Path

    from geomorph_bids.results.metrics import no_data_record
    from geomorph_bids.results.writer import OutputFile, note_no_data

    files = [OutputFile(Path("n_sulc.shape.gii"), "native_features", 0, meta={})]
    curv = no_data_record({"curv": {"nan": 165, "constant": 0}}, 165, 2562)
    head = "165 of the native sphere's 2,562 vertices hold no data (curv: NaN at 165): 0 in the native maps, "
    assert note_no_data(files, curv, ("sulc",))[0].meta["NoData"]["Description"] == (
        head + "left out of the resampling (not of the registration, which compares sulc alone), as a medial wall is")
    assert note_no_data(files, curv, ("sulc", "curv"))[0].meta["NoData"]["Description"] == (
        head + "left out of the registration's similarity and of the resampling, as a medial wall is")
    both = no_data_record({"sulc": {"nan": 10, "constant": 0}, "curv": {"nan": 165, "constant": 0}}, 170, 2562)
    assert note_no_data(files, both, ("sulc",))[0].meta["NoData"]["Description"] == (
        "170 of the native sphere's 2,562 vertices hold no data (sulc: NaN at 10; curv: NaN at 165): 0 in the "
        "native maps, left out of the resampling and, sulc's, of the registration's similarity, as a medial wall is")

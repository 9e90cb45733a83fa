"""quality.py: the gates judged from a registration's metrics, with the thresholds in one place."""

from __future__ import annotations

import numpy as np
import pytest

from geomorph_bids.quality import DEFAULT_THRESHOLDS, QualityThresholds, QualityVerdict, assess, quality_warnings

GOOD = {"cc_sulc_rigid": 0.90, "cc_sulc_after": 0.96, "n_folded": 0, "areal_p95_abs": 0.3,
        "identity_cc_own": 0.91, "identity_cc_mirrored": 0.48}


def test_a_normal_registration_passes():
    verdict = assess(GOOD, ["sulc"])
    assert not verdict.flagged and verdict.line() == "" and quality_warnings(GOOD, ["sulc"]) == []


def test_every_gate_names_itself_and_its_numbers():
    bad = {"cc_sulc_rigid": 0.60, "cc_sulc_after": 0.40, "n_folded": 3, "warp_folded_triangles": 2,
           "areal_p95_abs": 1.5, "n_nonfinite": 1, "identity_cc_own": 0.47, "identity_cc_mirrored": 0.90,
           "label_conflicts": ["rh.sulc: its name (rh.) says hemi-R, registered as hemi-L"]}
    reasons = assess(bad, ["sulc"]).reasons
    assert [r.split(":")[0] for r in reasons] == ["identity", "identity", "correlation", "distortion", "distortion",
                                                  "distortion"]
    assert "rh.sulc" in reasons[0] and "CC 0.90 vs 0.47" in reasons[1] and "0.400" in reasons[2]
    assert "1.50" in reasons[3] and "3 folded" in reasons[4] and "1 vertices" in reasons[5]
    notes = quality_warnings(bad, ["sulc"])
    assert notes[:6] == list(reasons)  # the report shows the gates, then advisory notes
    assert "0.600 -> 0.400" in notes[6] and "warp folds 2" in notes[7]


def test_a_sign_flipped_map_is_named_as_such_not_as_the_other_hemisphere():
    """The identity check fails for a sign-flipped sulc too; when the flipped map fits the template
    far better (identity_cc_negated, measured only then), the reason says so."""
    flipped = dict(GOOD, identity_cc_own=0.37, identity_cc_mirrored=0.45, identity_cc_negated=0.93)
    (reason,) = assess(flipped, ["sulc"]).reasons
    assert reason.startswith("sign:") and "CC 0.93 vs 0.37" in reason and "--sulc-sign hcp" in reason
    swapped = dict(flipped, identity_cc_negated=0.50)  # the other hemisphere: flipping does not help
    (reason,) = assess(swapped, ["sulc"]).reasons
    assert reason.startswith("identity:") and "CC 0.45 vs 0.37" in reason


def test_a_freesurfer_sulc_read_as_hcps_is_told_to_drop_the_hcp_sign():
    """The sulc was read in HCP's sign and negated (``sulc_sign`` "hcp": ``--sulc-sign hcp`` or an
    HCP layout) but is FreeSurfer's: the sign gate used to advise ``--sulc-sign hcp``, the very cause."""
    flipped = dict(GOOD, identity_cc_own=0.37, identity_cc_mirrored=0.45, identity_cc_negated=0.93)
    (reason,) = assess(dict(flipped, sulc_sign="hcp"), ["sulc"]).reasons
    assert reason.startswith("sign:") and "CC 0.93 vs 0.37" in reason
    assert "read in HCP's convention and negated" in reason and "leave out --sulc-sign hcp" in reason
    assert "(geomorph-register --sulc-sign hcp" not in reason
    (reason,) = assess(dict(flipped, sulc_sign="freesurfer"), ["sulc"]).reasons
    assert "(geomorph-register --sulc-sign hcp" in reason


def test_a_sign_flipped_map_is_flagged_even_when_the_mirror_fits_no_better():
    """A flipped map fits the template and its mirror alike (~0.4): when the template happens to fit
    better (0.42 vs 0.40) the sign gate, nested in the identity check, never ran (quality ok)."""
    flipped = dict(GOOD, identity_cc_own=0.42, identity_cc_mirrored=0.40, identity_cc_negated=0.95)
    (reason,) = assess(flipped, ["sulc"]).reasons
    assert reason.startswith("sign:") and "CC 0.95 vs 0.42" in reason
    poor = dict(flipped, identity_cc_negated=0.50)  # flipping does not help: nothing to say
    assert not assess(poor, ["sulc"]).flagged


def test_a_map_that_fits_the_mirror_barely_better_is_also_said_maybe_not_to_be_sulc():
    """Thickness or a permuted sulc fits template and mirror alike (0.41 vs 0.36; 0.32 vs 0.30): the
    identity reason blamed swapped hemispheres alone; a real swap (0.92 vs 0.51) reads as before."""
    (reason,) = assess(dict(GOOD, identity_cc_own=0.36, identity_cc_mirrored=0.41), ["sulc"]).reasons
    assert reason.startswith("identity:") and "swapped lh/rh files?" in reason
    assert "not this hemisphere's sulc at all (thickness, values in another vertex order?)" in reason
    (reason,) = assess(dict(GOOD, identity_cc_own=0.51, identity_cc_mirrored=0.92), ["sulc"]).reasons
    assert reason.endswith("(CC 0.92 vs 0.51): the other hemisphere, or swapped lh/rh files?")


def test_a_smooth_map_of_the_other_sign_fitting_the_mirror_better_names_the_sign_too():
    """An infant-like (smoothed) sulc of the other sign fits template, mirror and negation weakly
    (measured: own 0.34, mirrored 0.43, negated 0.62): below the sign gate's margin, the identity reason
    named swapped hemispheres alone; it now names the sign as well. A real swap reads as before."""
    smooth = dict(GOOD, identity_cc_own=0.34, identity_cc_mirrored=0.43, identity_cc_negated=0.62)
    (reason,) = assess(smooth, ["sulc"]).reasons
    assert reason.startswith("identity:") and "(CC 0.43 vs 0.34)" in reason
    assert reason.endswith(" Or the other sign: negated, the features fit the template at CC 0.62 (a smooth map, "
                           "an infant's, fits every way weakly)")
    swapped = dict(GOOD, identity_cc_own=0.37, identity_cc_mirrored=0.45, identity_cc_negated=0.50)
    (reason,) = assess(swapped, ["sulc"]).reasons
    assert "other sign" not in reason


def test_thresholds_change_the_verdict_and_are_recorded():
    strict = QualityThresholds(min_cc_after=0.97)
    verdict = assess(GOOD, ["sulc"], strict)
    assert verdict.reasons == ("correlation: sulc correlates 0.960 with the template after registration "
                               "(minimum 0.97)",)
    doc = verdict.to_dict()
    assert doc["flagged"] is True and doc["thresholds"]["min_cc_after"] == 0.97
    assert QualityVerdict.from_dict(doc) == verdict
    assert not assess(GOOD | {"n_folded": 2}, ["sulc"], QualityThresholds(max_folds=2)).flagged
    assert assess(GOOD | {"identity_cc_mirrored": 0.95}, ["sulc"]).flagged
    assert not assess(GOOD | {"identity_cc_mirrored": 0.95}, ["sulc"], QualityThresholds(identity_margin=0.1)).flagged
    assert DEFAULT_THRESHOLDS.min_cc_after == 0.5 and DEFAULT_THRESHOLDS.max_folds == 0


@pytest.mark.parametrize("field,value", [("min_cc_after", float("nan")), ("min_cc_after", 1.5),
                                         ("min_cc_other", float("-inf")), ("max_areal_p95", float("inf")),
                                         ("max_areal_p95", -0.1), ("identity_margin", float("nan")),
                                         ("identity_margin", 3.0), ("max_cc_drop", float("nan")),
                                         ("max_folds", -1), ("max_folds", 1.5), ("max_folds", True), ("max_folds", float("inf")),
                                         ("min_cc_after", "0.5"), ("min_cc_after", None)])
def test_thresholds_refuse_what_would_flag_or_pass_everything(field, value):
    """QualityThresholds(min_cc_after=nan) flagged every registration (no correlation is >= nan):
    a non-finite, out-of-range or non-number threshold is a ValueError naming it, at construction."""
    with pytest.raises(ValueError, match=f"^QualityThresholds {field} must be .*, got ") as err:
        QualityThresholds(**{field: value})
    assert "\n" not in str(err.value)


def test_thresholds_at_their_limits_are_taken():
    t = QualityThresholds(min_cc_after=-1, min_cc_other=1.0, max_areal_p95=0, max_folds=10 ** 6,
                          identity_margin=-2.0, max_cc_drop=2.0)
    assert t.min_cc_after == -1 and t.max_folds == 10 ** 6
    assert QualityThresholds(max_folds=np.int64(3)).max_folds == 3


def test_recorded_thresholds_out_of_range_take_the_defaults():
    """A metrics file's thresholds (the group level re-judges with them) that the constructor
    refuses, e.g. NaN written by an older version or by hand, are read as the defaults, as junk was."""
    doc = {"min_cc_after": float("nan"), "max_areal_p95": 0.7, "max_folds": -2}
    assert QualityThresholds.from_dict(doc) == QualityThresholds(max_areal_p95=0.7)


def test_thresholds_round_trip_and_ignore_junk():
    t = QualityThresholds(min_cc_after=0.8, max_areal_p95=0.7, max_folds=3, identity_margin=0.05)
    assert QualityThresholds.from_dict(t.to_dict()) == t
    assert QualityThresholds.from_dict({"min_cc_after": "x", "other": 1, "max_folds": True}) == DEFAULT_THRESHOLDS


def test_missing_metrics_pass():
    assert not assess({}, ["sulc"]).flagged


def test_a_low_correlation_after_a_sphere_reg_rotation_points_at_the_sphere_reg():
    """A sphere.reg of another subject gives a wrong rotation: the correlation reason says where
    the rotation came from (only then)."""
    low = dict(GOOD, cc_sulc_after=0.30)
    (plain,) = assess(low, ["sulc"]).reasons
    (via_reg,) = assess(dict(low, rotation_method="correspondence"), ["sulc"]).reasons
    assert "sphere.reg" not in plain and via_reg.startswith(plain.split(";")[0])
    assert via_reg.endswith("(the rotation came from the sphere.reg: is it this sphere's? without it the features "
                            "decide the rotation)")


def test_a_low_correlation_of_a_map_whose_coarse_folds_fit_says_so_and_is_still_flagged():
    """A noisy or finely folded sulc (white noise 3 times the example's SD: identity_cc_own 0.85, CC after 0.47;
    fsaverage with noise or fine folds: 0.89-0.91, CC 0.41-0.47, its cortex within 0.4-0.7 degree of the clean map's
    registration) was flagged as a map that is no sulc would be, with nothing to tell them apart. The verdict is
    the same; its reason now says the coarse folds fit as a brain's do. Maps that are no sulc (curv 0.64,
    thickness 0.36) and a sphere.reg's rotation get no such words."""
    noisy = dict(GOOD, cc_sulc_rigid=0.36, cc_sulc_after=0.472, identity_cc_own=0.848, identity_cc_mirrored=0.49)
    (reason,) = assess(noisy, ["sulc"]).reasons
    assert reason == ("correlation: sulc correlates 0.472 with the template after registration (minimum 0.5); its "
                      "coarse pattern fits the template at 0.85, as a brain's sulc does (a map that is no sulc: below "
                      "0.7): a noisy or finely folded map (a low-quality scan, polymicrogyria?) registered from its "
                      "coarse folds; if the report's overlay looks right, lower --min-cc")
    for own in (0.64, 0.36, None):
        (reason,) = assess(dict(noisy, identity_cc_own=own, identity_cc_mirrored=0.2), ["sulc"]).reasons
        assert reason == "correlation: sulc correlates 0.472 with the template after registration (minimum 0.5)"
    (reason,) = assess(dict(noisy, rotation_method="correspondence"), ["sulc"]).reasons
    assert "coarse pattern" not in reason and reason.endswith("decide the rotation)")
    curv = assess(dict(noisy, cc_sulc_after=0.9, cc_curv_after=0.1), ["sulc", "curv"]).reasons
    assert curv == ("correlation: curv correlates 0.100 with the template after registration (minimum 0.2)",)
    assert assess(noisy, ["sulc"], QualityThresholds(min_cc_after=0.4)).reasons == ()


def test_curvature_of_a_real_brain_is_judged_against_its_own_floor():
    """An individual's curv is far sharper than a group-average template's: a good registration
    of a real brain (pycortex S1 to fsaverage, sulc + curv: sulc 0.86, curv 0.44) must pass; a
    structureless curv (0.05) is still flagged, and the first feature keeps the 0.5 floor."""
    real = dict(GOOD, cc_sulc_after=0.858, cc_curv_after=0.436)
    assert not assess(real, ["sulc", "curv"]).flagged
    (reason,) = assess(dict(real, cc_curv_after=0.05), ["sulc", "curv"]).reasons
    assert reason.startswith("correlation: curv correlates 0.050") and "(minimum 0.2)" in reason
    (reason,) = assess(dict(real, cc_curv_after=0.45), ["curv", "sulc"]).reasons  # curv first: the main floor
    assert "curv correlates 0.450" in reason and "(minimum 0.5)" in reason
    assert assess(real, ["sulc", "curv"], QualityThresholds(min_cc_other=0.5)).flagged


def test_a_metric_that_is_not_a_finite_number_fails_its_gate():
    """NaN compares False with everything, so ``cc < floor`` let a NaN correlation (and a NaN
    distortion) pass as ok; an infinite fold count (a damaged or edited metrics file, read at the
    group level) raised OverflowError out of ``int()`` and ended the whole group level."""
    nan, inf = float("nan"), float("inf")
    for key, value, says in (("cc_sulc_after", nan, "sulc correlates nan"),
                             ("areal_p95_abs", nan, "areal distortion| nan"),
                             ("n_folded", inf, "inf folded triangle(s)"),
                             ("n_folded", nan, "nan folded triangle(s)"),
                             ("n_nonfinite", inf, "inf vertices with non-finite distortion")):
        reasons = assess({**GOOD, key: value}, ["sulc"]).reasons
        assert len(reasons) == 1 and says in reasons[0], (key, reasons)
    assert assess({**GOOD, "cc_curv_after": nan}, ["sulc", "curv"]).flagged


def test_numpy_scalars_are_judged_as_numbers():
    """``Registration.metrics`` built by hand or by numpy code may hold numpy scalars: an int64
    fold count, a float32 correlation. The gates judged only Python ints and floats, and let
    those pass unjudged."""
    bad = {**GOOD, "n_folded": np.int64(3), "cc_sulc_after": np.float32(0.4), "areal_p95_abs": np.float32(1.5),
           "identity_cc_own": np.float32(0.47), "identity_cc_mirrored": np.float32(0.9)}
    reasons = assess(bad, ["sulc"]).reasons
    assert [r.split(":")[0] for r in reasons] == ["identity", "correlation", "distortion", "distortion"]
    assert "3 folded" in reasons[3] and "0.400" in reasons[1]
    notes = quality_warnings({**bad, "cc_sulc_rigid": np.float32(0.6)}, ["sulc"])
    assert "0.600 -> 0.400" in notes[-1]


def test_a_value_just_beyond_its_gate_is_printed_with_the_digits_that_show_it():
    """A p95 of 1.0011 over a maximum of 1 read "1.00 (maximum 1)", which looks like a pass."""
    v = assess({"areal_p95_abs": 1.0011, "cc_sulc_after": 0.49996}, ["sulc"],
               QualityThresholds(max_areal_p95=1.0, min_cc_after=0.5))
    text = v.line()
    assert "1.001 (maximum 1)" in text and "0.49996 with the template" in text
    assert "1.30 (maximum 1)" in assess({"areal_p95_abs": 1.3}, [], QualityThresholds(max_areal_p95=1.0)).line()


def test_hand_edited_thresholds_and_counts_of_other_types_are_judged_not_raised():
    """A recorded ``thresholds`` that is a string (AttributeError), a count beyond any float
    (``n_folded`` of 401 digits: OverflowError when the reason was formatted) and a string of label
    conflicts (judged letter by letter) in a hand-edited metrics file."""
    from geomorph_bids.quality import QualityThresholds, assess

    assert QualityThresholds.from_dict("strict") == QualityThresholds()
    assert QualityThresholds.from_dict(["min_cc_after", 0.9]) == QualityThresholds()
    verdict = assess({"cc_sulc_after": 0.9, "n_folded": 10 ** 400, "label_conflicts": "lh.sulc says R"}, ["sulc"])
    assert verdict.reasons == ("identity: lh.sulc says R",
                               "distortion: inf folded triangle(s) in the registered sphere (maximum 0)")


def test_hemispheres_registered_from_the_same_input_files_are_told_apart_from_different_brains():
    """QA (fix-bd): a FreeSurfer subject folder linked to another (``sub-05 -> sub-01``) was registered
    twice, ``ok``, and counted as two participants; the numbers its input files alone decide (correlations
    with the template before the warp, rotation) agree to the last digit only for the same files."""
    from geomorph_bids.quality import same_inputs, same_inputs_text

    record = {"template": "fsLR", "cc_sulc_before": -0.08532277592247084, "cc_sulc_rigid": 0.860330854855287,
              "cc_sulc_after": 0.966, "identity_cc_own": 0.9286111121363717, "identity_cc_mirrored": 0.5060468614476782,
              "rotation_deg": 25.425901216159254, "seconds_total": 1.5}
    other_run = {**record, "cc_sulc_after": 0.9661, "seconds_total": 0.8}  # the warp and the seconds may differ
    near = {**record, "cc_sulc_before": np.nextafter(record["cc_sulc_before"], 1.0)}  # another brain: one bit off
    sets = same_inputs([("sub-01", "L", record), ("sub-01", "R", {**record, "rotation_deg": 3.0}),
                        ("sub-02", "L", near), ("sub-05", "L", other_run),
                        ("sub-05", "R", {**record, "rotation_deg": 3.0}),
                        ("sub-07", "L", {**record, "template": "fsaverage"}),  # another template's row
                        ("sub-08", "L", {**record, "identity_cc_own": None}),  # nothing to compare
                        ("sub-09", "L", {"template": "fsLR", "rotation_deg": 25.425901216159254})])
    assert sets == [("sub-01", ("sub-05",), "L"), ("sub-01", ("sub-05",), "R")]
    assert same_inputs_text(sets) == (
        "sub-05 as sub-01 (hemi-L, hemi-R): registered twice from the same input files (their registrations agree "
        "to the last digit: correlations with the template before the warp, rotation): a subject folder linked to "
        "or copied from another?")
    assert same_inputs([("sub-01", "L", record), ("sub-02", "L", near)]) == []
    # a participant's sessions sharing one anatomy are not copies; another participant's copy of them is
    assert same_inputs([("sub-01_ses-1", "L", record), ("sub-01_ses-2", "L", record), ("sub-05_ses-1", "L", record)]
                       ) == [("sub-01_ses-1", ("sub-05_ses-1",), "L")]
    # one subject copied under many labels: one line, the first ten named
    many = same_inputs([(f"sub-{i:04d}", "L", record) for i in range(5000)])
    assert len(many) == 1 and len(many[0][1]) == 4999
    assert same_inputs_text(many).startswith("sub-0001 as sub-0000 (hemi-L); sub-0002 as sub-0000 (hemi-L); ")
    assert "sub-0010 as sub-0000 (hemi-L); ... (4999 in all): registered twice" in same_inputs_text(many)


def test_a_registration_of_a_map_with_too_few_folds_passes_with_a_note_naming_the_fit_and_the_remedy():
    """A sulc smoothed 320 times (the example's, 10k: an infant-like map) registered at CC 0.53-0.55, `ok`,
    while 4-5.4 degrees (median) from its unsmoothed registration; its coarse fit to the template
    (identity_cc_own) was 0.56-0.62 where a brain's sulc, noisy or not, fits at 0.82 or more. The verdict is
    unchanged (a note, no gate, no exit code); a map flagged as the other hemisphere or sign gets no note."""
    from geomorph_bids.quality import FEW_FOLDS_BELOW, few_folds

    smooth = dict(GOOD, identity_cc_own=0.62, identity_cc_mirrored=0.48, cc_sulc_rigid=0.52, cc_sulc_after=0.545)
    assert FEW_FOLDS_BELOW == 0.8 and not assess(smooth, ["sulc"]).flagged
    note = ("few folds: sulc's coarse pattern fits the template at 0.62 (below 0.8; a brain's sulc, even a noisy "
            "one: 0.82 or more): a map this smooth (an infant's, or smoothed) registers loosely, several degrees "
            "off (4-5 degrees at 0.56-0.62 on the example) even where its CC passes; register such a cohort to a "
            "template of its own age (geomorph-bids BIDS OUT group --build-template N, then --template "
            "OUT/tpl-LABEL) and check the report's overlay")
    assert few_folds(smooth, ["sulc"]) == note and quality_warnings(smooth, ["sulc"]) == [note]
    assert few_folds(GOOD, ["sulc"]) == "" and few_folds(dict(GOOD, identity_cc_own=0.80), ["sulc"]) == ""
    swapped = dict(smooth, identity_cc_mirrored=0.70)  # the identity gate explains the poor fit already
    assert assess(swapped, ["sulc"]).flagged and few_folds(swapped, ["sulc"]) == ""
    assert few_folds(smooth, ["curv"]) == ""  # curv fits a group average loosely (0.64) however folded


def test_a_tiny_icosphere_with_too_few_folds_gets_the_note_and_the_same_map_unsmoothed_does_not():
    """The fsLR template's sulc on an ico-4 sphere (2,562 vertices), rotated 40 degrees, registered: as given it
    fits at 1.00; averaged with its neighbours 60 times at 0.68 and registered at CC 0.565, as the example's
    sulc smoothed 320 times (0.56-0.62, CC 0.53-0.55): neither is flagged, the smooth one gets the note."""
    import scipy.sparse as sp

    from geomorph_bids.engine.register import register
    from geomorph_bids.io.templates import load_template
    from geomorph_bids.quality import few_folds
    from geomorph_bids.sphere import icosphere, rotation_matrix

    v, f = icosphere(4)
    sulc = load_template("fsLR", "L").features["sulc"][: len(v)]  # ico-4 vertices are the first ico-6 vertices
    rot = rotation_matrix(np.array([0.3, -0.5, 0.8]), 40.0)
    i, j = np.concatenate([f[:, 0], f[:, 1], f[:, 2]]), np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    a = sp.coo_matrix((np.ones(len(i)), (i, j)), shape=(len(v), len(v))).tocsr()
    a = ((a + a.T) > 0).astype(float) + sp.eye(len(v))
    a = sp.diags(1 / np.asarray(a.sum(1)).ravel()) @ a
    smooth = sulc.astype(np.float64)
    for _ in range(60):
        smooth = a @ smooth
    fits = {}
    for name, values in (("given", sulc), ("smooth", smooth)):
        reg = register((v @ rot.T, f), {"sulc": values}, "fsLR", "L", device="cpu")
        fits[name] = (round(reg.metrics["identity_cc_own"], 2), round(reg.metrics["cc_sulc_after"], 2), reg.quality.flagged,
                      few_folds(reg.metrics, ["sulc"]).split(" (")[0])
    assert fits == {"given": (1.0, 1.0, False, ""),
                    "smooth": (0.68, 0.56, False, "few folds: sulc's coarse pattern fits the template at 0.68")}

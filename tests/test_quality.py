"""quality.py: flags from a registration's metrics, with the thresholds in one place."""

from __future__ import annotations

from geomorph_bids.quality import DEFAULT_THRESHOLDS, QualityThresholds, quality_warnings


def test_flags_and_thresholds():
    good = {"cc_sulc_rigid": 0.90, "cc_sulc_after": 0.96, "n_folded": 0, "areal_p95_abs": 0.3}
    assert quality_warnings(good, ["sulc"]) == []
    bad = {"cc_sulc_rigid": 0.60, "cc_sulc_after": 0.40, "n_folded": 3, "warp_folded_triangles": 2,
           "areal_p95_abs": 1.5, "n_nonfinite": 1}
    flags = quality_warnings(bad, ["sulc"])
    assert len(flags) == 6 and "low (0.400)" in flags[0] and "0.600 -> 0.400" in flags[1]
    strict = QualityThresholds(min_cc_after=0.97)
    assert quality_warnings(good, ["sulc"], strict) == ["sulc: correlation with the template after "
                                                        "registration is low (0.960)"]
    assert DEFAULT_THRESHOLDS.min_cc_after == 0.5

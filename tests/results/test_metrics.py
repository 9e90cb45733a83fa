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

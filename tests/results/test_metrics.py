"""results.metrics: the registration record of a hemisphere's metrics document."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from geomorph_bids.results.metrics import registration_record


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

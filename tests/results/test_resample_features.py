"""results.resample: one density sphere read and indexed once serves many hemispheres, with the
same values as reading it for each."""

from __future__ import annotations

import dataclasses

import numpy as np

from geomorph_bids.results.resample import density_target, resample_features
from geomorph_bids.sphere.icosphere import icosphere
from geomorph_bids.sphere.rotation import random_rotation


def test_a_reused_target_gives_the_same_maps_and_names_its_source():
    v, f = icosphere(5)
    v = v * 100.0
    rng = np.random.default_rng(0)
    target = density_target("fsLR", "L", "32k")
    assert len(target.vertices) == 32492 and target.areas.shape == (32492,) and target.areas.min() > 0
    for k in range(2):  # two "hemispheres", one target
        moved = v @ random_rotation(rng, max_angle_deg=10.0).T
        maps = {"sulc": rng.normal(size=len(v)), "curv": rng.normal(size=len(v))}
        mid = moved * (1.0 + 0.1 * rng.random((len(v), 1)))
        for midthickness in (None, mid):
            fresh = resample_features((moved, f), maps, "fsLR", "L", "32k", midthickness=midthickness)
            reused = resample_features((moved, f), maps, "fsLR", "L", "32k", midthickness=midthickness,
                                       target=target)
            assert fresh.source == reused.source and fresh.area_surfaces == reused.area_surfaces
            for name in maps:
                np.testing.assert_array_equal(fresh.maps[name], reused.maps[name])
    marked = dataclasses.replace(target, source="given")
    assert resample_features((v, f), {"sulc": v[:, 0]}, "fsLR", "L", "32k", target=marked).source == "given"


def test_the_registrations_fans_give_the_same_maps():
    """``fans``: the registered mesh's faces-around table handed over (Registration.fans) builds
    the same locator as building it: the same maps, bit for bit; a table of another mesh is refused."""
    import pytest

    from geomorph_bids.sphere.locate import vertex_fans

    v, f = icosphere(5)
    rng = np.random.default_rng(3)
    moved = (v * 100.0) @ random_rotation(rng, max_angle_deg=20.0).T
    moved = moved + rng.normal(scale=0.05, size=moved.shape)  # not a rigid copy of the grid
    maps = {"sulc": rng.normal(size=len(v))}
    target = density_target("fsLR", "L", "32k")
    built = resample_features((moved, f), maps, "fsLR", "L", "32k", target=target)
    given = resample_features((moved, f), maps, "fsLR", "L", "32k", target=target, fans=vertex_fans(f, len(v)))
    np.testing.assert_array_equal(built.maps["sulc"], given.maps["sulc"])
    with pytest.raises(ValueError, match="fans has 2562 rows"):
        resample_features((moved, f), maps, "fsLR", "L", "32k", target=target, fans=vertex_fans(icosphere(4)[1], 2562))

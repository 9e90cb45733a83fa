"""Pieces of a hemisphere's figures (the whole report: test_participant.py)."""

from __future__ import annotations

import numpy as np

from geomorph_bids.reports.hemisphere_figures import _carry
from geomorph_bids.sphere.icosphere import icosphere
from geomorph_bids.sphere.locate import SphereLocator


def test_carry_with_one_shared_locator_equals_fresh_ones():
    """Two point sets carried with one locator of the template's mesh (the native sphere's and
    the registered sphere's vertices): the same maps, bit for bit, as a locator built per call;
    the template's zeros (medial wall) come out NaN, the rest are interpolated z-scores."""
    rng = np.random.default_rng(3)
    v, f = icosphere(3)
    v = np.asarray(v, dtype=np.float64)
    values = np.sin(v[:, 0] / 30.0) + v[:, 2] / 100.0
    values[v[:, 1] > 80.0] = 0.0                                  # a "medial wall"
    template = ((v, np.asarray(f)), values)
    locator = SphereLocator(v, np.asarray(f))
    for _ in range(2):
        p = rng.normal(size=(500, 3))
        p *= 100.0 / np.linalg.norm(p, axis=1, keepdims=True)
        shared, fresh = _carry(template, p, locator), _carry(template, p)
        assert np.array_equal(shared, fresh, equal_nan=True)
        assert np.isnan(shared[p[:, 1] > 95.0]).all() and np.isfinite(shared[p[:, 1] < 70.0]).all()
        assert abs(np.nanmean(shared)) < 0.3 and 0.5 < np.nanstd(shared) < 1.5


def test_a_population_templates_outputs_are_drawn_on_its_base_templates_output_sphere():
    """QA: every report of a hemisphere registered to a population template (built on fsLR, its
    maps written at fsLR's 32k) said 'output-density sphere not available (32492 vertices is not an
    icosphere ...); drawing the native map instead': the sphere was looked for as the custom
    template's own. Its outputs are on its base template's output spheres."""
    from geomorph_bids.io.templates import load_density_sphere
    from geomorph_bids.reports.hemisphere_figures import _density_mesh

    v, f = _density_mesh("geomorphPopulation", "L", "32k", 32492, base="fsLR")
    want, _, _ = load_density_sphere("fsLR", "L", "32k")
    assert v.shape == (32492, 3) and np.array_equal(v, want)
    v, _ = _density_mesh("fsLR", "R", "32k", 32492)
    assert v.shape == (32492, 3)
    v, _ = _density_mesh("old", "L", "ico6", 40962)  # no base known (older outputs): an icosphere
    assert v.shape == (40962, 3)

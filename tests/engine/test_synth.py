"""Synthetic-subject generator: diffeomorphic warps, ground truth, intensity changes, datasets."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from geomorph_bids.engine.benchmark_sources import BENCHMARK_SOURCES
from geomorph_bids.engine.synth import (
    BENCHMARK_CONFIGS,
    TRAIN_CONFIG,
    SynthConfig,
    angular_error_deg,
    augment_intensity,
    make_benchmark,
    make_dataset,
    random_scalar_field,
    random_warp,
    synth_subject,
)
from geomorph_bids.io.templates import load_template
from geomorph_bids.sphere.distortion import distortion, distortion_summary
from geomorph_bids.sphere.icosphere import icosphere
from geomorph_bids.sphere.resample import resample

QUIET = dict(gain_sd=(0.0, 0.0), bias_sd=(0.0, 0.0), contrast_sd=(0.0, 0.0), noise_sd=(0.0, 0.0))


def _cfg(amp: float, **kw) -> SynthConfig:
    return replace(TRAIN_CONFIG, max_displacement_deg=(amp, amp), **kw)


@pytest.fixture(scope="module")
def ico5():
    return icosphere(5)


@pytest.mark.parametrize("field", ["fourier", "bumps"])
@pytest.mark.parametrize("amp", [5.0, 15.0])
def test_warps_have_no_folds_and_hit_the_requested_displacement(field, amp):
    v, f = icosphere(4)  # coarser triangles fold more easily than ico-6 ones
    for seed in range(2):
        cfg = _cfg(amp, field=field, rotation_max_deg=0.0)
        w = random_warp(v, seed, cfg)
        d = distortion((v, f), (w.forward, f))
        assert len(d["folded"]) == 0
        assert len(distortion((v, f), (w.inverse, f))["folded"]) == 0
        # achieved within 3 % of requested (calibrated on ico-4 points)
        assert w.requested_displacement_deg == amp
        assert abs(w.nonlinear_max_displacement_deg / amp - 1.0) < 0.03
        np.testing.assert_allclose(np.linalg.norm(w.forward, axis=1), 100.0, atol=1e-9)


def test_ico6_large_warp_diffeomorphic_and_invertible():
    v, f = icosphere(6)
    w = random_warp(v, 7, _cfg(15.0))
    d = distortion((v, f), (w.forward, f))
    s = distortion_summary(d)
    assert len(d["folded"]) == 0
    assert 0.02 < s["areal_mean_abs"] < 0.4  # measured 0.1-0.25 for 8-15 deg warps
    assert 14.5 < w.nonlinear_max_displacement_deg < 15.5
    err = angular_error_deg(w.apply(w.inverse), v)
    assert np.median(err) < 1e-4 and np.percentile(err, 99) < 1e-3  # measured ~3e-7 / ~3e-6 deg


def test_forward_inverse_round_trip_both_ways(ico5):
    v, _ = ico5
    w = random_warp(v, 3, _cfg(10.0, rotation_max_deg=5.0))
    e1 = angular_error_deg(w.apply(w.inverse), v)
    e2 = angular_error_deg(w.apply_inverse(w.forward), v)
    for e in (e1, e2):
        assert np.median(e) < 1e-4 and np.percentile(e, 99) < 1e-3
    # the stored arrays are the maps applied to the vertices
    np.testing.assert_allclose(w.apply(v), w.forward, atol=1e-9)
    assert w.max_displacement_deg > 0


def test_zero_amplitude_is_identity(ico5):
    v, _ = ico5
    w = random_warp(v, 0, _cfg(0.0, rotation_max_deg=0.0))
    np.testing.assert_array_equal(w.forward, v)
    np.testing.assert_array_equal(w.inverse, v)
    assert w.max_displacement_deg == 0.0
    # rotation only: a rigid move of at most rotation_max_deg
    r = random_warp(v, 0, _cfg(0.0, rotation_max_deg=4.0))
    disp = r.displacement_deg
    assert 0 < disp.max() <= 4.0 + 1e-9
    np.testing.assert_allclose(r.forward, v @ r.rotation.T, atol=1e-9)


def test_determinism(ico5):
    v, _ = ico5
    a = random_warp(v, 11, TRAIN_CONFIG)
    b = random_warp(v, np.random.default_rng(11), TRAIN_CONFIG)
    c = random_warp(v, 12, TRAIN_CONFIG)
    np.testing.assert_array_equal(a.forward, b.forward)
    np.testing.assert_array_equal(a.inverse, b.inverse)
    assert np.abs(a.forward - c.forward).max() > 1.0  # mm


def test_areal_distortion_of_typical_warps():
    v, f = icosphere(4)
    means = []
    for seed in range(6):
        w = random_warp(v, seed, _cfg(10.0))
        means.append(distortion_summary(distortion((v, f), (w.forward, f)))["areal_mean_abs"])
    # typical 10 deg training warps: mean |log2 areal| ~0.1-0.2 (GeoMorph on HCP: 0.19)
    assert 0.05 < np.mean(means) < 0.3


def test_intensity_fields_have_the_requested_sd(ico5):
    v, _ = ico5
    n = len(v)
    m, s = np.array([2.0]), np.array([0.5])
    const = np.full((n, 1), 2.0)  # z = 0 everywhere: isolates each term
    base = dict(gain_sd=0.0, bias_sd=0.0, contrast_sd=0.0, noise_sd=0.0, mean=m, sd=s)
    rng = np.random.default_rng(0)
    out = augment_intensity(const, v, rng, **{**base, "gain_sd": 0.2})
    assert np.std(np.log(out[:, 0] / 2.0)) == pytest.approx(0.2, rel=1e-9)
    out = augment_intensity(const, v, rng, **{**base, "bias_sd": 0.3})
    assert np.std((out[:, 0] - 2.0) / 0.5) == pytest.approx(0.3, rel=1e-9)
    out = augment_intensity(const, v, rng, **{**base, "noise_sd": 0.1})
    assert np.std((out[:, 0] - 2.0) / 0.5) == pytest.approx(0.1, rel=0.03)
    out = augment_intensity(const, v, rng, **base)
    np.testing.assert_array_equal(out, const)
    # local contrast: identity at z = 0, monotone in the feature at every vertex
    z = np.linspace(-3, 3, 7)
    grid = m + s * np.tile(z, (n, 1)).reshape(-1, 1)
    pts = np.repeat(v, 7, axis=0)
    out = augment_intensity(grid, pts, np.random.default_rng(1), **{**base, "contrast_sd": 0.3}).reshape(n, 7)
    np.testing.assert_allclose(out[:, 3], 2.0, atol=1e-12)
    assert (np.diff(out, axis=1) > 0).all()
    assert np.abs(out - grid.reshape(n, 7)).max() > 0.05
    f = random_scalar_field(v, np.random.default_rng(2))
    assert abs(f.mean()) < 1e-12 and f.std() == pytest.approx(1.0)


def test_fslr_pair_recovered_by_ground_truth():
    tpl = load_template("fsLR", "L")
    sulc = tpl.features["sulc"]
    s = synth_subject(tpl.vertices, tpl.faces, sulc, 3, _cfg(10.0, **QUIET))
    before = np.corrcoef(s.features[:, 0], sulc)[0, 1]
    back = resample(s.features[:, 0], (s.registered, s.faces), (tpl.vertices, tpl.faces))
    after = np.corrcoef(back, sulc)[0, 1]
    assert before < 0.95  # measured 0.90
    assert after > 0.99  # measured 0.99995
    assert len(distortion((tpl.vertices, tpl.faces), (s.registered, s.faces))["folded"]) == 0
    np.testing.assert_array_equal(s.registered, s.warp.forward)


def test_inverse_form_and_other_subject_mesh():
    tv, tf = icosphere(5)
    feat = random_scalar_field(tv, np.random.default_rng(0))
    s = synth_subject(tv, tf, feat, 4, _cfg(8.0, **QUIET), moving="inverse")
    assert angular_error_deg(s.registered, tv).max() < 1e-3
    np.testing.assert_allclose(s.features[:, 0], feat, atol=1e-4)
    # a subject on another mesh (ico-4) against an ico-5 template
    sv, sf = icosphere(3)
    s = synth_subject(tv, tf, feat, 4, _cfg(8.0, **QUIET), subject_vertices=sv, subject_faces=sf)
    assert s.features.shape == (len(sv), 1) and s.registered.shape == sv.shape
    np.testing.assert_allclose(s.registered, s.warp.apply(sv), atol=1e-9)
    np.testing.assert_allclose(s.clean_features[:, 0], resample(feat, (tv, tf), (s.registered, sf)), atol=1e-9)


def test_dataset_streams_and_heldout_configs():
    tv, tf = icosphere(3)
    feat = random_scalar_field(tv, np.random.default_rng(0))[:, None]
    tpl = (tv, tf, feat)
    a = list(make_dataset(3, tpl, seed=5))
    b = list(make_dataset(2, tpl, seed=5))
    np.testing.assert_array_equal(a[1].features, b[1].features)  # subject i independent of n
    assert np.abs(a[0].registered - a[1].registered).max() > 1.0
    bench = next(make_dataset(1, tpl, seed=5, stream="benchmark"))
    assert np.abs(bench.registered - a[0].registered).max() > 1.0
    with pytest.raises(ValueError):
        next(make_dataset(1, tpl, seed=5, stream="test"))
    for name, cfg in BENCHMARK_CONFIGS.items():
        assert cfg != TRAIN_CONFIG, name
    assert BENCHMARK_CONFIGS["bumps"].field != TRAIN_CONFIG.field
    with pytest.raises(ValueError):
        SynthConfig(max_displacement_deg=(5.0, 1.0))


@pytest.mark.slow
@pytest.mark.parametrize("source", sorted(BENCHMARK_SOURCES))
def test_benchmark_sources(source):
    subj, fixed = next(make_benchmark(1, source, "bumps", seed=0, level=5))
    tpl = load_template(fixed, "L", ("sulc",))
    v5, f5 = icosphere(5)
    fixed_sulc = tpl.features["sulc"][: len(v5)]
    back = resample(subj.clean_features[:, 0], (subj.registered, subj.faces), (v5, f5))
    keep = fixed_sulc != 0
    r = np.corrcoef(back[keep], fixed_sulc[keep])[0, 1]
    assert r > 0.85  # held-out maps correlate with the template once the truth is applied
    assert len(distortion((v5, f5), (subj.registered, f5))["folded"]) == 0

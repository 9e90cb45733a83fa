"""Per-channel clip-at-3-SD + z-score normalisation, zeros kept (medial wall)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geomorph_bids.model.normalise import NormalisationSpec, normalise_features


def _channel(rng: np.random.Generator, n: int = 400, n_zero: int = 60, loc: float = 5.0,
             scale: float = 2.0) -> np.ndarray:
    x = rng.normal(loc, scale, n)
    x[rng.choice(n, n_zero, replace=False)] = 0.0
    return x


def _expected(x: np.ndarray, c: float = 3.0) -> np.ndarray:
    """Reference for one channel, written the slow obvious way."""
    v = x[x != 0]
    m, s = v.mean(), v.std()
    vc = np.clip(v, m - c * s, m + c * s)
    out = np.zeros_like(x)
    out[x != 0] = (vc - vc.mean()) / vc.std()
    return out


def test_outlier_clipped_to_exactly_mean_plus_3sd_before_zscore():
    rng = np.random.default_rng(0)
    x = _channel(rng)
    nz = np.flatnonzero(x)
    x[nz[0]], x[nz[1]] = 1000.0, -1000.0  # two gross outliers
    v = x[x != 0]
    mean, sd = v.mean(), v.std()  # statistics of the UNCLIPPED values
    out, st = normalise_features(x[:, None])
    assert st.n_valid.tolist() == [340] and st.n_clipped.tolist() == [2]
    assert st.mean[0] == pytest.approx(mean, rel=1e-12) and st.sd[0] == pytest.approx(sd, rel=1e-12)
    assert st.lo[0] == pytest.approx(mean - 3 * sd, rel=1e-12)
    assert st.hi[0] == pytest.approx(mean + 3 * sd, rel=1e-12)
    # the outliers became exactly the clip limits, then were z-scored with the clipped stats
    vc = np.clip(v, mean - 3 * sd, mean + 3 * sd)
    assert st.clipped_mean[0] == pytest.approx(vc.mean(), rel=1e-12)
    assert st.clipped_sd[0] == pytest.approx(vc.std(), rel=1e-12)
    assert out[nz[0], 0] == pytest.approx((mean + 3 * sd - vc.mean()) / vc.std(), abs=1e-12)
    assert out[nz[1], 0] == pytest.approx((mean - 3 * sd - vc.mean()) / vc.std(), abs=1e-12)
    assert out[nz[0], 0] == out[:, 0].max() and out[nz[1], 0] == out[:, 0].min()
    np.testing.assert_allclose(out[:, 0], _expected(x), atol=1e-12)
    # the outliers dominate the unclipped SD (76.7); clipped at +/- 230 they still weigh (17.8)
    assert 70 < sd < 80 and 15 < st.clipped_sd[0] < 20


def test_output_mean0_sd1_over_nonzero_and_zeros_preserved():
    rng = np.random.default_rng(1)
    x = np.stack([_channel(rng, loc=5.0, scale=2.0), _channel(rng, loc=-300.0, scale=40.0),
                  _channel(rng, loc=0.0, scale=1e-3)], axis=1).astype(np.float32)
    x[7] = 0.0  # a medial-wall vertex in all channels
    out, st = normalise_features(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    nz = x != 0
    assert np.array_equal(out == 0, ~nz)  # zeros stay exactly zero, nothing else becomes zero
    for k in range(3):
        o = out[nz[:, k], k].astype(np.float64)
        assert abs(o.mean()) < 1e-6 and abs(o.std() - 1.0) < 1e-6


def test_channels_are_independent():
    rng = np.random.default_rng(2)
    a, b = _channel(rng, loc=1.0, scale=1.0), _channel(rng, loc=50.0, scale=9.0)
    b[np.flatnonzero(b)[:3]] = [1e4, -1e4, 5e3]
    both, _ = normalise_features(np.stack([a, b], axis=1))
    only_a, _ = normalise_features(a[:, None])
    only_b, _ = normalise_features(b[:, None])
    # (equal up to summation order: a strided column sums in another order than a contiguous one)
    np.testing.assert_allclose(both[:, 0], only_a[:, 0], atol=1e-12)
    np.testing.assert_allclose(both[:, 1], only_b[:, 0], atol=1e-12)
    # scaling and shifting the other channel changes nothing here
    both2, _ = normalise_features(np.stack([a, np.where(b != 0, 3 * b + 7, 0)], axis=1))
    np.testing.assert_allclose(both2[:, 0], both[:, 0], atol=1e-12)
    np.testing.assert_allclose(both2[:, 1], both[:, 1], atol=1e-12)


def test_batch_is_per_sample_and_mask_excludes():
    rng = np.random.default_rng(3)
    x = np.stack([np.stack([_channel(rng, loc=m), _channel(rng, loc=-m)], axis=1)
                  for m in (1.0, 10.0, 100.0)])  # (3, 400, 2)
    out, st = normalise_features(x)
    assert out.shape == (3, 400, 2) and st.mean.shape == (3, 2)
    for b in range(3):
        for k in range(2):
            np.testing.assert_allclose(out[b, :, k], _expected(x[b, :, k]), atol=1e-12)
    # a (V,) mask applies to every sample; masked-out vertices are excluded and set to 0
    mask = np.ones(400, bool)
    mask[:100] = False
    out_m, st_m = normalise_features(x, mask)
    assert np.all(out_m[:, :100] == 0)
    ref = x.copy()
    ref[:, :100] = 0
    np.testing.assert_allclose(out_m, normalise_features(ref)[0], atol=1e-12)
    assert np.array_equal(st_m.n_valid, (ref != 0).sum(axis=1))
    # non-finite values are treated like the medial wall
    y = x[0].copy()
    y[np.flatnonzero(y[:, 0])[:2], 0] = [np.nan, np.inf]
    out_y, st_y = normalise_features(y)
    assert np.all(np.isfinite(out_y)) and st_y.n_valid[0] == st.n_valid[0, 0] - 2


def test_constant_channel_and_bad_input_raise():
    x = np.zeros((50, 3))
    x[:, 0] = np.linspace(1, 2, 50)
    x[10:, 1] = 2.5  # constant over its non-zero vertices (zeros do not count)
    x[:, 2] = np.linspace(-1, 1, 50)
    with pytest.raises(ValueError, match=r"channel 1 \(of 3\) is constant over its 40 non-zero "
                                         r"vertices \(value 2\.5"):
        normalise_features(x)
    with pytest.raises(ValueError, match="channel 'curv' is constant"):
        normalise_features(x, channel_names=["sulc", "curv", "myelin"])
    with pytest.raises(ValueError, match="channel 1 .* of sample 1"):
        normalise_features(np.stack([x[:, [0, 2]], x[:, [0, 1]]]))
    empty = np.zeros((50, 1))
    empty[3] = 1.0
    with pytest.raises(ValueError, match="1 valid"):
        normalise_features(empty)
    with pytest.raises(ValueError, match=r"\(V, K\) or \(B, V, K\)"):
        normalise_features(np.ones(50))
    with pytest.raises(ValueError, match="mask of shape"):
        normalise_features(x[:, [0]], np.ones(49, bool))
    with pytest.raises(ValueError, match="clip_sd"):
        normalise_features(x[:, [0]], clip_sd=0)


def test_torch_matches_numpy_and_keeps_dtype_device():
    rng = np.random.default_rng(4)
    x = np.stack([_channel(rng), _channel(rng, loc=-2, scale=0.5)], axis=1)
    x[np.flatnonzero(x[:, 0])[0], 0] = 500.0
    ref, st_ref = normalise_features(x)
    for dtype in (torch.float64, torch.float32):
        t = torch.tensor(x, dtype=dtype)
        out, st = normalise_features(t[None].expand(2, -1, -1))
        assert isinstance(out, torch.Tensor) and out.dtype == dtype and out.device == t.device
        assert out.shape == (2, 400, 2)
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        np.testing.assert_allclose(out[1].double().numpy(), ref, atol=tol)
        assert torch.equal(out[0] == 0, t == 0)
        np.testing.assert_allclose(st.hi[0], st_ref.hi, rtol=1e-6)
        assert st.n_clipped.tolist() == [st_ref.n_clipped.tolist()] * 2
    mask = torch.ones(400, dtype=torch.bool)
    mask[:50] = False
    out_m, _ = normalise_features(torch.tensor(x), mask)
    np.testing.assert_allclose(out_m.numpy(), normalise_features(x, mask.numpy())[0], atol=1e-12)
    with pytest.raises(ValueError, match="constant"):
        normalise_features(torch.ones(20, 1))


def test_spec_round_trip_and_apply():
    spec = NormalisationSpec()
    assert spec.to_dict() == {"method": "clip3sd-zscore", "clip_sd": 3.0, "ignore_zeros": True}
    assert NormalisationSpec.from_dict(spec.to_dict()) == spec
    assert NormalisationSpec.from_dict({}) == spec
    rng = np.random.default_rng(5)
    x = _channel(rng, n=2000, n_zero=100)[:, None]
    assert np.array_equal(spec(x)[0], normalise_features(x)[0])
    narrow = NormalisationSpec(clip_sd=2)
    assert narrow.clip_sd == 2.0 and isinstance(narrow.clip_sd, float)
    # Gaussian data: about 4.6% beyond 2 SD, 0.27% beyond 3 SD (of 1900 valid vertices)
    assert 60 < narrow(x)[1].n_clipped[0] < 120 and spec(x)[1].n_clipped[0] < 15
    with pytest.raises(ValueError, match="unknown normalisation method"):
        NormalisationSpec(method="minmax")
    with pytest.raises(ValueError, match="clip_sd"):
        NormalisationSpec(clip_sd=-1.0)
    with pytest.raises(ValueError, match="unknown normalisation spec keys: scale"):
        NormalisationSpec.from_dict({"method": "clip3sd-zscore", "scale": 2})

"""optimise_warp: schedule validation, fixed points, refinement of an initial warp, no folds."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from geomorph_bids.engine.warp_geometry import warp_folded_triangles
from geomorph_bids.io.templates import load_template
from geomorph_bids.model.optimise import (OptimiseConfig, _locate_nested, _smoothing_series, optimise_warp,
                                          smooth_on_ico)
from geomorph_bids.model.warp import ico_sampler
from geomorph_bids.sphere.icosphere import icosphere
from geomorph_bids.sphere.locate import unit
from geomorph_bids.sphere.rotation import angle_between, rotation_matrix

ICO6 = unit(icosphere(6)[0])
FAST = OptimiseConfig(control_levels=(2, 3), data_levels=(4, 5), steps=(40, 40), smoothing=(20, 6))


def _angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip((unit(a) * unit(b)).sum(1), -1, 1)))


@pytest.fixture(scope="module")
def sulc() -> np.ndarray:
    s = load_template("fsLR", "L").features["sulc"]
    return np.where(s == 0, 0.0, (s - s[s != 0].mean()) / s[s != 0].std())


def test_config_validation_and_round_trip():
    with pytest.raises(ValueError, match="data_levels must have 2 entries"):
        OptimiseConfig(control_levels=(2, 3), data_levels=(4,), steps=(1, 1), smoothing=(0, 0))
    with pytest.raises(ValueError, match="control level"):
        OptimiseConfig(control_levels=(5,), data_levels=(4,), steps=(1,), smoothing=(0,))
    with pytest.raises(ValueError, match="unknown OptimiseConfig keys: bogus"):
        OptimiseConfig.from_dict({"bogus": 1})
    assert OptimiseConfig.from_dict(FAST.to_dict()) == FAST
    for bad in (0, -1, 1.5, True, "8"):  # whole multiples of the network's own low-pass only
        with pytest.raises(ValueError, match="start_lowpass must be a whole number >= 1"):
            OptimiseConfig(start_lowpass=bad)
    old = {k: v for k, v in FAST.to_dict().items() if k != "start_lowpass"}  # a metrics file of before
    assert OptimiseConfig.from_dict(old).start_lowpass == 1


def test_identical_images_stay_put(sulc):
    res = optimise_warp(sulc, sulc, FAST)
    assert res.warp.shape == (40962, 3)
    assert np.median(_angles(res.warp, ICO6)) < 0.05
    assert all(h["loss_last"] <= h["loss_first"] + 1e-6 for h in res.history)


def test_zero_steps_return_the_initial_warp(sulc):
    init = ICO6 @ rotation_matrix([0, 0, 1], 3.0).T
    cfg = OptimiseConfig(control_levels=(2,), data_levels=(4,), steps=(0,), smoothing=(0,))
    res = optimise_warp(sulc, sulc, cfg, init=init)
    assert np.max(_angles(res.warp, init)) < 1e-4


def test_recovers_a_rotation_of_the_image(sulc):
    """moving(x) = fixed(R x): the pull-back warp that registers it is x -> R^T x."""
    rot = rotation_matrix([0.3, 0.2, 1.0], 4.0)
    moving = ico_sampler(6)(torch.as_tensor(sulc, dtype=torch.float64)[None, :, None],
                            torch.as_tensor(ICO6 @ rot.T)[None])[0, :, 0].numpy()
    truth = ICO6 @ rot  # warp[x] = R^T x
    start = np.median(_angles(ICO6, truth))
    res = optimise_warp(moving, sulc, FAST, mask=sulc != 0)
    err = _angles(res.warp, truth)
    assert start == pytest.approx(4.0 * 0.75, abs=1.5)  # points away from the axis move most
    assert np.median(err) < 0.25 * start
    assert warp_folded_triangles(res.warp, 6) == 0


def test_fold_barrier_keeps_a_big_step_fold_free(sulc):
    rng = np.random.default_rng(0)
    noisy = sulc + rng.normal(0, 1.0, sulc.shape)
    cfg = OptimiseConfig(control_levels=(3,), data_levels=(5,), steps=(40,), smoothing=(0,),
                         lam=0.0, lr=0.05)
    res = optimise_warp(noisy, sulc, cfg)
    assert warp_folded_triangles(res.warp, 6) == 0


def test_smoothing_keeps_constants_and_reduces_noise():
    x = torch.as_tensor(np.random.default_rng(1).normal(size=(1, 40962, 1)), dtype=torch.float32)
    assert torch.allclose(smooth_on_ico(torch.ones_like(x), 5), torch.ones_like(x))
    assert float(smooth_on_ico(x, 10).std()) < 0.3 * float(x.std())
    assert float(smooth_on_ico(x, 10).mean()) == pytest.approx(float(x.mean()), abs=1e-3)


def test_bad_shapes_are_refused(sulc):
    with pytest.raises(ValueError, match=r"\(40962, K\) on ico-6"):
        optimise_warp(sulc[:100], sulc[:100])
    with pytest.raises(ValueError, match="channel_weights has 2 entries for 1 channels"):
        optimise_warp(sulc, sulc, OptimiseConfig(channel_weights=(0.5, 0.5)))


def test_a_batch_equals_separate_runs(sulc):
    """Two independent pairs optimised together give each pair's own result, bit for bit on the CPU."""
    rots = [rotation_matrix([0.3, 0.2, 1.0], 4.0), rotation_matrix([1.0, -0.5, 0.2], 2.0)]
    sampler = ico_sampler(6)
    moving = np.stack([sampler(torch.as_tensor(sulc, dtype=torch.float64)[None, :, None],
                               torch.as_tensor(ICO6 @ r.T)[None])[0].numpy() for r in rots])  # (2, V, 1)
    together = optimise_warp(moving, sulc[None, :, None], FAST, mask=sulc != 0)
    assert together.warp.shape == (2, 40962, 3)
    # each pair with its own copy of the template, as register_many and batch mode give it: the same bytes
    stacked = optimise_warp(moving, np.stack([sulc[:, None]] * 2), FAST, mask=np.stack([(sulc != 0)[:, None]] * 2))
    for b in range(2):
        alone = optimise_warp(moving[b], sulc, FAST, mask=sulc != 0)
        assert stacked.warp[b].tobytes() == alone.warp.tobytes()
        # one template for the batch: the same bytes too (2.1-2.3e-7 apart on the unit sphere before it was
        # copied per pair: the expanded tensor took other vectorised paths)
        assert together.warp[b].tobytes() == alone.warp.tobytes()


def test_total_bending_smooths_a_rough_start(sulc):
    # a rough start (the identity plus bumpy displacements): a refinement that measures bending
    # on its own offsets keeps the roughness; one that measures it on the whole warp removes it
    from geomorph_bids.model.geoconv import hex_laplacian

    rng = np.random.default_rng(3)
    rough = unit(ICO6 + 0.01 * smooth_on_ico(torch.tensor(rng.standard_normal((40962, 3)))[None], 2, 6)[0].numpy())
    cfg = OptimiseConfig(control_levels=(3, 4), data_levels=(5, 5), steps=(30, 30), smoothing=(6, 2))

    def roughness(w: np.ndarray) -> float:
        d = torch.tensor(w - ICO6)[None]
        return float((hex_laplacian(d, 6) ** 2).sum(-1).mean())

    own = optimise_warp(sulc, sulc, cfg, init=rough).warp
    total = optimise_warp(sulc, sulc, dataclasses.replace(cfg, bend_total=True), init=rough).warp
    assert roughness(total) < 0.5 * roughness(own)


def test_the_areal_term_lowers_areal_distortion(sulc):
    """A weak bending term on a noisy pair lets the warp stretch and shrink; the areal term
    (squared log area ratio of the control triangles) holds the areas back."""
    from geomorph_bids.sphere.distortion import distortion

    rng = np.random.default_rng(1)
    noisy = sulc + rng.normal(0, 1.0, sulc.shape)
    faces = icosphere(6)[1]

    def mean_areal(cfg: OptimiseConfig) -> float:
        warp = optimise_warp(noisy, sulc, cfg).warp
        return float(np.mean(np.abs(distortion((ICO6 * 100, faces), (unit(warp) * 100, faces))["areal"])))

    loose = OptimiseConfig(control_levels=(3,), data_levels=(5,), steps=(40,), smoothing=(0,), lam=0.5, lr=0.02)
    free, held = mean_areal(loose), mean_areal(dataclasses.replace(loose, areal=4.0))
    assert free > 0.02  # the pair does distort without it (a test of nothing would pass too)
    assert held < 0.6 * free
    with pytest.raises(ValueError, match="areal must be >= 0"):
        OptimiseConfig(areal=-1.0)
    assert OptimiseConfig.from_dict({k: v for k, v in OptimiseConfig().to_dict().items() if k != "areal"}).areal == 0.0


def test_a_smoothing_series_stops_where_each_count_would_end():
    """The fixed image smoothed once through the largest count gives every stage's image bit for
    bit (the stages' counts are its stops), on any order and with repeats."""
    x = torch.as_tensor(np.random.default_rng(2).normal(size=(1, 40962, 2)), dtype=torch.float32)
    series = _smoothing_series(x, (10, 3, 10, 0))
    assert sorted(series) == [0, 3, 10]
    for n, smoothed in series.items():
        assert torch.equal(smoothed, smooth_on_ico(x, n))


@pytest.mark.parametrize("level", [4, 5])
def test_nested_location_of_a_dense_warp_equals_a_plain_search(level):
    """A dense warp's points located level by level from their parents' faces (and the coarsest from
    a stale hint) are in the same faces as the k-d tree search finds."""
    from geomorph_bids.model.warp import upsample_displacement

    sampler = ico_sampler(6)
    base = torch.as_tensor(unit(icosphere(level - 2)[0]), dtype=torch.float32)[None]
    gen = torch.Generator().manual_seed(level)
    ctrl = base + 0.03 * torch.randn(base.shape, generator=gen)
    points = upsample_displacement(ctrl, level - 2, level)
    stale = sampler.locate(points + 0.01 * torch.randn(points.shape, generator=gen))
    dense = upsample_displacement(ctrl, level - 2, 6)
    assert torch.equal(_locate_nested(sampler, dense, level, stale), sampler.locate(dense))


def test_sparse_smoothing_equals_the_gather_smoothing():
    """On the CPU without gradients smooth_on_ico is a sparse matrix product per step: the same
    smoothing as the one-ring gather (which a tensor needing gradients still takes) up to
    rounding, for a batch of several channels, in float32 and float64."""
    for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-12)):
        x = torch.as_tensor(np.random.default_rng(4).normal(size=(2, 2562, 3)), dtype=dtype)
        fast = smooth_on_ico(x, 7, level=4)
        slow = smooth_on_ico(x.clone().requires_grad_(True), 7, level=4).detach()
        assert fast.dtype == dtype and fast.shape == x.shape
        assert torch.allclose(fast, slow, atol=tol, rtol=0)
    assert smooth_on_ico(x, 0, level=4) is x


def test_sparse_smoothing_updates_a_copy_with_the_steps_bits():
    """The CPU steps update a copy in place: the input is left alone, and every bit is that of
    ``y + 0.5 * (ring @ y - y)`` step by step (a network's low-pass must not move its warp)."""
    from geomorph_bids.model.optimise import _ring_matrix

    x = torch.as_tensor(np.random.default_rng(5).normal(size=(1, 2562, 3)))
    before = x.clone()
    out = smooth_on_ico(x, 9, level=4)
    assert torch.equal(x, before)
    y = x[0].numpy().copy()
    for _ in range(9):
        y = y + 0.5 * (_ring_matrix(4, torch.float64) @ y - y)
    assert np.array_equal(out[0].numpy(), y)


def test_a_callers_float64_default_dtype_changes_no_bit(sulc):
    """``torch.set_default_dtype(torch.float64)`` (common in a notebook doing numerics) made the
    optimiser's offsets and fold gradient float64: the registration moved by up to 0.3 mm on the
    example and its correlation changed (or, with the offsets alone float32, index_add_ raised a
    Float/Double error). Every tensor it makes has its own dtype now: the same bits."""
    rng = np.random.default_rng(3)
    moving = sulc + rng.normal(0, 0.5, sulc.shape)
    cfg = dataclasses.replace(FAST, fold=1.0, areal=0.5)  # the fold barrier's and areal term's gradients too
    plain = optimise_warp(moving, sulc, cfg, mask=sulc != 0)
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        wide = optimise_warp(moving, sulc, cfg, mask=sulc != 0)
    finally:
        torch.set_default_dtype(before)
    assert wide.warp.dtype == plain.warp.dtype
    np.testing.assert_array_equal(wide.warp, plain.warp)
    assert wide.history == plain.history


def test_calls_in_the_callers_threads_leave_torchs_settings_as_they_were(sulc, monkeypatch):
    """Two ``optimise_warp`` calls at once in a caller's threads (A starts, B starts, A ends, B
    ends) each saved and restored torch's process-wide settings: B saved A's, so the caller was
    left with deterministic algorithms on and one torch thread for good, and A's end switched
    determinism off while B still ran. The first call now saves them and the last restores them."""
    import threading

    import geomorph_bids.model.optimise as optimise_module

    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    during: dict[str, bool] = {}
    real = optimise_module._optimise

    def paced(moving, *args, **kwargs):
        if threading.current_thread().name == "A":
            a_in.set()
            b_in.wait(10)
        else:
            b_in.set()
            a_out.wait(10)
            during["B"] = torch.are_deterministic_algorithms_enabled()
        return real(moving, *args, **kwargs)

    monkeypatch.setattr(optimise_module, "_optimise", paced)
    cfg = OptimiseConfig(control_levels=(2,), data_levels=(4,), steps=(1,), smoothing=(0,))
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(2)
    try:
        def run_a() -> None:
            optimise_warp(sulc, sulc, cfg)
            a_out.set()

        a = threading.Thread(target=run_a, name="A")
        b = threading.Thread(target=lambda: optimise_warp(sulc, sulc, cfg), name="B")
        a.start()
        a_in.wait(10)
        b.start()
        a.join(60)
        b.join(60)
        assert during == {"B": True}  # still deterministic after A ended
        assert torch.get_num_threads() == 2
        assert torch.are_deterministic_algorithms_enabled() is det
    finally:
        torch.set_num_threads(threads)


def test_big_endian_maps_are_read_in_native_order(sulc):
    """``optimise_warp`` given ``>f4`` maps (a file's byte order) raised torch's "given numpy array has
    byte order different from the native byte order"; the same warp as native float32."""
    cfg = OptimiseConfig(control_levels=(2,), data_levels=(4,), steps=(5,), smoothing=(2,))
    moving = np.roll(sulc, 7).astype(np.float32)
    native = optimise_warp(moving, sulc.astype(np.float32), cfg, mask=sulc != 0)
    big = optimise_warp(moving.astype(">f4"), sulc.astype(">f4"), cfg, mask=(sulc != 0).astype(">i4"))
    np.testing.assert_array_equal(big.warp, native.warp)


def test_maps_handed_over_are_decided_once_tensors_detached_masks_and_non_finite_values_said(sulc):
    """Twentieth session: a tensor that requires grad was differentiated through (a warp 2.6e-7 off,
    with torch's "Converting a tensor with requires_grad=True to a scalar" warning); a masked array's
    hidden values were read as data, a masked ``mask``'s too; NaN, Inf, or 1e300 (Inf in float32)
    failed in scipy's k-d tree as ``'x' must be finite``; a 'meta' tensor raised torch's ``Cannot
    copy out of meta tensor; no data!``."""
    cfg = OptimiseConfig(control_levels=(2,), data_levels=(4,), steps=(5,), smoothing=(2,))
    moving = np.roll(sulc, 7)
    plain = optimise_warp(moving, sulc, cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        graded = optimise_warp(torch.from_numpy(moving.copy()).requires_grad_(), sulc, cfg)
    np.testing.assert_array_equal(graded.warp, plain.warp)
    hide = np.arange(len(sulc)) % 9 == 0
    with pytest.raises(ValueError, match=r"^moving is a masked array with 4552 masked value\(s\), which would be read "
                                         r"as data: fill them"):
        optimise_warp(np.ma.masked_array(moving, mask=hide), sulc, cfg)
    np.testing.assert_array_equal(optimise_warp(moving, sulc, cfg, mask=np.ma.masked_array(np.ones(len(sulc), bool),
                                                                                           mask=hide)).warp,
                                  optimise_warp(moving, sulc, cfg, mask=~hide).warp)
    for bad in (np.nan, np.inf, 1e300):
        with pytest.raises(ValueError, match=r"^fixed holds 1 value\(s\) that are not finite in float32 \(NaN, Inf, "
                                             r"or beyond its range\): give normalised maps"):
            optimise_warp(moving, np.where(np.arange(len(sulc)) == 3, bad, sulc), cfg)
    with pytest.raises(ValueError, match=r"^moving is a torch tensor on the 'meta' device"):
        optimise_warp(torch.empty(len(sulc), device="meta"), sulc, cfg)

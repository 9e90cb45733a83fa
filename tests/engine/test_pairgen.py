"""On-the-fly training pairs (engine.pairgen): known warps, consistency, normalisation, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geomorph_bids.engine.pairgen import (GeneratedPairs, PairGenConfig, PairGenerator, SourceBank,
                                          angular_error_deg, real_pairs)
from geomorph_bids.engine.train import TrainConfig, evaluate_warps, train, warp_error_deg
from geomorph_bids.model.geomorph import tiny_config
from geomorph_bids.model.warp import ico_sampler
from geomorph_bids.sphere.icosphere import icosphere

LEVEL = 4
QUIET = dict(sharpen=(0.0, 0.0), detail_sd=(0.0, 0.0), gain_sd=(0.0, 0.0), bias_sd=(0.0, 0.0),
             contrast_sd=(0.0, 0.0), noise_sd=(0.0, 0.0))


def _smooth_map(seed: int, level: int = LEVEL) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x, _ = icosphere(level)
    x = x / 100.0
    w = rng.standard_normal((24, 3)) * rng.uniform(2, 6, (24, 1))
    return (np.cos(x @ w.T + rng.uniform(0, 6.28, 24)) @ rng.standard_normal(24)).astype(np.float32)


@pytest.fixture
def bank() -> SourceBank:
    fixed = _smooth_map(0)
    maps = np.stack([fixed, 0.9 * fixed + 0.3 * _smooth_map(1)])[..., None]
    return SourceBank(torch.from_numpy(maps), ("self", "other"), torch.from_numpy(fixed[:, None]), ("sulc",), "test")


def test_moving_pulled_back_through_its_target_is_the_source(bank):
    torch.manual_seed(0)
    gen = PairGenerator(bank.select(["self"]), PairGenConfig(**QUIET, rotation_max_deg=3.0))
    moving, fixed, target = gen.draw(3)
    assert moving.shape == (3, bank.fixed.shape[0], 1) and target.shape == (3, bank.fixed.shape[0], 3)
    back = ico_sampler(LEVEL)(moving.double(), target.double())
    for b in range(3):
        cc_before = np.corrcoef(moving[b, :, 0], fixed[b, :, 0])[0, 1]
        cc_back = np.corrcoef(back[b, :, 0], fixed[b, :, 0])[0, 1]
        assert cc_back > 0.97 and cc_back > cc_before


def test_displacements_follow_the_config(bank):
    torch.manual_seed(1)
    cfg = PairGenConfig(**QUIET, small_warp_fraction=0.0, max_displacement_deg=(6.0, 6.0), rotation_max_deg=0.0)
    gen = PairGenerator(bank, cfg)
    forward, inverse = gen.warp(4)
    grid = gen.grid[None]
    disp = angular_error_deg(forward, grid).amax(1)
    assert torch.allclose(disp, torch.full_like(disp, 6.0), atol=0.6)
    # forward and inverse are inverses: phi(phi^-1(x)) = x, sampled through the forward field
    through = ico_sampler(LEVEL)(forward.double(), inverse.double())
    assert angular_error_deg(through.float(), grid).median() < 0.1


def test_inputs_are_normalised(bank):
    torch.manual_seed(2)
    moving, fixed, _ = PairGenerator(bank).draw(2)
    valid = moving != 0
    assert abs(float(moving[valid].mean())) < 1e-3 and abs(float(moving[valid].std()) - 1) < 1e-2
    assert abs(float(fixed[0].std()) - 1) < 1e-2


def test_materialised_pairs_and_supervised_training(tmp_path, bank):
    torch.manual_seed(3)
    gen = PairGenerator(bank, PairGenConfig(small_warp_fraction=1.0))
    val = gen.materialise(2, names_prefix="val")
    assert val.target is not None and val.names == ("val-0000", "val-0001")
    cfg = TrainConfig(epochs=2, batch_size=2, supervised=1.0, lam=0.0, lr_schedule="cosine", warmup_steps=1,
                      device="cpu", patience=None, distortion_metrics=False)
    res = train(tiny_config(data_level=LEVEL), GeneratedPairs(gen, 4), val, cfg, tmp_path, log=None)
    rows = res.history
    assert len(rows) == 2 and all(np.isfinite(r["val_err"]) and r["val_err"] > 0 for r in rows)
    out = evaluate_warps(res.model, val)
    assert [r["name"] for r in out] == ["val-0000", "val-0001"]
    assert all(r["rigid_median_deg"] > 0 for r in out)


def test_warp_error_is_the_angle():
    a = torch.tensor([[[1.0, 0.0, 0.0]]])
    b = torch.tensor([[[np.cos(0.1), np.sin(0.1), 0.0]]], dtype=torch.float32)
    assert float(warp_error_deg(a, b)) == pytest.approx(np.degrees(0.1), rel=1e-4)
    assert float(warp_error_deg(a, a)) < 1e-3


def test_bank_files_round_trip(tmp_path, bank):
    z = {"test/fixed/sulc": bank.fixed[:, 0].numpy(), "test/self/sulc": bank.maps[0, :, 0].numpy(),
         "test/other/sulc": bank.maps[1, :, 0].numpy()}
    v, _ = icosphere(LEVEL)
    z["eval/p1/moving/sulc"] = bank.maps[1, :, 0].numpy()
    z["eval/p1/target"] = (v / 100.0).astype(np.float32)
    z["eval/p1/template"] = np.array("test")
    np.savez(tmp_path / "bank.npz", **z)
    loaded = SourceBank.from_npz(str(tmp_path / "bank.npz"), "test", ("sulc",))
    assert loaded.names == ("other", "self")
    assert torch.equal(loaded.select(["self"]).maps[0], bank.maps[0])
    with pytest.raises(ValueError, match="unknown sources"):
        loaded.select(["nope"])
    real = real_pairs(str(tmp_path / "bank.npz"), "test", ("sulc",))
    assert real.names == ("p1",) and real.target.shape == (1, len(v), 3)
    assert real_pairs(str(tmp_path / "bank.npz"), "fsLR", ("sulc",)) is None


def test_config_is_checked():
    with pytest.raises(ValueError):
        PairGenConfig(max_displacement_deg=(5.0, 2.0))
    with pytest.raises(ValueError):
        PairGenConfig(small_warp_fraction=2.0)
    assert PairGenConfig.from_dict(PairGenConfig().to_dict()) == PairGenConfig()


@pytest.mark.cuda
def test_cuda_generation_and_training_step(tmp_path, bank):
    torch.manual_seed(4)
    gen = PairGenerator(bank, device="cuda")
    moving, fixed, target = gen.draw(4)
    assert moving.device.type == "cuda" and torch.isfinite(moving).all() and torch.isfinite(target).all()
    cfg = TrainConfig(epochs=1, batch_size=2, supervised=1.0, device="cuda", bf16=True, patience=None)
    res = train(tiny_config(data_level=LEVEL), GeneratedPairs(gen, 4), gen.materialise(2), cfg, tmp_path, log=None)
    assert np.isfinite(res.history[0]["val_err"])


def _rotation(deg: float) -> np.ndarray:
    t = np.radians(deg)
    return np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])


def test_teacher_warps_start_the_target(bank):
    """A source that matches the template only through its teacher warp psi: the generated
    pair's target phi(psi(x)) pulls the moving image back onto the template; phi(x) alone does not."""
    grid = torch.as_tensor(icosphere(LEVEL)[0] / 100.0)
    q = torch.as_tensor(_rotation(15.0))
    teacher = grid @ q.T                                            # psi(x) = Q x
    # source(y) = fixed(Q^T y), so that source(psi(x)) = fixed(x)
    source = ico_sampler(LEVEL)(bank.fixed[None].double(), (grid @ q)[None])[0].float()
    with_teacher = SourceBank(source[None], ("rotated",), bank.fixed, ("sulc",), "test",
                              teachers=teacher[None].float())
    without = SourceBank(source[None], ("rotated",), bank.fixed, ("sulc",), "test")
    cfg = PairGenConfig(**QUIET, rotation_max_deg=2.0)
    ccs = []
    for b in (with_teacher, without):
        torch.manual_seed(5)
        moving, fixed, target = PairGenerator(b, cfg).draw(2)
        back = ico_sampler(LEVEL)(moving.double(), target.double())
        ccs.append([np.corrcoef(back[i, :, 0], fixed[i, :, 0])[0, 1] for i in range(2)])
    assert min(ccs[0]) > 0.97 and max(ccs[1]) < min(ccs[0]) - 0.05


def test_teachers_follow_select_and_level(bank, tmp_path):
    n = bank.fixed.shape[0]
    teachers = torch.as_tensor(np.stack([icosphere(LEVEL)[0] / 100.0] * 2), dtype=torch.float32)
    b = SourceBank(bank.maps, bank.names, bank.fixed, bank.channels, "test", teachers=teachers)
    assert b.select(["other"]).teachers.shape == (1, n, 3)
    assert b.at_level(LEVEL - 1).teachers.shape == (2, bank.at_level(LEVEL - 1).fixed.shape[0], 3)
    with pytest.raises(ValueError, match="teachers must be"):
        SourceBank(bank.maps, bank.names, bank.fixed, bank.channels, "test", teachers=teachers[:, :5])
    path = tmp_path / "bank.npz"
    np.savez(path, **{"t/fixed/sulc": bank.fixed[:, 0].numpy(), "t/a/sulc": bank.maps[0, :, 0].numpy()})
    assert SourceBank.from_npz(str(path), "t", ("sulc",)).teachers is None
    with pytest.raises(ValueError, match=r"t/a/teacher.*build_training_sources.py --teachers"):
        SourceBank.from_npz(str(path), "t", ("sulc",), teachers=True)

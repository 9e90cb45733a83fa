"""Unsupervised training: loss goes down, logs and checkpoints, exact resume, early stopping."""

from __future__ import annotations

import csv

import pytest
import torch

from geomorph_bids.engine.data import synthetic_pairs
from geomorph_bids.engine.train import (LOG_COLUMNS, TrainConfig, resolve_device, state_path, train)
from geomorph_bids.errors import InputError
from geomorph_bids.model.checkpoint import load_checkpoint, read_metadata
from geomorph_bids.model.geomorph import GeoMorph, GeoMorphConfig, tiny_config
from geomorph_bids.model.losses import total_loss

LEVEL = 3


@pytest.fixture(scope="module")
def data():
    train_set = synthetic_pairs(6, "fsLR", "L", ("sulc",), seed=11, level=LEVEL)
    val_set = synthetic_pairs(2, "fsLR", "L", ("sulc",), seed=11, level=LEVEL, stream="validation")
    return train_set, val_set


def _model_config() -> GeoMorphConfig:
    return tiny_config(in_channels=1, data_level=LEVEL, control_level=2, n_labels=20)


def _cfg(**kw) -> TrainConfig:
    base = dict(epochs=3, batch_size=2, lr=3e-3, seed=4, device="cpu", patience=None, num_threads=None)
    base.update(kw)
    return TrainConfig(**base)


def test_training_lowers_validation_loss_and_writes_log_and_checkpoint(data, tmp_path):
    train_set, val_set = data
    cfg = _cfg()
    meta = {"command": "geomorph-train --test", "name": "test-model"}
    r = train(_model_config(), train_set, val_set, cfg, tmp_path, meta=meta, log=None)
    assert r.epochs_run == 3 and r.stopped == "epochs" and len(r.history) == 3
    # a clear drop of the validation loss, and a better correlation with the template
    assert r.best_val_loss < 0.6 * r.initial_val_loss, (r.initial_val_loss, r.best_val_loss)
    assert r.best_val_cc > r.initial_val_cc + 0.1
    assert r.history[-1]["val_loss"] < r.history[0]["val_loss"]
    with open(r.log_path) as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == LOG_COLUMNS and [int(x["epoch"]) for x in rows] == [1, 2, 3]
    assert [float(x["val_loss"]) for x in rows] == pytest.approx([h["val_loss"] for h in r.history], rel=1e-6)
    assert all(float(x["lr"]) == pytest.approx(3e-3) for x in rows)
    assert all(float(x["val_folded"]) == 0 for x in rows)
    # the best checkpoint is loadable and its metadata round-trips
    sd, m = load_checkpoint(r.best_checkpoint)
    assert m.name == "test-model" and m.template == "fsLR" and m.hemisphere == "L" and m.channels == ("sulc",)
    assert GeoMorphConfig.from_dict(m.config["geomorph"]) == _model_config()
    assert TrainConfig.from_dict(m.config["training"]) == cfg
    assert m.provenance.command == "geomorph-train --test" and m.provenance.seed == 4
    assert "synthetic" in m.provenance.data and m.provenance.wall_time_s > 0
    assert m.provenance.extra["best_epoch"] == r.best_epoch and m.provenance.extra["epochs_run"] == 3
    assert m.provenance.extra["stopped"] == "epochs" and m.provenance.extra["n_val"] == 2
    assert read_metadata(r.best_checkpoint) == m
    model = GeoMorph(GeoMorphConfig.from_dict(m.config["geomorph"]))
    model.load_state_dict(sd)
    model.eval()
    mov, fix = val_set.batch([0, 1])
    with torch.no_grad():
        out = model(mov, fix)
        loss, _ = total_loss(out.warped, fix, out.warp, level=LEVEL, groups=[[0]], lam=cfg.lam)
    assert float(loss) == pytest.approx(r.best_val_loss, rel=1e-5)


def test_resume_repeats_the_uninterrupted_run_exactly(data, tmp_path):
    train_set, val_set = data
    # lr_patience 0: the scheduler cuts the rate after any epoch without improvement (its state matters)
    full = train(_model_config(), train_set, val_set, _cfg(epochs=3, lr_patience=0), tmp_path / "a", log=None)
    part = train(_model_config(), train_set, val_set, _cfg(epochs=1, lr_patience=0), tmp_path / "b", log=None)
    assert part.epochs_run == 1 and state_path(part.last_checkpoint).is_file()
    resumed = train(_model_config(), train_set, val_set, _cfg(epochs=3, lr_patience=0), tmp_path / "b",
                    resume=part.last_checkpoint, log=None)
    assert resumed.epochs_run == 3 and [h["epoch"] for h in resumed.history] == [1, 2, 3]
    keys = ("train_loss", "val_loss", "val_cc", "lr")
    assert [[h[k] for k in keys] for h in resumed.history] == [[h[k] for k in keys] for h in full.history]
    a, _ = load_checkpoint(full.last_checkpoint)
    b, _ = load_checkpoint(resumed.last_checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.best_epoch == full.best_epoch and resumed.best_val_loss == full.best_val_loss
    assert resumed.initial_val_loss == full.initial_val_loss
    with open(resumed.log_path) as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3]


def test_early_stopping_on_a_flat_problem(data, tmp_path):
    train_set, val_set = data
    # lr 0: the validation loss never changes, so with patience 1 the second epoch stops training
    r = train(_model_config(), train_set.subset([0, 1]), val_set, _cfg(epochs=10, lr=0.0, patience=1),
              tmp_path, log=None)
    assert r.stopped == "early_stopping" and r.epochs_run == 2 and r.best_epoch == 1
    assert r.history[0]["val_loss"] == r.history[1]["val_loss"]
    assert read_metadata(r.best_checkpoint).provenance.extra["stopped"] == "early_stopping"


def test_wall_time_budget_and_plain_pair_lists(data, tmp_path):
    train_set, _ = data
    pairs = train_set.subset([0, 1, 2, 3]).pairs()  # (moving, fixed) tuples, as in the contract
    lines: list[str] = []
    r = train(_model_config(), pairs, None, _cfg(epochs=5, max_minutes=1e-6, bf16=True), tmp_path,
              meta={"channels": ["sulc"], "template": "fsLR"}, log=lines.append)
    # over budget after the first batch: the epoch is cut short, validated (training loss) and saved
    assert r.stopped == "time_budget" and r.epochs_run == 1 and r.best_checkpoint.is_file()
    assert r.initial_val_loss is None and r.history[0]["val_loss"] == r.history[0]["train_loss"]
    assert torch.isfinite(torch.tensor(r.history[0]["train_loss"]))
    assert any("wall-time budget" in ln for ln in lines)
    assert read_metadata(r.best_checkpoint).channels == ("sulc",)


def test_resume_needs_the_state_file_and_the_same_model(data, tmp_path, one_line):
    train_set, val_set = data
    r = train(_model_config(), train_set.subset([0, 1]), val_set, _cfg(epochs=1), tmp_path / "a", log=None)
    with pytest.raises(ValueError, match="model config differs"):
        train(tiny_config(data_level=LEVEL, n_labels=30), train_set, val_set, _cfg(), tmp_path / "c",
              resume=r.last_checkpoint, log=None)
    state_path(r.last_checkpoint).unlink()
    with pytest.raises(InputError) as e:
        train(_model_config(), train_set, val_set, _cfg(), tmp_path / "b", resume=r.last_checkpoint, log=None)
    one_line(e, tmp_path / "a")


def test_a_training_step_mixes_no_cpu_tensor_into_another_device():
    """The loss of a training step (supervised, low-passed as register() low-passes it: the
    unit grid, the smoothing, the fold barrier's faces) and its backward on the model's device:
    on 'meta', as on CUDA, a CPU tensor mixed in raises. Before, the network's Gaussian kernels
    raised there first (their autocast switch), so nothing of the step could be checked."""
    from geomorph_bids.engine.train import _loss

    torch.manual_seed(0)
    model = GeoMorph(tiny_config(data_level=4, control_level=2, n_labels=12)).to("meta")
    mov, fix = torch.randn(2, 2562, 1, device="meta"), torch.randn(2, 2562, 1, device="meta")
    target = torch.randn(2, 2562, 3, device="meta")
    for smoothed in (False, True):
        cfg = TrainConfig(supervised=1.0, smoothed=smoothed, fold=10.0)
        loss, warp, warped = _loss(model, mov, fix, cfg, [[0]], [1.0], False, target)
        assert {loss.device.type, warp.device.type, warped.device.type} == {"meta"}
        loss.backward()


def test_device_errors():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError) as e:
        resolve_device("cuda:0")
    assert "CUDA is not available" in str(e.value) and "\n" not in str(e.value)


def test_train_config_round_trip_and_validation():
    cfg = TrainConfig(groups=((0,), (1, 2)), group_weights=(1.0, 0.5), max_minutes=3.0)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError):
        TrainConfig(groups=((0,),), group_weights=(1.0, 2.0))
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.from_dict({"epochz": 3})


def test_fine_tuning_from_weights(data, tmp_path):
    train_set, val_set = data
    first = train(_model_config(), train_set.subset([0, 1]), val_set, _cfg(epochs=1), tmp_path / "a", log=None)
    tuned = train(_model_config(), train_set.subset([2, 3]), val_set, _cfg(epochs=1, lr=0.0), tmp_path / "b",
                  init_weights=first.best_checkpoint, log=None)
    # lr 0: the fine-tuned model is the initial one, so it starts where the first run ended
    assert tuned.initial_val_loss == pytest.approx(first.best_val_loss, rel=1e-6)
    with pytest.raises(ValueError, match="another model config"):
        train(tiny_config(data_level=LEVEL, n_labels=30), train_set, val_set, _cfg(epochs=1), tmp_path / "c",
              init_weights=first.best_checkpoint, log=None)


def test_smoothed_loss_sees_the_warp_register_uses(data):
    """--train-smoothed: the loss, its warp and warped image are those of the low-passed warp
    (the same numbers as warp_geometry.smooth_warp on the data level; register() runs the same
    low-pass on a one-stage network's control grid, lowpass_network_warp), gradients flow."""
    from geomorph_bids.engine.train import _loss
    from geomorph_bids.engine.warp_geometry import network_smoothing, smooth_warp

    torch.manual_seed(0)
    model = GeoMorph(_model_config())
    mov, fix = data[1].batch([0, 1])
    raw_loss, raw_warp, _ = _loss(model, mov, fix, _cfg(), None, None, False)
    loss, warp, warped = _loss(model, mov, fix, _cfg(smoothed=True), None, None, False)
    assert network_smoothing(LEVEL) >= 1
    for b in range(2):
        expected = smooth_warp(raw_warp[b].detach().double().numpy(), LEVEL, network_smoothing(LEVEL))
        assert torch.allclose(warp[b].detach().double(), torch.from_numpy(expected), atol=1e-5)
    assert torch.allclose(warped, model.resample(mov, warp))
    assert float((warp - raw_warp).detach().abs().max()) > 1e-4  # the smoothing changed the warp ...
    assert float(loss) != pytest.approx(float(raw_loss), rel=1e-6)  # ... and the loss
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and float(g.abs().sum()) > 0 for g in grads)
    assert TrainConfig.from_dict(_cfg(smoothed=True).to_dict()).smoothed


def test_fine_tuning_a_network_onto_more_channels_starts_from_it(tmp_path):
    """--init with a sulc network for a curv + sulc training: the input layers are widened, so
    the new network (lr 0) gives the trained network's warp; other config changes are refused."""
    one = synthetic_pairs(2, "fsaverage", "L", ("sulc",), seed=3, level=LEVEL)
    two = synthetic_pairs(2, "fsaverage", "L", ("curv", "sulc"), seed=3, level=LEVEL)
    first = train(_model_config(), one, one, _cfg(epochs=1), tmp_path / "a", log=None)
    wide_config = tiny_config(in_channels=2, data_level=LEVEL, control_level=2, n_labels=20)
    tuned = train(wide_config, two, two, _cfg(epochs=1, lr=0.0), tmp_path / "b",
                  init_weights=first.best_checkpoint, log=None)
    mov, fix = two.batch([0, 1])
    with torch.no_grad():
        expected = first.model.eval()(mov[..., 1:2], fix[..., 1:2]).warp
        got = tuned.model.eval()(mov, fix).warp
    assert torch.allclose(got, expected, atol=1e-5)
    assert read_metadata(tuned.best_checkpoint).channels == ("curv", "sulc")
    with pytest.raises(ValueError, match="another model config"):
        train(tiny_config(in_channels=2, data_level=LEVEL, control_level=2, n_labels=30), two, two,
              _cfg(epochs=1), tmp_path / "c", init_weights=first.best_checkpoint, log=None)


def test_the_callers_torch_threads_and_determinism_are_given_back(data, tmp_path):
    """``TrainConfig.num_threads`` is the training's: train() set torch's thread count for good, so a
    Python caller that trained with ``num_threads=1`` ran everything after it on one thread
    (deterministic algorithms were already given back)."""
    train_set, val_set = data
    before = torch.get_num_threads()
    want = 1 if before > 1 else 2
    seen = []
    train(_model_config(), train_set, val_set, _cfg(epochs=1, num_threads=want), tmp_path,
          log=lambda line: seen.append(torch.get_num_threads()))
    assert seen and set(seen) == {want}  # the training ran on the threads asked for
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="no training pairs"):  # refused before anything is changed
        train(_model_config(), [], None, _cfg(num_threads=want), tmp_path / "none")
    assert torch.get_num_threads() == before


def test_the_callers_random_sequence_is_left_alone(data, tmp_path):
    """A notebook that seeds torch, trains, then draws (a split, a dropout, its own experiment):
    train() seeded torch's generator itself (``torch.manual_seed(seed)``, then once per epoch), so
    the caller's draws after it were the training's sequence, whatever the caller had seeded. The
    training still draws from its own seed: the same weights as before."""
    train_set, val_set = data
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    first = train(_model_config(), train_set, val_set, _cfg(epochs=2), tmp_path / "a", log=None)
    assert torch.equal(torch.rand(4), expected)
    torch.manual_seed(999)  # another caller's sequence: the same training
    second = train(_model_config(), train_set, val_set, _cfg(epochs=2), tmp_path / "b", log=None)
    a, b = first.model.state_dict(), second.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

"""Unsupervised training of GeoMorph (plain torch; no Nipype).

Each step registers a batch of moving images to the template and minimises
:func:`geomorph_bids.model.losses.total_loss` (MSE + (1 - CC) per modality group + ``lam`` *
smoothness) with Adam. After every epoch the validation pairs give the validation loss and CC
(mean Pearson correlation of warped and fixed over channels, the fixed image's zeros left out),
plus the warp's mean |log2 areal distortion| and folded triangles; ``ReduceLROnPlateau`` steps on
the validation loss, the best epoch's weights are saved, and training stops early after
``patience`` epochs without improvement, at ``epochs``, or when the ``max_minutes`` wall budget
is spent (checked between batches: the epoch is cut short, validated and saved as usual).

Files written to ``out_dir``
----------------------------
* ``model.pt``: the best model (:func:`geomorph_bids.model.checkpoint.save_checkpoint`: weights +
  metadata: ``config = {"geomorph": GeoMorphConfig.to_dict(), "training": TrainConfig.to_dict(),
  "loss": {...}}``, template, hemisphere, channels, normalisation, provenance).
* ``last.pt`` + ``last.state.pt``: the latest epoch's weights (same format) and training state
  (epoch, Adam and scheduler state, early-stopping counters, history), for ``resume``. The state
  file holds only tensors and plain data (``torch.save``; read with ``weights_only=True``,
  never unpickling code) and records the SHA-256 of the weights it belongs to.
* ``train_log.csv``: one row per epoch (see :data:`LOG_COLUMNS`).

Determinism: the model is initialised after ``torch.manual_seed(seed)``; epoch ``e`` shuffles
with ``numpy.random.default_rng([seed, e])`` and reseeds torch with ``(seed, e)``, so a run
resumed after epoch ``e`` repeats the uninterrupted run exactly on CPU (where
``torch.use_deterministic_algorithms`` is switched on for the duration of training).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..model.checkpoint import (CheckpointMeta, TrainingProvenance, current_git_commit, load_checkpoint,
                                save_checkpoint, weights_sha256)
from ..model.geomorph import GeoMorph, GeoMorphConfig
from ..model.losses import cc_per_channel, total_loss, warp_distortion
from ..model.normalise import NormalisationSpec
from .data import PairSet
from .device import resolve_device

__all__ = ["TrainConfig", "TrainResult", "train", "resolve_device", "LOG_COLUMNS", "BEST_NAME",
           "LAST_NAME", "STATE_SUFFIX", "LOG_NAME", "state_path"]

#: Columns of ``train_log.csv``.
LOG_COLUMNS = ("epoch", "train_loss", "val_loss", "val_cc", "lr", "seconds", "val_areal", "val_folded")
BEST_NAME = "model.pt"
LAST_NAME = "last.pt"
STATE_SUFFIX = ".state.pt"
LOG_NAME = "train_log.csv"
_STATE_FORMAT = "geomorph-bids-train-state"
_STATE_VERSION = 1


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (stored in checkpoints via :meth:`to_dict`).

    Attributes
    ----------
    epochs : maximum number of epochs.
    batch_size : pairs per step.
    lr : Adam learning rate (2e-4 in the paper).
    lam : weight of the smoothness term (0.5).
    fold : weight of the triangle-area barrier on the dense warp (0: off; see
        :mod:`geomorph_bids.model.losses`).
    val_fraction : share of subjects held out for validation (used when splitting data; recorded).
    patience : early stopping after this many epochs without a validation improvement
        (> ``min_delta``); None disables it.
    min_delta : smallest decrease of the validation loss that counts as an improvement.
    lr_patience, lr_factor, min_lr : ReduceLROnPlateau on the validation loss.
    seed : random seed (initialisation, shuffling).
    bf16 : run the networks under bfloat16 autocast (the warp and loss stay float32).
    device : "auto" (CUDA if available, else CPU), "cpu", "cuda" or "cuda:N".
    num_threads : torch CPU threads (``torch.set_num_threads``; process-wide); None keeps the default.
    max_minutes : wall-time budget in minutes; None for no limit.
    groups : modality groups of channel indices for the similarity loss; None = one group per channel.
    group_weights : one weight per group; None = 1 each.
    distortion_metrics : compute the validation areal distortion and folded triangles.
    """

    epochs: int = 50
    batch_size: int = 2
    lr: float = 2e-4
    lam: float = 0.5
    fold: float = 0.0
    val_fraction: float = 0.1
    patience: int | None = 10
    min_delta: float = 0.0
    lr_patience: int = 3
    lr_factor: float = 0.5
    min_lr: float = 1e-6
    seed: int = 0
    bf16: bool = False
    device: str = "auto"
    num_threads: int | None = None
    max_minutes: float | None = None
    groups: tuple[tuple[int, ...], ...] | None = None
    group_weights: tuple[float, ...] | None = None
    distortion_metrics: bool = True

    def __post_init__(self) -> None:
        if self.groups is not None:
            object.__setattr__(self, "groups", tuple(tuple(int(c) for c in g) for g in self.groups))
        if self.group_weights is not None:
            object.__setattr__(self, "group_weights", tuple(float(w) for w in self.group_weights))
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if not all(v >= 0 and math.isfinite(v) for v in (self.lr, self.lam, self.fold)):
            raise ValueError(f"lr, lam and fold must be finite and >= 0, got {self.lr}, {self.lam}, {self.fold}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience}")
        if not 0 < self.lr_factor < 1 or self.lr_patience < 0 or self.min_lr < 0:
            raise ValueError("lr_factor must be in (0, 1), lr_patience and min_lr >= 0")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {self.num_threads}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"max_minutes must be > 0, got {self.max_minutes}")
        if self.groups is not None and self.group_weights is not None \
                and len(self.groups) != len(self.group_weights):
            raise ValueError(f"{len(self.group_weights)} group weights for {len(self.groups)} groups")

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict (inverse: :meth:`from_dict`)."""
        d = dataclasses.asdict(self)
        if self.groups is not None:
            d["groups"] = [list(g) for g in self.groups]
        if self.group_weights is not None:
            d["group_weights"] = list(self.group_weights)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError."""
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown TrainConfig keys: {sorted(unknown)}")
        return cls(**dict(d))


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    ``history``: one dict per epoch with :data:`LOG_COLUMNS`; ``initial_val_loss``/``_cc``: the
    untrained model's validation metrics (None without validation pairs); ``stopped``: why
    training ended (``"epochs"``, ``"early_stopping"``, ``"time_budget"``); ``wall_time_s``: total
    training wall time, resumed runs included; ``model``: the model holding the best weights.
    """

    best_checkpoint: Path
    last_checkpoint: Path
    log_path: Path
    history: list[dict[str, float]]
    best_epoch: int
    best_val_loss: float
    best_val_cc: float
    initial_val_loss: float | None
    initial_val_cc: float | None
    epochs_run: int
    stopped: str
    wall_time_s: float
    device: str
    n_parameters: int
    model: GeoMorph | None = field(default=None, repr=False)


def state_path(checkpoint: str | Path) -> Path:
    """The training-state file next to a ``last.pt``-style checkpoint (``last.state.pt``)."""
    p = Path(checkpoint)
    return p.with_name(p.stem + STATE_SUFFIX)


# ---------------------------------------------------------------------------------------------


def _as_pairset(pairs: PairSet | Iterable[tuple[torch.Tensor, torch.Tensor]] | None,
                meta: Mapping[str, Any]) -> PairSet | None:
    if pairs is None or isinstance(pairs, PairSet):
        return pairs
    pairs = list(pairs)
    if not pairs:
        return None
    return PairSet.from_pairs(pairs, meta.get("channels"), meta.get("template", "custom"),
                              meta.get("hemisphere", "L"), meta.get("data", ""))


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, np.uint64)[0] >> 1)


def _autocast(device: torch.device, enabled: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def _loss(model: GeoMorph, mov: torch.Tensor, fix: torch.Tensor, cfg: TrainConfig, groups, weights,
          bf16: bool) -> tuple[torch.Tensor, Any]:
    with _autocast(mov.device, bf16):
        out = model(mov, fix)
    loss, _ = total_loss(out.warped.float(), fix, out.warp.float(), level=model.data_level,
                         groups=groups, weights=weights, lam=cfg.lam, fold=cfg.fold)
    return loss, out


@torch.no_grad()
def _evaluate(model: GeoMorph, pairs: PairSet, cfg: TrainConfig, device: torch.device, groups, weights,
              ) -> dict[str, float]:
    """Mean loss, CC (over channels, then pairs), |log2 areal| and folded triangles over ``pairs``."""
    was_training = model.training
    model.eval()
    loss_sum = cc_sum = areal_sum = folded_sum = 0.0
    n = len(pairs)
    for start in range(0, n, cfg.batch_size):
        idx = np.arange(start, min(start + cfg.batch_size, n))
        mov, fix = (t.to(device) for t in pairs.batch(idx))
        loss, out = _loss(model, mov, fix, cfg, groups, weights, cfg.bf16)
        loss_sum += float(loss) * len(idx)
        cc_sum += float(cc_per_channel(out.warped.float(), fix).mean(dim=1).sum())
        if cfg.distortion_metrics:
            for s in warp_distortion(out.warp, model.data_level):
                areal_sum += s["areal_mean_abs"]
                folded_sum += s["n_folded"]
    model.train(was_training)
    return {"loss": loss_sum / n, "cc": cc_sum / n,
            "areal": areal_sum / n if cfg.distortion_metrics else float("nan"),
            "folded": folded_sum / n if cfg.distortion_metrics else float("nan")}


def _write_log(path: Path, history: Sequence[Mapping[str, float]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(LOG_COLUMNS)
        for row in history:
            w.writerow([row["epoch"]] + [f"{float(row[c]):.8g}" for c in LOG_COLUMNS[1:]])
    tmp.replace(path)


def _save_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _load_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"training state {path.name} not found next to the checkpoint: resume needs "
                         f"the {LAST_NAME} + {LAST_NAME[:-3]}{STATE_SUFFIX} pair written by geomorph-train",
                         path=path.parent)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - damaged or unsafe file: one line
        raise InputError(f"not a readable training state ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})", path=path) from None
    if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
        raise InputError(f"not a geomorph-bids training state (no {_STATE_FORMAT!r} marker)", path=path)
    if state.get("version") != _STATE_VERSION:
        raise InputError(f"training state version {state.get('version')!r} is not supported", path=path)
    return state


def _progress_line(epoch: int, epochs: int, row: Mapping[str, float], best: bool) -> str:
    return (f"epoch {epoch:>3}/{epochs}  train {row['train_loss']:.4f}  val {row['val_loss']:.4f}  "
            f"cc {row['val_cc']:.4f}  areal {row['val_areal']:.3f}  folded {row['val_folded']:.1f}  "
            f"lr {row['lr']:.2e}  {row['seconds']:.1f}s" + ("  *" if best else ""))


def train(model_config: GeoMorphConfig, train_pairs: PairSet | Iterable[tuple[torch.Tensor, torch.Tensor]],
          val_pairs: PairSet | Iterable[tuple[torch.Tensor, torch.Tensor]] | None, config: TrainConfig,
          out_dir: str | Path, *, resume: str | Path | None = None, init_weights: str | Path | None = None,
          meta: Mapping[str, Any] | None = None, log: Callable[[str], None] | None = print) -> TrainResult:
    """Train GeoMorph unsupervised on (moving, fixed) pairs; see the module docstring.

    Parameters
    ----------
    model_config : the model to build (its ``in_channels`` and ``data_level`` must match the data).
    train_pairs, val_pairs : :class:`~geomorph_bids.engine.data.PairSet` or iterables of
        ``(moving (V, K), fixed (V, K))`` float tensors, already normalised. Without validation
        pairs the training loss drives the scheduler, early stopping and best-model choice.
    config : :class:`TrainConfig`.
    out_dir : folder for ``model.pt``, ``last.pt``, ``last.state.pt``, ``train_log.csv``.
    resume : a ``last.pt`` written by a previous run (with its ``last.state.pt``): continue from
        its epoch with its optimizer, scheduler and early-stopping state (same result as an
        uninterrupted run, given the same data). The learning rate comes from the saved
        optimizer and scheduler. The best model so far (``model.pt`` next to it) is carried over.
    init_weights : a checkpoint whose weights initialise the model (fine-tuning; fresh optimizer).
    meta : checkpoint metadata: ``name``, ``template``, ``hemisphere``, ``channels``, ``command``,
        ``data`` (defaults from the PairSet), ``extra`` (dict merged into the provenance).
    log : receives one progress line per epoch (None: silent). A per-batch counter is written
        to stderr when it is a terminal.

    Returns
    -------
    :class:`TrainResult`.
    """
    start_wall = time.perf_counter()
    meta = dict(meta or {})
    train_set = _as_pairset(train_pairs, meta)
    val_set = _as_pairset(val_pairs, meta)
    if train_set is None or len(train_set) == 0:
        raise ValueError("no training pairs")
    if resume is not None and init_weights is not None:
        raise ValueError("give either resume or init_weights, not both")
    for name, s in (("training", train_set), ("validation", val_set)):
        if s is not None and (s.level != model_config.data_level or s.fixed.shape[1] != model_config.in_channels):
            raise ValueError(f"{name} pairs are ico-{s.level} with {s.fixed.shape[1]} channels; the model "
                             f"expects ico-{model_config.data_level} with {model_config.in_channels}")
    device = resolve_device(config.device)
    if config.num_threads is not None:
        torch.set_num_threads(int(config.num_threads))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    best_path, last_path, log_path = out_dir / BEST_NAME, out_dir / LAST_NAME, out_dir / LOG_NAME
    k = model_config.in_channels
    groups = [list(g) for g in config.groups] if config.groups is not None else [[c] for c in range(k)]
    weights = list(config.group_weights) if config.group_weights is not None else [1.0] * len(groups)

    channels = tuple(meta.get("channels") or train_set.channels)
    ckpt_config = {"geomorph": model_config.to_dict(), "training": config.to_dict(),
                   "loss": {"groups": groups, "weights": weights, "lam": config.lam, "fold": config.fold,
                            "similarity": "mse + (1 - cc) per group", "smoothness": "L1 hex Laplacian"}}
    git_commit = current_git_commit()
    data_desc = str(meta.get("data") or train_set.description)

    prev_det = torch.are_deterministic_algorithms_enabled()
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        torch.manual_seed(int(config.seed))
        model = GeoMorph(model_config)
        if init_weights is not None:
            sd, imeta = load_checkpoint(init_weights)
            if imeta.config.get("geomorph") != model_config.to_dict():
                raise ValueError(f"{init_weights}: the checkpoint was trained with another model config "
                                 "(preset, levels or labels differ): cannot initialise from it")
            model.load_state_dict(sd)
        model.to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=config.lr_factor, patience=config.lr_patience, min_lr=config.min_lr)

        history: list[dict[str, float]] = []
        epoch0, bad_epochs, best_epoch = 0, 0, 0
        best_loss, best_cc = math.inf, float("nan")
        prior_wall = 0.0
        best_state: dict[str, torch.Tensor] | None = None
        if resume is not None:
            resume = Path(resume)
            sd, rmeta = load_checkpoint(resume)
            state = _load_state(state_path(resume))
            if state["weights_sha256"] != weights_sha256(sd):
                raise InputError(f"{state_path(resume).name} does not belong to these weights "
                                 "(sha256 mismatch)", path=resume)
            if state["geomorph"] != model_config.to_dict():
                raise ValueError(f"{resume}: the checkpoint's model config differs from the requested one")
            model.load_state_dict(sd)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            epoch0, bad_epochs, best_epoch = int(state["epoch"]), int(state["bad_epochs"]), int(state["best_epoch"])
            best_loss, best_cc = float(state["best_loss"]), float(state["best_cc"])
            history = [dict(r) for r in state["history"]]
            prior_wall = float(state["wall_time_s"])
            initial = state["initial"]
            src_best = resume.parent / BEST_NAME
            if src_best.is_file():
                best_state, _ = load_checkpoint(src_best)
                if src_best.resolve() != best_path.resolve():
                    shutil.copy2(src_best, best_path)
            if log is not None and state.get("data") != data_desc:
                log(f"warning: resuming on other data than the saved run's ({state.get('data')!r})")
            if log is not None:
                log(f"resumed from {resume} at epoch {epoch0} (best epoch {best_epoch}, "
                    f"val loss {best_loss:.4f})")
        else:
            if val_set is not None:
                init_metrics = _evaluate(model, val_set, config, device, groups, weights)
                initial = {"val_loss": init_metrics["loss"], "val_cc": init_metrics["cc"]}
                if log is not None:
                    log(f"before training: val {initial['val_loss']:.4f}  cc {initial['val_cc']:.4f}")
            else:
                initial = {"val_loss": None, "val_cc": None}

        def provenance(epoch: int, stopped: str | None) -> TrainingProvenance:
            extra = {"epochs_run": epoch, "best_epoch": best_epoch,
                     "best_val_loss": None if math.isinf(best_loss) else best_loss,
                     "best_val_cc": None if math.isnan(best_cc) else best_cc,
                     "initial_val_loss": initial["val_loss"], "initial_val_cc": initial["val_cc"],
                     "n_train": len(train_set), "n_val": 0 if val_set is None else len(val_set),
                     "device": str(device), "torch": torch.__version__, "stopped": stopped,
                     **dict(meta.get("extra") or {})}
            return TrainingProvenance(command=str(meta.get("command", "")), seed=int(config.seed),
                                      data=data_desc, wall_time_s=prior_wall + time.perf_counter() - start_wall,
                                      git_commit=git_commit, extra=extra)

        def checkpoint_meta(epoch: int, stopped: str | None) -> CheckpointMeta:
            return CheckpointMeta(name=str(meta.get("name") or f"{'-'.join(channels)}-{train_set.template}"),
                                  template=str(meta.get("template") or train_set.template),
                                  hemisphere=str(meta.get("hemisphere") or train_set.hemisphere),
                                  channels=channels, config=ckpt_config,
                                  normalisation=meta.get("normalisation") or NormalisationSpec(),
                                  provenance=provenance(epoch, stopped))

        budget_s = None if config.max_minutes is None else 60.0 * config.max_minutes
        tty = sys.stderr.isatty()
        n = len(train_set)
        epoch = epoch0
        stopped = "early_stopping" if _exhausted(bad_epochs, config.patience) else "epochs"
        for epoch in range(epoch0 + 1, (config.epochs if stopped == "epochs" else epoch0) + 1):
            t_epoch = time.perf_counter()
            model.train()
            order = np.random.default_rng(_epoch_seed(config.seed, epoch)).permutation(n)
            torch.manual_seed(_epoch_seed(config.seed, epoch))
            loss_sum, seen = 0.0, 0
            n_batches = math.ceil(n / config.batch_size)
            for b in range(n_batches):
                idx = order[b * config.batch_size:(b + 1) * config.batch_size]
                mov, fix = (t.to(device) for t in train_set.batch(idx))
                loss, _ = _loss(model, mov, fix, config, groups, weights, config.bf16)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += float(loss.detach()) * len(idx)
                seen += len(idx)
                if tty:
                    print(f"\r  epoch {epoch} batch {b + 1}/{n_batches} loss {loss_sum / seen:.4f}",
                          end="", file=sys.stderr, flush=True)
                if budget_s is not None and time.perf_counter() - start_wall > budget_s:
                    stopped = "time_budget"
                    break
            if tty:
                print("\r" + " " * 60 + "\r", end="", file=sys.stderr, flush=True)
            train_loss = loss_sum / seen
            if val_set is not None:
                m = _evaluate(model, val_set, config, device, groups, weights)
            else:
                m = {"loss": train_loss, "cc": float("nan"), "areal": float("nan"), "folded": float("nan")}
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step(m["loss"])
            improved = m["loss"] < best_loss - config.min_delta
            if improved:
                best_loss, best_cc, best_epoch, bad_epochs = m["loss"], m["cc"], epoch, 0
                best_state = {kk: v.detach().to("cpu").clone() for kk, v in model.state_dict().items()}
                save_checkpoint(best_path, best_state, checkpoint_meta(epoch, None))
            else:
                bad_epochs += 1
            row = {"epoch": epoch, "train_loss": train_loss, "val_loss": m["loss"], "val_cc": m["cc"],
                   "lr": lr, "seconds": time.perf_counter() - t_epoch, "val_areal": m["areal"],
                   "val_folded": m["folded"]}
            history.append(row)
            _write_log(log_path, history)
            if _exhausted(bad_epochs, config.patience) and stopped == "epochs":
                stopped = "early_stopping"
            # the latest state, for resume
            last_sd = {kk: v.detach().to("cpu") for kk, v in model.state_dict().items()}
            save_checkpoint(last_path, last_sd, checkpoint_meta(epoch, None))
            _save_state(state_path(last_path), {
                "format": _STATE_FORMAT, "version": _STATE_VERSION, "epoch": epoch,
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "bad_epochs": bad_epochs, "best_epoch": best_epoch, "best_loss": best_loss,
                "best_cc": best_cc, "history": history, "initial": initial,
                "wall_time_s": prior_wall + time.perf_counter() - start_wall,
                "geomorph": model_config.to_dict(), "training": config.to_dict(), "data": data_desc,
                "weights_sha256": weights_sha256(last_sd)})
            if log is not None:
                log(_progress_line(epoch, config.epochs, row, improved))
            if stopped != "epochs":
                break
        epoch = max(epoch, epoch0)
        if log is not None and stopped != "epochs":
            log(f"stopped after epoch {epoch}: "
                + ("no validation improvement for " f"{config.patience} epoch(s)" if stopped == "early_stopping"
                   else f"wall-time budget of {config.max_minutes} min spent"))
        if best_state is None:  # resumed from a run that had finished: keep its weights
            best_state = {kk: v.detach().to("cpu").clone() for kk, v in model.state_dict().items()}
        wall = prior_wall + time.perf_counter() - start_wall
        # final metadata on the best model (total wall time, why training stopped)
        save_checkpoint(best_path, best_state, checkpoint_meta(epoch, stopped))
        model.load_state_dict(best_state)
        return TrainResult(best_checkpoint=best_path, last_checkpoint=last_path, log_path=log_path,
                           history=history, best_epoch=best_epoch, best_val_loss=best_loss, best_val_cc=best_cc,
                           initial_val_loss=initial["val_loss"], initial_val_cc=initial["val_cc"],
                           epochs_run=epoch, stopped=stopped, wall_time_s=wall, device=str(device),
                           n_parameters=model.n_parameters(), model=model)
    finally:
        torch.use_deterministic_algorithms(prev_det)


def _exhausted(bad_epochs: int, patience: int | None) -> bool:
    """True when early stopping should end training (``patience`` epochs without improvement)."""
    return patience is not None and bad_epochs >= patience

"""``geomorph-train``: train or fine-tune a GeoMorph model, unsupervised.

Data: synthetic subjects warped from the bundled template (``--synthetic N``), the user's own
subjects (``--subjects-dir DIR``, FreeSurfer or GIFTI layout; see :mod:`geomorph_bids.engine.data`),
or pairs generated on the fly, with their true warp, from a bank of real maps (``--sources
BANK.npz``, built by ``scripts/build_training_sources.py``; :mod:`geomorph_bids.engine.pairgen`). Writes to ``--out DIR``: ``model.pt`` (the best model, a
self-describing checkpoint), ``last.pt`` + ``last.state.pt`` (for ``--resume``),
``train_log.csv`` and ``model_card.md`` (the exact command line, seed, data, wall time and
final metrics).

Example::

    geomorph-train --out models/sulc-fsLR --template fsLR --hemi L --mirror-right \\
        --features sulc --synthetic 400 --epochs 30 --channels small --seed 1
"""

from __future__ import annotations

if __name__ == "__main__":  # python -m: as the console script, one line on Ctrl-C during the imports below
    from geomorph_bids.cli.launch import run_module

    run_module("geomorph_bids.cli.train", "geomorph-train")

import argparse
import math
import os
import shlex
import sys
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from .exit_codes import EXIT_OK, HANDLED, error_exit, interrupted
from .interrupts import Interrupted, stop_on_signals
from .machine import (current_folder_problem, drop_unusable_thread_settings, matplotlib_config_in_tmp,
                      threads_within_usable_cpus)
from .messages import reader_may_go_away, say
from ..sphere.icosphere import MAX_LEVEL
from .parser import ExtendAction, Parser, _count, _DefaultsOnce, _finite, _positive_int, device
from .container import with_gpu_flag

if TYPE_CHECKING:
    from ..engine.data import PairSet
    from ..engine.pairgen import GeneratedPairs
    from ..engine.train import TrainConfig, TrainResult
    from ..model.geomorph import GeoMorphConfig

__all__ = ["main", "build_parser", "build_model_config", "PRESETS"]

#: Network presets: encoder channels from ico-6 down (trimmed for lower data levels), decoder
#: hidden widths, Gaussian kernels, and the default control level / labels / label level.
PRESETS: dict[str, dict] = {
    "tiny": {"channels": (8, 8, 8, 8, 8), "decoder": (16,), "kernels": 3, "control_level": 2,
             "n_labels": 20, "label_level": None, "crf_iterations": 2},
    "small": {"channels": (16, 16, 32, 32, 64), "decoder": (64, 64, 64), "kernels": 10, "control_level": 3,
              "n_labels": 200, "label_level": 6, "crf_iterations": 5},
    "default": {"channels": (32, 32, 64, 64, 128), "decoder": (128, 128, 128), "kernels": 10,
                "control_level": 4, "n_labels": 600, "label_level": 6, "crf_iterations": 5},
}


def _int_list(low: int, high: int) -> Callable[[str], tuple[int, ...]]:
    """argparse type: comma-separated whole numbers, each from ``low`` to ``high`` (``--labels -1`` was
    'in_channels, n_labels and kernels must be >= 1', naming no option)."""
    def parse(text: str) -> tuple[int, ...]:
        try:
            values = tuple(int(t) for t in text.replace(" ", "").split(",") if t)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
        if not values:
            raise argparse.ArgumentTypeError("expected at least one integer")
        if not all(low <= v <= high for v in values):
            raise argparse.ArgumentTypeError(f"each must be from {low} to {high}, got {text}")
        return values

    return parse


def _whole(low: int, high: int) -> Callable[[str], int]:
    """argparse type: a whole number from ``low`` to ``high`` (``--data-level`` 3..6, an icosphere level
    0..7, ``--passes`` 1..64); argparse's own ``int`` said 'invalid int value', and a value out of range
    was found after the parsing, on exit 1, as 'control_level must be in ...' or 'TrainConfig.passes:
    checkpoint config inference.passes must be ...'."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {text}")
        return value

    return parse


def _real(low: float, high: float = math.inf, *, above: bool = False, below: bool = False) -> Callable[[str], float]:
    """argparse type: a finite number from ``low`` to ``high`` (``above``/``below``: that end left out).
    ``--lr nan`` was 'lr, lam and fold must be finite and >= 0, got nan, 0.5, 0.0' (exit 1, the
    Python names), ``--lr 0`` trained nothing and exited 0, ``--val-fraction 1`` was 'val_fraction must
    be in [0, 1)'; each is now a usage error naming the option."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not (math.isfinite(value) and (low < value if above else low <= value)
                and (value < high if below else value <= high)):
            start = f"above {low:g}" if above else f"at least {low:g}"
            end = "" if high == math.inf else f" and {'below' if below else 'at most'} {high:g}"
            raise argparse.ArgumentTypeError(f"must be a finite number {start}{end}, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of ``geomorph-train``."""
    p = Parser(
        prog="geomorph-train",
        description="Train a GeoMorph registration model without supervision on synthetic subjects "
                    "and/or your own subjects, registered to a bundled template.",
        formatter_class=_DefaultsOnce)
    p.add_argument("--version", action="version", version=f"%(prog)s (geomorph-bids {__version__})")
    p.add_argument("--out", type=Path, required=True, help="output folder (model.pt, train_log.csv, model_card.md)")
    p.add_argument("--overwrite", action="store_true",
                   help="train a new network into an --out folder that already holds one (its model.pt, log "
                        "and card are replaced); without it such a folder is refused (--resume continues it)")
    g = p.add_argument_group("data")
    g.add_argument("--template", default="fsLR",
                   help="template: fsLR (default) or fsaverage; fsaverage's maps at full resolution from "
                        "--template-dir, $TEMPLATEFLOW_HOME, $SUBJECTS_DIR/fsaverage or "
                        "$FREESURFER_HOME/subjects/fsaverage when one has them, else the bundled ones")
    g.add_argument("--template-dir", default=None, metavar="DIR|bundled",
                   help="take the template's maps from this folder first (FreeSurfer subject folder or "
                        "TemplateFlow folder); 'bundled': the bundled maps only")
    g.add_argument("--hemi", choices=("L", "R"), default="L", help="hemisphere of the model (default L)")
    g.add_argument("--mirror-right", action="store_true",
                   help="train a left-hemisphere model on both hemispheres: right ones are mirrored "
                        "(x -> -x) into left ones (needs --hemi L)")
    g.add_argument("--features", nargs="+", action=ExtendAction, default=["sulc"], metavar="NAME",
                   help="input channels, in order (default: sulc); must exist in the template")
    g.add_argument("--synthetic", type=_count, default=0, metavar="N",
                   help="number of synthetic subjects (train + validation)")
    g.add_argument("--subjects-dir", type=Path, default=None,
                   help="folder of subjects: <sub>/surf/lh.sphere + lh.<feature> (FreeSurfer) or "
                        "<sub>/**/*_hemi-L_sphere.surf.gii + *_hemi-L_<feature>.shape.gii")
    g.add_argument("--val-fraction", type=_real(0, 1, below=True), default=0.1, help="share held out for validation")
    g.add_argument("--sources", type=Path, default=None, metavar="BANK.npz",
                   help="generate training pairs on the fly (new ones every batch, with their true warp) "
                        "from this bank of real maps (the source repository's scripts/build_training_sources.py)")
    g.add_argument("--source-names", nargs="+", action=ExtendAction, default=None, metavar="NAME",
                   help="bank sources to train on (default: every source of the template with the "
                        "features, minus --holdout)")
    g.add_argument("--holdout", nargs="+", action=ExtendAction, default=(), metavar="NAME",
                   help="bank sources kept out of training; validation pairs are drawn from them too")
    g.add_argument("--teachers", action="store_true",
                   help="with --sources: the true warp of a generated pair starts from its source's teacher "
                        "warp (the per-pair optimiser's registration of the source to the template, stored "
                        "in the bank by "
                        "the source repository's scripts/build_training_sources.py --teachers) instead of taking "
                        "the source as aligned with the template: distillation from the optimiser")
    g.add_argument("--warp-deg", type=_real(0, 60, above=True), nargs=2, default=None, metavar=("LO", "HI"),
                   help="with --sources: the largest displacement of the larger generated warps, drawn "
                        "from LO..HI degrees (default 4 10; individuals' spheres are 5-10 degrees (median) "
                        "from a template after rigid alignment)")
    g.add_argument("--small-warp-fraction", type=_real(0, 1), default=None, metavar="F",
                   help="with --sources: share of pairs with a small warp (0.3-4 deg; default 0.5)")
    g.add_argument("--pairs-per-epoch", type=_positive_int, default=512,
                   help="with --sources: generated pairs per epoch")
    g.add_argument("--val-pairs", type=_count, default=64,
                   help="with --sources: generated validation pairs (0: none); --val-fraction splits "
                        "--synthetic and --subjects-dir subjects instead")
    g.add_argument("--data-level", type=_whole(3, 6), default=6, help="icosphere level of the data (6 = 40962 vertices)")
    m = p.add_argument_group("model")
    m.add_argument("--channels", choices=tuple(PRESETS), default="default",
                   help="network size preset (default: the paper's)")
    m.add_argument("--control-level", type=_whole(0, MAX_LEVEL), default=None, help="control grid level (one stage)")
    m.add_argument("--cascade", type=_int_list(0, MAX_LEVEL), default=None, metavar="L1,L2",
                   help="coarse-to-fine control levels, one stage each (e.g. 2,4); overrides --control-level")
    m.add_argument("--labels", type=_int_list(1, 10 ** 6), default=None, metavar="L",
                   help="labels per control point (one value or one per stage)")
    m.add_argument("--label-level", type=_whole(0, MAX_LEVEL), default=None, help="label icosphere level")
    m.add_argument("--crf-iterations", type=_count, default=None, help="CRF-RNN mean-field steps (0 disables)")
    m.add_argument("--correlation", action="store_true",
                   help="add a correlation head: a learned cost volume over the labels (faster to train)")
    m.add_argument("--no-label-block", action="store_true",
                   help="drop the final L -> L residual block (60%% of the default network's weights)")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=_positive_int, default=50, help="most epochs (early stopping: --patience)")
    t.add_argument("--batch-size", type=_positive_int, default=2, help="pairs per optimisation step")
    t.add_argument("--lr", type=_real(0, above=True), default=2e-4, help="Adam learning rate")
    t.add_argument("--lam", type=_real(0), default=0.5, help="smoothness weight")
    t.add_argument("--fold", type=_real(0), default=0.0,
                   help="weight of the triangle-area barrier that keeps the warp from folding (0: off)")
    t.add_argument("--supervised", type=_real(0), default=0.0,
                   help="weight of the angular error (deg) to the true warp, for generated pairs (0: off)")
    t.add_argument("--lr-schedule", choices=("plateau", "cosine"), default="plateau",
                   help="plateau (ReduceLROnPlateau) or cosine decay over --max-minutes or --epochs")
    t.add_argument("--warmup", type=_count, default=0, help="linear warm-up steps (cosine schedule)")
    t.add_argument("--train-smoothed", action="store_true",
                   help="compute the loss on the warp low-passed as register() uses it (default: the raw warp)")
    t.add_argument("--passes", type=_whole(1, 64), nargs="+", default=None, metavar="K",
                   help="forward passes register() makes with the network written, one low-pass multiple each "
                        "(e.g. 2 4 8: three passes, each on the moving image as the ones before left it; "
                        "the source repository's docs/models.md); default: those of --init's network or of the "
                        "training --resume continues, else one")
    t.add_argument("--save-bf16", action="store_true",
                   help="store model.pt's weights in bfloat16 (half the size; loaded as float32)")
    t.add_argument("--patience", type=_count, default=10, help="early-stopping patience in epochs (0 disables)")
    t.add_argument("--lr-patience", type=_count, default=3, help="ReduceLROnPlateau patience")
    t.add_argument("--seed", type=_seed, default=0, help="random seed, 0 to 2**32 - 1 (default 0)")
    t.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the networks")
    t.add_argument("--device", type=device, default="auto", help="auto (default), cpu, cuda or cuda:N")
    t.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads")
    t.add_argument("--max-minutes", type=_minutes, default=None, help="wall-time budget; stops cleanly")
    t.add_argument("--resume", type=Path, default=None,
                   help="continue a training: its --out folder, or the last.pt in it (with its last.state.pt); "
                        "give the options it was started with (another --lam, --lr, --seed, ... is refused)")
    t.add_argument("--init", default=None, metavar="NAME|PATH",
                   help="fine-tune: start from a bundled network (e.g. sulc-fsLR) or a checkpoint; its "
                        "architecture is kept unless a model option is given; more --features than it "
                        "reads are added as new input channels that start at zero")
    t.add_argument("--name", default=None, help="model name recorded in the checkpoint")
    t.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


#: the options that shape the network (with --init, the checkpoint's shape is used unless one is given)
ARCHITECTURE_OPTIONS = ("channels", "control_level", "cascade", "labels", "label_level", "crf_iterations",
                        "correlation", "no_label_block", "data_level")


def _architecture_given(parser: argparse.ArgumentParser, args: argparse.Namespace) -> bool:
    """Whether any of :data:`ARCHITECTURE_OPTIONS` differs from its default (given on the command
    line in any spelling argparse accepts)."""
    return any(getattr(args, dest) != parser.get_default(dest) for dest in ARCHITECTURE_OPTIONS)


def init_model_config(checkpoint: Path, in_channels: int) -> GeoMorphConfig:
    """The network of ``checkpoint`` (architecture, levels, labels) for ``in_channels`` inputs:
    what ``--init`` fine-tunes when no architecture option is given (more channels than the
    checkpoint's are bridged by :func:`~geomorph_bids.model.widen.widen_input_channels`)."""
    from ..engine.checkpoints import model_config_dict
    from ..model.checkpoint import read_metadata
    from ..model.geomorph import GeoMorphConfig
    from ..model.widen import with_in_channels

    return GeoMorphConfig.from_dict(with_in_channels(model_config_dict(read_metadata(checkpoint).config), in_channels))


def build_model_config(preset: str, in_channels: int, data_level: int = 6,
                       control_levels: Sequence[int] | None = None, n_labels: Sequence[int] | None = None,
                       label_level: int | None = None, crf_iterations: int | None = None,
                       label_block: bool = True, correlation: bool = False) -> GeoMorphConfig:
    """The :class:`~geomorph_bids.model.geomorph.GeoMorphConfig` for a preset and overrides.

    The encoder keeps the preset's first ``data_level - 1`` levels (down to ico-2).
    """
    from ..model.geomorph import GeoMorphConfig, StageConfig
    from ..model.network import NetworkConfig

    pre = PRESETS[preset]
    if not 3 <= data_level <= 6:
        raise ValueError(f"--data-level must be in 3..6, got {data_level}")
    channels = pre["channels"][: data_level - 1]
    levels = tuple(control_levels) if control_levels else (pre["control_level"],)
    labels = tuple(n_labels) if n_labels else (pre["n_labels"],)
    if len(labels) == 1:
        labels = labels * len(levels)
    if len(labels) != len(levels):
        raise ValueError(f"{len(labels)} label counts for {len(levels)} stages")
    lab_level = label_level if label_level is not None else (pre["label_level"] or data_level)
    lab_level = min(lab_level, max(data_level, max(levels)))
    crf = pre["crf_iterations"] if crf_iterations is None else crf_iterations
    try:
        stages = tuple(
            StageConfig(network=NetworkConfig(in_channels=in_channels, input_level=data_level, channels=channels,
                                              n_separate=min(3, len(channels) - 1), decoder_channels=pre["decoder"],
                                              control_level=c, n_labels=L, kernels=pre["kernels"],
                                              label_block=label_block),
                        label_level=max(lab_level, c), crf_iterations=crf, correlation=correlation)
            for c, L in zip(levels, labels))
        return GeoMorphConfig(stages=stages, data_level=data_level)
    except ValueError as exc:  # the network's own names (control_level, n_labels): say which options set them
        raise ValueError(f"--channels {preset} --data-level {data_level} with control level(s) "
                         f"{','.join(map(str, levels))} (--control-level, --cascade) and {','.join(map(str, labels))} "
                         f"label(s) (--labels): {exc}") from None


def _split_count(n: int, fraction: float) -> tuple[int, int]:
    """(train, validation) counts of ``n`` synthetic subjects."""
    n_val = max(1, int(round(n * fraction))) if fraction > 0 and n >= 2 else 0
    return n - n_val, n_val


def _synthetic(n: int, stream: str, args: argparse.Namespace):
    from ..engine.data import synthetic_pairs

    features = tuple(args.features)
    n_right = n // 2 if args.mirror_right else 0
    sets = []
    if n - n_right > 0:
        sets.append(synthetic_pairs(n - n_right, args.template_ref, args.hemi, features, args.seed,
                                    level=args.data_level, stream=stream))
    if n_right > 0:
        sets.append(synthetic_pairs(n_right, args.template_ref, "L", features, args.seed,
                                    level=args.data_level, stream=stream, mirror=True))
    out = sets[0]
    for s in sets[1:]:
        out = out.concat(s)
    return out


def _combine(a, b):
    if a is None:
        return b
    return a if b is None else a.concat(b)


def _pair_config(args: argparse.Namespace):
    """The generated pairs' :class:`~geomorph_bids.engine.pairgen.PairGenConfig` (``--warp-deg``,
    ``--small-warp-fraction``; the defaults otherwise)."""
    from dataclasses import replace

    from ..engine.pairgen import PairGenConfig

    config = PairGenConfig()
    if args.warp_deg is not None:
        lo, hi = args.warp_deg
        if not (0 < lo <= hi <= 60):
            raise ValueError(f"--warp-deg must be 0 < LO <= HI <= 60 degrees, got {lo:g} {hi:g}")
        config = replace(config, max_displacement_deg=(lo, hi))
    if args.small_warp_fraction is not None:
        if not 0 <= args.small_warp_fraction <= 1:
            raise ValueError(f"--small-warp-fraction must be in 0..1, got {args.small_warp_fraction:g}")
        config = replace(config, small_warp_fraction=args.small_warp_fraction)
    return config


def _generated(args: argparse.Namespace, log):
    """(training GeneratedPairs, validation PairSet) from the --sources bank."""
    from dataclasses import replace

    import numpy as np
    import torch

    from ..engine.pairgen import GeneratedPairs, PairGenerator, SourceBank

    if not args.mirror_right:
        raise ValueError("--sources banks hold left and mirrored right hemispheres: add --mirror-right")
    bank = SourceBank.from_npz(str(args.sources), args.template, tuple(args.features), teachers=args.teachers)
    source = args.template_ref.source("L", args.features)
    if not source.is_bundled:  # the fixed image is the template: take the full-resolution maps found
        tpl = args.template_ref.load("L", args.features)
        fixed = np.stack([tpl.features[c] for c in args.features], axis=1)[: bank.fixed.shape[0]]
        bank = replace(bank, fixed=torch.as_tensor(fixed, dtype=torch.float32))
        log(f"fixed image: {args.template} maps from {source.describe()} instead of the bank's")
    bank = bank.at_level(args.data_level)
    unknown = [n for n in (*args.holdout, *(args.source_names or ())) if n not in bank.names]
    if unknown:
        raise ValueError(f"unknown sources {unknown}; {args.sources} has for {args.template} with "
                         f"{', '.join(args.features)}: {', '.join(bank.names)}")
    names = list(args.source_names or [n for n in bank.names if n not in args.holdout])
    if not names:
        raise ValueError("no training sources left after --holdout")
    device = torch.device(args.device)  # decided by main
    config = _pair_config(args)
    gen = PairGenerator(bank.select(names), config, device=device)
    train_set = GeneratedPairs(gen, args.pairs_per_epoch)
    log(f"training pairs generated on {device} from {len(names)} sources: {', '.join(names)}")
    val_set = None
    if args.val_pairs > 0:
        # fixed validation pairs: half from the held-out sources (if any), seeded apart from training
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(10_000 + args.seed)
            parts = []
            n_hold = args.val_pairs // 2 if args.holdout else 0
            if n_hold:
                parts.append(PairGenerator(bank.select(list(args.holdout)), config, device=device)
                             .materialise(n_hold, names_prefix="holdout"))
            parts.append(gen.materialise(args.val_pairs - n_hold, names_prefix="val"))
        val_set = parts[0] if len(parts) == 1 else parts[0].concat(parts[1])
        log(f"{len(val_set)} validation pairs ({n_hold} from held-out sources "
            f"{', '.join(args.holdout) or '-'})")
    return train_set, val_set


def _prepare_data(args: argparse.Namespace, log):
    from ..engine.data import split_by_subject, subject_pairs

    defaults = build_parser()
    if args.sources is not None:
        if args.synthetic or args.subjects_dir is not None:
            raise ValueError("--sources generates its own pairs: do not combine it with --synthetic or "
                             "--subjects-dir")
        if args.val_fraction != defaults.get_default("val_fraction"):  # it splits subjects: a bank has none
            raise ValueError(f"--val-fraction {args.val_fraction:g} splits --synthetic and --subjects-dir subjects; "
                             "--sources draws its validation pairs apart: give --val-pairs N instead")
        return _generated(args, log)
    if args.teachers:
        raise ValueError("--teachers needs --sources BANK.npz (the teacher warps are stored in the bank)")
    bank_only = [option for option, given in (("--source-names", args.source_names), ("--holdout", args.holdout),
                                              ("--warp-deg", args.warp_deg),
                                              ("--small-warp-fraction", args.small_warp_fraction),
                                              *((option, getattr(args, dest) != defaults.get_default(dest))
                                                for option, dest in (("--pairs-per-epoch", "pairs_per_epoch"),
                                                                     ("--val-pairs", "val_pairs")))) if given]
    if bank_only:  # they shape the pairs generated from a bank: without one they would change nothing
        raise ValueError(f"{' and '.join(bank_only)} shape{'s' if len(bank_only) == 1 else ''} the pairs generated "
                         "from --sources BANK.npz: give --sources, or leave "
                         f"{'it' if len(bank_only) == 1 else 'them'} out")
    train_set = val_set = None
    if args.synthetic:
        n_train, n_val = _split_count(args.synthetic, args.val_fraction)
        if n_train < 1:
            raise ValueError("--synthetic needs at least 1 training subject")
        log(f"synthesising {n_train} training + {n_val} validation subjects (ico-{args.data_level})")
        train_set = _synthetic(n_train, "train", args)
        val_set = _synthetic(n_val, "validation", args) if n_val else None
    if args.subjects_dir is not None:
        log(f"reading and pre-aligning subjects from {args.subjects_dir}")
        with warnings.catch_warnings(record=True) as said:  # one line each (a subject folder that is a dead link)
            subj = subject_pairs(args.subjects_dir, args.template_ref, args.hemi, tuple(args.features),
                                 level=args.data_level, mirror_right=args.mirror_right)
        for w in said:
            say(f"geomorph-train: warning: {' '.join(str(w.message).split())}", file=sys.stderr)
        s_train, s_val = split_by_subject(subj, args.val_fraction, args.seed)
        log(f"{len(s_train)} training + {0 if s_val is None else len(s_val)} validation hemispheres "
            f"from {len(set(subj.groups))} subjects")
        train_set, val_set = _combine(train_set, s_train), _combine(val_set, s_val)
    if train_set is not None and val_set is None:
        say("geomorph-train: warning: no subject is held out for validation (--val-fraction "
            f"{args.val_fraction:g} of {args.synthetic or 'the'} subject(s)): the best epoch is chosen on the "
            "training loss and the model card's validation figures are the training set's", file=sys.stderr)
    return train_set, val_set


def _resolve_template(args: argparse.Namespace, log):
    """``--template`` and ``--template-dir``, decided once: where the template's maps come from
    (:mod:`geomorph_bids.io.template_sources`); fallback warnings on stderr."""
    from ..io.template_ref import resolve_template_ref
    from ..io.template_sources import TemplateSearch

    ref = resolve_template_ref(args.template, (), TemplateSearch.from_environment(args.template_dir))
    if ref.is_custom:
        raise ValueError(f"--template {args.template}: train for a standard template (fsLR or fsaverage)")
    args.template = ref.label
    hemis = ("L",) if args.mirror_right else (args.hemi,)
    for line in ref.warnings(args.features, hemis):
        say(f"geomorph-train: warning: {line}", file=sys.stderr)
    for line in ref.info:
        say(f"geomorph-train: note: {line}", file=sys.stderr)
    log(f"template maps: {ref.describe(args.features, hemis)}")
    return ref


def _low_resolution_notes(args: argparse.Namespace) -> None:
    """One note per hemisphere whose template maps are low-resolution (the bundled fsaverage, or
    coarser maps found here), as geomorph-bids and geomorph-register say it; printed once the
    network is trained (beside the model card that records the maps), so that a refused option or
    checkpoint stays the only line on stderr."""
    for hemi in ("L",) if args.mirror_right else (args.hemi,):
        low = args.template_ref.low_resolution_note(args.features, hemi)
        if low:
            say(f"geomorph-train: note: hemi-{hemi} training pairs were {low.replace('--fs-subjects-dir / ', '')}",
                file=sys.stderr)


def _fmt(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def real_pair_table(rows: Sequence[dict]) -> list[str]:
    """Markdown lines: the network alone vs rigid on real pairs with a reference warp."""
    lines = ["| real pair | rigid median / p95 (deg) | network median / p95 (deg) | CC rigid | CC network |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['rigid_median_deg']:.3f} / {r['rigid_p95_deg']:.2f} | "
                     f"{r['net_median_deg']:.3f} / {r['net_p95_deg']:.2f} | {r['cc_rigid']:.3f} | {r['cc_net']:.3f} |")
    return lines


def _seed(text: str) -> int:
    """A random seed numpy takes: a whole number from 0 to 2**32 - 1 (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text}") from None
    if not 0 <= value < 2 ** 32:
        raise argparse.ArgumentTypeError(f"must be from 0 to 2**32 - 1, got {text}")
    return value


def _minutes(text: str) -> float:
    """A positive, finite number of minutes (argparse type)."""
    value = _finite(0.0, math.inf, " minutes")(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 minutes, got {text}")
    return value


def _given_architecture(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    return [f"--{dest.replace('_', '-')}" for dest in ARCHITECTURE_OPTIONS
            if getattr(args, dest) != parser.get_default(dest)]


def _resume_checkpoint(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Path:
    """``--resume``, checked before any data is read: a folder stands for its ``last.pt``; the
    checkpoint and its training state must exist, and it must have been trained on the same
    ``--features`` for the same ``--template``. Not with ``--init`` (a new training)."""
    from ..engine.train import LAST_NAME, state_path
    from ..model.checkpoint import read_metadata

    if args.init is not None:
        raise ValueError("--resume continues a training and --init starts a new one from a network: give one "
                         "of them")
    path = Path(args.resume)
    if path.is_dir():
        path = path / LAST_NAME
    if not path.is_file():
        raise ValueError(f"--resume {args.resume}: no such checkpoint (the {LAST_NAME} that geomorph-train writes "
                         "in its --out folder)")
    if not state_path(path).is_file():
        raise ValueError(f"--resume {path}: its training state {state_path(path).name} is not next to it; resume "
                         f"from the {LAST_NAME} of a geomorph-train --out folder (model.pt is the best model: "
                         "fine-tune it with --init)")
    meta = read_metadata(path)
    if tuple(meta.channels) != tuple(args.features):
        raise ValueError(f"--resume {path}: it was trained on --features {' '.join(meta.channels)}, not "
                         f"{' '.join(args.features)}: resume with the same --features (to add inputs, start a new "
                         "training with --init)")
    if meta.template != args.template:
        raise ValueError(f"--resume {path}: it was trained for --template {meta.template}, not {args.template}: "
                         "resume with the same --template")
    saved = meta.config.get("training") if isinstance(meta.config, dict) else None
    if isinstance(saved, dict):  # the loss and the schedule are the training's: never changed in silence
        asked = {k: getattr(args, option[2:].replace("-", "_")) for k, option in _RECIPE_OPTIONS.items()}
        differ = [k for k, v in asked.items() if k in saved and saved[k] != v]
        if differ:
            raise ValueError(f"--resume {path}: it was trained with {_recipe(saved, differ)}, not "
                             f"{_recipe(asked, differ)}: resume with the same options (or start a new training "
                             f"from its weights with --init {path.parent / 'model.pt'} and another --out)")
    return path


#: geomorph-train's option for each TrainConfig field a resumed training must keep
_RECIPE_OPTIONS = {"seed": "--seed", "lr": "--lr", "lam": "--lam", "fold": "--fold", "supervised": "--supervised",
                   "batch_size": "--batch-size", "lr_schedule": "--lr-schedule", "warmup_steps": "--warmup",
                   "smoothed": "--train-smoothed"}


def _recipe(values: dict, keys: Sequence[str]) -> str:
    """``--lam 200 --fold 10 no --train-smoothed``: the options of ``keys`` as ``values`` has them."""
    words = []
    for k in keys:
        v = values[k]
        if isinstance(v, bool):
            words.append(_RECIPE_OPTIONS[k] if v else f"no {_RECIPE_OPTIONS[k]}")
        else:
            words.append(f"{_RECIPE_OPTIONS[k]} {v:g}" if isinstance(v, float) else f"{_RECIPE_OPTIONS[k]} {v}")
    return " ".join(words)


def _inherit_passes(args: argparse.Namespace, log: Callable[[str], None]) -> None:
    """``args.passes`` from the checkpoint the training starts from, when ``--passes`` is not
    given: a network fine-tuned with ``--init`` keeps the forward passes its start was measured
    with, a training continued with ``--resume`` those it was started with (the checkpoint's
    ``config["inference"]["passes"]``; one pass, nothing recorded, without it)."""
    start, option = (args.init, "--init") if args.init is not None else (args.resume, "--resume")
    if start is None:
        return
    from ..engine.checkpoints import network_passes
    from ..model.checkpoint import read_metadata

    inherited = network_passes(read_metadata(start).config, start)
    if inherited != (1,):
        args.passes = list(inherited)
        log(f"forward passes {' '.join(map(str, inherited))} from {option} (override with --passes)")


def _passes_line(passes: Sequence[int] | None) -> list[str]:
    """The model card's line on the forward passes ``register()`` makes with the network (none
    when the checkpoint records none: one pass)."""
    if passes is None or tuple(passes) == (1,):
        return []
    return [f"- Inference: **{len(passes)} forward passes** (`config[\"inference\"][\"passes\"] = {list(passes)}`): "
            "each registers the moving map as the passes before left it, its warp low-passed that many times "
            "the single pass's smoothing (the source repository's docs/models.md, \"Three forward passes\")"]


def _real_pairs_note(passes: Sequence[int] | None) -> list[str]:
    """What the card's real-pair table measured when ``register()`` makes several passes with the
    network (:func:`~geomorph_bids.engine.train.evaluate_warps` makes one)."""
    if passes is None or tuple(passes) == (1,):
        return []
    return [f"One forward pass, its warp low-passed once: `register()` makes {len(passes)} with this checkpoint "
            f"(passes {list(passes)}), whose accuracy `benchmarks/network.py` measures.", ""]


def _resumed_preset(checkpoint: Path) -> str | None:
    """The network preset the resumed training recorded (model card, checkpoint provenance)."""
    from ..model.checkpoint import read_metadata

    preset = (read_metadata(checkpoint).provenance.extra or {}).get("preset")
    return str(preset) if preset else None


def model_name(args: argparse.Namespace) -> str:
    """The model's name: ``--name``, else ``<features>-<template>-<output folder's name>`` (e.g.
    ``sulc-fsLR-model``: never a bundled network's name, which the outputs of a registration
    with it would then record); in the checkpoint and the model card's title."""
    return args.name or f"{'-'.join(args.features)}-{args.template}-{Path(args.out).absolute().name}"


def hardware(device: str) -> str:
    """The machine a training ran on, for the model card and the checkpoint's provenance: the GPU's
    name (``cuda``), else the CPU's model, its cores and torch's threads (e.g. ``AMD EPYC 7B13, 2
    cores, 1 torch thread``)."""
    import os

    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    cpu = "CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    threads = torch.get_num_threads()
    return f"{cpu}, {os.cpu_count()} cores, {threads} torch thread{'s' if threads != 1 else ''}"


def write_model_card(path: Path, *, command: str, args: argparse.Namespace, result: TrainResult,
                     model_config: GeoMorphConfig, train_config: TrainConfig, train_set: PairSet | GeneratedPairs,
                     val_set: PairSet | None, real_rows: Sequence[dict] = ()) -> Path:
    """Write ``model_card.md`` (markdown) describing how the model was made and how well it did."""
    best = next((r for r in result.history if r["epoch"] == result.best_epoch), None)
    stages = ", ".join(f"control ico-{s.control_level} / {s.n_labels} labels on ico-{s.label_level} / "
                       f"CRF {s.crf_iterations} steps" for s in model_config.stages)
    hemisphere = train_set.hemisphere
    lines = [
        f"# GeoMorph model `{model_name(args)}`",
        "",
        f"Trained with geomorph-bids {__version__} on "
        f"{datetime.now(timezone.utc).replace(microsecond=0).isoformat()}.",
        "",
        "## Use",
        f"- Template: **{train_set.template}**, hemisphere: **{hemisphere}**"
        + (f"; maps: {args.template_ref.describe(args.features, ('L',) if args.mirror_right else (args.hemi,))}"
           if getattr(args, "template_ref", None) is not None else "")
        + (" (a left-hemisphere model; right hemispheres are mirrored x -> -x into it)"
           if hemisphere == "LR-mirrored" else ""),
        f"- Input channels (in order): {', '.join(train_set.channels)}; each clipped at mean +/- 3 SD "
        "and z-scored per subject (zeros stay zero)",
        f"- Data icosphere: ico-{model_config.data_level}; weights: `model.pt` "
        f"({result.n_parameters:,} parameters)",
        *_passes_line(train_config.passes),
        "",
        "## How it was trained",
        "```",
        command,
        "```",
        f"- Seed: {train_config.seed}",
        f"- Data: {train_set.description}",
        f"- Validation: {val_set.description if val_set is not None else 'none (training loss monitored)'}",
        f"- Pairs: {len(train_set)} training, {0 if val_set is None else len(val_set)} validation",
        f"- Network preset: {args.channels}; stages: {stages}",
        f"- Optimiser: Adam, lr {train_config.lr:g}, batch {train_config.batch_size}, loss MSE + (1 - CC) "
        f"per channel + {train_config.lam:g} x smoothness"
        + (f" + {train_config.fold:g} x fold barrier" if train_config.fold else "")
        + (f"; cosine decay after {train_config.warmup_steps} warm-up steps"
           if train_config.lr_schedule == "cosine" else
           f"; ReduceLROnPlateau (patience {train_config.lr_patience}, factor {train_config.lr_factor:g})")
        + (f"; + {train_config.supervised:g} x angular error to the known warp" if train_config.supervised else "")
        + ("; loss on the low-passed warp register() uses" if train_config.smoothed else "")
        + f"; early stopping patience {train_config.patience}; bf16: {train_config.bf16}",
        f"- Device: {result.device} ({hardware(result.device)}); wall time: {result.wall_time_s:.1f} s ({result.wall_time_s / 60:.1f} min); "
        f"epochs run: {result.epochs_run} (stopped: {result.stopped})",
        "",
        "## Final metrics (validation)",
        "| | loss | CC | mean abs log2 areal | folded triangles |",
        "|---|---|---|---|---|",
        f"| before training | {_fmt(result.initial_val_loss)} | {_fmt(result.initial_val_cc)} | | |",
        f"| best epoch ({result.best_epoch}) | {_fmt(result.best_val_loss)} | {_fmt(result.best_val_cc)} | "
        f"{_fmt(best['val_areal'] if best else None, 3)} | {_fmt(best['val_folded'] if best else None, 1)} |",
        "",
        "Per-epoch numbers: `train_log.csv`.",
        "",
    ]
    if real_rows:
        lines += ["## Real pairs (ico-6, network alone, against the reference registration)", "",
                  *_real_pairs_note(train_config.passes), *real_pair_table(real_rows), ""]
    from ..io.atomic import atomic_write_bytes

    # UTF-8 in any locale; a path of other bytes (a Latin-1 folder: Python holds its byte 0xe9 as
    # '\udce9') as it is on disk. Before, the locale's encoding: after the whole training, the card
    # ended the run on "'utf-8' codec can't encode character '\udce9' ...", exit 1, its .tmp left behind
    return atomic_write_bytes(path, "\n".join(lines).encode("utf-8", "surrogateescape"))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``geomorph-train``; returns the exit code (:mod:`.exit_codes`: 0 on success,
    1 on bad input, 2 usage, 128 + N stopped by signal N: Ctrl-C 130, SIGTERM 143). A training
    outlives the reader of its output (``| tee log`` ended with the session):
    :func:`~.messages.reader_may_go_away`; Ctrl-C, SIGTERM and SIGHUP stop it on one line that
    says what is left to resume (:func:`interrupted_detail`)."""
    with reader_may_go_away(), stop_on_signals():
        drop_unusable_thread_settings("geomorph-train")  # before torch is imported
        threads_within_usable_cpus()
        matplotlib_config_in_tmp()
        return _train(argv)


def _train(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if problem := current_folder_problem():
        return error_exit("geomorph-train", problem)
    command = shlex.join(["geomorph-train", *argv])

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, flush=True)

    try:
        from ..engine.device import resolve_device
        from ..engine.train import TrainConfig, train

        if args.mirror_right and args.hemi != "L":
            raise ValueError("--mirror-right trains a left-hemisphere model: use --hemi L")
        if not args.synthetic and args.subjects_dir is None and args.sources is None:
            raise ValueError("no training data: give --synthetic N, --subjects-dir DIR or --sources BANK.npz")
        if args.synthetic < 0:
            raise ValueError(f"--synthetic must be >= 0, got {args.synthetic}")
        if args.out.exists() and not args.out.is_dir():  # before any data is made: it is a folder of outputs
            raise ValueError(f"--out {args.out} is a file: give a folder (model.pt, train_log.csv and "
                             "model_card.md are written in it)")
        from .preflight import check_file_can_be_written

        check_file_can_be_written(args.out, "--out", folder_of_files=True)  # not after the data was read
        from ..engine.train import BEST_NAME

        # the folder whose training --resume continues (one that is not there: _resume_checkpoint says so)
        resumed_from = None if args.resume is None or not Path(args.resume).exists() else Path(args.resume) \
            if Path(args.resume).is_dir() else Path(args.resume).parent
        if resumed_from is not None and not args.overwrite and (args.out / BEST_NAME).exists() and \
                os.path.realpath(resumed_from) != os.path.realpath(args.out):
            # --resume of another folder's training replaced this one's network, exit 0
            raise ValueError(f"--out {args.out} already holds a trained network ({BEST_NAME}), and --resume "
                             f"{args.resume} continues the training of {resumed_from}: write it to a new --out "
                             f"(or to {resumed_from} itself), or replace {args.out}'s with --overwrite")
        if args.resume is None and not args.overwrite and (args.out / BEST_NAME).exists():
            # a careless rerun would replace a trained network (hours of work) at its first epoch
            raise ValueError(f"--out {args.out} already holds a trained network ({BEST_NAME}): continue it with "
                             f"--resume {args.out}, fine-tune it with --init {args.out / BEST_NAME} and another "
                             "--out, or replace it with --overwrite")
        if args.sources is not None and not Path(args.sources).is_file():
            raise ValueError(f"--sources {args.sources}: no such file (a bank built by "
                             "the source repository's scripts/build_training_sources.py)")
        # decided once, before any expensive work: the pairs, the training and the card take this one
        args.device = str(with_gpu_flag(lambda: resolve_device(args.device, check_driver=True)))
        args.template_ref = _resolve_template(args, log)
        if args.init is not None:
            from ..resources import model_path

            args.init = model_path(args.init)  # a bundled network by name, or a checkpoint
        if args.resume is not None:  # checked before any data is read (that can take minutes)
            args.resume = _resume_checkpoint(args, parser)
        if args.passes is None:  # the passes of the network fine-tuned (--init) or continued (--resume)
            _inherit_passes(args, log)
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lam=args.lam, fold=args.fold,
                             val_fraction=args.val_fraction, patience=args.patience or None,
                             lr_patience=args.lr_patience, seed=args.seed, bf16=args.bf16, device=args.device,
                             num_threads=args.threads, max_minutes=args.max_minutes,
                             supervised=args.supervised, lr_schedule=args.lr_schedule, warmup_steps=args.warmup,
                             smoothed=args.train_smoothed, passes=args.passes)
        if args.resume is not None and not _architecture_given(parser, args):
            model_config = init_model_config(args.resume, len(args.features))  # continue that network
            args.data_level = model_config.data_level
            args.channels = _resumed_preset(args.resume) or args.channels
        elif args.init is not None and not _architecture_given(parser, args):
            model_config = init_model_config(args.init, len(args.features))  # fine-tune that network
            args.data_level, args.channels = model_config.data_level, f"as {args.init}"
        else:
            model_config = build_model_config(args.channels, len(args.features), args.data_level,
                                              args.cascade or ((args.control_level,) if args.control_level else None),
                                              args.labels, args.label_level, args.crf_iterations,
                                              label_block=not args.no_label_block, correlation=args.correlation)
        if args.resume is not None and _architecture_given(parser, args):
            resumed = init_model_config(args.resume, len(args.features))
            if resumed.to_dict() != model_config.to_dict():
                raise ValueError(f"--resume {args.resume}: that network differs from the one "
                                 f"{', '.join(_given_architecture(parser, args))} (with the defaults of the "
                                 "architecture options left out) describe: leave them all out to continue it as it is (or start a new training with --init)")
        if args.threads:
            import torch
            torch.set_num_threads(args.threads)
        train_set, val_set = _prepare_data(args, log)
        meta = {"command": command, "name": model_name(args),
                "extra": {"preset": args.channels, "hardware": hardware(args.device)}}
        result = train(model_config, train_set, val_set, config, args.out, resume=args.resume,
                       init_weights=args.init, meta=meta, log=log)
        _low_resolution_notes(args)
        if args.save_bf16:
            from ..model.checkpoint import convert_checkpoint

            convert_checkpoint(result.best_checkpoint, "bfloat16")
        real_rows: list[dict] = []
        if args.sources is not None:
            from ..engine.pairgen import real_pairs
            from ..engine.train import evaluate_warps

            real = real_pairs(str(args.sources), args.template, tuple(args.features), level=args.data_level)
            if real is not None:
                real_rows = evaluate_warps(result.model, real, result.device, bf16=config.bf16)
                for line in real_pair_table(real_rows):
                    log(line)
        card = write_model_card(args.out / "model_card.md", command=command, args=args, result=result,
                                model_config=model_config, train_config=config, train_set=train_set,
                                val_set=val_set, real_rows=real_rows)
        log(f"best epoch {result.best_epoch}: val loss {_fmt(result.best_val_loss)}, CC "
            f"{_fmt(result.best_val_cc)}; wrote {result.best_checkpoint}, {result.log_path}, {card}")
        return EXIT_OK
    except HANDLED as e:
        return error_exit("geomorph-train", e)
    except Interrupted as exc:
        exc.acknowledge()
        return interrupted("geomorph-train", exc.name, exc.signum, interrupted_detail(args.out))
    except RuntimeError as exc:  # torch's CUDA out of memory (a RuntimeError): a traceback before
        from .machine import gpu_out_of_memory, is_gpu_out_of_memory

        if not is_gpu_out_of_memory(exc):
            raise
        advice = ("other processes hold the GPU's memory, or the network and --batch-size need more than it has: "
                  f"free it, lower --batch-size (now {args.batch_size}), or use --device cpu; "
                  + interrupted_detail(args.out))
        return error_exit("geomorph-train", gpu_out_of_memory(str(exc), advice))


def interrupted_detail(out: Path) -> str:
    """What a training stopped by a signal leaves in ``out`` (the epoch under way is lost; the
    checkpoints are written whole, after each epoch) and how to continue it: one clause."""
    from ..engine.train import BEST_NAME, LAST_NAME, state_path
    from ..model.checkpoint import read_metadata

    last = Path(out) / LAST_NAME
    if not (last.is_file() and state_path(last).is_file()):
        return f"no epoch had finished: nothing to resume in {out}"
    try:
        epoch = read_metadata(last).provenance.extra.get("epochs_run")
    except Exception:  # noqa: BLE001 - a detail of the message only
        epoch = None
    return (f"{last} holds epoch {epoch} (the epoch under way is lost) and {Path(out) / BEST_NAME} the best "
            f"epoch so far (no model_card.md until a training ends): continue with the same command and "
            f"--resume {out}")


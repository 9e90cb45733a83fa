"""Loading a GeoMorph network for registration: a checkpoint file (or a bundled model's name)
or a network built in memory, checked against the features and the template it is asked to
register. The checkpoint format itself is :mod:`geomorph_bids.model.checkpoint`.

A checkpoint's ``config`` must be ``GeoMorphConfig.to_dict()`` (a dict with ``"stages"``), or
hold that dict under the key ``"model"`` or ``"geomorph"``. Its ``channels`` are the moving
feature names in the network's input order (the features given may list them in any order;
a missing name is refused on one line, an extra one left out with a warning by the caller), and its ``template`` must be the template's
name. A checkpoint with hemisphere ``"LR-mirrored"`` registers a right hemisphere by
mirroring it (``x -> -x``) onto the LEFT template.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io.digest import file_stamp

__all__ = ["LoadedModel", "MAX_PASSES", "load_model", "model_config_dict", "network_passes"]


def model_config_dict(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The GeoMorphConfig dict a checkpoint's config records (flat, or under 'model'/'geomorph')."""
    if "stages" in config:
        return config
    for key in ("model", "geomorph"):
        if isinstance(config.get(key), Mapping) and "stages" in config[key]:
            return config[key]
    raise ValueError("checkpoint config holds no GeoMorphConfig (expected GeoMorphConfig.to_dict(), "
                     f"or it under 'model'/'geomorph'); config keys: {sorted(config)}")


#: the most forward passes a checkpoint may ask for (each costs one forward pass)
MAX_PASSES = 5


def network_passes(config: Mapping[str, Any], source: str | Path | None = None) -> tuple[int, ...]:
    """The forward passes a checkpoint's ``config["inference"]["passes"]`` asks for: one whole
    number >= 1 per pass, the low-pass of that pass's warp in multiples of
    :func:`~geomorph_bids.engine.warp_geometry.network_smoothing` (e.g. ``[2, 4, 8]``: three
    passes, each registering the moving image as the passes before it left it, each warp smoothed
    more than the last). ``(1,)``, one pass smoothed once, without the entry. ``source``: the
    checkpoint, named in the error. A key of the entry other than ``passes`` is refused: a misspelt
    one, or one a newer version reads, would otherwise register differently from what the checkpoint
    asks, silently."""
    inference = config.get("inference", {})
    if not isinstance(inference, Mapping):
        raise InputError(f"checkpoint config inference must be a mapping (e.g. {{\"passes\": [2, 4, 8]}}), "
                         f"got {_short(repr(inference))}", path=source)
    unknown = sorted(str(k) for k in inference if k != "passes")
    if unknown:
        raise InputError(f"checkpoint config inference has key(s) this version does not read: "
                         f"{_short(', '.join(map(repr, unknown)))} (it reads 'passes')", path=source)
    passes = inference.get("passes", [1])
    if (not isinstance(passes, (list, tuple)) or not 1 <= len(passes) <= MAX_PASSES
            or not all(isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= 64 for k in passes)):
        raise InputError(f"checkpoint config inference.passes must be a list of 1 to {MAX_PASSES} whole numbers "
                         f"from 1 to 64 (one low-pass multiple per forward pass), got {_short(repr(passes), passes)}",
                         path=source)
    return tuple(passes)


def _short(text: str, value: Any = None, limit: int = 80) -> str:
    """``text`` (a value's repr, or names) for a one-line error, cut at ``limit`` characters; the
    length of ``value`` said when it is a list."""
    if len(text) <= limit:
        return text
    size = f", {len(value)} entries" if isinstance(value, (list, tuple)) else ""
    return f"{text[:limit]}... ({len(text)} characters{size})"


@dataclass
class LoadedModel:
    """A network ready to register: the module (eval mode, on its device), its input channels in
    order, their normalisation, what the metrics record about it, whether it registers a right
    hemisphere mirrored onto the left template, and its forward passes (:func:`network_passes`)."""

    net: Any                       # GeoMorph
    channels: tuple[str, ...]
    spec: Any                      # NormalisationSpec
    info: dict[str, Any]
    mirrored_hemis: bool           # checkpoint hemisphere "LR-mirrored"
    passes: tuple[int, ...] = (1,)


@lru_cache(maxsize=4)
def _network_from_file(path: str, stamp: tuple[int, ...] | None, device: str | None) -> tuple[Any, Any]:
    """The checkpoint at ``path`` read and built on ``device`` (eval mode): (GeoMorph, its
    CheckpointMeta). Kept for the next registration in this process (``register()`` per
    hemisphere, a Nipype worker, a benchmark) while the file's ``stamp``
    (:func:`~geomorph_bids.io.digest.file_stamp`: device, inode, size, mtime and ctime, which tell
    a file replaced by another of the same size and mtime) is unchanged, so the file is read, the
    network built and its convolutions' tables made once (~0.04 s and ~0.03 s of CPU per
    registration at 164k otherwise). Read-only use only: the registrations run it in inference
    mode and never change it."""
    import torch

    from ..model.checkpoint import load_checkpoint
    from ..model.geomorph import GeoMorph, GeoMorphConfig

    state, meta = load_checkpoint(path, map_location="cpu")
    config = GeoMorphConfig.from_dict(model_config_dict(meta.config))
    if config.in_channels != len(meta.channels):
        raise InputError(f"checkpoint lists {len(meta.channels)} channels but its network takes "
                         f"{config.in_channels}", path=path)
    # its random initial weights are replaced by the checkpoint's: drawn from a copy of torch's
    # generator, so that the caller's seeded draws after a first registration are the ones they
    # would be without it (the first load advanced the caller's torch.manual_seed sequence)
    with torch.random.fork_rng(devices=[]):
        net = GeoMorph(config)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise InputError(f"weights do not fit the network of its config: "
                         f"{' '.join(str(e).split())[:300]}", path=path) from None
    return (net if device is None else net.to(torch.device(device))).eval(), meta


def load_model(model: Any, feature_names: Sequence[str], template_name: str, hemi: str,
                device: Any) -> LoadedModel:
    """Load and check a checkpoint path or wrap a built GeoMorph."""
    import torch

    from ..model.checkpoint import check_compatible
    from ..model.geomorph import GeoMorphConfig
    from ..model.normalise import NormalisationSpec

    if isinstance(model, (str, Path)):
        from ..resources import bundled_models, model_path

        path = model_path(model)
        if not path.exists() and not path.is_symlink():  # a typed name, not a file: say what names exist
            raise InputError(f"model {str(model)!r} is neither a bundled network ("
                             f"{', '.join(bundled_models()) or 'none installed'}) nor a checkpoint file; "
                             "model=None runs the default registration, rigid_only=True the rigid stage alone")
        model = path
        try:
            stamp: tuple[int, ...] | None = file_stamp(path)  # through a link: its target's
        except OSError:  # a broken link: the checkpoint reader says what is wrong (never kept)
            stamp = None
        net, meta = _network_from_file(str(path), stamp, None if device is None else str(device))
        want = list(meta.channels)
        # maps the network does not read (curv given beside sulc, as fsaverage's default uses it) are
        # left out with one warning by the caller (register's FeatureWarning), not refused
        ordered = [c for c in want if c in feature_names]
        try:  # an InputError naming the checkpoint: callers add the subject and hemisphere
            check_compatible(meta, ordered if ordered == want else ordered + [c for c in feature_names if c not in want],
                             template_name, hemi=hemi)
        except InputError:
            raise
        except ValueError as e:
            raise InputError(str(e), path=path) from None
        info = {"model_name": meta.name, "model_version": meta.package_version,
                "model_weights_sha256": meta.weights_sha256, "model_path": str(model)}
        return LoadedModel(net, tuple(want), meta.normalisation, info,
                           meta.hemisphere == "LR-mirrored", network_passes(meta.config, model))
    if isinstance(model, torch.nn.Module) and isinstance(getattr(model, "config", None), GeoMorphConfig):
        k = model.config.in_channels
        if len(feature_names) != k:
            raise ValueError(f"model takes {k} input channels; moving_features has "
                             f"{len(feature_names)}: [{', '.join(feature_names)}]")
        info = {"model_name": getattr(model, "name", type(model).__name__ + " (in memory)"),
                "model_version": None, "model_weights_sha256": None, "model_path": None}
        return LoadedModel(model.to(device).eval(), tuple(feature_names), NormalisationSpec(), info, False)
    raise ValueError(f"model must be a checkpoint path or a GeoMorph module, got {type(model).__name__}")

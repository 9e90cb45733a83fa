"""Loading a GeoMorph network for registration: a checkpoint file (or a bundled model's name)
or a network built in memory, checked against the features and the template it is asked to
register. The checkpoint format itself is :mod:`geomorph_bids.model.checkpoint`.

A checkpoint's ``config`` must be ``GeoMorphConfig.to_dict()`` (a dict with ``"stages"``), or
hold that dict under the key ``"model"`` or ``"geomorph"``. Its ``channels`` are the moving
feature names in the network's input order (the features given may list them in any order;
missing or extra names are refused, one line), and its ``template`` must be the template's
name. A checkpoint with hemisphere ``"LR-mirrored"`` registers a right hemisphere by
mirroring it (``x -> -x``) onto the LEFT template.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["LoadedModel", "load_model", "model_config_dict"]


def model_config_dict(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The GeoMorphConfig dict a checkpoint's config records (flat, or under 'model'/'geomorph')."""
    if "stages" in config:
        return config
    for key in ("model", "geomorph"):
        if isinstance(config.get(key), Mapping) and "stages" in config[key]:
            return config[key]
    raise ValueError("checkpoint config holds no GeoMorphConfig (expected GeoMorphConfig.to_dict(), "
                     f"or it under 'model'/'geomorph'); config keys: {sorted(config)}")


@dataclass
class LoadedModel:
    net: Any                       # GeoMorph
    channels: tuple[str, ...]
    spec: Any                      # NormalisationSpec
    info: dict[str, Any]
    mirrored_hemis: bool           # checkpoint hemisphere "LR-mirrored"


def load_model(model: Any, feature_names: Sequence[str], template_name: str, hemi: str,
                device: Any) -> LoadedModel:
    """Load and check a checkpoint path or wrap a built GeoMorph."""
    import torch

    from ..model.checkpoint import check_compatible, load_checkpoint
    from ..model.geomorph import GeoMorph, GeoMorphConfig
    from ..model.normalise import NormalisationSpec

    if isinstance(model, (str, Path)):
        from ..resources import bundled_models, model_path

        path = model_path(model)
        if not path.exists() and not path.is_symlink():  # a typed name, not a file: say what names exist
            raise InputError(f"model {str(model)!r} is neither a bundled network ("
                             f"{', '.join(bundled_models()) or 'none installed'}) nor a checkpoint file; "
                             "model=None runs the default registration, rigid_only=True the rigid stage alone")
        model = path
        state, meta = load_checkpoint(model, map_location="cpu")
        want = list(meta.channels)
        # maps the network does not read (curv given beside sulc, as fsaverage's default uses it) are
        # left out with one warning by the caller (register's FeatureWarning), not refused
        ordered = [c for c in want if c in feature_names]
        check_compatible(meta, ordered if ordered == want else ordered + [c for c in feature_names if c not in want],
                         template_name, hemi=hemi)
        config = GeoMorphConfig.from_dict(model_config_dict(meta.config))
        if config.in_channels != len(want):
            raise InputError(f"checkpoint lists {len(want)} channels but its network takes "
                             f"{config.in_channels}", path=model)
        net = GeoMorph(config)
        try:
            net.load_state_dict(state)
        except RuntimeError as e:
            raise InputError(f"weights do not fit the network of its config: "
                             f"{' '.join(str(e).split())[:300]}", path=model) from None
        info = {"model_name": meta.name, "model_version": meta.package_version,
                "model_weights_sha256": meta.weights_sha256, "model_path": str(model)}
        return LoadedModel(net.to(device).eval(), tuple(want), meta.normalisation, info,
                      meta.hemisphere == "LR-mirrored")
    if isinstance(model, torch.nn.Module) and isinstance(getattr(model, "config", None), GeoMorphConfig):
        k = model.config.in_channels
        if len(feature_names) != k:
            raise ValueError(f"model takes {k} input channels; moving_features has "
                             f"{len(feature_names)}: [{', '.join(feature_names)}]")
        info = {"model_name": getattr(model, "name", type(model).__name__ + " (in memory)"),
                "model_version": None, "model_weights_sha256": None, "model_path": None}
        return LoadedModel(model.to(device).eval(), tuple(feature_names), NormalisationSpec(), info, False)
    raise ValueError(f"model must be a checkpoint path or a GeoMorph module, got {type(model).__name__}")

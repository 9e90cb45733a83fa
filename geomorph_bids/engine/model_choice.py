"""Which registration runs, decided once: :class:`ModelChoice`.

A model choice says what follows the rigid pre-alignment:

* ``"rigid"``: nothing (the rigid stage only);
* ``"optimise"``: the GeoMorph warp optimised for each pair from the rigid alignment;
* ``"network"``: a GeoMorph network's warp (a bundled model or a checkpoint), refined for each
  pair unless ``optimise`` is False;

with the features it registers with (``channels``) and the name the outputs record. Entry
points turn the user's model argument into a choice with :func:`resolve_model` and hand it
down unchanged; the checkpoint's metadata is read there, once.

:func:`default_registration` alone decides what the default (``--model default``,
``register(model=None)``) is for a template.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, closest_name

__all__ = ["ModelChoice", "KINDS", "METHODS", "REFINE_CHOICES", "OPTIMISER_CHANNELS", "OPTIMISER_WEIGHTS", "optimiser_weights",
           "default_registration", "resolve_model", "rigid",
           "optimiser", "network", "MIRROR_SYMMETRIC", "refuse_mirrored_right",
           "refuse_other_hemisphere"]

#: templates whose right hemisphere is the mirror image (x -> -x) of their left: a left-hemisphere
#: network registers a mirrored right hemisphere into them (fsLR: its sulc maps so mirrored correlate
#: 0.98; fsaverage's 0.05, a mirrored right hemisphere lands 15-17 deg from fsaverage's right space)
MIRROR_SYMMETRIC = frozenset({"fsLR"})

#: what may follow the rigid pre-alignment
KINDS = ("rigid", "optimise", "network")

#: the ``method`` a registration's metrics record (:func:`~geomorph_bids.engine.register.register`),
#: in words (for reports)
METHODS: dict[str, str] = {"rigid": "rigid pre-alignment only",
                           "optimise": "warp optimised for this hemisphere",
                           "geomorph": "network alone, no per-hemisphere optimisation",
                           "geomorph+optimise": "network, then optimised for this hemisphere from its warp"}

#: ``--refine`` (and ``resolve_model(refine=...)``): what follows a network's warp
REFINE_CHOICES = ("short", "full")

#: registration features of the optimiser (no network), per bundled template: fsaverage's sulc +
#: curv aligns the mirrored fsaverage pair 0.11 deg better than sulc alone (docs/registration.md);
#: any other template: sulc
OPTIMISER_CHANNELS: dict[str, tuple[str, ...]] = {"fsLR": ("sulc",), "fsaverage": ("sulc", "curv")}

#: weights of the features' ``1 - CC`` in the optimiser's loss, per feature set (others: equal).
#: sulc + curv (fsaverage's default): an individual's curvature is far sharper than a group-average
#: template's, and at equal weight it pulled a real brain's sulc alignment down (CC with
#: FreeSurfer's fsaverage 0.848 -> 0.821) for no accuracy on the real pairs (+-0.01 deg). Not for
#: sulc + curv + myelin: there less curv cost 0.2 deg on known warps (docs/registration.md).
OPTIMISER_WEIGHTS: dict[frozenset[str], dict[str, float]] = {frozenset({"sulc", "curv"}): {"sulc": 0.7, "curv": 0.3}}


@dataclass(frozen=True)
class ModelChoice:
    """What a registration runs after the rigid pre-alignment.

    Attributes
    ----------
    kind : ``"rigid"``, ``"optimise"`` or ``"network"`` (:data:`KINDS`).
    name : what the outputs record as the model: ``"default"``, ``"rigid"``, a bundled model's
        name or a checkpoint's absolute path.
    channels : the features the registration uses, in the network's input order.
    checkpoint : the network's checkpoint file (``"network"`` only).
    optimise : ``"network"``: refine the network's warp for each pair (True: the default
        schedule, an :class:`~geomorph_bids.model.optimise.OptimiseConfig`: that schedule,
        False: the network's warp as it is).
    mirrored : a left-hemisphere network that registers right hemispheres mirrored onto the
        LEFT template (checkpoint hemisphere ``"LR-mirrored"``).
    passes : the network's forward passes, one low-pass multiple each, as its checkpoint asks
        (:func:`~geomorph_bids.engine.checkpoints.network_passes`; ``(1,)`` without a network).
    """

    kind: str
    name: str
    channels: tuple[str, ...] = ("sulc",)
    checkpoint: Path | None = None
    optimise: Any = True
    mirrored: bool = False
    passes: tuple[int, ...] = (1,)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"model kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if (self.kind == "network") != (self.checkpoint is not None):
            raise ValueError("a checkpoint goes with a network, and only with a network")

    @property
    def rigid_only(self) -> bool:
        """True when only the rigid pre-alignment runs."""
        return self.kind == "rigid"

    @property
    def method(self) -> str:
        """The ``method`` its registrations record (:func:`~geomorph_bids.engine.register.register`'s
        ``metrics["method"]``): ``rigid``, ``optimise``, ``geomorph`` or ``geomorph+optimise``."""
        if self.kind != "network":
            return self.kind
        return "geomorph" if self.optimise is False else "geomorph+optimise"

    def describe(self) -> str:
        """What the registration does, in a few words (for sidecars), e.g. ``"rigid pre-alignment,
        then the GeoMorph warp optimised for this hemisphere"``."""
        if self.kind == "rigid":
            return "rigid pre-alignment only"
        if self.kind == "optimise":
            return "rigid pre-alignment, then the GeoMorph warp optimised for this hemisphere"
        if self.optimise is False:
            return (f"rigid pre-alignment, then the warp of the GeoMorph network {self.name} as it is (no "
                    "per-hemisphere optimisation)")
        if self.optimise is True:
            return (f"rigid pre-alignment, then the warp of the GeoMorph network {self.name}, refined for this "
                    "hemisphere by a short optimisation")
        return (f"rigid pre-alignment, then the warp of the GeoMorph network {self.name}, from whose large-scale part "
                "the GeoMorph warp was optimised for this hemisphere (the optimiser's full schedule)")

    def schedule(self) -> Any:
        """The optimiser's schedule the registration runs, an
        :class:`~geomorph_bids.model.optimise.OptimiseConfig` (what each metrics file records as
        ``optimise``), or None where no optimiser runs (``rigid``, a network with ``optimise`` False):
        the default's from the rigid alignment (with :func:`optimiser_weights`), a network's short
        refinement (:data:`~geomorph_bids.model.optimise.REFINEMENT`) or the schedule given. The
        methods text reads it; the engine makes the same choice in ``_optimise_jobs``."""
        if self.kind == "rigid" or (self.kind == "network" and self.optimise is False):
            return None
        from ..model.optimise import REFINEMENT, OptimiseConfig

        if self.kind == "optimise":
            return OptimiseConfig(channel_weights=optimiser_weights(self.channels))
        return REFINEMENT if self.optimise is True else self.optimise

    def forward_passes(self) -> tuple[int, ...]:
        """The network's forward passes as they run, one low-pass multiple each: its checkpoint's
        :attr:`passes`, or one pass low-passed ``start_lowpass`` times where the optimiser's schedule
        starts from its large-scale part (``--refine full``); ``()`` without a network."""
        if self.kind != "network":
            return ()
        lowpass = getattr(self.optimise, "start_lowpass", 1)  # as register() reads it
        return self.passes if lowpass == 1 else (lowpass,)

    def register_arguments(self) -> dict[str, Any]:
        """``model``, ``rigid_only`` and ``optimise`` for :func:`~geomorph_bids.engine.register.register`
        and :func:`~geomorph_bids.engine.register.register_many`."""
        return {"model": None if self.checkpoint is None else str(self.checkpoint), "rigid_only": self.rigid_only,
                "optimise": self.optimise if self.kind == "network" else True}

    def template_hemi(self, hemi: str) -> str:
        """The template hemisphere a ``hemi`` registration uses (L for a mirrored network's R)."""
        return "L" if self.mirrored and hemi == "R" else hemi

    def resolve_device(self, device: Any = "auto", check_driver: bool = False) -> str:
        """The device this choice runs on, resolved once (:func:`~geomorph_bids.engine.device.resolve_device`,
        ``check_driver`` passed on): ``"cpu"`` for the rigid stage alone (it uses no torch device)."""
        if self.rigid_only:
            return "cpu"
        from .device import resolve_device

        return str(resolve_device(device, check_driver=check_driver))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (a Nipype input); :meth:`from_dict` is the inverse."""
        optimise = self.optimise if isinstance(self.optimise, bool) else {"config": self.optimise.to_dict()}
        return {"kind": self.kind, "name": self.name, "channels": list(self.channels),
                "checkpoint": "" if self.checkpoint is None else str(self.checkpoint), "optimise": optimise,
                "mirrored": self.mirrored, "passes": list(self.passes)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelChoice":
        optimise = d.get("optimise", True)
        if isinstance(optimise, dict):
            from ..model.optimise import OptimiseConfig

            optimise = OptimiseConfig.from_dict(optimise["config"])
        return cls(str(d["kind"]), str(d["name"]), tuple(d.get("channels") or ("sulc",)),
                   Path(d["checkpoint"]) if d.get("checkpoint") else None, optimise, bool(d.get("mirrored", False)),
                   tuple(int(k) for k in d.get("passes") or (1,)))


def optimiser_weights(channels: Sequence[str]) -> tuple[float, ...] | None:
    """The optimiser's channel weights for features ``channels``, in their order
    (:data:`OPTIMISER_WEIGHTS`), or None: equal weights."""
    weights = OPTIMISER_WEIGHTS.get(frozenset(str(c) for c in channels))
    return None if weights is None else tuple(weights[str(c)] for c in channels)


def rigid() -> ModelChoice:
    """The rigid pre-alignment alone (from sulc)."""
    return ModelChoice("rigid", "rigid", ("sulc",))


def optimiser(template: str, name: str = "default", available: Sequence[str] | None = None) -> ModelChoice:
    """The warp optimised for each pair from the rigid alignment, with the template's
    :data:`OPTIMISER_CHANNELS`; those of them in ``available`` (the maps the template's source
    offers, e.g. a FreeSurfer fsaverage without ``lh.curv``: sulc alone) when given."""
    channels = OPTIMISER_CHANNELS.get(str(template), ("sulc",))
    if available is not None:
        channels = tuple(c for c in channels if c in available) or ("sulc",)
    return ModelChoice("optimise", name, channels)


def _closest_model_name(given: str, bundled: Sequence[str]) -> str:
    """``"; did you mean rigid?"`` for a name that is, or nearly is, one of the model names in
    another case (``Rigid``, ``sulc-fslr``), as ``--template fslr`` gets; else ``""``."""
    meant = closest_name(given, ("default", "rigid", *bundled), cutoff=0.8)
    return f"; did you mean {meant}?" if meant else ""


def network(model: str | Path, name: str | None = None, optimise: Any = True,
            template: str | None = None) -> ModelChoice:
    """A bundled network (by name) or a checkpoint file; its channels come from the checkpoint's
    metadata (read here, the weights are not). ``name`` defaults to the bundled name or the
    checkpoint's absolute path. ``template``: the run's template (label); a network trained for
    another template (fsLR vs fsaverage, or any vs a custom one) is refused here, on one line,
    before any work."""
    from ..model.checkpoint import read_metadata
    from ..resources import bundled_models, model_path

    path = model_path(model)
    own = Path(str(model))
    if str(model) in bundled_models() and ((own / "model.pt").is_file() or own.is_file()):
        # a network of one's own trained with --out sulc-fsLR (scripts/train_models.sh names its folders so), and
        # the command run from the folder holding it: the bundled network was taken in silence
        import warnings

        warnings.warn(f"model {model}: the bundled network {model} is used; {own.absolute()} holds a network of the "
                      f"same name: give its path (./{model}) to use that one", UserWarning, stacklevel=2)
    if path.is_dir():
        raise InputError("is a folder holding no model.pt (a network trained by geomorph-train is FOLDER/model.pt): "
                         "give the checkpoint file", path=path)
    if not path.is_file():
        raise InputError(f"model checkpoint not found{_closest_model_name(str(model), bundled_models())} (use "
                         f"default, rigid, a bundled model: {', '.join(bundled_models()) or 'none installed'}, or a "
                         "checkpoint path)", path=path)
    label = name or (str(model) if str(model) in bundled_models() else str(Path(model).absolute()))
    meta = read_metadata(path)
    standard = ("fsLR", "fsaverage")
    if template in standard and meta.template in standard and meta.template != template:
        fitting = [m for m in bundled_models() if read_metadata(model_path(m)).template == template]
        raise InputError(f"model {label} was trained for template {meta.template}, not {template}: add "
                         f"--template {meta.template} (template={meta.template!r} in Python), or pick a "
                         f"{template} model ({', '.join(fitting) or 'none'})", path=path)
    if template is not None and meta.template != template:  # a custom template (a population average, ...)
        raise InputError(f"model {label} was trained for template {meta.template}; template {template} is another "
                         "one, and a network registers only to the template it was trained for: use --model "
                         "default (the pair-wise optimisation) or rigid, or train a network for it (geomorph-train)",
                         path=path)
    from .checkpoints import network_passes

    return ModelChoice("network", label, tuple(meta.channels), path.absolute(), optimise,
                       meta.hemisphere == "LR-mirrored", network_passes(meta.config, path))


def default_registration(template: str, available: Sequence[str] | None = None) -> ModelChoice:
    """THE default registration for ``template`` (a bundled name or a custom template's label):
    what ``--model default`` and ``register(model=None)`` run; ``available``: the maps the
    template's source offers (see :func:`optimiser`).

    Today: the optimiser from the rigid alignment, for every template (no bundled network is as
    accurate yet; docs/models.md).
    """
    return optimiser(template, available=available)


def resolve_model(model: str | Path | None, template: str, available: Sequence[str] | None = None,
                  refine: bool | str = True) -> ModelChoice:
    """The user's model argument -> a :class:`ModelChoice`: None, ``""`` or ``"default"``: the
    template's :func:`default_registration` (with the maps in ``available``, when given);
    ``"rigid"``; else a bundled network's name or a checkpoint path (:func:`network`).
    ``refine``: what follows a network's warp: True (the default, ``--refine`` left out) or
    ``"short"`` (``--refine short``, given): :data:`~geomorph_bids.model.optimise.REFINEMENT`;
    ``"full"`` (``--refine full``): the optimiser's schedule from the network's low-passed warp
    (:data:`~geomorph_bids.model.optimise.FROM_NETWORK`); False (``--no-optimise``): the
    network's warp as it is (its forward passes, :attr:`ModelChoice.passes`). False, ``"short"`` and ``"full"`` are refused
    (:class:`InputError`) for a choice without a network: a given option that would change
    nothing is a mistake to say, not to ignore."""
    if refine not in (True, False, *REFINE_CHOICES):
        raise ValueError(f"refine must be True, False, 'short' or 'full', got {refine!r}")
    if model is None or str(model) in ("", "default"):
        choice = default_registration(template, available)
    elif str(model) == "rigid":
        choice = rigid()
    else:
        if refine == "full":
            from ..model.optimise import FROM_NETWORK

            return network(model, optimise=FROM_NETWORK, template=template)
        return network(model, optimise=refine is not False, template=template)
    if refine in REFINE_CHOICES:
        what = "optimises the warp from a network's" if refine == "full" else "refines a network's warp"
        raise InputError(f"--refine {refine} {what}, and --model {model or 'default'} "
                         "runs no network: add --model with a network (e.g. sulc-fsaverage; "
                         "the source repository's docs/models.md), "
                         "or leave --refine out")
    if not refine:
        raise InputError(f"--no-optimise keeps a network's warp without the per-hemisphere refinement, and "
                         f"--model {model or 'default'} runs no network: add --model with a network "
                         "(e.g. sulc-fsLR, sulc-fsaverage; "
                         "the source repository's docs/models.md), or leave --no-optimise out")
    return choice


def refuse_mirrored_right(model: str, mirrored: bool, base: str, hemis: Sequence[str]) -> None:
    """InputError when a network that registers right hemispheres mirrored onto the left template
    (``mirrored``) is asked for ``R`` among ``hemis`` on a template ``base`` whose hemispheres are
    not mirror images (:data:`MIRROR_SYMMETRIC`): the result would be in the mirrored left
    template's space, named as the right's, and its correlation measured against the wrong map."""
    if mirrored and "R" in hemis and base not in MIRROR_SYMMETRIC:
        raise InputError(f"model {model} registers right hemispheres mirrored onto the left template, and {base}'s "
                         f"right hemisphere is not the mirror image of its left (their sulc maps correlate 0.05 "
                         f"mirrored, fsLR's 0.98): a right hemisphere would land in the wrong space; register hemi-R "
                         f"with --model default (model=None in Python): e.g. --hemi L --model {model}, then --hemi R")


def refuse_other_hemisphere(choice: ModelChoice, hemis: Sequence[str]) -> None:
    """InputError, before any work, when ``choice`` is a network trained for one hemisphere only
    (``geomorph-train --hemi R`` without ``--mirror-right``) and ``hemis`` asks for the other: it
    failed in every subject's registration of that hemisphere, with a crash file each."""
    if choice.kind != "network" or choice.checkpoint is None or choice.mirrored:
        return
    from ..model.checkpoint import read_metadata

    trained = read_metadata(choice.checkpoint).hemisphere
    other = [h for h in hemis if trained in ("L", "R") and h != trained]
    if other:
        raise InputError(f"model {choice.name} was trained for hemisphere {trained} only, and --hemi asks for "
                         f"{' '.join(other)}: give --hemi {trained} (hemi={trained!r} in Python) and register "
                         f"hemi-{other[0]} with another model (e.g. --model default) in a second run",
                         path=choice.checkpoint)

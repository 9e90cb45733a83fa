"""The full GeoMorph model: a coarse-to-fine cascade of registration stages.

One stage (the GeoMorph paper, Suliman et al. 2025, "Method")::

    logits = GeoMorphNet(moving_i, fixed)                      (B, Ncp, L)
             [+ s * corr   with a correlation head, see below]
    Q      = CRFRNN(logits)   if crf_iterations > 0  else softmax(logits)
    ctrl   = normalise(sum_l w_l * label_position_l),  w = Q**4 / sum Q**4     (B, Ncp, 3)
    warp_i = upsample(ctrl) to the data icosphere                             (B, V, 3)

Cascade: stage i+1 registers stage i's warped moving image to the fixed image. All warps are
**pull-back** warps on the unit sphere (``warped[x] = moving(warp[x])``, see
:mod:`geomorph_bids.model.warp`), so if stage 1 gives ``warp_1`` and stage 2, run on
``moving o warp_1``, gives ``warp_2``, the total warp is

    total(x) = warp_1(warp_2(x))

computed by sampling the field ``warp_1`` (B, V, 3) barycentrically at the points ``warp_2``
and projecting back onto the unit sphere (exact for rotations). Every stage's warped image
(the next stage's input, and the final output) is resampled ONCE from the original moving
image at the composed warp, never from a previous resampling (no accumulated blur).

Correlation head (``StageConfig.correlation``; our addition, not the authors'): a small shared
feature extractor (two GeoConvs at the label level) describes both images; for control point n
and label l, ``corr[n, l]`` is the cosine similarity of the fixed image's descriptor at n and the
moving image's at label l's vertex, and ``s * corr`` (``s`` learned) is added to the network's
logits. The network then no longer has to discover matching from scratch: the cost volume
states it, and the classifier adds context. On a level-4 test problem it took a small network
from 2.95 deg (identity) to 0.81 deg of median warp error in 300 steps, where the same network
without it stayed at the identity.

Precision: the networks may run under (bf16) autocast; the CRF, the deformed control points,
the warp composition and the resampling always run in float32 (or float64 for a float64
model) with autocast disabled.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from geomorph_bids.model.crf import CRFRNN, gather_rows
from geomorph_bids.model.geoconv import full_precision
from geomorph_bids.model.keys import check_keys
from geomorph_bids.model.labels import LabelGrid, deform_control_points, deform_from_logits, normalise
from geomorph_bids.model.network import GeoMorphNet, NetworkConfig
from geomorph_bids.model.warp import Transformer, ico_sampler
from geomorph_bids.sphere.icosphere import MAX_LEVEL, n_vertices

__all__ = ["StageConfig", "GeoMorphConfig", "GeoMorphOutput", "FixedEncoding", "GeoMorphStage", "GeoMorph",
           "tiny_config", "default_config", "compose_warps", "MIN_CONTROL_LEVEL",
           "MAX_CONTROL_LEVEL"]

MIN_CONTROL_LEVEL = 2
MAX_CONTROL_LEVEL = 5
_POWER = 4.0  # L4 sharpening of the label probabilities (see labels.py)


def _reject_unknown(cls: type, d: Mapping[str, Any]) -> None:
    check_keys(d, [f.name for f in dataclasses.fields(cls)], cls.__name__)


@dataclass(frozen=True)
class StageConfig:
    """One registration stage (stored in checkpoints via ``to_dict``).

    Attributes
    ----------
    network : the stage's ``NetworkConfig`` (its ``control_level`` and ``n_labels`` define the
        control grid and the label count L; its ``input_level`` is the data level).
    label_level : icosphere level of the label grid (>= control level; authors: 6).
    crf_iterations : mean-field iterations of the CRF-RNN (5); 0 disables the CRF.
    crf_k_ring : CRF neighbourhood radius in rings of the control icosphere (2).
    crf_gamma : CRF Gaussian kernel width on the unit sphere (0.1).
    correlation : add the correlation head (a learned cost volume over the labels; see the
        module docstring); needs ``label_level <= network.input_level``.
    correlation_channels : descriptor channels of the correlation head.
    """

    network: NetworkConfig
    label_level: int = 6
    crf_iterations: int = 5
    crf_k_ring: int = 2
    crf_gamma: float = 0.1
    correlation: bool = False
    correlation_channels: int = 16

    def __post_init__(self) -> None:
        net = self.network
        if isinstance(net, Mapping):
            net = NetworkConfig.from_dict(net)
            object.__setattr__(self, "network", net)
        if not isinstance(net, NetworkConfig):
            raise ValueError(f"StageConfig.network must be a NetworkConfig, got {type(net).__name__}")
        object.__setattr__(self, "label_level", int(self.label_level))
        object.__setattr__(self, "crf_iterations", int(self.crf_iterations))
        object.__setattr__(self, "crf_k_ring", int(self.crf_k_ring))
        object.__setattr__(self, "crf_gamma", float(self.crf_gamma))
        object.__setattr__(self, "correlation", bool(self.correlation))
        object.__setattr__(self, "correlation_channels", int(self.correlation_channels))
        if self.correlation and self.label_level > net.input_level:
            raise ValueError(f"the correlation head needs label_level ({self.label_level}) <= the data "
                             f"level ({net.input_level})")
        if self.correlation_channels < 1:
            raise ValueError(f"correlation_channels must be >= 1, got {self.correlation_channels}")
        c = net.control_level
        if not MIN_CONTROL_LEVEL <= c <= MAX_CONTROL_LEVEL:
            raise ValueError(f"control level must be in {MIN_CONTROL_LEVEL}..{MAX_CONTROL_LEVEL}, got {c}")
        if not c <= self.label_level <= MAX_LEVEL:
            raise ValueError(f"label_level ({self.label_level}) must be >= the control level ({c}) "
                             f"and <= {MAX_LEVEL}")
        if net.n_labels > n_vertices(self.label_level):
            raise ValueError(f"n_labels ({net.n_labels}) exceeds the {n_vertices(self.label_level)} "
                             f"vertices of label level {self.label_level}")
        if self.crf_iterations < 0:
            raise ValueError(f"crf_iterations must be >= 0, got {self.crf_iterations}")
        if self.crf_k_ring < 1:
            raise ValueError(f"crf_k_ring must be >= 1, got {self.crf_k_ring}")
        if not self.crf_gamma > 0:
            raise ValueError(f"crf_gamma must be > 0, got {self.crf_gamma}")

    @property
    def control_level(self) -> int:
        """Icosphere level of the control grid."""
        return self.network.control_level

    @property
    def n_labels(self) -> int:
        """L, labels per control point."""
        return self.network.n_labels

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (the network as a nested dict)."""
        d = {"network": self.network.to_dict(), "label_level": self.label_level,
             "crf_iterations": self.crf_iterations, "crf_k_ring": self.crf_k_ring,
             "crf_gamma": self.crf_gamma}
        if self.correlation:  # written only when used: older readers keep loading plain stages
            d.update(correlation=True, correlation_channels=self.correlation_channels)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "StageConfig":
        """Inverse of ``to_dict``; missing keys (but ``network``) take defaults, unknown keys
        raise ValueError."""
        _reject_unknown(cls, d)
        if "network" not in d:
            raise ValueError("StageConfig needs a 'network' entry")
        d = dict(d)
        net = d.pop("network")
        net = net if isinstance(net, NetworkConfig) else NetworkConfig.from_dict(net)
        return cls(network=net, **d)


@dataclass(frozen=True)
class GeoMorphConfig:
    """A coarse-to-fine cascade of stages on icosphere ``data_level`` (stored in checkpoints).

    Attributes
    ----------
    stages : one or more ``StageConfig``; stage i+1 registers stage i's warped output.
    data_level : icosphere level of the inputs and outputs (6: 40962 vertices); every stage's
        ``network.input_level`` must equal it.
    """

    stages: tuple[StageConfig, ...]
    data_level: int = 6

    def __post_init__(self) -> None:
        stages = self.stages
        if isinstance(stages, (StageConfig, Mapping)):
            stages = (stages,)
        stages = tuple(StageConfig.from_dict(s) if isinstance(s, Mapping) else s for s in stages)
        object.__setattr__(self, "stages", stages)
        object.__setattr__(self, "data_level", int(self.data_level))
        if not stages:
            raise ValueError("GeoMorphConfig needs at least one stage")
        for i, s in enumerate(stages):
            if not isinstance(s, StageConfig):
                raise ValueError(f"stage {i} must be a StageConfig, got {type(s).__name__}")
            if s.network.input_level != self.data_level:
                raise ValueError(f"stage {i}: network.input_level ({s.network.input_level}) must equal "
                                 f"data_level ({self.data_level})")
        channels = {s.network.in_channels for s in stages}
        if len(channels) != 1:
            raise ValueError(f"all stages must take the same number of input channels, got "
                             f"{[s.network.in_channels for s in stages]}")

    @property
    def in_channels(self) -> int:
        """K, input features per vertex."""
        return self.stages[0].network.in_channels

    @property
    def n_vertices(self) -> int:
        """Vertices of the data icosphere."""
        return n_vertices(self.data_level)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return {"stages": [s.to_dict() for s in self.stages], "data_level": self.data_level}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GeoMorphConfig":
        """Inverse of ``to_dict``; unknown keys raise ValueError."""
        _reject_unknown(cls, d)
        if "stages" not in d:
            raise ValueError("GeoMorphConfig needs a 'stages' entry")
        stages = tuple(s if isinstance(s, StageConfig) else StageConfig.from_dict(s)
                       for s in d["stages"])
        return cls(stages=stages, data_level=int(d.get("data_level", 6)))


def _levels(control_level: int | Sequence[int]) -> tuple[int, ...]:
    levels = (control_level,) if isinstance(control_level, int) else tuple(control_level)
    return tuple(int(c) for c in levels)


def _per_stage(value: Any, n: int, name: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name}: {len(value)} values for {n} stages")
        return list(value)
    return [value] * n


def tiny_config(in_channels: int = 1, data_level: int = 4, control_level: int | Sequence[int] = 2,
                n_labels: int | Sequence[int] = 20, *, label_level: int | Sequence[int] | None = None,
                crf_iterations: int = 2, width: int = 8, kernels: int = 3) -> GeoMorphConfig:
    """A small, fast config for tests and smoke runs.

    Encoder channels ``(width,) * (data_level - 1)`` (data level down to ico-2, the last level
    shared), one hidden decoder block of ``2 * width``, ``kernels`` Gaussian kernels.

    Parameters
    ----------
    in_channels : input maps per hemisphere (e.g. 1 for sulc).
    data_level : icosphere level of the input maps (>= 3).
    control_level : one level (one stage) or a sequence (a cascade, one stage per level).
    n_labels, label_level : per stage (a value or one per stage); ``label_level`` defaults to
        ``data_level``.
    crf_iterations : mean-field iterations of each stage's CRF.
    width, kernels : encoder channels per level, Gaussian kernels per convolution.
    """
    levels = _levels(control_level)
    n = len(levels)
    if data_level < 3:
        raise ValueError(f"tiny_config needs data_level >= 3, got {data_level}")
    n_enc = data_level - 1
    labels = _per_stage(n_labels, n, "n_labels")
    label_levels = _per_stage(data_level if label_level is None else label_level, n, "label_level")
    stages = tuple(
        StageConfig(network=NetworkConfig(in_channels=in_channels, input_level=data_level,
                                          channels=(width,) * n_enc, n_separate=n_enc - 1,
                                          decoder_channels=(2 * width,), control_level=c,
                                          n_labels=int(L), kernels=kernels),
                    label_level=int(ll), crf_iterations=crf_iterations)
        for c, L, ll in zip(levels, labels, label_levels))
    return GeoMorphConfig(stages=stages, data_level=data_level)


def default_config(in_channels: int = 1, control_level: int | Sequence[int] = 4,
                   n_labels: int | Sequence[int] = 600, *, label_level: int | Sequence[int] = 6,
                   data_level: int = 6, crf_iterations: int = 5) -> GeoMorphConfig:
    """The paper-sized model (the GeoMorph paper): encoder [32, 32, 64, 64, 128] from ico-6 to ico-2,
    decoder [128, 128, 128], 10 kernels, label ico-6; ``control_level`` an int (one stage, the
    authors' ico-4 with L = 600) or a sequence for a cascade (e.g. ``(2, 4)``)."""
    levels = _levels(control_level)
    n = len(levels)
    labels = _per_stage(n_labels, n, "n_labels")
    label_levels = _per_stage(label_level, n, "label_level")
    stages = tuple(
        StageConfig(network=NetworkConfig(in_channels=in_channels, input_level=data_level,
                                          control_level=c, n_labels=int(L)),
                    label_level=int(ll), crf_iterations=crf_iterations)
        for c, L, ll in zip(levels, labels, label_levels))
    return GeoMorphConfig(stages=stages, data_level=data_level)


@dataclass
class GeoMorphOutput:
    """Result of :meth:`GeoMorph.forward`.

    Attributes
    ----------
    warp : (B, V_data, 3) unit-sphere pull-back warp composed over all stages
        (``warped[x] = moving(warp[x])``).
    warped : (B, V_data, K) moving features resampled (once) at ``warp``; None when the forward
        pass was asked not to (``forward(..., warped=False)``: callers that read only the warp).
    logits : per stage (B, Ncp_i, L_i) label logits (empty when built from control points).
    control_points : per stage (B, Ncp_i, 3) deformed control points on the unit sphere
        (each relative to its own stage's input).
    stage_warps : per stage (B, V_data, 3) the stage's own (uncomposed) dense warp.
    """

    warp: Tensor
    warped: Tensor | None
    logits: list[Tensor] = field(default_factory=list)
    control_points: list[Tensor] = field(default_factory=list)
    stage_warps: list[Tensor] = field(default_factory=list)


@dataclass(frozen=True)
class FixedEncoding:
    """What :meth:`GeoMorph.forward` computes from the fixed image alone
    (:meth:`GeoMorph.encode_fixed`).

    Attributes
    ----------
    fixed : the (B, V_data, K) tensor it was computed from (``forward`` accepts it with this very
        tensor only).
    stages : per stage, the encoder's fixed stream (B, V, C) and the correlation head's fixed
        descriptor (B, V_label, C) or None.
    """

    fixed: Tensor
    stages: tuple[tuple[Tensor, Tensor | None], ...]


def _geometric(t: Tensor) -> Tensor:
    """Half-precision tensors -> float32; float32/float64 unchanged."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


#: autocast off on a device's type (a no-op where autocast does not apply); shared with the GeoConvs
_full_precision = full_precision


def compose_warps(previous: Tensor | None, new: Tensor, data_level: int, face: Tensor | None = None) -> Tensor:
    """Compose pull-back warps: ``total(x) = previous(new(x))``.

    Parameters
    ----------
    previous : (B, V, 3) the warp applied first to the moving image (earlier stage), on
        icosphere ``data_level``, unit sphere; None for the identity.
    new : (B, V, 3) the later stage's warp (registering ``moving o previous``).
    data_level : icosphere level of both fields.
    face : optional (B, V) faces of icosphere ``data_level`` holding the points ``new``, when
        the caller has located them (e.g. from a hint); found here otherwise.

    Returns
    -------
    (B, V, 3) on the unit sphere: ``previous`` sampled barycentrically at the points ``new``
    and renormalised (exact for rotations). Differentiable in both arguments; float32 (or the
    inputs' float64) with autocast disabled.
    """
    if previous is None:
        return new
    with _full_precision(new.device):
        prev, nxt = _geometric(previous), _geometric(new)
        dtype = torch.promote_types(prev.dtype, nxt.dtype)
        return normalise(ico_sampler(data_level)(prev.to(dtype), nxt.to(dtype), face))


class MatchFeatures(nn.Module):
    """Shared descriptors for the correlation head: two GeoConvs with LeakyReLU on icosphere
    ``level``: (B, V, K) -> (B, V, C)."""

    def __init__(self, in_channels: int, channels: int, level: int, kernels: int, negative_slope: float) -> None:
        super().__init__()
        from geomorph_bids.model.geoconv import GeoConv

        self.conv1 = GeoConv(in_channels, channels, level, kernels)
        self.conv2 = GeoConv(channels, channels, level, kernels)
        self.negative_slope = negative_slope

    def forward(self, x: Tensor) -> Tensor:
        x = torch.nn.functional.leaky_relu(self.conv1(x), self.negative_slope)
        return self.conv2(x)


class GeoMorphStage(nn.Module):
    """One stage: network, label grid, optional CRF-RNN, transformer.

    ``forward(moving, fixed)``: (B, V, K) x 2 -> logits (B, Ncp, L).
    ``control_points(logits)`` -> (B, Ncp, 3); ``warp(control)`` -> (B, V_data, 3).
    """

    def __init__(self, config: StageConfig, data_level: int) -> None:
        super().__init__()
        self.config = config
        self.network = GeoMorphNet(config.network)
        self.grid = LabelGrid(config.control_level, config.label_level, config.n_labels)
        self.crf = (CRFRNN(self.grid, n_iter=config.crf_iterations, k_ring=config.crf_k_ring,
                           gamma=config.crf_gamma, power=_POWER)
                    if config.crf_iterations > 0 else None)
        self.transformer = Transformer(config.control_level, data_level)
        self.match: nn.Module | None = None
        if config.correlation:
            net = config.network
            self.match = MatchFeatures(net.in_channels, config.correlation_channels, config.label_level,
                                       net.kernels, net.negative_slope)
            self.corr_scale = nn.Parameter(torch.tensor(4.0))

    def encode_fixed(self, fixed: Tensor) -> tuple[Tensor, Tensor | None]:
        """What this stage computes from the fixed image (B, V_data, K) alone: the encoder's
        fixed stream (:meth:`~geomorph_bids.model.network.FeatureEncoder.fixed_stream`) and the
        correlation head's fixed descriptor (B, V_label, C) (None without the head)."""
        stream = self.network.encoder.fixed_stream(fixed)
        return stream, None if self.match is None else self._descriptor(fixed)

    def _descriptor(self, image: Tensor) -> Tensor:
        """(B, V_label, C) unit descriptors of an image on the label icosphere."""
        return torch.nn.functional.normalize(self.match(image[:, :n_vertices(self.config.label_level)]), dim=-1)

    def forward(self, moving: Tensor, fixed: Tensor,
                encoded: tuple[Tensor, Tensor | None] | None = None) -> Tensor:
        """(B, V, K) x 2 -> logits (B, Ncp, L); ``encoded``: :meth:`encode_fixed` of ``fixed``,
        when already computed (the same bits)."""
        stream, descriptor = (None, None) if encoded is None else encoded
        logits = self.network(moving, fixed, stream)
        if self.match is None:
            return logits
        return logits + self.corr_scale * self.correlation(moving, fixed, descriptor)

    def correlation(self, moving: Tensor, fixed: Tensor, descriptor: Tensor | None = None) -> Tensor:
        """(B, Ncp, L) cosine similarity of the fixed descriptor at each control point and the
        moving descriptor at each of its labels (descriptors on the label icosphere, whose
        first vertices are the data icosphere's: the hierarchy is nested). ``descriptor``: the
        fixed one (:meth:`encode_fixed`), when already computed."""
        dm = self._descriptor(moving)
        df = self._descriptor(fixed) if descriptor is None else descriptor
        ncp = self.grid.n_control
        index = self.grid.index
        if dm.requires_grad:  # training: advanced indexing's backward
            at_labels = dm[:, index]                                 # (B, Ncp, L, C)
        else:  # the same values, 1.7x faster on the CPU
            at_labels = gather_rows(dm, index)
        return torch.einsum("bnc,bnlc->bnl", df[:, :ncp], at_labels)

    def probabilities(self, logits: Tensor) -> Tensor:
        """(B, Ncp, L) label distributions: the CRF's final Q, or softmax without a CRF (float32)."""
        with _full_precision(logits.device):
            logits = _geometric(logits)
            return self.crf(logits) if self.crf is not None else torch.softmax(logits, -1)

    def control_points(self, logits: Tensor) -> Tensor:
        """(B, Ncp, L) logits -> (B, Ncp, 3) deformed control points on the unit sphere
        (L4-sharpened probability-weighted label positions; float32, autocast disabled)."""
        with _full_precision(logits.device):
            logits = _geometric(logits)
            if self.crf is None:  # softmax(4 * logits) == p**4 / sum p**4, computed stably
                return deform_from_logits(logits, self.grid, _POWER)
            return deform_control_points(self.crf(logits), self.grid, _POWER)

    def warp(self, control: Tensor) -> Tensor:
        """(B, Ncp, 3) control points -> (B, V_data, 3) dense warp on the unit sphere."""
        with _full_precision(control.device):
            return self.transformer.warp(_geometric(control))


class GeoMorph(nn.Module):
    """GeoMorph registration model: a cascade of :class:`GeoMorphStage`.

    ``forward(moving, fixed)``: (B, V_data, K) float each, already normalised
    (:mod:`geomorph_bids.model.normalise`) -> :class:`GeoMorphOutput`.
    """

    def __init__(self, config: GeoMorphConfig) -> None:
        super().__init__()
        if not isinstance(config, GeoMorphConfig):
            raise ValueError(f"GeoMorph needs a GeoMorphConfig, got {type(config).__name__}")
        self.config = config
        self.stages = nn.ModuleList(GeoMorphStage(s, config.data_level) for s in config.stages)

    @property
    def data_level(self) -> int:
        """Icosphere level of inputs and outputs."""
        return self.config.data_level

    def n_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def _check(self, name: str, t: Tensor) -> None:
        expected = (self.config.n_vertices, self.config.in_channels)
        if t.dim() != 3 or tuple(t.shape[1:]) != expected:
            raise ValueError(f"{name}: expected (B, {expected[0]}, {expected[1]}) features on "
                             f"ico-{self.data_level}, got {tuple(t.shape)}")

    def resample(self, moving: Tensor, warp: Tensor) -> Tensor:
        """Moving features (B, V, K) sampled at the warp (B, V, 3) (float32, autocast off)."""
        with _full_precision(warp.device):
            return ico_sampler(self.data_level)(_geometric(moving), _geometric(warp))

    def _steps(self, moving: Tensor, fixed: Tensor | None, controls: Sequence[Tensor] | None,
               encoded: "FixedEncoding | None" = None, warped: bool = True
               ) -> Iterator[tuple[Tensor | None, Tensor, Tensor, Tensor, Tensor | None]]:
        """Run the cascade; yields (logits, control, stage warp, total warp, warped) per stage
        (the last stage's warped image None unless ``warped``)."""
        total: Tensor | None = None
        current: Tensor | None = moving
        last = len(self.stages) - 1
        for i, stage in enumerate(self.stages):
            if controls is None:
                logits = stage(current, fixed, None if encoded is None else encoded.stages[i])
                control = stage.control_points(logits)
            else:
                logits, control = None, controls[i]
            stage_warp = stage.warp(control)
            total = compose_warps(total, stage_warp, self.data_level)
            # always from the original moving image
            current = self.resample(moving, total) if warped or i < last else None
            yield logits, control, stage_warp, total, current

    def encode_fixed(self, fixed: Tensor) -> "FixedEncoding":
        """What a forward pass computes from the fixed image (B, V_data, K) alone, every stage's
        (:meth:`GeoMorphStage.encode_fixed`): computed once, it serves every moving image
        registered to this ``fixed`` (``forward(..., encoded=)``; the forward passes of a cascade)."""
        self._check("fixed", fixed)
        return FixedEncoding(fixed, tuple(stage.encode_fixed(fixed) for stage in self.stages))

    def forward(self, moving: Tensor, fixed: Tensor, *, encoded: "FixedEncoding | None" = None,
                warped: bool = True) -> GeoMorphOutput:
        """Register ``moving`` to ``fixed``: (B, V_data, K) each -> :class:`GeoMorphOutput`.

        ``encoded``: :meth:`encode_fixed` of this very ``fixed`` tensor (the same bits as
        without it, less work). ``warped=False``: the moving image is not resampled at the final
        warp (``GeoMorphOutput.warped`` is None), for callers that read only the warp."""
        self._check("moving", moving)
        self._check("fixed", fixed)
        if moving.shape[0] != fixed.shape[0]:
            raise ValueError(f"moving and fixed batch sizes differ: {moving.shape[0]} vs {fixed.shape[0]}")
        if encoded is not None and encoded.fixed is not fixed:
            raise ValueError("encoded was computed from another fixed tensor: pass encode_fixed(fixed) of this one")
        return self._collect(self._steps(moving, fixed, None, encoded, warped))

    def forward_from_control(self, moving: Tensor, control_points: Sequence[Tensor]) -> GeoMorphOutput:
        """The cascade with given per-stage control points (bypasses the networks and CRFs).

        Parameters
        ----------
        moving : (B, V_data, K).
        control_points : one (B, Ncp_i, 3) tensor per stage (unit sphere), stage i's control
            points relative to its own input (``moving`` warped by stages 0..i-1).

        Returns a :class:`GeoMorphOutput` with empty ``logits``. Differentiable w.r.t. the
        control points (used by test-time refinement).
        """
        self._check("moving", moving)
        if len(control_points) != len(self.stages):
            raise ValueError(f"{len(control_points)} control-point sets for {len(self.stages)} stages")
        for i, (c, stage) in enumerate(zip(control_points, self.stages)):
            ncp = stage.grid.n_control
            if c.dim() != 3 or tuple(c.shape[1:]) != (ncp, 3) or c.shape[0] != moving.shape[0]:
                raise ValueError(f"stage {i}: control points must be ({moving.shape[0]}, {ncp}, 3), "
                                 f"got {tuple(c.shape)}")
        return self._collect(self._steps(moving, None, control_points))

    @staticmethod
    def _collect(steps: Iterator) -> GeoMorphOutput:
        logits, controls, warps = [], [], []
        total = warped = None
        for lg, control, stage_warp, total, warped in steps:
            if lg is not None:
                logits.append(lg)
            controls.append(control)
            warps.append(stage_warp)
        if total is None:  # unreachable: configs have >= 1 stage
            raise RuntimeError("GeoMorph has no stages")
        return GeoMorphOutput(warp=total, warped=warped, logits=logits, control_points=controls,
                              stage_warps=warps)

    def extra_repr(self) -> str:
        levels = ", ".join(f"ico-{s.control_level}/L={s.n_labels}" for s in self.config.stages)
        return f"data_level={self.data_level}, stages=[{levels}]"

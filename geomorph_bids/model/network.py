"""GeoMorph network: two-stream geometric-convolution encoder and label classifier.

Architecture (the GeoMorph paper, Suliman et al. 2025; defaults in ``NetworkConfig``)
-------------------------------------------------------------------
Encoder (``FeatureEncoder``), one stream per image (moving, fixed), levels ``input_level``
(ico-6) down to ``input_level - len(channels) + 1`` (ico-2), one stage per level::

    stage i: x -> act(GeoConv(c_in -> c_i)) -> act(GeoConv(c_i -> c_i))      act = LeakyReLU(0.2)
    next input: concat(x[:, :V_next], hex_max_pool(x), raw[:, :V_next])      (c_i + c_i + K)

(``raw`` is the network input; the first ``V_next`` vertices are the coarser icosphere, the
hierarchy is nested.) Stages ``0 .. n_separate-1`` (default 3) have separate weights for the
moving and the fixed stream; the rest are one module shared by both (run on the two streams
stacked along the batch).

Classifier (``GeoMorphNet``): both ico-2 feature maps L2-normalised per vertex, concatenated
(2 * channels[-1] = 256), then residual blocks of GeoConvs
``256 -> 128 -> 128 -> 128 -> L (-> L if label_block)``; block ``i`` runs at level
``min(bottom + i, control_level)`` with a hex upsample before a block whose level is finer than
its predecessor's ("variant A": the decoder stops at the control grid, so there is no ico-6
tail and no mean pooling back). A residual block is
``act(conv2(act(conv1(x))) + shortcut(x))`` with ``conv1: in -> min(in, out)``,
``conv2: -> out``, ``shortcut`` a GeoConv when ``in != out`` else identity, act = ReLU; the
last block has no output activation: its output are the label logits ``(B, V_control, L)``
(the authors apply a ReLU before the softmax; we leave the logits unconstrained).

Tensors are channels-last ``(B, V, C)`` float (see ``geoconv``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geomorph_bids.model.geoconv import GeoConv, HexMaxPool, HexUpsample
from geomorph_bids.model.keys import check_keys
from geomorph_bids.sphere.icosphere import MAX_LEVEL, n_vertices

__all__ = ["NetworkConfig", "FeatureEncoder", "ResBlock", "GeoMorphNet", "ConvFactory"]

ConvFactory = Callable[[int, int, int, int], nn.Module]
"""``(in_channels, out_channels, level, kernels) -> module`` mapping (B, V, C_in) -> (B, V, C_out)."""


@dataclass(frozen=True)
class NetworkConfig:
    """Hyper-parameters of ``GeoMorphNet`` (stored in checkpoints via ``to_dict``).

    Attributes
    ----------
    in_channels : K, input features per vertex (e.g. 1 for sulc).
    input_level : icosphere level of the inputs (6: 40962 vertices).
    channels : encoder channels per level, from ``input_level`` downwards.
    n_separate : leading encoder levels with separate moving/fixed weights (rest shared).
    decoder_channels : hidden widths of the classifier's residual blocks.
    control_level : icosphere level of the control grid (the logits' vertices).
    n_labels : L, candidate displacements (labels) per control point.
    kernels : Gaussian kernels per GeoConv.
    label_block : append a final ``L -> L`` residual block (as the authors do).
    negative_slope : LeakyReLU slope of the encoder.
    """

    in_channels: int = 1
    input_level: int = 6
    channels: tuple[int, ...] = (32, 32, 64, 64, 128)
    n_separate: int = 3
    decoder_channels: tuple[int, ...] = (128, 128, 128)
    control_level: int = 4
    n_labels: int = 600
    kernels: int = 10
    label_block: bool = True
    negative_slope: float = 0.2

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "decoder_channels", tuple(int(c) for c in self.decoder_channels))
        if self.in_channels < 1 or self.n_labels < 1 or self.kernels < 1:
            raise ValueError("in_channels, n_labels and kernels must be >= 1")
        if not self.channels or min(self.channels) < 1 or min(self.decoder_channels, default=1) < 1:
            raise ValueError("channels must be non-empty and positive")
        if not 0 <= self.input_level <= MAX_LEVEL:
            raise ValueError(f"input_level must be in 0..{MAX_LEVEL}")
        if self.bottom_level < 0:
            raise ValueError(f"{len(self.channels)} encoder levels do not fit below "
                             f"input_level {self.input_level}")
        if not 0 <= self.n_separate <= len(self.channels):
            raise ValueError("n_separate must be in 0..len(channels)")
        top = min(self.input_level, self.bottom_level + self.n_blocks - 1)
        if not self.bottom_level <= self.control_level <= top:
            raise ValueError(f"control_level must be in {self.bottom_level}..{top} for this "
                             f"config (one decoder block per level climbed)")

    @property
    def bottom_level(self) -> int:
        """Coarsest encoder level (ico-2 by default), where the classifier starts."""
        return self.input_level - len(self.channels) + 1

    @property
    def n_blocks(self) -> int:
        """Number of residual blocks in the classifier."""
        return len(self.decoder_channels) + 1 + int(self.label_block)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (tuples as lists)."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "NetworkConfig":
        """Inverse of ``to_dict``; missing keys take defaults, unknown keys raise ValueError."""
        check_keys(d, [f.name for f in dataclasses.fields(cls)], "NetworkConfig")
        return cls(**dict(d))


def _geoconv(in_channels: int, out_channels: int, level: int, kernels: int) -> nn.Module:
    return GeoConv(in_channels, out_channels, level, kernels)


class _Stage(nn.Module):
    """Two GeoConvs with LeakyReLU at one level: (B, V, C_in) -> (B, V, C_out)."""

    def __init__(self, in_channels: int, out_channels: int, level: int, kernels: int,
                 negative_slope: float, conv: ConvFactory) -> None:
        super().__init__()
        self.conv1 = conv(in_channels, out_channels, level, kernels)
        self.conv2 = conv(out_channels, out_channels, level, kernels)
        self.negative_slope = negative_slope

    def forward(self, x: Tensor) -> Tensor:
        x = F.leaky_relu(self.conv1(x), self.negative_slope)
        return F.leaky_relu(self.conv2(x), self.negative_slope)


class FeatureEncoder(nn.Module):
    """Two-stream encoder: (moving, fixed) (B, V_input, K) -> two (B, V_bottom, channels[-1]).

    ``moving_stages[i]`` / ``fixed_stages[i]`` (i < n_separate) hold the separate weights;
    ``shared_stages[j]`` serves encoder level ``n_separate + j`` of both streams.
    """

    def __init__(self, config: NetworkConfig, conv: ConvFactory = _geoconv) -> None:
        super().__init__()
        self.config = config
        c, K = config.channels, config.in_channels
        self.levels = [config.input_level - i for i in range(len(c))]
        ins = [K] + [K + 2 * ci for ci in c[:-1]]

        def stage(i: int) -> _Stage:
            return _Stage(ins[i], c[i], self.levels[i], config.kernels, config.negative_slope, conv)

        self.moving_stages = nn.ModuleList(stage(i) for i in range(config.n_separate))
        self.fixed_stages = nn.ModuleList(stage(i) for i in range(config.n_separate))
        self.shared_stages = nn.ModuleList(stage(i) for i in range(config.n_separate, len(c)))
        self.pools = nn.ModuleList(HexMaxPool(lv) for lv in self.levels[:-1])

    def _next_input(self, i: int, x: Tensor, raw: Tensor) -> Tensor:
        v = n_vertices(self.levels[i] - 1)
        return torch.cat([x[:, :v], self.pools[i](x), raw[:, :v]], dim=-1)

    def fixed_stream(self, fixed: Tensor) -> Tensor:
        """The fixed stream through the separate levels: (B, n_vertices(input_level), K) -> the
        input of the first shared level (``fixed`` itself when ``n_separate`` is 0).

        It depends on the fixed image alone, so the moving images registered to one fixed image
        (the forward passes of a cascade) can share it: ``forward(..., fixed_stream=)``."""
        n = len(self.levels)
        xf = fixed
        for i in range(self.config.n_separate):
            xf = self.fixed_stages[i](xf)
            if i < n - 1:
                xf = self._next_input(i, xf, fixed)
        return xf

    def forward(self, moving: Tensor, fixed: Tensor, fixed_stream: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """moving, fixed: (B, n_vertices(input_level), K) -> features (B, V_bottom, C_last) each.

        ``fixed_stream``: :meth:`fixed_stream` of this ``fixed``, when already computed (the
        same values, the same bits)."""
        B = moving.shape[0]
        ns, n = self.config.n_separate, len(self.levels)
        xf = self.fixed_stream(fixed) if fixed_stream is None else fixed_stream
        xm = moving
        for i in range(n):
            if i < ns:
                xm = self.moving_stages[i](xm)
            else:
                xm, xf = self.shared_stages[i - ns](torch.cat([xm, xf], 0)).split(B, 0)
            if i < n - 1:
                xm = self._next_input(i, xm, moving)
                if i >= ns:
                    xf = self._next_input(i, xf, fixed)
        return xm, xf


class ResBlock(nn.Module):
    """Residual block of GeoConvs at one level: (B, V, C_in) -> (B, V, C_out).

    ``y = conv2(relu(conv1(x))) + shortcut(x)``, then ReLU unless ``final`` (logits).
    """

    def __init__(self, in_channels: int, out_channels: int, level: int, kernels: int,
                 final: bool = False, conv: ConvFactory = _geoconv) -> None:
        super().__init__()
        hidden = min(in_channels, out_channels)
        self.conv1 = conv(in_channels, hidden, level, kernels)
        self.conv2 = conv(hidden, out_channels, level, kernels)
        self.shortcut = (conv(in_channels, out_channels, level, kernels)
                         if in_channels != out_channels else None)
        self.final = final
        self.level = level

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        y = y + (x if self.shortcut is None else self.shortcut(x))
        return y if self.final else F.relu(y)


class GeoMorphNet(nn.Module):
    """GeoMorph feature extractor + classifier: (moving, fixed) -> label logits.

    Parameters
    ----------
    config : ``NetworkConfig``.
    conv : factory for the geometric convolutions (default ``GeoConv``; benchmarks pass a
        torch_geometric ``GMMConv`` wrapper with the same call signature).

    ``forward(moving, fixed)``: (B, n_vertices(input_level), K) float each (unbatched (V, K)
    accepted) -> logits (B, n_vertices(control_level), n_labels); softmax over the last axis
    gives the label probabilities.
    """

    def __init__(self, config: NetworkConfig | None = None, conv: ConvFactory = _geoconv) -> None:
        super().__init__()
        config = config or NetworkConfig()
        self.config = config
        self.encoder = FeatureEncoder(config, conv)
        widths = [2 * config.channels[-1], *config.decoder_channels, config.n_labels]
        if config.label_block:
            widths.append(config.n_labels)
        self.block_levels = [min(config.bottom_level + i, config.control_level)
                             for i in range(config.n_blocks)]
        self.blocks = nn.ModuleList(
            ResBlock(widths[i], widths[i + 1], lv, config.kernels,
                     final=(i == config.n_blocks - 1), conv=conv)
            for i, lv in enumerate(self.block_levels))
        self.upsamples = nn.ModuleDict(
            {str(lv): HexUpsample(lv)
             for lv in range(config.bottom_level + 1, config.control_level + 1)})

    def forward(self, moving: Tensor, fixed: Tensor, fixed_stream: Tensor | None = None) -> Tensor:
        """(B, V_in, K) x 2 -> logits (B, V_control, L); (V_in, K) inputs give (V_control, L).

        ``fixed_stream``: the encoder's :meth:`FeatureEncoder.fixed_stream` of this ``fixed``
        (batched), when already computed."""
        squeeze = moving.dim() == 2
        if squeeze:
            moving, fixed = moving.unsqueeze(0), fixed.unsqueeze(0)
            if fixed_stream is not None and fixed_stream.dim() == 2:
                fixed_stream = fixed_stream.unsqueeze(0)
        cfg = self.config
        expected = (n_vertices(cfg.input_level), cfg.in_channels)
        for name, t in (("moving", moving), ("fixed", fixed)):
            if t.dim() != 3 or tuple(t.shape[1:]) != expected:
                raise ValueError(f"{name}: expected (B, {expected[0]}, {expected[1]}), "
                                 f"got {tuple(t.shape)}")
        fm, ff = self.encoder(moving, fixed, fixed_stream)
        x = torch.cat([F.normalize(fm, dim=-1), F.normalize(ff, dim=-1)], dim=-1)
        level = cfg.bottom_level
        for block, lv in zip(self.blocks, self.block_levels):
            if lv > level:
                x, level = self.upsamples[str(lv)](x), lv
            x = block(x)
        return x[0] if squeeze else x

    def n_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

"""Training pairs made on the fly, with their true warp, on any torch device (no Nipype).

Why: a fixed set of synthetic subjects (:mod:`geomorph_bids.engine.synth`, numpy, ~0.3 s per
subject on a CPU) is too small and too slow for training the paper-sized network on a GPU,
and subjects that are warped copies of the smooth template itself teach a network nothing
about real brains, whose maps differ from the template beyond any warp. Here every batch is
new, made in a few milliseconds on the device, from a **bank of real maps**:

* a **source** is a real feature map (group averages of other populations and hemispheres:
  sMRIPrep's fsLR refsulc, nilearn's fsaverage5, HCP S1200, brainspace's conte69 maps, right
  hemispheres mirrored) already carried into the template's space through a reference
  registration (sMRIPrep's fs_L-to-fs_LR spheres, fsLR's left/right vertex correspondence);
  so a source differs from the template by everything a registration should NOT explain away
  (``scripts/build_training_sources.py`` builds the bank);
* **individual-like detail** (real subjects are sharper and noisier than group averages): an
  unsharp mask of random strength and spatially correlated fine-scale noise;
* a **random smooth warp** ``phi = R o exp(v)`` with a known inverse: ``v`` a stationary
  tangent field from random spherical plane-wave potentials (gradient + curl parts), scaled so
  that its largest displacement equals a drawn target, integrated with RK4 (forward and
  backward), ``R`` a small random rotation (what rigid pre-alignment leaves);
* **intensity changes**: smooth gain, bias and local-contrast fields and white noise.

The moving image is the augmented source pushed forward by ``phi``: sampled at
``phi^-1(x)`` for every vertex ``x`` of the data icosphere. The warp a network must predict
(pull-back convention, :mod:`geomorph_bids.model.warp`) is ``target[x] = phi(x)``:
``moving(phi(x)) = source(x)``. The fixed image is the template, as at inference. With a
source's **teacher warp** ``psi`` (the per-pair optimiser's registration of the source to the
template, :mod:`geomorph_bids.engine.teachers`; ``geomorph-train --teachers``) the target is
``phi(psi(x))``: the correspondence the maps themselves show, not the reference registration's.

All arrays are torch tensors on the generator's device; randomness comes from torch's
global generator on that device (reseeded per epoch by :func:`~geomorph_bids.engine.train.train`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..model.geoconv import hex_laplacian
from ..model.labels import normalise
from ..model.normalise import NormalisationSpec
from ..model.warp import ico_sampler
from ..sphere.icosphere import icosphere, n_vertices
from .data import PairSet

__all__ = ["PairGenConfig", "SourceBank", "PairGenerator", "GeneratedPairs", "VelocityBatch",
           "integrate", "angular_error_deg", "real_pairs"]

Range = tuple[float, float]


@dataclass(frozen=True)
class PairGenConfig:
    """How pairs are drawn (every ``(lo, hi)`` is drawn uniformly per pair).

    Attributes
    ----------
    small_warp_fraction : share of pairs whose largest non-linear displacement is drawn from
        ``small_displacement_deg`` (real residuals after rigid alignment: median ~1.3 deg,
        p95 ~4.5 deg); the rest from ``max_displacement_deg``.
    small_displacement_deg, max_displacement_deg : deg of arc.
    frequency_range : wavenumbers of the warp potentials (~ spherical-harmonic degree).
    n_components : plane waves per potential.
    slope : component displacement ~ wavenumber ** -slope.
    rotation_max_deg : random rotation angle bound (uniform axis).
    steps : RK4 steps of the flow (each step moves at most max displacement / steps).
    sharpen : strength ``a`` of the unsharp mask ``x + a (x - smooth(x))``.
    sharpen_iterations : smoothing iterations (``x += 0.5 lap x`` on the data icosphere) of it.
    detail_sd : SD of the fine-scale noise, in channel SDs.
    detail_iterations : smoothing iterations of that noise (its correlation length grows as
        the square root, in data-icosphere edges).
    gain_sd, bias_sd, contrast_sd, noise_sd : intensity changes as in
        :func:`geomorph_bids.engine.synth.augment_intensity` (log gain SD; bias and white noise
        in channel SDs; local contrast ``asinh(c z) / c``).
    intensity_frequency_range : wavenumbers of the gain, bias and contrast fields.
    """

    small_warp_fraction: float = 0.5
    small_displacement_deg: Range = (0.3, 4.0)
    max_displacement_deg: Range = (4.0, 10.0)
    frequency_range: Range = (1.5, 10.0)
    n_components: int = 32
    slope: float = 1.0
    rotation_max_deg: float = 3.0
    steps: int = 4
    sharpen: Range = (0.0, 1.0)
    sharpen_iterations: int = 4
    detail_sd: Range = (0.0, 0.4)
    detail_iterations: int = 3
    gain_sd: Range = (0.0, 0.15)
    bias_sd: Range = (0.0, 0.15)
    contrast_sd: Range = (0.0, 0.3)
    noise_sd: Range = (0.0, 0.1)
    intensity_frequency_range: Range = (1.0, 4.0)

    def __post_init__(self) -> None:
        for f, value in asdict(self).items():
            if isinstance(value, (tuple, list)):
                lo, hi = (float(v) for v in value)
                if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi):
                    raise ValueError(f"PairGenConfig.{f} must be a (lo, hi) range with 0 <= lo <= hi, got {value}")
                object.__setattr__(self, f, (lo, hi))
        if not 0 <= self.small_warp_fraction <= 1:
            raise ValueError("small_warp_fraction must be in [0, 1]")
        if self.max_displacement_deg[1] > 40:
            raise ValueError("max_displacement_deg above 40 deg is beyond any label grid")
        if self.n_components < 1 or self.steps < 1 or self.sharpen_iterations < 0 or self.detail_iterations < 0:
            raise ValueError("n_components and steps must be >= 1, iterations >= 0")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (recorded in checkpoints)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PairGenConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError."""
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown PairGenConfig keys: {sorted(unknown)}")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


@dataclass(frozen=True, eq=False)
class SourceBank:
    """Real maps in the template's space, on the data icosphere.

    Attributes
    ----------
    maps : (S, V, K) float32, each source's K channels (template sign conventions; exact 0 =
        no data, e.g. a medial wall).
    names : S source names.
    fixed : (V, K) float32, the template's own maps (the fixed image).
    channels : K channel names.
    template : template name; ``weights``: (S,) sampling weights (default equal).
    teachers : optional (S, V, 3) float32 pull-back warps (unit sphere), one per source: where
        each source's point matches the template's vertex x by a teacher registration (the
        per-pair optimiser, ``scripts/build_training_sources.py --teachers``). None: a source is
        taken as aligned with the template (its reference registration, the identity here).
    """

    maps: Tensor
    names: tuple[str, ...]
    fixed: Tensor
    channels: tuple[str, ...]
    template: str
    weights: tuple[float, ...] = field(default=())
    teachers: Tensor | None = None

    def __post_init__(self) -> None:
        if self.maps.dim() != 3 or self.maps.shape[1:] != self.fixed.shape:
            raise ValueError(f"maps must be (S, V, K) and fixed (V, K); got {tuple(self.maps.shape)} "
                             f"and {tuple(self.fixed.shape)}")
        if len(self.names) != len(self.maps) or len(self.channels) != self.fixed.shape[1]:
            raise ValueError("SourceBank: one name per source and one channel name per channel")
        if not self.weights:
            object.__setattr__(self, "weights", (1.0,) * len(self.names))
        if len(self.weights) != len(self.names) or min(self.weights) < 0 or sum(self.weights) <= 0:
            raise ValueError("SourceBank: one non-negative weight per source, not all zero")
        if self.teachers is not None and tuple(self.teachers.shape) != (*self.maps.shape[:2], 3):
            raise ValueError(f"SourceBank: teachers must be (S, V, 3) = {(*self.maps.shape[:2], 3)}, "
                             f"got {tuple(self.teachers.shape)}")

    @property
    def level(self) -> int:
        """Icosphere level of the maps."""
        from ..sphere.icosphere import level_of

        return level_of(self.fixed.shape[0])

    def at_level(self, level: int) -> "SourceBank":
        """The bank on a coarser icosphere: the first ``n_vertices(level)`` vertices of each map
        (the hierarchy is nested), as ``register()`` feeds a model whose data level is below 6."""
        if level > self.level:
            raise ValueError(f"cannot refine a level-{self.level} bank to level {level}")
        n = n_vertices(level)
        teachers = None if self.teachers is None else self.teachers[:, :n].contiguous()
        return SourceBank(self.maps[:, :n].contiguous(), self.names, self.fixed[:n].contiguous(), self.channels,
                          self.template, self.weights, teachers)

    def select(self, names: Sequence[str]) -> "SourceBank":
        """The bank restricted to ``names`` (in that order); unknown names raise ValueError."""
        missing = [n for n in names if n not in self.names]
        if missing:
            raise ValueError(f"unknown sources {missing}; the bank has {list(self.names)}")
        idx = [self.names.index(n) for n in names]
        return SourceBank(self.maps[idx], tuple(names), self.fixed, self.channels, self.template,
                          tuple(self.weights[i] for i in idx), None if self.teachers is None else self.teachers[idx])

    @classmethod
    def from_npz(cls, path: str, template: str, channels: Sequence[str], names: Sequence[str] | None = None,
                 weights: Sequence[float] | None = None, teachers: bool = False) -> "SourceBank":
        """Load a bank written by ``scripts/build_training_sources.py``.

        The file holds ``{template}/fixed/{channel}`` and ``{template}/{source}/{channel}``
        arrays of shape (V,). ``names`` picks sources (default: every source of the template
        that has all ``channels``). ``teachers``: also load ``{template}/{source}/teacher``
        ((V, 3) warps, ``--teachers``); a source without one is an error.
        """
        with np.load(path) as z:
            keys = set(z.files)
            prefix = f"{template}/"
            all_sources = sorted({k.split("/")[1] for k in keys if k.startswith(prefix)} - {"fixed"})
            if names is None:
                names = [s for s in all_sources if all(f"{prefix}{s}/{c}" in keys for c in channels)]
            missing = [f"{prefix}{s}/{c}" for s in ["fixed", *names] for c in channels
                       if f"{prefix}{s}/{c}" not in keys]
            if teachers:
                missing += [f"{prefix}{s}/teacher" for s in names if f"{prefix}{s}/teacher" not in keys]
            if missing:
                how = (" (teacher warps: build the bank with "
                       "the source repository's scripts/build_training_sources.py --teachers)"
                       if any(m.endswith("/teacher") for m in missing) else "")
                raise ValueError(f"{path}: missing arrays {missing[:4]}{' ...' if len(missing) > 4 else ''}{how}")
            fixed = np.stack([z[f"{prefix}fixed/{c}"] for c in channels], axis=1)
            maps = np.stack([np.stack([z[f"{prefix}{s}/{c}"] for c in channels], axis=1) for s in names])
            warps = np.stack([z[f"{prefix}{s}/teacher"] for s in names]) if teachers else None
        return cls(torch.as_tensor(maps, dtype=torch.float32), tuple(names),
                   torch.as_tensor(fixed, dtype=torch.float32), tuple(channels), template,
                   tuple(weights) if weights is not None else (),
                   None if warps is None else torch.as_tensor(warps, dtype=torch.float32))


# ---------------------------------------------------------------------------------------------
# random fields and warps


def _masked_mean_sd(x: Tensor, vf: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample, per-channel mean and SD (floored at 1e-6) of ``x`` (B, V, K) over the vertices
    where ``vf`` ((B, V, 1) or (B, V, K)) is 1: two (B, K) tensors."""
    n = vf.sum(1).clamp_min(1.0)
    mean = (x * vf).sum(1) / n
    return mean, torch.sqrt((((x - mean[:, None]) * vf) ** 2).sum(1) / n).clamp_min(1e-6)


def _uniform(lo_hi: Range, shape: Sequence[int], device: torch.device) -> Tensor:
    lo, hi = lo_hi
    return lo + (hi - lo) * torch.rand(tuple(shape), device=device)


def _log_uniform(lo_hi: Range, shape: Sequence[int], device: torch.device) -> Tensor:
    lo, hi = math.log(max(lo_hi[0], 1e-6)), math.log(max(lo_hi[1], 1e-6))
    return torch.exp(lo + (hi - lo) * torch.rand(tuple(shape), device=device))


def _directions(shape: Sequence[int], device: torch.device) -> Tensor:
    return normalise(torch.randn(*shape, 3, device=device))


@dataclass
class _Potentials:
    """Random plane-wave potentials ``sum_k a_k cos(w_k . x + b_k)``, one set per batch item."""

    w: Tensor       # (B, M, 3) wave vectors
    a: Tensor       # (B, M) amplitudes
    b: Tensor       # (B, M) phases

    def gradient(self, x: Tensor) -> Tensor:
        """Tangent gradient at points (B, N, 3) on the unit sphere -> (B, N, 3)."""
        d = torch.einsum("bnd,bmd->bnm", x, self.w) + self.b[:, None, :]
        s = -torch.sin(d) * self.a[:, None, :]
        g = torch.einsum("bnm,bmd->bnd", s, self.w)
        return g - (g * x).sum(-1, keepdim=True) * x

    def value(self, x: Tensor) -> Tensor:
        """Values at points (B, N, 3) -> (B, N)."""
        d = torch.einsum("bnd,bmd->bnm", x, self.w) + self.b[:, None, :]
        return (torch.cos(d) * self.a[:, None, :]).sum(-1)


def _potentials(batch: int, n: int, frequency_range: Range, slope: float, device: torch.device) -> _Potentials:
    f = _log_uniform(frequency_range, (batch, n), device)
    w = _directions((batch, n), device) * f[..., None]
    a = torch.randn(batch, n, device=device) * f ** -(1.0 + slope)
    b = 2 * math.pi * torch.rand(batch, n, device=device)
    return _Potentials(w, a, b)


@dataclass
class VelocityBatch:
    """A batch of stationary tangent velocity fields ``v = grad P + x cross grad Q`` (unit sphere).

    ``v(x)`` for points (B, N, 3) -> (B, N, 3); ``scale`` (B,) multiplies each item's field.
    """

    p: _Potentials
    q: _Potentials
    scale: Tensor

    @classmethod
    def draw(cls, batch: int, config: PairGenConfig, device: torch.device) -> "VelocityBatch":
        """Random fields with unit scale (:func:`_calibrate` sets the displacement)."""
        curl = torch.rand(batch, device=device)
        p = _potentials(batch, config.n_components, config.frequency_range, config.slope, device)
        q = _potentials(batch, config.n_components, config.frequency_range, config.slope, device)
        p.a = p.a * torch.sqrt(1 - curl)[:, None]
        q.a = q.a * torch.sqrt(curl)[:, None]
        return cls(p, q, torch.ones(batch, device=device))

    def __call__(self, x: Tensor) -> Tensor:
        x = normalise(x)
        return (self.p.gradient(x) + torch.cross(x, self.q.gradient(x), dim=-1)) * self.scale[:, None, None]


def integrate(field: VelocityBatch, x: Tensor, steps: int, sign: float = 1.0) -> Tensor:
    """Flow points (B, N, 3) along ``sign * field`` for time 1 (RK4, ``steps`` steps, points
    renormalised onto the unit sphere after each step) -> (B, N, 3) unit."""
    h = sign / steps
    x = normalise(x)
    for _ in range(steps):
        k1 = field(x)
        k2 = field(x + 0.5 * h * k1)
        k3 = field(x + 0.5 * h * k2)
        k4 = field(x + h * k3)
        x = normalise(x + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4))
    return x


def angular_error_deg(a: Tensor, b: Tensor) -> Tensor:
    """Angle between (..., 3) directions, in degrees (``atan2(|a x b|, a . b)``)."""
    return torch.rad2deg(torch.atan2(torch.linalg.norm(torch.cross(a, b, dim=-1), dim=-1), (a * b).sum(-1)))


def _calibrate(field: VelocityBatch, target_deg: Tensor, points: Tensor, steps: int, rounds: int = 2) -> None:
    """Rescale each item's field so its flow's largest displacement over ``points`` is ``target_deg``."""
    for _ in range(rounds):
        moved = integrate(field, points, steps)
        got = angular_error_deg(moved, points).amax(-1).clamp_min(1e-6)
        field.scale = field.scale * (target_deg / got)


def _rotations(batch: int, max_deg: float, device: torch.device) -> Tensor:
    """(B, 3, 3) rotations about uniform axes by angles uniform in [0, max_deg] (Rodrigues)."""
    axis = _directions((batch,), device)
    angle = torch.deg2rad(max_deg * torch.rand(batch, device=device))
    k = torch.zeros(batch, 3, 3, device=device)
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k = k - k.transpose(1, 2)
    s, c = torch.sin(angle)[:, None, None], torch.cos(angle)[:, None, None]
    return torch.eye(3, device=device) + s * k + (1 - c) * (k @ k)


def _smooth(x: Tensor, iterations: int, level: int) -> Tensor:
    for _ in range(iterations):
        x = x + 0.5 * hex_laplacian(x, level)
    return x


def _smooth_fields(points: Tensor, batch: int, channels: int, frequency_range: Range, sd: Tensor,
                   device: torch.device, n: int = 16) -> Tensor:
    """(B, V, K) smooth random fields with zero mean and SD ``sd`` (B, K) over the points (V, 3)."""
    pot = _potentials(batch * channels, n, frequency_range, 1.0, device)
    x = points[None].expand(batch * channels, -1, -1)
    v = pot.value(x).reshape(batch, channels, -1).transpose(1, 2)          # (B, V, K)
    v = v - v.mean(1, keepdim=True)
    return v / v.std(1, keepdim=True).clamp_min(1e-12) * sd[:, None, :]


# ---------------------------------------------------------------------------------------------
# the generator


class PairGenerator:
    """Draw batches of ``(moving, fixed, target)`` from a :class:`SourceBank` (see module doc).

    Parameters
    ----------
    bank : the sources and the fixed template (data icosphere level 3..6).
    config : :class:`PairGenConfig`.
    normalisation : the model's input normalisation (applied to moving and fixed).
    device : where the pairs are made and returned.
    """

    def __init__(self, bank: SourceBank, config: PairGenConfig | None = None,
                 normalisation: NormalisationSpec | None = None, device: str | torch.device = "cpu") -> None:
        self.bank = bank
        self.config = config or PairGenConfig()
        self.spec = normalisation or NormalisationSpec()
        self.device = torch.device(device)
        self.level = bank.level
        v, _ = icosphere(self.level)
        self.grid = torch.as_tensor(v / np.linalg.norm(v, axis=1, keepdims=True), dtype=torch.float32,
                                    device=self.device)
        cal, _ = icosphere(min(3, self.level))
        self.calibration = torch.as_tensor(cal / 100.0, dtype=torch.float32, device=self.device)
        self.maps = bank.maps.to(self.device)
        self.valid = self.maps != 0
        self.probs = torch.as_tensor(bank.weights, dtype=torch.float32, device=self.device)
        self.teachers = None if bank.teachers is None else bank.teachers.to(self.device)
        fixed = bank.fixed.to(self.device)
        self.fixed = self.spec(fixed, channel_names=list(bank.channels))[0]     # (V, K)
        self.sampler = ico_sampler(self.level)

    def warp(self, batch: int, start: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Random warps: ``(forward (B, V, 3) = phi(start), inverse (B, V, 3) = phi^-1(x))`` at the
        data-icosphere vertices x, unit sphere; ``start`` (B, V, 3) unit-sphere points (default
        x itself): the forward warp composed after them (a source's teacher warp)."""
        cfg, dev = self.config, self.device
        small = torch.rand(batch, device=dev) < cfg.small_warp_fraction
        target = torch.where(small, _uniform(cfg.small_displacement_deg, (batch,), dev),
                             _uniform(cfg.max_displacement_deg, (batch,), dev))
        field = VelocityBatch.draw(batch, cfg, dev)
        _calibrate(field, target, self.calibration[None].expand(batch, -1, -1), cfg.steps)
        x = self.grid[None].expand(batch, -1, -1)
        rot = _rotations(batch, cfg.rotation_max_deg, dev)
        forward = integrate(field, x if start is None else start, cfg.steps) @ rot.transpose(1, 2)  # R exp(v)
        inverse = integrate(field, x @ rot, cfg.steps, sign=-1.0)                # exp(-v)(R^T x)
        return forward, inverse

    def augment(self, source: Tensor, valid: Tensor) -> Tensor:
        """Individual-like detail on sources (B, V, K): unsharp mask and fine-scale noise."""
        cfg, dev = self.config, self.device
        B, _, K = source.shape
        vf = valid.to(source.dtype)
        _, sd = _masked_mean_sd(source, vf)                                                  # (B, K)
        a = _uniform(cfg.sharpen, (B, 1, K), dev)
        x = source + a * (source - _smooth(source, cfg.sharpen_iterations, self.level))
        noise = _smooth(torch.randn_like(source), cfg.detail_iterations, self.level)
        noise = noise / noise.std(1, keepdim=True).clamp_min(1e-12)
        x = x + noise * (_uniform(cfg.detail_sd, (B, 1, K), dev) * sd[:, None])
        return x * vf

    def intensity(self, x: Tensor, valid: Tensor) -> Tensor:
        """Smooth gain, bias, local contrast and white noise on moving images (B, V, K)."""
        cfg, dev = self.config, self.device
        B, _, K = x.shape
        vf = valid.to(x.dtype)
        m, s = _masked_mean_sd(x, vf)
        z = (x - m[:, None]) / s[:, None]

        def field(sd_range: Range) -> Tensor:
            return _smooth_fields(self.grid, B, K, cfg.intensity_frequency_range,
                                  _uniform(sd_range, (B, K), dev), dev)

        c = field(cfg.contrast_sd)
        small = c.abs() < 1e-4
        safe = torch.where(small, torch.ones_like(c), c)
        hz = torch.where(small, z, torch.where(c > 0, torch.asinh(safe * z) / safe,
                                                torch.sinh(safe.abs() * z.clamp(-4, 4)) / safe.abs()))
        gain = torch.exp(field(cfg.gain_sd))
        noise = torch.randn_like(x) * _uniform(cfg.noise_sd, (B, 1, K), dev)
        out = gain * (m[:, None] + s[:, None] * hz) + s[:, None] * (field(cfg.bias_sd) + noise)
        return out * vf

    @torch.no_grad()
    def draw(self, batch: int) -> tuple[Tensor, Tensor, Tensor]:
        """One batch: ``moving (B, V, K)``, ``fixed (B, V, K)`` (normalised) and the true
        pull-back warp ``target (B, V, 3)`` (unit sphere), all on the generator's device. With
        teacher warps ``psi`` in the bank the target is ``phi(psi(x))``: the source registered to
        the template by its teacher, then moved by the random warp."""
        idx = torch.multinomial(self.probs, batch, replacement=True)
        src, valid = self.maps[idx], self.valid[idx]
        src = self.augment(src, valid)
        forward, inverse = self.warp(batch, None if self.teachers is None else self.teachers[idx])
        moving = self.sampler(src, inverse)
        mvalid = self.sampler(valid.to(src.dtype), inverse) > 0.5
        moving = self.intensity(moving, mvalid)
        moving = self.spec(moving, channel_names=list(self.bank.channels))[0]
        fixed = self.fixed[None].expand(batch, -1, -1)
        return moving.float(), fixed.float(), forward.float()

    def materialise(self, n: int, batch: int = 8, names_prefix: str = "gen") -> PairSet:
        """``n`` drawn pairs as a :class:`PairSet` with targets (e.g. a fixed validation set;
        seed torch first for reproducibility)."""
        movs, tgts = [], []
        for start in range(0, n, batch):
            m, _, t = self.draw(min(batch, n - start))
            movs.append(m.cpu())
            tgts.append(t.cpu())
        return PairSet(torch.cat(movs), self.fixed.float().cpu(), self.bank.channels,
                       tuple(f"{names_prefix}-{i:04d}" for i in range(n)), self.bank.template, "LR-mirrored",
                       f"{n} generated pairs from {', '.join(self.bank.names)}", target=torch.cat(tgts))


class GeneratedPairs:
    """An endless training set for :func:`~geomorph_bids.engine.train.train`: ``len`` pairs per
    epoch, each batch freshly drawn by a :class:`PairGenerator` (the indices only set the
    batch size)."""

    def __init__(self, generator: PairGenerator, pairs_per_epoch: int, hemisphere: str = "LR-mirrored",
                 description: str = "") -> None:
        if pairs_per_epoch < 1:
            raise ValueError("pairs_per_epoch must be >= 1")
        self.generator = generator
        self.n = int(pairs_per_epoch)
        self.channels = generator.bank.channels
        self.template = generator.bank.template
        self.hemisphere = hemisphere
        self.fixed = generator.fixed
        self.level = generator.level
        self.description = description or (f"pairs generated on the fly from {len(generator.bank.names)} "
                                           f"sources ({', '.join(generator.bank.names)})")

    def __len__(self) -> int:
        return self.n

    def batch_with_target(self, index: Sequence[int] | np.ndarray) -> tuple[Tensor, Tensor, Tensor]:
        """A fresh batch of ``len(index)`` pairs: ``(moving, fixed, target)``."""
        return self.generator.draw(len(index))

    def batch(self, index: Sequence[int] | np.ndarray) -> tuple[Tensor, Tensor]:
        """A fresh batch without its target."""
        return self.generator.draw(len(index))[:2]


def real_pairs(path: str, template: str, channels: Sequence[str],
               normalisation: NormalisationSpec | None = None, level: int = 6) -> PairSet | None:
    """The real validation pairs of a bank (``eval/{pair}/...``, see
    ``scripts/build_training_sources.py``) registered to ``template`` that have every channel:
    rigidly pre-aligned moving features on ico-6 (normalised) and the reference pull-back warp
    as ``target``; None when there are none. Pair names are in ``names``. ``level`` < 6 keeps
    the first ``n_vertices(level)`` vertices (nested icospheres), as ``register()`` feeds such
    models."""
    spec = normalisation or NormalisationSpec()
    with np.load(path) as z:
        pairs = sorted({k.split("/")[1] for k in z.files if k.startswith("eval/")})
        pairs = [p for p in pairs if str(z[f"eval/{p}/template"]) == template
                 and all(f"eval/{p}/moving/{c}" in z.files for c in channels)]
        if not pairs:
            return None
        fixed = np.stack([z[f"{template}/fixed/{c}"] for c in channels], axis=1)
        mov = np.stack([np.stack([z[f"eval/{p}/moving/{c}"] for c in channels], axis=1) for p in pairs])
        target = np.stack([z[f"eval/{p}/target"] for p in pairs])
    n = n_vertices(level)
    fixed, mov, target = fixed[:n], mov[:, :n], target[:, :n]
    mov_t = spec(torch.as_tensor(mov, dtype=torch.float32), channel_names=list(channels))[0]
    fix_t = spec(torch.as_tensor(fixed, dtype=torch.float32), channel_names=list(channels))[0]
    return PairSet(mov_t, fix_t, tuple(channels), tuple(pairs), template, "LR-mirrored",
                   f"real pairs of {path}", target=torch.as_tensor(target, dtype=torch.float32))

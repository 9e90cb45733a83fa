"""Pair-wise (instance) optimisation of a GeoMorph warp: coarse-to-fine control-point descent.

GeoMorph's warp model is a cascade of control grids (ico-2 .. ico-5) whose deformed control
points are upsampled to a dense pull-back warp on the data icosphere
(:func:`~geomorph_bids.model.warp.upsample_displacement`) and composed stage after stage
(:func:`~geomorph_bids.model.geomorph.compose_warps`). The network predicts those control
points in one pass; this module finds them for one pair by gradient descent instead, so that
registration works (and can be checked) without trained weights, and so that a network's
output can be refined (pass ``init``).

Per stage ``i`` (control level ``c``, data level ``d``):

* both images are smoothed on ico-6 by ``smoothing[i]`` umbrella-Laplacian iterations
  (``x += 0.5 * lap(x)``; a wide capture range first, detail last) and compared on the first
  ``n_vertices(d)`` template vertices (the icospheres are nested), with the moving image
  always sampled from the ORIGINAL moving grid through the composed warp;
* free offsets of the ico-``c`` control points (unit sphere) are optimised with Adam for
  ``steps[i]`` steps (learning rate decayed on a cosine to 5 %; the lowest-loss iterate is
  kept) on ``sum_g w_g (1 - CC_g) + lam * mean |lap(displacement)|^2 / h^2
  + fold * mean relu(0.2 - det / det0) + areal * mean log(det / det0)^2``: ``h = 2^-c`` is the
  grid spacing (so ``lam`` means the same at every level), the fold term keeps every control
  triangle at >= 20 % of its signed area (no folds), and the optional areal term (0 by default)
  penalises the control triangles' change of area (less areal distortion, as MSM's strain);
* the stage's dense warp is composed onto the previous stages' warp (on ico-6).

All tensors are float32 on the chosen device; the result is float64 on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np
import torch
from scipy import sparse
from torch import Tensor

from ..sphere.icosphere import icosphere, level_of, n_vertices
from .adam import Adam
from .cache import cached_tables
from .determinism import deterministic_cpu_threads
from .geoconv import hex_laplacian, hex_tables
from .geomorph import compose_warps
from .keys import check_keys
from .labels import normalise
from .losses import signed_areas as _signed_area
from .stage_loss import StageLoss, corner_tables, from_components
from .warp import SphereSampler, _parents, ico_sampler, upsample_displacement

__all__ = ["OptimiseConfig", "REFINEMENT", "FROM_NETWORK", "optimise_warp", "smooth_on_ico"]

DATA_LEVEL = 6


@dataclass(frozen=True)
class OptimiseConfig:
    """Schedule of :func:`optimise_warp` (one entry per stage in each tuple).

    Attributes
    ----------
    control_levels : icosphere level of each stage's control grid (coarse to fine, 0..5).
    data_levels : icosphere level (<= 6) on which each stage compares the images.
    steps : Adam steps per stage.
    smoothing : umbrella-Laplacian smoothing iterations of both images per stage (on ico-6).
    lam : weight of the control-grid bending term (dimensionless, see the module docstring).
    fold : weight of the control-triangle area barrier.
    lr : Adam learning rate (unit-sphere units; 0.01 ~ 0.6 degrees per step).
    relocate_every : the triangles containing the warped points are looked up every this many
        steps and reused in between (barycentric weights are always recomputed; a point that
        left its triangle is extrapolated linearly until the next look-up).
    channel_weights : per-channel weights of ``1 - CC`` (None: equal, summing to 1).
    bend_total : the bending term measures the displacement of the whole warp so far (an
        ``init`` warp, e.g. a network's, composed with the stage's) at the control points,
        instead of the stage's own offsets: a refinement then also smooths what it started
        from, rather than only adding to it.
    areal : weight of ``mean log(det / det0)^2`` over the stage's control triangles (their
        change of area; dimensionless; 0: off, the default). With ``lam=10``, 1.0 lowered an
        individual's areal distortion by a tenth at the same correlation with the template, and
        moved the pairs whose reference answer itself changes area most further from it
        (docs/registration.md, "Areal distortion").
    start_lowpass : when the schedule starts from a network's warp (``register(model=...,
        optimise=config)``): that warp is low-passed over this many times the iterations the
        network's warp alone gets (:func:`~geomorph_bids.engine.warp_geometry.network_smoothing`;
        the filter's width grows as the square root), so that only its large-scale correction is
        kept and the optimiser fits the detail. 1: the network's warp as it is used alone (all
        the forward passes its checkpoint asks for, ``config["inference"]["passes"]``); more
        than 1: one forward pass, low-passed that many times. Ignored without a network.
    """

    control_levels: tuple[int, ...] = (2, 3, 4)
    data_levels: tuple[int, ...] = (4, 5, 5)
    steps: tuple[int, ...] = (60, 60, 60)
    smoothing: tuple[int, ...] = (30, 10, 3)
    lam: float = 16.0
    fold: float = 10.0
    lr: float = 0.01
    relocate_every: int = 10
    channel_weights: tuple[float, ...] | None = None
    bend_total: bool = False
    areal: float = 0.0
    start_lowpass: int = 1

    def __post_init__(self) -> None:
        n = len(self.control_levels)
        if n == 0:
            raise ValueError("OptimiseConfig needs at least one stage")
        for name in ("data_levels", "steps", "smoothing"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"OptimiseConfig.{name} must have {n} entries (one per stage), "
                                 f"got {len(getattr(self, name))}")
        for c, d in zip(self.control_levels, self.data_levels):
            if not 0 <= c <= d <= DATA_LEVEL:
                raise ValueError(f"need 0 <= control level ({c}) <= data level ({d}) <= {DATA_LEVEL}")
        if any(s < 0 for s in self.steps) or any(s < 0 for s in self.smoothing):
            raise ValueError("steps and smoothing must be >= 0")
        if self.lam < 0 or self.fold < 0 or self.areal < 0 or self.lr <= 0 or self.relocate_every < 1:
            raise ValueError("lam, fold and areal must be >= 0, lr > 0 and relocate_every >= 1")
        if isinstance(self.start_lowpass, bool) or not isinstance(self.start_lowpass, int) or self.start_lowpass < 1:
            raise ValueError(f"start_lowpass must be a whole number >= 1, got {self.start_lowpass!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (lists for tuples)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "OptimiseConfig":
        """Inverse of :meth:`to_dict` (unknown keys are refused)."""
        check_keys(d, list(cls.__dataclass_fields__), "OptimiseConfig")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


#: The short refinement after a network (what ``optimise=True`` means with a model): one ico-4
#: control stage compared on ico-5, 30 steps, bending measured on the whole warp so that the
#: network's warp is smoothed as well as refined. On the held-out real pair (fsaverage5 right
#: mirrored -> fsaverage) it took an early correlation-head network from 1.75 to 1.66 deg median
#: error and mean |log2 areal| 0.17 -> 0.10 in a third of the optimiser's steps (optimiser alone
#: 1.64 deg, 0.08); docs/models.md has the figures of the bundled networks.
REFINEMENT = OptimiseConfig(control_levels=(4,), data_levels=(5,), steps=(30,), smoothing=(3,), bend_total=True)

#: The full optimiser's schedule started from a network's warp, low-passed 8 times more than the
#: network's warp alone (``start_lowpass``, a filter ~2.8x as wide): the network's large-scale
#: correction, then the optimiser for the detail (``--refine full``). With ``sulc-fsaverage``
#: (2026-12-06, docs/models.md "The network as the optimiser's starting point"): closer than the
#: optimiser on the same feature (sulc) on every fsaverage pair (FreeSurfer's fsaverage under known warps 0.611 / 0.474
#: -> 0.501 / 0.393 deg, Spherical Demons 0.529 / 0.408; held-out fsaverage5 right mirrored
#: 1.640 -> 1.577; refsulc right mirrored 1.131 -> 1.123), an individual's correlation with the
#: template 0.869 -> 0.872 at p95 |log2 areal| 0.90 -> 0.94, for one forward pass more.
FROM_NETWORK = OptimiseConfig(start_lowpass=8)


@dataclass
class OptimiseResult:
    """Output of :func:`optimise_warp`.

    Attributes
    ----------
    warp : (40962, 3) float64 pull-back warp on ico-6, unit sphere ((B, 40962, 3) for a batch).
    history : per stage, the loss before the first and after the last step (batch means).
    """

    warp: np.ndarray
    history: list[dict[str, float]] = field(default_factory=list)


def smooth_on_ico(x: Tensor, iterations: int, level: int = DATA_LEVEL) -> Tensor:
    """``iterations`` steps of ``x += 0.5 * lap(x)`` on ico-``level``; x (B, V, C) -> same shape.

    On the CPU, where no gradient is needed, each step is one sparse matrix product (scipy's CSR:
    4x torch's gather and weighted sum of the one-rings at ico-6); the same up to float rounding.
    The steps update one copy in place (the same bits as ``y + 0.5 * (ring @ y - y)``, 1.1x)."""
    if iterations and x.device.type == "cpu" and not (x.requires_grad and torch.is_grad_enabled()):
        B, V, C = x.shape
        ring = _ring_matrix(level, x.dtype)
        y = np.array(x.detach().permute(1, 0, 2).reshape(V, B * C).numpy())  # a copy: updated in place
        half = y.dtype.type(0.5)
        for _ in range(iterations):
            step = ring @ y
            step -= y
            step *= half
            y += step
        return torch.from_numpy(y).reshape(V, B, C).permute(1, 0, 2)
    for _ in range(iterations):
        x = x + 0.5 * hex_laplacian(x, level)
    return x


@cached_tables(maxsize=None)
def _ring_matrix(level: int, dtype: torch.dtype) -> sparse.csr_matrix:
    """(V, V) CSR matrix of ico-``level``'s one-ring means (``1 / |ring(v)|`` at (v, u) for the
    neighbours u of v) in ``dtype``'s numpy type (cached; read-only use)."""
    index, mask, _ = hex_tables(level)
    valid = mask[:, 1:].numpy() != 0
    weight = (valid / valid.sum(1, keepdims=True)).astype(torch.empty(0, dtype=dtype).numpy().dtype)
    rows = np.broadcast_to(np.arange(len(valid))[:, None], valid.shape)
    return sparse.csr_matrix((weight[valid], (rows[valid], index[:, 1:].numpy()[valid])),
                             shape=(len(valid), len(valid)))


def _smoothing_series(x: Tensor, iterations: Sequence[int], level: int = DATA_LEVEL) -> dict[int, Tensor]:
    """``{n: smooth_on_ico(x, n, level)}`` for every n in ``iterations``, in one pass of
    ``max(iterations)`` smoothing steps (the same values: the smaller counts are its stops)."""
    out: dict[int, Tensor] = {}
    done = 0
    for n in sorted(set(iterations)):
        x = smooth_on_ico(x, n - done, level)
        out[n], done = x, n
    return out


def _locate_nested(sampler: SphereSampler, dense: Tensor, level: int, hint: Tensor | None) -> Tensor:
    """(B, V) faces of the sampler's icosphere holding a dense warp's points ``dense`` (B, V, 3),
    upsampled from ico-``level`` (:func:`upsample_displacement`): the first ``n_vertices(level)``
    start from ``hint`` (where they were, e.g. at the last look-up), each finer level's points
    from their first parent's face (half an edge of that level away)."""
    faces = sampler.locate(dense[:, :n_vertices(level)], hint=hint)
    for fine in range(level + 1, level_of(dense.shape[1]) + 1):
        parent = faces[:, _parents(fine)[:, 0].to(faces.device)]
        faces = torch.cat([faces, sampler.locate(dense[:, n_vertices(fine - 1):n_vertices(fine)], hint=parent)], 1)
    return faces


class _WrittenStage:
    """One stage's loss over its control offsets for :func:`_optimise`'s Adam loop, through
    :class:`~geomorph_bids.model.stage_loss.StageLoss` (no autograd).

    ``offset``: the optimised (3, B, Nc) tensor, component-first (zeros at the start). Calling
    the stage at ``step`` returns the (B,) losses at the current offsets and their gradient (None
    with ``grad=False``), looking the points' triangles up again every ``relocate_every`` steps
    (``located``: the last look-up). ``total``: the warp so far (B, 40962, 3), for the whole-warp
    bending (``bend_total``); None: the stage's own offsets are bent. :meth:`per_pair` broadcasts
    a (B,) flag over ``offset``; :meth:`control_points` is the (B, Nc, 3) unit control grid the
    current offsets make."""

    def __init__(self, cfg: OptimiseConfig, sampler: SphereSampler, image: Tensor, fixed: Tensor, mask: Tensor,
                 weights: Tensor, base: Tensor, faces: Tensor, area0: Tensor, c: int, d: int, *,
                 total: Tensor | None = None) -> None:
        self.sampler, self.image, self.relocate_every, self.total = sampler, image, cfg.relocate_every, total
        self.base, self.c, self.d = base, c, d
        self.loss = StageLoss(base, faces, area0, c, d, fixed, mask, weights, cfg.lam, cfg.fold, cfg.areal)
        self.offset = torch.zeros((3, image.shape[0], base.shape[1]), dtype=base.dtype, device=base.device)
        self.located: Tensor | None = None
        self._tables: tuple[Tensor, Tensor] = (torch.empty(0), torch.empty(0))
        self._bend_faces: Tensor | None = None

    def _rows(self) -> Tensor:
        """(B, Nc, 3) ``normalise(base + offset)`` as the row-major code computes it, to the bit."""
        return normalise(self.base + from_components(self.offset))

    def __call__(self, step: int, grad: bool = True) -> tuple[Tensor, Tensor | None]:
        points = self.loss.points(self.offset)
        if self.located is None:
            # a stage starts with every point on a grid vertex, where the face chosen (of those
            # around it) decides the one-sided gradient, and so the descent: the first look-up
            # takes the points as the row-major code computes them, so that rounding cannot
            # choose another face; later ones the component-first points (inside their faces)
            rows = upsample_displacement(self._rows(), self.c, self.d)
            B, nd = rows.shape[:2]
            self.located = self.sampler.locate(rows, near=torch.arange(nd, device=rows.device).expand(B, nd))
        elif step % self.relocate_every == 0:
            self.located = self.sampler.locate(from_components(points), hint=self.located)
        else:
            return self._value(grad)
        # the corners' normals and image values: once per look-up, not per step
        corners, normals = self.sampler.face_tables(self.located, points.dtype)
        self._tables = corner_tables(normals, corners, self.image)
        return self._value(grad)

    def _value(self, grad: bool) -> tuple[Tensor, Tensor | None]:
        bend = None
        if self.total is not None:
            # the ico-6 triangles holding the control points, found as a search without a hint
            # would find them (exact) and from the control points' row-major bits (see above)
            rows = self._rows()
            self._bend_faces = self.sampler.locate(rows, hint=self._bend_faces, exact=self._bend_faces is not None)
            corners, normals = self.sampler.face_tables(self._bend_faces, rows.dtype)
            bend = corner_tables(normals, corners, self.total)
        return self.loss.value_and_grad(*self._tables, grad=grad, bend=bend)

    def per_pair(self, flags: Tensor) -> Tensor:
        return flags[None, :, None]

    def control_points(self) -> Tensor:
        self.loss.points(self.offset)
        return self.loss.control_points()


@cached_tables(maxsize=None)
def _control_grid(level: int) -> tuple[Tensor, Tensor]:
    """Unit-sphere ico-``level`` vertices (V, 3) float64 and faces (F, 3) int64, CPU (cached)."""
    v, f = icosphere(level)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    return torch.from_numpy(np.array(v)), torch.from_numpy(np.array(f, dtype=np.int64))


def optimise_warp(moving: np.ndarray | Tensor, fixed: np.ndarray | Tensor,
                  config: OptimiseConfig | None = None, *, init: np.ndarray | Tensor | None = None,
                  mask: np.ndarray | Tensor | None = None, device: str | torch.device = "cpu"
                  ) -> OptimiseResult:
    """Find a smooth pull-back warp registering ``moving`` to ``fixed`` (both on ico-6).

    Parameters
    ----------
    moving, fixed : (40962, K) features on the template's ico-6 grid (moving already rigidly
        aligned and sampled there; normalised, e.g. z-scored); or a batch of B independent
        pairs, moving (B, 40962, K) and fixed (B or 1, 40962, K), optimised together (one
        vectorised descent; on the CPU each pair's warp is the bytes of its own run, a template
        given once for the batch included).
    config : the schedule (default :class:`OptimiseConfig`).
    init : optional (40962, 3) (or (B, 40962, 3)) initial pull-back warp (unit sphere), e.g. a
        network's output; the optimised stages are composed after it.
    mask : optional (40962,), (40962, K) or (B, 40962, K) bool, where ``fixed`` counts (default
        ``fixed != 0``, the templates' medial wall is 0).
    device : torch device for the computation.

    Returns
    -------
    :class:`OptimiseResult` with the (40962, 3) float64 warp ((B, 40962, 3) for a batch; unit
    sphere, CPU); its history holds batch means. Bit-identical
    across runs on the same machine and device: torch's deterministic algorithms are switched
    on for the call (the gradients' scatter-adds are otherwise summed in a varying order). On
    CPU the call uses at most one torch thread per pair. Both settings are restored afterwards.
    """
    n_pairs = (moving.shape[0] if (moving.dim() if isinstance(moving, Tensor) else np.ndim(moving)) == 3 else 1)
    # one pair's tensors are small (<= 10k points): extra CPU threads only add synchronisation,
    # and on a shared machine they make it 2-5x slower; a batch gets up to one thread per pair.
    # Both settings are the process's: shared with calls running at once in the caller's threads
    with deterministic_cpu_threads(n_pairs if torch.device(device).type == "cpu" else None):
        return _optimise(moving, fixed, config, init=init, mask=mask, device=device)


def _as_batch(x: np.ndarray | Tensor, name: str, dev: torch.device, dtype: torch.dtype | None = torch.float32
              ) -> Tensor:
    """(V,), (V, K) or (B, V, K) -> (B, V, K) tensor on ``dev``, decided once here: a big-endian
    array (``>f4`` from a file) in native order (torch refuses the other); a tensor detached (one
    that requires grad was differentiated through, 2.6e-7 off, with torch's warning); a tensor on the
    'meta' device or a masked array with masked values refused (its hidden values would be read as
    data; a masked ``mask``'s masked entries are False); maps (``dtype`` given) that are not finite
    once in that dtype (NaN, Inf, 1e300 in float32) refused (they failed in scipy's k-d tree as
    ``'x' must be finite``)."""
    if isinstance(x, Tensor):
        if x.device.type == "meta":
            raise ValueError(f"{name} is a torch tensor on the 'meta' device, which holds no values: give the "
                             "tensor with its data (e.g. on 'cpu')")
        x = x.detach()
    else:
        if isinstance(x, np.ma.MaskedArray) and np.ma.count_masked(x):
            if dtype is not None:
                raise ValueError(f"{name} is a masked array with {np.ma.count_masked(x)} masked value(s), which would "
                                 "be read as data: fill them (0 on the medial wall: values.filled(0)) or leave "
                                 "them out with mask= (False there)")
            x = np.ma.filled(x.astype(bool), False)
        x = np.asarray(x)
        x = x if x.dtype.isnative else x.astype(x.dtype.newbyteorder("="))
    t = torch.as_tensor(x, device=dev)
    t = t.to(dtype) if dtype is not None else t
    if dtype is not None and t.is_floating_point() and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} holds {bad} value(s) that are not finite in {str(dtype).removeprefix('torch.')} "
                         "(NaN, Inf, or beyond its range): give normalised maps, 0 on the medial wall "
                         "(geomorph_bids.model.normalise_features)")
    if t.dim() == 1:
        t = t[:, None]
    if t.dim() == 2:
        t = t[None]
    if t.dim() != 3:
        raise ValueError(f"{name} must be (V,), (V, K) or (B, V, K), got {tuple(t.shape)}")
    return t


def _optimise(moving: np.ndarray | Tensor, fixed: np.ndarray | Tensor,
              config: OptimiseConfig | None = None, *, init: np.ndarray | Tensor | None = None,
              mask: np.ndarray | Tensor | None = None, device: str | torch.device = "cpu"
              ) -> OptimiseResult:
    cfg = config or OptimiseConfig()
    dev = torch.device(device)
    nv = n_vertices(DATA_LEVEL)
    batched = (moving.dim() if isinstance(moving, Tensor) else np.ndim(moving)) == 3
    mov, fix = _as_batch(moving, "moving", dev), _as_batch(fixed, "fixed", dev)
    if mov.shape[1] != nv or fix.shape[1] != nv or mov.shape[2] != fix.shape[2] or \
            fix.shape[0] not in (1, mov.shape[0]):
        raise ValueError(f"moving and fixed must both be ({nv}, K) on ico-6 (or (B, {nv}, K), fixed "
                         f"(1 or B, {nv}, K)), got {tuple(mov.shape)} and {tuple(fix.shape)}")
    B, _, k = mov.shape
    # one template for the whole batch is copied per pair: an expanded (stride-0) tensor takes other
    # vectorised paths than a pair's own, and each pair's warp differed from its own run by ~2e-7
    fix = fix.expand(B, nv, k).contiguous()
    if mask is None:
        m = fix != 0
    else:
        m = _as_batch(mask, "mask", dev, dtype=None).bool()
        m = (m.expand(B, nv, k) if m.shape[0] == 1 else m.expand(-1, nv, k)).contiguous()
    w = torch.full((k,), 1.0 / k, dtype=torch.float32, device=dev) if cfg.channel_weights is None else \
        torch.as_tensor(cfg.channel_weights, dtype=torch.float32, device=dev)
    if w.shape != (k,):
        raise ValueError(f"channel_weights has {w.numel()} entries for {k} channels")

    if init is None:
        total = _control_grid(DATA_LEVEL)[0].to(device=dev, dtype=torch.float32)[None].expand(B, nv, 3)
    else:
        total = normalise(_as_batch(init, "init", dev))
        if total.shape[1:] != (nv, 3) or total.shape[0] not in (1, B):
            raise ValueError(f"init must be ({nv}, 3) or (B, {nv}, 3), got {tuple(total.shape)}")
        total = total.expand(B, nv, 3)
    sampler = ico_sampler(DATA_LEVEL)
    fixed_smoothed = _smoothing_series(fix, cfg.smoothing)
    # where total's points are (None: not located yet), or a hint for the next look-up
    total_faces: Tensor | None = None
    total_hint: Tensor | None = None
    history: list[dict[str, float]] = []
    for c, d, n_steps, iters in zip(cfg.control_levels, cfg.data_levels, cfg.steps, cfg.smoothing):
        nd = n_vertices(d)
        # the moving image as warped by the previous stages, resampled once per stage
        identity_start = init is None and not history
        if identity_start:
            current = mov
        else:
            total_faces = sampler.locate(total, hint=total_hint)
            current = sampler(mov, total, total_faces)
        cur_s = smooth_on_ico(current, iters)
        base_cpu, faces_cpu = _control_grid(c)
        base = base_cpu.to(device=dev, dtype=torch.float32)[None]
        faces = faces_cpu.to(dev)
        area0 = _signed_area(base, faces)
        stage_args = (cfg, sampler, cur_s, fixed_smoothed[iters][:, :nd], m[:, :nd], w, base, faces, area0, c, d)
        # the loss and its gradient written out (stage_loss: 2-2.5x faster than autograd's); the
        # whole-warp bending samples the warp so far at the moving control points
        descend = _WrittenStage(*stage_args, total=total if cfg.bend_total and not identity_start else None)
        offset = descend.offset
        opt = Adam([offset], lr=cfg.lr)
        first = torch.full((B,), float("nan"), dtype=torch.float32)
        best = torch.full((B,), float("inf"), dtype=torch.float32, device=dev)
        best_offset = offset.detach().clone()
        for step in range(n_steps):
            # cosine decay to 5 % of lr: Adam's steps do not shrink
            opt.lr = cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / n_steps)))
            value, offset.grad = descend(step)
            if step == 0:
                first = value.cpu()
            better = value < best  # the loss of the current offsets, before this step moves them
            best = torch.where(better, value, best)
            best_offset = torch.where(descend.per_pair(better), offset.detach(), best_offset)
            opt.step()
            offset.grad = None
        with torch.no_grad():
            last, _ = descend(0, grad=False)
            worse = last > best
            offset.copy_(torch.where(descend.per_pair(worse), best_offset, offset))
            last = torch.where(worse, best, last)
            ctrl = descend.control_points()
            located = descend.located
            dense = upsample_displacement(ctrl, c, DATA_LEVEL)
            dense_faces = _locate_nested(sampler, dense, d, located)
            if total_faces is None:  # total is the identity: the composed warp is dense itself
                total_hint = dense_faces
            else:  # total_new(x) = total(dense(x)) is near total at the corner nearest dense(x)
                corners, bary = sampler.weights(dense, dense_faces)
                nearest = corners.gather(-1, bary.argmax(-1, keepdim=True))[..., 0]
                total_hint = total_faces.gather(1, nearest)
            total = compose_warps(total, dense, DATA_LEVEL, dense_faces)
        history.append({"control_level": c, "data_level": d, "loss_first": float(first.mean()),
                        "loss_last": float(last.mean())})
    warp = total.detach().to("cpu", torch.float64).numpy()
    # on the unit sphere in float64 (float32 leaves |warp| 1e-7 off 1: 1e-5 mm on the output sphere)
    warp /= np.linalg.norm(warp, axis=-1, keepdims=True)
    return OptimiseResult(warp=warp if batched else warp[0], history=history)

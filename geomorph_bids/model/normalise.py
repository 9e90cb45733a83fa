"""Per-channel input normalisation: clip at mean +/- 3 SD, then z-score; zeros stay zero.

The method (the GeoMorph paper, Suliman et al. 2025), for each sample and each channel independently:

1. Valid vertices are those that are finite, non-zero (exact 0 marks the medial wall) and,
   when a ``mask`` is given, inside it.
2. ``mean`` and ``sd`` (population SD, ddof = 0) of the channel over its valid vertices.
3. Clip the valid values to ``[mean - c * sd, mean + c * sd]`` (``c = clip_sd = 3``): the
   clip limits come from the UNCLIPPED statistics.
4. Z-score with the statistics of the CLIPPED values (``clipped_mean``, ``clipped_sd``), so the
   output has mean exactly 0 and SD exactly 1 over the valid vertices.
5. Every other vertex (zero, non-finite, outside the mask) is exactly 0 in the output.

A channel with fewer than 2 valid vertices, or a constant one (``sd <= 1e-7 * |mean|``),
cannot be z-scored and raises ``ValueError``. Statistics are computed in float64; the output
keeps the input's floating dtype (float64 for integer input) and, for tensors, its device.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from .keys import check_keys

__all__ = ["NormalisationSpec", "NormalisationStats", "normalise_features", "METHODS"]

#: Known normalisation methods (the id recorded in checkpoints).
METHODS = ("clip3sd-zscore",)

_CONSTANT_RTOL = 1e-7  # an SD below this fraction of |mean| counts as a constant channel

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class NormalisationStats:
    """Statistics of one normalisation, each of shape ``(K,)`` or ``(B, K)`` (float64/int64).

    ``mean``/``sd``: of the valid input values; ``lo``/``hi``: the clip limits
    ``mean -/+ clip_sd * sd``; ``clipped_mean``/``clipped_sd``: of the clipped values (used to
    z-score); ``n_valid``: valid vertices; ``n_clipped``: valid vertices moved by the clip.
    """

    mean: np.ndarray
    sd: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    clipped_mean: np.ndarray
    clipped_sd: np.ndarray
    n_valid: np.ndarray
    n_clipped: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible lists."""
        return {k: np.asarray(v).tolist() for k, v in asdict(self).items()}


@dataclass(frozen=True)
class NormalisationSpec:
    """How a model's input channels are normalised (stored in checkpoints).

    ``method``: ``"clip3sd-zscore"`` (the only one; see the module docstring);
    ``clip_sd``: clip half-width in SDs of the unclipped values (3.0 in the paper);
    ``ignore_zeros``: exact zeros are the medial wall: excluded from the statistics and kept 0.
    """

    method: str = "clip3sd-zscore"
    clip_sd: float = 3.0
    ignore_zeros: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown normalisation method {self.method!r}; known: {', '.join(METHODS)}")
        if isinstance(self.clip_sd, bool) or not isinstance(self.clip_sd, numbers.Real) \
                or not np.isfinite(self.clip_sd) or self.clip_sd <= 0:
            raise ValueError(f"clip_sd must be a finite number > 0, got {self.clip_sd!r}")
        object.__setattr__(self, "clip_sd", float(self.clip_sd))
        if not isinstance(self.ignore_zeros, bool):
            raise ValueError(f"ignore_zeros must be True or False, got {self.ignore_zeros!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict (inverse: :meth:`from_dict`)."""
        return {"method": self.method, "clip_sd": self.clip_sd, "ignore_zeros": self.ignore_zeros}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "NormalisationSpec":
        """Inverse of :meth:`to_dict`; missing keys take defaults, unknown keys raise ValueError."""
        check_keys(d, ("method", "clip_sd", "ignore_zeros"), "normalisation spec")
        return cls(**dict(d))

    def __call__(self, values: ArrayT, mask: Any = None, *,
                 channel_names: Sequence[str] | None = None) -> tuple[ArrayT, NormalisationStats]:
        """Apply this spec: see :func:`normalise_features`."""
        return normalise_features(values, mask, clip_sd=self.clip_sd, ignore_zeros=self.ignore_zeros,
                                  channel_names=channel_names)


def _channel_label(k: int, n: int, names: Sequence[str] | None) -> str:
    return f"channel {names[k]!r}" if names is not None else f"channel {k} (of {n})"


def _check_stats(n_valid: np.ndarray, mean: np.ndarray, sd: np.ndarray, batched: bool,
                 names: Sequence[str] | None) -> None:
    """Raise ValueError naming the first channel that cannot be z-scored."""
    bad = (n_valid < 2) | ~(sd > _CONSTANT_RTOL * np.abs(mean))
    if not bad.any():
        return
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    k, n_k = idx[-1], n_valid.shape[-1]
    where = _channel_label(k, n_k, names) + (f" of sample {idx[0]}" if batched else "")
    n = int(n_valid[idx])
    if n < 2:
        raise ValueError(f"{where} has {n} valid (finite, non-zero, unmasked) vertices: "
                         "cannot z-score")
    raise ValueError(f"{where} is constant over its {n} non-zero vertices "
                     f"(value {float(mean[idx]):.6g}, SD {float(sd[idx]):.3g}): cannot z-score")


def _prepare_mask_np(values: np.ndarray, mask: Any) -> np.ndarray:
    m = np.asarray(mask)
    if m.dtype != bool:
        raise ValueError(f"mask must be boolean, got dtype {m.dtype}")
    try:
        return np.broadcast_to(m[..., None], values.shape)
    except ValueError:
        raise ValueError(f"mask of shape {m.shape} does not match values of shape {values.shape} "
                         "(expected (V,) or (B, V))") from None


def _normalise_np(x: np.ndarray, mask: Any, clip_sd: float, ignore_zeros: bool,
                  names: Sequence[str] | None) -> tuple[np.ndarray, NormalisationStats]:
    out_dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    x64 = x.astype(np.float64, copy=False)
    valid = np.isfinite(x64)
    if ignore_zeros:
        valid &= x64 != 0
    if mask is not None:
        valid &= _prepare_mask_np(x64, mask)
    n = valid.sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        xv = np.where(valid, x64, 0.0)
        mean = xv.sum(axis=-2) / n
        sd = np.sqrt((np.where(valid, x64 - mean[..., None, :], 0.0) ** 2).sum(axis=-2) / n)
    _check_stats(n, mean, sd, x.ndim == 3, names)
    lo, hi = mean - clip_sd * sd, mean + clip_sd * sd
    xc = np.where(valid, np.clip(xv, lo[..., None, :], hi[..., None, :]), 0.0)
    n_clipped = (valid & (xc != xv)).sum(axis=-2)
    cmean = xc.sum(axis=-2) / n
    cdev = np.where(valid, xc - cmean[..., None, :], 0.0)
    csd = np.sqrt((cdev ** 2).sum(axis=-2) / n)
    out = (cdev / csd[..., None, :]).astype(out_dtype, copy=False)
    stats = NormalisationStats(mean=mean, sd=sd, lo=lo, hi=hi, clipped_mean=cmean, clipped_sd=csd,
                               n_valid=n.astype(np.int64), n_clipped=n_clipped.astype(np.int64))
    return out, stats


def _normalise_torch(x: torch.Tensor, mask: Any, clip_sd: float, ignore_zeros: bool,
                     names: Sequence[str] | None) -> tuple[torch.Tensor, NormalisationStats]:
    out_dtype = x.dtype if x.is_floating_point() else torch.float64
    # float64 statistics where the device has it (MPS has no float64)
    work = torch.float32 if x.device.type == "mps" else torch.float64
    x64 = x.detach().to(work)
    valid = torch.isfinite(x64)
    if ignore_zeros:
        valid &= x64 != 0
    if mask is not None:
        m = torch.as_tensor(mask, device=x.device)
        if m.dtype != torch.bool:
            raise ValueError(f"mask must be boolean, got dtype {m.dtype}")
        try:
            valid &= m[..., None].expand(x.shape)
        except RuntimeError:
            raise ValueError(f"mask of shape {tuple(m.shape)} does not match values of shape "
                             f"{tuple(x.shape)} (expected (V,) or (B, V))") from None
    n = valid.sum(dim=-2)
    zero = x64.new_zeros(())
    xv = torch.where(valid, x64, zero)
    mean = xv.sum(dim=-2) / n
    sd = torch.sqrt(torch.where(valid, x64 - mean[..., None, :], zero).square().sum(dim=-2) / n)
    _check_stats(n.cpu().numpy(), mean.cpu().numpy(), sd.cpu().numpy(), x.ndim == 3, names)
    lo, hi = mean - clip_sd * sd, mean + clip_sd * sd
    xc = torch.where(valid, torch.clamp(xv, lo[..., None, :], hi[..., None, :]), zero)
    n_clipped = (valid & (xc != xv)).sum(dim=-2)
    cmean = xc.sum(dim=-2) / n
    cdev = torch.where(valid, xc - cmean[..., None, :], zero)
    csd = torch.sqrt(cdev.square().sum(dim=-2) / n)
    out = (cdev / csd[..., None, :]).to(out_dtype)

    def np64(t: torch.Tensor) -> np.ndarray:
        return t.cpu().numpy().astype(np.float64)

    stats = NormalisationStats(mean=np64(mean), sd=np64(sd), lo=np64(lo), hi=np64(hi),
                               clipped_mean=np64(cmean), clipped_sd=np64(csd),
                               n_valid=n.cpu().numpy().astype(np.int64),
                               n_clipped=n_clipped.cpu().numpy().astype(np.int64))
    return out, stats


def normalise_features(values: ArrayT, mask: Any = None, *, clip_sd: float = 3.0,
                       ignore_zeros: bool = True, channel_names: Sequence[str] | None = None,
                       ) -> tuple[ArrayT, NormalisationStats]:
    """Clip each channel at mean +/- ``clip_sd`` SD, then z-score it; zeros stay zero.

    ``values``: ``(V, K)`` or ``(B, V, K)`` numpy array or torch tensor (each sample and channel
    is normalised on its own); ``mask``: optional boolean ``(V,)`` or ``(B, V)``, True where a
    vertex may be used (False vertices are excluded and set to 0). ``channel_names`` only
    improves error messages. Returns ``(normalised, stats)``: the same type, shape, device and
    floating dtype as ``values``, and :class:`NormalisationStats` with ``(K,)`` or ``(B, K)``
    arrays. See the module docstring for the exact order of operations.

    Raises ``ValueError`` for a wrong shape, or a channel that is constant or has < 2 valid
    vertices.
    """
    if isinstance(clip_sd, bool) or not isinstance(clip_sd, numbers.Real) or not np.isfinite(clip_sd) \
            or clip_sd <= 0:
        raise ValueError(f"clip_sd must be a finite number > 0, got {clip_sd!r}")
    is_tensor = isinstance(values, torch.Tensor)
    shape = tuple(values.shape) if is_tensor else np.shape(values)
    if len(shape) not in (2, 3) or shape[-1] == 0:
        raise ValueError(f"values must be (V, K) or (B, V, K) with K >= 1, got shape {shape}")
    if channel_names is not None and len(channel_names) != shape[-1]:
        raise ValueError(f"{len(channel_names)} channel names for {shape[-1]} channels")
    if is_tensor:
        if values.is_complex():
            raise ValueError("values must be real")
        return _normalise_torch(values, mask, float(clip_sd), ignore_zeros, channel_names)
    arr = np.asarray(values)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"values must be real numbers, got dtype {arr.dtype}")
    return _normalise_np(arr, mask, float(clip_sd), ignore_zeros, channel_names)

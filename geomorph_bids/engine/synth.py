"""Synthetic subjects with a known answer: random smooth diffeomorphic warps of real templates.

Used to train GeoMorph (unsupervised pairs with extra variety) and to benchmark it
(the ground-truth warp is kept, so the angular error of a recovered warp can be
measured per vertex). Everything is vectorised numpy; the only Python loops run
over integration steps, fields and channels, never over vertices.

Conventions (see ``docs/synthetic_data.md``)
--------------------------------------------
* Points are handled as directions: inputs of any radius are accepted, outputs
  keep the radius of the input vertices (100 mm for our icospheres).
* A warp ``psi`` maps SUBJECT space to TEMPLATE space: ``psi(x) = phi(R x)``, with
  ``R`` a small rotation and ``phi = exp(v)`` the time-1 flow of a stationary
  smooth tangent velocity field ``v``. ``Warp.forward[i] = psi(x_i)``: where
  subject vertex ``x_i`` lies in template space; ``Warp.inverse[i] =
  psi^-1(x_i)`` (flow of ``-v``, then ``R^T``).
* A synthetic subject has a sphere ``vertices`` (by default the template's own
  mesh, read as coordinates in subject space) and features
  ``features[i] = aug(F_T(psi(x_i)))``: the template features ``F_T``
  interpolated (barycentric) where the vertex lands in template space, then
  intensity-augmented. The ground-truth ``registered`` sphere is ``psi(x_i)``,
  exactly what a registration returns (the subject's vertices moved into
  template space; ``Registration.sphere``). Angular error of a registration =
  ``angular_error_deg(result.sphere, subject.registered)`` per vertex.
* ``moving="inverse"`` instead uses the template mesh moved by the inverse warp,
  ``vertices = psi^-1(t_i)``: then the features are the template's own values
  (up to the ~1e-7 deg round-trip error) and ``registered ~= t_i``.

Velocity fields
---------------
Two smooth random scalar potentials ``P`` (gradient part) and ``Q`` (curl part)
give ``v(x) = grad_S P(x) + x cross grad_S Q(x)`` (tangent: ``grad_S`` is the
ambient gradient projected on the tangent plane). Potentials are sums of K
random components, either

* ``"fourier"``: plane waves ``a_k cos(w_k . x + b_k)`` restricted to the unit
  sphere (an isotropic Gaussian random field; ``|w_k|`` ~ the spherical-harmonic
  degree it excites, wavelength ``360/|w_k|`` degrees), or
* ``"bumps"``: von Mises-Fisher bumps ``a_k exp(kappa_k (mu_k . x - 1))`` with
  width ``1/sqrt(kappa_k)`` rad (localised warps; the benchmark-only variant).

Component amplitudes scale as ``f_k^-(1 + slope)`` (``f`` = wavenumber or 1/width),
so each component's displacement scales as ``f^-slope``. The field is scaled so
the flow's largest vertex displacement hits the requested angle (calibrated on an
ico-4 point set, then measured on the real vertices).

Integration: classical RK4 of ``dx/dt = v(x / |x|)`` (the field extended
constantly along rays, so every sphere about the origin is invariant and the flow
commutes with scaling), with each step's result renormalised onto the sphere;
steps of at most ``step_deg`` degrees of arc. The flow of a smooth field is a
diffeomorphism; on ico-6 no triangle folds at the default ranges (tested).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import numpy as np

from ..sphere.icosphere import icosphere
from ..sphere.locate import SphereLocator, angular_error_deg, unit
from ..sphere.rotation import random_rotation
from .benchmark_sources import BENCHMARK_SOURCES, load_benchmark_source

if TYPE_CHECKING:
    from ..io.templates import Template

__all__ = [
    "SynthConfig", "VelocityField", "Warp", "SynthSubject", "TRAIN_CONFIG", "BENCHMARK_CONFIGS",
    "STREAMS", "random_velocity", "random_warp", "random_scalar_field",
    "augment_intensity", "synth_subject", "angular_error_deg", "make_dataset", "make_benchmark",
]

Range = tuple[float, float]


# ----------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthConfig:
    """Parameters of the generator. Every ``(lo, hi)`` range is sampled uniformly per
    subject (``lo == hi`` fixes the value).

    Attributes
    ----------
    max_displacement_deg : range of the target largest displacement of the nonlinear
        warp ``phi`` (degrees of arc, over the subject's vertices). 0 = no warp.
    field : ``"fourier"`` (plane waves) or ``"bumps"`` (von Mises-Fisher bumps).
    frequency_range : fourier: range of wavenumbers ``|w|`` per component (rad^-1 on the
        unit sphere; ~ spherical-harmonic degree). Each component draws its own.
    bump_width_deg : bumps: range of bump widths (degrees).
    n_components : components per potential (K).
    slope : displacement of a component ~ f^-slope (f = wavenumber or 1 / width).
    curl_fraction : range of the share (0..1) of the curl part's amplitude.
    rotation_max_deg : random rigid rotation in subject space: uniform axis, angle
        uniform in [0, rotation_max_deg].
    step_deg : largest integration step (degrees of arc).
    gain_sd : range of the SD (over vertices) of the log of a smooth multiplicative
        gain field (natural log; 0.1 ~ +-10 %).
    bias_sd : range of the SD of a smooth additive bias field, in units of the
        channel's SD in the template.
    contrast_sd : range of the SD of the smooth local-contrast field ``c(x)``
        (see :func:`augment_intensity`).
    noise_sd : range of the SD of i.i.d. Gaussian noise, in channel SDs.
    intensity_frequency_range : wavenumber range of the gain/bias/contrast fields.
    intensity_components : components of each gain/bias/contrast field.
    """

    max_displacement_deg: Range = (1.0, 15.0)
    field: Literal["fourier", "bumps"] = "fourier"
    frequency_range: Range = (1.5, 8.0)
    bump_width_deg: Range = (10.0, 30.0)
    n_components: int = 64
    slope: float = 1.0
    curl_fraction: Range = (0.0, 1.0)
    rotation_max_deg: float = 5.0
    step_deg: float = 4.0
    gain_sd: Range = (0.0, 0.15)
    bias_sd: Range = (0.0, 0.15)
    contrast_sd: Range = (0.0, 0.15)
    noise_sd: Range = (0.0, 0.1)
    intensity_frequency_range: Range = (1.0, 4.0)
    intensity_components: int = 32

    def __post_init__(self) -> None:
        for name in ("max_displacement_deg", "frequency_range", "bump_width_deg", "curl_fraction",
                     "gain_sd", "bias_sd", "contrast_sd", "noise_sd", "intensity_frequency_range"):
            lo, hi = getattr(self, name)
            if not (0 <= lo <= hi and math.isfinite(hi)):
                raise ValueError(f"SynthConfig.{name} must be a range 0 <= lo <= hi, got {(lo, hi)}")
        if self.field not in ("fourier", "bumps"):
            raise ValueError(f"SynthConfig.field must be 'fourier' or 'bumps', got {self.field!r}")
        if self.curl_fraction[1] > 1:
            raise ValueError("SynthConfig.curl_fraction must lie in [0, 1]")
        if self.max_displacement_deg[1] > 60:
            raise ValueError("SynthConfig.max_displacement_deg above 60 degrees is not supported")
        if self.frequency_range[0] <= 0 or self.bump_width_deg[0] <= 0 or self.intensity_frequency_range[0] <= 0:
            raise ValueError("SynthConfig frequencies and bump widths must be > 0")
        if self.n_components < 1 or self.intensity_components < 1 or not self.step_deg > 0:
            raise ValueError("SynthConfig: n_components, intensity_components >= 1 and step_deg > 0")


#: Training generator: smooth plane-wave fields, targets 1-15 deg, moderate intensity changes.
TRAIN_CONFIG = SynthConfig()

#: Benchmark generators: all differ from TRAIN_CONFIG in family or ranges, and are drawn
#: from the "benchmark" seed stream (see :data:`STREAMS`).
BENCHMARK_CONFIGS: dict[str, SynthConfig] = {
    # localised warps (a generator family never seen in training), fixed levels of difficulty
    "bumps": SynthConfig(max_displacement_deg=(5.0, 10.0), field="bumps", bump_width_deg=(12.0, 25.0),
                         n_components=24, curl_fraction=(0.2, 0.8), rotation_max_deg=3.0,
                         gain_sd=(0.05, 0.05), bias_sd=(0.05, 0.05), contrast_sd=(0.05, 0.05),
                         noise_sd=(0.05, 0.05)),
    # global, large warps: plane waves with a steeper spectrum at a fixed 12 deg
    "smooth_large": SynthConfig(max_displacement_deg=(12.0, 12.0), frequency_range=(1.0, 5.0),
                                n_components=48, slope=1.5, curl_fraction=(0.5, 0.5),
                                rotation_max_deg=3.0, gain_sd=(0.05, 0.05), bias_sd=(0.05, 0.05),
                                contrast_sd=(0.05, 0.05), noise_sd=(0.05, 0.05)),
    # moderate warps, stronger intensity changes than any training subject
    "intensity": SynthConfig(max_displacement_deg=(6.0, 6.0), frequency_range=(2.0, 6.0),
                             n_components=48, curl_fraction=(0.5, 0.5), rotation_max_deg=3.0,
                             gain_sd=(0.2, 0.2), bias_sd=(0.2, 0.2), contrast_sd=(0.2, 0.2),
                             noise_sd=(0.15, 0.15)),
}

#: Seed streams: SeedSequence spawn keys that separate training from benchmark draws.
STREAMS = {"train": 0, "validation": 1, "benchmark": 2}


def _draw(rng: np.random.Generator, r: Range) -> float:
    lo, hi = float(r[0]), float(r[1])
    return lo if lo == hi else float(rng.uniform(lo, hi))


# ----------------------------------------------------------------------------
# Smooth random fields
# ----------------------------------------------------------------------------


def _unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    u = rng.standard_normal((n, 3))
    return u / np.linalg.norm(u, axis=1, keepdims=True)


@dataclass(frozen=True, eq=False)
class VelocityField:
    """A stationary smooth tangent field ``v(x) = scale * (grad_S P + x cross grad_S Q)``.

    Attributes
    ----------
    kind : "fourier" or "bumps".
    centres : (K, 3) unit wave directions (fourier) or bump centres (bumps).
    frequency : (K,) wavenumbers (fourier) or concentrations kappa (bumps).
    phase : (K,) phases in rad (fourier; zeros for bumps).
    coef : (K, 2) potential amplitudes of P (column 0) and Q (column 1).
    scale : global factor (rad per unit time on the unit sphere).
    """

    kind: str
    centres: np.ndarray
    frequency: np.ndarray
    phase: np.ndarray
    coef: np.ndarray
    scale: float = 1.0

    def scaled(self, factor: float) -> "VelocityField":
        return replace(self, scale=self.scale * float(factor))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Velocity (N, 3) at unit points ``x`` (N, 3): tangent, rad per unit time."""
        # float32 for the (N, K) phase / transcendental / matmul stage (SIMD; ~15x faster
        # than float64 here): velocities carry ~1e-6 relative error, positions stay float64.
        x32 = np.ascontiguousarray(x, dtype=np.float32)
        if self.kind == "fourier":
            w = self.centres * self.frequency[:, None]  # (K, 3) wave vectors
            arg = x32 @ np.ascontiguousarray(w.T, dtype=np.float32)
            arg += self.phase.astype(np.float32)
            s = np.sin(arg, out=arg)  # d/dx cos(w.x + b) = -sin(.) w: sign folded into the weights
            weights = -(self.coef[:, :, None] * w[:, None, :]).reshape(len(w), 6)
        else:
            arg = x32 @ np.ascontiguousarray(self.centres.T, dtype=np.float32)
            arg -= np.float32(1.0)
            arg *= self.frequency.astype(np.float32)
            s = np.exp(arg, out=arg)
            m = self.centres * self.frequency[:, None]
            weights = (self.coef[:, :, None] * m[:, None, :]).reshape(len(m), 6)
        grad = (s @ weights.astype(np.float32)).astype(np.float64)
        gp, gq = grad[:, :3], grad[:, 3:]
        v = gp - np.einsum("ij,ij->i", gp, x)[:, None] * x + np.cross(x, gq)
        return self.scale * v

    def flow(self, points: np.ndarray, t: float = 1.0, step_deg: float = 2.0) -> np.ndarray:
        """Time-``t`` flow of (N, 3) points (any radius; radius kept): RK4, renormalised.

        The number of steps is ``ceil(|t| * max speed / step_deg)`` with the max speed
        taken over the points themselves (and at least 1).
        """
        points = np.asarray(points, dtype=np.float64)
        radius = np.linalg.norm(points, axis=1, keepdims=True)
        x = points / radius
        if t == 0 or self.scale == 0:
            return points.copy()
        speed = np.degrees(np.linalg.norm(self(x), axis=1).max(initial=0.0))
        n = max(1, math.ceil(abs(t) * speed / step_deg))
        h = t / n
        for _ in range(n):
            k1 = self(x)
            k2 = self(unit(x + 0.5 * h * k1))
            k3 = self(unit(x + 0.5 * h * k2))
            k4 = self(unit(x + h * k3))
            x = unit(x + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4))
        return x * radius


def random_velocity(rng: np.random.Generator, config: SynthConfig = TRAIN_CONFIG) -> VelocityField:
    """An unscaled random field (``scale`` 1) drawn with the config's family and ranges."""
    k = int(config.n_components)
    centres = _unit_vectors(rng, k)
    if config.field == "fourier":
        lo, hi = config.frequency_range
        f = np.exp(rng.uniform(np.log(lo), np.log(hi), k))  # log-uniform wavenumbers
        freq, phase, fscale = f, rng.uniform(0.0, 2.0 * np.pi, k), f
    else:
        lo, hi = np.radians(config.bump_width_deg)
        width = np.exp(rng.uniform(np.log(lo), np.log(hi), k))
        freq, phase, fscale = 1.0 / width**2, np.zeros(k), 1.0 / width
    curl = _draw(rng, config.curl_fraction)
    amp = fscale ** -(1.0 + config.slope)
    coef = rng.standard_normal((k, 2)) * amp[:, None] * np.array([np.sqrt(1 - curl), np.sqrt(curl)])
    return VelocityField(config.field, centres, freq, phase, coef, 1.0)


def random_scalar_field(points: np.ndarray, rng: np.random.Generator, frequency_range: Range = (1.0, 4.0),
                        n_components: int = 32) -> np.ndarray:
    """(N,) smooth random field (plane waves on the unit sphere) with mean 0 and SD 1 over ``points``.

    ``points`` (N, 3) of any radius. Returns zeros when the field is constant.
    """
    x = unit(points)
    lo, hi = frequency_range
    w = _unit_vectors(rng, n_components) * np.exp(rng.uniform(np.log(lo), np.log(hi), n_components))[:, None]
    a = rng.standard_normal(n_components)
    z = np.cos(x @ w.T + rng.uniform(0.0, 2.0 * np.pi, n_components)) @ a
    z = z - z.mean()
    sd = z.std()
    return z / sd if sd > 0 else z


# ----------------------------------------------------------------------------
# Warps
# ----------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _calibration_points() -> np.ndarray:
    v = unit(icosphere(4)[0])
    v.flags.writeable = False
    return v


@dataclass(frozen=True, eq=False)
class Warp:
    """A ground-truth warp ``psi(x) = phi(R x)`` from subject to template space.

    Attributes
    ----------
    vertices : (V, 3) the points it was drawn for (subject space).
    forward : (V, 3) ``psi(vertices)``: where each vertex lies in template space.
    inverse : (V, 3) ``psi^-1(vertices)`` (flow of ``-v``, then ``R^T``).
    rotation : (3, 3) R (identity when ``rotation_max_deg`` is 0).
    velocity : the field v (``phi = exp(v)``).
    requested_displacement_deg : the target for ``phi``'s largest displacement.
    step_deg : integration step used.
    """

    vertices: np.ndarray
    forward: np.ndarray
    inverse: np.ndarray
    rotation: np.ndarray
    velocity: VelocityField
    requested_displacement_deg: float
    step_deg: float

    def apply(self, points: np.ndarray) -> np.ndarray:
        """``psi(points)`` for any (N, 3) points in subject space (radius kept)."""
        return self.velocity.flow(np.asarray(points, dtype=np.float64) @ self.rotation.T, 1.0, self.step_deg)

    def apply_inverse(self, points: np.ndarray) -> np.ndarray:
        """``psi^-1(points)`` for any (N, 3) points in template space (radius kept)."""
        return self.velocity.flow(points, -1.0, self.step_deg) @ self.rotation

    @property
    def displacement_deg(self) -> np.ndarray:
        """(V,) total displacement of each vertex (rotation included), degrees."""
        return angular_error_deg(self.vertices, self.forward)

    @property
    def max_displacement_deg(self) -> float:
        """Largest total displacement (rotation included), degrees."""
        return float(self.displacement_deg.max(initial=0.0))

    @property
    def nonlinear_max_displacement_deg(self) -> float:
        """Largest displacement of the nonlinear part ``phi`` alone, degrees."""
        return float(angular_error_deg(self.vertices @ self.rotation.T, self.forward).max(initial=0.0))


def random_warp(vertices: np.ndarray, rng: np.random.Generator | int | None,
                config: SynthConfig = TRAIN_CONFIG, *, inverse: bool = True) -> Warp:
    """Draw a random smooth diffeomorphic warp and evaluate it at ``vertices``.

    Parameters
    ----------
    vertices : (V, 3) float, points on a sphere centred at the origin (any radius).
    rng : numpy Generator or seed.
    config : generator parameters.
    inverse : also compute ``Warp.inverse`` (doubles the cost); else it is all NaN.

    Returns
    -------
    Warp with (V, 3) float64 ``forward`` / ``inverse`` at the input radius. The field
    is scaled (up to 3 calibration rounds on ico-4 points) so that ``phi``'s largest
    displacement is the drawn target; the achieved value is
    ``Warp.nonlinear_max_displacement_deg`` (within a few % of the target).
    """
    rng = np.random.default_rng(rng)
    vertices = np.asarray(vertices, dtype=np.float64)
    target = _draw(rng, config.max_displacement_deg)
    field_ = random_velocity(rng, config)
    rot = (random_rotation(rng, config.rotation_max_deg) if config.rotation_max_deg > 0 else np.eye(3))
    if target == 0:
        field_ = field_.scaled(0.0)
    else:
        cal = _calibration_points()
        speed = np.linalg.norm(field_(cal), axis=1).max()
        field_ = field_.scaled(np.radians(target) / speed)
        for _ in range(3):  # the flow moves a bit less than the peak speed: correct the scale
            moved = angular_error_deg(cal, field_.flow(cal, 1.0, config.step_deg)).max()
            ratio = target / moved
            field_ = field_.scaled(ratio)
            if abs(ratio - 1.0) < 0.005:
                break
    forward = field_.flow(vertices @ rot.T, 1.0, config.step_deg)
    inv = (field_.flow(vertices, -1.0, config.step_deg) @ rot) if inverse else np.full_like(vertices, np.nan)
    return Warp(vertices, forward, inv, rot, field_, target, float(config.step_deg))


# ----------------------------------------------------------------------------
# Intensity changes
# ----------------------------------------------------------------------------


def _contrast(z: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Monotone transfer h_c(z): asinh(c z)/c for c > 0 (compress), sinh(|c| z)/|c| for c < 0."""
    out = z.copy()
    pos, neg = c > 1e-12, c < -1e-12
    out[pos] = np.arcsinh(c[pos] * z[pos]) / c[pos]
    out[neg] = np.sinh(-c[neg] * z[neg]) / -c[neg]
    return out


def augment_intensity(features: np.ndarray, points: np.ndarray, rng: np.random.Generator,
                      *, gain_sd: float, bias_sd: float, contrast_sd: float, noise_sd: float,
                      mean: np.ndarray, sd: np.ndarray, frequency_range: Range = (1.0, 4.0),
                      n_components: int = 32) -> np.ndarray:
    """Smooth gain, bias and local-contrast fields plus noise, per channel.

    For channel k with template mean ``m`` and SD ``s`` (``mean``, ``sd``: (K,)) and
    standardised values ``z = (f - m) / s``:
    ``f' = g(x) * (m + s * h_c(x)(z)) + s * (b(x) + n)`` where ``log g`` is a smooth
    field with SD ``gain_sd``, ``b`` one with SD ``bias_sd``, ``c`` one with SD
    ``contrast_sd`` (``h_c`` compresses the dynamic range where c > 0 and expands it
    where c < 0, slope 1 at z = 0), ``n`` i.i.d. N(0, noise_sd^2). The smooth fields
    have exactly the stated SDs over ``points`` (mean 0). ``features`` (V, K),
    ``points`` (V, 3) any radius. Returns (V, K) float64.
    """
    f = np.asarray(features, dtype=np.float64)
    out = np.empty_like(f)
    for k in range(f.shape[1]):
        fields = [random_scalar_field(points, rng, frequency_range, n_components) for _ in range(3)]
        z = (f[:, k] - mean[k]) / sd[k]
        if contrast_sd > 0:
            z = _contrast(z, contrast_sd * fields[2])
        g = np.exp(gain_sd * fields[0])
        noise = rng.standard_normal(len(f)) * noise_sd if noise_sd > 0 else 0.0
        out[:, k] = g * (mean[k] + sd[k] * z) + sd[k] * (bias_sd * fields[1] + noise)
    return out


# ----------------------------------------------------------------------------
# Subjects
# ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SynthSubject:
    """A synthetic moving subject with its ground truth.

    Attributes
    ----------
    vertices : (V, 3) the subject's sphere (subject space), radius of the input mesh.
    faces : (F, 3) int64.
    features : (V, K) float64 moving features (warped template, then intensity changes).
    clean_features : (V, K) float64 warped template features before intensity changes.
    registered : (V, 3) ground truth ``psi(vertices)``: the subject's vertices in
        template space (what ``Registration.sphere`` should equal).
    mask : (V,) bool, True where the features are valid (False: medial wall, set to 0).
    warp : the :class:`Warp` (drawn on the subject vertices for ``moving="grid"``, on
        the template vertices for ``moving="inverse"``).
    params : the drawn scalar parameters (target displacement, rotation angle, SDs, ...).
    """

    vertices: np.ndarray
    faces: np.ndarray
    features: np.ndarray
    clean_features: np.ndarray
    registered: np.ndarray
    mask: np.ndarray
    warp: Warp
    params: dict = field(default_factory=dict)


class _Sampler:
    """Barycentric interpolation of a template's features at arbitrary directions."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, features: np.ndarray,
                 mask: np.ndarray | None) -> None:
        self.locator = SphereLocator(vertices, faces)
        self.faces = np.asarray(faces, dtype=np.int64)
        self.features = features
        self.mask = None if mask is None else np.asarray(mask, dtype=np.float64)

    def __call__(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        face, w = self.locator.locate(points)
        corners = self.faces[face]
        vals = np.einsum("nc,nck->nk", w, self.features[corners])
        valid = (np.ones(len(points), bool) if self.mask is None
                 else np.einsum("nc,nc->n", w, self.mask[corners]) > 0.5)
        return vals, valid


def _as_2d(features: np.ndarray, n: int) -> np.ndarray:
    f = np.asarray(features, dtype=np.float64)
    f = f[:, None] if f.ndim == 1 else f
    if f.ndim != 2 or f.shape[0] != n:
        raise ValueError(f"template_features must be (V,) or (V, K) with V = {n}, got {np.shape(features)}")
    return f


def _channel_stats(f: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    g = f if mask is None else f[np.asarray(mask, bool)]
    sd = g.std(axis=0)
    return g.mean(axis=0), np.where(sd > 0, sd, 1.0)


def synth_subject(template_vertices: np.ndarray, template_faces: np.ndarray, template_features: np.ndarray,
                  rng: np.random.Generator | int | None, config: SynthConfig = TRAIN_CONFIG, *,
                  template_mask: np.ndarray | None = None, moving: Literal["grid", "inverse"] = "grid",
                  subject_vertices: np.ndarray | None = None, subject_faces: np.ndarray | None = None,
                  _sampler: _Sampler | None = None) -> SynthSubject:
    """Draw one synthetic subject from a template.

    Parameters
    ----------
    template_vertices, template_faces : the template sphere (V_T, 3) / (F_T, 3), any radius and
        density (bundled ico-6, fsLR 32k/164k, fsaverage5, ...).
    template_features : (V_T,) or (V_T, K) feature maps on it (consistent sign convention).
    rng : numpy Generator or seed (everything drawn comes from it, in a fixed order).
    config : generator parameters.
    template_mask : optional (V_T,) bool, True where the template is valid; invalid
        regions (medial wall) are carried by the warp and set to 0 in the subject.
    moving : ``"grid"`` (default): the subject's sphere is ``subject_vertices`` (default
        the template mesh) read in subject space; ``registered = psi(vertices)``.
        ``"inverse"``: the subject's sphere is the template mesh moved by the inverse warp
        (``psi^-1(t_i)``), carrying the template's values; ``registered ~= t_i``.
    subject_vertices, subject_faces : another mesh for the subject's sphere (``"grid"`` only).

    Returns
    -------
    SynthSubject (see its attributes); warp ground truth at the subject vertices.
    """
    rng = np.random.default_rng(rng)
    tv = np.asarray(template_vertices, dtype=np.float64)
    tf = np.asarray(template_faces, dtype=np.int64)
    feats = _as_2d(template_features, len(tv))
    sampler = _sampler or _Sampler(tv, tf, feats, template_mask)
    if moving == "grid":
        sv = tv if subject_vertices is None else np.asarray(subject_vertices, dtype=np.float64)
        sf = tf if subject_faces is None else np.asarray(subject_faces, dtype=np.int64)
        if subject_vertices is not None and subject_faces is None:
            raise ValueError("subject_faces is required with subject_vertices")
        warp = random_warp(sv, rng, config)
        vertices, registered = sv, warp.forward
    elif moving == "inverse":
        if subject_vertices is not None:
            raise ValueError("subject_vertices cannot be combined with moving='inverse'")
        warp = random_warp(tv, rng, config)
        vertices, sf = warp.inverse, tf
        registered = warp.apply(vertices)
    else:
        raise ValueError(f"moving must be 'grid' or 'inverse', got {moving!r}")
    clean, valid = sampler(registered)
    mean, sd = _channel_stats(feats, template_mask)
    params = {name: _draw(rng, getattr(config, name)) for name in ("gain_sd", "bias_sd", "contrast_sd", "noise_sd")}
    out = augment_intensity(clean, vertices, rng, mean=mean, sd=sd, frequency_range=config.intensity_frequency_range,
                            n_components=config.intensity_components, **params)
    out[~valid] = 0.0
    clean[~valid] = 0.0
    params.update(requested_displacement_deg=warp.requested_displacement_deg,
                  nonlinear_max_displacement_deg=warp.nonlinear_max_displacement_deg,
                  rotation_deg=float(np.degrees(np.arccos(np.clip((np.trace(warp.rotation) - 1) / 2, -1, 1)))),
                  curl_fraction=float(np.sum(warp.velocity.coef[:, 1] ** 2) / max(np.sum(warp.velocity.coef**2), 1e-300)))
    return SynthSubject(vertices, sf, out, clean, registered, valid, warp, params)


# ----------------------------------------------------------------------------
# Datasets
# ----------------------------------------------------------------------------


def _seeds(seed: int, stream: str, n: int) -> list[np.random.SeedSequence]:
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}; one of {', '.join(STREAMS)}")
    return np.random.SeedSequence(int(seed), spawn_key=(STREAMS[stream],)).spawn(n)


def make_dataset(n: int, template: Template | str | tuple[np.ndarray, np.ndarray, np.ndarray], seed: int, config: SynthConfig = TRAIN_CONFIG, *,
                 features: tuple[str, ...] = ("sulc",), hemi: str = "L", stream: str = "train",
                 moving: Literal["grid", "inverse"] = "grid") -> Iterator[SynthSubject]:
    """Yield ``n`` synthetic subjects from one template (lazily; one at a time).

    Parameters
    ----------
    n : number of subjects.
    template : a :class:`~geomorph_bids.io.templates.Template`, a bundled template name
        (``"fsLR"``, ``"fsaverage"``; loaded with ``features`` and ``hemi``) or a
        ``(vertices, faces, features (V, K))`` tuple.
    seed : integer seed. Subject i depends only on (seed, stream, i, config): the
        same seed gives the same subjects whatever ``n``.
    config : generator parameters (TRAIN_CONFIG for training).
    features : the maps taken from a Template, or loaded for a bundled name (a tuple's are its own).
    hemi : the hemisphere loaded for a bundled name.
    stream : "train", "validation" or "benchmark" (independent SeedSequence spawn keys).
    moving : see :func:`synth_subject`.
    """
    if isinstance(template, str):
        from ..io.templates import load_template
        template = load_template(template, hemi, tuple(features))
    if isinstance(template, tuple):
        tv, tf, tfeat = template
    else:
        tv, tf = template.vertices, template.faces
        tfeat = np.stack([template.features[k] for k in features], axis=1)
    tfeat = _as_2d(tfeat, len(tv))
    sampler = _Sampler(np.asarray(tv, float), np.asarray(tf, np.int64), tfeat, None)
    for ss in _seeds(seed, stream, n):
        yield synth_subject(tv, tf, tfeat, np.random.default_rng(ss), config, moving=moving, _sampler=sampler)


def make_benchmark(n: int, source: str, config: str | SynthConfig = "bumps", seed: int = 0, *,
                   hemi: str = "L", level: int = 6) -> Iterator[tuple[SynthSubject, str]]:
    """Yield ``n`` held-out benchmark subjects ``(subject, fixed template name)``.

    The moving subject's features come from a held-out real map (``source``, see
    :data:`~geomorph_bids.engine.benchmark_sources.BENCHMARK_SOURCES`), warped and augmented with a benchmark config (a name in
    :data:`BENCHMARK_CONFIGS` or a SynthConfig), drawn from the "benchmark" seed stream;
    its sphere is the ico-``level`` grid (subject space). Register it against the bundled
    template named in the tuple (same channels as the source; ``load_template``);
    ground truth is ``subject.registered``.
    """
    from ..sphere.icosphere import icosphere as _ico

    cfg = BENCHMARK_CONFIGS[config] if isinstance(config, str) else config
    v, f, vals, mask, _ = load_benchmark_source(source, hemi)
    sv, sf = _ico(level)
    sampler = _Sampler(v, f, vals, mask)
    for ss in _seeds(seed, "benchmark", n):
        subj = synth_subject(v, f, vals, np.random.default_rng(ss), cfg, template_mask=mask,
                             subject_vertices=sv, subject_faces=sf, _sampler=sampler)
        yield subj, BENCHMARK_SOURCES[source][0]

"""Rigid pre-alignment of a native sphere onto a template (plain numpy; no Nipype).

This is the first stage of every registration: the moving sphere is rotated
onto the template from its features alone (or, when the FreeSurfer
``?h.sphere.reg`` is known, from vertex correspondence), and the quality of the
alignment is measured on the template's ico-6 grid.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from ..io.templates import Template
from ..sphere.icosphere import grid_deviation, n_vertices
from ..sphere.locate import SphereLocator
from ..sphere.resample import barycentric_weights, corner_matrix, corner_weights
from ..sphere.rigid import RigidFit, rigid_fit
from ..sphere.rotation import rotation_angle, rotation_from_correspondence
from .blas import blas_threads
from .overlap import side_worker, split_rows

__all__ = ["Prealignment", "prealign", "correlation", "REG_SPHERE_MARGIN", "SIGN_CHECK_BELOW"]

#: A rotation from ``reg_sphere`` is set aside when a local polish of it at the rigid fit's coarse
#: level raises the maps' correlation by more than this: it is then several degrees from where the
#: maps fit (measured on FreeSurfer's fsaverage and the example subject, a rotation off by 2 / 5 / 10
#: / 20 deg gains 0.004-0.02 / 0.04-0.07 / 0.16-0.21 / 0.49-0.63; the correct one 0.001-0.003). A
#: sphere.reg of another subject, or edited, otherwise decided a rotation 2-7 deg off in silence
#: (the warp cannot undo it: the output differed by 2.2 deg median from the maps' own).
REG_SPHERE_MARGIN = 0.1

#: The identity check's own fit below which the sign-flipped features are fitted too
#: (``identity_cc_negated``), as they are whenever the mirrored template fits better. A map of the
#: wrong sign fits its own template and the mirrored one alike (0.37-0.42 vs 0.39-0.49 on the example,
#: fsaverage5 and FreeSurfer's fsaverage, fsLR and fsaverage templates), so the mirror comparison
#: caught it only by chance: the example's right hemisphere negated, to fsaverage, fitted 0.422 vs
#: 0.404 and registered "ok" (CC 0.61). Right maps fit 0.91-0.97; a lower fit only costs the extra
#: fit, the sign gate (quality.assess) still wants the flipped map far better.
SIGN_CHECK_BELOW = 0.7


@dataclass(frozen=True)
class Prealignment:
    """Result of :func:`prealign`.

    Attributes
    ----------
    rotation : (3, 3) float64, proper rotation; aligned = vertices @ rotation.T.
    sphere : (V, 3) float64, the moving vertices rotated into template space, mm on radius 100.
    features_on_template : name -> (V_template,) float64, moving features sampled
        at the template's ico-6 vertices after alignment.
    metrics : summary numbers: per feature, ``cc_<name>_before`` (the moving map as given,
        no rotation, at the template's ico-5 vertices: the first 10,242 of its ico-6 grid) and
        ``cc_<name>_after`` (rotated, on the whole ico-6 grid), Pearson correlations with the
        template's map where it is not 0; ``rotation_deg`` and ``rotation_method`` (``correspondence``: from
        ``reg_sphere``, or ``features``; ``reg_sphere_set_aside`` says why a given one was not used); the
        identity check's fits (``identity_cc_*``); ``cortex_fraction_on_template`` with a mask; ``seconds``.
    cortex_on_template : (V_template,) bool, where the aligned moving cortex mask covers the
        template's ico-6 vertices (more than half of the barycentric weight inside the cortex),
        or None without a mask.
    locator : the :class:`SphereLocator` of the moving sphere as given (unrotated), for later
        point location in it (a point ``q`` of template space lies at ``q @ rotation`` there).
    grid_faces : (V_template,) int64, the moving face holding each template vertex after the
        rotation (a hint for locating points near the template grid).
    """

    rotation: np.ndarray
    sphere: np.ndarray
    features_on_template: dict[str, np.ndarray]
    metrics: dict[str, float | int | str] = field(default_factory=dict)
    cortex_on_template: np.ndarray | None = None
    locator: SphereLocator | None = field(default=None, repr=False, compare=False)
    grid_faces: np.ndarray | None = field(default=None, repr=False, compare=False)


def correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Pearson correlation of two (V,) maps over ``mask`` (and finite values)."""
    keep = np.isfinite(a) & np.isfinite(b)
    if mask is not None:
        keep &= mask
    x, y = a[keep] - a[keep].mean(), b[keep] - b[keep].mean()
    denom = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denom) if denom > 0 else float("nan")


def _before_points(grid: np.ndarray) -> int:
    """How many of a template's (n, 3) ``grid`` vertices (first) the correlation before alignment
    reads: the first 10,242 of the ico-6 grid (its ico-5 vertices, spread evenly: the levels are
    nested), all of another grid, or of a 40,962-vertex grid whose first 10,242 are not the ico-5
    vertices (directions within 1e-3; a hand-made ``Template`` in another order, whose first
    vertices may all lie on one cap). A quarter of the points to locate in the moving mesh (~70 ms
    less at 164k vertices); the correlation moved by 3e-4 at most on the benchmark's spheres
    (docs/benchmarks.md, round twenty-two)."""
    n, coarse = len(grid), n_vertices(5)
    if n != n_vertices(6):
        return n
    return coarse if np.abs(grid_deviation(grid[:coarse], 5)).max() <= 1e-3 else n


def _before_alignment(vertices: np.ndarray, faces: np.ndarray, grid: np.ndarray, features: dict[str, np.ndarray],
                      names: list[str]) -> tuple[SphereLocator, int, dict[str, np.ndarray]]:
    """What :func:`prealign` reads from the moving sphere as given, whatever the rotation: its
    :class:`SphereLocator` (with the k-d tree, built by the location here), how many of the
    template's (n, 3) ``grid`` vertices the correlation before alignment reads
    (:func:`_before_points`) and the maps ``names`` barycentrically interpolated there (the mesh
    checked by :func:`barycentric_weights`)."""
    locator = SphereLocator(vertices, faces)
    coarse = _before_points(grid)
    at_before = barycentric_weights((vertices, faces), grid[:coarse], locator)
    return locator, coarse, {n: at_before @ np.asarray(features[n], float) for n in names}


def _grid_location(locator: SphereLocator, faces: np.ndarray, grid: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (N, 3) template ``grid`` points (rotated) in the moving mesh (``faces``, located by
    ``locator``): the face (N,) int64 holding each, and its corners (N, 3) and weights (N, 3) as
    ``barycentric_weights(hint=face)`` gives them (normalised once, in its face), without checking
    the mesh again. Row by row: a point's result does not depend on the others."""
    grid_faces, _ = locator.locate(grid)
    corners, weights = corner_weights((locator.vertices, faces), grid, locator, hint=grid_faces)
    return grid_faces, corners, weights


def _far_from_the_maps(fit: RigidFit) -> bool:
    """A given rotation far from where the maps fit, beyond what a local polish finds (a sphere
    registered to fsLR given as FreeSurfer's fsaverage-space ``sphere.reg``: 42 deg off, the maps'
    correlation -0.19 there and no better near it): the mirrored template, searched whole, fits the
    maps better than the rotation does by more than :data:`REG_SPHERE_MARGIN` (which the identity
    gate flags whatever the rotation), and the sign-flipped maps fit no better at it (HCP's sign
    under a right sphere.reg: the sign gate's case; the rotation is kept)."""
    if fit.mirrored is None:
        return False
    return (fit.mirrored - max(fit.own, fit.correlation) > REG_SPHERE_MARGIN
            and -fit.correlation < fit.mirrored + REG_SPHERE_MARGIN)


@blas_threads(1)  # small products: split, they cost more CPU and their rounding varied with the CPUs
def prealign(vertices: np.ndarray, faces: np.ndarray, features: dict[str, np.ndarray],
             template: Template, *, reg_sphere: np.ndarray | None = None, reg_space: str = "fsaverage",
             cortex_mask: np.ndarray | None = None, identity_check: bool = True) -> Prealignment:
    """Rotate a native sphere onto ``template``.

    Parameters
    ----------
    vertices : (V, 3) float64, native sphere, mm on a radius-100 sphere centred at 0.
    faces : (F, 3) int64.
    features : name -> (V,) maps in the template's sign convention; the names
        shared with ``template.features`` drive the alignment.
    template : the fixed image (ico-6 grid in template space).
    reg_sphere : optional (V, 3) registered sphere vertices (same topology): when given, the
        rotation comes from vertex correspondence (fast path) instead of the features, unless
        (with ``identity_check``) the maps fit far better near it (:data:`REG_SPHERE_MARGIN`): then
        the features decide and ``metrics["reg_sphere_set_aside"]`` says why.
    reg_space : where ``reg_sphere`` lives: ``"fsaverage"`` (FreeSurfer's ``sphere.reg``; the
        template's fixed fsaverage -> template rotation follows) or ``"template"`` (already in
        template space, e.g. sMRIPrep's ``space-fsLR_desc-reg`` sphere).
    cortex_mask : optional (V,) bool, True on the cortex (False on the medial wall): the
        medial wall is left out of the rigid similarity, and the aligned mask is sampled on the
        template grid (:attr:`Prealignment.cortex_on_template`) for the later stages.
    identity_check : also fit the template's mirror image (the hemisphere-identity check: metrics
        ``identity_cc_own``, ``identity_cc_mirrored``, and ``identity_cc_negated`` when it fails or
        the fit is poor) and test a given ``reg_sphere`` against the maps; False: neither.

    Returns
    -------
    Prealignment
    """
    start = time.perf_counter()
    shared = [name for name in features if name in template.features]
    if not shared:
        raise ValueError(f"no feature in common with template {template.name}: "
                         f"moving has {sorted(features)}, template has {sorted(template.features)}")
    moving = np.column_stack([features[n] for n in shared])
    fixed = np.column_stack([template.features[n] for n in shared])
    if reg_space not in ("fsaverage", "template"):
        raise ValueError(f"reg_space must be 'fsaverage' or 'template', got {reg_space!r}")
    if cortex_mask is not None:
        cortex_mask = np.asarray(cortex_mask, dtype=bool).reshape(-1)
        if cortex_mask.shape != (len(vertices),):
            raise ValueError(f"cortex mask has {cortex_mask.size} values for {len(vertices)} vertices")
    given = None
    if reg_sphere is not None:
        to_template = template.from_fsaverage if reg_space == "fsaverage" else np.eye(3)
        given = to_template @ rotation_from_correspondence(vertices, reg_sphere)
        method = "correspondence"
    else:
        method = "features"
    fit = None
    # the moving mesh's locator (and its k-d tree) and the maps before alignment do not depend on
    # the rotation, nor the identity check's fit of the mirror image on the rigid fit's: done beside
    # it, on a second CPU where there is one (engine.overlap; the same bits)
    with side_worker() as worker:
        located = worker.submit(_before_alignment, vertices, faces, template.vertices, features, shared)
        if given is None or identity_check:
            fit = rigid_fit((vertices, faces), moving, (template.vertices, template.faces), fixed, rotation=given,
                            mirror_check=identity_check, mask=cortex_mask, worker=worker)
        set_aside = None
        if given is not None and fit is not None and fit.own - fit.correlation > REG_SPHERE_MARGIN:
            set_aside = (f"the sphere.reg's rotation fits the maps at CC {fit.correlation:.2f}, a rotation near it at "
                         f"{fit.own:.2f}: it is not this sphere's (another subject's, or edited?); the rotation comes "
                         "from the maps instead")
        elif given is not None and fit is not None and _far_from_the_maps(fit):
            set_aside = (f"the sphere.reg's rotation fits the maps at CC {fit.correlation:.2f}, where the mirrored "
                         f"template fits them at {fit.mirrored:.2f}: it does not belong to these maps (a sphere "
                         "registered to another space, e.g. fsLR's, another subject's, or the other hemisphere's "
                         "files?); the rotation comes from the maps instead")
        if set_aside is not None:
            fit = rigid_fit((vertices, faces), moving, (template.vertices, template.faces), fixed,
                            mirror_check=identity_check, mask=cortex_mask, worker=worker)
            given, method = None, "features"
        locator, coarse, before = located.result()
        rotation = given if given is not None else fit.rotation
        # one location per point set, shared by every feature; each grid point is found alone, so
        # the worker takes part of them (the same bits)
        grid = template.vertices @ rotation
        grid_faces, corners, weights = split_rows(worker, partial(_grid_location, locator, faces), grid)
    aligned = vertices @ rotation.T
    at_after = corner_matrix(corners, weights, len(vertices))
    after = {n: at_after @ np.asarray(features[n], float) for n in shared}
    metrics: dict[str, float | int | str] = {"rotation_deg": rotation_angle(rotation), "rotation_method": method}
    if set_aside is not None:
        metrics["reg_sphere_set_aside"] = set_aside
    if identity_check:
        metrics["identity_cc_own"] = fit.own
        metrics["identity_cc_mirrored"] = fit.mirrored
        if (fit.mirrored is not None and fit.mirrored > fit.own) or fit.own < SIGN_CHECK_BELOW:
            # the identity check fails, or the map fits poorly: a sign-flipped map (HCP's sulc is
            # -FreeSurfer's) does both; say which (one more fit, only here)
            metrics["identity_cc_negated"] = rigid_fit(
                (vertices, faces), -moving, (template.vertices, template.faces), fixed, mask=cortex_mask).own
    for n in shared:
        mask = template.features[n] != 0
        metrics[f"cc_{n}_before"] = correlation(before[n], template.features[n][:coarse], mask[:coarse])
        metrics[f"cc_{n}_after"] = correlation(after[n], template.features[n], mask)
    cortex = None if cortex_mask is None else (at_after @ cortex_mask.astype(np.float64)) > 0.5
    if cortex is not None:
        metrics["cortex_fraction_on_template"] = float(cortex.mean())
    metrics["seconds"] = time.perf_counter() - start
    return Prealignment(rotation=rotation, sphere=aligned, features_on_template=after, metrics=metrics,
                        cortex_on_template=cortex, locator=locator, grid_faces=grid_faces)

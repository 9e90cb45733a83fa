"""Geometry of GeoMorph's pull-back warps on the icosphere (numpy; torch only to upsample).

A warp on icosphere ``level`` is a (V, 3) array: template grid vertex i corresponds to the point
``warp[i]`` of the (rotated) moving sphere. :func:`apply_warp` moves points through its inverse
(piecewise linear on the mesh), :func:`upsample_warp` refines it as the model upsamples its
control points, :func:`smooth_warp` low-passes its displacement (a network's warp, before it is
upsampled), :func:`warp_folded_triangles` counts the triangles it flips and
:func:`unfold_warp` removes them by local smoothing.
"""

from __future__ import annotations

from concurrent.futures import Executor
from functools import lru_cache, partial
from typing import Any

import numpy as np

from ..io.templates import TEMPLATE_LEVEL
from ..sphere.distortion import folded_triangles, triangle_orientation
from ..sphere.icosphere import icosphere, level_of, n_vertices, unit_icosphere
from ..sphere.locate import SphereLocator, unit, vertex_fans
from ..sphere.unfold import unfold_mesh
from .overlap import split_rows

__all__ = ["RADIUS", "NETWORK_SMOOTHING_ICO5", "network_smoothing", "upsample_warp", "smooth_warp",
           "lowpass_level", "lowpass_network_warp", "apply_warp",
           "grid_vertices_near", "warp_folded_triangles", "unfold_warp"]

#: radius (mm) of the template grid and of every output sphere
RADIUS = 100.0

#: :func:`smooth_warp` iterations applied to a network's warp on icosphere 5 (a Gaussian of
#: ~2.5 ico-5 edges, ~5 deg). Measured 2026-12-05 (docs/models.md, "Smoothing the network's
#: warp"): 0 / 8 / 15 / 30 iterations, the networks of then alone, median error on 27 cases: 15
#: lowered every one and halved the areal distortion. The fifth session's sulc-fsaverage (trained
#: on larger warps) and sulc-fsLR, 15 -> 25: every real pair and the full-resolution known-warp
#: pair closer (0.01-0.03 deg), an individual brain's areal p95 1.20 -> 0.97 (docs/models.md).
NETWORK_SMOOTHING_ICO5 = 25


def upsample_warp(warp: np.ndarray, level: int, target_level: int = TEMPLATE_LEVEL) -> np.ndarray:
    """Upsample a (n_vertices(level), 3) warp to icosphere ``target_level`` (any radius in,
    radius 100 out): each added vertex is the normalised mean of its two parents' positions,
    as the model upsamples its control points."""
    import torch

    from ..model.warp import upsample_displacement

    w = np.asarray(warp, dtype=np.float64)
    if len(w) != n_vertices(level):
        raise ValueError(f"warp has {len(w)} points, icosphere level {level} has {n_vertices(level)}")
    if level == target_level:
        return unit(w) * RADIUS
    up = upsample_displacement(torch.from_numpy(unit(w))[None], level, target_level)[0]
    return unit(up.numpy()) * RADIUS


def network_smoothing(level: int) -> int:
    """:func:`smooth_warp` iterations for a network's warp on icosphere ``level``: the same
    width on the sphere as :data:`NETWORK_SMOOTHING_ICO5` on ico-5 (edges halve per level, and
    the width grows as the square root of the iterations)."""
    return max(1, int(round(NETWORK_SMOOTHING_ICO5 * 4.0 ** (int(level) - 5))))


def smooth_warp(warp: np.ndarray, level: int, iterations: int) -> np.ndarray:
    """Low-pass a (n_vertices(level), 3) warp's displacement on icosphere ``level``.

    The displacement ``warp - x`` (unit sphere) goes through ``iterations`` steps of the umbrella
    smoothing the optimiser applies to its images (:func:`geomorph_bids.model.optimise.smooth_on_ico`:
    every vertex moves half-way to the mean of its one ring; ~a Gaussian of
    ``sqrt(iterations) / 2`` edges); the result is projected back onto the sphere.
    Returns (V, 3) float64 on the unit sphere (``iterations`` 0: the warp, normalised).
    """
    import torch

    from ..model.optimise import smooth_on_ico

    w = unit(np.asarray(warp, dtype=np.float64))
    if iterations <= 0:
        return w
    x = unit(icosphere(level)[0])
    if w.shape != x.shape:
        raise ValueError(f"warp must be ({len(x)}, 3) for icosphere level {level}, got {w.shape}")
    d = smooth_on_ico(torch.from_numpy(w - x)[None], int(iterations), level)[0].numpy()
    return unit(x + d)


def lowpass_level(config: Any) -> int:
    """The icosphere level a network's warp is low-passed on (:func:`lowpass_network_warp`), from
    its ``GeoMorphConfig``: a one-stage network's control grid (its warp is that grid upsampled),
    else its data level (a cascade's composed warp carries every stage's detail)."""
    stages = config.stages
    return int(stages[0].control_level) if len(stages) == 1 else int(config.data_level)


def lowpass_network_warp(warp: np.ndarray, level: int, iterations: int, control_level: int | None = None,
                         target_level: int = TEMPLATE_LEVEL) -> np.ndarray:
    """A network's (n_vertices(level), 3) warp, low-passed as :func:`smooth_warp` with ``iterations``
    steps on ``level``, then upsampled to ``target_level``: (n_vertices(target_level), 3) float64,
    unit sphere.

    ``control_level``: the level of the control grid the warp was upsampled from (a one-stage
    network's; the icospheres are nested, so its control points are the warp's first
    n_vertices(control_level) rows). The low-pass then runs on those points with
    ``iterations / 4 ** (level - control_level)`` steps, rounded up (the same width on the sphere,
    or a little more: edges halve per level and the width grows as the square root of the steps),
    with 4x fewer points per level, and their smoothed displacement is upsampled. A warp smooth at
    that scale is what the steps on ``level`` leave of it too: on the benchmark's 164k-vertex
    subject, 50 / 100 / 200 ico-5 steps and 13 / 25 / 50 ico-4 steps differ by a median
    0.002 / 0.0004 / 0.0002 deg (docs/benchmarks.md, twelfth session). None (or ``level``): on
    ``level`` itself.
    """
    control = level if control_level is None else int(control_level)
    if not 0 <= control <= level:
        raise ValueError(f"control level {control} must lie between 0 and the warp's level {level}")
    w = np.asarray(warp, dtype=np.float64)
    if len(w) != n_vertices(level):
        raise ValueError(f"warp has {len(w)} points, icosphere level {level} has {n_vertices(level)}")
    steps = -(-int(iterations) // 4 ** (level - control)) if iterations > 0 else 0  # rounded up
    return unit(upsample_warp(smooth_warp(w[:n_vertices(control)], control, steps), control, target_level))


@lru_cache(maxsize=None)
def _ico_fans(level: int) -> np.ndarray:
    """(V, 6) int32 faces around each vertex of icosphere ``level`` (cached, read-only): every warp
    on that level shares the icosphere's topology."""
    fans = vertex_fans(icosphere(level)[1], n_vertices(level))
    fans.setflags(write=False)
    return fans


def apply_warp(points: np.ndarray, warp: np.ndarray, level: int | None = None,
               near: np.ndarray | None = None, worker: Executor | None = None) -> np.ndarray:
    """Move points from the (rotated) moving sphere into template space through the INVERSE
    of a pull-back warp.

    Parameters
    ----------
    points : (N, 3) points on the rotated moving sphere (any radius).
    warp : (V, 3) pull-back warp on icosphere ``level`` (any radius): template grid vertex i
        corresponds to the moving-space point ``warp[i]``.
    level : icosphere level of ``warp`` (default: inferred from V).
    near : optional (N,) int grid vertex indices, -1 where unknown: a grid vertex whose warped
        position is near each point (:func:`grid_vertices_near`); the points are then sought
        around it first instead of through a k-d tree over the warped grid (same result).
    worker : an executor (:func:`~geomorph_bids.engine.overlap.side_worker`) that moves part of
        the points beside the caller (:func:`~geomorph_bids.engine.overlap.split_rows`: each point
        is moved alone, so the same bits); None: all in the caller.

    Returns
    -------
    (N, 3) float64 on the radius-100 sphere: each point is located in the warped mesh
    (ico vertices at ``warp``, ico faces) and the same barycentric weights are applied to the
    original ico vertices. Exact inverse of the piecewise-linear warp where it does not fold.
    """
    warp = np.asarray(warp, dtype=np.float64)
    level = level_of(len(warp)) if level is None else int(level)
    ico_f = icosphere(level)[1]
    if warp.shape != (n_vertices(level), 3):
        raise ValueError(f"warp must be ({n_vertices(level)}, 3) for icosphere level {level}, got {warp.shape}")
    locator = SphereLocator(warp, ico_f, _ico_fans(level))
    move = partial(_moved, locator, unit_icosphere(level))
    points = np.asarray(points, dtype=np.float64)
    # in four runs: the caller takes those the worker (busy first with register's distortion reference)
    # has not started, and neither waits long for the other at the end
    return move(points, near)[0] if worker is None else split_rows(worker, move, points, near, pieces=4)[0]


def _moved(locator: SphereLocator, grid: np.ndarray, points: np.ndarray, near: np.ndarray | None
           ) -> tuple[np.ndarray]:
    """:func:`apply_warp` of (N, 3) ``points`` with the warped grid's ``locator`` and the grid's
    unit vertices ``grid``: a 1-tuple of the (N, 3) moved points (radius 100), row by row."""
    face, w = locator.locate(points, near=near)
    corners = grid.take(locator.faces.take(face, axis=0), axis=0)  # take: rows[idx], 2-3x faster
    return (unit(np.einsum("nk,nkd->nd", w, corners)) * RADIUS,)


def grid_vertices_near(corners: np.ndarray, faces: np.ndarray, fans: np.ndarray) -> np.ndarray:
    """A warp grid vertex near each vertex of the moving mesh, from where the warp put the grid.

    Parameters
    ----------
    corners : (V_grid, 3) int, the moving-mesh triangle (its corners) that holds each warped grid
        vertex (e.g. :func:`~geomorph_bids.sphere.resample.corner_weights` of the warp).
    faces : (F, 3) int, the moving mesh's triangles.
    fans : (V, D) int, triangles around each moving vertex
        (:func:`~geomorph_bids.sphere.locate.vertex_fans`, :attr:`SphereLocator.fans`).

    Returns
    -------
    (V,) int64 grid vertex indices, -1 where none was found: a corner of a triangle holding
    warped grid vertex i gets i (it lies within one moving triangle of it); a vertex without one
    takes the one of a corner of a triangle around it (the fan's first triangle, then its second,
    ...: within one ring). The ``near`` of :func:`apply_warp`.
    """
    faces, fans = np.asarray(faces), np.asarray(fans)
    near = np.full(len(fans), -1, dtype=np.int64)
    near[np.asarray(corners).ravel()] = np.repeat(np.arange(len(corners), dtype=np.int64), 3)
    for column in range(fans.shape[1]):
        missing = np.flatnonzero(near < 0)
        if not missing.size:
            break
        near[missing] = near[faces[fans[missing, column]]].max(axis=1)
    return near


@lru_cache(maxsize=None)
def _ico_orientation(level: int) -> np.ndarray:
    """(F,) orientation signs of icosphere ``level``'s triangles, as
    :func:`~geomorph_bids.sphere.distortion.folded_triangles` measures them (cached, read-only):
    the reference every warp on that level is compared with."""
    ico_v, ico_f = icosphere(level)
    sides = triangle_orientation(ico_v, ico_f)
    sides.setflags(write=False)
    return sides


def warp_folded_triangles(warp: np.ndarray, level: int | None = None) -> int:
    """Number of icosphere triangles whose orientation the (V, 3) warp flips
    (:func:`~geomorph_bids.sphere.distortion.folded_triangles` against the icosphere)."""
    warp = np.asarray(warp, dtype=np.float64)
    level = level_of(len(warp)) if level is None else int(level)
    if warp.shape != (n_vertices(level), 3):
        raise ValueError(f"warp must be ({n_vertices(level)}, 3) for icosphere level {level}, got {warp.shape}")
    ico_v, ico_f = icosphere(level)
    return int(len(folded_triangles((ico_v, ico_f), (unit(warp) * RADIUS, ico_f),
                                    before_sides=_ico_orientation(level))))


def unfold_warp(warp: np.ndarray, level: int | None = None, max_iterations: int = 200) -> tuple[np.ndarray, int]:
    """Remove folds from a (V, 3) pull-back warp on icosphere ``level`` by local smoothing.

    :func:`geomorph_bids.sphere.unfold.unfold_mesh` with the icosphere as the base: while any
    triangle is folded, the displacement ``warp - x`` at the vertices of the folded triangles and
    their two rings is moved half-way to its neighbours' mean (umbrella Laplacian) and the points
    are projected back onto the sphere; vertices away from folds never move. Returns the warp
    (unit sphere, float64) and the number of iterations used (0: nothing was folded). A network's
    warp can fold where it was trained on too few cases; the pair-wise optimisation is composed
    after its warp and cannot undo a fold in it.
    """
    w = unit(np.asarray(warp, dtype=np.float64))
    level = level_of(len(w)) if level is None else int(level)
    ico_v, ico_f = icosphere(level)
    out, iterations = unfold_mesh(np.asarray(ico_v, dtype=np.float64), w, ico_f, max_iterations,
                                  base_sides=_ico_orientation(level))
    return out, iterations  # unit radius: the mean radius of w

"""Checks on surface meshes and per-vertex feature maps read from files.

Every check raises :class:`geomorph_bids.errors.InputError` with a one-line
message naming the file, what is wrong and, where possible, what to do.  The
checks are plain numpy functions so that later code (engine, interfaces) can
reuse them on arrays that did not come from a file (``path=None``).

Sphere conventions (see :func:`validate_sphere`): a sphere is centred at the
origin with radius 100 mm, triangles wound counter-clockwise seen from outside.
"""

from __future__ import annotations

import warnings
from concurrent.futures import Executor
from pathlib import Path
from typing import Sequence

import numpy as np

from geomorph_bids.errors import InputError
from geomorph_bids.sphere.mesh import (areas_and_volumes, in_float_range, nonfinite_rows, repeated_sides, row_norms,
                                      signed_volumes)
from geomorph_bids.sphere.rigid import MIN_VALID_FRACTION  # the bound the rigid fit also refuses below

__all__ = [
    "MIN_RELATIVE_SD",
    "SPHERE_RADIUS", "SPHERE_SPREAD_TOL", "SPHERE_RADIUS_RATIO", "MIN_SPHERE_VERTICES", "MIN_REGISTRATION_VERTICES",
    "check_registration_density", "SphereWarning", "hemi_code",
    "check_faces", "check_finite", "check_vertex_count", "check_mesh",
    "fit_sphere", "count_folded", "orient_faces", "validate_sphere", "check_closed", "validate_feature",
    "FeatureWarning", "OUTLIER_IQR", "clip_outliers", "MIN_VALID_FRACTION", "MAX_ZERO_FRACTION",
    "check_zero_fraction", "no_data", "MAX_NO_DATA_FRACTION", "MIN_PLATEAU_FRACTION", "PLATEAU_RATIO",
    "MIN_REGION_FRACTION",
]

PathLike = str | Path | None

#: Radius (mm) of every sphere handed to the rest of the package.
SPHERE_RADIUS = 100.0
#: Largest accepted radius spread (std / mean of the distances to the fitted
#: centre).  Real spheres measure < 3e-5 (FreeSurfer fsaverage5, HCP 32k, fsLR
#: 164k); white, pial and inflated surfaces measure 0.28-0.33.
SPHERE_SPREAD_TOL = 0.05
#: Largest accepted ratio of the largest to the smallest vertex distance to the fitted centre: the
#: limit point location applies (``sphere.resample``), checked here so that a sphere refused there
#: (a 6 % ellipsoid, whose spread passes; one vertex at the centre or 10x out) is refused up front,
#: naming its file and the vertex. Real spheres: 1.00001.
SPHERE_RADIUS_RATIO = 1.1
#: Relative centre offset / radius error below which a sphere is left untouched.
SPHERE_POSE_TOL = 1e-3
#: Fewest vertices of a sphere that is read: the icosahedron's, the coarsest icosphere. Fewer cannot
#: cover the sphere (a tetrahedron's triangles cover 0.26 of it, an octahedron's 0.39), and were refused
#: as "partial (a patch?)", which they are not. A registration needs more
#: (:data:`MIN_REGISTRATION_VERTICES`, 162).
MIN_SPHERE_VERTICES = 12
#: Fewest vertices of a sphere that is registered (ico-2). Coarser, the vertices are too far apart (34
#: degrees at 42) to carry the sulcal pattern that decides the rotation: FreeSurfer's fsaverage sulc sampled at
#: the nested icospheres' vertices and rotated registered 34.6 degrees off at 12 vertices (flagged only for its
#: correlation), 7.5 at 42 (passing every gate: CC 0.66), 1.6 at 162, 0.16 at 642 (fsaverage3), 0.02 at 2,562,
#: and 0.5-0.7 on random 250-400-vertex subsets of fsaverage (:func:`check_registration_density`)
MIN_REGISTRATION_VERTICES = 162
MAX_FOLDED_FRACTION = 1e-3  # folded triangles tolerated (with a warning) on input spheres
#: a triangle of at most this fraction of the mean triangle area has none (its corners coincide)
ZERO_AREA = 1e-9

#: Largest fraction of exact zeros a map has without a warning. Measured: HCP's medial wall
#: (smriprep's atlasroi) is 8.5-8.6 % of fsLR 32k/59k vertices; FreeSurfer's thickness and curv are 0
#: on 2.6-3.0 % of fsaverage5 (nilearn), sulc on none (fsaverage 164k, the example subject); the
#: bundled templates' curv on 2.0-2.4 %. 25 % is nearly three times the largest medial wall and
#: catches a map a third zero-filled (QA: 30 % zero-filled registered 7 degrees off at p95, silently).
MAX_ZERO_FRACTION = 0.25

#: Smallest standard deviation of a map's non-zero values (other than 0: a mask-like map), as a fraction of their mean's
#: magnitude. Below it the map is a large constant with a trace of variation: float32 (GIFTI's, FreeSurfer's
#: morph files') holds about 7 significant digits, so sulc (SD ~0.6 mm) stored with an offset of 1e7 keeps 5
#: distinct values, and the z-scoring refused it as "constant ... (value 1e+07, SD 0.627)", naming no file.
#: Real maps are far above it (sulc's mean is near 0; thickness SD/mean 0.3, myelin 0.2); z-scoring needs 1e-7.
MIN_RELATIVE_SD = 1e-6

_HEMIS = {"l": "L", "left": "L", "lh": "L", "cortexleft": "L",
          "r": "R", "right": "R", "rh": "R", "cortexright": "R"}


class SphereWarning(UserWarning):
    """A sphere was accepted but recentred or rescaled to radius 100."""


class FeatureWarning(UserWarning):
    """A feature map was accepted but some of its values were clipped (:func:`clip_outliers`),
    or it is 0 on far more vertices than a medial wall (:func:`check_zero_fraction`)."""


#: how far beyond the quartiles (in interquartile ranges) a feature value may lie before it is
#: clipped: real sulc, curvature, thickness and myelin maps stay within ~5
OUTLIER_IQR = 20.0


def hemi_code(hemi: str) -> str:
    """Return ``'L'`` or ``'R'`` for any of L/R, left/right, lh/rh, CortexLeft/CortexRight."""
    code = _HEMIS.get(str(hemi).strip().lower())
    if code is None:
        raise ValueError(f"hemisphere must be 'L' or 'R' (or left/right, lh/rh), got {hemi!r}")
    return code


def check_finite(values: np.ndarray, path: PathLike = None, what: str = "feature map", *,
                 allow_nan: bool = False) -> None:
    """Raise InputError if ``values`` holds NaN or Inf, saying how many (``allow_nan``: Inf only, NaN
    being a registration map's no-data mark, :func:`no_data`)."""
    v = np.asarray(values)
    if v.dtype.kind not in "fc":
        return
    bad = np.isinf(v) if allow_nan else ~np.isfinite(v)
    if bad.any():
        n_nan = int(np.isnan(v[bad]).sum())
        n_inf = int(bad.sum()) - n_nan
        raise InputError(
            f"{what} has {int(bad.sum())} non-finite values ({n_nan} NaN, {n_inf} Inf) out of {v.size}; "
            "replace them with finite numbers (0 on the medial wall)", path=path)


def check_vertex_count(n_found: int, n_expected: int | None, path: PathLike = None,
                       what: str = "feature map", sphere: PathLike = None) -> None:
    """Raise InputError if a per-vertex map does not have ``n_expected`` vertices; ``sphere``:
    the sphere's file, named too (which of the two files is of another mesh is for the user to
    see)."""
    if n_expected is not None and int(n_found) != int(n_expected):
        named = f" {sphere}" if sphere is not None else ""
        mesh = _TEMPLATE_MESHES.get(int(n_found))
        already = "" if mesh is None else (
            f" ({int(n_found)} is the vertex count of {mesh}: a map already resampled onto a template, as "
            "HCP's fsaverage_LR32k/ and 164k_fs_LR maps are; give the map on the native mesh, e.g. HCP's "
            "MNINonLinear/Native/<S>.<L or R>.MyelinMap_BC.native.func.gii)")
        raise InputError(
            f"{what} has {int(n_found)} vertices but the sphere{named} has {int(n_expected)}; "
            f"features must be on the same subject's native mesh as the sphere{already}", path=path)


#: vertex counts of the template meshes a map already registered to a template is on (fsaverage5
#: and fsaverage6, 10,242 and 40,962, are left out: subjects are resampled to them as native meshes)
_TEMPLATE_MESHES = {32492: "fsLR 32k", 59292: "fsLR 59k", 163842: "fsLR 164k or fsaverage"}


def check_faces(faces: np.ndarray, n_vertices: int, path: PathLike = None) -> np.ndarray:
    """Return faces as (F, 3) int64 after checking shape and index range.

    Raises InputError for an empty or badly shaped triangle array, non-integer
    indices, negative indices, or indices >= ``n_vertices``.
    """
    f = np.asarray(faces)
    if f.ndim != 2 or f.shape[1] != 3:
        hint = "; transposed? pass faces.T" if f.ndim == 2 and f.shape[0] == 3 else ""
        raise InputError(f"triangle array has shape {f.shape}, expected (F, 3){hint}", path=path)
    if f.shape[0] == 0:
        raise InputError("surface has no triangles", path=path)
    if f.dtype.kind == "f":
        if not np.isfinite(f).all() or not np.array_equal(f, np.round(f)):
            raise InputError("triangle array holds non-integer vertex indices", path=path)
    elif f.dtype.kind not in "iu":
        raise InputError(f"triangle array has non-numeric type {f.dtype}", path=path)
    f = f.astype(np.int64)
    # the smallest and largest index first (a valid mesh costs two reductions); the counts for a message
    lo, hi = int(f.min()), int(f.max())
    if lo < 0:
        n_neg = int((f < 0).any(axis=1).sum())
        raise InputError(f"{n_neg} of {len(f)} triangles use negative vertex indices "
                         f"(min {lo}); the file is corrupted", path=path)
    if hi >= n_vertices:
        n_out = int((f >= n_vertices).any(axis=1).sum())
        one_based = lo == 1 and hi == int(n_vertices)
        raise InputError(f"{n_out} of {len(f)} triangles reference vertices that do not exist "
                         f"(max index {hi}, only {int(n_vertices)} vertices); "
                         + ("the indices start at 1 (MATLAB's convention?): subtract 1, vertex indices start at 0"
                            if one_based else "the file is corrupted or the vertices are truncated"), path=path)
    return f


def check_mesh(vertices: np.ndarray, faces: np.ndarray,
               path: PathLike = None) -> tuple[np.ndarray, np.ndarray]:
    """Return ((V, 3) float64 vertices, (F, 3) int64 faces) after basic checks.

    Checks: shapes, at least 4 vertices, finite coordinates, face indices in range.
    """
    v = np.asarray(vertices)
    if v.ndim != 2 or v.shape[1] != 3:
        hint = "; transposed? pass vertices.T" if v.ndim == 2 and v.shape[0] == 3 else ""
        raise InputError(f"vertex array has shape {v.shape}, expected (V, 3){hint}", path=path)
    if v.shape[0] < 4:
        raise InputError(f"surface has only {v.shape[0]} vertices", path=path)
    if v.dtype.kind not in "iuf":
        raise InputError(f"vertex array has non-numeric type {v.dtype}", path=path)
    v = v.astype(np.float64)  # a copy: the caller's array is never the one returned
    bad = nonfinite_rows(v)
    if bad.any():  # a position cannot be "missing" like a medial-wall value: the mesh is damaged
        raise InputError(f"{int(bad.sum())} of {len(v)} vertices have non-finite coordinates (NaN or Inf, "
                         f"first at vertex {int(np.argmax(bad))}): the surface is corrupted; regenerate it "
                         "or take it again from the original", path=path)
    return v, check_faces(faces, len(v), path)


def fit_sphere(vertices: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Least-squares sphere through the vertices.

    Solves |x|^2 = 2 c.x + k (algebraic fit).  The vertex mean is not used as
    the centre: on meshes with uneven vertex density (fsLR 164k) it is off by
    2 mm, which inflates the spread of an exact sphere from 4e-8 to 0.012.

    Returns
    -------
    centre : (3,) float64, same units as vertices
    radius : float, mean distance to the centre
    spread : float, std / mean of the distances to the centre (0 for a sphere)
    """
    centre, r = _fit(np.asarray(vertices, dtype=np.float64))
    return (centre, *_radius_spread(r))


def _radius_spread(r: np.ndarray) -> tuple[float, float]:
    """:func:`fit_sphere`'s radius and spread from the (V,) distances to the centre."""
    mean = float(r.mean())
    return mean, float(r.std() / mean) if mean > 0 else np.inf


def _fit(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`fit_sphere`'s centre (3,) and the (V,) distances of float64 ``v`` to it."""
    shift = v.mean(axis=0)                     # conditioning only
    x = v - shift
    # Normal equations of |x|^2 = 2 c.x + k: with x centred, the constant column is orthogonal
    # to the others, so c solves (x'x) c = x'|x|^2 / 2 (3 x 3) and k = mean |x|^2; 5x faster
    # than a (V, 4) least-squares solve, the same centre to 1e-12 mm on a sphere
    sq = np.einsum("ij,ij->i", x, x)
    gram = x.T @ x
    rhs = 0.5 * (x.T @ sq)
    try:
        c = np.linalg.solve(gram, rhs)
    except np.linalg.LinAlgError:  # all vertices in a plane or on a line: no sphere fits
        c = np.linalg.lstsq(gram, rhs, rcond=None)[0]
    centre = c + shift
    return centre, row_norms(v - centre)


def count_folded(vertices: np.ndarray, faces: np.ndarray) -> int:
    """Number of triangles wound clockwise seen from outside a sphere centred at 0."""
    return int((signed_volumes(vertices, faces) < 0).sum())


def orient_faces(vertices: np.ndarray, faces: np.ndarray, path: PathLike = None,
                 max_folded: int | None = None, volumes: np.ndarray | None = None) -> np.ndarray:
    """Return faces wound outward on a sphere centred at the origin.

    If more than half the triangles point inward the whole mesh has reversed
    winding (a convention, not damage): every triangle is flipped, silently.
    If afterwards some triangles still point inward and they are wound against their
    neighbours (corners listed in arbitrary order, as a convex hull's, however few), each
    inward one is turned outward, with a :class:`SphereWarning`, when that makes the
    winding consistent. Otherwise they are folds: more than ``max_folded`` of them and
    InputError says how many. The default tolerates
    ``MAX_FOLDED_FRACTION`` of the triangles (real FreeSurfer spheres can keep a
    handful of tiny folds) with a :class:`SphereWarning`. ``volumes``: the (F,)
    :func:`~geomorph_bids.sphere.mesh.signed_volumes` of these vertices and faces, if at hand.
    """
    f = np.asarray(faces, dtype=np.int64)
    n_in = count_folded(vertices, f) if volumes is None else int((np.asarray(volumes) < 0).sum())
    if n_in > len(f) / 2:
        f = f[:, [0, 2, 1]]
        n_in = count_folded(vertices, f)
    if max_folded is None:
        max_folded = int(MAX_FOLDED_FRACTION * len(f))
    if n_in:  # a few triangles listed the other way round are not folds either (one sort, only here)
        f, n_in = _rewound(vertices, f, n_in, path)
    if 0 < n_in <= max_folded:
        warnings.warn(f"{path if path is not None else 'sphere'}: {n_in} of {len(f)} triangles are "
                      f"folded (tolerated, below the limit of {max_folded})", SphereWarning, stacklevel=2)
    if n_in > max_folded:
        raise InputError(f"{n_in} of {len(f)} triangles are folded (wound inward) on the sphere; "
                         "the spherical mesh is not a valid embedding: regenerate it "
                         "(e.g. FreeSurfer mris_sphere) or fix the folds", path=path)
    return f


def _rewound(vertices: np.ndarray, faces: np.ndarray, n_in: int, path: PathLike) -> tuple[np.ndarray, int]:
    """Faces whose winding disagrees from triangle to triangle (a convex hull's, or any listing in
    arbitrary corner order): each inward one turned outward, with a :class:`SphereWarning`, when
    that makes the mesh consistently wound. A fold keeps its triangles' winding consistent (its
    geometry turns them over), so turning them gives an inconsistent mesh: then the faces and
    ``n_in`` come back unchanged, to be refused as folded."""
    if not repeated_sides(faces):
        return faces, n_in
    inward = signed_volumes(vertices, faces) < 0
    turned = faces.copy()
    turned[inward] = turned[inward][:, [0, 2, 1]]
    if repeated_sides(turned):
        return faces, n_in
    warnings.warn(f"{path if path is not None else 'sphere'}: {n_in} of {len(faces)} triangles were wound "
                  "against their neighbours (corners in arbitrary order, as a convex hull lists them); "
                  "turned outward", SphereWarning, stacklevel=3)
    return turned, 0


def check_registration_density(vertices: np.ndarray, faces: np.ndarray, path: str | Path | None = None) -> None:
    """Refuse a sphere ((V, 3) vertices, (F, 3) faces; read from ``path``, named) of fewer than
    :data:`MIN_REGISTRATION_VERTICES` vertices: one InputError line with its mean edge in degrees. Called by the
    input loader (:func:`~geomorph_bids.io.hemisphere.read_hemisphere`) and by ``register()``; the sphere itself
    may still be read (:func:`validate_sphere`: from 12 vertices)."""
    n = len(vertices)
    if n >= MIN_REGISTRATION_VERTICES:
        return
    u = np.asarray(vertices, dtype=np.float64)
    u = u / np.linalg.norm(u, axis=1, keepdims=True)
    ends = np.asarray(faces, dtype=np.int64)
    cosines = np.einsum("ij,ij->i", u[ends].reshape(-1, 3), u[np.roll(ends, 1, axis=1)].reshape(-1, 3))
    spacing = np.degrees(np.mean(np.arccos(np.clip(cosines, -1.0, 1.0))))
    raise InputError(f"has only {n} vertices: too coarse to register (its vertices are about {spacing:.0f} degrees "
                     f"apart, too far to follow the folds; at least {MIN_REGISTRATION_VERTICES} are needed, an ico-2 "
                     "sphere; FreeSurfer's fsaverage3 has 642, a subject's sphere ~130,000): pass the subject's "
                     "spherical surface (e.g. lh.sphere)", path=path)


def validate_sphere(vertices: np.ndarray, faces: np.ndarray, path: PathLike = None, *,
                    radius: float = SPHERE_RADIUS, spread_tol: float = SPHERE_SPREAD_TOL,
                    max_folded: int | None = None, worker: Executor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Check that a mesh is a sphere and return it in standard pose.

    Parameters
    ----------
    vertices : (V, 3) array, mm
    faces : (F, 3) integer array
    path : file named in messages
    radius : radius of the returned sphere, mm
    spread_tol : reject if std/mean of the radii about the fitted centre exceeds this
    max_folded : number of inward triangles tolerated after fixing the winding
        (default: ``MAX_FOLDED_FRACTION`` of them)
    worker : an executor (e.g. a one-thread pool) that measures the triangles of the mesh as
        given beside the fit of its sphere, on another CPU (kept unless the mesh is recentred or
        rescaled; the same bits); None: after the fit.

    Returns
    -------
    vertices : (V, 3) float64, centred at 0 with mean radius ``radius`` (mm).
        A sphere off-centre or of another radius (e.g. a unit sphere) is accepted,
        recentred and rescaled, with a :class:`SphereWarning`.
    faces : (F, 3) int64, wound outward (reversed winding flipped silently; triangles wound
        against their neighbours turned outward with a :class:`SphereWarning`).

    Raises
    ------
    InputError : fewer than ``MIN_SPHERE_VERTICES`` vertices, not a sphere (white/pial/inflated
        surface; vertex distances to the centre more than ``SPHERE_RADIUS_RATIO`` apart), a surface not covering the sphere, or folded triangles.
    """
    v, f = check_mesh(vertices, faces, path)
    if len(v) < MIN_SPHERE_VERTICES:
        raise InputError(f"has only {len(v)} vertices: a sphere needs at least {MIN_SPHERE_VERTICES} (an icosahedron) "
                         "to be closed, 162 to be registered, and real ones have thousands (FreeSurfer's ~130,000); "
                         "pass the subject's spherical surface (e.g. lh.sphere)", path=path)
    # the triangles of the mesh as given: those measured below unless it is moved to standard pose
    ahead = None if worker is None else worker.submit(areas_and_volumes, v, f)
    centre, radii = _fit(v)  # fit_sphere's, with the distances it measured
    r, spread = _radius_spread(radii)
    if not np.isfinite(spread) or spread > spread_tol:
        raise InputError(
            f"is not a sphere: vertex distances to the best-fit centre vary by {spread:.3g} "
            f"(std/mean; a sphere has < {spread_tol:g}); pass the spherical surface "
            "(e.g. lh.sphere or lh.sphere.reg), not white/pial/inflated", path=path)
    if radii.max() > SPHERE_RADIUS_RATIO * radii.min():  # the spread hides a few: one vertex at the centre
        lo, hi = int(np.argmin(radii)), int(np.argmax(radii))
        raise InputError(
            f"is not a sphere: vertex distances to the best-fit centre range from {radii[lo]:.3g} "
            f"(vertex {lo}) to {radii[hi]:.3g} (vertex {hi}), more than {SPHERE_RADIUS_RATIO:g} times apart "
            "(a sphere's are equal): a vertex at the centre or far out is a corrupted file, a "
            "flattened or bumpy one not a sphere; pass the spherical surface (e.g. lh.sphere)", path=path)
    off = float(np.linalg.norm(centre))
    if off > SPHERE_POSE_TOL * r or abs(r - radius) > SPHERE_POSE_TOL * radius:
        warnings.warn(
            f"{path if path is not None else 'sphere'}: centre ({centre[0]:.3g}, {centre[1]:.3g}, "
            f"{centre[2]:.3g}), radius {r:.4g}; recentred to the origin and rescaled to radius "
            f"{radius:g}", SphereWarning, stacklevel=2)
        v = (v - centre) * (radius / r)
        ahead = None
    areas, volumes = ahead.result() if ahead is not None else areas_and_volumes(v, f)  # one gather for both
    coverage = float(areas.sum() / (4.0 * np.pi * radius ** 2))
    if not 0.5 < coverage < 1.5:
        raise InputError(f"triangles cover {coverage:.2f} times the sphere's area (expected about 1): "
                         "the mesh is partial (a patch?) or has duplicated triangles", path=path)
    check_closed(f, len(v), path, vertices=v)
    # corners at one position (duplicated vertices): no area, so no distortion can be measured; real
    # meshes' thinnest slivers keep >= 1e-4 of the mean area (FreeSurfer/cat-surf spheres)
    flat = areas <= ZERO_AREA * coverage * 4.0 * np.pi * radius ** 2 / len(f)
    if flat.any():
        first = int(np.argmax(flat))
        raise InputError(f"{int(flat.sum())} of {len(f)} triangles have no area (first: triangle {first}, vertices "
                         f"{f[first].tolist()}): corners at one position, duplicated vertices? The file is "
                         "corrupted: regenerate the sphere", path=path)
    return v, orient_faces(v, f, path, max_folded=max_folded, volumes=volumes)


def check_closed(faces: np.ndarray, n_vertices: int, path: PathLike = None, *,
                 vertices: np.ndarray | None = None) -> None:
    """Refuse a triangle mesh that cannot be a whole sphere: one with a triangle that names a
    vertex twice (no area: a corrupted file), a hole (edges used by one triangle only, e.g. a
    cut-out medial wall) or vertices no triangle uses.

    A closed genus-0 mesh whose every vertex is used has exactly ``2 V - 4`` triangles (Euler),
    so a valid sphere costs one comparison and a vertex count (the count alone is not enough:
    ``2 V - 4`` copies of one triangle have it too); only other meshes are diagnosed (an edge
    count). Duplicated triangles alone are accepted. With ``vertices`` (radius-100 positions), a
    hole whose edges run between copies of one position is named as what it is: a mesh split
    along a seam (duplicated vertices, as some exporters write), not a missing piece.
    """
    f = np.asarray(faces, dtype=np.int64)
    twice = (f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 2] == f[:, 0])
    if twice.any():
        first = int(np.argmax(twice))
        raise InputError(f"{int(twice.sum())} of {len(f)} triangles name one vertex twice (first: triangle "
                         f"{first}, vertices {f[first].tolist()}): they have no area; the file is corrupted, "
                         "regenerate the sphere", path=path)
    unused = n_vertices - int(np.count_nonzero(np.bincount(f.ravel(), minlength=n_vertices)))
    if len(f) == 2 * n_vertices - 4 and not unused:
        return
    edges = np.sort(f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    _, counts = np.unique(edges[:, 0] * n_vertices + edges[:, 1], return_counts=True)
    border = int(np.count_nonzero(counts == 1))
    also = f" (and {unused} of {n_vertices} vertices belong to no triangle)" if unused else ""
    copies = 0 if vertices is None else n_vertices - len(np.unique(np.round(vertices, 4), axis=0))
    if border and copies:
        raise InputError(f"the mesh is split along a seam: {copies} vertices repeat the position of another "
                         f"vertex, and {border} edges belong to one triangle only{also}; merge the duplicated "
                         "vertices (one vertex per position) or pass the sphere as FreeSurfer or Workbench "
                         "wrote it", path=path)
    if border:
        raise InputError(f"the mesh has a hole: {border} edges belong to one triangle only{also}, e.g. "
                         "a cut-out medial wall; a spherical registration needs the whole closed sphere "
                         "(e.g. FreeSurfer's lh.sphere)", path=path)
    if unused:
        raise InputError(f"{unused} of {n_vertices} vertices belong to no triangle; pass the whole "
                         "spherical mesh as written by FreeSurfer or Workbench", path=path)


def clip_outliers(values: np.ndarray, name: str = "feature map") -> np.ndarray:
    """Clip the values of a (V,) map that lie more than :data:`OUTLIER_IQR` interquartile ranges
    beyond its quartiles (quartiles of the non-zero values; zeros, e.g. a zeroed medial wall, are
    never touched) to the range of the other values, with one :class:`FeatureWarning` saying how
    many and how far.

    A few corrupted values (1e30 from a broken conversion) would otherwise dominate every
    mean and standard deviation downstream and ruin the registration. Returns float64 (the input
    itself, as float64, when nothing is clipped).
    """
    v = np.asarray(values, dtype=np.float64)
    nonzero = v[v != 0]
    if nonzero.size < 4:
        return v
    q1, q3 = np.percentile(nonzero, [25.0, 75.0])
    spread = q3 - q1
    if not spread > 0:
        return v
    lo, hi = q1 - OUTLIER_IQR * spread, q3 + OUTLIER_IQR * spread
    out = ((v < lo) | (v > hi)) & (v != 0)
    n = int(out.sum())
    if n == 0:
        return v
    worst = float(v[out][np.argmax(np.abs(v[out]))])
    inside = nonzero[(nonzero >= lo) & (nonzero <= hi)]
    lo, hi = float(inside.min()), float(inside.max())  # the most extreme plausible values
    warnings.warn(f"{name}: {n} of {v.size} values lie more than {OUTLIER_IQR:g} interquartile ranges "
                  f"beyond the quartiles (up to {worst:.3g}); clipped to the others' range [{lo:.3g}, {hi:.3g}]",
                  FeatureWarning, stacklevel=2)
    return np.where(out, np.clip(v, lo, hi), v)


def _column_label(k: int, n_columns: int, names: Sequence[str] | None, what: str) -> str:
    """How messages name column ``k`` of a (V, K) map (``what`` for a one-column map without names)."""
    if names is not None and k < len(names):
        return f"column {names[k]!r}"
    return f"column {k + 1}" if n_columns > 1 else what


def validate_feature(values: np.ndarray, path: PathLike = None,
                     names: Sequence[str] | None = None, what: str = "feature map",
                     registered: bool = False) -> np.ndarray:
    """Return a feature map as float64 after checking it can drive a registration.

    Parameters
    ----------
    values : (V,) or (V, K) array
    path : file named in messages
    names : optional column names used in messages
    what : how messages name a one-column map without ``names`` (e.g. ``"feature 'sulc'"``)
    registered : the map drives the registration: also refuse a column constant wherever it is
        non-zero (a constant map with a zero medial wall, e.g. a placeholder myelin map: nothing to
        align). A map only resampled for the outputs may be (a mask-like map).

    Raises InputError if the map is empty, not finite, or if a column is
    all zero or constant (nothing to align), varies by less than :data:`MIN_RELATIVE_SD` of its
    mean (a large offset that float32 files cannot resolve), or is non-zero on fewer than
    :data:`MIN_VALID_FRACTION` of the vertices (0 is read as the medial wall).
    """
    a = np.asarray(values)
    if a.ndim not in (1, 2) or a.size == 0:
        raise InputError(f"feature map has shape {a.shape}, expected (V,) or (V, K) with V > 0", path=path)
    if a.dtype.kind not in "iufb":
        raise InputError(f"feature map has non-numeric type {a.dtype}", path=path)
    a = a.astype(np.float64)
    check_finite(a, path, what)
    cols = a.reshape(len(a), -1)
    lo, hi = cols.min(axis=0), cols.max(axis=0)
    for k in np.flatnonzero(hi == lo):          # loop over columns only
        kind = "all zero" if lo[k] == 0 else f"constant ({lo[k]:g} at every vertex)"
        raise InputError(f"{_column_label(k, cols.shape[1], names, what)} is {kind}: it carries no information "
                         "to register; check that the right file was given", path=path)
    nonzero = np.count_nonzero(cols, axis=0)
    zero = cols == 0
    lo_nz, hi_nz = np.where(zero, np.inf, cols).min(axis=0), np.where(zero, -np.inf, cols).max(axis=0)
    for k in np.flatnonzero((lo_nz == hi_nz) & (nonzero >= MIN_VALID_FRACTION * len(cols)) & registered):
        raise InputError(f"{_column_label(k, cols.shape[1], names, what)} is {lo_nz[k]:g} at every vertex where it "
                         f"is not 0 ({int(nonzero[k])} of {len(cols)}; 0 is read as the medial wall): it carries no "
                         "information to register; check that the right file was given", path=path)
    for k in np.flatnonzero(nonzero >= 2):  # SD 0 (a mask-like map) is judged above, by `registered`
        vals = cols[:, k][cols[:, k] != 0]
        scaled = in_float_range(vals)  # an exact power of two: the same ratio, and 1e300's squares do not overflow
        if 0 < float(scaled.std()) <= MIN_RELATIVE_SD * abs(float(scaled.mean())):
            mean, sd = float(vals.mean()), float(vals.std())  # said in the map's own numbers
            raise InputError(f"{_column_label(k, cols.shape[1], names, what)} is {mean:.7g} plus or minus {sd:.3g}: "
                             f"a constant offset {abs(mean) / sd:.2g} times its variation, beyond what the "
                             "file's numbers resolve; give the map without the offset (e.g. sulc in mm, "
                             "near 0 on average)", path=path)
    for k in np.flatnonzero(nonzero < MIN_VALID_FRACTION * len(cols)):
        raise InputError(f"{_column_label(k, cols.shape[1], names, what)} is non-zero at only {int(nonzero[k])} of "
                         f"{len(cols)} vertices ({100 * nonzero[k] / len(cols):.2g}%); at least "
                         f"{100 * MIN_VALID_FRACTION:g}% must be (0 is read as the medial wall); check that the "
                         "right file was given", path=path)
    return a


#: Largest fraction of a registration map that may hold no data (NaN, a plateau: :func:`no_data`); beyond it
#: the map is refused as before (NaN: "N non-finite values"), as too little cortex would be left to register.
MAX_NO_DATA_FRACTION = 0.5
#: A plateau: one non-zero value repeated at this fraction of a map's vertices or more ...
MIN_PLATEAU_FRACTION = 0.01
#: ... and at this many times as many vertices as any other non-zero value. Measured: a value repeats at most
#: twice in the example's and FreeSurfer fsaverage's sulc, curv and thickness, nilearn's fsaverage5 maps and
#: sMRIPrep's fsLR refsulc (10,242-163,842 vertices), and at most 32 times (0.05%) in brainspace's fsLR maps
#: (stored to 4-5 digits); a quantised map (integers, uint8) repeats many values alike and has no plateau.
PLATEAU_RATIO = 20


#: NaN (or a plateau) is a region, not damage, when at least this fraction of its vertices have a neighbour of it:
#: 100% on a medial wall or a lesion cap; bytes damaged into NaN (a GIFTI whose Endian lies, a byte-swapped morph
#: file: 0.3-0.4% of the vertices, scattered) have one at ~2%, and stay refused (:func:`check_finite`).
MIN_REGION_FRACTION = 0.9


#: A plateau is a fill, not a map clipped at a value by another tool, when the values beside it differ from it
#: by more than this many times the median difference between neighbours elsewhere. Measured on the example's
#: and FreeSurfer fsaverage's sulc (10,242 and 163,842 vertices): a 20-60 degree cap filled with the map's
#: deepest, shallowest or mean value or 0.5: 3.8-61; the map clipped at one end (its 80th to 99.5th percentile,
#: the deepest fundi one value): 0.6-1.1, continuous with the values beside it.
MIN_FILL_JUMP = 2.0


def _edges(faces: np.ndarray) -> np.ndarray:
    """(3F, 2) vertex pairs of the triangles' sides (each inner side twice)."""
    return np.asarray(faces)[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)


def _linked(mask: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V,) bool: the vertices of ``mask`` ((V,) bool) with a neighbour in ``mask`` on the mesh ``faces``."""
    edges = _edges(faces)
    both = edges[mask[edges[:, 0]] & mask[edges[:, 1]]]
    linked = np.zeros(mask.shape, dtype=bool)
    linked[both.ravel()] = True
    return linked


def _a_region(mask: np.ndarray, faces: np.ndarray) -> bool:
    """Whether the vertices of ``mask`` ((V,) bool) form regions of the mesh ``faces`` ((F, 3)): at least
    :data:`MIN_REGION_FRACTION` of them have a neighbour in ``mask``."""
    return bool(_linked(mask, faces)[mask].mean() >= MIN_REGION_FRACTION)


def _a_fill(values: np.ndarray, plateau: np.ndarray, faces: np.ndarray) -> bool:
    """Whether the plateau ``plateau`` ((V,) bool) of the (V,) map ``values`` stands apart from the values beside
    it as a fill does (:data:`MIN_FILL_JUMP`), rather than continuing them as a map clipped at that value does."""
    edges = _edges(faces)
    inside, outside = plateau[edges[:, 0]], plateau[edges[:, 1]]
    rim = edges[inside & ~outside]
    rest = edges[~inside & ~outside]
    if len(rim) == 0 or len(rest) == 0:
        return True
    usual = float(np.median(np.abs(values[rest[:, 0]] - values[rest[:, 1]])))
    jump = float(np.median(np.abs(values[rim[:, 0]] - values[rim[:, 1]])))
    return not usual > 0 or jump > MIN_FILL_JUMP * usual


def no_data(values: np.ndarray, faces: np.ndarray, path: PathLike = None, what: str = "feature map", *,
            plateau: bool = True, compared: bool | None = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Vertices of a (V,) registration map that hold no data, and the map with them 0 (:func:`validate_feature`'s
    and the rigid stage's no-data value), with one :class:`FeatureWarning` line naming ``path``.

    No data: NaN over regions of the mesh ``faces`` (a medial wall or a lesion exported as NaN: HCP/CIFTI-derived
    GIFTI files, nilearn's and brainspace's maps; scattered NaN alone, damaged bytes, are left to
    :func:`check_finite`, and scattered NaN beside such regions are refused here), and a plateau over regions, one
    non-zero value repeated at :data:`MIN_PLATEAU_FRACTION` of the vertices or more and :data:`PLATEAU_RATIO`
    times as often as any other, standing apart from the values beside it (:data:`MIN_FILL_JUMP`; a resection or
    lesion filled with a constant, not a map clipped at that value by another tool; ``plateau=False``: NaN only,
    for maps where a repeated value is real, e.g. FreeSurfer's thickness clamped at 5 mm). Such a region
    registered as data dragged the warp (a 35-degree cap filled with the map's maximum: flagged, the intact cortex
    0.5 degree off); left out of the similarity as a cortex mask leaves the medial wall, it does not. Where more
    than :data:`MAX_NO_DATA_FRACTION` would be no data, the map is returned as it is (NaN is then refused by
    :func:`check_finite`). Raises :class:`~geomorph_bids.errors.InputError` for NaN scattered beside regions.
    ``compared``: whether the registration compares this map (True: left out of the registration, said so;
    False: a map only resampled, left out of the resampling alone; None: not known to the caller, the line says
    "where the registration compares this map"), for the warning's words only.

    Returns (values, float64, NaN and the plateau set to 0; (V,) bool, True where no data, or None: none, and
    ``values`` unchanged)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        return v, None
    nan = np.isnan(v)
    found = np.zeros(v.shape, dtype=bool)
    data = v[~nan & (v != 0) & np.isfinite(v)] if plateau else v[:0]
    if data.size >= MIN_PLATEAU_FRACTION * v.size:
        levels, counts = np.unique(data, return_counts=True)
        top = int(np.argmax(counts))
        # the runner-up's count only for a candidate plateau, and by a maximum: np.partition of a real map's
        # counts (nearly all 1: ~160,000 at 164k vertices) took 21 ms of this function's 29 (the same value)
        if counts[top] >= MIN_PLATEAU_FRACTION * v.size:
            second = max(int(counts[:top].max(initial=0)), int(counts[top + 1:].max(initial=0)))
            if counts[top] >= PLATEAU_RATIO * max(second, 1):
                found = v == levels[top]
    if nan.any() and _a_region(nan, faces):
        scattered = nan & ~_linked(nan, faces)
        if scattered.any():  # a real medial wall or lesion has none (HCP's atlas ROI: 0 of 2,776-2,796)
            raise InputError(f"{what} holds NaN at {int(scattered.sum())} scattered vertices (no NaN neighbour) "
                             f"besides {int((nan & ~scattered).sum())} in regions (a medial wall or lesion, read as "
                             "no data): scattered NaN are damaged values; re-export the map, or set them to finite "
                             "numbers", path=path)
    else:
        nan = np.zeros_like(nan)
    filled = found.any() and _a_region(found, faces) and _a_fill(np.where(nan, 0.0, v), found & ~nan, faces)
    found = found if filled else np.zeros_like(found)
    missing = nan | found
    n = int(missing.sum())
    if n == 0 or n > MAX_NO_DATA_FRACTION * v.size:
        return v, None
    where = f"{path}: " if path is not None else ""
    parts = ([f"NaN at {int(nan.sum())}"] if nan.any() else []) + (
        [f"the one value {float(v[found][0]):.4g} at {int(found.sum())}"] if found.any() else [])
    cause = " and ".join(["a medial wall or lesion exported as NaN?"] * bool(nan.any())
                         + ["a lesion or resection filled with a constant?"] * bool(found.any()))
    left = {True: "left out of the registration as a cortex mask leaves the medial wall",
            False: "left out of the resampling as a cortex mask leaves the medial wall (not of the registration, "
                   "which does not compare this map)",
            None: "left out of the resampling, and of the registration where the registration compares this map, "
                  "as a cortex mask leaves the medial wall"}[compared]
    warnings.warn(f"{where}{what} holds {' and '.join(parts)} of {v.size} vertices ({100 * n / v.size:.1f}%; "
                  f"{cause}): read as no data, {left}, and 0 in the maps written", FeatureWarning, stacklevel=2)
    return np.where(missing, 0.0, v), missing


def check_zero_fraction(values: np.ndarray, path: PathLike = None, what: str = "feature map") -> None:
    """Warn (:class:`FeatureWarning`, one line naming ``path``) when more than
    :data:`MAX_ZERO_FRACTION` of a (V,) map's values are exactly 0: zeros are read as the medial
    wall (left out of the similarity), so a map zero-filled over part of the cortex registers
    there from its neighbours only, a degraded result that nothing else would flag."""
    v = np.asarray(values)
    zeros = v.size - int(np.count_nonzero(v))
    if v.size and zeros > MAX_ZERO_FRACTION * v.size:
        where = f"{path}: " if path is not None else ""
        warnings.warn(f"{where}{what} is exactly 0 at {100 * zeros / v.size:.0f}% of its vertices ({zeros} of "
                      f"{v.size}); 0 is read as the medial wall, which is about 10% of a hemisphere, and those "
                      "vertices are registered from their neighbours only: check that the map was not cut, masked or "
                      "zero-filled", FeatureWarning, stacklevel=2)

"""Nested icosphere hierarchy (levels 0-7, radius 100 mm) and its fixed neighbourhood tables.

Construction
------------
Level 0 is a regular icosahedron. Vertex 0 is the north pole (0, 0, 100), vertex 11 the
south pole; vertices 1..5 form the upper ring (z = 100/sqrt(5)) at longitudes
-72, 0, 72, 144, 216 degrees and vertices 6..10 the lower ring (z = -100/sqrt(5)) at
longitudes -108, -36, 36, 108, 180 degrees (vertex 2 lies in the x-z half plane, x > 0).
Level n+1 splits every triangle of level n into four at its edge midpoints; every new
midpoint is normalised onto the radius-100 sphere. The vertices of level n are exactly the
first ``n_vertices(n)`` vertices of level n+1 (nested hierarchy); the new vertices are
numbered in the order their edges are first met walking the faces of level n.

This base orientation, the face order (walking the rings eastwards, see
``_base_icosahedron``) and the numbering rule reproduce FreeSurfer's icosahedral spheres:
our levels 5 / 6 / 7 have the same vertex order and identical face arrays as fsaverage5 /
fsaverage6 / fsaverage (``?h.sphere``, ic7), so FreeSurfer data on fsaverage* map to our
levels by index, with no resampling. Positions agree to 0.0084 mm (ico-7; 0.0083 mm at
ico-5, against edges of 0.94 / 3.8 mm): FreeSurfer's tables store unit-sphere coordinates
rounded to 4 decimals, which we do not imitate (our vertices are exact normalised midpoints).

Faces are wound counter-clockwise seen from outside: ``a . (b x c) > 0``.

Point location
--------------
``containing_face`` finds the face of a level that holds each of many directions by descending
the hierarchy (the icosahedron's face, then one of four children per level, by three plane
tests in float32): no k-d tree, tables of 36 bytes a face.

Neighbourhood tables
--------------------
Every vertex has 6 neighbours except the 12 vertices of the base icosahedron, which have 5.
``hex_neighbourhood`` lists, per vertex, the vertex itself then its one-ring neighbours
ordered counter-clockwise around the outward normal, starting from the local "east"
direction (see ``local_frames``): the first neighbour is the one with the smallest angle
>= 0 measured from e1 towards e2 in the tangent plane (angles within 1e-9 rad below 2*pi count
as 0, so rounding cannot send a neighbour exactly east to the end). Degree-5 vertices pad the
7th slot with the vertex itself (mask False). ``pseudo_coords`` gives the same slots' 2-D
tangent-plane coordinates in that frame, in units of the level's mean edge length.

All tables are deterministic, computed once per level (``functools.lru_cache``) and returned
as read-only arrays; copy them before modifying.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = [
    "RADIUS",
    "MAX_LEVEL",
    "n_vertices",
    "n_faces",
    "level_of",
    "icosphere",
    "unit_icosphere",
    "grid_deviation",
    "upsample_parents",
    "hex_neighbourhood",
    "pool_index",
    "local_frames",
    "pseudo_coords",
    "mean_edge_length",
    "containing_face",
]

RADIUS = 100.0
"""Sphere radius in mm (FreeSurfer and Workbench convention)."""

MAX_LEVEL = 7
"""Finest supported level (ico-7: 163842 vertices, the fsaverage mesh)."""

_POLE_TOL = 1e-6   # |sin(colatitude)| below which a vertex counts as a pole (frame uses x axis)
_ANGLE_TOL = 1e-9  # rad: angles in (2*pi - tol, 2*pi) wrap to the start of the ring


def _read_only(*arrays: np.ndarray) -> None:
    for a in arrays:
        a.flags.writeable = False


def _check_level(level: int, minimum: int = 0) -> int:
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)):
        raise TypeError(f"icosphere level must be an int, got {type(level).__name__}")
    if not minimum <= level <= MAX_LEVEL:
        raise ValueError(f"icosphere level must be in [{minimum}, {MAX_LEVEL}], got {level}")
    return int(level)


def n_vertices(level: int) -> int:
    """Number of vertices of icosphere ``level``: 10 * 4**level + 2."""
    level = _check_level(level)
    return 10 * 4**level + 2


def n_faces(level: int) -> int:
    """Number of triangles of icosphere ``level``: 20 * 4**level."""
    level = _check_level(level)
    return 20 * 4**level


def level_of(n_vertices: int) -> int:
    """Icosphere level with ``n_vertices`` vertices (e.g. 40962 -> 6).

    Raises
    ------
    ValueError
        If ``n_vertices`` is not 10 * 4**level + 2 for a level in [0, MAX_LEVEL].
    """
    counts = {10 * 4**lev + 2: lev for lev in range(MAX_LEVEL + 1)}
    try:
        return counts[int(n_vertices)]
    except (KeyError, TypeError, ValueError):
        raise ValueError(
            f"{n_vertices!r} vertices is not an icosphere of levels 0-{MAX_LEVEL} "
            f"(expected one of {sorted(counts)})") from None


def _base_icosahedron() -> tuple[np.ndarray, np.ndarray]:
    """Level 0: (12, 3) float64 mm and (20, 3) int64 faces in FreeSurfer's ic0 order."""
    ring = np.arange(5)
    z = RADIUS / np.sqrt(5.0)
    rho = 2.0 * z
    upper = np.deg2rad(-72.0 + 72.0 * ring)   # vertices 1..5
    lower = np.deg2rad(-108.0 + 72.0 * ring)  # vertices 6..10
    vertices = np.zeros((12, 3))
    vertices[0, 2] = RADIUS
    vertices[1:6] = np.column_stack([rho * np.cos(upper), rho * np.sin(upper), np.full(5, z)])
    vertices[6:11] = np.column_stack([rho * np.cos(lower), rho * np.sin(lower), np.full(5, -z)])
    vertices[11, 2] = -RADIUS
    # Face table walking the rings eastwards from longitude 72 deg (upper) / 36 deg (lower):
    # U[k] = upper vertex at longitude 72 + 72k, L[k] = lower vertex at 36 + 72k.
    k = np.arange(5)
    U = 1 + (k + 2) % 5
    L = 6 + (k + 2) % 5
    U1, L1 = np.roll(U, -1), np.roll(L, -1)  # U[k+1], L[k+1]
    cap = np.column_stack([np.zeros(5, int), U, U1])
    down = np.column_stack([U, L, L1])        # two lower vertices, one upper
    up = np.column_stack([U, L1, U1])         # two upper vertices, one lower
    band = np.empty((10, 3), dtype=np.int64)
    band[0::2] = down
    band[1::2] = up
    # the band's last face (U4, L0, U0) comes first, rotated to start at U0
    band = np.concatenate([[[U[0], U[4], L[0]]], band[:-1]])
    bottom = np.column_stack([L, np.full(5, 11), L1])
    faces = np.concatenate([cap, band, bottom]).astype(np.int64)
    return vertices, faces


def _subdivide(vertices: np.ndarray, faces: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One midpoint subdivision, vectorised (FreeSurfer's numbering and face order).

    For faces (p, q, r) in order, the edges (p, r), (r, q), (q, p) are walked and each new
    edge gets the next new vertex index. The fine faces are first the corner child
    (p, m_pq, m_rp) of every coarse face, then per coarse face (m_rp, m_qr, r),
    (m_pq, m_qr, m_rp), (m_pq, q, m_qr); all keep the counter-clockwise winding.

    Returns the fine vertices (old ones first), the fine faces, and the (E, 2) parents of
    the new vertices (sorted low, high), in new-vertex order.
    """
    n_old = len(vertices)
    p, q, r = faces[:, 0], faces[:, 1], faces[:, 2]
    # edges met in the order (p, r), (r, q), (q, p) of each face, faces in order
    walk = np.stack([np.stack([p, r], 1), np.stack([r, q], 1), np.stack([q, p], 1)], 1)
    walk = walk.reshape(-1, 2)
    lo, hi = walk.min(1), walk.max(1)
    key = lo * n_old + hi
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")          # unique edges by first occurrence
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    new_id = (n_old + rank[inverse]).reshape(-1, 3)   # per face: m_rp, m_qr, m_pq
    m_rp, m_qr, m_pq = new_id[:, 0], new_id[:, 1], new_id[:, 2]
    parents = np.stack([lo[first[order]], hi[first[order]]], 1)

    mid = vertices[parents[:, 0]] + vertices[parents[:, 1]]
    mid *= (RADIUS / np.linalg.norm(mid, axis=1))[:, None]
    fine_vertices = np.concatenate([vertices, mid])

    corners = np.stack([p, m_pq, m_rp], 1)
    rest = np.stack([np.stack([m_rp, m_qr, r], 1),
                     np.stack([m_pq, m_qr, m_rp], 1),
                     np.stack([m_pq, q, m_qr], 1)], 1).reshape(-1, 3)
    fine_faces = np.concatenate([corners, rest])
    return fine_vertices, fine_faces, parents.astype(np.int64)


@lru_cache(maxsize=None)
def _level(level: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if level == 0:
        vertices, faces = _base_icosahedron()
        parents = np.zeros((0, 2), dtype=np.int64)
    else:
        coarse_v, coarse_f, _ = _level(level - 1)
        vertices, faces, parents = _subdivide(coarse_v, coarse_f)
    _read_only(vertices, faces, parents)
    return vertices, faces, parents


def icosphere(level: int) -> tuple[np.ndarray, np.ndarray]:
    """Icosphere of ``level`` (0-7) on the radius-100 sphere.

    Returns
    -------
    vertices : (10*4**level + 2, 3) float64, mm on the radius-100 sphere (read-only).
    faces : (20*4**level, 3) int64, counter-clockwise seen from outside (read-only).
    """
    vertices, faces, _ = _level(_check_level(level))
    return vertices, faces


@lru_cache(maxsize=None)
def unit_icosphere(level: int) -> np.ndarray:
    """Vertices of icosphere ``level`` on the unit sphere: (V, 3) float64, read-only (cached)."""
    v = icosphere(level)[0]
    out = v / np.linalg.norm(v, axis=1, keepdims=True)
    _read_only(out)
    return out


def grid_deviation(vertices: np.ndarray, level: int) -> np.ndarray:
    """(N, 3) float64: the directions of (N, 3) ``vertices`` (any radius) minus the first N unit
    vertices of icosphere ``level`` (N at most its vertex count): ~0 in every row where vertex i
    lies in the direction of the icosphere's vertex i (a grid in the icosphere's order, at any
    radius); NaN in the row of a vertex at the origin."""
    v = np.asarray(vertices, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return v / np.linalg.norm(v, axis=1, keepdims=True) - unit_icosphere(level)[:len(v)]


@lru_cache(maxsize=None)
def _descent(level: int) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Tables of :func:`containing_face` down to ``level`` (read-only, cached per level).

    The descent numbers faces its own way: child ``c`` of face ``m`` is ``4 m + c`` (c = 0 the
    central child, 1-3 the corner children of p, r, q of the parent (p, q, r)). Returns, per level
    0 .. level-1, the (9, F) float32 components of the three normals ``m_pq x m_rp``,
    ``m_rp x m_qr``, ``m_qr x m_pq`` of each face's central-child edges (unit midpoints), by
    descent number; and the (F_level,) real face index of each descent number at ``level``."""
    real = np.arange(n_faces(0), dtype=np.int64)  # descent number -> face index, at each level
    planes = []
    for lev in range(level):
        fine = unit_icosphere(lev + 1)
        f = icosphere(lev + 1)[1]
        n = n_faces(lev)
        central = f[n + 1::3][real]  # (m_pq, m_qr, m_rp) of each face (_subdivide's order)
        m_pq, m_qr, m_rp = fine[central[:, 0]], fine[central[:, 1]], fine[central[:, 2]]
        normals = np.stack([np.cross(m_pq, m_rp), np.cross(m_rp, m_qr), np.cross(m_qr, m_pq)], 1)
        planes.append(np.ascontiguousarray(normals.reshape(-1, 9).T, dtype=np.float32))
        # _subdivide's children of face i: corner p at i, then n + 3 i + (0: corner r, 1: central, 2: corner q)
        real = np.stack([n + 3 * real + 1, real, n + 3 * real, n + 3 * real + 2], 1).reshape(-1)
    _read_only(*planes, real)
    return tuple(planes), real


def containing_face(points: np.ndarray, level: int) -> np.ndarray:
    """(N,) int64: the face of icosphere ``level`` (0-7) that holds each direction of (N, 3)
    finite ``points`` (any radius, not the origin: NaN and the origin get a face of no meaning;
    callers refuse them first), to float32 precision.

    A descent through the nested levels: the icosahedron's face is the one whose centre is
    closest in angle (a regular icosahedron's faces all lie at one distance from its centre),
    then each level's face is one of its parent's four children, told by three plane tests
    (every child edge lies on the great circle of its parent's edge, so the children tile their
    parent exactly). No tree; per-level tables of 36 bytes a face (:func:`_descent`). The tests
    run in float32: a direction within ~1e-6 rad of an edge may get a face next to its own (on
    that edge), so a caller that needs the very face checks it in float64.
    """
    level = _check_level(level)
    x = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    xt = np.ascontiguousarray(x.T, dtype=np.float32)  # (3, N) components
    planes, real = _descent(level)
    v0, f0 = icosphere(0)
    centres = (v0[f0[:, 0]] + v0[f0[:, 1]] + v0[f0[:, 2]]).astype(np.float32)
    face = np.zeros(len(x), dtype=np.int64)
    best = centres[0, 0] * xt[0] + centres[0, 1] * xt[1] + centres[0, 2] * xt[2]
    for i in range(1, len(centres)):  # a running maximum over the 20 faces: no (N, 20) argmax
        score = centres[i, 0] * xt[0] + centres[i, 1] * xt[1] + centres[i, 2] * xt[2]
        better = score > best
        face[better] = i
        np.maximum(best, score, out=best)
    for tab in planes:
        g = [row.take(face) for row in tab]  # 9 (N,) components of the face's three normals
        # a direction on a corner of the central child passes two tests in rounding: the first wins
        code = np.where(g[6] * xt[0] + g[7] * xt[1] + g[8] * xt[2] > 0, 3, 0)
        code = np.where(g[3] * xt[0] + g[4] * xt[1] + g[5] * xt[2] > 0, 2, code)
        code = np.where(g[0] * xt[0] + g[1] * xt[1] + g[2] * xt[2] > 0, 1, code)
        face = 4 * face + code
    return real.take(face)


def upsample_parents(level: int) -> np.ndarray:
    """Parents of the vertices that ``level`` (1-7) adds to ``level - 1``.

    Returns
    -------
    (n_vertices(level) - n_vertices(level-1), 2) int64, read-only: row i holds the two
    level-(level-1) vertices (low, high) of the edge whose normalised midpoint is vertex
    ``n_vertices(level-1) + i``.
    """
    return _level(_check_level(level, 1))[2]


@lru_cache(maxsize=None)
def mean_edge_length(level: int) -> float:
    """Mean chord length (mm) of the edges of icosphere ``level`` (e.g. ~0.94 mm at ico-7)."""
    vertices, faces, _ = _level(_check_level(level))
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = e[e[:, 0] < e[:, 1]]  # closed, consistently wound mesh: each undirected edge once
    return float(np.linalg.norm(vertices[e[:, 0]] - vertices[e[:, 1]], axis=1).mean())


@lru_cache(maxsize=None)
def local_frames(level: int) -> np.ndarray:
    """Tangent frames of the vertices of ``level``.

    Returns
    -------
    (V, 3, 3) float64, read-only: ``[:, 0]`` e1 = unit "east" (direction of increasing
    longitude about the z axis; at the two poles, within 1e-6 of the z axis, the projection
    of the x axis), ``[:, 1]`` e2 = n x e1 ("north"), ``[:, 2]`` n = outward unit normal.
    """
    vertices, _, _ = _level(_check_level(level))
    n = vertices / np.linalg.norm(vertices, axis=1, keepdims=True)
    east = np.stack([-n[:, 1], n[:, 0], np.zeros(len(n))], 1)  # z x n
    s = np.linalg.norm(east, axis=1)
    pole = s < _POLE_TOL
    x_proj = np.array([1.0, 0.0, 0.0]) - n[pole, :1] * n[pole]
    east[pole] = x_proj
    s[pole] = np.linalg.norm(x_proj, axis=1)
    e1 = east / s[:, None]
    e2 = np.cross(n, e1)
    frames = np.stack([e1, e2, n], 1)
    _read_only(frames)
    return frames


def _one_ring(level: int) -> tuple[np.ndarray, np.ndarray]:
    """(V, 6) unordered neighbour table (degree-5 rows padded with -1) and degrees (V,)."""
    vertices, faces, _ = _level(level)
    V = len(vertices)
    # directed edges a->b of each face: every undirected edge appears once in each direction
    src = faces.ravel()
    dst = np.roll(faces, -1, axis=1).ravel()
    order = np.lexsort((dst, src))
    src, dst = src[order], dst[order]
    degree = np.bincount(src, minlength=V)
    start = np.concatenate([[0], np.cumsum(degree)[:-1]])
    slot = np.arange(len(src)) - start[src]
    table = np.full((V, 6), -1, dtype=np.int64)
    table[src, slot] = dst
    return table, degree


@lru_cache(maxsize=None)
def _hex(level: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    vertices, _, _ = _level(level)
    frames = local_frames(level)
    ring, degree = _one_ring(level)
    valid = ring >= 0
    nb = np.where(valid, ring, np.arange(len(vertices))[:, None])
    d = vertices[nb] - vertices[:, None, :]                      # (V, 6, 3)
    x = np.einsum("vkc,vc->vk", d, frames[:, 0])
    y = np.einsum("vkc,vc->vk", d, frames[:, 1])
    angle = np.mod(np.arctan2(y, x), 2.0 * np.pi)
    angle = np.where(angle > 2.0 * np.pi - _ANGLE_TOL, angle - 2.0 * np.pi, angle)
    angle = np.where(valid, angle, np.inf)                       # padding last
    order = np.argsort(angle, axis=1, kind="stable")
    nb = np.take_along_axis(nb, order, 1)
    valid = np.take_along_axis(valid, order, 1)
    x = np.take_along_axis(x, order, 1)
    y = np.take_along_axis(y, order, 1)

    V = len(vertices)
    index = np.concatenate([np.arange(V)[:, None], nb], 1)
    mask = np.concatenate([np.ones((V, 1), bool), valid], 1)
    coords = np.zeros((V, 7, 2))
    scale = 1.0 / mean_edge_length(level)
    coords[:, 1:, 0] = np.where(valid, x * scale, 0.0)
    coords[:, 1:, 1] = np.where(valid, y * scale, 0.0)
    _read_only(index, mask, coords)
    return index, mask, coords


def hex_neighbourhood(level: int) -> tuple[np.ndarray, np.ndarray]:
    """Hexagonal neighbourhoods of icosphere ``level`` (0-7).

    Returns
    -------
    index : (V, 7) int64, read-only: column 0 is the vertex itself, columns 1-6 its
        one-ring neighbours counter-clockwise around the outward normal, starting from the
        smallest angle >= 0 measured from local east (see module docstring). For the 12
        degree-5 vertices column 6 repeats the vertex itself.
    mask : (V, 7) bool, read-only: False on padded slots (only column 6 of those 12 rows;
        at level 0 every vertex has degree 5).
    """
    index, mask, _ = _hex(_check_level(level))
    return index, mask


def pool_index(level: int) -> np.ndarray:
    """Hexagonal pooling from ``level`` (1-7) down to ``level - 1``.

    Returns
    -------
    (n_vertices(level-1), 7) int64, read-only: for each coarse vertex (same index in the fine
    mesh) its fine-level hex neighbourhood (the first rows of ``hex_neighbourhood(level)``).
    Padded slots repeat the centre, so max-pooling over the 7 columns needs no mask; a mean
    must use the ``hex_neighbourhood`` mask.
    """
    level = _check_level(level, 1)
    index, _, _ = _hex(level)
    return index[: n_vertices(level - 1)]


def pseudo_coords(level: int) -> np.ndarray:
    """2-D pseudo-coordinates of the hex slots, for Gaussian-mixture (MoNet) convolutions.

    Returns
    -------
    (V, 7, 2) float64, read-only: each neighbour's offset from the centre vertex projected
    onto the centre's tangent plane, as (e1, e2) components of ``local_frames``, divided by
    ``mean_edge_length(level)`` (so norms are close to 1 at every level). Centre slot and
    padded slots are (0, 0). Slots are in ``hex_neighbourhood`` order, so the angles
    ``atan2(e2, e1)`` increase along columns 1-6.
    """
    return _hex(_check_level(level))[2]

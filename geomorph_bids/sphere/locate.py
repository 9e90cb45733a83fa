"""Point location on spherical triangle meshes.

For any points on (or near) a sphere, find the mesh triangle that contains each
point's direction and its barycentric weights. Weights are those of the point
where the ray from the sphere's centre through the point meets the plane of the
triangle (gnomonic projection), computed from triple products, so a point on a
shared edge gets the same weights from both triangles.

Search: a k-d tree over the mesh vertices gives each point its nearest vertex;
the triangles around that vertex (its fan) are the candidates, screened in
float32 and confirmed in float64. The few points whose candidates all miss are
searched again over the fans of more neighbouring vertices, and the very few still outside
(a face of a vertex with more than 12 faces whose corners are all far, such as a fan of slivers
closing a cut-out medial wall) are walked to across the faces' edges. A caller that already
knows a mesh vertex near each point (``near``) skips the tree: that vertex's fan
is screened instead, and the tree is built only if some point is not found there.
Everything is vectorised; nothing loops over points.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree

from .mesh import row_norms

__all__ = ["SphereLocator", "angular_error_deg", "face_neighbours", "locate", "unit", "vertex_faces", "vertex_fans"]

_CHUNK = 1 << 16  # points per vectorised batch: bounds memory to ~30 MB
_MAX_FAN = 12  # widest vertex fan kept in the candidate table; wider fans use the fallback
_MAX_WALK = 32  # faces a point the fans miss is walked across (a fan of slivers closing a hole: <= 4 were needed)
_TOL = 1e-12  # a point is inside a face when its smallest normalised weight is >= -_TOL
_FAR_CLEAR = 1e-6  # a point whose weights all exceed this is inside its face and in no other (within _TOL)
_FAR_SAMPLE = 32  # ``far``: 1 in this many of the points outside their hint tell which search is cheaper


def unit(points: np.ndarray) -> np.ndarray:
    """Project (N, 3) points onto the unit sphere (float64)."""
    points = np.asarray(points, dtype=np.float64)
    norm = row_norms(points)[..., None] if points.shape[-1:] == (3,) else np.linalg.norm(points, axis=-1, keepdims=True)
    return points / np.where(norm > 0, norm, 1.0)


def angular_error_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(...,) float64: the angle in degrees between corresponding (..., 3) directions of ``a`` and
    ``b`` (any radii; e.g. (V,) for (V, 3) spheres).

    Uses ``atan2(|a x b|, a . b)``: accurate for tiny and large angles alike.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), np.einsum("...i,...i->...", a, b)))


def vertex_faces(faces: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """The faces around each vertex as a CSR pattern: (V + 1,) ``indptr`` and int32 ``indices``,
    vertex v's faces ``indices[indptr[v]:indptr[v + 1]]`` in increasing order (a face that names
    v twice listed once: ``indptr[-1] < faces.size`` then)."""
    # Counting sort of (vertex, face) pairs through a CSR build: faces grouped by vertex. int32
    # throughout: 1.5x faster than int64.
    faces = np.asarray(faces)
    incidence = sparse.csr_matrix(
        (np.ones(faces.size, dtype=np.int8), (faces.ravel(), np.repeat(np.arange(len(faces), dtype=np.int32), 3))),
        shape=(n_vertices, len(faces)))
    return incidence.indptr, incidence.indices


def vertex_fans(faces: np.ndarray, n_vertices: int,
                around: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(V, D) int32 faces around each vertex, rows padded by repeating their first face
    (``around``: :func:`vertex_faces` of these faces, if at hand)."""
    # the padding written first: faster than a final np.where
    indptr, indices = vertex_faces(faces, n_vertices) if around is None else around
    counts = np.diff(indptr)
    width = int(min(max(counts.max(initial=1), 1), _MAX_FAN))
    # an isolated vertex gets face 0 (the fallback search fixes what it misses)
    first = np.where(counts > 0, indices[np.minimum(indptr[:-1], max(indices.size - 1, 0))], 0).astype(indices.dtype)
    fans = np.repeat(first[:, None], width, axis=1)
    slot = np.arange(indices.size, dtype=indptr.dtype) - np.repeat(indptr[:-1], counts)
    keep = slot < width
    owner = np.repeat(np.arange(n_vertices, dtype=indptr.dtype), counts)
    fans[owner[keep], slot[keep]] = indices[keep]
    return fans


def face_neighbours(faces: np.ndarray) -> np.ndarray:
    """(F, 3) int64: the face across the edge opposite each corner of each face, -1 where there
    is none (a boundary edge, or one that more than two faces share)."""
    faces = np.asarray(faces, dtype=np.int64)
    # half-edge h = 3 f + i is the edge of face f opposite its corner i
    a, b = faces[:, [1, 2, 0]].ravel(), faces[:, [2, 0, 1]].ravel()
    key = np.minimum(a, b) * (int(faces.max(initial=0)) + 1) + np.maximum(a, b)
    order = np.argsort(key, kind="stable")
    sk = key[order]
    same = sk[1:] == sk[:-1]  # same[j]: sorted half-edges j and j + 1 are one edge
    before = np.concatenate(([False], same[:-1]))
    after = np.concatenate((same[1:], [False]))
    pair = np.flatnonzero(same & ~before & ~after)  # edges of exactly two half-edges
    out = np.full(len(key), -1, dtype=np.int64)
    out[order[pair]], out[order[pair + 1]] = order[pair + 1] // 3, order[pair] // 3
    return out.reshape(-1, 3)


class SphereLocator:
    """Reusable point locator for one spherical mesh.

    Parameters
    ----------
    vertices : (V, 3) float, any radius; the mesh must be centred on the origin.
    faces : (F, 3) int, triangles; either winding is accepted (per-face sign).
    fans : optional (V, D) int32 faces around each vertex, as :func:`vertex_fans` gives them
        for ``faces`` (a table shared by meshes of one topology, e.g. an icosphere's, warped).
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, fans: np.ndarray | None = None) -> None:
        self.vertices = unit(vertices)
        self.faces = np.asarray(faces, dtype=np.int64)
        # Row i of `_normals[f]` dotted with p gives the (unnormalised) weight of corner i:
        # the cross products b x c, c x a, a x b, from component arrays (fast, no temporaries).
        comp = np.ascontiguousarray(self.vertices.T)
        corner = np.ascontiguousarray(self.faces.T)  # contiguous index rows: take() gathers 2-3x faster
        a, b, c = (comp.take(corner[i], axis=1) for i in range(3))  # (3, F) each
        normals = np.empty((3, 3, len(self.faces)), dtype=np.float64)  # (corner, xyz, face)
        for row, (p, q) in enumerate(((b, c), (c, a), (a, b))):
            np.multiply(p[1], q[2], out=normals[row, 0])
            normals[row, 0] -= p[2] * q[1]
            np.multiply(p[2], q[0], out=normals[row, 1])
            normals[row, 1] -= p[0] * q[2]
            np.multiply(p[0], q[1], out=normals[row, 2])
            normals[row, 2] -= p[1] * q[0]
        volume = a[0] * normals[0, 0] + a[1] * normals[0, 1] + a[2] * normals[0, 2]
        normals[:, :, volume < 0] *= -1.0  # clockwise faces; degenerate ones (0) never contain anything
        normals = np.ascontiguousarray(normals.transpose(2, 0, 1))  # (face, corner, xyz)
        self._normals = normals
        self._normals32 = normals.astype(np.float32)
        # built here with the fans (the distortion measures' per-vertex sums reuse it), else on first use
        self._around = None if fans is not None else vertex_faces(self.faces, len(self.vertices))
        self._fans = vertex_fans(self.faces, len(self.vertices), self._around) if fans is None else fans
        self._kdtree: cKDTree | None = None  # built on first use: a search from ``near`` may need none
        self._edge: float | None = None  # longest edge (unit sphere), measured on a first large search
        self._neighbours: np.ndarray | None = None  # face_neighbours, built on a first walk

    @property
    def fans(self) -> np.ndarray:
        """(V, D) int32 faces around each vertex (:func:`vertex_fans`; read-only use)."""
        return self._fans

    @property
    def faces_around(self) -> tuple[np.ndarray, np.ndarray]:
        """:func:`vertex_faces` of this mesh: (V + 1,) indptr and int32 face indices (read-only use)."""
        if self._around is None:
            self._around = vertex_faces(self.faces, len(self.vertices))
        return self._around

    @property
    def _tree(self) -> cKDTree:
        """k-d tree of the unit vertices, built on first use. Balanced: slower to build, faster to
        query; together 5-10 % faster at 40-160k vertices and points."""
        if self._kdtree is None:
            self._kdtree = cKDTree(self.vertices)
        return self._kdtree

    def locate(self, points: np.ndarray, k: int = 6, hint: np.ndarray | None = None,
               near: np.ndarray | None = None, walk: int = 0, far: bool = False,
               exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Containing triangle and barycentric weights of each point.

        Parameters
        ----------
        points : (N, 3) float, directions (any radius, not the origin).
        k : about how many candidate triangles are tried first per point: the
            fans of the ``ceil(k / 6)`` nearest vertices (6 = one fan).
        hint : optional (N,) int face indices to try first (e.g. where the points were
            before they moved a little); points inside their hinted face, or in a face around
            one of its corners, skip the search.
            The result is the same as without a hint, except that a point exactly on an
            edge may get either face (with the same weights).
        walk : with ``hint``, first walk each point that is outside its hinted face across the
            edge it lies beyond, up to ``walk`` faces (vectorised over the points; the faces'
            neighbour table is built on the first walk): a point that moved a few triangles is
            found there without screening the fans or querying the tree. The same result.
        far : with ``hint`` (and no ``walk``), for points that mostly left their hint's
            neighbourhood (a warp's points, several triangles from where the template grid was):
            the points outside their hinted face are searched as without a hint first, and the
            fans around the hint's corners are screened only for those whose face is among them
            (or that lie within 1e-6 of an edge), where the search with the hint would have found
            them. The same result, bit for bit, at less cost when few points are near their hint.
            Where a sample (1 in 32 of the points outside their hinted face) shows that most of
            them do lie in a face around a corner of it (a small warp's points), the hinted
            search runs instead: the same result, without the k-d tree for most of them.
        near : optional (N,) int vertex indices, -1 where unknown (ignored with ``hint``): a mesh
            vertex near each point, e.g. a corner of a triangle that holds a related point. Its
            fan is screened in place of the k-d tree's nearest vertex's; points not found there
            (and those with -1) are searched as without it. The same result as without it, up to
            the face of a point exactly on an edge.
        exact : with ``near``, or ``hint`` (and ``walk``): a point keeps the face found there only
            when it lies clear of every edge of that face (all weights above 1e-6, where no other
            face holds it); the others are searched as without ``near`` or ``hint``. The same
            faces as without either, and the same weights to rounding (the search may reach a
            face through its float64 fallback, whose products round differently), at less cost
            where most points start in or a few faces from their own face (a small warp's points
            from their own grid vertex; points that moved a little from where they were found).

        Returns
        -------
        face : (N,) int64, index into ``faces``.
        weights : (N, 3) float64, barycentric weights of the face's corners,
            non-negative and summing to 1.
        """
        if exact and (hint is not None or near is not None):
            return self._locate_exact(np.atleast_2d(points), hint, near, walk, k)
        points = unit(np.atleast_2d(points))
        n = len(points)
        if hint is not None:
            face = self._hint_faces(hint, n)
            w, score = self._weights(face, points)
            miss = np.flatnonzero(~(score >= -_TOL))
            if miss.size and walk > 0:
                miss = self._walk(points, face, w, score, miss, walk)
            elif miss.size and far and not self._mostly_near(points, face, miss):
                return self._locate_far(points, face, w, miss, k)
            if miss.size:  # moved a little: most are in a triangle around one of the hint's corners
                near = self._fans.take(self.faces.take(face[miss], axis=0), axis=0).reshape(len(miss), -1)
                f2, w2, s2 = self._screen(points[miss], near)
                found = s2 >= -_TOL
                face[miss[found]], w[miss[found]] = f2[found], w2[found]
                miss = miss[~found]
            if miss.size:
                face[miss], w[miss] = self.locate(points[miss], k)
            np.clip(w, 0.0, None, out=w)
            w /= w.sum(axis=1, keepdims=True)
            return face, w
        if near is not None:
            return self._locate_near(points, np.asarray(near, dtype=np.int64).reshape(-1), k)
        # Visit the points in a spatially coherent order (cells of a 64^3 grid): the tree
        # queries and the gathers of face data then hit the cache far more often.
        cell = np.clip(((points + 1.0) * 32.0).astype(np.int64), 0, 63)
        order = np.argsort((cell[:, 0] << 12) | (cell[:, 1] << 6) | cell[:, 2])
        points = points[order]
        face = np.empty(n, dtype=np.int64)
        weights = np.empty((n, 3), dtype=np.float64)
        n_near = max(1, -(-int(k) // 6))
        # as many points as vertices or more: the tree searches within the longest edge (measured
        # once, ~1 % of such a search), 15-20 % faster
        reach = self._longest_edge() if n >= len(self.vertices) else None
        for start in range(0, n, _CHUNK):
            sl = slice(start, min(start + _CHUNK, n))
            face[order[sl]], weights[order[sl]] = self._locate_chunk(points[sl], n_near, reach)
        return face, weights

    def _longest_edge(self) -> float:
        """The longest edge of the mesh on the unit sphere (chord), measured on first use."""
        if self._edge is None:
            comp = np.ascontiguousarray(self.vertices.T)
            corner = np.ascontiguousarray(self.faces.T)
            a, b, c = (comp.take(corner[i], axis=1) for i in range(3))
            self._edge = float(np.sqrt(max(((p - q) ** 2).sum(axis=0).max(initial=0.0)
                                           for p, q in ((a, b), (b, c), (c, a)))))
        return self._edge

    def _walk(self, points: np.ndarray, face: np.ndarray, w: np.ndarray, score: np.ndarray,
              todo: np.ndarray, steps: int) -> np.ndarray:
        """Walk points ``todo`` from their ``face`` towards the face that holds them, up to
        ``steps`` faces each, always across the edge opposite their most negative weight;
        ``face``, ``w`` and ``score`` are updated in place. Returns the points still outside."""
        if self._neighbours is None:
            self._neighbours = face_neighbours(self.faces)
        for _ in range(steps):
            nxt = self._neighbours[face[todo], np.argmin(w[todo], axis=1)]
            todo = todo[nxt >= 0]  # no face across: left to the search
            if not todo.size:
                break
            face[todo] = nxt[nxt >= 0]
            w[todo], score[todo] = self._weights(face[todo], points[todo])
            todo = todo[~(score[todo] >= -_TOL)]
            if not todo.size:
                break
        return np.flatnonzero(~(score >= -_TOL))

    def _hint_faces(self, hint: np.ndarray, n: int) -> np.ndarray:
        """A copy of ``hint`` as (n,) int64 face indices of this mesh, else ValueError."""
        face = np.array(hint, dtype=np.int64).reshape(-1)
        if face.shape != (n,) or (n and (face.min() < 0 or face.max() >= len(self.faces))):
            raise ValueError(f"hint must hold {n} face indices in [0, {len(self.faces)})")
        return face

    def _mostly_near(self, points: np.ndarray, face: np.ndarray, miss: np.ndarray) -> bool:
        """Whether most of the points ``miss`` (outside their hinted ``face``) lie in a face around
        one of its corners, judged on every :data:`_FAR_SAMPLE`-th: then the hinted search (that
        screen first, the k-d tree for the rest) costs less than ``far``'s search of them all."""
        some = miss[::_FAR_SAMPLE]
        near = self._fans.take(self.faces.take(face[some], axis=0), axis=0).reshape(len(some), -1)
        return bool(np.mean(self._screen(points[some], near)[2] >= -_TOL) >= 0.5)

    def _locate_far(self, points: np.ndarray, face: np.ndarray, w: np.ndarray, miss: np.ndarray,
                    k: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`locate` with ``hint`` and ``far``: ``face`` (N,) holds the hints, ``w`` (N, 3)
        their weights, ``miss`` the points outside their hinted face. Every point ends as the
        hinted search ends it: found around the hint's corners (weights normalised once), else by
        the search without a hint (whose normalised weights are normalised again)."""
        f_t, w_t = self.locate(points[miss], k)
        near = self._fans.take(self.faces.take(face[miss], axis=0), axis=0).reshape(len(miss), -1)
        # the corner-fan screen can accept only a face among its candidates, or, for a point
        # within rounding of an edge, the face across it: those points are screened as before
        screen = (near == f_t[:, None]).any(axis=1) | ~(w_t.min(axis=1) > _FAR_CLEAR)
        pick = np.flatnonzero(screen)
        f2, w2, s2 = self._screen(points[miss[pick]], near[pick])
        found = s2 >= -_TOL
        face[miss], w[miss] = f_t, w_t
        face[miss[pick[found]]], w[miss[pick[found]]] = f2[found], w2[found]
        np.clip(w, 0.0, None, out=w)
        w /= w.sum(axis=1, keepdims=True)
        return face, w

    def _locate_exact(self, raw: np.ndarray, hint: np.ndarray | None, near: np.ndarray | None, walk: int,
                      k: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`locate` with ``exact``: (N, 3) points ``raw`` (as given) from their ``hint`` faces
        (walked up to ``walk`` faces) or from the fans of their ``near`` vertices. A point clear of
        every edge of the face found (smallest weight > 1e-6, far above the float64 rounding of
        the weights) lies in no other face, so the search without a start ends in that face too
        (its weights normalised twice, as there); every other point is searched as without a
        start, from its coordinates as given."""
        points = unit(raw)
        n = len(points)
        if hint is not None:
            face = self._hint_faces(hint, n)
            w, score = self._weights(face, points)
            miss = np.flatnonzero(~(score >= -_TOL))
            if miss.size and walk > 0:
                self._walk(points, face, w, score, miss, walk)
        else:
            near = np.asarray(near, dtype=np.int64).reshape(-1)
            if near.shape != (n,) or (n and (near.min() < 0 or near.max() >= len(self.vertices))):
                raise ValueError(f"near must hold {n} vertex indices in [0, {len(self.vertices)})")
            face, w, score = self._screen(points, self._fans.take(near, axis=0))
        rest = np.flatnonzero(~(score > _FAR_CLEAR))
        with np.errstate(invalid="ignore", divide="ignore"):  # rows outside are replaced below
            w /= w.sum(axis=1, keepdims=True)
        if rest.size:
            face[rest], w[rest] = self.locate(raw[rest], k)
        return face, w

    def _locate_near(self, points: np.ndarray, near: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`locate` of (N, 3) unit points from a vertex near each (``near``, -1: none)."""
        n = len(points)
        if near.shape != (n,) or (n and near.max() >= len(self.vertices)):
            raise ValueError(f"near must hold {n} vertex indices below {len(self.vertices)} (or -1)")
        face = np.empty(n, dtype=np.int64)
        w = np.empty((n, 3), dtype=np.float64)
        known = near >= 0
        every = bool(known.all())
        sel = slice(None) if every else np.flatnonzero(known)  # every point known: views, no copies
        fans = self._fans.take(near[sel], axis=0)
        face_k, w_k, score = self._screen(points[sel], fans)
        again = np.flatnonzero(~(score >= -_TOL))
        if again.size:
            # float32 screening can pick the wrong face around a point within ~1e-7 of the vertex
            # (its float32 rounding is that large): the same fan again in float64 finds most
            f2, w2, s2 = self._best(points[sel][again], fans[again])
            ok = s2 >= -_TOL
            face_k[again[ok]], w_k[again[ok]], score[again[ok]] = f2[ok], w2[ok], s2[ok]
        inside = score >= -_TOL
        np.clip(w_k, 0.0, None, out=w_k)
        with np.errstate(invalid="ignore", divide="ignore"):  # rows outside are replaced below
            w_k /= w_k.sum(axis=1, keepdims=True)
        face[sel], w[sel] = face_k, w_k
        outside = np.flatnonzero(~inside) if every else sel[~inside]
        if outside.size:  # from the fan's best face: the faces around its corners, then the tree
            face[outside], w[outside] = self.locate(points[outside], k, hint=face_k[~inside])
        unknown = np.flatnonzero(~known)
        if unknown.size:
            face[unknown], w[unknown] = self.locate(points[unknown], k)
        return face, w

    def _candidates(self, points: np.ndarray, n_near: int, reach: float | None = None) -> np.ndarray:
        """(N, n_near * D) candidate faces: the fans of the nearest vertices.

        ``reach`` (with ``n_near`` 1): the tree searches within this distance first (it prunes
        more: faster), and again without it for the points that have no vertex that near: the
        same nearest vertex either way (ties included: the branches it prunes hold no vertex as
        near as the nearest)."""
        n_near = min(n_near, len(self.vertices))
        if reach is None or n_near != 1:
            _, near = self._tree.query(points, k=n_near, workers=1)
        else:
            _, near = self._tree.query(points, k=1, workers=1, distance_upper_bound=reach)
            none = np.flatnonzero(near == len(self.vertices))
            if none.size:
                near[none] = self._tree.query(points[none], k=1, workers=1)[1]
        return self._fans.take(near.reshape(len(points), n_near), axis=0).reshape(len(points), -1)

    def _screen(self, points: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The best of (N, k) candidate faces per point: face (N,), float64 weights (N, 3), score.

        Screened in float32: the containing face has all three weights >= 0, every other face a
        negative one, so the largest smallest raw weight wins; the winner is confirmed in float64.
        """
        # take(axis=0), here and for every row gather of this class: the same rows as fancy indexing,
        # 2-3x faster at 164k points (round twenty-three)
        k = cand.shape[1]  # not -1 in the shapes: no point (an empty selection) has no size to infer
        raw = np.matmul(self._normals32.take(cand, axis=0).reshape(len(points), 3 * k, 3),
                        points.astype(np.float32)[:, :, None]).reshape(len(points), k, 3)
        smallest = np.minimum(raw[..., 0], raw[..., 1])
        np.minimum(smallest, raw[..., 2], out=smallest)
        face = cand[np.arange(len(points)), np.argmax(smallest, axis=1)]
        w, score = self._weights(face, points)
        return face, w, score

    def _locate_chunk(self, points: np.ndarray, n_near: int,
                      reach: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        cand = self._candidates(points, n_near, reach)
        face, w, score = self._screen(points, cand)
        # Rare: float32 picked the wrong side of an edge, or no fan holds the point.
        for n_wide in (None, 8, 64):
            miss = np.flatnonzero(score < -_TOL)
            if miss.size == 0:
                break
            c2 = cand[miss] if n_wide is None else self._candidates(points[miss], max(n_wide, n_near))
            f2, w2, s2 = self._best(points[miss], c2)
            better = s2 > score[miss]
            face[miss[better]], w[miss[better]], score[miss[better]] = f2[better], w2[better], s2[better]
        miss = np.flatnonzero(score < -_TOL)
        if miss.size:  # in no fan of its 64 nearest vertices: a face of a vertex of more than _MAX_FAN faces
            # whose corners are all far (a fan of long slivers closing a hole): walked to from the best face
            f2, w2, s2 = face[miss], w[miss], score[miss]
            self._walk(points[miss], f2, w2, s2, np.arange(miss.size), _MAX_WALK)
            better = s2 > score[miss]
            face[miss[better]], w[miss[better]], score[miss[better]] = f2[better], w2[better], s2[better]
        np.clip(w, 0.0, None, out=w)
        w /= w.sum(axis=1, keepdims=True)
        return face, w

    def _weights(self, face: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float64 normalised weights (N, 3) in the given faces and their score (smallest weight)."""
        raw = np.matmul(self._normals.take(face, axis=0), points[:, :, None])[..., 0]
        total = raw[:, 0] + raw[:, 1] + raw[:, 2]
        ok = total > 0
        raw /= np.where(ok, total, 1.0)[:, None]
        smallest = np.minimum(np.minimum(raw[:, 0], raw[:, 1]), raw[:, 2])
        return raw, np.where(ok, smallest, -np.inf)

    def _best(self, points: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Among candidate faces (N, k), the one that contains each point best (float64).

        The score is the smallest normalised barycentric weight: >= 0 inside; -inf for a face
        whose weights do not sum to a positive number (one facing away, or with no area: three
        corners at one position give weights (0, 0, 0), which must not count as inside).
        """
        raw = np.einsum("nkij,nj->nki", self._normals.take(cand, axis=0), points)  # (N, k, 3)
        total = raw[..., 0] + raw[..., 1]
        total += raw[..., 2]
        ok = total > 0
        total[~ok] = 1.0
        # the smallest weight of each face: min(raw) / total is min(raw / total) to the bit (division
        # by a positive number is monotone); only the chosen face's weights are divided out
        score = np.minimum(raw[..., 0], raw[..., 1])
        np.minimum(score, raw[..., 2], out=score)
        score /= total
        score[~ok] = -np.inf
        pick = np.argmax(score, axis=1)
        rows = np.arange(len(points))
        return cand[rows, pick], raw[rows, pick] / total[rows, pick][:, None], score[rows, pick]


def locate(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-off :meth:`SphereLocator.locate`; build a :class:`SphereLocator` to reuse."""
    return SphereLocator(vertices, faces).locate(points)

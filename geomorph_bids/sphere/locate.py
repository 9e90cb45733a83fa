"""Point location on spherical triangle meshes.

For any points on (or near) a sphere, find the mesh triangle that contains each
point's direction and its barycentric weights. Weights are those of the point
where the ray from the sphere's centre through the point meets the plane of the
triangle (gnomonic projection), computed from triple products, so a point on a
shared edge gets the same weights from both triangles.

Search: a k-d tree over the normalised triangle centroids gives each point a few
candidate triangles; the few points whose candidates all miss are searched again
with more candidates. Everything is vectorised; nothing loops over points.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["SphereLocator", "locate", "unit"]

_CHUNK = 1 << 16  # points per vectorised batch: bounds memory to ~60 MB


def unit(points: np.ndarray) -> np.ndarray:
    """Project (N, 3) points onto the unit sphere (float64)."""
    points = np.asarray(points, dtype=np.float64)
    norm = np.linalg.norm(points, axis=-1, keepdims=True)
    return points / np.where(norm > 0, norm, 1.0)


class SphereLocator:
    """Reusable point locator for one spherical mesh.

    Parameters
    ----------
    vertices : (V, 3) float, any radius; the mesh must be centred on the origin.
    faces : (F, 3) int, triangles; either winding is accepted (per-face sign).
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        self.vertices = unit(vertices)
        self.faces = np.asarray(faces, dtype=np.int64)
        a, b, c = (self.vertices[self.faces[:, i]] for i in range(3))
        # Row i of `edge_normals[f]` dotted with p gives the (unnormalised) weight of corner i.
        normals = np.stack([np.cross(b, c), np.cross(c, a), np.cross(a, b)], axis=1)
        orientation = np.sign(np.einsum("fi,fi->f", a, normals[:, 0]))
        orientation[orientation == 0] = 1.0  # degenerate triangle: never contains anything
        self._normals = normals * orientation[:, None, None]
        self._tree = cKDTree(unit(a + b + c))

    def locate(self, points: np.ndarray, k: int = 6) -> tuple[np.ndarray, np.ndarray]:
        """Containing triangle and barycentric weights of each point.

        Parameters
        ----------
        points : (N, 3) float, directions (any radius, not the origin).
        k : candidate triangles tried first per point.

        Returns
        -------
        face : (N,) int64, index into ``faces``.
        weights : (N, 3) float64, barycentric weights of the face's corners,
            non-negative and summing to 1.
        """
        points = unit(np.atleast_2d(points))
        n = len(points)
        face = np.empty(n, dtype=np.int64)
        weights = np.empty((n, 3), dtype=np.float64)
        for start in range(0, n, _CHUNK):
            sl = slice(start, min(start + _CHUNK, n))
            face[sl], weights[sl] = self._locate_chunk(points[sl], k)
        return face, weights

    def _locate_chunk(self, points: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, len(self.faces))
        _, cand = self._tree.query(points, k=k, workers=-1)
        cand = cand.reshape(len(points), k)
        face, w, score = self._best(points, cand)
        # Points whose best candidate is outside (score < 0) are rare: widen the search.
        for wider in (32, 256):
            miss = np.flatnonzero(score < -1e-12)
            if miss.size == 0 or wider <= k:
                break
            kk = min(wider, len(self.faces))
            _, c2 = self._tree.query(points[miss], k=kk, workers=-1)
            f2, w2, s2 = self._best(points[miss], c2.reshape(len(miss), kk))
            better = s2 > score[miss]
            face[miss[better]], w[miss[better]], score[miss[better]] = f2[better], w2[better], s2[better]
        w = np.clip(w, 0.0, None)
        w /= w.sum(axis=1, keepdims=True)
        return face, w

    def _best(self, points: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Among candidate faces (N, k), the one that contains each point best.

        The score is the smallest normalised barycentric weight: >= 0 inside.
        """
        raw = np.einsum("nkij,nj->nki", self._normals[cand], points)  # (N, k, 3)
        total = raw.sum(axis=2, keepdims=True)
        total = np.where(np.abs(total) > 1e-300, total, 1e-300)
        bary = raw / total
        score = np.where(total[..., 0] > 0, bary.min(axis=2), -np.inf)
        pick = np.argmax(score, axis=1)
        rows = np.arange(len(points))
        return cand[rows, pick], bary[rows, pick], score[rows, pick]


def locate(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-off :meth:`SphereLocator.locate`; build a :class:`SphereLocator` to reuse."""
    return SphereLocator(vertices, faces).locate(points)

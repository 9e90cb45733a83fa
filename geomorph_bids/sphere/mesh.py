"""Basic triangle-mesh quantities shared by the sphere engine (vectorised numpy)."""

from __future__ import annotations

import numpy as np
from scipy import sparse

__all__ = ["triangle_areas", "vertex_areas", "edges", "vertex_face_matrix", "signed_volumes"]


def triangle_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) float64 planar triangle areas, in the squared units of ``vertices``."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)


def vertex_face_matrix(faces: np.ndarray, n_vertices: int) -> sparse.csr_matrix:
    """(V, F) sparse incidence matrix: 1 where vertex v is a corner of face f."""
    f = np.asarray(faces, dtype=np.int64)
    rows = f.ravel()
    cols = np.repeat(np.arange(len(f)), 3)
    return sparse.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n_vertices, len(f)))


def vertex_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V,) float64 vertex areas: one third of the area of every incident triangle.

    This is the vertex area of Connectome Workbench (-surface-vertex-areas).
    """
    v = np.asarray(vertices)
    f = np.asarray(faces, dtype=np.int64)
    return np.bincount(f.ravel(), weights=np.repeat(triangle_areas(v, f), 3), minlength=len(v)) / 3.0


def edges(faces: np.ndarray) -> np.ndarray:
    """(E, 2) int64 unique undirected edges, each sorted (low, high), in sorted order.

    Sorting one integer key per edge is ~10x faster than ``np.unique(axis=0)`` at 164k.
    """
    f = np.asarray(faces, dtype=np.int64)
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    e.sort(axis=1)
    n = np.int64(e.max()) + 1 if e.size else np.int64(1)
    key = np.sort(e[:, 0] * n + e[:, 1])
    key = key[np.concatenate([[True], key[1:] != key[:-1]])]
    return np.stack([key // n, key % n], axis=1)


def signed_volumes(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) float64 triple product a . (b x c) of each triangle's corners.

    For a mesh around the origin this is positive for triangles wound
    counter-clockwise seen from outside, negative for flipped ones.
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    return np.einsum("ij,ij->i", a, np.cross(b, c))

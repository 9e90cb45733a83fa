"""Point location on an icosphere by descending its subdivision hierarchy, in torch.

:class:`~geomorph_bids.sphere.locate.SphereLocator` (numpy, k-d tree) locates points in any
spherical mesh on the CPU. On an accelerator that means a device -> host copy and a CPU
search for every resampling of a batch (hundreds of thousands of points per training step).
An icosphere needs no search tree: its level-n triangles are the children of level n-1's
(``sphere.icosphere._subdivide``: fine face ``f`` is the corner child of coarse face ``f``,
fine faces ``F + 3f + {0, 1, 2}`` are its other three children), and a child's edges lie on
the great circles of its parent's, so the containing face is found by testing the 20 base
faces, then 4 children per level: ``20 + 4 * level`` triangle tests per point, all
vectorised on the points' device.

A point on an edge (to float32 rounding) may be assigned either side; its barycentric
weights are then within rounding of the true ones (the descendants of both candidates share
that great circle), so interpolated values agree with :class:`~geomorph_bids.sphere.locate.SphereLocator`'s to rounding.
"""

from __future__ import annotations

import numpy as np
import torch

from ..sphere.icosphere import icosphere, n_faces
from .cache import cached_tables

__all__ = ["IcoLocator", "ico_locator"]


def _normals(level: int) -> np.ndarray:
    """(F, 3, 3) float64: row i of face f is the cross product of the other two unit corners,
    so ``normals[f] @ p`` gives the unnormalised barycentric weights of ``p`` (all >= 0 inside;
    faces are counter-clockwise seen from outside)."""
    v, f = icosphere(level)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    return np.stack([np.cross(b, c), np.cross(c, a), np.cross(a, b)], axis=1)


def _children(level: int) -> np.ndarray:
    """(F_{level-1}, 4) int64: the level-``level`` faces that subdivide each coarser face."""
    f = np.arange(n_faces(level - 1), dtype=np.int64)
    n = n_faces(level - 1)
    return np.stack([f, n + 3 * f, n + 3 * f + 1, n + 3 * f + 2], axis=1)


class IcoLocator:
    """Containing faces of points on icosphere ``level`` (0-7), computed on any torch device.

    Tables (per-level face normals and children) are built once per instance and copied to
    a device on first use there (float32 tests, a few MB at level 6).
    """

    def __init__(self, level: int) -> None:
        self.level = int(level)
        self._normals = [torch.from_numpy(_normals(lv)) for lv in range(self.level + 1)]
        self._children = [None] + [torch.from_numpy(_children(lv)) for lv in range(1, self.level + 1)]
        self._device_tables: dict[tuple[str, torch.dtype], tuple[list, list]] = {}

    def _tables(self, device: torch.device, dtype: torch.dtype) -> tuple[list, list]:
        key = (str(device), dtype)
        if key not in self._device_tables:  # per-instance cache of device copies
            self._device_tables[key] = ([n.to(device=device, dtype=dtype) for n in self._normals],
                                        [c if c is None else c.to(device) for c in self._children])
        return self._device_tables[key]

    def locate(self, points: torch.Tensor) -> torch.Tensor:
        """(..., 3) points (any radius, not the origin) -> (...,) int64 face indices of ico-``level``.

        No gradient (the choice of triangle is piecewise constant). float64 points are tested
        in float64, anything else in float32.
        """
        shape = points.shape[:-1]
        dtype = torch.float64 if points.dtype == torch.float64 else torch.float32
        p = points.detach().reshape(-1, 3).to(dtype)
        normals, children = self._tables(p.device, dtype)
        # level 0: all 20 faces; score = the smallest unnormalised weight (>= 0 inside)
        raw = torch.einsum("fij,nj->nfi", normals[0], p)
        face = raw.amin(-1).argmax(-1)
        for lv in range(1, self.level + 1):
            cand = children[lv][face]                                   # (N, 4)
            raw = torch.einsum("nkij,nj->nki", normals[lv][cand], p)   # (N, 4, 3)
            face = cand.gather(1, raw.amin(-1).argmax(-1, keepdim=True))[:, 0]
        return face.reshape(shape)


@cached_tables(maxsize=8)
def ico_locator(level: int) -> IcoLocator:
    """Cached :class:`IcoLocator` of icosphere ``level`` (read-only use)."""
    return IcoLocator(level)

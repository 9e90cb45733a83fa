"""Carry a sphere through a deformation given by two meshes in vertex correspondence.

``wb_command -surface-sphere-project-unproject``: each vertex of a sphere is located in one
mesh (``project_to``) and moved to the same barycentric position in a second mesh with the
same triangles (``unproject_from``), e.g. FreeSurfer's fsaverage sphere and the same mesh
deformed into fsLR space, which carries a subject's fsaverage registration into fsLR (what
sMRIPrep's ``init_fsLR_reg_wf`` does with ``?h.sphere.reg``).
"""

from __future__ import annotations

import numpy as np

from .locate import unit
from .mesh import is_mesh_pair
from .resample import barycentric_weights

__all__ = ["project_unproject"]


def project_unproject(sphere: np.ndarray, project_to: tuple[np.ndarray, np.ndarray],
                      unproject_from: np.ndarray) -> np.ndarray:
    """Move sphere vertices through the deformation ``project_to`` -> ``unproject_from``.

    Parameters
    ----------
    sphere : (V, 3) float, the vertices to move (any radius), or its (vertices, faces) pair.
    project_to : (vertices (N, 3), faces (M, 3)) of the mesh the vertices are located in.
    unproject_from : (N, 3) the same mesh's vertices after the deformation, or its (vertices,
        faces) pair (the faces must be ``project_to``'s).

    Returns
    -------
    (V, 3) float64: the moved vertices, at the radius of ``sphere`` (per vertex).
    """
    sphere = np.asarray(_vertices(sphere), dtype=np.float64)
    if is_mesh_pair(unproject_from) and not np.array_equal(np.asarray(unproject_from[1]), np.asarray(project_to[1])):
        raise ValueError("unproject_from's faces are not project_to's: the two must be one mesh in vertex "
                         "correspondence (e.g. fsaverage's sphere and the same mesh deformed into fsLR)")
    target = np.asarray(_vertices(unproject_from), dtype=np.float64)
    if target.shape != np.asarray(project_to[0]).shape:
        raise ValueError(f"unproject_from has shape {target.shape}; project_to has {np.asarray(project_to[0]).shape}")
    moved = barycentric_weights(project_to, sphere) @ target
    return unit(moved) * np.linalg.norm(sphere, axis=1, keepdims=True)


def _vertices(value: object) -> object:
    """The vertices of a (vertices, faces) pair, as every mesh is passed elsewhere (numpy raised
    "inhomogeneous shape" for one); anything else as it is."""
    return value[0] if is_mesh_pair(value) else value

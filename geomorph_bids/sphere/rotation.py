"""Rotations of the sphere (SO(3)) and the hemisphere reflection.

Convention everywhere: a rotation ``R`` is a (3, 3) proper orthogonal matrix acting
on column vectors, so a moving vertex ``p`` goes to ``R @ p`` and a vertex array
``(V, 3)`` goes to ``vertices @ R.T`` (:func:`apply_rotation`).

:func:`rotation_from_correspondence` finds the rotation between two spheres that share
vertices (the same mesh in two spaces, e.g. FreeSurfer's ``?h.sphere`` and ``?h.sphere.reg``):
the least-squares rotation of the unit directions (Kabsch / SVD). The rotation from feature
maps alone (any densities, any starting orientation) is :func:`geomorph_bids.sphere.rigid.rigid_align`.

:data:`MIRROR` is the sagittal reflection ``x -> -x`` that turns a right hemisphere into a
left one (not a rotation: det -1).
"""

from __future__ import annotations

import numpy as np

from geomorph_bids.errors import InputError
from geomorph_bids.sphere.locate import unit
from geomorph_bids.sphere.mesh import host_array, nonfinite_rows

__all__ = [
    "rotation_from_correspondence",
    "rotation_matrix",
    "rotation_angle",
    "angle_between",
    "random_rotation",
    "apply_rotation",
    "expm_so3",
    "orthonormalise",
    "quat_to_matrix",
    "MIRROR",
]

#: Reflection that turns a right hemisphere into a left one (x -> -x); a mirrored mesh keeps
#: outward triangles when its faces' vertex order is reversed.
MIRROR = np.diag([-1.0, 1.0, 1.0])
MIRROR.setflags(write=False)

# ----------------------------------------------------------------------------
# Small rotation utilities
# ----------------------------------------------------------------------------


def rotation_matrix(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotation by ``angle_deg`` degrees about ``axis`` (right-hand rule).

    Parameters
    ----------
    axis : (3,) float, any non-zero length.
    angle_deg : float, degrees.

    Returns
    -------
    (3, 3) float64 proper rotation matrix.
    """
    axis = np.asarray(axis, dtype=np.float64).reshape(3)
    norm = np.linalg.norm(axis)
    if not norm > 0:
        raise InputError("rotation axis must be non-zero")
    return expm_so3(axis / norm * np.radians(angle_deg))


def rotation_angle(R: np.ndarray) -> float:
    """Angle of rotation ``R`` (3, 3), in degrees, in [0, 180]."""
    R = np.asarray(R, dtype=np.float64)
    # atan2 of (|skew part|, trace part) is accurate at small and large angles alike.
    skew = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    return float(np.degrees(np.arctan2(0.5 * np.linalg.norm(skew), 0.5 * (np.trace(R) - 1.0))))


def angle_between(R1: np.ndarray, R2: np.ndarray) -> float:
    """Geodesic distance between two rotations (angle of ``R1 @ R2.T``), in degrees.

    This is also the largest angle by which ``R1`` and ``R2`` move any point apart.
    """
    return rotation_angle(np.asarray(R1, dtype=np.float64) @ np.asarray(R2, dtype=np.float64).T)


def random_rotation(rng: np.random.Generator | int | None = None,
                    max_angle_deg: float | None = None) -> np.ndarray:
    """A random rotation (3, 3) float64.

    Parameters
    ----------
    rng : numpy Generator or seed.
    max_angle_deg : None for a uniform (Haar) draw over all of SO(3); otherwise the
        axis is uniform on the sphere and the angle uniform in [0, max_angle_deg] degrees.
    """
    rng = np.random.default_rng(rng)
    if max_angle_deg is None:
        q = rng.standard_normal(4)
        return quat_to_matrix(q / np.linalg.norm(q))
    axis = rng.standard_normal(3)
    return rotation_matrix(axis, rng.uniform(0.0, float(max_angle_deg)))


def apply_rotation(vertices: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Rotate vertices: ``vertices @ R.T`` ((V, 3) float64, same units as the input)."""
    v = np.asarray(host_array(vertices, "vertices"), dtype=np.float64)
    if v.shape[-1:] != (3,):  # else numpy's "matmul: Input operand 1 has a mismatch in its core dimension 0"
        raise InputError(f"apply_rotation takes (V, 3) vertices, got shape {v.shape}"
                         + ("; transposed? pass vertices.T" if v.ndim == 2 and v.shape[0] == 3 else ""))
    return v @ np.asarray(R, dtype=np.float64).T


def _hat(w: np.ndarray) -> np.ndarray:
    """(..., 3) -> (..., 3, 3) cross-product matrices."""
    w = np.asarray(w, dtype=np.float64)
    z = np.zeros(w.shape[:-1])
    return np.stack([np.stack([z, -w[..., 2], w[..., 1]], -1),
                     np.stack([w[..., 2], z, -w[..., 0]], -1),
                     np.stack([-w[..., 1], w[..., 0], z], -1)], -2)


def expm_so3(w: np.ndarray) -> np.ndarray:
    """Rodrigues: rotation vector (3,) in radians -> (3, 3) rotation."""
    w = np.asarray(w, dtype=np.float64)
    theta = np.linalg.norm(w)
    K = _hat(w)
    if theta < 1e-8:
        return np.eye(3) + K + 0.5 * K @ K
    return np.eye(3) + np.sin(theta) / theta * K + (1.0 - np.cos(theta)) / theta**2 * K @ K


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Unit quaternions (..., 4) as (x, y, z, w) -> rotations (..., 3, 3)."""
    q = np.asarray(q, dtype=np.float64)
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def orthonormalise(R: np.ndarray) -> np.ndarray:
    """Nearest proper rotation to a (3, 3) matrix (removes round-off drift)."""
    U, _, Vt = np.linalg.svd(R)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


# ----------------------------------------------------------------------------
# Rotation from vertex correspondence
# ----------------------------------------------------------------------------


def rotation_from_correspondence(moving: np.ndarray, target: np.ndarray,
                                 weights: np.ndarray | None = None) -> np.ndarray:
    """Least-squares rotation between two vertex-corresponding spheres (Kabsch / SVD).

    Minimises ``sum_i w_i |R @ u_i - t_i|^2`` over proper rotations, where ``u_i`` and
    ``t_i`` are the unit directions of ``moving[i]`` and ``target[i]`` (radii may differ;
    both spheres must be centred on the origin).

    Parameters
    ----------
    moving, target : (V, 3) float, vertex i of one corresponds to vertex i of the other.
    weights : (V,) non-negative float or None (equal weights); e.g. vertex areas.

    Returns
    -------
    (3, 3) float64 rotation, det = +1, with ``R @ moving[i]`` ~ ``target[i]``
    (so ``moving @ R.T`` ~ ``target``).
    """
    moving = np.asarray(host_array(moving, "moving"), dtype=np.float64)  # a tensor that requires grad too
    target = np.asarray(host_array(target, "target"), dtype=np.float64)
    if moving.ndim != 2 or moving.shape[1] != 3 or moving.shape != target.shape:
        raise InputError(f"rotation_from_correspondence needs two (V, 3) arrays of equal shape, "
                         f"got {moving.shape} and {target.shape}")
    for name, a in (("moving", moving), ("target", target)):
        bad = nonfinite_rows(a)
        if bad.any():  # else numpy's "SVD did not converge"
            raise InputError(f"rotation_from_correspondence: {name} has {int(bad.sum())} of {len(a)} vertices with "
                             f"non-finite coordinates (NaN or Inf, first at vertex {int(np.argmax(bad))})")
    u, t = unit(moving), unit(target)
    if weights is None:
        w = np.ones(len(u))
    else:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.shape != (len(u),) or np.any(w < 0) or not np.all(np.isfinite(w)):
            raise InputError("weights must be (V,) finite and non-negative")
    H = (u * w[:, None]).T @ t  # sum_i w_i u_i t_i^T
    U, _, Vt = np.linalg.svd(H)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(Vt.T @ U.T)) or 1.0])
    return Vt.T @ D @ U.T

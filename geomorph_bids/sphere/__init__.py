"""Sphere geometry engine: icosphere hierarchy, point location, resampling,
distortion, rotations and rigid alignment (numpy/scipy; no Nipype, no torch required).

Conventions: vertices are (V, 3) float64 in mm on a sphere centred at the origin
(radius 100 for our icospheres; any radius accepted where stated); faces are
(F, 3) int64; a mesh is passed as a ``(vertices, faces)`` pair; a rotation R acts
on column vectors, so vertex arrays move as ``vertices @ R.T``.
"""

from .distortion import distortion, distortion_summary, folded_triangles
from .icosphere import (
    MAX_LEVEL,
    RADIUS,
    hex_neighbourhood,
    icosphere,
    level_of,
    mean_edge_length,
    n_vertices,
    pool_index,
    pseudo_coords,
    unit_icosphere,
    upsample_parents,
)
from .locate import SphereLocator, angular_error_deg, locate, unit
from .resample import (
    apply_weights,
    area_surfaces,
    barycentric_weights,
    corner_weights,
    resample,
    resample_labels,
    resample_weights,
)
from .rigid import rigid_align
from .rotation import (
    MIRROR,
    angle_between,
    apply_rotation,
    random_rotation,
    rotation_angle,
    rotation_from_correspondence,
    rotation_matrix,
)

__all__ = [
    "MAX_LEVEL", "MIRROR", "RADIUS", "SphereLocator", "angle_between", "angular_error_deg", "apply_rotation", "apply_weights",
    "area_surfaces", "barycentric_weights", "corner_weights", "distortion",
    "distortion_summary", "folded_triangles", "hex_neighbourhood", "icosphere", "level_of", "locate",
    "mean_edge_length", "n_vertices", "pool_index", "pseudo_coords", "random_rotation", "resample",
    "resample_labels", "resample_weights", "rigid_align", "rotation_angle",
    "rotation_from_correspondence", "rotation_matrix", "unit", "unit_icosphere", "upsample_parents",
]

"""Format-independent entry points: read a surface, a sphere, a feature map, labels.

The format is chosen from the file name (``.gii``/``.gii.gz`` -> GIFTI,
``.nii`` -> CIFTI-2, ``.mgh``/``.mgz`` -> MGH, ``.annot``/``.label`` ->
FreeSurfer) and otherwise from the file's first bytes (FreeSurfer files such
as ``lh.sphere`` or ``lh.sulc`` have no extension).  Every reader validates what
it returns and raises :class:`geomorph_bids.errors.InputError` on one line
naming the file.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import nibabel as nib
import numpy as np

from geomorph_bids.errors import InputError
from geomorph_bids.io import cifti, freesurfer, gifti
from geomorph_bids.io.limits import MAX_MAPS, MAX_VERTICES, decompress_bounded, map_max_bytes, read_bounded, regular_file
from geomorph_bids.io.validate import (SPHERE_RADIUS, SphereWarning, check_finite, check_mesh, check_vertex_count,
                                       hemi_code, validate_sphere)
from geomorph_bids.io.quiet import quiet_warnings

#: largest per-vertex map read from an MGH file (values), a guard against corrupted headers
_MAX_VALUES = MAX_VERTICES * MAX_MAPS

__all__ = ["Surface", "Sphere", "detect_format", "read_surface", "read_sphere", "read_feature", "read_labels", "read_mask",
           "write_sphere_reg", "MIN_CORTEX_FRACTION"]

#: a cortex mask covering less of the hemisphere than this is refused (real ones: about 0.9)
MIN_CORTEX_FRACTION = 0.5


@dataclass(frozen=True, eq=False)
class Surface:
    """A triangle mesh read from a file.

    Attributes
    ----------
    vertices : (V, 3) float64, mm
    faces : (F, 3) int64, indices into ``vertices``
    path : the file it came from (None if built in memory)
    meta : metadata strings (GIFTI metadata, FreeSurfer volume info)
    """

    vertices: np.ndarray
    faces: np.ndarray
    path: Path | None = None
    meta: Mapping[str, str] = field(default_factory=dict)

    @property
    def n_vertices(self) -> int:
        """Number of vertices V."""
        return int(self.vertices.shape[0])

    @property
    def hemi(self) -> str | None:
        """'L' or 'R' from AnatomicalStructurePrimary, None if absent."""
        return {"CortexLeft": "L", "CortexRight": "R"}.get(str(self.meta.get("AnatomicalStructurePrimary")))


@dataclass(frozen=True, eq=False)
class Sphere(Surface):
    """A :class:`Surface` that :func:`read_sphere` checked (``validate.validate_sphere``): a
    sphere centred at the origin, radius 100 mm (or the radius asked for), triangles wound
    outward. Readers downstream (``register()``) take it as it is instead of checking it again.

    ``given_faces``: (F, 3) int64, the file's own faces where the check re-wound them (a whole mesh
    wound inward, as a right hemisphere mirrored x -> -x into a left one keeps its faces; triangles
    wound against their neighbours); None where ``faces`` are the file's. The same triangles, corner
    for corner up to order: ``register()`` of a path writes its output sphere with them."""

    given_faces: np.ndarray | None = field(default=None, repr=False)

    @property
    def wound_inward(self) -> bool:
        """Whether the file's triangles were all wound inward (re-wound here): a hemisphere mirrored
        x -> -x without re-winding its faces, e.g. a right one given as a left one."""
        return self.given_faces is not None and np.array_equal(self.given_faces[:, [0, 2, 1]], self.faces)


_KINDS = {"mgh": "an MGH file", "cifti": "a CIFTI file", "annot": "a FreeSurfer annotation",
          "label": "a FreeSurfer label"}


def _head(path: Path, n: int = 8) -> bytes:
    regular_file(path)  # never open a FIFO or a device: the read would block or never end
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError as exc:
        raise InputError(f"cannot be read: {exc.strerror or exc}", path=path) from None


def detect_format(path: str | Path) -> str:
    """One of 'gifti', 'cifti', 'mgh', 'annot', 'label', 'freesurfer' (binary surface/morph).

    Raises InputError for a missing, empty or non-regular file (FIFO, device, folder, broken
    symbolic link).
    """
    p = Path(path)
    head = _head(p)
    if not head:
        raise InputError("is empty (0 bytes)", path=p)
    name = p.name.lower()
    if gifti.is_gifti_name(name):
        return "gifti"
    if name.endswith((".mgh", ".mgz")):
        return "mgh"
    if cifti.is_cifti_name(name):
        return "cifti"
    if name.endswith(".annot"):
        return "annot"
    if name.endswith(".label"):
        return "label"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if head[:2] == b"\x1f\x8b" or stripped.startswith(b"<"):
        return "gifti"
    if len(head) >= 4 and 540 in (int.from_bytes(head[:4], "little"), int.from_bytes(head[:4], "big")):
        return "cifti"
    return "freesurfer"


def read_surface(path: str | Path) -> Surface:
    """Read a surface mesh from GIFTI (``.surf.gii[.gz]``) or FreeSurfer binary (``lh.white``).

    Checks shapes, finite coordinates and that every triangle indexes an existing
    vertex; does not require a sphere (see :func:`read_sphere`).
    """
    p = Path(path)
    fmt = detect_format(p)
    if fmt == "gifti":
        v, f, meta = gifti.read_gifti_surface(p)
    elif fmt == "freesurfer":
        v, f, meta = freesurfer.read_fs_surface(p)
    else:
        raise InputError(f"is {_KINDS[fmt]}, not a surface mesh "
                         "(expected .surf.gii, .surf.gii.gz or a FreeSurfer surface such as lh.sphere)",
                         path=p)
    v, f = check_mesh(v, f, p)
    return Surface(v, f, p, meta)


def read_sphere(path: str | Path, *, radius: float = SPHERE_RADIUS, max_folded: int | None = None) -> Sphere:
    """Read a spherical surface (``lh.sphere``, ``lh.sphere.reg``, ``*.sphere.surf.gii``).

    Returns the sphere centred at the origin with radius ``radius`` (mm) and
    triangles wound outward.  Rules (see :func:`validate.validate_sphere`):

    * not a sphere (std/mean of radii about the best-fit centre > 0.05, e.g. a
      white, pial or inflated surface): InputError;
    * a sphere off-centre or with another radius (e.g. radius 1): accepted with a
      :class:`validate.SphereWarning`, returned recentred and rescaled;
    * reversed winding (more than half the triangles inward): all triangles
      flipped silently (the file's own faces kept as ``given_faces``);
    * more than ``max_folded`` triangles still inward (default: 0.1% of them,
      fewer are tolerated with a warning): InputError with the count.
    """
    s = read_surface(path)
    if len(s.vertices) > MAX_VERTICES:  # the file limits bound its bytes only: a larger mesh is read, never tested
        warnings.warn(f"{s.path}: {len(s.vertices):,} vertices, more than the {MAX_VERTICES:,} of the largest mesh "
                      "geomorph-bids is sized for (io.limits.MAX_VERTICES, 12.8 times FreeSurfer's fsaverage): it is "
                      "registered, but its memory and time are beyond those measured", SphereWarning, stacklevel=2)
    v, f = validate_sphere(s.vertices, s.faces, s.path, radius=radius, max_folded=max_folded)
    given = None if f is s.faces or np.array_equal(f, s.faces) else np.asarray(s.faces, dtype=np.int64)
    return Sphere(v, f, s.path, s.meta, given_faces=given)


def write_sphere_reg(registered: str | Path, native: str | Path, out: str | Path) -> Path:
    """Write a registered sphere (``..._space-fsaverage_desc-geomorph_sphere.surf.gii``) as a FreeSurfer
    surface that FreeSurfer's tools take as the subject's ``sphere.reg`` (``mri_surf2surf --srcsurfreg``).

    Parameters
    ----------
    registered : the registered sphere (GIFTI, or any surface :func:`read_surface` reads)
    native : the subject's FreeSurfer sphere it was registered from (``surf/lh.sphere``; fMRIPrep's GIFTI
        copy, ``_hemi-L_sphere.surf.gii``, is taken too, without volume geometry): its vertex count and
        triangles must be the registered sphere's, and its volume geometry (the bytes after its
        triangles) is copied, as recon-all's ``lh.sphere.reg`` carries it
    out : the file written (``lh.sphere.geomorph.reg``), atomically

    Its vertices are the registered sphere's as stored (float32, mm, radius 100), its triangles the
    native sphere's; its header line says ``created by geomorph-bids <version> from <registered name>``.
    InputError (one line naming both files), nothing written, when the meshes differ or the files name
    different hemispheres: the GIFTI was registered from another subject's, hemisphere's or recon-all run's
    sphere, which FreeSurfer would pair vertex for vertex without a word.
    """
    from geomorph_bids import __version__
    from geomorph_bids.io.hemisphere_label import declared_hemispheres

    ours = declared_hemispheres(registered)[:1]     # the meshes of both hemispheres may be alike: the files say
    theirs = declared_hemispheres(native)[:1]       # which hemisphere they are
    if ours and theirs and ours[0][0] != theirs[0][0]:
        raise InputError(f"is hemi-{ours[0][0]} ({ours[0][1]}) but {native} is hemi-{theirs[0][0]} ({theirs[0][1]}): give "
                         f"the {'lh' if ours[0][0] == 'L' else 'rh'}.sphere it was registered from", path=registered)
    reg = read_surface(registered)
    nat = read_surface(native)
    if len(reg.vertices) != len(nat.vertices) or not np.array_equal(reg.faces, nat.faces):
        what = (f"has {len(reg.vertices)} vertices, {native} {len(nat.vertices)}"
                if len(reg.vertices) != len(nat.vertices) else f"has other triangles than {native}")
        raise InputError(f"{what}: it was not registered from this FreeSurfer sphere (another subject's, "
                         "hemisphere's or recon-all run's); give the surf/?h.sphere it was registered from",
                         path=registered)
    coords = reg.vertices.astype(np.float32)      # the GIFTI's own float32 values, exactly
    name = " ".join(Path(registered).name.splitlines())
    return freesurfer.write_fs_surface(out, coords, nat.faces, f"geomorph-bids {__version__} from {name}",
                                       footer=freesurfer.surface_footer(native)
                                       if detect_format(native) == "freesurfer" else b"")   # a GIFTI has none


def _read_mgh(p: Path, n_vertices: int | None = None) -> np.ndarray:
    raw = read_bounded(p, map_max_bytes(n_vertices), "MGH file")
    if raw[:2] == b"\x1f\x8b":  # .mgz
        raw = decompress_bounded(raw, map_max_bytes(n_vertices), p, bound="the most a map file may hold here")
    try:
        with quiet_warnings():
            img = nib.MGHImage.from_bytes(raw)
            shape = tuple(int(n) for n in img.shape)
            # check the header before reading: a corrupted header can claim terabytes
            if len(shape) < 3 or shape[0] == 0 or shape[1:3] != (1, 1) or np.prod(shape) > _MAX_VALUES:
                raise InputError(f"MGH data have shape {shape}; a surface map is (V, 1, 1[, K])", path=p)
            data = np.asarray(img.dataobj, dtype=np.float64)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"cannot be read as MGH: the file is truncated or corrupted "
                         f"({type(exc).__name__}: {exc})", path=p) from None
    return data.reshape(data.shape[0], -1)


def read_feature(path: str | Path, n_vertices: int | None = None, hemi: str | None = None,
                 *, squeeze: bool = True, sphere: str | Path | None = None, allow_nan: bool = False) -> np.ndarray:
    """Read a per-vertex feature map.

    Parameters
    ----------
    path : GIFTI shape/func (``.shape.gii[.gz]``), FreeSurfer morphometry
        (``lh.sulc``, ``lh.curv``, ``lh.thickness``), MGH (``.mgh``/``.mgz``) or
        CIFTI-2 (``.dscalar.nii``/``.dtseries.nii``; needs ``hemi``; vertices of
        the medial wall, absent from the CIFTI file, are set to 0)
    n_vertices : expected vertex count (the sphere's); InputError if different
    hemi : 'L' or 'R', required for CIFTI
    squeeze : return (V,) when there is a single column
    sphere : the file ``n_vertices`` comes from, named by the vertex-count error
    allow_nan : keep NaN (a registration map's no-data mark, :func:`~geomorph_bids.io.validate.no_data`);
        default: refused as Inf always is

    Returns
    -------
    (V,) or (V, K) float64, in the file's units (sulc in mm)
    """
    p = Path(path)
    fmt = detect_format(p)
    if fmt == "gifti":
        values, _, _ = gifti.read_gifti_data(p, map_max_bytes(n_vertices))
    elif fmt == "freesurfer":
        values = freesurfer.read_fs_morph(p, n_vertices)[:, None]
    elif fmt == "mgh":
        values = _read_mgh(p, n_vertices)
    elif fmt == "cifti":
        if hemi is None:
            raise InputError("is a CIFTI file holding both hemispheres: pass hemi='L' or 'R'", path=p)
        values = cifti.read_cifti_cortex(p, hemi_code(hemi), fill=0.0).values
    else:
        raise InputError(f"is {_KINDS[fmt]}, not a feature map: give a map of one value per vertex, "
                         "e.g. lh.sulc or a .shape.gii file", path=p)
    if values.size == 0:
        raise InputError("feature map holds no values", path=p)
    check_finite(values, p, allow_nan=allow_nan)
    check_vertex_count(values.shape[0], n_vertices, p, sphere=sphere)
    return values[:, 0] if squeeze and values.shape[1] == 1 else values


def read_labels(path: str | Path, n_vertices: int | None = None, hemi: str | None = None
                ) -> tuple[np.ndarray, dict[int, tuple[str, tuple[float, ...]]]]:
    """Read a parcellation: GIFTI ``.label.gii``, FreeSurfer ``.annot``/``.label``, CIFTI ``.dlabel.nii``.

    Parameters
    ----------
    path : the label file; a GIFTI's keys may be integers or whole-number floats (sMRIPrep's
        float32 0.0/1.0 ``_desc-cortex_mask.label.gii``), other floats are refused (InputError)
    n_vertices : expected vertex count; required for a FreeSurfer ``.label`` (a vertex list)
    hemi : 'L' or 'R', required for CIFTI

    Returns
    -------
    labels : (V,) int64 keys (-1 unlabelled in .annot; 0 on the CIFTI medial wall;
        1 inside / 0 outside for a .label)
    table : key -> (name, (r, g, b, a) in 0..1)
    """
    p = Path(path)
    fmt = detect_format(p)
    if fmt == "gifti":
        labels, table = gifti.read_gifti_labels(p)
    elif fmt == "annot":
        labels, table = freesurfer.read_fs_annot(p)
    elif fmt == "label":
        if n_vertices is None:
            raise InputError("is a FreeSurfer label (a vertex list): pass n_vertices", path=p)
        labels = freesurfer.read_fs_label(p, n_vertices)
        table = {0: ("???", (0.0, 0.0, 0.0, 0.0)), 1: (p.name, (1.0, 0.0, 0.0, 1.0))}
    elif fmt == "cifti":
        if hemi is None:
            raise InputError("is a CIFTI file holding both hemispheres: pass hemi='L' or 'R'", path=p)
        labels, table = cifti.read_cifti_labels(p, hemi_code(hemi))
    else:
        raise InputError("is not a label file (.label.gii, .annot, .label, .dlabel.nii)", path=p)
    check_vertex_count(labels.shape[0], n_vertices, p, what="label map")
    return labels, table


def read_mask(path: str | Path, n_vertices: int | None = None, hemi: str | None = None) -> np.ndarray:
    """Read a cortex mask: (V,) bool, True on the cortex, False on the medial wall.

    Parameters
    ----------
    path : sMRIPrep's ``_desc-cortex_mask.label.gii`` (0/1 values, written as a metric or as
        labels), HCP's ``<S>.L.roi.native.shape.gii``, or FreeSurfer's ``label/lh.cortex.label``
        (a vertex list; needs ``n_vertices``).
    n_vertices : expected vertex count (the sphere's); InputError if different.
    hemi : 'L' or 'R', the hemisphere read from a CIFTI-2 file (required for CIFTI).

    A mask covering less than :data:`MIN_CORTEX_FRACTION` of the vertices is refused (InputError
    naming the file): it is not a cortex mask, or it is inverted.
    """
    p = Path(path)
    if detect_format(p) == "label":
        if n_vertices is None:
            raise InputError("is a FreeSurfer label (a vertex list): pass n_vertices", path=p)
        mask = freesurfer.read_fs_label(p, n_vertices) > 0
    else:
        values = read_feature(p, n_vertices, hemi, squeeze=False)
        if values.shape[1] != 1:
            raise InputError(f"holds {values.shape[1]} maps; a cortex mask has one", path=p)
        mask = values[:, 0] > 0
    fraction = float(mask.mean())
    if fraction < MIN_CORTEX_FRACTION:
        raise InputError(f"cortex mask covers {100 * fraction:.1f}% of the vertices (at least "
                         f"{100 * MIN_CORTEX_FRACTION:.0f}% expected): not a cortex mask, or inverted", path=p)
    return mask

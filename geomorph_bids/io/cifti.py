"""Cortical columns of CIFTI-2 files (dscalar, dtseries, dlabel) as per-vertex maps.

A CIFTI brain-model axis stores only the vertices inside the cortex mask (the
medial wall is left out: 29696 of 32492 vertices for the HCP S1200 left
hemisphere, 29716 for the right).  :func:`read_cifti_cortex` scatters the
``CIFTI_STRUCTURE_CORTEX_LEFT``/``RIGHT`` columns back onto the full surface;
vertices outside the mask get ``fill`` (default 0.0, which the rest of the
package treats as medial wall; pass ``fill=np.nan`` to mark them) and the
returned mask says which vertices carried data.

CIFTI-1 files are refused with the conversion command to run (nibabel reads
CIFTI-2 only).  :func:`write_dscalar` writes the reverse: maps of both hemispheres on a
template mesh, inside a medial-wall ROI, as one CIFTI-2 dense scalar file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import nibabel as nib
import numpy as np
from nibabel import cifti2

from geomorph_bids.errors import InputError
from geomorph_bids.io.limits import MAX_MAPS, MAX_VERTICES, map_max_bytes, read_bounded
from geomorph_bids.io.validate import hemi_code
from geomorph_bids.io.quiet import quiet_warnings

__all__ = ["CIFTI_STRUCTURES", "CiftiCortex", "load_cifti", "read_cifti_cortex",
           "read_cifti_labels", "is_cifti_name", "write_dscalar"]

#: hemi code -> CIFTI brain structure
CIFTI_STRUCTURES = {"L": "CIFTI_STRUCTURE_CORTEX_LEFT", "R": "CIFTI_STRUCTURE_CORTEX_RIGHT"}

_VERSION = re.compile(rb"<CIFTI\s+Version\s*=\s*[\"']([^\"']*)[\"']")


class CiftiCortex(NamedTuple):
    """One hemisphere of a CIFTI file on the full surface."""

    values: np.ndarray   #: (V, K) float64, ``fill`` outside the mask
    mask: np.ndarray     #: (V,) bool, True where the CIFTI file has data
    names: list[str]     #: K map names ("" for series)


def is_cifti_name(path: str | Path) -> bool:
    """True for ``*.nii`` names (CIFTI files end in ``.dscalar.nii``, ``.dlabel.nii``...)."""
    return Path(path).name.lower().endswith(".nii")


def _cifti_version(raw: bytes) -> str | None:
    """The Version attribute of the CIFTI XML in the header extension, if found."""
    head = raw[:540]
    if len(head) < 540:
        return None
    for order in ("<", ">"):
        if int(np.frombuffer(head, order + "i4", 1)[0]) == 540:
            vox_offset = int(np.frombuffer(head, order + "i8", 1, 168)[0])
            break
    else:
        return None
    m = _VERSION.search(raw[540:max(540, min(vox_offset, 64 << 20))])
    return m.group(1).decode("ascii", "replace") if m else None


def _image_from_bytes(raw: bytes, version: str | None):
    """The image in ``raw``, as ``nib.load`` would type it: CIFTI-2 when its header extension
    holds CIFTI XML, else a NIfTI-2 or NIfTI-1 volume (by the header size, 540 or 348)."""
    if version is not None:
        return cifti2.Cifti2Image.from_bytes(raw)
    sizes = {int(np.frombuffer(raw[:4], order + "i4", 1)[0]) for order in ("<", ">")} if len(raw) >= 4 else set()
    return nib.Nifti2Image.from_bytes(raw) if 540 in sizes else nib.Nifti1Image.from_bytes(raw)


_COUNT = re.compile(rb'(IndexCount|SurfaceNumberOfVertices|IndexOffset)\s*=\s*"\s*(\d+)')


def _check_declared_counts(raw: bytes, path: Path) -> None:
    """Refuse CIFTI XML whose brain models declare more vertices than geomorph-bids accepts
    (:data:`~geomorph_bids.io.limits.MAX_VERTICES`) before nibabel parses it: it allocates the
    declared count (an ``IndexCount`` of 2^31-1 asked for 48 GiB)."""
    for name, value in _COUNT.findall(raw[540:]):
        if int(value) > MAX_VERTICES:
            raise InputError(f"CIFTI header declares {name.decode()}={int(value)}; geomorph-bids accepts at most "
                             f"{MAX_VERTICES} vertices: the header is corrupted", path=path)


def load_cifti(path: str | Path) -> cifti2.Cifti2Image:
    """Load a CIFTI-2 image (at most :func:`~geomorph_bids.io.limits.map_max_bytes` bytes, read
    once, within the read deadline); InputError for CIFTI-1, NIfTI volumes and broken files."""
    p = Path(path)
    raw = read_bounded(p, map_max_bytes(), "CIFTI file")
    out = re.sub(r"((\.d[a-z]+)?\.nii)$", r"_cifti2\1", p.name, flags=re.IGNORECASE)
    convert = f"convert it with `wb_command -file-convert -cifti-version-convert {p.name} 2 {out}`"
    version = _cifti_version(raw)
    if version is not None and not version.startswith("2"):
        raise InputError(f"is a CIFTI-{version} file; only CIFTI-2 is supported: {convert}", path=p)
    if version is not None:
        _check_declared_counts(raw, p)
    try:
        with quiet_warnings():
            img = _image_from_bytes(raw, version)
    except Exception as exc:
        if "CIFTI-2" in str(exc):
            raise InputError(f"is not a CIFTI-2 file ({exc}): {convert}", path=p) from None
        raise InputError(f"cannot be read as CIFTI-2: the file is truncated or corrupted "
                         f"({type(exc).__name__}: {exc})", path=p) from None
    if not isinstance(img, cifti2.Cifti2Image):
        raise InputError(f"is a {type(img).__name__}, not a CIFTI-2 file (.dscalar.nii, .dlabel.nii, "
                         ".dtseries.nii); volumes must first be projected onto the surface", path=p)
    # the data are read lazily, a slice at a time: a file cut short still gave the slices before the cut
    # (one hemisphere of a dscalar of both registered from a damaged file, in silence)
    proxy = img.dataobj  # where the data start and their type, as read from the header
    offset, dtype = getattr(proxy, "offset", None), getattr(proxy, "dtype", None)
    need = None if offset is None or dtype is None else int(offset) + int(np.prod(img.shape)) * dtype.itemsize
    if need is not None and len(raw) < need:
        raise InputError(f"CIFTI file is truncated or corrupted: {len(raw)} bytes, its header "
                         f"({' x '.join(map(str, img.shape))} {dtype.name} values) needs {need}", path=p)
    return img


def _brain_models(img: cifti2.Cifti2Image, path: Path) -> tuple[int, cifti2.BrainModelAxis, object]:
    """(index of the brain-model axis, that axis, the other axis)."""
    try:
        axes = [img.header.get_axis(i) for i in range(img.ndim)]
    except Exception as exc:
        raise InputError(f"CIFTI header is corrupted ({type(exc).__name__}: {exc})", path=path) from None
    bm = [i for i, a in enumerate(axes) if isinstance(a, cifti2.BrainModelAxis)]
    if len(axes) != 2 or len(bm) != 1:
        kinds = ", ".join(type(a).__name__ for a in axes)
        raise InputError(f"CIFTI file has axes ({kinds}); expected one brain-model axis and one "
                         "scalar/label/series axis (dscalar, dlabel, dtseries)", path=path)
    return bm[0], axes[bm[0]], axes[1 - bm[0]]


def _check_surface_size(n_vertices: int, stored: int, k: int, structure: str, path: Path) -> None:
    """Refuse a brain model whose surface is too large to scatter the data onto: more than
    :data:`~geomorph_bids.io.limits.MAX_VERTICES` vertices, or a surface many times larger than
    the vertices the file stores whose (V, K) full map would exceed MAX_VERTICES x MAX_MAPS values
    (the header's SurfaceNumberOfVertices sets the allocation, not the data: a 1 KB file could
    otherwise claim gigabytes)."""
    declared = f"{structure} is declared on a surface of {n_vertices} vertices but stores {stored}"
    if n_vertices > MAX_VERTICES:
        raise InputError(f"{declared}; geomorph-bids accepts at most {MAX_VERTICES} vertices: the header is "
                         "corrupted", path=path)
    if n_vertices > 2 * stored and n_vertices * k > MAX_VERTICES * MAX_MAPS:
        raise InputError(f"{declared}, with {k} maps: {n_vertices * k} values once scattered onto the surface, "
                         f"more than geomorph-bids accepts ({MAX_VERTICES * MAX_MAPS}); the header is corrupted",
                         path=path)


def _columns(img: cifti2.Cifti2Image, path: Path, hemi: str
             ) -> tuple[np.ndarray, np.ndarray, int, object]:
    """(data (n, K) for the hemisphere's cortex, its vertex indices, V, other axis)."""
    structure = CIFTI_STRUCTURES[hemi_code(hemi)]
    ibm, bm, other = _brain_models(img, path)
    found = []
    for name, slc, sub in bm.iter_structures():     # loop over a few structures
        found.append(str(name))
        if name == structure:
            break
    else:
        raise InputError(f"has no {structure} brain model (structures: {', '.join(found) or 'none'})",
                         path=path)
    n_vertices = int(bm.nvertices[structure])
    vertex = np.asarray(sub.vertex, dtype=np.int64)
    if vertex.size and (vertex.min() < 0 or vertex.max() >= n_vertices):
        raise InputError(f"{structure} lists vertex {int(vertex.max())} of a {n_vertices}-vertex surface",
                         path=path)
    _check_surface_size(n_vertices, vertex.size, int(img.shape[1 - ibm]), structure, path)
    try:
        block = img.dataobj[:, slc] if ibm == 1 else img.dataobj[slc, :]
        with np.errstate(invalid="ignore"):  # signalling NaNs (damaged bytes): counted by validate, not warned
            data = np.asarray(block, dtype=np.float64)
    except Exception as exc:
        raise InputError(f"CIFTI data are truncated or corrupted ({type(exc).__name__}: {exc})",
                         path=path) from None
    data = data.T if ibm == 1 else data
    if data.shape[0] != vertex.size:  # the header's index count and the stored data disagree
        raise InputError(f"CIFTI data are truncated or corrupted: {structure} lists {vertex.size} vertices "
                         f"but the data hold {data.shape[0]} rows", path=path)
    return data, vertex, n_vertices, other


def read_cifti_cortex(path: str | Path, hemi: str, fill: float = 0.0) -> CiftiCortex:
    """One hemisphere's cortex of a CIFTI-2 file scattered onto the full surface.

    Parameters
    ----------
    path : CIFTI-2 dscalar/dtseries/dlabel file
    hemi : 'L' or 'R'
    fill : value of vertices outside the CIFTI cortex mask (medial wall); 0.0 by default

    Returns
    -------
    CiftiCortex(values (V, K) float64, mask (V,) bool, names K str); V is the
    surface vertex count stored in the file (32492 for fsLR 32k).
    """
    p = Path(path)
    img = load_cifti(p)
    data, vertex, n_vertices, other = _columns(img, p, hemi)
    values = np.full((n_vertices, data.shape[1]), fill, dtype=np.float64)
    values[vertex] = data
    mask = np.zeros(n_vertices, dtype=bool)
    mask[vertex] = True
    names = [str(n) for n in getattr(other, "name", [])] or [""] * data.shape[1]
    return CiftiCortex(values, mask, names)


def read_cifti_labels(path: str | Path, hemi: str, map_index: int = 0, fill: int = 0
                      ) -> tuple[np.ndarray, dict[int, tuple[str, tuple[float, ...]]]]:
    """One map of a CIFTI-2 dlabel file on one hemisphere's full surface.

    Returns ((V,) int64 label keys, ``fill`` on the medial wall; key -> (name, rgba 0..1)).
    """
    p = Path(path)
    img = load_cifti(p)
    data, vertex, n_vertices, other = _columns(img, p, hemi)
    if not isinstance(other, cifti2.LabelAxis):
        raise InputError(f"is not a CIFTI label file (its map axis is {type(other).__name__}); "
                         "use a .dlabel.nii", path=p)
    if not 0 <= map_index < data.shape[1]:
        raise InputError(f"has {data.shape[1]} label maps, map {map_index} was requested", path=p)
    labels = np.full(n_vertices, fill, dtype=np.int64)
    labels[vertex] = np.rint(data[:, map_index]).astype(np.int64)
    table = {int(k): (str(nm), tuple(float(c) for c in rgba))
             for k, (nm, rgba) in other.label[map_index].items()}
    return labels, table


def write_dscalar(path: str | Path, maps: dict[str, np.ndarray], rois: dict[str, np.ndarray],
                  names: list[str], metadata: dict[str, str] | None = None) -> Path:
    """Write a CIFTI-2 dense scalar file (``.dscalar.nii``) of both hemispheres, atomically.

    Parameters
    ----------
    path : output file.
    maps : ``{"L": (V_L, K), "R": (V_R, K)}`` values on each hemisphere's full mesh (K maps).
    rois : ``{"L": (V_L,) bool, "R": (V_R,) bool}``: the vertices written (e.g. the fsLR atlas
        ROI, which leaves out the medial wall as the HCP pipelines do).
    names : the K map names.
    metadata : strings stored in the CIFTI header's metadata (e.g. where the meshes came from).

    Returns ``path``. The maps are stored as float32; a NaN inside the ROI is kept as NaN.
    """
    from .atomic import atomic_write_bytes

    axes, blocks = [], []
    for hemi in ("L", "R"):
        values = np.asarray(maps[hemi], dtype=np.float64)
        values = values[:, None] if values.ndim == 1 else values
        roi = np.asarray(rois[hemi], dtype=bool).reshape(-1)
        if values.shape != (len(roi), len(names)):
            raise ValueError(f"hemi-{hemi}: maps have shape {values.shape}; expected ({len(roi)}, {len(names)})")
        structure = CIFTI_STRUCTURES[hemi]
        axes.append(cifti2.BrainModelAxis(structure, vertex=np.flatnonzero(roi), nvertices={structure: len(roi)}))
        blocks.append(values[roi])
    header = cifti2.Cifti2Header.from_axes((cifti2.ScalarAxis(list(names)), axes[0] + axes[1]))
    header.matrix.metadata = cifti2.Cifti2MetaData({str(k): str(v) for k, v in (metadata or {}).items()})
    img = cifti2.Cifti2Image(np.concatenate(blocks, axis=0).T.astype(np.float32), header)
    # the name too, as the CIFTI-2 standard lists it and Workbench and the HCP pipelines write it
    img.nifti_header.set_intent("NIFTI_INTENT_CONNECTIVITY_DENSE_SCALARS", name="ConnDenseScalar")
    return atomic_write_bytes(path, img.to_bytes())

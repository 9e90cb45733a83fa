"""GIFTI reading (``.gii`` and gzipped ``.gii.gz``) and atomic GIFTI writing.

Readers return plain arrays and raise :class:`InputError` on any unreadable
file.  Writers follow Connectome Workbench conventions:

* surfaces: NIFTI_INTENT_POINTSET float32 (with AnatomicalStructurePrimary,
  AnatomicalStructureSecondary, GeometricType in its metadata) and
  NIFTI_INTENT_TRIANGLE int32 (TopologicalType Closed);
* metrics (shape/func): one float32 array per column, NIFTI_INTENT_SHAPE for
  ``.shape.gii`` and NIFTI_INTENT_NONE otherwise, column name in metadata
  ``Name``; AnatomicalStructurePrimary in the file metadata;
* labels: one int32 NIFTI_INTENT_LABEL array with a label table.

Writes are atomic (:func:`geomorph_bids.io.atomic.atomic_write_bytes`): an
interrupted run never leaves a partial output.
"""

from __future__ import annotations

import base64
import gzip
import re
import zlib
from pathlib import Path
from typing import Mapping, Sequence

import nibabel as nib
import numpy as np
from nibabel.gifti import (GiftiCoordSystem, GiftiDataArray, GiftiImage, GiftiLabel,
                           GiftiLabelTable, GiftiMetaData)
from nibabel.nifti1 import data_type_codes
from nibabel.gifti.util import array_index_order_codes

from geomorph_bids.errors import InputError
from geomorph_bids.io.atomic import atomic_write_bytes
from geomorph_bids.io.freesurfer import CURV_MAGIC, TRIANGLE_MAGIC, read_magic
from geomorph_bids.io.gifti_guard import check_arrays
from geomorph_bids.io.limits import (MAX_VERTICES, READ_TIMEOUT_S, SURFACE_MAX_BYTES, decompress_bounded, map_max_bytes,
                                     read_bounded, regular_file, with_deadline)
from geomorph_bids.io.validate import check_finite, hemi_code
from geomorph_bids.io.quiet import quiet_warnings

__all__ = [
    "GEOMETRIC_TYPES", "SECONDARY_TYPES", "STRUCTURES", "LabelTable",
    "load_gifti", "read_gifti_surface", "read_gifti_data", "read_gifti_labels",
    "write_surface", "write_metric", "write_labels", "is_gifti_name", "gifti_vertex_count", "EncodedArrays",
]

#: hemi code -> GIFTI AnatomicalStructurePrimary
STRUCTURES = {"L": "CortexLeft", "R": "CortexRight"}
#: valid GeometricType values (GIFTI standard)
GEOMETRIC_TYPES = ("Reconstruction", "Anatomical", "Inflated", "VeryInflated", "Spherical",
                   "SemiSpherical", "Ellipsoid", "Flat", "Hull")
#: valid AnatomicalStructureSecondary values
SECONDARY_TYPES = ("GrayWhite", "Pial", "MidThickness")

#: label key -> (name, (r, g, b, a) in 0..1)
LabelTable = dict[int, tuple[str, tuple[float, float, float, float]]]

_POINTSET = nib.nifti1.intent_codes["NIFTI_INTENT_POINTSET"]
_TRIANGLE = nib.nifti1.intent_codes["NIFTI_INTENT_TRIANGLE"]
_LABEL = nib.nifti1.intent_codes["NIFTI_INTENT_LABEL"]


def is_gifti_name(path: str | Path) -> bool:
    """True if the file name ends in ``.gii`` or ``.gii.gz``."""
    name = Path(path).name.lower()
    return name.endswith(".gii") or name.endswith(".gii.gz")


# ----------------------------------------------------------------------------- reading

def load_gifti(path: str | Path, limit: int = SURFACE_MAX_BYTES) -> GiftiImage:
    """Load a GIFTI image; gzipped files (``.gii.gz``) are decompressed in memory.

    ``limit``: the most bytes the file, its decompressed XML and its decoded data arrays may
    take (:mod:`geomorph_bids.io.limits`), checked before anything is decompressed or decoded.
    Raises InputError for a missing, empty, oversized, truncated or corrupted file, XML entity
    declarations (GIFTI has none; they are how "billion laughs" files exhaust memory) and data
    arrays that decode to more than their declared size.
    """
    p = Path(path)
    raw = read_bounded(p, limit, "GIFTI file")
    gzipped = raw[:2] == b"\x1f\x8b"
    if gzipped:
        raw = decompress_bounded(raw, limit, p, bound="the most a GIFTI file may hold here")
        if not raw:
            raise InputError("is empty after gzip decompression", path=p)
    head = raw[:256].lstrip(b"\xef\xbb\xbf \t\r\n")
    if not (head.startswith(b"<?xml") or head.startswith(b"<GIFTI") or head.startswith(b"<!DOCTYPE")):
        zipped_fs = _gzipped_freesurfer_hint(raw, p.name) if gzipped else ""
        raise InputError(zipped_fs or f"is not a GIFTI file (does not start with XML){_freesurfer_hint(raw)}", path=p)
    check_arrays(raw, limit, p)
    try:
        with quiet_warnings():
            img = GiftiImage.from_bytes(raw)
    except Exception as exc:  # nibabel raises many types (ExpatError, ValueError, zlib.error...)
        raise InputError(f"GIFTI file is truncated or corrupted ({type(exc).__name__}: {exc})",
                         path=p) from None
    if not img.darrays:
        raise InputError("GIFTI file holds no data arrays", path=p)
    return img


def _freesurfer_hint(raw: bytes) -> str:
    """What a FreeSurfer file (or a NIfTI image: ``.nii.gz`` is gzipped as ``.gii.gz`` is) given
    a GIFTI name is, and what to do (``""`` for other files)."""
    if len(raw) >= 4 and {int.from_bytes(raw[:4], "little"), int.from_bytes(raw[:4], "big")} & {348, 540}:
        return (": it is a gzipped NIfTI image (a volume, or a CIFTI file): volumes must first be projected onto "
                "the surface; give a CIFTI-2 file as it is written (.dscalar.nii, not gzipped)")
    kind = {TRIANGLE_MAGIC: ("surface", "lh.sphere", "mris_convert lh.sphere lh.sphere.surf.gii"),
            CURV_MAGIC: ("morphometry file", "lh.sulc", "mris_convert -c lh.sulc lh.white lh.sulc.shape.gii")
            }.get(read_magic(raw))
    if kind is None:
        return ""
    what, name, convert = kind
    return (f": it is a FreeSurfer {what} (magic 0x{read_magic(raw):06X}) under a GIFTI name; give it its "
            f"FreeSurfer name ({name}) or convert it ({convert})")


def _gzipped_freesurfer_hint(raw: bytes, name: str) -> str:
    """What a gzipped FreeSurfer surface or morphometry file (``lh.sphere.gz``, or gzipped under
    its own name ``lh.sphere``) is, and how to decompress it (``""`` for other contents): the
    hint for a FreeSurfer file under a GIFTI name told a user whose file was already named
    ``lh.sphere`` to give it that name."""
    what = {TRIANGLE_MAGIC: "surface", CURV_MAGIC: "morphometry file"}.get(read_magic(raw))
    if what is None:
        return ""
    how = f"gunzip {name}" if name.endswith(".gz") else f"mv {name} {name}.gz && gunzip {name}.gz"
    return (f"is a gzipped FreeSurfer {what} (magic 0x{read_magic(raw):06X}); FreeSurfer files are read "
            f"uncompressed: decompress it ({how})")


_GIFTI_ARRAY = re.compile(rb"<DataArray\b[^>]*>", re.S)
_GIFTI_DIM0 = re.compile(rb"\bDim0\s*=\s*[\"'](\d+)[\"']")


def gifti_vertex_count(path: str | Path, timeout_s: float | None = None) -> int | None:
    """Number of vertices of a GIFTI surface (``.surf.gii[.gz]``) from its header only: the
    ``Dim0`` of its NIFTI_INTENT_POINTSET array, read incrementally (1 MiB at a time, never
    the whole file, at most :data:`~geomorph_bids.io.limits.SURFACE_MAX_BYTES`, within
    ``timeout_s`` seconds, default :data:`~geomorph_bids.io.limits.READ_TIMEOUT_S`); None when
    it cannot be read, is not a regular file, holds no point set, or says none or more than
    :data:`~geomorph_bids.io.limits.MAX_VERTICES` vertices (the largest mesh accepted: a damaged header)."""
    p = Path(path)

    def scan() -> int | None:
        with open(p, "rb") as fh:
            head = fh.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(p, "rb") as fh:
            buf = fh.read(4096)
            seen = len(buf)
            while seen <= SURFACE_MAX_BYTES:
                for tag in _GIFTI_ARRAY.finditer(buf):
                    if b"NIFTI_INTENT_POINTSET" in tag.group(0):
                        dim = _GIFTI_DIM0.search(tag.group(0))
                        n = int(dim.group(1)) if dim else 0
                        return n if 0 < n <= MAX_VERTICES else None  # none, or beyond the largest mesh accepted
                chunk = fh.read(1 << 20)
                if not chunk:
                    return None
                seen += len(chunk)
                buf = buf[-4096:] + chunk  # the tail may hold the start of a tag
        return None

    try:
        regular_file(p)
        return with_deadline(scan, READ_TIMEOUT_S if timeout_s is None else timeout_s, p)
    except (InputError, OSError, EOFError, ValueError, zlib.error):
        return None


def _meta(meta: GiftiMetaData | None) -> dict[str, str]:
    return {} if meta is None else {str(k): str(v) for k, v in meta.items()}


def _darray_data(da: GiftiDataArray, path: Path) -> np.ndarray:
    try:
        return np.asarray(da.data)
    except Exception as exc:
        raise InputError(f"GIFTI data array is truncated or corrupted ({exc})", path=path) from None


def read_gifti_surface(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """Read a GIFTI surface.

    Returns
    -------
    vertices : (V, 3) float64, file units (mm)
    faces : (F, 3) int64, not yet range-checked (see validate.check_mesh)
    meta : file metadata updated with the POINTSET array's metadata
    """
    p = Path(path)
    img = load_gifti(p, SURFACE_MAX_BYTES)
    pts = [d for d in img.darrays if d.intent == _POINTSET]
    tri = [d for d in img.darrays if d.intent == _TRIANGLE]
    if len(pts) != 1 or len(tri) != 1:
        kinds = ", ".join(nib.nifti1.intent_codes.label[d.intent] for d in img.darrays)  # every one, in order
        hint = ("is it a metric (.shape.gii/.func.gii)?" if not pts or not tri else
                "one surface per file expected (several surfaces in one file?)")
        raise InputError(f"is not a GIFTI surface: expected one NIFTI_INTENT_POINTSET and one "
                         f"NIFTI_INTENT_TRIANGLE array, found {len(pts)} and {len(tri)} "
                         f"(arrays: {kinds}); {hint}", path=p)
    v, f = _darray_data(pts[0], p), _darray_data(tri[0], p)
    if v.ndim != 2 or v.shape[1] != 3 or v.shape[0] == 0:
        raise InputError(f"GIFTI POINTSET has shape {v.shape}, expected (V, 3)", path=p)
    meta = _meta(img.meta)
    meta.update(_meta(pts[0].meta))
    with np.errstate(invalid="ignore"):  # signalling NaNs (damaged bytes): refused by validate, not warned
        return v.astype(np.float64), f, meta


def read_gifti_data(path: str | Path, limit: int | None = None) -> tuple[np.ndarray, list[str], dict[str, str]]:
    """Read every data array of a GIFTI metric (shape/func/label/time series) file of at most
    ``limit`` bytes (default: :func:`~geomorph_bids.io.limits.map_max_bytes` of the largest mesh).

    Returns
    -------
    values : (V, K) float64, one column per data array (a 2-D array adds its columns)
    names : K column names (metadata ``Name``; ``""`` where absent)
    meta : file metadata
    """
    p = Path(path)
    img = load_gifti(p, map_max_bytes() if limit is None else limit)
    if any(d.intent in (_POINTSET, _TRIANGLE) for d in img.darrays):
        raise InputError("is a GIFTI surface (mesh), not a per-vertex feature map", path=p)
    cols, names = [], []
    for d in img.darrays:              # loop over a handful of arrays
        a = _darray_data(d, p)
        if a.ndim == 2 and 1 in a.shape:
            a = a.reshape(-1)
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2 or a.shape[0] == 0:
            raise InputError(f"GIFTI data array has shape {a.shape}, expected (V,) or (V, K)", path=p)
        if a.dtype.kind not in "iufb":
            raise InputError(f"GIFTI data array has non-numeric type {a.dtype}", path=p)
        with np.errstate(invalid="ignore"):  # signalling NaNs (damaged bytes): counted by validate, not warned
            cols.append(a.astype(np.float64))
        name = str(d.meta.get("Name", "")) if d.meta is not None else ""
        names.extend([name] * a.shape[1])
    n = {c.shape[0] for c in cols}
    if len(n) != 1:
        raise InputError(f"GIFTI data arrays have different vertex counts {sorted(n)}", path=p)
    return np.concatenate(cols, axis=1), names, _meta(img.meta)


#: the largest label key a float label array may hold (GIFTI's keys are int32)
_MAX_LABEL_KEY = np.iinfo(np.int32).max


def read_gifti_labels(path: str | Path) -> tuple[np.ndarray, LabelTable]:
    """Read a GIFTI label file: ((V,) int64 keys, label table of the file)."""
    p = Path(path)
    img = load_gifti(p, map_max_bytes())
    arrays = [d for d in img.darrays if d.intent == _LABEL] or img.darrays
    a = _darray_data(arrays[0], p)
    if a.ndim == 2 and 1 in a.shape:
        a = a.reshape(-1)
    if a.ndim != 1 or a.dtype.kind not in "iuf":
        raise InputError(f"GIFTI label array has shape {a.shape} and type {a.dtype}, "
                         "expected (V,) integers", path=p)
    if a.dtype.kind == "f":
        # sMRIPrep/fMRIPrep write their cortex mask (_desc-cortex_mask.label.gii) as float32 0.0/1.0:
        # whole numbers in GIFTI's label-key range are keys; anything else is not a label map
        bad = ~(np.isfinite(a) & (a == np.round(a)) & (np.abs(a) <= _MAX_LABEL_KEY))
        if bad.any():
            i = int(np.argmax(bad))
            raise InputError(f"GIFTI label array is {a.dtype} with a value that is not a label key "
                             f"({float(a[i])!r} at vertex {i}), expected whole numbers", path=p)
    table: LabelTable = {}
    if img.labeltable is not None:
        for lab in img.labeltable.labels:
            rgba = tuple(float(c) if c is not None else 1.0 for c in lab.rgba)
            table[int(lab.key)] = (str(lab.label or ""), rgba)  # type: ignore[assignment]
    return a.astype(np.int64), table


# ----------------------------------------------------------------------------- writing

#: zlib level of written data arrays: level 1 gives files 2-5 % larger than nibabel's default
#: level 6 (fsLR's 164k sphere: 2.75 vs 2.71 MB of payload) in a quarter of the time (a
#: 163,842-vertex sphere written in 0.09 s instead of 0.33)
_ZLIB_LEVEL = 1


def _deflate(payload: bytes, floating: bool) -> bytes:
    """zlib stream of one data array. Float arrays of real data (coordinates of a FreeSurfer
    sphere, a registered sphere, maps) have almost no repeated byte strings, so deflate gains
    only from its Huffman coding: Z_HUFFMAN_ONLY gives the same or a slightly smaller stream
    three times faster (fsLR's 164k vertices: 1.764 MB in 0.016 s vs 1.776 MB in 0.050 s at
    level 1). Regular floats (an icosphere's coordinates) and integer arrays (triangles, labels)
    repeat a lot: level 1. Which one a float array is, the first :data:`_PROBE` bytes decide
    (both ways, ~2 % of the array's time). Any zlib reader inflates both; the GIFTI encoding
    stays GZipBase64Binary.

    The probe's stream of the strategy chosen is continued with the rest of the array (deflate's
    output does not depend on how its input is split): the probe is not compressed twice."""
    if not floating:
        return _pack(payload, zlib.Z_DEFAULT_STRATEGY)
    view = memoryview(payload)
    probe = view[:_PROBE]
    huffman, default = _packer(zlib.Z_HUFFMAN_ONLY), _packer(zlib.Z_DEFAULT_STRATEGY)
    heads = huffman.compress(probe), default.compress(probe)
    sizes = [len(head) + len(packer.copy().flush()) for head, packer in zip(heads, (huffman, default))]
    head, packer = (heads[0], huffman) if sizes[0] <= 1.01 * sizes[1] else (heads[1], default)
    return head + packer.compress(view[_PROBE:]) + packer.flush()


#: bytes of a float array compressed both ways to choose its deflate strategy
_PROBE = 1 << 16


def _packer(strategy: int):
    """A zlib compressor of :data:`_ZLIB_LEVEL` and ``strategy``."""
    return zlib.compressobj(_ZLIB_LEVEL, zlib.DEFLATED, 15, 8, strategy)


def _pack(payload: bytes, strategy: int) -> bytes:
    packer = _packer(strategy)
    return packer.compress(payload) + packer.flush()


def _encode(payload: bytes, floating: bool) -> str:
    """The GZipBase64Binary text of one data array's bytes (:func:`_deflate`, then base64)."""
    return base64.b64encode(_deflate(payload, floating)).decode()


class EncodedArrays:
    """The encoded text of every data array written with it, by content: an array written again
    with the same bytes (a hemisphere's native and registered spheres share their triangles:
    327,680 of them at 164k vertices, 0.03 s to compress) is compressed once, into the same
    bytes. Keep one for a few related files (it holds each array's bytes and text until it is
    dropped); pass it as ``encoded=`` to :func:`write_surface`."""

    def __init__(self) -> None:
        self._texts: dict[tuple[bool, bytes], str] = {}

    def text(self, payload: bytes, floating: bool) -> str:
        """:func:`_encode` of ``payload``, computed on its first use only."""
        key = (floating, payload)
        found = self._texts.get(key)
        if found is None:
            found = self._texts[key] = _encode(payload, floating)
        return found


class _DataArray(GiftiDataArray):
    """A GIFTI data array written GZipBase64Binary by :func:`_deflate` (nibabel's writer uses
    zlib's default level 6, which spends 0.26 s on one 327,680-triangle array for no gain);
    ``encoded``: an :class:`EncodedArrays` to take the text from (or add it to)."""

    def __init__(self, *args, encoded: EncodedArrays | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._encoded = encoded

    def _to_xml_element(self):
        data = self.data
        self.data = np.empty(0, dtype=data.dtype)   # nibabel writes the tags; the payload is ours
        try:
            element = super()._to_xml_element()
        finally:
            self.data = data
        typed = np.asarray(data, data_type_codes.dtype[self.datatype])
        payload = typed.tobytes(array_index_order_codes.npcode[self.ind_ord])
        floating = typed.dtype.kind in "fc"
        element.find("Data").text = (_encode(payload, floating) if self._encoded is None
                                     else self._encoded.text(payload, floating))
        return element


def _save(img: GiftiImage, path: str | Path) -> Path:
    data = img.to_xml()
    if str(path).lower().endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    return atomic_write_bytes(path, data)


def _file_meta(hemi: str, extra: Mapping[str, str] | None) -> GiftiMetaData:
    meta = {"AnatomicalStructurePrimary": STRUCTURES[hemi_code(hemi)]}
    meta.update({str(k): str(v) for k, v in (extra or {}).items()})
    return GiftiMetaData(meta)


def write_surface(path: str | Path, vertices: np.ndarray, faces: np.ndarray, hemi: str,
                  geometric_type: str = "Spherical", secondary: str | None = None,
                  meta: Mapping[str, str] | None = None, encoded: EncodedArrays | None = None) -> Path:
    """Write a GIFTI surface atomically.

    Parameters
    ----------
    path : output ``.surf.gii`` (``.gz`` suffix: gzipped)
    vertices : (V, 3) coordinates, mm; stored float32
    faces : (F, 3) vertex indices; stored int32
    hemi : 'L' or 'R' -> AnatomicalStructurePrimary CortexLeft / CortexRight
    geometric_type : GIFTI GeometricType, one of GEOMETRIC_TYPES ("Spherical" for spheres)
    secondary : AnatomicalStructureSecondary (GrayWhite, Pial, MidThickness), optional
    meta : extra metadata for the POINTSET array
    encoded : :class:`EncodedArrays` shared with other surfaces of the same triangles: they are
        compressed once (the coordinates, which differ, each time); the file is the same
    """
    v = np.asarray(vertices)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"vertices must be (V, 3) and faces (F, 3), got {v.shape} and {f.shape}")
    check_finite(v, path, what="vertex coordinates")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError(f"faces index vertices outside [0, {len(v)})")
    if geometric_type not in GEOMETRIC_TYPES:
        raise ValueError(f"geometric_type must be one of {GEOMETRIC_TYPES}, got {geometric_type!r}")
    if secondary is not None and secondary not in SECONDARY_TYPES:
        raise ValueError(f"secondary must be one of {SECONDARY_TYPES}, got {secondary!r}")
    pmeta = {"AnatomicalStructurePrimary": STRUCTURES[hemi_code(hemi)]}
    if secondary is not None:
        pmeta["AnatomicalStructureSecondary"] = secondary
    pmeta["GeometricType"] = geometric_type
    pmeta.update({str(k): str(val) for k, val in (meta or {}).items()})
    talairach = nib.nifti1.xform_codes["NIFTI_XFORM_TALAIRACH"]
    pts = _DataArray(v.astype(np.float32), intent="NIFTI_INTENT_POINTSET",
                     datatype="NIFTI_TYPE_FLOAT32", meta=GiftiMetaData(pmeta),
                     coordsys=GiftiCoordSystem(talairach, talairach, np.eye(4)))
    tri = _DataArray(f.astype(np.int32), intent="NIFTI_INTENT_TRIANGLE",
                     datatype="NIFTI_TYPE_INT32",
                     meta=GiftiMetaData({"TopologicalType": "Closed"}), coordsys=None, encoded=encoded)
    return _save(GiftiImage(darrays=[pts, tri]), path)


def write_metric(path: str | Path, values: np.ndarray, hemi: str,
                 names: Sequence[str] | None = None, intent: str | None = None,
                 meta: Mapping[str, str] | None = None) -> Path:
    """Write a per-vertex metric (shape/func GIFTI) atomically.

    Parameters
    ----------
    path : output ``.shape.gii`` or ``.func.gii`` (``.gz`` suffix: gzipped)
    values : (V,) or (V, K); one float32 data array per column
    hemi : 'L' or 'R' -> file metadata AnatomicalStructurePrimary
    names : K column names (metadata ``Name`` of each array), optional
    intent : NIFTI intent name; default NIFTI_INTENT_SHAPE for ``.shape.gii``,
        NIFTI_INTENT_NONE otherwise
    meta : extra file metadata
    """
    a = np.asarray(values)
    if a.ndim not in (1, 2) or a.shape[0] == 0:
        raise ValueError(f"values must be (V,) or (V, K), got {a.shape}")
    cols = a.reshape(a.shape[0], -1)
    if names is not None and len(names) != cols.shape[1]:
        raise ValueError(f"{len(names)} names for {cols.shape[1]} columns")
    if intent is None:
        intent = "NIFTI_INTENT_SHAPE" if ".shape.gii" in str(path).lower() else "NIFTI_INTENT_NONE"
    arrays = []
    for k in range(cols.shape[1]):        # loop over columns
        m = GiftiMetaData({"Name": str(names[k])}) if names is not None else GiftiMetaData()
        arrays.append(_DataArray(np.ascontiguousarray(cols[:, k], dtype=np.float32),
                                 intent=intent, datatype="NIFTI_TYPE_FLOAT32", meta=m))
    return _save(GiftiImage(darrays=arrays, meta=_file_meta(hemi, meta)), path)


def _default_colour(key: int) -> tuple[float, float, float, float]:
    if key == 0:
        return (0.0, 0.0, 0.0, 0.0)
    rng = np.random.default_rng(key)         # deterministic distinct colours
    r, g, b = rng.uniform(0.2, 1.0, 3)
    return (float(r), float(g), float(b), 1.0)


def write_labels(path: str | Path, labels: np.ndarray, table: Mapping[int, object], hemi: str,
                 name: str | None = None, meta: Mapping[str, str] | None = None) -> Path:
    """Write a GIFTI label file (``.label.gii``) atomically.

    Parameters
    ----------
    path : output ``.label.gii`` (``.gz`` suffix: gzipped)
    labels : (V,) integer keys; stored int32, NIFTI_INTENT_LABEL
    table : key -> name, or key -> (name, (r, g, b, a) in 0..1); every key used in
        ``labels`` must be present (key 0 named "???" is added if missing and used)
    hemi : 'L' or 'R' -> file metadata AnatomicalStructurePrimary
    name : map name (array metadata ``Name``), optional
    meta : extra file metadata
    """
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.dtype.kind not in "iu":
        raise ValueError(f"labels must be (V,) integers, got {lab.shape} {lab.dtype}")
    entries: dict[int, tuple[str, tuple[float, float, float, float]]] = {}
    for key, val in table.items():           # loop over table entries
        if isinstance(val, str):
            entries[int(key)] = (val, _default_colour(int(key)))
        else:
            nm, rgba = val  # type: ignore[misc]
            entries[int(key)] = (str(nm), tuple(float(c) for c in rgba))  # type: ignore[assignment]
    used = np.unique(lab)
    if 0 in used and 0 not in entries:
        entries[0] = ("???", (0.0, 0.0, 0.0, 0.0))
    missing = sorted(set(used.tolist()) - set(entries))
    if missing:
        raise ValueError(f"label keys {missing[:10]} are used but not in the label table")
    lt = GiftiLabelTable()
    for key in sorted(entries):
        nm, (r, g, b, al) = entries[key]
        gl = GiftiLabel(key=key, red=r, green=g, blue=b, alpha=al)
        gl.label = nm
        lt.labels.append(gl)
    m = GiftiMetaData({"Name": name}) if name is not None else GiftiMetaData()
    da = _DataArray(lab.astype(np.int32), intent="NIFTI_INTENT_LABEL",
                    datatype="NIFTI_TYPE_INT32", meta=m)
    return _save(GiftiImage(darrays=[da], labeltable=lt, meta=_file_meta(hemi, meta)), path)

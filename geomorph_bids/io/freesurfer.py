"""FreeSurfer binary surfaces, morphometry ("curv") files, annotations and labels.

Reads through :mod:`nibabel.freesurfer` after checking the magic number and the
file size against the header, so that a wrong, truncated or corrupted file gives
an :class:`InputError` that says so instead of a reshape error.

Formats (big-endian):

* triangle surface (``lh.white``, ``lh.sphere``, ``lh.sphere.reg``): magic
  0xFFFFFE, two text lines, int32 V, int32 F, V*3 float32, F*3 int32;
* new morphometry file (``lh.sulc``, ``lh.curv``, ``lh.thickness``): magic
  0xFFFFFF, int32 V, int32 F, int32 values-per-vertex (1), V float32;
* old morphometry file: 3-byte V, 3-byte F, V int16 / 100 (accepted when the
  file size matches exactly);
* quadrangle surface (early FreeSurfer wrote surfaces so; FreeSurfer 7 and nibabel still read
  it): magic 0xFFFFFF (coordinates int16 / 100) or 0xFFFFFD (float32), 3-byte V, 3-byte Q,
  V*3 coordinates, Q*4 3-byte vertex numbers; each quadrangle is split into two triangles as
  FreeSurfer splits it. Its magic 0xFFFFFF is also the new morphometry file's: the file size
  tells them apart (a morphometry file is 15 + 4 V bytes).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from nibabel import freesurfer as nfs

from geomorph_bids.errors import InputError
from geomorph_bids.io.limits import (MAX_VERTICES, READ_TIMEOUT_S, SURFACE_MAX_BYTES, map_max_bytes, read_bounded,
                                     regular_file, with_deadline)
from geomorph_bids.io.quiet import quiet_warnings

__all__ = ["TRIANGLE_MAGIC", "CURV_MAGIC", "read_magic", "triangle_header", "read_fs_vertex_count",
           "read_fs_surface", "surface_footer", "write_fs_surface", "read_fs_morph", "read_fs_annot", "read_fs_label"]

TRIANGLE_MAGIC = 0xFFFFFE
CURV_MAGIC = 0xFFFFFF          # also the old quadrangle-surface magic
NEW_QUAD_MAGIC = 0xFFFFFD
#: tags FreeSurfer may write after a surface's faces (utils/tags.h: command lines, volume geometry, ...)
_TAGS = frozenset({1, 2, 3, 4, 5, 20, 21, 30, 31, 32, 33, 40, 41, 42, 43, 44})


def read_magic(raw: bytes) -> int:
    """The first three bytes as a big-endian integer (FreeSurfer magic number)."""
    return int.from_bytes(raw[:3], "big") if len(raw) >= 3 else -1


def triangle_header(head: bytes) -> tuple[int, int, int] | None:
    """(V, F, offset of the coordinates) from the first bytes of a FreeSurfer triangle surface
    (magic, the "created by" line, int32 V, int32 F), or None when they are not one or are cut short.
    FreeSurfer writes the line with two newlines and reads it as ``fgets`` then ``fscanf(fp, "\\n")``:
    the whitespace after the line's newline is skipped, however much (one newline: some writers'),
    as here. No size check: a header alone (e.g. the first 4 KiB) is enough."""
    if read_magic(head) != TRIANGLE_MAGIC:
        return None
    end1 = head.find(b"\n", 3)
    if end1 < 0:
        return None
    start = end1 + 1
    while start < len(head) and head[start] in _C_WHITESPACE:
        start += 1
    if len(head) < start + 8:
        return None
    v, f = (int(x) for x in np.frombuffer(head, ">i4", 2, start))
    return v, f, start + 8


#: the bytes C's ``isspace`` holds (what ``fscanf(fp, "\\n")`` skips)
_C_WHITESPACE = frozenset(b" \t\n\v\f\r")


def _is_morph_layout(raw: bytes) -> bool:
    """Whether bytes of magic 0xFFFFFF are laid out as a new morphometry file (int32 V, F, 1, then
    exactly V float32), not as an old quadrangle surface of the same magic."""
    if len(raw) < 15:
        return False
    v, _f, per_vertex = (int(x) for x in np.frombuffer(raw, ">i4", 3, 3))
    return per_vertex == 1 and v > 0 and len(raw) == 15 + 4 * v


def quad_header(raw: bytes, size: int | None = None) -> tuple[int, int, int] | None:
    """(V, Q, number of bytes the vertices and quadrangles need) of a FreeSurfer quadrangle surface
    (magic 0xFFFFFF or 0xFFFFFD), or None when the bytes are not one: too short, no vertex or
    quadrangle, a new morphometry file (same magic 0xFFFFFF), or a file of ``size`` bytes (default
    ``len(raw)``) that is not exactly that long or followed by FreeSurfer tags."""
    magic = read_magic(raw)
    if magic not in (CURV_MAGIC, NEW_QUAD_MAGIC) or len(raw) < 9 or (magic == CURV_MAGIC and _is_morph_layout(raw)):
        return None
    v, q = int.from_bytes(raw[3:6], "big"), int.from_bytes(raw[6:9], "big")
    need = 9 + 3 * v * (2 if magic == CURV_MAGIC else 4) + 12 * q
    size = len(raw) if size is None else size
    if v <= 0 or q <= 0 or size < need:
        return None
    if size > need and (len(raw) < need + 4 or int(np.frombuffer(raw, ">i4", 1, need)[0]) not in _TAGS):
        return None
    return v, q, need


def _read_quad_surface(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(V, 3) float64 mm and (2 Q, 3) int64 of a quadrangle surface (:func:`quad_header` not None): each
    quadrangle (a, b, c, d) becomes (a, b, d), (c, d, b) when a is even, else (a, b, c), (a, c, d)."""
    v, q, _ = quad_header(raw)
    old = read_magic(raw) == CURV_MAGIC
    coords = np.frombuffer(raw, ">i2" if old else ">f4", 3 * v, 9).astype(np.float64).reshape(v, 3)
    if old:
        coords /= 100.0                      # int16 hundredths of a millimetre
    start = 9 + 3 * v * (2 if old else 4)
    b = np.frombuffer(raw, ">u1", 12 * q, start).astype(np.int64).reshape(q, 4, 3)
    quads = (b[..., 0] << 16) | (b[..., 1] << 8) | b[..., 2]
    a, b_, c, d = quads.T
    even = (a % 2 == 0)[:, None]
    faces = np.empty((2 * q, 3), dtype=np.int64)
    faces[0::2] = np.where(even, np.stack([a, b_, d], 1), np.stack([a, b_, c], 1))
    faces[1::2] = np.where(even, np.stack([c, d, b_], 1), np.stack([a, c, d], 1))
    return coords, faces


def read_fs_vertex_count(path: str | Path, head_bytes: int = 4096, timeout_s: float | None = None) -> int | None:
    """Number of vertices of a FreeSurfer triangle surface from its header only (the first
    ``head_bytes``, read within ``timeout_s`` seconds, default
    :data:`~geomorph_bids.io.limits.READ_TIMEOUT_S`), or None when the file cannot be read, is
    not a regular file or is not one, or when the header does not fit the file (a count of none or more than
    :data:`~geomorph_bids.io.limits.MAX_VERTICES`, or more vertices and triangles than its bytes hold: damaged;
    the reader refuses it, and memory is not sized from it)."""
    def head() -> bytes:
        with open(path, "rb") as fh:
            return fh.read(head_bytes)

    try:
        regular_file(path)
        raw = with_deadline(head, READ_TIMEOUT_S if timeout_s is None else timeout_s, path)
        size = os.stat(path).st_size
        triangles = triangle_header(raw)
        parsed = triangles or quad_header(raw, size)
    except (InputError, OSError):
        return None
    if parsed is None or not 0 < parsed[0] <= MAX_VERTICES:
        return None
    if triangles is not None and size < triangles[2] + 12 * triangles[0] + 12 * max(triangles[1], 0):
        return None
    return parsed[0]


#: what a file written in the wrong byte order says, and what to do
_SWAPPED = ("is byte-swapped: its header reads correctly only as little-endian, and FreeSurfer files are "
            "big-endian (written by a tool that ignored the byte order?); rewrite it with nibabel.freesurfer.{} "
            "or the tool's big-endian option")


#: the first bytes of surface and map formats read nowhere here -> what they are
_TEXT_FORMATS = ((b"# vtk DataFile", "a VTK file"), (b"ply", "a PLY file"),
                 (b"#!ascii", "a FreeSurfer ASCII file (.asc)"), (b"solid", "an STL file"),
                 (b"P ", "an MNI .obj surface (CIVET's format)"))


def other_format(raw: bytes) -> str:
    """``: it is a VTK file ...; convert it to GIFTI ...`` for a file of a format read nowhere here (VTK, PLY,
    FreeSurfer ASCII, STL, MNI .obj, a text file of numbers such as CIVET's per-vertex .txt maps), else ``""``."""
    head = raw[:64].lstrip()
    what = next((name for magic, name in _TEXT_FORMATS if head.startswith(magic)), None)
    if what is None:
        try:
            words = raw[:4096].decode("ascii").split()
            [float(w) for w in words[:-1]]    # the last word may be cut at the 4 KiB boundary
            what = "a text file of numbers (a CIVET .txt map, one value per vertex?)" if len(words) > 1 else None
        except (UnicodeDecodeError, ValueError):
            return ""
    if what is None:
        return ""
    return (f": it is {what}, a format not read here; convert it to GIFTI (.surf.gii for a surface, .shape.gii "
            "for a map: mris_convert reads VTK, STL and ASCII surfaces; nibabel writes GIFTI from numbers)")


def _swapped_morph(raw: bytes) -> bool:
    """True when a morphometry file's header (magic 0xFFFFFF reads the same both ways) makes
    sense only little-endian: one value per vertex and a size that matches V."""
    if len(raw) < 15:
        return False
    v, _f, per_vertex = (int(x) for x in np.frombuffer(raw, "<i4", 3, 3))
    return per_vertex == 1 and v > 0 and len(raw) >= 15 + 4 * v


def _surface_header(raw: bytes, path: Path) -> tuple[int, int, int]:
    """(V, F, offset of the coordinates) of a triangle surface; checks the size."""
    magic = read_magic(raw)
    if magic == int.from_bytes(TRIANGLE_MAGIC.to_bytes(3, "big"), "little"):
        raise InputError(_SWAPPED.format("write_geometry"), path=path)
    if magic != TRIANGLE_MAGIC:
        if magic == CURV_MAGIC and _is_morph_layout(raw):
            raise InputError(f"magic number 0x{magic:06X} is a FreeSurfer morphometry file (e.g. lh.sulc), not a "
                             f"triangle surface (0x{TRIANGLE_MAGIC:06X}); pass the surface (lh.sphere)", path=path)
        if magic in (CURV_MAGIC, NEW_QUAD_MAGIC):
            v, q = int.from_bytes(raw[3:6], "big"), int.from_bytes(raw[6:9], "big")
            raise InputError(f"magic number 0x{magic:06X} is a FreeSurfer quadrangle surface's or morphometry "
                             f"file's, but its {len(raw)} bytes fit neither (as a quadrangle surface: {v} vertices, "
                             f"{q} quadrangles); the file is truncated or corrupted", path=path)
        hint = other_format(raw)
        raise InputError(f"is not a FreeSurfer triangle surface: magic number 0x{max(magic, 0):06X}, "
                         f"expected 0x{TRIANGLE_MAGIC:06X}" + (hint or "; the file is corrupted or of another format "
                                                               "(GIFTI files must end in .gii or .gii.gz)"), path=path)
    parsed = triangle_header(raw)
    if parsed is None:
        raise InputError("FreeSurfer surface header is truncated", path=path)
    v, f, offset = parsed
    if v <= 0 or f <= 0:
        raise InputError(f"FreeSurfer surface header gives {v} vertices and {f} triangles; "
                         "the file is corrupted", path=path)
    need = offset + 12 * v + 12 * f
    if len(raw) < need:
        raise InputError(f"FreeSurfer surface is truncated: {len(raw)} bytes, the header "
                         f"({v} vertices, {f} triangles) needs {need}", path=path)
    # after the triangles FreeSurfer writes only tags (volume geometry, command lines), never
    # a file's magic number: a second surface or map there is two files joined
    if len(raw) >= need + 3 and read_magic(raw[need:]) in (TRIANGLE_MAGIC, CURV_MAGIC, NEW_QUAD_MAGIC):
        raise InputError(f"FreeSurfer surface has {len(raw) - need} bytes after its {v} vertices and {f} "
                         f"triangles ({len(raw)} bytes, the header needs {need}) that begin with another "
                         f"FreeSurfer file's magic number (0x{read_magic(raw[need:]):06X}): two files "
                         "joined, or a corrupted file", path=path)
    return v, f, offset


def read_fs_surface(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """Read a FreeSurfer triangle surface.

    Returns
    -------
    vertices : (V, 3) float64, mm (FreeSurfer tkr-RAS)
    faces : (F, 3) int64, not yet range-checked
    meta : volume geometry tags found at the end of the file, as strings; empty when there are none
        or when they do not parse (they describe the volume the surface was made from, not the mesh)
    """
    p = Path(path)
    raw = read_bounded(p, SURFACE_MAX_BYTES, "surface")
    if quad_header(raw) is not None:
        coords, faces = _read_quad_surface(raw)
        with np.errstate(invalid="ignore"):
            return coords, faces, {}
    n_v, n_f, offset = _surface_header(raw, p)
    try:
        with quiet_warnings():    # "No volume information" for spheres
            try:
                if raw[offset - 10: offset - 8] != b"\n\n" or raw.find(b"\n", 3) != offset - 10:
                    # nibabel reads two lines (readline twice): a "created by" line ending in one newline
                    # (or in more whitespace), which FreeSurfer reads, would be misread
                    raise ValueError("not nibabel's header layout")
                v, f, info = nfs.read_geometry(str(p), read_metadata=True)
            except (OSError, UnicodeDecodeError, ValueError):
                # text FreeSurfer reads leniently and nibabel does not: the volume-geometry footer after the
                # triangles (a volume path holding '=' or Latin-1 bytes, a line left out), a "created by" line
                # in Latin-1 or ending in one newline. The mesh, checked against the header above, depends on
                # neither: read it as is
                v = np.frombuffer(raw, ">f4", 3 * n_v, offset).reshape(n_v, 3)
                f = np.frombuffer(raw, ">i4", 3 * n_f, offset + 12 * n_v).reshape(n_f, 3)
                info = {}
    except Exception as exc:
        raise InputError(f"FreeSurfer surface is corrupted ({type(exc).__name__}: {exc})",
                         path=p) from None
    meta = {str(k): " ".join(map(str, np.ravel(val))) if not isinstance(val, str) else val
            for k, val in info.items()}
    with np.errstate(invalid="ignore"):  # signalling NaNs (damaged bytes): refused by validate, not warned
        return np.asarray(v, dtype=np.float64), np.asarray(f, dtype=np.int64), meta


def surface_footer(path: str | Path) -> bytes:
    """The bytes FreeSurfer wrote after a triangle surface's triangles, as they are: its tags (the
    volume geometry of the volume the surface was made from, the command lines that made it); empty
    when there are none or for a quadrangle surface. InputError (one line) for what is no surface."""
    p = Path(path)
    raw = read_bounded(p, SURFACE_MAX_BYTES, "surface")
    if quad_header(raw) is not None:
        return b""
    n_v, n_f, offset = _surface_header(raw, p)
    return raw[offset + 12 * n_v + 12 * n_f:]


def write_fs_surface(path: str | Path, vertices: np.ndarray, faces: np.ndarray, created_by: str,
                     footer: bytes = b"") -> Path:
    """Write a FreeSurfer triangle surface atomically, as FreeSurfer lays one out.

    Parameters
    ----------
    path : output file (``lh.sphere.geomorph.reg``)
    vertices : (V, 3) coordinates, mm; stored big-endian float32
    faces : (F, 3) vertex indices; stored big-endian int32
    created_by : the header's text line, after ``created by `` (no newline)
    footer : bytes after the triangles: another surface's tags (:func:`surface_footer`), so that the
        file carries the subject's volume geometry as recon-all's ``sphere.reg`` does
    """
    from geomorph_bids.io.atomic import atomic_write_bytes

    v = np.asarray(vertices)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"vertices must be (V, 3) and faces (F, 3), got {v.shape} and {f.shape}")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError(f"faces index vertices outside [0, {len(v)})")
    if "\n" in created_by:
        raise ValueError("created_by must be one line")
    head = TRIANGLE_MAGIC.to_bytes(3, "big") + f"created by {created_by}\n\n".encode("utf-8")
    body = (np.array([len(v), len(f)], ">i4").tobytes() + np.ascontiguousarray(v, ">f4").tobytes()
            + np.ascontiguousarray(f, ">i4").tobytes())
    return atomic_write_bytes(path, head + body + bytes(footer))


def read_fs_morph(path: str | Path, n_vertices: int | None = None) -> np.ndarray:
    """Read a FreeSurfer morphometry file (``lh.sulc``, ``lh.curv``, ``lh.thickness``) of at
    most :func:`~geomorph_bids.io.limits.map_max_bytes` (``n_vertices``) bytes.

    Returns (V,) float64 (mm for sulc/thickness, 1/mm for curv).
    """
    p = Path(path)
    raw = read_bounded(p, map_max_bytes(n_vertices), "per-vertex map")
    magic = read_magic(raw)
    if quad_header(raw) is not None:
        raise InputError("is a FreeSurfer quadrangle surface (mesh), not a per-vertex morphometry file", path=p)
    if magic == CURV_MAGIC:
        if len(raw) < 15:
            raise InputError("FreeSurfer morphometry header is truncated", path=p)
        v, _f, per_vertex = (int(x) for x in np.frombuffer(raw, ">i4", 3, 3))
        if (v <= 0 or per_vertex != 1 or len(raw) < 15 + 4 * v) and _swapped_morph(raw):
            raise InputError(_SWAPPED.format("write_morph_data"), path=p)
        if v <= 0 or per_vertex != 1:
            raise InputError(f"FreeSurfer morphometry header gives {v} vertices and {per_vertex} "
                             "values per vertex (expected V > 0 and 1); the file is corrupted", path=p)
        if len(raw) < 15 + 4 * v:
            raise InputError(f"FreeSurfer morphometry file is truncated: {len(raw)} bytes, the header "
                             f"({v} vertices) needs {15 + 4 * v}", path=p)
        if len(raw) > 15 + 4 * v:  # FreeSurfer writes nothing after the values: two files joined?
            raise InputError(f"FreeSurfer morphometry file has {len(raw) - 15 - 4 * v} bytes after its {v} values "
                             f"({len(raw)} bytes, the header needs {15 + 4 * v}): two files joined, or a "
                             "corrupted file", path=p)
    elif magic == TRIANGLE_MAGIC:
        raise InputError("is a FreeSurfer surface (mesh), not a per-vertex morphometry file", path=p)
    else:
        v = magic
        if len(raw) != 6 + 2 * v or v <= 0:
            hint = other_format(raw)
            raise InputError(f"is not a FreeSurfer morphometry file: magic number 0x{max(magic, 0):06X}, "
                             f"expected 0x{CURV_MAGIC:06X} (and not the old format either)" + (
                                 hint or "; the file is corrupted or of another format (GIFTI must end in "
                                 ".gii/.gii.gz, CIFTI in .dscalar.nii)"), path=p)
    try:
        values = nfs.read_morph_data(str(p))
    except Exception as exc:
        raise InputError(f"FreeSurfer morphometry file is corrupted ({type(exc).__name__}: {exc})",
                         path=p) from None
    with np.errstate(invalid="ignore"):  # signalling NaNs (damaged bytes): counted by validate, not warned
        return np.asarray(values, dtype=np.float64)


def read_fs_annot(path: str | Path) -> tuple[np.ndarray, dict[int, tuple[str, tuple[float, ...]]]]:
    """Read a FreeSurfer ``.annot`` parcellation.

    Returns
    -------
    labels : (V,) int64 index into the colour table, -1 where unlabelled
    table : index -> (name, (r, g, b, a) in 0..1); -1 -> ("unknown", transparent)
    """
    p = Path(path)
    raw = read_bounded(p, map_max_bytes(), "annotation")
    if len(raw) < 4:
        raise InputError("FreeSurfer annotation is truncated", path=p)
    v = int(np.frombuffer(raw, ">i4", 1)[0])
    if v <= 0 or len(raw) < 4 + 8 * v + 4:
        raise InputError(f"is not a readable FreeSurfer annotation: header gives {v} vertices "
                         f"for a file of {len(raw)} bytes", path=p)
    try:
        labels, ctab, names = nfs.read_annot(str(p))
    except Exception as exc:
        raise InputError(f"FreeSurfer annotation is corrupted ({type(exc).__name__}: {exc})",
                         path=p) from None
    table: dict[int, tuple[str, tuple[float, ...]]] = {-1: ("unknown", (0.0, 0.0, 0.0, 0.0))}
    for i, (row, nm) in enumerate(zip(np.asarray(ctab), names)):   # loop over colour table
        rgba = (row[0] / 255.0, row[1] / 255.0, row[2] / 255.0, 1.0 - row[3] / 255.0)
        table[i] = (nm.decode("utf-8", "replace") if isinstance(nm, bytes) else str(nm),
                    tuple(float(c) for c in rgba))
    return np.asarray(labels, dtype=np.int64), table


def read_fs_label(path: str | Path, n_vertices: int) -> np.ndarray:
    """Read a FreeSurfer ``.label`` file as a (V,) int64 mask (1 inside, 0 outside).

    Its second line is the number of vertices listed below it; a file that lists another number
    (cut short, rows lost or added) is refused, as a truncated surface is.
    """
    p = Path(path)
    raw = read_bounded(p, map_max_bytes(n_vertices), "label file")
    try:
        with quiet_warnings():  # numpy's "loadtxt: input contained no data" for a label of no rows
            idx = np.asarray(nfs.read_label(str(p)), dtype=np.int64).reshape(-1)
    except Exception as exc:
        raise InputError(f"FreeSurfer label file is corrupted ({type(exc).__name__}: {exc})",
                         path=p) from None
    lines = raw.split(b"\n", 2)
    declared = lines[1].strip() if len(lines) > 1 else b""
    if not declared.isdigit():
        raise InputError(f"FreeSurfer label file's second line should be its number of vertices, not "
                         f"{declared[:40].decode('ascii', 'replace')!r}; the file is corrupted", path=p)
    if int(declared) != idx.size:
        raise InputError(f"FreeSurfer label file's header says {int(declared)} vertices but it lists {idx.size}: "
                         "the file is truncated or corrupted", path=p)
    if idx.size and idx.min() < 0:
        raise InputError(f"label lists vertex {int(idx.min())}: vertex numbers start at 0; the file is corrupted",
                         path=p)
    if idx.size and idx.max() >= n_vertices:
        raise InputError(f"label lists vertex {int(idx.max())} but the surface has only "
                         f"{n_vertices} vertices", path=p)
    out = np.zeros(int(n_vertices), dtype=np.int64)
    out[idx] = 1
    return out

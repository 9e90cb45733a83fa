"""Bounds on a GIFTI file's data arrays, checked on its XML before nibabel decodes anything.

The XML is scanned with expat, the parser nibabel itself uses, so the attributes checked are
exactly the ones nibabel acts on: character references resolved (``Encoding="&#71;Zip..."``),
``>`` inside attribute values, CDATA sections, and every alias nibabel accepts for an encoding
or a data type (``B64GZ``, ``GIFTI_ENCODING_B64GZ``, ``float32``...). nibabel inflates a
compressed data array completely before it compares the result with the array's dimensions,
so a few-MB array that inflates to gigabytes would exhaust memory first: here every compressed
array is inflated no further than the size its dimensions declare.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from xml.parsers import expat

import numpy as np
from nibabel.gifti.gifti import gifti_encoding_codes
from nibabel.nifti1 import data_type_codes

from geomorph_bids.errors import InputError
from geomorph_bids.io.limits import decompress_bounded, human_bytes

__all__ = ["check_arrays"]

#: an entity declaration anywhere before the root element (also in a document expat cannot parse)
_ENTITY = re.compile(rb"<!ENTITY", re.I)
#: bytes per value assumed for a data type nibabel does not know (it then refuses the file)
_UNKNOWN_ITEM_BYTES = 8


def _encoding(attrs: dict[str, str]) -> str | None:
    """nibabel's label of a data array's encoding (``"B64GZ"`` for every spelling of
    GZipBase64Binary), None when nibabel does not know it."""
    try:
        return str(gifti_encoding_codes.label[attrs.get("Encoding", "")])
    except KeyError:
        return None


def _item_bytes(attrs: dict[str, str]) -> int:
    """Bytes per value of a data array's ``DataType`` (any spelling nibabel accepts)."""
    try:
        return int(np.dtype(data_type_codes.dtype[attrs.get("DataType", "")]).itemsize)
    except (KeyError, TypeError):
        return _UNKNOWN_ITEM_BYTES


def _inline_name(name: str) -> str:
    """A name for the inline copy of GIFTI file ``name``: ``_inline`` before its GIFTI suffix
    (``lh.sulc.shape.gii`` -> ``lh.sulc_inline.shape.gii``)."""
    for suffix in (".surf.gii", ".shape.gii", ".func.gii", ".label.gii", ".gii"):
        i = name.find(suffix)
        if i > 0:
            return f"{name[:i]}_inline{suffix}"
    return f"{name}_inline.gii"


class _Scan:
    """expat handlers for one file: running total of the declared sizes (bytes) and the text of
    the compressed array being read."""

    def __init__(self, limit: int, path: Path) -> None:
        self.limit, self.path = limit, path
        self.total = 0
        self.index = -1
        self.size = 0                      # bytes the current data array declares
        self.dims: list[int] = []
        self.compressed = False
        self.text: list[str] | None = None  # collected only inside a compressed array's <Data>

    def entity(self, name: str, *_: object) -> None:
        raise InputError(f"declares XML entities ({name!r}); GIFTI files have none (refused: entity "
                         "expansion can exhaust memory)", path=self.path)

    def start(self, name: str, attrs: dict[str, str]) -> None:
        if name == "DataArray":
            self._declare(attrs)
        elif name == "Data" and self.compressed:
            self.text = []

    def chars(self, data: str) -> None:
        if self.text is not None:
            self.text.append(data)

    def end(self, name: str) -> None:
        if name == "Data" and self.text is not None:
            self._inflate("".join(self.text))
            self.text = None
        elif name == "DataArray":
            self.compressed = False

    def _declare(self, attrs: dict[str, str]) -> None:
        self.index += 1
        k = self.index
        try:
            ndim = int(attrs.get("Dimensionality", "1"))
            dims = [int(attrs.get(f"Dim{i}", "0")) for i in range(max(ndim, 1))]
        except ValueError:
            raise InputError(f"GIFTI data array {k} has a non-integer dimension", path=self.path) from None
        if ndim < 1 or ndim > 8 or min(dims) < 0:
            raise InputError(f"GIFTI data array {k} declares dimensions {dims}", path=self.path)
        self.dims = dims
        self.size = int(np.prod(dims, dtype=object)) * _item_bytes(attrs)
        self.total += self.size
        if self.total > self.limit:
            raise InputError(f"GIFTI data arrays declare {human_bytes(self.total)}, more than a GIFTI file "
                             f"may hold here ({human_bytes(self.limit)})", path=self.path)
        if _encoding(attrs) == "External":  # nibabel's message called it "truncated or corrupted"
            raise InputError(f"GIFTI data array {k}: data in an external file ({attrs.get('ExternalFileName') or '?'}) "
                             "is not supported; save the GIFTI with its data inline (e.g. wb_command -gifti-convert "
                             f"BASE64_BINARY {self.path.name} {_inline_name(self.path.name)})", path=self.path)
        self.compressed = _encoding(attrs) == "B64GZ"

    def _inflate(self, text: str) -> None:
        k = self.index
        try:
            packed = base64.b64decode(text.encode("ascii", "ignore"), validate=False)
        except ValueError:
            raise InputError(f"GIFTI data array {k} holds invalid base64", path=self.path) from None
        inflated = decompress_bounded(packed, self.size, self.path, wbits=15,
                                      bound=f"the size data array {k} declares ({self.dims})",
                                      why="its dimensions were edited or the file is damaged; or a decompression "
                                          "bomb: re-create or re-copy the file")
        if len(inflated) != self.size:
            raise InputError(f"GIFTI data array {k} holds {len(inflated)} bytes, its dimensions "
                             f"{self.dims} need {self.size}; the file is truncated or corrupted", path=self.path)


def check_arrays(xml: bytes, limit: int, path: str | Path) -> None:
    """Refuse (InputError naming ``path``) a GIFTI document ``xml`` that declares XML entities,
    whose data arrays declare more than ``limit`` bytes together or keep their data in an external
    file (files are read whole, into memory; the message says how to inline it), or whose compressed data would
    inflate to more (or less) than its array declares; malformed XML is refused as truncated or
    corrupted. Reads nothing but ``xml``; memory: at most one array's declared size."""
    first = xml.find(b"<GIFTI")
    if _ENTITY.search(xml, 0, first if first >= 0 else len(xml)):
        raise InputError("declares XML entities; GIFTI files have none (refused: entity expansion can "
                         "exhaust memory)", path=path)
    scan = _Scan(limit, Path(path))
    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.EntityDeclHandler = scan.entity
    parser.StartElementHandler = scan.start
    parser.CharacterDataHandler = scan.chars
    parser.EndElementHandler = scan.end
    try:
        parser.Parse(xml, True)
    except InputError:  # the handlers' own one-line refusals (an InputError is a ValueError)
        raise
    except (expat.ExpatError, LookupError, ValueError) as exc:  # LookupError: an unknown XML encoding
        raise InputError(f"GIFTI file is truncated or corrupted ({type(exc).__name__}: {exc})", path=path) from None

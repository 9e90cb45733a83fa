"""What an input file says about its hemisphere: the metadata half of the hemisphere-identity
check (the other half fits the mirrored template: :func:`geomorph_bids.sphere.rigid.rigid_fit`).

Evidence read, cheapest first, never the data arrays:

* GIFTI ``AnatomicalStructurePrimary`` (``CortexLeft``/``CortexRight``) in the file's or the
  point set's metadata, found in the first MiB of the (decompressed) XML;
* the file name: FreeSurfer's ``lh.``/``rh.`` prefix, a BIDS ``hemi-L``/``hemi-R`` entity,
  HCP's ``.L.``/``.R.`` infix.

A file whose evidence contradicts the hemisphere it is registered as (e.g. a GIFTI labelled
``CortexRight`` found as ``hemi-L``, or ``rh.sulc`` passed with ``--hemi L``) gives one line in
:func:`label_conflicts`; the registration still runs and the hemisphere is flagged
(:mod:`geomorph_bids.quality`). The same holds for a map whose file name names another known
map than the one it is given as (``--feature sulc=lh.curv``), a GIFTI map whose data array is
named for another (a curv file copied over ``_sulc.shape.gii``: :func:`feature_conflicts`), or a label
file (a parcellation) given as a map: curvature registers plausibly as sulcal depth (CC 0.77 instead of
0.97), and a parcellation's region numbers could pass too (CC 0.51), so no other gate would notice.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path

from geomorph_bids.errors import InputError
from geomorph_bids.io.limits import regular_file

__all__ = ["declared_array_map", "declared_hemispheres", "declared_label_file", "declared_map", "feature_conflicts",
           "label_conflicts"]

_STRUCTURE = re.compile(rb"AnatomicalStructurePrimary\s*(?:\]\]>)?\s*</Name>\s*<Value>\s*(?:<!\[CDATA\[)?\s*(\w+)", re.S)
_STRUCTURES = {b"CortexLeft": "L", b"CortexRight": "R"}
_FS_PREFIX = re.compile(r"^(lh|rh)\.")
_BIDS_HEMI = re.compile(r"(?:^|_)hemi-(L|R)(?:_|\.)")
_HCP_HEMI = re.compile(r"\.(L|R)\.[A-Za-z_]")
_HEAD_BYTES = 1 << 20


def _gifti_head(path: Path) -> bytes:
    """The first MiB of a GIFTI file's (decompressed) XML; b"" when it cannot be read."""
    try:
        regular_file(path)
        with open(path, "rb") as fh:
            head = fh.read(_HEAD_BYTES)
        if head[:2] == b"\x1f\x8b":
            head = zlib.decompressobj(31).decompress(head, _HEAD_BYTES)
    except (InputError, OSError, zlib.error):
        return b""
    return head


def _gifti_structures(path: Path) -> set[str]:
    """Hemispheres named by AnatomicalStructurePrimary in the first MiB of a GIFTI file."""
    return {_STRUCTURES[m] for m in _STRUCTURE.findall(_gifti_head(path)) if m in _STRUCTURES}


def declared_hemispheres(path: str | Path) -> list[tuple[str, str]]:
    """``[(hemi, evidence), ...]``: what ``path`` says about its hemisphere (``"L"``/``"R"``),
    e.g. ``[("R", "GIFTI AnatomicalStructurePrimary CortexRight"), ("L", "its name (hemi-L)")]``.
    Empty when it says nothing (a FreeSurfer file named ``sphere``, an MGH file...)."""
    p = Path(path)
    out: list[tuple[str, str]] = []
    name = p.name
    if name.lower().endswith((".gii", ".gii.gz")):
        for hemi in sorted(_gifti_structures(p)):
            out.append((hemi, f"GIFTI AnatomicalStructurePrimary Cortex{'Left' if hemi == 'L' else 'Right'}"))
    for pattern, show in ((_FS_PREFIX, "{}."), (_BIDS_HEMI, "hemi-{}"), (_HCP_HEMI, ".{}.")):
        m = pattern.search(name)
        if m:
            code = {"lh": "L", "rh": "R"}.get(m.group(1), m.group(1))
            out.append((code, f"its name ({show.format(m.group(1))})"))
            break
    return out


def label_conflicts(paths: Iterable[str | Path | None], hemi: str, wound_inward: str | Path | None = None) -> list[str]:
    """One line per file of ``paths`` that declares the other hemisphere than ``hemi``, e.g.
    ``"lh.sulc: its name (lh.) says hemi-L, registered as hemi-R"``. ``wound_inward``: the sphere
    file, when its triangles are all wound inward (:attr:`~geomorph_bids.io.surfaces.Sphere.wound_inward`):
    its line then says so, as a hemisphere mirrored x -> -x on purpose keeps its old declaration."""
    out = []
    for path in paths:
        if path is None:
            continue
        for declared, evidence in declared_hemispheres(path):
            if declared != hemi:
                line = f"{Path(path).name}: {evidence} says hemi-{declared}, registered as hemi-{hemi}"
                if wound_inward is not None and str(path) == str(wound_inward):
                    line += (f" (its triangles are wound inward, as those of a hemisphere mirrored x -> -x are: "
                             f"if it was mirrored on purpose, declare it and its maps hemi-{hemi}, in the GIFTI "
                             f"AnatomicalStructurePrimary and the file names, and this flag goes)")
                out.append(line)
    return out


#: words of a file name that name a known map (FreeSurfer ``lh.curv``, BIDS ``_curv.shape.gii``,
#: HCP ``.MyelinMap_BC.``, sMRIPrep's ``refsulc``) -> the feature name they mean
_MAP_WORDS = {"sulc": "sulc", "refsulc": "sulc", "curv": "curv", "curvature": "curv", "thickness": "thickness",
              "myelin": "myelin", "myelinw": "myelin", "myelinmap": "myelin"}
#: words of a file name that name a map of another producer which only sounds like a known feature ->
#: (the feature it is mistaken for, what it is instead)
_LOOKALIKES = {"sqrtsulc": ("sulc", "CAT12's square root of sulcal depth, never negative")}
_WORD = re.compile(r"[A-Za-z]+")
#: a GIFTI data array's ``Name`` metadata (Workbench's map name, e.g. ``100307_L_Curvature``; ours ``curv``)
_ARRAY_NAME = re.compile(rb"<Name>\s*(?:<!\[CDATA\[)?\s*Name\s*(?:\]\]>)?\s*</Name>\s*<Value>\s*(?:<!\[CDATA\[)?"
                         rb"([^<\]]*)", re.S)


def declared_map(path: str | Path) -> str | None:
    """The known map (``sulc``, ``curv``, ``thickness``, ``myelin``) that ``path``'s name names,
    or None when it names none or several (``lh.sulc`` -> ``sulc``; ``sub-01_hemi-L_curv.shape.gii``
    -> ``curv``; ``100307.L.MyelinMap_BC.164k_fs_LR.func.gii`` -> ``myelin``)."""
    return _one_map(Path(path).name)


def _one_map(text: str) -> str | None:
    """The one known map the words of ``text`` name, or None (none, or several)."""
    found = {_MAP_WORDS[w] for w in _WORD.findall(text.lower()) if w in _MAP_WORDS}
    return found.pop() if len(found) == 1 else None


def declared_array_map(path: str | Path) -> str | None:
    """The known map that a GIFTI file's data arrays are named for (their ``Name`` metadata, e.g.
    ``curv``, or Workbench's ``100307_L_Curvature``), or None: not GIFTI, no such metadata, or
    names that name none or several maps. A file copied under another map's name keeps it."""
    if not Path(path).name.lower().endswith((".gii", ".gii.gz")):
        return None
    names = [m.decode("utf-8", "replace") for m in _ARRAY_NAME.findall(_gifti_head(Path(path)))]
    return _one_map(" ".join(names)) if names else None


#: a GIFTI data array of label keys (a parcellation: region numbers with a label table)
_LABEL_INTENT = re.compile(rb"Intent\s*=\s*[\"']NIFTI_INTENT_LABEL[\"']")


def declared_label_file(path: str | Path) -> str | None:
    """What a label file given as a map is (a parcellation: region numbers, whose order means
    nothing), from its name (``.dlabel.nii``, ``.label.gii``) or a GIFTI data array's
    ``NIFTI_INTENT_LABEL``; None for other files."""
    name = Path(path).name.lower()
    if name.endswith(".dlabel.nii"):
        return "a CIFTI label file (.dlabel.nii)"
    if not name.endswith((".gii", ".gii.gz")):
        return None
    if _LABEL_INTENT.search(_gifti_head(Path(path))):
        return "a GIFTI label file (NIFTI_INTENT_LABEL)"
    return "a GIFTI label file (.label.gii)" if name.endswith((".label.gii", ".label.gii.gz")) else None


def feature_conflicts(features: Mapping[str, object]) -> list[str]:
    """One line per map file given as a known feature whose name names another known map, e.g.
    ``"lh.curv: its name says curv, registered as sulc"``. Arrays and unknown feature names
    (a user's own map) are not judged."""
    out = []
    for name, path in features.items():
        if not isinstance(path, (str, Path)) or str(name) not in _MAP_WORDS.values():
            continue
        label_file = declared_label_file(path)
        if label_file is not None:  # its region numbers register as a map: plausibly enough to pass (CC 0.51)
            out.append(f"{Path(path).name}: is {label_file}, a parcellation's region numbers, not a map of values, "
                       f"registered as {name}: give the {name} map")
            continue
        lookalike = next((w for w in _WORD.findall(Path(path).name.lower()) if _LOOKALIKES.get(w, ("",))[0] == name),
                         None)
        if lookalike is not None:   # CAT12's lh.sqrtsulc.NAME given as sulc: no name check above catches it
            out.append(f"{Path(path).name}: its name says {lookalike}, {_LOOKALIKES[lookalike][1]}, registered as "
                       f"{name}, FreeSurfer's signed map (positive in sulci, negative on gyral crowns): give "
                       "FreeSurfer's or FastSurfer's ?h.sulc")
            continue
        declared = declared_map(path)
        if declared is not None and declared != name:
            out.append(f"{Path(path).name}: its name says {declared}, registered as {name}")
            continue
        inside = declared_array_map(path)
        if inside is not None and inside != name:  # e.g. a curv GIFTI copied over the sulc's name
            out.append(f"{Path(path).name}: its GIFTI data array is named for {inside} (Name metadata), "
                       f"registered as {name}: a {inside} file copied under this name?")
    return out

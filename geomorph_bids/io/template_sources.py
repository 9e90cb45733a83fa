"""Where a standard template's maps come from: a folder you name, TemplateFlow, your FreeSurfer
``fsaverage``, or the maps bundled with geomorph-bids.

The bundled fsaverage maps are nilearn's fsaverage5 sulc/curv (10,242 vertices) upsampled to
the ico-6 grid: at the vertices they share they correlate only r = 0.961 with FreeSurfer's own
163,842-vertex fsaverage sulc, and registering to the full one is more accurate
(docs/templates.md). Every FreeSurfer user has the full one, and TemplateFlow has it when its
files were downloaded, so the maps of ``fsaverage`` (and of ``fsLR``, where full-resolution
maps exist) are looked up, per hemisphere, in this order (:func:`discover_sources`):

1. ``folder``: an explicit folder (``--template-dir``, ``template_dir=``): a FreeSurfer
   subject folder (``<dir>/surf/lh.sphere``, or the ``surf`` folder itself), a TemplateFlow
   template folder (``tpl-fsaverage/``) or a TemplateFlow home holding one;
2. ``templateflow``: ``$TEMPLATEFLOW_HOME/tpl-<template>/`` (real, non-empty files only; the
   zero-byte placeholders TemplateFlow's package installs are skipped with a note; nothing is
   ever downloaded), the highest density with a sphere and sulc;
3. ``freesurfer`` (fsaverage only): ``<dir>/fsaverage/surf/{lh,rh}.{sphere,sulc,curv}`` for
   ``--fs-subjects-dir``, ``$SUBJECTS_DIR`` and ``$FREESURFER_HOME/subjects``, in that order;
4. ``bundled``: the maps in ``geomorph_bids/data/templates``.

Among 2 and 3, sources with more vertices come first (an fsaverage5 linked as ``fsaverage``, or
TemplateFlow's den-10k files, never hides a full fsaverage further on); one with fewer than
:data:`FULL_VERTICES`, when used, is said (:func:`low_resolution_note`).

A source needs a sphere and sulc; it offers curv (and other maps) when present. The first
source that has every map a run needs is used; one that lacks a needed map is passed over with
one warning line naming what is missing (:func:`fallback_warnings`). Where to look is decided
once, at an entry point, into a :class:`TemplateSearch` (the only place the environment is
read); layers below receive the resolved sources.

A source's maps are sampled onto the template's ico-6 grid (:data:`SAMPLING`, see
:func:`sample_on_grid`), checked against the bundled map (a sulc of the other sign, another
hemisphere or another template is refused on one line), and recorded with their provenance
(:meth:`TemplateSource.provenance`: kind, folder, vertex count, SHA-256 of the files read).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from .digest import file_stamp
from .limits import annex_key

if TYPE_CHECKING:
    from .templates import Template

__all__ = ["TemplateSearch", "TemplateSource", "TemplateWarning", "LowResolutionWarning", "SOURCE_KINDS", "SAMPLING",
           "BUNDLED_ORIGIN", "discover_sources", "explicit_base", "explicit_bases", "files_sha256", "sha256_now",
           "load_source", "sample_on_grid", "fallback_warnings",
           "is_low_resolution", "LOW_RESOLUTION_NOTE", "low_resolution_used", "describe_provenance",
           "source_record", "FULL_VERTICES", "low_resolution_note", "current_provenance", "BUNDLED_ASKED_NOTE",
           "BUNDLED_ASKED_REPORT_NOTE"]

#: source kinds, in the order they are looked up
SOURCE_KINDS = ("folder", "templateflow", "freesurfer", "bundled")

#: how a full-resolution map is brought onto the ico-6 grid: ``"barycentric"`` samples it at the
#: grid's vertices (for FreeSurfer's fsaverage, whose sphere is ico-7, exactly its values there);
#: ``"adap_bary_area"`` averages it over each grid vertex's area. Chosen by measurement
#: (docs/templates.md, benchmarks/template_sources.py).
SAMPLING = "barycentric"

#: what the bundled maps were built from: template -> (vertex count of the origin, description)
BUNDLED_ORIGIN: dict[str, tuple[int, str]] = {
    "fsaverage": (10242, "nilearn's fsaverage5 sulc/curv (10,242 vertices), upsampled to ico-6"),
    "fsLR": (163842, "sMRIPrep's fsLR refsulc (163,842 vertices), area-averaged onto ico-6"),
}

#: vertex count of a standard template's full-resolution maps (FreeSurfer's fsaverage; fsLR's 164k mesh):
#: a source with fewer (an fsaverage5 or fsaverage6 in fsaverage's place, TemplateFlow's den-10k,
#: den-41k or fsLR den-32k files) is tried after any with more, and its use is said
FULL_VERTICES = 163842
#: TemplateFlow densities tried, highest first
_TF_DENSITIES = {"fsaverage": ("164k", "41k", "10k"), "fsLR": ("164k", "59k", "32k")}
#: FreeSurfer file prefixes
_FS_HEMI = {"L": "lh", "R": "rh"}
#: maps a FreeSurfer or TemplateFlow folder may offer (sulc is required)
_MAPS = ("sulc", "curv")
#: a source map must correlate at least this much with the bundled one on the ico-6 grid
_MIN_AGREEMENT = 0.5


#: what the command line and the reports say when the bundled low-resolution fsaverage was used
LOW_RESOLUTION_NOTE = (
    "registered to the bundled low-resolution fsaverage (built from fsaverage5's 10,242 vertices, without the "
    "fine folds of FreeSurfer's 163,842-vertex fsaverage, to which registrations are more accurate: "
    "the source repository's docs/templates.md). To use the full one: --template-dir "
    "$FREESURFER_HOME/subjects/fsaverage (any FreeSurfer "
    "fsaverage folder), or --fs-subjects-dir / SUBJECTS_DIR pointing at a folder that holds fsaverage, or "
    "TEMPLATEFLOW_HOME with TemplateFlow's tpl-fsaverage den-164k sphere and sulc files")

#: what the command line says instead when those maps were asked for (``--template-dir bundled``)
BUNDLED_ASKED_NOTE = ("registered to the bundled low-resolution fsaverage (built from fsaverage5's 10,242 vertices: "
                      "the source repository's docs/templates.md), as --template-dir bundled asks")

#: what the reports, read later and by others, say of those maps asked for: chosen on purpose, and where the full
#: fsaverage would come from
BUNDLED_ASKED_REPORT_NOTE = (f"{BUNDLED_ASKED_NOTE}. Registrations to FreeSurfer's 163,842-vertex fsaverage are more "
                             "accurate: a run without --template-dir bundled uses it where it finds it "
                             "(--template-dir $FREESURFER_HOME/subjects/fsaverage, SUBJECTS_DIR or TEMPLATEFLOW_HOME)")


def _recorded_count(value: Any) -> int | None:
    """A vertex count as a metrics file records it, or None where it holds no finite number (a
    hand edit's ``"many"``, ``Infinity``): never a ValueError that ends a group level."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(float(value)):
        return None
    return int(value)


def low_resolution_used(provenance: Mapping[str, Any]) -> bool:
    """Whether a registration's provenance (metrics ``template_*``) is the bundled fsaverage
    built from fsaverage5 (``template_built_from_vertices``; outputs of versions before it
    recorded the origin's count as ``template_vertices``), or maps found on this machine with
    fewer than :data:`FULL_VERTICES` vertices (an fsaverage5 linked as ``fsaverage``)."""
    kind = provenance.get("template_source")
    if kind == "bundled":
        origin = provenance.get("template_built_from_vertices", provenance.get("template_vertices"))
        return (_recorded_count(origin) or 0) < FULL_VERTICES
    return kind in _FOUND_THROUGH and 0 < (_recorded_count(provenance.get("template_vertices")) or 0) < FULL_VERTICES


def current_provenance(registration: Mapping[str, Any]) -> dict[str, Any]:
    """A registration record (a metrics JSON's ``registration``) with its ``template_*``
    provenance as this version records it. Outputs written before the bundled maps recorded their
    origin apart (``template_built_from_vertices``, 2026-12-06) gave those maps, 40,962-vertex ico-6
    files, the vertex count of the maps they were built from as ``template_vertices`` (fsLR
    163,842, fsaverage 10,242): that count moves to ``template_built_from_vertices`` and
    ``template_vertices`` becomes the grid's, so that a folder holding both versions' outputs
    gives one count for one file (the same ``template_sha256``). Other records come back as
    they are (a copy)."""
    record = dict(registration)
    old = _recorded_count(record.get("template_vertices"))
    if record.get("template_source") == "bundled" and "template_built_from_vertices" not in record and old:
        from .templates import TEMPLATE_LEVEL
        from ..sphere.icosphere import n_vertices

        record["template_built_from_vertices"], record["template_vertices"] = old, n_vertices(TEMPLATE_LEVEL)
    return record


def low_resolution_note(provenance: Mapping[str, Any], template: str = "fsaverage", asked: bool = False) -> str:
    """What the command line and the reports say after ``registered`` when
    :func:`low_resolution_used` holds: :data:`LOW_RESOLUTION_NOTE` for the bundled fsaverage;
    for maps found on this machine (``template``: ``fsaverage`` or ``fsLR``), their vertex count
    and folder, e.g. ``registered to fsaverage maps of 10,242 vertices (FreeSurfer
    /x/fsaverage), not the full template's 163,842: ...``. ``asked``: the bundled maps were asked for
    (``--template-dir bundled``, recorded in the metrics' ``template_ref``): :data:`BUNDLED_ASKED_REPORT_NOTE`."""
    if provenance.get("template_source") == "bundled":
        return BUNDLED_ASKED_REPORT_NOTE if asked else LOW_RESOLUTION_NOTE
    n = _recorded_count(provenance.get("template_vertices")) or 0
    what = _KIND_WORDS.get(str(provenance.get("template_source")), str(provenance.get("template_source")))
    guess = ("an fsaverage5 (10,242) or fsaverage6 (40,962) in fsaverage's place, or TemplateFlow's den-10k/den-41k "
             "files?" if template == "fsaverage" else "TemplateFlow's den-32k/den-59k files?")
    full = ("--template-dir, SUBJECTS_DIR or TEMPLATEFLOW_HOME pointing at a FreeSurfer fsaverage folder "
            "($FREESURFER_HOME/subjects/fsaverage) or TemplateFlow's den-164k files" if template == "fsaverage" else
            "--template-dir or TEMPLATEFLOW_HOME pointing at TemplateFlow's den-164k files, or --template-dir "
            "bundled (built from fsLR's 163,842-vertex refsulc)")
    return (f"registered to {template} maps of {n:,} vertices ({what} {provenance.get('template_source_path', '')}), "
            f"not the full template's {FULL_VERTICES:,} ({guess}): registrations to the full one are more accurate "
            f"(the source repository's docs/templates.md). To use it: {full}")


def describe_provenance(provenance: Mapping[str, Any]) -> str:
    """One line from a registration's ``template_*`` metrics, e.g. ``freesurfer
    /opt/subjects/fsaverage, 163,842 vertices, sha256 4a117c4ef763`` (the bundled maps: ``40,962
    vertices (built from 163,842)``; maps an installed package provides are named after them:
    ``; myelin from brainspace's conte69_32k_t1wt2w.csv``); ``n/a`` when absent."""
    if not provenance.get("template_source"):
        return "n/a"
    n = _recorded_count(provenance.get("template_vertices"))
    origin = _recorded_count(provenance.get("template_built_from_vertices"))
    maps = provenance.get("template_maps")
    packaged = "".join(f"; {f} from {str(ref).split(':', 1)[0]}'s {str(ref).rsplit('/', 1)[-1]}"
                       for f, ref in sorted(maps.items())) if isinstance(maps, Mapping) else ""
    return (f"{provenance['template_source']} {provenance.get('template_source_path', '')}"
            + (f", {n:,} vertices" if n else "") + (f" (built from {origin:,})" if origin else "") + packaged
            + f", sha256 {str(provenance.get('template_sha256', ''))[:12]}")


def source_record(provenance: Mapping[str, Any]) -> dict[str, Any]:
    """A registration's ``template_*`` provenance as the JSON files record it (a sidecar's
    ``TemplateSource``, a population template's ``BaseTemplateSource``): ``Kind``, ``Path``,
    ``Vertices`` (of the maps read), the bundled maps' ``BuiltFromVertices`` (the bundled sulc's
    origin), ``Maps`` (feature -> ``package:path`` for maps an installed package provides: fsLR's
    curv and myelin, brainspace's conte69 maps) and ``SHA256`` (of every map file read)."""
    p = provenance
    origin = p.get("template_built_from_vertices")
    maps = p.get("template_maps")
    return {"Kind": p.get("template_source"), "Path": p.get("template_source_path"),
            "Vertices": p.get("template_vertices"), **({"BuiltFromVertices": origin} if origin else {}),
            **({"Maps": dict(maps)} if isinstance(maps, Mapping) and maps else {}),
            "SHA256": p.get("template_sha256")}


#: a source kind in messages
_KIND_WORDS = {"folder": "folder", "templateflow": "TemplateFlow", "freesurfer": "FreeSurfer", "bundled": "bundled"}


class TemplateWarning(UserWarning):
    """A template source was passed over (a map the run needs is missing, or a placeholder)."""


class LowResolutionWarning(TemplateWarning):
    """The maps used are low-resolution ones (:func:`low_resolution_note`): the bundled
    fsaverage5-derived fsaverage, or maps found here with fewer than :data:`FULL_VERTICES` vertices."""


@dataclass(frozen=True)
class TemplateSearch:
    """Where an entry point looks for a template's maps, decided once (see the module docstring).

    Attributes
    ----------
    template_dir : an explicit folder (FreeSurfer subject or ``surf`` folder, TemplateFlow
        template folder or home), looked in first; None: none.
    templateflow_home : TemplateFlow's folder (``$TEMPLATEFLOW_HOME``), or None.
    subjects_dirs : FreeSurfer subjects folders, in order (``--fs-subjects-dir``,
        ``$SUBJECTS_DIR``, ``$FREESURFER_HOME/subjects``).
    bundled_only : only the bundled maps (``--template-dir bundled``): runs that must not
        depend on what a machine has installed.
    """

    template_dir: Path | None = None
    templateflow_home: Path | None = None
    subjects_dirs: tuple[Path, ...] = ()
    bundled_only: bool = False

    def __post_init__(self) -> None:  # paths given as strings become Paths
        object.__setattr__(self, "subjects_dirs", tuple(Path(d) for d in self.subjects_dirs))
        for name in ("template_dir", "templateflow_home"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))

    @classmethod
    def from_environment(cls, template_dir: str | Path | None = None,
                         fs_subjects_dir: str | Path | Sequence[str | Path] | None = None,
                         environ: Mapping[str, str] | None = None) -> "TemplateSearch":
        """The search of an entry point: ``template_dir`` (``"bundled"``: the bundled maps only),
        ``fs_subjects_dir`` (a folder or several) first among the FreeSurfer folders, then
        ``$TEMPLATEFLOW_HOME``, ``$SUBJECTS_DIR`` and ``$FREESURFER_HOME/subjects`` from
        ``environ`` (default ``os.environ``)."""
        env = os.environ if environ is None else environ
        if template_dir is not None and str(template_dir) == "bundled":
            return cls(bundled_only=True)
        given = [fs_subjects_dir] if isinstance(fs_subjects_dir, (str, Path)) else list(fs_subjects_dir or ())
        dirs: list[Path] = []
        for d in (*given, env.get("SUBJECTS_DIR"),
                  Path(env["FREESURFER_HOME"]) / "subjects" if env.get("FREESURFER_HOME") else None):
            if d and Path(d).absolute() not in dirs:
                dirs.append(Path(d).absolute())
        return cls(template_dir=Path(template_dir).absolute() if template_dir else None,
                   templateflow_home=Path(env["TEMPLATEFLOW_HOME"]).absolute() if env.get("TEMPLATEFLOW_HOME") else None,
                   subjects_dirs=tuple(dirs))


@dataclass(frozen=True)
class TemplateSource:
    """One hemisphere's maps of a standard template, from one place.

    Attributes
    ----------
    kind : ``folder``, ``templateflow``, ``freesurfer`` or ``bundled`` (:data:`SOURCE_KINDS`).
    base : ``fsLR`` or ``fsaverage``.
    hemi : ``L`` or ``R``.
    folder : where the files are (absolute; the bundled data folder for ``bundled``).
    sphere : the source's sphere file (None for ``bundled``: the maps are on the ico-6 grid).
    maps : feature -> file (``bundled``: the feature names it offers, files resolved on load).
    """

    kind: str
    base: str
    hemi: str
    folder: Path
    sphere: Path | None = None
    maps: Mapping[str, Path | None] = field(default_factory=dict)

    @property
    def features(self) -> tuple[str, ...]:
        """The maps this source offers."""
        return tuple(self.maps)

    @property
    def is_bundled(self) -> bool:
        return self.kind == "bundled"

    def describe(self) -> str:
        """One line for messages, e.g. ``FreeSurfer fsaverage /opt/subjects/fsaverage``."""
        what = _KIND_WORDS[self.kind]
        return f"the bundled {self.base}" if self.is_bundled else f"{what} {self.base} {self.folder}"

    def vertex_count(self) -> int:
        """Vertices of the maps read (the sphere's; the bundled ones: the ico-6 grid's, 40,962)."""
        return _vertex_count(self)

    def files(self, features: Sequence[str]) -> list[Path]:
        """The files read for ``features``: the sphere, then each map (bundled: its ico-6 maps)."""
        if self.is_bundled:
            from ..resources import package_template_features, template_feature_file

            out = []
            for f in features:
                path = template_feature_file(self.base, self.hemi, f)
                out.append(path if path.is_file() else package_template_features(self.base)[f][0])
            return out
        return [self.sphere, *(self.maps[f] for f in features)]  # type: ignore[list-item]

    def provenance(self, features: Sequence[str]) -> dict[str, Any]:
        """What the outputs record: ``template_source`` (kind), ``template_source_path``
        (folder), ``template_vertices`` (vertex count of the maps read, the files of
        ``template_files``: 40,962 for the bundled ico-6 maps), ``template_sha256`` (of the files
        read, in :meth:`files` order), ``template_files``; ``template_maps`` (feature -> ``package:path``)
        for the bundled source's maps an installed package provides (fsLR's curv and myelin:
        brainspace's), absent when there is none; the bundled maps also
        ``template_built_from_vertices``, the vertex count of the maps they were built from
        (:data:`BUNDLED_ORIGIN`: fsLR 163,842, fsaverage 10,242, fsaverage5's)."""
        files = self.files(features)
        origin = {"template_built_from_vertices": BUNDLED_ORIGIN[self.base][0]} if (
            self.is_bundled and self.base in BUNDLED_ORIGIN) else {}
        return {"template_source": self.kind, "template_source_path": str(self.folder),
                "template_vertices": _vertex_count(self), **origin, **self._package_maps(features, files),
                "template_sha256": files_sha256(tuple(map(str, files))), "template_files": [str(p) for p in files]}

    def _package_maps(self, features: Sequence[str], files: Sequence[Path]) -> dict[str, Any]:
        """``{"template_maps": {feature: "package:path"}}`` for the bundled source's maps that an
        installed package provides (fsLR's curv and myelin: brainspace's conte69 maps on fsLR
        32k), read from that package and not from the bundled folder; ``{}`` when there is none."""
        if not self.is_bundled:
            return {}
        from ..resources import data_dir, template_feature_reference

        ours = data_dir().resolve()
        maps = {f: template_feature_reference(self.base, f) for f, path in zip(features, files)
                if ours not in Path(path).resolve().parents}
        maps = {f: ref for f, ref in maps.items() if ref}
        return {"template_maps": maps} if maps else {}

    def to_dict(self) -> dict[str, Any]:
        """Plain strings (a Nipype input); :meth:`from_dict` is the inverse."""
        return {"kind": self.kind, "base": self.base, "hemi": self.hemi, "folder": str(self.folder),
                "sphere": "" if self.sphere is None else str(self.sphere),
                "maps": {k: "" if v is None else str(v) for k, v in self.maps.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TemplateSource":
        return cls(str(d["kind"]), str(d["base"]), str(d["hemi"]), Path(d["folder"]),
                   Path(d["sphere"]) if d.get("sphere") else None,
                   {str(k): (Path(v) if v else None) for k, v in dict(d.get("maps") or {}).items()})


def is_low_resolution(source: TemplateSource) -> bool:
    """Whether ``source`` is the bundled fsaverage built from fsaverage5, or maps on this
    machine with fewer than :data:`FULL_VERTICES` vertices (the ones the reports warn about)."""
    if source.is_bundled:
        return BUNDLED_ORIGIN.get(source.base, (FULL_VERTICES, ""))[0] < FULL_VERTICES
    return 0 < _header_vertices(source) < FULL_VERTICES


# ---------------------------------------------------------------------------------------------
# discovery


def _real(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0 and annex_key(path) is None


def _placeholder(path: Path) -> bool:
    """A map TemplateFlow has and this machine lacks: a zero-byte placeholder (TemplateFlow's
    package), or, in a TemplateFlow cloned with DataLad, a link to annexed content that was not
    fetched or a git-annex pointer file."""
    if path.is_symlink() and not path.exists():
        return True
    return path.is_file() and (path.stat().st_size == 0 or annex_key(path) is not None)


def _header_vertices(source: TemplateSource) -> int:
    """Vertex count of a non-bundled source's sphere from its file's header only
    (:func:`~geomorph_bids.io.discover.surface_vertex_count`; 0 when the header cannot be read:
    the file is read, and refused on one line, when it is loaded)."""
    from .discover import surface_vertex_count

    return int((surface_vertex_count(source.sphere) if source.sphere is not None else None) or 0)


def _freesurfer_source(kind: str, surf: Path, hemi: str, notes: list[str]) -> TemplateSource | None:
    """``surf/{lh,rh}.{sphere,sulc,curv}`` as a source (None, with a note, without sphere + sulc)."""
    prefix = _FS_HEMI[hemi]
    sphere = surf / f"{prefix}.sphere"
    maps = {m: surf / f"{prefix}.{m}" for m in _MAPS if _real(surf / f"{prefix}.{m}")}
    missing = [p.name for p in (sphere, surf / f"{prefix}.sulc") if not _real(p)]
    if missing:
        if surf.is_dir():
            zipped = [f"{m}.gz" for m in missing if (surf / f"{m}.gz").is_file()]  # gzip -r on a copy of FreeSurfer's
            empty = [m for m in missing if _placeholder(surf / m)]  # a copy that ran out of space, an annex link
            notes.append(f"{'FreeSurfer' if kind == 'freesurfer' else kind} fsaverage {surf.parent}: "
                         f"no {' or '.join(missing)} for hemi-{hemi}"
                         + (f" ({', '.join(empty)}: 0 bytes, or a link to annexed content not fetched)"
                            if empty else "")
                         + (f" ({', '.join(zipped)} {'is' if len(zipped) == 1 else 'are'} gzipped; FreeSurfer files "
                            f"are read uncompressed: gunzip {' '.join(zipped)})" if zipped else ""))
        return None
    return TemplateSource(kind, "fsaverage", hemi, surf.parent.absolute(), sphere.absolute(),
                          {k: v.absolute() for k, v in maps.items()})


def _templateflow_source(kind: str, folder: Path, base: str, hemi: str, notes: list[str],
                         info: list[str]) -> TemplateSource | None:
    """The highest density of ``folder`` (a ``tpl-<base>`` folder) with a real sphere and sulc;
    zero-byte sulc placeholders (TemplateFlow has the map, not downloaded) give an ``info`` line."""
    empty = False
    odd: list[str] = []  # a sphere or sulc that is there but no file (a folder): passed over, said
    for den in _TF_DENSITIES[base]:
        stem = f"tpl-{base}_hemi-{hemi}_den-{den}"
        sphere = folder / f"{stem}_sphere.surf.gii"
        sulc = folder / f"{stem}_sulc.shape.gii"
        empty = empty or _placeholder(sulc)
        odd += [p.name for p in (sphere, sulc) if p.exists() and not p.is_file()]
        if _real(sphere) and _real(sulc):
            maps = {m: (folder / f"{stem}_{m}.shape.gii").absolute() for m in _MAPS
                    if _real(folder / f"{stem}_{m}.shape.gii")}
            return TemplateSource(kind, base, hemi, folder.absolute(), sphere.absolute(), maps)
    what = "TemplateFlow" if kind == "templateflow" else kind
    if odd:
        are = "is a folder, not a file" if len(odd) == 1 else "are folders, not files"
        info.append(f"{what} {folder}: {', '.join(odd)} {are}; not used")
    if empty:
        info.append(f"{what} {folder}: its {base} sulc files are "
                    "empty placeholders or git-annex files not fetched (not downloaded; geomorph-bids never "
                    "downloads: `datalad get` them, or templateflow.api.get where there is network)")
    elif folder.is_dir() and kind != "templateflow":
        notes.append(f"{kind} {folder}: no hemi-{hemi} sphere and sulc")
    elif folder.is_dir() and any(_real(p) for p in folder.glob(f"tpl-{base}_hemi-*_sulc.shape.gii")):
        # a TemplateFlow with some of the template's maps (one hemisphere fetched, a sphere not):
        # said like a FreeSurfer fsaverage without rh.sphere; one with none (TemplateFlow's tpl-fsLR
        # has no sulc) is not
        notes.append(f"TemplateFlow {base} {folder}: no hemi-{hemi} sphere and sulc of one density "
                     f"(tpl-{base}_hemi-{hemi}_den-{'/'.join(_TF_DENSITIES[base])}_sphere.surf.gii and "
                     "_sulc.shape.gii)")
    return None


#: FreeSurfer's left-right symmetric template (for xhemi): a sphere and sulc laid out as
#: fsaverage's, in another space
_SYMMETRIC = "fsaverage_sym"


def _symmetric(folder: Path) -> bool:
    """Whether ``folder`` (a FreeSurfer subject folder or its ``surf``; through links) is
    ``fsaverage_sym``."""
    try:
        real = folder.resolve()
    except OSError:
        real = folder
    return _SYMMETRIC in {p.name for p in (folder, real, folder.parent, real.parent) if p.name}


def explicit_base(folder: str | Path) -> str | None:
    """The standard template a folder holds maps of (``fsaverage`` for a FreeSurfer subject or
    ``surf`` folder, the ``tpl-<name>`` of a TemplateFlow folder or home; the first of
    :func:`explicit_bases`), or None."""
    bases = explicit_bases(folder)
    return bases[0] if bases else None


def explicit_bases(folder: str | Path) -> tuple[str, ...]:
    """Every standard template a folder holds maps of: a TemplateFlow home holds several
    (``tpl-fsaverage`` and ``tpl-fsLR``)."""
    p = Path(folder)
    if (p / "surf" / "lh.sphere").is_file() or (p / "surf" / "rh.sphere").is_file() \
            or (p / "lh.sphere").is_file() or (p / "rh.sphere").is_file():
        return ("fsaverage",)
    return tuple(base for base in _TF_DENSITIES if any(p.glob(f"tpl-{base}_hemi-*_sphere.surf.gii"))
                 or any((p / f"tpl-{base}").glob("tpl-*_sphere.surf.gii")))


def _explicit_source(folder: Path, base: str, hemi: str, notes: list[str], info: list[str]) -> TemplateSource | None:
    if (folder / "surf").is_dir() or any(folder.glob("?h.sphere")):
        surf = folder / "surf" if (folder / "surf").is_dir() else folder
        return _freesurfer_source("folder", surf, hemi, notes) if base == "fsaverage" else None
    tf = folder / f"tpl-{base}" if (folder / f"tpl-{base}").is_dir() else folder
    return _templateflow_source("folder", tf, base, hemi, notes, info)


def _unreadable(what: str, where: Path | None, exc: OSError) -> str:
    """A warning line for a template source this user may not read (passed over): it names the
    folder of the file refused, the same for both hemispheres (one line)."""
    at = Path(os.fsdecode(exc.filename)).parent if exc.filename else where
    return f"{what} {where}: permission denied in {at} (this user may not read it); not used, the next source is"


def _templateflow_home(home: Path | None, base: str, hemi: str, notes: list[str], info: list[str]
                       ) -> list[TemplateSource]:
    """``$TEMPLATEFLOW_HOME``'s source of ``base`` for ``hemi`` ([] with a line in ``info`` where
    the home is a file, a template's own folder or missing). PermissionError propagates."""
    if home is None:
        return []
    if home.exists() and not home.is_dir():
        info.append(f"TemplateFlow {home}: $TEMPLATEFLOW_HOME is a file, not TemplateFlow's folder; not used")
    elif home.name.startswith("tpl-") and not (home / f"tpl-{base}").exists():
        info.append(f"TemplateFlow {home}: $TEMPLATEFLOW_HOME is a template's folder ({home.name}), not "
                    f"TemplateFlow's home, which holds it: set TEMPLATEFLOW_HOME={home.parent} (or pass "
                    f"--template-dir {home}); not used")
    elif not home.exists():  # a typo, a folder on a file system not mounted here
        info.append(f"TemplateFlow {home}: $TEMPLATEFLOW_HOME " + ("is a link to a folder that does not exist here"
                    if home.is_symlink() else "does not exist") + "; not used")
    src = _templateflow_source("templateflow", home / f"tpl-{base}", base, hemi, notes, info)
    return [src] if src else []


def _subjects_dir_source(link: Path, hemi: str, notes: list[str]) -> TemplateSource | None:
    """``<subjects dir>/fsaverage`` as a source (None, with a line in ``notes``, for a dangling
    link or fsaverage_sym). PermissionError propagates."""
    if link.is_symlink() and not link.exists():  # recon-all's link, e.g. seen inside a container
        notes.append(f"{link} is a link to {os.readlink(link)}, which does not exist here (in a "
                     "container? bind that folder too, or pass --template-dir with a copy of fsaverage)")
        return None
    if _symmetric(link):  # fsaverage_sym linked as fsaverage: another space under fsaverage's name
        notes.append(f"{link} is a link to {link.resolve()}, FreeSurfer's left-right symmetric template, "
                     "not fsaverage (its maps are in another space); not used")
        return None
    return _freesurfer_source("freesurfer", link / "surf", hemi, notes)


def discover_sources(base: str, hemi: str, search: TemplateSearch
                     ) -> tuple[list[TemplateSource], list[str], list[str]]:
    """The sources of ``base`` (``fsLR``/``fsaverage``) for ``hemi``, in order (the bundled one
    last, always); warnings about folders that hold some of the template's files but not a
    sphere and sulc for ``hemi``; and information lines (TemplateFlow's zero-byte
    placeholders, a ``$TEMPLATEFLOW_HOME`` that is a file, a sphere or sulc that is a folder:
    skipped). Reads only file names and sizes.

    Raises :class:`InputError` when ``search.template_dir`` is not a folder of ``base``'s maps.
    """
    from .templates import available_templates

    notes: list[str] = []
    info: list[str] = []
    found: list[TemplateSource] = []
    if not search.bundled_only:
        if search.template_dir is not None:
            if not search.template_dir.is_dir():  # a typo: not "not a FreeSurfer subject folder"
                raise InputError("--template-dir (template_dir= in Python): "
                                 + ("is a file, not a folder: give the folder of the template's maps (a FreeSurfer "
                                    "fsaverage or TemplateFlow tpl-<name> folder)" if search.template_dir.exists()
                                    else "no such folder"), path=search.template_dir)
            bases = explicit_bases(search.template_dir)
            have = base if base in bases else (bases[0] if bases else None)  # a TemplateFlow home holds several
            if have is None:
                inside = search.template_dir / "fsaverage"  # $SUBJECTS_DIR, what recon-all users have at hand
                hint = (f"; it is a FreeSurfer SUBJECTS_DIR holding fsaverage: --template-dir {inside} "
                        f"(or SUBJECTS_DIR={search.template_dir} in the environment)"
                        if explicit_base(inside) == "fsaverage" else "")
                raise InputError("--template-dir: not a FreeSurfer subject folder (surf/lh.sphere, lh.sulc) or a "
                                 "TemplateFlow folder (tpl-<name>_hemi-L_den-164k_sphere.surf.gii, ..._sulc.shape.gii)"
                                 + hint, path=search.template_dir)
            if have != base:
                raise InputError(f"--template-dir holds {have} maps, but the template is {base}: register to {have} "
                                 f"with --template {have} (template='{have}' in Python), or give a folder of {base}'s "
                                 "maps", path=search.template_dir)
            if have == "fsaverage" and _symmetric(search.template_dir):
                raise InputError(f"--template-dir is {_SYMMETRIC}, FreeSurfer's left-right symmetric template: its "
                                 "maps are in another space than fsaverage's (registrations to it would be labelled "
                                 "space-fsaverage); give fsaverage's folder ($FREESURFER_HOME/subjects/fsaverage)",
                                 path=search.template_dir)
            src = _explicit_source(search.template_dir, base, hemi, notes, info)
            found += [src] if src else []
        found_here: list[TemplateSource] = []  # TemplateFlow's and FreeSurfer's, in that order
        try:
            found_here += _templateflow_home(search.templateflow_home, base, hemi, notes, info)
        except PermissionError as exc:  # a shared TemplateFlow of another group: the next source
            notes.append(_unreadable("TemplateFlow", search.templateflow_home, exc))
        if base == "fsaverage":
            for d in search.subjects_dirs:
                link = d / "fsaverage"
                try:
                    src = _subjects_dir_source(link, hemi, notes)
                except PermissionError as exc:
                    notes.append(_unreadable("FreeSurfer fsaverage", link, exc))
                    continue
                found_here += [src] if src else []
        # the most vertices first (stable): an fsaverage5 linked as $SUBJECTS_DIR/fsaverage, or
        # TemplateFlow's den-10k files fetched for fMRIPrep, never hides a full fsaverage further on
        found += sorted(found_here, key=lambda s: -min(_header_vertices(s) or FULL_VERTICES, FULL_VERTICES))
    from ..resources import data_dir

    found.append(TemplateSource("bundled", base, hemi, data_dir() / "templates", None,
                                {f: None for f in available_templates().get(base, [])}))
    return found, notes, info


def fallback_warnings(candidates: Mapping[str, Sequence[TemplateSource]], features: Sequence[str],
                      notes: Sequence[str] = ()) -> list[str]:
    """One line per hemisphere whose preferred source was passed over because it lacks a map in
    ``features``, e.g. ``hemi-L: FreeSurfer fsaverage /x/fsaverage has no curv; using the
    bundled fsaverage``; then ``notes`` (places looked in that hold no usable maps)."""
    lines = []
    for hemi, sources in candidates.items():
        skipped = [s for s in sources if not s.is_bundled and not all(f in s.maps for f in features)]
        if not skipped:
            continue
        chosen = next((s for s in sources if all(f in s.maps for f in features)), None)
        what = "; ".join(f"{s.describe()} has no {', '.join(f for f in features if f not in s.maps)}"
                         for s in skipped)
        lines.append(f"template hemi-{hemi}: {what}; using {chosen.describe() if chosen else 'nothing'}")
    return lines + [f"template: {n}" for n in notes]


# ---------------------------------------------------------------------------------------------
# loading


def files_sha256(paths: Sequence[str | Path]) -> str:
    """SHA-256 (hex) of the files' bytes, concatenated in order (cached per path and
    :func:`~geomorph_bids.io.digest.file_stamp`, so a changed file is hashed again)."""
    stamps = tuple((str(p), *file_stamp(p)) for p in paths)
    return _sha256(stamps)


def sha256_now(files: Sequence[str | Path], recorded: object) -> str | None:
    """The SHA-256 of a template's map ``files`` as they are now, when it is not ``recorded``
    (the ``template_sha256`` an output recorded of them: the maps were rebuilt or replaced in
    place since, e.g. a population template rebuilt); None when they are unchanged, nothing was
    recorded, or they cannot be read here (moved, another machine's paths: nothing to compare)."""
    if not files or not isinstance(recorded, str):
        return None
    try:
        now = files_sha256(tuple(str(f) for f in files))
    except OSError:
        return None
    return None if now == recorded else now


@functools.lru_cache(maxsize=32)
def _sha256(stamps: tuple[tuple, ...]) -> str:
    h = hashlib.sha256()
    for path, *_ in stamps:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _vertex_count(source: TemplateSource) -> int:
    """Vertices of the source's maps as read (the bundled ones: the ico-6 grid's)."""
    if source.is_bundled:
        from .templates import TEMPLATE_LEVEL
        from ..sphere.icosphere import n_vertices

        return n_vertices(TEMPLATE_LEVEL)
    count = _header_vertices(source)
    if not count:  # a header the quick read cannot parse: read the whole surface
        from .surfaces import read_surface

        count = read_surface(source.sphere).n_vertices
    return int(count)


def sample_on_grid(values: np.ndarray, sphere: tuple[np.ndarray, np.ndarray], method: str = SAMPLING) -> np.ndarray:
    """Maps on a source sphere -> the ico-6 template grid.

    ``values``: (V,) or (V, K) on ``sphere`` ((V, 3) vertices in template space, any radius;
    (F, 3) faces). ``method``: ``"barycentric"`` (sampled at the grid vertices; when the
    source's first 40962 vertices ARE the grid, as for FreeSurfer's fsaverage, its values there,
    with no search) or ``"adap_bary_area"`` (averaged over each grid vertex's area).
    Returns (40962,) or (40962, K) float64.
    """
    from ..sphere.icosphere import icosphere
    from ..sphere.locate import unit
    from ..sphere.resample import resample
    from .templates import TEMPLATE_LEVEL

    grid = icosphere(TEMPLATE_LEVEL)
    v = np.asarray(sphere[0], dtype=np.float64)
    n = len(grid[0])
    if method == "barycentric" and len(v) >= n and np.abs(unit(v[:n]) - unit(grid[0])).max() < 1e-4:
        return np.asarray(values, dtype=np.float64)[:n].copy()
    return np.asarray(resample(np.asarray(values, dtype=np.float64), (v, np.asarray(sphere[1])), grid,
                               method=method), dtype=np.float64)


def _check_agreement(source: TemplateSource, feature: str, values: np.ndarray) -> None:
    """Refuse a map that is not this template's (other sign, hemisphere or template): its
    correlation with the bundled one on the ico-6 grid must be >= 0.5."""
    from .templates import load_template

    try:
        ref = load_template(source.base, source.hemi, (feature,)).features[feature]
    except ValueError:
        return
    mask = ref != 0
    r = float(np.corrcoef(values[mask], ref[mask])[0, 1])
    if not r >= _MIN_AGREEMENT:
        hint = " (HCP sign? maps must use FreeSurfer's sign, positive in sulci)" if r < -_MIN_AGREEMENT else ""
        raise InputError(f"{feature} correlates r = {r:.2f} with the bundled {source.base} hemi-{source.hemi} "
                         f"{feature}; not this template's map{hint or _whose_map(source, feature, values)}",
                         path=source.maps[feature])


def _whose_map(source: TemplateSource, feature: str, values: np.ndarray) -> str:
    """``" (it fits the bundled fsLR hemi-L sulc, r = 0.99: ...)"`` where a map refused as not
    this template's fits the other template's, or the other hemisphere's (fsLR maps named
    ``tpl-fsaverage``; lh/rh swapped); ``""`` where it fits neither."""
    from .templates import load_template

    for base, hemi, what in ((_OTHER_TEMPLATE.get(source.base), source.hemi, "the other template's map: use --template "
                              f"{_OTHER_TEMPLATE.get(source.base)}, or that template's folder"),
                             (source.base, {"L": "R", "R": "L"}[source.hemi], "the other hemisphere's map")):
        if base is None:
            continue
        try:
            ref = load_template(base, hemi, (feature,)).features[feature]
        except ValueError:
            continue
        mask = ref != 0
        r = float(np.corrcoef(values[mask], ref[mask])[0, 1])
        if abs(r) >= _MIN_AGREEMENT:
            sign = "" if r > 0 else " in HCP's sign (negated)"
            return f" (it fits the bundled {base} hemi-{hemi} {feature}{sign}, r = {r:.2f}: {what})"
    return ""


#: the other standard template, for :func:`_whose_map`
_OTHER_TEMPLATE = {"fsaverage": "fsLR", "fsLR": "fsaverage"}


def _sphere_centre(vertices: np.ndarray) -> np.ndarray:
    """(3,) the centre of a template's sphere: the mean of its vertices, unless the least-squares
    sphere's centre (:func:`~geomorph_bids.io.validate.fit_sphere`) lies more than 1e-6 of the
    radius from it. The vertex mean is the centre of an evenly sampled sphere only: HCP's fsLR 164k
    sphere (``fsaverage.L_LR.spherical_std.164k_fs_LR``, as sMRIPrep ships it; TemplateFlow's
    ``den-164k`` sphere is expected to be the same mesh) is centred on the origin, every vertex at
    100 mm, but its vertex mean lies 2.1 mm off, and centring on that moved the maps sampled from
    it by up to 1.2 deg. An evenly sampled one keeps the vertex mean
    (the same maps as before, to the bit)."""
    from .validate import fit_sphere

    mean = vertices.mean(axis=0)
    centre, radius, _ = fit_sphere(vertices)
    return centre if np.linalg.norm(centre - mean) > 1e-6 * radius else mean


#: where each kind of source was found, for messages
_FOUND_THROUGH = {"folder": "--template-dir", "templateflow": "$TEMPLATEFLOW_HOME",
                  "freesurfer": "--fs-subjects-dir, $SUBJECTS_DIR or $FREESURFER_HOME/subjects"}


def _read_source_map(source: TemplateSource, feature: str, n_vertices: int) -> np.ndarray:
    """(V,) ``feature`` of a non-bundled source, refused (naming the file, where it was found and
    how to do without it) when it has another vertex count than the source's sphere: the
    subject-oriented advice of :func:`~geomorph_bids.io.surfaces.read_feature` misled there."""
    from .surfaces import read_feature

    path = source.maps[feature]
    values = np.asarray(read_feature(path), dtype=np.float64)
    if values.shape[0] != n_vertices:
        raise InputError(f"the template's {feature} map ({source.describe()}, found through "
                         f"{_FOUND_THROUGH[source.kind]}) has {values.shape[0]} vertices but its sphere "
                         f"{source.sphere} has {n_vertices}: the two are of different meshes; replace that "
                         f"{feature} with the template's own, or use the bundled maps: --template-dir bundled "
                         "(template_dir='bundled' in Python)", path=path)
    return values.reshape(-1)


@functools.lru_cache(maxsize=8)
def _load_cached(source_key: str, features: tuple[str, ...], method: str,
                 stamp: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """(40962, K) maps of a non-bundled source, read-only (cached per files' :func:`~geomorph_bids.io.digest.file_stamp`)."""
    import json

    from .surfaces import read_surface

    source = TemplateSource.from_dict(json.loads(source_key))
    sphere = read_surface(source.sphere)  # a template's sphere: checked for shape, not re-validated (0.2 s)
    centred = sphere.vertices - _sphere_centre(sphere.vertices)
    radii = np.linalg.norm(centred, axis=1)
    if not radii.std() < 0.05 * radii.mean():
        raise InputError("is not a sphere (radii vary by more than 5 %)", path=source.sphere)
    stack = np.column_stack([_read_source_map(source, f, sphere.n_vertices) for f in features])
    if not np.all(np.isfinite(stack)):
        raise InputError("template map has non-finite values", path=source.maps[features[0]])
    out = sample_on_grid(stack, (centred, sphere.faces), method)
    for k, f in enumerate(features):
        _check_agreement(source, f, out[:, k])
    out.setflags(write=False)
    return out


def load_source(source: TemplateSource, features: Sequence[str], method: str = SAMPLING) -> Template:
    """The :class:`~geomorph_bids.io.templates.Template` of ``source`` with ``features`` on the
    ico-6 grid (FreeSurfer sign), with ``provenance`` (:meth:`TemplateSource.provenance`).

    Raises :class:`InputError` (one line, naming the file) for an unreadable or implausible map,
    ValueError when ``source`` lacks a feature.
    """
    import json
    from dataclasses import replace

    from .templates import load_template

    features = tuple(features)
    if source.is_bundled:  # load_template says what the bundled maps lack, and which package has it
        return replace(load_template(source.base, source.hemi, features), provenance=source.provenance(features))
    missing = [f for f in features if f not in source.maps]
    if missing:
        raise ValueError(f"{source.describe()} has no {', '.join(missing)} for hemi-{source.hemi}; "
                         f"it has: {', '.join(source.features) or 'none'}")
    base = load_template(source.base, source.hemi, ())
    stamp = tuple(file_stamp(p) for p in source.files(features))
    maps = _load_cached(json.dumps(source.to_dict(), sort_keys=True), features, method, stamp)
    return replace(base, features={f: np.array(maps[:, k]) for k, f in enumerate(features)},
                   provenance=source.provenance(features))

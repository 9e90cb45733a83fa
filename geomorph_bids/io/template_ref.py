"""Which registration template a run uses, decided once: :class:`TemplateRef`.

Every entry point turns the user's template argument (``--template``, ``--template-dir``,
``template=``) into a :class:`TemplateRef` with :func:`resolve_template_ref` and hands it
down; the workflows, the interfaces, the reports and the group level load the maps through it
and never search again. A name is looked up, in order:

* a standard template (``fsLR``, ``fsaverage``): its maps come, per hemisphere, from the
  sources :func:`~geomorph_bids.io.template_sources.discover_sources` finds where the entry
  point's :class:`~geomorph_bids.io.template_sources.TemplateSearch` says to look (an explicit
  folder, TemplateFlow, the user's FreeSurfer ``fsaverage``, then the bundled maps); the
  reference records them all, in order, and :meth:`TemplateRef.source` picks the first that
  has every map a registration needs;
* a folder holding a standard template's maps (a FreeSurfer ``fsaverage`` subject folder, a
  TemplateFlow ``tpl-fsaverage`` folder): that template, from that folder first;
* a custom template folder given by path (``tpl-<label>`` with ``template_description.json``),
  then ``tpl-<name>`` in each folder of the search path (:func:`template_search_path`: where
  ``group --build-template`` writes).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import InputError
from .custom_template import (DESCRIPTION, custom_feature_file, custom_provenance, custom_template_info,
                              find_custom_template, load_custom_template)
from .template_sources import (BUNDLED_ASKED_NOTE, TemplateSearch, TemplateSource, discover_sources, explicit_bases,
                               fallback_warnings, is_low_resolution, load_source, low_resolution_note)
from .templates import Template, available_templates, is_bundled_template

__all__ = ["TemplateRef", "resolve_template_ref", "template_search_path", "moved_template_files", "resolve_template",
           "HEMIS"]

HEMIS = ("L", "R")


@dataclass(frozen=True)
class TemplateRef:
    """A resolved registration template.

    Attributes
    ----------
    label : the template's name in output names (``space-<label>``): ``fsLR``, ``fsaverage`` or
        a custom template's ``Identifier``.
    base : the standard template (``fsLR`` or ``fsaverage``) whose spherical coordinates the
        maps use; output densities are its spheres.
    folder : a custom template's folder (``tpl-<label>``, absolute), or None.
    sources : a standard template's sources for both hemispheres, each hemisphere's in order of
        preference, its bundled maps last (empty for a custom template).
    notes : places looked in that hold some of the template's files but no sphere and sulc for
        a hemisphere (printed as warnings).
    info : places skipped as expected (TemplateFlow's zero-byte placeholders; printed as notes).
    bundled_asked : the bundled maps alone were asked for (``--template-dir bundled``,
        ``template_dir="bundled"``): their low-resolution note gives no advice to use others.
    """

    label: str
    base: str
    folder: Path | None = None
    sources: tuple[TemplateSource, ...] = ()
    notes: tuple[str, ...] = ()
    info: tuple[str, ...] = ()
    bundled_asked: bool = field(default=False, compare=False)  # how it was asked for, not what it is

    @classmethod
    def bundled(cls, name: str) -> "TemplateRef":
        """A standard template from its bundled maps only (ValueError for an unknown name)."""
        if not is_bundled_template(name):
            raise ValueError(f"unknown template {name!r}: not a bundled template")
        return _standard(str(name), TemplateSearch(bundled_only=True))

    @property
    def is_custom(self) -> bool:
        """Whether this is a custom template folder (e.g. a population template)."""
        return self.folder is not None

    def candidates(self, hemi: str) -> tuple[TemplateSource, ...]:
        """The sources of one hemisphere, in order of preference."""
        return tuple(s for s in self.sources if s.hemi == hemi)

    def source(self, hemi: str, features: Sequence[str]) -> TemplateSource | None:
        """The first source of ``hemi`` with every map in ``features`` (else the bundled one,
        whose loading then says what it lacks); None for a custom template."""
        if self.is_custom:
            return None
        cands = self.candidates(hemi)
        return next((s for s in cands if all(f in s.maps for f in features)), cands[-1])

    def features(self, hemi: str) -> tuple[str, ...]:
        """The maps the preferred source of ``hemi`` offers (a custom template: its files)."""
        if self.is_custom:
            stem = custom_feature_file(self.folder, self.label, hemi, "X").name[: -len("X.shape.gii")]
            return tuple(sorted(p.name[len(stem): -len(".shape.gii")] for p in self.folder.glob(f"{stem}*.shape.gii")))
        return self.candidates(hemi)[0].features

    def shared_features(self, hemis: Iterable[str] = HEMIS) -> tuple[str, ...]:
        """The maps the preferred source of every one of ``hemis`` offers."""
        per = [self.features(h) for h in hemis]
        return tuple(f for f in per[0] if all(f in p for p in per[1:])) if per else ()

    def load(self, hemi: str, features: Sequence[str] = ("sulc",)) -> Template:
        """The template of one hemisphere with ``features`` (ico-6 grid, FreeSurfer sign), with
        its ``provenance``."""
        if self.is_custom:
            return load_custom_template(self.folder, hemi, features)  # with its provenance
        return load_source(self.source(hemi, features), features)

    def provenance(self, hemi: str, features: Sequence[str]) -> dict[str, Any]:
        """What the outputs record about the maps of ``hemi`` used for ``features``
        (:meth:`~geomorph_bids.io.template_sources.TemplateSource.provenance`; a custom
        template: kind ``custom``, its folder, 40962 vertices, the maps' SHA-256)."""
        if self.is_custom:
            return custom_provenance(self.folder, self.label, hemi, features)
        return self.source(hemi, features).provenance(features)

    def warnings(self, features: Sequence[str], hemis: Iterable[str] = HEMIS) -> list[str]:
        """One line per hemisphere whose preferred source lacks a map in ``features`` (the next
        one is used), then the notes; a custom template: its notes (a ``--template-dir`` it does
        not use)."""
        if self.is_custom:
            return list(self.notes)
        hemis = tuple(hemis)
        notes = [n for n in self.notes if not any(f"hemi-{h}" in n for h in HEMIS if h not in hemis)]
        return fallback_warnings({h: self.candidates(h) for h in hemis}, features, notes)

    def low_resolution(self, features: Sequence[str], hemis: Iterable[str] = HEMIS) -> bool:
        """Whether any of ``hemis`` uses the bundled low-resolution fsaverage (fsaverage5-derived)."""
        return not self.is_custom and any(is_low_resolution(self.source(h, features)) for h in hemis)

    def low_resolution_note(self, features: Sequence[str], hemi: str) -> str | None:
        """What to say after ``registered`` when ``hemi`` uses low-resolution maps (the bundled
        fsaverage, or maps found here with fewer than 163,842 vertices:
        :func:`~geomorph_bids.io.template_sources.low_resolution_note`), else None; the bundled
        maps asked for (:attr:`bundled_asked`): what they are, without the way to others."""
        if not self.low_resolution(features, (hemi,)):
            return None
        source = self.source(hemi, features)
        if source.is_bundled and self.bundled_asked:
            return BUNDLED_ASKED_NOTE
        if source.is_bundled:
            return low_resolution_note({"template_source": "bundled"}, self.base)
        return low_resolution_note({"template_source": source.kind, "template_source_path": str(source.folder),
                                    "template_vertices": source.vertex_count()}, self.base)

    def describe(self, features: Sequence[str], hemis: Iterable[str] = HEMIS, vertices: bool = False) -> str:
        """One line: where the maps come from, e.g. ``fsaverage from FreeSurfer fsaverage /x``;
        maps an installed package provides are named (``fsLR from the bundled fsLR (curv,
        myelin from brainspace's group maps)``). ``vertices``: a folder's maps with their vertex count
        (``folder fsaverage /x (163,842 vertices)``: the full template, not an fsaverage5 in its place)."""
        if self.is_custom:  # a folder renamed or copied under another name still names its outputs by its Identifier
            named = "" if self.folder.name == f"tpl-{self.label}" else (
                f" (the Identifier in its {DESCRIPTION}: outputs are named space-{self.label})")
            return f"{self.label} from {self.folder}{named}"
        hemis = tuple(hemis)
        where = sorted({self.source(h, features).describe() + (
            f" ({self.source(h, features).vertex_count():,} vertices)"
            if vertices and not self.source(h, features).is_bundled else "") for h in hemis})
        also = "; ".join(f"{', '.join(fs)} from {package}'s group maps"
                         for package, fs in self.package_maps(features, hemis).items())
        return f"{self.label} from {' and '.join(where)}" + (f" ({also})" if also else "")

    def package_maps(self, features: Sequence[str], hemis: Iterable[str] = HEMIS) -> dict[str, tuple[str, ...]]:
        """The installed packages whose maps ``hemis`` use for ``features`` -> those maps, sorted
        (``{"brainspace": ("curv", "myelin")}`` for the bundled fsLR with curv and myelin); ``{}``
        for a custom template or a source with no such map."""
        if self.is_custom:
            return {}
        packaged: dict[str, set[str]] = {}
        for h in hemis:
            source = self.source(h, features)
            if source is None or not all(f in source.maps for f in features):  # refused where it is loaded
                continue
            for f, ref in (source.provenance(features).get("template_maps") or {}).items():
                packaged.setdefault(ref.split(":", 1)[0], set()).add(f)
        return {package: tuple(sorted(fs)) for package, fs in sorted(packaged.items())}

    def to_dict(self) -> dict[str, Any]:
        """Plain strings (a Nipype input); :meth:`from_dict` is the inverse. ``bundled_asked`` only where true
        (``--template-dir bundled``: the reports, read later, then say the maps were chosen on purpose), so that
        every other run's record and Nipype hash are as before."""
        return {"label": self.label, "base": self.base, "folder": "" if self.folder is None else str(self.folder),
                "sources": [s.to_dict() for s in self.sources], "notes": list(self.notes), "info": list(self.info),
                **({"bundled_asked": True} if self.bundled_asked else {})}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TemplateRef":
        sources = tuple(TemplateSource.from_dict(s) for s in d.get("sources") or ())
        if not sources and not d.get("folder"):  # a record written before template sources existed
            return cls.bundled(str(d["base"]))
        return cls(str(d["label"]), str(d["base"]), Path(d["folder"]) if d.get("folder") else None, sources,
                   tuple(d.get("notes") or ()), tuple(d.get("info") or ()), bundled_asked=d.get("bundled_asked") is True)


def _standard(name: str, where: TemplateSearch) -> TemplateRef:
    sources: list[TemplateSource] = []
    notes: list[str] = []
    info: list[str] = []
    for hemi in HEMIS:
        found, why, fyi = discover_sources(name, hemi, where)
        sources += found
        notes += [n for n in why if n not in notes]
        info += [n for n in fyi if n not in info]
    return TemplateRef(name, name, None, tuple(sources), tuple(notes), tuple(info), bundled_asked=where.bundled_only)


def template_search_path(output_dir: str | Path) -> tuple[Path, ...]:
    """Folders searched for ``tpl-<label>`` when a template is named by label: the output
    folder (where ``group --build-template`` writes) and its ``templates/`` sub-folder."""
    return (Path(output_dir), Path(output_dir) / "templates")


def moved_template_files(files: Sequence[str | Path], output_dir: str | Path) -> tuple[str, ...]:
    """The map files of a custom template an output recorded (``template_files``), found again
    after the output folder moved with its templates: when their ``tpl-<label>`` folder is no
    longer where it was recorded, the same files in the ``tpl-<label>`` of ``output_dir``'s
    :func:`template_search_path`; else ``files`` as they are. Whether they hold the same maps is
    the caller's to check (their SHA-256 against the recorded one)."""
    files = tuple(str(f) for f in files)
    if not files:
        return files
    folder = Path(files[0]).parent
    if not folder.name.startswith("tpl-") or folder.is_dir():
        return files
    for d in template_search_path(output_dir):
        here = Path(d) / folder.name
        if here.is_dir():
            return tuple(str(here / Path(f).name) for f in files)
    return files


def template_name_hint(name: str) -> str | None:
    """What a user who typed ``name`` (not a template) most likely meant, or None: a density
    spelled into the name (fMRIPrep's ``fsaverage6``, ``fsLR32k``; read by
    :func:`~geomorph_bids.io.templates.normalise_density`), another capitalisation of a bundled
    template, or a volume template."""
    import re

    from .templates import DENSITIES, normalise_density

    def density(template: str, label: str) -> str | None:
        try:
            return normalise_density(template, label)
        except ValueError:
            return None

    low = name.strip().lower()
    if re.fullmatch(r"fsaverage\d", low):
        den = density("fsaverage", low)
        return (f"{name} is fsaverage at {den} vertices: register to template fsaverage and ask for output "
                f"density {den} (--template fsaverage --output-density {den})" if den else
                f"{name} is not a density geomorph-bids writes: register to template fsaverage (output "
                f"densities {', '.join(DENSITIES['fsaverage'])})")
    m = re.fullmatch(r"fs[_-]?lr[_-]?((?:den-)?\d+k?)?", low)
    if m:
        if not m.group(1):
            return "template names are case-sensitive: did you mean fsLR?"
        den = density("fsLR", m.group(1))
        return (f"{name} is fsLR at {den} vertices: register to template fsLR and ask for output density "
                f"{den} (--template fsLR --output-density {den})" if den else
                f"{name}: fsLR has output densities {', '.join(DENSITIES['fsLR'])} "
                "(--template fsLR --output-density 32k)")
    if low == "fsaverage" or low in ("fsaverage_sym", "fsavg"):
        return "template names are case-sensitive: did you mean fsaverage?"
    if low.startswith(("mni", "oasis", "nmt", "t1w", "colin")):
        return (f"{name} is a volume template; geomorph-bids registers cortical spheres to the surface "
                f"templates {' and '.join(available_templates())}")
    return None


def resolve_template_ref(name: str | Path, search: Sequence[str | Path] = (),
                         where: TemplateSearch | None = None) -> TemplateRef:
    """A standard template (its sources found as ``where`` says; None: the bundled maps only),
    a folder of a standard template's maps, else a custom template folder (a path, or
    ``tpl-<name>`` in one of ``search``). Raises :class:`InputError` (one line) when none
    exists, the folder's ``BaseTemplate`` is not a standard template, or ``where`` names a
    folder that is not one of the template's."""
    where = where or TemplateSearch(bundled_only=True)
    if is_bundled_template(str(name)):
        return _standard(str(name), where)
    if Path(name).is_dir() and not (Path(name) / DESCRIPTION).is_file():
        bases = explicit_bases(name)
        if len(bases) > 1:  # a TemplateFlow home: which template is meant is not the folder's to say
            raise InputError(f"holds the maps of several templates ({', '.join(bases)}): name the template and "
                             f"give the folder as --template-dir, e.g. --template {bases[-1]} --template-dir {name} "
                             f"(template='{bases[-1]}', template_dir=... in Python)", path=name)
        base = bases[0] if bases else None
        if base is not None:
            return _standard(base, replace(where, template_dir=Path(name).absolute(), bundled_only=False))
    folder = find_custom_template(name, search)
    if folder is None:
        hint = template_name_hint(str(name))
        if hint:
            raise InputError(f"unknown template {str(name)!r}: {hint}")
        if any(sep in str(name) for sep in ("/", "\\")) and not Path(name).exists():  # a path with a typo
            raise InputError(f"unknown template {str(name)!r}: no such folder (a template is "
                             f"{', '.join(available_templates())}, or a folder of its maps)")
        if Path(name).is_file():  # e.g. a template's sphere file, tpl-fsLR_hemi-L_den-32k_sphere.surf.gii
            raise InputError(f"unknown template {str(name)!r}: is a file; a template is "
                             f"{', '.join(available_templates())} or a folder of its maps (the folder that holds "
                             "this file, if it is a TemplateFlow or FreeSurfer fsaverage folder)")
        where_txt = f" or in {', '.join(str(p) for p in search)}" if search else ""
        raise InputError(f"unknown template {str(name)!r}: not bundled ({', '.join(available_templates())}), not a "
                         "FreeSurfer fsaverage or TemplateFlow folder, and no custom template folder (tpl-<label> "
                         f"with {DESCRIPTION}) at that path{where_txt}")
    info = custom_template_info(folder)
    base = str(info.get("BaseTemplate", ""))
    if not is_bundled_template(base):
        raise InputError(f"custom template has BaseTemplate {base!r}; expected {' or '.join(available_templates())}",
                         path=folder / DESCRIPTION)
    label = str(info["Identifier"])
    unused = () if where.template_dir is None else (  # a custom template's maps are its folder's: said, not ignored
        f"--template-dir {where.template_dir} is not used (template_dir= in Python): template {label} is a custom "
        f"template folder ({folder.absolute()}), whose maps are its own",)
    return TemplateRef(label, base, folder.absolute(), notes=unused)


def resolve_template(name: str | Path, hemi: str, features: Sequence[str] = ("sulc",),
                     search: Sequence[str | Path] = (), where: TemplateSearch | None = None) -> Template:
    """Load a template by name or folder (:func:`resolve_template_ref`, then :meth:`TemplateRef.load`)."""
    return resolve_template_ref(name, search, where).load(hemi, features)

"""Every name geomorph-bids gives its outputs, in one place.

The participant level's sinks, the check that a hemisphere's outputs are complete, the reports,
the group level and the population template all build and parse output names here, so an
output is renamed (or one is added) by changing this module alone (plus, for a new file, the
sink that writes it in :mod:`geomorph_bids.workflows.outputs`).

Per subject/session/hemisphere, in ``sub-X/[ses-Y/]anat/`` (``<ent>`` = ``sub-X[_ses-Y]``,
``H`` = L/R, ``T`` = template label, ``D`` = output density)::

    <ent>_hemi-H_space-T_desc-geomorph_sphere.surf.gii   (+ .json)  REGISTERED_SPHERE
    <ent>_hemi-H_space-T_den-D_desc-geomorph_<f>.shape.gii (+ .json) RESAMPLED_FEATURE, per feature
    <ent>_hemi-H_space-T_desc-geomorph_metrics.json                 METRICS
    <ent>_hemi-H_sphere.surf.gii                         (+ .json)  NATIVE_SPHERE
    <ent>_hemi-H_<f>.shape.gii                           (+ .json)  NATIVE_FEATURE, per registration feature

with ``<f>`` the feature's suffix (:data:`FEATURE_SUFFIX`: sMRIPrep's names, myelin as
``myelinw``). With ``--fmriprep-compat``, the registered sphere also under the names sMRIPrep's
``data/io_spec.json`` queries (:data:`FMRIPREP_SPHERES`, by template; ``(+ .json)`` each)::

    <ent>_hemi-H_space-fsLR_desc-msmsulc_sphere.surf.gii    sphere_reg_msm   (template fsLR)
    <ent>_hemi-H_space-fsaverage_desc-reg_sphere.surf.gii   sphere_reg       (template fsaverage)
    <ent>_hemi-H_space-fsLR_desc-reg_sphere.surf.gii        sphere_reg_fsLR  (template fsaverage,
                                                            carried into fsLR as sMRIPrep does)

With ``--cifti-output``, per subject/session (both hemispheres, :data:`CIFTI_FEATURES`)::

    <ent>_space-T_den-D_desc-geomorph_features.dscalar.nii  (+ .json)  one map per feature
 Beside them: ``sub-X.html`` and ``sub-X/figures/`` (the report),
``group_desc-geomorph_metrics.tsv``, ``group.html`` and ``figures/`` (the group level),
``dataset_description.json``, ``README.md``, ``.bidsignore`` and ``logs/`` (``CITATION.md``,
``crash-<run>/``).

BIDS (1.11) has no rule for surface meshes, morphometry maps, metrics JSON or dscalar files in
``anat/``, nor for reports: the BIDS validator reports each as NOT_INCLUDED, as it does
sMRIPrep's own ``sphere.surf.gii`` and ``sulc.shape.gii``. :func:`bidsignore_lines` lists exactly
our names for the derivative's ``.bidsignore`` (sMRIPrep writes one too); the names stay
sMRIPrep's, which fMRIPrep reads.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

__all__ = ["DESC", "FEATURE_SUFFIX", "Derivative", "REGISTERED_SPHERE", "RESAMPLED_FEATURE", "METRICS",
           "NATIVE_SPHERE", "NATIVE_FEATURE", "HEMISPHERE_DERIVATIVES", "SINK_PATTERNS", "HemisphereOutputs",
           "hemisphere_outputs", "SPHERE_REG_MSM", "SPHERE_REG_FSAVERAGE", "SPHERE_REG_FSLR", "FMRIPREP_SPHERES",
           "CIFTI_FEATURES", "cifti_file",
           "entities", "label_key", "anat_dir", "anat_uri", "sidecar", "parse_metrics_name", "metrics_files",
           "report_name",
           "figures_dir", "FIGURES", "GROUP_TSV", "GROUP_JSON", "GROUP_HTML", "GROUP_FIGURE",
           "DATASET_DESCRIPTION", "dataset_link", "linked_folder",
           "CITATION", "LOGS", "README", "BIDSIGNORE", "bidsignore_lines", "crash_dir", "CRASH_FILES",
           "STANDARD_SPACES", "check_template_label"]

#: the ``desc-`` of every geomorph-bids result
DESC = "geomorph"
#: output suffix of each feature (sMRIPrep's names; myelin as ``myelinw``)
FEATURE_SUFFIX = {"sulc": "sulc", "curv": "curv", "thickness": "thickness", "myelin": "myelinw"}


@dataclass(frozen=True)
class Derivative:
    """One kind of per-hemisphere output: the entities that follow ``sub``, ``ses`` and ``hemi``.

    ``suffix`` None: the feature's suffix (:data:`FEATURE_SUFFIX`); ``space`` / ``density``:
    whether the name carries ``space-<template>`` / ``den-<density>``; ``sidecar``: whether a
    JSON sidecar is written beside it; ``space_label``: a fixed ``space-`` whatever the template
    (sMRIPrep's names, e.g. ``space-fsLR_desc-msmsulc``).
    """

    suffix: str | None
    extension: str
    space: bool = False
    density: bool = False
    desc: str | None = None
    sidecar: bool = True
    space_label: str | None = None

    def entities(self, space: str | None = None, density: str | None = None,
                 feature: str | None = None) -> dict[str, str]:
        """The sink's entities (``space``, ``density``, ``desc``, ``suffix``; absent ones left out)."""
        out = {"space": self.space_label or (space if self.space else None),
               "density": density if self.density else None,
               "desc": self.desc, "suffix": self.suffix or FEATURE_SUFFIX.get(str(feature), str(feature))}
        return {k: v for k, v in out.items() if v is not None}

    def name(self, ent: str, hemi: str | None, space: str | None = None, density: str | None = None,
             feature: str | None = None) -> str:
        """File name, e.g. ``sub-01_hemi-L_space-fsLR_desc-geomorph_sphere.surf.gii`` (``hemi``
        None: a file of both hemispheres, without ``hemi-``)."""
        e = self.entities(space, density, feature)
        parts = [ent, *([f"hemi-{hemi}"] if hemi else [])] + [f"{key}-{e[k]}" for k, key in
                                         (("space", "space"), ("density", "den"), ("desc", "desc")) if k in e]
        return "_".join(parts) + f"_{e['suffix']}{self.extension}"


REGISTERED_SPHERE = Derivative("sphere", ".surf.gii", space=True, desc=DESC)
RESAMPLED_FEATURE = Derivative(None, ".shape.gii", space=True, density=True, desc=DESC)
METRICS = Derivative("metrics", ".json", space=True, desc=DESC, sidecar=False)
NATIVE_SPHERE = Derivative("sphere", ".surf.gii")
NATIVE_FEATURE = Derivative(None, ".shape.gii")

#: --fmriprep-compat: the registered sphere under sMRIPrep's names (its data/io_spec.json keys)
SPHERE_REG_MSM = Derivative("sphere", ".surf.gii", desc="msmsulc", space_label="fsLR")
SPHERE_REG_FSAVERAGE = Derivative("sphere", ".surf.gii", desc="reg", space_label="fsaverage")
SPHERE_REG_FSLR = Derivative("sphere", ".surf.gii", desc="reg", space_label="fsLR")
#: template -> {sMRIPrep io_spec key: Derivative} written with --fmriprep-compat: fsLR's sphere is
#: what MSMSulc would write; fsaverage's is FreeSurfer's sphere.reg counterpart and, carried
#: into fsLR, the baseline fsLR sphere
FMRIPREP_SPHERES: dict[str, dict[str, Derivative]] = {
    "fsLR": {"sphere_reg_msm": SPHERE_REG_MSM},
    "fsaverage": {"sphere_reg": SPHERE_REG_FSAVERAGE, "sphere_reg_fsLR": SPHERE_REG_FSLR}}
#: surface template spaces other tools read by name (sMRIPrep/fMRIPrep, TemplateFlow): a template a user
#: builds must not take one of them, or its outputs would be mistaken for (and overwrite) that space's
STANDARD_SPACES = ("fsLR", "fsaverage", "fsaverage3", "fsaverage4", "fsaverage5", "fsaverage6", "fsnative",
                   "onavg", "civet", "MNI152NLin2009cAsym", "MNI152NLin6Asym")


def check_template_label(label: str) -> str:
    """``label`` if it may name a user-built template (``tpl-<label>``, ``space-<label>``):
    ASCII letters and digits, not one of :data:`STANDARD_SPACES` (any case); else ValueError."""
    text = str(label)
    if not text or not (text.isascii() and text.isalnum()):
        raise ValueError(f"template label must be letters and digits (BIDS tpl-<label>), got {label!r}")
    if text.lower() in {s.lower() for s in STANDARD_SPACES}:
        raise ValueError(f"template label {text!r} is a standard template's name: its outputs (space-{text}) would "
                         "overwrite and be taken for that template's; choose another (e.g. geomorphPopulation)")
    return text


#: --cifti-output: every resampled feature of both hemispheres, one CIFTI-2 dscalar per subject/session
CIFTI_FEATURES = Derivative("features", ".dscalar.nii", space=True, density=True, desc=DESC)

#: every per-hemisphere output, by name (the order of :meth:`HemisphereOutputs.files`)
HEMISPHERE_DERIVATIVES = {"registered_sphere": REGISTERED_SPHERE, "metrics": METRICS,
                          "resampled_feature": RESAMPLED_FEATURE, "native_sphere": NATIVE_SPHERE,
                          "native_feature": NATIVE_FEATURE}


def _patterns() -> tuple[str, ...]:
    """niworkflows ``build_path`` patterns that produce exactly the names above."""
    stem = "sub-{subject}[/ses-{session}]/{datatype<anat>|anat}/sub-{subject}[_ses-{session}]_hemi-{hemi<L|R>}"
    kinds = HEMISPHERE_DERIVATIVES.values()
    suffixes = list(dict.fromkeys([*(d.suffix for d in kinds if d.suffix and d.extension != ".json"),
                                   *FEATURE_SUFFIX.values()]))
    images = list(dict.fromkeys([*(d.extension for d in kinds if d.extension != ".json"), ".func.gii"]))
    json_suffixes = [d.suffix for d in kinds if d.extension == ".json" and d.suffix]
    entities_ = "[_space-{space}][_den-{density}][_desc-{desc}]"
    subject = "sub-{subject}[/ses-{session}]/{datatype<anat>|anat}/sub-{subject}[_ses-{session}]"
    return (stem + entities_ + f"_{{suffix<{'|'.join(suffixes)}>}}{{extension<{'|'.join(images)}>}}",
            stem + entities_ + f"_{{suffix<{'|'.join(json_suffixes)}>}}{{extension<.json>}}",
            subject + entities_ + f"_{{suffix<{CIFTI_FEATURES.suffix}>}}{{extension<{CIFTI_FEATURES.extension}>}}")


#: BIDS path patterns of the outputs (pybids `build_path` form; the writer uses the names above,
#: tests/test_derivatives.py checks that both agree)
SINK_PATTERNS = _patterns()


def label_key(label: object) -> tuple:
    """The order of labels (and of paths made of them) in the group level's table and lists:
    runs of digits by their value, the rest as text, so ``sub-2`` comes before ``sub-10`` and
    ``ses-2`` before ``ses-10`` (as text, ``1, 10, 100, 2``); zero-padded labels keep their text
    order, and ``01`` and ``1`` sit together (``01`` first). None and '' come first (a row without
    sessions before its participant's sessions)."""
    text = "" if label is None else str(label)
    parts = re.split(r"([0-9]+)", text)  # text, digits, text, ...: the same kinds at the same places
    return tuple((int(p), p) if k % 2 else p for k, p in enumerate(parts)), text


def entities(subject: str, session: str | None) -> str:
    """``sub-X`` or ``sub-X_ses-Y`` (labels without prefixes)."""
    return f"sub-{subject}" + (f"_ses-{session}" if session else "")


def anat_dir(output_dir: str | Path, subject: str, session: str | None) -> Path:
    """``OUTPUT_DIR/sub-X/[ses-Y/]anat``."""
    return Path(output_dir) / f"sub-{subject}" / (f"ses-{session}" if session else "") / "anat"


def anat_uri(ent: str, name: str) -> str:
    """The BIDS URI of our own output ``name`` of ``sub-X[_ses-Y]`` (``bids::sub-X/ses-Y/anat/name``),
    as the sidecars' ``Sources`` name it."""
    return f"bids::{'/'.join(ent.split('_'))}/anat/{name}"


def sidecar(path: str | Path) -> Path:
    """The JSON sidecar beside a data file (``x.surf.gii`` -> ``x.json``)."""
    p = Path(path)
    return p.with_name(p.name.split(".", 1)[0] + ".json")


@dataclass(frozen=True)
class HemisphereOutputs:
    """The output files of one subject/session/hemisphere (what the participant level writes).

    ``space``: the template label; ``density``: the output density label; ``features``: the
    resampled features; ``channels``: the registration features (written natively too);
    ``fmriprep``: whether the registered sphere is also written under sMRIPrep's names
    (:data:`FMRIPREP_SPHERES` of ``space``).
    """

    output_dir: Path
    subject: str
    session: str | None
    hemi: str
    space: str
    density: str
    features: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    fmriprep: bool = False

    @property
    def entities(self) -> str:
        return entities(self.subject, self.session)

    @property
    def anat(self) -> Path:
        return anat_dir(self.output_dir, self.subject, self.session)

    def path(self, kind: Derivative, feature: str | None = None) -> Path:
        """The file of one :class:`Derivative` (``feature`` for the per-feature ones)."""
        return self.anat / kind.name(self.entities, self.hemi, self.space, self.density, feature)

    @property
    def registered_sphere(self) -> Path:
        return self.path(REGISTERED_SPHERE)

    @property
    def metrics(self) -> Path:
        return self.path(METRICS)

    @property
    def native_sphere(self) -> Path:
        return self.path(NATIVE_SPHERE)

    def resampled_feature(self, feature: str) -> Path:
        return self.path(RESAMPLED_FEATURE, feature)

    def native_feature(self, feature: str) -> Path:
        return self.path(NATIVE_FEATURE, feature)

    @property
    def fmriprep_spheres(self) -> dict[str, Path]:
        """sMRIPrep io_spec key -> file, with ``fmriprep`` (else empty)."""
        kinds = FMRIPREP_SPHERES.get(self.space, {}) if self.fmriprep else {}
        return {key: self.path(kind) for key, kind in kinds.items()}

    def files(self) -> list[Path]:
        """Every file, sidecars included (for the completeness check and the cleanup of a
        failed hemisphere)."""
        def with_sidecar(kind: Derivative, feature: str | None = None) -> Iterator[Path]:
            p = self.path(kind, feature)
            yield p
            if kind.sidecar:
                yield sidecar(p)

        out = [*with_sidecar(REGISTERED_SPHERE), *with_sidecar(METRICS)]
        for f in self.features:
            out += with_sidecar(RESAMPLED_FEATURE, f)
        # the native sphere and registration features as registered (radius 100, FreeSurfer sign):
        # what the report draws "before registration" from, and provenance of the output
        out += with_sidecar(NATIVE_SPHERE)
        for f in self.channels:
            out += with_sidecar(NATIVE_FEATURE, f)
        for kind in (FMRIPREP_SPHERES.get(self.space, {}) if self.fmriprep else {}).values():
            out += with_sidecar(kind)
        return out

    def others(self) -> list[Path]:
        """Outputs of this hemisphere and template that an earlier run with other options left
        and :meth:`files` does not list: resampled maps at other densities or of other features
        (``space-T_den-*_desc-geomorph_*``) and, without ``fmriprep``, the sphere under sMRIPrep's
        names, sidecars included. They describe an earlier registration."""
        keep = set(self.files())
        found = set(self.anat.glob(f"{self.entities}_hemi-{self.hemi}_space-{self.space}_den-*_desc-{DESC}_*"))
        if not self.fmriprep:
            for kind in FMRIPREP_SPHERES.get(self.space, {}).values():
                p = self.path(kind)
                found |= {p, sidecar(p)}
        return sorted(p for p in found if p not in keep and p.is_file())

    def shared(self) -> set[Path]:
        """The files of :meth:`files` whose names carry no template (the native sphere and
        maps, sidecars included): every template's outputs of this hemisphere share them."""
        native = [self.native_sphere, *(self.native_feature(f) for f in self.channels)]
        return {*native, *(sidecar(p) for p in native)}


_METRICS_NAME = re.compile(r"^sub-([A-Za-z0-9]+)(?:_ses-([A-Za-z0-9]+))?_hemi-([LR])_space-([A-Za-z0-9]+)"
                           rf"_desc-{DESC}_metrics\.json$")


def parse_metrics_name(name: str) -> tuple[str, str | None, str, str] | None:
    """``(subject, session or None, hemi, space)`` of a metrics file name, or None."""
    m = _METRICS_NAME.match(name)
    return None if m is None else (m.group(1), m.group(2), m.group(3), m.group(4))


def _is_dir(entry: os.DirEntry) -> bool:
    """Whether a folder entry is a folder (links followed); False for one that cannot be told (a
    link to itself, ELOOP): ``DirEntry.is_dir`` raises there, which cost the whole listing."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _metrics_in(subject_dir: str) -> list[str]:
    """The metrics files in ``sub-X/anat`` and ``sub-X/ses-Y/anat`` (:func:`anat_dir`: where
    they are written) whose names are ours for that folder's subject and session. Any other name
    ending in ``_desc-geomorph_metrics.json`` is not a result: a backup (``old_sub-01_...``) gave
    its hemisphere a second row, macOS's ``._sub-01_...`` resource file a FAILED line (rerunning
    the participant does not remove it), and ``sub-02_...`` copied into ``sub-01/anat`` sub-02's rows twice."""
    suffix = f"_desc-{DESC}_metrics.json"
    subject = os.path.basename(subject_dir)[len("sub-"):]
    anats: list[tuple[str | None, str]] = [(None, os.path.join(subject_dir, "anat"))]
    try:
        with os.scandir(subject_dir) as entries:
            anats += [(e.name[len("ses-"):], os.path.join(e.path, "anat")) for e in entries
                      if e.name.startswith("ses-") and _is_dir(e)]
    except OSError:
        return []
    out = []
    for session, anat in anats:
        try:
            with os.scandir(anat) as entries:
                out += [e.path for e in entries if e.name.endswith(suffix)
                        and (parse_metrics_name(e.name) or ())[:2] == (subject, session)]
        except OSError:  # no such folder (or not a folder)
            continue
    return out


def metrics_files(output_dir: str | Path, subject: str | None = None) -> list[Path]:
    """Every metrics file under ``output_dir`` (of one subject when given), sorted (:func:`label_key`:
    ``sub-2`` before ``sub-10``): the
    ``*_desc-geomorph_metrics.json`` of every ``sub-*[/ses-*]/anat`` folder (links followed),
    found with ``os.scandir``. (A ``sub-*/**/anat`` glob listed every folder of every subject,
    figures included, as Paths: 1.4 s of each listing at 10,000 subjects, on 2 busy cores.)"""
    root = Path(output_dir)
    if subject:
        tops = [str(root / f"sub-{subject}")]
    else:
        try:
            with os.scandir(root) as entries:
                tops = [e.path for e in entries if e.name.startswith("sub-") and _is_dir(e)]
        except OSError:
            tops = []
    return [Path(p) for p in sorted((p for top in tops for p in _metrics_in(top)), key=label_key)]


_SUBJECT_ENTRY = re.compile(r"^sub-[A-Za-z0-9]+$")


def subject_entries_not_folders(output_dir: str | Path) -> list[Path]:
    """The ``sub-<label>`` entries of ``output_dir`` that are no folder, sorted: a file, a link to a
    folder that is gone or to itself. :func:`metrics_files` lists no outputs there, so a caller
    that only listed them left such a subject out of the group table without a word."""
    try:
        with os.scandir(output_dir) as entries:
            return sorted(Path(e.path) for e in entries if _SUBJECT_ENTRY.match(e.name) and not _is_dir(e))
    except OSError:
        return []


def report_name(subject: str, session: str | None = None) -> str:
    """``sub-X.html`` (all sessions) or ``sub-X_ses-Y.html`` (one session)."""
    return entities(subject, session) + ".html"


def figures_dir(output_dir: str | Path, subject: str) -> Path:
    """``OUTPUT_DIR/sub-X/figures``: the participant report's figures."""
    return Path(output_dir) / f"sub-{subject}" / "figures"


#: figure names under :func:`figures_dir`
FIGURES = {"registration": "{entities}_hemi-{hemi}_space-{space}_desc-registration{Feature}_sphere.png",
           "distortion": "{entities}_hemi-{hemi}_space-{space}_desc-distortion_sphere.png",
           "surface": "{entities}_hemi-{hemi}_space-{space}_desc-registration{Feature}_{kind}.png"}

GROUP_TSV = f"group_desc-{DESC}_metrics.tsv"
#: the group table's data dictionary (BIDS: a JSON beside a TSV describing its columns, with units)
GROUP_JSON = f"group_desc-{DESC}_metrics.json"
GROUP_HTML = "group.html"
GROUP_FIGURE = "figures/group_desc-distributions_metrics.png"
DATASET_DESCRIPTION = "dataset_description.json"


def dataset_link(folder: str | Path, output_dir: str | Path, bids_dir: str | Path) -> str:
    """``dataset_description.json``'s ``DatasetLinks`` value of ``folder``: relative to the output folder
    (BIDS: a link without a scheme is resolved from the derivative's root) when both lie in the BIDS folder
    (``bids/derivatives/geomorph``'s ``raw`` is ``../..``: it moves with its dataset, and names no user's
    folder), else ``folder``'s absolute path."""
    target, out, root = (Path(p).absolute() for p in (folder, output_dir, bids_dir))
    if all(p == root or root in p.parents for p in (target, out)):
        return Path(os.path.relpath(target, out)).as_posix()
    return str(target)


def linked_folder(output_dir: str | Path, link: str) -> Path:
    """The folder a ``DatasetLinks`` value written by :func:`dataset_link` names, read from ``output_dir``."""
    path = Path(link)
    return path if path.is_absolute() else Path(os.path.normpath(Path(output_dir).absolute() / path))
LOGS = "logs"
CITATION = f"{LOGS}/CITATION.md"
#: the derivative dataset's README (the BIDS validator warns README_FILE_MISSING without one)
README = "README.md"
#: the file the BIDS validator reads for names it must not check (gitignore syntax)
BIDSIGNORE = ".bidsignore"
#: Nipype crash files of every run, relative to the output folder
CRASH_FILES = f"{LOGS}/crash-*/crash-*.txt"


def crash_dir(output_dir: str | Path, run_id: str) -> Path:
    """``OUTPUT_DIR/logs/crash-<run>``: where one run's Nipype crash files go."""
    return Path(output_dir) / LOGS / f"crash-{run_id}"


def hemisphere_outputs(output_dir: str | Path, subject: str, session: str | None, hemi: str, space: str,
                       density: str, features: Sequence[str] = (), channels: Sequence[str] = (),
                       fmriprep: bool = False) -> HemisphereOutputs:
    """:class:`HemisphereOutputs` of one hemisphere."""
    return HemisphereOutputs(Path(output_dir), subject, session, hemi, space, density, tuple(features),
                             tuple(channels), fmriprep)


def cifti_file(output_dir: str | Path, subject: str, session: str | None, space: str, density: str) -> Path:
    """``OUTPUT_DIR/sub-X/[ses-Y/]anat/<ent>_space-T_den-D_desc-geomorph_features.dscalar.nii``
    (``--cifti-output``; its sidecar: :func:`sidecar`)."""
    return anat_dir(output_dir, subject, session) / CIFTI_FEATURES.name(entities(subject, session), None, space,
                                                                        density)


def bidsignore_lines() -> tuple[str, ...]:
    """The ``.bidsignore`` lines for what geomorph-bids writes that BIDS has no rule for: every
    per-hemisphere kind (:data:`HEMISPHERE_DERIVATIVES`, :data:`FMRIPREP_SPHERES`) and the dscalar,
    each with its JSON sidecar, as name patterns without and with a session (``sub-*_hemi-*_...``,
    ``sub-*_ses-*_hemi-*_...``); the reports, figures, logs,
    group table and population templates, anchored at the root. ``dataset_description.json`` and
    ``README.md`` stay checked."""
    kinds = [*HEMISPHERE_DERIVATIVES.values(), *(k for by in FMRIPREP_SPHERES.values() for k in by.values())]
    names: list[str] = []
    # one line with ses- and one without: the validator (3.0.2, the npm "ignore" package) does not let
    # the "*" of "sub-*" take "01_ses-1" in a line with more "*"s after it ("sub-*_hemi-*_..." left
    # every output of a multi-session run NOT_INCLUDED)
    for ent in ("sub-*", "sub-*_ses-*"):
        for kind in [*kinds, CIFTI_FEATURES]:
            hemi = None if kind is CIFTI_FEATURES else "*"
            for feature in (FEATURE_SUFFIX if kind.suffix is None else (None,)):
                name = kind.name(ent, hemi, "*", "*", feature)
                names += [name, *([sidecar(name).name] if kind.sidecar else [])]
    # folders without a trailing slash: the validator (3.0) checks a folder's own path too, which
    # "figures/" leaves NOT_INCLUDED
    reports = ["/" + report_name("*"), "/" + GROUP_HTML, "/" + GROUP_TSV, "/" + GROUP_JSON,
               f"/{Path(GROUP_FIGURE).parent.as_posix()}",
               "/sub-*/figures", f"/{LOGS}", "/tpl-*"]
    return tuple(dict.fromkeys([*names, *reports]))

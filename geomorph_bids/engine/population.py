"""Population-average templates (``--build-template N``), in plain Python (no Nipype).

:func:`build_template` starts from a template (bundled or custom), then N times: registers
every subject's features to the current template with :func:`~geomorph_bids.engine.register.register`,
resamples the features onto the ico-6 template grid through each registration, and averages
them (the base template's zeros, the medial wall, stay zero). Each round records the mean
distance ``1 - CC`` of the registered subjects to the template they were registered to.
:func:`write_template` writes the result as a ``tpl-<label>`` folder that
:func:`geomorph_bids.io.custom_template.load_custom_template` (and so ``--template``) reads.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io.template_sources import source_record
from ..io.templates import Template

__all__ = ["PopulationSubject", "PopulationTemplate", "build_template", "write_template", "average_maps",
           "base_conflict"]

Mesh = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True, eq=False)
class PopulationSubject:
    """One subject's hemisphere: its native sphere (or a path) and features (arrays or paths)."""

    name: str
    sphere: Mesh | str | Path
    features: Mapping[str, np.ndarray | str | Path]


@dataclass(eq=False)
class PopulationTemplate:
    """Result of :func:`build_template`.

    Attributes
    ----------
    template : the final average as a :class:`Template` (name = ``label``).
    base : name of the template the rounds started from (its space is the result's space).
    history : one dict per round: ``iteration``, ``template`` (what was registered to),
        ``mean_distance`` (mean over subjects of 1 - mean CC over features), ``distances``
        (per subject), ``cc`` (per subject and feature), ``seconds``.
    n_subjects : subjects averaged (failed registrations are listed in ``failures``).
    folder : the written ``tpl-<label>`` folder, when ``out_dir`` was given.
    base_provenance : where the starting template's maps came from (``Template.provenance``:
        source kind, folder, vertex count, SHA-256), recorded in ``template_description.json``.
    """

    template: Template
    base: str
    history: list[dict[str, Any]] = field(default_factory=list)
    n_subjects: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    folder: Path | None = None
    base_provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def participants(self) -> list[str]:
        """The names of the subjects averaged into the result (those the last round registered)."""
        return sorted(self.history[-1]["cc"]) if self.history else []

    @property
    def mean_distances(self) -> list[float]:
        return [float(h["mean_distance"]) for h in self.history]


def average_maps(maps: Sequence[np.ndarray], mask: np.ndarray) -> np.ndarray:
    """Mean of per-subject maps on one grid, 0 outside ``mask`` (NaN values ignored)."""
    stack = np.stack([np.asarray(m, dtype=np.float64) for m in maps])
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(np.where(np.isfinite(stack), stack, np.nan), axis=0)
    return np.where(mask & np.isfinite(mean), mean, 0.0)


def _label_ok(label: str) -> str:
    from ..derivatives import check_template_label

    return check_template_label(label)


def build_template(subjects: Sequence[PopulationSubject], iterations: int, template: str | Path | Template = "fsLR",
                   hemi: str = "L", features: Sequence[str] = ("sulc",), label: str = "geomorphPopulation",
                   out_dir: str | Path | None = None, *, model: str | Path | None = None, device: str = "cpu",
                   optimise: Any = True, rigid_only: bool = False, base: str | None = None,
                   progress: Callable[[str], None] | None = None) -> PopulationTemplate:
    """Build a population-average template of one hemisphere by iterative registration.

    Parameters
    ----------
    subjects : the cohort (at least 2; a subject whose registration fails is left out of
        the average and listed in ``failures``).
    iterations : number of register-then-average rounds (N >= 1).
    template : starting template: bundled name, custom template folder, or a Template.
    hemi, features : hemisphere and the features registered and averaged (all must be in
        the starting template and in every subject).
    label : alphanumeric identifier (``tpl-<label>``).
    out_dir : when given, the result is written to ``out_dir/tpl-<label>`` (see :func:`write_template`).
    model, device, optimise, rigid_only : passed to :func:`register` (no network by default:
        pair-wise optimisation of the GeoMorph warp; ``optimise`` may be an ``OptimiseConfig``).
    base : the standard template (fsLR or fsaverage) whose coordinates the starting template's maps
        are in, recorded as the result's ``BaseTemplate``; default: the starting template's own
        (the base of a custom template folder given by name or path; a :class:`Template`'s name).
        A template built from a population template lies in that one's base space.
    progress : optional callback receiving one line per subject and round.

    Returns
    -------
    PopulationTemplate; ``history[k]["mean_distance"]`` is the mean 1 - CC of the subjects
    registered in round k to the round's template (round 0: the starting template).
    """
    from ..io.template_ref import resolve_template_ref
    from .register import register

    from ..io.validate import hemi_code

    _label_ok(label)
    # decided once here, as register() decides them: 'left' failed in the template's lookup
    # (IndexError: tuple index out of range), features="sulc" was read as the maps s, u, l, c
    hemi = hemi_code(hemi)
    features = (features,) if isinstance(features, str) else tuple(features)
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)):
        raise TypeError(f"iterations must be a whole number >= 1, got {iterations!r}")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    if len(subjects) < 2:
        raise ValueError(f"a population template needs at least 2 subjects, got {len(subjects)}")
    for subj in subjects:  # a map of another name failed every round as "KeyError: 'sulc'", naming no subject
        given = getattr(subj, "features", None)
        lacking = [f for f in features if not isinstance(given, Mapping) or f not in given]
        if lacking:
            has = ", ".join(map(repr, given)) if isinstance(given, Mapping) else repr(given)
            raise ValueError(f"subject {getattr(subj, 'name', '?')!s}: no map {', '.join(map(repr, lacking))} among "
                             f"its features ({has}); every subject needs the maps features= names: "
                             f"{', '.join(features)}")
    names = [str(getattr(s, "name", "")) for s in subjects]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # results are kept by name: a second subject of one name would be averaged in but not counted
        raise ValueError(f"subject names must be unique (they name the subjects in the history, failures and "
                         f"template_description.json): {', '.join(repr(n) for n in twice)} given "
                         f"{', '.join(str(names.count(n)) for n in twice)} times; name each subject, e.g. 'sub-01'")
    _check_units(subjects, features)
    if isinstance(template, Template):
        space = base or template.name
        base = template
    else:
        ref = resolve_template_ref(template)
        space = base or ref.base  # a custom template's maps lie in its base template's coordinates
        base = ref.load(hemi, features)
    mask = np.all(np.stack([np.asarray(base.features[f]) != 0 for f in features]), axis=0)
    current = base
    history: list[dict[str, Any]] = []
    failures: dict[str, str] = {}
    n_used = 0
    for it in range(iterations):
        t0 = time.perf_counter()
        resampled: dict[str, list[np.ndarray]] = {f: [] for f in features}
        cc: dict[str, dict[str, float]] = {}
        for subj in subjects:
            try:
                feats = {f: subj.features[f] for f in features}
                reg = register(subj.sphere, feats, template=current, hemi=hemi, model=model, device=device,
                               rigid_only=rigid_only, optimise=optimise)
            except (KeyError, ValueError, OSError) as exc:  # InputError is a ValueError
                failures[subj.name] = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
                continue
            values = _feature_arrays(subj, features, len(reg.sphere))
            for f in features:
                resampled[f].append(np.asarray(reg.resample(values[f], "ico6"), dtype=np.float64).reshape(-1))
            cc[subj.name] = {f: float(reg.metrics.get(f"cc_{f}_after", np.nan)) for f in features}
            if progress is not None:
                progress(f"round {it + 1}/{iterations} {subj.name}: " +
                         ", ".join(f"CC {f} {cc[subj.name][f]:.3f}" for f in features))
        if len(cc) < 2:
            raise ValueError(f"round {it + 1}: fewer than 2 subjects registered ({'; '.join(failures.values())})")
        n_used = len(cc)
        distances = {name: float(1.0 - np.nanmean(list(v.values()))) for name, v in cc.items()}
        history.append({"iteration": it + 1, "template": current.name, "mean_distance": float(np.mean(list(
            distances.values()))), "distances": distances, "cc": cc, "seconds": time.perf_counter() - t0})
        current = Template(name=label, hemi=hemi, vertices=base.vertices, faces=base.faces,
                           features={f: average_maps(resampled[f], mask) for f in features},
                           from_fsaverage=base.from_fsaverage)
    result = PopulationTemplate(template=current, base=space, history=history, n_subjects=n_used,
                                failures=failures, base_provenance=dict(base.provenance))
    if out_dir is not None:
        result.folder = write_template(out_dir, result)
    return result


#: a subject's map whose spread (SD) is this many times the other subjects' median (or this many times
#: smaller) is taken for one in other units and refused: maps are averaged as given, so it would weigh in
#: that many times over (cm for mm: 10x; real cohorts' sulc SDs differ by less than 2x)
UNITS_RATIO = 4.0


def _check_units(subjects: Sequence[PopulationSubject], features: Sequence[str]) -> None:
    """ValueError naming each subject whose map of a feature has a spread (SD over its finite values)
    :data:`UNITS_RATIO` times the other subjects' median or more, or as many times less: in other units
    (cm for mm, a map scaled by 1e3), it would dominate the average, or vanish in it, in silence. A
    constant or unreadable map is left to the registration, which says what is wrong with it."""
    from ..io.surfaces import read_feature

    for f in features:
        spread: dict[str, float] = {}
        for subj in subjects:
            v = subj.features[f]
            try:
                arr = np.asarray(read_feature(v) if isinstance(v, (str, Path)) else v, dtype=np.float64).reshape(-1)
            except (ValueError, TypeError, OSError):
                continue
            finite = arr[np.isfinite(arr)]
            sd = float(np.std(finite)) if finite.size else 0.0
            if np.isfinite(sd) and sd > 0:
                spread[str(subj.name)] = sd
        if len(spread) < 2:
            continue
        odd = []
        for name, sd in spread.items():
            others = float(np.median([x for k, x in spread.items() if k != name]))
            ratio = sd / others
            if ratio >= UNITS_RATIO or ratio <= 1 / UNITS_RATIO:
                odd.append(f"{name} (SD {sd:.3g}, {ratio:.3g}x the others' median {others:.3g})")
        if odd:
            raise ValueError(f"{f} maps in other units? {'; '.join(odd)}: build_template averages the maps as given, "
                             f"so such a map dominates the average (or vanishes in it); give every subject's {f} in "
                             "the same units (FreeSurfer's sulc: mm) or leave the subject out")


def _feature_arrays(subj: PopulationSubject, features: Sequence[str], n: int) -> dict[str, np.ndarray]:
    from ..io.surfaces import read_feature

    out = {}
    for f in features:
        v = subj.features[f]
        arr = read_feature(v, n_vertices=n) if isinstance(v, (str, Path)) else v
        out[f] = np.asarray(arr, dtype=np.float64).reshape(-1)
    return out


def base_conflict(out_dir: str | Path, label: str, base: str, hemis: Sequence[str]) -> str | None:
    """Why building ``hemis`` on ``base`` into ``out_dir/tpl-<label>`` would leave a folder whose
    hemispheres lie in two spaces (another hemisphere, not rebuilt, was built on another base
    template; its maps would be read in the new base's coordinates), or None."""
    from ..io.custom_template import DESCRIPTION, custom_template_folder

    path = custom_template_folder(out_dir, label) / DESCRIPTION
    try:
        doc = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return None  # a damaged description is rewritten
    hemispheres = doc.get("Hemispheres") if isinstance(doc, dict) else None
    if not isinstance(hemispheres, dict):
        return None
    for hemi, entry in sorted(hemispheres.items()):
        kept = entry.get("BaseTemplate", doc.get("BaseTemplate")) if isinstance(entry, dict) else None
        if hemi not in hemis and kept and kept != base:
            return (f"{path.parent} holds hemi-{hemi} built on {kept}; building hemi-{'/'.join(hemis)} on {base} "
                    f"there would leave one template in two spaces: rebuild every hemisphere (--hemi "
                    f"{' '.join(sorted({*hemis, hemi}))}), use --template {kept}, or choose another --template-label")
    return None


def write_template(out_dir: str | Path, result: PopulationTemplate) -> Path:
    """Write ``out_dir/tpl-<label>/``: one ico-6 map per feature of the hemisphere
    (``tpl-<label>_hemi-H_den-ico6_<feature>.shape.gii``), the ico-6 sphere they are on, in the
    base template's coordinates (``tpl-<label>_hemi-H_den-ico6_sphere.surf.gii``: for Workbench),
    and ``template_description.json`` (merged with an existing one, so both hemispheres can share
    the folder; per hemisphere: base template, features, the subjects averaged (``Subjects``: how
    many, ``Participants``: their names), iterations, mean distances, failures). A rebuilt
    hemisphere is taken out of the description before its maps are replaced and listed again after:
    a build stopped in between leaves it unlisted, which :func:`~geomorph_bids.io.custom_template.load_custom_template`
    refuses."""
    from .. import __version__
    from ..io.atomic import atomic_write_text
    from ..io.custom_template import DESCRIPTION, custom_feature_file, custom_sphere_file, custom_template_folder
    from ..io.gifti import write_metric, write_surface

    tpl = result.template
    label = _label_ok(tpl.name)
    folder = custom_template_folder(out_dir, label)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / DESCRIPTION
    try:
        doc = json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        doc = {}
    hemis = doc.get("Hemispheres", {}) if isinstance(doc.get("Hemispheres"), dict) else {}
    if tpl.hemi in hemis:  # a rebuild: the hemisphere is unlisted until all its new maps are written, so
        # that a build stopped half-way (a kill, a full disk) never leaves new maps under the earlier description
        doc["Hemispheres"] = {h: v for h, v in hemis.items() if h != tpl.hemi}
        atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")
    hemis = dict(doc.get("Hemispheres", hemis))
    write_surface(custom_sphere_file(folder, label, tpl.hemi), tpl.vertices, tpl.faces, hemi=tpl.hemi)
    written = set()
    for f, values in tpl.features.items():
        written.add(custom_feature_file(folder, label, tpl.hemi, f))
        write_metric(custom_feature_file(folder, label, tpl.hemi, f), np.asarray(values, dtype=np.float32),
                     hemi=tpl.hemi, names=[f])
    # a map of an earlier build that this one did not average (--features sulc curv, then sulc) is
    # another population's: it goes, so that the folder holds what its description lists
    for stale in folder.glob(custom_feature_file(folder, label, tpl.hemi, "*").name):
        if stale not in written:
            stale.unlink()
    hemis[tpl.hemi] = {"BaseTemplate": result.base, "Features": sorted(tpl.features), "Subjects": result.n_subjects,
                       "Participants": result.participants,
                       "Iterations": len(result.history),
                       "MeanDistance": [round(d, 6) for d in result.mean_distances],
                       "Failures": result.failures}
    if result.base_provenance:
        hemis[tpl.hemi]["BaseTemplateSource"] = source_record(result.base_provenance)
    doc.update({"Name": f"geomorph-bids population average ({label})", "Identifier": label,
                "BaseTemplate": result.base, "Density": "ico6 (40962 vertices, level-6 icosphere in the "
                                                      f"{result.base} sphere's coordinates)",
                "Hemispheres": hemis,
                "GeneratedBy": [{"Name": "geomorph-bids", "Version": __version__,
                                 "Description": "iterative registration to the current average"}],
                "Description": "Average of the subjects' features after registration, refined over the "
                               "listed iterations; MeanDistance: mean 1 - CC to the template of each round."})
    atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return folder

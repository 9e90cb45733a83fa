"""Which subjects and sessions a participant run processes: ``--participant-label``,
``--session-label`` and ``--bids-filter-file`` applied to what discovery finds."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..derivatives import label_key
from ..errors import InputError, closest_name
from ..io.limits import read_json_bounded
from .failures import Failure
from .paths import InputFolders
from .preflight import name_max, path_max, work_dir_too_deep
from .messages import say

if TYPE_CHECKING:
    from ..workflows.config import RunConfig

__all__ = ["read_filter", "collect_jobs", "inputs_line", "ANY", "NO_SESSION", "anatomical_sessions", "refuse_names_too_long", "refuse_case_twins", "SubjectWarning", "listed", "ANATOMICAL_QUERIES",
           "OTHER_QUERIES"]


class SubjectWarning(UserWarning):
    """A subject folder that is found but cannot be processed as it is (e.g. its name)."""

#: subjects listed at most in a "not found; available: ..." line
_LISTED = 20


#: the entities a BIDS filter file selects with (labels, with or without prefix)
_ENTITIES = ("subject", "session")
#: a filter's ``"*"`` (pybids' ``Query.ANY``): any label
ANY = "*"
#: a filter's session ``null`` (pybids' ``Query.NONE``) in :func:`read_filter`'s session list: the
#: anatomy that has no session (shared by a subject's sessions); never a label (labels are alphanumeric)
NO_SESSION = ""
#: fMRIPrep's (niworkflows') queries of anatomical images -> the suffix each selects: the surfaces
#: are made from these, so their subject and session select the inputs
ANATOMICAL_QUERIES = {"t1w": "T1w", "t2w": "T2w", "flair": "FLAIR", "roi": "roi"}
#: fMRIPrep's other queries (functional, diffusion, field maps, PET, ASL): no anatomy, ignored
OTHER_QUERIES = ("bold", "sbref", "fmap", "dwi", "pet", "asl")
#: entities of an anatomical query that only restate what the query selects (niworkflows'
#: DEFAULT_BIDS_QUERIES): ignored; any other value of them selects images we cannot tell apart
_RESTATED = {"datatype": ("anat",), "part": ("mag", None), "extension": (".nii", ".nii.gz", "nii", "nii.gz")}


def read_filter(path: Path | None, notes: list[str] | None = None) -> dict[str, list[str]]:
    """--bids-filter-file -> {"subject": [...], "session": [...]} (labels without prefixes).

    The flat form gives ``subject``/``session`` at the top; fMRIPrep's nested form gives them in
    queries (``{"t1w": {"session": "1"}, "bold": {"task": "rest"}}``): the anatomical queries
    (:data:`ANATOMICAL_QUERIES`) select, and must agree with each other; fMRIPrep's other queries
    are ignored (``notes`` gets one line naming them). In an anatomical query, ``datatype``,
    ``suffix``, ``part`` and ``extension`` that restate the query are ignored. Anything else is an
    InputError naming the file.

    fMRIPrep's special values (pybids' ``Query``): ``"*"`` (any value) selects nothing out, so the
    entity is left out of the result; a session of ``null`` (no session) is :data:`NO_SESSION` in
    the session list: the anatomy shared by the sessions (``sub-X/anat``, a FreeSurfer ``sub-X``)."""
    if path is None:
        return {}
    try:
        doc = read_json_bounded(path, what="BIDS filter file")
    except InputError as exc:
        raise InputError(f"cannot read the BIDS filter file: {exc.reason}", path=path) from None
    if not isinstance(doc, dict):
        raise InputError("the BIDS filter file must hold a JSON object", path=path)
    given: dict[str, tuple[str, list[str]]] = {}  # entity -> (where it was given, labels)
    ignored = []
    for key, value in doc.items():
        if key in ANATOMICAL_QUERIES and isinstance(value, dict):
            for entity, labels in _query_entities(key, value, path).items():
                _agree(given, entity, f"query {key!r}", labels, path)
        elif key in OTHER_QUERIES and isinstance(value, dict):
            ignored.append(key)
        elif key in _ENTITIES:
            _agree(given, key, "the top level", _labels(key, value, path), path)
        elif isinstance(value, dict):
            raise InputError(f"unknown query {key!r} in the BIDS filter file{_did_you_mean(key)} (fMRIPrep's "
                             f"anatomical queries {', '.join(ANATOMICAL_QUERIES)} select; "
                             f"{', '.join(OTHER_QUERIES)} are ignored)", path=path)
        else:
            raise InputError(f"unsupported entity {key!r} in the BIDS filter file (supported: "
                             f"{', '.join(_ENTITIES)}, or fMRIPrep's queries {{\"t1w\": {{...}}}})", path=path)
    if ignored and notes is not None:
        notes.append(f"{path}: the BIDS filter file's {', '.join(ignored)} quer{'ies' if len(ignored) > 1 else 'y'} "
                     f"ignored (the surfaces are selected by fMRIPrep's anatomical queries only: "
                     f"{', '.join(ANATOMICAL_QUERIES)})")
    return {entity: labels for entity, (_, labels) in given.items() if ANY not in labels}


def _did_you_mean(key: str) -> str:
    """``: did you mean 't1w'?`` for a query named in another case (``T1w``), else ``""``."""
    meant = closest_name(key, (*ANATOMICAL_QUERIES, *OTHER_QUERIES), cutoff=1.0)
    return f": did you mean {meant!r}?" if meant else ""


def _query_entities(query: str, entities: dict, path: Path) -> dict[str, list[str]]:
    """The subject and session labels of anatomical query ``query``; its ``datatype``, ``suffix``,
    ``part`` and ``extension`` must only restate the query (:data:`_RESTATED`)."""
    out = {}
    restated = {**_RESTATED, "suffix": (ANATOMICAL_QUERIES[query],)}
    for entity, value in entities.items():
        if entity in _ENTITIES:
            out[entity] = _labels(entity, value, path, f"query {query!r}: ")
        elif entity in restated and all(v in restated[entity] for v in (value if isinstance(value, list) else [value])):
            continue
        else:
            why = (f"{entity} {json.dumps(value)} selects other images than the query's"
                   if entity in restated else f"unsupported entity {entity!r}")
            raise InputError(f"query {query!r} of the BIDS filter file: {why} (geomorph-bids selects the surfaces "
                             f"by {', '.join(_ENTITIES)}; datatype, suffix, part and extension may restate the query)",
                             path=path)
    return out


def _agree(given: dict[str, tuple[str, list[str]]], entity: str, where: str, labels: list[str], path: Path) -> None:
    """Record ``entity``'s ``labels`` given in ``where``; refuse other labels given elsewhere."""
    if entity in given and set(given[entity][1]) != set(labels):
        first, before = given[entity]
        raise InputError(f"the BIDS filter file selects {entity} {', '.join(before)} in {first} and "
                         f"{', '.join(labels)} in {where}: the surfaces are made from one anatomy, give one "
                         f"{entity} selection", path=path)
    given.setdefault(entity, (where, labels))


def _labels(entity: str, value: Any, path: Path, where: str = "") -> list[str]:
    """A filter's ``subject``/``session`` value (a label or a list of labels) -> labels without prefix."""
    from ..io.discover import normalise_label

    values = value if isinstance(value, list) else [value]
    if entity == "session" and values and None in values:  # pybids' Query.NONE, as fMRIPrep reads it
        values = [v for v in values if v is not None]
        return [NO_SESSION, *_labels(entity, values, path, where)] if values else [NO_SESSION]
    if values and ANY in values:  # pybids' Query.ANY: any label
        return [ANY]
    bad = [v for v in values if not isinstance(v, (str, int)) or isinstance(v, bool)]
    if bad or not values:
        raise InputError(f"{where}{entity!r} in the BIDS filter file must be a label or a list of labels"
                         + (" (or \"*\": any)" if entity == "subject" else " (or \"*\": any, null: no session)")
                         + f", got {json.dumps(value)}", path=path)
    try:
        return [normalise_label(str(v), "sub" if entity == "subject" else "ses") for v in values]
    except InputError as exc:
        raise InputError(f"{where}{entity!r} in the BIDS filter file: {exc.reason}", path=path) from None


def _sessions_of(subject: str, inputs: InputFolders, anatomical: bool = False,
                 notes: list[str] | None = None) -> list[str]:
    """Session labels with data for a subject (raw BIDS, derivatives, FreeSurfer sub-X_ses-Y),
    BIDS-valid labels only.

    ``anatomical``: a ``sub-X/ses-Y`` folder (of the raw dataset or of derivatives: fMRIPrep writes
    ``ses-Y/func`` there too) counts only with an ``anat`` folder in it; FreeSurfer and HCP
    ``sub-X_ses-Y`` folders always count. A session of functional or diffusion scans alone has no
    surfaces to register: each one left out is said in ``notes``."""
    from ..io.discover import valid_label

    found: set[str] = set()
    raw_only: set[str] = set()
    for root in inputs.roots():
        try:
            folders = {p.name[4:]: p for p in (root / f"sub-{subject}").glob("ses-*") if p.is_dir()}
            found |= {p.name.split("_ses-", 1)[1] for p in root.glob(f"sub-{subject}_ses-*") if p.is_dir()}
        except OSError:
            continue
        if anatomical:
            raw_only |= {s for s, p in folders.items() if not (p / "anat").is_dir()}
            folders = {s: p for s, p in folders.items() if (p / "anat").is_dir()}
        found |= set(folders)
    left = sorted((s for s in raw_only - found if valid_label(s)), key=label_key)
    if left and notes is not None:
        notes.append(f"sub-{subject}: session{'s' if len(left) > 1 else ''} {', '.join(f'ses-{s}' for s in left)} "
                     f"left out: no anat folder in {'their' if len(left) > 1 else 'its'} session folders of the "
                     f"dataset or the derivatives (scans without anatomy: no surfaces to register)")
    return sorted((s for s in found if valid_label(s)), key=label_key)  # as the group table: ses-2 before ses-10


def anatomical_sessions(subjects: Sequence[str], inputs: InputFolders) -> dict[str, list[str]]:
    """``subject -> session labels`` that have anatomy in the inputs (a ``sub-X/ses-Y/anat`` folder
    of the dataset or a derivatives folder; FreeSurfer/HCP ``sub-X_ses-Y`` folders), as
    :func:`_sessions_of` with ``anatomical`` finds them, for many subjects: each input folder is
    listed once (not once per subject: a cohort's FreeSurfer folder holds every session's run)."""
    from ..io.discover import valid_label

    wanted = set(subjects)
    found: dict[str, set[str]] = {s: set() for s in subjects}
    pattern = re.compile(r"sub-([A-Za-z0-9]+)_ses-([A-Za-z0-9]+)")
    for root in inputs.roots():
        try:
            with os.scandir(root) as entries:
                names = [e.name for e in entries if e.is_dir()]
        except OSError:
            continue
        for name in names:
            m = pattern.fullmatch(name)
            if m and m.group(1) in wanted:
                found[m.group(1)].add(m.group(2))
        for subject in wanted:
            try:
                found[subject] |= {p.parent.name[4:] for p in (root / f"sub-{subject}").glob("ses-*/anat") if p.is_dir()}
            except OSError:
                continue
    return {s: sorted(x for x in v if valid_label(x)) for s, v in found.items()}


def _base_time_points(folder: Path) -> list[str] | None:
    """The time points ``recon-all -base`` recorded in ``folder/scripts/base-tps`` (its first 64 KiB),
    or None when ``folder`` is no longitudinal base (or the file cannot be read)."""
    try:
        with open(folder / "scripts" / "base-tps", errors="replace") as f:
            return f.read(65536).split()
    except OSError:
        return None


def _longitudinal(folder: Path) -> str | None:
    """What a FreeSurfer longitudinal stream's folder is and what is registered instead, or None
    for another folder. ``X.long.B`` (``recon-all -long X B``) is time point X's longitudinal run: X,
    the cross-sectional run, is registered when it is a subject of its own (said, with how to
    register the longitudinal surfaces instead); ``B`` (``recon-all -base``, ``scripts/base-tps``
    naming its time points) is the within-subject template, no session of its own. Before, both
    were offered a link under a new subject label (``04ses1longsub04base``), which would have
    registered one brain's session as a subject of its own."""
    from ..io.discover import is_freesurfer_subject, readable_freesurfer_name

    tps = _base_time_points(folder)
    runs = [] if ".long." in folder.name else sorted(p.name.split(".long.", 1)[0]
                                                      for p in folder.parent.glob(f"*.long.{folder.name}"))
    if ".long." not in folder.name and (tps is not None or runs):
        names = ", ".join(tps or runs) or "its time points"
        return (f"FreeSurfer subject folder {folder} is not processed: it is the base of a longitudinal run "
                f"(recon-all -base: the within-subject template of {names}), not a session of its own")
    cross, dot, base = folder.name.partition(".long.")
    if not dot:
        return None
    head = (f"FreeSurfer subject folder {folder} is not processed: it is the longitudinal run of time point "
            f"{cross} (recon-all -long, base {base})")
    if not readable_freesurfer_name(cross):
        return None
    link = (f"mkdir -p LONGDIR && ln -s {shlex.quote(str(folder))} LONGDIR/{shlex.quote(cross)}, then "
            f"--fs-subjects-dir LONGDIR")
    if is_freesurfer_subject(folder.parent / cross):
        return (f"{head}; {cross} is registered from its cross-sectional run {folder.parent / cross} instead. To "
                f"register the longitudinal surfaces in its place: {link}")
    return f"{head}; {folder.parent / cross} is no FreeSurfer subject, so nothing of it is registered: {link}"


def listed(names: Sequence[str]) -> str:
    """``01, 02, ...`` (the first few of a long list, and how many in all)."""
    return ", ".join(names[:_LISTED]) + (f", ... ({len(names)} in all)" if len(names) > _LISTED else "")


def _input_root(h) -> Path:
    """The folder holding the subject folder a hemisphere's inputs (a ``HemiInputs``) were read from:
    ``ROOT/sub-X[/ses-Y]/anat/...`` (sMRIPrep/fMRIPrep), ``ROOT/S/surf/lh.sphere`` (FreeSurfer),
    ``ROOT/S/MNINonLinear/Native/...`` (HCP); the dHCP's ``anat/Native/`` is its ``anat``."""
    sphere = Path(h.sphere)
    if h.source == "freesurfer":
        return sphere.parents[2]
    if h.source == "hcp":
        return sphere.parents[3]
    anat = sphere.parent.parent if sphere.parent.name == "Native" else sphere.parent
    return anat.parents[2] if anat.parent.name.startswith("ses-") else anat.parents[1]


def inputs_line(jobs: Sequence) -> str:
    """``inputs: sMRIPrep/fMRIPrep layout in DIR: sub-01, sub-02; FreeSurfer layout in DIR: sub-03,
    sub-04 ses-1`` : where each subject/session's hemispheres are read from, one group per layout and
    folder, in the order the layouts are read (a subject whose hemispheres come from two inputs is in
    both, with its hemisphere); the first few names of a long group, and how many in all. Empty when
    no job has a hemisphere to register (every input refused)."""
    from ..io.discover import LAYOUT_NAMES, SOURCES

    groups: dict[tuple[str, Path], list[str]] = {}
    for job in jobs:
        where: dict[tuple[str, Path], list[str]] = {}
        for hemi, h in sorted(job.inputs.hemis.items()):
            where.setdefault((h.source, _input_root(h)), []).append(hemi)
        label = f"sub-{job.subject}" + (f" ses-{job.session}" if job.session else "")
        for key, hemis in where.items():
            groups.setdefault(key, []).append(label + (f" hemi-{hemis[0]}" if len(where) > 1 else ""))
    order = sorted(groups, key=lambda k: (SOURCES.index(k[0]), str(k[1])))
    return "" if not groups else "inputs: " + "; ".join(f"{LAYOUT_NAMES[src]} layout in {root}: {listed(groups[(src, root)])}"
                                  for src, root in order)


def _not_found(known: Sequence[str], what: str = "", label: str | None = None) -> str:
    """``not found; available: 01, 02`` (the first few of a long list), with ``did you mean 01?``
    when ``label`` is a number that one of them spells with leading zeros (``1`` for ``01``)."""
    meant = [k for k in known if label is not None and label.isdigit() and k.isdigit() and k != label
             and int(k) == int(label)]
    hint = f" (did you mean {meant[0]}?)" if meant else ""
    return f"{what}not found{hint}; available: {listed(known) or 'none'}"


def _case_twin(folder: Path) -> Path | None:
    """The subject folder beside ``folder`` whose name is ``folder``'s in lower case (``sub-01`` for
    ``SUB-01``, ``sub-02`` for ``Sub-02``), or None: linking ``folder`` under a label would then make
    two folders of one subject."""
    twin = folder.parent / folder.name.lower()
    return twin if twin.name != folder.name and twin.is_dir() else None


def _trailing_blank(folder: Path, what: str = "subject folder") -> str | None:
    """One line for a subject folder whose name ends in spaces or dots (``'sub-01 '``, ``sub-02.``),
    or None for any other name. Windows drops such endings (Explorer shows ``sub-01``), so the name
    looks right there; a zip made on Windows, or a script's stray space, keeps them on Linux and
    macOS, where the label no longer reads."""
    bare = folder.name.rstrip(" .")
    if bare == folder.name or not bare:
        return None
    ends = "a space" if folder.name.endswith(" ") else "a dot"
    head = (f"{what} {shlex.quote(str(folder))} is not processed: its name ends in {ends} "
            "(which Windows does not show: a folder unzipped from a Windows zip?)")
    twin = folder.parent / bare
    if twin.exists():
        return f"{head}; {bare} is there as well: remove the one that is not wanted"
    return f"{head}; rename it (mv {shlex.quote(str(folder))} {shlex.quote(str(twin))})"


def _not_fetched(path: Path) -> bool:
    """A link to content that is not there (an annexed file not fetched) or a git-annex pointer:
    what the run reads then depends on what was fetched, so it is an error, never left out."""
    from ..io.limits import annex_key

    return (path.is_symlink() and not path.exists()) or annex_key(path) is not None


def _checked(h, features: Sequence[str], forbidden: Sequence[Path]):
    """``h`` with the content hash of the files its workflow reads (``digest``), after checking
    each is a readable regular file of a plausible size outside the output and work folders;
    else the one-line reason (str) the hemisphere is left out."""
    from ..io.digest import input_digest
    from ..io.limits import SURFACE_MAX_BYTES, check_size, map_max_bytes
    from .paths import inside, real

    if h.sphere_reg is not None:  # optional: one that cannot be used is left out, as if absent,
        try:                      # but not one that was not fetched (DataLad): it fails below, saying so
            check_size(h.sphere_reg, SURFACE_MAX_BYTES, "surface")
        except InputError:
            if not _not_fetched(h.sphere_reg):
                h = replace(h, sphere_reg=None)
    files = [(h.sphere, SURFACE_MAX_BYTES, "surface"), (h.sphere_reg, SURFACE_MAX_BYTES, "surface"),
             *((h.features[f], map_max_bytes(), "per-vertex map") for f in features),
             (h.midthickness, SURFACE_MAX_BYTES, "surface"), (h.cortex_mask, map_max_bytes(), "per-vertex map")]
    try:
        for path, limit, what in files:
            if path is None:
                continue
            check_size(path, limit, what)
            where = real(path)
            for folder in forbidden:
                if inside(where, real(folder)):
                    raise InputError(f"resolves to {where}, inside {folder}: geomorph-bids never reads its own "
                                     "outputs or work files as inputs", path=path)
        return replace(h, digest=input_digest(p for p, _, _ in files))
    except InputError as exc:
        return exc.reason if exc.path is None else f"{exc.path}: {exc.reason}"


def collect_jobs(args: argparse.Namespace, features: Sequence[str], inputs: InputFolders | None = None,
                 forbidden: Sequence[Path] = ()) -> tuple[list, list[Failure]]:
    """Discover every requested subject/session: (jobs to run, failures found up front).

    ``inputs``: the folders searched (:func:`~geomorph_bids.cli.paths.resolve_input_folders`;
    default: decided here from ``args``). Every file a hemisphere's workflow will read is checked
    (a regular file, not a broken link, within the size bounds, not inside a ``forbidden``
    folder: the output and work folders) and hashed for the cache key (``HemiInputs.digest``); a
    hemisphere that fails is reported on its own line and the others go on. A requested
    participant that exists nowhere is reported as ``not found; available: ...``; so is a
    requested session that exists nowhere for the subject."""
    from ..io.discover import (DiscoveryError, broken_subject_links, discover, empty_input_folders, find_subjects,
                               label_for, normalise_label, unlabelled_folders, unlabelled_subjects)
    from ..workflows import SubjectJob
    from .paths import resolve_input_folders

    if inputs is None:
        inputs = resolve_input_folders(args, Path(args.output_dir))
    bids_dir, deriv, fs_dir = inputs.bids_dir, inputs.derivatives, inputs.fs_subjects_dir
    notes: list[str] = []
    filt = read_filter(args.bids_filter_file, notes)
    for line in notes:
        say(f"geomorph-bids: note: {line}", file=sys.stderr)
    listing: list[list[str]] = []

    def known() -> list[str]:
        """Every subject of the inputs, listed once and only when needed: a run of a few labels
        (each task of a SLURM array) whose subjects are found never lists a cohort's folders."""
        if not listing:
            listing.append(find_subjects(bids_dir, fs_dir, deriv))
        return listing[0]

    if args.participant_label:
        # in the order of a whole-dataset run and the group table (sub-2 before sub-10), whatever the order typed
        subjects = sorted(dict.fromkeys(normalise_label(s, "sub") for s in args.participant_label), key=label_key)
    else:
        subjects = known()
    if "subject" in filt:
        chosen = [s for s in subjects if s in filt["subject"]]
        if subjects and not chosen:  # "no subjects found in B" named neither selection
            given = ", ".join(filt["subject"])
            raise InputError(f"the BIDS filter file selects subject {given}, which "
                             + (f"--participant-label {' '.join(subjects)} leaves out: the two select no participant "
                                "together; give one of them" if args.participant_label else
                                f"is not among the subjects found ({', '.join(subjects[:_LISTED])}"
                                + (f" and {len(subjects) - _LISTED} more" if len(subjects) > _LISTED else "") + ")"),
                             path=args.bids_filter_file)
        subjects = chosen
    # folders no label can name: said when the whole dataset was asked for or nothing was found (a run
    # of found labels, each task of a SLURM array, never lists a cohort's folders)
    say_unlabelled = not subjects or not args.participant_label
    unlabelled = unlabelled_subjects(bids_dir, fs_dir, deriv) if say_unlabelled else []
    advice = [_longitudinal(p) or _trailing_blank(p, "FreeSurfer subject folder") or
              f"FreeSurfer subject folder {p} is not processed: "
              + ("its name is not sub-<label>[_ses-<label>] (labels of letters and digits only; a longitudinal "
                 "run's folder?)" if p.name.startswith("sub-") else
                 "its name is not a BIDS label (letters and digits only)")
              + (f"; {twin.name} is there as well (a copy from a system whose names are not case-sensitive?): "
                 "remove the one that is not wanted"
                 if (twin := _case_twin(p)) is not None else
                 f"; link it under one (ln -s {shlex.quote(p.name)} {shlex.quote(str(p.parent / label_for(p.name)))})")
              for p in unlabelled]
    advice += [_trailing_blank(p) or f"subject folder {p} is not processed: "
               + (f"its label {p.name[4:].split('_', 1)[0]!r} is not a BIDS label (letters and digits only)"
                  if p.name.startswith("sub-") else
                  "its name does not start with 'sub-' in lower case (names are case-sensitive)")
               + (f"; {twin.name} is there as well (a copy from a system whose names are not case-sensitive?): "
                  "remove the one that is not wanted" if (twin := _case_twin(p)) is not None else
                  f"; rename the folder and its files (e.g. sub-{label_for(p.name)})")
               for p in (unlabelled_folders(bids_dir, fs_dir, deriv) if say_unlabelled else [])]
    # subject folders that are links to nothing: left out in silence, or "not found" though listed
    broken = broken_subject_links(bids_dir, fs_dir, deriv, None if say_unlabelled else subjects)
    advice += [f"subject folder {p} is not processed: it is {why}" for p, why in broken] if say_unlabelled else []
    if not subjects:
        more = f"; and {len(advice) - _LISTED} more such folders" if len(advice) > _LISTED else ""
        empty = empty_input_folders(bids_dir, fs_dir, deriv)
        raise InputError(f"no subjects found in {bids_dir} (nor its derivatives); "
                         + ("; ".join(advice[:_LISTED]) + more if advice else
                            f"the input folders {', '.join(map(str, empty))} are empty (DataLad subdatasets not "
                            f"installed? datalad get -n {' '.join(shlex.quote(str(p)) for p in empty)})" if empty else
                            "check the folders or --participant-label"))
    if not args.participant_label:  # a whole dataset was asked for: never leave a subject out in silence
        for line in advice:
            warnings.warn(line, SubjectWarning, stacklevel=2)
    sessions = ([normalise_label(s, "ses") for s in args.session_label] if args.session_label
                else filt.get("session"))
    if sessions is not None:  # each once (``1 ses-1``: a second job of one session stopped the workflow on
        # "Duplicate node name"), in the order of a run without a selection and of the group table, not as typed
        sessions = sorted(dict.fromkeys(sessions), key=label_key)
    if args.session_label and filt.get("session") and set(sessions) != set(filt["session"]):
        warnings.warn(f"--session-label {' '.join(sessions)} is used; the BIDS filter file's session "
                      f"{', '.join(s or 'null (no session)' for s in filt['session'])} is not", SubjectWarning,
                      stacklevel=2)
    # a filter's session null: the anatomy without a session, beside any labels it also gives
    sessionless = sessions is not None and NO_SESSION in sessions
    if sessionless:
        sessions = [s for s in sessions if s != NO_SESSION]
    hemis = tuple(args.hemi)

    blank_named: list[list[Path]] = []  # subject folders whose names end in a space or dot, once listed

    def reason(subject: str, exc: InputError) -> str:
        why = exc.reason if exc.path is None else f"{exc.path}: {exc.reason}"
        links = [f"{p} is {what}" for p, what in broken if p.name in (f"sub-{subject}", subject)]
        if links and subject not in known():  # there, but a link to nothing: not "not found"
            return f"{'; '.join(links)}; {why}"
        if subject not in known():  # there, its name ending in a space or dot: not "not found"
            if not blank_named:  # listed once, and only where a label is not found
                blank_named.append([p for p in (*unlabelled_subjects(bids_dir, fs_dir, deriv),
                                                *unlabelled_folders(bids_dir, fs_dir, deriv))
                                    if p.name != p.name.rstrip(" .")])
            blank = [_trailing_blank(p) for p in blank_named[0] if p.name.rstrip(" .") in (f"sub-{subject}", subject)]
            if blank:
                return f"{'; '.join(filter(None, blank))}; {why}"
        return why if subject in known() else f"{_not_found(known(), label=subject)}; {why}"

    jobs, failures = [], []

    def add(subject: str, session: str | None, found=None) -> None:
        """Discover one subject/session (DiscoveryError when nothing is found), or take ``found``."""
        if found is None:
            found = discover(subject, bids_dir, session=session, fs_subjects_dir=fs_dir,
                             derivatives=deriv, hemis=hemis, features=features)
        hemi_inputs, missing = {}, dict(found.missing)
        for h, inp in found.hemis.items():
            checked = _checked(inp, features, forbidden)
            if isinstance(checked, str):
                missing[h] = checked
            else:
                hemi_inputs[h] = checked
        jobs.append(SubjectJob(subject, session, replace(found, hemis=hemi_inputs, missing=missing)))
        failures.extend(Failure(subject, session, h, why) for h, why in sorted(missing.items()))

    def passed_over(subject: str, shared) -> None:
        """One warning line when sessions of ``subject`` have surfaces of their own beside the
        session-less anatomy ``shared`` that is registered (sMRIPrep ``sub-X/ses-Y/anat`` beside
        ``sub-X/anat``; FreeSurfer's cross-sectional ``sub-X_ses-Y`` runs beside their longitudinal
        base named ``sub-X``): without a session selection they were left out in silence."""
        from ..io.discover import valid_label

        candidates, bases = set(), []
        runs: dict[str, list[Path]] = {}  # FreeSurfer/HCP sub-X_ses-Y folders, by session
        for root in inputs.roots():
            if root != bids_dir:
                candidates |= {p.name[4:] for p in (root / f"sub-{subject}").glob("ses-*") if p.is_dir()}
                for p in sorted(root.glob(f"sub-{subject}_ses-*")):
                    if p.is_dir():
                        runs.setdefault(p.name.split("_ses-", 1)[1], []).append(p)
        candidates |= set(runs)
        for h in shared.hemis.values():
            names = _base_time_points(Path(h.sphere).parent.parent) if h.source == "freesurfer" else None
            if names is not None:
                bases.append(f"{Path(h.sphere).parent.parent}, the base of a longitudinal run of {', '.join(names)}")
                candidates |= {n.split("_ses-", 1)[1] for n in names if n.startswith(f"sub-{subject}_ses-")}
        own, hidden = [], []
        for ses in sorted(s for s in candidates if valid_label(s)):
            try:
                with warnings.catch_warnings():  # what this look says is the session's run's to say
                    warnings.simplefilter("ignore")
                    per = discover(subject, bids_dir, session=ses, fs_subjects_dir=fs_dir, derivatives=deriv,
                                   hemis=hemis, features=features)
            except InputError:
                per = None
            if per is not None and any(
                    h in shared.hemis and Path(i.sphere).resolve() != Path(shared.hemis[h].sphere).resolve()
                    for h, i in per.hemis.items()):
                own.append(ses)
            elif ses in runs and not any(Path(h.sphere).is_relative_to(run) for run in runs[ses]
                                         for h in (per.hemis.values() if per is not None else ())):
                hidden += runs[ses]  # a session's own FreeSurfer run that even --session-label never reads
        if hidden:
            shared_at = ", ".join(dict.fromkeys(str(Path(h.sphere).parent) for h in shared.hemis.values()))
            folders = sorted({str(p.parent) for p in hidden})
            warnings.warn(f"sub-{subject}: registered once, from its session-less anatomy ({shared_at}); the "
                          f"per-session runs {', '.join(str(p) for p in hidden)} are not registered: that anatomy is "
                          f"read first for every session too (sMRIPrep/fMRIPrep, then FreeSurfer, then HCP). To "
                          f"register them, name their folder alone: --derivatives "
                          + " ".join(f"sessions{i or ''}={shlex.quote(f)}" for i, f in enumerate(folders))
                          + " (each session is then registered on its own)", SubjectWarning, stacklevel=2)
        if own:
            labels = " ".join(own)
            warnings.warn(f"sub-{subject}: registered once, from its session-less anatomy"
                          f"{': ' + '; '.join(dict.fromkeys(bases)) if bases else ''}; the surfaces of "
                          f"{', '.join(f'ses-{s}' for s in own)} in their own folders are not registered without "
                          f"a session selection (--session-label {labels} registers them, under "
                          f"sub-{subject}/ses-<label>/anat)", SubjectWarning, stacklevel=2)

    def without_session(subject: str) -> None:
        """The filter's session null: the subject's session-less anatomy, or one failure line."""
        def in_sessions(own: Sequence[str]) -> None:
            failures.append(Failure(subject, None, ",".join(hemis),
                                    f"the BIDS filter file selects the anatomy without a session (session null); "
                                    f"sub-{subject}'s is in session folders ({', '.join(f'ses-{s}' for s in own)}): "
                                    f"give their labels instead"))

        try:
            found = discover(subject, bids_dir, fs_subjects_dir=fs_dir, derivatives=deriv, hemis=hemis,
                             features=features)
        except DiscoveryError as exc:
            # anatomy in two or more session folders (sMRIPrep sessionwise, FreeSurfer sub-X_ses-Y runs): the
            # session-less look finds none, or "spheres in several sessions, pass a session" twice over
            own = _sessions_of(subject, inputs, anatomical=True) if subject in known() else []
            if own:
                in_sessions(own)
            else:
                failures.append(Failure(subject, None, ",".join(hemis), reason(subject, exc)))
            return
        own = sorted({h.session for h in found.hemis.values() if h.session is not None}, key=label_key)
        if own:
            in_sessions(own)
        else:
            add(subject, None, found)

    for subject in subjects:
        try:
            if sessionless:
                without_session(subject)
                if not sessions:
                    continue
            wanted: list[str | None] = list(sessions) if sessions else [None]
            if sessions is None:
                # what this look says is said only if its result is used: anatomy found per session is
                # looked for again, session by session, and said there (before, each line came twice)
                with warnings.catch_warnings(record=True) as said:
                    warnings.simplefilter("always")
                    try:
                        found, error = discover(subject, bids_dir, fs_subjects_dir=fs_dir, derivatives=deriv,
                                                hemis=hemis, features=features), None
                    except DiscoveryError as exc:
                        found, error = None, exc

                def warn_again() -> None:
                    for w in said:
                        warnings.warn(w.message, w.category, stacklevel=2)
                # anatomy shared by the sessions (sub-X/anat, a FreeSurfer sub-X): one job. Anatomy found
                # in a session folder is per session: every session is processed, each on its own (taken
                # from a lone ses-* folder per hemisphere, ses-1's hemi-R was registered beside a failed
                # hemi-L "in several sessions" and the other sessions were never processed)
                if found is not None and all(h.session is None for h in found.hemis.values()):
                    warn_again()
                    passed_over(subject, found)
                    add(subject, None, found)
                    continue
                per_session = _sessions_of(subject, inputs, anatomical=True, notes=notes)
                for line in notes:
                    say(f"geomorph-bids: note: {line}", file=sys.stderr)
                notes.clear()
                if not per_session:
                    if found is not None:
                        warn_again()
                        add(subject, None, found)
                    else:
                        failures.append(Failure(subject, None, ",".join(hemis), reason(subject, error)))
                    continue
                wanted = per_session
            elif subject in known():
                have = _sessions_of(subject, inputs)
                for ses in [s for s in wanted if s not in have]:
                    failures.append(Failure(subject, ses, ",".join(hemis),
                                            _not_found(have, f"session ses-{ses} ", label=ses) + f" (sessions of sub-{subject})"))
                wanted = [s for s in wanted if s in have]
            for ses in wanted:
                try:
                    add(subject, ses)
                except DiscoveryError as exc:
                    failures.append(Failure(subject, ses, ",".join(hemis), reason(subject, exc)))
        except (InputError, OSError) as exc:  # one subject's unreadable folder never stops the others
            why = exc.reason if isinstance(exc, InputError) else " ".join(str(exc).split())
            failures.append(Failure(subject, None, ",".join(hemis), why))
    return _shared_anatomy_once(jobs, failures)


def _shared_anatomy_once(jobs: list, failures: list[Failure]) -> tuple[list, list[Failure]]:
    """Jobs of a selected session (``--session-label``, a filter's session) whose every hemisphere was
    read from the subject's session-less anatomy (``sub-X/anat``, a FreeSurfer ``sub-X``: fMRIPrep before
    25.2 and sMRIPrep without ``--subject-anatomical-reference sessionwise`` make one anatomical reference
    per subject) -> one session-less job per subject, said on one note line. Before, ``--session-label 1 2``
    ran one job per session on the same anatomy: the table and the ``inputs:`` line said ses-1 and ses-2,
    the same files were registered twice and written once, without a session; the group table had one row."""
    shared: dict[str, list[str]] = {}
    kept: list = []
    for job in jobs:
        hemis = list(job.inputs.hemis.values())
        if job.session is None or not hemis or any(h.session is not None for h in hemis):
            kept.append(job)
            continue
        if job.subject not in shared and not any(j.subject == job.subject and j.session is None for j in jobs):
            kept.append(replace(job, session=None))
            say(f"geomorph-bids: note: sub-{job.subject}: its anatomy has no session "
                f"({hemis[0].sphere.parent}): it is registered once for every session, and written without "
                f"a session (sub-{job.subject}/anat), where fMRIPrep (before 25.2's --subject-anatomical-reference "
                "sessionwise) and sMRIPrep look for it", file=sys.stderr)
        shared.setdefault(job.subject, []).append(job.session)
    if not shared:
        return jobs, failures
    moved, seen = [], set()
    for f in failures:
        if f.session in shared.get(f.subject, ()):
            f = replace(f, session=None)
        if (f.subject, f.session, f.hemi, f.reason) not in seen:
            seen.add((f.subject, f.session, f.hemi, f.reason))
            moved.append(f)
    return kept, moved


def refuse_case_twins(jobs: list, output_dir: Path) -> tuple[list, list[Failure]]:
    """``jobs`` without the participants whose labels differ from another's in letter case only
    (FreeSurfer's ``bert`` and ``Bert``) when the output folder's file system does not tell such
    names apart (:func:`~geomorph_bids.cli.preflight.names_fold_case`: macOS, Windows, exFAT, SMB):
    there ``sub-bert`` and ``sub-Bert`` are one folder, and the second participant's outputs would
    overwrite the first's in silence. A :class:`Failure` for each of their hemispheres; the others run."""
    from .preflight import names_fold_case

    groups: dict[str, set[str]] = {}
    for job in jobs:
        groups.setdefault(job.subject.casefold(), set()).add(job.subject)
    twins = {s: sorted(g) for g in groups.values() if len(g) > 1 for s in g}
    if not twins or not names_fold_case(output_dir):
        return jobs, []
    kept, failures = [], []
    for job in jobs:
        if job.subject not in twins:
            kept.append(job)
            continue
        others = ", ".join(f"sub-{s}" for s in twins[job.subject] if s != job.subject)
        why = (f"sub-{job.subject} and {others} differ only in letter case, and the file system of {output_dir} "
               "does not tell such names apart (macOS, Windows, exFAT, SMB): their outputs would overwrite each "
               "other; rename one participant's folder, or write to a case-sensitive output folder")
        failures += [Failure(job.subject, job.session, hemi, why)
                     for hemi in (sorted(job.inputs.hemis) or ["L,R"])]
    return kept, failures


def refuse_names_too_long(jobs: list, config: RunConfig) -> tuple[list, list[Failure]]:
    """``jobs`` without the hemispheres whose output file names the output folder's file system
    cannot hold (a participant or session label of ~200 characters: names add ~60), and a
    :class:`Failure` for each. Found after the run, a name too long ended the whole run
    (``File name too long``: no FAILED line, no report, an empty folder left); here it costs its
    own hemispheres only, before anything is written or locked. Every name a hemisphere writes is checked
    (outputs, sidecars, figures, the CIFTI file), with room for the temporary name each is
    written under (:data:`~geomorph_bids.io.atomic.TEMP_NAME_EXTRA`); so is each whole path, staging
    folder included, against ``PATH_MAX`` (an output folder nested ~4000 bytes deep ended the run the
    same way, leaving its staging folder)."""
    from ..derivatives import FIGURES, entities, figures_dir, report_name
    from ..io.atomic import TEMP_NAME_EXTRA
    from ..results.writer import STAGING_DIR
    from ..workflows import hemi_outputs
    from ..workflows.outputs import cifti_output

    longest_name = name_max(config.output_dir)
    limit = longest_name - TEMP_NAME_EXTRA
    path_max_out = path_max(config.output_dir)
    staged = len(str(config.output_dir / STAGING_DIR / ("0" * 32)).encode())  # writer.staging's folder
    feature = max(config.features, key=len, default="").capitalize()
    kept, failures = [], []
    for job in jobs:
        cifti = cifti_output(job, config)
        hemis, missing = {}, dict(job.inputs.missing)
        for hemi, h in job.inputs.hemis.items():
            ent = entities(h.subject, h.session)
            paths = [*hemi_outputs(h, config).files(), config.output_dir / report_name(h.subject, h.session)]
            paths += [figures_dir(config.output_dir, h.subject) / pattern.format(
                entities=ent, hemi=hemi, space=config.template.label, Feature=feature, kind="midthickness")
                for pattern in FIGURES.values()]
            paths += [cifti] if cifti is not None else []
            longest = max((p.name for p in paths), key=lambda n: len(n.encode()))
            # a file is staged first, or written as .<name>.<8 random>.tmp beside itself: the longer folder counts
            full = max(paths, key=lambda p: max(len(str(p.parent).encode()), staged) + len(p.name.encode()))
            full_bytes = max(len(str(full.parent).encode()), staged) + 1 + len(full.name.encode()) + TEMP_NAME_EXTRA
            deep = None if config.batch_size else work_dir_too_deep(config.work_dir, h.subject, h.session)
            if len(longest.encode()) <= limit and full_bytes <= path_max_out and deep is None:
                hemis[hemi] = h
                continue
            if deep is not None:  # a longer label than preflight's: Nipype failed it at a path of its own
                why = deep
            elif len(longest.encode()) > limit:
                why = (f"its output file names would be up to {len(longest.encode())} bytes long ({longest}), more "
                       f"than the {limit} the output folder's file system takes ({longest_name}, less "
                       f"{TEMP_NAME_EXTRA} "
                       f"for the temporary name each file is written under): give the participant a shorter label "
                       f"(e.g. link its folder under a shorter sub-<label>)")
            else:  # found while writing, it ended the whole run ("File name too long"), staging left behind
                why = (f"its output files' paths would be up to {full_bytes} bytes long ({full.name}, with its "
                       f"temporary name, in an output folder whose path alone is "
                       f"{len(str(config.output_dir).encode())} bytes), more than the {path_max_out} the system takes "
                       f"(PATH_MAX): choose an output folder with a shorter path (e.g. a link to it)")
            missing[hemi] = why
            failures.append(Failure(job.subject, job.session, hemi, why))
        if len(hemis) == len(job.inputs.hemis):
            kept.append(job)
        elif hemis:
            kept.append(replace(job, inputs=replace(job.inputs, hemis=hemis, missing=missing)))
        # else: left out whole (its lock and report would carry the label too)
    return kept, failures

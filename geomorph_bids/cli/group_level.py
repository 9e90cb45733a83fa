"""The group level of ``geomorph-bids`` (the table of every participant's metrics judged by the
quality gates, the group report, population templates) and ``--reports-only`` (participant reports
from the outputs alone): what :func:`geomorph_bids.cli.bids.main` runs for those levels.

Exit codes as :mod:`geomorph_bids.cli.bids` says: 1 when a metrics file or a participant's folder
cannot be read, 3 when a hemisphere is flagged or stale.
"""

from __future__ import annotations

import argparse
import re
import sys
from contextlib import ExitStack
from pathlib import Path

from ..derivatives import GROUP_HTML, GROUP_JSON, GROUP_TSV, NATIVE_FEATURE, NATIVE_SPHERE, anat_dir, label_key
from ..derivatives import entities as entity_string
from .descriptions import write_bids_extras
from .exit_codes import EXIT_FAILED, EXIT_OK, error_exit, run_exit_code
from .failures import Failure
from .parser import build_parser
from .paths import InputFolders, check_folders, check_output_links, resolve_input_folders
from .preflight import (REPORTS_LOCK, folder_lock, participant_lock_holder, participant_runs_active, preflight,
                        shown_lock_file)
from .reporting import build_reports, print_reports
from .selection import listed
from .settings import resolve_quality
from .messages import say
from .container import with_gpu_flag

__all__ = ["run_group", "run_reports_only"]

_PROG = "geomorph-bids"


def _participant_rows(args, judged: bool = False, unreadable: list[str] | None = None) -> list[dict]:
    """Metrics rows of the participant outputs in output_dir, restricted to --participant-label
    (``judged``: with what the quality gates need, for :func:`_judge_rows`; ``unreadable``: gets
    the one-line message of each damaged file, as in
    :func:`~geomorph_bids.reports.group_table.group_rows`; None: they are skipped)."""
    from ..io.discover import normalise_label
    from ..reports.group_table import group_rows

    keep = {normalise_label(s, "sub") for s in args.participant_label} if args.participant_label else None
    rows = group_rows(args.output_dir, with_quality_inputs=judged,  # only their folders: not all N subjects'
                      unreadable=[] if unreadable is None else unreadable, subjects=keep)  # the group level names them
    return rows if keep is None else [r for r in rows if r["subject"] in keep]


def _judge_rows(args, rows: list[dict], few: list[tuple[Failure, float]] | None = None
                ) -> tuple[list[Failure], list[Failure]]:
    """Apply the quality gates to every row (the thresholds recorded with each participant
    output, overridden by the gate options given to the group level), mark the rows
    (``quality``, ``quality_reasons``: :func:`~geomorph_bids.reports.group_table.quality_cells`)
    and return (the flagged ones, the stale ones: their latest participant run failed and their
    outputs are an earlier run's). ``few``, when a list, gets (row, ``identity_cc_own``) of each
    sulc too smooth to register reliably (:func:`~geomorph_bids.quality.few_folds`; advisory)."""
    from ..quality import QualityThresholds, assess, few_folds
    from ..reports.group_table import quality_cells

    flagged, stale = [], []
    several = len({r.get("template") for r in rows}) > 1
    # the thresholds of each distinct recorded set, decided once: a cohort's rows record the same few, and
    # checking them row by row was a tenth of the group level's time at 5,000 participants
    decided: dict[str, QualityThresholds] = {}
    for row in rows:
        recorded = row.pop("_thresholds", None)
        key = repr(recorded)  # a JSON value: its repr tells the sets apart (1 and 1.0, True and 1 too)
        if key not in decided:
            decided[key] = resolve_quality(args, QualityThresholds.from_dict(recorded))
        registration, features = row.pop("_registration", {}), row.pop("_features", [])
        verdict = assess(registration, features, decided[key])
        if few is not None and few_folds(registration, features, decided[key]):
            few.append((_row_failure(row, "", several), float(registration["identity_cc_own"])))
        failed_run = row.pop("_stale", None)
        row["quality"], row["quality_reasons"] = quality_cells(verdict.flagged, verdict.line(), failed_run)
        if failed_run:
            stale.append(_row_failure(row, failed_run, several))
        if verdict.flagged:
            flagged.append(_row_failure(row, verdict.line(), several))
    return flagged, stale


#: the most hemispheres :func:`_few_folds_line` names (a neonatal cohort's every row: one line)
_FEW_LISTED = 10


def _few_folds_line(few: list[tuple[Failure, float]]) -> str:
    """One line for the rows whose sulc is too smooth to register reliably: how many, the first
    :data:`_FEW_LISTED` with their fit, the threshold, and the remedy (an age-matched template)."""
    from ..quality import FEW_FOLDS_BELOW

    named = [f"{f.line().rstrip(': ')} ({own:.2f})" for f, own in few[:_FEW_LISTED]]
    more = f", ... ({len(few)} in all)" if len(few) > _FEW_LISTED else ""
    return (f"{len(few)} hemisphere(s) with too few folds to register reliably (sulc's coarse fit to the template, "
            f"identity_cc_own in {GROUP_TSV}, below {FEW_FOLDS_BELOW:g}; a brain's sulc: 0.82 or more): "
            f"{', '.join(named)}{more}: probably several degrees off even where not flagged (an infant's or smoothed "
            "map); register such a cohort to a template of its own age (--build-template N, then --template "
            "OUT/tpl-LABEL at the participant level)")


def _row_failure(row: dict, reason: str, with_template: bool) -> Failure:
    """A group-table row's one line (``with_template``: the reason starts with ``space-T:``, for
    a folder with outputs of several templates, where a hemisphere has a row for each)."""
    prefix = f"space-{row.get('template')}: " if with_template else ""
    return Failure(row["subject"], row.get("session") or None, row["hemi"], prefix + reason)


#: participant-level options that change nothing at the group level (dest names). The execution
#: options (--nprocs, --omp-nthreads, --mem-gb, -w, --use-plugin) are not named: a script gives both
#: levels the same ones, and they say nothing about what is written
_PARTICIPANT_ONLY = ("output_density", "fmriprep_compat", "cifti_output", "batch_size", "reports",
                     "stop_on_first_crash", "lock_wait", "reports_only")
#: those that matter at the group level only to --build-template (and its own --template-label;
#: --session-label: the sessions averaged)
_TEMPLATE_ONLY = ("session_label", "hemi", "template", "template_dir", "model", "no_optimise", "refine", "features", "device",
                  "template_label")


def _ignored_at_group_level(args) -> list[str]:
    """One line per participant-level option given to the group level that changes nothing there
    (:data:`_PARTICIPANT_ONLY`: the table covers every session and output; --reports-only, --batch-size,
    --cifti-output... were ignored in silence), and per option that matters only to --build-template
    (:data:`_TEMPLATE_ONLY`) given without it."""
    defaults = build_parser()

    def given(names: tuple[str, ...]) -> list[str]:
        return [f"--{name.replace('_', '-')}" for name in names if getattr(args, name) != defaults.get_default(name)]

    out = [f"{option} has no effect at the group level (an option of the participant level"
           + (": geomorph-bids BIDS_DIR OUTPUT_DIR participant --reports-only rebuilds the participant reports)"
              if option == "--reports-only" else ")") for option in given(_PARTICIPANT_ONLY)]
    if not args.build_template:
        out += [f"{option} has no effect at the group level without --build-template" for option in given(_TEMPLATE_ONLY)]
    return out


def _no_rows(args, unreadable: list[str], running: bool = False) -> str:
    """Why the group level has no rows: no participant outputs at all (``running``: yet, a
    participant-level run still processing), or none of the participants asked for (naming those
    that have outputs)."""
    from ..reports.group_table import group_rows

    where = str(args.output_dir)
    if args.participant_label:
        have = sorted({str(r["subject"]) for r in group_rows(args.output_dir, unreadable=[])}, key=label_key)
        if have:
            return (f"no participant outputs of --participant-label {' '.join(args.participant_label)} in {where}; "
                    f"participants with outputs: {listed(have)}")
    if unreadable:
        return f"no readable participant outputs in {where} ({len(unreadable)} damaged: see the FAILED lines)"
    if running:
        return (f"no participant outputs (*_desc-geomorph_metrics.json) in {where} yet: a participant-level run is "
                "still processing its participants; run the group level once every participant run has ended")
    return f"no participant outputs (*_desc-geomorph_metrics.json) in {where}; run the participant level first"


def _subject_entries_not_folders(args) -> list[str]:
    """One line per ``sub-<label>`` entry of output_dir that is no folder (a file, a link to a
    folder that is gone), of --participant-label's subjects when given: its outputs cannot be
    read, and it was left out of the table without a word."""
    from ..derivatives import subject_entries_not_folders
    from ..io.discover import normalise_label

    keep = {normalise_label(s, "sub") for s in args.participant_label} if args.participant_label else None
    out = []
    for path in subject_entries_not_folders(args.output_dir):
        if keep is not None and path.name[len("sub-"):] not in keep:
            continue
        what = ("a link to a folder that is gone" if path.is_symlink() and not path.exists() else
                "a link that cannot be followed" if path.is_symlink() else "not a folder")
        out.append(f"{path.name}: {path} is {what}, so its outputs cannot be read")
    return out


def _participants_without_outputs(args, inputs: InputFolders, rows: list[dict], unreadable: list[str]) -> str:
    """One line naming the participants asked for (--participant-label, else every participant
    of the input dataset, found in ``inputs``) that have no row and no FAILED line: not run yet,
    failed at the participant level, or left out by its selection; '' when there are none."""
    from ..io.discover import find_subjects, normalise_label

    if args.participant_label:
        asked = sorted(dict.fromkeys(normalise_label(s, "sub") for s in args.participant_label))
    else:
        try:
            asked = find_subjects(inputs.bids_dir, inputs.fs_subjects_dir, inputs.derivatives)
        except OSError:  # the dataset is not in reach (another machine): the table is what there is
            return ""
    have = {str(r["subject"]) for r in rows} | {m for line in unreadable for m in re.findall(r"sub-([A-Za-z0-9]+)", line)}
    absent = sorted((s for s in asked if s not in have), key=label_key)  # as the table: 2 before 10
    if not absent:
        return ""
    whose = "of --participant-label" if args.participant_label else "of the dataset"
    return (f"{len(absent)} participant(s) {whose} have no outputs in {args.output_dir} and no row: {listed(absent)} "
            "(not run yet, failed at the participant level, or left out by its selection)")


def _sessions_without_outputs(args, inputs: InputFolders, rows: list[dict]) -> str:
    """One line naming the sessions with anatomy in the inputs (:func:`~.selection.anatomical_sessions`)
    of the participants whose rows are per session, that have no row: a session never run (a run with
    --session-label for the others), or failed whole, left the table one session short in silence.
    Participants with session-less rows (anatomy shared by the sessions) are not looked at; '' when
    there are none or the dataset (``inputs``) is out of reach."""
    from .selection import anatomical_sessions

    have: dict[str, set[str]] = {}
    shared = set()
    for r in rows:
        subject, session = str(r["subject"]), r.get("session")
        if session in (None, "", "n/a"):
            shared.add(subject)
        else:
            have.setdefault(subject, set()).add(str(session))
    subjects = sorted(set(have) - shared, key=label_key)
    if not subjects:
        return ""
    try:
        sessions = anatomical_sessions(subjects, inputs)
    except OSError:  # the dataset is not in reach (another machine): the table is what there is
        return ""
    absent = [f"sub-{s} ses-{x}" for s in subjects for x in sorted(sessions.get(s, []), key=label_key)
              if x not in have[s]]
    if not absent:
        return ""
    return (f"{len(absent)} session(s) with anatomy in the inputs have no outputs in {args.output_dir} and no row: "
            f"{listed(absent)} (not run yet, e.g. a run with --session-label, or failed at the participant level)")


def _template_map_lines(rows: list[dict], output_dir: Path) -> list[str]:
    """One line per template and hemisphere whose rows were registered to maps other than the
    ones there now, or to several: maps changed where they were read since (a population template
    rebuilt in place: its files' SHA-256 is no longer the recorded ``template_sha256``), or maps
    of the same names with other contents (an earlier build copied to another folder of the same
    label and registered to from there). Such outputs share a ``space-`` name but not a space.
    Takes each row's ``_template_files`` out (:func:`~geomorph_bids.reports.group_table.group_rows`);
    a population template moved with its output folder (``output_dir``) is compared where it is now;
    maps no longer where they were read (a folder moved, another machine's paths) are not compared."""
    from ..io.template_ref import moved_template_files
    from ..io.template_sources import sha256_now

    now: dict[tuple[tuple[str, ...], str], str | None] = {}  # the maps' SHA-256 now where it is another
    # (template, hemi, the maps' names) -> recorded SHA-256 -> (participant, folder, SHA-256 now if other)
    groups: dict[tuple[str, str, tuple[str, ...]], dict[str, list[tuple[str, str, str | None]]]] = {}
    for r in rows:
        files = moved_template_files(r.pop("_template_files", None) or (), output_dir)
        sha = r.get("template_sha256")
        if not files or not isinstance(sha, str):
            continue
        if (files, sha) not in now:
            now[files, sha] = sha256_now(files, sha)
        changed = now[files, sha]
        key = (str(r.get("template")), str(r["hemi"]), tuple(Path(f).name for f in files))
        groups.setdefault(key, {}).setdefault(sha, []).append(
            (entity_string(r["subject"], r.get("session") or None), str(Path(files[0]).parent), changed))
    lines = []
    for (template, hemi, _), by_sha in sorted(groups.items()):
        rerun = f"rerun their participant level (--template {template} or the folder of the maps to keep)"
        if len(by_sha) > 1:
            parts = []
            for sha, used in sorted(by_sha.items(), key=lambda kv: -len(kv[1])):
                changed = {f for _, f, c in used if c}
                folders = ", ".join(f + (" (changed there since)" if f in changed else "")
                                    for f in sorted({f for _, f, _ in used}))
                who = sorted({w for w, _, _ in used}, key=label_key)
                parts.append(f"sha256 {sha[:12]} in {folders}: {listed(who)}")
            lines.append(f"space-{template} hemi-{hemi}: its rows were registered to {len(by_sha)} different maps of "
                         f"the same names, so its outputs are not in one space: {'; '.join(parts)}; for those "
                         f"registered to maps other than the ones you keep, {rerun}")
            continue
        (sha, used), = by_sha.items()
        for (folder, current) in sorted({(f, c) for _, f, c in used if c}):
            old = sorted({w for w, f, c in used if (f, c) == (folder, current)}, key=label_key)
            lines.append(f"space-{template} hemi-{hemi}: {len(old)} hemisphere(s) were registered to the maps in "
                         f"{folder} as they were before they changed (sha256 {sha[:12]} then, {current[:12]} now: "
                         f"a template rebuilt or replaced there): {listed(old)}; their outputs are not in the space "
                         f"of those maps now: {rerun}")
    return lines


def run_group(args: argparse.Namespace) -> int:
    """The group level: the table of every participant's metrics (with the verdict of the
    quality gates), the group report, and (``--build-template N``) a population-average
    template. Exits 3 when a hemisphere is flagged, or stale (its latest participant run failed
    and its outputs are an earlier run's): each is listed, and marked in the table. Writes
    holding :data:`~geomorph_bids.cli.preflight.REPORTS_LOCK` shared."""
    with ExitStack() as writing:
        return _run_group(args, writing)


def _one_hemisphere(rows: list[dict], crashed: list[str]) -> str:
    """The note of a table whose rows are all of one hemisphere (the participant level run with ``--hemi L``):
    the other is in no row and nothing said so; '' otherwise, or when failures of the other are listed."""
    hemis = {str(r.get("hemi")) for r in rows}
    if len(hemis) != 1 or not hemis <= {"L", "R"}:
        return ""
    (hemi,) = hemis
    other = "R" if hemi == "L" else "L"
    if any(f"hemi-{other}" in line for line in crashed):
        return ""
    return (f"every row is hemi-{hemi} ({len(rows)} row(s)): no participant has hemi-{other} outputs (a participant "
            f"level run with --hemi {hemi}?); the table and the report cover hemi-{hemi} alone: "
            f"run the participant level with --hemi {other} (or without --hemi) to add them")


def _run_group(args, writing: ExitStack) -> int:
    """:func:`run_group`; ``writing`` gets the lock once there is something to write."""
    from ..io.atomic import atomic_write_text
    from ..io.discover import normalise_label
    from ..reports import build_group_report
    from ..reports.group import failed_without_row
    from ..reports.group_table import STALE, group_dictionary_text, group_table_text, parse_group_table

    inputs = None  # no output folder: no rows, an error before anything looks at the inputs
    if args.output_dir.is_dir():
        # it writes the table, the report and templates at the top: no participant's folder
        inputs = resolve_input_folders(args, args.output_dir)
        check_folders(inputs, args.output_dir.absolute(), None, ())
        preflight(args.output_dir.absolute(), None)
    for line in _ignored_at_group_level(args):
        say(f"{_PROG}: warning: {line}", file=sys.stderr)
    # before the rows are read: a participant run still writing (a SLURM array's tasks, the group level
    # submitted beside them) makes a table that misses its participants, or holds their earlier results
    running = participant_runs_active(args.output_dir)
    unreadable: list[str] = []  # a damaged metrics file costs its own row, not the table
    rows = _participant_rows(args, judged=True, unreadable=unreadable)
    unreadable += _subject_entries_not_folders(args)
    for line in unreadable:
        say(f"{_PROG}: FAILED {line}; left out of the table (rerun the participant level for it)", file=sys.stderr)
    if not rows:
        return error_exit(_PROG, _no_rows(args, unreadable, running))
    # its temporary files are not a killed run's leftovers for a participant run ending meanwhile
    writing.enter_context(folder_lock(args.output_dir, REPORTS_LOCK, shared=True, required=False))
    # a warning, as participants not run yet are (a cohort still running is not an error)
    still = (f"a participant-level run is still processing participants of {args.output_dir} "
             f"({shown_lock_file(args.output_dir, 'run')} held): the table holds only the participants it had "
             "finished, or their earlier results; run the group level again once every participant run has "
             "ended (a SLURM array: sbatch --dependency=afterany:JOBID)") if running else ""
    same, copies = _same_inputs(rows, args.output_dir)  # before the gates take the records out of the rows
    lines = [line for line in (still, _participants_without_outputs(args, inputs, rows, unreadable),
                               _sessions_without_outputs(args, inputs, rows),
                               *_template_map_lines(rows, args.output_dir), same) if line]
    for line in lines + [_several_builds(rows)]:
        if line:
            say(f"{_PROG}: warning: {line}", file=sys.stderr)
    absent = " ".join(f"{line}." for line in lines) if len(lines) > 1 else "".join(lines)  # also in group.html
    few: list[tuple[Failure, float]] = []
    flagged, stale = _judge_rows(args, rows, few)
    # hemispheres a participant run failed, left without outputs: their participant has rows for the others
    crashed = failed_without_row(args.output_dir, rows, {normalise_label(s, "sub") for s in args.participant_label}
                                 if args.participant_label else None)
    if crashed:
        say(f"{_PROG}: warning: {len(crashed)} hemisphere(s) failed at the participant level and have no row "
            "(rerun the participant level for them):", file=sys.stderr)
        for line in crashed:
            say(f"  {line}", file=sys.stderr)
    if line := _one_hemisphere(rows, crashed):
        say(f"{_PROG}: note: {line}", file=sys.stderr)
    if few:
        say(f"{_PROG}: note: {_few_folds_line(few)}", file=sys.stderr)
    if args.participant_label:  # the table and report are the dataset's: a subset never replaces them
        print(f"{len(rows)} row(s) (subject/session/hemisphere/template) of --participant-label "
              f"{' '.join(args.participant_label)} judged; {GROUP_TSV} and {GROUP_HTML} left as they were "
              "(they cover every participant: run the group level without --participant-label to refresh them)")
    else:
        text = group_table_text(rows)
        # its data dictionary first: a TSV never stands without the description of its columns
        atomic_write_text(args.output_dir / GROUP_JSON, group_dictionary_text(text))
        path = atomic_write_text(args.output_dir / GROUP_TSV, text)
        print(f"{path}: {len(rows)} row(s) (subject/session/hemisphere/template)")
        # the rows as written (the report reads what the TSV holds), without listing and reading every
        # metrics file again, nor replacing the judged table with the recorded verdicts when one is damaged
        html = build_group_report(args.output_dir, parse_group_table(text), path, unreadable, absent, crashed)
        print(f"group report: {html}")
        for line in write_bids_extras(args.output_dir):  # outputs of a version before they had them
            say(f"{_PROG}: warning: {line}", file=sys.stderr)
    status = _build_population_template(args, rows, copies) if args.build_template else EXIT_OK
    if flagged:
        print(f"{_PROG}: {len(flagged)} hemisphere(s) flagged by the quality gates (marked in {GROUP_TSV}):",
              file=sys.stderr)
        for f in flagged:
            say(f"  FLAGGED {f.line()}", file=sys.stderr)
    if stale:
        print(f"{_PROG}: {len(stale)} hemisphere(s) whose latest participant run failed: their row is an earlier "
              f"run's results (marked {STALE} in {GROUP_TSV}; rerun the participant level for them):", file=sys.stderr)
        for f in stale:
            say(f"  STALE {f.line()}", file=sys.stderr)
    return status if status != EXIT_OK else run_exit_code(len(unreadable), len(flagged) + len(stale))


def _several_builds(rows: list[dict]) -> str:
    """One line when the rows were made by more than one build of geomorph-bids (their
    ``software``: a folder written by an earlier version, then a participant added or rerun after
    an upgrade), naming each build and its participants: a method changed between builds can set
    their rows apart. Empty when one build made them all."""
    # participants in the rows' order, each once (a dict: a list's membership test per row made this
    # quadratic, 0.23 s of CPU at 5,000 participants, 23 s at 50,000)
    builds: dict[str, dict[str, None]] = {}
    for r in rows:
        builds.setdefault(str(r.get("software") or "an unrecorded build"), {})[f"sub-{r['subject']}"] = None
    if len(builds) < 2:
        return ""
    each = "; ".join(f"{build}: {listed(list(names))}" for build, names in sorted(builds.items()))
    return (f"the rows were made by {len(builds)} builds of geomorph-bids ({GROUP_TSV}'s software column): {each}; "
            "their methods may differ: rerun the participant level of the earlier build's participants to make "
            "the table one build's")


def _same_inputs(rows: list[dict], output_dir: Path) -> tuple[str, dict[tuple[str, str], str]]:
    """The warning line naming hemispheres registered from another's very input files (a subject
    folder linked to or copied from another: :func:`~geomorph_bids.quality.same_inputs`), or ``""``;
    and (name, hemi) -> the name it repeats, for each such copy (kept out of a population template).
    Reads the rows' ``_registration`` (``with_quality_inputs``)."""
    from ..quality import same_inputs, same_inputs_text

    sets = same_inputs((entity_string(r["subject"], r.get("session") or None), r["hemi"],
                        {**r.get("_registration", {}), "template": r.get("template")}) for r in rows)
    if not sets:
        return "", {}
    copies = {(copy, hemi): first for first, names, hemi in sets for copy in names}
    return (f"{same_inputs_text(sets)} Each counts as a participant of its own in {GROUP_TSV} (--build-template "
            f"averages the first alone): remove the copy from the inputs and its outputs from {output_dir}"), copies


def _build_population_template(args, rows: list[dict], copies: dict[tuple[str, str], str] | None = None) -> int:
    """``--build-template N``: average the participants' native registration features over N
    register-then-average rounds, per hemisphere, into ``OUTPUT_DIR/tpl-<label>/``. The template,
    model and features are decided as at the participant level (same search path, same
    defaults: the model's registration features unless ``--features`` is given). ``copies``:
    (name, hemi) -> the name whose inputs it repeats (:func:`_same_inputs`): left out, one brain
    counting once."""
    from ..engine.population import PopulationSubject, base_conflict, build_template
    from ..io.discover import normalise_label
    from ..reports.group_table import group_rows
    from .settings import DEFAULT_FEATURES, resolve_template_and_model

    template, model = resolve_template_and_model(args, _PROG)
    features = tuple(args.features) if args.features else model.channels
    device = with_gpu_flag(lambda: model.resolve_device(args.device, check_driver=True))
    offered = template.shared_features(args.hemi)
    lacking = [f for f in features if f not in offered]
    if lacking:  # registered to and averaged: a map the starting template lacks can never be (it ended on
        # every participant "left out ... missing", or on the template's own error after all were read)
        return error_exit(_PROG, f"--build-template --features {' '.join(features)}: template {template.label} has no "
                                 f"{', '.join(lacking)} map (it has: {', '.join(offered) or 'none'}): a population "
                                 "template averages maps its starting template has")
    conflict = base_conflict(args.output_dir, args.template_label, template.base, args.hemi)
    if conflict:  # before any registration: a hemisphere kept from another base would be read in this one's space
        return error_exit(_PROG, f"--build-template: {conflict}")
    status = EXIT_OK
    rebuilt: list[str] = []  # the hemispheres whose maps this run replaced
    suspect = _suspect_hemispheres(rows)
    # --session-label: the sessions averaged (anatomy shared by every session, session-less, stays)
    sessions = {normalise_label(s, "ses") for s in args.session_label} if args.session_label else None
    for hemi in args.hemi:
        subjects = []
        left_out = 0  # flagged, stale or without native outputs: each named on a warning line
        seen: set[tuple[str, str | None]] = set()
        for r in rows:
            session = r.get("session") or None
            if r["hemi"] != hemi or (sessions is not None and session is not None and session not in sessions):
                continue
            if (r["subject"], session) in seen:  # one row per template: a participant counts once
                continue
            seen.add((r["subject"], session))
            quality = suspect.get((r["subject"], session, hemi))
            if quality:  # flagged or stale everywhere: its inputs are suspect, never averaged in silence
                say(f"{_PROG}: warning: {entity_string(r['subject'], session)} hemi-{hemi} left out of the "
                    f"template: {quality}", file=sys.stderr)
                left_out += 1
                continue
            anat = anat_dir(args.output_dir, r["subject"], session)
            ent = entity_string(r["subject"], session)
            if (ent, hemi) in (copies or {}):  # one brain averaged in twice would weigh twice
                say(f"{_PROG}: warning: {ent} hemi-{hemi} left out of the template: registered from the same input "
                    f"files as {copies[(ent, hemi)]} hemi-{hemi} (one brain counts once)", file=sys.stderr)
                left_out += 1
                continue
            sphere = anat / NATIVE_SPHERE.name(ent, hemi)
            maps = {f: anat / NATIVE_FEATURE.name(ent, hemi, feature=f) for f in features}
            if sphere.is_file() and all(p.is_file() for p in maps.values()):
                subjects.append(PopulationSubject(ent, sphere, maps))
            else:  # never leave a participant out in silence
                missing = ", ".join(p.name for p in (sphere, *maps.values()) if not p.is_file())
                # a map other than sulc: written only by a participant run whose registration used it
                extra = [f for f, p in maps.items() if not p.is_file() and f not in DEFAULT_FEATURES]
                how = (f", registering {', '.join(extra)}: it writes the native maps of the features its registration "
                       "uses (curv: --template fsaverage's default registration)" if extra and sphere.is_file() else "")
                say(f"{_PROG}: warning: {ent} hemi-{hemi} left out of the template: {missing} missing "
                    f"(rerun the participant level for it{how})", file=sys.stderr)
                left_out += 1
        per_participant: dict[str, list[str]] = {}
        names = {p.name for p in subjects}  # (a set: a cohort has tens of thousands)
        for subject, session in sorted(seen, key=lambda k: (label_key(k[0]), label_key(k[1]))):  # 2 before 10
            if entity_string(subject, session) in names:
                per_participant.setdefault(subject, []).append(f"ses-{session}" if session else "no session")
        several = {k: v for k, v in per_participant.items() if len(v) > 1}
        if several:  # a participant's sessions are averaged as so many participants: it weighs more
            whose = listed([f"sub-{k} ({', '.join(v)})" for k, v in several.items()])
            say(f"{_PROG}: note: hemi-{hemi}: {len(several)} participant(s) are averaged in with several sessions, "
                f"each session weighing as one participant: {whose}; --session-label picks the sessions to average",
                file=sys.stderr)
        if len(subjects) < 2:
            why = (f"; {left_out} left out (the warning lines above: flagged, stale, copies of another's inputs or "
                   f"without their native {', '.join(features)} outputs)" if left_out else "")
            status = error_exit(_PROG, f"--build-template: hemi-{hemi}: {len(subjects)} participant(s) to average, "
                                       f"at least 2 are needed{why}")
            continue
        result = build_template(subjects, args.build_template, template=template.load(hemi, features), hemi=hemi,
                                features=features, label=args.template_label, out_dir=args.output_dir,
                                device=device, base=template.base,
                                progress=lambda msg: print(f"hemi-{hemi}: {msg}", flush=True),
                                **model.register_arguments())
        rebuilt.append(hemi)
        dist = " -> ".join(f"{d:.4f}" for d in result.mean_distances)
        members = set(result.participants)
        averaged = {p.name.split("_ses-")[0] for p in subjects if p.name in members}
        whom = (f"{result.n_subjects} participant(s)" if len(averaged) == result.n_subjects else
                f"{result.n_subjects} subject/session(s) of {len(averaged)} participant(s)")
        print(f"hemi-{hemi}: template {result.folder} from {whom}; "
              f"mean 1 - CC per round: {dist}")
        for name, why in result.failures.items():
            say(f"{_PROG}: warning: {name} hemi-{hemi} left out of the template: {why}", file=sys.stderr)
    # a template in use was replaced: its outputs were registered to the old maps. Every participant's,
    # not only --participant-label's (a template rebuilt from some participants is the others' too)
    mine = group_rows(args.output_dir, unreadable=[]) if args.participant_label else rows
    using = sorted({f"sub-{r['subject']}" for r in mine if r.get("template") == args.template_label
                    and r["hemi"] in rebuilt})
    if using:
        say(f"{_PROG}: warning: tpl-{args.template_label} is rebuilt while {len(using)} participant(s) have outputs "
            f"registered to it ({listed(using)}): rerun their participant level with --template "
            f"{args.template_label} afterwards", file=sys.stderr)
    return status


def _suspect_hemispheres(rows: list[dict]) -> dict[tuple[str, str | None, str], str]:
    """(subject, session, hemi) -> why it is kept out of a population template, for each
    hemisphere whose rows (one per template) are all flagged or stale (the quality gates' verdict,
    :func:`_judge_rows`). One pass over the rows: a cohort's group level has tens of thousands."""
    verdicts: dict[tuple[str, str | None, str], list[dict]] = {}
    for r in rows:
        verdicts.setdefault((r["subject"], r.get("session") or None, r["hemi"]), []).append(r)
    return {key: "; ".join(f"{r.get('template')}: {r.get('quality')} ({r.get('quality_reasons')})" for r in mine)
            for key, mine in verdicts.items() if all(r.get("quality") in ("flagged", "stale") for r in mine)}


#: the participant level's options that ``--reports-only`` reads nothing of (dest names): it draws the
#: reports from the outputs alone. As at the group level, the execution options are not named
_NOT_READ_BY_REPORTS = ("session_label", "hemi", "template", "template_dir", "output_density", "features", "model",
                        "no_optimise", "refine", "device", "fmriprep_compat", "cifti_output", "batch_size", "reports",
                        "stop_on_first_crash", "lock_wait", "min_cc", "min_cc_other", "max_distortion", "max_folds",
                        "identity_margin")


def _ignored_by_reports_only(args) -> str | None:
    """One line naming every option of :data:`_NOT_READ_BY_REPORTS` given to ``--reports-only``
    (``--model X --template fsaverage --reports-only``: every report rebuilt as it was, exit 0, the
    options read by nobody, where the group level names such options), or None."""
    defaults = build_parser()
    given = [f"--{name.replace('_', '-')}" for name in _NOT_READ_BY_REPORTS
             if getattr(args, name) != defaults.get_default(name)]
    if not given:
        return None
    listed = ", ".join(given[:-1]) + f" and {given[-1]}" if len(given) > 1 else given[0]
    return (f"{listed} {'has' if len(given) == 1 else 'have'} no effect with --reports-only (the reports are drawn "
            "from the outputs already written): run the participant level without --reports-only to register "
            f"with {'it' if len(given) == 1 else 'them'}")


def run_reports_only(args: argparse.Namespace) -> int:
    """``--reports-only``: build the participant reports from the outputs alone; a report that is
    current (:func:`geomorph_bids.reports.participant.report_is_current`) is kept, and one of a
    participant a participant-level run is processing (its lock held) is left to that run, on one
    line (not an error). Options it reads nothing of are named on one warning line
    (:func:`_ignored_by_reports_only`)."""
    if (ignored := _ignored_by_reports_only(args)) is not None:
        say(f"{_PROG}: warning: {ignored}", file=sys.stderr)
    unreadable: list[str] = []  # a damaged metrics file is named, as the group level names it
    rows = _participant_rows(args, unreadable=unreadable)
    for line in unreadable:
        say(f"{_PROG}: FAILED {line}; not in its participant's report (rerun the participant level for it)",
            file=sys.stderr)
    if not rows:
        return error_exit(_PROG, f"--reports-only: {_no_rows(args, unreadable)}")
    subjects = sorted({r["subject"] for r in rows}, key=label_key)
    check_output_links(args.output_dir, subjects)  # its figures and reports go into sub-X/figures and the top
    # a participant a run is processing: what is written so far (one hemisphere, or an earlier run's files
    # being replaced) drawn as its report, newer than every output, would be kept as current
    busy = {s: holder for s in subjects if (holder := participant_lock_holder(args.output_dir, s))}
    for subject, holder in busy.items():
        print(f"{_PROG}: sub-{subject}: report not built: a participant-level run is processing it ({holder}; "
              f"lock {shown_lock_file(args.output_dir, f'sub-{subject}')}); run --reports-only again once it has "
              "ended (a run with --reports parallel builds it itself)", file=sys.stderr)
    subjects = [s for s in subjects if s not in busy]
    kept: list[Path] = []  # a current report is kept: a second pass (after a stop, a time limit) resumes
    failed: list[str] = []  # a report not written: what this command was asked for (it said exit 0)
    with folder_lock(args.output_dir, REPORTS_LOCK, shared=True, required=False):  # as the group level
        made = build_reports(args.output_dir, subjects, _PROG, reuse=set(subjects), workers=args.nprocs, kept=kept,
                             failed=failed)
    print_reports(made, len(kept))
    # a participant still being processed is not an error (as at the group level), nor a reason for none
    return EXIT_OK if (made or busy) and not unreadable and not failed else EXIT_FAILED

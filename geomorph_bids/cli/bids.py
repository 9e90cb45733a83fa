"""``geomorph-bids``: the BIDS-App (its entry point and the participant level).

Exit codes (:mod:`geomorph_bids.cli.exit_codes`): 0 every requested subject/hemisphere
succeeded; 1 any failed (a summary names each failed subject/hemisphere and why; the others'
outputs are kept) or bad input; 2 usage; 3 all written but at least one hemisphere failed a
quality gate (each listed as ``FLAGGED``), or, at the group level, a hemisphere is stale (its latest
participant run failed and an earlier run's outputs were kept: ``STALE``); 128 + N stopped by
signal N (130 Ctrl-C, 143 SIGTERM).

The levels only sequence the work; the group level and ``--reports-only`` are in
:mod:`.group_level`; the settings are decided in :mod:`.settings`, the subjects
chosen in :mod:`.selection`, Nipype configured in :mod:`.nipype_config`, failures collected in
:mod:`.failures`, the dataset description and methods text written by :mod:`.descriptions`.
"""

from __future__ import annotations

if __name__ == "__main__":  # python -m: as the console script, one line on Ctrl-C during the imports below
    from geomorph_bids.cli.launch import run_module

    run_module("geomorph_bids.cli.bids", "geomorph-bids")

import os

os.environ.setdefault("NIPYPE_NO_ET", "1")  # no telemetry / network, before nipype is imported

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

from .. import __version__  # noqa: E402
from ..crashfiles import TOP_WF_NAME, hemi_wf_name, subject_wf_name  # noqa: E402
from ..derivatives import LOGS, crash_dir  # noqa: E402
from ..quality import QualityVerdict  # noqa: E402
from .descriptions import add_citation, write_bids_extras, write_dataset_description  # noqa: E402
from ..errors import describe_os_error  # noqa: E402
from .exit_codes import HANDLED, error_exit, interrupted, run_exit_code  # noqa: E402
from .failures import Failure, crash_failures, one_per_hemisphere, readable  # noqa: E402
from .interrupts import Interrupted, stop_children, stop_on_signals  # noqa: E402
from .machine import (current_folder_problem, drop_unusable_thread_settings, matplotlib_config_in_tmp,  # noqa: E402
                      temporary_folder_in, threads_wait_passively, threads_within_usable_cpus,
                      address_space_problem)
from .messages import one_line_warnings, reader_may_go_away, say, shell_word, warning_printer  # noqa: E402
from .nipype_config import configure_nipype, crash_folder_setting, plugin_runner, plugin_settings  # noqa: E402
from .parser import build_parser, refuse_options_that_do_not_apply  # noqa: E402
from .paths import check_folders, check_work_folder, resolve_input_folders  # noqa: E402
from .group_level import run_group, run_reports_only  # noqa: E402
from .preflight import (REPORTS_LOCK, folder_lock, lock_participants, participant_locks, preflight,  # noqa: E402
                        remove_created, remove_if_empty, without_flock_note)
from .reporting import build_reports, print_reports, print_same_inputs, print_summary  # noqa: E402
from .selection import collect_jobs, inputs_line, refuse_case_twins, refuse_names_too_long  # noqa: E402
from .settings import (absolute_paths, fit_memory_to_spheres, resolve_settings, sphere_sizes, validate_arguments,  # noqa: E402
                       validate_resources)  # noqa: E402

__all__ = ["main", "run_participant", "run_group", "run_reports_only"]

_PROG = "geomorph-bids"


# ------------------------------------------------------------------------------ participant level

def _run_workflow(jobs: list, config, args, crashes: Path, failed_subjects: set[str],
                  plugin: tuple[str, dict]) -> tuple[bool, list[Failure], dict[str, Path], dict[str, float]]:
    """Process ``jobs``: the Nipype workflow with ``plugin`` (name, plugin_args: :func:`plugin_settings`),
    or batch mode (``config.batch_size``). Returns
    (whether Nipype reported a crash, failures it reported without a crash file, the reports
    batch mode built on the way, seconds per stage). Failures with a crash file (Nipype's, or
    batch mode's in the same format) are read from ``crashes`` by the caller."""
    todo = [(j, h) for j in jobs for h in sorted(j.inputs.hemis)]
    if not todo:
        return False, [], {}, {}
    if config.batch_size:
        from ..batch.pipeline import run_batch

        run = run_batch(jobs, config, crashes, stop_on_first_crash=args.stop_on_first_crash,
                        failed_subjects=failed_subjects, log=lambda line: say(line, flush=True),
                        show_warning=warning_printer(_PROG))
        say(f"batch mode: registered {run.registered} hemisphere(s) in {int(run.seconds['workers'])} worker "
            f"process(es), {config.batch_size} per registration batch; {run.failed} failed; "
            + (f"{len(run.not_started)} not started after a write the disk refused; " if run.not_started else "")
            + f"{run.reused} already done", flush=True)
        for line in run.report_warnings:
            say(f"{_PROG}: warning: {line}", file=sys.stderr)
        if run.worker_deaths:  # a run that still ends well: said once, so that a kill or the OOM killer is not lost
            say(f"{_PROG}: note: a batch worker process died {run.worker_deaths} time(s) (killed, or out of "
                f"memory?); the {run.rerun} hemisphere(s) in flight then were tried again, one chunk at a "
                "time (if it was memory: a smaller --batch-size or --nprocs needs less)", file=sys.stderr)
        unrecorded = [Failure(subject, session, hemi, f"{readable(error)} ({note})")
                      for (subject, session, hemi), error, note in run.unrecorded]
        sides: dict[tuple[str, str | None, str], list[str]] = {}  # both hemispheres not started: one line
        for (subject, session, hemi), why in run.not_started:
            sides.setdefault((subject, session, why), []).append(hemi)
        unrecorded += [Failure(subject, session, ",".join(sorted(hemis)), why)
                       for (subject, session, why), hemis in sides.items()]
        return False, unrecorded, run.reports, run.seconds
    from ..workflows import init_geomorph_wf

    jobs = [left for left in (_to_register(j, config) for j in jobs) if left is not None]
    crashed: list[Failure] = []
    size = workflow_chunk(config.nprocs)
    chunks = range(0, len(jobs), size)
    for k, start in enumerate(chunks, 1):  # one Nipype graph per chunk of participants
        chunk = jobs[start:start + size]
        if len(chunks) > 1:  # Nipype is quiet: the one sign of progress in a long cohort run
            which = _label(chunk[0]) + (f" to {_label(chunk[-1])}" if len(chunk) > 1 else "")
            say(f"workflow: graph {k} of {len(chunks)}: subject/session(s) {start + 1}-{start + len(chunk)} of "
                f"{len(jobs)} ({which})", flush=True)
        wf = init_geomorph_wf(chunk, config)
        crash_folder_setting(wf, crashes)
        try:
            wf.run(plugin=plugin_runner(plugin))
        except RuntimeError as exc:  # nipype: "Workflow did not execute cleanly"
            crashed = crashed or [Failure("*", None, "*", " ".join(str(exc).split()))]
            if args.stop_on_first_crash:  # Nipype raised at once, its pool still running the other nodes:
                stop_children()  # none may write once the outputs are checked and the locks released
                break
        except OSError as exc:  # Nipype itself could not write (a full disk: even its crash file failed)
            stop_children()  # no worker may go on writing once the outputs are checked
            return True, [Failure("*", None, "*", f"the run stopped: {describe_os_error(exc)}")], {}, {}
    return bool(crashed), crashed, {}, {}


#: why a hemisphere has no outputs after ``--stop-on-first-crash`` ended the run (both modes)
_CUT_SHORT = ("--stop-on-first-crash ended the run at the first failure; rerun without it (or once that one is "
              "fixed) to do the rest")


def _label(job) -> str:
    """``sub-X`` or ``sub-X ses-Y``: a subject/session job as the summary names it."""
    return f"sub-{job.subject}" + (f" ses-{job.session}" if job.session else "")


def workflow_chunk(nprocs: int) -> int:
    """How many subject/session jobs one Nipype graph of the workflow mode holds: ``max(64, 16 *
    nprocs)``. Larger cohorts run as consecutive graphs of that many, so the scheduler's work per
    round, the main process's memory (about 0.35 MB per participant's nodes) and the graph's build
    time stay those of one chunk, and a chunk's outputs are final before the next starts. Before,
    one graph of 2,000 participants took 27 s to build and expand and 0.7 GB, and wrote its first
    outputs only near the end. Nipype's cache is per participant, so a rerun resumes as before."""
    return max(64, 16 * max(1, nprocs))


def _clean_leftovers(output_dir: Path) -> None:
    """Remove what killed runs left in the output folder: the sinks' staging folder and the
    temporary files of the atomic writes (called only when no other participant run is active;
    the temporary files only when no group level or ``--reports-only`` is writing either: theirs
    would be removed in flight)."""
    from ..results.writer import STAGING_DIR

    shutil.rmtree(output_dir / STAGING_DIR, ignore_errors=True)
    with folder_lock(output_dir, REPORTS_LOCK, wait=False, required=False) as alone:
        for folder in (output_dir, output_dir / LOGS) if alone else ():
            for tmp in [*folder.glob(".*.tmp"), *folder.glob(".geomorph-probe-*")]:
                tmp.unlink(missing_ok=True)


def _stat(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _check_cifti(jobs: list, config, failed_keys: set, crashed: bool, before: dict,
                 cut_short: bool = False) -> list[Failure]:
    """``--cifti-output``: a subject/session whose CIFTI file is missing fails (both hemispheres,
    added to ``failed_keys``; ``cut_short``: ``--stop-on-first-crash`` ended the run, which is said
    instead of the missing files); one with a failed hemisphere keeps no CIFTI file this run wrote
    (one an earlier run wrote stays, as its hemispheres' files do: :func:`_discard`)."""
    from ..derivatives import sidecar
    from ..workflows.outputs import cifti_output

    out = []
    for job in jobs:
        path = cifti_output(job, config)
        if path is None:
            continue
        keys = {(job.subject, job.session, h) for h in ("L", "R")}
        files = [path, sidecar(path)]
        if not keys & failed_keys and not all(p.is_file() for p in files):
            missing = ", ".join(p.name for p in files if not p.is_file())
            out.append(Failure(job.subject, job.session, "L,R", f"not finished: {_CUT_SHORT}" if cut_short
                               else f"outputs missing after the run: {missing}"
                               + (" (the run was stopped by another crash)" if crashed else "")))
            failed_keys |= keys
        if keys & failed_keys and _written(path, before):
            for p in files:
                p.unlink(missing_ok=True)
    return out


def _snapshot(jobs: list, config) -> dict[Path, tuple | None]:
    """``_stat`` of every file the hemispheres of ``jobs`` (and their CIFTI files) may write,
    before the run: what an earlier run left, so that a failure removes only this run's files."""
    from ..workflows import hemi_outputs
    from ..workflows.outputs import cifti_output

    paths = [p for job in jobs for h in job.inputs.hemis.values() for p in hemi_outputs(h, config).files()]
    paths += [p for p in (cifti_output(job, config) for job in jobs) if p is not None]
    return {p: _stat(p) for p in paths}


def _registered_before(work_dir: Path, job, hemi: str, since: float) -> bool:
    """Workflow mode: whether Nipype took hemisphere ``hemi`` of ``job``'s registration from its
    cache, computed before ``since`` (this run's start, seconds since the epoch) by an earlier run,
    one killed before its outputs were written included (its seconds are that run's)."""
    try:
        return _register_result(work_dir, job, hemi).stat().st_mtime < since
    except OSError:
        return False


def _to_register(job, config):
    """Workflow mode: ``job`` less the hemispheres whose outputs are this run's already
    (:func:`~geomorph_bids.workflows.outputs.reusable`: a work folder purged, another ``-w``, after batch
    mode, an output folder moved, or a work folder whose registration node has since run with other
    settings: it holds one result per hemisphere, the last run's, and Nipype registered again), or None when
    none is left; with ``--cifti-output`` a subject/session goes whole (its file is built from both
    hemispheres' maps), and is left out only with its CIFTI file current."""
    from dataclasses import replace

    from ..workflows.outputs import cifti_is_current, cifti_output, reusable

    hemis = job.inputs.hemis
    done = {hemi for hemi, h in hemis.items() if reusable(h, config)}
    if not done:
        return job
    if cifti_output(job, config) is not None:
        return None if done == set(hemis) and cifti_is_current(job, config) else job
    left = {hemi: h for hemi, h in hemis.items() if hemi not in done}
    return replace(job, inputs=replace(job.inputs, hemis=left)) if left else None


def _register_result(work_dir: Path, job, hemi: str) -> Path:
    """Nipype's result file of the registration node of hemisphere ``hemi`` of ``job``."""
    return (Path(work_dir) / TOP_WF_NAME / subject_wf_name(job.subject, job.session) / hemi_wf_name(hemi)
            / "register" / "result_register.pklz")


def _written(path: Path, before: dict[Path, tuple | None]) -> bool:
    """Whether this run wrote (or replaced) ``path``: it exists, and not as it was before."""
    now = _stat(path)
    return now is not None and now != before.get(path)


def _discard(outputs, before: dict[Path, tuple | None]) -> None:
    """Take back a failed or stopped hemisphere's outputs (``outputs``: its
    :class:`~geomorph_bids.derivatives.HemisphereOutputs`) so that it is there whole or not at
    all, without destroying an earlier run's work: when this run wrote none of its files, they
    stay as an earlier run left them; otherwise every file of this template goes, and the native
    files every template shares go only if this run wrote them."""
    files = outputs.files()
    written = {p for p in files if _written(p, before)}
    if not written:
        return
    shared = outputs.shared()
    for p in files:
        if p in written or p not in shared:
            p.unlink(missing_ok=True)


def _remove_stale(outputs, job, cifti: Path | None) -> None:
    """A hemisphere registered anew: remove what earlier runs with other options derived from
    its previous registration (:meth:`~geomorph_bids.derivatives.HemisphereOutputs.others`:
    maps at another density, the sphere under sMRIPrep's names that fMRIPrep would otherwise
    take for this result; and the subject/session's CIFTI files of this template other than
    ``cifti``, the one this run writes), with one line naming them."""
    from ..derivatives import CIFTI_FEATURES, sidecar

    pattern = CIFTI_FEATURES.name(outputs.entities, None, outputs.space, "*")
    ciftis = [p for p in outputs.anat.glob(pattern) if p != cifti]
    stale = outputs.others() + [q for p in ciftis for q in (p, sidecar(p)) if q.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    named = [p.name for p in stale if p.suffix != ".json"]  # (with their sidecars)
    if named:
        say(f"{_PROG}: {_label(job)} hemi-{outputs.hemi}: removed {len(named)} output(s) an earlier run "
            f"derived from the previous registration: {', '.join(named)}", file=sys.stderr)


def _smriprep_names(template: str) -> str:
    """The entities of the spheres ``--fmriprep-compat`` writes for ``template``, in words."""
    from ..derivatives import FMRIPREP_SPHERES

    return " and ".join(f"space-{k.space_label}_desc-{k.desc}" for k in FMRIPREP_SPHERES[template].values())


def _unpaired_spheres(jobs: list, config, withheld: list[str]) -> list[str]:
    """``sub-X [ses-Y] has hemi-H's only`` for each subject/session of ``jobs`` whose spheres under
    sMRIPrep's names are in the output folder for one hemisphere only (``--hemi``, a failed or
    flagged other hemisphere): sMRIPrep's query (``collect_derivatives``) takes them only in pairs.
    Those named in ``withheld`` (the flagged hemispheres' note) are left out."""
    from ..derivatives import entities, hemisphere_outputs

    if not config.fmriprep_compat:
        return []
    out = []
    for job in jobs:
        first = next(iter(job.inputs.hemis.values()), None)
        if first is None:
            continue
        have = [hemi for hemi in ("L", "R") if all(p.is_file() for p in hemisphere_outputs(
            config.output_dir, first.subject, first.session, hemi, config.template.label, config.density,
            fmriprep=True).fmriprep_spheres.values())]
        where = entities(first.subject, first.session).replace("_", " ")
        if len(have) == 1 and not any(w.startswith(where + " hemi-") for w in withheld):
            out.append(f"{where} has hemi-{have[0]}'s only")
    return out


def _cifti_not_written(jobs: list, config, failed_keys: set) -> list[str]:
    """``sub-X [ses-Y] (hemi-R failed)`` for each subject/session of ``jobs`` whose ``--cifti-output``
    dscalar was not written because one hemisphere failed (in discovery, or in the run) while the
    other was written: the dscalar holds both hemispheres, and a user of it found none, with a FAILED
    line about another file."""
    from ..derivatives import entities

    if not config.cifti:
        return []
    out = []
    for job in jobs:
        hemis = job.inputs.hemis
        written = [h for h in sorted(hemis) if (job.subject, job.session, h) not in failed_keys]
        failed = [h for h in ("L", "R") if h not in written]
        if written and failed:
            where = entities(job.subject, hemis[written[0]].session).replace("_", " ")
            out.append(f"{where} (hemi-{'/'.join(failed)} failed)")
    return out


def _withheld_note(withheld: list[str], template: str) -> str:
    """The line that says which flagged hemispheres' spheres are not written under sMRIPrep's names
    (``withheld``: ``sub-X [ses-Y] hemi-H`` each) and what fMRIPrep does without them."""
    names = _smriprep_names(template)
    return (f"{_PROG}: note: {len(withheld)} flagged hemisphere(s) not written under sMRIPrep's names ({names}), "
            f"so that fMRIPrep's --derivatives does not take a registration the quality gates rejected (it takes them "
            f"for both hemispheres or none, and computes its own for that subject/session): {', '.join(withheld)}; "
            f"review the desc-geomorph sphere and rerun with the quality options that pass it to write them")


def _mark_kept(outputs, failures: list[Failure], key: tuple, run_id: str) -> bool:
    """A failed hemisphere whose earlier outputs are whole and kept (:func:`_discard`): record
    the failure (the first for ``key``, (subject, session, hemi)) in their metrics document,
    so that the group level reports them as stale, not ok. Returns whether it was recorded."""
    from ..results.metrics import mark_latest_run_failed
    from ..workflows.outputs import expected_files

    if not all(p.is_file() for p in expected_files(outputs)):
        return False
    reason = next((f.reason for f in failures if (f.subject, f.session) == key[:2] and key[2] in f.hemi.split(",")),
                  "failed")
    return mark_latest_run_failed(outputs.metrics, run_id, reason)


def _warn_replaced(jobs: list, config) -> None:
    """One warning line per subject/session whose outputs of this template (its metrics JSON)
    were made with other settings than this run's (model, method, features, template maps, the
    build of geomorph-bids:
    :func:`~geomorph_bids.workflows.outputs.run_settings`), naming each setting, old -> new:
    this run replaces them under the same names, and the folder would otherwise hold subjects
    made by different methods without a word."""
    from ..results.metrics import read_document
    from ..workflows import hemi_outputs
    from ..workflows.outputs import recorded_settings, run_settings

    for job in jobs:
        changed: dict[str, tuple[str, str]] = {}
        where = ""
        for hemi, inputs in sorted(job.inputs.hemis.items()):
            outputs = hemi_outputs(inputs, config)
            doc = read_document(outputs.metrics)
            if doc is None:
                continue
            where = where or outputs.entities.replace("_", " ")
            now = run_settings(config, hemi)
            for key, old in recorded_settings(doc).items():
                if key in now and old != now[key]:
                    changed.setdefault(key, (old, now[key]))
        if changed:
            say(f"{_PROG}: warning: {where}: its space-{config.template.label} outputs were made with other "
                f"settings ({'; '.join(f'{k} {old} -> {new}' for k, (old, new) in changed.items())}); they are "
                "being replaced (give another output folder to keep both)", file=sys.stderr)


def _remove_partial(jobs: list, config, before: dict[Path, tuple | None]) -> None:
    """Take back the outputs of every hemisphere of ``jobs`` whose set is incomplete (a run
    stopped while writing it; :func:`_discard`)."""
    from ..workflows import hemi_outputs
    from ..workflows.outputs import expected_files

    for job in jobs:
        for hemi in job.inputs.hemis:
            outputs = hemi_outputs(job.inputs.hemis[hemi], config)
            if not all(p.is_file() for p in expected_files(outputs)):
                _discard(outputs, before)


def _installed_version(name: str) -> str | None:
    """The installed version of distribution ``name`` (its metadata; nothing imported), or None."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _fslr_only_hint(folder: Path) -> str:
    """What a ``--derivatives`` folder without subjects tells an HCP user whose subjects have only
    fsLR meshes (no ``MNINonLinear/Native``): what is read instead; empty when there are none."""
    from ..io.discover import hcp_subjects_without_native

    names = hcp_subjects_without_native(folder)
    if not names:
        return ""
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    one = len(names) == 1
    return (f"; {shown} {'holds' if one else 'hold'} MNINonLinear/ without Native/: {'its' if one else 'their'} "
            "fsaverage_LR32k/ and 164k_fs_LR maps are already on fsLR (HCP's own registration); geomorph-bids "
            "registers the native mesh, MNINonLinear/Native/<S>.L.sphere.native.surf.gii and "
            "<S>.L.sulc.native.shape.gii, as HCP's PostFreeSurfer writes them")


def run_participant(args: argparse.Namespace) -> int:
    """The participant level: decide the folders and settings, find and check the inputs, lock
    the participants, run the workflow, report every hemisphere (failed, flagged or done) and
    build the reports."""
    from ..results.metrics import clear_latest_run_failed, read_document
    from ..results.writer import flagged_in
    from ..workflows import hemi_outputs
    from ..workflows.outputs import cifti_output, expected_files, withheld_spheres

    clock = _Clock()
    output_dir = args.output_dir.absolute()
    work_dir = args.work_dir.absolute()
    inputs = resolve_input_folders(args, output_dir)
    check_folders(inputs, output_dir, work_dir, args.participant_label)  # before anything is created or written
    for given, read in inputs.nested:
        fs = given / "freesurfer"
        say(f"{_PROG}: note: {given} holds its subjects in {read.name}/ (sMRIPrep writes OUTPUT_DIR/{read.name}/sub-*): "
            f"reading {read}; fMRIPrep needs that folder too: --derivatives {read.name}={shell_word(read)}"
            + (f" --fs-subjects-dir {shell_word(fs)}" if fs.is_dir() else ""), file=sys.stderr)
    for name, folder in inputs.barren:
        say(f"{_PROG}: warning: --derivatives {name}={folder} holds no subject (no sub-* folder, HCP or FreeSurfer "
            f"subject, nor a smriprep/ or fmriprep/ folder with sub-*): nothing is read from it"
            f"{_fslr_only_hint(folder)}", file=sys.stderr)
    if not getattr(args, "batch_size", None):  # batch mode keeps no pickles (its records are JSON)
        check_work_folder(work_dir, args.participant_label or None)
    created = preflight(output_dir, work_dir, args.participant_label or (),
                        nipype=not getattr(args, "batch_size", None))
    try:  # bad arguments or inputs found here: leave no (empty) folder behind
        if getattr(args, "batch_size", None):  # the workers' imports (seconds) beside the settings and discovery
            from ..batch.pool import start_fork_server

            start_fork_server(reports=True)  # the reports' modules too: drawn unless deferred (~1 s once)
        config = resolve_settings(args, output_dir, work_dir, inputs.links())
        # read here, not when the workflow starts: a missing or broken file left the output folder described
        plugin = plugin_settings(args)
        clock.lap("settings")
        jobs, failures = collect_jobs(args, config.features, inputs, forbidden=(output_dir, work_dir))
        jobs, too_long = refuse_names_too_long(jobs, config)  # found later, it ended the whole run
        jobs, twins = refuse_case_twins(jobs, config.output_dir)  # bert and Bert: one folder on macOS
        failures += too_long + twins
        clock.lap("discovery")
    except BaseException:
        remove_created(created)
        raise
    if not jobs:  # every label unknown, every input refused: nothing to lock or write, no folder left behind
        remove_created(created)
        print_summary([], failures, output_dir, _PROG, [])
        return run_exit_code(len(failures), 0)
    # --mem-gb, ulimit -v, and batch mode's --nprocs and --batch-size against the largest sphere found
    if fit_memory_to_spheres(args, sphere_sizes(h for j in jobs for h in j.inputs.hemis.values()), _PROG):
        config = replace(config, nprocs=args.nprocs, batch_size=int(getattr(args, "batch_size", None) or 0),
                         omp_nthreads=min(config.omp_nthreads, args.nprocs))
    run_id = uuid.uuid4().hex[:8]
    crashes = crash_dir(output_dir, run_id)
    # released by the kernel if this process dies; the workflow's in the work folder too: runs into other
    # output folders sharing it run a participant's common steps in one cache folder
    with participant_locks(output_dir, None if config.batch_size else work_dir) as locks:
        mine, skipped, later = lock_participants(locks, jobs, getattr(args, "lock_wait", False), _PROG)
        if locks.without_flock():  # NFS without lockd, Lustre without -o flock: .held files
            say(without_flock_note(locks.without_flock(), _PROG), file=sys.stderr, flush=True)
        failures += skipped
        started = list(mine)
        before = _snapshot(mine, config)  # what earlier runs left: a failure takes back only this run's files
        _warn_replaced(mine, config)
        citation = None
        try:
            if mine or later:  # a run that processes nobody (all skipped) must not redescribe others' outputs
                write_dataset_description(output_dir, args.bids_dir, inputs.links())
                for line in write_bids_extras(output_dir):  # README, .bidsignore (the validator's NOT_INCLUDED)
                    say(f"{_PROG}: warning: {line}", file=sys.stderr)
                # the hemispheres asked for, and the Nipype that runs the workflow (batch mode runs without it)
                citation = add_citation(output_dir, config, tuple(args.hemi),
                                        None if config.batch_size else _installed_version("nipype"))
            configure_nipype(crashes, args.verbose, args.stop_on_first_crash)
            names = {subject_wf_name(j.subject, j.session): (j.subject, j.session) for j in jobs}
            n_todo = sum(len(j.inputs.hemis) for j in jobs)
            # the folders as they are named (an ESC escaped, two spaces kept: say's keep_spaces)
            say(f"{_PROG} {__version__}: {n_todo} hemisphere(s) of {len(jobs)} subject/session(s) -> {output_dir} "
                f"(template {config.template.label}, density {config.density}, model {config.model.name}"
                f"{' alone (--no-optimise)' if config.model.optimise is False else ''}"
                f"{' + full optimisation (--refine full)' if not isinstance(config.model.optimise, bool) else ''}, "
                f"device {config.device}, work dir {work_dir})", flush=True, keep_spaces=True)
            said = inputs_line(mine)  # where each subject is read from (none when every input was refused)
            if said:
                say(said, flush=True, keep_spaces=True)
            # the hemispheres that will register: one no subject has (all lh.*) takes no template maps
            hemis = sorted({config.model.template_hemi(h) for j in jobs for h in j.inputs.hemis}
                           or {config.model.template_hemi(h) for h in args.hemi})
            print(f"template maps: {config.template.describe(config.channels, hemis, vertices=True)}", flush=True)
            low: dict[str, list[str]] = {}  # note -> its hemispheres (the bundled maps, or coarse ones found here)
            for h in hemis:
                note = config.template.low_resolution_note(config.channels, h)
                if note:
                    low.setdefault(note, []).append(h)
            for note, which in low.items():  # which hemispheres, when the full template serves the others
                say(f"note: {'' if which == hemis else ' '.join(f'hemi-{h}' for h in which) + ' '}{note}", flush=True)
            known_failed = {f.subject for f in failures}
            clock.lap("start")
            t_run = time.time()  # (a registration Nipype's cache holds from before this is reused)
            crashed, run_failures, reports, stages = _run_workflow(mine, config, args, crashes, known_failed, plugin)
            if later:
                for subject in sorted({j.subject for j in later}):  # sorted: no deadlock between waiting runs
                    why = locks.wait_lock(f"sub-{subject}")
                    if why:  # a dead holder is never waited for
                        failures += [Failure(j.subject, j.session, ",".join(sorted(j.inputs.hemis)) or "L,R",
                                             f"not processed: its lock {locks.path('sub-' + subject)} is stale: {why}")
                                     for j in later if j.subject == subject]
                later = [j for j in later if locks.holds(f"sub-{j.subject}")]
                before.update(_snapshot(later, config))  # after the other run that held them wrote its files
                _warn_replaced(later, config)
                started += later
                c2, f2, r2, s2 = _run_workflow(later, config, args, crashes, known_failed, plugin)
                crashed, run_failures, reports = crashed or c2, run_failures + f2, {**reports, **r2}
                stages = {k: stages.get(k, 0.0) + s2.get(k, 0.0) for k in {*stages, *s2}}
            clock.lap("processing")
        except Interrupted as exc:
            exc.acknowledge()  # the signal reached us: no more re-deliveries
            exc.stopped += stop_children()  # before the locks are released and the partial outputs removed
            _remove_partial(started, config, before)
            shutil.rmtree(crashes, ignore_errors=True)  # node "failures" the signal itself caused
            locks.when_alone(lambda: _clean_leftovers(output_dir))  # the sinks' staging folder, as a finished run
            raise
        done = mine + later
        stopped = next((f.reason for f in run_failures if f.reason.startswith("the run stopped: ")), "")
        if crashes.is_dir():
            failures += crash_failures(crashes, names)
        elif crashed and not stopped:
            failures += run_failures
        if config.batch_size:  # failures whose crash file could not be written (a disk without a byte left)
            failures += run_failures
        failures = one_per_hemisphere(failures)
        failed_keys = {(f.subject, f.session, h) for f in failures for h in f.hemi.split(",")}
        # --stop-on-first-crash: the hemispheres it left undone fail on a short line that says why
        cut_short = args.stop_on_first_crash and (crashed or crashes.is_dir()
                                                  or bool(config.batch_size and run_failures))
        remove_if_empty(crashes)  # a crash file that could not be written (a full disk) left its folder
        failures += _check_cifti(done, config, failed_keys, crashed, before, cut_short)
        rows, flagged, kept, withheld = [], [], [], []
        for job in done:
            for hemi in sorted(job.inputs.hemis):
                outputs = hemi_outputs(job.inputs.hemis[hemi], config)
                # read once: the completeness check, the verdict and the withheld note all need it
                doc = read_document(outputs.metrics)
                expected = expected_files(outputs, flagged_in(doc))
                key = (job.subject, job.session, hemi)
                if key not in failed_keys and not all(p.is_file() for p in expected):
                    missing = [p.name for p in expected if not p.is_file()]
                    failures.append(Failure(job.subject, job.session, hemi, f"not written: {stopped[17:]}" if stopped
                                            else f"not finished: {_CUT_SHORT}" if cut_short
                                            else f"outputs missing after the run: {', '.join(missing)}"
                                            + (" (the run was stopped by another crash)" if crashed else "")))
                    failed_keys.add(key)
                if key in failed_keys:  # no partial outputs for a failed hemisphere (this run holds its lock)
                    _discard(outputs, before)
                    if _mark_kept(outputs, failures, key, run_id):
                        kept.append(f"sub-{job.subject}{' ses-' + job.session if job.session else ''} hemi-{hemi}")
                    continue
                if _written(outputs.registered_sphere, before):
                    _remove_stale(outputs, job, cifti_output(job, config))
                if doc is None:  # not JSON: its error, as before
                    doc = json.loads(outputs.metrics.read_text())
                verdict = QualityVerdict.from_dict(doc.get("quality"))
                if verdict.flagged:  # named by the session its outputs are written under
                    flagged.append(Failure(job.subject, job.inputs.hemis[hemi].session or job.session, hemi,
                                           verdict.line()))
                    if withheld_spheres(outputs, flagged_in(doc)):
                        withheld.append(f"{outputs.entities.replace('_', ' ')} hemi-{hemi}")
                reused = not _written(outputs.metrics, before) or (
                    not config.batch_size and _registered_before(work_dir, job, hemi, t_run))
                clear_latest_run_failed(outputs.metrics, doc)  # this run succeeded: its outputs are current
                rows.append((job, hemi, doc["registration"], reused, verdict.flagged))
        # nothing registered by this run (every hemisphere failed, or each was taken as an earlier run's: reused):
        # its paragraph describes no output; reused outputs keep the text of the run that made them, where there is one
        if citation is not None and (not rows or (all(row[3] for row in rows) and citation.before is not None)):
            citation.undo()
        locks.when_alone(lambda: _clean_leftovers(output_dir))
        print_summary(rows, failures, output_dir, _PROG, flagged)
        print_same_inputs(rows, output_dir, _PROG)
        if withheld:
            say(_withheld_note(withheld, config.template.label), file=sys.stderr)
        unpaired = _unpaired_spheres(done, config, withheld)
        if unpaired:
            say(f"{_PROG}: note: fMRIPrep takes the spheres under sMRIPrep's names "
                f"({_smriprep_names(config.template.label)}) only for both hemispheres together: "
                f"{'; '.join(unpaired)}; it runs its own MSMSulc there (register the other hemisphere too)",
                file=sys.stderr)
        no_cifti = _cifti_not_written(done, config, failed_keys)
        if no_cifti:
            say(f"{_PROG}: note: --cifti-output writes a subject/session's dscalar from both hemispheres: none for "
                f"{', '.join(no_cifti)}; it is written when a run registers both", file=sys.stderr)
        if kept:
            say(f"{_PROG}: note: {len(kept)} failed hemisphere(s) keep an earlier run's outputs, marked stale for "
                f"the group level until a run of them succeeds: {', '.join(kept)}", file=sys.stderr)
        clock.lap("summary")
        subjects = sorted({job.subject for job in done})  # a subject with a failure: its report may change
        if config.reports == "deferred":
            say(f"reports deferred: build them with {_PROG} {shell_word(args.bids_dir)} {shell_word(output_dir)} "
                "participant --reports-only", keep_spaces=True)
        else:
            todo = [s for s in subjects if s not in reports]  # batch mode built the others on the way
            made = build_reports(output_dir, todo, _PROG, reuse=set(subjects) - {f.subject for f in failures},
                                 workers=config.nprocs)
            print_reports(sorted([*made, *(reports[s] for s in subjects if s in reports)]))
        clock.lap("reports")
        clock.save(work_dir / f"timings-{run_id}.json", mode="batch" if config.batch_size else "workflow",
                   hemispheres=sum(len(j.inputs.hemis) for j in done), nprocs=config.nprocs, stages=stages)
    return run_exit_code(len(failures), len(flagged))


class _Clock:
    """Wall seconds of each phase of a participant run, written as JSON to the work folder
    (``timings-<run>.json``: where a run's time went; ``started``: when ``main`` began, in
    seconds since the epoch, so that the interpreter's start-up can be measured from outside)."""

    def __init__(self) -> None:
        import time

        self._time = time
        self.started = time.time()
        self._last = time.perf_counter()
        self.phases: dict[str, float] = {}

    def lap(self, phase: str) -> None:
        now = self._time.perf_counter()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self._last
        self._last = now

    def save(self, path: Path, **extra) -> None:
        from ..io.atomic import atomic_write_text

        doc = {"started": self.started, "phases": self.phases, **extra}
        try:
            atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")
        except OSError:  # the record is a convenience: never fail a finished run over it
            pass


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 failures or bad input, 2 usage, 3 flagged,
    128 + N stopped by signal N)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    refuse_options_that_do_not_apply(parser, args)  # a usage error, before anything is read or written
    if problem := current_folder_problem():  # before any path is made absolute, or Nipype imported
        return error_exit(_PROG, problem)
    try:
        absolute_paths(args)
    except argparse.ArgumentTypeError as exc:  # --derivatives NAME=PATH with an empty part
        parser.error(str(exc))
    with reader_may_go_away(), one_line_warnings(_PROG), stop_on_signals():
        drop_unusable_thread_settings(_PROG)  # before torch is imported
        threads_within_usable_cpus()
        threads_wait_passively()
        temporary_folder_in(args.work_dir)  # a read-only container: none but in the (bound) work folder
        matplotlib_config_in_tmp()  # before the reports import it
        try:
            validate_arguments(args)
            registers = not args.reports_only if args.analysis_level == "participant" else bool(args.build_template)
            # the participant level fits the memory once its inputs are found (fit_memory_to_spheres): the
            # figures are then those of the largest sphere
            validate_resources(args, _PROG, fit_memory=not (registers and args.analysis_level == "participant"))
            if registers and (problem := address_space_problem()):  # before torch fails to load in a worker
                return error_exit(_PROG, problem)
            if args.analysis_level == "group":
                return run_group(args)
            if args.reports_only:
                return run_reports_only(args)
            return run_participant(args)
        except Interrupted as exc:
            exc.acknowledge()
            n = exc.stopped + stop_children()
            return interrupted(_PROG, exc.name, exc.signum,
                               f"stopped {n} worker process(es) and released the locks; finished hemispheres are "
                               "kept, partial ones removed: run the same command again to do the rest")
        except HANDLED as exc:
            return error_exit(_PROG, exc)


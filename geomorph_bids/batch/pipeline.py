"""Batch mode's scheduler: the whole cohort in one pool of worker processes, no Nipype.

:func:`run_batch` cuts the pending hemispheres (subject by subject) into chunks of
``config.batch_size`` and keeps ``config.nprocs`` workers busy with them
(:func:`geomorph_bids.batch.tasks.run_chunk`: read, register the chunk together, resample and
write each hemisphere), never more than one chunk per worker queued ahead, so memory does not
grow with the cohort. When every hemisphere of a participant is done, its ``--cifti-output`` file
is written (by the scheduler) and its report is built in the same pool, beside the next chunks'
registrations (``config.reports == "parallel"``). A
hemisphere that fails is recorded as a crash file in Nipype's format in the run's crash folder
(the command line reports it like a Nipype crash). A worker that dies (out of memory, killed)
takes the pool down: a fresh pool reruns the chunks that were in flight one at a time, and the
chunk whose worker dies alone fails (its hemispheres only); the others go on. A write that a full
disk or quota refused (``ENOSPC``, ``EDQUOT``; a file system remounted read-only) starts no more
chunks: every hemisphere not started fails at once, unregistered (:attr:`BatchRun.not_started`), and
what was written is kept.

On a GPU every worker holds the device only around its chunk's network and optimisation
(:func:`geomorph_bids.engine.gpu_slot.gpu_lock`): while one worker uses the GPU, the others
read, pre-align, invert, measure and write, which is what keeps the GPU busy; size
``--nprocs`` to the CPU cores and ``--batch-size`` to what the GPU holds.
"""

from __future__ import annotations

import errno
import os
import time
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..crashfiles import crash_file, hemi_wf_name, subject_wf_name
from ..derivatives import label_key, sidecar
from ..io.atomic import atomic_write_text
from ..workflows.config import RunConfig, SubjectJob
from ..workflows.outputs import (cifti_is_current, cifti_output, expected_files, hemi_outputs, hemisphere_files,
                                 hemisphere_info, needs_fslr_sphere, reusable, write_cifti)
from .pool import stop_pool, worker_pool
from .state import is_done, record_path, stamp
from .tasks import (STAGES, ChunkSettings, HemisphereTask, Outcome, ReportOutcome, build_report,
                    incomplete_report_line, run_chunk)

__all__ = ["BatchRun", "plan_tasks", "chunk_tasks", "run_batch"]

#: the crash files' top-level "workflow" name in batch mode
BATCH_NODE = "geomorph_batch"

#: a hemisphere's write failed with one of these (a full disk, a quota, a file system remounted read-only): no later
#: write of the run can succeed, so no more registrations are started
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


@dataclass
class BatchRun:
    """What :func:`run_batch` did.

    Attributes
    ----------
    registered : hemispheres registered and written in this run.
    reused : hemispheres skipped (done by an earlier run with the same inputs and settings).
    failed : hemispheres that failed (each has a crash file).
    reports : subject -> its report (built, or kept when current) during the run.
    report_warnings : one line per report that could not be written.
    unrecorded : failures whose crash file could not be written (a disk without a byte left):
        ((subject, session, hemi), its error line, "node STAGE; why its crash file is missing"), for
        the command line to report as it reports the crash files.
    not_started : hemispheres never registered because an earlier write found the disk full
        (:data:`DISK_ERRNOS`): ((subject, session, hemi), why, on one line); no crash file (nothing crashed).
    worker_deaths : how many times a worker process died (killed, out of memory) and took the pool down.
    rerun : hemispheres whose chunk was in flight when a worker died and that were registered again.
    seconds : worker seconds per stage summed over hemispheres (``read``, ``register``,
        ``resample``, ``write``), ``report`` (summed over participants), ``wall`` (the whole
        batch run), ``workers``.
    """

    registered: int = 0
    reused: int = 0
    failed: int = 0
    reports: dict[str, Path] = field(default_factory=dict)
    report_warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    unrecorded: list[tuple[tuple[str, str | None, str], str, str]] = field(default_factory=list)
    not_started: list[tuple[tuple[str, str | None, str], str]] = field(default_factory=list)
    worker_deaths: int = 0
    rerun: int = 0


def plan_tasks(jobs: list[SubjectJob], config: RunConfig) -> tuple[list[HemisphereTask], int]:
    """The hemispheres of ``jobs`` still to do, subject by subject (sessions, then L, R; in natural order,
    as the summary table: ``sub-2``, ``ses-2`` before ``sub-10``, ``ses-10``), and the
    number skipped because an earlier run left them done (:func:`~geomorph_bids.batch.state.is_done` of the work
    folder's record; where there is none, :func:`~geomorph_bids.workflows.outputs.reusable` of the outputs)."""
    tasks, reused = [], 0
    for job in sorted(jobs, key=lambda j: (label_key(j.subject), label_key(j.session))):  # sub-2 before sub-10
        for hemi in sorted(job.inputs.hemis):
            h = job.inputs.hemis[hemi]
            record, expected = record_path(config, h), stamp(config, h)
            # the work folder's record; without one (a fresh or purged work folder, the workflow mode's, a moved
            # output folder), the outputs' own: their metrics JSON records the same inputs and settings
            if (is_done(record, expected, expected_files(hemi_outputs(h, config))) if record.exists()
                    else reusable(h, config)):
                reused += 1
                continue
            tasks.append(HemisphereTask(
                subject=h.subject, session=h.session, hemi=hemi, sphere=Path(h.sphere),
                sphere_reg=Path(h.sphere_reg) if h.sphere_reg else None,
                midthickness=Path(h.midthickness) if h.midthickness else None,
                cortex_mask=Path(h.cortex_mask) if h.cortex_mask else None,
                features={f: Path(h.features[f]) for f in config.features},
                signs={f: h.sign(f) for f in config.features}, files=tuple(hemisphere_files(h, config)),
                info=hemisphere_info(h, config), record=record, stamp=expected, n_vertices=h.n_vertices))
    return tasks, reused


def _crash(crash_dir: Path, outcome: Outcome) -> str | None:
    """Write ``outcome``'s crash file; None when written, else where the failure happened and why its
    crash file is missing (the disk that failed a hemisphere's outputs is full for its crash file
    too: the run goes on, and the command line reports the failure from memory)."""
    subject, session, hemi = outcome.key
    nodes = (BATCH_NODE, subject_wf_name(subject, session), hemi_wf_name(hemi), outcome.stage or "register")
    name, text = crash_file(nodes, outcome.traceback or outcome.error or "unknown error")
    try:
        atomic_write_text(Path(crash_dir) / name, text)
    except OSError as exc:
        from ..errors import describe_os_error

        why = describe_os_error(OSError(exc.errno, exc.strerror))  # (the crash folder is named by the summary)
        return f"node {outcome.stage or 'register'}; its crash file could not be written either: {why}"
    return None


def chunk_tasks(tasks: list[HemisphereTask], size: int,
                share: Callable[[HemisphereTask], int] | None = None) -> deque[list[HemisphereTask]]:
    """``tasks`` in consecutive chunks (registered together) of at most ``size`` places, a hemisphere taking
    ``share(task)`` of them (default: :func:`~geomorph_bids.engine.device.batch_share` of its sphere's vertex count
    (discovery's, else read from its header): 1 up to 163,842 vertices, so ordinary hemispheres go ``size`` at a time; a
    high-resolution one more); one heavier than ``size`` is a chunk of its own."""
    if share is None:
        share = _sphere_share
    out: deque[list[HemisphereTask]] = deque()
    chunk: list[HemisphereTask] = []
    used = 0
    for task in tasks:
        weight = max(1, int(share(task)))
        if chunk and used + weight > size:
            out.append(chunk)
            chunk, used = [], 0
        chunk.append(task)
        used += weight
    if chunk:
        out.append(chunk)
    return out


def _sphere_share(task: HemisphereTask) -> int:
    from ..engine.device import batch_share
    from ..io.discover import surface_vertex_count

    return batch_share(task.n_vertices if task.n_vertices is not None else surface_vertex_count(task.sphere))


def _disk_words(number: int) -> str:
    """``no space left on device (disk full)`` for ``errno.ENOSPC``: an errno of :data:`DISK_ERRNOS` in words."""
    from ..errors import describe_os_error

    return describe_os_error(OSError(number, os.strerror(number)))


def run_batch(jobs: list[SubjectJob], config: RunConfig, crash_dir: Path, *, stop_on_first_crash: bool = False,
              failed_subjects: set[str] | frozenset[str] = frozenset(),
              log: Callable[[str], None] = print, show_warning: Callable[..., None] | None = None) -> BatchRun:
    """Register and write every pending hemisphere of ``jobs`` in a pool of worker processes.

    ``config.batch_size`` hemispheres per chunk (registered together), ``config.nprocs``
    workers with ``config.omp_nthreads`` torch threads each; ``failed_subjects``: participants
    with a failure found before the run (their reports are rebuilt). Failures go to
    ``crash_dir`` as crash files. ``stop_on_first_crash``: no new chunk starts after a failure
    (the hemispheres not started are left without outputs). ``show_warning``: how the workers print a
    warning (:func:`~geomorph_bids.batch.pool.worker_pool`; the command's one-line printer).
    """
    t0 = time.perf_counter()
    run = BatchRun()
    tasks, run.reused = plan_tasks(jobs, config)
    settings = ChunkSettings(config.template, config.model, config.device, config.density,
                             config.templateflow_home, Path(config.output_dir), config.quality,
                             needs_fslr_sphere(config))
    queue = chunk_tasks(tasks, max(1, int(config.batch_size)))
    suspects: deque = deque()  # chunks that were running when a worker died: rerun one at a time
    pending = Counter(t.subject for t in tasks)  # hemispheres not finished, per participant
    failed = set(failed_subjects)
    failed_keys: set[tuple] = set()  # (subject, session, hemi) that failed in this run
    subjects = sorted({j.subject for j in jobs if j.inputs.hemis})
    workers = max(1, min(int(config.nprocs), len(queue) + len(subjects)))
    totals: Counter = Counter()
    done = 0
    disk_full: list[str] = []  # the first write a full disk refused, in words (once there is one)

    def finished(outcomes: list[Outcome]) -> None:
        nonlocal done
        for o in outcomes:
            pending[o.key[0]] -= 1
            totals.update(o.seconds)
            if o.error is None:
                run.registered += 1
            else:
                run.failed += 1
                failed.add(o.key[0])
                failed_keys.add(o.key)
                if o.errno in DISK_ERRNOS and not disk_full:
                    hemi = f"sub-{o.key[0]}{f' ses-{o.key[1]}' if o.key[1] else ''} hemi-{o.key[2]}"
                    disk_full.append(f"{_disk_words(o.errno)} when {hemi} was written")
                note = _crash(crash_dir, o)
                if note is not None:
                    run.unrecorded.append((o.key, o.error or "unknown error", note))
        done += len(outcomes)
        rate = done / max(time.perf_counter() - t0, 1e-9)
        log(f"batch: {done}/{len(tasks)} hemisphere(s) done ({rate:.2f}/s), {run.failed} failed")

    def chunk_failed(chunk: list[HemisphereTask], line: str) -> list[Outcome]:
        """Every hemisphere of a chunk failed with ``line`` (``Type: message``)."""
        return [Outcome(t.key, error=line, stage="register", traceback=line) for t in chunk]

    reports_wanted = config.reports == "parallel"
    report_losses: Counter = Counter()  # per participant: reports lost with a dead worker
    pool = worker_pool(workers, config.omp_nthreads, reports=reports_wanted, show_warning=show_warning)
    running: dict[Future, tuple[str, object]] = {}

    def chunks_running() -> int:
        return sum(kind != "report" for kind, _ in running.values())

    def submit_reports(names: list[str]) -> None:
        if reports_wanted:
            for subject in names:
                fut = pool.submit(build_report, Path(config.output_dir), subject, subject not in failed)
                running[fut] = ("report", subject)

    def ciftis(names: list[str]) -> None:
        """``--cifti-output``: the dscalar of every finished participant's sessions (both hemispheres
        written), here in the scheduler (a few hundredths of a second each); a session with a failed
        hemisphere gets none, nor one whose CIFTI file could not be written."""
        for job in jobs:
            if (job.subject not in names or cifti_output(job, config) is None
                    or any((job.subject, h.session, h.hemi) in failed_keys for h in job.inputs.hemis.values())):
                continue
            try:
                write_cifti(job, config)
            except (OSError, ValueError) as exc:  # a full disk: an earlier file holds the earlier maps, so none
                path = cifti_output(job, config)  # is left (the command line fails the session; a rerun writes it)
                for p in (path, sidecar(path)):
                    p.unlink(missing_ok=True)
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                log(f"batch: sub-{job.subject}: CIFTI file not written: {' '.join(why.split())} ({path})")
                if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS and not disk_full:
                    disk_full.append(f"{_disk_words(exc.errno)} when the CIFTI file of sub-{job.subject} was written")

    def complete(chunk: list[HemisphereTask], outcomes: list[Outcome]) -> None:
        """Record a chunk's outcomes; write the CIFTI files and build the reports of the
        participants it finished."""
        finished(outcomes)
        names = sorted({t.subject for t in chunk if pending[t.subject] == 0})
        ciftis(names)
        submit_reports(names)

    def not_started() -> None:
        """The disk is full: every hemisphere not started fails now, on one line each, without being
        registered (its results could not be kept); what was written stays."""
        left = [t for chunk in (*suspects, *queue) for t in chunk]
        queue.clear()
        suspects.clear()
        why = (f"not registered: {disk_full[0]}, so this run started no more registrations; free space and run the "
               "same command again (what was written is kept and not registered again)")
        for t in left:
            pending[t.subject] -= 1
            failed.add(t.subject)
            failed_keys.add(t.key)
            run.not_started.append((t.key, why))
        log(f"batch: {len(left)} hemisphere(s) not started: {disk_full[0]}")
        names = sorted({t.subject for t in left if pending[t.subject] == 0})
        ciftis(names)
        submit_reports(names)

    def fill() -> None:
        if stop_on_first_crash and run.failed:
            queue.clear()
            suspects.clear()
        if disk_full and (queue or suspects):
            not_started()
        if suspects or any(kind == "alone" for kind, _ in running.values()):
            if suspects and not chunks_running():  # alone, so that a worker dying again names its chunk
                chunk = suspects.popleft()
                running[pool.submit(run_chunk, chunk, settings)] = ("alone", chunk)
            return
        while queue and chunks_running() < workers + 1:  # one queued per worker: flat memory
            chunk = queue.popleft()
            running[pool.submit(run_chunk, chunk, settings)] = ("chunk", chunk)

    try:
        ready = [s for s in subjects if pending[s] == 0]  # nothing to register (resumed): CIFTI if missing, report
        missing = {j.subject for j in jobs if not cifti_is_current(j, config)}  # or older than its maps
        ciftis([s for s in ready if s in missing])
        submit_reports(ready)
        fill()
        while running:
            ready, _ = wait(list(running), return_when=FIRST_COMPLETED)
            lost: list[tuple[str, object]] = []
            for fut in ready:
                kind, payload = running.pop(fut)
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    lost.append((kind, payload))
                    continue
                except Exception as exc:  # noqa: BLE001 - a bug in one chunk fails that chunk only
                    result = exc
                if kind == "report":
                    if isinstance(result, ReportOutcome) and result.path is not None:
                        run.reports[result.subject] = result.path
                        totals["report"] += result.seconds
                        if line := incomplete_report_line(result):
                            run.report_warnings.append(line)
                    else:
                        why = result.error if isinstance(result, ReportOutcome) else result
                        run.report_warnings.append(f"sub-{payload}: report not written: {why}")
                    continue
                if isinstance(result, Exception):
                    result = chunk_failed(payload, f"{type(result).__name__}: {' '.join(str(result).split())}")
                complete(payload, result)
            if lost:  # a worker died: every future of the pool is lost; a fresh pool for the rest
                run.worker_deaths += 1
                lost += list(running.values())
                running.clear()
                stop_pool(pool)
                pool = worker_pool(workers, config.omp_nthreads, reports=reports_wanted, show_warning=show_warning)
                chunks = [(kind, payload) for kind, payload in lost if kind != "report"]
                for kind, chunk in chunks:
                    if kind == "alone" or len(chunks) == 1:  # it died alone: this chunk is the cause
                        complete(chunk, chunk_failed(chunk, "RuntimeError: its batch worker process died (killed, "
                                                            f"or out of memory?) while registering {len(chunk)} "
                                                            "hemisphere(s)"))
                    else:
                        suspects.append(chunk)
                        run.rerun += len(chunk)
                # a report whose worker died is tried once more; a second death ends it with a warning
                # (a pool whose workers cannot start at all would otherwise be rebuilt for ever)
                again = sorted(str(p) for kind, p in lost if kind == "report")
                report_losses.update(again)
                for subject in [s for s in again if report_losses[s] > 1]:
                    run.report_warnings.append(f"sub-{subject}: report not written: its worker process died twice "
                                               "(killed, or out of memory?)")
                submit_reports([s for s in again if report_losses[s] == 1])
            fill()
    except BaseException:
        stop_pool(pool)
        raise
    pool.shutdown(wait=True)
    run.seconds = {**{k: float(totals.get(k, 0.0)) for k in (*STAGES, "report")},
                   "wall": time.perf_counter() - t0, "workers": float(workers)}
    return run

"""What batch mode's worker processes do (no Nipype): register a chunk of hemispheres and
write each one's derivatives, or build a participant report.

:func:`run_chunk` reads every hemisphere of its chunk (the one input loader,
:func:`geomorph_bids.io.hemisphere.read_hemisphere`), registers them together
(:func:`geomorph_bids.engine.register.register_many`: one model load, the optimisation
vectorised over the chunk, the device held only around the network and the optimisation),
then resamples each hemisphere's features (:func:`geomorph_bids.results.resample.resample_features`)
and commits its files (:func:`geomorph_bids.results.writer.commit_outputs`): the same functions
the Nipype workflow's nodes call. Everything a worker needs comes in picklable values of the
lower layers (:class:`ChunkSettings`, :class:`HemisphereTask`); nothing here imports Nipype.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..derivatives import report_name
from ..engine.model_choice import ModelChoice
from ..errors import InputError, describe_os_error
from ..io.template_ref import TemplateRef
from ..quality import DEFAULT_THRESHOLDS, QualityThresholds
from ..results.writer import OutputFile
from .state import record_text

__all__ = ["ChunkSettings", "HemisphereTask", "Outcome", "ReportOutcome", "incomplete_report_line", "init_worker",
           "run_chunk",
           "build_report", "STAGES"]

#: the stages a hemisphere goes through, in order (crash files name the one that failed)
STAGES = ("read", "register", "resample", "write")


@dataclass(frozen=True)
class ChunkSettings:
    """The run's decided settings, as a worker needs them (see
    :class:`~geomorph_bids.workflows.config.RunConfig`)."""

    template: TemplateRef
    model: ModelChoice
    device: str
    density: str
    templateflow_home: str
    output_dir: Path
    quality: QualityThresholds = DEFAULT_THRESHOLDS
    fslr_sphere: bool = False  # --fmriprep-compat with template fsaverage: also the sphere carried into fsLR


@dataclass(frozen=True)
class HemisphereTask:
    """One hemisphere: its inputs, the files it writes and where its resume record goes.

    ``features`` / ``signs``: every feature written (the run's feature order) -> file /
    factor to FreeSurfer's sign; ``midthickness`` / ``cortex_mask``: found beside the sphere, or
    None (area-corrected resampling; the medial wall left out of the similarity); ``files``: :func:`~geomorph_bids.workflows.outputs.hemisphere_files`;
    ``info``: :func:`~geomorph_bids.workflows.outputs.hemisphere_info`; ``record`` / ``stamp``:
    the resume record, written once the files are committed; ``n_vertices``: the sphere's vertex count as
    discovery read it from its header (:attr:`~geomorph_bids.io.discover.HemiInputs.n_vertices`), or None.
    """

    subject: str
    session: str | None
    hemi: str
    sphere: Path
    sphere_reg: Path | None
    features: dict[str, Path]
    signs: dict[str, float]
    files: tuple[OutputFile, ...]
    info: dict[str, Any]
    record: Path
    stamp: str
    midthickness: Path | None = None
    cortex_mask: Path | None = None
    n_vertices: int | None = None

    @property
    def key(self) -> tuple[str, str | None, str]:
        return self.subject, self.session, self.hemi


@dataclass
class Outcome:
    """What became of one hemisphere: ``error`` (one line, None when it succeeded), the stage
    that failed, its traceback, and the seconds each stage took (the chunk's registration is
    shared equally between its hemispheres)."""

    key: tuple[str, str | None, str]
    error: str | None = None
    stage: str = ""
    traceback: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    #: the failure's errno when an OSError failed it (``errno.ENOSPC``: the scheduler starts no more chunks)
    errno: int | None = None


@dataclass
class ReportOutcome:
    """A participant report: its path, or why it was not written (a warning, never a failure)."""

    subject: str
    path: Path | None
    error: str | None
    seconds: float
    #: the report was written, but without the figures of these hemispheres (one line each)
    incomplete: tuple[str, ...] = ()
    #: the report was current and kept as it was (not drawn again)
    kept: bool = False


def init_worker(threads: int) -> None:
    """Worker start: ``threads`` torch threads (one per worker by default: on shared cores,
    many single-threaded processes beat multi-threaded ones)."""
    import torch

    torch.set_num_threads(max(1, int(threads)))


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _fail(outcome: Outcome, task: HemisphereTask, stage: str, exc: BaseException) -> None:
    """Record a failure as Nipype would: the traceback, ending with the exception's line (an
    InputError with the subject, hemisphere and, for a feature map, its input file added)."""
    tb = "".join(traceback.format_exception(exc)).rstrip()
    if isinstance(exc, InputError):
        exc = exc.with_context(subject=task.subject, hemi=task.hemi, feature_files=task.features)
    outcome.error = f"{type(exc).__name__}: {_line(exc)}"
    outcome.stage = stage
    outcome.errno = exc.errno if isinstance(exc, OSError) else None
    outcome.traceback = f"{tb}\n{outcome.error}"


def _timed(outcome: Outcome, stage: str, work: Callable[[], Any]) -> Any:
    t = time.perf_counter()
    try:
        return work()
    finally:
        outcome.seconds[stage] = outcome.seconds.get(stage, 0.0) + time.perf_counter() - t


def run_chunk(tasks: list[HemisphereTask], settings: ChunkSettings) -> list[Outcome]:
    """Register ``tasks`` together and write each one's derivatives; one :class:`Outcome` per
    task, in order. A bad hemisphere fails alone (its error and stage are recorded, nothing of
    it is committed); the others go on."""
    from ..engine.gpu_slot import gpu_lock
    from ..engine.register import RegistrationItem, register_many
    from ..io.hemisphere import read_hemisphere

    outcomes = [Outcome(t.key) for t in tasks]
    channels = list(settings.model.channels)
    natives: dict[int, Any] = {}
    for i, (task, outcome) in enumerate(zip(tasks, outcomes)):
        task.record.unlink(missing_ok=True)  # a crash from here on leaves no stale record
        try:
            natives[i] = _timed(outcome, "read", lambda: read_hemisphere(
                task.sphere, task.features, signs=task.signs, sphere_reg=task.sphere_reg,
                midthickness=task.midthickness, cortex_mask=task.cortex_mask, hemi=task.hemi, compared=channels))
        except Exception as exc:  # noqa: BLE001 - one bad hemisphere never stops the others
            _fail(outcome, task, "read", exc)
    results: dict[int, Any] = {}
    members = list(natives)
    if members:  # register_many loads each side's template once (a custom one per hemisphere)
        t = time.perf_counter()
        items = [RegistrationItem(natives[i].sphere,  # a Sphere: read_hemisphere checked it (not again)
                                  {c: natives[i].features[c] for c in channels}, tasks[i].hemi,
                                  None if natives[i].sphere_reg is None else natives[i].sphere_reg.vertices,
                                  cortex_mask=natives[i].registration_cortex(channels), maps_checked=True)
                 for i in members]
        try:
            done = register_many(items, settings.template, device=settings.device, batch_size=len(items),
                                 on_error="return", quality=settings.quality,
                                 device_slot=lambda: gpu_lock(settings.device), **settings.model.register_arguments())
        except Exception as exc:  # noqa: BLE001 - e.g. out of GPU memory: the batch fails, the run goes on
            done = [exc] * len(items)
        share = (time.perf_counter() - t) / len(members)
        for i, result in zip(members, done):
            outcomes[i].seconds["register"] = share
            if isinstance(result, Exception):
                _fail(outcomes[i], tasks[i], "register", result)
            else:
                results[i] = result
    targets: dict[str, Any] = {}  # hemi -> the output-density sphere (density_target: kept by the process)
    for i, result in results.items():
        try:
            _write_hemisphere(tasks[i], natives[i], result, settings, outcomes[i], targets)
        except Exception as exc:  # noqa: BLE001 - one bad hemisphere never stops the others
            _fail(outcomes[i], tasks[i], outcomes[i].stage or "write", exc)
    return outcomes


def _write_hemisphere(task: HemisphereTask, native, result, settings: ChunkSettings, outcome: Outcome,
                      targets: dict[str, Any]) -> None:
    """Resample, build the metrics document and commit every file of one registered hemisphere.
    ``targets``: hemi -> :class:`~geomorph_bids.results.resample.DensityTarget` of the chunk,
    filled here on first use."""
    from ..io import write_metric, write_surface
    from ..io.atomic import atomic_write_bytes, atomic_write_text, naming
    from ..io.gifti import EncodedArrays
    from ..results.metrics import metrics_bytes, metrics_document, no_data_record, registration_record
    from ..results.resample import density_target, resample_features
    from ..results.writer import commit_outputs, note_no_data, staging

    names = list(task.features)
    native_written = {f.index for f in task.files if f.field == "native_features"}
    outcome.stage = "resample"
    # from the values as written (float32), like the workflow's resample node, which reads the files
    mid = None if native.midthickness is None else native.midthickness.vertices.astype(np.float32)

    def resample():
        if task.hemi not in targets:
            targets[task.hemi] = density_target(settings.template.base, task.hemi, settings.density,
                                                settings.templateflow_home)
        return resample_features(
            (result.sphere.astype(np.float32), result.faces), {f: native.features[f].astype(np.float32) for f in names},
            settings.template.base, task.hemi, settings.density, settings.templateflow_home, midthickness=mid,
            target=targets[task.hemi], fans=result.fans, cortex=native.cortex)

    resampled = _timed(outcome, "resample", resample)
    outcome.stage = "write"
    t = time.perf_counter()
    record = registration_record(result, settings.model, native.sphere_reg is not None)
    no_data = no_data_record(native.no_data, native.no_data_vertices, len(native.sphere.vertices))
    files = note_no_data(task.files, no_data, record["registration_features"])  # the vertices the maps hold no data at, said in their sidecars
    doc = metrics_document(record, task.info, settings.density, resampled.source, settings.quality,
                           list(native.label_conflicts), [f.path.name for f in files if f.unless_flagged], no_data)
    hemi = task.hemi
    final = {(f.field, f.index): f.path for f in task.files}
    meant: dict[str, Path] = {}  # staged file -> the output it becomes, named when its write fails

    def staged(name: str, field: str, index: int | None = None) -> Path:
        path = stage / name
        meant[str(path)] = final.get((field, index), path)
        return path

    encoded = EncodedArrays()  # the spheres share their triangles: compressed once
    with staging(settings.output_dir) as stage:
        try:
            produced = {
                "registered_sphere": write_surface(staged("registered_sphere.surf.gii", "registered_sphere"),
                                                   result.sphere, result.faces, hemi=hemi, geometric_type="Spherical",
                                                   encoded=encoded),
                "resampled_features": [write_metric(staged(f"{f}_den.shape.gii", "resampled_features", k),
                                                    resampled.maps[f], hemi=hemi, names=[f])
                                       for k, f in enumerate(names)],
                "metrics": atomic_write_bytes(staged("metrics.json", "metrics"), metrics_bytes(doc)),
                "native_sphere": write_surface(staged("sphere.surf.gii", "native_sphere"), native.sphere.vertices,
                                               native.sphere.faces, hemi=hemi, geometric_type="Spherical",
                                               encoded=encoded),
                "native_features": [write_metric(staged(f"{f}.shape.gii", "native_features", k), native.features[f],
                                                 hemi=hemi, names=[f])
                                    if k in native_written else None for k, f in enumerate(names)]}
            if settings.fslr_sphere:  # --fmriprep-compat, template fsaverage (the workflow's to_fslr node)
                from ..io.fmriprep_compat import sphere_reg_fslr

                moved, _ = sphere_reg_fslr(result.sphere.astype(np.float32), hemi)
                produced["sphere_reg_fslr"] = write_surface(staged("sphere_reg_fsLR.surf.gii", "sphere_reg_fslr"),
                                                            moved, result.faces, hemi=hemi, encoded=encoded)
        except OSError as exc:  # a full disk, the file-size limit: name the output, not its staged copy
            if str(exc.filename) not in meant:
                raise
            raise naming(exc, meant[str(exc.filename)]) from exc
        written = commit_outputs(files, produced, settings.output_dir, stage=stage)
    atomic_write_text(task.record, record_text(task.stamp, written))
    outcome.seconds["write"] = time.perf_counter() - t
    outcome.stage = ""


def build_report(output_dir: Path, subject: str, reuse: bool) -> ReportOutcome:
    """A participant's report (:func:`geomorph_bids.reports.update_participant_report`); an
    error becomes a warning line."""
    from ..reports import update_participant_report

    t = time.perf_counter()
    problems: list[str] = []
    before = _mtime_ns(Path(output_dir) / report_name(subject))
    try:
        path, error = update_participant_report(output_dir, subject, reuse, problems=problems), None
    except Exception as exc:  # noqa: BLE001 - a figure must never lose a finished subject
        # an OSError in words, naming the report (not the temporary file it was renamed from)
        path, error = None, describe_os_error(exc) if isinstance(exc, OSError) else _line(exc)
    kept = path is not None and before is not None and _mtime_ns(path) == before
    return ReportOutcome(subject, path, error, time.perf_counter() - t, tuple(problems), kept)


def _mtime_ns(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def incomplete_report_line(outcome: ReportOutcome) -> str | None:
    """The warning of a report written without some of its figures, or None."""
    if outcome.path is None or not outcome.incomplete:
        return None
    return (f"sub-{outcome.subject}: report written without some figures ({'; '.join(outcome.incomplete)}); "
            "the next run of the same command (or --reports-only) draws them")

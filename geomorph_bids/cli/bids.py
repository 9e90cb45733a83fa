"""``geomorph-bids``: the BIDS-App (participant and group levels).

Exit codes: 0 every requested subject/hemisphere succeeded; 1 any failed (a summary names
each failed subject/hemisphere and why; the others' outputs are kept) or bad input; 2 usage.
"""

from __future__ import annotations

import os

os.environ.setdefault("NIPYPE_NO_ET", "1")  # no telemetry / network, before nipype is imported

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import uuid  # noqa: E402
from dataclasses import dataclass, replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from .. import __version__  # noqa: E402
from ..errors import InputError  # noqa: E402
from ..io.atomic import atomic_write_bytes  # noqa: E402
from .parser import build_parser, parse_derivatives  # noqa: E402
from .preflight import RunLocks, check_writable, remove_if_empty  # noqa: E402

__all__ = ["main", "Failure", "collect_jobs", "write_dataset_description"]

_PROG = "geomorph-bids"


@dataclass(frozen=True)
class Failure:
    """A subject/session/hemisphere that produced no outputs, and why (one line)."""

    subject: str
    session: str | None
    hemi: str  # "L", "R" or "L,R"
    reason: str

    def line(self) -> str:
        ses = f" ses-{self.session}" if self.session else ""
        return f"sub-{self.subject}{ses} hemi-{self.hemi}: {self.reason}"


def _err(msg: str) -> None:
    print(f"{_PROG}: error: {' '.join(str(msg).split())}", file=sys.stderr)


# ------------------------------------------------------------------------------ selection

def _read_filter(path: Path | None) -> dict[str, list[str]]:
    """--bids-filter-file -> {"subject": [...], "session": [...]} (labels without prefixes)."""
    from ..io.discover import normalise_label

    if path is None:
        return {}
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read the BIDS filter file ({exc})", path=path) from None
    if not isinstance(doc, dict):
        raise InputError("the BIDS filter file must hold a JSON object", path=path)
    merged: dict[str, Any] = {}
    for key, value in doc.items():  # fMRIPrep's nested form: {"t1w": {"session": ...}}
        if isinstance(value, dict):
            merged.update(value)
        else:
            merged[key] = value
    out: dict[str, list[str]] = {}
    for key, value in merged.items():
        if key not in ("subject", "session"):
            raise InputError(f"unsupported entity {key!r} in the BIDS filter file (supported: subject, session)",
                             path=path)
        values = value if isinstance(value, list) else [value]
        out[key] = [normalise_label(v, "sub" if key == "subject" else "ses") for v in values]
    return out


def _sessions_of(subject: str, bids_dir: Path, deriv: dict[str, Path] | None, fs_dir: Path | None) -> list[str]:
    """Session labels with data for a subject (raw BIDS, derivatives, FreeSurfer sub-X_ses-Y)."""
    roots = [bids_dir] + (list(deriv.values()) if deriv is not None else
                          [p for p in sorted((bids_dir / "derivatives").glob("*")) if p.is_dir()])
    found = set()
    for root in roots:
        found |= {p.name[4:] for p in (root / f"sub-{subject}").glob("ses-*") if p.is_dir()}
    for fs in [fs_dir or bids_dir / "derivatives" / "freesurfer"]:
        found |= {p.name.split("_ses-", 1)[1] for p in Path(fs).glob(f"sub-{subject}_ses-*") if p.is_dir()}
    return sorted(s for s in found if s.isalnum())


def collect_jobs(args, features: list[str]) -> tuple[list, list[Failure]]:
    """Discover every requested subject/session: (jobs to run, failures found up front)."""
    from ..io.discover import DiscoveryError, discover, find_subjects, normalise_label
    from ..workflows import SubjectJob

    bids_dir = args.bids_dir
    deriv = parse_derivatives(args.derivatives)
    filt = _read_filter(args.bids_filter_file)
    if args.participant_label:
        subjects = sorted(dict.fromkeys(normalise_label(s, "sub") for s in args.participant_label))
    else:
        subjects = find_subjects(bids_dir, args.fs_subjects_dir, deriv)
    if "subject" in filt:
        subjects = [s for s in subjects if s in filt["subject"]]
    if not subjects:
        raise InputError(f"no subjects found in {bids_dir} (nor its derivatives); "
                         "check the folders or --participant-label")
    sessions = ([normalise_label(s, "ses") for s in args.session_label] if args.session_label
                else filt.get("session"))
    hemis = tuple(args.hemi)
    jobs, failures = [], []
    for subject in subjects:
        wanted: list[str | None] = list(sessions) if sessions else [None]
        if sessions is None:
            try:
                found = discover(subject, bids_dir, session=None, fs_subjects_dir=args.fs_subjects_dir,
                                 derivatives=deriv, hemis=hemis, features=features)
                jobs.append(SubjectJob(subject, None, found))
                for h in found.missing:
                    failures.append(Failure(subject, None, h, found.missing[h]))
                continue
            except DiscoveryError as exc:
                per_session = _sessions_of(subject, bids_dir, deriv, args.fs_subjects_dir)
                if not per_session:
                    failures.append(Failure(subject, None, ",".join(hemis), exc.reason))
                    continue
                wanted = per_session
        for ses in wanted:
            try:
                found = discover(subject, bids_dir, session=ses, fs_subjects_dir=args.fs_subjects_dir,
                                 derivatives=deriv, hemis=hemis, features=features)
            except DiscoveryError as exc:
                failures.append(Failure(subject, ses, ",".join(hemis), exc.reason))
                continue
            jobs.append(SubjectJob(subject, ses, found))
            for h in found.missing:
                failures.append(Failure(subject, ses, h, found.missing[h]))
    return jobs, failures


# ------------------------------------------------------------------------------ outputs

def write_dataset_description(output_dir: Path, bids_dir: Path, deriv: dict[str, Path] | None) -> Path:
    """``dataset_description.json`` of the derivatives (DatasetType derivative, GeneratedBy
    with version and container from ``$GEOMORPH_CONTAINER``, SourceDatasets)."""
    generated: dict[str, Any] = {"Name": "geomorph-bids", "Version": __version__,
                                 "Description": "GeoMorph cortical surface registration"}
    container = os.environ.get("GEOMORPH_CONTAINER")
    if container:
        kind = "singularity" if container.endswith((".sif", ".simg")) or container.startswith(
            ("library://", "shub://")) else "docker"
        generated["Container"] = {"Type": kind, "Tag": container}
    links = {"raw": str(bids_dir.absolute())}
    sources: list[dict[str, str]] = [{"URL": "bids:raw:"}]
    raw_desc = bids_dir / "dataset_description.json"
    if raw_desc.is_file():
        try:
            doi = json.loads(raw_desc.read_text()).get("DatasetDOI")
        except (json.JSONDecodeError, AttributeError):
            doi = None
        if doi:
            sources[0]["DOI"] = str(doi)
    for name, path in (deriv or {}).items():
        links[name] = str(Path(path).absolute())
        sources.append({"URL": f"bids:{name}:"})
    desc = {"Name": "geomorph-bids: cortical sphere registration", "BIDSVersion": "1.9.0",
            "DatasetType": "derivative", "GeneratedBy": [generated], "SourceDatasets": sources,
            "DatasetLinks": links, "HowToAcknowledge": "See logs/CITATION.md"}
    # atomic, through a uniquely named temporary file: concurrent runs may write it at once
    return atomic_write_bytes(output_dir / "dataset_description.json", (json.dumps(desc, indent=2) + "\n").encode())


def _source_roots(args) -> dict[str, Path]:
    """Input datasets for SourceDatasets: --derivatives, else the folders of <bids_dir>/derivatives,
    plus --fs-subjects-dir."""
    roots = parse_derivatives(args.derivatives)
    if roots is None:
        base = args.bids_dir / "derivatives"
        roots = {p.name: p for p in sorted(base.iterdir()) if p.is_dir()} if base.is_dir() else {}
    if args.fs_subjects_dir is not None:
        roots.setdefault("freesurfer", Path(args.fs_subjects_dir))
    return roots


def _write_citation(output_dir: Path, config, model: str) -> Path:
    from ..resources import citation_file

    method = {"rigid": "; no non-rigid stage was run (--model rigid)",
              "default": "; then a non-rigid GeoMorph warp (cascaded control-point grids, ico-2 to ico-4) "
                         "was fitted to each hemisphere by optimising 1 - correlation with the template "
                         "plus smoothness and fold penalties"}
    if model not in method:
        from ..resources import bundled_models

        which = (f"pretrained network {model}, bundled with geomorph-bids" if model in bundled_models()
                 else f"network of checkpoint {Path(model).name}")
        method[model] = (f"; then the GeoMorph {which}, predicted a non-rigid warp, refined for each "
                         "hemisphere by optimising 1 - correlation with the template plus smoothness and "
                         "fold penalties")
    text = citation_file().read_text().format(
        version=__version__, template=config.template, channels=", ".join(config.channels),
        method_text=method[model],
        features=", ".join(config.features), density=config.density)
    return atomic_write_bytes(output_dir / "logs" / "CITATION.md", text.encode())


# ------------------------------------------------------------------------------ running

def _crash_failures(crash_dir: Path, names: dict[str, tuple[str, str | None]]) -> list[Failure]:
    """Failures recorded in Nipype's crash files (plain text: ``Node: <hierarchy>.<node>`` then
    the traceback), mapped to subject/session/hemisphere through the workflow names."""
    out = []
    for path in sorted(crash_dir.glob("crash-*.txt")):
        text = path.read_text(errors="replace")
        first = text.splitlines()[0] if text else ""
        parts = first[len("Node: "):].strip().split(".") if first.startswith("Node: ") else []
        subject_wf = next((p for p in parts if p in names), None)
        if subject_wf is None:
            continue
        hemi_wf = next((p for p in parts if p.startswith("hemi_") and p.endswith("_wf")), None)
        subject, session = names[subject_wf]
        out.append(Failure(subject, session, hemi_wf[5:-3] if hemi_wf else "L,R",
                           f"{_reason(text)} (node {parts[-1]}; {path})"))
    return out


def _reason(traceback: list[str] | str) -> str:
    """The innermost exception line of a Nipype traceback, without the module path."""
    text = "".join(traceback) if isinstance(traceback, list) else str(traceback)
    best = ""
    for line in text.splitlines():
        line = line.strip()
        head, sep, rest = line.partition(": ")
        if sep and head.replace(".", "").replace("_", "").isalnum() and head.endswith(("Error", "Exception")):
            kind = head.rsplit(".", 1)[-1]
            if kind not in ("NodeExecutionError", "RuntimeError") or not best:
                best = f"{kind}: {rest}"
    return best or (text.strip().splitlines() or ["unknown error"])[-1]


def _plugin(args) -> tuple[str, dict[str, Any]]:
    plugin_args: dict[str, Any] = {"n_procs": args.nprocs, "raise_insufficient": False}
    if args.mem_gb:
        plugin_args["memory_gb"] = args.mem_gb
    if args.use_plugin is None:
        return "MultiProc", plugin_args
    import yaml

    try:
        doc = yaml.safe_load(Path(args.use_plugin).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read the plugin file ({' '.join(str(exc).split())})", path=args.use_plugin) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("plugin"), str) or not doc["plugin"]:
        raise InputError("the plugin file must be YAML with a 'plugin' key naming a Nipype plugin "
                         "(and optional 'plugin_args')", path=args.use_plugin)
    extra = doc.get("plugin_args") or {}
    if not isinstance(extra, dict):
        raise InputError("the plugin file's 'plugin_args' must be a mapping (key: value)", path=args.use_plugin)
    if doc["plugin"] in ("MultiProc", "LegacyMultiProc"):
        plugin_args.update(extra)
        return doc["plugin"], plugin_args
    return doc["plugin"], dict(extra)


def _configure_nipype(work_dir: Path, crash_dir: Path, verbose: int, stop_on_first_crash: bool) -> None:
    from nipype import config, logging

    # the summary names each failure and its crash file; -v shows Nipype's own messages
    level = ["CRITICAL", "WARNING", "INFO", "DEBUG"][min(verbose, 3)]
    config.update_config({
        "logging": {"workflow_level": level, "interface_level": level, "utils_level": level,
                    "log_to_file": False},
        "execution": {"crashdump_dir": str(crash_dir), "crashfile_format": "txt",
                      "stop_on_first_crash": stop_on_first_crash, "remove_unnecessary_outputs": False,
                      "hash_method": "timestamp", "parameterize_dirs": False,
                      "check_version": False,
                      # no workflow-level d3.js/graph.json in the work dir: runs sharing it would race
                      "create_report": False,
                      # poll often: Nipype's default (2 s per scheduling round) dominates short runs
                      "poll_sleep_duration": 0.1},
        "monitoring": {"enabled": False},
    })
    logging.update_logging(config)


def _resolve_device(model: str, device: str) -> tuple[str, bool]:
    if model == "rigid":
        return "cpu", False
    from ..engine.register import resolve_device

    dev = resolve_device(device)
    return str(dev), dev.type == "cuda"


def _channels(model: str, template: str = "fsLR") -> tuple[str, ...]:
    """Features the registration uses: a checkpoint's own channels (bundled name or path);
    without a network, fsLR: sulc; fsaverage: sulc + curv (which aligns the mirrored fsaverage
    pair 0.11 deg better than sulc alone, docs/registration.md); another template: sulc."""
    if model == "default":
        return _DEFAULT_CHANNELS.get(template, ("sulc",))
    if model == "rigid":
        return ("sulc",)
    from ..model.checkpoint import read_metadata
    from ..resources import bundled_models, model_path

    path = model_path(model)
    if not path.is_file():
        raise InputError("model checkpoint not found (use --model default, rigid, a bundled model: "
                         f"{', '.join(bundled_models()) or 'none installed'}, or a checkpoint path)", path=path)
    return tuple(read_metadata(path).channels)


#: registration features without a network, per bundled template
_DEFAULT_CHANNELS = {"fsLR": ("sulc",), "fsaverage": ("sulc", "curv")}


def _resolve_template(args) -> tuple[str, str, str]:
    """``--template`` -> (label used in ``space-``, what registration loads, base template).

    ``fsLR``/``fsaverage`` are bundled; anything else is a custom template folder (e.g. the
    ``tpl-<label>`` that ``group --build-template`` wrote): a path, or a label looked up as
    ``tpl-<label>`` in the output folder."""
    from ..io.custom_template import custom_template_info, find_custom_template
    from ..io.templates import DENSITIES

    if args.template in DENSITIES:
        return args.template, "", args.template
    folder = find_custom_template(args.template, search=[args.output_dir])
    if folder is None:
        raise InputError(f"--template {args.template}: not fsLR or fsaverage, and no custom template folder "
                         f"(tpl-<label> with template_description.json) at that path or in {args.output_dir}")
    info = custom_template_info(folder)
    base = str(info.get("BaseTemplate", ""))
    if base not in DENSITIES:
        raise InputError(f"custom template has BaseTemplate {base!r}; expected fsLR or fsaverage",
                         path=folder / "template_description.json")
    return str(info["Identifier"]), str(folder.absolute()), base


def preflight(output_dir: Path, work_dir: Path | None) -> list[Path]:
    """Before any work: both folders exist or can be created, take a real write and have the
    documented free space (:data:`geomorph_bids.cli.preflight.MIN_FREE_MB`); else one
    :class:`InputError` line naming the folder (a folder this check created is removed again).
    Returns the folders it created."""
    created = [output_dir] if check_writable(output_dir, "output") else []
    if work_dir is None:
        return created
    try:
        if check_writable(work_dir, "work"):
            created.append(work_dir)
    except InputError:
        for folder in created:
            remove_if_empty(folder)
        raise
    return created


def _lock_participants(locks: RunLocks, jobs: list, wait: bool) -> tuple[list, list[Failure], list]:
    """Take each participant's lock: (jobs whose participant this run holds, failures of the
    participants another run holds (skip mode), jobs to do after waiting (``--lock-wait``))."""
    busy: dict[str, str] = {}
    for subject in sorted({j.subject for j in jobs}):
        if not locks.try_lock(f"sub-{subject}"):
            busy[subject] = locks.holder(f"sub-{subject}")
    mine = [j for j in jobs if j.subject not in busy]
    later = [j for j in jobs if j.subject in busy] if wait else []
    skipped = [] if wait else [
        Failure(j.subject, j.session, ",".join(sorted(j.inputs.hemis)) or "L,R",
                f"skipped: another geomorph-bids run is processing this participant "
                f"({busy[j.subject] or 'holder unknown'}; lock {locks.path('sub-' + j.subject)}); "
                "rerun when it has finished, or pass --lock-wait to wait for it")
        for j in jobs if j.subject in busy]
    for subject, holder in busy.items():
        if wait:
            print(f"{_PROG}: sub-{subject}: another geomorph-bids run is processing it ({holder or 'holder unknown'}); "
                  "it will be done after that run, once this run's other participants are finished", flush=True)
    return mine, skipped, later


def _run_workflow(jobs: list, config, args, batch: int | None) -> tuple[bool, list[Failure]]:
    """Run the participant workflow of ``jobs``: (whether Nipype reported a crash, failures it
    reported without a crash file)."""
    from ..workflows import init_geomorph_wf

    todo = [(j, h) for j in jobs for h in sorted(j.inputs.hemis)]
    if not todo:
        return False, []
    if batch:
        from ..workflows.batch import run_batch_registration

        attempted, bad = run_batch_registration(jobs, config, batch)
        print(f"batch mode: registered {attempted - len(bad)} hemisphere(s) in this process, "
              f"{batch} pair(s) per optimisation batch; {len(bad)} with bad input; "
              f"{len(todo) - attempted} already done", flush=True)
    wf = init_geomorph_wf(jobs, config)
    plugin, plugin_args = _plugin(args)
    try:
        wf.run(plugin=plugin, plugin_args=plugin_args)
    except RuntimeError as exc:  # nipype: "Workflow did not execute cleanly"
        return True, [Failure("*", None, "*", " ".join(str(exc).split()))]
    return False, []


def _clean_leftovers(output_dir: Path) -> None:
    """Remove what killed runs left in the output folder: the sinks' staging folder and the
    temporary files of the atomic writes (called only when no other run is active)."""
    from ..interfaces.bids import STAGING_DIR

    shutil.rmtree(output_dir / STAGING_DIR, ignore_errors=True)
    for folder in (output_dir, output_dir / "logs"):
        for tmp in [*folder.glob(".*.tmp"), *folder.glob(".geomorph-probe-*")]:
            tmp.unlink(missing_ok=True)


def run_participant(args) -> int:
    from ..io.templates import load_density_sphere, normalise_density
    from ..workflows import RunConfig, hemi_outputs, subject_wf_name

    output_dir = args.output_dir.absolute()
    work_dir = args.work_dir.absolute()
    created = preflight(output_dir, work_dir)
    model = args.model
    try:  # bad arguments or inputs found here: leave no (empty) folder behind
        template, template_ref, base = _resolve_template(args)
        channels = _channels(model, template)
        features = list(dict.fromkeys([*channels, *args.features]))
        density = normalise_density(base, args.output_density)
        tf_home = os.environ.get("TEMPLATEFLOW_HOME", "")
        sources = {h: load_density_sphere(base, h, density, tf_home or None)[2] for h in args.hemi}
        device, gpu = _resolve_device(model, args.device)
        jobs, failures = collect_jobs(args, features)
    except BaseException:
        for folder in created:
            remove_if_empty(folder)
        raise
    batch = getattr(args, "batch_size", None)
    omp = args.omp_nthreads or (args.nprocs if batch else max(1, min(8, args.nprocs // 2)))
    config = RunConfig(bids_dir=args.bids_dir.absolute(), output_dir=output_dir, work_dir=work_dir,
                       template=template, template_ref=template_ref, base_template=base,
                       density=density, features=tuple(features), channels=channels,
                       model="" if model == "default" else model, device=device, gpu=gpu, omp_nthreads=omp,
                       nprocs=args.nprocs, templateflow_home=tf_home, density_sources=sources)
    if batch:  # results of one settings combination live in their own folder (safe resume)
        import hashlib

        key = json.dumps([template, template_ref, model, list(channels)], sort_keys=True).encode()
        config = replace(config, batch_dir=str(work_dir / f"batch_{hashlib.sha1(key).hexdigest()[:10]}"))
    run_id = uuid.uuid4().hex[:8]
    crash_dir = output_dir / "logs" / f"crash-{run_id}"
    with RunLocks(output_dir) as locks:  # released by the kernel if this process dies
        mine, skipped, later = _lock_participants(locks, jobs, getattr(args, "lock_wait", False))
        failures += skipped
        write_dataset_description(output_dir, args.bids_dir, _source_roots(args))
        _write_citation(output_dir, config, model)
        _configure_nipype(work_dir, crash_dir, args.verbose, args.stop_on_first_crash)
        names = {subject_wf_name(j.subject, j.session): (j.subject, j.session) for j in jobs}
        n_todo = sum(len(j.inputs.hemis) for j in jobs)
        print(f"{_PROG} {__version__}: {n_todo} hemisphere(s) of {len(jobs)} subject/session(s) -> {output_dir} "
              f"(template {template}, density {density}, model {model}, device {device}, work dir {work_dir})",
              flush=True)
        crashed, run_failures = _run_workflow(mine, config, args, batch)
        if later:
            for subject in sorted({j.subject for j in later}):  # sorted: no deadlock between waiting runs
                locks.wait_lock(f"sub-{subject}")
            c2, f2 = _run_workflow(later, config, args, batch)
            crashed, run_failures = crashed or c2, run_failures + f2
        done = mine + later
        todo = [(j, h) for j in done for h in sorted(j.inputs.hemis)]
        if crash_dir.is_dir():
            failures += _crash_failures(crash_dir, names)
        elif crashed:
            failures += run_failures
        unique: dict[tuple, Failure] = {}
        for f in failures:  # one line per hemisphere (in batch mode two nodes may report the same input)
            unique.setdefault((f.subject, f.session, f.hemi), f)
        failures = list(unique.values())
        failed_keys = {(f.subject, f.session, h) for f in failures for h in f.hemi.split(",")}
        rows = []
        for job, hemi in todo:
            h = job.inputs.hemis[hemi]
            expected = hemi_outputs(h, config)
            key = (job.subject, job.session, hemi)
            if key not in failed_keys and not all(p.is_file() for p in expected):
                missing = [p.name for p in expected if not p.is_file()]
                failures.append(Failure(job.subject, job.session, hemi,
                                        f"outputs missing after the run: {', '.join(missing)}"
                                        + (" (the run was stopped by another crash)" if crashed else "")))
                failed_keys.add(key)
            if key in failed_keys:
                for p in expected:  # no partial outputs for a failed hemisphere (this run holds its lock)
                    p.unlink(missing_ok=True)
                continue
            doc = json.loads(expected[2].read_text())
            rows.append((job, hemi, doc["registration"]))
        locks.when_alone(lambda: _clean_leftovers(output_dir))
        _print_summary(rows, failures, output_dir)
        subjects = sorted({job.subject for job in done})  # a subject with a failure: its report may change
        _build_reports(output_dir, subjects, reuse=set(subjects) - {f.subject for f in failures})
    return 1 if failures else 0


def _report_is_current(output_dir: Path, subject: str) -> bool:
    """``sub-X.html`` exists and is newer than every output of the subject (a rerun that
    changed nothing leaves the outputs, hence the report, untouched)."""
    html = output_dir / f"sub-{subject}.html"
    if not html.is_file():
        return False
    stamps = [p.stat().st_mtime_ns for p in (output_dir / f"sub-{subject}").rglob("*")
              if p.is_file() and "figures" not in p.relative_to(output_dir).parts]
    return bool(stamps) and html.stat().st_mtime_ns >= max(stamps)


def _build_reports(output_dir: Path, subjects: list[str], reuse: set[str] | None = None) -> list[Path]:
    """``sub-X.html`` for every subject with outputs (a subject in ``reuse``: unless its report
    is current); a report that cannot be drawn is a warning (the registrations themselves are done),
    never a failure."""
    from ..reports import build_participant_report

    made = []
    for subject in subjects:
        if not (output_dir / f"sub-{subject}").is_dir():
            continue
        if subject in (reuse or ()) and _report_is_current(output_dir, subject):
            made.append(output_dir / f"sub-{subject}.html")
            continue
        try:
            made.append(build_participant_report(output_dir, subject))
        except Exception as exc:  # noqa: BLE001 - a figure must never lose a finished subject
            print(f"{_PROG}: warning: sub-{subject}: report not written: {' '.join(str(exc).split())}",
                  file=sys.stderr)
    if made:
        print(f"report(s): {', '.join(str(p) for p in made)}")
    return made


def _print_summary(rows, failures: list[Failure], output_dir: Path) -> None:
    if rows:
        print(f"{'subject':<12}{'session':<10}{'hemi':<5}{'CC before':>10}{'CC after':>10}{'folded':>8}"
              f"{'seconds':>9}")
        for job, hemi, m in rows:
            cc_b = m.get("cc_sulc_before")
            cc_a = m.get("cc_sulc_after")
            fmt = lambda v: f"{v:>10.3f}" if isinstance(v, (int, float)) else f"{'n/a':>10}"  # noqa: E731
            print(f"{'sub-' + job.subject:<12}{(job.session or '-'):<10}{hemi:<5}{fmt(cc_b)}{fmt(cc_a)}"
                  f"{m.get('n_folded', 0):>8}{m.get('seconds_total', 0.0):>9.2f}")
        print(f"outputs in {output_dir}")
    if failures:
        print(f"{_PROG}: {len(failures)} failure(s); outputs of the others are kept:", file=sys.stderr)
        for f in failures:
            print(f"  FAILED {f.line()}", file=sys.stderr)


def _participant_rows(args) -> list[dict]:
    """Metrics rows of the participant outputs in output_dir, restricted to --participant-label."""
    from ..interfaces.metrics import group_rows
    from ..io.discover import normalise_label

    rows = group_rows(args.output_dir)
    if args.participant_label:
        keep = {normalise_label(s, "sub") for s in args.participant_label}
        rows = [r for r in rows if r["subject"] in keep]
    return rows


def run_group(args) -> int:
    from ..interfaces.metrics import write_group_table
    from ..reports import build_group_report

    if args.output_dir.is_dir():
        preflight(args.output_dir.absolute(), None)
    rows = _participant_rows(args)
    if not rows:
        _err(f"no participant outputs (*_desc-geomorph_metrics.json) in {args.output_dir}; "
             "run the participant level first")
        return 1
    path = write_group_table(rows, args.output_dir / "group_desc-geomorph_metrics.tsv")
    print(f"{path}: {len(rows)} row(s) (subject/session/hemisphere)")
    if not args.participant_label:  # the HTML report covers the whole table
        print(f"group report: {build_group_report(args.output_dir)}")
    if args.build_template:
        return _build_population_template(args, rows)
    return 0


def _build_population_template(args, rows: list[dict]) -> int:
    """``--build-template N``: average the participants' native registration features over N
    register-then-average rounds, per hemisphere, into ``OUTPUT_DIR/tpl-<label>/``."""
    from ..engine.population import PopulationSubject, build_template
    from ..workflows.hemisphere import FEATURE_SUFFIX

    features = tuple(args.features) if args.features else ("sulc",)
    status = 0
    for hemi in args.hemi:
        subjects = []
        for r in rows:
            if r["hemi"] != hemi:
                continue
            ent = f"sub-{r['subject']}" + (f"_ses-{r['session']}" if r.get("session") else "")
            anat = args.output_dir / f"sub-{r['subject']}" / (f"ses-{r['session']}" if r.get("session") else "") / "anat"
            sphere = anat / f"{ent}_hemi-{hemi}_sphere.surf.gii"
            maps = {f: anat / f"{ent}_hemi-{hemi}_{FEATURE_SUFFIX[f]}.shape.gii" for f in features}
            if sphere.is_file() and all(p.is_file() for p in maps.values()):
                subjects.append(PopulationSubject(ent, sphere, maps))
        if len(subjects) < 2:
            _err(f"--build-template: hemi-{hemi}: {len(subjects)} participant(s) with native "
                 f"{', '.join(features)} outputs; at least 2 are needed")
            status = 1
            continue
        model = None if args.model == "default" else args.model
        result = build_template(subjects, args.build_template, template=args.template, hemi=hemi,
                                features=features, label=args.template_label, out_dir=args.output_dir,
                                model=None if model == "rigid" else model, rigid_only=model == "rigid",
                                device=args.device,
                                progress=lambda msg: print(f"hemi-{hemi}: {msg}", flush=True))
        dist = " -> ".join(f"{d:.4f}" for d in result.mean_distances)
        print(f"hemi-{hemi}: template {result.folder} from {result.n_subjects} participant(s); "
              f"mean 1 - CC per round: {dist}")
        for name, why in result.failures.items():
            print(f"{_PROG}: warning: {name} hemi-{hemi} left out of the template: {why}", file=sys.stderr)
    return status


def run_reports_only(args) -> int:
    rows = _participant_rows(args)
    if not rows:
        _err(f"--reports-only: no participant outputs in {args.output_dir}")
        return 1
    made = _build_reports(args.output_dir, sorted({r["subject"] for r in rows}))
    return 0 if made else 1


def _validate(args) -> None:
    if not args.bids_dir.is_dir():
        raise InputError("bids_dir does not exist or is not a folder", path=args.bids_dir)
    if not args.skip_bids_validation and not (args.bids_dir / "dataset_description.json").is_file():
        raise InputError("is not a BIDS dataset: no dataset_description.json (or pass --skip-bids-validation)",
                         path=args.bids_dir)
    if args.output_dir.absolute() == args.bids_dir.absolute():
        raise InputError("output_dir must differ from bids_dir", path=args.output_dir)


def _absolute_paths(args) -> None:
    """Nipype runs every node in its own folder: make every path argument absolute."""
    for name in ("bids_dir", "output_dir", "work_dir", "fs_subjects_dir", "bids_filter_file", "use_plugin"):
        value = getattr(args, name)
        if value is not None:
            setattr(args, name, Path(value).absolute())
    if args.derivatives:
        args.derivatives = [f"{k}={v}" for k, v in (parse_derivatives(args.derivatives) or {}).items()]
    from ..resources import bundled_models

    if args.model not in ("default", "rigid", *bundled_models()):
        args.model = str(Path(args.model).absolute())


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 failures or bad input, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _absolute_paths(args)
    except argparse.ArgumentTypeError as exc:  # --derivatives NAME=PATH with an empty part
        parser.error(str(exc))
    try:
        _validate(args)
        if args.analysis_level == "group":
            return run_group(args)
        if args.reports_only:
            return run_reports_only(args)
        return run_participant(args)
    except InputError as exc:
        _err(str(exc))
        return 1
    except (ValueError, OSError) as exc:
        _err(str(exc))
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

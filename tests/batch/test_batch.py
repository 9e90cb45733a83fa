"""Batch mode's scheduler, worker tasks and resume records, on ico-4 synthetic cohorts with the
rigid stage (fast); the equivalence with the Nipype workflow's outputs is in tests/cli."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from geomorph_bids.batch import pipeline
from geomorph_bids.batch.pipeline import plan_tasks, run_batch
from geomorph_bids.batch.state import record_path, stamp
from geomorph_bids.batch.tasks import Outcome, run_chunk
from geomorph_bids.cli.failures import crash_failures
from geomorph_bids.cli.parser import build_parser
from geomorph_bids.cli.selection import collect_jobs
from geomorph_bids.cli.settings import absolute_paths, resolve_settings
from geomorph_bids.crashfiles import subject_wf_name
from geomorph_bids.workflows import hemi_outputs

from ..cli.conftest import make_dataset


def _setup(tmp_path: Path, bids: Path, *extra: str):
    args = build_parser().parse_args([str(bids), str(tmp_path / "out"), "participant", "--model", "rigid", "-w",
                                      str(tmp_path / "w"), "--nprocs", "2", "--batch-size", "2", *extra])
    absolute_paths(args)
    config = resolve_settings(args, args.output_dir, args.work_dir)
    jobs, failures = collect_jobs(args, config.features)
    assert not failures
    return config, jobs


def _names(jobs) -> dict[str, tuple[str, None]]:
    return {subject_wf_name(j.subject, j.session): (j.subject, j.session) for j in jobs}


def _complete(config, jobs, subject: str, hemi: str) -> bool:
    job = next(j for j in jobs if j.subject == subject)
    return all(p.is_file() for p in hemi_outputs(job.inputs.hemis[hemi], config).files())


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Three subjects, sub-02's right sulc truncated; one batch run (2 workers, chunks of 2)."""
    tmp = tmp_path_factory.mktemp("cohort")
    bids = make_dataset(tmp / "bids", "freesurfer", subjects=("01", "02", "03"))
    broken = bids / "derivatives" / "freesurfer" / "sub-02" / "surf" / "rh.sulc"
    broken.write_bytes(broken.read_bytes()[:100])
    config, jobs = _setup(tmp, bids)
    crashes = tmp / "out" / "logs" / "crash-test"
    lines: list[str] = []
    run = run_batch(jobs, config, crashes, log=lines.append)
    return dict(tmp=tmp, bids=bids, broken=broken, config=config, jobs=jobs, crashes=crashes, run=run, lines=lines)


def test_a_bad_hemisphere_fails_alone_with_a_crash_file(cohort):
    run, config, jobs = cohort["run"], cohort["config"], cohort["jobs"]
    assert (run.registered, run.failed, run.reused) == (5, 1, 0)
    assert run.seconds["workers"] == 2 and run.seconds["register"] > 0 and run.seconds["write"] > 0
    assert cohort["lines"][-1].startswith("batch: 6/6 hemisphere(s) done") and "1 failed" in cohort["lines"][-1]
    # reported like a Nipype crash: one line naming subject, hemisphere, the file and the stage
    (failure,) = crash_failures(cohort["crashes"], _names(jobs))
    assert (failure.subject, failure.session, failure.hemi) == ("02", None, "R")
    assert str(cohort["broken"]) in failure.reason and "(node read;" in failure.reason
    assert failure.reason.startswith("InputError: sub-02 hemi-R")
    for subject in ("01", "02", "03"):
        assert _complete(config, jobs, subject, "L")
        assert _complete(config, jobs, subject, "R") == (subject != "02")
    job = next(j for j in jobs if j.subject == "02")
    assert not any(p.exists() for p in hemi_outputs(job.inputs.hemis["R"], config).files())
    assert not record_path(config, job.inputs.hemis["R"]).exists()  # redone next time
    # every participant's report, built during the run; sub-02's lists its failure
    assert sorted(run.reports) == ["01", "02", "03"] and not run.report_warnings
    assert "rh.sulc" in (config.output_dir / "sub-02.html").read_text()
    assert not (config.output_dir / ".geomorph-staging").exists()  # every stage removed, and the emptied folder


def test_hemispheres_another_build_finished_are_registered_again(cohort):
    """An upgrade of geomorph-bids rerun into the same output and work folders: batch mode's resume
    records said every hemisphere was done ('reused ... since an earlier run with the same inputs
    and settings'), so the outputs, metrics and all, stayed the earlier build's under the new one's
    name. The build (software_id: the version and a digest of the package's source) is part of
    the records' key."""
    from dataclasses import replace

    from geomorph_bids.io.digest import software_id

    config, jobs = cohort["config"], cohort["jobs"]
    assert config.software == software_id() and plan_tasks(jobs, config)[1] == 5
    earlier = replace(config, software="geomorph-bids 0.1.0.dev0 (source 000000000000)")
    tasks, reused = plan_tasks(jobs, earlier)
    assert reused == 0 and len(tasks) == 6


def test_outputs_that_record_the_same_inputs_and_settings_are_reused_with_any_work_folder(cohort, tmp_path):
    """Twenty-fourth session (fix-bn): the resume records lived in the work folder alone, so a scratch
    work folder purged between jobs, another ``-w``, or an output folder moved registered every
    hemisphere again (0 reused), to the same outputs. Without a record in the work folder, the
    outputs' own metrics JSON (the inputs' content hash, the settings key, each file's size and
    SHA-1) decides; another setting, a failed latest run or a damaged file registers again."""
    import shutil
    from dataclasses import replace

    from geomorph_bids.results.metrics import mark_latest_run_failed

    config, jobs = cohort["config"], cohort["jobs"]
    fresh = replace(config, work_dir=tmp_path / "purged")
    tasks, reused = plan_tasks(jobs, fresh)
    assert reused == 5 and [t.key for t in tasks] == [("02", None, "R")]
    assert plan_tasks(jobs, replace(fresh, density="164k"))[1] == 0
    assert plan_tasks(jobs, replace(fresh, software=config.software + " (another build)"))[1] == 0
    moved = tmp_path / "moved"
    shutil.copytree(config.output_dir, moved)
    at_moved = replace(fresh, output_dir=moved)
    assert plan_tasks(jobs, at_moved)[1] == 5
    job = next(j for j in jobs if j.subject == "03")
    assert mark_latest_run_failed(hemi_outputs(job.inputs.hemis["L"], at_moved).metrics, "r1", "failed")
    sphere = hemi_outputs(job.inputs.hemis["R"], at_moved).registered_sphere
    sphere.write_bytes(sphere.read_bytes()[:-1] + b" ")  # edited in place, same size
    tasks, reused = plan_tasks(jobs, at_moved)
    assert reused == 3 and [t.key for t in tasks] == [("02", None, "R"), ("03", None, "L"), ("03", None, "R")]


def test_resume_skips_what_is_done_and_redoes_what_changed(cohort):
    config, jobs = cohort["config"], cohort["jobs"]
    tasks, reused = plan_tasks(jobs, config)
    assert reused == 5 and [t.key for t in tasks] == [("02", None, "R")]  # only the failed one
    # the resume is keyed on content: a new modification time alone changes nothing
    sulc = cohort["bids"] / "derivatives" / "freesurfer" / "sub-01" / "surf" / "lh.sulc"
    stat = sulc.stat()
    os.utime(sulc, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert plan_tasks(_setup(cohort["tmp"], cohort["bids"])[1], config)[1] == 5
    # a changed input (other bytes, same size and modification time), a missing output
    import nibabel.freesurfer as nfs

    nfs.write_morph_data(str(sulc), nfs.read_morph_data(str(sulc)) + 0.25)
    os.utime(sulc, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert sulc.stat().st_size == stat.st_size
    jobs = _setup(cohort["tmp"], cohort["bids"])[1]  # a new run: inputs hashed again after discovery
    job3 = next(j for j in jobs if j.subject == "03")
    hemi_outputs(job3.inputs.hemis["R"], config).metrics.unlink()
    tasks, reused = plan_tasks(jobs, config)
    assert reused == 3 and [t.key for t in tasks] == [("01", None, "L"), ("02", None, "R"), ("03", None, "R")]
    # other settings: every hemisphere has another record
    other, _ = _setup(cohort["tmp"], cohort["bids"], "--output-density", "164k")
    assert record_path(other, job3.inputs.hemis["L"]) != record_path(config, job3.inputs.hemis["L"])
    assert stamp(other, job3.inputs.hemis["L"]) != stamp(config, job3.inputs.hemis["L"])
    assert plan_tasks(jobs, other)[1] == 0


def test_resume_redoes_an_output_truncated_or_edited_in_place(cohort):
    """A registered sphere truncated after the run, or a metrics file edited in place (same size,
    a new modification time), was "reused ok" by the next batch run: the record checked only that
    the files existed. The record now lists each file's size and modification time."""
    config, jobs = cohort["config"], cohort["jobs"]
    before = {t.key for t in plan_tasks(jobs, config)[0]}
    job = next(j for j in jobs if j.subject == "03")
    outputs = hemi_outputs(job.inputs.hemis["L"], config)
    with open(outputs.registered_sphere, "r+b") as f:
        f.truncate(100)
    assert {t.key for t in plan_tasks(jobs, config)[0]} == before | {("03", None, "L")}
    job = next(j for j in jobs if j.subject == "02")
    metrics = hemi_outputs(job.inputs.hemis["L"], config).metrics
    st = metrics.stat()
    metrics.write_bytes(metrics.read_bytes())  # rewritten in place: same size, same bytes, a new time
    os.utime(metrics, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert {t.key for t in plan_tasks(jobs, config)[0]} == before | {("03", None, "L"), ("02", None, "L")}
    # a record an older version wrote (the stamp alone) still checks that the files are there
    record = record_path(config, job.inputs.hemis["L"])
    record.write_text(record.read_text().partition("\n")[0])
    assert {t.key for t in plan_tasks(jobs, config)[0]} == before | {("03", None, "L")}


def test_run_chunk_records_every_stage(cohort, tmp_path):
    config, jobs = _setup(tmp_path, cohort["bids"], "--participant-label", "03")
    tasks, _ = plan_tasks(jobs, config)
    settings = pipeline.ChunkSettings(config.template, config.model, config.device, config.density,
                                      config.templateflow_home, config.output_dir)
    outcomes = run_chunk(tasks, settings)
    assert [o.key for o in outcomes] == [("03", None, "L"), ("03", None, "R")]
    for o in outcomes:
        assert o.error is None and set(o.seconds) == {"read", "register", "resample", "write"}
    assert all(t.record.read_text().partition("\n")[0] == t.stamp for t in tasks)


def die_for_subject_02(chunk, settings):
    """A chunk task whose worker dies (as if killed by the kernel) when it holds sub-02."""
    if any(t.subject == "02" for t in chunk):
        os._exit(9)
    return run_chunk(chunk, settings)


def test_a_dead_worker_fails_its_chunk_only(cohort, tmp_path, monkeypatch):
    """The worker registering sub-02 dies: the pool is rebuilt, the chunks in flight are rerun
    one at a time, sub-02's chunk fails (both hemispheres, one line each); the others finish."""
    config, jobs = _setup(tmp_path, make_dataset(tmp_path / "bids", "freesurfer", subjects=("01", "02", "03")))
    monkeypatch.setattr(pipeline, "run_chunk", die_for_subject_02)
    crashes = tmp_path / "crashes"
    run = run_batch(jobs, config, crashes, log=lambda _: None)
    assert (run.registered, run.failed) == (4, 2)
    failures = crash_failures(crashes, _names(jobs))
    assert sorted((f.subject, f.hemi) for f in failures) == [("02", "L"), ("02", "R")]
    assert all("worker process died" in f.reason for f in failures)
    for subject in ("01", "03"):
        assert _complete(config, jobs, subject, "L") and _complete(config, jobs, subject, "R")


def die_building_a_report(output_dir, subject, reuse):
    """A report task whose worker always dies (as a worker that cannot start at all would)."""
    os._exit(9)


def die_once(chunk, settings):
    """The first chunk task of a run kills its worker (as the OOM killer or ``kill -9`` would); the others, and
    that chunk when it is tried again, run as usual."""
    marker = Path(settings.output_dir).parent / "a-worker-died"
    if not marker.exists():
        marker.touch()
        os._exit(9)
    return run_chunk(chunk, settings)


def test_a_worker_killed_alone_whose_chunks_then_succeed_is_said_once(tmp_path, monkeypatch, capsys):
    """One batch worker killed (the OOM killer, ``kill -9 PID``) while its chunks were in flight: they were rerun
    and succeeded, and the run said nothing of it (``0 failed``, exit 0), so the kill, or memory running out, went
    unnoticed. It still ends well, and one note says a worker died and how many hemispheres were tried again."""
    from geomorph_bids.cli.bids import main

    bids = make_dataset(tmp_path / "bids", "freesurfer", subjects=("01", "02"))
    monkeypatch.setattr(pipeline, "run_chunk", die_once)
    code = main([str(bids), str(tmp_path / "out"), "participant", "--model", "rigid", "-w", str(tmp_path / "w"),
                 "--nprocs", "2", "--batch-size", "1", "--reports", "deferred"])
    out, err = capsys.readouterr()
    assert code == 0, err
    # 2 workers, one chunk queued ahead: 3 chunks in flight when the first worker died, each tried again alone
    assert "batch mode: registered 4 hemisphere(s) in 2 worker process(es), 1 per registration batch; 0 failed" in out
    notes = [line for line in err.splitlines() if "worker process died" in line]
    assert notes == ["geomorph-bids: note: a batch worker process died 1 time(s) (killed, or out of memory?); the 3 "
                     "hemisphere(s) in flight then were tried again, one chunk at a time (if it was memory: a smaller "
                     "--batch-size or --nprocs needs less)"], err


def test_a_report_whose_worker_always_dies_ends_with_a_warning_not_a_loop(cohort, tmp_path, monkeypatch):
    """Lost reports were resubmitted to a fresh pool for ever: a pool whose workers could not
    start (e.g. importing another copy of the package) never finished. Now a report is tried
    twice, then left with one warning; the registrations are kept."""
    config, jobs = _setup(tmp_path, cohort["bids"], "--participant-label", "01")
    monkeypatch.setattr(pipeline, "build_report", die_building_a_report)
    run = run_batch(jobs, config, tmp_path / "crashes", log=lambda _: None)
    assert (run.registered, run.failed) == (2, 0) and run.reports == {}
    assert run.report_warnings == ["sub-01: report not written: its worker process died twice (killed, or out of "
                                   "memory?)"]
    assert _complete(config, jobs, "01", "L") and _complete(config, jobs, "01", "R")


def test_stop_on_first_crash_starts_no_new_chunk(cohort, tmp_path):
    config, jobs = _setup(tmp_path, cohort["bids"], "--nprocs", "1", "--batch-size", "1")
    run = run_batch(jobs, config, tmp_path / "crashes", stop_on_first_crash=True, log=lambda _: None)
    # one worker, one chunk queued ahead: 01L 01R 02L 02R(broken) 03L run; 03R never starts
    assert (run.registered, run.failed) == (4, 1)
    assert _complete(config, jobs, "03", "L") and not _complete(config, jobs, "03", "R")


def chunk_on_a_full_disk(tasks, settings):
    """sub-02's hemispheres meet a full disk at their write (as a worker reports it); the others run as usual."""
    if tasks[0].subject != "02":
        return run_chunk(tasks, settings)
    return [Outcome(t.key, error=f"OSError: [Errno 28] No space left on device: '{t.files[0].path}'", stage="write",
                    errno=errno.ENOSPC) for t in tasks]


def test_a_full_disk_starts_no_more_registrations(tmp_path, monkeypatch):
    """The disk full at sub-02 hemi-L's write: every hemisphere left was still registered and failed at its own
    write (CPU spent on results that could not be kept; on a cohort, an hour). The hemispheres not started now
    fail at once, on one line each that says why, and are neither registered nor written; sub-01's are kept."""
    bids = make_dataset(tmp_path / "bids", "freesurfer", subjects=("01", "02", "03"))
    config, jobs = _setup(tmp_path, bids, "--nprocs", "1", "--batch-size", "1", "--reports", "deferred")
    monkeypatch.setattr(pipeline, "run_chunk", chunk_on_a_full_disk)
    lines: list[str] = []
    run = run_batch(jobs, config, tmp_path / "crashes", log=lines.append)
    # one worker, one chunk queued ahead: 01L 01R run, 02L's write fails; 02R was queued behind it and meets the
    # same disk, or (on a busy host, the worker's answer before 02R was handed out) is not started; 03 never starts
    why = ("not registered: no space left on device (disk full) when sub-02 hemi-L was written, so this run started "
           "no more registrations; free space and run the same command again (what was written is kept and not "
           "registered again)")
    waited = [] if run.failed == 2 else [(("02", None, "R"), why)]
    assert run.registered == 2 and run.failed in (1, 2)
    assert run.not_started == waited + [(("03", None, "L"), why), (("03", None, "R"), why)]
    assert (f"batch: {len(run.not_started)} hemisphere(s) not started: no space left on device (disk full) when "
            "sub-02 hemi-L was written") in lines
    assert _complete(config, jobs, "01", "L") and _complete(config, jobs, "01", "R")
    assert not (config.output_dir / "sub-03").exists()
    assert not any(p.name.startswith("sub-03") for p in record_path(config, jobs[0].inputs.hemis["L"]).parent.iterdir())


def test_deferred_reports_are_not_built(cohort, tmp_path):
    config, jobs = _setup(tmp_path, cohort["bids"], "--participant-label", "01", "--reports", "deferred")
    run = run_batch(jobs, config, tmp_path / "crashes", log=lambda _: None)
    assert run.registered == 2 and run.reports == {} and not (config.output_dir / "sub-01.html").exists()


def test_a_network_retrained_into_the_same_folder_is_another_setting(tmp_path):
    """geomorph-train --overwrite into the folder a cohort's --model names, then the participant level
    again in batch mode: every hemisphere was 'reused' (CC after 0.897, the earlier network's; the
    workflow registered them again, 0.901) because the resume key held the checkpoint's path only.
    It holds the checkpoint's content too."""
    from dataclasses import replace

    from geomorph_bids.batch.state import settings_key
    from geomorph_bids.engine.model_choice import ModelChoice
    from geomorph_bids.workflows import RunConfig

    checkpoint = tmp_path / "my_model" / "model.pt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"first network")
    config = RunConfig(bids_dir=tmp_path / "bids", output_dir=tmp_path / "out", work_dir=tmp_path / "w",
                       model=ModelChoice("network", str(checkpoint.parent), ("sulc",), checkpoint))
    first = settings_key(config)
    assert settings_key(replace(config)) == first
    checkpoint.write_bytes(b"other network")
    assert settings_key(replace(config)) != first  # the next run's settings (the key is computed once per run)


def test_hemispheres_are_worked_in_the_summary_tables_order(tmp_path):
    """A longitudinal cohort's ``sub-2``/``sub-10`` with ``ses-2``/``ses-10``: batch mode worked (and logged)
    them as text, ``sub-10 ses-10`` first, while the summary table and the group table put 2 before 10."""
    for ses in ("2", "10"):
        bids = make_dataset(tmp_path / "bids", "freesurfer", subjects=("2", "10"), session=ses)
    config, jobs = _setup(tmp_path, bids, "--hemi", "L")
    tasks, reused = plan_tasks(list(reversed(jobs)), config)
    assert reused == 0
    assert [(t.subject, t.session) for t in tasks] == [("2", "2"), ("2", "10"), ("10", "2"), ("10", "10")]


def test_high_resolution_hemispheres_take_more_of_a_registration_batch(tmp_path):
    """Twenty-third session: batch mode put ``--batch-size`` hemispheres in a chunk whatever their meshes, each
    counted at 0.06 GB; a worker grew by 0.47 GB per 655,362-vertex hemisphere (0.18 per 300,000), so the chunk
    sizes that ``--mem-gb`` allowed ran a job out of memory on 7T/hires data. Now such a hemisphere takes more
    places of a chunk (read from its sphere's header); ordinary ones are chunked as before."""
    from types import SimpleNamespace

    import numpy as np

    from geomorph_bids.batch.pipeline import chunk_tasks

    def sphere(name: str, n: int) -> SimpleNamespace:
        path = tmp_path / name  # a FreeSurfer surface's header, the rest sparse: the vertex count is all that is
        head = b"\xff\xff\xfe" + b"created by test\n\n" + np.array([n, 2 * n - 4], ">i4").tobytes()
        path.write_bytes(head)  # read, and a header is believed only where the file has the bytes it announces
        with open(path, "r+b") as fh:
            fh.truncate(len(head) + 12 * n + 12 * (2 * n - 4))
        return SimpleNamespace(sphere=path, name=name, n_vertices=None)  # no count from discovery: the header's

    ordinary = [sphere(f"o{i}", 163842 if i % 2 else 10242) for i in range(7)]
    assert [[t.name for t in c] for c in chunk_tasks(ordinary, 3)] == [["o0", "o1", "o2"], ["o3", "o4", "o5"], ["o6"]]
    hires = [sphere("a", 163842), sphere("b", 163842), sphere("c", 655362), sphere("d", 300000), sphere("e", 300000),
             sphere("f", 10242)]
    assert [[t.name for t in c] for c in chunk_tasks(hires, 8)] == [["a", "b"], ["c"], ["d", "e"], ["f"]]
    assert [[t.name for t in c] for c in chunk_tasks(hires, 1)] == [["a"], ["b"], ["c"], ["d"], ["e"], ["f"]]


def test_a_batch_chunk_looks_for_no_data_once_per_map(cohort, tmp_path, no_data_calls):
    """``io.validate.no_data`` (80 ms a 163,842-vertex sulc) ran twice per map: in ``read_hemisphere`` and again in
    ``register_many`` on the maps it had returned (which it could find nothing in: NaN and a plateau are 0 there,
    and in the cortex mask given). Once now; the outputs are the same (scripts/compare_outputs.py, example)."""
    calls = no_data_calls
    config, jobs = _setup(tmp_path, cohort["bids"], "--participant-label", "03")
    tasks, _ = plan_tasks(jobs, config)
    settings = pipeline.ChunkSettings(config.template, config.model, config.device, config.density,
                                      config.templateflow_home, config.output_dir)
    outcomes = run_chunk(tasks, settings)
    assert all(o.error is None for o in outcomes)
    assert sorted(calls) == sorted(f"feature {f!r}" for f in config.features for _ in tasks)


def test_outputs_are_reused_when_the_dataset_moved_with_them(cohort, tmp_path):
    """The metrics' resume record named the inputs by their absolute paths, so a study copied or moved (another
    disk, a colleague's copy, ``/scratch`` to ``/project``) with its outputs registered every hemisphere again, to the
    same outputs; and the metrics named the user's folders. It names them as the sidecars do (``bids:raw:...``, by
    content as before): outputs are reused wherever the dataset lies; an input outside any dataset keeps its path.
    The inflated surface the report draws is recorded by its absolute path only outside the dataset."""
    import json
    import shutil
    from dataclasses import replace

    # where it is, with a fresh work folder: what the outputs themselves let a run reuse (other tests of this
    # module edit some of them: those are registered again wherever they lie)
    (tmp_path / "here").mkdir()
    config, jobs = _setup(tmp_path / "here", cohort["bids"])  # discovered again: other tests edit inputs too
    here = plan_tasks(jobs, replace(config, output_dir=cohort["config"].output_dir))
    bids = tmp_path / "elsewhere" / "bids"
    shutil.copytree(cohort["bids"], bids, symlinks=True)
    shutil.copytree(cohort["config"].output_dir, tmp_path / "out")
    config, jobs = _setup(tmp_path, bids)
    tasks, reused = plan_tasks(jobs, config)
    assert here[1] >= 2 and reused == here[1] and [t.key for t in tasks] == [t.key for t in here[0]], (
        [t.key for t in tasks], [t.key for t in here[0]])
    job = next(j for j in jobs if j.subject == "01")
    doc = json.loads(hemi_outputs(job.inputs.hemis["L"], config).metrics.read_text())
    assert doc["resume"]["inputs"][:2] == ["bids:raw:derivatives/freesurfer/sub-01/surf/lh.sphere",
                                           "bids:raw:derivatives/freesurfer/sub-01/surf/lh.sulc"]
    assert str(cohort["tmp"]) not in json.dumps(doc["resume"])

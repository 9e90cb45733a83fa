"""Reliability round two (issue 17), the cases that end before any registration: folders that
would touch the inputs, resource arguments, sessions that do not exist, stale locks, hostile
filter files and labels. Each asserts on the exit code, the one line the user reads and the
files on disk (the dataset's bytes unchanged, nothing created). The cases that need a run are in
``test_hostile_runs.py``; the matrix is in docs/reliability.md."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from geomorph_bids.cli import preflight as pf
from geomorph_bids.cli.bids import main
from geomorph_bids.cli.machine import total_memory_gb, usable_cpus
from geomorph_bids.cli.paths import resolve_input_folders
from geomorph_bids.errors import InputError
from geomorph_bids.cli.settings import validate_resources

from .test_bids import run


def tree(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (links not followed), and every folder/link name."""
    out = {}
    for p in sorted(root.rglob("*")):
        key = str(p.relative_to(root))
        if p.is_symlink():
            out[key] = "link:" + os.readlink(p)
        elif p.is_file():
            out[key] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[key] = "dir"
    return out


def one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("geomorph-bids: error: "), err
    assert "Traceback" not in err
    return lines[0]


def fs_subject(folder: Path) -> Path:
    """A FreeSurfer subject folder ``folder`` (surf/{lh,rh}.{sphere,sulc,curv,thickness}): the
    cli tests' ico-4 synthetic hemispheres (2,562 vertices; the bundled example's sub-01 has
    10,242 and an inflated surface, which cost these naming tests registration and report time
    and were never what they test)."""
    from geomorph_bids.engine.example_data import synthetic_hemisphere, template_hemisphere, write_freesurfer

    from .conftest import LEVEL

    for k, hemi in enumerate(("L", "R")):
        v, f, maps = template_hemisphere(hemi, LEVEL)
        write_freesurfer(folder.parent, folder.name, synthetic_hemisphere(hemi, v, f, maps, seed=[1, k, 99]))
    return folder


@pytest.fixture(scope="module")
def bids(dataset_factory):
    """FreeSurfer-layout dataset (sub-01) with an sMRIPrep derivatives folder beside it."""
    root = dataset_factory("freesurfer", subjects=("01",))
    (root / "derivatives" / "smriprep").mkdir()
    (root / "derivatives" / "smriprep" / "dataset_description.json").write_text(
        json.dumps({"Name": "smriprep", "BIDSVersion": "1.9.0", "GeneratedBy": [{"Name": "sMRIPrep"}]}))
    return root


# ------------------------------------------------------------------------------ inputs never touched

OUTPUTS = {  # name -> (output path from the dataset root B, words of the refusal)
    "dataset_root": (lambda b, t: b, "is the BIDS dataset"),
    "dataset_root_via_dotdot": (lambda b, t: b / "derivatives" / "..", "is the BIDS dataset"),
    "link_to_dataset": (lambda b, t: _link(t / "out_link", b), "is the BIDS dataset"),
    "inside_outside_derivatives": (lambda b, t: b / "sub-01", "outside its derivatives folder"),
    "derivatives_folder_itself": (lambda b, t: b / "derivatives", "outside its derivatives folder"),
    "input_freesurfer_folder": (lambda b, t: b / "derivatives" / "freesurfer", "a folder inputs are read from"),
    "inside_input_freesurfer": (lambda b, t: b / "derivatives" / "freesurfer" / "sub-01",
                                "a folder inputs are read from"),
    "input_smriprep_folder": (lambda b, t: b / "derivatives" / "smriprep", "a folder inputs are read from"),
    "link_to_input_derivatives": (lambda b, t: _link(t / "deriv_link", b / "derivatives" / "smriprep"),
                                  "a folder inputs are read from"),
    "parent_of_dataset": (lambda b, t: b.parent, "contains the BIDS dataset"),
    "dangling_link_into_dataset": (lambda b, t: _link(t / "dangling", b / "not-yet"),
                                   "outside its derivatives folder"),
    "another_pipelines_folder": (lambda b, t: _described(t / "fmriprep", "fMRIPrep"), "holds fMRIPrep 23.2.0's"),
    "another_raw_dataset": (lambda b, t: shutil.copytree(b, t / "other_study"), "is a BIDS dataset ("),
    "another_raw_dataset_with_a_damaged_description": (lambda b, t: _damaged(shutil.copytree(b, t / "other_study")),
                                                       "dataset_description.json cannot be read (is not valid JSON"),
    "a_folder_whose_description_is_a_list": (lambda b, t: _damaged(t / "listed", "[1, 2]"),
                                             "cannot be read (holds a JSON list, not an object)"),
}


def _damaged(folder: Path, text: str = '{"Name": "My study", "BIDSVersion": "1.8.0",}') -> Path:
    """A folder (another dataset) whose dataset_description.json a hand edit left unreadable (a trailing
    comma): it was replaced by ours in silence, and the outputs written into that dataset."""
    folder.mkdir(exist_ok=True)
    (folder / "dataset_description.json").write_text(text)
    return folder


def _described(folder: Path, name: str) -> Path:
    """A folder another pipeline wrote (its dataset_description.json would have been replaced)."""
    folder.mkdir()
    (folder / "dataset_description.json").write_text(json.dumps(
        {"Name": name, "BIDSVersion": "1.4.0", "DatasetType": "derivative",
         "GeneratedBy": [{"Name": name, "Version": "23.2.0"}]}))
    return folder


def _link(link: Path, target: Path) -> Path:
    link.symlink_to(target, target_is_directory=True)
    return link


@pytest.mark.parametrize("case", sorted(OUTPUTS))
def test_output_folder_that_would_touch_the_inputs_is_refused(bids, tmp_path, case):
    from geomorph_bids.cli.settings import tidy_path

    make, words = OUTPUTS[case]
    out = make(bids, tmp_path)
    before = tree(bids)
    code, stdout, err = run(bids, out, "participant", "--model", "rigid", "--hemi", "L", "-w", tmp_path / "w")
    line = one_error(err)
    assert code == 1 and stdout == ""
    assert words in line and str(tidy_path(out)) in line, line  # named as given, less what . and .. undo
    assert tree(bids) == before  # not a byte of the dataset changed, nothing added
    assert not (tmp_path / "w").exists()


def test_a_damaged_description_of_our_own_output_folder_is_replaced(bids, tmp_path):
    """Our own output folder (it holds the lock folder a run makes) with a dataset_description.json
    that cannot be read: replaced, as before; the refusal above is for folders no run of ours wrote."""
    out = tmp_path / "out"
    (out / ".geomorph-locks").mkdir(parents=True)
    (out / "dataset_description.json").write_text('{"Name": ')
    code, _, err = run(bids, out, "participant", "--model", "rigid", "--hemi", "L", "-w", tmp_path / "w")
    assert code == 0, err
    assert json.loads((out / "dataset_description.json").read_text())["GeneratedBy"][0]["Name"] == "geomorph-bids"


WORKS = {  # name -> (work folder, output folder (None: tmp/out), words)
    "work_inside_dataset": (lambda b, t: b / "work", None, "the work directory lies inside the BIDS dataset"),
    "work_inside_derivatives": (lambda b, t: b / "derivatives" / "work", None, "lies inside the BIDS dataset"),
    "work_inside_output": (lambda b, t: t / "out" / "work", None, "lies inside the output directory"),
    "work_is_output": (lambda b, t: t / "out", None, "lies inside the output directory"),
    "output_inside_work": (lambda b, t: t / "w", lambda b, t: t / "w" / "out", "lies inside the work directory"),
    "work_link_to_dataset": (lambda b, t: _link(t / "wl", b), None, "the BIDS dataset"),
}


@pytest.mark.parametrize("case", sorted(WORKS))
def test_work_folder_inside_the_inputs_or_outputs_is_refused(bids, tmp_path, case):
    work_of, out_of, words = WORKS[case]
    work = work_of(bids, tmp_path)
    out = out_of(bids, tmp_path) if out_of else tmp_path / "out"
    before = tree(bids)
    code, _, err = run(bids, out, "participant", "--model", "rigid", "-w", work)
    line = one_error(err)
    assert code == 1 and words in line, line
    assert tree(bids) == before
    assert not (tmp_path / "out").exists() or case == "output_inside_work"


def test_the_default_work_folder_inside_the_dataset_says_where_it_came_from(bids, tmp_path, monkeypatch):
    """`cd /data/bids && geomorph-bids . derivatives/geomorph participant` (the BIDS-Apps habit):
    the default work folder ./work lies in the dataset and is refused. Before, the line named a
    `work` folder the user never gave and no option; now it says it is the default and names -w."""
    monkeypatch.chdir(bids)
    before = tree(bids)
    code, _, err = run(Path("."), Path("derivatives") / "geomorph", "participant", "--model", "rigid")
    line = one_error(err)
    assert code == 1 and f"{Path('work')}: the work directory lies inside the BIDS dataset" in line, line
    assert "with -w (without it: ./work, in the current folder), e.g. -w /tmp/geomorph_work" in line, line
    assert tree(bids) == before


def test_fs_subjects_dir_outside_the_dataset_is_an_input_too(bids, tmp_path):
    """--fs-subjects-dir elsewhere: neither the output nor the work folder may lie in it."""
    fs = tmp_path / "subjects"
    fs.mkdir()
    code, _, err = run(bids, fs / "geomorph", "participant", "--fs-subjects-dir", fs)
    assert code == 1 and "a folder inputs are read from" in one_error(err)
    code, _, err = run(bids, tmp_path / "o", "participant", "--fs-subjects-dir", fs, "-w", fs / "w")
    assert code == 1 and "work directory lies inside" in one_error(err)


def test_link_inside_the_output_folder_leading_into_the_dataset_is_refused(bids, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub-01").symlink_to(bids / "derivatives" / "freesurfer" / "sub-01", target_is_directory=True)
    before = tree(bids)
    code, _, err = run(bids, out, "participant", "--model", "rigid", "-w", tmp_path / "w")
    line = one_error(err)
    assert code == 1 and "outside the output directory" in line and "sub-01" in line
    assert tree(bids) == before


def _geomorph_output(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset_description.json").write_text(json.dumps(
        {"Name": "geomorph", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
         "GeneratedBy": [{"Name": "geomorph-bids", "Version": "0.1.0.dev0"}]}))
    return folder


def test_bids_convention_output_is_allowed_and_never_read_back(bids, tmp_path):
    """``BIDS_DIR/derivatives/geomorph`` is allowed; it and any other geomorph-bids output in
    ``derivatives/`` are left out of the folders searched for inputs, fresh or filled."""
    parser_args = argparse.Namespace(bids_dir=bids, derivatives=None, fs_subjects_dir=None)
    fresh = bids / "derivatives" / "geomorph"
    fresh.mkdir()
    try:
        inputs = resolve_input_folders(parser_args, fresh)
        assert "geomorph" not in inputs.derivatives and "smriprep" in inputs.derivatives
        other = _geomorph_output(bids / "derivatives" / "geomorph_old")  # an earlier run's, elsewhere
        inputs = resolve_input_folders(parser_args, fresh)
        assert set(inputs.derivatives) == {"smriprep"}
        assert set(inputs.excluded) == {fresh, other}
        from geomorph_bids.cli.paths import check_folders

        check_folders(inputs, fresh, tmp_path / "w")  # allowed: no exception
    finally:
        import shutil

        shutil.rmtree(bids / "derivatives" / "geomorph", ignore_errors=True)
        shutil.rmtree(bids / "derivatives" / "geomorph_old", ignore_errors=True)


def test_explicit_derivatives_that_are_geomorph_outputs_are_refused(bids, tmp_path):
    ours = _geomorph_output(tmp_path / "earlier_run")
    code, _, err = run(bids, tmp_path / "out", "participant", "--derivatives", f"smriprep={ours}", "-w",
                       tmp_path / "w")
    line = one_error(err)
    assert code == 1 and "geomorph-bids output folder" in line and str(ours) in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_a_derivatives_path_that_is_no_folder_is_refused_before_anything_is_written(bids, tmp_path, kind):
    """QA pass (fix-a): ``--derivatives smriprep=PATH`` with a mistyped PATH (or a file) was searched as
    nothing, and the subjects of the default derivatives folders it replaces were left out, exit 0."""
    given = tmp_path / "derivatives" / "smriprpe"
    if kind == "file":
        given.parent.mkdir()
        given.write_text("not a folder")
    out, work = tmp_path / "out", tmp_path / "w"
    code, std, err = run(bids, out, "participant", "--derivatives", f"smriprep={given}", "-w", work,
                         "--hemi", "L", "--model", "rigid")
    what = "no such folder" if kind == "missing" else "not a folder"
    assert code == 1 and one_error(err) == (f"geomorph-bids: error: {given}: --derivatives smriprep: {what} (give the "
                                            "sMRIPrep/fMRIPrep/HCP output folder that holds the sub-* folders)")
    assert not out.exists() and not work.exists() and std == ""


def test_a_derivatives_folder_holding_no_subject_is_named_on_one_warning_line(bids, tmp_path):
    """QA pass (fix-a): a --derivatives folder with no subject of any layout (sub-*, HCP, FreeSurfer)
    said nothing; now one warning line names it, and a FAILED not-found line lists it among the
    folders searched. A folder whose smriprep/ holds the subjects (sMRIPrep's own layout) is no
    such folder."""
    barren = tmp_path / "smriprep_out"
    barren.mkdir()
    (barren / "dataset_description.json").write_text("{}")
    code, _, err = run(bids, tmp_path / "out", "participant", "--derivatives", f"smriprep={barren}", "-w",
                       tmp_path / "w", "--hemi", "L", "--model", "rigid", "--participant-label", "02")
    lines = err.splitlines()
    assert code == 1 and lines[0] == (f"geomorph-bids: warning: --derivatives smriprep={barren} holds no subject (no "
                                      "sub-* folder, HCP or FreeSurfer subject, nor a smriprep/ or fmriprep/ folder "
                                      "with sub-*): nothing is read from it")
    [failed] = [line for line in lines if "FAILED sub-02" in line]
    assert f"searched: {barren}, {bids / 'derivatives' / 'freesurfer'}" in failed
    shutil.copytree(bids / "derivatives" / "freesurfer" / "sub-01", barren / "smriprep" / "sub-01")
    parser_args = argparse.Namespace(bids_dir=bids, derivatives=[f"smriprep={barren}"], fs_subjects_dir=None)
    assert resolve_input_folders(parser_args, tmp_path / "out").barren == ()


def test_hcp_subjects_with_only_fslr_meshes_say_that_the_native_mesh_is_read(bids, tmp_path):
    """An HCP user whose subjects hold only MNINonLinear/fsaverage_LR32k (the 32k package, or the
    Native folder deleted to save space) was told the folder "holds no subject": those maps are
    already on fsLR (resampled through HCP's own registration), and what geomorph-bids registers,
    MNINonLinear/Native, was not named. The warning line now says it."""
    hcp = tmp_path / "hcp"
    for name in ("100307", "100408"):
        fslr = hcp / name / "MNINonLinear" / "fsaverage_LR32k"
        fslr.mkdir(parents=True)
        (fslr / f"{name}.L.sphere.32k_fs_LR.surf.gii").write_text("<GIFTI/>")
    code, _, err = run(bids, tmp_path / "out", "participant", "--derivatives", f"hcp={hcp}", "-w", tmp_path / "w",
                       "--hemi", "L", "--model", "rigid", "--participant-label", "02")
    lines = err.splitlines()
    assert code == 1 and lines[0] == (
        f"geomorph-bids: warning: --derivatives hcp={hcp} holds no subject (no sub-* folder, HCP or FreeSurfer "
        "subject, nor a smriprep/ or fmriprep/ folder with sub-*): nothing is read from it; 100307, 100408 hold "
        "MNINonLinear/ without Native/: their fsaverage_LR32k/ and 164k_fs_LR maps are already on fsLR (HCP's own "
        "registration); geomorph-bids registers the native mesh, MNINonLinear/Native/<S>.L.sphere.native.surf.gii "
        "and <S>.L.sulc.native.shape.gii, as HCP's PostFreeSurfer writes them"), lines[0]


# ------------------------------------------------------------------------------ resources

@pytest.mark.parametrize("value", ["-5", "0", "nan", "inf", "-inf", "1e400", "lots"])
def test_memory_must_be_positive_and_finite(bids, tmp_path, value, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(bids), str(tmp_path / "o"), "participant", "--mem-gb", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--mem-gb" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("option,value", [("--nprocs", "0"), ("--nprocs", "-3"), ("--omp-nthreads", "0"),
                                          ("--min-cc", "2"), ("--min-cc-other", "-1.5"), ("--max-distortion", "nan"),
                                          ("--max-folds", "-1"),
                                          ("--batch-size", "0")])
def test_other_resource_and_gate_arguments_are_checked(bids, tmp_path, option, value, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(bids), str(tmp_path / "o"), "participant", option, value])
    assert exc.value.code == 2 and option in capsys.readouterr().err


def test_nprocs_is_capped_at_the_usable_cpus_with_one_warning(capsys):
    args = argparse.Namespace(nprocs=100_000, omp_nthreads=5000, mem_gb=1e6, batch_size=10 ** 9)
    notes = validate_resources(args)
    cpus, memory = usable_cpus(), total_memory_gb()
    assert args.nprocs == cpus and args.omp_nthreads == cpus
    assert args.mem_gb == pytest.approx(memory) and 1 <= args.batch_size < 10 ** 9
    err = capsys.readouterr().err.splitlines()
    assert len(err) == len(notes) == 4
    assert err[0] == (f"geomorph-bids: warning: --nprocs 100000 is more than the {cpus} CPU(s) this process may use; "
                      f"using {cpus}")
    ok = argparse.Namespace(nprocs=1, omp_nthreads=None, mem_gb=None, batch_size=None)
    assert validate_resources(ok) == [] and ok.nprocs == 1


def test_cpu_count_follows_the_affinity_mask():
    """``taskset``/SLURM: a process allowed one CPU counts one."""
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from geomorph_bids.cli.machine import usable_cpus; print(usable_cpus())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.stdout.strip() == "1", done.stderr


# ------------------------------------------------------------------------------ sessions, labels, filter files

def test_session_that_does_not_exist_is_an_error(bids, tmp_path):
    code, _, err = run(bids, tmp_path / "out", "participant", "--session-label", "5", "--model", "rigid",
                       "-w", tmp_path / "w")
    failed = [line for line in err.splitlines() if "FAILED" in line]
    assert code == 1 and len(failed) == 1, err
    assert "sub-01 ses-5 hemi-L,R" in failed[0] and "session ses-5" in failed[0] and "not found" in failed[0]
    assert not list((tmp_path / "out").rglob("*ses-5*"))
    assert not list((tmp_path / "out").rglob("*.gii"))


def _usage_line(argv: list, capsys) -> str:
    """The one ``error:`` line of a usage error (exit 2) of ``main(argv)``."""
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("geomorph-bids: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("label", ["é1", "ses-é1", "../x", "a b", "1_2", "ses-ses-1"])
@pytest.mark.parametrize("level", ["participant", "group"])
def test_session_label_that_is_not_a_bids_label_is_refused(bids, tmp_path, label, level, capsys):
    """A session label that is not a BIDS label: refused on exit 1 without the option's name, after the dataset
    was searched (round fifteen); now the option's usage error (exit 2, as every other malformed value), at every
    level, before any folder is looked at."""
    line = _usage_line([bids, tmp_path / "out", level, "--session-label", "1", label], capsys)
    assert line.startswith(f"geomorph-bids: error: argument --session-label/--session_label: invalid ses label "
                           f"{label!r}: "), line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("label,why", [("../01", "BIDS labels are alphanumeric (a label, not a folder's path: 01)"),
                                       ("01/..", "BIDS labels are alphanumeric"), ("*", "BIDS labels are alphanumeric"),
                                       ("sub-", "BIDS labels are alphanumeric"), ("-", "BIDS labels are alphanumeric"),
                                       ("sub-sub-01", "BIDS labels are alphanumeric ('sub-' given twice: sub-01, or 01 "
                                                      "alone)")])
@pytest.mark.parametrize("level", ["participant", "group"])
def test_participant_label_that_is_not_a_bids_label_is_refused(bids, tmp_path, label, why, level, capsys):
    """``--participant-label -`` / ``sub-sub-01`` said ``error: invalid sub label '-': BIDS labels are alphanumeric``
    on exit 1, without the option's name and after the dataset was searched; now argparse's usage error naming the
    option (exit 2), before anything is read or made."""
    line = _usage_line([bids, tmp_path / "out", level, "--participant-label", "01", label], capsys)
    assert line == ("geomorph-bids: error: argument --participant-label/--participant_label: invalid sub label "
                    f"{label!r}: {why}")
    assert not (tmp_path / "out").exists()


def test_non_utf8_filter_file_names_the_file(bids, tmp_path):
    filt = tmp_path / "filter.json"
    filt.write_bytes(b'{"subject": "\xe9\xff01"}')
    code, _, err = run(bids, tmp_path / "out", "participant", "--bids-filter-file", filt)
    line = one_error(err)
    assert code == 1 and str(filt) in line and "UTF-8" in line


@pytest.mark.parametrize("doc,words", [({"subject": None}, "subject"), ({"subject": []}, "subject"),
                                       ({"subject": [None]}, "subject"), ({"session": {"x": 1}}, "session"),
                                       ([1, 2], "JSON object")])
def test_filter_file_with_empty_or_null_selections_says_so(bids, tmp_path, doc, words):
    filt = tmp_path / "filter.json"
    filt.write_text(json.dumps(doc))
    code, _, err = run(bids, tmp_path / "out", "participant", "--bids-filter-file", filt)
    line = one_error(err)
    assert code == 1 and str(filt) in line and words in line
    assert "no subjects found" not in line



def test_a_filter_file_selecting_no_found_subject_names_both_selections(bids, tmp_path):
    """Round fifteen: a filter file's subject that --participant-label leaves out, or that is no
    subject found, said "no subjects found in B (nor its derivatives); check the folders or
    --participant-label": every subject was there. A session filter overruled by --session-label is
    said on one warning line."""
    filt = tmp_path / "filter.json"
    filt.write_text(json.dumps({"subject": "01"}))
    code, _, err = run(bids, tmp_path / "out", "participant", "--bids-filter-file", filt, "--participant-label", "02")
    line = one_error(err)
    assert code == 1 and line.endswith(f"{filt}: the BIDS filter file selects subject 01, which --participant-label "
                                       "02 leaves out: the two select no participant together; give one of them")
    filt.write_text(json.dumps({"subject": ["07", "08"]}))
    code, _, err = run(bids, tmp_path / "out", "participant", "--bids-filter-file", filt)
    assert code == 1 and one_error(err).endswith("selects subject 07, 08, which is not among the subjects found (01)")
    assert not (tmp_path / "out").exists()
    filt.write_text(json.dumps({"session": "2"}))
    code, _, err = run(bids, tmp_path / "out", "participant", "--bids-filter-file", filt, "--session-label", "1",
                       "--model", "rigid", "--hemi", "L", "-w", tmp_path / "w")
    assert "geomorph-bids: warning: --session-label 1 is used; the BIDS filter file's session 2 is not" in err


def test_filter_file_that_is_a_fifo_is_refused_without_hanging(bids, tmp_path):
    fifo = tmp_path / "filter.json"
    os.mkfifo(fifo)
    code, _, err = run(bids, tmp_path / "out", "participant", "--bids-filter-file", fifo)
    assert code == 1 and str(fifo) in one_error(err)


def test_huge_sparse_filter_file_is_refused_before_reading(bids, tmp_path):
    filt = tmp_path / "filter.json"
    with filt.open("wb") as f:
        f.truncate(2 ** 30)  # 1 GiB of holes: no disk used
    code, _, err = run(bids, tmp_path / "out", "participant", "--bids-filter-file", filt)
    line = one_error(err)
    assert code == 1 and str(filt) in line and "larger than" in line



@pytest.mark.parametrize("content", [None, "plugin: [\n", "plugin: MultiProc\nplugin_args: 3\n",
                                     # past Python's digit limit: "error: Exceeds the limit (4300 digits) ...", no file
                                     "plugin: MultiProc\nplugin_args: {n_procs: 1%s}\n" % ("0" * 5000)])
def test_a_plugin_file_that_cannot_be_used_leaves_nothing_behind(bids, tmp_path, content):
    """Round fifteen: a missing or broken --use-plugin file was read only when the workflow started,
    after the output folder had its dataset_description.json, README.md, .bidsignore, logs/CITATION.md
    and locks, and a work folder: both stayed behind after the one-line error."""
    plugin = tmp_path / "plugin.yml"
    if content is not None:
        plugin.write_text(content)
    out, work = tmp_path / "out", tmp_path / "work"
    code, std, err = run(bids, out, "participant", "--model", "rigid", "--hemi", "L", "-w", work,
                         "--use-plugin", plugin)
    line = one_error(err)
    assert code == 1 and str(plugin) in line and "plugin file" in line
    assert not out.exists() and not work.exists() and std == ""
    out.mkdir()
    (out / "mine.txt").write_text("a user's file")
    code, _, err = run(bids, out, "participant", "--model", "rigid", "--hemi", "L", "-w", work,
                       "--use-plugin", plugin)
    assert code == 1 and [p.name for p in out.iterdir()] == ["mine.txt"]



@pytest.mark.parametrize("name", ["multiproc", "Banana"])
def test_a_plugin_nipype_does_not_have_is_refused_before_anything_is_written(bids, tmp_path, name):
    """QA pass (fix-a): ``plugin: multiproc`` (or any name Nipype does not have) was a traceback
    (``AttributeError: ... no attribute 'multiprocPlugin'``) after the run header, with the output
    folder described and locked; now one line, nothing written."""
    plugin = tmp_path / "plugin.yml"
    plugin.write_text(f"plugin: {name}\n")
    out, work = tmp_path / "out", tmp_path / "work"
    code, std, err = run(bids, out, "participant", "--model", "rigid", "--hemi", "L", "-w", work,
                         "--use-plugin", plugin)
    line = one_error(err)
    assert code == 1 and line.startswith(f"geomorph-bids: error: {plugin}: plugin '{name}' is not one of Nipype's "
                                         "plugins (Condor, CondorDAGMan, Debug, IPython, ")
    assert line.endswith(": did you mean MultiProc?") is (name == "multiproc")
    assert not out.exists() and not work.exists() and std == ""


def _fake_commands(folder: Path, *names: str) -> Path:
    """``folder`` holding an executable stand-in of each command in ``names`` (for PATH)."""
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / name).write_text("#!/bin/sh\nexit 1\n")
        (folder / name).chmod(0o755)
    return folder


@pytest.mark.parametrize("name,commands,words", [
    ("SLURM", (), "plugin SLURM submits each job with sbatch, which is not on PATH"),
    ("SLURMGraph", (), "plugin SLURMGraph submits each job with sbatch, which is not on PATH"),
    ("SGEGraph", (), "plugin SGEGraph submits each job with qsub, which is not on PATH"),
    ("LSF", (), "plugin LSF submits each job with bsub, which is not on PATH"),
    ("SGE", ("qsub",), "plugin SGE names its jobs after $LOGNAME, which is not set (as in containers and CI): "
                       "export LOGNAME=$(id -un)"),
    ("SLURM", ("sbatch",), "plugin SLURM names its jobs after $LOGNAME"),
    ("IPython", (), "plugin IPython needs the Python module ipyparallel, which is not installed (pip install "
                    "ipyparallel)"),
    ("Debug", (), "plugin Debug needs a Python callable in plugin_args"),
])
def test_a_plugin_that_cannot_run_here_says_what_is_missing(tmp_path, monkeypatch, name, commands, words):
    """QA pass (fix-a): a plugin whose scheduler command, Python module or $LOGNAME is missing was a
    traceback (or, SGEGraph, "outputs missing" with nothing about qsub) once the run had started.
    Now the plugin file is refused on one line when it is read (before anything is written)."""
    import importlib.util

    from geomorph_bids.cli.nipype_config import plugin_settings

    if name == "IPython" and importlib.util.find_spec("ipyparallel") is not None:
        pytest.skip("ipyparallel is installed here")
    monkeypatch.setenv("PATH", str(_fake_commands(tmp_path / "bin", *commands)))
    monkeypatch.delenv("LOGNAME", raising=False)
    plugin = tmp_path / "plugin.yml"
    plugin.write_text(f"plugin: {name}\n")
    with pytest.raises(InputError) as exc:
        plugin_settings(argparse.Namespace(nprocs=1, mem_gb=None, use_plugin=plugin))
    assert str(exc.value).startswith(f"{plugin}: {words}") and "\n" not in str(exc.value)


def test_slurm_graph_without_plugin_args_gets_what_nipype_reads(tmp_path, monkeypatch):
    """QA pass (fix-a): ``plugin: SLURMGraph`` without plugin_args was ``AttributeError:
    _dont_resubmit_completed_jobs`` (Nipype sets it only when plugin_args is not empty)."""
    from geomorph_bids.cli.nipype_config import plugin_settings

    monkeypatch.setenv("PATH", str(_fake_commands(tmp_path / "bin", "sbatch")))
    plugin = tmp_path / "plugin.yml"
    plugin.write_text("plugin: SLURMGraph\n")
    name, plugin_args = plugin_settings(argparse.Namespace(nprocs=1, mem_gb=None, use_plugin=plugin))
    assert (name, plugin_args) == ("SLURMGraph", {"dont_resubmit_completed_jobs": False})


def test_an_output_folder_too_deep_for_its_files_paths_fails_each_hemisphere_on_one_line(bids, tmp_path):
    """Round fifteen: an output folder nested ~4000 bytes deep (its files' paths past PATH_MAX) ended
    the whole run at the first write, ``error: File name too long at OUT/sub-01/anat/...``: no FAILED
    line, and a staging folder and an empty crash folder left behind. Now every hemisphere fails on
    its own line before anything is written (a folder 150 bytes shallower runs: checked by hand)."""
    deep = tmp_path
    for _ in range(16):
        deep = deep / ("d" * 240)
    out = deep / ("e" * (4030 - len(str(deep)) - 1))  # the output folder's path: 4030 bytes
    out.mkdir(parents=True)
    code, _, err = run(bids, out, "participant", "--model", "rigid", "--hemi", "L", "-w", tmp_path / "w")
    failed = [line.strip() for line in err.splitlines() if "FAILED" in line]
    assert code == 1 and len(failed) == 1 and "Traceback" not in err, err
    assert failed[0].startswith("FAILED sub-01 hemi-L: its output files' paths would be up to ")
    assert "in an output folder whose path alone is 4030 bytes), more than the 4095 the system takes (PATH_MAX)" in failed[0]
    assert sorted(p.name for p in out.iterdir()) == []  # no staging, crash or description files, nor a lock: no job


# ------------------------------------------------------------------------------ stale locks

def _stale_lock(out: Path, subject: str) -> subprocess.Popen:
    """A lock of ``subject`` recorded by a pid that has ended, still held by a leftover process
    (as a MultiProc worker of a killed run once did)."""
    folder = out / pf.LOCK_DIR
    folder.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    (folder / f"sub-{subject}.lock").write_text(f"pid {dead} on {socket.gethostname()} since 2026-01-01T00:00:00")
    holder = subprocess.Popen([sys.executable, "-c",
                               "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); "
                               "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(600)",
                               str(folder / f"sub-{subject}.lock")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


@pytest.mark.parametrize("wait", [False, True], ids=["skip", "lock-wait"])
def test_lock_of_a_dead_run_is_never_honoured(bids, tmp_path, wait):
    """The recorded holder has ended but a leftover still holds the lock: the participant fails at
    once, with one line naming the leftover process (never "another run is processing", never a
    wait without end)."""
    out = tmp_path / "out"
    holder = _stale_lock(out, "01")
    try:
        done = subprocess.run([sys.executable, "-m", "geomorph_bids.cli.bids", str(bids), str(out), "participant",
                               "--model", "rigid", "-w", str(tmp_path / "w"), *(["--lock-wait"] if wait else [])],
                              capture_output=True, text=True, timeout=300)
    finally:
        holder.kill()
        holder.wait()
    failed = [line for line in done.stderr.splitlines() if "FAILED" in line]
    assert done.returncode == 1 and len(failed) == 1, done.stderr
    assert "is stale" in failed[0] and f"processes {holder.pid} still hold it" in failed[0]
    assert "another geomorph-bids run is processing" not in done.stderr and "Traceback" not in done.stderr
    fd = os.open(out / pf.LOCK_DIR / "sub-01.lock", os.O_RDWR)  # the run released what it took
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)


def test_lock_file_replaced_by_a_link_is_never_followed(bids, tmp_path):
    out = tmp_path / "out"
    (out / pf.LOCK_DIR).mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (out / pf.LOCK_DIR / "sub-01.lock").symlink_to(victim)
    code, _, err = run(bids, out, "participant", "--model", "rigid", "-w", tmp_path / "w")
    assert code == 1 and "link" in err and "Traceback" not in err
    assert victim.read_text() == "precious"


# ------------------------------------------------------------------------------ warnings

def test_python_warnings_reach_the_user_on_one_line(capsys):
    import warnings

    from geomorph_bids.cli.messages import one_line_warnings

    with one_line_warnings("geomorph-bids"):
        warnings.warn("something\n  odd", UserWarning)
    err = capsys.readouterr().err
    assert err == "geomorph-bids: warning: something odd\n"


def test_session_folder_that_is_not_a_bids_label_is_reported_not_processed(dataset_factory, tmp_path):
    """An sMRIPrep ``ses-é1`` folder: its outputs could not carry the entity (they would lose it
    and be left behind), so it is reported on one line and never processed."""
    root = dataset_factory("smriprep", subjects=("01",), session="a1")
    subj = root / "derivatives" / "smriprep" / "sub-01"
    (subj / "ses-a1").rename(subj / "ses-é1")
    for p in list((subj / "ses-é1" / "anat").iterdir()):
        p.rename(p.with_name(p.name.replace("ses-a1", "ses-é1")))
    code, _, err = run(root, tmp_path / "out", "participant", "--model", "rigid", "--hemi", "L", "-w", tmp_path / "w")
    failed = [line for line in err.splitlines() if "FAILED" in line]
    assert code == 1 and len(failed) == 1, err
    assert "sub-01" in failed[0] and "'é1' is not a BIDS label" in failed[0] and "Traceback" not in err
    assert not list((tmp_path / "out").rglob("*.gii"))


def test_a_stop_signal_swallowed_by_library_code_is_delivered_again():
    """Nipype runs some nodes in the main process and turns any exception there into a node
    failure: the first Interrupted is swallowed, the re-delivered signal reaches the handler."""
    code = ("import os, signal, time\n"
            "from geomorph_bids.cli.interrupts import Interrupted, stop_on_signals\n"
            "with stop_on_signals():\n"
            "    try:\n"
            "        try:\n"
            "            os.kill(os.getpid(), signal.SIGTERM); time.sleep(30)\n"
            "        except BaseException as exc:  # what Nipype's node.run does\n"
            "            print('swallowed', type(exc).__name__, flush=True)\n"
            "        for _ in range(600): time.sleep(0.05)  # the scheduler goes on\n"
            "        print('never stopped', flush=True)\n"
            "    except Interrupted as exc:\n"
            "        exc.acknowledge(); print('stopped by', exc.name, flush=True)\n"
            "        time.sleep(1.2)  # acknowledged: no more re-deliveries\n"
            "print('done', flush=True)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.stdout.split("\n") == ["swallowed Interrupted", "stopped by SIGTERM", "done", ""], done.stderr
    assert done.returncode == 0


def test_a_freesurfer_subjects_dir_given_as_the_bids_folder_is_run_as_one(tmp_path):
    """FreeSurfer users' first command: SUBJECTS_DIR as bids_dir. It was refused with the options to
    add; now it runs as those options would, saying so on one line (a BIDS dataset's own
    --fs-subjects-dir still needs the usual arguments; --participant-label selects among the
    subjects: test_a_freesurfer_subjects_dir_with_participant_labels_runs_those_subjects)."""
    subjects = tmp_path / "freesurfer"
    fs_subject(subjects / "sub-01")
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main([str(subjects), str(tmp_path / "out"), "participant", "--model", "rigid",
                     "-w", str(tmp_path / "w")])
    assert code == 0, err.getvalue()
    note = err.getvalue().splitlines()[0]
    assert "is a FreeSurfer SUBJECTS_DIR, not a BIDS dataset: read as" in note
    assert f"--skip-bids-validation --fs-subjects-dir {subjects}" in note
    assert len(list((tmp_path / "out").rglob("*_space-fsLR_desc-geomorph_sphere.surf.gii"))) == 2


def test_a_freesurfer_subjects_dir_with_participant_labels_runs_those_subjects(tmp_path):
    """`geomorph-bids $SUBJECTS_DIR OUT participant --participant-label bert`, a FreeSurfer user's
    try on one subject first: the label made the SUBJECTS_DIR a refused BIDS dataset ('pass the BIDS
    dataset with --fs-subjects-dir'), though the same folder ran without it. It now runs that subject
    alone; one subject's folder with labels of one's own is still refused (which would be meant?)."""
    subjects = tmp_path / "subjects"
    fs_subject(subjects / "bert")
    fs_subject(subjects / "ernie")
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main([str(subjects), str(tmp_path / "out"), "participant", "--participant-label", "bert",
                     "--model", "rigid", "--hemi", "L", "-w", str(tmp_path / "w")])
    assert code == 0, err.getvalue()
    note = err.getvalue().splitlines()[0]
    assert note == (f"geomorph-bids: note: {subjects} is a FreeSurfer SUBJECTS_DIR, not a BIDS dataset: "
                    f"read as {subjects} --skip-bids-validation --fs-subjects-dir {subjects}")
    assert sorted(p.name for p in (tmp_path / "out").glob("sub-*") if p.is_dir()) == ["sub-bert"]
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main([str(subjects / "bert"), str(tmp_path / "out2"), "participant", "--participant-label", "ernie"])
    assert code == 1 and "is one FreeSurfer subject, not a BIDS dataset" in err.getvalue()


def test_folders_inside_a_subjects_dir_run_as_one_name_it_as_such(tmp_path, monkeypatch):
    """`cd $SUBJECTS_DIR; geomorph-bids . OUT participant` (./work inside it) or an output folder
    among the subjects: the refusals said 'lies inside the BIDS dataset' and offered
    SUBJECTS_DIR/derivatives/geomorph; they now name the FreeSurfer SUBJECTS_DIR and a folder beside it."""
    subjects = tmp_path / "subjects"
    fs_subject(subjects / "bert")
    monkeypatch.chdir(subjects)
    for argv, needle in (
            ([str(subjects), str(tmp_path / "out")],
             f"{Path('work')}: the work directory lies inside the FreeSurfer SUBJECTS_DIR {subjects}; choose a work "
             "folder outside the inputs"),
            ([str(subjects), str(subjects / "geomorph"), "-w", str(tmp_path / "w")],
             f"{subjects / 'geomorph'}: the output directory lies inside the FreeSurfer SUBJECTS_DIR {subjects} "
             f"(among the subjects); write to a folder outside it, e.g. {tmp_path / 'geomorph'}")):
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = main([*argv[:2], "participant", *argv[2:]])
        assert code == 1
        line = err.getvalue().splitlines()[-1]
        assert needle in line and "BIDS dataset" not in line, line
    assert not (subjects / "geomorph").exists()


def test_freesurfer_subject_folders_whose_names_are_no_bids_labels_are_named_not_skipped(tmp_path):
    """A SUBJECTS_DIR with 'bert' and 'my subj': bert is processed and 'my subj' is named on one
    warning line with the link that makes it a subject (it was left out in silence); with only
    such folders, the "no subjects found" error names them. The suggested link works."""
    subjects = tmp_path / "subjects"
    fs_subject(subjects / "my subj")
    args = [str(subjects), str(tmp_path / "out"), "participant", "--skip-bids-validation", "--fs-subjects-dir",
            str(subjects), "--model", "rigid", "--hemi", "L", "-w", str(tmp_path / "w")]
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        assert main(args) == 1
    line = (f"FreeSurfer subject folder {subjects / 'my subj'} is not processed: its name is not a BIDS label "
            "(letters and digits only)")
    assert len(err.getvalue().strip().splitlines()) == 1 and line in err.getvalue()
    assert f"ln -s 'my subj' {subjects / 'mysubj'}" in err.getvalue()
    fs_subject(subjects / "bert")
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        assert main(args) == 0
    assert [ln for ln in err.getvalue().splitlines() if "warning" in ln] == [f"geomorph-bids: warning: {line}; "
                                                                           f"link it under one (ln -s 'my subj' "
                                                                           f"{subjects / 'mysubj'})"]
    (subjects / "mysubj").symlink_to("my subj")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(args) == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("sub-*") if p.is_dir()) == ["sub-bert", "sub-mysubj"]


def test_fs_subjects_dir_that_is_missing_or_one_subject_says_so(tmp_path):
    """--fs-subjects-dir pointing nowhere, or at one subject's folder, ended in "no subjects found
    in BIDS_DIR" (the wrong folder named); now one line naming the option, and for a subject folder
    the parent and label to pass. Nothing is created."""
    subjects = tmp_path / "subjects"
    fs_subject(subjects / "bert")
    for given, words in [(tmp_path / "nosuch", "--fs-subjects-dir: no such folder"),
                         (subjects / "bert", "--fs-subjects-dir is one FreeSurfer subject, not the SUBJECTS_DIR "
                          f"that holds the subjects: pass its parent, --fs-subjects-dir {subjects} "
                          "--participant-label bert"),
                         # round fifteen: its surf folder left every FreeSurfer subject out in silence, exit 0
                         (subjects / "bert" / "surf", "--fs-subjects-dir is the surf folder of one FreeSurfer subject, "
                          f"not the SUBJECTS_DIR that holds the subjects: pass --fs-subjects-dir {subjects} "
                          "--participant-label bert")]:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main([str(subjects), str(tmp_path / "out"), "participant", "--skip-bids-validation",
                         "--fs-subjects-dir", str(given), "-w", str(tmp_path / "w")])
        assert code == 1 and len(err.getvalue().strip().splitlines()) == 1 and words in err.getvalue(), err.getvalue()
        assert not (tmp_path / "out").exists() and not (tmp_path / "w").exists()



def test_an_smriprep_derivatives_folder_given_as_the_bids_folder_says_how_to_read_it(dataset_factory, tmp_path):
    """Round fifteen: ``geomorph-bids B/derivatives/smriprep OUT participant`` (the folder of the surfaces,
    which has a dataset_description.json) found its subjects but never read them: one FAILED line per
    hemisphere, ``no inputs; ... no input folder exists (expected B/derivatives/smriprep/derivatives/<pipeline>,
    ...)``. Now one line saying what the folder is and the command that reads it, which runs."""
    bids = dataset_factory("smriprep", subjects=("01",))
    deriv = bids / "derivatives" / "smriprep"
    (deriv / "dataset_description.json").write_text(json.dumps(
        {"Name": "x", "BIDSVersion": "1.9.0", "DatasetType": "derivative", "GeneratedBy": [{"Name": "sMRIPrep"}]}))
    code, _, err = run(deriv, tmp_path / "out", "participant", "--model", "rigid", "--hemi", "L", "-w", tmp_path / "w")
    line = one_error(err)
    assert code == 1 and line == (f"geomorph-bids: error: {deriv}: is a derivatives dataset (made by sMRIPrep), not a "
                                  "raw BIDS dataset: give the raw dataset as bids_dir (its derivatives/ folders are "
                                  f"read), or read this one as derivatives: geomorph-bids {deriv} OUTPUT_DIR participant "
                                  f"--derivatives smriprep={deriv}")
    assert not (tmp_path / "out").exists()
    code, _, err = run(deriv, tmp_path / "out", "participant", "--model", "rigid", "--hemi", "L", "-w", tmp_path / "w",
                       "--derivatives", f"smriprep={deriv}")
    assert code == 0, err
    # fMRIPrep's folder (fix-as): the command names it fmriprep, as the sidecars' Sources then do
    # (bids:fmriprep:sub-01/...); it named every pipeline's folder smriprep
    (deriv / "dataset_description.json").write_text(json.dumps(
        {"Name": "x", "BIDSVersion": "1.4.0", "DatasetType": "derivative",
         "GeneratedBy": [{"Name": "fMRIPrep", "Version": "24.1.1"}]}))
    code, _, err = run(deriv, tmp_path / "out2", "participant", "--model", "rigid", "--hemi", "L", "-w", tmp_path / "w")
    assert code == 1 and one_error(err).endswith("(made by fMRIPrep), not a raw BIDS dataset: give the raw dataset as "
                                                 "bids_dir (its derivatives/ folders are read), or read this one as "
                                                 f"derivatives: geomorph-bids {deriv} OUTPUT_DIR participant "
                                                 f"--derivatives fmriprep={deriv}")


@pytest.mark.parametrize("level", ["participant", "group"])
def test_our_own_output_folder_given_as_the_bids_folder_says_what_it_is(dataset_factory, tmp_path, level):
    """Round eighteen: ``geomorph-bids OUT OUT2 participant`` (last run's output given as the input)
    gave one FAILED ``no inputs ... expected OUT/derivatives/<pipeline>`` line per hemisphere. Now one
    line saying that this is geomorph-bids' output, not an input, and the raw dataset it was made from."""
    from geomorph_bids.cli.descriptions import write_dataset_description

    bids = dataset_factory("smriprep", subjects=("01",))
    made = tmp_path / "geomorph"
    (made / "sub-01" / "anat").mkdir(parents=True)
    write_dataset_description(made, bids, {"smriprep": bids / "derivatives" / "smriprep"})
    (made / "sub-01" / "anat" / "sub-01_hemi-L_sphere.surf.gii").write_bytes(
        (bids / "derivatives" / "smriprep" / "sub-01" / "anat" / "sub-01_hemi-L_sphere.surf.gii").read_bytes())
    code, stdout, err = run(made, tmp_path / "out", level, "--model", "rigid", "--hemi", "L", "-w", tmp_path / "w")
    line = one_error(err)
    assert code == 1 and stdout == "" and line == (
        f"geomorph-bids: error: {made}: is geomorph-bids' output (its dataset_description.json says GeneratedBy "
        f"geomorph-bids), not an input: give the raw BIDS dataset it was made from as bids_dir, "
        f"geomorph-bids {bids.absolute()} {made} {level}"), line
    assert not (tmp_path / "out").exists() and not (tmp_path / "w").exists()


def test_empty_input_folders_are_named_as_datalad_subdatasets_not_installed(tmp_path):
    """`datalad clone` of a study leaves its derivatives subdatasets as empty folders. Before: `no
    subjects found in B (nor its derivatives); check the folders`, and for a subject of another
    folder a `searched:` list that did not say which folders hold nothing. Now the empty folders
    are named with the command that installs them; nothing is created."""
    bids = tmp_path / "study"
    for name in ("freesurfer", "fmriprep"):
        (bids / "derivatives" / name).mkdir(parents=True)
    (bids / "dataset_description.json").write_text('{"Name": "study", "BIDSVersion": "1.9.0"}')
    args = [str(bids), str(tmp_path / "out"), "participant", "--model", "rigid", "--hemi", "L",
            "-w", str(tmp_path / "w")]
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        assert main(args) == 1
    line = one_error(err.getvalue())
    fs, fmriprep = bids / "derivatives" / "freesurfer", bids / "derivatives" / "fmriprep"
    assert f"the input folders {fmriprep}, {fs} are empty (DataLad subdatasets not installed? " \
           f"datalad get -n {fmriprep} {fs})" in line, line
    assert not (tmp_path / "out").exists() and not (tmp_path / "w").exists()
    # one subdataset installed (sub-01 in FreeSurfer), sub-02 asked for: its line marks the empty one
    fs_subject(fs / "sub-01")
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        assert main([*args, "--participant-label", "01", "02"]) == 1
    failed = [ln for ln in err.getvalue().splitlines() if "FAILED sub-02" in ln]
    assert len(failed) == 1 and f"searched: {fmriprep} (empty: a DataLad subdataset not installed? datalad get " \
        f"-n {fmriprep}), {fs}" in failed[0], err.getvalue()
    assert (tmp_path / "out" / "sub-01").is_dir()


def test_an_hcp_study_folder_given_as_the_bids_folder(tmp_path):
    """HCP data have no BIDS dataset around them. `geomorph-bids /data/hcp OUT participant
    --skip-bids-validation --derivatives hcp=/data/hcp` ended in `no subjects found` (HCP subject
    folders were never looked for in bids_dir, even when it is also the hcp folder); without the
    options, `is not a BIDS dataset` named none of them. Now the first runs, and the study
    folder, or one subject's folder, gets the command that does."""
    from geomorph_bids.engine.example_data import synthetic_hemisphere, template_hemisphere, write_hcp

    from .conftest import LEVEL

    study = tmp_path / "hcp"
    for k, hemi in enumerate(("L", "R")):
        v, f, maps = template_hemisphere(hemi, LEVEL)
        write_hcp(study, "100307", synthetic_hemisphere(hemi, v, f, maps, seed=[7, k, 99]))
    common = ["--model", "rigid", "--hemi", "L", "-w", str(tmp_path / "w")]
    for given, words in [(study, f"holds HCP pipelines subjects (<S>/MNINonLinear/Native), not a BIDS dataset: "
                                 f"give the BIDS dataset as bids_dir with --derivatives hcp={study}, or run on these "
                                 f"subjects alone: geomorph-bids {study} OUTPUT_DIR participant "
                                 f"--skip-bids-validation --derivatives hcp={study}"),
                         (study / "100307", f"is one HCP pipelines subject, not a BIDS dataset: run on the study "
                                            f"folder, geomorph-bids {study} OUTPUT_DIR participant "
                                            f"--skip-bids-validation --derivatives hcp={study} "
                                            "--participant-label 100307")]:
        code, _, err = run(given, tmp_path / "out", "participant", *common)
        assert code == 1
        assert words in one_error(err), err
        assert not (tmp_path / "out").exists()
    code, _, err = run(study, tmp_path / "out", "participant", "--skip-bids-validation", "--derivatives",
                       f"hcp={study}", *common)
    assert code == 0, err
    assert len(list((tmp_path / "out" / "sub-100307" / "anat").glob("*_desc-geomorph_sphere.surf.gii"))) == 1


def test_one_freesurfer_subject_named_like_recon_all_is_run_alone(tmp_path):
    """One FreeSurfer subject folder (recon-all -s bert) as bids_dir: it was refused with the
    command for its SUBJECTS_DIR; now that command runs, this subject alone (outputs named
    sub-bert, not its neighbours'); a folder whose name is no BIDS label still gets the one line."""
    subjects = tmp_path / "subjects"
    fs_subject(subjects / "bert")
    fs_subject(subjects / "ernie")
    fs_subject(subjects / "my subj")
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main([str(subjects / "bert"), str(tmp_path / "out"), "participant", "--model", "rigid", "--hemi", "L",
                     "-w", str(tmp_path / "w")])
    assert code == 0, err.getvalue()
    said = err.getvalue()
    assert "is a FreeSurfer subject, not a BIDS dataset" in said and "--participant-label bert" in said
    assert sorted(p.name for p in (tmp_path / "out").glob("sub-*") if p.is_dir()) == ["sub-bert"]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main([str(subjects / "my subj"), str(tmp_path / "out2"), "participant"])
    assert code == 1 and "is one FreeSurfer subject, not a BIDS dataset" in err.getvalue()
    assert not (tmp_path / "out2").exists()


def test_min_cc_other_reaches_the_thresholds():
    from geomorph_bids.cli.parser import build_parser
    from geomorph_bids.cli.settings import resolve_quality

    args = build_parser().parse_args(["b", "o", "participant", "--min-cc-other", "0.35"])
    assert resolve_quality(args).min_cc_other == 0.35 and resolve_quality(args).min_cc_after == 0.5


def test_running_recon_all_and_longitudinal_freesurfer_subjects_are_named_and_the_others_run(tmp_path):
    """A SUBJECTS_DIR as it is on disk: bert finished, ernie's recon-all still running (or killed:
    scripts/IsRunning.lh+rh), and a longitudinal run's folders. ernie was registered as finished
    and the longitudinal folders left out in silence, exit 0; now ernie is one FAILED line naming
    the file, each longitudinal folder one warning line, bert is written, exit 1."""
    subjects = tmp_path / "subjects"
    for name in ("bert", "ernie", "sub-01_ses-1.long.sub-01_base"):
        fs_subject(subjects / name)
    (subjects / "ernie" / "scripts").mkdir()
    (subjects / "ernie" / "scripts" / "IsRunning.lh+rh").touch()
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main([str(subjects), str(tmp_path / "out"), "participant", "--model", "rigid", "--hemi", "L",
                     "-w", str(tmp_path / "w")])
    lines = err.getvalue().splitlines()
    assert code == 1, err.getvalue()
    failed = [ln for ln in lines if "FAILED" in ln]
    assert len(failed) == 1, err.getvalue()
    assert len(failed) == 1 and "sub-ernie hemi-L" in failed[0] and "recon-all has not finished" in failed[0]
    assert str(subjects / "ernie" / "scripts" / "IsRunning.lh+rh") in failed[0]
    assert any("warning: FreeSurfer subject folder" in ln and "sub-01_ses-1.long.sub-01_base is not processed: "
               "it is the longitudinal run of time point sub-01_ses-1 (recon-all -long, base sub-01_base); "
               f"{subjects / 'sub-01_ses-1'} is no FreeSurfer subject, so nothing of it is registered" in ln
               for ln in lines)
    assert sorted(p.name for p in (tmp_path / "out").glob("sub-*") if p.is_dir()) == ["sub-bert"]


def test_smriprep_subject_folders_whose_labels_are_no_bids_labels_are_named_not_skipped(tmp_path):
    """Round twelve: an sMRIPrep subject ``sub-ü3`` (or ``sub-01-a``) beside ``sub-02`` was left out
    in silence, exit 0 (round four named only FreeSurfer folders); it is named on one warning line,
    and with only such folders the "no subjects found" error names it; nothing is created."""
    example = Path(__file__).resolve().parents[2] / "examples" / "ds-geomorph-example"
    bids = tmp_path / "bids"
    (bids / "derivatives" / "smriprep" / "sub-ü3" / "anat").mkdir(parents=True)
    shutil.copy(example / "dataset_description.json", bids)
    for f in (example / "derivatives" / "smriprep" / "sub-02" / "anat").glob("sub-02_hemi-L_*"):
        shutil.copy(f, bids / "derivatives" / "smriprep" / "sub-ü3" / "anat" / f.name.replace("sub-02", "sub-ü3"))
    args = [str(bids), str(tmp_path / "out"), "participant", "--model", "rigid", "--hemi", "L",
            "-w", str(tmp_path / "w")]
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        assert main(args) == 1
    line = (f"subject folder {bids / 'derivatives' / 'smriprep' / 'sub-ü3'} is not processed: its label 'ü3' is not "
            "a BIDS label (letters and digits only); rename the folder and its files (e.g. sub-u3)")
    assert err.getvalue().strip() == f"geomorph-bids: error: no subjects found in {bids} (nor its derivatives); {line}"
    assert not (tmp_path / "out").exists() and not (tmp_path / "w").exists()


def test_work_or_output_folder_that_is_a_link_loop_or_leads_nowhere_says_so(tmp_path):
    """Round twelve: ``-w loop`` (loop -> loop2 -> loop) or an output folder that is a link to a
    folder that does not exist said ``cannot create the work directory (File exists)``."""
    example = Path(__file__).resolve().parents[2] / "examples" / "ds-geomorph-example"
    (tmp_path / "loop").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop")
    (tmp_path / "out").symlink_to(tmp_path / "gone" / "out")
    for out, work, line in (
            (tmp_path / "o", tmp_path / "loop",
             f"{tmp_path / 'loop'}: cannot create the work directory: it is a loop of symbolic links"),
            (tmp_path / "out", tmp_path / "w",
             f"{tmp_path / 'out'}: cannot create the output directory: it is a link to {tmp_path / 'gone' / 'out'}, "
             "which does not exist: create that folder, or give another")):
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            assert main([str(example), str(out), "participant", "--model", "rigid", "-w", str(work)]) == 1
        assert err.getvalue().strip() == f"geomorph-bids: error: {line}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loop", "loop2", "out"]


def test_a_run_of_some_participants_looks_for_links_in_their_folders_only(bids, tmp_path):
    """Every participant run (each task of a SLURM array) and the group level walked every
    folder of the output folder looking for links that lead out of it: 1.1 s at 10,000 subjects,
    per task. Now a run with --participant-label enters only those participants' folders (and
    the output folder's others); the output folder's own entries are all checked."""
    from geomorph_bids.cli.paths import check_folders

    out = tmp_path / "out"
    (out / "sub-01" / "anat").mkdir(parents=True)
    (out / "sub-02" / "ses-a").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (out / "sub-02" / "ses-a" / "anat").symlink_to(outside, target_is_directory=True)
    inputs = resolve_input_folders(argparse.Namespace(bids_dir=bids, derivatives=None, fs_subjects_dir=None), out)
    check_folders(inputs, out, tmp_path / "w", ["01"])  # sub-02 is not written: not entered
    check_folders(inputs, out, None, ())  # the group level
    for subjects in (None, ["sub-02"], ["01", "02"]):
        with pytest.raises(InputError, match="outside the output directory"):
            check_folders(inputs, out, tmp_path / "w", subjects)
    (out / "sub-02" / "ses-a" / "anat").unlink()
    (out / "sub-03").symlink_to(outside, target_is_directory=True)  # an entry of the output folder itself
    with pytest.raises(InputError, match="sub-03"):
        check_folders(inputs, out, tmp_path / "w", ["01"])


def test_smriprep_output_folder_given_as_the_bids_folder_gets_the_command_that_reads_it(tmp_path, dataset_factory):
    """`smriprep BIDS /x/derivatives participant` writes /x/derivatives/smriprep/sub-*; that output
    folder given as bids_dir said only `is not a BIDS dataset ... (or pass --skip-bids-validation)`,
    whose advice then ended in `no subjects found`. Now it gets the two commands that read it, and
    the second of them registers."""
    import shutil

    bids = dataset_factory("smriprep", subjects=("01",))
    out_dir = tmp_path / "x" / "derivatives"
    shutil.copytree(bids / "derivatives" / "smriprep", out_dir / "smriprep")
    common = ["--model", "rigid", "--hemi", "L", "-w", str(tmp_path / "w")]
    code, _, err = run(out_dir, tmp_path / "out", "participant", *common)
    assert code == 1
    inner = (out_dir / "smriprep").absolute()
    line = one_error(err)
    assert "a pipeline's output folder (smriprep/ holds its subjects)" in line
    assert f"--derivatives smriprep={inner}" in line and f"geomorph-bids {inner} OUTPUT_DIR participant" in line
    assert not (tmp_path / "out").exists()
    code, _, err = run(inner, tmp_path / "out", "participant", "--skip-bids-validation", "--derivatives",
                       f"smriprep={inner}", *common)
    assert code == 0, err


def test_a_path_holding_bytes_that_are_not_utf8_is_refused_naming_it(bids, tmp_path, capsys):
    """A folder named in another encoding (Latin-1 ``caf\\xe9``, from an old file server) as the
    dataset, output or work folder: the run ended with ``error: 'utf-8' codec can't encode character
    '\\udce9' in position 14: surrogates not allowed``, naming nothing (the outputs' sidecars, reports
    and messages all name the paths). Now a usage error naming the argument and its bytes; the same
    folder through a link with a UTF-8 name registers."""
    odd = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9"))
    odd.mkdir()
    shutil.copytree(bids, odd / "ds")
    for argv, where in (((odd / "ds", tmp_path / "out"), "bids_dir"), ((bids, odd / "out"), "output_dir"),
                        ((bids, tmp_path / "out", "-w", odd / "w"), "--work-dir")):
        argv = (*argv[:2], "participant", "--model", "rigid", "--hemi", "L", *argv[2:])
        with pytest.raises(SystemExit) as exc:
            main([str(a) for a in argv])
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert exc.value.code == 2 and line.startswith(f"geomorph-bids: error: {where} '"), line
        assert "caf\\xe9" in line and "not UTF-8" in line and "codec" not in line, line
    assert not (odd / "out").exists() and not (tmp_path / "out").exists() and not (odd / "w").exists()
    (tmp_path / "link").symlink_to(odd)
    code, _, err = run(tmp_path / "link" / "ds", tmp_path / "out", "participant", "--model", "rigid", "--hemi", "L",
                       "-w", tmp_path / "w")
    assert code == 0, err


def test_a_utf8_path_in_a_locale_that_is_not_utf8_names_the_locale_not_the_name(bids, tmp_path):
    """Twenty-second session: in a locale whose encoding is not UTF-8 (``LC_ALL=C`` with ``PYTHONUTF8=0``,
    which Python then reads as ASCII) a dataset in ``dätä`` was refused as a name that ``holds bytes that
    are not UTF-8 text (a name from a system with another encoding?): rename it``: its bytes are UTF-8, and
    renaming it was no cure. Now the line says it is the locale, and how to run; nothing is created."""
    folder = tmp_path / "d\u00e4t\u00e4"
    shutil.copytree(bids, folder / "ds")
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    proc = subprocess.run([sys.executable, "-m", "geomorph_bids.cli.bids", str(folder / "ds"), str(tmp_path / "out"),
                           "participant", "--model", "rigid", "--hemi", "L"], capture_output=True, env=env, timeout=600)
    line = proc.stderr.decode("ascii").strip().splitlines()[-1]
    assert proc.returncode == 2
    assert line == (f"geomorph-bids: error: bids_dir '{tmp_path}/d\\xe4t\\xe4/ds' is a UTF-8 name, but this Python "
                    "decodes file names as ascii (its locale is not UTF-8: LC_ALL, LC_CTYPE, LANG; PYTHONUTF8=0?): run "
                    "the command in a UTF-8 locale (LC_ALL=C.UTF-8) or with PYTHONUTF8=1")
    assert not (tmp_path / "out").exists()
    env["PYTHONUTF8"] = "1"  # as the line says
    proc = subprocess.run([sys.executable, "-m", "geomorph_bids.cli.bids", str(folder / "ds"), str(tmp_path / "out"),
                           "participant", "--model", "rigid", "--hemi", "L", "-w", str(tmp_path / "w")],
                          capture_output=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("loop", ["derivatives/freesurfer", "derivatives/other"])
def test_a_link_to_itself_in_the_derivatives_folder_is_no_traceback(bids, tmp_path, loop):
    """``derivatives/freesurfer`` (or any folder of ``derivatives``) a link to itself (an ``ln -s``
    gone wrong, a broken DataLad link): ``RuntimeError: Symlink loop from '.../derivatives/freesurfer'``,
    a traceback, before anything was read. A link loop is no folder, as a missing one is not: the other
    folders' subjects are registered (sub-01 here is in the sMRIPrep folder)."""
    from geomorph_bids.engine.example_data import synthetic_hemisphere, template_hemisphere, write_smriprep

    from .conftest import LEVEL

    root = tmp_path / "ds"
    (root / "derivatives").mkdir(parents=True)
    shutil.copy(bids / "dataset_description.json", root)
    v, f, maps = template_hemisphere("L", LEVEL)
    write_smriprep(root / "derivatives" / "smriprep", "01", synthetic_hemisphere("L", v, f, maps, seed=[1, 0, 99]))
    (root / loop).symlink_to((root / loop).name)
    code, _, err = run(root, tmp_path / "out", "participant", "--model", "rigid", "--hemi", "L", "-w", tmp_path / "w")
    assert code == 0 and "Traceback" not in err, err


def test_a_refused_run_leaves_no_parent_folder_it_created(bids, tmp_path):
    """Round twenty-two, found by fuzzing the command line: the output and work folders are made with
    their parents, and a refused run removed only the folder itself. ``new/deep/out`` with a label that
    matches no subject left ``new/deep`` behind, empty; ``-w w/<a 300-character name>`` (longer than a
    file system takes) left ``w``. Every folder the run made is removed again, the deepest first."""
    code, _, err = run(bids, tmp_path / "new" / "deep" / "out", "participant", "--participant-label", "99",
                       "-w", tmp_path / "new" / "deep" / "work")
    assert code == 1 and "FAILED sub-99" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    long = "x" * 300
    code, _, err = run(bids, tmp_path / "out", "participant", "-w", tmp_path / "w" / long)
    line = one_error(err)
    assert code == 1 and line == (f"geomorph-bids: error: {tmp_path / 'w' / long}: cannot create the work directory "
                                  "(File name too long)")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    code, _, err = run(bids, tmp_path / "o" / long, "participant", "-w", tmp_path / "w3")
    assert code == 1 and "cannot create the output directory (File name too long)" in one_error(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_fmriprep_written_straight_into_bids_derivatives_is_read_there(tmp_path):
    """fix-ca (twenty-fifth session): ``fmriprep /data/bids /data/bids/derivatives participant`` (fMRIPrep 21+
    puts sub-* straight in its output folder) left BIDS_DIR/derivatives/sub-01 and sourcedata/ each searched as
    a pipeline's folder, and every hemisphere FAILED 'no inputs' though the README says fMRIPrep's outputs in
    BIDS_DIR/derivatives are found without options. derivatives/ is now read as that pipeline's folder, and
    the README's output folder, derivatives/geomorph beside its sub-* and sourcedata/, is allowed."""
    example = Path(__file__).resolve().parents[2] / "examples" / "ds-geomorph-example"
    bids = tmp_path / "bids"
    (bids / "sub-01" / "anat").mkdir(parents=True)
    (bids / "sub-02" / "anat").mkdir(parents=True)
    shutil.copy(example / "dataset_description.json", bids)
    deriv = bids / "derivatives"
    (deriv / "sub-01").mkdir(parents=True)
    shutil.copytree(example / "derivatives" / "smriprep" / "sub-02" / "anat", deriv / "sub-01" / "anat")
    for f in (deriv / "sub-01" / "anat").iterdir():
        f.rename(f.with_name(f.name.replace("sub-02", "sub-01")))
    shutil.copytree(example / "derivatives" / "freesurfer" / "sub-01", deriv / "sourcedata" / "freesurfer" / "sub-02")
    (deriv / "dataset_description.json").write_text(json.dumps(
        {"Name": "fMRIPrep - fMRI PREProcessing workflow", "BIDSVersion": "1.8.0", "DatasetType": "derivative",
         "GeneratedBy": [{"Name": "fMRIPrep", "Version": "24.1.1"}]}))
    out = deriv / "geomorph"
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main([str(bids), str(out), "participant", "--model", "rigid", "--hemi", "L", "-w", str(tmp_path / "w")])
    assert code == 0, err.getvalue()
    assert sorted(p.name for p in out.rglob("*_hemi-L_space-fsLR_desc-geomorph_sphere.surf.gii")) == [
        "sub-01_hemi-L_space-fsLR_desc-geomorph_sphere.surf.gii", "sub-02_hemi-L_space-fsLR_desc-geomorph_sphere.surf.gii"]
    links = json.loads((out / "dataset_description.json").read_text())["DatasetLinks"]
    assert links["fmriprep"] == ".."  # relative to the output folder (fix-bu), derivatives/ itself
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main([str(bids), str(deriv / "sub-01" / "geomorph"), "participant", "--model", "rigid", "--hemi", "L",
                     "-w", str(tmp_path / "w2")])
    assert code == 1 and f"lies inside {deriv}, a folder inputs are read from" in err.getvalue(), err.getvalue()
    # our own outputs moved to be a dataset's derivatives/ (sub-* straight in it) are still never read as inputs
    ours = tmp_path / "ours"
    (ours / "sub-01" / "anat").mkdir(parents=True)
    shutil.copy(example / "dataset_description.json", ours)
    shutil.copytree(out, ours / "derivatives")
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main([str(ours), str(tmp_path / "out3"), "participant", "--participant-label", "01", "--model", "rigid",
                     "--hemi", "L", "-w", str(tmp_path / "w3")])
    assert code == 1 and "FAILED sub-01 hemi-L: no inputs" in err.getvalue(), err.getvalue()


def test_a_named_fmriprep_folder_is_read_before_subjects_written_straight_into_derivatives(tmp_path):
    """fix-cc (twenty-fifth session): fix-ca reads a flat ``derivatives/`` (fMRIPrep's ``sub-*`` straight in it)
    as a pipeline's folder, and read it FIRST: a dataset with an older flat run beside ``derivatives/fmriprep``
    (the folder it was registered from before) was registered from the flat run's files after the upgrade (a
    warning, another registration, outputs redone). The named folder is read first again; the flat one after it."""
    import nibabel as nib

    example = Path(__file__).resolve().parents[2] / "examples" / "ds-geomorph-example"
    bids = tmp_path / "bids"
    (bids / "sub-02" / "anat").mkdir(parents=True)
    shutil.copy(example / "dataset_description.json", bids)
    deriv = bids / "derivatives"
    desc = json.dumps({"Name": "fMRIPrep", "BIDSVersion": "1.8.0", "DatasetType": "derivative",
                       "GeneratedBy": [{"Name": "fMRIPrep", "Version": "24.1.1"}]})
    for root in (deriv, deriv / "fmriprep"):
        shutil.copytree(example / "derivatives" / "smriprep" / "sub-02", root / "sub-02")
        (root / "dataset_description.json").write_text(desc)
    sulc = deriv / "sub-02" / "anat" / "sub-02_hemi-L_sulc.shape.gii"
    img = nib.load(sulc)
    img.darrays[0].data[:] *= 0.5  # the flat run's files differ
    nib.save(img, sulc)
    out = deriv / "geomorph"
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main([str(bids), str(out), "participant", "--model", "rigid", "--hemi", "L", "-w", str(tmp_path / "w"),
                     "--reports", "deferred"])
    assert code == 0, err.getvalue()
    doc = json.loads((out / "sub-02" / "anat" / "sub-02_hemi-L_space-fsLR_desc-geomorph_metrics.json").read_text())
    assert doc["resume"]["inputs"][:2] == ["bids:raw:derivatives/fmriprep/sub-02/anat/sub-02_hemi-L_sphere.surf.gii",
                                           "bids:raw:derivatives/fmriprep/sub-02/anat/sub-02_hemi-L_sulc.shape.gii"]
    assert f"(also {deriv / 'sub-02' / 'anat' / 'sub-02_hemi-L_sphere.surf.gii'})" in err.getvalue()

"""Reliability round two (issue 17), the cases that need a registration run: per-hemisphere
problems found at discovery (a dangling link, a FIFO, a device, a 10 GB sparse file, a loop),
the quality gates (swapped hemispheres, a GIFTI declaring the other hemisphere, a map without
structure) with their exit code 3, FLAGGED lines and group-table marks, the content-keyed cache,
and a disk that fills in the middle of a run (a real 512 KiB tmpfs when this process may mount
one). ico-4 synthetic FreeSurfer subjects, ``--model rigid --hemi L``; the matrix is in
docs/reliability.md."""

from __future__ import annotations

import csv
import errno
import json
import shutil
import os
import re
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from geomorph_bids.cli import preflight as pf
from geomorph_bids.derivatives import GROUP_TSV
from geomorph_bids.engine.example_data import synthetic_hemisphere, template_hemisphere, write_smriprep

from .conftest import LEVEL
from .test_bids import anat, digests, run

N_FILES = 9  # per hemisphere: registered sphere + json, metrics, sulc + json, native sphere + json, native sulc + json
ARGS = ("--model", "rigid", "--hemi", "L", "--nprocs", "2")


def _surf(bids: Path, subject: str) -> Path:
    return bids / "derivatives" / "freesurfer" / f"sub-{subject}" / "surf"


def failed_lines(err: str) -> dict[str, str]:
    """subject -> its FAILED line (at most one per subject is asserted by the callers)."""
    out = {}
    for line in err.splitlines():
        m = re.match(r"\s*FAILED sub-(\w+)", line)
        if m:
            assert m.group(1) not in out, f"two FAILED lines for sub-{m.group(1)}:\n{err}"
            out[m.group(1)] = line
    return out


def flagged_lines(err: str) -> dict[str, str]:
    return {m.group(1): line for line in err.splitlines() if (m := re.match(r"\s*FLAGGED sub-(\w+)", line))}


# ------------------------------------------------------------------------------ discovery problems

DISCOVERY = {  # subject -> (what is done to its left hemisphere, words of its one line)
    "02": ("dangling_sulc_link", "does not exist"),
    "03": ("sphere_is_a_fifo", "not a regular file"),
    "04": ("sphere_links_to_dev_zero", "not a regular file"),
    "05": ("sulc_is_10_gb_sparse", "larger than"),
    "06": ("sphere_is_a_folder", "lh.sphere"),
    "07": ("sulc_link_loop", "lh.sulc"),
    "08": ("sulc_is_an_annex_pointer", "git-annex pointer to MD5E-s"),
    "09": ("sphere_is_an_annex_link_stored_as_text", "git-annex pointer to SHA256E-s"),
    "10": ("sphere_reg_not_fetched", "broken symbolic link"),
    "11": ("cortex_label_is_an_annex_pointer", "git-annex pointer to MD5E-s"),
}


def _break(bids: Path, subject: str, how: str) -> Path:
    surf = _surf(bids, subject)
    sphere, sulc = surf / "lh.sphere", surf / "lh.sulc"
    if how == "dangling_sulc_link":  # an annexed file that was not fetched (DataLad)
        sulc.unlink()
        sulc.symlink_to("../../../../.git/annex/objects/XX/YY/SHA256E-s1234--abc/SHA256E-s1234--abc")
        return sulc
    if how == "sphere_is_a_fifo":
        sphere.unlink()
        os.mkfifo(sphere)
        return sphere
    if how == "sphere_links_to_dev_zero":
        sphere.unlink()
        sphere.symlink_to("/dev/zero")
        return sphere
    if how == "sulc_is_10_gb_sparse":
        with sulc.open("r+b") as f:
            f.truncate(10 * 2 ** 30)  # holes: no disk used
        return sulc
    if how == "sphere_is_a_folder":
        sphere.unlink()
        sphere.mkdir()
        return sphere
    if how == "sulc_is_an_annex_pointer":  # an unlocked annexed file that was not fetched (DataLad)
        sulc.write_text("/annex/objects/MD5E-s81981--d41d8cd98f00b204e9800998ecf8427e\n")
        return sulc
    if how == "sphere_is_an_annex_link_stored_as_text":  # the link as a text file (core.symlinks=false)
        sphere.write_text("../../../../.git/annex/objects/Xq/9v/SHA256E-s1234--abc/SHA256E-s1234--abc")
        return sphere
    if how == "sphere_reg_not_fetched":  # optional inputs: used when there, so an error when not fetched
        reg = surf / "lh.sphere.reg"
        reg.symlink_to("../../../../.git/annex/objects/XX/YY/MD5E-s99--abc/MD5E-s99--abc")
        return reg
    if how == "cortex_label_is_an_annex_pointer":
        label = surf.parent / "label" / "lh.cortex.label"
        label.parent.mkdir(exist_ok=True)
        label.write_text("/annex/objects/MD5E-s4321--0cc175b9c0f1b6a831c399e269772661.label\n")
        return label
    if how == "sulc_link_loop":
        sulc.unlink()
        sulc.symlink_to("lh.sulc")
        return sulc
    raise ValueError(how)


@pytest.fixture(scope="module")
def discovery_run(dataset_factory, tmp_path_factory):
    bids = dataset_factory("freesurfer", subjects=("01", *DISCOVERY))
    named = {s: _break(bids, s, how) for s, (how, _) in DISCOVERY.items()}
    tmp = tmp_path_factory.mktemp("discovery")
    code, out, err = run(bids, tmp / "out", "participant", *ARGS, "-w", tmp / "w")
    return dict(code=code, out=tmp / "out", stdout=out, err=err, named=named)


def test_each_discovery_problem_stops_only_its_hemisphere(discovery_run):
    err = discovery_run["err"]
    assert discovery_run["code"] == 1, err
    assert "Traceback" not in err and "TraitError" not in err
    failed = failed_lines(err)
    assert sorted(failed) == sorted(DISCOVERY), err
    for subject, (how, words) in DISCOVERY.items():
        line = failed[subject]
        assert "hemi-L" in line and str(discovery_run["named"][subject]) in line, (how, line)
        assert words in line, (how, line)
        folder = anat(discovery_run["out"], subject)
        assert not folder.exists() or not list(folder.iterdir())
    assert len(list(anat(discovery_run["out"], "01").iterdir())) == N_FILES  # the good subject is complete
    assert len(err.splitlines()) <= len(DISCOVERY) + 3  # the header line, one line per problem, nothing else


def test_dangling_link_says_how_to_get_the_file(discovery_run):
    line = failed_lines(discovery_run["err"])["02"]
    assert "datalad get" in line or "git annex get" in line, line


def test_git_annex_pointer_files_say_how_to_get_the_file(discovery_run):
    """An unlocked annexed file (or an annex link stored as text) that was not fetched is a
    ~100-byte text file: before, `is not a FreeSurfer morphometry file: magic number 0x2F616E ...
    the file is corrupted` from the load_features node, with a crash file."""
    failed = failed_lines(discovery_run["err"])
    for subject in ("08", "09"):
        line = failed[subject]
        assert "run `datalad get` or `git annex get` on it" in line, line
        assert "corrupted" not in line and "node load_features" not in line, line


def test_optional_inputs_not_fetched_are_errors_not_left_out(discovery_run):
    """An lh.sphere.reg or label/lh.cortex.label that is an annexed file not fetched: before, the
    FreeSurfer (and HCP) layouts passed it over in silence, and the hemisphere was registered
    another way (rotation from the features, no cortex mask), exit 0: the result depended on what
    had been fetched. Now one line with `datalad get`, as for the sMRIPrep layout's files."""
    failed = failed_lines(discovery_run["err"])
    for subject in ("10", "11"):
        assert "run `datalad get` or `git annex get` on it" in failed[subject], failed[subject]


# ------------------------------------------------------------------------------ quality gates

def _swap_hemispheres(bids: Path, subject: str) -> None:
    """FreeSurfer lh.* and rh.* exchanged (a copying mistake)."""
    surf = _surf(bids, subject)
    for name in ("sphere", "sulc", "curv", "thickness"):
        lh, rh, tmp = surf / f"lh.{name}", surf / f"rh.{name}", surf / f"tmp.{name}"
        lh.rename(tmp)
        rh.rename(lh)
        tmp.rename(rh)


def _no_structure(bids: Path, subject: str) -> None:
    sulc = _surf(bids, subject) / "lh.sulc"
    n = len(nib.freesurfer.read_morph_data(str(sulc)))
    nib.freesurfer.write_morph_data(str(sulc), np.random.default_rng(7).normal(0, 1, n).astype(np.float32))


def _gifti_declaring_the_right(bids: Path, subject: str) -> Path:
    """An sMRIPrep subject whose hemi-L sphere says AnatomicalStructurePrimary=CortexRight."""
    v, f, maps = template_hemisphere("L", LEVEL)
    folder = write_smriprep(bids / "derivatives" / "smriprep", subject,
                            synthetic_hemisphere("L", v, f, maps, seed=[int(subject), 0, 99]))
    sphere = folder / f"sub-{subject}_hemi-L_sphere.surf.gii"
    img = nib.load(sphere)
    for da in img.darrays:
        da.meta["AnatomicalStructurePrimary"] = "CortexRight"
    nib.save(img, sphere)
    return sphere


@pytest.fixture(scope="module")
def gated_run(dataset_factory, tmp_path_factory):
    bids = dataset_factory("freesurfer", subjects=("01", "02", "03"))
    _swap_hemispheres(bids, "02")
    _no_structure(bids, "03")
    declared = _gifti_declaring_the_right(bids, "04")
    tmp = tmp_path_factory.mktemp("gated")
    out, work = tmp / "out", tmp / "w"
    code, stdout, err = run(bids, out, "participant", *ARGS, "-w", work)
    return dict(bids=bids, out=out, work=work, code=code, stdout=stdout, err=err, declared=declared)


def test_flagged_hemispheres_are_written_listed_and_exit_3(gated_run):
    err = gated_run["err"]
    assert gated_run["code"] == 3, err
    assert not failed_lines(err) and "Traceback" not in err
    flagged = flagged_lines(err)
    assert sorted(flagged) == ["02", "03", "04"], err
    assert "identity" in flagged["02"] and "mirrored" in flagged["02"]  # fits the other hemisphere better
    assert "correlation" in flagged["03"]
    assert "identity" in flagged["04"] and "CortexRight" in flagged["04"]
    for subject in ("01", "02", "03", "04"):  # written all the same
        assert len(list(anat(gated_run["out"], subject).glob("*hemi-L*"))) == N_FILES
    table = {line.split()[0]: line for line in gated_run["stdout"].splitlines() if line.startswith("sub-")}
    assert table["sub-01"].split()[-1] == "ok"
    assert all("FLAGGED" in table[f"sub-{s}"] for s in ("02", "03", "04"))


def test_metrics_record_the_verdict_and_the_thresholds(gated_run):
    metrics = json.loads(next(anat(gated_run["out"], "02").glob("*_metrics.json")).read_text())
    quality = metrics["quality"]
    assert quality["flagged"] is True and quality["thresholds"]["min_cc_after"] == 0.5
    reg = metrics["registration"]
    assert reg["identity_cc_mirrored"] > reg["identity_cc_own"]
    good = json.loads(next(anat(gated_run["out"], "01").glob("*_metrics.json")).read_text())
    assert good["quality"]["flagged"] is False
    assert good["registration"]["identity_cc_own"] > good["registration"]["identity_cc_mirrored"]


def _tsv(path: Path) -> dict[str, dict]:
    with path.open() as f:
        return {row["subject"]: row for row in csv.DictReader(f, delimiter="\t")}


def test_group_table_marks_the_flagged_and_exits_3(gated_run, tmp_path):
    code, _, err = run(gated_run["bids"], gated_run["out"], "group")
    assert code == 3, err
    rows = _tsv(gated_run["out"] / GROUP_TSV)
    assert rows["01"]["quality"] == "ok"
    assert {s: rows[s]["quality"] for s in ("02", "03", "04")} == dict.fromkeys(("02", "03", "04"), "flagged")
    assert "correlation" in rows["03"]["quality_reasons"]
    assert sorted(flagged_lines(err)) == ["02", "03", "04"]


def test_gate_options_change_the_verdict(gated_run):
    """Lenient thresholds at the group level: only the declared label conflict remains."""
    code, _, err = run(gated_run["bids"], gated_run["out"], "group", "--min-cc", "-1", "--identity-margin", "2")
    assert code == 3 and sorted(flagged_lines(err)) == ["04"], err


def test_a_damaged_metrics_file_costs_its_row_not_the_group_table(gated_run, tmp_path):
    """One truncated metrics JSON (a copy of the outputs): the group level still writes the
    table of the others, names the file on one FAILED line, and exits 1."""
    out = tmp_path / "out"
    shutil.copytree(gated_run["out"], out)
    (out / GROUP_TSV).unlink(missing_ok=True)
    damaged = sorted(anat(out, "01").glob("*_metrics.json"))[0]
    damaged.write_text(damaged.read_text()[:150])
    code, _, err = run(gated_run["bids"], out, "group")
    assert code == 1, err
    failed = [line for line in err.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and damaged.name in failed[0] and "not valid JSON" in failed[0]
    rows = list(csv.DictReader((out / GROUP_TSV).open(), delimiter="\t"))
    total = len(list(out.glob("sub-*/anat/*_metrics.json")))
    assert len(rows) == total - 1 and sorted(flagged_lines(err)) == ["02", "03", "04"]


def test_metrics_files_that_are_not_what_their_names_say_cost_their_rows(gated_run, tmp_path):
    """The group table took subject and hemisphere from inside each file: a metrics file copied
    under another subject's name gave the original's row twice, ``{}`` gave an all-n/a "ok" row,
    ``[]`` vanished, and a correlation edited to "high" was judged ok; all with exit 0."""
    out = tmp_path / "out"
    shutil.copytree(gated_run["out"], out)
    (out / GROUP_TSV).unlink(missing_ok=True)
    files = sorted(anat(out, "01").glob("*_metrics.json"))
    copy = out / "sub-99" / "anat" / files[0].name.replace("sub-01", "sub-99")
    copy.parent.mkdir(parents=True)
    shutil.copy(files[0], copy)
    empty = sorted(anat(out, "02").glob("*_metrics.json"))[0]
    empty.write_text("{}")
    edited = sorted(anat(out, "03").glob("*_metrics.json"))[0]
    doc = json.loads(edited.read_text())
    doc["registration"]["cc_sulc_after"] = "high"
    edited.write_text(json.dumps(doc))
    code, _, err = run(gated_run["bids"], out, "group")
    assert code == 1, err
    failed = [line for line in err.splitlines() if "FAILED" in line]
    assert len(failed) == 3 and any("copied from another participant" in x and "sub-99" in x for x in failed)
    assert any("no 'registration' object" in x for x in failed) and any("'high'" in x for x in failed)
    rows = list(csv.DictReader((out / GROUP_TSV).open(), delimiter="\t"))
    assert len(rows) == len(list(out.glob("sub-*/anat/*_metrics.json"))) - 3
    assert [r["subject"] for r in rows].count("01") == len(files)


def test_hand_edited_metrics_of_other_types_cost_at_most_their_rows_never_the_group_level(gated_run, tmp_path):
    """Hand edits the type checks above did not cover: ``quality.thresholds`` a string, a vertex count
    ``"many"``, ``n_folded`` a whole number of 401 digits, ``session`` a number, a number of 5000
    digits. Each ended the whole group level (AttributeError, ValueError, OverflowError, TypeError
    tracebacks; Python's 4300-digit limit) or left the participant's whole report unwritten. Now the
    first two read as "not recorded", and the others cost their rows on FAILED lines: the huge count
    is beyond what a fold count can be (twenty-first session, fix-ak: it had failed its gate as
    Infinity does and kept its row)."""
    out = tmp_path / "out"
    shutil.copytree(gated_run["out"], out)
    (out / GROUP_TSV).unlink(missing_ok=True)
    edits = {"01": lambda d: (d["quality"].update(thresholds="strict"),
                              d["registration"].update(template_vertices="many")),
             "02": lambda d: d["registration"].update(n_folded=10 ** 400),
             "03": lambda d: d.update(session=5)}
    for subject, edit in edits.items():
        path = sorted(anat(out, subject).glob("*_metrics.json"))[0]
        doc = json.loads(path.read_text())
        edit(doc)
        path.write_text(json.dumps(doc))
    huge = sorted(anat(out, "04").glob("*_metrics.json"))[0]
    huge.write_text(huge.read_text().replace('"n_folded": 0', '"n_folded": 1' + "0" * 5000))
    code, _, err = run(gated_run["bids"], out, "group")
    assert code == 1 and "Traceback" not in err and "error:" not in err, err
    failed = failed_lines_of_files(err)
    assert sorted(failed) == ["02", "03", "04"], err
    assert "holds a number of 401 digits for registration.n_folded" in failed["02"], err
    assert "is named for sub-03 hemi-L but records sub-03_ses-5 hemi-L" in failed["03"], err
    assert "a whole number of more than 4300 digits" in failed["04"]
    rows = _tsv(out / GROUP_TSV)
    assert sorted(rows) == ["01"] and rows["01"]["quality"] == "ok"
    for report in out.glob("sub-*.html"):
        report.unlink()
    code, _, err = run(gated_run["bids"], out, "participant", "--reports-only")
    assert code == 1 and "Traceback" not in err and "not written" not in err, err
    assert sorted(failed_lines_of_files(err)) == ["02", "03", "04"], err
    assert (out / "sub-01.html").is_file()  # sub-02's one hemisphere is left out as 03's and 04's are


def failed_lines_of_files(err: str) -> dict[str, str]:
    """subject -> the FAILED line naming one of its metrics files (the group level's form)."""
    return {m.group(1): line for line in err.splitlines() if (m := re.search(r"FAILED .*/sub-(\w+)_hemi-", line))}


def test_content_change_with_the_same_size_and_mtime_is_not_reused(gated_run):
    """``cp -p``/``rsync -a`` of a changed file: same size, same mtime; the cache keys on content."""
    bids, out, work = gated_run["bids"], gated_run["out"], gated_run["work"]
    sulc = _surf(bids, "01") / "lh.sulc"
    st = sulc.stat()
    metrics = next(anat(out, "01").glob("*_metrics.json"))
    before = json.loads(metrics.read_text())["registration"]
    values = nib.freesurfer.read_morph_data(str(sulc))
    nib.freesurfer.write_morph_data(str(sulc), (values[::-1]).astype(np.float32))
    os.utime(sulc, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert sulc.stat().st_size == st.st_size and sulc.stat().st_mtime_ns == st.st_mtime_ns
    code, stdout, err = run(bids, out, "participant", *ARGS, "-w", work, "--participant-label", "01")
    row = next(line for line in stdout.splitlines() if line.startswith("sub-01"))
    assert "reused" not in row, stdout
    after = json.loads(metrics.read_text())["registration"]
    assert after["cc_sulc_before"] != before["cc_sulc_before"]
    assert code in (0, 3), err


# ------------------------------------------------------------------------------ disk full

@pytest.fixture
def small_disk(tmp_path):
    """A 512 KiB tmpfs (room for one hemisphere's 330 KB of outputs, not two); skipped where this process may
    not mount one (not root, or a container without CAP_SYS_ADMIN)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize("mode", [(), ("--batch-size", "1", "--nprocs", "1")], ids=["workflow", "batch"])
def test_disk_full_in_the_middle_of_a_run(dataset_factory, small_disk, tmp_path, monkeypatch, mode):
    """The output folder fills up while the subjects are written: every hemisphere that could
    not be written fails with one line naming it (and the disk), none is left partly written, no
    traceback; the other hemispheres are whole. Batch mode stopped the whole run at the first
    such hemisphere instead (its crash file could not be written either: `error: no space left on
    device (disk full) writing OUT/logs/crash-<run>/crash-...sub_02_wf.hemi_L_wf.write-....txt`,
    no FAILED line, no summary, and an empty crash folder left for good); it now reports the
    failure it could not write down as the workflow does, and leaves no empty crash folder."""
    monkeypatch.setattr(pf, "MIN_FREE_MB", {"output": 0, "work": 0})  # let it start on the tiny disk
    if mode:  # not a byte left: batch mode's crash files (written by the main process) fail too
        from geomorph_bids.batch import pipeline

        def full(path, text, *a, **k):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

        monkeypatch.setattr(pipeline, "atomic_write_text", full)
    bids = dataset_factory("freesurfer", subjects=("01", "02", "03"))
    out = small_disk / "out"
    code, _, err = run(bids, out, "participant", *ARGS, *mode, "-w", tmp_path / "w")
    assert code == 1, err
    assert "Traceback" not in err
    failed = failed_lines(err)
    assert failed, err
    for subject, line in failed.items():
        assert "hemi-L" in line and ("disk full" in line or "No space left" in line), line
        if mode:
            assert line.endswith("(node write; its crash file could not be written either: no space left on device "
                                 "(disk full))"), line
    whole = 0
    for subject in ("01", "02", "03"):
        files = list(anat(out, subject).glob("*hemi-L*")) if anat(out, subject).is_dir() else []
        assert len(files) in (0, N_FILES), (subject, files)  # whole or nothing
        whole += len(files) == N_FILES
        assert (len(files) == 0) == (subject in failed), (subject, err)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp") or p.name == ".geomorph-staging"]
    assert not [p for p in (out / "logs").glob("crash-*") if p.is_dir() and not any(p.iterdir())]


def test_a_full_disk_in_batch_mode_starts_no_more_registrations(dataset_factory, small_disk, tmp_path, monkeypatch):
    """Batch mode, the output disk full after the first hemisphere: every hemisphere left was still registered
    and failed at its own write (12 of 28 in a lab's run, each a registration thrown away). After the first
    write the disk refuses, the hemispheres not started fail at once on one line each, unregistered, nothing
    of them written; the one written is kept."""
    monkeypatch.setattr(pf, "MIN_FREE_MB", {"output": 0, "work": 0})  # let it start on the tiny disk
    subjects = ("01", "02", "03", "04", "05")
    bids = dataset_factory("freesurfer", subjects=subjects)
    out, work = small_disk / "out", tmp_path / "w"
    code, stdout, err = run(bids, out, "participant", *ARGS, "--batch-size", "1", "--nprocs", "1", "-w", work)
    assert code == 1 and "Traceback" not in err, err
    failed = failed_lines(err)
    written = [s for s in subjects if s not in failed]
    assert written and written == list(subjects[:len(written)]), err  # the first one(s), whole
    first = subjects[len(written)]  # the first the disk refused: its own write's line
    assert "no space left on device (disk full) writing" in failed[first] and "(node write;" in failed[first]
    skipped = [s for s in subjects if s in failed and "not registered" in failed[s]]
    assert skipped[-2:] == ["04", "05"], err  # (sub-03 may have been queued in the pool already)
    for s in skipped:
        assert failed[s] == (f"  FAILED sub-{s} hemi-L: not registered: no space left on device (disk full) when "
                             f"sub-{first} hemi-L was written, so this run started no more registrations; free space "
                             "and run the same command again (what was written is kept and not registered again)")
        assert not anat(out, s).is_dir()
    assert f"batch: {len(skipped)} hemisphere(s) not started: no space left on device (disk full) when sub-{first} " \
           "hemi-L was written" in stdout
    assert f"failed; {len(skipped)} not started after a write the disk refused; 0 already done" in stdout
    assert all(len(list(anat(out, s).glob("*hemi-L*"))) == N_FILES for s in written)


# ------------------------------------------------------------------------------ a failed rerun

@pytest.mark.parametrize("mode", [(), ("--batch-size", "2")], ids=["workflow", "batch"])
def test_a_failed_rerun_keeps_the_outputs_an_earlier_run_wrote(dataset_factory, tmp_path, mode):
    """A rerun that fails (here: a truncated lh.sulc) took back every file of its hemisphere,
    including the native sphere and maps every template's outputs share and an earlier run's
    complete outputs of the same template. It now removes only what it wrote itself."""
    bids = dataset_factory("freesurfer", subjects=("01",))
    out, work = tmp_path / "out", tmp_path / "w"
    code, _, err = run(bids, out, "participant", *ARGS, *mode, "-w", work)
    assert code == 0, err
    good = digests(out)
    assert len(list(anat(out, "01").glob("*hemi-L*"))) == N_FILES
    sulc = _surf(bids, "01") / "lh.sulc"
    sulc.write_bytes(sulc.read_bytes()[:100])
    metrics = anat(out, "01") / "sub-01_hemi-L_space-fsLR_desc-geomorph_metrics.json"
    key = str(metrics.relative_to(out))
    recorded = json.loads(metrics.read_text())
    for template in (("--template", "fsaverage", "--template-dir", "bundled"), ()):  # another template, the same
        code, _, err = run(bids, out, "participant", *ARGS, *mode, *template, "-w", work)
        assert code == 1 and list(failed_lines(err)) == ["01"], err
        now = digests(out)  # (the same template's kept metrics record the failure: the next test)
        assert {k: v for k, v in now.items() if k != key} == {k: v for k, v in good.items() if k != key}, template
        doc = json.loads(metrics.read_text())
        doc.pop("latest_run_failed", None)
        assert doc == recorded, template


@pytest.mark.parametrize("mode", [(), ("--batch-size", "2")], ids=["workflow", "batch"])
def test_a_hemisphere_whose_latest_run_failed_is_stale_at_the_group_level(dataset_factory, tmp_path, mode):
    """A failed rerun keeps the earlier outputs (round five), and the group level then reported
    that hemisphere ``ok``, exit 0, though its latest run had failed. The kept metrics file now
    records the failure: the group level marks the row ``stale`` (TSV, STALE line, group.html)
    and exits 3, as for a flagged one; a later successful run of it clears the mark."""
    bids = dataset_factory("freesurfer", subjects=("01",))
    out, work = tmp_path / "out", tmp_path / "w"
    assert run(bids, out, "participant", *ARGS, *mode, "-w", work)[0] == 0
    sulc = _surf(bids, "01") / "lh.sulc"
    whole = sulc.read_bytes()
    sulc.write_bytes(whole[:100])
    code, _, err = run(bids, out, "participant", *ARGS, *mode, "-w", work)
    assert code == 1 and "01" in failed_lines(err), err
    assert ("note: 1 failed hemisphere(s) keep an earlier run's outputs, marked stale for the group level until a "
            "run of them succeeds: sub-01 hemi-L") in err
    crash = next(out.glob("logs/crash-*/crash-*.txt"))
    code, _, err = run(bids, out, "group")
    rows = list(csv.DictReader((out / GROUP_TSV).open(), delimiter="\t"))
    assert code == 3 and [(r["hemi"], r["quality"]) for r in rows] == [("L", "stale")], err
    assert rows[0]["quality_reasons"].startswith("the latest run failed: InputError: sub-01 hemi-L ")
    assert "lh.sulc: FreeSurfer morphometry file is truncated" in rows[0]["quality_reasons"]
    assert str(crash) in rows[0]["quality_reasons"]
    stale = [line for line in err.splitlines() if line.startswith("  STALE ")]
    assert len(stale) == 1 and stale[0].startswith("  STALE sub-01 hemi-L: the latest run failed: InputError:"), err
    html = (out / "group.html").read_text()
    assert "1 hemisphere(s) are stale: their latest participant run failed" in html and str(crash) in html
    sulc.write_bytes(whole)
    code, _, err = run(bids, out, "participant", *ARGS, *mode, "-w", work)
    assert code == 0, err
    code, _, err = run(bids, out, "group")
    rows = list(csv.DictReader((out / GROUP_TSV).open(), delimiter="\t"))
    assert code == 0 and [(r["hemi"], r["quality"], r["quality_reasons"]) for r in rows] == [("L", "ok", "n/a")], err
    assert "STALE" not in err and "stale" not in (out / "group.html").read_text()


def test_labels_that_broke_the_work_or_output_folder_cost_only_their_own_hemispheres(dataset_factory, tmp_path):
    """Round twelve. A subject ``unfinished2`` failed every step (`no such file at .../sub2_wf/...`:
    Nipype's rename of ``_unfinished`` markers ran over its workflow name ``sub_unfinished2_wf``);
    it is registered. A label of 200 characters ended the whole run with ``error: File name too long``
    (no FAILED line, no report, an empty ``anat`` folder and stray lock left); it fails on its own line
    before anything is written, and the others are written."""
    bids = dataset_factory("freesurfer", subjects=("01",))
    fs = bids / "derivatives" / "freesurfer"
    long_label = "a" * 200
    for name in ("unfinished2", long_label):
        shutil.copytree(fs / "sub-01", fs / f"sub-{name}")
    out, work = tmp_path / "out", tmp_path / "work"
    code, _, err = run(bids, out, "participant", "-w", work, *ARGS)
    assert code == 1, err
    failed = failed_lines(err)
    assert set(failed) == {long_label}, err
    assert ("its output file names would be up to 261 bytes long "
            f"(sub-{long_label}_hemi-L_space-fsLR_desc-registrationSulc_midthickness.png), more than the 241 the "
            "output folder's file system takes (255, less 14 for the temporary name each file is written under)"
            ) in failed[long_label]
    for subject in ("01", "unfinished2"):
        assert len(list(anat(out, subject).glob("*hemi-L*"))) == N_FILES
        assert (out / f"sub-{subject}.html").is_file()
    assert not (out / f"sub-{long_label}").exists()
    assert not list((out / ".geomorph-locks").glob(f"sub-{long_label}*"))
    assert (work / "geomorph_wf" / "sub-unfinished2_wf").is_dir()


# ------------------------------------------------------------------------------ a rerun with other settings

def test_a_rerun_with_other_settings_says_which_outputs_it_replaces(dataset_factory, tmp_path):
    """A second participant run into the same folder with another model replaced the first
    run's outputs under the same names without a word: the folder held subjects registered by
    different methods. Now one warning line per subject names the settings that differ; the
    group table's method column shows the mix; a rerun with the same settings says nothing."""
    bids = dataset_factory("freesurfer", subjects=("01", "02"))
    out, work = tmp_path / "out", tmp_path / "w"
    code, _, err = run(bids, out, "participant", "--hemi", "L", "--nprocs", "2", "-w", work)
    assert code == 0 and "warning" not in err, err
    code, _, err = run(bids, out, "participant", *ARGS, "--participant-label", "01", "-w", work)
    warnings = [line for line in err.splitlines() if "other settings" in line]
    assert code == 0 and warnings == [
        "geomorph-bids: warning: sub-01: its space-fsLR outputs were made with other settings (model default -> "
        "rigid; method optimise -> rigid); they are being replaced (give another output folder to keep both)"], err
    code, _, err = run(bids, out, "participant", *ARGS, "--participant-label", "01", "-w", work)
    assert code == 0 and "other settings" not in err, err
    code, _, err = run(bids, out, "group")
    rows = list(csv.DictReader((out / GROUP_TSV).open(), delimiter="\t"))
    assert [(r["subject"], r["method"], r["model_argument"]) for r in rows] == [
        ("01", "rigid", "rigid"), ("02", "optimise", "default")], err



def test_a_rerun_after_the_template_folder_changed_in_place_says_so(dataset_factory, tmp_path, tiny_fsaverage):
    """$SUBJECTS_DIR/fsaverage was an fsaverage5 (a link recon-all users point at fsaverage5 for
    speed) and is then replaced in place by a finer one: the rerun registered to the new maps and
    replaced the outputs (their metrics record the new vertex count and SHA-256) without a word,
    as the template's kind and folder were the same. Now the warning names the vertex counts."""
    from geomorph_bids.io.templates import load_template
    from geomorph_bids.sphere.icosphere import icosphere

    bids = dataset_factory("freesurfer", subjects=("01",))
    subjects = bids / "derivatives" / "freesurfer"  # fsaverage beside the subjects, as recon-all leaves it
    fs = tiny_fsaverage(subjects, hemis=("L",), maps=("sulc",))  # fsaverage5's mesh, 10,242 vertices
    out, work = tmp_path / "out", tmp_path / "w"
    args = ("--template", "fsaverage", *ARGS, "-w", work)
    code, _, err = run(bids, out, "participant", *args)
    assert code == 0 and "other settings" not in err, err
    v6, f6 = icosphere(6)  # fsaverage6's mesh in its place, the same folder
    nib.freesurfer.write_geometry(str(fs / "surf" / "lh.sphere"), v6.astype(np.float32), f6.astype(np.int32))
    nib.freesurfer.write_morph_data(str(fs / "surf" / "lh.sulc"),
                                    load_template("fsaverage", "L", ("sulc",)).features["sulc"].astype(np.float32))
    code, _, err = run(bids, out, "participant", *args)
    warnings = [line for line in err.splitlines() if "other settings" in line]
    assert code == 0 and warnings == [
        "geomorph-bids: warning: sub-01: its space-fsaverage outputs were made with other settings (template vertices "
        "10,242 -> 40,962); they are being replaced (give another output folder to keep both)"], err
    doc = json.loads((anat(out, "01") / "sub-01_hemi-L_space-fsaverage_desc-geomorph_metrics.json").read_text())
    assert doc["registration"]["template_vertices"] == 40962
    code, _, err = run(bids, out, "participant", *args)  # the same again: nothing to say
    assert code == 0 and "other settings" not in err, err

# ------------------------------------------------------------------------------ a '%' in the output folder's path

@pytest.mark.parametrize("mode", [(), ("--batch-size", "2")], ids=["workflow", "batch"])
def test_an_output_folder_with_a_percent_sign_in_its_path_is_written_with_its_crash_files(
        dataset_factory, tmp_path, mode):
    """An output folder named ``50%`` ended the run with ``geomorph-bids: error: invalid interpolation
    syntax in '.../50%/logs/crash-...'`` (Nipype's configparser reads ``%`` in its settings), exit 1,
    after ``dataset_description.json``, ``README.md``, ``.bidsignore`` and the citation were written;
    ``%%`` was read as ``%``, so a crash file would have gone to another folder. Both are written where
    they belong: the good subject's outputs, the failed one's line and crash file."""
    bids = dataset_factory("freesurfer", subjects=("01", "02"))
    sulc = _surf(bids, "02") / "lh.sulc"
    sulc.write_bytes(sulc.read_bytes()[:100])
    out, work = tmp_path / "50% a%%b" / "out", tmp_path / "w"
    code, _, err = run(bids, out, "participant", *ARGS, *mode, "-w", work)
    assert code == 1 and list(failed_lines(err)) == ["02"], err
    assert "interpolation" not in err and "truncated" in failed_lines(err)["02"]
    assert len(list(anat(out, "01").glob("*hemi-L*"))) == N_FILES
    assert not list(out.glob("sub-02/anat/*hemi-L*"))
    assert len(list(out.glob("logs/crash-*/crash-*"))) == 1, err  # in this output folder, nowhere else
    assert not (tmp_path / "50% a%b").exists()

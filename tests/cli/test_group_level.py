"""The group level's population templates as a researcher uses them: a template built from the
cohort, participants registered to it, the template rebuilt in place or copied elsewhere, and
what the group level says of outputs registered to maps that are no longer there."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from geomorph_bids.cli.bids import main

RIGID = ("--model", "rigid", "--hemi", "L")


def run(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def bids(dataset_factory):
    return dataset_factory("freesurfer", subjects=("01", "02", "03"))


def cohort(bids: Path, tmp: Path) -> dict:
    """Three FreeSurfer participants registered to fsLR (rigid, hemi-L) into ``tmp/out``, a
    population template built from all three, and sub-01 registered to it (a folder of its own:
    the metrics record the template's folder by its path, so a copy would point at this one)."""
    out = tmp / "out"
    code, _, err = run(bids, out, "participant", *RIGID, "-w", tmp / "w", "--nprocs", "2")
    assert code == 0, err
    code, _, err = run(bids, out, "group", "--build-template", "1", *RIGID)
    assert code == 0, err
    code, _, err = run(bids, out, "participant", "--participant-label", "01", "--template", "geomorphPopulation",
                       *RIGID, "-w", tmp / "w")
    assert code == 0, err
    # its report draws the resampled map on fsLR's 32k sphere (the base's; it was looked for as an icosphere)
    assert "output-density sphere not available" not in (out / "sub-01.html").read_text()
    # its sidecars say the space's coordinates and output spheres are fsLR's (they named the population
    # template's "32k sphere", which is fsLR's, and no base)
    anat = out / "sub-01" / "anat"
    sphere = json.loads((anat / "sub-01_hemi-L_space-geomorphPopulation_desc-geomorph_sphere.json").read_text())
    sulc = json.loads((anat / "sub-01_hemi-L_space-geomorphPopulation_den-32k_desc-geomorph_sulc.json").read_text())
    assert sphere["BaseTemplate"] == sulc["BaseTemplate"] == "fsLR"
    assert "moved into geomorphPopulation space (the fsLR sphere's coordinates, where its maps lie)" in (
        sphere["Description"])
    assert sulc["Description"] == ("sulc resampled onto the fsLR 32k sphere (template geomorphPopulation is built on "
                                   "fsLR) through the geomorph-bids registration")
    fslr = json.loads((anat / "sub-01_hemi-L_space-fsLR_den-32k_desc-geomorph_sulc.json").read_text())
    assert "BaseTemplate" not in fslr and fslr["Description"].startswith("sulc resampled onto the fsLR 32k sphere through")
    return dict(bids=bids, out=out, tmp=tmp)


def test_a_template_rebuilt_from_some_participants_names_the_others_registered_to_it(bids, tmp_path):
    """QA: `group --build-template 1 --participant-label 02 03` rebuilt tpl-geomorphPopulation in
    place while sub-01's outputs were registered to it, without a word: the warning looked at the
    selected participants' rows only. A build that stops short (one participant) replaced nothing
    and said it did."""
    out = cohort(bids, tmp_path)["out"]
    code, stdout, err = run(bids, out, "group", "--build-template", "1", "--participant-label", "02", "03",
                            *RIGID)
    assert code == 0, err
    assert "from 2 participant(s)" in stdout
    assert ("warning: tpl-geomorphPopulation is rebuilt while 1 participant(s) have outputs registered to it "
            "(sub-01): rerun their participant level with --template geomorphPopulation afterwards") in err
    # nothing rebuilt (one participant is too few): nothing said to be
    code, _, err = run(bids, out, "group", "--build-template", "1", "--participant-label", "02", *RIGID)
    assert code != 0 and "at least 2 are needed" in err
    assert "is rebuilt" not in err


def test_outputs_registered_to_a_template_since_rebuilt_or_copied_are_said_at_the_group_level(bids, tmp_path):
    """QA: after the template was rebuilt in place, `group` reported sub-01's space-geomorphPopulation
    row as ok with no word that the maps it was registered to were gone (template_sha256 in the
    table, the folder's maps another checksum); an earlier build copied to another folder and
    registered to from there gave rows of one space- name in two spaces, in silence. Now one
    warning line each (also on group.html), naming the participants, the folders and checksums."""
    out = cohort(bids, tmp_path)["out"]
    code, _, err = run(bids, out, "group")
    assert "were registered to the maps" not in err and "different maps" not in err  # all current
    shutil.copytree(out / "tpl-geomorphPopulation", out / "tpl-first")  # the first build, kept aside
    code, _, err = run(bids, out, "group", "--build-template", "2", *RIGID)
    assert code == 0, err
    code, _, err = run(bids, out, "group")
    assert code == 0, err
    tpl = out / "tpl-geomorphPopulation"
    line = next(x for x in err.splitlines() if "space-geomorphPopulation hemi-L" in x)
    assert line.startswith("geomorph-bids: warning: space-geomorphPopulation hemi-L: 1 hemisphere(s) were registered "
                           f"to the maps in {tpl} as they were before they changed (sha256 ")
    assert line.endswith("now: a template rebuilt or replaced there): sub-01; their outputs are not in the space of "
                         "those maps now: rerun their participant level (--template geomorphPopulation or the folder "
                         "of the maps to keep)")
    assert "sub-01; their outputs" in (out / "group.html").read_text()
    assert "_template_files" not in (out / "group_desc-geomorph_metrics.tsv").read_text()
    # its report, drawn again, draws the maps there now: it says they are not those it was registered to
    (out / "sub-01.html").unlink()
    code, _, err = run(bids, out, "participant", "--reports-only", "--participant-label", "01")
    assert code == 0, err
    assert "have changed since this hemisphere was registered to them (sha256 " in (out / "sub-01.html").read_text()
    # sub-02 registered to the new build, sub-03 to the first one's copy: one space- name, two spaces
    for label, template in (("02", "geomorphPopulation"), ("03", out / "tpl-first")):
        code, _, err = run(bids, out, "participant", "--participant-label", label, "--template", template,
                           *RIGID, "-w", tmp_path / "w")
        assert code == 0, err
    code, _, err = run(bids, out, "group")
    line = next(x for x in err.splitlines() if "space-geomorphPopulation hemi-L" in x)
    assert "its rows were registered to 2 different maps of the same names, so its outputs are not in one space" in line
    assert f"in {out / 'tpl-first'}, {tpl} (changed there since): sub-01, sub-03; sha256 " in line
    assert f"in {tpl}: sub-02; for those registered to maps other than the ones you keep" in line



def test_a_participant_rerun_after_its_template_was_rebuilt_registers_to_the_rebuilt_maps(bids, tmp_path):
    """Twenty-fifth session (fix-bt): `group --build-template` rebuilt tpl-geomorphPopulation in place and
    said to rerun sub-01's participant level; the rerun with the same work folder said `reused: 1
    hemisphere(s) unchanged since an earlier run with the same inputs and settings`: Nipype's registration
    node named the maps by path only, so its cache gave the registration to the earlier maps (the metrics'
    template_sha256 the earlier build's), and the metrics JSON's resume record took the new maps' key, so that
    any later run, with any work folder, reused it too. The node now keys on the maps' content."""
    from geomorph_bids.io.template_sources import files_sha256

    out = cohort(bids, tmp_path)["out"]
    metrics = out / "sub-01" / "anat" / "sub-01_hemi-L_space-geomorphPopulation_desc-geomorph_metrics.json"
    first = json.loads(metrics.read_text())["registration"]["template_sha256"]
    code, _, err = run(bids, out, "group", "--build-template", "1", "--participant-label", "02", "03", *RIGID)
    assert code == 0, err
    maps = out / "tpl-geomorphPopulation" / "tpl-geomorphPopulation_hemi-L_den-ico6_sulc.shape.gii"
    rebuilt = files_sha256((str(maps),))
    assert rebuilt != first
    code, stdout, err = run(bids, out, "participant", "--participant-label", "01", "--template", "geomorphPopulation",
                            *RIGID, "-w", tmp_path / "w")
    assert code == 0, err
    assert "reused" not in stdout
    assert json.loads(metrics.read_text())["registration"]["template_sha256"] == rebuilt


def test_a_participants_sessions_are_said_to_weigh_as_participants_and_session_label_picks_them(tmp_path):
    """QA: a cohort with per-session anatomy (sub-01_ses-1, sub-01_ses-2, sub-02_ses-1) built a
    template that averaged sub-01 twice, said "from 3 participant(s)" of 2 participants, and
    `--session-label 1`, the way to average one session each, was "no effect at the group level".
    Now a note names the participants averaged with several sessions, the count says both, the
    description lists who was averaged, and --session-label picks the sessions."""

    from .conftest import make_dataset

    bids = make_dataset(tmp_path / "bids", "freesurfer", subjects=("01", "02"), session="1")
    make_dataset(bids, "freesurfer", subjects=("01",), session="2")
    out = tmp_path / "out"
    code, _, err = run(bids, out, "participant", *RIGID, "-w", tmp_path / "w", "--nprocs", "2")
    assert code == 0, err
    code, stdout, err = run(bids, out, "group", "--build-template", "1", *RIGID)
    assert code == 0, err
    assert ("note: hemi-L: 1 participant(s) are averaged in with several sessions, each session weighing as one "
            "participant: sub-01 (ses-1, ses-2); --session-label picks the sessions to average") in err
    assert "from 3 subject/session(s) of 2 participant(s)" in stdout
    desc = json.loads((out / "tpl-geomorphPopulation" / "template_description.json").read_text())
    assert desc["Hemispheres"]["L"]["Participants"] == ["sub-01_ses-1", "sub-01_ses-2", "sub-02_ses-1"]
    code, stdout, err = run(bids, out, "group", "--build-template", "1", "--session-label", "1", *RIGID)
    assert code == 0, err
    assert "--session-label has no effect" not in err and "several sessions" not in err
    assert "round 1/1 sub-01_ses-2" not in stdout and "from 2 participant(s)" in stdout
    desc = json.loads((out / "tpl-geomorphPopulation" / "template_description.json").read_text())
    assert desc["Hemispheres"]["L"]["Participants"] == ["sub-01_ses-1", "sub-02_ses-1"]
    # a feature the starting template has no map of: one line before anything (every participant was "left out:
    # ..._thickness.shape.gii missing (rerun the participant level for it)", which could never help)
    code, stdout, err = run(bids, out, "group", "--build-template", "1", "--features", "sulc", "thickness", *RIGID)
    assert code == 1 and "left out" not in err and "round 1" not in stdout
    assert ("error: --build-template --features sulc thickness: template fsLR has no thickness map (it has: curv, "
            "myelin, sulc): a population template averages maps its starting template has") in err
    # curv, which fsLR has and its default registration does not use: which participant run writes it
    code, _, err = run(bids, out, "group", "--build-template", "1", "--features", "sulc", "curv", *RIGID)
    assert code == 1
    assert ("sub-02_ses-1 hemi-L left out of the template: sub-02_ses-1_hemi-L_curv.shape.gii missing (rerun the "
            "participant level for it, registering curv: it writes the native maps of the features its registration "
            "uses (curv: --template fsaverage's default registration))") in err
    # without --build-template it still changes nothing, and says so
    code, _, err = run(bids, out, "group", "--session-label", "1")
    assert "warning: --session-label has no effect at the group level without --build-template" in err


def test_an_output_folder_moved_with_its_population_template_still_finds_and_checks_it(bids, tmp_path):
    """QA: an output folder moved as a whole (scratch to project space) keeps its tpl-<label>, but
    the metrics record the template by its old path: sub-01's report, drawn again, said 'template
    geomorphPopulation (sulc) not available here: .../template_description.json: ... no such
    file', and a rebuild of the template there went unsaid at the group level (the maps were not
    where they were recorded, so nothing was compared). The folder is now found where it moved
    to, used when it holds the same maps, and compared."""
    out = cohort(bids, tmp_path / "scratch")["out"]
    moved = tmp_path / "project" / "out"
    moved.parent.mkdir()
    shutil.move(out, moved)
    (moved / "sub-01.html").unlink()
    code, _, err = run(bids, moved, "participant", "--reports-only", "--participant-label", "01")
    assert code == 0, err
    html = (moved / "sub-01.html").read_text()
    assert "not available here" not in html and "have changed since" not in html
    code, _, err = run(bids, moved, "group", "--build-template", "2", *RIGID)
    assert code == 0, err
    code, _, err = run(bids, moved, "group")
    assert (f"space-geomorphPopulation hemi-L: 1 hemisphere(s) were registered to the maps in "
            f"{moved / 'tpl-geomorphPopulation'} as they were before they changed") in err


def test_reports_only_says_a_session_label_changes_nothing(bids, tmp_path):
    """``participant --reports-only --participant-label 01 --session-label 2`` (a longitudinal study's
    new session, its report wanted) rebuilt ``sub-01.html`` with every session, exit 0, nothing said
    of the label (a session with no outputs, ``--session-label 9``, alike). Now one warning line."""
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run(bids, out, "participant", "--reports-only", "--participant-label", "01", "--session-label", "2")
    assert ("geomorph-bids: warning: --session-label has no effect with --reports-only (the reports are drawn "
            "from the outputs already written)") in err  # one line, the one every such option gets
    assert code == 1 and "--reports-only: no participant outputs" in err, err


def test_the_note_on_participants_with_several_sessions_lists_them_in_natural_order(tmp_path):
    """``group --build-template`` on sub-2 (``ses-2``, ``ses-10``) and sub-10 (``ses-2``, ``ses-10``): the note
    named ``sub-10 (ses-10, ses-2), sub-2 (ses-10, ses-2)`` (text order), the table and the rounds 2 before 10."""
    from .conftest import make_dataset

    for ses in ("2", "10"):
        bids = make_dataset(tmp_path / "bids", "freesurfer", subjects=("2", "10"), session=ses)
    out = tmp_path / "out"
    code, _, err = run(bids, out, "participant", *RIGID, "-w", tmp_path / "w", "--nprocs", "2")
    assert code == 0, err
    code, _, err = run(bids, out, "group", "--build-template", "1", *RIGID)
    assert code == 0, err
    assert ("note: hemi-L: 2 participant(s) are averaged in with several sessions, each session weighing as one "
            "participant: sub-2 (ses-2, ses-10), sub-10 (ses-2, ses-10); --session-label picks") in err, err


@pytest.mark.slow  # two participant runs and two group runs: ~40 s on 2 shared cores
def test_a_table_of_one_hemisphere_says_the_other_is_in_no_row(dataset_factory, tmp_path):
    """The participant level run with ``--hemi L``, then the group level: a table and report of hemi-L alone, and
    nothing said of hemi-R. One note now says so; once hemi-R is registered too, nothing."""
    bids = dataset_factory("freesurfer", subjects=("01",))
    out = tmp_path / "out"
    code, _, err = run(bids, out, "participant", "--model", "rigid", "--hemi", "L", "-w", tmp_path / "w")
    assert code == 0, err
    code, _, err = run(bids, out, "group")
    assert code == 0 and err.splitlines() == [
        "geomorph-bids: note: every row is hemi-L (1 row(s)): no participant has hemi-R outputs (a participant level "
        "run with --hemi L?); the table and the report cover hemi-L alone: run the participant level with --hemi R "
        "(or without --hemi) to add them"], err
    code, _, err = run(bids, out, "participant", "--model", "rigid", "--hemi", "R", "-w", tmp_path / "w")
    assert code == 0, err
    code, stdout, err = run(bids, out, "group")
    assert code == 0 and "2 row(s)" in stdout and "every row is" not in err, err
@pytest.mark.slow
def test_a_subject_folder_linked_to_or_copied_from_another_is_named_and_averaged_once(dataset_factory, tmp_path):
    """QA (fix-bd): ``derivatives/freesurfer/sub-03`` a link to ``sub-01`` (or ``sub-04`` a copy of ``sub-02``)
    was registered again, ``ok``, exit 0, and nothing said: two participants of the group table, and one
    brain averaged twice into a population template. Both are still written; each level names them."""
    bids = dataset_factory("freesurfer", subjects=("01", "02"))
    fs = bids / "derivatives" / "freesurfer"
    (fs / "sub-03").symlink_to("sub-01", target_is_directory=True)
    shutil.copytree(fs / "sub-02", fs / "sub-04")
    out = tmp_path / "out"
    code, stdout, err = run(bids, out, "participant", *RIGID, "-w", tmp_path / "w", "--batch-size", "4",
                            "--reports", "deferred")
    assert code == 0, err
    assert stdout.count(" ok") == 4
    same = ("sub-03 as sub-01 (hemi-L); sub-04 as sub-02 (hemi-L): registered twice from the same input files (their "
            "registrations agree to the last digit: correlations with the template before the warp, rotation): a "
            "subject folder linked to or copied from another?")
    assert (f"geomorph-bids: warning: {same} The group level would count each as a participant of its own: remove "
            f"the copy from the inputs and its outputs from {out}\n") in err
    code, _, err = run(bids, out, "group", "--build-template", "1", *RIGID)
    assert code == 0, err
    assert (f"geomorph-bids: warning: {same} Each counts as a participant of its own in "
            f"group_desc-geomorph_metrics.tsv (--build-template averages the first alone): remove the copy from the "
            f"inputs and its outputs from {out}\n") in err
    assert ("warning: sub-03 hemi-L left out of the template: registered from the same input files as sub-01 hemi-L "
            "(one brain counts once)") in err
    assert "warning: sub-04 hemi-L left out of the template: registered from the same input files as sub-02" in err
    description = json.loads((out / "tpl-geomorphPopulation" / "template_description.json").read_text())
    assert description["Hemispheres"]["L"]["Participants"] == ["sub-01", "sub-02"]
    assert "registered twice from the same input files" in (out / "group.html").read_text()


def test_the_group_level_names_hemispheres_with_too_few_folds_in_one_note_and_flags_none():
    """The example's sub-01 smoothed 320 times (coarse fits 0.62 / 0.56) was `ok` in the group table and the
    group level said nothing; one note now names them with their fits, the threshold and the remedy, the
    table's verdicts unchanged, and a cohort of 12 such rows stays one line."""
    import argparse

    from geomorph_bids.cli.group_level import _few_folds_line, _judge_rows

    def row(subject, hemi, own):
        reg = {"identity_cc_own": own, "identity_cc_mirrored": 0.48, "cc_sulc_after": 0.545}
        return {"subject": subject, "session": None, "hemi": hemi, "template": "fsLR", "_registration": reg,
                "_features": ["sulc"], "_thresholds": None, "_stale": None}

    rows = [row("01", "L", 0.62), row("01", "R", 0.565), row("02", "L", 0.93)]
    few = []
    flagged, stale = _judge_rows(argparse.Namespace(), rows, few)
    assert not flagged and not stale and [r["quality"] for r in rows] == ["ok", "ok", "ok"]
    assert _few_folds_line(few) == (
        "2 hemisphere(s) with too few folds to register reliably (sulc's coarse fit to the template, identity_cc_own "
        "in group_desc-geomorph_metrics.tsv, below 0.8; a brain's sulc: 0.82 or more): sub-01 hemi-L (0.62), sub-01 "
        "hemi-R (0.56): probably several degrees off even where not flagged (an infant's or smoothed map); register "
        "such a cohort to a template of its own age (--build-template N, then --template OUT/tpl-LABEL at the "
        "participant level)")
    many = []
    _judge_rows(argparse.Namespace(), [row(f"{i:02d}", "L", 0.6) for i in range(12)], many)
    assert _few_folds_line(many).count("(0.60)") == 10 and ", ... (12 in all): probably" in _few_folds_line(many)

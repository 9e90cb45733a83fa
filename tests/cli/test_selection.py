"""--bids-filter-file in fMRIPrep's nested form (geomorph_bids.cli.selection.read_filter)."""

from __future__ import annotations

import json
import shutil

import pytest

from geomorph_bids.cli.selection import read_filter
from geomorph_bids.errors import InputError

from .conftest import make_dataset
from .test_bids import anat, run


def _filter(tmp_path, doc) -> object:
    path = tmp_path / "filter.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("doc,expected", [
    # fMRIPrep's documented form: datatype/suffix/part restate the query; bold's entities are not ours
    ({"t1w": {"datatype": "anat", "suffix": "T1w", "session": "1", "part": ["mag", None]},
      "bold": {"datatype": "func", "suffix": "bold", "task": "rest", "session": "2"}}, {"session": ["1"]}),
    ({"t1w": {"session": "1"}, "bold": {"task": "rest", "session": "1"}}, {"session": ["1"]}),
    ({"t1w": {"subject": "sub-01"}, "t2w": {"subject": ["01"], "extension": ".nii.gz"}}, {"subject": ["01"]}),
    ({"subject": "01", "t1w": {"session": "ses-pre"}, "fmap": {"datatype": "fmap"}},
     {"subject": ["01"], "session": ["pre"]}),
    ({"bold": {"session": "2"}}, {}),
    # pybids' Query.NONE / Query.ANY, as fMRIPrep reads its filter files
    ({"t1w": {"session": None}}, {"session": [""]}),
    ({"t1w": {"session": ["ses-1", None]}}, {"session": ["", "1"]}),
    ({"t1w": {"session": "*", "subject": ["01", "*"]}}, {}),
])
def test_the_nested_form_selects_by_the_anatomical_queries_only(tmp_path, doc, expected):
    """QA pass (fix-a): every nested query was merged with dict.update, so {"t1w": {"session": "1"},
    "bold": {"session": "2"}} registered session 2, exit 0; and bold's "task" (fMRIPrep's ordinary
    filter files) or the documented datatype/suffix keys refused the whole file."""
    notes: list[str] = []
    assert read_filter(_filter(tmp_path, doc), notes) == expected
    ignored = [q for q in doc if q in ("bold", "fmap")]
    assert len(notes) == (1 if ignored else 0)
    if ignored:
        assert notes[0] == (f"{tmp_path / 'filter.json'}: the BIDS filter file's {', '.join(ignored)} query "
                            "ignored (the surfaces are selected by fMRIPrep's anatomical queries only: t1w, t2w, "
                            "flair, roi)")


@pytest.mark.parametrize("doc,words", [
    ({"t1w": {"session": "1"}, "t2w": {"session": "2"}},
     "the BIDS filter file selects session 1 in query 't1w' and 2 in query 't2w': the surfaces are made from one "
     "anatomy, give one session selection"),
    ({"session": "1", "t1w": {"session": ["1", "2"]}},
     "the BIDS filter file selects session 1 in the top level and 1, 2 in query 't1w'"),
    ({"t1w": {"suffix": "T2w"}}, "query 't1w' of the BIDS filter file: suffix \"T2w\" selects other images than "
                                 "the query's"),
    ({"t1w": {"datatype": "func"}}, "query 't1w' of the BIDS filter file: datatype \"func\" selects other images"),
    ({"t1w": {"acquisition": "mprage"}}, "query 't1w' of the BIDS filter file: unsupported entity 'acquisition'"),
    ({"T1w": {"session": "1"}}, "unknown query 'T1w' in the BIDS filter file: did you mean 't1w'?"),
    ({"t1w": {"subject": None}}, "query 't1w': 'subject' in the BIDS filter file must be a label or a list of "
                                 "labels (or \"*\": any), got null"),
    ({"t1w": {"session": "*"}, "t2w": {"session": "1"}},
     "the BIDS filter file selects session * in query 't1w' and 1 in query 't2w'"),
])
def test_anatomical_queries_that_disagree_or_select_what_we_cannot_are_refused(tmp_path, doc, words):
    path = _filter(tmp_path, doc)
    with pytest.raises(InputError) as exc:
        read_filter(path)
    assert str(exc.value).startswith(f"{path}: {words}") and "\n" not in str(exc.value)


def test_a_nested_filter_registers_the_t1w_session_not_the_bold_one(tmp_path):
    """End to end: the session of fMRIPrep's t1w query is registered, bold's is not; one note line
    names the query ignored."""
    bids = make_dataset(tmp_path / "bids", "smriprep", subjects=("01",), session="1")
    make_dataset(tmp_path / "bids", "smriprep", subjects=("01",), session="2")
    filt = _filter(tmp_path, {"t1w": {"session": "1"}, "bold": {"session": "2", "task": "rest"}})
    out = tmp_path / "out"
    code, _, err = run(bids, out, "participant", "--bids-filter-file", filt, "--hemi", "L", "--model", "rigid",
                       "-w", tmp_path / "w", "--nprocs", "1", "--reports", "deferred")
    assert code == 0, err
    assert err.splitlines()[0] == (f"geomorph-bids: note: {filt}: the BIDS filter file's bold query ignored (the "
                                   "surfaces are selected by fMRIPrep's anatomical queries only: t1w, t2w, flair, roi)")
    assert (anat(out, "01", "1") / "sub-01_ses-1_hemi-L_space-fsLR_desc-geomorph_metrics.json").is_file()
    assert not (out / "sub-01" / "ses-2").exists()


def test_per_session_anatomy_registers_every_session_even_when_one_lacks_a_hemisphere(tmp_path, capsys):
    """sMRIPrep sessionwise outputs (no session-less anatomy) where ses-2 has hemi-L only: without a
    session selection, every session is processed on its own. Before, discovery without a session
    took hemi-R from its lone ses-1 folder and failed hemi-L with "spheres in several sessions
    (ses-1, ses-2), pass a session": ses-1's hemi-L and ses-2 were never registered. A raw session
    of functional scans alone (no anat folder, no derivatives) is named on one note line, not failed."""
    from geomorph_bids.cli.parser import build_parser
    from geomorph_bids.cli.selection import collect_jobs

    bids = make_dataset(tmp_path / "bids", "smriprep", subjects=("01",), session="1")
    make_dataset(tmp_path / "bids", "smriprep", subjects=("01",), session="2")
    for f in (tmp_path / "bids" / "derivatives" / "smriprep" / "sub-01" / "ses-2" / "anat").glob("*hemi-R*"):
        f.unlink()
    (bids / "sub-01" / "ses-3" / "func").mkdir(parents=True)  # a functional-only session
    (bids / "derivatives" / "smriprep" / "sub-01" / "ses-3" / "func").mkdir(parents=True)  # as fMRIPrep writes it
    jobs, failures = collect_jobs(build_parser().parse_args([str(bids), str(tmp_path / "out"), "participant"]),
                                  ["sulc"])
    got = [(j.subject, j.session, sorted(j.inputs.hemis), sorted({h.session for h in j.inputs.hemis.values()}))
           for j in jobs]
    assert got == [("01", "1", ["L", "R"], ["1"]), ("01", "2", ["L"], ["2"])]
    assert [(f.subject, f.session, f.hemi) for f in failures] == [("01", "2", "R")]
    # the folders a session's discovery tries, FreeSurfer's per-session run first (it named {sub-01,01} only)
    assert failures[0].reason.startswith("no inputs; looked for sMRIPrep sub-01/[ses-2/]anat/sub-01[_ses-2]_hemi-R"
                                         "_sphere.surf.gii + _sulc.shape.gii, FreeSurfer {sub-01_ses-2,sub-01,01}/surf/"
                                         "rh.sphere + rh.sulc, HCP MNINonLinear/Native/<S>.R.sphere.native.surf.gii + "
                                         ".sulc.native.shape.gii (S = sub-01_ses-2, 01_ses-2, sub-01 or 01)")
    err = capsys.readouterr().err
    assert err == ("geomorph-bids: note: sub-01: session ses-3 left out: no anat folder in its session folders of "
                   "the dataset or the derivatives (scans without anatomy: no surfaces to register)\n")
    # session-less anatomy shared by the sessions stays one job, written without a session
    shared = make_dataset(tmp_path / "shared", "smriprep", subjects=("01",))
    (shared / "sub-01" / "ses-1" / "anat").mkdir(parents=True)
    (shared / "sub-01" / "ses-2" / "anat").mkdir(parents=True)
    jobs, failures = collect_jobs(build_parser().parse_args([str(shared), str(tmp_path / "o2"), "participant"]),
                                  ["sulc"])
    assert [(j.subject, j.session, sorted(j.inputs.hemis)) for j in jobs] == [("01", None, ["L", "R"])]
    assert not failures


def test_a_session_selection_on_anatomy_without_sessions_registers_it_once(tmp_path, capsys):
    """fMRIPrep 23/24 (and sMRIPrep without ``--subject-anatomical-reference sessionwise``) write one
    anatomy per subject (``sub-01/anat``) beside per-session functional outputs. ``--session-label 1 2``
    (or a filter's session) made one job per session on that same anatomy: the table and the inputs
    line said ses-1 and ses-2, the hemispheres were registered twice and written once, without a
    session, and the group table had one row. Now one session-less job, said on one note line; a
    subject whose sessions have anatomy of their own is registered per session as before."""
    from geomorph_bids.cli.parser import build_parser
    from geomorph_bids.cli.selection import collect_jobs

    bids = make_dataset(tmp_path / "bids", "smriprep", subjects=("01",))
    make_dataset(tmp_path / "bids", "smriprep", subjects=("02",), session="1")
    make_dataset(tmp_path / "bids", "smriprep", subjects=("02",), session="2")
    for ses in ("1", "2"):  # the raw sessions: functional scans (and a T1w) in each
        (bids / "sub-01" / f"ses-{ses}" / "anat").mkdir(parents=True)
        (bids / "derivatives" / "smriprep" / "sub-01" / f"ses-{ses}" / "func").mkdir(parents=True)
    capsys.readouterr()
    jobs, failures = collect_jobs(build_parser().parse_args([str(bids), str(tmp_path / "out"), "participant",
                                                             "--session-label", "1", "2"]), ["sulc"])
    assert [(j.subject, j.session, sorted(j.inputs.hemis)) for j in jobs] == [
        ("01", None, ["L", "R"]), ("02", "1", ["L", "R"]), ("02", "2", ["L", "R"])]
    assert not failures
    assert capsys.readouterr().err == (
        f"geomorph-bids: note: sub-01: its anatomy has no session ({bids / 'derivatives/smriprep/sub-01/anat'}): it "
        "is registered once for every session, and written without a session (sub-01/anat), where fMRIPrep (before "
        "25.2's --subject-anatomical-reference sessionwise) and sMRIPrep look for it\n")
    # a session that exists nowhere for the subject still fails, by name
    jobs, failures = collect_jobs(build_parser().parse_args([str(bids), str(tmp_path / "out"), "participant",
                                                             "--participant-label", "01", "--session-label", "3"]),
                                  ["sulc"])
    assert not jobs and [(f.subject, f.session) for f in failures] == [("01", "3")]


def test_freesurfer_longitudinal_folders_say_which_run_is_registered(tmp_path, recwarn):
    """FreeSurfer's longitudinal stream in a SUBJECTS_DIR: cross-sectional ``sub-01_ses-{1,2}``, the
    base and ``sub-01_ses-X.long.<base>``. The cross-sectional runs are registered, one per session,
    and each longitudinal folder's warning says so and how to register it instead; before, each was
    offered a link under a new subject label (``01ses1longsub01base``: one brain's session as a
    subject of its own) and nothing said which run was registered. A base named ``sub-01`` (with
    ``scripts/base-tps``) was registered alone and the sessions' own runs left out in silence: one
    warning line names them and the --session-label that registers them."""
    import shutil

    from geomorph_bids.cli.parser import build_parser
    from geomorph_bids.cli.selection import SubjectWarning, collect_jobs

    bids = make_dataset(tmp_path / "bids", "freesurfer", subjects=("01",), session="1")
    make_dataset(tmp_path / "bids", "freesurfer", subjects=("01",), session="2")
    fs = bids / "derivatives" / "freesurfer"
    for base in ("sub-01_base",):
        shutil.copytree(fs / "sub-01_ses-1", fs / base)
        for ses in ("1", "2"):
            shutil.copytree(fs / f"sub-01_ses-{ses}", fs / f"sub-01_ses-{ses}.long.{base}")
    args = build_parser().parse_args([str(bids), str(tmp_path / "out"), "participant"])
    jobs, failures = collect_jobs(args, ["sulc"])
    assert [(j.subject, j.session) for j in jobs] == [("01", "1"), ("01", "2")] and not failures
    assert jobs[0].inputs.hemis["L"].sphere == fs / "sub-01_ses-1" / "surf" / "lh.sphere"
    lines = sorted(str(w.message) for w in recwarn if issubclass(w.category, SubjectWarning))
    assert lines == [
        f"FreeSurfer subject folder {fs / 'sub-01_base'} is not processed: it is the base of a longitudinal run "
        "(recon-all -base: the within-subject template of sub-01_ses-1, sub-01_ses-2), not a session of its own",
        *(f"FreeSurfer subject folder {fs / f'sub-01_ses-{s}.long.sub-01_base'} is not processed: it is the "
          f"longitudinal run of time point sub-01_ses-{s} (recon-all -long, base sub-01_base); sub-01_ses-{s} is "
          f"registered from its cross-sectional run {fs / f'sub-01_ses-{s}'} instead. To register the longitudinal "
          f"surfaces in its place: mkdir -p LONGDIR && ln -s {fs / f'sub-01_ses-{s}.long.sub-01_base'} "
          f"LONGDIR/sub-01_ses-{s}, then --fs-subjects-dir LONGDIR" for s in ("1", "2"))]
    # the base named as the subject (recon-all -base sub-01 -tp sub-01_ses-1 -tp sub-01_ses-2)
    for p in fs.glob("*base*"):
        shutil.rmtree(p)
    shutil.copytree(fs / "sub-01_ses-1", fs / "sub-01")
    (fs / "sub-01" / "scripts").mkdir()
    (fs / "sub-01" / "scripts" / "base-tps").write_text("sub-01_ses-1\nsub-01_ses-2\n")
    recwarn.clear()
    jobs, failures = collect_jobs(args, ["sulc"])
    assert [(j.subject, j.session) for j in jobs] == [("01", None)] and not failures
    assert [str(w.message) for w in recwarn if issubclass(w.category, SubjectWarning)] == [
        f"sub-01: registered once, from its session-less anatomy: {fs / 'sub-01'}, the base of a longitudinal run "
        "of sub-01_ses-1, sub-01_ses-2; the surfaces of ses-1, ses-2 in their own folders are not registered without "
        "a session selection (--session-label 1 2 registers them, under sub-01/ses-<label>/anat)"]
    jobs, failures = collect_jobs(build_parser().parse_args([str(bids), str(tmp_path / "out"), "participant",
                                                             "--session-label", "1", "2"]), ["sulc"])
    assert [(j.subject, j.session, j.inputs.hemis["L"].sphere.parent.parent.name) for j in jobs] == [
        ("01", "1", "sub-01_ses-1"), ("01", "2", "sub-01_ses-2")] and not failures


def test_a_filter_session_null_registers_the_anatomy_without_a_session(tmp_path):
    """fMRIPrep's filter files say "no session" with null (pybids' Query.NONE) and "any" with "*";
    both were refused ("must be a label or a list of labels, got null"). Now null registers the
    session-less anatomy (sub-01/anat) and not the sessions' own; a subject whose anatomy is only in
    session folders fails on one line that names them, and the other subject is registered."""
    bids = make_dataset(tmp_path / "bids", "smriprep", subjects=("01",))
    make_dataset(tmp_path / "bids", "smriprep", subjects=("01", "02"), session="2")
    filt = _filter(tmp_path, {"t1w": {"session": None, "subject": "*"}, "bold": {"session": "*"}})
    out = tmp_path / "out"
    code, _, err = run(bids, out, "participant", "--bids-filter-file", filt, "--hemi", "L", "--model", "rigid",
                       "-w", tmp_path / "w", "--nprocs", "1", "--reports", "deferred")
    assert code == 1, err
    assert (anat(out, "01") / "sub-01_hemi-L_space-fsLR_desc-geomorph_metrics.json").is_file()
    assert not (out / "sub-01" / "ses-2").exists() and not (out / "sub-02").exists()
    failed = [line for line in err.splitlines() if "sub-02" in line and "session null" in line]
    assert len(failed) == 1 and "ses-2" in failed[0], err


def test_subject_folders_that_are_links_to_nothing_are_named_not_left_out_in_silence(tmp_path, recwarn):
    """A subject folder that is a link to nothing: a FreeSurfer subject linked from a disk that is not
    mounted, a link relative to another folder, a link to itself. A whole-dataset run left it out
    without a word (exit 0 for the others), and ``--participant-label`` of it said ``not found;
    available: 01`` though ``ls`` shows it. Now the run warns, naming the link and what it leads to,
    and the label's failure line says the same."""
    from geomorph_bids.cli.parser import build_parser
    from geomorph_bids.cli.selection import SubjectWarning, collect_jobs

    bids = make_dataset(tmp_path / "bids", "freesurfer", subjects=("01",))
    fs = bids / "derivatives" / "freesurfer"
    (fs / "sub-02").symlink_to(tmp_path / "unmounted" / "sub-02")
    (fs / "sub-03").symlink_to("sub-03")
    (fs / "fsaverage").symlink_to(tmp_path / "freesurfer" / "subjects" / "fsaverage")  # a template: no subject
    args = build_parser().parse_args([str(bids), str(tmp_path / "out"), "participant"])
    jobs, failures = collect_jobs(args, ["sulc"])
    assert [j.subject for j in jobs] == ["01"] and not failures
    dangling = (f"a link to {tmp_path / 'unmounted' / 'sub-02'}, which does not exist (on a disk that is not "
                "mounted, or a relative link made from another folder?)")
    assert sorted(str(w.message) for w in recwarn if issubclass(w.category, SubjectWarning)) == [
        f"subject folder {fs / 'sub-02'} is not processed: it is {dangling}",
        f"subject folder {fs / 'sub-03'} is not processed: it is a loop of symbolic links"]
    recwarn.clear()
    args = build_parser().parse_args([str(bids), str(tmp_path / "out"), "participant", "--participant-label", "02", "03"])
    jobs, failures = collect_jobs(args, ["sulc"])
    assert not jobs and [f.reason.split("; no inputs")[0] for f in failures] == [
        f"{fs / 'sub-02'} is {dangling}", f"{fs / 'sub-03'} is a loop of symbolic links"]
    assert not [w for w in recwarn if issubclass(w.category, SubjectWarning)]


def test_subject_folders_named_in_another_letter_case_are_named_and_a_lower_case_twin_is_said(tmp_path, recwarn):
    """A dataset copied through a system whose names are not case-sensitive: ``derivatives/smriprep/Sub-02``
    was left out without a word (only ``sub-*`` folders were looked at), and ``freesurfer/SUB-01`` beside
    ``sub-01`` was offered a link under ``SUB01``, a second subject made of the same brain. Now both
    are named; where the lower-case folder is there too, the line says so instead of offering a name."""
    import shutil

    from geomorph_bids.cli.parser import build_parser
    from geomorph_bids.cli.selection import SubjectWarning, collect_jobs

    bids = make_dataset(tmp_path / "bids", "freesurfer", subjects=("01",))
    make_dataset(tmp_path / "bids", "smriprep", subjects=("03",))
    fs, smriprep = bids / "derivatives" / "freesurfer", bids / "derivatives" / "smriprep"
    shutil.copytree(fs / "sub-01", fs / "SUB-01")
    (smriprep / "sub-03").rename(smriprep / "Sub-02")
    args = build_parser().parse_args([str(bids), str(tmp_path / "out"), "participant"])
    jobs, failures = collect_jobs(args, ["sulc"])
    assert [j.subject for j in jobs] == ["01"] and not failures
    assert sorted(str(w.message) for w in recwarn if issubclass(w.category, SubjectWarning)) == [
        f"FreeSurfer subject folder {fs / 'SUB-01'} is not processed: its name is not a BIDS label (letters and "
        "digits only); sub-01 is there as well (a copy from a system whose names are not case-sensitive?): remove "
        "the one that is not wanted",
        f"subject folder {smriprep / 'Sub-02'} is not processed: its name does not start with 'sub-' in lower case "
        "(names are case-sensitive); rename the folder and its files (e.g. sub-02)"]


def test_per_session_freesurfer_runs_beside_session_less_anatomy_are_named_not_left_out(tmp_path, recwarn):
    """A dataset grown by accretion: sub-01 processed by sMRIPrep (``derivatives/smriprep/sub-01/anat``,
    session-less) and, later, by FreeSurfer per session (``derivatives/freesurfer/sub-01_ses-{1,2}``).
    The sMRIPrep anatomy was registered and the FreeSurfer runs left out in silence: no option read
    them either (``--session-label 1`` reads the shared sMRIPrep anatomy first for the session). Now
    one warning names them and the folder to name alone; naming it registers each session."""
    import shutil

    from geomorph_bids.cli.parser import build_parser
    from geomorph_bids.cli.selection import SubjectWarning, collect_jobs

    bids = make_dataset(tmp_path / "bids", "smriprep", subjects=("01",))
    make_dataset(tmp_path / "fs", "freesurfer", subjects=("01",), session="1")
    fs = bids / "derivatives" / "freesurfer"
    fs.mkdir()
    shutil.copytree(tmp_path / "fs" / "derivatives" / "freesurfer" / "sub-01_ses-1", fs / "sub-01_ses-1")
    shutil.copytree(fs / "sub-01_ses-1", fs / "sub-01_ses-2")
    jobs, failures = collect_jobs(build_parser().parse_args([str(bids), str(tmp_path / "out"), "participant"]),
                                  ["sulc"])
    assert [(j.subject, j.session, j.inputs.hemis["L"].source) for j in jobs] == [("01", None, "smriprep")]
    assert not failures
    [line] = [str(w.message) for w in recwarn if issubclass(w.category, SubjectWarning)]
    assert line == (
        f"sub-01: registered once, from its session-less anatomy ({bids / 'derivatives/smriprep/sub-01/anat'}); "
        f"the per-session runs {fs / 'sub-01_ses-1'}, {fs / 'sub-01_ses-2'} are not registered: that anatomy is "
        "read first for every session too (sMRIPrep/fMRIPrep, then FreeSurfer, then HCP). To register them, name "
        f"their folder alone: --derivatives sessions={fs} (each session is then registered on its own)")
    jobs, failures = collect_jobs(build_parser().parse_args([str(bids), str(tmp_path / "out"), "participant",
                                                             "--derivatives", f"sessions={fs}"]), ["sulc"])
    assert [(j.subject, j.session, j.inputs.hemis["L"].sphere.parent.parent.name) for j in jobs] == [
        ("01", "1", "sub-01_ses-1"), ("01", "2", "sub-01_ses-2")] and not failures
    # a cross-sectional FreeSurfer sub-01 beside its sessions' runs (no longitudinal base): said too
    shutil.copytree(fs / "sub-01_ses-1", fs / "sub-01")
    recwarn.clear()
    jobs, failures = collect_jobs(build_parser().parse_args([str(bids), str(tmp_path / "out"), "participant",
                                                             "--derivatives", f"sessions={fs}"]), ["sulc"])
    assert [(j.subject, j.session) for j in jobs] == [("01", None)] and not failures
    assert [str(w.message) for w in recwarn if issubclass(w.category, SubjectWarning)] == [
        "sub-01: registered once, from its session-less anatomy; the surfaces of ses-1, ses-2 in their own folders "
        "are not registered without a session selection (--session-label 1 2 registers them, under "
        "sub-01/ses-<label>/anat)"]


def test_the_run_says_which_layout_and_folder_each_subject_is_read_from(tmp_path):
    """fix-aa: a dataset mixing layouts (sub-01 sMRIPrep, sub-02 FreeSurfer, sub-03's left hemisphere
    in sMRIPrep's folder and both in FreeSurfer's): the run said nothing of where each subject was
    read from (only each sidecar's ``InputSource``, after the run). Now one ``inputs:`` line after
    the start line groups them by layout and folder, in the order the layouts are read."""
    from geomorph_bids.cli.parser import build_parser
    from geomorph_bids.cli.selection import collect_jobs, inputs_line

    bids = make_dataset(tmp_path / "bids", "smriprep", subjects=("01", "03"))
    make_dataset(bids, "freesurfer", subjects=("02", "03"))
    smri = bids / "derivatives" / "smriprep"
    for p in (smri / "sub-03" / "anat").glob("*hemi-R*"):
        p.unlink()
    with pytest.warns(UserWarning, match="sub-03: the hemispheres are read from different inputs"):
        jobs, failures = collect_jobs(build_parser().parse_args([str(bids), str(tmp_path / "out"), "participant"]),
                                      ["sulc"])
    assert not failures
    assert inputs_line(jobs) == (f"inputs: sMRIPrep/fMRIPrep layout in {smri}: sub-01, sub-03 hemi-L; "
                                 f"FreeSurfer layout in {bids / 'derivatives' / 'freesurfer'}: sub-02, sub-03 hemi-R")
    assert inputs_line([]) == ""


def test_the_inputs_line_names_the_dhcp_folder_not_a_session_of_it(tmp_path):
    """dHCP release 2 keeps its surfaces in ``sub-X/ses-Y/anat/Native/``: the ``inputs:`` line named
    ``DIR/sub-X/ses-Y`` as the folder read (one level short); now the derivatives folder."""
    from geomorph_bids.cli.parser import build_parser
    from geomorph_bids.cli.selection import collect_jobs, inputs_line

    bids = make_dataset(tmp_path / "bids", "smriprep", subjects=("01",), session="7201")
    anat = bids / "derivatives" / "smriprep" / "sub-01" / "ses-7201" / "anat"
    dhcp = bids / "derivatives" / "dhcp" / "sub-01" / "ses-7201" / "anat" / "Native"
    dhcp.mkdir(parents=True)
    for p in anat.glob("*_sphere.surf.gii"):
        p.rename(dhcp / p.name.replace("hemi-L", "hemi-left").replace("hemi-R", "hemi-right"))
    for p in anat.glob("*_sulc.shape.gii"):
        p.rename(dhcp / p.name.replace("hemi-L", "hemi-left").replace("hemi-R", "hemi-right"))
    shutil.rmtree(bids / "derivatives" / "smriprep")
    jobs, failures = collect_jobs(build_parser().parse_args([str(bids), str(tmp_path / "out"), "participant"]),
                                  ["sulc"])
    assert not failures
    assert inputs_line(jobs) == f"inputs: sMRIPrep/fMRIPrep layout in {bids / 'derivatives' / 'dhcp'}: sub-01 ses-7201"


def test_a_warning_of_per_session_anatomy_is_said_once(tmp_path, recwarn):
    """fix-aa: sMRIPrep's anatomy per session (``sub-01/ses-1/anat``) in two folders with other bytes:
    the subject was looked for once without a session (its result then set aside) and again for
    ses-1, and the InputChoiceWarning naming both folders came twice. Now once, for ses-1."""
    import shutil

    from geomorph_bids.cli.parser import build_parser
    from geomorph_bids.cli.selection import collect_jobs
    from geomorph_bids.io.discover import InputChoiceWarning

    bids = make_dataset(tmp_path / "bids", "smriprep", subjects=("01",), session="1")
    d = bids / "derivatives"
    shutil.copytree(d / "smriprep", d / "smriprep2")
    with open(d / "smriprep2" / "sub-01" / "ses-1" / "anat" / "sub-01_ses-1_hemi-L_sphere.surf.gii", "ab") as f:
        f.write(b" ")
    jobs, failures = collect_jobs(build_parser().parse_args([str(bids), str(tmp_path / "out"), "participant"]),
                                  ["sulc"])
    assert [(j.subject, j.session) for j in jobs] == [("01", "1")] and not failures
    lines = [str(w.message) for w in recwarn if issubclass(w.category, InputChoiceWarning)]
    assert len(lines) == 1 and lines[0].startswith("sub-01 ses-1 hemi-L: registering ")


def test_files_saved_as_utf16_on_windows_are_read_as_their_text(tmp_path):
    """fix-am: a filter file made in Windows PowerShell 5 (``'{...}' > filter.json`` writes UTF-16 LE
    with a byte-order mark and CRLF) was refused (``is not UTF-8 text (byte 0xff at offset 0)``), and
    a dataset_description.json saved by Notepad as "Unicode" was left unread in silence: its
    DatasetDOI missing from the derivatives' SourceDatasets. Both are read now."""
    bids = make_dataset(tmp_path / "bids", "smriprep", subjects=("01",), session="1")
    make_dataset(tmp_path / "bids", "smriprep", subjects=("01",), session="2")
    desc = bids / "dataset_description.json"
    doc = {"Name": "caf\u00e9", "BIDSVersion": "1.9.0", "DatasetDOI": "doi:10.0/x"}
    desc.write_bytes(json.dumps(doc, ensure_ascii=False).encode("utf-16"))
    filt = tmp_path / "filter.json"
    filt.write_bytes(b"\xff\xfe" + '{"t1w": {"session": "1"}}\r\n'.encode("utf-16-le"))
    out = tmp_path / "out"
    code, _, err = run(bids, out, "participant", "--bids-filter-file", filt, "--hemi", "L", "--model", "rigid",
                       "-w", tmp_path / "w", "--nprocs", "1", "--reports", "deferred")
    assert code == 0, err
    assert (anat(out, "01", "1") / "sub-01_ses-1_hemi-L_space-fsLR_desc-geomorph_metrics.json").is_file()
    assert not (out / "sub-01" / "ses-2").exists()
    made = json.loads((out / "dataset_description.json").read_text())
    assert made["SourceDatasets"][0] == {"URL": "bids:raw:", "DOI": "doi:10.0/x"}


def test_subject_folders_whose_names_end_in_a_space_or_dot_are_named_with_the_rename(tmp_path, recwarn):
    """fix-am: a dataset unzipped from a Windows zip (Windows drops a name's trailing spaces and dots,
    so Explorer showed ``sub-01``): FreeSurfer's ``'sub-01 '`` was offered a link under ``sub-01 ``'s
    label ("its name is not sub-<label> ... a longitudinal run's folder?"), printed with its space
    invisible; sMRIPrep's ``sub-02.`` was "label '02.' is not a BIDS label"; and
    ``--participant-label 01`` said ``not found; available: none``. Now each line says what ends the
    name and how to rename it, and the label's FAILED line opens with it."""
    from geomorph_bids.cli.parser import build_parser
    from geomorph_bids.cli.selection import SubjectWarning, collect_jobs

    bids = make_dataset(tmp_path / "bids", "freesurfer", subjects=("01",))
    make_dataset(tmp_path / "bids", "smriprep", subjects=("02", "03"))
    fs, smriprep = bids / "derivatives" / "freesurfer", bids / "derivatives" / "smriprep"
    (fs / "sub-01").rename(fs / "sub-01 ")
    (smriprep / "sub-02").rename(smriprep / "sub-02.")
    args = build_parser().parse_args([str(bids), str(tmp_path / "out"), "participant"])
    jobs, failures = collect_jobs(args, ["sulc"])
    assert [j.subject for j in jobs] == ["03"] and not failures
    space = f"'{fs / 'sub-01 '}'"
    assert sorted(str(w.message) for w in recwarn if issubclass(w.category, SubjectWarning)) == [
        f"FreeSurfer subject folder {space} is not processed: its name ends in a space (which Windows does not "
        f"show: a folder unzipped from a Windows zip?); rename it (mv {space} {fs / 'sub-01'})",
        f"subject folder {smriprep / 'sub-02.'} is not processed: its name ends in a dot (which Windows does not "
        f"show: a folder unzipped from a Windows zip?); rename it (mv {smriprep / 'sub-02.'} {smriprep / 'sub-02'})"]
    args = build_parser().parse_args([str(bids), str(tmp_path / "out"), "participant", "--participant-label", "01"])
    jobs, failures = collect_jobs(args, ["sulc"])
    assert [f.reason for f in failures][0].startswith(
        f"subject folder {space} is not processed: its name ends in a space (which Windows does not show")


def test_labels_differing_only_in_case_are_refused_on_an_output_folder_that_folds_case(tmp_path, monkeypatch):
    """fix-am: FreeSurfer's ``sub-ab`` and ``sub-AB`` (two subjects on Linux) written to an output
    folder on macOS, Windows, exFAT or SMB: ``sub-ab`` and ``sub-AB`` are one folder there, and the
    second participant's outputs overwrote the first's without a word, exit 0. Now both fail on one
    line each (the other participants run); on a case-sensitive folder both are written as before.
    No such file system can be mounted here: ``names_fold_case`` is made to answer as one would, and
    is checked to answer False here and True through a case-folding lookup."""
    import os

    from geomorph_bids.cli import preflight
    from geomorph_bids.cli.selection import refuse_case_twins

    assert preflight.names_fold_case(tmp_path) is False
    real = os.path.samefile
    (tmp_path / "Out").mkdir()
    monkeypatch.setattr(os.path, "samefile", lambda a, b: True)
    monkeypatch.setattr(type(tmp_path), "exists", lambda self: True)
    assert preflight.names_fold_case(tmp_path / "Out") is True
    monkeypatch.undo()
    assert os.path.samefile is real

    bids = make_dataset(tmp_path / "bids", "freesurfer", subjects=("01", "02", "03"))
    fs = bids / "derivatives" / "freesurfer"
    (fs / "sub-01").rename(fs / "sub-ab")
    (fs / "sub-02").rename(fs / "sub-AB")
    out = tmp_path / "out"
    args = ("participant", "--hemi", "L", "--model", "rigid", "-w", tmp_path / "w", "--nprocs", "1",
            "--reports", "deferred")
    monkeypatch.setattr(preflight, "names_fold_case", lambda folder: True)
    code, _, err = run(bids, out, *args)
    assert code == 1, err
    failed = [line.strip() for line in err.splitlines() if line.strip().startswith("FAILED")]
    assert failed == [f"FAILED sub-{s} hemi-L: sub-{s} and sub-{o} differ only in letter case, and the file system "
                      f"of {out} does not tell such names apart (macOS, Windows, exFAT, SMB): their outputs would "
                      "overwrite each other; rename one participant's folder, or write to a case-sensitive output "
                      "folder" for s, o in (("AB", "ab"), ("ab", "AB"))], err
    assert (anat(out, "03") / "sub-03_hemi-L_space-fsLR_desc-geomorph_metrics.json").is_file()
    assert not (out / "sub-ab").exists() and not (out / "sub-AB").exists()
    jobs = [type("J", (), {"subject": s, "session": None})() for s in ("ab", "03")]
    assert refuse_case_twins(jobs, out) == (jobs, [])  # no twins: the file system is not even asked
    monkeypatch.setattr(preflight, "names_fold_case", lambda folder: False)
    code, _, err = run(bids, tmp_path / "out2", *args)
    assert code == 0, err
    assert (anat(tmp_path / "out2", "AB") / "sub-AB_hemi-L_space-fsLR_desc-geomorph_metrics.json").is_file()


def test_sessions_and_participants_are_taken_once_in_natural_order_whatever_was_typed(tmp_path):
    """A longitudinal study's ``--session-label 2 ses-2`` (or a filter file and a typed label naming one
    session twice) made two jobs of one session: in workflow mode the run stopped at once on
    ``error: Duplicate node name "sub_2_ses_2_wf" found.``, exit 1, nothing registered. Sessions were
    also listed as text (``ses-10`` before ``ses-2``) and in the order typed (``--session-label 10 2``,
    ``--participant-label 10 2``): the summary table, the ``inputs:`` line and the failures then
    disagreed with a whole-dataset run and the group table (``label_key``: 2 before 10)."""
    from geomorph_bids.cli.parser import build_parser
    from geomorph_bids.cli.selection import collect_jobs

    for ses in ("2", "10"):
        bids = make_dataset(tmp_path / "bids", "smriprep", subjects=("2", "10"), session=ses)

    def jobs(*extra: str) -> list[tuple[str, str | None]]:
        got, failures = collect_jobs(build_parser().parse_args([str(bids), str(tmp_path / "out"), "participant",
                                                                *extra]), ["sulc"])
        assert not failures
        return [(j.subject, j.session) for j in got]

    natural = [("2", "2"), ("2", "10"), ("10", "2"), ("10", "10")]
    assert jobs() == natural
    assert jobs("--session-label", "10", "2") == natural
    assert jobs("--participant-label", "10", "sub-2") == natural
    assert jobs("--participant-label", "sub-10", "2", "--session-label", "ses-10", "2", "10") == natural
    assert jobs("--session-label", "2", "ses-2") == [("2", "2"), ("10", "2")]


def test_a_filter_session_null_names_the_sessions_of_anatomy_in_several_session_folders(tmp_path):
    """A longitudinal study's filter ``{"t1w": {"session": null}}`` (the session-less anatomy): a subject
    whose anatomy is in two sMRIPrep session folders, or in FreeSurfer ``sub-X_ses-Y`` runs, failed with
    the session-less look's ``hemi-L: smriprep DIR/sub-02: spheres in several sessions (ses-1, ses-2), pass a
    session; looked for ...; hemi-R: ...`` (the whole search twice, some 900 characters) or ``no inputs for
    hemi-L, hemi-R; looked for ...``; only a subject with one session folder got the line naming its
    sessions. Now every such subject gets that line; a subject with session-less anatomy is registered."""
    from geomorph_bids.cli.parser import build_parser
    from geomorph_bids.cli.selection import collect_jobs

    bids = make_dataset(tmp_path / "bids", "smriprep", subjects=("01",))
    for ses in ("1", "2"):
        make_dataset(tmp_path / "bids", "smriprep", subjects=("02",), session=ses)
        make_dataset(tmp_path / "bids", "freesurfer", subjects=("03",), session=ses)
    filt = _filter(tmp_path, {"t1w": {"session": None}})
    jobs, failures = collect_jobs(build_parser().parse_args([str(bids), str(tmp_path / "out"), "participant",
                                                             "--bids-filter-file", str(filt)]), ["sulc"])
    assert [(j.subject, j.session) for j in jobs] == [("01", None)]
    assert [(f.subject, f.session, f.hemi, f.reason) for f in failures] == [
        (s, None, "L,R", f"the BIDS filter file selects the anatomy without a session (session null); sub-{s}'s is "
                         "in session folders (ses-1, ses-2): give their labels instead") for s in ("02", "03")]


@pytest.mark.parametrize("base", ["sub-01base", "base01"])
@pytest.mark.parametrize("tps", [True, False])
def test_a_longitudinal_base_named_as_a_label_of_its_own_is_not_a_subject(tmp_path, recwarn, base, tps):
    """``recon-all -base sub-01base -tp sub-01_ses-1 -tp sub-01_ses-2`` (or ``-base base01``): the base's name
    is a BIDS label, so it was registered as participant ``01base`` beside sub-01's two sessions (exit 0,
    nothing said): one brain three times in the group table and in a population template. Now the base is
    named on the longitudinal base's line (by its ``scripts/base-tps``, or by its ``X.long.<base>`` runs) and
    makes no subject; a base named as its subject (``sub-06``) stays as the round-eighteen test has it."""
    import shutil

    from geomorph_bids.cli.parser import build_parser
    from geomorph_bids.cli.selection import SubjectWarning, collect_jobs

    bids = make_dataset(tmp_path / "bids", "freesurfer", subjects=("01",), session="1")
    make_dataset(tmp_path / "bids", "freesurfer", subjects=("01",), session="2")
    fs = bids / "derivatives" / "freesurfer"
    shutil.copytree(fs / "sub-01_ses-1", fs / base)
    if tps:
        (fs / base / "scripts").mkdir(exist_ok=True)
        (fs / base / "scripts" / "base-tps").write_text("sub-01_ses-1\nsub-01_ses-2\n")
    for ses in ("1", "2"):
        shutil.copytree(fs / f"sub-01_ses-{ses}", fs / f"sub-01_ses-{ses}.long.{base}")
    jobs, failures = collect_jobs(build_parser().parse_args([str(bids), str(tmp_path / "out"), "participant"]),
                                  ["sulc"])
    assert [(j.subject, j.session) for j in jobs] == [("01", "1"), ("01", "2")] and not failures
    lines = [str(w.message) for w in recwarn if issubclass(w.category, SubjectWarning)]
    assert (f"FreeSurfer subject folder {fs / base} is not processed: it is the base of a longitudinal run "
            "(recon-all -base: the within-subject template of sub-01_ses-1, sub-01_ses-2), not a session of its own"
            in lines), lines
    assert len(lines) == 3, lines  # the base and its two .long. runs, each once


def test_a_session_whose_only_run_is_longitudinal_points_at_that_run_in_its_failed_line(tmp_path):
    """A FreeSurfer tree holding only the longitudinal runs (``sub-01_ses-X.long.sub-01_base``) and their base:
    each session failed ``no inputs for hemi-L, hemi-R; looked for ...``, and with ``--participant-label`` (no
    longitudinal warnings then) nothing pointed at the ``.long.`` folders. The FAILED line now names the run and
    how to register it."""
    import shutil

    from geomorph_bids.cli.parser import build_parser
    from geomorph_bids.cli.selection import collect_jobs

    bids = make_dataset(tmp_path / "bids", "freesurfer", subjects=("01",), session="1")
    make_dataset(tmp_path / "bids", "freesurfer", subjects=("01",), session="2")
    fs = bids / "derivatives" / "freesurfer"
    shutil.copytree(fs / "sub-01_ses-1", fs / "sub-01_base")
    (fs / "sub-01_base" / "scripts").mkdir(exist_ok=True)
    (fs / "sub-01_base" / "scripts" / "base-tps").write_text("sub-01_ses-1\nsub-01_ses-2\n")
    for ses in ("1", "2"):
        (fs / f"sub-01_ses-{ses}").rename(fs / f"sub-01_ses-{ses}.long.sub-01_base")
        raw = bids / "sub-01" / f"ses-{ses}" / "anat"  # the raw dataset's sessions, whose anatomy has no run
        raw.mkdir(parents=True, exist_ok=True)
        (raw / f"sub-01_ses-{ses}_T1w.nii.gz").write_bytes(b"")
    jobs, failures = collect_jobs(build_parser().parse_args([str(bids), str(tmp_path / "out"), "participant",
                                                             "--participant-label", "01"]), ["sulc"])
    assert not jobs and [(f.subject, f.session, f.hemi) for f in failures] == [("01", "1", "L,R"), ("01", "2", "L,R")]
    for f in failures:
        run = fs / f"sub-01_ses-{f.session}.long.sub-01_base"
        assert f.reason.startswith("no inputs for hemi-L, hemi-R; looked for") and f.reason.endswith(
            f"; FreeSurfer's longitudinal run of it is there, {run}, but not the cross-sectional run "
            f"sub-01_ses-{f.session} it is read from: to register the longitudinal surfaces, mkdir -p LONGDIR && ln "
            f"-s {run} LONGDIR/sub-01_ses-{f.session}, then --fs-subjects-dir LONGDIR"), f.reason

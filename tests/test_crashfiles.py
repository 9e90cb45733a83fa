"""crashfiles.py: Nipype crash files mapped back to subject, session and hemisphere."""

from __future__ import annotations

from geomorph_bids.crashfiles import hemi_wf_name, innermost_error, read_crash_file, subject_wf_name


def test_reason_is_the_innermost_error():
    tb = ["Traceback...\n", "nipype.pipeline.engine.nodes.NodeExecutionError: Exception raised\n",
          "\tgeomorph_bids.errors.InputError: sub-02 hemi-L /x/lh.sulc: is truncated\n"]
    assert innermost_error(tb) == "InputError: sub-02 hemi-L /x/lh.sulc: is truncated"
    assert innermost_error("no exception line here") == "no exception line here"


def test_crash_file_names_its_workflows(tmp_path):
    path = tmp_path / "crash-1.txt"
    wf = f"geomorph_wf.{subject_wf_name('01', 'pre')}.{hemi_wf_name('R')}.register"
    path.write_text(f"Node: {wf}\nTraceback:\nValueError: bad\n")
    crash = read_crash_file(path)
    assert crash.nodes == ("geomorph_wf", "sub_01_ses_pre_wf", "hemi_R_wf", "register")
    assert crash.node == "register" and crash.hemi == "R" and crash.error == "ValueError: bad"
    assert read_crash_file(tmp_path / "absent.txt") is None


def test_labels_starting_with_unfinished_never_put_nipypes_marker_in_a_path():
    """Nipype renames a step's ``<hash>_unfinished.json`` with ``str.replace`` over the whole path:
    a subject ``unfinished2`` (``sub_unfinished2_wf``) lost every step's result (round twelve).
    Such names are spelt with dashes; every other name is as before (work folders stay valid)."""
    from geomorph_bids.crashfiles import NIPYPE_UNFINISHED, subject_of_wf

    assert subject_wf_name("01", None) == "sub_01_wf"
    assert subject_wf_name("unfinished2", None) == "sub-unfinished2_wf"
    assert subject_wf_name("01", "unfinishedscan") == "sub-01_ses-unfinishedscan_wf"
    assert subject_wf_name("Unfinished", "x") == "sub_Unfinished_ses_x_wf"  # Nipype's replace is case-sensitive
    for subject, session in (("01", None), ("01", "pre"), ("unfinished2", None), ("unfinished", "unfinished"),
                             ("01", "unfinishedscan")):
        name = subject_wf_name(subject, session)
        assert NIPYPE_UNFINISHED not in name
        assert subject_of_wf(name) == (subject, session)
    assert subject_of_wf("sub-01_wf") is None  # not a name subject_wf_name gives
    assert subject_of_wf("hemi_L_wf") is None

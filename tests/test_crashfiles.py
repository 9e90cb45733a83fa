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

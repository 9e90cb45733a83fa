"""The one line a failed hemisphere gets."""

from __future__ import annotations

from geomorph_bids.cli.failures import Failure


def test_a_failure_whose_reason_spans_lines_is_printed_on_one():
    """Round fifteen: a work folder ~4000 bytes deep made Nipype fail with a two-line error (``File
    name too long at ...`` then a tab-indented ``Unable to open the file in write mode: ...``), and the
    FAILED line spilled onto a second line of the terminal."""
    f = Failure("01", "pre", "L", "File name too long at /w/x.json\n\t Unable to open the file in write mode: /w/x.json"
                                  " (node load_features; /o/logs/crash-1.txt)")
    assert f.line() == ("sub-01 ses-pre hemi-L: File name too long at /w/x.json Unable to open the file in write "
                        "mode: /w/x.json (node load_features; /o/logs/crash-1.txt)")
    assert Failure("02", None, "L,R", "plain").line() == "sub-02 hemi-L,R: plain"

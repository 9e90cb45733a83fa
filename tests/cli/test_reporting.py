"""The participant run's summary table (geomorph_bids.cli.reporting)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from types import SimpleNamespace

from geomorph_bids.cli.reporting import print_summary


def _job(subject: str, session: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(subject=subject, session=session,
                           inputs=SimpleNamespace(hemis={"L": SimpleNamespace(session=session)}))


def test_long_subject_and_session_labels_keep_the_columns_apart(capsys) -> None:
    """A FreeSurfer SUBJECTS_DIR's 'fsaverage' asked for by label printed 'sub-fsaverage-' (the
    12-character subject column ran into the session's); every column now keeps a space."""
    m = {"cc_sulc_before": 1.0, "cc_sulc_after": 1.0, "n_folded": 0, "seconds_total": 2.9}
    print_summary([(_job("fsaverage"), "L", m, False, False), (_job("NDARINV00X1", "baseline1year"), "L", m, False, False),
                   (_job("01"), "L", m, False, False)], [], Path("OUT"), "geomorph-bids")
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["sub-fsaverage", "-", "L", "1.000", "1.000", "0", "2.90", "ok"]
    assert lines[2].split() == ["sub-NDARINV00X1", "baseline1year", "L", "1.000", "1.000", "0", "2.90", "ok"]
    assert lines[3].split()[:3] == ["sub-01", "-", "L"]
    assert len({len(line) for line in lines[:4]}) == 1  # one width: the columns line up


def test_a_hemisphere_too_smooth_to_register_reliably_gets_a_note_line_and_stays_ok(capsys) -> None:
    """A sulc smoothed 320 times (the example's sub-01, 10k) registered at CC 0.545, `ok`, while 5.4 degrees
    (median) off, and nothing on the terminal said so; its coarse fit (identity_cc_own) 0.62 now gives a note
    line naming subject, session, hemisphere, the value and the threshold; the table still says ok."""
    smooth = {"cc_sulc_before": 0.3, "cc_sulc_after": 0.545, "n_folded": 0, "seconds_total": 2.0,
              "identity_cc_own": 0.62, "identity_cc_mirrored": 0.48, "registration_features": ["sulc"]}
    adult = dict(smooth, cc_sulc_after=0.966, identity_cc_own=0.93)
    print_summary([(_job("infant", "1"), "L", smooth, False, False), (_job("adult"), "L", adult, False, False)],
                  [], Path("OUT"), "geomorph-bids")
    out, err = capsys.readouterr()
    assert [line.split()[-1] for line in out.splitlines()[1:3]] == ["ok", "ok"]
    (line,) = err.splitlines()
    assert line.startswith("geomorph-bids: note: sub-infant_ses-1 hemi-L: few folds: sulc's coarse pattern fits "
                           "the template at 0.62 (below 0.8; ")
    assert "--build-template" in line


def test_geomorph_register_prints_the_few_folds_note_and_exits_0() -> None:
    """geomorph-register's one hemisphere: the same note on stderr, and exit 0 (a note is no gate)."""
    from geomorph_bids.cli.register import _flagged_exit
    from geomorph_bids.quality import assess

    row = {"hemi": "L", "identity_cc_own": 0.62, "identity_cc_mirrored": 0.48, "cc_sulc_after": 0.545,
           "registration_features": ["sulc"]}
    row["quality"] = assess(row, ["sulc"]).to_dict()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert _flagged_exit([row]) == 0
    assert err.getvalue().startswith("geomorph-register: note: hemi-L: few folds: sulc's coarse pattern fits the "
                                     "template at 0.62 (below 0.8; ")

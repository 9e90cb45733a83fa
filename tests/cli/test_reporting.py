"""The participant run's summary table (geomorph_bids.cli.reporting)."""

from __future__ import annotations

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

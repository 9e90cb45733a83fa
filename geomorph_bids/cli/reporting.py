"""The end of a participant run on the terminal and in the output folder: the summary table
(with failures, one line each) and the participant reports."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from ..derivatives import report_name
from .failures import Failure

__all__ = ["print_summary", "build_reports", "report_is_current"]


def print_summary(rows: Sequence[tuple], failures: list[Failure], output_dir: Path, prog: str,
                  flagged: Sequence[Failure] = ()) -> None:
    """The table of CC before/after, folds and seconds per hemisphere (``rows``: (job, hemi,
    registration metrics, reused, flagged)), then every failure and every hemisphere flagged by
    the quality gates on its own line (stderr: ``FAILED sub-X hemi-L: ...``, ``FLAGGED ...``).
    A hemisphere whose results were reused from an earlier run says so: its seconds are that run's."""
    if rows:
        print(f"{'subject':<12}{'session':<10}{'hemi':<5}{'CC before':>10}{'CC after':>10}{'folded':>8}"
              f"{'seconds':>9}{'quality':>9}")
        for job, hemi, m, reused, bad in rows:
            cc_b = m.get("cc_sulc_before")
            cc_a = m.get("cc_sulc_after")
            fmt = lambda v: f"{v:>10.3f}" if isinstance(v, (int, float)) else f"{'n/a':>10}"  # noqa: E731
            print(f"{'sub-' + job.subject:<12}{(job.session or '-'):<10}{hemi:<5}{fmt(cc_b)}{fmt(cc_a)}"
                  f"{m.get('n_folded', 0):>8}{m.get('seconds_total', 0.0):>9.2f}{'FLAGGED' if bad else 'ok':>9}"
                  + ("  reused" if reused else ""))
        n_reused = sum(1 for row in rows if row[3])
        if n_reused:
            print(f"reused: {n_reused} hemisphere(s) unchanged since an earlier run with the same inputs and "
                  "settings (outputs and work folder); their seconds are that run's")
        print(f"outputs in {output_dir}")
    if failures:
        print(f"{prog}: {len(failures)} failure(s); outputs of the others are kept:", file=sys.stderr)
        for f in failures:
            print(f"  FAILED {f.line()}", file=sys.stderr)
    if flagged:
        print(f"{prog}: {len(flagged)} hemisphere(s) written but flagged by the quality gates "
              "(docs/reliability.md; thresholds: --min-cc, --max-distortion, --max-folds, --identity-margin):",
              file=sys.stderr)
        for f in flagged:
            print(f"  FLAGGED {f.line()}", file=sys.stderr)


def report_is_current(output_dir: Path, subject: str) -> bool:
    """``sub-X.html`` exists and is newer than every output of the subject (a rerun that
    changed nothing leaves the outputs, hence the report, untouched)."""
    html = output_dir / report_name(subject)
    if not html.is_file():
        return False
    stamps = [p.stat().st_mtime_ns for p in (output_dir / f"sub-{subject}").rglob("*")
              if p.is_file() and "figures" not in p.relative_to(output_dir).parts]
    return bool(stamps) and html.stat().st_mtime_ns >= max(stamps)


def build_reports(output_dir: Path, subjects: list[str], prog: str, reuse: set[str] | None = None) -> list[Path]:
    """``sub-X.html`` for every subject with outputs (a subject in ``reuse``: unless its report
    is current); a report that cannot be drawn is a warning (the registrations themselves are
    done), never a failure."""
    from ..reports import build_participant_report

    made = []
    for subject in subjects:
        if not (output_dir / f"sub-{subject}").is_dir():
            continue
        if subject in (reuse or ()) and report_is_current(output_dir, subject):
            made.append(output_dir / report_name(subject))
            continue
        try:
            made.append(build_participant_report(output_dir, subject))
        except Exception as exc:  # noqa: BLE001 - a figure must never lose a finished subject
            print(f"{prog}: warning: sub-{subject}: report not written: {' '.join(str(exc).split())}",
                  file=sys.stderr)
    if made:
        print(f"report(s): {', '.join(str(p) for p in made)}")
    return made

"""The end of a participant run on the terminal and in the output folder: the summary table
(with failures, one line each) and the participant reports."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from .failures import Failure
from .messages import say

__all__ = ["print_summary", "few_folds_lines", "print_same_inputs", "build_reports", "print_reports"]


def few_folds_lines(rows: Sequence[tuple]) -> list[str]:
    """``sub-X[_ses-Y] hemi-L: few folds: ...`` per hemisphere whose sulc is too smooth to register reliably
    (:func:`~geomorph_bids.quality.few_folds`; ``rows`` as :func:`print_summary`'s): advisory, the verdict and
    the exit code stay as the gates decide."""
    from ..derivatives import entities
    from ..quality import few_folds

    out = []
    for job, hemi, registration, *_ in rows:
        note = few_folds(registration, list(registration.get("registration_features") or ["sulc"]))
        if note:
            out.append(f"{entities(job.subject, job.inputs.hemis[hemi].session or job.session)} hemi-{hemi}: {note}")
    return out


def print_summary(rows: Sequence[tuple], failures: list[Failure], output_dir: Path, prog: str,
                  flagged: Sequence[Failure] = ()) -> None:
    """The table of CC before/after, folds and seconds per hemisphere (``rows``: (job, hemi,
    registration metrics, reused, flagged)), then every failure and every hemisphere flagged by
    the quality gates on its own line (stderr: ``FAILED sub-X hemi-L: ...``, ``FLAGGED ...``), after a
    ``note:`` line per hemisphere too smooth to register reliably (:func:`few_folds_lines`).
    A hemisphere whose results were reused from an earlier run says so: its seconds are that run's."""
    if rows:
        sessions = [job.inputs.hemis[hemi].session or job.session for job, hemi, *_ in rows]  # found, asked or not
        # columns as wide as the longest name and a space: 'sub-fsaverage' ran into its session's column
        w_sub = max(12, *(len(f"sub-{row[0].subject}") + 1 for row in rows))
        w_ses = max(10, *(len(s or "-") + 1 for s in sessions))
        print(f"{'subject':<{w_sub}}{'session':<{w_ses}}{'hemi':<5}{'CC before':>10}{'CC after':>10}{'folded':>8}"
              f"{'seconds':>9}{'quality':>9}")
        for (job, hemi, m, reused, bad), session in zip(rows, sessions):
            cc_b = m.get("cc_sulc_before")
            cc_a = m.get("cc_sulc_after")
            fmt = lambda v: f"{v:>10.3f}" if isinstance(v, (int, float)) else f"{'n/a':>10}"  # noqa: E731
            print(f"{'sub-' + job.subject:<{w_sub}}{(session or '-'):<{w_ses}}{hemi:<5}{fmt(cc_b)}{fmt(cc_a)}"
                  f"{m.get('n_folded', 0):>8}{m.get('seconds_total', 0.0):>9.2f}{'FLAGGED' if bad else 'ok':>9}"
                  + ("  reused" if reused else ""))
        n_reused = sum(1 for row in rows if row[3])
        if n_reused:
            print(f"reused: {n_reused} hemisphere(s) unchanged since an earlier run with the same inputs and "
                  "settings (outputs and work folder); their seconds are that run's")
        print(f"outputs in {output_dir}")
    for line in few_folds_lines(rows):
        say(f"{prog}: note: {line}", file=sys.stderr)
    if failures:
        print(f"{prog}: {len(failures)} failure(s)" + ("; outputs of the others are kept:" if rows else
                                                       ": no hemisphere registered:"), file=sys.stderr)
        for f in failures:
            say(f"  FAILED {f.line()}", file=sys.stderr)
    if flagged:
        print(f"{prog}: {len(flagged)} hemisphere(s) written but flagged by the quality gates "
              "(the source repository's docs/troubleshooting.md; thresholds: --min-cc, --min-cc-other, "
              "--max-distortion, --max-folds, "
              "--identity-margin):",
              file=sys.stderr)
        for f in flagged:
            say(f"  FLAGGED {f.line()}", file=sys.stderr)


def print_same_inputs(rows: Sequence[tuple], output_dir: Path, prog: str) -> None:
    """One warning line when the run registered the same input files under two names (a subject
    folder linked to or copied from another: :func:`~geomorph_bids.quality.same_inputs`), naming them;
    ``rows`` as :func:`print_summary`'s. Nothing is refused: both are written as registered."""
    from ..derivatives import entities
    from ..quality import same_inputs, same_inputs_text

    sets = same_inputs((entities(job.subject, job.inputs.hemis[hemi].session or job.session), hemi, registration)
                       for job, hemi, registration, *_ in rows)
    if sets:
        say(f"{prog}: warning: {same_inputs_text(sets)} The group level would count each as a participant of its "
            f"own: remove the copy from the inputs and its outputs from {output_dir}", file=sys.stderr)


def build_reports(output_dir: Path, subjects: list[str], prog: str, reuse: set[str] | None = None,
                  workers: int = 1, kept: list[Path] | None = None, failed: list[str] | None = None) -> list[Path]:
    """``sub-X.html`` for every subject with outputs (a subject in ``reuse``: unless its report
    is current), ``workers`` at a time in separate processes; returns the reports (``kept``, when
    a list, gets those that were current and kept as they were). A report that cannot be drawn,
    or is written without some figures, is a warning (the registrations themselves are done),
    never a failure; unless ``failed`` is a list (``--reports-only``, whose outputs the reports
    are): a report not written is then a ``FAILED`` line and its subject is appended there."""
    from ..batch.tasks import build_report, incomplete_report_line

    todo = [s for s in subjects if (output_dir / f"sub-{s}").is_dir()]
    if workers > 1 and len(todo) > 1:
        from ..batch.pool import worker_pool

        with worker_pool(min(workers, len(todo)), reports=True, registrations=False) as pool:
            outcomes = list(pool.map(build_report, [output_dir] * len(todo), todo,
                                     [s in (reuse or ()) for s in todo]))
    else:
        outcomes = [build_report(output_dir, s, s in (reuse or ())) for s in todo]
    made = []
    for o in outcomes:
        if o.path is not None:
            made.append(o.path)
            if o.kept and kept is not None:
                kept.append(o.path)
            if line := incomplete_report_line(o):
                say(f"{prog}: warning: {line}", file=sys.stderr)
        elif failed is not None:
            failed.append(o.subject)
            say(f"{prog}: FAILED sub-{o.subject}: report not written: {o.error}", file=sys.stderr)
        else:
            say(f"{prog}: warning: sub-{o.subject}: report not written: {o.error}", file=sys.stderr)
    return made


def print_reports(made: list[Path], kept: int = 0) -> None:
    """One line naming the reports (a few), or counting them (a cohort); ``kept`` of them were
    current and not drawn again (said on a line of its own). The paths as they are named (an ESC escaped,
    two spaces kept: ``say``'s ``keep_spaces``)."""
    if len(made) > 4:
        say(f"report(s): {len(made)} in {made[0].parent} ({made[0].name} ... {made[-1].name})", keep_spaces=True)
    elif made:
        say(f"report(s): {', '.join(str(p) for p in made)}", keep_spaces=True)
    if kept:
        print(f"{kept} of them current (drawn after their outputs by this version) and kept; delete a "
              "report to have it drawn again")

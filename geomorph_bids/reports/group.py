"""The group report: the table of every subject/session/hemisphere/template (the TSV the CLI's
group level writes, ``group_desc-geomorph_metrics.tsv``) and ``group.html`` with the
distributions and the outliers (robust z-score: 0.6745 (x - median) / MAD beyond 3.5 on the side
that is worse, Iglewicz & Hoaglin, within each template's rows: registrations to different
templates are not compared), linked to the subjects' reports."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

import numpy as np

from ..crashfiles import crash_nodes, hemi_of_nodes, read_crash_file, subject_of_wf
from ..derivatives import CITATION, CRASH_FILES, GROUP_FIGURE, GROUP_HTML, GROUP_TSV, label_key
from ..io.atomic import atomic_write_text, shared_folder
from ..io.template_sources import describe_provenance, low_resolution_note, low_resolution_used
from .group_table import STALE, group_table_rows
from .html import DIRECTIONS, built_at, esc, fmt, page, software_versions, table

__all__ = ["study_name", "build_group_report", "failed_without_row", "robust_z", "outliers", "OUTLIER_METRICS", "Z_THRESHOLD",
           "TABLE_MAX_ROWS", "LISTED_MAX"]

Z_THRESHOLD = 3.5
#: above this many rows (hemispheres) the page's table lists only the outlying and flagged ones
#: (the TSV has them all): a row is ~290 bytes of HTML, 5.8 MB at 10,000 subjects, 29 MB at 50,000
TABLE_MAX_ROWS = 2000
#: at most this many unreadable metrics files, and failed, flagged and stale hemispheres, are listed one by
#: one at the top of the page; the rest are counted there (the table marks every flagged and stale row, the TSV
#: has them all, the group level's FAILED lines name every unreadable file)
LISTED_MAX = 100
#: at most this many session labels are named in the page's summary (then how many in all)
SESSIONS_LISTED = 20
#: metrics screened for outliers ({f}: each registration feature), with their labels
OUTLIER_METRICS: tuple[tuple[str, str], ...] = (
    ("cc_{f}_after", "CC after ({f})"), ("cc_{f}_rigid", "CC rigid ({f})"),
    ("areal_mean_abs", "areal mean |log2|"), ("areal_p95_abs", "areal p95 |log2|"),
    ("R_mean", "shape mean (log2)"), ("n_folded", "folded triangles"), ("seconds_total", "run time (s)"))
#: the screened metrics for which a low value is the concern (correlations: ``cc_...``); for the
#: others (distortion, folds, run time) a high one is. A hemisphere better than its cohort is no outlier.
LOWER_IS_WORSE_PREFIX = "cc_"
#: what the page says an outlier is
OUTLIER_RULE = (f"robust z beyond {Z_THRESHOLD} on the worse side: CC below, distortion, folds and run time above "
                "the others'")
#: columns of the HTML table ({f}: each registration feature, named in its columns' headers)
_TABLE = (("template", "template"), ("cc_{f}_before", "CC before ({f})"), ("cc_{f}_rigid", "CC rigid ({f})"),
          ("cc_{f}_after", "CC after ({f})"),
          ("areal_mean_abs", "areal mean |log2|"), ("areal_p95_abs", "areal p95 |log2|"),
          ("R_mean", "shape mean (log2)"),
          ("n_folded", "folded"), ("seconds_total", "seconds"), ("method", "method"), ("quality", "quality"))


def robust_z(values: Sequence[float | None]) -> np.ndarray:
    """Modified z-scores 0.6745 (x - median) / MAD (NaN for missing values). With MAD = 0,
    the mean absolute deviation scaled by 1.2533 is used instead; all equal -> 0."""
    x = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    ok = np.isfinite(x)
    z = np.full(x.shape, np.nan)
    if ok.sum() < 3:
        z[ok] = 0.0
        return z
    med = np.median(x[ok])
    mad = np.median(np.abs(x[ok] - med))
    if mad > 0:
        z[ok] = 0.6745 * (x[ok] - med) / mad
    else:
        mean_ad = np.mean(np.abs(x[ok] - med))
        z[ok] = (x[ok] - med) / (1.253314 * mean_ad) if mean_ad > 0 else 0.0
    return z


def _features(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    found = []
    for r in rows:
        for k in r:
            if k.startswith("cc_") and k.endswith("_after"):
                found.append(k[3:-6])
    return list(dict.fromkeys(found)) or ["sulc"]


def _expand(spec: Sequence[tuple[str, str]], features: Sequence[str]) -> list[tuple[str, str]]:
    out = []
    for key, label in spec:
        if "{f}" in key:
            out += [(key.format(f=f), label.format(f=f)) for f in features]
        else:
            out.append((key, label))
    return out


def by_template(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[int]]:
    """Row indices grouped by template (``template``: the space the row was registered to), in
    the order the templates first appear."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(str(r.get("template")), []).append(i)
    return groups


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def outliers(rows: Sequence[Mapping[str, Any]], metrics: Sequence[tuple[str, str]] | None = None,
             threshold: float = Z_THRESHOLD) -> list[tuple[int, str, float, float]]:
    """[(row index, metric key, value, z)] for every robust z beyond ``threshold`` on the worse
    side (below -threshold for correlations, :data:`LOWER_IS_WORSE_PREFIX`; above it for the
    others): a hemisphere that registered better or faster than its cohort is no outlier. The
    z-scores are taken within each template's rows (:func:`by_template`): registrations to a
    population template correlate far better with it than registrations to fsLR do with fsLR."""
    metrics = metrics if metrics is not None else _expand(OUTLIER_METRICS, _features(rows))
    found = []
    for indices in by_template(rows).values():
        for key, _ in metrics:
            vals = [_number(rows[i].get(key)) for i in indices]
            if all(v is None for v in vals):
                continue
            worse = -1.0 if key.startswith(LOWER_IS_WORSE_PREFIX) else 1.0
            for i, v, zi in zip(indices, vals, robust_z(vals)):
                if np.isfinite(zi) and worse * zi > threshold:
                    found.append((i, key, float(v), float(zi)))
    return sorted(found, key=lambda t: (t[0], t[1]))


def failed_without_row(output_dir: str | Path, rows: Sequence[Mapping[str, Any]],
                       subjects: Collection[str] | None = None) -> list[str]:
    """One line per hemisphere that a participant run failed (a crash file in
    ``logs/crash-*/crash-*.txt``: both modes write them) and that has no row, so no outputs
    (``sub-04 hemi-R: InputError: ... (logs/crash-.../crash-...txt)``: the newest crash file's
    error). A hemisphere with a row (a later run succeeded, or an earlier run's outputs were kept:
    ``stale``) is not listed, nor a crash of no hemisphere's step; ``subjects``: of these subjects only
    (labels without ``sub-``; None: all). Sorted by subject, session (as the table: ``sub-2`` before
    ``sub-10``), hemisphere."""
    output_dir = Path(output_dir)
    have = {(str(r.get("subject")), None if r.get("session") in (None, "", "n/a") else str(r.get("session")),
             str(r.get("hemi"))) for r in rows}
    newest: dict[tuple[str, str | None, str], tuple[int, Path]] = {}
    for path in output_dir.glob(CRASH_FILES):
        nodes = crash_nodes(path)  # its first line only
        who = next((found for found in map(subject_of_wf, nodes) if found), None)
        hemi = hemi_of_nodes(nodes)
        if (who is None or hemi is None or (who[0], who[1], hemi) in have
                or (subjects is not None and who[0] not in subjects)):
            continue
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            continue
        key = (who[0], who[1], hemi)
        if key not in newest or (stamp, path) > newest[key]:
            newest[key] = (stamp, path)
    lines = []
    for (subject, session, hemi), (_, path) in sorted(newest.items(), key=lambda kv: (
            label_key(kv[0][0]), label_key(kv[0][1]), kv[0][2])):
        crash = read_crash_file(path)
        error = " ".join(crash.error.split()) if crash else "its crash file cannot be read"
        lines.append(f"sub-{subject}" + (f" ses-{session}" if session else "") + f" hemi-{hemi}: {error} "
                     f"({path.relative_to(output_dir).as_posix()})")
    return lines


def _errors_link(output_dir: Path, line: str) -> str:
    """A line of :func:`failed_without_row` as HTML, its hemisphere linked to the Errors and
    warnings of the subject's report (which lists the crash) when that report exists."""
    who, sep, rest = line.partition(": ")
    report = output_dir / f"{who.split(' ')[0]}.html"
    if not sep or not report.is_file():
        return esc(line)
    return f'<a href="{esc(report.name)}#errors">{esc(who)}</a>: {esc(rest)}'


def _some(labels: Sequence[str], most: int = SESSIONS_LISTED) -> str:
    """``1, 2, 10`` (the first ``most`` of a long list, and how many in all: sessions labelled by
    date are as many as the scans)."""
    return ", ".join(labels[:most]) + (f", ... ({len(labels)} in all)" if len(labels) > most else "")


def _report_link(output_dir: Path, row: Mapping[str, Any]) -> str | None:
    from .participant import hemisphere_anchor

    sub = f"sub-{row.get('subject')}"
    ses = row.get("session")
    anchor = hemisphere_anchor(sub + (f"_ses-{ses}" if ses else ""), str(row.get("hemi")), str(row.get("template")))
    for name in ([f"{sub}_ses-{ses}.html"] if ses else []) + [f"{sub}.html"]:
        if (output_dir / name).is_file():
            return f"{name}#{anchor}"
    return None


def _label(row: Mapping[str, Any], with_template: bool = False) -> str:
    """``sub-X[ ses-Y] H`` (``with_template``: then `` T``, where several templates share a plot)."""
    ses = row.get("session")
    return (f"sub-{row.get('subject')}" + (f" ses-{ses}" if ses else "") + f" {row.get('hemi')}"
            + (f" {row.get('template')}" if with_template else ""))


def _cell(row: Mapping[str, Any], key: str, outlier: bool) -> str:
    """A cell of the page's table, unescaped; an outlier's quality also says so in words (its pale
    red row is not told from the others by a reader who cannot tell the colours apart)."""
    text = fmt(row.get(key))
    if key == "quality" and outlier:
        return "outlier" if row.get(key) is None else f"{text}, outlier"
    return text


def distributions_alt(per_metric: Mapping[str, Sequence[tuple[str, float | None, bool]]]) -> str:
    """The text alternative of the distributions figure (``per_metric``: as
    :func:`~geomorph_bids.reports.figures.group_figure`'s columns): what it plots, and per metric
    the hemispheres it draws, their median and range and the outliers, named."""
    parts = []
    for name, points in per_metric.items():
        vals = [v for _, v, _ in points if v is not None and np.isfinite(v)]
        if not vals:
            parts.append(f"{name}: no values")
            continue
        out = [lab for lab, v, o in points if o and v is not None and np.isfinite(v)]
        counts = all(float(v).is_integer() for v in vals)  # folded triangles: whole numbers, said as such

        def num(x: float) -> str:
            return fmt(int(round(x))) if counts and float(x).is_integer() else fmt(float(x))

        parts.append(f"{name}: {len(vals)} hemisphere(s), median {num(float(np.median(vals)))}, "
                     f"range {num(min(vals))} to {num(max(vals))}, "
                     + (f"outliers {', '.join(out[:12])}" + (f" and {len(out) - 12} more" if len(out) > 12 else "")
                        if out else "no outliers"))
    return ("Strip plots of each metric over the hemispheres, one point per hemisphere, boxes at the quartiles, "
            "outliers as red diamonds. " + "; ".join(parts) + ".")


def study_name(output_dir: str | Path) -> str | None:
    """The ``Name`` of the dataset the outputs were made from (``dataset_description.json`` of the
    folder its ``DatasetLinks`` ``raw`` names, as the participant level writes it), one line of at
    most 120 characters; None when a file is missing, unreadable or names nothing (the dataset moved,
    outputs of another tool): the page then names no study."""
    from ..derivatives import DATASET_DESCRIPTION
    from ..errors import InputError
    from ..io.limits import read_json_bounded
    from .outputs import raw_dataset

    raw = raw_dataset(output_dir)
    try:
        name = read_json_bounded(raw / DATASET_DESCRIPTION, timeout_s=5).get("Name") if raw is not None else None
    except (InputError, OSError, AttributeError):
        return None
    name = " ".join(str(name).split()) if isinstance(name, str) else ""
    return (name[:117] + "..." if len(name) > 120 else name) or None


def build_group_report(output_dir: str | Path, rows: Sequence[Mapping[str, Any]] | None = None,
                       tsv: Path | None = None, failed: Sequence[str] = (), absent: str = "",
                       crashed: Sequence[str] | None = None) -> Path:
    """Write ``OUTPUT_DIR/group.html`` (and refresh ``OUTPUT_DIR/group_desc-geomorph_metrics.tsv``).

    The page shows the distributions of the quality metrics (one strip plot per metric), the
    outliers (robust z-score within each template's rows, beyond 3.5 on the worse side) and the full table (with
    each row's template and method), each row linked to
    its subject's report when that exists. ``rows`` (with ``tsv``, the table they were written
    to): the group table's rows as read back from it, when the caller has just written it (the
    group level): the metrics files are then not listed and read again; ``failed``: one line
    per metrics file that could not be read (the first :data:`LISTED_MAX` listed); ``absent``: the
    line naming the participants asked for that have no outputs at all, or ''; ``crashed``: the hemispheres a
    participant run failed that have no row (:func:`failed_without_row`; None: found here). Those,
    and the rows flagged by the quality gates (with their reasons: gate, value, threshold), are
    listed at the top of the page. Returns the HTML path;
    ValueError when the folder holds no participant outputs and no group table.
    """
    from .figures import group_figure

    t0 = time.perf_counter()
    output_dir = Path(output_dir).absolute()
    if rows is None:
        rows, tsv = group_table_rows(output_dir)
    rows = list(rows)
    if not rows:
        raise ValueError(f"no participant outputs (*_desc-geomorph_metrics.json) nor {GROUP_TSV} in {output_dir}")
    features = _features(rows)
    screened = _expand(OUTLIER_METRICS, features)
    flagged = outliers(rows, screened)
    flagged_rows = {i for i, *_ in flagged}
    flagged_keys = {(i, k) for i, k, *_ in flagged}
    labels = dict(screened)
    templates = by_template(rows)
    several = len(templates) > 1
    per_metric = {label: [(_label(r, several), r.get(key) if isinstance(r.get(key), (int, float)) else None,
                           (i, key) in flagged_keys) for i, r in enumerate(rows)]
                  for key, label in screened if any(isinstance(r.get(key), (int, float)) for r in rows)}
    shared_folder((output_dir / GROUP_FIGURE).parent)  # figures/: whichever member runs the group level next
    fig = group_figure(output_dir / GROUP_FIGURE, per_metric,
                       title=f"{len(rows)} hemisphere(s); red diamonds: robust z beyond {Z_THRESHOLD} on the worse side, "
                             "within its template")

    subjects = sorted({str(r.get("subject")) for r in rows})
    sessions = sorted({str(r.get("session")) for r in rows if r.get("session")}, key=label_key)
    study = study_name(output_dir)
    heading = "geomorph-bids: group report" + (f" of {study}" if study else "")
    body = [f"<h1>{esc(heading)}</h1>", '<section id="summary"><h2>Summary</h2>',
            table(["", ""], [["subjects", esc(len(subjects))], ["sessions", esc(_some(sessions) or "n/a")],
                             ["rows (subject/session/hemisphere/template)", esc(len(rows))],
                             ["templates", esc(", ".join(f"{t} ({len(i)} rows)"
                                                         for t, i in sorted(templates.items())))],
                             ["template maps", esc("; ".join(sorted({f"{r.get('template')} hemi-{r.get('hemi')}: "
                                                                    f"{describe_provenance(r)}" for r in rows})))],
                             ["table", f'<a href="{esc(tsv.name)}">{esc(tsv.name)}</a>' if tsv else "n/a"]],
                  left=2), "</section>"]
    first_after_summary = len(body)  # what the table lacks and the hemispheres to look at go here, under a heading
    if failed:
        body.append(f'<p class="err">{esc(len(failed))} metrics file(s) could not be read and are in no row '
                    "(rerun the participant level for them):</p><ul>"
                    + "".join(f'<li class="err">{esc(line)}</li>' for line in failed[:LISTED_MAX])
                    + (f"<li>and {esc(len(failed) - LISTED_MAX)} more (the group level's FAILED lines name each)</li>"
                       if len(failed) > LISTED_MAX else "")
                    + "</ul>")
    if absent:
        body.append(f'<p class="warn">{esc(absent)}</p>')
    crashed = failed_without_row(output_dir, rows) if crashed is None else list(crashed)
    if crashed:
        body.append(f'<p class="err">{esc(len(crashed))} hemisphere(s) failed at the participant level and have '
                    "no row (rerun the participant level for them):</p><ul>"
                    + "".join(f'<li class="err">{_errors_link(output_dir, line)}</li>' for line in crashed[:LISTED_MAX])
                    + (f"<li>and {esc(len(crashed) - LISTED_MAX)} more</li>" if len(crashed) > LISTED_MAX else "")
                    + "</ul>")

    def link(r: Mapping[str, Any]) -> str:
        target = _report_link(output_dir, r)
        text = esc(_label(r))
        return f'<a href="{esc(target)}">{text}</a>' if target else text

    gated = [r for r in rows if r.get("quality") == "flagged"]
    if gated:
        body.append(f'<p class="err">{esc(len(gated))} hemisphere(s) flagged by the quality gates (the gate, the '
                    "value and its threshold; marked in the table):</p><ul>"
                    + "".join(f'<li class="err">{link(r)}{esc(" " + str(r.get("template")) if several else "")}: '
                              f'{esc(r.get("quality_reasons") or "n/a")}</li>' for r in gated[:LISTED_MAX])
                    + (f"<li>and {esc(len(gated) - LISTED_MAX)} more (quality flagged in the table and "
                       f"{esc(GROUP_TSV)})</li>" if len(gated) > LISTED_MAX else "")
                    + "</ul>")
    stale = [r for r in rows if r.get("quality") == STALE]
    if stale:
        body.append(f'<p class="err">{esc(len(stale))} hemisphere(s) are {STALE}: their latest participant run '
                    "failed, and their row is an earlier run's results (rerun the participant level for them):</p><ul>"
                    + "".join(f'<li class="err">{esc(_label(r, several))}: {esc(r.get("quality_reasons"))}</li>'
                              for r in stale[:LISTED_MAX])
                    + (f"<li>and {esc(len(stale) - LISTED_MAX)} more (quality {STALE} in the table and "
                       f"{esc(GROUP_TSV)})</li>" if len(stale) > LISTED_MAX else "")
                    + "</ul>")
    low: dict[str, int] = {}  # note -> hemispheres (the bundled maps; coarse maps found on a machine, per folder)
    for r in rows:
        if low_resolution_used(r):  # asked for (the TSV's text, or a row's value): what they are, not the advice
            note = low_resolution_note(r, str(r.get("template", "fsaverage")),
                                       asked=str(r.get("template_bundled_asked")).lower() == "true")
            low[note] = low.get(note, 0) + 1
    for note, count in low.items():
        body.append(f'<p class="warn">{esc(count)} hemisphere(s) were {esc(note)}.</p>')
    nav = [("summary", "Summary"), ("distributions", "Distributions"), ("outliers", "Outliers"), ("table", "Table"),
           ("about", "About")]
    if len(body) > first_after_summary:  # a reader going from heading to heading must not pass them by
        urgent = any('<p class="err">' in part for part in body[first_after_summary:])
        title = "Needs attention" if urgent else "Notes"
        body.insert(first_after_summary, f'<section id="attention"><h2>{title}</h2>')
        body.append("</section>")
        nav.insert(1, ("attention", title))
    body.append('<section id="distributions"><h2>Distributions</h2><p class="note">One point per '
                "hemisphere; boxes: quartiles; red diamonds: outliers.</p>"
                f'<img class="fig" src="{esc(fig.relative_to(output_dir).as_posix())}" '
                f'alt="{esc(distributions_alt(per_metric))}"></section>')

    body.append('<section id="outliers"><h2>Outliers</h2><p class="note">Robust z-score '
                f"0.6745 (x - median) / MAD within each template's rows; outliers: {esc(OUTLIER_RULE)}.</p>")
    if flagged:
        body.append(table(["hemisphere", "template", "metric", "value", "robust z"],
                          [[link(rows[i]), esc(fmt(rows[i].get("template"))), esc(labels.get(k, k)), esc(fmt(v)),
                            esc(f"{z:+.1f}")]
                           for i, k, v, z in sorted(flagged, key=lambda t: -abs(t[3]))]))
    else:
        body.append('<p class="ok">No outliers.</p>')
    body.append("</section>")
    cols = _expand(_TABLE, features)
    shown = range(len(rows))
    if len(rows) > TABLE_MAX_ROWS:  # a cohort: the rows to look at; the TSV has the rest
        shown = [i for i in shown if i in flagged_rows or rows[i].get("quality") in ("flagged", STALE)]
        tsv_link = f'<a href="{esc(tsv.name)}">{esc(tsv.name)}</a>' if tsv else esc(GROUP_TSV)
        head = ('<section id="table"><h2>Outlying and flagged hemispheres</h2><p class="note">'
                f"{esc(len(rows))} hemispheres, more than {TABLE_MAX_ROWS}: listed here are the {esc(len(shown))} "
                f"that are outliers, flagged by the quality gates or {STALE}; every hemisphere is in "
                f"{tsv_link}.</p>")
    else:
        head = '<section id="table"><h2>All hemispheres</h2>'
    head += f'<p class="note">{esc(DIRECTIONS)}</p>'
    body.append(head +
                table(["hemisphere"] + [esc(c[1]) for c in cols],
                      [[link(rows[i])] + [esc(_cell(rows[i], k, i in flagged_rows)) for k, _ in cols] for i in shown],
                      row_classes=["flagged" if rows[i].get("quality") in ("flagged", STALE) else
                                   "outlier" if i in flagged_rows else "" for i in shown]) +
                "</section>")
    versions = software_versions(("geomorph-bids", "numpy", "matplotlib"))
    # the builds that made the rows (the table's software column), apart from the packages that drew this page:
    # the page's versions alone read as the registrations', though the participant level may have run elsewhere
    builds = sorted({str(r.get("software")) for r in rows if r.get("software")})
    made = (f"<p>Registrations ({esc(GROUP_TSV)}'s software column): {esc('; '.join(builds))}. How they were made, "
            f"with the references to cite: {esc(CITATION)} (also in each participant's report).</p>" if builds else
            f"<p>How the registrations were made, with the references to cite: {esc(CITATION)}.</p>")
    body.append('<section id="about"><h2>About</h2>' + made + "<h3>Report built with</h3>" +
                table(["package", "version"], [[esc(k), esc(v)] for k, v in versions.items()], left=2) +
                f'<p class="note">Built {esc(built_at())} in '
                f"{time.perf_counter() - t0:.1f} s.</p></section>")
    out = output_dir / GROUP_HTML
    return atomic_write_text(out, page(heading, nav, "\n".join(body)))


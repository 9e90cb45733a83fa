"""The participant report: ``OUTPUT_DIR/sub-X.html`` with figures under ``sub-X/figures/``.

Built from the participant OUTPUTS only (so ``--reports-only`` rebuilds it), found by their
names (:mod:`geomorph_bids.derivatives`, :mod:`.outputs`):

- the metrics JSON of each hemisphere: metrics, provenance, rotation;
- the resampled features: the "after" map; the registered sphere;
- ``logs/CITATION.md``, ``logs/crash-*/crash-*.txt``, ``logs/*.log``, ``dataset_description.json``.

The subject's inflated (or midthickness) surface is an INPUT, not copied into the outputs:
the workflow records its path in the metrics JSON (``input_surface`` relative to the BIDS dir, found through
``dataset_description.json``'s ``DatasetLinks`` ``raw``; ``input_surface_path``, absolute, for one outside it;
``input_surface_kind``). When it is readable and
has the native sphere's vertex count, the maps are also drawn on it; otherwise the report says
why in one line.

Two OPTIONAL outputs (the native sphere and the native registration features, as the
workflow's ``load_features`` node writes them) add the "before registration" maps and the
areal/shape distortion maps. Without them those panels say which file is missing and
everything else is drawn (:mod:`.hemisphere_figures`).
"""

from __future__ import annotations

import json
import re
import time
from html import unescape
from pathlib import Path

from ..crashfiles import crash_nodes, read_crash_file, subject_of_wf, subject_wf_name
from ..derivatives import CITATION, CRASH_FILES, DATASET_DESCRIPTION, LOGS, figures_dir, label_key, report_name
from ..engine.model_choice import METHODS
from ..errors import describe_os_error
from ..io.atomic import atomic_write_text
from ..io.digest import software_id
from ..io.discover import LAYOUT_NAMES
from ..io.limits import read_bounded
from ..io.template_sources import describe_provenance, low_resolution_note, low_resolution_used
from ..quality import QualityThresholds, assess, quality_warnings
from ..results.metrics import latest_run_failure
from .hemisphere_figures import hemisphere_figures
from .html import DIRECTIONS, built_at, esc, fmt, markdown, page, software_versions, table
from .outputs import HemiOutputs, find_hemispheres, label, relative

__all__ = ["build_participant_report", "update_participant_report", "report_is_current", "crash_reports", "hemisphere_anchor",
           "subject_crash_files", "log_messages"]


# --------------------------------------------------------------------------- checks and logs


def subject_crash_files(output_dir: Path, subject: str, session: str | None = None) -> list[Path]:
    """The Nipype crash files (``logs/crash-*/crash-*.txt``) of a subject (``session`` None: of
    all its sessions), told apart by their first line
    (:func:`~geomorph_bids.crashfiles.crash_nodes`)."""
    wf = subject_wf_name(subject, session)
    out = []
    for path in sorted(Path(output_dir).glob(CRASH_FILES)):
        parts = crash_nodes(path)
        if session is None and not any((subject_of_wf(p) or ("",))[0] == subject for p in parts):
            continue
        if session is not None and wf not in parts:
            continue
        out.append(path)
    return out


def crash_reports(output_dir: Path, subject: str, session: str | None) -> list[tuple[str, str, str]]:
    """Nipype crash files of a subject (``logs/crash-*/crash-*.txt``): [(file, node, error)].
    Only the subject's own files are read whole; of the others, the first line (remembered by
    :func:`~geomorph_bids.crashfiles.crash_nodes`: every report of a cohort with many failures
    read every crash file whole)."""
    out = []
    for path in subject_crash_files(output_dir, subject, session):
        crash = read_crash_file(path)
        if crash is None:
            continue
        out.append((relative(path, Path(output_dir)), ".".join(crash.nodes[-2:]), crash.error))
    return out


def log_messages(output_dir: Path, subject: str) -> list[tuple[str, str]]:
    """WARNING/ERROR lines of ``logs/*.log`` files that name the subject: [(file, line)]."""
    out = []
    for path in sorted(Path(output_dir).glob(f"{LOGS}/*.log")):
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        named = f"sub-{subject}" in path.name
        for line in lines:
            if ("WARNING" in line or "ERROR" in line) and (named or f"sub-{subject}" in line):
                out.append((path.name, line.strip()))
    return out[:200]


# ------------------------------------------------------------------------------------ page


_TABLE_ROWS = [("CC before (no alignment)", "cc_{f}_before"), ("CC after rigid pre-alignment", "cc_{f}_rigid"),
               ("CC after registration", "cc_{f}_after"), ("rotation (degrees)", "rotation_deg"),
               ("areal distortion, mean |log2|", "areal_mean_abs"),
               ("areal distortion, 95th pct |log2|", "areal_p95_abs"),
               ("areal distortion, max |log2|", "areal_max_abs"), ("shape distortion, mean (log2)", "R_mean"),
               ("shape distortion, 95th pct", "R_p95"), ("folded triangles (registered sphere)", "n_folded"),
               ("folded triangles (warp, ico-6)", "warp_folded_triangles"), ("run time (s)", "seconds_total"),
               ("method", "method"), ("device", "device"), ("model", "model_argument")]


def hemisphere_anchor(entities: str, hemi: str, space: str) -> str:
    """The id of a hemisphere's section in the participant report (``sub-01_hemi-L_space-fsLR``):
    one per template, as a subject registered to two templates has two sections per hemisphere."""
    return f"{entities}_hemi-{hemi}_space-{space}"


def _metrics_table(hemis: list[HemiOutputs]) -> str:
    several = len({h.space for h in hemis}) > 1
    header = ["metric"] + [esc(f"{h.entities} hemi-{h.hemi}" + (f" {h.space}" if several else "")) for h in hemis]
    features = list(dict.fromkeys(f for h in hemis for f in h.features))
    rows = []
    for title, key in _TABLE_ROWS:
        keys = [key.format(f=f) for f in features] if "{f}" in key else [key]
        for k in keys:
            name = title + (f" ({k.split('_')[1]})" if "{f}" in key and len(features) > 1 else "")
            rows.append([esc(name)] + [esc(fmt(h.registration.get(k))) for h in hemis])
    return table(header, rows)


def _provenance(h: HemiOutputs) -> str:
    keys = ["input_source", "input_sphere", "input_sphere_reg", "input_features", "sulc_sign", "sign_convention",
            "template", "output_density", "output_density_source", "model", "method", "software"]
    rows = [[esc(k), esc(json.dumps(h.doc.get(k)) if isinstance(h.doc.get(k), (dict, list))
                         else fmt(h.doc.get(k)))] for k in keys if k in h.doc]
    reg = h.registration
    rows += [[esc(k), esc(fmt(reg[k]) if not isinstance(reg[k], list) else ", ".join(map(str, reg[k])))]
             for k in _TEMPLATE_KEYS if k in reg]
    return table(["field", "value"], rows, left=2)


#: where the template's maps came from (register() metrics)
_TEMPLATE_KEYS = ("template_source", "template_source_path", "template_vertices", "template_built_from_vertices",
                  "template_sha256", "template_files")


def _withheld_files(doc: dict) -> list[str]:
    """The files a flagged hemisphere's metrics JSON says were withheld (``withheld.files``: the sphere
    under sMRIPrep's names, :func:`geomorph_bids.results.metrics.metrics_document`); none when it has
    no such entry or a malformed one."""
    withheld = doc.get("withheld")
    files = withheld.get("files") if isinstance(withheld, dict) else None
    return [str(f) for f in files] if isinstance(files, list) else []


def _template_maps(hemis: list[HemiOutputs]) -> str:
    """One line per distinct template source of the hemispheres (``hemi-L: freesurfer ...``; with
    several templates, ``hemi-L fsLR: ...``)."""
    several = len({h.space for h in hemis}) > 1
    lines = [f"hemi-{h.hemi}{' ' + h.space if several else ''}: {describe_provenance(h.registration)}" for h in hemis]
    return "; ".join(dict.fromkeys(lines)) or "n/a"


#: in a report whose figures could not all be drawn (a full disk, the file-size limit): such a
#: report is never reused (:func:`report_is_current`), so that the next run draws them
INCOMPLETE = "<!-- geomorph-bids: figures incomplete -->"


def _built_by() -> str:
    """The marker of the geomorph-bids that drew a report: a report drawn by another build is
    never reused (:func:`report_is_current`), so an upgrade redraws it (the build, not the version
    alone: :func:`~geomorph_bids.io.digest.software_id`; every development build is one version)."""
    return f"<!-- geomorph-bids report, version {software_id().removeprefix('geomorph-bids ')} -->"


def build_participant_report(output_dir: str | Path, subject: str, session: str | None = None,
                             problems: list[str] | None = None) -> Path:
    """Write the HTML report of one subject (all its sessions) or of one subject/session.

    Parameters
    ----------
    output_dir : the derivatives folder of the participant level.
    subject : label, with or without ``sub-``.
    session : None: every session of the subject, written to ``OUTPUT_DIR/sub-X.html``;
        a label: that session only, written to ``OUTPUT_DIR/sub-X_ses-Y.html``.

    problems : when a list, gets one line per hemisphere whose figures could not be drawn (the
        page is written all the same, saying so, and marked :data:`INCOMPLETE`).

    Returns
    -------
    The path of the HTML file. Figures are written to ``OUTPUT_DIR/sub-X/figures/`` and
    linked relatively. A subject without outputs still gets a page listing its errors.
    """
    t0 = time.perf_counter()
    output_dir = Path(output_dir).absolute()
    subject = label(subject, "sub") or ""
    session = label(session, "ses")
    found = find_hemispheres(output_dir, subject, session)
    # what the group table has no row for (a damaged metrics file, a registered sphere gone) is left out, said why
    hemis = [h for h in found if h.problem is None]
    unusable = [h for h in found if h.problem is not None]
    fig_dir = figures_dir(output_dir, subject)
    title = f"sub-{subject}" + (f" ses-{session}" if session else "")
    body: list[str] = [f"<h1>geomorph-bids report: {esc(title)}</h1>"]
    nav = [("summary", "Summary")]

    # summary
    sessions = sorted({h.session for h in found if h.session}, key=label_key)
    several_spaces = len({h.space for h in found}) > 1

    def per_hemisphere(value) -> str:
        """``value(doc)`` of the subject's hemispheres: once when they agree, else ``hemi-L: ...; hemi-R: ...``
        (a rerun of one hemisphere with other settings)."""
        each = {f"{h.entities + ' ' if len(sessions) > 1 else ''}hemi-{h.hemi}"
                f"{' ' + h.space if several_spaces else ''}": value(h.doc) for h in hemis}
        distinct = list(dict.fromkeys(each.values()))
        return (distinct[0] if len(distinct) == 1 else "; ".join(f"{k}: {v}" for k, v in each.items())) or "n/a"

    def method(doc: dict) -> str:
        return (f"{doc.get('model', 'n/a')} / {doc.get('method', 'n/a')}"
                + (f" ({METHODS[doc['method']]})" if doc.get("method") in METHODS else ""))

    summary_rows = [["subject", esc(subject)], ["sessions", esc(", ".join(sessions) or "n/a")],
                    ["hemispheres", esc(", ".join(f"{h.entities} hemi-{h.hemi}{' ' + h.space if several_spaces else ''}"
                                                  for h in hemis) or "none")],
                    ["template", esc(", ".join(dict.fromkeys(str(h.doc.get("template", h.space)) for h in hemis))
                                     or "n/a")],
                    ["template maps", esc(_template_maps(hemis))],
                    ["output density", esc(per_hemisphere(lambda d: str(d.get("output_density", "n/a"))))],
                    ["model / method", esc(per_hemisphere(method))],
                    ["input", esc(per_hemisphere(_input_layout))]]
    body.append('<section id="summary"><h2>Summary</h2>' + table(["", ""], summary_rows, left=2) + "</section>")

    # per hemisphere
    all_notes: list[tuple[str, str]] = []
    warns: list[tuple[str, str]] = []
    attention: list[str] = []  # HTML items said at the top of the page: flagged, stale, failed hemispheres
    left_out = [f"{esc(h.entities)} hemi-{esc(h.hemi)} {esc(h.space)}: not in this report: {esc(h.problem)}"
                for h in unusable]  # said at the top and in Errors and warnings
    attention += left_out
    from .figures import FigureKeeper

    keeper = FigureKeeper()  # a hemisphere's figures are refilled for the next one of the same layout
    for h in hemis:
        anchor = hemisphere_anchor(h.entities, h.hemi, h.space)
        nav.append((anchor, f"{'ses-' + h.session + ' ' if h.session else ''}hemi-{h.hemi}"
                            + (f" {h.space}" if several_spaces else "")))
        try:
            figs, notes = hemisphere_figures(h, output_dir, fig_dir, keeper)
        except Exception as exc:  # a broken output must not cost the rest of the report
            why = describe_os_error(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
            figs, notes = [], [f"figures failed: {' '.join(why.split())}"]
            body.append(INCOMPLETE)
            if problems is not None:
                problems.append(f"{h.entities} hemi-{h.hemi}: {notes[0]}")
        all_notes += [(anchor, n) for n in notes]
        # judged with the thresholds the run judged it with (recorded beside its verdict)
        verdict_doc = h.doc.get("quality") if isinstance(h.doc.get("quality"), dict) else {}
        thresholds = QualityThresholds.from_dict(verdict_doc.get("thresholds"))
        hemi_warnings = quality_warnings(h.registration, h.features, thresholds)
        judged = assess(h.registration, h.features, thresholds)
        flagged = bool(judged.flagged)
        warns += [(anchor, w) for w in hemi_warnings]
        if low_resolution_used(h.registration):
            ref = h.doc.get("template_ref") if isinstance(h.doc.get("template_ref"), dict) else {}
            warns.append((anchor, low_resolution_note(h.registration, str(h.doc.get("template", h.space)),
                                                      asked=ref.get("bundled_asked") is True)))
        # the group table's ``stale``: the latest run of this hemisphere failed, these outputs are an earlier run's
        stale = latest_run_failure(h.doc)
        verdict = (f'<span class="err">STALE</span>: {esc(stale)}; these outputs are an earlier run&#x27;s' if stale
                   else '<span class="err">FLAGGED</span> (see Errors and warnings)' if flagged
                   else '<span class="ok">ok</span>')
        where = (f'<a href="#{esc(anchor)}">{esc(h.entities)} hemi-{esc(h.hemi)}'
                 f'{" " + esc(h.space) if several_spaces else ""}</a>')
        if stale:
            attention.append(f"{where}: STALE: {esc(stale)}")
        withheld = _withheld_files(h.doc)
        withheld_text = (f"not written under sMRIPrep's names: {', '.join(withheld)} (fMRIPrep's --derivatives "
                         "then computes its own registration for this subject)") if withheld else ""
        if flagged:
            attention.append(f"{where}: FLAGGED by the quality gates: {esc('; '.join(judged.reasons))}"
                             + (f"; {esc(withheld_text)}" if withheld else ""))
        parts = [f'<section id="{esc(anchor)}"><h2>{esc(h.entities)} hemi-{esc(h.hemi)} '
                 f'&rarr; {esc(h.doc.get("template", h.space))}</h2><p>quality: {verdict}</p>'
                 + (f'<p class="warn">{esc(withheld_text[0].upper() + withheld_text[1:])}</p>' if withheld else "")]
        for kind, caption, rel in figs:
            parts.append(f'<h3>{esc(kind.capitalize())}</h3><p class="note">{esc(caption)}</p>'
                         f'<img class="fig" src="{esc(rel)}" alt="{esc(figure_alt(h, kind, caption))}">')
        if notes:
            parts.append('<ul class="note">' + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
        parts.append(f"<details><summary>provenance</summary>{_provenance(h)}</details></section>")
        body.append("".join(parts))

    if hemis:
        nav.append(("metrics", "Metrics"))
        body.append('<section id="metrics"><h2>Metrics</h2><p class="note">Pearson correlation (CC) of each '
                    "registration feature with the template on its ico-6 grid; distortion of the registered "
                    "native mesh relative to the native sphere, log2 units as <code>wb_command "
                    "-surface-distortion</code>. " + esc(DIRECTIONS) + "</p>" + _metrics_table(hemis) + "</section>")

    # errors and warnings
    nav.append(("errors", "Errors and warnings"))
    crashes = crash_reports(output_dir, subject, session)
    logs = log_messages(output_dir, subject)
    found_hemis = {(h.session, h.hemi) for h in found}
    missing = [f"no outputs for {('ses-' + s + ' ') if s else ''}hemi-{x} (failed or not requested)"
               for s in (sessions or [session]) for x in ("L", "R") if (s, x) not in found_hemis]
    attention += [f'{esc(m)} (<a href="#errors">Errors and warnings</a>)' for m in missing]
    # each item says what it is in words too: red, amber and grey alike to some readers
    err, warn, note = '<li class="err"><b>error</b>: ', '<li class="warn"><b>warning</b>: ', '<li class="note">note: '
    items = ([f'{err}{line}</li>' for line in left_out] +
             [f'{err}{esc(n)} &mdash; {esc(e)} <span class="note">({esc(f)})</span></li>'
              for f, n, e in crashes] +
             [f'{err}{esc(m)}</li>' for m in missing] +
             [f'{warn}{esc(a)}: {esc(w)}</li>' for a, w in warns] +
             [f'<li class="warn">{esc(f)}: {esc(line)}</li>' for f, line in logs] +  # says WARNING or ERROR
             [f'{note}{esc(a)}: {esc(n)}</li>' for a, n in all_notes])
    body.append('<section id="errors"><h2>Errors and warnings</h2>' +
                (f"<ul>{''.join(items)}</ul>" if items else '<p class="ok">No errors or warnings.</p>') +
                "</section>")

    # about: software, citation
    nav.append(("about", "About"))
    desc_path = output_dir / DATASET_DESCRIPTION
    generated = []
    if desc_path.is_file():
        try:
            generated = json.loads(desc_path.read_text()).get("GeneratedBy", [])
        except (OSError, json.JSONDecodeError):
            generated = []
    gen_rows = [[esc(g.get("Name", "")), esc(g.get("Version", "")),
                 esc((g.get("Container") or {}).get("Tag", ""))] for g in generated if isinstance(g, dict)]
    versions = software_versions()
    about = ['<section id="about"><h2>About</h2>']
    if gen_rows:
        about.append("<h3>Outputs generated by</h3>" + table(["name", "version", "container"], gen_rows, left=3))
    software = sorted({str(h.doc.get("software")) for h in hemis if h.doc.get("software")})
    if software:
        about.append(f"<p>Registrations: {esc(', '.join(software))}.</p>")
    about.append("<h3>Report built with</h3>" + table(["package", "version"],
                                                      [[esc(k), esc(v)] for k, v in versions.items()], left=2))
    about.append(f'<p class="note">Report built {esc(built_at())} in '
                 f"{time.perf_counter() - t0:.1f} s.</p></section>")
    body.append("".join(about))
    nav.append(("boilerplate", "Methods"))
    citation = output_dir / CITATION
    text = citation.read_text() if citation.is_file() else ""
    body.append('<section id="boilerplate"><h2>Methods and citation</h2>' +
                (markdown(text) if text else '<p class="note">logs/CITATION.md not found in the outputs.</p>') +
                "</section>")

    if attention:  # at the top, under the title: what a rater must not miss
        body.insert(1, '<div class="attention"><h2 class="err">Needs attention</h2><ul>'
                    + "".join(f'<li class="err">{item}</li>' for item in attention) + "</ul></div>")
    body.append(_built_by())
    out = output_dir / report_name(subject, session)
    return atomic_write_text(out, page(f"geomorph-bids: {title}", nav, "\n".join(body)))


def figure_alt(h: HemiOutputs, kind: str, caption: str) -> str:
    """The text alternative of a hemisphere's figure: whose hemisphere, to which template, which
    figure and what its panels show (the caption), for a reader who cannot see the image."""
    where = " ".join(x for x in (h.entities, f"hemi-{h.hemi}") if x)
    return f"{kind} figure of {where}, registered to {h.doc.get('template', h.space)}: {caption}"


#: the most bytes of a report :func:`report_is_current` reads (a report of 1,000 sessions is under 10 MB)
REPORT_MAX_BYTES = 64 * 2 ** 20

_FIGURE_LINK = re.compile(r'<img class="fig" src="([^"]+)"')


def report_is_current(output_dir: str | Path, subject: str) -> bool:
    """``sub-X.html`` exists, is newer than every output of the subject (a rerun that
    changed nothing leaves the outputs, hence the report, untouched) and every folder of them (outputs
    deleted or renamed since change their folder's time, not the others') and than its crash files
    (a failure since is listed), was drawn by this version of geomorph-bids, has every figure
    it links (figures deleted since are drawn again) and was not written without some of them
    (:data:`INCOMPLETE`: a full disk or the file-size limit when it was built)."""
    output_dir = Path(output_dir)
    html = output_dir / report_name(subject)
    if not html.is_file():
        return False
    drawn = html.stat().st_mtime_ns
    subject_dir = output_dir / f"sub-{subject}"
    entries = [p for p in subject_dir.rglob("*") if "figures" not in p.relative_to(output_dir).parts]
    if not any(p.is_file() for p in entries):
        return False
    # folders too: outputs deleted or renamed since (a hemisphere gone) leave the files' times as they
    # were but not their folder's
    if drawn < max(p.stat().st_mtime_ns for p in [subject_dir, *entries]):
        return False
    if any(p.stat().st_mtime_ns > drawn for p in subject_crash_files(output_dir, subject)):
        return False
    try:  # at most REPORT_MAX_BYTES: a huge file planted there (a 20 GB sparse one) was read whole
        text = read_bounded(html, REPORT_MAX_BYTES, "report", timeout_s=None).decode(errors="replace")
    except (OSError, ValueError):  # (InputError: too large, not a regular file; the report is drawn again)
        return False
    return (_built_by() in text and INCOMPLETE not in text
            and all((output_dir / unescape(rel)).is_file() for rel in _FIGURE_LINK.findall(text)))


def update_participant_report(output_dir: str | Path, subject: str, reuse: bool = False,
                              problems: list[str] | None = None) -> Path:
    """``sub-X.html`` of a subject: kept when ``reuse`` and it is current
    (:func:`report_is_current`), else (re)built by :func:`build_participant_report`
    (``problems``: as there)."""
    if reuse and report_is_current(output_dir, subject):
        return Path(output_dir) / report_name(subject)
    return build_participant_report(output_dir, subject, problems=problems)


def _input_layout(doc: dict) -> str:
    """The report's "input" of one hemisphere's metrics: the layout it was read from, by the name the
    run's ``inputs:`` line gives it, and the folder (``sMRIPrep/fMRIPrep layout, derivatives/fmriprep/
    sub-01/anat``); before, the bare ``smriprep`` read as if fMRIPrep's outputs had been taken for sMRIPrep's."""
    source = doc.get("input_source")
    if not source:
        return "n/a"
    where = str(doc.get("input_sphere") or "").rpartition("/")[0]
    return f"{LAYOUT_NAMES.get(str(source), str(source))} layout" + (f", {where}" if where else "")

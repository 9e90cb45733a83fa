"""The group table: one row per subject/session/hemisphere/template, built from the participant
metrics JSON files and written as a BIDS TSV (:data:`~geomorph_bids.derivatives.GROUP_TSV`).
The group level of the command line and the group report both use it."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from ..derivatives import GROUP_TSV, REGISTERED_SPHERE, entities, label_key, metrics_files, parse_metrics_name
from ..errors import InputError
from ..io.atomic import atomic_write_text
from ..io.limits import read_json_files
from ..io.template_sources import current_provenance
from ..results.metrics import latest_run_failure

__all__ = ["GROUP_COLUMNS", "TRAILING_COLUMNS", "STALE", "quality_cells", "check_metrics", "group_rows", "row_key", "group_table_text",
           "write_group_table", "column_description", "group_dictionary_text",
           "parse_group_table",
           "read_group_table", "group_table_rows"]

#: leading columns of the group table (the registration metrics follow, sorted); ``quality`` is
#: ``ok`` or ``flagged`` (:mod:`geomorph_bids.quality`), or :data:`STALE`; ``quality_reasons``
#: the gates failed (after, for a stale row, why its latest run failed); ``participant_id`` /
#: ``session_id`` the labels with BIDS's ``sub-`` / ``ses-`` (the join keys of ``participants.tsv``
#: and ``sessions.tsv``; after the columns earlier versions wrote, which keep their places);
#: ``software`` the build of geomorph-bids that made the row (a folder can hold several)
GROUP_COLUMNS = ("subject", "session", "hemi", "quality", "quality_reasons", "template", "method", "input_source",
                 "sulc_sign", "participant_id", "session_id", "software")
#: the last columns of the group table, after the registration metrics (added since: the earlier columns keep their
#: places); ``template_bundled_asked``: ``True`` where the participant level was asked for the bundled maps
#: (``--template-dir bundled``, the metrics' ``template_ref``), else ``False`` (the TSV's booleans are written so)
TRAILING_COLUMNS = ("template_bundled_asked",)
#: ``quality`` of a row whose hemisphere's latest participant run failed: its outputs (and
#: metrics) are an earlier run's, kept (:func:`geomorph_bids.results.metrics.mark_latest_run_failed`)
STALE = "stale"


def quality_cells(flagged: bool | None, gate_reasons: str | None, stale: str | None) -> tuple[str | None, str | None]:
    """The ``quality`` and ``quality_reasons`` cells of a row: :data:`STALE` whatever the gates
    said when its latest run failed (``stale``: why, first among the reasons), else ``flagged``
    or ``ok`` (None: no verdict recorded)."""
    if stale:
        return STALE, "; ".join(r for r in (stale, gate_reasons) if r)
    return (None if flagged is None else "flagged" if flagged else "ok"), gate_reasons or None


def _flat(doc: Mapping[str, Any], with_quality_inputs: bool = False) -> dict[str, Any]:
    row = {k: doc.get(k) for k in GROUP_COLUMNS}
    quality = doc.get("quality") if isinstance(doc.get("quality"), dict) else {}
    stale = latest_run_failure(doc)
    row["participant_id"] = None if row["subject"] is None else f"sub-{row['subject']}"
    row["session_id"] = f"ses-{row['session']}" if row["session"] else None
    row["quality"], row["quality_reasons"] = quality_cells(bool(quality.get("flagged")) if quality else None,
                                                           "; ".join(map(str, quality.get("reasons") or ())), stale)
    # the template provenance as this version records it (an earlier version's bundled-map count)
    registration = current_provenance(doc["registration"]) if isinstance(doc.get("registration"), dict) else {}
    for k, v in sorted(registration.items()):
        if k == "rotation" or isinstance(v, (list, dict)):
            continue
        row.setdefault(k, v)
    ref = doc.get("template_ref")
    row["template_bundled_asked"] = isinstance(ref, dict) and ref.get("bundled_asked") is True
    if with_quality_inputs:  # for the group level's gates; not columns
        # the numbers and label conflicts the gates read, not the whole document (rotation, template files...):
        # kept for every row of a cohort until it is judged
        row["_registration"] = {k: v for k, v in registration.items()
                                if not isinstance(v, (list, dict)) or k == "label_conflicts"}
        row["_features"] = list(registration.get("registration_features") or doc.get("features") or [])
        row["_thresholds"] = quality.get("thresholds")
        row["_stale"] = stale
        # the template's map files the recorded template_sha256 is of: the group level tells a row
        # registered to maps since rebuilt or replaced (a population template rebuilt in place)
        files = registration.get("template_files")
        row["_template_files"] = [str(f) for f in files] if isinstance(files, list) else []
    return row


def group_rows(output_dir: str | Path, with_quality_inputs: bool = False,
               unreadable: list[str] | None = None, subjects: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """One row per ``sub-*/[ses-*/]anat/*_desc-geomorph_metrics.json`` under ``output_dir``,
    sorted by subject, session, hemisphere, template (:func:`row_key`: ``sub-2`` before ``sub-10``;
    ``with_quality_inputs``: also ``_registration``,
    ``_features`` and ``_thresholds``, what :func:`geomorph_bids.quality.assess` needs;
    ``_template_files``: the template's map files its ``template_sha256`` is of;
    ``subjects``: only the files in those subjects' folders, labels without ``sub-``).
    A file that cannot be read (damaged, not JSON) raises :class:`InputError`, or, when
    ``unreadable`` is a list, gets its one-line message appended there and no row."""
    rows = []
    paths = (metrics_files(output_dir) if subjects is None else
             sorted((p for s in dict.fromkeys(subjects) for p in metrics_files(output_dir, s)), key=label_key))
    for path, doc in _documents(paths):
        try:
            check_metrics(path, doc)
        except InputError as exc:
            if unreadable is None:
                raise
            unreadable.append(str(exc))
            continue
        rows.append(_flat(doc, with_quality_inputs))
    return sorted(rows, key=row_key)


def row_key(row: Mapping[str, Any]) -> tuple:
    """The group table's order: subject, session (:func:`~geomorph_bids.derivatives.label_key`:
    ``2`` before ``10``; a row without session first), hemisphere, template."""
    session = row.get("session")
    return (label_key(row.get("subject")), label_key(None if session in (None, "", "n/a") else session),
            str(row.get("hemi")), str(row.get("template") or ""))


def check_metrics(path: Path, doc: Any) -> None:
    """InputError (its one-line message naming the file) unless the metrics file ``path``, whose
    document is ``doc`` (or the InputError reading it raised), gives a row: the document its name
    promises, with the registered sphere it describes beside it. The group table and the
    participant report leave out the same hemispheres."""
    if isinstance(doc, InputError):
        raise doc
    named = parse_metrics_name(path.name)  # metrics_files lists only names of this form
    _check_document(path, doc, named)
    _check_sphere(path, named)


def _documents(paths: list[Path], chunk: int = 256) -> Iterator[tuple[Path, object]]:
    """(path, document or the InputError saying why not) of each metrics file, read a chunk at a
    time (:func:`~geomorph_bids.io.limits.read_json_files`: one hand-over per chunk instead of
    per file, and never every document of a cohort in memory at once)."""
    for k in range(0, len(paths), chunk):
        yield from zip(paths[k:k + chunk], read_json_files(paths[k:k + chunk], what="metrics file"))


#: the registration metrics the quality gates judge besides the correlations (:func:`geomorph_bids.quality.assess`)
_GATE_NUMBERS = ("identity_cc_own", "identity_cc_mirrored", "identity_cc_negated", "areal_p95_abs", "n_folded",
                 "n_nonfinite")
_COUNTS = ("n_folded", "n_nonfinite")
#: the widest value each number the gates read or the group page plots can take (the ``log2`` of a ratio of
#: two float64 areas stays within 2100; counts are of a mesh's triangles or vertices): one beyond it is damage,
#: and a number such as 1e308 or 10**30 broke the page's figure (``arange: cannot compute length``, a TypeError)
_SPANS: dict[str, tuple[float, float]] = {
    "identity_cc_own": (-1.0, 1.0), "identity_cc_mirrored": (-1.0, 1.0), "identity_cc_negated": (-1.0, 1.0),
    "areal_p95_abs": (0.0, 2100.0), "areal_mean_abs": (0.0, 2100.0), "R_mean": (-2100.0, 2100.0),
    "n_folded": (0, 2 ** 31 - 1), "n_nonfinite": (0, 2 ** 31 - 1), "seconds_total": (0.0, 1e9)}


def _check_document(path: Path, doc: Any, named: tuple[str, str | None, str, str] | None) -> None:
    """InputError unless ``doc`` is the metrics document its file name promises: a JSON object
    with a ``registration`` object holding a number for the first registration feature's
    correlation and a number (or null) for every other metric the quality gates read (a count
    not below 0), written for the subject, session, hemisphere and template the name says (a
    metrics file copied under another subject's name would give that subject's row twice;
    ``named``: :func:`~geomorph_bids.derivatives.parse_metrics_name` of the file's name)."""
    def bad(why: str) -> InputError:
        return InputError(why, path=path)

    if not isinstance(doc, dict) or not isinstance(doc.get("registration"), dict):
        raise bad("is not a geomorph-bids metrics document (no 'registration' object)")
    reg = doc["registration"]
    for where, names in (("registration.registration_features", reg.get("registration_features")),
                         ("features", doc.get("features"))):
        if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
            raise bad(f"holds {names!r:.40} for {where}, which is a list of map names: damaged or edited")
    quality = doc.get("quality")
    if quality is not None and (not isinstance(quality, dict) or not isinstance(quality.get("reasons", []), (list, type(None)))):
        raise bad(f"holds {quality!r:.60} for quality, which is an object with a list of reasons: damaged or edited")
    first = next(iter(reg.get("registration_features") or doc.get("features") or ["sulc"]), "sulc")
    cc = reg.get(f"cc_{first}_after")
    if not isinstance(cc, (int, float)) or isinstance(cc, bool) or not -1.0 <= cc <= 1.0:  # NaN too
        raise bad(f"holds no correlation for {first} (registration.cc_{first}_after: {cc!r}): damaged, edited or "
                  "from an older version")
    ccs = [f"cc_{f}_{when}" for f in reg.get("registration_features") or () for when in ("after", "rigid")]
    for key in (*ccs, *_GATE_NUMBERS, *(k for k in _SPANS if k not in _GATE_NUMBERS)):
        value = reg.get(key)  # what the quality gates read and the page plots: absent or null is "not measured"
        if value is None:
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise bad(f"holds no number for registration.{key} ({value!r}), which the quality gates read: damaged, "
                      "edited or from an older version")
        if key in _COUNTS and value < 0:
            raise bad(f"holds a negative count for registration.{key} ({value!r}): damaged or edited")
        low, high = _SPANS.get(key, (-1.0, 1.0))  # the rest are correlations
        if not low <= value <= high or (key in _COUNTS and value != int(value)):  # NaN too
            shown = f"{value:.6g}" if isinstance(value, float) or abs(value) < 10 ** 12 else f"a number of {len(str(value))} digits"
            kind = "a whole number" if key in _COUNTS else "a number"
            raise bad(f"holds {shown} for registration.{key}, which is {kind} from {low:g} to {high:g}: damaged or "
                      "edited")
    says = (str(doc.get("subject")), str(doc.get("session") or "") or None, str(doc.get("hemi")))
    if named is not None and says != named[:3]:
        def ent(sub: str, ses: str | None, hemi: str) -> str:
            return f"sub-{sub}{'_ses-' + ses if ses else ''} hemi-{hemi}"
        raise bad(f"is named for {ent(*named[:3])} but records {ent(*says)} (copied from another participant?)")
    template = doc.get("template")
    if named is not None and template is not None and str(template) != named[3]:
        raise bad(f"is named for space-{named[3]} but records template {template!r} (copied or renamed from "
                  "another template's outputs?)")


def _check_sphere(path: Path, named: tuple[str, str | None, str, str] | None) -> None:
    """InputError unless the registered sphere that a metrics file describes (``named``: its
    name parsed) is beside it, not empty: a sphere deleted, moved or emptied after the participant
    level left a row that said ``ok`` for a result that is no longer there."""
    if named is None:
        return
    subject, session, hemi, space = named
    sphere = path.with_name(REGISTERED_SPHERE.name(entities(subject, session), hemi, space))
    try:
        size = sphere.stat().st_size
    except OSError:
        size = None
    if not size:
        why = "is missing beside its metrics file (deleted or moved?)" if size is None else "is empty"
        raise InputError(f"{why}: rerun the participant level for sub-{subject}", path=sphere, subject=subject,
                         hemi=hemi)


def group_table_text(rows: Iterable[Mapping[str, Any]]) -> str:
    """The rows as a BIDS TSV (``n/a`` for missing values): what :func:`write_group_table` writes."""
    rows = list(rows)
    columns = list(GROUP_COLUMNS)
    seen = set(columns) | set(TRAILING_COLUMNS)
    trailing = set()
    for r in rows:  # (a set beside the list: a membership test per key of each row was O(columns))
        for k in r:
            if k not in seen:
                seen.add(k)
                columns.append(k)
        trailing.update(k for k in TRAILING_COLUMNS if k in r)
    columns += [k for k in TRAILING_COLUMNS if k in trailing]  # after every metric, whatever the rows hold
    handle = io.StringIO(newline="")
    w = csv.writer(handle, delimiter="\t", lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in columns])
    return handle.getvalue()


def _cell(value: Any) -> Any:
    """One TSV cell: ``n/a`` for a value that is missing (None, NaN, an empty or blank string: a
    hand-edited or older metrics file), a float to 6 significant digits, and text on one line
    (tabs and line breaks as spaces: a row is one line, unquoted, for ``cut``/``awk`` as for
    pandas and R)."""
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        value = " ".join(value.split()) if any(c in value for c in "\t\r\n") else value
        return value if value.strip() else "n/a"
    return value


#: descriptions of the group table's columns: (description, units or None); the registration
#: metrics of a pattern (``cc_<feature>_after``...) are in :func:`column_description`
_DESCRIBED: dict[str, tuple[str, str | None]] = {
    "subject": ("Subject label without 'sub-' (read it as text: '01' is not the number 1)", None),
    "session": ("Session label without 'ses-'; n/a for anatomy shared by every session", None),
    "hemi": ("Hemisphere: L or R", None),
    "quality": ("Verdict of the quality gates: ok, flagged, or stale (the hemisphere's latest participant run "
                "failed; its outputs are an earlier run's)", None),
    "quality_reasons": ("The gates failed ('; '-separated), after, for a stale row, why its latest run failed; "
                        "n/a when none", None),
    "template": ("Template the hemisphere was registered to (the outputs' space- entity)", None),
    "method": ("Registration method: optimise, rigid, geomorph+optimise (a network, then the optimiser) or "
               "geomorph (a network alone)", None),
    "input_source": ("Layout the inputs were read from: freesurfer, smriprep (sMRIPrep's and fMRIPrep's layout) or hcp", None),
    "sulc_sign": ("Sign convention of the input sulc map (freesurfer: sulci positive)", None),
    "participant_id": ("Subject label with 'sub-': the join key of the dataset's participants.tsv", None),
    "session_id": ("Session label with 'ses-': the join key of sessions.tsv; n/a without sessions", None),
    "software": ("The build of geomorph-bids that registered the hemisphere: its version and a digest of its source "
                 "(rows of versions before 2026-12-07 give the version alone); rows of several builds in one folder "
                 "may differ by their method", None),
    "areal_mean_abs": ("Mean |log2 vertex-area ratio|, registered / native sphere", "log2 ratio"),
    "areal_p95_abs": ("95th percentile of |log2 vertex-area ratio|, registered / native sphere", "log2 ratio"),
    "areal_max_abs": ("Largest |log2 vertex-area ratio|, registered / native sphere", "log2 ratio"),
    "edge_mean": ("Mean edge-length distortion (wb_command -surface-distortion -edge-method)", "log2 ratio"),
    "n_folded": ("Triangles whose orientation flips between the native sphere and the registered one (the same "
                 "faces; orientation: the sign of (a - o) . ((b - a) x (c - a)), o the mean vertex)", "triangles"),
    "folded_fraction": ("Fraction of the triangles that flip between the native and the registered sphere "
                        "(n_folded over the triangle count)", "fraction (0-1)"),
    "warp_folded_triangles": ("Folded triangles of the warp on the ico-6 grid", "triangles"),
    "n_nonfinite": ("Vertices whose areal, J, R or edge distortion is not finite (degenerate triangles around "
                    "them), left out of the distortion statistics", "vertices"),
    "rotation_deg": ("Angle of the rigid pre-alignment rotation", "degrees"),
    "rotation_method": ("How the rotation was found: features, or correspondence (from the sphere.reg)", None),
    "used_sphere_reg": ("Whether a FreeSurfer sphere.reg was used for the rotation (True/False, as the TSV writes "
                        "it)", None),
    "reg_sphere_set_aside": ("Why a sphere.reg that was given was set aside", None),
    "identity_cc_own": ("Correlation of the hemisphere's features with its own template hemisphere "
                        "(the hemisphere check)", "Pearson r"),
    "identity_cc_mirrored": ("Correlation with the mirrored (other) template hemisphere (the hemisphere check)",
                             "Pearson r"),
    "identity_cc_negated": ("Correlation of the sign-flipped features with the template (the sign gate)",
                            "Pearson r"),
    "mirrored": ("Whether the network registers this hemisphere mirrored (True/False, as the TSV writes it)", None),
    "cortex_mask": ("Whether a cortex mask restricted the registration (True/False, as the TSV writes it)", None),
    "device": ("Device the registration ran on (cpu, cuda...)", None),
    "model_argument": ("The --model value", None),
    "model_name": ("Name of the network used; n/a without one", None),
    "model_path": ("File of the network used; n/a without one", None),
    "model_version": ("Version of the network used; n/a without one", None),
    "model_weights_sha256": ("SHA-256 of the network's weights; n/a without one", None),
    "seconds_total": ("Wall time of the whole registration", "s"),
    "optimise_batch": ("Number of hemisphere pairs optimised together", "pairs"),
    "data_level": ("Icosahedral level of the grid the network read the features on", None),
    "network_batch": ("Number of hemispheres the network registered together", "hemispheres"),
    "network_smoothing_iterations": ("Smoothing iterations of the network's first pass warp", "iterations"),
    "network_unfold_iterations": ("Iterations that unfolded the network's warp (0: none needed)", "iterations"),
    "optimise_unfold_iterations": ("Iterations that unfolded the optimised warp", "iterations"),
    "output_unfold_iterations": ("Iterations that unfolded the registered sphere before it was written",
                                 "iterations"),
    "output_folded_before_unfold": ("Folded triangles of the registered sphere before it was unfolded", "triangles"),
    "cortex_fraction_on_template": ("Fraction of the template's grid covered by the cortex mask after the rigid "
                                    "rotation", "fraction (0-1)"),
    "template_vertices": ("Vertices of the template mesh registered to", "vertices"),
    "template_built_from_vertices": ("Vertices of the mesh the bundled template maps were built from (the bundled "
                                     "sulc's; fsLR's curv and myelin come from brainspace's group maps on fsLR 32k, "
                                     "32,492 vertices: the metrics' template_maps)", "vertices"),
    "template_sha256": ("SHA-256 of the template's files", None),
    "template_source": ("Where the template came from (bundled, a folder...)", None),
    "template_source_path": ("Folder of the template's files", None),
    "template_bundled_asked": ("Whether the participant level was asked for the bundled template maps "
                               "(--template-dir bundled; True/False; False also for rows of versions before "
                               "2026-12-07, which did not record it): the group report then does not advise "
                               "pointing at the full template", None),
}
_PATTERNS: tuple[tuple[str, str, str | None], ...] = (
    (r"cc_(.+)_before", "Pearson correlation of {0} with the template on its ico-6 grid, unaligned", "Pearson r"),
    (r"cc_(.+)_rigid", "Pearson correlation of {0} with the template on its ico-6 grid, after the rigid rotation",
     "Pearson r"),
    (r"cc_(.+)_after", "Pearson correlation of {0} with the template on its ico-6 grid, after registration; "
     "n/a for a feature the row did not use", "Pearson r"),
    (r"J_(.+)", "log2 local-affine size change (wb_command -surface-distortion -local-affine-method): {0}",
     "log2 ratio"),
    (r"R_(.+)", "log2 local-affine anisotropy (the report's shape distortion): {0}", "log2 ratio"),
    (r"seconds_(.+)", "Wall time of the registration's {0} step", "s"),
    (r"template_(.+)", "Template provenance: {0} (the source repository's docs/templates.md)", None),
)

#: the statistic a J_/R_ column's suffix names
_STATISTICS = {"mean_abs": "mean of |value| over vertices", "p95_abs": "95th percentile of |value|",
               "max_abs": "largest |value|", "mean": "mean over vertices", "p95": "95th percentile",
               "max": "largest value"}


#: ``Levels`` (BIDS: each value a categorical column holds, and what it means) of the group table's true/false
#: columns, written ``True``/``False`` (:func:`_cell`: Python's words, which pandas reads as bool and R's
#: ``read.delim`` as logical), and of ``quality``; missing values are ``n/a``, as in every column
_LEVELS: dict[str, dict[str, str]] = {
    "quality": {"ok": "passed every quality gate", "flagged": "failed a quality gate (quality_reasons says which)",
                STALE: "the hemisphere's latest participant run failed: the row is an earlier run's"},
    "used_sphere_reg": {"True": "the rotation came from the FreeSurfer sphere.reg",
                        "False": "no sphere.reg, or one set aside: the maps gave the rotation"},
    "mirrored": {"True": "registered mirrored (x -> -x) by a network of the other hemisphere", "False": "not mirrored"},
    "cortex_mask": {"True": "a cortex mask restricted the registration",
                    "False": "no cortex mask: every vertex was registered"},
    "template_bundled_asked": {"True": "--template-dir bundled was given",
                               "False": "not asked (or not recorded: versions before 2026-12-07)"},
}
#: the ``Levels`` of a true/false column :data:`_LEVELS` does not describe (a registration record's newer switch)
_TRUE_FALSE = {"True": "true", "False": "false"}


def column_description(column: str) -> dict[str, Any]:
    """The data-dictionary entry of a group-table column: ``Description`` and, for a quantity,
    ``Units``, for a category its ``Levels`` (BIDS's keys)."""
    if column in _DESCRIBED:
        text, units = _DESCRIBED[column]
    else:
        text, units = (f"Registration metric {column} of the metrics JSON's registration object", None)
        for pattern, template, pattern_units in _PATTERNS:
            match = re.fullmatch(pattern, column)
            if match:
                what = _STATISTICS.get(match.group(1), match.group(1).replace("_", " "))
                text, units = template.format(what), pattern_units
                break
    return {"Description": text, **({"Units": units} if units else {}),
            **({"Levels": dict(_LEVELS[column])} if column in _LEVELS else {})}


def group_dictionary_text(table_text: str) -> str:
    """The data dictionary (:data:`~geomorph_bids.derivatives.GROUP_JSON`) of a group table's
    text: one entry per column of its header, in its order; a column :func:`column_description`
    gives no ``Levels`` whose every cell is ``True``, ``False`` or ``n/a`` gets true/false ones."""
    reader = csv.reader(io.StringIO(table_text, newline=""), delimiter="\t")
    header = next(reader, [])
    values: list[set[str]] = [set() for _ in header]
    for row in reader:
        for seen, cell in zip(values, row):
            seen.add(cell)
    entries = {c: column_description(c) for c in header}
    for column, seen in zip(header, values):
        if "Levels" not in entries[column] and seen - {"n/a"} and seen <= {"True", "False", "n/a"}:
            entries[column]["Levels"] = dict(_TRUE_FALSE)
    return json.dumps(entries, indent=2) + "\n"


def write_group_table(rows: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write rows as a BIDS TSV (``n/a`` for missing values), and its data dictionary beside it
    (the same name, ``.json``), atomically."""
    text = group_table_text(rows)
    atomic_write_text(Path(path).with_suffix(".json"), group_dictionary_text(text))
    return atomic_write_text(path, text)


def _number(value: Any) -> Any:
    if isinstance(value, str):
        if value in ("n/a", ""):
            return None
        try:
            f = float(value)
        except ValueError:
            return value
        return int(f) if f.is_integer() and "." not in value and "e" not in value.lower() else f
    return value


def parse_group_table(text: str) -> list[dict[str, Any]]:
    """The rows of a group table's text, as :func:`read_group_table` reads them from its file."""
    rows = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t")
    return [{k: ((None if v == "n/a" else v) if k in GROUP_COLUMNS else _number(v)) for k, v in row.items()}
            for row in rows]


def read_group_table(path: str | Path) -> list[dict[str, Any]]:
    with open(path, newline="", encoding="utf-8") as handle:  # as written, whatever the locale
        return parse_group_table(handle.read())


def _newest(paths: list[Path]) -> float:
    """The latest modification time of ``paths``; infinity when one cannot be read (a link to
    content that is not there, a DataLad output that was dropped): the table is then rebuilt,
    and the rebuild names that file."""
    try:
        return max(p.stat().st_mtime for p in paths)
    except OSError:
        return float("inf")


def group_table_rows(output_dir: str | Path, write: bool = True) -> tuple[list[dict[str, Any]], Path | None]:
    """Rows of the group table. The TSV the group level writes (:data:`GROUP_TSV`) is reused
    when it is newer than every participant metrics JSON, has a row for each and every column of
    :data:`GROUP_COLUMNS` (a table an earlier version wrote lacks some, and reads its metrics as
    that version did: it is rebuilt); otherwise the
    rows are rebuilt from the readable JSON files (:func:`group_rows`) and, when ``write``,
    written to ``GROUP_TSV``.
    Returns (rows, TSV path or None)."""
    output_dir = Path(output_dir)
    tsv = output_dir / GROUP_TSV
    jsons = metrics_files(output_dir)
    if tsv.is_file() and (not jsons or tsv.stat().st_mtime >= _newest(jsons)):
        rows = read_group_table(tsv)
        # an earlier version's table (a column missing): rebuilt
        current = not rows or all(c in rows[0] for c in (*GROUP_COLUMNS, *TRAILING_COLUMNS))
        if current and (not jsons or len(rows) == len(jsons)):  # outputs removed since: rebuilt
            return rows, tsv
    if not jsons:
        return [], None
    rows = group_rows(output_dir, unreadable=[])  # the group level names the damaged files
    if write and rows:
        write_group_table(rows, tsv)
    return rows, tsv if tsv.is_file() else None

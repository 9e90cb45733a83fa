"""The group report: the group TSV, robust z-scores, outliers and links."""

from __future__ import annotations

import csv
import json
import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from geomorph_bids.reports import build_group_report, build_participant_report
from geomorph_bids.derivatives import GROUP_TSV
from geomorph_bids.reports.group import outliers, robust_z
from geomorph_bids.reports.group_table import group_table_rows
from geomorph_bids.reports.figures import png_size


def test_robust_z():
    z = robust_z([1.0, 2.0, 3.0, 4.0, 100.0])
    assert z[2] == 0 and z[4] > 3.5 and abs(z[0]) < 3.5
    assert np.isclose(z[3], 0.6745 * 1 / 1.0)  # MAD = 1
    same = robust_z([0, 0, 0, 0, 5])  # MAD 0: mean absolute deviation instead
    assert same[4] > 3.5 and np.all(same[:4] == 0)
    assert np.all(robust_z([2, 2, 2]) == 0)
    z = robust_z([1.0, None, 2.0])
    assert np.isnan(z[1]) and np.all(z[[0, 2]] == 0)  # fewer than 3 values: nothing flagged


def _tsv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_group_table_and_report(outputs):
    build_participant_report(outputs, "01")
    html = build_group_report(outputs)
    assert html == outputs / "group.html"
    rows = _tsv(outputs / GROUP_TSV)
    assert [(r["subject"], r["session"], r["hemi"]) for r in rows] == [
        ("01", "n/a", "L"), ("01", "n/a", "R"), ("02", "n/a", "L"), ("02", "n/a", "R"), ("03", "n/a", "L")]
    for col in ("cc_sulc_before", "cc_sulc_after", "areal_mean_abs", "R_mean", "n_folded", "seconds_total"):
        assert all(r[col] not in ("", "n/a") for r in rows), col
    text = html.read_text()
    assert 'href="sub-01.html#sub-01_hemi-L_space-fsaverage"' in text  # linked when the report exists
    assert "sub-02 L" in text and 'href="sub-02.html' not in text
    fig = outputs / "figures" / "group_desc-distributions_metrics.png"
    w, h = png_size(fig)
    assert w > 600 and h > 200


def _cohort(out, src, n=10):
    """n subjects x 2 hemispheres of metrics JSON (copies of ``src`` with small changes); sub-17 R bad."""
    spread = np.random.default_rng(1).permutation(np.linspace(-1.0, 1.0, 2 * n))  # no tails: |z| <= 1.35
    for i in range(n):
        for hemi in "LR":
            doc = json.loads(json.dumps(src))
            doc.update(subject=f"1{i}", hemi=hemi)
            reg = doc["registration"]
            k = 2 * i + (hemi == "R")
            reg["cc_sulc_after"] = 0.9 + 0.01 * spread[k]
            reg["areal_mean_abs"] = 0.1 + 0.01 * spread[::-1][k]
            if (i, hemi) == (7, "R"):
                reg["cc_sulc_after"] = 0.5
            p = out / f"sub-1{i}/anat/sub-1{i}_hemi-{hemi}_space-fsaverage_desc-geomorph_metrics.json"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps(doc))
            _sphere_beside(p)


def _sphere_beside(metrics: Path) -> None:
    """A stand-in for the registered sphere the group level expects beside a metrics file."""
    metrics.with_name(metrics.name.replace("_metrics.json", "_sphere.surf.gii")).write_bytes(b"gifti")


def test_outliers_are_only_the_hemispheres_worse_than_their_cohort():
    """A hemisphere that registered better than the others (higher CC, less distortion) or faster
    is no outlier: the group report listed CC after 0.995 among 0.96s (z +7.7), areal p95 0.27 among
    0.33s (z -3.8) and a quicker run (z -4.9) beside the failures it is there to show."""
    rows = [{"subject": f"{k:02d}", "hemi": "L", "template": "fsLR", "cc_sulc_after": 0.96 + 0.001 * k,
             "cc_sulc_rigid": 0.86 + 0.001 * k, "areal_p95_abs": 0.33 + 0.001 * k, "seconds_total": 1.7 + 0.01 * k}
            for k in range(-5, 6)]
    odd = {"low cc": ("cc_sulc_after", 0.90), "high cc": ("cc_sulc_after", 0.995),
           "high rigid cc": ("cc_sulc_rigid", 0.99), "low distortion": ("areal_p95_abs", 0.20),
           "high distortion": ("areal_p95_abs", 0.60), "quick": ("seconds_total", 0.5), "slow": ("seconds_total", 30.0)}
    for name, (key, value) in odd.items():
        rows.append({**rows[5], "subject": name, key: value})
    found = {(rows[i]["subject"], key, round(z, 1) < 0) for i, key, _, z in outliers(rows)}
    assert found == {("low cc", "cc_sulc_after", True), ("high distortion", "areal_p95_abs", False),
                     ("slow", "seconds_total", False)}


def test_outliers_flagged_and_linked(outputs):
    src = json.loads((outputs / "sub-01/anat/sub-01_hemi-L_space-fsaverage_desc-geomorph_metrics.json").read_text())
    for d in ("sub-01", "sub-02", "sub-03"):
        shutil.rmtree(outputs / d)
    _cohort(outputs, src)
    rows, _ = group_table_rows(outputs)
    found = outliers(rows)
    assert {(rows[i]["subject"], rows[i]["hemi"], k) for i, k, _, _ in found} == {("17", "R", "cc_sulc_after")}
    build_participant_report(outputs, "17")
    text = build_group_report(outputs).read_text()
    outlier_section = text.split('id="outliers"')[1].split("</section>")[0]
    assert 'href="sub-17.html#sub-17_hemi-R_space-fsaverage"' in outlier_section and "CC after (sulc)" in outlier_section
    assert text.count('class="outlier"') == 1


def test_the_table_names_the_feature_of_each_correlation_column(outputs):
    """A cohort registered with several features (multimodal-fsLR: sulc, curv, myelin; fsaverage's
    default: sulc, curv): the page's table had three columns headed "CC before" (curv, myelin,
    sulc, in that order) and so on, nothing saying which was which, so the first ("curv") read as
    sulc's. Each header now names its feature."""
    path = outputs / "sub-01/anat/sub-01_hemi-L_space-fsaverage_desc-geomorph_metrics.json"
    doc = json.loads(path.read_text())
    doc["registration"].update(cc_curv_before=0.011, cc_curv_rigid=0.222, cc_curv_after=0.333,
                               registration_features=["sulc", "curv"])
    path.write_text(json.dumps(doc))
    text = build_group_report(outputs).read_text()
    table = text.split('id="table"')[1].split("</section>")[0]
    headers = [h.split(">", 1)[1] for h in table.split("</th>")[:-1]]
    for stage in ("before", "rigid", "after"):
        assert f"CC {stage} (sulc)" in headers and f"CC {stage} (curv)" in headers, headers
    assert len(headers) == len(set(headers)), headers
    cells = table.split("sub-01 L")[1].split("</tr>")[0]
    assert cells.index("0.011") < cells.index("0.222") < cells.index("0.333")


def test_reuses_newer_group_tsv(outputs):
    build_group_report(outputs)
    tsv = outputs / GROUP_TSV
    text = tsv.read_text().replace("\n03\t", "\n33\t", 1)
    tsv.write_text(text)
    later = max(p.stat().st_mtime for p in outputs.glob("sub-*/anat/*_metrics.json")) + 10
    os.utime(tsv, (later, later))
    rows, path = group_table_rows(outputs)
    assert path == tsv and rows[-1]["subject"] == "33" and isinstance(rows[-1]["subject"], str)
    assert "sub-33" in build_group_report(outputs).read_text()


def test_a_newer_group_tsv_of_an_earlier_version_is_rebuilt(outputs):
    """build_group_report(out) after an upgrade, on a folder whose group TSV an earlier version
    wrote after the last participant run: the table was reused as it was (no participant_id,
    session_id or software column; its metrics read as that version read them). A TSV without
    every current leading column is rebuilt."""
    build_group_report(outputs)
    tsv = outputs / GROUP_TSV
    lines = [ln.split("\t") for ln in tsv.read_text().splitlines()]
    header = lines[0]
    keep = [i for i, c in enumerate(header) if c not in ("participant_id", "session_id", "software")]
    tsv.write_text("".join("\t".join(cells[i] for i in keep) + "\n" for cells in lines))
    later = max(p.stat().st_mtime for p in outputs.glob("sub-*/anat/*_metrics.json")) + 10
    os.utime(tsv, (later, later))
    rows, path = group_table_rows(outputs)
    assert path == tsv and rows[0]["participant_id"] == "sub-01" and "software" in rows[0]
    assert tsv.read_text().splitlines()[0].split("\t") == header


def test_no_outputs(tmp_path):
    with pytest.raises(ValueError, match="no participant outputs"):
        build_group_report(tmp_path)


@pytest.mark.parametrize("cc", ["NaN", "Infinity", "7.0", "-1.5"])
def test_a_correlation_that_no_registration_gives_costs_its_row(tmp_path, cc):
    """json reads NaN and Infinity as numbers: an edited or damaged metrics file with one was a
    row judged "ok" (NaN), like a correlation of 7; now each is a one-line failure, as "high" is."""
    from geomorph_bids.reports.group_table import group_rows

    anat = tmp_path / "sub-01" / "anat"
    anat.mkdir(parents=True)
    path = anat / "sub-01_hemi-L_space-fsLR_desc-geomorph_metrics.json"
    path.write_text('{"subject": "01", "session": null, "hemi": "L", "registration": {"cc_sulc_after": %s}}' % cc)
    unreadable: list[str] = []
    assert group_rows(tmp_path, unreadable=unreadable) == []
    assert len(unreadable) == 1 and "holds no correlation for sulc" in unreadable[0] and str(path) in unreadable[0]


@pytest.mark.parametrize("key, value, says", [
    ("areal_p95_abs", '"huge"', "holds no number for registration.areal_p95_abs ('huge')"),
    ("n_folded", '"many"', "holds no number for registration.n_folded ('many')"),
    ("identity_cc_mirrored", "[0.9]", "holds no number for registration.identity_cc_mirrored ([0.9])"),
    ("cc_curv_after", "true", "holds no number for registration.cc_curv_after (True)"),
    ("n_folded", "-3", "holds a negative count for registration.n_folded (-3)"),
])
def test_a_gate_metric_that_is_no_number_costs_its_row(tmp_path, key, value, says):
    """Round nine: the quality gates pass a metric that is not a number (``assess`` judges only
    numbers, so that older files pass on what they have): an edited metrics file with
    ``areal_p95_abs: "huge"`` or ``n_folded: -3`` was a row judged ok, exit 0, in the group
    table and in ``--reports-only``. Now each is one FAILED line, as a correlation that is no
    number already was; null (not measured) still passes."""
    _edited_value_costs_its_row(tmp_path, '"areal_p95_abs": null, "%s": %s', key, value,
                                "null" if key != "n_folded" else "0", says)


@pytest.mark.parametrize("key, value, says", [
    ("areal_p95_abs", "1e308", "holds 1e+308 for registration.areal_p95_abs, which is a number from 0 to 2100"),
    ("n_folded", "1" + "0" * 30, "holds a number of 31 digits for registration.n_folded, which is a whole number "
                                "from 0 to 2.14748e+09"),
    ("n_folded", "2.5", "holds 2.5 for registration.n_folded, which is a whole number"),
    ("seconds_total", "1e308", "holds 1e+308 for registration.seconds_total"),
    ("R_mean", "-1e300", "holds -1e+300 for registration.R_mean"),
    ("identity_cc_own", "3.0", "holds 3 for registration.identity_cc_own, which is a number from -1 to 1"),
    ("cc_curv_rigid", "NaN", "holds nan for registration.cc_curv_rigid"),
])
def test_a_plotted_or_gated_number_beyond_what_it_can_be_costs_its_row_not_the_group_page(tmp_path, key, value,
                                                                                          says):
    """Found by the fuzz pass (fix-ak): a metrics file with ``areal_p95_abs`` or ``n_folded`` 1e308 ended the
    whole group level on `error: arange: cannot compute length` (no file named, no page for anyone), and
    10**30 with a TypeError traceback from the page's figure. Now each is one FAILED line naming the file,
    its row left out, the others' page built."""
    _edited_value_costs_its_row(tmp_path, '"%s": %s', key, value, "0", says)


def _edited_value_costs_its_row(tmp_path: Path, entries: str, key: str, bad: str, good: str, says: str) -> None:
    """sub-01's metrics with ``entries % (key, bad)`` among its registration's numbers: refused on
    one line that says ``says`` and names the file, no row; with ``good`` instead: one row, and
    nothing more refused."""
    from geomorph_bids.reports.group_table import group_rows

    anat = tmp_path / "sub-01" / "anat"
    anat.mkdir(parents=True)
    path = anat / "sub-01_hemi-L_space-fsLR_desc-geomorph_metrics.json"
    text = ('{"subject": "01", "session": null, "hemi": "L", "registration": {"registration_features": ["sulc", '
            '"curv"], "cc_sulc_after": 0.9, ' + entries + '}}')
    path.write_text(text % (key, bad))
    _sphere_beside(path)
    unreadable: list[str] = []
    assert group_rows(tmp_path, unreadable=unreadable) == []
    assert len(unreadable) == 1 and says in unreadable[0] and str(path) in unreadable[0], unreadable
    path.write_text(text % (key, good))
    assert len(group_rows(tmp_path, unreadable=unreadable)) == 1 and len(unreadable) == 1


@pytest.mark.parametrize("edit, says", [
    ({"quality": {"flagged": False, "reasons": True}}, "holds {'flagged': False, 'reasons': True} for quality, "
                                                       "which is an object with a list of reasons"),
    ({"quality": {"flagged": False, "reasons": 1e308}}, "for quality, which is an object"),
    ({"quality": "ok"}, "holds 'ok' for quality"),
    ({"features": 5}, "holds 5 for features, which is a list of map names"),
    ({"registration": {"registration_features": 5, "cc_sulc_after": 0.9}},
     "holds 5 for registration.registration_features"),
    ({"registration": {"registration_features": [1], "cc_sulc_after": 0.9}},
     "holds [1] for registration.registration_features"),
])
def test_a_quality_or_feature_list_that_is_not_what_we_write_costs_its_row(tmp_path, edit, says):
    """Found by the fuzz pass (fix-ak): ``quality.reasons`` true, -1 or 1e308 ended the group level in a
    TypeError traceback (`'bool' object is not iterable`), as a ``registration_features`` of 5 did. Now one
    FAILED line naming the file, the row left out."""
    from geomorph_bids.reports.group_table import group_rows

    anat = tmp_path / "sub-01" / "anat"
    anat.mkdir(parents=True)
    path = anat / "sub-01_hemi-L_space-fsLR_desc-geomorph_metrics.json"
    doc = {"subject": "01", "session": None, "hemi": "L", "quality": {"flagged": False, "reasons": []},
           "registration": {"registration_features": ["sulc"], "cc_sulc_after": 0.9}}
    path.write_text(json.dumps({**doc, **edit}))
    _sphere_beside(path)
    unreadable: list[str] = []
    assert group_rows(tmp_path, unreadable=unreadable) == []
    assert len(unreadable) == 1 and says in unreadable[0] and str(path) in unreadable[0], unreadable
    path.write_text(json.dumps(doc))
    assert len(group_rows(tmp_path, unreadable=unreadable)) == 1 and len(unreadable) == 1


def test_a_number_beyond_what_it_can_be_in_one_metrics_file_leaves_the_others_group_page(outputs):
    """The same through the group level: one FAILED line naming the file, the page of the others."""
    path = next((outputs / "sub-02" / "anat").glob("sub-02_hemi-L_space-*_desc-geomorph_metrics.json"))
    doc = json.loads(path.read_text())
    doc["registration"]["n_folded"] = 10 ** 30
    path.write_text(json.dumps(doc))
    code, err = _group(outputs)
    assert code == 1 and "Traceback" not in err, err
    failed = [line for line in err.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and str(path) in failed[0] and "registration.n_folded" in failed[0], err
    assert (outputs / "group.html").is_file()


def test_a_metrics_file_dropped_by_datalad_costs_its_row_not_the_group_report(outputs):
    """An output dataset saved with DataLad, one metrics file dropped (a link to annexed content
    that is not there), then the group level again: the reuse check stat()ed every metrics file
    and the whole group level ended on `error: no such file at ...` (no table, no report). Now
    the table is rebuilt from the others and the file is named with what to do."""
    from geomorph_bids.reports.group_table import group_rows

    build_group_report(outputs)  # the table exists: the next call first checks whether it is fresh
    dropped = next((outputs / "sub-02" / "anat").glob("sub-02_hemi-L_space-*_desc-geomorph_metrics.json"))
    dropped.unlink()
    dropped.symlink_to("../../.git/annex/objects/Xq/9v/MD5E-s3822--0a1b.json/MD5E-s3822--0a1b.json")
    report = build_group_report(outputs)
    rows, _ = group_table_rows(outputs)
    assert sorted((r["subject"], r["hemi"]) for r in rows) == [("01", "L"), ("01", "R"), ("02", "R"), ("03", "L")]
    assert "sub-01" in report.read_text()
    unreadable: list[str] = []
    group_rows(outputs, unreadable=unreadable)
    assert len(unreadable) == 1 and str(dropped) in unreadable[0] and "datalad get" in unreadable[0]


def _group(outputs, *options):
    """``geomorph-bids BIDS OUT group`` on the report fixtures (exit code, stderr)."""
    import contextlib
    import io

    from geomorph_bids.cli.bids import main

    bids = outputs.parent / "bids"
    bids.mkdir(exist_ok=True)
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.9.0"}))
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main([str(bids), str(outputs), "group", *options])
    return code, err.getvalue()


def test_the_group_level_lists_and_reads_the_metrics_once(outputs, monkeypatch):
    """The group level read every metrics JSON for the table, then the group report listed and
    stat()ed them all again and read the TSV back: two listings of a 20,000-file tree. Now the
    report is built from the rows the group level wrote, as the TSV holds them."""
    from geomorph_bids.reports import group_table

    calls = []
    real = group_table.metrics_files
    monkeypatch.setattr(group_table, "metrics_files", lambda *a, **k: calls.append(a) or real(*a, **k))
    code, _ = _group(outputs)
    assert code in (0, 3) and len(calls) == 1
    monkeypatch.undo()
    first = (outputs / "group.html").read_text()
    build_group_report(outputs)  # from the TSV, as before: the same page (but for when it was built)
    strip = lambda t: t.split('<section id="about">')[0]  # noqa: E731
    assert strip((outputs / "group.html").read_text()) == strip(first)


def test_a_damaged_metrics_file_no_longer_replaces_the_judged_table(outputs):
    """With one metrics file damaged, the group report found fewer rows in the TSV than metrics
    files and rewrote the TSV from the files: the group level's verdict (here --min-cc 0.999,
    which flags every hemisphere) was replaced by the verdicts recorded by the participant level."""
    bad = next((outputs / "sub-02" / "anat").glob("*hemi-L*_metrics.json"))
    bad.write_text("{not json")
    code, err = _group(outputs, "--min-cc", "0.999")
    assert code == 1 and f"FAILED {bad}" in err
    rows = _tsv(outputs / GROUP_TSV)
    assert len(rows) == 4 and {r["quality"] for r in rows} == {"flagged"}


def test_a_metrics_file_renamed_to_another_template_costs_its_row(outputs):
    """A metrics file copied to another template's name (``space-fsLR``) with its sphere was a
    second row for the hemisphere, under the template the document does not record."""
    metrics = next((outputs / "sub-02" / "anat").glob("*hemi-L_space-fsaverage_desc-geomorph_metrics.json"))
    moved = metrics.with_name(metrics.name.replace("space-fsaverage", "space-fsLR"))
    moved.write_bytes(metrics.read_bytes())
    _sphere_beside(moved)
    code, err = _group(outputs)
    assert code == 1 and f"FAILED {moved}: is named for space-fsLR but records template 'fsaverage'" in err
    assert len(_tsv(outputs / GROUP_TSV)) == 5


@pytest.mark.parametrize("damage", ["deleted", "emptied"])
def test_a_registered_sphere_gone_after_the_participant_level_costs_its_row(outputs, damage):
    """A registered sphere deleted (or emptied) after the participant level still gave its
    hemisphere an ``ok`` row, exit 0, from the metrics file left beside it. Now it is one FAILED
    line naming the sphere and saying what to do, and the other rows are kept."""
    sphere = next((outputs / "sub-02" / "anat").glob("*hemi-L_space-*_desc-geomorph_sphere.surf.gii"))
    if damage == "deleted":
        sphere.unlink()
    else:
        sphere.write_bytes(b"")
    code, err = _group(outputs)
    why = "is missing beside its metrics file" if damage == "deleted" else "is empty"
    assert code == 1 and f"FAILED sub-02 hemi-L {sphere}: {why}" in err and "rerun the participant level" in err
    rows = _tsv(outputs / GROUP_TSV)
    assert len(rows) == 4 and ("02", "L") not in {(r["subject"], r["hemi"]) for r in rows}


def test_reports_only_of_one_participant_reads_only_its_metrics(outputs, monkeypatch):
    """``--reports-only --participant-label 01`` (a sample of a cohort's reports, README) read
    every participant's metrics JSON and kept those of 01: 20,000 reads in a 10,000-subject
    folder for one report, and a FAILED line (exit 1) for another participant's damaged file."""
    import contextlib
    import io

    from geomorph_bids.cli.bids import main
    from geomorph_bids.reports import group_table

    next((outputs / "sub-02" / "anat").glob("*hemi-L*_metrics.json")).write_text("{not json")
    read = []
    real = group_table.read_json_files
    monkeypatch.setattr(group_table, "read_json_files", lambda paths, **k: read.extend(paths) or real(paths, **k))
    bids = outputs.parent / "bids"
    bids.mkdir()
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.9.0"}))
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main([str(bids), str(outputs), "participant", "--reports-only", "--participant-label", "sub-01"])
    assert code == 0 and "FAILED" not in err.getvalue(), err.getvalue()
    assert sorted(p.name.split("_")[0] for p in read) == ["sub-01", "sub-01"]
    assert (outputs / "sub-01.html").is_file() and not (outputs / "sub-02.html").exists()


def test_a_cohort_page_lists_the_outlying_and_flagged_rows_and_leaves_the_rest_to_the_tsv(outputs, monkeypatch):
    """group.html held one table row per hemisphere: 5.8 MB at 10,000 subjects (29 MB at
    50,000). Above TABLE_MAX_ROWS rows the table lists the outliers and the hemispheres flagged
    by the quality gates only, says how many there are in all and links the TSV (every row)."""
    from geomorph_bids.reports import group as group_module

    src = json.loads((outputs / "sub-01/anat/sub-01_hemi-L_space-fsaverage_desc-geomorph_metrics.json").read_text())
    for d in ("sub-01", "sub-02", "sub-03"):
        shutil.rmtree(outputs / d)
    _cohort(outputs, src)
    doc = outputs / "sub-12/anat/sub-12_hemi-L_space-fsaverage_desc-geomorph_metrics.json"
    flagged = json.loads(doc.read_text())
    flagged["quality"] = {"flagged": True, "reasons": ["folded"]}
    doc.write_text(json.dumps(flagged))
    full = build_group_report(outputs).read_text()
    assert full.split('id="table"')[1].split("</section>")[0].count("<tr") == 21  # header + every row
    monkeypatch.setattr(group_module, "TABLE_MAX_ROWS", 5)
    text = build_group_report(outputs).read_text()
    table = text.split('id="table"')[1].split("</section>")[0]
    assert "20 hemispheres, more than 5" in table and f'href="{GROUP_TSV}"' in table
    assert table.count("<tr") == 3 and "sub-17 R" in table and "sub-12 L" in table  # header, outlier, flagged
    assert len(_tsv(outputs / GROUP_TSV)) == 20


def test_the_group_level_lists_unreadable_metrics_files_in_the_report(outputs):
    bad = next((outputs / "sub-02" / "anat").glob("*hemi-L*_metrics.json"))
    bad.write_text("{not json")
    _group(outputs)
    text = (outputs / "group.html").read_text()
    assert "1 metrics file(s) could not be read" in text and bad.name in text


def test_the_distributions_name_at_most_a_few_outliers_each(tmp_path, monkeypatch):
    """Every outlier's label was drawn into the strip plot: a cohort's hundreds covered it."""
    from matplotlib.axes import Axes

    from geomorph_bids.reports.figures import group_figure

    named = []
    real = Axes.annotate
    monkeypatch.setattr(Axes, "annotate", lambda self, text, *a, **k: named.append(text) or real(self, text, *a, **k))
    points = [(f"sub-{i}", float(i % 7), False) for i in range(200)]
    points += [(f"far-{i}", 100.0 + i, True) for i in range(40)]
    group_figure(tmp_path / "g.png", {"m": points}, max_labels=5)
    assert named == [f"far-{i}" for i in range(35, 40)]
    named.clear()
    group_figure(tmp_path / "g.png", {"m": points[:200] + [(f"x-{i}", 50.0, True) for i in range(3)]})
    assert named == ["x-0", "x-1", "x-2"]  # fewer than max_labels: each named, as before


def test_outliers_are_judged_within_each_template(outputs):
    """An fsLR run, ``group --build-template``, then ``participant --template geomorphPopulation``
    for some subjects: the group report took robust z-scores over both templates' rows together
    and flagged every population-template row (CC after 0.998 against fsLR's ~0.9: z +14.5), and
    its table had no template column (``sub-10 L`` twice). Now each template's rows are judged
    among themselves and the table names each row's template."""
    src = json.loads((outputs / "sub-01/anat/sub-01_hemi-L_space-fsaverage_desc-geomorph_metrics.json").read_text())
    for d in ("sub-01", "sub-02", "sub-03"):
        shutil.rmtree(outputs / d)
    _cohort(outputs, src)
    for i, hemi in ((0, "L"), (0, "R"), (1, "L"), (1, "R"), (2, "L")):
        doc = json.loads((outputs / f"sub-1{i}/anat/sub-1{i}_hemi-{hemi}_space-fsaverage_desc-geomorph_metrics.json")
                         .read_text())
        doc["template"] = doc["registration"]["template"] = "geomorphPopulation"
        doc["registration"]["cc_sulc_after"] = 0.998 - 0.0001 * i
        population = outputs / f"sub-1{i}/anat/sub-1{i}_hemi-{hemi}_space-geomorphPopulation_desc-geomorph_metrics.json"
        population.write_text(json.dumps(doc))
        _sphere_beside(population)
    rows, _ = group_table_rows(outputs)
    found = outliers(rows)
    assert {(rows[i]["subject"], rows[i]["hemi"], rows[i]["template"], k) for i, k, _, _ in found} == {
        ("17", "R", "fsaverage", "cc_sulc_after")}
    tsv = _tsv(outputs / GROUP_TSV)
    assert list(tsv[0])[:6] == ["subject", "session", "hemi", "quality", "quality_reasons", "template"]
    assert [(r["hemi"], r["template"]) for r in tsv if r["subject"] == "10"] == [
        ("L", "fsaverage"), ("L", "geomorphPopulation"), ("R", "fsaverage"), ("R", "geomorphPopulation")]
    text = build_group_report(outputs).read_text()
    assert "MAD within each template's rows" in text and text.count('class="outlier"') == 1
    table = text.split('id="table"')[1].split("</section>")[0]
    assert ">template</th>" in table and table.count(">geomorphPopulation</td>") == 5
    assert "fsaverage (20 rows), geomorphPopulation (5 rows)" in text
    code, err = _group(outputs, "--min-cc", "0.9985")  # flags every row: each line names its template
    assert code == 3 and "FLAGGED sub-10 hemi-L: space-fsaverage: " in err and "space-geomorphPopulation" in err


@pytest.mark.parametrize("entry", ["file", "dangling link"])
def test_a_subject_entry_that_is_no_folder_costs_a_failed_line(outputs, entry):
    """A ``sub-04`` that is a file, or a link to a folder that is gone (outputs moved to another
    disk), was left out of the group table without a word, exit 0. Now it is one FAILED line
    naming it, in the report too, and the other rows are kept (exit 1)."""
    stray = outputs / "sub-04"
    if entry == "file":
        stray.write_text("x")
    else:
        stray.symlink_to(outputs.parent / "moved-away" / "sub-04")
    code, err = _group(outputs)
    what = "is not a folder" if entry == "file" else "is a link to a folder that is gone"
    assert code == 1 and f"FAILED sub-04: {stray} {what}" in err
    assert len(_tsv(outputs / GROUP_TSV)) == 5
    assert f"{stray} {what}" in (outputs / "group.html").read_text()
    # sub-01.html and other names that are no subject label are not subjects
    assert "sub-01.html" not in err


def test_participants_of_the_dataset_without_outputs_are_named(outputs):
    """Participants of the input dataset with no outputs at all (not run yet, or every
    hemisphere failed) were simply absent from the table, exit 0. One warning line (and the
    report) now names them; the exit code stays that of the rows."""
    bids = outputs.parent / "bids"
    for s in ("01", "02", "03", "05", "06"):
        (bids / f"sub-{s}" / "anat").mkdir(parents=True)
    code, err = _group(outputs)
    line = (f"warning: 2 participant(s) of the dataset have no outputs in {outputs} and no row: 05, 06 "
            "(not run yet, failed at the participant level, or left out by its selection)")
    assert line in err and code in (0, 3) and "FAILED" not in err
    assert "05, 06 (not run yet" in (outputs / "group.html").read_text()
    code, err = _group(outputs, "--participant-label", "01", "06")
    assert "1 participant(s) of --participant-label have no outputs" in err and ": 06 (not run yet" in err
    shutil.rmtree(bids / "sub-05"), shutil.rmtree(bids / "sub-06")
    code, err = _group(outputs)
    assert "have no outputs" not in err


def test_sessions_with_anatomy_but_no_outputs_are_named(outputs):
    """A longitudinal dataset whose participant level ran for ses-1 only (--session-label 1), or
    whose ses-2 failed whole: the participant has rows, so the participants' line said nothing and
    the table was one session short in silence. One warning line (and the report) names each
    session with anatomy in the inputs and no row; a session without anatomy (functional scans
    alone) and participants with session-less rows (anatomy shared by their sessions) are not."""
    anat = outputs / "sub-02" / "anat"
    ses = outputs / "sub-02" / "ses-1" / "anat"
    ses.mkdir(parents=True)
    for f in anat.iterdir():
        target = ses / f.name.replace("sub-02_", "sub-02_ses-1_")
        if f.name.endswith("_metrics.json"):
            doc = json.loads(f.read_text())
            target.write_text(json.dumps({**doc, "session": "1"}))
        else:
            f.rename(target)
    shutil.rmtree(anat)
    bids = outputs.parent / "bids"
    for s in ("01", "03"):
        (bids / f"sub-{s}" / "ses-1" / "anat").mkdir(parents=True)  # shared anatomy: not looked at
        (bids / f"sub-{s}" / "ses-2" / "anat").mkdir(parents=True)
    for s in ("1", "2"):
        (bids / "derivatives" / "smriprep" / "sub-02" / f"ses-{s}" / "anat").mkdir(parents=True)
    (bids / "sub-02" / "ses-3" / "func").mkdir(parents=True)
    code, err = _group(outputs)
    line = (f"warning: 1 session(s) with anatomy in the inputs have no outputs in {outputs} and no row: sub-02 ses-2 "
            "(not run yet, e.g. a run with --session-label, or failed at the participant level)")
    assert line in err and code in (0, 3) and "FAILED" not in err and "participant(s)" not in err, err
    assert "sub-02 ses-2 (not run yet" in (outputs / "group.html").read_text()
    tsv = (outputs / "group_desc-geomorph_metrics.tsv").read_text().splitlines()
    assert [r.split("\t")[:3] for r in tsv[1:] if r.startswith("02")] == [["02", "1", "L"], ["02", "1", "R"]]
    (bids / "derivatives" / "smriprep" / "sub-02" / "ses-2" / "anat").rmdir()
    code, err = _group(outputs)
    assert "have no outputs" not in err


def test_flagged_and_failed_hemispheres_are_at_the_top_of_the_group_page(outputs):
    """A rater reading group.html: a hemisphere flagged by the quality gates was one word,
    ``flagged``, in the table's last column (highlighted only when it was also an outlier, and
    neither the gate nor its threshold said anywhere on the page), and a hemisphere whose
    participant run failed (sub-03 hemi-R: its crash file, no outputs) was on the page nowhere:
    sub-03 had a row, so no line named it. Both are now listed at the top, the flagged row with
    the gate, its value and the threshold, the failed one with its error and crash file (also on
    a warning line), and a flagged row is marked in the table."""
    path = outputs / "sub-02" / "anat" / "sub-02_hemi-L_space-fsaverage_desc-geomorph_metrics.json"
    doc = json.loads(path.read_text())
    floor = round(doc["registration"]["cc_sulc_after"] + 0.01, 3)
    doc["quality"] = {"flagged": True, "reasons": [], "thresholds": {"min_cc_after": floor}}
    path.write_text(json.dumps(doc))
    code, err = _group(outputs)
    assert code == 3 and "FLAGGED sub-02 hemi-L" in err
    line = ("warning: 1 hemisphere(s) failed at the participant level and have no row (rerun the participant level "
            "for them):\n  sub-03 hemi-R: InputError: lh.sulc: feature has NaN values "
            "(logs/crash-abc/crash-20260101-000000-user-register-x.txt)")
    assert line in err
    text = (outputs / "group.html").read_text()
    top = text[:text.index('id="distributions"')]
    assert "1 hemisphere(s) flagged by the quality gates" in top
    assert f"(minimum {floor:g})" in top and 'href="sub-02.html' not in top  # no report to link to
    assert "sub-03 hemi-R: InputError: lh.sulc: feature has NaN values" in top
    build_participant_report(outputs, "03")  # its report lists the crash: the line links to it
    _group(outputs)
    assert '<a href="sub-03.html#errors">sub-03 hemi-R</a>: InputError' in (outputs / "group.html").read_text()
    table = text[text.index('id="table"'):]
    flagged_rows = [tr for tr in table.split("<tr")[1:] if 'class="flagged"' in tr]
    assert len(flagged_rows) == 1 and "sub-02 L" in flagged_rows[0]
    # a later run of the failed hemisphere that succeeded gives it a row: it is no longer listed
    shutil.copy(outputs / "sub-03" / "anat" / "sub-03_hemi-L_space-fsaverage_desc-geomorph_metrics.json",
                outputs / "sub-03" / "anat" / "sub-03_hemi-R_space-fsaverage_desc-geomorph_metrics.json")
    doc = json.loads((outputs / "sub-03" / "anat" / "sub-03_hemi-R_space-fsaverage_desc-geomorph_metrics.json")
                     .read_text())
    (outputs / "sub-03" / "anat" / "sub-03_hemi-R_space-fsaverage_desc-geomorph_metrics.json").write_text(
        json.dumps({**doc, "hemi": "R"}))
    shutil.copy(outputs / "sub-03" / "anat" / "sub-03_hemi-L_space-fsaverage_desc-geomorph_sphere.surf.gii",
                outputs / "sub-03" / "anat" / "sub-03_hemi-R_space-fsaverage_desc-geomorph_sphere.surf.gii")
    code, err = _group(outputs)
    assert "failed at the participant level" not in err, err
    assert "NaN values" not in (outputs / "group.html").read_text()


def test_the_pages_say_which_way_each_metric_is_better_and_the_group_table_its_units(outputs):
    """A rater reading the metrics tables: neither page said that a higher CC is better while
    distortion, folds and run time are better low (0: none), and the group table's distortion
    headers had no unit (``areal mean``, ``shape mean``: |log2| and log2 in the outlier table).
    The template maps of the group summary did not say which hemisphere each line was."""
    build_participant_report(outputs, "01")
    text = build_group_report(outputs).read_text()
    table = text[text.index('id="table"'):]
    assert "areal mean |log2|" in table and "areal p95 |log2|" in table and "shape mean (log2)" in table
    assert "CC: higher is better (1: the template&#x27;s map)" in text and "lower is better (0: none)" in text
    participant = (outputs / "sub-01.html").read_text()
    metrics = participant[participant.index('id="metrics"'):]
    assert "CC: higher is better (1: the template&#x27;s map)" in metrics and "lower is better (0: none)" in metrics
    summary = text[text.index('id="summary"'):text.index("</section>")]
    assert "hemi-L: " in summary and "hemi-R: " in summary


def test_the_group_table_has_bids_join_keys_and_a_data_dictionary_of_every_column(outputs):
    """An analyst joining the group table to participants.tsv: its only subject column held
    ``01`` (pandas reads it as the integer 1), while participants.tsv's key is ``participant_id``
    ``sub-01``; and no JSON data dictionary said what each column is, nor its units (BIDS
    recommends one beside a TSV). ``participant_id`` / ``session_id`` are added after the columns
    earlier versions wrote (which keep their places), and the group level writes
    ``group_desc-geomorph_metrics.json`` describing every column of the TSV, with units for the
    quantities."""
    from geomorph_bids.derivatives import GROUP_JSON, bidsignore_lines

    ses = outputs / "sub-02" / "ses-1" / "anat"  # one participant with a session, the others without
    ses.mkdir(parents=True)
    for f in (outputs / "sub-02" / "anat").iterdir():
        target = ses / f.name.replace("sub-02_", "sub-02_ses-1_")
        if f.name.endswith("_metrics.json"):
            target.write_text(json.dumps({**json.loads(f.read_text()), "session": "1"}))
        else:
            f.rename(target)
    shutil.rmtree(outputs / "sub-02" / "anat")
    code, err = _group(outputs)
    assert code in (0, 1, 3), err
    header = (outputs / GROUP_TSV).read_text().splitlines()[0].split("\t")
    assert header[:9] == ["subject", "session", "hemi", "quality", "quality_reasons", "template", "method",
                          "input_source", "sulc_sign"]  # unchanged places
    rows = _tsv(outputs / GROUP_TSV)
    assert [(r["participant_id"], r["session_id"], r["hemi"]) for r in rows] == [
        ("sub-01", "n/a", "L"), ("sub-01", "n/a", "R"), ("sub-02", "ses-1", "L"), ("sub-02", "ses-1", "R"),
        ("sub-03", "n/a", "L")]
    dictionary = json.loads((outputs / GROUP_JSON).read_text())
    assert list(dictionary) == header  # every column, in the TSV's order
    assert all(d["Description"] and "Registration metric" not in d["Description"] for d in dictionary.values())
    assert dictionary["cc_sulc_after"]["Units"] == "Pearson r" and "sulc" in dictionary["cc_sulc_after"]["Description"]
    assert dictionary["areal_mean_abs"]["Units"] == "log2 ratio" and dictionary["seconds_total"]["Units"] == "s"
    assert dictionary["rotation_deg"]["Units"] == "degrees" and "participants.tsv" in dictionary["participant_id"][
        "Description"]
    assert "/" + GROUP_JSON in bidsignore_lines()
    from geomorph_bids.reports.group_table import column_description

    for column in ("network_batch", "output_unfold_iterations", "cortex_fraction_on_template", "seconds_network",
                   "cc_myelin_after", "identity_cc_negated", "reg_sphere_set_aside", "J_p95_abs"):
        assert "Registration metric" not in column_description(column)["Description"], column  # other runs' columns


def test_missing_values_are_n_a_and_each_row_one_line_whatever_a_metrics_file_holds(outputs):
    """A metrics file edited by hand or written by another tool (Python's json reads ``NaN``):
    its NaN became the cell ``nan``, an empty string an empty cell, and a line break in a text a
    quoted cell over two lines; pandas and R read them, but not as BIDS's ``n/a``, and ``cut`` /
    ``awk`` saw a row split in two. Missing is ``n/a``, text is one line; numbers are kept."""
    from geomorph_bids.reports.group_table import group_rows, group_table_text

    path = outputs / "sub-02" / "anat" / "sub-02_hemi-L_space-fsaverage_desc-geomorph_metrics.json"
    doc = json.loads(path.read_text())
    doc["registration"].update(R_max=float("nan"), reg_sphere_set_aside="", device="cpu\nline two\tend",
                               edge_mean=0.25)
    path.write_text(json.dumps(doc))  # NaN: json.dumps writes it, json.loads reads it
    text = group_table_text(group_rows(outputs))
    lines = text.split("\n")
    assert len(lines) == 1 + 5 + 1 and lines[-1] == ""  # header, 5 rows, the final newline
    header = lines[0].split("\t")
    row = dict(zip(header, next(line for line in lines if line.startswith("02\tn/a\tL")).split("\t")))
    assert len(row) == len(header)
    assert row["R_max"] == "n/a" and row["reg_sphere_set_aside"] == "n/a" and row["device"] == "cpu line two end"
    assert row["edge_mean"] == "0.25"
    cells = [c for line in lines[1:-1] for c in line.split("\t")]
    assert not {"", "nan", "NaN", "None"} & set(cells)


def test_an_earlier_versions_count_of_the_bundled_maps_is_read_as_this_versions(outputs):
    """A lab's folder: sub-02 registered by a version before 2026-12-06, which recorded the bundled
    (40,962-vertex ico-6) maps with the vertex count of the maps they were built from (fsaverage:
    10,242) as ``template_vertices``; sub-01 and sub-03 by this one. The group table gave one file
    (the same template_sha256) two counts, 10242 and 40962, and the reports said ``10,242 vertices``
    for sub-02. Both now read the earlier record as this version writes it."""
    from geomorph_bids.reports.group_table import group_rows

    for hemi in "LR":
        path = outputs / "sub-02" / "anat" / f"sub-02_hemi-{hemi}_space-fsaverage_desc-geomorph_metrics.json"
        doc = json.loads(path.read_text())
        assert doc["registration"].pop("template_built_from_vertices") == 10242
        doc["registration"]["template_vertices"] = 10242
        path.write_text(json.dumps(doc))
    rows = group_rows(outputs)
    assert len(rows) == 5 and len({r["template_sha256"] for r in rows if r["hemi"] == "L"}) == 1
    assert {(r["template_vertices"], r["template_built_from_vertices"]) for r in rows} == {(40962, 10242)}
    text = build_participant_report(outputs, "02").read_text()
    assert "40,962 vertices (built from 10,242)" in text and "10,242 vertices, sha256" not in text


def test_each_row_says_which_build_made_it_and_a_table_of_several_builds_says_so(outputs):
    """A lab adds participants to a folder an earlier geomorph-bids wrote: nothing in the group
    table said which build made each row (every development build is version 0.1.0.dev0), so rows
    of two methods sat side by side unmarked. The TSV's ``software`` column (after the columns
    earlier versions wrote) gives each row's build, and the group level names the builds when
    there are several."""
    for hemi in "LR":
        path = outputs / "sub-02" / "anat" / f"sub-02_hemi-{hemi}_space-fsaverage_desc-geomorph_metrics.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "software": "geomorph-bids 0.1.0.dev0"}))
    code, err = _group(outputs)
    assert code in (0, 1, 3), err
    header = (outputs / GROUP_TSV).read_text().splitlines()[0].split("\t")
    assert header.index("software") == 11 and header[9:11] == ["participant_id", "session_id"]
    assert [(r["subject"], r["software"]) for r in _tsv(outputs / GROUP_TSV)] == [
        ("01", "geomorph-bids test"), ("01", "geomorph-bids test"), ("02", "geomorph-bids 0.1.0.dev0"),
        ("02", "geomorph-bids 0.1.0.dev0"), ("03", "geomorph-bids test")]
    line = next(ln for ln in err.splitlines() if "builds of geomorph-bids" in ln)
    assert line == ("geomorph-bids: warning: the rows were made by 2 builds of geomorph-bids "
                    f"({GROUP_TSV}'s software column): geomorph-bids 0.1.0.dev0: sub-02; geomorph-bids test: "
                    "sub-01, sub-03; their methods may differ: rerun the participant level of the earlier build's "
                    "participants to make the table one build's")
    for hemi in "LR":  # one build again: nothing said
        path = outputs / "sub-02" / "anat" / f"sub-02_hemi-{hemi}_space-fsaverage_desc-geomorph_metrics.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "software": "geomorph-bids test"}))
    assert "builds of geomorph-bids" not in _group(outputs)[1]


def test_outliers_are_told_apart_by_more_than_their_colour(outputs, monkeypatch):
    """An outlier's row was told from the others by its pale red background only, and the
    distributions figure drew outliers as red dots among blue ones (alike for a reader with
    deuteranopia) under the alternative text `distributions`."""
    import matplotlib.axes

    src = json.loads((outputs / "sub-01/anat/sub-01_hemi-L_space-fsaverage_desc-geomorph_metrics.json").read_text())
    for d in ("sub-01", "sub-02", "sub-03"):
        shutil.rmtree(outputs / d)
    _cohort(outputs, src)  # sub-17 R: CC after 0.5 among 0.89-0.91
    markers: list[tuple[int, str]] = []
    scatter = matplotlib.axes.Axes.scatter

    def recording(self, x, y, *args, **kwargs):
        markers.append((len(x), kwargs.get("marker", "o")))
        return scatter(self, x, y, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "scatter", recording)
    text = build_group_report(outputs).read_text()
    table = text.split('id="table"')[1].split("</section>")[0]
    row = next(tr for tr in table.split("<tr")[1:] if "sub-17 R" in tr)
    assert 'class="outlier"' in row and '<td class="">outlier</td>' in row  # its quality: not recorded here
    assert table.count("outlier</td>") == 1 and '<th scope="row" class="l">sub-17 R</th>' in row
    drawn_out = {m for n, m in markers if n == 1}  # the one outlier of CC after
    drawn_rest = {m for n, m in markers if n == 19}
    assert drawn_out == {"D"} and drawn_rest == {"o"}
    alt = re.search(r'<img class="fig" src="figures/[^"]+" alt="([^"]+)"', text).group(1)
    assert alt.startswith("Strip plots of each metric") and "red diamonds" in alt
    assert "CC after (sulc): 20 hemisphere(s), median 0.899, range 0.500 to 0.910, outliers sub-17 R;" in alt, alt
    assert "folded triangles: 20 hemisphere(s), median 0, range 0 to 0, no outliers" in alt


def test_what_needs_attention_has_a_heading_and_a_link(outputs):
    """The flagged, failed and unreadable hemispheres listed at the top of group.html sat between
    the Summary and Distributions headings with none of their own: a screen-reader user going from
    heading to heading (or the navigation bar) passed them by."""
    from html.parser import HTMLParser

    doc = outputs / "sub-02/anat/sub-02_hemi-L_space-fsaverage_desc-geomorph_metrics.json"
    flagged = json.loads(doc.read_text())
    ok = dict(flagged)
    flagged["quality"] = {"flagged": True, "reasons": [],
                          "thresholds": {"min_cc_after": round(flagged["registration"]["cc_sulc_after"] + 0.01, 3)}}
    doc.write_text(json.dumps(flagged))

    class Headings(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.h2: list[str] = []
            self._in = False

        def handle_starttag(self, tag, attrs):
            self._in = tag == "h2"

        def handle_data(self, data):
            if self._in:
                self.h2.append(data)
                self._in = False

    text = build_group_report(outputs).read_text()
    p = Headings()
    p.feed(text)
    assert p.h2[:3] == ["Summary", "Needs attention", "Distributions"], p.h2
    attention = text.split('<section id="attention">')[1].split("</section>")[0]
    assert "1 hemisphere(s) flagged by the quality gates" in attention and "sub-03 hemi-R: InputError" in attention
    assert '<a href="#attention">Needs attention</a>' in text.split("</nav>")[0]
    # notes only (the bundled low-resolution fsaverage): a heading that does not alarm
    doc.write_text(json.dumps(ok))
    shutil.rmtree(outputs / "logs" / "crash-abc")
    shutil.rmtree(outputs / "sub-03")
    quiet = build_group_report(outputs).read_text()
    assert "Needs attention" not in quiet and '<a href="#attention">Notes</a>' in quiet.split("</nav>")[0]
    notes = quiet.split('<section id="attention"><h2>Notes</h2>')[1].split("</section>")[0]
    assert notes.strip().startswith('<p class="warn">') and "low-resolution" in notes


def test_the_group_page_names_the_study_its_outputs_were_made_from(outputs, tmp_path):
    """Twentieth session (fix-ab's left list): every group.html was titled "geomorph-bids: group
    report", so a reader with several studies' pages open could not tell them apart. The page now
    names the raw dataset (dataset_description.json's Name, through the outputs' DatasetLinks raw),
    escaped and on one line; with the dataset gone or nameless it is titled as before."""
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "dataset_description.json").write_text(json.dumps({"Name": "Ageing <cohort>\n& friends",
                                                              "BIDSVersion": "1.9.0"}))
    (outputs / "dataset_description.json").write_text(json.dumps({"DatasetLinks": {"raw": str(raw)}}))
    text = build_group_report(outputs).read_text()
    assert "<title>geomorph-bids: group report of Ageing &lt;cohort&gt; &amp; friends</title>" in text
    assert "<h1>geomorph-bids: group report of Ageing &lt;cohort&gt; &amp; friends</h1>" in text
    (raw / "dataset_description.json").write_text("[1, 2]")  # not a description: named nothing
    assert "<title>geomorph-bids: group report</title>" in build_group_report(outputs).read_text()
    (raw / "dataset_description.json").unlink()  # the dataset moved away
    assert "<h1>geomorph-bids: group report</h1>" in build_group_report(outputs).read_text()


def _hemisphere(out: Path, src: dict, subject: str, hemi: str, session: str | None = None, **changes) -> Path:
    """A metrics file (``src`` for another subject/session/hemisphere, with ``changes``) and a
    stand-in registered sphere beside it."""
    ent = f"sub-{subject}" + (f"_ses-{session}" if session else "")
    path = (out / f"sub-{subject}" / (f"ses-{session}" if session else "") / "anat"
            / f"{ent}_hemi-{hemi}_space-fsaverage_desc-geomorph_metrics.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**src, "subject": subject, "session": session, "hemi": hemi, **changes}))
    _sphere_beside(path)
    return path


def test_labels_are_in_natural_order_in_the_table_the_page_and_the_warnings(outputs):
    """A cohort labelled sub-1 ... sub-5000, or sessions ses-1 ... ses-12: the table's rows, the
    page's sessions and the warning lines sorted the labels as text (1, 10, 100, 1000, 1001, ..., 2),
    so sub-2 was far down a 5,000-participant table and ses-10 came before ses-2. Labels are now in
    natural order (runs of digits by their value); zero-padded labels keep their order."""
    src = json.loads((outputs / "sub-01/anat/sub-01_hemi-L_space-fsaverage_desc-geomorph_metrics.json").read_text())
    for d in ("sub-01", "sub-02", "sub-03"):
        shutil.rmtree(outputs / d)
    shutil.rmtree(outputs / "logs" / "crash-abc")
    for subject in ("10", "2", "1"):
        for hemi in "LR":
            if not (subject in ("10", "2") and hemi == "R"):
                _hemisphere(outputs, src, subject, hemi)
    for session in ("10", "2", "1"):
        for hemi in "LR":
            _hemisphere(outputs, src, "3", hemi, session)
    for subject in ("10", "2"):  # the right hemisphere failed: a crash file, no row
        crash = outputs / "logs" / f"crash-{subject}" / f"crash-20260101-000000-user-register-{subject}.txt"
        crash.parent.mkdir(parents=True)
        crash.write_text(f"Node: geomorph_wf.sub_{subject}_wf.hemi_R_wf.register\n\nTraceback:\n"
                         "geomorph_bids.errors.InputError: rh.sulc: feature has NaN values\n")
    bids = outputs.parent / "bids"
    for subject in ("1", "2", "3", "10", "20", "9"):
        (bids / f"sub-{subject}" / "anat").mkdir(parents=True)
    code, err = _group(outputs)
    assert code in (0, 3), err
    rows = [(r["subject"], r["session"], r["hemi"]) for r in _tsv(outputs / GROUP_TSV)]
    assert rows == [("1", "n/a", "L"), ("1", "n/a", "R"), ("2", "n/a", "L"),
                    ("3", "1", "L"), ("3", "1", "R"), ("3", "2", "L"), ("3", "2", "R"), ("3", "10", "L"),
                    ("3", "10", "R"), ("10", "n/a", "L")]
    assert "no row: 9, 20 (not run yet" in err
    assert err.index("  sub-2 hemi-R: InputError") < err.index("  sub-10 hemi-R: InputError"), err
    text = (outputs / "group.html").read_text()
    assert '<th scope="row" class="l">sessions</th><td class="l">1, 2, 10</td>' in text
    assert text.index("sub-2 hemi-R: InputError") < text.index("sub-10 hemi-R: InputError")
    from geomorph_bids.derivatives import label_key
    assert sorted(["010", "002", "001", "100"], key=label_key) == ["001", "002", "010", "100"]  # as text
    assert sorted(["1", "01", "a10", "a2", "b", ""], key=label_key) == ["", "01", "1", "a2", "a10", "b"]


def test_stale_hemispheres_are_listed_at_most_a_hundred_at_the_top(outputs):
    """Every hemisphere of a cohort whose rerun failed (a broken license, a template moved: the
    earlier outputs kept, marked stale) was listed one by one at the top of group.html: 5,000
    participants put 10,000 lines before the distributions, while the flagged and failed lists
    stop at LISTED_MAX and count the rest. The stale list now does the same."""
    from geomorph_bids.reports.group import LISTED_MAX

    src = json.loads((outputs / "sub-01/anat/sub-01_hemi-L_space-fsaverage_desc-geomorph_metrics.json").read_text())
    for i in range(60):
        for hemi in "LR":
            _hemisphere(outputs, src, f"9{i:02d}", hemi,
                        latest_run_failed={"reason": "InputError: the template moved"})
    text = build_group_report(outputs).read_text()
    top = text[:text.index('id="distributions"')]
    assert "120 hemisphere(s) are stale" in top
    assert top.count("the latest run failed: InputError: the template moved") == LISTED_MAX == 100
    assert "<li>and 20 more (quality stale in the table and group_desc-geomorph_metrics.tsv)</li>" in top
    table = text[text.index('id="table"'):]
    assert table.count('class="flagged"') == 120  # every stale row is still marked in the table


def test_the_summary_names_a_few_sessions_and_counts_the_rest(outputs):
    """Sessions labelled by their date (ses-20190301, one per scan) are as many as the scans: the
    group page's summary named every one in one cell (5,000 labels for a 5,000-participant cohort).
    It now names the first 20 in order and says how many there are."""
    src = json.loads((outputs / "sub-01/anat/sub-01_hemi-L_space-fsaverage_desc-geomorph_metrics.json").read_text())
    for i in range(30):
        _hemisphere(outputs, src, f"7{i:02d}", "L", f"2019{i + 1:02d}01")
    text = build_group_report(outputs).read_text()
    cell = re.search(r'<th scope="row" class="l">sessions</th><td class="l">([^<]*)</td>', text).group(1)
    assert cell == ", ".join(f"2019{i:02d}01" for i in range(1, 21)) + ", ... (30 in all)"


def test_unreadable_metrics_files_are_listed_at_most_a_hundred_at_the_top(outputs):
    """A DataLad clone whose `datalad get` stopped halfway leaves thousands of metrics files
    unreadable: each was listed at the top of group.html, a full path a line, above the flagged
    hemispheres. The list now stops at LISTED_MAX, as the others do, and counts the rest (the
    group level's FAILED lines name each)."""
    from geomorph_bids.reports.group import LISTED_MAX

    failed = [f"{outputs}/sub-9{i:03d}/anat/sub-9{i:03d}_hemi-L_space-fsaverage_desc-geomorph_metrics.json: is a "
              "git-annex pointer, not its content (datalad get it)" for i in range(130)]
    text = build_group_report(outputs, failed=failed).read_text()
    top = text[:text.index('id="distributions"')]
    assert "130 metrics file(s) could not be read" in top
    assert top.count("is a git-annex pointer") == LISTED_MAX
    assert "<li>and 30 more (the group level's FAILED lines name each)</li>" in top


def test_the_data_dictionary_says_what_n_folded_and_n_nonfinite_count():
    """An evaluator read n_folded as "Folded triangles of the registered sphere" (the registered sphere's
    inward triangles?) and n_nonfinite as "Vertices of the registered sphere that are not finite" (its
    coordinates?): they are triangles that flip against the native sphere with the same faces, and vertices
    whose distortion measures are not finite (distortion_summary); the descriptions now say so."""
    from geomorph_bids.reports.group_table import column_description

    assert column_description("n_folded")["Description"] == (
        "Triangles whose orientation flips between the native sphere and the registered one (the same faces; "
        "orientation: the sign of (a - o) . ((b - a) x (c - a)), o the mean vertex)")
    assert column_description("folded_fraction")["Description"].startswith(
        "Fraction of the triangles that flip between the native and the registered sphere")
    assert column_description("n_nonfinite")["Description"].startswith(
        "Vertices whose areal, J, R or edge distortion is not finite")
def test_the_method_columns_description_names_every_method():
    """The group data dictionary said ``optimise, rigid, or geomorph (a network alone)``: the default
    with a network, ``geomorph+optimise`` (what ModelChoice.method and register() record), was
    not among the values a reader was told to expect."""
    from geomorph_bids.engine.model_choice import KINDS, ModelChoice, resolve_model
    from geomorph_bids.reports.group_table import column_description

    methods = {resolve_model(kind, "fsLR").method for kind in ("rigid", "default")}
    methods |= {ModelChoice.from_dict({**resolve_model("sulc-fsLR", "fsLR").to_dict(), "optimise": o}).method
                for o in (True, False)}
    assert methods == {"rigid", "optimise", "geomorph", "geomorph+optimise"} and len(KINDS) == 3
    described = column_description("method")["Description"]
    assert [m for m in sorted(methods) if not re.search(rf"(?<![\w+]){re.escape(m)}(?![\w+])", described)] == []


def test_the_about_section_names_the_builds_that_made_the_rows_apart_from_the_reports_packages(outputs):
    """Twenty-fourth session (fix-bl): group.html's About was a table of the packages installed where the
    group level ran (geomorph-bids, numpy, matplotlib), unlabelled: a PI took them for the versions that
    registered the participants, which may have run elsewhere, with another build. Now the rows' builds
    (the TSV's software column), the methods text to cite, then the report's own packages under their heading."""
    for subject in ("01", "02", "03"):
        for path in (outputs / f"sub-{subject}" / "anat").glob("*_metrics.json"):
            path.write_text(json.dumps({**json.loads(path.read_text()), "software": f"geomorph-bids build-{subject}"}))
    text = re.sub(r"\s+", " ", build_group_report(outputs).read_text())
    about = text[text.index('<section id="about">'):]
    assert (f"<p>Registrations ({GROUP_TSV}'s software column): geomorph-bids build-01; geomorph-bids build-02; "
            "geomorph-bids build-03. How they were made, with the references to cite: logs/CITATION.md (also in each "
            "participant's report).</p><h3>Report built with</h3>") in about


def test_a_cohort_that_asked_for_the_bundled_maps_is_not_advised_to_use_the_full_template(outputs):
    """Twenty-fourth session: the group report of a ``--template-dir bundled`` cohort advised ``To use the
    full one: --template-dir ...`` as to a cohort that had not chosen the bundled maps (the participant
    report and the command line no longer did): its rows, the group TSV's columns, did not carry the
    metrics' ``template_ref``. The TSV's last column, ``template_bundled_asked``, now does, and the report
    says what the maps are for the rows that asked for them; a table an earlier version wrote (without the
    column) is rebuilt."""
    from geomorph_bids.derivatives import GROUP_JSON
    from geomorph_bids.io.template_sources import BUNDLED_ASKED_REPORT_NOTE, LOW_RESOLUTION_NOTE
    from geomorph_bids.reports.html import esc

    before = group_table_rows(outputs)[0]
    assert {r["template_bundled_asked"] for r in before} == {False}
    header = (outputs / GROUP_TSV).read_text().splitlines()[0].split("\t")
    old_tsv = "\n".join("\t".join(line.split("\t")[:-1]) for line in (outputs / GROUP_TSV).read_text().splitlines())
    assert header[-1] == "template_bundled_asked" and header[-2] == "warp_folded_triangles"  # the others' places
    assert json.loads((outputs / GROUP_JSON).read_text())["template_bundled_asked"]["Description"].startswith(
        "Whether the participant level was asked for the bundled template maps (--template-dir bundled")
    for path in sorted(outputs.glob("sub-0[12]/anat/*_metrics.json")):  # sub-01, sub-02 asked; sub-03 did not
        doc = json.loads(path.read_text())
        doc["template_ref"] = {**(doc.get("template_ref") or {}), "bundled_asked": True}
        path.write_text(json.dumps(doc))
    (outputs / GROUP_TSV).write_text(old_tsv + "\n")  # an earlier version's table, newer than every metrics file
    text = build_group_report(outputs).read_text()
    rows = _tsv(outputs / GROUP_TSV)
    assert [(r["subject"], r["template_bundled_asked"]) for r in rows] == [
        ("01", "True"), ("01", "True"), ("02", "True"), ("02", "True"), ("03", "False")]
    assert f'<p class="warn">4 hemisphere(s) were {esc(BUNDLED_ASKED_REPORT_NOTE)}.</p>' in text
    assert f'<p class="warn">1 hemisphere(s) were {esc(LOW_RESOLUTION_NOTE)}.</p>' in text
    doc = json.loads(next(outputs.glob("sub-03/anat/*_metrics.json")).read_text())
    path = next(outputs.glob("sub-03/anat/*_metrics.json"))
    path.write_text(json.dumps({**doc, "template_ref": {**(doc.get("template_ref") or {}), "bundled_asked": True}}))
    text = build_group_report(outputs).read_text()
    assert "To use the full one" not in text and text.count(esc(BUNDLED_ASKED_REPORT_NOTE)) == 1


def test_the_data_dictionary_spells_the_boolean_columns_as_the_tsv_writes_them():
    """An analyst filtering the group TSV with ``awk '$col == "true"'`` after reading the data
    dictionary: ``used_sphere_reg``, ``mirrored`` and ``cortex_mask`` were described as ``(true/false)``
    while the TSV holds ``True``/``False`` (what pandas and R read as booleans; readers depend on it,
    so the values stay): every column that holds only booleans is now described as ``True/False``."""
    from geomorph_bids.reports.group_table import group_dictionary_text, group_table_text

    rows = [{"subject": "01", "hemi": h, "used_sphere_reg": h == "L", "mirrored": h == "R", "cortex_mask": True,
             "rotation_deg": 1.5, "template_bundled_asked": False} for h in ("L", "R")]
    text = group_table_text(rows)
    header, *cells = [line.split("\t") for line in text.splitlines()]
    booleans = [c for k, c in enumerate(header) if {row[k] for row in cells} <= {"True", "False"}]
    assert booleans == ["used_sphere_reg", "mirrored", "cortex_mask", "template_bundled_asked"]
    dictionary = json.loads(group_dictionary_text(text))
    assert {c: "True/False" in dictionary[c]["Description"] and "true/false" not in dictionary[c]["Description"]
            for c in booleans} == dict.fromkeys(booleans, True)


def test_the_data_dictionary_lists_the_levels_of_every_true_false_and_verdict_column():
    """BIDS's tabular files (common principles): a column of categories is described with ``Levels`` (each value
    the column holds, and what it means) and missing values are ``n/a``. The group table writes its booleans as
    ``True``/``False`` (pandas reads them as bool, R's ``read.delim`` as logical) but its dictionary gave them no
    ``Levels`` (a validator or an analyst could not tell the values a column may hold); nor ``quality``'s. Each such
    column now lists its levels, the values the TSV writes (``n/a`` aside), also a true/false column of a registration
    record this version does not know."""
    from geomorph_bids.reports.group_table import group_dictionary_text, group_table_text

    rows = [{"subject": "01", "hemi": "L", "quality": "ok", "cortex_mask": True, "mirrored": False,
             "used_sphere_reg": False, "template_bundled_asked": False, "some_new_switch": True, "n_folded": 0},
            {"subject": "01", "hemi": "R", "quality": "flagged", "cortex_mask": None, "mirrored": True,
             "used_sphere_reg": True, "template_bundled_asked": True, "some_new_switch": False, "n_folded": 1}]
    text = group_table_text(rows)
    dictionary = json.loads(group_dictionary_text(text))
    table = list(csv.DictReader(io.StringIO(text), delimiter="\t"))
    for column in ("cortex_mask", "mirrored", "used_sphere_reg", "template_bundled_asked", "some_new_switch"):
        levels = dictionary[column]["Levels"]
        assert sorted(levels) == ["False", "True"], column
        assert {r[column] for r in table} - {"n/a"} <= set(levels), column
    assert dictionary["cortex_mask"]["Levels"] == {"True": "a cortex mask restricted the registration",
                                                    "False": "no cortex mask: every vertex was registered"}
    assert dictionary["some_new_switch"]["Levels"] == {"True": "true", "False": "false"}
    assert sorted(dictionary["quality"]["Levels"]) == ["flagged", "ok", "stale"]
    assert "Levels" not in dictionary["n_folded"] and "Levels" not in dictionary["subject"]

"""The pages' HTML for every reader: tables a screen reader can name, headings in order, what
print and a narrow screen show (:mod:`geomorph_bids.reports.html`)."""

from __future__ import annotations

import re

import pytest

from geomorph_bids.reports.html import built_at, markdown, page, table


def test_table_cells_are_named_by_their_column_and_row_headers():
    """A screen reader read the tables' numbers without their metric or hemisphere: the header
    cells had no scope and every row's label was a plain cell. A table wider than a phone's
    screen widened the whole page instead of scrolling on its own."""
    text = table(["metric", "sub-01 hemi-L"], [["CC after", "0.966"], ["folded", "0"]])
    assert '<th scope="col" class="l">metric</th>' in text and '<th scope="col" class="">sub-01 hemi-L</th>' in text
    assert '<th scope="row" class="l">CC after</th><td class="">0.966</td>' in text
    assert text.count('scope="row"') == 2 and "<td" in text
    assert text.startswith('<div class="scroll"><table>') and text.endswith("</table></div>")
    # a key-value table (no header row): its keys are the row headers
    kv = table(["", ""], [["subject", "01"]], left=2)
    assert "<th scope=\"col\"" not in kv and '<th scope="row" class="l">subject</th><td class="l">01</td>' in kv
    assert '<td class="">' in table(["a", "b"], [["x", "1"]], row_header=False).replace('<td class="l">x', "")


def test_the_methods_texts_headings_follow_the_pages():
    """``### References`` of logs/CITATION.md, under the page's <h2>, became an <h5>: a reader's
    list of headings jumped from h2 to h5."""
    html = markdown("Cortical surfaces were registered.\n\n### References\n- Suliman MA, et al. 2025.\n")
    assert "<h3>References</h3>" in html and "<h5>" not in html
    nested = markdown("# Methods\n\ntext\n\n## References\n- a\n\n### Online\n- b\n")
    assert re.findall(r"<h(\d)>", nested) == ["3", "4", "5"]


def test_print_shows_what_the_screen_folds_away():
    """Printed (or saved as PDF), a report lost each hemisphere's provenance (a closed
    <details>) and printed the navigation bar over the first lines of every page. Checked with
    headless Chromium's --print-to-pdf: the closed page now prints as the one with every
    <details open> (6 pages, 5 before)."""
    css = page("t", [("a", "A")], "<p>x</p>").split("<style>")[1].split("</style>")[0]
    media = css.split("@media print{", 1)[1]
    assert "nav{display:none}" in media
    assert "details::details-content{content-visibility:visible;display:block}" in media
    assert ".scroll{overflow:visible}" in media


def test_a_narrow_screen_keeps_the_navigation_from_covering_the_page():
    """On a phone the sticky navigation bar (one link per hemisphere and session) wrapped to
    several lines that stayed over the top of the page as it scrolled; the page's margins took a
    tenth of the width."""
    css = page("t", [("a", "A")], "<p>x</p>").split("<style>")[1].split("</style>")[0]
    narrow = css.split("@media (max-width:600px){", 1)[1]
    assert narrow.startswith("nav{position:static}") and "main{padding:8px 10px 40px 10px}" in narrow


@pytest.mark.parametrize("tz, expected", [
    ("Foo/Bar", "1970-01-01 00:00:00 UTC"), (":/nonexistent", "1970-01-01 00:00:00 UTC"),
    ("UTC", "1970-01-01 00:00:00 UTC"),
    ("EST5EDT", "1969-12-31 19:00:00 UTC-05:00"), ("<+0545>-5:45", "1970-01-01 05:45:00 UTC+05:45")])
def test_the_time_a_report_was_built_carries_its_offset_from_utc_in_any_tz(monkeypatch, tz, expected):
    """Twenty-second session: the reports said when they were built with the zone's name (``%Z``): a
    ``TZ`` the system does not know (``Foo/Bar``, a typo on a cluster) labelled the UTC time it falls back
    to ``Foo`` (``Report built 2026-12-07 15:13:41 Foo``), ``TZ=:/nonexistent`` left no label at all. Now
    the local time and its offset from UTC, which are right in every case."""
    import time

    monkeypatch.setenv("TZ", tz)
    time.tzset()
    try:
        assert built_at(0.0) == expected
    finally:
        monkeypatch.undo()
        time.tzset()

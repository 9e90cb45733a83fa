"""Small HTML helpers shared by the participant and group reports (one self-contained page:
inline CSS, no scripts, figures linked by relative paths)."""

from __future__ import annotations

import html
import math
import re
from importlib import metadata
from typing import Any, Iterable, Sequence

__all__ = ["page", "table", "markdown", "fmt", "esc", "software_versions", "built_at", "DIRECTIONS", "REPORT_PACKAGES"]

#: which way the metrics of both reports' tables are better, said beside them
DIRECTIONS = ("CC: higher is better (1: the template's map); distortion (log2 units) and folded triangles: "
              "lower is better (0: none); run time in seconds.")

def built_at(when: float | None = None) -> str:
    """``when`` (seconds since the epoch; None: now) as a report says when it was built: the local time
    and its offset from UTC, ``2026-12-07 16:13:41 UTC+01:00`` (``UTC`` alone at offset 0). The zone's
    name (``%Z``) was shown before: a ``TZ`` the system does not know (``Foo/Bar``, a typo) labelled the
    UTC time it falls back to ``Foo``, and ``TZ=:/nonexistent`` left the label empty."""
    import time

    local = time.localtime(when)
    offset = local.tm_gmtoff or 0
    hours, minutes = divmod(abs(offset) // 60, 60)
    zone = "UTC" if offset == 0 else f"UTC{'+' if offset > 0 else '-'}{hours:02d}:{minutes:02d}"
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', local)} {zone}"


_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fff}
nav{position:sticky;top:0;background:#2c3e50;padding:6px 16px;z-index:2}
nav a{color:#ecf0f1;margin-right:14px;text-decoration:none;font-size:14px}
main{padding:8px 24px 40px 24px;max-width:1200px}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:3px;margin-top:28px}
h3{font-size:15px;margin-top:18px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f2f2f2}td.l,th.l{text-align:left}
th[scope=row]{background:none;font-weight:normal}
tr.outlier td,tr.outlier th{background:#fde2e2}tr.flagged td,tr.flagged th{background:#f5b7b1;font-weight:bold}
.scroll{overflow-x:auto;max-width:100%;margin:6px 0}.scroll>table{margin:0}p,li{overflow-wrap:break-word}
img.fig{max-width:100%;height:auto;border:1px solid #eee;margin:4px 0}
.warn{color:#8a5a00}.err{color:#a00}.ok{color:#276e27}.note{color:#555;font-size:13px}
pre{background:#f7f7f7;padding:8px;font-size:12px;white-space:pre-wrap}
details{margin:6px 0}
.attention{border:2px solid #a00;background:#fdf0f0;padding:2px 14px;margin:8px 0}
.attention h2{font-size:1em;border:none;margin:1em 0;padding:0}
@media (max-width:600px){nav{position:static}main{padding:8px 10px 40px 10px}}
@media print{nav{display:none}details::details-content{content-visibility:visible;display:block}
.scroll{overflow:visible}img.fig{break-inside:avoid}h2,h3{break-after:avoid}}
"""


def esc(value: Any) -> str:
    """HTML-escaped text of a value."""
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: floats rounded, None/NaN as ``n/a``."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        return f"{value:.{digits}f}" if abs(value) < 1e4 else f"{value:.4g}"
    return str(value)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], left: int = 1,
          row_classes: Sequence[str] | None = None, row_header: bool = True) -> str:
    """An HTML table (cells already HTML: escape them first); the first ``left`` columns
    left-aligned. Header cells are ``<th scope="col">``; ``row_header``: the first cell of each row
    names the row (a label of a key-value table, a hemisphere), ``<th scope="row">``, drawn as a
    plain cell. Wrapped in a block that scrolls sideways on a screen narrower than the table."""
    out = ['<div class="scroll"><table>']
    if any(header):
        out.append("<tr>" + "".join(f'<th scope="col" class="{"l" if i < left else ""}">{h}</th>'
                                    for i, h in enumerate(header)) + "</tr>")

    def cell(i: int, c: Any) -> str:
        align = "l" if i < left else ""
        if i == 0 and row_header:
            return f'<th scope="row" class="{align}">{c}</th>'
        return f'<td class="{align}">{c}</td>'

    for k, row in enumerate(rows):
        cls = f' class="{row_classes[k]}"' if row_classes and row_classes[k] else ""
        out.append(f"<tr{cls}>" + "".join(cell(i, c) for i, c in enumerate(row)) + "</tr>")
    out.append("</table></div>")
    return "\n".join(out)


def markdown(text: str, top: int = 3) -> str:
    """Minimal Markdown (headings, bullet lists, paragraphs, *emphasis*) to HTML, escaped. The
    text's highest headings become ``<h{top}>`` and the others follow in order (the text sits under
    the page's ``<h{top - 1}>``: a reader's heading list skips no level)."""
    blocks, para, items = [], [], []
    hashes = [len(s) - len(s.lstrip("#")) for s in (line.strip() for line in text.splitlines()) if s.startswith("#")]
    shift = top - min(hashes, default=1)

    def inline(s: str) -> str:
        s = esc(s)
        s = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)
        return re.sub(r"\*(.+?)\*", r"<i>\1</i>", s)

    def flush() -> None:
        if para:
            blocks.append("<p>" + inline(" ".join(para)) + "</p>")
            para.clear()
        if items:
            blocks.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in items) + "</ul>")
            items.clear()

    for line in text.splitlines():
        s = line.strip()
        if not s:
            flush()
        elif s.startswith("#"):
            flush()
            level = max(1, min(6, len(s) - len(s.lstrip("#")) + shift))
            blocks.append(f"<h{level}>{inline(s.lstrip('#').strip())}</h{level}>")
        elif s.startswith(("- ", "* ")):
            if para:
                flush()
            items.append(s[2:])
        elif items and line.startswith((" ", "\t")):
            items[-1] += " " + s
        else:
            if items:
                flush()
            para.append(s)
    flush()
    return "\n".join(blocks)


#: the packages a participant report is drawn with (its "Report built with"): the outputs read with nibabel,
#: the figures' nearest vertices found with scipy, drawn with matplotlib; Nipype, niworkflows and torch are not
#: imported by it (the registrations' own builds are the metrics' ``software``; the methods text names the rest)
REPORT_PACKAGES = ("geomorph-bids", "numpy", "scipy", "nibabel", "matplotlib")


def software_versions(names: Sequence[str] = REPORT_PACKAGES) -> dict[str, str]:
    """Installed versions of the packages ``names`` (default: :data:`REPORT_PACKAGES`, what draws a report)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def page(title: str, nav: Sequence[tuple[str, str]], body: str) -> str:
    """A complete HTML document: sticky navigation bar (anchor, label) and the body."""
    links = "".join(f'<a href="#{esc(a)}">{esc(label)}</a>' for a, label in nav)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{_CSS}</style></head>\n<body>\n<nav>{links}</nav>\n"
            f"<main>\n{body}\n</main>\n</body></html>\n")

#!/usr/bin/env python3
"""Compare two geomorph-bids output trees byte for byte, with the timing fields masked.

    python scripts/compare_outputs.py BEFORE AFTER

Used to check that a change of code structure leaves the derivatives exactly as they were
(e.g. ``geomorph-bids examples/ds-geomorph-example BEFORE participant`` on one commit and AFTER
on another, each with a fresh ``-w`` work folder). Every file must exist in both trees with the
same bytes, except what depends on the clock, which is masked first:

* JSON: every key starting with ``seconds`` (the metrics' ``seconds_*``), at any depth;
* TSV: the ``seconds*`` columns of the group table;
* HTML: "Report built <date> in X s." / "Built <date> in X s.", the run-time row of the
  participant metrics table, the ``seconds`` column and the run-time outliers of the group
  report (and its outlier row marks and "outlier" words, which a timing outlier can set: the
  outliers table still compares every other metric's outliers; an outliers table left with no
  row reads as "No outliers."), and the run-time clause of the distribution figure's alt text;
* the group report's distribution figure (it plots run times): compared by image size only;
* ``.geomorph-locks/*`` (pid, host and time of the run holding the lock): presence only.

``--ignore KEY`` (repeatable) masks more: that JSON key at any depth and that TSV column, e.g.
``--ignore optimise_batch`` to compare the workflow with batch mode (the number of pairs
optimised together, recorded in the metrics; ``logs/CITATION.md`` and the reports still differ: their methods
text names the mode), or the keys that hold where the dataset and the
installation are (``DatasetLinks``, ``input_surface_path``, ``template_source_path``,
``template_files``, ``Path``, ``folder``) to compare runs from another folder or machine.

A differing JSON file is named with the keys that differ (the first five); a differing GIFTI
file with the largest difference of its data arrays (for a sphere: the largest vertex
displacement, in mm on the radius-100 sphere).

Exit code 0 when the trees match, 1 otherwise (each difference on one line).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import struct
import sys
from pathlib import Path

_TIMING_FIGURES = ("figures/group_desc-distributions_metrics.png",)
_PRESENCE_ONLY = ("/.geomorph-locks/",)
_BUILT = re.compile(r"((?:Report built|Built) )[^<]*? in [0-9.]+ s\.")
_ROW = re.compile(r"<tr[^>]*>.*?</tr>", re.S)
_CELL = re.compile(r"<t[dh][^>]*>.*?</t[dh]>", re.S)
_OUTLIERS_HEADER = ["hemisphere", "template", "metric", "value", "robust z"]   # the group report's outliers table
_OUTLIER_WORD = re.compile(r"(?:, )?outlier(?=</td>)")                         # its mark in the quality cell
_ALT_RUN_TIME = re.compile(r'(run time \(s\): )[^;"]*')                        # the distribution figure's alt text


def _masked_key(key: str, ignore: frozenset[str]) -> bool:
    return key.startswith("seconds") or key in ignore


def _mask_json(value, ignore: frozenset[str] = frozenset()):
    if isinstance(value, dict):
        return {k: ("<masked>" if _masked_key(k, ignore) else _mask_json(v, ignore)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_json(v, ignore) for v in value]
    return value


def _mask_tsv(text: str, ignore: frozenset[str] = frozenset()) -> str:
    rows = list(csv.reader(io.StringIO(text), delimiter="\t"))
    if not rows:
        return text
    drop = {i for i, name in enumerate(rows[0]) if _masked_key(name, ignore)}
    out = io.StringIO()
    w = csv.writer(out, delimiter="\t", lineterminator="\n")
    for r in rows:
        w.writerow(["<masked>" if i in drop else c for i, c in enumerate(r)])
    return out.getvalue()


def _mask_table(table: str) -> str:
    rows = _ROW.findall(table)
    if not rows:
        return table
    header = [re.sub(r"<[^>]+>", "", c).strip() for c in _CELL.findall(rows[0])]
    timing_cols = {i for i, h in enumerate(header) if h in ("seconds", "run time (s)")}
    quality_cols = {i for i, h in enumerate(header) if h == "quality"}
    out = []
    for row in rows:
        cells = _CELL.findall(row)
        texts = [re.sub(r"<[^>]+>", "", c).strip() for c in cells]
        if texts and texts[0] == "run time (s)":        # participant metrics table row
            continue
        if "run time (s)" in texts[2:3]:                 # group outliers table (hemisphere, template, metric)
            continue
        if "run time (s)" in texts[1:2]:                 # the same table without its template column
            continue
        cells = ["<masked>" if i in timing_cols else
                 _OUTLIER_WORD.sub("", c) if i in quality_cols and row is not rows[0] else c
                 for i, c in enumerate(cells)]
        out.append(re.sub(r'\s*class="outlier"', "", row.split(">", 1)[0]) + ">" + "".join(cells))
    if len(out) == 1 and _texts(rows[0]) == _OUTLIERS_HEADER:
        return "<no outliers>"                           # only timing outliers were listed
    return "\n".join(out)


def _texts(row: str) -> list[str]:
    """The text of each cell of a table row."""
    return [re.sub(r"<[^>]+>", "", c).strip() for c in _CELL.findall(row)]


def _mask_html(text: str) -> str:
    text = _BUILT.sub(r"\1<masked>", text)
    text = _ALT_RUN_TIME.sub(r"\1<masked>", text)
    text = text.replace('<p class="ok">No outliers.</p>', "<no outliers>")
    text = re.sub(r"<table>.*?</table>", lambda m: _mask_table(m.group(0)), text, flags=re.S)
    return re.sub(r'<div class="scroll">\s*<no outliers>\s*</div>', "<no outliers>", text)


def _png_size(data: bytes) -> tuple[int, int]:
    return struct.unpack(">II", data[16:24]) if data[:8] == b"\x89PNG\r\n\x1a\n" else (-1, -1)


def _normalised(rel: str, data: bytes, ignore: frozenset[str] = frozenset()) -> bytes | str:
    if any(p in f"/{rel}" for p in _PRESENCE_ONLY):
        return "<present>"
    if rel.endswith(_TIMING_FIGURES):
        return f"<png {_png_size(data)}>"
    if rel.endswith(".json"):
        try:
            return json.dumps(_mask_json(json.loads(data), ignore), indent=1, sort_keys=True)
        except ValueError:
            return data
    if rel.endswith(".tsv"):
        return _mask_tsv(data.decode(), ignore)
    if rel.endswith(".html"):
        return _mask_html(data.decode())
    return data


def _flat(value, prefix: str = "") -> dict[str, object]:
    """A JSON document as {dotted.key[i]: leaf value}."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}.{key}" if prefix else key).items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _flat(item, f"{prefix}[{i}]").items()}
    return {prefix: value}


def _json_keys(a: bytes, b: bytes, ignore: frozenset[str]) -> str:
    """The keys whose values differ, the first five."""
    try:
        fa, fb = (_flat(_mask_json(json.loads(x), ignore)) for x in (a, b))
    except ValueError:
        return ""
    keys = [k for k in sorted(set(fa) | set(fb)) if fa.get(k, "<absent>") != fb.get(k, "<absent>")]
    return f" ({', '.join(keys[:5])}{f' and {len(keys) - 5} more' if len(keys) > 5 else ''})" if keys else ""


def _gifti_difference(a: bytes, b: bytes) -> str:
    """The largest difference of two GIFTI files' data arrays: for a mesh's vertices the largest
    displacement (mm on a radius-100 sphere), else the largest absolute difference."""
    try:
        import nibabel as nib
        import numpy as np

        ga, gb = (nib.GiftiImage.from_bytes(x) for x in (a, b))
    except Exception:  # noqa: BLE001 - no nibabel, or not GIFTI: the bytes differ, nothing more to say
        return ""
    if len(ga.darrays) != len(gb.darrays):
        return f" ({len(ga.darrays)} vs {len(gb.darrays)} data arrays)"
    parts = []
    for i, (x, y) in enumerate(zip(ga.darrays, gb.darrays)):
        u, v = np.asarray(x.data, dtype=np.float64), np.asarray(y.data, dtype=np.float64)
        if u.shape != v.shape:
            parts.append(f"array {i}: shape {u.shape} vs {v.shape}")
        elif x.intent == nib.nifti1.intent_codes["NIFTI_INTENT_POINTSET"]:
            parts.append(f"largest vertex displacement {np.linalg.norm(u - v, axis=-1).max():.3g}")
        elif not np.array_equal(u, v, equal_nan=True):
            parts.append(f"array {i}: largest difference {np.nanmax(np.abs(u - v)):.3g}")
    return f" ({'; '.join(parts) or 'same values, other metadata or encoding'})"


def compare(before: Path, after: Path, ignore: frozenset[str] = frozenset()) -> list[str]:
    """One line per difference between the two trees (empty: identical up to timings and the
    ``ignore`` keys)."""
    files = {}
    for root in (before, after):
        files[root] = {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}
    problems = []
    for rel in sorted(set(files[before]) | set(files[after])):
        a, b = files[before].get(rel), files[after].get(rel)
        if a is None or b is None:
            problems.append(f"only in {'after' if a is None else 'before'}: {rel}")
            continue
        da, db = a.read_bytes(), b.read_bytes()
        if _normalised(rel, da, ignore) != _normalised(rel, db, ignore):
            why = (_json_keys(da, db, ignore) if rel.endswith(".json") else
                   _gifti_difference(da, db) if rel.endswith(".gii") else "")
            problems.append(f"differs: {rel}{why}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0],
                                     epilog="Exit code 0 when the trees match, 1 otherwise (each difference on one line).")
    parser.add_argument("before", type=Path, help="an output folder of geomorph-bids")
    parser.add_argument("after", type=Path, help="the output folder to compare it with")
    parser.add_argument("--ignore", action="append", default=[], metavar="KEY",
                        help="also mask this JSON key (at any depth) and TSV column, e.g. optimise_batch to compare "
                             "the workflow with batch mode; repeatable")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    before, after = args.before, args.after
    ignore = frozenset(args.ignore)
    problems = compare(before, after, ignore)
    n = sum(1 for p in before.rglob("*") if p.is_file())
    for line in problems:
        print(line)
    masked = "timings" + "".join(f", {k}" for k in sorted(ignore))
    print(f"{n} file(s) in {before}: " + (f"identical ({masked} masked)" if not problems
                                          else f"{len(problems)} difference(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

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
  report (and its outlier row marks, which a timing outlier can set);
* the group report's distribution figure (it plots run times): compared by image size only;
* ``.geomorph-locks/*`` (pid, host and time of the run holding the lock): presence only.

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


def _mask_json(value):
    if isinstance(value, dict):
        return {k: ("<masked>" if k.startswith("seconds") else _mask_json(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_json(v) for v in value]
    return value


def _mask_tsv(text: str) -> str:
    rows = list(csv.reader(io.StringIO(text), delimiter="\t"))
    if not rows:
        return text
    drop = {i for i, name in enumerate(rows[0]) if name.startswith("seconds")}
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
    out = []
    for row in rows:
        cells = _CELL.findall(row)
        texts = [re.sub(r"<[^>]+>", "", c).strip() for c in cells]
        if texts and texts[0] == "run time (s)":        # participant metrics table row
            continue
        if "run time (s)" in texts[1:2]:                 # group outliers table: timing outlier
            continue
        cells = ["<masked>" if i in timing_cols else c for i, c in enumerate(cells)]
        out.append(re.sub(r'class="outlier"', "", row.split(">", 1)[0]) + ">" + "".join(cells))
    return "\n".join(out)


def _mask_html(text: str) -> str:
    text = _BUILT.sub(r"\1<masked>", text)
    return re.sub(r"<table>.*?</table>", lambda m: _mask_table(m.group(0)), text, flags=re.S)


def _png_size(data: bytes) -> tuple[int, int]:
    return struct.unpack(">II", data[16:24]) if data[:8] == b"\x89PNG\r\n\x1a\n" else (-1, -1)


def _normalised(rel: str, data: bytes) -> bytes | str:
    if any(p in f"/{rel}" for p in _PRESENCE_ONLY):
        return "<present>"
    if rel.endswith(_TIMING_FIGURES):
        return f"<png {_png_size(data)}>"
    if rel.endswith(".json"):
        try:
            return json.dumps(_mask_json(json.loads(data)), indent=1, sort_keys=True)
        except ValueError:
            return data
    if rel.endswith(".tsv"):
        return _mask_tsv(data.decode())
    if rel.endswith(".html"):
        return _mask_html(data.decode())
    return data


def compare(before: Path, after: Path) -> list[str]:
    """One line per difference between the two trees (empty: identical up to timings)."""
    files = {}
    for root in (before, after):
        files[root] = {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}
    problems = []
    for rel in sorted(set(files[before]) | set(files[after])):
        a, b = files[before].get(rel), files[after].get(rel)
        if a is None or b is None:
            problems.append(f"only in {'after' if a is None else 'before'}: {rel}")
            continue
        if _normalised(rel, a.read_bytes()) != _normalised(rel, b.read_bytes()):
            problems.append(f"differs: {rel}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0],
                                     epilog="Exit code 0 when the trees match, 1 otherwise (each difference on one line).")
    parser.add_argument("before", type=Path, help="an output folder of geomorph-bids")
    parser.add_argument("after", type=Path, help="the output folder to compare it with")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    before, after = args.before, args.after
    problems = compare(before, after)
    n = sum(1 for p in before.rglob("*") if p.is_file())
    for line in problems:
        print(line)
    print(f"{n} file(s) in {before}: " + ("identical (timings masked)" if not problems
                                          else f"{len(problems)} difference(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""Group level, reports and output-folder bookkeeping with thousands of subjects already done.

    .venv/bin/python benchmarks/group_scale.py [--subjects 2000 10000] [--repeats 3] [--sample 20]
                                               [--commands group reports new resume] [--keep DIR]

Registers ONE subject of a synthetic input dataset (the example's FreeSurfer subject, hard-linked
under N + 1 labels) with ``--model rigid``, then replicates its finished derivatives under N
labels without registering them: every output file a hard link, except the metrics JSON, which
is rewritten for its subject with its numbers varied a little (so that the distributions are not
constant and a few hemispheres are outliers), and the report ``sub-X.html`` (a small copy). Then,
for each N, times fresh processes of

* ``group``: ``geomorph-bids BIDS OUT group`` (the TSV and group.html of every hemisphere);
* ``reports 1`` / ``reports S``: ``participant --reports-only --participant-label`` of 1 and of
  ``--sample`` subjects (all N would take hours of figure drawing: what matters here is whether
  one report costs more in a big folder);
* ``new``: ``participant --participant-label NEW`` for one subject not yet in the folder (its
  outputs and work folder removed between repeats): does adding one subject scan everything?
* ``resume``: the same command again on that finished subject (same work folder): the skip cost.

and prints N vs median seconds and peak RSS (``ru_maxrss`` of the command's process tree: the
largest process), the group report's size (HTML, figure), whether it embeds per-subject images,
and the TSV's row count. Numbers only; no thresholds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from geomorph_bids.derivatives import label_key

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_FS = ROOT / "examples" / "ds-geomorph-example" / "derivatives" / "freesurfer" / "sub-01"
EXE = str(Path(sys.executable).with_name("geomorph-bids"))
SEED, NEW = "00000", "99999"


def label(i: int) -> str:
    return f"{i:05d}"


def make_inputs(bids: Path, n: int) -> None:
    """A BIDS folder whose FreeSurfer derivatives hold the example subject under labels 0..n and NEW."""
    bids.mkdir(parents=True)
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "group scale", "BIDSVersion": "1.9.0"}))
    fs = bids / "derivatives" / "freesurfer"
    for lab in [label(i) for i in range(n + 1)] + [NEW]:
        surf = fs / f"sub-{lab}" / "surf"
        surf.mkdir(parents=True)
        for f in EXAMPLE_FS.glob("surf/*"):
            os.link(f, surf / f.name)


def run(cmd: list[str], log: Path) -> tuple[float, int]:
    """(wall seconds, peak RSS in bytes of the largest process of the tree); exits on failure."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "NIPYPE_NO_ET": "1"})
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 3):
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{log.read_text()[-3000:]}")
    return wall, usage.ru_maxrss * 1024


def _vary(doc: dict, rng: random.Random, subject: str) -> dict:
    """The seed's metrics document, for ``subject``, with its numbers varied a little."""
    text = json.dumps(doc).replace(f"sub-{SEED}", f"sub-{subject}")
    doc = json.loads(text)
    doc["subject"] = subject
    reg = doc["registration"]
    for k, v in reg.items():
        if isinstance(v, float) and k.startswith("cc_"):
            reg[k] = max(-1.0, min(1.0, v + rng.gauss(0.0, 0.02)))
        elif isinstance(v, float) and v != 0.0:
            reg[k] = v * (1.0 + rng.gauss(0.0, 0.05))
    if rng.random() < 0.002:  # a rare outlier
        reg["cc_sulc_after"] = 0.3
    return doc


def replicate(out: Path, n: int) -> None:
    """Subjects 1..n as copies of the seed's outputs (hard links; varied metrics JSON)."""
    rng = random.Random(2026)
    seed_dir = out / f"sub-{SEED}"
    files = [p for p in seed_dir.rglob("*") if p.is_file()]
    html = (out / f"sub-{SEED}.html").read_text()
    docs = {p: json.loads(p.read_text()) for p in files if p.name.endswith("_metrics.json")}
    for i in range(1, n + 1):
        lab = label(i)
        dest = out / f"sub-{lab}"
        for p in files:
            q = dest / p.relative_to(seed_dir).as_posix().replace(f"sub-{SEED}", f"sub-{lab}")
            q.parent.mkdir(parents=True, exist_ok=True)
            if p in docs:
                q.write_text(json.dumps(_vary(docs[p], rng, lab), indent=2, sort_keys=True) + "\n")
            else:
                os.link(p, q)
        (out / f"sub-{lab}.html").write_text(html.replace(f"sub-{SEED}", f"sub-{lab}"))


def measure(cmd: list[str], tmp: Path, name: str, repeats: int, before=None) -> dict:
    walls, rss = [], []
    for r in range(repeats):
        if before:
            before()
        w, m = run(cmd, tmp / f"{name}-{r}.log")
        walls.append(w)
        rss.append(m)
    return {"wall": statistics.median(walls), "rss": max(rss), "runs": walls}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subjects", type=int, nargs="+", default=[2000, 10000])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sample", type=int, default=20, help="subjects of the 'reports S' command")
    p.add_argument("--commands", nargs="+", default=["group", "reports", "new", "resume"],
                   choices=("group", "reports", "new", "resume"))
    p.add_argument("--batch", action="store_true", help="new/resume in batch mode (--batch-size 8)")
    p.add_argument("--keep", type=Path, help="build the folders here and keep them")
    args = p.parse_args()
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="geomorph-group-scale-"))
    tmp.mkdir(parents=True, exist_ok=True)
    print(f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f} at start; median of {args.repeats}",
          flush=True)
    results = []
    extra = ["--batch-size", "8"] if args.batch else []
    try:
        for n in args.subjects:
            t0 = time.perf_counter()
            bids, out, work = tmp / f"bids-{n}", tmp / f"out-{n}", tmp / f"work-{n}"
            for d in (bids, out, work):
                shutil.rmtree(d, ignore_errors=True)
            make_inputs(bids, n)
            run([EXE, str(bids), str(out), "participant", "--participant-label", SEED, "--model", "rigid",
                 "-w", str(work / "seed")], tmp / f"seed-{n}.log")
            replicate(out, n)
            print(f"N={n}: folder built in {time.perf_counter() - t0:.0f} s", flush=True)
            base = [EXE, str(bids), str(out)]
            row: dict = {"n": n}
            if "group" in args.commands:
                row["group"] = measure(base + ["group"], tmp, f"group-{n}", args.repeats)
                html, fig = out / "group.html", out / "figures" / "group_desc-distributions_metrics.png"
                tsv = out / "group_desc-geomorph_metrics.tsv"
                text = html.read_text()
                row["html_mb"] = html.stat().st_size / 1e6
                row["fig_mb"] = fig.stat().st_size / 1e6 if fig.is_file() else 0.0
                row["imgs"] = text.count("<img")
                row["links"] = text.count('href="sub-')
                lines = tsv.read_text().splitlines()
                row["tsv_rows"] = len(lines) - 1
                keys = [tuple(x.split("\t")[:3]) for x in lines[1:]]
                row["tsv_sorted"] = keys == sorted(keys, key=lambda k: (label_key(k[0]), label_key(  # sub-2 < sub-10
                    None if k[1] == "n/a" else k[1]), k[2]))
            if "reports" in args.commands:
                sample = [label(i) for i in range(1, args.sample + 1)]
                row["reports1"] = measure(base + ["participant", "--reports-only", "--participant-label", label(1)],
                                          tmp, f"reports1-{n}", args.repeats)
                row["reportsS"] = measure(base + ["participant", "--reports-only", "--participant-label", *sample],
                                          tmp, f"reportsS-{n}", 1)
            new = base + ["participant", "--participant-label", NEW, "--model", "rigid", "-w", str(work / "new"),
                          *extra]

            def fresh() -> None:
                shutil.rmtree(out / f"sub-{NEW}", ignore_errors=True)
                (out / f"sub-{NEW}.html").unlink(missing_ok=True)
                shutil.rmtree(work / "new", ignore_errors=True)

            if "new" in args.commands:
                row["new"] = measure(new, tmp, f"new-{n}", args.repeats, before=fresh)
            if "resume" in args.commands:
                if not (out / f"sub-{NEW}").is_dir():
                    run(new, tmp / f"new-{n}-for-resume.log")
                row["resume"] = measure(new, tmp, f"resume-{n}", args.repeats)
            results.append(row)
            print(json.dumps(row), flush=True)
            if not args.keep:
                for d in (bids, out, work):
                    shutil.rmtree(d, ignore_errors=True)
        print_table(results, args.sample)
        print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def print_table(results: list[dict], sample: int) -> None:
    names = [("group", "group"), ("reports1", "--reports-only, 1 subject"),
             ("reportsS", f"--reports-only, {sample} subjects"), ("new", "participant, 1 new subject"),
             ("resume", "participant, 1 finished subject (resume)")]
    print("\n| command | " + " | ".join(f"N = {r['n']:,}: s (peak RSS MB)" for r in results) + " |")
    print("|---|" + "---|" * len(results))
    for key, title in names:
        if not any(key in r for r in results):
            continue
        cells = [f"{r[key]['wall']:.1f} ({r[key]['rss'] / 1e6:.0f})" if key in r else "-" for r in results]
        print(f"| {title} | " + " | ".join(cells) + " |")
    if any("html_mb" in r for r in results):
        print("\n| N subjects | TSV rows | TSV sorted | group.html (MB) | figure (MB) | <img> in HTML | links to reports |")
        print("|---|---|---|---|---|---|---|")
        for r in results:
            if "html_mb" in r:
                print(f"| {r['n']:,} | {r['tsv_rows']:,} | {r['tsv_sorted']} | {r['html_mb']:.2f} | {r['fig_mb']:.2f} | "
                      f"{r['imgs']} | {r['links']:,} |")


if __name__ == "__main__":
    raise SystemExit(main())

"""End-to-end timing of the BIDS-App: one participant, both hemispheres.

    .venv/bin/python benchmarks/bids_app.py [--repeats 3] [--nprocs 2] [--model rigid default]
                                            [--participant 01] [--markdown]

Runs ``geomorph-bids <example dataset> <out> participant --participant-label 01`` in a fresh
process with a fresh output and work folder (``fresh``), then again on the same work folder
(``resume``: every node cached), ``--repeats`` times each, and prints the median wall time
(process start, imports, discovery, the Nipype run and the summary included) and the
registration's own time per hemisphere (``seconds_total`` from the metrics). The dataset is
``examples/ds-geomorph-example`` (fsaverage5-sized synthetic subjects; sub-01 FreeSurfer layout,
sub-02 sMRIPrep layout).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_once(dataset: Path, out: Path, work: Path, model: str, nprocs: int, subject: str) -> tuple[float, int, str]:
    exe = Path(sys.executable).with_name("geomorph-bids")
    cmd = [str(exe), str(dataset), str(out), "participant", "--participant-label", subject, "--model", model,
           "-w", str(work), "--nprocs", str(nprocs)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "NIPYPE_NO_ET": "1"})
    return time.perf_counter() - t0, done.returncode, (done.stderr.strip().splitlines() or [""])[-1]


def registration_seconds(out: Path, subject: str) -> list[float]:
    return [json.loads(p.read_text())["registration"]["seconds_total"]
            for p in sorted((out / f"sub-{subject}").rglob("*_desc-geomorph_metrics.json"))]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", type=Path, default=ROOT / "examples" / "ds-geomorph-example")
    p.add_argument("--participant", default="01")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--nprocs", type=int, default=2)
    p.add_argument("--model", nargs="+", default=["rigid", "default"])
    args = p.parse_args()
    print(f"| model | participant (layout) | run | wall time, median of {args.repeats} (s) | "
          "registration per hemisphere (s) | exit code |")
    print("|---|---|---|---|---|---|")
    layout = {"01": "FreeSurfer", "02": "sMRIPrep"}.get(args.participant, "?")
    for model in args.model:
        fresh, resume, reg, codes, note = [], [], [], set(), ""
        for _ in range(args.repeats):
            tmp = Path(tempfile.mkdtemp(prefix="geomorph-bench-"))
            try:
                t, code, last = run_once(args.dataset, tmp / "out", tmp / "work", model, args.nprocs, args.participant)
                fresh.append(t)
                codes.add(code)
                if code:
                    note = last.split(" (node ")[0].strip()
                    continue
                reg += registration_seconds(tmp / "out", args.participant)
                t, code, _ = run_once(args.dataset, tmp / "out", tmp / "work", model, args.nprocs, args.participant)
                resume.append(t)
                codes.add(code)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        code_text = ",".join(map(str, sorted(codes))) + (f" ({note})" if note else "")
        reg_text = f"{statistics.median(reg):.2f}" if reg else "-"
        print(f"| {model} | sub-{args.participant} ({layout}) | fresh | {statistics.median(fresh):.1f} | "
              f"{reg_text} | {code_text} |")
        if resume:
            print(f"| {model} | sub-{args.participant} ({layout}) | resume (cached) | "
                  f"{statistics.median(resume):.1f} | - | 0 |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

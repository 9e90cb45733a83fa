"""Batch mode vs one process per subject: hemispheres per second on this machine.

    .venv/bin/python benchmarks/batch_mode.py [--subjects 8] [--level 5] [--batch-size 8]
                                              [--nprocs 2] [--repeats 2]

Builds a synthetic cohort in FreeSurfer layout (``geomorph_bids.engine.example_data``: the bundled
fsaverage template at ico-``level``, moved by random smooth warps and rotations), then, in the
same run and on the same cohort, times

* **one process per subject** (how a SLURM array or a shell loop runs it):
  ``geomorph-bids BIDS OUT participant --participant-label X`` once per subject, in sequence;
* **batch**: one ``geomorph-bids BIDS OUT participant --batch-size N`` for the whole cohort;

each with a fresh output and work folder, the default registration (rigid + optimisation),
``--repeats`` times; prints the median wall times and hemispheres per second, and their ratio.
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


def make_cohort(root: Path, n: int, level: int) -> Path:
    from geomorph_bids.engine.example_data import synthetic_hemisphere, template_hemisphere, write_freesurfer

    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "batch benchmark", "BIDSVersion": "1.9.0"}))
    for s in range(1, n + 1):
        for k, hemi in enumerate(("L", "R")):
            v, f, maps = template_hemisphere(hemi, level)
            h = synthetic_hemisphere(hemi, v, f, maps, seed=[s, k, 2026])
            write_freesurfer(root / "derivatives" / "freesurfer", f"sub-{s:02d}", h)
    return root


def run(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "NIPYPE_NO_ET": "1"})
    if done.returncode:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subjects", type=int, default=8)
    p.add_argument("--level", type=int, default=5, help="icosphere level of the synthetic subjects")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--nprocs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    exe = str(Path(sys.executable).with_name("geomorph-bids"))
    tmp = Path(tempfile.mkdtemp(prefix="geomorph-batch-"))
    try:
        bids = make_cohort(tmp / "bids", args.subjects, args.level)
        labels = [f"{s:02d}" for s in range(1, args.subjects + 1)]
        per_subject, batch = [], []
        for r in range(args.repeats):
            out, work = tmp / f"loop{r}", tmp / f"loopw{r}"
            per_subject.append(sum(run([exe, str(bids), str(out), "participant", "--participant-label", s,
                                        "-w", str(work), "--nprocs", str(args.nprocs)]) for s in labels))
            batch.append(run([exe, str(bids), str(tmp / f"batch{r}"), "participant", "--batch-size",
                              str(args.batch_size), "-w", str(tmp / f"batchw{r}"), "--nprocs", str(args.nprocs)]))
        n_hemi = 2 * args.subjects
        loop_t, batch_t = statistics.median(per_subject), statistics.median(batch)
        print(f"Cohort: {args.subjects} synthetic subjects x 2 hemispheres, ico-{args.level} spheres; "
              f"{args.nprocs} processes; median of {args.repeats}.\n")
        print("| mode | wall time (s) | hemispheres / s | speed-up |")
        print("|---|---|---|---|")
        print(f"| one process per subject (sequential) | {loop_t:.1f} | {n_hemi / loop_t:.2f} | 1.0x |")
        print(f"| batch (`--batch-size {args.batch_size}`) | {batch_t:.1f} | {n_hemi / batch_t:.2f} | "
              f"{loop_t / batch_t:.1f}x |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

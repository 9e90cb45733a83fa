"""The example dataset on a real single-node SLURM: local run vs array recipe vs Nipype plugin.

    .venv/bin/python benchmarks/slurm.py [--repeats 3] [--nipype-participant 01]

Starts SLURM with ``scripts/ci_slurm.sh`` (needs root or sudo and apt; stops it at the end), then
``--repeats`` times, each with fresh output and work folders:

- ``local``: ``geomorph-bids <example> <out> participant --nprocs 2`` (both participants);
- ``array``: ``workflows/slurm_array.sh --submit`` (one task per participant, the recipe's
  2 CPUs per task, the venv as runtime), from submission until the queue is empty;
- ``nipype``: ``geomorph-bids ... --participant-label 01 --use-plugin workflows/nipype_slurm.yml``
  (every node its own job, 2 CPUs each).

Prints the median wall times and, from ``sacct --completion``, the median elapsed time of each
kind of job (array task per participant; Nipype job per node name) and how many jobs ran. On a
node with as many CPUs as one job asks for, the jobs run one after the other, so the wall time
is close to the sum of the jobs' times plus SLURM's scheduling and polling gaps.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).with_name("geomorph-bids")


def seconds(elapsed: str) -> int:
    """sacct's [D-]HH:MM:SS as seconds."""
    days, _, hms = elapsed.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return int(days or 0) * 86400 + h * 3600 + m * 60 + s


def sacct(env: dict) -> dict[str, tuple[str, str, int]]:
    out = subprocess.run(["sacct", "--completion", "-X", "-P", "-n", "-o", "jobidraw,jobname%200,state,elapsed"],
                         env=env, capture_output=True, text=True, check=True).stdout
    return {r[0]: (r[1], r[2], seconds(r[3])) for r in (line.split("|") for line in out.splitlines() if line)}


def wait_empty(env: dict, job: str) -> None:
    while subprocess.run(["squeue", "-h", "-j", job], env=env, capture_output=True, text=True).stdout.strip():
        time.sleep(0.5)


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", type=Path, default=ROOT / "examples" / "ds-geomorph-example")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--nipype-participant", default="01")
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="geomorph-slurm-bench-"))
    slurm_dir = tmp / "slurm"
    start = subprocess.run(["bash", str(ROOT / "scripts" / "ci_slurm.sh"), "start", str(slurm_dir), str(os.getpid())],
                           capture_output=True, text=True)
    if start.returncode != 0:
        sys.exit(f"scripts/ci_slurm.sh start failed:\n{start.stderr}")
    version = re.search(r"SLURM (\S+) up", start.stderr)
    env = dict(os.environ, SLURM_CONF=str(slurm_dir / "slurm.conf"), GEOMORPH_CI_SLURM=str(slurm_dir),
               PATH=f"{EXE.parent}{os.pathsep}{os.environ.get('PATH', '')}", NIPYPE_NO_ET="1")
    env.setdefault("LOGNAME", getpass.getuser())
    env.pop("GEOMORPH_SIF", None)
    walls: dict[str, list[float]] = defaultdict(list)
    jobs: dict[str, list[int]] = defaultdict(list)
    try:
        for k in range(args.repeats):
            run = tmp / f"run{k}"
            walls["local (MultiProc, 2 processes, 2 participants)"].append(timed(
                [str(EXE), str(args.dataset), str(run / "local"), "participant", "-w", str(run / "wl"),
                 "--nprocs", "2"], env))

            t0 = time.perf_counter()
            sub = subprocess.run(["bash", str(ROOT / "workflows" / "slurm_array.sh"), "--submit", str(args.dataset),
                                  str(run / "array")], env=env, capture_output=True, text=True, check=True).stdout
            job = re.search(r"^submitted array job (\d+) ", sub, flags=re.M).group(1)
            wait_empty(env, job)
            walls["array recipe (2 tasks, 2 CPUs each)"].append(time.perf_counter() - t0)
            shown = subprocess.run(["scontrol", "-o", "show", "job", job], env=env, capture_output=True,
                                   text=True, check=True).stdout
            done = sacct(env)
            for raw, task in re.findall(r"JobId=(\d+) ArrayJobId=\d+ ArrayTaskId=(\d+)", shown):
                name, state, secs = done[raw]
                assert state == "COMPLETED", (raw, state)
                jobs[f"array task (one participant, line {task})"].append(secs)

            before = set(sacct(env))
            walls[f"Nipype SLURM plugin (sub-{args.nipype_participant}, 8 node jobs)"].append(timed(
                [str(EXE), str(args.dataset), str(run / "nipype"), "participant", "--participant-label",
                 args.nipype_participant, "-w", str(run / "wn"), "--use-plugin",
                 str(ROOT / "workflows" / "nipype_slurm.yml")], env))
            for raw, (name, state, secs) in sacct(env).items():
                if raw not in before:
                    assert state == "COMPLETED", (raw, name, state)
                    jobs[f"Nipype job: {name.split('.')[0]}"].append(secs)
            shutil.rmtree(run, ignore_errors=True)
    finally:
        subprocess.run(["bash", str(ROOT / "scripts" / "ci_slurm.sh"), "stop", str(slurm_dir)], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"SLURM {version.group(1) if version else '?'} on one node ({os.cpu_count()} CPUs), "
          f"example dataset, default model, {args.repeats} repeat(s)\n")
    print(f"| mode | wall time, median of {args.repeats} (s) |")
    print("|---|---|")
    for mode, values in walls.items():
        print(f"| {mode} | {statistics.median(values):.1f} |")
    print("\n| job | jobs | elapsed per job, median (s) | min-max (s) |")
    print("|---|---|---|---|")
    for name, values in sorted(jobs.items()):
        print(f"| {name} | {len(values)} | {statistics.median(values):.0f} | {min(values)}-{max(values)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

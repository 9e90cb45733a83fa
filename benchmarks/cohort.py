"""Cohort throughput: the cost per hemisphere end to end, Nipype workflow vs batch mode.

    .venv/bin/python benchmarks/cohort.py [--subjects 16 64] [--vertices 10k 164k] [--nprocs 2]
                                          [--batch-size 8] [--repeats 1] [--modes workflow batch deferred]
                                          [--no-reports-pass] [--skip 164k:64] [--json FILE]

For each density (``10k``: the bundled example's FreeSurfer subject, 10,242 vertices, with its
inflated surfaces, copied N times; ``164k``: the fsLR 164k sphere with sMRIPrep's reference sulc
(installed with sMRIPrep), moved by one random smooth warp and rotation per hemisphere, in
FreeSurfer layout, copied N times) and each cohort size N, runs in the same invocation, in
alternation, with fresh output and work folders:

* ``workflow``: ``geomorph-bids BIDS OUT participant --nprocs P`` (Nipype MultiProc);
* ``batch``: the same command with ``--batch-size B`` (no Nipype; P worker processes);
* ``deferred``: batch mode with ``--reports deferred``, then (timed apart) the one
  ``--reports-only --nprocs P`` pass that builds the reports;
* ``network``: ``deferred`` with a bundled network alone (``--model NET --no-optimise``,
  ``--network``, default ``sulc-fsLR``): the fastest registration;

the others with the default registration, all with reports. Each run is a fresh process; the table gives
the wall time (launch to exit), hemispheres per second, seconds per hemisphere end to end, the
peak memory of the whole process tree (sum of RSS, and of PSS: shared pages counted once;
sampled once a second), and
where the time goes per hemisphere: start-up (launch to ``main``), settings and discovery, then
worker (or node) seconds of reading, registration (register(): pre-alignment, warp,
inverse and metrics), resampling, writing, reports, and what is left of ``P x wall``
(scheduling, waiting, idle cores). "outside registration" is the wall time per hemisphere minus
the registration's core-seconds per hemisphere divided by P: what the run costs beyond keeping
P cores registering. Medians over ``--repeats``. The 100k-hemisphere projection divides by the
measured rate.
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
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ds-geomorph-example"
STAGES = ("read", "register", "resample", "write", "report")
#: Nipype node -> stage
NODES = {"load_features": "read", "register": "register", "resample": "resample", "write_outputs": "write"}


# ------------------------------------------------------------------------------ cohorts

def _description(root: Path, name: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": name, "BIDSVersion": "1.9.0"}))


def cohort_10k(root: Path, n: int) -> Path:
    """The example's FreeSurfer subject (sub-01: sphere, sulc, curv, thickness, inflated) N times."""
    _description(root, "cohort 10k")
    src = EXAMPLE / "derivatives" / "freesurfer" / "sub-01"
    for s in range(1, n + 1):
        shutil.copytree(src, root / "derivatives" / "freesurfer" / f"sub-{s:03d}")
    return root


def cohort_164k(root: Path, n: int) -> Path:
    """fsLR 164k sphere + sMRIPrep's reference sulc (in FreeSurfer's sign), warped and rotated once
    per hemisphere, written in FreeSurfer layout, N copies."""
    import numpy as np

    from geomorph_bids.engine.example_data import synthetic_hemisphere, write_freesurfer
    from geomorph_bids.io import read_feature, read_surface
    from geomorph_bids.resources import package_file

    _description(root, "cohort 164k")
    first = root / "derivatives" / "freesurfer" / "sub-001"
    for k, hemi in enumerate(("L", "R")):
        s = read_surface(package_file("smriprep", f"data/atlases/fsaverage.{hemi}_LR.spherical_std.164k_fs_LR.surf.gii"))
        # refsulc is in HCP's sign: FreeSurfer's lh.sulc is its negation (DATA.md); curv has sulc's sign
        # (both positive in sulci, as geomorph-bids checks when it registers them together)
        sulc = -np.asarray(read_feature(package_file("smriprep", f"data/atlases/{hemi}.refsulc.164k_fs_LR.shape.gii")),
                           dtype=np.float64)
        h = synthetic_hemisphere(hemi, s.vertices, s.faces, {"sulc": sulc, "curv": 0.1 * sulc}, seed=[164, k, 2026])
        write_freesurfer(root / "derivatives" / "freesurfer", "sub-001", h)
    for s in range(2, n + 1):
        shutil.copytree(first, root / "derivatives" / "freesurfer" / f"sub-{s:03d}")
    return root


# ------------------------------------------------------------------------------ measuring

def _children(pid: int, table: dict[int, list[int]]) -> list[int]:
    """Child pids of ``pid``: from ``/proc/<pid>/task/*/children`` where the kernel has it, else
    from ``table`` (parent -> children, one scan of /proc per sample)."""
    try:
        out: list[int] = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            out.extend(int(c) for c in (task / "children").read_text().split())
        return out
    except OSError:
        pass
    if not table:
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                table.setdefault(ppid, []).append(int(d.name))
        table.setdefault(-1, [])  # scanned (even if empty)
    return table.get(pid, [])


def _tree_memory(pid: int) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) in bytes of ``pid`` and all its descendants (Linux /proc)."""
    rss = pss = 0
    todo, table = [pid], {}
    while todo:
        p = todo.pop()
        todo.extend(_children(p, table))
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
        except OSError:
            continue
    return rss, pss


def run(cmd: list[str], log: Path) -> dict:
    """Run ``cmd``; wall time, exit code and the peak memory of its process tree."""
    peak = [0, 0]
    t0 = time.time()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT,
                                env={**os.environ, "NIPYPE_NO_ET": "1"})

        def watch() -> None:
            while proc.poll() is None:
                rss, pss = _tree_memory(proc.pid)
                peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
                time.sleep(1.0)  # a scan of /proc costs CPU: once a second

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        code = proc.wait()
        watcher.join()
    return {"wall": time.time() - t0, "launched": t0, "code": code, "rss": peak[0], "pss": peak[1]}


def node_seconds(work: Path) -> dict[str, float]:
    """Seconds of every Nipype node of a workflow run, summed per stage (from its result files)."""
    from nipype.pipeline.engine.utils import load_resultfile

    out = {k: 0.0 for k in STAGES}
    for path in work.rglob("result_*.pklz"):
        stage = NODES.get(path.parent.name)
        if stage is None:
            continue
        try:
            rt = load_resultfile(str(path)).runtime
            out[stage] += float(getattr(rt, "duration", 0.0) or 0.0)
        except Exception:  # noqa: BLE001 - a result that cannot be read is left out
            continue
    return out


def measure(mode: str, bids: Path, n: int, tmp: Path, nprocs: int, batch_size: int, repeat: int,
            reports_pass: bool = True, network: str = "sulc-fsLR") -> dict:
    exe = str(Path(sys.executable).with_name("geomorph-bids"))
    out, work = tmp / f"{mode}-{n}-{repeat}-out", tmp / f"{mode}-{n}-{repeat}-work"
    labels = [f"{s:03d}" for s in range(1, n + 1)]
    cmd = [exe, str(bids), str(out), "participant", "--participant-label", *labels, "-w", str(work),
           "--nprocs", str(nprocs)] + ([] if mode == "workflow" else ["--batch-size", str(batch_size)])
    if mode in ("deferred", "network"):
        cmd += ["--reports", "deferred"]
    if mode == "network":
        cmd += ["--model", network, "--no-optimise"]
    r = run(cmd, tmp / f"{mode}-{n}-{repeat}.log")
    if r["code"] != 0:
        raise SystemExit(f"{mode} N={n} failed ({r['code']}); see {tmp / f'{mode}-{n}-{repeat}.log'}:\n"
                         + (tmp / f"{mode}-{n}-{repeat}.log").read_text()[-3000:])
    timing = json.loads(next(work.glob("timings-*.json")).read_text())
    stages = timing.get("stages") or {}
    if mode == "workflow":
        stages = node_seconds(work)
    metrics = [json.loads(p.read_text())["registration"] for p in out.rglob("*_desc-geomorph_metrics.json")]
    hemis = len(metrics)
    ph = timing["phases"]
    per = {k: float(stages.get(k, 0.0)) / hemis for k in STAGES}
    if mode == "workflow":  # the reports are built after the workflow, --nprocs at a time
        per["report"] = ph.get("reports", 0.0) * nprocs / hemis
    busy = sum(per.values())
    processing = ph.get("processing", 0.0) + (ph.get("reports", 0.0) if mode == "workflow" else 0.0)
    result = {"mode": mode, "n": n, "hemis": hemis, "wall": r["wall"], "rss": r["rss"], "pss": r["pss"],
              "startup": timing["started"] - r["launched"],
              "settings": ph.get("settings", 0.0) + ph.get("discovery", 0.0) + ph.get("start", 0.0),
              **{f"s_{k}": v for k, v in per.items()},
              "s_idle": max(0.0, processing * nprocs / hemis - busy),
              "register_split": {k: statistics.mean(m.get(k) or 0.0 for m in metrics)
                                 for k in ("seconds_read", "seconds_prealign", "seconds_network", "seconds_optimise",
                                           "seconds_invert", "seconds_metrics")}}
    result["per_hemi"] = r["wall"] / hemis
    result["outside"] = result["per_hemi"] - per["register"] / nprocs
    if mode == "deferred" and reports_pass:  # the one --reports-only pass that builds them later
        rp = run([exe, str(bids), str(out), "participant", "--reports-only", "--nprocs", str(nprocs)],
                 tmp / f"{mode}-{n}-{repeat}-reports.log")
        result["reports_pass_wall"], result["reports_pass_rss"] = rp["wall"], rp["rss"]
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    return result


def median_of(runs: list[dict]) -> dict:
    out = dict(runs[0])
    for k, v in runs[0].items():
        if isinstance(v, float) or (isinstance(v, int) and not isinstance(v, bool) and len({r[k] for r in runs}) > 1):
            out[k] = statistics.median(r[k] for r in runs)  # counts the runs share (N, hemispheres) stay whole
    return out


# ------------------------------------------------------------------------------ tables

def print_tables(results: list[dict], nprocs: int, batch_size: int) -> None:
    print(f"\n| vertices | N subjects (hemispheres) | mode | wall (s) | hemispheres/s | s per hemisphere | "
          f"outside registration (s/hemi) | peak RSS / PSS (GB) | batch vs workflow |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        ref = next((x for x in results if x["density"] == r["density"] and x["n"] == r["n"]
                    and x["mode"] == "workflow"), None)
        ratio = f"{ref['wall'] / r['wall']:.2f}x" if ref and r["mode"] != "workflow" else "-"
        mode = {"workflow": "workflow (MultiProc)", "batch": f"batch (`--batch-size {batch_size}`)",
                "deferred": "batch, `--reports deferred`",
                "network": "batch, `--reports deferred`, network alone (`--no-optimise`)"}[r["mode"]]
        print(f"| {r['density']} | {r['n']} ({r['hemis']}) | {mode} | {r['wall']:.1f} | {r['hemis'] / r['wall']:.3f} | "
              f"{r['per_hemi']:.2f} | {r['outside']:.2f} | {r['rss'] / 1e9:.2f} / {r['pss'] / 1e9:.2f} | {ratio} |")
    print(f"\nWhere the time goes, seconds per hemisphere (start-up and settings: wall, shared by the run; "
          f"the rest: worker/node seconds; idle = {nprocs} x wall of the processing - the stages):\n")
    print("| vertices | N | mode | start-up (run) | settings + discovery (run) | read | registration | "
          "resample | write | reports | scheduling + idle |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['density']} | {r['n']} | {r['mode']} | {r['startup']:.1f} s | {r['settings']:.1f} s | "
              f"{r['s_read']:.2f} | {r['s_register']:.2f} | {r['s_resample']:.2f} | {r['s_write']:.2f} | "
              f"{r['s_report']:.2f} | {r['s_idle']:.2f} |")
    print("\nInside the registration (register()'s own seconds, mean per hemisphere):\n")
    print("| vertices | N | mode | read | pre-alignment | network | optimisation (batch share) | inverse | metrics |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        s = r["register_split"]
        print(f"| {r['density']} | {r['n']} | {r['mode']} | " + " | ".join(
            f"{s[k]:.2f}" for k in ("seconds_read", "seconds_prealign", "seconds_network", "seconds_optimise",
                                    "seconds_invert", "seconds_metrics")) + " |")
    for r in results:
        if "reports_pass_wall" in r:
            print(f"\n{r['density']} N={r['n']}: the deferred reports, one `--reports-only` pass: "
                  f"{r['reports_pass_wall']:.1f} s ({r['reports_pass_wall'] / r['hemis']:.2f} s per hemisphere, "
                  f"peak RSS {r['reports_pass_rss'] / 1e9:.2f} GB)")
    print("\nProjection for 100,000 hemispheres at the measured rate (largest N of each density):\n")
    for density in dict.fromkeys(r["density"] for r in results):
        rows = [r for r in results if r["density"] == density]
        n = max(r["n"] for r in rows)
        for r in rows:
            if r["n"] == n:
                hours = 100_000 / (r["hemis"] / r["wall"]) / 3600
                print(f"- {density}, {r['mode']}: {hours:.0f} h ({hours / 24:.1f} days) on {nprocs} cores")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subjects", type=int, nargs="+", default=[16, 64])
    p.add_argument("--vertices", nargs="+", choices=("10k", "164k"), default=["10k", "164k"])
    p.add_argument("--nprocs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--network", default="sulc-fsLR", help="the network of the 'network' mode (default sulc-fsLR)")
    p.add_argument("--modes", nargs="+", choices=("workflow", "batch", "deferred", "network"),
                   default=["workflow", "batch", "deferred"],
                   help="deferred: batch mode with --reports deferred, then one --reports-only pass (timed apart)")
    p.add_argument("--no-reports-pass", action="store_true", help="deferred: skip the --reports-only pass")
    p.add_argument("--skip", nargs="*", default=[], metavar="DENSITY:N",
                   help="combinations not to run, e.g. 164k:64 (the longest)")
    p.add_argument("--json", type=Path, help="also write every measurement here")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="geomorph-cohort-"))
    results = []
    print(f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f} at start; --nprocs {args.nprocs}, "
          f"--batch-size {args.batch_size}, median of {args.repeats}", flush=True)
    try:
        for density in args.vertices:
            bids = (cohort_10k if density == "10k" else cohort_164k)(tmp / f"bids-{density}", max(args.subjects))
            for n in args.subjects:
                if f"{density}:{n}" in args.skip:
                    continue
                runs: dict[str, list[dict]] = {m: [] for m in args.modes}
                for rep in range(args.repeats):
                    for mode in args.modes:  # alternating: load changes hit both modes alike
                        r = measure(mode, bids, n, tmp, args.nprocs, args.batch_size, rep, not args.no_reports_pass,
                                    args.network)
                        runs[mode].append(r)
                        print(f"  {density} N={n} {mode} #{rep + 1}: {r['wall']:.1f} s, "
                              f"{r['hemis'] / r['wall']:.3f} hemispheres/s, peak PSS {r['pss'] / 1e9:.2f} GB, "
                              f"load {os.getloadavg()[0]:.1f}", flush=True)
                for mode in args.modes:
                    results.append({**median_of(runs[mode]), "density": density})
        print_tables(results, args.nprocs, args.batch_size)
        print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

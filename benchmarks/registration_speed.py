"""Benchmark: per-hemisphere registration time and peak memory, by method, at FreeSurfer size.

Input: the fsaverage sphere (163,842 vertices, the size of a FreeSurfer subject's ``?h.sphere``)
rotated by 20 degrees about a fixed axis, with the bundled fsaverage sulc carried onto it
(barycentric, ico-6 -> ico-7); registered to the fsaverage template. Methods:

* ``rigid``: ``register(..., rigid_only=True)``;
* ``optimise``: the package default without a network (rigid, then the warp optimised per pair);
* ``network``: a bundled model (``--model``, default ``sulc-fsaverage``), network only;
* ``network+optimise``: that network's warp followed by the short refinement (``register(model=...)``,
  what ``--model`` runs; docs/benchmarks.md's "network + short refinement").

Each method runs in a fresh subprocess (so its peak RSS, ``resource.getrusage``, is its own;
it includes the ~0.4 GB of the Python/torch process): one warm-up registration, then
``--repeats`` timed ones. Columns: median total seconds (read to metrics, as ``register``
reports them in ``seconds_total``), median seconds of the rigid pre-alignment, the network and
the optimisation, the ratio of each method's total to the ``optimise`` default's (same run), and
what a fresh process pays before that (as ``geomorph-register`` or a new worker does): the import
of torch and the engine, and the wall time of the first registration (the warm-up: caches,
tables and lazy imports filled).

``--stages`` adds a second table: the median seconds of every stage ``register`` reports
(read, model load, pre-alignment, network, optimisation, inverse warp, metrics).

Run: ``.venv/bin/python benchmarks/registration_speed.py [--repeats 3] [--threads 2]
[--device cpu|cuda] [--model NAME|PATH] [--stages]``; prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
from geomorph_bids.cli.machine import threads_wait_passively  # noqa: E402

# as the commands run: spinning OpenMP threads slowed the network 5-8x on a busy host, so a timing
# from this script differed from the command's (before numpy and torch start OpenMP)
threads_wait_passively()

METHODS = ("rigid", "optimise", "network", "network+optimise")
STAGES = ("read", "model_load", "prealign", "network", "optimise", "invert", "metrics")


def _inputs():
    import numpy as np

    from geomorph_bids.io.templates import load_template
    from geomorph_bids.sphere.icosphere import icosphere
    from geomorph_bids.sphere.resample import resample
    from geomorph_bids.sphere.rotation import rotation_matrix

    tpl = load_template("fsaverage", "L", ("sulc",))
    v7, f7 = icosphere(7)
    sulc = resample(tpl.features["sulc"], (tpl.vertices, tpl.faces), (v7, f7), method="barycentric")
    rot = rotation_matrix(np.array([0.3, -0.5, 0.8]), 20.0)
    return (np.asarray(v7) @ rot.T, np.asarray(f7)), {"sulc": np.asarray(sulc)}


def run_method(method: str, repeats: int, device: str, model: str, imports_s: float = 0.0) -> dict:
    """Time one method in this process; returns medians, the first call's wall time and the peak RSS."""
    from geomorph_bids.engine.register import register

    sphere, feats = _inputs()
    kwargs = {"rigid": {"rigid_only": True}, "optimise": {},
              "network": {"model": model, "optimise": False},
              "network+optimise": {"model": model}}[method]
    runs = []
    for i in range(repeats + 1):
        t = time.perf_counter()
        m = register(sphere, feats, "fsaverage", "L", device=device, **kwargs).metrics
        if i:
            runs.append(m)
        else:
            first = time.perf_counter() - t
    med = lambda k: statistics.median(r.get(k, 0.0) for r in runs)  # noqa: E731
    return {"total": med("seconds_total"), "prealign": med("seconds_prealign"),
            "network": med("seconds_network"), "optimise": med("seconds_optimise"),
            "first": first, "imports": imports_s, "stages": {s: med(f"seconds_{s}") for s in STAGES},
            "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "folded": runs[-1]["warp_folded_triangles"], "method": runs[-1]["method"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="sulc-fsaverage", help="bundled model name or checkpoint path")
    ap.add_argument("--stages", action="store_true", help="also print the median seconds of every stage")
    ap.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)  # internal: one subprocess
    args = ap.parse_args(argv)
    if args.method:
        t = time.perf_counter()
        import torch

        import geomorph_bids.engine.register  # noqa: F401  (timed: what every fresh process pays)

        imports_s = time.perf_counter() - t
        torch.set_num_threads(args.threads)
        print(json.dumps(run_method(args.method, args.repeats, args.device, args.model, imports_s)))
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    results = {}
    load_at_start = os.getloadavg()[0]  # the host's state, printed with the table
    for method in METHODS:
        out = subprocess.run([sys.executable, __file__, "--method", method, "--repeats", str(args.repeats),
                              "--threads", str(args.threads), "--device", args.device, "--model", args.model],
                             capture_output=True, text=True, env=env, check=True)
        results[method] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  {method}: {results[method]['total']:.2f} s", file=sys.stderr, flush=True)
    ref = results["optimise"]["total"]
    print(f"### Registration of one 163,842-vertex hemisphere to fsaverage ({args.device}, {args.threads} "
          f"threads, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, median of {args.repeats}; "
          f"model {args.model}; load {load_at_start:.1f} at the start)\n")
    print("| method | total s | rigid s | network s | optimisation s | ratio to optimise | fresh process: "
          "imports s + first call s | peak RSS GB | folded |")
    print("|---|---|---|---|---|---|---|---|---|")
    for method, r in results.items():
        print(f"| {method} ({r['method']}) | {r['total']:.2f} | {r['prealign']:.2f} | {r['network']:.2f} | "
              f"{r['optimise']:.2f} | {r['total'] / ref:.2f}x | {r['imports']:.2f} + {r['first']:.2f} | "
              f"{r['rss_gb']:.2f} | {r['folded']} |")
    if args.stages:
        print(f"\n### Stages (seconds, median of {args.repeats})\n")
        print("| method | " + " | ".join(STAGES) + " |")
        print("|---|" + "---|" * len(STAGES))
        for method, r in results.items():
            print(f"| {method} | " + " | ".join(f"{r['stages'][s]:.3f}" for s in STAGES) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the GeoMorph network alone, network + short refinement, optimiser alone, rigid.

"network+refine" is ``register(model=...)`` (the short refinement,
``geomorph_bids.model.optimise.REFINEMENT``); "optimise" is ``register()`` without a network;
"network+optimise" starts the full optimiser schedule from the network.

    .venv/bin/python benchmarks/network.py --template fsaverage --model sulc-fsaverage
        [--pairs fsavg5_Rm-fsaverage refsulc_Rm-fsaverage] [--warps 2] [--configs bumps smooth_large]
        [--methods rigid network network+refine network+optimise optimise] [--threads 2]

Every row in one run, on the same machine. Pairs (``geomorph_bids.engine.real_pairs``): real
hemispheres with a reference registration, at their native resolution (10,242 or 163,842
vertices), registered to the template's LEFT hemisphere (right ones mirrored; ``fsavg5_Lm-fsaverage``:
fsaverage5's left mirrored onto fsaverage's RIGHT, where a mirrored network is refused), and the same
pairs with their moving sphere further deformed by ``--warps`` random smooth warps per
``--configs`` (``engine.synth.BENCHMARK_CONFIGS``: families and seeds never used in training;
a vertex keeps its reference position, so the answer is still known).

Columns: median / p95 angular error of the output sphere vs the reference (degrees), sulc CC
with the template after (its ico-6 grid, medial wall masked), mean |log2 areal| distortion of the
output vs the input sphere, folded triangles, ``register()``'s own ``seconds_total`` (read,
pre-alignment, network, optimisation, inverse, metrics). Warped-pair rows give the median over
their cases. Set SUBJECTS_DIR to a FreeSurfer subjects folder with fsaverage to add the
full-resolution ``fsaverage_L-fsLR`` pair.
"""

from __future__ import annotations

import argparse
import os
import sys


def _threads() -> str:
    for i, a in enumerate(sys.argv):
        if a == "--threads" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
    return "2"


for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, _threads())
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
from geomorph_bids.cli.machine import threads_wait_passively  # noqa: E402

# as the commands run: spinning OpenMP threads slowed the network 5-8x on a busy host, so a timing
# from this script differed from the command's (before numpy and torch start OpenMP)
threads_wait_passively()

import numpy as np  # noqa: E402

from geomorph_bids.engine.real_pairs import REAL_PAIRS, RealPair, real_pair  # noqa: E402
from geomorph_bids.errors import InputError  # noqa: E402
from geomorph_bids.engine.register import register  # noqa: E402
from geomorph_bids.engine.synth import BENCHMARK_CONFIGS, random_warp  # noqa: E402
from geomorph_bids.model.optimise import OptimiseConfig  # noqa: E402


def warped(pair: RealPair, config: str, seed: int) -> RealPair:
    """The pair with its moving sphere deformed by a random benchmark warp (references kept)."""
    w = random_warp(pair.vertices, np.random.default_rng([seed, 7]), BENCHMARK_CONFIGS[config], inverse=False)
    return RealPair(f"{pair.name}+{config}", pair.template, w.forward, pair.faces, pair.features,
                    pair.reference, pair.description, pair.hemi)


def run(pair: RealPair, method: str, model: str | None, channels: list[str]) -> dict:
    feats = {c: pair.features[c] for c in channels}
    kw: dict = {"rigid": dict(rigid_only=True), "optimise": dict(),
                "network": dict(model=model, optimise=False),
                "network+refine": dict(model=model),   # REFINEMENT (model.optimise)
                "network+optimise": dict(model=model, optimise=OptimiseConfig())}[method]
    r = register((pair.vertices, pair.faces), feats, pair.template, pair.hemi, device="cpu", **kw)
    e = pair.error_deg(r.sphere)
    return {"median": float(np.median(e)), "p95": float(np.percentile(e, 95)),
            "cc": float(np.mean([r.metrics[f"cc_{c}_after"] for c in channels])),
            "areal": float(r.metrics["areal_mean_abs"]), "folded": int(r.metrics["n_folded"]),
            "seconds": float(r.metrics["seconds_total"])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--template", choices=("fsLR", "fsaverage"), required=True)
    p.add_argument("--model", default=None, help="bundled network name or checkpoint path")
    p.add_argument("--pairs", nargs="+", default=None, help="real pairs (default: every pair of the template)")
    p.add_argument("--channels", nargs="+", default=["sulc"])
    p.add_argument("--warps", type=int, default=2, help="random warps per config and pair")
    p.add_argument("--configs", nargs="+", default=["bumps", "smooth_large"])
    p.add_argument("--methods", nargs="+", default=["rigid", "network", "network+refine", "optimise"],
                   choices=("rigid", "network", "network+refine", "network+optimise", "optimise"))
    p.add_argument("--threads", default="2")
    args = p.parse_args()
    if args.model is None:
        args.methods = [m for m in args.methods if not m.startswith("network")]
    names = args.pairs or [n for n, (t, _) in REAL_PAIRS.items() if t == args.template]
    pairs = []
    for n in names:
        try:
            pairs.append(real_pair(n))
        except ValueError as e:
            print(f"skipping {n}: {e}", file=sys.stderr)
    print(f"template {args.template}, model {args.model}, channels {' '.join(args.channels)}, "
          f"threads {args.threads}\n")
    print("| pair | vertices | method | median err, deg | p95 err, deg | CC after | mean \\|log2 areal\\| | "
          "folded | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for pair in pairs:
        if not all(c in pair.features for c in args.channels):
            continue
        cases = {"real": [pair]}
        for cfg in args.configs if args.warps > 0 else ():
            cases[f"+{cfg} (n={args.warps})"] = [warped(pair, cfg, s) for s in range(args.warps)]
        for label, group in cases.items():
            for method in args.methods:
                name = pair.name if label == "real" else f"{pair.name} {label}"
                try:
                    rows = [run(c, method, args.model, args.channels) for c in group]
                except InputError as e:  # sulc-fsaverage on fsavg5_Lm-fsaverage: refused, as it is for users
                    print(f"| {name} | {len(pair.vertices)} | {method} | refused: {str(e).split(': ')[0]} | | | | | |",
                          flush=True)
                    continue
                med = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
                print(f"| {name} | {len(pair.vertices)} | {method} | {med['median']:.3f} | {med['p95']:.2f} | "
                      f"{med['cc']:.4f} | {med['areal']:.3f} | {max(r['folded'] for r in rows)} | "
                      f"{med['seconds']:.2f} |", flush=True)


if __name__ == "__main__":
    main()

"""Benchmark: which fsaverage maps to register to, and how to use a full-resolution one.

Registers real and full-resolution pairs to the fsaverage LEFT template built from different
maps, with the default optimisation (and two schedule variants on the full-resolution maps),
and prints one markdown table: median / p95 angular error against the pair's reference (deg),
sulc CC after registration against ONE common map (FreeSurfer's full-resolution fsaverage sulc
on the ico-6 grid, so that rows with different templates are comparable), mean |log2 areal|,
folded triangles and seconds (one run; the optimiser is deterministic).

Templates (``--templates``)
---------------------------
* ``bundled``: the bundled fsaverage (nilearn's fsaverage5 sulc, upsampled to ico-6).
* ``full``: FreeSurfer's fsaverage sulc (163,842 vertices, from ``$SUBJECTS_DIR/fsaverage``
  through :mod:`geomorph_bids.io.template_sources`), sampled at the ico-6 vertices (what
  geomorph-bids does).
* ``full-area``: the same, averaged over each ico-6 vertex's area (``adap_bary_area``).
* ``refsulc``: a candidate bundled map (item 4 of issue 16): sMRIPrep's fsLR refsulc (164k,
  Apache-2.0, HCP sign negated) carried into fsaverage through sMRIPrep's fs_L-to-fs_LR sphere
  (each fsaverage vertex takes the refsulc where fs_L-to-fs_LR puts it).
* ``blend``: z-scored mean of ``bundled`` and ``refsulc``.

Schedules (``--schedules``, on ``full`` only): ``default``; ``ico6`` (the last stage compares
on ico-6 instead of ico-5); ``ico5stage`` (a fourth stage with an ico-5 control grid, compared
on ico-6).

Pairs (``--pairs``)
-------------------
* ``synth-0``, ``synth-1``: FreeSurfer's full fsaverage left sphere and sulc warped by a known
  smooth random warp (``engine.synth``, benchmark config ``bumps``, seeds 0 and 1, 163,842
  vertices): the template's own population, with the exact answer. Favours templates close to
  FreeSurfer's sulc by construction: read it with the real pairs.
* ``refsulc_Rm-fsaverage``: fsLR's refsulc right hemisphere mirrored (163,842 vertices);
  reference: sMRIPrep's fs_L-to-fs_LR inverted (a landmark-constrained registration between
  populations: sulc-driven alignment departs from it by ~1 deg; it favours ``refsulc``).
* ``fsavg5_Rm-fsaverage``: nilearn's fsaverage5 right hemisphere mirrored (10,242 vertices),
  reference through fs_R/fs_L-to-fs_LR (favours ``bundled``, built from the same maps).

Needs FreeSurfer's fsaverage (``SUBJECTS_DIR`` or ``--subjects-dir``) and the test extras.

Run::

    SUBJECTS_DIR=/path/to/subjects .venv/bin/python benchmarks/template_sources.py \\
        [--pairs synth-0 synth-1 refsulc_Rm-fsaverage fsavg5_Rm-fsaverage] \\
        [--templates bundled full full-area refsulc blend] [--schedules default ico6 ico5stage] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "2")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import _score  # noqa: E402

from geomorph_bids.engine.real_pairs import RealPair, real_pair  # noqa: E402
from geomorph_bids.engine.register import register  # noqa: E402
from geomorph_bids.io.template_ref import resolve_template_ref  # noqa: E402
from geomorph_bids.io.template_sources import TemplateSearch, load_source  # noqa: E402
from geomorph_bids.io.templates import Template, load_template  # noqa: E402
from geomorph_bids.model.optimise import OptimiseConfig  # noqa: E402

SCHEDULES = {
    "default": OptimiseConfig(),
    "ico6": OptimiseConfig(data_levels=(4, 5, 6)),
    "ico5stage": OptimiseConfig(control_levels=(2, 3, 4, 5), data_levels=(4, 5, 5, 6), steps=(60, 60, 60, 40),
                                smoothing=(30, 10, 3, 1)),
}
HEADER = ("| pair | template | schedule | median err, deg | p95 err, deg | CC vs full sulc | "
          "mean \\|log2 areal\\| | folded | seconds |")
RULE = "|---|---|---|---|---|---|---|---|---|"


def full_source(subjects_dir: str | None):
    """FreeSurfer's fsaverage left hemisphere as a template source (raises without one)."""
    where = TemplateSearch.from_environment(fs_subjects_dir=subjects_dir)
    src = resolve_template_ref("fsaverage", where=where).candidates("L")[0]
    if src.kind != "freesurfer":
        raise SystemExit("template_sources.py: needs FreeSurfer's fsaverage: set SUBJECTS_DIR or --subjects-dir")
    return src


def refsulc_in_fsaverage() -> np.ndarray:
    """sMRIPrep's fsLR-L refsulc carried to fsaverage-L's ico-6 vertices (FreeSurfer sign)."""
    from importlib.resources import files

    from geomorph_bids.io import read_feature, read_sphere
    from geomorph_bids.sphere.resample import barycentric_weights

    at = Path(str(files("smriprep") / "data" / "atlases"))
    lr = read_sphere(at / "fsaverage.L_LR.spherical_std.164k_fs_LR.surf.gii")
    refsulc = -np.asarray(read_feature(at / "L.refsulc.164k_fs_LR.shape.gii", n_vertices=lr.n_vertices), float)
    in_lr = read_sphere(at / "fs_L" / "fs_L-to-fs_LR_fsaverage.L_LR.spherical_std.164k_fs_L.surf.gii").vertices
    return barycentric_weights((lr.vertices, lr.faces), in_lr[:40962]) @ refsulc


def templates(names: list[str], source) -> dict[str, Template]:
    bundled = load_template("fsaverage", "L", ("sulc",))
    out: dict[str, Template] = {}
    z = lambda x: (x - x.mean()) / x.std()  # noqa: E731
    for name in names:
        if name == "bundled":
            out[name] = bundled
        elif name == "full":
            out[name] = load_source(source, ("sulc",), method="barycentric")
        elif name == "full-area":
            out[name] = load_source(source, ("sulc",), method="adap_bary_area")
        elif name == "refsulc":
            out[name] = replace(bundled, features={"sulc": refsulc_in_fsaverage()})
        elif name == "blend":
            mixed = 0.5 * (z(bundled.features["sulc"]) + z(refsulc_in_fsaverage()))
            out[name] = replace(bundled, features={"sulc": mixed * bundled.features["sulc"].std()})
        else:
            raise SystemExit(f"unknown template {name!r}")
    return out


def synthetic_pair(source, seed: int) -> RealPair:
    """FreeSurfer's full fsaverage L warped by a known ``bumps`` warp (benchmark stream)."""
    from geomorph_bids.engine.synth import BENCHMARK_CONFIGS, synth_subject
    from geomorph_bids.io import read_feature, read_sphere
    from geomorph_bids.sphere.locate import unit

    s = read_sphere(source.sphere)
    sulc = np.asarray(read_feature(source.maps["sulc"], n_vertices=s.n_vertices), float)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2,)))
    subj = synth_subject(s.vertices, s.faces, sulc, rng, BENCHMARK_CONFIGS["bumps"])
    return RealPair(f"synth-{seed}", "fsaverage", subj.vertices, s.faces, {"sulc": subj.features[:, 0]},
                    unit(subj.registered), "full fsaverage L, known warp")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", nargs="+", default=["synth-0", "synth-1", "refsulc_Rm-fsaverage", "fsavg5_Rm-fsaverage"])
    p.add_argument("--templates", nargs="+", default=["bundled", "full", "full-area", "refsulc", "blend"])
    p.add_argument("--schedules", nargs="+", default=["default", "ico6", "ico5stage"], choices=list(SCHEDULES))
    p.add_argument("--subjects-dir", default=None)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    source = full_source(args.subjects_dir)
    tpls = templates(args.templates, source)
    yardstick = load_source(source, ("sulc",)).features["sulc"]
    rows = []
    for name in args.pairs:
        pair = synthetic_pair(source, int(name.split("-")[1])) if name.startswith("synth-") else real_pair(name)
        if getattr(pair, "hemi", "L") != "L":
            sys.exit(f"{name}: registers to fsaverage's right template; this script compares left templates")
        runs = [(t, "default") for t in tpls] + [("full", s) for s in args.schedules if s != "default" and "full" in tpls]
        for tname, sched in runs:
            t = time.perf_counter()
            res = register((pair.vertices, pair.faces), {"sulc": pair.features["sulc"]}, tpls[tname], "L",
                           optimise=SCHEDULES[sched], device="cpu")
            sec = time.perf_counter() - t
            s = _score(res.sphere, pair.reference * 100.0, pair.vertices, pair.faces, pair.features["sulc"], yardstick)
            rows.append(f"| {pair.name} ({len(pair.vertices):,} v) | {tname} | {sched} | {s['median']:.3f} | "
                        f"{s['p95']:.3f} | {s['cc']:.3f} | {s['areal']:.4f} | {int(s['folded'])} | {sec:.1f} |")
            print(rows[-1], file=sys.stderr, flush=True)
    r = {n: float(np.corrcoef(t.features["sulc"], yardstick)[0, 1]) for n, t in tpls.items()}
    print("### fsaverage template maps and schedules (same machine, one run each)\n")
    print(HEADER)
    print(RULE)
    print("\n".join(rows))
    print("\nCorrelation of each template's sulc with FreeSurfer's full sulc at the ico-6 vertices: "
          + ", ".join(f"{n} {v:.3f}" for n, v in r.items()) + ".")
    print(f"\nThreads: {args.threads}. Total {time.perf_counter() - t0:.0f} s.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

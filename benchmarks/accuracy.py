"""Benchmark: registration accuracy against known answers, printed as markdown tables.

Methods
-------
* ``identity``: the input sphere unchanged (what you get without registering).
* ``rigid``: ``register(..., rigid_only=True)`` (rotation from the features).
* ``optimise``: ``register(...)`` with no network: rigid, then the GeoMorph warp optimised for
  the pair (:mod:`geomorph_bids.model.optimise`, default schedule); the package default.
* ``geomorph:<checkpoint>``: ``register(..., model=PATH, optimise=False)`` (network only) and
  ``geomorph+optimise:<checkpoint>`` (network, then optimisation), one pair per ``--model PATH``;
  only on the cases of the checkpoint's template and hemisphere.

Cases
-----
(a) Held-out synthetic pairs, ``geomorph_bids.engine.synth.make_benchmark(n, source, config)``
    (benchmark seed stream, generator configs and source maps never used in training; see
    docs/synthetic_data.md). Ground truth: ``subject.registered`` (the subject's vertices in
    template space). Columns: median and p95 angular error of the output sphere vs the ground
    truth (deg; per pair, then the median over pairs), sulc CC with the template before
    (identity) and after (the subject's sulc resampled onto the template's ico-6 grid through
    the output sphere, barycentric, template zeros masked), mean |log2 areal| of the output
    sphere vs the input sphere, folded triangles (sum over pairs), seconds per registration.
(b) The real fsaverage -> fsLR pair: moving = nilearn's fsaverage5 sphere + sulc (FreeSurfer
    sign), template fsLR. Reference answer: the first 10242 vertices (fsaverage5 is nested in
    fsaverage) of sMRIPrep's ``fs_{H}-to-fs_LR_fsaverage.{H}_LR.spherical_std.164k_fs_{H}.surf.gii``,
    the fsaverage sphere deformed into fsLR space. Same columns, error vs that reference.

Spherical Demons (cat-surf) as a peer
-------------------------------------
``pip install cat-surf`` (GPL-2.0: benchmark-only, never a dependency of geomorph-bids).
Its ``cat_surf.spherical_demon(source_surface, source_sphere, target_surface, target_sphere)``
computes its features from ANATOMICAL surfaces (curvature of white/central meshes), not from
feature maps, so it cannot run on these cases: the synthetic subjects have no anatomical mesh
and no fsLR 164k anatomical mesh is installed. This script reports that, and does not run it;
Its published figure is on the fsaverage_sym pair (median 0.76 deg, p95 2.45, 3 min).

Run::

    python benchmarks/accuracy.py [--n 4] [--model ckpt.pt ...] [--sources hcp_s1200_sulc ...]
        [--configs bumps smooth_large ...] [--hemis L R] [--device auto] [--skip-synthetic]
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import time
from importlib.resources import files
from importlib.util import find_spec
from pathlib import Path

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
from geomorph_bids.cli.machine import threads_wait_passively  # noqa: E402

# as the commands run: spinning OpenMP threads slowed the network 5-8x on a busy host, so a timing
# from this script differed from the command's (before numpy and torch start OpenMP)
threads_wait_passively()

import numpy as np  # noqa: E402

from geomorph_bids.engine.register import register  # noqa: E402
from geomorph_bids.engine.synth import angular_error_deg, make_benchmark  # noqa: E402
from geomorph_bids.io import read_sphere  # noqa: E402
from geomorph_bids.io.templates import load_template  # noqa: E402
from geomorph_bids.sphere.distortion import distortion, distortion_summary  # noqa: E402
from geomorph_bids.sphere.icosphere import icosphere  # noqa: E402
from geomorph_bids.sphere.locate import unit  # noqa: E402
from geomorph_bids.sphere.resample import resample  # noqa: E402

HEADER = ("| case | method | median err, deg | p95 err, deg | CC before | CC after | "
          "mean \\|log2 areal\\| | folded | s / registration |")
RULE = "|---|---|---|---|---|---|---|---|---|"


def _cc(values: np.ndarray, sphere: np.ndarray, faces: np.ndarray, fixed: np.ndarray) -> float:
    """sulc resampled through ``sphere`` onto the template ico-6 grid, correlated with ``fixed``."""
    on_grid = resample(values, (sphere, faces), icosphere(6), method="barycentric")
    keep = fixed != 0
    return float(np.corrcoef(on_grid[keep], fixed[keep])[0, 1])


def _model_channels(model: str) -> tuple[str, ...]:
    from geomorph_bids.model.checkpoint import read_metadata
    from geomorph_bids.resources import model_path

    return tuple(read_metadata(model_path(model)).channels)


def _run(method: str, vertices: np.ndarray, faces: np.ndarray, feats: dict[str, np.ndarray], template: str,
         hemi: str, device: str) -> tuple[np.ndarray, float]:
    """Output sphere (radius 100) and seconds for one method; ``feats``: name -> (V,) map (a
    checkpoint gets its own channels, the other methods all of them)."""
    t = time.perf_counter()
    if method == "identity":
        out = unit(vertices) * 100.0
    elif method == "rigid":
        out = register((vertices, faces), feats, template, hemi, rigid_only=True).sphere
    elif method == "optimise":
        out = register((vertices, faces), feats, template, hemi, device=device).sphere
    elif method.startswith("geomorph:") or method.startswith("geomorph+optimise:"):
        kind, _, model = method.partition(":")
        mine = {c: feats[c] for c in _model_channels(model)}
        out = register((vertices, faces), mine, template, hemi, model=model, device=device,
                       optimise=kind == "geomorph+optimise").sphere
    else:
        raise ValueError(f"unknown method {method!r}")
    return out, time.perf_counter() - t


def _applicable(method: str, template: str, hemi: str, channels: tuple[str, ...] = ("sulc",)) -> bool:
    """False for a checkpoint made for another template or hemisphere, or channels the case
    lacks (its row is skipped)."""
    if ":" not in method:
        return True
    from geomorph_bids.model.checkpoint import read_metadata
    from geomorph_bids.resources import model_path

    meta = read_metadata(model_path(method.partition(":")[2]))
    return (meta.template == template and (meta.hemisphere not in ("L", "R") or meta.hemisphere == hemi)
            and set(meta.channels) <= set(channels))


def _score(out: np.ndarray, truth: np.ndarray, vertices: np.ndarray, faces: np.ndarray, sulc: np.ndarray,
           fixed: np.ndarray) -> dict[str, float]:
    err = angular_error_deg(out, truth)
    dist = distortion_summary(distortion((unit(vertices) * 100.0, faces), (out, faces)))
    return {"median": float(np.median(err)), "p95": float(np.percentile(err, 95)),
            "cc": _cc(sulc, out, faces, fixed), "areal": dist["areal_mean_abs"], "folded": dist["n_folded"]}


def _row(case: str, method: str, scores: list[dict], cc_before: list[float], seconds: list[float]) -> str:
    med = lambda k: float(np.median([s[k] for s in scores]))  # noqa: E731
    folded = int(sum(s["folded"] for s in scores))
    return (f"| {case} | {method} | {med('median'):.3f} | {med('p95'):.3f} | {np.median(cc_before):.3f} | "
            f"{med('cc'):.3f} | {med('areal'):.4f} | {folded} | {np.median(seconds):.2f} |")


def synthetic_table(methods: list[str], n: int, sources: list[str], configs: list[str], seed: int,
                    device: str) -> list[str]:
    """Rows for (a): each source x config, ``n`` pairs, medians over pairs (CC on sulc)."""
    from geomorph_bids.engine.benchmark_sources import load_benchmark_source

    rows = []
    for source in sources:
        channels = load_benchmark_source(source)[4]
        for config in configs:
            pairs = list(make_benchmark(n, source, config, seed=seed))
            template = pairs[0][1]
            fixed = load_template(template, "L").features["sulc"]
            case = f"{source} / {config} (n={n})"
            before = [_cc(s.features[:, 0], s.vertices, s.faces, fixed) for s, _ in pairs]
            for method in methods:
                if not _applicable(method, template, "L", channels):
                    continue
                scores, secs = [], []
                for subj, tpl in pairs:
                    feats = {c: subj.features[:, i] for i, c in enumerate(channels)}
                    out, sec = _run(method, subj.vertices, subj.faces, feats, tpl, "L", device)
                    scores.append(_score(out, subj.registered, subj.vertices, subj.faces, feats["sulc"], fixed))
                    secs.append(sec)
                rows.append(_row(case, method, scores, before, secs))
                print(rows[-1], file=sys.stderr, flush=True)
            truth = [_score(s.registered, s.registered, s.vertices, s.faces, s.features[:, 0], fixed)
                     for s, _ in pairs]
            rows.append(_row(case, "ground truth (CC ceiling)", truth, before, [0.0])[:-6] + "- |")
    return rows


def _gz_gifti(path: Path) -> np.ndarray:
    import nibabel as nib

    img = nib.GiftiImage.from_bytes(gzip.decompress(path.read_bytes()))
    return np.asarray(img.agg_data(), dtype=np.float64)


def real_table(methods: list[str], hemis: list[str], device: str) -> list[str]:
    """Rows for (b): fsaverage5 -> fsLR with sMRIPrep's fsaverage->fsLR sphere as the answer."""
    fs5 = Path(str(files("nilearn") / "datasets" / "data" / "fsaverage5"))
    atlases = Path(str(files("smriprep") / "data" / "atlases"))
    rows = []
    for hemi in hemis:
        side = {"L": "left", "R": "right"}[hemi]
        s = read_sphere(fs5 / f"sphere_{side}.gii.gz")
        sulc = _gz_gifti(fs5 / f"sulc_{side}.gii.gz")
        ref = read_sphere(atlases / f"fs_{hemi}" /
                          f"fs_{hemi}-to-fs_LR_fsaverage.{hemi}_LR.spherical_std.164k_fs_{hemi}.surf.gii")
        truth = ref.vertices[: len(s.vertices)]
        fixed = load_template("fsLR", hemi).features["sulc"]
        before = [_cc(sulc, s.vertices, s.faces, fixed)]
        ceiling = _cc(sulc, unit(truth) * 100.0, s.faces, fixed)
        for method in methods:
            if not _applicable(method, "fsLR", hemi):
                continue
            out, sec = _run(method, s.vertices, s.faces, {"sulc": sulc}, "fsLR", hemi, device)
            rows.append(_row(f"fsaverage5 -> fsLR, {hemi}", method,
                             [_score(out, truth, s.vertices, s.faces, sulc, fixed)], before, [sec]))
            print(rows[-1], file=sys.stderr, flush=True)
        rows.append(f"| fsaverage5 -> fsLR, {hemi} | reference (sMRIPrep fs_{hemi}-to-fs_LR) | 0 | 0 | "
                    f"{before[0]:.3f} | {ceiling:.3f} | - | - | - |")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", default=[], metavar="NAME|PATH",
                   help="GeoMorph checkpoint: a bundled model name or a path (repeatable)")
    p.add_argument("--n", type=int, default=4, help="synthetic pairs per source and config (default 4)")
    p.add_argument("--sources", nargs="+", default=["hcp_s1200_sulc", "hcp_s1200_sulc_fsaverage"])
    p.add_argument("--configs", nargs="+", default=["bumps", "smooth_large"])
    p.add_argument("--hemis", nargs="+", default=["L", "R"], choices=["L", "R"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--skip-synthetic", action="store_true")
    p.add_argument("--skip-real", action="store_true")
    args = p.parse_args(argv)

    methods = ["identity", "rigid", "optimise"] + [f"{kind}:{m}" for m in args.model
                                                   for kind in ("geomorph", "geomorph+optimise")]
    if find_spec("cat_surf") is not None:
        print("note: cat-surf is installed, but its spherical_demon registers anatomical surfaces "
              "(curvature), not feature maps; it is not run on these cases (see the docstring).\n")
    t0 = time.perf_counter()
    if not args.skip_synthetic:
        print("### Held-out synthetic pairs (left hemisphere, ico-6 subjects)\n")
        print(HEADER)
        print(RULE)
        for r in synthetic_table(methods, args.n, args.sources, args.configs, args.seed, args.device):
            print(r)
        print()
    if not args.skip_real:
        print("### Real pair: fsaverage5 + sulc -> fsLR (reference: sMRIPrep's fsaverage->fsLR sphere)\n")
        print(HEADER)
        print(RULE)
        for r in real_table(methods, args.hemis, args.device):
            print(r)
        print()
    print(f"Errors are angles between output and reference vertices; CC: sulc resampled onto the "
          f"template ico-6 grid through the output sphere vs the template (zeros masked); areal: "
          f"vs the input sphere. Total {time.perf_counter() - t0:.0f} s.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: an individual brain, registered by every method of ours and by Spherical Demons.

No package ships an individual subject's sphere and sulc (../shared/DATA.md), but pycortex's
source distribution holds one subject's FreeSurfer surfaces (``filestore/db/S1/surfaces/``,
152,893 vertices per hemisphere). The test hemisphere is made from its white surface with
cat-surf (GPL-2.0, benchmark only, ``benchmarks/requirements-peers.txt``): the sphere by
``surf_to_sphere`` (inflation mapping, relaxed like FreeSurfer's mris_sphere), sulc by
FreeSurfer-style inflation depth (``surf_curvature`` type 11), curv by the mean curvature
(type 4, negated: FreeSurfer's sign, positive in sulci). It is registered to fsaverage (and fsLR)
with:

* ``rigid``, ``default`` (the optimiser; sulc + curv for fsaverage), ``net`` (a bundled network
  alone, ``--no-optimise``), ``net+refine`` (the network and the short refinement): each to the
  bundled template and, with ``--subjects-dir``, to FreeSurfer's full-resolution fsaverage;
* ``sd``: Spherical Demons (cat-surf) from our rigid alignment, to the full fsaverage (sphere +
  the sphere pushed in by its sulc as the anatomical surface; ``--subjects-dir`` needed).

There is no reference answer: the table gives the sulc correlation with FreeSurfer's full
fsaverage sulc on the ico-6 grid (the bundled fsLR sulc for fsLR), mean and p95 |log2 areal
distortion| from the input sphere, folded triangles, the quality verdict and seconds (median of
``--repeats``, one process, ``--threads`` torch threads); then the median / p95 angle between
methods' results (agreement).

Usage (pip download pycortex==1.4.0 --no-deps gives the sdist; nothing is downloaded here)::

    .venv/bin/python -m pip install -r benchmarks/requirements-peers.txt
    .venv/bin/python benchmarks/individual.py --pycortex-sdist pycortex-1.4.0.tar.gz \\
        --subjects-dir $SUBJECTS_DIR [--templates fsaverage fsLR] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tarfile
import time
from pathlib import Path


def _threads_from_argv(default: int = 1) -> str:
    argv = sys.argv
    return argv[argv.index("--threads") + 1] if "--threads" in argv[:-1] else str(default)


os.environ.setdefault("OMP_NUM_THREADS", _threads_from_argv())

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import _cc  # noqa: E402
from peers import _pushed_in, _timed  # noqa: E402

from geomorph_bids.engine.register import register  # noqa: E402
from geomorph_bids.engine.synth import angular_error_deg  # noqa: E402
from geomorph_bids.io import read_feature, read_sphere  # noqa: E402
from geomorph_bids.io.templates import load_template  # noqa: E402
from geomorph_bids.sphere.distortion import distortion, distortion_summary  # noqa: E402
from geomorph_bids.sphere.locate import unit  # noqa: E402

SURFACES = "filestore/db/S1/surfaces"
NETWORKS = {"fsaverage": "sulc-fsaverage", "fsLR": "sulc-fsLR"}


def white_surface(sdist: Path, hemi: str) -> tuple[np.ndarray, np.ndarray]:
    """S1's white surface (``wm_lh.gii``/``wm_rh.gii``) from the pycortex sdist (.tar.gz or folder)."""
    import nibabel as nib

    name = f"wm_{hemi.lower()}h.gii"
    if sdist.is_dir():
        data = next(sdist.rglob(f"db/S1/surfaces/{name}")).read_bytes()
    else:
        with tarfile.open(sdist) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith(f"{SURFACES}/{name}"))
            data = tar.extractfile(member).read()
    img = nib.GiftiImage.from_bytes(data)
    v, f = img.agg_data(("pointset", "triangle"))
    return np.asarray(v, np.float64), np.asarray(f, np.int64)


def individual(sdist: Path, hemi: str = "L") -> dict[str, np.ndarray]:
    """The test hemisphere: white surface, cat-surf sphere, sulc and curv (FreeSurfer signs)."""
    import cat_surf

    white, faces = white_surface(sdist, hemi)
    f32 = faces.astype(np.int32)
    sulc = np.asarray(cat_surf.surf_curvature(white, f32, curvtype=11), np.float64)
    curv = -np.asarray(cat_surf.surf_curvature(white, f32, curvtype=4), np.float64)
    sphere, sphere_faces = cat_surf.surf_to_sphere(white, f32, stop_at=5, relax=True)
    assert np.array_equal(np.asarray(sphere_faces), f32)
    return {"white": white, "faces": faces, "sphere": np.asarray(sphere, np.float64), "sulc": sulc, "curv": curv}


def _distortion(sub: dict, out: np.ndarray) -> dict[str, float]:
    s = distortion_summary(distortion((unit(sub["sphere"]) * 100.0, sub["faces"]), (out, sub["faces"])))
    return {"areal": s["areal_mean_abs"], "areal_p95": s["areal_p95_abs"], "folded": int(s["n_folded"])}


def run(sub: dict, template: str, fixed: np.ndarray, subjects_dir: str | None, repeats: int,
        methods: list[str], network: str) -> tuple[list[str], dict[str, np.ndarray]]:
    """Table rows and the registered spheres of one template (``network``: a bundled name or a
    checkpoint)."""
    rows, outs = [], {}
    sources = [("bundled", "bundled")] + ([("full", None)] if subjects_dir and template == "fsaverage" else [])
    feats = {"sulc": sub["sulc"], "curv": sub["curv"]}
    for method in [m for m in methods if m != "sd"]:
        for label, template_dir in (sources if method != "rigid" else sources[:1]):
            kw: dict = {"rigid_only": True} if method == "rigid" else {}
            channels = ("sulc", "curv") if method in ("rigid", "default") and template == "fsaverage" else ("sulc",)
            if method.startswith("net"):
                kw.update(model=network, optimise=method == "net+refine")
            if template_dir is None:
                os.environ["SUBJECTS_DIR"] = str(subjects_dir)
            else:
                os.environ.pop("SUBJECTS_DIR", None)
            reg, sec = _timed(lambda: register((sub["sphere"], sub["faces"]), {c: feats[c] for c in channels}, template,
                                               "L", device="cpu", template_dir=template_dir, **kw), repeats)
            name = f"{method} ({label})"
            outs[name] = reg.sphere
            d = _distortion(sub, reg.sphere)
            rows.append(f"| {template} | {name} | {_cc(sub['sulc'], reg.sphere, sub['faces'], fixed):.3f} | "
                        f"{d['areal']:.3f} / {d['areal_p95']:.2f} | {d['folded']} | {sec:.2f} | "
                        f"{'; '.join(reg.quality.reasons) or 'ok'} |")
    if "sd" in methods and template == "fsaverage" and subjects_dir and "rigid (bundled)" in outs:
        import cat_surf

        fs = Path(subjects_dir) / "fsaverage" / "surf"
        fsph = read_sphere(fs / "lh.sphere")
        full = np.asarray(read_feature(fs / "lh.sulc", n_vertices=fsph.n_vertices), float)
        start = outs["rigid (bundled)"]
        out, sec = _timed(lambda: cat_surf.spherical_demon((sub["white"], sub["faces"]), (start, sub["faces"]),
                                                           (_pushed_in(fsph.vertices, full), fsph.faces),
                                                           (fsph.vertices, fsph.faces), rotate=False)[0], repeats)
        out = unit(np.asarray(out, np.float64)) * 100.0
        outs["sd (full)"] = out
        d = _distortion(sub, out)
        rows.append(f"| {template} | Spherical Demons (full) | {_cc(sub['sulc'], out, sub['faces'], fixed):.3f} | "
                    f"{d['areal']:.3f} / {d['areal_p95']:.2f} | {d['folded']} | {sec:.2f} | - |")
    return rows, outs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pycortex-sdist", type=Path, required=True, help="pycortex-1.4.0.tar.gz (or its folder)")
    p.add_argument("--subjects-dir", default=os.environ.get("SUBJECTS_DIR"),
                   help="a SUBJECTS_DIR holding FreeSurfer's fsaverage (full-resolution rows, CC reference, SD)")
    p.add_argument("--templates", nargs="+", default=["fsaverage", "fsLR"], choices=["fsaverage", "fsLR"])
    p.add_argument("--methods", nargs="+", default=["rigid", "default", "net", "net+refine", "sd"],
                   choices=["rigid", "default", "net", "net+refine", "sd"])
    p.add_argument("--network", nargs=2, action="append", default=[], metavar=("TEMPLATE", "MODEL"),
                   help="another network for a template (a checkpoint), e.g. --network fsaverage run/model.pt")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    sub = individual(args.pycortex_sdist)
    print(f"S1 left hemisphere: {len(sub['sphere']):,} vertices; sphere, sulc and curv made with cat-surf in "
          f"{time.perf_counter() - t:.0f} s")
    print("\n| template | method (template maps) | sulc CC after | mean / p95 \\|log2 areal\\| | folded | seconds "
          "| quality |\n|---|---|---|---|---|---|---|")
    outs: dict[str, np.ndarray] = {}
    for template in args.templates:
        if template == "fsaverage":
            if not args.subjects_dir:
                raise SystemExit("individual.py: fsaverage rows need FreeSurfer's fsaverage: --subjects-dir")
            fs = Path(args.subjects_dir) / "fsaverage" / "surf" / "lh.sulc"
            fixed = np.asarray(read_feature(fs, n_vertices=163842), float)[:40962]
        else:
            fixed = load_template("fsLR", "L").features["sulc"]
        network = dict(NETWORKS, **dict(args.network))[template]
        rows, got = run(sub, template, fixed, args.subjects_dir, args.repeats, args.methods, network)
        print("\n".join(rows), flush=True)
        outs.update({f"{template}: {k}": v for k, v in got.items()})
    print("\nAgreement between fsaverage results (median / p95 angle, deg):")
    names = [n for n in outs if n.startswith("fsaverage") and "rigid" not in n]
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            e = angular_error_deg(outs[a], outs[b])
            print(f"- {a[11:]} vs {b[11:]}: {np.median(e):.2f} / {np.percentile(e, 95):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

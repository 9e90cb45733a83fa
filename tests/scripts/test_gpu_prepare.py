"""scripts/gpu_prepare.sh and scripts/device_site.py: readying a checkout for a lent GPU without one.

The device image has its own packages (scripts/device_image.txt) and gets the wheels of
scripts/device_wheels.txt; a module the device run imports beyond both fails there, in the lent
minutes. device_site.py builds an interpreter here that sees only those, so the rehearsal fails first."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("device_site", ROOT / "scripts" / "device_site.py")
device_site = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(device_site)


def test_the_device_like_interpreter_sees_only_the_image_and_the_wheels(tmp_path):
    """With the image's distributions and the wheels, the modules the device run imports load (the
    engine, the trainer, the BIDS-App and its Nipype workflow); a distribution in neither (here:
    pybids, niworkflows, templateflow) is not importable, as on the device."""
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "device_site.py"), str(tmp_path / "site")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1].startswith("device_site: ") and "run with" in r.stdout
    code = ("import importlib, sys\n"
            "for m in ('numpy', 'scipy', 'torch', 'nibabel', 'nipype', 'pytest', 'geomorph_bids.engine.register',\n"
            "          'geomorph_bids.cli.train', 'geomorph_bids.cli.bids', 'geomorph_bids.workflows.base'):\n"
            "    importlib.import_module(m)\n"
            "bad = []\n"
            "for m in ('bids', 'niworkflows', 'templateflow', 'smriprep', 'nilearn'):\n"
            "    try:\n"
            "        importlib.import_module(m); bad.append(m)\n"
            "    except ImportError:\n"
            "        pass\n"
            "print('importable beyond the image:', bad)\n")
    done = subprocess.run([str(tmp_path / "site" / "python"), "-c", code], capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "NIPYPE_NO_ET": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "importable beyond the image: []"


def test_the_lists_name_one_distribution_a_line_and_the_wheels_pinned():
    image = device_site.read_names(ROOT / "scripts" / "device_image.txt")
    wheels = device_site.read_names(ROOT / "scripts" / "device_wheels.txt")
    assert {"torch", "numpy", "scipy", "pytest", "networkx", "torch-geometric"} <= set(image) and len(image) > 150
    assert all("==" in w for w in wheels) and not any(w.startswith("torch") for w in wheels)
    assert {w.split("==")[0] for w in wheels} == {"nibabel", "nipype", "traits", "prov", "looseversion"}
    assert not {w.split("==")[0] for w in wheels} & set(image)  # a wheel of what the image has would replace it


def test_prepare_refuses_an_unknown_argument_and_another_folder(tmp_path):
    r = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_prepare.sh"), "--fast"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and r.stdout.strip() == "usage: bash scripts/gpu_prepare.sh [--no-rehearse]"
    r = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_prepare.sh")], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and r.stdout.strip() == ("gpu_prepare: run it from the repository root (no "
                                                      "scripts/gpu_session.sh here)")

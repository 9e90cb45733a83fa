"""The official BIDS validator (3.x, ``bids-validator-deno``) on what geomorph-bids writes.

The test extras install it (``bash scripts/install.sh --test``: ``bids-validator-deno``, a 4.4 MB wheel that
pulls the 42 MB deno runtime wheel; never a dependency of geomorph-bids itself), so CI runs these tests. Found
beside the test's Python, on PATH, or at ``GEOMORPH_BIDS_VALIDATOR``; skipped where none is installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .test_bids import ROOT, run

pytestmark = pytest.mark.slow


def _validator() -> str:
    """The validator's executable, or skip with the reason."""
    beside = Path(sys.executable).parent / "bids-validator-deno"  # the venv's, called without activating it
    exe = (os.environ.get("GEOMORPH_BIDS_VALIDATOR") or (str(beside) if beside.is_file() else None)
           or shutil.which("bids-validator-deno"))
    if not exe:
        pytest.skip("the BIDS validator is not installed (pip install bids-validator-deno==3.0.2 in any "
                    "environment; put it on PATH or set GEOMORPH_BIDS_VALIDATOR to its path)")
    return exe


def _issues(exe: str, folder: Path) -> list[tuple[str, str, str]]:
    """(severity, code, location) of every issue the validator reports for ``folder``."""
    done = subprocess.run([exe, "--format", "json", str(folder)], capture_output=True, text=True, timeout=300)
    doc = json.loads(done.stdout)
    return sorted((i["severity"], i["code"], str(i.get("location"))) for i in doc["issues"]["issues"])


def test_the_validator_finds_no_error_in_our_derivatives(tmp_path):
    """Participant (FreeSurfer and sMRIPrep layouts, --fmriprep-compat --cifti-output) and group
    level on the example: no error. Left: the warning TOO_FEW_AUTHORS (we cannot know who ran it).
    Without our .bidsignore, every output is an error again (the validator does check them)."""
    exe = _validator()
    out = tmp_path / "out"
    code, _, err = run(ROOT / "examples" / "ds-geomorph-example", out, "participant", "--model", "rigid",
                       "--fmriprep-compat", "--cifti-output", "-w", tmp_path / "work")
    assert code == 0, err
    code, _, err = run(ROOT / "examples" / "ds-geomorph-example", out, "group")
    assert code == 0, err
    issues = _issues(exe, out)
    assert [i for i in issues if i[0] == "error"] == [], issues
    assert {code for _, code, _ in issues} <= {"TOO_FEW_AUTHORS"}, issues
    (out / ".bidsignore").unlink()
    codes = {code for severity, code, _ in _issues(exe, out) if severity == "error"}
    assert {"NOT_INCLUDED", "SIDECAR_WITHOUT_DATAFILE"} <= codes


def test_the_validator_finds_no_error_in_a_multi_session_run(dataset_factory, tmp_path):
    """Sessions (``sub-01/ses-1/anat/sub-01_ses-1_hemi-L_...``), batch mode, --fmriprep-compat
    --cifti-output, then the group level. Before the twenty-third session the validator (3.0.2) called
    every output NOT_INCLUDED and each metrics JSON SIDECAR_WITHOUT_DATAFILE: its ``.bidsignore``
    matcher does not let the ``*`` of ``sub-*_hemi-*_...`` take ``01_ses-1``."""
    exe = _validator()
    bids = dataset_factory("smriprep", session="1")
    out = tmp_path / "out"
    code, _, err = run(bids, out, "participant", "--model", "rigid", "--batch-size", "2", "--fmriprep-compat",
                       "--cifti-output", "-w", tmp_path / "work")
    assert code == 0, err
    code, _, err = run(bids, out, "group")
    assert code == 0, err
    # 2 subjects x 2 hemispheres x 11 files (spheres, maps, metrics, their sidecars, desc-msmsulc)
    assert len(list(out.glob("sub-*/ses-1/anat/sub-*_ses-1_hemi-*"))) == 2 * 2 * 11
    issues = _issues(exe, out)
    assert {code for _, code, _ in issues} <= {"TOO_FEW_AUTHORS"}, issues

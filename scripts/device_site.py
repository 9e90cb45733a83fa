"""A folder of this environment's packages cut down to what a lent GPU machine will have.

    python scripts/device_site.py SITE [--image scripts/device_image.txt] [--wheels scripts/device_wheels.txt]

SITE/lib gets one symbolic link per top-level module (and per ``.dist-info``) of each installed
distribution that the device image holds (``--image``) or that travels there as a wheel
(``--wheels``); nothing else. SITE/python runs this interpreter without its site-packages
(``-S``) and with SITE/lib on ``PYTHONPATH``, so that a rehearsal run through it
(``GEOMORPH_PYTHON=SITE/python``) fails here on an import the device would fail on. Nipype's
workers and the batch mode's forkserver inherit both (``-S`` is passed on by multiprocessing).

Prints one line per wheel whose version here differs from the pinned one (the rehearsal then
tests another version than the device gets), and exits 1 when a wheel's distribution is not
installed here at all.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import re
import shutil
import stat
import sys
from pathlib import Path


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_names(path: Path) -> list[str]:
    """The names of a list file (one a line, ``#`` comments), versions kept (``nibabel==5.4.2``)."""
    return [line.split("#")[0].strip() for line in path.read_text().splitlines() if line.split("#")[0].strip()]


def top_level(dist: metadata.Distribution) -> set[str]:
    """The top-level entries (packages, modules, extension files, the .dist-info) that ``dist`` installed
    into its site-packages, from its RECORD."""
    out = set()
    for f in dist.files or ():
        first = Path(str(f)).parts[0]
        if first in ("..", "__pycache__") or first.endswith(".data"):
            continue
        out.add(first)
    return out


def build(site: Path, wanted: set[str]) -> tuple[list[str], dict[str, str]]:
    """Link the installed distributions named in ``wanted`` (normalised names) into ``site/lib``.
    Returns (the distributions linked, {normalised name: installed version})."""
    lib = site / "lib"
    if lib.exists():
        shutil.rmtree(lib)
    lib.mkdir(parents=True)
    linked, versions = [], {}
    for dist in metadata.distributions():
        name = _normalise(dist.metadata["Name"] or "")
        if name not in wanted or name in versions:
            continue
        versions[name] = dist.version
        base = Path(str(dist.locate_file("")))
        for entry in top_level(dist):
            target = lib / entry
            if not target.exists() and (base / entry).exists():
                target.symlink_to(base / entry)
        linked.append(name)
    python = site / "python"
    python.write_text("#!/bin/sh\n# runs the interpreter with what the device image holds (scripts/device_site.py)\n"
                      f'PYTHONPATH="${{PYTHONPATH:+$PYTHONPATH:}}{lib}" exec {sys.executable} -S "$@"\n')
    python.chmod(python.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return sorted(linked), versions


def main() -> int:
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("site", type=Path)
    p.add_argument("--image", type=Path, default=here / "device_image.txt")
    p.add_argument("--wheels", type=Path, default=here / "device_wheels.txt")
    args = p.parse_args()
    wheels = dict(w.split("==") for w in read_names(args.wheels))
    wanted = {_normalise(n) for n in read_names(args.image)} | {_normalise(n) for n in wheels}
    linked, versions = build(args.site.resolve(), wanted)
    bad = 0
    for name, pinned in wheels.items():
        have = versions.get(_normalise(name))
        if have is None:
            print(f"device_site: {name} is not installed here: the rehearsal cannot import it (pip install {name}=={pinned})")
            bad = 1
        elif have != pinned:
            print(f"device_site: {name} {have} here, {pinned} in .whl: the rehearsal tests {have}")
    print(f"device_site: {len(linked)} distributions of the device image and its wheels in {args.site}/lib "
          f"(of {len(wanted)} named); run with {args.site}/python")
    return bad


if __name__ == "__main__":
    sys.exit(main())

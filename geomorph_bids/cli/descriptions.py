"""What the derivatives say about themselves: ``dataset_description.json`` (DatasetType
derivative, GeneratedBy with version and container, SourceDatasets), ``README.md``, the
``.bidsignore`` the BIDS validator reads, and the methods text ``logs/CITATION.md``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..derivatives import BIDSIGNORE, CITATION, DATASET_DESCRIPTION, README, bidsignore_lines, dataset_link
from ..errors import InputError
from ..io.atomic import atomic_write_bytes, shared_folder
from ..io.limits import DOCUMENT_MAX_BYTES, read_bounded, read_json_bounded, read_text_bounded
from .container import container_record
from .methods import LATER_RUN, methods_text
from .methods import REFERENCES_HEADING as _REFERENCES
from .preflight import folder_lock

if TYPE_CHECKING:
    from ..workflows.config import RunConfig

__all__ = ["write_dataset_description", "write_readme", "write_bidsignore", "write_bids_extras", "write_citation",
           "CitationChange", "add_citation"]


def write_dataset_description(output_dir: Path, bids_dir: Path, deriv: dict[str, Path] | None) -> Path:
    """``dataset_description.json`` of the derivatives (DatasetType derivative, GeneratedBy
    with version and container (:func:`~geomorph_bids.cli.container.container_record`), SourceDatasets,
    DatasetLinks: :func:`~geomorph_bids.derivatives.dataset_link`)."""
    generated: dict[str, Any] = {"Name": "geomorph-bids", "Version": __version__,
                                 "Description": "GeoMorph cortical surface registration"}
    container = container_record()
    if container:
        generated["Container"] = container
    links = {"raw": dataset_link(bids_dir, output_dir, bids_dir)}
    sources: list[dict[str, str]] = [{"URL": "bids:raw:"}]
    raw_desc = bids_dir / DATASET_DESCRIPTION
    if raw_desc.is_file():
        try:
            doc = read_json_bounded(raw_desc)
        except InputError:
            doc = None
        doi = doc.get("DatasetDOI") if isinstance(doc, dict) else None
        if doi:
            sources[0]["DOI"] = str(doi)
    for name, path in (deriv or {}).items():
        links[name] = dataset_link(path, output_dir, bids_dir)
        sources.append({"URL": f"bids:{name}:"})
    desc = {"Name": "geomorph-bids: cortical sphere registration", "BIDSVersion": "1.9.0",
            "DatasetType": "derivative", "GeneratedBy": [generated], "SourceDatasets": sources,
            "DatasetLinks": links, "HowToAcknowledge": f"See {CITATION}"}
    # atomic, through a uniquely named temporary file: concurrent runs may write it at once
    return atomic_write_bytes(output_dir / DATASET_DESCRIPTION, (json.dumps(desc, indent=2) + "\n").encode())


#: the derivative's README.md (written once; a user's own README is kept)
README_TEXT = """# geomorph-bids derivatives

Cortical spheres registered to a template by geomorph-bids (GeoMorph), and the participants'
features resampled onto it. Per subject (and session), `anat/` holds, per hemisphere:

- `*_space-<template>_desc-geomorph_sphere.surf.gii`: the native sphere moved into the template
  (sMRIPrep's `desc-msmsulc` / `desc-reg` names too with `--fmriprep-compat`);
- `*_space-<template>_den-<density>_desc-geomorph_<feature>.shape.gii`: features on the template;
- `*_sphere.surf.gii`, `*_<feature>.shape.gii`: the native sphere and maps as registered;
- `*_desc-geomorph_metrics.json`: registration quality.

Each data file's JSON sidecar records its sources, template, density and method. How the data
were made: `dataset_description.json` (version, source datasets) and `logs/CITATION.md` (methods
text). Reports: `sub-<label>.html`, `group.html`.

BIDS has no rule yet for surface meshes, morphometry maps or reports, so the BIDS validator
would list each as NOT_INCLUDED (as it does sMRIPrep's): `.bidsignore` names exactly these files.
"""


def write_readme(output_dir: Path) -> Path:
    """``README.md`` of the derivatives (the BIDS validator warns without one), unless the folder
    already has a README of any BIDS form (``README``, ``README.md``, ...: a user's is kept)."""
    found = [output_dir / n for n in ("README", README, "README.rst", "README.txt") if (output_dir / n).is_file()]
    if found:
        return found[0]
    return atomic_write_bytes(output_dir / README, README_TEXT.encode())


def write_bidsignore(output_dir: Path) -> Path:
    """``.bidsignore``: :func:`~geomorph_bids.derivatives.bidsignore_lines` added to the lines the
    file already has (a user's are kept); rewritten (atomically) only when a line is missing."""
    path = output_dir / BIDSIGNORE
    try:  # a user's lines kept byte for byte, in any locale (they were read in the locale's encoding,
        # errors replaced: a Latin-1 name, or a UTF-8 one under LC_ALL=C PYTHONUTF8=0, came back as U+FFFD)
        old = path.read_bytes().decode("utf-8", "surrogateescape").splitlines() if path.is_file() else []
    except OSError:
        old = []
    missing = [line for line in bidsignore_lines() if line not in {x.strip() for x in old}]
    if not missing and path.is_file():
        return path
    return atomic_write_bytes(path, "\n".join([*old, *missing]).encode("utf-8", "surrogateescape") + b"\n")


def write_bids_extras(output_dir: Path) -> list[str]:
    """:func:`write_readme` and :func:`write_bidsignore`, which no registration needs: one warning
    line for each that cannot be written (e.g. a folder of that name, a read-only file) instead of
    ending the run."""
    from ..errors import describe_os_error

    lines = []
    for write, name in ((write_readme, README), (write_bidsignore, BIDSIGNORE)):
        try:
            write(output_dir)
        except OSError as exc:
            lines.append(f"{describe_os_error(exc)}: the derivatives' {name} was not written (the BIDS validator "
                         f"reads it; the registrations do not need it)")
    return lines


def _reference_blocks(references: str) -> list[str]:
    """The entries of a reference list (each ``- ...`` line with its indented continuation
    lines, newline-terminated)."""
    blocks: list[str] = []
    for line in references.splitlines(keepends=True):
        if line.startswith("- "):
            blocks.append(line)
        elif blocks and line.startswith("  "):
            blocks[-1] += line
    return [b if b.endswith("\n") else b + "\n" for b in blocks]


def write_citation(output_dir: Path, config: RunConfig, hemis: Sequence[str] = ("L", "R"),
                   nipype_version: str | None = None) -> Path:
    """``logs/CITATION.md``: the methods boilerplate filled in with the run's settings
    (:func:`~geomorph_bids.cli.methods.methods_text` of a
    :class:`~geomorph_bids.workflows.config.RunConfig`, the hemispheres asked for and, in workflow
    mode, the Nipype version). A folder whose file already describes other settings (an earlier
    run, e.g. to another template) keeps that paragraph and gets this run's after it, introduced by
    :data:`LATER_RUN`, and its references stay; the same settings again change nothing. Read and
    written under :func:`~geomorph_bids.cli.preflight.folder_lock` (``citation``): runs with other
    settings starting at once each keep their paragraph."""
    return add_citation(output_dir, config, hemis, nipype_version).path


@dataclass(frozen=True)
class CitationChange:
    """What :func:`add_citation` did to ``logs/CITATION.md``: its bytes ``before`` (None: there was no file) and
    ``after`` this run's paragraph was added (the same bytes: the settings were described already)."""

    output_dir: Path
    before: bytes | None
    after: bytes | None

    @property
    def path(self) -> Path:
        """The methods text, ``OUTPUT_DIR/logs/CITATION.md``."""
        return self.output_dir / CITATION

    def undo(self) -> bool:
        """Put the file back as it was before this run (removed where there was none), for a run that registered
        nothing: every hemisphere failed or was an earlier run's (reused), and its paragraph would describe settings
        no output was made with (a PI pasting it, or a later run's 'A later run into the same folder used other
        settings', would cite them). Nothing is done where the run added nothing or another run has changed the file since. Returns
        whether the file was put back."""
        if self.before == self.after:
            return False
        with folder_lock(self.output_dir, "citation"):
            if _read_bytes(self.path) != self.after:
                return False
            if self.before is None:
                self.path.unlink(missing_ok=True)
            else:
                atomic_write_bytes(self.path, self.before)
            return True


def _read_bytes(path: Path) -> bytes | None:
    """The bytes of ``path``, or None when it is not a readable regular file (a FIFO planted there does not block)."""
    try:
        return read_bounded(path, DOCUMENT_MAX_BYTES, "methods text")
    except InputError:
        return None


def add_citation(output_dir: Path, config: RunConfig, hemis: Sequence[str] = ("L", "R"),
                 nipype_version: str | None = None) -> CitationChange:
    """:func:`write_citation`, returning what it changed (:meth:`CitationChange.undo` takes it back)."""
    methods, references = methods_text(config, hemis, nipype_version)
    text = f"{methods}{_REFERENCES}{references}"
    with folder_lock(output_dir, "citation"):
        shared_folder((output_dir / CITATION).parent)  # logs/: every member's runs write there (crash files too)
        before = _read_bytes(output_dir / CITATION)
        path = _add_methods(output_dir / CITATION, text, methods, references)
        return CitationChange(output_dir, before, _read_bytes(path))


def _add_methods(path: Path, text: str, methods: str, references: str) -> Path:
    """:func:`write_citation`'s update of ``path``: ``text`` (this run's methods and references)
    when the file has no methods yet, else this run's ``methods`` after the earlier ones, the
    earlier references kept."""
    try:
        earlier_text = read_text_bounded(path, what="methods text")
    except InputError:  # none yet, or not readable: this run's text alone
        earlier_text = ""
    earlier, _, earlier_refs = earlier_text.partition(_REFERENCES)
    earlier = earlier.strip()
    if earlier and methods.strip() in earlier:
        return path  # described already (alone, or among other runs' settings)
    if earlier:
        # an earlier run's references stay (the brainspace maps of a multimodal run before a sulc one)
        kept = "".join(block for block in _reference_blocks(earlier_refs) if block not in references)
        text = f"{earlier}\n\n{LATER_RUN}\n\n{methods.strip()}\n{_REFERENCES}{references.rstrip()}\n{kept}"
    return atomic_write_bytes(path, text.encode())

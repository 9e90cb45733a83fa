"""What the derivatives say about themselves: ``dataset_description.json`` (DatasetType
derivative, GeneratedBy with version and container, SourceDatasets), ``README.md``, the
``.bidsignore`` the BIDS validator reads, and the methods text ``logs/CITATION.md``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..derivatives import BIDSIGNORE, CITATION, DATASET_DESCRIPTION, README, bidsignore_lines
from ..errors import InputError
from ..io.atomic import atomic_write_bytes, shared_folder
from ..io.limits import read_json_bounded, read_text_bounded
from .preflight import folder_lock

if TYPE_CHECKING:
    from ..workflows.config import RunConfig

__all__ = ["write_dataset_description", "write_readme", "write_bidsignore", "write_bids_extras", "write_citation"]


def write_dataset_description(output_dir: Path, bids_dir: Path, deriv: dict[str, Path] | None) -> Path:
    """``dataset_description.json`` of the derivatives (DatasetType derivative, GeneratedBy
    with version and container from ``$GEOMORPH_CONTAINER``, SourceDatasets)."""
    generated: dict[str, Any] = {"Name": "geomorph-bids", "Version": __version__,
                                 "Description": "GeoMorph cortical surface registration"}
    container = os.environ.get("GEOMORPH_CONTAINER")
    if container:
        kind = "singularity" if container.endswith((".sif", ".simg")) or container.startswith(
            ("library://", "shub://")) else "docker"
        generated["Container"] = {"Type": kind, "Tag": container}
    links = {"raw": str(bids_dir.absolute())}
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
        links[name] = str(Path(path).absolute())
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


def _own_network(checkpoint: Path) -> str:
    """A user's network in the methods text: its recorded name and weights' SHA-256 (a file name,
    ``model.pt`` for every geomorph-train folder, says nothing of which network it was)."""
    try:
        from ..model.checkpoint import read_metadata

        meta = read_metadata(checkpoint)
    except Exception:  # noqa: BLE001 - the text falls back to the file's name
        return f"network of checkpoint {checkpoint.name}"
    sha = f", weights sha256 {meta.weights_sha256[:12]}" if meta.weights_sha256 else ""
    return f"network {meta.name} (checkpoint {checkpoint.name}{sha}, trained for {meta.template})"


def _method_text(model) -> str:
    """The non-rigid stage of the methods text, from the run's model choice."""
    if model.kind == "rigid":
        return "; no non-rigid stage was run (--model rigid)"
    if model.kind == "optimise":
        return ("; then a non-rigid GeoMorph warp (cascaded control-point grids, ico-2 to ico-4) "
                "was fitted to each hemisphere by optimising 1 - correlation with the template "
                "plus smoothness and fold penalties")
    from ..resources import model_dir

    checkpoint = Path(str(model.checkpoint))
    which = (f"pretrained network {checkpoint.parent.name}, bundled with geomorph-bids"
             if checkpoint.parent.parent == model_dir() else _own_network(checkpoint))
    passes = ("one forward pass" if len(model.passes) == 1 else
              f"{len(model.passes)} forward passes (each registering the moving map as the passes before had "
              "warped it, its warp low-passed more than the last)")
    if model.optimise is False:
        return (f"; then the GeoMorph {which}, predicted a non-rigid warp in {passes}, "
                "used as it is (no per-hemisphere optimisation, --no-optimise)")
    if model.optimise is True:
        return (f"; then the GeoMorph {which}, predicted a non-rigid warp in {passes}, refined for each "
                "hemisphere by optimising 1 - correlation with the template plus smoothness and "
                "fold penalties")
    return (f"; then the GeoMorph {which} predicted a non-rigid warp, whose large-scale part (low-passed "
            "on the sphere) started a non-rigid GeoMorph warp (cascaded control-point grids, ico-2 to ico-4) "
            "fitted to each hemisphere by optimising 1 - correlation with the template plus smoothness and "
            "fold penalties (--refine full)")


#: what separates the methods paragraphs of ``logs/CITATION.md`` from its references
_REFERENCES = "\n### References"
#: package -> (the methods sentence on the template maps it provides, its references): the fsLR
#: curvature and T1w/T2w myelin maps multimodal-fsLR registers to are brainspace's conte69 group maps
_PACKAGE_MAP_CREDITS = {"brainspace": (
    "The template's {maps} maps were the fsLR 32k group averages distributed with BrainSpace (Vos de "
    "Wael et al., 2020; derived from the discovery dataset of Vos de Wael et al., 2018; myelin as the "
    "T1w/T2w ratio, Glasser and Van Essen, 2011).",
    "- Vos de Wael R, et al. BrainSpace: a toolbox for the analysis of macroscale gradients in\n"
    "  neuroimaging and connectomics datasets. Communications Biology 3:103, 2020.\n"
    "  doi:10.1038/s42003-020-0794-7\n"
    "- Vos de Wael R, et al. Anatomical and microstructural determinants of hippocampal subfield\n"
    "  functional connectome embedding. PNAS 115(40):10154-10159, 2018. doi:10.1073/pnas.1803667115\n"
    "- Glasser MF, Van Essen DC. Mapping human cortical areas in vivo based on myelin content as\n"
    "  revealed by T1- and T2-weighted MRI. Journal of Neuroscience 31(32):11597-11616, 2011.\n"
    "  doi:10.1523/JNEUROSCI.2180-11.2011\n")}


def _template_maps_credit(config) -> tuple[str, str]:
    """The methods sentence and the references for the template maps an installed package
    provides to the run (``TemplateRef.package_maps`` of its channels and hemispheres: fsLR's curv
    and myelin from brainspace), or two empty strings."""
    package_maps = getattr(config.template, "package_maps", None)
    if package_maps is None:
        return "", ""
    used = package_maps(config.channels, tuple(getattr(config, "density_sources", None) or ("L", "R")))
    credits = [(_PACKAGE_MAP_CREDITS[p][0].format(maps=" and ".join(fs)), _PACKAGE_MAP_CREDITS[p][1])
               for p, fs in used.items() if p in _PACKAGE_MAP_CREDITS]
    return " ".join(c[0] for c in credits), "".join(c[1] for c in credits)
#: introduces the methods paragraph of a later run with other settings into the same folder
LATER_RUN = ("A later run into the same folder used other settings (each hemisphere's metrics file and "
             "sidecars say which apply to it):")


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


def write_citation(output_dir: Path, config: RunConfig) -> Path:
    """``logs/CITATION.md``: the methods boilerplate filled in with the run's settings
    (a :class:`~geomorph_bids.workflows.config.RunConfig`). A folder whose file already describes
    other settings (an earlier run, e.g. to another template) keeps that paragraph and gets this
    run's after it, introduced by :data:`LATER_RUN`, and its references stay; the same settings
    again change nothing. Template maps an installed package provides (multimodal-fsLR's curv and
    myelin: brainspace's) are credited with their references. Read and written under
    :func:`~geomorph_bids.cli.preflight.folder_lock` (``citation``): runs with other settings
    starting at once each keep their paragraph."""
    from ..resources import citation_file

    text = citation_file().read_text().format(
        version=__version__, template=config.template.label, channels=", ".join(config.channels),
        method_text=_method_text(config.model), features=", ".join(config.features), density=config.density)
    methods, _, references = text.partition(_REFERENCES)
    credit, credit_refs = _template_maps_credit(config)
    if credit:  # the template maps an installed package provides (multimodal-fsLR's curv and myelin)
        methods, references = f"{methods.rstrip()}\n{credit}\n", f"{references.rstrip()}\n{credit_refs}"
        text = f"{methods}{_REFERENCES}{references}"
    with folder_lock(output_dir, "citation"):
        shared_folder((output_dir / CITATION).parent)  # logs/: every member's runs write there (crash files too)
        return _add_methods(output_dir / CITATION, text, methods, references)


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

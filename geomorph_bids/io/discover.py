"""Find a subject's native spheres and feature maps (sMRIPrep/fMRIPrep, FreeSurfer, HCP).

Discovery only looks at file *names* (plain :mod:`pathlib` globbing, no pybids); it
never opens a file (except the header of the optional display surface, see below), so it
is cheap and the readers in :mod:`geomorph_bids.io.surfaces`
do the validation later.

Layouts searched (``X`` = subject label, ``Y`` = session label, ``H`` = ``L``/``R``,
``h`` = ``lh``/``rh``):

``smriprep`` (sMRIPrep / fMRIPrep derivatives)
    ``<root>/sub-X/anat/`` and ``<root>/sub-X/ses-Y/anat/`` files named
    ``sub-X[_ses-Y][_<other entities>]_hemi-H_<suffix><ext>``:

    * sphere: ``_sphere.surf.gii`` with no ``space-``/``den-``/``desc-`` entity;
    * sphere_reg: ``_desc-reg_sphere.surf.gii`` with no ``space-`` or ``space-fsaverage``
      (the FreeSurfer ``sphere.reg``; the ``space-fsLR`` ones are not used);
    * sulc / curv / thickness: ``_sulc``, ``_curv``, ``_thickness`` with extension
      ``.shape.gii`` or ``.func.gii``, no ``space-``/``den-``/``desc-`` entity;
    * myelin (liberal): suffix ``myelinw``, ``myelin`` or ``MyelinMap`` (any case), or any
      suffix with a ``desc-`` starting with ``myelin`` (e.g. ``desc-myelin_map``), extension
      ``.shape.gii`` or ``.func.gii``, no ``space-``/``den-`` entity;
    * surface (optional, for the report): ``_inflated.surf.gii``, else ``_midthickness.surf.gii``,
      no ``space-``/``den-``/``desc-`` entity;
    * midthickness (optional, area-corrected resampling): ``_midthickness.surf.gii``, no
      ``space-``/``den-``/``desc-`` entity;
    * cortex mask (optional, medial wall left out of the similarity): ``_desc-cortex_mask.label.gii``
      with no ``space-`` (sMRIPrep >= 0.17).

    The dHCP structural pipeline's derivatives are read as this layout: ``space-T2w`` (or
    ``space-T1w``), the subject's own image, is a native mesh like no ``space-`` (release 3,
    ``sub-X_ses-Y_hemi-L_space-T2w_sphere.surf.gii``); ``hemi-left``/``hemi-right`` are ``L``/``R``,
    ``_curvature`` is ``_curv``, and an ``anat/Native/`` folder is searched with ``anat/``
    (release 2, ``anat/Native/sub-X_ses-Y_hemi-left_sphere.surf.gii``).

    Every ``.gii`` may also be gzipped (``.gii.gz``, read as the plain file; the plain file
    wins when both exist). Other entities (``acq-``, ``run-`` ...) are allowed; of several
    spheres the one with the fewest entities wins, a tie is reported as ambiguous; every other
    file is taken from the sphere's own set (the same ``acq-``/``run-``/``rec-`` ... entities),
    never from another acquisition's.  With ``session=None`` the
    session-less ``sub-X/anat`` is used first, else the single ``ses-*`` folder holding a
    sphere (several: the hemisphere is reported missing, pass ``session``).  With a session,
    ``sub-X/ses-Y/anat`` is used first, then ``sub-X/anat`` (anatomy shared by sessions).
``freesurfer`` (a FreeSurfer subjects dir)
    ``<root>/<subject dir>/surf/h.sphere``, ``h.sphere.reg`` (optional), ``h.sulc``,
    ``h.curv``, ``h.thickness``; no myelin map; surface (optional): ``h.inflated``, else
    ``h.midthickness``; midthickness (optional): ``h.midthickness``; cortex mask (optional):
    ``<subject dir>/label/h.cortex.label``.  Subject dirs tried: ``sub-X_ses-Y`` (with a
    session), ``sub-X``, ``X``.
``hcp`` (HCP pipelines)
    ``<root>/<S>/MNINonLinear/Native/<S>.H.sphere.native.surf.gii``, optional
    ``<S>.H.sphere.reg.native.surf.gii`` (FreeSurfer's sphere.reg), ``.sulc.native.shape.gii``,
    ``.curvature.native.shape.gii``, ``.thickness.native.shape.gii``,
    ``.MyelinMap_BC.native.func.gii`` (else ``.MyelinMap.native.func.gii``, else the dscalar of both
    hemispheres ``<S>.MyelinMap_BC.native.dscalar.nii``, then ``<S>.MyelinMap.native.dscalar.nii``:
    the hemisphere's columns are read); surface (optional):
    ``<S>.H.inflated.native.surf.gii``, else ``.midthickness.native.surf.gii``; midthickness
    (optional): ``.midthickness.native.surf.gii``; cortex mask (optional): ``.roi.native.shape.gii``.
    ``S`` tried:
    ``sub-X_ses-Y`` and ``X_ses-Y`` (with a session), ``sub-X``, ``X``.

Roots: ``derivatives`` (name -> folder) when given, else every folder in
``<bids_dir>/derivatives``; a folder with no ``sub-*`` folder whose ``smriprep`` (``fmriprep``)
subfolder has some is read there (:func:`derivatives_root`: sMRIPrep's own layout). FreeSurfer
subjects dirs: ``fs_subjects_dir`` when given, else ``<bids_dir>/derivatives/freesurfer``,
``<root>/sourcedata/freesurfer`` of each derivatives root and the ``freesurfer`` folder beside
it. The three layouts cannot collide, so every layout is probed in every root.

Priority, per hemisphere, when several sources are complete: ``smriprep`` (a sphere already
converted to GIFTI alongside the derivatives the user chose), then ``freesurfer``, then
``hcp``; sources are never mixed within one hemisphere (vertex correspondence). Of several
folders of one source holding the hemisphere, the first is used; when another holds other bytes
for its sphere, an :class:`InputChoiceWarning` names both.  A source
is *complete* when it has the sphere and every requested feature; other features it has
are returned too.

The optional *surface* (:attr:`HemiInputs.surface`) is the inflated (preferred) or
midthickness mesh of the same source and folder as the sphere, drawn by the participant report;
its absence never fails a hemisphere.  The optional *midthickness* and *cortex mask* of the same
source and folder are used, when present, for area-corrected resampling and to leave the medial
wall out of the registration's similarity.  The surfaces are the files discovery opens: their
headers (and the sphere's) are read to check that they have the sphere's number of vertices;
otherwise the surface is dropped with a :class:`SurfaceWarning` (:func:`surface_vertex_count`).

Sign conventions: HCP's PostFreeSurfer negates FreeSurfer's ``sulc`` and ``curv``
(HCP sulc = -FreeSurfer sulc, positive on gyri).  :attr:`HemiInputs.sulc_sign` records
``"hcp"`` for HCP inputs and ``"freesurfer"`` otherwise (sMRIPrep keeps FreeSurfer's
sign); :meth:`HemiInputs.sign` gives the factor that converts a feature to FreeSurfer's
sign (the engine's convention, see :mod:`geomorph_bids.io.templates`).
"""

from __future__ import annotations

import errno
import glob
import os
import re
import shlex
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from geomorph_bids.derivatives import label_key
from geomorph_bids.errors import InputError

__all__ = ["FEATURES", "SOURCES", "SURFACE_KINDS", "DiscoveryError", "HemiInputs", "SubjectInputs", "freesurfer_roots",
           "derivatives_root", "derivatives_freesurfer",
           "SurfaceWarning", "InputChoiceWarning", "discover", "find_subjects", "normalise_label", "valid_label", "surface_vertex_count",
           "unlabelled_subjects", "unlabelled_folders", "is_freesurfer_subject", "readable_freesurfer_name", "recon_all_unfinished", "empty_input_folders", "folder_list",
           "holds_any_subject", "hcp_subjects_without_native", "sphereless_subject", "missing_sphere_reason",
           "broken_subject_links", "broken_link",
           "LAYOUT_NAMES"]

#: feature names discovery knows
FEATURES = ("sulc", "curv", "thickness", "myelin")
#: sources in priority order
SOURCES = ("smriprep", "freesurfer", "hcp")
#: optional display surfaces, in order of preference
SURFACE_KINDS = ("inflated", "midthickness")
#: features whose sign HCP flips relative to FreeSurfer
_HCP_NEGATED = frozenset({"sulc", "curv"})

_LABEL = re.compile(r"[A-Za-z0-9]+")
# the FreeSurfer subject folder names discover() reads: sub-<label>[_ses-<label>] or <label>
# (not a longitudinal run's sub-01_ses-1.long.sub-01_base nor its base sub-01_base)
_READABLE_FS_NAME = re.compile(r"sub-[A-Za-z0-9]+(_ses-[A-Za-z0-9]+)?|[A-Za-z0-9]+")
_HEMIS = ("L", "R")
_FS_HEMI = {"L": "lh", "R": "rh"}
_GII_METRIC = (".shape.gii", ".func.gii")
#: ``space-`` labels naming the subject's own anatomical image: a native mesh, as no ``space-`` is
#: (the dHCP structural pipeline's release 3 names its native surfaces ``_space-T2w``)
_NATIVE_SPACES = frozenset({"T1w", "T2w"})
#: ``hemi-`` values spelled out (the dHCP structural pipeline's release 2: ``hemi-left``)
_HEMI_WORDS = {"L": "L", "R": "R", "left": "L", "right": "R"}
#: map suffixes read as a feature of another name (the dHCP release 2's ``_curvature``)
_FEATURE_SUFFIXES = {"sulc": "sulc", "curv": "curv", "thickness": "thickness", "curvature": "curv"}
_MYELIN_SUFFIXES = frozenset({"myelinw", "myelin", "myelinmap"})


class SurfaceWarning(UserWarning):
    """An optional display surface was found but cannot be used (it is then ignored)."""


class InputChoiceWarning(UserWarning):
    """Two input folders of one kind hold a hemisphere (two fMRIPrep runs side by side in
    ``derivatives/``, two FreeSurfer subjects dirs): the first is used and the warning names both."""


class DiscoveryError(InputError):
    """No usable inputs for a subject (or hemisphere); the one-line message names the
    subject, what was looked for and the folders searched (:attr:`searched`)."""

    def __init__(self, message: str, *, subject: str | None = None, hemi: str | None = None,
                 searched: Sequence[Path] = ()) -> None:
        self.searched = tuple(Path(p) for p in searched)
        super().__init__(message, subject=subject, hemi=hemi)


@dataclass(frozen=True)
class HemiInputs:
    """One hemisphere's discovered files.

    Attributes
    ----------
    subject : label without ``sub-``
    session : label without ``ses-``, or None
    hemi : ``"L"`` or ``"R"``
    source : ``"smriprep"``, ``"freesurfer"`` or ``"hcp"``
    sphere : the native sphere
    sphere_reg : the FreeSurfer ``sphere.reg`` (fsaverage-registered sphere), or None
    features : feature name (``sulc``, ``curv``, ``thickness``, ``myelin``) -> file; every
        requested feature plus any other the source had
    sulc_sign : ``"freesurfer"`` or ``"hcp"`` (HCP negates sulc and curv)
    surface : the inflated or midthickness mesh (same vertices as the sphere), or None
    surface_kind : ``"inflated"``, ``"midthickness"`` or None
    midthickness : the midthickness mesh (same vertices; area-corrected resampling), or None
    cortex_mask : the cortex mask (True on the cortex; same vertices), or None
    digest : content hash of the files read for the registration (:func:`~geomorph_bids.io.digest.input_digest`),
        filled in by the command line after discovery; ``""`` when not computed
    n_vertices : the sphere's vertex count from its header (:func:`surface_vertex_count`), read once by
        :func:`discover` for every later use (the memory fit, a registration's memory or batch share); None when
        it cannot be read, or for one made by hand (then read where needed: :meth:`sphere_vertices`)
    """

    subject: str
    session: str | None
    hemi: str
    source: str
    sphere: Path
    sphere_reg: Path | None
    features: dict[str, Path]
    sulc_sign: str
    surface: Path | None = None
    surface_kind: str | None = None
    midthickness: Path | None = None
    cortex_mask: Path | None = None
    digest: str = ""
    n_vertices: int | None = None

    def sphere_vertices(self) -> int | None:
        """:attr:`n_vertices`, or the sphere's header read now when discovery did not record it."""
        return self.n_vertices if self.n_vertices is not None else surface_vertex_count(self.sphere)

    def sign(self, feature: str) -> float:
        """Factor (+1.0 or -1.0) converting ``feature`` to FreeSurfer's sign convention."""
        return -1.0 if self.sulc_sign == "hcp" and feature in _HCP_NEGATED else 1.0


@dataclass(frozen=True)
class SubjectInputs:
    """Result of :func:`discover`: the hemispheres found and why the others were not.

    Attributes
    ----------
    subject, session : labels without prefixes (session None when not given)
    hemis : hemi -> :class:`HemiInputs` for the hemispheres found
    missing : hemi -> one-line reason for each requested hemisphere not found
    searched : the folders searched
    """

    subject: str
    session: str | None
    hemis: dict[str, HemiInputs]
    missing: dict[str, str] = field(default_factory=dict)
    searched: tuple[Path, ...] = ()

    def error(self, hemi: str) -> DiscoveryError:
        """The :class:`DiscoveryError` for a missing hemisphere (for the caller to report)."""
        return DiscoveryError(self.missing[hemi], subject=self.subject, hemi=hemi,
                              searched=self.searched)


def readable_freesurfer_name(name: str) -> bool:
    """Whether discovery reads a FreeSurfer subject folder of this name: ``sub-<label>[_ses-<label>]``
    or ``<label>`` (not a longitudinal run's ``sub-01_ses-1.long.sub-01_base`` nor ``sub-01_base``)."""
    return bool(_READABLE_FS_NAME.fullmatch(name))


def is_freesurfer_subject(folder: str | Path) -> bool:
    """Whether ``folder`` is one FreeSurfer subject: it has ``surf/lh.sphere`` or ``surf/rh.sphere``,
    or a ``surf/`` this user may not look into (a colleague's subject, 0700 in a shared subjects dir:
    reading it then fails that subject on its own line; the permission error ended the whole run,
    every other subject unregistered). A folder this user may not look into at all is not one."""
    for h in ("lh", "rh"):
        try:
            if (Path(folder) / "surf" / f"{h}.sphere").is_file():
                return True
        except PermissionError:
            try:
                return (Path(folder) / "surf").is_dir()
            except PermissionError:
                return False
    return False


def _is_dir(path: Path) -> bool:
    """``path.is_dir()``, False where this user may not look (a folder of another user's, 0700)."""
    try:
        return path.is_dir()
    except PermissionError:
        return False


def base_of_other_subjects(folder: str | Path) -> bool:
    """Whether FreeSurfer folder ``folder`` is a longitudinal base (``recon-all -base``: its
    ``scripts/base-tps``, first 64 KiB, else its ``X.long.<name>`` runs) whose time points are runs of
    another subject: ``sub-01base`` or ``base01`` with ``sub-01_ses-1``, ``sub-01_ses-2``. Its name is a
    BIDS label, so it was registered as a subject of its own (``01base``: one brain again in the group
    table and a population template). A
    base named as its subject (``sub-06`` with ``sub-06_ses-1``), or whose time points are named
    without ``sub-``, is not one of these (registered once, session-less, as before)."""
    folder = Path(folder)
    try:
        with open(folder / "scripts" / "base-tps", errors="replace") as f:
            tps = f.read(65536).split()
    except OSError:  # no base-tps (a copy without scripts/): the longitudinal runs X.long.<folder> beside it
        tps = [p.name.split(".long.", 1)[0] for p in folder.parent.glob(f"*.long.{glob.escape(folder.name)}")]
    own = folder.name[4:] if folder.name.startswith("sub-") else folder.name
    theirs = {t[4:].split("_", 1)[0] for t in tps if t.startswith("sub-")}
    return bool(theirs) and own not in theirs


#: surfaces recon-all (and FastSurfer's recon-surf) writes before ``?h.sphere``: a subject folder holding one
#: but no sphere made its surfaces and stopped before the sphere, or was told to skip it
_PRE_SPHERE_SURFACES = ("white", "orig", "smoothwm", "inflated")


def sphereless_subject(folder: str | Path) -> bool:
    """Whether ``folder`` is a FreeSurfer or FastSurfer subject that made its surfaces (``surf/lh.white``,
    ``.orig``, ``.smoothwm`` or ``.inflated``, either hemisphere) but no ``surf/?h.sphere``: recon-all stopped
    before its ``-sphere`` step, or FastSurfer ran with ``--no_surfreg`` (which skips it); or a FastSurfer
    ``--seg_only`` run (its segmentation, no surface at all). Not registrable, but a subject all the same,
    named with :func:`missing_sphere_reason` instead of being left out."""
    folder = Path(folder)
    return not is_freesurfer_subject(folder) and (_made_surfaces(folder) or _fastsurfer_segmentation(folder))


def _made_surfaces(folder: Path) -> bool:
    """Whether ``folder/surf`` holds a surface recon-all makes before the sphere, of either hemisphere."""
    return any(_present(folder / "surf" / f"{h}.{kind}") for h in ("lh", "rh") for kind in _PRE_SPHERE_SURFACES)


def _fastsurfer_segmentation(folder: Path) -> bool:
    """Whether ``folder`` holds FastSurfer's segmentation (``mri/aparc.DKTatlas+aseg.deep.mgz``)."""
    return _present(folder / "mri" / "aparc.DKTatlas+aseg.deep.mgz")


def _made_by_fastsurfer(folder: Path) -> bool:
    """Whether a subject folder was made by FastSurfer (its ``scripts/recon-surf.log`` or ``.done``, or the
    segmentation ``mri/aparc.DKTatlas+aseg.deep.mgz``), not by recon-all."""
    return any(_present(folder / rel) for rel in ("scripts/recon-surf.done", "scripts/recon-surf.log",
                                                   "mri/aparc.DKTatlas+aseg.deep.mgz"))


def missing_sphere_reason(folder: Path, h: str) -> str:
    """Why subject ``folder`` (:func:`sphereless_subject`) has no ``surf/{h}.sphere`` and how to make it: with
    FastSurfer's ``recon-surfreg.sh`` (a ``--no_surfreg`` run), else recon-all's ``-sphere`` step."""
    surf, sd, name = folder / "surf", shlex.quote(str(folder.parent)), shlex.quote(folder.name)
    if not _made_surfaces(folder):
        return (f"freesurfer {folder}: FastSurfer made no surfaces (a --seg_only run: its segmentation "
                f"mri/aparc.DKTatlas+aseg.deep.mgz, no surf/{h}.*); run its surface pipeline on it, run_fastsurfer.sh "
                f"--sid {name} --sd {sd} --surf_only")
    made = next((f"{h}.{k}" for k in _PRE_SPHERE_SURFACES if _present(surf / f"{h}.{k}")), "surfaces")
    qsphere = (f" ({h}.qsphere.nofix is no stand-in: its mesh is the one before topology correction)"
               if _present(surf / f"{h}.qsphere.nofix") else "")
    if _made_by_fastsurfer(folder):
        return (f"freesurfer {surf}: has {made} but no {h}.sphere: FastSurfer made no sphere (2.0 on skips it with "
                f"--no_surfreg, 1.x unless run with --surfreg); make {h}.sphere and {h}.sphere.reg with FastSurfer's "
                f"recon_surf/recon-surfreg.sh --sid {name} --sd {sd} (FastSurfer 2.1 on), or rerun FastSurfer with its "
                f"surface registration{qsphere}")
    return (f"freesurfer {surf}: has {made} but no {h}.sphere: recon-all stopped before its -sphere step (the first "
            f"of -autorecon3); run recon-all -sd {sd} -s {name} -autorecon3{qsphere}")


def valid_label(label: str) -> bool:
    """Whether ``label`` is a BIDS label: ASCII letters and digits only."""
    return bool(_LABEL.fullmatch(str(label)))


def normalise_label(label: str, prefix: str = "sub") -> str:
    """``"sub-01"`` or ``"01"`` -> ``"01"``; raises InputError for a non-alphanumeric label or a
    prefix that is not lower-case (``SUB-01``)."""
    text = str(label).strip()
    if text.startswith(f"{prefix}-"):
        text = text[len(prefix) + 1:]
    elif text[:len(prefix) + 1].lower() == f"{prefix}-":  # SUB-01: not "not alphanumeric"
        rest = text[len(prefix) + 1:]
        raise InputError(f"invalid {prefix} label {label!r}: the prefix is lower-case '{prefix}-' "
                         f"({prefix}-{rest}, or {rest} alone)")
    if not _LABEL.fullmatch(text):
        parts = [p.strip().removeprefix(f"{prefix}-") for p in re.split(r"[,;]", text)]
        hint = ""
        if len(parts) > 1 and all(_LABEL.fullmatch(p) for p in parts if p):
            hint = f" (labels are separate words, no commas: {' '.join(p for p in parts if p)})"
        elif "/" in text and _LABEL.fullmatch(Path(text).name.removeprefix(f"{prefix}-")):
            hint = f" (a label, not a folder's path: {Path(text).name.removeprefix(f'{prefix}-')})"
        elif text.startswith(f"{prefix}-") and _LABEL.fullmatch(text[len(prefix) + 1:]):  # sub-sub-01
            hint = f" ('{prefix}-' given twice: {prefix}-{text[len(prefix) + 1:]}, or {text[len(prefix) + 1:]} alone)"
        raise InputError(f"invalid {prefix} label {label!r}: BIDS labels are alphanumeric{hint}")
    return text


#: the subfolder a pipeline writes its subjects to inside the output folder it is given:
#: sMRIPrep's ``<output_dir>/smriprep``, fMRIPrep's before 21.0 ``<output_dir>/fmriprep``
_PIPELINE_SUBFOLDERS = ("smriprep", "fmriprep")


def _holds_subjects(folder: Path) -> bool:
    """Whether ``folder`` has a ``sub-*`` folder (stops at the first)."""
    try:
        with os.scandir(folder) as it:
            return any(e.name.startswith("sub-") and e.is_dir() for e in it)
    except OSError:
        return False


def derivatives_root(folder: str | Path) -> Path:
    """The folder holding a derivatives dataset's subjects: ``folder`` itself, or its ``smriprep``
    (``fmriprep``) subfolder when ``folder`` has no ``sub-*`` folder and that subfolder has
    (``smriprep BIDS OUT participant`` writes ``OUT/smriprep/sub-*``, beside ``OUT/freesurfer``)."""
    folder = Path(folder)
    if folder.is_dir() and not _holds_subjects(folder):
        for name in _PIPELINE_SUBFOLDERS:
            if _holds_subjects(folder / name):
                return folder / name
    return folder


def _is_subject_folder(folder: Path) -> bool:
    """A subject folder of a layout discovery reads: ``sub-*``, an HCP subject
    (``<S>/MNINonLinear/Native``) or a FreeSurfer subject (``<S>/surf/?h.sphere``)."""
    return folder.name.startswith("sub-") or (folder / "MNINonLinear" / "Native").is_dir() \
        or is_freesurfer_subject(folder)


def holds_any_subject(root: str | Path) -> bool:
    """Whether derivatives root ``root`` (read through :func:`derivatives_root`) holds a subject
    discovery can read, in it or in its ``sourcedata/freesurfer`` (:func:`_is_subject_folder`;
    stops at the first). A folder without one gives no input at all."""
    for folder in (Path(root), Path(root) / "sourcedata" / "freesurfer"):
        try:
            with os.scandir(folder) as it:
                if any(e.is_dir() and _is_subject_folder(Path(e.path)) for e in it):
                    return True
        except OSError:
            continue
    return False


def hcp_subjects_without_native(root: str | Path) -> list[str]:
    """Names of the folders of ``root`` that hold ``MNINonLinear/`` but no ``MNINonLinear/Native/``:
    HCP subjects with only fsLR meshes (``fsaverage_LR32k/``, the 164k files), which discovery does
    not read (they are already registered), sorted; empty when ``root`` cannot be read."""
    try:
        with os.scandir(root) as it:
            found = [e.name for e in it if e.is_dir() and (Path(e.path) / "MNINonLinear").is_dir()
                     and not (Path(e.path) / "MNINonLinear" / "Native").is_dir()]
    except OSError:
        return []
    return sorted(found)


def derivatives_freesurfer(root: Path) -> list[Path]:
    """The FreeSurfer subjects folders that come with derivatives root ``root``: its
    ``sourcedata/freesurfer`` (fMRIPrep 21.0 and later) and the ``freesurfer`` folder beside it
    (sMRIPrep's ``OUT/freesurfer`` beside ``OUT/smriprep``; ``derivatives/freesurfer``)."""
    return [root / "sourcedata" / "freesurfer", root.parent / "freesurfer"]


def _roots(bids_dir: Path, fs_subjects_dir: str | Path | None,
           derivatives: Mapping[str, str | Path] | None) -> tuple[list[Path], list[Path]]:
    """(derivatives roots, FreeSurfer subjects dirs), existing folders only, deduplicated."""
    if derivatives is not None:
        deriv = [derivatives_root(p) for p in derivatives.values()]
    else:
        base = bids_dir / "derivatives"
        deriv = sorted(derivatives_root(p) for p in base.iterdir() if p.is_dir() and p.name != "freesurfer") \
            if base.is_dir() else []
    if fs_subjects_dir is not None:
        fs = [Path(fs_subjects_dir)]
    else:
        fs = [bids_dir / "derivatives" / "freesurfer"] + [f for r in deriv for f in derivatives_freesurfer(r)]
    seen: set[Path] = set()

    def keep(paths: Iterable[Path]) -> list[Path]:
        out = []
        for p in paths:
            if not p.is_dir():  # first: resolve() raised RuntimeError on a link to itself (derivatives -> derivatives)
                continue
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                out.append(p)
        return out

    return keep(deriv), keep(fs)


def _refused(subject: str, session: str | None, roots: Iterable[Path]) -> list[str]:
    """The folders of ``subject`` in ``roots`` (its ``sub-<label>``/``<label>`` folder, and their
    ``surf``, ``anat``, ``ses-<label>/anat`` and HCP ``MNINonLinear/Native``) that this user may not
    read (another user's, 0700 in a shared dataset), each with whose it is: said where its inputs
    were "not found", which they were not, only not readable."""
    from ..errors import owner_words, user_words

    names = [f"sub-{subject}", subject, *([f"sub-{subject}_ses-{session}"] if session else [])]
    subs = ["", "surf", "anat", *([f"ses-{session}/anat"] if session else []), "MNINonLinear/Native"]
    out: list[str] = []
    for root in roots:
        for name in names:
            for sub in subs:
                folder = Path(root) / name / sub
                try:
                    if not folder.is_dir() or os.access(folder, os.R_OK | os.X_OK):
                        continue
                except OSError:  # its parent refused already
                    continue
                out.append(f"{folder} may not be read by this run's user ({owner_words(folder)}; this run is "
                           f"{user_words(os.geteuid())})")
    return out


def _is_empty(folder: Path) -> bool:
    try:
        with os.scandir(folder) as it:
            return next(it, None) is None
    except OSError:
        return False


def empty_input_folders(bids_dir: str | Path, fs_subjects_dir: str | Path | None = None,
                        derivatives: Mapping[str, str | Path] | None = None) -> list[Path]:
    """The input folders searched that hold nothing at all: a DataLad subdataset that was not
    installed (``datalad clone`` of a dataset leaves its subdatasets as empty folders), or a
    copy that did not happen."""
    deriv, fs = _roots(Path(bids_dir), fs_subjects_dir, derivatives)
    return [p for p in dict.fromkeys([*deriv, *fs]) if _is_empty(p)]


def folder_list(folders: Iterable[Path], empty: Iterable[Path] = ()) -> str:
    """``a, b (empty: a DataLad subdataset not installed? datalad get -n b)``: the folders, each
    empty one marked with what to do."""
    import shlex

    empty = set(empty)
    return ", ".join(f"{p} (empty: a DataLad subdataset not installed? datalad get -n {shlex.quote(str(p))})"
                     if p in empty else str(p) for p in folders)


def freesurfer_roots(bids_dir: str | Path, fs_subjects_dir: str | Path | None = None,
                     derivatives: Mapping[str, str | Path] | None = None) -> list[Path]:
    """The FreeSurfer subjects folders the inputs are looked for in (``fs_subjects_dir``, else
    ``<bids_dir>/derivatives/freesurfer`` and each derivatives root's :func:`derivatives_freesurfer`),
    existing ones only: also where the BIDS-App looks for FreeSurfer's ``fsaverage`` template."""
    return _roots(Path(bids_dir), fs_subjects_dir, derivatives)[1]


def find_subjects(bids_dir: str | Path, fs_subjects_dir: str | Path | None = None,
                  derivatives: Mapping[str, str | Path] | None = None) -> list[str]:
    """Subject labels (without ``sub-``), in natural order (:func:`~geomorph_bids.derivatives.label_key`:
    ``2`` before ``10``): ``sub-*`` folders of ``bids_dir`` plus
    subjects found only in the derivatives roots or FreeSurfer subjects dirs (``sub-*``
    folders, ``sub-X_ses-Y`` FreeSurfer folders, HCP folders holding ``MNINonLinear/Native``,
    and FreeSurfer subjects named without ``sub-``, e.g. ``bert/surf/lh.sphere``, when the
    name is a BIDS label; FreeSurfer's ``fsaverage*`` templates are not subjects)."""
    bids_dir = Path(bids_dir)
    deriv, fs = _roots(bids_dir, fs_subjects_dir, derivatives)
    labels: set[str] = set()
    fs_keys = {r.resolve() for r in fs}
    for root in [bids_dir, *deriv, *fs]:
        if not root.is_dir():
            continue
        in_fs = root.resolve() in fs_keys
        for p in root.iterdir():
            if not p.is_dir():
                continue
            name = p.name
            if in_fs and (is_freesurfer_subject(p) or sphereless_subject(p)) and (
                    not _READABLE_FS_NAME.fullmatch(name) or base_of_other_subjects(p)):
                continue  # sub-01_ses-1.long.sub-01_base, sub-01_base, sub-01base: unlabelled_subjects names them
            if name.startswith("sub-"):
                name = name[4:].split("_", 1)[0]
            elif root in deriv and _is_dir(p / "MNINonLinear" / "Native"):  # also a bids_dir given as hcp=
                name = name.split("_", 1)[0]
            elif root in fs and not name.startswith("fsaverage") and _LABEL.fullmatch(name) \
                    and (is_freesurfer_subject(p) or sphereless_subject(p)):
                pass  # a FreeSurfer subject named as recon-all -s bert names it (one without a sphere: named why)
            else:
                continue
            if _LABEL.fullmatch(name):
                labels.add(name)
    return sorted(labels, key=label_key)  # sub-2 before sub-10, as the group level lists them


def unlabelled_subjects(bids_dir: str | Path, fs_subjects_dir: str | Path | None = None,
                        derivatives: Mapping[str, str | Path] | None = None) -> list[Path]:
    """FreeSurfer subject folders (``surf/lh.sphere`` or ``rh.sphere``) in the subjects dirs that
    :func:`find_subjects` cannot take because their name is no BIDS label (``my subj``,
    ``bért``, ``s-01``): never processed, so the caller says so instead of leaving them out in
    silence; so are longitudinal bases named as a label of their own (:func:`base_of_other_subjects`).
    FreeSurfer's own templates (``fsaverage*``, ``*average*``) are not listed."""
    _, fs = _roots(Path(bids_dir), fs_subjects_dir, derivatives)
    out = []
    for root in fs:
        if not root.is_dir():
            continue
        for p in sorted(root.iterdir()):
            if "average" in p.name or not p.is_dir() or (_READABLE_FS_NAME.fullmatch(p.name)
                                                           and not base_of_other_subjects(p)):
                continue
            if is_freesurfer_subject(p) or sphereless_subject(p):   # one without a sphere is named too
                out.append(p)
    return out


def unlabelled_folders(bids_dir: str | Path, fs_subjects_dir: str | Path | None = None,
                       derivatives: Mapping[str, str | Path] | None = None) -> list[Path]:
    """``sub-*`` folders of ``bids_dir`` and of the derivatives roots whose label is no BIDS label
    (``sub-ü3``, ``sub-01-a``, ``sub-``), or whose ``sub-`` is in another letter case (``SUB-01``,
    ``Sub-01``): :func:`find_subjects` cannot take them, so they were left out in silence (FreeSurfer
    subject folders are :func:`unlabelled_subjects`' to name)."""
    bids_dir = Path(bids_dir)
    deriv, _ = _roots(bids_dir, fs_subjects_dir, derivatives)
    named = {p.resolve() for p in unlabelled_subjects(bids_dir, fs_subjects_dir, derivatives)}
    out = []
    for root in dict.fromkeys([bids_dir, *deriv]):
        try:
            folders = sorted(p for p in root.iterdir() if p.name[:4].lower() == "sub-" and p.is_dir())
        except OSError:
            continue
        for p in folders:  # SUB-01, Sub-01 too: never read (names are case-sensitive)
            if (not p.name.startswith("sub-") or not _LABEL.fullmatch(p.name[4:].split("_", 1)[0])) \
                    and p.resolve() not in named and not is_freesurfer_subject(p):
                out.append(p)
    return out


def broken_link(path: Path) -> str | None:
    """What a link that leads to no folder leads to (``a loop of symbolic links``, ``a link to T,
    which does not exist ...``), or None for anything else (a folder, a file, a link to either)."""
    if not path.is_symlink() or path.exists():
        return None
    try:
        target = os.readlink(path)
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a loop of symbolic links"
        return (f"a link to {target}, which does not exist (on a disk that is not mounted, or a relative link "
                "made from another folder?)")
    return None


def broken_subject_links(bids_dir: str | Path, fs_subjects_dir: str | Path | None = None,
                         derivatives: Mapping[str, str | Path] | None = None,
                         subjects: Sequence[str] | None = None) -> list[tuple[Path, str]]:
    """Subject folders of the input folders that are links to nothing (:func:`broken_link`: a
    FreeSurfer subject linked from a disk that is not mounted, a link to itself): discovery cannot
    tell them from no folder at all, so a whole-dataset run left them out in silence and a run of
    their label said ``not found``. (link, what it is) pairs, sorted per input folder; ``subjects``:
    look at these labels' folders only (``sub-X``, ``X``; None: every entry of the folders, but
    FreeSurfer's templates, ``*average*``, and hidden names); in ``bids_dir`` ``sub-*`` only."""
    bids_dir = Path(bids_dir)
    deriv, fs = _roots(bids_dir, fs_subjects_dir, derivatives)
    found: list[tuple[Path, str]] = []
    for root in dict.fromkeys([bids_dir, *deriv, *fs]):
        if subjects is not None:
            entries = [root / n for s in subjects for n in (f"sub-{s.removeprefix('sub-')}", s.removeprefix("sub-"))]
        else:
            try:
                entries = sorted(root.iterdir())
            except OSError:
                continue
        for p in entries:
            if p.name.startswith(".") or "average" in p.name or (root == bids_dir and not p.name.startswith("sub-")):
                continue
            why = broken_link(p)
            if why is not None:
                found.append((p, why))
    return found


def label_for(name: str) -> str:
    """A BIDS label to suggest for a folder name: its ASCII letters and digits (``bért`` -> ``bert``,
    ``my subj`` -> ``mysubj``); ``subject`` when none is left."""
    import unicodedata

    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    if ascii_name[:4].lower() == "sub-":  # SUB-01, Sub-01 (a case-insensitive system's copy): 01, not SUB01
        ascii_name = ascii_name[4:]
    return re.sub(r"[^A-Za-z0-9]", "", ascii_name) or "subject"


# ---------------------------------------------------------------- per-source probes
# Each probe returns (HemiInputs, None) when complete, else (None, reason) when the source
# has a sphere but something is wrong, else (None, None) when the root holds nothing for it.

def _entities(name: str) -> tuple[dict[str, str], str, str] | None:
    """``sub-01_hemi-L_sulc.shape.gii`` -> ({sub: 01, hemi: L}, "sulc", ".shape.gii"); a
    ``.gii.gz`` name gives the extension without ``.gz``."""
    stem, dot, rest = name.partition(".")
    if not dot:
        return None
    if rest.endswith(".gii.gz"):  # gzipped GIFTI: read as the plain file (io.gifti), same role
        rest = rest[:-3]
    parts = stem.split("_")
    ents: dict[str, str] = {}
    for part in parts[:-1]:
        key, dash, value = part.partition("-")
        if not dash:
            return None
        ents[key] = value
    return ents, parts[-1], "." + rest


def _smriprep_role(ents: dict[str, str], suffix: str, ext: str) -> str | None:
    """Which input a BIDS-derivatives file name is, or None."""
    if "den" in ents:
        return None
    space, desc = ents.get("space"), ents.get("desc")
    if space in _NATIVE_SPACES:  # the subject's own image: a native mesh
        space = None
    if suffix in SURFACE_KINDS and ext == ".surf.gii":
        return suffix if desc is None and space is None else None
    if suffix == "sphere" and ext == ".surf.gii":
        if desc is None and space is None:
            return "sphere"
        if desc == "reg" and space in (None, "fsaverage"):
            return "sphere_reg"
        return None
    if suffix == "mask" and ext == ".label.gii" and desc == "cortex" and space is None:
        return "cortex_mask"
    if ext not in _GII_METRIC or space is not None:
        return None
    if suffix.lower() in _MYELIN_SUFFIXES or (desc or "").lower().startswith("myelin"):
        return "myelin"
    if suffix in _FEATURE_SUFFIXES and desc is None:
        return _FEATURE_SUFFIXES[suffix]
    return None


def _smriprep_files(anat: Path, subject: str, session: str | None, hemi: str
                    ) -> dict[str, list[tuple[int, Path]]]:
    """role -> [(number of entities, path)] in one ``anat`` folder (and its dHCP ``Native/``)."""
    found: dict[str, list[tuple[int, Path]]] = {}
    paths = list(anat.glob(f"sub-{subject}_*hemi-*"))
    if _readable_dir(anat / "Native"):  # dHCP release 2; an anat we may not read is named by the caller
        paths += list((anat / "Native").glob(f"sub-{subject}_*hemi-*"))
    for p in paths:
        parsed = _entities(p.name)
        if parsed is None:
            continue
        ents, suffix, ext = parsed
        if (ents.get("sub") != subject or _HEMI_WORDS.get(ents.get("hemi", "")) != hemi
                or ents.get("ses") != session):
            continue
        role = _smriprep_role(ents, suffix, ext)
        if role is not None:  # rank: fewer entities first, then the plain file before its .gz
            found.setdefault(role, []).append((2 * len(ents) + p.name.endswith(".gz"), p))
    return found


def _readable_dir(folder: Path) -> bool:
    """Whether ``folder`` is a directory this process may list (False where its parent may not be
    read, which ``Path.is_dir`` raises on)."""
    try:
        return folder.is_dir() and os.access(folder, os.R_OK | os.X_OK)
    except OSError:
        return False


def _case_hint(found: Sequence[str]) -> str:
    """``; NAMES in the folder ...: rename ...`` for the files ``found`` (in the folder the message
    names) that discovery would have taken under their names' lower-case extension (``.surf.GII``)
    or in the case it looks for (``LH.SULC``): names are case-sensitive here, and such a file
    (copied from a system whose names are not) was left out with "no inputs" as if it were not there."""
    if not found:
        return ""
    return (f"; {', '.join(found)} in it {'is' if len(found) == 1 else 'are'} named in another letter case (file "
            f"names are case-sensitive here): rename "
            f"{'it to the name' if len(found) == 1 else 'them to the names'} looked for")


def _smriprep_case_mismatches(anat: Path, subject: str, session: str | None, hemi: str,
                              roles: Sequence[str]) -> list[str]:
    """Names of ``anat`` that would be inputs of ``roles`` but for the letter case of their
    extension (``sub-01_hemi-L_sphere.surf.GII``)."""
    out = []
    for p in sorted(anat.glob(f"sub-{subject}_*hemi-{hemi}_*")):
        parsed = _entities(p.name)
        if parsed is None or parsed[2] == parsed[2].lower():
            continue
        ents, suffix, ext = parsed
        if ents.get("sub") == subject and ents.get("hemi") == hemi and ents.get("ses") == session \
                and _smriprep_role(ents, suffix, ext.lower()) in roles:
            out.append(p.name)
    return out


def _freesurfer_case_mismatches(surf: Path, names: Sequence[str]) -> list[str]:
    """Names of ``surf`` equal to one of ``names`` but for letter case (``LH.SULC`` for ``lh.sulc``)."""
    wanted = {n.lower(): n for n in names}
    try:
        entries = os.listdir(surf)
    except OSError:
        return []
    return sorted(e for e in entries if e.lower() in wanted and e != wanted[e.lower()])


#: entities that say which input a file is (its role), not which acquisition it comes from
_ROLE_ENTITIES = frozenset({"sub", "ses", "hemi", "space", "den", "desc"})


def _acquisition(path: Path) -> frozenset[tuple[str, str]]:
    """The entities of a file name that tell one set of surfaces from another (``acq-``, ``run-``,
    ``rec-`` ...): every entity but those of :data:`_ROLE_ENTITIES`."""
    parsed = _entities(path.name)
    return frozenset() if parsed is None else frozenset(
        (k, v) for k, v in parsed[0].items() if k not in _ROLE_ENTITIES)


def _acquisition_text(acq: frozenset[tuple[str, str]]) -> str:
    return "_".join(f"{k}-{v}" for k, v in sorted(acq)) or "no acq-/run-/rec- entity"


def _pick(cands: list[tuple[int, Path]]) -> Path | str:
    """The candidate with the fewest entities, or a reason string when tied."""
    cands = sorted(cands)
    best = [p for n, p in cands if n == cands[0][0]]
    if len(best) > 1:
        return "ambiguous: " + ", ".join(p.name for p in best)
    return best[0]


def _probe_smriprep(root: Path, subject: str, session: str | None, hemi: str,
                    features: Sequence[str]) -> tuple[HemiInputs | None, str | None]:
    subj = root / f"sub-{subject}"
    if session is not None:
        folders = [(subj / f"ses-{session}" / "anat", session), (subj / "anat", None)]
    else:
        folders = [(subj / "anat", None)]
        sessions = []
        bad = []
        for anat in sorted(subj.glob("ses-*/anat"), key=lambda a: label_key(a.parent.name)):
            ses = anat.parent.name[4:]
            if not _LABEL.fullmatch(ses):  # its outputs could not carry the entity: never processed
                bad.append(f"smriprep {anat.parent}: session label {ses!r} is not a BIDS label (letters and "
                           "digits only); rename the folder")
                continue
            if "sphere" in _smriprep_files(anat, subject, ses, hemi):
                sessions.append((anat, ses))
        if bad and not sessions and "sphere" not in _smriprep_files(subj / "anat", subject, None, hemi):
            return None, "; ".join(bad)
        if len(sessions) > 1 and "sphere" not in _smriprep_files(subj / "anat", subject, None, hemi):
            names = ", ".join(f"ses-{s}" for _, s in sessions)
            return None, f"smriprep {subj}: spheres in several sessions ({names}), pass a session"
        folders += sessions
    problems = []
    for anat, ses in folders:
        if not anat.is_dir():
            continue
        files = _smriprep_files(anat, subject, ses, hemi)
        if "sphere" not in files:
            mismatched = _smriprep_case_mismatches(anat, subject, ses, hemi, ("sphere", *features))
            if any(_entities(n)[1] == "sphere" for n in mismatched):
                problems.append(f"smriprep {anat}: no sphere" + _case_hint(mismatched))
            elif (older := _surfaces_without_sphere(anat, subject, ses, hemi)):
                problems.append(
                    f"smriprep {anat}: has {', '.join(older[:3])}{' ...' if len(older) > 3 else ''} but no native "
                    f"sphere (sub-{subject}{f'_ses-{ses}' if ses else ''}_hemi-{hemi}_sphere.surf.gii, written from "
                    "sMRIPrep 0.13 and fMRIPrep 23.2 on; a desc-reg sphere is FreeSurfer's sphere.reg, not it): "
                    "register from the FreeSurfer subjects folder that run made (its sourcedata/freesurfer, or the "
                    "freesurfer folder beside it): --fs-subjects-dir DIR")
            elif (early := _dhcp_unlabelled(anat, subject, hemi)):
                word = {"L": "left", "R": "right"}[hemi]
                problems.append(
                    f"smriprep {early[0].parent}: has {early[0].name}, the dHCP's early name without hemi-: link "
                    f"its files under the hemi- names read (cd {shlex.quote(str(early[0].parent))} && for f in "
                    f"*_{word}_*; do ln -s \"$f\" \"${{f/_{word}_/_hemi-{word}_}}\"; done)")
            elif (v1 := _fmriprep1_surfaces(anat, subject, hemi)):
                problems.append(
                    f"smriprep {anat}: has {', '.join(v1[:3])}{' ...' if len(v1) > 3 else ''}: fMRIPrep 1.x's layout "
                    "(before 1.4), which wrote no sphere: register from the FreeSurfer subjects folder that run made "
                    "(the freesurfer folder beside its fmriprep folder): --fs-subjects-dir DIR")
            continue
        sphere = _pick(files["sphere"])
        if isinstance(sphere, str):
            problems.append(f"smriprep {anat}: sphere {sphere} (two sets of surfaces, e.g. of two acquisitions "
                            "or runs: which to register is not for geomorph-bids to guess; keep one set in this "
                            "folder)")
            continue
        # the other files of the sphere's own set only (its acq-/run-/rec- entities): a map of another
        # acquisition describes another mesh (same vertex count or not), and was taken before
        acq = _acquisition(sphere)
        chosen: dict[str, Path] = {"sphere": sphere}
        others: dict[str, list[Path]] = {}
        for role, cands in files.items():
            if role == "sphere":
                continue
            own = [(n, p) for n, p in cands if _acquisition(p) == acq]
            others[role] = [p for n, p in cands if _acquisition(p) != acq]
            if not own:
                continue
            pick = _pick(own)
            if isinstance(pick, str):
                if role in features:
                    problems.append(f"smriprep {anat}: {role} {pick}")
                    break
                continue
            chosen[role] = pick
        else:
            lacking = [f for f in features if f not in chosen]
            if lacking:
                elsewhere = [p.name for f in lacking for p in others.get(f, [])]
                problems.append(f"smriprep {anat}: has the sphere but no {', '.join(lacking)}"
                                + _on_template_hint(anat, subject, ses, hemi, lacking) + (
                    f" of its set ({sphere.name}: {_acquisition_text(acq)}); "
                    f"another set has it ({', '.join(elsewhere)}), and sets are never mixed" if elsewhere else "")
                    + _case_hint(_smriprep_case_mismatches(anat, subject, ses, hemi, lacking)))
                continue
            feats = {f: chosen[f] for f in FEATURES if f in chosen}
            kind = next((k for k in SURFACE_KINDS if k in chosen), None)
            return HemiInputs(subject, ses, hemi, "smriprep", chosen["sphere"], chosen.get("sphere_reg"),
                              feats, "freesurfer", chosen[kind] if kind else None, kind,
                              chosen.get("midthickness"), chosen.get("cortex_mask")), ""
    return None, "; ".join(problems) or _cat12_hint(subj, session, hemi)


def _cat12_hint(subj: Path, session: str | None, hemi: str) -> str | None:
    """Why the CAT12 surfaces of subject folder ``subj`` are not read (``surf/lh.sphere.NAME.gii`` in its
    ``[ses-Y/]anat/surf`` or ``surf``: CAT12's layout), or None when it has none."""
    h = _FS_HEMI[hemi]
    folders = [subj / "anat" / "surf", subj / "surf"]
    if session is not None:
        folders = [subj / f"ses-{session}" / "anat" / "surf", *folders]
    else:
        folders += sorted(subj.glob("ses-*/anat/surf"))
    for surf in folders:
        try:  # a folder this user may not read (a colleague's, 0700): said by discover, not raised here
            spheres = sorted(p.name for p in surf.glob(f"{h}.sphere.*.gii*")
                             if not p.name.startswith(f"{h}.sphere.reg."))
        except OSError:
            continue
        if spheres:
            return (f"cat12 {surf}: CAT12's layout ({spheres[0]}), which is not read: CAT12 writes no sulc of "
                    f"FreeSurfer's kind ({h}.sqrtsulc is the square root of sulcal depth); register this subject from "
                    "a FreeSurfer or FastSurfer run "
                    "(the source repository's docs/troubleshooting.md, Surfaces from other FreeSurfer versions "
                    "and other producers)")
    return None


#: surfaces older sMRIPrep/fMRIPrep write beside (or instead of) the native sphere
_SMRIPREP_SURFACES = frozenset({"smoothwm", "white", "pial", "midthickness", "inflated", "sphere"})


def _surfaces_without_sphere(anat: Path, subject: str, session: str | None, hemi: str) -> list[str]:
    """Names of the native-mesh surfaces of ``hemi`` in ``anat`` (``_smoothwm``, ``_pial``, ``_midthickness``,
    ``_inflated``, ``_desc-reg_sphere`` ...: no ``space-`` but fsaverage, no ``den-``), sorted: an sMRIPrep
    or fMRIPrep folder of a version that wrote surfaces but no native sphere (before sMRIPrep 0.13)."""
    out = []
    for p in sorted(anat.glob(f"sub-{subject}_*hemi-{hemi}_*.surf.gii*")):
        parsed = _entities(p.name)
        if parsed is None:
            continue
        ents, suffix, _ext = parsed
        if ents.get("sub") == subject and ents.get("hemi") == hemi and ents.get("ses") == session \
                and suffix in _SMRIPREP_SURFACES and "den" not in ents and ents.get("space") in (None, "fsaverage"):
            out.append(p.name)
    return out


def _fmriprep1_surfaces(anat: Path, subject: str, hemi: str) -> list[str]:
    """Names of the surfaces of ``hemi`` in ``anat`` named as fMRIPrep 1.0-1.3 named them
    (``sub-01_T1w_smoothwm.L.surf.gii``, ``_pial``, ``_midthickness``, ``_inflated``; before its BIDS
    derivatives names of 1.4), sorted: that fMRIPrep wrote no sphere, its FreeSurfer folder has it."""
    pattern = re.compile(rf"sub-{re.escape(subject)}(_[A-Za-z]+-[A-Za-z0-9]+)*_T1w_"
                         rf"(smoothwm|pial|midthickness|inflated)\.{hemi}\.surf\.gii(\.gz)?")
    return sorted(p.name for p in anat.glob(f"sub-{subject}_*.{hemi}.surf.gii*") if pattern.fullmatch(p.name))


def _dhcp_unlabelled(anat: Path, subject: str, hemi: str) -> list[Path]:
    """The spheres of ``hemi`` in ``anat`` (or its ``Native/``) named as an early dHCP release named them,
    the hemisphere without ``hemi-`` (``sub-X_ses-Y_left_sphere.surf.gii``), sorted."""
    word = {"L": "left", "R": "right"}[hemi]
    pattern = re.compile(rf"sub-{re.escape(subject)}(_[A-Za-z]+-[A-Za-z0-9]+)*_{word}_sphere\.surf\.gii(\.gz)?")
    found = list(anat.glob(f"sub-{subject}_*{word}_sphere.surf.gii*"))
    if _readable_dir(anat / "Native"):
        found += (anat / "Native").glob(f"sub-{subject}_*{word}_sphere.surf.gii*")
    return sorted(p for p in found if pattern.fullmatch(p.name))


def _on_template_hint(anat: Path, subject: str, session: str | None, hemi: str, roles: Sequence[str]) -> str:
    """`` (NAMES there are on a template's mesh, space-X: ...)`` for the files of ``anat`` that would be
    maps of ``roles`` but for their ``space-``/``den-`` entity (``sub-01_hemi-L_space-fsLR_den-32k_myelinw.func.gii``,
    fMRIPrep's ``sub-01_space-fsLR_den-91k_myelinw.dscalar.nii`` of both hemispheres): already resampled
    onto a template, they cannot be registered; ``""`` when there is none."""
    names, spaces = [], set()
    for p in sorted(anat.glob(f"sub-{subject}_*")):
        parsed = _entities(p.name)
        if parsed is None:
            continue
        ents, suffix, ext = parsed
        if ents.get("sub") != subject or ents.get("ses") != session or ents.get("hemi", hemi) != hemi:
            continue
        if "space" not in ents and "den" not in ents:
            continue
        bare = {k: v for k, v in ents.items() if k not in ("space", "den")}
        role = _smriprep_role(bare, suffix, ".func.gii" if ext == ".dscalar.nii" else ext)
        if role in roles:
            names.append(p.name)
            spaces.add(ents.get("space") or f"den-{ents['den']}")
    if not names:
        return ""
    return (f" ({', '.join(names)} there {'is' if len(names) == 1 else 'are'} on a template's mesh, "
            f"{', '.join(f'space-{sp}' if not sp.startswith('den-') else sp for sp in sorted(spaces))}: the "
            "registration reads the map on this sphere's native mesh, named without space-/den-)")


def _present(path: Path) -> bool:
    """Anything of that name: a file, a link (even a broken one: an annexed file that was not
    fetched), or a FIFO, device or folder in its place; what is not a readable regular file is then
    reported as such, on one line, by the checks that follow (never as missing, never opened)."""
    return os.path.lexists(path)


def _freesurfer_cortex_label(h: HemiInputs, fs_roots: Sequence[Path]) -> Path | None:
    """recon-all's ``label/?h.cortex.label`` for an sMRIPrep/fMRIPrep hemisphere that has no
    ``desc-cortex_mask`` of its own (sMRIPrep 0.13 and 0.16, in fMRIPrep 23.2 and 24.1, write none), from the
    same subject's FreeSurfer folder (``sourcedata/freesurfer`` of fMRIPrep's outputs, ``--fs-subjects-dir``)
    whose ``surf/?h.sphere`` has the very vertices of the GIFTI sphere (fMRIPrep's is its conversion): the
    medial wall is then left out as for the FreeSurfer layout. Before, such subjects were registered with
    the medial wall in the similarity though the label was beside them. None where no such folder is."""
    from .surfaces import read_surface

    names = ([f"sub-{h.subject}_ses-{h.session}"] if h.session else []) + [f"sub-{h.subject}", h.subject]
    mine = None
    for root in fs_roots:
        for name in names:
            folder = Path(root) / name
            fh = f"{h.hemi.lower()}h"
            label, sphere = folder / "label" / f"{fh}.cortex.label", folder / "surf" / f"{fh}.sphere"
            if not (label.is_file() and sphere.is_file()) or recon_all_unfinished(folder, fh):
                continue
            try:
                if surface_vertex_count(sphere) != surface_vertex_count(h.sphere):
                    continue
                mine = read_surface(h.sphere).vertices if mine is None else mine
                if np.array_equal(np.asarray(read_surface(sphere).vertices, np.float32), np.asarray(mine, np.float32)):
                    return label
            except (InputError, OSError, ValueError):
                continue
    return None


def recon_all_unfinished(folder: Path, h: str) -> str | None:
    """Why recon-all's outputs in ``folder`` are not to be read yet, or None: recon-all leaves
    ``scripts/IsRunning.lh+rh`` (or ``.lh``/``.rh``) while it runs, or after it was killed, and
    ``scripts/recon-all.error`` when it stopped on an error; its surfaces may then lack steps
    or mix two runs (a sphere of the earlier run beside maps of the new one). FastSurfer leaves
    ``scripts/recon-surf.log`` without ``scripts/recon-surf.done`` (written last) in those cases."""
    scripts = folder / "scripts"
    running = [scripts / f"IsRunning.{x}" for x in ("lh+rh", h)]
    for path in running:
        if _present(path):
            return (f"recon-all has not finished ({path} is there: it is still running, or it was killed); "
                    f"register this subject once recon-all has ended (or delete that file to register the "
                    f"surfaces as they are)")
    error = scripts / "recon-all.error"
    if _present(error):
        return (f"recon-all stopped with an error ({error} is there): its surfaces may lack steps or mix two "
                f"runs; rerun recon-all (or delete that file to register the surfaces as they are)")
    # FastSurfer (1.0 on) runs recon-all with -no-isrunning: its recon-surf.sh (and recon-surfreg.sh, 2.1 on)
    # deletes scripts/<script>.done when it starts and writes it last, so a log without it is a run still
    # going, killed or failed
    for script in ("recon-surf", "recon-surfreg"):
        log, done = scripts / f"{script}.log", scripts / f"{script}.done"
        if _present(log) and not _present(done):
            return (f"FastSurfer has not finished ({log} is there but not {done.name}, which {script}.sh writes "
                    f"last: it is still running, was killed or stopped on an error, see the end of its log); register "
                    f"this subject once FastSurfer has ended (or create {done} to register the surfaces as they are)")
    return None


def _probe_freesurfer(root: Path, subject: str, session: str | None, hemi: str,
                      features: Sequence[str]) -> tuple[HemiInputs | None, str | None]:
    h = _FS_HEMI[hemi]
    names = ([f"sub-{subject}_ses-{session}"] if session else []) + [f"sub-{subject}", subject]
    files = {"sulc": f"{h}.sulc", "curv": f"{h}.curv", "thickness": f"{h}.thickness"}
    problem = None
    for name in names:
        surf = root / name / "surf"
        if not _present(surf / f"{h}.sphere"):
            mismatched = _freesurfer_case_mismatches(surf, [f"{h}.sphere", *(files[f] for f in features if f in files)])
            if any(n.lower() == f"{h}.sphere" for n in mismatched) and problem is None:
                problem = f"freesurfer {surf}: no {h}.sphere" + _case_hint(mismatched)
            elif problem is None and sphereless_subject(root / name) \
                    and readable_freesurfer_name(name) and not name.startswith("fsaverage"):
                problem = recon_all_unfinished(root / name, h)
                problem = f"freesurfer {root / name}: {problem}" if problem else missing_sphere_reason(root / name, h)
            continue
        unfinished = recon_all_unfinished(root / name, h)
        if unfinished:
            return None, f"freesurfer {root / name}: {unfinished}"
        lacking = [files.get(f, f) for f in features if f not in files or not _present(surf / files[f])]
        if lacking:
            return None, (f"freesurfer {surf}: has {h}.sphere but no {', '.join(lacking)}"
                          + _case_hint(_freesurfer_case_mismatches(surf, lacking)))
        feats = {f: surf / n for f, n in files.items() if _present(surf / n)}
        reg = surf / f"{h}.sphere.reg"
        kind = next((k for k in SURFACE_KINDS if _present(surf / f"{h}.{k}")), None)
        mid, cortex = surf / f"{h}.midthickness", root / name / "label" / f"{h}.cortex.label"
        return HemiInputs(subject, session, hemi, "freesurfer", surf / f"{h}.sphere",
                          reg if _present(reg) else None, feats, "freesurfer",
                          surf / f"{h}.{kind}" if kind else None, kind,
                          mid if _present(mid) else None, cortex if _present(cortex) else None), ""
    return None, problem


def _probe_hcp(root: Path, subject: str, session: str | None, hemi: str,
               features: Sequence[str]) -> tuple[HemiInputs | None, str | None]:
    names = ([f"sub-{subject}_ses-{session}", f"{subject}_ses-{session}"] if session else []) + \
        [f"sub-{subject}", subject]
    # each map's file names in order of preference ({S}: the subject folder's name, {H}: L or R); the
    # myelin maps also as the one dscalar of both hemispheres PostFreeSurfer writes beside them (the
    # file HCP's downloads offer: its columns of this hemisphere are read)
    kinds = {"sulc": ["{S}.{H}.sulc.native.shape.gii"], "curv": ["{S}.{H}.curvature.native.shape.gii"],
             "thickness": ["{S}.{H}.thickness.native.shape.gii"],
             "myelin": ["{S}.{H}.MyelinMap_BC.native.func.gii", "{S}.{H}.MyelinMap.native.func.gii",
                        "{S}.MyelinMap_BC.native.dscalar.nii", "{S}.MyelinMap.native.dscalar.nii"]}
    for name in names:
        native = root / name / "MNINonLinear" / "Native"
        sphere = native / f"{name}.{hemi}.sphere.native.surf.gii"
        if not _present(sphere):
            continue
        feats = {}
        for f, options in kinds.items():
            hit = next((native / o.format(S=name, H=hemi) for o in options
                        if _present(native / o.format(S=name, H=hemi))), None)
            if hit is not None:
                feats[f] = hit
        lacking = [kinds[f][0].format(S="", H=hemi).removeprefix(f".{hemi}") for f in features if f not in feats]
        if lacking:
            return None, f"hcp {native}: has the sphere but no {', '.join(lacking)}"
        reg = native / f"{name}.{hemi}.sphere.reg.native.surf.gii"
        kind = next((k for k in SURFACE_KINDS if _present(native / f"{name}.{hemi}.{k}.native.surf.gii")), None)
        mid, cortex = native / f"{name}.{hemi}.midthickness.native.surf.gii", native / f"{name}.{hemi}.roi.native.shape.gii"
        return HemiInputs(subject, session, hemi, "hcp", sphere, reg if _present(reg) else None,
                          feats, "hcp", native / f"{name}.{hemi}.{kind}.native.surf.gii" if kind else None,
                          kind, mid if _present(mid) else None, cortex if _present(cortex) else None), ""
    return None, None


def _default_roots(bids_dir: Path, fs_subjects_dir: str | Path | None) -> list[Path]:
    """The folders searched by default (for messages when none exists)."""
    return [bids_dir / "derivatives" / "<pipeline>",
            Path(fs_subjects_dir) if fs_subjects_dir is not None else bids_dir / "derivatives" / "freesurfer"]


def _longitudinal_runs(subject: str, session: str | None, searched: Sequence[Path]) -> str:
    """For a subject/session without inputs: ``; FreeSurfer's longitudinal run of it is there, ...`` naming the
    ``X.long.BASE`` folders of the names a FreeSurfer run of it has (``sub-01_ses-1``, ``sub-01``, ``01``) in the
    folders searched, and how to register them (a tree holding only the longitudinal runs and their base); ''
    where there is none. Only the folders' names are looked at."""
    import glob
    import shlex

    names = ([f"sub-{subject}_ses-{session}"] if session else []) + [f"sub-{subject}", subject]
    runs: list[Path] = []
    for root in searched:
        for name in names:
            try:
                runs += sorted(p for p in Path(root).glob(f"{glob.escape(name)}.long.*") if p.is_dir())
            except OSError:
                continue
        if runs:
            break
    if not runs:
        return ""
    run = runs[0]
    cross = run.name.partition(".long.")[0]
    also = f" (also {', '.join(p.name for p in runs[1:])})" if len(runs) > 1 else ""
    return (f"; FreeSurfer's longitudinal run of it is there, {run}{also}, but not the cross-sectional run {cross} "
            f"it is read from: to register the longitudinal surfaces, mkdir -p LONGDIR && ln -s "
            f"{shlex.quote(str(run))} LONGDIR/{shlex.quote(cross)}, then --fs-subjects-dir LONGDIR")


def _looked_for(subject: str, session: str | None, hemi: str, features: Sequence[str]) -> str:
    """One-line description of the files each layout needs; ``hemi`` may be ``{L,R}``."""
    h = {"L": "lh", "R": "rh"}.get(hemi, hemi.replace("L", "lh").replace("R", "rh"))
    ses = f"[_ses-{session}]" if session else ""
    fs_names = {"sulc": "sulc", "curv": "curv", "thickness": "thickness"}
    hcp_names = {"sulc": "sulc.native.shape.gii", "curv": "curvature.native.shape.gii",
                 "thickness": "thickness.native.shape.gii",
                 "myelin": "MyelinMap_BC.native.func.gii (or <S>.MyelinMap_BC.native.dscalar.nii)"}
    smri = " + ".join([f"sub-{subject}{ses}_hemi-{hemi}_sphere.surf.gii",
                       *(f"_{f}.shape.gii" if f != "myelin" else "_myelinw|desc-myelin*.{shape,func}.gii"
                         for f in features)])
    fsurf = " + ".join([f"surf/{h}.sphere", *(f"{h}.{fs_names[f]}" if f in fs_names
                                              else f"{f} (no FreeSurfer file)" for f in features)])
    hcp = " + ".join([f"MNINonLinear/Native/<S>.{hemi}.sphere.native.surf.gii",
                      *(f".{hcp_names[f]}" for f in features)])
    # with a session, the folders each probe tries (the session's first, then the shared anatomy's):
    # the FreeSurfer line named only {sub-01,01}, though sub-01_ses-2 is the one a per-session run has
    folder = f"[ses-{session}/]" if session else "[ses-*/]"
    fs_dirs = ([f"sub-{subject}_ses-{session}"] if session else []) + [f"sub-{subject}", subject]
    hcp_dirs = ([f"sub-{subject}_ses-{session}", f"{subject}_ses-{session}"] if session else []) + [f"sub-{subject}"]
    return (f"looked for sMRIPrep sub-{subject}/{folder}anat/{smri}, FreeSurfer "
            f"{{{','.join(fs_dirs)}}}/{fsurf}, HCP {hcp} (S = {', '.join(hcp_dirs)} or {subject})")


def surface_vertex_count(path: str | Path) -> int | None:
    """Number of vertices of a surface from its header only (a FreeSurfer triangle surface,
    :func:`~geomorph_bids.io.freesurfer.read_fs_vertex_count`, or a GIFTI ``.surf.gii[.gz]``,
    :func:`~geomorph_bids.io.gifti.gifti_vertex_count`); None when it cannot be read or is not
    a surface."""
    from .freesurfer import read_fs_vertex_count
    from .gifti import gifti_vertex_count

    n = read_fs_vertex_count(path)
    return n if n is not None else gifti_vertex_count(path)


def _checked_surface(h: HemiInputs) -> HemiInputs:
    """``h`` with its sphere's vertex count (:attr:`HemiInputs.n_vertices`, its header read once), without
    its display surface or midthickness (and a :class:`SurfaceWarning`) when that surface's vertex count cannot be
    read or differs from the sphere's."""
    n_sphere = h.sphere_vertices()
    h = replace(h, n_vertices=n_sphere)
    if h.surface is None and h.midthickness is None:
        return h
    import warnings

    for path, kind, consequence, drop in (
            (h.surface, h.surface_kind, "the report draws the sphere only", {"surface": None, "surface_kind": None}),
            (h.midthickness, "midthickness", "features are resampled with the sphere's vertex areas",
             {"midthickness": None})):
        if path is None:
            continue
        n_surface = surface_vertex_count(path)
        if n_surface is not None and n_surface == n_sphere:
            continue
        why = (f"{n_surface} vertices, the sphere {n_sphere}" if n_surface is not None and n_sphere is not None
               else "its vertex count (or the sphere's) cannot be read")
        warnings.warn(f"sub-{h.subject} hemi-{h.hemi}: {kind} surface {path} ignored ({why}); {consequence}",
                      SurfaceWarning, stacklevel=3)
        h = replace(h, **drop)
    return h


_PROBES = {"smriprep": _probe_smriprep, "freesurfer": _probe_freesurfer, "hcp": _probe_hcp}


def _same_content(a: Path, b: Path) -> bool:
    """Whether two input files hold the same bytes (one file, a copy, a link); False when either
    cannot be read (the first found is used; the other is only named)."""
    try:
        if os.path.samefile(a, b):
            return True
        if os.path.getsize(a) != os.path.getsize(b):
            return False
        with open(a, "rb") as fa, open(b, "rb") as fb:
            while True:
                chunk = fa.read(1 << 20)
                if chunk != fb.read(1 << 20):
                    return False
                if not chunk:
                    return True
    except OSError:
        return False


def _same_inputs(a: HemiInputs, b: HemiInputs, features: Sequence[str]) -> bool:
    """Whether two finds of one hemisphere hold the same bytes in every file the registration reads
    (sphere, ``sphere.reg``, the ``features``, midthickness, cortex mask; absent in both counts
    as the same)."""
    pairs = [(a.sphere, b.sphere), (a.sphere_reg, b.sphere_reg), (a.midthickness, b.midthickness),
             (a.cortex_mask, b.cortex_mask), *((a.features.get(f), b.features.get(f)) for f in features)]
    return all(x is None and y is None or x is not None and y is not None and _same_content(x, y)
               for x, y in pairs)


def _unprefixed_twin(h: HemiInputs, root: Path) -> HemiInputs | None:
    """``h`` as read from the subject folder named without ``sub-`` in the same subjects folder
    (FreeSurfer ``01`` beside ``sub-01``, HCP ``01``/``01_ses-1`` beside ``sub-01``/``sub-01_ses-1``:
    both name one subject, and the probe reads the ``sub-`` one), when ``h`` came from the ``sub-``
    one and the other has the sphere; else None."""
    if h.source not in ("freesurfer", "hcp"):
        return None
    name = h.sphere.relative_to(root).parts[0]
    bare = name.removeprefix("sub-")
    if bare == name or (h.source == "freesurfer" and bare != h.subject):
        return None

    def moved(path: Path | None) -> Path | None:
        if path is None:
            return None
        rel = path.relative_to(root / name)
        if h.source == "hcp":  # its files are named after the folder: <S>.L.sphere.native.surf.gii
            rel = rel.with_name(bare + rel.name[len(name):])
        return root / bare / rel

    sphere = moved(h.sphere)
    if sphere is None or not _present(sphere):
        return None
    return replace(h, sphere=sphere, sphere_reg=moved(h.sphere_reg), midthickness=moved(h.midthickness),
                   cortex_mask=moved(h.cortex_mask), features={f: moved(p) for f, p in h.features.items()})


def _choice_advice(subject: str, twin: Path | None, others: Sequence[Path]) -> str:
    """How to register another of the folders an :class:`InputChoiceWarning` names: name it alone
    (another folder); rename or remove one (``X`` beside ``sub-X``: no option picks it)."""
    advice = "; to use another, name it alone with --derivatives NAME=PATH (FreeSurfer: --fs-subjects-dir)" \
        if others else ""
    if twin is not None:
        advice += (f"; sub-{subject} and {subject} in one subjects folder name one subject (sub- prefixes are "
                   "optional): remove or rename the one not to register")
    return advice


#: the layouts as messages name them (discovery's warnings, the run's ``inputs:`` line)
LAYOUT_NAMES = {"smriprep": "sMRIPrep/fMRIPrep", "freesurfer": "FreeSurfer", "hcp": "HCP"}


def _other_mesh_later(chosen: HemiInputs, later: Sequence[str], deriv: Sequence[Path], fs: Sequence[Path],
                      subject: str, session: str | None, hemi: str, features: Sequence[str]) -> list[str]:
    """``FreeSurfer's DIR/lh.sphere has 140000 vertices, this one 150000`` for each complete find of the
    hemisphere in a layout of lower priority (``later``) whose sphere has another number of vertices
    than ``chosen``'s (headers only): another recon-all run, not passed over in silence. A sphere of
    the same count (sMRIPrep's GIFTI of its own ``freesurfer`` folder's run) says nothing; nor does one
    whose count cannot be read (the readers report it if it is ever used)."""
    n_chosen = chosen.sphere_vertices()
    if n_chosen is None:
        return []
    out = []
    for source in later:
        roots = [*fs, *deriv] if source == "freesurfer" else [*deriv, *fs]
        for root in dict.fromkeys(roots):
            result, _ = _PROBES[source](root, subject, session, hemi, tuple(features))
            if result is None:
                continue
            n = surface_vertex_count(result.sphere)
            if n is not None and n != n_chosen:
                out.append(f"the {LAYOUT_NAMES[source]} layout's {result.sphere} has {n} vertices, this one "
                           f"{n_chosen} (to register it, name its folder alone: --derivatives "
                           f"other={shlex.quote(str(root))})")
    return out


def _mixed_sources(found: Mapping[str, HemiInputs]) -> str | None:
    """``hemi-L read from ..., hemi-R from ...`` when the hemispheres found come from different layouts
    or folders (one hemisphere missing from the folder that has the other), else None: each is
    registered, but they may be two runs, or two subjects' (a hemisphere copied in)."""
    where = {h: (x.source, x.sphere.parent if x.source != "freesurfer" else x.sphere.parent.parent)
             for h, x in found.items()}
    if len(set(where.values())) < 2:
        return None
    parts = [f"hemi-{h} from the {LAYOUT_NAMES[src]} layout's {folder}" for h, (src, folder) in sorted(where.items())]
    return ("the hemispheres are read from different inputs: " + ", ".join(parts)
            + "; both are registered: check they are one run of this subject (a hemisphere missing or "
            "incomplete where the other is read is taken from the next input)")


def discover(subject: str, bids_dir: str | Path, *, session: str | None = None,
             fs_subjects_dir: str | Path | None = None,
             derivatives: Mapping[str, str | Path] | None = None,
             hemis: Sequence[str] = ("L", "R"), features: Sequence[str] = ("sulc",)) -> SubjectInputs:
    """Find each hemisphere's sphere and feature maps for one subject.

    Parameters
    ----------
    subject : label, with or without ``sub-``
    bids_dir : the BIDS dataset root
    session : label (with or without ``ses-``) or None
    fs_subjects_dir : FreeSurfer subjects dir (default ``<bids_dir>/derivatives/freesurfer``
        and each derivatives root's :func:`derivatives_freesurfer`)
    derivatives : name -> derivatives root (default: every folder of ``<bids_dir>/derivatives``;
        each read through :func:`derivatives_root`)
    hemis : hemispheres wanted, ``"L"``/``"R"``
    features : features every returned hemisphere must have (from :data:`FEATURES`)

    Returns
    -------
    :class:`SubjectInputs` with the hemispheres found and, in ``missing``, a one-line reason
    for each one not found.  Raises :class:`DiscoveryError` when none is found (message:
    subject, what was looked for, folders searched) and :class:`InputError` for bad arguments.
    """
    subject = normalise_label(subject, "sub")
    session = None if session is None else normalise_label(session, "ses")
    hemis = tuple(hemis)
    bad = [h for h in hemis if h not in _HEMIS] or (["none"] if not hemis else [])
    if bad:
        raise InputError(f"hemis must be a non-empty subset of L, R (got {list(hemis)})", subject=subject)
    unknown = [f for f in features if f not in FEATURES]
    if unknown:
        raise InputError(f"unknown feature(s) {', '.join(map(str, unknown))} (known: {', '.join(FEATURES)})",
                         subject=subject)
    bids_dir = Path(bids_dir)
    deriv, fs = _roots(bids_dir, fs_subjects_dir, derivatives)
    searched = tuple(dict.fromkeys([*deriv, *fs]))
    found: dict[str, HemiInputs] = {}
    problems: dict[str, list[str]] = {}
    for hemi in hemis:
        problems[hemi] = []
        for source in SOURCES:
            roots = [*fs, *deriv] if source == "freesurfer" else [*deriv, *fs]
            others: list[Path] = []  # the same kind of input in a later folder: named, never used
            twin: Path | None = None  # the chosen sub-X's X beside it, with other files: named, never used
            for root in dict.fromkeys(roots):
                result, problem = _PROBES[source](root, subject, session, hemi, tuple(features))
                if result is not None and source == "smriprep" and result.cortex_mask is None:
                    # every folder's alike, so that two copies of one fMRIPrep run still compare equal
                    result = replace(result, cortex_mask=_freesurfer_cortex_label(result, fs))
                if result is not None and hemi not in found:
                    found[hemi] = result
                    bare = _unprefixed_twin(result, root)
                    if bare is not None and not _same_inputs(result, bare, features):
                        twin = bare.sphere
                elif result is not None and not _same_inputs(result, found[hemi], features):
                    others.append(result.sphere)
                elif problem and hemi not in found:
                    problems[hemi].append(problem)
            if others or twin:
                named = [*([twin] if twin else []), *others]
                warnings.warn(f"sub-{subject}{f' ses-{session}' if session else ''} hemi-{hemi}: registering "
                              f"{found[hemi].sphere}, the first of {len(named) + 1} input folders that hold this "
                              f"hemisphere with other files (also {', '.join(map(str, named))})"
                              + _choice_advice(subject, twin, others), InputChoiceWarning, stacklevel=2)
            if hemi in found:  # its sphere's header, read once here (HemiInputs.n_vertices)
                found[hemi] = replace(found[hemi], n_vertices=surface_vertex_count(found[hemi].sphere))
                later = _other_mesh_later(found[hemi], SOURCES[SOURCES.index(source) + 1:], deriv, fs, subject,
                                          session, hemi, features)
                if later:
                    warnings.warn(f"sub-{subject}{f' ses-{session}' if session else ''} hemi-{hemi}: registering "
                                  f"{found[hemi].sphere} ({LAYOUT_NAMES[source]} layout, read first); "
                                  + "; ".join(later) + ": another run of this subject? (the layouts are read in "
                                  "this order: sMRIPrep/fMRIPrep, FreeSurfer, HCP)", InputChoiceWarning, stacklevel=2)
                break
    mixed = _mixed_sources(found)
    if mixed:
        warnings.warn(f"sub-{subject}{f' ses-{session}' if session else ''}: {mixed}", InputChoiceWarning,
                      stacklevel=2)
    found = {h: _checked_surface(x) for h, x in found.items()}
    where = ""  # the folders searched, for the messages of hemispheres not found (empty ones marked)
    if len(found) < len(hemis):
        where = ("searched: " + folder_list(searched, [p for p in searched if _is_empty(p)]) if searched else
                 "no input folder exists (expected " + ", ".join(map(str, _default_roots(bids_dir, fs_subjects_dir)))
                 + ")")
        where += _longitudinal_runs(subject, session, searched)
    refused = _refused(subject, session, searched) if len(found) < len(hemis) else []
    for h in hemis:
        if h not in found:
            problems[h] = [*refused, *problems[h]]
    missing = {h: "; ".join([*(problems[h] or ["no inputs"]), _looked_for(subject, session, h, features),
                             where])
               for h in hemis if h not in found}
    if not found:
        if len(hemis) == 1:
            raise DiscoveryError(missing[hemis[0]], subject=subject, hemi=hemis[0], searched=searched)
        if refused and all(problems[h] == refused for h in hemis):  # said once, not per hemisphere
            msg = "; ".join(refused) + f"; {_looked_for(subject, session, '{' + ','.join(hemis) + '}', features)}; {where}"
        elif any(problems.values()):
            msg = "; ".join(f"hemi-{h}: {missing[h]}" for h in hemis)
        else:
            msg = f"no inputs for {', '.join(f'hemi-{h}' for h in hemis)}; " + \
                f"{_looked_for(subject, session, '{' + ','.join(hemis) + '}', features)}; {where}"
        raise DiscoveryError(msg, subject=subject, searched=searched)
    return SubjectInputs(subject, session, found, missing, searched)

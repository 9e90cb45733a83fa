"""Training pairs for GeoMorph: (moving features, fixed template features) on one icosphere.

A pair is two ``(V, K)`` float32 tensors on the data icosphere (level ``level``; 40962 vertices
at ico-6, the template grid): the moving subject's features, already brought into template
space by a rigid pre-alignment, and the template's features. Both are normalised per sample and
channel with :func:`geomorph_bids.model.normalise.normalise_features` (clip at mean +/- 3 SD,
z-score, exact zeros = medial wall stay 0). A :class:`PairSet` holds many pairs in memory as one
``(N, V, K)`` tensor (ico-6, one channel: 160 KB per subject) plus the one template.

Sources
-------
* **Synthetic subjects** (:func:`synthetic_pairs`): :func:`geomorph_bids.engine.synth.make_dataset`
  warps the bundled template with random smooth diffeomorphisms (``moving="grid"``: the subject's
  sphere IS the template grid, so its features already lie on the data icosphere; no resampling).
  Below ico-6 the template is subsampled to the nested level-``level`` vertices (the first
  ``10 * 4**level + 2`` of ico-6) and the subjects are drawn on that mesh.
* **The user's own subjects** (:func:`subject_pairs`, :func:`find_subjects`): FreeSurfer layout
  ``<dir>/<sub>/surf/{lh,rh}.sphere`` + ``{lh,rh}.<feature>`` or GIFTI
  ``<dir>/<sub>/**/<prefix>_hemi-{L,R}_sphere.surf.gii`` + ``<prefix>_hemi-{L,R}_<feature>.shape.gii`` (either gzipped, ``.gii.gz``)
  (sMRIPrep names). Each sphere is rigidly pre-aligned to the template
  (:func:`geomorph_bids.engine.prealign.prealign`), which samples its features at the template's
  ico-6 vertices; those are subsampled to ``level``. Features must use FreeSurfer's sign
  (sulc positive in sulci), as the bundled templates do: a subject whose maps fit the template
  better with the other sign, or fit the other hemisphere's template better (swapped lh/rh
  files), is refused by the identity gate of :func:`geomorph_bids.quality.assess`, naming it.

Hemispheres
-----------
Either train one model per hemisphere (``hemi="L"`` or ``"R"``: right spheres against the right
template), or train one left-hemisphere model on both hemispheres with ``mirror_right=True``:
each right hemisphere is mirrored into a left one by ``x -> -x`` (the sagittal reflection of the
sphere; the faces' vertex order is reversed so the triangles stay outward-wound) and registered
to the LEFT template. Such a model is recorded as hemisphere ``"LR-mirrored"``; at inference a
right hemisphere is mirrored the same way, registered, and the resulting sphere mirrored back.
For synthetic subjects, ``mirror=True`` draws them from the RIGHT template and mirrors their
features onto the left grid (barycentric resampling at the reflected grid points: the icosphere
is not symmetric under ``x -> -x``), paired with the left template.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import InputError
from ..io.discover import broken_link, recon_all_unfinished
from ..io.templates import TEMPLATE_LEVEL, Template, load_template

if TYPE_CHECKING:
    from ..io.template_ref import TemplateRef
from ..model.normalise import NormalisationSpec
from ..sphere.icosphere import icosphere, level_of, n_vertices
from ..sphere.rotation import MIRROR
from .synth import TRAIN_CONFIG, SynthConfig, make_dataset

__all__ = ["PairSet", "MIRROR", "mirror_sphere", "mirror_grid_features", "template_on_level",
           "normalise_pairs_input", "synthetic_pairs", "find_subjects", "SubjectFiles",
           "subject_pairs", "split_by_subject", "brain_groups"]


_HEMI_PREFIX = {"L": "lh", "R": "rh"}


# ---------------------------------------------------------------------------------------------
# the container


@dataclass(frozen=True, eq=False)
class PairSet:
    """Normalised training pairs held in memory.

    Attributes
    ----------
    moving : (N, V, K) float32, moving features on the data icosphere (template space).
    fixed : (V, K) float32, the template's features (the fixed image of every pair).
    channels : K channel names, in order.
    names : N pair ids (``"synth-train-0003"``, ``"sub-01_hemi-R-mirrored"``, ...).
    groups : N grouping keys for splits (the subject: both hemispheres stay together).
    template, hemisphere : template id and hemisphere handling ("L", "R", "LR-mirrored").
    description : one line on where the pairs come from (recorded in checkpoints).
    target : optional (N, V, 3) float32, each pair's true pull-back warp on the unit sphere
        (known for generated pairs; enables the supervised term and the angular-error metric).
    """

    moving: torch.Tensor
    fixed: torch.Tensor
    channels: tuple[str, ...]
    names: tuple[str, ...]
    template: str
    hemisphere: str
    description: str = ""
    groups: tuple[str, ...] = field(default=())
    target: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.moving.dim() != 3 or self.fixed.dim() != 2 or self.moving.shape[1:] != self.fixed.shape:
            raise ValueError(f"moving must be (N, V, K) and fixed (V, K) with the same V, K; got "
                             f"{tuple(self.moving.shape)} and {tuple(self.fixed.shape)}")
        if len(self.names) != len(self.moving) or len(self.channels) != self.fixed.shape[1]:
            raise ValueError("PairSet: one name per pair and one channel name per channel required")
        if not self.groups:
            object.__setattr__(self, "groups", tuple(self.names))
        if len(self.groups) != len(self.names):
            raise ValueError("PairSet: one group per pair required")
        level_of(self.fixed.shape[0])  # raises unless V is an icosphere size
        if self.target is not None and tuple(self.target.shape) != (len(self.moving), self.fixed.shape[0], 3):
            raise ValueError(f"PairSet: target must be (N, V, 3) = ({len(self.moving)}, {self.fixed.shape[0]}, 3), "
                             f"got {tuple(self.target.shape)}")

    def __len__(self) -> int:
        return int(self.moving.shape[0])

    @property
    def level(self) -> int:
        """Icosphere level of the data (6 for 40962 vertices)."""
        return level_of(self.fixed.shape[0])

    def batch(self, index: Sequence[int] | np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(moving (b, V, K), fixed (b, V, K))`` float32 for pair indices ``index``."""
        idx = torch.as_tensor(np.asarray(index, dtype=np.int64))
        mov = self.moving.index_select(0, idx)
        return mov, self.fixed.unsqueeze(0).expand_as(mov).contiguous()

    def batch_with_target(self, index: Sequence[int] | np.ndarray | torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(moving, fixed, target (b, V, 3) or None)`` for pair indices ``index``."""
        mov, fix = self.batch(index)
        if self.target is None:
            return mov, fix, None
        return mov, fix, self.target.index_select(0, torch.as_tensor(np.asarray(index, dtype=np.int64)))

    def pairs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The pairs as a list of ``(moving (V, K), fixed (V, K))`` tensors."""
        return [(m, self.fixed) for m in self.moving]

    def subset(self, index: Sequence[int] | np.ndarray) -> "PairSet":
        """The pairs at ``index`` (same template)."""
        idx = [int(i) for i in index]
        return PairSet(self.moving[idx].clone(), self.fixed, self.channels, tuple(self.names[i] for i in idx),
                       self.template, self.hemisphere, self.description, tuple(self.groups[i] for i in idx),
                       None if self.target is None else self.target[idx].clone())

    def concat(self, other: "PairSet") -> "PairSet":
        """Both sets' pairs (they must share template, hemisphere handling, channels and level)."""
        if (other.template, other.channels, other.fixed.shape) != (self.template, self.channels, self.fixed.shape) \
                or not torch.equal(other.fixed, self.fixed):
            raise ValueError("cannot combine pairs made for different templates, channels or levels")
        hemi = self.hemisphere if other.hemisphere == self.hemisphere else "LR-mirrored"
        target = (torch.cat([self.target, other.target])
                  if self.target is not None and other.target is not None else None)
        return PairSet(torch.cat([self.moving, other.moving]), self.fixed, self.channels,
                       self.names + other.names, self.template, hemi,
                       "; ".join(d for d in (self.description, other.description) if d),
                       self.groups + other.groups, target)

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray]],
                   channels: Sequence[str] | None = None, template: str = "custom",
                   hemisphere: str = "L", description: str = "") -> "PairSet":
        """From ``(moving (V, K), fixed (V, K))`` pairs that share one fixed image (already normalised)."""
        pairs = list(pairs)
        if not pairs:
            raise ValueError("no pairs given")
        mov = torch.stack([torch.as_tensor(np.asarray(m), dtype=torch.float32) for m, _ in pairs])
        fixed = torch.as_tensor(np.asarray(pairs[0][1]), dtype=torch.float32)
        for _, f in pairs[1:]:
            if not torch.equal(torch.as_tensor(np.asarray(f), dtype=torch.float32), fixed):
                raise ValueError("all pairs must share the same fixed image (one template per model)")
        k = fixed.shape[-1]
        channels = tuple(channels) if channels is not None else tuple(f"ch{i}" for i in range(k))
        return cls(mov, fixed, channels, tuple(f"pair-{i:04d}" for i in range(len(pairs))),
                   template, hemisphere, description)


# ---------------------------------------------------------------------------------------------
# helpers


def mirror_sphere(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reflect a sphere ``x -> -x``: ``(vertices (V, 3) @ MIRROR, faces (F, 3) with reversed order)``.

    The reflection turns a right hemisphere into a left one; reversing each triangle's vertex
    order keeps the triangles wound outward. Applying it twice gives the input back.
    """
    v = np.asarray(vertices, dtype=np.float64) @ MIRROR
    return v, np.ascontiguousarray(np.asarray(faces, dtype=np.int64)[:, ::-1])


def mirror_grid_features(values: np.ndarray, level: int) -> np.ndarray:
    """Mirror ``(V, K)`` features on icosphere ``level`` (``x -> -x``), back onto the same grid.

    ``out[i] = values(MIRROR @ x_i)`` by barycentric interpolation (the icosphere is not
    symmetric under the reflection). Returns (V, K) float64.
    """
    from ..sphere.locate import SphereLocator

    verts, faces = icosphere(level)
    vals = np.asarray(values, dtype=np.float64)
    face, w = SphereLocator(verts, faces).locate(verts @ MIRROR)
    return np.einsum("nc,nck->nk", w, vals[faces[face]])


def template_on_level(template: Template, channels: Sequence[str], level: int) -> np.ndarray:
    """The template's ``channels`` as (V_level, K) float64 on icosphere ``level`` (<= 6).

    The icospheres are nested: level ``l``'s vertices are the first ``n_vertices(l)`` of ico-6.
    """
    _check_level(level)
    return np.stack([np.asarray(template.features[c], dtype=np.float64)[: n_vertices(level)]
                     for c in channels], axis=1)


def normalise_pairs_input(values: np.ndarray, channels: Sequence[str],
                          spec: NormalisationSpec | None = None, *, what: str = "") -> torch.Tensor:
    """Normalise (V, K) features with ``spec`` (default clip 3 SD + z-score) -> float32 tensor."""
    spec = spec or NormalisationSpec()
    try:
        out, _ = spec(np.asarray(values, dtype=np.float64), channel_names=list(channels))
    except ValueError as e:
        raise ValueError(f"{what}: {e}" if what else str(e)) from None
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))


def _check_level(level: int) -> None:
    if not 1 <= int(level) <= TEMPLATE_LEVEL:
        raise ValueError(f"data level must be in 1..{TEMPLATE_LEVEL}, got {level}")


# ---------------------------------------------------------------------------------------------
# synthetic subjects


def _template(template: "str | TemplateRef", hemi: str, channels: Sequence[str]) -> tuple[Template, str]:
    """The template of ``hemi`` with ``channels`` and its name: a bundled name, or a resolved
    :class:`~geomorph_bids.io.template_ref.TemplateRef` (its preferred source's maps)."""
    from ..io.template_ref import TemplateRef

    if isinstance(template, TemplateRef):
        return template.load(hemi, channels), template.label
    return load_template(template, hemi, channels), str(template)


def _maps(tpl: Template) -> str:
    """`` (maps: <source>)`` for descriptions, when the template records where its maps came from."""
    from ..io.template_sources import describe_provenance

    return f" (maps: {describe_provenance(tpl.provenance)})" if tpl.provenance else ""


def synthetic_pairs(n: int, template: "str | TemplateRef" = "fsLR", hemi: str = "L", channels: Sequence[str] = ("sulc",),
                    seed: int = 0, *, level: int = 6, stream: str = "train",
                    config: SynthConfig = TRAIN_CONFIG, mirror: bool = False,
                    spec: NormalisationSpec | None = None) -> PairSet:
    """``n`` synthetic pairs from a bundled template (see the module docstring).

    Parameters
    ----------
    n : number of subjects (subject i depends only on seed, stream, i and config).
    template, hemi : template (a bundled name or a resolved TemplateRef, whose maps may be a
        full-resolution fsaverage) and hemisphere the model registers to.
    channels : feature names (must exist in the template).
    seed, stream, config : passed to :func:`~geomorph_bids.engine.synth.make_dataset`
        ("train" and "validation" are independent streams).
    level : data icosphere level (6 = 40962 vertices; lower levels for tests).
    mirror : draw subjects from the RIGHT template and mirror them onto the left grid
        (``hemi`` must be "L"; the pairs' hemisphere is "LR-mirrored").
    spec : how the moving and fixed maps are normalised (:class:`~geomorph_bids.model.normalise.NormalisationSpec`;
        None: ``NormalisationSpec()``, clipped at 3 SD and z-scored).
    """
    if n < 1:
        raise ValueError(f"number of synthetic subjects must be >= 1, got {n}")
    _check_level(level)
    channels = tuple(channels)
    if mirror and hemi != "L":
        raise ValueError("mirrored right hemispheres are registered to the left template: use hemi='L'")
    fixed_tpl, name = _template(template, hemi, channels)
    source_tpl = _template(template, "R", channels)[0] if mirror else fixed_tpl
    template = name
    verts, faces = icosphere(level)
    fixed = normalise_pairs_input(template_on_level(fixed_tpl, channels, level), channels,
                                  spec, what=f"template {template} hemi-{hemi}")
    src = (verts, faces, template_on_level(source_tpl, channels, level))
    moving = []
    for subj in make_dataset(n, src, seed, config, stream=stream):
        feats = mirror_grid_features(subj.features, level) if mirror else subj.features
        moving.append(normalise_pairs_input(feats, channels, spec))
    tag = "R-mirrored" if mirror else hemi
    names = tuple(f"synth-{stream}-{tag}-{i:04d}" for i in range(n))
    desc = (f"{n} synthetic subjects (engine.synth, stream {stream!r}, seed {seed}) from the {template} "
            f"hemi-{'R (mirrored)' if mirror else hemi} template{_maps(fixed_tpl)}, ico-{level}, channels "
            f"{','.join(channels)}")
    return PairSet(torch.stack(moving), fixed, channels, names, template,
                   "LR-mirrored" if mirror else hemi, desc)


# ---------------------------------------------------------------------------------------------
# the user's subjects


@dataclass(frozen=True)
class SubjectFiles:
    """One hemisphere of one subject: ``sphere`` path and ``features`` name -> path."""

    subject: str
    hemi: str
    sphere: Path
    features: dict[str, Path]


def _freesurfer_files(subject_dir: Path, hemi: str, channels: Sequence[str]) -> SubjectFiles | None:
    surf = subject_dir / "surf"
    sphere = surf / f"{_HEMI_PREFIX[hemi]}.sphere"
    if not sphere.is_file():
        return None
    # a recon-all still running, killed or stopped on an error: its surfaces may lack steps or mix two
    # runs; the BIDS-App refuses such a subject (round ten), and training read it in silence
    unfinished = recon_all_unfinished(subject_dir, _HEMI_PREFIX[hemi])
    if unfinished:
        raise InputError(f"{unfinished}; or leave this subject out of --subjects-dir before training",
                         path=subject_dir, subject=subject_dir.name, hemi=hemi)
    return SubjectFiles(subject_dir.name, hemi, sphere,
                        {c: surf / f"{_HEMI_PREFIX[hemi]}.{c}" for c in channels})


def _gifti_files(subject_dir: Path, hemi: str, channels: Sequence[str]) -> SubjectFiles | None:
    # gzipped GIFTI (``.surf.gii.gz``) as every reader takes it, the plain file first when both exist
    suffix = f"_hemi-{hemi}_sphere.surf.gii"
    plain = {p for p in subject_dir.rglob(f"*{suffix}") if p.is_file()}
    spheres = sorted(plain | {p for p in subject_dir.rglob(f"*{suffix}.gz")
                              if p.is_file() and p.with_suffix("") not in plain})
    if not spheres:
        return None
    if len(spheres) > 1:
        raise InputError(f"{len(spheres)} files match *_hemi-{hemi}_sphere.surf.gii[.gz] "
                         f"({', '.join(p.name for p in spheres[:3])}): keep one per subject",
                         path=subject_dir)
    sphere = spheres[0]
    prefix = sphere.name[: sphere.name.index(suffix)]

    def feature(c: str) -> Path:
        path = sphere.parent / f"{prefix}_hemi-{hemi}_{c}.shape.gii"
        gz = path.with_name(path.name + ".gz")
        return gz if not path.is_file() and gz.is_file() else path

    return SubjectFiles(subject_dir.name, hemi, sphere, {c: feature(c) for c in channels})


def find_subjects(subjects_dir: str | Path, hemis: Sequence[str], channels: Sequence[str]) -> list[SubjectFiles]:
    """Find the subjects' spheres and feature files (FreeSurfer or GIFTI layout, see module doc).

    Every sub-folder of ``subjects_dir`` holding a sphere for one of ``hemis`` is a subject
    (FreeSurfer's ``fsaverage*`` template subjects are skipped). Raises :class:`InputError`
    (one line) if none is found or a subject lacks a feature file.
    """
    root = Path(subjects_dir)
    if not root.is_dir():
        raise InputError("subjects directory not found", path=root)
    if (root / "derivatives").is_dir():  # a BIDS dataset: "derivatives" was taken for one subject
        pipelines = sorted(p.name for p in (root / "derivatives").iterdir() if p.is_dir()) or ["freesurfer"]
        raise InputError("is a BIDS dataset (it holds derivatives/), not a folder of subjects: its "
                         "derivatives would be trained on as one subject named 'derivatives'; give the folder "
                         "holding one folder per subject, e.g. --subjects-dir "
                         + " or ".join(str(root / "derivatives" / p) for p in pipelines[:3]), path=root)
    found: list[SubjectFiles] = []
    for link in sorted(p for p in root.iterdir() if not p.name.startswith((".", "fsaverage"))):
        why = broken_link(link)
        if why is not None:  # a subject linked from a disk not mounted was left out of the training in silence
            import warnings

            warnings.warn(f"subject folder {link} is not read: it is {why}", UserWarning, stacklevel=2)
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "fsaverage"))):
        for hemi in hemis:
            files = _freesurfer_files(sub, hemi, channels) or _gifti_files(sub, hemi, channels)
            if files is None:
                continue
            for name, path in files.features.items():
                if not path.is_file():
                    raise InputError(f"feature {name!r} not found (expected {path.name} next to the sphere)",
                                     path=path.parent, subject=sub.name, hemi=hemi)
            found.append(files)
    if not found:
        raise InputError(f"no subject with a hemi-{'/'.join(hemis)} sphere found (expected "
                         "<sub>/surf/lh.sphere or <sub>/**/*_hemi-L_sphere.surf.gii[.gz])", path=root)
    return found


def brain_groups(subjects_dir: str | Path, names: Sequence[str]) -> dict[str, str]:
    """The brain (split group) of each subject folder name: FreeSurfer's longitudinal stream makes
    one brain several folders (the cross-sectional runs ``tp1``, ``tp2``; their base ``base``,
    whose ``scripts/base-tps`` lists them; and ``tp1.long.base``, ``tp2.long.base``), all grouped
    under the base's name so that no brain is on both sides of a train/validation split; every
    other folder is its own group."""
    root = Path(subjects_dir)
    group = {n: n for n in names}
    bases = dict.fromkeys([*names, *(n.split(".long.", 1)[1] for n in names if ".long." in n)])
    for name in bases:  # a base folder without a sphere of its own still names its timepoints
        try:
            with open(root / name / "scripts" / "base-tps", errors="replace") as fh:
                tps = fh.read(1 << 16).split()  # a list of folder names: the first 64 KiB are plenty
        except OSError:
            continue
        for tp in [name, *tps]:
            group[tp] = name
    for name in names:
        if ".long." in name:
            base = name.split(".long.", 1)[1]
            group[name] = group.get(base, base)
    return {n: group[n] for n in names}


def _prepare_subject(files: SubjectFiles, template: Template, channels: Sequence[str], level: int,
                     mirror: bool, spec: NormalisationSpec | None) -> torch.Tensor:
    from ..io.hemisphere import read_hemisphere
    from ..quality import assess
    from .prealign import prealign

    try:
        # checked as every other entry point checks them: an all-zero or constant map is refused
        # here, naming its file, subject and hemisphere (not later, by the rigid stage, naming none)
        native = read_hemisphere(files.sphere, files.features, compared=channels)
    except InputError as e:
        raise e.with_context(subject=files.subject, hemi=files.hemi) from None
    sphere, maps = native.sphere, native.features
    verts, faces = mirror_sphere(sphere.vertices, sphere.faces) if mirror else (sphere.vertices, sphere.faces)
    result = prealign(verts, faces, maps, template)
    # a hemisphere that is not the one its files say (swapped lh/rh files) or a map of the other
    # sign (HCP's sulc) would be trained on as a bad pair, silently: the gates every registration
    # applies, refused here naming the subject's sphere
    verdict = assess(result.metrics, ())
    if verdict.flagged:
        raise InputError(f"{verdict.line()}; fix or leave out this subject before training",
                         path=files.sphere, subject=files.subject, hemi=files.hemi)
    on_grid = np.stack([result.features_on_template[c][: n_vertices(level)] for c in channels], axis=1)
    return normalise_pairs_input(on_grid, channels, spec, what=f"{files.subject} hemi-{files.hemi}")


def subject_pairs(subjects_dir: str | Path, template: "str | TemplateRef" = "fsLR", hemi: str = "L",
                  channels: Sequence[str] = ("sulc",), *, level: int = 6, mirror_right: bool = False,
                  spec: NormalisationSpec | None = None) -> PairSet:
    """Pairs from a directory of the user's subjects (see the module docstring).

    ``hemi``: the model's hemisphere (its template). With ``mirror_right`` (``hemi`` must be
    "L"), both hemispheres of every subject are used, the right ones mirrored (``x -> -x``).
    Each sphere is pre-aligned rigidly to the template, its features sampled on ico-``level``.
    Pairs of one brain share a group (they stay on one side of a train/validation split): one
    subject's hemispheres, and a longitudinal run's folders (:func:`brain_groups`).
    """
    _check_level(level)
    channels = tuple(channels)
    if mirror_right and hemi != "L":
        raise ValueError("mirrored right hemispheres are registered to the left template: use hemi='L'")
    tpl, template = _template(template, hemi, channels)
    hemis = ("L", "R") if mirror_right else (hemi,)
    found = find_subjects(subjects_dir, hemis, channels)
    moving = [_prepare_subject(f, tpl, channels, level, mirror_right and f.hemi == "R", spec) for f in found]
    fixed = normalise_pairs_input(template_on_level(tpl, channels, level), channels, spec,
                                  what=f"template {template} hemi-{hemi}")
    names = tuple(f"{f.subject}_hemi-{f.hemi}" + ("-mirrored" if mirror_right and f.hemi == "R" else "")
                  for f in found)
    n_sub = len({f.subject for f in found})
    desc = (f"{len(found)} hemispheres of {n_sub} subjects from {Path(subjects_dir).name}/ "
            f"(hemi {'L + R mirrored' if mirror_right else hemi}, rigidly pre-aligned to {template}{_maps(tpl)}, "
            f"ico-{level}, channels {','.join(channels)})")
    hemisphere = "LR-mirrored" if mirror_right and any(f.hemi == "R" for f in found) else hemi
    brains = brain_groups(subjects_dir, sorted({f.subject for f in found}))
    return PairSet(torch.stack(moving), fixed, channels, names, template, hemisphere, desc,
                   tuple(brains[f.subject] for f in found))


def split_by_subject(pairs: PairSet, val_fraction: float, seed: int) -> tuple[PairSet, PairSet | None]:
    """Random train/validation split of ``pairs`` by group (subject), reproducible from ``seed``.

    ``round(n_groups * val_fraction)`` groups (at least 1 when ``val_fraction > 0`` and there are
    >= 2 groups) go to validation. Returns ``(train, val)``; ``val`` is None when empty.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    groups = sorted(set(pairs.groups))
    n_val = int(round(len(groups) * val_fraction))
    if val_fraction > 0 and len(groups) >= 2:
        n_val = min(max(n_val, 1), len(groups) - 1)
    if n_val == 0:
        return pairs, None
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(7,)))
    val_groups = {groups[i] for i in rng.choice(len(groups), n_val, replace=False)}
    val_idx = [i for i, g in enumerate(pairs.groups) if g in val_groups]
    train_idx = [i for i, g in enumerate(pairs.groups) if g not in val_groups]
    return pairs.subset(train_idx), pairs.subset(val_idx)


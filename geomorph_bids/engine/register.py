"""Inference API: register one hemisphere's native sphere to a template (no Nipype).

``register(moving_sphere, moving_features, template="fsLR", hemi="L", model=PATH)`` runs

1. **rigid pre-alignment** (:func:`geomorph_bids.engine.prealign.prealign`): a rotation ``R``
   moves the native sphere onto the template (``aligned = vertices @ R.T``) and the moving
   features are sampled at the template's ico-6 vertices;
2. **the GeoMorph warp** (unless ``rigid_only``): both images are normalised (the
   checkpoint's :class:`~geomorph_bids.model.normalise.NormalisationSpec`, or the default one
   without a network). With a network (``model``), the model predicts a
   **pull-back warp** on its data icosphere: for every template grid vertex ``x``, ``warp[x]``
   is the point of the (rotated) moving sphere whose features belong at ``x``. A model whose
   ``data_level`` is below 6 is fed the first ``n_vertices(data_level)`` vertices of the ico-6
   template grid (the icospheres are nested) and its warp, low-passed on the network's control
   grid, is upsampled to ico-6 the way the model itself upsamples control points
   (:func:`~geomorph_bids.engine.warp_geometry.lowpass_network_warp`).
   Then, unless ``optimise=False``, the warp's control points are **optimised for this pair**
   (:func:`geomorph_bids.model.optimise.optimise_warp`): from the rigid alignment when no
   network is given (coarse-to-fine ico-2 -> ico-4 control grids, 1 - CC + bending + fold
   barrier), or, after a network, a short refinement
   (:data:`~geomorph_bids.model.optimise.REFINEMENT`: one ico-4 stage whose bending term
   smooths the network's warp too);
3. **the output sphere**: every rotated moving vertex ``p`` is located in the warped template
   mesh (ico-6 vertices placed at ``warp``, ico-6 faces); the same barycentric weights applied
   to the ORIGINAL ico-6 vertices give ``p``'s position in template space (the inverse of the
   warp, piecewise linear on the mesh), projected to radius 100
   (:func:`~geomorph_bids.engine.warp_geometry.apply_warp`).

``model`` is a bundled network's name (``resources.bundled_models()``), a checkpoint file or a
built :class:`~geomorph_bids.model.geomorph.GeoMorph` (loaded and checked by
:mod:`geomorph_bids.engine.checkpoints`). A checkpoint with hemisphere ``"LR-mirrored"``
registers a right hemisphere by mirroring it (``x -> -x``) onto the LEFT template, and
mirroring the result back; that is right-template space for fsLR, whose left and right spheres
are mirror images. ``model=None`` runs the template's default registration
(:func:`geomorph_bids.engine.model_choice.default_registration`: today pair-wise optimisation
of the GeoMorph warp alone, ``metrics["method"] == "optimise"``); with a network the method is
``"geomorph"`` (``optimise=False``) or ``"geomorph+optimise"``; ``rigid_only`` gives ``"rigid"``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ContextManager

import numpy as np

from ..errors import InputError
from ..io.surfaces import Sphere, Surface
from ..io.template_ref import TemplateRef, resolve_template_ref
from ..io.template_sources import LowResolutionWarning, TemplateSearch, TemplateWarning
from ..io.templates import TEMPLATE_LEVEL, Template
from ..io.validate import check_registration_density, hemi_code
from ..quality import DEFAULT_THRESHOLDS, QualityThresholds, QualityVerdict, assess
from ..sphere.distortion import Reference, distortion, distortion_summary
from ..sphere.icosphere import grid_deviation, icosphere, n_vertices
from ..sphere.locate import unit, vertex_fans
from ..sphere.mesh import host_array, in_float_range, is_mesh_pair, masked_as_nan, nonfinite_rows
from ..sphere.resample import corner_weights
from ..sphere.rotation import MIRROR
from ..sphere.unfold import unfold_mesh
from .checkpoints import LoadedModel, load_model
from .device import resolve_device
from .feature_signs import check_signs
from .model_choice import default_registration, optimiser_weights
from .overlap import side_worker, split_rows
from .prealign import correlation, prealign
from .warp_geometry import (RADIUS, apply_warp, grid_vertices_near, lowpass_level, lowpass_network_warp,
                            network_smoothing, unfold_warp, warp_folded_triangles)

if TYPE_CHECKING:  # the optimiser (torch) is imported lazily
    from ..model.optimise import OptimiseConfig

__all__ = ["Registration", "RegistrationItem", "register", "register_many"]

SphereInput = tuple[np.ndarray, np.ndarray] | str | Path | Sphere
TemplateInput = str | Path | Template | TemplateRef
FeatureInput = Mapping[str, np.ndarray | str | Path]


# ---------------------------------------------------------------------------------------------
# result


@dataclass(eq=False)
class Registration:
    """Result of :func:`register`.

    Attributes
    ----------
    sphere : (V, 3) float64, the moving mesh's vertices moved into template space, mm on a
        radius-100 sphere; same vertex order and faces as the input.
    faces : (F, 3) int64, the input's faces, unchanged: the caller's arrays, or a file's own
        triangles whatever their winding (a mesh wound inward, as a hemisphere mirrored x -> -x
        without re-winding is, is registered re-wound and given back as the file has it); a
        :class:`~geomorph_bids.io.surfaces.Sphere`'s faces (wound outward by ``read_sphere``).
    rotation : (3, 3) float64 rigid pre-alignment; ``rotated = input_vertices @ rotation.T``.
    warp_ico6 : (40962, 3) float64 pull-back warp on the ico-6 template grid, radius 100
        (template vertex -> position on the rotated moving sphere), or None if rigid only.
        For a right hemisphere through an ``"LR-mirrored"`` model it lives in the mirrored
        (left-template) frame: template vertex x of the LEFT grid -> mirrored rotated sphere.
    metrics : summary numbers (see :func:`register`).
    template, hemi : the template name and hemisphere registered to.
    quality : the verdict of the quality gates (:func:`geomorph_bids.quality.assess` of
        ``metrics`` with the thresholds given to :func:`register`): ``quality.flagged`` and
        ``quality.reasons`` (e.g. the other hemisphere, a low correlation).
    fans : (V, D) int32, the faces around each vertex of ``faces``
        (:func:`~geomorph_bids.sphere.locate.vertex_fans`, the pre-alignment's table), for a
        :class:`~geomorph_bids.sphere.locate.SphereLocator` of :attr:`sphere` built without it
        again (``results.resample.resample_features``' ``fans``); None where the pre-alignment
        kept none.
    work_faces : (F, 3) int64, the faces the registration worked with where they differ from
        :attr:`faces` (a file wound inward, re-wound outward: the same triangles), else None;
        :meth:`resample` uses them, so its values do not depend on the winding given.
    """

    sphere: np.ndarray
    faces: np.ndarray
    rotation: np.ndarray
    warp_ico6: np.ndarray | None
    metrics: dict[str, Any] = field(default_factory=dict)
    template: str = ""
    hemi: str = ""
    quality: QualityVerdict = field(default_factory=QualityVerdict)
    fans: np.ndarray | None = field(default=None, repr=False)
    work_faces: np.ndarray | None = field(default=None, repr=False)

    def resample(self, values: np.ndarray, target: tuple[np.ndarray, np.ndarray] | str | Path = "ico6",
                 method: str = "adap_bary_area") -> np.ndarray:
        """Resample moving-space values onto a template-space mesh through :attr:`sphere`.

        Parameters
        ----------
        values : (V,) or (V, K) per-vertex values on the moving mesh (NaN = missing).
        target : a (vertices, faces) sphere in template space, or its file (a name holding a ``/`` or
            ending in ``.gii`` is read as one); ``"icoN"`` or ``"ico-N"`` (N = 0..7;
            ``"ico6"``: the template grid of 40962 vertices); or an output density of the template
            (``"32k"``, ``"59k"``, ``"164k"`` for fsLR; ``"10k"``, ``"41k"``, ``"164k"`` for
            fsaverage), whose sphere is found by
            :func:`geomorph_bids.io.templates.load_density_sphere` (ValueError if not installed).
        method : ``"adap_bary_area"`` (default, Workbench's ADAP_BARY_AREA) or ``"barycentric"``.

        Returns
        -------
        (V_target,) or (V_target, K) float64 (float32 for float32 input).
        """
        from ..sphere.resample import resample

        target = _as_path(target)
        if isinstance(target, str) and not Path(target).is_file() and (
                os.sep in target or "/" in target or target.lower().endswith((".gii", ".gii.gz"))):
            target = Path(target)  # a file's name, missing: read_sphere says so (it was "no output density")
        if isinstance(target, Path) or (isinstance(target, str) and Path(target).is_file()):
            from ..io.surfaces import read_sphere

            s = read_sphere(target)  # a template-space sphere file (e.g. tpl-fsLR_den-32k_sphere.surf.gii)
            target = (s.vertices, s.faces)
        elif isinstance(target, str):
            name = target.strip().lower()
            level = name.removeprefix("ico").removeprefix("-")
            if name.startswith("ico") and level.isdigit():  # ico6, ico-6
                target = icosphere(int(level))
            else:
                from ..io.templates import load_density_sphere

                v, f, _ = load_density_sphere(self.template, self.hemi, target)
                target = (v, f)
        faces = self.faces if self.work_faces is None else self.work_faces  # the same numbers whatever the winding given
        return resample(values, (self.sphere, faces), target, method=method)


# ---------------------------------------------------------------------------------------------
# inputs


def _as_path(value: Any) -> Any:
    """A path given as bytes or any other ``os.PathLike`` (``os.DirEntry``, ``PurePath``, pytest's
    ``py.path.local``) as a :class:`~pathlib.Path`, so that it is read as the file it names (it was
    taken for an array: "must be a path or a (vertices, faces) pair", "is not numbers"); a str, a
    Path and anything else (arrays, None) are returned unchanged."""
    if isinstance(value, (str, Path)) or not isinstance(value, (bytes, os.PathLike)):
        return value
    return Path(os.fsdecode(value))


def _with_paths(item: "RegistrationItem") -> "RegistrationItem":
    """``item`` with every path it holds (sphere, maps, reg_sphere, cortex mask) as a str or Path
    (:func:`_as_path`); the caller's item is not changed."""
    feats = item.moving_features
    if isinstance(feats, Mapping):
        converted = {name: _as_path(value) for name, value in feats.items()}
        if any(converted[name] is not value for name, value in feats.items()):
            feats = converted
    return dataclasses.replace(item, moving_sphere=_as_path(item.moving_sphere), moving_features=feats,
                               reg_sphere=_as_path(item.reg_sphere), cortex_mask=_as_path(item.cortex_mask))


def _label_conflicts(item: "RegistrationItem", wound_inward: bool = False) -> list[str]:
    """What the input files (paths only) say about their hemisphere, against ``item.hemi``, and
    about their map, against the feature name each is given as. ``wound_inward``: the sphere's file
    had every triangle wound inward (a hemisphere mirrored x -> -x), which its line then says."""
    from ..io.hemisphere_label import feature_conflicts, label_conflicts

    maps = item.moving_features if isinstance(item.moving_features, Mapping) else {}
    paths = [item.moving_sphere, item.reg_sphere, *maps.values()]
    inward = item.moving_sphere if wound_inward and isinstance(item.moving_sphere, (str, Path)) else None
    return (label_conflicts([p for p in paths if isinstance(p, (str, Path))], item.hemi, wound_inward=inward)
            + feature_conflicts(maps))


def _template_conflict(template: "TemplateInput", hemi: str, mirrored: bool) -> list[str]:
    """A loaded :class:`~geomorph_bids.io.templates.Template` of the other hemisphere than the one
    registered (a network that mirrors right hemispheres takes the left one): the identity gate names
    it, where the mirrored fit alone blamed the input files (``swapped lh/rh files?``)."""
    if not isinstance(template, Template) or mirrored:
        return []
    try:
        declared = hemi_code(str(template.hemi))
    except ValueError:  # a hemisphere that is neither: the grid and map checks decide
        return []
    if declared == hemi:
        return []
    return [f"template {template.name}: the Template object given is hemi-{declared}'s (Template.hemi), registered "
            f"as hemi-{hemi}: load this hemisphere's (load_template({template.name!r}, {hemi!r}))"]


def _read_inputs(moving_sphere: SphereInput, moving_features: FeatureInput, hemi: str, maps_checked: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray | None, np.ndarray | None]:
    """The sphere's (V, 3) vertices at radius 100 and (F, 3) faces the registration works with, its
    maps, the faces its result keeps where they differ: a file's own (``Sphere.given_faces``:
    wound inward, as a hemisphere mirrored x -> -x, they are re-wound to be checked), else None, and
    (V,) bool, True where a map holds no data (NaN, a sulc plateau: :func:`~geomorph_bids.io.validate.no_data`;
    0 in the maps returned), or None (also for ``maps_checked``: :attr:`RegistrationItem.maps_checked`)."""
    from ..io.surfaces import read_feature, read_sphere
    from ..io.validate import clip_outliers, no_data, validate_feature, validate_sphere

    given = None  # arrays keep the caller's faces, a Sphere its own (outward): only a file's may differ
    if isinstance(moving_sphere, Sphere) and np.isclose(np.linalg.norm(moving_sphere.vertices[0]), RADIUS):
        # read_sphere checked it already (at the radius register() works at: read_sphere's default); the
        # result's faces are a copy, as for arrays: editing them changed the caller's Sphere in silence
        vertices, faces = moving_sphere.vertices, np.array(moving_sphere.faces, dtype=np.int64)
    elif isinstance(moving_sphere, (str, Path)):
        s = read_sphere(moving_sphere)
        vertices, faces, given = s.vertices, s.faces, s.given_faces
    elif isinstance(moving_sphere, Mapping):  # iterating it would give its keys, read as a vertex array
        raise ValueError(f"moving_sphere must be a path or a (vertices, faces) pair, got a dict with keys "
                         f"{', '.join(map(repr, list(moving_sphere)[:4]))}: pass (d[<vertices>], d[<faces>])")
    else:  # arrays, or a Surface (a Sphere at another radius): checked here, naming its file
        surface = moving_sphere if isinstance(moving_sphere, Surface) else None
        moving_sphere = _gifti_arrays(moving_sphere, "moving_sphere", surface=True)
        try:
            v, f = moving_sphere if surface is None else (surface.vertices, surface.faces)
        except (TypeError, ValueError):
            raise ValueError("moving_sphere must be a path or a (vertices, faces) pair") from None
        v, f = host_array(v, "moving_sphere vertices"), host_array(f, "moving_sphere faces")
        # recentre/rescale to radius 100 and check it is a sphere (its triangles measured beside the
        # fit of the sphere, on a second CPU where there is one: the same bits); the caller's faces are kept
        with side_worker() as worker:
            vertices, _ = validate_sphere(v, f, None if surface is None else surface.path, worker=worker)
        faces = np.array(f, dtype=np.int64)  # a copy: the result's faces are not the caller's array
    check_registration_density(vertices, faces, moving_sphere if isinstance(moving_sphere, (str, Path))
                               else getattr(moving_sphere, "path", None))
    if not isinstance(moving_features, Mapping) or not moving_features:
        raise ValueError("moving_features must be a non-empty dict: name -> (V,) array or path")
    feats: dict[str, np.ndarray] = {}
    missing = np.zeros(len(vertices), dtype=bool)
    for name, val in moving_features.items():
        if isinstance(val, (str, Path)):  # hemi: a CIFTI file's columns
            arr = read_feature(val, n_vertices=len(vertices), hemi=hemi, allow_nan=True)
        else:
            arr = _feature_array(val, name)
        arr = np.asarray(arr, dtype=np.float64)
        if arr.ndim >= 2 and all(n == 1 for n in arr.shape[1:]):  # (V, 1); (V, 1, 1): an MGH volume's get_fdata()
            arr = arr.reshape(arr.shape[0])
        if arr.shape != (len(vertices),):
            row = arr.ndim == 2 and arr.shape == (1, len(vertices))  # a row vector (MATLAB's, or x[None])
            raise InputError(f"feature {name!r} has shape {arr.shape}, expected ({len(vertices)},) "
                             "(one value per sphere vertex)" + ("; one row: pass values.ravel()" if row else ""))
        path = val if isinstance(val, (str, Path)) else None
        # NaN (a medial wall or lesion exported so) and a sulc plateau (a filled lesion): no data, said once
        arr, nodata = (arr, None) if maps_checked else no_data(arr, faces, path, what=f"feature {name!r}",
                                                                plateau=str(name) == "sulc")
        if nodata is not None:
            missing |= nodata
        # Inf (counted), all zero or constant: refused here, naming the feature, as files are
        try:
            validate_feature(arr, path, what=f"feature {name!r}", registered=True)
        except InputError as exc:  # the caller's with_context names the file this map was read from
            raise InputError(exc.reason, path=exc.path, feature=str(name)) from None
        # registration reads a map's pattern, not its scale: one beyond float32's range (1e300, 1e-300), whose
        # squares overflowed or vanished (a wrong rotation, CC NaN, in silence), is scaled by a power of two
        arr = in_float_range(arr)
        feats[str(name)] = clip_outliers(arr, f"feature {name!r}" + (f" ({val})" if isinstance(val, (str, Path)) else ""))
    return vertices, faces, feats, given, (missing if missing.any() else None)


def _template_arrays(tpl: Template, channels: Sequence[str]) -> Template:
    """A caller's :class:`Template` with the maps the registration reads as (V,) float64 arrays,
    decided once here: torch tensors detached, a masked array's masked values NaN (no value, as a
    group map's medial wall is), a (V, 1) column flattened; another length, or complex values,
    refused naming the template and map (they failed deep in the pre-alignment, or a masked
    array's hidden values were read as data by one stage and not another). The caller's object is
    not changed."""
    n = len(tpl.vertices)
    features = dict(tpl.features)
    for name in channels:
        values = np.asarray(masked_as_nan(host_array(features[name], f"template {tpl.name} map {name!r}")))
        if values.dtype.kind not in "biuf":
            raise InputError(f"template {tpl.name} map {name!r} holds {values.dtype} values: a map must be "
                             "real numbers")
        values = values.astype(np.float64)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.shape != (n,):
            raise InputError(f"template {tpl.name} map {name!r} has shape {values.shape}, expected ({n},) "
                             "(one value per template vertex)")
        features[name] = values
    return dataclasses.replace(tpl, vertices=np.asarray(host_array(tpl.vertices, f"template {tpl.name} vertices"),
                                                        dtype=np.float64),
                               faces=np.asarray(host_array(tpl.faces, f"template {tpl.name} faces")), features=features)


def _gifti_arrays(value: Any, what: str, surface: bool = False) -> Any:
    """A nibabel GIFTI image (``nib.load("lh.sphere.surf.gii")``) or one of its data arrays as
    arrays: a surface's (vertices, faces) by their intents, a map's values (one data array); they
    were refused as "not a (vertices, faces) pair" or "not numbers (object)". Anything else as it is."""
    if hasattr(value, "darrays") and hasattr(value, "agg_data"):  # nibabel.gifti.GiftiImage
        if surface:
            pair = value.agg_data(("pointset", "triangle"))
            if any(a is None for a in pair):
                raise ValueError(f"{what} is a GIFTI image without a pointset and a triangle array: pass the "
                                 "sphere's surface file (e.g. lh.sphere.surf.gii)")
            return pair
        if len(value.darrays) != 1:
            raise InputError(f"{what} is a GIFTI image holding {len(value.darrays)} maps; give one "
                             "(image.darrays[i].data)")
        return value.darrays[0].data
    if hasattr(value, "data") and hasattr(value, "intent") and hasattr(value, "coordsys"):  # a GiftiDataArray
        return value.data
    return value


def _feature_array(values: Any, name: str) -> np.ndarray:
    """A feature given as an array-like, as numbers: a torch tensor is detached
    (:func:`~geomorph_bids.sphere.mesh.host_array`), a masked array's masked values and complex values are refused
    (numpy would drop the mask, or the imaginary part, in silence)."""
    values = host_array(_gifti_arrays(values, f"feature {name!r}"), f"feature {name!r}")
    if isinstance(values, np.ma.MaskedArray) and np.ma.count_masked(values):
        raise InputError(f"feature {name!r} is a masked array with {np.ma.count_masked(values)} masked value(s), "
                         "which would be read as data: fill them (0 on the medial wall: values.filled(0)) and "
                         "give the mask as cortex_mask= (True on the cortex)")
    arr = np.asarray(values)
    if arr.dtype.kind == "c":
        raise InputError(f"feature {name!r} holds complex numbers: a feature map must be real")
    try:
        return np.asarray(arr, dtype=np.float64)
    except TypeError:  # a dict, or other objects: the caller's type
        raise TypeError(f"feature {name!r} is not numbers ({type(values).__name__}): give one value per "
                        "vertex (an array) or a file") from None
    except ValueError:  # text that is no number
        raise InputError(f"feature {name!r} is not numbers ({arr.dtype}): give one value per vertex") from None


# ---------------------------------------------------------------------------------------------
# the API


def register(moving_sphere: SphereInput, moving_features: FeatureInput, template: TemplateInput = "fsLR",
             hemi: str = "L", model: str | Path | Any | None = None, device: str | Any = "auto", *,
             rigid_only: bool = False, reg_sphere: np.ndarray | str | Path | None = None,
             reg_sphere_space: str = "fsaverage", cortex_mask: np.ndarray | str | Path | None = None,
             optimise: "bool | OptimiseConfig" = True, template_dir: str | Path | None = None,
             quality: QualityThresholds = DEFAULT_THRESHOLDS,
             device_slot: Callable[[], ContextManager] | None = None) -> Registration:
    """Register a native sphere to a template: rigid pre-alignment, then GeoMorph.

    Parameters
    ----------
    moving_sphere : (vertices (V, 3), faces (F, 3)), a path (GIFTI ``.surf.gii`` or
        FreeSurfer ``?h.sphere``), a nibabel GIFTI image, or a :class:`~geomorph_bids.io.surfaces.Sphere`
        from ``read_sphere`` (not checked again); any radius and density (fsaverage 164k, FreeSurfer
        ~130k, fsLR 32k, ...); rescaled to radius 100.
    moving_features : name -> (V,) array or path (e.g. ``{"sulc": "lh.sulc"}``), in the
        template's sign convention (FreeSurfer's for sulc). NaN over a region (a medial wall or lesion
        exported as NaN), and a sulc's one value repeated over a region (a filled lesion), are no data
        (:func:`~geomorph_bids.io.validate.no_data`: one warning; left out as ``cortex_mask`` leaves the wall).
    template : ``"fsLR"`` or ``"fsaverage"``: its maps are looked up, per hemisphere, in
        ``template_dir``, ``$TEMPLATEFLOW_HOME``, ``$SUBJECTS_DIR/fsaverage`` and
        ``$FREESURFER_HOME/subjects/fsaverage``, then the bundled maps
        (:mod:`geomorph_bids.io.template_sources`; a source that lacks a map the registration
        needs is passed over with a :class:`~geomorph_bids.io.template_sources.TemplateWarning`;
        low-resolution maps used, e.g. the bundled fsaverage5-derived fsaverage, are said once per call
        with a :class:`~geomorph_bids.io.template_sources.LowResolutionWarning`);
        a FreeSurfer ``fsaverage`` or TemplateFlow ``tpl-fsaverage`` folder; a custom template
        folder; a resolved :class:`~geomorph_bids.io.template_ref.TemplateRef`; or a loaded
        :class:`~geomorph_bids.io.templates.Template` (used as it is).
    hemi : ``"L"`` or ``"R"`` (``"lh"``/``"rh"``, ``"left"``/``"right"`` accepted; results say L or R).
    model : a bundled network's name, a checkpoint path (or the folder holding its ``model.pt``, as
        ``geomorph-train --out`` writes it) or a built ``GeoMorph`` (with
        ``.config``), or None: the template's default registration
        (:func:`~geomorph_bids.engine.model_choice.default_registration`; today the warp comes
        from pair-wise optimisation alone).
    device : ``"auto"`` or None (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, a
        ``torch.device``...
    rigid_only : stop after the rigid pre-alignment.
    optimise : optimise the warp's control points for this pair after the network (or from
        the rigid alignment without one): True (without a network the default schedule,
        :class:`~geomorph_bids.model.optimise.OptimiseConfig`, its features weighted by
        :func:`~geomorph_bids.engine.model_choice.optimiser_weights`: sulc 0.7, curv 0.3;
        after a network the short
        :data:`~geomorph_bids.model.optimise.REFINEMENT`), False (network only; needs a
        ``model``) or an ``OptimiseConfig`` (after a network, e.g.
        :data:`~geomorph_bids.model.optimise.FROM_NETWORK`: the full schedule from the network's
        low-passed warp: with ``sulc-fsaverage`` closer than the optimiser on sulc; docs/models.md).
    reg_sphere : optional registered sphere ((V, 3) array, (vertices, faces), a
        :class:`~geomorph_bids.io.surfaces.Sphere` or a path; same mesh): the rotation comes
        from vertex correspondence with it instead of the features.
    reg_sphere_space : ``"fsaverage"`` (default: FreeSurfer's ``?h.sphere.reg``, the template's
        fixed fsaverage -> template rotation follows) or ``"template"`` (``reg_sphere`` is already
        in template space, e.g. sMRIPrep's ``space-fsLR_desc-reg`` sphere for fsLR).
    cortex_mask : optional (V,) bool or a mask file (sMRIPrep's ``desc-cortex_mask.label.gii``,
        HCP's ``roi.native.shape.gii``, FreeSurfer's ``cortex.label``; :func:`~geomorph_bids.io.surfaces.read_mask`):
        True on the cortex. The medial wall is then left out of the similarity of the rigid
        stage and of the warp optimisation (the template's own zeros stay masked too).
    template_dir : a folder of the template's maps, looked in first (a FreeSurfer subject
        folder, a TemplateFlow folder), or ``"bundled"``: the bundled maps only, whatever is
        installed (ignored when ``template`` is a TemplateRef or Template).
    quality : the thresholds of the quality gates (:class:`~geomorph_bids.quality.QualityThresholds`);
        the verdict is ``Registration.quality``.
    device_slot : a context-manager factory held around the device work only (the network and
        the optimisation; e.g. :func:`geomorph_bids.engine.gpu_slot.gpu_lock` of the device),
        so other processes' CPU stages overlap with it; None: nothing held.

    Returns
    -------
    Registration. ``metrics`` holds, per feature ``f`` used by the network (or shared with the
    template when rigid only): ``cc_f_before`` (no alignment; at the grid's 10,242 ico-5
    vertices), ``cc_f_rigid``, ``cc_f_after`` (final) Pearson correlations with the template on
    its ico-6 grid (template zeros masked);
    the :func:`~geomorph_bids.sphere.distortion.distortion_summary` of the output sphere against
    the input sphere (both radius 100: ``areal_mean_abs``, ``R_mean``, ``n_folded``, ...);
    ``warp_folded_triangles`` (ico-6 triangles the warp flips); when the output mesh had folded
    triangles all the same (a finer mesh than the warp's), ``output_folded_before_unfold`` and
    ``output_unfold_iterations`` (:func:`~geomorph_bids.sphere.unfold.unfold_mesh` removed them);
    with a network, ``data_level``, ``network_smoothing_iterations`` (its first pass's low-pass),
    ``network_passes`` (the low-pass of each forward pass, :func:`~geomorph_bids.engine.checkpoints.network_passes`),
    ``network_unfold_iterations`` and ``network_batch`` (the hemispheres passed through it together); with
    the optimiser, ``optimise`` (its schedule, a dict), ``optimise_batch`` (the hemispheres optimised
    together) and, where it unfolded its warp, ``optimise_unfold_iterations``; ``template`` and ``hemi`` as registered; ``method`` (``rigid``,
    ``optimise``, ``geomorph`` or ``geomorph+optimise``); ``mirrored`` (a right hemisphere through an
    LR-mirrored network); ``cortex_mask`` (whether one was given); ``rotation_deg``, ``rotation_method``
    (``correspondence``: from ``reg_sphere``; else ``features``) and ``reg_sphere_set_aside`` (why a given
    one was not used);
    ``identity_cc_own`` / ``identity_cc_mirrored`` (coarse rigid fit to the template and to its
    mirror image: the hemisphere-identity check; when it fails or the own fit is below
    :data:`~geomorph_bids.engine.prealign.SIGN_CHECK_BELOW`, ``identity_cc_negated``: the fit of
    the sign-flipped features) and, for paths, ``label_conflicts`` (files whose
    metadata or name declare the other hemisphere); ``seconds_*`` per stage and ``seconds_total``;
    ``device``; ``model_name``, ``model_version``, ``model_weights_sha256`` and ``model_path`` (None
    without a network);
    where the template's maps came from: ``template_source`` (``folder``, ``templateflow``,
    ``freesurfer``, ``bundled`` or ``custom``), ``template_source_path``, ``template_vertices``
    (of the maps read: 40,962 for the bundled ico-6 maps, which also record
    ``template_built_from_vertices``, the count of the maps they were built from),
    ``template_sha256``, ``template_files``.
    """
    items = [RegistrationItem(moving_sphere, moving_features, hemi, reg_sphere, reg_sphere_space, cortex_mask)]
    return register_many(items, template, model, device, rigid_only=rigid_only, optimise=optimise,
                         on_error="raise", template_dir=template_dir, quality=quality,
                         device_slot=device_slot)[0]


@dataclass
class RegistrationItem:
    """One hemisphere to register with :func:`register_many` (fields as in :func:`register`)."""

    moving_sphere: SphereInput
    moving_features: FeatureInput
    hemi: str = "L"
    reg_sphere: np.ndarray | str | Path | None = None
    reg_sphere_space: str = "fsaverage"
    cortex_mask: np.ndarray | str | Path | None = None
    #: True: the maps are :func:`~geomorph_bids.io.hemisphere.read_hemisphere`'s (or its copies), which ran
    #: :func:`~geomorph_bids.io.validate.no_data` already (NaN and a sulc plateau 0, left out of its ``cortex``,
    #: given as ``cortex_mask``): not run again (its 80 ms a 163,842-vertex sulc, and nothing it could find)
    maps_checked: bool = False


@dataclass(eq=False)
class _Job:
    """A hemisphere after reading and rigid pre-alignment, waiting for its warp."""

    vertices: np.ndarray
    faces: np.ndarray
    work_f: np.ndarray
    feats: dict[str, np.ndarray]
    channels: tuple[str, ...]
    loaded: "LoadedModel | None"
    mirrored: bool
    tpl: Template
    pre: Any
    hemi: str
    metrics: dict[str, Any]
    seconds: dict[str, float]
    t0: float
    warp: np.ndarray | None = None     # (40962, 3) unit sphere, once known
    given_faces: np.ndarray | None = None  # the result's faces where they are not ``faces``: a file's own winding


def register_many(items: Sequence[RegistrationItem], template: TemplateInput = "fsLR",
                  model: str | Path | Any | None = None, device: str | Any = "auto", *,
                  rigid_only: bool = False, optimise: "bool | OptimiseConfig" = True,
                  batch_size: int = 8, on_error: str = "raise",
                  template_dir: str | Path | None = None,
                  quality: QualityThresholds = DEFAULT_THRESHOLDS,
                  device_slot: Callable[[], ContextManager] | None = None) -> list["Registration | Exception"]:
    """Register many hemispheres with one model load and batched optimisation.

    Same result per hemisphere as :func:`register` (on the CPU the same bytes, whatever the batch
    size, the other hemispheres in it and their order; docs/registration.md, "Reproducibility"),
    for cohorts: the model is loaded once per hemisphere side, the templates and
    index tables once, and the pair-wise optimisation runs ``batch_size`` pairs at a time in
    one vectorised descent (:func:`geomorph_bids.model.optimise.optimise_warp` with a batch).

    Parameters
    ----------
    items : the hemispheres (:class:`RegistrationItem`).
    template, model, device, rigid_only, optimise, template_dir, quality : as in :func:`register`;
        the template is resolved once for all items.
    batch_size : pairs per optimisation batch (>= 1; memory grows linearly, ~60 MB per pair).
    on_error : ``"raise"`` (the first bad input raises) or ``"return"`` (its slot in the
        result holds the exception; the others are registered).
    device_slot : as in :func:`register`: held around each batch's network and optimisation
        (reading, pre-alignment, inverse warp and metrics run outside it).

    Returns
    -------
    One :class:`Registration` (or exception) per item, in order.
    """
    optimise = _optimise_argument(optimise)
    rigid_only = _flag_argument("rigid_only", rigid_only)
    items = _items_argument(items)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    if not isinstance(quality, QualityThresholds):  # a dict would fail deep in the gates (AttributeError)
        raise TypeError(f"quality must be a QualityThresholds (geomorph_bids.quality), e.g. "
                        f"QualityThresholds(min_cc_after=0.8), got {type(quality).__name__}")
    warn = not isinstance(template, (Template, TemplateRef))  # resolved here: say what was passed over
    template = _template_ref(template, template_dir, _hemis_of(items))
    if model is None and not rigid_only:  # the default is decided in one place, per template
        default = default_registration(template.name if isinstance(template, Template) else template.label)
        model = default.register_arguments()["model"]
        optimise = default.optimise if optimise is True and model is not None else optimise
    if on_error not in ("raise", "return"):
        raise ValueError(f"on_error must be 'raise' or 'return', got {on_error!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if model is None and optimise is False and not rigid_only:
        raise ValueError("optimise=False needs a model (a network); pass model=PATH, "
                         "optimise=True or rigid_only=True")
    dev = resolve_device(device) if not rigid_only else None
    results: list[Registration | Exception | None] = [None] * len(items)
    models: dict[tuple[str, tuple[str, ...]], LoadedModel] = {}
    templates: dict[tuple[str, tuple[str, ...]], Template] = {}  # one load per side and channel set
    # A failed item's exception in ``results`` keeps this frame alive as long as the caller keeps it (the
    # frames of its traceback link back here, Python's f_back): whatever this frame's variables hold when
    # it ends stayed alive with it (the templates, networks, prepared hemispheres, every Registration of
    # the call). Each batch's work is let go of when it is done, the rest below; the results handed over.
    jobs: dict[int, _Job] = {}  # only a hemisphere whose steps so far all worked goes on
    with_net: dict[int, _Job] = {}

    def failed(idx: int, exc: Exception) -> None:
        if on_error == "raise":
            raise exc
        results[idx] = _unpinned(exc)
        jobs.pop(idx, None)
        with_net.pop(idx, None)

    try:
        with _callers_module_kept(model):  # a caller's own module is run in eval mode, then given back as it came
            for start in range(0, len(items), batch_size):
                for idx in range(start, min(start + batch_size, len(items))):
                    try:
                        jobs[idx] = _prepare(items[idx], template, model, dev, rigid_only, models, templates, warn)
                    except (InputError, ValueError, OSError, TypeError) as exc:  # TypeError: e.g. a map that is a dict
                        failed(idx, exc)
                with device_slot() if device_slot is not None and jobs else contextlib.nullcontext():
                    with_net.update((idx, job) for idx, job in jobs.items() if job.loaded is not None)
                    # a schedule started from the network's warp may keep only its large-scale part
                    lowpass = getattr(optimise, "start_lowpass", 1)  # an OptimiseConfig (bools have none)
                    try:
                        _network(list(with_net.values()), dev, lowpass)
                    except (InputError, ValueError, OSError):
                        for idx in list(with_net):  # one at a time: the failing item(s) alone fail
                            try:
                                _network([with_net[idx]], dev, lowpass)
                            except (InputError, ValueError, OSError) as exc:
                                failed(idx, exc)
                    with_net.clear()
                    if not rigid_only and optimise is not False and jobs:
                        _optimise_jobs(list(jobs.values()), optimise, dev)
                for idx in list(jobs):
                    results[idx] = _finish(jobs.pop(idx), optimise if not rigid_only else False, dev, quality)
        return _handed_over(results)  # type: ignore[return-value]
    finally:
        for made in (jobs, with_net, models, templates, items):
            made.clear()


def _handed_over(results: list) -> list:
    """A copy of ``results`` for the caller, ``results`` itself emptied (see :func:`register_many`)."""
    out = list(results)
    results.clear()
    return out


def _unpinned(exc: Exception) -> Exception:
    """``exc`` as a failed item's result, the frames of its traceback below :func:`register_many` (and those
    of the exceptions it was raised from) cleared of their variables (their ``models`` and ``templates``, the
    item's arrays): files, lines and functions are kept, so the traceback's text is the same."""
    seen: set[int] = set()
    each: BaseException | None = exc
    while each is not None and id(each) not in seen:
        seen.add(id(each))
        traceback.clear_frames(each.__traceback__)  # register_many's own frame, still running, is left
        each = each.__cause__ or each.__context__
    return exc


@contextlib.contextmanager
def _callers_module_kept(model: Any):
    """Give a caller's own network module (``model=`` a built ``GeoMorph``) back as it came,
    whatever happens inside: the training mode of each of its submodules (the registration runs it
    in eval mode, deterministic, which used to stay) and its device (``device="cuda"`` moved a CPU
    module there and left it; a module whose tensors sit on several devices is not moved back).
    Paths and names load a module of our own."""
    modules = getattr(model, "modules", None)
    if not (callable(modules) and hasattr(model, "training")):
        yield
        return
    modes = [(m, m.training) for m in modules()]
    devices = {t.device for t in (*model.parameters(), *model.buffers())}
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
        if len(devices) == 1 and {t.device for t in (*model.parameters(), *model.buffers())} != devices:
            model.to(*devices)


def _flag_argument(name: str, value: Any) -> bool:
    """A True/False argument (numpy bools too); 0, "no" or None are refused, never read by truth."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")


def _items_argument(items: Any) -> list["RegistrationItem"]:
    """``items`` as a list of :class:`RegistrationItem` (any iterable of them), else TypeError."""
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
        raise TypeError(f"items must be a sequence of RegistrationItem, got {type(items).__name__}")
    items = list(items)
    for i, item in enumerate(items):
        if not isinstance(item, RegistrationItem):
            raise TypeError(f"items[{i}] is a {type(item).__name__}, not a RegistrationItem: pass "
                            "RegistrationItem(moving_sphere, moving_features, hemi) (geomorph_bids.RegistrationItem)")
    return [_with_paths(item) for item in items]


def _hemis_of(items: Sequence["RegistrationItem"]) -> set[str]:
    """The hemispheres the template is needed for (an item whose ``hemi`` is not one is left to
    fail on its own, in :func:`_prepare`)."""
    out = set()
    for item in items:
        try:
            out.add(hemi_code(item.hemi))
        except ValueError:
            continue
    return out


def _optimise_argument(optimise: Any) -> "bool | OptimiseConfig":
    """``optimise`` as the engine tests it (``is True`` / ``is False``): a numpy bool becomes a
    bool; anything else but an OptimiseConfig (0, "no", None) is refused, never read as True."""
    if isinstance(optimise, (bool, np.bool_)):
        return bool(optimise)
    from ..model.optimise import OptimiseConfig

    if isinstance(optimise, OptimiseConfig):
        return optimise
    raise TypeError(f"optimise must be True, False or an OptimiseConfig (geomorph_bids.model.optimise), "
                    f"got {optimise!r} ({type(optimise).__name__})")


def _template_ref(template: TemplateInput, template_dir: str | Path | None,
                  hemis: set[str]) -> "Template | TemplateRef":
    """The Python API's boundary: a template name or folder -> a :class:`TemplateRef` (where
    to look read from the environment here, once; fallback warnings as :class:`TemplateWarning`)."""
    if isinstance(template, (Template, TemplateRef)):
        return template
    template, template_dir = _as_path(template), _as_path(template_dir)
    if not isinstance(template, (str, Path)):
        raise TypeError(f"template must be 'fsLR', 'fsaverage', a template folder or a Template, "
                        f"got {template!r}")
    import warnings

    ref = resolve_template_ref(template, (), TemplateSearch.from_environment(template_dir))
    sides = sorted(h for h in hemis if h in ("L", "R"))
    for line in ref.warnings(("sulc",), sides):
        warnings.warn(line, TemplateWarning, stacklevel=4)
    # the command line says this after each registration; a Python caller would not know otherwise
    # (unless it asked for the bundled maps: template_dir="bundled")
    notes = () if getattr(ref, "bundled_asked", False) else (ref.low_resolution_note(("sulc",), h) for h in sides)
    for note in dict.fromkeys(n for n in notes if n):
        warnings.warn(_python_advice(note), LowResolutionWarning, stacklevel=4)
    return ref


def _python_advice(note: str) -> str:
    """A note written for the command line with its options as a Python caller gives them
    (``--template-dir bundled`` -> ``template_dir="bundled"``, ``--template-dir $X/y`` ->
    ``template_dir=os.path.expandvars("$X/y")``; ``--fs-subjects-dir``, which ``register`` does not take,
    left out: ``SUBJECTS_DIR`` stays)."""
    import re

    note = re.sub(r"--template-dir bundled", 'template_dir="bundled"', note)
    note = re.sub(r"--template-dir (\$\S+)", r'template_dir=os.path.expandvars("\1")', note)
    return note.replace("--fs-subjects-dir / ", "").replace("--template-dir", "template_dir")


def _prepare(item: RegistrationItem, template: "Template | TemplateRef", model: Any, dev: Any, rigid_only: bool,
             models: dict, templates: dict, warn: bool = False) -> _Job:
    """Read and check one item, load (or reuse) the model, rigid pre-alignment."""
    t0 = time.perf_counter()
    seconds: dict[str, float] = {}
    hemi = hemi_code(item.hemi)  # L/R; lh/rh, left/right and CortexLeft/CortexRight are accepted too
    vertices, faces, feats, given_faces, missing = _read_inputs(item.moving_sphere, item.moving_features, hemi,
                                                                item.maps_checked)
    reg_sphere = _gifti_arrays(item.reg_sphere, "reg_sphere", surface=True)
    reg_path = reg_sphere if isinstance(reg_sphere, (str, Path)) else None
    if reg_path is not None:
        from ..io.surfaces import read_sphere

        reg_sphere = read_sphere(reg_path).vertices
    elif isinstance(reg_sphere, Sphere):
        reg_sphere = reg_sphere.vertices
    elif is_mesh_pair(reg_sphere):
        reg_sphere = reg_sphere[0]  # (vertices, faces), as the sphere itself may be given
    reg_sphere = host_array(reg_sphere, "reg_sphere")
    if reg_sphere is not None and np.shape(reg_sphere) != vertices.shape:
        raise InputError(f"reg_sphere has shape {np.shape(reg_sphere)} but the sphere has {len(vertices)} "
                         "vertices: it must be the same subject's registered sphere (the lh.sphere.reg of this "
                         "lh.sphere: same mesh, (V, 3))", path=reg_path)
    if reg_sphere is not None:  # an array (files are checked when read): NaN made the SVD fail ("did not converge")
        bad = nonfinite_rows(np.asarray(reg_sphere, dtype=np.float64))
        if bad.any():
            raise InputError(f"reg_sphere: {int(bad.sum())} of {len(bad)} vertices have non-finite coordinates (NaN or "
                             f"Inf, first at vertex {int(np.argmax(bad))}): the registered sphere is corrupted; take "
                             "it again from the original (e.g. FreeSurfer's lh.sphere.reg)", path=reg_path)
        if reg_path is None:  # an array, checked and put in standard pose as a file is when read (its rotation is
            # read from directions about the origin: one 20 mm off gave a rotation 0.21 deg off, in silence)
            from ..io.validate import validate_sphere

            reg_sphere, _ = validate_sphere(np.asarray(reg_sphere, dtype=np.float64), faces, "reg_sphere")
    cortex = host_array(_gifti_arrays(item.cortex_mask, "cortex_mask"), "cortex_mask")
    if cortex is not None and isinstance(cortex, (str, Path)):
        from ..io.surfaces import read_mask

        cortex = read_mask(cortex, len(vertices), hemi)
    if cortex is not None:
        from ..io.surfaces import MIN_CORTEX_FRACTION

        if isinstance(cortex, np.ma.MaskedArray):  # masked entries are not cortex (their hidden values were read)
            cortex = np.ma.filled(cortex.astype(bool), False)
        raw = np.asarray(cortex)
        fractional = raw.dtype.kind == "f" and not np.isin(raw, (0, 1)).all()  # NaN included
        # whole numbers other than 0/1: vertex indices (nibabel's read_label) or a parcellation, once
        # read as "every non-zero is cortex"
        counted = raw.dtype.kind in "iu" and not np.isin(raw, (0, 1)).all()
        indices = ("; vertex indices (e.g. nibabel.freesurfer.read_label's)? give one True/False per vertex: "
                   "mask = np.zeros(V, bool); mask[indices] = True")
        if raw.dtype.kind not in "biuf" or fractional or counted:
            raise InputError(f"cortex mask must be True/False (or 0/1) per vertex, got {raw.dtype} values"
                             + (" other than 0 and 1 (a probability map? threshold it)" if fractional else "")
                             + (" other than 0 and 1 (a label map?" + indices[1:] + ")" if counted else ""))
        cortex = raw.astype(bool).reshape(-1)
        if cortex.shape != (len(vertices),):
            raise InputError(f"cortex mask has {cortex.size} values but the sphere has {len(vertices)} vertices"
                             + (indices if raw.dtype.kind in "iu" else ""))
        if cortex.mean() < MIN_CORTEX_FRACTION:  # as read_mask refuses a file
            raise InputError(f"cortex mask is True on {100 * cortex.mean():.1f}% of the vertices (at least "
                             f"{100 * MIN_CORTEX_FRACTION:.0f}% expected): not a cortex mask, or inverted "
                             "(True on the cortex, False on the medial wall)")
    if missing is not None:  # where a map holds no data: left out as the medial wall is (io.validate.no_data)
        cortex = ~missing if cortex is None else cortex & ~missing
    template_name = template.name if isinstance(template, Template) else template.label
    seconds["seconds_read"] = time.perf_counter() - t0

    # model first: its channels decide what the template must provide
    t = time.perf_counter()
    loaded = None
    if not rigid_only and model is not None:
        key = (hemi, tuple(sorted(feats)))
        if key not in models:  # one load per side and channel set, not per subject
            models[key] = load_model(model, list(feats), template_name, hemi, dev)
        loaded = models[key]
        channels = loaded.channels
    else:  # without a network: the moving features the template offers
        have = list(template.features) if isinstance(template, Template) else template.features(hemi)
        channels = tuple(n for n in feats if n in have) or tuple(feats)
    unused = [n for n in feats if n not in channels]
    if unused:  # a map given and left out in silence would look used (e.g. thickness beside sulc)
        import warnings

        from ..io.validate import FeatureWarning

        why = (f"the network reads {', '.join(channels)}" if loaded is not None else
               f"template {template_name} has no map of {'them' if len(unused) > 1 else 'it'}; it registers "
               f"{', '.join(channels)}")
        warnings.warn(f"feature(s) {', '.join(map(repr, unused))} not used by the registration: {why}",
                      FeatureWarning, stacklevel=4)
    seconds["seconds_model_load"] = time.perf_counter() - t

    mirrored = bool(loaded is not None and loaded.mirrored_hemis and hemi == "R")
    tpl_base = template.base if isinstance(template, TemplateRef) else template.name
    if mirrored and tpl_base in ("fsLR", "fsaverage"):  # only where the right hemisphere mirrors the left (fsLR);
        # a Template object of another name (a population template being built) is taken as it is
        from .model_choice import refuse_mirrored_right

        refuse_mirrored_right(str(loaded.info.get("model_name", "the network")), True, tpl_base, ("R",))
    work_hemi = "L" if mirrored else hemi
    if isinstance(template, Template):
        tpl = template
        missing = [c for c in channels if c not in tpl.features]
        if missing:
            raise ValueError(f"template {tpl.name} has no feature {', '.join(missing)}; "
                             f"it has: {', '.join(tpl.features) or 'none'}")
        if len(tpl.vertices) != n_vertices(TEMPLATE_LEVEL):
            raise ValueError(f"template {tpl.name} must be on the ico-{TEMPLATE_LEVEL} grid "
                             f"({n_vertices(TEMPLATE_LEVEL)} vertices), got {len(tpl.vertices)}")
        tpl = _template_arrays(tpl, channels)
        _check_grid(tpl)
    else:
        key = (work_hemi, tuple(channels))
        if key not in templates:
            if warn and loaded is not None:  # a network's channels may need a map the preferred source lacks
                _warn_fallback(template, channels, work_hemi)
            templates[key] = template.load(work_hemi, channels)
        tpl = templates[key]
    # a curv (or sulc) of the other sign would pull against the other channel: refused, its file named
    try:
        check_signs(feats, tpl.features, channels)
    except InputError as exc:
        files = {n: v for n, v in item.moving_features.items() if isinstance(v, (str, Path))}
        raise exc.with_context(feature_files=files) from None
    work_v = vertices @ MIRROR if mirrored else vertices
    work_f = np.ascontiguousarray(faces[:, ::-1]) if mirrored else faces
    reg_v = None if reg_sphere is None else np.asarray(reg_sphere, dtype=np.float64)
    reg_space = item.reg_sphere_space
    if reg_v is not None and mirrored:
        if reg_space == "fsaverage":
            # fsaverage's right space does not mirror onto its left one (fsLR's spheres do): carried
            # into the right template's space by the right hemisphere's own rotation, then mirrored
            reg_v = reg_v @ _from_fsaverage(tpl_base, tpl, hemi).T
            reg_space = "template"
        reg_v = reg_v @ MIRROR

    # 1. rigid
    t = time.perf_counter()
    pre = prealign(work_v, work_f, {c: feats[c] for c in channels}, tpl, reg_sphere=reg_v,
                   reg_space=reg_space, cortex_mask=cortex)
    seconds["seconds_prealign"] = time.perf_counter() - t
    metrics: dict[str, Any] = {"template": tpl.name, "hemi": hemi, "rotation_deg": pre.metrics["rotation_deg"],
                               "rotation_method": pre.metrics["rotation_method"],
                               "cortex_mask": cortex is not None,
                               "identity_cc_own": pre.metrics.get("identity_cc_own"),
                               "identity_cc_mirrored": pre.metrics.get("identity_cc_mirrored"),
                               "label_conflicts": _label_conflicts(item, given_faces is not None and np.array_equal(
                                   given_faces[:, [0, 2, 1]], faces)) + _template_conflict(template, hemi, mirrored)}
    if "identity_cc_negated" in pre.metrics:  # measured only when the identity check fails or the fit is poor
        metrics["identity_cc_negated"] = pre.metrics["identity_cc_negated"]
    if "reg_sphere_set_aside" in pre.metrics:  # a sphere.reg that is not this sphere's: said, not trusted
        import warnings

        from ..io.validate import SphereWarning

        metrics["reg_sphere_set_aside"] = pre.metrics["reg_sphere_set_aside"]
        warnings.warn(f"hemi-{hemi}{' ' + str(reg_path) if reg_path is not None else ''}: "
                      f"{metrics['reg_sphere_set_aside']}", SphereWarning, stacklevel=4)
    for c in channels:
        metrics[f"cc_{c}_before"] = pre.metrics.get(f"cc_{c}_before")
        metrics[f"cc_{c}_rigid"] = pre.metrics.get(f"cc_{c}_after")
    return _Job(vertices=vertices, faces=faces, work_f=work_f, feats=feats, channels=channels, loaded=loaded,
                mirrored=mirrored, tpl=tpl, pre=pre, hemi=hemi, metrics=metrics, seconds=seconds, t0=t0,
                given_faces=given_faces)


def _from_fsaverage(base: str, tpl: Template, hemi: str) -> np.ndarray:
    """(3, 3) rotation from fsaverage's ``hemi`` space (FreeSurfer's ``sphere.reg``) into the
    template's ``hemi`` space: the standard template's (``base``: a custom template's base, or the
    name of a :class:`Template` given as an object) for that hemisphere; for a :class:`Template`
    of another name (one hemisphere's), its own rotation mirrored, the only one there is (``tpl``:
    the template the job registers to)."""
    from ..io.templates import available_templates, load_template

    if base in available_templates():
        return load_template(base, hemi, ()).from_fsaverage
    return MIRROR @ tpl.from_fsaverage @ MIRROR


def _check_grid(tpl: Template) -> None:
    """Refuse a caller's :class:`Template` whose vertices are not the ico-6 grid in its order
    (vertex i in the direction of ``icosphere(6)`` vertex i, to 1e-3 on the unit sphere: FreeSurfer's
    fsaverage6 sphere passes, at any radius): the warp is a field on that grid and the template's
    maps are read by grid index, so a grid in another order or orientation registered to its maps
    scrambled, silently (cc_after ~0 for a permuted one)."""
    off = np.linalg.norm(grid_deviation(tpl.vertices, TEMPLATE_LEVEL), axis=1)
    if not off.max() <= 1e-3:  # NaN included
        first = int(np.argmax(~(off <= 1e-3)))
        raise ValueError(f"template {tpl.name}'s vertices are not the ico-{TEMPLATE_LEVEL} grid in its order "
                         f"({int(np.count_nonzero(~(off <= 1e-3)))} of {len(off)} elsewhere, first vertex {first}): "
                         f"build it on geomorph_bids.sphere.icosphere.icosphere({TEMPLATE_LEVEL}) and sample its "
                         "maps there (geomorph_bids.sphere.resample.resample), or load it with load_template")


def _warn_fallback(ref: TemplateRef, channels: Sequence[str], hemi: str) -> None:
    """A network's channels may need a map the preferred source lacks: say which source is used."""
    import warnings

    for line in ref.warnings(channels, (hemi,)):
        if line.startswith("template hemi-"):
            warnings.warn(line, TemplateWarning, stacklevel=5)


def _network(jobs: Sequence[_Job], dev: Any, lowpass: int = 1) -> None:
    """2a. the GeoMorph network's warp of every job (job.warp, unit sphere on ico-6). Per model,
    one forward pass for all its jobs (a batch) per entry of the network's ``passes``
    (:func:`~geomorph_bids.engine.checkpoints.network_passes`): each pass registers the moving
    image as the passes before it left it (resampled through their composed warp on the ico-6
    grid, as the optimiser samples it), and its displacement is low-passed at the network's level
    (:func:`network_smoothing` iterations times that pass's entry), upsampled and composed after
    theirs. ``lowpass`` > 1 (a schedule started from the network's warp,
    ``OptimiseConfig.start_lowpass``): one pass low-passed that many times instead, as that
    schedule was measured. The result is unfolded. The fixed images' share of a forward pass is
    computed once for all passes (``GeoMorph.encode_fixed``), and the forward passes skip the
    resampling of the moving image that only the warp is read from. A job's ``seconds_network``
    is its share of the forward passes plus its own post-processing."""
    import torch

    from ..model.geomorph import compose_warps
    from ..model.warp import ico_sampler

    groups: dict[int, list[_Job]] = {}
    for job in jobs:  # one forward per loaded network (e.g. one per hemisphere side)
        groups.setdefault(id(job.loaded), []).append(job)
    for group in groups.values():
        net = group[0].loaded.net
        level = net.config.data_level
        if level > TEMPLATE_LEVEL:
            raise ValueError(f"model data level {level} exceeds the template grid level {TEMPLATE_LEVEL}")
        nv = n_vertices(level)
        control = lowpass_level(net.config)  # a one-stage network's control grid: less work there
        passes = group[0].loaded.passes if lowpass == 1 else (lowpass,)
        param = next(net.parameters(), None)
        dtype = param.dtype if param is not None else torch.float32
        channels = [list(job.channels) for job in group]
        # the moving maps on the ico-6 grid after the rigid alignment, (B, 40962, C), and the fixed
        movs = [np.stack([job.pre.features_on_template[c] for c in ch], axis=1) for job, ch in zip(group, channels)]
        fixs = [job.loaded.spec(np.stack([np.asarray(job.tpl.features[c], dtype=np.float64)[:nv] for c in ch], axis=1),
                                channel_names=ch)[0] for job, ch in zip(group, channels)]
        totals: list[np.ndarray | None] = [None] * len(group)  # the composed warp so far, unit, ico-6
        # ico-6 faces of each job's points, from the pass before: those of totals[:nv] (the moving
        # map's resampling) and of the last step (the composition). A later pass's points are found
        # a face or two from them, and a step's points (a correction of < 1.2 deg) from their own grid
        # vertex (``exact``: the faces the search without a start finds, so the same bits)
        at_total: list[Any] = [None] * len(group)
        at_step: list[Any] = [None] * len(group)
        sample = ico_sampler(TEMPLATE_LEVEL)  # the passes share its tables
        grid = torch.arange(n_vertices(TEMPLATE_LEVEL))[None]
        shared = 0.0
        fixed = encoded = None
        for job in group:  # the passes add up their time: not onto a failed batch's before a retry
            job.seconds["seconds_network"] = 0.0
        for k in passes:
            t = time.perf_counter()
            if totals[0] is None:
                moved = [m[:nv] for m in movs]
            else:  # through the warp so far, sampled on the ico-6 grid
                moved = []
                for i, (m, w) in enumerate(zip(movs, totals)):
                    points = torch.from_numpy(w[:nv])[None]
                    # the first resampling's points are ~2 deg (2 faces) from their grid vertex, whose
                    # fan holds 22 % of them: neither it nor a walk gained steadily over the search
                    at_total[i] = (sample.locate(points) if at_total[i] is None
                                   else sample.locate(points, hint=at_total[i], exact=True))
                    moved.append(sample(torch.from_numpy(m)[None], points, at_total[i])[0].numpy())
            ins = [job.loaded.spec(m, channel_names=ch)[0] for job, m, ch in zip(group, moved, channels)]
            with torch.inference_mode():
                if encoded is None:  # the fixed image's share of a forward pass, once for all passes
                    fixed = torch.as_tensor(np.stack(fixs), dtype=dtype, device=dev)
                    encoded = net.encode_fixed(fixed)
                out = net(torch.as_tensor(np.stack(ins), dtype=dtype, device=dev), fixed, encoded=encoded,
                          warped=False)
                warps = out.warp.detach().to("cpu", torch.float64).numpy()
            if dev is not None and dev.type == "cuda":
                torch.cuda.synchronize(dev)
            shared += time.perf_counter() - t
            for i, (job, warp) in enumerate(zip(group, warps)):
                t = time.perf_counter()
                step = lowpass_network_warp(warp, level, network_smoothing(level) * k, control)
                if totals[i] is None:
                    totals[i] = step
                else:  # a step's points lie within a face or two of their own grid vertex
                    points = torch.from_numpy(step)[None]
                    at_step[i] = (sample.locate(points, near=grid, exact=True) if at_step[i] is None
                                  else sample.locate(points, hint=at_step[i], exact=True))
                    totals[i] = compose_warps(torch.from_numpy(totals[i])[None], points, TEMPLATE_LEVEL,
                                              face=at_step[i])[0].numpy()
                job.seconds["seconds_network"] += time.perf_counter() - t
        for job, total in zip(group, totals):
            t = time.perf_counter()
            job.warp, iterations = unfold_warp(total, TEMPLATE_LEVEL)
            job.seconds["seconds_network"] += shared / len(group) + time.perf_counter() - t
            job.metrics["data_level"] = level
            job.metrics["network_smoothing_iterations"] = network_smoothing(level) * passes[0]
            job.metrics["network_passes"] = [network_smoothing(level) * k for k in passes]
            job.metrics["network_unfold_iterations"] = iterations
            job.metrics["network_batch"] = len(group)


def _optimise_jobs(jobs: list[_Job], optimise: Any, dev: Any) -> None:
    """2b. pair-wise optimisation of every job's warp, batched by channel count."""
    from ..model.normalise import NormalisationSpec
    from ..model.optimise import REFINEMENT, OptimiseConfig, optimise_warp

    # True: the optimiser's schedule from the rigid alignment, the short refinement after a network
    network = any(job.loaded is not None for job in jobs)
    groups: dict[tuple[str, ...], list[_Job]] = {}
    for job in jobs:
        groups.setdefault(tuple(job.channels), []).append(job)
    for channels, group in groups.items():
        # the optimiser from the rigid alignment weighs its features by name (curv less than sulc)
        cfg = optimise if isinstance(optimise, OptimiseConfig) else (
            REFINEMENT if network else OptimiseConfig(channel_weights=optimiser_weights(channels)))
        if cfg.channel_weights is not None and len(cfg.channel_weights) != len(channels):
            raise ValueError(f"OptimiseConfig.channel_weights has {len(cfg.channel_weights)} entries, but the "
                             f"registration uses {len(channels)} map(s): {', '.join(channels)} (in this order)")
        t = time.perf_counter()
        movs, fixs, masks, inits = [], [], [], []
        for job in group:
            spec = job.loaded.spec if job.loaded is not None else NormalisationSpec()
            mov = np.stack([job.pre.features_on_template[c] for c in job.channels], axis=1)
            fix = np.stack([np.asarray(job.tpl.features[c], dtype=np.float64) for c in job.channels], axis=1)
            movs.append(spec(mov, channel_names=list(job.channels))[0])
            fixs.append(spec(fix, channel_names=list(job.channels))[0])
            cortex = job.pre.cortex_on_template  # the subject's medial wall, where the rigid stage put it
            masks.append((fix != 0) if cortex is None else (fix != 0) & cortex[:, None])
            inits.append(job.warp if job.warp is not None else unit(icosphere(TEMPLATE_LEVEL)[0]))
        any_init = any(job.warp is not None for job in group)
        res = optimise_warp(np.stack(movs), np.stack(fixs), cfg, mask=np.stack(masks),
                            init=np.stack(inits) if any_init else None, device=dev)
        share = (time.perf_counter() - t) / len(group)
        for job, warp in zip(group, res.warp):
            # the fold barrier keeps triangles from flipping in most cases, not all (a short
            # refinement composed after a network's warp can flip a few): none ever reaches an output
            unfolded, iterations = unfold_warp(warp, TEMPLATE_LEVEL)
            job.warp = unfolded if iterations else warp
            if iterations:
                job.metrics["optimise_unfold_iterations"] = iterations
            job.seconds["seconds_optimise"] = share
            job.metrics["optimise"] = cfg.to_dict()
            job.metrics["optimise_batch"] = len(group)


def _warp_in_moving(job: _Job, warp_ico6: np.ndarray, worker: Executor | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Corners (V_grid, 3) int64 and barycentric weights (V_grid, 3) of the warp's points
    (``warp_ico6``, (V_grid, 3) on the rotated moving sphere) in the moving mesh: located with the
    pre-alignment's locator (built on the unrotated sphere: the points are rotated back), starting
    from where the template grid was (``far``: a warp moves most grid points several moving
    triangles from there, 98 % of them on pair (d) at 164k; a small warp's, e.g. a network's on
    its own template's sphere, median 0.15 deg, stay around it, and the locator then screens
    there first; the same result either way). ``worker``: an executor that locates part of the
    points beside the caller (:func:`~geomorph_bids.engine.overlap.split_rows`: each point is
    located alone, so the same bits)."""
    pre = job.pre
    if pre.locator is None:
        return corner_weights((pre.sphere, job.work_f), warp_ico6)
    locate = partial(_corner_weights_far, pre.locator, job.work_f)
    points = warp_ico6 @ pre.rotation
    if worker is None:
        return locate(points, pre.grid_faces)
    return split_rows(worker, locate, points, pre.grid_faces)


def _corner_weights_far(locator: Any, faces: np.ndarray, points: np.ndarray, hint: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`corner_weights` of (N, 3) ``points`` in the moving mesh from their (N,) ``hint`` faces,
    most of which they left (``far``)."""
    return corner_weights((locator.vertices, faces), points, locator, hint=hint, far=True)


def _finish(job: _Job, optimise: Any, dev: Any, quality: QualityThresholds = DEFAULT_THRESHOLDS) -> Registration:
    """3. output sphere through the inverse warp, and metrics."""
    # the input sphere's share of the distortion measures does not depend on the warp: measured
    # beside the inverse, on a second CPU where there is one (the same bits); that worker then
    # takes part of the warp's points to locate and of the sphere's to move (split_rows)
    with side_worker() as worker:
        reference = worker.submit(_input_reference, job.vertices, job.faces).result
        return _finish_beside(job, optimise, dev, quality, reference, worker)


def _input_reference(vertices: np.ndarray, faces: np.ndarray) -> Reference:
    """The distortion measures' :class:`Reference`: the input sphere (V, 3) at radius 100."""
    return Reference((unit(vertices) * RADIUS, faces))


def _finish_beside(job: _Job, optimise: Any, dev: Any, quality: QualityThresholds,
                   reference: Callable[[], Reference], worker: Executor | None = None) -> Registration:
    """:func:`_finish` with ``reference`` giving the input sphere's :class:`Reference`; ``worker``
    (an executor, or None) shares the location of points (:func:`_warp_in_moving`, :func:`apply_warp`)."""
    metrics, seconds, channels, tpl, feats = job.metrics, job.seconds, job.channels, job.tpl, job.feats
    rotated = job.pre.sphere
    warp_ico6 = None if job.warp is None else job.warp * RADIUS
    t = time.perf_counter()
    # the warp's points in the moving mesh: the correlations after it, and where apply_warp starts
    in_moving = None if warp_ico6 is None else _warp_in_moving(job, warp_ico6, worker)
    located = time.perf_counter() - t  # the correlations' share: counted as metrics
    if warp_ico6 is not None:
        t = time.perf_counter()
        fans = job.pre.locator.fans if job.pre.locator is not None else vertex_fans(job.work_f, len(rotated))
        near = grid_vertices_near(in_moving[0], job.work_f, fans)
        out_sphere = apply_warp(rotated, warp_ico6, TEMPLATE_LEVEL, near=near, worker=worker)
        metrics["warp_folded_triangles"] = warp_folded_triangles(warp_ico6, TEMPLATE_LEVEL)
        seconds["seconds_invert"] = time.perf_counter() - t
    else:
        out_sphere = unit(rotated) * RADIUS
        metrics["warp_folded_triangles"] = 0
    metrics["method"] = ("rigid" if warp_ico6 is None else
                         "optimise" if job.loaded is None else
                         "geomorph" if optimise is False else "geomorph+optimise")
    t = time.perf_counter()
    if in_moving is not None:
        corners, weights = in_moving
        after = np.einsum("nk,nkc->nc", weights, np.column_stack([feats[c] for c in channels]).take(corners, axis=0))
        for k, c in enumerate(channels):
            fixed = np.asarray(tpl.features[c], dtype=np.float64)
            metrics[f"cc_{c}_after"] = correlation(after[:, k], fixed, fixed != 0)
    else:
        for c in channels:
            metrics[f"cc_{c}_after"] = metrics[f"cc_{c}_rigid"]
    rotation = job.pre.rotation
    if job.mirrored:
        out_sphere = out_sphere @ MIRROR
        rotation = MIRROR @ rotation @ MIRROR
    faces = job.faces
    # the pre-alignment's locator holds the faces around each vertex (of work_f: the same sets)
    around = job.pre.locator.faces_around if job.pre.locator is not None else None
    measures = distortion(reference(), (out_sphere, faces), faces_around=around, worker=worker)
    if len(measures["folded"]) and warp_ico6 is not None:
        # a fold-free ico-6 warp can still flip a small triangle of a finer mesh (its corners are
        # moved by different linear pieces): smooth the displacement from the rigid alignment there
        base = unit(rotated @ MIRROR if job.mirrored else rotated) * RADIUS
        out_sphere, steps = unfold_mesh(base, out_sphere, faces)
        if steps:  # 0: only triangles degenerate in the input differed (nothing to restore)
            metrics["output_unfold_iterations"] = steps
            metrics["output_folded_before_unfold"] = int(len(measures["folded"]))
            measures = distortion(reference(), (out_sphere, faces), faces_around=around, worker=worker)
    summary = distortion_summary(measures)
    metrics.update(summary)
    metrics["n_folded"] = int(summary["n_folded"])
    metrics["mirrored"] = job.mirrored
    seconds["seconds_metrics"] = located + time.perf_counter() - t
    metrics["device"] = str(dev) if dev is not None else "cpu"
    metrics.update(job.loaded.info if job.loaded is not None else
                   {"model_name": "rigid" if warp_ico6 is None else None, "model_version": None,
                    "model_weights_sha256": None,
                    "model_path": None})
    metrics.update(tpl.provenance)
    # each result's own lists (template_files, ...): the model's and template's were every result's of a batch
    metrics = copy.deepcopy(metrics)
    metrics.update(seconds)
    metrics["seconds_total"] = sum(v for k, v in seconds.items() if k.startswith("seconds_"))
    return Registration(sphere=out_sphere, faces=faces if job.given_faces is None else job.given_faces,
                        work_faces=None if job.given_faces is None else faces,
                        rotation=rotation, warp_ico6=warp_ico6,
                        metrics=metrics, template=tpl.name, hemi=job.hemi,
                        quality=assess(metrics, channels, quality),
                        fans=job.pre.locator.fans if job.pre.locator is not None else None)

"""Features of a registered hemisphere resampled onto the template sphere at the output density."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["DensityTarget", "ResampledFeatures", "density_target", "resample_features"]


@dataclass(frozen=True, eq=False)
class DensityTarget:
    """The template's sphere at an output density, read and indexed once for many hemispheres.

    Attributes
    ----------
    vertices : (V_out, 3) float64, mm on the radius-100 sphere; faces : (F_out, 3) int64.
    source : where the sphere came from (``io.templates.load_density_sphere``).
    locator : its :class:`~geomorph_bids.sphere.locate.SphereLocator`.
    areas : (V_out,) float64 vertex areas, mm^2 (the resampling's default new-side areas).
    """

    vertices: np.ndarray
    faces: np.ndarray
    source: str
    locator: object
    areas: np.ndarray


def density_target(template: str, hemi: str, density: str, templateflow_home: str | None = None) -> DensityTarget:
    """Read the ``template``'s ``hemi`` sphere at ``density`` and index it (:class:`DensityTarget`).
    ``templateflow_home``: as :func:`~geomorph_bids.io.templates.load_density_sphere` takes it (``""``: none,
    as an entry point that found ``TEMPLATEFLOW_HOME`` unset decided; None: ``$TEMPLATEFLOW_HOME``).

    Kept in the process for the next hemispheres (the last :data:`TARGETS_KEPT`: both hemispheres of a
    run's template and density), keyed by the arguments and the file's identity (device, inode, size,
    mtime, ctime: a file replaced or rewritten is read again): a batch worker's later chunks and a
    workflow worker's later resampling nodes skip the read, the sphere checks and the locator's set-up,
    ~60 ms each at 32k vertices. The target is only read from (its locator's lazily built k-d tree and
    tables are the same for every caller)."""
    from ..io.digest import file_stamp
    from ..io.templates import density_sphere_file

    # the file found (its path in the key: None finds another one where $TEMPLATEFLOW_HOME changed)
    path = density_sphere_file(template, hemi, density, templateflow_home)[0]
    try:
        stamp = () if path is None else (str(path), *file_stamp(path))
    except OSError:  # gone since it was found: read (and refused) as without the cache
        return _density_target(template, hemi, density, templateflow_home)
    return _kept_target(template, hemi, density, templateflow_home, stamp)


#: how many density targets a process keeps (:func:`density_target`): at most ~10 MB each at 32k vertices, ~50 MB
#: at 164k
TARGETS_KEPT = 2


@functools.lru_cache(maxsize=TARGETS_KEPT)
def _kept_target(template: str, hemi: str, density: str, home: str | None, stamp: tuple) -> DensityTarget:
    """:func:`_density_target`, kept for the same arguments and file ``stamp``."""
    return _density_target(template, hemi, density, home)


def _density_target(template: str, hemi: str, density: str, home: str | None) -> DensityTarget:
    """:func:`density_target` read and indexed now."""
    from ..io.templates import load_density_sphere
    from ..sphere.locate import SphereLocator
    from ..sphere.mesh import vertex_areas

    tv, tf, source = load_density_sphere(template, hemi, density, templateflow_home=home)
    areas = vertex_areas(tv, tf)
    for a in (tv, tf, areas):  # shared by every later hemisphere of the process: no caller may change them
        a.flags.writeable = False
    return DensityTarget(tv, tf, source, SphereLocator(tv, tf), areas)


@dataclass(frozen=True, eq=False)
class ResampledFeatures:
    """Result of :func:`resample_features`.

    Attributes
    ----------
    maps : feature name -> (V_out,) float32 on the output-density sphere, in the input order.
    n_vertices : V_out, vertices of the output-density sphere.
    source : where that sphere came from (recorded in sidecars and metrics).
    area_surfaces : whether the subject's midthickness areas weighed the resampling.
    cortex_roi : whether the subject's cortex mask restricted it (``-current-roi``).
    """

    maps: dict[str, np.ndarray]
    n_vertices: int
    source: str
    area_surfaces: bool = False
    cortex_roi: bool = False


def resample_features(registered: tuple[np.ndarray, np.ndarray], maps: Mapping[str, np.ndarray], template: str,
                      hemi: str, density: str, templateflow_home: str | None = None,
                      method: str = "adap_bary_area", midthickness: np.ndarray | None = None,
                      target: DensityTarget | None = None, fans: np.ndarray | None = None,
                      cortex: np.ndarray | None = None) -> ResampledFeatures:
    """One resampling matrix (Workbench's ADAP_BARY_AREA by default) from the registered
    sphere to the template sphere at ``density``, applied to every map.

    Parameters
    ----------
    registered : (vertices (V, 3) mm in template space, faces (F, 3)): the native mesh moved
        into template space; read as a plain mesh (a non-rigid registration may fold a few
        triangles; resampling projects onto the sphere).
    maps : name -> (V,) values on that mesh.
    template : the template's base name (``fsLR``, ``fsaverage``): whose density spheres.
    hemi, density : ``"L"``/``"R"``, an output density label (``io.templates.DENSITIES``).
    templateflow_home : TemplateFlow folder; ``""``: none (``RunConfig.templateflow_home`` of a run whose
        entry point found ``TEMPLATEFLOW_HOME`` unset: not read again here); None: ``$TEMPLATEFLOW_HOME``.
    method : ``"adap_bary_area"`` or ``"barycentric"``.
    midthickness : (V, 3) mm, the subject's midthickness (same mesh), or None: with
        ``adap_bary_area`` the weights use its vertex areas and those of its resampled copy
        (wb_command ``-metric-resample ... -area-surfs``); None: the spheres' own areas.
    target : that density sphere already read (:func:`density_target` with the same template,
        hemi, density and folder), reused across hemispheres; None: read here.
    fans : (V, D) int32, the faces around each vertex of the registered mesh
        (:attr:`~geomorph_bids.engine.register.Registration.fans`), reused for its locator where
        one is needed (the same table it would build: about half of building it at 164k
        vertices); None: built here. With ``adap_bary_area`` and no ``midthickness``, only the
        template vertices that can keep their forward row are located in the registered sphere
        (:func:`~geomorph_bids.sphere.resample.forward_needed`; as a rule none when downsampling,
        and then neither its locator nor its k-d tree is built).
    cortex : (V,) bool, True on the subject's cortex (its cortex mask), or None. Every output
        vertex that draws on a cortical vertex then draws on cortical vertices only (the weights
        renormalised: wb_command ``-metric-resample ... -current-roi``, as sMRIPrep and the HCP
        pipelines resample maps onto fsLR), so values outside the cortex (the 0 of a medial wall
        that HCP's myelin, thickness and curvature and FreeSurfer's thickness hold) are not
        mixed into the cortex near its border; an output vertex with no cortical source (on the
        medial wall) keeps the unrestricted value, where Workbench writes 0.
    """
    from ..sphere.locate import SphereLocator
    from ..sphere.resample import area_surfaces, corner_weights, resample_weights

    if target is None:
        target = density_target(template, hemi, density, templateflow_home)
    tv, tf = target.vertices, target.faces
    moving = (np.asarray(registered[0]), np.asarray(registered[1]))
    if fans is not None and len(fans) != len(moving[0]):
        raise ValueError(f"fans has {len(fans)} rows, the registered mesh {len(moving[0])} vertices")
    locator, forward = None, None
    current_area, new_area = None, target.areas
    if midthickness is not None and method == "adap_bary_area":
        # the template's vertices in the registered sphere: located once, for the areas and the weights
        locator = SphereLocator(*moving, fans=fans)
        forward = corner_weights(moving, tv, locator)
        current_area, new_area = area_surfaces(moving, np.asarray(midthickness), (tv, tf), forward=forward)
    # else resample_weights locates only the template vertices that can keep a forward row (as a
    # rule none: the registered sphere's locator and k-d tree are then not built at all)
    weights = resample_weights(moving, (tv, tf), method=method, current_area=current_area, new_area=new_area,
                               current_locator=locator, new_locator=target.locator, forward=forward,
                               current_fans=fans)
    out = {name: _apply(weights, np.asarray(values, dtype=np.float64), cortex).astype(np.float32)
           for name, values in maps.items()}
    return ResampledFeatures(out, int(len(tv)), target.source, current_area is not None, cortex is not None)


def _apply(weights, values: np.ndarray, cortex: np.ndarray | None) -> np.ndarray:
    """``weights`` (V_out, V) CSR applied to (V,) ``values``, restricted to ``cortex`` ((V,) bool or
    None) where an output vertex draws on it (NaN marks the excluded vertices:
    :func:`~geomorph_bids.sphere.resample.apply_weights` renormalises over the others), the
    unrestricted value elsewhere: those rows alone (the medial wall's) are applied a second time."""
    from ..sphere.resample import apply_weights

    if cortex is None:
        return apply_weights(weights, values)
    cortex = np.asarray(cortex, dtype=bool)
    if cortex.shape != values.shape[:1]:
        raise ValueError(f"cortex mask has {cortex.shape[0]} vertices, the map {values.shape[0]}")
    inside = apply_weights(weights, np.where(cortex, values, np.nan))
    rows = np.flatnonzero(np.isnan(inside).reshape(len(inside), -1).any(axis=1))
    if rows.size:
        inside[rows] = np.where(np.isnan(inside[rows]), apply_weights(weights[rows], values), inside[rows])
    return inside

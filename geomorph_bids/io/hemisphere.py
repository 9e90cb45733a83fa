"""The one loader of a native hemisphere: sphere, feature maps (in FreeSurfer's sign) and the
optional FreeSurfer ``sphere.reg``, midthickness surface and cortex mask, read and checked together.

Every entry point that registers files goes through :func:`read_hemisphere` (the BIDS-App's
``load_features`` node and batch mode, ``geomorph-register``, training on the user's subjects),
so a file is accepted or refused the same way, with the same one-line message, everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from .hemisphere_label import feature_conflicts, label_conflicts
from .surfaces import Surface, read_feature, read_mask, read_sphere, read_surface
from .validate import check_registration_density, check_zero_fraction, no_data, validate_feature

__all__ = ["NativeHemisphere", "read_hemisphere"]


@dataclass(frozen=True, eq=False)
class NativeHemisphere:
    """A hemisphere read by :func:`read_hemisphere`.

    Attributes
    ----------
    sphere : the validated native sphere (vertices (V, 3) float64 on the radius-100 sphere,
        faces (F, 3) int64).
    features : name -> (V,) float64 map, multiplied by its sign (FreeSurfer's convention).
    sphere_reg : the validated ``sphere.reg`` (same V), or None.
    midthickness : the midthickness surface (same V and triangles, mm), or None.
    cortex : (V,) bool, True on the cortex (the mask given, less the vertices any map holds no data at), or None:
        the mask of the resampling, which writes every map.
    given_cortex : (V,) bool, the cortex mask file as read, or None.
    no_data_at : name -> (V,) bool, True where that map holds no data (:func:`~geomorph_bids.io.validate.no_data`),
        for the maps that hold any; :meth:`registration_cortex` leaves out only the registration's maps' regions.
    label_conflicts : one line per file whose metadata or name declares the other hemisphere
        than the one it is read as (:func:`~geomorph_bids.io.hemisphere_label.label_conflicts`;
        none when no ``hemi`` was given), or whose name names another map than the feature it is
        read as (:func:`~geomorph_bids.io.hemisphere_label.feature_conflicts`).
    no_data : feature -> ``{"nan": vertices, "constant": vertices}`` read as no data in its map
        (:func:`~geomorph_bids.io.validate.no_data`: NaN regions, a sulc filled with one value), for the
        maps that hold any; empty when none does.
    """

    sphere: Surface
    features: dict[str, np.ndarray] = field(default_factory=dict)
    sphere_reg: Surface | None = None
    midthickness: Surface | None = None
    cortex: np.ndarray | None = None
    label_conflicts: tuple[str, ...] = ()
    given_cortex: np.ndarray | None = None
    no_data_at: dict[str, np.ndarray] = field(default_factory=dict)
    no_data: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def no_data_vertices(self) -> int:
        """How many vertices some map holds no data at (those left out of :attr:`cortex` for it)."""
        return int(np.count_nonzero(np.logical_or.reduce(list(self.no_data_at.values())))) if self.no_data_at else 0

    def registration_cortex(self, channels: Sequence[str]) -> np.ndarray | None:
        """(V,) bool, True where the registration with the maps ``channels`` compares them: the mask given, less
        the vertices those maps hold no data at; None where no mask was given and they hold none. A map that is
        only resampled (``--features sulc,thickness`` with a sulc network) does not change the registration: its
        no-data region is left out of the resampling (:attr:`cortex`), not out of the registration."""
        missing = [self.no_data_at[c] for c in channels if c in self.no_data_at]
        if not missing:
            return self.given_cortex
        cortex = ~np.logical_or.reduce(missing)
        return cortex if self.given_cortex is None else self.given_cortex & cortex


def read_hemisphere(sphere: str | Path, features: Mapping[str, str | Path], *,
                    signs: Mapping[str, float] | None = None, sphere_reg: str | Path | None = None,
                    midthickness: str | Path | None = None, cortex_mask: str | Path | None = None,
                    validate: bool = True, hemi: str | None = None,
                    compared: Sequence[str] | None = None) -> NativeHemisphere:
    """Read a native sphere, one map per feature and, optionally, its ``sphere.reg``.

    Parameters
    ----------
    sphere : GIFTI ``.surf.gii`` or FreeSurfer ``?h.sphere``.
    features : name -> map file (GIFTI shape/func, FreeSurfer morph, MGH, CIFTI), one map
        per file with the sphere's vertex count.
    signs : name -> factor converting the map to FreeSurfer's sign (-1 for HCP sulc/curv);
        default +1.
    sphere_reg : FreeSurfer ``?h.sphere.reg`` (same vertices as ``sphere``), or None.
    midthickness : the midthickness surface (same vertices and triangles), or None.
    cortex_mask : a cortex mask file (:func:`~geomorph_bids.io.surfaces.read_mask`), or None.
    validate : read NaN in a map, and a sulc plateau, as no data (:func:`~geomorph_bids.io.validate.no_data`: 0
        there, one warning line, and left out of ``cortex``, which is then made if no mask was given); refuse
        maps that are all zero, constant or non-zero on under 5 % of the vertices
        (nothing to register); warn (:class:`~geomorph_bids.io.validate.FeatureWarning`) about a
        map exactly 0 on far more vertices than a medial wall
        (:func:`~geomorph_bids.io.validate.check_zero_fraction`).
    compared : the maps the registration compares (its channels), for the no-data warning's words only (a map
        not among them: "left out of the resampling ... not of the registration"); None: not known, the line
        says "where the registration compares this map". What is left out of what is decided by
        :meth:`NativeHemisphere.registration_cortex`, not here.
    hemi : ``"L"``/``"R"``: the hemisphere the files are read as (a CIFTI-2 file's columns of it); files declaring the other one
        are listed in ``label_conflicts`` (the quality gates flag them; nothing is refused), as are
        map files whose name says another map (with or without ``hemi``).

    Raises :class:`~geomorph_bids.errors.InputError` naming the file (the caller adds subject
    and hemisphere with ``with_context``). Reads in order: sphere, features, sphere.reg,
    midthickness, cortex mask.
    """
    s = read_sphere(sphere)
    check_registration_density(s.vertices, s.faces, sphere)  # before any map is read
    n = len(s.vertices)
    maps: dict[str, np.ndarray] = {}
    missing = np.zeros(n, dtype=bool)
    holes: dict[str, np.ndarray] = {}
    counts: dict[str, dict[str, int]] = {}
    for name, path in features.items():
        values = np.asarray(read_feature(path, n_vertices=n, hemi=hemi, sphere=sphere, allow_nan=validate),
                            dtype=np.float64)
        if values.ndim != 1:
            raise InputError(f"holds {values.shape[1]} maps; one per file expected", path=path)
        if validate:  # NaN (a medial wall or lesion exported so) and a sulc plateau (a filled lesion): no data
            nan = np.isnan(values)
            values, nodata = no_data(values, s.faces, path, what=f"feature {name!r}", plateau=name == "sulc",
                                     compared=None if compared is None else name in compared)
            if nodata is not None:
                missing |= nodata
                holes[name] = nodata
                n_nan = int(np.count_nonzero(nodata & nan))
                counts[name] = {"nan": n_nan, "constant": int(np.count_nonzero(nodata)) - n_nan}
        if validate:  # all zero, constant or nearly all zero: nothing to align
            validate_feature(values, path, what=f"feature {name!r}")
            check_zero_fraction(values, path, what=f"feature {name!r}")  # zero-filled far beyond a medial wall
        maps[name] = (signs or {}).get(name, 1.0) * values
    reg = None
    if sphere_reg is not None:
        reg = read_sphere(sphere_reg)
        if len(reg.vertices) != n:
            raise InputError(f"has {len(reg.vertices)} vertices but the sphere {sphere} has {n}", path=sphere_reg)
    mid = None
    if midthickness is not None:
        mid = read_surface(midthickness)
        if len(mid.vertices) != n or not np.array_equal(np.sort(mid.faces, axis=1), np.sort(s.faces, axis=1)):
            raise InputError(f"midthickness has {len(mid.vertices)} vertices and other triangles than the sphere "
                             f"{sphere} ({n} vertices): it must be the same subject's mesh", path=midthickness)
    given = cortex = None if cortex_mask is None else read_mask(cortex_mask, n, hemi)
    if missing.any():  # left out of the registration (and of the resampled maps) as a medial wall is
        cortex = ~missing if cortex is None else cortex & ~missing
    inward = sphere if s.wound_inward else None  # a mirrored hemisphere's sphere: its declaration line says so
    conflicts = tuple(([] if hemi is None else label_conflicts([sphere, *features.values(), sphere_reg], hemi,
                                                               wound_inward=inward))
                      + feature_conflicts(features))
    return NativeHemisphere(s, maps, reg, mid, cortex, conflicts, given, holes, counts)

"""The figures of one hemisphere in the participant report: the registration feature against
the template before and after registration, the distortion maps, and the maps on the subject's
own (inflated or midthickness) surface. Each figure missing an input is replaced by a one-line
note saying which."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..derivatives import FIGURES
from .html import fmt
from .outputs import HemiOutputs, input_surface, relative
from ..io.quiet import quiet_warnings

if TYPE_CHECKING:
    from .figures import FigureKeeper

__all__ = ["hemisphere_figures"]


def _load_template(name: str, hemi: str, feature: str, output_dir: Path, recorded: dict | None = None,
                   moved_to: Path | None = None):
    """The template the run used (``recorded``: its ``TemplateRef.to_dict()`` in the metrics;
    ``moved_to``: the folder a custom template's maps are in now, the output folder having moved
    with it), else the one ``name`` refers to here (outputs written before the reference was recorded)."""
    from dataclasses import replace

    from ..io.template_ref import TemplateRef, resolve_template, template_search_path

    if recorded:
        ref = TemplateRef.from_dict(recorded)
        if ref.is_custom and moved_to is not None:
            ref = replace(ref, folder=moved_to)
        return ref.load(hemi, (feature,))
    return resolve_template(name, hemi, (feature,), search=template_search_path(output_dir))


def _read_values(path: Path, n: int | None = None) -> np.ndarray:
    from ..io.surfaces import read_feature

    return np.asarray(read_feature(path, n_vertices=n), dtype=np.float64).reshape(-1)


def _read_mesh(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from ..io.surfaces import read_sphere
    from ..io.validate import SphereWarning

    with quiet_warnings(SphereWarning):
        s = read_sphere(path)
    return np.asarray(s.vertices, dtype=np.float64), np.asarray(s.faces, dtype=np.int64)


def _read_surface(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from ..io.surfaces import read_surface

    s = read_surface(path)
    return np.asarray(s.vertices, dtype=np.float64), np.asarray(s.faces, dtype=np.int64)


def _density_mesh(template: str, hemi: str, density: str, n: int, base: str | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The output-density sphere (``n`` vertices) the resampled maps of ``template`` are on: the
    standard template's, or for a custom template (a population template) its ``base``'s, whose
    output densities its outputs use; an icosphere of ``n`` vertices where neither is known."""
    from ..io.templates import is_bundled_template, load_density_sphere
    from ..sphere.icosphere import icosphere, level_of

    for name in (template, base):
        if name and is_bundled_template(name):
            v, f, _ = load_density_sphere(name, hemi, density)
            return v, f
    level = level_of(n)  # a custom template of no known base (outputs of an older version): an icosphere
    v, f = icosphere(level)
    return np.asarray(v, dtype=np.float64), np.asarray(f, dtype=np.int64)


def hemisphere_figures(h: HemiOutputs, output_dir: Path, fig_dir: Path, keeper: FigureKeeper | None = None
                       ) -> tuple[list[tuple[str, str, str]], list[str]]:
    """Draw a hemisphere's figures: [(kind, caption, relative path)], [notes]. ``keeper``: the
    report's :class:`~.figures.FigureKeeper` (figures of a layout already drawn are refilled)."""
    from ..io.template_ref import moved_template_files
    from ..io.template_sources import sha256_now
    from ..sphere.distortion import distortion
    from .figures import distortion_figure, registration_figure

    figs: list[tuple[str, str, str]] = []
    notes: list[str] = []
    reg = h.registration
    template = str(h.doc.get("template") or reg.get("template") or h.space)
    native_sphere = h.native_sphere()
    native = _read_mesh(native_sphere) if native_sphere.is_file() else None
    registered = _read_mesh(h.registered_sphere()) if h.registered_sphere().is_file() else None
    if registered is None:
        notes.append(f"registered sphere missing: {h.registered_sphere().name}")
    if native is not None and registered is not None and len(native[0]) != len(registered[0]):
        notes.append(f"{native_sphere.name} has {len(native[0])} vertices, the registered sphere "
                     f"{len(registered[0])}: not used")
        native = None
    recorded_files = tuple(str(f) for f in reg.get("template_files") or ())
    files = moved_template_files(recorded_files, output_dir)  # the output folder moved with its template
    changed = sha256_now(files, reg.get("template_sha256"))
    moved_to = Path(files[0]).parent if files != recorded_files and not changed and all(
        Path(f).is_file() for f in files) else None  # the same maps, found where the folder is now
    if changed:  # a population template rebuilt in place: the maps drawn are not those it was registered to
        notes.append(f"the template's maps in {Path(files[0]).parent} have changed since this hemisphere "
                     f"was registered to them (sha256 {str(reg.get('template_sha256'))[:12]} then, {changed[:12]} now: "
                     "a template rebuilt or replaced there); the template drawn is the maps there now: rerun the "
                     f"participant level with --template {template} for outputs in their space")
    rotation = np.asarray(reg.get("rotation") or np.eye(3), dtype=np.float64)
    missing_native = (f"needs {native_sphere.name} and the native feature in the outputs"
                      if native is None else "")
    surface_maps: list[tuple[str, tuple[tuple[np.ndarray, np.ndarray], np.ndarray]]] = []
    d = None
    for feature in h.features:
        try:
            tpl = _load_template(template, h.hemi, feature, output_dir, h.doc.get("template_ref"), moved_to)
        except (ValueError, OSError) as exc:
            notes.append(f"template {template} ({feature}) not available here: {exc}")
            continue
        template_map = ((tpl.vertices, tpl.faces), tpl.features[feature])
        surface_maps.append((feature, template_map))
        before = after = None
        missing_before = missing_native
        native_values = None
        nf = h.native_feature(feature)
        if native is not None:
            if nf.is_file():
                native_values = _read_values(nf, len(native[0]))
                before = ((native[0] @ rotation.T, native[1]), native_values)
            else:
                missing_before = f"needs {nf.name} in the outputs"
        missing_after = ""
        resampled = h.resampled_feature(feature)
        if resampled is not None:
            values = _read_values(resampled)
            try:
                ref = h.doc.get("template_ref") if isinstance(h.doc.get("template_ref"), dict) else {}
                after = (_density_mesh(template, h.hemi, str(h.doc.get("output_density")), len(values),
                                       ref.get("base")), values)
            except (ValueError, OSError) as exc:
                notes.append(f"output-density sphere not available ({exc}); drawing the native map instead")
        if after is None and native_values is not None and registered is not None:
            after = (registered, native_values)
        if after is None:
            missing_after = "no registered map in the outputs"
        name = FIGURES["registration"].format(entities=h.entities, hemi=h.hemi, space=h.space,
                                              Feature=feature[:1].upper() + feature[1:])
        cc = [reg.get(f"cc_{feature}_{k}") for k in ("before", "rigid", "after")]
        title = (f"{h.entities} hemi-{h.hemi}: {feature} vs {template}   (CC before {fmt(cc[0])}, "
                 f"rigid {fmt(cc[1])}, after {fmt(cc[2])})")
        path = registration_figure(fig_dir / name, h.hemi, feature, template_map, after, before, title=title,
                                   missing_before=missing_before, missing_after=missing_after, keeper=keeper)
        figs.append(("registration", f"{feature}: template, subject before (rigid pre-alignment) and after "
                                     "registration, and their differences to the template (z-scores)",
                     relative(path, output_dir)))
    if native is not None and registered is not None:
        d = distortion(native, registered)
        name = FIGURES["distortion"].format(entities=h.entities, hemi=h.hemi, space=h.space)
        path = distortion_figure(fig_dir / name, h.hemi, registered, d["areal"], d["R"],
                                 title=f"{h.entities} hemi-{h.hemi}: distortion of the native mesh "
                                       f"({len(d['folded'])} folded triangles)", keeper=keeper)
        figs.append(("distortion", "areal distortion (log2 of the vertex-area ratio, registered / native) and "
                                   "shape distortion (log2 anisotropy), drawn in template space",
                     relative(path, output_dir)))
    else:
        notes.append(f"distortion maps need the native sphere in the outputs ({native_sphere.name})")
    s_figs, s_notes = _surface_figures(h, output_dir, fig_dir, native, registered, surface_maps,
                                       None if d is None else d["areal"], keeper)
    return figs + s_figs, notes + s_notes


def _carry(template_map: tuple[tuple[np.ndarray, np.ndarray], np.ndarray], points: np.ndarray,
           locator=None) -> np.ndarray:
    """The template's feature, z-scored over its non-zero vertices (NaN on the medial wall),
    interpolated (barycentric) at sphere ``points`` (N, 3): (N,). ``locator``: a
    :class:`~geomorph_bids.sphere.locate.SphereLocator` of the template's mesh, shared by the
    point sets carried (the same weights as one built here)."""
    from ..sphere.resample import barycentric_weights
    from .figures import zscore

    (tv, tf), values = template_map
    return np.asarray(barycentric_weights((tv, tf), points, locator=locator) @ zscore(values), dtype=np.float64)


def _surface_figures(h: HemiOutputs, output_dir: Path, fig_dir: Path, native, registered, surface_maps: list,
                     areal: np.ndarray | None, keeper: FigureKeeper | None = None
                     ) -> tuple[list[tuple[str, str, str]], list[str]]:
    """Maps on the subject's inflated/midthickness surface (recorded in the metrics JSON as
    ``input_surface`` / ``input_surface_path`` / ``input_surface_kind``: :func:`~.outputs.input_surface`): one
    figure per registration feature.
    "Before" carries the template through the native sphere as it is (no alignment, like the
    metrics' ``cc_before``), "after" through the registered sphere."""
    from ..sphere.locate import SphereLocator
    from .figures import surface_figure

    where = input_surface(h.doc, output_dir)
    kind = str(h.doc.get("input_surface_kind"))
    kind = kind if kind in ("inflated", "midthickness") else "surface"  # also names the figure file
    if not where:
        return [], ["no inflated or midthickness surface among the inputs: maps drawn on the sphere only"]
    if not Path(where).is_file():
        return [], [f"the {kind} surface {where} (recorded in the metrics) is not readable here: "
                    "maps drawn on the sphere only"]
    if native is None:
        return [], [f"maps on the {kind} surface need the native sphere in the outputs"]
    try:
        surface = _read_surface(Path(where))
    except (ValueError, OSError) as exc:
        return [], [f"the {kind} surface {where} cannot be read ({' '.join(str(exc).split())}): "
                    "maps drawn on the sphere only"]
    if len(surface[0]) != len(native[0]):
        return [], [f"the {kind} surface has {len(surface[0])} vertices, the native sphere {len(native[0])}: "
                    "not drawn"]
    figs, notes = [], []
    for feature, template_map in surface_maps:
        nf = h.native_feature(feature)
        if not nf.is_file():
            notes.append(f"maps on the {kind} surface need {nf.name} in the outputs")
            continue
        values = _read_values(nf, len(native[0]))
        # one locator for both point sets (~0.04 s to build at 32k vertices), of the mesh
        # barycentric_weights would build it from (vertices as float64)
        locator = SphereLocator(np.asarray(template_map[0][0], dtype=np.float64), np.asarray(template_map[0][1]))
        before = _carry(template_map, native[0], locator)
        after = _carry(template_map, registered[0], locator) if registered is not None else None
        name = FIGURES["surface"].format(entities=h.entities, hemi=h.hemi, space=h.space, kind=kind,
                                         Feature=feature[:1].upper() + feature[1:])
        path = surface_figure(fig_dir / name, h.hemi, surface, values, before, after, areal, feature=feature,
                              kind=kind, title=f"{h.entities} hemi-{h.hemi}: {feature} on the subject's {kind} "
                                               f"surface ({Path(where).name})", keeper=keeper)
        figs.append((f"{kind} surface", f"{feature} on the subject's own {kind} surface: the subject's map, the "
                                        "template's map carried to the subject's mesh through the native sphere "
                                        "(before registration, no alignment) and through the registered sphere "
                                        "(after), the subject "
                                        "minus the registered template (z-scores), and the areal distortion",
                     relative(path, output_dir)))
    return figs, notes

"""Figures of the reports: maps drawn on the sphere from standard views (matplotlib, Agg).

A sphere viewed from far away (orthographic projection) is a disk: every pixel inside it is
one point of the sphere, so a map is drawn by sampling its mesh (barycentric interpolation)
at those points; no 3-D rendering is needed. This is exact for any mesh density and takes
tens of milliseconds per view. Maps on the subject's own (inflated or midthickness) surface
need real hidden-surface removal: :func:`surface_figure` uses the z-buffer rasteriser of
:mod:`geomorph_bids.reports.render`. Figures are built on :class:`matplotlib.figure.Figure` with
the Agg canvas (no pyplot, no display, no global state).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from .render import cameras_for_mesh
from .views import View, views_for

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["SphereCamera", "FigureKeeper", "sample_views", "zscore", "registration_figure", "distortion_figure",
           "surface_figure", "group_figure", "png_size", "FIGURE_DPI"]

FIGURE_DPI = 100
#: pixels across the disk of one view
VIEW_PIXELS = 200


class _Vertices:
    """A mesh's vertices as an argument of :func:`_sphere_weights`: hashed and compared by their
    shape and a digest of their bytes (equal bytes give equal weights), holding only a weak
    reference to the array (the cache keeps no mesh alive)."""

    __slots__ = ("digest", "_ref")

    def __init__(self, vertices: np.ndarray) -> None:
        import hashlib
        import weakref

        self.digest = (vertices.shape, hashlib.blake2b(vertices.tobytes(), digest_size=16).digest())
        self._ref = weakref.ref(vertices)

    def __hash__(self) -> int:
        return hash(self.digest)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Vertices) and other.digest == self.digest

    def array(self) -> np.ndarray:
        return self._ref()


def _weights(vertices: np.ndarray, cameras: Sequence["SphereCamera"]) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Per camera: the 3 vertices nearest each of its pixels' points (P, 3) on the radius-100
    sphere and their normalised inverse squared distance weights, (P, 3) int32 and (P, 3)
    float64; one k-d tree for all the cameras."""
    from scipy.spatial import cKDTree

    v = vertices * (100.0 / np.linalg.norm(vertices, axis=1, keepdims=True))
    tree = cKDTree(v)
    out = []
    for cam in cameras:  # the views of one figure (2-4), not a loop over pixels
        dist, idx = tree.query(cam.points, k=3)
        w = 1.0 / np.maximum(dist, 1e-6) ** 2
        out.append((idx.astype(np.int32), w / w.sum(axis=1, keepdims=True)))
    return tuple(out)


@lru_cache(maxsize=8)
def _sphere_weights(vertices: _Vertices, views: tuple[View, ...], pixels: int
                    ) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """:func:`_weights` of the views' pixels, kept for the next figures of this process: the
    template's sphere and the output-density sphere are the same for every participant of a
    cohort (a report worker draws many; 8 entries: a participant's 2 hemispheres use 6, of which
    4 are shared, ~2.2 MB each for 2 views of 200 pixels). Read-only: never written to."""
    out = _weights(vertices.array(), [SphereCamera(view, pixels) for view in views])
    for idx, w in out:
        idx.flags.writeable = False
        w.flags.writeable = False
    return out


def sample_views(cameras: Sequence["SphereCamera"], mesh: tuple[np.ndarray, np.ndarray],
                 values: Sequence[np.ndarray] | np.ndarray, keep: bool = True) -> list[list[np.ndarray]]:
    """Images of per-vertex maps on ``mesh`` in each camera (:meth:`SphereCamera.image`):
    ``result[k][i]`` is ``values[k]`` (V,) seen by ``cameras[i]`` (one map (V,): a list of
    one). ``keep``: the weights are kept for this process under the vertices' content
    (:func:`_sphere_weights`), for meshes that come back in later reports (the template's, the
    output density's); without it they serve these maps only."""
    cams = list(cameras)
    maps = [values] if isinstance(values, np.ndarray) and values.ndim == 1 else list(values)
    pixels = {c.pixels for c in cams}
    v = np.ascontiguousarray(mesh[0], dtype=np.float64)
    if keep and len(pixels) == 1:
        weights = _sphere_weights(_Vertices(v), tuple(c.view for c in cams), pixels.pop())
    else:
        weights = _weights(v, cams)
    return [[c.image(wt, m) for c, wt in zip(cams, weights)] for m in maps]


class SphereCamera:
    """Pixel -> sphere points of one view, and sampling of per-vertex maps at them."""

    def __init__(self, view: View, pixels: int = VIEW_PIXELS) -> None:
        right, up, t = view.frame()
        c = (np.arange(pixels) + 0.5) / pixels * 2.0 - 1.0
        u, v = np.meshgrid(c, -c)  # image rows go downwards
        inside = u * u + v * v <= 1.0
        w = np.sqrt(np.clip(1.0 - u * u - v * v, 0.0, None))
        self.view = view
        self.pixels = pixels
        self.inside = inside
        self.shade = 0.55 + 0.45 * w  # Lambert shading, light from the viewer
        self.points = (u[inside, None] * right + v[inside, None] * up + w[inside, None] * t) * 100.0

    def sample(self, mesh: tuple[np.ndarray, np.ndarray], values: np.ndarray) -> np.ndarray:
        """(pixels, pixels) image of ``values`` (V,) on ``mesh`` (NaN outside the disk and where
        the map is NaN): inverse-distance weighting of the 3 nearest vertices (smooth, and 5-10x
        faster than locating every pixel in the mesh). Several maps or views of one mesh:
        :func:`sample_views` (one k-d tree, weights kept)."""
        return sample_views([self], mesh, np.asarray(values, dtype=np.float64).reshape(-1), keep=False)[0][0]

    def image(self, weights: tuple[np.ndarray, np.ndarray], values: np.ndarray) -> np.ndarray:
        """(pixels, pixels) image of ``values`` (V,) from this camera's ``weights`` (nearest
        vertices (P, 3), their weights (P, 3)); NaN outside the disk and where the map is NaN."""
        idx, w = weights
        vals = np.asarray(values, dtype=np.float64)[idx]
        finite = np.isfinite(vals)
        den = (w * finite).sum(axis=1)
        num = (w * np.where(finite, vals, 0.0)).sum(axis=1)
        img = np.full(self.inside.shape, np.nan)
        img[self.inside] = np.where(den > 0.5, num / np.maximum(den, 1e-12), np.nan)
        return img


def zscore(values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Z-score over ``mask`` (default: non-zero finite values); NaN outside the mask."""
    v = np.asarray(values, dtype=np.float64)
    m = np.isfinite(v) & (v != 0) if mask is None else (np.asarray(mask, bool) & np.isfinite(v))
    out = np.full(v.shape, np.nan)
    if m.sum() > 1:
        sd = v[m].std()
        out[m] = (v[m] - v[m].mean()) / (sd if sd > 0 else 1.0)
    return out


def _rgba(img: np.ndarray, cam: "SphereCamera", cmap, vmin: float, vmax: float) -> np.ndarray:
    """Colour an image, shade it, grey where NaN inside the disk, transparent outside."""
    import matplotlib.colors as mcolors

    norm = mcolors.Normalize(vmin=vmin, vmax=vmax, clip=True)
    rgba = cmap(norm(np.nan_to_num(img, nan=0.0)))
    rgba[np.isnan(img)] = (0.82, 0.82, 0.82, 1.0)
    rgba[..., :3] *= cam.shade[..., None]
    rgba[~cam.inside] = 0.0
    return rgba


def _mappable(cmap, vmin: float, vmax: float):
    """A colour-bar source that draws nothing."""
    import matplotlib.cm as mcm
    import matplotlib.colors as mcolors

    return mcm.ScalarMappable(norm=mcolors.Normalize(vmin=vmin, vmax=vmax), cmap=cmap)


def _save(fig, path: str | Path) -> Path:
    """Write ``fig`` as a PNG atomically (:func:`~geomorph_bids.io.atomic.atomic_write_bytes`)."""
    import io

    from ..io.atomic import atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI, facecolor="white", pil_kwargs={"compress_level": 2})
    return atomic_write_bytes(path, buffer.getvalue())


def _image_axes(fig, spec):
    """An axes without decorations for one image. Its x and y axes are also hidden (not only
    switched off): they are never drawn, and the title's placement then skips building their
    tick labels (~10 ms per titled axes; the title lands where it did, the figure is the same)."""
    ax = fig.add_subplot(spec)
    ax.set_axis_off()
    ax.xaxis.set_visible(False)
    ax.yaxis.set_visible(False)
    return ax


@dataclass(frozen=True)
class Panel:
    """One column of a figure: a map (already sampled per view), its colour scale and title."""

    title: str
    images: Sequence[np.ndarray]   # one per view (NaN outside the disk)
    cmap: str
    vmin: float
    vmax: float
    label: str = ""
    note: str = ""                 # shown instead of the map when ``images`` is empty


def _layout(panels: Sequence[Panel], cameras: Sequence) -> tuple:
    """Everything a figure of ``panels`` shows but their images, colour limits and the figure's
    title (what a kept figure is refilled with): the panels' titles, colour maps, labels and
    notes, which have images and their shapes, and the views' names."""
    return (tuple((p.title, p.cmap, p.label, p.note, tuple(img.shape for img in p.images))
                  for p in panels),
            tuple(c.view.name for c in cameras))


class FigureKeeper:
    """The last figure of each kind drawn in one report, kept so that the next figure of the same
    layout (a participant's other hemisphere, other session) is refilled instead of built: new
    images, title and colour-bar limits in the same axes and colour bars. Building one costs
    about as much as drawing it (the registration figure: ~0.2 s of ~0.4 s at 164k vertices);
    the PNG is the same byte for byte. For one report in one thread (its figures are changed in place); at
    most 3 figures are held (7-22 MB each at the default sizes, mostly their float RGBA images)."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[tuple, object, tuple[list, list]]] = {}

    def get(self, kind: str, key: tuple) -> tuple[object, tuple[list, list]] | None:
        """(figure, (its image artists, its colour bars' sources) in drawing order) of ``kind``
        if its layout is ``key``."""
        kept = self._kept.get(kind)
        return kept[1:] if kept is not None and kept[0] == key else None

    def keep(self, kind: str, key: tuple, fig: Figure, artists: tuple[list, list]) -> None:
        """Keep ``fig`` and its ``artists`` (the last figure of ``kind``; the one before is let go)."""
        self._kept[kind] = (key, fig, artists)


def _refill(fig, artists: tuple[list, list], title: str, cells, scales) -> None:
    """A kept figure with new content: its title, each image artist's picture from ``cells``
    ((panel, image, camera) in drawing order) and each colour bar's limits from ``scales``
    ((vmin, vmax) in drawing order)."""
    from matplotlib import colormaps

    images, sources = artists
    fig.suptitle(title, fontsize=10, y=0.995, va="top")
    for artist, (panel, img, cam) in zip(images, cells, strict=True):
        artist.set_data(_rgba(img, cam, colormaps[panel.cmap], panel.vmin, panel.vmax))
    for source, (vmin, vmax) in zip(sources, scales, strict=True):
        if source.get_clim() != (vmin, vmax):
            source.set_clim(vmin, vmax)


def _figure(panels: Sequence[Panel], cameras: Sequence[SphereCamera], title: str, path: Path,
            col_inches: float = 2.1, row_inches: float | None = None, keeper: FigureKeeper | None = None,
            kind: str = "columns") -> Path:
    """Panels as columns, one row per camera, one colour bar per column; ``keeper``: reuse its
    figure of ``kind`` when it has this layout, else build one and give it to the keeper."""
    key = (col_inches, row_inches, _layout(panels, cameras))
    kept = keeper.get(kind, key) if keeper is not None else None
    if kept is not None:
        _refill(kept[0], kept[1], title, [(p, p.images[i], cam) for p in panels if p.images
                                          for i, cam in enumerate(cameras)],
                [(p.vmin, p.vmax) for p in panels if p.images])
        return _save(kept[0], path)
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_rows, n_cols = len(cameras), len(panels)
    row_inches = col_inches if row_inches is None else row_inches
    height = row_inches * n_rows + 0.9
    fig = Figure(figsize=(col_inches * n_cols, height), dpi=FIGURE_DPI)
    FigureCanvasAgg(fig)
    top = 1.0 - 0.42 / height
    bottom = 0.5 / height
    grid = fig.add_gridspec(n_rows, n_cols, left=0.04, right=0.99, top=top, bottom=bottom, wspace=0.04, hspace=0.04)
    fig.suptitle(title, fontsize=10, y=0.995, va="top")
    images, sources = [], []
    for j, panel in enumerate(panels):
        cmap = colormaps[panel.cmap]
        im = None
        for i, cam in enumerate(cameras):
            ax = _image_axes(fig, grid[i, j])
            if i == 0:
                ax.set_title(panel.title, fontsize=8)
            if j == 0:
                ax.text(-0.04, 0.5, cam.view.name, rotation=90, va="center", ha="right", fontsize=8,
                        transform=ax.transAxes)
            if not panel.images:
                if i == 0:
                    ax.text(0.5, 0.5, panel.note or "not available", ha="center", va="center", fontsize=7,
                            wrap=True, transform=ax.transAxes, color="0.35")
                continue
            images.append(ax.imshow(_rgba(panel.images[i], cam, cmap, panel.vmin, panel.vmax),
                                    interpolation="nearest"))
            im = _mappable(cmap, panel.vmin, panel.vmax)
        if im is not None:
            pos = grid[n_rows - 1, j].get_position(fig)
            cax = fig.add_axes((pos.x0 + 0.15 * pos.width, bottom * 0.45, 0.7 * pos.width, bottom * 0.18))
            bar = fig.colorbar(im, cax=cax, orientation="horizontal")
            sources.append(im)
            bar.ax.tick_params(labelsize=6, length=2, pad=1)
            if panel.label:
                bar.set_label(panel.label, fontsize=7, labelpad=1)
    if keeper is not None:
        keeper.keep(kind, key, fig, (images, sources))
    return _save(fig, path)


Mesh = tuple[np.ndarray, np.ndarray]


def registration_figure(path: str | Path, hemi: str, feature: str, template: tuple[Mesh, np.ndarray],
                        after: tuple[Mesh, np.ndarray] | None, before: tuple[Mesh, np.ndarray] | None,
                        title: str = "", missing_before: str = "", missing_after: str = "",
                        views: Sequence[str] = ("lateral", "medial"), pixels: int = VIEW_PIXELS,
                        keeper: FigureKeeper | None = None) -> Path:
    """Template, subject before and after registration, and their differences to the template.

    Every map is a ``((vertices, faces), values)`` pair in template space; maps are z-scored
    (the template over its non-zero vertices: zeros are the medial wall, drawn grey).
    ``before``/``after`` may be None: the column then shows ``missing_*``. ``keeper``: the
    report's :class:`FigureKeeper` (its figure of this layout is refilled; the same PNG).
    """
    cams = [SphereCamera(v, pixels) for v in views_for(hemi) if v.name in views]
    tpl_mesh, tpl_vals = template
    tpl_z = zscore(tpl_vals)
    tpl_img = sample_views(cams, tpl_mesh, tpl_z)[0]

    def imgs(item: tuple[Mesh, np.ndarray] | None) -> list[np.ndarray]:
        if item is None:
            return []
        mesh, vals = item
        z = zscore(vals)
        return sample_views(cams, mesh, z)[0]

    before_img, after_img = imgs(before), imgs(after)

    def diff(images: list[np.ndarray]) -> list[np.ndarray]:
        return [a - t for a, t in zip(images, tpl_img)] if images else []

    zlim = 2.5
    panels = [Panel(f"template {feature}", tpl_img, "RdBu_r", -zlim, zlim, "z"),
              Panel("before (rigid)", before_img, "RdBu_r", -zlim, zlim, "z", missing_before),
              Panel("after", after_img, "RdBu_r", -zlim, zlim, "z", missing_after),
              Panel("before - template", diff(before_img), "PuOr_r", -3.0, 3.0, "z difference", missing_before),
              Panel("after - template", diff(after_img), "PuOr_r", -3.0, 3.0, "z difference", missing_after)]
    return _figure(panels, cams, title or f"hemi-{hemi}: {feature}", Path(path), keeper=keeper, kind="registration")


def distortion_figure(path: str | Path, hemi: str, mesh: Mesh, areal: np.ndarray, shape: np.ndarray,
                      title: str = "", views: Sequence[str] = ("lateral", "medial", "dorsal", "ventral"),
                      pixels: int = 160, keeper: FigureKeeper | None = None) -> Path:
    """Areal (log2 area ratio) and shape (log2 anisotropy) distortion drawn on the registered
    sphere ``mesh`` (the native mesh in template space), one row per view. ``keeper``: as for
    :func:`registration_figure`."""
    cams = [SphereCamera(v, pixels) for v in views_for(hemi) if v.name in views]
    a, s = sample_views(cams, mesh, [areal, shape], keep=False)  # the participant's own mesh: not kept
    amax = float(max(0.5, np.nanpercentile(np.abs(areal), 99))) if np.isfinite(areal).any() else 1.0
    smax = float(max(0.5, np.nanpercentile(shape, 99))) if np.isfinite(shape).any() else 1.0
    # views as columns, one row per measure
    cols_a = [Panel(f"areal, {c.view.name}", [img], "RdBu_r", -amax, amax, "log2 area ratio")
              for c, img in zip(cams, a)]
    cols_s = [Panel(f"shape, {c.view.name}", [img], "magma", 0.0, smax, "log2 anisotropy")
              for c, img in zip(cams, s)]
    return _two_row_figure(cols_a, cols_s, cams, title or f"hemi-{hemi}: distortion", Path(path), keeper=keeper)


def _two_row_figure(row1: Sequence[Panel], row2: Sequence[Panel], cams: Sequence[SphereCamera], title: str,
                    path: Path, col_inches: float = 1.9, keeper: FigureKeeper | None = None) -> Path:
    """Rows of single-view panels (each with its own camera), one colour bar per row;
    ``keeper``: as for :func:`_figure`."""
    key = (col_inches, _layout(row1, cams), _layout(row2, cams))
    kept = keeper.get("rows", key) if keeper is not None else None
    if kept is not None:
        _refill(kept[0], kept[1], title, [(p, p.images[0], cam) for row in (row1, row2) for p, cam in zip(row, cams)],
                [(row[-1].vmin, row[-1].vmax) for row in (row1, row2) if row])
        return _save(kept[0], path)
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_cols = len(cams)
    height = col_inches * 2 + 0.6
    fig = Figure(figsize=(col_inches * n_cols + 1.0, height), dpi=FIGURE_DPI)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, n_cols, left=0.01, right=0.86, top=1 - 0.4 / height, bottom=0.03,
                            wspace=0.03, hspace=0.12)
    fig.suptitle(title, fontsize=10, y=0.995, va="top")
    images, sources = [], []
    for r, row in enumerate((row1, row2)):
        im = None
        for j, (panel, cam) in enumerate(zip(row, cams)):
            ax = _image_axes(fig, grid[r, j])
            ax.set_title(panel.title, fontsize=7)
            cmap = colormaps[panel.cmap]
            images.append(ax.imshow(_rgba(panel.images[0], cam, cmap, panel.vmin, panel.vmax),
                                    interpolation="nearest"))
            im = _mappable(cmap, panel.vmin, panel.vmax)
        if im is not None:
            pos = grid[r, n_cols - 1].get_position(fig)
            cax = fig.add_axes((0.885, pos.y0 + 0.1 * pos.height, 0.018, 0.8 * pos.height))
            bar = fig.colorbar(im, cax=cax)
            sources.append(im)
            bar.ax.tick_params(labelsize=6, length=2, pad=1)
            bar.set_label(row[0].label, fontsize=7)
    if keeper is not None:
        keeper.keep("rows", key, fig, (images, sources))
    return _save(fig, path)


def surface_figure(path: str | Path, hemi: str, mesh: Mesh, subject: np.ndarray, before: np.ndarray | None,
                   after: np.ndarray | None, areal: np.ndarray | None, feature: str = "sulc", kind: str = "inflated",
                   title: str = "", views: Sequence[str] = ("lateral", "medial"), width: int = 300,
                   keeper: FigureKeeper | None = None) -> Path:
    """Maps on the subject's own surface (inflated or midthickness), one row per view.

    Columns: the subject's ``feature`` | the template's feature carried to the subject's
    mesh before registration (``before``) | after registration (``after``) | subject -
    template after (z difference) | areal distortion (log2 area ratio) of the registered sphere
    relative to the native sphere. Every map is (V,)
    on ``mesh`` = (vertices (V, 3) mm, faces (F, 3)); ``before``/``after``/``areal`` may be
    None (the column says so). Feature maps are z-scored here (template maps: pass z-scores
    with NaN on the medial wall, drawn grey). ``width``: pixels across one view. ``keeper``: as
    for :func:`registration_figure`.
    """

    cams = cameras_for_mesh(mesh[0], mesh[1], [v for v in views_for(hemi) if v.name in views], width=width)
    subj_z = zscore(subject)

    def imgs(values: np.ndarray | None) -> list[np.ndarray]:
        return [] if values is None else [c.sample(values) for c in cams]

    zlim = 2.5
    panels = [Panel(f"subject {feature}", imgs(subj_z), "RdBu_r", -zlim, zlim, "z"),
              Panel("template, before registration", imgs(before), "RdBu_r", -zlim, zlim, "z", "no native sphere"),
              Panel("template, after", imgs(after), "RdBu_r", -zlim, zlim, "z", "no registered sphere"),
              Panel("subject - template after", imgs(None if after is None else subj_z - after), "PuOr_r",
                    -3.0, 3.0, "z difference", "no registered sphere")]
    if areal is not None and np.isfinite(areal).any():
        amax = float(max(0.5, np.nanpercentile(np.abs(areal), 99)))
        panels.append(Panel("areal distortion", imgs(areal), "RdBu_r", -amax, amax, "log2 area ratio"))
    else:
        panels.append(Panel("areal distortion", [], "RdBu_r", -1.0, 1.0, "", "no distortion map"))
    rows, cols = cams[0].inside.shape
    col_inches = width / FIGURE_DPI * 1.02
    return _figure(panels, cams, title or f"hemi-{hemi}: {feature} on the {kind} surface", Path(path),
                   col_inches=col_inches, row_inches=col_inches * rows / cols, keeper=keeper, kind="surface")


def group_figure(path: str | Path, columns: Mapping[str, Sequence[tuple[str, float, bool]]], title: str = "",
                 max_labels: int = 12) -> Path:
    """One strip plot per metric: ``columns[metric] = [(label, value, is_outlier), ...]``;
    outliers as red diamonds (the others blue dots), the ``max_labels`` farthest from the median with their label (a cohort's
    hundreds of labels would cover the plot; the report's outlier table names them all)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(columns)
    n = max(1, len(names))
    fig = Figure(figsize=(2.2 * n, 3.2), dpi=FIGURE_DPI)
    FigureCanvasAgg(fig)
    rng = np.random.default_rng(0)  # deterministic jitter
    for j, name in enumerate(names):
        ax = fig.add_subplot(1, n, j + 1)
        pts = [(lab, v, o) for lab, v, o in columns[name] if v is not None and np.isfinite(v)]
        vals = np.array([v for _, v, _ in pts], dtype=np.float64)
        out = np.array([o for _, _, o in pts], dtype=bool)
        x = rng.uniform(-0.18, 0.18, len(vals))
        if len(vals):
            ax.boxplot(vals, positions=[0], widths=0.5, showfliers=False,
                       medianprops={"color": "k"}, boxprops={"color": "0.5"}, whiskerprops={"color": "0.5"},
                       capprops={"color": "0.5"})
            ax.scatter(x[~out], vals[~out], s=12, color="tab:blue", alpha=0.8, zorder=3)
            # a marker of their own besides the colour: red and blue look alike to some readers
            ax.scatter(x[out], vals[out], s=26, color="tab:red", marker="D", zorder=4)
            far = np.abs(vals - np.median(vals))
            named = {int(k) for k in np.flatnonzero(out)[np.argsort(-far[out], kind="stable")][:max_labels]}
            for k, (xi, (lab, v, o)) in enumerate(zip(x, pts)):
                if k in named:
                    ax.annotate(lab, (xi, v), fontsize=6, color="tab:red", xytext=(3, 2), textcoords="offset points")
        ax.set_xticks([])
        ax.set_xlim(-0.6, 0.6)
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def png_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of a PNG from its header; ValueError if it is not a PNG."""
    head = Path(path).read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")

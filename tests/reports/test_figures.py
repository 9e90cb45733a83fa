"""The sphere views of the report figures: sampling maps into views, the weights kept per
process, the undecorated image axes, the figures kept for the next hemisphere."""

from __future__ import annotations

import numpy as np

from geomorph_bids.reports import figures
from geomorph_bids.reports.figures import SphereCamera, sample_views
from geomorph_bids.reports.views import views_for
from geomorph_bids.sphere.icosphere import icosphere


def _mesh(level: int = 2) -> tuple[np.ndarray, np.ndarray]:
    v, f = icosphere(level)
    return np.asarray(v, dtype=np.float64) * 100.0, np.asarray(f, dtype=np.int64)


def _brute_force(cam: SphereCamera, vertices: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Inverse squared distance weighting of the 3 nearest vertices, by full distance matrix."""
    v = vertices * (100.0 / np.linalg.norm(vertices, axis=1, keepdims=True))
    d = np.linalg.norm(cam.points[:, None, :] - v[None, :, :], axis=2)
    idx = np.argsort(d, axis=1)[:, :3]
    w = 1.0 / np.maximum(np.take_along_axis(d, idx, axis=1), 1e-6) ** 2
    img = np.full(cam.inside.shape, np.nan)
    img[cam.inside] = (w * values[idx]).sum(axis=1) / w.sum(axis=1)
    return img


def test_views_sample_the_three_nearest_vertices():
    v, f = _mesh()
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=len(v)), rng.normal(size=len(v))
    cams = [SphereCamera(view, pixels=24) for view in views_for("R")]
    imgs = sample_views(cams, (v, f), [a, b], keep=False)
    assert len(imgs) == 2 and all(len(row) == 4 for row in imgs)
    for k, values in enumerate((a, b)):
        for i, cam in enumerate(cams):
            want = _brute_force(cam, v, values)
            assert np.array_equal(np.isnan(imgs[k][i]), np.isnan(want))
            assert np.nanmax(np.abs(imgs[k][i] - want)) < 1e-9
            assert np.array_equal(cam.sample((v, f), values), imgs[k][i], equal_nan=True)


def test_nan_vertices_drop_out_of_the_weights():
    v, f = _mesh()
    values = np.ones(len(v))
    values[: len(v) // 2] = np.nan
    img = SphereCamera(views_for("L")[0], pixels=24).sample((v, f), values)
    drawn = img[np.isfinite(img)]
    assert drawn.size and np.allclose(drawn, 1.0)


def test_weights_are_kept_by_vertex_content_not_identity():
    v, f = _mesh()
    values = np.arange(len(v), dtype=np.float64)
    cams = [SphereCamera(view, pixels=20) for view in views_for("L")[:2]]
    figures._sphere_weights.cache_clear()
    first = sample_views(cams, (v, f), values)[0]
    again = sample_views(cams, (v.copy(), f), values)[0]          # another array, the same numbers
    info = figures._sphere_weights.cache_info()
    assert (info.misses, info.hits) == (1, 1)
    assert all(np.array_equal(x, y, equal_nan=True) for x, y in zip(first, again))
    moved = v.copy()
    moved[0] *= 1.01
    sample_views(cams, (moved, f), values)                         # other numbers: drawn afresh
    sample_views(cams, (v, f), values, keep=False)                 # not kept: the cache is not used
    info = figures._sphere_weights.cache_info()
    assert (info.misses, info.hits, info.currsize) == (2, 1, 2)
    idx, w = figures._sphere_weights(figures._Vertices(v), tuple(c.view for c in cams), 20)[0]
    assert not idx.flags.writeable and not w.flags.writeable
    figures._sphere_weights.cache_clear()


def test_image_axes_hide_their_axes_and_keep_the_title_where_it_was():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    boxes = []
    for hidden in (False, True):
        fig = Figure(figsize=(3, 2), dpi=100)
        canvas = FigureCanvasAgg(fig)
        grid = fig.add_gridspec(1, 2)
        axes = []
        for j in range(2):
            if hidden:
                ax = figures._image_axes(fig, grid[0, j])
            else:
                ax = fig.add_subplot(grid[0, j])
                ax.set_axis_off()
            ax.imshow(np.arange(12.0).reshape(3, 4), interpolation="nearest")
            ax.set_title(f"panel {j}", fontsize=8)
            axes.append(ax)
        canvas.draw()
        boxes.append([tuple(np.round(ax.title.get_window_extent().bounds, 6)) for ax in axes])
        pixels = np.asarray(canvas.buffer_rgba()).copy()
        boxes[-1].append(pixels.tobytes())
        if hidden:
            assert not any(ax.xaxis.get_visible() or ax.yaxis.get_visible() for ax in axes)
    assert boxes[0] == boxes[1]


def _hemisphere(seed: int, level: int = 2):
    """A rotated icosphere with a smooth map and its distortion-like maps (tiny, random)."""
    rng = np.random.default_rng(seed)
    v, f = _mesh(level)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    moved = v @ q
    values = np.sin(moved[:, 0] / 30.0) + 0.3 * rng.normal(size=len(v))
    return (moved, f), values, rng.normal(scale=0.3 + seed, size=len(v)), np.abs(rng.normal(size=len(v)))


def _registration(path, keeper, seed: int, after: bool = True):
    mesh, values, _, _ = _hemisphere(seed)
    tpl_mesh, tpl_values, _, _ = _hemisphere(99)
    return figures.registration_figure(path, "L", "sulc", (tpl_mesh, tpl_values), (mesh, values) if after else None,
                                       (mesh, values[::-1].copy()), title=f"subject {seed}", pixels=48,
                                       keeper=keeper)


def _distortion(path, keeper, seed: int):
    mesh, _, areal, shape = _hemisphere(seed)
    return figures.distortion_figure(path, "R", mesh, areal, shape, title=f"subject {seed}", pixels=40,
                                     keeper=keeper)


def test_refilled_figures_are_the_same_png_as_fresh_ones(tmp_path):
    """A keeper's figure refilled with another hemisphere's images, title and colour limits (the
    distortion figures' limits differ here) writes the same bytes as a figure built for them;
    a figure of another layout (a missing column) is built, not refilled."""
    keeper = figures.FigureKeeper()
    hits = []
    get = keeper.get
    keeper.get = lambda kind, key: hits.append(get(kind, key) is not None) or get(kind, key)
    for draw in (_registration, _distortion):
        draw(tmp_path / f"{draw.__name__}_first.png", keeper, 1)
        refilled = draw(tmp_path / f"{draw.__name__}_kept.png", keeper, 2).read_bytes()
        fresh = draw(tmp_path / f"{draw.__name__}_fresh.png", None, 2).read_bytes()
        assert refilled == fresh
        assert refilled != (tmp_path / f"{draw.__name__}_first.png").read_bytes()
    assert hits == [False, True, False, True]
    missing = _registration(tmp_path / "missing.png", keeper, 3, after=False).read_bytes()
    assert hits[-1] is False
    assert missing == _registration(tmp_path / "missing_fresh.png", None, 3, after=False).read_bytes()
    # the keeper now holds the figure without the 'after' column: a full figure is built again
    _registration(tmp_path / "full.png", keeper, 4)
    assert hits[-1] is False


def test_keeper_holds_the_last_figure_of_each_kind():
    keeper = figures.FigureKeeper()
    keeper.keep("a", (1,), "fig-1", ([], []))
    keeper.keep("b", (1,), "fig-2", ([], []))
    assert keeper.get("a", (1,)) == ("fig-1", ([], [])) and keeper.get("a", (2,)) is None
    keeper.keep("a", (2,), "fig-3", ([], []))
    assert keeper.get("a", (1,)) is None and keeper.get("a", (2,))[0] == "fig-3" and keeper.get("b", (1,))[0] == "fig-2"

"""The orthographic mesh renderer (z-buffer rasterisation) and the figure on the subject's surface."""

from __future__ import annotations

import numpy as np
import pytest

from geomorph_bids.reports.figures import png_size, surface_figure
from geomorph_bids.reports.views import View, views_for
from geomorph_bids.reports.render import MeshCamera, cameras_for_mesh, rasterise
from geomorph_bids.sphere.icosphere import icosphere

FRONT = View("front", (0.0, 0.0, 1.0), (0.0, 1.0, 0.0))  # looking down -z: x right, y up, z towards the viewer


def _square(z: float, half: float, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    v = np.array([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]], dtype=np.float64)
    v[:, 0] += shift
    return v, np.array([[0, 1, 2], [0, 2, 3]])


def _two_squares(front_first: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A small square (value 1) in front of a large one (value 2); the order of the faces in
    the array does not decide what is seen."""
    vf, ff = _square(1.0, 2.0)
    vb, fb = _square(-1.0, 4.0)
    parts = [(vf, ff, 1.0), (vb, fb, 2.0)] if front_first else [(vb, fb, 2.0), (vf, ff, 1.0)]
    verts, faces, vals, off = [], [], [], 0
    for v, f, val in parts:
        verts.append(v)
        faces.append(f + off)
        vals.append(np.full(len(v), val))
        off += len(v)
    return np.vstack(verts), np.vstack(faces), np.concatenate(vals)


@pytest.mark.parametrize("front_first", [True, False])
def test_hidden_surface_two_colours(front_first):
    v, f, vals = _two_squares(front_first)
    cam = MeshCamera(v, f, FRONT, scale=5.0, centre=np.zeros(3), shape=(50, 50))
    img = cam.sample(vals)
    # pixel centres at (c + 0.5 - 25) / 5 mm from the centre; the front square spans |x|, |y| < 2 mm
    c = (np.arange(50) + 0.5 - 25.0) / 5.0
    x, y = np.meshgrid(c, -c)
    front = (np.abs(x) < 1.9) & (np.abs(y) < 1.9)
    back_only = ~((np.abs(x) < 2.1) & (np.abs(y) < 2.1)) & (np.abs(x) < 3.9) & (np.abs(y) < 3.9)
    outside = (np.abs(x) > 4.1) | (np.abs(y) > 4.1)
    assert front.sum() > 300 and back_only.sum() > 600
    assert np.allclose(img[front], 1.0, atol=1e-9)   # the back square never shows through
    assert np.allclose(img[back_only], 2.0, atol=1e-9)
    assert np.all(np.isnan(img[outside])) and not cam.inside[outside].any()
    # seen from behind, the large square hides the small one entirely
    back = MeshCamera(v, f, View("back", (0.0, 0.0, -1.0), (0.0, 1.0, 0.0)), scale=5.0, centre=np.zeros(3),
                      shape=(50, 50))
    seen = back.sample(vals)
    assert np.allclose(seen[back.inside], 2.0, atol=1e-9) and back.inside.sum() == cam.inside.sum()


def test_closed_sphere_front_half_only_and_no_holes():
    v, f = icosphere(4)
    v = np.asarray(v, dtype=np.float64) * (10.0 / 100.0)     # radius 10 mm
    cam = MeshCamera(v, f, View("lateral", (-1.0, 0.0, 0.0), (0.0, 0.0, 1.0)), scale=4.0, centre=np.zeros(3),
                     shape=(90, 90))
    img = cam.sample(v[:, 0])                                # x: the viewer sits at -x
    edge = 10.0 * 0.032                                      # ico-4 edge length at radius 10 (mm), generous
    assert np.nanmax(img) < edge                             # only the near (x < 0) half is drawn
    c = (np.arange(90) + 0.5 - 45.0) / 4.0
    x, y = np.meshgrid(c, -c)
    r = np.hypot(x, y)
    assert cam.inside[r < 9.5].all()                         # no holes inside the silhouette
    assert not cam.inside[r > 10.3].any()
    # visible depth = -sqrt(R^2 - r^2) up to the mesh's chordal error
    inner = r < 8.0
    assert np.allclose(img[inner], -np.sqrt(100.0 - r[inner] ** 2), atol=0.1)
    # Gouraud shading: brightest at the centre (normal towards the viewer), darker at the rim
    assert cam.shade[45, 45] > 0.95 and cam.shade[45, 45] > cam.shade[45, 6] + 0.3


def test_linear_maps_are_exact_inside_faces():
    v, f = _square(0.0, 3.0)
    cam = MeshCamera(v, f, FRONT, scale=10.0, centre=np.zeros(3), shape=(64, 64))
    vals = 2.0 * v[:, 0] - 0.5 * v[:, 1] + 1.0
    img = cam.sample(vals)
    c = (np.arange(64) + 0.5 - 32.0) / 10.0
    x, y = np.meshgrid(c, -c)
    m = cam.inside
    assert m.sum() == 60 * 60
    assert np.allclose(img[m], 2.0 * x[m] - 0.5 * y[m] + 1.0, atol=1e-9)
    nan_corner = vals.copy()
    nan_corner[0] = np.nan                                   # corner (-3, -3): face 0 and face 1 use it
    assert np.isnan(cam.sample(nan_corner)[m]).all()
    with pytest.raises(ValueError):
        cam.sample(vals[:3])


def test_rasterise_background_and_empty():
    face, bary = rasterise(np.zeros((3, 2)), np.zeros(3), np.array([[0, 1, 2]]), (4, 5))
    assert face.shape == (4, 5) and (face == -1).all() and (bary == 0).all()


def test_cameras_share_scale_and_size():
    v, f = icosphere(3)
    v = np.asarray(v, dtype=np.float64) * np.array([0.3, 0.8, 0.5])   # an elongated blob
    cams = cameras_for_mesh(v, f, views_for("L")[:2], width=200)
    assert [c.inside.shape for c in cams] == [cams[0].inside.shape] * 2
    rows, cols = cams[0].inside.shape
    assert cols == 200 and abs(rows / cols - 0.5 / 0.8) < 0.05
    lateral, medial = (c.sample(v[:, 1]) for c in cams)
    # the lateral view of a left hemisphere (from -x) has anterior (+y) on the left, the medial on the right
    assert np.nanmean(lateral[:, :80]) > 10 and np.nanmean(medial[:, :80]) < -10


def test_surface_figure(tmp_path):
    v, f = icosphere(4)
    v = np.asarray(v, dtype=np.float64)
    mesh = (v * np.array([0.35, 0.8, 0.55]), f)
    feat = np.sin(v[:, 0] / 20.0) + np.cos(v[:, 2] / 15.0)
    tpl = (feat - feat.mean()) / feat.std()
    tpl_nan = tpl.copy()
    tpl_nan[v[:, 0] > 70] = np.nan                            # a "medial wall", drawn grey
    areal = v[:, 1] / 200.0
    path = surface_figure(tmp_path / "fig.png", "L", mesh, feat, tpl_nan, tpl, areal, title="test")
    w, h = png_size(path)
    assert w > 1200 and 300 < h < w
    from matplotlib.image import imread

    img = imread(str(path))[..., :3]
    assert img.std() > 0.1
    # the two view rows differ (lateral vs medial), and the grey medial wall shows in the medial row
    top, bottom = img[: h // 2], img[h // 2:]
    assert np.abs(top - bottom).mean() > 0.02
    grey = np.all(np.abs(img - 0.82 * np.array([1, 1, 1])) < 0.12, axis=-1)  # shaded grey of NaN
    assert grey[h // 2:].sum() > grey[: h // 2].sum() + 200
    # without maps the columns say so and the figure is still drawn
    path2 = surface_figure(tmp_path / "fig2.png", "R", mesh, feat, None, None, None)
    assert png_size(path2)[0] == w


def _rasterise_reference(xy, depth, faces, shape):
    """Pixel by pixel, face by face (Python loops, tiny meshes only): the pixel centres inside
    each face, its barycentric weights in the rasteriser's arithmetic, the nearest face kept
    (the first listed on a tie)."""
    rows, cols = shape
    face_img = np.full(shape, -1, dtype=np.int64)
    bary_img = np.zeros((*shape, 3))
    best = np.full(shape, -np.inf)
    for k, (i, j, l) in enumerate(faces):
        (ax, ay), (bx, by), (cx, cy) = xy[i], xy[j], xy[l]
        e1x, e1y, e2x, e2y = bx - ax, by - ay, cx - ax, cy - ay
        area = e1x * e2y - e1y * e2x
        if abs(area) <= 1e-12:
            continue
        for r in range(rows):
            for c in range(cols):
                qx, qy = c + 0.5 - ax, r + 0.5 - ay
                b1 = (qx * e2y - qy * e2x) * (1.0 / area)
                b2 = (e1x * qy - e1y * qx) * (1.0 / area)
                b0 = 1.0 - b1 - b2
                if min(b0, b1, b2) < -1e-9:
                    continue
                d = depth[i] * b0 + depth[j] * b1 + depth[l] * b2
                if d > best[r, c]:
                    best[r, c], face_img[r, c], bary_img[r, c] = d, k, (b0, b1, b2)
    return face_img, bary_img


@pytest.mark.parametrize("seed", [0, 1])
def test_rasterise_matches_a_pixel_by_pixel_reference(seed):
    """Every face of a shuffled, randomly turned icosphere against every pixel centre: the same
    visible face and the same barycentric weights, bit for bit (faces partly off the image too)."""
    rng = np.random.default_rng(seed)
    v, f = icosphere(1)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    v = np.asarray(v, dtype=np.float64) @ q * (9.0 / 100.0)
    f = np.asarray(f, dtype=np.int64)[rng.permutation(len(f))]
    xy = v[:, :2] + np.array([10.3, 8.7])                      # partly outside a 16 x 20 image
    face, bary = rasterise(xy, v[:, 2], f, (16, 20))
    ref_face, ref_bary = _rasterise_reference(xy, v[:, 2], f, (16, 20))
    assert (face >= 0).sum() > 150 and (face < 0).sum() > 20
    assert np.array_equal(face, ref_face)
    assert np.array_equal(bary, ref_bary)


def test_vertex_normals_sum_the_faces_in_order():
    """Area-weighted normals from one bincount per coordinate equal corner-by-corner
    accumulation (np.add.at) bit for bit; unit length; outward on a sphere."""
    from geomorph_bids.reports.render import _vertex_normals

    v, f = icosphere(3)
    v = np.asarray(v, dtype=np.float64) * np.array([0.3, 0.8, 0.5])
    f = np.asarray(f, dtype=np.int64)
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    ref = np.zeros_like(v)
    for k in range(3):
        np.add.at(ref, f[:, k], fn)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    n = _vertex_normals(v, f)
    assert np.array_equal(n, ref)
    assert np.allclose(np.linalg.norm(n, axis=1), 1.0) and (np.sum(n * v, axis=1) > 0).all()


def test_sample_covers_only_the_mesh_and_matches_every_pixel():
    """Maps sampled from the covered pixels' corners: the barycentric sums of the whole-image
    formula on the mesh, NaN off the mesh and where a weighted corner is NaN."""
    v, f = icosphere(2)
    v = np.asarray(v, dtype=np.float64) * (10.0 / 100.0)
    cam = MeshCamera(v, f, FRONT, scale=3.0, centre=np.zeros(3), shape=(64, 64))
    vals = np.sin(v[:, 0]) + v[:, 1]
    vals[::9] = np.nan
    img = cam.sample(vals)
    corners = np.asarray(f)[np.where(cam.inside, cam.face, 0)]
    cv = vals[corners]
    full = (np.where(np.isfinite(cv), cv, 0.0) * cam.bary).sum(axis=2)
    full[(~np.isfinite(cv) & (cam.bary > 1e-9)).any(axis=2) | ~cam.inside] = np.nan
    assert np.array_equal(img, full, equal_nan=True)
    assert np.isnan(img[~cam.inside]).all() and np.isfinite(img).sum() > 500 and np.isnan(img[cam.inside]).any()

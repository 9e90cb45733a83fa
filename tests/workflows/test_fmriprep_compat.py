"""init_geomorph_sulc_wf in place of sMRIPrep's init_msm_sulc_wf: the same interface, fed and
sunk exactly as sMRIPrep's anatomical workflow does it; and the compat sinks in the graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geomorph_bids.workflows import GEOMORPH_SPHERE_SIDECAR, init_geomorph_sulc_wf

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ds-smriprep-example"
ANAT = EXAMPLE / "derivatives" / "smriprep" / "sub-01" / "ses-1" / "anat"


def pair(suffix: str) -> list[str]:
    return [str(ANAT / f"sub-01_ses-1_hemi-{h}_{suffix}") for h in "LR"]


def test_same_interface_as_init_msm_sulc_wf():
    from smriprep.workflows.surfaces import init_msm_sulc_wf

    ours, theirs = init_geomorph_sulc_wf(), init_msm_sulc_wf()
    for node in ("inputnode", "outputnode"):
        assert set(ours.get_node(node).inputs.copyable_trait_names()) == \
            set(theirs.get_node(node).inputs.copyable_trait_names())
    assert ours.name == "geomorph_sulc_wf" and "GeoMorph" in ours.__desc__
    # what a flagged hemisphere passes on is said where a reader of the outputs and the methods looks
    assert "quality gates would keep the FreeSurfer-derived fsLR sphere" in ours.__desc__
    assert "quality gates" not in init_geomorph_sulc_wf(on_flagged="error").__desc__
    assert "GeoMorphQualityFlagged" in GEOMORPH_SPHERE_SIDECAR["Description"]
    assert init_geomorph_sulc_wf(sloppy=True, name="msm_sulc_wf").name == "msm_sulc_wf"


def _anat_fit_graph(base_dir: Path, output_dir: Path, **builder):
    """Stage 10 of sMRIPrep's init_anat_fit_wf with our builder swapped in (its three lines
    changed): the same buffers feed it, sMRIPrep's own ds_surfaces_wf writes its output."""
    from nipype.interfaces import utility as niu
    from nipype.pipeline import engine as pe
    from smriprep.workflows.outputs import init_ds_surfaces_wf

    workflow = pe.Workflow(name="anat_fit_wf", base_dir=str(base_dir))
    surfaces_buffer = pe.Node(niu.IdentityInterface(fields=["sulc", "sphere"]), name="surfaces_buffer")
    surfaces_buffer.inputs.sulc, surfaces_buffer.inputs.sphere = pair("sulc.shape.gii"), pair("sphere.surf.gii")
    fsLR_buffer = pe.Node(niu.IdentityInterface(fields=["sphere_reg_fsLR"]), name="fsLR_buffer")
    fsLR_buffer.inputs.sphere_reg_fsLR = pair("space-fsLR_desc-reg_sphere.surf.gii")
    sourcefile_buffer = pe.Node(niu.IdentityInterface(fields=["source_files"]), name="sourcefile_buffer")
    sourcefile_buffer.inputs.source_files = [str(EXAMPLE / "sub-01" / "ses-1" / "anat" / "sub-01_ses-1_T1w.nii.gz")]
    msm_buffer = pe.Node(niu.IdentityInterface(fields=["sphere_reg_msm"]), name="msm_buffer")

    msm_sulc_wf = init_geomorph_sulc_wf(sloppy=False, omp_nthreads=1, **builder)     # line 2 of 3
    ds_msmsulc_wf = init_ds_surfaces_wf(output_dir=str(output_dir), surfaces=["sphere_reg_msm"],
                                        name="ds_msmsulc_wf")
    ds_msmsulc_wf.get_node("ds_sphere_reg_msm").inputs.meta_dict = GEOMORPH_SPHERE_SIDECAR  # line 3 of 3
    workflow.connect([
        (surfaces_buffer, msm_sulc_wf, [("sulc", "inputnode.sulc"), ("sphere", "inputnode.sphere")]),
        (fsLR_buffer, msm_sulc_wf, [("sphere_reg_fsLR", "inputnode.sphere_reg_fsLR")]),
        (sourcefile_buffer, ds_msmsulc_wf, [("source_files", "inputnode.source_files")]),
        (msm_sulc_wf, ds_msmsulc_wf, [("outputnode.sphere_reg_fsLR", "inputnode.sphere_reg_msm")]),
        (ds_msmsulc_wf, msm_buffer, [("outputnode.sphere_reg_msm", "sphere_reg_msm")]),
    ])
    return workflow


@pytest.mark.slow  # registers both hemispheres (~15-40 s on 2 busy cores)
def test_swapped_in_for_msmsulc_in_smripreps_graph(tmp_path):
    import json

    from geomorph_bids.io import read_feature, read_surface
    from geomorph_bids.io.templates import load_density_sphere
    from geomorph_bids.resources import package_data_file
    from geomorph_bids.sphere.resample import resample
    from smriprep.utils.bids import collect_derivatives

    _anat_fit_graph(tmp_path / "work", tmp_path / "out").run()
    out = tmp_path / "out" / "smriprep"
    found = collect_derivatives(out, "01", std_spaces=[], session_id="1")
    assert [Path(p).name for p in found["sphere_reg_msm"]] == [
        f"sub-01_ses-1_hemi-{h}_space-fsLR_desc-msmsulc_sphere.surf.gii" for h in "LR"]
    meta = json.loads(Path(found["sphere_reg_msm"][0]).with_suffix("").with_suffix(".json").read_text())
    assert meta["GeneratedBy"][0]["Name"] == "geomorph-bids"
    for h, path in zip("LR", found["sphere_reg_msm"]):
        native, moved = read_surface(pair("sphere.surf.gii")["LR".index(h)]), read_surface(path)
        assert np.array_equal(native.faces, moved.faces)
        v32, f32, _ = load_density_sphere("fsLR", h, "32k", templateflow_home="")
        s164 = read_surface(package_data_file("fsLR_sphere_164k", hemi=h))
        template = resample(-read_feature(package_data_file("fsLR_refsulc_164k", hemi=h)),
                            (s164.vertices, s164.faces), (v32, f32), "adap_bary_area")
        sulc = read_feature(pair("sulc.shape.gii")["LR".index(h)])
        cc = {}
        for name, sphere in (("geomorph", moved), ("rigid", read_surface(pair("space-fsLR_desc-reg_sphere.surf.gii")[
                "LR".index(h)]))):
            cc[name] = np.corrcoef(resample(sulc, (sphere.vertices, sphere.faces), (v32, f32), "adap_bary_area"),
                                   template)[0, 1]
        assert cc["geomorph"] > 0.95 and cc["geomorph"] > cc["rigid"] + 0.05, (h, cc)


@pytest.mark.slow  # registers both hemispheres (~15-40 s on 2 busy cores)
def test_a_flagged_registration_is_replaced_by_the_fslr_input_or_fails_the_node(tmp_path):
    """The swap-in workflow judges each hemisphere with the BIDS-App's gates: flagged (here by a
    correlation floor no registration reaches), sMRIPrep's sink writes the sphere_reg_fsLR input under
    the msmsulc name with the reasons in its GIFTI metadata; on_flagged="error" fails the node naming
    subject, session and hemisphere. Nipype reruns only the gate (the registrations are cached)."""
    import nibabel as nib

    from geomorph_bids.io import read_surface
    from geomorph_bids.io.fmriprep_compat import FLAGGED_SPHERE_META
    from geomorph_bids.quality import QualityThresholds

    strict = QualityThresholds(min_cc_after=1.0)
    _anat_fit_graph(tmp_path / "work", tmp_path / "out", thresholds=strict).run()
    anat = tmp_path / "out" / "smriprep" / "sub-01" / "ses-1" / "anat"
    for h, reg in zip("LR", pair("space-fsLR_desc-reg_sphere.surf.gii")):
        written = anat / f"sub-01_ses-1_hemi-{h}_space-fsLR_desc-msmsulc_sphere.surf.gii"
        assert np.allclose(read_surface(written).vertices, read_surface(reg).vertices, atol=1e-4)
        note = dict(nib.load(written).darrays[0].meta)[FLAGGED_SPHERE_META]
        assert note.startswith("FLAGGED: correlation: sulc correlates 0.9") and "(minimum 1)" in note

    failing = _anat_fit_graph(tmp_path / "work", tmp_path / "out2", thresholds=strict, on_flagged="error")
    failing.config["execution"]["crashdump_dir"] = str(tmp_path / "crash")  # not the current folder
    with pytest.raises(RuntimeError, match=r"sub-01 ses-1 hemi-L: GeoMorph's registration to fsLR is FLAGGED"):
        failing.run()
    crashes = [p.name for p in (tmp_path / "crash").iterdir()]
    assert crashes and all("quality_gate" in n for n in crashes), crashes
    with pytest.raises(ValueError, match="on_flagged must be one of fallback, error"):
        init_geomorph_sulc_wf(on_flagged="msmsulc")


def test_compat_sinks_in_the_participant_graph(tmp_path):
    """--fmriprep-compat adds one file per sMRIPrep name to each hemisphere's write_outputs (and,
    for fsaverage, the carrying node); --cifti-output one dscalar per subject/session fed by both
    hemispheres' write_outputs."""
    from geomorph_bids.engine.model_choice import optimiser
    from geomorph_bids.io.discover import discover
    from geomorph_bids.io.template_ref import TemplateRef
    from geomorph_bids.workflows import RunConfig, SubjectJob, hemi_outputs, init_geomorph_wf

    job = SubjectJob("01", "1", discover("01", EXAMPLE, session="1"))
    for template, expected in (("fsLR", {"ds_sphere_reg_msm"}), ("fsaverage", {"ds_sphere_reg", "ds_sphere_reg_fsLR"})):
        config = RunConfig(bids_dir=EXAMPLE, output_dir=tmp_path / "out", work_dir=tmp_path / "work",
                           template=TemplateRef.bundled(template), density="32k" if template == "fsLR" else "41k",
                           model=optimiser(template), features=optimiser(template).channels, fmriprep_compat=True,
                           cifti=template == "fsLR")
        wf = init_geomorph_wf([job], config)
        names = wf.list_node_names()
        write = wf.get_node(next(n for n in names if n.endswith("hemi_L_wf.write_outputs")))
        written = {Path(f["path"]).name for f in write.inputs.files}
        wanted = {p.name for p in hemi_outputs(job.inputs.hemis["L"], config).fmriprep_spheres.values()}
        assert len(wanted) == len(expected) and wanted <= written, written
        assert any(n.endswith("hemi_L_wf.to_fslr") for n in names) == (template == "fsaverage")
        assert any(n.endswith("cifti_wf.ds_cifti") for n in names) == (template == "fsLR")


def test_each_registration_reserves_what_its_sphere_needs_when_it_is_scheduled(tmp_path):
    """Twenty-fourth session: init_geomorph_sulc_wf's registration reserved 0.66 GB of MultiProc's memory (a
    163,842-vertex sphere's) whatever the sphere: its spheres are the workflow's inputs, unknown while the graph
    is built. A 655,362-vertex one needs 1.15 GB. Now each hemisphere's node reads its sphere's header when
    MultiProc schedules it (nipype's ram_estimator: the node's mem_gb_runtime) and reserves what that one needs;
    an ordinary sphere keeps 0.66 GB."""
    from nipype.pipeline.engine import Node

    if not hasattr(Node, "mem_gb_runtime"):
        pytest.skip("this nipype has no ram_estimator (before 1.11): the node keeps its 0.66 GB")
    hires, ordinary = tmp_path / "lh.sphere", tmp_path / "rh.sphere"
    for path, n in ((hires, 655362), (ordinary, 163842)):
        head = b"\xff\xff\xfe" + b"created by test\n\n" + np.array([n, 2 * n - 4], ">i4").tobytes()
        path.write_bytes(head)  # the rest sparse: a header is believed only where the file has its bytes
        with open(path, "r+b") as fh:
            fh.truncate(len(head) + 12 * n + 12 * (2 * n - 4))
    register = init_geomorph_sulc_wf().get_node("register")
    assert register.mem_gb == 0.66  # the graph's figure (MultiProc's check before the run)
    register.inputs.sphere = [str(hires), str(ordinary)]
    register.inputs.feature_files = [[str(hires)], [str(ordinary)]]
    register.inputs.sphere_reg = [str(hires), str(ordinary)]
    nodes = [node for _, node in register._make_nodes(cwd=str(tmp_path))]  # what MultiProc schedules
    assert [node.mem_gb_runtime for node in nodes] == [1.15, 0.66]
    assert nodes[0].ram_estimator_str == "sphere: 655,362 vertices -> 1.15 GB"
    from geomorph_bids.interfaces.registration import SphereMemory

    assert isinstance(register.ram_estimator, SphereMemory)
    assert SphereMemory()(register.inputs) == (1.15, "sphere: 655,362 vertices -> 1.15 GB")  # one MapNode of both

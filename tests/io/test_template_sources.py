"""io/template_sources.py: the template's maps from an explicit folder, TemplateFlow, the user's
FreeSurfer fsaverage, then the bundled ones; files on disk, placeholders, fallbacks, provenance."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from geomorph_bids.errors import InputError
from geomorph_bids.io.gifti import write_metric, write_surface
from geomorph_bids.io.template_ref import TemplateRef, resolve_template_ref
from geomorph_bids.io.template_sources import (LOW_RESOLUTION_NOTE, TemplateSearch, describe_provenance,
                                               discover_sources, load_source, low_resolution_note, low_resolution_used,
                                               sample_on_grid)
from geomorph_bids.io.templates import load_template
from geomorph_bids.sphere.icosphere import icosphere

LEVEL = 5  # the tiny fsaverage of the write_fsaverage fixture: 10,242 vertices
N = 10242


@pytest.fixture
def write_fsaverage(tiny_fsaverage):
    return tiny_fsaverage


@pytest.fixture
def tiny_maps(tiny_fsaverage_values):
    return tiny_fsaverage_values


@pytest.fixture
def write_templateflow(tiny_maps):
    return lambda home, **kw: _write_templateflow(home, tiny_maps, **kw)


def _write_templateflow(home: Path, tiny_maps, hemis=("L", "R"), empty: bool = False, scale: float = 1.0) -> Path:
    """``<home>/tpl-fsaverage/tpl-fsaverage_hemi-H_den-10k_{sphere,sulc}`` (real or zero-byte)."""
    folder = home / "tpl-fsaverage"
    folder.mkdir(parents=True, exist_ok=True)
    v, f = icosphere(LEVEL)
    for hemi in hemis:
        stem = folder / f"tpl-fsaverage_hemi-{hemi}_den-10k"
        if empty:  # what `pip install templateflow` leaves: zero-byte placeholders
            for suffix in ("_sphere.surf.gii", "_sulc.shape.gii", "_curv.shape.gii"):
                Path(f"{stem}{suffix}").write_bytes(b"")
            continue
        write_surface(Path(f"{stem}_sphere.surf.gii"), v, f, hemi=hemi, geometric_type="Spherical")
        write_metric(Path(f"{stem}_sulc.shape.gii"), tiny_maps(hemi, scale)["sulc"].astype(np.float32), hemi=hemi)
    return folder


def kinds(ref: TemplateRef, hemi: str = "L") -> list[tuple[str, str]]:
    return [(s.kind, s.folder.name) for s in ref.candidates(hemi)]


def test_discovery_order_with_files_on_disk(tmp_path, write_fsaverage, write_templateflow, tiny_maps):
    explicit = write_fsaverage(tmp_path / "mine", scale=0.5)
    tf = write_templateflow(tmp_path / "tf")
    bids_fs = write_fsaverage(tmp_path / "bids_fs")
    subjects = write_fsaverage(tmp_path / "subjects")
    fshome = write_fsaverage(tmp_path / "fshome" / "subjects")
    env = {"TEMPLATEFLOW_HOME": str(tmp_path / "tf"), "SUBJECTS_DIR": str(tmp_path / "subjects"),
           "FREESURFER_HOME": str(tmp_path / "fshome")}
    where = TemplateSearch.from_environment(explicit, tmp_path / "bids_fs", environ=env)
    ref = resolve_template_ref("fsaverage", where=where)
    assert [(s.kind, s.folder) for s in ref.candidates("L")] == [
        ("folder", explicit), ("templateflow", tf), ("freesurfer", bids_fs), ("freesurfer", subjects),
        ("freesurfer", fshome), ("bundled", ref.candidates("L")[-1].folder)]
    assert ref.candidates("L")[0].features == ("sulc", "curv") and ref.candidates("L")[1].features == ("sulc",)
    tpl = ref.load("L", ("sulc",))
    assert tpl.provenance["template_source"] == "folder" and tpl.provenance["template_source_path"] == str(explicit)
    # each source, removed in turn, hands over to the next
    assert kinds(resolve_template_ref("fsaverage", where=TemplateSearch.from_environment(None, None, env)))[0] == \
        ("templateflow", "tpl-fsaverage")
    env.pop("TEMPLATEFLOW_HOME")
    assert kinds(resolve_template_ref("fsaverage", where=TemplateSearch.from_environment(None, None, env)))[0] == \
        ("freesurfer", "fsaverage")
    assert resolve_template_ref("fsaverage", where=TemplateSearch.from_environment(None, None, {})) \
        == TemplateRef.bundled("fsaverage")
    # 'bundled' turns discovery off; fsLR has no FreeSurfer source
    assert TemplateSearch.from_environment("bundled", None, env).bundled_only
    assert [s.kind for s in resolve_template_ref("fsLR", where=where.__class__(
        subjects_dirs=(tmp_path / "subjects",))).candidates("L")] == ["bundled"]


def test_a_folder_given_as_the_template_and_a_wrong_folder(tmp_path, write_fsaverage, write_templateflow, tiny_maps):
    fs = write_fsaverage(tmp_path / "subjects")
    ref = resolve_template_ref(fs)
    assert ref.label == ref.base == "fsaverage" and ref.candidates("R")[0].kind == "folder"
    assert resolve_template_ref(fs / "surf").candidates("L")[0].folder == fs  # the surf folder itself
    tf = write_templateflow(tmp_path / "tf")
    assert resolve_template_ref(tmp_path / "tf").candidates("L")[0].folder == tf  # a TemplateFlow home
    with pytest.raises(InputError, match="holds fsaverage maps, but the template is fsLR") as e:
        resolve_template_ref("fsLR", where=TemplateSearch(template_dir=fs))
    assert "\n" not in str(e.value)
    # fsLR is the default template: a FreeSurfer user who left out --template fsaverage is told to add it
    assert str(e.value).endswith(": register to fsaverage with --template fsaverage (template='fsaverage' in "
                                 "Python), or give a folder of fsLR's maps")
    with pytest.raises(InputError, match="not a FreeSurfer subject folder"):
        resolve_template_ref("fsaverage", where=TemplateSearch(template_dir=tmp_path))
    # a folder that does not exist (a typo) is named as missing, not as a folder of the wrong kind
    with pytest.raises(InputError) as e:
        resolve_template_ref("fsaverage", where=TemplateSearch(template_dir=tmp_path / "fsavrage"))
    assert str(e.value) == f"{tmp_path / 'fsavrage'}: --template-dir (template_dir= in Python): no such folder"


def test_a_subjects_dir_given_as_template_dir_names_its_fsaverage_folder(tmp_path, write_fsaverage):
    """$SUBJECTS_DIR (what recon-all users have at hand) given as --template-dir: the error names
    the fsaverage folder inside it to pass instead, and the environment variable that points at it."""
    fs = write_fsaverage(tmp_path / "subjects")
    with pytest.raises(InputError) as e:
        resolve_template_ref("fsaverage", where=TemplateSearch(template_dir=tmp_path / "subjects"))
    msg = str(e.value)
    assert "\n" not in msg and "not a FreeSurfer subject folder" in msg
    assert f"a FreeSurfer SUBJECTS_DIR holding fsaverage: --template-dir {fs}" in msg
    assert f"or SUBJECTS_DIR={tmp_path / 'subjects'} in the environment" in msg
    assert resolve_template_ref("fsaverage", where=TemplateSearch(template_dir=fs)).candidates("L")[0].folder == fs


def test_zero_byte_templateflow_placeholders_are_skipped_with_a_note(tmp_path, write_fsaverage, write_templateflow, tiny_maps):
    write_templateflow(tmp_path / "tf", empty=True)
    subjects = write_fsaverage(tmp_path / "subjects")
    env = {"TEMPLATEFLOW_HOME": str(tmp_path / "tf"), "SUBJECTS_DIR": str(tmp_path / "subjects")}
    ref = resolve_template_ref("fsaverage", where=TemplateSearch.from_environment(environ=env))
    assert [s.kind for s in ref.candidates("L")] == ["freesurfer", "bundled"]
    assert ref.candidates("L")[0].folder == subjects
    assert ref.warnings(("sulc",)) == []  # expected of an uninitialised TemplateFlow: a note, not a warning
    assert len(ref.info) == 1 and "fsaverage sulc files are empty placeholders" in ref.info[0]
    assert "never downloads" in ref.info[0]


@pytest.mark.parametrize("how", ["broken_link", "pointer_file"])
def test_a_templateflow_cloned_with_datalad_and_not_fetched_is_skipped_with_a_note(
        tmp_path, write_fsaverage, write_templateflow, how):
    """`datalad clone` of TemplateFlow without `datalad get`: every map a link to annexed content
    that is not there, or (unlocked, adjusted branch) a git-annex pointer file. Before: links
    passed over in silence (only the generic "to use the full one" hint), pointer files taken for
    real maps and the whole run ended on `is not a GIFTI file` (now: the pointer named)."""
    folder = write_templateflow(tmp_path / "tf", empty=True)
    for p in folder.iterdir():
        p.unlink()
        if how == "broken_link":
            p.symlink_to("../.git/annex/objects/Xq/9v/MD5E-s1234--0a1b.gii/MD5E-s1234--0a1b.gii")
        else:
            p.write_text("/annex/objects/MD5E-s1234--0a1b.gii\n")
    subjects = write_fsaverage(tmp_path / "subjects")
    env = {"TEMPLATEFLOW_HOME": str(tmp_path / "tf"), "SUBJECTS_DIR": str(tmp_path / "subjects")}
    ref = resolve_template_ref("fsaverage", where=TemplateSearch.from_environment(environ=env))
    assert [s.kind for s in ref.candidates("L")] == ["freesurfer", "bundled"]
    assert ref.candidates("L")[0].folder == subjects
    assert len(ref.info) == 1 and "git-annex files not fetched" in ref.info[0], ref.info
    assert "`datalad get` them" in ref.info[0]


def test_a_source_missing_a_needed_map_falls_back_with_one_warning_line(tmp_path, write_fsaverage, write_templateflow, tiny_maps):
    write_fsaverage(tmp_path / "subjects", maps=("sulc",))  # no curv
    ref = resolve_template_ref("fsaverage", where=TemplateSearch(subjects_dirs=(tmp_path / "subjects",)))
    assert ref.features("L") == ("sulc",) and ref.shared_features() == ("sulc",)
    assert ref.source("L", ("sulc",)).kind == "freesurfer"
    assert ref.source("L", ("sulc", "curv")).kind == "bundled"
    lines = ref.warnings(("sulc", "curv"), ("L",))
    assert lines == [f"template hemi-L: FreeSurfer fsaverage {tmp_path / 'subjects' / 'fsaverage'} has no curv; "
                     "using the bundled fsaverage"]
    assert ref.load("L", ("sulc", "curv")).provenance["template_source"] == "bundled"
    assert ref.warnings(("sulc",)) == []
    # the default optimiser then registers with what the full-resolution source has
    from geomorph_bids.engine.model_choice import resolve_model

    assert resolve_model("default", "fsaverage", ref.shared_features()).channels == ("sulc",)
    assert resolve_model("default", "fsaverage", ("sulc", "curv")).channels == ("sulc", "curv")


def test_a_dangling_fsaverage_link_is_named_not_passed_over(tmp_path):
    """recon-all's SUBJECTS_DIR/fsaverage is a link into $FREESURFER_HOME, which a container does
    not have: the bundled maps are used and one warning line says why the full ones were not."""
    subjects = tmp_path / "subjects"
    subjects.mkdir()
    (subjects / "fsaverage").symlink_to(tmp_path / "freesurfer" / "subjects" / "fsaverage")
    ref = resolve_template_ref("fsaverage", where=TemplateSearch(subjects_dirs=(subjects,)))
    assert ref.source("L", ("sulc",)).kind == "bundled"
    assert ref.warnings(("sulc",), ("L",)) == [
        f"template: {subjects / 'fsaverage'} is a link to {tmp_path / 'freesurfer' / 'subjects' / 'fsaverage'}, "
        "which does not exist here (in a container? bind that folder too, or pass --template-dir with a copy of "
        "fsaverage)"]


def test_a_missing_hemisphere_falls_back_for_that_hemisphere_only(tmp_path, write_fsaverage, write_templateflow, tiny_maps):
    write_fsaverage(tmp_path / "subjects", hemis=("L",))
    ref = resolve_template_ref("fsaverage", where=TemplateSearch(subjects_dirs=(tmp_path / "subjects",)))
    assert ref.source("L", ("sulc",)).kind == "freesurfer" and ref.source("R", ("sulc",)).kind == "bundled"
    assert any("no rh.sphere or rh.sulc" in n for n in ref.notes)
    # the right falls back to the bundled maps; the left's tiny fsaverage is fsaverage5-sized, and said so
    assert ref.low_resolution_note(("sulc",), "R").startswith("registered to the bundled low-resolution fsaverage")
    assert ref.low_resolution_note(("sulc",), "L").startswith(
        "registered to fsaverage maps of 10,242 vertices (FreeSurfer")


def test_provenance_and_sampling(tmp_path, write_fsaverage, write_templateflow, tiny_maps):
    write_fsaverage(tmp_path / "subjects")
    ref = resolve_template_ref("fsaverage", where=TemplateSearch(subjects_dirs=(tmp_path / "subjects",)))
    src = ref.source("L", ("sulc", "curv"))
    tpl = load_source(src, ("sulc", "curv"))
    files = [src.sphere, src.maps["sulc"], src.maps["curv"]]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()
    assert tpl.provenance == {"template_source": "freesurfer", "template_source_path": str(src.folder),
                              "template_vertices": N, "template_sha256": digest,
                              "template_files": [str(p) for p in files]}
    assert "freesurfer" in describe_provenance(tpl.provenance) and "10,242 vertices" in describe_provenance(tpl.provenance)
    # nested grids: the ico-5 values are kept exactly at the ico-6 vertices they share
    np.testing.assert_allclose(tpl.features["sulc"][:N], tiny_maps("L")["sulc"], atol=1e-5)
    # a source whose first 40962 vertices are the grid is sampled there, without a search
    v7, f7 = icosphere(7)
    values = np.arange(len(v7), dtype=float)
    np.testing.assert_array_equal(sample_on_grid(values, (v7, f7)), values[:40962])
    bundled = TemplateRef.bundled("fsaverage").load("L", ("sulc",)).provenance
    assert low_resolution_used(bundled) and low_resolution_note(bundled) == LOW_RESOLUTION_NOTE
    # the tiny fsaverage has fsaverage5's 10,242 vertices: coarse too, and said with its own count and folder
    assert low_resolution_used(tpl.provenance)
    assert low_resolution_note(tpl.provenance).startswith(f"registered to fsaverage maps of 10,242 vertices "
                                                          f"(FreeSurfer {src.folder}), not the full template's 163,842")
    assert low_resolution_used({"template_source": "bundled", "template_vertices": 10242})  # an older version's record


def _write_full_fsaverage(subjects: Path, hemi: str = "L") -> Path:
    """A FreeSurfer-format fsaverage at full resolution (ico-7, 163,842 vertices: FreeSurfer's
    fsaverage mesh), sulc the bundled map carried onto it (exactly the bundled values at the
    ico-6 vertices)."""
    from geomorph_bids.sphere.resample import resample

    surf = subjects / "fsaverage" / "surf"
    surf.mkdir(parents=True, exist_ok=True)
    v7, f7 = icosphere(7)
    sulc = load_template("fsaverage", hemi, ("sulc",)).features["sulc"]
    prefix = {"L": "lh", "R": "rh"}[hemi]
    nib.freesurfer.write_geometry(str(surf / f"{prefix}.sphere"), v7.astype(np.float32), f7.astype(np.int32))
    nib.freesurfer.write_morph_data(str(surf / f"{prefix}.sulc"),
                                    resample(sulc, icosphere(6), (v7, f7)).astype(np.float32))
    return surf.parent


def test_a_coarser_fsaverage_never_hides_a_full_one_and_is_said(tmp_path, write_fsaverage, write_templateflow):
    """TemplateFlow's den-10k files (what fMRIPrep fetches for fsaverage5 outputs) in
    $TEMPLATEFLOW_HOME, or an fsaverage5 linked as $SUBJECTS_DIR/fsaverage, were taken ahead of
    FreeSurfer's full fsaverage further on ($FREESURFER_HOME/subjects), in silence: the command
    line said "fsaverage from TemplateFlow fsaverage ...", only the metrics' 10,242 vertices told.
    Now the full one is used, and coarse maps, when they are all there is, are said on one line."""
    write_templateflow(tmp_path / "tf")  # den-10k: 10,242 vertices
    coarse = write_fsaverage(tmp_path / "sd5")  # fsaverage5's mesh as $SUBJECTS_DIR/fsaverage
    full = _write_full_fsaverage(tmp_path / "fshome" / "subjects")
    env = {"TEMPLATEFLOW_HOME": str(tmp_path / "tf"), "SUBJECTS_DIR": str(tmp_path / "sd5"),
           "FREESURFER_HOME": str(tmp_path / "fshome")}
    ref = resolve_template_ref("fsaverage", where=TemplateSearch.from_environment(None, None, env))
    assert [(s.kind, s.folder) for s in ref.candidates("L")][:3] == [
        ("freesurfer", full), ("templateflow", tmp_path / "tf" / "tpl-fsaverage"), ("freesurfer", coarse)]
    tpl = ref.load("L", ("sulc",))
    assert tpl.provenance["template_source_path"] == str(full) and tpl.provenance["template_vertices"] == 163842
    assert not ref.low_resolution(("sulc",), ("L",)) and ref.low_resolution_note(("sulc",), "L") is None
    assert not low_resolution_used(tpl.provenance)
    # an explicit folder stays first, coarse or not (and is said to be coarse)
    mine = resolve_template_ref("fsaverage", where=TemplateSearch.from_environment(coarse, None, env))
    assert mine.source("L", ("sulc",)).kind == "folder"
    assert mine.low_resolution_note(("sulc",), "L").startswith(f"registered to fsaverage maps of 10,242 vertices "
                                                                f"(folder {coarse}), not the full template's 163,842")
    # without the full one: TemplateFlow's den-10k files, said as such (not the bundled maps' note)
    env.pop("FREESURFER_HOME")
    ref = resolve_template_ref("fsaverage", where=TemplateSearch.from_environment(None, None, env))
    note = ref.low_resolution_note(("sulc",), "L")
    tf = tmp_path / "tf" / "tpl-fsaverage"
    assert note.startswith(f"registered to fsaverage maps of 10,242 vertices (TemplateFlow {tf})")
    assert "fsaverage5 (10,242)" in note and "\n" not in note
    assert low_resolution_note(ref.load("L", ("sulc",)).provenance) == note
    # a population template (custom, on the ico-6 grid) is not a coarse standard template
    assert not low_resolution_used({"template_source": "custom", "template_vertices": 40962})


def test_the_bundled_maps_record_their_own_vertex_count_and_their_origins():
    """The bundled fsLR maps (ico-6, 40,962 vertices) were recorded as "163,842 vertices" (the
    refsulc they were built from) in the metrics, sidecars and reports, fsaverage's as 10,242;
    now ``template_vertices`` is the maps' own count and the origin is
    ``template_built_from_vertices``. Low resolution is still told by the origin."""
    for base, origin in (("fsLR", 163842), ("fsaverage", 10242)):
        p = TemplateRef.bundled(base).provenance("L", ("sulc",))
        assert (p["template_vertices"], p["template_built_from_vertices"]) == (40962, origin), base
        assert low_resolution_used(p) == (base == "fsaverage")
        assert f"40,962 vertices (built from {origin:,}), sha256 " in describe_provenance(p)
    assert "fsaverage5" in LOW_RESOLUTION_NOTE and "--template-dir" in LOW_RESOLUTION_NOTE


def test_a_map_that_is_not_this_templates_is_refused_on_one_line(tmp_path, write_fsaverage, write_templateflow, tiny_maps):
    fs = write_fsaverage(tmp_path / "subjects")
    sulc = fs / "surf" / "lh.sulc"
    nib.freesurfer.write_morph_data(str(sulc), (-tiny_maps("L")["sulc"]).astype(np.float32))  # HCP sign
    ref = resolve_template_ref("fsaverage", where=TemplateSearch(subjects_dirs=(tmp_path / "subjects",)))
    with pytest.raises(InputError, match="HCP sign") as e:
        ref.load("L", ("sulc",))
    assert "\n" not in str(e.value) and str(sulc) in str(e.value)
    nib.freesurfer.write_morph_data(str(sulc), np.zeros(N - 1, np.float32))  # wrong vertex count
    with pytest.raises(InputError, match=str(sulc)):
        ref.load("L", ("sulc",))


def test_register_uses_the_discovered_template_and_records_it(tmp_path, monkeypatch, fsaverage5):
    """The Python API reads SUBJECTS_DIR at its boundary; the full-resolution map changes the
    result of a real pair (fsaverage5's right hemisphere, mirrored, registered to fsaverage L)
    against the bundled one, and the metrics say which was used."""
    from geomorph_bids.engine.real_pairs import real_pair
    from geomorph_bids.engine.register import register

    fs = full_resolution_fsaverage(tmp_path / "subjects")
    pair = real_pair("fsavg5_Rm-fsaverage")
    moving = ((pair.vertices, pair.faces), {"sulc": pair.features["sulc"]})
    bundled = register(*moving, "fsaverage", "L", device="cpu")
    monkeypatch.setenv("SUBJECTS_DIR", str(tmp_path / "subjects"))
    full = register(*moving, "fsaverage", "L", device="cpu")
    assert bundled.metrics["template_source"] == "bundled" and bundled.metrics["template_vertices"] == 40962
    assert bundled.metrics["template_built_from_vertices"] == 10242
    assert "template_built_from_vertices" not in full.metrics
    assert full.metrics["template_source"] == "freesurfer" and full.metrics["template_vertices"] == 163842
    assert full.metrics["template_source_path"] == str(fs)
    moved = np.degrees(np.arccos(np.clip(np.einsum("ij,ij->i", bundled.sphere, full.sphere) / 1e4, -1, 1)))
    assert np.median(moved) > 0.2  # another template, another registration
    for r in (bundled, full):  # both still land near the reference
        assert np.median(pair.error_deg(r.sphere)) < 2.0 and r.metrics["n_folded"] == 0
    assert register(*moving, "fsaverage", "L", device="cpu", rigid_only=True,
                    template_dir="bundled").metrics["template_source"] == "bundled"


def full_resolution_fsaverage(subjects: Path) -> Path:
    """A 163,842-vertex FreeSurfer-format fsaverage left hemisphere built from installed packages:
    sMRIPrep's fsaverage sphere, with sMRIPrep's fsLR refsulc carried onto it through its
    fs_L-to-fs_LR sphere (FreeSurfer sign). Not FreeSurfer's own sulc, but a full-resolution
    map of fsaverage's left hemisphere that differs from the bundled one."""
    from importlib.resources import files

    from geomorph_bids.io import read_feature, read_sphere
    from geomorph_bids.sphere.resample import barycentric_weights

    at = Path(str(files("smriprep") / "data" / "atlases"))
    sphere = read_sphere(at / "fs_L" / "fsaverage.L.sphere.164k_fs_L.surf.gii")
    lr = read_sphere(at / "fsaverage.L_LR.spherical_std.164k_fs_LR.surf.gii")
    refsulc = -np.asarray(read_feature(at / "L.refsulc.164k_fs_LR.shape.gii", n_vertices=lr.n_vertices), float)
    in_lr = read_sphere(at / "fs_L" / "fs_L-to-fs_LR_fsaverage.L_LR.spherical_std.164k_fs_L.surf.gii").vertices
    surf = subjects / "fsaverage" / "surf"
    surf.mkdir(parents=True)
    nib.freesurfer.write_geometry(str(surf / "lh.sphere"), sphere.vertices.astype(np.float32),
                                  sphere.faces.astype(np.int32))
    sulc = barycentric_weights((lr.vertices, lr.faces), in_lr) @ refsulc
    nib.freesurfer.write_morph_data(str(surf / "lh.sulc"), sulc.astype(np.float32))
    return subjects / "fsaverage"


def test_full_resolution_fslr_maps_from_templateflow(tmp_path, hcp_data):
    """The same for fsLR where full-resolution maps exist: TemplateFlow files at fsLR's names
    (here: the fsLR 32k sphere with the bundled sulc carried onto it) are used and recorded."""
    from geomorph_bids.io import read_sphere
    from geomorph_bids.sphere.resample import resample

    sphere = read_sphere(hcp_data / "S1200.L.sphere.32k_fs_LR.surf.gii")
    bundled = load_template("fsLR", "L", ("sulc",))
    sulc = resample(bundled.features["sulc"], (bundled.vertices, bundled.faces), (sphere.vertices, sphere.faces),
                    method="barycentric")
    folder = tmp_path / "tf" / "tpl-fsLR"
    folder.mkdir(parents=True)
    write_surface(folder / "tpl-fsLR_hemi-L_den-32k_sphere.surf.gii", sphere.vertices, sphere.faces, hemi="L")
    write_metric(folder / "tpl-fsLR_hemi-L_den-32k_sulc.shape.gii", sulc.astype(np.float32), hemi="L")
    ref = resolve_template_ref("fsLR", where=TemplateSearch(templateflow_home=tmp_path / "tf"))
    assert [s.kind for s in ref.candidates("L")] == ["templateflow", "bundled"]
    assert [s.kind for s in ref.candidates("R")] == ["bundled"]
    tpl = ref.load("L", ("sulc",))
    assert tpl.provenance["template_source"] == "templateflow" and tpl.provenance["template_vertices"] == 32492
    assert np.corrcoef(tpl.features["sulc"], bundled.features["sulc"])[0, 1] > 0.98
    np.testing.assert_allclose(tpl.from_fsaverage, bundled.from_fsaverage)  # fsLR's space, fsLR's rotation


def test_a_templateflow_home_with_real_and_zero_byte_files(tmp_path, write_fsaverage, write_templateflow, tiny_maps):
    """TemplateFlow as `pip install templateflow` plus a partial download leaves it: the 164k
    files are zero-byte placeholders, the 10k sphere and sulc are real, the 10k curv is a
    placeholder. The real 10k files are used (no note: a real density was found); a run that
    needs curv passes over them, with one warning line, to the next source on disk (the
    FreeSurfer fsaverage), not to the bundled maps; a zero-byte lh.sulc in the FreeSurfer folder
    counts as missing."""
    folder = write_templateflow(tmp_path / "tf")
    for suffix in ("_sphere.surf.gii", "_sulc.shape.gii", "_curv.shape.gii"):
        for hemi in ("L", "R"):
            (folder / f"tpl-fsaverage_hemi-{hemi}_den-164k{suffix}").write_bytes(b"")
            (folder / f"tpl-fsaverage_hemi-{hemi}_den-10k_curv.shape.gii").write_bytes(b"")
    subjects = write_fsaverage(tmp_path / "subjects", scale=2.0)
    env = {"TEMPLATEFLOW_HOME": str(tmp_path / "tf"), "SUBJECTS_DIR": str(tmp_path / "subjects")}
    ref = resolve_template_ref("fsaverage", where=TemplateSearch.from_environment(environ=env))
    tf = ref.candidates("L")[0]
    assert (tf.kind, tf.sphere.name) == ("templateflow", "tpl-fsaverage_hemi-L_den-10k_sphere.surf.gii")
    assert tuple(tf.maps) == ("sulc",) and not ref.info  # the zero-byte curv is not a map
    tpl = ref.load("L", ("sulc",))
    assert tpl.provenance["template_source"] == "templateflow" and tpl.provenance["template_vertices"] == N
    np.testing.assert_allclose(tpl.features["sulc"][:N], tiny_maps("L")["sulc"], atol=1e-5)
    assert ref.warnings(("sulc",)) == []
    # sulc + curv: TemplateFlow lacks curv -> the FreeSurfer fsaverage, said on one line per hemisphere
    lines = ref.warnings(("sulc", "curv"))
    assert lines == [f"template hemi-{h}: TemplateFlow fsaverage {folder.absolute()} has no curv; using FreeSurfer fsaverage "
                     f"{subjects.absolute()}" for h in ("L", "R")]
    both = ref.load("R", ("sulc", "curv"))
    assert both.provenance["template_source"] == "freesurfer"
    np.testing.assert_allclose(both.features["curv"][:N], tiny_maps("R", 2.0)["curv"], atol=1e-5)
    # a zero-byte lh.sulc in the FreeSurfer folder: that hemisphere is not offered there
    (subjects / "surf" / "lh.sulc").write_bytes(b"")
    ref = resolve_template_ref("fsaverage", where=TemplateSearch.from_environment(environ=env))
    assert [s.kind for s in ref.candidates("L")] == ["templateflow", "bundled"]
    assert [s.kind for s in ref.candidates("R")] == ["templateflow", "freesurfer", "bundled"]
    assert ref.load("L", ("sulc", "curv")).provenance["template_source"] == "bundled"
    assert any(f"FreeSurfer fsaverage {subjects.absolute()}: no lh.sulc for hemi-L" in line
               for line in ref.warnings(("sulc", "curv"), ("L",)))
    # only placeholders left: a note that they were not downloaded, and the FreeSurfer maps
    for p in folder.glob("*den-10k*"):
        p.write_bytes(b"")
    ref = resolve_template_ref("fsaverage", where=TemplateSearch.from_environment(environ=env))
    assert [s.kind for s in ref.candidates("R")] == ["freesurfer", "bundled"]
    assert len(ref.info) == 1 and "empty placeholders" in ref.info[0]


def test_register_warns_once_when_a_hemisphere_falls_back(tmp_path, monkeypatch, tiny_fsaverage):
    """The Python API: $SUBJECTS_DIR's fsaverage has no right hemisphere -> one TemplateWarning
    naming the folder and the missing files; the right hemisphere registers to the bundled maps
    and its metrics say so; the left one uses the folder without a warning."""
    import warnings

    from geomorph_bids.engine.register import register
    from geomorph_bids.io import read_feature, read_sphere
    from geomorph_bids.io.template_sources import LowResolutionWarning, TemplateWarning
    from geomorph_bids.resources import example_dir

    fs = tiny_fsaverage(tmp_path / "subjects", hemis=("L",))
    monkeypatch.setenv("SUBJECTS_DIR", str(tmp_path / "subjects"))
    surf = example_dir() / "sub-01" / "surf"
    regs = {}
    for hemi, prefix in (("L", "lh"), ("R", "rh")):
        sphere = read_sphere(surf / f"{prefix}.sphere")
        sulc = read_feature(surf / f"{prefix}.sulc", n_vertices=sphere.n_vertices)
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            regs[hemi] = register((sphere.vertices, sphere.faces), {"sulc": sulc}, "fsaverage", hemi,
                                  rigid_only=True, device="cpu")
        lines = [str(w.message) for w in rec
                 if issubclass(w.category, TemplateWarning) and not issubclass(w.category, LowResolutionWarning)]
        if hemi == "L":
            assert lines == []
        else:
            assert lines == [f"template: FreeSurfer fsaverage {fs.absolute()}: no rh.sphere or rh.sulc for hemi-R"]
    assert regs["L"].metrics["template_source"] == "freesurfer"
    assert regs["R"].metrics["template_source"] == "bundled"


def _low_resolution_lines(call) -> list[str]:
    import warnings

    from geomorph_bids.io.template_sources import LowResolutionWarning

    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        call()
    return [str(w.message) for w in rec if issubclass(w.category, LowResolutionWarning)]


def test_register_says_when_the_maps_are_low_resolution(tmp_path, monkeypatch, tiny_fsaverage):
    """Twentieth session: the command line says after each registration that the bundled
    fsaverage is fsaverage5-derived (and how to use the full one); register() from Python said
    nothing. Now one LowResolutionWarning per call (both hemispheres of register_many: one), naming
    the maps; none for maps at full resolution or for fsLR's bundled maps."""
    from geomorph_bids.engine.register import RegistrationItem, register, register_many
    from geomorph_bids.io import read_feature, read_sphere
    from geomorph_bids.io import template_sources
    from geomorph_bids.resources import example_dir

    for var in ("SUBJECTS_DIR", "FREESURFER_HOME", "TEMPLATEFLOW_HOME"):
        monkeypatch.delenv(var, raising=False)
    surf = example_dir() / "sub-01" / "surf"
    inputs = {}
    for hemi, prefix in (("L", "lh"), ("R", "rh")):
        sphere = read_sphere(surf / f"{prefix}.sphere")
        inputs[hemi] = (sphere, read_feature(surf / f"{prefix}.sulc", n_vertices=sphere.n_vertices))
    sphere, sulc = inputs["L"]

    def one(template="fsaverage"):
        return lambda: register((sphere.vertices, sphere.faces), {"sulc": sulc}, template, "L", rigid_only=True,
                                device="cpu")

    lines = _low_resolution_lines(one())
    assert len(lines) == 1 and "bundled low-resolution fsaverage" in lines[0] and "template_dir=" in lines[0]
    # fix-av: the advice in Python's words (it named --template-dir and --fs-subjects-dir, then "in Python: ...")
    assert lines[0].endswith("To use the full one: template_dir=os.path.expandvars(\"$FREESURFER_HOME/subjects/"
                             "fsaverage\") (any FreeSurfer fsaverage folder), or SUBJECTS_DIR pointing at a folder "
                             "that holds fsaverage, or TEMPLATEFLOW_HOME with TemplateFlow's tpl-fsaverage den-164k "
                             "sphere and sulc files"), lines[0]
    assert "--" not in lines[0]
    items = [RegistrationItem((s.vertices, s.faces), {"sulc": x}, h) for h, (s, x) in inputs.items()]
    assert len(_low_resolution_lines(lambda: register_many(items, "fsaverage", rigid_only=True, device="cpu"))) == 1
    assert _low_resolution_lines(one("fsLR")) == []
    tiny_fsaverage(tmp_path / "subjects")
    monkeypatch.setenv("SUBJECTS_DIR", str(tmp_path / "subjects"))
    lines = _low_resolution_lines(one())
    assert len(lines) == 1 and "maps of 10,242 vertices" in lines[0], lines
    assert lines[0].endswith("To use it: template_dir, SUBJECTS_DIR or TEMPLATEFLOW_HOME pointing at a FreeSurfer "
                             "fsaverage folder ($FREESURFER_HOME/subjects/fsaverage) or TemplateFlow's den-164k files")
    monkeypatch.setattr(template_sources, "FULL_VERTICES", 10242)  # the same folder taken as full resolution
    assert _low_resolution_lines(one()) == []


def test_the_bundled_maps_asked_for_give_no_low_resolution_warning(monkeypatch):
    """Twenty-second session (fix-av): register(..., template_dir="bundled") warned
    LowResolutionWarning "... To use the full one: --template-dir ..." (an error under
    PYTHONWARNINGS=error) although the bundled maps were asked for; the command line's note gave the
    same advice. Now no warning; the command line says what the maps are, without the advice."""
    from geomorph_bids.engine.register import register
    from geomorph_bids.io import read_feature, read_sphere
    from geomorph_bids.io.template_sources import BUNDLED_ASKED_NOTE, LOW_RESOLUTION_NOTE
    from geomorph_bids.resources import example_dir

    for var in ("SUBJECTS_DIR", "FREESURFER_HOME", "TEMPLATEFLOW_HOME"):
        monkeypatch.delenv(var, raising=False)
    surf = example_dir() / "sub-01" / "surf"
    sphere = read_sphere(surf / "lh.sphere")
    sulc = read_feature(surf / "lh.sulc", n_vertices=sphere.n_vertices)

    def call(**where):
        return lambda: register((sphere.vertices, sphere.faces), {"sulc": sulc}, "fsaverage", "L", rigid_only=True,
                                device="cpu", **where)

    assert _low_resolution_lines(call(template_dir="bundled")) == []
    assert len(_low_resolution_lines(call())) == 1  # found by search, not asked for: said as before
    asked = resolve_template_ref("fsaverage", where=TemplateSearch.from_environment("bundled", environ={}))
    assert asked.bundled_asked and asked.low_resolution_note(("sulc",), "L") == BUNDLED_ASKED_NOTE
    assert BUNDLED_ASKED_NOTE == ("registered to the bundled low-resolution fsaverage (built from fsaverage5's "
                                  "10,242 vertices: the source repository's docs/templates.md), as --template-dir bundled asks")
    searched = resolve_template_ref("fsaverage", where=TemplateSearch.from_environment(None, environ={}))
    assert not searched.bundled_asked and searched.low_resolution_note(("sulc",), "L") == LOW_RESOLUTION_NOTE


def test_a_template_or_template_dir_that_is_a_file_says_so(tmp_path):
    """Round fifteen: a template's sphere file given as --template said "not bundled, not a FreeSurfer
    fsaverage or TemplateFlow folder, and no custom template folder ... at that path"; as
    --template-dir, "no such folder" (the file was there)."""
    sphere = tmp_path / "tpl-fsLR_hemi-L_den-32k_sphere.surf.gii"
    sphere.write_text("<GIFTI/>")
    with pytest.raises(InputError) as e:
        resolve_template_ref(str(sphere))
    assert str(e.value).endswith("is a file; a template is fsLR, fsaverage or a folder of its maps (the folder that "
                                 "holds this file, if it is a TemplateFlow or FreeSurfer fsaverage folder)")
    with pytest.raises(InputError) as e:
        resolve_template_ref("fsLR", where=TemplateSearch(template_dir=sphere))
    assert str(e.value) == (f"{sphere}: --template-dir (template_dir= in Python): is a file, not a folder: give the "
                            "folder of the template's maps (a FreeSurfer fsaverage or TemplateFlow tpl-<name> folder)")


def _uneven_sphere() -> tuple[np.ndarray, np.ndarray]:
    """A radius-100 sphere centred on the origin whose vertices crowd on one side (an ico-3 with a
    dense patch, as HCP's fsLR 164k mesh is denser on one side): its vertex mean lies ~4 mm off."""
    from scipy.spatial import ConvexHull

    from geomorph_bids.sphere.locate import unit

    rng = np.random.default_rng(0)
    patch = unit(rng.normal(size=(30, 3)) * 0.3 + np.array([0.0, 0.3, 1.0]))
    u = unit(np.concatenate([icosphere(3)[0], patch]))
    f = ConvexHull(u).simplices.astype(np.int64)
    inward = np.einsum("ij,ij->i", u[f[:, 0]], np.cross(u[f[:, 1]], u[f[:, 2]])) < 0
    f[inward] = f[inward][:, ::-1]
    return u * 100.0, f


def test_an_unevenly_sampled_template_sphere_is_centred_where_it_is():
    """Round twenty-six: a template sphere's maps were sampled about its vertex mean, which is the
    centre of an evenly sampled sphere only: HCP's fsLR 164k sphere (all vertices at 100 mm about the
    origin) has its vertex mean 2.1 mm off, and its maps landed up to 1.2 deg from where they are.
    The least-squares centre is used when the two disagree; an even sphere keeps the vertex mean."""
    from geomorph_bids.io.template_sources import _sphere_centre, sample_on_grid

    v, f = _uneven_sphere()
    assert np.linalg.norm(v.mean(axis=0)) > 2.0
    assert np.linalg.norm(_sphere_centre(v)) < 1e-9
    shifted = v + np.array([1.0, -2.0, 3.0])
    np.testing.assert_allclose(_sphere_centre(shifted), [1.0, -2.0, 3.0], atol=1e-9)
    even = np.asarray(icosphere(4)[0]) + 5.0
    assert np.array_equal(_sphere_centre(even), even.mean(axis=0))  # the vertex mean, to the bit

    # the grid's own directions, sampled from this sphere, come back where they are
    coords = v / 100.0
    out = sample_on_grid(coords, (v - _sphere_centre(v), f))
    grid = np.asarray(icosphere(6)[0]) / 100.0
    cos = np.einsum("ij,ij->i", out / np.linalg.norm(out, axis=1, keepdims=True), grid)
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 0.01
    off = sample_on_grid(coords, (v - v.mean(axis=0), f))  # the vertex mean: degrees off
    cos = np.einsum("ij,ij->i", off / np.linalg.norm(off, axis=1, keepdims=True), grid)
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() > 1.0


def test_templateflow_maps_on_an_uneven_sphere_are_read_where_they_are(tmp_path):
    """The same through a TemplateFlow folder: the loaded map is the one sampled about the origin."""
    from geomorph_bids.io.template_sources import sample_on_grid
    from geomorph_bids.sphere.resample import resample

    v, f = _uneven_sphere()
    bundled = load_template("fsLR", "L", ("sulc",))
    sulc = resample(bundled.features["sulc"], (bundled.vertices, bundled.faces), (v, f), method="barycentric")
    folder = tmp_path / "tf" / "tpl-fsLR"
    folder.mkdir(parents=True)
    write_surface(folder / "tpl-fsLR_hemi-L_den-164k_sphere.surf.gii", v, f, hemi="L")
    write_metric(folder / "tpl-fsLR_hemi-L_den-164k_sulc.shape.gii", sulc.astype(np.float32), hemi="L")
    tpl = resolve_template_ref("fsLR", where=TemplateSearch(templateflow_home=tmp_path / "tf")).load("L", ("sulc",))
    assert tpl.provenance["template_source"] == "templateflow"
    v_read = nib.load(folder / "tpl-fsLR_hemi-L_den-164k_sphere.surf.gii").darrays[0].data.astype(np.float64)
    expected = sample_on_grid(sulc.astype(np.float32).astype(np.float64), (v_read, f))
    np.testing.assert_allclose(tpl.features["sulc"], expected, atol=1e-6)


def test_a_template_map_of_another_mesh_than_its_sphere_says_it_is_the_templates(tmp_path, write_fsaverage):
    """$SUBJECTS_DIR/fsaverage whose lh.sulc has another vertex count than its lh.sphere: before,
    'features must be on the same subject's native mesh as the sphere' (a subject's advice)."""
    fs = write_fsaverage(tmp_path / "subjects")
    sulc = fs / "surf" / "lh.sulc"
    nib.freesurfer.write_morph_data(str(sulc), np.linspace(-1, 1, 642).astype(np.float32))
    env = {"SUBJECTS_DIR": str(tmp_path / "subjects")}
    ref = resolve_template_ref("fsaverage", where=TemplateSearch.from_environment(environ=env))
    with pytest.raises(InputError) as e:
        ref.load("L", ("sulc",))
    assert str(e.value) == (f"{sulc}: the template's sulc map (FreeSurfer fsaverage {fs}, found through "
                            "--fs-subjects-dir, $SUBJECTS_DIR or $FREESURFER_HOME/subjects) has 642 vertices but its "
                            f"sphere {fs / 'surf' / 'lh.sphere'} has {N}: the two are of different meshes; replace "
                            "that sulc with the template's own, or use the bundled maps: --template-dir bundled "
                            "(template_dir='bundled' in Python)")


def test_a_templateflow_home_that_is_a_file_or_a_sulc_that_is_a_folder_is_noted(tmp_path, write_templateflow):
    """Both fell back to the bundled maps with no word (the zero-byte placeholders get a note)."""
    (tmp_path / "tf_file").write_text("")
    ref = resolve_template_ref("fsaverage", where=TemplateSearch.from_environment(
        environ={"TEMPLATEFLOW_HOME": str(tmp_path / "tf_file")}))
    assert [s.kind for s in ref.candidates("L")] == ["bundled"]
    assert ref.info == (f"TemplateFlow {tmp_path / 'tf_file'}: $TEMPLATEFLOW_HOME is a file, not TemplateFlow's "
                        "folder; not used",)
    folder = write_templateflow(tmp_path / "tf", hemis=("L",))
    sulc = folder / "tpl-fsaverage_hemi-L_den-10k_sulc.shape.gii"
    sulc.unlink()
    sulc.mkdir()
    ref = resolve_template_ref("fsaverage", where=TemplateSearch.from_environment(
        environ={"TEMPLATEFLOW_HOME": str(tmp_path / "tf")}))
    assert [s.kind for s in ref.candidates("L")] == ["bundled"]
    assert f"TemplateFlow {folder}: {sulc.name} is a folder, not a file; not used" in ref.info


def test_a_templateflow_with_one_hemisphere_or_a_missing_home_is_said(tmp_path, write_templateflow):
    """$TEMPLATEFLOW_HOME with tpl-fsaverage's hemi-L maps only (one hemisphere fetched), the right
    registered; $TEMPLATEFLOW_HOME naming a folder that does not exist (a typo, a file system not
    mounted on a compute node), or tpl-fsaverage itself: all fell back to the bundled maps without
    a word (a FreeSurfer fsaverage without rh.sphere, or a $TEMPLATEFLOW_HOME that is a file, got one)."""
    folder = write_templateflow(tmp_path / "tf", hemis=("L",))
    ref = resolve_template_ref("fsaverage", where=TemplateSearch(templateflow_home=tmp_path / "tf"))
    assert ref.source("L", ("sulc",)).kind == "templateflow" and ref.source("R", ("sulc",)).kind == "bundled"
    assert ref.warnings(("sulc",), ("R",)) == [
        f"template: TemplateFlow fsaverage {folder}: no hemi-R sphere and sulc of one density "
        "(tpl-fsaverage_hemi-R_den-164k/41k/10k_sphere.surf.gii and _sulc.shape.gii)"]
    assert ref.warnings(("sulc",), ("L",)) == []  # the left has its maps: nothing to say
    # a TemplateFlow whose template has no sulc at all (tpl-fsLR's own files) is not worth a word
    (tmp_path / "tf" / "tpl-fsLR").mkdir()
    write_surface(tmp_path / "tf" / "tpl-fsLR" / "tpl-fsLR_hemi-L_den-32k_sphere.surf.gii", *icosphere(3), hemi="L")
    fslr = resolve_template_ref("fsLR", where=TemplateSearch(templateflow_home=tmp_path / "tf"))
    assert fslr.warnings(("sulc",)) == [] and fslr.info == ()
    # a home that does not exist, or a link to nowhere
    for home in (tmp_path / "no_such", tmp_path / "link"):
        if home.name == "link":
            home.symlink_to(tmp_path / "gone")
        ref = resolve_template_ref("fsaverage", where=TemplateSearch.from_environment(
            environ={"TEMPLATEFLOW_HOME": str(home)}))
        what = "is a link to a folder that does not exist here" if home.name == "link" else "does not exist"
        assert ref.info == (f"TemplateFlow {home}: $TEMPLATEFLOW_HOME {what}; not used",)
        assert ref.source("L", ("sulc",)).kind == "bundled"
    # the template's folder itself as the home (TemplateFlow looks for tpl-fsaverage inside it)
    ref = resolve_template_ref("fsaverage", where=TemplateSearch.from_environment(
        environ={"TEMPLATEFLOW_HOME": str(folder)}))
    assert ref.info == (f"TemplateFlow {folder}: $TEMPLATEFLOW_HOME is a template's folder (tpl-fsaverage), not "
                        f"TemplateFlow's home, which holds it: set TEMPLATEFLOW_HOME={folder.parent} (or pass "
                        f"--template-dir {folder}); not used",)
    # set but empty (TEMPLATEFLOW_HOME= in a job script): not set, nothing said
    assert resolve_template_ref("fsaverage", where=TemplateSearch.from_environment(
        environ={"TEMPLATEFLOW_HOME": ""})) == TemplateRef.bundled("fsaverage")


def test_a_gzipped_fsaverage_says_to_gunzip_it(tmp_path, write_fsaverage):
    """$SUBJECTS_DIR/fsaverage/surf/lh.sphere.gz and lh.sulc.gz (gzip -r on a copy of FreeSurfer's
    folder): the warning said only "no lh.sphere or lh.sulc", with the files right there."""
    import gzip

    fs = write_fsaverage(tmp_path / "subjects", hemis=("L",))
    for name in ("lh.sphere", "lh.sulc"):
        path = fs / "surf" / name
        path.with_name(f"{name}.gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    ref = resolve_template_ref("fsaverage", where=TemplateSearch(subjects_dirs=(tmp_path / "subjects",)))
    assert ref.source("L", ("sulc",)).kind == "bundled"
    assert ref.warnings(("sulc",), ("L",)) == [
        f"template: FreeSurfer fsaverage {fs}: no lh.sphere or lh.sulc for hemi-L (lh.sphere.gz, lh.sulc.gz are "
        "gzipped; FreeSurfer files are read uncompressed: gunzip lh.sphere.gz lh.sulc.gz)"]


def test_fsaverage_sym_is_not_taken_for_fsaverage(tmp_path, write_fsaverage):
    """FreeSurfer's fsaverage_sym (the left-right symmetric template, for xhemi) has fsaverage's
    layout (surf/lh.sphere, lh.sulc) and maps in another space: given as --template-dir, or linked
    as $SUBJECTS_DIR/fsaverage, it was registered to and the outputs labelled space-fsaverage."""
    sym = write_fsaverage(tmp_path / "fshome" / "subjects", hemis=("L",)).rename(
        tmp_path / "fshome" / "subjects" / "fsaverage_sym")
    for given in (sym, sym / "surf"):
        with pytest.raises(InputError) as e:
            resolve_template_ref("fsaverage", where=TemplateSearch(template_dir=given))
        assert str(e.value).startswith(f"{given}: --template-dir is fsaverage_sym, FreeSurfer's left-right symmetric "
                                       "template") and "\n" not in str(e.value)
    (tmp_path / "subjects").mkdir()
    (tmp_path / "subjects" / "fsaverage").symlink_to(sym)
    ref = resolve_template_ref("fsaverage", where=TemplateSearch(subjects_dirs=(tmp_path / "subjects",)))
    assert ref.source("L", ("sulc",)).kind == "bundled"
    assert ref.warnings(("sulc",), ("L",)) == [
        f"template: {tmp_path / 'subjects' / 'fsaverage'} is a link to {sym}, FreeSurfer's left-right symmetric "
        "template, not fsaverage (its maps are in another space); not used"]


def test_a_fsaverage_with_zero_byte_files_says_they_are_empty(tmp_path, write_fsaverage):
    """$SUBJECTS_DIR/fsaverage/surf/lh.sphere and lh.sulc of 0 bytes (a copy that ran out of space):
    the warning said "no lh.sphere or lh.sulc", with the files right there."""
    fs = write_fsaverage(tmp_path / "subjects", hemis=("L",))
    for name in ("lh.sphere", "lh.sulc"):
        (fs / "surf" / name).write_bytes(b"")
    ref = resolve_template_ref("fsaverage", where=TemplateSearch(subjects_dirs=(tmp_path / "subjects",)))
    assert ref.source("L", ("sulc",)).kind == "bundled"
    assert ref.warnings(("sulc",), ("L",)) == [
        f"template: FreeSurfer fsaverage {fs}: no lh.sphere or lh.sulc for hemi-L (lh.sphere, lh.sulc: 0 bytes, or a "
        "link to annexed content not fetched)"]


def test_a_template_folder_this_user_may_not_read_is_passed_over(tmp_path, monkeypatch, write_templateflow,
                                                                   write_fsaverage):
    """A shared $TEMPLATEFLOW_HOME (or $SUBJECTS_DIR) of another group, not searchable by this user:
    the whole run ended, `permission denied at .../tpl-fsaverage_hemi-L_den-164k_sulc.shape.gii`, though
    the next source would do. Now one warning line names it and the next source is used. (Tests run as
    root, for whom chmod 000 hides nothing: os.stat is made to refuse, as the kernel does.)"""
    import errno
    import os

    tf = write_templateflow(tmp_path / "tf")
    fs = write_fsaverage(tmp_path / "subjects")
    real_stat = os.stat

    def stat(path, *args, **kwargs):
        p = os.fsdecode(path)
        if p.startswith((f"{tf}{os.sep}", f"{fs}{os.sep}")):
            raise PermissionError(errno.EACCES, "Permission denied", p)
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    ref = resolve_template_ref("fsaverage", where=TemplateSearch.from_environment(environ={
        "TEMPLATEFLOW_HOME": str(tmp_path / "tf"), "SUBJECTS_DIR": str(tmp_path / "subjects")}))
    assert ref.source("L", ("sulc",)).kind == ref.source("R", ("sulc",)).kind == "bundled"
    lines = ref.warnings(("sulc",))
    assert lines == [f"template: TemplateFlow {tmp_path / 'tf'}: permission denied in {tf} (this user may not read "
                     "it); not used, the next source is",
                     f"template: FreeSurfer fsaverage {fs}: permission denied in {fs / 'surf'} (this user may not "
                     "read it); not used, the next source is"]


def test_a_map_of_the_other_template_or_hemisphere_is_named_as_such(tmp_path):
    """fsLR's maps saved under tpl-fsaverage's names (or hemi-R's as hemi-L) were refused with
    `sulc correlates r = 0.01 with the bundled fsaverage hemi-L sulc; not this template's map`,
    nothing said of whose map it is; now the refusal names the template (or hemisphere) it fits."""
    grid = icosphere(6)
    folder = tmp_path / "tf" / "tpl-fsaverage"
    folder.mkdir(parents=True)
    cases = (("fsLR", "L", 1.0, "it fits the bundled fsLR hemi-L sulc, r = 1.00: the other template's map: use "
                                 "--template fsLR, or that template's folder)"),
             ("fsLR", "L", -1.0, "it fits the bundled fsLR hemi-L sulc in HCP's sign (negated), r = -1.00: the "
                                  "other template's map: use --template fsLR, or that template's folder)"),
             ("fsaverage", "R", 1.0, "it fits the bundled fsaverage hemi-R sulc, r = 1.00: the other hemisphere's "
                                     "map)"))
    for base, hemi, sign, words in cases:
        sulc = sign * load_template(base, hemi, ("sulc",)).features["sulc"]
        write_surface(folder / "tpl-fsaverage_hemi-L_den-41k_sphere.surf.gii", *grid, hemi="L")
        write_metric(folder / "tpl-fsaverage_hemi-L_den-41k_sulc.shape.gii", sulc.astype(np.float32), hemi="L")
        ref = resolve_template_ref("fsaverage", where=TemplateSearch(templateflow_home=tmp_path / "tf"))
        with pytest.raises(InputError) as e:
            ref.load("L", ("sulc",))
        assert "not this template's map (" + words in str(e.value) and "\n" not in str(e.value), (base, sign)


def test_a_templateflow_home_with_both_templates_serves_either_as_template_dir(tmp_path, write_templateflow):
    """--template-dir at a TemplateFlow home holding tpl-fsaverage and tpl-fsLR (any real one),
    --template fsLR: refused, `--template-dir holds fsaverage maps, but the template is fsLR`."""
    write_templateflow(tmp_path / "tf")
    fslr = tmp_path / "tf" / "tpl-fsLR"
    fslr.mkdir()
    bundled = load_template("fsLR", "L", ("sulc",))
    write_surface(fslr / "tpl-fsLR_hemi-L_den-32k_sphere.surf.gii", bundled.vertices, bundled.faces, hemi="L")
    write_metric(fslr / "tpl-fsLR_hemi-L_den-32k_sulc.shape.gii", bundled.features["sulc"].astype(np.float32), hemi="L")
    for base, folder in (("fsLR", fslr), ("fsaverage", tmp_path / "tf" / "tpl-fsaverage")):
        ref = resolve_template_ref(base, where=TemplateSearch(template_dir=tmp_path / "tf"))
        assert (ref.source("L", ("sulc",)).kind, ref.source("L", ("sulc",)).folder) == ("folder", folder), base
    # the same home as --template (template= in Python): which template is meant is not the folder's to say
    with pytest.raises(InputError) as e:
        resolve_template_ref(tmp_path / "tf")
    assert str(e.value) == (f"{tmp_path / 'tf'}: holds the maps of several templates (fsaverage, fsLR): name the "
                            f"template and give the folder as --template-dir, e.g. --template fsLR --template-dir "
                            f"{tmp_path / 'tf'} (template='fsLR', template_dir=... in Python)")


def test_template_maps_read_from_another_package_are_named_in_the_sidecars_record():
    """Twenty-first session: multimodal-fsLR registers to the fsLR myelin and curvature that
    brainspace ships (its conte69 group maps on fsLR 32k), but every sidecar's ``TemplateSource``
    said ``Kind: bundled``, ``Path: geomorph_bids/data/templates``, ``BuiltFromVertices: 163842``
    (the sulc's origin): nothing in the outputs' sidecars named the maps the myelin and curvature
    were registered to. Those maps are now named (``Maps``: feature -> ``package:path``); a
    sulc-only record is unchanged."""
    from geomorph_bids.io.template_sources import source_record
    from geomorph_bids.resources import package_template_features

    ref = TemplateRef.bundled("fsLR")
    sulc_only = ref.provenance("L", ("sulc",))
    assert "template_maps" not in sulc_only and "Maps" not in source_record(sulc_only)
    if "myelin" not in package_template_features("fsLR"):
        pytest.skip("brainspace (the fsLR myelin template) is not installed")
    record = source_record(ref.provenance("L", ("sulc", "curv", "myelin")))
    assert record["Kind"] == "bundled"
    assert record["Maps"] == {"curv": "brainspace:datasets/matrices/main_group/conte69_32k_curvature.csv",
                              "myelin": "brainspace:datasets/matrices/main_group/conte69_32k_t1wt2w.csv"}
    # and the run's start line (template maps: ...) says it
    assert ref.describe(("sulc",)) == "fsLR from the bundled fsLR"
    assert ref.describe(("sulc", "curv", "myelin")) == (
        "fsLR from the bundled fsLR (curv, myelin from brainspace's group maps)")
    # and the reports' "template maps" line (describe_provenance of the metrics)
    line = describe_provenance(ref.provenance("L", ("sulc", "curv", "myelin")))
    assert ("(built from 163,842); curv from brainspace's conte69_32k_curvature.csv; "
            "myelin from brainspace's conte69_32k_t1wt2w.csv, sha256 ") in line

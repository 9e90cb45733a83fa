"""Population templates: iterative register-then-average lowers the distance to the template,
and the result is written as a tpl-<label> folder that loads as a Template."""

from __future__ import annotations

import json

import numpy as np
import pytest

from geomorph_bids.engine.population import PopulationSubject, average_maps, build_template
from geomorph_bids.engine.register import register
from geomorph_bids.engine.synth import BENCHMARK_CONFIGS, synth_subject
from geomorph_bids.io.custom_template import load_custom_template
from geomorph_bids.io.template_ref import resolve_template
from geomorph_bids.io.templates import load_template
from geomorph_bids.sphere.icosphere import icosphere


def _cohort(n: int, hemi: str = "L") -> list[PopulationSubject]:
    """n synthetic subjects on ico-5 spheres: the fsLR template warped (bumps), rotated and
    with intensity changes."""
    tpl = load_template("fsLR", hemi, ("sulc",))
    sv, sf = icosphere(5)
    out = []
    for i in range(n):
        s = synth_subject(tpl.vertices, tpl.faces, tpl.features["sulc"], [7, i], BENCHMARK_CONFIGS["bumps"],
                          subject_vertices=sv, subject_faces=sf)
        out.append(PopulationSubject(f"s{i}", (s.vertices, s.faces), {"sulc": s.features[:, 0]}))
    return out


def test_average_maps_keeps_mask():
    a = average_maps([np.array([1.0, 2.0, np.nan]), np.array([3.0, 4.0, 5.0])], np.array([True, False, True]))
    assert np.allclose(a, [2.0, 0.0, 5.0])


def test_build_template_lowers_distance(tmp_path):
    result = build_template(_cohort(3), iterations=3, template="fsLR", hemi="L", label="testpop",
                            out_dir=tmp_path, rigid_only=True)
    d = result.mean_distances
    assert len(d) == 3 and result.n_subjects == 3 and not result.failures
    assert d[1] < d[0] and d[2] <= d[1] + 1e-3, d
    assert result.history[0]["template"] == "fsLR" and result.history[1]["template"] == "testpop"
    # written as tpl-<label>, loadable as a custom template and usable by register()
    folder = result.folder
    assert folder == tmp_path / "tpl-testpop"
    desc = json.loads((folder / "template_description.json").read_text())
    assert desc["Identifier"] == "testpop" and desc["BaseTemplate"] == "fsLR"
    assert desc["Hemispheres"]["L"]["Iterations"] == 3
    # who was averaged, not only how many (a cohort's template is described by its members)
    assert desc["Hemispheres"]["L"]["Subjects"] == 3 and desc["Hemispheres"]["L"]["Participants"] == ["s0", "s1", "s2"]
    tpl = load_custom_template(folder, "L", ("sulc",))
    assert tpl.name == "testpop" and tpl.features["sulc"].shape == (40962,)
    assert np.allclose(tpl.features["sulc"], result.template.features["sulc"], atol=1e-4)
    assert np.allclose(tpl.from_fsaverage, load_template("fsLR", "L", ()).from_fsaverage)
    assert resolve_template("testpop", "L", ("sulc",), search=[tmp_path]).name == "testpop"
    subj = _cohort(1)[0]
    reg = register(subj.sphere, subj.features, template=tpl, hemi="L", rigid_only=True)
    assert reg.metrics["cc_sulc_after"] > 0.8


def test_build_template_errors(tmp_path):
    with pytest.raises(ValueError, match="letters and digits"):
        build_template(_cohort(2), 1, label="bad-label")
    with pytest.raises(ValueError, match="standard template's name"):
        build_template(_cohort(2), 1, label="fsLR")
    with pytest.raises(ValueError, match="at least 2"):
        build_template(_cohort(1), 1)
    # subjects named alike (p.parent.name of .../sub-0N/surf/lh.sphere is 'surf' for all): all were averaged
    # but one counted, or 'fewer than 2 subjects registered' though every one had
    same = [PopulationSubject("surf", s.sphere, s.features) for s in _cohort(3)]
    with pytest.raises(ValueError, match=r"subject names must be unique .*'surf' given 3 times; name each subject"):
        build_template(same, 1, rigid_only=True)
    with pytest.raises(ValueError, match="unknown template"):
        resolve_template("nothere", "L", search=[tmp_path])


@pytest.mark.slow
def test_build_template_nonrigid(tmp_path):
    from geomorph_bids.model.optimise import OptimiseConfig

    cfg = OptimiseConfig(control_levels=(2,), data_levels=(4,), steps=(30,), smoothing=(10,))
    result = build_template(_cohort(3), iterations=2, optimise=cfg, label="nonrigid")
    assert result.mean_distances[1] < result.mean_distances[0]


def test_a_template_built_from_a_population_template_lies_in_its_base_space(tmp_path):
    """Round eight: `group --build-template 1 --template geomorphPopulation --template-label pop2`
    wrote BaseTemplate 'geomorphPopulation', exit 0, and every later `--template pop2` failed
    ('custom template has BaseTemplate ...; expected fsLR or fsaverage')."""
    first = build_template(_cohort(2), iterations=1, template="fsLR", label="pop", out_dir=tmp_path,
                           rigid_only=True)
    second = build_template(_cohort(2), iterations=1, template=first.folder, label="popb", out_dir=tmp_path,
                            rigid_only=True)
    assert second.base == "fsLR"
    assert json.loads((second.folder / "template_description.json").read_text())["BaseTemplate"] == "fsLR"
    tpl = resolve_template(second.folder, "L", ("sulc",))
    assert tpl.name == "popb" and np.allclose(tpl.from_fsaverage, load_template("fsLR", "L", ()).from_fsaverage)


def test_a_hemisphere_built_on_another_base_is_refused_when_loaded(tmp_path):
    """Round eight: a folder whose hemispheres were built on two bases (one rebuilt on another)
    loaded the odd one in the folder's base coordinates, in silence."""
    from geomorph_bids.engine.population import base_conflict
    from geomorph_bids.errors import InputError

    result = build_template(_cohort(2, "R"), iterations=1, template="fsaverage", hemi="R", label="mix",
                            out_dir=tmp_path, rigid_only=True)
    assert base_conflict(tmp_path, "mix", "fsLR", ["L"]).startswith(f"{result.folder} holds hemi-R built on fsaverage")
    assert base_conflict(tmp_path, "mix", "fsLR", ["L", "R"]) is None
    assert base_conflict(tmp_path, "mix", "fsaverage", ["L"]) is None
    build_template(_cohort(2), iterations=1, template="fsLR", hemi="L", label="mix", out_dir=tmp_path,
                   rigid_only=True)  # the engine writes what it is asked to; the loader says what it is
    assert load_custom_template(result.folder, "L", ("sulc",)).name == "mix"
    with pytest.raises(InputError, match="hemi-R of template mix was built on fsaverage, but the folder's "
                                         "BaseTemplate is fsLR"):
        load_custom_template(result.folder, "R", ("sulc",))


def test_a_rebuilt_template_keeps_no_map_of_an_earlier_build(tmp_path):
    """Round eight: --features sulc curv, then a rebuild with sulc alone, left the first build's
    curv beside a description listing Features [sulc] (a later registration could use it)."""
    cohort = _cohort(2)
    for s in cohort:
        s.features["curv"] = 0.3 * s.features["sulc"]
    first = build_template(cohort, iterations=1, template="fsLR", hemi="L", features=("sulc", "curv"),
                           label="pop", out_dir=tmp_path, rigid_only=True)
    names = lambda: sorted(p.name for p in first.folder.glob("*.shape.gii"))  # noqa: E731
    assert names() == ["tpl-pop_hemi-L_den-ico6_curv.shape.gii", "tpl-pop_hemi-L_den-ico6_sulc.shape.gii"]
    build_template(_cohort(2, "R"), iterations=1, template="fsLR", hemi="R", label="pop", out_dir=tmp_path,
                   rigid_only=True)
    build_template(_cohort(2), iterations=1, template="fsLR", hemi="L", label="pop", out_dir=tmp_path,
                   rigid_only=True)
    # hemi-L's stale curv is gone; hemi-R (another hemisphere's build) is left alone
    assert names() == ["tpl-pop_hemi-L_den-ico6_sulc.shape.gii", "tpl-pop_hemi-R_den-ico6_sulc.shape.gii"]


def test_the_template_folder_holds_its_sphere(tmp_path):
    """tpl-<label>/ held the maps but not the mesh they are on: Workbench (wb_view,
    -metric-resample to the population template) had nothing to load them on. Now each hemisphere's
    ico-6 sphere in the base template's coordinates is written beside its maps, as TemplateFlow does."""
    import nibabel as nib

    result = build_template(_cohort(2), iterations=1, template="fsLR", hemi="L", label="meshpop",
                            out_dir=tmp_path, rigid_only=True)
    path = result.folder / "tpl-meshpop_hemi-L_den-ico6_sphere.surf.gii"
    img = nib.load(path)
    vertices, faces = (d.data for d in img.darrays)
    assert vertices.shape == (40962, 3) and faces.shape == (81920, 3)
    assert np.allclose(vertices, result.template.vertices, atol=1e-4)
    assert np.array_equal(faces, result.template.faces)
    assert img.darrays[0].meta["AnatomicalStructurePrimary"] == "CortexLeft"
    maps = nib.load(result.folder / "tpl-meshpop_hemi-L_den-ico6_sulc.shape.gii").darrays[0].data
    assert maps.shape == (len(vertices),)
    assert load_custom_template(result.folder, "L", ("sulc",)).name == "meshpop"  # still loads as before


def test_a_rebuild_stopped_while_it_writes_its_maps_is_never_loaded(tmp_path, monkeypatch):
    """Twentieth session (found by the kill sweep): a rebuild of hemi-L stopped after its first map was
    replaced (a kill, a full disk) left the new map beside the earlier build's description, and the
    folder loaded as if whole. Now the hemisphere is unlisted while its maps are replaced: the loader
    refuses it, naming the unfinished build, and the other hemisphere still loads."""
    import geomorph_bids.io.gifti as gifti
    from geomorph_bids.engine.population import write_template
    from geomorph_bids.errors import InputError

    cohort = _cohort(2)
    for s in cohort:
        s.features["curv"] = 0.3 * s.features["sulc"]
    first = build_template(cohort, iterations=1, template="fsLR", hemi="L", features=("sulc", "curv"),
                           label="pop", out_dir=tmp_path, rigid_only=True)
    build_template(_cohort(2, "R"), iterations=1, template="fsLR", hemi="R", label="pop", out_dir=tmp_path,
                   rigid_only=True)
    real, calls = gifti.write_metric, []

    def write_metric(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:  # the first map replaced, the second write fails
            raise OSError(28, "No space left on device", str(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(gifti, "write_metric", write_metric)
    with pytest.raises(OSError):
        write_template(tmp_path, first)
    monkeypatch.setattr(gifti, "write_metric", real)
    with pytest.raises(InputError, match="does not list hemi-L: its build did not finish"):
        load_custom_template(first.folder, "L", ("sulc",))
    assert load_custom_template(first.folder, "R", ("sulc",)).name == "pop"
    write_template(tmp_path, first)  # the build again: whole, listed and loaded
    doc = json.loads((first.folder / "template_description.json").read_text())
    assert sorted(doc["Hemispheres"]) == ["L", "R"]
    assert np.allclose(load_custom_template(first.folder, "L", ("sulc",)).features["sulc"],
                       first.template.features["sulc"], atol=1e-5)


def test_the_hemisphere_features_and_rounds_are_read_as_register_reads_them():
    """Twentieth session: ``hemi="left"`` (which ``register()`` takes) failed in the template's lookup
    with ``IndexError: tuple index out of range``; ``features="sulc"`` was read as the maps s, u, l, c;
    ``iterations=1.5`` raised Python's ``'float' object cannot be interpreted as an integer``; a subject
    whose map had another name failed every round as ``KeyError: 'sulc'``, naming no subject."""
    cohort = _cohort(2)
    plain = build_template(cohort, 1, "fsLR", "L", rigid_only=True)
    spelled = build_template(cohort, 1, "fsLR", "left", features="sulc", rigid_only=True)
    assert spelled.template.hemi == "L"
    np.testing.assert_array_equal(spelled.template.features["sulc"], plain.template.features["sulc"])
    with pytest.raises(TypeError, match=r"^iterations must be a whole number >= 1, got 1.5"):
        build_template(cohort, 1.5, "fsLR", "L", rigid_only=True)
    renamed = [cohort[0], PopulationSubject("s1", cohort[1].sphere, {"Sulc": cohort[1].features["sulc"]})]
    with pytest.raises(ValueError, match=r"^subject s1: no map 'sulc' among its features \('Sulc'\); every subject "
                                         r"needs the maps features= names: sulc"):
        build_template(renamed, 1, "fsLR", "L", rigid_only=True)


def test_a_subject_whose_map_is_in_other_units_is_refused_by_name():
    """build_template averaged the maps as given: a subject whose sulc was in cm (a tenth of the others')
    or scaled by 1000 weighed in that many times less or more, in silence (fix-z's left list). Now
    refused before any work, naming the subject, its spread and the others'; maps of one scale pass."""
    cohort = _cohort(4)
    big = [PopulationSubject(s.name, s.sphere, {"sulc": s.features["sulc"] * (1000.0 if s.name == "s2" else 1.0)})
           for s in cohort]
    with pytest.raises(ValueError, match=r"^sulc maps in other units\? s2 \(SD [0-9.]+, 9\d\dx the others' median "
                                         r"0\.\d+\): build_template averages the maps as given, so such a map "
                                         r"dominates the average"):
        build_template(big, 1, rigid_only=True)
    small = [PopulationSubject(s.name, s.sphere, {"sulc": s.features["sulc"] / (10.0 if s.name == "s0" else 1.0)})
             for s in cohort]
    with pytest.raises(ValueError, match=r"s0 \(SD [0-9.]+, 0\.\d+x the others' median"):
        build_template(small, 1, rigid_only=True)
    # two subjects 10x apart: which one is off cannot be told, both are named
    with pytest.raises(ValueError, match=r"s0 \(SD .*; s1 \(SD "):
        build_template(small[:2], 1, rigid_only=True)
    from geomorph_bids.engine.population import _check_units

    _check_units(cohort, ("sulc",))  # one scale: nothing said
    scaled = [PopulationSubject(s.name, s.sphere, {"sulc": s.features["sulc"] * (1.8 if s.name == "s1" else 1.0)})
              for s in cohort]
    _check_units(scaled, ("sulc",))  # within a real cohort's spread


def test_the_folder_written_is_the_one_looked_for(tmp_path):
    """``tpl-<label>`` was spelled in three places (the writer, the base check, the search), and the
    stale maps' pattern by hand with ``ico6``: now ``custom_template_folder`` and
    ``custom_feature_file`` name them, for the writer and the readers alike."""
    from geomorph_bids.engine.population import base_conflict
    from geomorph_bids.io.custom_template import custom_template_folder, find_custom_template

    result = build_template(_cohort(2), iterations=1, template="fsLR", hemi="L", label="samepop",
                            out_dir=tmp_path, rigid_only=True)
    assert result.folder == custom_template_folder(tmp_path, "samepop") == tmp_path / "tpl-samepop"
    assert find_custom_template("samepop", [tmp_path]) == result.folder
    assert base_conflict(tmp_path, "samepop", "fsaverage", ["R"]).startswith(f"{result.folder} holds hemi-L built on fsLR")

"""results.resample: one density sphere read and indexed once serves many hemispheres, with the
same values as reading it for each."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from geomorph_bids.results.resample import density_target, resample_features
from geomorph_bids.sphere.icosphere import icosphere
from geomorph_bids.sphere.rotation import random_rotation


def test_a_reused_target_gives_the_same_maps_and_names_its_source():
    v, f = icosphere(5)
    v = v * 100.0
    rng = np.random.default_rng(0)
    target = density_target("fsLR", "L", "32k")
    assert len(target.vertices) == 32492 and target.areas.shape == (32492,) and target.areas.min() > 0
    for k in range(2):  # two "hemispheres", one target
        moved = v @ random_rotation(rng, max_angle_deg=10.0).T
        maps = {"sulc": rng.normal(size=len(v)), "curv": rng.normal(size=len(v))}
        mid = moved * (1.0 + 0.1 * rng.random((len(v), 1)))
        for midthickness in (None, mid):
            fresh = resample_features((moved, f), maps, "fsLR", "L", "32k", midthickness=midthickness)
            reused = resample_features((moved, f), maps, "fsLR", "L", "32k", midthickness=midthickness,
                                       target=target)
            assert fresh.source == reused.source and fresh.area_surfaces == reused.area_surfaces
            for name in maps:
                np.testing.assert_array_equal(fresh.maps[name], reused.maps[name])
    marked = dataclasses.replace(target, source="given")
    assert resample_features((v, f), {"sulc": v[:, 0]}, "fsLR", "L", "32k", target=marked).source == "given"


def test_the_registrations_fans_give_the_same_maps():
    """``fans``: the registered mesh's faces-around table handed over (Registration.fans) builds
    the same locator as building it: the same maps, bit for bit; a table of another mesh is refused."""
    import pytest

    from geomorph_bids.sphere.locate import vertex_fans

    v, f = icosphere(5)
    rng = np.random.default_rng(3)
    moved = (v * 100.0) @ random_rotation(rng, max_angle_deg=20.0).T
    moved = moved + rng.normal(scale=0.05, size=moved.shape)  # not a rigid copy of the grid
    maps = {"sulc": rng.normal(size=len(v))}
    target = density_target("fsLR", "L", "32k")
    built = resample_features((moved, f), maps, "fsLR", "L", "32k", target=target)
    given = resample_features((moved, f), maps, "fsLR", "L", "32k", target=target, fans=vertex_fans(f, len(v)))
    np.testing.assert_array_equal(built.maps["sulc"], given.maps["sulc"])
    with pytest.raises(ValueError, match="fans has 2562 rows"):
        resample_features((moved, f), maps, "fsLR", "L", "32k", target=target, fans=vertex_fans(icosphere(4)[1], 2562))


def test_the_cortex_mask_keeps_the_medial_walls_zeros_out_of_the_cortex():
    """HCP's myelin, thickness and curvature (and FreeSurfer's thickness) are 0 on the medial
    wall. Resampled onto fsLR without the subject's cortex mask, the cortex along the wall's border
    drew on those zeros: on a realistic HCP hemisphere (fsaverage6 mesh, myelin ~1.8) 88 of the
    29,696 fsLR 32k cortex vertices were more than 0.3 below wb_command's ``-current-roi`` result
    (as HCP and sMRIPrep resample), some near 0. With ``cortex`` a map constant on the cortex stays
    that constant wherever a vertex draws on the cortex; a vertex with no cortical source keeps
    the unrestricted value (here the wall's 0)."""
    v, f = icosphere(5)
    rng = np.random.default_rng(5)
    moved = v @ random_rotation(rng, max_angle_deg=20.0).T
    cortex = moved[:, 0] < 70.0  # a cap of ~15% as the medial wall
    maps = {"myelin": np.where(cortex, 1.8, 0.0), "sulc": moved[:, 2] / 10.0}
    target = density_target("fsLR", "L", "32k")
    plain = resample_features((moved, f), maps, "fsLR", "L", "32k", target=target)
    assert not plain.cortex_roi and np.count_nonzero((plain.maps["myelin"] > 0.01) & (plain.maps["myelin"] < 1.79))
    roi = resample_features((moved, f), maps, "fsLR", "L", "32k", target=target, cortex=cortex)
    assert roi.cortex_roi
    on_cortex = roi.maps["myelin"] > 0
    np.testing.assert_allclose(roi.maps["myelin"][on_cortex], 1.8, rtol=1e-6)
    assert 0.75 < on_cortex.mean() < 0.95 and (roi.maps["myelin"] == 0).any()
    # a map with values on the wall: those values on the wall, the cortex's own inside
    far = (plain.maps["myelin"] == 0) | (plain.maps["myelin"] > 1.8 - 1e-6)  # no mix of both there
    np.testing.assert_allclose(roi.maps["sulc"][far], plain.maps["sulc"][far], atol=1e-5)
    with pytest.raises(ValueError, match="cortex mask has 2562 vertices, the map 10242"):
        resample_features((moved, f), maps, "fsLR", "L", "32k", target=target, cortex=cortex[:2562])


@pytest.mark.wb
def test_the_cortex_mask_resamples_as_wb_command_current_roi(tmp_path, wb_command):
    """The reference: ``wb_command -metric-resample ... ADAP_BARY_AREA -area-surfs S S32 -current-roi
    ROI`` (what the HCP pipelines run) gives the same values wherever it writes one (its
    ``-valid-roi-out``); where it writes 0 (no cortical source) ours keeps the unrestricted value."""
    import nibabel as nib

    from geomorph_bids.io import write_metric, write_surface

    v, f = icosphere(5)
    rng = np.random.default_rng(6)
    moved = v @ random_rotation(rng, max_angle_deg=20.0).T
    cortex = moved[:, 0] < 70.0
    values = np.where(cortex, 1.5 + 0.3 * np.sin(moved[:, 1] / 20.0), 0.0).astype(np.float32)
    target = density_target("fsLR", "L", "32k")
    ours = resample_features((moved.astype(np.float32), f), {"m": values}, "fsLR", "L", "32k", target=target,
                             cortex=cortex).maps["m"]
    sphere, new = tmp_path / "s.surf.gii", tmp_path / "t.surf.gii"
    write_surface(sphere, moved, f, hemi="L", geometric_type="Spherical")
    write_surface(new, target.vertices, target.faces, hemi="L", geometric_type="Spherical")
    write_metric(tmp_path / "m.func.gii", values, hemi="L")
    write_metric(tmp_path / "roi.shape.gii", cortex.astype(np.float32), hemi="L")
    wb_command("-metric-resample", tmp_path / "m.func.gii", sphere, new, "ADAP_BARY_AREA", tmp_path / "wb.func.gii",
               "-area-surfs", sphere, new, "-current-roi", tmp_path / "roi.shape.gii",
               "-valid-roi-out", tmp_path / "valid.shape.gii")
    wb = nib.load(tmp_path / "wb.func.gii").agg_data()
    valid = nib.load(tmp_path / "valid.shape.gii").agg_data() > 0
    assert 0.75 < valid.mean() < 0.95
    np.testing.assert_allclose(ours[valid], wb[valid], atol=2e-3)
    np.testing.assert_array_equal(ours[~valid], 0.0)  # the wall's own 0 where Workbench writes 0


@pytest.mark.wb
def test_the_smriprep_examples_maps_match_workbench_with_its_midthickness_and_mask(tmp_path, wb_command):
    """README ("Resampling your own maps"): with the subject's midthickness (and its copy resampled to the
    target) as ``-area-surfs`` and its cortex mask as ``-current-roi``, Workbench gives geomorph-bids' maps
    wherever it writes a value. Measured in the twenty-third session on the sMRIPrep example's four
    registered hemispheres: sulc within 6.0e-5 to 8.0e-5, thickness within 1.2e-4 to 2.7e-4 (about 5e-5 of
    its values), where the README said 5e-5 for all; here its session-1 native sphere turned 20 deg stands
    in for the registered one."""
    import nibabel as nib

    from pathlib import Path

    from geomorph_bids.io import read_feature, read_mask, read_surface, write_metric, write_surface

    anat = (Path(__file__).resolve().parents[2] / "examples" / "ds-smriprep-example" / "derivatives" / "smriprep"
            / "sub-01" / "ses-1" / "anat")
    stem = "sub-01_ses-1_hemi-L_"
    sphere = read_surface(anat / f"{stem}sphere.surf.gii")
    mid = read_surface(anat / f"{stem}midthickness.surf.gii").vertices
    cortex = read_mask(anat / f"{stem}desc-cortex_mask.label.gii", len(mid))
    moved = (sphere.vertices @ random_rotation(np.random.default_rng(7), max_angle_deg=20.0).T).astype(np.float32)
    maps = {f: read_feature(anat / f"{stem}{f}.shape.gii") for f in ("sulc", "thickness")}
    target = density_target("fsLR", "L", "32k")
    ours = resample_features((moved, sphere.faces), maps, "fsLR", "L", "32k", target=target, midthickness=mid,
                             cortex=cortex).maps
    reg, new = tmp_path / "reg.surf.gii", tmp_path / "t.surf.gii"
    write_surface(reg, moved, sphere.faces, hemi="L")
    write_surface(new, target.vertices, target.faces, hemi="L")
    write_metric(tmp_path / "roi.shape.gii", cortex.astype(np.float32), hemi="L")
    wb_command("-surface-resample", anat / f"{stem}midthickness.surf.gii", reg, new, "BARYCENTRIC",
               tmp_path / "mid32k.surf.gii")
    for name, atol in (("sulc", 1e-4), ("thickness", 3e-4)):
        wb_command("-metric-resample", anat / f"{stem}{name}.shape.gii", reg, new, "ADAP_BARY_AREA",
                   tmp_path / "wb.func.gii", "-area-surfs", anat / f"{stem}midthickness.surf.gii",
                   tmp_path / "mid32k.surf.gii", "-current-roi", tmp_path / "roi.shape.gii",
                   "-valid-roi-out", tmp_path / "valid.shape.gii")
        wb = nib.load(tmp_path / "wb.func.gii").agg_data()
        valid = nib.load(tmp_path / "valid.shape.gii").agg_data() > 0
        assert valid.sum() > 29000
        np.testing.assert_allclose(ours[name][valid], wb[valid], atol=atol, rtol=0)
def test_an_empty_templateflow_home_decided_at_the_entry_point_is_not_read_again(tmp_path, monkeypatch):
    """``RunConfig.templateflow_home`` is decided once (``""``: TEMPLATEFLOW_HOME was not set), and the
    sidecars name the density sphere found then (``density_sources``). The resampling below read
    ``$TEMPLATEFLOW_HOME`` again when given ``""``: a TemplateFlow sphere found there later (a Nipype
    node's environment, a batch worker's) resampled the maps onto another mesh than the sidecars name."""
    from geomorph_bids.io.gifti import write_surface
    from geomorph_bids.resources import templateflow_sphere_file

    v, f = icosphere(5)
    other = templateflow_sphere_file(tmp_path, "fsaverage", "L", "10k")
    other.parent.mkdir(parents=True)
    write_surface(other, v, f, hemi="L")
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(tmp_path))
    assert density_target("fsaverage", "L", "10k").source == "TemplateFlow tpl-fsaverage/" + other.name  # the API
    decided = density_target("fsaverage", "L", "10k", "")
    assert not decided.source.startswith("TemplateFlow")
    maps = resample_features((v, f), {"sulc": v[:, 0]}, "fsaverage", "L", "10k", "")
    assert maps.source == decided.source


def test_a_density_target_is_kept_per_process_and_read_again_when_its_file_changes(tmp_path, monkeypatch):
    """Twenty-fifth session (fix-by): every resampling (a workflow's node per hemisphere, a batch chunk per
    hemisphere side) read, checked and indexed the output-density sphere again, ~60 ms at 32k vertices. The
    process now keeps the last two: the same target for the same arguments and file, the same maps as one
    read now, bit for bit; a sphere file rewritten at the same path is read again; the kept arrays are read-only."""
    from geomorph_bids.io.gifti import write_surface
    from geomorph_bids.results.resample import _density_target
    from geomorph_bids.resources import templateflow_sphere_file

    kept = density_target("fsLR", "L", "32k", "")
    assert density_target("fsLR", "L", "32k", "") is kept
    now = _density_target("fsLR", "L", "32k", "")
    assert now is not kept and now.source == kept.source
    for a, b in ((kept.vertices, now.vertices), (kept.faces, now.faces), (kept.areas, now.areas)):
        np.testing.assert_array_equal(a, b)
        assert not a.flags.writeable
    v, f = icosphere(5)
    rng = np.random.default_rng(3)
    moved = (v * 100.0) @ random_rotation(rng, max_angle_deg=10.0).T
    maps = {"sulc": rng.normal(size=len(v))}
    for mid in (None, moved * 1.05):
        a = resample_features((moved, f), maps, "fsLR", "L", "32k", "", midthickness=mid)  # the kept target
        b = resample_features((moved, f), maps, "fsLR", "L", "32k", "", midthickness=mid, target=now)
        np.testing.assert_array_equal(a.maps["sulc"], b.maps["sulc"])
        assert a.maps["sulc"].dtype == np.float32 and a.n_vertices == 32492

    path = templateflow_sphere_file(tmp_path, "fsaverage", "L", "10k")
    path.parent.mkdir(parents=True)
    write_surface(path, v, f, hemi="L")
    first = density_target("fsaverage", "L", "10k", str(tmp_path))
    assert first.source == "TemplateFlow tpl-fsaverage/" + path.name
    assert density_target("fsaverage", "L", "10k", str(tmp_path)) is first
    turned = v @ random_rotation(rng, max_angle_deg=30.0).T  # another sphere in the same file
    write_surface(path, turned, f, hemi="L")
    second = density_target("fsaverage", "L", "10k", str(tmp_path))
    assert second is not first
    np.testing.assert_allclose(second.vertices, turned.astype(np.float32), atol=1e-3)
    assert not np.allclose(second.vertices, first.vertices, atol=1.0)
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(tmp_path))  # None: $TEMPLATEFLOW_HOME, as before
    found = density_target("fsaverage", "L", "10k")
    assert found.source == second.source and np.array_equal(found.vertices, second.vertices)
    assert density_target("fsaverage", "L", "10k") is found
    monkeypatch.delenv("TEMPLATEFLOW_HOME")  # unset: not the file of before
    assert not density_target("fsaverage", "L", "10k").source.startswith("TemplateFlow")

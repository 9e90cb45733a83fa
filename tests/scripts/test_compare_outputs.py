"""scripts/compare_outputs.py: what two runs' output trees may differ in (the clock) is masked,
nothing else; a difference is named with what differs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from geomorph_bids.io.gifti import write_metric, write_surface
from geomorph_bids.reports.group import build_group_report
from geomorph_bids.sphere.icosphere import icosphere

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compare_outputs():
    spec = importlib.util.spec_from_file_location("compare_outputs", ROOT / "scripts" / "compare_outputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(seconds: list[float]) -> list[dict]:
    """Four hemispheres' group-table rows that differ between two runs in their run time only."""
    return [{"subject": s, "session": None, "hemi": h, "template": "fsLR", "method": "optimise", "quality": "ok",
             "cc_sulc_before": 0.1, "cc_sulc_rigid": 0.87, "cc_sulc_after": 0.965 + 0.001 * i,
             "areal_mean_abs": 0.12 + 0.01 * i, "areal_p95_abs": 0.3 + 0.02 * i, "shape_mean": 0.2, "n_folded": 0,
             "seconds_total": t}
            for i, ((s, h), t) in enumerate(zip([("01", "L"), ("01", "R"), ("02", "L"), ("02", "R")], seconds))]


def test_two_group_reports_that_differ_in_run_times_only_compare_identical(compare_outputs, tmp_path):
    """The example's group level after two identical participant runs was reported as differing:
    the distribution figure's alt text quotes the run times, and a run-time outlier (sub-01 L at
    4.4 s beside 3.3-3.4 s, as batch mode's first chunk measured) was listed in the outliers
    table, marked on its row and called 'ok, outlier' in the quality column."""
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, seconds in ((a, [8.693, 8.822, 6.567, 6.996]), (b, [4.398, 3.423, 3.438, 3.296])):
        folder.mkdir()
        build_group_report(folder, rows=_rows(seconds))
    html = (b / "group.html").read_text()
    assert "run time (s): 4 hemisphere(s), median 3.431, range 3.296 to 4.398, outliers sub-01 L" in html and "ok, outlier" in html  # what is masked
    assert "No outliers." in (a / "group.html").read_text()
    assert compare_outputs.compare(a, b) == []


def test_an_outlier_of_another_metric_still_differs(compare_outputs, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    rows = _rows([3.4, 3.4, 3.4, 3.4])
    for folder in (a, b):
        folder.mkdir()
    build_group_report(a, rows=rows)
    rows[0]["areal_p95_abs"] = 3.0  # far worse than the others: an outlier
    build_group_report(b, rows=rows)
    assert compare_outputs.compare(a, b) == ["differs: group.html"]


def test_a_differing_json_names_its_keys_and_ignore_masks_them(compare_outputs, tmp_path):
    doc = {"registration": {"optimise_batch": 1, "seconds_total": 3.0, "cc_sulc_after": 0.9655575011492933}}
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, batch, seconds in ((a, 1, 3.0), (b, 4, 9.0)):
        (folder / "sub-01" / "anat").mkdir(parents=True)
        doc["registration"].update(optimise_batch=batch, seconds_total=seconds)
        (folder / "sub-01" / "anat" / "m_metrics.json").write_text(json.dumps(doc))
    assert compare_outputs.compare(a, b) == ["differs: sub-01/anat/m_metrics.json (registration.optimise_batch)"]
    assert compare_outputs.compare(a, b, frozenset({"optimise_batch"})) == []
    assert compare_outputs.main([str(a), str(b), "--ignore", "optimise_batch"]) == 0


def test_a_differing_sphere_gives_its_largest_vertex_displacement(compare_outputs, tmp_path):
    verts, faces = icosphere(2)
    a, b = tmp_path / "a", tmp_path / "b"
    moved = verts.copy()
    moved[7] += (0.0, 0.0, 2.5e-3)  # mm, on the radius-100 sphere
    for folder, v in ((a, verts), (b, moved)):
        folder.mkdir()
        write_surface(folder / "s_sphere.surf.gii", v, faces, "L")
        write_metric(folder / "m.shape.gii", np.arange(len(v), dtype=np.float32) + (v is moved) * np.float32(0.5), "L")
    assert compare_outputs.compare(a, b) == [
        "differs: m.shape.gii (array 0: largest difference 0.5)",
        "differs: s_sphere.surf.gii (largest vertex displacement 0.0025)"]

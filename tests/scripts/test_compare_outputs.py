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


def test_a_mistyped_folder_is_an_error_not_an_identical_empty_tree(compare_outputs, tmp_path, capsys):
    """Before: 'compare_outputs.py OUT1 OUT2-typo' of two missing folders (or an empty one and a missing one)
    printed '0 file(s) in ...: identical (timings masked)' and exit 0; a file given for a folder listed every
    file as 'only in before'. Now exit 2 and one line naming it."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    for a, b, bad, why in [("nope1", "nope2", "nope1", "no such folder"), ("empty", "nope", "nope", "no such folder"),
                           ("empty", "file.txt", "file.txt", "not a folder")]:
        assert compare_outputs.main([str(tmp_path / a), str(tmp_path / b)]) == 2
        assert capsys.readouterr().err == f"compare_outputs.py: error: {tmp_path / bad}: {why}\n"
    assert compare_outputs.main([str(tmp_path / "empty"), str(tmp_path / "empty")]) == 0


def test_crash_files_are_compared_by_node_not_by_their_run_id_time_and_random_name(compare_outputs, tmp_path):
    """Two identical runs that fail alike leave crash files named by the run's id, the clock and a random id
    (logs/crash-35a5065d/crash-20261207-225300-geomorph_batch.sub_01_wf.hemi_L_wf.read-74615278.txt): they were
    'only in before' / 'only in after'. Now counted by node: the same failures compare identical, another node's
    differs."""
    names = {"a": ["logs/crash-35a5065d/crash-20261207-225300-geomorph_batch.sub_01_wf.hemi_L_wf.read-74615278.txt",
                   "logs/crash-35a5065d/crash-20261207-225301-root-load_features-0593da35-a28f-4673-9ae4-b76c3087de35"
                   ".txt"],
             "b": ["logs/crash-b6364662/crash-20261207-225400-geomorph_batch.sub_01_wf.hemi_L_wf.read-1c2d3e4f.txt",
                   "logs/crash-b6364662/crash-20261207-225402-root-load_features-e4876cf6-c511-4673-a170-b7a95a4e1872"
                   ".txt"]}
    for tree, files in names.items():
        for rel in files:
            (tmp_path / tree / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / tree / rel).write_text(f"Traceback at {tree}")
    assert compare_outputs.compare(tmp_path / "a", tmp_path / "b") == []
    (tmp_path / "b" / "logs/crash-b6364662/crash-20261207-225403-root-register-0badf00d.txt").write_text("x")
    assert compare_outputs.compare(tmp_path / "a", tmp_path / "b") == [
        "crash files of node root-register: 0 before, 1 after"]


def test_two_participant_pages_that_differ_in_run_times_only_compare_identical(compare_outputs, tmp_path):
    """The participant page's metrics table quotes each hemisphere's run time (``run time (s)``: the metrics'
    ``seconds_total``; the JSON's per-stage ``seconds_*`` are masked there), and its footer the seconds it took
    to build: two runs of one build that differ there alone compare identical. The twenty-fifth session's
    fix-bu pass listed the page's seconds as unmasked; this pins that they are masked (no change needed)."""
    import shutil

    from geomorph_bids.reports.participant import build_participant_report

    from ..reports.conftest import _hemi_outputs

    a, b = tmp_path / "a" / "out", tmp_path / "b" / "out"
    for hemi in ("L", "R"):
        _hemi_outputs(a, "02", hemi, 2, False)
    shutil.copytree(a, b)
    for metrics in (b / "sub-02" / "anat").glob("*_metrics.json"):
        doc = json.loads(metrics.read_text())
        doc["registration"] = {k: (v + 7.25 if k.startswith("seconds") else v) for k, v in doc["registration"].items()}
        metrics.write_text(json.dumps(doc, indent=2))
    pages = [build_participant_report(out, "02").read_text() for out in (a, b)]
    assert "run time (s)" in pages[0] and pages[0] != pages[1]  # the pages differ, in the run times
    assert compare_outputs.compare(a, b) == []
    doc["registration"]["cc_sulc_after"] = 0.5  # a number that is not a time still differs
    metrics.write_text(json.dumps(doc, indent=2))
    build_participant_report(b, "02")
    found = compare_outputs.compare(a, b)
    assert "differs: sub-02.html" in found and f"differs: sub-02/anat/{metrics.name} (registration.cc_sulc_after)" in found

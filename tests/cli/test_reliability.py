"""Bad-input matrix through geomorph-bids: one dataset, one good subject and one subject per
kind of broken left hemisphere, one run. Each broken hemisphere must fail alone with one line
naming subject, hemisphere and file, leave no outputs, and not stop anything else."""

from __future__ import annotations

import re

import nibabel as nib
import numpy as np
import pytest

from .conftest import LEVEL
from .test_bids import anat, run

FS_FILES_PER_HEMI = 9  # registered sphere + json, metrics, sulc + json, native sphere + json, native sulc + json


def _surf(bids, subject):
    return bids / "derivatives" / "freesurfer" / f"sub-{subject}" / "surf"


def _break(bids, subject: str, how: str):
    """Break sub-<subject>'s left hemisphere; returns the file named in the error (or None)."""
    surf = _surf(bids, subject)
    sphere, sulc = surf / "lh.sphere", surf / "lh.sulc"
    v, f = nib.freesurfer.read_geometry(str(sphere))
    values = nib.freesurfer.read_morph_data(str(sulc))
    if how == "truncated_sulc":
        sulc.write_bytes(sulc.read_bytes()[:100])
        return sulc
    if how == "wrong_magic":
        sphere.write_bytes(b"this is not a FreeSurfer surface\n" * 40)
        return sphere
    if how == "vertex_count":
        nib.freesurfer.write_morph_data(str(sulc), values[:-10].astype(np.float32))
        return sulc
    if how == "nan_feature":
        values = values.copy()
        values[::50] = np.nan
        nib.freesurfer.write_morph_data(str(sulc), values.astype(np.float32))
        return sulc
    if how == "zero_feature":
        nib.freesurfer.write_morph_data(str(sulc), np.zeros_like(values, dtype=np.float32))
        return sulc
    if how == "not_a_sphere":  # a folded, white-surface-like shape: radius varies by +-35 %
        r = 1.0 + 0.35 * np.sin(5 * np.arctan2(v[:, 1], v[:, 0])) * np.sin(4 * np.arccos(v[:, 2] / 100.0))
        nib.freesurfer.write_geometry(str(sphere), (v * r[:, None]).astype(np.float32), f)
        return sphere
    if how == "folded_triangles":  # two neighbours' positions swapped at 5 % of the triangles: a fold
        w = np.array(v, dtype=np.float64)
        for a, b in f[::20, 1:]:
            w[[a, b]] = w[[b, a]]
        nib.freesurfer.write_geometry(str(sphere), w.astype(np.float32), f)
        return sphere
    if how == "missing_hemisphere":
        sphere.unlink()
        return None
    if how == "off_centre_small":  # handled: recentred and rescaled with a warning, registered
        nib.freesurfer.write_geometry(str(sphere), (v * 0.5 + [5.0, -3.0, 2.0]).astype(np.float32), f)
        return None
    raise ValueError(how)


CASES = ["truncated_sulc", "wrong_magic", "vertex_count", "nan_feature", "zero_feature", "not_a_sphere",
         "folded_triangles", "missing_hemisphere", "off_centre_small"]


@pytest.fixture(scope="module")
def matrix_run(dataset_factory, tmp_path_factory):
    subjects = tuple(f"{k:02d}" for k in range(1, len(CASES) + 2))  # 01 is the good one
    bids = dataset_factory("freesurfer", subjects=subjects)
    named = {s: _break(bids, s, how) for s, how in zip(subjects[1:], CASES)}
    tmp = tmp_path_factory.mktemp("matrix")
    code, out, err = run(bids, tmp / "out", "participant", "--model", "rigid", "-w", tmp / "w", "--nprocs", "2")
    return dict(code=code, out=tmp / "out", err=err, stdout=out, named=named,
                cases=dict(zip(subjects[1:], CASES)))


def test_exit_code_and_one_line_per_failure(matrix_run):
    assert matrix_run["code"] == 1
    failed = [line for line in matrix_run["err"].splitlines() if "FAILED" in line]
    expected = [s for s, how in matrix_run["cases"].items() if how != "off_centre_small"]
    assert sorted(re.search(r"sub-(\d+)", line).group(1) for line in failed) == sorted(expected)
    for line in failed:
        subject = re.search(r"sub-(\d+)", line).group(1)
        assert "hemi-L" in line and "hemi-R" not in line, line
        named = matrix_run["named"][subject]
        if named is not None:
            assert str(named) in line or named.name in line, line


@pytest.mark.parametrize("case", CASES)
def test_each_case_leaves_no_partial_output_and_keeps_the_rest(matrix_run, case):
    subject = next(s for s, how in matrix_run["cases"].items() if how == case)
    files = sorted(p.name for p in anat(matrix_run["out"], subject).iterdir())
    left = [n for n in files if "hemi-L" in n]
    right = [n for n in files if "hemi-R" in n]
    assert len(right) == FS_FILES_PER_HEMI  # the other hemisphere is complete
    if case == "off_centre_small":
        assert len(left) == FS_FILES_PER_HEMI
        native = nib.load(anat(matrix_run["out"], subject) / f"sub-{subject}_hemi-L_sphere.surf.gii")
        radius = np.linalg.norm(native.agg_data("NIFTI_INTENT_POINTSET"), axis=1)
        np.testing.assert_allclose(radius, 100.0, atol=1e-3)  # recentred and rescaled
    else:
        assert left == []
    good = sorted(p.name for p in anat(matrix_run["out"], "01").iterdir())
    assert len(good) == 2 * FS_FILES_PER_HEMI


def test_reasons_say_what_is_wrong(matrix_run):
    err = matrix_run["err"].lower()
    reason = {how: next(line for line in err.splitlines() if f"sub-{s} " in line and "failed" in line)
              for s, how in matrix_run["cases"].items() if how != "off_centre_small"}
    assert "vertices" in reason["vertex_count"] or "values" in reason["vertex_count"]
    assert "nan" in reason["nan_feature"] or "finite" in reason["nan_feature"]
    assert "no information" in reason["zero_feature"] or "constant" in reason["zero_feature"]
    assert "folded" in reason["folded_triangles"]
    assert "sphere" in reason["not_a_sphere"]
    assert "looked for" in reason["missing_hemisphere"] or "lh.sphere" in reason["missing_hemisphere"]
    assert LEVEL == 4

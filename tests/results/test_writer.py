"""The writer that commits a hemisphere's files into the output folder."""

from __future__ import annotations

import os

from geomorph_bids.results.writer import OutputFile, commit_outputs, staging


def test_an_output_damaged_in_place_is_put_back_and_the_work_file_is_untouched(tmp_path):
    """Outputs were hard links of the Nipype node's files in the work folder: an output truncated
    (or edited) in place damaged the cache too, and every rerun failed on the work file (exit 1,
    "GIFTI file is truncated") until the work folder was deleted. Files from outside the stage are
    now copied, so a rerun's commit puts the output back from the intact work file."""
    work = tmp_path / "work" / "register" / "registered_sphere.surf.gii"
    work.parent.mkdir(parents=True)
    work.write_bytes(b"<GIFTI>" + b"x" * 5000 + b"</GIFTI>")
    out = tmp_path / "out"
    dest = out / "sub-01" / "anat" / "sub-01_hemi-L_space-fsLR_desc-geomorph_sphere.surf.gii"
    files = [OutputFile(dest, "registered_sphere")]
    assert commit_outputs(files, {"registered_sphere": work}, out) == [dest]
    assert not os.path.samefile(dest, work) and work.stat().st_nlink == 1
    with open(dest, "r+b") as f:  # damaged in place
        f.truncate(100)
    assert work.stat().st_size == 5015
    commit_outputs(files, {"registered_sphere": work}, out)
    assert dest.read_bytes() == work.read_bytes()


def test_a_file_produced_in_the_stage_is_linked_into_place(tmp_path, monkeypatch):
    """Batch mode writes its files inside the stage: those are linked (renamed), not copied."""
    import shutil

    out = tmp_path / "out"
    dest = out / "sub-01" / "anat" / "sub-01_hemi-L_space-fsLR_desc-geomorph_sphere.surf.gii"
    copies: list[tuple] = []
    real = shutil.copyfile
    monkeypatch.setattr(shutil, "copyfile", lambda *a, **k: copies.append(a) or real(*a, **k))
    with staging(out) as stage:
        made = stage / "registered_sphere.surf.gii"
        made.write_bytes(b"sphere")
        commit_outputs([OutputFile(dest, "registered_sphere")], {"registered_sphere": made}, out, stage=stage)
    assert dest.read_bytes() == b"sphere" and copies == []

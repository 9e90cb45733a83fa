"""The writer that commits a hemisphere's files into the output folder."""

from __future__ import annotations

import hashlib
import json
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


class _Killed(BaseException):
    """Stands for SIGKILL (or a node losing power): nothing after it runs, no cleanup."""


def _hemisphere(tmp_path, tag: bytes):
    """A hemisphere's files (sphere, map with a sidecar, metrics JSON), produced with contents ``tag``."""
    work = tmp_path / f"work-{tag.decode()}"
    work.mkdir()
    produced = {}
    for field, name in (("registered_sphere", "sphere.surf.gii"), ("resampled_features", "sulc.shape.gii"),
                        ("metrics", "metrics.json")):
        (work / name).write_bytes(tag + b" " + name.encode())
        produced[field] = [work / name] if field == "resampled_features" else work / name
    anat = tmp_path / "out" / "sub-01" / "anat"
    files = [OutputFile(anat / "sub-01_hemi-L_space-fsLR_desc-geomorph_sphere.surf.gii", "registered_sphere"),
             OutputFile(anat / "sub-01_hemi-L_space-fsLR_den-32k_sulc.shape.gii", "resampled_features", 0,
                        meta={"Run": tag.decode()}),
             OutputFile(anat / "sub-01_hemi-L_space-fsLR_desc-geomorph_metrics.json", "metrics")]
    return files, produced


def test_a_set_killed_while_an_earlier_one_is_replaced_is_never_taken_as_done(tmp_path, monkeypatch):
    """Twentieth session: a rerun whose results differ (other inputs or settings) killed after the
    first file of the earlier set was replaced. Before: the new sphere beside the earlier run's map
    and metrics JSON, which marks a hemisphere as done: the group level tabled the earlier metrics
    for a sphere they do not describe. Now the earlier metrics JSON is removed before the first
    file changes: the set is not done (the rerun redoes it)."""
    out = tmp_path / "out"
    old_files, old = _hemisphere(tmp_path, b"old")
    commit_outputs(old_files, old, out)
    new_files, new = _hemisphere(tmp_path, b"new")
    real, calls = os.replace, []

    def replace_then_die(src, dst):
        real(src, dst)
        calls.append(dst)
        raise _Killed

    monkeypatch.setattr(os, "replace", replace_then_die)
    try:
        commit_outputs(new_files, new, out)
    except _Killed:
        pass
    monkeypatch.setattr(os, "replace", real)
    sphere, sulc, metrics = (f.path for f in new_files)
    assert calls == [sphere] and sphere.read_bytes() == b"new sphere.surf.gii"
    assert sulc.read_bytes() == b"old sulc.shape.gii"
    assert not metrics.exists()  # before: b"old metrics.json", beside the new sphere


def test_a_rerun_that_changes_nothing_or_fails_before_changing_keeps_the_earlier_set(tmp_path, monkeypatch):
    """The earlier metrics JSON goes only when a file is about to change: a rerun with the same results
    touches nothing, and one that fails while staging its first file (a full disk) leaves the set whole."""
    import errno
    import shutil

    out = tmp_path / "out"
    old_files, old = _hemisphere(tmp_path, b"old")
    commit_outputs(old_files, old, out)
    stamps = {f.path: f.path.stat().st_mtime_ns for f in old_files}
    (tmp_path / "again").mkdir()
    _, again = _hemisphere(tmp_path / "again", b"old")  # the same results, produced again
    commit_outputs(old_files, again, out)
    assert {f.path: f.path.stat().st_mtime_ns for f in old_files} == stamps
    new_files, new = _hemisphere(tmp_path, b"new")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", full)
    try:
        commit_outputs(new_files, new, out)
    except OSError:
        pass
    assert [f.path.read_bytes() for f in old_files] == [b"old sphere.surf.gii", b"old sulc.shape.gii",
                                                        b"old metrics.json"]


def test_a_copied_file_is_on_disk_before_it_is_renamed_into_place(tmp_path, monkeypatch):
    """Twentieth session: files copied from the work folder (the workflow's outputs) were renamed into
    place without being flushed (every other write of the outputs is: the atomic writer fsyncs), so a
    node losing power after the rename could come back with an empty sphere under its final name beside
    a metrics JSON marking the hemisphere done. Each copy is now fsynced before its rename."""
    files, produced = _hemisphere(tmp_path, b"new")
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(src)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    commit_outputs(files, produced, tmp_path / "out")
    renamed = [path for kind, path in events if kind == "replace" and "/.geomorph-staging/" in path]
    assert len(renamed) == 3  # sphere, map, metrics JSON (the sidecar is written by the atomic writer)
    for path in renamed:
        assert ("fsync", path) in events[:events.index(("replace", path))], path


def test_a_file_marked_unless_flagged_is_withheld_for_a_flagged_hemisphere(tmp_path, monkeypatch):
    """``unless_flagged`` (the sphere under sMRIPrep's names): written when the metrics JSON says
    the hemisphere passed, withheld and an earlier one removed with its sidecar when it says flagged,
    the earlier metrics JSON first (a run killed there leaves a set that is not done); the mark
    survives the Nipype round trip (to_dict / from_dict)."""
    import json
    from pathlib import Path

    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    sphere, metrics = work / "sphere.surf.gii", work / "metrics.json"
    sphere.write_bytes(b"sphere")
    anat = out / "sub-01" / "anat"
    msm = OutputFile(anat / "sub-01_hemi-L_space-fsLR_desc-msmsulc_sphere.surf.gii", "registered_sphere",
                     meta={"Description": "x"}, unless_flagged=True)
    files = [OutputFile(anat / "sub-01_hemi-L_space-fsLR_desc-geomorph_sphere.surf.gii", "registered_sphere"),
             OutputFile.from_dict(msm.to_dict()), OutputFile(anat / "m.json", "metrics")]
    assert files[1].unless_flagged
    produced = {"registered_sphere": sphere, "metrics": metrics}
    metrics.write_text(json.dumps({"quality": {"flagged": False}}))
    commit_outputs(files, produced, out)
    assert msm.path.is_file() and (anat / "sub-01_hemi-L_space-fsLR_desc-msmsulc_sphere.json").is_file()
    metrics.write_text(json.dumps({"quality": {"flagged": True}}))
    real = Path.unlink

    def unlink_then_die(self, missing_ok=False):  # killed as the earlier sMRIPrep-named sphere goes
        real(self, missing_ok=missing_ok)
        if self == msm.path:
            raise _Killed

    monkeypatch.setattr(Path, "unlink", unlink_then_die)
    try:
        commit_outputs(files, produced, out)
    except _Killed:
        pass
    monkeypatch.setattr(Path, "unlink", real)
    assert not (anat / "m.json").exists()  # the earlier set is not taken as done without its sphere
    written = commit_outputs(files, produced, out)
    assert sorted(p.name for p in anat.iterdir()) == ["m.json", "sub-01_hemi-L_space-fsLR_desc-geomorph_sphere.surf.gii"]
    assert msm.path not in written


def test_the_staging_folder_goes_once_empty_and_stays_while_another_stage_is_in_it(tmp_path):
    """CI caught two runs finishing side by side leaving an empty ``.geomorph-staging``: each saw
    the other still active and skipped the clean-up. The last stage out removes the folder."""
    from geomorph_bids.results.writer import STAGING_DIR

    with staging(tmp_path) as outer:
        with staging(tmp_path) as inner:
            assert inner.parent == outer.parent == tmp_path / STAGING_DIR
        assert outer.is_dir() and not inner.exists()  # the other stage keeps the folder
    assert not (tmp_path / STAGING_DIR).exists()


def test_staging_side_by_side_never_loses_a_stage_to_the_removal_of_the_empty_folder(tmp_path):
    """Writers entering and leaving stages at once: one's removal of the emptied folder falls
    between another's two mkdirs (parent, then its stage); that one tries again, no writer fails."""
    import threading

    from geomorph_bids.results.writer import STAGING_DIR

    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for _ in range(200):
                with staging(tmp_path) as stage:
                    (stage / "f").write_bytes(b"x")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert not (tmp_path / STAGING_DIR).exists()


def test_a_file_system_without_hard_links_or_fsync_takes_the_outputs(tmp_path, monkeypatch):
    """An SMB share or FUSE mount (s3fs, gcsfuse) as the output folder: no hard links (EPERM), no
    fsync (EINVAL). The staged files are copied instead of linked (as before) and the commit
    carries on without the flush (every hemisphere failed on `Invalid argument` before)."""
    import errno

    def refused(code):
        def call(*args, **kwargs):
            raise OSError(code, os.strerror(code))
        return call

    monkeypatch.setattr(os, "link", refused(errno.EPERM))
    monkeypatch.setattr(os, "fsync", refused(errno.EINVAL))
    out = tmp_path / "out"
    dest = out / "sub-01" / "anat" / "sub-01_hemi-L_space-fsLR_desc-geomorph_sphere.surf.gii"
    meta = {"Description": "registered sphere"}
    with staging(out) as stage:
        made = stage / "registered_sphere.surf.gii"
        made.write_bytes(b"sphere")
        written = commit_outputs([OutputFile(dest, "registered_sphere", meta=meta)], {"registered_sphere": made}, out,
                                 stage=stage)
    sidecar = dest.with_name(dest.name.replace(".surf.gii", ".json"))
    assert dest.read_bytes() == b"sphere" and json.loads(sidecar.read_text()) == meta
    assert sorted(written) == sorted([dest, sidecar])


def test_the_metrics_json_lists_the_files_written_before_it_so_that_they_can_be_checked_without_a_work_folder(
        tmp_path):
    """Twenty-fourth session (fix-bn): only the work folder knew a hemisphere was done, so a purged
    scratch ``-w`` registered it again. The writer now adds to the metrics JSON each file written
    before it (size and SHA-1, named beside it) and the document's own hash: a set is whole as written
    (after the output folder is moved too), and not once a file is truncated, edited to the same size,
    missing, or the metrics edited; a later run's failure mark does not count as an edit."""
    import shutil

    from geomorph_bids.results.metrics import mark_latest_run_failed, outputs_as_written, read_document

    out = tmp_path / "out"
    work = tmp_path / "work"
    work.mkdir()
    (work / "sphere.surf.gii").write_bytes(b"s" * 300)
    (work / "sulc.shape.gii").write_bytes(b"m" * 200)
    (work / "metrics.json").write_text(json.dumps({"registration": {"cc_sulc_after": 0.9}}))
    anat = out / "sub-01" / "anat"
    files = [OutputFile(anat / "sub-01_hemi-L_space-fsLR_desc-geomorph_sphere.surf.gii", "registered_sphere"),
             OutputFile(anat / "sub-01_hemi-L_space-fsLR_den-32k_desc-geomorph_sulc.shape.gii", "resampled_features",
                        0, meta={"Density": "32k"}),
             OutputFile(anat / "sub-01_hemi-L_space-fsLR_desc-geomorph_metrics.json", "metrics")]
    written = commit_outputs(files, {"registered_sphere": work / "sphere.surf.gii",
                                     "resampled_features": [work / "sulc.shape.gii"],
                                     "metrics": work / "metrics.json"}, out)
    metrics = files[-1].path
    doc = read_document(metrics)
    assert doc["registration"] == {"cc_sulc_after": 0.9}
    assert doc["outputs"]["files"] == {
        "sub-01_hemi-L_space-fsLR_desc-geomorph_sphere.surf.gii": [300, hashlib.sha1(b"s" * 300).hexdigest()],
        "sub-01_hemi-L_space-fsLR_den-32k_desc-geomorph_sulc.shape.gii": [200, hashlib.sha1(b"m" * 200).hexdigest()],
        "sub-01_hemi-L_space-fsLR_den-32k_desc-geomorph_sulc.json": [
            len(b'{\n  "Density": "32k"\n}'), hashlib.sha1(b'{\n  "Density": "32k"\n}').hexdigest()]}
    others = [p for p in written if p != metrics]
    assert outputs_as_written(doc, metrics, others)
    assert not outputs_as_written(doc, metrics, others[:1])  # another set of files than this run's
    # moved (renamed): the names are the metrics JSON's neighbours, so the set is still whole
    moved = tmp_path / "moved"
    shutil.move(out, moved)
    at = lambda p: moved / p.relative_to(out)  # noqa: E731
    assert outputs_as_written(read_document(at(metrics)), at(metrics), [at(p) for p in others])
    assert mark_latest_run_failed(at(metrics), "run1", "failed")  # a later run's mark is no edit
    assert outputs_as_written(read_document(at(metrics)), at(metrics), [at(p) for p in others])
    sphere = at(files[0].path)
    sphere.write_bytes(b"t" * 300)  # edited in place, same size
    assert not outputs_as_written(read_document(at(metrics)), at(metrics), [at(p) for p in others])
    sphere.write_bytes(b"s" * 300)
    edited = read_document(at(metrics))
    edited["registration"]["cc_sulc_after"] = 0.99
    assert not outputs_as_written(edited, at(metrics), [at(p) for p in others])
    with open(sphere, "r+b") as f:
        f.truncate(100)
    assert not outputs_as_written(read_document(at(metrics)), at(metrics), [at(p) for p in others])
    sphere.unlink()
    assert not outputs_as_written(read_document(at(metrics)), at(metrics), [at(p) for p in others])

"""io.digest.file_stamp: what tells a file changed without reading it."""

from __future__ import annotations

import os

import pytest

from geomorph_bids.io.digest import file_stamp


def test_a_file_replaced_by_one_of_the_same_size_and_mtime_gets_another_stamp(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"1" * 64)
    b.write_bytes(b"2" * 64)
    st = a.stat()
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))  # cp -p / rsync -t: size and mtime kept
    before = file_stamp(a)
    assert file_stamp(a) == before and len(before) == 5
    b.replace(a)
    after = file_stamp(a)
    assert after[2:4] == before[2:4]  # size and mtime alone could not tell
    assert after != before
    link = tmp_path / "link"
    link.symlink_to(a)
    assert file_stamp(link) == after  # through a link: its target's
    with pytest.raises(OSError):
        file_stamp(tmp_path / "missing")


def test_the_build_is_the_version_and_a_digest_of_the_source_and_every_metrics_file_records_it():
    """Every development build is version 0.1.0.dev0: the version alone could not tell the build
    that wrote an output folder from the one rerunning into it."""
    import re

    from geomorph_bids import __version__
    from geomorph_bids.io.digest import software_id, source_digest
    from geomorph_bids.results.metrics import metrics_document

    assert re.fullmatch(r"[0-9a-f]{40}", source_digest())
    assert software_id().startswith(f"geomorph-bids {__version__} (source {source_digest()[:12]}; numpy ")
    doc = metrics_document({"registration_features": ["sulc"], "cc_sulc_after": 0.9}, {"subject": "01"}, "32k", None)
    assert doc["software"] == software_id()


def test_the_build_holds_the_versions_of_the_libraries_that_make_the_numbers(monkeypatch):
    """A lab that upgraded torch (or numpy, scipy, nibabel) reran into the same work folder and got the
    earlier torch's cached registrations back as this run's: the build (the cache key of the workflow's
    nodes, batch mode's resume records, the metrics' software) held geomorph-bids' version and source
    only. Now each library's version is part of it; Nipype's, which only schedules, is not."""
    from importlib import metadata

    from geomorph_bids.io import digest

    now = digest.software_id()
    assert f"torch {metadata.version('torch')}" in now and f"numpy {metadata.version('numpy')}" in now
    assert "scipy " in now and "nibabel " in now and "nipype" not in now
    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: "9.9.9+cu999" if name == "torch" else real(name))
    digest.library_versions.cache_clear()
    try:
        upgraded = digest.software_id()
    finally:
        monkeypatch.undo()
        digest.library_versions.cache_clear()
    assert upgraded != now and "torch 9.9.9+cu999" in upgraded
    assert digest.software_id() == now


def test_the_build_digest_covers_the_bundled_data_that_changes_results(tmp_path):
    """The build (every cache key: the workflow's nodes, batch mode's resume records, the metrics' software)
    hashed the package's ``*.py`` alone: a new fsaverage->fsLR rotation (``tpl-fsLR_from-fsaverage_rotation.json``,
    read by every ``--sphere-reg`` registration to fsLR) or bundled template map left every key as it was, and a
    rerun reused outputs computed with the old one. The templates and the networks' weights count now; the
    example, the model cards, the training logs and the citation text (which change no number) do not."""
    from geomorph_bids.io import digest
    from geomorph_bids.resources import data_dir, template_rotation_file

    covered = digest.build_files(data_dir().parent)
    assert template_rotation_file("fsLR").resolve() in covered
    assert data_dir().resolve() / "templates" / "tpl-fsLR_hemi-L_den-ico6_sulc.shape.gii" in covered
    assert data_dir().resolve() / "models" / "sulc-fsLR" / "model.pt" in covered
    assert not [p for p in covered if p.suffix in (".md", ".csv") or "example" in p.parts]
    root = tmp_path / "geomorph_bids"
    (root / "data" / "templates").mkdir(parents=True)
    (root / "data" / "example").mkdir()
    (root / "engine.py").write_text("x = 1\n")
    rotation = root / "data" / "templates" / "tpl-fsLR_from-fsaverage_rotation.json"
    rotation.write_text('{"L": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}')
    (root / "data" / "example" / "lh.sulc").write_bytes(b"1")
    before = digest.tree_digest(root)
    (root / "data" / "example" / "lh.sulc").write_bytes(b"2")
    assert digest.tree_digest(root) == before
    rotation.write_text('{"L": [[1, 0, 0], [0, 0, 1], [0, -1, 0]]}')
    assert digest.tree_digest(root) != before

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
    assert software_id() == f"geomorph-bids {__version__} (source {source_digest()[:12]})"
    doc = metrics_document({"registration_features": ["sulc"], "cc_sulc_after": 0.9}, {"subject": "01"}, "32k", None)
    assert doc["software"] == software_id()

"""Bounded reads (io/limits.py): special files, oversized and sparse files, decompression bombs,
XML entities, endless and stuck reads. Each is refused with one line naming the file, in bounded
time and memory (checked: nothing here allocates more than the bound)."""

from __future__ import annotations

import base64
import gzip
import json
import os
import resource
import threading
import time
import zlib

import numpy as np
import pytest

from geomorph_bids.errors import InputError
from geomorph_bids.io import gifti, limits, read_feature, read_sphere, write_metric, write_surface
from geomorph_bids.io.discover import surface_vertex_count
from geomorph_bids.sphere.icosphere import icosphere


def _sphere_file(path):
    v, f = icosphere(2)
    write_surface(path, v, f, hemi="L")
    return path


def _one_line(exc: pytest.ExceptionInfo, path) -> str:
    text = str(exc.value)
    assert "\n" not in text and str(path) in text, text
    return text


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_fifo_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "lh.sphere"
    os.mkfifo(fifo)
    start = time.monotonic()
    with pytest.raises(InputError, match=r"named pipe \(FIFO\), not a regular file") as e:
        read_sphere(fifo)
    _one_line(e, fifo)
    assert surface_vertex_count(fifo) is None  # discovery's header read: no hang either
    assert time.monotonic() - start < 5  # would block forever if opened


def test_link_to_a_device_is_refused(tmp_path):
    link = tmp_path / "sub-01_hemi-L_sphere.surf.gii"
    link.symlink_to("/dev/zero")
    with pytest.raises(InputError, match="character device, not a regular file") as e:
        read_sphere(link)
    _one_line(e, link)
    assert surface_vertex_count(link) is None


def test_dangling_link_says_what_it_is(tmp_path):
    link = tmp_path / "lh.sulc"
    link.symlink_to(tmp_path / ".git" / "annex" / "objects" / "missing")
    with pytest.raises(InputError, match=r"broken symbolic link .*datalad get") as e:
        read_feature(link)
    _one_line(e, link)


@pytest.mark.parametrize("name, content", [
    ("lh.sulc", "/annex/objects/MD5E-s81981--d41d8cd98f00b204e9800998ecf8427e\n"),
    ("sub-01_hemi-L_sphere.surf.gii", "/annex/objects/SHA256E-s1234--0a1b.surf.gii"),
    ("lh.sphere", "../../../.git/annex/objects/Xq/9v/SHA256E-s1234--0a1b/SHA256E-s1234--0a1b"),
])
def test_git_annex_pointer_says_to_fetch_the_file(tmp_path, name, content):
    """Before: `is not a GIFTI file (does not start with XML)` / `magic number 0x2F616E ... the
    file is corrupted`: true, and no help to a DataLad user whose file was never fetched."""
    path = tmp_path / name
    path.write_text(content)
    reader = read_feature if name == "lh.sulc" else read_sphere
    with pytest.raises(InputError, match=r"is a git-annex pointer to (MD5E|SHA256E)-s\d+--\w+.*, not the "
                                         r"file's content .*run `datalad get` or `git annex get` on it") as e:
        reader(path)
    assert "corrupted" not in _one_line(e, path)
    # a small file that only mentions annex objects is left to its reader
    path.write_text("annex/objects/ mentioned\nin two lines")
    with pytest.raises(InputError) as e:
        reader(path)
    assert "git-annex" not in str(e.value)


def test_sparse_10_gb_file_is_refused_before_reading(tmp_path):
    big = tmp_path / "sub-01_hemi-L_sphere.surf.gii"
    with open(big, "wb") as fh:
        fh.truncate(10 * 2 ** 30)  # sparse: no disk space used
    before = _max_rss_mb()
    with pytest.raises(InputError, match=r"is 10 GiB, larger than any") as e:
        read_sphere(big)
    _one_line(e, big)
    assert surface_vertex_count(big) is None  # scanned at most SURFACE_MAX_BYTES, then given up
    assert _max_rss_mb() - before < 100


def test_map_bound_follows_the_sphere(tmp_path):
    """A feature map is bounded by the vertex count of its sphere (read first)."""
    big = tmp_path / "lh.sulc"
    with open(big, "wb") as fh:
        fh.truncate(limits.map_max_bytes(642) + 1)
    with pytest.raises(InputError, match="larger than any per-vertex map"):
        read_feature(big, n_vertices=642)


def test_gzip_bomb_named_like_a_gifti(tmp_path, monkeypatch):
    """A few kB of gzip that would inflate far past the bound: refused at the bound."""
    monkeypatch.setattr(gifti, "SURFACE_MAX_BYTES", 2 ** 20)  # a small bound keeps the test fast
    bomb = tmp_path / "sub-01_hemi-L_sphere.surf.gii.gz"
    bomb.write_bytes(gzip.compress(b"<?xml version='1.0'?>" + b" " * (64 * 2 ** 20)))
    assert bomb.stat().st_size < 100_000
    with pytest.raises(InputError, match=r"decompresses to more than 1 MiB.*decompression bomb") as e:
        gifti.load_gifti(bomb, limit=2 ** 20)
    _one_line(e, bomb)


def test_gzip_bomb_at_the_real_bound_stays_within_it(tmp_path):
    """The real bound: a 600 kB file inflating to 1 GiB (64 gzip members of 16 MiB of zeros) is
    stopped after SURFACE_MAX_BYTES."""
    bomb = tmp_path / "bomb.surf.gii.gz"
    bomb.write_bytes(gzip.compress(b"\0" * 2 ** 24, 9) * 64)
    before = _max_rss_mb()
    with pytest.raises(InputError, match="decompression bomb"):
        read_sphere(bomb)
    assert _max_rss_mb() - before < 2 * limits.SURFACE_MAX_BYTES / 2 ** 20 + 100


def test_zlib_bomb_inside_a_gifti_data_array(tmp_path):
    """GIFTI's GZipBase64Binary arrays are inflated no further than the size they declare."""
    path = _sphere_file(tmp_path / "s.surf.gii")
    xml = path.read_bytes()
    packed = base64.b64encode(zlib.compress(b"\0" * (64 * 2 ** 20), 9))
    start = xml.index(b"<Data>") + len(b"<Data>")
    bomb = tmp_path / "bomb.surf.gii"
    bomb.write_bytes(xml[:start] + packed + xml[xml.index(b"</Data>", start):])
    with pytest.raises(InputError, match=r"decompresses to more than .* data array 0 declares") as e:
        read_sphere(bomb)
    _one_line(e, bomb)


def test_a_compressed_gifti_array_with_fewer_dimensions_than_its_data_says_so_plainly(tmp_path):
    """fix-ak's left list: a GZipBase64Binary array whose Dim0 was edited smaller than its data was
    called 'a decompression bomb?' and nothing else; now the likelier causes come first."""
    path = _sphere_file(tmp_path / "s.surf.gii")
    xml = path.read_bytes()
    assert b'Dim0="162"' in xml and b"GZipBase64Binary" in xml
    edited = tmp_path / "edited.surf.gii"
    edited.write_bytes(xml.replace(b'Dim0="162"', b'Dim0="100"', 1))
    with pytest.raises(InputError, match=r"data array 0 declares .*its dimensions were edited or the file is "
                                         r"damaged") as e:
        read_sphere(edited)
    _one_line(e, edited)


def test_declared_dimensions_beyond_the_bound(tmp_path):
    path = _sphere_file(tmp_path / "s.surf.gii")
    xml = path.read_bytes()
    liar = tmp_path / "liar.surf.gii"
    liar.write_bytes(xml.replace(b'Dim0="162"', b'Dim0="900000000000"', 1))
    with pytest.raises(InputError, match="data arrays declare .* more than a GIFTI file may hold"):
        read_sphere(liar)


def test_xml_entities_are_refused(tmp_path):
    """'Billion laughs': nested entity declarations expand to gigabytes; GIFTI has none."""
    path = _sphere_file(tmp_path / "s.surf.gii")
    xml = path.read_bytes()
    laughs = b'<!DOCTYPE GIFTI [<!ENTITY a "lol">' + b"".join(
        b'<!ENTITY %s "%s">' % (f"a{i + 1}".encode(), (f"&a{i};" if i else "&a;").encode() * 10) for i in range(9)) + b"]>"
    evil = tmp_path / "evil.surf.gii"
    evil.write_bytes(xml.replace(b"<GIFTI", laughs + b"<GIFTI", 1))
    with pytest.raises(InputError, match="declares XML entities") as e:
        read_sphere(evil)
    _one_line(e, evil)


def test_file_that_grows_while_read_is_cut_off(tmp_path, monkeypatch):
    """A regular file that never ends (its size said small, its reads never stop): cut one
    byte past the bound."""
    path = tmp_path / "endless.json"
    path.write_text("{}")
    real = os.read
    monkeypatch.setattr(limits.os, "read", lambda fd, n: b"x" * n if fd > 2 else real(fd, n))
    with pytest.raises(InputError, match="grew while being read"):
        limits.read_bounded(path, 4096)


def test_stuck_read_fails_within_the_deadline(tmp_path, monkeypatch):
    path = tmp_path / "lh.sulc"
    path.write_bytes(b"\0" * 100)
    release = threading.Event()

    def stuck(fd, n):
        release.wait(30)
        return b""

    monkeypatch.setattr(limits.os, "read", stuck)
    start = time.monotonic()
    try:
        with pytest.raises(InputError, match=r"reading did not finish within 0.2 s") as e:
            limits.read_bounded(path, 4096, timeout_s=0.2)
        _one_line(e, path)
        assert time.monotonic() - start < 5
    finally:
        release.set()


def test_non_utf8_and_bad_json_name_the_file(tmp_path):
    bad = tmp_path / "filter.json"
    bad.write_bytes(b'{"subject": "\xe9"}')
    with pytest.raises(InputError, match=r"is not UTF-8 text \(byte 0xe9") as e:
        limits.read_json_bounded(bad)
    _one_line(e, bad)
    bad.write_text('{"subject": ')
    with pytest.raises(InputError, match="is not valid JSON"):
        limits.read_json_bounded(bad)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_text_from_windows_is_read_with_its_byte_order_mark_and_named_without(tmp_path, encoding):
    """fix-am: Windows PowerShell 5's ``>`` and ``Out-File``, Notepad's "Unicode" and Excel's
    "Unicode text" write UTF-16 with a byte-order mark: a filter file made so was refused as
    ``not UTF-8 text (byte 0xff at offset 0)``, and a dataset_description.json so saved was left
    unread in silence (its DatasetDOI lost). Without the mark, JSON said ``Expecting property name
    ... column 2`` (the NUL after ``{``). Now the mark's UTF-16 is read; without one, one line says so."""
    doc = {"t1w": {"session": "1", "subject": "caf\u00e9"}}
    path = tmp_path / "filter.json"
    bom = {"utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff"}.get(encoding, b"")
    path.write_bytes(bom + (json.dumps(doc, ensure_ascii=False) + "\r\n").encode(encoding))
    assert limits.read_json_bounded(path) == doc
    for enc in ("utf-16-le", "utf-16-be"):  # the same text with no byte-order mark
        path.write_bytes((json.dumps(doc) + "\r\n").encode(enc))
        with pytest.raises(InputError, match=r"is UTF-16 text without a byte-order mark \(every other byte is 0\): "
                                             r"save it as UTF-8") as e:
            limits.read_json_bounded(path)
        _one_line(e, path)
    path.write_bytes(b"\xff\xfe" + "{}".encode("utf-16-le") + b"\x00\xd8")  # a lone surrogate half
    with pytest.raises(InputError, match="is not valid UTF-16 text, though it opens with UTF-16's byte-order mark"):
        limits.read_json_bounded(path)
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}')  # UTF-8's mark, and plain ASCII, as before
    assert limits.read_json_bounded(path) == {"a": 1}
    path.write_bytes(b'{"a": 1}')
    assert limits.read_json_bounded(path) == {"a": 1}


def test_normal_files_read_as_before(tmp_path):
    v, f = icosphere(3)
    for name in ("s.surf.gii", "s.surf.gii.gz"):
        write_surface(tmp_path / name, v, f, hemi="L")
        assert read_sphere(tmp_path / name).n_vertices == len(v)
    write_metric(tmp_path / "m.shape.gii", np.arange(len(v), dtype=np.float32) + 1, hemi="L")
    assert read_feature(tmp_path / "m.shape.gii", n_vertices=len(v)).shape == (len(v),)
    assert surface_vertex_count(tmp_path / "s.surf.gii.gz") == len(v)


@pytest.mark.parametrize("old, new", [
    (b'Encoding="GZipBase64Binary"', b'Encoding="B64GZ"'),                # nibabel's alias of the encoding
    (b'Encoding="GZipBase64Binary"', b'Encoding="GIFTI_ENCODING_B64GZ"'),  # another alias
    (b'Encoding="GZipBase64Binary"', b'Encoding="&#71;ZipBase64Binary"'),  # a character reference
    (b'<DataArray', b'<DataArray ExternalFileName="a>b"'),  # '>' in an attribute value before the encoding
], ids=["B64GZ", "GIFTI_ENCODING_B64GZ", "char-reference", "gt-in-attribute"])
def test_zlib_bomb_behind_another_spelling_of_the_encoding(tmp_path, old, new):
    """Every spelling nibabel reads as GZipBase64Binary is bounded: nibabel inflates the whole
    array before comparing it with its dimensions (a 0.7 MB file took 1.1 GB)."""
    path = _sphere_file(tmp_path / "s.surf.gii")
    xml = path.read_bytes()
    packed = base64.b64encode(zlib.compress(b"\0" * (256 * 2 ** 20), 9))
    assert len(packed) < 400_000
    start = xml.index(b"<Data>") + len(b"<Data>")
    xml = xml[:start] + packed + xml[xml.index(b"</Data>", start):]
    tag = xml.index(b"<DataArray")
    head = xml[tag:xml.index(b">", tag)]
    assert old in head
    head = head.replace(old, new, 1)
    if b"a>b" in new:  # the attribute moved to the front of the tag
        head = head.replace(b' ExternalFileName=""', b"")
    bomb = tmp_path / "bomb.surf.gii"
    bomb.write_bytes(xml[:tag] + head + xml[xml.index(b">", tag):])
    before = _max_rss_mb()
    with pytest.raises(InputError, match=r"decompresses to more than .* data array 0 declares") as e:
        read_sphere(bomb)
    _one_line(e, bomb)
    assert _max_rss_mb() - before < 64


def test_cdata_sections_are_read_as_nibabel_reads_them(tmp_path):
    """The scan sees the XML as expat does: a CDATA-wrapped array is base64, not corrupted data."""
    v, f = icosphere(2)
    path = write_surface(tmp_path / "s.surf.gii", v, f, hemi="L")
    xml = path.read_bytes().replace(b"<Data>", b"<Data><![CDATA[").replace(b"</Data>", b"]]></Data>")
    odd = tmp_path / "odd.surf.gii"
    odd.write_bytes(xml)
    assert np.allclose(read_sphere(odd).vertices, read_sphere(path).vertices)


def test_reads_reuse_their_helper_threads(tmp_path):
    """Each bounded read used to start a thread of its own (~0.2 ms: 4 s of a group level over
    20,000 metrics files); now idle helpers are reused, so reading many files starts none."""
    path = tmp_path / "m.json"
    path.write_text('{"a": 1}')
    limits.read_json_bounded(path)  # a helper exists
    before = {t.ident for t in threading.enumerate()}
    for _ in range(200):
        assert limits.read_json_bounded(path) == {"a": 1}
    assert len({t.ident for t in threading.enumerate()} - before) == 0


def test_a_stuck_read_retires_its_helper_and_the_next_read_works(tmp_path, monkeypatch):
    path = tmp_path / "lh.sulc"
    path.write_bytes(b"\0" * 100)
    release = threading.Event()
    real = os.read

    def stuck(fd, n):
        release.wait(30)
        return real(fd, n)

    monkeypatch.setattr(limits.os, "read", stuck)
    try:
        with pytest.raises(InputError, match="did not finish within 0.2 s"):
            limits.read_bounded(path, 4096, timeout_s=0.2)
        monkeypatch.setattr(limits.os, "read", real)
        assert limits.read_bounded(path, 4096, timeout_s=5) == b"\0" * 100  # not handed to the stuck helper
    finally:
        release.set()


def test_a_forked_child_reads_without_its_parents_helpers(tmp_path):
    """A forked child (Nipype's and batch mode's workers) has none of its parent's threads:
    it must not hand its reads to them (it would wait for the deadline)."""
    path = tmp_path / "m.json"
    path.write_text('{"a": 1}')
    limits.read_json_bounded(path)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            ok = limits.read_bounded(path, 4096, timeout_s=2) == b'{"a": 1}'
        except BaseException:  # noqa: BLE001
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_read_json_files_reads_in_order_with_each_files_error(tmp_path):
    good, bad, empty = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    good.write_text('{"a": 1}')
    bad.write_text("{not json")
    empty.write_text("")
    got = limits.read_json_files([good, bad, tmp_path / "missing.json", empty, good], what="metrics file")
    assert got[0] == got[4] == {"a": 1}
    assert [type(g) for g in got[1:4]] == [InputError] * 3
    assert "not valid JSON" in str(got[1]) and str(bad) in str(got[1]) and "empty" in str(got[3])
    assert limits.read_json_files([]) == []


def test_read_json_files_hands_over_once_not_per_file(tmp_path, monkeypatch):
    """One helper job for all the files (a hand-over per file cost as much as reading it)."""
    paths = []
    for i in range(50):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(f'{{"i": {i}}}')
    started = []
    real = limits._start
    monkeypatch.setattr(limits, "_start", lambda work: started.append(work) or real(work))
    assert [d["i"] for d in limits.read_json_files(paths)] == list(range(50))
    assert len(started) == 1
    # alone: one thread, for the read (the git-annex pointer check looks at what it read)
    assert limits.read_json_bounded(paths[0]) == {"i": 0} and len(started) == 2


def test_read_json_files_gives_a_stalled_file_its_error_and_reads_the_rest(tmp_path, monkeypatch):
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(f'{{"i": {i}}}')
    release = threading.Event()
    real = limits.read_json_bounded

    def read(p, *a, **k):
        if p == paths[1] and not release.is_set():
            release.wait(30)
        return real(p, *a, **k)

    monkeypatch.setattr(limits, "read_json_bounded", read)
    try:
        got = limits.read_json_files(paths, timeout_s=0.3)
    finally:
        release.set()
    assert got[0] == {"i": 0} and got[2:] == [{"i": 2}, {"i": 3}]
    assert isinstance(got[1], InputError) and "did not finish within 0.3 s" in str(got[1]) and str(paths[1]) in str(got[1])


def test_a_file_name_with_a_line_ending_says_so_on_one_line(tmp_path):
    """Round fifteen: a path read from a file list without its line ending stripped
    (``open(list).readlines()``) said ``.../lh.sphere\\n: cannot be read: no such file``, the newline
    splitting the message in two (the command line joined it into ``lh.sphere : no such file``, the file
    being there). The name is now quoted and the stripped file named."""
    from geomorph_bids.engine.register import register
    from geomorph_bids.errors import InputError

    sphere = tmp_path / "lh.sphere"
    sphere.write_bytes(b"x")
    for given in (f"{sphere}\n", f"{sphere}\r", f" {sphere}"):
        with pytest.raises(InputError) as exc:
            register(given, {"sulc": given}, rigid_only=True)
        assert str(exc.value) == (f"{given!r}: cannot be read: no such file, but {sphere} exists: the name given holds "
                                  "blanks or a line ending (a line read from a file list? strip it)")
        assert "\n" not in str(exc.value) and "\r" not in str(exc.value)
    with pytest.raises(InputError) as exc:
        register(str(tmp_path / "a b"), {"sulc": "x"}, rigid_only=True)
    assert str(exc.value) == f"{tmp_path / 'a b'}: cannot be read: no such file"


def test_a_json_number_past_pythons_digit_limit_is_an_input_error_naming_the_file(tmp_path):
    """``json.loads`` raises a plain ValueError (not a JSONDecodeError) for a whole number of more
    than 4300 digits: a metrics file edited so ended the whole group level, a BIDS filter file the
    run with ``error: Exceeds the limit (4300 digits) ...``, neither naming the file."""
    import sys

    from geomorph_bids.errors import InputError
    from geomorph_bids.io.limits import read_json_bounded, read_json_files

    path = tmp_path / "x.json"
    path.write_text('{"n_folded": 1%s}' % ("0" * 5000))
    with pytest.raises(InputError) as e:
        read_json_bounded(path)
    assert str(e.value) == (f"{path}: is not valid JSON here (a whole number of more than "
                            f"{sys.get_int_max_str_digits()} digits: damaged or edited)")
    assert [str(x) for x in read_json_files([path])] == [str(e.value)]


def test_a_path_starting_with_a_tilde_in_python_says_the_shell_expands_it(tmp_path, monkeypatch):
    """``register("~/data/lh.sphere", ...)`` in a notebook (nibabel's ``load`` expands ``~``, so the
    same string had just worked there) said only ``~/data/lh.sphere: cannot be read: no such file``.
    Where the file is in the home folder, the message now names it and says why it was not read."""
    from geomorph_bids.engine.register import register

    monkeypatch.setenv("HOME", str(tmp_path))
    sphere = tmp_path / "data" / "lh.sphere"
    sphere.parent.mkdir()
    sphere.write_bytes(b"x")
    with pytest.raises(InputError) as exc:
        register("~/data/lh.sphere", {"sulc": "~/data/lh.sulc"}, rigid_only=True)
    assert str(exc.value) == (f"~/data/lh.sphere: cannot be read: no such file, but {sphere} exists: '~' is expanded "
                              "by a shell, not in a path given to Python (use os.path.expanduser, or the full path)")
    with pytest.raises(InputError) as missing:
        register("~/data/rh.sphere", {"sulc": "~/data/lh.sulc"}, rigid_only=True)
    assert str(missing.value) == "~/data/rh.sphere: cannot be read: no such file"


def test_a_name_in_another_unicode_form_is_named_with_the_path_on_disk(tmp_path):
    """A folder copied from macOS keeps its name decomposed (``cafe`` + combining accent, NFD); the
    same name typed is composed (NFC). Both print as ``café``, and a reader said ``café/lh.sphere:
    cannot be read: no such file`` of the file ``ls`` shows. The path on disk is now named."""
    import unicodedata

    from geomorph_bids.engine.register import register

    on_disk = tmp_path / unicodedata.normalize("NFD", "café") / "lh.sphere"
    on_disk.parent.mkdir()
    on_disk.write_bytes(b"x")
    typed = tmp_path / unicodedata.normalize("NFC", "café") / "lh.sphere"
    assert limits.unicode_twin(typed) == on_disk and limits.unicode_twin(tmp_path / "other") is None
    with pytest.raises(InputError) as exc:
        register(typed, {"sulc": typed}, rigid_only=True)
    assert str(exc.value) == (
        f"{typed}: cannot be read: no such file; {on_disk} is there, its letters in another Unicode form (a name "
        "copied from macOS?): give the path as it is on disk (the shell's tab completion gives it), or rename it with "
        "its letters composed (convmv -f utf8 -t utf8 --nfc --notest)")

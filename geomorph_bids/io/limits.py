"""Bounded reads: every input file is checked before a byte of it is read or decompressed.

A file geomorph-bids reads must be a regular file (not a FIFO, a device such as ``/dev/zero``,
a folder, a symbolic link whose target is missing, as an annexed DataLad file that was not
fetched is, or the git-annex pointer file an unlocked one leaves) no larger than what its format
can need for the largest mesh accepted (:data:`MAX_VERTICES`); it is read in one pass that stops
one byte past the bound (a file that grows while it is read, or a special file that never ends,
cannot exhaust memory) and within :data:`READ_TIMEOUT_S` seconds (a read stuck on a hung
network filesystem fails instead of hanging the run); compressed data (``.gii.gz``, GIFTI's
zlib-encoded arrays) are decompressed no further than the same bound. Every refusal is one :class:`~geomorph_bids.errors.InputError`
line naming the file.

Bounds, derived from the formats (``V`` = vertices):

=========================  ==========================================================  ===========
what                       worst case per vertex                                        bound
=========================  ==========================================================  ===========
surface (sphere, mesh)     ASCII GIFTI: 3 coordinates + 2 triangles of 3 indices,       256 MiB
                           ~125 characters; FreeSurfer binary: 36 bytes                 + 1 MiB
per-vertex map(s)          32 bytes per value (ASCII GIFTI), :data:`MAX_MAPS` maps      V-derived
document (JSON, YAML,      -                                                            16 MiB
text, crash file)
checkpoint                 -                                                            2 GiB
=========================  ==========================================================  ===========
"""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from geomorph_bids.errors import InputError

__all__ = ["MAX_VERTICES", "MAX_MAPS", "READ_TIMEOUT_S", "SURFACE_MAX_BYTES", "DOCUMENT_MAX_BYTES",
           "CHECKPOINT_MAX_BYTES", "ANNEX_POINTER_MAX_BYTES", "map_max_bytes", "regular_file", "annex_key", "check_size",
           "unicode_twin", "unicode_twin_hint",
           "read_bounded", "read_text_bounded", "read_json_bounded", "read_json_files", "decompress_bounded", "with_deadline", "human_bytes"]

#: the largest mesh accepted: 2,097,152 vertices (12.8 times FreeSurfer's fsaverage, 163,842;
#: native FreeSurfer and HCP meshes have 100k-300k)
MAX_VERTICES = 2 ** 21
#: the most maps one feature file may hold
MAX_MAPS = 8
#: seconds a single file read may take before it is abandoned with an error
READ_TIMEOUT_S = 300.0
#: bytes of a surface file (also of its decompressed content)
SURFACE_MAX_BYTES = MAX_VERTICES * 128 + 2 ** 20
#: bytes of a JSON, YAML or text file (filter files, plugin files, sidecars, metrics, crash files)
DOCUMENT_MAX_BYTES = 16 * 2 ** 20
#: bytes of a model checkpoint (and of its content, uncompressed)
CHECKPOINT_MAX_BYTES = 2 * 2 ** 30

_T = TypeVar("_T")


def map_max_bytes(n_vertices: int | None = None) -> int:
    """Bytes of a per-vertex map file of ``n_vertices`` (default :data:`MAX_VERTICES`): 32 bytes
    per value (an ASCII-encoded float), :data:`MAX_MAPS` maps, plus 1 MiB of header and XML."""
    n = MAX_VERTICES if n_vertices is None else max(1, min(int(n_vertices), MAX_VERTICES))
    return n * 32 * MAX_MAPS + 2 ** 20


def human_bytes(n: int) -> str:
    """``268435456`` -> ``"256 MiB"``."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}".replace(".0 ", " ")
        n /= 1024
    return f"{n} bytes"  # pragma: no cover


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def unicode_twin(path: str | Path) -> Path | None:
    """The existing path that ``path`` (which does not exist) names with its letters in another Unicode
    form: a name copied from macOS keeps its decomposed ``e`` + accent (NFD), a name typed is composed
    (NFC); both print as ``café``, and ``no such file`` then named what ``ls`` shows. None when there
    is none (each missing part is looked for among its folder's names, up to 10,000 of them)."""
    import itertools
    import unicodedata

    p = Path(path).absolute()
    if p.exists() or str(p).isascii():
        return None
    found = Path(p.anchor)
    for part in p.parts[1:]:
        if not (found / part).exists():
            key = unicodedata.normalize("NFC", part)
            try:
                with os.scandir(found) as it:
                    match = next((e.name for e in itertools.islice(it, 10_000)
                                  if unicodedata.normalize("NFC", e.name) == key), None)
            except OSError:
                return None
            if match is None:
                return None
            part = match
        found = found / part
    return found


def unicode_twin_hint(path: str | Path) -> str:
    """``; T is there, its letters in another Unicode form ...`` when :func:`unicode_twin` finds one,
    else ``""``: for the line that says ``path`` does not exist."""
    twin = unicode_twin(path)
    return "" if twin is None else (
        f"; {twin} is there, its letters in another Unicode form (a name copied from macOS?): give the path as it is "
        "on disk (the shell's tab completion gives it), or rename it with its letters composed "
        "(convmv -f utf8 -t utf8 --nfc --notest)")


def regular_file(path: str | Path) -> os.stat_result:
    """``stat`` of ``path`` (links followed), or InputError when it is missing, a symbolic link
    whose target does not exist, or not a regular file (folder, FIFO, device, socket)."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if p.is_symlink():
            target = os.readlink(p)
            raise InputError(f"is a broken symbolic link (its target {target} does not exist; an annexed "
                             "file that was not fetched? run `datalad get` or `git annex get` on it)",
                             path=p) from None
        stripped = Path(str(p).strip())
        if stripped != p and stripped.exists():  # a name read from a list without its line ending stripped
            raise InputError(f"cannot be read: no such file, but {stripped} exists: the name given holds blanks or a "
                             "line ending (a line read from a file list? strip it)", path=p) from None
        if p.parts and p.parts[0].startswith("~"):  # nibabel's load expands it; open() and this do not
            try:
                home = p.expanduser()
            except RuntimeError:  # ~user of no user
                home = p
            if home != p and home.exists():
                raise InputError(f"cannot be read: no such file, but {home} exists: '~' is expanded by a shell, not "
                                 "in a path given to Python (use os.path.expanduser, or the full path)",
                                 path=p) from None
        raise InputError("cannot be read: no such file" + unicode_twin_hint(p), path=p) from None
    except OSError as exc:
        raise InputError(f"cannot be read: {exc.strerror or exc}", path=p) from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"is {_kind(st.st_mode)}, not a regular file", path=p)
    return st


def _too_large(size: int | str, limit: int, what: str) -> str:
    return (f"is {size if isinstance(size, str) else human_bytes(size)}, larger than any {what} "
            f"geomorph-bids accepts ({human_bytes(limit)})")


#: the largest file that is looked at as a possible git-annex pointer (a real one is one line
#: of ~100 bytes: ``/annex/objects/MD5E-s123--<md5>.gii``)
ANNEX_POINTER_MAX_BYTES = 1024


def _annex_key_in(head: bytes) -> str | None:
    """The git-annex key when ``head`` (the first bytes of a small file) is a pointer in place of
    the annexed content: an unlocked file that was not fetched (``/annex/objects/KEY``), or an
    annex link stored as a text file holding its target (``core.symlinks=false``, a copy onto a
    file system without links: ``../.git/annex/objects/xx/yy/KEY/KEY``); else None."""
    text = head.strip()
    if b"\n" in text or not (text.startswith(b"/annex/objects/") or b".git/annex/objects/" in text):
        return None
    return text.rsplit(b"/", 1)[-1].decode("utf-8", "replace")


def _annex_pointer(path: str | Path, size: int, timeout_s: float | None) -> str | None:
    """:func:`_annex_key_in` of the small file ``path`` (None without reading it when it is
    larger than :data:`ANNEX_POINTER_MAX_BYTES`), read within ``timeout_s`` seconds, as every
    read (:func:`with_deadline`; None: in this thread)."""
    if size > ANNEX_POINTER_MAX_BYTES:
        return None

    def head() -> bytes:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        try:
            return os.read(fd, ANNEX_POINTER_MAX_BYTES + 1)
        finally:
            os.close(fd)

    try:
        return _annex_key_in(with_deadline(head, timeout_s, path))
    except OSError:
        return None  # the reader that follows says what is wrong


def annex_key(path: str | Path, timeout_s: float = READ_TIMEOUT_S) -> str | None:
    """The git-annex key when ``path`` is a regular file holding a git-annex pointer instead of
    its content (an annexed file not fetched); else None (also when it cannot be read)."""
    try:
        st = os.stat(path)
        return _annex_pointer(path, st.st_size, timeout_s) if stat.S_ISREG(st.st_mode) else None
    except (OSError, InputError):
        return None


def check_size(path: str | Path, limit: int, what: str = "file of this kind", *,
               timeout_s: float | None = READ_TIMEOUT_S) -> int:
    """Size in bytes of the regular file ``path`` (:func:`regular_file`); InputError when it
    is empty, larger than ``limit``, or a git-annex pointer (a DataLad file not fetched) instead
    of its content. For readers that hand a path to a library."""
    size = _bounded_size(path, limit, what)
    _refuse_annex_pointer(_annex_pointer(path, size, timeout_s), path)
    return size


def _bounded_size(path: str | Path, limit: int, what: str) -> int:
    """Size in bytes of the regular file ``path``; InputError when it is empty or larger than
    ``limit``."""
    st = regular_file(path)
    if st.st_size == 0:
        raise InputError("is empty (0 bytes)", path=path)
    if st.st_size > limit:
        raise InputError(_too_large(st.st_size, limit, what), path=path)
    return int(st.st_size)


def _refuse_annex_pointer(key: str | None, path: str | Path) -> None:
    if key is not None:
        raise InputError(f"is a git-annex pointer to {key}, not the file's content (an annexed file that was "
                         "not fetched: run `datalad get` or `git annex get` on it)", path=path)


class _Job:
    """One blocking call handed to a reading thread, and what came of it (``done`` set once
    ``value`` or ``error`` is)."""

    def __init__(self, work: Callable[[], object]) -> None:
        self.work, self.done = work, threading.Event()
        self.value: object = None
        self.error: BaseException | None = None


def _run(job: _Job) -> None:
    try:
        job.value = job.work()
    except BaseException as exc:  # noqa: BLE001 - handed to the caller
        job.error = exc
    job.done.set()


def _stalled(action: str, timeout_s: float, path: str | Path) -> InputError:
    return InputError(f"{action} did not finish within {timeout_s:g} s (a stalled network filesystem, "
                      "or a file that never ends?)", path=path)


def _start(work: Callable[[], object]) -> _Job:
    """Run ``work`` in a new daemon thread (a read stuck in the kernel cannot be cancelled: its
    thread is left to finish on its own and the process does not wait for it)."""
    job = _Job(work)
    threading.Thread(target=_run, args=(job,), name="geomorph-read", daemon=True).start()
    return job


def _abandon(job: _Job) -> bool:
    """Stop waiting for ``job`` unless it has just finished (its result is then kept); whether
    it was abandoned. Its thread goes on alone either way: nothing it does later is read."""
    return not job.done.is_set()


def _finish(job: _Job) -> object:
    if job.error is not None:
        raise job.error
    return job.value


def with_deadline(work: Callable[[], _T], timeout_s: float | None, path: str | Path,
                  action: str = "reading") -> _T:
    """Run ``work`` (a blocking read) in a thread of its own and return its result; InputError
    naming ``path`` when it has not finished after ``timeout_s`` seconds (that thread is left
    to finish on its own, as a read stuck in the kernel cannot be cancelled). ``timeout_s=None``:
    run ``work`` in the calling thread, whose own caller watches the deadline
    (:func:`read_json_files`)."""
    if timeout_s is None:
        return work()
    job = _start(work)
    if not job.done.wait(timeout_s) and _abandon(job):
        raise _stalled(action, timeout_s, path)
    return _finish(job)  # type: ignore[return-value]


def read_json_files(paths: Sequence[str | Path], limit: int = DOCUMENT_MAX_BYTES, what: str = "JSON file", *,
                    timeout_s: float = READ_TIMEOUT_S) -> list[object]:
    """:func:`read_json_bounded` of each path, in order: its document, or the InputError that
    names why it could not be read. The files are read one after the other in one helper thread
    (a hand-over to a helper per file cost as much as reading a small file: the group level
    reads 20,000 at 10,000 subjects), each still within ``timeout_s`` seconds: a file that
    stalls gets its InputError and the rest go on in another thread."""
    paths = list(paths)
    out: list[object] = []
    while len(out) < len(paths):
        todo = paths[len(out):]
        done: list[object] = []  # filled by the helper, in order
        state = {"since": time.monotonic(), "stop": False}
        lock = threading.Lock()  # a result is kept, or its caller has given up: never both

        def work(todo: list = todo, done: list = done, state: dict = state, lock: threading.Lock = lock) -> None:
            for p in todo:
                state["since"] = time.monotonic()
                try:  # timeout_s=None: read here; the loop below watches each file's deadline
                    doc: object = read_json_bounded(p, limit, what, timeout_s=None)
                except InputError as exc:
                    doc = exc
                with lock:
                    if state["stop"]:  # its caller gave up on this file: read nothing more
                        return
                    done.append(doc)

        job = _start(work)
        while not job.done.wait(min(timeout_s, 1.0)):
            if time.monotonic() - state["since"] > timeout_s and _abandon(job):
                with lock:
                    state["stop"] = True
                    finished = list(done)
                out += finished + [_stalled("reading", timeout_s, todo[len(finished)])]
                break
        else:
            _finish(job)
            out += done
    return out


def _read_fd(fd: int, limit: int) -> bytes:
    chunks, total = [], 0
    while total <= limit:
        chunk = os.read(fd, min(1 << 22, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def read_bounded(path: str | Path, limit: int, what: str = "file of this kind", *,
                 timeout_s: float | None = READ_TIMEOUT_S) -> bytes:
    """The whole content of the regular file ``path``, at most ``limit`` bytes, read within
    ``timeout_s`` seconds (None: in the calling thread, whose caller watches the deadline); InputError (naming the file) when it is missing, not a regular file,
    empty, larger than ``limit`` (checked before reading, and again while reading: a file that
    grows or never ends is cut off), unreadable, or too slow."""
    p = Path(path)
    _bounded_size(p, limit, what)  # the git-annex pointer check reads what is read below
    try:  # O_NONBLOCK: a file swapped for a FIFO after the check cannot block the open
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InputError(f"cannot be read: {exc.strerror or exc}", path=p) from None
    abandoned = False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"is {_kind(st.st_mode)}, not a regular file", path=p)
        try:
            raw = with_deadline(lambda: _read_fd(fd, limit), timeout_s, p)
        except InputError:
            abandoned = True  # the reading thread still owns the descriptor
            raise
        except OSError as exc:
            raise InputError(f"cannot be read: {exc.strerror or exc}", path=p) from None
    finally:
        if not abandoned:
            os.close(fd)
    if len(raw) > limit:
        raise InputError(_too_large(f"more than {human_bytes(limit)} (it grew while being read)", limit, what),
                         path=p)
    if not raw:
        raise InputError("is empty (0 bytes)", path=p)
    if len(raw) <= ANNEX_POINTER_MAX_BYTES:
        _refuse_annex_pointer(_annex_key_in(raw), p)
    return raw


def read_text_bounded(path: str | Path, limit: int = DOCUMENT_MAX_BYTES, what: str = "document", *,
                      timeout_s: float | None = READ_TIMEOUT_S) -> str:
    """:func:`read_bounded`, decoded as UTF-8 (a UTF-8 byte-order mark is dropped), or as UTF-16
    where the file opens with UTF-16's byte-order mark (what Windows PowerShell 5's ``>`` and
    ``Out-File``, Notepad's "Unicode" and Excel's "Unicode text" write); InputError naming the
    file when it is neither, or UTF-16 without a byte-order mark (which is not guessed)."""
    raw = read_bounded(path, limit, what, timeout_s=timeout_s)
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            raise InputError("is not valid UTF-16 text, though it opens with UTF-16's byte-order mark "
                             "(damaged, or cut at an odd byte): save it again as UTF-8", path=path) from None
    head = raw[:64]
    if len(head) >= 4 and (head[1::2].count(0) == len(head[1::2]) or head[0::2].count(0) == len(head[0::2])):
        raise InputError("is UTF-16 text without a byte-order mark (every other byte is 0): save it as "
                         "UTF-8 (in PowerShell: Set-Content -Encoding utf8)", path=path)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
                         path=path) from None


def read_json_bounded(path: str | Path, limit: int = DOCUMENT_MAX_BYTES, what: str = "JSON file", *,
                      timeout_s: float | None = READ_TIMEOUT_S) -> object:
    """The JSON document in ``path`` (:func:`read_text_bounded`); InputError naming the file
    when it is not valid JSON (with the line and column)."""
    text = read_text_bounded(path, limit, what, timeout_s=timeout_s)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})",
                         path=path) from None
    except RecursionError:
        raise InputError("is not valid JSON (nested too deeply)", path=path) from None
    except ValueError:  # Python's bound on the digits of a whole number (sys.get_int_max_str_digits)
        raise InputError(f"is not valid JSON here (a whole number of more than {sys.get_int_max_str_digits()} "
                         "digits: damaged or edited)", path=path) from None


def decompress_bounded(data: bytes, limit: int, path: str | Path, *, wbits: int = 31,
                       bound: str = "the most geomorph-bids accepts",
                       why: str = "a decompression bomb?") -> bytes:
    """Decompress gzip (``wbits=31``, several members allowed) or zlib (``wbits=15``) ``data``
    to at most ``limit`` bytes; InputError naming ``path`` when the result would be larger (a
    decompression bomb; ``bound`` says what the limit is, ``why`` what the likely cause is) or
    the stream is truncated or corrupted."""
    kind = "gzip stream" if wbits == 31 else "zlib-compressed data"
    out: list[bytes] = []
    total = 0
    rest = data
    try:
        while rest:
            d = zlib.decompressobj(wbits)
            chunk = d.decompress(rest, limit + 1 - total)
            total += len(chunk)
            out.append(chunk)
            if total > limit or d.unconsumed_tail:
                raise InputError(f"decompresses to more than {human_bytes(limit)}, {bound} "
                                 f"({why})", path=path)
            if not d.eof:
                raise InputError(f"{kind} is truncated; re-create or re-copy the file", path=path)
            rest = d.unused_data if wbits == 31 else b""
            if wbits == 31 and rest.strip(b"\0") == b"":  # gzip padding after the last member
                break
    except zlib.error as exc:
        raise InputError(f"{kind} is corrupted ({exc}); re-create or re-copy the file",
                         path=path) from None
    return b"".join(out)

"""Content hashes of input files: the cache key that decides whether an earlier result is
reused.

Nipype's ``timestamp`` hashing (and any size + modification time check) reuses a result when a
file changed but kept its size and time (``cp -p``, ``rsync -a``, a restored backup). The
command line hashes each hemisphere's inputs once, after discovery, and hands the hash to the
first node of its workflow (and to batch mode's resume check): a changed byte reruns the
hemisphere. SHA-1 (not for security): the fastest cryptographic hash here, ~700 MB/s on one
core, i.e. ~10 ms for a 164k-vertex hemisphere (docs/benchmarks.md).

The code is part of the key too (:func:`software_id`): a result cached by another build of
geomorph-bids (an upgrade into the same work folder), or computed with other versions of the
libraries that make its numbers (:data:`NUMERIC_LIBRARIES`), is computed again, not taken as this one's.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Iterable

from geomorph_bids.errors import InputError
from geomorph_bids.io.limits import READ_TIMEOUT_S, check_size, with_deadline

__all__ = ["file_digest", "file_stamp", "input_digest", "source_digest", "software_id", "library_versions",
           "NUMERIC_LIBRARIES", "DIGEST_MAX_BYTES", "RESULT_DATA", "build_files", "tree_digest"]

#: the largest file hashed (bytes): any input the readers accept is smaller
DIGEST_MAX_BYTES = 2 ** 31


def file_digest(path: str | Path, timeout_s: float = READ_TIMEOUT_S) -> str:
    """SHA-1 (hex) of the content of the regular file ``path``, read in 4 MiB blocks within
    ``timeout_s`` seconds; InputError naming the file when it cannot be read."""
    p = Path(path)
    check_size(p, DIGEST_MAX_BYTES, "input file")

    def digest() -> str:
        h = hashlib.sha1(usedforsecurity=False)
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        try:
            total = 0
            while total <= DIGEST_MAX_BYTES:
                block = os.read(fd, 1 << 22)
                if not block:
                    break
                total += len(block)
                h.update(block)
        finally:
            os.close(fd)
        return h.hexdigest()

    try:
        return with_deadline(digest, timeout_s, p, action="hashing")
    except OSError as exc:
        raise InputError(f"cannot be read: {exc.strerror or exc}", path=p) from None


def input_digest(paths: Iterable[str | Path | None]) -> str:
    """One hash of several files' contents (in order; None entries are skipped)."""
    h = hashlib.sha1(usedforsecurity=False)
    for p in paths:
        if p is not None:
            h.update(file_digest(p).encode())
    return h.hexdigest()


def file_stamp(path: str | Path) -> tuple[int, ...]:
    """What tells a file's bytes changed without reading them, for caches kept in a process:
    device, inode, size, mtime and ctime (ns; through a link, its target's). Size and mtime alone
    miss a file replaced by another of the same size and mtime (``cp -p``, ``rsync -t``, ``tar x``,
    a link pointed elsewhere); no one can set a ctime, and a replaced file has another inode.
    OSError if it cannot be stat'ed."""
    st = Path(path).stat()
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


#: the package's files besides its ``*.py`` that change a result (globs inside the package): the bundled
#: templates' maps and the fsaverage -> template rotations, and the bundled networks' weights. The example,
#: the model cards, the training logs and the citation text change no number and are left out.
RESULT_DATA = ("data/templates/*", "data/models/*/model.pt")


def build_files(root: Path) -> list[Path]:
    """The files of the package at ``root`` that :func:`tree_digest` hashes: every ``*.py`` and the
    :data:`RESULT_DATA` files, sorted by path."""
    root = Path(root).resolve()
    found = set(root.rglob("*.py")) | {p for pattern in RESULT_DATA for p in root.glob(pattern) if p.is_file()}
    return sorted(found)


def tree_digest(root: Path) -> str:
    """SHA-1 (hex) of the :func:`build_files` of the package at ``root``, each by its path inside the
    package and its content."""
    root = Path(root).resolve()
    h = hashlib.sha1(usedforsecurity=False)
    for path in build_files(root):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """SHA-1 (hex) of geomorph-bids' own source and the data that changes its results
    (:func:`tree_digest` of the installed package: ~125 ``*.py`` files, the bundled templates and rotations,
    the networks' weights; ~8 MB, ~30 ms once per process). It tells two builds apart where the version does
    not (every development build is ``0.1.0.dev0``): a changed rotation or template map is another build."""
    return tree_digest(Path(__file__).resolve().parent.parent)


#: the installed packages whose versions change a result's numbers or bytes, part of :func:`software_id`:
#: torch (the network, the optimiser, their kernels and their build: ``+cpu``, ``+cu121``), numpy and scipy
#: (the rigid fit, resampling, linear algebra, the BLAS their wheels bundle), nibabel (the bytes of every
#: file read and written). Nipype and niworkflows only schedule the same calls and are left out.
NUMERIC_LIBRARIES = ("numpy", "scipy", "torch", "nibabel")


@functools.lru_cache(maxsize=1)
def library_versions() -> tuple[tuple[str, str], ...]:
    """``((name, version), ...)`` of :data:`NUMERIC_LIBRARIES` as installed (the distributions'
    metadata: nothing is imported; ``absent`` for one that is not installed), once per process."""
    from importlib import metadata

    out = []
    for name in NUMERIC_LIBRARIES:
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            out.append((name, "absent"))
    return tuple(out)


def software_id() -> str:
    """The build that computes a result: ``geomorph-bids <version> (source <12 hex digits of
    source_digest>; numpy <v>, scipy <v>, torch <v>, nibabel <v>)``: geomorph-bids and the
    versions of the libraries that make its numbers (:func:`library_versions`). It is part of every
    cache key (the workflow's nodes, batch mode's resume records, the participant report's marker)
    and recorded as ``software`` in each metrics JSON, so that outputs of an earlier build, or of
    the same one with torch or numpy upgraded, are computed again, never reused as this one's, and
    the group table says which build made each row."""
    from .. import __version__

    libraries = ", ".join(f"{name} {version}" for name, version in library_versions())
    return f"geomorph-bids {__version__} (source {source_digest()[:12]}; {libraries})"

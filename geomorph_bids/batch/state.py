"""Batch mode's resume records: which hemispheres are done, from which inputs and settings.

After a hemisphere's files are committed, its worker writes a small record
(``<work_dir>/batch/<settings>/<sub-X[_ses-Y]>_hemi-H.json``, :func:`record_path`) holding the
:func:`stamp` of its inputs and the run's settings. A rerun skips a hemisphere whose record
holds the same stamp and whose files are all as they were written (:func:`is_done`: the record
lists each file's size and modification time, :func:`record_text`); a changed input, a changed
setting, or an output missing, truncated or edited in place makes it run again. The stamp keys on the inputs' paths and
content (:func:`input_fingerprint`: the content hash ``HemiInputs.digest`` the command line
computed once after discovery, :func:`geomorph_bids.io.digest.input_digest`): a changed byte
reruns the hemisphere even when its size and modification time were kept.
"""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from ..derivatives import entities
from ..io.discover import HemiInputs

if TYPE_CHECKING:
    from ..workflows.config import RunConfig

__all__ = ["settings_key", "record_path", "input_fingerprint", "stamp", "record_text", "is_done"]


def settings_key(config: RunConfig) -> str:
    """A short hash of everything in the :class:`~geomorph_bids.workflows.config.RunConfig`
    that changes a hemisphere's files (:attr:`~geomorph_bids.workflows.config.RunConfig.results_key`: template
    and its maps' checksums, model and its checkpoint's content, features, density, quality
    thresholds, ``--fmriprep-compat``, the build of geomorph-bids) and the output folder: one work
    folder may serve runs into several output folders, each with records of its own."""
    doc = [config.results_key, str(config.output_dir)]
    return hashlib.sha1(json.dumps(doc).encode()).hexdigest()[:12]


def record_path(config: RunConfig, h: HemiInputs) -> Path:
    """Where the resume record of hemisphere ``h`` goes (one folder per :func:`settings_key`)."""
    return (Path(config.work_dir) / "batch" / settings_key(config)
            / f"{entities(h.subject, h.session)}_hemi-{h.hemi}.json")


def input_fingerprint(paths: Iterable[Path | None], digest: str = "") -> dict:
    """The absolute paths of the input files (None skipped) and the content hash of them all:
    ``digest`` (``HemiInputs.digest``, computed once by the command line) or, when empty,
    :func:`~geomorph_bids.io.digest.input_digest` of ``paths``."""
    from ..io.digest import input_digest

    files = [p for p in paths if p is not None]
    return {"files": [str(Path(p).absolute()) for p in files], "sha1": digest or input_digest(files)}


def stamp(config: RunConfig, h: HemiInputs) -> str:
    """The record's content for ``h`` under ``config``: its inputs' fingerprint, the settings key and where its
    output-density sphere comes from (``config.density_sources``: per hemisphere, in no run-wide key)."""
    inputs = [h.sphere, h.sphere_reg, *(h.features[f] for f in config.features), h.midthickness, h.cortex_mask]
    return json.dumps({"inputs": input_fingerprint(inputs, h.digest), "settings": settings_key(config),
                       "density_source": config.density_sources.get(h.hemi, "")}, sort_keys=True)


def _file_state(path: Path) -> list[int] | None:
    """``[size in bytes, modification time in ns]`` of a file, or None when it is not one."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns] if stat.S_ISREG(st.st_mode) else None


def record_text(expected: str, files: Iterable[Path]) -> str:
    """What a hemisphere's record holds once its ``files`` are committed: the :func:`stamp`
    line, then (JSON, one line) each file's size and modification time as they are now."""
    return expected + "\n" + json.dumps({str(p): _file_state(Path(p)) for p in files}, sort_keys=True)


def is_done(record: Path, expected: str, files: Iterable[Path]) -> bool:
    """Whether a hemisphere can be skipped: its record holds ``expected``, every one of its
    ``files`` exists, and each file the record lists has the size and modification time it had
    when it was written (an output truncated or edited since is written again; a record of an
    older version, the stamp alone, checks existence only)."""
    try:
        text = record.read_text()
    except OSError:
        return False
    head, _, listed = text.partition("\n")
    if head != expected:
        return False
    if not all(Path(p).is_file() for p in files):
        return False
    if not listed:
        return True
    try:
        states = json.loads(listed)
    except ValueError:
        return False
    return isinstance(states, dict) and all(_file_state(Path(p)) == state for p, state in states.items())

"""Batch mode's resume records: which hemispheres are done, from which inputs and settings.

After a hemisphere's files are committed, its worker writes a small record
(``<work_dir>/batch/<settings>/<sub-X[_ses-Y]>_hemi-H.json``, :func:`record_path`) holding the
:func:`stamp` of its inputs and the run's settings. A rerun skips a hemisphere whose record
holds the same stamp and whose files are all present (:func:`is_done`); a changed input, a
changed setting or a missing output makes it run again. The stamp keys on each input's path,
size and modification time (:func:`input_fingerprint`: the one function to change to key on
content instead).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

from ..derivatives import entities
from ..io.discover import HemiInputs

__all__ = ["settings_key", "record_path", "input_fingerprint", "stamp", "is_done"]


def settings_key(config) -> str:
    """A short hash of everything in the :class:`~geomorph_bids.workflows.config.RunConfig`
    that changes a hemisphere's files: template, model, features, density, output folder."""
    folder = "" if config.template.folder is None else str(config.template.folder)
    doc = [config.template.label, folder, config.model.to_dict(), list(config.features), config.density,
           str(config.output_dir)]
    return hashlib.sha1(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:12]


def record_path(config, h: HemiInputs) -> Path:
    """Where the resume record of hemisphere ``h`` goes (one folder per :func:`settings_key`)."""
    return (Path(config.work_dir) / "batch" / settings_key(config)
            / f"{entities(h.subject, h.session)}_hemi-{h.hemi}.json")


def input_fingerprint(paths: Iterable[Path | None]) -> list:
    """(absolute path, size, mtime_ns) of each input file (None skipped)."""
    rows = []
    for p in paths:
        if p is None:
            continue
        st = Path(p).stat()
        rows.append([str(Path(p).absolute()), st.st_size, st.st_mtime_ns])
    return rows


def stamp(config, h: HemiInputs) -> str:
    """The record's content for ``h`` under ``config``: its inputs' fingerprint and the settings key."""
    inputs = [h.sphere, h.sphere_reg, *(h.features[f] for f in config.features)]
    return json.dumps({"inputs": input_fingerprint(inputs), "settings": settings_key(config)}, sort_keys=True)


def is_done(record: Path, expected: str, files: Iterable[Path]) -> bool:
    """Whether a hemisphere can be skipped: its record holds ``expected`` and every one of its
    ``files`` exists."""
    try:
        if record.read_text() != expected:
            return False
    except OSError:
        return False
    return all(Path(p).is_file() for p in files)

"""Batch mode's resume records: which hemispheres are done, from which inputs and settings.

After a hemisphere's files are committed, its worker writes a small record
(``<work_dir>/batch/<settings>/<sub-X[_ses-Y]>_hemi-H.json``, :func:`record_path`) holding the
:func:`stamp` of its inputs and the run's settings. A rerun skips a hemisphere whose record
holds the same stamp and whose files are all present (:func:`is_done`); a changed input, a
changed setting or a missing output makes it run again. The stamp keys on the inputs' paths and
content (:func:`input_fingerprint`: the content hash ``HemiInputs.digest`` the command line
computed once after discovery, :func:`geomorph_bids.io.digest.input_digest`): a changed byte
reruns the hemisphere even when its size and modification time were kept.
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
    that changes a hemisphere's files: template (and its maps' checksums: another template source
    is another result), model, features, density, output folder, quality thresholds,
    ``--fmriprep-compat``."""
    folder = "" if config.template.folder is None else str(config.template.folder)
    maps = [config.template.provenance(config.model.template_hemi(h), config.channels)["template_sha256"]
            for h in ("L", "R")]
    doc = [config.template.label, folder, config.model.to_dict(), list(config.features), config.density,
           str(config.output_dir), maps, config.quality.to_dict(), bool(config.fmriprep_compat)]
    return hashlib.sha1(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:12]


def record_path(config, h: HemiInputs) -> Path:
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


def stamp(config, h: HemiInputs) -> str:
    """The record's content for ``h`` under ``config``: its inputs' fingerprint and the settings key."""
    inputs = [h.sphere, h.sphere_reg, *(h.features[f] for f in config.features), h.midthickness, h.cortex_mask]
    return json.dumps({"inputs": input_fingerprint(inputs, h.digest), "settings": settings_key(config)},
                      sort_keys=True)


def is_done(record: Path, expected: str, files: Iterable[Path]) -> bool:
    """Whether a hemisphere can be skipped: its record holds ``expected`` and every one of its
    ``files`` exists."""
    try:
        if record.read_text() != expected:
            return False
    except OSError:
        return False
    return all(Path(p).is_file() for p in files)

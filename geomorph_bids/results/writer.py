"""The one writer of a hemisphere's derivatives, used by the Nipype workflow (its
``WriteHemisphere`` node) and by batch mode alike.

A hemisphere's files are declared as :class:`OutputFile` values (final path, which result
feeds it, its JSON sidecar), built in one place
(:func:`geomorph_bids.workflows.outputs.hemisphere_files`) from the names of
:mod:`geomorph_bids.derivatives`. :func:`commit_outputs` puts them in place once every result
exists: each file is staged inside the output folder (``.geomorph-staging/<random>/``: a hard
link to, or copy of, the produced file, wherever it was produced) and
renamed over its final path; sidecars are written atomically
(:func:`geomorph_bids.io.atomic.atomic_write_bytes`); the metrics JSON goes last (it is what
marks a hemisphere as done; an earlier run's metrics JSON is removed before the first file of
its set is replaced, so that a set interrupted while it is replaced is not taken as done), with a
manifest of the files written before it (their sizes and SHA-1: what lets a later run, with another
work folder, take them as done, :func:`geomorph_bids.workflows.outputs.reusable`). A
final file that already holds exactly the new bytes is left untouched, so a rerun that changes
nothing changes no file.
"""

from __future__ import annotations

import contextlib
import filecmp
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..derivatives import sidecar

__all__ = ["STAGING_DIR", "OUTPUT_FIELDS", "OutputFile", "sidecar_bytes", "staging", "is_flagged", "flagged_in",
           "commit_outputs", "note_no_data"]

#: staging folder (inside the output directory) for atomic writes; the CLI removes leftovers
STAGING_DIR = ".geomorph-staging"
_MKDIR_TRIES = 20  # staging(): tries to create a stage while other writers remove the empty parent

#: the named results of a hemisphere that feed its files
OUTPUT_FIELDS = ("registered_sphere", "resampled_features", "metrics", "native_sphere", "native_features",
                 "sphere_reg_fslr", "cifti")
# (``sphere_reg_fslr``: ``--fmriprep-compat`` with template fsaverage, the sphere carried into
# fsLR; ``cifti``: ``--cifti-output``'s per-subject dscalar, committed on its own)


@dataclass(frozen=True)
class OutputFile:
    """One file of a hemisphere's derivatives.

    Attributes
    ----------
    path : the final path (absolute).
    field : the result that feeds it (:data:`OUTPUT_FIELDS`).
    index : position in a list result (``resampled_features``, ``native_features``), else None.
    meta : its JSON sidecar (``x.surf.gii`` -> ``x.json``), or None for no sidecar.
    unless_flagged : written only when the hemisphere passes the quality gates (its metrics
        JSON's ``quality.flagged`` is false); a flagged hemisphere's is withheld and an earlier
        run's removed with its sidecar: the sphere under sMRIPrep's names, which fMRIPrep takes
        in place of MSMSulc's without reading any verdict.
    """

    path: Path
    field: str
    index: int | None = None
    meta: Mapping[str, Any] | None = field(default=None, compare=False)
    unless_flagged: bool = False

    def __post_init__(self) -> None:
        if self.field not in OUTPUT_FIELDS:
            raise ValueError(f"unknown output field {self.field!r} (one of {', '.join(OUTPUT_FIELDS)})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (a Nipype input); :meth:`from_dict` is the inverse."""
        return {"path": str(self.path), "field": self.field, "index": self.index,
                "meta": None if self.meta is None else dict(self.meta), "unless_flagged": self.unless_flagged}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "OutputFile":
        return cls(Path(d["path"]), str(d["field"]), d.get("index"), d.get("meta"),
                   bool(d.get("unless_flagged", False)))

    def source(self, produced: Mapping[str, Any]) -> Path:
        """The produced file that feeds this output (``produced``: field -> path or list of paths)."""
        value = produced[self.field]
        return Path(value[self.index] if self.index is not None else value)


def _no_data_words(record: Mapping[str, Any], compared: Sequence[str] | None = None) -> str:
    """``12 of the native sphere's 2,562 vertices hold no data (sulc: NaN at 12): ...``; ``compared``: the maps
    the registration compares (its record's ``registration_features``), whose no-data regions alone it leaves out
    (:meth:`~geomorph_bids.io.hemisphere.NativeHemisphere.registration_cortex`); None: every map's."""
    parts = []
    for name, c in record["features"].items():
        kinds = ([f"NaN at {c['nan']:,}"] if c.get("nan") else []) + (
            [f"one value filling {c['constant']:,}"] if c.get("constant") else [])
        parts.append(f"{name}: {' and '.join(kinds)}")
    holes = list(record["features"])
    registered = holes if compared is None else [f for f in holes if f in compared]
    if len(registered) == len(holes):
        where = "left out of the registration's similarity and of the resampling"
    elif registered:
        where = f"left out of the resampling and, {', '.join(registered)}'s, of the registration's similarity"
    else:
        where = f"left out of the resampling (not of the registration, which compares {', '.join(compared)} alone)"
    return (f"{record['vertices']:,} of the native sphere's {record['of_vertices']:,} vertices hold no data "
            f"({'; '.join(parts)}): 0 in the native maps, {where}, as a medial wall is")


#: a resampled map's ``CurrentRoi`` where no cortex mask was given, only maps holding no data somewhere
_DATA_ROI = ("the native vertices where the maps hold data (NoData): values outside them are left out of every "
             "vertex that has a source inside (-current-roi); a vertex with none keeps the unrestricted value")


def note_no_data(files: Sequence[OutputFile], record: Mapping[str, Any] | None,
                 compared: Sequence[str] | None = None) -> list[OutputFile]:
    """``files`` (:func:`~geomorph_bids.workflows.outputs.hemisphere_files`) with the vertices that hold no data
    (``record``: :func:`~geomorph_bids.results.metrics.no_data_record`) said in the sidecars of the maps written: ``NoData`` (``Vertices``,
    ``Description``) in the native and resampled maps', and the resampled maps' ``CurrentRoi`` (the resampling
    was restricted to the vertices with data: the cortex mask's text, less them, or that alone). ``compared``: the
    maps the registration compares (the others' no-data regions were not left out of it). Unchanged for None."""
    import dataclasses

    if not record:
        return list(files)
    note = {"Vertices": int(record["vertices"]), "Description": _no_data_words(record, compared)}
    out = []
    for f in files:
        if f.meta is not None and f.field in ("native_features", "resampled_features"):
            meta = {**f.meta, "NoData": note}
            if f.field == "resampled_features":
                meta["CurrentRoi"] = (f"{meta['CurrentRoi']}; less the {note['Vertices']:,} vertices where a map holds "
                                      "no data (NoData)" if meta.get("CurrentRoi") else _DATA_ROI)
            f = dataclasses.replace(f, meta=meta)
        out.append(f)
    return out


def sidecar_bytes(meta: Mapping[str, Any]) -> bytes:
    """A sidecar as written (sorted keys, 2-space indent, as niworkflows' sinks write them)."""
    return json.dumps(dict(meta), sort_keys=True, indent=2).encode()


@contextlib.contextmanager
def staging(output_dir: str | Path) -> Iterator[Path]:
    """A fresh folder inside ``output_dir/.geomorph-staging`` (same file system as the outputs,
    so a staged file is renamed into place atomically), removed with what is left in it, and
    ``.geomorph-staging`` too once empty. Two runs finishing side by side each saw the other
    active and left the empty folder behind; the removal of an empty parent can race another
    writer's ``mkdir``, which therefore tries again."""
    from ..io.atomic import shared_folder

    root = Path(output_dir) / STAGING_DIR
    stage = root / uuid.uuid4().hex
    for attempt in range(_MKDIR_TRIES):  # shared_folder makes the output folder too when missing
        with contextlib.suppress(FileExistsError):  # (pathlib's exist_ok when another writer removed it meanwhile)
            shared_folder(root)  # group-writable in a lab's group folder: every member's runs stage there
        try:
            stage.mkdir()
            break
        except FileNotFoundError:  # another writer removed the empty parent between our two mkdirs
            if attempt == _MKDIR_TRIES - 1:
                raise
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        with contextlib.suppress(OSError):  # not empty: another writer's stage is in it
            root.rmdir()


def _same_content(new: Path, old: Path) -> bool:
    """Whether ``old`` exists with exactly the bytes of ``new`` (same inode: hard links)."""
    try:
        return old.is_file() and (os.path.samefile(new, old) or filecmp.cmp(new, old, shallow=False))
    except OSError:
        return False


def _stage(src: Path, stage: Path) -> Path:
    """``src`` inside ``stage``, so that one produced file may feed several outputs
    (``--fmriprep-compat``'s copies of the registered sphere); what is left in the stage is
    removed with it. A file produced inside the stage is hard-linked; any other (a Nipype node's
    file in the work folder) is copied: a hard link would make the output and the work folder's
    cache one file, so that an output edited or truncated in place damaged the cache too, and
    every rerun failed on it (or reused it) instead of putting the output back."""
    staged = stage / f"{uuid.uuid4().hex}{''.join(src.suffixes)}"
    if Path(os.path.abspath(src)).parent == Path(os.path.abspath(stage)):
        try:
            os.link(src, staged)
            return staged
        except OSError:  # links not allowed
            pass
    shutil.copyfile(src, staged)
    _flush(staged)
    return staged


def _flush(path: Path) -> None:
    """Force ``path``'s bytes to disk before it is renamed into place, as every other write of the
    outputs is (:func:`~geomorph_bids.io.atomic.atomic_write_bytes`): a node that loses power after
    the rename may otherwise come back with the name in place and the file empty (XFS, ext4 for a
    new name), beside a metrics JSON that says the hemisphere is done. A file system that does no
    ``fsync`` (s3fs, gcsfuse) is carried on on (:func:`~geomorph_bids.io.atomic.flush_to_disk`)."""
    from ..io.atomic import flush_to_disk

    fd = os.open(path, os.O_RDONLY)
    try:
        flush_to_disk(fd)
    finally:
        os.close(fd)


def _put(src: Path, stage: Path, dest: Path, changing: Callable[[], None] = lambda: None) -> None:
    """Put ``src`` at ``dest`` through ``stage``; ``changing`` is called before ``dest`` changes."""
    staged = _stage(src, stage)
    if _same_content(staged, dest):  # a rerun leaves an identical finished file untouched
        staged.unlink(missing_ok=True)  # (only ever a file inside the stage)
        return
    changing()
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, dest)


def _put_sidecar(path: Path, data: bytes, changing: Callable[[], None] = lambda: None) -> None:
    """Write the sidecar ``data`` at ``path``, unless a regular file of exactly those bytes is there
    (read at most ``len(data)`` bytes, never blocking: a FIFO or a link to ``/dev/zero`` planted in
    a shared output folder blocked the write for ever, or filled the memory; they are replaced)."""
    from ..io.atomic import atomic_write_bytes
    from ..io.limits import read_bounded

    try:
        if read_bounded(path, max(1, len(data)), timeout_s=None) == data:
            return
    except (OSError, ValueError):  # none, not a regular file, another size (InputError is a ValueError)
        pass
    changing()
    atomic_write_bytes(path, data)


def is_flagged(metrics: str | Path) -> bool:
    """Whether the metrics JSON at ``metrics`` records a hemisphere flagged by the quality gates
    (``quality.flagged``); False when there is none or it cannot be read."""
    try:
        doc = json.loads(Path(metrics).read_text())
    except (OSError, ValueError):
        return False
    return flagged_in(doc)


def flagged_in(doc: Any) -> bool:
    """Whether a metrics document already read (:func:`is_flagged` of its file) records a hemisphere
    flagged by the quality gates; False for None or anything but such a document."""
    quality = doc.get("quality") if isinstance(doc, dict) else None
    return isinstance(quality, dict) and quality.get("flagged") is True


def commit_outputs(files: Sequence[OutputFile], produced: Mapping[str, Any], output_dir: str | Path,
                   stage: Path | None = None) -> list[Path]:
    """Put a hemisphere's files in place; returns the final paths (sidecars included).

    ``produced`` maps each field of :data:`OUTPUT_FIELDS` that ``files`` use to the produced
    file (a list for list fields). Files produced inside ``stage`` (a :func:`staging` folder)
    are hard-linked into place (one may feed several files); others are copied (:func:`_stage`). Order: data files,
    then sidecars, then the metrics JSON. OSError (disk full...) propagates; the caller removes
    the hemisphere's files (a failed hemisphere leaves none). Files marked ``unless_flagged`` are
    withheld (an earlier run's removed) when the produced metrics JSON says flagged (:func:`is_flagged`).
    """
    metrics = [f for f in files if f.field == "metrics"]
    withheld: list[OutputFile] = []
    if any(f.unless_flagged for f in files) and metrics and is_flagged(metrics[0].source(produced)):
        withheld = [f for f in files if f.unless_flagged]
        files = [f for f in files if not f.unless_flagged]
    order = sorted(files, key=lambda f: f.field == "metrics")  # stable: the metrics JSON last
    done_marks = [f.path for f in order if f.field == "metrics"]

    def changing() -> None:
        """Before the first file of an earlier run's set is replaced: its metrics JSON goes, so
        that a run killed (SIGKILL, a node's power) between the first replaced file and the new
        metrics JSON leaves a set without one (not done: redone by the rerun, no row at the
        group level), never new files beside the earlier metrics that pass for finished."""
        while done_marks:
            done_marks.pop().unlink(missing_ok=True)

    for f in withheld:  # an earlier run's, which described a registration that passed: the set changes
        for p in (f.path, sidecar(f.path)):
            if p.exists():
                changing()
                p.unlink(missing_ok=True)
    written: list[Path] = []
    with contextlib.ExitStack() as stack:
        folder = stage if stage is not None else stack.enter_context(staging(output_dir))
        for f in order:
            if f.field == "metrics":
                continue
            _put(f.source(produced), folder, f.path, changing)
            written.append(f.path)
        for f in order:
            if f.meta is not None:
                _put_sidecar(sidecar(f.path), sidecar_bytes(f.meta), changing)
                written.append(sidecar(f.path))
        for f in order:
            if f.field == "metrics":
                _put(_manifested(f.source(produced), written, f.path.parent, folder), folder, f.path)
                written.append(f.path)
    return written


def _manifested(metrics: Path, written: Sequence[Path], folder: Path, stage: Path) -> Path:
    """The produced metrics JSON with the manifest of the files written before it
    (:func:`~geomorph_bids.results.metrics.with_manifest`: their sizes and SHA-1, named relative to
    ``folder``), as a file in ``stage``; ``metrics`` itself when it holds no JSON object (it is put in place as
    produced)."""
    from ..io.atomic import atomic_write_bytes
    from ..results.metrics import metrics_bytes, with_manifest

    try:
        doc = json.loads(Path(metrics).read_text())
    except (OSError, ValueError):
        return Path(metrics)
    if not isinstance(doc, dict):
        return Path(metrics)
    data = metrics_bytes(with_manifest(doc, written, folder))
    return Path(atomic_write_bytes(stage / f"{uuid.uuid4().hex}.json", data))

"""The metrics document of a hemisphere: what its registration did and measured, with the
provenance of its inputs (``<ent>_hemi-H_space-T_desc-geomorph_metrics.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    from ..engine.model_choice import ModelChoice
    from ..engine.register import Registration
    from ..quality import QualityThresholds

__all__ = ["registration_record", "metrics_document", "WITHHELD_REASON", "metrics_bytes", "LATEST_RUN_FAILED",
           "mark_latest_run_failed", "clear_latest_run_failed", "latest_run_failure", "read_document", "OUTPUTS",
           "with_manifest", "outputs_as_written", "NO_DATA", "no_data_record", "SOURCES_AS_WRITTEN",
           "sources_as_written"]

#: key of a metrics document whose hemisphere's latest participant run failed while this
#: document (and the other outputs) of an earlier run were kept (``{"run": <run id>, "reason":
#: <the FAILED line's reason>}``); a later successful run of it removes the key
LATEST_RUN_FAILED = "latest_run_failed"


#: key of the manifest the writer adds to a metrics document (:func:`with_manifest`): ``{"files": {name:
#: [bytes, sha1]}, "document": sha1}``, the hemisphere's other files as written beside it and the document's
#: own hash (:func:`outputs_as_written` checks both)
OUTPUTS = "outputs"


def _jsonable(d: Mapping[str, Any]) -> dict:
    """numpy scalars/arrays -> plain Python, NaN/Inf -> None (strict JSON)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not np.isfinite(v):
            v = None
        out[str(k)] = v
    return out


#: key of a metrics document whose hemisphere's maps held no data somewhere (:func:`no_data_record`); absent when none
NO_DATA = "no_data"


def no_data_record(features: Mapping[str, Mapping[str, int]], vertices: int, n_vertices: int) -> dict[str, Any] | None:
    """What the metrics JSON records (:data:`NO_DATA`) of the vertices where the native maps hold no data
    (:func:`~geomorph_bids.io.validate.no_data`; :attr:`~geomorph_bids.io.hemisphere.NativeHemisphere.no_data`):
    ``{"vertices": how many (some map's), "of_vertices": the sphere's count, "features": {feature: {"nan": n,
    "constant": n}}}``, the vertices NaN in a map and those of a constant fill (a sulc plateau). Those vertices
    are 0 in the native maps written and left out of the resampling as a medial wall is, and of the registration
    where the map is one it compares (the maps' sidecars say so: :func:`~geomorph_bids.results.writer.note_no_data`). None when there are none."""
    if vertices <= 0:
        return None
    return {"vertices": int(vertices), "of_vertices": int(n_vertices),
            "features": {str(f): {"nan": int(c.get("nan", 0)), "constant": int(c.get("constant", 0))}
                         for f, c in features.items()}}


def registration_record(result: Registration, choice: ModelChoice, used_sphere_reg: bool) -> dict:
    """The registration metrics (JSON-able) of one
    :class:`~geomorph_bids.engine.register.Registration` made with the
    :class:`~geomorph_bids.engine.model_choice.ModelChoice` ``choice`` (``method`` is what
    register() reports it did). ``used_sphere_reg``: whether a sphere.reg was given; recorded
    true only when the rotation came from it (``rotation_method`` ``correspondence``), not when it
    was set aside (``reg_sphere_set_aside``) and the maps decided."""
    return {"registration_features": list(choice.channels),
            "model_argument": choice.name,
            "used_sphere_reg": bool(used_sphere_reg) and result.metrics.get("rotation_method") == "correspondence",
            **_jsonable(result.metrics),
            "rotation": np.round(result.rotation, 10).tolist()}


def metrics_document(registration: Mapping[str, Any], info: Mapping[str, Any], density: str | None,
                     density_source: str | None, thresholds: QualityThresholds | None = None, label_conflicts: list[str] | None = None,
                     unless_flagged: Sequence[str] = (), no_data: Mapping[str, Any] | None = None) -> dict:
    """The hemisphere's metrics document: the software (its build:
    :func:`~geomorph_bids.io.digest.software_id`), the provenance ``info`` (subject,
    inputs, sign convention...: :func:`geomorph_bids.workflows.outputs.hemisphere_info`),
    ``method`` (what register() did: rigid, optimise, geomorph[+optimise]), the output density
    and where its sphere came from, the ``registration`` record (with ``label_conflicts``: the
    native input files that declare the other hemisphere, when given, and ``info``'s ``sulc_sign``,
    which the sign gate's advice reads) and ``quality``, the
    verdict of the quality gates (:func:`geomorph_bids.quality.assess` with ``thresholds``, a
    :class:`~geomorph_bids.quality.QualityThresholds`; None: the defaults). ``unless_flagged``: the
    names of the files written only when the hemisphere passes (``OutputFile.unless_flagged``: the
    sphere under sMRIPrep's names); a flagged hemisphere's document lists them as ``withheld``
    (``{"files": [...], "reason": ...}``), as :func:`~geomorph_bids.results.writer.commit_outputs`
    withholds them on the same verdict. ``no_data``: :func:`no_data_record` (recorded as :data:`NO_DATA`)."""
    from ..io.digest import software_id
    from ..quality import DEFAULT_THRESHOLDS, assess

    registration = dict(registration)
    if (info or {}).get("sulc_sign") is not None:  # the sign gate's advice depends on it (quality.assess),
        registration["sulc_sign"] = info["sulc_sign"]  # and the group level and reports re-judge this record
    if label_conflicts is not None:  # the native files: the registration only saw validated copies
        registration["label_conflicts"] = list(label_conflicts)
    verdict = assess(registration, registration.get("registration_features") or [], thresholds or DEFAULT_THRESHOLDS)
    doc = {"software": software_id(), **dict(info or {}),
           "method": registration.get("method"),
           "output_density": density or None,
           "output_density_source": density_source or None,
           "registration": registration,
           "quality": verdict.to_dict()}
    if no_data:
        doc[NO_DATA] = dict(no_data)
    if verdict.flagged and unless_flagged:
        doc["withheld"] = {"files": [str(n) for n in unless_flagged], "reason": WITHHELD_REASON}
    return doc


#: why a flagged hemisphere's ``withheld`` files (the metrics JSON) were not written
WITHHELD_REASON = ("flagged by the quality gates: not written under sMRIPrep's names, so that fMRIPrep's "
                   "--derivatives does not take a registration the gates rejected (it computes its own); the "
                   "desc-geomorph sphere is written for review")


def metrics_bytes(doc: Mapping[str, Any]) -> bytes:
    """The metrics document as written (sorted keys, 2-space indent, final newline)."""
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def read_document(path: str | Path) -> dict | None:
    """The JSON object in ``path`` (a metrics document), or None (no file, unreadable, not an object;
    not a regular file, or larger than a document can be: a FIFO planted in a shared output folder
    blocked the participant level for ever, a link to ``/dev/zero`` filled its memory)."""
    from ..io.limits import read_json_bounded

    try:
        doc = read_json_bounded(path, what="metrics document", timeout_s=None)
    except (OSError, ValueError):  # InputError is a ValueError
        return None
    return doc if isinstance(doc, dict) else None


def mark_latest_run_failed(path: str | Path, run: str, reason: str) -> bool:
    """Record in the kept metrics document at ``path`` that the hemisphere's latest run
    (``run``) failed, and why: the group level then reports its row as stale instead of ok.
    Returns whether it was recorded (False: no readable document there)."""
    from ..io.atomic import atomic_write_bytes

    doc = read_document(path)
    if doc is None:
        return False
    doc[LATEST_RUN_FAILED] = {"run": str(run), "reason": " ".join(str(reason).split())}
    atomic_write_bytes(path, metrics_bytes(doc))
    return True


def clear_latest_run_failed(path: str | Path, doc: Mapping[str, Any]) -> dict:
    """``doc`` (the document read from ``path``) without :data:`LATEST_RUN_FAILED`, rewritten
    when it had it: the hemisphere's latest run succeeded (with results an earlier run left)."""
    from ..io.atomic import atomic_write_bytes

    doc = dict(doc)
    if doc.pop(LATEST_RUN_FAILED, None) is not None:
        atomic_write_bytes(path, metrics_bytes(doc))
    return doc


def latest_run_failure(doc: Mapping[str, Any]) -> str | None:
    """``the latest run failed: <reason>`` when the document is an earlier run's, kept after its
    hemisphere's latest run failed (:func:`mark_latest_run_failed`); else None."""
    record = doc.get(LATEST_RUN_FAILED)
    if not record:
        return None
    reason = record.get("reason") if isinstance(record, dict) else record
    return f"the latest run failed: {reason}" if reason else "the latest run failed"


def _untimed(value: Any) -> Any:
    """``value`` without the keys that start with ``seconds`` (the clock's), at any depth."""
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if not str(k).startswith("seconds")}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def _document_sha1(doc: Mapping[str, Any]) -> str:
    """SHA-1 of ``doc`` as written (:func:`metrics_bytes`), less the manifest, :data:`LATEST_RUN_FAILED`
    (which a later run adds and removes) and the clock's ``seconds*`` (so that both modes, and reruns, record
    the same hash for the same results): what tells the document edited since it was written."""
    import hashlib

    body = _untimed({k: v for k, v in doc.items() if k not in (OUTPUTS, LATEST_RUN_FAILED)})
    return hashlib.sha1(metrics_bytes(body), usedforsecurity=False).hexdigest()


def _file_entry(path: Path) -> list | None:
    """``[size in bytes, SHA-1]`` of a regular file, or None when it is none or cannot be read."""
    from ..io.digest import file_digest

    try:
        if not path.is_file():
            return None
        return [path.stat().st_size, file_digest(path)]
    except (OSError, ValueError):  # InputError is a ValueError
        return None


#: key of a sidecar whose file is built from other outputs (``--cifti-output``'s dscalar): that file and those
#: it was built from as they were when it was written, :func:`sources_as_written`; compared with them as they are
#: now, not by modification time
SOURCES_AS_WRITTEN = "SourcesAsWritten"


def sources_as_written(files: Sequence[str | Path], folder: str | Path,
                       built: tuple[str | Path, str | Path] | None = None) -> dict[str, list | None]:
    """Each of ``files`` named relative to ``folder`` (the output folder) with ``[size in bytes, SHA-1]``
    (None: missing or unreadable), in order: what a file built from them records (:data:`SOURCES_AS_WRITTEN`).
    ``built``: (its final path, the file as made, e.g. staged): its own entry too, under the final path's name
    (a file replaced since, without its sidecar, is then not the one recorded)."""
    import os

    listed = {os.path.relpath(Path(p), Path(folder)): _file_entry(Path(p)) for p in files}
    if built is not None:
        listed[os.path.relpath(Path(built[0]), Path(folder))] = _file_entry(Path(built[1]))
    return listed


def with_manifest(doc: Mapping[str, Any], files: Sequence[str | Path], folder: str | Path) -> dict:
    """``doc`` with :data:`OUTPUTS`: each of ``files`` (the hemisphere's files as written, named relative
    to ``folder``, the metrics JSON's) with its size and SHA-1, and the document's own hash. Written
    by :func:`~geomorph_bids.results.writer.commit_outputs`, read by :func:`outputs_as_written`."""
    import os

    listed = {os.path.relpath(Path(p), Path(folder)): _file_entry(Path(p)) for p in files}
    return {**dict(doc), OUTPUTS: {"files": listed, "document": _document_sha1(doc)}}


def outputs_as_written(doc: Mapping[str, Any], metrics: str | Path, files: Sequence[str | Path]) -> bool:
    """Whether the hemisphere whose metrics document ``doc`` (read from ``metrics``) is whole as it
    was written: its manifest (:func:`with_manifest`) lists exactly ``files`` (the files this run's
    settings write, less the metrics JSON), each has the recorded size and SHA-1 (a file truncated,
    replaced or edited since is not), and the document is unchanged. False for a document without one."""
    import os

    manifest = doc.get(OUTPUTS)
    listed = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(listed, dict) or manifest.get("document") != _document_sha1(doc):
        return False
    folder = Path(metrics).parent
    names = {os.path.relpath(Path(p), folder) for p in files}
    if set(listed) != names:
        return False
    for name, entry in listed.items():
        path = folder / name
        try:
            if not isinstance(entry, list) or path.stat().st_size != entry[0]:
                return False
        except OSError:
            return False
    return all(_file_entry(folder / name) == entry for name, entry in listed.items())

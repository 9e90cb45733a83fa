"""The participant outputs a report is drawn from, found by their names
(:mod:`geomorph_bids.derivatives`): one :class:`HemiOutputs` per metrics file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..derivatives import HemisphereOutputs, hemisphere_outputs, label_key, metrics_files, parse_metrics_name
from ..errors import InputError
from ..io.limits import read_json_bounded
from ..io.template_sources import current_provenance

__all__ = ["HemiOutputs", "find_hemispheres", "label", "relative", "raw_dataset", "input_surface"]


def raw_dataset(output_dir: str | Path) -> Path | None:
    """The raw BIDS dataset the outputs were made from: ``dataset_description.json``'s ``DatasetLinks`` ``raw``,
    read from ``output_dir`` (:func:`~geomorph_bids.derivatives.linked_folder`: relative inside the dataset);
    None when it does not say or cannot be read."""
    from ..derivatives import DATASET_DESCRIPTION, linked_folder

    try:
        links = read_json_bounded(Path(output_dir) / DATASET_DESCRIPTION, timeout_s=5).get("DatasetLinks")
    except (InputError, OSError, AttributeError):
        return None
    raw = links.get("raw") if isinstance(links, dict) else None
    return linked_folder(output_dir, raw) if isinstance(raw, str) and raw else None


def input_surface(doc: dict[str, Any], output_dir: str | Path) -> str | None:
    """Where the surface a hemisphere's maps are drawn on lies: the metrics' ``input_surface_path`` (a surface
    outside the dataset, or an earlier version's record), else its ``input_surface`` (relative to the BIDS
    folder) in the :func:`raw_dataset` (as recorded when that is unknown: the report says it is not readable);
    None without one."""
    if doc.get("input_surface_path"):
        return str(doc["input_surface_path"])
    rel = doc.get("input_surface")
    if not isinstance(rel, str) or not rel:
        return None
    raw = None if Path(rel).is_absolute() else raw_dataset(output_dir)
    return rel if raw is None else str(raw / rel)


def label(value: str | None, prefix: str) -> str | None:
    """A BIDS label without its prefix: ``label("sub-01", "sub") == label("01", "sub") == "01"``."""
    if value is None:
        return None
    value = str(value)
    return value[len(prefix) + 1:] if value.startswith(prefix + "-") else value


def relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (for links and listings in a report), else as given."""
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


@dataclass
class HemiOutputs:
    """One registered hemisphere found in the outputs: its metrics, and where its files are
    (:attr:`files`, named by :mod:`geomorph_bids.derivatives`)."""

    subject: str
    session: str | None
    hemi: str
    space: str
    output_dir: Path
    metrics_file: Path
    doc: dict[str, Any] = field(default_factory=dict)
    #: why the group table has no row for it (:func:`~.group_table.check_metrics`: a damaged
    #: metrics file, a registered sphere gone), or None
    problem: str | None = None

    @property
    def files(self) -> HemisphereOutputs:
        """The hemisphere's output files; the resampled features at the output density the
        metrics record (a ``*`` pattern when none is recorded)."""
        return hemisphere_outputs(self.output_dir, self.subject, self.session, self.hemi, self.space,
                                  str(self.doc.get("output_density") or "*"))

    @property
    def entities(self) -> str:
        return self.files.entities

    @property
    def registration(self) -> dict[str, Any]:
        """The metrics' ``registration`` record, its template provenance as this version records it
        (:func:`~geomorph_bids.io.template_sources.current_provenance`: an earlier version's count
        of the bundled maps); ``{}`` for a hand-edited file's string."""
        reg = self.doc.get("registration")
        return current_provenance(reg) if isinstance(reg, dict) else {}

    @property
    def features(self) -> list[str]:
        reg = self.registration.get("registration_features") or self.doc.get("features") or ["sulc"]
        return [str(f) for f in reg]

    def native_sphere(self) -> Path:
        return self.files.native_sphere

    def native_feature(self, feature: str) -> Path:
        return self.files.native_feature(feature)

    def registered_sphere(self) -> Path:
        return self.files.registered_sphere

    def resampled_feature(self, feature: str) -> Path | None:
        """The feature resampled at the output density recorded in the metrics (any density
        when none is recorded), or None."""
        path = self.files.resampled_feature(feature)
        found = sorted(path.parent.glob(path.name)) if "*" in path.name else [path] if path.is_file() else []
        return found[0] if found else None


def find_hemispheres(output_dir: str | Path, subject: str, session: str | None = None) -> list[HemiOutputs]:
    """Every metrics file of a subject (all sessions, or one), sorted by session (as the group table:
    ``ses-2`` before ``ses-10``, session-less first), hemisphere, space;
    one the group table leaves out has its :attr:`HemiOutputs.problem`."""
    from .group_table import check_metrics

    subject = label(subject, "sub") or ""
    session = label(session, "ses")
    out = []
    for path in metrics_files(output_dir, subject):
        parsed = parse_metrics_name(path.name)
        if parsed is None or parsed[0] != subject:
            continue
        _, ses, hemi, space = parsed
        if session is not None and ses != session:
            continue
        try:
            doc = read_json_bounded(path, what="metrics file")
        except InputError as exc:
            doc = exc
        try:
            check_metrics(path, doc)
            problem = None
        except InputError as exc:
            problem = " ".join(str(exc).split())
        doc = doc if isinstance(doc, dict) else {}
        out.append(HemiOutputs(subject, ses, hemi, space, Path(output_dir), path, doc, problem))
    return sorted(out, key=lambda h: (label_key(h.session), h.hemi, h.space))  # ses-2 before ses-10, as the group

"""Which subjects and sessions a participant run processes: ``--participant-label``,
``--session-label`` and ``--bids-filter-file`` applied to what discovery finds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from ..errors import InputError
from ..io.limits import read_json_bounded
from .failures import Failure
from .parser import parse_derivatives

__all__ = ["read_filter", "collect_jobs"]

#: subjects listed at most in a "not found; available: ..." line
_LISTED = 20


def read_filter(path: Path | None) -> dict[str, list[str]]:
    """--bids-filter-file -> {"subject": [...], "session": [...]} (labels without prefixes)."""
    from ..io.discover import normalise_label

    if path is None:
        return {}
    try:
        doc = read_json_bounded(path, what="BIDS filter file")
    except InputError as exc:
        raise InputError(f"cannot read the BIDS filter file: {exc.reason}", path=path) from None
    if not isinstance(doc, dict):
        raise InputError("the BIDS filter file must hold a JSON object", path=path)
    merged: dict[str, Any] = {}
    for key, value in doc.items():  # fMRIPrep's nested form: {"t1w": {"session": ...}}
        if isinstance(value, dict):
            merged.update(value)
        else:
            merged[key] = value
    out: dict[str, list[str]] = {}
    for key, value in merged.items():
        if key not in ("subject", "session"):
            raise InputError(f"unsupported entity {key!r} in the BIDS filter file (supported: subject, session)",
                             path=path)
        values = value if isinstance(value, list) else [value]
        bad = [v for v in values if not isinstance(v, (str, int)) or isinstance(v, bool)]
        if bad or not values:
            raise InputError(f"{key!r} in the BIDS filter file must be a label or a list of labels, "
                             f"got {json.dumps(value)}", path=path)
        try:
            out[key] = [normalise_label(str(v), "sub" if key == "subject" else "ses") for v in values]
        except InputError as exc:
            raise InputError(f"{key!r} in the BIDS filter file: {exc.reason}", path=path) from None
    return out


def _sessions_of(subject: str, bids_dir: Path, deriv: dict[str, Path] | None, fs_dir: Path | None) -> list[str]:
    """Session labels with data for a subject (raw BIDS, derivatives, FreeSurfer sub-X_ses-Y)."""
    roots = [bids_dir] + (list(deriv.values()) if deriv is not None else
                          [p for p in sorted((bids_dir / "derivatives").glob("*")) if p.is_dir()])
    found = set()
    for root in roots:
        found |= {p.name[4:] for p in (root / f"sub-{subject}").glob("ses-*") if p.is_dir()}
    for fs in [fs_dir or bids_dir / "derivatives" / "freesurfer"]:
        found |= {p.name.split("_ses-", 1)[1] for p in Path(fs).glob(f"sub-{subject}_ses-*") if p.is_dir()}
    return sorted(s for s in found if s.isalnum())


def _not_found(known: Sequence[str]) -> str:
    """``not found; available: 01, 02`` (the first few of a long list)."""
    listed = ", ".join(known[:_LISTED]) + (f", ... ({len(known)} in all)" if len(known) > _LISTED else "")
    return f"not found; available: {listed or 'none'}"


def collect_jobs(args, features: Sequence[str]) -> tuple[list, list[Failure]]:
    """Discover every requested subject/session: (jobs to run, failures found up front).
    A requested participant that exists nowhere is reported as ``not found; available: ...``."""
    from ..io.discover import DiscoveryError, discover, find_subjects, normalise_label
    from ..workflows import SubjectJob

    bids_dir = args.bids_dir
    deriv = parse_derivatives(args.derivatives)
    filt = read_filter(args.bids_filter_file)
    known = find_subjects(bids_dir, args.fs_subjects_dir, deriv)
    if args.participant_label:
        subjects = sorted(dict.fromkeys(normalise_label(s, "sub") for s in args.participant_label))
    else:
        subjects = known
    if "subject" in filt:
        subjects = [s for s in subjects if s in filt["subject"]]
    if not subjects:
        raise InputError(f"no subjects found in {bids_dir} (nor its derivatives); "
                         "check the folders or --participant-label")
    sessions = ([normalise_label(s, "ses") for s in args.session_label] if args.session_label
                else filt.get("session"))
    hemis = tuple(args.hemi)

    def reason(subject: str, exc: DiscoveryError) -> str:
        return exc.reason if subject in known else f"{_not_found(known)}; {exc.reason}"

    jobs, failures = [], []

    def add(subject: str, session: str | None) -> None:
        """Discover one subject/session (DiscoveryError when nothing is found)."""
        found = discover(subject, bids_dir, session=session, fs_subjects_dir=args.fs_subjects_dir,
                         derivatives=deriv, hemis=hemis, features=features)
        jobs.append(SubjectJob(subject, session, found))
        failures.extend(Failure(subject, session, h, why) for h, why in found.missing.items())

    for subject in subjects:
        wanted: list[str | None] = list(sessions) if sessions else [None]
        if sessions is None:
            try:
                add(subject, None)
                continue
            except DiscoveryError as exc:
                per_session = _sessions_of(subject, bids_dir, deriv, args.fs_subjects_dir)
                if not per_session:
                    failures.append(Failure(subject, None, ",".join(hemis), reason(subject, exc)))
                    continue
                wanted = per_session
        for ses in wanted:
            try:
                add(subject, ses)
            except DiscoveryError as exc:
                failures.append(Failure(subject, ses, ",".join(hemis), reason(subject, exc)))
    return jobs, failures

"""Quality metrics: the per-hemisphere JSON and the group table built from them."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from nipype.interfaces.base import BaseInterfaceInputSpec, File, SimpleInterface, TraitedSpec, traits

from ..io.atomic import atomic_write_text

__all__ = ["WriteMetrics", "group_rows", "write_group_table", "GROUP_COLUMNS"]

#: leading columns of the group table (the registration metrics follow, sorted)
GROUP_COLUMNS = ("subject", "session", "hemi", "template", "method", "input_source", "sulc_sign")


class _WriteMetricsInputSpec(BaseInterfaceInputSpec):
    registration = File(exists=True, mandatory=True, desc="Register.metrics_file")
    info = traits.Dict(traits.Str, traits.Any, desc="provenance merged in (subject, inputs, sign...)")
    density = traits.Str(desc="output density label")
    density_source = traits.Str(desc="where the output-density sphere came from")


class _WriteMetricsOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="metrics JSON")


class WriteMetrics(SimpleInterface):
    """Merge the registration metrics with provenance into one JSON document."""

    input_spec = _WriteMetricsInputSpec
    output_spec = _WriteMetricsOutputSpec

    def _run_interface(self, runtime):
        from .. import __version__

        metrics: dict[str, Any] = json.loads(Path(self.inputs.registration).read_text())
        doc = {"software": f"geomorph-bids {__version__}", **dict(self.inputs.info or {}),
               # what register() did: rigid, optimise (no network), geomorph[+optimise]
               "method": metrics.get("method"),
               "output_density": self.inputs.density or None,
               "output_density_source": self.inputs.density_source or None,
               "registration": metrics}
        out = Path(runtime.cwd) / "metrics.json"
        out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        self._results["out_file"] = str(out)
        return runtime


def _flat(doc: Mapping[str, Any]) -> dict[str, Any]:
    row = {k: doc.get(k) for k in GROUP_COLUMNS}
    for k, v in sorted(doc.get("registration", {}).items()):
        if k == "rotation" or isinstance(v, (list, dict)):
            continue
        row.setdefault(k, v)
    return row


def group_rows(output_dir: str | Path) -> list[dict[str, Any]]:
    """One row per ``sub-*/[ses-*/]anat/*_desc-geomorph_metrics.json`` under ``output_dir``,
    sorted by subject, session, hemisphere."""
    rows = []
    for path in sorted(Path(output_dir).glob("sub-*/**/anat/*_desc-geomorph_metrics.json")):
        rows.append(_flat(json.loads(path.read_text())))
    return sorted(rows, key=lambda r: (str(r["subject"]), str(r["session"] or ""), str(r["hemi"])))


def write_group_table(rows: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write rows as a BIDS TSV (``n/a`` for missing values), atomically."""
    rows = list(rows)
    columns = list(GROUP_COLUMNS)
    for r in rows:
        columns += [k for k in r if k not in columns]
    handle = io.StringIO(newline="")
    w = csv.writer(handle, delimiter="\t", lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["n/a" if r.get(c) is None else
                    (f"{r[c]:.6g}" if isinstance(r[c], float) else r[c]) for c in columns])
    return atomic_write_text(path, handle.getvalue())

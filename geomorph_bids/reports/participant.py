"""The participant report: ``OUTPUT_DIR/sub-X.html`` with figures under ``sub-X/figures/``.

Built from the participant OUTPUTS only (so ``--reports-only`` rebuilds it):

- ``<ent>_hemi-H_space-T_desc-geomorph_metrics.json``: metrics, provenance, rotation;
- ``<ent>_hemi-H_space-T_den-D_desc-geomorph_<feature>.shape.gii``: the "after" map;
- ``<ent>_hemi-H_space-T_desc-geomorph_sphere.surf.gii``: the registered native mesh;
- ``logs/CITATION.md``, ``logs/crash-*/crash-*.txt``, ``logs/*.log``, ``dataset_description.json``.

The subject's inflated (or midthickness) surface is an INPUT, not copied into the outputs:
the workflow records its path in the metrics JSON (``input_surface_path``, absolute;
``input_surface`` relative to the BIDS dir; ``input_surface_kind``). When it is readable and
has the native sphere's vertex count, the maps are also drawn on it; otherwise the report says
why in one line.

Two OPTIONAL outputs (:data:`NATIVE_SPHERE`, :data:`NATIVE_FEATURE`: the native sphere and the
native registration features, as the workflow's ``load_features`` node writes them) add the
"before registration" maps and the areal/shape distortion maps. Without them those panels
say which file is missing and everything else is drawn.
"""

from __future__ import annotations

import json
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import atomic_write_text
from .html import esc, fmt, markdown, page, software_versions, table

__all__ = ["build_participant_report", "HemiOutputs", "find_hemispheres", "report_name", "NATIVE_SPHERE",
           "NATIVE_FEATURE", "FIGURES"]

#: optional output: the validated native sphere (radius 100), same vertices as the registered sphere
NATIVE_SPHERE = "{entities}_hemi-{hemi}_sphere.surf.gii"
#: optional output: a native registration feature (FreeSurfer sign), e.g. ``sub-01_hemi-L_sulc.shape.gii``
NATIVE_FEATURE = "{entities}_hemi-{hemi}_{suffix}.shape.gii"
#: figure names under ``sub-X/figures/``
FIGURES = {"registration": "{entities}_hemi-{hemi}_space-{space}_desc-registration{Feature}_sphere.png",
           "distortion": "{entities}_hemi-{hemi}_space-{space}_desc-distortion_sphere.png",
           "surface": "{entities}_hemi-{hemi}_space-{space}_desc-registration{Feature}_{kind}.png"}
#: file suffix of a feature in the outputs (sMRIPrep's names)
_SUFFIX = {"myelin": "myelinw"}

_METRICS_RE = re.compile(r"^(sub-[A-Za-z0-9]+)(?:_(ses-[A-Za-z0-9]+))?_hemi-([LR])_space-([A-Za-z0-9]+)"
                         r"_desc-geomorph_metrics\.json$")


@dataclass
class HemiOutputs:
    """One registered hemisphere found in the outputs."""

    subject: str
    session: str | None
    hemi: str
    space: str
    anat: Path
    metrics_file: Path
    doc: dict[str, Any] = field(default_factory=dict)

    @property
    def entities(self) -> str:
        return f"sub-{self.subject}" + (f"_ses-{self.session}" if self.session else "")

    @property
    def stem(self) -> str:
        return f"{self.entities}_hemi-{self.hemi}_space-{self.space}"

    @property
    def registration(self) -> dict[str, Any]:
        return dict(self.doc.get("registration") or {})

    @property
    def features(self) -> list[str]:
        reg = self.registration.get("registration_features") or self.doc.get("features") or ["sulc"]
        return [str(f) for f in reg]

    def native_sphere(self) -> Path:
        return self.anat / NATIVE_SPHERE.format(entities=self.entities, hemi=self.hemi)

    def native_feature(self, feature: str) -> Path:
        return self.anat / NATIVE_FEATURE.format(entities=self.entities, hemi=self.hemi,
                                                 suffix=_SUFFIX.get(feature, feature))

    def registered_sphere(self) -> Path:
        return self.anat / f"{self.stem}_desc-geomorph_sphere.surf.gii"

    def resampled_feature(self, feature: str) -> Path | None:
        den = self.doc.get("output_density")
        suffix = _SUFFIX.get(feature, feature)
        if den:
            p = self.anat / f"{self.stem}_den-{den}_desc-geomorph_{suffix}.shape.gii"
            return p if p.is_file() else None
        found = sorted(self.anat.glob(f"{self.stem}_den-*_desc-geomorph_{suffix}.shape.gii"))
        return found[0] if found else None


def _subject_dir(output_dir: Path, subject: str) -> Path:
    return Path(output_dir) / f"sub-{subject}"


def _label(value: str | None, prefix: str) -> str | None:
    if value is None:
        return None
    value = str(value)
    return value[len(prefix) + 1:] if value.startswith(prefix + "-") else value


def find_hemispheres(output_dir: str | Path, subject: str, session: str | None = None) -> list[HemiOutputs]:
    """Every ``*_desc-geomorph_metrics.json`` of a subject (all sessions, or one), sorted."""
    subject = _label(subject, "sub") or ""
    session = _label(session, "ses")
    out = []
    for path in sorted(_subject_dir(Path(output_dir), subject).glob("**/anat/*_desc-geomorph_metrics.json")):
        m = _METRICS_RE.match(path.name)
        if not m or m.group(1) != f"sub-{subject}":
            continue
        ses = m.group(2)[4:] if m.group(2) else None
        if session is not None and ses != session:
            continue
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            doc = {}
        out.append(HemiOutputs(subject, ses, m.group(3), m.group(4), path.parent, path, doc))
    return sorted(out, key=lambda h: (h.session or "", h.hemi, h.space))


def report_name(subject: str, session: str | None = None) -> str:
    """``sub-X.html`` (all sessions) or ``sub-X_ses-Y.html`` (one session)."""
    subject = _label(subject, "sub")
    session = _label(session, "ses")
    return f"sub-{subject}" + (f"_ses-{session}" if session else "") + ".html"


# ------------------------------------------------------------------------------------ data


def _load_template(name: str, hemi: str, feature: str, output_dir: Path):
    from ..io.custom_template import resolve_template

    return resolve_template(name, hemi, (feature,), search=(output_dir, output_dir / "templates"))


def _read_values(path: Path, n: int | None = None) -> np.ndarray:
    from ..io.surfaces import read_feature

    return np.asarray(read_feature(path, n_vertices=n), dtype=np.float64).reshape(-1)


def _read_mesh(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from ..io.surfaces import read_sphere
    from ..io.validate import SphereWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SphereWarning)
        s = read_sphere(path)
    return np.asarray(s.vertices, dtype=np.float64), np.asarray(s.faces, dtype=np.int64)


def _read_surface(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from ..io.surfaces import read_surface

    s = read_surface(path)
    return np.asarray(s.vertices, dtype=np.float64), np.asarray(s.faces, dtype=np.int64)


def _density_mesh(template: str, hemi: str, density: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    from ..io.templates import DENSITIES, load_density_sphere
    from ..sphere.icosphere import icosphere, level_of

    if template in DENSITIES:
        v, f, _ = load_density_sphere(template, hemi, density)
        return v, f
    level = level_of(n)  # a custom template: its outputs are on an icosphere
    v, f = icosphere(level)
    return np.asarray(v, dtype=np.float64), np.asarray(f, dtype=np.int64)


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def _hemi_figures(h: HemiOutputs, output_dir: Path, fig_dir: Path) -> tuple[list[tuple[str, str, str]], list[str]]:
    """Draw a hemisphere's figures: [(kind, caption, relative path)], [notes]."""
    from ..sphere.distortion import distortion
    from .figures import distortion_figure, registration_figure

    figs: list[tuple[str, str, str]] = []
    notes: list[str] = []
    reg = h.registration
    template = str(h.doc.get("template") or reg.get("template") or h.space)
    native_sphere = h.native_sphere()
    native = _read_mesh(native_sphere) if native_sphere.is_file() else None
    registered = _read_mesh(h.registered_sphere()) if h.registered_sphere().is_file() else None
    if registered is None:
        notes.append(f"registered sphere missing: {h.registered_sphere().name}")
    if native is not None and registered is not None and len(native[0]) != len(registered[0]):
        notes.append(f"{native_sphere.name} has {len(native[0])} vertices, the registered sphere "
                     f"{len(registered[0])}: not used")
        native = None
    rotation = np.asarray(reg.get("rotation") or np.eye(3), dtype=np.float64)
    missing_native = (f"needs {native_sphere.name} and the native feature in the outputs"
                      if native is None else "")
    surface_maps: list[tuple[str, tuple[tuple[np.ndarray, np.ndarray], np.ndarray]]] = []
    d = None
    for feature in h.features:
        try:
            tpl = _load_template(template, h.hemi, feature, output_dir)
        except (ValueError, OSError) as exc:
            notes.append(f"template {template} ({feature}) not available here: {exc}")
            continue
        template_map = ((tpl.vertices, tpl.faces), tpl.features[feature])
        surface_maps.append((feature, template_map))
        before = after = None
        missing_before = missing_native
        native_values = None
        nf = h.native_feature(feature)
        if native is not None:
            if nf.is_file():
                native_values = _read_values(nf, len(native[0]))
                before = ((native[0] @ rotation.T, native[1]), native_values)
            else:
                missing_before = f"needs {nf.name} in the outputs"
        missing_after = ""
        resampled = h.resampled_feature(feature)
        if resampled is not None:
            values = _read_values(resampled)
            try:
                after = (_density_mesh(template, h.hemi, str(h.doc.get("output_density")), len(values)), values)
            except (ValueError, OSError) as exc:
                notes.append(f"output-density sphere not available ({exc}); drawing the native map instead")
        if after is None and native_values is not None and registered is not None:
            after = (registered, native_values)
        if after is None:
            missing_after = "no registered map in the outputs"
        name = FIGURES["registration"].format(entities=h.entities, hemi=h.hemi, space=h.space,
                                              Feature=feature[:1].upper() + feature[1:])
        cc = [reg.get(f"cc_{feature}_{k}") for k in ("before", "rigid", "after")]
        title = (f"{h.entities} hemi-{h.hemi}: {feature} vs {template}   (CC before {fmt(cc[0])}, "
                 f"rigid {fmt(cc[1])}, after {fmt(cc[2])})")
        path = registration_figure(fig_dir / name, h.hemi, feature, template_map, after, before, title=title,
                                   missing_before=missing_before, missing_after=missing_after)
        figs.append(("registration", f"{feature}: template, subject before (rigid pre-alignment) and after "
                                     "registration, and their differences to the template (z-scores)",
                     _rel(path, output_dir)))
    if native is not None and registered is not None:
        d = distortion(native, registered)
        name = FIGURES["distortion"].format(entities=h.entities, hemi=h.hemi, space=h.space)
        path = distortion_figure(fig_dir / name, h.hemi, registered, d["areal"], d["R"],
                                 title=f"{h.entities} hemi-{h.hemi}: distortion of the native mesh "
                                       f"({len(d['folded'])} folded triangles)")
        figs.append(("distortion", "areal distortion (log2 of the vertex-area ratio, registered / native) and "
                                   "shape distortion (log2 anisotropy), drawn in template space",
                     _rel(path, output_dir)))
    else:
        notes.append(f"distortion maps need the native sphere in the outputs ({native_sphere.name})")
    s_figs, s_notes = _surface_figures(h, output_dir, fig_dir, native, registered, surface_maps,
                                       None if d is None else d["areal"])
    return figs + s_figs, notes + s_notes


def _carry(template_map: tuple[tuple[np.ndarray, np.ndarray], np.ndarray], points: np.ndarray) -> np.ndarray:
    """The template's feature, z-scored over its non-zero vertices (NaN on the medial wall),
    interpolated (barycentric) at sphere ``points`` (N, 3): (N,)."""
    from ..sphere.resample import barycentric_weights
    from .figures import zscore

    (tv, tf), values = template_map
    return np.asarray(barycentric_weights((tv, tf), points) @ zscore(values), dtype=np.float64)


def _surface_figures(h: HemiOutputs, output_dir: Path, fig_dir: Path, native, registered, surface_maps: list,
                     areal: np.ndarray | None) -> tuple[list[tuple[str, str, str]], list[str]]:
    """Maps on the subject's inflated/midthickness surface (recorded in the metrics JSON as
    ``input_surface_path`` / ``input_surface_kind``): one figure per registration feature.
    "Before" carries the template through the native sphere as it is (no alignment, like the
    metrics' ``cc_before``), "after" through the registered sphere."""
    from .figures import surface_figure

    where = h.doc.get("input_surface_path")
    kind = str(h.doc.get("input_surface_kind"))
    kind = kind if kind in ("inflated", "midthickness") else "surface"  # also names the figure file
    if not where:
        return [], ["no inflated or midthickness surface among the inputs: maps drawn on the sphere only"]
    if not Path(where).is_file():
        return [], [f"the {kind} surface {where} (recorded in the metrics) is not readable here: "
                    "maps drawn on the sphere only"]
    if native is None:
        return [], [f"maps on the {kind} surface need the native sphere in the outputs"]
    try:
        surface = _read_surface(Path(where))
    except (ValueError, OSError) as exc:
        return [], [f"the {kind} surface {where} cannot be read ({' '.join(str(exc).split())}): "
                    "maps drawn on the sphere only"]
    if len(surface[0]) != len(native[0]):
        return [], [f"the {kind} surface has {len(surface[0])} vertices, the native sphere {len(native[0])}: "
                    "not drawn"]
    figs, notes = [], []
    for feature, template_map in surface_maps:
        nf = h.native_feature(feature)
        if not nf.is_file():
            notes.append(f"maps on the {kind} surface need {nf.name} in the outputs")
            continue
        values = _read_values(nf, len(native[0]))
        before = _carry(template_map, native[0])
        after = _carry(template_map, registered[0]) if registered is not None else None
        name = FIGURES["surface"].format(entities=h.entities, hemi=h.hemi, space=h.space, kind=kind,
                                         Feature=feature[:1].upper() + feature[1:])
        path = surface_figure(fig_dir / name, h.hemi, surface, values, before, after, areal, feature=feature,
                              kind=kind, title=f"{h.entities} hemi-{h.hemi}: {feature} on the subject's {kind} "
                                               f"surface ({Path(where).name})")
        figs.append((f"{kind} surface", f"{feature} on the subject's own {kind} surface: the subject's map, the "
                                        "template's map carried to the subject's mesh through the native sphere "
                                        "(before registration, no alignment) and through the registered sphere "
                                        "(after), the subject "
                                        "minus the registered template (z-scores), and the areal distortion",
                     _rel(path, output_dir)))
    return figs, notes


# --------------------------------------------------------------------------- checks and logs


def quality_warnings(h: HemiOutputs) -> list[str]:
    """Automatic flags from a hemisphere's metrics (low correlation, folds, strong distortion)."""
    reg = h.registration
    out = []
    for f in h.features:
        after, rigid = reg.get(f"cc_{f}_after"), reg.get(f"cc_{f}_rigid")
        if isinstance(after, (int, float)) and after < 0.5:
            out.append(f"{f}: correlation with the template after registration is low ({after:.3f})")
        if isinstance(after, (int, float)) and isinstance(rigid, (int, float)) and after < rigid - 0.01:
            out.append(f"{f}: the non-rigid stage lowered the correlation ({rigid:.3f} -> {after:.3f})")
    if (reg.get("n_folded") or 0) > 0:
        out.append(f"{reg['n_folded']} folded triangle(s) in the registered sphere")
    if (reg.get("warp_folded_triangles") or 0) > 0:
        out.append(f"the warp folds {reg['warp_folded_triangles']} template triangle(s)")
    if isinstance(reg.get("areal_p95_abs"), (int, float)) and reg["areal_p95_abs"] > 1.0:
        out.append(f"strong areal distortion (95th percentile |log2| = {reg['areal_p95_abs']:.2f})")
    if (reg.get("n_nonfinite") or 0) > 0:
        out.append(f"{int(reg['n_nonfinite'])} vertices with non-finite distortion")
    return out


def _innermost_error(text: str) -> str:
    best = ""
    for line in text.splitlines():
        head, sep, rest = line.strip().partition(": ")
        if sep and head.endswith(("Error", "Exception")) and head.replace(".", "").replace("_", "").isalnum():
            kind = head.rsplit(".", 1)[-1]
            if kind not in ("NodeExecutionError", "RuntimeError") or not best:
                best = f"{kind}: {rest}"
    return best or (text.strip().splitlines() or ["unknown error"])[-1]


def crash_reports(output_dir: Path, subject: str, session: str | None) -> list[tuple[str, str, str]]:
    """Nipype crash files of a subject (``logs/crash-*/crash-*.txt``): [(file, node, error)]."""
    wf = f"sub_{subject}" + (f"_ses_{session}" if session else "") + "_wf"
    out = []
    for path in sorted(Path(output_dir).glob("logs/crash-*/crash-*.txt")):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        first = text.splitlines()[0] if text else ""
        parts = first[len("Node: "):].strip().split(".") if first.startswith("Node: ") else []
        if session is None and not any(p == wf or p.startswith(f"sub_{subject}_ses_") for p in parts):
            continue
        if session is not None and wf not in parts:
            continue
        out.append((_rel(path, Path(output_dir)), ".".join(parts[-2:]), _innermost_error(text)))
    return out


def log_messages(output_dir: Path, subject: str) -> list[tuple[str, str]]:
    """WARNING/ERROR lines of ``logs/*.log`` files that name the subject: [(file, line)]."""
    out = []
    for path in sorted(Path(output_dir).glob("logs/*.log")):
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        named = f"sub-{subject}" in path.name
        for line in lines:
            if ("WARNING" in line or "ERROR" in line) and (named or f"sub-{subject}" in line):
                out.append((path.name, line.strip()))
    return out[:200]


# ------------------------------------------------------------------------------------ page


_TABLE_ROWS = [("CC before (no alignment)", "cc_{f}_before"), ("CC after rigid pre-alignment", "cc_{f}_rigid"),
               ("CC after registration", "cc_{f}_after"), ("rotation (degrees)", "rotation_deg"),
               ("areal distortion, mean |log2|", "areal_mean_abs"),
               ("areal distortion, 95th pct |log2|", "areal_p95_abs"),
               ("areal distortion, max |log2|", "areal_max_abs"), ("shape distortion, mean (log2)", "R_mean"),
               ("shape distortion, 95th pct", "R_p95"), ("folded triangles (registered sphere)", "n_folded"),
               ("folded triangles (warp, ico-6)", "warp_folded_triangles"), ("run time (s)", "seconds_total"),
               ("method", "method"), ("device", "device"), ("model", "model_argument")]


def _metrics_table(hemis: list[HemiOutputs]) -> str:
    header = ["metric"] + [esc(f"{h.entities} hemi-{h.hemi}") for h in hemis]
    features = list(dict.fromkeys(f for h in hemis for f in h.features))
    rows = []
    for label, key in _TABLE_ROWS:
        keys = [key.format(f=f) for f in features] if "{f}" in key else [key]
        for k in keys:
            name = label + (f" ({k.split('_')[1]})" if "{f}" in key and len(features) > 1 else "")
            rows.append([esc(name)] + [esc(fmt(h.registration.get(k))) for h in hemis])
    return table(header, rows)


def _provenance(h: HemiOutputs) -> str:
    keys = ["input_source", "input_sphere", "input_sphere_reg", "input_features", "sulc_sign", "sign_convention",
            "template", "output_density", "output_density_source", "model", "method", "software"]
    rows = [[esc(k), esc(json.dumps(h.doc.get(k)) if isinstance(h.doc.get(k), (dict, list))
                         else fmt(h.doc.get(k)))] for k in keys if k in h.doc]
    return table(["field", "value"], rows, left=2)


def build_participant_report(output_dir: str | Path, subject: str, session: str | None = None) -> Path:
    """Write the HTML report of one subject (all its sessions) or of one subject/session.

    Parameters
    ----------
    output_dir : the derivatives folder of the participant level.
    subject : label, with or without ``sub-``.
    session : None: every session of the subject, written to ``OUTPUT_DIR/sub-X.html``;
        a label: that session only, written to ``OUTPUT_DIR/sub-X_ses-Y.html``.

    Returns
    -------
    The path of the HTML file. Figures are written to ``OUTPUT_DIR/sub-X/figures/`` and
    linked relatively. A subject without outputs still gets a page listing its errors.
    """
    t0 = time.perf_counter()
    output_dir = Path(output_dir).absolute()
    subject = _label(subject, "sub") or ""
    session = _label(session, "ses")
    hemis = find_hemispheres(output_dir, subject, session)
    fig_dir = _subject_dir(output_dir, subject) / "figures"
    title = f"sub-{subject}" + (f" ses-{session}" if session else "")
    body: list[str] = [f"<h1>geomorph-bids report: {esc(title)}</h1>"]
    nav = [("summary", "Summary")]

    # summary
    sessions = sorted({h.session for h in hemis if h.session})
    first = hemis[0].doc if hemis else {}
    summary_rows = [["subject", esc(subject)], ["sessions", esc(", ".join(sessions) or "n/a")],
                    ["hemispheres", esc(", ".join(f"{h.entities} hemi-{h.hemi}" for h in hemis) or "none")],
                    ["template", esc(first.get("template", "n/a"))],
                    ["output density", esc(first.get("output_density", "n/a"))],
                    ["model / method", esc(f"{first.get('model', 'n/a')} / {first.get('method', 'n/a')}")],
                    ["input", esc(first.get("input_source", "n/a"))]]
    body.append('<section id="summary"><h2>Summary</h2>' + table(["", ""], summary_rows, left=2) + "</section>")

    # per hemisphere
    all_notes: list[tuple[str, str]] = []
    warns: list[tuple[str, str]] = []
    for h in hemis:
        anchor = f"{h.entities}_hemi-{h.hemi}"
        nav.append((anchor, f"{h.session + ' ' if h.session else ''}hemi-{h.hemi}"))
        try:
            figs, notes = _hemi_figures(h, output_dir, fig_dir)
        except Exception as exc:  # a broken output must not cost the rest of the report
            figs, notes = [], [f"figures failed: {type(exc).__name__}: {' '.join(str(exc).split())}"]
        all_notes += [(anchor, n) for n in notes]
        warns += [(anchor, w) for w in quality_warnings(h)]
        parts = [f'<section id="{esc(anchor)}"><h2>{esc(h.entities)} hemi-{esc(h.hemi)} '
                 f'&rarr; {esc(h.doc.get("template", h.space))}</h2>']
        for kind, caption, rel in figs:
            parts.append(f'<h3>{esc(kind.capitalize())}</h3><p class="note">{esc(caption)}</p>'
                         f'<img class="fig" src="{esc(rel)}" alt="{esc(kind)} {esc(anchor)}">')
        if notes:
            parts.append('<ul class="note">' + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
        parts.append(f"<details><summary>provenance</summary>{_provenance(h)}</details></section>")
        body.append("".join(parts))

    if hemis:
        nav.append(("metrics", "Metrics"))
        body.append('<section id="metrics"><h2>Metrics</h2><p class="note">Pearson correlation (CC) of each '
                    "registration feature with the template on its ico-6 grid; distortion of the registered "
                    "native mesh relative to the native sphere, log2 units as <code>wb_command "
                    "-surface-distortion</code>.</p>" + _metrics_table(hemis) + "</section>")

    # errors and warnings
    nav.append(("errors", "Errors and warnings"))
    crashes = crash_reports(output_dir, subject, session)
    logs = log_messages(output_dir, subject)
    found_hemis = {(h.session, h.hemi) for h in hemis}
    missing = [f"no outputs for {('ses-' + s + ' ') if s else ''}hemi-{x} (failed or not requested)"
               for s in (sessions or [session]) for x in ("L", "R") if (s, x) not in found_hemis]
    items = ([f'<li class="err">{esc(n)} &mdash; {esc(e)} <span class="note">({esc(f)})</span></li>'
              for f, n, e in crashes] +
             [f'<li class="err">{esc(m)}</li>' for m in missing] +
             [f'<li class="warn">{esc(a)}: {esc(w)}</li>' for a, w in warns] +
             [f'<li class="warn">{esc(f)}: {esc(line)}</li>' for f, line in logs] +
             [f'<li class="note">{esc(a)}: {esc(n)}</li>' for a, n in all_notes])
    body.append('<section id="errors"><h2>Errors and warnings</h2>' +
                (f"<ul>{''.join(items)}</ul>" if items else '<p class="ok">No errors or warnings.</p>') +
                "</section>")

    # about: software, citation
    nav.append(("about", "About"))
    desc_path = output_dir / "dataset_description.json"
    generated = []
    if desc_path.is_file():
        try:
            generated = json.loads(desc_path.read_text()).get("GeneratedBy", [])
        except (OSError, json.JSONDecodeError):
            generated = []
    gen_rows = [[esc(g.get("Name", "")), esc(g.get("Version", "")),
                 esc((g.get("Container") or {}).get("Tag", ""))] for g in generated if isinstance(g, dict)]
    versions = software_versions()
    about = ['<section id="about"><h2>About</h2>']
    if gen_rows:
        about.append("<h3>Outputs generated by</h3>" + table(["name", "version", "container"], gen_rows, left=3))
    software = sorted({str(h.doc.get("software")) for h in hemis if h.doc.get("software")})
    if software:
        about.append(f"<p>Registrations: {esc(', '.join(software))}.</p>")
    about.append("<h3>Report built with</h3>" + table(["package", "version"],
                                                      [[esc(k), esc(v)] for k, v in versions.items()], left=2))
    about.append(f'<p class="note">Report built {esc(time.strftime("%Y-%m-%d %H:%M:%S %Z"))} in '
                 f"{time.perf_counter() - t0:.1f} s.</p></section>")
    body.append("".join(about))
    nav.append(("boilerplate", "Methods"))
    citation = output_dir / "logs" / "CITATION.md"
    text = citation.read_text() if citation.is_file() else ""
    body.append('<section id="boilerplate"><h2>Methods and citation</h2>' +
                (markdown(text) if text else '<p class="note">logs/CITATION.md not found in the outputs.</p>') +
                "</section>")

    out = output_dir / report_name(subject, session)
    return atomic_write_text(out, page(f"geomorph-bids: {title}", nav, "\n".join(body)))

"""Quality gates of a finished registration, from its metrics alone (no files, no Nipype).

The one place the thresholds live and the one function that judges a hemisphere
(:func:`assess`): ``register()``, the participant level (its ``metrics`` node), batch mode and
the group level all call it with the :class:`QualityThresholds` decided at their boundary
(``--min-cc``, ``--max-distortion``, ``--max-folds``, ``--identity-margin``), and record the
same :class:`QualityVerdict`. A hemisphere that fails a gate is still written; the BIDS-App
lists it as ``FLAGGED sub-X hemi-L: <reasons>``, marks it in the group table, and exits with
:data:`~geomorph_bids.cli.exit_codes.EXIT_FLAGGED`.

Gates (each reason names the gate and the numbers):

* **identity**: an input file declares the other hemisphere (GIFTI ``AnatomicalStructurePrimary``,
  ``lh.``/``rh.``, ``hemi-``; ``label_conflicts`` in the metrics), or the features fit the
  mirror image of the template better than the template itself by more than
  ``identity_margin`` (``identity_cc_mirrored - identity_cc_own``); when the sign-flipped
  features fit the template far better than both (``identity_cc_negated``, measured then and
  when the own fit is poor: :data:`~geomorph_bids.engine.prealign.SIGN_CHECK_BELOW`),
  the reason names the sign instead (``sign:``: an HCP-convention sulc given as FreeSurfer's, or,
  when ``sulc_sign`` is ``"hcp"``, a FreeSurfer-convention sulc read as HCP's and negated);
* **correlation**: the first registration feature's (sulc's) correlation with the template
  after registration below ``min_cc_after``, or another one's (curv, myelin) below
  ``min_cc_other``: an individual's curvature is much sharper than a group average's, so a good
  registration of a real brain correlates only ~0.4 on curv (0.85-0.97 on sulc);
* **distortion**: 95th percentile of |log2 areal distortion| above ``max_areal_p95``; more
  than ``max_folds`` folded triangles in the registered sphere; any non-finite distortion.

:func:`quality_warnings` adds the advisory notes the participant report shows besides the
gates (a non-rigid stage that lowered the correlation, folds of the warp itself, and
:func:`few_folds`: a sulc too smooth to register reliably, which the participant level and
geomorph-register also print as a ``note:`` line; a note changes no verdict and no exit code).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["QualityThresholds", "THRESHOLD_RANGES", "DEFAULT_THRESHOLDS", "FEW_FOLDS_BELOW",
           "QualityVerdict", "assess", "few_folds", "quality_warnings", "same_inputs", "same_inputs_text"]


def _real(value: Any) -> bool:
    """A real number of any kind (Python's, NumPy's), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


#: the range each float threshold of :class:`QualityThresholds` must lie in (both ends taken);
#: the command-line options that set them check the same ranges
THRESHOLD_RANGES: dict[str, tuple[float, float]] = {
    "min_cc_after": (-1.0, 1.0), "min_cc_other": (-1.0, 1.0), "max_areal_p95": (0.0, 100.0),
    "identity_margin": (-2.0, 2.0), "max_cc_drop": (-2.0, 2.0)}


@dataclass(frozen=True)
class QualityThresholds:
    """When a registration is flagged (the gates) or noted in the report (advisory).

    Attributes
    ----------
    min_cc_after : gate: the first registration feature's (sulc's) correlation with the template
        after registration below this (real brains: 0.85-0.97; swapped or structureless maps:
        0.2-0.7).
    min_cc_other : gate: the same for the other registration features (curv, myelin; a real
        brain's curv: ~0.4 against a group-average template; a structureless map: ~0).
    max_areal_p95 : gate: 95th percentile of |log2 areal distortion| above this (normal: 0.2-0.4).
    max_folds : gate: more folded triangles than this in the registered sphere (normal: 0).
    identity_margin : gate: the features fit the mirrored template better than the template
        itself by more than this (normal: -0.4 to -0.6; swapped: +0.4).
    max_cc_drop : advisory: the non-rigid stage lowering the correlation by more than this
        (from the rigid alignment's).
    """

    min_cc_after: float = 0.5
    min_cc_other: float = 0.2
    max_areal_p95: float = 1.0
    max_folds: int = 0
    identity_margin: float = 0.0
    max_cc_drop: float = 0.01

    def __post_init__(self) -> None:
        """Refuse a threshold that would judge nothing (ValueError naming it, one line): NaN flags
        every hemisphere (no correlation is >= NaN), a correlation floor above 1 too; ints and
        floats of any kind (NumPy's) are stored as Python's."""
        for name, (low, high) in THRESHOLD_RANGES.items():
            value = getattr(self, name)
            if not _real(value) or not math.isfinite(value) or not low <= value <= high:
                raise ValueError(f"QualityThresholds {name} must be a finite number from {low:g} to {high:g}, "
                                 f"got {value!r}")
            object.__setattr__(self, name, float(value))
        folds = self.max_folds
        if not _real(folds) or not math.isfinite(folds) or int(folds) != folds or folds < 0:
            raise ValueError(f"QualityThresholds max_folds must be a whole number >= 0, got {folds!r}")
        object.__setattr__(self, "max_folds", int(folds))

    def to_dict(self) -> dict[str, float]:
        """JSON-able form (recorded beside each verdict)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any] | None) -> "QualityThresholds":
        """Inverse of :meth:`to_dict`; unknown keys are ignored, missing ones and those the
        constructor refuses (NaN, out of range: a recorded file edited by hand) take the defaults,
        as all do when ``doc`` is no mapping (a string where the object was)."""
        names = {f.name for f in fields(cls)}
        kept = {}
        for k, v in (doc if isinstance(doc, Mapping) else {}).items():
            if k in names and _real(v):
                try:
                    cls(**{k: v})
                except ValueError:
                    continue
                kept[k] = v
        return cls(**kept)


DEFAULT_THRESHOLDS = QualityThresholds()


@dataclass(frozen=True)
class QualityVerdict:
    """The gates a hemisphere failed (``reasons``, one line each; empty: it passed), and the
    thresholds it was judged with."""

    reasons: tuple[str, ...] = ()
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS

    @property
    def flagged(self) -> bool:
        return bool(self.reasons)

    def line(self) -> str:
        """The reasons on one line (``"; "``-separated), or ``""``."""
        return "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        """``{"flagged": bool, "reasons": [...], "thresholds": {...}}`` (the metrics JSON's
        ``quality`` entry)."""
        return {"flagged": self.flagged, "reasons": list(self.reasons), "thresholds": self.thresholds.to_dict()}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any] | None) -> "QualityVerdict":
        doc = doc or {}
        return cls(tuple(str(r) for r in doc.get("reasons") or ()), QualityThresholds.from_dict(doc.get("thresholds")))


#: how much better a sign-flipped map must fit its own template than the map as given (and than
#: the mirrored template) to be called sign-flipped rather than the other hemisphere: flipped FreeSurfer
#: sulc fits 0.9+ once negated, against 0.4-0.5 as given
_SIGN_MARGIN = 0.2


#: a mirrored fit less than this better than the own fit is no evidence of the other hemisphere alone:
#: swapped hemispheres fitted their mirror 0.35-0.45 better (example, fsaverage5, fsaverage 164k; 0.90-0.95
#: vs 0.47-0.57), maps that are no sulc fit both alike (thickness 0.41-0.44 vs 0.36-0.39, permuted 0.32 vs
#: 0.30): the identity reason then says so too (the verdict is the same)
_BARELY = 0.1
#: by how much the sign-flipped features must fit the template better than the mirrored template for the
#: identity reason to name the sign as well: a smooth map of the other sign (an infant's) fits all three
#: weakly (negated 0.43-0.62, mirrored 0.36-0.43, own 0.32-0.34), below the sign gate's margin
_SIGN_HINT = 0.05


#: the identity check's coarse rigid fit (``identity_cc_own``) of a brain's sulc, even a noisy or finely folded one,
#: is at least this: the example's 0.93, with white noise 3 times its SD 0.85 (registered at CC 0.47, flagged, its
#: cortex 0.7-1.5 degrees from the clean map's registration), FreeSurfer's fsaverage with noise or added fine folds
#: 0.89-0.91 (CC 0.41-0.47, 0.4-0.7 degree); maps that are no sulc fit far less (curv 0.64, thickness 0.36,
#: permuted sulc 0.30, the other hemisphere's 0.51). Above it a correlation flag says so, a hint, not a verdict
_COARSE_SULC = 0.8


#: a sulc whose coarse fit to the template (``identity_cc_own``) is below this has too few folds to register
#: reliably (:func:`few_folds`; the same floor as :data:`_COARSE_SULC`): smoothed by neighbour averaging, the
#: example's sulc (10k) fits at 0.83-0.87 (80 passes; 2.6-3.3 degrees, median, from the unsmoothed map's
#: registration), 0.72-0.77 (160; 3.6-4.3 degrees), 0.56-0.62 (320; 4.0-5.4 degrees, CC 0.53-0.55, `ok`);
#: ordinary maps 0.91-0.96 (the examples, both layouts; fsaverage5; FreeSurfer's fsaverage 164k), 0.99-1.0 (HCP's
#: S1200 32k, sMRIPrep's refsulc 164k), with white noise of up to 3 times their SD 0.82-0.92
FEW_FOLDS_BELOW = _COARSE_SULC


def _beyond(value: float, limit: float, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals, more (up to 6) while it would print as ``limit`` does:
    a p95 of 1.0011 over a maximum of 1 read "1.00 (maximum 1)", a pass."""
    text = f"{value:.{digits}f}"
    while digits < 6 and float(text) == float(f"{limit:.{digits}f}"):
        digits += 1
        text = f"{value:.{digits}f}"
    return text


def _gate_numbers(registration: Mapping[str, Any]) -> Mapping[str, Any]:
    """``registration`` with each whole number too large for a float (a hand-edited file: JSON's
    integers have no bound) read as +-infinity, which fails its gate as ``Infinity`` does, instead
    of the OverflowError of formatting it, which ended a group level; a string of label conflicts as one."""
    def huge(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 1024

    conflicts = registration.get("label_conflicts")
    if not isinstance(conflicts, str) and not any(huge(v) for v in registration.values()):
        return registration
    out = {k: (math.inf if v > 0 else -math.inf) if huge(v) else v for k, v in registration.items()}
    if isinstance(conflicts, str):
        out["label_conflicts"] = [conflicts]
    return out


def assess(registration: Mapping[str, Any], features: Sequence[str],
           thresholds: QualityThresholds = DEFAULT_THRESHOLDS) -> QualityVerdict:
    """Judge one hemisphere from its registration metrics (the ``registration`` part of its
    metrics JSON, or ``Registration.metrics``; ``features``: its registration features).

    Missing metrics pass (an older metrics file is judged on what it has)."""
    reg, t = _gate_numbers(registration), thresholds
    out = []
    for conflict in reg.get("label_conflicts") or ():
        out.append(f"identity: {conflict}")
    own, mirrored = reg.get("identity_cc_own"), reg.get("identity_cc_mirrored")
    negated = reg.get("identity_cc_negated")
    # a sign-flipped map fits the template and its mirror image alike (~0.4), so it is judged
    # whichever of the two fits better (before: only when the mirrored one did, by chance)
    flipped = _real(own) and _real(negated) and negated > max(own, mirrored if _real(mirrored) else own) + _SIGN_MARGIN
    if flipped or (_real(own) and _real(mirrored) and mirrored - own > t.identity_margin):
        if flipped:  # read with --sulc-sign hcp (negated), advising HCP's sign would repeat the cause
            out.append(f"sign: the features fit the template far better with their sign flipped (CC {negated:.2f} "
                       f"vs {own:.2f}): " + (
                           "the sulc was read in HCP's convention and negated, but it is in FreeSurfer's: leave out "
                           "--sulc-sign hcp (geomorph-register); an HCP pipelines file (geomorph-bids) must hold "
                           "HCP's sign: was it converted from FreeSurfer's lh.sulc?" if reg.get("sulc_sign") == "hcp"
                           else "sulc in HCP's convention (-FreeSurfer's)? FreeSurfer's sign is expected "
                           "(geomorph-register --sulc-sign hcp; negate it for register(); geomorph-bids: negate "
                           "the file, wb_command -metric-math '-x' NEGATED.shape.gii -var x FILE.shape.gii, and "
                           "register that)"))
        else:
            barely = mirrored - own < _BARELY
            out.append(f"identity: the features fit the mirrored template better than the template "
                       f"(CC {mirrored:.2f} vs {own:.2f}): the other hemisphere, or swapped lh/rh files?"
                       + (" Or, fitting both alike, not this hemisphere's sulc at all (thickness, values in another "
                          "vertex order?)" if barely else "")
                       + (f" Or the other sign: negated, the features fit the template at CC {negated:.2f} (a smooth "
                          "map, an infant's, fits every way weakly)"
                          if _real(negated) and negated > mirrored + _SIGN_HINT else ""))
    # a sphere.reg of another subject or mesh gives a wrong rotation whatever the features say
    via_reg = (" (the rotation came from the sphere.reg: is it this sphere's? without it the features "
               "decide the rotation)") if reg.get("rotation_method") == "correspondence" else ""
    # a noisy or finely folded sulc (a low-quality scan, polymicrogyria) correlates little at the template's scale
    # while its coarse folds fit it as a brain's do: said, so that it is not taken for a wrong map
    coarse = (f"; its coarse pattern fits the template at {own:.2f}, as a brain's sulc does (a map that is no sulc: "
              "below 0.7): a noisy or finely folded map (a low-quality scan, polymicrogyria?) registered from its "
              "coarse folds; if the report's overlay looks right, lower --min-cc"
              if _real(own) and own >= _COARSE_SULC and not via_reg else "")
    for i, f in enumerate(features):  # "not x >= floor": NaN fails its gate (comparisons with NaN are False)
        after, floor = reg.get(f"cc_{f}_after"), t.min_cc_after if i == 0 else t.min_cc_other
        if _real(after) and not after >= floor:  # the hint where a clean brain's map never is (0.85-0.97)
            out.append(f"correlation: {f} correlates {_beyond(after, floor, 3)} with the template after registration "
                       f"(minimum {floor:g}){via_reg}{coarse if i == 0 and after < 0.7 else ''}")
    p95 = reg.get("areal_p95_abs")
    if _real(p95) and not p95 <= t.max_areal_p95:
        out.append(f"distortion: 95th percentile |log2 areal distortion| {_beyond(p95, t.max_areal_p95)} "
                   f"(maximum {t.max_areal_p95:g})")
    folds = reg.get("n_folded")
    if _real(folds) and not folds <= t.max_folds:
        out.append(f"distortion: {folds:.0f} folded triangle(s) in the registered sphere (maximum {t.max_folds})")
    if _real(reg.get("n_nonfinite")) and not reg["n_nonfinite"] == 0:
        out.append(f"distortion: {reg['n_nonfinite']:.0f} vertices with non-finite distortion")
    return QualityVerdict(tuple(out), thresholds)


def few_folds(registration: Mapping[str, Any], features: Sequence[str],
              thresholds: QualityThresholds = DEFAULT_THRESHOLDS) -> str:
    """The advisory note for a sulc too smooth to register reliably (an infant's, an over-smoothed map),
    or ``""``: its coarse rigid fit to the template (``identity_cc_own``) below :data:`FEW_FOLDS_BELOW`
    while no identity or sign gate explains it (sulc the first registration feature; a metrics file
    without the fit: ``""``). Such a map registers at a CC that passes while several degrees off."""
    reg = _gate_numbers(registration)
    own = reg.get("identity_cc_own")
    if not features or features[0] != "sulc" or not _real(own) or not own < FEW_FOLDS_BELOW:
        return ""
    if any(r.startswith(("identity:", "sign:")) for r in assess(reg, features, thresholds).reasons):
        return ""
    return (f"few folds: sulc's coarse pattern fits the template at {_beyond(own, FEW_FOLDS_BELOW)} (below "
            f"{FEW_FOLDS_BELOW:g}; a brain's sulc, even a noisy one: 0.82 or more): a map this smooth (an infant's, "
            "or smoothed) registers loosely, several degrees off (4-5 degrees at 0.56-0.62 on the example) even "
            "where its CC passes; register such a cohort to a template of its own age (geomorph-bids BIDS OUT group "
            "--build-template N, then --template OUT/tpl-LABEL) and check the report's overlay")


def quality_warnings(registration: Mapping[str, Any], features: Sequence[str],
                     thresholds: QualityThresholds = DEFAULT_THRESHOLDS) -> list[str]:
    """What the participant report lists for one hemisphere: the gates it failed
    (:func:`assess`), then advisory notes (a non-rigid stage that lowered the correlation by
    more than ``max_cc_drop``; folds of the warp itself; :func:`few_folds`)."""
    reg = _gate_numbers(registration)
    out = list(assess(reg, features, thresholds).reasons)
    few = few_folds(reg, features, thresholds)
    if few:
        out.append(few)
    for f in features:
        after, rigid = reg.get(f"cc_{f}_after"), reg.get(f"cc_{f}_rigid")
        if _real(after) and _real(rigid) and after < rigid - thresholds.max_cc_drop:
            out.append(f"{f}: the non-rigid stage lowered the correlation ({rigid:.3f} -> {after:.3f})")
    if (reg.get("warp_folded_triangles") or 0) > 0:
        out.append(f"the warp folds {reg['warp_folded_triangles']} template triangle(s)")
    if reg.get("reg_sphere_set_aside"):  # engine.prealign: a sphere.reg that is not this sphere's
        out.append(str(reg["reg_sphere_set_aside"]))
    return out


def _input_fingerprint(template: Any, hemi: str, registration: Mapping[str, Any]) -> tuple | None:
    """What a registration record holds that its input files alone decide (with the template): the
    correlations with the template before any warp (``cc_*_before``, ``cc_*_rigid``, ``identity_cc_*``) and
    the rotation, each a float64 of 16 digits; None where a record lacks them (nothing to compare)."""
    numbers = {k: v for k, v in registration.items()
               if (k.startswith("cc_") and k.endswith(("_before", "_rigid"))) or k.startswith("identity_cc_")
               or k == "rotation_deg"}
    if not any(k.endswith("_before") for k in numbers) or "rotation_deg" not in numbers:
        return None
    if not all(_real(v) and math.isfinite(v) for v in numbers.values()):
        return None
    return (str(template), hemi, tuple(sorted((k, float(v)) for k, v in numbers.items())))


def same_inputs(records: Iterable[tuple[str, str, Mapping[str, Any]]]) -> list[tuple[str, tuple[str, ...], str]]:
    """Hemispheres registered from the same input files under different names: a subject folder
    linked to, or copied from, another's. Registered twice, they are two participants of the group
    table, and the same brain weighs twice in a population template; nothing else tells.

    ``records``: (name, e.g. ``sub-05`` or ``sub-01_ses-2``; hemi; registration record), in the order
    the names are listed (the first of a set is the one the others are said to copy). Two records
    are the same inputs when their template, hemisphere and every number the inputs alone decide
    (:func:`_input_fingerprint`: correlations with the template before any warp, the rotation) agree
    to the last digit; different brains, or one brain's two scans, never do (16-digit correlations). A
    participant's own sessions are never said to copy each other (their anatomy may be one, copied per session).

    Returns (the first name, the names that repeat it, hemi) per such set, in the order of the records.
    """
    seen: dict[tuple, tuple[str, list[str], str]] = {}
    for name, hemi, registration in records:
        key = _input_fingerprint(registration.get("template"), hemi, registration)
        if key is None:
            continue
        first = seen.setdefault(key, (name, [], hemi))
        # a participant's sessions may share one anatomy (a copy per session folder): not another participant
        if first[0].split("_")[0] != name.split("_")[0]:
            first[1].append(name)
    return [(first, tuple(copies), hemi) for first, copies, hemi in seen.values() if copies]


#: the most copies :func:`same_inputs_text` names (a cohort of one subject copied under 5,000 labels: one line)
_SAME_LISTED = 10


def same_inputs_text(sets: Sequence[tuple[str, tuple[str, ...], str]]) -> str:
    """:func:`same_inputs`' sets on one line, a name's hemispheres together, and what they are:
    ``sub-05 as sub-01 (hemi-L, hemi-R); sub-07 as sub-03 (hemi-L): registered twice from the same input
    files (...): a subject folder linked to or copied from another?``."""
    pairs: dict[tuple[str, str], list[str]] = {}
    for first, copies, hemi in sets:
        for copy in copies:
            hemis = pairs.setdefault((copy, first), [])
            if f"hemi-{hemi}" not in hemis:
                hemis.append(f"hemi-{hemi}")
    named = [f"{copy} as {first} ({', '.join(hemis)})" for (copy, first), hemis in pairs.items()]
    shown = "; ".join(named[:_SAME_LISTED]) + (f"; ... ({len(named)} in all)" if len(named) > _SAME_LISTED else "")
    return (shown
            + ": registered twice from the same input files (their registrations agree to the last digit: "
            "correlations with the template before the warp, rotation): a subject folder linked to or copied from "
            "another?")

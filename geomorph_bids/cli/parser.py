"""Argument parser of ``geomorph-bids`` (BIDS-Apps conventions, fMRIPrep's option names)."""

from __future__ import annotations

import argparse
import math
import os
import re
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from .. import __version__
from ..engine.model_choice import REFINE_CHOICES
from ..io.discover import FEATURES, normalise_label
from ..quality import THRESHOLD_RANGES
from .machine import usable_cpus
from .messages import one_line, say

__all__ = ["ExtendAction", "OtherCommandsOption", "Parser", "build_parser", "parse_derivatives", "GROUP_ONLY",
           "refuse_options_that_do_not_apply", "device"]


def parse_derivatives(specs: list[str] | None) -> dict[str, Path] | None:
    """``["smriprep=/data/deriv/smriprep", "/other"]`` -> ``{"smriprep": ..., "other": ...}``. One
    name for two folders (``/site1/smriprep /site2/smriprep``) is refused: the dict kept the last,
    and the other folder's subjects were left out in silence; one folder given twice counts once."""
    if not specs:
        return None
    out: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        # a path holding '=' given without a name (/data/run=2/smriprep) is a PATH, not NAME=PATH: its "name"
        # would hold a "/" (or, relative, the whole of it exists where the part after "=" does not)
        if sep and ("/" in name or os.sep in name or (os.path.lexists(spec) and not os.path.lexists(path))):
            sep = ""
        if not sep:
            name, path = Path(spec).name, spec
        if not name or not path:
            raise argparse.ArgumentTypeError(f"--derivatives expects NAME=PATH or PATH, got {spec!r}")
        folder = Path(path).absolute()
        if name in out and out[name] != folder:
            raise argparse.ArgumentTypeError(
                f"--derivatives names two folders {name!r} ({out[name]}, {folder}): give each a name of its "
                f"own, e.g. --derivatives {name}1={out[name]} {name}2={folder}")
        out[name] = folder
    return out


class Parser(argparse.ArgumentParser):
    """The commands' argument parser: an empty argument (``""``, or blanks) is a usage error. It is
    what an unset shell variable gives (``geomorph-bids "$BIDS" "$OUT" participant``), and each
    option read it another way: an empty path as the current folder (outputs written there, or a
    message about a folder nobody named), ``--model ""`` / ``--device ""`` / ``--template-dir ""``
    as their defaults, in silence. So is a path argument that starts with a ``~`` the shell did not
    expand (quoted, or from a config file) and that does not exist: the outputs went into a folder
    named ``~`` in the current one; and a path that starts with ``-`` (``-ds``), which argparse took
    for an unknown option and answered with "the following arguments are required: output_dir"."""

    #: a negative number as argparse's own pattern misses it (``-1e-30``, ``-1e309``, ``-inf``, ``-nan``): read as
    #: an option, ``--lr -1e-30`` said "expected one argument", not what is wrong with the value
    _NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = self._NEGATIVE_NUMBER

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
                         ) -> tuple[argparse.Namespace, list[str]]:  # type: ignore[override]
        import sys

        argv = list(sys.argv[1:] if args is None else args)
        for i, token in enumerate(argv):
            option, sep, value = token.partition("=") if token.startswith("--") else (token, "", token)
            if token.strip() and not (sep and not value.strip()):
                continue
            if sep or (i and argv[i - 1].startswith("-") and not _is_number(argv[i - 1])):
                where, default = f"argument {option if sep else argv[i - 1]}", ", or leave the option out for its default"
            else:
                where, default = f"argument {i + 1} of the command line", ""
            self.error(f"{where} is empty ({token!r}): an unset shell variable? Give a value{default} "
                       "('.' is the current folder)")
        unknown = []  # words argparse takes for options it does not know: a path that starts with '-'?
        for token in argv:
            if token == "--":
                break
            if (token.startswith("-") and len(token) > 1 and not _is_number(token)
                    and token.partition("=")[0] not in self._option_string_actions
                    and not self._get_option_tuples(token)):
                if os.path.lexists(token):
                    self.error(f"{token!r} starts with '-', so it reads as an option, but it names a path here: give "
                               f"it as {os.path.join('.', token)!r}")
                unknown.append(token)
        self._unknown_words = unknown
        self._argv = argv  # for error(): what a list option took
        namespace, extras = super().parse_known_args(argv, namespace)
        self._check_labels(namespace)
        for line in self._given_twice(argv):
            say(f"{self.prog}: warning: {line}", file=sys.stderr)
        names = {a.dest: max(a.option_strings, key=len) if a.option_strings else a.dest for a in self._actions}
        for name, value in vars(namespace).items():
            for path in value if isinstance(value, list) else [value]:
                if isinstance(path, Path) and path.parts and path.parts[0].startswith("~") and not path.exists():
                    # quoted ("~/out", or from a config file): a folder named "~" was made in the current one
                    try:
                        example = f" (e.g. {str(path.expanduser())!r})"
                    except RuntimeError:  # ~user of no user
                        example = ""
                    self.error(f"{names.get(name, name)} {str(path)!r} starts with '~', which only an unquoted shell "
                               f"word expands: give the full path{example}")
        return namespace, extras

    #: list options whose values are BIDS labels: dest -> the entity's prefix
    _LABELS = {"participant_label": "sub", "session_label": "ses"}

    def _check_labels(self, namespace: argparse.Namespace) -> None:
        """A ``--participant-label`` / ``--session-label`` value that is no BIDS label (``-``, ``sub-sub-01``,
        ``01,02``) is the option's usage error, before any folder is looked at (a label is kept as typed:
        ``sub-01``, `` 01 `` are read as ``01`` where the labels are used). Checked once argparse has read the
        whole line, so that the positional arguments a list option took are named first (:meth:`error`)."""
        for action in self._actions:
            prefix = self._LABELS.get(action.dest)
            for value in (getattr(namespace, action.dest, None) or []) if prefix else []:
                try:
                    normalise_label(value, prefix)
                except ValueError as exc:
                    self.error(f"argument {'/'.join(action.option_strings)}: {exc}")

    def _given_twice(self, argv: list[str]) -> list[str]:
        """One line per option of one value given more than once with different values (``--template fsLR
        ... --template fsaverage``, ``--batch-size 1 --batch-size 2``: argparse keeps the last in silence,
        and a script that builds its command in pieces had no word of which one ran): ``--batch-size given
        2 times (1, 2): using 2``. The same value repeated is not named; list options keep every value
        (:class:`ExtendAction`)."""
        seen: dict[str, list[tuple[str, str]]] = {}  # by dest: --mem and --mem-gb are one setting
        for i, token in enumerate(argv):
            if token == "--":
                break
            if not token.startswith("--"):
                continue
            option, sep, value = token.partition("=")
            action = self._option_string_actions.get(option)
            if action is None:
                tuples = self._get_option_tuples(option)
                action = tuples[0][0] if len(tuples) == 1 else None
            if action is None or action.nargs is not None or type(action) is not argparse._StoreAction:
                continue
            if not sep:
                if i + 1 >= len(argv):
                    continue
                value = argv[i + 1]
            seen.setdefault(action.dest, []).append((action.option_strings[0], value))
        lines = []
        for dest, given in seen.items():
            if len({self._typed(dest, value) for _, value in given}) < 2:  # --hemi L --hemi lh: one value
                continue
            options = {option for option, _ in given}

            def word(option: str, value: str) -> str:
                shown = value if len(value) <= _SHOWN and value.isprintable() else _shown(value)
                return shown if len(options) == 1 else f"{option} {shown}"

            first = given[0][0] if len(options) == 1 else " / ".join(sorted(options))
            lines.append(f"{first} given {len(given)} times ({', '.join(word(*g) for g in given)}): using "
                         f"{word(*given[-1])}")
        return lines

    def _typed(self, dest: str, value: str) -> str:
        """``value`` as the option of ``dest`` reads it (its ``type``), as text; as given when it cannot be read."""
        action = next(a for a in self._actions if a.dest == dest)
        try:
            return repr(action.type(value)) if callable(action.type) else value
        except Exception:  # noqa: BLE001 - argparse itself reports a value its type refuses
            return value

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        """argparse's usage error (exit 2), saying where the positional arguments went when a list
        option before them took them as its values (``geomorph-bids --participant-label 01 B O
        participant``: "the following arguments are required: bids_dir, output_dir, analysis_level",
        though all three were given), or, when a word was taken for an option no command has, that a path
        starting with '-' is given as ./-name (a path that does not exist yet, the output folder, left
        only "the following arguments are required: analysis_level")."""
        words = getattr(self, "_unknown_words", [])
        if words and message.startswith("the following arguments are required"):
            message += (f" ({', '.join(map(repr, words))} read as an option this command does not have: a path that "
                        f"starts with '-' is given as {os.path.join('.', words[0])!r})")
        # one_line: a control character of a word argparse quotes unescaped ('unrecognized arguments: x<ESC>[31m')
        # is shown as its escape, as on every other error line
        super().error(one_line(_shorten(message + self._positionals_taken(message), getattr(self, "_argv", []))))

    def _positionals_taken(self, message: str) -> str:
        """`` (--participant-label took 01 B O participant as its values: ...)`` when ``message`` says
        positional arguments are missing and a list option (``nargs="+"``) took more than one value;
        else empty."""
        positional = [a.dest for a in self._actions if not a.option_strings]
        if not message.startswith("the following arguments are required") or not any(
                name in message for name in positional):
            return ""
        taken: tuple[str, list[str]] | None = None
        current: list[str] | None = None
        for token in getattr(self, "_argv", ()):
            if token == "--":
                break
            action = self._option_string_actions.get(token.partition("=")[0] if token.startswith("--") else token)
            if action is not None or token.startswith("-"):
                current = [] if action is not None and action.nargs == "+" and "=" not in token else None
                if current is not None:
                    taken = (token, current)
            elif current is not None:
                current.append(token)
        if taken is None or len(taken[1]) < 2:
            return ""
        option, values = taken
        return (f" ({option} took {' '.join(values)} as its values: give {' '.join(positional)} before the options, "
                f"or end {option}'s values with --)")

    def _get_option_tuples(self, option_string):  # type: ignore[override]
        """An abbreviation that is a prefix of several spellings of one option (``--participant``:
        ``--participant-label`` and ``--participant_label``; ``--skip``, ``--session``) is that option:
        argparse (3.11) refused it as ambiguous between the two spellings. A prefix of two
        different options (``--temp``) stays ambiguous, a usage error."""
        tuples = super()._get_option_tuples(option_string)
        seen: set[int] = set()
        return [t for t in tuples if not (id(t[0]) in seen or seen.add(id(t[0])))]


#: the most characters of one word a message quotes whole: a 5000-character value (a file's contents
#: pasted, a variable holding a whole list) was quoted whole, the error line itself lost in it. Far above
#: a real path on a cluster (a few hundred characters), which is quoted whole
_SHOWN = 500


def _shown(text: str) -> str:
    """``text`` quoted for a message (``repr``: control characters and newlines escaped), its first 60
    characters alone when it is longer than :data:`_SHOWN`: ``'xxxx...'... (5000 characters)``."""
    return repr(text) if len(text) <= _SHOWN else f"{text[:60]!r}... ({len(text)} characters)"


def _shorten(message: str, words: list[str]) -> str:
    """``message`` with each long word of ``words`` (the command line's) in it, as is or quoted,
    shown by :func:`_shown`."""
    for word in sorted({w for w in words if len(w) > _SHOWN}, key=len, reverse=True):
        message = message.replace(repr(word), _shown(word)).replace(word, _shown(word))
    return message


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class ExtendAction(argparse.Action):
    """A list option (``nargs="+"``) given more than once keeps every value: ``--participant-label 01
    --participant-label 02`` is both participants (argparse's default action kept the last time's
    values only, so a script that builds its command option by option processed one participant,
    exit 0). The default is replaced by the first values given, never added to."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        current = getattr(namespace, self.dest, None)
        earlier = [] if current is None or current is self.default else list(current)
        setattr(namespace, self.dest, earlier + list(values))  # type: ignore[call-overload]


class OtherCommandsOption(argparse.Action):
    """An option of a sibling command that would be read here as an abbreviation of another
    option (argparse takes any unique prefix): ``geomorph-register --features curv`` as
    ``--features-out curv``, ``geomorph-bids ... --out O`` as ``--output-density O``. Added hidden
    under its own name, it is a usage error: ``<option> <why>``."""

    def __init__(self, option_strings: list[str], dest: str, why: str = "", **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.why = why

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        parser.error(f"{option_string} {self.why}")


class _DefaultsOnce(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help unless the help already says what the
    default is, or there is none to say (None, False: a flag left off)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text.lower() or default is None or default is False or default is argparse.SUPPRESS
                or action.nargs == 0 or not action.option_strings or default in ([], ())):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def _integer(text: str) -> int:
    """argparse's own message would name this function ("invalid _positive_int value"): say it."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None


def _positive_int(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _count(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _finite(low: float, high: float, unit: str = "") -> Callable[[str], float]:
    """argparse type: a finite number in [low, high]."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be a finite number from {low:g} to {high:g}{unit}, got {text}")
        return value

    return parse


_MEMORY_UNITS = {"K": 1e-6, "M": 1e-3, "G": 1.0, "T": 1e3}  # in GB, as fMRIPrep's --mem reads them


def _memory(default_unit: str) -> Callable[[str], float]:
    """argparse type: a memory size in GB, from a number in ``default_unit`` (``"G"``: ``--mem-gb 16``;
    ``"M"``: fMRIPrep's ``--mem``/``--mem-mb 16000``) or with a unit of its own (``16G``, ``16GB``,
    ``16000M``, ``16GiB``, ``1.5T``, as sbatch and fMRIPrep take them); finite, 0.1 GB to 1e6 GB."""
    def parse(text: str) -> float:
        number = text.strip().upper().removesuffix("B").removesuffix("I")
        unit = number[-1:] if number[-1:] in _MEMORY_UNITS else default_unit
        number = number[:-1] if number[-1:] in _MEMORY_UNITS else number
        try:
            value = float(number) * _MEMORY_UNITS[unit]
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a memory size (16G, 16000M; a number alone is in "
                                             f"{default_unit}B), got {text!r}") from None
        if not math.isfinite(value) or not 0.1 <= value <= 1e6:
            size = "" if value == float(number) or not math.isfinite(value) else f" ({value:g} GB)"
            raise argparse.ArgumentTypeError(f"must be a finite size from 0.1 GB to 1e+06 GB, got {text}{size}")
        return value

    return parse


#: what ``--device`` may say (:func:`~geomorph_bids.engine.device.resolve_device` reads it, blanks around it
#: and letter case aside): whether the device is there is asked later, of the device the model runs on
_DEVICE = re.compile(r"(auto|cpu|cuda|mps)(:[0-9]+)?")


def device(text: str) -> str:
    """An argparse type: ``--device`` spelled as :func:`~geomorph_bids.engine.device.resolve_device` reads
    it (auto, cpu, cuda, cuda:N, mps), returned as given. With ``--model rigid`` no device was ever
    resolved (the rigid stage runs on the CPU), so ``--device gpu`` or ``--device 0x10`` ran and exited 0,
    the word read by nobody; a spelling is now checked whatever the model (``auto:1`` too: ``cuda:1`` meant?)."""
    spec = text.strip().lower()
    if not _DEVICE.fullmatch(spec) or spec.startswith("auto:"):
        raise argparse.ArgumentTypeError(f"unknown device {_shown(text)}: use auto, cpu, cuda or cuda:N")
    return text


def hemisphere(text: str) -> str:
    """An argparse type: ``"L"``/``"R"`` from any spelling :func:`~geomorph_bids.io.validate.hemi_code`
    knows (l, lh, left, ...)."""
    from ..io.validate import hemi_code

    try:
        return hemi_code(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid hemisphere {text!r}: L or R (also lh/rh, left/right)") from None


def _template_label(text: str) -> str:
    from ..derivatives import check_template_label

    try:
        return check_template_label(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_quality_options(p: argparse.ArgumentParser, description: str) -> None:
    """The quality-gate options (``--min-cc``, ``--min-cc-other``, ``--max-distortion``, ``--max-folds``,
    ``--identity-margin``; None when not given: :func:`~.settings.resolve_quality` decides) of
    every command that registers, in one group described by ``description``."""
    g = p.add_argument_group("quality gates", description)
    g.add_argument("--min-cc", type=_finite(*THRESHOLD_RANGES["min_cc_after"]), default=None, metavar="CC",
                   help="lowest correlation of the first registration feature (sulc) with the template after "
                        "registration (default 0.5)")
    g.add_argument("--min-cc-other", type=_finite(*THRESHOLD_RANGES["min_cc_other"]), default=None, metavar="CC",
                   help="the same for the other registration features, e.g. curv (default 0.2: an individual's "
                        "curvature is much sharper than the template's group average)")
    g.add_argument("--max-distortion", type=_finite(*THRESHOLD_RANGES["max_areal_p95"]), default=None, metavar="LOG2",
                   help="highest 95th percentile of |log2 areal distortion| (default 1.0)")
    g.add_argument("--max-folds", type=_count, default=None, metavar="N",
                   help="most folded triangles in the registered sphere (default 0)")
    g.add_argument("--identity-margin", type=_finite(*THRESHOLD_RANGES["identity_margin"]), default=None, metavar="CC",
                   help="flag the hemisphere when its features fit the mirrored template better than the "
                        "template by more than this (default 0.0: the other hemisphere, or lh/rh files swapped)")


#: the options of the group level alone (dest names): the participant level has no use for them
GROUP_ONLY = ("build_template", "template_label")

#: ``--refine``'s help, one text for geomorph-bids and geomorph-register (the same option):
#: 'short' is :data:`~geomorph_bids.model.optimise.REFINEMENT`, 'full' ``FROM_NETWORK``
REFINE_HELP = ("with a network (--model NAME|PATH), what follows its warp: 'short' (default: one ico-4 stage, 30 "
               "steps) or 'full' (the default optimiser's whole schedule, started from the network's large-scale "
               "correction: with sulc-fsaverage closer than the optimiser on sulc, for the optimiser's time; "
               "the source repository's docs/models.md)")


def refuse_options_that_do_not_apply(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A usage error (exit 2) when the participant level is given an option of the group level
    alone (:data:`GROUP_ONLY`): ``participant --build-template 3`` registered every participant
    (hours on a cohort), built no template and exited 0, the option ignored in silence; or
    ``--use-plugin`` with batch mode (``--batch-size``), which has no Nipype: a SLURM plugin's jobs
    were never submitted, every participant registered on the node that ran the command."""
    if args.analysis_level != "participant":
        return
    if args.use_plugin is not None and args.batch_size is not None and not args.reports_only:
        parser.error(f"--use-plugin {args.use_plugin} sets Nipype's scheduler, and batch mode (--batch-size "
                     f"{args.batch_size}) runs without Nipype, in --nprocs worker processes on this machine: give "
                     "one of them")
    given = [f"--{dest.replace('_', '-')}" for dest in GROUP_ONLY if getattr(args, dest) != parser.get_default(dest)]
    if not given:
        return
    import shlex

    words = [f"--{dest.replace('_', '-')} {shlex.quote(str(getattr(args, dest)))}" for dest in GROUP_ONLY
             if getattr(args, dest) != parser.get_default(dest)]
    parser.error(f"{' and '.join(given)} {'is an option' if len(given) == 1 else 'are options'} of the group level "
                 "(a template averaged from the participants' registered outputs), not of the participant level: "
                 f"run the participant level without {'it' if len(given) == 1 else 'them'}, then geomorph-bids "
                 f"{shlex.quote(str(args.bids_dir))} {shlex.quote(str(args.output_dir))} group {' '.join(words)}")


def build_parser() -> argparse.ArgumentParser:
    """The ``geomorph-bids`` argument parser."""
    p = Parser(
        prog="geomorph-bids",
        description="GeoMorph cortical surface registration as a BIDS-App: registers each "
                    "subject's native cortical spheres (FreeSurfer, sMRIPrep/fMRIPrep or HCP "
                    "outputs) to fsLR or fsaverage and writes BIDS derivatives.",
        formatter_class=_DefaultsOnce)
    p.add_argument("bids_dir", type=Path, help="the BIDS dataset root")
    p.add_argument("output_dir", type=Path, help="where the derivatives are written")
    p.add_argument("analysis_level", choices=("participant", "group"),
                   help="participant: register each subject; group: table of every participant's metrics")
    p.add_argument("--version", action="version", version=f"geomorph-bids {__version__}")
    # geomorph-register's and geomorph-train's option, read here as --output-density
    p.add_argument("--out", nargs="*", action=OtherCommandsOption, help=argparse.SUPPRESS,
                   why="is geomorph-register's and geomorph-train's option; geomorph-bids writes to output_dir, its "
                       "second argument: geomorph-bids BIDS_DIR OUTPUT_DIR participant")
    p.add_argument("-v", "--verbose", action="count", default=0, help="Nipype's log messages on stdout (-v: each node run, -vv: debug; batch mode, "
                        "--batch-size, has no Nipype and no more to say)")

    g = p.add_argument_group("selecting the data")
    g.add_argument("--participant-label", "--participant_label", nargs="+", action=ExtendAction, metavar="LABEL",

                   help="subjects to process, with or without 'sub-' (default: all found)")
    g.add_argument("--session-label", "--session_label", nargs="+", action=ExtendAction, metavar="LABEL",

                   help="sessions to process, with or without 'ses-' (default: the session-less "
                        "anatomy, else each session that has inputs)")
    g.add_argument("--bids-filter-file", type=Path, metavar="FILE",
                   help="JSON of BIDS entities selecting the inputs: {\"session\": [\"pre\"]} "
                        "(also fMRIPrep's nested form {\"t1w\": {\"session\": \"pre\"}}: its anatomical "
                        "queries t1w, t2w, flair, roi select, the others (bold, fmap...) are ignored); "
                        "entities: subject, session")
    g.add_argument("--fs-subjects-dir", type=Path, metavar="DIR",
                   help="FreeSurfer SUBJECTS_DIR (default: <bids_dir>/derivatives/freesurfer)")
    g.add_argument("--derivatives", nargs="+", action=ExtendAction, metavar="NAME=PATH",
                   help="sMRIPrep/fMRIPrep/HCP output folders (default: every folder of "
                        "<bids_dir>/derivatives)")
    g.add_argument("--hemi", nargs="+", action=ExtendAction, type=hemisphere, default=["L", "R"],
                   help="hemispheres: L, R (also l/r, lh/rh, left/right)")
    g.add_argument("--skip-bids-validation", "--skip_bids_validation", action="store_true",
                   help="do not check that bids_dir is a BIDS dataset (dataset_description.json)")

    g = p.add_argument_group("registration and outputs")
    g.add_argument("--template", default="fsLR", metavar="fsLR|fsaverage|FOLDER",
                   help="target template: fsLR, fsaverage, or a custom template folder (tpl-<label>, "
                        "e.g. written by 'group --build-template'; a bare label is looked up in "
                        "output_dir). fsaverage's maps are taken at full resolution from, in order: "
                        "--template-dir, $TEMPLATEFLOW_HOME/tpl-fsaverage, fsaverage in the FreeSurfer "
                        "subjects folder (--fs-subjects-dir), $SUBJECTS_DIR and $FREESURFER_HOME/subjects; "
                        "else the bundled low-resolution maps (the source repository's docs/templates.md)")
    g.add_argument("--template-dir", default=None, metavar="DIR|bundled",
                   help="take the template's maps from this folder first: a FreeSurfer subject folder "
                        "(e.g. $FREESURFER_HOME/subjects/fsaverage) or a TemplateFlow folder; 'bundled': "
                        "the maps bundled with geomorph-bids only, whatever this machine has "
                        "(default: look in the places --template lists)")
    g.add_argument("--output-density", default=None, metavar="DEN",
                   help="density of the resampled features: fsLR 32k (default), 59k (TemplateFlow only), "
                        "164k, ico6; fsaverage 10k, 41k (default), 164k (= ico5, ico6, ico7)")
    g.add_argument("--features", nargs="+", action=ExtendAction, choices=FEATURES, default=None,
                   help="features resampled and written (default: sulc; the registration's own features are "
                        "always written); group --build-template: the features averaged (default: the "
                        "registration's features of --model for --template)")
    g.add_argument("--model", default="default", metavar="NAME|PATH",
                   help="'default' (rigid pre-alignment, then the GeoMorph warp optimised per hemisphere; "
                        "the most accurate on CPU), 'rigid' (pre-alignment only), a bundled pretrained "
                        "network (sulc-fsLR, sulc-fsaverage, multimodal-fsLR: its warp is then refined "
                        "per hemisphere; see "
                        "the source repository's docs/models.md) or a checkpoint from geomorph-train")
    g.add_argument("--no-optimise", action="store_true",
                   help="with a network (--model NAME|PATH): keep its warp as it is (its forward passes), without "
                        "the per-hemisphere refinement (the fastest registration; accuracy in "
                        "the source repository's docs/models.md)")
    g.add_argument("--refine", choices=REFINE_CHOICES, default=None, help=REFINE_HELP)
    g.add_argument("--device", type=device, default="auto", help="auto (CUDA if available, else CPU), cpu, cuda or cuda:N")
    g.add_argument("--fmriprep-compat", action="store_true",
                   help="also write each registered sphere under the name sMRIPrep's io_spec.json queries "
                        "(fsLR: space-fsLR_desc-msmsulc_sphere; fsaverage: space-fsaverage_desc-reg and "
                        "space-fsLR_desc-reg), with sidecars, so that 'fmriprep ... --derivatives "
                        "anat=OUTPUT_DIR' uses them instead of running MSMSulc")
    g.add_argument("--cifti-output", action="store_true",
                   help="also write one CIFTI-2 dscalar per subject/session with every resampled feature of both "
                        "hemispheres, medial wall left out by the fsLR atlas ROI (template fsLR, density 32k "
                        "or 59k)")

    g = p.add_argument_group("execution")
    g.add_argument("-w", "--work-dir", type=Path, default=Path("work"),
                   help="Nipype working directory; reruns with the same one resume (default: ./work)")
    g.add_argument("--nprocs", "--nthreads", "--n_cpus", type=_positive_int, default=usable_cpus(),
                   help="process slots for the whole run (at most the CPUs this process may use; more is "
                        "lowered to that, with a warning)")
    g.add_argument("--omp-nthreads", type=_positive_int, default=None,
                   help="threads per registration (default: nprocs // 2, at least 1, at most 8; batch mode, "
                        "--batch-size: 1, each of its --nprocs workers running one)")
    g.add_argument("--mem-gb", "--mem_gb", type=_memory("G"), default=None,
                   help="memory limit for Nipype's scheduler, in GB, or with a unit: 16G, 16000M (at most the "
                        "memory this process may use: the machine's, within a cgroup limit and a SLURM job's --mem; more "
                        "is lowered to that, with a warning; default: 90%% of it)")
    g.add_argument("--mem", "--mem-mb", "--mem_mb", dest="mem_gb", type=_memory("M"), default=None,
                   metavar="MEM_MB", help="the same as fMRIPrep's option: in MB, or with a unit (16G)")
    g.add_argument("--use-plugin", type=Path, metavar="FILE",
                   help="Nipype plugin settings (YAML: {plugin: MultiProc, plugin_args: {...}}); "
                        "default MultiProc with --nprocs")
    g.add_argument("--batch-size", type=_positive_int, default=None, metavar="N",
                   help="batch mode for large cohorts: no Nipype; --nprocs worker processes each register "
                        "N hemispheres at a time (one model load, one vectorised optimisation; on a GPU "
                        "the device is held only for that step) and write the same derivatives; "
                        "default: the Nipype workflow, one node per step and hemisphere")
    g.add_argument("--reports", choices=("parallel", "deferred"), default="parallel",
                   help="parallel: each participant's HTML report as soon as its outputs are written "
                        "(batch mode: beside the next registrations); deferred: none now, build them "
                        "later with --reports-only (the fastest for large cohorts)")
    g.add_argument("--stop-on-first-crash", action="store_true", help="stop at the first failed node")
    g.add_argument("--lock-wait", action="store_true",
                   help="when another geomorph-bids run is processing a participant (its lock in "
                        "OUTPUT_DIR/.geomorph-locks is held), wait for it and then process that participant "
                        "(after this run's other participants) instead of skipping it with an error")
    g.add_argument("--reports-only", action="store_true",
                   help="process nothing: rebuild the HTML reports (sub-X.html) from the participant "
                        "outputs already in output_dir")
    add_quality_options(p, "a hemisphere that fails one is written, listed as FLAGGED and marked in the group "
                           "table, and the run exits with code 3 (what each reason means: "
                           "the source repository's docs/troubleshooting.md); defaults: those recorded with the "
                           "outputs (group level), "
                           "else the values shown")
    g = p.add_argument_group("group level")
    g.add_argument("--build-template", type=_positive_int, default=None, metavar="N",
                   help="build a population-average template from the participants' registered "
                        "features in N register-then-average rounds (written to "
                        "OUTPUT_DIR/tpl-<label>/; needs >= 2 participants per hemisphere)")
    g.add_argument("--template-label", type=_template_label, default="geomorphPopulation", metavar="LABEL",
                   help="label of the --build-template output (letters and digits; not a standard template's "
                        "name such as fsLR)")
    return p

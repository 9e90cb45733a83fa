"""``geomorph-register``: register one hemisphere's sphere to a template.

Rigid pre-alignment from the features (or from ``--sphere-reg`` correspondence),
then the non-rigid GeoMorph warp: the network of ``--model PATH`` (if given) and
pair-wise optimisation of its control points (unless ``--no-optimise``);
``--model rigid`` stops after the rigid stage. Writes the sphere moved into
template space, the features resampled onto the template's ico-6 grid, and a
JSON file of quality metrics.
"""

from __future__ import annotations

if __name__ == "__main__":  # python -m: as the console script, one line on Ctrl-C during the imports below
    from geomorph_bids.cli.launch import run_module

    run_module("geomorph_bids.cli.register", "geomorph-register")

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import __version__
from ..engine.model_choice import REFINE_CHOICES
from ..errors import InputError, closest_name
from ..io.atomic import atomic_write_text
from ..io.digest import software_id
from ..io.discover import FEATURES, surface_vertex_count
from ..quality import DEFAULT_THRESHOLDS, QualityThresholds, few_folds
from .exit_codes import EXIT_FLAGGED, EXIT_OK, HANDLED, error_exit, interrupted
from .interrupts import Interrupted, pid_alive, stop_on_signals
from .machine import (current_folder_problem, drop_unusable_thread_settings, matplotlib_config_in_tmp,
                      threads_wait_passively, threads_within_usable_cpus, address_space_problem, out_of_memory,
                      gpu_out_of_memory, is_gpu_out_of_memory)
from .messages import one_line_warnings, reader_may_go_away, say
from .parser import REFINE_HELP, OtherCommandsOption, Parser, _DefaultsOnce, add_quality_options, device, hemisphere
from ..resources import bundled_models
from .container import with_gpu_flag

if TYPE_CHECKING:
    from ..io.template_ref import TemplateRef

__all__ = ["main", "build_parser"]

_PROG = "geomorph-register"
_HEMI_PREFIX = {"L": "lh", "R": "rh"}


#: where --example writes: a folder of its own, not the README quick start's geomorph-bids output
#: folder (./geomorph_example), whose top level would get loose files that no BIDS rule covers
EXAMPLE_OUT_DIR = "geomorph_register_example"


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of ``geomorph-register``."""
    p = Parser(
        prog="geomorph-register",
        description="Register a cortical sphere to a template (fsLR or fsaverage): rigid "
                    "pre-alignment from its features, then the non-rigid GeoMorph warp (network "
                    "with --model, optimised for the pair); "
                    "writes the sphere in template space, resampled features and metrics.",
        formatter_class=_DefaultsOnce)
    p.add_argument("--version", action="version", version=f"%(prog)s (geomorph-bids {__version__})")
    p.add_argument("--sphere", type=Path, help="native sphere: GIFTI .surf.gii or FreeSurfer ?h.sphere")
    p.add_argument("--feature", action="extend", nargs="+", default=[], metavar="NAME=FILE",
                   help="feature map(s) on the sphere, e.g. sulc=lh.sulc curv=lh.curv (several after one "
                        "--feature, or --feature repeated); "
                        "GIFTI .shape.gii/.func.gii, FreeSurfer morph file, MGH or CIFTI-2 .dscalar.nii "
                        "(--hemi's columns); NAME may be left out when "
                        f"the file name says it ({', '.join(FEATURES)}; also HCP's curvature and "
                        "MyelinMap_BC, the BIDS layout's myelinw)")
    p.add_argument("--sphere-reg", type=Path, default=None,
                   help="FreeSurfer ?h.sphere.reg of the same subject: rotation from vertex "
                        "correspondence instead of features (faster, as sMRIPrep does)")
    p.add_argument("--hemi", type=hemisphere,
                   help="hemisphere (default: what the sphere's file says: lh./rh., hemi-L/R, .L./.R., "
                        "GIFTI AnatomicalStructurePrimary)")
    p.add_argument("--template", default="fsLR",
                   help="template: fsLR (default), fsaverage, or a folder (FreeSurfer fsaverage, TemplateFlow "
                        "tpl-fsaverage, custom tpl-<label>). fsaverage's maps come at full resolution from "
                        "--template-dir, $TEMPLATEFLOW_HOME, $SUBJECTS_DIR/fsaverage or "
                        "$FREESURFER_HOME/subjects/fsaverage when one has them, else the bundled low-resolution "
                        "maps (the source repository's docs/templates.md)")
    p.add_argument("--template-dir", default=None, metavar="DIR|bundled",
                   help="take the template's maps from this folder first (a FreeSurfer subject folder or a "
                        "TemplateFlow folder); 'bundled': the bundled maps only")
    p.add_argument("--model", default=None, metavar="NAME|PATH|rigid",
                   help="GeoMorph network that starts the non-rigid stage: a bundled model "
                        f"({', '.join(bundled_models()) or 'none installed'}) or a checkpoint from geomorph-train "
                        "(its warp is then optimised for the pair, unless --no-optimise); 'rigid' for the "
                        "rigid pre-alignment only; default: no network, the warp is optimised for the "
                        "pair from the rigid alignment")
    p.add_argument("--no-optimise", action="store_true",
                   help="skip the pair-wise optimisation of the warp (network output only; "
                        "needs --model NAME|PATH: a bundled network or a checkpoint)")
    p.add_argument("--refine", choices=REFINE_CHOICES, default=None, help=REFINE_HELP)
    p.add_argument("--device", type=device, default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--sulc-sign", choices=("freesurfer", "hcp"), default="freesurfer",
                   help="sign convention of the input sulc and curv: FreeSurfer (positive in sulci, "
                        "default) or HCP (positive on gyri: HCP's sulc and curvature); with hcp both "
                        "are negated before registration, as geomorph-bids does for HCP inputs")
    p.add_argument("--out", type=Path, help="output sphere (.surf.gii)")
    p.add_argument("--metrics", type=Path, default=None,
                   help="output metrics JSON (default: next to --out, ending _metrics.json)")
    p.add_argument("--features-out", type=Path, default=None,
                   help="folder for the features resampled onto the template ico-6 grid")
    # geomorph-bids' option, a unique abbreviation of --features-out here: --features curv wrote the
    # resampled maps into a folder named curv, exit 0
    p.add_argument("--features", nargs="*", action=OtherCommandsOption, help=argparse.SUPPRESS,
                   why="is geomorph-bids' option; geomorph-register takes each map with --feature NAME=FILE (e.g. "
                       "--feature sulc=lh.sulc curv=lh.curv) and writes them resampled to --features-out DIR")
    p.add_argument("--example", action="store_true",
                   help="register both hemispheres of the bundled example subject; "
                        "outputs go to --out-dir")
    p.add_argument("--out-dir", type=Path, default=Path(EXAMPLE_OUT_DIR),
                   help=f"output folder for --example (default: ./{EXAMPLE_OUT_DIR}; not geomorph-bids' "
                        "output folder, e.g. the quick start's ./geomorph_example)")
    add_quality_options(p, "a registration that fails one is written, reported on one FLAGGED line, recorded "
                           "in the metrics JSON (quality), and the command exits with code 3; defaults as shown")
    return p


def _feature_name(path: str) -> str | None:
    """The feature a file's name says it holds (``lh.sulc``, ``sub-01_hemi-L_sulc.shape.gii``,
    ``sub-01_hemi-L_myelinw.func.gii``, HCP's ``100307.L.MyelinMap_BC.native.func.gii`` and
    ``.curvature.``), when it names exactly one of :data:`FEATURES`: read as the identity check
    reads it (:func:`geomorph_bids.io.hemisphere_label.declared_map`)."""
    from geomorph_bids.io.hemisphere_label import declared_map

    return declared_map(path)


def _parse_features(specs: list[str]) -> dict[str, Path]:
    features: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if sep and ("/" in name or os.sep in name or (os.path.lexists(spec) and not os.path.lexists(path))):
            sep = ""  # a file whose path holds '=' given without a name (/data/run=2/lh.sulc): not NAME=FILE
        if not sep:
            name, path = _feature_name(spec) or "", spec
        if not name or not path:
            raise SystemExit(f"geomorph-register: error: --feature expects NAME=FILE (e.g. sulc=lh.sulc), got {spec!r}")
        if name in features and features[name].absolute() != Path(path).absolute():
            # the last one was registered (the first left out in silence)
            raise SystemExit(f"geomorph-register: error: --feature {name} is given twice ({features[name]}, {path}): "
                             "give each map once")
        features[name] = Path(path)
    return features


def _check_feature_names(features: dict[str, Path], offered: tuple[str, ...]) -> None:
    """Refuse a ``--feature`` name that is none of :data:`FEATURES` nor a map the template offers
    (a custom template's own), with the closest known name: a misspelt one (``sulcc``, ``Sulc``)
    was dropped as a map the template lacks, and the run failed naming nothing."""
    known = list(dict.fromkeys([*FEATURES, *offered]))
    for name in features:
        if name in known:
            continue
        meant = closest_name(name, known)
        shown = name if name.strip() == name and name else repr(name)
        raise InputError(f"--feature {shown}: unknown feature name; use {', '.join(known[:-1])} or {known[-1]}"
                         + (f" (did you mean {meant}?)" if meant else ""))


def _check_registration_feature(features: dict[str, Path], offered: tuple[str, ...], template: str) -> None:
    """Refuse feature maps of which the template has none (only ``thickness``, say): they would be
    resampled, but nothing would drive the registration."""
    if not any(name in offered for name in features):
        offered = tuple(sorted(offered, key=lambda f: (FEATURES + (f,)).index(f)))  # sulc first, as --feature's help
        raise InputError(f"no registration feature ({', '.join(offered[:-1])} or {offered[-1]}) among --feature "
                         f"{', '.join(features)}: template {template} has no map of "
                         f"{'it' if len(features) == 1 else 'them'}; give sulc as well (the other maps are "
                         "resampled to --features-out)")


def _refuse_a_network_of_maps_not_given(model: str, channels: tuple[str, ...] | list[str], features: dict[str, Path],
                                        sphere: Path, hemi: str) -> None:
    """A network reads every one of its ``channels``: a ``--feature`` missing for one of them is named, with the
    ``--feature`` to add, before any input is read (as geomorph-bids names the maps it looked for). Before, the line
    named the network's file (``.../multimodal-fsLR/model.pt: model 'multimodal-fsLR' expects channels [sulc, curv,
    myelin] for template fsLR; input has [sulc] ...``), as if the network were at fault."""
    missing = [c for c in channels if c not in features]
    if missing:
        raise InputError(f"--model {model} registers {', '.join(channels)}; --feature gives "
                         f"{', '.join(features) or 'none'} (missing: {', '.join(missing)}): add "
                         + " ".join(f"--feature {c}=FILE" for c in missing), path=sphere, hemi=hemi)


def _hemi_from_name(sphere: Path) -> str:
    """The hemisphere the sphere's file declares (one line on stderr says so), or a usage error."""
    from ..io.hemisphere_label import declared_hemispheres

    declared = {h for h, _ in declared_hemispheres(sphere)}
    if len(declared) != 1:
        raise SystemExit(f"{_PROG}: error: --hemi is required: {sphere.name} does not say which hemisphere it is"
                         + (" (it says both)" if declared else ""))
    hemi = declared.pop()
    say(f"{_PROG}: note: --hemi {hemi} (from {sphere.name})", file=sys.stderr)
    return hemi


def register_files(sphere: Path, features: dict[str, Path], hemi: str, template_name: str,
                   out: Path, metrics_out: Path, features_out: Path | None = None,
                   sphere_reg: Path | None = None, sulc_sign: str = "freesurfer",
                   model: Path | str | None = None, device: str = "auto", optimise: bool | str = True,
                   template_dir: str | Path | None = None, quality: QualityThresholds = DEFAULT_THRESHOLDS
                   ) -> dict:
    """Register one hemisphere from files and write the outputs; returns the metrics.

    ``template_name``: a template name or folder, its maps looked up as
    :func:`~geomorph_bids.engine.register.register` does (``template_dir`` first; warnings on
    stderr). ``model``: a checkpoint path or bundled model name, ``"rigid"`` (rigid stage only)
    or None (the template's default registration: the warp optimised for the pair; see
    :func:`~geomorph_bids.engine.model_choice.resolve_model`). ``optimise=False`` skips the
    optimisation (a network's warp as it is); ``"full"``: the optimiser's whole schedule from the
    network's warp (``--refine full``). Every input is read and the registration computed
    before anything is written, so bad input leaves no partial output. The metrics hold
    ``label_conflicts`` (input files whose name or GIFTI metadata says the other hemisphere, or
    whose name says another map than the feature they are given as) and
    ``quality``, the verdict of the gates with thresholds ``quality``
    (:meth:`~geomorph_bids.quality.QualityVerdict.to_dict`); a flagged registration is written.
    """
    from ..engine.model_choice import refuse_mirrored_right, resolve_model
    from ..engine.register import RegistrationItem, register_many
    from ..io import write_metric, write_surface
    from ..io.hemisphere import read_hemisphere
    from ..io.hemisphere_label import feature_conflicts, label_conflicts
    from ..quality import assess
    from ..results.metrics import NO_DATA, no_data_record
    from ..io.template_ref import resolve_template_ref
    from ..io.template_sources import TemplateSearch

    template = resolve_template_ref(template_name, (), TemplateSearch.from_environment(template_dir))
    feature_targets = {name: features_out / f"hemi-{hemi}_space-{template.label}_den-ico6_{name}.shape.gii"
                       for name in features} if features_out is not None else {}
    _refuse_overwriting_inputs([out, metrics_out, *feature_targets.values()],
                               {"--sphere": sphere, "--sphere-reg": sphere_reg,
                                **{f"--feature {n}": p for n, p in features.items()}})
    choice = resolve_model(model, template.label, refine=optimise)
    refuse_mirrored_right(choice.name, choice.mirrored, template.base, (hemi,))
    tpl_hemi = choice.template_hemi(hemi)
    if choice.kind == "network":  # the template's maps first, as geomorph-bids reads them: a map an uninstalled
        template.load(tpl_hemi, choice.channels)  # package provides (brainspace) is named before the inputs' channels
    offered = template.features(tpl_hemi)
    _check_feature_names(features, offered)  # a misspelt name first (did you mean curv?), then what is missing
    if choice.kind == "network":  # every channel the network reads, given
        _refuse_a_network_of_maps_not_given(str(model or choice.name), choice.channels, features, sphere, hemi)
    else:
        _check_registration_feature(features, offered, template.label)
    # the maps the registration compares: a network's channels, else the features given that the template has
    compared = tuple(choice.channels) if choice.kind == "network" else tuple(n for n in features if n in offered)
    # HCP negates FreeSurfer's sulc and curv alike (io.discover's HCP sign, used by geomorph-bids)
    native = read_hemisphere(sphere, features, signs={"sulc": -1.0, "curv": -1.0} if sulc_sign == "hcp" else None,
                             sphere_reg=sphere_reg, hemi=hemi, compared=compared)
    moving, maps = native.sphere, native.features
    given = dict(maps)  # every map given is resampled to --features-out, registration feature or not
    reg = native.sphere_reg.vertices if native.sphere_reg is not None else None
    if choice.kind != "network":  # without a network: the features given that the template has
        maps = {n: v for n, v in maps.items() if n in template.features(tpl_hemi)}
        for name in (n for n in given if n not in maps):  # never dropped in silence
            say(f"{_PROG}: note: --feature {name} is not used by the registration: template {template.label} has "
                f"no {name} map " + ("(resampled to --features-out only)" if features_out is not None
                                     else "(give --features-out to have it resampled)"), file=sys.stderr)
    for line in template.warnings(choice.channels if choice.kind == "network" else tuple(maps), (tpl_hemi,)):
        say(f"{_PROG}: warning: {line}", file=sys.stderr)
    for line in template.info:
        say(f"{_PROG}: note: {line}", file=sys.stderr)
    # which maps, and for a folder how many vertices (the full fsaverage's 163,842, or an fsaverage5 in its place)
    print(f"template maps: hemi-{hemi}: "
          f"{template.describe(choice.channels if choice.kind == 'network' else tuple(maps), (tpl_hemi,), vertices=True)}",
          flush=True)
    low = template.low_resolution_note(choice.channels if choice.kind == "network" else tuple(maps), tpl_hemi)
    if low:  # geomorph-bids' note, less its --fs-subjects-dir (not an option of this command)
        say(f"{_PROG}: note: hemi-{hemi} {low.replace('--fs-subjects-dir / ', '')}", file=sys.stderr)
    # where a map it compares holds no data (NaN, a plateau); a map only resampled changes nothing.
    # maps_checked: read_hemisphere looked for no data in the maps already (io.validate.no_data), as the BIDS-App's
    item = RegistrationItem(moving, maps, hemi, reg, cortex_mask=native.registration_cortex(compared),
                            maps_checked=True)
    on = with_gpu_flag(lambda: choice.resolve_device(device, check_driver=True))  # in our image: the flag to add
    result = register_many([item], template, device=on, on_error="raise", quality=quality, **choice.register_arguments())[0]

    metrics = {"hemi": hemi, "template": template.label,
               "software": software_id(), **result.metrics,
               "rotation": np.round(result.rotation, 8).tolist(), "input_sphere": str(sphere),
               "sulc_sign": sulc_sign}  # the sign gate's advice depends on it (quality.assess)
    # register_many() saw arrays: what the files themselves declare is checked here
    metrics["label_conflicts"] = (label_conflicts([sphere, sphere_reg, *features.values()], hemi,
                                                  wound_inward=sphere if moving.wound_inward else None)
                                  + feature_conflicts(features))
    no_data = no_data_record(native.no_data, native.no_data_vertices, len(moving.vertices))
    if no_data:  # recorded as the BIDS-App's metrics record it (results.metrics.NO_DATA); absent when none
        metrics[NO_DATA] = no_data
    metrics["quality"] = assess(metrics, metrics.get("registration_features") or list(maps), quality).to_dict()
    with _OutputSet() as outputs:  # all of the set or none of it, an earlier run's set left whole
        # the input's triangles as its file has them: a sphere wound inward (a right hemisphere mirrored
        # x -> -x as a left one) is registered re-wound, and written with the file's own faces again
        faces = result.faces if moving.given_faces is None else moving.given_faces
        write_surface(outputs.stage(out), result.sphere, faces, hemi=hemi, geometric_type="Spherical")
        if features_out is not None:
            features_out.mkdir(parents=True, exist_ok=True)
            for name, values in given.items():
                values = result.resample(values, target="ico6")
                write_metric(outputs.stage(feature_targets[name]), values, hemi=hemi, names=[name])
        _write_json(outputs.stage(metrics_out), metrics)
        outputs.commit()
    return metrics


_STAGING_PREFIX = ".geomorph-register-"
_OWNER = "owner.json"  # in a staging folder: who made it
#: a staging folder without an owner file (an earlier version's) or another host's (a shared file
#: system, where its process cannot be looked up) is taken for a killed run's after this long, seconds
_ORPHAN_AGE_S = 24 * 3600


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (Linux: ``/proc/<pid>/stat``'s 22nd field, clock ticks
    since boot), which tells a reused process id from the process that made a folder; None when
    unknown (another system, no such process)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_namespace() -> str | None:
    """This process's PID namespace (Linux: ``pid:[4026531836]``), or None: a process id names the
    same process only within one (two containers on one host may share the host's name, not this)."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _left_by_a_killed_run(folder: Path, now: float) -> str | None:
    """Why the staging folder ``folder`` is one a killed run left (a reason in words), or None when
    it may be a live run's: its ``owner.json`` names a process of this host that has ended (or a
    process id now another process's); without one, or another host's or PID namespace's (another
    container's), untouched for :data:`_ORPHAN_AGE_S`."""
    import socket

    try:
        owner = json.loads((folder / _OWNER).read_text())
    except (OSError, ValueError):
        owner = None
    if isinstance(owner, dict) and owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int) \
            and not isinstance(owner["pid"], bool) and owner["pid"] > 0 and owner.get("pidns") == _pid_namespace():
        pid = owner["pid"]
        if not pid_alive(pid):
            return f"its process {pid} has ended"
        start = _process_start(pid)
        if owner.get("start") is not None and start is not None and start != owner["start"]:
            return f"its process {pid} has ended (the id is another process's now)"
        return None
    try:
        age = now - folder.stat().st_mtime
    except OSError:
        return None
    return f"untouched for {age / 3600:.0f} h" if age > _ORPHAN_AGE_S else None


def _remove_killed_runs_folders(folder: Path) -> list[Path]:
    """Remove the staging folders in ``folder`` that killed runs left (:func:`_left_by_a_killed_run`),
    one ``note:`` line each; returns them. Those of runs that may still be writing are left."""
    import shutil
    import time

    removed = []
    try:
        candidates = sorted(p for p in folder.glob(_STAGING_PREFIX + "*") if p.is_dir() and not p.is_symlink())
    except OSError:
        return removed
    now = time.time()
    for stale in candidates:
        why = _left_by_a_killed_run(stale, now)
        if why is None:
            continue
        shutil.rmtree(stale, ignore_errors=True)
        if not stale.exists():
            removed.append(stale)
            say(f"{_PROG}: note: removed {stale}, the temporary folder of a run that was killed ({why})",
                file=sys.stderr)
    return removed


class _OutputSet:
    """A registration's output files (sphere, maps, metrics JSON), put in place together.

    Each file is first written whole into a hidden folder beside its final path
    (``.geomorph-register-<random>/``, same file system: :meth:`stage`), and only once every
    file of the set is written are they renamed into place (:meth:`commit`), the metrics JSON
    last. A write that fails (a full disk) or a stop signal (Ctrl-C, a cluster's SIGTERM) before
    then leaves the final paths as they were: no new file, and an earlier run's set of the same
    names whole, never the new sphere beside the earlier metrics or the earlier metrics without
    their sphere. The hidden folders are removed on the way out; a SIGKILL leaves them, hidden,
    and no partial set: each holds ``owner.json`` (host, process id and its start time), so the
    next run into that folder removes those whose process has ended (:func:`_left_by_a_killed_run`)
    and says so."""

    def __init__(self) -> None:
        self._folders: dict[Path, Path] = {}  # final folder -> its hidden staging folder
        self._files: list[tuple[Path, Path]] = []  # (staged, final), in the order staged

    def __enter__(self) -> "_OutputSet":
        return self

    def stage(self, final: Path) -> Path:
        """Where to write ``final`` for now (its parent folders are created; the staging folders
        killed runs left there removed first)."""
        import socket
        import tempfile

        folder = final.absolute().parent
        if folder not in self._folders:
            folder.mkdir(parents=True, exist_ok=True)
            _remove_killed_runs_folders(folder)
            staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=folder))
            self._folders[folder] = staging
            try:  # best effort: without it the folder is removed by age
                (staging / _OWNER).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                                          "start": _process_start(os.getpid()),
                                                          "pidns": _pid_namespace()}))
            except OSError:
                pass
        staged = self._folders[folder] / final.name
        self._files.append((staged, final))
        return staged

    def commit(self) -> None:
        """Rename every staged file into place, in the order staged (the metrics JSON last), holding
        an exclusive ``flock`` on each output folder (in sorted order: no deadlock): two runs given
        the same output names at once put their sets in place one after the other, never one's
        sphere beside the other's metrics. The lock is on the folder itself: no lock file is left."""
        import fcntl
        from contextlib import ExitStack

        with ExitStack() as held:
            for folder in sorted(self._folders):
                try:  # a folder this user cannot read, a file system without flock: the renames alone
                    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                except OSError:
                    continue
                held.callback(os.close, fd)  # closing releases the lock
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except OSError:
                    pass
            for staged, final in self._files:
                os.replace(staged, final)

    def __exit__(self, kind, exc, tb) -> None:
        import shutil

        from ..io.atomic import naming

        for folder in self._folders.values():
            shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, OSError) and exc.filename:  # a failed write names the output, not its staged copy
            final = next((f for s, f in self._files if str(s) == str(exc.filename)), None)
            if final is not None:
                raise naming(exc, final) from exc


def _refuse_overwriting_inputs(outputs: list[Path], inputs: dict[str, Path | None]) -> None:
    """An output path that is one of the input files (``--out lh.sphere.surf.gii`` given the same
    name as ``--sphere``, links resolved) would overwrite it, and a failure would then delete it:
    refused before anything is read. ``inputs``: option -> file."""
    given = {os.path.realpath(p): option for option, p in inputs.items() if p is not None}
    for path in outputs:
        option = given.get(os.path.realpath(path))
        if option is not None:
            raise InputError(f"is also the input {option}: writing the output there would overwrite it; "
                             "choose another output name", path=path)


def _write_json(path: Path, payload: dict) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")


def _refuse_a_network_of_maps_the_example_lacks(template: TemplateRef, model: str | None, optimise: bool | str,
                                               surf: Path) -> None:
    """``--example --model multimodal-fsLR``: the bundled subject has sulc alone. The template's maps are read
    first, as for one's own files (brainspace missing is named before anything else, as geomorph-bids names it);
    then one line says what the example lacks, naming its folder. Before, the line named the network's file
    (``.../multimodal-fsLR/model.pt: model 'multimodal-fsLR' expects channels [sulc, curv, myelin] ...; input has
    [sulc]``), as if the network were at fault."""
    from ..engine.model_choice import resolve_model

    choice = resolve_model(model, template.label, refine=optimise)
    if choice.kind != "network":
        return
    for hemi in dict.fromkeys(choice.template_hemi(h) for h in _HEMI_PREFIX):
        template.load(hemi, choice.channels)
    missing = [c for c in choice.channels if c != "sulc"]
    if missing:
        raise InputError(f"the bundled example subject has sulc alone (?h.sphere, ?h.sulc); --model {model} registers "
                         f"{', '.join(choice.channels)} (missing: {', '.join(missing)}): run --example with a model "
                         "of sulc (the default, sulc-fsLR or rigid), or register your own subject's files: "
                         "geomorph-register --sphere lh.sphere --feature sulc=lh.sulc "
                         + " ".join(f"--feature {c}=FILE" for c in missing)
                         + f" --model {model} --out lh.fsLR.surf.gii", path=surf)


def _run_example(out_dir: Path, template: str, model: str | None = None, device: str = "auto",
                 optimise: bool | str = True, template_dir: str | None = None,
                 quality: QualityThresholds = DEFAULT_THRESHOLDS) -> list[dict]:
    from ..io.template_ref import resolve_template_ref
    from ..io.template_sources import TemplateSearch
    from ..resources import example_dir
    from .paths import geomorph_bids_output

    if geomorph_bids_output(out_dir) is not None:  # its loose files would sit at the derivatives' top level
        raise InputError(f"is geomorph-bids' output (a BIDS derivatives folder): --example writes loose files that "
                         f"have no place in it; give --out-dir a folder of its own (default ./{EXAMPLE_OUT_DIR})",
                         path=out_dir)
    surf = example_dir() / "sub-01" / "surf"
    rows = []
    desc = "rigid" if model == "rigid" else "geomorph"
    # the space entity is the template's label: a folder given as --template is no file name
    ref = resolve_template_ref(template, (), TemplateSearch.from_environment(template_dir))
    label = ref.label
    _refuse_a_network_of_maps_the_example_lacks(ref, model, optimise, surf)
    for hemi, prefix in _HEMI_PREFIX.items():
        stem = out_dir / f"sub-01_hemi-{hemi}_space-{label}_desc-{desc}"
        try:
            rows.append(register_files(
                surf / f"{prefix}.sphere", {"sulc": surf / f"{prefix}.sulc"}, hemi, template,
                out=Path(f"{stem}_sphere.surf.gii"), metrics_out=Path(f"{stem}_metrics.json"),
                features_out=out_dir, model=model, device=device, optimise=optimise, template_dir=template_dir,
                quality=quality))
        except InputError as exc:
            raise exc.with_context(subject="01", hemi=hemi) from None
    return rows


#: the options of one's own hemisphere, which --example (the bundled subject, both hemispheres) does not use
_OWN_FILE_OPTIONS = ("sphere", "feature", "sphere_reg", "hemi", "out", "metrics", "features_out", "sulc_sign")


def _refuse_options_example_ignores(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--example`` registers the bundled subject's two hemispheres into ``--out-dir``: an option
    about one's own files given with it (``--out``, ``--hemi L``, ``--sphere``...) would be ignored
    in silence, its outputs written elsewhere than asked: a usage error instead."""
    given = [f"--{name.replace('_', '-')}" for name in _OWN_FILE_OPTIONS
             if getattr(args, name) != parser.get_default(name)]
    if given:
        parser.error(f"--example registers the bundled example subject (both hemispheres, written to --out-dir "
                     f"{args.out_dir}) and does not use {', '.join(given)}: leave --example out to register "
                     "your own files, or those options to run the example")


def _print_summary(rows: list[dict]) -> None:
    """One table row per registration on stdout: the method, the rotation, the correlation with
    the template of its first feature (sulc where registered) before, after the rigid stage and
    at the end, folded triangles, seconds and the quality verdict (the metrics JSON has the rest)."""
    feature = next((f for f in FEATURES if all(f"cc_{f}_after" in r for r in rows)), "sulc")

    def cc(row: dict, stage: str) -> str:
        value = row.get(f"cc_{feature}_{stage}")
        return "-" if value is None else f"{value:.3f}"

    print(f"{'hemi':<5}{'method':>18}{'rotation (deg)':>16}{f'CC {feature} before':>16}"
          f"{'CC rigid':>10}{'CC after':>10}{'folded':>8}{'seconds':>9}{'quality':>9}")
    for r in rows:
        print(f"{r['hemi']:<5}{r['method']:>18}{r['rotation_deg']:>16.2f}{cc(r, 'before'):>16}"
              f"{cc(r, 'rigid'):>10}{cc(r, 'after'):>10}{r['n_folded']:>8d}{r['seconds_total']:>9.2f}"
              f"{'FLAGGED' if r['quality']['flagged'] else 'ok':>9}")


def _flagged_exit(rows: list[dict]) -> int:
    """One ``FLAGGED hemi-H: <reasons>`` line on stderr per registration a gate flagged, after a ``note:``
    line per sulc too smooth to register reliably (:func:`~geomorph_bids.quality.few_folds`); the exit
    code (3 when any was flagged, else 0: the note changes none)."""
    flagged = [r for r in rows if r["quality"]["flagged"]]
    for r in rows:  # advisory (no exit code): a sulc too smooth to register reliably
        note = few_folds(r, list(r.get("registration_features") or ["sulc"]),
                         QualityThresholds.from_dict(r["quality"].get("thresholds")))
        if note:
            say(f"{_PROG}: note: hemi-{r['hemi']}: {note}", file=sys.stderr)
    for r in flagged:
        say(f"{_PROG}: FLAGGED hemi-{r['hemi']}: {'; '.join(r['quality']['reasons'])}", file=sys.stderr)
    return EXIT_FLAGGED if flagged else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (:mod:`.exit_codes`: 0 ok, 1 bad input, 2 usage,
    3 written but flagged by a quality gate)."""
    from .settings import refine_argument, resolve_quality

    parser = build_parser()
    args = parser.parse_args(argv)
    if problem := current_folder_problem():
        return error_exit(_PROG, problem)
    gates = resolve_quality(args)
    with reader_may_go_away(), one_line_warnings(_PROG), stop_on_signals():
        drop_unusable_thread_settings(_PROG)  # before torch is imported
        threads_within_usable_cpus()
        threads_wait_passively()
        matplotlib_config_in_tmp()
        try:
            # before anything is read (the sphere's header aside), torch loaded, or written
            if problem := address_space_problem(args.sphere):
                return error_exit(_PROG, problem)
            if args.example:
                _refuse_options_example_ignores(parser, args)
                rows = _run_example(args.out_dir, args.template, args.model, args.device, refine_argument(args),
                                    args.template_dir, gates)
                _print_summary(rows)
                print(f"outputs in {args.out_dir}")
                return _flagged_exit(rows)
            if args.out_dir != parser.get_default("out_dir"):
                parser.error("--out-dir is where --example writes; your own sphere's outputs are named by --out "
                             "(and --metrics, --features-out)")
            if args.hemi is None and args.sphere is not None:
                args.hemi = _hemi_from_name(args.sphere)
            missing = [opt for opt in ("sphere", "hemi", "out") if getattr(args, opt) is None]
            if missing or not args.feature:
                parser.error("--sphere, --feature and --out are required, and --hemi where the sphere's file name does "
                             "not tell it (or use --example): missing "
                             + ", ".join([f"--{m}" for m in missing] + ([] if args.feature else ["--feature"])))
            if args.out.is_dir():
                parser.error(f"--out {args.out} is a folder: give the output sphere's file name, e.g. "
                             f"{args.out / 'lh.space-fsLR_sphere.surf.gii'}")
            if args.metrics is not None and args.metrics.is_dir():  # was found after the registration
                parser.error(f"--metrics {args.metrics} is a folder: give the metrics file's name, e.g. "
                             f"{args.metrics / 'lh_metrics.json'}")
            if args.out.name.endswith(".gii.gz"):
                parser.error(f"--out {args.out.name}: outputs are written uncompressed (every reader here takes "
                             f"either); name it {args.out.name[:-3]} and gzip it afterwards if you wish")
            if not args.out.name.endswith(".gii") and args.out.name.lower().endswith(".gii"):
                parser.error(f"--out {args.out.name}: end its name with .surf.gii in lower case (the outputs' names, "
                             f"the metrics file's among them, are made from it): "
                             f"{args.out.name[:-4].removesuffix('.surf').removesuffix('.SURF')}.surf.gii")
            if not args.out.name.endswith(".gii"):
                parser.error(f"--out {args.out.name}: the output sphere is written as GIFTI; end its name with "
                             ".surf.gii (FreeSurfer reads GIFTI surfaces; mris_convert converts)")
            if args.out.name.endswith((".shape.gii", ".func.gii", ".label.gii", ".time.gii")):
                parser.error(f"--out {args.out.name}: the output is a surface (the sphere in template space), but "
                             "that name says a per-vertex map; end it with .surf.gii (the resampled maps go to "
                             "--features-out)")
            features = _parse_features(args.feature)
            metrics_out = args.metrics or args.out.with_name(
                args.out.name.removesuffix(".gii").removesuffix(".surf").removesuffix("_sphere") + "_metrics.json")
            # found after the registration, or never: --metrics naming --out replaced the sphere by JSON (exit 0)
            # realpath: Path.resolve() raised on a link loop (--metrics LOOP: a RuntimeError traceback, exit 1)
            if metrics_out.absolute() == args.out.absolute() or os.path.realpath(metrics_out) == os.path.realpath(args.out):
                parser.error(f"--metrics {args.metrics} is also --out: the metrics JSON would replace the registered "
                             f"sphere; give it a name of its own, e.g. {metrics_out.with_name('lh_metrics.json')}")
            if metrics_out.name.endswith((".gii", ".gii.gz")):
                parser.error(f"--metrics {metrics_out.name}: the metrics are written as JSON, but that name says GIFTI; "
                             "end it with .json")
            if "." not in metrics_out.name.strip("."):  # --metrics nan, --metrics metrics: a value, or a word left out?
                parser.error(f"--metrics {metrics_out.name}: the metrics are written as JSON, and that name has no "
                             f"extension; end it with .json (e.g. {metrics_out.name.strip('.') or 'lh'}_metrics.json)")
            if args.features_out is not None and args.features_out.exists() and not args.features_out.is_dir():
                parser.error(f"--features-out {args.features_out} is a file: give the folder the resampled maps are "
                             "written to")
            from .preflight import check_file_can_be_written

            for option, target in (("--out", args.out), ("--metrics", metrics_out), ("--features-out", args.features_out)):
                if target is not None:  # before the registration (minutes on a 164k sphere), not after it
                    check_file_can_be_written(target, option, folder_of_files=option == "--features-out")
            m = register_files(args.sphere, features, args.hemi, args.template, args.out, metrics_out,
                               args.features_out, args.sphere_reg, args.sulc_sign, args.model, args.device,
                               refine_argument(args), args.template_dir, gates)
            _print_summary([m])  # the whole metrics are in the metrics JSON
            print("outputs: " + ", ".join(str(p) for p in (args.out, metrics_out, args.features_out) if p is not None))
            return _flagged_exit([m])
        except Interrupted as exc:  # Ctrl-C, a cluster's time limit: one line, no output set left half written
            exc.acknowledge()
            return interrupted(_PROG, exc.name, exc.signum, "a hemisphere's outputs are in place all together or "
                               "not at all (then an earlier run's files of the same names are left as they "
                               "were): run the same command again")
        except HANDLED as exc:
            if isinstance(exc, InputError):
                exc = exc.with_context(hemi=getattr(args, "hemi", None))
            return error_exit(_PROG, exc)
        except MemoryError as exc:  # numpy's, torch's: a traceback before; nothing is written half (atomic writes)
            count = surface_vertex_count(args.sphere) if args.sphere is not None else None  # its header only
            return error_exit(_PROG, f"hemi-{args.hemi} {args.sphere}: {out_of_memory(exc, count)}; nothing was written")
        except RuntimeError as exc:  # torch's CUDA out of memory (a RuntimeError): a traceback before
            if not is_gpu_out_of_memory(exc):
                raise
            return error_exit(_PROG, f"hemi-{args.hemi} {args.sphere}: {gpu_out_of_memory(str(exc))}; nothing was written")


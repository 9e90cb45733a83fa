"""Nipype's configuration for a participant run: logging, crash files, caching, and the
execution plugin (MultiProc by default, or the ``--use-plugin`` YAML)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError, closest_name
from ..io.limits import read_text_bounded
from .messages import say

if TYPE_CHECKING:
    from nipype.pipeline import engine as pe

__all__ = ["plugin_settings", "plugin_runner", "configure_nipype", "crash_folder_setting", "nipype_plugins",
           "nipype_log_level"]


def plugin_settings(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """(plugin name, plugin_args) from ``--nprocs``, ``--mem-gb`` (default: 90% of the memory this
    process may use, :func:`~geomorph_bids.cli.machine.total_memory_gb`) and ``--use-plugin``; InputError
    for a plugin file that cannot be read, or whose plugin cannot run here (:func:`_plugin_problem`)."""
    import math

    from .machine import total_memory_gb

    plugin_args: dict[str, Any] = {"n_procs": args.nprocs, "raise_insufficient": False}
    memory = total_memory_gb()
    if args.mem_gb:
        plugin_args["memory_gb"] = args.mem_gb
    elif math.isfinite(memory):  # Nipype's own default is 90% of the machine's, blind to a job's limit
        plugin_args["memory_gb"] = round(0.9 * memory, 3)
    if args.use_plugin is None:
        return "MultiProc", plugin_args
    import yaml

    try:
        doc = yaml.safe_load(read_text_bounded(args.use_plugin, what="plugin file")) or {}
    except InputError as exc:
        raise InputError(f"cannot read the plugin file: {exc.reason}", path=args.use_plugin) from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise InputError(f"cannot read the plugin file ({' '.join(str(exc).split())})", path=args.use_plugin) from None
    except ValueError:  # a whole number past Python's digit limit (sys.get_int_max_str_digits): no file was named
        raise InputError("cannot read the plugin file (a number of more than "
                         f"{sys.get_int_max_str_digits()} digits)", path=args.use_plugin) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("plugin"), str) or not doc["plugin"]:
        raise InputError("the plugin file must be YAML with a 'plugin' key naming a Nipype plugin "
                         "(and optional 'plugin_args')", path=args.use_plugin)
    extra = doc.get("plugin_args") or {}
    if not isinstance(extra, dict):
        raise InputError("the plugin file's 'plugin_args' must be a mapping (key: value)", path=args.use_plugin)
    _check_resources(extra, args.use_plugin)
    name = doc["plugin"]
    problem = _plugin_problem(name)
    if problem:
        raise InputError(problem, path=args.use_plugin)
    if name in ("MultiProc", "LegacyMultiProc"):
        plugin_args.update(extra)
        return name, plugin_args
    if name == "SLURMGraph":  # Nipype reads the attribute it sets only when plugin_args is not empty
        extra.setdefault("dont_resubmit_completed_jobs", False)
    return name, dict(extra)


def plugin_runner(plugin: tuple[str, dict[str, Any]]) -> Any:
    """The Nipype plugin object that :func:`plugin_settings`' ``(name, plugin_args)`` names, for
    ``Workflow.run(plugin=...)``: the plugin itself, except that its ``run`` holds the execution
    graph in the garbage collector's permanent generation (``gc.freeze``) while it runs.

    Nipype's MultiProc runs a full ``gc.collect()`` in every scheduling round. Each round walked
    every object of the process: torch's and the graph's, 0.5 s with 100 participants, 4 s with
    2,000, so a cohort run spent hours scheduling. The graph lives until the run ends, so nothing
    is left uncollected that a collection would have freed (objects made during the run are
    collected as before); ``gc.unfreeze`` afterwards, unless the caller had frozen objects of its own."""
    import gc

    from nipype.pipeline import plugins

    runner = getattr(plugins, f"{plugin[0]}Plugin")(plugin_args=plugin[1])
    if plugin[0] == "MultiProc":
        _survive_dead_workers(runner)
    run = runner.run

    def frozen_run(graph, config, updatehash=False):
        caller_froze = gc.get_freeze_count() > 0  # a caller's frozen heap (a pre-fork server) stays frozen
        gc.collect()  # garbage made so far is not frozen with the graph
        gc.freeze()
        try:
            return run(graph, config, updatehash=updatehash)
        finally:
            if not caller_froze:
                gc.unfreeze()

    runner.run = frozen_run
    return runner


#: the crash file's error (and the FAILED line's reason) of a step whose MultiProc worker process died
WORKER_DIED = ("RuntimeError: its worker process died (killed, or out of memory? the container's, cgroup's or SLURM "
               "job's memory limit; steps running beside it were stopped too): give the run more memory or fewer "
               "--nprocs and run the same command again to resume")


def _survive_dead_workers(runner: Any) -> None:
    """Make a MultiProc ``runner`` fail the steps whose worker process died, instead of waiting for
    them for ever. A worker killed by the out-of-memory killer (a container's or SLURM job's memory
    limit, a 163,842-vertex hemisphere in 0.45 GB) or ``kill -9`` breaks Nipype's process pool: the
    future of every step running then raises ``BrokenProcessPool`` in Nipype's done-callback (a
    traceback on stderr, ``exception calling callback for <Future ...>``), no result is ever
    recorded, and the run hung until it was killed, naming no subject. Now such a step's result is
    a failure (:data:`WORKER_DIED`: a crash file, ``FAILED sub-X hemi-H: ...``), the steps that
    depend on it are skipped as after any crash, and the next step submitted gets a fresh pool, so
    the other participants go on."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from nipype.pipeline.plugins.multiproc import process_initializer

    get_result, submit = runner._get_result, runner._submit_job

    def callback(future) -> None:
        if future.cancelled() or not isinstance(future.exception(), BrokenProcessPool):  # else read by result()
            runner._taskresult[future.result()["taskid"]] = future.result()

    def result(taskid: int) -> dict | None:
        future = runner._task_obj.get(taskid)
        if (future is not None and future.done() and not future.cancelled()
                and isinstance(future.exception(), BrokenProcessPool)):
            return {"result": None, "traceback": [WORKER_DIED + "\n"], "taskid": taskid}
        return get_result(taskid)

    def submit_job(node, updatehash: bool = False) -> int:
        try:
            return submit(node, updatehash=updatehash)
        except BrokenProcessPool:  # a worker died since the last submission: a fresh pool for the rest
            runner.pool.shutdown(wait=False)
            runner.pool = ProcessPoolExecutor(max_workers=runner.processors, initializer=process_initializer,
                                              initargs=(runner._cwd,),
                                              mp_context=mp.get_context(runner.plugin_args.get("mp_context")))
            return submit(node, updatehash=updatehash)

    runner._async_callback, runner._get_result, runner._submit_job = callback, result, submit_job


#: the command each scheduler plugin of Nipype submits its jobs with (it must be on PATH)
_PLUGIN_COMMANDS = {"SLURM": "sbatch", "SLURMGraph": "sbatch", "SGE": "qsub", "SGEGraph": "qsub", "PBS": "qsub",
                    "PBSGraph": "qsub", "LSF": "bsub", "OAR": "oarsub", "Condor": "condor_qsub",
                    "CondorDAGMan": "condor_submit_dag"}
#: the Python module (and the package that installs it) a plugin imports
_PLUGIN_MODULES = {"IPython": ("ipyparallel", "ipyparallel"), "SomaFlow": ("soma.workflow", "soma-workflow")}
#: the plugins that name their jobs after ``$LOGNAME`` (a KeyError when it is unset)
_NEEDS_LOGNAME = frozenset({"SLURM", "SGE", "PBS", "LSF", "OAR", "Condor"})


def nipype_plugins() -> list[str]:
    """The names of the plugins this Nipype has (``nipype.pipeline.plugins.<name>Plugin``), sorted."""
    from nipype.pipeline import plugins

    return sorted(n[:-len("Plugin")] for n in dir(plugins) if n.endswith("Plugin") and n != "Plugin")


def _module_missing(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is None
    except ImportError:  # its parent package is missing
        return True


def _plugin_problem(name: str) -> str | None:
    """Why the plugin file's ``plugin`` cannot run here, on one line (None: it can): a name Nipype
    does not have (with the name meant when only its case or a letter slipped), a scheduler
    command not on PATH, a Python module not installed, ``$LOGNAME`` unset, or Nipype's Debug
    plugin (it takes a Python callable, which a YAML file cannot give). Each was a traceback once
    the run had started, after the output folder was described."""
    import os
    import shutil

    known = nipype_plugins()
    if name not in known:
        meant = closest_name(name, known)
        hint = f": did you mean {meant}?" if meant else ""
        return f"plugin {name!r} is not one of Nipype's plugins ({', '.join(known)}){hint}"
    if name == "Debug":
        return "plugin Debug needs a Python callable in plugin_args, which a plugin file cannot give; use Linear"
    command = _PLUGIN_COMMANDS.get(name)
    if command and shutil.which(command) is None:
        return (f"plugin {name} submits each job with {command}, which is not on PATH: run where that scheduler "
                "is installed (a native install on a shared file system), or use MultiProc")
    module, package = _PLUGIN_MODULES.get(name, (None, None))
    if module and _module_missing(module):
        return f"plugin {name} needs the Python module {module}, which is not installed (pip install {package})"
    if name in _NEEDS_LOGNAME and not os.environ.get("LOGNAME"):
        return (f"plugin {name} names its jobs after $LOGNAME, which is not set (as in containers and CI): "
                "export LOGNAME=$(id -un)")
    return None


def _check_resources(extra: dict, path: Path) -> None:
    """The plugin file's ``n_procs`` and ``memory_gb``, as the command line's: a count from 1 to
    the usable CPUs (more is lowered, with a warning), a finite memory of at least 0.1 GB."""
    import math

    from .machine import usable_cpus

    if "n_procs" in extra:
        n = extra["n_procs"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError(f"plugin_args n_procs must be a whole number >= 1, got {n!r}", path=path)
        cpus = usable_cpus()
        if n > cpus:
            say(f"geomorph-bids: warning: {path}: n_procs {n} is more than the {cpus} CPU(s) this process may "
                f"use; using {cpus}", file=sys.stderr)
            extra["n_procs"] = cpus
    if "memory_gb" in extra:
        m = extra["memory_gb"]
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not math.isfinite(m) or m < 0.1:
            raise InputError(f"plugin_args memory_gb must be a finite number of GB >= 0.1, got {m!r}", path=path)


def nipype_log_level(verbose: int) -> str:
    """Nipype's logging level for ``-v`` given ``verbose`` times: none of its messages (the summary
    names each failure and its crash file), ``-v`` its messages (INFO: each node run), ``-vv`` and
    more its debug ones."""
    return ("CRITICAL", "INFO", "DEBUG")[min(max(verbose, 0), 2)]


def configure_nipype(crash_dir: Path, verbose: int, stop_on_first_crash: bool) -> None:
    """Nipype's global configuration for this run (crash files as text in ``crash_dir``, no
    telemetry, reports or graph files, timestamp hashing, frequent polling).

    Nipype keeps these settings in a :class:`configparser.ConfigParser`, which refuses a lone ``%``
    ("invalid interpolation syntax": an output folder named ``50%`` ended the run after the folder
    was described): the crash folder is given here with each ``%`` doubled (what ``config.get``
    reads back as the path), and to the workflow as it is (:func:`crash_folder_setting`), since
    Nipype's nodes read the uninterpolated text."""
    from nipype import config, logging

    # the summary names each failure and its crash file; -v shows Nipype's own messages, -vv its
    # debug ones, as --help says (-v showed only its warnings, none in a run that works; -vvv debug)
    level = nipype_log_level(verbose)
    config.update_config({
        "logging": {"workflow_level": level, "interface_level": level, "utils_level": level,
                    "log_to_file": False},
        "execution": {"crashdump_dir": str(crash_dir).replace("%", "%%"), "crashfile_format": "txt",
                      "stop_on_first_crash": stop_on_first_crash, "remove_unnecessary_outputs": False,
                      "hash_method": "timestamp", "parameterize_dirs": False,
                      "check_version": False,
                      # no workflow-level d3.js/graph.json in the work dir: runs sharing it would race
                      "create_report": False,
                      # poll often: Nipype's default (2 s per scheduling round) dominates short runs
                      "poll_sleep_duration": 0.1},
        "monitoring": {"enabled": False},
    })
    logging.update_logging(config)


def crash_folder_setting(workflow: pe.Workflow, crash_dir: Path) -> None:
    """Nipype's nodes take their crash folder from the workflow's own settings, a copy of the
    global ones without interpolation (:func:`configure_nipype` doubles a ``%``): the path as it is,
    so that ``a%%b/logs`` is not ``a%%%%b/logs``."""
    workflow.config["execution"]["crashdump_dir"] = str(crash_dir)

"""Nipype's configuration for a participant run: logging, crash files, caching, and the
execution plugin (MultiProc by default, or the ``--use-plugin`` YAML)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io.limits import read_text_bounded

__all__ = ["plugin_settings", "configure_nipype"]


def plugin_settings(args) -> tuple[str, dict[str, Any]]:
    """(plugin name, plugin_args) from ``--nprocs``, ``--mem-gb`` and ``--use-plugin``."""
    plugin_args: dict[str, Any] = {"n_procs": args.nprocs, "raise_insufficient": False}
    if args.mem_gb:
        plugin_args["memory_gb"] = args.mem_gb
    if args.use_plugin is None:
        return "MultiProc", plugin_args
    import yaml

    try:
        doc = yaml.safe_load(read_text_bounded(args.use_plugin, what="plugin file")) or {}
    except InputError as exc:
        raise InputError(f"cannot read the plugin file: {exc.reason}", path=args.use_plugin) from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise InputError(f"cannot read the plugin file ({' '.join(str(exc).split())})", path=args.use_plugin) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("plugin"), str) or not doc["plugin"]:
        raise InputError("the plugin file must be YAML with a 'plugin' key naming a Nipype plugin "
                         "(and optional 'plugin_args')", path=args.use_plugin)
    extra = doc.get("plugin_args") or {}
    if not isinstance(extra, dict):
        raise InputError("the plugin file's 'plugin_args' must be a mapping (key: value)", path=args.use_plugin)
    _check_resources(extra, args.use_plugin)
    if doc["plugin"] in ("MultiProc", "LegacyMultiProc"):
        plugin_args.update(extra)
        return doc["plugin"], plugin_args
    return doc["plugin"], dict(extra)


def _check_resources(extra: dict, path: Path) -> None:
    """The plugin file's ``n_procs`` and ``memory_gb``, as the command line's: a count from 1 to
    the usable CPUs (more is lowered, with a warning), a finite memory of at least 0.1 GB."""
    import math
    import sys

    from .machine import usable_cpus

    if "n_procs" in extra:
        n = extra["n_procs"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError(f"plugin_args n_procs must be a whole number >= 1, got {n!r}", path=path)
        cpus = usable_cpus()
        if n > cpus:
            print(f"geomorph-bids: warning: {path}: n_procs {n} is more than the {cpus} CPU(s) this process may "
                  f"use; using {cpus}", file=sys.stderr)
            extra["n_procs"] = cpus
    if "memory_gb" in extra:
        m = extra["memory_gb"]
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not math.isfinite(m) or m < 0.1:
            raise InputError(f"plugin_args memory_gb must be a finite number of GB >= 0.1, got {m!r}", path=path)


def configure_nipype(crash_dir: Path, verbose: int, stop_on_first_crash: bool) -> None:
    """Nipype's global configuration for this run (crash files as text in ``crash_dir``, no
    telemetry, reports or graph files, timestamp hashing, frequent polling)."""
    from nipype import config, logging

    # the summary names each failure and its crash file; -v shows Nipype's own messages
    level = ["CRITICAL", "WARNING", "INFO", "DEBUG"][min(verbose, 3)]
    config.update_config({
        "logging": {"workflow_level": level, "interface_level": level, "utils_level": level,
                    "log_to_file": False},
        "execution": {"crashdump_dir": str(crash_dir), "crashfile_format": "txt",
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

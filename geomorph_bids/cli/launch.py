"""The console scripts (``geomorph-bids``, ``geomorph-register``, ``geomorph-train``; setup.cfg's
``console_scripts``): each imports its command's module and runs its ``main`` inside :func:`launch`.

A command's imports (numpy, scipy, nibabel, torch: about a second, several on a cold disk) ran in
the console script itself, before any code of ours: Ctrl-C then, or while the arguments were parsed
before the command installs its own signal handling (:func:`~.interrupts.stop_on_signals`), printed
a 30 to 60 line ``KeyboardInterrupt`` traceback. Now it is one line, exit 130, as later in a run
(:func:`~.exit_codes.interrupted`); once a command's ``main`` handles the stop signals, its own
line says what was left. This module imports nothing heavy, so that the window it leaves is a few
milliseconds. ``python -m geomorph_bids.cli.bids`` (``.register``, ``.train``) comes here too
(:func:`run_module`, called at the top of each command's module).

The packages setup.cfg declares are checked here too (:mod:`.dependencies`): one ``warning:`` line
for each installed outside its range, and a package that is not installed, when the command first
imports it, one ``error:`` line naming it and the pip command, exit 1, where a ``ModuleNotFoundError``
traceback was.
"""

from __future__ import annotations

import importlib
import signal
import sys

from .dependencies import declared_requirements, missing_module_message, version_problems
from .exit_codes import EXIT_FAILED, error_exit, interrupted
from .machine import threads_within_usable_cpus
from .messages import one_line, say

__all__ = ["launch", "run_module", "bids", "register", "train"]


def launch(module: str, prog: str) -> int:
    """Import ``module`` and return what its ``main()`` returns (the exit code); Ctrl-C
    (``KeyboardInterrupt``) on the way out of either is one line on stderr and 130. Under a CPU quota
    below the affinity mask, ``OMP_NUM_THREADS`` is set first (:func:`~.machine.threads_within_usable_cpus`),
    before numpy's BLAS starts its thread pool on import (one thread per CPU of the host). A declared
    package installed outside its range is a ``warning:`` line (not with ``--help``/``--version``), one
    not installed an ``error:`` line and 1 (:mod:`.dependencies`)."""
    threads_within_usable_cpus()
    requirements = None
    try:
        requirements = declared_requirements()
        if requirements and not {"-h", "--help", "--version"} & set(sys.argv[1:]):
            for line in version_problems(requirements):
                say(f"{prog}: warning: {line}", file=sys.stderr)
        main = importlib.import_module(module).main
    except KeyboardInterrupt:
        return interrupted(prog, "SIGINT", signal.SIGINT, "while starting: nothing was read or written")
    except ModuleNotFoundError as error:
        return _missing(prog, error, requirements)
    try:
        return main()
    except KeyboardInterrupt:
        return interrupted(prog, "SIGINT", signal.SIGINT)
    except ModuleNotFoundError as error:
        return _missing(prog, error, requirements)
    except SystemExit as stop:
        if not isinstance(stop.code, str):
            raise
        # a command's own ``raise SystemExit("<prog>: error: ...")`` (exit 1, as Python gives it): the one line
        # every error line is (:func:`~.messages.one_line`), a file name's control characters escaped
        print(one_line(stop.code), file=sys.stderr)
        return EXIT_FAILED


def _missing(prog: str, error: ModuleNotFoundError, requirements: list[tuple[str, str]] | None) -> int:
    """A package that is not installed: one ``error:`` line and 1; anything else raised again."""
    message = missing_module_message(error, requirements)
    if message is None:
        raise error
    return error_exit(prog, message)


def run_module(module: str, prog: str) -> None:
    """``python -m <module>``: what the console script does (:func:`launch`), then exit with its code.
    Called first thing in each command's module when it runs as ``__main__``, before its heavy
    imports (which otherwise ran outside any handling: a traceback on Ctrl-C); ``module`` is then
    imported under its own name, and ``main`` is the one the console script runs."""
    raise SystemExit(launch(module, prog))


def bids() -> int:
    """``geomorph-bids``: :func:`geomorph_bids.cli.bids.main`."""
    return launch("geomorph_bids.cli.bids", "geomorph-bids")


def register() -> int:
    """``geomorph-register``: :func:`geomorph_bids.cli.register.main`."""
    return launch("geomorph_bids.cli.register", "geomorph-register")


def train() -> int:
    """``geomorph-train``: :func:`geomorph_bids.cli.train.main`."""
    return launch("geomorph_bids.cli.train", "geomorph-train")

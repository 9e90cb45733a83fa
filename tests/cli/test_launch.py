"""The console scripts as setup.cfg declares them: Ctrl-C while a command starts."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def console_script(name: str) -> tuple[str, str]:
    """(module, function) of ``name`` in setup.cfg's console_scripts."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    for line in cfg["options.entry_points"]["console_scripts"].strip().splitlines():
        script, _, target = (part.strip() for part in line.partition("="))
        if script == name:
            module, _, function = target.partition(":")
            return module, function
    raise KeyError(name)


#: a child's start: SIGINT (Ctrl-C) to itself when the module ``when`` is first imported
_CTRL_C_AT_IMPORT = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, whatever the test runner's

class _CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == {when!r}:
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, _CtrlC())
"""

#: the child for a console script: its code, after :data:`_CTRL_C_AT_IMPORT`
_CHILD = _CTRL_C_AT_IMPORT + """sys.argv[0] = {name!r}
from {module} import {function}
sys.exit({function}())
"""


@pytest.mark.parametrize("name, args, when, detail", [
    # the command's own imports (numpy's is among the first): before its signal handling
    ("geomorph-bids", ["bids", "out", "participant"], "numpy", ": while starting: nothing was read or written"),
    ("geomorph-train", ["--out", "model", "--synthetic", "2"], "numpy",
     ": while starting: nothing was read or written"),
    ("geomorph-register", ["--example", "--out-dir", "ex"], "numpy", ": while starting: nothing was read or written"),
    # geomorph-register's registration (its engine is imported when the first hemisphere starts): its own line
    ("geomorph-register", ["--example", "--out-dir", "ex"], "geomorph_bids.engine.register",
     ": a hemisphere's outputs are in place all together or not at all (then an earlier run's files of the same "
     "names are left as they were): run the same command again"),
])
def test_ctrl_c_while_a_command_starts_is_one_line(name, args, when, detail, tmp_path):
    """Twentieth session: Ctrl-C in the first second or so of a command (its imports ran in the
    console script, before it installed any signal handling) printed a 30-60 line KeyboardInterrupt
    traceback and died of SIGINT. Now one line, exit 130, and nothing written; in geomorph-register's
    registration, its own line (fix-t)."""
    module, function = console_script(name)
    code = _CHILD.format(when=when, name=name, module=module, function=function)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=300)
    assert done.returncode == 130 and done.stderr == f"{name}: interrupted by SIGINT{detail}\n", done.stderr
    assert list(tmp_path.iterdir()) == []


#: the child for ``python -m <module>``: runpy runs the module as ``__main__`` as ``-m`` does
_CHILD_M = _CTRL_C_AT_IMPORT + """import runpy
sys.argv[0] = "-m"
runpy._run_module_as_main({module!r})
"""


@pytest.mark.parametrize("name, args", [
    ("geomorph-bids", ["bids", "out", "participant"]), ("geomorph-train", ["--out", "model", "--synthetic", "2"]),
    ("geomorph-register", ["--example", "--out-dir", "ex"])])
def test_ctrl_c_while_python_m_starts_is_one_line(name, args, tmp_path):
    """``python -m geomorph_bids.cli.bids`` (``.register``, ``.train``) ran the module's heavy imports
    outside launch.py: Ctrl-C then printed a KeyboardInterrupt traceback where the console script prints
    one line. Now the same line and exit 130, nothing written; and -m runs the command (--version)."""
    module = "geomorph_bids.cli." + name.removeprefix("geomorph-")
    code = _CHILD_M.format(when="numpy", module=module)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=300)
    assert done.returncode == 130, done.stderr
    assert done.stderr == f"{name}: interrupted by SIGINT: while starting: nothing was read or written\n", done.stderr
    assert list(tmp_path.iterdir()) == []
    version = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True,
                             cwd=tmp_path, env=env, timeout=300)
    assert version.returncode == 0 and name in version.stdout, version.stdout + version.stderr

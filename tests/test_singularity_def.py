"""singularity.def as an HPC user meets it (fix-bk). Its sections are run with `sh` here, as Apptainer
runs them; the last test runs a built SIF with Apptainer and is skipped without both (CI:
`scripts/ci_containers.sh` builds one; set GEOMORPH_TEST_SIF=/path/to/geomorph-bids.sif)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEF = ROOT / "singularity.def"


def _section(name: str) -> str:
    """The body of ``%name`` in singularity.def (up to the next section)."""
    match = re.search(rf"^%{name}\n(.*?)(?=^%|\Z)", DEF.read_text(), re.S | re.M)
    assert match, f"singularity.def has no %{name}"
    return match.group(1)


def _stub_path(tmp_path: Path) -> str:
    """A folder with a `geomorph-bids` that prints its arguments and PYTHONPATH, first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "geomorph-bids"
    stub.write_text('#!/bin/sh\necho "args=[$*] PYTHONPATH=[${PYTHONPATH-unset}]"\n')
    stub.chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}"


def test_the_runscript_shows_the_help_without_arguments(tmp_path):
    """`apptainer run geomorph-bids.sif`, the first thing an HPC user types: `geomorph-bids: error: the
    following arguments are required: bids_dir, output_dir, analysis_level` under 20 lines of usage,
    exit 2. The Docker image's CMD is `--help`; the SIF's runscript now gives the same."""
    script = tmp_path / "runscript"
    script.write_text("#!/bin/sh\n" + _section("runscript"))
    env = {"PATH": _stub_path(tmp_path)}
    run = [subprocess.run(["sh", str(script), *args], env=env, capture_output=True, text=True, check=True).stdout
           for args in ([], ["/data", "/out", "participant"])]
    assert run == ["args=[--help] PYTHONPATH=[unset]\n", "args=[/data /out participant] PYTHONPATH=[unset]\n"]


def test_a_host_pythonpath_does_not_reach_the_image(tmp_path):
    """Apptainer (1.4.5 seen) puts back every host variable the image's environment does not set,
    whatever %environment unsets: `unset PYTHONPATH PYTHONHOME` there did nothing, and `PYTHONPATH=DIR
    apptainer run geomorph-bids.sif --version` (or `apptainer exec ... geomorph-register`) with a numpy
    in DIR stopped on `ImportError` (a module system's Python on the host). Apptainer's rule is
    emulated here: the host's variables, then what %environment exports over them."""
    script = tmp_path / "environment"
    script.write_text(_section("environment") + '\nenv -0\n')
    exported = subprocess.run(["sh", str(script)], env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
                              capture_output=True, text=True, check=True).stdout
    image = dict(item.split("=", 1) for item in exported.split("\0") if "=" in item)
    host = {"PYTHONPATH": "/sw/python/3.9/site-packages", "PYTHONHOME": "/sw/python/3.9", "SUBJECTS_DIR": "/fs"}
    final = {**host, **image}
    assert (final["PYTHONPATH"], final["PYTHONHOME"], final["SUBJECTS_DIR"]) == ("", "", "/fs")
    assert not re.search(r"^\s*unset\b", _section("environment"), re.M), "an unset in %environment does nothing"


def _apptainer() -> str | None:
    return shutil.which("apptainer") or shutil.which("singularity")


@pytest.mark.slow
@pytest.mark.skipif(not (_apptainer() and os.environ.get("GEOMORPH_TEST_SIF")),
                    reason="needs apptainer and GEOMORPH_TEST_SIF=/path/to/geomorph-bids.sif")
def test_the_sif_as_an_hpc_user_first_runs_it(tmp_path):
    """No registration (a few seconds): the help without arguments, a host PYTHONPATH holding a broken
    numpy, a dataset not bound, the default work folder under --containall."""
    app, sif = _apptainer(), os.environ["GEOMORPH_TEST_SIF"]

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([app, *args], capture_output=True, text=True, env={**os.environ, **(env or {})},
                              cwd=tmp_path, timeout=300)

    helped = run("run", sif)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: geomorph-bids"), helped.stderr
    (tmp_path / "pp" / "numpy").mkdir(parents=True)
    (tmp_path / "pp" / "numpy" / "__init__.py").write_text("raise ImportError('the host numpy came in')\n")
    for args in (("run", sif, "--version"), ("exec", sif, "geomorph-register", "--version")):
        shadowed = run(*args, env={"PYTHONPATH": str(tmp_path / "pp")})
        assert shadowed.returncode == 0 and "0." in shadowed.stdout, shadowed.stderr
    unbound = run("run", "--containall", sif, "/data/not-bound", "/out", "participant")
    assert unbound.returncode == 1 and unbound.stderr.strip() == (
        "geomorph-bids: error: /data/not-bound: bids_dir does not exist or is not a folder; in this container only "
        "the image's files and the folders bound into it are there: bind it (apptainer run -B "
        "/data/not-bound:/data/not-bound:ro, or -B /path/on/host:/data/not-bound:ro)")
    out = tmp_path / "out"
    out.mkdir()
    small = run("run", "--containall", "-B", f"{out}:/out", sif, "/opt/geomorph/examples/ds-geomorph-example",
                "/out", "participant")
    assert small.returncode == 1 and "is its own memory file system" in small.stderr, small.stderr

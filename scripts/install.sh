#!/usr/bin/env bash
# Set up geomorph-bids on a fresh machine (Debian/Ubuntu, Python >= 3.10).
#   bash scripts/install.sh          # the package, in ./.venv
#   bash scripts/install.sh --test   # + test/benchmark extras and Connectome Workbench (apt)
# torch is installed first, pinned to the CPU build 2.13.0, so that no other
# requirement can pull a CUDA build; constraints.txt keeps every pin in place.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
extras=""
with_apt=0
for arg in "$@"; do
  case "$arg" in
    --test) extras="[test]"; with_apt=1 ;;
    *) echo "install.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

if [ "$with_apt" = 1 ] && ! command -v wb_command >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends connectome-workbench chromium >/dev/null
fi

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
pip_install() {
  # pip's notes about local index folders that do not exist on this machine are noise
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "$@" 2>&1 \
    | { grep -v "^WARNING: Location 'file:" || true; }
  return "${PIPESTATUS[0]}"
}
pip_install "torch==2.13.0"
pip_install -c constraints.txt -e ".${extras}"
.venv/bin/geomorph-register --version

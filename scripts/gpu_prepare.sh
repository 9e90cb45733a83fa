#!/usr/bin/env bash
# Make this checkout ready for a lent GPU in one command, on the CPU, before any device time is spent
# (docs/models.md, "When a GPU is lent"). Run from the root of the checkout the session started in
# (the device tool sends that one, also when called from a worktree):
#
#   bash scripts/gpu_prepare.sh              # build .gpu/ and .whl/, check them, rehearse (9 min on 2 busy cores)
#   bash scripts/gpu_prepare.sh --no-rehearse  # build and check only (~30 s)
#
# 1. .gpu/sources.npz: the training source bank (scripts/build_training_sources.py; ~25 s), unless there.
# 2. .whl/: the Python 3.12 wheels of scripts/device_wheels.txt (pip download --no-deps --only-binary,
#    the platforms of the device README's Notes; never torch), one version each.
# 3. The tree that travels (git's tracked and unignored files, .gpu, .whl) against the 64 MiB limit.
# 4. The code under Python 3.12 (byte-compiled with a python3.12 where one is found).
# 5. The rehearsal: GEOMORPH_REHEARSE=1 scripts/gpu_session.sh on the CPU at tiny sizes, run through
#    scripts/device_site.py's interpreter (the device image's distributions and the wheels, nothing
#    else), so that an import the device lacks fails here. Its log: $GEOMORPH_PREPARE_DIR/rehearsal.
# Ends with READY and the device call to make, or NOT READY and why (exit 1). Settings:
#   GEOMORPH_PREPARE_PYTHON  the interpreter with geomorph-bids' dependencies (default .venv/bin/python,
#                            else python3); GEOMORPH_PREPARE_DIR scratch folder (default a new temp dir)
set -uo pipefail
start=$(date +%s)
stamp() { echo "[gpu_prepare $(( $(date +%s) - start )) s] $*"; }
problems=()
problem() { problems+=("$*"); stamp "PROBLEM: $*"; }
rehearse=1
case "${1:-}" in
  "") ;;
  --no-rehearse) rehearse=0 ;;
  *) echo "usage: bash scripts/gpu_prepare.sh [--no-rehearse]"; exit 2 ;;
esac
[ -f scripts/gpu_session.sh ] || { echo "gpu_prepare: run it from the repository root (no scripts/gpu_session.sh here)"; exit 2; }
py="${GEOMORPH_PREPARE_PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
fi
scratch="${GEOMORPH_PREPARE_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/geomorph_prepare.XXXXXX")}"
mkdir -p "$scratch"
export PYTHONPATH="$PWD" NIPYPE_NO_ET=1 PYTHONUNBUFFERED=1

# --- 1. the source bank ---------------------------------------------------------------------------
if [ -f .gpu/sources.npz ]; then
  stamp ".gpu/sources.npz is there ($(du -h .gpu/sources.npz | cut -f1)); delete it to rebuild"
else
  stamp "building .gpu/sources.npz"
  OMP_NUM_THREADS=1 "$py" scripts/build_training_sources.py --out .gpu/sources.npz > "$scratch/sources.log" 2>&1 \
    || problem "scripts/build_training_sources.py failed: $(grep -v '^ ' "$scratch/sources.log" | tail -1) (log: $scratch/sources.log)"
fi

# --- 2. the wheels ----------------------------------------------------------------------------------
mkdir -p .whl
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
while read -r spec; do
  name=${spec%%==*}; version=${spec#*==}
  file_name=$(echo "$name" | tr 'A-Z-' 'a-z_')  # a wheel's file name: lower case, '_' for '-'
  for old in .whl/"$file_name"-*.whl; do  # another version of it stops the device's install
    [ -e "$old" ] || continue
    case "$old" in .whl/"$file_name-$version"-*) ;; *) rm -f "$old"; stamp "removed $old (not $spec)" ;; esac
  done
  if ls .whl/"$file_name-$version"-*.whl > /dev/null 2>&1; then
    continue
  fi
  stamp "downloading $spec (Python 3.12)"
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl "$spec" > "$scratch/pip-$name.log" 2>&1 \
    || problem "pip download $spec for Python 3.12 failed: $(grep -m1 ERROR "$scratch/pip-$name.log") (log: $scratch/pip-$name.log)"
done < <(grep -v '^#' scripts/device_wheels.txt | grep -v '^ *$')
for w in .whl/*.whl; do
  [ -e "$w" ] || continue
  base=$(basename "$w"); name=${base%%-*}
  grep -qi "^$(echo "$name" | sed 's/_/[-_]/g')==" scripts/device_wheels.txt \
    || { rm -f "$w"; stamp "removed $w (not in scripts/device_wheels.txt)"; }
done
stamp ".whl: $(ls .whl | tr '\n' ' ')($(du -sh .whl | cut -f1))"

# --- 3. what travels ------------------------------------------------------------------------------------
{ git check-ignore -q .gpu/x && git check-ignore -q .whl/x; } || problem ".gpu/ or .whl/ is not git-ignored: it would travel on every call (add them to .gitignore)"
tree=$(git ls-files -co --exclude-standard -z | xargs -0 stat -c %s 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
carried=$(find .gpu .whl -type f -printf '%s\n' 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
stamp "travels: tree $(( tree / 1048576 )) MiB + carried .gpu and .whl $(( carried / 1048576 )) MiB (limit 64 MiB)"
[ $(( tree + carried )) -le 67108864 ] || problem "tree + .gpu + .whl = $(( tree + carried )) bytes, over the 64 MiB that travel"

# --- 4. Python 3.12 -------------------------------------------------------------------------------------
py312=""
for c in python3.12 "$(command -v pyenv > /dev/null && pyenv root)/versions/3.12"*/bin/python3.12; do
  if [ -n "$c" ] && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then py312=$c; break; fi
done
if [ -n "$py312" ]; then
  out312=$("$py312" - geomorph_bids scripts tests <<'EOF' 2>&1
import sys, pathlib
bad = 0
for d in sys.argv[1:]:
    for p in pathlib.Path(d).rglob("*.py"):
        try:
            compile(p.read_text(), str(p), "exec")
        except SyntaxError as e:
            print(f"{p}:{e.lineno}: {e.msg}")
            bad += 1
sys.exit(bad > 0)
EOF
) && stamp "the code compiles under $("$py312" --version)" || problem "under Python 3.12: $out312"
else
  stamp "no python3.12 here: the code's syntax is not checked against the device's Python 3.12"
fi

# --- 5. the rehearsal -------------------------------------------------------------------------------------
if [ "$rehearse" = 1 ] && [ "${#problems[@]}" -eq 0 ]; then
  "$py" scripts/device_site.py "$scratch/device" || problem "the device-like interpreter lacks a wheel's distribution (above)"
  stamp "rehearsing scripts/gpu_session.sh on the CPU with the device image's packages (log: $scratch/rehearsal/session.log)"
  GEOMORPH_REHEARSE=1 GEOMORPH_PYTHON="$scratch/device/python" bash scripts/gpu_session.sh "$scratch/rehearsal" \
    > "$scratch/rehearsal.out" 2>&1
  rc=$?
  tail -15 "$scratch/rehearsal.out"
  [ "$rc" = 0 ] || problem "the rehearsal ended with exit $rc (above; whole log $scratch/rehearsal/session.log)"
fi

if [ "${#problems[@]}" -eq 0 ]; then
  stamp "READY$([ "$rehearse" = 1 ] || echo ' (not rehearsed)'). On the device tool, once:"
  echo '  run(command="bash scripts/gpu_session.sh $OUT", carry=[".gpu", ".whl"], timeout_s=600)'
  echo "  then give_back; unpack each <name>.tgz it brings back (parts: cat NAME.tgz.part* > NAME.tgz;"
  echo "  docs/models.md, \"When a GPU is lent\")"
else
  stamp "NOT READY: ${#problems[@]} problem(s):"
  printf '  - %s\n' "${problems[@]}"
  exit 1
fi

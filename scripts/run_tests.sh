#!/usr/bin/env bash
# The test command of the README's quick start, and what CI runs (.ci/run): install with the test extras, then
# run the test suite and, beside it, the container stage (scripts/ci_containers.sh: builds the Docker and
# Apptainer images and runs them on the example; GEOMORPH_SKIP_CONTAINERS=1 skips it, CI never does).
#
# The two stages share nothing: the images run with --network none in their own podman storage, the SLURM
# tests on their own ports, and their apt-get calls wait for each other (a lock). The container stage mostly
# waits on downloads and image builds, so beside the suite it adds little to the wall time (the suite took
# 26.1 min beside it and 24-26 min alone on 2 cores, docs/benchmarks.md); one after the other they took ~40.
# Its log is printed when both are done. Arguments go to pytest (e.g. -m "not slow", a test file).
# Exit status: 0 only when both stages pass.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
log="$(mktemp "${TMPDIR:-/tmp}/geomorph-ci-containers.XXXXXX.log")"
bash scripts/ci_containers.sh > "$log" 2>&1 &
containers=$!
trap 'kill "$containers" 2>/dev/null || true' INT TERM
echo "run_tests: the container stage runs beside the tests (pid $containers, log $log)"
tests=0
.venv/bin/python -m pytest "$@" || tests=$?
images=0
wait "$containers" || images=$?
trap - INT TERM
echo "---------------- scripts/ci_containers.sh, run beside the tests ----------------"
cat "$log"
rm -f "$log"
echo "run_tests: tests exit $tests, container stage exit $images"
[ "$tests" = 0 ] && [ "$images" = 0 ]

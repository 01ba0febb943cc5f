# syntax=docker/dockerfile:1
# One image for every agentstream role (gateway, worker, agent); the role is the command.
#   docker build -t agentstream:local .
#   docker run agentstream:local agentstream worker --org default

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: resolve and install into a venv, so the runtime image carries no pip/build caches ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# The whole context (minus .dockerignore) because setuptools needs pyproject.toml, README.md and
# every package directory; dependencies are not split into their own layer since pyproject lists
# them only inside the project metadata. The cache mount keeps rebuilds fast instead.
COPY . .
# compileall: k8s runs the image with a read-only root filesystem, so bytecode must exist up front.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install . \
 && python -m compileall -q /opt/venv

# ---- runtime ----
FROM ${PYTHON_IMAGE}
# tini as PID 1: forwards SIGTERM to the Python process and reaps the sandbox's child processes
# (the local sandbox runs commands as subprocesses, which would otherwise linger as zombies).
# Unpinned on purpose: the distro's tini receives security updates with each rebuild.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*

# Fixed UID/GID so volume ownership (the shared sandbox volume, k8s fsGroup) is predictable.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home \
      --shell /usr/sbin/nologin app \
 && mkdir -p /var/lib/agentstream/sandboxes \
 && chown -R app:app /var/lib/agentstream
# The directory exists (owned by app) in the image on purpose: Docker copies its ownership into an
# empty named volume mounted there, so worker and agent (both UID 10001) can share it unprivileged.

COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SANDBOX_ROOT=/var/lib/agentstream/sandboxes

USER 10001:10001
WORKDIR /home/app
# 8000 gateway, 8100 agent; the worker listens on nothing.
EXPOSE 8000 8100

ENTRYPOINT ["tini", "--"]
CMD ["agentstream", "gateway", "--host", "0.0.0.0", "--port", "8000"]

# syntax=docker/dockerfile:1
# LinkRift image: one image, every entry point (`linkrift api|worker|migrate ...`).
#
#   docker build -t linkrift:local .
#   docker run --rm linkrift:local migrate status
#
# Stage 1 builds wheels for every dependency (and the build backend), stage 2 installs them
# without a compiler and installs the project in editable mode from /app, so that
# engine/config.py's REPO_ROOT (the parent of the `engine` package) is /app and
# /app/migrations and /app/clickhouse are found exactly as in a checkout.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------- build
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# Dependencies first (only pyproject.toml), so a source change does not rebuild the wheelhouse.
COPY pyproject.toml ./
RUN python -c "import tomllib; d = tomllib.load(open('pyproject.toml', 'rb')); \
print('\n'.join(d['project']['dependencies'] + d['build-system']['requires']))" > requirements.txt \
    && pip wheel --wheel-dir /wheels -r requirements.txt

# -------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    LINKRIFT_ENV=production \
    LINKRIFT_HOST=0.0.0.0 \
    LINKRIFT_PORT=8080 \
    LINKRIFT_WORKER_HOST=0.0.0.0 \
    LINKRIFT_WORKER_PORT=6066 \
    LINKRIFT_DATA_DIR=/data

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libstdc++6 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 linkrift \
    && useradd --system --uid 10001 --gid linkrift --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin linkrift \
    && mkdir -p /data \
    && chown linkrift:linkrift /data \
    && python -m venv "$VIRTUAL_ENV"

# Dependencies from the wheelhouse (bind-mounted: the wheels never land in a layer).
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=bind,from=build,source=/src/requirements.txt,target=/tmp/requirements.txt \
    pip install --no-index --find-links /wheels -r /tmp/requirements.txt

WORKDIR /app

# The packages plus the schema directories, at the repo layout (see .dockerignore).
COPY pyproject.toml ./
COPY engine/ engine/
COPY api/ api/
COPY streams/ streams/
COPY cli/ cli/
COPY migrations/ migrations/
COPY clickhouse/ clickhouse/

# `pip install .` in editable mode: the console script `linkrift` imports from /app.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels --no-deps -e . \
    && python -c "import engine.config as c; assert str(c.REPO_ROOT) == '/app', c.REPO_ROOT" \
    && python -m compileall -q /app/engine /app/api /app/streams /app/cli

USER linkrift:linkrift
VOLUME ["/data"]
EXPOSE 8080 6066

# The api serves /healthz on LINKRIFT_PORT. The worker has no /healthz: compose overrides
# this check for it (its Faust web port serves /metrics).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('LINKRIFT_PORT', '8080'), timeout=4)"]

ENTRYPOINT ["linkrift"]
CMD ["api"]

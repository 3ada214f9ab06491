# syntax=docker/dockerfile:1
#
# One image for every Banyan process: auth, discovery, gateway, the example
# services and the `banyan` CLI (migrations, projections, DLQ tools).
# docker-compose.yml picks the process with `command:`.
#
#   docker build -t banyan:dev .
#   docker run --rm banyan:dev banyan --help

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------
# build: install the project and its runtime dependencies (no dev extras)
# into a self-contained virtualenv.
# ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:${PATH}"

WORKDIR /src
COPY . .
RUN pip install --upgrade pip \
 && pip install .

# ---------------------------------------------------------------------------
# runtime
# ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH="/opt/venv/bin:${PATH}"

RUN groupadd --system --gid 10001 banyan \
 && useradd --system --uid 10001 --gid banyan --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin banyan

COPY --from=build /opt/venv /opt/venv

# The source tree stays in the working directory as well, so that
# `faststream run examples.orders:app` and `uvicorn gateway:app` resolve
# modules from /app exactly as they do in a checkout. The gateway's browser
# pages (GraphiQL, Swagger UI) take their files from here too: run `make install`
# before `docker build` (the image does not fetch them).
WORKDIR /app
COPY . .

USER banyan

# auth, discovery, gateway
EXPOSE 3001 3002 3003

# Default: every platform process in one container (development).
CMD ["banyan", "up"]

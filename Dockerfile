# syntax=docker/dockerfile:1
# ReviewPulse worker image: `docker build -t reviewpulse/reviewpulse:0.1.0 .`
# Stage 1 builds wheels of the project and every dependency (compilers live here only);
# stage 2 installs those wheels into a slim Python and runs as an unprivileged user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# A compiler for any dependency that ships no wheel for this platform.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Packaging metadata first: the wheel build of the dependencies is cached until it changes.
COPY pyproject.toml README.md ./
COPY streams/ streams/
COPY agents/ agents/
COPY tables/ tables/
COPY schema_registry/ schema_registry/
COPY avro_schemas/ avro_schemas/
RUN pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    HOME=/home/reviewpulse \
    REVIEWPULSE_WEB_HOST=0.0.0.0 \
    REVIEWPULSE_WEB_PORT=6066 \
    REVIEWPULSE_DATA_DIR=/var/lib/reviewpulse
RUN groupadd --system --gid 10001 reviewpulse \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/reviewpulse \
       --create-home --shell /usr/sbin/nologin reviewpulse \
    && mkdir -p /var/lib/reviewpulse \
    && chown 10001:10001 /var/lib/reviewpulse
# Install from the builder's wheels only (no index, no compiler); the wheels are bind-mounted,
# so they never become a layer of this image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels reviewpulse
WORKDIR /home/reviewpulse
VOLUME ["/var/lib/reviewpulse"]
EXPOSE 6066
# Numeric user, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
ENTRYPOINT ["reviewpulse"]
CMD ["worker"]

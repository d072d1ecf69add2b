# syntax=docker/dockerfile:1
#
# Annexa container image: `annexa daemon` by default, any other command on demand:
#     docker build -t annexa:0.1.0 .
#     docker run --rm -v annexa-data:/data -v "$PWD/annexa.toml:/etc/annexa/annexa.toml:ro" \
#         -e ANNEXA_CONFIG=/etc/annexa/annexa.toml -p 9464:9464 annexa:0.1.0
#     docker run --rm --init -v annexa-data:/data annexa:0.1.0 controls
#
# The base image is pinned to a patch release; pin it by digest as well
# (python:3.11.14-slim-bookworm@sha256:...) where your registry policy asks for it.

# --- builder: compilers only here, in case a dependency has no wheel for the platform ---
FROM python:3.11.14-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# Build tools for source-only dependencies; never reach the final image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
# The demo estates (demo/, a distribution of their own) stay out of the image.
COPY analyzers/ analyzers/
COPY collector/ collector/
COPY connectors/ connectors/
COPY core/ core/
COPY exports/ exports/
COPY mappings/ mappings/
COPY store/ store/

# A wheel (so the image runs exactly what `pip install annexa` would install: mapping
# files and migrations included as package data), installed into a self-contained venv
# with every source's SDK (the [all] extra).
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/annexa \
    && /opt/annexa/bin/pip install --no-cache-dir "$(echo /wheels/annexa-*.whl)[all]" \
    && /opt/annexa/bin/annexa --help > /dev/null

# --- final: the interpreter, the venv, nothing else --------------------------------------
FROM python:3.11.14-slim-bookworm

LABEL org.opencontainers.image.title="annexa" \
      org.opencontainers.image.description="Automated evidence collection for ISO/IEC 27001:2022 Annex A" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 annexa \
    && useradd --system --uid 10001 --gid annexa --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin annexa \
    && mkdir -p /data /etc/annexa \
    && chown annexa:annexa /data

COPY --from=builder /opt/annexa /opt/annexa

ENV PATH=/opt/annexa/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ANNEXA_DATABASE_URL=sqlite:////data/annexa.db

# The evidence database (SQLite) lives here unless ANNEXA_DATABASE_URL points elsewhere.
VOLUME /data
WORKDIR /data

# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001

# Daemon health and Prometheus metrics.
EXPOSE 9464

# No curl in slim images: python's urllib. Any HTTP error or refused connection -> unhealthy.
# The port is daemon.port's default; if you change it, override with --health-cmd.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4)"]

ENTRYPOINT ["annexa"]
CMD ["daemon"]

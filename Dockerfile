# syntax=docker/dockerfile:1
# The dealscore scoring service: slim, non-root, tini as PID 1, one native thread per worker, healthcheck on
# /health/ready.
#
#   docker build -t dealscore .
#   docker run -p 8000:8000 dealscore                     # serves the demo model trained into the image
#   docker run -p 8000:8000 -v /srv/dealscore/registry:/registry:ro \
#              -e DEALSCORE_REGISTRY_DIR=/registry dealscore   # serves the registry's live version
#
# The feedback database (SQLite by default: score log, outcomes, judgements) and its spool live in
# DEALSCORE_HOME, /var/lib/dealscore here: mount a volume there (-v dealscore-data:/var/lib/dealscore) or set
# DEALSCORE_DATABASE_URL to a PostgreSQL database and DEALSCORE_SPOOL_DIR to a mounted folder;
# without either they are lost with the container.
#
# Settings are DEALSCORE_* variables (docs/settings.md). Artifacts must come from the same lightgbm and
# numpy major.minor as the image has: loading refuses anything else.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
# LightGBM needs the OpenMP runtime, also to train the demo model here.
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The versions CI tested (constraints.txt), not whatever is newest on the day of the build.
# Bytecode compiled here (not the packages' test folders): the service runs as a user who cannot write it, with
# PYTHONDONTWRITEBYTECODE, so without it every process start (each worker, each `dealscore` command) compiled its
# imports again: 5 s of a 7 s start to ready (2.5 s with it; +65 MB).
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-compile -c constraints.txt . \
 && /opt/venv/bin/python -m compileall -q -j 0 -x '/tests?/' /opt/venv/lib
# The demo model: generated data, trained at build time, so the image serves out of the box.
ARG DEMO_DEALS=20000
RUN /opt/venv/bin/dealscore demo-data --out /tmp/demo --deals "${DEMO_DEALS}" \
 && /opt/venv/bin/dealscore train --deals /tmp/demo/deals.csv --clients /tmp/demo/clients.csv \
        --holdings /tmp/demo/holdings.csv --out /opt/dealscore/demo-model \
 && rm -rf /tmp/demo

FROM python:${PYTHON_VERSION}-slim
# tini as PID 1 (the ENTRYPOINT): see there. The standard library's bytecode too: the python image ships none.
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 tini && rm -rf /var/lib/apt/lists/* \
 && python -m compileall -q -j 0 -x '/site-packages/' "$(python -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')" \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin dealscore \
 && mkdir -p /var/lib/dealscore && chown 10001 /var/lib/dealscore
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/dealscore/demo-model /opt/dealscore/demo-model
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OMP_NUM_THREADS=1 \
    DEALSCORE_HOST=0.0.0.0 \
    DEALSCORE_PORT=8000 \
    DEALSCORE_MODEL_DIR=/opt/dealscore/demo-model \
    DEALSCORE_HOME=/var/lib/dealscore
USER 10001
WORKDIR /tmp
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/ready' % os.environ.get('DEALSCORE_PORT', '8000'), timeout=2)"]
# tini runs the command as its child and passes signals on. The command as PID 1 ignored a SIGTERM until it had set
# a handler (the kernel spares PID 1 the default action): a `docker stop` in the service's first seconds (imports),
# or in a `dealscore retrain`'s, waited out the grace period for SIGKILL (exit 137) or was lost, the command running
# on. A stop now ends either at once; the service stops gracefully and, as on a host, exits 143 (the SIGTERM it
# raises again when done; 0 with several workers).
ENTRYPOINT ["tini", "--"]
CMD ["python", "-m", "service.main"]

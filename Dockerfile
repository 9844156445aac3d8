# The sluicegate service: `docker build -t sluicegate .`; running it: docs/deploy.md.
# Checked without a daemon by tests/test_deploy_files.py (hadolint, and the rules it states).

# Build: this checkout and its dependencies into a virtualenv, compiled to bytecode, so
# that the image needs neither a compiler nor write access to its own code.
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/sluicegate
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/sluicegate/bin/pip install --no-cache-dir .

# Run: the virtualenv, an unprivileged user, and /data for the SQLite files.
FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="sluicegate" \
      org.opencontainers.image.description="Capping, throttling and retries between a journey orchestrator and the systems it calls" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 sluicegate \
 && useradd --system --uid 10001 --gid sluicegate --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin sluicegate \
 && install --directory --owner=sluicegate --group=sluicegate --mode=0700 /data
COPY --from=build /opt/sluicegate /opt/sluicegate
# SLUICEGATE_* variables are defaults an operator overrides with variables of their own
# (a variable wins over the --config file; docs/deploy.md, "Settings in the image").
ENV PATH=/opt/sluicegate/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SLUICEGATE_DATA_DIR=/data \
    SLUICEGATE_LOG_FORMAT=json
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
# Ready: its database, engine store and background writers answer (GET /readyz); the
# image has no curl, and Python exits 1 on a refused connection or a 503.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SLUICEGATE_PORT', '8080') + '/readyz', timeout=2)"]
# SIGTERM stops gracefully: requests in flight finish, results are written, queued calls
# stay journaled for the next start (exit code 0).
STOPSIGNAL SIGTERM
ENTRYPOINT ["sluicegate"]
CMD ["serve", "--host", "0.0.0.0"]

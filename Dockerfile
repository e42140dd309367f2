# carbon-points: one image for the web API, the scheduler and migrations.
#
#   docker build -t carbon-points .
#   docker run --rm -e DATABASE_URL=... -e REDIS_URL=... -e SECRET_KEY=... carbon-points migrate
#   docker run -d -p 8000:8000 -e ... carbon-points            # web (the default)
#   docker run -d -e ... carbon-points scheduler
#   docker run --rm -e ... carbon-points carbon-points users create ...

# ---------------------------------------------------------------------------
# Builder: a virtualenv at /opt/venv with the project and its pinned dependencies.
# Every dependency ships manylinux wheels (psycopg[binary], argon2-cffi, cryptography),
# so no compiler or libpq headers are needed.
# ---------------------------------------------------------------------------
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, read from pyproject.toml, so this layer is reused while only code changes.
# (README* is optional: the glob copies it when present and the instruction still succeeds
# because pyproject.toml matches.)
COPY pyproject.toml README* ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

COPY backend ./backend
COPY methodologies ./methodologies
COPY migrations ./migrations
RUN pip install . \
    && carbon-points --help > /dev/null

# ---------------------------------------------------------------------------
# Runtime
# ---------------------------------------------------------------------------
FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CARBON_ENV=production \
    CARBON_INSTANCE_PATH=/app/instance

# A writable home: gunicorn puts its control socket in ~/.gunicorn/ (for `gunicornc`).
RUN groupadd --system --gid 10001 carbon \
    && useradd --system --uid 10001 --gid carbon --create-home --home-dir /home/carbon \
        --shell /usr/sbin/nologin carbon

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app

# Code and data stay owned by root (read-only to the app); only the instance directory is writable.
COPY rules/ /app/rules/
COPY docker/entrypoint.sh /usr/local/bin/docker-entrypoint
RUN chmod 0755 /usr/local/bin/docker-entrypoint \
    && mkdir -p /app/instance \
    && chown carbon:carbon /app/instance \
    && chmod 0750 /app/instance

USER 10001:10001

EXPOSE 8000

# Only meaningful for the `web` role; docker-compose.yml disables it for scheduler and migrate.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:${PORT:-8000}/healthz', timeout=3).status==200 else 1)"

ENTRYPOINT ["docker-entrypoint"]
CMD ["web"]

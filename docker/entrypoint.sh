#!/bin/sh
# Container entrypoint: one image, three roles chosen by the first argument.
#
#   web        the HTTP API under gunicorn with backend/gunicorn_conf.py (extra arguments go to gunicorn)
#   scheduler  the scheduled jobs (run as its own process in production)
#   migrate    apply database migrations, then exit (extra arguments go to `db upgrade`)
#   anything else is run as given, e.g. `docker run IMAGE carbon-points users create ...`
#
# Every branch execs, so the final process receives the container's signals directly.
set -eu

if [ "$#" -eq 0 ]; then
    set -- web
fi

case "$1" in
    web)
        shift
        # backend/gunicorn_conf.py: every worker's metrics summed at /metrics, and the app's own
        # JSON access log (one line per request, with its request id) instead of gunicorn's.
        exec gunicorn \
            -c python:backend.gunicorn_conf \
            --bind "0.0.0.0:${PORT:-8000}" \
            --workers "${WEB_WORKERS:-2}" \
            --threads "${WEB_THREADS:-4}" \
            --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-127.0.0.1}" \
            "$@" \
            backend.wsgi:app
        ;;
    scheduler)
        shift
        exec carbon-points scheduler "$@"
        ;;
    migrate)
        shift
        exec carbon-points db upgrade "$@"
        ;;
    *)
        exec "$@"
        ;;
esac

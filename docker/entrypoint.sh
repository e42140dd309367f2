#!/bin/sh
# Container entrypoint: one image, three roles chosen by the first argument.
#
#   web        the HTTP API under gunicorn (extra arguments go to gunicorn)
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
        exec gunicorn \
            --bind "0.0.0.0:${PORT:-8000}" \
            --workers "${WEB_WORKERS:-2}" \
            --threads "${WEB_THREADS:-4}" \
            --access-logfile - \
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

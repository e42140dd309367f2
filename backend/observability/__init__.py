"""Observability: Prometheus metrics, the access log and readiness checks.

``metrics`` holds the counters services record into (activities, points, jobs); ``access`` times
every request and writes the JSON access line; ``readiness`` answers ``/readyz``. Nothing here
runs at import: metrics are created on first use, request hooks when the health blueprint is
registered on an app.
"""

from backend.observability.metrics import record_job

__all__ = ["record_job"]

"""gunicorn settings for the web role: ``gunicorn -c python:backend.gunicorn_conf backend.wsgi:app``.

What it adds to gunicorn's defaults is what makes ``/metrics`` right with several workers:
prometheus_client's multi-process mode. Every worker writes its counters to files in
``PROMETHEUS_MULTIPROC_DIR`` and any worker answering ``/metrics`` sums them all.

- The directory is ``PROMETHEUS_MULTIPROC_DIR`` if set, else a fixed one under the temp dir. It
  is set here, in the master, before a worker imports the app: prometheus_client chooses its
  mode once, when it is first imported.
- It is emptied when the master starts: counters start at zero with the server (Prometheus
  handles the reset), never summing a previous run's files.
- A worker that exits is marked dead: its live gauges are dropped; its counters stay counted.

Command-line flags (``--workers``, ``--bind``, …) override what is here. The access log is ours
(one JSON line per request with its request id, see ``backend/observability/access.py``), so
gunicorn's own is off unless asked for.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

_directory = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or Path(tempfile.gettempdir()) / "carbon-points-metrics")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_directory)
_directory.mkdir(parents=True, exist_ok=True, mode=0o700)  # the app checks it exists, even with --preload

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_WORKERS", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
accesslog = None
errorlog = "-"


def on_starting(server: Any) -> None:
    """In the master, before any worker: an empty metrics directory."""
    for stale in _directory.glob("*.db"):
        stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    """In the master, after a worker exited (crash, max-requests, reload, shutdown)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, str(_directory))
